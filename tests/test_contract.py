"""The contract: docs/rng.md (as tests/contract_spec.py) == the PyTorch reference == golden vectors."""

import hashlib
import pathlib
import re
import struct

import contract_spec as spec
import golden
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slt_hw import _normal_table
from slt_hw.contract import (
    Dist,
    Key,
    Stream,
    default_scale,
    derive_key,
    fnv1a64,
    freeze_thresholds,
    to_f32,
)
from slt_hw.reference import prng
from slt_hw.reference.normal_table import table_bits

ROOT = pathlib.Path(__file__).resolve().parents[1]
TABLE = spec.normal_table()


def test_fnv1a64_published_vectors():
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


@pytest.mark.parametrize("case", golden.GOLDEN["keys"], ids=lambda c: f"{c['seed']}-{c['name']}-{c['stream']}")
def test_keys(case):
    k = derive_key(case["seed"], case["name"], case["stream"])
    assert (k.k0, k.k1) == (case["k0"], case["k1"])
    assert spec.key(case["seed"], case["name"], case["stream"]) == (case["k0"], case["k1"])


@pytest.mark.parametrize("case", golden.GOLDEN["hashes"], ids=lambda c: str(c["counter"]))
def test_hash_vectors(case):
    got = prng.hash32(Key(case["k0"], case["k1"]), torch.tensor([case["counter"]]))
    assert int(got[0]) == case["hash"] == spec.h(case["k0"], case["k1"], case["counter"])


@pytest.mark.parametrize("case", golden.weight_cases(), ids=golden.case_id)
def test_reference_weights_golden(case):
    n, k = case["shape"]
    key = derive_key(case["seed"], case["name"], Stream.WEIGHTS)
    scale = default_scale(case["dist"], k)
    assert struct.unpack("<I", struct.pack("<f", scale))[0] == case["scale_f32_bits"]
    golden.check_weights(case, prng.generate(key, n, k, case["dist"], scale))


@pytest.mark.parametrize("case", golden.weight_cases()[:7], ids=golden.case_id)
def test_reference_equals_scalar_spec(case):
    n, k = case["shape"]
    k0, k1 = spec.key(case["seed"], case["name"], 0)
    s = golden.f32_from_bits(case["scale_f32_bits"])
    want = torch.tensor([[spec.weight(k0, k1, r, c, k, case["dist"], s, TABLE) for c in range(k)]
                         for r in range(n)], dtype=torch.float32)
    got = prng.generate(Key(k0, k1), n, k, case["dist"], s)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))


@pytest.mark.parametrize("case", golden.freeze_cases(), ids=golden.case_id)
def test_reference_freeze_golden(case):
    n, k = case["shape"]
    assert freeze_thresholds(case["p_prune"], case["p_lock"]) == (case["prune_threshold"], case["lock_threshold"])
    key = derive_key(case["seed"], case["name"], Stream.FREEZE)
    states = prng.freeze_states(key, n, k, case["prune_threshold"], case["lock_threshold"])
    golden.check_freeze(case, states)
    want = [[spec.freeze_state(key.k0, key.k1, r, c, k, case["prune_threshold"], case["lock_threshold"])
             for c in range(k)] for r in range(n)]
    assert states.tolist() == want


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), k=st.integers(1, 80), seed=st.integers(0, 2**63 - 1),
       dist=st.sampled_from([d.value for d in Dist]), scale=st.floats(1e-3, 10.0))
def test_reference_equals_spec_random(n, k, seed, dist, scale):
    k0, k1 = spec.key(seed, "t", 0)
    s = to_f32(scale)
    want = torch.tensor([[spec.weight(k0, k1, r, c, k, dist, s, TABLE) for c in range(k)] for r in range(n)],
                        dtype=torch.float32)
    got = prng.generate(Key(k0, k1), n, k, dist, s)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))


def test_normal_table_sources_match_definition():
    bits = table_bits()
    assert list(_normal_table.NORMAL_TABLE_F32_BITS) == bits
    header = (ROOT / "csrc" / "core" / "slt_normal_table.h").read_text()
    assert [int(h, 16) for h in re.findall(r"0x([0-9A-F]{8})u", header)] == bits
    digest = hashlib.sha256(struct.pack(f"<{len(bits)}I", *bits)).hexdigest()
    assert digest in (ROOT / "docs" / "rng.md").read_text()
    t = prng.normal_table()
    assert torch.equal(t, -t.flip(0)) and abs(float(t.double().pow(2).mean()) - 1.0) < 1e-6


def test_weights_independent_of_device_and_shape_prefix():
    """Row r of an (n, k) tensor does not depend on n: counters are (row, column) only."""
    key = derive_key(5, "x")
    for dist in Dist:
        big = prng.generate(key, 9, 45, dist, 0.5)
        small = prng.generate(key, 4, 45, dist, 0.5)
        assert torch.equal(big[:4], small)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("case", golden.weight_cases(), ids=golden.case_id)
def test_reference_weights_golden_cuda(case):
    n, k = case["shape"]
    key = derive_key(case["seed"], case["name"], Stream.WEIGHTS)
    golden.check_weights(case, prng.generate(key, n, k, case["dist"], default_scale(case["dist"], k), "cuda"))


def test_the_worked_vectors_of_rng_md():
    """docs/rng.md §9's tables, read from the page, against the scalar spec and the reference."""
    text = (ROOT / "docs" / "rng.md").read_text()
    h = r"`(0x[0-9a-f]+)`"
    keys = re.findall(rf"^\| (\d+) \| `([^`]+)` \| ([01]) \| {h} \| {h} \| {h} \| {h} \|$", text, re.M)
    assert len(keys) == 4
    for seed, name, stream, fnv, k64, k0, k1 in keys:
        want = derive_key(int(seed), name, int(stream))
        assert spec.key(int(seed), name, int(stream)) == (int(k0, 16), int(k1, 16)) == (want.k0, want.k1)
        assert (int(fnv, 16), int(k64, 16)) == (fnv1a64(name.encode()), want.u64)
    k0, k1 = (int(v, 16) for v in keys[0][5:])
    hashes = re.findall(rf"^\| {h} \| {h} \|$", text, re.M)
    assert len(hashes) == 3 and all(spec.h(k0, k1, int(c, 16)) == int(v, 16) for c, v in hashes)
    rows = re.findall(rf"^\| (signed_constant|uniform|normal) \| {h} \| " + r" \| ".join([h] * 6) + r" \|$", text,
                      re.M)
    assert len(rows) == 3
    for dist, s_bits, *vals in rows:
        s = default_scale(dist, 40)
        assert struct.unpack("<I", struct.pack("<f", s))[0] == int(s_bits, 16)
        got = [spec.weight(k0, k1, n, k, 40, dist, s, TABLE) for n, k in ((0, 0), (0, 1), (0, 2), (0, 3), (1, 0),
                                                                            (1, 1))]
        assert [struct.unpack("<I", struct.pack("<f", v))[0] for v in got] == [int(v, 16) for v in vals], dist
    states = re.search(r"`P \+ L = 32768`.*?: `([0-2 ]+)`", text, re.S).group(1).split()
    fk = spec.key(0, "fc", 1)
    assert [spec.freeze_state(*fk, 0, k, 8, 19661, 32768) for k in range(8)] == [int(v) for v in states]
    assert freeze_thresholds(0.3, 0.2) == (19661, 32768)
