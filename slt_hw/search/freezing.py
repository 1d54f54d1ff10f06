"""Partial freezing: per-layer prune/lock ratios from a model-wide (p_prune, p_lock).

The frozen pattern itself is never drawn here: each layer takes it from the contract's FREEZE
stream (`reference.prng.freeze_states` with `contract.freeze_thresholds`), so it is a function
of (seed, name, ratios) and checkpoints never store it. Counts are Bernoulli per weight.

Distributions (density = fraction kept), each scaled so the kept total is density · N:
- "uniform": every layer the same density;
- "erk": Erdős–Rényi-Kernel, density ∝ Σ dims / Π dims, capped at 1 (RigL's definition);
- "epl" / "balanced": equal kept weights per layer, capped at the layer size.
Ratios as in the freezing paper: pruned share = 1 − d(1 − p_prune); frozen share =
1 − d(1 − p_prune − p_lock); locked share = frozen − pruned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

DISTRIBUTIONS = ("uniform", "erk", "epl", "balanced")


def _check_dist(distribution: str) -> str:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution: expected one of {DISTRIBUTIONS}, got {distribution!r}")
    return "epl" if distribution == "balanced" else distribution


def layer_densities(shapes: Mapping[str, Sequence[int]], density: float, distribution: str = "uniform"
                    ) -> dict[str, float]:
    """Per-layer densities whose weighted mean is `density` (as close as the caps at 1 allow)."""
    dist = _check_dist(distribution)
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density: expected a float in [0, 1], got {density!r}")
    sizes = {k: math.prod(s) for k, s in shapes.items()}
    if not sizes:
        raise ValueError("shapes: expected at least one layer")
    target = density * sum(sizes.values())
    if dist == "uniform":
        return {k: density for k in sizes}
    if dist == "erk":
        raw = {k: sum(shapes[k]) / sizes[k] for k in sizes}
    else:
        raw = {k: 1.0 / sizes[k] for k in sizes}  # equal kept count per layer
    dense: set[str] = set()
    while True:  # water-filling: cap layers at density 1 and rescale the rest
        budget = target - sum(sizes[k] for k in dense)
        denom = sum(raw[k] * sizes[k] for k in sizes if k not in dense)
        eps = budget / denom if denom else 0.0
        over = {k for k in sizes if k not in dense and eps * raw[k] > 1.0}
        if not over:
            return {k: 1.0 if k in dense else max(0.0, eps * raw[k]) for k in sizes}
        dense |= over


def freeze_ratios(shapes: Mapping[str, Sequence[int]], p_prune: float, p_lock: float,
                  distribution: str = "uniform") -> dict[str, tuple[float, float]]:
    """Per-layer (p_prune, p_lock) for model-wide ratios under a layer-wise distribution."""
    for arg, p in (("p_prune", p_prune), ("p_lock", p_lock)):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{arg}: expected a float in [0, 1], got {p!r}")
    if p_prune + p_lock > 1.0:
        raise ValueError(f"p_prune + p_lock: expected <= 1, got {p_prune} + {p_lock}")
    kept_unpruned = layer_densities(shapes, 1.0 - p_prune, distribution)
    kept_unfrozen = layer_densities(shapes, 1.0 - p_prune - p_lock, distribution)
    out = {}
    for k in shapes:
        prune = 1.0 - kept_unpruned[k]
        frozen = max(prune, 1.0 - kept_unfrozen[k])
        out[k] = (prune, min(frozen - prune, 1.0 - prune))
    return out
