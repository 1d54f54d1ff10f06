"""The progress bar of `find`: epoch, loss, accuracy, steps, time elapsed and left (rich)."""

from __future__ import annotations

import contextlib

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class _Bar:
    def __init__(self, progress: Progress, task, label: str, disabled: bool):
        self.progress, self.task, self.label, self.disabled = progress, task, label, disabled

    def step(self, epoch: int, epochs: int, loss: float, acc: float | None) -> None:
        if self.disabled:
            return
        text = f"{self.label}  epoch {epoch + 1}/{epochs}  loss {loss:.4f}"
        text += "" if acc is None else f"  acc {acc:.3f}"
        self.progress.update(self.task, advance=1, description=text)

    def epoch_done(self, row: dict, metric: str) -> None:
        if not self.disabled:  # a line per epoch above the bar (and in logs, where the bar is not drawn)
            self.progress.console.print(format_row(row), highlight=False)


def format_row(row: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {'-' if v is None else v}"
                     for k, v in row.items())


@contextlib.contextmanager
def find_progress(console, disabled: bool, total: int, completed: int, label: str):
    with Progress(TextColumn("[bold]find[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
                  disable=disabled, transient=False) as progress:
        task = progress.add_task(label, total=total, completed=completed)
        yield _Bar(progress, task, label, disabled)
