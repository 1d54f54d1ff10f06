"""`slt-hw rtl`: write one generator configuration (Verilog, README, testbench)."""

from __future__ import annotations

import argparse

from rich.console import Console


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dist", default="signed_constant", help="signed_constant | uniform | normal")
    p.add_argument("--format", default="binary", help="binary | multicoat | frozen")
    p.add_argument("--units", default="4", help="hash units (default 4)")
    p.add_argument("--lanes", default="0", help="weights per cycle per unit, a power of two dividing the "
                                                "weights of one hash (default all: 32 or 2)")
    p.add_argument("--coats", default="0", help="multicoat: coats (default 3)")
    p.add_argument("--out", default="rtl-out", help="folder to write (default rtl-out)")
    p.add_argument("--check", action="store_true",
                   help="also run the testbench's vectors through Amaranth's simulator with stalls")


def _int(value: str, arg: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{arg}: expected an integer, got {value!r}") from None


def run(args: argparse.Namespace, console: Console) -> int:
    from ..contract import Dist
    from ..formats import Format
    from .params import RtlParams

    try:
        p = RtlParams(Dist.parse(args.dist), Format.parse(args.format), _int(args.units, "units"),
                      _int(args.lanes, "lanes"), _int(args.coats, "coats"))
    except ValueError as e:
        console.print(f"[red]error[/red]: {e}", soft_wrap=True)
        return 2
    from .emit import latency, write

    paths = write(p, args.out)
    console.print(f"{p.tag}: {p.beat} weights per cycle, latency {latency(p)} cycles")
    for path in paths:
        console.print(f"  wrote {path}", soft_wrap=True)
    if args.check:
        from .simulate import run_jobs
        from .vectors import standard_jobs

        jobs = standard_jobs(p)
        got, cycles = run_jobs(p, jobs, stall=0.25, seed=1)
        bad = sum(g != j.expect for g, j in zip(got, jobs, strict=True))
        beats = sum(len(j.expect) for j in jobs)
        if bad:
            console.print(f"[red]FAIL[/red]: {bad} of {len(jobs)} jobs differ from the reference")
            return 1
        console.print(f"PASS: {beats} beats bit-exact against the reference in {cycles} cycles (Amaranth simulator)")
    return 0
