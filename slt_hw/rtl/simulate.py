"""Run jobs through the generated hardware in Amaranth's simulator, with optional random stalls on
every valid/ready port, and return the beats it delivered."""

from __future__ import annotations

import random

from amaranth.sim import Simulator

from ..formats import Format
from .params import RtlParams
from .top import WeightGenerator
from .vectors import Job


def run_jobs(p: RtlParams, jobs: list[Job], *, stall: float = 0.0, seed: int = 0,
             max_cycles: int | None = None) -> tuple[list[list[tuple[int, int]]], int]:
    """Beats (level, code) per job, and the cycles taken. `stall`: probability that a source drops
    valid or the sink drops ready in a cycle. Stops after `max_cycles` (default: ample for the
    stall rate), so a design that loses beats ends with short jobs instead of hanging."""
    dut = WeightGenerator(p)
    frozen = p.format is Format.FROZEN
    rng = random.Random(seed)
    got: list[list[tuple[int, int]]] = [[] for _ in jobs]
    mask = [m for j in jobs for m in j.mask]  # the mask feeder streams every job's beats in order
    cycles = 0
    if max_cycles is None:
        beats = sum(len(j.expect) for j in jobs)
        max_cycles = int((beats + 12 * len(jobs)) / (1 - stall) ** 3 * 2) + 100

    async def bench(ctx):
        nonlocal cycles
        cmd_i, cur, mask_i, fb_i = 0, -1, 0, 0
        while cycles < max_cycles and not (cmd_i == len(jobs) and len(got[cur]) == len(jobs[cur].expect)):
            up = [rng.random() >= stall for _ in range(4)]
            cmd_v = cmd_i < len(jobs) and up[0]
            ctx.set(dut.cmd_valid, cmd_v)
            if cmd_v:
                for name, value in jobs[cmd_i].cmd.items():
                    ctx.set(getattr(dut, f"cmd_{name}"), value)
            if frozen:
                words = jobs[cur].fb if cur >= 0 else []
                ctx.set(dut.fb_valid, up[1] and cur >= 0)
                ctx.set(dut.fb_data, words[fb_i] if fb_i < len(words) else 0)  # zeros past the stream's end
            else:
                ctx.set(dut.mask_valid, up[1] and mask_i < len(mask))
                ctx.set(dut.mask_data, mask[mask_i] if mask_i < len(mask) else 0)
            ctx.set(dut.out_ready, up[2])
            if frozen and ctx.get(dut.fb_valid) and ctx.get(dut.fb_ready):
                fb_i += 1
            if not frozen and ctx.get(dut.mask_valid) and ctx.get(dut.mask_ready):
                mask_i += 1
            if ctx.get(dut.out_valid) and up[2]:
                got[cur].append((ctx.get(dut.out_level), ctx.get(dut.out_code)))
            if cmd_v and ctx.get(dut.cmd_ready):
                cmd_i, cur, fb_i = cmd_i + 1, cmd_i, 0
            await ctx.tick()
            cycles += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, cycles
