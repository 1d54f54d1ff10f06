"""Public ops: validated, typed entry points over the `slt_hw::` torch ops."""

from __future__ import annotations

import torch

from . import _ops, dispatch
from .formats import Format, PackedWeight

ACTIVATION_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_linear_inputs(x: object, packed: object, bias: object) -> None:
    if not isinstance(packed, PackedWeight):
        raise TypeError(f"packed: expected a slt_hw.PackedWeight, got {type(packed).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"x: expected dtype float32, float16 or bfloat16, got {x.dtype}")
    if x.dim() < 1 or x.shape[-1] != packed.in_features:
        raise ValueError(
            f"x: expected last dimension in_features={packed.in_features} to match the packed weight "
            f"{packed.name!r} of shape {packed.shape}, got x of shape {tuple(x.shape)}"
        )
    if x.device != packed.device:
        raise ValueError(f"x: expected device {packed.device} (where the packed weight is), got {x.device}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias: expected a torch.Tensor or None, got {type(bias).__name__}")
        if bias.dtype not in ACTIVATION_DTYPES:
            raise TypeError(f"bias: expected dtype float32, float16 or bfloat16, got {bias.dtype}")
        if tuple(bias.shape) != (packed.out_features,):
            raise ValueError(f"bias: expected shape ({packed.out_features},), got {tuple(bias.shape)}")
        if bias.device != x.device:
            raise ValueError(f"bias: expected device {x.device}, got {bias.device}")


def slt_linear(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None, *,
               backend: str | None = None) -> torch.Tensor:
    """y = x @ W_effᵀ + bias with W_eff regenerated from the packed weight's seed and mask.

    x: (..., in_features) float32/float16/bfloat16; returns (..., out_features) in x's dtype.
    backend: "auto" (default; or the SLT_HW_BACKEND environment variable) or a backend name
    from `slt_hw.dispatch.backends()`.
    """
    _check_linear_inputs(x, packed, bias)
    backend = dispatch.requested(backend)
    key = packed.key
    if packed.format is Format.FROZEN:
        fkey = packed.freeze_key
        return _ops.linear_frozen(x, packed.free_bits, packed.offsets, bias, key.k0, key.k1, fkey.k0,
                                  fkey.k1, packed.in_features, packed.dist.code, packed.scale,
                                  packed.prune_threshold, packed.lock_threshold, backend)
    return _ops.linear_planes(x, packed.planes, packed.coat_scales, bias, key.k0, key.k1,
                              packed.in_features, packed.dist.code, packed.scale, backend)


def slt_linear_reference(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The ground truth: materialise W_eff and call F.linear in float32 (no torch op, no dispatch)."""
    _check_linear_inputs(x, packed, bias)
    y = torch.nn.functional.linear(x.to(torch.float32), packed.materialize())
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.to(x.dtype)
