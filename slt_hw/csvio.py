"""Sweep results as CSV: written atomically (a crash leaves the previous file, never half of one), the
header the union of the rows' keys (a failed point's row has fewer columns), read back typed for --resume."""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

from ._io import atomic_write

FAILURE = "failure"  # the column a failed point's row carries its error in


def write_rows(rows: list[dict], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys, restval="")
    w.writeheader()
    w.writerows(rows)
    return atomic_write(path, buf.getvalue().encode())


def _typed(text: str):
    """int or float where writing the number back gives the same text (so a resumed CSV is
    byte-identical), else the text."""
    for cast in (int, float):
        try:
            v = cast(text)
        except ValueError:
            continue
        return v if str(v) == text else text
    return text


def read_rows(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: _typed(v) for k, v in r.items()} for r in csv.DictReader(f)]


class PartialCSV:
    """The rows done so far, rewritten at most every `every_s` seconds while a sweep runs, so an
    interrupted sweep can --resume; `rows` is only called when a write is due."""

    def __init__(self, path: str | os.PathLike, every_s: float = 2.0):
        self.path, self.every_s, self.last = Path(path), every_s, 0.0

    def update(self, rows: Callable[[], list[dict]], force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every_s:
            write_rows(rows(), self.path)
            self.last = now
