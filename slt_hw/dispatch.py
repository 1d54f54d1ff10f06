"""Backend registry: which implementation runs an op on a given device, and why the others don't.

Every packed-weight op (`OPS`; schemas in slt_hw/_ops.py) is implemented by the backends that
register it: one module per backend in slt_hw/backends/, imported by slt_hw/backends/__init__.py.
This module imports none of them. A backend implements an op or says why it does not
(`Backend.lacks`), so `slt-hw info` can show both.

`select()` takes the backend named per call (`backend="cpp"`) or per process
(`SLT_HW_BACKEND=cpp`); a forced backend that cannot run raises with its reasons. Otherwise it
walks the backends in priority order and takes the first that implements the op and runs on the
device; the reference backend implements every op and runs everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

ENV_VAR = "SLT_HW_BACKEND"
AUTO = "auto"

OPS = (
    "linear_planes", "linear_frozen",  # y = x W_effᵀ + b, per mask format
    "linear_int8_planes", "linear_int8_frozen",  # the same with per-token int8 activations
    "materialize_planes", "materialize_frozen",  # W_eff as a dense float32 tensor
    "conv2d_planes", "conv2d_frozen",  # 2-D convolution (im2col + the backend's linear)
    "conv2d_int8_planes", "conv2d_int8_frozen",  # the same with int8 activations (per output pixel's patch)
    "attention",  # softmax(q kᵀ s + masks) v on projected heads (slt_mha)
    "linear_grouped",  # several projections of one input in one launch (slt_mha; not a torch op)
)


@dataclass
class Backend:
    name: str
    priority: int  # higher wins
    description: str | Callable[[], str]  # a callable when it depends on the machine
    # device -> reasons it cannot run there (empty = supported)
    not_supported_reasons: Callable[[torch.device], list[str]]
    ops: dict[str, Callable]
    lacks: dict[str, str] = field(default_factory=dict)  # op -> why this backend does not implement it
    # device types where automatic selection may pick it (None: wherever it is supported)
    auto_devices: tuple[str, ...] | None = None

    def describe(self) -> str:
        return self.description() if callable(self.description) else self.description

    def why_not(self, op: str | None, device: torch.device) -> list[str]:
        why = list(self.not_supported_reasons(device))
        if op is not None and op not in self.ops:  # (an op no backend knows: no reason to give, no KeyError)
            why.append(f"does not implement {op}" + (f": {self.lacks[op]}" if op in self.lacks else ""))
        return why


_REGISTRY: dict[str, Backend] = {}
_ORDER: list[Backend] = []
# (op, device) -> automatic choice. Reasons depend on the machine and the build, not on the
# call, so the walk runs once per op and device (a few µs a call otherwise); register() resets.
_AUTO: dict[tuple[str, torch.device], Backend | None] = {}
_GENERATION = [0]  # register() counts up: a choice remembered beyond one call (a prepared call) checks it


def generation() -> int:
    """How many times the registry has changed: a remembered choice of backend holds while it stays."""
    return _GENERATION[0]


def register(backend: Backend) -> Backend:
    unexplained = [op for op in OPS if op not in backend.ops and op not in backend.lacks]
    unknown = sorted(set(backend.ops) - set(OPS))
    if unexplained or unknown:
        raise ValueError(f"backend {backend.name!r}: every op in dispatch.OPS is implemented or in `lacks` "
                         f"with a reason; unexplained {unexplained}, unknown {unknown}")
    _REGISTRY[backend.name] = backend
    _ORDER[:] = sorted(_REGISTRY.values(), key=lambda b: -b.priority)
    _AUTO.clear()
    _GENERATION[0] += 1
    return backend


def backends() -> list[Backend]:
    return list(_ORDER)


def get(name: str) -> Backend:
    if name not in _REGISTRY:
        raise ValueError(f"backend: expected one of {[b.name for b in _ORDER] + [AUTO]}, got {name!r}")
    return _REGISTRY[name]


def reasons(device: torch.device | str, op: str | None = None) -> dict[str, list[str]]:
    """For each backend, why it cannot run `op` (or anything, for op=None) on `device` (empty list: it can)."""
    device = torch.device(device)
    return {b.name: b.why_not(op, device) for b in _ORDER}


def requested(backend: str | None) -> str:
    """The per-call choice, else the environment's, else automatic."""
    name = backend if backend not in (None, "", AUTO) else os.environ.get(ENV_VAR, AUTO) or AUTO
    if name != AUTO:
        get(name)  # validates the name
    return name


def automatic(op: str, device: torch.device) -> Backend | None:
    """The highest-priority backend that implements `op` and runs on `device` unforced, if any."""
    key = (op, device)
    if key not in _AUTO:
        _AUTO[key] = next((b for b in _ORDER if (b.auto_devices is None or device.type in b.auto_devices)
                           and op in b.ops and not b.not_supported_reasons(device)), None)
    return _AUTO[key]


def select(op: str, device: torch.device, backend: str | None = None) -> Backend:
    name = requested(backend)
    if name == AUTO:
        b = automatic(op, device)
        if b is None:
            raise RuntimeError(f"no backend implements {op} on {device.type}")
        return b
    b = _REGISTRY[name]
    why = b.why_not(op, device)
    if why:
        source = "backend argument" if backend not in (None, "", AUTO) else ENV_VAR
        raise RuntimeError(f"{source}: backend {name!r} cannot run {op} on {device.type}: {'; '.join(why)}")
    return b


def find(op: str, device: torch.device, backend: str | None = None) -> Backend | None:
    """select()'s choice for an op a caller can do without ("linear_grouped"): None where the
    chosen backend does not implement it, or nothing does."""
    name = requested(backend)
    if name == AUTO:
        return automatic(op, device)
    b = _REGISTRY[name]
    return None if b.why_not(op, device) else b


def call(op: str, device: torch.device, backend: str | None, *args):
    return select(op, device, backend).ops[op](*args)
