"""The weight-generation contract in vectorised PyTorch: the ground truth for every backend.

Works on CPU and CUDA tensors alike; all arithmetic is on int64 tensors holding uint32 values,
with multiplications split into 16-bit halves so nothing overflows int64 (docs/rng.md).
"""

from __future__ import annotations

import torch

from .. import _normal_table
from ..contract import Dist, Key, check_geometry, words_per_row

_M32 = 0xFFFFFFFF

# Freeze states of the partially frozen format.
PRUNED, LOCKED, FREE = 0, 1, 2


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for int64 tensors of uint32 values, without int64 overflow."""
    lo = (x & 0xFFFF) * c  # < 2**48
    hi = ((x >> 16) * (c & 0xFFFF)) << 16  # < 2**48
    return (lo + hi) & _M32


def lowbias32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hash32(key: Key, counter: torch.Tensor) -> torch.Tensor:
    """h(k, c) = lowbias32(lowbias32(c ^ k0) ^ k1) on int64 tensors of uint32 counters."""
    return lowbias32(lowbias32(counter ^ key.k0) ^ key.k1)


def sign_words(key: Key, n: int, k: int, device=None) -> torch.Tensor:
    """(n, ceil(k/32)) int64 sign words: bit j of word (r, w) is the sign of weight (r, 32w + j)."""
    w = words_per_row(k)
    counters = torch.arange(n * w, dtype=torch.int64, device=device)
    return hash32(key, counters).view(n, w)


def half_words(key: Key, n: int, k: int, device=None) -> torch.Tensor:
    """(n, k) int64 16-bit chunks: weight (r, c) takes half (c & 1) of hash r·Kp/2 + c//2."""
    pairs = (k + 1) // 2  # one hash per pair of columns
    kp = words_per_row(k) * 32
    rows = torch.arange(n, dtype=torch.int64, device=device)
    counters = rows[:, None] * (kp // 2) + torch.arange(pairs, dtype=torch.int64, device=device)[None, :]
    h = hash32(key, counters)
    return torch.stack((h & 0xFFFF, h >> 16), dim=-1).view(n, 2 * pairs)[:, :k]


def normal_table(device=None) -> torch.Tensor:
    """The contract's 4096-entry float32 table Z (docs/rng.md §5)."""
    bits = torch.tensor(_normal_table.NORMAL_TABLE_F32_BITS, dtype=torch.int64)
    return bits.to(torch.int32).view(torch.float32).to(device)


def unpack_bits(words: torch.Tensor, k: int) -> torch.Tensor:
    """(..., W) words (any int dtype, uint32 bit patterns) -> (..., k) bool, LSB first."""
    shifts = torch.arange(32, dtype=torch.int64, device=words.device)
    bits = (words.to(torch.int64)[..., None] >> shifts) & 1
    return bits.flatten(-2)[..., :k].bool()


def generate(key: Key, n: int, k: int, dist: Dist | str, scale: float, device=None) -> torch.Tensor:
    """The random weights W0 of an (n, k) tensor as float32, exactly as every backend makes them."""
    dist = Dist.parse(dist)
    check_geometry(n, k)
    s = torch.tensor(scale, dtype=torch.float32, device=device)
    if dist is Dist.SIGNED_CONSTANT:
        neg = unpack_bits(sign_words(key, n, k, device), k)
        return torch.where(neg, -s, s)
    x = half_words(key, n, k, device)
    if dist is Dist.UNIFORM:
        # (2x - 65535) is an odd integer in [-65535, 65535]; * 2^-16 is exact, * a rounds once.
        return ((2 * x - 65535).to(torch.float32) * (2.0**-16)) * s
    return normal_table(device)[x >> 4] * s


def freeze_states(key: Key, n: int, k: int, prune_threshold: int, lock_threshold: int,
                  device=None) -> torch.Tensor:
    """(n, k) uint8 states from the FREEZE stream's 16-bit chunks x:
    PRUNED if x < P, LOCKED if x < P + L, FREE otherwise (thresholds from contract.freeze_thresholds)."""
    check_geometry(n, k)
    x = half_words(key, n, k, device)
    states = torch.full_like(x, FREE, dtype=torch.uint8)
    states[x < lock_threshold] = LOCKED
    states[x < prune_threshold] = PRUNED
    return states
