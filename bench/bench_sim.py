"""Simulator speed (not a timed test): the cycle-level mode on a ResNet-50 3×3 convolution on a
64×64 array (target ≥ 1 M simulated array cycles per second on one core), the analytical mode on
the whole ResNet-50 (target < 50 ms), and the cycle mode on the whole ResNet-50 for reference.
Median of repeated runs after a warm-up (numba compiled).

    .venv/bin/python bench/bench_sim.py
"""

from __future__ import annotations

from utils import median_seconds, report

from slt_hw.sim import config, engine, workload


def main() -> None:
    rows = []
    r50 = workload.ZOO["resnet50"]()
    conv = next(L for L in r50.layers if L.name == "layer1.0.conv2")  # 3x3, 64 -> 64 at 56x56
    for preset in ("hiddenite", "dense-4k"):
        for df in ("output_stationary", "weight_stationary"):
            d = config.load_design(preset).replace({"dataflow": df})
            res = engine.simulate_layer(d, conv, "cycle")
            s = median_seconds(lambda d=d: engine.simulate_layer(d, conv, "cycle"), repeat=21, warmup=3)
            rows.append({"what": f"cycle, {conv.name} (M={conv.M} N={conv.N} K={conv.K})", "design": preset,
                         "dataflow": df, "tiles": res.folds, "sim cycles": int(res.cycles),
                         "ms": round(s * 1e3, 3), "M cycles/s": round(res.cycles / s / 1e6, 1)})
            c = engine.simulate(d, r50, "cycle")
            s = median_seconds(lambda d=d: engine.simulate(d, r50, "cycle"), repeat=9, warmup=1)
            rows.append({"what": "cycle, whole ResNet-50", "design": preset, "dataflow": df,
                         "tiles": sum(r.folds for r in c.layers), "sim cycles": int(c.cycles),
                         "ms": round(s * 1e3, 3), "M cycles/s": round(c.cycles / s / 1e6, 1)})
            a = engine.simulate(d, r50, "analytical")
            s = median_seconds(lambda d=d: engine.simulate(d, r50, "analytical"), repeat=9, warmup=2)
            rows.append({"what": "analytical, whole ResNet-50", "design": preset, "dataflow": df,
                         "tiles": sum(r.folds for r in a.layers), "sim cycles": int(a.cycles),
                         "ms": round(s * 1e3, 3), "M cycles/s": round(a.cycles / s / 1e6, 1)})
    report("sim", rows, ["what", "design", "dataflow", "tiles", "sim cycles", "ms", "M cycles/s"])


if __name__ == "__main__":
    main()
