"""One engine, two modes. Both share the mapping (sim/mapping.py: folds, tiles, what fits; here the
per-fold compute cycles and DRAM bits per fold) so they differ only in how time is composed:
  analytical  per-tile roofline: each tile's compute overlaps its neighbours' DRAM transfers
  cycle       per-tile events: double-buffered prefetch on one DRAM channel, write-backs queued
              behind the next prefetch; inside each fold the array's edges (weight supply,
              activation port, output/psum port) are stepped cycle by cycle (numba).
Fold compute (R×C array, K reduction, m×n tile; docs/simulator.md):
  output-stationary  max(K, supplies) + R + C − 2 + drain   (stream K, skew, results out)
  weight-stationary  max(R, load) + max(m, supplies) + R + C − 2   (preload, stream m rows)
where the supplies are the weight generator (SLT), the weight SRAM port (dense), the activation
port and the output port (OS results, WS partial-sum read-modify-write).
A layer's operands may already be on chip (`LayerIO`, decided by sim/residency.py): resident
inputs, outputs and weights cost no DRAM traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from . import energy as E
from .config import Design
from .mapping import LayerIO, Plan, classes, gen_bits, layer_plan
from .residency import plan as residency_plan
from .workload import Layer, Workload

__all__ = ["ENERGY_PARTS", "OPERANDS", "LayerIO", "LayerResult", "Result", "gen_bits", "simulate", "simulate_layer"]

ENERGY_PARTS = ("mac", "sram", "dram", "generation", "leakage")
OPERANDS = ("activations", "weights", "outputs")
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
    io: LayerIO = field(default_factory=LayerIO)


def _sum(layers: list, attr: str) -> float:
    return sum(getattr(r, attr) for r in layers)


@dataclass
class Result:
    """`layers`: the first (cold) inference; `steady`: every later one (weights that fit stay)."""

    design: str
    workload: str
    mode: str
    layers: list
    steady: list = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.steady is None:
            self.steady = self.layers

    def total(self, attr: str, steady: bool = False) -> float:
        return _sum(self.steady if steady else self.layers, attr)

    @property
    def cycles(self) -> float:
        return self.total("cycles")

    def energy(self, steady: bool = False) -> dict:
        ls = self.steady if steady else self.layers
        return {k: sum(r.energy_pj[k] for r in ls) for k in ENERGY_PARTS}

    def dram_bits(self, steady: bool = False) -> dict:
        ls = self.steady if steady else self.layers
        return {k: sum(r.dram_bits[k] for r in ls) for k in OPERANDS}

    @property
    def peak_onchip_bits(self) -> int:
        return max(r.peak_onchip_bits for r in self.layers)


def _rates(d: Design, p: Plan) -> tuple[float, float, float]:
    """Weights, activations and output bits the supplies move per cycle: the weight SRAM port
    (weights, or the masks of generated weights) and, for SLT layers, the generators; the
    activation SRAM port; the output SRAM port."""
    w = d.sram.weights.bits_per_cycle / p.wbits if p.wbits > 0 else float("inf")
    if p.gen_rate:
        w = min(w * p.fanout, p.gen_rate * p.fanout)
    return float(w), d.sram.activations.bits_per_cycle / d.array.act_bits, float(d.sram.outputs.bits_per_cycle)


def _out_bits(d: Design, p: Plan, m, n, first_k):
    """Output-port bits of a fold: OS results at the end (m·n outputs, requantised to act_bits at
    the array edge: the reduction is complete); WS per streamed row (n psums written, and read back
    except in the first k-fold: read-modify-write at psum_bits)."""
    if p.os:
        return m * n * d.array.act_bits
    return n * d.array.psum_bits * np.where(first_k, 1, 2)


def _fold_cycles(d: Design, L: Layer, p: Plan, m, n, k, first_k, last=None):
    """Compute cycles of folds with m×n output tiles and k-long reductions (k = K for OS), in
    closed form; scalars or numpy arrays. `last` marks a layer's last fold (the overlapped drain)."""
    R, C = d.array.rows, d.array.cols
    w_rate, a_rate, o_rate = _rates(d, p)
    w_supply = k * n / w_rate
    ob = _out_bits(d, p, m, n, first_k)
    if p.os:
        stream = np.maximum(np.maximum(k, w_supply), k * m / a_rate)
        base = np.ceil(stream) + R + C - 2
        port = np.ceil(ob / o_rate)
        if d.array.drain == "serial":
            return base + np.maximum(R, port)
        if last is None:
            return np.maximum(base, port)
        # each fold's results leave during the next fold; the last fold's after it (overlapped: >= R)
        tail = np.maximum(R if d.array.drain == "overlapped" else 0, port)
        return np.where(last, base + tail, np.maximum(base, port))
    load = np.maximum(R, w_supply)
    stream = np.maximum(np.maximum(m, m * k / a_rate), m * ob / o_rate)
    return np.ceil(load) + np.ceil(stream) + R + C - 2


def _foldclasses(d: Design, L: Layer, p: Plan):
    """(count, m, n, k, first_k, last) classes of identical folds; edge tiles are the remainders."""
    R, C = d.array.rows, d.array.cols
    ms = classes(L.M, R if p.os else p.mc)
    ns = classes(L.N, C)
    ks = [(L.K, 1)] if p.os else classes(L.K, R)
    out = []
    for m, cm in ms:
        for n, cn in ns:
            for j, (k, ck) in enumerate(ks):
                first = j == 0  # the first k class holds the first k-fold
                if first and ck > 1:
                    out += [(cm * cn, m, n, k, True), (cm * cn * (ck - 1), m, n, k, False)]
                else:
                    out.append((cm * cn * ck, m, n, k, first))
    return out


def _traffic(d: Design, L: Layer, p: Plan, io: LayerIO):
    ab, pb = d.array.act_bits, d.array.psum_bits
    n_folds = math.ceil(L.N / d.array.cols)
    W = L.weights * p.wbits
    A = L.M * L.K * ab  # the array reads im2col rows
    A_unique = (L.in_elems or L.M * L.K) * ab  # DRAM carries the input tensor once per pass
    O = L.M * L.N * ab
    spill = L.M * L.N * pb * (p.k_folds - 1) if p.psum_spill else 0.0
    w_dram = 0.0 if io.weights_resident else W * (1 if p.w_fit else p.outer)
    second = w_dram if L.format == "activation" else 0.0  # e.g. a KV cache: activations, not weights
    dram = {"activations": (0.0 if io.input_resident else A_unique * (1 if p.a_fit else n_folds)) + io.read_bits
            + second, "weights": w_dram - second,
            "outputs": (0.0 if io.output_resident else O) + io.write_bits + 2 * spill}
    w_reads = W * p.outer / (p.fanout if p.gen_rate else 1)
    sram = {"activations_read": A * n_folds + io.sram_read_bits,
            "activations_write": dram["activations"] - io.read_bits - second + (O if io.output_resident else 0.0),
            "weights_read": w_reads, "weights_write": w_dram,
            # OS: final outputs once; WS: every k-fold's partial sums (read-modify-write)
            "outputs_write": L.M * L.N * (ab if p.os else pb * p.k_folds),
            "outputs_read": L.M * L.N * (ab if p.os else pb * p.k_folds)}
    return dram, sram


def _tiles(d: Design, L: Layer, p: Plan, io: LayerIO, weights_resident: bool = False):
    """Per-fold arrays (DRAM bits in, DRAM bits out, m, n, k, first_k, last) in execution order;
    with `weights_resident` the weights (masks) are already on chip (a later folding iteration)."""
    R, C = d.array.rows, d.array.cols
    ab, pb = d.array.act_bits, d.array.psum_bits
    mt = np.minimum(R if p.os else p.mc, L.M - np.arange(p.outer) * (R if p.os else p.mc))
    nn_ = math.ceil(L.N / C)
    nt = np.minimum(C, L.N - np.arange(nn_) * C)
    kk = p.k_folds
    kt = np.array([L.K]) if p.os else np.minimum(R, L.K - np.arange(kk) * R)
    # loop order: outer m, then n, then k (innermost)
    m = np.repeat(mt, nn_ * kk)
    n = np.tile(np.repeat(nt, kk), p.outer)
    k = np.tile(kt, p.outer * nn_)
    first_m = np.repeat(np.arange(p.outer) == 0, nn_ * kk)
    first_n = np.tile(np.repeat(np.arange(nn_) == 0, kk), p.outer)
    first_k = np.tile(np.arange(kk) == 0, p.outer * nn_)
    last_k = np.tile(np.arange(kk) == kk - 1, p.outer * nn_)
    w_on = 0 if (weights_resident or io.weights_resident) else 1
    w_in = n * k * p.wbits * np.where(first_m | (not p.w_fit), 1, 0) * w_on
    unique = (L.in_elems or L.M * L.K) / (L.M * L.K)
    a_in = m * k * ab * unique * np.where(first_n | (not p.a_fit), 1, 0) * (0 if io.input_resident else 1)
    out = m * n * ab * last_k * (0 if io.output_resident else 1)
    if p.psum_spill:  # partial sums out after every k-fold but the last, back in before every one but the first
        a_in = a_in + m * n * pb * ~first_k
        out = out + m * n * pb * ~last_k
    share = m * n * last_k / (L.M * L.N)  # residual reads follow the output tiles
    out = out + io.read_bits * share
    din = (w_in + a_in).astype(np.float64)
    din[0] += io.write_bits  # spills happen before the layer starts
    last = np.zeros(len(m), dtype=bool)
    last[-1] = True
    return din, out.astype(np.float64), m, n, k, first_k, last


@numba.njit(cache=False, nogil=True)
def _fold(pre_w, pre_min, steps, w_step, a_step, o_step, o_end, overhead, tail_min, oq, w_rate, a_rate, o_rate,
          serial):
    """One fold cycle by cycle: preload (WS weights; at least pre_min cycles), then a stream of
    `steps` array steps, each taking w_step weights and a_step activations from two FIFOs that the
    supplies refill every cycle (depth: two steps) and pushing o_step bits into the output FIFO that
    the output port drains every cycle (the array stalls when it is full), then the skew `overhead`
    (WS: what the FIFO still holds leaves after it, with the last rows). At the end the fold's results
    (o_end bits) enter the output FIFO: a serial drain waits for it to empty (at least tail_min
    cycles); otherwise it keeps draining during the next fold. Returns (cycles, output FIFO left)."""
    t = 0
    loaded = 0.0
    while loaded < pre_w or t < pre_min:
        loaded += w_rate
        oq = max(0.0, oq - o_rate)
        t += 1
    wq = 0.0
    aq = 0.0
    wcap = 2.0 * w_step + w_rate
    acap = 2.0 * a_step + a_rate
    ocap = 2.0 * o_step + o_rate
    done = 0
    while done < steps:
        wq = min(wq + w_rate, wcap)
        aq = min(aq + a_rate, acap)
        t += 1
        if wq >= w_step - 1e-9 and aq >= a_step - 1e-9 and (o_step == 0.0 or oq + o_step <= ocap + 1e-9):
            wq -= w_step
            aq -= a_step
            oq += o_step
            done += 1
        oq = max(0.0, oq - o_rate)  # the port moves this cycle's psums too
    t += overhead
    if o_step == 0.0:  # OS: the previous fold's results keep leaving during the skew
        oq = max(0.0, oq - overhead * o_rate)
    if not serial:  # the PEs hold their results until the previous fold's have left
        while oq > 1e-9:
            oq = max(0.0, oq - o_rate)
            t += 1
    oq += o_end
    if serial:
        tail = 0
        while oq > 1e-9 or tail < tail_min:
            oq = max(0.0, oq - o_rate)
            tail += 1
        t += tail
    return t, oq


@numba.njit(cache=False, nogil=True)
def _event_sim(din, dout, pre_w, pre_min, steps, w_step, a_step, o_step, o_end, overhead, tail_min, w_rate, a_rate,
               o_rate, serial, final_drain, bits_per_cycle, double_buffered):
    """Tiles in order on one DRAM channel, each fold simulated cycle by cycle; returns total cycles."""
    n = din.shape[0]
    chan = 0.0  # time the DRAM channel is free
    end = np.zeros(n)  # compute end per tile
    oq = 0.0  # output FIFO carried from fold to fold (overlapped drain)
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
        comp, oq = _fold(pre_w[i], pre_min, steps[i], w_step[i], a_step[i], o_step[i], o_end[i], overhead, tail_min,
                         oq, w_rate, a_rate, o_rate, serial)
        end[i] = max(ld, prev) + comp
        if i >= 1:  # write-back of the previous tile, queued behind this tile's prefetch
            chan = max(chan, end[i - 1]) + np.ceil(dout[i - 1] / bits_per_cycle)
    last = end[n - 1]
    if not serial:  # what is left of the last fold's results, and the final drain
        last += max(final_drain, np.ceil(oq / o_rate))
    return max(last, chan) + np.ceil(dout[n - 1] / bits_per_cycle)


def check_mode(mode: str) -> None:
    if mode not in ("analytical", "cycle"):
        raise ValueError(f"mode: expected 'analytical' or 'cycle', got {mode!r}")


def simulate_layer(d: Design, L: Layer, mode: str = "analytical", table: E.EnergyTable | None = None,
                   io: LayerIO | None = None) -> LayerResult:
    """One layer, its operands where `io` says (default: everything in DRAM, as a lone layer)."""
    check_mode(mode)
    io = io or LayerIO()
    table = table or E.EnergyTable.for_design(d)
    p = layer_plan(d, L)
    R, C = d.array.rows, d.array.cols
    bw = d.dram.bytes_per_cycle * 8
    classes = _foldclasses(d, L, p)
    comp_sum = float(sum(cnt * _fold_cycles(d, L, p, m, n, k, fk) for cnt, m, n, k, fk in classes))
    if p.os and d.array.drain == "overlapped":
        comp_sum += R  # the last fold's drain
    dram, sram = _traffic(d, L, p, io)
    dram_total = sum(dram.values())
    macs1 = L.M * L.N * L.K
    reps = L.repeats
    # folding with one shared mask: weights/masks that fit stay on chip for the later iterations
    resident = reps > 1 and L.mask_copies == 1 and p.w_fit and L.has_weights and not io.weights_resident
    w_loads = 1 if (resident or io.weights_resident) else reps
    dram_total = dram_total * reps - dram["weights"] * (reps - w_loads)
    bounds = {"compute": macs1 * reps / (R * C), "dram": dram_total / bw,
              "generator": p.gen_weights * reps / p.gen_rate if p.gen_rate else 0.0}

    def run(weights_resident: bool) -> float:
        din, dout, m, n, k, fk, last = _tiles(d, L, p, io, weights_resident)
        if mode == "analytical":
            # per-tile roofline: each tile's compute overlaps the next tile's prefetch and the previous
            # tile's write-back (double buffering), plus the first load and the last write-back
            comp = _fold_cycles(d, L, p, m, n, k, fk, last)
            io_t = np.ceil(din[1:] / bw) + np.ceil(dout[:-1] / bw)
            return float(np.ceil(din[0] / bw) + np.maximum(comp[:-1], io_t).sum() + comp[-1] + np.ceil(dout[-1] / bw))
        w_rate, a_rate, o_rate = _rates(d, p)
        f64 = np.float64
        ob = np.asarray(_out_bits(d, p, m, n, fk), dtype=f64)
        zeros = np.zeros(len(m))
        serial = d.array.drain == "serial"
        if p.os:
            tail = R if serial else 0
            args = (zeros, 0, k.astype(np.int64), n.astype(f64), m.astype(f64), zeros, ob, R + C - 2, tail)
        else:
            args = ((k * n).astype(f64), R, m.astype(np.int64), zeros, k.astype(f64), ob, zeros, R + C - 2, 0)
        final = R if (p.os and d.array.drain == "overlapped") else 0
        return float(_event_sim(din, dout, *args, w_rate, a_rate, o_rate, serial or not p.os, final, float(bw),
                                d.sram.activations.double_buffered))

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
    sram_e = sum(sram[f"{op}_{rw}"] * table.sram_pj_per_bit[op] for op in OPERANDS for rw in ("read", "write"))
    gbits = p.gen_weights * p.gen_bits_per_weight
    seconds_factor = cycles / d.clock_mhz * 1e3  # P[mW] · this = pJ
    sram_e -= sram["weights_write"] * table.sram_pj_per_bit["weights"] * (reps - w_loads) / reps
    e = {"mac": macs1 * mac_e * toggles * reps, "sram": sram_e * reps,
         "dram": dram_total * table.dram_pj_per_bit,
         "generation": gbits * table.gen_pj_per_bit * reps,
         "leakage": (table.sram_leak_mw + table.logic_leak_mw) * seconds_factor}
    peak = 0
    for op, tile in (("activations", min(L.M, p.mc) * L.K * d.array.act_bits),
                     ("weights", L.weights * p.wbits if p.w_fit else min(L.N, C) * L.K * p.wbits),
                     ("outputs", min(L.M, p.mc) * min(L.N, C) * (d.array.act_bits if p.os else d.array.psum_bits))):
        s = getattr(d.sram, op)
        peak += min(s.bits, tile * (2 if s.double_buffered else 1))
    dram = {k: v * (w_loads if k == "weights" else reps) for k, v in dram.items()}
    sram = {k: v * (w_loads if k == "weights_write" else reps) for k, v in sram.items()}
    return LayerResult(L.name, macs1 * reps, cycles, comp_sum * reps, bounds, macs1 * reps / (cycles * R * C),
                       dram, sram, gbits * reps, e, int(peak), p.folds, io)


def simulate(d: Design, w: Workload, mode: str = "analytical", residency: bool = True) -> Result:
    """Every layer of `w` on `d`: the first inference and the steady state. With `residency`
    (default) outputs stay in the activation SRAM when they fit and weights/masks that fit the
    weight SRAM stay there across inferences (sim/residency.py); without it every layer starts
    cold, reads its input from DRAM and writes its output back."""
    check_mode(mode)
    table = E.EnergyTable.for_design(d)
    if not residency:
        layers = [simulate_layer(d, L, mode, table) for L in w.layers]
        return Result(d.name, w.name, mode, layers)
    pl = residency_plan(d, w)
    first = [simulate_layer(d, L, mode, table, io) for L, io in zip(w.layers, pl.first, strict=True)]
    steady = [a if io == a.io else simulate_layer(d, L, mode, table, io)
              for L, io, a in zip(w.layers, pl.steady, first, strict=True)]
    return Result(d.name, w.name, mode, first, steady)
