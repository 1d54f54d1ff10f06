"""Inference modules: a packed SLT layer holds seeds and bit-packed masks, never weights."""

from __future__ import annotations

import torch
from torch import nn

from .. import _ops, dispatch
from ..backends import cpu
from ..contract import Dist
from ..formats import Format, PackedWeight


class SLTPackedLinear(nn.Module):
    """y = x W_effᵀ + b with W_eff regenerated from (seed, name) and the packed mask.

    The masks are buffers (they move with `.to()` and live in the state dict); the seed, name,
    distribution, scale and thresholds are plain attributes. int8=True runs slt_linear_int8 (x
    quantized per token, exact integer sums; signed-constant weights only), as torch's
    dynamically quantized linear does for a dense layer.
    """

    def __init__(self, packed: PackedWeight, bias: torch.Tensor | None = None, backend: str | None = None,
                 int8: bool = False):
        super().__init__()
        if not isinstance(packed, PackedWeight):
            raise TypeError(f"packed: expected a slt_hw.PackedWeight, got {type(packed).__name__}")
        if len(packed.shape) != 2:
            raise ValueError(f"packed: expected a 2-D (out, in) weight for a linear layer, got {packed.shape}")
        self.in_features, self.out_features = packed.in_features, packed.out_features
        self.backend = backend
        self._meta = packed
        self.format = packed.format
        if packed.format is Format.FROZEN:
            self.register_buffer("free_bits", packed.free_bits)
            self.register_buffer("offsets", packed.offsets, persistent=False)  # derived from the seed
        else:
            self.register_buffer("planes", packed.planes)
            self.register_buffer("coat_scales", packed.coat_scales)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self._fmt, w = _ops.weight_args(packed)
        self._scalars = w[2:]  # keys, geometry, value rule (not the masks)
        self.int8 = int8  # (sets the op)

    @property
    def int8(self) -> bool:
        """Whether forward runs slt_linear_int8 (settable; signed-constant weights only)."""
        return self._op.startswith("linear_int8")

    @int8.setter
    def int8(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"int8: expected a bool, got {type(value).__name__}")
        if value and self._meta.dist is not Dist.SIGNED_CONSTANT:
            raise ValueError(f"int8: int8 activations need the signed_constant distribution, got "
                             f"{self._meta.dist.value}")
        self._op = f"linear_int8_{self._fmt}" if value else f"linear_{self._fmt}"

    @property
    def packed(self) -> PackedWeight:
        """The packed weight, rebuilt (and re-validated) if the buffers were moved or replaced."""
        p = self._meta
        if self.format is Format.FROZEN:
            if self.free_bits is not p.free_bits:
                p = PackedWeight(p.shape, p.seed, p.name, p.dist, p.scale, p.format, free_bits=self.free_bits,
                                 prune_threshold=p.prune_threshold, lock_threshold=p.lock_threshold)
        elif self.planes is not p.planes or self.coat_scales is not p.coat_scales:
            p = PackedWeight(p.shape, p.seed, p.name, p.dist, p.scale, p.format, planes=self.planes,
                             coat_scales=self.coat_scales)
        if p is not self._meta:  # (nn.Module's __setattr__ costs ~5 µs on every forward otherwise)
            self._meta = p
        return p

    def weight_args(self) -> tuple:
        """The op's argument block of this layer's weight (its buffers as they are now)."""
        masks = (self.free_bits, self.offsets) if self.format is Format.FROZEN else (self.planes, self.coat_scales)
        return (*masks, *self._scalars)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prep = self.__dict__.get("_prepared")
        if prep is not None and prep.call is not None and prep.current(self) and prep.call.matches(x):
            return prep.call(x)
        compiling = torch.compiler.is_compiling()
        if not compiling:
            _ = self.packed  # re-validates buffers that were moved or replaced
        y = _ops.call(self._op, x, self.bias, *self.weight_args(), self.backend or "auto", 0, None)
        if not compiling:
            self._prepare(prep, x)
        return y

    def _prepare(self, prep: _PreparedLinear | None, x: torch.Tensor) -> None:
        """After a call through the op: prepares calls like it on the CPU's cpp backend
        (cpu.prepare_linear: a C++ plan, the same bits, without the op layer's ~25 µs of Python);
        gives up on an input signature after a few tries."""
        signature = (x.shape, x.stride(), x.dtype, x.device)
        if prep is None or not prep.current(self) or prep.signature != signature:
            prep = self.__dict__["_prepared"] = _PreparedLinear(self, signature)
        if prep.tries >= 3:
            return
        prep.tries += 1
        if x.device.type != "cpu" or dispatch.select(self._op, x.device, self.backend).name != "cpp":
            prep.tries = 3
            return
        prep.call = cpu.prepare_linear(x, self.bias, *self.weight_args(), 0, self.out_features, int8=self.int8)

    def __getstate__(self):  # (copies and pickles leave the prepared call behind: it holds pointers)
        state = super().__getstate__().copy()
        state.pop("_prepared", None)
        return state

    def extra_repr(self) -> str:
        p = self._meta
        return (f"in_features={self.in_features}, out_features={self.out_features}, format={p.format.value}, "
                f"dist={p.dist.value}, seed={p.seed}, name={p.name!r}, bias={self.bias is not None}"
                + (", int8=True" if self.int8 else ""))


class MaskIdentity:
    """An SLTPackedLinear's mask buffers (the objects), op and backend as they were; current()
    says whether they still are (~0.3 µs: what a prepared call was made for, checked per call
    by _PreparedLinear and fuse.py's prepared convolutions)."""

    __slots__ = ("names", "objects", "flags")

    def __init__(self, module: SLTPackedLinear):
        self.names = ("free_bits", "offsets") if module.format is Format.FROZEN else ("planes", "coat_scales")
        self.objects = tuple(module._buffers.get(n) for n in self.names)
        self.flags = (module._op, module.backend)

    def current(self, module: SLTPackedLinear) -> bool:
        bufs, (a, b) = module._buffers, self.objects
        return bufs.get(self.names[0]) is a and bufs.get(self.names[1]) is b and \
            (module._op, module.backend) == self.flags


class _PreparedLinear:
    """An SLTPackedLinear's prepared call (or None, while it has none) and what it was made for:
    its masks, op and backend (MaskIdentity) and its bias (the same object)."""

    __slots__ = ("signature", "call", "tries", "masks", "bias")

    def __init__(self, module: SLTPackedLinear, signature: tuple):
        self.signature, self.call, self.tries = signature, None, 0
        self.masks, self.bias = MaskIdentity(module), module.bias

    def current(self, module: SLTPackedLinear) -> bool:
        return module.bias is self.bias and self.masks.current(module)
