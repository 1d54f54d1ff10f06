"""`slt-hw sim`: simulate designs on a workload, print the comparison tables, write plots; or run a
sweep (`slt-hw sim sweep <sweep.yaml>`). Called lazily from slt_hw.cli so `import slt_hw` stays lean."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .config import ConfigError, load_design

DEFAULT_BASELINES = ("dense-4k", "binary-4k", "ternary-4k")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="*", help="empty, or `sweep <sweep.yaml>`")
    p.add_argument("--design", action="append", help="preset name or YAML file (repeatable)")
    p.add_argument("--baseline", action="append",
                   help=f"designs to compare against (repeatable; default {', '.join(DEFAULT_BASELINES)})")
    p.add_argument("--workload", default="resnet18", help="zoo name or topology CSV (default resnet18)")
    p.add_argument("--mode", default="analytical", choices=("analytical", "cycle"))
    p.add_argument("--format", choices=("binary", "multicoat", "frozen"),
                   help="re-mask every weight layer of the workload in this SLT format")
    p.add_argument("--density", type=float, default=0.3, help="with --format: kept fraction (default 0.3)")
    p.add_argument("--coat-densities", default="0.3,0.0788,0.0315",
                   help="with --format multicoat: density of each coat (default: the M-Sup ResNet-50 example)")
    p.add_argument("--free-fraction", type=float, default=0.3,
                   help="with --format frozen: fraction of free weights (default 0.3 = 70%% frozen)")
    p.add_argument("--out", default="sim-out", help="directory for the PNG plots and CSV (default sim-out)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="sweep: no progress bar")


def run(args: argparse.Namespace, console: Console) -> int:
    if not console.is_terminal:  # the comparison table is wide
        console = Console(width=160)
    try:
        if args.action:
            return _sweep(args, console)
        return _compare(args, console)
    except (ConfigError, ValueError) as e:
        console.print(f"[red]error[/red]: {e}")
        return 2


def _compare(args: argparse.Namespace, console: Console) -> int:
    from . import report
    from .engine import simulate
    from .workload import load_workload, with_format

    designs = [load_design(d) for d in (args.design or ["hiddenite"])]
    names = {d.name for d in designs}
    designs += [load_design(b) for b in (args.baseline or DEFAULT_BASELINES) if b not in names]
    w = load_workload(args.workload)
    if args.format:
        try:
            coats = tuple(float(c) for c in args.coat_densities.split(","))
        except ValueError:
            raise ValueError(f"--coat-densities: expected comma-separated numbers, got {args.coat_densities!r}") \
                from None
        w = with_format(w, args.format, args.density, coats if args.format == "multicoat" else (),
                        args.free_fraction if args.format == "frozen" else 1.0)
    results = [simulate(d, w, args.mode) for d in designs]
    rows = [report.summary(d, w, r) for d, r in zip(designs, results, strict=True)]
    ref = next((r["design"] for r in rows if r["design"] == "dense-4k"), rows[-1]["design"])
    console.print(report.comparison_table(rows, ref))
    console.print(report.traffic_table(rows, results))
    console.print(report.energy_table(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = [report.write_csv(rows, out / f"{w.name}.csv"),
             report.write_csv([x for d, r in zip(designs, results, strict=True) for x in report.layer_rows(d, r)],
                              out / f"{w.name}-layers.csv")]
    if not args.no_plots:
        files += [report.plot_energy(rows, out / f"{w.name}-energy.png"),
                  report.plot_memory(rows, out / f"{w.name}-memory.png")]
    console.print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _sweep(args: argparse.Namespace, console: Console) -> int:
    from .sweep import load_sweep, run_sweep, write_outputs

    if args.action[0] != "sweep" or len(args.action) != 2:
        raise ValueError(f"action: expected `sweep <sweep.yaml>`, got {' '.join(args.action)!r}")
    spec = load_sweep(args.action[1])
    rows = run_sweep(spec, progress=not args.no_progress)
    files = write_outputs(spec, rows)
    best = min(rows, key=lambda r: r["energy_pj"])
    console.print(f"{len(rows)} points; lowest energy: {escape(best['design'])} on {best['workload']} "
                  f"({best['energy_pj'] / 1e6:.2f} µJ, {best['cycles']:,.0f} cycles)")
    console.print("wrote " + ", ".join(str(f) for f in files.values()))
    return 0
