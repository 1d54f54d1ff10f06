"""Thresholds for a requested sparsity without sorting all scores: a two-pass 16-bit radix select.

Non-negative float32 values order like their int32 bit patterns, so the k-th smallest value is
found digit by digit with two `bincount`s of 65536 bins per tensor (O(n) time, O(65536) extra
memory, no sort and no concatenation of the layers: pytorch#75599, #77049, #64947).

Tie rule: a weight is kept iff |score| > τ, τ the r-th smallest value (r = weights to remove).
Without ties exactly r weights go; weights tied with τ all go (so ties can only remove more).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_BINS = 1 << 16


def removed_count(numel: int, sparsity: float, arg: str = "sparsity") -> int:
    """r = ⌊sparsity · numel⌋, the number of weights a sparsity removes (as Edge-Popup)."""
    check_sparsity(sparsity, arg)
    return math.floor(sparsity * numel)


def check_sparsity(sparsity: object, arg: str = "sparsity", allow_one: bool = False) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"{arg}: expected a float in [0, 1) (fraction removed), got {type(sparsity).__name__}")
    s = float(sparsity)
    if not (0.0 <= s <= 1.0 if allow_one else 0.0 <= s < 1.0):
        raise ValueError(f"{arg}: expected the fraction of weights removed in [0, 1), got {sparsity!r}")
    return s


def _bits(v: torch.Tensor) -> torch.Tensor:
    return v.detach().to(torch.float32).reshape(-1).contiguous().view(torch.int32)


def kth_smallest(values: Sequence[torch.Tensor], k: int) -> float:
    """The k-th smallest (1-based) element of the union of non-negative float tensors."""
    total = sum(v.numel() for v in values)
    if not 1 <= k <= total:
        raise ValueError(f"k: expected 1 <= k <= {total} (elements in all tensors), got {k}")
    bits = [_bits(v) for v in values]
    for b in bits:
        if b.numel() and int(b.min()) < 0:
            raise ValueError("values: expected non-negative floats (e.g. |scores|)")
    hist = sum(torch.bincount(b >> 16, minlength=_BINS).cpu() for b in bits)
    hi, k = _pick(hist, k)
    sel = [b[(b >> 16) == hi] & 0xFFFF for b in bits]
    hist = sum(torch.bincount(s, minlength=_BINS).cpu() for s in sel)
    lo, _ = _pick(hist, k)
    word = torch.tensor([(hi << 16) | lo], dtype=torch.int32)
    return float(word.view(torch.float32))


def _pick(hist: torch.Tensor, k: int) -> tuple[int, int]:
    """The bin holding the k-th element, and k's rank within that bin."""
    cum = torch.cumsum(hist, 0)
    d = int(torch.searchsorted(cum, torch.tensor([k], dtype=cum.dtype)))
    return d, k - (int(cum[d - 1]) if d else 0)


def sparsity_threshold(values: Sequence[torch.Tensor], removed: int) -> float:
    """τ such that `values > τ` keeps all but `removed` elements (see the tie rule above).

    removed = 0 gives τ = -inf (everything kept)."""
    total = sum(v.numel() for v in values)
    if not 0 <= removed <= total:
        raise ValueError(f"removed: expected 0 <= removed <= {total}, got {removed}")
    return -math.inf if removed == 0 else kth_smallest(values, removed)
