"""Freeze states of the partially frozen format (docs/rng.md §7), one beat at a time.

The freeze stream (key fk0, fk1) gives weight (n, k) the 16-bit chunk of counter n·Kp/2 + k/2,
the same counter layout as uniform/normal weights, so a beat of B consecutive weights needs B/2
consecutive hashes. State: PRUNED if x < P, LOCKED if x < P + L, else FREE.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal

from .hash import HashPipe


class FreezePath(Elaboratable):
    def __init__(self, beat: int):
        self.beat = beat
        self.start = Signal()
        self.base = Signal(32)  # first pair counter
        self.beats = Signal(38)
        self.k0 = Signal(32)
        self.k1 = Signal(32)
        self.prune = Signal(17)  # P
        self.lock = Signal(17)  # P + L
        self.valid = Signal()
        self.ready = Signal()
        self.free = Signal(beat)
        self.locked = Signal(beat)

    def elaborate(self, platform):
        m = Module()
        n = self.beat // 2
        pipe = m.submodules.hash = HashPipe(n)
        ctr = Signal(32, reset_less=True)
        left = Signal(38)
        sv = Signal()
        free = Signal(self.beat, reset_less=True)
        locked = Signal(self.beat, reset_less=True)
        can_load = ~sv | self.ready
        m.d.comb += [pipe.en.eq(can_load), pipe.valid_in.eq(left != 0), pipe.ctr.eq(ctr),
                     pipe.k0.eq(self.k0), pipe.k1.eq(self.k1)]
        with m.If(self.start):
            m.d.sync += [ctr.eq(self.base), left.eq(self.beats)]
        with m.Elif(can_load & (left != 0)):
            m.d.sync += [ctr.eq(ctr + n), left.eq(left - 1)]
        xs = [pipe.h[16 * i:16 * i + 16] for i in range(self.beat)]  # lane 2j: low half of hash j
        with m.If(can_load):
            m.d.sync += [sv.eq(pipe.valid_out),
                         free.eq(Cat(*(x >= self.lock for x in xs))),
                         locked.eq(Cat(*((x >= self.prune) & (x < self.lock) for x in xs)))]
        m.d.comb += [self.valid.eq(sv), self.free.eq(free), self.locked.eq(locked)]
        return m
