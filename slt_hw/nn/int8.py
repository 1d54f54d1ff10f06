"""Int8 activations for a whole packed model: the SLT counterpart of torch's quantize_dynamic."""

from __future__ import annotations

from torch import nn

from .._ops import check_act_scale
from ..contract import Dist
from .attention import SLTMultiheadAttention
from .packed import SLTPackedLinear
from .packed_layers import SLTPackedLayer


def set_int8_activations(model: nn.Module, enabled: bool = True, *, act_scale: str = "patch") -> int:
    """Switches every packed linear and convolution of `model` whose weights are signed constant
    to int8 activations (enabled: slt_linear_int8, slt_conv2d_int8) or back to float, in place,
    as torch's quantize_dynamic does for dense layers; returns how many it switched. The four
    projections of a packed attention layer switch together (slt_mha(int8=True)), where all
    four are signed constant. Other distributions keep float activations: the int8 path has
    none. act_scale: the convolutions' activation scales (slt_conv2d_int8's: "patch", one per
    output pixel's patch, or "image", one per image; linears always quantize per token). A
    run-time setting, like eval(): checkpoints do not store it (call it again on a model from
    slt_hw.load)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected a bool, got {type(enabled).__name__}")
    check_act_scale(act_scale)
    for m in model.modules():
        if isinstance(m, SLTPackedLayer) and m.kind == "conv2d":
            m.act_scale = act_scale
    skip = set()
    for a in model.modules():
        if isinstance(a, SLTMultiheadAttention):
            lins = [m for m in a.modules() if isinstance(m, SLTPackedLinear)]
            if not all(m.packed.dist is Dist.SIGNED_CONSTANT for m in lins):
                skip |= {id(m) for m in lins}  # (all four or none)
    n = 0
    for m in model.modules():
        if isinstance(m, SLTPackedLinear) and id(m) not in skip and m.packed.dist is Dist.SIGNED_CONSTANT:
            m.int8 = enabled
            n += 1
    return n
