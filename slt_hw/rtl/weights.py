"""The weight generator proper: counter, `units` hash cores, serializer, value stage.

A step hashes the counters ctr .. ctr + units - 1 (consecutive, so the step's units * P weights
are consecutive in the tensor's row-major padded order, docs/rng.md §4). The serializer hands
them out `units * lanes` at a time, lowest weight first; with lanes < P the hash cores idle
P / lanes - 1 cycles of every P / lanes.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Signal

from .hash import HashPipe
from .params import RtlParams
from .values import ValueStage


class WeightPath(Elaboratable):
    def __init__(self, p: RtlParams):
        self.p = p
        self.start = Signal()  # a command was accepted: load base and steps
        self.base = Signal(32)
        self.steps = Signal(32)
        self.k0 = Signal(32)
        self.k1 = Signal(32)
        self.valid = Signal()
        self.ready = Signal()  # the beat is taken this cycle
        self.code = Signal(p.beat * p.code_bits)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        pipe = m.submodules.hash = HashPipe(p.units)
        val = m.submodules.value = ValueStage(p.dist, p.beat)
        ctr = Signal(32, reset_less=True)
        left = Signal(32)
        sr = Signal(32 * p.units, reset_less=True)  # the step's hash bits, lowest weight first
        sv = Signal()
        beat_bits = p.beat * p.bits_per_weight
        can_load = Signal()
        if p.beats_per_step == 1:
            m.d.comb += can_load.eq(~sv | self.ready)
        else:
            ph = Signal(range(p.beats_per_step))
            m.d.comb += can_load.eq(~sv | (self.ready & (ph == p.beats_per_step - 1)))
            with m.If(can_load):
                m.d.sync += ph.eq(0)
            with m.Elif(sv & self.ready):
                m.d.sync += [ph.eq(ph + 1), sr.eq(sr >> beat_bits)]
        m.d.comb += [pipe.en.eq(can_load), pipe.valid_in.eq(left != 0), pipe.ctr.eq(ctr),
                     pipe.k0.eq(self.k0), pipe.k1.eq(self.k1)]
        with m.If(self.start):
            m.d.sync += [ctr.eq(self.base), left.eq(self.steps)]
        with m.Elif(can_load & (left != 0)):
            m.d.sync += [ctr.eq(ctr + p.units), left.eq(left - 1)]
        with m.If(can_load):
            m.d.sync += [sv.eq(pipe.valid_out), sr.eq(pipe.h)]
        m.d.comb += [val.raw.eq(sr[:beat_bits]), self.code.eq(val.code), self.valid.eq(sv)]
        return m
