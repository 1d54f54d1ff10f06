"""The generated hardware, simulated with Amaranth, against the contract: every distribution and
format, edge seeds and names, the golden vectors, stalls on every port (docs/hardware.md)."""

import golden
import pytest
import torch

from slt_hw import formats
from slt_hw.rtl import RtlParams
from slt_hw.rtl import hash as rtl_hash
from slt_hw.rtl.emit import latency
from slt_hw.rtl.pe_model import effective
from slt_hw.rtl.simulate import run_jobs
from slt_hw.rtl.vectors import build_job, make_weight, standard_jobs, unpack_beats

DISTS = ("signed_constant", "uniform", "normal")
FORMATS = ("binary", "multicoat", "frozen")


def _run_tensor(p, w, splits, stall=0.3, seed=1):
    """Jobs over row ranges `splits`; checks every beat, returns the PE's (N, K) float32 weights."""
    jobs = [build_job(p, w, a, b) for a, b in zip(splits[:-1], splits[1:], strict=True)]
    got, _ = run_jobs(p, jobs, stall=stall, seed=seed)
    for g, j in zip(got, jobs, strict=True):
        assert len(g) == len(j.expect)
        bad = [i for i, (a, b) in enumerate(zip(g, j.expect, strict=True)) if a != b]
        assert not bad, f"rows {j.rows}: beats {bad[:5]} differ from the reference"
    levels, codes = unpack_beats(p, [b for g in got for b in g], w.out_features, w.in_features)
    return effective(p, w, levels, codes)


def _bits(t):
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dist", DISTS)
def test_bit_exact_every_dist_and_format_with_stalls(dist, fmt):
    p = RtlParams(dist, fmt, units=2)
    for i, (seed, name) in enumerate(((0, "w"), (2**63 - 1, "ŝlt/π·層"))):
        w = make_weight(p, 6, 40, seed, name, mask_seed=i)  # K = 40: padded rows, a tail word
        eff = _run_tensor(p, w, [0, 2, 6])  # the second job starts mid-stream (frozen: offset and skip)
        assert torch.equal(_bits(eff), _bits(w.materialize()))


@pytest.mark.parametrize("dist,fmt,units,lanes", [
    ("signed_constant", "binary", 3, 32),  # units not a power of two
    ("signed_constant", "multicoat", 1, 4),  # one hash serves 8 beats
    ("signed_constant", "frozen", 1, 8),  # 4 freeze hashes per beat, beats inside a word
    ("signed_constant", "frozen", 2, 32),  # 64-weight beats span rows of 64
    ("normal", "frozen", 4, 1),
    ("uniform", "multicoat", 4, 2),
])
def test_bit_exact_other_widths(dist, fmt, units, lanes):
    p = RtlParams(dist, fmt, units=units, lanes=lanes)
    w = make_weight(p, 2 * units, 64 if fmt == "frozen" and lanes == 32 else 40, 5, "layer.3", mask_seed=3)
    eff = _run_tensor(p, w, [0, units, 2 * units], stall=0.4, seed=units)
    assert torch.equal(_bits(eff), _bits(w.materialize()))


@pytest.mark.parametrize("case", golden.weight_cases(), ids=golden.case_id)
def test_golden_weights_through_the_hardware(case):
    """All-ones binary mask: the PE's weights are W0, held to the golden head and checksum."""
    n, k = case["shape"]
    p = RtlParams(case["dist"], "binary", units=1)
    w = formats.pack_binary(torch.ones(n, k, dtype=torch.bool), seed=case["seed"], name=case["name"],
                            dist=case["dist"])
    golden.check_weights(case, _run_tensor(p, w, [0, n], stall=0.0))


@pytest.mark.parametrize("case", golden.freeze_cases(), ids=golden.case_id)
def test_golden_freeze_states_through_the_hardware(case):
    """Frozen levels with all-ones and all-zeros masks give the states: 0 pruned, locked, free."""
    n, k = case["shape"]
    p = RtlParams("signed_constant", "frozen", units=1)
    lv = []
    for bit in (True, False):
        w = formats.pack_frozen(torch.full((n, k), bit), seed=case["seed"], name=case["name"],
                                p_prune=case["p_prune"], p_lock=case["p_lock"])
        got, _ = run_jobs(p, [build_job(p, w, 0, n)], stall=0.0)
        lv.append(unpack_beats(p, got[0], n, k)[0])
    states = torch.where(lv[0] == 0, 0, torch.where(lv[1] == 1, 1, 2)).to(torch.uint8)
    golden.check_freeze(case, states)


def test_golden_hashes_at_counter_extremes():
    """One-step jobs at the golden (k0, k1, counter) triples, counter 2^32 - 1 included."""
    p = RtlParams("signed_constant", "binary", units=1)
    from slt_hw.rtl.vectors import Job

    cases = golden.GOLDEN["hashes"]
    jobs = [Job(cmd={"k0": c["k0"], "k1": c["k1"], "base": c["counter"], "steps": 1}, mask=[(1 << 32) - 1],
                expect=[((1 << 32) - 1, c["hash"])]) for c in cases]
    got, _ = run_jobs(p, jobs, stall=0.3, seed=2)
    assert [g[0][1] for g in got] == [c["hash"] for c in cases]


def test_latency_and_full_rate_without_stalls():
    p = RtlParams("uniform", "binary", units=2)
    w = make_weight(p, 4, 64, 1, "w")
    job = build_job(p, w, 0, 4)
    got, cycles = run_jobs(p, [job], stall=0.0)
    assert got[0] == job.expect
    # the command goes in on the first cycle; one beat per cycle after the pipeline fills
    assert cycles == latency(p) + len(job.expect)


def test_stalls_change_timing_not_values():
    p = RtlParams("normal", "frozen", units=2)
    jobs = standard_jobs(p)
    runs = [run_jobs(p, jobs, stall=s, seed=s_) for s, s_ in ((0.0, 0), (0.5, 3), (0.8, 4))]
    assert all(r[0] == [j.expect for j in jobs] for r in runs)
    assert runs[0][1] < runs[1][1] < runs[2][1]


def test_a_broken_hash_is_caught(monkeypatch):
    """The checks can fail: one multiplier constant off by one bit."""
    monkeypatch.setattr(rtl_hash, "M2", rtl_hash.M2 ^ 1)
    p = RtlParams("signed_constant", "binary", units=1)
    jobs = standard_jobs(p)
    got, _ = run_jobs(p, jobs)
    assert got != [j.expect for j in jobs]
