"""slt_conv2d on the CPU against torch's own convolutions, same layers, same run.

    .venv/bin/python bench/bench_cpu_conv.py [--layers cifar,resnet18] [--batches 1,8,64] [--threads 2]
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/bench_cpu_conv.py --threads 1 --stat min

Peers: F.conv2d with the dense fp32 weight on NCHW input and on channels-last input and weight
(a user picks whichever is faster on their machine), F.conv2d in bf16 (channels-last), torch's
dynamically quantized int8 convolution (torch.ao.nn.quantized.dynamic.Conv2d, the default
dynamic qconfig: activations quantized per call, per tensor; NCHW and channels-last) and
torch's statically quantized one (eager mode, the "x86" qconfig, calibrated on the very input
it is timed on: its best case; the timed call quantizes x, runs the int8 convolution and
dequantizes). torch's dynamic convolution loses most of the signal on non-negative inputs
(pytorch/pytorch#70480: the "rel err relu" column), which every convolution after a ReLU sees;
the static one is the int8 peer a user would pick.
"slt auto" is slt_conv2d as shipped, "slt int8" slt_conv2d_int8 (each output pixel's patch
quantized as one int8 row: torch's peer quantizes per tensor), "slt int8 image" the same with
act_scale="image" (one scale per image: on AVX-512 VNNI, the implicit GEMM; "patches" forces the
patch matrix, SLT_HW_CPU_CONV_INT8), "+ BN + ReLU" with an eval BatchNorm's scale and shift and a
ReLU fused into its epilogue (its error against the fp32 convolution's); "slt fused" and "slt
materialize" force each of its two paths (SLT_HW_CPU_CONV): im2col + the fused linear (reads 1
bit per weight, never writes one), or the weight materialised for the call by the vector kernels
and run by F.conv2d. "vs best" is the fastest fp32 peer's time / this time, "vs int8" the
fastest torch int8 run's (dynamic or static) / this time; "rel err" ||y - y_fp32|| / ||y_fp32||
on these (Gaussian) inputs, "rel err relu" on their ReLU (each int8 peer calibrated on that
input too). 3x3 convolutions, padding 1, binary mask at 50 % density, signed-constant weights.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
import torch.ao.nn.quantized.dynamic as qdyn
import torch.nn.functional as F
from utils import interleaved_times, report, with_env

from slt_hw import pack_binary
from slt_hw.backends import cpu
from slt_hw.ops import slt_conv2d, slt_conv2d_int8

# (name, in channels, out channels, input side): Conv4/Conv6 on CIFAR-10, ResNet-18's stages at 224
# and on CIFAR-10's 32 x 32 (slt_hw.models.ResNet18: its RGB stem, its last stage at 4 x 4)
LAYERS = {
    "cifar": [("conv4.2", 64, 64, 32), ("conv4.4", 128, 128, 16), ("conv6.6", 256, 256, 8)],
    "resnet18": [("layer1", 64, 64, 56), ("layer2", 128, 128, 28), ("layer3", 256, 256, 14),
                 ("layer4", 512, 512, 7)],
    "resnet18_cifar": [("stem", 3, 64, 32), ("layer1", 64, 64, 32), ("layer2", 128, 128, 16),
                       ("layer3", 256, 256, 8), ("layer4", 512, 512, 4)],
}


def bench_layer(name: str, cin: int, cout: int, side: int, batches: list[int], stat: str, clock) -> list[dict]:
    u = torch.rand(cout, cin, 3, 3, generator=torch.Generator().manual_seed(0))
    packed = pack_binary(u < 0.5, seed=0, name=name, dist="signed_constant")
    w = packed.materialize().reshape(packed.shape)
    w_cl = w.contiguous(memory_format=torch.channels_last)
    w_bf = w_cl.to(torch.bfloat16)
    dense = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    dense.weight.data.copy_(w)
    dense.qconfig = torch.ao.quantization.default_dynamic_qconfig
    with warnings.catch_warnings():  # (torch.ao.quantization's deprecation notice)
        warnings.simplefilter("ignore")
        q_int8 = qdyn.Conv2d.from_float(dense)
    bn = torch.Generator().manual_seed(2)  # (an eval BatchNorm folded: the fused epilogue's scale and shift)
    bn_scale, bn_shift = torch.rand(cout, generator=bn) + 0.5, torch.randn(cout, generator=bn)
    rows = []
    for b in batches:
        x = torch.randn(b, cin, side, side, generator=torch.Generator().manual_seed(1))
        x_cl = x.contiguous(memory_format=torch.channels_last)
        x_bf = x_cl.to(torch.bfloat16)
        q_static = static_int8(dense, x)
        slt = lambda x=x: slt_conv2d(x, packed, padding=1, backend="cpp")  # noqa: E731
        image_cl = lambda x=x_cl: slt_conv2d_int8(x, packed, padding=1, act_scale="image", backend="cpp")  # noqa: E731
        impls = {
            "F.conv2d fp32": lambda x=x: F.conv2d(x, w, padding=1),
            "F.conv2d fp32 channels-last": lambda x=x_cl: F.conv2d(x, w_cl, padding=1),
            "F.conv2d bf16 channels-last": lambda x=x_bf: F.conv2d(x, w_bf, padding=1),
            "torch dynamic int8": lambda x=x: q_int8(x),
            "torch dynamic int8 channels-last": lambda x=x_cl: q_int8(x),
            "torch static int8": lambda x=x, q=q_static: q(x),
            "torch static int8 channels-last": lambda x=x_cl, q=q_static: q(x),
            "slt auto": slt,
            "slt auto channels-last": lambda x=x_cl: slt_conv2d(x, packed, padding=1, backend="cpp"),
            "slt int8": lambda x=x: slt_conv2d_int8(x, packed, padding=1, backend="cpp"),
            "slt int8 channels-last": lambda x=x_cl: slt_conv2d_int8(x, packed, padding=1, backend="cpp"),
            "slt int8 image": lambda x=x: slt_conv2d_int8(x, packed, padding=1, act_scale="image", backend="cpp"),
            "slt int8 image channels-last": image_cl,
            "slt int8 image patches channels-last": with_env(cpu.CONV_INT8_ENV, "patches", image_cl),
            "slt int8 image + BN + ReLU channels-last": lambda x=x_cl: slt_conv2d_int8(
                x, packed, bn_shift, padding=1, act_scale="image", out_scale=bn_scale, relu=True, backend="cpp"),
            "slt fused": with_env(cpu.CONV_ENV, "fused", slt),
            "slt materialize": with_env(cpu.CONV_ENV, "materialize", slt),
        }
        def epilogue(y):
            return torch.relu(y * bn_scale[:, None, None] + bn_shift[:, None, None])

        err = errors(impls, x, epilogue)
        xr = torch.relu(x)
        q_relu = static_int8(dense, xr)
        err_relu = errors({**impls, "torch static int8": q_relu, "torch static int8 channels-last": q_relu}, xr,
                          epilogue)
        times = interleaved_times(impls, rounds=5, per_round=2, clock=clock, stat=stat)
        best = min(times["F.conv2d fp32"], times["F.conv2d fp32 channels-last"])
        best8 = min(t for impl, t in times.items() if impl.startswith("torch") and "int8" in impl)
        pixels = b * side * side
        for impl, t in times.items():
            rows.append({
                "layer": f"{name} {cin}-{cout} {side}x{side}", "batch": b, "impl": impl, "ms": f"{t * 1e3:.3f}",
                "GFLOP/s": f"{2 * pixels * cout * cin * 9 / t / 1e9:.1f}", "vs best": f"{best / t:.2f}x",
                "vs int8": f"{best8 / t:.2f}x", "rel err": f"{err[impl]:.4f}", "rel err relu": f"{err_relu[impl]:.4f}",
                "auto path": ("materialize" if cpu.conv_materializes(pixels) else "fused") if "auto" in impl else "",
            })
    return rows


def static_int8(dense: torch.nn.Conv2d, x: torch.Tensor) -> torch.nn.Module:
    """dense statically quantized by torch (eager mode, "x86" qconfig) and calibrated on x:
    quantize x, int8 convolution, dequantize."""
    tq = torch.ao.quantization
    conv = copy.deepcopy(dense)
    if hasattr(conv, "qconfig"):
        del conv.qconfig  # (the dynamic peer's: the Sequential's applies)
    m = torch.nn.Sequential(tq.QuantStub(), conv, tq.DeQuantStub()).eval()
    m.qconfig = tq.get_default_qconfig("x86")
    with warnings.catch_warnings():  # (torch.ao.quantization's deprecation notice)
        warnings.simplefilter("ignore")
        prepared = tq.prepare(m)
        with torch.inference_mode():
            prepared(x)
        return tq.convert(prepared)


def errors(impls: dict, x: torch.Tensor, epilogue) -> dict:
    """||y - y_fp32|| / ||y_fp32|| of each impl (a function of its input) on x, in its layout;
    y_fp32 through epilogue for the "+ BN + ReLU" rows."""
    lay = {False: x, True: x.contiguous(memory_format=torch.channels_last)}
    with torch.inference_mode():
        ref = impls["F.conv2d fp32"](x)
        out = {}
        for impl, f in impls.items():
            xi = lay["channels-last" in impl]
            y = f(xi.to(torch.bfloat16) if "bf16" in impl else xi).float()
            want = epilogue(ref) if "+ BN + ReLU" in impl else ref
            out[impl] = float((y - want).norm() / want.norm())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", default="cifar,resnet18", help=f"comma-separated sets of {sorted(LAYERS)}")
    ap.add_argument("--batches", default="1,8,64", help="ResNet-18's 56x56 layer skips batch 64 (memory, time)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stat", default="median", choices=["median", "min"])
    ap.add_argument("--cpu-time", action="store_true", help="this process's CPU time instead of wall time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    rows = []
    for group in args.layers.split(","):
        for name, cin, cout, side in LAYERS[group]:
            batches = [int(b) for b in args.batches.split(",")]
            if side >= 56:
                batches = [b for b in batches if b <= 8]
            rows += bench_layer(name, cin, cout, side, batches, args.stat, clock)
    report("cpu_conv" + ("_min" if args.stat == "min" else ""), rows, list(rows[0]))


if __name__ == "__main__":
    main()
