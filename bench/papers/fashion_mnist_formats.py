"""The three mask formats on real images: Fashion-MNIST, `slt-hw find` defaults (MLP 784-512-512-10,
50 % of the free weights kept, Adam lr 0.01, batch 128, 5 epochs), one row per (format, seed) with the
test accuracy, checkpoint bytes, payload bits per weight and the search time. Writes results.csv.

    python bench/papers/fashion_mnist_formats.py             # 3 formats x 3 seeds
    python bench/papers/fashion_mnist_formats.py --seeds 1 --epochs 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from paper_io import write_csv  # bench/papers/ is on sys.path when a script runs

from slt_hw.memory import memory_report
from slt_hw.train import FindConfig, find

FORMATS = {"edge_popup": "binary (Edge-Popup)", "multicoat": "multicoat (3 adaptive coats)",
           "frozen": "partially frozen (30 % pruned, 10 % locked)"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="default: find's (5 on fashion-mnist)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default="paper-out/fashion_mnist_formats")
    a = p.parse_args(argv)
    if a.seeds < 1 or a.threads < 1 or (a.epochs is not None and a.epochs < 1):
        p.error("--seeds, --threads, --epochs: expected ints >= 1")
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    rows = []
    for seed in range(a.seeds):
        for method, label in FORMATS.items():
            cfg = FindConfig(dataset="fashion-mnist", data_root=a.data_root, method=method, seed=seed,
                             epochs=a.epochs, threads=a.threads, out=str(out / f"{method}-s{seed}.slt"))
            out.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            res = find(cfg, progress=False)
            rep = memory_report(res.model)
            n = sum(e.weights for e in rep.layers)
            rows.append({"format": label, "method": method, "seed": seed, "epochs": cfg.epochs,
                         "accuracy": round(res.test_metric, 4), "checkpoint_bytes": res.saved.bytes_on_disk,
                         "payload_bits_per_weight": round(rep.payload_bits / n, 4),
                         "seconds": round(time.perf_counter() - t0, 1), "threads": a.threads})
            write_csv(rows, out / "results.csv")
            print(f"{label:<46} seed={seed} acc={rows[-1]['accuracy']:.4f} "
                  f"{rows[-1]['payload_bits_per_weight']:.3f} bits/weight {rows[-1]['seconds']:.0f} s", flush=True)
    print(f"wrote {out / 'results.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
