"""Attention written out in float32: the ground truth of the attention op, and the masks every
attention path shares (bottom-right causal alignment: the T queries are the last T of S positions)."""

from __future__ import annotations

import torch


def check_causal(causal: bool, t: int, s: int) -> None:
    """Bottom-right causal alignment puts query i at position S - T + i: with T > S the first
    queries would precede every key. Refused on every path (rather than zeros on some)."""
    if causal and t > s:
        raise ValueError(f"causal: causal attention needs T <= S (the T queries are the last T of the S key "
                         f"positions), got T={t} queries and S={s} keys")


def allowed_mask(b: int, t: int, s: int, causal: bool, key_padding_mask: torch.Tensor | None,
                 attn_mask: torch.Tensor | None, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, 1, T, S) bool mask of allowed keys and the additive float mask (or None)."""
    check_causal(causal, t, s)
    allowed = torch.ones(b, 1, t, s, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed & ~torch.ones(t, s, dtype=torch.bool, device=device).triu(1 + s - t)
    if key_padding_mask is not None:
        allowed = allowed & ~key_padding_mask[:, None, None, :]
    add = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = allowed & ~attn_mask.to(device)
        else:
            add = attn_mask.to(device, torch.float32)
    return allowed, add


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None,
              attn_mask: torch.Tensor | None, causal: bool, scale: float) -> torch.Tensor:
    """(B, T, H, D) x (B, S, H, D) -> (B, T, H, DV) in float32; a query with no key left -> 0."""
    allowed, add = allowed_mask(q.shape[0], q.shape[1], k.shape[1], causal, key_padding_mask, attn_mask, q.device)
    qh, kh, vh = (t.to(torch.float32).transpose(1, 2) for t in (q, k, v))
    logits = (qh @ kh.transpose(-2, -1)) * scale
    if add is not None:
        logits = logits + add
    logits = logits.masked_fill(~allowed, float("-inf"))
    attn = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    return (attn @ vh).transpose(1, 2)
