"""What backends build from torch and from their own linear rather than a kernel of their own:
the dense linear epilogue, the im2col convolution, and attention through torch's SDPA
(`linear_ops` gathers the last two around a backend's fused linear).

Every function takes an op's arguments as slt_hw._ops checked them (a weight is its format's
argument block, slt_hw._ops.WEIGHT).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .._ops import conv2d_output_format, conv2d_output_size
from ..reference.attention import allowed_mask
from ..reference.quantize import dequantized_images, quantize_activations


def rows_of(w: tuple) -> int:
    """N of a weight argument block: planes are (C, N, W), the frozen offsets (N, blocks)."""
    return w[0].shape[1] if w[0].dim() == 3 else w[1].shape[0]


def dense_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, int8: bool = False) -> torch.Tensor:
    """x @ wᵀ + bias in float32 with a materialised weight, in x's dtype; int8: x quantized per
    token first (the arithmetic the int8 kernels reproduce)."""
    if int8:
        q, s = quantize_activations(x)
        y = F.linear(q.to(torch.float32) * s[..., None], w)
    else:
        y = F.linear(x.to(torch.float32), w)
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.to(x.dtype)


def conv2d(linear, x, bias, *rest):
    """2-D convolution from a backend's linear op: im2col (F.unfold) per group, then `linear`
    over that group's output rows [row_begin, row_end), so the weight is regenerated, never
    materialised. rest: the weight block, kernel_size, stride, padding, dilation, groups."""
    w, conv = rest[:-5], rest[-5:]
    return im2col_conv2d(lambda cols, b, r0, r1: linear(cols, b, *w, r0, r1), x, bias, rows_of(w), *conv)


def im2col_conv2d(rows_linear, x, bias, n: int, kernel, stride, padding, dilation, groups: int) -> torch.Tensor:
    """The convolution with n output channels as im2col (F.unfold) per group and
    rows_linear(cols, bias, row_begin, row_end) -> cols · W[row_begin:row_end]ᵀ + bias over that
    group's output rows; F.conv2d's output layout."""
    og, cin_g = n // groups, x.shape[1] // groups
    outs = []
    for g in range(groups):
        cols = F.unfold(x[:, g * cin_g:(g + 1) * cin_g], kernel, dilation=dilation, padding=padding, stride=stride)
        gb = None if bias is None else bias[g * og:(g + 1) * og]
        outs.append(rows_linear(cols.transpose(1, 2), gb, g * og, (g + 1) * og))  # (B, L, og), columns (in, kh, kw)
    y = torch.cat(outs, dim=-1) if groups > 1 else outs[0]
    oh, ow = conv2d_output_size(x.shape[2], x.shape[3], kernel, stride, padding, dilation)
    y = y.transpose(1, 2).reshape(x.shape[0], n, oh, ow)  # a channels-last view
    return y.contiguous(memory_format=conv2d_output_format(x))


def conv2d_int8(linear_int8, linear, x, bias, *rest):
    """slt_conv2d_int8 from a backend's linears (rest: the weight block, kernel_size, stride,
    padding, dilation, groups, act_scale, out_scale, residual, relu): act_scale "patch", im2col over
    linear_int8 (each output pixel's patch quantized as one row); "image", x quantized per image
    first, then im2col over the float linear (exact: the int8 sums of q, scaled); then the
    epilogue (conv_epilogue), in float32."""
    rest, (act_scale, scale, residual, relu) = rest[:-4], rest[-4:]
    conv_bias, late_bias = split_bias(bias, scale)
    if act_scale == "patch":
        y = conv2d(linear_int8, x, conv_bias, *rest)
    else:
        xd = dequantized_images(x).contiguous(memory_format=conv2d_output_format(x))
        y = conv2d(linear, xd, conv_bias, *rest)
    if scale is None and residual is None and not relu:
        return y.to(x.dtype)
    return conv_epilogue(y.to(torch.float32), scale, late_bias, residual, relu).to(x.dtype)


def split_bias(bias, scale) -> tuple:
    """(the bias the convolution adds, the one the epilogue adds): with an epilogue scale the
    bias comes after it (conv · scale + bias), else in the convolution."""
    return (None, bias) if scale is not None else (bias, None)


def conv_epilogue(y: torch.Tensor, scale, bias, residual, relu: bool) -> torch.Tensor:
    """relu(y * scale + bias + residual) over a convolution's float32 output (scale, bias: one
    per channel; each part optional), in place where y is float32: these ops one by one, the
    bits the fused kernels reproduce."""
    if scale is not None:
        y.mul_(scale.view(1, -1, 1, 1))
    if bias is not None:
        y.add_(bias.to(torch.float32).view(1, -1, 1, 1))
    if residual is not None:
        y.add_(residual.to(torch.float32))
    return y.relu_() if relu else y


def int8_ops(linear_int8, linear) -> dict:
    """The int8-activation ops of a backend with an int8 linear (and its float one): that linear,
    and convolutions through im2col over them (conv2d_int8)."""
    conv = functools.partial(conv2d_int8, linear_int8, linear)
    return {"linear_int8_planes": linear_int8, "linear_int8_frozen": linear_int8, "conv2d_int8_planes": conv,
            "conv2d_int8_frozen": conv}


def sdpa_attention(q, k, v, key_padding_mask, attn_mask, causal: bool, scale: float) -> torch.Tensor:
    """torch's scaled_dot_product_attention on (B, T, H, D) heads, in q's dtype; a query with no
    key left gets zeros, not NaN."""
    b, t, s = q.shape[0], q.shape[1], k.shape[1]
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if key_padding_mask is None and attn_mask is None and (not causal or t == 1 or t == s):
        # No mask to build: causal is SDPA's own (t == s) or allows every key (one query, last).
        return F.scaled_dot_product_attention(qh, kh, vh, is_causal=causal and t > 1, scale=scale).transpose(1, 2)
    allowed, add = allowed_mask(b, t, s, causal, key_padding_mask, attn_mask, q.device)
    mask = allowed if add is None else torch.where(allowed, add, float("-inf")).to(q.dtype)
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=scale).transpose(1, 2)
    return torch.where(allowed.any(-1).transpose(1, 2)[..., None], out, 0.0)  # (B, T, 1, 1)


def linear_ops(linear) -> dict:
    """The ops of a backend whose kernel is a fused linear (either format): the linear itself,
    convolutions through im2col over it, attention through torch's SDPA."""
    conv = functools.partial(conv2d, linear)
    return {"linear_planes": linear, "linear_frozen": linear, "conv2d_planes": conv, "conv2d_frozen": conv,
            "attention": sdpa_attention}
