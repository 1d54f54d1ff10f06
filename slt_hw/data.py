"""Built-in datasets (no download) and loaders for local files: CIFAR-10, Fashion-MNIST, Planetoid, OGB.

Every synthetic set is a function of its seed (a seeded torch.Generator: data, not weights).
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from . import datasets as _ds


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor


@dataclass
class Dataset:
    """Classification / regression tensors; `graph` tasks also carry a sparse adjacency and node masks."""

    name: str
    train: Split
    test: Split
    num_classes: int  # 0 for regression
    adj: torch.Tensor | None = None  # node tasks: train/test are node index splits over `x`
    features: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    val: Split | None = None  # a validation split where the dataset defines one (Planetoid)
    edge_index: torch.Tensor | None = None  # (2, E) directed edges, both directions (graphs)


def digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1797 images, no download), standardised per pixel."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.int64)
    return _split("digits", x, y, 10, seed, test_fraction)


def _split(name: str, x: torch.Tensor, y: torch.Tensor, classes: int, seed: int, test_fraction: float) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)  # a data split, not a weight
    n_test = int(round(test_fraction * x.shape[0]))
    te, tr = perm[:n_test], perm[n_test:]
    mean, std = x[tr].mean(0), x[tr].std(0).clamp_min(1e-3)
    x = (x - mean) / std
    return Dataset(name, Split(x[tr], y[tr]), Split(x[te], y[te]), classes)


def synthetic_classification(num_samples: int = 2000, num_features: int = 20, num_classes: int = 4,
                             seed: int = 0, noise: float = 1.0) -> Dataset:
    """Gaussian clusters around random class centres."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, num_features, generator=g) * 2.0
    y = torch.randint(0, num_classes, (num_samples,), generator=g)
    x = centres[y] + noise * torch.randn(num_samples, num_features, generator=g)
    return _split("synthetic", x, y, num_classes, seed + 1, 0.25)


def sbm_graph(num_nodes: int = 600, num_classes: int = 3, num_features: int = 16, p_in: float = 0.05,
              p_out: float = 0.005, seed: int = 0) -> Dataset:
    """Stochastic block model: edges with p_in inside a block, p_out across; noisy class features."""
    from .nn.gnn import gcn_adjacency

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (num_nodes,), generator=g)
    same = y[:, None] == y[None, :]
    prob = torch.where(same, p_in, p_out)
    upper = torch.triu(torch.rand(num_nodes, num_nodes, generator=g) < prob, 1)
    src, dst = upper.nonzero(as_tuple=True)
    edge_index = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    centres = torch.randn(num_classes, num_features, generator=g)
    x = centres[y] + 1.5 * torch.randn(num_nodes, num_features, generator=g)
    perm = torch.randperm(num_nodes, generator=g)
    n_test = num_nodes // 4
    adj = gcn_adjacency(edge_index, num_nodes)
    return Dataset("sbm", Split(perm[n_test:], y[perm[n_test:]]), Split(perm[:n_test], y[perm[:n_test]]),
                   num_classes, adj=adj, features=x, labels=y)


def angular_velocity(num_samples: int = 10000, seq_len: int = 4, seed: int = 0) -> Dataset:
    """x_t = (cos(ωt + θ0), sin(ωt + θ0)), ω ∈ [−π, π], θ0 ∈ [0, π]; target ω (regression).

    The model prepends the zero regression token (MHA-SLT paper, synthetic experiment)."""
    def make(n: int, g: torch.Generator) -> Split:
        w = (torch.rand(n, generator=g) * 2 - 1) * math.pi
        th = torch.rand(n, generator=g) * math.pi
        t = torch.arange(seq_len, dtype=torch.float32)
        ang = w[:, None] * t[None, :] + th[:, None]
        return Split(torch.stack([ang.cos(), ang.sin()], -1), w[:, None])

    g = torch.Generator().manual_seed(seed)
    return Dataset("angular_velocity", make(num_samples, g), make(num_samples, g), 0)


# ---------------------------------------------------------------------- local files


def _require(paths: list[Path], what: str, hint: str) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{what}: missing {', '.join(missing)}. {hint}")


def cifar10(root: str | Path | None = None) -> Dataset:
    """CIFAR-10: float32 (N, 3, 32, 32) normalised per channel with the training statistics, int64 labels.

    Reads `cifar10-jpeg.tar.gz` (train/<class>/*.jpg, test/<class>/*.jpg; decoded once with Pillow and cached,
    slt_hw.datasets) or the python batches (cifar-10-batches-py/ of cifar-10-python.tar.gz) under the data root
    (argument, $SLT_HW_DATA, or slt_hw.datasets.DEFAULT_ROOT). JPEG re-encoding is lossy: accuracies can sit
    slightly below those on the original batches."""
    base = _ds.data_root(root)
    batches = [b for b in (base / "cifar-10-batches-py", base / "cifar10" / "cifar-10-batches-py", base)
               if (b / "data_batch_1").exists()]
    if any((b / _ds.CIFAR10_TAR).exists() for b in (base / "cifar10", base)):
        xtr, ytr, xte, yte = _ds.cifar10_arrays(base)
    elif not batches:
        raise FileNotFoundError(f"data_root: no CIFAR-10 under {base}: expected {base / 'cifar10' / _ds.CIFAR10_TAR} "
                                f"or the python batches {base / 'cifar-10-batches-py'}/data_batch_1..5, test_batch")
    else:
        xtr, ytr, xte, yte = _ds.cifar10_python_batches(batches[0])
    return _images("cifar10", xtr, ytr, xte, yte, 10, per_channel=True)


def fashion_mnist(root: str | Path | None = None) -> Dataset:
    """Fashion-MNIST from its four IDX .gz files: float32 (N, 1, 28, 28), normalised with the training
    mean and std; int64 labels (60,000 train / 10,000 test)."""
    xtr, ytr, xte, yte = _ds.fashion_mnist_arrays(root)
    return _images("fashion-mnist", xtr[..., None], ytr, xte[..., None], yte, 10, per_channel=False)


def _images(name, xtr, ytr, xte, yte, classes: int, per_channel: bool) -> Dataset:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1], standardised with the training statistics."""
    tr = _ds.to_tensor(xtr).permute(0, 3, 1, 2).float().div_(255)
    te = _ds.to_tensor(xte).permute(0, 3, 1, 2).float().div_(255)
    dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
    mean, std = tr.mean(dims, keepdim=True), tr.std(dims, keepdim=True).clamp_min(1e-3)
    return Dataset(name, Split(((tr - mean) / std).contiguous(), _ds.to_tensor(ytr)),
                   Split(((te - mean) / std).contiguous(), _ds.to_tensor(yte)), classes)


def planetoid(name: str, root: str | Path | None = None) -> Dataset:
    """Cora or CiteSeer, standard Planetoid split (train: 20 labels per class, 500 validation, 1000 test
    nodes): row-normalised features (Kipf & Welling's preprocessing), the graph made undirected without
    duplicate edges or self-loops, and its GCN-normalised adjacency; CiteSeer's 15 isolated test nodes keep
    zero features and label -1 (they are in no split)."""
    from .nn.gnn import gcn_adjacency

    a = _ds.planetoid_arrays(name, root)
    x = _ds.to_tensor(a["features"])
    x = x / x.sum(1, keepdim=True).clamp_min(1e-12)
    edges = _ds.to_tensor(a["edges"])
    edges = torch.cat([edges, edges.flip(0)], 1)
    edges = torch.unique(edges[:, edges[0] != edges[1]], dim=1)
    y = _ds.to_tensor(a["labels"])
    idx = {k: _ds.to_tensor(a[k]) for k in ("train", "val", "test")}
    return Dataset(name, Split(idx["train"], y[idx["train"]]), Split(idx["test"], y[idx["test"]]),
                   a["num_classes"], adj=gcn_adjacency(edges, x.shape[0]), features=x, labels=y,
                   val=Split(idx["val"], y[idx["val"]]), edge_index=edges)


def ogb_node(root: str | Path, name: str = "ogbn-arxiv") -> Dataset:
    """An OGB node-property dataset in its raw layout: <root>/<name with _>/raw/{edge,node-feat,node-label}.csv.gz
    and split/<scheme>/{train,test}.csv.gz (what `ogb` downloads; slt_hw reads it without the ogb package).

    edge.csv.gz: one "src,dst" row per (directed) edge, made undirected here; node-feat.csv.gz: one row of
    floats per node; node-label.csv.gz: one int per node; train/test.csv.gz: one node id per row (the first
    split scheme in alphabetical order is used, e.g. split/time for ogbn-arxiv; valid.csv.gz is not read).
    A file that cannot be parsed or whose sizes / ids do not match raises ValueError."""
    base = Path(root) / name.replace("-", "_")
    raw = base / "raw"
    splits = sorted((base / "split").glob("*")) if (base / "split").exists() else []
    need = [raw / "edge.csv.gz", raw / "node-feat.csv.gz", raw / "node-label.csv.gz"]
    _require(need + ([] if splits else [base / "split"]), "root",
             f"Place the unpacked OGB dataset {name!r} there (e.g. from https://ogb.stanford.edu).")

    def csv(p: Path, dtype, cols: int | None = None) -> torch.Tensor:
        try:
            with gzip.open(p, "rt") as f:
                rows = [[float(v) for v in line.split(",")] for line in f if line.strip()]
            t = torch.tensor(rows, dtype=dtype)
        except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:  # not gzip, truncated, ragged, not numbers
            raise ValueError(f"root: {p} is not a readable gzipped CSV of numbers ({type(e).__name__}: {e})") from e
        if t.dim() == 1:  # empty file
            t = t.reshape(0, cols or 1)
        if cols is not None and t.shape[1] != cols:
            raise ValueError(f"root: {p}: expected {cols} column(s) per row, got {t.shape[1]}")
        return t

    from .nn.gnn import gcn_adjacency

    split = splits[0]
    _require([split / "train.csv.gz", split / "test.csv.gz"], "root", f"Expected the OGB split files of {name!r}.")
    edges = csv(raw / "edge.csv.gz", torch.int64, 2).t()
    x = csv(raw / "node-feat.csv.gz", torch.float32)
    y = csv(raw / "node-label.csv.gz", torch.int64, 1).reshape(-1)
    tr = csv(split / "train.csv.gz", torch.int64, 1).reshape(-1)
    te = csv(split / "test.csv.gz", torch.int64, 1).reshape(-1)
    n = x.shape[0]
    if y.numel() != n:
        raise ValueError(f"root: node-label.csv.gz has {y.numel()} rows, node-feat.csv.gz {n}: expected the same")
    for what, idx in (("edge.csv.gz", edges), (f"{split.name}/train.csv.gz", tr), (f"{split.name}/test.csv.gz", te)):
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"root: {what} has node ids in {int(idx.min())}..{int(idx.max())}, expected 0..{n - 1}")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"root: node-label.csv.gz has a negative label ({int(y.min())})")
    edge_index = torch.cat([edges, edges.flip(0)], 1)
    return Dataset(name, Split(tr, y[tr]), Split(te, y[te]), int(y.max()) + 1,
                   adj=gcn_adjacency(edge_index, x.shape[0]), features=x, labels=y)


LOCAL = {"cifar10": cifar10, "fashion-mnist": fashion_mnist, "cora": lambda root=None: planetoid("cora", root),
         "citeseer": lambda root=None: planetoid("citeseer", root)}
"""Datasets read from files under the data root (slt_hw.datasets.data_root): name -> loader(root)."""

BUILTIN = {"digits": digits, "synthetic": synthetic_classification, "sbm": sbm_graph,
           "angular_velocity": angular_velocity}
