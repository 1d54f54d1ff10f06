"""Defensive loading of the native extension `slt_hw._C`, and a packed weight as its `WeightDesc`.

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


def weight_desc(mod, w: tuple):
    """A weight argument block (slt_hw._ops.WEIGHT) as the extension's WeightDesc, plus the
    tensors its pointers point into (keep them alive until the call returns). Positional
    arguments: pybind11 parses keywords several times slower, and this runs on every call."""
    t0, t1 = w[0].contiguous(), w[1].contiguous()
    if t0.dim() == 3:  # planes (C, N, W), coat_scales (C,)
        _, _, k0, k1, k, dist, scale = w
        desc = mod.WeightDesc(t0.shape[1], k, k0, k1, dist, scale, t0.data_ptr(), t0.shape[0], t1.data_ptr(),
                              0, 0, 0, 0, 0, 0, 0)
    else:  # free_bits, offsets (N, blocks)
        _, _, k0, k1, fk0, fk1, k, dist, scale, prune, lock = w
        desc = mod.WeightDesc(t1.shape[0], k, k0, k1, dist, scale, 0, 0, 0, t0.data_ptr(), t0.numel(),
                              t1.data_ptr(), fk0, fk1, prune, lock)
    return desc, (t0, t1)
