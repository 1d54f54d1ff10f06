"""Multicoated supermasks and folding for GNNs (M-Sup GNN paper) on Cora / CiteSeer or a synthetic SBM graph.

A GCN or GIN node classifier (input conv, `depth` hidden convs, linear readout) as an SLT with binary
(Edge-Popup) or multicoated (M-Sup, adaptive coats) masks; the hidden convs either unfolded
(`depth` layers with their own random weights) or folded into one block iterated `depth` times,
with one shared mask or one mask per iteration. Each row: test accuracy, checkpoint payload bits
(slt_hw.memory_report) and the reduction against 32-bit dense weights of the unfolded network
of the same depth (the paper reports 98.7 % on ogbn-arxiv). A dense-trained GCN of the same shape
gives the accuracy reference. Writes results.csv and memory_accuracy.png to --out.

    python bench/papers/msup_folded_gnn.py            # full: 3 seeds, 200 epochs, hidden 128, a harder SBM
    python bench/papers/msup_folded_gnn.py --quick    # smoke run for the tests
    python bench/papers/msup_folded_gnn.py --ogb-root DATA   # on DATA/ogbn_arxiv (raw/*.csv.gz, split/time/)
    python bench/papers/msup_folded_gnn.py --dataset cora --conv gin   # Planetoid split (slt_hw.data.planetoid)

On Planetoid the standard validation split selects the epoch; elsewhere a fifth of the training nodes.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from slt_hw.nn.gnn import SLTGCNConv, SLTGINConv, sum_adjacency
from slt_hw.search.folding import Folded

PAPER_REDUCTION = 0.987  # M-Sup GNN paper, ogbn-arxiv, against 32-bit dense weights


CONVS = {"gcn": SLTGCNConv, "gin": SLTGINConv}


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout, also for sparse (bag-of-words) features: on their stored values."""
    if not x.is_sparse or not (p and training):
        return F.dropout(x, p, training) if not x.is_sparse else x
    x = x.coalesce()
    return torch.sparse_coo_tensor(x.indices(), F.dropout(x.values(), p, training), x.shape,
                                   check_invariants=False).coalesce()  # the indices of a coalesced tensor


class Unfolded(nn.Module):
    """`depth` hidden convs with their own weights, per-layer non-affine BatchNorm and ReLU."""

    def __init__(self, hidden: int, depth: int, *, seed: int, conv: str = "gcn", **slt):
        super().__init__()
        self.convs = nn.ModuleList(CONVS[conv](hidden, hidden, seed=seed, name=f"conv_hidden{i}", **slt)
                                   for i in range(depth))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden, affine=False) for _ in range(depth))

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = torch.relu(norm(conv(x, adj)))
        return x


class GCN(nn.Module):
    """SLT input conv, `depth` hidden convs (unfolded, or one folded block), SLT linear readout; `conv` picks
    GCN or GIN layers. dropout: on the input features and before the readout, while training."""

    def __init__(self, in_features: int, hidden: int, classes: int, depth: int, *, seed: int, fold: str,
                 conv: str = "gcn", dropout: float = 0.0, **slt):
        super().__init__()
        self.inp = CONVS[conv](in_features, hidden, seed=seed, name="conv_in", **slt)
        if fold == "unfolded":
            self.hidden = Unfolded(hidden, depth, seed=seed, conv=conv, **slt)
        else:
            self.hidden = Folded(CONVS[conv](hidden, hidden, seed=seed, name="conv_hidden", **slt), depth,
                                 shared_masks=fold == "folded-shared", norm="batch", num_features=hidden,
                                 activation="relu")
        self.out = SLTLinear(hidden, classes, seed=seed, name="readout", **slt)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        x = dropout(x, self.dropout, self.training)
        h = self.hidden(torch.relu(self.inp(x, adj)), adj)
        return self.out(F.dropout(h, self.dropout, self.training))


class DenseGCN(nn.Module):
    """Weight-trained reference of the same shape (ordinary nn.Linear initialisation, not an SLT)."""

    def __init__(self, in_features: int, hidden: int, classes: int, depth: int, conv: str = "gcn",
                 dropout: float = 0.0):
        super().__init__()
        self.conv, self.dropout = conv, dropout
        ins = [in_features] + [hidden] * depth
        self.lins = nn.ModuleList(nn.Linear(i, hidden, bias=False) for i in ins)
        # GIN: each layer's MLP is lin -> BN -> ReLU -> lin2 (as SLTGINConv)
        self.lins2 = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in ins) if conv == "gin" else None
        self.inner = nn.ModuleList(nn.BatchNorm1d(hidden, affine=False) for _ in ins) if conv == "gin" else None
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden, affine=False) for _ in range(depth))
        self.out = nn.Linear(hidden, classes, bias=False)

    def _lin(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(x, self.lins[i].weight.t()) if x.is_sparse else self.lins[i](x)

    def _layer(self, i: int, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        if self.conv == "gcn":
            return torch.sparse.mm(adj, self._lin(i, x))
        h = x + torch.sparse.mm(adj, x)
        return self.lins2[i](torch.relu(self.inner[i](self._lin(i, h))))

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self._layer(0, dropout(x, self.dropout, self.training), adj))
        for i, norm in enumerate(self.norms, 1):
            x = torch.relu(norm(self._layer(i, x, adj)))
        return self.out(F.dropout(x, self.dropout, self.training))


class KipfGCN(nn.Module):
    """The classic 2-layer GCN (Kipf & Welling 2017: hidden 16, dropout 0.5, biases), weights trained."""

    def __init__(self, in_features: int, classes: int, hidden: int = 16, dropout: float = 0.5):
        super().__init__()
        self.l1, self.l2, self.dropout = nn.Linear(in_features, hidden), nn.Linear(hidden, classes), dropout

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        x = dropout(x, self.dropout, self.training)
        x = torch.relu(torch.sparse.mm(adj, torch.sparse.mm(x, self.l1.weight.t()) + self.l1.bias if x.is_sparse
                                       else self.l1(x)))
        return torch.sparse.mm(adj, self.l2(F.dropout(x, self.dropout, self.training)))


def train(model: nn.Module, ds: data.Dataset, epochs: int, lr: float, *, seed: int = 0,
          val_fraction: float = 0.2, eval_every: int = 5, weight_decay: float = 0.0) -> float:
    """Full-batch Adam with cosine annealing on the training nodes; returns the test accuracy of the
    epoch with the best validation accuracy (the usual GNN protocol: the last epoch of a deep GCN's
    score training swings by tens of points). Validation: the dataset's split (Planetoid), else a
    held-out fifth of the training nodes."""
    if ds.val is not None:
        val, tr = ds.val.x, ds.train.x
        n_val = val.numel()
    else:
        g = torch.Generator().manual_seed(seed)
        perm = ds.train.x[torch.randperm(ds.train.x.numel(), generator=g)]
        n_val = int(val_fraction * perm.numel())
        val, tr = perm[:n_val], perm[n_val:]
    labels = ds.labels
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
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
        lr: float = 0.05, conv: str = "gcn", dropout: float = 0.0) -> list[dict]:
    """graph: a fixed node-classification dataset (e.g. data.planetoid) instead of one SBM graph per seed;
    the seed then only changes the random weights and the score initialisation."""
    rows = []
    if graph is not None and graph.val is not None:  # bag-of-words features: multiply only the non-zeros
        graph = dataclasses.replace(graph, features=graph.features.to_sparse())
    for seed in seeds:
        ds = graph if graph is not None else data.sbm_graph(num_nodes=nodes, p_in=p_in, p_out=p_out, seed=seed)
        gcn_adj = ds.adj
        if conv == "gin":  # GIN sums the neighbours: the raw adjacency, not GCN's normalised one
            ei = ds.edge_index if ds.edge_index is not None else ds.adj.coalesce().indices()
            ds = dataclasses.replace(ds, adj=sum_adjacency(ei[:, ei[0] != ei[1]], ds.features.shape[0]))
        nin, ncls = ds.features.shape[1], ds.num_classes
        dense_bits = None
        for mask, fold in VARIANTS:
            t0 = time.perf_counter()
            torch.manual_seed(seed)  # score initialisation (data-side randomness only)
            slt = {"sparsity": sparsity} | ({"num_coats": coats} if mask == "multicoat" else {})
            model = GCN(nin, hidden, ncls, depth, seed=seed, fold=fold, conv=conv, dropout=dropout, **slt)
            acc = train(model, ds, epochs, lr=lr, seed=seed)
            rep = memory_report(model)
            if fold == "unfolded":
                dense_bits = sum(e.dense_fp32_bits for e in rep.layers)
            rows.append({"variant": f"{mask} {fold}", "dataset": ds.name, "conv": conv, "mask": mask, "fold": fold,
                         "seed": seed, "hidden": hidden,
                         "depth": depth, "accuracy": round(acc, 4), "payload_bits": rep.payload_bits,
                         "dense_fp32_bits": dense_bits, "reduction": round(1 - rep.payload_bits / dense_bits, 5),
                         "seconds": round(time.perf_counter() - t0, 2)})
            print(f"{mask:>9} {fold:<16} seed={seed} acc={acc:.4f} bits={rep.payload_bits:,} "
                  f"reduction={rows[-1]['reduction']:.2%}", flush=True)
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        acc = train(DenseGCN(nin, hidden, ncls, depth, conv, dropout), ds, epochs, lr=0.01, seed=seed,
                    weight_decay=5e-4 if ds.val is not None else 0.0)
        rows.append({"variant": "dense fp32 (weights trained)", "dataset": ds.name, "conv": conv, "mask": "dense",
                     "fold": "unfolded", "seed": seed, "hidden": hidden, "depth": depth, "accuracy": round(acc, 4),
                     "payload_bits": dense_bits, "dense_fp32_bits": dense_bits, "reduction": 0.0,
                     "seconds": round(time.perf_counter() - t0, 2)})
        print(f"{'dense':>9} {'unfolded':<16} seed={seed} acc={acc:.4f} bits={dense_bits:,}", flush=True)
        if ds.val is not None:  # Planetoid: the published 2-layer GCN, weights trained (Kipf & Welling 2017)
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            kipf = KipfGCN(nin, ncls)
            acc = train(kipf, dataclasses.replace(ds, adj=gcn_adj), 200, lr=0.01, seed=seed, weight_decay=5e-4)
            bits = 32 * sum(p.numel() for p in kipf.parameters())
            rows.append({"variant": "2-layer GCN fp32 (Kipf & Welling)", "dataset": ds.name, "conv": "gcn",
                         "mask": "dense", "fold": "unfolded", "seed": seed, "hidden": 16, "depth": 0,
                         "accuracy": round(acc, 4), "payload_bits": bits, "dense_fp32_bits": bits, "reduction": 0.0,
                         "seconds": round(time.perf_counter() - t0, 2)})
            print(f"{'kipf gcn':>9} {'2-layer':<16} seed={seed} acc={acc:.4f} bits={bits:,}", flush=True)
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
    p.add_argument("--dataset", choices=("sbm", "cora", "citeseer"), default="sbm",
                   help="sbm (synthetic, one graph per seed) or a Planetoid graph (slt_hw.data.planetoid)")
    p.add_argument("--data-root", default=None, help="Planetoid files (default: $SLT_HW_DATA or ../shared/datasets)")
    p.add_argument("--conv", choices=tuple(CONVS), default="gcn")
    p.add_argument("--hidden", type=int, default=None, help="width (default 128; quick 32)")
    p.add_argument("--depth", type=int, default=None, help="hidden convs / folded iterations (default 4; quick 2)")
    p.add_argument("--dropout", type=float, default=None, help="default 0.5 on Planetoid, 0 on sbm")
    p.add_argument("--epochs", type=int, default=None, help="default 200; quick 15")
    a = p.parse_args(argv)
    if a.ogb_root and a.dataset != "sbm":
        p.error("--ogb-root and --dataset: give one graph")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        kw = dict(hidden=32, depth=2, seeds=[0], epochs=15, nodes=300)
    else:
        kw = dict(hidden=128, depth=4, seeds=[0, 1, 2], epochs=200, nodes=1000, p_in=0.02, p_out=0.006)
    for arg in ("hidden", "depth", "epochs"):
        if getattr(a, arg) is not None:
            if getattr(a, arg) < 1:
                p.error(f"--{arg}: expected an int >= 1, got {getattr(a, arg)}")
            kw[arg] = getattr(a, arg)
    if a.seeds is not None:
        kw["seeds"] = list(range(a.seeds))
    kw["dropout"] = a.dropout if a.dropout is not None else (0.5 if a.dataset != "sbm" else 0.0)
    if not 0 <= kw["dropout"] < 1:
        p.error(f"--dropout: expected a float in [0, 1), got {a.dropout}")
    try:
        graph = data.ogb_node(a.ogb_root, a.ogb_name) if a.ogb_root else \
            data.planetoid(a.dataset, a.data_root) if a.dataset != "sbm" else None
    except (OSError, ValueError) as e:  # a missing or unreadable file: one line naming it
        p.exit(2, f"{p.prog}: error: {e}\n")
    if graph is not None:
        name = a.ogb_name if a.ogb_root else a.dataset
        print(f"{name}: {graph.features.shape[0]:,} nodes, {graph.features.shape[1]} features, "
              f"{graph.num_classes} classes, {graph.train.x.numel():,} train / {graph.test.x.numel():,} test",
              flush=True)
    out = Path(a.out)
    rows = run(**kw, sparsity=0.5, coats=3, out=out, graph=graph, lr=a.lr, conv=a.conv)
    plot(rows, out / "memory_accuracy.png")
    print(f"\n{'variant':<34} {'accuracy':>14} {'bits':>10} {'vs fp32 dense':>14}")
    for v, acc, std, bits, red in summary(rows):
        print(f"{v:<34} {acc:>8.4f}±{std:.4f} {bits:>10,} {red:>13.2%}")
    print(f"paper (ogbn-arxiv, M-Sup GNN): {PAPER_REDUCTION:.1%} reduction against 32-bit dense")
    print(f"wrote {out / 'results.csv'} and {out / 'memory_accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
