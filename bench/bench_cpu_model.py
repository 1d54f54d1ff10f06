"""A whole packed model on the CPU against the same dense model in torch, same run: an MLP block
(in -> hidden -> ReLU -> in, LLaMA-7B's 4096 / 11008 by default), a CNN (Edge-Popup's Conv6,
the CIFAR ResNet-18, on 32 x 32 inputs) or a decode step through transformer blocks
(SLTTransformerBlock: attention over a KV cache and a ReLU FFN, no normalization; 2048 wide,
FFN 5632, 16 heads, 1024 keys by default), converted and packed with slt_hw, then run with float
activations and, after slt_hw.nn.set_int8_activations, with int8 ones; the peers are the dense
model in fp32 and bf16 and torch's quantize_dynamic of it (int8; the CNNs' convolutions too,
as torch.ao.nn.quantized.dynamic.Conv2d), the CNNs also on channels-last input. The transformer's
dense peer (DenseBlock) is written as a torch user would: one in_proj GEMM, a (B, H, S, D) cache,
SDPA, out_proj and the FFN, in fp32 and through quantize_dynamic (no bf16 there: this CPU has
no native bf16 GEMM).

    .venv/bin/python bench/bench_cpu_model.py [--model mlp|transformer|conv6|resnet18]
        [--dims 4096x11008] [--blocks 4] [--batches 1,4,8,64] [--threads 2]
        [--heads 16 --context 1024 (transformer)]

With --blocks N the MLP model is N blocks in sequence: past the L3 (from 2 blocks at LLaMA's
sizes), every layer's weights, or masks and cached layouts, come from DRAM on every forward, as
in a real model; one block's repeated calls find its layouts in the L3.

"vs int8" is torch quantize_dynamic's time / this time (the channels-last run's for
channels-last rows). The CNNs also run torch's static int8 (FX graph mode, the "x86" qconfig
mapping, calibrated on the timed batch: convolutions fused with their ReLUs, activations int8
between layers), the int8 peer a user would pick for a CNN: its dynamic convolution loses most
of the signal on non-negative inputs (pytorch/pytorch#70480); "vs static" is its time / this
time, "rel err" ||y - y_fp32|| / ||y_fp32|| of the logits. "slt packed int8 image" runs the
packed convolutions with act_scale="image" (one activation scale per image); "slt fused" is the
same model after slt_hw.nn.fuse_epilogues (each convolution's BatchNorm, residual add and ReLU
in its epilogue). The packed model's
weight memory is its masks (1 bit per weight), plus, once a table lookup has run twice on them,
its cached P/N planes (2 bits per weight, backends/layout_cache.py), and once the implicit int8
GEMM has run twice on a convolution's, its tap-major P/N planes (2 bits per weight).
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch
import torch.ao.nn.quantized.dynamic as qdyn
import torch.nn.functional as F
from torch import nn
from utils import interleaved_times, report

import slt_hw
from slt_hw.backends import cpu
from slt_hw.models import ConvNet, ResNet18
from slt_hw.nn import fuse_epilogues, set_int8_activations

CNNS = {"conv6": lambda: ConvNet("conv6", (3, 32, 32), 10, seed=0, dense=True),
        "resnet18": lambda: ResNet18((3, 32, 32), 10, seed=0, dense=True)}


def dense_mlp(d: int, h: int, blocks: int = 1) -> nn.Module:
    torch.manual_seed(0)
    layers = [m for _ in range(blocks) for m in (nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, d, bias=False))]
    return nn.Sequential(*layers).eval()


def bench(d: int, h: int, batches: list[int], stat: str, blocks: int = 1) -> list[dict]:
    dense = dense_mlp(d, h, blocks)
    packed = slt_hw.pack(slt_hw.convert(dense, seed=0, sparsity=0.5)).eval()
    packed8 = copy.deepcopy(packed)
    assert set_int8_activations(packed8) == 2 * blocks
    # the dense peers carry the found subnetwork's weights (what a user would run instead)
    weights = slt_hw.export_dense(packed)
    dense.load_state_dict(weights, strict=False)
    x = torch.randn(2, d)
    torch.testing.assert_close(dense(x), packed(x), rtol=1e-4, atol=1e-4)  # the same network
    bf16 = copy.deepcopy(dense).to(torch.bfloat16)
    with warnings.catch_warnings():  # torch deprecates its quantized tensors; still the peer asked for
        warnings.simplefilter("ignore")
        q8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(dense), {nn.Linear}, dtype=torch.qint8)
    n_weights = 2 * d * h * blocks
    mask_bytes = n_weights / 8
    mem = {"dense fp32": 4 * n_weights, "dense bf16": 2 * n_weights, "torch int8 (quantize_dynamic)": n_weights,
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
            dims = f"{d}x{h}" + (f" x{blocks}" if blocks > 1 else "")
            rows.append({"dims": dims, "batch": b, "impl": name, "ms": f"{t * 1e3:.3f}",
                         "vs int8": f"{times['torch int8 (quantize_dynamic)'] / t:.2f}x",
                         "vs fp32": f"{times['dense fp32'] / t:.2f}x",
                         "weight MiB": f"{(mem[name] + held) / 2**20:.2f}"})
    return rows


def bench_cnn(name: str, batches: list[int], stat: str) -> list[dict]:
    torch.manual_seed(0)
    dense = CNNS[name]().eval()
    packed = slt_hw.pack(slt_hw.convert(dense, seed=0, sparsity=0.5)).eval()
    packed8 = copy.deepcopy(packed)
    switched = set_int8_activations(packed8)
    packed8i = copy.deepcopy(packed)
    set_int8_activations(packed8i, act_scale="image")
    fused = fuse_epilogues(packed8i)  # (shares packed8i's layers)
    dense.load_state_dict(slt_hw.export_dense(packed), strict=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(dense(x), packed(x), rtol=1e-4, atol=1e-4)  # the same network
    dense_cl = copy.deepcopy(dense).to(memory_format=torch.channels_last)
    with warnings.catch_warnings():  # torch deprecates its quantized tensors; still the peer asked for
        warnings.simplefilter("ignore")
        q8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(dense), {nn.Linear, nn.Conv2d}, dtype=torch.qint8,
                                                    mapping={nn.Linear: qdyn.Linear, nn.Conv2d: qdyn.Conv2d})
    weights = sum(m.weight.numel() for m in dense.modules() if isinstance(m, nn.Linear | nn.Conv2d))
    mem = {"dense fp32": 4 * weights, "dense fp32 channels-last": 4 * weights, "torch int8 (quantize_dynamic)": weights,
           "torch int8 channels-last": weights, "torch static int8": weights,
           "torch static int8 channels-last": weights,
           "slt packed": weights / 8, "slt packed int8": weights / 8, "slt packed int8 channels-last": weights / 8,
           "slt packed int8 image channels-last": weights / 8, "slt fused int8 image channels-last": weights / 8}
    rows = []
    for b in batches:
        x = torch.randn(b, 3, 32, 32)
        xc = x.contiguous(memory_format=torch.channels_last)
        qs = static_int8(dense, x)
        impls = {"dense fp32": lambda x=x: dense(x), "dense fp32 channels-last": lambda x=xc: dense_cl(x),
                 "torch int8 (quantize_dynamic)": lambda x=x: q8(x), "torch int8 channels-last": lambda x=xc: q8(x),
                 "torch static int8": lambda x=x, q=qs: q(x),
                 "torch static int8 channels-last": lambda x=xc, q=qs: q(x),
                 "slt packed": lambda x=x: packed(x), "slt packed int8": lambda x=x: packed8(x),
                 "slt packed int8 channels-last": lambda x=xc: packed8(x),
                 "slt packed int8 image channels-last": lambda x=xc: packed8i(x),
                 "slt fused int8 image channels-last": lambda x=xc: fused(x)}
        with torch.inference_mode():
            ref = dense(x)
            err = {impl: float((f() - ref).norm() / ref.norm()) for impl, f in impls.items()}
            times = interleaved_times(impls, stat=stat)
        best = min(times["dense fp32"], times["dense fp32 channels-last"])
        static = min(times["torch static int8"], times["torch static int8 channels-last"])
        models = {"slt packed": packed, "slt packed int8": packed8, "slt packed int8 channels-last": packed8,
                  "slt packed int8 image channels-last": packed8i, "slt fused int8 image channels-last": fused}
        for impl, t in times.items():
            q = times["torch int8 channels-last" if "channels-last" in impl else "torch int8 (quantize_dynamic)"]
            model = models.get(impl)  # (+ the layouts cached for its masks: the lookups' codes, the taps' planes)
            held = 0 if model is None else sum(c.held(w) for c in (cpu.LUT_PLANES, cpu.CONV_TAPS_PLANES)
                                               for w in model.buffers())
            rows.append({"model": f"{name} ({switched} int8 layers)", "batch": b, "impl": impl, "ms": f"{t * 1e3:.3f}",
                         "vs int8": f"{q / t:.2f}x", "vs static": f"{static / t:.2f}x", "vs fp32": f"{best / t:.2f}x",
                         "rel err": f"{err[impl]:.4f}", "weight MiB": f"{(mem[impl] + held) / 2**20:.2f}"})
    return rows


class DenseBlock(nn.Module):
    """The dense peer of a packed SLTTransformerBlock at a decode step, as a user would write it
    with torch: one in_proj GEMM for Q, K, V, the step's keys and values written into a
    (B, H, S, D) cache, SDPA, out_proj, the ReLU FFN, the residuals (no normalization)."""

    def __init__(self, block: nn.Module, batch: int, ctx: int):
        super().__init__()
        attn = block.attn
        self.h, e = attn.num_heads, attn.embed_dim
        lin = {n: getattr(attn, n).copies[0].packed.materialize() for n in ("q_proj", "k_proj", "v_proj", "out_proj")}
        self.in_proj = nn.Linear(e, 3 * e, bias=False)
        self.in_proj.weight.data.copy_(torch.cat([lin["q_proj"], lin["k_proj"], lin["v_proj"]]))
        self.out_proj = nn.Linear(e, e, bias=False)
        self.out_proj.weight.data.copy_(lin["out_proj"])
        self.fc1 = nn.Linear(e, block.fc1.weight_shape[0], bias=False)
        self.fc1.weight.data.copy_(block.fc1.copies[0].packed.materialize())
        self.fc2 = nn.Linear(block.fc1.weight_shape[0], e, bias=False)
        self.fc2.weight.data.copy_(block.fc2.copies[0].packed.materialize())
        self.k = torch.randn(batch, self.h, ctx, e // self.h)
        self.v = torch.randn(batch, self.h, ctx, e // self.h)
        self.length = ctx - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape
        qkv = self.in_proj(x).view(b, t, 3, self.h, e // self.h)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        n = self.length
        self.k[:, :, n:n + t], self.v[:, :, n:n + t] = k, v
        y = F.scaled_dot_product_attention(q, self.k[:, :, :n + t], self.v[:, :, :n + t])
        a = self.out_proj(y.transpose(1, 2).reshape(b, t, e)) + x
        return self.fc2(torch.relu(self.fc1(a))) + a


def bench_transformer(d: int, h: int, heads: int, blocks: int, ctx: int, batches: list[int],
                      stat: str) -> list[dict]:
    """A decode step (one new token, ctx - 1 cached) through `blocks` packed SLTTransformerBlocks
    against their dense peers (DenseBlock: fp32, and torch's quantize_dynamic of its linears)."""
    from slt_hw.nn import SLTTransformerBlock

    torch.manual_seed(0)
    search = nn.Sequential(*(SLTTransformerBlock(d, heads, h, seed=0, name=f"b{i}", causal=True)
                             for i in range(blocks))).eval()
    packed = slt_hw.pack(search).eval()
    packed8 = copy.deepcopy(packed)
    set_int8_activations(packed8)
    n_weights = blocks * (4 * d * d + 2 * d * h)
    rows = []
    for b in batches:
        dense = nn.Sequential(*(DenseBlock(m, b, ctx) for m in packed)).eval()
        with warnings.catch_warnings():  # torch deprecates its quantized tensors; still the peer asked for
            warnings.simplefilter("ignore")
            q8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(dense), {nn.Linear}, dtype=torch.qint8)
        caches = {}
        for name, model, peer in (("slt packed", packed, dense), ("slt packed int8", packed8, q8)):
            caches[name] = []
            for m, p in zip(model, peer, strict=True):  # (the dense peer's cached keys and values)
                c = m.new_cache(b, ctx)
                c.k[:, :ctx - 1] = p.k[:, :, :ctx - 1].transpose(1, 2)
                c.v[:, :ctx - 1] = p.v[:, :, :ctx - 1].transpose(1, 2)
                caches[name].append(c)

        def slt(model, cs, x):
            def run():
                y = x
                for m, c in zip(model, cs, strict=True):
                    c.length = ctx - 1  # every call decodes the same last position
                    y = m(y, cache=c)
                return y
            return run

        x = torch.randn(b, 1, d)
        impls = {"dense fp32": lambda x=x, f=dense: f(x), "torch int8 (quantize_dynamic)": lambda x=x, f=q8: f(x),
                 "slt packed": slt(packed, caches["slt packed"], x),
                 "slt packed int8": slt(packed8, caches["slt packed int8"], x)}
        with torch.inference_mode():
            ref = dense(x)
            err = {name: float((f() - ref).norm() / ref.norm()) for name, f in impls.items()}
            times = interleaved_times(impls, stat=stat)
        mem = {"dense fp32": 4 * n_weights, "torch int8 (quantize_dynamic)": n_weights, "slt packed": n_weights / 8,
               "slt packed int8": n_weights / 8}
        for name, t in times.items():
            model = {"slt packed": packed, "slt packed int8": packed8}.get(name)
            held = 0 if model is None else sum(cpu.LUT_PLANES.held(w) for w in model.buffers())
            rows.append({"model": f"{blocks} x transformer {d}/{h}, {heads} heads, {ctx} keys", "batch": b,
                         "impl": name, "ms": f"{t * 1e3:.3f}",
                         "vs int8": f"{times['torch int8 (quantize_dynamic)'] / t:.2f}x",
                         "vs fp32": f"{times['dense fp32'] / t:.2f}x", "rel err": f"{err[name]:.4f}",
                         "weight MiB": f"{(mem[name] + held) / 2**20:.2f}"})
    return rows


def static_int8(dense: nn.Module, x: torch.Tensor) -> nn.Module:
    """dense statically quantized by torch's FX graph mode ("x86" mapping), calibrated on x."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with warnings.catch_warnings():  # (torch.ao.quantization's deprecation notice)
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(dense), get_default_qconfig_mapping("x86"), (x,))
        with torch.inference_mode():
            prepared(x)
        return convert_fx(prepared)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="mlp", choices=["mlp", "transformer", *CNNS])
    ap.add_argument("--dims", default=None, help="in x hidden of the MLP block (4096x11008) or of the transformer "
                                                 "blocks' FFN (2048x5632)")
    ap.add_argument("--heads", type=int, default=16, help="transformer: attention heads")
    ap.add_argument("--context", type=int, default=1024, help="transformer: keys a decode step attends to")
    ap.add_argument("--blocks", type=int, default=1,
                    help="MLP blocks in sequence: from 2 (4 x 11008 x 4096 weights, 40 MiB of codes) the model is "
                         "larger than a 32 MiB L3 and each layer's weights come from DRAM, as in a real model")
    ap.add_argument("--batches", default="1,4,8,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stat", default="min", choices=["median", "min"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    if args.model == "mlp":
        d, h = map(int, (args.dims or "4096x11008").split("x"))
        rows = bench(d, h, batches, args.stat, args.blocks)
    elif args.model == "transformer":
        d, h = map(int, (args.dims or "2048x5632").split("x"))
        rows = bench_transformer(d, h, args.heads, args.blocks, args.context, batches, args.stat)
    else:
        rows = bench_cnn(args.model, batches, args.stat)
    blocks = f"_x{args.blocks}" if args.model in ("mlp", "transformer") and args.blocks > 1 else ""
    report(f"cpu_model_{args.model}{blocks}_{args.stat}", rows, list(rows[0]))


if __name__ == "__main__":
    main()
