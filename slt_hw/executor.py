"""Independent points (sweep design points, paper-sweep sources) on a local process pool or on Ray.

One interface for both: `run(fn, items, engine=...)` returns one Outcome per item, in item order,
whatever order the points finish in. A point that raises is run once more; if it fails again its
Outcome carries the error instead of a value, so the caller writes it down (never drops it).
Ray is an optional extra; without it `--engine ray` fails with one line saying how to install it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

ENGINES = ("local", "ray")
RAY_MISSING = "--engine ray needs Ray, an optional extra: pip install 'slt_hw[ray]'"
ATTEMPTS = 2  # a failed point is retried once


class EngineError(ValueError):
    """A usage error about the engine options (the CLIs print it as one line, exit status 2)."""


@dataclass
class Outcome:
    index: int
    value: Any = None
    error: str | None = None  # "ExceptionType: message" of the last attempt

    @property
    def ok(self) -> bool:
        return self.error is None


def check_engine(engine: str, address: str | None) -> None:
    """Fail early, before any work, on a bad engine choice or a missing Ray."""
    if engine not in ENGINES:
        raise EngineError(f"--engine: expected one of {ENGINES}, got {engine!r}")
    if address and engine != "ray":
        raise EngineError("--address: only with --engine ray")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise EngineError(RAY_MISSING) from None


def run(fn: Callable[[Any], Any], items: Sequence, *, engine: str = "local", workers: int = 1,
        address: str | None = None, progress: bool = True, label: str = "points",
        on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """fn(item) for every item on `engine`; Outcomes in item order. `on_outcome` sees each one as it
    finishes (in the calling process), for partial CSVs and logs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    check_engine(engine, address)
    if not items:  # e.g. a resumed sweep with nothing left: don't start an engine
        return []
    outcomes: list[Outcome | None] = [None] * len(items)
    failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not progress) as bar:
        task = bar.add_task(f"{label} ({engine})", total=len(items))
        stream = _ray(fn, items, workers, address) if engine == "ray" else _local(fn, items, workers)
        for o in stream:
            outcomes[o.index] = o
            failed += not o.ok
            if on_outcome is not None:
                on_outcome(o)
            bar.update(task, advance=1, description=f"{label} ({engine})" + (f", {failed} failed" if failed else ""))
    return outcomes  # type: ignore[return-value]


def _error(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


# ------------------------------------------------------------------ local processes

_FN: Callable | None = None  # the point function, installed once per pool worker


def _install(fn: Callable) -> None:
    global _FN
    _FN = fn


def _call(item):
    return _FN(item)


def _local(fn: Callable, items: Sequence, workers: int) -> Iterator[Outcome]:
    if workers <= 1 or len(items) <= 1:  # in this process: no pickling, the simplest traceback
        for i, item in enumerate(items):
            for attempt in range(ATTEMPTS):
                try:
                    yield Outcome(i, fn(item))
                    break
                except Exception as e:
                    if attempt == ATTEMPTS - 1:
                        yield Outcome(i, error=_error(e))
        return
    tries = [0] * len(items)
    pending = list(range(len(items)))
    while pending:  # one pass per pool: a worker that dies breaks the pool, the rest go to a new one
        with ProcessPoolExecutor(min(workers, len(pending)), initializer=_install, initargs=(fn,)) as ex:
            futures = {}
            for i in pending:
                tries[i] += 1
                futures[ex.submit(_call, items[i])] = i
            pending = []
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for f in done:
                    i = futures.pop(f)
                    e = f.exception()
                    if e is None:
                        yield Outcome(i, f.result())
                    elif tries[i] >= ATTEMPTS:
                        yield Outcome(i, error=_error(e) if not isinstance(e, BrokenProcessPool)
                                      else "BrokenProcessPool: a worker process died")
                    elif isinstance(e, BrokenProcessPool):
                        pending.append(i)
                    else:
                        tries[i] += 1
                        futures[ex.submit(_call, items[i])] = i
        pending.sort()


# ------------------------------------------------------------------ Ray


@contextlib.contextmanager
def ray_session(address: str | None, workers: int):
    """Connect to the cluster at `address`, or start a local instance of `workers` CPUs and shut it
    down at the end; an already initialised Ray (a test fixture, a notebook) is used and left as is."""
    try:
        import ray
    except ImportError:
        raise EngineError(RAY_MISSING) from None
    started = not ray.is_initialized()
    if started:
        kw = {"include_dashboard": False, "logging_level": "WARNING"}
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=max(1, workers), **kw)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _ray_call(fn, item):
    return fn(item)


def _ray(fn: Callable, items: Sequence, workers: int, address: str | None) -> Iterator[Outcome]:
    with ray_session(address, workers) as ray:
        # Ray does the retry: application errors (retry_exceptions) and lost workers (max_retries)
        remote = ray.remote(_ray_call).options(num_cpus=1, max_retries=ATTEMPTS - 1, retry_exceptions=True)
        fn_ref = ray.put(fn)  # shipped once, not with every point
        index = {remote.remote(fn_ref, item): i for i, item in enumerate(items)}
        pending = list(index)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=min(len(pending), 64), timeout=0.5)
                for ref in done:
                    try:
                        yield Outcome(index[ref], ray.get(ref))
                    except ray.exceptions.RayTaskError as e:
                        yield Outcome(index[ref], error=_error(e.cause if e.cause is not None else e))
                    except ray.exceptions.RayError as e:  # a worker or node lost twice
                        yield Outcome(index[ref], error=_error(e))
        finally:
            for ref in pending:  # interrupted: don't leave points running on a shared cluster
                ray.cancel(ref, force=True)

