"""bench/bench_cpu_bounds.py: the instruction probe builds with the system's compiler and reports
this CPU's clock and the instructions it has; a scheme's bound is the longer of its products at
the probed rate and its weight bytes from DRAM."""

import pathlib
import shutil
import sys

import pytest

BENCH = pathlib.Path(__file__).parent.parent / "bench"
sys.path.insert(0, str(BENCH))

bounds = pytest.importorskip("bench_cpu_bounds")

from slt_hw.backends import cpu  # noqa: E402

needs_cxx = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="no C++ compiler")


@needs_cxx
def test_probe_reports_the_clock_and_this_cpus_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(bounds, "RESULTS", tmp_path)
    ghz, probes = bounds.run_probe(iters=20_000)
    assert 0.3 < ghz < 10
    assert (tmp_path / "cpu_bounds").exists()
    isas = cpu.cpu_isas()
    want = {"vpshufb ymm + vpaddb": "avx2" in isas, "vpdpbusd zmm": "avx512vnni" in isas or "amx" in isas}
    for name, available in want.items():
        assert probes[name]["available"] == available, name
    for p in probes.values():
        if p["available"]:  # at most a few cycles an instruction with 12 in flight, and the products it implies
            assert 0.05 < p["cycles_per_instr"] < 20, p
            assert p["macs_per_cycle"] == pytest.approx(p["macs_per_instr"] / p["cycles_per_instr"], rel=0.01)


def test_bound_is_the_longer_of_products_and_dram():
    probe = {"macs_per_cycle": 64.0}
    # 1e9 products at 64 a cycle, 2 GHz, 2 threads: 3.9 ms; 1e6 one-bit weights at 1 GB/s: 0.125 ms
    t, why = bounds.bound_seconds(1e9, 10**6, 1.0, probe, 2.0, 2, 1e9)
    assert why == "products" and t == pytest.approx(1e9 / (64 * 2e9 * 2))
    t, why = bounds.bound_seconds(1e6, 10**9, 8.0, probe, 2.0, 2, 1e9)
    assert why == "DRAM" and t == pytest.approx(1.0)
