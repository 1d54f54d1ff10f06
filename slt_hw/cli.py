"""`slt-hw` command line: `slt-hw info` (environment and backends), `slt-hw demo`, `slt-hw find`,
`slt-hw sim` (accelerator simulator), `slt-hw rtl` (weight generator hardware)."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _devices() -> list[torch.device]:
    devs = [torch.device("cpu")]
    if torch.cuda.is_available():
        devs.append(torch.device("cuda"))
    return devs


def cmd_info(args: argparse.Namespace, console: Console) -> int:
    from . import __version__, _ext, dispatch
    from .contract import CONTRACT_VERSION

    t = Table(title="slt_hw environment", show_header=False)
    t.add_row("slt_hw", f"{__version__} (weight-generation contract v{CONTRACT_VERSION})")
    t.add_row("python", f"{platform.python_version()} on {platform.machine()} {platform.system()}")
    t.add_row("torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'}, "
                       f"{torch.get_num_threads()} threads)")
    for dist in ("triton", "numba", "numpy", "cupy"):
        t.add_row(dist, _version(dist))
    t.add_row("GPU", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
    mod, why = _ext.load()
    if mod is None:
        t.add_row("slt_hw._C", f"[red]missing[/red]: {why}")
    else:
        info = mod.build_info()
        t.add_row("slt_hw._C", ", ".join(f"{k}={v}" for k, v in sorted(info.items())))
    console.print(t)

    b = Table(title="backends (highest priority first)")
    b.add_column("backend")
    for dev in _devices():
        b.add_column(f"{dev.type}")
    b.add_column("what it is")
    per_dev = [dispatch.reasons(dev, "linear_planes") for dev in _devices()]
    for be in dispatch.backends():
        cells = []
        for dev, reasons in zip(_devices(), per_dev, strict=True):
            why = reasons[be.name]
            auto = be.auto_devices is None or dev.type in be.auto_devices
            cells.append("[green]yes[/green]" + ("" if auto else " (forced only)") if not why
                         else "[red]no[/red]: " + "; ".join(why))
        b.add_row(be.name, *cells, be.describe())
    console.print(b)
    sel = {dev.type: dispatch.select("linear_planes", dev).name for dev in _devices()}
    console.print("automatic choice for slt_linear: " + ", ".join(f"{d} → {n}" for d, n in sel.items()))
    ops = Table(title=f"ops each backend lacks, and why (the ops: {', '.join(dispatch.OPS)})")
    ops.add_column("backend")
    ops.add_column("lacks")
    for be in dispatch.backends():
        ops.add_row(be.name, "\n".join(f"{op}: {why}" for op, why in be.lacks.items()) or "nothing")
    console.print(ops)
    return 0


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from .demo import run_demo

    return run_demo(console, seed=args.seed, out=args.out, epochs=args.epochs, dataset=args.dataset)


def cmd_find(args: argparse.Namespace, console: Console) -> int:
    from .distributed import WorkerFailed
    from .memory import memory_report
    from .progress import format_row
    from .train import FindConfig, check_parallel, check_resume, find

    cfg = FindConfig(dataset=args.dataset, data_root=args.data_root, arch=args.arch, method=args.method,
                     sparsity=args.sparsity, num_coats=args.num_coats, p_prune=args.p_prune, p_lock=args.p_lock,
                     freeze_distribution=args.freeze_distribution, threshold=args.threshold,
                     ramp_epochs=args.ramp_epochs, hidden=args.hidden, width=args.width, dropout=args.dropout,
                     epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                     lr_schedule=args.lr_schedule, weight_decay=args.weight_decay, augment=args.augment,
                     train_subset=args.train_subset, eval_every=args.eval_every, seed=args.seed,
                     threads=args.threads, device=args.device, out=args.out, state=args.state,
                     resume=args.resume, rescale=args.rescale)
    # A bad argument, data file or run state raises (ValueError): main() reports it in one line, exit status 2.
    check_parallel(cfg, args.nproc)
    check_resume(cfg)
    if args.out and not Path(args.out).absolute().parent.is_dir():  # before the search, not after it
        raise FileNotFoundError(f"out: the directory of {args.out!r} does not exist")
    try:
        res = find(cfg, console=console, progress=not args.no_progress, nproc=args.nproc)
    except WorkerFailed as e:  # status 1, not a usage error; the worker's own traceback is already printed
        print(f"slt-hw find: error: {e}", file=sys.stderr)
        return 1
    if res.rank:  # under torchrun rank 0 reports
        return 0
    if args.no_progress:  # the progress bar printed these as the epochs ended
        for h in res.history:
            console.print(format_row(h), highlight=False)
    console.print(f"test {res.metric_name}: [bold]{res.test_metric:.4f}[/bold] in {res.seconds:.1f} s")
    console.print(memory_report(res.model).table())
    return 0


def cmd_sim(args: argparse.Namespace, console: Console) -> int:
    from .sim.cli import run  # numba and matplotlib load only for this command

    return run(args, console)


def _add_sim_parser(sub) -> None:
    sim = sub.add_parser("sim", help="simulate an SLT accelerator against dense/binary/ternary baselines; "
                                     "`slt-hw sim sweep <sweep.yaml>` for design-space sweeps")
    from .sim.cli import add_arguments

    add_arguments(sim)


def cmd_rtl(args: argparse.Namespace, console: Console) -> int:
    from .rtl.cli import run  # amaranth loads only for this command

    return run(args, console)


def _add_rtl_parser(sub) -> None:
    from .rtl.cli import add_arguments

    add_arguments(sub.add_parser("rtl", help="write the weight generator and mask decoder as Verilog, "
                                             "with a README and a self-checking testbench"))


# Errors that a bad argument, file or setting causes: one line, exit status 2 (as argparse's own).
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                ImportError)


def report_error(e: BaseException, command: str, flags: dict[str, str] | None = None) -> int:
    """One line on stderr naming what failed (the message names the argument or file; `flags`:
    argument name -> its command-line flag); 2 for a usage error, 1 for anything else."""
    what = str(e).strip().replace("\n", " ") or type(e).__name__
    head, sep, rest = what.partition(":")
    if sep and head in (flags or {}):
        what = f"{flags[head]}{sep}{rest}"
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in what:
        what += f": {e.filename}"
    usage = isinstance(e, USAGE_ERRORS)
    kind = "error" if usage else f"error ({type(e).__name__})"
    print(f"slt-hw {command}: {kind}: {what}" + ("" if usage else " (run with --debug for the traceback)"),
          file=sys.stderr)
    return 2 if usage else 1


def _add_debug(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    p.add_argument("--debug", action="store_true", default=default, help="on an error, show the Python traceback")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slt-hw", description=__doc__)
    _add_debug(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, native extension, available backends and why others are not")
    demo = sub.add_parser("demo", help="find, pack, run on every backend, memory, simulate: the story in a minute")
    demo.add_argument("--seed", type=int, default=0, help="model seed (default 0)")
    demo.add_argument("--out", default="demo-out", help="folder for the checkpoint, CSV and plots (default demo-out)")
    demo.add_argument("--epochs", type=int, default=None,
                      help="search epochs per format (default 1 on fashion-mnist, 5 on digits)")
    demo.add_argument("--dataset", choices=("fashion-mnist", "digits"), default=None,
                      help="default: fashion-mnist when its files are under the data root ($SLT_HW_DATA), else digits")
    fnd = sub.add_parser("find", help="search a supermask on a built-in or local dataset, save the checkpoint")
    fnd.add_argument("--dataset", default="digits", help="digits | synthetic | sbm | angular_velocity (built in); "
                     "cifar10 | fashion-mnist | cora | citeseer | ogb (local files, --data-root)")
    fnd.add_argument("--data-root", default=None, help="folder of the local dataset files (default: $SLT_HW_DATA, "
                     "else ../shared/datasets beside the checkout)")
    fnd.add_argument("--arch", default=None, help="mlp | conv2 | conv4 | conv6 | resnet18 | gcn | gin (default: "
                     "conv4 for cifar10, gcn for graphs, mlp otherwise)")
    fnd.add_argument("--method", default="edge_popup", help="edge_popup | multicoat | frozen")
    fnd.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights removed (default 0.5)")
    fnd.add_argument("--num-coats", type=int, default=3, help="multicoat: coats (adaptive thresholds)")
    fnd.add_argument("--p-prune", type=float, default=0.3, help="frozen: fraction pruned by the seed")
    fnd.add_argument("--p-lock", type=float, default=0.1, help="frozen: fraction locked by the seed")
    fnd.add_argument("--freeze-distribution", default="uniform", help="uniform | erk | epl")
    fnd.add_argument("--threshold", default="layer", help="layer | global")
    fnd.add_argument("--ramp-epochs", type=int, default=0, help="linear sparsity ramp over these epochs")
    fnd.add_argument("--rescale", action="store_true", help="fold 1/sqrt(1 - sparsity) into each layer's weight "
                     "scale (keeps the signal's scale at low density in the conv nets, which have no normalisation)")
    fnd.add_argument("--hidden", type=int, default=512, help="MLP / GNN width (default 512)")
    fnd.add_argument("--width", type=float, default=1.0, help="conv nets / ResNet-18: width multiplier")
    fnd.add_argument("--dropout", type=float, default=0.0, help="GNNs: dropout on the node features")
    fnd.add_argument("--epochs", type=int, default=None, help="default 5 on fashion-mnist, else 30")
    fnd.add_argument("--batch-size", type=int, default=128)
    fnd.add_argument("--optimizer", default="adam", help="adam | sgd (momentum 0.9)")
    fnd.add_argument("--lr", type=float, default=0.01)
    fnd.add_argument("--lr-schedule", default="constant", help="constant | cosine")
    fnd.add_argument("--weight-decay", type=float, default=0.0)
    fnd.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                     help="random crop + flip (default: on for cifar10)")
    fnd.add_argument("--train-subset", type=int, default=None, help="train on a fixed random subset of N examples")
    fnd.add_argument("--eval-every", type=int, default=1, help="test every N epochs (0: the last one only)")
    fnd.add_argument("--seed", type=int, default=0)
    fnd.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    fnd.add_argument("--out", default="supermask.slt", help="checkpoint path (default supermask.slt)")
    fnd.add_argument("--state", default=None, help="per-epoch run state (default: <out>.state, removed when the "
                     "run completes)")
    fnd.add_argument("--resume", action="store_true", help="continue a killed run from its run state")
    fnd.add_argument("--no-progress", action="store_true", help="no progress bar")
    fnd.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    fnd.add_argument("--nproc", type=int, default=1,
                     help="data-parallel local processes (torch.distributed; on a cluster use torchrun, README)")
    _add_sim_parser(sub)
    _add_rtl_parser(sub)
    for p in sub.choices.values():  # --debug before or after the command
        _add_debug(p)
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    run = {"info": cmd_info, "demo": cmd_demo, "find": cmd_find, "sim": cmd_sim, "rtl": cmd_rtl}[args.command]
    try:
        return run(args, console)
    except KeyboardInterrupt:
        print(f"slt-hw {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        flags = {a.dest: a.option_strings[-1] for a in sub.choices[args.command]._actions if a.option_strings}
        return report_error(e, args.command, flags)


if __name__ == "__main__":
    sys.exit(main())
