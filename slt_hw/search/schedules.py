"""Sparsity schedules: step -> sparsity (fraction removed)."""

from __future__ import annotations

from dataclasses import dataclass

from .threshold import check_sparsity


@dataclass(frozen=True)
class constant:
    sparsity: float

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)

    def __call__(self, step: int) -> float:
        return self.sparsity


@dataclass(frozen=True)
class linear_ramp:
    """From `start` at step 0 to `end` at `ramp_steps`, then constant (UGT's gradual sparsity)."""

    start: float
    end: float
    ramp_steps: int

    def __post_init__(self) -> None:
        check_sparsity(self.start, "start")
        check_sparsity(self.end, "end")
        if isinstance(self.ramp_steps, bool) or not isinstance(self.ramp_steps, int) or self.ramp_steps < 1:
            raise ValueError(f"ramp_steps: expected an int >= 1, got {self.ramp_steps!r}")

    def __call__(self, step: int) -> float:
        t = min(max(step, 0), self.ramp_steps) / self.ramp_steps
        return self.start + (self.end - self.start) * t
