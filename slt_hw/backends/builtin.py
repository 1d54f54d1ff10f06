"""The built-in backends. Each one states, per device, why it cannot run (empty: it can).

The C++ backend is the fused CPU kernel (csrc/cpu/linear*.cpp): weights are regenerated in
registers and never materialised. The Triton backend (kernels/linear.py) and the CUDA backend
(csrc/cuda/linear.cu) do the same on the GPU: a GEMV for small batches, a tensor-core GEMM
for large ones.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .. import _ext
from ..contract import Dist, Key
from ..dispatch import Backend, register
from ..reference import masks as ref


def _finish(y: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.to(x.dtype)


# ---------------------------------------------------------------------- reference


def _ref_linear_planes(x, planes, coat_scales, bias, k0, k1, k, dist, scale, rows):
    w = ref.materialize_planes(Key(k0, k1), planes.shape[1], k, Dist.parse(dist), scale, planes, coat_scales)
    return _finish(F.linear(x.to(torch.float32), w[rows[0]:rows[1]]), x, bias)


def _ref_linear_frozen(x, free_bits, offsets, bias, k0, k1, fk0, fk1, k, dist, scale, prune, lock, rows):
    w = ref.materialize_frozen(Key(k0, k1), Key(fk0, fk1), offsets.shape[0], k, Dist.parse(dist), scale,
                               free_bits, prune, lock)
    return _finish(F.linear(x.to(torch.float32), w[rows[0]:rows[1]]), x, bias)


register(Backend(
    name="reference", priority=0,
    description="pure PyTorch: materialises the effective weight (the ground truth for every kernel)",
    not_supported_reasons=lambda device: [],
    ops={"linear_planes": _ref_linear_planes, "linear_frozen": _ref_linear_frozen},
))


# ---------------------------------------------------------------------- fused C++ CPU


def _cpp_reasons(device: torch.device) -> list[str]:
    if device.type != "cpu":
        return [f"runs on CPU tensors only, got {device.type}"]
    mod, why = _ext.load()
    return [why] if mod is None else []


def _cpp_linear_planes(x, planes, coat_scales, bias, k0, k1, k, dist, scale, rows):
    from . import cpu_native

    y = cpu_native.linear_planes(x, planes.contiguous(), coat_scales.contiguous(), bias, Key(k0, k1), k, dist, scale,
                                 rows=rows)
    return y.to(x.dtype)


def _cpp_linear_frozen(x, free_bits, offsets, bias, k0, k1, fk0, fk1, k, dist, scale, prune, lock, rows):
    from . import cpu_native

    y = cpu_native.linear_frozen(x, free_bits.contiguous(), offsets.contiguous(), bias, Key(k0, k1), Key(fk0, fk1),
                                 k, dist, scale, prune, lock, rows=rows)
    return y.to(x.dtype)


register(Backend(
    name="cpp", priority=20,
    description="slt_hw._C fused CPU kernel (AVX2/scalar, OpenMP): weights regenerated in registers",
    not_supported_reasons=_cpp_reasons,
    ops={"linear_planes": _cpp_linear_planes, "linear_frozen": _cpp_linear_frozen},
))


# ---------------------------------------------------------------------- Triton


def _triton_reasons(device: torch.device) -> list[str]:
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return [f"triton not importable ({e})"]
    if device.type == "cuda":
        return []
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return []
    return [f"needs CUDA tensors (or CPU tensors under TRITON_INTERPRET=1), got {device.type}"]


def _triton_linear_planes(x, planes, coat_scales, bias, k0, k1, k, dist, scale, rows):
    from slt_hw.kernels import linear

    return linear.linear_planes(x, planes, coat_scales, bias, Key(k0, k1), k, dist, scale, rows=rows)


def _triton_linear_frozen(x, free_bits, offsets, bias, k0, k1, fk0, fk1, k, dist, scale, prune, lock, rows):
    from slt_hw.kernels import linear

    return linear.linear_frozen(x, free_bits, offsets, bias, Key(k0, k1), Key(fk0, fk1), k, dist, scale, prune,
                                lock, rows=rows)


register(Backend(
    name="triton", priority=40,
    description="Triton fused slt_linear (kernels/linear.py): GEMV or tensor-core GEMM, weights made in registers",
    not_supported_reasons=_triton_reasons,
    ops={"linear_planes": _triton_linear_planes, "linear_frozen": _triton_linear_frozen},
    auto_devices=("cuda",),
))


# ---------------------------------------------------------------------- CUDA C++


def _cuda_reasons(device: torch.device) -> list[str]:
    why = [] if device.type == "cuda" else [f"runs on CUDA tensors only, got {device.type}"]
    mod, err = _ext.load()
    if mod is None:
        why.append(err)
    elif not mod.build_info().get("cuda_built", False):
        why.append("slt_hw._C was built without CUDA (needs nvcc and a CUDA-enabled torch at build time)")
    return why


def _cuda_linear_planes(x, planes, coat_scales, bias, k0, k1, k, dist, scale, rows):
    from . import cuda_native

    return cuda_native.linear_planes(x, planes, coat_scales, bias, Key(k0, k1), k, dist, scale, rows=rows)


def _cuda_linear_frozen(x, free_bits, offsets, bias, k0, k1, fk0, fk1, k, dist, scale, prune, lock, rows):
    from . import cuda_native

    return cuda_native.linear_frozen(x, free_bits, offsets, bias, Key(k0, k1), Key(fk0, fk1), k, dist, scale,
                                     prune, lock, rows=rows)


register(Backend(
    name="cuda", priority=30,
    description="CUDA C++ fused slt_linear in slt_hw._C (csrc/cuda/linear.cu): GEMV or WMMA GEMM",
    not_supported_reasons=_cuda_reasons,
    ops={"linear_planes": _cuda_linear_planes, "linear_frozen": _cuda_linear_frozen},
))
