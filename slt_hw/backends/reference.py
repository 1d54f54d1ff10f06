"""The reference backend: pure PyTorch that materialises the effective weight (slt_hw.reference),
the ground truth every kernel is tested against. It implements every torch op and runs anywhere."""

from __future__ import annotations

import functools

import torch

from ..contract import Dist, Key
from ..dispatch import Backend, register
from ..reference import masks
from ..reference.attention import attention as _attention
from . import composite


def weight(*w) -> torch.Tensor:
    """W_eff (N, K) float32 of a weight argument block."""
    if w[0].dim() == 3:
        planes, coat_scales, k0, k1, k, dist, scale = w
        return masks.materialize_planes(Key(k0, k1), planes.shape[1], k, Dist.parse(dist), scale, planes, coat_scales)
    free_bits, offsets, k0, k1, fk0, fk1, k, dist, scale, prune, lock = w
    return masks.materialize_frozen(Key(k0, k1), Key(fk0, fk1), offsets.shape[0], k, Dist.parse(dist), scale,
                                    free_bits, prune, lock)


def materialize(*args) -> torch.Tensor:
    *w, r0, r1 = args
    return weight(*w)[r0:r1]


def linear(x, bias, *rest, int8: bool = False) -> torch.Tensor:
    return composite.dense_linear(x, materialize(*rest), bias, int8)


def attention(q, k, v, key_padding_mask, attn_mask, causal, scale) -> torch.Tensor:
    return _attention(q, k, v, key_padding_mask, attn_mask, causal, scale).to(q.dtype)


_int8 = functools.partial(linear, int8=True)

register(Backend(
    name="reference", priority=0,
    description="pure PyTorch: materialises the effective weight (the ground truth for every kernel)",
    not_supported_reasons=lambda device: [],
    ops={**composite.linear_ops(linear), "attention": attention, **composite.int8_ops(_int8, linear),
         "materialize_planes": materialize, "materialize_frozen": materialize},
    lacks={"linear_grouped": "materialises each weight: slt_mha runs one linear per projection"},
))
