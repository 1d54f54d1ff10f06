"""Tables (rich), CSV rows and PNG plots (matplotlib, Agg backend) of simulation results."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape  # sweep design names carry [field=value] labels

from .config import Design
from .engine import ENERGY_PARTS, OPERANDS, Result, gen_bits
from .workload import Workload, model_bits


def summary(d: Design, w: Workload, r: Result, inferences: int = 1) -> dict:
    """One flat row per (design, workload): per inference in the steady state (every inference after
    the first), the first (cold) inference beside it, and totals over `inferences`."""
    from .area import area

    e, e1 = r.energy(steady=True), r.energy()
    dram, dram1 = r.dram_bits(steady=True), r.dram_bits()
    cyc, cyc1 = r.total("cycles", steady=True), r.cycles
    row = {"design": d.name, "workload": w.name, "mode": r.mode, "cycles": cyc,
           "latency_ms": cyc / (d.clock_mhz * 1e3), "utilization": w.macs / (cyc * d.array.pes),
           "macs": w.macs, "model_bits": model_bits(w, d.weights.kind, d.weights.bits, d.mask_memory),
           "peak_onchip_bits": r.peak_onchip_bits,
           **{f"dram_{k}_bits": v for k, v in dram.items()},
           **{f"energy_{k}_pj": v for k, v in e.items()}}
    row["energy_pj"] = sum(e.values())
    row["tops_per_w"] = 2 * w.macs / row["energy_pj"]  # 2 ops per MAC; ops/pJ = TOPS/W
    row["tops_per_w_onchip"] = 2 * w.macs / (row["energy_pj"] - e["dram"])  # chip papers exclude DRAM
    row.update({"first_cycles": cyc1, "first_latency_ms": cyc1 / (d.clock_mhz * 1e3),
                "first_dram_bits": sum(dram1.values()), "first_energy_pj": sum(e1.values()),
                "inferences": inferences,
                "total_energy_pj": sum(e1.values()) + (inferences - 1) * row["energy_pj"],
                "total_cycles": cyc1 + (inferences - 1) * cyc,
                "weights_pinned": sum(1 for x, L in zip(r.steady, w.layers, strict=True)
                                      if L.has_weights and x.io.weights_resident),
                "weight_layers": sum(1 for L in w.layers if L.has_weights),
                "output_spills": sum(1 for x in r.layers[:-1] if not x.io.output_resident),
                "area_mm2": area(d).total})
    return row


def comparison_table(rows: list[dict], reference: str | None = None):
    from rich.table import Table

    ref = next((r for r in rows if r["design"] == reference), rows[0])
    t = Table(title=f"{rows[0]['workload']}: designs vs baselines, per inference in the steady state "
                    f"({rows[0]['mode']} mode; ratios vs {ref['design']})")
    cols = ["design", "mm²", "cycles", "ms", "util", "model Mbit", "DRAM Mbit", "energy µJ", "TOPS/W",
            "on-chip TOPS/W", "× energy", "× DRAM", "× model"]
    for c in cols:
        t.add_column(c, justify="left" if c == "design" else "right")
    for r in rows:
        dram = sum(r[f"dram_{k}_bits"] for k in OPERANDS)
        ref_dram = sum(ref[f"dram_{k}_bits"] for k in OPERANDS)
        t.add_row(escape(r["design"]), f"{r['area_mm2']:.2f}", f"{r['cycles']:,.0f}", f"{r['latency_ms']:.3f}",
                  f"{r['utilization']:.1%}", f"{r['model_bits'] / 1e6:.2f}", f"{dram / 1e6:.1f}",
                  f"{r['energy_pj'] / 1e6:.1f}", f"{r['tops_per_w']:.2f}", f"{r['tops_per_w_onchip']:.2f}",
                  f"{r['energy_pj'] / ref['energy_pj']:.3f}", f"{dram / max(ref_dram, 1e-9):.3f}",
                  f"{r['model_bits'] / max(ref['model_bits'], 1):.3f}")
    return t


def residency_table(rows: list[dict], fits: list[dict | None]):
    """First vs steady-state inference, and each design with a weight SRAM that holds its model."""
    from rich.table import Table

    t = Table(title="residency: first inference, steady state, and with the whole model on chip")
    cols = ["design", "model KiB", "pinned layers", "act. spills", "first DRAM Mbit", "first µJ", "first ms",
            "steady DRAM Mbit", "steady µJ", "steady ms", "fit: weight KiB", "fit: mm²", "fit: µJ", "fit: ms"]
    for c in cols:
        t.add_column(c, justify="left" if c == "design" else "right")
    for r, f in zip(rows, fits, strict=True):
        dram = sum(r[f"dram_{k}_bits"] for k in OPERANDS)
        fit = ["—"] * 4 if f is None else [f"{f['model_bits'] / 8192:,.0f}", f"{f['area_mm2']:.1f}",
                                          f"{f['energy_pj'] / 1e6:.1f}", f"{f['latency_ms']:.3f}"]
        t.add_row(escape(r["design"]), f"{r['model_bits'] / 8192:,.0f}",
                  f"{r['weights_pinned']}/{r['weight_layers']}", str(r["output_spills"]),
                  f"{r['first_dram_bits'] / 1e6:.1f}", f"{r['first_energy_pj'] / 1e6:.1f}",
                  f"{r['first_latency_ms']:.3f}", f"{dram / 1e6:.1f}", f"{r['energy_pj'] / 1e6:.1f}",
                  f"{r['latency_ms']:.3f}", *fit)
    return t


def supply_rows(d: Design) -> list[dict]:
    """Each operand's peak supply against the array's demand at full rate (bits or weights a cycle).
    A ratio below 1 starves the array by construction."""
    R, C = d.array.rows, d.array.cols
    ab, pb = d.array.act_bits, d.array.psum_bits
    os_ = d.dataflow == "output_stationary"
    s = d.sram
    rows = [{"operand": "activations (SRAM port)", "demand": R * ab, "supply": s.activations.bits_per_cycle,
             "unit": "bits"}]
    if d.is_slt:
        gb = gen_bits(d.weights.dist)
        fan = d.generator.fanout if os_ else 1
        rows.append({"operand": f"weights (generators, fanout {fan})", "demand": C,
                     "supply": d.generator.weights_per_cycle(gb) * fan, "unit": "weights"})
        rows.append({"operand": "masks (SRAM port)", "demand": C / fan, "supply": s.weights.bits_per_cycle,
                     "unit": "bits"})
    else:
        rows.append({"operand": "weights (SRAM port)", "demand": C * d.weights.stored_bits,
                     "supply": s.weights.bits_per_cycle, "unit": "bits"})
    out = C * ab if os_ else 2 * C * pb
    rows.append({"operand": "outputs (SRAM port, " + ("drain)" if os_ else "psum read-modify-write)"),
                 "demand": out, "supply": s.outputs.bits_per_cycle, "unit": "bits"})
    for r in rows:
        r["ratio"] = r["supply"] / r["demand"]
    return rows


def supply_table(designs: list[Design]):
    from rich.table import Table

    t = Table(title="peak supply vs the array's demand per cycle (ratio < 1: starved by construction)")
    for c in ("design", "operand", "demand", "supply", "unit", "supply/demand"):
        t.add_column(c, justify="left" if c in ("design", "operand", "unit") else "right")
    for d in designs:
        for r in supply_rows(d):
            ratio = f"{r['ratio']:.2f}" if r["ratio"] >= 1 else f"[red]{r['ratio']:.2f}[/red]"
            t.add_row(escape(d.name), r["operand"], f"{r['demand']:g}", f"{r['supply']:g}", r["unit"], ratio)
    return t


def area_table(designs: list[Design]):
    from rich.table import Table

    from .area import area

    t = Table(title="silicon area (mm², sim/area.py; wires, control and pads not counted)")
    keys = list(area(designs[0]).parts())
    t.add_column("design")
    for k in keys:
        t.add_column(k, justify="right")
    for d in designs:
        t.add_row(escape(d.name), *(f"{v:.3f}" for v in area(d).parts().values()))
    return t


def energy_table(rows: list[dict]):
    from rich.table import Table

    t = Table(title="energy breakdown (µJ per inference, steady state)")
    t.add_column("design")
    for k in ENERGY_PARTS:
        t.add_column(k, justify="right")
    t.add_column("total", justify="right")
    for r in rows:
        parts = (f"{r[f'energy_{k}_pj'] / 1e6:.2f}" for k in ENERGY_PARTS)
        t.add_row(escape(r["design"]), *parts, f"{r['energy_pj'] / 1e6:.2f}")
    return t


def traffic_table(rows: list[dict], results: list) -> object:
    """DRAM and SRAM bits per operand (Mbit) and peak on-chip memory of each design."""
    from rich.table import Table

    t = Table(title="traffic per inference, steady state (Mbit), and peak on-chip memory")
    cols = ["design", "DRAM act", "DRAM w/mask", "DRAM out", "SRAM act r/w", "SRAM w/mask r/w", "SRAM out r/w",
            "generated Mbit", "peak KiB"]
    for c in cols:
        t.add_column(c, justify="left" if c == "design" else "right")
    for row, res in zip(rows, results, strict=True):
        sr = {k: sum(r.sram_bits[k] for r in res.steady) / 1e6 for k in res.steady[0].sram_bits}
        ops = ("activations", "weights", "outputs")
        t.add_row(escape(row["design"]), *(f"{row[f'dram_{k}_bits'] / 1e6:.1f}" for k in ops),
                  *(f"{sr[f'{op}_read']:.1f} / {sr[f'{op}_write']:.1f}" for op in ops),
                  f"{res.total('generated_bits', steady=True) / 1e6:.1f}", f"{row['peak_onchip_bits'] / 8192:.0f}")
    return t


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def plot_energy(rows: list[dict], path: Path) -> Path:
    """Stacked energy per inference (steady state) by part, one bar per design."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.4 * len(rows) + 3, 4.2))
    names = [r["design"] for r in rows]
    bottom = [0.0] * len(rows)
    for k in ENERGY_PARTS:
        vals = [r[f"energy_{k}_pj"] / 1e6 for r in rows]
        ax.bar(names, vals, bottom=bottom, label=k)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    for i, tot in enumerate(bottom):
        ax.annotate(f"{tot:.1f}", (i, tot), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("energy per inference (µJ)")
    ax.set_title(f"{rows[0]['workload']}: energy per inference by part (steady state)")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_memory(rows: list[dict], path: Path) -> Path:
    """Stored model (weights or masks, Mbit) per workload and design, log scale, values on the bars."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter

    workloads = sorted({r["workload"] for r in rows})
    designs = list(dict.fromkeys(r["design"] for r in rows))
    fig, ax = plt.subplots(figsize=(2.2 * len(workloads) + 3, 4.2))
    width = 0.8 / len(designs)
    low = min((r["model_bits"] / 1e6 for r in rows if r["model_bits"] > 0), default=1.0)
    for i, d in enumerate(designs):
        vals = [next((r["model_bits"] / 1e6 for r in rows if r["design"] == d and r["workload"] == w), 0)
                for w in workloads]
        bars = ax.bar([j + i * width for j in range(len(workloads))], vals, width, label=d)
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in vals], fontsize=7, padding=1)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))], workloads)
    ax.set_yscale("log")
    ax.set_ylim(bottom=low / 5)  # the smallest bar keeps a readable height
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylabel("stored weights or masks (Mbit, log scale)")
    ax.set_title("model storage per design")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (both minimised)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], float("inf")
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(rows: list[dict], path: Path, label: str = "design") -> Path:
    """Latency against energy per inference, one panel per workload: grid points, their Pareto
    front (labelled with the grid values) and the fixed designs (baselines) named."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter, LogLocator

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    n = len(workloads)
    cols = min(n, 2)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(6.2 * cols, 4.6 * ((n + cols - 1) // cols)),
                             squeeze=False)
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for ax, w in zip(axes.flat, workloads, strict=False):
        sub = [r for r in rows if r["workload"] == w]
        grid = [r for r in sub if "[" in str(r[label])]
        fixed = [r for r in sub if "[" not in str(r[label])]
        pts = [(r["latency_ms"], r["energy_pj"] / 1e6) for r in grid]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=14, alpha=0.45, color="tab:blue", label="grid points")
            front = sorted(pareto_front(pts), key=lambda i: pts[i][0])
            ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-o", ms=4, color="tab:blue",
                    label="Pareto front")
            for i in front:
                ax.annotate(str(grid[i][label]).split("[", 1)[1].rstrip("]"), pts[i], fontsize=6,
                            textcoords="offset points", xytext=(3, 3))
        for j, r in enumerate(fixed):
            ax.scatter([r["latency_ms"]], [r["energy_pj"] / 1e6], marker="s", s=40, color=f"C{j + 1}",
                       label=str(r[label]), zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(fmt)
            axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xlabel("latency per inference (ms)")
        ax.set_ylabel("energy per inference (µJ)")
        ax.set_title(w)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle("design space: energy against latency (steady state), lower left is better")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def layer_rows(d: Design, r: Result) -> list[dict]:
    """Per-layer rows of the first and the steady-state inference: cycles, bounds, utilisation, DRAM
    and SRAM bits per operand, energy parts, and where the operands lived (residency)."""
    return [{"design": d.name, "workload": r.workload, "mode": r.mode, "inference": which, "layer": x.name,
             "macs": x.macs, "cycles": x.cycles, "compute_cycles": x.compute_cycles, "folds": x.folds,
             "utilization": x.utilization,
             **{f"bound_{k}": v for k, v in x.bounds.items()},
             **{f"dram_{k}_bits": v for k, v in x.dram_bits.items()},
             **{f"sram_{k}_bits": v for k, v in x.sram_bits.items()},
             "generated_bits": x.generated_bits, "peak_onchip_bits": x.peak_onchip_bits,
             **{f"energy_{k}_pj": v for k, v in x.energy_pj.items()}, "residency": x.io.note}
            for which, layers in (("first", r.layers), ("steady", r.steady)) for x in layers]


def spill_table(r: Result):
    """Layers whose output left the chip, and why (the first design of a comparison)."""
    from rich.table import Table

    t = Table(title=f"{r.design}: layers whose output goes to DRAM (activation SRAM too small)")
    t.add_column("layer")
    t.add_column("why")
    for x in r.layers[:-1]:
        if not x.io.output_resident:
            t.add_row(escape(x.name), escape(x.io.note.split("out: ", 1)[-1]))
    return t


def write_csv(rows: list[dict], path: Path) -> Path:
    import csv

    keys = list(dict.fromkeys(k for r in rows for k in r))
    with Path(path).open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=keys)
        wr.writeheader()
        wr.writerows(rows)
    return Path(path)
