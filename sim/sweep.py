"""Design-space sweeps: a base design, a grid of dotted config fields, workloads; every point runs
in a local worker process or as a Ray task (slt_hw.executor); results as CSV plus a Pareto plot.
The CSV is rewritten as points finish, so an interrupted sweep continues with --resume.

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
from pathlib import Path

from .. import executor
from ..csvio import FAILURE, PartialCSV, read_rows, write_rows
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
    names = [load_workload(w).name for w in workloads]  # fail before starting workers
    return {"designs": designs, "workloads": workloads, "workload_names": names, "mode": raw.get("mode", "analytical"),
            "out": path.parent / raw.get("out", "sweep-out"), "workers": workers, "grid": grid}


def _rel(base: Path, spec: str) -> str | Path:
    p = base.parent / spec
    return p if p.exists() else spec


def _point(args: tuple[Design, str, str]) -> dict:
    d, wname, mode = args
    w = load_workload(wname)
    return report.summary(d, w, simulate(d, w, mode))


def run_sweep(spec: dict, progress: bool = True, engine: str = "local", address: str | None = None,
              resume: bool = False) -> list[dict]:
    """One row per (design, workload), in that order whatever the engine; a point that failed twice
    is a row with its error in the `failure` column. With `resume`, the points already in
    out/sweep.csv (without a failure) are kept and only the others run."""
    jobs = [(d, w, spec["mode"]) for d in spec["designs"] for w in spec["workloads"]]
    names = dict(zip(spec["workloads"], spec.get("workload_names") or spec["workloads"], strict=True))
    keys = [(d.name, names[w], m) for d, w, m in jobs]
    path = Path(spec["out"]) / "sweep.csv"
    rows: list[dict | None] = _resumed(path, keys) if resume and path.exists() else [None] * len(jobs)
    todo = [i for i, r in enumerate(rows) if r is None]
    partial = PartialCSV(path)

    def finished(o: executor.Outcome) -> None:
        i = todo[o.index]
        failed = {**dict(zip(("design", "workload", "mode"), keys[i], strict=True)), FAILURE: o.error}
        rows[i] = o.value if o.ok else failed
        partial.update(lambda: [r for r in rows if r is not None])

    executor.run(_point, [jobs[i] for i in todo], engine=engine, workers=spec["workers"], address=address,
                 progress=progress, label="sweep", on_outcome=finished)
    return rows  # type: ignore[return-value]


def _resumed(path: Path, keys: list[tuple]) -> list[dict | None]:
    """The rows of a partial sweep.csv matched to this sweep's points; failed rows run again."""
    by_key: dict[tuple, list[dict]] = {}
    for r in read_rows(path):
        if not r.pop(FAILURE, None):
            by_key.setdefault((r["design"], r["workload"], r["mode"]), []).append(r)
    rows = [by_key[k].pop(0) if by_key.get(k) else None for k in keys]
    extra = [k for k, rs in by_key.items() for _ in rs]
    if extra:
        raise ConfigError(f"--resume: {path} has {len(extra)} rows that are not points of this sweep (first: "
                          f"{extra[0][0]} on {extra[0][1]}, {extra[0][2]}); run without --resume to start over")
    return rows


def failures(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get(FAILURE)]


def write_outputs(spec: dict, rows: list[dict]) -> dict:
    out = Path(spec["out"])
    files = {"csv": write_rows(rows, out / "sweep.csv")}
    ok = [r for r in rows if not r.get(FAILURE)]
    if ok:
        files["pareto"] = report.plot_pareto(ok, out / "pareto.png")
    return files
