"""The weight-generation contract, host side (docs/rng.md is the normative text).

Everything here is plain Python integers and floats: the per-tensor key derivation, the
default scales and the limits. The per-weight generators live in `slt_hw.reference.prng`
(PyTorch), `slt_hw.kernels.contract` (Triton), `csrc/core/slt_contract.h` (C++/CUDA) and
`slt_hw.sim.rng` (numba); all of them must produce the same bits.
"""

from __future__ import annotations

import enum
import math
import numbers
import struct
from dataclasses import dataclass

CONTRACT_VERSION = 1

SEED_MAX = 2**63 - 1  # seeds travel as int64 (checkpoints, torch.library int arguments)
MAX_WEIGHTS_PADDED = 2**32  # N * K_padded: every counter must fit in 32 bits
WORD_BITS = 32
OFFSET_BLOCK_WORDS = 32  # frozen format: one offset-table entry per 32 words (1024 weights)

_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1


class Dist(enum.Enum):
    """How hash bits become weight values. The integer code is what kernels receive."""

    SIGNED_CONSTANT = "signed_constant"  # ±σ, one hash per 32 weights (default)
    UNIFORM = "uniform"  # U(-a, a) on 2^16 levels, one hash per 2 weights
    NORMAL = "normal"  # N(0, σ²) via a 4096-entry quantile table, one hash per 2 weights

    @property
    def code(self) -> int:
        return _DIST_CODES[self]

    @classmethod
    def parse(cls, value: Dist | str | int, arg: str = "dist") -> Dist:
        if isinstance(value, Dist):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value in _DIST_BY_CODE:
            return _DIST_BY_CODE[value]
        if isinstance(value, str):
            for d in cls:
                if d.value == value:
                    return d
        raise ValueError(
            f"{arg}: expected one of {[d.value for d in cls]}, got {value!r}"
        )


_DIST_CODES = {Dist.SIGNED_CONSTANT: 0, Dist.UNIFORM: 1, Dist.NORMAL: 2}
_DIST_BY_CODE = {code: d for d, code in _DIST_CODES.items()}


class Stream(enum.IntEnum):
    """Independent random streams of one tensor: each gets its own key."""

    WEIGHTS = 0
    FREEZE = 1  # partially frozen format: pruned / locked / free state per weight


# --------------------------------------------------------------------------- 64-bit mixers


def mix64(z: int) -> int:
    """The splitmix64 / Stafford variant 13 finalizer on a 64-bit integer."""
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def splitmix64(z: int) -> int:
    return mix64(z + 0x9E3779B97F4A7C15)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & _M64
    return h


# --------------------------------------------------------------------------- validation


def check_seed(seed: object, arg: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{arg}: expected an int in [0, 2**63 - 1], got {type(seed).__name__}")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{arg}: expected an int in [0, 2**63 - 1], got {seed}")
    return seed


def check_name(name: object, arg: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{arg}: expected a non-empty tensor name (str), got {name!r}")
    return name


def to_f32(value: float) -> float:
    """Round a binary64 value to binary32 (round to nearest even) and back."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def f32_bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def check_positive_finite(value: object, arg: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{arg}: expected a finite float > 0, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{arg}: expected a finite float > 0, got {value!r}")
    return v


def _round_f32(value: float) -> float:
    """to_f32, with values beyond float32's range going to ±inf (struct raises instead)."""
    try:
        return to_f32(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def check_scale(scale: object, arg: str = "scale") -> float:
    """A weight scale as the float32 every backend uses: finite and > 0 after rounding to binary32
    (round to nearest even; a subnormal float32 is kept)."""
    s32 = _round_f32(check_positive_finite(scale, arg))
    if not math.isfinite(s32) or s32 == 0.0:
        raise ValueError(f"{arg}: {scale!r} is not representable as a finite non-zero float32")
    return s32


# --------------------------------------------------------------------------- keys and geometry


@dataclass(frozen=True)
class Key:
    """A per-tensor, per-stream key: two 32-bit words handed to every kernel."""

    k0: int
    k1: int

    @property
    def u64(self) -> int:
        return self.k0 | (self.k1 << 32)


def derive_key(seed: int, name: str, stream: Stream | int = Stream.WEIGHTS) -> Key:
    """key64 = splitmix64(splitmix64(splitmix64(seed) ^ fnv1a64(utf8(name))) ^ stream)."""
    check_seed(seed)
    check_name(name)
    stream = int(stream)
    if stream not in (0, 1):
        raise ValueError(f"stream: expected 0 (weights) or 1 (freeze), got {stream}")
    z = splitmix64(splitmix64(splitmix64(seed) ^ fnv1a64(name.encode("utf-8"))) ^ stream)
    return Key(z & _M32, z >> 32)


def words_per_row(k: int) -> int:
    return (k + WORD_BITS - 1) // WORD_BITS


def check_geometry(n: int, k: int, arg: str = "shape") -> None:
    if n < 1 or k < 1:
        raise ValueError(f"{arg}: expected a weight with at least one row and column, got ({n}, {k})")
    if n * words_per_row(k) * WORD_BITS > MAX_WEIGHTS_PADDED:
        raise ValueError(
            f"{arg}: ({n}, {k}) has more than 2**32 padded weights; the contract's 32-bit "
            "counters cannot address it: split the tensor"
        )


def check_key(key: Key, arg: str = "key") -> Key:
    """A key whose two words fit the kernels' uint32 arguments."""
    if not isinstance(key, Key):
        raise TypeError(f"{arg}: expected a slt_hw.contract.Key, got {type(key).__name__}")
    check_key_words(key.k0, key.k1, arg)
    return key


def check_key_words(k0: object, k1: object, arg: str = "k0/k1") -> None:
    for w in (k0, k1):
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= _M32:
            raise ValueError(f"{arg}: key words must be ints in [0, 2**32), got {k0!r}, {k1!r}")


def check_rows(n: int, row_begin: int = 0, row_end: int | None = None) -> tuple[int, int]:
    """Output rows [row_begin, row_end) of an (n, K) weight (a convolution group; None: all)."""
    row_end = n if row_end is None else row_end
    if not 0 <= row_begin <= row_end <= n:
        raise ValueError(f"rows: expected 0 <= row_begin <= row_end <= {n}, got [{row_begin}, {row_end})")
    return row_begin, row_end


# --------------------------------------------------------------------------- scales


DEFAULT_GAIN = math.sqrt(2.0)  # Kaiming, ReLU


def default_scale(dist: Dist | str, fan_in: int, gain: float = DEFAULT_GAIN) -> float:
    """σ (signed constant, normal) = gain/√fan_in; a (uniform) = gain·√(3/fan_in).

    Computed in binary64 and rounded once to binary32, so every backend gets the same float.
    """
    dist = Dist.parse(dist)
    if isinstance(fan_in, bool) or not isinstance(fan_in, numbers.Integral) or fan_in < 1:
        raise ValueError(f"fan_in: expected an int >= 1, got {fan_in!r}")
    gain = check_positive_finite(gain, "gain")
    s = gain * math.sqrt(3.0 / fan_in) if dist is Dist.UNIFORM else gain / math.sqrt(fan_in)
    s32 = _round_f32(s)
    if not math.isfinite(s32) or s32 == 0.0:
        raise ValueError(f"gain: {gain!r} gives the scale {s!r} for fan_in={fan_in} ({dist.value}), which is not a "
                         "finite non-zero float32")
    return s32


def check_thresholds(prune_threshold: object, lock_threshold: object) -> tuple[int, int]:
    """The frozen format's 16-bit thresholds: 0 <= P <= P + L <= 65536 (lock_threshold is P + L)."""
    for arg, v in (("prune_threshold", prune_threshold), ("lock_threshold", lock_threshold)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65536:
            raise ValueError(f"{arg}: expected an int in [0, 65536], got {v!r}")
    if prune_threshold > lock_threshold:
        raise ValueError(f"lock_threshold: expected >= prune_threshold={prune_threshold} (it is P + L), "
                         f"got {lock_threshold}")
    return prune_threshold, lock_threshold


def freeze_thresholds(p_prune: float, p_lock: float) -> tuple[int, int]:
    """Ratios → the integer 16-bit thresholds (P, P+L) the contract actually uses."""
    for arg, p in (("p_prune", p_prune), ("p_lock", p_lock)):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{arg}: expected a float in [0, 1], got {p!r}")
    prune = math.floor(p_prune * 65536 + 0.5)
    lock = math.floor(p_lock * 65536 + 0.5)
    if prune + lock > 65536:
        raise ValueError(f"p_prune + p_lock: expected <= 1, got {p_prune} + {p_lock}")
    return prune, prune + lock
