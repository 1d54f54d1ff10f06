"""The mapping of one layer onto a design, shared by both timing modes and by the residency planner:
folds, tile shapes, streamed bits per weight, what fits the SRAMs, the generator's rate and work,
and where the layer's operands live (`LayerIO`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import rng
from .config import Design
from .workload import Layer, layer_mask_bits

_DISTS = {"signed_constant": 0, "uniform": 1, "normal": 2}


def gen_bits(dist: str, frozen: bool = False) -> float:
    """Bits of the contract's hash stream per generated weight, from sim/rng.py's `hash_count`
    (one 32-bit hash per 32 signed-constant weights, per 2 uniform/normal weights); a frozen
    weight also regenerates its freeze state (one more 16-bit chunk)."""
    n = 1 << 12  # one row, a whole number of hashes for every distribution
    per = 32 * rng.hash_count(1, n, _DISTS[dist]) / n
    return per + (32 * rng.hash_count(1, n, _DISTS["uniform"]) / n if frozen else 0.0)


@dataclass(frozen=True)
class LayerIO:
    """Where a layer's operands live for one execution (sim/residency.py decides)."""

    input_resident: bool = False  # the input is already in the activation SRAM
    output_resident: bool = False  # the output stays in the activation SRAM for its consumers
    weights_resident: bool = False  # weights/masks pinned on chip (or the second activation operand)
    read_bits: float = 0.0  # other DRAM reads: a residual shortcut, a spilled tensor read back
    write_bits: float = 0.0  # other DRAM writes: live tensors spilled to make room
    sram_read_bits: float = 0.0  # a residual shortcut read from the activation SRAM
    note: str = ""


def classes(total: int, tile: int) -> list[tuple[int, int]]:
    """Tile sizes and how many tiles have each: [(tile, full), (remainder, 1)]."""
    full, rem = divmod(total, tile)
    out = [(tile, full)] if full else []
    return out + [(rem, 1)] if rem else out


@dataclass(frozen=True)
class Plan:
    # per-layer mapping facts shared by both modes
    os: bool
    outer: int  # m folds (OS) or m chunks (WS)
    folds: int
    wbits: float  # streamed bits per weight (mask bits for SLT layers)
    gen_rate: float  # generated weights per cycle (0: weights come from SRAM)
    w_fit: bool
    a_fit: bool
    mc: int  # WS m-chunk rows
    fanout: int
    gen_weights: float
    gen_bits_per_weight: float
    psum_spill: bool  # WS partial sums of each k-fold go to DRAM and back (ws_rows: all)
    k_folds: int


def layer_plan(d: Design, L: Layer) -> Plan:
    R, C = d.array.rows, d.array.cols
    ab, pb = d.array.act_bits, d.array.psum_bits
    slt_layer = d.is_slt and L.format not in ("dense", "activation")
    if L.format == "activation":
        wbits = ab
    elif slt_layer:
        wbits = layer_mask_bits(L, d.mask_memory) / (L.weights * L.mask_copies)
    elif L.format == "dense" and d.is_slt:
        wbits = 8
    else:
        wbits = d.weights.stored_bits
    os_ = d.dataflow == "output_stationary"
    n_folds = math.ceil(L.N / C)
    k_folds = 1 if os_ else math.ceil(L.K / R)
    psum_spill = False
    if os_:
        outer = math.ceil(L.M / R)
        folds = outer * n_folds
        mc = R
    else:
        if d.mapping.ws_rows == "all":  # every row streams; each k-fold's partial sums go out and back
            mc = L.M
            psum_spill = k_folds > 1
        else:
            mc = max(1, min(L.M, d.sram.outputs.usable_bits // (C * pb)))
        outer = math.ceil(L.M / mc)
        folds = outer * n_folds * k_folds
    a_fit = mc * L.K * ab <= d.sram.activations.usable_bits
    w_fit = L.weights * wbits <= d.sram.weights.usable_bits
    gen_rate, fanout, gen_w, gbits = 0.0, 1, 0.0, 0.0
    if slt_layer:
        gbits = gen_bits(d.weights.dist, L.format == "frozen")
        gen_rate = d.generator.weights_per_cycle(gbits)
        fanout = min(d.generator.fanout, outer) if os_ else 1
        gen_w = L.weights * math.ceil(outer / fanout)
    return Plan(os_, outer, folds, wbits, gen_rate, w_fit, a_fit, mc, fanout, gen_w, gbits, psum_spill, k_folds)


