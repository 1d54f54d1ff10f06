"""How fast the CPU kernels could be on this machine, beside what torch and slt_hw take in the same
run: the issue's physical limits (docs/benchmarks.md, "Physical bounds"), measured, not quoted.

    .venv/bin/python bench/bench_cpu_bounds.py [--shapes 4096x4096,11008x4096] [--batches 1,4,8,64]
        [--threads 2] [--models resnet18] [--probe-only]

1. bench/cpu_bounds.cpp, built here with the system's C++ compiler (CXX, else c++), times the
   instruction each kernel's inner loop is built on, with many independent ones in flight: cycles
   an instruction, and products (multiply-adds) a cycle. The clock comes from a chain of
   dependent adds, so no performance counters are needed.
2. The memory bandwidth: the fastest of a few reductions over 512 MiB, on the threads asked for.
3. For each linear shape and batch, each scheme's bound is the longer of its products at its
   instruction's rate on every thread and its weight bytes at that bandwidth; the rows beside it
   are torch's dynamic int8 and bf16 linears and slt_hw's int8 and float paths (the automatic
   choice, its layout cached), measured round-robin. "vs torch int8" is torch's dynamic int8 time
   / this time: for a bound row, the most that scheme could give on this machine. "of bound" is,
   for a measured row, the bound of the best scheme its kind of activations can use / its time.
4. With --models, a whole CIFAR ResNet-18: its convolutions' products at the VNNI rate against
   torch's static int8 model and slt_hw's fused one (act_scale="image").

The bounds are optimistic by construction (no loads, no table building, no epilogue, every
thread at the single-core rate), so a scheme whose bound is below a goal cannot meet it here.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import shutil
import subprocess
import sys

import torch
import torch.nn.functional as F
from bench_cpu_model import CNNS, static_int8
from utils import RESULTS, dynamic_int8_linear, interleaved_times, report

import slt_hw
from slt_hw import pack_binary
from slt_hw.backends import cpu
from slt_hw.nn import fuse_epilogues, set_int8_activations
from slt_hw.ops import slt_linear, slt_linear_int8

SOURCE = pathlib.Path(__file__).with_name("cpu_bounds.cpp")

# The kernels' schemes: (instruction probe, weight bits read per weight, activations)
SCHEMES = {
    "int8 lookup, AVX-512 (vpermw)": ("vpermw zmm + vpaddw", 16 / 9, "int8"),
    "int8 VNNI (vpdpbusd)": ("vpdpbusd zmm", 1.0, "int8"),
    "int8 lookup, AVX2 (vpshufb)": ("vpshufb ymm + vpaddb", 2.0, "int8"),
    "int8 AVX2 (vpmaddubsw)": ("vpmaddubsw ymm + vpaddw", 1.0, "int8"),
    "float, fp32 FMA zmm (weights free)": ("vfmadd231ps zmm", 1.0, "float"),
    "float, fp32 FMA ymm (weights free)": ("vfmadd231ps ymm", 1.0, "float"),
    "torch int8, dense (vpdpbusd)": ("vpdpbusd zmm", 8.0, "torch"),
    "torch int8, dense (vpmaddubsw)": ("vpmaddubsw ymm + vpaddw", 8.0, "torch"),
}


def build_probe() -> pathlib.Path:
    """The probe's binary under bench/results/, rebuilt when its source is newer."""
    exe = RESULTS / "cpu_bounds"
    if exe.exists() and exe.stat().st_mtime >= SOURCE.stat().st_mtime:
        return exe
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        sys.exit("bench_cpu_bounds: no C++ compiler (set CXX, or install g++)")
    RESULTS.mkdir(exist_ok=True)
    subprocess.run([cxx, "-O3", "-std=c++17", str(SOURCE), "-o", str(exe)], check=True)
    return exe


def run_probe(iters: int = 2_000_000) -> tuple[float, dict[str, dict]]:
    """(clock GHz, {probe name: its line}) on one core."""
    out = subprocess.run([str(build_probe()), str(iters)], check=True, capture_output=True, text=True).stdout
    lines = [json.loads(s) for s in out.splitlines() if s.strip()]
    ghz = next(p["ghz"] for p in lines if p["probe"] == "clock")
    return ghz, {p["probe"]: p for p in lines if p["probe"] != "clock"}


def bandwidth(threads: int) -> float:
    """Bytes a second that a reduction over 512 MiB reads on `threads` threads (fastest of 5)."""
    x = torch.ones(128 << 20)  # (512 MiB of float32: far past any L3)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = interleaved_times({"sum": lambda: x.sum()}, rounds=5, per_round=1, warmup=1, stat="min")["sum"]
    finally:
        torch.set_num_threads(old)
    return x.numel() * 4 / t


def bound_seconds(macs: float, weights: int, bits: float, probe: dict, ghz: float, threads: int,
                  bw: float) -> tuple[float, str]:
    """(the scheme's least time, what sets it): its products at its instruction's rate on every
    thread, or its weight bytes from DRAM."""
    compute = macs / (probe["macs_per_cycle"] * ghz * 1e9 * threads)
    dram = weights * bits / 8 / bw
    return (compute, "products") if compute >= dram else (dram, "DRAM")


def linear_rows(n: int, k: int, batches: list[int], ghz: float, probes: dict, threads: int, bw: float,
                stat: str) -> list[dict]:
    mask = torch.rand(n, k, generator=torch.Generator().manual_seed(0)) < 0.5
    packed = pack_binary(mask, seed=0, name="bounds")
    w = packed.materialize()
    q8 = dynamic_int8_linear(w)
    w16 = w.to(torch.bfloat16)
    rows = []
    for b in batches:
        x = torch.randn(b, k)
        x16 = x.to(torch.bfloat16)
        impls = {"torch dynamic int8": lambda x=x: q8(x), "F.linear bf16": lambda x=x16: F.linear(x, w16),
                 "slt cpp int8": lambda x=x: slt_linear_int8(x, packed), "slt cpp": lambda x=x: slt_linear(x, packed)}
        with torch.inference_mode():
            times = interleaved_times(impls, stat=stat)
        macs = float(n * k * b)
        bounds = {name: bound_seconds(macs, n * k, bits, probes[p], ghz, threads, bw)
                  for name, (p, bits, _) in SCHEMES.items() if probes.get(p, {}).get("available")}
        limits = {name: why for name, (_, why) in bounds.items()}
        bounds = {name: t for name, (t, _) in bounds.items()}
        best = {kind: min((t for s, t in bounds.items() if SCHEMES[s][2] == kind), default=None)
                for kind in ("int8", "float")}
        q = times["torch dynamic int8"]
        for impl, t in times.items():
            kind = "int8" if impl == "slt cpp int8" else "float" if impl == "slt cpp" else None
            of = f"{best[kind] / t:.2f}" if kind and best[kind] else ""
            rows.append(_row(f"{n}x{k}", b, impl, t, q, of))
        for name, t in bounds.items():
            rows.append(_row(f"{n}x{k}", b, f"bound: {name}", t, q, "", limits[name]))
    return rows


def _row(shape: str, batch: int, impl: str, t: float, torch_int8: float, of_bound: str, limit: str = "") -> dict:
    return {"shape": shape, "batch": batch, "impl": impl, "ms": f"{t * 1e3:.3f}",
            "vs torch int8": f"{torch_int8 / t:.2f}x", "of bound": of_bound, "bound by": limit}


def conv_macs(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds of the model's convolutions and linears on x (the padding's included, as
    torch's int8 convolution computes them)."""
    total = 0.0

    def hook(m, _inp, out):
        nonlocal total
        if isinstance(m, torch.nn.Conv2d):
            total += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total


def model_rows(name: str, batches: list[int], ghz: float, probes: dict, threads: int, stat: str) -> list[dict]:
    vnni = probes.get("vpdpbusd zmm", {})
    if not vnni.get("available"):
        print(f"# {name}: no AVX-512 VNNI here, no convolution bound")
        return []
    torch.manual_seed(0)
    dense = CNNS[name]().eval()
    packed = slt_hw.pack(slt_hw.convert(dense, seed=0, sparsity=0.5)).eval()
    dense.load_state_dict(slt_hw.export_dense(packed), strict=False)
    set_int8_activations(packed, act_scale="image")
    fused = fuse_epilogues(copy.deepcopy(packed))
    rows = []
    for b in batches:
        x = torch.randn(b, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        qs = static_int8(dense, x)
        with torch.inference_mode():
            times = interleaved_times({"torch static int8": lambda q=qs, x=x: q(x),
                                       "slt fused int8 image": lambda x=x: fused(x)}, stat=stat)
        bound = conv_macs(dense, x) / (vnni["macs_per_cycle"] * ghz * 1e9 * threads)
        q = times["torch static int8"]
        for impl, t in times.items():
            rows.append(_row(name, b, impl, t, q, f"{bound / t:.2f}"))
        rows.append(_row(name, b, "bound: int8 VNNI (vpdpbusd), all products", bound, q, "", "products"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="4096x4096,11008x4096")
    ap.add_argument("--batches", default="1,4,8,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="", help="comma-separated CNNs (resnet18, conv6) for a whole-model line")
    ap.add_argument("--model-batches", default="1,8")
    ap.add_argument("--stat", default="min", choices=["median", "min"])
    ap.add_argument("--probe-only", action="store_true", help="the instruction table alone")
    args = ap.parse_args()
    ghz, probes = run_probe()
    cores = args.threads
    print(f"# core clock {ghz:.2f} GHz (dependent adds); {cpu.lut_info().get('isa', '')}")
    probe_rows = [{"instruction": p["probe"], "needs": p["needs"],
                   "cycles": f"{p['cycles_per_instr']:.2f}" if p["available"] else "-",
                   "MACs/instr": p.get("macs_per_instr", "-"),
                   "MACs/cycle": f"{p['macs_per_cycle']:.1f}" if p["available"] else "-",
                   "used by": p.get("kernels", "(not on this CPU)")} for p in probes.values()]
    report("cpu_bounds_instructions", probe_rows, list(probe_rows[0]))
    if args.probe_only:
        return
    torch.set_num_threads(args.threads)
    bw = bandwidth(args.threads)
    print(f"# memory bandwidth {bw / 1e9:.1f} GB/s ({args.threads} threads, a reduction over 512 MiB)")
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for shape in args.shapes.split(","):
        n, k = map(int, shape.split("x"))
        rows += linear_rows(n, k, batches, ghz, probes, cores, bw, args.stat)
    for name in filter(None, args.models.split(",")):
        rows += model_rows(name, [int(b) for b in args.model_batches.split(",")], ghz, probes, cores, args.stat)
    report(f"cpu_bounds_{args.stat}", rows, list(rows[0]))


if __name__ == "__main__":
    main()
