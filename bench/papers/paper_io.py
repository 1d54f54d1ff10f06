"""Input/output helpers shared by the paper reproductions."""

from __future__ import annotations

import csv
from pathlib import Path


def write_csv(rows: list[dict], path: Path) -> Path:
    """rows (dicts with the same keys) as a CSV with a header; the folder is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def float_list(text: str) -> list[float]:
    """A comma-separated command-line list ("0.5,0.9") as floats; empty items are skipped."""
    return [float(v) for v in text.split(",") if v.strip()]
