"""Simulator config (every bad field named), presets and the energy table."""

from __future__ import annotations

import pytest
import yaml

from slt_hw.sim import config, energy


def test_presets_load_and_match_each_other():
    names = config.presets()
    assert {"hiddenite", "dense-4k", "binary-4k", "ternary-4k"} <= set(names)
    h = config.load_design("hiddenite")
    assert h.array.pes == 4096 and h.is_slt and h.node_nm == 40
    for base in ("dense-4k", "binary-4k", "ternary-4k"):
        b = config.load_design(base)
        assert b.array == h.array and b.clock_mhz == h.clock_mhz and not b.is_slt
        for op in ("activations", "weights", "outputs"):  # equal SRAM budget; ports sized per design
            assert getattr(b.sram, op).kib == getattr(h.sram, op).kib
    assert config.load_design("binary-4k").weights.stored_bits == 1
    assert config.load_design("ternary-4k").weights.stored_bits == 2


@pytest.mark.parametrize("path, value, field", [
    ("array.rows", 0, "array.rows"),
    ("array.cols", 2.5, "array.cols"),
    ("dataflow", "row_stationary", "dataflow"),
    ("sram.activations.kib", -1, "sram.activations.kib"),
    ("sram.outputs.double_buffered", "yes", "sram.outputs.double_buffered"),
    ("sram.cell", "ulp", "sram.cell"),
    ("dram.bytes_per_cycle", 0, "dram.bytes_per_cycle"),
    ("clock_mhz", float("nan"), "clock_mhz"),
    ("weights.kind", "quaternary", "weights.kind"),
    ("generator.fanout", 0, "generator.fanout"),
    ("generator.kind", "trng", "generator.kind"),
    ("mask_memory.frozen", -0.1, "mask_memory.frozen"),
])
def test_bad_fields_are_named(path, value, field):
    raw = config.to_dict(config.load_design("hiddenite"))
    node = raw
    *head, last = path.split(".")
    for p in head:
        node = node[p]
    node[last] = value
    with pytest.raises(config.ConfigError, match=f"^{field.replace('.', '[.]')}"):
        config.from_dict(raw)


def test_unknown_and_missing_fields_named(tmp_path):
    raw = config.to_dict(config.load_design("dense-4k"))
    raw["sram"]["weights"]["kbi"] = 3
    with pytest.raises(config.ConfigError, match="sram.weights.kbi: unknown field"):
        config.from_dict(raw)
    with pytest.raises(config.ConfigError, match="sram.weights.kib: required"):
        config.from_dict({"name": "x", "sram": {"weights": {"banks": 2}}})
    with pytest.raises(config.ConfigError, match="generator"):
        config.from_dict({"name": "x", "weights": {"kind": "slt"}})
    with pytest.raises(config.ConfigError, match="generator"):
        config.from_dict({"name": "x", "weights": {"kind": "dense"}, "generator": {}})
    with pytest.raises(config.ConfigError, match="design"):
        config.load_design("no-such-preset")
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump({**config.to_dict(config.load_design("hiddenite")), "name": "mine"}))
    assert config.load_design(f).name == "mine"
    with pytest.raises(config.ConfigError, match="array.rowz: no such config field"):
        config.load_design("hiddenite").replace({"array.rowz": 3})


def test_designs_are_frozen():
    d = config.load_design("hiddenite")
    with pytest.raises(AttributeError):
        d.clock_mhz = 1.0


def test_energy_table_reproduces_its_sources():
    # CACTI points are returned exactly at their capacities (64-bit words, 45 nm, hp cells)
    for kib, read64, leak in energy.SRAM_TABLE_45NM:
        assert energy.sram_pj_per_bit(kib, 64) * 64 == pytest.approx(read64)
        assert energy.sram_leak_mw(kib) == pytest.approx(leak)
    # the width factor reproduces the 128 KB width sweep
    for width, pj in energy.SRAM_WIDTH_PJ_PER_BIT:
        assert energy.sram_pj_per_bit(128, width) == pytest.approx(pj * 39.2 / 64 / 0.61)
    # monotone in capacity; wider words cost less per bit
    assert energy.sram_pj_per_bit(64, 64) < energy.sram_pj_per_bit(256, 64)
    assert energy.sram_pj_per_bit(128, 256) < energy.sram_pj_per_bit(128, 8)
    # node rule: the 22 nm CACTI points within 10 %
    f = energy.node_factor(22)
    assert energy.sram_pj_per_bit(32, 64) * 64 * f == pytest.approx(5.29, rel=0.1)
    assert energy.sram_pj_per_bit(1024, 64) * 64 * f == pytest.approx(32.3, rel=0.1)
    assert energy.node_factor(45) == 1.0 and energy.node_factor(45, 0.45) == pytest.approx(0.25)
    # Horowitz: an 8x8 MAC = mult + 32-bit add; binary/SLT MACs are accumulates only
    assert energy.mac_pj("dense", 8, 8) == pytest.approx(0.3)
    assert energy.mac_pj("slt", 0, 8) == energy.INT32_ADD_PJ
    # the hash generator lands in the cited 0.06-0.6 pJ/bit range
    for dist in ("signed_constant", "uniform", "normal"):
        assert 0.06 <= energy.hash_unit_pj_per_step(dist) / 32 <= 0.6 * 2  # the normal ROM doubles it


def test_lstp_cells_trade_read_energy_for_leakage():
    assert energy.sram_leak_mw(1024, "lstp") == pytest.approx(0.32)
    assert energy.sram_pj_per_bit(1024, 64, "lstp") * 64 == pytest.approx(153.0)


def test_generator_energy_follows_its_kind_unless_given():
    h = config.load_design("hiddenite")
    f = energy.node_factor(h.node_nm, h.vdd)
    assert energy.EnergyTable.for_design(h).gen_pj_per_bit == pytest.approx(energy.hash_unit_pj_per_step() / 32 * f)
    lfsr = h.replace({"generator.kind": "lfsr", "generator.bits_per_step": 1})
    assert energy.EnergyTable.for_design(lfsr).gen_pj_per_bit == pytest.approx(energy.GEN_LFSR_PJ_PER_BIT * f)
    given = h.replace({"generator.pj_per_step": 3.2})
    assert energy.EnergyTable.for_design(given).gen_pj_per_bit == pytest.approx(3.2 / 32 * f)


def test_design_file_may_start_from_a_preset(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("base: hiddenite\nname: mine\narray: {rows: 32}\nsram: {weights: {kib: 512}}\n")
    d = config.load_design(f)
    h = config.load_design("hiddenite")
    assert d.name == "mine" and d.array.rows == 32 and d.array.cols == h.array.cols
    assert d.sram.weights.kib == 512 and d.sram.weights.banks == h.sram.weights.banks and d.is_slt
    g = tmp_path / "child.yaml"  # a base may itself be a file, relative to the including file
    g.write_text("base: mine.yaml\nname: child\nclock_mhz: 400\n")
    c = config.load_design(g)
    assert c.array.rows == 32 and c.clock_mhz == 400


@pytest.mark.parametrize("text, match", [
    ("base: nosuch\nname: x\n", r"base: design: 'nosuch' is neither a preset"),
    ("base: 3\n", "base: expected a preset name"),
    ("name: x\narray: {rows: [1\n", r"line \d+.*not valid YAML"),
    ("- a\n- b\n", "expected a mapping of design fields"),
    ("base: hiddenite\narray: {rows: -4}\n", "array.rows"),
    ("base: hiddenite\nsram: {weights: {kb: 4}}\n", "sram.weights.kb: unknown field"),
])
def test_bad_design_files_named(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(config.ConfigError, match=match):
        config.load_design(f)


def test_design_base_cycle_refused(tmp_path):
    f = tmp_path / "loop.yaml"
    f.write_text("base: loop.yaml\nname: x\n")
    with pytest.raises(config.ConfigError, match="includes itself"):
        config.load_design(f)


def test_generator_defaults_are_the_synthesis_report():
    # the simulator charges the synthesised unit (sim/data/generator_synthesis.json), per weight
    from slt_hw.sim import area, hardware_costs

    for dist, per_hash in (("signed_constant", 32), ("uniform", 2), ("normal", 2)):
        d = config.load_design("hiddenite").replace({"weights.dist": dist, "node_nm": 45, "vdd": 0.9})
        t = energy.EnergyTable.for_design(d)
        per_weight = hardware_costs.pj_per_weight(dist, "binary").value
        assert t.gen_pj_per_bit * 32 / per_hash == pytest.approx(per_weight)  # pJ per generated weight
        unit = hardware_costs.area_um2(dist, "binary").value
        assert area.area(d).generators * 1e6 == pytest.approx(d.generator.units * unit)
    rep = hardware_costs.report()
    assert rep["simulator_estimate"]["pj_per_hash"] == pytest.approx(energy.GEN_HASH_ESTIMATE_PJ_PER_STEP, rel=0.01)
