"""Simulator speed (not a timed test).

1. Against SCALE-Sim on the same layers: our cycle mode (the array edges stepped cycle by cycle)
   and analytical mode on each validation network in the SCALE-Sim-compatible configuration,
   against SCALE-Sim's wall time on the same topology, array and dataflow: timed live in this run
   when the side environment exists (.venv-scalesim, made by bench/scalesim_reference.py; by
   default the quickest run, --live RUN,... or --live all for others), else the wall times committed
   in tests/golden/scalesim/meta.json (the table says which). Target: >= 100x.
2. Our modes on ResNet-50 with the presets (target: analytical < 50 ms on the whole network).
Median of repeated runs after a warm-up (numba compiled).

    .venv/bin/python bench/bench_sim.py
    .venv/bin/python bench/bench_sim.py --live all       # every SCALE-Sim run again (~40 min)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from utils import median_seconds, report

from slt_hw.sim import config, engine, scalesim, workload

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "golden" / "scalesim"


def _ours(net: str, rows: int, df: str, mode: str) -> tuple[float, float]:
    d = scalesim.compatible(rows, rows, df)
    w = workload.from_csv(REF / f"{net}.csv")
    cycles = sum(engine.simulate_layer(d, L, mode).compute_cycles for L in w.layers)
    s = median_seconds(lambda: [engine.simulate_layer(d, L, mode) for L in w.layers], repeat=5, warmup=1)
    return s, cycles


def against_scalesim(live: set[str]) -> list[dict]:
    meta = json.loads((REF / "meta.json").read_text())
    rows = []
    for run, info in sorted(meta["runs"].items()):
        net, arr, df = run.rsplit("_", 2)
        size = int(arr.split("x")[0])
        theirs, source = info["wall_s"], "committed"
        if run in live:
            from scalesim_reference import VENV, run_one, side_python

            kind = scalesim.topologies()[net][0]
            _, theirs = run_one(side_python(VENV), net, kind, REF / f"{net}.csv", size, size, df)
            source = "live"
        cyc_s, cycles = _ours(net, size, df, "cycle")
        ana_s, _ = _ours(net, size, df, "analytical")
        rows.append({"network": net, "array": arr, "dataflow": df, "layers": info["layers"],
                     "sim cycles": int(cycles), "SCALE-Sim s": round(theirs, 1), "(timed)": source,
                     "cycle mode ms": round(cyc_s * 1e3, 2), "x faster (cycle)": round(theirs / cyc_s),
                     "analytical ms": round(ana_s * 1e3, 2), "x faster (analytical)": round(theirs / ana_s)})
    return rows


def presets() -> list[dict]:
    rows = []
    r50 = workload.ZOO["resnet50"]()
    for preset in ("hiddenite", "dense-4k"):
        for df in ("output_stationary", "weight_stationary"):
            d = config.load_design(preset).replace({"dataflow": df})
            for mode in ("cycle", "analytical"):
                res = engine.simulate(d, r50, mode)
                s = median_seconds(lambda d=d, mode=mode: engine.simulate(d, r50, mode), repeat=5, warmup=1)
                rows.append({"what": f"{mode}, whole ResNet-50 (first + steady)", "design": preset, "dataflow": df,
                             "tiles": sum(r.folds for r in res.layers), "sim cycles": int(res.cycles),
                             "ms": round(s * 1e3, 2), "M cycles/s": round(res.cycles / s / 1e6, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--live", default="conv6-cifar_128x128_os",
                    help="SCALE-Sim runs to time now (comma-separated, 'all' or 'none'; needs .venv-scalesim; "
                         "default the quickest)")
    args = ap.parse_args()
    from scalesim_reference import VENV

    runs = set(json.loads((REF / "meta.json").read_text())["runs"])
    live = runs if args.live == "all" else {x for x in args.live.split(",") if x and x != "none"}
    if live - runs:
        raise SystemExit(f"--live: {sorted(live - runs)} not among {sorted(runs)}")
    if not (VENV / "bin" / "python").exists():
        live = set()  # the tool is not installed here: committed times only
    report("sim_vs_scalesim", against_scalesim(live),
           ["network", "array", "dataflow", "layers", "sim cycles", "SCALE-Sim s", "(timed)", "cycle mode ms",
            "x faster (cycle)", "analytical ms", "x faster (analytical)"])
    report("sim", presets(), ["what", "design", "dataflow", "tiles", "sim cycles", "ms", "M cycles/s"])


if __name__ == "__main__":
    main()
