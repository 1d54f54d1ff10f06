"""Workloads: lists of GEMM layers (M × K activations times K × N weights) with the SLT format of
each weight. Convolutions are im2col GEMMs: M = batch·OH·OW, K = Cin·kh·kw, N = Cout.

Each layer also says where its operands come from (`src`, `add`, `wsrc`: names of earlier layers),
so the simulator can keep a layer's output on chip for its consumers (sim/residency.py); by default
a layer reads the previous layer's output.

Sources: an slt_hw model (search or packed layers; rows M from forward hooks on an example input;
or a `.slt` checkpoint), a topology CSV (`name,M,N,K[,format,density,repeats]` or SCALE-Sim's conv
and GEMM rows, read with SCALE-Sim's own output-size rounding), or the zoo.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

FORMATS = ("dense", "binary", "multicoat", "frozen", "activation")
INPUT = "input"  # the network input, as a producer name


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
    in_elems: int | None = None  # unique input elements per execution (a conv's feature map); None = M·K
    src: tuple[str, ...] | None = None  # layers whose outputs form the input; None = the previous layer
    add: str | None = None  # residual: the layer whose output is added to this layer's output
    wsrc: str | None = None  # activation layers: producer of the second operand; None = DRAM (a KV cache)

    def __post_init__(self) -> None:
        for f in ("M", "N", "K", "repeats", "mask_copies"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{self.name}.{f}: expected an int >= 1, got {v!r}")
        if self.in_elems is not None and (isinstance(self.in_elems, bool) or not isinstance(self.in_elems, int)
                                          or self.in_elems < 1):
            raise ValueError(f"{self.name}.in_elems: expected an int >= 1 or None, got {self.in_elems!r}")
        if self.src is not None and (not isinstance(self.src, tuple) or not self.src
                                     or not all(isinstance(x, str) and x for x in self.src)):
            raise ValueError(f"{self.name}.src: expected a non-empty tuple of layer names or None, got {self.src!r}")
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

    @property
    def _tensors(self) -> int:
        # activation×activation layers repeat over heads (independent tensors); weight layers repeat
        # over folding iterations or identical calls that reuse one buffer
        return self.repeats if self.format == "activation" else 1

    @property
    def input_elems(self) -> int:
        """Unique input elements held between layers (all heads of an attention product)."""
        return (self.in_elems or self.M * self.K) * self._tensors

    @property
    def output_elems(self) -> int:
        return self.M * self.N * self._tensors

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
        seen = {INPUT}
        for L in self.layers:
            if L.name in seen:
                raise ValueError(f"{self.name}: layer name {L.name!r} is used twice")
            for f, names in (("src", L.src or ()), ("add", (L.add,) if L.add else ()),
                             ("wsrc", (L.wsrc,) if L.wsrc else ())):
                for n in names:
                    if n not in seen:
                        raise ValueError(f"{L.name}.{f}: {n!r} is not an earlier layer (or {INPUT!r})")
            seen.add(L.name)

    def sources(self, i: int) -> tuple[str, ...]:
        """Producers of layer i's input: its `src`, else the previous layer (the network input first)."""
        L = self.layers[i]
        return L.src or ((self.layers[i - 1].name,) if i else (INPUT,))

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


def touched(size: int, k: int, stride: int, out: int) -> int:
    """Input rows (or columns) a convolution reads: the union of its `out` windows of `k` at
    `stride` inside the input (a strided 1×1 convolution skips the rows between its windows)."""
    if stride < k:
        return min(size, (out - 1) * stride + k)
    return sum(max(0, min(k, size - i * stride)) for i in range(out))


@dataclass(frozen=True)
class Conv:
    """A square convolution: its im2col GEMM layer and its SCALE-Sim topology row."""

    name: str
    h: int  # input height = width (unpadded)
    cin: int
    cout: int
    k: int
    stride: int = 1

    @property
    def pad(self) -> int:
        return self.k // 2

    @property
    def out(self) -> int:
        return (self.h + 2 * self.pad - self.k) // self.stride + 1

    def layer(self, batch: int = 1, **kw) -> Layer:
        side = min(self.h, touched(self.h + 2 * self.pad, self.k, self.stride, self.out))
        return Layer(self.name, batch * self.out ** 2, self.cout, self.cin * self.k ** 2,
                     in_elems=batch * side ** 2 * self.cin, **kw)

    def scalesim_row(self) -> str:
        hp = self.h + 2 * self.pad  # SCALE-Sim takes the padded input
        return f"{self.name}, {hp}, {hp}, {self.k}, {self.k}, {self.cin}, {self.cout}, {self.stride},"


def resnet_convs(depth: int, image: int = 224) -> list[tuple[Conv, tuple[str, ...], str | None]]:
    """ResNet-18/50 convolutions in execution order with their wiring (src, residual add).
    image 224: torchvision's ImageNet stem (7×7/2 conv, 3×3/2 max-pool, fused into conv1's write);
    image 32: the CIFAR stem (3×3/1 conv, no pool)."""
    if depth not in (18, 50):
        raise ValueError(f"depth: expected 18 or 50, got {depth!r}")
    blocks = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
    stem = Conv("conv1", image, 3, 64, 7, 2) if image > 64 else Conv("conv1", image, 3, 64, 3, 1)
    out = [(stem, (INPUT,), None)]
    h = (stem.out + 2 - 3) // 2 + 1 if image > 64 else stem.out
    cin, x = 64, "conv1"
    for s, n in enumerate(blocks):
        width = 64 * 2 ** s
        cout = width if depth == 18 else 4 * width
        for b in range(n):
            stride = 2 if (b == 0 and s > 0) else 1
            p = f"layer{s + 1}.{b}"
            short = x
            if b == 0 and (stride != 1 or cin != cout):
                out.append((Conv(f"{p}.downsample", h, cin, cout, 1, stride), (x,), None))
                short = f"{p}.downsample"
            if depth == 18:
                convs = [Conv(f"{p}.conv1", h, cin, width, 3, stride)]
                convs.append(Conv(f"{p}.conv2", convs[0].out, width, width, 3))
            else:
                convs = [Conv(f"{p}.conv1", h, cin, width, 1), Conv(f"{p}.conv2", h, width, width, 3, stride)]
                convs.append(Conv(f"{p}.conv3", convs[1].out, width, cout, 1))
            prev = x
            for i, c in enumerate(convs):
                out.append((c, (prev,), short if i == len(convs) - 1 else None))
                prev = c.name
            x, cin, h = prev, cout, convs[-1].out
    return out


def resnet(depth: int, batch: int = 1, image: int = 224, classes: int = 1000, **kw) -> Workload:
    """ResNet-18/50 (torchvision shapes at 224×224, or the CIFAR variant at 32×32); the stem and fc
    are SLT layers too. Residual adds are wired, so shortcuts can stay on chip."""
    convs = resnet_convs(depth, image)
    layers = [c.layer(batch, src=src, add=add, **kw) for c, src, add in convs]
    cin = convs[-1][0].cout
    layers.append(Layer("fc", batch, classes, cin, in_elems=batch * cin, src=(layers[-1].name,), **kw))
    tag = "" if image == 224 else f"-{image}px" if image != 32 else "-cifar"
    return Workload(f"resnet{depth}{tag}", tuple(layers))


def conv6(batch: int = 1, classes: int = 10, **kw) -> Workload:
    """Edge-Popup's Conv-6 on CIFAR-10 (Ramanujan et al. 2020, after Frankle & Carbin): 3×3 convs of
    64, 64, 128, 128, 256, 256 channels with 2×2 max-pools after each pair (fused into the writes),
    then fc 4096 → 256 → 256 → classes."""
    convs, h, cin = [], 32, 3
    for i, c in enumerate((64, 64, 128, 128, 256, 256)):
        convs.append(Conv(f"conv{i + 1}", h, cin, c, 3))
        cin = c
        if i % 2:
            h //= 2
    layers = [c.layer(batch, **kw) for c in convs]
    for i, (a, b) in enumerate(((cin * h * h, 256), (256, 256), (256, classes))):
        layers.append(Layer(f"fc{i + 1}", batch, b, a, **kw))
    return Workload("conv6-cifar", tuple(layers))


def gpt2_block(phase: str = "prefill", seq: int = 1024, d: int = 768, heads: int = 12, **kw) -> Workload:
    """One GPT-2-small block. prefill: `seq` tokens at once; decode: one token against a KV cache of
    `seq` (read from DRAM: the score and value products' second operand has no producer on chip)."""
    if phase not in ("prefill", "decode"):
        raise ValueError(f"phase: expected 'prefill' or 'decode', got {phase!r}")
    m = seq if phase == "prefill" else 1
    dh = d // heads
    kv = "attn.qkv" if phase == "prefill" else None
    layers = [Layer("attn.qkv", m, 3 * d, d, src=(INPUT,), **kw),
              Layer("attn.scores", m, seq, dh, format="activation", repeats=heads, src=("attn.qkv",), wsrc=kv),
              Layer("attn.values", m, dh, seq, format="activation", repeats=heads, src=("attn.scores",), wsrc=kv),
              Layer("attn.proj", m, d, d, add=INPUT, **kw),
              Layer("mlp.fc", m, 4 * d, d, **kw),
              Layer("mlp.proj", m, d, 4 * d, add="attn.proj", **kw)]
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
    weights; one mask for all iterations (shared) or one per iteration (unshared). A folded layer
    reads the previous layer (the loop's wiring is not a DAG); references to merged layers follow
    the merged name."""
    out: list[Layer] = []
    folded: dict[str, int] = {}
    rename: dict[str, str] = {}
    for L in w.layers:
        parts = L.name.split(".")
        if len(parts) == 3 and parts[0] in stages and parts[1] != "0":
            key = f"{parts[0]}.folded.{parts[2]}"
            rename[L.name] = key
            if key in folded:
                i = folded[key]
                reps = out[i].repeats + 1
                out[i] = replace(out[i], repeats=reps, mask_copies=1 if shared_masks else reps)
                continue
            folded[key] = len(out)
            L = replace(L, name=key, src=None, add=None)
        out.append(L)
    names: set[str] = {INPUT}
    wired = []
    for L in out:  # follow merged names; drop references that no longer point backwards
        src = tuple(rename.get(n, n) for n in L.src) if L.src else None
        add = rename.get(L.add, L.add) if L.add else None
        wired.append(replace(L, src=src if src and all(n in names for n in src) else None,
                             add=add if add in names else None))
        names.add(L.name)
    return Workload(f"{w.name}-folded{'' if shared_masks else '-unshared'}", tuple(wired))


def with_batch(w: Workload, batch: int) -> Workload:
    """The same network on `batch` samples at once: weight layers stream `batch` times the rows
    past each weight (the weights are fetched once for the batch); activation × activation
    products (attention) stay per sample, so they repeat."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected an int >= 1, got {batch!r}")
    if batch == 1:
        return w
    layers = tuple(replace(L, M=L.M * batch, in_elems=L.in_elems * batch if L.in_elems else None)
                   if L.has_weights else replace(L, repeats=L.repeats * batch) for L in w.layers)
    return Workload(f"{w.name}-b{batch}", layers)


def with_format(w: Workload, fmt: str, density: float = 0.3, coat_densities: tuple[float, ...] = (),
                free_fraction: float = 1.0) -> Workload:
    """The same layers with another SLT mask format (layers with weights only)."""
    layers = tuple(replace(L, format=fmt, density=density, coat_densities=tuple(coat_densities),
                           free_fraction=free_fraction, mask_bits_exact=None) if L.has_weights else L
                   for L in w.layers)
    return Workload(f"{w.name}-{fmt}", layers)


ZOO = {
    "resnet18": lambda: resnet(18),
    "resnet18-cifar": lambda: resnet(18, image=32, classes=100),
    "conv6-cifar": conv6,
    "resnet50": lambda: resnet(50),
    "resnet50-folded": lambda: fold(resnet(50), ("layer3", "layer4")),
    "gpt2-prefill": lambda: gpt2_block("prefill"),
    "gpt2-decode": lambda: gpt2_block("decode"),
    "gin-arxiv": gin_arxiv,
    "mlp": mlp,
}


# ------------------------------------------------------------------ CSV and models


def from_csv(path: str | Path) -> Workload:
    """GEMM rows `name,M,N,K[,format,density,repeats]` (SCALE-Sim's `Layer, M, N, K` header too), or
    SCALE-Sim conv rows `Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
    Num Filter, Strides` with the padded input size, read as SCALE-Sim reads them: output size
    ⌈(H − F + S) / S⌉ (not ⌊(H − F) / S⌋ + 1), unique input the pixels the windows touch."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(fh)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"workload {str(path)!r}: not a CSV text file ({e.__class__.__name__})") from None
    if not rows:
        raise ValueError(f"workload {str(path)!r}: no layer rows")
    layers = []
    for i, r in enumerate(rows):
        where = f"{path.name} row {i + 2}"
        try:
            kw: dict = {}
            if "m" in r:
                name, m, n, k = r.get("name") or r.get("layer") or f"l{i}", int(r["m"]), int(r["n"]), int(r["k"])
            else:
                name = r.get("layer name") or f"l{i}"
                ih, iw, fh_, fw, c, nf, st = (int(r[c]) for c in ("ifmap height", "ifmap width", "filter height",
                                                                  "filter width", "channels", "num filter", "strides"))
                if not (0 < fh_ <= ih and 0 < fw <= iw and st > 0):
                    raise ValueError(f"filter {fh_}x{fw} stride {st} does not fit the input {ih}x{iw}")
                oh, ow = -(-(ih - fh_ + st) // st), -(-(iw - fw + st) // st)
                m, n, k = oh * ow, nf, c * fh_ * fw
                kw["in_elems"] = touched(ih, fh_, st, oh) * touched(iw, fw, st, ow) * c
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


def from_checkpoint(path: str | Path, rows: int = 1, input_shape: tuple[int, ...] | None = None) -> Workload:
    """The SLT layers of a `.slt` checkpoint (`slt-hw find`, `slt_hw.save`), run once on `rows` rows
    (the batch) of zeros shaped `input_shape` (needed for convolutions: C, H, W) to measure M."""
    import torch

    from slt_hw.checkpoint import load
    from slt_hw.nn.packed_layers import SLTPackedLayer

    model = load(path)
    packed = [m for m in model.modules() if isinstance(m, SLTPackedLayer)]
    if input_shape is None and any(m.kind != "linear" for m in packed):
        raise ValueError(f"--input-shape: {Path(path).name} has convolutions; give the input as C,H,W")
    example = None
    if input_shape is not None:
        example = (torch.zeros(rows, *input_shape),)
    elif packed and packed[0].kind == "linear":
        example = (torch.zeros(rows, packed[0].weight_shape[1]),)
    try:
        return from_model(model, example, rows=rows, name=Path(path).stem)
    except RuntimeError as e:  # the example did not fit the model
        raise ValueError(f"--input-shape: running {Path(path).name} on zeros of shape "
                         f"{tuple(example[0].shape) if example else '?'} failed: {str(e).splitlines()[0]}") from None


def load_workload(spec: str | Path, rows: int = 1, input_shape: tuple[int, ...] | None = None) -> Workload:
    """A zoo name (on a batch of `rows` samples), a topology CSV or an slt_hw checkpoint (.slt, run
    on `rows` rows)."""
    if str(spec) in ZOO:
        return with_batch(ZOO[str(spec)](), rows)
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"workload: {str(spec)!r} is neither a zoo name {sorted(ZOO)} nor an existing file")
    if path.is_dir():
        raise ValueError(f"workload {str(spec)!r}: a directory, expected a topology CSV or an .slt checkpoint")
    with path.open("rb") as fh:
        head = fh.read(9)
    if path.suffix == ".slt" or head[8:9] == b"{":  # safetensors: u64 header length, then JSON
        try:
            return from_checkpoint(path, rows, input_shape)
        except ValueError as e:
            if str(e).startswith("--input-shape"):
                raise
            raise ValueError(f"workload {str(spec)!r}: {str(e).splitlines()[0]}") from None
        except Exception as e:  # corrupt or not a checkpoint: say which file and why, in one line
            raise ValueError(f"workload {str(spec)!r}: not a readable .slt checkpoint or CSV "
                             f"({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return from_csv(path)


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
