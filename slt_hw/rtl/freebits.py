"""The free-bit stream decoder of the partially frozen format (docs/rng.md §7).

Only FREE weights carry a mask bit, packed LSB-first in row-major order. A job starts at stream
bit `offset` (from the offset table); the feeder sends words from offset // 32 on and the decoder
drops the first `skip` = offset % 32 bits. Each beat, lane i takes stream bit prefix_i (the number
of free lanes before it); the beat consumes popcount(free) bits. The buffer holds two port words,
so a full-rate stream never starves a beat whose lanes are all free.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal


def popcount(bits):
    total = 0
    for b in bits:
        total = total + b
    return total


class FreeBitDecoder(Elaboratable):
    def __init__(self, beat: int, width: int):
        self.beat, self.width = beat, width
        self.start = Signal()  # a job begins: empty the buffer, arm `skip`
        self.skip = Signal(5)
        self.active = Signal()  # a job is running: words may be taken
        self.fb_valid = Signal()
        self.fb_ready = Signal()
        self.fb_data = Signal(width)
        self.free = Signal(beat)
        self.locked = Signal(beat)
        self.take = Signal()  # the beat fires: consume its free bits
        self.enough = Signal()  # the buffer holds every bit this beat needs
        self.level = Signal(beat)  # effective mask bit per lane

    def elaborate(self, platform):
        m = Module()
        w = self.width
        buf = Signal(2 * w, reset_less=True)
        cnt = Signal(range(2 * w + 1))
        first = Signal()
        skip = Signal(5, reset_less=True)
        prefix = [popcount(self.free[:i]) for i in range(self.beat + 1)]
        need = Signal(range(self.beat + 1))
        m.d.comb += need.eq(prefix[-1])
        bits = Cat(*(buf.bit_select(prefix[i], 1) for i in range(self.beat)))
        m.d.comb += [self.enough.eq(cnt >= need),
                     self.level.eq(self.locked | (self.free & bits)),
                     self.fb_ready.eq(self.active & (cnt <= w))]
        used = Mux(self.take, need, 0)
        word = Signal(w)
        got = Signal(range(w + 1))
        m.d.comb += [word.eq(Mux(first, self.fb_data >> skip, self.fb_data)),
                     got.eq(Mux(first, w - skip, w))]
        rest = Signal.like(cnt)  # bits left after this beat
        m.d.comb += rest.eq(cnt - used)
        with m.If(self.start):
            m.d.sync += [cnt.eq(0), first.eq(1), skip.eq(self.skip)]
        with m.Elif(self.fb_valid & self.fb_ready):
            m.d.sync += [buf.eq((buf >> used) | (word << rest)), cnt.eq(rest + got), first.eq(0)]
        with m.Else():
            m.d.sync += [buf.eq(buf >> used), cnt.eq(rest)]
        return m
