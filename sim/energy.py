"""Energy table. Every constant cites its source; all base values are at 45 nm, 0.9 V and are
scaled to a design's node and supply by one documented rule (`node_factor`).

Sources (numbers as collected in ../shared/REFERENCE.md §5.3):
  [H14] M. Horowitz, "Computing's Energy Problem (and what we can do about it)", ISSCC 2014,
        45 nm, 0.9 V: int add 8/32 b 0.03/0.1 pJ, int mult 8/32 b 0.2/3.1 pJ.
  [C7]  CACTI 7, itrs-hp cells, 1 bank, 64-bit word, 1R+1W, ED² optimisation: read energy per
        64-bit access and leakage vs capacity at 45 nm (and 22 nm for the node rule).
  [C7w] CACTI 7, 128 KB: 2.6 / 0.98 / 0.61 / 0.35 pJ/bit at 8 / 32 / 64 / 256-bit reads.
  [C7lp] CACTI 7 itrs-lstp, 1 MB at 45 nm: 153 pJ per 64-bit read, 0.32 mW leakage
        (itrs-hp: 113.2 pJ, 1493 mW).
  [ACC] Accelergy CACTI plug-in DRAM energies: LPDDR4 8, DDR3 70, GDDR5 14, HBM2 3.9 pJ/bit.
  [RNG] 65 nm LFSR PRNG 0.57 pJ/bit; xorshift32 ≈ 0.06 pJ/bit (Aladdin-table estimate).
  [SYN] the contract's generator and mask decoder synthesised from slt_hw.rtl (Yosys, NanGate45
        cells, gate energy model; sim/data/generator_synthesis.json, docs/hardware.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BASE_NODE_NM = 45.0  # [H14], [C7]
BASE_VDD = 0.9  # [H14]

# [H14] pJ per operation at 45 nm.
INT8_ADD_PJ = 0.03
INT32_ADD_PJ = 0.1
INT8_MULT_PJ = 0.2
INT32_MULT_PJ = 3.1

# [C7] itrs-hp, 45 nm: capacity KiB → (read pJ per 64-bit access, leakage mW).
SRAM_TABLE_45NM = ((1, 1.90, 1.65), (8, 7.47, 13.7), (32, 21.2, 50.1), (128, 39.2, 188.0),
                   (1024, 113.2, 1493.0), (4096, 219.4, 5965.0))
# [C7w] 128 KB, access width bits → pJ/bit (relative factor for other widths).
SRAM_WIDTH_PJ_PER_BIT = ((8, 2.6), (32, 0.98), (64, 0.61), (256, 0.35))
# [C7lp] vs [C7] at 1 MB: low-standby-power cells read 153/113.2 × dearer, leak 0.32/1493 × less.
LSTP_READ_FACTOR = 153.0 / 113.2
LSTP_LEAK_FACTOR = 0.32 / 1493.0
# [C7] 32 KB and 1 MB at 22 vs 45 nm: read 5.29/21.2 and 32.3/113.2, leakage 12.9/50.1 and
# 409/1493. Fitting E ∝ node^a to the four ratios gives a ≈ 1.85 (each ratio within ±8 %).
NODE_EXPONENT = 1.85

# [ACC]
DRAM_PJ_PER_BIT = {"lpddr4": 8.0, "gddr5": 14.0, "ddr3": 70.0, "hbm2": 3.9}

# Weight generators, pJ per step at 45 nm.
# hash: the synthesised unit [SYN] (hash core, value stage, mask decoder, control) per weight, times
# the weights one 32-bit hash yields for the distribution (32 signs, or 2 uniform/normal values):
# 13.3 pJ per hash-equivalent for signed constants, 13.0 uniform, 26.8 normal (its ROM). The
# pre-synthesis estimate was 4 × 3.1 pJ (32-bit mults [H14]) + 0.6 pJ ≈ 13 pJ, kept for reference.
GEN_HASH_ESTIMATE_PJ_PER_STEP = 4 * INT32_MULT_PJ + 0.6
GEN_XORSHIFT_PJ_PER_BIT = 0.06  # [RNG] estimate
GEN_LFSR_PJ_PER_BIT = 0.57  # [RNG] 65 nm silicon, used unscaled (conservative at 45 nm)


def hash_unit_pj_per_step(dist: str = "signed_constant") -> float:
    """[SYN] energy of one generator unit per 32 random bits (one contract hash) at 45 nm, 0.9 V,
    decoder and control included, for a distribution."""
    from .hardware_costs import pj_per_weight

    per_hash = {"signed_constant": 32, "uniform": 2, "normal": 2}[dist]
    return pj_per_weight(dist, "binary").value * per_hash


def generator_pj_per_step(kind: str, bits_per_step: int, dist: str = "signed_constant") -> float:
    """Default step energy at 45 nm: the synthesised hash unit per 32-bit hash (scaled to the step
    width), the xorshift / LFSR figures per bit."""
    if kind == "hash":
        return hash_unit_pj_per_step(dist) * bits_per_step / 32
    return {"xorshift": GEN_XORSHIFT_PJ_PER_BIT, "lfsr": GEN_LFSR_PJ_PER_BIT}[kind] * bits_per_step


def node_factor(node_nm: float, vdd: float = BASE_VDD) -> float:
    """Scale of dynamic and leakage energy from 45 nm, 0.9 V: (node/45)^1.85 · (V/0.9)²."""
    return (node_nm / BASE_NODE_NM) ** NODE_EXPONENT * (vdd / BASE_VDD) ** 2


def _loglog(x: float, xs, ys) -> float:
    # power-law interpolation between table points, extrapolated from the end segments
    lx, lxs, lys = math.log(x), np.log(xs), np.log(ys)
    i = int(np.clip(np.searchsorted(lxs, lx) - 1, 0, len(xs) - 2))
    t = (lx - lxs[i]) / (lxs[i + 1] - lxs[i])
    return float(math.exp(lys[i] + t * (lys[i + 1] - lys[i])))


def sram_pj_per_bit(kib: float, word_bits: int, cell: str = "hp") -> float:
    """Read (= write, assumed) energy per bit at 45 nm: the [C7] capacity curve at 64-bit words,
    times the [C7w] width factor relative to 64 bits."""
    sizes, reads, _ = zip(*SRAM_TABLE_45NM, strict=True)
    e64 = _loglog(kib, sizes, reads) / 64.0
    widths, per_bit = zip(*SRAM_WIDTH_PJ_PER_BIT, strict=True)
    w = _loglog(word_bits, widths, per_bit) / _loglog(64, widths, per_bit)
    return e64 * w * (LSTP_READ_FACTOR if cell == "lstp" else 1.0)


def sram_leak_mw(kib: float, cell: str = "hp") -> float:
    sizes, _, leaks = zip(*SRAM_TABLE_45NM, strict=True)
    return _loglog(kib, sizes, leaks) * (LSTP_LEAK_FACTOR if cell == "lstp" else 1.0)


def mac_pj(weight_kind: str, weight_bits: int, act_bits: int) -> float:
    """One MAC at 45 nm. Dense: an act_bits × weight_bits multiply (mult energy ∝ bits², [H14] 8-bit
    point) plus a 32-bit accumulate. Binary/ternary/SLT: the weight is ±σ·level, so the MAC is a
    signed 32-bit accumulate (σ is applied once per output, not counted)."""
    add = INT32_ADD_PJ
    if weight_kind == "dense":
        return INT8_MULT_PJ * (weight_bits * act_bits) / 64.0 + add
    return add


@dataclass(frozen=True)
class EnergyTable:
    """pJ constants of one design, already scaled to its node and supply."""

    mac_pj: float
    sram_pj_per_bit: dict  # operand → pJ/bit
    sram_leak_mw: float
    dram_pj_per_bit: float
    gen_pj_per_bit: float
    logic_leak_mw: float

    @classmethod
    def for_design(cls, d) -> EnergyTable:
        f = node_factor(d.node_nm, d.vdd)
        s = d.sram
        per_bit = {op: sram_pj_per_bit(getattr(s, op).kib, getattr(s, op).word_bits, s.cell) * f
                   for op in ("activations", "weights", "outputs")}
        leak = sum(sram_leak_mw(getattr(s, op).kib, s.cell) for op in ("activations", "weights", "outputs")) * f
        gen = 0.0
        if d.generator is not None:
            g = d.generator
            step = g.pj_per_step if g.pj_per_step is not None else \
                generator_pj_per_step(g.kind, g.bits_per_step, d.weights.dist)
            gen = step / g.bits_per_step * f
        return cls(mac_pj=mac_pj(d.weights.kind, d.weights.bits, d.array.act_bits) * f, sram_pj_per_bit=per_bit,
                   sram_leak_mw=leak, dram_pj_per_bit=d.dram.pj_per_bit, gen_pj_per_bit=gen,
                   logic_leak_mw=d.logic_leak_uw_per_pe * d.array.pes / 1000.0 * f)
