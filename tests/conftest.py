"""Test set-up: Triton's interpreter where there is no GPU (set before any kernel is defined),
tests/ on sys.path for the shared golden-vector helpers, and shared fixtures."""

import os
import pathlib
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture
def fresh_cache(monkeypatch):
    """An empty, enabled table-lookup layout cache in place of the process's
    (slt_hw/backends/layout_cache.py)."""
    from slt_hw.backends import cpu, layout_cache

    cache = layout_cache.LayoutCache()
    monkeypatch.setattr(cpu, "LUT_PLANES", cache)
    monkeypatch.delenv(layout_cache.ENV, raising=False)
    return cache
