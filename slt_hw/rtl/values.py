"""Per-distribution output stage: hash bits of one lane -> the value code a PE consumes.

signed_constant: the sign bit (1 = -s).
uniform: the odd 17-bit level v = 2x - 65535 (w0 = v * 2^-16 * s); it is {~x[15], x[14:0], 1},
    wires only.
normal: the float32 bits of Z[x >> 4]. Z is odd-symmetric (docs/rng.md §5), so the ROM holds the
    2048 positive entries without their sign bit (31 bits) and the index's top bit picks the sign.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib.memory import Memory

from .. import _normal_table
from ..contract import Dist

HALF = 2048


def normal_rom_init() -> list[int]:
    """The 2048 magnitudes Z[2048 + j] (sign bit clear); checks the symmetry the ROM relies on."""
    z = _normal_table.NORMAL_TABLE_F32_BITS
    pos = list(z[HALF:])
    if any(b >> 31 for b in pos) or any(z[HALF - 1 - j] != pos[j] | 0x80000000 for j in range(HALF)):
        raise ValueError("the normal table is not odd-symmetric: the ROM layout does not hold")
    return pos


class ValueStage(Elaboratable):
    """Combinational: `lanes` raw fields in, `lanes` codes out."""

    def __init__(self, dist: Dist, lanes: int):
        self.dist, self.lanes = dist, lanes
        self.bits = 1 if dist is Dist.SIGNED_CONSTANT else 16
        self.code_bits = {Dist.SIGNED_CONSTANT: 1, Dist.UNIFORM: 17, Dist.NORMAL: 32}[dist]
        self.raw = Signal(lanes * self.bits)
        self.code = Signal(lanes * self.code_bits)

    def elaborate(self, platform):
        m = Module()
        b = self.bits
        codes = []
        init = normal_rom_init() if self.dist is Dist.NORMAL else None
        for i in range(self.lanes):
            x = self.raw[i * b:(i + 1) * b]
            if self.dist is Dist.SIGNED_CONSTANT:
                codes.append(x)
            elif self.dist is Dist.UNIFORM:
                codes.append(Cat(1, x[:15], ~x[15]))
            else:
                idx = x[4:16]
                neg = ~idx[11]
                rom = m.submodules[f"rom{i}"] = Memory(shape=31, depth=HALF, init=init)
                rd = rom.read_port(domain="comb")
                m.d.comb += rd.addr.eq(idx[:11] ^ neg.replicate(11))  # i < 2048 reads Z[4095 - i]
                codes.append(Cat(rd.data, neg))
        m.d.comb += self.code.eq(Cat(*codes))
        return m
