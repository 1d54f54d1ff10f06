"""Kernel layouts derived from a tensor, cached per source tensor.

A kernel may read a tensor faster in a form of its own: the CPU table lookups read a binary
signed-constant weight as its two planes P = mask & ~sign and N = mask & sign, each word's rows
side by side (csrc/cpu/linear_avx2lut.cpp; AVX-512's as base-3 codes, AVX-512 VNNI's int8 panels
and the implicit-GEMM convolutions as the panels' byte masks), which costs them the contract's
sign hash and the mask transposes on every call when they start from the mask as stored. Like a prepacked weight
in torch's quantized linear, the layout is built once and reused, but only for a mask that is
used again unchanged: it is built on the second call that sees the same tensor at the same
version (a mask made anew every call, as in training, never pays for it), and dropped when the
tensor is freed or modified in place (`_version`). A tensor created under torch.inference_mode
has no version counter, so nothing is cached for it.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch

ENV = "SLT_HW_CPU_LAYOUT_CACHE"
MODES = ("on", "off")


@dataclass
class _Layout:
    uses: int = 1
    value: torch.Tensor | None = None


@dataclass
class _Entry:
    ref: weakref.ref
    version: int
    layouts: dict[Hashable, _Layout] = field(default_factory=dict)  # (oldest use first)


class LayoutCache:
    """layout = cache.get(src, key, build): build() once src has been seen `min_uses` times
    with the same key and version, then the stored result; None before that or when disabled
    (SLT_HW_CPU_LAYOUT_CACHE=off).

    A tensor keeps a layout per key, counted apart, up to `per_tensor` of them (the least
    recently used dropped past that): a mask that two kernels read in turn (on an AVX-512 VNNI
    CPU, int8 activations at 16 rows and at 20: AVX-512's codes and the VNNI panels' masks)
    keeps both layouts, where one slot per tensor had each key evict the other and neither was
    built."""

    def __init__(self, min_uses: int = 2, per_tensor: int = 4):
        if min_uses < 1:
            raise ValueError(f"min_uses: expected an int >= 1, got {min_uses!r}")
        if per_tensor < 1:
            raise ValueError(f"per_tensor: expected an int >= 1, got {per_tensor!r}")
        self.min_uses = min_uses
        self.per_tensor = per_tensor
        self._entries: dict[int, _Entry] = {}

    @staticmethod
    def enabled() -> bool:
        mode = os.environ.get(ENV, "on") or "on"
        if mode not in MODES:
            raise ValueError(f"{ENV}: expected one of {list(MODES)}, got {mode!r}")
        return mode == "on"

    def get(self, src: torch.Tensor, key: Hashable, build: Callable[[], torch.Tensor]) -> torch.Tensor | None:
        if not self.enabled() or src.is_inference():  # (no version counter: a change would go unseen)
            return None
        ident, version = id(src), src._version
        entry = self._entries.get(ident)
        if entry is None or entry.ref() is not src or entry.version != version:
            entry = _Entry(weakref.ref(src, self._forget(ident)), version)
            self._entries[ident] = entry
        layout = entry.layouts.pop(key, None)
        if layout is None:
            layout = _Layout()
            while len(entry.layouts) >= self.per_tensor:
                del entry.layouts[next(iter(entry.layouts))]
        else:
            layout.uses += 1
        entry.layouts[key] = layout  # (now the most recently used)
        if layout.value is None and layout.uses >= self.min_uses:
            layout.value = build()
        return layout.value

    def peek(self, src: torch.Tensor, key: Hashable) -> torch.Tensor | None:
        """The layout stored for src under key, if one is (not a use: nothing is counted or built)."""
        if not self.enabled() or src.is_inference():
            return None
        entry = self._entries.get(id(src))
        if entry is None or entry.ref() is not src or entry.version != src._version:
            return None
        layout = entry.layouts.get(key)
        return None if layout is None else layout.value

    def _forget(self, ident: int) -> Callable[[weakref.ref], None]:
        def drop(ref: weakref.ref) -> None:
            entry = self._entries.get(ident)
            if entry is not None and entry.ref is ref:
                del self._entries[ident]
        return drop

    def clear(self) -> None:
        """Drops every stored layout (they are rebuilt on later calls)."""
        self._entries.clear()

    def _values(self, entries) -> list[torch.Tensor]:
        return [lay.value for e in entries for lay in e.layouts.values() if lay.value is not None]

    def nbytes(self) -> int:
        """Memory the stored layouts hold."""
        return sum(v.numel() * v.element_size() for v in self._values(self._entries.values()))

    def held(self, src: torch.Tensor) -> int:
        """Memory the layouts stored for tensor `src` hold (0: none)."""
        entry = self._entries.get(id(src))
        ok = entry is not None and entry.ref() is src
        return sum(v.numel() * v.element_size() for v in self._values([entry])) if ok else 0

    def __len__(self) -> int:
        """How many layouts are stored (a tensor may hold several)."""
        return len(self._values(self._entries.values()))
