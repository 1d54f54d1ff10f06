"""Hardware of the weight-generation contract: an Amaranth HDL generator of the on-chip weight
generator and mask decoder (docs/hardware.md). Amaranth loads only with `slt_hw.rtl.top` and the
modules that build hardware, so `slt-hw` runs without it."""

from .params import RtlParams

__all__ = ["RtlParams"]
