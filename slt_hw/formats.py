"""Mask formats and the packed weight: what a trained SLT layer is at inference time.

A `PackedWeight` holds no weight values: the seed, the tensor's name (together they give the
contract key), the distribution and scale, and the mask in one of three formats
(docs/rng.md §7). Every field is validated on construction, so a kernel never sees a
malformed mask.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass

import torch

from .contract import (
    DEFAULT_GAIN,
    WORD_BITS,
    Dist,
    Key,
    Stream,
    check_geometry,
    check_name,
    check_positive_finite,
    check_scale,
    check_seed,
    check_thresholds,
    default_scale,
    derive_key,
    freeze_thresholds,
    words_per_row,
)
from .reference import masks as _masks
from .reference.prng import FREE, freeze_states


class Format(enum.Enum):
    BINARY = "binary"  # one bit per weight
    MULTICOAT = "multicoat"  # M-Sup: C nested bit-planes with per-coat scales
    FROZEN = "frozen"  # partially frozen source: bits only for free weights

    @classmethod
    def parse(cls, value: Format | str, arg: str = "format") -> Format:
        if isinstance(value, Format):
            return value
        for f in cls:
            if f.value == value:
                return f
        raise ValueError(f"{arg}: expected one of {[f.value for f in cls]}, got {value!r}")


def check_tensor(t: object, arg: str, dtype: torch.dtype, ndim: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{arg}: expected a torch.Tensor of dtype {dtype}, got {type(t).__name__}")
    if t.dtype != dtype:
        raise TypeError(f"{arg}: expected dtype {dtype}, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{arg}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    return t


def _check_padding(words: torch.Tensor, k: int, arg: str) -> None:
    """Bits past in_features in the last word of each row must be zero."""
    rem = k % WORD_BITS
    if rem and bool(((words[..., -1].to(torch.int64) & 0xFFFFFFFF) >> rem).any()):
        raise ValueError(f"{arg}: padding bits beyond in_features={k} must be zero")


def _resolve_scale(scale: float | None, gain: float, dist: Dist, fan_in: int) -> float:
    """An explicit scale wins over gain; gain is checked either way (a bad argument is never ignored)."""
    if scale is None:
        return default_scale(dist, fan_in, gain)
    check_positive_finite(gain, "gain")
    return check_scale(scale)


@dataclass(frozen=True, eq=False)
class PackedWeight:
    """A weight of shape `shape` = (out_features, ...), regenerated from (seed, name), masked.

    Tensors, by format:
      binary / multicoat: planes (C, N, W) int32 words (C = 1 for binary), coat_scales (C,) float32
      frozen: free_bits (ceil(F/32),) int32, the mask bits of the F free weights, plus integer
              thresholds (prune_threshold P, lock_threshold P + L) of the freeze pattern.
    """

    shape: tuple[int, ...]
    seed: int
    name: str
    dist: Dist
    scale: float
    format: Format
    planes: torch.Tensor | None = None
    coat_scales: torch.Tensor | None = None
    free_bits: torch.Tensor | None = None
    prune_threshold: int = 0
    lock_threshold: int = 0

    def __post_init__(self) -> None:
        shape = self.shape
        if (not isinstance(shape, (tuple, list)) or len(shape) < 2
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            raise ValueError(f"shape: expected (out_features, in_features, ...) positive ints, got {shape!r}")
        object.__setattr__(self, "shape", tuple(shape))
        check_geometry(self.out_features, self.in_features)
        check_seed(self.seed)
        check_name(self.name)
        object.__setattr__(self, "dist", Dist.parse(self.dist))
        object.__setattr__(self, "scale", check_scale(self.scale))
        object.__setattr__(self, "format", Format.parse(self.format))
        if self.format is Format.FROZEN:
            self._validate_frozen()
        else:
            self._validate_planes()

    # ------------------------------------------------------------------ validation

    def _validate_planes(self) -> None:
        n, k, w = self.out_features, self.in_features, self.words_per_row
        planes = check_tensor(self.planes, "planes", torch.int32, 3)
        c = planes.shape[0]
        if planes.shape[1:] != (n, w) or c < 1:
            raise ValueError(
                f"planes: expected shape (coats, {n}, {w}) for a ({n}, {k}) weight "
                f"(ceil({k}/32) = {w} words per row), got {tuple(planes.shape)}"
            )
        if self.format is Format.BINARY and c != 1:
            raise ValueError(f"planes: the binary format has exactly 1 plane, got {c}")
        if self.free_bits is not None:
            raise ValueError(f"free_bits: only the frozen format has free bits, this is {self.format.value}")
        _check_padding(planes, k, "planes")
        if c > 1 and bool((planes[1:] & ~planes[:-1]).any()):
            raise ValueError("planes: multicoat planes must be nested (each coat a subset of the previous)")
        cs = self.coat_scales
        if cs is None:
            cs = torch.ones(c, dtype=torch.float32, device=planes.device)
            object.__setattr__(self, "coat_scales", cs)
        check_tensor(cs, "coat_scales", torch.float32, 1)
        if cs.shape[0] != c:
            raise ValueError(f"coat_scales: expected {c} values (one per plane), got {cs.shape[0]}")
        if not bool(torch.isfinite(cs).all()):
            raise ValueError("coat_scales: expected finite values")
        if cs.device != planes.device:
            raise ValueError(f"coat_scales: expected device {planes.device}, got {cs.device}")

    def _validate_frozen(self) -> None:
        if self.planes is not None:
            raise ValueError("planes: the frozen format stores free_bits, not planes")
        check_thresholds(self.prune_threshold, self.lock_threshold)
        fb = check_tensor(self.free_bits, "free_bits", torch.int32, 1)
        f = self.num_free
        need = max(1, math.ceil(f / WORD_BITS))
        if fb.shape[0] != need:
            raise ValueError(
                f"free_bits: expected {need} words for the {f} free weights of this seed and freeze "
                f"pattern, got {fb.shape[0]} (wrong seed, name or thresholds?)"
            )
        if f % WORD_BITS and bool(((fb[-1].to(torch.int64) & 0xFFFFFFFF) >> (f % WORD_BITS)) != 0):
            raise ValueError(f"free_bits: bits past the {f} free weights must be zero")
        if self.coat_scales is not None:
            raise ValueError("coat_scales: the frozen format has no coats")

    # ------------------------------------------------------------------ geometry and keys

    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def in_features(self) -> int:
        """The reduction length K (in_features, or in/groups·kh·kw for a convolution)."""
        return math.prod(self.shape[1:])

    @property
    def words_per_row(self) -> int:
        return words_per_row(self.in_features)

    @property
    def num_coats(self) -> int:
        return 0 if self.planes is None else self.planes.shape[0]

    @property
    def device(self) -> torch.device:
        return (self.planes if self.planes is not None else self.free_bits).device

    @functools.cached_property
    def key(self) -> Key:
        return derive_key(self.seed, self.name, Stream.WEIGHTS)

    @functools.cached_property
    def freeze_key(self) -> Key:
        return derive_key(self.seed, self.name, Stream.FREEZE)

    def freeze_states(self) -> torch.Tensor:
        """(N, K) uint8: 0 pruned, 1 locked, 2 free (frozen format only)."""
        if self.format is not Format.FROZEN:
            raise ValueError(f"freeze_states: the {self.format.value} format has no freeze pattern")
        return freeze_states(self.freeze_key, self.out_features, self.in_features,
                             self.prune_threshold, self.lock_threshold, self.device)

    @functools.cached_property
    def num_free(self) -> int:
        return int((self.freeze_states() == FREE).sum())

    @functools.cached_property
    def offsets(self) -> torch.Tensor:
        """The frozen format's offset table, derived from the seed (never stored)."""
        if self.format is not Format.FROZEN:
            raise ValueError(f"offsets: the {self.format.value} format has no offset table")
        return _masks.frozen_offsets(self.freeze_key, self.out_features, self.in_features,
                                     self.prune_threshold, self.lock_threshold, self.device)

    # ------------------------------------------------------------------ sizes and views

    def mask_bits(self) -> int:
        """Exact information content of the mask in bits (docs/rng.md §7)."""
        n, k = self.out_features, self.in_features
        if self.format is Format.FROZEN:
            return self.num_free
        bits = n * k
        for i in range(self.num_coats - 1):  # coat i+1 stores one bit per survivor of coat i
            bits += int(_masks.unpack_bits(self.planes[i], k).sum())
        return bits

    def mask(self) -> torch.Tensor:
        """Unpacked mask, (N, K): bool for binary/frozen (effective), int levels 0..C for multicoat."""
        k = self.in_features
        if self.format is Format.FROZEN:
            return _masks.unpack_free_bits(self.free_bits, self.freeze_states())
        bits = _masks.unpack_bits(self.planes, k)
        return bits[0] if self.format is Format.BINARY else bits.sum(0, dtype=torch.int64)

    def materialize(self) -> torch.Tensor:
        """Effective weights (N, K) float32 by the reference; reshape to `shape` for a conv."""
        n, k = self.out_features, self.in_features
        if self.format is Format.FROZEN:
            return _masks.materialize_frozen(self.key, self.freeze_key, n, k, self.dist, self.scale,
                                             self.free_bits, self.prune_threshold, self.lock_threshold)
        return _masks.materialize_planes(self.key, n, k, self.dist, self.scale, self.planes, self.coat_scales)

    def to(self, device: torch.device | str) -> PackedWeight:
        def mv(t):
            return None if t is None else t.to(device)

        return PackedWeight(self.shape, self.seed, self.name, self.dist, self.scale, self.format,
                            mv(self.planes), mv(self.coat_scales), mv(self.free_bits),
                            self.prune_threshold, self.lock_threshold)


# ---------------------------------------------------------------------- constructors


def _check_mask(mask: object, arg: str = "mask") -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{arg}: expected a torch.Tensor shaped like the weight, got {type(mask).__name__}")
    if mask.dim() < 2:
        raise ValueError(
            f"{arg}: expected the weight's shape (out_features, in_features, ...), got {tuple(mask.shape)}"
        )
    check_geometry(mask.shape[0], math.prod(mask.shape[1:]), arg)  # before any reshape: (0, -1) cannot be one
    return mask


def pack_binary(mask: torch.Tensor, *, seed: int, name: str, dist: Dist | str = Dist.SIGNED_CONSTANT,
                scale: float | None = None, gain: float = DEFAULT_GAIN) -> PackedWeight:
    """Pack a {0, 1} mask shaped like the weight (N, ...) into the binary format."""
    mask = _check_mask(mask)
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask: expected a bool tensor or an integer tensor of 0s and 1s")
    dist = Dist.parse(dist)
    m2 = mask.reshape(mask.shape[0], -1).bool()
    return PackedWeight(tuple(mask.shape), seed, name, dist, _resolve_scale(scale, gain, dist, m2.shape[1]),
                        Format.BINARY, planes=_masks.pack_bits(m2)[None])


def pack_multicoat(levels: torch.Tensor, num_coats: int, *, seed: int, name: str,
                   dist: Dist | str = Dist.SIGNED_CONSTANT, scale: float | None = None,
                   gain: float = DEFAULT_GAIN, coat_scales: torch.Tensor | None = None) -> PackedWeight:
    """Pack per-weight coat levels m ∈ {0, …, num_coats} (M-Sup) into nested bit-planes."""
    levels = _check_mask(levels, "levels")
    if isinstance(num_coats, bool) or not isinstance(num_coats, int) or num_coats < 1:
        raise ValueError(f"num_coats: expected an int >= 1, got {num_coats!r}")
    if levels.is_floating_point() or levels.dtype == torch.bool:
        raise TypeError(f"levels: expected an integer tensor of coat levels, got {levels.dtype}")
    if bool(((levels < 0) | (levels > num_coats)).any()):
        raise ValueError(f"levels: expected values in [0, {num_coats}]")
    dist = Dist.parse(dist)
    l2 = levels.reshape(levels.shape[0], -1)
    planes = torch.stack([_masks.pack_bits(l2 > i) for i in range(num_coats)])
    if coat_scales is not None:
        coat_scales = coat_scales.to(device=planes.device)
    return PackedWeight(tuple(levels.shape), seed, name, dist, _resolve_scale(scale, gain, dist, l2.shape[1]),
                        Format.MULTICOAT, planes=planes, coat_scales=coat_scales)


def pack_frozen(mask: torch.Tensor, *, seed: int, name: str, p_prune: float, p_lock: float,
                dist: Dist | str = Dist.SIGNED_CONSTANT, scale: float | None = None,
                gain: float = DEFAULT_GAIN) -> PackedWeight:
    """Pack a mask over a partially frozen source: only the free weights' bits are kept
    (the mask's values at pruned and locked positions are ignored: the pattern forces them)."""
    mask = _check_mask(mask)
    dist = Dist.parse(dist)
    m2 = mask.reshape(mask.shape[0], -1).bool()
    n, k = m2.shape
    check_geometry(n, k, "mask")
    prune, lock = freeze_thresholds(p_prune, p_lock)
    states = freeze_states(derive_key(seed, name, Stream.FREEZE), n, k, prune, lock, m2.device)
    return PackedWeight(tuple(mask.shape), seed, name, dist, _resolve_scale(scale, gain, dist, k),
                        Format.FROZEN, free_bits=_masks.pack_free_bits(m2, states),
                        prune_threshold=prune, lock_threshold=lock)
