"""Random packed weights of every format for the kernel tests: one factory instead of a copy per file."""

from __future__ import annotations

import dataclasses
import math
import zlib

import torch

from slt_hw import pack_binary, pack_frozen, pack_multicoat

FORMATS = ("binary", "multicoat", "frozen")


def random_packed(fmt: str, dist: str, n: int, k: int, *, seed: int = 3, name: str = "w",
                  coat_scales: tuple[float, ...] = (0.75, 1.5, -0.5), device: str | torch.device = "cpu"):
    """An (n, k) packed weight: a 50 % binary mask, multicoat levels 0..len(coat_scales), or a
    partially frozen source (p_prune 0.3, p_lock 0.2). The mask is a function of (name, n, k, seed)
    (crc32, not hash(): the same data in every process)."""
    g = torch.Generator().manual_seed(zlib.crc32(f"{name}/{n}/{k}/{seed}".encode()))
    if fmt == "binary":
        pw = pack_binary(torch.rand(n, k, generator=g) < 0.5, seed=seed, name=name, dist=dist)
    elif fmt == "multicoat":
        c = len(coat_scales)
        pw = pack_multicoat(torch.randint(0, c + 1, (n, k), generator=g), c, seed=seed, name=name, dist=dist,
                            coat_scales=torch.tensor(coat_scales))
    elif fmt == "frozen":
        pw = pack_frozen(torch.rand(n, k, generator=g) < 0.5, seed=seed, name=name, p_prune=0.3, p_lock=0.2,
                         dist=dist)
    else:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    return pw.to(device)


def random_conv_packed(fmt: str, dist: str, shape: tuple[int, int, int, int], *, seed: int = 3, name: str = "conv"):
    """A conv weight (out, in/groups, kh, kw): random_packed's (out, in/groups·kh·kw) masks."""
    p = random_packed(fmt, dist, shape[0], math.prod(shape[1:]), seed=seed, name=name)
    return dataclasses.replace(p, shape=tuple(shape))
