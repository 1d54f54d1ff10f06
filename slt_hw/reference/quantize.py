"""The int8 activation quantizer of slt_linear_int8: one definition for the kernels and the reference."""

from __future__ import annotations

import torch


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-token symmetric int8: x (..., K) ~ q * s[..., None], q in [-127, 127]."""
    s = x.abs().amax(-1, keepdim=True).to(torch.float32) / 127.0
    s = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(x.to(torch.float32) / s).clamp(-127, 127).to(torch.int8)
    return q, s.squeeze(-1)
