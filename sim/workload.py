"""Workloads: lists of GEMM layers (M × K activations times K × N weights) with the SLT format of
each weight. Convolutions are im2col GEMMs: M = batch·OH·OW, K = Cin·kh·kw, N = Cout.

Sources: an slt_hw model (search or packed layers; rows M from forward hooks on an example input),
a topology CSV (`name,M,N,K[,format,density,repeats]` or SCALE-Sim's conv columns), or the zoo.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

FORMATS = ("dense", "binary", "multicoat", "frozen", "activation")


@dataclass(frozen=True)
class Layer:
    name: str
    M: int  # output rows (batch × pixels or tokens)
    N: int  # output features / filters
    K: int  # reduction length
    format: str = "binary"  # SLT mask format; dense = a layer kept dense; activation = both operands activations
    density: float = 0.3  # kept fraction of the weights (coat 1 for multicoat)
    coat_densities: tuple[float, ...] = ()  # multicoat: density of every coat, coat 1 first
    free_fraction: float = 1.0  # frozen: fraction of weights that are free (mask bits exist only for them)
    repeats: int = 1  # executions (folding iterations, identical layers)
    mask_copies: int = 1  # stored masks (unshared folding: one per iteration)
    mask_bits_exact: int | None = None  # from a packed model: the exact stored information bits (all copies)

    def __post_init__(self) -> None:
        for f in ("M", "N", "K", "repeats", "mask_copies"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{self.name}.{f}: expected an int >= 1, got {v!r}")
        if self.format not in FORMATS:
            raise ValueError(f"{self.name}.format: expected one of {list(FORMATS)}, got {self.format!r}")
        for f in ("density", "free_fraction"):
            v = getattr(self, f)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{self.name}.{f}: expected a fraction in [0, 1], got {v!r}")
        if self.format == "multicoat" and not self.coat_densities:
            raise ValueError(f"{self.name}.coat_densities: required for the multicoat format")

    @property
    def weights(self) -> int:
        return self.N * self.K

    @property
    def macs(self) -> int:
        return self.M * self.N * self.K * self.repeats

    @property
    def has_weights(self) -> bool:
        return self.format != "activation"

    def mask_bits_per_weight(self) -> float:
        """Information bits per weight per mask copy (docs/rng.md §7)."""
        if self.format == "binary":
            return 1.0
        if self.format == "multicoat":  # coat i+1 stores one bit per survivor of coat i
            return 1.0 + sum(self.coat_densities[:-1])
        if self.format == "frozen":
            return self.free_fraction
        return 0.0

    def nonzero_fraction(self) -> float:
        """Fraction of weights that are non-zero (MACs that toggle; the rest are clock-gated)."""
        if self.format == "multicoat":
            return self.coat_densities[0]
        return self.density if self.format in ("binary", "frozen") else 1.0


@dataclass(frozen=True)
class Workload:
    name: str
    layers: tuple[Layer, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError(f"{self.name}: a workload needs at least one layer")

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers if layer.has_weights)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)


# ------------------------------------------------------------------ storage of a whole model


def model_bits(w: Workload, weight_kind: str, weight_bits: int = 8, mask_memory=None) -> int:
    """Bits the design stores for the model's weights: weights × precision for dense / binary /
    ternary, mask bits (per format, all copies) for an SLT design; seeds aside."""
    total = 0.0
    for layer in w.layers:
        if not layer.has_weights:
            continue
        if weight_kind == "slt" and layer.format != "dense":
            total += layer_mask_bits(layer, mask_memory)
        else:
            bits = {"dense": weight_bits, "binary": 1, "ternary": 2}.get(weight_kind, weight_bits)
            total += layer.weights * bits
    return int(round(total))


def layer_mask_bits(layer: Layer, mask_memory=None) -> float:
    """Stored mask bits of one layer, all copies: the exact count when the layer came from a packed
    model, else weights × bits per weight (a config override per format wins)."""
    override = getattr(mask_memory, layer.format, None) if mask_memory is not None else None
    if override is not None:
        return layer.weights * override * layer.mask_copies
    if layer.mask_bits_exact is not None:
        return float(layer.mask_bits_exact)
    return layer.weights * layer.mask_bits_per_weight() * layer.mask_copies


# ------------------------------------------------------------------ zoo


def _conv(name, h, cin, cout, k, stride, batch=1, **kw) -> tuple[Layer, int]:
    pad = k // 2
    oh = (h + 2 * pad - k) // stride + 1
    return Layer(name, batch * oh * oh, cout, cin * k * k, **kw), oh


def resnet(depth: int, batch: int = 1, **kw) -> Workload:
    """ResNet-18/50 at 224×224 (torchvision shapes); the stem and fc are SLT layers too."""
    blocks = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
    layers, h = [], 224
    stem, h = _conv("conv1", h, 3, 64, 7, 2, batch, **kw)
    layers.append(stem)
    h = (h + 2 - 3) // 2 + 1  # max-pool 3×3/2
    cin = 64
    for s, n in enumerate(blocks):
        width = 64 * 2 ** s
        for b in range(n):
            stride = 2 if (b == 0 and s > 0) else 1
            p = f"layer{s + 1}.{b}"
            if depth == 18:
                c1, oh = _conv(f"{p}.conv1", h, cin, width, 3, stride, batch, **kw)
                c2, _ = _conv(f"{p}.conv2", oh, width, width, 3, 1, batch, **kw)
                new = [c1, c2]
                cout = width
            else:
                cout = 4 * width
                c1, _ = _conv(f"{p}.conv1", h, cin, width, 1, 1, batch, **kw)
                c2, oh = _conv(f"{p}.conv2", h, width, width, 3, stride, batch, **kw)
                c3, _ = _conv(f"{p}.conv3", oh, width, cout, 1, 1, batch, **kw)
                new = [c1, c2, c3]
            if b == 0 and (stride != 1 or cin != cout):
                ds = Layer(f"{p}.downsample", batch * oh * oh, cout, cin, **kw)
                new.append(ds)
            layers += new
            cin, h = cout, oh
    layers.append(Layer("fc", batch, 1000, cin, **kw))
    return Workload(f"resnet{depth}", tuple(layers))


def gpt2_block(phase: str = "prefill", seq: int = 1024, d: int = 768, heads: int = 12, **kw) -> Workload:
    """One GPT-2-small block. prefill: `seq` tokens at once; decode: one token against a KV cache of `seq`."""
    if phase not in ("prefill", "decode"):
        raise ValueError(f"phase: expected 'prefill' or 'decode', got {phase!r}")
    m = seq if phase == "prefill" else 1
    dh = d // heads
    layers = [Layer("attn.qkv", m, 3 * d, d, **kw),
              Layer("attn.scores", m, seq, dh, format="activation", repeats=heads),
              Layer("attn.values", m, dh, seq, format="activation", repeats=heads),
              Layer("attn.proj", m, d, d, **kw),
              Layer("mlp.fc", m, 4 * d, d, **kw),
              Layer("mlp.proj", m, d, 4 * d, **kw)]
    return Workload(f"gpt2-block-{phase}", tuple(layers))


def gin_arxiv(nodes: int = 169_343, feat: int = 128, hidden: int = 386, classes: int = 40, **kw) -> Workload:
    """4-layer GIN at ogbn-arxiv sizes; each GIN layer is a 2-layer MLP. The sparse neighbour sum
    is not a GEMM and is not modelled."""
    dims = [feat, hidden, hidden, hidden]
    layers = []
    for i in range(4):
        out = classes if i == 3 else hidden
        layers += [Layer(f"gin{i}.mlp0", nodes, hidden, dims[i], **kw), Layer(f"gin{i}.mlp1", nodes, out, hidden, **kw)]
    return Workload("gin-arxiv", tuple(layers))


def mlp(sizes=(784, 300, 100, 10), batch: int = 64, **kw) -> Workload:
    return Workload("mlp", tuple(Layer(f"fc{i}", batch, b, a, **kw)
                                 for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False))))


def fold(w: Workload, stages: tuple[str, ...], shared_masks: bool = True) -> Workload:
    """Hidden-Fold networks: in each stage (a layer-name prefix such as "layer3"), the blocks after
    the first have the same shapes and become one block applied `iters` times with the same random
    weights; one mask for all iterations (shared) or one per iteration (unshared)."""
    out: list[Layer] = []
    folded: dict[str, int] = {}
    for L in w.layers:
        parts = L.name.split(".")
        if len(parts) == 3 and parts[0] in stages and parts[1] != "0":
            key = f"{parts[0]}.folded.{parts[2]}"
            if key in folded:
                i = folded[key]
                reps = out[i].repeats + 1
                out[i] = replace(out[i], repeats=reps, mask_copies=1 if shared_masks else reps)
                continue
            folded[key] = len(out)
            L = replace(L, name=key)
        out.append(L)
    return Workload(f"{w.name}-folded{'' if shared_masks else '-unshared'}", tuple(out))


def with_format(w: Workload, fmt: str, density: float = 0.3, coat_densities: tuple[float, ...] = (),
                free_fraction: float = 1.0) -> Workload:
    """The same layers with another SLT mask format (layers with weights only)."""
    layers = tuple(replace(L, format=fmt, density=density, coat_densities=tuple(coat_densities),
                           free_fraction=free_fraction, mask_bits_exact=None) if L.has_weights else L
                   for L in w.layers)
    return Workload(f"{w.name}-{fmt}", layers)


ZOO = {
    "resnet18": lambda: resnet(18),
    "resnet50": lambda: resnet(50),
    "resnet50-folded": lambda: fold(resnet(50), ("layer3", "layer4")),
    "gpt2-prefill": lambda: gpt2_block("prefill"),
    "gpt2-decode": lambda: gpt2_block("decode"),
    "gin-arxiv": gin_arxiv,
    "mlp": mlp,
}


# ------------------------------------------------------------------ CSV and models


def from_csv(path: str | Path) -> Workload:
    """GEMM rows `name,M,N,K[,format,density,repeats]`, or SCALE-Sim conv rows `Layer name, IFMAP
    Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides`."""
    path = Path(path)
    with path.open(newline="") as fh:
        rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(fh)]
    layers = []
    for i, r in enumerate(rows):
        where = f"{path.name} row {i + 2}"
        try:
            if "m" in r:
                name, m, n, k = r.get("name") or f"l{i}", int(r["m"]), int(r["n"]), int(r["k"])
            else:
                name = r.get("layer name") or f"l{i}"
                ih, iw, fh_, fw, c, nf, st = (int(r[c]) for c in ("ifmap height", "ifmap width", "filter height",
                                                                  "filter width", "channels", "num filter", "strides"))
                m, n, k = ((ih - fh_) // st + 1) * ((iw - fw) // st + 1), nf, c * fh_ * fw
            kw = {}
            if r.get("format"):
                kw["format"] = r["format"]
            if r.get("density"):
                kw["density"] = float(r["density"])
            if r.get("repeats"):
                kw["repeats"] = int(r["repeats"])
            if kw.get("format") == "multicoat":
                kw["coat_densities"] = (kw.get("density", 0.3),)
            layers.append(Layer(name, m, n, k, **kw))
        except KeyError as e:
            raise ValueError(f"{where}: missing column {e.args[0]!r}") from None
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    return Workload(path.stem, tuple(layers))


def load_workload(spec: str | Path) -> Workload:
    if str(spec) in ZOO:
        return ZOO[str(spec)]()
    if Path(spec).exists():
        return from_csv(spec)
    raise ValueError(f"workload: {spec!r} is neither a zoo name {sorted(ZOO)} nor a CSV file")


def from_model(model, example_inputs: tuple | None = None, rows: int = 1, name: str | None = None) -> Workload:
    """Layers of an slt_hw model (search or packed SLT layers). With `example_inputs` the model runs
    once under forward hooks: M and the executions per layer (folding iterations) are measured;
    otherwise every layer runs once on `rows` rows."""
    import torch

    from slt_hw.conversion import slt_layer_names
    from slt_hw.nn.base import SLTConv2d, SLTLayer
    from slt_hw.nn.packed_layers import SLTPackedLayer

    names = slt_layer_names(model)
    if not names:
        raise ValueError("model: expected a model with SLT layers (search or packed form)")
    seen: dict[str, list[int]] = {n: [] for n in names}
    if example_inputs is not None:
        hooks = []
        for n in names:
            mod = model.get_submodule(n) if n else model

            def hook(mod, args, out, n=n):
                y = out[0] if isinstance(out, tuple) else out
                feats = mod.weight_shape[0]
                seen[n].append(y.numel() // feats)

            hooks.append(mod.register_forward_hook(hook))
        try:
            with torch.no_grad():
                model(*example_inputs)
        finally:
            for h in hooks:
                h.remove()
    layers = []
    for n in names:
        mod = model.get_submodule(n) if n else model
        shape = tuple(mod.weight_shape)
        N, K = shape[0], math.prod(shape[1:])
        calls = seen[n]
        m = max(calls) if calls else rows
        reps = max(1, len(calls))
        if isinstance(mod, SLTLayer):
            copies = mod.num_masks
            if mod.num_coats > 1:  # coat densities as the masks have them (adaptive coats too)
                with torch.no_grad():
                    lv = [mod.mask(i) for i in range(copies)]
                cd = tuple(float(sum((x > c).float().mean() for x in lv) / copies) for c in range(mod.num_coats))
                kw = dict(format="multicoat", density=cd[0], coat_densities=cd)
            elif mod.frozen:
                kw = dict(format="frozen", density=1 - mod.sparsity, free_fraction=1 - mod.p_prune - mod.p_lock)
            else:
                kw = dict(format="binary", density=1 - mod.sparsity)
            if isinstance(mod, SLTConv2d) and not calls:
                m = rows
        else:
            assert isinstance(mod, SLTPackedLayer)
            ps = mod.packed
            copies = len(ps)
            fmt = ps[0].format.value
            exact = sum(p.mask_bits() for p in ps)
            dens = float(sum(p.mask().ne(0).float().mean() for p in ps) / copies)
            kw = dict(format=fmt, density=dens, mask_bits_exact=exact)
            if fmt == "multicoat":
                levels = [p.mask() for p in ps]
                kw["coat_densities"] = tuple(float(sum((lv > i).float().mean() for lv in levels) / copies)
                                             for i in range(ps[0].num_coats))
            if fmt == "frozen":
                kw["free_fraction"] = sum(p.num_free for p in ps) / (copies * N * K)
        layers.append(Layer(n or "layer", m, N, K, repeats=reps, mask_copies=copies, **kw))
    return Workload(name or type(model).__name__, tuple(layers))
