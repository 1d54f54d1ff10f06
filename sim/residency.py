"""Where each layer's operands live: activations across layers, weights across inferences.

Activations. The activation SRAM holds what is still needed: a layer's output until its last
consumer reads it, a residual shortcut until its add. A layer's output stays on chip when it fits
beside the live tensors (and, when the layer's own input streams from DRAM, beside that input's
tiles); if it does not, live shortcuts this layer does not read are spilled to DRAM, largest
first, and if that is not enough the output goes to DRAM and its consumers stream it back. The
network input is read from DRAM and the network output written there.

Weights. After the first inference, layers whose weights (masks in an SLT design) are pinned in the
weight SRAM read nothing from DRAM: every layer when the whole model fits, else a prefix in layer
order that leaves room for the largest tile the other layers stream.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import Design
from .mapping import LayerIO, layer_plan
from .workload import INPUT, Layer, Workload


@dataclass(frozen=True)
class Plan:
    first: tuple[LayerIO, ...]  # the first inference
    steady: tuple[LayerIO, ...]  # every later inference
    model_bits: float  # weights / masks the design stores (all copies)
    pinned_bits: float  # of which stay in the weight SRAM across inferences
    spilled: tuple[str, ...]  # layers whose output (not the network's) went to DRAM


def layer_weight_bits(d: Design, L: Layer) -> float:
    """Stored bits of a layer's weights / masks on design d (all mask copies; 0 for activation layers)."""
    if not L.has_weights:
        return 0.0
    return layer_plan(d, L).wbits * L.weights * L.mask_copies


def _last_uses(w: Workload) -> dict[str, int]:
    last: dict[str, int] = {}
    for i, L in enumerate(w.layers):
        for n in (*w.sources(i), L.add, L.wsrc):
            if n and n != INPUT:
                last[n] = i
    return last


def _mbit(bits: float) -> str:
    return f"{bits / 1e6:.2f} Mbit"


def _activations(d: Design, w: Workload) -> tuple[list[LayerIO], list[str]]:
    cap = d.sram.activations.bits
    ab = d.array.act_bits
    last = _last_uses(w)
    live: dict[str, float] = {}
    ios, spilled = [], []
    for i, L in enumerate(w.layers):
        srcs = w.sources(i)
        reads = {*srcs, L.add, L.wsrc} - {None}
        out_bits = L.output_elems * ab
        io = LayerIO(input_resident=all(s in live for s in srcs), weights_resident=bool(L.wsrc and L.wsrc in live))
        if L.add:
            io = replace(io, sram_read_bits=out_bits) if L.add in live else replace(io, read_bits=out_bits)
        note = f"in: {'SRAM' if io.input_resident else 'DRAM'}"
        if L.name not in last:
            note += "; out: DRAM (network output)" if i == len(w.layers) - 1 else "; out: DRAM (no consumer)"
        else:
            p = layer_plan(d, L)
            tile = min(L.M, p.mc) * L.K * ab * (2 if d.sram.activations.double_buffered else 1)
            need = (0 if io.input_resident else min(cap, tile)) + out_bits  # input tiles, output
            spill_bits = 0.0
            for name in sorted((n for n in live if n not in reads), key=live.get, reverse=True):
                if sum(live.values()) + need <= cap:
                    break
                spill_bits += live.pop(name)
                note += f"; spills {name}"
            if sum(live.values()) + need <= cap:
                io = replace(io, output_resident=True)
                note += "; out: SRAM"
            else:
                spilled.append(L.name)
                note += (f"; out: DRAM ({_mbit(out_bits)} output + {_mbit(sum(live.values()) + need - out_bits)} "
                         f"live/streaming > {_mbit(cap)} activation SRAM)")
            io = replace(io, write_bits=spill_bits)
        ios.append(replace(io, note=note))
        for n in reads:
            if last.get(n) == i:
                live.pop(n, None)
        if io.output_resident:
            live[L.name] = out_bits
    return ios, spilled


def _pinned(d: Design, w: Workload) -> tuple[list[bool], float, float]:
    bits = [layer_weight_bits(d, L) for L in w.layers]
    total = sum(bits)
    cap = d.sram.weights.bits
    if total <= cap:
        return [b > 0 for b in bits], total, total
    dbl = 2 if d.sram.weights.double_buffered else 1
    reserve = max((min(L.N, d.array.cols) * L.K * layer_plan(d, L).wbits * dbl for L in w.layers if L.has_weights),
                  default=0.0)
    pinned, used = [], 0.0
    for b in bits:
        ok = 0 < b and used + b <= cap - reserve
        used += b if ok else 0.0
        pinned.append(ok)
    return pinned, total, used


def plan(d: Design, w: Workload) -> Plan:
    acts, spilled = _activations(d, w)
    pinned, total, used = _pinned(d, w)
    steady = tuple(replace(io, weights_resident=True, note=io.note + "; weights pinned") if pin else io
                   for io, pin in zip(acts, pinned, strict=True))
    return Plan(tuple(acts), steady, total, used, tuple(spilled))


def smallest_weight_sram_kib(d: Design, w: Workload) -> float:
    """The weight (mask) SRAM, in KiB, that holds the whole model: every weight pinned."""
    return sum(layer_weight_bits(d, L) for L in w.layers) / 8192
