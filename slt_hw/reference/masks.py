"""Bit-level mask mechanics of docs/rng.md §7 in PyTorch: packing, the free-bit stream of the
partially frozen format, its offset table, and effective weights (the reference for kernels)."""

from __future__ import annotations

import torch

from ..contract import OFFSET_BLOCK_WORDS, WORD_BITS, Dist, Key, words_per_row
from .prng import FREE, LOCKED, PRUNED, freeze_states, generate, unpack_bits

__all__ = [
    "FREE", "LOCKED", "PRUNED", "frozen_offsets", "materialize_frozen", "materialize_planes",
    "pack_bits", "pack_free_bits", "pack_stream", "unpack_bits", "unpack_free_bits", "unpack_stream",
]


def _to_int32(v: torch.Tensor) -> torch.Tensor:
    """int64 holding u32 values -> int32 with the same bit pattern."""
    return torch.where(v >= 2**31, v - 2**32, v).to(torch.int32)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """(..., K) bool -> (..., ceil(K/32)) int32 words, bit k in word k/32 at position k%32."""
    k = bits.shape[-1]
    w = words_per_row(k)
    padded = torch.zeros(*bits.shape[:-1], w * WORD_BITS, dtype=torch.int64, device=bits.device)
    padded[..., :k] = bits.to(torch.int64)
    weights = torch.ones(WORD_BITS, dtype=torch.int64, device=bits.device) << torch.arange(
        WORD_BITS, dtype=torch.int64, device=bits.device
    )
    return _to_int32((padded.view(*bits.shape[:-1], w, WORD_BITS) * weights).sum(-1))


def pack_stream(bits: torch.Tensor) -> torch.Tensor:
    """1-D bool stream of F bits -> (ceil(F/32),) int32 words (at least one word)."""
    words = pack_bits(bits.reshape(-1))
    return words if words.numel() else torch.zeros(1, dtype=torch.int32, device=bits.device)


def unpack_stream(words: torch.Tensor, count: int) -> torch.Tensor:
    return unpack_bits(words.reshape(-1), count) if count else torch.zeros(0, dtype=torch.bool)


def materialize_planes(key: Key, n: int, k: int, dist: Dist | str, scale: float,
                       planes: torch.Tensor, coat_scales: torch.Tensor) -> torch.Tensor:
    """Effective weights w0·m of the binary / multicoat formats, (n, k) float32."""
    w0 = generate(key, n, k, dist, scale, planes.device)
    m = torch.zeros(n, k, dtype=torch.float32, device=planes.device)
    bits = unpack_bits(planes, k)  # (C, n, k)
    for i in range(planes.shape[0]):  # in order: the float32 sum is part of the contract
        m = m + torch.where(bits[i], coat_scales[i].to(torch.float32), 0.0)
    return torch.where(m != 0, w0 * m, 0.0)


def frozen_offsets(fkey: Key, n: int, k: int, prune_threshold: int, lock_threshold: int,
                   device=None) -> torch.Tensor:
    """(n, ceil(W/32)) int64: stream index of the first free weight at or after (row, 1024·block)."""
    free = freeze_states(fkey, n, k, prune_threshold, lock_threshold, device) == FREE
    block = OFFSET_BLOCK_WORDS * WORD_BITS
    nb = (words_per_row(k) + OFFSET_BLOCK_WORDS - 1) // OFFSET_BLOCK_WORDS
    padded = torch.zeros(n, nb * block, dtype=torch.int64, device=free.device)
    padded[:, :k] = free.to(torch.int64)
    per_block = padded.view(n, nb, block).sum(-1).reshape(-1)
    starts = torch.cumsum(per_block, 0) - per_block
    return starts.view(n, nb)


def pack_free_bits(mask: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """The free-bit stream: mask bits of FREE weights, row-major, packed LSB first."""
    return pack_stream(mask.bool()[states == FREE])


def unpack_free_bits(free_bits: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Effective (n, k) bool mask: pruned 0, locked 1, free from the stream."""
    free = states == FREE
    mask = states == LOCKED
    mask[free] = unpack_stream(free_bits, int(free.sum())).to(mask.device)
    return mask


def materialize_frozen(key: Key, fkey: Key, n: int, k: int, dist: Dist | str, scale: float,
                       free_bits: torch.Tensor, prune_threshold: int, lock_threshold: int) -> torch.Tensor:
    states = freeze_states(fkey, n, k, prune_threshold, lock_threshold, free_bits.device)
    mask = unpack_free_bits(free_bits, states)
    w0 = generate(key, n, k, dist, scale, free_bits.device)
    return torch.where(mask, w0, 0.0)
