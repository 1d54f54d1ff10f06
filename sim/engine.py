"""One engine, two modes. Both share the mapping (`_plan`: folds, per-fold compute cycles, DRAM
bits per fold) so they differ only in how time is composed:
  analytical  cycles = max(Σ fold compute + first load + last write-back, DRAM bits / bandwidth)
  cycle       per-tile events: double-buffered prefetch on one DRAM channel, write-backs queued
              behind the next prefetch, compute waiting on data and on the previous tile (numba).
Fold compute (R×C array, K reduction, m×n tile; docs/simulator.md):
  output-stationary  max(K, supply) + 2R + C − 2       (stream K, fill and drain)
  weight-stationary  max(R, load) + max(m, act supply) + R + C − 2   (weight preload, stream m rows)
where supply is the weight generator (SLT), the weight SRAM port (dense) or the activation port.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from . import energy as E
from .config import Design
from .workload import Layer, Workload, layer_mask_bits

ENERGY_PARTS = ("mac", "sram", "dram", "generation", "leakage")
# bits of the contract's hash stream per generated weight (docs/rng.md: one 32-bit hash per
# 32 signed-constant weights, per 2 uniform/normal weights); +16 for a frozen weight's state.
GEN_BITS = {"signed_constant": 1, "uniform": 16, "normal": 16}


@dataclass
class LayerResult:
    name: str
    macs: int
    cycles: float
    compute_cycles: float
    bounds: dict  # compute, dram, generator lower bounds in cycles
    utilization: float
    dram_bits: dict  # operand → bits (activations, weights, outputs)
    sram_bits: dict  # "<operand>_read" / "<operand>_write" → bits
    generated_bits: float
    energy_pj: dict = field(default_factory=dict)
    peak_onchip_bits: int = 0
    folds: int = 0


@dataclass
class Result:
    design: str
    workload: str
    mode: str
    layers: list

    def total(self, attr: str) -> float:
        return sum(getattr(r, attr) for r in self.layers)

    @property
    def cycles(self) -> float:
        return self.total("cycles")

    def energy(self) -> dict:
        return {k: sum(r.energy_pj[k] for r in self.layers) for k in ENERGY_PARTS}

    def dram_bits(self) -> dict:
        return {k: sum(r.dram_bits[k] for r in self.layers) for k in ("activations", "weights", "outputs")}

    @property
    def peak_onchip_bits(self) -> int:
        return max(r.peak_onchip_bits for r in self.layers)


def _classes(total: int, tile: int) -> list[tuple[int, int]]:
    """Tile sizes and how many tiles have each: [(tile, full), (remainder, 1)]."""
    full, rem = divmod(total, tile)
    out = [(tile, full)] if full else []
    return out + [(rem, 1)] if rem else out


@dataclass(frozen=True)
class _Plan:
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
    gen_bits_per_weight: int


def _plan(d: Design, L: Layer) -> _Plan:
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
    if os_:
        outer = math.ceil(L.M / R)
        folds = outer * n_folds
        mc = R
        a_fit = R * L.K * ab <= d.sram.activations.usable_bits
    else:
        mc = max(1, min(L.M, d.sram.outputs.usable_bits // (C * pb)))
        outer = math.ceil(L.M / mc)
        folds = outer * n_folds * math.ceil(L.K / R)
        a_fit = mc * L.K * ab <= d.sram.activations.usable_bits
    w_fit = L.weights * wbits <= d.sram.weights.usable_bits
    gen_rate, fanout, gen_w, gbits = 0.0, 1, 0.0, 0
    if slt_layer:
        gbits = GEN_BITS[d.weights.dist]
        gen_rate = d.generator.weights_per_cycle(gbits)
        fanout = min(d.generator.fanout, outer) if os_ else 1
        gen_w = L.weights * math.ceil(outer / fanout)
        if L.format == "frozen":
            gbits += 16
    return _Plan(os_, outer, folds, wbits, gen_rate, w_fit, a_fit, mc, fanout, gen_w, gbits)


def _fold_cycles(d: Design, L: Layer, p: _Plan, m, n, k):
    """Compute cycles of folds with m×n output tiles and k-long reductions (k = K for OS), in
    closed form; scalars or numpy arrays."""
    R, C = d.array.rows, d.array.cols
    w_rate, a_rate = _rates(d, p)
    w_supply = k * n / w_rate
    if p.os:
        stream = np.maximum(np.maximum(k, w_supply), k * m / a_rate)
        return np.ceil(stream) + 2 * R + C - 2
    load = np.maximum(R, w_supply)
    stream = np.maximum(m, m * k / a_rate)
    return np.ceil(load) + np.ceil(stream) + R + C - 2


def _fold_classes(d: Design, L: Layer, p: _Plan):
    """(count, m, n, k) classes of identical folds; edge tiles are the remainders."""
    R, C = d.array.rows, d.array.cols
    ms = _classes(L.M, R if p.os else p.mc)
    ns = _classes(L.N, C)
    ks = [(L.K, 1)] if p.os else _classes(L.K, R)
    return [(cm * cn * ck, m, n, k) for m, cm in ms for n, cn in ns for k, ck in ks]


def _traffic(d: Design, L: Layer, p: _Plan):
    ab, pb = d.array.act_bits, d.array.psum_bits
    n_folds = math.ceil(L.N / d.array.cols)
    k_folds = 1 if p.os else math.ceil(L.K / d.array.rows)
    W = L.weights * p.wbits
    A = L.M * L.K * ab
    dram = {"activations": A * (1 if p.a_fit else n_folds),
            "weights": W * (1 if p.w_fit else p.outer),
            "outputs": L.M * L.N * ab}
    w_reads = W * p.outer / (p.fanout if p.gen_rate else 1)
    sram = {"activations_read": A * n_folds, "activations_write": dram["activations"],
            "weights_read": w_reads, "weights_write": dram["weights"],
            "outputs_write": L.M * L.N * pb * k_folds, "outputs_read": L.M * L.N * pb * k_folds}
    return dram, sram


def _tiles(d: Design, L: Layer, p: _Plan, weights_resident: bool = False):
    """Per-fold arrays (DRAM bits in, DRAM bits out, m, n, k) in execution order; with
    `weights_resident` the weights (masks) are already on chip (a later folding iteration)."""
    R, C = d.array.rows, d.array.cols
    ab = d.array.act_bits
    mt = np.minimum(R if p.os else p.mc, L.M - np.arange(p.outer) * (R if p.os else p.mc))
    nn_ = math.ceil(L.N / C)
    nt = np.minimum(C, L.N - np.arange(nn_) * C)
    kk = 1 if p.os else math.ceil(L.K / R)
    kt = np.array([L.K]) if p.os else np.minimum(R, L.K - np.arange(kk) * R)
    # loop order: outer m, then n, then k (innermost)
    m = np.repeat(mt, nn_ * kk)
    n = np.tile(np.repeat(nt, kk), p.outer)
    k = np.tile(kt, p.outer * nn_)
    first_m = np.repeat(np.arange(p.outer) == 0, nn_ * kk)
    first_n = np.tile(np.repeat(np.arange(nn_) == 0, kk), p.outer)
    w_in = n * k * p.wbits * np.where(first_m | (not p.w_fit), 1, 0) * (0 if weights_resident else 1)
    a_in = m * k * ab * np.where(first_n | (not p.a_fit), 1, 0)
    last_k = np.tile(np.arange(kk) == kk - 1, p.outer * nn_)
    out = m * n * ab * last_k
    return (w_in + a_in).astype(np.float64), out.astype(np.float64), m, n, k


def _rates(d: Design, p: _Plan) -> tuple[float, float]:
    """Weights and activations the supplies deliver per cycle: the weight SRAM port (weights, or
    the masks of generated weights) and, for SLT layers, the generators."""
    w = d.sram.weights.bits_per_cycle / p.wbits if p.wbits > 0 else float("inf")
    if p.gen_rate:
        w = min(w * p.fanout, p.gen_rate * p.fanout)
    return float(w), d.sram.activations.bits_per_cycle / d.array.act_bits


@numba.njit(cache=False, nogil=True)
def _fold(pre_w, pre_min, steps, w_step, a_step, overhead, w_rate, a_rate):
    """One fold cycle by cycle: preload (WS weights; at least pre_min cycles), then a stream of
    `steps` array steps, each taking w_step weights and a_step activations from two FIFOs that the
    supplies refill every cycle (depth: two steps), then fill/drain `overhead`."""
    t = 0
    loaded = 0.0
    while loaded < pre_w or t < pre_min:
        loaded += w_rate
        t += 1
    wq = 0.0
    aq = 0.0
    wcap = 2.0 * w_step + w_rate
    acap = 2.0 * a_step + a_rate
    done = 0
    while done < steps:
        wq = min(wq + w_rate, wcap)
        aq = min(aq + a_rate, acap)
        t += 1
        if wq >= w_step - 1e-9 and aq >= a_step - 1e-9:
            wq -= w_step
            aq -= a_step
            done += 1
    return t + overhead


@numba.njit(cache=False, nogil=True)
def _event_sim(din, dout, pre_w, pre_min, steps, w_step, a_step, overhead, w_rate, a_rate, bits_per_cycle,
               double_buffered):
    """Tiles in order on one DRAM channel, each fold simulated cycle by cycle; returns total cycles."""
    n = din.shape[0]
    chan = 0.0  # time the DRAM channel is free
    end = np.zeros(n)  # compute end per tile
    for i in range(n):
        slot = 0.0
        if double_buffered:
            if i >= 2:
                slot = end[i - 2]
        elif i >= 1:
            slot = end[i - 1]
        ld = max(chan, slot) + np.ceil(din[i] / bits_per_cycle)
        chan = ld
        prev = end[i - 1] if i >= 1 else 0.0
        comp = _fold(pre_w[i], pre_min, steps[i], w_step[i], a_step[i], overhead, w_rate, a_rate)
        end[i] = max(ld, prev) + comp
        if i >= 1:  # write-back of the previous tile, queued behind this tile's prefetch
            chan = max(chan, end[i - 1]) + np.ceil(dout[i - 1] / bits_per_cycle)
    return max(end[n - 1], chan) + np.ceil(dout[n - 1] / bits_per_cycle)


def simulate_layer(d: Design, L: Layer, mode: str = "analytical", table: E.EnergyTable | None = None) -> LayerResult:
    if mode not in ("analytical", "cycle"):
        raise ValueError(f"mode: expected 'analytical' or 'cycle', got {mode!r}")
    table = table or E.EnergyTable.for_design(d)
    p = _plan(d, L)
    R, C = d.array.rows, d.array.cols
    bw = d.dram.bytes_per_cycle * 8
    classes = _fold_classes(d, L, p)
    comp_sum = float(sum(cnt * _fold_cycles(d, L, p, m, n, k) for cnt, m, n, k in classes))
    dram, sram = _traffic(d, L, p)
    dram_total = sum(dram.values())
    macs1 = L.M * L.N * L.K
    reps = L.repeats
    # folding with one shared mask: weights/masks that fit stay on chip for the later iterations
    resident = reps > 1 and L.mask_copies == 1 and p.w_fit and L.has_weights
    w_loads = 1 if resident else reps
    dram_total = dram_total * reps - dram["weights"] * (reps - w_loads)
    bounds = {"compute": macs1 * reps / (R * C), "dram": dram_total / bw,
              "generator": p.gen_weights * reps / p.gen_rate if p.gen_rate else 0.0}

    def run(weights_resident: bool) -> float:
        din, dout, m, n, k = _tiles(d, L, p, weights_resident)
        if mode == "analytical":
            # per-tile roofline: each tile's compute overlaps the next tile's prefetch and the previous
            # tile's write-back (double buffering), plus the first load and the last write-back
            comp = _fold_cycles(d, L, p, m, n, k)
            io = np.ceil(din[1:] / bw) + np.ceil(dout[:-1] / bw)
            return float(np.ceil(din[0] / bw) + np.maximum(comp[:-1], io).sum() + comp[-1] + np.ceil(dout[-1] / bw))
        w_rate, a_rate = _rates(d, p)
        f64 = np.float64
        if p.os:
            args = (np.zeros(len(m)), 0, k.astype(np.int64), n.astype(f64), m.astype(f64), 2 * R + C - 2)
        else:
            args = ((k * n).astype(f64), R, m.astype(np.int64), np.zeros(len(m)), k.astype(f64), R + C - 2)
        return float(_event_sim(din, dout, *args, w_rate, a_rate, float(bw), d.sram.activations.double_buffered))

    first = run(False)
    cycles = first + (reps - 1) * (run(True) if resident else first)
    # energy (pJ)
    f = E.node_factor(d.node_nm, d.vdd)
    if L.format == "activation" or (d.is_slt and L.format == "dense"):
        mac_e = E.mac_pj("dense", 8, d.array.act_bits) * f
        toggles = 1.0
    else:
        mac_e, toggles = table.mac_pj, 1.0
        if d.is_slt:  # pruned weights clock-gate the accumulate; coats add one shift-add each
            toggles = sum(L.coat_densities) if L.format == "multicoat" else L.nonzero_fraction()
    ops = {k.split("_")[0] for k in sram}
    sram_e = sum(sram[f"{op}_{rw}"] * table.sram_pj_per_bit[op] for op in ops for rw in ("read", "write"))
    gen_bits = p.gen_weights * p.gen_bits_per_weight
    seconds_factor = cycles / d.clock_mhz * 1e3  # P[mW] · this = pJ
    sram_e -= sram["weights_write"] * table.sram_pj_per_bit["weights"] * (reps - w_loads) / reps
    e = {"mac": macs1 * mac_e * toggles * reps, "sram": sram_e * reps,
         "dram": dram_total * table.dram_pj_per_bit,
         "generation": gen_bits * table.gen_pj_per_bit * reps,
         "leakage": (table.sram_leak_mw + table.logic_leak_mw) * seconds_factor}
    peak = 0
    for op, tile in (("activations", min(L.M, p.mc) * L.K * d.array.act_bits),
                         ("weights", L.weights * p.wbits if p.w_fit else min(L.N, C) * L.K * p.wbits),
                         ("outputs", min(L.M, p.mc) * min(L.N, C) * d.array.psum_bits)):
        s = getattr(d.sram, op)
        peak += min(s.bits, tile * (2 if s.double_buffered else 1))
    dram = {k: v * (w_loads if k == "weights" else reps) for k, v in dram.items()}
    sram = {k: v * (w_loads if k == "weights_write" else reps) for k, v in sram.items()}
    return LayerResult(L.name, macs1 * reps, cycles, comp_sum * reps, bounds, macs1 * reps / (cycles * R * C),
                       dram, sram, gen_bits * reps, e, int(peak), p.folds)


def simulate(d: Design, w: Workload, mode: str = "analytical") -> Result:
    table = E.EnergyTable.for_design(d)
    return Result(d.name, w.name, mode, [simulate_layer(d, L, mode, table) for L in w.layers])
