"""Multi-head attention and a normalization-free transformer block with supermasked weights.

Q, K, V and O are separate SLTLinear layers (separate masks, names "<name>.q_proj" …), so
W_Q W_Kᵀ is never formed. Logits are scaled by 1/√(head dim of Q/K). `qk_init_scale` multiplies
the Q and K weight scales (the MHA-SLT paper's n_K^{1/4}); it is folded into their float32 scale.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from ..mha import KVCache, _mha
from ..reference.attention import allowed_mask
from .base import SLTLinear
from .packed_layers import SLTPackedLayer


class SLTMultiheadAttention(nn.Module):
    """Signature and return value of nn.MultiheadAttention: forward(query, key, value, ...) -> (out, None).

    key_padding_mask (B, S) bool, True = ignore that key; attn_mask (T, S) bool (True = not
    allowed) or float (added to the logits); is_causal adds the causal mask.
    qk_dim / v_dim: total projection widths (default embed_dim), split over the heads.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, seed: int, name: str, kdim: int | None = None,
                 vdim: int | None = None, qk_dim: int | None = None, v_dim: int | None = None,
                 out_dim: int | None = None, qk_init_scale: float = 1.0, batch_first: bool = True,
                 bias: bool = False, dropout: float = 0.0, **slt):
        super().__init__()
        for arg, v in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg}: expected an int >= 1, got {v!r}")
        qk_dim, v_dim = qk_dim or embed_dim, v_dim or embed_dim
        for arg, v in (("qk_dim", qk_dim), ("v_dim", v_dim)):
            if v % num_heads:
                raise ValueError(f"{arg}: expected a multiple of num_heads={num_heads}, got {v}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        self.embed_dim, self.num_heads, self.batch_first, self.dropout = embed_dim, num_heads, batch_first, dropout
        # what torch's transformer layers read to pick their fused fast path: there is no fused in-projection
        # (Q, K, V are separate masked layers), so in eval they take the ordinary path through this forward
        self.in_proj_weight = self.in_proj_bias = None
        self._qkv_same_embed_dim = False
        self.head_dim = qk_dim // num_heads
        self.q_proj = SLTLinear(embed_dim, qk_dim, seed=seed, name=f"{name}.q_proj", bias=bias,
                                scale_multiplier=qk_init_scale, **slt)
        self.k_proj = SLTLinear(kdim or embed_dim, qk_dim, seed=seed, name=f"{name}.k_proj", bias=bias,
                                scale_multiplier=qk_init_scale, **slt)
        self.v_proj = SLTLinear(vdim or embed_dim, v_dim, seed=seed, name=f"{name}.v_proj", bias=bias, **slt)
        self.out_proj = SLTLinear(v_dim, out_dim or embed_dim, seed=seed, name=f"{name}.out_proj", bias=bias,
                                  **slt)
        self._arch = {"embed_dim": embed_dim, "num_heads": num_heads, "seed": seed, "name": name, "kdim": kdim,
                      "vdim": vdim, "qk_dim": qk_dim, "v_dim": v_dim, "out_dim": out_dim,
                      "qk_init_scale": qk_init_scale, "batch_first": batch_first, "bias": bias,
                      "dropout": dropout, **slt}

    def new_cache(self, batch: int, max_len: int, *, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> KVCache:
        """An empty KV cache for decode with this layer (owned by the caller)."""
        h = self.num_heads
        if device is None:  # where the layer lives
            t = next(itertools.chain(self.buffers(), self.parameters()), None)
            device = "cpu" if t is None else t.device
        return KVCache(batch, h, max_len, self._arch["qk_dim"] // h, self._arch["v_dim"] // h, dtype=dtype,
                       device=device)

    def _packed_weights(self):
        """((q, k, v, o) packed weights, biases, backend, int8) in the packed form, else None."""
        layers = (self.q_proj, self.k_proj, self.v_proj, self.out_proj)
        if not all(isinstance(m, SLTPackedLayer) for m in layers):
            return None
        lins = [m.copies[m.mask_index] for m in layers]
        int8 = [lin.int8 for lin in lins]
        if any(int8) and not all(int8):
            raise ValueError(f"int8: the four projections of an attention layer run int8 activations together "
                             f"(set_int8_activations), got q, k, v, o = {int8}")
        backends = {lin.backend for lin in lins}
        if len(backends) > 1:
            raise ValueError(f"backend: the four projections of an attention layer run on one backend, got q, k, "
                             f"v, o = {[lin.backend for lin in lins]}")
        return [lin.packed for lin in lins], [m.bias for m in layers], lins[0].backend, int8[0]

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None, is_causal: bool = False, cache: KVCache | None = None,
                **_unused):
        """cache: a KVCache (see new_cache) to decode: this call's keys and values are appended and
        its queries attend to all cached positions. A query with no key left gets zeros.

        The packed form (after slt_hw.pack) runs slt_hw.mha.slt_mha (fused on CUDA; elsewhere its
        projections through this layer's packed layers, whose prepared calls skip the op layer),
        unless need_weights is set; the search form runs the attention written out (with autograd)."""
        if not isinstance(query, torch.Tensor) or query.dim() != 3:
            raise ValueError(f"query: expected a 3-D tensor, got {getattr(query, 'shape', type(query))}")
        self_attn = (key is None or key is query) and (value is None or value is key or value is query)
        key = query if key is None else key
        value = key if value is None else value
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        kpm = None if key_padding_mask is None else key_padding_mask.bool()
        packed = self._packed_weights()
        if packed is not None and not need_weights and not (self.dropout and self.training):
            (q, k, v, o), bias, backend, int8 = packed
            # (the projections through the layers themselves: their prepared calls, slt_mha's bits)
            out = _mha(query, q, k, v, o, self.num_heads, None if self_attn else key, None if self_attn else value,
                       bias, kpm, attn_mask, is_causal, cache, 1.0 / math.sqrt(self.head_dim), backend, int8,
                       (self.q_proj, self.k_proj, self.v_proj, self.out_proj))
            weights = None
        else:
            out, weights = self._attend(query, key, value, kpm, need_weights, attn_mask, is_causal, cache)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _attend(self, query, key, value, kpm, need_weights, attn_mask, is_causal, cache):
        b, t, _ = query.shape
        h = self.num_heads
        dk, dv = self.head_dim, self._arch["v_dim"] // h
        q = self.q_proj(query).view(b, t, h, dk).transpose(1, 2)  # (B, H, T, dk)
        k = self.k_proj(key).view(b, key.shape[1], h, dk)  # (B, S, H, dk)
        v = self.v_proj(value).view(b, value.shape[1], h, dv)  # (B, S, H, dv)
        if kpm is not None and kpm.shape != k.shape[:2]:
            raise ValueError(f"key_padding_mask: expected shape {tuple(k.shape[:2])}, got {tuple(kpm.shape)}")
        if cache is not None:
            k, v, kpm = cache.append(k, v, kpm)
        s = k.shape[1]
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        if attn_mask is not None and tuple(attn_mask.shape) != (t, s):
            raise ValueError(f"attn_mask: expected shape ({t}, {s}), got {tuple(attn_mask.shape)}")
        allowed, add = allowed_mask(b, t, s, is_causal, kpm, attn_mask, query.device)
        logits = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, H, T, S)
        if add is not None:
            logits = logits + add
        attn = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        attn = torch.where(allowed.any(-1, keepdim=True), attn, 0.0)  # no key left: zeros, not NaN
        if self.dropout and self.training:
            attn = torch.nn.functional.dropout(attn, self.dropout)
        out = self.out_proj((attn @ v).transpose(1, 2).reshape(b, t, h * dv))  # (B, T, out)
        return out, (attn.mean(1) if need_weights else None)


class SLTTransformerBlock(nn.Module):
    """Blk(x) = F(a) + a with a = Attn(x) + x, F a two-layer ReLU FFN; no normalization (paper §Thm)."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, seed: int, name: str,
                 qk_dim: int | None = None, qk_init_scale: float = 1.0, causal: bool = False, **slt):
        super().__init__()
        self.causal = causal
        self.attn = SLTMultiheadAttention(d_model, num_heads, seed=seed, name=f"{name}.attn", qk_dim=qk_dim,
                                          qk_init_scale=qk_init_scale, **slt)
        self.fc1 = SLTLinear(d_model, d_ff, seed=seed, name=f"{name}.fc1", **slt)
        self.fc2 = SLTLinear(d_ff, d_model, seed=seed, name=f"{name}.fc2", **slt)
        self._arch = {"d_model": d_model, "num_heads": num_heads, "d_ff": d_ff, "seed": seed, "name": name,
                      "qk_dim": qk_dim, "qk_init_scale": qk_init_scale, "causal": causal, **slt}

    def new_cache(self, batch: int, max_len: int, **kw) -> KVCache:
        return self.attn.new_cache(batch, max_len, **kw)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        a = self.attn(x, x, x, key_padding_mask=key_padding_mask, is_causal=self.causal, cache=cache)[0] + x
        return self.fc2(torch.relu(self.fc1(a))) + a
