"""Design-space sweeps: a base design, a grid of dotted config fields, workloads; every point runs
in a local worker process; results as CSV plus a Pareto plot.

sweep.yaml:
  base: hiddenite                 # preset or YAML path
  workloads: [resnet18, mlp]      # zoo names or CSV paths
  mode: analytical                # or cycle
  grid: {array.rows: [16, 32, 64], generator.units: [1, 4]}
  designs: [dense-4k]             # optional extra fixed designs (baselines)
  out: sweep-out                  # directory for sweep.csv and pareto.png (relative to the file)
  workers: 2
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import report
from .config import ConfigError, Design, load_design, read_yaml
from .engine import simulate
from .workload import load_workload

_KEYS = {"base", "workloads", "mode", "grid", "designs", "out", "workers"}


def load_sweep(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep: {str(path)!r} is not an existing YAML file")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown sweep field (expected one of {sorted(_KEYS)})")
    for key in ("base", "workloads"):
        if key not in raw:
            raise ConfigError(f"{key}: required")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError("grid: expected a mapping of dotted fields to non-empty lists")
    if raw.get("mode", "analytical") not in ("analytical", "cycle"):
        raise ConfigError(f"mode: expected 'analytical' or 'cycle', got {raw['mode']!r}")
    workers = raw.get("workers", min(4, os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: expected an int >= 1, got {workers!r}")
    base = load_design(_rel(path, raw["base"]))
    designs = []
    for values in itertools.product(*grid.values()):
        upd = dict(zip(grid, values, strict=True))
        label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in upd.items()) or base.name
        designs.append(base.replace({**upd, "name": f"{base.name}[{label}]"}))
    designs += [load_design(_rel(path, d)) for d in raw.get("designs") or []]
    workloads = [str(_rel(path, w)) for w in raw["workloads"]]
    for w in workloads:
        load_workload(w)  # fail before starting workers
    return {"designs": designs, "workloads": workloads, "mode": raw.get("mode", "analytical"),
            "out": path.parent / raw.get("out", "sweep-out"), "workers": workers, "grid": grid}


def _rel(base: Path, spec: str) -> str | Path:
    p = base.parent / spec
    return p if p.exists() else spec


def _point(args: tuple[Design, str, str]) -> dict:
    d, wname, mode = args
    w = load_workload(wname)
    return report.summary(d, w, simulate(d, w, mode))


def run_sweep(spec: dict, progress: bool = True) -> list[dict]:
    from rich.progress import Progress

    jobs = [(d, w, spec["mode"]) for d in spec["designs"] for w in spec["workloads"]]
    rows: list[dict] = []
    with Progress(disable=not progress) as bar:
        task = bar.add_task("sweep", total=len(jobs))
        if spec["workers"] == 1:
            for j in jobs:
                rows.append(_point(j))
                bar.advance(task)
        else:
            with ProcessPoolExecutor(spec["workers"]) as ex:
                for r in ex.map(_point, jobs):
                    rows.append(r)
                    bar.advance(task)
    return rows


def write_outputs(spec: dict, rows: list[dict]) -> dict:
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    return {"csv": report.write_csv(rows, out / "sweep.csv"), "pareto": report.plot_pareto(rows, out / "pareto.png")}
