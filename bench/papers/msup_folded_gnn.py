"""Multicoated supermasks and folding for GNNs (M-Sup GNN paper) on a synthetic SBM graph.

A GCN node classifier (input conv, `depth` hidden convs, linear readout) as an SLT with binary
(Edge-Popup) or multicoated (M-Sup, adaptive coats) masks; the hidden convs either unfolded
(`depth` layers with their own random weights) or folded into one block iterated `depth` times,
with one shared mask or one mask per iteration. Each row: test accuracy, checkpoint payload bits
(slt_hw.memory_report) and the reduction against 32-bit dense weights of the unfolded network
of the same depth (the paper reports 98.7 % on ogbn-arxiv). A dense-trained GCN of the same shape
gives the accuracy reference. Writes results.csv and memory_accuracy.png to --out.

    python bench/papers/msup_folded_gnn.py            # full: 3 seeds, 200 epochs, hidden 128, a harder SBM
    python bench/papers/msup_folded_gnn.py --quick    # smoke run for the tests
    python bench/papers/msup_folded_gnn.py --ogb-root DATA   # on DATA/ogbn_arxiv (raw/*.csv.gz, split/time/)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from paper_io import write_csv  # bench/papers/ is on sys.path when a script runs
from torch import nn

from slt_hw import data
from slt_hw.memory import memory_report
from slt_hw.nn.base import SLTLinear
from slt_hw.nn.gnn import SLTGCNConv
from slt_hw.search.folding import Folded

PAPER_REDUCTION = 0.987  # M-Sup GNN paper, ogbn-arxiv, against 32-bit dense weights


class Unfolded(nn.Module):
    """`depth` hidden GCN convs with their own weights, per-layer non-affine BatchNorm and ReLU."""

    def __init__(self, hidden: int, depth: int, *, seed: int, **slt):
        super().__init__()
        self.convs = nn.ModuleList(SLTGCNConv(hidden, hidden, seed=seed, name=f"conv_hidden{i}", **slt)
                                   for i in range(depth))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden, affine=False) for _ in range(depth))

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = torch.relu(norm(conv(x, adj)))
        return x


class GCN(nn.Module):
    def __init__(self, in_features: int, hidden: int, classes: int, depth: int, *, seed: int, fold: str, **slt):
        super().__init__()
        self.inp = SLTGCNConv(in_features, hidden, seed=seed, name="conv_in", **slt)
        if fold == "unfolded":
            self.hidden = Unfolded(hidden, depth, seed=seed, **slt)
        else:
            self.hidden = Folded(SLTGCNConv(hidden, hidden, seed=seed, name="conv_hidden", **slt), depth,
                                 shared_masks=fold == "folded-shared", norm="batch", num_features=hidden,
                                 activation="relu")
        self.out = SLTLinear(hidden, classes, seed=seed, name="readout", **slt)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(torch.relu(self.inp(x, adj)), adj))


class DenseGCN(nn.Module):
    """Weight-trained reference (ordinary nn.Linear initialisation, not an SLT)."""

    def __init__(self, in_features: int, hidden: int, classes: int, depth: int):
        super().__init__()
        self.lins = nn.ModuleList([nn.Linear(in_features, hidden, bias=False)]
                                  + [nn.Linear(hidden, hidden, bias=False) for _ in range(depth)])
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden, affine=False) for _ in range(depth))
        self.out = nn.Linear(hidden, classes, bias=False)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        x = torch.relu(torch.sparse.mm(adj, self.lins[0](x)))
        for lin, norm in zip(self.lins[1:], self.norms, strict=True):
            x = torch.relu(norm(torch.sparse.mm(adj, lin(x))))
        return self.out(x)


def train(model: nn.Module, ds: data.Dataset, epochs: int, lr: float, *, seed: int = 0,
          val_fraction: float = 0.2, eval_every: int = 5) -> float:
    """Full-batch Adam with cosine annealing on the training nodes minus a held-out validation
    fifth; returns the test accuracy of the epoch with the best validation accuracy (the usual
    GNN protocol: the last epoch of a deep GCN's score training swings by tens of points)."""
    g = torch.Generator().manual_seed(seed)
    perm = ds.train.x[torch.randperm(ds.train.x.numel(), generator=g)]
    n_val = int(val_fraction * perm.numel())
    val, tr = perm[:n_val], perm[n_val:]
    labels = ds.labels
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    best_val, best_test = -1.0, 0.0
    for epoch in range(epochs):
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(ds.features, ds.adj)[tr], labels[tr]).backward()
        opt.step()
        sched.step()
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            model.eval()
            with torch.no_grad():
                pred = model(ds.features, ds.adj).argmax(-1)
            acc_val = float((pred[val] == labels[val]).float().mean()) if n_val else 0.0
            if acc_val > best_val:
                best_val, best_test = acc_val, float((pred[ds.test.x] == ds.test.y).float().mean())
    return best_test


VARIANTS = [(mask, fold) for fold in ("unfolded", "folded-shared", "folded-unshared")
            for mask in ("binary", "multicoat")]


def run(hidden: int, depth: int, seeds: list[int], epochs: int, nodes: int, sparsity: float, coats: int,
        out: Path, p_in: float = 0.05, p_out: float = 0.005, graph: data.Dataset | None = None,
        lr: float = 0.05) -> list[dict]:
    """graph: a fixed node-classification dataset (e.g. data.ogb_node) instead of one SBM graph per seed;
    the seed then only changes the random weights and the score initialisation."""
    rows = []
    for seed in seeds:
        ds = graph if graph is not None else data.sbm_graph(num_nodes=nodes, p_in=p_in, p_out=p_out, seed=seed)
        nin, ncls = ds.features.shape[1], ds.num_classes
        dense_bits = None
        for mask, fold in VARIANTS:
            t0 = time.perf_counter()
            torch.manual_seed(seed)  # score initialisation (data-side randomness only)
            slt = {"sparsity": sparsity} | ({"num_coats": coats} if mask == "multicoat" else {})
            model = GCN(nin, hidden, ncls, depth, seed=seed, fold=fold, **slt)
            acc = train(model, ds, epochs, lr=lr, seed=seed)
            rep = memory_report(model)
            if fold == "unfolded":
                dense_bits = sum(e.dense_fp32_bits for e in rep.layers)
            rows.append({"variant": f"{mask} {fold}", "mask": mask, "fold": fold, "seed": seed, "hidden": hidden,
                         "depth": depth, "accuracy": round(acc, 4), "payload_bits": rep.payload_bits,
                         "dense_fp32_bits": dense_bits, "reduction": round(1 - rep.payload_bits / dense_bits, 5),
                         "seconds": round(time.perf_counter() - t0, 2)})
            print(f"{mask:>9} {fold:<16} seed={seed} acc={acc:.4f} bits={rep.payload_bits:,} "
                  f"reduction={rows[-1]['reduction']:.2%}", flush=True)
        torch.manual_seed(seed)
        acc = train(DenseGCN(nin, hidden, ncls, depth), ds, epochs, lr=0.01, seed=seed)
        rows.append({"variant": "dense fp32 (weights trained)", "mask": "dense", "fold": "unfolded", "seed": seed,
                     "hidden": hidden, "depth": depth, "accuracy": round(acc, 4), "payload_bits": dense_bits,
                     "dense_fp32_bits": dense_bits, "reduction": 0.0, "seconds": 0.0})
        print(f"{'dense':>9} {'unfolded':<16} seed={seed} acc={acc:.4f} bits={dense_bits:,}", flush=True)
    write_csv(rows, out / "results.csv")
    return rows


def summary(rows: list[dict]) -> list[tuple[str, float, float, int, float]]:
    """variant, mean accuracy, std, payload bits (mean), mean reduction."""
    out = []
    for v in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == v]
        acc = torch.tensor([r["accuracy"] for r in rs])
        out.append((v, float(acc.mean()), float(acc.std()) if len(rs) > 1 else 0.0,
                    round(sum(r["payload_bits"] for r in rs) / len(rs)), sum(r["reduction"] for r in rs) / len(rs)))
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    markers = {"binary": "o", "multicoat": "s", "dense": "*"}
    colors = {"unfolded": "tab:blue", "folded-shared": "tab:red", "folded-unshared": "tab:orange"}
    for v, acc, std, bits, _ in summary(rows):
        r = next(r for r in rows if r["variant"] == v)
        ax.errorbar([bits], [acc], yerr=[std], fmt=markers[r["mask"]], ms=8, capsize=3,
                    color="k" if r["mask"] == "dense" else colors[r["fold"]], label=v)
    ax.set_xscale("log")
    ax.set_xlabel("model size (bits)")
    ax.set_ylabel("test accuracy (node classification)")
    ax.set_title("M-Sup GNN: binary/multicoat x folded/unfolded x shared/unshared")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="paper-out/msup_folded_gnn")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3; quick 1)")
    p.add_argument("--ogb-root", default=None,
                   help="folder holding an unpacked OGB node dataset (<root>/ogbn_arxiv/raw, split): use it "
                        "instead of the SBM graph (see docs/reproductions.md)")
    p.add_argument("--ogb-name", default="ogbn-arxiv")
    p.add_argument("--lr", type=float, default=0.05, help="Adam lr of the SLT scores (cosine-annealed)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        kw = dict(hidden=32, depth=2, seeds=[0], epochs=15, nodes=300)
    else:
        kw = dict(hidden=128, depth=4, seeds=[0, 1, 2], epochs=200, nodes=1000, p_in=0.02, p_out=0.006)
    if a.seeds is not None:
        kw["seeds"] = list(range(a.seeds))
    graph = data.ogb_node(a.ogb_root, a.ogb_name) if a.ogb_root else None
    if graph is not None:
        print(f"{a.ogb_name}: {graph.features.shape[0]:,} nodes, {graph.features.shape[1]} features, "
              f"{graph.num_classes} classes, {graph.train.x.numel():,} train / {graph.test.x.numel():,} test",
              flush=True)
    out = Path(a.out)
    rows = run(**kw, sparsity=0.5, coats=3, out=out, graph=graph, lr=a.lr)
    plot(rows, out / "memory_accuracy.png")
    print(f"\n{'variant':<32} {'accuracy':>14} {'bits':>10} {'vs fp32 dense':>14}")
    for v, acc, std, bits, red in summary(rows):
        print(f"{v:<32} {acc:>8.4f}±{std:.4f} {bits:>10,} {red:>13.2%}")
    print(f"paper (ogbn-arxiv, M-Sup GNN): {PAPER_REDUCTION:.1%} reduction against 32-bit dense")
    print(f"wrote {out / 'results.csv'} and {out / 'memory_accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
