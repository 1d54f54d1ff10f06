"""Silicon area of a design: SRAMs, PE array, weight generators. Every constant cites its source;
base values are at 45 nm and scale to a design's node by one rule (`node_area_factor`).

Sources:
  [C7a] CACTI 7, itrs-hp, 1 bank, 64-bit word, 1R+1W (../shared/REFERENCE.md §5.3): area at 45 nm
        of 1 KB 0.0086, 8 KB 0.060, 32 KB 0.213, 128 KB 0.961 mm², 1 MB 7.02, 4 MB 27.6 mm²; at
        22 nm 32 KB 0.060 and 1 MB 1.76 mm².
  [H14a] M. Horowitz, ISSCC 2014 keynote, the area column of its 45 nm operation table: 8-bit add
        36 µm², 32-bit add 137 µm², 8-bit mult 282 µm², 32-bit mult 3495 µm².
  [NG45] NanGate 45 nm Open Cell Library (FreePDK45): DFF_X1 4.522 µm², XOR2_X1 1.596 µm²,
        NAND2_X1 0.798 µm².
  [SYN] the contract's generator and mask decoder synthesised from slt_hw.rtl (Yosys, NanGate45
        cell areas; sim/data/generator_synthesis.json, docs/hardware.md).
Assumptions (stated, not sourced): lstp cells take the area of hp cells (the 6T cell is the same,
only threshold and oxide change); banking adds no area; wires, control and pads are not counted
(a die is larger: see docs/simulator.md's Hiddenite comparison).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .energy import _loglog

BASE_NODE_NM = 45.0
# [C7a] 45 nm, KiB → mm².
SRAM_AREA_45NM = ((1, 0.0086), (8, 0.060), (32, 0.213), (128, 0.961), (1024, 7.02), (4096, 27.6))
# [C7a] 22 vs 45 nm: 0.060 / 0.213 at 32 KB and 1.76 / 7.02 at 1 MB. Fitting A ∝ node^a gives
# a = 1.77 and 1.93; a = 1.85 is within ±5 % of both (the energy rule's exponent, energy.py).
AREA_NODE_EXPONENT = 1.85

# [H14a] µm² at 45 nm.
ADD8_UM2, ADD32_UM2 = 36.0, 137.0
MULT8_UM2, MULT32_UM2 = 282.0, 3495.0
# [NG45] µm².
DFF_UM2, XOR2_UM2, NAND2_UM2 = 4.522, 1.596, 0.798

# The pre-synthesis estimate of a contract hash unit, kept for comparison: four 32-bit multipliers
# [H14a], the 64-bit key, a 32-bit counter and an output register [NG45].
HASH_UNIT_ESTIMATE_UM2 = 4 * MULT32_UM2 + (64 + 32 + 32) * DFF_UM2
XORSHIFT_UNIT_UM2 = 3 * 32 * XOR2_UM2 + 32 * DFF_UM2  # three shift-xor stages, one state register
LFSR_UNIT_UM2 = 32 * DFF_UM2 + 4 * XOR2_UM2  # 32-bit Fibonacci LFSR, four taps


def node_area_factor(node_nm: float) -> float:
    return (node_nm / BASE_NODE_NM) ** AREA_NODE_EXPONENT


def sram_mm2(kib: float, node_nm: float = BASE_NODE_NM) -> float:
    sizes, areas = zip(*SRAM_AREA_45NM, strict=True)
    return _loglog(kib, sizes, areas) * node_area_factor(node_nm)


def pe_um2(kind: str, weight_bits: int, act_bits: int, psum_bits: int, node_nm: float = BASE_NODE_NM) -> float:
    """One PE: the multiplier (dense: act × weight bits, area ∝ bits² from the 8-bit point) or, for
    binary / ternary / SLT weights (±σ·level), a conditional negate of the activation (one XOR per
    bit); the psum-wide accumulator (area ∝ width from the 32-bit point); operand and psum registers."""
    if kind == "dense":
        mult = MULT8_UM2 * weight_bits * act_bits / 64.0
        wreg = weight_bits
    else:
        mult = XOR2_UM2 * act_bits
        wreg = {"binary": 1, "ternary": 2}.get(kind, 2)  # SLT: sign and mask bit
    acc = ADD32_UM2 * psum_bits / 32.0
    regs = DFF_UM2 * (act_bits + wreg + psum_bits)
    return (mult + acc + regs) * node_area_factor(node_nm)


def generator_unit_um2(kind: str, node_nm: float = BASE_NODE_NM, dist: str = "signed_constant") -> tuple[float, str]:
    """(area of one generator unit yielding 32 random bits a cycle, its source). A hash unit is the
    synthesised one [SYN] (hash core, value stage, mask decoder, control) at 45 nm, scaled by this
    module's node rule."""
    if kind == "hash":
        from .hardware_costs import area_um2

        c = area_um2(dist, "binary")
        return c.value * node_area_factor(node_nm), c.source
    est = {"xorshift": XORSHIFT_UNIT_UM2, "lfsr": LFSR_UNIT_UM2}[kind]
    return est * node_area_factor(node_nm), "estimate: gates [NG45]"


@dataclass(frozen=True)
class Area:
    """mm² per block of one design at its node."""

    pes: float
    activations: float
    weights: float
    outputs: float
    generators: float

    @property
    def sram(self) -> float:
        return self.activations + self.weights + self.outputs

    @property
    def total(self) -> float:
        return self.pes + self.sram + self.generators

    def parts(self) -> dict:
        return {"pes": self.pes, "activation SRAM": self.activations, "weight SRAM": self.weights,
                "output SRAM": self.outputs, "generators": self.generators, "total": self.total}


def area(d) -> Area:
    node = d.node_nm
    w = d.weights
    pe = pe_um2(w.kind, w.bits, d.array.act_bits, d.array.psum_bits, node)
    gen = 0.0
    if d.generator is not None:
        unit = generator_unit_um2(d.generator.kind, node, w.dist)[0]
        gen = d.generator.units * unit * d.generator.bits_per_step / 32
    return Area(pes=pe * d.array.pes / 1e6, activations=sram_mm2(d.sram.activations.kib, node),
                weights=sram_mm2(d.sram.weights.kib, node), outputs=sram_mm2(d.sram.outputs.kib, node),
                generators=gen / 1e6)


def at_area(d, target_mm2: float, spend: str = "pes"):
    """`d` grown (or shrunk) to `target_mm2`: spend = "pes" scales the array's rows and columns by
    one factor (its SRAM ports and generators scale with them, so supply keeps up with demand),
    "activations" the activation SRAM. The largest design that does not exceed the target; raises
    if even the smallest does."""
    if spend not in ("pes", "activations"):
        raise ValueError(f"spend: expected 'pes' or 'activations', got {spend!r}")
    if not (isinstance(target_mm2, (int, float)) and math.isfinite(target_mm2) and target_mm2 > 0):
        raise ValueError(f"target_mm2: expected a positive number, got {target_mm2!r}")
    if spend == "activations":
        fixed = area(d).total - area(d).activations
        left = target_mm2 - fixed
        if left <= sram_mm2(1, d.node_nm):
            raise ValueError(f"target_mm2: {target_mm2:.3f} mm² leaves no room for an activation SRAM "
                             f"(the rest of {d.name} is {fixed:.3f} mm²)")
        lo, hi = 1.0, 1 << 22
        while hi - lo > 0.5:  # bisect on KiB; area grows with size
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if sram_mm2(mid, d.node_nm) <= left else (lo, mid)
        kib = math.floor(lo)
        return d.replace({"sram.activations.kib": kib, "name": f"{d.name}@{target_mm2:.2f}mm2[act={kib}KiB]"})
    R0, C0 = d.array.rows, d.array.cols
    base = area(d)
    per_pe = base.pes / d.array.pes
    per_unit = base.generators / d.generator.units if d.generator is not None else 0.0
    fixed = base.sram

    def scaled(r: int, c: int) -> float:  # generators grow with the columns they feed
        units = math.ceil(d.generator.units * c / C0) if d.generator is not None else 0
        return fixed + per_pe * r * c + per_unit * units

    # grow (or shrink) rows and columns by one factor, keeping the array's aspect ratio
    lo, hi = 0.0, 4096 / max(R0, C0)
    for _ in range(60):
        mid = (lo + hi) / 2
        r, c = max(1, round(R0 * mid)), max(1, round(C0 * mid))
        lo, hi = (mid, hi) if scaled(r, c) <= target_mm2 else (lo, mid)
    best = (max(1, round(R0 * lo)), max(1, round(C0 * lo)))
    if scaled(*best) > target_mm2:
        best = (max(1, int(R0 * lo)), max(1, int(C0 * lo)))
    if scaled(*best) > target_mm2:
        raise ValueError(f"target_mm2: {target_mm2:.3f} mm² leaves no room for a PE array "
                         f"(the rest of {d.name} is {fixed:.3f} mm²)")
    r, c = best
    # ports and generators scale with the array so supply keeps up with demand (fair by construction)
    upd = {"array.rows": r, "array.cols": c, "name": f"{d.name}@{target_mm2:.2f}mm2[{r}x{c}]",
           "sram.activations.banks": math.ceil(d.sram.activations.banks * r / R0),
           "sram.weights.banks": math.ceil(d.sram.weights.banks * c / C0),
           "sram.outputs.banks": math.ceil(d.sram.outputs.banks * c / C0)}
    if d.generator is not None:
        upd["generator.units"] = math.ceil(d.generator.units * c / C0)
    return d.replace(upd)
