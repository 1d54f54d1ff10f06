"""Hardware of the weight-generation contract: an Amaranth HDL generator of the on-chip weight
generator and mask decoder (docs/hardware.md). Amaranth loads only when this package does."""

from .params import RtlParams
from .top import WeightGenerator

__all__ = ["RtlParams", "WeightGenerator"]
