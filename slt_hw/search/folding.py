"""Folding: one block applied `iters` times with the same random weights (Hidden-Fold Networks).

Shared masks reuse the block's supermask every iteration; unshared masks give each iteration its
own scores over the same weights (mask memory grows with depth, weight memory does not). Each
iteration may have its own normalization ("unshared normalization"). Multi-stage folding chains
several folded stages.
"""

from __future__ import annotations

import torch
from torch import nn


def set_mask_index(module: nn.Module, index: int) -> None:
    """Select which per-iteration mask every SLT layer (training or packed) inside uses."""
    for m in module.modules():
        if hasattr(m, "mask_index"):
            m.mask_index = index


def _norm(kind: str | None, num_features: int | None) -> nn.Module:
    if kind is None:
        return nn.Identity()
    if num_features is None:
        raise ValueError("num_features: required with a normalization")
    if kind == "batch":
        return nn.BatchNorm1d(num_features, affine=False)
    if kind == "layer":
        return nn.LayerNorm(num_features, elementwise_affine=False)
    raise ValueError(f"norm: expected None, 'batch' or 'layer', got {kind!r}")


class Folded(nn.Module):
    """x ← norm_i(block(x, *args)) for i in 0..iters-1, with the block's random weights shared.

    norm "batch" (BatchNorm1d over the last dim of 2-D inputs) and "layer" are non-affine, as in
    the papers; each iteration gets its own (the statistics differ per iteration).
    """

    def __init__(self, block: nn.Module, iters: int, *, shared_masks: bool = True, norm: str | None = None,
                 num_features: int | None = None, activation: str | None = None):
        super().__init__()
        if not isinstance(block, nn.Module):
            raise TypeError(f"block: expected an nn.Module, got {type(block).__name__}")
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f"iters: expected an int >= 1, got {iters!r}")
        if activation not in (None, "relu"):
            raise ValueError(f"activation: expected None or 'relu', got {activation!r}")
        self.block = block
        self.iters, self.shared_masks, self.activation = iters, bool(shared_masks), activation
        self.norms = nn.ModuleList(_norm(norm, num_features) for _ in range(iters))
        self._arch = {"iters": iters, "shared_masks": bool(shared_masks), "norm": norm,
                      "num_features": num_features, "activation": activation}
        if not shared_masks:
            from .topk import slt_layers

            for layer in slt_layers(block):
                layer.set_mask_copies(iters)

    _spec_children = ("block",)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        for i in range(self.iters):
            set_mask_index(self.block, 0 if self.shared_masks else i)
            x = self.norms[i](self.block(x, *args, **kwargs))
            if self.activation == "relu":
                x = torch.relu(x)
        return x


class FoldedStages(nn.Module):
    """Multi-stage folding: folded stages in sequence, extra arguments (e.g. adj) passed to each."""

    def __init__(self, stages):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self._arch = {}

    _spec_children = ("stages",)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x, *args, **kwargs)
        return x
