"""`slt-hw demo`: the package's story in about a minute on a CPU — find supermasks in the three formats
on Fashion-MNIST (digits when its files are missing), pack one, run it on every backend against the
reference, show its memory, simulate it on the SLT accelerator against a dense chip, write the plots."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from . import dispatch
from .formats import PackedWeight, pack_binary, pack_frozen, pack_multicoat
from .nn import SLTPackedLinear
from .ops import slt_linear, slt_linear_reference

# (name, out, in): odd widths on purpose (in_features not a multiple of 32)
LAYERS = [("fc1", 257, 100), ("fc2", 129, 257), ("fc3", 10, 129)]
TOLERANCE = 1e-4  # float32 GEMMs in different reduction orders


def _top_fraction(scores: torch.Tensor, density: float) -> torch.Tensor:
    """Edge-Popup style: keep the `density` fraction of largest |score| (scores, not weights)."""
    k = max(1, int(density * scores.numel()))
    thr = scores.abs().flatten().kthvalue(scores.numel() - k + 1).values
    return scores.abs() >= thr


def build_mlp(seed: int) -> list[PackedWeight]:
    """One layer per mask format; masks from random scores standing in for a trained search."""
    g = torch.Generator().manual_seed(seed)
    (n1, o1, i1), (n2, o2, i2), (n3, o3, i3) = LAYERS
    s1, s2, s3 = (torch.randn(o, i, generator=g) for _, o, i in LAYERS)
    levels = _top_fraction(s2, 0.5).long() + _top_fraction(s2, 0.2).long() + _top_fraction(s2, 0.05).long()
    return [
        pack_binary(_top_fraction(s1, 0.5), seed=seed, name=n1, dist="signed_constant"),
        pack_multicoat(levels, 3, seed=seed, name=n2, dist="signed_constant"),
        pack_frozen(_top_fraction(s3, 0.5), seed=seed, name=n3, p_prune=0.5, p_lock=0.2, dist="uniform"),
    ]


def memory_table(weights: list[PackedWeight]) -> Table:
    t = Table(title="weight memory: packed SLT vs dense")
    for col in ("layer", "shape", "format", "bits/weight", "mask", "dense fp32", "dense bf16", "vs fp32"):
        t.add_column(col, justify="right" if col not in ("layer", "format") else "left")
    tot_bits = tot_n = 0
    for p in weights:
        n = p.out_features * p.in_features
        bits = p.mask_bits() + 64  # + the 64-bit seed; the name and scale are metadata
        tot_bits, tot_n = tot_bits + bits, tot_n + n
        t.add_row(p.name, "×".join(map(str, p.shape)), p.format.value, f"{bits / n:.3f}",
                  _kib(bits), _kib(32 * n), _kib(16 * n), f"{32 * n / bits:.1f}×")
    t.add_row("total", "", "", f"{tot_bits / tot_n:.3f}", _kib(tot_bits), _kib(32 * tot_n), _kib(16 * tot_n),
              f"{32 * tot_n / tot_bits:.1f}×", style="bold")
    return t


def _kib(bits: int) -> str:
    return f"{bits / 8192:.2f} KiB"


@contextlib.contextmanager
def _forced_backend(name: str):
    old = os.environ.get(dispatch.ENV_VAR)
    os.environ[dispatch.ENV_VAR] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(dispatch.ENV_VAR, None)
        else:
            os.environ[dispatch.ENV_VAR] = old


def _check_backends(console: Console, model: torch.nn.Module, x: torch.Tensor, want: torch.Tensor) -> bool:
    """The packed model on every backend that can run here, against the search model's eval output."""
    checks = Table(title=f"packed forward on each backend vs the search model (batch {x.shape[0]})")
    for col in ("device", "backend", "max |Δ|", "time", "result"):
        checks.add_column(col)
    ok = True
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        for name, why in dispatch.reasons(dev, "linear_planes").items():
            if why:
                continue
            m = model.to(dev)
            with _forced_backend(name), torch.no_grad():
                m(x.to(dev))  # first call pays one-time op registration and kernel set-up
                t0 = time.perf_counter()
                y = m(x.to(dev)).cpu()
                dt = time.perf_counter() - t0
            err = (y - want).abs().max().item()
            good = err <= TOLERANCE * max(1.0, want.abs().max().item())
            ok &= good
            checks.add_row(dev.type, name, f"{err:.2e}", f"{dt * 1e3:.1f} ms",
                           "[green]ok[/green]" if good else "[red]MISMATCH[/red]")
    model.to("cpu")
    console.print(checks)
    for name, why in dispatch.reasons("cpu", "linear_planes").items():
        if why:
            console.print(f"[dim]cpu backend {name} not run: {'; '.join(why)}[/dim]")
    return ok


def _formats_check(console: Console, seed: int) -> bool:
    """The three mask formats on one small MLP: every backend equals the reference; their sizes."""
    weights = build_mlp(seed)
    x = torch.randn(33, LAYERS[0][2], generator=torch.Generator().manual_seed(seed + 1))

    def forward(fn):
        h = x
        for i, p in enumerate(weights):
            h = fn(h, p)
            h = torch.relu(h) if i < len(weights) - 1 else h
        return h

    ref = forward(slt_linear_reference)
    ok = bool(torch.allclose(forward(lambda h, p: slt_linear(h, p)), ref, atol=TOLERANCE, rtol=TOLERANCE))
    for name, why in dispatch.reasons("cpu", "linear_planes").items():
        if not why:
            got = forward(lambda h, p, name=name: SLTPackedLinear(p, backend=name)(h))
            ok &= bool(torch.allclose(got, ref, atol=TOLERANCE, rtol=TOLERANCE))
    console.print(memory_table(weights))
    return ok


def _simulate(console: Console, model: torch.nn.Module, x: torch.Tensor, out: Path, name: str) -> list[Path]:
    from slt_hw.sim import report
    from slt_hw.sim.config import load_design
    from slt_hw.sim.engine import simulate
    from slt_hw.sim.workload import from_model

    w = from_model(model, (x,), name=name)
    # the preset stores 0.5 mask bit per weight (Hiddenite's supermask expansion); simulate the masks
    # this model actually has
    h = load_design("hiddenite").replace({"mask_memory.binary": None, "name": "hiddenite"})
    designs = [h, load_design("dense-4k")]
    results = [simulate(d, w) for d in designs]
    rows = [report.summary(d, w, r) for d, r in zip(designs, results, strict=True)]
    console.print(report.comparison_table(rows, "dense-4k"))
    console.print(report.energy_table(rows))
    return [report.write_csv(rows, out / "sim.csv"), report.plot_energy(rows, out / "sim-energy.png"),
            report.plot_memory(rows, out / "sim-memory.png")]


def demo_dataset(console: Console, root: str | None = None) -> str:
    """Fashion-MNIST when its files are under the data root, else digits (saying why)."""
    from . import datasets

    try:
        datasets.fashion_mnist_arrays(root)
        return "fashion-mnist"
    except (OSError, ValueError) as e:
        console.print(f"[yellow]Fashion-MNIST not available ({e}); the demo runs on digits[/yellow]",
                      highlight=False)
        return "digits"


def run_demo(console: Console, seed: int = 0, out: str | Path = "demo-out", epochs: int | None = None,
             dataset: str | None = None) -> int:
    """find (all three mask formats) → pack → run on every backend → memory → simulate, in about a minute
    on a CPU. dataset: fashion-mnist (real images, one epoch per format by default) or digits (five)."""
    from .checkpoint import load
    from .memory import memory_report
    from .train import FindConfig, evaluate, find, load_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = dataset or demo_dataset(console)
    epochs = (1 if dataset == "fashion-mnist" else 5) if epochs is None else epochs  # 0 is refused by find
    console.print(f"[bold]slt_hw demo[/bold]: strong lottery tickets on {dataset}, seed {seed}. The weights are "
                  "regenerated from the seed; only the supermask is learned and stored.")

    console.rule(f"1. find supermasks in all three formats ({epochs} epoch(s) each; the random weights are never "
                 "trained)")
    runs = {}
    for method, what in (("edge_popup", "binary, Edge-Popup, 50 % kept"),
                         ("multicoat", "multicoat, 3 adaptive coats, coat 1 at 50 %"),
                         ("frozen", "partially frozen: 30 % pruned + 10 % locked by the seed, 50 % kept")):
        console.print(f"[bold]{method}[/bold]: {what}")
        cfg = FindConfig(dataset=dataset, method=method, sparsity=0.5, epochs=epochs, hidden=256, seed=seed,
                         out=str(out / f"{dataset}-{method}.slt"))
        runs[method] = (cfg, find(cfg, console))
    t = Table(title=f"three mask formats on {dataset} (MLP, 2 hidden layers of 256)")
    for col in ("format", "test accuracy", "checkpoint bytes", "payload bits/weight", "search time"):
        t.add_column(col, justify="left" if col == "format" else "right")
    for method, (_, res) in runs.items():
        rep = memory_report(res.model)
        n = sum(e.weights for e in rep.layers)
        t.add_row(method, f"{res.test_metric:.4f}", f"{res.saved.bytes_on_disk:,}", f"{rep.payload_bits / n:.3f}",
                  f"{res.seconds:.1f} s")
    console.print(t)

    console.rule("2. pack: seeds + bit-packed masks, reloaded and verified from the checkpoint")
    cfg, res = runs["edge_popup"]
    packed = load(cfg.out)
    ds = load_dataset(cfg)
    acc = evaluate(packed, ds, ds.test)
    console.print(f"checkpoint {res.saved.bytes_on_disk:,} bytes on disk; test accuracy packed {acc:.4f}, "
                  f"search model {res.test_metric:.4f}")

    console.rule("3. run it: the packed model on every available backend")
    x = ds.test.x
    with torch.no_grad():
        want = res.model.eval()(x)
    ok = _check_backends(console, packed, x, want)

    console.rule("4. memory: what is stored, against dense weights")
    console.print(memory_report(packed).table())
    ok &= _formats_check(console, seed)

    console.rule("5. simulate: the model on the Hiddenite-class SLT accelerator vs a dense chip")
    files = [Path(c.out) for c, _ in runs.values()] + _simulate(console, packed, x[:1], out, f"{dataset}-mlp")

    console.print("[green]all backends agree with the reference[/green]" if ok else "[red]mismatch[/red]")
    console.print(f"outputs in {out.resolve()}: " + ", ".join(f.name for f in files))
    return 0 if ok else 1
