"""Model-level helpers: iterate SLT layers, set sparsities, global thresholds.

A global threshold is one τ per coat over all layers' |scores| (frozen weights counted as in
masks.py). It is recomputed by a forward pre-hook on the model before every forward, so it
always matches the current scores; `pack` recomputes it too.
"""

from __future__ import annotations

import torch
from torch import nn

from .masks import coat_thresholds
from .threshold import check_sparsity


def slt_layers(model: nn.Module):
    from ..nn.base import SLTLayer

    return [m for m in model.modules() if isinstance(m, SLTLayer)]


def set_sparsity(model: nn.Module, sparsity: float) -> None:
    """Set the (coat-1) sparsity of every SLT layer and of the model's global threshold."""
    check_sparsity(sparsity)
    for layer in slt_layers(model):
        layer.set_sparsity(sparsity)
    if getattr(model, "_slt_global_sparsity", None) is not None:
        model._slt_global_sparsity = float(sparsity)


def _global_pre_hook(module: nn.Module, args) -> None:
    update_global_thresholds(module)


def global_threshold(model: nn.Module, sparsity: float | None = None) -> nn.Module:
    """Rank all SLT layers' scores together (one threshold per coat). Returns the model."""
    layers = slt_layers(model)
    if not layers:
        raise ValueError("model: expected a model with SLT layers (use slt_hw.convert first)")
    cfg = {(layer.num_coats, layer.coat_sparsities) for layer in layers}
    if len(cfg) != 1:
        raise ValueError(f"model: a global threshold needs one coat configuration in all layers, got {cfg}")
    s = layers[0].sparsity if sparsity is None else check_sparsity(sparsity)
    for layer in layers:
        layer.set_sparsity(s)
    model._slt_global_sparsity = s
    if not getattr(model, "_slt_global_hooked", False):
        model.register_forward_pre_hook(_global_pre_hook)
        model._slt_global_hooked = True
    update_global_thresholds(model)
    return model


@torch.no_grad()
def update_global_thresholds(model: nn.Module) -> None:
    s = getattr(model, "_slt_global_sparsity", None)
    if s is None:
        return
    layers = slt_layers(model)
    free, total, pruned = [], 0, 0
    for layer in layers:
        for scores in layer.score_tensors():
            f, t, p = layer.free_scores(scores)
            free.append(f)
            total, pruned = total + t, pruned + p
    first = layers[0]
    sparsities = (s,) if first.coat_sparsities is None else (s, *first.coat_sparsities[1:])
    taus = coat_thresholds(free, total, pruned, sparsities, first.num_coats)
    for layer in layers:
        layer.global_taus = taus
