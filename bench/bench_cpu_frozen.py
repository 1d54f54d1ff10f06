"""Partially frozen weights (pack_frozen: a random subset pruned, another locked, the mask only
over the rest) on the CPU backend, against torch's linears on the same effective weights.

The frozen format's own kernels hash every weight's freeze state on every call; from a mask's
second use the backend runs the weight as the binary weight of its effective mask
(frozen_mask_planes, 1 bit a weight, cached), so every binary kernel serves it. "uncached" is
SLT_HW_CPU_LAYOUT_CACHE=off: the frozen kernels (what ran before).

    .venv/bin/python bench/bench_cpu_frozen.py --shapes 4096x4096 --batches 1,8,64 --threads 1
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from utils import dynamic_int8_linear, interleaved_times, report, with_env

from slt_hw import pack_frozen, slt_linear
from slt_hw.backends import layout_cache
from slt_hw.ops import slt_linear_int8


def bench_shape(n: int, k: int, batches: list[int], stat: str) -> list[dict]:
    u = torch.rand(n, k, generator=torch.Generator().manual_seed(0))
    packed = pack_frozen(u < 0.5, seed=0, name="bench", p_prune=0.3, p_lock=0.2)
    w32 = packed.materialize()
    q8 = dynamic_int8_linear(w32)
    rows = []
    for b in batches:
        x = torch.randn(b, k)
        impls = {
            "F.linear fp32": lambda x=x: F.linear(x, w32),
            "dynamic int8": lambda x=x: q8(x),
            "slt cpp": lambda x=x: slt_linear(x, packed, backend="cpp"),
            "slt cpp int8": lambda x=x: slt_linear_int8(x, packed, backend="cpp"),
        }
        impls["slt cpp uncached"] = with_env(layout_cache.ENV, "off", impls["slt cpp"])
        impls["slt cpp int8 uncached"] = with_env(layout_cache.ENV, "off", impls["slt cpp int8"])
        times = interleaved_times(impls, rounds=5, per_round=3, stat=stat)
        for name, t in times.items():
            rows.append({"shape": f"{n}x{k}", "batch": b, "impl": name, "ms": f"{t * 1e3:.3f}",
                         "vs fp32": f"{times['F.linear fp32'] / t:.2f}x",
                         "vs int8": f"{times['dynamic int8'] / t:.2f}x"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4096x4096")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stat", default="min", choices=["median", "min"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for shape in args.shapes.split(","):
        n, k = (int(v) for v in shape.split("x"))
        rows += bench_shape(n, k, [int(b) for b in args.batches.split(",")], args.stat)
    report(f"cpu_frozen_{args.stat}", rows, ["shape", "batch", "impl", "ms", "vs fp32", "vs int8"])


if __name__ == "__main__":
    main()
