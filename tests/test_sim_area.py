"""Area model: the cited points reproduce, the node rule, PE and generator areas, iso-area designs."""

from __future__ import annotations

import pytest

from slt_hw.sim import area, config, engine, workload


def test_sram_area_reproduces_cacti_and_scales_with_node():
    for kib, mm2 in area.SRAM_AREA_45NM:
        assert area.sram_mm2(kib) == pytest.approx(mm2)
    # CACTI 7 at 22 nm: 32 KB 0.060 mm², 1 MB 1.76 mm² (the node rule within 10 %)
    assert area.sram_mm2(32, 22) == pytest.approx(0.060, rel=0.10)
    assert area.sram_mm2(1024, 22) == pytest.approx(1.76, rel=0.10)
    assert area.sram_mm2(100) < area.sram_mm2(200) < area.sram_mm2(400)


def test_pe_area_by_operand_widths():
    dense8 = area.pe_um2("dense", 8, 8, 32)
    assert dense8 == pytest.approx(area.MULT8_UM2 + area.ADD32_UM2 + area.DFF_UM2 * 48)
    assert area.pe_um2("dense", 4, 8, 32) < dense8 < area.pe_um2("dense", 16, 8, 32)
    # no multiplier for ±σ weights: an SLT / binary PE is about half a dense 8-bit one
    assert 0.4 < area.pe_um2("slt", 0, 8, 32) / dense8 < 0.65
    assert area.pe_um2("binary", 1, 8, 32) < area.pe_um2("ternary", 2, 8, 32)


def test_design_area_adds_up_and_slt_saves_pe_area():
    h, dense = config.load_design("hiddenite"), config.load_design("dense-4k")
    a = area.area(h)
    assert a.total == pytest.approx(a.pes + a.activations + a.weights + a.outputs + a.generators)
    assert a.generators > 0 and area.area(dense).generators == 0
    assert a.sram == pytest.approx(area.area(dense).sram)  # equal SRAM budget
    assert a.pes < area.area(dense).pes


@pytest.mark.parametrize("spend", ["pes", "activations"])
def test_at_area_meets_the_target_and_keeps_supply(spend):
    h, dense = config.load_design("hiddenite"), config.load_design("dense-4k")
    target = area.area(dense).total
    g = area.at_area(h, target, spend)
    assert target * 0.97 <= area.area(g).total <= target
    if spend == "pes":
        assert g.array.rows == g.array.cols > h.array.rows  # aspect kept, array grown
        # ports and generators grew with the array: no operand starves
        from slt_hw.sim.report import supply_rows

        assert min(r["ratio"] for r in supply_rows(g)) >= min(r["ratio"] for r in supply_rows(h)) * 0.95
    else:
        assert g.sram.activations.kib > h.sram.activations.kib and g.array == h.array
    r = engine.simulate(g, workload.ZOO["mlp"]())
    assert r.cycles > 0


def test_at_area_bad_targets_named():
    h = config.load_design("hiddenite")
    with pytest.raises(ValueError, match="target_mm2"):
        area.at_area(h, 0.5)
    with pytest.raises(ValueError, match="target_mm2"):
        area.at_area(h, -1)
    with pytest.raises(ValueError, match="spend"):
        area.at_area(h, 10, "wires")
