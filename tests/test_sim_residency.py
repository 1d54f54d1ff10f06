"""Residency invariants: activations that fit never touch DRAM between layers, weights that fit load
once over a stream of inferences, spills are reported, DRAM covers the unique data."""

from __future__ import annotations

import pytest

from slt_hw.sim import config, engine, report, residency, workload
from slt_hw.sim.workload import INPUT, Layer, Workload


def chain(n=4, m=32, width=64):
    return Workload("chain", tuple(Layer(f"l{i}", m, width, width, format="dense") for i in range(n)))


def design(act_kib=256, w_kib=128, kind="dense"):
    d = config.load_design("dense-4k" if kind == "dense" else "hiddenite")
    return d.replace({"sram.activations.kib": act_kib, "sram.weights.kib": w_kib})


@pytest.mark.parametrize("mode", ["analytical", "cycle"])
def test_activations_that_fit_never_touch_dram_between_layers(mode):
    w = chain()
    r = engine.simulate(design(), w, mode)
    ab = 8
    assert r.dram_bits()["activations"] == w.layers[0].input_elems * ab  # the network input only
    assert r.dram_bits()["outputs"] == w.layers[-1].output_elems * ab  # the network output only
    assert all(x.io.input_resident for x in r.layers[1:]) and not r.layers[0].io.input_resident
    cold = engine.simulate(design(), w, mode, residency=False)
    assert cold.dram_bits()["activations"] == sum(L.input_elems * ab for L in w.layers)
    assert r.cycles <= cold.cycles and sum(r.energy().values()) < sum(cold.energy().values())


def test_outputs_that_do_not_fit_spill_and_say_why():
    w = chain(m=4096)  # 4096 x 64 x 8 bits = 256 KiB per output
    d = design(act_kib=64)
    r = engine.simulate(d, w)
    assert not any(x.io.output_resident for x in r.layers)
    assert all("activation SRAM" in x.io.note for x in r.layers[:-1])
    # each layer writes its output and the next reads it back
    assert r.dram_bits()["outputs"] == sum(L.output_elems * 8 for L in w.layers)
    assert report.spill_table(r).row_count == len(w.layers) - 1


def test_residual_shortcut_kept_when_it_fits_and_spilled_when_not():
    # a -> b -> c -> d, d adds a's output: a stays live across b and c
    layers = (Layer("a", 256, 64, 64, format="dense", src=(INPUT,)), Layer("b", 256, 64, 64, format="dense"),
              Layer("c", 256, 64, 64, format="dense"), Layer("d", 256, 64, 64, format="dense", add="a"))
    w = Workload("res", layers)
    out_bits = 256 * 64 * 8  # 16 KiB each
    big = engine.simulate(design(act_kib=256), w)
    assert big.layers[3].io.sram_read_bits == out_bits and big.layers[3].io.read_bits == 0
    assert big.dram_bits()["activations"] == 256 * 64 * 8  # the input only
    # room for two tensors but not three: c's output (beside its input b) needs a spilled
    tight = engine.simulate(design(act_kib=40), w)
    c, d = tight.layers[2], tight.layers[3]
    assert "spills a" in c.io.note and c.io.write_bits == out_bits and c.io.output_resident
    assert d.io.read_bits == out_bits and d.io.input_resident  # the shortcut comes back from DRAM


def test_weights_that_fit_load_once_over_a_stream_of_inferences():
    w = chain()
    d = design(w_kib=1024)  # 4 x 64 x 64 x 8 bits = 16 KiB of weights
    r = engine.simulate(d, w)
    weights = sum(L.weights * 8 for L in w.layers)
    assert r.dram_bits()["weights"] == weights and r.dram_bits(steady=True)["weights"] == 0
    row = report.summary(d, w, r, inferences=10)
    assert row["total_energy_pj"] == pytest.approx(row["first_energy_pj"] + 9 * row["energy_pj"])
    assert row["first_dram_bits"] - sum(row[f"dram_{k}_bits"] for k in engine.OPERANDS) == weights
    assert row["weights_pinned"] == len(w.layers)
    # a weight SRAM too small for the model pins what fits and streams the rest every inference
    small = engine.simulate(design(w_kib=12), w)  # 4 KiB per layer, 8 KiB kept for a streamed tile
    pinned = [x.io.weights_resident for x in small.steady]
    assert 0 < sum(pinned) < len(pinned)
    assert small.dram_bits(steady=True)["weights"] == sum(L.weights * 8 for L, p in zip(w.layers, pinned,
                                                                                       strict=True) if not p)


@pytest.mark.parametrize("wname", ["resnet18", "resnet50", "resnet50-folded", "gpt2-prefill", "gpt2-decode", "mlp"])
def test_first_inference_reads_unique_inputs_and_weights(wname):
    w = workload.ZOO[wname]()
    for name in config.presets():
        d = config.load_design(name)
        r = engine.simulate(d, w)
        weights = sum(residency.layer_weight_bits(d, L) for L in w.layers)
        net_in = sum(L.input_elems * 8 for i, L in enumerate(w.layers) if INPUT in w.sources(i))
        dram = r.dram_bits()
        assert dram["weights"] >= weights * (1 - 1e-12), (name, wname)
        assert dram["activations"] >= net_in and sum(dram.values()) >= weights + net_in
        assert all(0 < x.utilization <= 1 for x in r.layers + r.steady)
        assert r.total("cycles", steady=True) <= r.cycles + 1e-9  # never slower once weights stay


def test_smallest_weight_sram_holds_the_model_and_premise_shows():
    w = workload.ZOO["resnet18-cifar"]()
    h, dense = config.load_design("hiddenite").replace({"mask_memory.binary": None}), config.load_design("dense-4k")
    assert residency.smallest_weight_sram_kib(h, w) == pytest.approx(w.weights / 8192)
    assert residency.smallest_weight_sram_kib(dense, w) == pytest.approx(w.weights * 8 / 8192)
    for d in (h, dense):
        fit = d.replace({"sram.weights.kib": residency.smallest_weight_sram_kib(d, w) * 1.000001})
        r = engine.simulate(fit, w)
        assert r.dram_bits(steady=True)["weights"] == 0  # the whole model stays on chip
        assert r.dram_bits()["weights"] == pytest.approx(residency.smallest_weight_sram_kib(d, w) * 8192)
    # the presets' 128 KiB hold neither model: masks stream every inference (some layers pinned),
    # at most 1 bit per weight, where the dense chip streams at least 8
    rh, rd = engine.simulate(h, w), engine.simulate(dense, w)
    assert 0 < rh.dram_bits(steady=True)["weights"] < w.weights <= rd.dram_bits(steady=True)["weights"] / 8


def test_a_batch_fetches_weights_once_and_keeps_attention_per_sample():
    w = workload.ZOO["gpt2-decode"]()
    b = workload.with_batch(w, 8)
    for one, many in zip(w.layers, b.layers, strict=True):
        if one.has_weights:
            assert (many.M, many.repeats, many.weights) == (8 * one.M, one.repeats, one.weights)
        else:  # each sequence has its own KV cache
            assert (many.M, many.repeats) == (one.M, 8 * one.repeats)
    d = config.load_design("hiddenite")
    r1, r8 = engine.simulate(d, w), engine.simulate(d, b)
    assert r8.dram_bits(steady=True)["weights"] == r1.dram_bits(steady=True)["weights"]  # masks once per batch
    assert r8.dram_bits(steady=True)["activations"] == pytest.approx(8 * r1.dram_bits(steady=True)["activations"],
                                                                     rel=0.01)
    with pytest.raises(ValueError, match="batch"):
        workload.with_batch(w, 0)
