"""slt_mha: multi-head attention whose Q, K, V and O projections are packed SLT weights.

Three implementations of one function, chosen like slt_linear's backends:
- fused (the "triton" backend; automatic on CUDA): Q/K/V projections of one input in one
  launch (kernels/linear_grouped.py) straight into a flash-attention kernel
  (kernels/attention.py) that reads them in place, then the fused O projection;
- composed (every other backend, e.g. "cpp" on CPU): slt_linear for each projection on that
  backend, then torch's scaled_dot_product_attention;
- reference: materialised weights and the softmax written out in float32 (the ground truth).

Inference only: inputs that require grad raise (train with SLTMultiheadAttention's search
form). A `KVCache`, owned by the caller, turns a call into a decode step: the new keys and
values are appended and the queries attend to everything cached (bottom-right causal
alignment: the T new queries are the last T positions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import dispatch
from .formats import PackedWeight
from .ops import _linear as _ops_linear
from .ops import slt_linear, slt_linear_reference

__all__ = ["KVCache", "slt_mha", "slt_mha_reference"]


def _pos_int(v: object, arg: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{arg}: expected an int >= 1, got {v!r}")
    return v


class KVCache:
    """Keys (B, max_len, H, D) and values (B, max_len, H, DV) of the positions seen so far, plus
    their key padding. One cache per attention layer; `reset()` reuses the buffers.

    Stored head-major, (B, H, max_len, D), and shown as (B, max_len, H, D) views: each head's
    positions are contiguous, which torch's CPU SDPA reads 1.5x faster at decode than the
    position-major layout (4096 cached keys, 16 heads of 128), and the Triton kernel reads
    either through strides."""

    def __init__(self, batch: int, num_heads: int, max_len: int, head_dim: int, v_head_dim: int | None = None, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        for arg, v in (("batch", batch), ("num_heads", num_heads), ("max_len", max_len), ("head_dim", head_dim)):
            _pos_int(v, arg)
        v_head_dim = head_dim if v_head_dim is None else _pos_int(v_head_dim, "v_head_dim")
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"dtype: expected float32, float16 or bfloat16, got {dtype}")
        self.k = torch.zeros(batch, num_heads, max_len, head_dim, dtype=dtype, device=device).transpose(1, 2)
        self.v = torch.zeros(batch, num_heads, max_len, v_head_dim, dtype=dtype, device=device).transpose(1, 2)
        self.pad = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.length = 0
        self._padded = False

    @property
    def max_len(self) -> int:
        return self.k.shape[1]

    def reset(self) -> None:
        self.length, self._padded = 0, False
        self.pad.zero_()

    def append(self, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Store k (B, T, H, D), v (B, T, H, DV) at the next T positions; returns the cached
        keys, values and key padding mask (None if nothing is padded) of all positions."""
        t = k.shape[1]
        for name, new, buf in (("k", k, self.k), ("v", v, self.v)):
            if tuple(new.shape) != (buf.shape[0], t, *buf.shape[2:]):
                raise ValueError(f"cache: {name} of shape {tuple(new.shape)} does not fit a cache of "
                                 f"(batch, heads, head dim) {(buf.shape[0], *buf.shape[2:])}")
            if new.device != buf.device or new.dtype != buf.dtype:
                raise ValueError(f"cache: holds {buf.dtype} on {buf.device}, got {name} as {new.dtype} on "
                                 f"{new.device} (create the cache with the activations' dtype and device)")
        if self.length + t > self.max_len:
            raise ValueError(f"cache: full: {self.length} cached + {t} new positions > max_len={self.max_len}")
        lo, hi = self.length, self.length + t
        self.k[:, lo:hi] = k
        self.v[:, lo:hi] = v
        if key_padding_mask is not None:
            self.pad[:, lo:hi] = key_padding_mask
            # Asking a GPU whether anything is padded would stall the host every decode step:
            # there, a given mask counts as padding (the kernels apply it either way).
            if not self._padded:
                self._padded = bool(key_padding_mask.any()) if key_padding_mask.device.type == "cpu" else True
        self.length = hi
        return self.k[:, :hi], self.v[:, :hi], (self.pad[:, :hi] if self._padded else None)


# ---------------------------------------------------------------------- checks


def _check(x, q, k, v, o, num_heads, key, value, bias, key_padding_mask, attn_mask, cache):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"x: expected (batch, seq, embed), got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"x: expected dtype float32, float16 or bfloat16, got {x.dtype}")
    h = _pos_int(num_heads, "num_heads")
    for name, p in (("q", q), ("k", k), ("v", v), ("o", o)):
        if not isinstance(p, PackedWeight) or len(p.shape) != 2:
            raise TypeError(f"{name}: expected a 2-D slt_hw.PackedWeight, got {type(p).__name__}")
        if p.device != x.device:
            raise ValueError(f"{name}: on {p.device}, x on {x.device}")
    key = x if key is None else key
    value = key if value is None else value
    for name, t in (("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3 or t.shape[0] != x.shape[0] or t.device != x.device:
            raise ValueError(f"{name}: expected a (batch={x.shape[0]}, seq, embed) tensor on {x.device}, got "
                             f"{tuple(getattr(t, 'shape', ()))}")
        if t.dtype != x.dtype:
            raise TypeError(f"{name}: expected dtype {x.dtype} like x, got {t.dtype}")
    if key.shape[1] != value.shape[1]:
        raise ValueError(f"value: expected {key.shape[1]} positions like key, got {value.shape[1]}")
    for name, p, t in (("q", q, x), ("k", k, key), ("v", v, value)):
        if p.in_features != t.shape[-1]:
            raise ValueError(f"{name}: in_features={p.in_features} does not match the input's last dim "
                             f"{t.shape[-1]}")
    if q.out_features != k.out_features or q.out_features % h:
        raise ValueError(f"q, k: expected equal out_features divisible by num_heads={h}, got "
                         f"{q.out_features} and {k.out_features}")
    if v.out_features % h:
        raise ValueError(f"v: out_features={v.out_features} is not divisible by num_heads={h}")
    if o.in_features != v.out_features:
        raise ValueError(f"o: in_features={o.in_features} does not match v's out_features={v.out_features}")
    if bias is None:
        bias = (None,) * 4
    if not isinstance(bias, Sequence) or len(bias) != 4:
        raise ValueError("bias: expected None or a sequence of 4 tensors or None (q, k, v, o)")
    for name, b, p in zip("qkvo", bias, (q, k, v, o), strict=True):
        if b is not None and (not isinstance(b, torch.Tensor) or tuple(b.shape) != (p.out_features,)
                              or b.device != x.device):
            raise ValueError(f"bias: the {name} bias should be a ({p.out_features},) tensor on {x.device}, got "
                             f"{tuple(getattr(b, 'shape', ()))}")
    s_new = key.shape[1]
    if key_padding_mask is not None:
        if (not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool
                or tuple(key_padding_mask.shape) != (x.shape[0], s_new) or key_padding_mask.device != x.device):
            raise ValueError(f"key_padding_mask: expected a bool ({x.shape[0]}, {s_new}) tensor on {x.device} (one "
                             f"entry per key of this call, True = ignore), got "
                             f"{getattr(key_padding_mask, 'dtype', type(key_padding_mask).__name__)} "
                             f"{tuple(getattr(key_padding_mask, 'shape', ()))}")
    if cache is not None:
        if not isinstance(cache, KVCache):
            raise TypeError(f"cache: expected a slt_hw.mha.KVCache or None, got {type(cache).__name__}")
        if key is not x or value is not x:
            raise ValueError("cache: a KV cache is for self-attention (key and value are x)")
    s_tot = s_new + (cache.length if cache is not None else 0)
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor) or tuple(attn_mask.shape) != (x.shape[1], s_tot):
            raise ValueError(f"attn_mask: expected a ({x.shape[1]}, {s_tot}) tensor (bool: True = not allowed, "
                             f"or float added to the logits), got {tuple(getattr(attn_mask, 'shape', ()))}")
    tensors = [x, key, value, *(b for b in bias if b is not None)]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError("x: slt_mha is inference-only and has no autograd, but an input requires grad; call it "
                           "under torch.no_grad() or torch.inference_mode(), or train with SLTMultiheadAttention's "
                           "search form")
    return key, value, list(bias)


def _allowed(b, t, s, causal, pad, attn_mask, device):
    """(B, 1, T, S) bool mask of allowed keys and the additive float mask (or None)."""
    allowed = torch.ones(b, 1, t, s, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed & ~torch.ones(t, s, dtype=torch.bool, device=device).triu(1 + s - t)
    if pad is not None:
        allowed = allowed & ~pad[:, None, None, :]
    add = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = allowed & ~attn_mask.to(device)
        else:
            add = attn_mask.to(device, torch.float32)
    return allowed, add


# ---------------------------------------------------------------------- implementations


def _attend_math(qh, kh, vh, allowed, add, scale):
    """(B, T, H, D) x (B, S, H, D) -> (B, T, H, DV) in float32, rows with no key -> 0."""
    qh, kh, vh = (t.to(torch.float32).transpose(1, 2) for t in (qh, kh, vh))
    logits = (qh @ kh.transpose(-2, -1)) * scale
    if add is not None:
        logits = logits + add
    logits = logits.masked_fill(~allowed, float("-inf"))
    attn = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    return (attn @ vh).transpose(1, 2)


def _project(x, p, b, backend):
    """slt_linear on inputs slt_mha has validated (its own checks cost more than a decode step's)."""
    return slt_linear_reference(x, p, b) if backend == "reference" else _ops_linear(x, p, b, backend)


def _heads(y, h):
    return y.view(*y.shape[:2], h, y.shape[-1] // h)


def _run(x, q, k, v, o, h, key, value, bias, kpm, attn_mask, causal, cache, scale, backend):
    """Reference and composed paths: separate projections, then math or SDPA attention."""
    bq, bk, bv, bo = bias
    b, t = x.shape[:2]
    qh = _heads(_project(x, q, bq, backend), h)
    kh = _heads(_project(key, k, bk, backend), h)
    vh = _heads(_project(value, v, bv, backend), h)
    if cache is not None:
        kh, vh, kpm = cache.append(kh, vh, kpm)
    s = kh.shape[1]
    if backend == "reference":
        allowed, add = _allowed(b, t, s, causal, kpm, attn_mask, x.device)
        out = _attend_math(qh, kh, vh, allowed, add, scale)
    elif kpm is None and attn_mask is None and (not causal or t == 1 or t == s):
        # No mask to build: causal is SDPA's own (t == s) or allows every key (one query, last).
        out = F.scaled_dot_product_attention(qh.transpose(1, 2), kh.transpose(1, 2), vh.transpose(1, 2),
                                             is_causal=causal and t > 1, scale=scale).transpose(1, 2)
    else:
        allowed, add = _allowed(b, t, s, causal, kpm, attn_mask, x.device)
        mask = allowed if add is None else torch.where(allowed, add, float("-inf")).to(qh.dtype)
        out = F.scaled_dot_product_attention(qh.transpose(1, 2), kh.transpose(1, 2), vh.transpose(1, 2),
                                             attn_mask=mask, scale=scale).transpose(1, 2)
        out = torch.where(allowed.any(-1).transpose(1, 2)[..., None], out, 0.0)  # (B, T, 1, 1)
    out = out.to(x.dtype).reshape(b, t, v.out_features)
    return _project(out, o, bo, backend)


def _fused(x, q, k, v, o, h, key, value, bias, kpm, causal, cache, scale):
    from slt_hw.kernels import linear_grouped
    from slt_hw.kernels.attention import flash_attention

    bq, bk, bv, bo = bias
    b, t = x.shape[:2]
    dv = v.out_features // h
    # Projections grouped by input: self-attention is one launch, cross-attention two or three.
    plan = [("q", q, bq, x), ("k", k, bk, key), ("v", v, bv, value)]
    groups: list[list] = []
    for item in plan:
        for g in groups:
            if g[0][3] is item[3] and linear_grouped.groupable([g[0][1], item[1]]) is None:
                g.append(item)
                break
        else:
            groups.append([item])
    proj = {}
    for g in groups:
        y = linear_grouped.linear_grouped(g[0][3], [it[1] for it in g], [it[2] for it in g])
        col = 0
        for name, p, _, _ in g:
            proj[name] = y[..., col:col + p.out_features]
            col += p.out_features
    qh, kh, vh = _heads(proj["q"], h), _heads(proj["k"], h), _heads(proj["v"], h)
    if cache is not None:
        kh, vh, kpm = cache.append(kh, vh, kpm)
    out = torch.empty(b, t, h, dv, dtype=x.dtype, device=x.device)
    flash_attention(qh, kh, vh, causal=causal, key_padding_mask=kpm, softmax_scale=scale, out=out)
    return slt_linear(out.view(b, t, h * dv), o, bo, backend="triton")


# ---------------------------------------------------------------------- public


def slt_mha(x: torch.Tensor, q: PackedWeight, k: PackedWeight, v: PackedWeight, o: PackedWeight, num_heads: int, *,
            key: torch.Tensor | None = None, value: torch.Tensor | None = None,
            bias: Sequence[torch.Tensor | None] | None = None, key_padding_mask: torch.Tensor | None = None,
            attn_mask: torch.Tensor | None = None, causal: bool = False, cache: KVCache | None = None,
            softmax_scale: float | None = None, backend: str | None = None) -> torch.Tensor:
    """Attention with packed projections: O(softmax(Q Kᵀ · scale + masks) V), heads split evenly.

    x: (B, T, E) queries (and keys/values unless key/value are given), float32/float16/bfloat16.
    q, k, v, o: packed (out, in) weights; q and k share out_features = H·D, v has H·DV and o takes
    H·DV inputs. The Q/K init scale of the MHA-SLT paper lives in q's and k's scale (set by
    SLTMultiheadAttention(qk_init_scale=…)); softmax_scale defaults to 1/√D.
    bias: (bq, bk, bv, bo), each a tensor or None. key_padding_mask: (B, S) bool for this call's
    keys, True = ignore. attn_mask: (T, S_total) bool (True = not allowed) or float added to the
    logits (not on the fused path). causal: query i attends to keys up to its position.
    cache: a KVCache for decode. A query with no key left gets a zero output, not NaN.
    backend: "auto" (fused Triton on CUDA, else the composed path), "triton", "reference", or a
    slt_linear backend name for the composed path's projections. Returns (B, T, o.out_features).
    """
    key, value, bias = _check(x, q, k, v, o, num_heads, key, value, bias, key_padding_mask, attn_mask, cache)
    h = num_heads
    scale = 1.0 / math.sqrt(q.out_features // h) if softmax_scale is None else float(softmax_scale)
    name = dispatch.requested(backend)
    if name == "auto":
        auto = dispatch.select("linear_planes", x.device)
        name = "triton" if auto.name == "triton" and attn_mask is None else "auto"
    if name == "triton":
        why = dispatch.get("triton").not_supported_reasons(x.device)
        if why:
            raise RuntimeError(f"backend: 'triton' cannot run slt_mha on {x.device.type}: {'; '.join(why)}")
        if attn_mask is not None:
            raise ValueError("attn_mask: the fused Triton path takes causal and key_padding_mask only; pass "
                             "backend='auto' or a slt_linear backend to use SDPA with an arbitrary mask")
        return _fused(x, q, k, v, o, h, key, value, bias, key_padding_mask, causal, cache, scale)
    return _run(x, q, k, v, o, h, key, value, bias, key_padding_mask, attn_mask, causal, cache, scale, name)


def slt_mha_reference(x, q, k, v, o, num_heads, *, key=None, value=None, bias=None, key_padding_mask=None,
                      attn_mask=None, causal=False, cache=None, softmax_scale=None) -> torch.Tensor:
    """The ground truth: materialised weights, softmax written out in float32."""
    return slt_mha(x, q, k, v, o, num_heads, key=key, value=value, bias=bias, key_padding_mask=key_padding_mask,
                   attn_mask=attn_mask, causal=causal, cache=cache, softmax_scale=softmax_scale,
                   backend="reference")
