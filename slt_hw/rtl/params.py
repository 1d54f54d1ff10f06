"""What one generated weight generator is: distribution, mask format, units, lanes, coats.

Every derived width lives here so the hardware, the testbench and the synthesis agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contract import Dist
from ..formats import Format

MAX_UNITS = 64
MAX_COATS = 15
# Bits of one hash a weight uses (docs/rng.md §4): a sign bit, or a 16-bit chunk.
_BITS_PER_WEIGHT = {Dist.SIGNED_CONSTANT: 1, Dist.UNIFORM: 16, Dist.NORMAL: 16}
# Width of the value code a lane hands the PE: the sign, the odd level 2x - 65535, or Z's float32 bits.
_CODE_BITS = {Dist.SIGNED_CONSTANT: 1, Dist.UNIFORM: 17, Dist.NORMAL: 32}


def _int(value: object, arg: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{arg}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


@dataclass(frozen=True)
class RtlParams:
    """One configuration. `lanes` is weights per cycle per unit (default: all of one hash)."""

    dist: Dist
    format: Format
    units: int = 1
    lanes: int = 0
    coats: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dist", Dist.parse(self.dist))
        object.__setattr__(self, "format", Format.parse(self.format))
        _int(self.units, "units", 1, MAX_UNITS)
        per = self.weights_per_hash
        lanes = self.lanes or per
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or per % lanes or lanes & (lanes - 1):
            raise ValueError(f"lanes: expected a power of two dividing {per} (the weights one {self.dist.value} "
                             f"hash gives), got {self.lanes!r}")
        object.__setattr__(self, "lanes", lanes)
        if self.format is Format.MULTICOAT:
            object.__setattr__(self, "coats", _int(self.coats or 3, "coats", 1, MAX_COATS))
        elif self.coats not in (0, 1 if self.format is Format.BINARY else 0):
            raise ValueError(f"coats: only the multicoat format has coats, this is {self.format.value}")
        else:
            object.__setattr__(self, "coats", 1 if self.format is Format.BINARY else 0)
        b = self.beat
        if self.format is Format.FROZEN and (b < 2 or (b % 32 and 32 % b)):
            # one freeze hash per weight pair; a beat never straddles a mask word unless it covers whole words
            raise ValueError(f"lanes: the frozen format needs units x lanes a power of two from 2 to 32 or a "
                             f"multiple of 32, got {self.units} x {self.lanes}")

    @property
    def weights_per_hash(self) -> int:
        return 32 // _BITS_PER_WEIGHT[self.dist]

    @property
    def bits_per_weight(self) -> int:
        return _BITS_PER_WEIGHT[self.dist]

    @property
    def beat(self) -> int:
        """Weights per output beat (per cycle at full rate)."""
        return self.units * self.lanes

    @property
    def beats_per_step(self) -> int:
        """Beats one step (one hash per unit) lasts."""
        return self.weights_per_hash // self.lanes

    @property
    def code_bits(self) -> int:
        return _CODE_BITS[self.dist]

    @property
    def level_bits(self) -> int:
        return max(1, self.coats.bit_length()) if self.format is Format.MULTICOAT else 1

    @property
    def freeze_hashes(self) -> int:
        """Freeze-stream hashes per beat (frozen format): one per weight pair."""
        return self.beat // 2 if self.format is Format.FROZEN else 0

    @property
    def fb_width(self) -> int:
        """Width of the free-bit stream port: whole 32-bit words, at least one beat's bits."""
        return 32 * -(-self.beat // 32)

    @property
    def mask_width(self) -> int:
        """Mask port bits per beat (binary/multicoat): one bit per lane per plane."""
        return self.coats * self.beat if self.format is not Format.FROZEN else 0

    @property
    def tag(self) -> str:
        return f"{self.dist.value}-{self.format.value}-u{self.units}-l{self.lanes}" + (
            f"-c{self.coats}" if self.format is Format.MULTICOAT else "")
