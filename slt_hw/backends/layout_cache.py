"""Kernel layouts derived from a tensor, cached per source tensor.

A kernel may read a tensor faster in a form of its own: the CPU table lookups read a binary
signed-constant weight as its two planes P = mask & ~sign and N = mask & sign, each word's rows
side by side (csrc/cpu/linear_avx2lut.cpp), which costs them the contract's sign hash and the
mask transposes on every call when they start from the mask as stored. Like a prepacked weight
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
from dataclasses import dataclass

import torch

ENV = "SLT_HW_CPU_LAYOUT_CACHE"
MODES = ("on", "off")


@dataclass
class _Entry:
    ref: weakref.ref
    version: int
    key: Hashable
    uses: int = 1
    value: torch.Tensor | None = None


class LayoutCache:
    """layout = cache.get(src, key, build): build() once src has been seen `min_uses` times
    with the same key and version, then the stored result; None before that or when disabled
    (SLT_HW_CPU_LAYOUT_CACHE=off)."""

    def __init__(self, min_uses: int = 2):
        if min_uses < 1:
            raise ValueError(f"min_uses: expected an int >= 1, got {min_uses!r}")
        self.min_uses = min_uses
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
        if entry is None or entry.ref() is not src or entry.version != version or entry.key != key:
            entry = _Entry(weakref.ref(src, self._forget(ident)), version, key)
            self._entries[ident] = entry
        else:
            entry.uses += 1
        if entry.value is None and entry.uses >= self.min_uses:
            entry.value = build()
        return entry.value

    def peek(self, src: torch.Tensor, key: Hashable) -> torch.Tensor | None:
        """The layout stored for src under key, if one is (not a use: nothing is counted or built)."""
        if not self.enabled() or src.is_inference():
            return None
        entry = self._entries.get(id(src))
        if entry is None or entry.ref() is not src or entry.version != src._version or entry.key != key:
            return None
        return entry.value

    def _forget(self, ident: int) -> Callable[[weakref.ref], None]:
        def drop(ref: weakref.ref) -> None:
            entry = self._entries.get(ident)
            if entry is not None and entry.ref is ref:
                del self._entries[ident]
        return drop

    def clear(self) -> None:
        """Drops every stored layout (they are rebuilt on later calls)."""
        self._entries.clear()

    def nbytes(self) -> int:
        """Memory the stored layouts hold."""
        return sum(e.value.numel() * e.value.element_size() for e in self._entries.values() if e.value is not None)

    def held(self, src: torch.Tensor) -> int:
        """Memory the layout stored for tensor `src` holds (0: none)."""
        entry = self._entries.get(id(src))
        ok = entry is not None and entry.value is not None and entry.ref() is src
        return entry.value.numel() * entry.value.element_size() if ok else 0

    def __len__(self) -> int:
        return sum(e.value is not None for e in self._entries.values())
