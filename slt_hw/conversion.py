"""convert (dense model -> search model), pack (search model -> inference model), dense export."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .contract import check_seed
from .formats import PackedWeight, pack_binary, pack_frozen, pack_multicoat
from .nn.attention import SLTMultiheadAttention
from .nn.base import SLTConv2d, SLTLayer, SLTLinear
from .nn.packed_layers import SLTPackedLayer
from .search.freezing import freeze_ratios
from .search.topk import global_threshold, slt_layers, update_global_thresholds


def _set_child(root: nn.Module, qualname: str, new: nn.Module) -> None:
    parent_name, _, attr = qualname.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def _targets(model: nn.Module, exclude: Callable[[str, nn.Module], bool]) -> list[tuple[str, nn.Module]]:
    out, skip = [], []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in skip) or exclude(name, m):
            continue
        if isinstance(m, nn.MultiheadAttention):
            out.append((name, m))
            skip.append(name)
        elif isinstance(m, (nn.Linear, nn.Conv2d)):
            out.append((name, m))
    return out


def convert(model: nn.Module, *, seed: int, sparsity: float = 0.5, num_coats: int = 1,
            coat_sparsities: tuple[float, ...] | None = None, p_prune: float = 0.0, p_lock: float = 0.0,
            freeze_distribution: str = "uniform", rescale: bool = False, dist: str = "signed_constant",
            threshold: str = "layer", bias: bool = False, qk_init_scale: float = 1.0,
            exclude: Iterable[str] | Callable[[str, nn.Module], bool] = ()) -> nn.Module:
    """A copy of `model` with nn.Linear, nn.Conv2d and nn.MultiheadAttention swapped for SLT layers.

    Each layer's weight name is its qualified name in `model` (so weights depend only on the seed
    and the architecture). Biases are dropped unless bias=True (then a zero-initialised trainable
    bias). threshold: "layer" (per-layer top-k) or "global" (one threshold over all layers).
    exclude: qualified names (or a predicate (name, module) -> bool) to leave dense.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    check_seed(seed)
    if threshold not in ("layer", "global"):
        raise ValueError(f"threshold: expected 'layer' or 'global', got {threshold!r}")
    if callable(exclude):
        skip = exclude
    else:
        names = set(exclude)
        skip = lambda name, m: name in names  # noqa: E731
    model = copy.deepcopy(model)
    targets = _targets(model, skip)
    if not targets:
        raise ValueError("model: found no nn.Linear, nn.Conv2d or nn.MultiheadAttention to convert")
    shapes = {}
    for name, m in targets:
        if isinstance(m, nn.MultiheadAttention):  # its four projections share one ratio
            shapes[name] = (4 * m.embed_dim, m.embed_dim)
        else:
            shapes[name] = tuple(m.weight.shape)
    ratios = freeze_ratios(shapes, p_prune, p_lock, freeze_distribution)
    common = {"sparsity": sparsity, "num_coats": num_coats, "coat_sparsities": coat_sparsities,
              "rescale": rescale, "dist": dist}
    for name, m in targets:
        key = name or "root"
        pp, pl = ratios[name]
        slt = {**common, **({"p_prune": pp, "p_lock": pl} if p_prune or p_lock else {})}
        if isinstance(m, nn.MultiheadAttention):
            new = SLTMultiheadAttention(m.embed_dim, m.num_heads, seed=seed, name=key, kdim=m.kdim, vdim=m.vdim,
                                        qk_init_scale=qk_init_scale, batch_first=m.batch_first, bias=bias,
                                        dropout=m.dropout, **slt)
            new._arch["from_torch_mha"] = True
        elif isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise ValueError(f"model: conv {key!r} has groups={m.groups}, padding={m.padding!r}, "
                                 f"padding_mode={m.padding_mode!r}; only groups=1 with numeric zero padding "
                                 "is supported (pass exclude=[...] to keep it dense)")
            new = SLTConv2d(m.in_channels, m.out_channels, m.kernel_size, seed=seed, name=key, stride=m.stride,
                            padding=m.padding, dilation=m.dilation, bias=bias, **slt)
        else:
            new = SLTLinear(m.in_features, m.out_features, seed=seed, name=key, bias=bias, **slt)
        new.train(m.training)
        if not name:
            model = new
        else:
            _set_child(model, name, new)
    if threshold == "global":
        global_threshold(model, sparsity)
    return model


# ---------------------------------------------------------------------- pack


def pack_layer(layer: SLTLayer, backend: str | None = None) -> SLTPackedLayer:
    """The inference form of one search layer (one packed weight per mask copy)."""
    packed = [_pack_mask(layer, i) for i in range(layer.num_masks)]
    kind = "conv2d" if isinstance(layer, SLTConv2d) else "linear"
    conv = None
    if kind == "conv2d":
        conv = {"in_channels": layer.in_channels, "kernel_size": list(layer.kernel_size),
                "stride": list(layer.stride), "padding": list(layer.padding), "dilation": list(layer.dilation)}
    arch = {"type": type(layer).__name__, "kwargs": layer._arch, "num_masks": layer.num_masks}
    out = SLTPackedLayer(packed, kind=kind, bias=layer.bias, conv=conv, arch=arch, backend=backend)
    return out.to(layer.weight0.device)


@torch.no_grad()
def _pack_mask(layer: SLTLayer, index: int) -> PackedWeight:
    m = layer.mask(index).reshape(layer.weight_shape[0], -1)
    kw = {"seed": layer.seed, "name": layer.name, "dist": layer.dist, "scale": layer.scale}
    if layer.num_coats > 1:
        return pack_multicoat(m.to(torch.int64), layer.num_coats, **kw)
    if layer.frozen:
        return pack_frozen(m.bool(), p_prune=layer.p_prune, p_lock=layer.p_lock, **kw)
    return pack_binary(m.bool(), **kw)


def pack(model: nn.Module, *, backend: str | None = None) -> nn.Module:
    """A copy of `model` whose SLT layers are replaced by packed layers (seeds + packed masks).

    Packed outputs equal the search model's outputs in eval mode (bit for bit on the reference
    backend; other backends to float32 rounding). A model without SLT layers (e.g. already
    packed) is returned as a copy."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    update_global_thresholds(model)
    model = copy.deepcopy(model)
    for name, layer in [(n, m) for n, m in model.named_modules() if isinstance(m, SLTLayer)]:
        new = pack_layer(layer, backend)
        new.mask_index = layer.mask_index
        if not name:
            return new
        _set_child(model, name, new)
    if getattr(model, "_slt_global_sparsity", None) is not None:
        model._slt_global_sparsity = None
    return model


# ---------------------------------------------------------------------- dense export


@torch.no_grad()
def export_dense(model: nn.Module) -> dict[str, torch.Tensor]:
    """The found subnetwork as a plain state_dict: each SLT weight materialised (W0 ⊙ M), biases
    and every other parameter / persistent buffer as is. A model converted from nn.Linear /
    nn.Conv2d / nn.MultiheadAttention loads into the original architecture (strict=False for
    dropped biases). Unshared folding masks export one weight per iteration, "weight.<i>"."""
    update_global_thresholds(model)
    out: dict[str, torch.Tensor] = {}
    handled: set[str] = set()
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, (SLTLayer, SLTPackedLayer)):
            ws = _weights(m)
            if len(ws) == 1:
                out[prefix + "weight"] = ws[0]
            else:
                out.update({f"{prefix}weight.{i}": w for i, w in enumerate(ws)})
            if m.bias is not None:
                out[prefix + "bias"] = m.bias.detach().clone()
            handled.add(name)
        elif isinstance(m, SLTMultiheadAttention) and m._arch.get("from_torch_mha"):
            handled.add(name)
    for name, m in model.named_modules():
        if isinstance(m, SLTMultiheadAttention) and m._arch.get("from_torch_mha"):
            p = f"{name}." if name else ""
            q, k, v = (out.pop(f"{p}{s}_proj.weight") for s in "qkv")
            if q.shape[1] == k.shape[1] == v.shape[1]:
                out[p + "in_proj_weight"] = torch.cat([q, k, v])
            else:
                out.update({p + "q_proj_weight": q, p + "k_proj_weight": k, p + "v_proj_weight": v})
            biases = [out.pop(f"{p}{s}_proj.bias", None) for s in "qkv"]
            if biases[0] is not None:
                out[p + "in_proj_bias"] = torch.cat(biases)
    for key, t in model.state_dict().items():
        owner = key.rpartition(".")[0]
        if any(owner == h or owner.startswith(h + ".") if h else True for h in handled):
            continue
        out[key] = t.detach().clone()
    return out


def _weights(m: SLTLayer | SLTPackedLayer) -> list[torch.Tensor]:
    if isinstance(m, SLTLayer):
        return [m.effective_weight(i).detach().clone() for i in range(m.num_masks)]
    return [p.materialize().reshape(m.weight_shape) for p in m.packed]


def slt_layer_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (SLTLayer, SLTPackedLayer))]


__all__ = ["convert", "export_dense", "pack", "pack_layer", "slt_layers"]
