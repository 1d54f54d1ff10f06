"""SLTs within multi-head attention (Otsuka et al., AAAI 2026): the synthetic angular-velocity experiment.

1. Train a target MHA (one head, in 2, out 1, d_K = d_V = 4, no bias/normalization) on the angular-
   velocity task (zero regression token first, output omega / pi at the regression token), AdamW lr 0.1,
   batch 1024, 25 epochs, wd 0.01 as the paper. Tokens are scaled to norm 2 and get a learned positional
   embedding (norm <= 2); every weight is projected to spectral norm <= 1 after each step (see
   train_target for why: without positions a single attention layer cannot resolve the sign of omega).
2. For each source hidden dim n = n_K = n_V draw random source MHAs from the weight-generation
   contract (slt_hw.nn.SLTMultiheadAttention, dist "uniform": W_Q, W_K ~ U[-n^1/4, n^1/4] through
   qk_init_scale, W_V, W_O ~ U[-1, 1], logits scaled by 1/sqrt(n)) and find masks with the paper's
   construction: merge the target into W_QK = W_Q^T W_K / sqrt(d_K) and W_VO = W_V^T W_O^T; split the
   hidden units into d_in blocks (M_Q and M_V keep only input coordinate a in block a), then each
   entry of W_QK (via M_K) and of W_VO (via M_O) is a subset sum of the block's products
   q_ia k_ib / sqrt(n) resp. v_ja o_j, each solved as a MILP (scipy.optimize.milp / HiGHS).
3. Separately: Edge-Popup (scores trained, 50 % and 10 % kept) on the same sources, distilling the target.
4. Error: mean |source output - target output| over test sequences at every token; the fit
   eps = gamma * exp(-delta * n) next to the paper's 0.8 * exp(-0.06 n); the error against the
   sequence length T for fixed masks. Transformer blocks: transformer_slt.py.

Writes results.csv, seq_len.csv, error_vs_n.png, error_vs_T.png and fit.txt to --out.

    python bench/papers/mha_slt.py                 # full: n = 4..100, 20 sources per point, 2 processes
    python bench/papers/mha_slt.py --sources 100   # the paper's 100 sources per point
    python bench/papers/mha_slt.py --quick         # smoke run for the tests
    python bench/papers/mha_slt.py --engine ray --address HOST:6379   # the sources as tasks on a Ray cluster
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from paper_io import float_list, write_csv  # bench/papers/ is on sys.path when a script runs
from paper_sweep import add_engine_args, check_engine_args, pending, report_failures, run_points
from scipy.optimize import Bounds, LinearConstraint, milp

from slt_hw import data
from slt_hw.csvio import FAILURE
from slt_hw.nn.attention import SLTMultiheadAttention

PAPER = (0.8, 0.06)  # eps ~ 0.8 exp(-0.06 n)
D_IN, D_K, D_V = 2, 4, 4
X_SCALE = 2.0  # tokens (cos, sin) scaled to norm 2; learned positional embeddings of norm <= 2: |x| <= 4
T_TRAIN = 4


def attention(x: torch.Tensor, wq, wk, wv, wo, scale: float) -> torch.Tensor:
    """One head, no bias; x (B, T, d) with the regression token already prepended -> (B, T, out)."""
    q, k, v = x @ wq.T, x @ wk.T, x @ wv.T
    a = torch.softmax((q @ k.transpose(1, 2)) * scale, -1)
    return (a @ v) @ wo.T


def with_token(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2]), x], 1)


def embed(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """MHA input: zero regression token first, tokens x X_SCALE, plus the learned positional embedding
    (positions past the trained length reuse the last one, so any T can be fed)."""
    x = with_token(x * X_SCALE)
    idx = torch.arange(x.shape[1]).clamp(max=pos.shape[0] - 1)
    return x + pos[idx]


def project_(w: dict[str, torch.Tensor], pos: torch.Tensor) -> None:
    """The theory's target: spectral norm <= 1 per weight matrix; positional embeddings of norm <= X_SCALE."""
    for t in w.values():
        sn = torch.linalg.matrix_norm(t, 2)
        if sn > 1:
            t /= sn
    pos *= (X_SCALE / pos.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1)


def train_target(epochs: int, samples: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weight-trained target (AdamW lr 0.1, batch 1024, wd 0.01 as the paper), regressing omega / pi at the
    regression token. A learned positional embedding is added to every token (the regression token's is
    its learned value): without one, the output at one token is a function of the *set* of tokens, which
    cannot tell omega from -omega (a sequence read backwards is again a valid sample). Every weight is
    projected to spectral norm <= 1 after each step (the theorem's target class)."""
    g = torch.Generator().manual_seed(seed)
    w = {"wq": torch.randn(D_K, D_IN, generator=g) * 0.5, "wk": torch.randn(D_K, D_IN, generator=g) * 0.5,
         "wv": torch.randn(D_V, D_IN, generator=g) * 0.5, "wo": torch.randn(1, D_V, generator=g) * 0.5}
    pos = torch.randn(T_TRAIN + 1, D_IN, generator=g) * 0.1
    params = [*w.values(), pos]
    for t in params:
        t.requires_grad_(True)
    ds = data.angular_velocity(num_samples=samples, seq_len=T_TRAIN, seed=seed)
    opt = torch.optim.AdamW(params, lr=0.1, weight_decay=0.01)
    x, y = ds.train.x, ds.train.y / math.pi
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 1024):
            idx = perm[i:i + 1024]
            opt.zero_grad()
            out = attention(embed(x[idx], pos), **w, scale=1 / math.sqrt(D_K))[:, 0]
            F.mse_loss(out, y[idx]).backward()
            opt.step()
            with torch.no_grad():
                project_(w, pos)
    with torch.no_grad():
        pred = attention(embed(ds.test.x, pos), **w, scale=1 / math.sqrt(D_K))[:, 0] * math.pi
        mse = float(F.mse_loss(pred, ds.test.y))
        base = float(F.mse_loss(ds.train.y.mean().expand_as(ds.test.y), ds.test.y))
    return {k: t.detach() for k, t in w.items()} | {"pos": pos.detach(), "test_mse": mse, "mean_mse": base}


def source(n: int, seed: int, sparsity: float = 0.5) -> SLTMultiheadAttention:
    """Random source from the contract: U[-1, 1] weights, Q/K scaled by n^(1/4). `sparsity` only matters
    for Edge-Popup (the fraction of weights its top-k masks drop); the MILP masks set their own."""
    return SLTMultiheadAttention(D_IN, 1, seed=seed, name="attn", qk_dim=n, v_dim=n, out_dim=1,
                                 qk_init_scale=n ** 0.25, dist="uniform", scale=1.0, sparsity=sparsity)


def subset_sum(items: np.ndarray, target: float, time_limit: float, tol: float = 0.0) -> np.ndarray:
    """Binary z minimising |items . z - target| (MILP: min t, -t <= items.z - target <= t, t >= tol).

    tol > 0 lets HiGHS stop as soon as an incumbent is within tol (its bound then meets the objective);
    with tol = 0 it stops at its absolute gap (1e-6) or at time_limit, keeping the incumbent."""
    m = items.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    c = np.r_[np.zeros(m), 1.0]
    a = np.vstack([np.r_[items, -1.0], np.r_[-items, -1.0]])
    cons = LinearConstraint(a, -np.inf, np.array([target, -target]))
    res = milp(c, constraints=cons, integrality=np.r_[np.ones(m), 0],
               bounds=Bounds(np.r_[np.zeros(m), tol], np.r_[np.ones(m), np.inf]),
               options={"time_limit": time_limit, "disp": False})
    if res.x is None:  # no incumbent within the time limit: the empty subset
        return np.zeros(m, dtype=bool)
    return res.x[:m] > 0.5


def attention_masks(wq: np.ndarray, wk: np.ndarray, wv: np.ndarray, wo: np.ndarray, w_qk: np.ndarray,
                    w_vo: np.ndarray, time_limit: float, tol: float) -> dict[str, np.ndarray]:
    """The paper's construction for one head. Source wq, wk (n_K, d), wv (n_V, d), wo (out, n_V), logits
    scaled by 1/sqrt(n_K); merged target w_qk (d, d) (logit scale included) and w_vo (d, out). The hidden
    units are split into d blocks; M_Q / M_V keep only input coordinate a in block a; entry (a, b) of
    W_QK is a subset sum (through M_K[:, b]) of block a's q_ia k_ib / sqrt(n_K), entry (a, c) of W_VO a
    subset sum (through M_O[c]) of block a's v_ia o_ci."""
    n_k, d = wq.shape
    n_v, out = wv.shape[0], wo.shape[0]
    mq, mk = np.zeros((n_k, d), bool), np.zeros((n_k, d), bool)
    mv, mo = np.zeros((n_v, d), bool), np.zeros((out, n_v), bool)
    for a, blk in enumerate(np.array_split(np.arange(n_k), d)):
        mq[blk, a] = True
        for b in range(d):
            mk[blk, b] = subset_sum(wq[blk, a] * wk[blk, b] / math.sqrt(n_k), w_qk[a, b], time_limit, tol)
    for a, blk in enumerate(np.array_split(np.arange(n_v), d)):
        mv[blk, a] = True
        for c in range(out):
            mo[c, blk] = subset_sum(wv[blk, a] * wo[c, blk], w_vo[a, c], time_limit, tol)
    return {"q": mq, "k": mk, "v": mv, "o": mo}


def merged(wq: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor, wo: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """W_QK = W_Q^T W_K / sqrt(d_K) (d, d) and W_VO = W_V^T W_O^T (d, out) of a dense one-head target."""
    w_qk = (wq.T @ wk).double().numpy() / math.sqrt(wq.shape[0])
    return w_qk, (wv.T @ wo.T).double().numpy()


def milp_masks(src: SLTMultiheadAttention, tgt: dict, time_limit: float, tol: float = 0.0) -> dict[str, torch.Tensor]:
    w = [m.weight0.double().numpy() for m in (src.q_proj, src.k_proj, src.v_proj, src.out_proj)]
    masks = attention_masks(*w, *merged(tgt["wq"], tgt["wk"], tgt["wv"], tgt["wo"]), time_limit, tol)
    return {k: torch.from_numpy(v) for k, v in masks.items()}


def source_output(src: SLTMultiheadAttention, masks: dict, x: torch.Tensor) -> torch.Tensor:
    n = src.q_proj.weight0.shape[0]
    return attention(x, src.q_proj.weight0 * masks["q"], src.k_proj.weight0 * masks["k"],
                     src.v_proj.weight0 * masks["v"], src.out_proj.weight0 * masks["o"], 1 / math.sqrt(n))


def error(pred: torch.Tensor, ref: torch.Tensor) -> float:
    return float((pred - ref).abs().mean())


EP_LR = 0.01  # Adam on the scores, cosine-annealed to 0 (0.05 without a schedule diverged at n >= 40)
EP_SPARSITY = (0.5, 0.9)  # Edge-Popup runs at 50 % and 10 % kept by default
SOURCES, EP_SOURCES = (20, 3), (5, 1)  # per point: (default, --quick)


def train_scores(model: torch.nn.Module, forward, x_train: torch.Tensor, y_train: torch.Tensor, steps: int,
                 seed: int, lr: float = EP_LR, batch: int = 256) -> None:
    """Edge-Popup score training shared by the paper scripts: Adam on the trainable parameters (the scores),
    lr cosine-annealed to 0 over `steps` steps of `batch` random training rows (seeded), MSE between
    forward(x) and the target outputs y."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    for _ in range(steps):
        idx = torch.randint(0, x_train.shape[0], (batch,), generator=g)
        opt.zero_grad()
        F.mse_loss(forward(x_train[idx]), y_train[idx]).backward()
        opt.step()
        sched.step()


def edge_popup(src: SLTMultiheadAttention, tgt: dict, x_train: torch.Tensor, x_test: torch.Tensor, steps: int,
               seed: int, lr: float = EP_LR) -> float:
    """Scores trained (train_scores: Adam, cosine schedule) on the MSE to the target's outputs at every token
    of the task's inputs; returns the mean |error| of the found top-k mask on x_test."""
    ref_train = attention(x_train, **{k: tgt[k] for k in ("wq", "wk", "wv", "wo")}, scale=1 / math.sqrt(D_K))
    train_scores(src, lambda x: src(x)[0], x_train, ref_train, steps, seed, lr)
    with torch.no_grad():
        ref = attention(x_test, **{k: tgt[k] for k in ("wq", "wk", "wv", "wo")}, scale=1 / math.sqrt(D_K))
        return error(src(x_test)[0], ref)


def add_sweep_args(p: argparse.ArgumentParser, *, out: str, sources: tuple[int, int], ep_sources: tuple[int, int],
                   tol: float, resume: str) -> None:
    """The options of a MILP-vs-Edge-Popup sweep (this script and transformer_slt.py).
    sources, ep_sources: (default, --quick default) per point."""
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=out)
    p.add_argument("--sources", type=int, default=None,
                   help=f"MILP sources per point (default {sources[0]}; quick {sources[1]})")
    p.add_argument("--ep-sources", type=int, default=None,
                   help=f"Edge-Popup sources per point (default {ep_sources[0]}; quick {ep_sources[1]})")
    p.add_argument("--ep-sparsity", default=None,
                   help="comma-separated Edge-Popup sparsities (fraction dropped; default 0.5,0.9; quick 0.9)")
    add_engine_args(p, "default 2; quick 1")
    p.add_argument("--time-limit", type=float, default=0.5, help="seconds per subset-sum MILP")
    p.add_argument("--tol", type=float, default=tol, help="stop a subset-sum MILP once |error| <= tol")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    p.add_argument("--resume", action="store_true", help=resume)
    p.add_argument("--rerun-edge-popup", action="store_true",
                   help="with --resume: keep the CSV's MILP rows, run Edge-Popup again (--ep-sources, --ep-sparsity)")


def sweep_settings(a: argparse.Namespace, sources: tuple[int, int], ep_sources: tuple[int, int]):
    """(MILP sources, Edge-Popup sources, workers, Edge-Popup sparsities) from add_sweep_args'
    options, their defaults and --quick; also sets torch's thread count."""
    if a.threads:
        torch.set_num_threads(a.threads)
    q = 1 if a.quick else 0
    return (sources[q] if a.sources is None else a.sources, ep_sources[q] if a.ep_sources is None else a.ep_sources,
            (1 if a.quick else 2) if a.workers is None else a.workers,
            float_list(a.ep_sparsity) if a.ep_sparsity else ([0.9] if a.quick else list(EP_SPARSITY)))


def read_rows(path: Path, ints: tuple[str, ...], floats: tuple[str, ...]) -> list[dict]:
    """A sweep's results CSV, typed back, without the rows of failed points (--resume runs them again).
    Edge-Popup rows of CSVs written before the sparsity column get 0.5, the setting they ran at."""
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != FAILURE} | {k: int(r[k]) for k in ints}
                | {k: float(r[k]) for k in floats}
                | {"sparsity": float(r["sparsity"]) if r.get("sparsity") else
                   (0.5 if r["method"] == "edge_popup" else "")}
                for r in csv.DictReader(f) if not r.get(FAILURE)]


def _key(r: dict) -> tuple:
    return r["method"], r["n"], r["source"], r["sparsity"] if r["method"] == "edge_popup" else ""


def _mha_task(c: dict, task: tuple) -> dict:
    """One source: Edge-Popup or the MILP construction; c holds the target and the data (shipped once
    to every worker process or Ray task)."""
    kind, n, s, sp = task
    if kind == "edge_popup":
        err = edge_popup(source(n, seed=1000 + s, sparsity=sp), c["tgt"], c["x_train"], c["x_test"], c["steps"],
                         seed=s)
        return {"method": "edge_popup", "n": n, "source": s, "error": err, "error_reg_token": "", "sparsity": sp}
    src = source(n, seed=1000 + s)
    masks = milp_masks(src, c["tgt"], c["time_limit"], c["tol"])
    with torch.no_grad():
        pred = source_output(src, masks, c["x_test"])
    return {"method": "milp", "n": n, "source": s, "error": error(pred, c["ref"]),
            "error_reg_token": error(pred[:, 0], c["ref"][:, 0]), "sparsity": ""}


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
    add_sweep_args(p, out="paper-out/mha_slt", sources=SOURCES, ep_sources=EP_SOURCES, tol=1e-5,
                   resume="continue --out/results.csv: run only the points missing from it (none when it is "
                          "complete), then refit, T sweep, plots")
    a = p.parse_args(argv)
    check_engine_args(p, a)
    sources, ep_sources, workers, ep_sps = sweep_settings(a, SOURCES, EP_SOURCES)
    if a.quick:
        ns, ep_ns, lens, epochs, samples, steps, n_test = [8, 16, 32], [16], [4, 64], 3, 2000, 60, 200
    else:
        ns, ep_ns, lens, epochs, samples, steps, n_test = \
            [4, 8, 12, 16, 20, 30, 40, 60, 80, 100], [20, 40, 60, 100], [4, 16, 64, 256, 1024, 4096], 25, 10000, \
            400, 1000
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tgt = train_target(epochs, samples)
    print(f"target MHA: test MSE {tgt['test_mse']:.4f} (predicting the mean: {tgt['mean_mse']:.4f}) on angular "
          f"velocity (T = {T_TRAIN})", flush=True)
    w = {k: tgt[k] for k in ("wq", "wk", "wv", "wo")}
    test = data.angular_velocity(num_samples=n_test, seq_len=T_TRAIN, seed=1)
    x_test, x_train = embed(test.test.x, tgt["pos"]), embed(test.train.x, tgt["pos"])
    ref = attention(x_test, **w, scale=1 / math.sqrt(D_K))
    ctx = {"tgt": tgt, "x_train": x_train, "x_test": x_test, "ref": ref, "steps": steps, "time_limit": a.time_limit,
           "tol": a.tol}
    tasks = [("edge_popup", n, s, sp) for sp in ep_sps for n in ep_ns for s in range(ep_sources)]  # long first
    tasks += [("milp", n, s, None) for n in ns for s in range(sources)]
    csv_path = out / "results.csv"
    kept = read_rows(csv_path, ints=("n", "source"), floats=("error",)) if a.resume and csv_path.exists() else []
    if a.rerun_edge_popup:
        kept = [r for r in kept if r["method"] != "edge_popup"]
    todo = pending(tasks, kept, lambda t: [_key(dict(zip(("method", "n", "source", "sparsity"), t, strict=True)))],
                   _key)
    rows = run_points(functools.partial(_mha_task, ctx), todo, a, workers, csv_path, kept,
                      lambda t, e: {"method": t[0], "n": t[1], "source": t[2], "sparsity": t[3] or "", FAILURE: e},
                      "n sweep")
    if report_failures(rows, csv_path):
        return 1
    if todo:
        print(f"n sweep: {len(todo)} points in {time.perf_counter() - t0:.0f} s ({workers} workers, {a.engine})",
              flush=True)
    ns = sorted({r["n"] for r in rows if r["method"] == "milp"})
    ep_ns = sorted({r["n"] for r in rows if r["method"] == "edge_popup"})
    ep_sps = sorted({r["sparsity"] for r in rows if r["method"] == "edge_popup"})
    for n in ns:
        m = [r["error"] for r in rows if r["method"] == "milp" and r["n"] == n]
        print(f"n={n:<4} milp error {np.mean(m):.5f} ± {np.std(m):.5f} ({len(m)} sources)", flush=True)
    rows = sorted(rows, key=lambda r: (r["method"] != "milp", r["n"], r["source"]))
    write_csv(rows, out / "results.csv")
    milp_rows = [r for r in rows if r["method"] == "milp"]
    mean = np.array([np.mean([r["error"] for r in milp_rows if r["n"] == n]) for n in ns])
    std = np.array([np.std([r["error"] for r in milp_rows if r["n"] == n]) for n in ns])
    med = np.array([np.median([r["error"] for r in milp_rows if r["n"] == n]) for n in ns])
    zero = float(ref.abs().mean())  # the error of an empty mask (output 0), for scale
    gamma, delta = fit(np.array(ns, float), mean)
    # error against the sequence length T for fixed masks (the middle swept dim's first source)
    n_fix = ns[len(ns) // 2]
    src = source(n_fix, seed=1000)
    masks = milp_masks(src, tgt, a.time_limit, a.tol)
    seq_rows = []
    for t in lens:
        xs = embed(data.angular_velocity(num_samples=200 if t <= 1024 else 50, seq_len=t, seed=2).test.x, tgt["pos"])
        chunk = max(1, int(2.5e8 // (t + 1) ** 2))  # bound the (B, T, T) logits to ~1 GB
        total = 0.0
        with torch.no_grad():
            for xc in xs.split(chunk):
                ref_c = attention(xc, **w, scale=1 / math.sqrt(D_K))
                total += error(source_output(src, masks, xc), ref_c) * xc.shape[0]
        seq_rows.append({"T": t, "n": n_fix, "error": total / xs.shape[0]})
    write_csv(seq_rows, out / "seq_len.csv")
    ep = {(sp, n): [r["error"] for r in rows if r["method"] == "edge_popup" and r["n"] == n and r["sparsity"] == sp]
          for sp in ep_sps for n in ep_ns}
    w_qk, w_vo = merged(*w.values())
    srcs = max(len([r for r in milp_rows if r["n"] == n]) for n in ns)
    lines = [f"target test MSE {tgt['test_mse']:.4f} (omega units; predicting the mean {tgt['mean_mse']:.4f})",
             f"target merged W_QK {np.round(w_qk, 3).tolist()}  W_VO {np.round(w_vo, 3).ravel().tolist()}",
             f"mean |target output| {zero:.4f} (the error of all-empty masks)",
             f"fit (MILP): eps = {gamma:.3f} * exp(-{delta:.4f} n)   paper: {PAPER[0]} * exp(-{PAPER[1]} n)",
             *(f"n={n}: milp {mu:.6f} ± {sd:.6f} (median {md:.6f}; {srcs} sources)"
               for n, mu, sd, md in zip(ns, mean, std, med, strict=True)),
             *(f"n={n}: edge-popup ({100 * (1 - sp):.0f} % kept) {np.mean(v):.5f} ± {np.std(v):.5f} "
               f"({len(v)} sources)" for (sp, n), v in ep.items() if v),
             *(f"T={r['T']}: error {r['error']:.5f} (n={n_fix}, fixed masks)" for r in seq_rows)]
    (out / "fit.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(ns, mean, std, med, gamma, delta, ep, seq_rows, out, srcs, zero)
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


def plot(ns, mean, std, med, gamma, delta, ep, seq_rows, out: Path, srcs: int, zero: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.4, 4.2), dpi=90)
    ax.errorbar(ns, mean, yerr=std, fmt="o", capsize=3, label=f"MILP subset sums (mean ± std, {srcs} sources)")
    ax.plot(ns, med, "x", color="C0", label="MILP, median")
    fitted = [n for n, m in zip(ns, mean, strict=True) if m > FLOOR]
    xs = np.linspace(min(fitted), max(fitted), 100)
    ax.plot(xs, gamma * np.exp(-delta * xs), "-", label=f"fit {gamma:.2f}·exp(−{delta:.3f}n) (mean > {FLOOR:g})")
    xs = np.linspace(min(ns), max(ns), 100)
    ax.plot(xs, PAPER[0] * np.exp(-PAPER[1] * xs), "--", color="gray", label="paper 0.8·exp(−0.06n)")
    for i, sp in enumerate(sorted({sp for sp, _ in ep})):
        epn = [n for (s, n), v in ep.items() if s == sp and v]
        if epn:
            ax.errorbar(epn, [np.mean(ep[sp, n]) for n in epn], yerr=[np.std(ep[sp, n]) for n in epn],
                        fmt="sD^v"[i % 4], capsize=3, label=f"Edge-Popup ({100 * (1 - sp):.0f} % kept)")
    ax.axhline(zero, color="k", lw=0.8, ls=":", label="all masks empty (output 0)")
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(1e-7, 0.3 * float(np.min(med))))
    ax.set_xlabel("source hidden dim n = n_K = n_V")
    ax.set_ylabel("mean |output error|")
    ax.set_title("SLTs in MHA: angular velocity, T = 4")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out / "error_vs_n.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
    ax.plot([r["T"] for r in seq_rows], [r["error"] for r in seq_rows], "o-")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    errs = [r["error"] for r in seq_rows]
    ax.set_ylim(min(errs) * 0.2, max(errs) * 20)  # a wide range: the point is that the error stays bounded
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("mean |output error|")
    ax.set_title(f"fixed MILP masks, n = {seq_rows[0]['n']}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "error_vs_T.png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
