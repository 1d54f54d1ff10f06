"""Scaling out on this machine: a design-space sweep on 1 process, 2 local processes and a local 2-CPU Ray
instance, and a supermask search on 1 and 2 data-parallel processes. Every configuration runs the CLI
command a user would (start-up included), round-robin, --rounds times, at full size and as a minimal run
(one point, one epoch) that measures its fixed cost; the load average before each run is recorded
because the machine may be shared. Prints a table (fastest round), writes bench/results/scale_out.csv.

    .venv/bin/python bench/bench_scale_out.py                 # sweep + search, 3 rounds
    .venv/bin/python bench/bench_scale_out.py --only search --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from utils import cpu_model  # bench/ is the script's directory

from slt_hw.csvio import write_rows

SLT = str(Path(sys.executable).with_name("slt-hw"))
SWEEP = {"base": "hiddenite", "mode": "cycle",
         "workloads": ["resnet18", "resnet50", "resnet50-folded", "resnet18-cifar", "gpt2-prefill"],
         "grid": {"array.rows": [8, 16, 32, 64, 128], "array.cols": [8, 16, 32, 64, 128],
                  "generator.units": [1, 2, 4, 8]},
         "designs": ["dense-4k", "binary-4k", "ternary-4k"]}
FIND = ["find", "--dataset", "digits", "--hidden", "2048", "--batch-size", "256", "--no-progress"]
EPOCHS = 6


def configs(tmp: Path, only: str | None) -> list[tuple[str, str, str, list[str]]]:
    """(benchmark, configuration, size, argv): each configuration at full size and as a minimal run
    (one point, one epoch) whose time is the fixed cost (start-up, imports, Ray, spawn, plots)."""
    out = []
    if only in (None, "sweep"):
        small = {**SWEEP, "workloads": SWEEP["workloads"][:1], "grid": {}, "designs": []}
        for name, workers, extra in (("1 process", 1, []), ("2 local processes", 2, []),
                                     ("Ray, local 2 CPUs", 2, ["--engine", "ray"])):
            for size, spec in (("full", SWEEP), ("fixed", small)):
                f = tmp / f"sweep-{workers}-{len(extra)}-{size}.yaml"
                f.write_text(yaml.safe_dump({**spec, "workers": workers, "out": f"out-{workers}-{len(extra)}-{size}"}))
                out.append(("sweep", name, size, ["sim", "sweep", str(f), "--no-progress", *extra]))
    if only in (None, "search"):
        for name, n in (("1 process (2 threads)", 1), ("2 processes (1 thread each)", 2)):
            for size, epochs in (("full", EPOCHS), ("fixed", 1)):
                out.append(("search", name, size, [*FIND, "--epochs", str(epochs), "--nproc", str(n),
                                                   "--out", str(tmp / f"find{n}.slt")]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", choices=("sweep", "search"))
    p.add_argument("--out", default="bench/results/scale_out.csv")
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error(f"--rounds: expected an int >= 1, got {a.rounds}")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore"}
    tmp = Path(tempfile.mkdtemp(prefix="slt-hw-scale-"))
    rows = []
    try:
        cfgs = configs(tmp, a.only)
        for r in range(a.rounds):
            for bench, name, size, args in cfgs:
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                proc = subprocess.run([SLT, *args], cwd=tmp, env=env, capture_output=True, text=True)
                secs = time.perf_counter() - t0
                if proc.returncode:
                    print(proc.stdout[-2000:], proc.stderr[-2000:])
                    return 1
                rows.append({"benchmark": bench, "configuration": name, "size": size, "round": r,
                             "seconds": round(secs, 2),
                             "load_before": round(load, 2), "command": "slt-hw " + " ".join(args)})
                print(f"{bench:<7} {name:<28} {size:<5} round {r}: {secs:6.1f} s (load {load:.2f})", flush=True)
        if a.only in (None, "sweep"):
            outs = sorted(tmp.glob("out-*-full/sweep.csv"))
            same = len({o.read_bytes() for o in outs}) == 1
            print(f"sweep CSVs identical across engines: {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nCPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    for bench in dict.fromkeys(r["benchmark"] for r in rows):
        sub = [r for r in rows if r["benchmark"] == bench]
        names = list(dict.fromkeys(r["configuration"] for r in sub))

        def best(n, size, sub=sub):
            return min(r["seconds"] for r in sub if r["configuration"] == n and r["size"] == size)

        base, base_work = best(names[0], "full"), best(names[0], "full") - best(names[0], "fixed")
        for n in names:
            full, fixed = best(n, "full"), best(n, "fixed")
            print(f"{bench:<7} {n:<28} min {full:6.1f} s (fixed cost {fixed:5.1f} s, work {full - fixed:5.1f} s)  "
                  f"speed-up {base / full:.2f}x, of the work {base_work / max(full - fixed, 1e-9):.2f}x")
    write_rows(rows, Path(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
