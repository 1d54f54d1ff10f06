"""Run SCALE-Sim on the validation networks and commit what it reports (not a test dependency).

SCALE-Sim lives in a side virtual environment (its pinned versions: bench/scalesim-requirements.txt),
created on first use. Each network (sim/scalesim.py `topologies`: CIFAR ResNet-18 and Conv-6 as
conv layers, a GPT-2 block at 128 tokens as GEMMs) runs on 32×32 and 128×128 arrays, output- and
weight-stationary. Per layer we keep SCALE-Sim's compute cycles and its SRAM/DRAM access counts in
tests/golden/scalesim/<network>_<R>x<C>_<df>.csv, the topology it read in <network>.csv, and the
tool's version and wall time per run in meta.json; tests/test_sim_scalesim.py holds our
SCALE-Sim-compatible model to these files, and bench/bench_sim.py reads the wall times.

    .venv/bin/python bench/scalesim_reference.py                 # all networks (~25 min on 2 cores)
    .venv/bin/python bench/scalesim_reference.py --networks conv6-cifar --arrays 32
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from utils import cpu_model  # bench/ is the script's directory

from slt_hw.sim import scalesim

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "golden" / "scalesim"
VENV = ROOT / ".venv-scalesim"
REQS = Path(__file__).with_name("scalesim-requirements.txt")
COLUMNS = ("layer", "total_cycles", "stall_cycles", "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes",
           "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes")


def side_python(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"creating {venv} with {REQS.name}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-r", str(REQS)], check=True)
    return py


def version(py: Path) -> str:
    out = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('scalesim'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _read(path: Path) -> list[list[str]]:
    with path.open() as fh:
        return [[c.strip() for c in row if c.strip() != ""] for row in csv.reader(fh)][1:]


def run_one(py: Path, name: str, kind: str, topo: Path, rows: int, cols: int, df: str) -> tuple[list[dict], float]:
    """Run SCALE-Sim once; per-layer rows and the wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        cfg = t / "scale.cfg"
        cfg.write_text(scalesim.config_text(rows, cols, df))
        layout = t / "layout.csv"
        layout.write_text("Layer name, unused,\n")  # required by the CLI; custom layouts are off
        t0 = time.perf_counter()
        subprocess.run([str(py), "-m", "scalesim.scale", "-c", str(cfg), "-t", str(topo), "-l", str(layout),
                        "-p", str(t / "out"), "-i", kind, "-s", "N"], check=True, capture_output=True, cwd=t)
        wall = time.perf_counter() - t0
        run = t / "out" / f"{rows}x{cols}_{df}"
        comp = _read(run / "COMPUTE_REPORT.csv")
        det = _read(run / "DETAILED_ACCESS_REPORT.csv")
    names = [r[0].strip() for r in _read(topo)]
    out = []
    for layer, c, d in zip(names, comp, det, strict=True):
        f = [float(x) for x in d]
        out.append({"layer": layer, "total_cycles": int(float(c[2])), "stall_cycles": int(float(c[3])),
                    "ifmap_sram_reads": int(f[3]), "filter_sram_reads": int(f[6]), "ofmap_sram_writes": int(f[9]),
                    "ifmap_dram_reads": int(f[12]), "filter_dram_reads": int(f[15]), "ofmap_dram_writes": int(f[18])})
    return out, wall


def main() -> None:
    nets = scalesim.topologies()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--networks", default=",".join(nets), help=f"comma-separated subset of {list(nets)}")
    ap.add_argument("--arrays", default="32,128", help="square array sizes (default 32,128)")
    ap.add_argument("--dataflows", default="os,ws")
    ap.add_argument("--venv", type=Path, default=VENV, help=f"side environment for SCALE-Sim (default {VENV.name})")
    args = ap.parse_args()
    py = side_python(args.venv)
    OUT.mkdir(parents=True, exist_ok=True)
    meta_path = OUT / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"runs": {}}
    meta.update({"scalesim": version(py), "python": platform.python_version(), "cpu": cpu_model(),
                 "config": "sim/scalesim.py config_text (CALC bandwidth, 6 MiB ifmap and filter SRAM, "
                           "2 MiB ofmap SRAM)", "command": "python bench/scalesim_reference.py"})
    for name in args.networks.split(","):
        if name not in nets:
            raise SystemExit(f"--networks: {name!r} is not one of {list(nets)}")
        kind, text = nets[name]
        topo = OUT / f"{name}.csv"
        topo.write_text(text)
        for a in (int(x) for x in args.arrays.split(",")):
            for df in args.dataflows.split(","):
                rows, wall = run_one(py, name, kind, topo, a, a, df)
                path = OUT / f"{name}_{a}x{a}_{df}.csv"
                with path.open("w", newline="") as fh:
                    wr = csv.DictWriter(fh, fieldnames=COLUMNS)
                    wr.writeheader()
                    wr.writerows(rows)
                meta["runs"][path.stem] = {"layers": len(rows), "wall_s": round(wall, 2),
                                           "total_cycles": sum(r["total_cycles"] for r in rows)}
                meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
                print(f"{path.relative_to(ROOT)}: {len(rows)} layers, {wall:.1f} s", flush=True)


if __name__ == "__main__":
    main()
