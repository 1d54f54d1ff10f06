"""Running a paper sweep's points (sources, widths) through slt_hw.executor: the --engine / --address /
--workers options, the results CSV rewritten as points finish (so --resume continues it), failed points
kept as rows with their error."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from slt_hw import executor
from slt_hw.csvio import FAILURE, PartialCSV


def add_engine_args(p: argparse.ArgumentParser, workers: str) -> None:
    p.add_argument("--engine", choices=executor.ENGINES, default="local",
                   help="local processes (default) or Ray tasks (pip install 'slt_hw[ray]')")
    p.add_argument("--address", default=None, help="with --engine ray: the Ray cluster (default: start one here)")
    p.add_argument("--workers", type=int, default=None, help=f"local processes or local Ray CPUs ({workers})")


def check_engine_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Usage errors exit with status 2 and one line, before any work."""
    if a.workers is not None and a.workers < 1:
        p.error(f"--workers: expected an int >= 1, got {a.workers}")
    try:
        executor.check_engine(a.engine, a.address)
    except executor.EngineError as e:  # one line, as the sim CLI: it says how to install Ray
        p.exit(2, f"{p.prog}: error: {e}\n")


def pending(tasks: list, rows: list[dict], task_keys: Callable[[tuple], list[tuple]],
            row_key: Callable[[dict], tuple]) -> list:
    """The tasks whose rows are not all in `rows` (a resumed CSV, its failed rows already left out)."""
    have = {row_key(r) for r in rows}
    return [t for t in tasks if not set(task_keys(t)) <= have]


def run_points(fn: Callable, tasks: list, a: argparse.Namespace, workers: int, csv_path: Path, kept: list[dict],
               failed_row: Callable[[tuple, str], dict], label: str) -> list[dict]:
    """kept + the rows of fn(task) for every task (fn returns a row or a list of rows); csv_path holds
    the rows done so far while the points run. A task that failed twice becomes failed_row(task, error)."""
    done: list[list[dict] | None] = [None] * len(tasks)
    partial = PartialCSV(csv_path)

    def finished(o: executor.Outcome) -> None:
        v = o.value if o.ok else failed_row(tasks[o.index], o.error)
        done[o.index] = v if isinstance(v, list) else [v]
        partial.update(lambda: kept + [r for rs in done if rs for r in rs])

    executor.run(fn, tasks, engine=a.engine, workers=workers, address=a.address, label=label, on_outcome=finished)
    return kept + [r for rs in done for r in rs]


def report_failures(rows: list[dict], csv_path: Path) -> int:
    """0, or 1 after naming the failed points (their rows are in the CSV; --resume runs them again)."""
    bad = [r for r in rows if r.get(FAILURE)]
    if not bad:
        return 0
    print(f"error: {len(bad)} points failed twice; their rows in {csv_path} carry the error (first: "
          f"{ {k: v for k, v in bad[0].items() if v != ''} }); --resume runs them again", flush=True)
    return 1
