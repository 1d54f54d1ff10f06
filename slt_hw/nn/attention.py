"""Multi-head attention and a normalization-free transformer block with supermasked weights.

Q, K, V and O are separate SLTLinear layers (separate masks, names "<name>.q_proj" …), so
W_Q W_Kᵀ is never formed. Logits are scaled by 1/√(head dim of Q/K). `qk_init_scale` multiplies
the Q and K weight scales (the MHA-SLT paper's n_K^{1/4}); it is folded into their float32 scale.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import SLTLinear


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

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None, is_causal: bool = False, **_unused):
        if not isinstance(query, torch.Tensor) or query.dim() != 3:
            raise ValueError(f"query: expected a 3-D tensor, got {getattr(query, 'shape', type(query))}")
        key = query if key is None else key
        value = key if value is None else value
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, t, _ = query.shape
        s = key.shape[1]
        h = self.num_heads
        q = self.q_proj(query).view(b, t, h, -1).transpose(1, 2)  # (B, H, T, dk)
        k = self.k_proj(key).view(b, s, h, -1).transpose(1, 2)  # (B, H, S, dk)
        v = self.v_proj(value).view(b, s, h, -1).transpose(1, 2)  # (B, H, S, dv)
        logits = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, H, T, S)
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                logits = logits.masked_fill(attn_mask, float("-inf"))
            else:
                logits = logits + attn_mask
        if is_causal:
            causal = torch.ones(t, s, dtype=torch.bool, device=query.device).triu(1 + s - t)
            logits = logits.masked_fill(causal, float("-inf"))
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, s):
                raise ValueError(f"key_padding_mask: expected shape ({b}, {s}), got {tuple(key_padding_mask.shape)}")
            logits = logits.masked_fill(key_padding_mask.bool()[:, None, None, :], float("-inf"))
        attn = torch.softmax(logits, dim=-1)
        if self.dropout and self.training:
            attn = torch.nn.functional.dropout(attn, self.dropout)
        out = self.out_proj((attn @ v).transpose(1, 2).reshape(b, t, -1))  # (B, T, out)
        if not self.batch_first:
            out = out.transpose(0, 1)
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

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        a = self.attn(x, x, x, key_padding_mask=key_padding_mask, is_causal=self.causal)[0] + x
        return self.fc2(torch.relu(self.fc1(a))) + a
