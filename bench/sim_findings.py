"""The simulator's findings, as markdown tables for docs/simulator.md (and CSVs in bench/results/).

1. When is an SLT chip worth building: each preset on each workload, per inference in the steady
   state, at the presets' SRAM (masks/weights stream from DRAM) and with a weight SRAM that holds
   the whole model ("fits"), with silicon area.
2. Iso-area: every design at dense-4k's area, spending the difference on PEs or activation SRAM.
3. Hiddenite against its published efficiency, and what each named assumption moves.
4. Transformer decode (weights dominate): SLT, binary, ternary, dense.

    .venv/bin/python bench/sim_findings.py            # about a minute
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from slt_hw.sim import area, config, engine, report, residency, workload

RESULTS = Path(__file__).parent / "results"
DESIGNS = ("hiddenite", "binary-4k", "ternary-4k", "dense-4k")
WORKLOADS = ("conv6-cifar", "resnet18-cifar", "resnet50", "gpt2-decode", "gpt2-prefill")


def row(d, w) -> dict:
    return report.summary(d, w, engine.simulate(d, w))


def fitted(d, w):
    kib = residency.smallest_weight_sram_kib(d, w)
    return d.replace({"sram.weights.kib": max(kib, d.sram.weights.kib) * (1 + 1e-9), "name": f"{d.name}+fit"})


def md(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    out = ["| " + " | ".join(h for h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f(r) if callable(f) else str(r[f]) for _, f in cols) + " |")
    return "\n".join(out)


def save(name: str, rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with (RESULTS / f"{name}.csv").open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=keys)
        wr.writeheader()
        wr.writerows(rows)


def dram(r: dict) -> float:
    return sum(r[f"dram_{k}_bits"] for k in engine.OPERANDS) / 1e6


def worth_building() -> str:
    rows = []
    for wn in WORKLOADS:
        w = workload.ZOO[wn]()
        ref = row(config.load_design("dense-4k"), w)
        for dn in DESIGNS:
            d = config.load_design(dn)
            a, f = row(d, w), row(fitted(d, w), w)
            rows.append({"workload": wn, "design": dn, "model_kib": a["model_bits"] / 8192, "area_mm2": a["area_mm2"],
                         "energy_uj": a["energy_pj"] / 1e6, "x_dense": a["energy_pj"] / ref["energy_pj"],
                         "dram_mbit": dram(a), "ms": a["latency_ms"], "fit_area_mm2": f["area_mm2"],
                         "fit_energy_uj": f["energy_pj"] / 1e6, "fit_dram_mbit": dram(f), "fit_ms": f["latency_ms"],
                         "spills": a["output_spills"]})
    save("sim_findings_worth", rows)
    return md(rows, [("workload", "workload"), ("design", "design"), ("model KiB", lambda r: f"{r['model_kib']:,.0f}"),
                     ("mm²", lambda r: f"{r['area_mm2']:.2f}"), ("µJ", lambda r: f"{r['energy_uj']:.1f}"),
                     ("× dense", lambda r: f"{r['x_dense']:.2f}"), ("DRAM Mbit", lambda r: f"{r['dram_mbit']:.1f}"),
                     ("ms", lambda r: f"{r['ms']:.3f}"), ("fits: mm²", lambda r: f"{r['fit_area_mm2']:.1f}"),
                     ("fits: µJ", lambda r: f"{r['fit_energy_uj']:.1f}"),
                     ("fits: DRAM Mbit", lambda r: f"{r['fit_dram_mbit']:.1f}"),
                     ("fits: ms", lambda r: f"{r['fit_ms']:.3f}")])


def iso_area() -> str:
    rows = []
    target = area.area(config.load_design("dense-4k")).total
    for wn in ("resnet18-cifar", "resnet50", "gpt2-decode"):
        w = workload.ZOO[wn]()
        ref = row(config.load_design("dense-4k"), w)
        for dn in DESIGNS[:-1]:
            for spend in ("pes", "activations"):
                d = area.at_area(config.load_design(dn), target, spend)
                r = row(d, w)
                rows.append({"workload": wn, "design": d.name, "spend": spend, "area_mm2": r["area_mm2"],
                             "energy_uj": r["energy_pj"] / 1e6, "x_dense_energy": r["energy_pj"] / ref["energy_pj"],
                             "ms": r["latency_ms"], "x_dense_latency": r["latency_ms"] / ref["latency_ms"]})
    save("sim_findings_iso_area", rows)
    return md(rows, [("workload", "workload"), ("design at dense-4k's area", "design"), ("spent on", "spend"),
                     ("mm²", lambda r: f"{r['area_mm2']:.2f}"), ("µJ", lambda r: f"{r['energy_uj']:.1f}"),
                     ("× dense energy", lambda r: f"{r['x_dense_energy']:.2f}"), ("ms", lambda r: f"{r['ms']:.3f}"),
                     ("× dense latency", lambda r: f"{r['x_dense_latency']:.2f}")])


def hiddenite() -> str:
    h = config.load_design("hiddenite")
    steps = [("preset (assumptions as in hiddenite.yaml)", {}),
             ("+ supply 0.9 → 0.7 V", {"vdd": 0.7}),
             ("+ whole model on chip (no mask DRAM)", "fit"),
             ("+ 4-bit activations", {"array.act_bits": 4}),
             ("+ output-stationary drain overlapped", {"array.drain": "overlapped"})]
    rows = []
    for wn, published in (("resnet18-cifar", 34.8), ("resnet50", 16.0)):
        w = workload.ZOO[wn]()
        d = h
        for label, upd in steps:
            d = fitted(d, w) if upd == "fit" else d.replace(upd)
            r = row(d, w)
            rows.append({"workload": wn, "published": published, "step": label, "tops_w_onchip": r["tops_per_w_onchip"],
                         "tops_w": r["tops_per_w"], "util": r["utilization"],
                         "sram_share": r["energy_sram_pj"] / (r["energy_pj"] - r["energy_dram_pj"])})
    save("sim_findings_hiddenite", rows)
    return md(rows, [("workload", "workload"), ("published TOPS/W", "published"), ("cumulative assumption", "step"),
                     ("on-chip TOPS/W", lambda r: f"{r['tops_w_onchip']:.1f}"),
                     ("with DRAM", lambda r: f"{r['tops_w']:.1f}"), ("utilisation", lambda r: f"{r['util']:.0%}"),
                     ("SRAM share of on-chip energy", lambda r: f"{r['sram_share']:.0%}")])


def decode() -> str:
    rows = []
    w = workload.ZOO["gpt2-decode"]()
    for dn in DESIGNS:
        d = config.load_design(dn)
        for variant in (d, fitted(d, w)):
            sim = engine.simulate(variant, w)
            r = report.summary(variant, w, sim)
            rows.append({"design": variant.name, "energy_uj": r["energy_pj"] / 1e6, "ms": r["latency_ms"],
                         "dram_w": r["dram_weights_bits"] / 1e6, "dram_a": r["dram_activations_bits"] / 1e6,
                         "dram_share": r["energy_dram_pj"] / r["energy_pj"], "area_mm2": r["area_mm2"]})
    save("sim_findings_decode", rows)
    return md(rows, [("design", "design"), ("µJ per token", lambda r: f"{r['energy_uj']:.1f}"),
                     ("ms per token", lambda r: f"{r['ms']:.3f}"),
                     ("DRAM weights/masks Mbit", lambda r: f"{r['dram_w']:.2f}"),
                     ("DRAM activations (KV cache) Mbit", lambda r: f"{r['dram_a']:.2f}"),
                     ("DRAM share of energy", lambda r: f"{r['dram_share']:.0%}"),
                     ("mm²", lambda r: f"{r['area_mm2']:.1f}")])


def main() -> None:
    for title, fn in (("When the SLT chip wins", worth_building), ("Iso-area", iso_area),
                      ("Hiddenite against its published efficiency", hiddenite), ("GPT-2 decode", decode)):
        print(f"### {title}\n\n{fn()}\n", flush=True)
    print(f"(csv: {RESULTS}/sim_findings_*.csv)", file=sys.stderr)


if __name__ == "__main__":
    main()
