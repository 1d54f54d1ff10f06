"""slt_linear on the CPU against dense torch linears, same shapes, same run, 2 threads.

    .venv/bin/python bench/bench_cpu_linear.py [--shapes 11008x4096] [--batches 1,8,64,256]
    .venv/bin/python bench/bench_cpu_linear.py --threads 1 --cpu-time   # steadier on a busy machine
    .venv/bin/python bench/bench_cpu_linear.py --stat min               # fastest call of each, not the median
    .venv/bin/python bench/bench_cpu_linear.py --format multicoat --dist uniform   # 3 coats, scales 1, 0.37, 0.11
    .venv/bin/python bench/bench_cpu_linear.py --format multicoat-levels   # 3 coats, scales 1 (the search's)

Baselines: F.linear with dense fp32 and bf16 weights, torch's dynamically quantized int8 linear;
also the reference backend (materialises the weight each call). "slt cpp int8" is the opt-in
int8-activation path; "slt cpp bf16" takes bf16 activations (the peer is F.linear bf16), and
where the CPU has AMX "slt cpp bf16 amx" and "slt cpp int8 amx" force the AMX kernels
(SLT_HW_CPU_ISA=amx, never chosen automatically). Shapes are out x in; "vs fp32" is F.linear fp32 time / this time.
"slt cpp" uses the kernel chosen automatically; where the ISA's table-lookup kernel applies
(binary signed-constant weights, batch <= its forced maximum) the same run also times it forced
off ("lut=off": the register kernels) and on ("lut=on"), with SLT_HW_CPU_LUT. The int8 table
lookups read the weight in a layout of their own cached after its second call (AVX2's hashed P/N
planes, 2 bits per weight; AVX-512's base-3 codes, 1.78; backends/layout_cache.py; counted in
"weight MiB"); "slt cpp uncached" and "slt cpp int8 uncached" time a one-off call
(SLT_HW_CPU_LAYOUT_CACHE=off: the sign hash and the layout made in every call).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from utils import dynamic_int8_linear, interleaved_times, median_seconds, report, with_env

from slt_hw import _ext, _ops, pack_binary, pack_multicoat, slt_linear
from slt_hw.backends import cpu, layout_cache
from slt_hw.ops import slt_linear_int8, slt_linear_reference


def lut_rows(fmt: str, dist: str) -> tuple[int, int]:
    """Up to how many activation rows the table-lookup kernel of the ISA in use can be forced
    here, for float and int8 activations (0: never)."""
    try:
        info = cpu.lut_info()
    except (RuntimeError, ValueError):
        return 0, 0
    if fmt not in ("binary", "multicoat", "multicoat-levels") or dist != "signed_constant":
        return 0, 0
    # (multicoat weights: AVX2's lookup only)
    float_ok = info["available"] and (fmt == "binary" or info["isa"] == "avx2")
    int8_ok = info["available_int8"] and (fmt == "binary" or info["isa_int8"] == "avx2")
    return (info["max_rows"] if float_ok else 0, info["max_rows_int8"] if int8_ok else 0)


def held_planes(packed, name: str, batch: int) -> int:
    """Bytes of the table lookup's cached planes (P/N, 2 bits per weight) that `name` reads at
    this batch, once the lookup has run twice on the weight: counted in its weight memory."""
    if not name.startswith("slt cpp") or any(s in name for s in ("uncached", "amx")) or not cpu.LUT_PLANES.nbytes():
        return 0
    mod = _ext.native()
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(packed)[1])
    lut = "on" if "lut=on" in name else "off" if "lut=off" in name else cpu._lut(None)
    return mod.lut_layout(desc, batch, cpu._isa(None), lut, "int8" in name, torch.get_num_threads(), "bf16" in name)[1]


def bench_shape(n: int, k: int, batches: list[int], density: float, with_reference: bool,
                clock=time.perf_counter, dist: str = "signed_constant", stat: str = "median",
                fmt: str = "binary") -> list[dict]:
    u = torch.rand(n, k, generator=torch.Generator().manual_seed(0))
    if fmt.startswith("multicoat"):  # three coats nested inside the kept fraction
        levels = (u < density).long() + (u < density / 2).long() + (u < density / 4).long()
        # scales not powers of two, or all 1 (levels 0..3, what the search exports: coat_levels)
        scales = torch.ones(3) if fmt == "multicoat-levels" else torch.tensor([1.0, 0.37, 0.11])
        packed = pack_multicoat(levels, 3, seed=0, name="bench", dist=dist, coat_scales=scales)
    else:
        packed = pack_binary(u < density, seed=0, name="bench", dist=dist)
    sc = dist == "signed_constant"  # the int8 path needs signed-constant weights
    w32 = packed.materialize()
    w16 = w32.to(torch.bfloat16)
    q8 = dynamic_int8_linear(w32)
    slt_bytes = (packed.mask_bits() + 64) / 8
    mem = {"F.linear fp32": 4 * n * k, "F.linear bf16": 2 * n * k, "dynamic int8": n * k + 4 * n,
           "slt reference": slt_bytes}
    mem.update({f"slt cpp{a}{b}": slt_bytes for a in ("", " int8") for b in ("", " lut=off", " lut=on")})
    mem.update({"slt cpp bf16": slt_bytes, "slt cpp bf16 amx": slt_bytes, "slt cpp int8 amx": slt_bytes,
                "slt cpp uncached": slt_bytes, "slt cpp int8 uncached": slt_bytes})
    amx = "amx" in cpu.cpu_isas()  # forced only (never chosen automatically): timed where the CPU has it
    max_lut, max_lut_int8 = lut_rows(fmt, dist)
    rows = []
    for b in batches:
        x = torch.randn(b, k)
        xb = x.to(torch.bfloat16)
        impls = {
            "F.linear fp32": lambda x=x: F.linear(x, w32),
            "F.linear bf16": lambda xb=xb: F.linear(xb, w16),
            "dynamic int8": lambda x=x: q8(x),
            "slt cpp": lambda x=x: slt_linear(x, packed, backend="cpp"),
        }
        if b <= max_lut:  # a one-off call: the table lookup hashes and transposes itself
            impls["slt cpp uncached"] = with_env(layout_cache.ENV, "off", impls["slt cpp"])
        impls["slt cpp bf16"] = lambda xb=xb: slt_linear(xb, packed, backend="cpp")  # against F.linear bf16
        if amx:
            impls["slt cpp bf16 amx"] = with_env(cpu.ISA_ENV, "amx", impls["slt cpp bf16"])
        if sc:
            impls["slt cpp int8"] = lambda x=x: slt_linear_int8(x, packed)
            if b <= max_lut_int8:  # a one-off call
                impls["slt cpp int8 uncached"] = with_env(layout_cache.ENV, "off", impls["slt cpp int8"])
            if amx:
                impls["slt cpp int8 amx"] = with_env(cpu.ISA_ENV, "amx", impls["slt cpp int8"])
        for mode in ("off", "on"):  # where the table-lookup kernel applies: timed forced off and on too
            if b <= max_lut:
                impls[f"slt cpp lut={mode}"] = with_env(cpu.LUT_ENV, mode, impls["slt cpp"])
            if b <= max_lut_int8:
                impls[f"slt cpp int8 lut={mode}"] = with_env(cpu.LUT_ENV, mode, impls["slt cpp int8"])
        times = interleaved_times(impls, clock=clock, stat=stat)
        if with_reference:  # seconds per call: timed on its own, a few times
            times["slt reference"] = median_seconds(lambda x=x: slt_linear_reference(x, packed), repeat=3, warmup=1)
        for name, t in times.items():
            held = held_planes(packed, name, b)
            rows.append({
                "shape": f"{n}x{k}", "batch": b, "impl": name, "ms": f"{t * 1e3:.3f}",
                "Gweights/s": f"{n * k / t / 1e9:.2f}", "GFLOP/s": f"{2 * n * k * b / t / 1e9:.1f}",
                "vs fp32": f"{times['F.linear fp32'] / t:.2f}x", "weight MiB": f"{(mem[name] + held) / 2**20:.2f}",
            })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="4096x4096,11008x4096,4096x11008")
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--density", type=float, default=0.5, help="fraction of weights kept by the mask")
    ap.add_argument("--stat", default="median", choices=["median", "min"],
                    help="per implementation: the median call, or the fastest (steadier when the VM takes a "
                         "CPU away now and then: every implementation gets the same treatment)")
    ap.add_argument("--dist", default="signed_constant", choices=["signed_constant", "uniform", "normal"],
                    help="the SLT weights' distribution (the int8 path only for signed_constant)")
    ap.add_argument("--format", default="binary", choices=["binary", "multicoat", "multicoat-levels"],
                    help="the mask format (multicoat: 3 nested coats, coat scales 1, 0.37, 0.11; "
                         "multicoat-levels: the same coats, scales 1, as the search exports them)")
    ap.add_argument("--no-reference", action="store_true", help="skip the (slow) reference backend")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with this process's CPU time (all threads) instead of wall time; with --threads 1, "
                         "other processes on the machine do not count; writes cpu_linear_cputime.csv")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    rows = []
    for shape in args.shapes.split(","):
        n, k = map(int, shape.split("x"))
        rows += bench_shape(n, k, [int(b) for b in args.batches.split(",")], args.density, not args.no_reference,
                            clock, args.dist, args.stat, args.format)
    suffix = ("" if args.format == "binary" else f"_{args.format}") + \
        ("" if args.dist == "signed_constant" else f"_{args.dist}") + ("_min" if args.stat == "min" else "")
    report(("cpu_linear_cputime" if args.cpu_time else "cpu_linear") + suffix, rows, list(rows[0]))


if __name__ == "__main__":
    main()
