"""slt_mha: multi-head attention whose Q, K, V and O projections are packed SLT weights.

One function whose steps dispatch like slt_linear: the projections (the linear ops, or the
"linear_grouped" op where the backend has one: Triton's Q/K/V of one input in one launch,
kernels/linear_grouped.py), the attention op on the projected heads (Triton: flash attention,
kernels/attention.py; cpp: a decode step of up to 4 queries by csrc/cpu/attention.cpp, one
pass over each head's cached keys and one over its values, else torch's
scaled_dot_product_attention, which cuda/cupy run; reference: the softmax written out in
float32), then the O projection. Automatic on CUDA this is the fused Triton path, on CPU the
C++ kernels.

Inference only: inputs that require grad raise (train with SLTMultiheadAttention's search
form). A `KVCache`, owned by the caller, turns a call into a decode step: the new keys and
values are appended and the queries attend to everything cached (bottom-right causal
alignment: the T new queries are the last T positions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from . import _ops, dispatch
from .formats import PackedWeight

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


# ---------------------------------------------------------------------- steps


def _linear(x: torch.Tensor, p: PackedWeight, bias: torch.Tensor | None, backend: str,
            int8: bool = False) -> torch.Tensor:
    fmt, w = _ops.weight_args(p)
    return _ops.call(f"linear_int8_{fmt}" if int8 else f"linear_{fmt}", x, bias, *w, backend, 0, None)


def _project(inputs, packed, biases, backend: str, int8: bool = False, layers=None) -> list[torch.Tensor]:
    """Q, K, V: one linear op each (or the layers' calls, where given), or one "linear_grouped"
    call per distinct input where the backend has that op (self-attention: one launch;
    cross-attention: two; float only)."""
    grouped = None if int8 else dispatch.find("linear_grouped", inputs[0].device, backend)
    if grouped is None:
        if layers is not None:
            return [layer(x) for layer, x in zip(layers[:3], inputs, strict=True)]
        return [_linear(x, p, b, backend, int8) for x, p, b in zip(inputs, packed, biases, strict=True)]
    out: list[torch.Tensor | None] = [None] * len(inputs)
    for i, x in enumerate(inputs):
        if out[i] is None:
            same = [j for j in range(i, len(inputs)) if inputs[j] is x]
            ys = grouped.ops["linear_grouped"](x, [packed[j] for j in same], [biases[j] for j in same])
            for j, y in zip(same, ys, strict=True):
                out[j] = y
    return out


def _heads(y, h):
    return y.view(*y.shape[:2], h, y.shape[-1] // h)


# ---------------------------------------------------------------------- public


def slt_mha(x: torch.Tensor, q: PackedWeight, k: PackedWeight, v: PackedWeight, o: PackedWeight, num_heads: int, *,
            key: torch.Tensor | None = None, value: torch.Tensor | None = None,
            bias: Sequence[torch.Tensor | None] | None = None, key_padding_mask: torch.Tensor | None = None,
            attn_mask: torch.Tensor | None = None, causal: bool = False, cache: KVCache | None = None,
            softmax_scale: float | None = None, backend: str | None = None, int8: bool = False) -> torch.Tensor:
    """Attention with packed projections: O(softmax(Q Kᵀ · scale + masks) V), heads split evenly.

    x: (B, T, E) queries (and keys/values unless key/value are given), float32/float16/bfloat16.
    q, k, v, o: packed (out, in) weights; q and k share out_features = H·D, v has H·DV and o takes
    H·DV inputs. The Q/K init scale of the MHA-SLT paper lives in q's and k's scale (set by
    SLTMultiheadAttention(qk_init_scale=…)); softmax_scale defaults to 1/√D.
    bias: (bq, bk, bv, bo), each a tensor or None. key_padding_mask: (B, S) bool for this call's
    keys, True = ignore. attn_mask: (T, S_total) bool (True = not allowed) or float added to the
    logits (Triton runs it through SDPA: the flash kernel takes none). causal: query i attends to
    keys up to its position.
    cache: a KVCache for decode. A query with no key left gets a zero output, not NaN.
    backend: "auto" (default, or SLT_HW_BACKEND: fused Triton on CUDA, the C++ kernels (SDPA past
    4 queries) on CPU) or a backend name for every step. int8: the four projections with int8 activations
    (slt_linear_int8: signed-constant weights; the attention itself stays in x's dtype).
    Returns (B, T, o.out_features).
    """
    return _mha(x, q, k, v, o, num_heads, key, value, bias, key_padding_mask, attn_mask, causal, cache,
                softmax_scale, backend, int8)


def _mha(x, q, k, v, o, num_heads, key, value, bias, key_padding_mask, attn_mask, causal, cache, softmax_scale,
         backend, int8, layers=None) -> torch.Tensor:
    """slt_mha; layers: None, or modules (q, k, v, o) computing the four projections of their
    packed weights with their biases, called where no grouped op applies (SLTMultiheadAttention's
    packed layers: their prepared calls on the CPU spare the op layer's Python, ~20 µs a
    projection, a fifth of a 2048-wide int8 decode step at a short context)."""
    if not isinstance(int8, bool):
        raise TypeError(f"int8: expected a bool, got {type(int8).__name__}")
    key, value, bias = _check(x, q, k, v, o, num_heads, key, value, bias, key_padding_mask, attn_mask, cache)
    h = num_heads
    scale = 1.0 / math.sqrt(q.out_features // h) if softmax_scale is None else float(softmax_scale)
    backend = backend or dispatch.AUTO
    dispatch.requested(backend)  # an unknown name fails here, before any work
    b, t = x.shape[:2]
    qh, kh, vh = (_heads(y, h) for y in _project((x, key, value), (q, k, v), bias[:3], backend, int8, layers))
    kpm = key_padding_mask
    if cache is not None:
        kh, vh, kpm = cache.append(kh, vh, kpm)
    out = _ops.call("attention", qh, kh, vh, kpm, attn_mask, causal, scale, backend).reshape(b, t, v.out_features)
    return layers[3](out) if layers is not None else _linear(out, o, bias[3], backend, int8)


def slt_mha_reference(x, q, k, v, o, num_heads, *, key=None, value=None, bias=None, key_padding_mask=None,
                      attn_mask=None, causal=False, cache=None, softmax_scale=None, int8=False) -> torch.Tensor:
    """The ground truth: materialised weights, softmax written out in float32."""
    return slt_mha(x, q, k, v, o, num_heads, key=key, value=value, bias=bias, key_padding_mask=key_padding_mask,
                   attn_mask=attn_mask, causal=causal, cache=cache, softmax_scale=softmax_scale,
                   backend="reference", int8=int8)
