"""Supermask search: thresholds, straight-through masks, coats, freezing, schedules, folding.

"sparsity" is always the fraction of weights *removed* (density = 1 − sparsity).
"""

from .folding import Folded, FoldedStages, set_mask_index
from .freezing import freeze_ratios, layer_densities
from .schedules import constant, linear_ramp
from .threshold import kth_smallest, removed_count, sparsity_threshold
from .topk import global_threshold, set_sparsity, slt_layers, update_global_thresholds

__all__ = [
    "Folded", "FoldedStages", "constant", "freeze_ratios", "global_threshold", "kth_smallest",
    "layer_densities", "linear_ramp", "removed_count", "set_mask_index", "set_sparsity", "slt_layers",
    "sparsity_threshold", "update_global_thresholds",
]
