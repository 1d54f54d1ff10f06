"""FindConfig: everything `slt-hw find` / `slt_hw.find` takes, checked when it is built (one-line errors
naming the argument), and which architectures fit which datasets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import data as _data
from .search.threshold import check_sparsity

METHODS = ("edge_popup", "multicoat", "frozen")
ARCHS = ("mlp", "conv2", "conv4", "conv6", "resnet18", "gcn", "gin")
IMAGES = ("cifar10", "fashion-mnist")
GRAPHS = ("sbm", "ogb", "cora", "citeseer")  # full-batch node tasks: one process
DATASETS = (*_data.BUILTIN, *_data.LOCAL, "ogb")
DEFAULT_ARCH = {"cifar10": "conv4", "fashion-mnist": "mlp", "angular_velocity": None}  # else mlp / gcn
DEFAULT_EPOCHS = {"fashion-mnist": 5}  # else 30


@dataclass
class FindConfig:
    dataset: str = "digits"  # digits | synthetic | sbm | angular_velocity | cifar10 | fashion-mnist | cora | ...
    data_root: str | None = None  # local files: None = $SLT_HW_DATA or slt_hw.datasets.DEFAULT_ROOT
    ogb_name: str = "ogbn-arxiv"
    arch: str | None = None  # mlp | conv2 | conv4 | conv6 | resnet18 | gcn | gin (None: the dataset's default)
    method: str = "edge_popup"  # edge_popup | multicoat | frozen
    sparsity: float = 0.5  # fraction removed (coat 1 for multicoat)
    num_coats: int = 3  # multicoat: adaptive coats
    p_prune: float = 0.3  # frozen
    p_lock: float = 0.1
    freeze_distribution: str = "uniform"
    threshold: str = "layer"  # layer | global
    ramp_epochs: int = 0  # > 0: linear ramp from 0 to `sparsity` over these epochs
    hidden: int = 512  # MLP / GNN width (conv nets and ResNet-18 have the papers' widths, see `width`)
    width: float = 1.0  # conv nets / ResNet-18: multiplier of every hidden width
    dropout: float = 0.0  # GNNs
    epochs: int | None = None  # None: 5 on fashion-mnist (a few minutes on 2 cores), else 30
    batch_size: int = 128
    optimizer: str = "adam"  # adam | sgd (momentum 0.9, Edge-Popup's CIFAR recipe)
    lr: float = 0.01
    lr_schedule: str = "constant"  # constant | cosine (annealed to 0 over the epochs)
    weight_decay: float = 0.0
    augment: bool | None = None  # random crop + flip; None: on for cifar10
    train_subset: int | None = None  # train on this many training examples (a fixed random subset)
    eval_every: int = 1  # test every N epochs (the last epoch always); 0: the last epoch only
    seed: int = 0
    dist: str = "signed_constant"
    rescale: bool = False  # fold 1/sqrt(1 - sparsity) into every layer's weight scale (the freezing paper's static
    # rescaling): keeps the signal's scale at low density in networks without normalisation (Conv2/4/6)
    dense: bool = False  # train the weights of the same network instead (the baseline; conv nets, ResNet-18)
    threads: int | None = None  # torch CPU threads (None: leave as is)
    device: str = "cpu"  # cpu | cuda (with several processes: one GPU each)
    out: str | None = "supermask.slt"  # packed checkpoint; None: do not save
    state: str | None = None  # per-epoch run state; None: "<out>.state" when out is set
    resume: bool = False  # continue from `state`
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {self.dataset!r}")
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        check_sparsity(self.sparsity)
        if self.epochs is None:
            self.epochs = DEFAULT_EPOCHS.get(self.dataset, 30)
        if self.threshold not in ("layer", "global"):
            raise ValueError(f"threshold: expected 'layer' or 'global', got {self.threshold!r}")
        for arg in ("epochs", "batch_size", "hidden"):
            _int(self, arg, 1)
        _int(self, "eval_every", 0)
        if self.train_subset is not None:
            _int(self, "train_subset", 1)
        if self.threads is not None:
            _int(self, "threads", 1)
        for arg, ok in (("lr", self.lr > 0), ("weight_decay", self.weight_decay >= 0),
                        ("width", self.width > 0), ("dropout", 0 <= self.dropout < 1)):
            v = getattr(self, arg)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok:
                raise ValueError(f"{arg}: expected a finite number ({'> 0' if arg in ('lr', 'width') else '>= 0'}"
                                 f"{', < 1' if arg == 'dropout' else ''}), got {v!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule: expected 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.dataset == "ogb" and not self.data_root:
            raise ValueError("data_root: the ogb loader reads local files; give their directory")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: 'cuda' asked for, but torch sees no CUDA device")
        self.arch = resolve_arch(self.dataset, self.arch)
        if self.augment and self.dataset not in IMAGES:
            raise ValueError(f"augment: random crop and flip are for images, not {self.dataset!r}")
        if self.dense and self.arch not in ("conv2", "conv4", "conv6", "resnet18"):
            raise ValueError(f"dense: the weight-trained baseline is for the conv nets and ResNet-18, not {self.arch}")
        if self.dense and self.out:
            raise ValueError("out: a dense (weight-trained) run has no supermask checkpoint; set out=None")
        if self.resume and not self.state_path:
            raise ValueError("resume: needs a run state: give out (the state is '<out>.state') or state")
        if self.dropout and self.arch not in ("gcn", "gin"):
            raise ValueError(f"dropout: only the GNNs (gcn, gin) take dropout, not {self.arch}")
        if self.width != 1.0 and self.arch not in ("conv2", "conv4", "conv6", "resnet18"):
            raise ValueError(f"width: only the conv nets and ResNet-18 take a width multiplier, not {self.arch}")

    @property
    def state_path(self) -> str | None:
        return self.state or (f"{self.out}.state" if self.out else None)

    @property
    def do_augment(self) -> bool:
        return self.dataset == "cifar10" if self.augment is None else bool(self.augment)


def _int(cfg: FindConfig, arg: str, low: int) -> None:
    v = getattr(cfg, arg)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{arg}: expected an int >= {low}, got {v!r}")


def resolve_arch(dataset: str, arch: str | None) -> str | None:
    """The architecture to build; an architecture that cannot take the dataset is a usage error."""
    kind = "graph" if dataset in GRAPHS else "image" if dataset in IMAGES else \
        "sequence" if dataset == "angular_velocity" else "vector"
    if arch is None:
        return DEFAULT_ARCH.get(dataset, "gcn" if kind == "graph" else "mlp")
    if arch not in ARCHS:
        raise ValueError(f"arch: expected one of {ARCHS}, got {arch!r}")
    fits = {"graph": ("gcn", "gin"), "image": ("mlp", "conv2", "conv4", "conv6", "resnet18"), "vector": ("mlp",),
            "sequence": ()}[kind]
    if arch not in fits:
        raise ValueError(f"arch: {arch} does not fit {dataset} ({kind} data: "
                         f"{', '.join(fits) or 'its own attention model, leave arch out'})")
    return arch
