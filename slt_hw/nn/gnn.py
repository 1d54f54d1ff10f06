"""GCN and GIN convolutions with supermasked weights; aggregation with torch sparse ops.

Graphs are given as a sparse (num_nodes, num_nodes) adjacency: `gcn_adjacency` builds
D^-½ (A + I) D^-½ for GCN, `sum_adjacency` the plain A for GIN (no torch_geometric needed).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SLTLinear


def _check_edges(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    if not isinstance(edge_index, torch.Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index: expected a (2, E) integer tensor, got {getattr(edge_index, 'shape', None)}")
    if edge_index.is_floating_point():
        raise TypeError(f"edge_index: expected an integer tensor, got {edge_index.dtype}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index: node ids must lie in [0, {num_nodes})")
    return edge_index.long()


def sum_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """A[dst, src] = multiplicity of edge src → dst, as a sparse COO float32 tensor."""
    ei = _check_edges(edge_index, num_nodes)
    vals = torch.ones(ei.shape[1], dtype=torch.float32, device=ei.device)
    return torch.sparse_coo_tensor(ei.flip(0), vals, (num_nodes, num_nodes), check_invariants=False).coalesce()


def gcn_adjacency(edge_index: torch.Tensor, num_nodes: int, add_self_loops: bool = True) -> torch.Tensor:
    """Â = D^-½ (A + I) D^-½ (Kipf & Welling), sparse COO float32."""
    ei = _check_edges(edge_index, num_nodes)
    if add_self_loops:
        loops = torch.arange(num_nodes, device=ei.device).expand(2, -1)
        ei = torch.cat([ei, loops], 1)
    a = sum_adjacency(ei, num_nodes)
    deg = torch.sparse.sum(a, 1).to_dense()
    inv = torch.where(deg > 0, deg.rsqrt(), 0.0)
    idx = a.indices()
    return torch.sparse_coo_tensor(idx, inv[idx[0]] * a.values() * inv[idx[1]], a.shape,
                                   check_invariants=False).coalesce()


class SLTGCNConv(nn.Module):
    """h = Â (x Wᵀ) (+ b)."""

    def __init__(self, in_features: int, out_features: int, *, seed: int, name: str, bias: bool = False, **slt):
        super().__init__()
        self.lin = SLTLinear(in_features, out_features, seed=seed, name=f"{name}.lin", bias=False, **slt)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self._arch = {"in_features": in_features, "out_features": out_features, "seed": seed, "name": name,
                      "bias": bias, **slt}

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = torch.sparse.mm(adj, self.lin(x))
        return h if self.bias is None else h + self.bias


class SLTGINConv(nn.Module):
    """h = MLP((1 + ε) x + Σ_neighbours x), MLP = lin1 → BatchNorm (non-affine, optional) → ReLU → lin2."""

    def __init__(self, in_features: int, out_features: int, *, seed: int, name: str, hidden: int | None = None,
                 eps: float = 0.0, train_eps: bool = False, norm: bool = True, **slt):
        super().__init__()
        hidden = hidden or out_features
        self.lin1 = SLTLinear(in_features, hidden, seed=seed, name=f"{name}.lin1", **slt)
        self.norm = nn.BatchNorm1d(hidden, affine=False) if norm else nn.Identity()
        self.lin2 = SLTLinear(hidden, out_features, seed=seed, name=f"{name}.lin2", **slt)
        self.eps = nn.Parameter(torch.tensor(float(eps))) if train_eps else float(eps)
        self._arch = {"in_features": in_features, "out_features": out_features, "seed": seed, "name": name,
                      "hidden": hidden, "eps": float(eps), "train_eps": train_eps, "norm": norm, **slt}

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = (1 + self.eps) * x + torch.sparse.mm(adj, x)
        return self.lin2(torch.relu(self.norm(self.lin1(h))))
