"""Weight regeneration throughput of each contract implementation, against copying the same
weights as dense float32 (a clone of the materialised tensor), measured in one run. Fresh outputs
pay page faults on first touch; "reused output" shows the generator alone. "materialize" rows
produce the effective weights of a binary mask (50 % kept) instead of W0: the portable scalar
loop, and the vector weight builder of the ISA the fused kernels run here (what slt_conv2d and
the backward pass use).

    .venv/bin/python bench/bench_regenerate.py [--shapes 4096x4096,11008x4096]
"""

from __future__ import annotations

import argparse
import functools

import torch
from utils import median_seconds, report

from slt_hw import _ext
from slt_hw.contract import default_scale, derive_key
from slt_hw.reference import masks, prng

_BUFFERS: dict[tuple[int, int], torch.Tensor] = {}


def _buffer(n: int, k: int) -> torch.Tensor:
    """One output per shape, touched once: what a tiled kernel does with its cache-sized tile."""
    if (n, k) not in _BUFFERS:
        _BUFFERS[(n, k)] = torch.zeros(n, k)
    return _BUFFERS[(n, k)]


@functools.cache
def _planes(n: int, k: int) -> torch.Tensor:
    """A binary mask keeping half the weights, packed (1, n, words)."""
    return masks.pack_bits(torch.rand(1, n, k, generator=torch.Generator().manual_seed(0)) < 0.5)


def implementations():
    impls = {"reference (torch)": lambda key, n, k, d, s: prng.generate(key, n, k, d, s)}
    if _ext.native() is not None:
        from slt_hw.backends import cpu

        impls["cpp"] = cpu.generate_weights
        impls["cpp, reused output"] = lambda key, n, k, d, s: cpu.generate_weights(key, n, k, d, s, out=_buffer(n, k))
        for isa in ("scalar", cpu.chosen_isa()):
            def mat(key, n, k, d, s, isa=isa):
                return cpu.materialize(_planes(n, k), torch.ones(1), key.k0, key.k1, k, d.code, s, 0, n,
                                       out=_buffer(n, k), isa=isa)

            impls[f"cpp materialize {isa}, reused output"] = mat
    try:
        from slt_hw.sim import rng

        impls["numba"] = lambda key, n, k, d, s: rng.generate_weights(key.k0, key.k1, n, k, d.code, s)
    except ImportError:
        pass
    return impls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="4096x4096,11008x4096")
    ap.add_argument("--dists", default="signed_constant,uniform,normal")
    args = ap.parse_args()
    from slt_hw.contract import Dist

    rows = []
    for shape in args.shapes.split(","):
        n, k = map(int, shape.split("x"))
        key = derive_key(0, "bench")
        for dist in map(Dist.parse, args.dists.split(",")):
            scale = default_scale(dist, k)
            dense = prng.generate(key, n, k, dist, scale)
            base = median_seconds(lambda dense=dense: dense.clone())
            for name, fn in implementations().items():
                def run(fn=fn, dist=dist, scale=scale, key=key, n=n, k=k):
                    return fn(key, n, k, dist, scale)

                t = median_seconds(run, repeat=3)
                rows.append({"shape": f"{n}x{k}", "dist": dist.value, "impl": name, "ms": f"{t * 1e3:.1f}",
                             "Gweights/s": f"{n * k / t / 1e9:.2f}", "dense fp32 read ms": f"{base * 1e3:.1f}",
                             "time vs dense read": f"{t / base:.2f}x"})
    report("regenerate", rows, list(rows[0]))


if __name__ == "__main__":
    main()
