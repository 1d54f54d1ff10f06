"""Partially frozen random networks contain compact SLTs — the accuracy vs model-size trade-off.

On digits (built in) or CIFAR-10 (a local copy: --dataset cifar10 --data-root DIR; slt_hw never downloads),
an MLP in -> h -> h -> 10 (CIFAR-10 images flattened to 3072 features, so the width sweep applies). For each
source kind (dense; randomly pruned: p_prune = r only; partially frozen: p_prune = p_lock =
r/2 for a freeze ratio r) and each hidden width, find a supermask with Edge-Popup (slt_hw.find)
that keeps half of the free (neither pruned nor locked) weights,
and record the test accuracy and the checkpoint payload in bits (slt_hw.memory_report: the mask
bits of the free weights, biases, seeds). Writes results.csv and tradeoff.png to --out.

    python bench/papers/partial_freezing.py            # full: 4 widths x 9 sources x 3 seeds
    python bench/papers/partial_freezing.py --quick    # a smoke run for the tests
    python bench/papers/partial_freezing.py --dataset cifar10 --data-root DATA   # DATA/cifar-10-batches-py
    python bench/papers/partial_freezing.py --engine ray --address HOST:6379    # the points on a Ray cluster
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from unittest import mock

import torch
from paper_io import write_csv  # bench/papers/ is on sys.path when a script runs
from paper_sweep import add_engine_args, check_engine_args, pending, report_failures, run_points

from slt_hw import data, train
from slt_hw.csvio import FAILURE, read_rows
from slt_hw.memory import memory_report
from slt_hw.train import FindConfig, find


def sources(freeze_ratios: list[float]) -> list[tuple[str, str, float, float]]:
    """(kind, label, p_prune, p_lock)."""
    out = [("dense", "dense", 0.0, 0.0)]
    for r in freeze_ratios:
        out.append(("pruned", f"pruned p={r:g}", r, 0.0))
    for r in freeze_ratios:
        out.append(("frozen", f"frozen r={r:g}", r / 2, r / 2))
    return out


_FLAT: dict[str, data.Dataset] = {}  # root -> flattened CIFAR-10, read once per process


def flat_cifar10(root: str) -> data.Dataset:
    """slt_hw.data.cifar10 (normalised (N, 3, 32, 32) images) with every image flattened to 3072 features."""
    if root not in _FLAT:
        ds = data.cifar10(root)
        _FLAT[root] = data.Dataset(ds.name, data.Split(ds.train.x.flatten(1), ds.train.y),
                                   data.Split(ds.test.x.flatten(1), ds.test.y), ds.num_classes)
    return _FLAT[root]


def _key(r: dict) -> tuple:
    return r["hidden"], r["source"], r["seed"]


def point(epochs: int, dataset: str, data_root: str | None, task: tuple) -> dict:
    """One (width, source, seed): find a supermask, measure accuracy and payload."""
    hidden, kind, label, pp, pl, seed = task
    t0 = time.perf_counter()
    method = "edge_popup" if kind == "dense" else "frozen"
    # keep half of the free weights; the sparsity counts pruned weights (docs/search.md)
    sparsity = pp + 0.5 * (1.0 - pp - pl)
    # an MLP at every width (on CIFAR-10 too, whose default is a fixed-width Conv4), no augmentation
    image = {"arch": "mlp", "augment": False} if dataset == "cifar10" else {}
    cfg = FindConfig(dataset=dataset, data_root=data_root, method=method, sparsity=sparsity, p_prune=pp,
                     p_lock=pl, hidden=hidden, epochs=epochs, seed=seed, out=None, **image)
    if dataset != "cifar10":
        res = find(cfg, progress=False)
    else:
        # CIFAR-10 is read once per process and flattened: slt_hw.train.find builds an MLP for 2-D inputs
        # (it would build a fixed-width Conv4 for images, with no width to sweep) and has no argument for a
        # prepared dataset, so its load_dataset is swapped for this one while the point runs
        flat = flat_cifar10(data_root)
        with mock.patch.object(train, "load_dataset", lambda _cfg: flat):
            res = find(cfg, progress=False)
    rep = memory_report(res.model)
    n = sum(e.weights for e in rep.layers)
    return {"dataset": dataset, "kind": kind, "source": label, "p_prune": pp, "p_lock": pl,
            "sparsity": round(sparsity, 4),
            "hidden": hidden, "seed": seed, "accuracy": round(res.test_metric, 4),
            "payload_bits": rep.payload_bits, "mask_bits": sum(e.mask_bits for e in rep.layers),
            "weights": n,
            "dense_fp32_bits": 32 * n, "seconds": round(time.perf_counter() - t0, 2)}


def run(widths: list[int], freeze_ratios: list[float], seeds: list[int], epochs: int, out: Path,
        dataset: str = "digits", data_root: str | None = None, a: argparse.Namespace | None = None) -> list[dict]:
    """Every (width, source, seed) point on a.engine (default: this process); rows in that order. With
    a.resume, the points already in out/results.csv are kept."""
    a = a or argparse.Namespace(engine="local", address=None, workers=1, resume=False)
    if dataset == "cifar10":
        flat_cifar10(data_root)  # a missing file fails here, before any worker starts (forked ones inherit it)
        if a.engine == "ray":
            _FLAT.clear()  # Ray ships the point function with its globals: each worker reads the files itself
    tasks = [(h, kind, label, pp, pl, seed) for h in widths for kind, label, pp, pl in sources(freeze_ratios)
             for seed in seeds]
    path = out / "results.csv"
    kept = [r for r in read_rows(path) if not r.get(FAILURE)] if a.resume and path.exists() else []
    kept = [{k: v for k, v in r.items() if k != FAILURE} for r in kept]
    todo = pending(tasks, kept, lambda t: [(t[0], t[2], t[5])], _key)
    rows = run_points(functools.partial(point, epochs, dataset, data_root), todo, a, a.workers or 1, path, kept,
                      lambda t, e: {"dataset": dataset, "kind": t[1], "source": t[2], "hidden": t[0], "seed": t[5],
                                    FAILURE: e}, "points")
    order = {(t[0], t[2], t[5]): i for i, t in enumerate(tasks)}
    rows.sort(key=lambda r: order.get(_key(r), len(order)))
    for r in rows:
        if not r.get(FAILURE):
            print(f"{r['source']:>16} h={r['hidden']:<4} seed={r['seed']} acc={r['accuracy']:.4f} "
                  f"bits={r['payload_bits']:,}", flush=True)
    write_csv(rows, path)
    return rows


def aggregate(rows: list[dict]) -> dict[tuple[str, int], tuple[float, float, float]]:
    """(source, hidden) -> (mean payload bits, mean accuracy, std accuracy)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["hidden"]), []).append(r)
    agg = {}
    for k, rs in groups.items():
        acc = torch.tensor([r["accuracy"] for r in rs])
        agg[k] = (sum(r["payload_bits"] for r in rs) / len(rs), float(acc.mean()),
                  float(acc.std()) if len(rs) > 1 else 0.0)
    return agg


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    labels = list(dict.fromkeys(r["source"] for r in rows))
    styles = {"dense": ("k", "o-"), "pruned": ("tab:blue", "s--"), "frozen": ("tab:red", "^-")}
    kinds = {r["source"]: r["kind"] for r in rows}
    shade = {}
    for lab in labels:
        k = kinds[lab]
        shade[k] = shade.get(k, 0) + 1
    seen: dict[str, int] = {}
    for lab in labels:
        k = kinds[lab]
        seen[k] = seen.get(k, 0) + 1
        color, style = styles[k]
        alpha = 1.0 if k == "dense" else 0.35 + 0.65 * seen[k] / shade[k]
        pts = sorted((v[0], v[1], v[2]) for (s, _), v in agg.items() if s == lab)
        xs, ys, es = zip(*pts, strict=True)
        ax.errorbar(xs, ys, yerr=es, fmt=style, color=color, alpha=alpha, label=lab, ms=4, capsize=2)
    ax.set_xscale("log")
    ax.set_xlabel("model size (checkpoint payload, bits)")
    ax.set_ylabel(f"test accuracy ({rows[0]['dataset']})")
    ax.set_title("SLTs in dense, pruned and partially frozen sources")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sweep (the test's smoke run)")
    p.add_argument("--out", default="paper-out/partial_freezing")
    p.add_argument("--dataset", choices=("digits", "cifar10"), default="digits",
                   help="digits (built in) or cifar10 (a local copy, --data-root; MLP on the flattened images)")
    p.add_argument("--data-root", default=None,
                   help="cifar10: the folder holding cifar-10-batches-py/ (cifar-10-python.tar.gz unpacked)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    p.add_argument("--resume", action="store_true", help="continue --out/results.csv: run only the missing points")
    add_engine_args(p, "default 1")
    a = p.parse_args(argv)
    check_engine_args(p, a)
    if a.dataset == "cifar10" and not a.data_root:
        p.error("--dataset cifar10 needs --data-root DIR: the folder holding cifar-10-batches-py/ "
                "(cifar-10-python.tar.gz unpacked; slt_hw never downloads)")
    if a.dataset == "digits" and a.data_root:
        p.error("--data-root is for --dataset cifar10 (digits is built in)")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        widths, ratios, seeds, epochs = [32, 64], [0.5], [0], 2
    else:
        widths, ratios, seeds, epochs = [32, 64, 128, 256], [0.2, 0.4, 0.6, 0.8], [0, 1, 2], 10
    out = Path(a.out)
    rows = run(widths, ratios, seeds, epochs, out, a.dataset, a.data_root, a)
    if report_failures(rows, out / "results.csv"):
        return 1
    plot(rows, out / "tradeoff.png")
    print(f"wrote {out / 'results.csv'} and {out / 'tradeoff.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
