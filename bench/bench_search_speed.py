"""Supermask search vs ordinary training: CIFAR-10 Conv4 (Edge-Popup's widths), one optimizer step per batch
of 128, eager and torch.compile, on this machine's CPU threads. Prints ms/step and the projected time of
one epoch (391 steps), writes bench/results/search_speed.csv.

The steps run interleaved (dense, SLT, dense, SLT, ...) so that a shared machine's load hits both alike;
each variant's figure is the median over its steps after warm-up.

    python bench/bench_search_speed.py                   # 2 threads, 20 timed steps per variant
    python bench/bench_search_speed.py --steps 5 --no-compile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from utils import cpu_model  # bench/ is the script's directory

from slt_hw.csvio import write_rows
from slt_hw.models import ConvNet

STEPS_PER_EPOCH = 391  # ceil(50,000 / 128)


def make(kind: str, compiled: bool):
    model = ConvNet("conv4", (3, 32, 32), 10, seed=0, dense=kind == "dense", **({} if kind == "dense" else
                                                                                 {"sparsity": 0.5}))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9,
                          weight_decay=1e-4)
    fwd = torch.compile(model) if compiled else model

    def step(x, y):
        opt.zero_grad()
        F.cross_entropy(fwd(x), y).backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant (after 3 warm-up steps)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="also time torch.compile'd models (compilation itself is not timed)")
    p.add_argument("--out", default="bench/results/search_speed.csv")
    a = p.parse_args(argv)
    if a.threads < 1 or a.steps < 1:
        p.error("--threads and --steps: expected ints >= 1")
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    variants = [(k, c) for c in ([False, True] if a.compile else [False]) for k in ("dense", "slt")]
    steps = {v: make(*v) for v in variants}
    times: dict[tuple, list[float]] = {v: [] for v in variants}
    for v in variants:  # warm-up (and compilation)
        for _ in range(3):
            steps[v](x, y)
    for _ in range(a.steps):
        for v in variants:
            t0 = time.perf_counter()
            steps[v](x, y)
            times[v].append(time.perf_counter() - t0)
    rows = []
    base = {c: statistics.median(times["dense", c]) for _, c in variants}
    for kind, c in variants:
        ms = 1e3 * statistics.median(times[kind, c])
        rows.append({"network": "conv4", "variant": kind, "compiled": c, "threads": a.threads, "steps": a.steps,
                     "ms_per_step": round(ms, 1), "epoch_min": round(ms * STEPS_PER_EPOCH / 6e4, 2),
                     "vs_dense": round(ms / 1e3 / base[c], 3), "cpu": cpu_model(), "torch": torch.__version__})
        print(f"conv4 {kind:>5} {'compiled' if c else 'eager':>8}: {ms:8.1f} ms/step, {rows[-1]['epoch_min']:6.2f} "
              f"min/epoch, {rows[-1]['vs_dense']:.3f}x dense", flush=True)
    write_rows(rows, Path(a.out))
    print(f"wrote {a.out} ({cpu_model()}, {a.threads} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
