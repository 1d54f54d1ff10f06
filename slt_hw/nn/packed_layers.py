"""Inference forms of the search layers: seeds + packed masks, forward through the ops.

`SLTPackedLayer` wraps one SLTPackedLinear per mask copy (unshared folding masks share the
weights: same seed and name) and applies it as a linear layer or as a 2-D convolution
(slt_hw.ops.conv2d: the conv weight (out, in, kh, kw) is the contract's (out, in·kh·kw) matrix).
A copy's int8 setting (SLTPackedLinear.int8, set_int8_activations) picks slt_conv2d_int8 for a
convolution as it picks slt_linear_int8 for a linear; a convolution's `act_scale` is its
activation scales' granularity there ("patch" or "image", slt_conv2d_int8's).
"""

from __future__ import annotations

import torch
from torch import nn

from .._ops import check_act_scale
from ..formats import PackedWeight
from ..ops import conv2d
from .packed import SLTPackedLinear


class SLTPackedLayer(nn.Module):
    def __init__(self, packed: list[PackedWeight], *, kind: str = "linear", bias: torch.Tensor | None = None,
                 conv: dict | None = None, arch: dict | None = None, backend: str | None = None):
        super().__init__()
        if kind not in ("linear", "conv2d"):
            raise ValueError(f"kind: expected 'linear' or 'conv2d', got {kind!r}")
        if not packed or not all(isinstance(p, PackedWeight) for p in packed):
            raise TypeError("packed: expected a non-empty list of slt_hw.PackedWeight")
        flat = [p if len(p.shape) == 2 else _flatten(p) for p in packed]
        self.kind, self.conv, self.arch = kind, dict(conv or {}), dict(arch or {})
        self.weight_shape = tuple(packed[0].shape) if kind == "linear" else (
            packed[0].out_features, self.conv["in_channels"], *self.conv["kernel_size"])
        self.copies = nn.ModuleList(SLTPackedLinear(p, None, backend) for p in flat)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.mask_index = 0
        self._act_scale = "patch"

    @property
    def act_scale(self) -> str:
        """A convolution's int8 activation scales, slt_conv2d_int8's act_scale (settable: "patch"
        or "image"); a run-time setting, as int8 is."""
        return self._act_scale

    @act_scale.setter
    def act_scale(self, value: str) -> None:
        check_act_scale(value)
        self._act_scale = value

    @property
    def packed(self) -> list[PackedWeight]:
        return [c.packed for c in self.copies]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lin = self.copies[self.mask_index]
        if self.kind == "linear":  # (each .to skipped where it changes nothing: ~1 µs apiece, per call)
            f32 = x.dtype is torch.float32
            y = lin(x if f32 else x.to(torch.float32))
            b = self.bias
            if b is not None:
                y = y + (b if b.dtype is torch.float32 else b.to(torch.float32))
            return y if f32 else y.to(x.dtype)
        c = self.conv
        y = conv2d(x, lin.packed, None, c["kernel_size"], c["stride"], c["padding"], c["dilation"],
                   c.get("groups", 1), lin.backend, int8=lin.int8, act_scale=self._act_scale)
        return y if self.bias is None else y + self.bias[:, None, None]

    def extra_repr(self) -> str:
        p = self.copies[0].packed
        return (f"kind={self.kind}, shape={self.weight_shape}, format={p.format.value}, name={p.name!r}, "
                f"seed={p.seed}, masks={len(self.copies)}, bias={self.bias is not None}"
                + (f", act_scale={self._act_scale!r}" if self._act_scale != "patch" else ""))


def _flatten(p: PackedWeight) -> PackedWeight:
    return PackedWeight((p.out_features, p.in_features), p.seed, p.name, p.dist, p.scale, p.format,
                        p.planes, p.coat_scales, p.free_bits, p.prune_threshold, p.lock_threshold)
