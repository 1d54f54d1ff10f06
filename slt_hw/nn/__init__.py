"""SLT layers: search layers (scores over contract-generated random weights) and packed
inference layers (seeds + bit-packed masks)."""

from .attention import SLTMultiheadAttention, SLTTransformerBlock
from .base import SLTConv2d, SLTLayer, SLTLinear
from .fuse import SLTFusedConv2d, fuse_epilogues
from .gnn import SLTGCNConv, SLTGINConv, gcn_adjacency, sum_adjacency
from .int8 import set_int8_activations
from .packed import SLTPackedLinear
from .packed_layers import SLTPackedLayer

__all__ = [
    "SLTConv2d", "SLTFusedConv2d", "SLTGCNConv", "SLTGINConv", "SLTLayer", "SLTLinear", "SLTMultiheadAttention",
    "SLTPackedLayer", "SLTPackedLinear", "SLTTransformerBlock", "fuse_epilogues", "gcn_adjacency",
    "set_int8_activations", "sum_adjacency",
]
