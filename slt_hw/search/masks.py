"""Masks from scores: straight-through top-k (Edge-Popup), coats (M-Sup), forced freeze states.

Coat thresholds of a group of score tensors (one layer, or all layers for a global threshold):
- coat 1 removes ⌊s₁·N⌋ weights (N counts frozen weights: pruned ones count as removed, locked
  ones as kept, so only free weights are ranked, with the removal count reduced by the pruned);
- fixed coats: coat k removes ⌊s_k·N⌋ the same way (s₁ < s₂ < …);
- adaptive coats: τ_{k+1} = mean of the |scores| that survive coat k (docs/search.md).
Every coat keeps |score| > τ_k and τ_k is non-decreasing, so coats are nested by construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .threshold import sparsity_threshold


class _StraightThrough(torch.autograd.Function):
    """Forward: the hard 0/1 mask. Backward: the identity to the scores (Edge-Popup)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def straight_through(scores: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(scores, hard)


def coat_thresholds(free_values: Sequence[torch.Tensor], total: int, pruned: int,
                    sparsities: Sequence[float], num_coats: int) -> list[float]:
    """Per-coat thresholds τ_1 ≤ … ≤ τ_K over the free |scores| of a group.

    total: all weights of the group (frozen included); pruned: how many are forced to 0.
    sparsities: (s₁,) for adaptive coats, or one sparsity per coat.
    """
    free = sum(v.numel() for v in free_values)
    taus: list[float] = []
    for c in range(num_coats):
        if c < len(sparsities):
            r = min(max(math.floor(sparsities[c] * total) - pruned, 0), free)
            tau = sparsity_threshold(free_values, r) if free else math.inf
            if taus:
                tau = max(tau, taus[-1])
        else:  # adaptive: the mean of the previous coat's survivors
            prev = taus[-1]
            s = sum(float(v[v > prev].sum(dtype=torch.float64)) for v in free_values)
            n = sum(int((v > prev).sum()) for v in free_values)
            tau = s / n if n else math.inf
            tau = max(tau, prev)
        taus.append(tau)
    return taus


def coat_taus(free: torch.Tensor, total: int, pruned: int, sparsities: Sequence[float],
              num_coats: int) -> list[torch.Tensor]:
    """coat_thresholds for one 1-D tensor of free |scores| as 0-d tensors: no host sync, so
    torch.compile traces the mask in one graph. Same values as coat_thresholds (kthvalue is the
    r-th smallest element, as kth_smallest)."""
    n = free.numel()
    taus: list[torch.Tensor] = []
    for c in range(num_coats):
        if c < len(sparsities):
            r = min(max(math.floor(sparsities[c] * total) - pruned, 0), n)
            if r == 0 or n == 0:
                tau = free.new_full((), -math.inf if r == 0 else math.inf)
            else:
                tau = torch.kthvalue(free.detach(), r).values
            if taus:
                tau = torch.maximum(tau, taus[-1])
        else:  # adaptive: the mean of the previous coat's survivors, in float64 as coat_thresholds
            prev = taus[-1]
            keep = free > prev
            total_kept = torch.where(keep, free.detach().double(), 0.0).sum()
            count = keep.sum()
            tau = torch.where(count > 0, total_kept / count.clamp_min(1), math.inf)
            tau = torch.maximum(tau, prev)
        taus.append(tau)
    return taus


def levels(values: torch.Tensor, taus: Sequence[float]) -> torch.Tensor:
    """m = Σ_k 1[|s| > τ_k] as float32 with a straight-through gradient per coat."""
    m = None
    for tau in taus:
        hard = (values > tau).to(torch.float32)
        term = straight_through(values, hard)
        m = term if m is None else m + term
    return m
