"""Row padding of the frozen format: which lanes of a beat are padding weights (k >= K).

Padding weights are generated but have no place in the free-bit stream (docs/rng.md §7), so the
decoder must not let them take a bit. Padding lives only in the last word of a row, in bits
>= tail = K mod 32 (none when tail = 0). The tracker keeps the word column of the beat (and the
bit position inside the word when a beat is narrower than a word).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal

WCOL_BITS = 28  # words per row <= 2^32 / 32


class RowTracker(Elaboratable):
    def __init__(self, beat: int):
        self.beat = beat
        self.start = Signal()
        self.words = Signal(WCOL_BITS)  # W, words per row
        self.tail = Signal(5)  # K mod 32
        self.wcol = Signal(WCOL_BITS)  # word column of the job's first weight
        self.step = Signal()  # the beat fires
        self.pad = Signal(beat)

    def elaborate(self, platform):
        m = Module()
        words = Signal(WCOL_BITS, reset_less=True)
        tail = Signal(5, reset_less=True)
        col = Signal(WCOL_BITS, reset_less=True)
        with m.If(self.start):
            m.d.sync += [words.eq(self.words), tail.eq(self.tail), col.eq(self.wcol)]
        nwords = max(1, self.beat // 32)
        cols = [col]
        for _ in range(nwords):
            cols.append(Mux(cols[-1] == words - 1, 0, cols[-1] + 1)[:WCOL_BITS])
        pos = Signal(5, reset_less=True) if self.beat < 32 else None
        pad = []
        for i in range(self.beat):
            bit = pos + i if pos is not None else i % 32
            pad.append((cols[i // 32] == words - 1) & (tail != 0) & (bit >= tail))
        m.d.comb += self.pad.eq(Cat(*pad))
        with m.If(self.start):
            if pos is not None:
                m.d.sync += pos.eq(0)
        with m.Elif(self.step):
            if pos is None:
                m.d.sync += col.eq(cols[nwords])
            else:
                m.d.sync += pos.eq(pos + self.beat)
                with m.If(pos == 32 - self.beat):
                    m.d.sync += col.eq(cols[1])
        return m
