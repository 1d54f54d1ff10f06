"""The CUDA slt_linear of `slt_hw._C` (csrc/cuda/linear.cu) behind torch-tensor wrappers.

Only present when the extension was built with CUDA (`_C.build_info()["cuda_built"]`). The
kernel writes float32; bias and the cast to x's dtype happen here. Launches go on torch's
current stream, so they order with the surrounding torch work.
"""

from __future__ import annotations

import torch

from .. import _ext
from ..contract import OFFSET_BLOCK_WORDS, Dist, Key, check_geometry, check_scale, words_per_row

__all__ = ["ACTIVATIONS", "PATHS", "linear_frozen", "linear_planes"]

ACTIVATIONS = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}  # slt::cuda::Activation
PATHS = {None: 0, "gemv": 1, "gemm": 2}
GEMV_MAX_BATCH = 8


def _module():
    mod = _ext.require()
    if not mod.build_info().get("cuda_built", False):
        raise RuntimeError("slt_hw._C was built without CUDA (needs nvcc and a CUDA-enabled torch at build time)")
    return mod


def _prepare(x: torch.Tensor, k: int, device: torch.device, n: int, rows, bias, path, split_k):
    if not isinstance(x, torch.Tensor) or x.dtype not in ACTIVATIONS:
        raise TypeError(f"x: expected a float32/float16/bfloat16 tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.device != device or device.type != "cuda":
        raise ValueError(f"x: expected a CUDA tensor on the mask's device {device}, got {x.device}")
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"x: expected (..., {k}), got {tuple(x.shape)}")
    r0, r1 = (0, n) if rows is None else rows
    if not 0 <= r0 <= r1 <= n:
        raise ValueError(f"rows: expected 0 <= row_begin <= row_end <= {n}, got ({r0}, {r1})")
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (r1 - r0,)
                             or bias.device != device or not bias.is_floating_point()):
        raise ValueError(f"bias: expected a float ({r1 - r0},) tensor on {device} or None")
    if path not in PATHS:
        raise ValueError(f"path: expected None, 'gemv' or 'gemm', got {path!r}")
    if split_k is not None and split_k < 1:
        raise ValueError(f"split_k: expected >= 1, got {split_k}")
    x2 = x.reshape(-1, k).contiguous()
    if path == "gemv" and x2.shape[0] > GEMV_MAX_BATCH:
        raise ValueError(f"path: the GEMV path takes at most {GEMV_MAX_BATCH} activation rows, got {x2.shape[0]}")
    out = torch.empty(x2.shape[0], r1 - r0, dtype=torch.float32, device=device)
    b = None if bias is None else bias.to(torch.float32).contiguous()
    return x2, out, b, (r0, r1)


def _common(x2, out, b, n, k, key, dist, scale, rows, path, split_k):
    return dict(x=x2.data_ptr(), act=ACTIVATIONS[x2.dtype], M=x2.shape[0], ldx=k, out=out.data_ptr(),
                bias=0 if b is None else b.data_ptr(), n=n, k=k, k0=key.k0, k1=key.k1, dist=dist.code,
                scale=scale, row_begin=rows[0], row_end=rows[1], path=PATHS[path],
                split_k=0 if split_k is None else split_k, stream=torch.cuda.current_stream(x2.device).cuda_stream)


def linear_planes(x, planes, coat_scales, bias, key: Key, in_features: int, dist, scale: float, *, rows=None,
                  path: str | None = None, split_k: int | None = None) -> torch.Tensor:
    """y = x @ W_eff[rows]ᵀ + bias (binary / multicoat), in x's dtype."""
    dist = Dist.parse(dist)
    s = check_scale(scale)
    if planes.dim() == 2:
        planes = planes.unsqueeze(0)
    n = planes.shape[1]
    check_geometry(n, in_features)
    w = words_per_row(in_features)
    if planes.dtype != torch.int32 or planes.dim() != 3 or planes.shape[2] != w:
        raise ValueError(f"planes: expected int32 (C, {n}, {w}), got {planes.dtype} {tuple(planes.shape)}")
    c = planes.shape[0]
    if coat_scales.dtype != torch.float32 or tuple(coat_scales.shape) != (c,) or coat_scales.device != planes.device:
        raise ValueError(f"coat_scales: expected float32 ({c},) on {planes.device}")
    x2, out, b, r = _prepare(x, in_features, planes.device, n, rows, bias, path, split_k)
    planes = planes.contiguous()
    coat_scales = coat_scales.contiguous()
    _module().cuda_linear(**_common(x2, out, b, n, in_features, key, dist, s, r, path, split_k), frozen=False,
                          planes=planes.data_ptr(), C=c, coat_scales=coat_scales.data_ptr(), free_bits=0,
                          free_words=0, offsets=0, fk0=0, fk1=0, prune_thr=0, lock_thr=0)
    return out.to(x.dtype).reshape(*x.shape[:-1], r[1] - r[0])


def linear_frozen(x, free_bits, offsets, bias, key: Key, fkey: Key, in_features: int, dist, scale: float,
                  prune_thr: int, lock_thr: int, *, rows=None, path: str | None = None,
                  split_k: int | None = None) -> torch.Tensor:
    """y = x @ W_eff[rows]ᵀ + bias (partially frozen), in x's dtype."""
    dist = Dist.parse(dist)
    s = check_scale(scale)
    if not 0 <= prune_thr <= lock_thr <= 65536:
        raise ValueError(f"prune_thr/lock_thr: expected 0 <= P <= P + L <= 65536, got {prune_thr}, {lock_thr}")
    if free_bits.dtype != torch.int32:
        raise ValueError(f"free_bits: expected int32 words, got {free_bits.dtype}")
    n = offsets.shape[0]
    check_geometry(n, in_features)
    nb = -(-words_per_row(in_features) // OFFSET_BLOCK_WORDS)
    if offsets.dtype != torch.int64 or tuple(offsets.shape) != (n, nb) or offsets.device != free_bits.device:
        raise ValueError(f"offsets: expected int64 ({n}, {nb}) on {free_bits.device}, got {tuple(offsets.shape)}")
    x2, out, b, r = _prepare(x, in_features, free_bits.device, n, rows, bias, path, split_k)
    free_bits = free_bits.reshape(-1).contiguous()
    offsets = offsets.contiguous()
    _module().cuda_linear(**_common(x2, out, b, n, in_features, key, dist, s, r, path, split_k), frozen=True,
                          planes=0, C=0, coat_scales=0, free_bits=free_bits.data_ptr(),
                          free_words=free_bits.numel(), offsets=offsets.data_ptr(), fk0=fkey.k0, fk1=fkey.k1,
                          prune_thr=prune_thr, lock_thr=lock_thr)
    return out.to(x.dtype).reshape(*x.shape[:-1], r[1] - r[0])
