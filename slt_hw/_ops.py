"""The packed-weight ops: one schema each (`slt_hw::<op>`), the checks of its inputs, its fake
kernel and autograd formula, and `call()`, the one Python entry every caller goes through.

An op takes plain tensors and ints, so torch.compile, torch.export and opcheck see through it; a
packed weight travels as its format's argument block (`WEIGHT`, built by `weight_args`). The
op's implementation checks its inputs (once per call; backends trust them), then runs the
backend that `slt_hw.dispatch` selects for it with the op's arguments as they are.

`call(op, *args)` runs that implementation directly when neither autograd nor tracing needs the
torch op, whose dispatcher and autograd layers cost ~45 µs a call on CPU (a decode step's whole
projection); otherwise it calls the torch op, whose implementation is the same function. The
public functions (slt_hw.ops, slt_hw.mha) and the modules (slt_hw.nn) all call it.
"""

from __future__ import annotations

import functools
import sys

import torch

from . import dispatch
from .contract import (
    OFFSET_BLOCK_WORDS,
    Dist,
    check_geometry,
    check_key_words,
    check_rows,
    check_scale,
    check_thresholds,
    words_per_row,
)
from .formats import Format, check_tensor
from .reference.attention import check_causal
from .reference.quantize import ACT_SCALES

LIB = torch.library.Library("slt_hw", "DEF")
ACTIVATIONS = (torch.float32, torch.float16, torch.bfloat16)

# A packed weight as op arguments, per format. Both start with the mask's two tensors; lock is P + L.
WEIGHT = {
    "planes": "Tensor planes, Tensor coat_scales, int k0, int k1, int in_features, int dist, float scale",
    "frozen": "Tensor free_bits, Tensor offsets, int k0, int k1, int fk0, int fk1, int in_features, int dist, "
              "float scale, int prune_threshold, int lock_threshold",
}
_IN_FEATURES = {"planes": 4, "frozen": 6}  # where in_features sits in the block


def weight_args(packed) -> tuple[str, tuple]:
    """(format, argument block) of a slt_hw.PackedWeight."""
    key = packed.key
    if packed.format is Format.FROZEN:
        fkey = packed.freeze_key
        return "frozen", (packed.free_bits, packed.offsets, key.k0, key.k1, fkey.k0, fkey.k1, packed.in_features,
                          packed.dist.code, packed.scale, packed.prune_threshold, packed.lock_threshold)
    return "planes", (packed.planes, packed.coat_scales, key.k0, key.k1, packed.in_features, packed.dist.code,
                      packed.scale)


# ---------------------------------------------------------------------- input checks (the only ones)


def check_weight(fmt: str, w: tuple) -> tuple[int, int, torch.device]:
    """A format's argument block: (rows N, in_features K, device) if it is well formed."""
    k = w[_IN_FEATURES[fmt]]
    if fmt == "planes":
        planes = check_tensor(w[0], "planes", torch.int32, 3)
        coat_scales = check_tensor(w[1], "coat_scales", torch.float32, 1)
        n, c, device = planes.shape[1], planes.shape[0], planes.device
        _scalars_ok(fmt, n, w[2:])
        if c < 1 or planes.shape[2] != words_per_row(k):
            raise ValueError(f"planes: expected (coats >= 1, N, {words_per_row(k)}) for in_features={k}, got "
                             f"{tuple(planes.shape)}")
        if coat_scales.shape[0] != c or coat_scales.device != device:
            raise ValueError(f"coat_scales: expected ({c},) on {device} (one per plane), got "
                             f"{tuple(coat_scales.shape)} on {coat_scales.device}")
        return n, k, device
    free_bits = check_tensor(w[0], "free_bits", torch.int32, 1)
    offsets = check_tensor(w[1], "offsets", torch.int64, 2)
    n, device = offsets.shape[0], free_bits.device
    _scalars_ok(fmt, n, w[2:])
    nb = -(-words_per_row(k) // OFFSET_BLOCK_WORDS)
    if offsets.shape[1] != nb or offsets.device != device:
        raise ValueError(f"offsets: expected ({n}, {nb}) on {device} for in_features={k}, got "
                         f"{tuple(offsets.shape)} on {offsets.device}")
    return n, k, device


def _scalars_ok(fmt: str, n, scalars: tuple) -> None:
    # a symbolic N (tracing with dynamic shapes) is not hashable: check it uncached
    (_check_scalars if type(n) is int else _check_scalars.__wrapped__)(fmt, n, *scalars)


@functools.lru_cache(maxsize=4096, typed=True)
def _check_scalars(fmt: str, n: int, *scalars) -> None:
    """Keys, geometry, value rule and thresholds of a weight block: plain numbers, so a block seen
    before passes without being checked again (an error is raised every time: nothing is cached)."""
    if fmt == "planes":
        k0, k1, k, dist, scale = scalars
    else:
        k0, k1, fk0, fk1, k, dist, scale, prune, lock = scalars
        check_key_words(fk0, fk1, "fk0/fk1")
        check_thresholds(prune, lock)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"in_features: expected an int, got {type(k).__name__}")
    check_key_words(k0, k1, "k0/k1")
    Dist.parse(dist)
    check_scale(scale)
    check_geometry(n, k, "in_features")


def _check_float(t: object, arg: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{arg}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in ACTIVATIONS:
        raise TypeError(f"{arg}: expected dtype float32, float16 or bfloat16, got {t.dtype}")
    return t


def check_x(x: object, k: int, device: torch.device) -> None:
    _check_float(x, "x")
    if x.device != device:
        raise ValueError(f"x: expected device {device} (where the packed weight is), got {x.device}")
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"x: expected last dimension in_features={k} (the packed weight's), got x of shape "
                         f"{tuple(x.shape)}")


def check_bias(bias: object, rows: int, device: torch.device) -> None:
    """bias: None or one value per computed output row."""
    if bias is None:
        return
    _check_float(bias, "bias")
    if tuple(bias.shape) != (rows,):
        raise ValueError(f"bias: expected shape ({rows},), got {tuple(bias.shape)}")
    if bias.device != device:
        raise ValueError(f"bias: expected device {device}, got {bias.device}")


def conv2d_output_size(h: int, w: int, kernel, stride, padding, dilation) -> tuple[int, int]:
    """(OH, OW) for pairs kernel, stride, padding, dilation (written out: every conv call runs it)."""
    return ((h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1,
            (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1)


def conv2d_output_format(x: torch.Tensor) -> torch.memory_format:
    """The layout of a conv op's output, as F.conv2d's: channels-last for a channels-last input
    (one that is not also plain contiguous), else contiguous. Every backend and the fake agree."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _int_at_least(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def check_conv(x, bias, n: int, k: int, device, kernel, stride, padding, dilation, groups) -> None:
    for arg, v, low in (("kernel_size", kernel, 1), ("stride", stride, 1), ("padding", padding, 0),
                        ("dilation", dilation, 1)):
        if len(v) != 2 or not (_int_at_least(v[0], low) and _int_at_least(v[1], low)):  # (not all(genexpr): 10 µs)
            raise ValueError(f"{arg}: expected an int >= {low} or a pair of them, got {v!r}")
    cin_g = k // (kernel[0] * kernel[1])
    if cin_g * kernel[0] * kernel[1] != k:
        raise ValueError(f"kernel_size: {tuple(kernel)} does not divide in_features={k} (in/groups·kh·kw)")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or n % groups:
        raise ValueError(f"groups: expected an int >= 1 dividing out_channels={n}, got {groups!r}")
    _check_float(x, "x")
    if x.dim() != 4 or x.shape[1] != cin_g * groups:
        raise ValueError(f"x: expected (batch, {cin_g * groups}, H, W) for a weight ({n}, {cin_g}, {kernel[0]}, "
                         f"{kernel[1]}) with groups={groups}, got {tuple(x.shape)}")
    if x.device != device:
        raise ValueError(f"x: expected device {device} (where the packed weight is), got {x.device}")
    if min(conv2d_output_size(x.shape[2], x.shape[3], kernel, stride, padding, dilation)) < 1:
        raise ValueError(f"x: spatial size {tuple(x.shape[2:])} is smaller than the dilated kernel {tuple(kernel)} "
                         "with this padding")
    check_bias(bias, n, device)


def check_attention(q, k, v, key_padding_mask, attn_mask, causal: bool) -> None:
    """Projected heads q (B, T, H, D), k (B, S, H, D), v (B, S, H, DV), the masks and causal."""
    for arg, t in (("q", q), ("k", k), ("v", v)):
        _check_float(t, arg)
        if t.dim() != 4:
            raise ValueError(f"{arg}: expected (batch, positions, heads, head dim), got {tuple(t.shape)}")
        if t.dtype != q.dtype or t.device != q.device:
            raise ValueError(f"{arg}: expected {q.dtype} on {q.device} like q, got {t.dtype} on {t.device}")
    b, t, h, d = q.shape
    s = k.shape[1]
    if tuple(k.shape) != (b, s, h, d) or tuple(v.shape[:3]) != (b, s, h):
        raise ValueError(f"k, v: expected (B={b}, S, H={h}, D={d}) and (B, S, H, DV), got {tuple(k.shape)} and "
                         f"{tuple(v.shape)}")
    if key_padding_mask is not None and (key_padding_mask.dtype != torch.bool or key_padding_mask.device != q.device
                                         or tuple(key_padding_mask.shape) != (b, s)):
        raise ValueError(f"key_padding_mask: expected a bool ({b}, {s}) tensor on {q.device}, got "
                         f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
    if attn_mask is not None and tuple(attn_mask.shape) != (t, s):
        raise ValueError(f"attn_mask: expected a ({t}, {s}) tensor (bool: True = not allowed, or float added to "
                         f"the logits), got {tuple(attn_mask.shape)}")
    check_causal(causal, t, s)


# ---------------------------------------------------------------------- implementations
# Each op's implementation and fake kernel share its argument check: the fake kernel raises at
# trace time what the implementation would raise at run time.


_N_W = {fmt: schema.count(",") + 1 for fmt, schema in WEIGHT.items()}  # arguments per weight block


def _n_w(fmt: str) -> int:
    return _N_W[fmt]


_ROW_DEFAULTS = ("auto", 0, None)  # backend, row_begin, row_end
_CONV_DEFAULTS = (None,) * 5 + ("auto",)  # kernel_size, stride, padding, dilation, groups (no default), backend
_CONV_INT8_DEFAULTS = (*_CONV_DEFAULTS, "patch", None, None, False)  # ..., act_scale, out_scale, residual, relu


def _with_defaults(given: tuple, defaults: tuple) -> tuple:
    """The dispatcher leaves out trailing arguments equal to their defaults: put them back."""
    return (*given, *defaults[len(given):])


def _linear_args(fmt: str, x, bias, rest):
    """(weight block, backend, row_begin, row_end, device) of a linear op's checked arguments."""
    w, (backend, row_begin, row_end) = rest[:_n_w(fmt)], _with_defaults(rest[_n_w(fmt):], _ROW_DEFAULTS)
    n, k, device = check_weight(fmt, w)
    r0, r1 = check_rows(n, row_begin, row_end)
    check_x(x, k, device)
    check_bias(bias, r1 - r0, device)
    return w, backend, r0, r1, device


def _check_int8(op: str, fmt: str, w) -> None:
    """The int8 ops take signed-constant weights only (their sums are of ±1 and 0)."""
    if "_int8_" in op and w[_IN_FEATURES[fmt] + 1] != Dist.SIGNED_CONSTANT.code:
        raise ValueError(f"dist: int8 activations need the signed_constant distribution, got "
                         f"{Dist.parse(w[_IN_FEATURES[fmt] + 1]).value}")


def _linear_impl(op: str, fmt: str):
    def impl(x, bias, *rest):
        w, backend, r0, r1, device = _linear_args(fmt, x, bias, rest)
        _check_int8(op, fmt, w)
        return dispatch.call(op, device, backend, x, bias, *w, r0, r1)

    def fake(x, bias, *rest):
        _, _, r0, r1, _ = _linear_args(fmt, x, bias, rest)
        return x.new_empty((*x.shape[:-1], r1 - r0))

    return impl, fake


def _materialize_args(fmt: str, args):
    w, (backend, row_begin, row_end) = args[:_n_w(fmt)], _with_defaults(args[_n_w(fmt):], _ROW_DEFAULTS)
    n, k, device = check_weight(fmt, w)
    return w, backend, *check_rows(n, row_begin, row_end), k, device


def _materialize_impl(op: str, fmt: str):
    def impl(*args):
        w, backend, r0, r1, _, device = _materialize_args(fmt, args)
        return dispatch.call(op, device, backend, *w, r0, r1)

    def fake(*args):
        w, _, r0, r1, k, _ = _materialize_args(fmt, args)
        return w[0].new_empty((r1 - r0, k), dtype=torch.float32)

    return impl, fake


def check_act_scale(act_scale) -> None:
    if act_scale not in ACT_SCALES:
        raise ValueError(f"act_scale: expected one of {', '.join(map(repr, ACT_SCALES))}, got {act_scale!r}")


def check_epilogue(x, scale, residual, relu, n: int, geometry, device) -> None:
    """A convolution's epilogue (slt_conv2d_int8's out_scale, residual, relu) for its n output
    channels of x under geometry (kernel, stride, padding, dilation): out_scale float32 (n,),
    residual x's dtype in the output's shape, both on x's device."""
    if scale is not None:
        if not isinstance(scale, torch.Tensor) or scale.dtype != torch.float32 or tuple(scale.shape) != (n,):
            got = f"{scale.dtype} {tuple(scale.shape)}" if isinstance(scale, torch.Tensor) else type(scale).__name__
            raise ValueError(f"out_scale: expected a float32 tensor of shape ({n},), one per output channel, got {got}")
        if scale.device != device:
            raise ValueError(f"out_scale: expected device {device}, got {scale.device}")
    if residual is not None:
        out_shape = (x.shape[0], n, *conv2d_output_size(x.shape[2], x.shape[3], *geometry))
        if not isinstance(residual, torch.Tensor) or residual.dtype != x.dtype or tuple(residual.shape) != out_shape:
            got = (f"{residual.dtype} {tuple(residual.shape)}" if isinstance(residual, torch.Tensor)
                   else type(residual).__name__)
            raise ValueError(f"residual: expected a {x.dtype} tensor of the output's shape {out_shape}, got {got}")
        if residual.device != device:
            raise ValueError(f"residual: expected device {device}, got {residual.device}")
    if not isinstance(relu, bool):
        raise TypeError(f"relu: expected a bool, got {type(relu).__name__}")


def _conv_args(fmt: str, x, bias, rest, int8: bool = False):
    """(weight block, (kernel, stride, padding, dilation, groups[, act_scale, out_scale,
    residual, relu]), backend, rows N, device), checked."""
    w, conv = rest[:_n_w(fmt)], _with_defaults(rest[_n_w(fmt):], _CONV_INT8_DEFAULTS if int8 else _CONV_DEFAULTS)
    n, k, device = check_weight(fmt, w)
    check_conv(x, bias, n, k, device, *conv[:5])
    if int8:
        check_act_scale(conv[6])
        check_epilogue(x, *conv[7:], n, conv[:4], device)
    return w, (*conv[:5], *conv[6:]), conv[5], n, device


def _conv_impl(op: str, fmt: str):
    int8 = "_int8_" in op

    def impl(x, bias, *rest):
        w, conv, backend, _, device = _conv_args(fmt, x, bias, rest, int8)
        _check_int8(op, fmt, w)
        return dispatch.call(op, device, backend, x, bias, *w, *conv)

    def fake(x, bias, *rest):
        _, (kernel, stride, padding, dilation, *_), _, n, _ = _conv_args(fmt, x, bias, rest, int8)
        oh, ow = conv2d_output_size(x.shape[2], x.shape[3], kernel, stride, padding, dilation)
        return torch.empty((x.shape[0], n, oh, ow), dtype=x.dtype, device=x.device,
                           memory_format=conv2d_output_format(x))

    return impl, fake


def _attention_impl(q, k, v, key_padding_mask, attn_mask, causal, scale, backend="auto"):
    check_attention(q, k, v, key_padding_mask, attn_mask, causal)
    return dispatch.call("attention", q.device, backend, q, k, v, key_padding_mask, attn_mask, causal, scale)


def _attention_fake(q, k, v, key_padding_mask, attn_mask, causal, scale, backend="auto"):
    check_attention(q, k, v, key_padding_mask, attn_mask, causal)
    return q.new_empty((*q.shape[:3], v.shape[3]))


# ---------------------------------------------------------------------- autograd
# Masks, seeds and scalars are not differentiable; x and bias are, through the effective weight.


def _grad_backend(backend: str, op: str, device: torch.device) -> str:
    """The forward's backend for the backward's materialise if it has one, else the automatic choice."""
    name = dispatch.requested(backend)
    if name != dispatch.AUTO and op in dispatch.get(name).ops:
        return name
    return dispatch.automatic(op, device).name


def _weight_setup(fmt: str, defaults: tuple):
    """setup_context of an op (x, bias, <weight block>, ...): keeps the mask tensors and the rest."""
    def setup(ctx, inputs, output):
        x, bias = inputs[:2]
        w, after = inputs[2:2 + _n_w(fmt)], _with_defaults(inputs[2 + _n_w(fmt):], defaults)
        ctx.save_for_backward(w[0], w[1])
        ctx.meta = (fmt, w[2:], after, x.shape, x.dtype, None if bias is None else bias.dtype)
        ctx.n_inputs = 2 + len(w) + len(after)

    return setup


def _materialized(ctx, backend: str, row_begin: int = 0, row_end: int | None = None) -> torch.Tensor:
    fmt, scalars = ctx.meta[:2]
    w = (*ctx.saved_tensors, *scalars)
    op = f"materialize_{fmt}"
    return call(op, *w, _grad_backend(backend, op, w[0].device), row_begin, row_end)


def _grads(ctx, grad_x: torch.Tensor, grad_bias: torch.Tensor) -> tuple:
    dtype, bias_dtype = ctx.meta[4:]
    return (grad_x.to(dtype), None if bias_dtype is None else grad_bias.to(bias_dtype)) + (None,) * (ctx.n_inputs - 2)


def _linear_backward(ctx, grad):
    w = _materialized(ctx, *ctx.meta[2])  # (backend, row_begin, row_end)
    g32 = grad.to(torch.float32)
    return _grads(ctx, g32 @ w, g32.reshape(-1, w.shape[0]).sum(0))


def _conv_backward(ctx, grad):
    kernel, stride, padding, dilation, groups, backend = ctx.meta[2]
    w = _materialized(ctx, backend)
    g32 = grad.to(torch.float32)
    grad_x = torch.nn.grad.conv2d_input(ctx.meta[3], w.reshape(w.shape[0], -1, *kernel), g32, stride, padding,
                                        dilation, groups)
    return _grads(ctx, grad_x, g32.sum((0, 2, 3)))


# ---------------------------------------------------------------------- schemas

_ROWS = "str backend='auto', int row_begin=0, int? row_end=None"
_CONV = "int[] kernel_size, int[] stride, int[] padding, int[] dilation, int groups, str backend='auto'"
_IMPL: dict[str, object] = {}


def _define(name: str, schema: str, impl, fake, backward=None, setup=None) -> None:
    LIB.define(f"{name}{schema}")
    LIB.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"slt_hw::{name}", fake, lib=LIB)
    if backward is not None:
        torch.library.register_autograd(f"slt_hw::{name}", backward, setup_context=setup, lib=LIB)
    _IMPL[name] = impl
    setattr(sys.modules[__name__], name, getattr(torch.ops.slt_hw, name))


for _fmt, _w in WEIGHT.items():
    _define(f"linear_{_fmt}", f"(Tensor x, Tensor? bias, {_w}, {_ROWS}) -> Tensor",
            *_linear_impl(f"linear_{_fmt}", _fmt), _linear_backward, _weight_setup(_fmt, _ROW_DEFAULTS))
    _define(f"linear_int8_{_fmt}", f"(Tensor x, Tensor? bias, {_w}, {_ROWS}) -> Tensor",
            *_linear_impl(f"linear_int8_{_fmt}", _fmt))
    _define(f"materialize_{_fmt}", f"({_w}, {_ROWS}) -> Tensor", *_materialize_impl(f"materialize_{_fmt}", _fmt))
    _define(f"conv2d_{_fmt}", f"(Tensor x, Tensor? bias, {_w}, {_CONV}) -> Tensor",
            *_conv_impl(f"conv2d_{_fmt}", _fmt), _conv_backward, _weight_setup(_fmt, _CONV_DEFAULTS))
    _define(f"conv2d_int8_{_fmt}", f"(Tensor x, Tensor? bias, {_w}, {_CONV}, str act_scale='patch', "
            "Tensor? out_scale=None, Tensor? residual=None, bool relu=False) -> Tensor",
            *_conv_impl(f"conv2d_int8_{_fmt}", _fmt))
_define("attention", "(Tensor q, Tensor k, Tensor v, Tensor? key_padding_mask, Tensor? attn_mask, bool causal, "
        "float scale, str backend='auto') -> Tensor", _attention_impl, _attention_fake)


# ---------------------------------------------------------------------- the entry


def _direct(args) -> bool:
    """Whether a call may skip the torch op: only autograd and tracing need it."""
    if (type(args[0]) is not torch.Tensor and isinstance(args[0], torch.Tensor)) or torch.compiler.is_compiling():
        return False  # fake / functional tensors, torch.compile, torch.export: the op (not a tensor: the checks)
    if torch.is_grad_enabled():
        for a in args:  # (a loop: half the time of any() over a generator, on every call)
            if isinstance(a, torch.Tensor) and a.requires_grad:
                return False
    return True


def call(op: str, *args) -> torch.Tensor:
    """Run `op` on its schema's arguments: its implementation directly, or the torch op when
    autograd or tracing needs it (same checks, same backend, same result)."""
    if _direct(args):
        return _IMPL[op](*args)
    return getattr(sys.modules[__name__], op)(*args)
