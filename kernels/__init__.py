"""Triton kernels (installed as slt_hw.kernels; importing this needs triton).

`contract` holds the `@triton.jit` helpers of the weight-generation contract that every kernel
calls; `materialize` builds dense W0 / freeze states / effective weights from them.
Set TRITON_INTERPRET=1 before importing this package to run the kernels on CPU tensors.
"""

# Relative imports are the rule here; the ruff ban on `kernels` targets top-level imports of it.
from . import contract
from .materialize import (
    freeze_states,
    generate_weights,
    materialize_frozen,
    materialize_planes,
)

__all__ = ["contract", "freeze_states", "generate_weights", "materialize_frozen", "materialize_planes"]
