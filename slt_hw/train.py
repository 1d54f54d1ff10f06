"""Supermask search entry point: `find(FindConfig(...))`, the Python side of `slt-hw find`; data-parallel
over N processes (`nproc`, or torchrun) with the score gradients all-reduced (slt_hw.distributed)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import data as _data
from . import distributed as _dist
from .models import GNN, MLP, AttentionRegressor
from .nn.base import SLTConv2d, SLTLinear
from .search.schedules import constant, linear_ramp
from .search.threshold import check_sparsity
from .search.topk import global_threshold, set_sparsity

METHODS = ("edge_popup", "multicoat", "frozen")
GRAPHS = ("sbm", "ogb")  # full-batch node tasks: one process


@dataclass
class FindConfig:
    dataset: str = "digits"  # digits | synthetic | sbm | angular_velocity | cifar10 | ogb
    data_root: str | None = None  # cifar10 / ogb: local directory
    ogb_name: str = "ogbn-arxiv"
    method: str = "edge_popup"  # edge_popup | multicoat | frozen
    sparsity: float = 0.5  # fraction removed (coat 1 for multicoat)
    num_coats: int = 3  # multicoat: adaptive coats
    p_prune: float = 0.3  # frozen
    p_lock: float = 0.1
    freeze_distribution: str = "uniform"
    threshold: str = "layer"  # layer | global
    ramp_epochs: int = 0  # > 0: linear ramp from 0 to `sparsity` over these epochs
    hidden: int = 512
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.01
    seed: int = 0
    dist: str = "signed_constant"
    device: str = "cpu"  # cpu | cuda (with several processes: one GPU each)
    out: str | None = "supermask.slt"  # packed checkpoint; None: do not save
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dataset not in (*_data.BUILTIN, "cifar10", "ogb"):
            raise ValueError(f"dataset: expected one of {[*_data.BUILTIN, 'cifar10', 'ogb']}, got {self.dataset!r}")
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        check_sparsity(self.sparsity)
        if self.threshold not in ("layer", "global"):
            raise ValueError(f"threshold: expected 'layer' or 'global', got {self.threshold!r}")
        for arg in ("epochs", "batch_size", "hidden"):
            v = getattr(self, arg)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg}: expected an int >= 1, got {v!r}")
        if self.dataset in ("cifar10", "ogb") and not self.data_root:
            raise ValueError(f"data_root: the {self.dataset} loader reads local files; give their directory")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: 'cuda' asked for, but torch sees no CUDA device")


def check_parallel(cfg: FindConfig, nproc: int) -> None:
    """Usage errors of a data-parallel run, before any process starts."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc: expected an int >= 1, got {nproc!r}")
    world = nproc * _dist.torchrun_world()
    if nproc > 1 and _dist.torchrun_world() > 1:
        raise ValueError("nproc: under torchrun the processes come from torchrun (--nproc-per-node); leave --nproc out")
    if world > 1 and cfg.dataset in GRAPHS:
        raise ValueError(f"nproc: {cfg.dataset} trains full-batch on one graph; data-parallel search needs "
                         "minibatches (digits, synthetic, angular_velocity, cifar10)")
    if world > 1 and cfg.batch_size < world:
        raise ValueError(f"batch_size: {cfg.batch_size} cannot be shared by {world} processes")
    if nproc > 1 and cfg.device == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(f"nproc: {nproc} processes need {nproc} GPUs (one each), torch sees "
                         f"{torch.cuda.device_count()}")


@dataclass
class FindResult:
    model: nn.Module
    test_metric: float  # accuracy, or MSE for regression
    metric_name: str
    history: list[dict]
    saved: object | None
    seconds: float
    rank: int = 0  # in a data-parallel run every rank returns one; rank 0's saved the checkpoint


def _slt_kwargs(cfg: FindConfig) -> dict:
    kw = {"sparsity": cfg.sparsity, "dist": cfg.dist}
    if cfg.method == "multicoat":
        kw["num_coats"] = cfg.num_coats
    if cfg.method == "frozen":
        kw.update(p_prune=cfg.p_prune, p_lock=cfg.p_lock)
    return kw


def load_dataset(cfg: FindConfig) -> _data.Dataset:
    if cfg.dataset == "cifar10":
        return _data.cifar10(cfg.data_root)
    if cfg.dataset == "ogb":
        return _data.ogb_node(cfg.data_root, cfg.ogb_name)
    return _data.BUILTIN[cfg.dataset](seed=cfg.seed)


def build_model(cfg: FindConfig, ds: _data.Dataset) -> nn.Module:
    kw = _slt_kwargs(cfg)
    if ds.adj is not None:
        return GNN(ds.features.shape[1], cfg.hidden, ds.num_classes, seed=cfg.seed, **kw)
    if cfg.dataset == "angular_velocity":
        return AttentionRegressor(seed=cfg.seed, qk_dim=min(cfg.hidden, 64), v_dim=min(cfg.hidden, 64), **kw)
    if ds.train.x.dim() == 4:  # images: a Conv4-style network
        c = ds.train.x.shape[1]
        s = cfg.seed
        return nn.Sequential(
            SLTConv2d(c, 64, 3, seed=s, name="conv0", padding=1, **kw), nn.ReLU(),
            SLTConv2d(64, 64, 3, seed=s, name="conv1", padding=1, **kw), nn.ReLU(), nn.MaxPool2d(2),
            SLTConv2d(64, 128, 3, seed=s, name="conv2", padding=1, **kw), nn.ReLU(),
            SLTConv2d(128, 128, 3, seed=s, name="conv3", padding=1, **kw), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), SLTLinear(128 * 8 * 8, 256, seed=s, name="fc0", **kw), nn.ReLU(),
            SLTLinear(256, ds.num_classes, seed=s, name="fc1", **kw))
    return MLP([ds.train.x.shape[1], cfg.hidden, cfg.hidden, ds.num_classes], seed=cfg.seed, **kw)


def _batches(n: int, size: int, g: torch.Generator):
    perm = torch.randperm(n, generator=g)
    for i in range(0, n, size):
        yield perm[i:i + size]


def _loss(out: torch.Tensor, y: torch.Tensor, regression: bool) -> torch.Tensor:
    return F.mse_loss(out, y) if regression else F.cross_entropy(out, y)


def _loss_sum(out: torch.Tensor, y: torch.Tensor, regression: bool) -> torch.Tensor:
    """The sum over samples of each sample's loss: shares of a batch add up to the whole batch."""
    if regression:
        return F.mse_loss(out, y, reduction="sum") / max(1, out[0].numel() if out.dim() > 1 else 1)
    return F.cross_entropy(out, y, reduction="sum")


@torch.no_grad()
def evaluate(model: nn.Module, ds: _data.Dataset, split: _data.Split, group: _dist.Group = _dist.SINGLE) -> float:
    """Accuracy (classification) or mean squared error (regression); in a data-parallel run each rank
    evaluates its share of the split and the sums are all-reduced."""
    model.eval()
    if ds.adj is not None:
        out = model(ds.features, ds.adj)[split.x]
        if ds.num_classes == 0:
            return float(F.mse_loss(out, split.y))
        return float((out.argmax(-1) == split.y).float().mean())
    mine = _dist.shard(torch.arange(split.x.shape[0]), group)
    x, y = split.x[mine], split.y[mine]
    total = 0.0
    for i in range(0, x.shape[0], 1024):
        out, yi = model(x[i:i + 1024]), y[i:i + 1024]
        total += float(_loss_sum(out, yi, True) if ds.num_classes == 0 else (out.argmax(-1) == yi).sum())
    total, count = _dist.all_sum([total, float(x.shape[0])], group)
    return total / count


def find(cfg: FindConfig, console=None, progress: bool = True, nproc: int = 1) -> FindResult:
    """Train a supermask (scores only), log loss and the test metric per epoch, save the packed checkpoint.
    nproc > 1: that many local processes, each on its share of every batch (rank 0's result is returned;
    the workers are spawned, so a calling script needs `if __name__ == "__main__":`); under torchrun:
    this process is one rank of its run."""
    check_parallel(cfg, nproc)
    if nproc > 1:
        t0 = time.perf_counter()
        res = _dist.spawn(nproc, cfg.device, _find_rank, cfg, progress)
        res.seconds = time.perf_counter() - t0  # start-up included
        return res
    if _dist.torchrun_world() > 1:
        g = _dist.join(cfg.device)
        try:
            return _search(cfg, g, console, progress)
        finally:
            _dist.leave()
    return _search(cfg, _dist.SINGLE, console, progress)


def _find_rank(g: _dist.Group, cfg: FindConfig, progress: bool) -> FindResult:
    res = _search(cfg, g, None, progress)
    res.model.cpu()  # rank 0's result goes back to the parent process
    return res


def _search(cfg: FindConfig, g: _dist.Group, console, progress: bool) -> FindResult:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from torch.nn.parallel import DistributedDataParallel

    console = console or Console(quiet=not g.main)
    progress = progress and g.main
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)  # dropout and friends; weights come from the contract
    device = torch.device(cfg.device if cfg.device == "cpu" else f"cuda:{g.local_rank}")
    ds = _on(load_dataset(cfg), device)
    model = build_model(cfg, ds).to(device)
    if cfg.threshold == "global":
        global_threshold(model, cfg.sparsity)
    # every rank regenerates the same weights from the seed: only score gradients travel, no buffers
    net = model if g.world == 1 else DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None, forward_sync_buffers=False)
    schedule = linear_ramp(0.0, cfg.sparsity, cfg.ramp_epochs) if cfg.ramp_epochs else constant(cfg.sparsity)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    regression = ds.num_classes == 0
    graph = ds.adj is not None
    g_batches = torch.Generator().manual_seed(cfg.seed)  # the same batches on every rank
    history = []
    metric = "mse" if regression else "accuracy"
    with Progress(TextColumn("[bold]find[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not progress, transient=False) as bar:
        task = bar.add_task(f"{cfg.dataset} / {cfg.method}", total=cfg.epochs)
        for epoch in range(cfg.epochs):
            if cfg.ramp_epochs:
                set_sparsity(model, schedule(epoch))
            model.train()
            total, count = 0.0, 0
            if graph:
                opt.zero_grad()
                loss = _loss(model(ds.features, ds.adj)[ds.train.x], ds.train.y, regression)
                loss.backward()
                opt.step()
                total, count = loss.item(), 1
            else:
                for idx in _batches(ds.train.x.shape[0], cfg.batch_size, g_batches):
                    mine = _dist.shard(idx, g)
                    opt.zero_grad()
                    loss = _loss_sum(net(ds.train.x[mine]), ds.train.y[mine], regression)
                    # DDP averages gradients over ranks: scaled so the average is the whole batch's mean
                    (loss * (g.world / idx.numel())).backward()
                    opt.step()
                    total, count = total + loss.item(), count + mine.numel()
                total, count = _dist.all_sum([total, float(count)], g)
            test = evaluate(model, ds, ds.test, g)
            history.append({"epoch": epoch + 1, "loss": total / count, metric: test})
            bar.update(task, advance=1, description=f"{cfg.dataset} / {cfg.method}  loss {total / count:.4f}  "
                                                     f"test {metric} {test:.4f}")
    saved = None
    if cfg.out and g.main:  # one writer; checkpoint.save is atomic (temporary file, fsync, rename)
        from .checkpoint import save

        saved = save(model, Path(cfg.out))
        console.print(f"saved {saved.path} ({saved.bytes_on_disk:,} bytes on disk, payload {saved.payload_bytes:,})")
    return FindResult(model, history[-1][metric], metric, history, saved, time.perf_counter() - t0, g.rank)


def _on(ds: _data.Dataset, device: torch.device) -> _data.Dataset:
    def mv(v):
        if isinstance(v, _data.Split):
            return _data.Split(mv(v.x), mv(v.y))
        return v.to(device) if isinstance(v, torch.Tensor) else v

    return ds if device.type == "cpu" else dataclasses.replace(ds, **{f.name: mv(getattr(ds, f.name))
                                                                      for f in dataclasses.fields(ds)})
