"""What a PE makes of the generator's lanes: the float32 effective weight of docs/rng.md §5-7.

The generator hands out (level, code); the scale s and the coat scales are per tensor, so a PE
(or the output stage after accumulation) applies them: w0 = s·(±1), fl(fl(v·2^-16)·s) or
fl(Z·s); m = the float32 prefix sum of the first `level` coat scales; w_eff = fl(w0·m), +0.0
where m = 0. Tests hold this to `PackedWeight.materialize` bit for bit.
"""

from __future__ import annotations

import torch

from ..contract import Dist
from ..formats import Format, PackedWeight
from .params import RtlParams


def w0_from_codes(p: RtlParams, codes: torch.Tensor, scale: float) -> torch.Tensor:
    s = torch.tensor(scale, dtype=torch.float32)
    if p.dist is Dist.SIGNED_CONSTANT:
        return torch.where(codes.bool(), -s, s)
    if p.dist is Dist.UNIFORM:
        v = torch.where(codes >= 1 << 16, codes - (1 << 17), codes)  # 17-bit two's complement
        return (v.to(torch.float32) * (2.0**-16)) * s
    return codes.to(torch.int32).view(torch.float32) * s


def effective(p: RtlParams, w: PackedWeight, levels: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(N, K) float32 from (N, K) int64 levels and codes."""
    w0 = w0_from_codes(p, codes, w.scale)
    if p.format is Format.FROZEN:
        return torch.where(levels.bool(), w0, 0.0)
    prefix = [torch.zeros((), dtype=torch.float32)]
    for g in w.coat_scales.to(torch.float32):  # the contract's accumulation order
        prefix.append(prefix[-1] + g)
    m = torch.stack(prefix)[levels]
    return torch.where(m != 0, w0 * m, 0.0)
