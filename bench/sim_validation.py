"""Validation tables for docs/simulator.md: our dense baseline against SCALE-Sim's committed per-layer
numbers (tests/golden/scalesim, made by bench/scalesim_reference.py), in the SCALE-Sim-compatible
configuration and in our default model (which differs on purpose: serial drain, partial sums kept on
chip, 32-bit accumulators, OS outputs requantised to 8 bits).

    .venv/bin/python bench/sim_validation.py
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from slt_hw.sim import engine, scalesim, workload

REF = Path(__file__).resolve().parents[1] / "tests" / "golden" / "scalesim"


def default_model(rows: int, df: str):
    """Our default counting on the same array and SRAM sizes as the compatible design."""
    return scalesim.compatible(rows, rows, df).replace(
        {"array.psum_bits": 32, "array.drain": "serial", "mapping.ws_rows": "fit_outputs",
         "name": f"default-{rows}-{df}"})


def compare(path: Path) -> dict:
    net, arr, df = path.stem.rsplit("_", 2)
    size = int(arr.split("x")[0])
    w = workload.from_csv(REF / f"{net}.csv")
    ref = list(csv.DictReader(path.open()))
    theirs = [int(r["total_cycles"]) + 1 for r in ref]
    out = {"run": path.stem, "network": net, "array": arr, "dataflow": df, "layers": len(ref),
           "scalesim_cycles": sum(theirs)}
    compat = scalesim.compatible(size, size, df)
    worst = 0.0  # access counts (DRAM and SRAM, per operand), compatible configuration
    for L, r in zip(w.layers, ref, strict=True):
        for key, words in scalesim.access_counts(compat, L, engine.simulate_layer(compat, L)).items():
            worst = max(worst, abs(words - int(r[key])) / max(int(r[key]), 1))
    out["access_max_err"] = worst
    for tag, d in (("compat", compat), ("default", default_model(size, df))):
        ours = [engine.simulate_layer(d, L).compute_cycles for L in w.layers]
        err = [abs(a - b) / b for a, b in zip(ours, theirs, strict=True)]
        out.update({f"{tag}_cycles": sum(ours), f"{tag}_max_err": max(err), f"{tag}_mean_err": statistics.mean(err),
                    f"{tag}_per_layer": ours})
    out["theirs_per_layer"] = theirs
    out["names"] = [L.name for L in w.layers]
    return out


def main() -> None:
    runs = [compare(p) for p in sorted(REF.glob("*_*x*_*.csv"))]
    print("| network | array | dataflow | layers | SCALE-Sim cycles | compatible: cycles | max / mean error | "
          "access counts: max error | default model: cycles | max / mean error |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['network']} | {r['array']} | {r['dataflow'].upper()} | {r['layers']} | {r['scalesim_cycles']:,} | "
              f"{r['compat_cycles']:,.0f} | {r['compat_max_err']:.1%} / {r['compat_mean_err']:.1%} | "
              f"{r['access_max_err']:.3%} | "
              f"{r['default_cycles']:,.0f} | {r['default_max_err']:.1%} / {r['default_mean_err']:.1%} |")
    for r in runs:
        if r["network"] != "conv6-cifar" or r["array"] != "32x32":
            continue
        print(f"\nPer layer, conv6-cifar, 32×32, {r['dataflow'].upper()}:\n")
        print("| layer | SCALE-Sim | compatible | default model | default / SCALE-Sim |")
        print("|---|---|---|---|---|")
        for n, t, c, d in zip(r["names"], r["theirs_per_layer"], r["compat_per_layer"], r["default_per_layer"],
                              strict=True):
            print(f"| {n} | {t:,} | {c:,.0f} | {d:,.0f} | {d / t:.3f} |")


if __name__ == "__main__":
    main()
