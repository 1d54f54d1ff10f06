"""The int8 activation quantizer of slt_linear_int8: one definition for the kernels and the reference."""

from __future__ import annotations

import torch


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-token symmetric int8: x (..., K) ~ q * s[..., None], q in [-127, 127]."""
    s = x.abs().amax(-1, keepdim=True).to(torch.float32) / 127.0
    s = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(x.to(torch.float32) / s).clamp(-127, 127).to(torch.int8)
    return q, s.squeeze(-1)


# slt_conv2d_int8's activation scales: one per output pixel's patch (F.unfold's row), or one per
# image of the batch (its C x H x W values, as torch's per-tensor scale but batch-independent).
ACT_SCALES = ("patch", "image")


def quantize_images(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """act_scale "image": each image x[b] (all its values) quantized as one quantize_activations
    row; q in x's shape (contiguous), s (B,)."""
    q, s = quantize_activations(x.flatten(1))
    return q.view(x.shape), s


def dequantized_images(x: torch.Tensor) -> torch.Tensor:
    """q * s of quantize_images(x) in float32, contiguous (exact: |q| <= 127): the input whose
    float convolution is slt_conv2d_int8's with act_scale "image"."""
    q, s = quantize_images(x)
    return q.to(torch.float32) * s.view(-1, *([1] * (x.dim() - 1)))
