"""Small SLT models used by `slt-hw find` and the tests; each can be rebuilt from a checkpoint."""

from __future__ import annotations

import torch
from torch import nn

from .nn.attention import SLTMultiheadAttention, SLTTransformerBlock
from .nn.base import SLTLinear
from .nn.gnn import SLTGCNConv, SLTGINConv
from .search.folding import Folded


class MLP(nn.Module):
    """sizes[0] → … → sizes[-1] SLT linear layers named "fc{i}", ReLU between, optional non-affine BN."""

    def __init__(self, sizes: list[int], *, seed: int, norm: bool = False, **slt):
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least input and output sizes, got {sizes!r}")
        self.layers = nn.ModuleList(SLTLinear(a, b, seed=seed, name=f"fc{i}", **slt)
                                    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b, affine=False) if norm else nn.Identity() for b in sizes[1:-1])
        self._arch = {"sizes": list(sizes), "seed": seed, "norm": norm, **slt}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.norms):
                x = torch.relu(self.norms[i](x))
        return x


class GNN(nn.Module):
    """Node classifier: SLT GCN/GIN input layer, a folded hidden layer iterated `iters` times
    (shared or unshared masks, per-iteration non-affine BatchNorm), SLT linear readout."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, *, seed: int, conv: str = "gcn",
                 iters: int = 2, shared_masks: bool = True, **slt):
        super().__init__()
        convs = {"gcn": SLTGCNConv, "gin": SLTGINConv}
        if conv not in convs:
            raise ValueError(f"conv: expected 'gcn' or 'gin', got {conv!r}")
        cls = convs[conv]
        self.inp = cls(in_features, hidden, seed=seed, name="conv_in", **slt)
        self.hidden = Folded(cls(hidden, hidden, seed=seed, name="conv_hidden", **slt), iters,
                             shared_masks=shared_masks, norm="batch", num_features=hidden, activation="relu")
        self.out = SLTLinear(hidden, num_classes, seed=seed, name="readout", **slt)
        self._arch = {"in_features": in_features, "hidden": hidden, "num_classes": num_classes, "seed": seed,
                      "conv": conv, "iters": iters, "shared_masks": shared_masks, **slt}

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x, adj))
        return self.out(self.hidden(h, adj))


class AttentionRegressor(nn.Module):
    """The MHA-SLT paper's synthetic set-up: attention over (regression token, x_1..x_T), the
    output at the regression token. blocks = 0: one SLT MHA (in 2, out 1); else transformer blocks
    without normalization and a linear readout."""

    def __init__(self, in_features: int = 2, out_features: int = 1, *, seed: int, num_heads: int = 1,
                 qk_dim: int = 64, v_dim: int = 64, blocks: int = 0, qk_init_scale: float | None = None, **slt):
        super().__init__()
        scale = qk_init_scale if qk_init_scale is not None else (qk_dim // num_heads) ** 0.25
        if blocks == 0:
            self.attn = SLTMultiheadAttention(in_features, num_heads, seed=seed, name="attn", qk_dim=qk_dim,
                                              v_dim=v_dim, out_dim=out_features, qk_init_scale=scale, **slt)
        else:
            self.blocks = nn.ModuleList(
                SLTTransformerBlock(in_features, num_heads, v_dim, seed=seed, name=f"blocks.{i}", qk_dim=qk_dim,
                                    qk_init_scale=scale, **slt) for i in range(blocks))
            self.readout = SLTLinear(in_features, out_features, seed=seed, name="readout", **slt)
        self.num_blocks = blocks
        self._arch = {"in_features": in_features, "out_features": out_features, "seed": seed,
                      "num_heads": num_heads, "qk_dim": qk_dim, "v_dim": v_dim, "blocks": blocks,
                      "qk_init_scale": scale, **slt}

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2]), x], 1)  # zero regression token first
        if key_padding_mask is not None:
            key_padding_mask = torch.cat([key_padding_mask.new_zeros(x.shape[0], 1), key_padding_mask], 1)
        if self.num_blocks == 0:
            return self.attn(x, key_padding_mask=key_padding_mask)[0][:, 0]
        for blk in self.blocks:
            x = blk(x, key_padding_mask)
        return self.readout(x[:, 0])
