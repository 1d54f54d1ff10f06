"""The weight-generation contract (docs/rng.md) in numba, for the accelerator simulator.

The simulator regenerates weights exactly as the hardware generator would, so every value here
is bit-identical to `slt_hw.reference.prng`. Typing rules that matter (numba >= 0.61):
- all integer work is on uint64 holding u32 values, with uint64 constants only: mixing uint64
  with an int64 (a Python literal) yields int64 or, for + - *, may yield float64;
- every multiply / add is masked back to 32 bits;
- float work uses float32 operands only (a Python float literal would promote to float64).
Scalar helpers return uint64 (hash words, chunks) so callers stay in the unsigned domain.
"""

from __future__ import annotations

import numba
import numpy as np

from slt_hw import _normal_table
from slt_hw.contract import (
    Dist,
    Key,
    check_geometry,
    check_scale,
    default_scale,
    freeze_thresholds,
)

_jit = numba.njit(cache=False, nogil=True)

# Dist codes (slt_hw.contract.Dist.code).
SIGNED_CONSTANT, UNIFORM, NORMAL = 0, 1, 2
# Freeze states of the partially frozen format (as in slt_hw.reference.prng).
PRUNED, LOCKED, FREE = 0, 1, 2

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U4 = np.uint64(4)
_U5 = np.uint64(5)
_U15 = np.uint64(15)
_U16 = np.uint64(16)
_U31 = np.uint64(31)
_M16 = np.uint64(0xFFFF)
_M32 = np.uint64(0xFFFFFFFF)
_MUL1 = np.uint64(0x7FEB352D)
_MUL2 = np.uint64(0x846CA68B)
_MAX_PADDED = 2**32  # contract.MAX_WEIGHTS_PADDED

_F32_2M16 = np.float32(2.0**-16)
_F32_ZERO = np.float32(0.0)
# Frozen into the compiled code as a constant array.
NORMAL_TABLE = np.array(_normal_table.NORMAL_TABLE_F32_BITS, dtype=np.uint32).view(np.float32)


# --------------------------------------------------------------------------- scalar helpers


@_jit
def lowbias32(x):
    """Chris Wellons' lowbias32 on a u32 (held in uint64)."""
    x = np.uint64(x) & _M32
    x ^= x >> _U16
    x = (x * _MUL1) & _M32
    x ^= x >> _U15
    x = (x * _MUL2) & _M32
    return x ^ (x >> _U16)


@_jit
def hash32(k0, k1, c):
    """h(k0, k1, c) = lowbias32(lowbias32(c ^ k0) ^ k1), a u32 in a uint64."""
    x = (np.uint64(c) ^ np.uint64(k0)) & _M32
    return lowbias32(lowbias32(x) ^ (np.uint64(k1) & _M32))


@_jit
def sign_word(k0, k1, n, w, W):
    """Sign word (n, w) of a tensor with W words per row: bit j = 1 means weight (n, 32w+j) < 0."""
    return hash32(k0, k1, np.uint64(n) * np.uint64(W) + np.uint64(w))


@_jit
def chunk16(k0, k1, n, k, Kp):
    """The 16-bit chunk of weight (n, k) (row padded to Kp): low half of the hash if k is even."""
    uk = np.uint64(k)
    h = hash32(k0, k1, np.uint64(n) * (np.uint64(Kp) >> _U1) + (uk >> _U1))
    return (h >> ((uk & _U1) << _U4)) & _M16


@_jit
def _uniform(x, s):
    # (2x - 65535) is odd and |.| < 2^16: exact in float32, as is * 2^-16; * s rounds once.
    v = np.float32(np.int64(x) * 2 - 65535)
    return np.float32(v * _F32_2M16) * s


@_jit
def _normal(x, s):
    return NORMAL_TABLE[np.int64(x >> _U4)] * s


@_jit
def weight_value(k0, k1, n, k, Kp, dist_code, scale):
    """Weight (n, k) as float32 (Kp = row length padded to a multiple of 32)."""
    s = np.float32(scale)
    if dist_code == SIGNED_CONSTANT:
        uk = np.uint64(k)
        word = sign_word(k0, k1, n, uk >> _U5, np.uint64(Kp) >> _U5)
        return -s if (word >> (uk & _U31)) & _U1 else s
    x = chunk16(k0, k1, n, k, Kp)
    if dist_code == UNIFORM:
        return _uniform(x, s)
    if dist_code == NORMAL:
        return _normal(x, s)
    raise ValueError("dist_code: expected 0 (signed_constant), 1 (uniform) or 2 (normal)")


@_jit
def freeze_state(k0, k1, n, k, Kp, prune_thr, lock_thr):
    """0 pruned if x < P, 1 locked if x < P + L, 2 free; lock_thr is the cumulative P + L."""
    x = np.int64(chunk16(k0, k1, n, k, Kp))
    if x < prune_thr:
        return np.uint8(PRUNED)
    if x < lock_thr:
        return np.uint8(LOCKED)
    return np.uint8(FREE)


# --------------------------------------------------------------------------- whole tensors


@_jit
def _check(n, k):
    if n < 1 or k < 1:
        raise ValueError("shape: expected a weight with at least one row and column")
    if n * (((k + 31) // 32) * 32) > _MAX_PADDED:
        raise ValueError("shape: more than 2**32 padded weights; split the tensor")


@_jit
def hash_count(n, k, dist_code):
    """32-bit hash evaluations to generate an (n, k) tensor, padding included: n·W for the signed
    constant (one hash per 32 weights), n·Kp/2 for uniform / normal (one per 2 weights)."""
    W = (k + 31) // 32
    if dist_code == SIGNED_CONSTANT:
        return n * W
    if dist_code == UNIFORM or dist_code == NORMAL:
        return n * W * 16
    raise ValueError("dist_code: expected 0 (signed_constant), 1 (uniform) or 2 (normal)")


@_jit
def sign_words(k0, k1, n, k):
    """(n, W) uint32 sign words (bit j of word (r, w): weight (r, 32w + j) is negative)."""
    _check(n, k)
    W = (k + 31) // 32
    out = np.empty((n, W), dtype=np.uint32)
    for r in range(n):
        for w in range(W):
            out[r, w] = np.uint32(sign_word(k0, k1, r, w, W))
    return out


@_jit
def _fill_chunks(k0, k1, n, k, out):
    # out[r, c] = 16-bit chunk; one hash serves the pair (c, c+1).
    half = ((k + 31) // 32) * 16
    for r in range(n):
        base = np.uint64(r) * np.uint64(half)
        for p in range((k + 1) // 2):
            h = hash32(k0, k1, base + np.uint64(p))
            out[r, 2 * p] = np.uint16(h & _M16)
            if 2 * p + 1 < k:
                out[r, 2 * p + 1] = np.uint16(h >> _U16)


@_jit
def chunks16(k0, k1, n, k):
    """(n, k) uint16 chunks of the 16-bit stream (uniform, normal, freeze)."""
    _check(n, k)
    out = np.empty((n, k), dtype=np.uint16)
    _fill_chunks(k0, k1, n, k, out)
    return out


@_jit
def generate_weights(k0, k1, n, k, dist_code, scale):
    """(n, k) float32 random weights W0, bit-identical to slt_hw.reference.prng.generate."""
    _check(n, k)
    if dist_code != SIGNED_CONSTANT and dist_code != UNIFORM and dist_code != NORMAL:
        raise ValueError("dist_code: expected 0 (signed_constant), 1 (uniform) or 2 (normal)")
    s = np.float32(scale)
    out = np.empty((n, k), dtype=np.float32)
    if dist_code == SIGNED_CONSTANT:
        W = (k + 31) // 32
        neg = -s
        for r in range(n):
            for w in range(W):
                h = sign_word(k0, k1, r, w, W)
                for j in range(min(32, k - 32 * w)):
                    out[r, 32 * w + j] = neg if (h >> np.uint64(j)) & _U1 else s
        return out
    x = chunks16(k0, k1, n, k)
    for r in range(n):
        for c in range(k):
            if dist_code == UNIFORM:
                out[r, c] = _uniform(np.uint64(x[r, c]), s)
            else:
                out[r, c] = _normal(np.uint64(x[r, c]), s)
    return out


@_jit
def freeze_states(fk0, fk1, n, k, prune_thr, lock_thr):
    """(n, k) uint8 freeze states from the FREEZE-stream key: 0 pruned, 1 locked, 2 free."""
    _check(n, k)
    x = chunks16(fk0, fk1, n, k)
    out = np.empty((n, k), dtype=np.uint8)
    for r in range(n):
        for c in range(k):
            v = np.int64(x[r, c])
            out[r, c] = PRUNED if v < prune_thr else (LOCKED if v < lock_thr else FREE)
    return out


# --------------------------------------------------------------------------- Python conveniences


def generate_weights_for(key: Key, n: int, k: int, dist: Dist | str = Dist.SIGNED_CONSTANT,
                         scale: float | None = None) -> np.ndarray:
    """generate_weights from a contract Key and Dist/str; scale None = the contract's default."""
    dist = Dist.parse(dist)
    check_geometry(n, k)
    s = default_scale(dist, k) if scale is None else check_scale(scale)
    return generate_weights(key.k0, key.k1, n, k, dist.code, s)


def freeze_states_for(key: Key, n: int, k: int, p_prune: float, p_lock: float) -> np.ndarray:
    """freeze_states from the FREEZE-stream Key and the ratios (rounded as the contract says)."""
    check_geometry(n, k)
    prune_thr, lock_thr = freeze_thresholds(p_prune, p_lock)
    return freeze_states(key.k0, key.k1, n, k, prune_thr, lock_thr)
