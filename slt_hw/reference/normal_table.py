"""The contract's normal-distribution table (docs/rng.md, "normal").

`build_table()` is the definition; `slt_hw/_normal_table.py` and `csrc/core/slt_normal_table.h`
hold its output as float32 bit patterns (written by tools/gen_normal_table.py, checked by tests),
so no backend depends on a platform's erfinv/log/sin.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from ..contract import f32_bits, to_f32

NORMAL_TABLE_BITS = 12
NORMAL_TABLE_SIZE = 1 << NORMAL_TABLE_BITS


def build_table() -> list[float]:
    """Z[i] = f32(c · Φ⁻¹((i + ½)/4096)), mirrored so Z[i] = −Z[4095 − i] exactly,
    with c = 1/√mean(q²) so the table has unit variance and zero mean."""
    half = NORMAL_TABLE_SIZE // 2
    upper = [NormalDist().inv_cdf((i + 0.5) / NORMAL_TABLE_SIZE) for i in range(half, NORMAL_TABLE_SIZE)]
    c = 1.0 / math.sqrt(math.fsum(q * q for q in upper) / half)
    upper32 = [to_f32(c * q) for q in upper]
    return [-v for v in reversed(upper32)] + upper32


def table_bits() -> list[int]:
    return [f32_bits(v) for v in build_table()]
