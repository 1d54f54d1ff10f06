"""The numba contract of the simulator (slt_hw.sim.rng) against the golden vectors, the scalar
spec (tests/contract_spec.py) and the vectorised PyTorch reference."""

from __future__ import annotations

import contract_spec as spec
import golden
import numba
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw.contract import Dist, Key, Stream, default_scale, derive_key, freeze_thresholds
from slt_hw.reference import prng
from slt_hw.sim import rng

U32 = st.integers(0, 2**32 - 1)


def _code(dist: str) -> int:
    return Dist.parse(dist).code


# --------------------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("case", golden.GOLDEN["hashes"], ids=lambda c: f"{c['k0']}-{c['k1']}-{c['counter']}")
def test_golden_hashes(case):
    assert int(rng.hash32(case["k0"], case["k1"], case["counter"])) == case["hash"]


@pytest.mark.parametrize("case", golden.weight_cases(), ids=golden.case_id)
def test_golden_weights(case):
    n, k = case["shape"]
    scale = golden.f32_from_bits(case["scale_f32_bits"])
    w = rng.generate_weights(case["k0"], case["k1"], n, k, _code(case["dist"]), scale)
    assert w.dtype == np.float32 and w.flags.c_contiguous
    golden.check_weights(case, w)
    # The same from (seed, name) with the contract's default scale.
    key = derive_key(case["seed"], case["name"], Stream.WEIGHTS)
    assert (key.k0, key.k1) == (case["k0"], case["k1"])
    golden.check_weights(case, rng.generate_weights_for(key, n, k, case["dist"]))
    golden.check_weights(case, rng.generate_weights_for(key, n, k, Dist.parse(case["dist"]), scale))


@pytest.mark.parametrize("case", golden.freeze_cases(), ids=golden.case_id)
def test_golden_freeze(case):
    n, k = case["shape"]
    s = rng.freeze_states(case["k0"], case["k1"], n, k, case["prune_threshold"], case["lock_threshold"])
    assert s.dtype == np.uint8
    golden.check_freeze(case, s)
    key = derive_key(case["seed"], case["name"], Stream.FREEZE)
    golden.check_freeze(case, rng.freeze_states_for(key, n, k, case["p_prune"], case["p_lock"]))


# --------------------------------------------------------------------------- scalar helpers


@settings(max_examples=200, deadline=None)
@given(k0=U32, k1=U32, c=U32)
def test_hash32_matches_spec(k0, k1, c):
    assert int(rng.hash32(k0, k1, c)) == spec.h(k0, k1, c)
    assert int(rng.lowbias32(c)) == spec.lowbias32(c)


def test_hash32_edges():
    for k0, k1, c in [(0, 0, 0), (2**32 - 1,) * 3, (0, 2**32 - 1, 2**32 - 1), (2**32 - 1, 0, 0)]:
        assert int(rng.hash32(k0, k1, c)) == spec.h(k0, k1, c)


@pytest.mark.parametrize("dist", ["signed_constant", "uniform", "normal"])
def test_scalar_helpers_match_arrays(dist):
    key, n, k = derive_key(5, "scalar", 0), 3, 45
    kp = 32 * ((k + 31) // 32)
    scale = default_scale(dist, k)
    w = rng.generate_weights(key.k0, key.k1, n, k, _code(dist), scale)
    x = rng.chunks16(key.k0, key.k1, n, k)
    words = rng.sign_words(key.k0, key.k1, n, k)
    table = spec.normal_table()
    for r in range(n):
        for c in range(k):
            v = rng.weight_value(key.k0, key.k1, r, c, kp, _code(dist), scale)
            assert np.float32(v).view(np.uint32) == w[r, c].view(np.uint32)
            assert v == spec.weight(key.k0, key.k1, r, c, k, dist, scale, table)
            x_rc = spec.chunk16(key.k0, key.k1, r, c, k)
            assert int(rng.chunk16(key.k0, key.k1, r, c, kp)) == x[r, c] == x_rc
            assert rng.freeze_state(key.k0, key.k1, r, c, kp, 20000, 40000) == spec.freeze_state(
                key.k0, key.k1, r, c, k, 20000, 40000)
        for j in range(words.shape[1]):
            assert int(rng.sign_word(key.k0, key.k1, r, j, words.shape[1])) == words[r, j]


def test_float32_arithmetic():
    # A float64 promotion would not change these bits (the products are exact in binary64),
    # but it would be slower and unlike the hardware: the value helpers must stay float32.
    rng.weight_value(1, 2, 0, 0, 32, 1, 0.5)
    for f in (rng.weight_value, rng._uniform, rng._normal):
        assert all(sig.return_type == numba.float32 for sig in f.nopython_signatures)


def test_normal_table():
    assert rng.NORMAL_TABLE.dtype == np.float32 and rng.NORMAL_TABLE.shape == (4096,)
    np.testing.assert_array_equal(rng.NORMAL_TABLE, prng.normal_table().numpy())


# --------------------------------------------------------------------------- hash counts, errors


def test_hash_count():
    assert rng.hash_count(3, 37, 0) == 3 * 2
    assert rng.hash_count(3, 37, 1) == rng.hash_count(3, 37, 2) == 3 * 64 // 2
    assert rng.hash_count(7, 64, 0) == 14 and rng.hash_count(7, 64, 1) == 7 * 32
    with pytest.raises(ValueError):
        rng.hash_count(1, 1, 3)


def test_errors():
    with pytest.raises(ValueError):
        rng.generate_weights(0, 0, 2, 2, 3, 1.0)
    with pytest.raises(ValueError):
        rng.generate_weights(0, 0, 0, 2, 0, 1.0)
    with pytest.raises(ValueError):  # refused before allocating: 2**27 + 1 rows of 32
        rng.generate_weights(0, 0, 2**27 + 1, 32, 0, 1.0)
    with pytest.raises(ValueError):
        rng.freeze_states(0, 0, 2**27 + 1, 1, 0, 0)
    with pytest.raises(ValueError):
        rng.generate_weights_for(Key(0, 0), 2, 2, "bernoulli", 1.0)
    with pytest.raises(ValueError):
        rng.generate_weights_for(Key(0, 0), 2, 2, "uniform", -1.0)


# --------------------------------------------------------------------------- vs the reference


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**63 - 1),
    n=st.integers(1, 40),
    k=st.integers(1, 700),
    dist=st.sampled_from(["signed_constant", "uniform", "normal"]),
    scale=st.floats(1e-3, 10.0),
)
def test_weights_match_reference(seed, n, k, dist, scale):
    key = derive_key(seed, "layers.3.mlp", Stream.WEIGHTS)
    w = rng.generate_weights_for(key, n, k, dist, scale)
    ref = prng.generate(key, n, k, dist, scale).numpy()
    np.testing.assert_array_equal(w.view(np.uint32), ref.view(np.uint32))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**63 - 1),
    n=st.integers(1, 40),
    k=st.integers(1, 700),
    p_prune=st.floats(0.0, 1.0),
    frac_lock=st.floats(0.0, 1.0),
)
def test_freeze_and_streams_match_reference(seed, n, k, p_prune, frac_lock):
    key = derive_key(seed, "conv.7", Stream.FREEZE)
    p_lock = (1.0 - p_prune) * frac_lock * 0.999
    prune_thr, lock_thr = freeze_thresholds(p_prune, p_lock)
    ref = prng.freeze_states(key, n, k, prune_thr, lock_thr).numpy()
    np.testing.assert_array_equal(rng.freeze_states(key.k0, key.k1, n, k, prune_thr, lock_thr), ref)
    np.testing.assert_array_equal(rng.chunks16(key.k0, key.k1, n, k), prng.half_words(key, n, k).numpy())
    words = prng.sign_words(key, n, k).to(torch.int64).numpy().astype(np.uint32)
    np.testing.assert_array_equal(rng.sign_words(key.k0, key.k1, n, k), words)
