"""Epilogue fusion for packed CNNs: each packed convolution's following BatchNorm, residual add
and ReLU run inside the convolution (slt_conv2d_int8's out_scale, residual and relu), as torch's
fuse_fx folds a BatchNorm into a dense convolution. The SLT weight is the contract's and cannot
absorb a BatchNorm, but the epilogue can: eval-mode BatchNorm is a per-channel scale and shift.

On the CPU's implicit int8 GEMM the epilogue runs in the output tiles' store, so the BatchNorms,
the ReLUs and the adds no longer read and write the activations once more each (a CIFAR
ResNet-18 at batch 8: ~2 ms of torch ops in a ~15 ms forward, docs/benchmarks.md), and the
fused modules' calls skip the op layer once prepared.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import dispatch
from .._ops import conv2d_output_size, weight_args
from ..backends import cpu
from ..ops import _pair, conv2d
from .packed import MaskIdentity
from .packed_layers import SLTPackedLayer

_RELU_FUNCTIONS = (torch.relu, torch.relu_, F.relu)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)


class SLTFusedConv2d(nn.Module):
    """A packed convolution and its epilogue: relu(conv(x) · out_scale + bias + residual), each
    part optional (slt_conv2d_int8's, fused there; with float activations, torch ops after
    slt_conv2d). Shares `conv` (its masks, its int8 and act_scale settings) with the model it
    came from. forward(x, residual=None).

    With int8 activations on the CPU its calls are prepared (cpu.prepare_conv2d_int8): once a
    call has run through the op, calls like it (the same input shape and strides, the same
    weight, settings, threads and environment) run its kernels directly, the same bits,
    without the op layer's ~60 µs of checks and choices."""

    def __init__(self, conv: SLTPackedLayer, out_scale: torch.Tensor | None, bias: torch.Tensor | None,
                 relu: bool):
        super().__init__()
        if not isinstance(conv, SLTPackedLayer) or conv.kind != "conv2d":
            raise TypeError(f"conv: expected a packed convolution (SLTPackedLayer of kind 'conv2d'), got "
                            f"{type(conv).__name__}")
        self.conv = conv
        self.__dict__["_layer"] = conv  # (also plain: nn.Module's lookup of a submodule, ~1 µs, runs per call)
        k = conv.conv
        self._geometry = (k["kernel_size"], k["stride"], k["padding"], k["dilation"], k.get("groups", 1))
        self.register_buffer("out_scale", None if out_scale is None else
                             out_scale.detach().to(torch.float32).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).contiguous())
        self.relu = bool(relu)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        prep = self.__dict__.get("_prepared")
        if prep is not None and prep.call is not None and prep.current(self) and prep.call.matches(x, residual):
            return prep.call(x, residual)
        c = self._layer
        lin, out_scale, bias = c.copies[c.mask_index], self.out_scale, self.bias
        packed = lin.packed  # (re-validates buffers that were moved or replaced)
        settings = (packed, out_scale, bias, lin.int8, c.act_scale, lin.backend, self.relu)
        late = residual is not None and not self._fits(residual, x)
        epilogue = (out_scale, None, False) if late else (out_scale, residual, self.relu)
        y = conv2d(x, packed, bias, *self._geometry, lin.backend, int8=lin.int8, act_scale=c.act_scale,
                   epilogue=epilogue)
        if late:  # (a residual that broadcasts, or of another dtype: the add as traced, then the ReLU)
            y = y + residual
            return torch.relu(y) if self.relu else y
        if lin.int8:
            self._prepare(prep, settings, x, residual)
        return y

    def _prepare(self, prep: _Prepared | None, settings: tuple, x: torch.Tensor, residual) -> None:
        """After a call through the op: prepares calls like it (cpu.prepare_conv2d_int8), where
        the cpp backend ran it; gives up on a signature after a few tries."""
        signature = (x.shape, x.stride(), x.dtype, None if residual is None else (residual.shape, residual.stride()))
        if prep is None or not prep.owns(settings) or prep.signature != signature:
            prep = self.__dict__["_prepared"] = _Prepared(self, settings, signature)
        if prep.tries >= 3 or torch.compiler.is_compiling():
            return
        prep.tries += 1
        packed, out_scale, bias = settings[:3]
        fmt, w = weight_args(packed)
        if dispatch.select(f"conv2d_int8_{fmt}", x.device, settings[5]).name != "cpp":
            prep.tries = 3
            return
        kernel, stride, padding, dilation, groups = self._geometry
        prep.call = cpu.prepare_conv2d_int8(x, bias, *w, list(_pair(kernel)), list(_pair(stride)),
                                            list(_pair(padding)), list(_pair(dilation)), groups, settings[4],
                                            out_scale, residual, self.relu)

    def __getstate__(self):  # (copies and pickles leave the prepared call behind: it holds pointers)
        state = super().__getstate__().copy()
        state.pop("_prepared", None)
        return state

    def _fits(self, residual: torch.Tensor, x: torch.Tensor) -> bool:
        """Whether residual is what the fused epilogue takes: x's dtype and the output's shape."""
        oh, ow = conv2d_output_size(x.shape[2], x.shape[3], *self._geometry[:4])
        return residual.dtype == x.dtype and tuple(residual.shape) == (x.shape[0], self._layer.weight_shape[0], oh, ow)

    def extra_repr(self) -> str:
        return f"out_scale={self.out_scale is not None}, bias={self.bias is not None}, relu={self.relu}"


class _Prepared:
    """An SLTFusedConv2d's prepared call (or None, while it has none) and what it was made for."""

    __slots__ = ("settings", "signature", "call", "tries", "objects", "copies", "key", "lin", "masks", "flags")

    def __init__(self, module: SLTFusedConv2d, settings: tuple, signature: tuple):
        self.settings, self.signature, self.call, self.tries = settings, signature, None, 0
        # current()'s: what settings came from, each found again by a dict lookup
        c = module._layer
        self.copies, self.key = c._modules["copies"]._modules, str(c.mask_index)
        self.lin = self.copies[self.key]
        self.masks = MaskIdentity(self.lin)  # (its mask buffers, int8 op and backend)
        self.objects = (module.out_scale, module.bias)
        self.flags = (c.mask_index, c.act_scale, module.relu)

    def owns(self, settings: tuple) -> bool:
        """The same weight, scale and bias (the same objects) and settings."""
        mine = self.settings
        return all(a is b for a, b in zip(mine[:3], settings[:3], strict=True)) and mine[3:] == settings[3:]

    def current(self, module: SLTFusedConv2d) -> bool:
        """owns() of module's settings as they are now, without building them (~1 µs against ~6:
        the same layer, its mask buffers, the module's out_scale and bias, the same objects; the
        same int8 op, backend, act_scale and relu)."""
        c, lin, mine = module._layer, self.lin, module._buffers
        return self.copies.get(self.key) is lin and (c.mask_index, c.act_scale, module.relu) == self.flags and \
            self.masks.current(lin) and mine.get("out_scale") is self.objects[0] and \
            mine.get("bias") is self.objects[1]


class _Tracer(fx.Tracer):
    """Treats slt_hw's own modules as leaves (their forwards branch on their settings)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m).__module__.startswith("slt_hw.nn") or super().is_leaf_module(m, qualname)


def fuse_epilogues(model: nn.Module) -> fx.GraphModule:
    """`model` (eval mode) traced by torch.fx, with every packed convolution replaced by an
    SLTFusedConv2d together with what follows it of an eval-mode BatchNorm2d, an add of another
    tensor and a ReLU, in that order (the BatchNorm folded into its out_scale and bias, the other
    tensor its residual): an inference form of the model (the same outputs up to float rounding)
    sharing its packed layers, whose int8 convolutions' calls are prepared from their masks'
    second use. The rest of the model runs as traced. Raises ValueError for a BatchNorm
    in training mode (call model.eval() first) and for a model torch.fx cannot trace.
    Checkpoints: save and load the model itself (slt_hw.save / slt_hw.load), then fuse it."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # (fx's errors name the construct it cannot trace)
        raise ValueError(f"model: torch.fx cannot trace {type(model).__name__} ({e}); fuse_epilogues needs a "
                         "symbolically traceable forward") from e
    gm = fx.GraphModule(model, graph, class_name=f"Fused{type(model).__name__}")
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        conv = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(conv, SLTPackedLayer) and conv.kind == "conv2d" and len(node.args) == 1 and not node.kwargs:
            _fuse_at(gm, modules, node, conv)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _fuse_at(gm: fx.GraphModule, modules: dict, node: fx.Node, conv: SLTPackedLayer) -> None:
    """The convolution at node as an SLTFusedConv2d with what follows it, if anything (with
    nothing, still one: its calls are prepared)."""
    chain, last = [node], node
    scale, bias = None, None if conv.bias is None else conv.bias.detach().to(torch.float32)
    bn = _single_user(last)
    if bn is not None and bn.op == "call_module" and isinstance(modules.get(bn.target), nn.BatchNorm2d):
        scale, shift = _bn_fold(modules[bn.target], str(bn.target))
        if scale is not None:
            bias = shift if bias is None else bias * scale + shift
            chain.append(bn)
            last = bn
    residual = None
    add = _single_user(last)
    if add is not None and _is_add(add, last):
        other = add.args[1] if add.args[0] is last else add.args[0]
        if isinstance(other, fx.Node) and other is not last:
            residual = other
            chain.append(add)
            last = add
    relu = _single_user(last)
    fused_relu = relu is not None and _is_relu(relu, modules, last)
    if fused_relu:
        chain.append(relu)
        last = relu
    fused = SLTFusedConv2d(conv, scale, bias, fused_relu)
    with gm.graph.inserting_before(last):
        new = gm.graph.call_module(str(node.target), (node.args[0],) if residual is None else (node.args[0], residual))
    gm.add_submodule(str(node.target), fused)
    modules[str(node.target)] = fused
    last.replace_all_uses_with(new)
    for n in reversed(chain):
        gm.graph.erase_node(n)


def _single_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _bn_fold(bn: nn.BatchNorm2d, name: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """An eval-mode BatchNorm2d as (scale, shift) per channel: (None, None) where it normalises by
    the batch's own statistics (no running ones)."""
    if bn.training:
        raise ValueError(f"model: BatchNorm2d {name!r} is in training mode; fuse_epilogues folds running "
                         "statistics: call model.eval() first")
    if bn.running_mean is None or bn.running_var is None:
        return None, None
    scale = torch.rsqrt(bn.running_var.detach().to(torch.float32) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().to(torch.float32)
    shift = -bn.running_mean.detach().to(torch.float32) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().to(torch.float32)
    return scale, shift


def _is_add(node: fx.Node, operand: fx.Node) -> bool:
    """An add of two tensors, one of them operand (no alpha, no out); an in-place one only into
    operand (into the other tensor, its other readers would see the sum)."""
    if node.kwargs or len(node.args) != 2 or operand not in node.args:
        return False
    if node.op == "call_function" and node.target in _ADD_FUNCTIONS:
        return node.target is not operator.iadd or node.args[0] is operand
    return node.op == "call_method" and (node.target == "add" or (node.target == "add_" and node.args[0] is operand))


def _is_relu(node: fx.Node, modules: dict, operand: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.ReLU) and node.args == (operand,)
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        return node.args == (operand,) and set(node.kwargs) <= {"inplace"}
    return node.op == "call_method" and node.target in ("relu", "relu_") and node.args == (operand,)
