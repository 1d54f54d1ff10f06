"""Defensive loading of the native extension `slt_hw._C`.

Importing slt_hw never fails because the extension is missing, stale or ABI-mismatched: the
reason is kept for `slt-hw info` and for the backend registry, and the reference backend works.
"""

from __future__ import annotations

import functools
import importlib


@functools.cache
def load():
    """(module or None, reason or None)."""
    try:
        mod = importlib.import_module("slt_hw._C")
    except ImportError as e:  # not built, or built for another Python/ABI
        return None, f"slt_hw._C not importable ({e}); rebuild with `pip install -e . --no-build-isolation`"
    from .contract import CONTRACT_VERSION

    if mod.contract_version() != CONTRACT_VERSION:
        return None, (
            f"slt_hw._C implements contract v{mod.contract_version()}, the Python package "
            f"v{CONTRACT_VERSION}: rebuild the extension"
        )
    return mod, None


def native():
    """The extension module, or None."""
    return load()[0]


def require():
    mod, why = load()
    if mod is None:
        raise RuntimeError(why)
    return mod
