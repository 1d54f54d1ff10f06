"""SLTs within transformers without normalization (Otsuka et al., AAAI 2026): error against depth.

Target: 1-4 untrained dense blocks Blk(x) = F(a) + a, a = Attn(x) + x (one head, in/out 2, Q/K dim 8,
FFN 2 -> 8 -> 2 with ReLU, no bias, no normalization; entries U[-1, 1]/sqrt(fan-in), seeded), fed the
angular-velocity sequences with the zero regression token first. For each source hidden dim n:

* MILP (the paper's construction): per source block, the attention part as in mha_slt.py (Q/K and V
  dims n, W_Q, W_K ~ U[-n^1/4, n^1/4], W_V, W_O ~ U[-1, 1], logits / sqrt(n); merged W_QK and W_VO
  entries as subset sums), and the FFN part by the two-layers-for-one construction (Pensia et al.
  2020): each target layer W (o x d) is approximated by two source layers A (n x d), ReLU, B (o x n)
  with U[-1, 1] weights; the mask on A keeps one input coordinate j per hidden unit, the units of
  coordinate j are split by the sign of their weight (positive half: ReLU(x_j) |A_ij|, negative half:
  ReLU(-x_j) |A_ij|, and x_j = ReLU(x_j) - ReLU(-x_j)), and each entry W[k, j] is a subset sum of
  B_ki A_ij over each half, solved as a MILP. The source FFN is 2 -> n -> 8 -> n -> 2 (2L layers per
  L target layers; the middle width is the target's, a wider one would be masked down to it). The
  second pair's input is a ReLU output (>= 0), so only positive units are used there; units are dealt
  to the (coordinate, sign) groups greedily so the groups are balanced. Residuals kept.
* Edge-Popup: SLTTransformerBlocks (default signed-constant weights, Q/K and FFN width n), scores trained
  to match the target at every token with mha_slt.train_scores (Adam lr 0.01 cosine-annealed to 0, 400
  steps of 256 sequences), at each --ep-sparsity (default 50 % and 10 % kept, as mha_slt.py).

Error: mean |source - target| over every token of the test sequences, next to the residual path alone
(output = input). Writes transformer.csv (one row per method, blocks, n, source), transformer_summary.csv,
error_vs_blocks.png and transformer.txt to --out.

    python bench/papers/transformer_slt.py            # full: 1-4 blocks, n in {100, 225}, 20 sources (MILP)
    python bench/papers/transformer_slt.py --sources 100 --workers 1   # the paper's 100 sources, one process
    python bench/papers/transformer_slt.py --quick    # smoke run for the tests
    python bench/papers/transformer_slt.py --engine ray --address HOST:6379   # the sources on a Ray cluster
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from mha_slt import (
    EP_LR,
    add_sweep_args,
    attention,
    attention_masks,
    error,
    merged,
    read_rows,
    subset_sum,
    sweep_settings,
    train_scores,
    with_token,
)
from paper_io import write_csv  # bench/papers/ is on sys.path when a script runs
from paper_sweep import check_engine_args, pending, report_failures, run_points

from slt_hw import data
from slt_hw.csvio import FAILURE
from slt_hw.nn.attention import SLTMultiheadAttention, SLTTransformerBlock
from slt_hw.nn.base import SLTLinear

D, DK, DFF = 2, 8, 8


def target_transformer(blocks: int, seed: int, d: int = D, dk: int = DK, dff: int = DFF) -> list[dict]:
    """Untrained dense target (paper: in/out 2, Q/K dim 8, one head), entries U[-1, 1]/sqrt(fan-in).
    Blocks are drawn in order, so the first b blocks of a deeper target are the b-block target."""
    g = torch.Generator().manual_seed(seed)

    def u(o: int, i: int) -> torch.Tensor:
        return (torch.rand(o, i, generator=g) * 2 - 1) / math.sqrt(i)
    return [{"wq": u(dk, d), "wk": u(dk, d), "wv": u(d, d), "wo": u(d, d), "w1": u(dff, d), "w2": u(d, dff)}
            for _ in range(blocks)]


def transformer_forward(x: torch.Tensor, blks: list[dict]) -> torch.Tensor:
    """Blk(x) = F(a) + a, a = Attn(x) + x, no normalization (as slt_hw.nn.SLTTransformerBlock)."""
    for b in blks:
        a = attention(x, b["wq"], b["wk"], b["wv"], b["wo"], 1 / math.sqrt(b["wq"].shape[0])) + x
        x = torch.relu(a @ b["w1"].T) @ b["w2"].T + a
    return x


def source_block(n: int, seed: int, i: int, d: int = D, dff: int = DFF) -> dict[str, np.ndarray]:
    """Random weights of source block i from the contract (theory distributions), as float64 arrays."""
    attn = SLTMultiheadAttention(d, 1, seed=seed, name=f"blocks.{i}.attn", qk_dim=n, v_dim=n, out_dim=d,
                                 qk_init_scale=n ** 0.25, dist="uniform", scale=1.0)
    ffn = [SLTLinear(fi, fo, seed=seed, name=f"blocks.{i}.ffn.{j}", dist="uniform", scale=1.0)
           for j, (fi, fo) in enumerate([(d, n), (n, dff), (dff, n), (n, d)])]
    w = {k: m.weight0.double().numpy() for k, m in (("wq", attn.q_proj), ("wk", attn.k_proj), ("wv", attn.v_proj),
                                                     ("wo", attn.out_proj))}
    return w | {f"f{j}": m.weight0.double().numpy() for j, m in enumerate(ffn)}


def pair_masks(a_w: np.ndarray, b_w: np.ndarray, w_t: np.ndarray, nonneg: bool, time_limit: float,
               tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Two source layers a_w (n, d), ReLU, b_w (o, n) approximating one target layer w_t (o, d) (pre-activation).

    Each hidden unit keeps one input coordinate j (mask on a_w) and joins group (j, sign a_w[i, j]);
    nonneg: the input is >= 0, so negative units would be dead and only positive groups are used."""
    n, d = a_w.shape
    o = b_w.shape[0]
    ma, mb = np.zeros((n, d), bool), np.zeros((o, n), bool)
    groups: dict[tuple[int, int], list[int]] = {(j, sg): [] for j in range(d) for sg in ((1,) if nonneg else (1, -1))}
    for i in range(n):
        cands = [c for c in ((j, 1 if a_w[i, j] > 0 else -1) for j in range(d)) if c in groups]
        if cands:
            groups[min(cands, key=lambda c: len(groups[c]))].append(i)
    for (j, _), units in groups.items():
        u = np.array(units, dtype=int)
        ma[u, j] = True
        for k in range(o):
            # positive half: sum B_ki A_ij ReLU(x_j) ~ W_kj ReLU(x_j); negative half: sum B_ki |A_ij| ReLU(-x_j)
            # ~ -W_kj ReLU(-x_j); both are the subset sum  sum B_ki A_ij ~ W_kj
            mb[k, u] = subset_sum(b_w[k, u] * a_w[u, j], float(w_t[k, j]), time_limit, tol)
    return ma, mb


def block_masks(src: dict, tgt: dict, time_limit: float, tol: float) -> dict[str, np.ndarray]:
    t = {k: v.double() for k, v in tgt.items()}
    m = attention_masks(src["wq"], src["wk"], src["wv"], src["wo"], *merged(t["wq"], t["wk"], t["wv"], t["wo"]),
                        time_limit, tol)
    m["f0"], m["f1"] = pair_masks(src["f0"], src["f1"], t["w1"].numpy(), False, time_limit, tol)
    m["f2"], m["f3"] = pair_masks(src["f2"], src["f3"], t["w2"].numpy(), True, time_limit, tol)
    return m


def source_forward(x: torch.Tensor, blks: list[tuple[dict, dict]]) -> torch.Tensor:
    """The masked source: attention, residual, FFN 2 -> n -> 8 -> n -> 2 (ReLU after the first three), residual."""
    for src, m in blks:
        w = {k: torch.from_numpy(src[k] * m[{"wq": "q", "wk": "k", "wv": "v", "wo": "o"}.get(k, k)]) for k in src}
        a = attention(x, w["wq"], w["wk"], w["wv"], w["wo"], 1 / math.sqrt(w["wq"].shape[0])) + x
        h = torch.relu(torch.relu(a @ w["f0"].T) @ w["f1"].T)  # ~ ReLU(W1 a)
        x = torch.relu(h @ w["f2"].T) @ w["f3"].T + a  # ~ W2 h
    return x


def transformer_edge_popup(blocks: int, n: int, seed: int, steps: int, samples: int, sparsity: float = 0.9,
                           lr: float = EP_LR) -> tuple[float, float]:
    """Edge-Popup (a fraction `sparsity` of each layer's weights dropped, default signed-constant source) on
    `blocks` SLT blocks with Q/K and FFN width n, scores trained (mha_slt.train_scores: Adam, cosine
    schedule) to match an untrained target transformer at every token; mean |error| on test data, and
    the error of the residual path alone (all masks empty: output = input) for scale."""
    from torch import nn

    tgt = target_transformer(blocks, seed)
    src = nn.ModuleList(SLTTransformerBlock(2, 1, n, seed=2000 + seed, name=f"blocks.{i}", qk_dim=n,
                                            sparsity=sparsity) for i in range(blocks))
    ds = data.angular_velocity(num_samples=samples, seq_len=4, seed=3 + seed)
    xtr, xte = with_token(ds.train.x), with_token(ds.test.x)
    ytr, yte = transformer_forward(xtr, tgt), transformer_forward(xte, tgt)

    def run(x: torch.Tensor) -> torch.Tensor:
        for blk in src:
            x = blk(x)
        return x
    train_scores(src, run, xtr, ytr, steps, seed, lr)
    with torch.no_grad():
        return error(run(xte), yte), error(xte, yte)


SOURCES, EP_SOURCES = (20, 2), (3, 1)  # per point: (default, --quick)


def _key(r: dict) -> tuple:
    return r["method"], r["sparsity"], r["blocks"], r["n"], r["source"]


def _task_keys(blocks: list[int], task: tuple) -> list[tuple]:
    """The rows a task writes: an Edge-Popup task one, a MILP task one per depth."""
    if task[0] == "edge_popup":
        n, s, b, sp = task[1:]
        return [("edge_popup", sp, b, n, s)]
    return [("milp", "", b, task[1], task[2]) for b in blocks]


def _task(c: dict, task: tuple) -> list[dict]:
    """One source; c: the depths and the settings (shipped once to every worker process or Ray task)."""
    kind, n, s = task[:3]
    if kind == "edge_popup":
        blocks, sp = task[3:5]
        t0 = time.perf_counter()
        err, res = transformer_edge_popup(blocks, n, s, c["steps"], samples=c["n_test"], sparsity=sp)
        return [{"method": "edge_popup", "sparsity": sp, "blocks": blocks, "n": n, "source": s, "error": err,
                 "residual_only": res, "seconds": round(time.perf_counter() - t0, 2)}]
    t0 = time.perf_counter()
    tgt = target_transformer(max(c["blocks"]), seed=s)
    x = with_token(data.angular_velocity(num_samples=c["n_test"], seq_len=4, seed=3 + s).test.x).double()
    blks = []
    for i, t in enumerate(tgt):
        src = source_block(n, seed=2000 + s, i=i)
        blks.append((src, block_masks(src, t, c["time_limit"], c["tol"])))
    secs = time.perf_counter() - t0
    rows = []
    with torch.no_grad():
        for b in c["blocks"]:
            ref = transformer_forward(x, [{k: v.double() for k, v in t.items()} for t in tgt[:b]])
            err = error(source_forward(x, blks[:b]), ref)
            rows.append({"method": "milp", "sparsity": "", "blocks": b, "n": n, "source": s, "error": err,
                         "residual_only": error(x, ref), "seconds": round(secs, 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_args(p, out="paper-out/transformer_slt", sources=SOURCES, ep_sources=EP_SOURCES, tol=1e-4,
                   resume="continue --out/transformer.csv: run only the sources missing from it (none when it "
                          "is complete), then summary and plot")
    a = p.parse_args(argv)
    check_engine_args(p, a)
    sources, ep_sources, workers, ep_sps = sweep_settings(a, SOURCES, EP_SOURCES)
    if a.quick:
        blocks, ns, steps, n_test = [1, 2], [16], 40, 200
    else:
        blocks, ns, steps, n_test = [1, 2, 3, 4], [100, 225], 400, 1000
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ctx = {"blocks": blocks, "steps": steps, "n_test": n_test, "time_limit": a.time_limit, "tol": a.tol}
    tasks = [("edge_popup", n, s, b, sp) for sp in ep_sps for b in blocks for n in ns for s in range(ep_sources)]
    tasks += [("milp", n, s) for n in ns for s in range(sources)]
    csv_path = out / "transformer.csv"
    kept = []
    if a.resume and csv_path.exists():
        kept = read_rows(csv_path, ints=("blocks", "n", "source"), floats=("error", "residual_only"))
    if a.rerun_edge_popup:
        kept = [r for r in kept if r["method"] != "edge_popup"]
    todo = pending(tasks, kept, functools.partial(_task_keys, blocks), _key)
    done = {k for t in todo for k in _task_keys(blocks, t)}
    kept = [r for r in kept if _key(r) not in done]  # a MILP source with some depths missing runs again
    rows = run_points(functools.partial(_task, ctx), todo, a, workers, csv_path, kept,
                      lambda t, e: {"method": t[0], "sparsity": t[4] if t[0] == "edge_popup" else "",
                                    "blocks": t[3] if t[0] == "edge_popup" else "", "n": t[1], "source": t[2],
                                    FAILURE: e}, "sources")
    if report_failures(rows, csv_path):
        return 1
    blocks, ns = sorted({r["blocks"] for r in rows}), sorted({r["n"] for r in rows})
    ep_sps = sorted({r["sparsity"] for r in rows if r["method"] == "edge_popup"})
    rows.sort(key=lambda r: (r["method"], r["sparsity"] or 0, r["blocks"], r["n"], r["source"]))
    write_csv(rows, out / "transformer.csv")
    summary = []
    for method, sp in [("milp", "")] + [("edge_popup", sp) for sp in ep_sps]:
        for b in blocks:
            for n in ns:
                sel = [r for r in rows if r["method"] == method and r["sparsity"] == sp and r["blocks"] == b
                       and r["n"] == n]
                if sel:
                    e = [r["error"] for r in sel]
                    summary.append({"method": method, "sparsity": sp, "blocks": b, "n": n, "mean": float(np.mean(e)),
                                    "std": float(np.std(e)), "median": float(np.median(e)), "sources": len(e),
                                    "residual_only": float(np.mean([r["residual_only"] for r in sel]))})
    write_csv(summary, out / "transformer_summary.csv")
    secs = [float(r["seconds"]) for r in rows if r["method"] == "milp" and r.get("seconds") not in (None, "")]
    lines = [f"{label(r['method'], r['sparsity']):<22} blocks={r['blocks']} n={r['n']:<4} error {r['mean']:.6f} "
             f"± {r['std']:.6f} "
             f"(median {r['median']:.6f}; {r['sources']} sources; output = input: {r['residual_only']:.4f})"
             for r in summary]
    if secs:
        lines.append(f"MILP masks per {max(blocks)}-block source: {np.mean(secs):.1f} s mean (tol {a.tol}, "
                     f"limit {a.time_limit} s per subset sum)"
                     + (f"; {len(todo)} points in {time.perf_counter() - t0:.0f} s, {workers} workers ({a.engine})"
                        if todo else ""))
    (out / "transformer.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(summary, ns, blocks, out)
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


def label(method: str, sparsity) -> str:
    return "MILP" if method == "milp" else f"Edge-Popup {100 * (1 - float(sparsity)):.0f} % kept"


def plot(summary: list[dict], ns: list[int], blocks: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.4, 4.2), dpi=90)
    curves = list(dict.fromkeys((r["method"], r["sparsity"]) for r in summary))
    k = 0
    for method, sp in curves:
        mk = "o-" if method == "milp" else "sD^v"[(curves.index((method, sp)) - 1) % 4] + "--"
        for n in ns:
            sel = [r for r in summary if r["method"] == method and r["sparsity"] == sp and r["n"] == n]
            if sel:
                off = (k - (len(curves) * len(ns) - 1) / 2) * 0.04
                ax.errorbar([r["blocks"] + off for r in sel], [r["mean"] for r in sel], yerr=[r["std"] for r in sel],
                            fmt=mk, capsize=3, label=f"{label(method, sp)}, n = {n}")
            k += 1
    res = [next(r["residual_only"] for r in summary if r["blocks"] == b) for b in blocks]
    ax.plot(blocks, res, ":", color="gray", label="output = input (residual only)")
    ax.set_yscale("log")
    ax.set_xticks(blocks)
    ax.set_xlabel("blocks")
    ax.set_ylabel("mean |output error| (mean ± std over sources)")
    ax.set_title("SLTs in transformers without normalization")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out / "error_vs_blocks.png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
