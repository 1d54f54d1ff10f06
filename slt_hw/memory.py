"""memory_report: what a model costs dense and as an SLT checkpoint, per layer, in bits.

The checkpoint columns count exactly the tensors `slt_hw.save` writes (masks as information bits
rounded up to whole bytes per tensor, coat scales, biases and other dense state, seeds); the
JSON header (names, shapes, scales, architecture) is reported separately by `save` as the
difference between the file size and the payload.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

from rich.table import Table
from torch import nn

from .conversion import pack, slt_layer_names
from .formats import Format
from .nn.base import SLTLayer


@dataclass(frozen=True)
class LayerMemory:
    name: str
    shape: tuple[int, ...]
    format: str
    masks: int  # mask copies (unshared folding masks)
    weights: int  # N·K
    dense_fp32_bits: int
    dense_bf16_bits: int
    binary_bits: int  # one bit per weight per mask copy
    mask_bits: int  # information bits of this layer's format (all copies)
    stored_bits: int  # what the checkpoint holds for this layer: masks (whole bytes) + coat scales + bias


@dataclass(frozen=True)
class MemoryReport:
    layers: list[LayerMemory]
    seed_bits: int  # 64 per distinct seed
    dense_extra_bits: int  # other parameters and buffers (e.g. normalization statistics)
    totals: dict = field(default_factory=dict)

    @property
    def payload_bits(self) -> int:
        return sum(entry.stored_bits for entry in self.layers) + self.seed_bits + self.dense_extra_bits

    @property
    def payload_bytes(self) -> int:
        return self.payload_bits // 8

    def table(self):
        """A rich Table: `console.print(report.table())` draws it, `print(report.table())` prints it as text."""
        t = _TextTable(title="memory: dense vs SLT checkpoint (bits)")
        for col in ("layer", "shape", "format", "dense fp32", "dense bf16", "binary", "mask", "stored",
                    "bits/weight"):
            t.add_column(col, justify="left" if col in ("layer", "format") else "right")
        for e in self.layers:
            t.add_row(e.name, "×".join(map(str, e.shape)), e.format + (f"×{e.masks}" if e.masks > 1 else ""),
                      f"{e.dense_fp32_bits:,}", f"{e.dense_bf16_bits:,}", f"{e.binary_bits:,}",
                      f"{e.mask_bits:,}", f"{e.stored_bits:,}", f"{e.stored_bits / e.weights:.3f}")
        n = sum(e.weights for e in self.layers)
        t.add_row("seeds + dense extras", "", "", "", "", "", "", f"{self.seed_bits + self.dense_extra_bits:,}", "")
        t.add_row("total", "", "", f"{32 * n:,}", f"{16 * n:,}", f"{sum(e.binary_bits for e in self.layers):,}",
                  f"{sum(e.mask_bits for e in self.layers):,}", f"{self.payload_bits:,}",
                  f"{self.payload_bits / n:.3f}", style="bold")
        return t


class _TextTable(Table):
    """A rich Table whose str() is its text rendering, so plain print() shows the table, not an object repr."""

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(file=io.StringIO(), width=200, color_system=None)  # wide enough: no wrapped cells
        console.print(self)
        return console.file.getvalue().rstrip("\n")


def memory_report(model: nn.Module) -> MemoryReport:
    """Bits per layer and in total (search or packed model); payload_bytes equals the checkpoint's."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    packed = pack(model) if any(isinstance(m, SLTLayer) for m in model.modules()) else model
    names = slt_layer_names(packed)
    if not names:
        raise ValueError("model: expected a model with SLT layers (search or packed form)")
    layers, seeds = [], set()
    for name in names:
        m = packed.get_submodule(name) if name else packed
        n = m.packed[0].out_features * m.packed[0].in_features
        mask_bits = stored = 0
        for p in m.packed:
            b = p.mask_bits()
            mask_bits += b
            stored += 8 * math.ceil(b / 8)
            if p.format is Format.MULTICOAT:
                stored += 32 * p.num_coats
            seeds.add(p.seed)
        if m.bias is not None:
            stored += m.bias.numel() * m.bias.element_size() * 8
        layers.append(LayerMemory(name, tuple(m.weight_shape), m.packed[0].format.value, len(m.packed), n, 32 * n,
                                  16 * n, n * len(m.packed), mask_bits, stored))
    skip = tuple(f"{n}." for n in names if n)
    extra = 0 if "" in names else sum(
        t.numel() * t.element_size() * 8 for k, t in packed.state_dict().items() if not k.startswith(skip))
    return MemoryReport(layers, 64 * len(seeds), extra)
