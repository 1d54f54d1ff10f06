"""Public ops on packed weights: typed entry points over the `slt_hw::` ops (slt_hw/_ops.py),
which check the tensors and run the selected backend; plus the references they are tested
against (materialised weights, no dispatch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _ops
from .backends.composite import conv_epilogue, dense_linear, im2col_conv2d, split_bias
from .formats import PackedWeight
from .reference.quantize import dequantized_images, quantize_activations, quantize_images

__all__ = ["quantize_activations", "quantize_images", "slt_conv2d", "slt_conv2d_int8", "slt_conv2d_int8_reference",
           "slt_conv2d_reference", "slt_linear", "slt_linear_int8", "slt_linear_int8_reference", "slt_linear_reference"]


def _check_packed(packed: object) -> PackedWeight:
    if not isinstance(packed, PackedWeight):
        raise TypeError(f"packed: expected a slt_hw.PackedWeight, got {type(packed).__name__}")
    return packed


def _check_conv_packed(packed) -> PackedWeight:
    if len(_check_packed(packed).shape) != 4:
        raise ValueError(f"packed: expected a conv weight (out, in/groups, kh, kw), got shape {packed.shape}")
    return packed


def slt_linear(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None, *,
               backend: str | None = None) -> torch.Tensor:
    """y = x @ W_effᵀ + bias with W_eff regenerated from the packed weight's seed and mask.

    x: (..., in_features) float32/float16/bfloat16; returns (..., out_features) in x's dtype.
    backend: "auto" (default; or the SLT_HW_BACKEND environment variable) or a backend name
    from `slt_hw.dispatch.backends()`.
    """
    fmt, w = _ops.weight_args(_check_packed(packed))
    return _ops.call(f"linear_{fmt}", x, bias, *w, backend or "auto", 0, None)


def slt_linear_reference(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The ground truth: materialise W_eff and call F.linear in float32 (no torch op, no dispatch)."""
    _check_dense(x, _check_packed(packed), bias)
    return dense_linear(x, packed.materialize(), bias)


def _check_dense(x, packed: PackedWeight, bias) -> None:
    _ops.check_x(x, packed.in_features, packed.device)
    _ops.check_bias(bias, packed.out_features, packed.device)


def slt_linear_int8(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None, *,
                    backend: str | None = None) -> torch.Tensor:
    """Opt-in int8-activation slt_linear for signed-constant weights: x is quantized per token
    (dynamic, symmetric), the ±1/0 weight sums are exact integers, then scaled back.

    The fused int8 kernel on CPU (backend "cpp"); elsewhere the same arithmetic in PyTorch (the
    reference backend, also what the kernel is tested against).
    """
    fmt, w = _ops.weight_args(_check_packed(packed))
    return _ops.call(f"linear_int8_{fmt}", x, bias, *w, backend or "auto", 0, None)


def slt_linear_int8_reference(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    _check_dense(x, _check_packed(packed), bias)
    return dense_linear(x, packed.materialize(), bias, int8=True)


def _pair(v: object) -> tuple:
    """An int or a pair, as a pair (the op checks the values)."""
    return (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list)) else (v,)


def slt_conv2d(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None, stride=1, padding=0,
               dilation=1, groups: int = 1, *, backend: str | None = None) -> torch.Tensor:
    """2-D convolution with the packed weight (out, in/groups, kh, kw), as F.conv2d.

    im2col (F.unfold) per group, then the fused slt_linear over that group's output rows, so
    the weights are regenerated, never materialised; except on the CPU from 64 output pixels
    (batch·OH·OW; SLT_HW_CPU_CONV), where the weight is materialised for this call only
    (bit-exact) and torch's F.conv2d runs it. Zero padding only. The output has F.conv2d's
    layout: channels-last for a channels-last x, else contiguous.
    """
    _check_conv_packed(packed)
    return conv2d(x, packed, bias, packed.shape[2:], stride, padding, dilation, groups, backend)


def slt_conv2d_int8(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None, stride=1, padding=0,
                    dilation=1, groups: int = 1, *, act_scale: str = "patch", out_scale: torch.Tensor | None = None,
                    residual: torch.Tensor | None = None, relu: bool = False,
                    backend: str | None = None) -> torch.Tensor:
    """Opt-in int8-activation slt_conv2d for signed-constant weights, as slt_linear_int8 over
    F.unfold's patch rows: the activations quantized dynamically and symmetrically, the ±1/0
    weight sums exact integers, then scaled back. Inference only (no autograd).

    act_scale: "patch" (default), each output pixel's patch (in/groups·kh·kw values, zero
    padding) quantized on its own; "image", each image's values (all channels) quantized once
    with one scale, as torch's per-tensor scale but independent of the rest of the batch: 1.05-2x
    the patch scales' error on CIFAR-10 ResNet-18 activations (bench/conv_int8_error.py), and the
    patches are then copied bytes, not quantized 9 times over (3 x 3).

    The epilogue, fused: relu(conv · out_scale + bias + residual), each part optional and in
    that order (out_scale: float32, one per output channel, the bias added after it; residual:
    x's dtype and the output's shape; a BatchNorm folded into out_scale and bias, a ResNet
    block's shortcut as residual: slt_hw.nn.fuse_epilogues), in float32 then rounded to x's
    dtype. For float32 x the bits of those ops run one by one on the unfused output.

    On the CPU (backend "cpp") the patches are gathered (and quantized) in C++ and run by the
    int8 kernel; elsewhere the same arithmetic in PyTorch (the reference backend).
    """
    _check_conv_packed(packed)
    return conv2d(x, packed, bias, packed.shape[2:], stride, padding, dilation, groups, backend, int8=True,
                  act_scale=act_scale, epilogue=(out_scale, residual, relu))


def slt_conv2d_int8_reference(x, packed, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                              act_scale: str = "patch", out_scale=None, residual=None,
                              relu: bool = False) -> torch.Tensor:
    """The ground truth of slt_conv2d_int8: per group, F.unfold's patch rows quantized by
    quantize_activations (act_scale "image": x quantized per image by quantize_images), then
    F.linear in float32 with the materialised weight, then the epilogue (conv_epilogue); in x's
    dtype and F.conv2d's layout."""
    _check_conv_packed(packed)
    _ops.check_act_scale(act_scale)
    kernel, stride, padding, dilation = list(packed.shape[2:]), _pair(stride), _pair(padding), _pair(dilation)
    n, k = packed.out_features, packed.in_features
    _ops.check_conv(x, bias, n, k, packed.device, kernel, stride, padding, dilation, groups)
    _ops.check_epilogue(x, out_scale, residual, relu, n, (kernel, stride, padding, dilation), packed.device)
    w = packed.materialize()
    b, late_bias = split_bias(bias, out_scale)
    if act_scale == "image":
        xd = dequantized_images(x).contiguous(memory_format=_ops.conv2d_output_format(x))
        y = im2col_conv2d(lambda cols, b, r0, r1: dense_linear(cols, w[r0:r1], b), xd, b, n, kernel, stride,
                          padding, dilation, groups)
    else:
        y = im2col_conv2d(lambda cols, b, r0, r1: dense_linear(cols, w[r0:r1], b, int8=True), x, b, n, kernel,
                          stride, padding, dilation, groups)
    if out_scale is None and residual is None and not relu:
        return y.to(x.dtype)
    return conv_epilogue(y.to(torch.float32), out_scale, late_bias, residual, relu).to(x.dtype)


def conv2d(x, packed: PackedWeight, bias, kernel_size, stride, padding, dilation, groups, backend,
           int8: bool = False, act_scale: str = "patch", epilogue: tuple = (None, None, False)) -> torch.Tensor:
    """slt_conv2d (int8: slt_conv2d_int8 with act_scale) for a packed weight of any shape whose
    in_features is in/groups·kh·kw (the packed layers keep theirs flattened to 2-D); epilogue:
    (out_scale, residual, relu), slt_conv2d_int8's, fused there, after slt_conv2d in torch."""
    fmt, w = _ops.weight_args(packed)
    args = (list(kernel_size), list(_pair(stride)), list(_pair(padding)), list(_pair(dilation)), groups,
            backend or "auto")
    if int8:
        return _ops.call(f"conv2d_int8_{fmt}", x, bias, *w, *args, act_scale, *epilogue)
    scale, residual, relu = epilogue
    if scale is None and residual is None and not relu:
        return _ops.call(f"conv2d_{fmt}", x, bias, *w, *args)
    _ops.check_epilogue(x, scale, residual, relu, packed.out_features, args[:4], packed.device)
    conv_bias, late_bias = split_bias(bias, scale)
    y = _ops.call(f"conv2d_{fmt}", x, conv_bias, *w, *args).to(torch.float32)
    return conv_epilogue(y, scale, late_bias, residual, relu).to(x.dtype)


def slt_conv2d_reference(x, packed, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """The ground truth: F.conv2d in float32 with the materialised weight."""
    w = packed.materialize().reshape(packed.shape)
    y = F.conv2d(x.to(torch.float32), w, None if bias is None else bias.to(torch.float32), stride, padding,
                 dilation, groups)
    return y.to(x.dtype)
