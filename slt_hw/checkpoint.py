"""Compact checkpoints: safetensors for the packed masks, JSON metadata, atomic writes, verified loads.

What the file holds (all of it is `payload`, counted exactly by `memory_report`):
- `mask.<layer>.<copy>`: uint8, the mask's information bits packed LSB first, no row padding:
  binary N·K bits; multicoat the hierarchical stream (coat 1 for every weight, coat i+1 only
  for the survivors of coat i, row-major); frozen the free-bit stream (free weights only);
- `coat_scales.<layer>.<copy>`: float32 per coat (multicoat only);
- `dense.<name>`: every other parameter / persistent buffer (biases, normalization statistics);
- `seeds`: the distinct model seeds, int64.
Metadata (in the safetensors header): contract version, per-layer seed, name, shape, format,
distribution, float32 scale bits, freeze thresholds, the architecture, and a SHA-256 of the
metadata and the payload (the file itself, verified and written atomically: checkpoint_file.py).
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import models
from .checkpoint_file import FORMAT_VERSION, CheckpointError, digest, read, write_atomic
from .contract import CONTRACT_VERSION, f32_bits
from .conversion import pack, slt_layer_names
from .formats import Format, PackedWeight
from .nn.attention import SLTMultiheadAttention, SLTTransformerBlock
from .nn.base import SLTConv2d, SLTLayer, SLTLinear
from .nn.gnn import SLTGCNConv, SLTGINConv
from .nn.packed_layers import SLTPackedLayer
from .reference import masks as _masks
from .search.folding import Folded, FoldedStages

_REGISTRY: dict[str, type] = {c.__name__: c for c in (
    SLTLinear, SLTConv2d, SLTMultiheadAttention, SLTTransformerBlock, SLTGCNConv, SLTGINConv, Folded,
    FoldedStages, models.MLP, models.GNN, models.AttentionRegressor, models.ConvNet, models.ResNet18)}
_TORCH_LEAVES = {
    "ReLU": (), "GELU": (), "Tanh": (), "Sigmoid": (), "Identity": (), "Flatten": ("start_dim", "end_dim"),
    "Dropout": ("p",), "BatchNorm1d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "LayerNorm": ("normalized_shape", "eps", "elementwise_affine"),
    "MaxPool2d": ("kernel_size", "stride", "padding"), "AvgPool2d": ("kernel_size", "stride", "padding"),
    "AdaptiveAvgPool2d": ("output_size",),
}


# ---------------------------------------------------------------------- architecture


class _Unsupported(Exception):
    pass


def _json_safe(v):
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if hasattr(v, "value") and not isinstance(v, (int, float, str, bool)):
        return v.value
    return v


def architecture(module: nn.Module) -> dict:
    """A JSON description from which `build` recreates the (search form of the) model."""
    if isinstance(module, SLTPackedLayer):
        return {"type": module.arch["type"], "kwargs": _json_safe(module.arch["kwargs"])}
    cls = type(module)
    if _REGISTRY.get(cls.__name__) is cls:
        spec = {"type": cls.__name__, "kwargs": _json_safe(module._arch)}
        names = getattr(cls, "_spec_children", ())
        if names:
            spec["children"] = {n: architecture(getattr(module, n)) for n in names}
        return spec
    if cls in (nn.Sequential, nn.ModuleList):
        return {"type": cls.__name__, "children": {n: architecture(c) for n, c in module.named_children()}}
    if cls.__name__ in _TORCH_LEAVES and cls is getattr(nn, cls.__name__, None):
        attrs = _TORCH_LEAVES[cls.__name__]
        return {"type": cls.__name__, "kwargs": {a: _json_safe(getattr(module, a)) for a in attrs}}
    raise _Unsupported(cls.__name__)


def build(spec: dict) -> nn.Module:
    t, kwargs = spec["type"], dict(spec.get("kwargs", {}))
    children = {n: build(c) for n, c in spec.get("children", {}).items()}
    if t == "Sequential":
        return nn.Sequential(OrderedDict(children))
    if t == "ModuleList":
        return nn.ModuleList(children.values())
    if t in _TORCH_LEAVES:
        return getattr(nn, t)(**kwargs)
    if t not in _REGISTRY:
        raise CheckpointError(f"checkpoint: unknown module type {t!r} in the architecture")
    extra = {k: kwargs.pop(k) for k in ("from_torch_mha",) if k in kwargs}
    m = _REGISTRY[t](**children, **kwargs)
    m._arch.update(extra)
    return m


# ---------------------------------------------------------------------- mask bit streams


def mask_stream(p: PackedWeight) -> torch.Tensor:
    """The information bits of a packed mask as a 1-D bool tensor (see the module docstring)."""
    n, k = p.out_features, p.in_features
    if p.format is Format.FROZEN:
        return _masks.unpack_stream(p.free_bits, p.num_free)
    bits = _masks.unpack_bits(p.planes.cpu(), k)  # (C, N, K)
    parts = [bits[0].reshape(-1)] + [bits[i + 1][bits[i]] for i in range(bits.shape[0] - 1)]
    return torch.cat(parts) if parts else torch.zeros(n * k, dtype=torch.bool)


def _to_bytes(bits: torch.Tensor) -> torch.Tensor:
    nbytes = math.ceil(bits.numel() / 8)
    padded = torch.zeros(nbytes * 8, dtype=torch.uint8)
    padded[: bits.numel()] = bits.to(torch.uint8)
    weights = torch.tensor([1 << i for i in range(8)], dtype=torch.uint8)
    return (padded.view(-1, 8) * weights).sum(1, dtype=torch.uint8) if nbytes else padded


def _from_bytes(data: torch.Tensor, count: int) -> torch.Tensor:
    shifts = torch.arange(8, dtype=torch.uint8)
    return ((data[:, None] >> shifts) & 1).reshape(-1)[:count].bool()


def _unpack_stream(meta: dict, data: torch.Tensor, coat_scales: torch.Tensor | None) -> PackedWeight:
    n, k = meta["shape"][0], math.prod(meta["shape"][1:])
    scale = torch.tensor([meta["scale_bits"]], dtype=torch.int64).to(torch.int32).view(torch.float32).item()
    common = ((n, k), meta["seed"], meta["key_name"], meta["dist"], scale, meta["format"])
    avail = data.numel() * 8
    if meta["format"] == "frozen":
        from .contract import Stream, derive_key
        from .reference.prng import FREE, freeze_states

        states = freeze_states(derive_key(meta["seed"], meta["key_name"], Stream.FREEZE), n, k,
                               meta["prune_threshold"], meta["lock_threshold"])
        f = int((states == FREE).sum())
        _check_len(meta, data, f)
        return PackedWeight(*common, free_bits=_masks.pack_stream(_from_bytes(data, f)),
                            prune_threshold=meta["prune_threshold"], lock_threshold=meta["lock_threshold"])
    coats = meta["num_coats"]
    bits = _from_bytes(data, avail)
    planes, prev, pos = [], None, 0
    for _ in range(coats):
        cnt = n * k if prev is None else int(prev.sum())
        if pos + cnt > avail:
            raise CheckpointError(f"checkpoint: mask of layer {meta['layer']!r} is truncated")
        cur = torch.zeros(n * k, dtype=torch.bool)
        if prev is None:
            cur = bits[pos:pos + cnt].clone()
        else:
            cur[prev] = bits[pos:pos + cnt]
        pos, prev = pos + cnt, cur
        planes.append(_masks.pack_bits(cur.view(n, k)))
    _check_len(meta, data, pos)
    return PackedWeight(*common, planes=torch.stack(planes), coat_scales=coat_scales)


def _check_len(meta: dict, data: torch.Tensor, bits: int) -> None:
    if data.numel() != math.ceil(bits / 8):
        raise CheckpointError(f"checkpoint: mask of layer {meta['layer']!r} has {data.numel()} bytes, expected "
                              f"{math.ceil(bits / 8)} for {bits} bits (wrong seed, name or corrupt file?)")


# ---------------------------------------------------------------------- save


@dataclass(frozen=True)
class SaveInfo:
    path: Path
    bytes_on_disk: int  # os.path.getsize after the atomic rename
    payload_bytes: int  # tensor data (masks, coat scales, dense extras, seeds); the rest is the header


def _payload(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[dict], dict | None]:
    packed = model if not any(isinstance(m, SLTLayer) for m in model.modules()) else pack(model)
    tensors: dict[str, torch.Tensor] = {}
    layers, seeds = [], set()
    slt_names = slt_layer_names(packed)
    if not slt_names:
        raise ValueError("model: expected a model with SLT layers (search or packed form)")
    for name in slt_names:
        m = packed.get_submodule(name) if name else packed
        for i, p in enumerate(m.packed):
            tensors[f"mask.{name}.{i}"] = _to_bytes(mask_stream(p).cpu())
            if p.format is Format.MULTICOAT:
                tensors[f"coat_scales.{name}.{i}"] = p.coat_scales.detach().cpu().contiguous()
        p = m.packed[0]
        seeds.add(p.seed)
        layers.append({"layer": name, "key_name": p.name, "seed": p.seed, "shape": list(m.weight_shape),
                       "kind": m.kind, "format": p.format.value, "dist": p.dist.value,
                       "scale_bits": f32_bits(p.scale), "num_coats": p.num_coats,
                       "prune_threshold": p.prune_threshold, "lock_threshold": p.lock_threshold,
                       "masks": len(m.packed), "conv": m.conv, "arch": _json_safe(m.arch)})
        if m.bias is not None:
            tensors[f"dense.{name + '.' if name else ''}bias"] = m.bias.detach().cpu().contiguous()
    skip = tuple(f"{n}." for n in slt_names if n)
    for key, t in packed.state_dict().items():
        if key.startswith(skip) or ("" in slt_names):
            continue
        tensors[f"dense.{key}"] = t.detach().cpu().contiguous()
    tensors["seeds"] = torch.tensor(sorted(seeds), dtype=torch.int64)
    try:
        arch = architecture(packed)
    except _Unsupported:
        arch = None
    return tensors, layers, arch


def save(model: nn.Module, path: str | os.PathLike) -> SaveInfo:
    """Write the packed form of `model` (search or packed) atomically; returns the exact size on disk.
    Temporary files that killed saves to the same path left are removed first."""
    from safetensors.torch import save as st_save

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    path = Path(path)
    tensors, layers, arch = _payload(model)
    meta = {"contract_version": CONTRACT_VERSION, "format_version": FORMAT_VERSION, "layers": layers,
            "architecture": arch}
    meta["sha256"] = digest(tensors, meta)
    write_atomic(path, st_save(tensors, metadata={"slt_hw": json.dumps(meta)}))
    payload = sum(t.numel() * t.element_size() for t in tensors.values())
    return SaveInfo(path, os.path.getsize(path), payload)


# ---------------------------------------------------------------------- load


def load(path: str | os.PathLike, model: nn.Module | None = None, *, backend: str | None = None,
         unverified_metadata: bool = False) -> nn.Module:
    """The packed (inference) model stored at `path`, verified.

    model: needed when the checkpoint's architecture was not recorded (a converted model of your own
    class): pass the search or packed model built the same way (e.g. `slt_hw.convert(Net(), seed=…)`);
    its SLT layers are replaced by the stored masks.
    unverified_metadata: also load a format-1 file, whose checksum does not cover the metadata."""
    tensors, meta = read(path, unverified_metadata=unverified_metadata)
    if model is None:
        if meta.get("architecture") is None:
            raise ValueError("model: this checkpoint holds a model of a custom class; pass model= (the same "
                             "architecture, e.g. slt_hw.convert(YourNet(), seed=...))")
        model = build(meta["architecture"])
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    else:
        import copy

        model = copy.deepcopy(model)
    names = set(slt_layer_names(model))
    want = {m["layer"] for m in meta["layers"]}
    if names != want:
        raise CheckpointError(f"checkpoint: SLT layers {sorted(want)} do not match the model's {sorted(names)}")
    from .conversion import _set_child

    for lm in meta["layers"]:
        name = lm["layer"]
        old = model.get_submodule(name) if name else model
        shape = tuple(old.weight_shape)
        if shape != tuple(lm["shape"]):
            raise CheckpointError(f"checkpoint: layer {name!r} has shape {tuple(lm['shape'])}, the model {shape}")
        pws = []
        for i in range(lm["masks"]):
            key = f"mask.{name}.{i}"
            if key not in tensors:
                raise CheckpointError(f"checkpoint: missing tensor {key!r}")
            pws.append(_unpack_stream(lm, tensors[key], tensors.get(f"coat_scales.{name}.{i}")))
        bias = tensors.get(f"dense.{name + '.' if name else ''}bias")
        new = SLTPackedLayer(pws, kind=lm["kind"], bias=bias, conv=lm["conv"], arch=lm["arch"], backend=backend)
        if not name:
            return new
        _set_child(model, name, new)
    dense = {k[len("dense."):]: v for k, v in tensors.items() if k.startswith("dense.")}
    state = model.state_dict()
    for key, t in dense.items():
        if key not in state and not key.endswith("bias"):
            raise CheckpointError(f"checkpoint: tensor {key!r} has no place in the model")
        if key in state and state[key].shape != t.shape:
            raise CheckpointError(f"checkpoint: {key!r} has shape {tuple(t.shape)}, "
                                  f"the model {tuple(state[key].shape)}")
    model.load_state_dict({k: v for k, v in dense.items() if k in state}, strict=False)
    return model.eval()


__all__ = ["CheckpointError", "SaveInfo", "architecture", "build", "load", "read", "save"]
