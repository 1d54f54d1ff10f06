"""GPU slt_linear against dense bf16 F.linear (cuBLAS): batch 1, 16, 256, 4096 on the weight
shapes of 7B-70B-class layers. Prints a table and writes bench/results/gpu_linear.csv.

    python bench/bench_gpu_linear.py [--dist signed_constant] [--quick]

Timing: triton.testing.do_bench (CUDA events, L2 flushed between runs, median), taken round-robin
over the implementations so that clock drift hits every one alike. GB/s counts the bytes each
implementation must read and write (mask bits for slt_linear, bf16 weights for dense);
TFLOP/s counts 2·batch·out·in. Targets (issue 5, H100/H200 class): batch 1 on 8192×8192 at
least 3.5× dense bf16; batch 4096 at least 0.9× of cuBLAS.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F
from utils import report  # bench/ is the script's directory

from slt_hw import _ext, _ops
from slt_hw.contract import Dist, default_scale
from slt_hw.formats import Format, PackedWeight
from slt_hw.kernels import linear as triton_linear

SHAPES = [(4096, 4096), (8192, 8192), (28672, 8192)]  # (out, in)
BATCHES = [1, 16, 256, 4096]


def _packed(n: int, k: int, dist: str) -> PackedWeight:
    # Random mask words straight on the GPU (half the bits set); K is a multiple of 32 here, so
    # there are no padding bits to clear.
    words = torch.randint(-(2**31), 2**31, (1, n, k // 32), dtype=torch.int64, device="cuda").to(torch.int32)
    d = Dist.parse(dist)
    return PackedWeight(shape=(n, k), seed=1, name=f"bench.{n}x{k}", dist=d, scale=default_scale(d, k),
                        format=Format.BINARY, planes=words)


def _cuda_impl():
    mod, why = _ext.load()
    if mod is None or not mod.build_info().get("cuda_built", False):
        return None, why or "slt_hw._C built without CUDA"
    from slt_hw.backends import cuda

    return cuda, ""


def _impls(pw: PackedWeight, dense: torch.Tensor, cuda_backend) -> dict:
    """name -> fn(x); each computes x @ W_effᵀ for the same weight (the kernels on the op's arguments)."""
    _, w = _ops.weight_args(pw)
    rows = (0, pw.out_features)
    fns = {
        "dense_bf16": lambda x: F.linear(x, dense),
        "slt_triton": lambda x: triton_linear.linear_planes(x, None, *w, *rows),
    }
    if cuda_backend is not None:
        fns["slt_cuda"] = lambda x: cuda_backend.linear(x, None, *w, *rows)
    return fns


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", default="signed_constant", choices=[d.value for d in Dist])
    ap.add_argument("--quick", action="store_true", help="first shape and batches 1, 256 only")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu_linear: no CUDA device; nothing measured (run it on a GPU machine)")
        return 0
    import triton.testing

    cuda_backend, why = _cuda_impl()
    if cuda_backend is None:
        print(f"bench_gpu_linear: CUDA C++ kernels skipped: {why}")
    shapes = SHAPES[:1] if args.quick else SHAPES
    batches = [1, 256] if args.quick else BATCHES
    rows = []
    for n, k in shapes:
        pw = _packed(n, k, args.dist)
        impls = _impls(pw, pw.materialize().to(torch.bfloat16), cuda_backend)
        for m in batches:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            fns = {name: (lambda f=f, x=x: f(x)) for name, f in impls.items()}
            ref = fns["dense_bf16"]().float()
            for name, fn in fns.items():  # warm up (autotuning) and sanity-check once
                err = (fn().float() - ref).abs().max().item()
                if err > 0.05 * ref.abs().max().item() + 1e-3:
                    print(f"bench_gpu_linear: {name} disagrees with dense at {n}x{k} batch {m} (max error {err:.3g})")
            samples = {name: [] for name in fns}
            for _ in range(args.rounds):
                for name, fn in fns.items():
                    samples[name].append(triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median"))
            ms = {name: statistics.median(v) for name, v in samples.items()}
            io = 2 * m * (k + n)  # bf16 activations in, output out
            for name, t in ms.items():
                wbytes = n * k * 2 if name == "dense_bf16" else n * k // 8
                rows.append({
                    "out": n, "in": k, "batch": m, "impl": name, "ms": f"{t:.4f}",
                    "GB/s": f"{(wbytes + io) / t / 1e6:.0f}",
                    "TFLOP/s": f"{2 * m * n * k / t / 1e9:.2f}",
                    "vs_dense": f"{ms['dense_bf16'] / t:.2f}",
                })
        del impls
        torch.cuda.empty_cache()
    report("gpu_linear", rows, ["out", "in", "batch", "impl", "ms", "GB/s", "TFLOP/s", "vs_dense"])
    print(f"# {torch.cuda.get_device_name()}, dist {args.dist}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
