"""Backend registry: which implementation runs an op on a given device, and why the others don't.

Two levels, as in the rest of the PyTorch ecosystem: the torch dispatcher routes a `slt_hw::`
op by device (slt_hw/_ops.py), then `select()` walks the backends registered here in priority
order. A backend is forced per call (`backend="cpp"`) or per process (`SLT_HW_BACKEND=cpp`); a
forced backend that cannot run raises with its reasons, an automatic choice never fails because
the reference backend runs everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

ENV_VAR = "SLT_HW_BACKEND"
AUTO = "auto"


@dataclass
class Backend:
    name: str
    priority: int  # higher wins
    description: str
    # device type -> reasons it cannot run there (empty = supported)
    not_supported_reasons: Callable[[torch.device], list[str]]
    ops: dict[str, Callable] = field(default_factory=dict)
    # device types where automatic selection may pick it (None: wherever it is supported)
    auto_devices: tuple[str, ...] | None = None


_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    _REGISTRY[backend.name] = backend
    return backend


def backends() -> list[Backend]:
    _load_builtin()
    return sorted(_REGISTRY.values(), key=lambda b: -b.priority)


def get(name: str) -> Backend:
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"backend: expected one of {[b.name for b in backends()] + [AUTO]}, got {name!r}")
    return _REGISTRY[name]


def reasons(device: torch.device | str, op: str | None = None) -> dict[str, list[str]]:
    """For each backend, why it cannot run `op` on `device` (empty list: it can)."""
    device = torch.device(device)
    out = {}
    for b in backends():
        why = list(b.not_supported_reasons(device))
        if op is not None and op not in b.ops:
            why.append(f"does not implement {op}")
        out[b.name] = why
    return out


def requested(backend: str | None) -> str:
    """The per-call choice, else the environment's, else automatic."""
    name = backend if backend not in (None, "", AUTO) else os.environ.get(ENV_VAR, AUTO) or AUTO
    if name != AUTO:
        get(name)  # validates the name
    return name


def select(op: str, device: torch.device, backend: str | None = None) -> Backend:
    name = requested(backend)
    if name != AUTO:
        b = get(name)
        why = list(b.not_supported_reasons(device)) + ([] if op in b.ops else [f"does not implement {op}"])
        if why:
            source = "backend argument" if backend not in (None, "", AUTO) else ENV_VAR
            raise RuntimeError(f"{source}: backend {name!r} cannot run {op} on {device.type}: {'; '.join(why)}")
        return b
    for b in backends():
        eligible = b.auto_devices is None or device.type in b.auto_devices
        if eligible and op in b.ops and not b.not_supported_reasons(device):
            return b
    raise RuntimeError(f"no backend implements {op} on {device.type}")  # reference covers all: a bug


def call(op: str, device: torch.device, backend: str | None, *args):
    return select(op, device, backend).ops[op](*args)


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from .backends import builtin  # noqa: F401  (registers on import)
