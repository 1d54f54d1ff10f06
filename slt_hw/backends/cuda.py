"""The cuda backend: the CUDA kernels of slt_hw._C (csrc/cuda/), present when the extension was
built with CUDA (`_C.build_info()["cuda_built"]`). slt_linear is linear.cu (GEMV or WMMA GEMM,
weights regenerated in the kernel), materialise is generate.cu; convolutions are im2col over
that linear, attention is torch's SDPA.

Functions take an op's arguments as slt_hw._ops checked them; the launchers re-check the
contract. Launches go on torch's current stream, so they order with the surrounding torch work.
"""

from __future__ import annotations

import functools

import torch

from .. import _ext
from ..dispatch import Backend, register
from . import composite

ACTIVATIONS = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}  # slt::cuda::Activation
PATHS = {None: 0, "gemv": 1, "gemm": 2}
GEMV_MAX_BATCH = 8


_NOT_BUILT = "slt_hw._C was built without CUDA (needs nvcc and a CUDA-enabled torch at build time)"


@functools.cache
def _cuda_built() -> bool:
    mod = _ext.native()
    return mod is not None and mod.build_info().get("cuda_built", False)


def _module():
    mod = _ext.require()
    if not _cuda_built():
        raise RuntimeError(_NOT_BUILT)
    return mod


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def linear(x, bias, *rest, path: str | None = None, split_k: int | None = None) -> torch.Tensor:
    """y = x W_eff[row_begin:row_end]ᵀ + bias in x's dtype (rest: the weight block, row_begin,
    row_end). path: force "gemv" or "gemm" (default by batch); split_k: GEMV K splits (default:
    enough to fill the GPU)."""
    if path not in PATHS:
        raise ValueError(f"path: expected None, 'gemv' or 'gemm', got {path!r}")
    if split_k is not None and split_k < 1:
        raise ValueError(f"split_k: expected >= 1, got {split_k}")
    mod = _module()
    *w, r0, r1 = rest
    desc, _alive = _ext.weight_desc(mod, w)  # the tensors behind desc's pointers
    k = desc.k
    x2 = x.reshape(-1, k).contiguous()
    if path == "gemv" and x2.shape[0] > GEMV_MAX_BATCH:
        raise ValueError(f"path: the GEMV path takes at most {GEMV_MAX_BATCH} activation rows, got {x2.shape[0]}")
    out = torch.empty(x2.shape[0], r1 - r0, dtype=torch.float32, device=x.device)
    b = None if bias is None else bias.to(torch.float32).contiguous()
    mod.cuda_linear(desc, x2.data_ptr(), ACTIVATIONS[x2.dtype], x2.shape[0], k, out.data_ptr(),
                    0 if b is None else b.data_ptr(), r0, r1, PATHS[path], split_k or 0, _stream(x.device))
    return out.to(x.dtype).reshape(*x.shape[:-1], r1 - r0)


def materialize(*args) -> torch.Tensor:
    mod = _module()
    *w, r0, r1 = args
    desc, _alive = _ext.weight_desc(mod, w)
    out = torch.empty(r1 - r0, desc.k, dtype=torch.float32, device=w[0].device)
    flag = torch.zeros(1, dtype=torch.int32, device=out.device)  # set by a free weight outside the stream
    mod.cuda_materialize(out.data_ptr(), desc, r0, r1, flag.data_ptr(), _stream(out.device))
    if desc.frozen and flag.item():
        raise ValueError("free_bits/offsets: a free weight's stream index is past the end of free_bits (offsets "
                         "do not match the freeze key/thresholds, or the stream is short)")
    return out


def _reasons(device: torch.device) -> list[str]:
    why = [] if device.type == "cuda" else [f"runs on CUDA tensors only, got {device.type}"]
    mod, err = _ext.load()
    if mod is None:
        why.append(err)
    elif not _cuda_built():
        why.append(_NOT_BUILT)
    return why


_NO_INT8 = "no int8 CUDA kernel (the int8 path is the CPU kernel's)"

register(Backend(
    name="cuda", priority=30,
    description="CUDA C++ fused slt_linear in slt_hw._C (csrc/cuda/linear.cu): GEMV or WMMA GEMM",
    not_supported_reasons=_reasons,
    ops={**composite.linear_ops(linear), "materialize_planes": materialize, "materialize_frozen": materialize},
    lacks={"linear_int8_planes": _NO_INT8, "linear_int8_frozen": _NO_INT8, "conv2d_int8_planes": _NO_INT8,
           "conv2d_int8_frozen": _NO_INT8,
           "linear_grouped": "no grouped kernel: slt_mha runs one linear per projection"},
))
