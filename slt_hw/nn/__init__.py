"""SLT layers. Inference (packed) modules now; the search layers arrive with the search issue."""

from .packed import SLTPackedLinear

__all__ = ["SLTPackedLinear"]
