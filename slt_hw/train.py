"""Supermask search entry point: `find(FindConfig(...))`, the Python side of `slt-hw find`; data-parallel
over N processes (`nproc`, or torchrun) with the score gradients all-reduced (slt_hw.distributed); a run
state after every epoch (slt_hw.runstate) from which a killed run resumes."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import data as _data
from . import distributed as _dist
from .datasets import DataError
from .findconfig import ARCHS, DATASETS, GRAPHS, METHODS, FindConfig, resolve_arch  # noqa: F401  (public)
from .models import GNN, MLP, AttentionRegressor, ConvNet, ResNet18
from .runstate import load_state, save_state
from .search.schedules import constant, linear_ramp
from .search.topk import global_threshold, set_sparsity

# the fields a resumed run may change: how it runs, not what it computes
_RESUMABLE = ("epochs", "threads", "resume", "state", "out", "data_root", "eval_every")


def check_parallel(cfg: FindConfig, nproc: int) -> None:
    """Usage errors of a data-parallel run, before any process starts."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc: expected an int >= 1, got {nproc!r}")
    world = nproc * _dist.torchrun_world()
    if nproc > 1 and _dist.torchrun_world() > 1:
        raise ValueError("nproc: under torchrun the processes come from torchrun (--nproc-per-node); leave --nproc out")
    if world > 1 and cfg.dataset in GRAPHS:
        raise ValueError(f"nproc: {cfg.dataset} trains full-batch on one graph; data-parallel search needs "
                         "minibatches (digits, synthetic, angular_velocity, cifar10, fashion-mnist)")
    if world > 1 and cfg.batch_size < world:
        raise ValueError(f"batch_size: {cfg.batch_size} cannot be shared by {world} processes")
    if nproc > 1 and cfg.device == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(f"nproc: {nproc} processes need {nproc} GPUs (one each), torch sees "
                         f"{torch.cuda.device_count()}")


def check_resume(cfg: FindConfig) -> dict | None:
    """The verified run state to continue from (cfg.resume), or None; a missing, corrupt or foreign state
    is a RunStateError (a ValueError naming the file)."""
    if not cfg.resume:
        return None
    from .runstate import RunStateError

    state = load_state(cfg.state_path)
    mine = _fingerprint(cfg)
    theirs = state.get("config", {})
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        raise RunStateError(f"resume: {cfg.state_path} belongs to another run (it differs in "
                            + ", ".join(f"{k}={theirs.get(k)!r} here {mine.get(k)!r}" for k in diff) + ")")
    if state["epoch"] > cfg.epochs:
        raise RunStateError(f"epochs: the run state at {cfg.state_path} is already at epoch {state['epoch']}, "
                            f"more than {cfg.epochs}")
    return state


def _fingerprint(cfg: FindConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RESUMABLE}


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
    if cfg.rescale:
        kw["rescale"] = True
    if cfg.method == "multicoat":
        kw["num_coats"] = cfg.num_coats
    if cfg.method == "frozen":
        kw.update(p_prune=cfg.p_prune, p_lock=cfg.p_lock)
    return kw


def load_dataset(cfg: FindConfig) -> _data.Dataset:
    """The dataset, its training split cut to cfg.train_subset, GIN's sum adjacency in place of GCN's.
    A missing or unreadable file raises DataError (one line naming the path)."""
    try:
        if cfg.dataset in _data.LOCAL:
            ds = _data.LOCAL[cfg.dataset](cfg.data_root)
        elif cfg.dataset == "ogb":
            ds = _data.ogb_node(cfg.data_root, cfg.ogb_name)
        else:
            ds = _data.BUILTIN[cfg.dataset](seed=cfg.seed)
    except (OSError, ValueError) as e:
        raise DataError(str(e)) from e
    if cfg.train_subset is not None and cfg.train_subset < ds.train.x.shape[0]:
        # one fixed subset (generator seed 0) for every seed, so seeds differ only in weights and order
        keep = torch.randperm(ds.train.x.shape[0], generator=torch.Generator().manual_seed(0))[:cfg.train_subset]
        ds = dataclasses.replace(ds, train=_data.Split(ds.train.x[keep], ds.train.y[keep]))
    if cfg.arch == "gin" and ds.edge_index is not None:
        from .nn.gnn import sum_adjacency

        ds = dataclasses.replace(ds, adj=sum_adjacency(ds.edge_index, ds.features.shape[0]))
    return ds


def build_model(cfg: FindConfig, ds: _data.Dataset) -> nn.Module:
    kw = _slt_kwargs(cfg)
    s = cfg.seed
    if ds.adj is not None:
        return GNN(ds.features.shape[1], cfg.hidden, ds.num_classes, seed=s, conv=cfg.arch, dropout=cfg.dropout,
                   **kw)
    if cfg.dataset == "angular_velocity":
        return AttentionRegressor(seed=s, qk_dim=min(cfg.hidden, 64), v_dim=min(cfg.hidden, 64), **kw)
    shape = tuple(ds.train.x.shape[1:])
    if cfg.arch in ("conv2", "conv4", "conv6"):
        return ConvNet(cfg.arch, shape, ds.num_classes, seed=s, width=cfg.width, dense=cfg.dense, **kw)
    if cfg.arch == "resnet18":
        return ResNet18(shape, ds.num_classes, seed=s, width=cfg.width, dense=cfg.dense, **kw)
    return MLP([math.prod(shape), cfg.hidden, cfg.hidden, ds.num_classes], seed=s, **kw)


def augment(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after `pad` pixels of zero padding (the normalised mean colour) and a random horizontal
    flip, per image: the CIFAR augmentation of the Edge-Popup and freezing papers' code."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (n, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (n, 1, 1, w)
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    return torch.where(flip[:, None, None, None], out.flip(3), out)


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
    this process is one rank of its run. cfg.resume: continue from the run state (check_resume)."""
    check_parallel(cfg, nproc)
    check_resume(cfg)
    if nproc > 1:
        load_dataset(cfg)  # a missing file fails here with one line; fills the CIFAR-10 cache once
        t0 = time.perf_counter()
        res = _dist.spawn(nproc, cfg.device, _find_rank, cfg, progress)
        res.seconds = time.perf_counter() - t0  # start-up included
        return res
    if _dist.torchrun_world() > 1:
        with _dist.joined(cfg.device) as g:
            return _search(cfg, g, console, progress)
    return _search(cfg, _dist.SINGLE, console, progress)


def _find_rank(g: _dist.Group, cfg: FindConfig, progress: bool) -> FindResult:
    res = _search(cfg, g, None, progress)
    res.model.cpu()  # rank 0's result goes back to the parent process
    return res


def _lr(cfg: FindConfig, epoch: int) -> float:
    if cfg.lr_schedule == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def _search(cfg: FindConfig, g: _dist.Group, console, progress: bool) -> FindResult:
    from rich.console import Console
    from torch.nn.parallel import DistributedDataParallel

    from .progress import find_progress

    console = console or Console(quiet=not g.main)
    progress = progress and g.main
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)  # dropout and friends; weights come from the contract
    device = torch.device(cfg.device if cfg.device == "cpu" else f"cuda:{g.local_rank}")
    ds = _on(load_dataset(cfg), device)
    model = build_model(cfg, ds).to(device)
    if cfg.threshold == "global" and not cfg.dense:
        global_threshold(model, cfg.sparsity)
    # every rank regenerates the same weights from the seed: only score gradients travel, no buffers
    net = model if g.world == 1 else DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None, forward_sync_buffers=False)
    schedule = linear_ramp(0.0, cfg.sparsity, cfg.ramp_epochs) if cfg.ramp_epochs else constant(cfg.sparsity)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay) if cfg.optimizer == "sgd"
           else torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay))
    regression = ds.num_classes == 0
    graph = ds.adj is not None
    g_batches = torch.Generator().manual_seed(cfg.seed)  # the same batches on every rank
    g_aug = torch.Generator().manual_seed(cfg.seed + 1)  # the same augmentation on every rank
    history: list[dict] = []
    metric = "mse" if regression else "accuracy"
    start = 0
    state = check_resume(cfg)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g_batches.set_state(state["g_batches"])
        g_aug.set_state(state["g_aug"])
        torch.set_rng_state(state["torch_rng"])
        history, start = state["history"], state["epoch"]
        console.print(f"resumed {cfg.state_path} at epoch {start} of {cfg.epochs}")
    n_train = ds.train.x.shape[0]
    steps = 1 if graph else math.ceil(n_train / cfg.batch_size)
    with find_progress(console, not progress, cfg.epochs * steps, start * steps,
                       f"{cfg.dataset} / {cfg.arch or 'attention'} / {'dense' if cfg.dense else cfg.method}") as bar:
        for epoch in range(start, cfg.epochs):
            if cfg.ramp_epochs and not cfg.dense:
                set_sparsity(model, schedule(epoch))
            for group in opt.param_groups:
                group["lr"] = _lr(cfg, epoch)
            model.train()
            total, correct, count = 0.0, 0.0, 0
            if graph:
                opt.zero_grad()
                out = model(ds.features, ds.adj)[ds.train.x]
                loss = _loss(out, ds.train.y, regression)
                loss.backward()
                opt.step()
                total, count = loss.item(), 1
                correct = float((out.argmax(-1) == ds.train.y).float().mean()) if not regression else 0.0
                bar.step(epoch, cfg.epochs, total, correct)
            else:
                for idx in _batches(n_train, cfg.batch_size, g_batches):
                    x = ds.train.x[idx]
                    if cfg.do_augment:  # the whole global batch, then the shares: equal to one process
                        x = augment(x.cpu(), g_aug).to(device)
                    mine = _dist.shard(torch.arange(idx.numel()), g)
                    opt.zero_grad()
                    out = net(x[mine])
                    y = ds.train.y[idx][mine]
                    loss = _loss_sum(out, y, regression)
                    # DDP averages gradients over ranks: scaled so the average is the whole batch's mean
                    (loss * (g.world / idx.numel())).backward()
                    opt.step()
                    total, count = total + loss.item(), count + mine.numel()
                    if not regression:
                        correct += float((out.argmax(-1) == y).sum())
                    bar.step(epoch, cfg.epochs, total / count, correct / count if not regression else None)
                total, correct, count = _dist.all_sum([total, correct, float(count)], g)
            last = epoch + 1 == cfg.epochs
            test = evaluate(model, ds, ds.test, g) if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0) \
                else None
            row = {"epoch": epoch + 1, "loss": total / count, metric: test}
            if not regression:
                row["train_accuracy"] = correct / count if not graph else correct
            if ds.val is not None:
                row["val_accuracy"] = evaluate(model, ds, ds.val, g)
            history.append(row)
            bar.epoch_done(row, metric)
            if cfg.state_path and g.main:  # one writer, atomic and checksummed (slt_hw.runstate)
                save_state(cfg.state_path, {
                    "config": _fingerprint(cfg), "epoch": epoch + 1, "history": history,
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "g_batches": g_batches.get_state(),
                    "g_aug": g_aug.get_state(), "torch_rng": torch.get_rng_state()})
    if state is not None and state["epoch"] == cfg.epochs and history[-1][metric] is None:
        history[-1][metric] = evaluate(model, ds, ds.test, g)
    saved = None
    if cfg.out and g.main:  # one writer; checkpoint.save is atomic (temporary file, fsync, rename)
        from .checkpoint import save

        saved = save(model, Path(cfg.out))
        console.print(f"saved {saved.path} ({saved.bytes_on_disk:,} bytes on disk, payload {saved.payload_bytes:,})")
        if cfg.state_path and Path(cfg.state_path).exists() and not cfg.state:
            Path(cfg.state_path).unlink()  # the run is complete and its checkpoint written
    return FindResult(model, history[-1][metric], metric, history, saved, time.perf_counter() - t0, g.rank)


def _on(ds: _data.Dataset, device: torch.device) -> _data.Dataset:
    def mv(v):
        if isinstance(v, _data.Split):
            return _data.Split(mv(v.x), mv(v.y))
        return v.to(device) if isinstance(v, torch.Tensor) else v

    return ds if device.type == "cpu" else dataclasses.replace(ds, **{f.name: mv(getattr(ds, f.name))
                                                                      for f in dataclasses.fields(ds)})
