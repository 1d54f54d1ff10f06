"""slt_hw: strong lottery tickets end to end.

Random weights are never stored: every backend regenerates them from (seed, tensor name,
index) under one contract (docs/rng.md); only bit-packed supermasks are kept.

Importing slt_hw touches neither Triton nor CUDA and works without the native extension.
"""

from ._version import __version__
from .contract import CONTRACT_VERSION, Dist, derive_key
from .formats import Format, PackedWeight, pack_binary, pack_frozen, pack_multicoat
from .ops import slt_linear

__all__ = [
    "CONTRACT_VERSION", "Dist", "Format", "PackedWeight", "__version__", "derive_key",
    "pack_binary", "pack_frozen", "pack_multicoat", "slt_linear",
]
