"""Public ops: validated, typed entry points over the `slt_hw::` torch ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
    return _linear(x, packed, bias, dispatch.requested(backend))


def _direct_ok(x: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether a call may skip the torch op: its dispatch and autograd layers cost ~50 µs a call
    on CPU (a decode step's whole projection), and only autograd and tracing need them."""
    if type(x) is not torch.Tensor or torch.compiler.is_compiling():
        return False  # fake / functional tensors, torch.compile, torch.export: the op
    return not (torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)))


def _linear(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None, backend: str) -> torch.Tensor:
    """slt_linear on validated inputs: the torch op, or its backend directly where that is the same."""
    key = packed.key
    if packed.format is Format.FROZEN:
        fkey = packed.freeze_key
        op, args = "linear_frozen", (packed.free_bits, packed.offsets, bias, key.k0, key.k1, fkey.k0, fkey.k1,
                                     packed.in_features, packed.dist.code, packed.scale, packed.prune_threshold,
                                     packed.lock_threshold)
    else:
        op, args = "linear_planes", (packed.planes, packed.coat_scales, bias, key.k0, key.k1, packed.in_features,
                                     packed.dist.code, packed.scale)
    if _direct_ok(x, bias):
        return dispatch.call(op, x.device, backend, x, *args, (0, packed.out_features))
    return getattr(_ops, op)(x, *args, backend)


def slt_linear_reference(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The ground truth: materialise W_eff and call F.linear in float32 (no torch op, no dispatch)."""
    _check_linear_inputs(x, packed, bias)
    y = torch.nn.functional.linear(x.to(torch.float32), packed.materialize())
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.to(x.dtype)


def _pair(v: object, arg: str, minimum: int) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) and not isinstance(v, bool) else tuple(v) if isinstance(v, (tuple, list)) else ()
    if len(t) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) and i >= minimum for i in t):
        raise ValueError(f"{arg}: expected an int >= {minimum} or a pair of them, got {v!r}")
    return t


def slt_conv2d(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None, stride=1, padding=0,
               dilation=1, groups: int = 1, *, backend: str | None = None) -> torch.Tensor:
    """2-D convolution with the packed weight (out, in/groups, kh, kw), as F.conv2d.

    im2col (F.unfold) per group, then the fused slt_linear over that group's output rows, so
    the weights are regenerated, never materialised. Zero padding only.
    """
    if not isinstance(packed, PackedWeight):
        raise TypeError(f"packed: expected a slt_hw.PackedWeight, got {type(packed).__name__}")
    if len(packed.shape) != 4:
        raise ValueError(f"packed: expected a conv weight (out, in/groups, kh, kw), got shape {packed.shape}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"x: expected dtype float32, float16 or bfloat16, got {x.dtype}")
    stride, padding, dilation = _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    out_ch, cin_g, kh, kw = packed.shape
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or out_ch % groups:
        raise ValueError(f"groups: expected an int >= 1 dividing out_channels={out_ch}, got {groups!r}")
    if x.dim() != 4 or x.shape[1] != cin_g * groups:
        raise ValueError(f"x: expected (batch, {cin_g * groups}, H, W) for a weight {packed.shape} with "
                         f"groups={groups}, got {tuple(x.shape)}")
    if x.device != packed.device:
        raise ValueError(f"x: expected device {packed.device} (where the packed weight is), got {x.device}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (out_ch,)):
        raise ValueError(f"bias: expected a tensor of shape ({out_ch},), got {getattr(bias, 'shape', bias)}")
    b, _, h, w = x.shape
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"x: spatial size {(h, w)} is smaller than the dilated kernel {(kh, kw)} with this padding")
    backend = dispatch.requested(backend)
    og = out_ch // groups
    key = packed.key
    outs = []
    for g in range(groups):
        cols = F.unfold(x[:, g * cin_g:(g + 1) * cin_g], (kh, kw), dilation=dilation, padding=padding, stride=stride)
        cols = cols.transpose(1, 2)  # (B, L, cin_g·kh·kw): the contract's (in, kh, kw) column order
        gb = None if bias is None else bias[g * og:(g + 1) * og]
        rows = (g * og, (g + 1) * og)
        if packed.format is Format.FROZEN:
            fkey = packed.freeze_key
            y = _ops.linear_frozen(cols, packed.free_bits, packed.offsets, gb, key.k0, key.k1, fkey.k0, fkey.k1,
                                   packed.in_features, packed.dist.code, packed.scale, packed.prune_threshold,
                                   packed.lock_threshold, backend, *rows)
        else:
            y = _ops.linear_planes(cols, packed.planes, packed.coat_scales, gb, key.k0, key.k1, packed.in_features,
                                   packed.dist.code, packed.scale, backend, *rows)
        outs.append(y)
    y = torch.cat(outs, dim=-1) if groups > 1 else outs[0]  # (B, L, out)
    return y.transpose(1, 2).reshape(b, out_ch, oh, ow)


def slt_conv2d_reference(x, packed, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """The ground truth: F.conv2d in float32 with the materialised weight."""
    w = packed.materialize().reshape(packed.shape)
    y = F.conv2d(x.to(torch.float32), w, None if bias is None else bias.to(torch.float32), stride, padding,
                 dilation, groups)
    return y.to(x.dtype)


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-token symmetric int8: x (..., K) ~ q * s[..., None], q in [-127, 127]."""
    s = x.abs().amax(-1, keepdim=True).to(torch.float32) / 127.0
    s = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(x.to(torch.float32) / s).clamp(-127, 127).to(torch.int8)
    return q, s.squeeze(-1)


def slt_linear_int8(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Opt-in int8-activation slt_linear for signed-constant weights: x is quantized per token
    (dynamic, symmetric), the ±1/0 weight sums are exact integers, then scaled back.

    On CPU tensors with the native extension this is the fused int8 kernel; elsewhere the same
    arithmetic in PyTorch (also the reference the kernel is tested against).
    """
    _check_linear_inputs(x, packed, bias)
    if packed.dist.value != "signed_constant":
        raise ValueError(f"packed: int8 activations need the signed_constant distribution, got {packed.dist.value}")
    from . import _ext

    if x.device.type == "cpu" and _ext.native() is not None:
        from .backends import cpu_native

        key = packed.key
        if packed.format is Format.FROZEN:
            y = cpu_native.linear_frozen(x, packed.free_bits, packed.offsets, bias, key, packed.freeze_key,
                                         packed.in_features, packed.dist, packed.scale, packed.prune_threshold,
                                         packed.lock_threshold, int8=True)
        else:
            y = cpu_native.linear_planes(x, packed.planes, packed.coat_scales, bias, key, packed.in_features,
                                         packed.dist, packed.scale, int8=True)
        return y.to(x.dtype)
    return slt_linear_int8_reference(x, packed, bias)


def slt_linear_int8_reference(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    q, s = quantize_activations(x)
    y = torch.nn.functional.linear(q.to(torch.float32) * s[..., None], packed.materialize())
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.to(x.dtype)


def __getattr__(name: str):
    # slt_hw.mha builds on the functions above; resolving its names lazily avoids an import cycle.
    if name in ("slt_mha", "slt_mha_reference", "KVCache"):
        from . import mha

        return getattr(mha, name)
    raise AttributeError(f"module 'slt_hw.ops' has no attribute {name!r}")
