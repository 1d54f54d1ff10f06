"""SLTs within multi-head attention (Otsuka et al., AAAI 2026): the synthetic angular-velocity experiment.

1. Train a target MHA (one head, in 2, out 1, no bias/normalization) on the angular-velocity task
   (regression token first, output at the regression token).
2. For each source hidden dim n = n_K = n_V draw random source MHAs from the weight-generation
   contract (slt_hw.nn.SLTMultiheadAttention, dist "uniform": W_Q, W_K ~ U[-n^1/4, n^1/4] through
   qk_init_scale, W_V, W_O ~ U[-1, 1], logits scaled by 1/sqrt(n)) and find masks with the paper's
   construction: merge the target into W_QK = W_Q W_K^T / sqrt(d_K) and W_VO = W_V W_O; split the
   hidden units into d_in blocks (M_Q and M_V keep only input coordinate a in block a), then each
   entry of W_QK (via M_K) and of W_VO (via M_O) is a subset sum of the block's products
   q_ia k_ib / sqrt(n) resp. v_ja o_j, each solved as a MILP (scipy.optimize.milp / HiGHS).
3. Separately: Edge-Popup (scores trained, 50 % kept) on the same sources, distilling the target.
4. Error: mean |source output - target output| over test sequences at every token (the
   regression-token output alone does not see W_QK: its query is the zero token); the fit
   eps = gamma * exp(-delta * n) next to the paper's 0.8 * exp(-0.06 n); the error against the
   sequence length T for fixed masks.

Writes results.csv, seq_len.csv, error_vs_n.png, error_vs_T.png and fit.txt to --out.

    python bench/papers/mha_slt.py            # full: n = 4..100, 20 sources per point (MILP limit 0.5 s each)
    python bench/papers/mha_slt.py --quick    # smoke run for the tests
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from paper_io import write_csv  # bench/papers/ is on sys.path when a script runs
from scipy.optimize import Bounds, LinearConstraint, milp

from slt_hw import data
from slt_hw.nn.attention import SLTMultiheadAttention

PAPER = (0.8, 0.06)  # eps ~ 0.8 exp(-0.06 n)
D_IN, D_K, D_V = 2, 4, 4


def attention(x: torch.Tensor, wq, wk, wv, wo, scale: float) -> torch.Tensor:
    """One head, no bias; x (B, T, d) with the regression token already prepended -> (B, T, out)."""
    q, k, v = x @ wq.T, x @ wk.T, x @ wv.T
    a = torch.softmax((q @ k.transpose(1, 2)) * scale, -1)
    return (a @ v) @ wo.T


def with_token(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2]), x], 1)


def train_target(epochs: int, samples: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weight-trained target (ordinary dense parameters, AdamW lr 0.1, batch 1024, wd 0.01 as the paper)."""
    g = torch.Generator().manual_seed(seed)
    w = {"wq": torch.randn(D_K, D_IN, generator=g) * 0.5, "wk": torch.randn(D_K, D_IN, generator=g) * 0.5,
         "wv": torch.randn(D_V, D_IN, generator=g) * 0.5, "wo": torch.randn(1, D_V, generator=g) * 0.5}
    for t in w.values():
        t.requires_grad_(True)
    ds = data.angular_velocity(num_samples=samples, seq_len=4, seed=seed)
    opt = torch.optim.AdamW(list(w.values()), lr=0.1, weight_decay=0.01)
    x, y = with_token(ds.train.x), ds.train.y
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 1024):
            idx = perm[i:i + 1024]
            opt.zero_grad()
            out = attention(x[idx], **w, scale=1 / math.sqrt(D_K))[:, 0]
            F.mse_loss(out, y[idx]).backward()
            opt.step()
    with torch.no_grad():
        mse = float(F.mse_loss(attention(with_token(ds.test.x), **w, scale=1 / math.sqrt(D_K))[:, 0], ds.test.y))
    return {k: t.detach() for k, t in w.items()} | {"test_mse": mse}


def source(n: int, seed: int) -> SLTMultiheadAttention:
    """Random source from the contract: U[-1, 1] weights, Q/K scaled by n^(1/4)."""
    return SLTMultiheadAttention(D_IN, 1, seed=seed, name="attn", qk_dim=n, v_dim=n, out_dim=1,
                                 qk_init_scale=n ** 0.25, dist="uniform", scale=1.0, sparsity=0.5)


def subset_sum(items: np.ndarray, target: float, time_limit: float) -> np.ndarray:
    """Binary z minimising |items . z - target| (MILP: min t, -t <= items.z - target <= t)."""
    m = items.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    c = np.r_[np.zeros(m), 1.0]
    a = np.vstack([np.r_[items, -1.0], np.r_[-items, -1.0]])
    cons = LinearConstraint(a, -np.inf, np.array([target, -target]))
    res = milp(c, constraints=cons, integrality=np.r_[np.ones(m), 0], bounds=Bounds(np.r_[np.zeros(m), 0],
                                                                                     np.r_[np.ones(m), np.inf]),
               options={"time_limit": time_limit, "disp": False})
    if res.x is None:  # no incumbent within the time limit: the empty subset
        return np.zeros(m, dtype=bool)
    return res.x[:m] > 0.5


def milp_masks(src: SLTMultiheadAttention, tgt: dict, time_limit: float) -> dict[str, torch.Tensor]:
    """The paper's construction: block-diagonal M_Q / M_V, subset sums through M_K / M_O."""
    wq, wk = src.q_proj.weight0.double().numpy(), src.k_proj.weight0.double().numpy()
    wv, wo = src.v_proj.weight0.double().numpy(), src.out_proj.weight0.double().numpy()
    n = wq.shape[0]
    w_qk = (tgt["wq"].T @ tgt["wk"]).double().numpy() / math.sqrt(D_K)  # (d_in, d_in)
    w_vo = (tgt["wv"].T @ tgt["wo"].T).double().numpy()  # (d_in, out)
    mq, mk = np.zeros((n, D_IN), bool), np.zeros((n, D_IN), bool)
    mv, mo = np.zeros((n, D_IN), bool), np.zeros((1, n), bool)
    blocks = np.array_split(np.arange(n), D_IN)
    for a, blk in enumerate(blocks):
        mq[blk, a] = True
        mv[blk, a] = True
        for b in range(D_IN):
            mk[blk, b] = subset_sum(wq[blk, a] * wk[blk, b] / math.sqrt(n), w_qk[a, b], time_limit)
        mo[0, blk] = subset_sum(wv[blk, a] * wo[0, blk], w_vo[a, 0], time_limit)
    return {"q": torch.from_numpy(mq), "k": torch.from_numpy(mk), "v": torch.from_numpy(mv), "o": torch.from_numpy(mo)}


def source_output(src: SLTMultiheadAttention, masks: dict, x: torch.Tensor) -> torch.Tensor:
    n = src.q_proj.weight0.shape[0]
    return attention(x, src.q_proj.weight0 * masks["q"], src.k_proj.weight0 * masks["k"],
                     src.v_proj.weight0 * masks["v"], src.out_proj.weight0 * masks["o"], 1 / math.sqrt(n))


def error(pred: torch.Tensor, ref: torch.Tensor) -> float:
    return float((pred - ref).abs().mean())


def edge_popup(src: SLTMultiheadAttention, tgt: dict, x_train: torch.Tensor, x_test: torch.Tensor, steps: int,
               seed: int) -> float:
    """Scores trained (Adam) to match the target at every token; error of the found 50 % mask."""
    g = torch.Generator().manual_seed(seed)
    ref_train = attention(x_train, **{k: tgt[k] for k in ("wq", "wk", "wv", "wo")}, scale=1 / math.sqrt(D_K))
    opt = torch.optim.Adam([p for p in src.parameters() if p.requires_grad], lr=0.05)
    for _ in range(steps):
        idx = torch.randint(0, x_train.shape[0], (256,), generator=g)
        opt.zero_grad()
        F.mse_loss(src(x_train[idx])[0], ref_train[idx]).backward()
        opt.step()
    with torch.no_grad():
        ref = attention(x_test, **{k: tgt[k] for k in ("wq", "wk", "wv", "wo")}, scale=1 / math.sqrt(D_K))
        return error(src(x_test)[0], ref)


def target_transformer(blocks: int, seed: int, d: int = 2, dk: int = 8, dff: int = 8) -> list[dict]:
    """Untrained dense target (paper: in/out 2, Q/K dim 8, one head), entries U[-1, 1]/sqrt(fan-in)."""
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


def transformer_edge_popup(blocks: int, n: int, seed: int, steps: int, samples: int) -> tuple[float, float]:
    """Edge-Popup (50 % kept, default signed-constant source) on `blocks` SLT blocks with Q/K and FFN
    width n, matching an untrained target transformer at every token; mean |error| on test data, and
    the error of the residual path alone (all masks empty: output = input) for scale."""
    from torch import nn

    from slt_hw.nn.attention import SLTTransformerBlock

    tgt = target_transformer(blocks, seed)
    src = nn.ModuleList(SLTTransformerBlock(2, 1, n, seed=2000 + seed, name=f"blocks.{i}", qk_dim=n,
                                            sparsity=0.5) for i in range(blocks))
    ds = data.angular_velocity(num_samples=samples, seq_len=4, seed=3 + seed)
    xtr, xte = with_token(ds.train.x), with_token(ds.test.x)
    ytr, yte = transformer_forward(xtr, tgt), transformer_forward(xte, tgt)

    def run(x: torch.Tensor) -> torch.Tensor:
        for blk in src:
            x = blk(x)
        return x
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in src.parameters() if p.requires_grad], lr=0.05)
    for _ in range(steps):
        idx = torch.randint(0, xtr.shape[0], (256,), generator=g)
        opt.zero_grad()
        F.mse_loss(run(xtr[idx]), ytr[idx]).backward()
        opt.step()
    with torch.no_grad():
        return error(run(xte), yte), error(xte, yte)


FLOOR = 1e-4  # the float32 evaluation floor is ~5e-6: points at or below FLOOR are left out of the fit


def fit(ns: np.ndarray, eps: np.ndarray) -> tuple[float, float]:
    """Least squares on log eps = log gamma - delta n, over the points above FLOOR."""
    keep = eps > FLOOR
    if keep.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(ns[keep], np.log(eps[keep]), 1)
    return float(math.exp(intercept)), float(-slope)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="paper-out/mha_slt")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    p.add_argument("--resume", action="store_true", help="reuse --out/results.csv (skip the n sweep)")
    p.add_argument("--no-transformer", action="store_true", help="skip the 1-4 block transformer sweep")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        ns, sources, ep_sources, ep_ns, lens, tl, epochs, samples, steps, n_test = \
            [8, 16, 32], 3, 1, [16], [4, 64], 0.25, 3, 2000, 60, 200
    else:
        ns, sources, ep_sources, ep_ns, lens, tl, epochs, samples, steps, n_test = \
            [4, 8, 12, 16, 20, 30, 40, 60, 80, 100], 20, 5, [20, 40, 60, 100], \
            [4, 16, 64, 256, 1024, 4096], 0.5, 25, 10000, 400, 1000
    tf_blocks, tf_ns, tf_sources = ([1], [16], 1) if a.quick else ([1, 2, 3, 4], [100, 225], 3)
    if a.no_transformer:
        tf_blocks = []
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tgt = train_target(epochs, samples)
    print(f"target MHA: test MSE {tgt['test_mse']:.4f} on angular velocity (T = 4)", flush=True)
    w = {k: tgt[k] for k in ("wq", "wk", "wv", "wo")}
    test = data.angular_velocity(num_samples=n_test, seq_len=4, seed=1)
    x_test, x_train = with_token(test.test.x), with_token(test.train.x)
    ref = attention(x_test, **w, scale=1 / math.sqrt(D_K))
    rows, keep = [], {}
    if a.resume and (out / "results.csv").exists():  # reuse a finished n-sweep, redo fit, T sweep, plots
        with open(out / "results.csv") as f:
            rows = [r | {"n": int(r["n"]), "source": int(r["source"]), "error": float(r["error"])}
                    for r in csv.DictReader(f)]
        ns = sorted({r["n"] for r in rows})
        ep_ns = sorted({r["n"] for r in rows if r["method"] == "edge_popup"})
    for n in [] if rows else ns:
        for s in range(sources):
            src = source(n, seed=1000 + s)
            masks = milp_masks(src, tgt, tl)
            with torch.no_grad():
                pred = source_output(src, masks, x_test)
            rows.append({"method": "milp", "n": n, "source": s, "error": error(pred, ref),
                         "error_reg_token": error(pred[:, 0], ref[:, 0])})
            if s == 0:
                keep[n] = (src, masks)
            if s < ep_sources and n in ep_ns:
                err = edge_popup(source(n, seed=1000 + s), tgt, x_train, x_test, steps, seed=s)
                rows.append({"method": "edge_popup", "n": n, "source": s, "error": err, "error_reg_token": ""})
        m = [r["error"] for r in rows if r["method"] == "milp" and r["n"] == n]
        print(f"n={n:<4} milp error {np.mean(m):.5f} ± {np.std(m):.5f} ({len(m)} sources, "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
    write_csv(rows, out / "results.csv")
    milp_rows = [r for r in rows if r["method"] == "milp"]
    mean = np.array([np.mean([r["error"] for r in milp_rows if r["n"] == n]) for n in ns])
    std = np.array([np.std([r["error"] for r in milp_rows if r["n"] == n]) for n in ns])
    gamma, delta = fit(np.array(ns, float), mean)
    # error against the sequence length T for fixed masks (n = the largest swept dim's first source)
    n_fix = ns[len(ns) // 2]
    src, masks = keep[n_fix] if n_fix in keep else (source(n_fix, seed=1000), None)
    masks = masks or milp_masks(src, tgt, tl)
    seq_rows = []
    for t in lens:
        xs = with_token(data.angular_velocity(num_samples=200 if t <= 1024 else 50, seq_len=t, seed=2).test.x)
        chunk = max(1, int(2.5e8 // (t + 1) ** 2))  # bound the (B, T, T) logits to ~1 GB
        total = 0.0
        with torch.no_grad():
            for xc in xs.split(chunk):
                ref_c = attention(xc, **w, scale=1 / math.sqrt(D_K))
                total += error(source_output(src, masks, xc), ref_c) * xc.shape[0]
        err = total / xs.shape[0]
        seq_rows.append({"T": t, "n": n_fix, "error": err})
    write_csv(seq_rows, out / "seq_len.csv")
    ep = {n: [r["error"] for r in rows if r["method"] == "edge_popup" and r["n"] == n] for n in ep_ns}
    tf_rows = []
    for blocks in tf_blocks:
        for n in tf_ns:
            res = [transformer_edge_popup(blocks, n, s, steps, samples=n_test) for s in range(tf_sources)]
            errs = [r[0] for r in res]
            tf_rows.append({"blocks": blocks, "n": n, "mean": float(np.mean(errs)), "std": float(np.std(errs)),
                            "sources": tf_sources, "residual_only": float(np.mean([r[1] for r in res]))})
            print(f"transformer blocks={blocks} n={n}: edge-popup error {np.mean(errs):.4f}", flush=True)
    if tf_rows:
        write_csv(tf_rows, out / "transformer.csv")
    lines = [f"target test MSE {tgt['test_mse']:.4f}",
             f"fit (MILP): eps = {gamma:.3f} * exp(-{delta:.4f} n)   paper: {PAPER[0]} * exp(-{PAPER[1]} n)",
             *(f"n={n}: milp {mu:.5f} ± {sd:.5f}" for n, mu, sd in zip(ns, mean, std, strict=True)),
             *(f"n={n}: edge-popup (50 % kept) {np.mean(v):.5f} ± {np.std(v):.5f} ({len(v)} sources)"
               for n, v in ep.items() if v),
             *(f"T={r['T']}: error {r['error']:.5f} (n={n_fix}, fixed masks)" for r in seq_rows),
             *(f"transformer, {r['blocks']} block(s), n={r['n']}: edge-popup {r['mean']:.5f} ± {r['std']:.5f} "
               f"({r['sources']} sources; output = input: {r['residual_only']:.5f})" for r in tf_rows)]
    (out / "fit.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(ns, mean, std, gamma, delta, ep, seq_rows, out)
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


def plot(ns, mean, std, gamma, delta, ep, seq_rows, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    ax.errorbar(ns, mean, yerr=std, fmt="o", capsize=3, label="MILP subset sums (mean ± std)")
    xs = np.linspace(min(ns), max(ns), 100)
    ax.plot(xs, gamma * np.exp(-delta * xs), "-", label=f"fit {gamma:.2f}·exp(−{delta:.3f}n)")
    ax.plot(xs, PAPER[0] * np.exp(-PAPER[1] * xs), "--", color="gray", label="paper 0.8·exp(−0.06n)")
    epn = [n for n, v in ep.items() if v]
    if epn:
        ax.errorbar(epn, [np.mean(ep[n]) for n in epn], yerr=[np.std(ep[n]) for n in epn], fmt="s", capsize=3,
                    label="Edge-Popup (50 % kept)")
    ax.set_yscale("log")
    ax.set_xlabel("source hidden dim n = n_K = n_V")
    ax.set_ylabel("mean |output error|")
    ax.set_title("SLTs in MHA: angular velocity, T = 4")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "error_vs_n.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
    ax.plot([r["T"] for r in seq_rows], [r["error"] for r in seq_rows], "o-")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("mean |output error|")
    ax.set_title(f"fixed MILP masks, n = {seq_rows[0]['n']}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "error_vs_T.png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
