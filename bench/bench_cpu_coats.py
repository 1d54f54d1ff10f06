"""What a multicoat weight's coats cost the int8 kernels: the same shape as a binary weight and
as 2, 3, 4 coats sharing one scale (pack_multicoat of levels, what the search exports), timed
round-robin in one process, with torch's dynamic int8 linear as the peer.

"vs binary" is the binary weight's time / this time: a pass over the coats' levels costs their
codes or tiles per coat, the products once (docs/benchmarks.md, issue 18 step 22). `--lut off`
times the register and blocked kernels alone (the lookup runs up to 2 rows for these weights).

    .venv/bin/python bench/bench_cpu_coats.py --shapes 4096x4096,1024x11008 --batches 2,8,64 --threads 1
"""

from __future__ import annotations

import argparse

import torch
from utils import dynamic_int8_linear, interleaved_times, report, with_env

from slt_hw import pack_binary, pack_multicoat
from slt_hw.backends import cpu
from slt_hw.ops import slt_linear_int8

COATS = (2, 3, 4)


def weights(n: int, k: int) -> dict:
    u = torch.rand(n, k, generator=torch.Generator().manual_seed(0))
    out = {"binary": pack_binary(u < 0.5, seed=0, name="bench", dist="signed_constant")}
    for c in COATS:  # nested coats inside the kept half
        levels = sum((u < 0.5 / 2**i).long() for i in range(c))
        out[f"{c} coats"] = pack_multicoat(levels, c, seed=0, name="bench", dist="signed_constant")
    return out


def bench_shape(n: int, k: int, batches: list[int], stat: str, lut: str | None) -> list[dict]:
    packed = weights(n, k)
    q8 = dynamic_int8_linear(packed["binary"].materialize())
    rows = []
    for b in batches:
        x = torch.randn(b, k)
        impls = {"dynamic int8": lambda x=x: q8(x)}
        for name, p in packed.items():
            fn = lambda x=x, p=p: slt_linear_int8(x, p, backend="cpp")  # noqa: E731
            impls[f"slt int8 {name}"] = fn if lut is None else with_env(cpu.LUT_ENV, lut, fn)
        times = interleaved_times(impls, rounds=6, per_round=3, stat=stat)
        for name, t in times.items():
            rows.append({"shape": f"{n}x{k}", "batch": b, "impl": name, "ms": f"{t * 1e3:.3f}",
                         "vs binary": f"{times['slt int8 binary'] / t:.2f}x",
                         "vs int8": f"{times['dynamic int8'] / t:.2f}x"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4096x4096")
    ap.add_argument("--batches", default="2,8,64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stat", default="min", choices=["median", "min"])
    ap.add_argument("--lut", default=None, choices=["auto", "on", "off"], help="the table lookup (default: auto)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for shape in args.shapes.split(","):
        n, k = map(int, shape.split("x"))
        rows += bench_shape(n, k, [int(b) for b in args.batches.split(",")], args.stat, args.lut)
    report("cpu_coats" + ("" if args.lut is None else f"_lut_{args.lut}"), rows, list(rows[0]))


if __name__ == "__main__":
    main()
