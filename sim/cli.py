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
    p.add_argument("--workload", default="resnet18",
                   help="zoo name, topology CSV or .slt checkpoint from `slt-hw find` (default resnet18)")
    p.add_argument("--batch", type=int, default=1,
                   help="samples per inference: a zoo network's batch, a checkpoint's rows (default 1); "
                        "figures are per batch")
    p.add_argument("--input-shape", help="C,H,W of a checkpoint's input (needed for convolutions)")
    p.add_argument("--mode", default="analytical", choices=("analytical", "cycle"))
    p.add_argument("--inferences", type=int, default=1,
                   help="inferences in a stream: totals = first + (N-1) x steady state (default 1)")
    p.add_argument("--no-residency", action="store_true",
                   help="every layer cold: inputs from DRAM, outputs to DRAM, weights reloaded every inference")
    p.add_argument("--iso-area", metavar="DESIGN",
                   help="also compare every other design grown or shrunk to this design's silicon area")
    p.add_argument("--spend", choices=("pes", "activations"), default="pes",
                   help="with --iso-area: what the area difference buys (default pes)")
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
    p.add_argument("--engine", choices=("local", "ray"),
                   help="sweep: points in local processes (default) or as Ray tasks (pip install 'slt_hw[ray]')")
    p.add_argument("--address", help="sweep with --engine ray: the Ray cluster (default: start one on this machine)")
    p.add_argument("--resume", action="store_true", help="sweep: keep the points already in the out/sweep.csv")


def run(args: argparse.Namespace, console: Console) -> int:
    if not console.is_terminal:  # the comparison table is wide
        console = Console(width=180)
    try:
        if args.action:
            return _sweep(args, console)
        for flag, v in (("--engine", args.engine), ("--address", args.address), ("--resume", args.resume)):
            if v:
                raise ValueError(f"{flag}: only for `slt-hw sim sweep <sweep.yaml>`")
        return _compare(args, console)
    except (ConfigError, ValueError) as e:
        console.print(f"[red]error[/red]: {escape(str(e))}", highlight=False, soft_wrap=True)  # one line
        return 2


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise ValueError(f"{flag}: expected positive integers, got {text!r}")
    return vals


def _compare(args: argparse.Namespace, console: Console) -> int:
    from . import report
    from .area import area, at_area
    from .engine import simulate
    from .residency import smallest_weight_sram_kib
    from .workload import load_workload, with_format

    if args.inferences < 1:
        raise ValueError(f"--inferences: expected an int >= 1, got {args.inferences}")
    if args.batch < 1:
        raise ValueError(f"--batch: expected an int >= 1, got {args.batch}")
    shape = _int_list("--input-shape", args.input_shape) if args.input_shape else None
    designs = [load_design(d) for d in (args.design or ["hiddenite"])]
    names = {d.name for d in designs}
    designs += [load_design(b) for b in (args.baseline or DEFAULT_BASELINES) if b not in names]
    if args.iso_area:
        ref = load_design(args.iso_area)
        target = area(ref).total
        designs += [at_area(d, target, args.spend) for d in designs if d.name != ref.name]
        if ref.name not in {d.name for d in designs}:
            designs.append(ref)
    w = load_workload(args.workload, args.batch, shape)
    if args.format:
        try:
            coats = tuple(float(c) for c in args.coat_densities.split(","))
        except ValueError:
            raise ValueError(f"--coat-densities: expected comma-separated numbers, got {args.coat_densities!r}") \
                from None
        w = with_format(w, args.format, args.density, coats if args.format == "multicoat" else (),
                        args.free_fraction if args.format == "frozen" else 1.0)
    res = not args.no_residency
    results = [simulate(d, w, args.mode, residency=res) for d in designs]
    rows = [report.summary(d, w, r, args.inferences) for d, r in zip(designs, results, strict=True)]
    fits = []
    for d, row in zip(designs, rows, strict=True):
        kib = smallest_weight_sram_kib(d, w)
        if kib <= 0 or not res:
            fits.append(None)
            continue
        big = d.replace({"sram.weights.kib": max(kib, d.sram.weights.kib) * (1 + 1e-9)})
        fits.append({**report.summary(big, w, simulate(big, w, args.mode)), "model_bits": row["model_bits"]})
    ref = next((r["design"] for r in rows if r["design"] == "dense-4k"), rows[-1]["design"])
    console.print(report.comparison_table(rows, ref))
    if res:
        console.print(report.residency_table(rows, fits))
    console.print(report.traffic_table(rows, results))
    console.print(report.energy_table(rows))
    console.print(report.supply_table(designs))
    console.print(report.area_table(designs))
    if res and any(not x.io.output_resident for x in results[0].layers[:-1]):
        console.print(report.spill_table(results[0]))
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
    from ..executor import check_engine
    from .sweep import failures, load_sweep, run_sweep, write_outputs

    if args.action[0] != "sweep" or len(args.action) != 2:
        raise ValueError(f"action: expected `sweep <sweep.yaml>`, got {' '.join(args.action)!r}")
    engine = args.engine or "local"
    check_engine(engine, args.address)
    spec = load_sweep(args.action[1])
    rows = run_sweep(spec, progress=not args.no_progress, engine=engine, address=args.address, resume=args.resume)
    files = write_outputs(spec, rows)
    console.print(f"{len(rows)} points: {len(spec['designs'])} designs × {len(spec['workloads'])} workloads")
    console.print("wrote " + ", ".join(str(f) for f in files.values()))
    bad = failures(rows)
    if bad:  # written with their error, and the exit status says so
        r = bad[0]
        console.print(f"[red]error[/red]: {len(bad)} of {len(rows)} points failed twice (the `failure` column); "
                      f"first: {escape(r['design'])} on {escape(r['workload'])}: {escape(r['failure'])}",
                      highlight=False)
        return 1
    return 0
