"""A whole packed model on the CPU against the same dense model in torch, same run: an MLP block
(in -> hidden -> ReLU -> in, LLaMA-7B's 4096 / 11008 by default), converted and packed with
slt_hw, then run with float activations and, after slt_hw.nn.set_int8_activations, with int8
ones; the peers are the dense model in fp32 and bf16 and torch's quantize_dynamic of it (int8).

    .venv/bin/python bench/bench_cpu_model.py [--dims 4096x11008] [--batches 1,4,8,64] [--threads 2]

"vs int8" is torch quantize_dynamic's time / this time. The packed model's weight memory is its
masks (1 bit per weight), plus, once a table lookup has run twice on them, its cached P/N planes
(2 bits per weight, backends/layout_cache.py).
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch
from torch import nn
from utils import interleaved_times, report

import slt_hw
from slt_hw.backends import cpu
from slt_hw.nn import set_int8_activations


def dense_mlp(d: int, h: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, d, bias=False)).eval()


def bench(d: int, h: int, batches: list[int], stat: str) -> list[dict]:
    dense = dense_mlp(d, h)
    packed = slt_hw.pack(slt_hw.convert(dense, seed=0, sparsity=0.5)).eval()
    packed8 = copy.deepcopy(packed)
    assert set_int8_activations(packed8) == 2
    # the dense peers carry the found subnetwork's weights (what a user would run instead)
    weights = slt_hw.export_dense(packed)
    dense.load_state_dict(weights, strict=False)
    x = torch.randn(2, d)
    torch.testing.assert_close(dense(x), packed(x), rtol=1e-4, atol=1e-4)  # the same network
    bf16 = copy.deepcopy(dense).to(torch.bfloat16)
    with warnings.catch_warnings():  # torch deprecates its quantized tensors; still the peer asked for
        warnings.simplefilter("ignore")
        q8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(dense), {nn.Linear}, dtype=torch.qint8)
    mask_bytes = 2 * d * h / 8
    mem = {"dense fp32": 8 * d * h, "dense bf16": 4 * d * h, "torch int8 (quantize_dynamic)": 2 * d * h,
           "slt packed": mask_bytes, "slt packed int8": mask_bytes}
    rows = []
    for b in batches:
        x = torch.randn(b, d)
        xb = x.to(torch.bfloat16)
        impls = {"dense fp32": lambda x=x: dense(x), "dense bf16": lambda xb=xb: bf16(xb),
                 "torch int8 (quantize_dynamic)": lambda x=x: q8(x), "slt packed": lambda x=x: packed(x),
                 "slt packed int8": lambda x=x: packed8(x)}
        with torch.inference_mode():
            times = interleaved_times(impls, stat=stat)
        for name, t in times.items():  # the table lookups' cached planes, where they have run twice
            model = {"slt packed": packed, "slt packed int8": packed8}.get(name)
            held = 0 if model is None else sum(cpu.LUT_PLANES.held(t) for t in model.buffers())
            rows.append({"dims": f"{d}x{h}", "batch": b, "impl": name, "ms": f"{t * 1e3:.3f}",
                         "vs int8": f"{times['torch int8 (quantize_dynamic)'] / t:.2f}x",
                         "vs fp32": f"{times['dense fp32'] / t:.2f}x",
                         "weight MiB": f"{(mem[name] + held) / 2**20:.2f}"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dims", default="4096x11008", help="in x hidden of the MLP block")
    ap.add_argument("--batches", default="1,4,8,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stat", default="min", choices=["median", "min"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d, h = map(int, args.dims.split("x"))
    rows = bench(d, h, [int(b) for b in args.batches.split(",")], args.stat)
    report(f"cpu_model_{args.stat}", rows, list(rows[0]))


if __name__ == "__main__":
    main()
