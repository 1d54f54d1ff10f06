"""The contract hash h = lowbias32(lowbias32(c ^ k0) ^ k1) as a 4-stage pipeline (docs/rng.md §3).

One register after each of the four constant multiplies; `n` hash cores share the stages and
hash the consecutive counters ctr, ctr + 1, ..., ctr + n - 1. The whole pipe moves when `en` is
high (a global stall: simple, and a stalled pipe keeps its contents). Data registers have no
reset: only the valid bits need one.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal

M1, M2 = 0x7FEB352D, 0x846CA68B


def xs(x, s: int):
    return x ^ (x >> s)


def mul32(x, c: int):
    return (x * c)[:32]  # the contract's u32 product: the high half is never built


class HashPipe(Elaboratable):
    STAGES = 4

    def __init__(self, n: int):
        self.n = n
        self.en = Signal()
        self.valid_in = Signal()
        self.ctr = Signal(32)
        self.k0 = Signal(32)
        self.k1 = Signal(32)
        self.valid_out = Signal()
        self.h = Signal(32 * n)  # hash i in bits [32i, 32i + 32)

    def elaborate(self, platform):
        m = Module()
        regs = [[Signal(32, name=f"s{s}_h{i}", reset_less=True) for i in range(self.n)]
                for s in range(self.STAGES)]
        valid = [Signal(name=f"s{s}_valid") for s in range(self.STAGES)]
        ops = (
            lambda x: mul32(xs(x ^ self.k0, 16), M1),
            lambda x: mul32(xs(x, 15), M2),
            lambda x: mul32(xs(xs(x, 16) ^ self.k1, 16), M1),
            lambda x: mul32(xs(x, 15), M2),
        )
        srcs = [(self.ctr + i)[:32] for i in range(self.n)]
        prev_valid = self.valid_in
        with m.If(self.en):
            for s, op in enumerate(ops):
                m.d.sync += valid[s].eq(prev_valid)
                for i in range(self.n):
                    m.d.sync += regs[s][i].eq(op(srcs[i]))
                srcs, prev_valid = regs[s], valid[s]
        m.d.comb += [self.valid_out.eq(valid[-1]), self.h.eq(Cat(*(xs(r, 16) for r in regs[-1])))]
        return m
