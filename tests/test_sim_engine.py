"""Simulator engine: hand-computed small cases, analytical vs cycle-level agreement, lower bounds."""

from __future__ import annotations

import math

import pytest

from slt_hw.sim import config, engine, workload
from slt_hw.sim.workload import Layer, Workload

# Per-layer agreement of the two modes (docs/simulator.md): the analytical mode assumes each tile's
# compute overlaps exactly its neighbours' DRAM transfers; the event simulation also sees the
# prefetch slot and queueing of write-backs behind prefetches.
LAYER_TOL = 0.12
WORKLOAD_TOL = 0.06


def small(dataflow="output_stationary", kind="dense", bytes_per_cycle=1000.0, **gen):
    raw = {"name": "t", "array": {"rows": 4, "cols": 4}, "dataflow": dataflow,
           "sram": {op: {"kib": 64, "word_bits": 4096} for op in ("activations", "weights", "outputs")},
           "dram": {"bytes_per_cycle": bytes_per_cycle}, "weights": {"kind": kind, "bits": 8}}
    if kind == "slt":
        raw["generator"] = {"units": 1, "bits_per_step": 32, "fanout": 1, **gen}
    return config.from_dict(raw)


@pytest.mark.parametrize("mode", ["analytical", "cycle"])
def test_one_os_fold_by_hand(mode):
    # K + 2R + C - 2 = 8 + 8 + 4 - 2 = 18 compute; 512 bits in and 128 out at 8000 bits/cycle: 1 + 1
    r = engine.simulate_layer(small(), Layer("l", 4, 4, 8, format="dense"), mode)
    assert r.cycles == 20
    assert r.dram_bits == {"activations": 256, "weights": 256, "outputs": 128}


@pytest.mark.parametrize("mode", ["analytical", "cycle"])
def test_one_os_fold_dram_bound_by_hand(mode):
    # 8 bits/cycle: load 512/8 = 64, compute 18, write-back 128/8 = 16
    r = engine.simulate_layer(small(bytes_per_cycle=1.0), Layer("l", 4, 4, 8, format="dense"), mode)
    assert r.cycles == 64 + 18 + 16


@pytest.mark.parametrize("mode", ["analytical", "cycle"])
def test_ws_two_k_folds_by_hand(mode):
    # two k-folds of (preload R=4) + (stream m=6) + R + C - 2 = 16 each; psums stay in the output SRAM
    d = small("weight_stationary")
    r = engine.simulate_layer(d, Layer("l", 6, 4, 8, format="dense"), mode)
    assert r.compute_cycles == 32
    # first tile loads 6x4 acts + 4x4 weights (8 bit) = 320 bits -> 1 cycle; last writes 6x4x8 -> 1
    assert r.cycles == 34
    assert r.sram_bits["outputs_write"] == 6 * 4 * 32 * 2


@pytest.mark.parametrize("mode", ["analytical", "cycle"])
def test_generator_stall_by_hand(mode):
    # 1 weight per cycle (1 unit x 1 bit, signed constant): a 64 x 4 weight tile takes 256 cycles
    # to generate, not the K = 64 of the stream: 256 + 2R + C - 2 = 266
    d = small(kind="slt", bits_per_step=1)
    r = engine.simulate_layer(d, Layer("l", 4, 4, 64, format="binary"), mode)
    assert r.compute_cycles == 266
    assert r.bounds["generator"] == 256
    assert r.generated_bits == 256  # one hash bit per signed-constant weight


def _designs():
    ds = [config.load_design(p) for p in config.presets()]
    h = config.load_design("hiddenite")
    ds.append(h.replace({"dataflow": "weight_stationary", "name": "hiddenite-ws"}))
    ds.append(h.replace({"dram.bytes_per_cycle": 2, "name": "hiddenite-slow-dram"}))
    ds.append(h.replace({"generator.units": 1, "generator.fanout": 1, "weights.dist": "uniform", "name": "h-gen"}))
    return ds


def _all_designs():
    ds = _designs()
    h = config.load_design("hiddenite")
    # a starved output port (WS partial sums at 32 bits), overlapped and SCALE-Sim drains
    ds.append(h.replace({"dataflow": "weight_stationary", "sram.outputs.banks": 2, "name": "h-ws-psum-port"}))
    ds.append(h.replace({"array.drain": "overlapped", "sram.outputs.banks": 1, "name": "h-overlap-slow-out"}))
    ds.append(h.replace({"array.drain": "none", "name": "h-drain-none"}))
    return ds


@pytest.mark.parametrize("wname", ["resnet18", "gpt2-decode", "mlp"])
def test_modes_agree_and_respect_bounds(wname):
    w = workload.ZOO[wname]()
    for d in _all_designs():
        for residency in (True, False):
            a = engine.simulate(d, w, "analytical", residency=residency)
            c = engine.simulate(d, w, "cycle", residency=residency)
            for la, lc in zip(a.layers + a.steady, c.layers + c.steady, strict=True):
                assert abs(la.cycles - lc.cycles) <= LAYER_TOL * lc.cycles, (d.name, la.name, la.cycles, lc.cycles)
                for r in (la, lc):
                    assert r.cycles >= max(r.bounds.values()) - 1e-9, (d.name, r.name, r.cycles, r.bounds)
                    assert 0 < r.utilization <= 1.0
                    assert min(r.dram_bits.values()) >= 0 and min(r.sram_bits.values()) >= 0
            assert abs(a.cycles - c.cycles) <= WORKLOAD_TOL * c.cycles, (d.name, a.cycles, c.cycles)


def test_output_port_stalls_the_array():
    # WS: every streamed row writes (and, after the first k-fold, reads back) C psums of 32 bits;
    # a 64-bit output port takes 4 x 32 / 64 = 2 cycles a row in the first k-fold and 4 after
    d = small("weight_stationary").replace({"sram.outputs.word_bits": 64})
    r = engine.simulate_layer(d, Layer("l", 6, 4, 8, format="dense"))
    assert r.compute_cycles == (4 + 6 * 2 + 6) + (4 + 6 * 4 + 6)
    # OS: the drain of 4 x 4 outputs of 8 bits through a 16-bit port takes 8 cycles, not R = 4
    o = engine.simulate_layer(small().replace({"sram.outputs.word_bits": 16}), Layer("l", 4, 4, 8, format="dense"))
    assert o.compute_cycles == 8 + 6 + 8
    for mode in ("analytical", "cycle"):
        c = engine.simulate_layer(d, Layer("l", 6, 4, 8, format="dense"), mode)
        assert c.cycles >= r.compute_cycles


@pytest.mark.parametrize("mode", ["analytical", "cycle"])
def test_drain_options(mode):
    # three OS folds of K = 8 on a 4 x 4 array: serial adds R per fold, overlapped once, none never
    L = Layer("l", 12, 4, 8, format="dense")
    base = 8 + 4 + 4 - 2
    for drain, extra in (("serial", 3 * 4), ("overlapped", 4), ("none", 0)):
        r = engine.simulate_layer(small().replace({"array.drain": drain}), L, mode)
        assert r.compute_cycles == 3 * base + extra, drain
        assert r.cycles >= r.compute_cycles


def test_dram_reads_cover_unique_data_and_slt_reads_masks_only():
    h, dense = config.load_design("hiddenite"), config.load_design("dense-4k")
    L = Layer("l", 196, 512, 4608, density=0.3)
    rh, rd = engine.simulate_layer(h, L), engine.simulate_layer(dense, L)
    assert rd.dram_bits["weights"] >= L.weights * 8
    assert rh.dram_bits["weights"] >= L.weights * 1
    assert rh.dram_bits["activations"] >= L.M * L.K * 8
    assert rh.generated_bits > 0 and rd.generated_bits == 0
    assert rh.energy_pj["generation"] > 0 and rd.energy_pj["generation"] == 0
    assert rh.energy_pj["dram"] < rd.energy_pj["dram"]


def test_leakage_is_power_times_time():
    d = config.load_design("dense-4k")
    r = engine.simulate_layer(d, Layer("l", 64, 64, 64, format="dense"))
    from slt_hw.sim.energy import EnergyTable

    t = EnergyTable.for_design(d)
    assert r.energy_pj["leakage"] == pytest.approx(t.sram_leak_mw * 1e-3 * r.cycles / (d.clock_mhz * 1e6) * 1e12)


def test_folding_unshared_masks_scale_everything_shared_masks_stay_on_chip():
    d = config.load_design("hiddenite")
    for mode in ("analytical", "cycle"):
        one = engine.simulate_layer(d, Layer("l", 100, 70, 90), mode)
        unshared = engine.simulate_layer(d, Layer("l", 100, 70, 90, repeats=3, mask_copies=3), mode)
        assert unshared.cycles == 3 * one.cycles
        assert unshared.energy_pj["mac"] == pytest.approx(3 * one.energy_pj["mac"])
        assert math.isclose(unshared.dram_bits["weights"], 3 * one.dram_bits["weights"])
        # one shared mask fits the mask SRAM: loaded once, weights regenerated every iteration
        shared = engine.simulate_layer(d, Layer("l", 100, 70, 90, repeats=3), mode)
        assert shared.dram_bits["weights"] == one.dram_bits["weights"]
        assert shared.generated_bits == 3 * one.generated_bits
        assert shared.dram_bits["activations"] == 3 * one.dram_bits["activations"]
        assert one.cycles * 2 < shared.cycles < 3 * one.cycles


def test_bad_mode_named():
    with pytest.raises(ValueError, match="mode"):
        engine.simulate(config.load_design("hiddenite"), Workload("w", (Layer("l", 1, 1, 1),)), "fast")


def test_cycle_by_cycle_fold_matches_closed_form():
    # the cycle mode steps FIFOs each cycle; the analytical mode divides totals by rates
    rs = __import__("numpy").random.default_rng(0)
    for _ in range(300):
        steps, w_step, a_step = int(rs.integers(1, 300)), float(rs.integers(0, 65)), float(rs.integers(1, 65))
        o_step, o_end = float(rs.choice([0, rs.integers(1, 300)])), float(rs.integers(0, 3000))
        w_rate, a_rate, o_rate = float(rs.uniform(0.2, 80)), float(rs.uniform(0.5, 80)), float(rs.uniform(8, 600))
        pre_w, pre_min, tail_min = float(rs.integers(0, 500)), int(rs.integers(0, 64)), int(rs.integers(0, 16))
        got, left = engine._fold(pre_w, pre_min, steps, w_step, a_step, o_step, o_end, 7, tail_min, 0.0,
                                 w_rate, a_rate, o_rate, True)
        load = max(pre_min, math.ceil(pre_w / w_rate - 1e-9))
        stream = math.ceil(max(steps, steps * w_step / w_rate, steps * a_step / a_rate) - 1e-9)
        port = math.ceil(steps * o_step / o_rate - 1e-9)  # the array stalls on a full output FIFO
        tail = max(tail_min, math.ceil(o_end / o_rate - 1e-9))
        slack = 2 + math.ceil((2 * o_step + o_rate) / o_rate)  # what the output FIFO may still hold
        want = load + max(stream, port) + 7 + tail
        assert left == 0.0
        assert want - slack <= got <= want + slack, (got, want)
