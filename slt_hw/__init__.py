"""slt_hw: strong lottery tickets end to end.

Random weights are never stored: every backend regenerates them from (seed, tensor name,
index) under one contract (docs/rng.md); only bit-packed supermasks are kept.

Importing slt_hw touches neither Triton nor CUDA and works without the native extension.
"""

from . import backends  # noqa: F401  (registers the backends with slt_hw.dispatch)
from ._version import __version__
from .contract import CONTRACT_VERSION, Dist, derive_key
from .formats import Format, PackedWeight, pack_binary, pack_frozen, pack_multicoat
from .ops import slt_linear

# search, conversion and checkpoints import lazily: `import slt_hw` stays light
_LAZY = {"convert": "conversion", "pack": "conversion", "export_dense": "conversion", "save": "checkpoint",
         "load": "checkpoint", "CheckpointError": "checkpoint", "memory_report": "memory",
         "find": "train", "FindConfig": "train", "slt_mha": "mha", "KVCache": "mha"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'slt_hw' has no attribute {name!r}")


__all__ = [
    "CONTRACT_VERSION", "CheckpointError", "Dist", "FindConfig", "Format", "KVCache", "PackedWeight", "__version__",
    "convert", "derive_key", "export_dense", "find", "load", "memory_report", "pack", "pack_binary",
    "pack_frozen", "pack_multicoat", "save", "slt_linear", "slt_mha",
]
