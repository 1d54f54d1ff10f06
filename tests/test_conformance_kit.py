"""The conformance kit (python -m slt_hw.contract): its vectors agree with the independent spec
(tests/spec_numpy.py, tests/contract_spec.py), slt_hw's worked answer passes the checker, and the
checker catches one wrong bit, a missing file and a malformed one."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import spec_numpy as spec
from contract_spec import fnv1a64, h, key

from slt_hw.contract.__main__ import main
from slt_hw.contract.kit import FILES, answer, check, write_vectors


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("kit")
    write_vectors(root / "vectors")
    answer(root / "vectors", root / "results")
    return root


def _cases(kit, kind):
    doc = json.loads((kit / "vectors" / f"{kind}.json").read_text(encoding="utf-8"))
    assert doc["kind"] == kind and doc["contract_version"] == 1 and doc["description"] and doc["inputs"]
    return doc["cases"]


def _f32(bits) -> np.ndarray:
    return np.array(bits, dtype=np.uint32).view(np.float32)


def test_vectors_agree_with_the_independent_spec(kit):
    for c in _cases(kit, "keys"):
        i, e = c["inputs"], c["expected"]
        k0, k1 = key(int(i["seed"], 16), i["name"], i["stream"])
        assert (e["k0"], e["k1"], int(e["fnv1a64"], 16)) == (k0, k1, fnv1a64(i["name"].encode())), c["id"]
    for c in _cases(kit, "hash"):
        assert c["expected"]["h"] == h(c["inputs"]["k0"], c["inputs"]["k1"], c["inputs"]["counter"]), c["id"]
    subnormal = False
    for c in _cases(kit, "weights"):
        i = c["inputs"]
        s = _f32([i["scale_bits"]])[0]
        w = spec.weights(int(i["seed"], 16), i["name"], *i["shape"], i["dist"], s)
        assert w.view(np.uint32).reshape(-1).tolist() == c["expected"]["w0_bits"], c["id"]
        subnormal |= 0 < abs(s) < np.finfo(np.float32).tiny
    assert subnormal  # a subnormal scale is among them (docs/rng.md: subnormals are kept)
    for c in _cases(kit, "freeze"):
        i = c["inputs"]
        st = spec.freeze_states(int(i["seed"], 16), i["name"], *i["shape"], i["prune_threshold"], i["lock_threshold"])
        assert st.reshape(-1).tolist() == c["expected"]["states"], c["id"]
    formats = set()
    for c in _cases(kit, "masks"):
        i = c["inputs"]
        seed, (n, k) = int(i["seed"], 16), i["shape"]
        w0 = spec.weights(seed, i["name"], n, k, i["dist"], _f32([i["scale_bits"]])[0])
        formats.add(i["format"])
        if i["format"] == "frozen":
            st = spec.freeze_states(seed, i["name"], n, k, i["prune_threshold"], i["lock_threshold"])
            words = np.array(i["free_bits"], dtype=np.uint32)
            bits = ((words[:, None] >> np.arange(32, dtype=np.uint32)) & 1).reshape(-1)
            levels, coats = spec.frozen_mask(st, bits), np.ones(1, np.float32)
        else:
            coats = _f32(i["coat_scale_bits"])
            words = np.array(i["planes"], dtype=np.uint32).reshape(len(coats), n, -1)
            bits = ((words[..., None] >> np.arange(32, dtype=np.uint32)) & 1).reshape(len(coats), n, -1)[..., :k]
            levels = bits.sum(0)
            assert all((bits[j + 1] <= bits[j]).all() for j in range(len(coats) - 1))  # nested
        w = spec.effective(w0, levels, coats)
        assert w.view(np.uint32).reshape(-1).tolist() == c["expected"]["w_eff_bits"], c["id"]
    assert formats == {"binary", "multicoat", "frozen"}


def test_worked_answer_passes_and_one_wrong_bit_fails(kit, tmp_path):
    ok, lines = check(kit / "vectors", kit / "results")
    assert ok and len(lines) == len(FILES), lines
    bad = tmp_path / "bad"
    bad.mkdir()
    for kind in FILES:
        (bad / f"{kind}.json").write_text((kit / "results" / f"{kind}.json").read_text())
    doc = json.loads((bad / "weights.json").read_text())
    doc["cases"][5]["outputs"]["w0_bits"][7] ^= 1
    (bad / "weights.json").write_text(json.dumps(doc))
    ok, lines = check(kit / "vectors", bad)
    want = f"weights: {len(doc['cases']) - 1}/{len(doc['cases'])} cases match; first mismatch: case " \
           f"{doc['cases'][5]['id']!r}: w0_bits[7]"
    assert not ok and any(line.startswith(want) for line in lines), lines
    (bad / "hash.json").unlink()
    assert not check(kit / "vectors", bad)[0]
    (bad / "weights.json").write_text((kit / "results" / "weights.json").read_text())
    ok, lines = check(kit / "vectors", bad, partial=True)
    assert ok and "hash: skipped" in lines[1], lines
    (bad / "keys.json").write_text("[1, 2]")
    ok, lines = check(kit / "vectors", bad, partial=True)
    assert not ok and lines[0].startswith("keys: FAIL: ") and str(bad / "keys.json") in lines[0]


def test_command_line(kit, tmp_path, capsys):
    assert main(["vectors", "--out", str(tmp_path / "v")]) == 0
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == sorted(f"{k}.json" for k in FILES)
    assert (tmp_path / "v" / "masks.json").read_bytes() == (kit / "vectors" / "masks.json").read_bytes()  # stable
    assert main(["check", "--vectors", str(tmp_path / "v"), "--results", str(kit / "results")]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["check", "--vectors", str(tmp_path / "v"), "--results", str(tmp_path / "none")]) == 1
    assert "nothing checked" in capsys.readouterr().out
    assert main(["check", "--vectors", str(tmp_path / "missing"), "--results", str(kit / "results")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "missing") in err[0]
    out = subprocess.run([sys.executable, "-P", "-m", "slt_hw.contract", "vectors", "--out", str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and (tmp_path / "w" / "keys.json").is_file(), out.stderr
