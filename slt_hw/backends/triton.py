"""The triton backend: the Triton kernels of slt_hw.kernels (kernels/): the fused slt_linear
(GEMV or tensor-core GEMM, weights made in registers), materialise, slt_mha's grouped Q/K/V
projection and flash attention. Automatic on CUDA; on CPU tensors only when forced, under
TRITON_INTERPRET=1 (the interpreter the tests use without a GPU).

slt_hw.kernels (and Triton) are imported on first use: importing slt_hw never imports Triton.
"""

from __future__ import annotations

import os

import torch

from ..dispatch import Backend, register
from . import composite


def _kernels():
    from slt_hw import kernels

    return kernels


def linear(x, bias, *rest, path: str | None = None, split_k: int | None = None) -> torch.Tensor:
    """kernels/linear.py on either format's arguments (rest: the weight block, row_begin, row_end)."""
    kernels = _kernels()
    fn = kernels.linear_planes if rest[0].dim() == 3 else kernels.linear_frozen
    return fn(x, bias, *rest, path=path, split_k=split_k)


def materialize(*args) -> torch.Tensor:
    kernels = _kernels()
    return (kernels.materialize_planes if args[0].dim() == 3 else kernels.materialize_frozen)(*args)


def attention(q, k, v, key_padding_mask, attn_mask, causal, scale) -> torch.Tensor:
    """Flash attention; with an arbitrary attn_mask (which the kernel does not take) torch's SDPA."""
    if attn_mask is not None:
        return composite.sdpa_attention(q, k, v, key_padding_mask, attn_mask, causal, scale)
    return _kernels().flash_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask, softmax_scale=scale)


def linear_grouped(x: torch.Tensor, packed: list, biases: list) -> list[torch.Tensor]:
    """[x W_iᵀ + b_i for each packed weight], one launch per run of weights that can share one
    (same format, distribution and coat count: constexprs of the kernel)."""
    grouped = _kernels().linear_grouped
    groups: list[list[int]] = []
    for i, p in enumerate(packed):
        for g in groups:
            if grouped.groupable([packed[g[0]], p]) is None:
                g.append(i)
                break
        else:
            groups.append([i])
    out: list[torch.Tensor | None] = [None] * len(packed)
    for g in groups:
        y = grouped.linear_grouped(x, [packed[i] for i in g], [biases[i] for i in g])
        col = 0
        for i in g:
            out[i] = y[..., col:col + packed[i].out_features]
            col += packed[i].out_features
    return out


def _reasons(device: torch.device) -> list[str]:
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return [f"triton not importable ({e})"]
    if device.type == "cuda":
        return []
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return []
    return [f"needs CUDA tensors (or CPU tensors under TRITON_INTERPRET=1), got {device.type}"]


_NO_INT8 = "no int8 Triton kernel (the int8 path is the CPU kernel's)"

register(Backend(
    name="triton", priority=40,
    description="Triton kernels (kernels/): fused slt_linear (GEMV or tensor-core GEMM, weights made in registers), "
                "grouped Q/K/V projection, flash attention",
    not_supported_reasons=_reasons,
    ops={**composite.linear_ops(linear), "attention": attention, "materialize_planes": materialize,
         "materialize_frozen": materialize, "linear_grouped": linear_grouped},
    lacks={"linear_int8_planes": _NO_INT8, "linear_int8_frozen": _NO_INT8, "conv2d_int8_planes": _NO_INT8,
           "conv2d_int8_frozen": _NO_INT8},
    auto_devices=("cuda",),
))
