"""Tables (rich), CSV rows and PNG plots (matplotlib, Agg backend) of simulation results."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape  # sweep design names carry [field=value] labels

from .config import Design
from .engine import ENERGY_PARTS, Result
from .workload import Workload, model_bits


def summary(d: Design, w: Workload, r: Result) -> dict:
    """One flat row per (design, workload): the numbers the tables, CSVs and plots use."""
    e = r.energy()
    dram = r.dram_bits()
    row = {"design": d.name, "workload": w.name, "mode": r.mode, "cycles": r.cycles,
           "latency_ms": r.cycles / (d.clock_mhz * 1e3),
           "utilization": w.macs / (r.cycles * d.array.pes),
           "macs": w.macs, "model_bits": model_bits(w, d.weights.kind, d.weights.bits, d.mask_memory),
           "peak_onchip_bits": r.peak_onchip_bits,
           **{f"dram_{k}_bits": v for k, v in dram.items()},
           **{f"energy_{k}_pj": v for k, v in e.items()}}
    row["energy_pj"] = sum(e.values())
    row["tops_per_w"] = 2 * w.macs / row["energy_pj"]  # 2 ops per MAC; ops/pJ = TOPS/W
    row["tops_per_w_onchip"] = 2 * w.macs / (row["energy_pj"] - e["dram"])  # chip papers exclude DRAM
    return row


def comparison_table(rows: list[dict], reference: str | None = None):
    from rich.table import Table

    ref = next((r for r in rows if r["design"] == reference), rows[0])
    t = Table(title=f"{rows[0]['workload']}: designs vs baselines ({rows[0]['mode']} mode; ratios vs {ref['design']})")
    cols = ["design", "cycles", "ms", "util", "model Mbit", "DRAM Mbit", "energy µJ", "TOPS/W", "on-chip TOPS/W",
            "× energy", "× DRAM", "× model"]
    for c in cols:
        t.add_column(c, justify="left" if c == "design" else "right")
    for r in rows:
        dram = sum(r[f"dram_{k}_bits"] for k in ("activations", "weights", "outputs"))
        ref_dram = sum(ref[f"dram_{k}_bits"] for k in ("activations", "weights", "outputs"))
        t.add_row(escape(r["design"]), f"{r['cycles']:,.0f}", f"{r['latency_ms']:.3f}", f"{r['utilization']:.1%}",
                  f"{r['model_bits'] / 1e6:.2f}", f"{dram / 1e6:.1f}", f"{r['energy_pj'] / 1e6:.1f}",
                  f"{r['tops_per_w']:.2f}", f"{r['tops_per_w_onchip']:.2f}",
                  f"{r['energy_pj'] / ref['energy_pj']:.3f}", f"{dram / ref_dram:.3f}",
                  f"{r['model_bits'] / max(ref['model_bits'], 1):.3f}")
    return t


def energy_table(rows: list[dict]):
    from rich.table import Table

    t = Table(title="energy breakdown (µJ per inference)")
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

    t = Table(title="traffic per inference (Mbit) and peak on-chip memory")
    cols = ["design", "DRAM act", "DRAM w/mask", "DRAM out", "SRAM act r/w", "SRAM w/mask r/w", "SRAM out r/w",
            "generated Mbit", "peak KiB"]
    for c in cols:
        t.add_column(c, justify="left" if c == "design" else "right")
    for row, res in zip(rows, results, strict=True):
        sr = {k: sum(r.sram_bits[k] for r in res.layers) / 1e6 for k in res.layers[0].sram_bits}
        ops = ("activations", "weights", "outputs")
        t.add_row(escape(row["design"]), *(f"{row[f'dram_{k}_bits'] / 1e6:.1f}" for k in ops),
                  *(f"{sr[f'{op}_read']:.1f} / {sr[f'{op}_write']:.1f}" for op in ops),
                  f"{res.total('generated_bits') / 1e6:.1f}", f"{row['peak_onchip_bits'] / 8192:.0f}")
    return t


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def plot_energy(rows: list[dict], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 3, 4))
    bottom = [0.0] * len(rows)
    for k in ENERGY_PARTS:
        vals = [r[f"energy_{k}_pj"] / 1e6 for r in rows]
        ax.bar([r["design"] for r in rows], vals, bottom=bottom, label=k)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("energy per inference (µJ)")
    ax.set_title(f"{rows[0]['workload']}: energy breakdown")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_memory(rows: list[dict], path: Path) -> Path:
    """Model weight storage (Mbit, log scale) per workload and design."""
    plt = _plt()
    workloads = sorted({r["workload"] for r in rows})
    designs = list(dict.fromkeys(r["design"] for r in rows))
    fig, ax = plt.subplots(figsize=(2 * len(workloads) + 3, 4))
    width = 0.8 / len(designs)
    for i, d in enumerate(designs):
        vals = [next((r["model_bits"] / 1e6 for r in rows if r["design"] == d and r["workload"] == w), 0)
                for w in workloads]
        ax.bar([j + i * width for j in range(len(workloads))], vals, width, label=d)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))], workloads)
    ax.set_yscale("log")
    ax.set_ylabel("stored weights / masks (Mbit)")
    ax.legend()
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


def plot_pareto(rows: list[dict], path: Path, x: str = "cycles", y: str = "energy_pj", label: str = "design") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for w in sorted({r["workload"] for r in rows}):
        sub = [r for r in rows if r["workload"] == w]
        pts = [(r[x], r[y]) for r in sub]
        sc = ax.scatter(*zip(*pts, strict=True), s=12, alpha=0.5, label=f"{w}")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-o", ms=4, color=sc.get_facecolor()[0])
        for i in front:  # a sweep point's name is base[field=value,...]: show the values
            name = str(sub[i][label])
            ax.annotate(name.split("[", 1)[1].rstrip("]") if "[" in name else name, pts[i], fontsize=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title("design space: Pareto fronts")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def layer_rows(d: Design, r: Result) -> list[dict]:
    """Per-layer rows: cycles, bounds, utilisation, DRAM and SRAM bits per operand, energy parts."""
    return [{"design": d.name, "workload": r.workload, "mode": r.mode, "layer": x.name, "macs": x.macs,
             "cycles": x.cycles, "folds": x.folds, "utilization": x.utilization,
             **{f"bound_{k}": v for k, v in x.bounds.items()},
             **{f"dram_{k}_bits": v for k, v in x.dram_bits.items()},
             **{f"sram_{k}_bits": v for k, v in x.sram_bits.items()},
             "generated_bits": x.generated_bits, "peak_onchip_bits": x.peak_onchip_bits,
             **{f"energy_{k}_pj": v for k, v in x.energy_pj.items()}} for x in r.layers]


def write_csv(rows: list[dict], path: Path) -> Path:
    import csv

    keys = list(dict.fromkeys(k for r in rows for k in r))
    with Path(path).open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=keys)
        wr.writeheader()
        wr.writerows(rows)
    return Path(path)
