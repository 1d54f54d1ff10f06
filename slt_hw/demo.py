"""`slt-hw demo`: a small SLT MLP in all three mask formats, checked on every backend."""

from __future__ import annotations

import time

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


def run_demo(console: Console, seed: int = 0) -> int:
    weights = build_mlp(seed)
    console.print(f"[bold]slt_hw demo[/bold]: a {'-'.join(str(i) for _, _, i in LAYERS)}-10 SLT MLP, "
                  f"seed {seed}; weights regenerated from the seed, only masks stored")
    x = torch.randn(33, LAYERS[0][2], generator=torch.Generator().manual_seed(seed + 1))

    def forward(fn):
        h = x
        for i, p in enumerate(weights):
            h = fn(h, p)
            if i < len(weights) - 1:
                h = torch.relu(h)
        return h

    ref = forward(slt_linear_reference)
    checks = Table(title="packed forward vs the reference (batch 33)")
    for col in ("device", "backend", "max |Δ|", "time", "result"):
        checks.add_column(col)
    ok = True
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        for name, why in dispatch.reasons(dev, "linear_planes").items():
            if why:
                continue
            layers = [SLTPackedLinear(p.to(dev), backend=name) for p in weights]

            def run(layers=layers, dev=dev):
                h = x.to(dev)
                for i, layer in enumerate(layers):
                    h = layer(h)
                    h = torch.relu(h) if i < len(layers) - 1 else h
                return h

            run()  # first call pays one-time op registration and kernel set-up
            t0 = time.perf_counter()
            h = run()
            dt = time.perf_counter() - t0
            err = (h.cpu() - ref).abs().max().item()
            good = err <= TOLERANCE * max(1.0, ref.abs().max().item())
            ok &= good
            checks.add_row(dev.type, name, f"{err:.2e}", f"{dt * 1e3:.1f} ms",
                           "[green]ok[/green]" if good else "[red]MISMATCH[/red]")
    # the functional op with the automatic backend, too
    auto = forward(lambda h, p: slt_linear(h, p))
    ok &= bool(torch.allclose(auto, ref, atol=TOLERANCE, rtol=TOLERANCE))
    console.print(checks)
    console.print(memory_table(weights))
    skipped = {n: w for n, w in dispatch.reasons("cpu", "linear_planes").items() if w}
    for n, why in skipped.items():
        console.print(f"[dim]cpu backend {n} not run: {'; '.join(why)}[/dim]")
    console.print("[green]all backends agree with the reference[/green]" if ok else "[red]mismatch[/red]")
    return 0 if ok else 1
