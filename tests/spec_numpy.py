"""docs/rng.md in vectorised numpy, written from the document and sharing no code with slt_hw
(keys from contract_spec, the normal table recomputed from its definition): the ground truth
of the fuzz tests (tests/test_fuzz.py), with float64 linear layers on top.
"""

from __future__ import annotations

import hashlib

import numpy as np
from contract_spec import key, normal_table

NORMAL_TABLE = np.array(normal_table(), dtype=np.float32)
# docs/rng.md §5: the table's SHA-256 is part of the contract
assert hashlib.sha256(NORMAL_TABLE.astype("<f4").tobytes()).hexdigest() == \
    "87d2297bd6f503ad9b582cb87a6d8d21e20633747144ac688b90f4efcde6a2e8"


def _lowbias32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def hash32(k0: int, k1: int, c: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _lowbias32(_lowbias32(c.astype(np.uint32) ^ np.uint32(k0)) ^ np.uint32(k1))


def _chunks(k0: int, k1: int, n: int, k: int) -> np.ndarray:
    """(n, k) 16-bit chunks: counter n·(Kp/2) + ⌊k/2⌋, low half for even k, high half for odd."""
    kp = 32 * ((k + 31) // 32)
    rows, cols = np.arange(n, dtype=np.int64)[:, None], np.arange(k, dtype=np.int64)[None, :]
    h = hash32(k0, k1, rows * (kp // 2) + cols // 2)
    return np.where(cols % 2 == 0, h & np.uint32(0xFFFF), h >> np.uint32(16)).astype(np.int64)


def weights(seed: int, name: str, n: int, k: int, dist: str, scale: np.float32) -> np.ndarray:
    """W0, (n, k) float32 (§4, §5)."""
    k0, k1 = key(seed, name, 0)
    s = np.float32(scale)
    if dist == "signed_constant":
        w = (k + 31) // 32
        rows, cols = np.arange(n, dtype=np.int64)[:, None], np.arange(k, dtype=np.int64)[None, :]
        bits = (hash32(k0, k1, rows * w + cols // 32) >> (cols % 32).astype(np.uint32)) & np.uint32(1)
        return np.where(bits == 1, -s, s).astype(np.float32)
    x = _chunks(k0, k1, n, k)
    if dist == "uniform":
        return ((2 * x - 65535).astype(np.float32) * np.float32(2.0**-16)) * s
    return NORMAL_TABLE[x >> 4] * s


def freeze_states(seed: int, name: str, n: int, k: int, prune: int, lock: int) -> np.ndarray:
    """0 pruned, 1 locked, 2 free (§7, stream 1)."""
    k0, k1 = key(seed, name, 1)
    x = _chunks(k0, k1, n, k)
    return np.where(x < prune, 0, np.where(x < lock, 1, 2)).astype(np.uint8)


def effective(w0: np.ndarray, levels: np.ndarray, coat_scales: np.ndarray) -> np.ndarray:
    """w_eff = w0·m, m = Σ_{i < level} g_i in float32 in coat order, +0.0 where m = 0 (§7).
    Binary and frozen: one coat of scale 1, level = the effective mask bit."""
    m = np.zeros(w0.shape, dtype=np.float32)
    for i, g in enumerate(np.asarray(coat_scales, dtype=np.float32)):
        m = np.where(levels > i, m + g, m).astype(np.float32)
    return np.where(m == 0, np.float32(0), w0 * m).astype(np.float32)


def frozen_mask(states: np.ndarray, free_bits: np.ndarray) -> np.ndarray:
    """The effective mask: 0 pruned, 1 locked, the next free-stream bit (row-major) if free."""
    mask = (states == 1).astype(np.int64)
    free = states == 2
    mask[free] = free_bits[: int(free.sum())]
    return mask


def linear64(x: np.ndarray, w_eff: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    y = x.astype(np.float64) @ w_eff.astype(np.float64).T
    return y if bias is None else y + bias.astype(np.float64)
