"""Triton kernels (installed as slt_hw.kernels; importing this needs triton).

`contract` holds the `@triton.jit` helpers of the weight-generation contract that every kernel
calls; `materialize` builds dense W0 / freeze states / effective weights from them; `linear` is
the fused slt_linear (GEMV and tensor-core GEMM) that never materialises them, `linear_grouped`
several of them on one input in one launch, `attention` flash attention. The triton backend
(slt_hw/backends/triton.py) registers them as the ops' implementations.
Set TRITON_INTERPRET=1 before importing this package to run the kernels on CPU tensors.
"""

# Relative imports are the rule here; the ruff ban on `kernels` targets top-level imports of it.
from . import attention, contract, linear, linear_grouped
from .attention import flash_attention
from .linear import linear_frozen, linear_planes
from .materialize import (
    freeze_states,
    generate_weights,
    materialize_frozen,
    materialize_planes,
)

__all__ = ["attention", "contract", "flash_attention", "freeze_states", "generate_weights", "linear", "linear_frozen",
           "linear_grouped", "linear_planes", "materialize_frozen", "materialize_planes"]
