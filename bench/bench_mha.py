"""slt_mha against dense attention: the attention core against SDPA's flash backend, and the
whole attention block (Q/K/V projections, attention, O projection) against the
nn.MultiheadAttention-equivalent with dense weights (one in_proj GEMM, SDPA, out_proj), at
prefill and at decode with a KV cache. Prints a table, writes bench/results/mha_<device>.csv.

    python bench/bench_mha.py [--quick] [--dist signed_constant]

GPU (bf16, the fused Triton path): prefill batch 4, T 1k-8k, 16 heads, head dim 64 and 128;
decode batch 1-64, context 1k-32k, head dim 128. Timing: triton.testing.do_bench (median, L2
flushed), round-robin over the implementations. Targets (issue 6, H100/H200 class): attention
core >= 0.9x SDPA flash; the SLT block at decode >= 2x the dense-weight block.
CPU (fp32, the composed path: C++ slt_linear and the cpp backend's attention op, whose decode
steps (up to 4 queries) run its own kernel and the rest torch's SDPA; "decode-core" times that
op alone against SDPA, on a float32 cache and on a bfloat16 one): smaller shapes, timed
round-robin; with
signed-constant weights also both blocks with int8 activations in their projections (slt_mha
int8=True; the dense block with torch's dynamically quantized linears). "slt_layer" is the
packed SLTMultiheadAttention module of the same weights (what a model runs: its projections
through its packed layers' prepared calls, slt_mha's bits). "vs_best" is the fastest dense
block's time (fp32 or int8) / this time.

TFLOP/s counts 4·B·H·T·S·D for the attention core (half the square when causal) plus 2·rows·
out·in per projection; GB/s counts weights (mask bits for SLT, dense weights otherwise) and
the KV cache read at decode.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import warnings

import torch
import torch.nn.functional as F
from utils import interleaved_times, report  # bench/ is the script's directory

import slt_hw
from slt_hw.contract import Dist, default_scale
from slt_hw.formats import Format, PackedWeight
from slt_hw.mha import KVCache, slt_mha
from slt_hw.nn import SLTMultiheadAttention, set_int8_activations

COLUMNS = ["mode", "batch", "T", "context", "heads", "head_dim", "impl", "ms", "TFLOP/s", "GB/s", "vs_dense", "vs_best"]


def _packed(n: int, k: int, dist: str, name: str, device: str) -> PackedWeight:
    words = torch.randint(-(2**31), 2**31, (1, n, k // 32), dtype=torch.int64, device=device).to(torch.int32)
    d = Dist.parse(dist)
    return PackedWeight(shape=(n, k), seed=1, name=name, dist=d, scale=default_scale(d, k), format=Format.BINARY,
                        planes=words)


class Block:
    """One attention layer as packed weights and as the dense nn.MultiheadAttention equivalent;
    on the CPU also as the packed SLTMultiheadAttention module whose weights they are (its
    projections through its packed layers' prepared calls)."""

    def __init__(self, e: int, h: int, dist: str, dtype: torch.dtype, device: str):
        self.e, self.h, self.d = e, h, e // h
        self.layers = {}
        if device == "cpu":
            layer = slt_hw.pack(SLTMultiheadAttention(e, h, seed=1, name="bench", dist=dist).eval()).eval()
            (self.q, self.k, self.v, self.o), *_ = layer._packed_weights()
            self.layers[False] = layer
        else:
            self.q, self.k, self.v, self.o = (_packed(e, e, dist, f"bench.{p}", device) for p in "qkvo")
        self.in_proj = torch.cat([p.materialize() for p in (self.q, self.k, self.v)]).to(dtype)
        self.out_proj = self.o.materialize().to(dtype)
        self.weight_bytes = {"slt": 4 * e * e // 8, "dense": 4 * e * e * torch.finfo(dtype).bits // 8,
                             "dense_int8": 4 * e * e}
        # int8 activations: the CPU's, signed-constant weights only (slt_linear_int8)
        self.int8 = device == "cpu" and Dist.parse(dist) is Dist.SIGNED_CONSTANT
        if self.int8:
            self.in_proj8, self.out_proj8 = _dynamic_int8(self.in_proj), _dynamic_int8(self.out_proj)
            self.layers[True] = copy.deepcopy(self.layers[False])
            set_int8_activations(self.layers[True])

    def slt(self, x, cache=None, causal=False, int8=False):
        return slt_mha(x, self.q, self.k, self.v, self.o, self.h, cache=cache, causal=causal, int8=int8)

    def layer(self, x, cache=None, causal=False, int8=False):
        return self.layers[int8](x, is_causal=causal, cache=cache)[0]

    def dense(self, x, kv=None, causal=False, int8=False):
        """kv: (k_cache, v_cache, length) in (B, H, S, D) for decode; the new token goes at `length`.
        int8: the projections by torch's dynamically quantized linear."""
        b, t, e = x.shape
        in_proj = self.in_proj8 if int8 else (lambda z: F.linear(z, self.in_proj))
        out_proj = self.out_proj8 if int8 else (lambda z: F.linear(z, self.out_proj))
        qkv = in_proj(x).view(b, t, 3, self.h, self.d)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        if kv is not None:
            kc, vc, n = kv
            kc[:, :, n:n + t], vc[:, :, n:n + t] = k, v
            k, v = kc[:, :, :n + t], vc[:, :, :n + t]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and kv is None)
        return out_proj(y.transpose(1, 2).reshape(b, t, e))

    def variants(self, slt, dense) -> dict:
        """The timed calls: slt and dense blocks, and their int8 forms where the block has them."""
        fns = {"dense_block": dense(False), "slt_block": slt(False)}
        if self.int8:
            fns |= {"dense_block_int8": dense(True), "slt_block_int8": slt(True)}
        for i8 in self.layers:
            fns["slt_layer_int8" if i8 else "slt_layer"] = slt(i8, layer=True)
        return fns


def _dynamic_int8(w: torch.Tensor):
    """torch's dynamically quantized linear (default qconfig) of weight w: the dense int8 peer."""
    import torch.ao.nn.quantized.dynamic as qdyn

    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.data.copy_(w)
    lin.qconfig = torch.ao.quantization.default_dynamic_qconfig
    with warnings.catch_warnings():  # (torch.ao.quantization's deprecation notice)
        warnings.simplefilter("ignore")
        return qdyn.Linear.from_float(lin)


def _time_gpu(fns: dict, rounds: int) -> dict[str, float]:
    import triton.testing

    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(triton.testing.do_bench(fn, warmup=5, rep=30, return_mode="median"))
    return {name: statistics.median(v) for name, v in samples.items()}


def _time_cpu(fns: dict, rounds: int) -> dict[str, float]:
    return {n: s * 1e3 for n, s in interleaved_times(fns, rounds=rounds, per_round=2, warmup=1).items()}


def _check(name: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    err = (got.float() - want.float()).abs().max().item()
    if not err <= tol * max(1.0, want.float().abs().max().item()):
        print(f"bench_mha: {name} disagrees with the dense block (max error {err:.3g})")


def _rows(base: dict, ms: dict, flops: dict, nbytes: dict, dense: str) -> list[dict]:
    best = min(t for name, t in ms.items() if name.startswith(dense))
    return [{**base, "impl": name, "ms": f"{t:.4f}", "TFLOP/s": f"{flops[name] / t / 1e9:.2f}",
             "GB/s": f"{nbytes[name] / t / 1e6:.0f}", "vs_dense": f"{ms[dense] / t:.2f}",
             "vs_best": f"{best / t:.2f}"} for name, t in ms.items()]


def _weight_bytes(blk: Block, name: str) -> int:
    return blk.weight_bytes["slt" if name.startswith("slt") else "dense_int8" if name.endswith("int8") else "dense"]


def prefill(blk: Block, b: int, t: int, dtype, device, timer, rounds, core: bool) -> list[dict]:
    e, h, d = blk.e, blk.h, blk.d
    x = torch.randn(b, t, e, dtype=dtype, device=device)
    attn_flops = 2 * b * h * t * t * d  # causal: half of 4·B·H·T²·D
    proj_flops = 2 * b * t * e * e * 4
    fns = blk.variants(lambda i8, layer=False: lambda: (blk.layer if layer else blk.slt)(x, causal=True, int8=i8),
                       lambda i8: lambda: blk.dense(x, causal=True, int8=i8))
    with torch.no_grad():
        for name in fns:
            _check(name, fns[name](), fns["dense_block"](), 0.05)
    flops = dict.fromkeys(fns, attn_flops + proj_flops)
    io = 2 * b * t * e * x.element_size()
    nbytes = {name: _weight_bytes(blk, name) + io for name in fns}
    rows = []
    if core:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        from slt_hw.kernels.attention import flash_attention

        q, k, v = (torch.randn(b, t, h, d, dtype=dtype, device=device) for _ in range(3))
        qs, ks, vs = (z.transpose(1, 2).contiguous() for z in (q, k, v))

        def sdpa():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)

        core_fns = {"sdpa_flash": sdpa, "slt_attention": lambda: flash_attention(q, k, v, causal=True)}
        _check("slt_attention", core_fns["slt_attention"]().transpose(1, 2), sdpa(), 0.05)
        ms = timer(core_fns, rounds)
        kv_bytes = 4 * b * t * h * d * q.element_size()
        rows += _rows({"mode": "prefill-core", "batch": b, "T": t, "context": t, "heads": h, "head_dim": d}, ms,
                      dict.fromkeys(core_fns, attn_flops), dict.fromkeys(core_fns, kv_bytes), "sdpa_flash")
    with torch.no_grad():
        ms = timer(fns, rounds)
    rows += _rows({"mode": "prefill-block", "batch": b, "T": t, "context": t, "heads": h, "head_dim": d}, ms,
                  flops, nbytes, "dense_block")
    return rows


def decode(blk: Block, b: int, ctx: int, dtype, device, timer, rounds) -> list[dict]:
    e, h, d = blk.e, blk.h, blk.d
    x = torch.randn(b, 1, e, dtype=dtype, device=device)
    cache = KVCache(b, h, ctx, d, dtype=dtype, device=device)
    cache.k.normal_()
    cache.v.normal_()
    kc = cache.k[:, :ctx].transpose(1, 2).contiguous()  # the dense block keeps (B, H, S, D)
    vc = cache.v[:, :ctx].transpose(1, 2).contiguous()

    def slt(int8, layer=False):
        def run():
            cache.length = ctx - 1  # every call decodes the same last position
            return (blk.layer if layer else blk.slt)(x, cache=cache, causal=True, int8=int8)
        return run

    fns = blk.variants(slt, lambda i8: lambda: blk.dense(x, (kc, vc, ctx - 1), int8=i8))
    with torch.no_grad():
        for name in fns:
            _check(name, fns[name](), fns["dense_block"](), 0.05)
        ms = timer(fns, rounds)
    kv = 2 * b * ctx * e * x.element_size()
    flops = 4 * b * ctx * e + 2 * b * e * e * 4
    nbytes = {name: _weight_bytes(blk, name) + kv for name in fns}
    base = {"mode": "decode", "batch": b, "T": 1, "context": ctx, "heads": h, "head_dim": d}
    rows = []
    if device == "cpu":  # the attention core alone: the cpp backend's op (its decode kernel) against SDPA
        from slt_hw.backends import composite, cpu

        for dt in (torch.float32, torch.bfloat16):  # (a float32 cache, as slt_mha's above, and a bfloat16 one)
            tag = "" if dt == torch.float32 else "_bf16"
            q = torch.randn(b, 1, h, d, dtype=dt)
            c = cache
            if dt != cache.k.dtype:  # (the same keys and values, rounded)
                c = KVCache(b, h, ctx, d, dtype=dt)
                c.k.copy_(cache.k), c.v.copy_(cache.v)
            k, v = c.k[:, :ctx], c.v[:, :ctx]  # (the cache's head-major views, as slt_mha reads them)
            core = {f"sdpa{tag}": lambda q=q, k=k, v=v: composite.sdpa_attention(q, k, v, None, None, True, d ** -0.5),
                    f"slt_attention{tag}": lambda q=q, k=k, v=v: cpu.attention(q, k, v, None, None, True, d ** -0.5)}
            _check(f"slt_attention{tag}", core[f"slt_attention{tag}"](), core[f"sdpa{tag}"](), 1e-2 if tag else 1e-4)
            rows += _rows({**base, "mode": "decode-core"}, timer(core, rounds), dict.fromkeys(core, 4 * b * ctx * e),
                          dict.fromkeys(core, kv // (1 if tag == "" else 2)), f"sdpa{tag}")
    return rows + _rows(base, ms, dict.fromkeys(fns, flops), nbytes, "dense_block")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", default="signed_constant", choices=[d.value for d in Dist])
    ap.add_argument("--quick", action="store_true", help="one shape per mode")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    dtype = torch.bfloat16 if gpu else torch.float32
    timer = _time_gpu if gpu else _time_cpu
    heads = 16
    if gpu:
        pre = [(4, t, hd) for hd in (64, 128) for t in (1024, 2048, 4096, 8192)]
        dec = [(b, c) for b in (1, 16, 64) for c in (1024, 4096, 16384, 32768)]
        dec_hd = 128
    else:  # the composed path; shapes a 2-core CPU gets through in a minute or two
        pre = [(1, 128, 64), (1, 512, 64)]
        dec = [(1, 128), (1, 1024), (1, 4096), (8, 1024)]  # (128: the projections most of a step)
        dec_hd = 128  # embed 2048: 64 MB of fp32 dense weights, past this CPU's 32 MB L3
    if args.quick:
        pre, dec = pre[:1], dec[:1]
    rows = []
    blocks = {}
    for b, t, hd in pre:
        blk = blocks.setdefault(hd, Block(heads * hd, heads, args.dist, dtype, device))
        rows += prefill(blk, b, t, dtype, device, timer, args.rounds, core=gpu)
    for b, ctx in dec:
        blk = blocks.setdefault(dec_hd, Block(heads * dec_hd, heads, args.dist, dtype, device))
        rows += decode(blk, b, ctx, dtype, device, timer, args.rounds)
        if gpu:
            torch.cuda.empty_cache()
    report(f"mha_{device}", rows, COLUMNS)
    where = torch.cuda.get_device_name() if gpu else "CPU (composed path: C++ slt_linear + the cpp attention op)"
    print(f"# {where}, dist {args.dist}, {dtype}, {heads} heads (embed = heads x head_dim)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
