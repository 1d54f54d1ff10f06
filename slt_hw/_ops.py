"""Schemas of the `slt_hw::` torch ops, their fake (meta) kernels and autograd formulas.

One place defines each op; the implementation behind it is chosen by `slt_hw.dispatch`. The
ops take plain tensors and ints so that torch.compile, torch.export and opcheck see through
them; `slt_hw.ops` is the typed, validated front door.
"""

from __future__ import annotations

import torch

from . import dispatch
from .contract import Dist, Key
from .reference import masks as ref

# ---------------------------------------------------------------------- effective weights
# Ops (not plain functions) so that traced backward graphs see opaque calls with fake kernels:
# the frozen format's unpacking has data-dependent shapes inside.


@torch.library.custom_op("slt_hw::materialize_planes", mutates_args=())
def materialize_planes(planes: torch.Tensor, coat_scales: torch.Tensor, k0: int, k1: int, in_features: int,
                       dist: int, scale: float) -> torch.Tensor:
    return ref.materialize_planes(Key(k0, k1), planes.shape[1], in_features, Dist.parse(dist), scale,
                                  planes, coat_scales)


@materialize_planes.register_fake
def _(planes, coat_scales, k0, k1, in_features, dist, scale):
    return planes.new_empty((planes.shape[1], in_features), dtype=torch.float32)


@torch.library.custom_op("slt_hw::materialize_frozen", mutates_args=())
def materialize_frozen(free_bits: torch.Tensor, offsets: torch.Tensor, k0: int, k1: int, fk0: int, fk1: int,
                       in_features: int, dist: int, scale: float, prune_threshold: int,
                       lock_threshold: int) -> torch.Tensor:
    return ref.materialize_frozen(Key(k0, k1), Key(fk0, fk1), offsets.shape[0], in_features, Dist.parse(dist),
                                  scale, free_bits, prune_threshold, lock_threshold)


@materialize_frozen.register_fake
def _(free_bits, offsets, k0, k1, fk0, fk1, in_features, dist, scale, prune_threshold, lock_threshold):
    return free_bits.new_empty((offsets.shape[0], in_features), dtype=torch.float32)


# ---------------------------------------------------------------------- linear, binary/multicoat
# row_begin/row_end select output rows [row_begin, row_end) of the weight (a convolution group);
# row_end = -1 means all rows. Counters always use the absolute row.


def _rows(n: int, row_begin: int, row_end: int) -> tuple[int, int]:
    return row_begin, n if row_end < 0 else row_end


@torch.library.custom_op("slt_hw::linear_planes", mutates_args=())
def linear_planes(x: torch.Tensor, planes: torch.Tensor, coat_scales: torch.Tensor,
                  bias: torch.Tensor | None, k0: int, k1: int, in_features: int, dist: int,
                  scale: float, backend: str, row_begin: int = 0, row_end: int = -1) -> torch.Tensor:
    rows = _rows(planes.shape[1], row_begin, row_end)
    return dispatch.call("linear_planes", x.device, backend, x, planes, coat_scales, bias,
                         k0, k1, in_features, dist, scale, rows)


@linear_planes.register_fake
def _(x, planes, coat_scales, bias, k0, k1, in_features, dist, scale, backend, row_begin=0, row_end=-1):
    torch._check(x.shape[-1] == in_features)
    r0, r1 = _rows(planes.shape[1], row_begin, row_end)
    return x.new_empty((*x.shape[:-1], r1 - r0))


def _planes_setup(ctx, inputs, output):
    x, planes, coat_scales, bias, k0, k1, in_features, dist, scale, _, row_begin, row_end = inputs
    ctx.save_for_backward(planes, coat_scales)
    ctx.meta = (k0, k1, in_features, dist, scale, x.dtype, None if bias is None else bias.dtype,
                _rows(planes.shape[1], row_begin, row_end))


def _planes_backward(ctx, grad):
    planes, coat_scales = ctx.saved_tensors
    k0, k1, k, dist, scale, dtype, bias_dtype, (r0, r1) = ctx.meta
    w = materialize_planes(planes, coat_scales, k0, k1, k, dist, scale)[r0:r1]
    return _linear_grads(grad, w, dtype, bias_dtype, n_rest=10)


linear_planes.register_autograd(_planes_backward, setup_context=_planes_setup)


# ---------------------------------------------------------------------- linear, partially frozen


@torch.library.custom_op("slt_hw::linear_frozen", mutates_args=())
def linear_frozen(x: torch.Tensor, free_bits: torch.Tensor, offsets: torch.Tensor,
                  bias: torch.Tensor | None, k0: int, k1: int, fk0: int, fk1: int, in_features: int,
                  dist: int, scale: float, prune_threshold: int, lock_threshold: int,
                  backend: str, row_begin: int = 0, row_end: int = -1) -> torch.Tensor:
    rows = _rows(offsets.shape[0], row_begin, row_end)
    return dispatch.call("linear_frozen", x.device, backend, x, free_bits, offsets, bias, k0, k1,
                         fk0, fk1, in_features, dist, scale, prune_threshold, lock_threshold, rows)


@linear_frozen.register_fake
def _(x, free_bits, offsets, bias, k0, k1, fk0, fk1, in_features, dist, scale, prune, lock, backend,
      row_begin=0, row_end=-1):
    torch._check(x.shape[-1] == in_features)
    r0, r1 = _rows(offsets.shape[0], row_begin, row_end)
    return x.new_empty((*x.shape[:-1], r1 - r0))


def _frozen_setup(ctx, inputs, output):
    x, free_bits, offsets, bias, k0, k1, fk0, fk1, k, dist, scale, prune, lock, _, row_begin, row_end = inputs
    ctx.save_for_backward(free_bits, offsets)
    ctx.meta = (k0, k1, fk0, fk1, k, dist, scale, prune, lock, x.dtype, None if bias is None else bias.dtype,
                _rows(offsets.shape[0], row_begin, row_end))


def _frozen_backward(ctx, grad):
    free_bits, offsets = ctx.saved_tensors
    k0, k1, fk0, fk1, k, dist, scale, prune, lock, dtype, bias_dtype, (r0, r1) = ctx.meta
    w = materialize_frozen(free_bits, offsets, k0, k1, fk0, fk1, k, dist, scale, prune, lock)[r0:r1]
    return _linear_grads(grad, w, dtype, bias_dtype, n_rest=14)


linear_frozen.register_autograd(_frozen_backward, setup_context=_frozen_setup)


def _linear_grads(grad, w, dtype, bias_dtype, n_rest):
    """Gradients for (x, <masks>, bias, <scalars>): the masks and seeds are not differentiable."""
    g32 = grad.to(torch.float32)
    grad_x = (g32 @ w).to(dtype)
    grad_bias = None if bias_dtype is None else g32.reshape(-1, w.shape[0]).sum(0).to(bias_dtype)
    return (grad_x, None, None, grad_bias) + (None,) * (n_rest - 2)
