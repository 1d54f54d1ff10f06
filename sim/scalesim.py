"""SCALE-Sim-compatible configuration of this simulator, and topology files both tools read.

SCALE-Sim (v3.0.0, `pip install scalesim`) differs from our default model in five stated ways; a
compatible design (`compatible`) adopts each, so our dense baseline can be held to the tool per
layer (tests/test_sim_scalesim.py, against references bench/scalesim_reference.py produced):
1. operand width: one byte for every operand, partial sums included (act_bits = psum_bits = 8);
2. conv output size ⌈(H − F + S) / S⌉ on the padded input (workload.from_csv reads SCALE-Sim rows so);
3. partial sums: a weight-stationary fold streams every row (mapping.ws_rows = all); partial sums
   of each k-fold go to the output buffer and on to DRAM (our default chunks rows so they stay);
4. fill/drain: an output-stationary fold takes K + R + C − 2 cycles, each PE's result leaving as
   it completes (array.drain = none; ours by default shifts results out: + R per fold);
5. compute cycles: SCALE-Sim's "Total Cycles" is the index of the last compute cycle (one less
   than the count), with no first DRAM load and no last write-back: compare it + 1 with our
   `compute_cycles`. SRAM ports never stall the array in SCALE-Sim's default layout.
"""

from __future__ import annotations

from .config import Design, from_dict

DATAFLOWS = {"os": "output_stationary", "ws": "weight_stationary"}


def compatible(rows: int, cols: int, dataflow: str, ifmap_kb: int = 6144, filter_kb: int = 6144,
               ofmap_kb: int = 2048) -> Design:
    """A dense 8-bit design that counts cycles and traffic as SCALE-Sim does (see the module doc)."""
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow: expected one of {list(DATAFLOWS)}, got {dataflow!r}")
    wide = {"banks": 64, "word_bits": 4096, "double_buffered": True}  # ports that never limit
    return from_dict({
        "name": f"scalesim-{rows}x{cols}-{dataflow}",
        "array": {"rows": rows, "cols": cols, "act_bits": 8, "psum_bits": 8, "drain": "none"},
        "dataflow": DATAFLOWS[dataflow],
        "sram": {"activations": {"kib": ifmap_kb, **wide}, "weights": {"kib": filter_kb, **wide},
                 "outputs": {"kib": ofmap_kb, **wide}},
        "weights": {"kind": "dense", "bits": 8},
        "mapping": {"ws_rows": "all"},
    })


def config_text(rows: int, cols: int, dataflow: str, ifmap_kb: int = 6144, filter_kb: int = 6144,
                ofmap_kb: int = 2048) -> str:
    """The SCALE-Sim .cfg matching `compatible(...)` (estimated-bandwidth mode: no DRAM stalls)."""
    return f"""[general]
run_name = {rows}x{cols}_{dataflow}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {ifmap_kb}
FilterSramSzkB: {filter_kb}
OfmapSramSzkB: {ofmap_kb}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {dataflow}
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
FilterCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def topologies() -> dict[str, tuple[str, str]]:
    """Validation networks as SCALE-Sim topology text: name → (input type "conv" | "gemm", CSV)."""
    from .workload import Conv, gpt2_block, resnet_convs

    conv_head = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"
    r18 = [c.scalesim_row() for c, _, _ in resnet_convs(18, 32)] + ["fc, 1, 1, 1, 1, 512, 100, 1,"]
    c6, h, cin = [], 32, 3
    for i, c in enumerate((64, 64, 128, 128, 256, 256)):
        c6.append(Conv(f"conv{i + 1}", h, cin, c, 3).scalesim_row())
        cin = c
        h = h // 2 if i % 2 else h
    c6 += ["fc1, 4, 4, 4, 4, 256, 256, 1,", "fc2, 1, 1, 1, 1, 256, 256, 1,", "fc3, 1, 1, 1, 1, 256, 10, 1,"]
    gemm = ["Layer, M, N, K,"]
    for L in gpt2_block("prefill", seq=128).layers:  # attention products: one row per head
        for h in range(L.repeats):
            gemm.append(f"{L.name}{f'.h{h}' if L.repeats > 1 else ''}, {L.M}, {L.N}, {L.K},")
    return {"resnet18-cifar": ("conv", "\n".join([conv_head, *r18]) + "\n"),
            "conv6-cifar": ("conv", "\n".join([conv_head, *c6]) + "\n"),
            "gpt2-block-128": ("gemm", "\n".join(gemm) + "\n")}


def access_counts(d: Design, layer, result) -> dict:
    """Our counts of a lone layer in SCALE-Sim's report columns (one-byte words): DRAM reads of the
    unique input and the filter, DRAM output writes (every k-fold's partial sums for WS; SCALE-Sim
    does not count reading them back), SRAM reads of both operands."""
    from .mapping import layer_plan

    p = layer_plan(d, layer)
    spill_reads = layer.M * layer.N * d.array.psum_bits * (p.k_folds - 1) if p.psum_spill else 0
    return {"ifmap_dram_reads": result.dram_bits["activations"] / 8,
            "filter_dram_reads": result.dram_bits["weights"] / 8,
            "ofmap_dram_writes": (result.dram_bits["outputs"] - spill_reads) / 8,
            "ifmap_sram_reads": result.sram_bits["activations_read"] / 8,
            "filter_sram_reads": result.sram_bits["weights_read"] / 8}
