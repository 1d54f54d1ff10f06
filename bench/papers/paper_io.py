"""Input/output helpers shared by the paper reproductions."""

from __future__ import annotations

from pathlib import Path

from slt_hw.csvio import write_rows


def write_csv(rows: list[dict], path: Path) -> Path:
    """rows as a CSV with a header (the union of their keys), written atomically; the folder is created."""
    return write_rows(rows, path)


def float_list(text: str) -> list[float]:
    """A comma-separated command-line list ("0.5,0.9") as floats; empty items are skipped."""
    return [float(v) for v in text.split(",") if v.strip()]
