"""Small SLT models used by `slt-hw find` and the tests; each can be rebuilt from a checkpoint."""

from __future__ import annotations

import torch
from torch import nn

from .nn.attention import SLTMultiheadAttention, SLTTransformerBlock
from .nn.base import SLTConv2d, SLTLinear
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
    (shared or unshared masks, per-iteration non-affine BatchNorm), SLT linear readout. dropout: on the
    input features and the hidden features while training (Planetoid graphs overfit without it)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, *, seed: int, conv: str = "gcn",
                 iters: int = 2, shared_masks: bool = True, dropout: float = 0.0, **slt):
        super().__init__()
        convs = {"gcn": SLTGCNConv, "gin": SLTGINConv}
        if conv not in convs:
            raise ValueError(f"conv: expected 'gcn' or 'gin', got {conv!r}")
        cls = convs[conv]
        self.inp = cls(in_features, hidden, seed=seed, name="conv_in", **slt)
        self.hidden = Folded(cls(hidden, hidden, seed=seed, name="conv_hidden", **slt), iters,
                             shared_masks=shared_masks, norm="batch", num_features=hidden, activation="relu")
        self.out = SLTLinear(hidden, num_classes, seed=seed, name="readout", **slt)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self._arch = {"in_features": in_features, "hidden": hidden, "num_classes": num_classes, "seed": seed,
                      "conv": conv, "iters": iters, "shared_masks": shared_masks, **slt}
        if dropout:  # only when set, so older checkpoints' architectures stay as they were
            self._arch["dropout"] = self.dropout

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        drop = lambda t: torch.nn.functional.dropout(t, self.dropout, self.training)  # noqa: E731
        h = torch.relu(self.inp(drop(x), adj))
        return self.out(drop(self.hidden(h, adj)))


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


# ---------------------------------------------------------------------- image networks

CONV_WIDTHS = {  # Edge-Popup's Conv2/4/6 (after Frankle & Carbin): conv channel pairs, then FC 256-256-classes
    "conv2": (64,),
    "conv4": (64, 128),
    "conv6": (64, 128, 256),
}


def _layers(dense: bool, seed: int, slt: dict):
    """(conv, linear) factories: SLT layers from the weight contract, or ordinary trainable ones."""
    if dense:
        return (lambda i, o, k, name, **kw: nn.Conv2d(i, o, k, bias=False, **kw),
                lambda i, o, name: nn.Linear(i, o, bias=False))
    return (lambda i, o, k, name, **kw: SLTConv2d(i, o, k, seed=seed, name=name, **kw, **slt),
            lambda i, o, name: SLTLinear(i, o, seed=seed, name=name, **slt))


class ConvNet(nn.Module):
    """Conv2 / Conv4 / Conv6 of the Edge-Popup paper: per stage two 3×3 convs (padding 1) with ReLU and a
    2×2 max-pool, then FC 256 → 256 → classes; no normalization, no bias. width scales every hidden
    layer (Conv4Wide in the paper's code); dense=True gives the same network with trainable weights."""

    def __init__(self, arch: str, in_shape: tuple[int, int, int], num_classes: int, *, seed: int,
                 width: float = 1.0, dense: bool = False, **slt):
        super().__init__()
        if arch not in CONV_WIDTHS:
            raise ValueError(f"arch: expected one of {tuple(CONV_WIDTHS)}, got {arch!r}")
        if not width > 0:
            raise ValueError(f"width: expected a positive multiplier, got {width!r}")
        conv, linear = _layers(dense, seed, slt)
        c, h, w = in_shape
        layers, i = [], 0
        for ch in CONV_WIDTHS[arch]:
            ch = max(1, round(ch * width))
            for _ in range(2):
                layers += [conv(c, ch, 3, f"conv{i}", padding=1), nn.ReLU()]
                c, i = ch, i + 1
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        fc = max(1, round(256 * width))
        layers += [nn.Flatten(), linear(c * h * w, fc, "fc0"), nn.ReLU(), linear(fc, fc, "fc1"), nn.ReLU(),
                   linear(fc, num_classes, "fc2")]
        self.net = nn.Sequential(*layers)
        self._arch = {"arch": arch, "in_shape": list(in_shape), "num_classes": num_classes, "seed": seed,
                      "width": width, "dense": dense, **slt}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Block(nn.Module):
    """ResNet basic block: conv3×3 → BN → ReLU → conv3×3 → BN, plus the (1×1 conv + BN) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, name: str, conv, norm):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, cout, 3, f"{name}.conv1", stride=stride, padding=1), norm(cout)
        self.conv2, self.bn2 = conv(cout, cout, 3, f"{name}.conv2", padding=1), norm(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            conv(cin, cout, 1, f"{name}.shortcut", stride=stride), norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18 (3×3 stem, no max-pool, stages of 64/128/256/512 channels × 2 basic blocks, global
    average pool, linear head). SLT form as Edge-Popup: non-affine BatchNorm, no bias; dense=True: the
    ordinary weight-trained network (affine BatchNorm)."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, *, seed: int, width: float = 1.0,
                 dense: bool = False, **slt):
        super().__init__()
        conv, linear = _layers(dense, seed, slt)

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c, affine=dense)

        chans = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self.stem = conv(in_shape[0], chans[0], 3, "stem", padding=1)
        self.bn = norm(chans[0])
        blocks, cin = [], chans[0]
        for s, ch in enumerate(chans):
            for b in range(2):
                blocks.append(_Block(cin, ch, 2 if s and not b else 1, f"layer{s + 1}.{b}", conv, norm))
                cin = ch
        self.blocks = nn.Sequential(*blocks)
        self.fc = linear(cin, num_classes, "fc")
        self._arch = {"in_shape": list(in_shape), "num_classes": num_classes, "seed": seed, "width": width,
                      "dense": dense, **slt}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(torch.relu(self.bn(self.stem(x))))
        return self.fc(x.mean((2, 3)))
