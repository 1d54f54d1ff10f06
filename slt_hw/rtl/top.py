"""The top level: job control, the weight path, the mask decoder and the output register.

A command (valid/ready) is one job: `steps` steps from hash counter `base` under key (k0, k1);
it yields steps * P / lanes beats of units * lanes consecutive weights. A command is taken only
when the previous job's last beat has left, so job registers (keys, thresholds) stay put while
anything of theirs is in flight. Each lane's output is a level (0: the weight is +0.0; binary and
frozen: 1 = w0; multicoat: the number of coats set) and the value code of ValueStage.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal

from ..formats import Format
from .freebits import FreeBitDecoder, popcount
from .freeze import FreezePath
from .params import RtlParams
from .rows import WCOL_BITS, RowTracker
from .weights import WeightPath


class WeightGenerator(Elaboratable):
    def __init__(self, p: RtlParams):
        self.p = p
        self._ports: list[Signal] = []
        for name, width in self.port_widths(p):
            sig = Signal(width, name=name)
            setattr(self, name, sig)
            self._ports.append(sig)

    @staticmethod
    def port_widths(p: RtlParams) -> list[tuple[str, int]]:
        ports = [("cmd_valid", 1), ("cmd_ready", 1), ("cmd_k0", 32), ("cmd_k1", 32), ("cmd_base", 32),
                 ("cmd_steps", 32)]
        if p.format is Format.FROZEN:
            ports += [("cmd_fk0", 32), ("cmd_fk1", 32), ("cmd_prune", 17), ("cmd_lock", 17), ("cmd_skip", 5),
                      ("cmd_words", WCOL_BITS), ("cmd_tail", 5), ("cmd_wcol", WCOL_BITS),
                      ("fb_valid", 1), ("fb_ready", 1), ("fb_data", p.fb_width)]
        else:
            ports += [("mask_valid", 1), ("mask_ready", 1), ("mask_data", p.mask_width)]
        return ports + [("out_valid", 1), ("out_ready", 1), ("out_level", p.beat * p.level_bits),
                        ("out_code", p.beat * p.code_bits)]

    def ports(self) -> list[Signal]:
        return list(self._ports)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        wp = m.submodules.weights = WeightPath(p)
        pending = Signal(38)  # beats of the running job not yet delivered
        start = Signal()
        m.d.comb += [self.cmd_ready.eq(pending == 0), start.eq(self.cmd_valid & self.cmd_ready)]
        k0, k1 = Signal(32, reset_less=True), Signal(32, reset_less=True)
        with m.If(start):
            m.d.sync += [k0.eq(self.cmd_k0), k1.eq(self.cmd_k1)]
        m.d.comb += [wp.start.eq(start), wp.base.eq(self.cmd_base), wp.steps.eq(self.cmd_steps),
                     wp.k0.eq(k0), wp.k1.eq(k1)]
        total = self.cmd_steps * p.beats_per_step

        out_free = ~self.out_valid | self.out_ready
        fire = Signal()  # a beat moves from the weight path and the decoder to the output register
        if p.format is Format.FROZEN:
            mv, enough, level = self._frozen(m, start, total, pending, fire)
        else:
            mv, enough = self.mask_valid, 1
            level = self._planes()
        m.d.comb += fire.eq(wp.valid & mv & enough & out_free)
        m.d.comb += wp.ready.eq(fire)
        if p.format is not Format.FROZEN:
            m.d.comb += self.mask_ready.eq(fire)

        level_r = Signal.like(self.out_level, reset_less=True)
        code_r = Signal.like(self.out_code, reset_less=True)
        ov = Signal()
        with m.If(fire):
            m.d.sync += [ov.eq(1), level_r.eq(level), code_r.eq(wp.code)]
        with m.Elif(self.out_ready):
            m.d.sync += ov.eq(0)
        m.d.comb += [self.out_valid.eq(ov), self.out_level.eq(level_r), self.out_code.eq(code_r)]
        with m.If(start):
            m.d.sync += pending.eq(total)
        with m.Elif(self.out_valid & self.out_ready):
            m.d.sync += pending.eq(pending - 1)
        return m

    def _planes(self):
        """Binary: the bit. Multicoat: the number of coats set (planes are nested, docs/rng.md §7)."""
        p, b = self.p, self.p.beat
        if p.format is Format.BINARY:
            return self.mask_data
        return Cat(*(popcount(self.mask_data[c * b + i] for c in range(p.coats))[:p.level_bits]
                     for i in range(b)))

    def _frozen(self, m, start, total, pending, fire):
        p = self.p
        fz = m.submodules.freeze = FreezePath(p.beat)
        dec = m.submodules.freebits = FreeBitDecoder(p.beat, p.fb_width)
        rows = m.submodules.rows = RowTracker(p.beat)
        regs = {n: Signal(w, name=f"job_{n}", reset_less=True)
                for n, w in (("fk0", 32), ("fk1", 32), ("prune", 17), ("lock", 17))}
        with m.If(start):
            m.d.sync += [regs[n].eq(getattr(self, f"cmd_{n}")) for n in regs]
        pair_base = (self.cmd_base * (p.weights_per_hash // 2))[:32]
        m.d.comb += [fz.start.eq(start), fz.base.eq(pair_base), fz.beats.eq(total),
                     fz.k0.eq(regs["fk0"]), fz.k1.eq(regs["fk1"]),
                     fz.prune.eq(regs["prune"]), fz.lock.eq(regs["lock"]),
                     dec.start.eq(start), dec.skip.eq(self.cmd_skip), dec.active.eq(pending != 0),
                     dec.fb_valid.eq(self.fb_valid), dec.fb_data.eq(self.fb_data), self.fb_ready.eq(dec.fb_ready),
                     rows.start.eq(start), rows.words.eq(self.cmd_words), rows.tail.eq(self.cmd_tail),
                     rows.wcol.eq(self.cmd_wcol), rows.step.eq(fire),
                     dec.free.eq(fz.free & ~rows.pad), dec.locked.eq(fz.locked & ~rows.pad)]
        m.d.comb += [fz.ready.eq(fire), dec.take.eq(fire)]
        return fz.valid, dec.enough, dec.level
