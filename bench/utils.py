"""Shared benchmark plumbing: median timing, a printed table, CSV next to it."""

from __future__ import annotations

import csv
import os
import pathlib
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch

RESULTS = pathlib.Path(__file__).parent / "results"


def dynamic_int8_linear(weight: torch.Tensor) -> torch.nn.Module:
    """torch's dynamically quantized int8 linear (fbgemm) of a float32 (out, in) weight, no bias:
    the peer a user would pick for an int8 linear on the CPU."""
    lin = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    lin.weight.data.copy_(weight)
    with warnings.catch_warnings():  # torch deprecates its quantized tensors; still the baseline asked for
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)


def median_seconds(fn: Callable[[], object], repeat: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_times(fns: dict[str, Callable[[], object]], rounds: int = 9, per_round: int = 3,
                      warmup: int = 2, clock: Callable[[], float] = time.perf_counter,
                      stat: str = "median") -> dict[str, float]:
    """Seconds per function (the median of its calls, or with stat="min" the fastest), timed
    round-robin so every function sees the same machine.

    On a shared VM the speed drifts by tens of percent over seconds; timing A fully and then B
    would turn that drift into a fake ratio. clock=time.process_time counts this process's CPU
    time instead (all its threads): with one thread, immune to other processes taking the CPU.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(per_round):
                t0 = clock()
                fn()
                samples[name].append(clock() - t0)
    pick = {"median": statistics.median, "min": min}[stat]
    return {name: pick(ts) for name, ts in samples.items()}


def with_env(name: str, value: str, fn: Callable[..., object]) -> Callable[..., object]:
    """fn with the environment variable `name` set to `value` for the call (for switches a
    backend reads per call, e.g. SLT_HW_CPU_LUT, SLT_HW_CPU_CONV), restored after."""
    def call(*args):
        old = os.environ.get(name)
        os.environ[name] = value
        try:
            return fn(*args)
        finally:
            if old is None:
                del os.environ[name]
            else:
                os.environ[name] = old
    return call


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), to print beside every figure."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return f"{cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def report(name: str, rows: list[dict], columns: list[str]) -> pathlib.Path:
    """Print rows as a table and write them to bench/results/<name>.csv."""
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print(f"# {name} on {machine()}")
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) for c in columns))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")
    return path
