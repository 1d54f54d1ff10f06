"""Run the emitted Verilog testbench of every distribution and format under Icarus Verilog and
Verilator, where installed (Debian: apt-get install iverilog verilator). Not a test: it prints a
table and exits non-zero if a testbench fails.

    .venv/bin/python bench/rtl_verilog.py [--units 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from slt_hw.cli import main as slt_hw_main

TB, TOP = "tb_slt_weight_gen.v", "slt_weight_gen.v"


def icarus(d: Path) -> list[str]:
    subprocess.run(["iverilog", "-g2012", "-o", str(d / "tb"), str(d / TB), str(d / TOP)], check=True,
                   capture_output=True)
    return ["vvp", "-n", str(d / "tb")]


def verilator(d: Path) -> list[str]:
    subprocess.run(["verilator", "--binary", "--timing", "-Wno-fatal", "--top-module", "tb", "-Mdir", str(d / "obj"),
                    str(d / TB), str(d / TOP)], check=True, capture_output=True)
    return [str(d / "obj" / "Vtb")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", default="2")
    args = ap.parse_args()
    sims = [(name, fn) for name, fn in (("iverilog", icarus), ("verilator", verilator)) if shutil.which(name)]
    if not sims:
        print("neither iverilog nor verilator is installed: apt-get install iverilog verilator")
        return 0
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for dist in ("signed_constant", "uniform", "normal"):
            for fmt in ("binary", "multicoat", "frozen"):
                d = Path(tmp) / f"{dist}-{fmt}"
                if slt_hw_main(["rtl", "--dist", dist, "--format", fmt, "--units", args.units, "--out", str(d)]):
                    return 1
                for name, build in sims:
                    t0 = time.time()
                    try:
                        run = subprocess.run(build(d), capture_output=True, text=True, timeout=600)
                        line = next((x for x in run.stdout.splitlines() if x.startswith(("PASS", "FAIL"))), "no result")
                        ok = run.returncode == 0 and line.startswith("PASS")
                    except subprocess.CalledProcessError as e:
                        ok, line = False, f"build failed: {(e.stderr or b'').decode()[-300:]}"
                    failed += not ok
                    print(f"{dist:16s} {fmt:10s} {name:10s} {time.time() - t0:6.1f} s  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
