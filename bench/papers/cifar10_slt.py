"""CIFAR-10 reproductions through `slt_hw.find`: Edge-Popup (Ramanujan et al. 2020) and partially frozen
sources (Otsuka et al. 2024/25), on the real images (slt_hw.data.cifar10: the JPEG copy, see
docs/reproductions.md).

  edge-popup: Conv4 and Conv6 (the paper's widths) as SLTs at k = 50 % kept, signed Kaiming constant
      weights, SGD lr 0.1 momentum 0.9 wd 1e-4 cosine, batch 128, random crop + flip (the authors'
      configs/smallscale/conv{4,6}/*_usc_unsigned.yml); beside them the same networks with trained weights
      (their conv{4,6}_adam_baseline.yml: Adam lr 3e-4; batch 128 here, as the SLTs).
  freezing: Conv4 SLT sources at equal checkpoint size: dense source at width 0.71 (about half the weights,
      so about half the mask bits of width 1), randomly pruned source (p = 0.5) and partially frozen source
      (r = 0.5: 25 % pruned, 25 % locked) at width 1, all keeping half of their free weights, weights rescaled
      by 1/sqrt(1 - sparsity) (the freezing paper's static rescaling); freezing-unscaled: the same without.

Every run is one row of results.csv (accuracy on the 10,000 test images, checkpoint payload bits, seconds);
rows are written as runs finish, and a run in progress keeps a per-epoch run state, so a killed sweep
continues with --resume (finished rows are kept, the interrupted run resumes at its last epoch).

    python bench/papers/cifar10_slt.py --epochs 100                         # the papers' budget (days here)
    python bench/papers/cifar10_slt.py --train-subset 4000 --epochs 6 --seeds 3 --threads 1   # docs/reproductions.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from paper_io import write_csv  # bench/papers/ is on sys.path when a script runs

from slt_hw.csvio import read_rows
from slt_hw.memory import memory_report
from slt_hw.train import FindConfig, find

SLT_RECIPE = {"optimizer": "sgd", "lr": 0.1, "lr_schedule": "cosine", "weight_decay": 1e-4, "batch_size": 128}
# the authors' Adam baseline (conv{4,6}_adam_baseline.yml: Adam lr 3e-4, constant); their SGD baseline (lr 0.01,
# cosine) learns almost nothing in a short budget (Conv4, 6 epochs of 4,000 images: 16.8 % test accuracy)
DENSE_RECIPE = {"optimizer": "adam", "lr": 3e-4, "lr_schedule": "constant", "weight_decay": 0.0, "batch_size": 128}
EXPERIMENTS = {
    "edge-popup": [
        ("conv4 SLT k=0.5", {"arch": "conv4", "sparsity": 0.5, **SLT_RECIPE}),
        ("conv4 dense (weights trained, Adam)", {"arch": "conv4", "dense": True, **DENSE_RECIPE}),
        ("conv6 SLT k=0.5", {"arch": "conv6", "sparsity": 0.5, **SLT_RECIPE}),
        ("conv6 dense (weights trained, Adam)", {"arch": "conv6", "dense": True, **DENSE_RECIPE}),
    ],
    # sparsity counts pruned weights: half of the free weights kept in every source. Rescaled (the freezing
    # paper's static 1/sqrt(1 - sparsity)): Conv4 has no normalisation, so at 25 % density (the pruned source)
    # the unscaled signal shrinks 2x per layer and nothing learns (freezing-unscaled: 12.9 % test accuracy)
    "freezing": [
        ("dense source, width 0.71, rescaled", {"arch": "conv4", "width": 0.71, "sparsity": 0.5, "rescale": True,
                                                **SLT_RECIPE}),
        ("pruned source p=0.5, rescaled", {"arch": "conv4", "method": "frozen", "p_prune": 0.5, "p_lock": 0.0,
                                           "sparsity": 0.75, "rescale": True, **SLT_RECIPE}),
        ("frozen source r=0.5, rescaled", {"arch": "conv4", "method": "frozen", "p_prune": 0.25, "p_lock": 0.25,
                                           "sparsity": 0.5, "rescale": True, **SLT_RECIPE}),
    ],
    "freezing-unscaled": [
        ("dense source, width 0.71", {"arch": "conv4", "width": 0.71, "sparsity": 0.5, **SLT_RECIPE}),
        ("pruned source p=0.5", {"arch": "conv4", "method": "frozen", "p_prune": 0.5, "p_lock": 0.0,
                                 "sparsity": 0.75, **SLT_RECIPE}),
        ("frozen source r=0.5", {"arch": "conv4", "method": "frozen", "p_prune": 0.25, "p_lock": 0.25,
                                 "sparsity": 0.5, **SLT_RECIPE}),
    ],
}


def run_one(label: str, kw: dict, seed: int, a: argparse.Namespace, out: Path) -> dict:
    tag = "".join(c if c.isalnum() else "-" for c in label.lower()) + f"-s{seed}"
    state = out / "states" / f"{tag}.state"
    state.parent.mkdir(parents=True, exist_ok=True)
    cfg = FindConfig(dataset="cifar10", data_root=a.data_root, seed=seed, epochs=a.epochs,
                     train_subset=a.train_subset, eval_every=0, threads=a.threads, out=None, state=str(state),
                     resume=state.exists(), **kw)
    t0 = time.perf_counter()
    res = find(cfg, progress=False)
    secs = time.perf_counter() - t0
    weights = sum(p.numel() for p in res.model.parameters() if p.requires_grad) if cfg.dense else None
    rep = None if cfg.dense else memory_report(res.model)
    n = weights if cfg.dense else sum(e.weights for e in rep.layers)
    state.unlink(missing_ok=True)  # the row below is the run's result
    return {"variant": label, "arch": cfg.arch, "width": cfg.width, "dense": cfg.dense, "method": cfg.method,
            "sparsity": cfg.sparsity, "rescale": cfg.rescale, "p_prune": cfg.p_prune if cfg.method == "frozen" else 0.0,
            "p_lock": cfg.p_lock if cfg.method == "frozen" else 0.0, "seed": seed, "epochs": a.epochs,
            "train_subset": a.train_subset or 50000, "accuracy": round(res.test_metric, 4),
            "payload_bits": 32 * n if cfg.dense else rep.payload_bits, "weights": n, "dense_fp32_bits": 32 * n,
            "seconds": round(secs, 1), "threads": a.threads}


def summary(rows: list[dict]) -> list[str]:
    """Markdown rows: variant, mean ± std test accuracy (seeds), payload bits, mean seconds per run."""
    out = ["| experiment | variant | test accuracy (mean ± std) | seeds | payload bits | s / run |",
           "|---|---|---|---|---|---|"]
    for exp in dict.fromkeys(r["experiment"] for r in rows):
        for v in dict.fromkeys(r["variant"] for r in rows if r["experiment"] == exp):
            rs = [r for r in rows if r["experiment"] == exp and r["variant"] == v]
            acc = torch.tensor([float(r["accuracy"]) for r in rs])
            std = f"{float(acc.std()):.4f}" if len(rs) > 1 else "–"
            secs = sum(float(r["seconds"]) for r in rs) / len(rs)
            out.append(f"| {exp} | {v} | {float(acc.mean()):.4f} ± {std} | {len(rs)} | "
                       f"{int(float(rs[0]['payload_bits'])):,} | {secs:.0f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", default="edge-popup,freezing",
                   help="comma list: edge-popup, freezing, freezing-unscaled")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--train-subset", type=int, default=None, help="train on a fixed random subset of N images")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default=None, help="default: $SLT_HW_DATA or ../shared/datasets")
    p.add_argument("--out", default="paper-out/cifar10_slt")
    p.add_argument("--resume", action="store_true", help="keep the rows of --out/results.csv, run the rest")
    p.add_argument("--summary", action="store_true", help="only print the table of --out/results.csv")
    a = p.parse_args(argv)
    exps = [e for e in a.experiments.split(",") if e]
    bad = [e for e in exps if e not in EXPERIMENTS]
    if bad or not exps:
        p.error(f"--experiments: expected a comma list of {list(EXPERIMENTS)}, got {a.experiments!r}")
    if a.seeds < 1 or a.epochs < 1 or a.threads < 1 or (a.train_subset is not None and a.train_subset < 1):
        p.error("--seeds, --epochs, --threads, --train-subset: expected ints >= 1")
    out = Path(a.out)
    path = out / "results.csv"
    if a.summary:
        if not path.exists():
            p.error(f"--summary: no {path}")
        print("\n".join(summary(read_rows(path))))
        return 0
    rows = read_rows(path) if a.resume and path.exists() else []
    done = {(r["variant"], int(r["seed"])) for r in rows}
    torch.set_num_threads(a.threads)
    for seed in range(a.seeds):  # seed by seed: a sweep cut short still has every variant
        for exp in exps:
            for label, kw in EXPERIMENTS[exp]:
                if (label, seed) in done:
                    continue
                row = {"experiment": exp, **run_one(label, kw, seed, a, out)}
                rows.append(row)
                write_csv(rows, path)  # atomic: the sweep so far
                print(f"{exp:>10} {label:<32} seed={seed} acc={row['accuracy']:.4f} bits={row['payload_bits']:,} "
                      f"{row['seconds']:.0f} s", flush=True)
    print("\n".join(summary(rows)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
