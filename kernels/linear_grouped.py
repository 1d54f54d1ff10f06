"""Several slt_linear projections of one input in one launch (attention's Q/K/V, or K/V).

y = x @ [W_0; W_1; W_2]ᵀ: each weight keeps its own seed, name, mask and scale (its own contract
counters), only the launch is shared. A grid axis picks the weight; its scalars come from a
small int32 table (so every program sees the same argument types) and its mask tensors from a
branch over at most three pointer sets. The tile bodies are the single-weight kernels' own
(`_gemv_tile`, `_gemm_tile`), so the arithmetic, and the results, are theirs.

The weights must share the input width, format, distribution and coat count (constexprs of
the tile body); slt_hw.mha falls back to one launch per projection otherwise.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from slt_hw.contract import OFFSET_BLOCK_WORDS, WORD_BITS, Dist, words_per_row
from slt_hw.formats import Format, PackedWeight

from .linear import (
    GEMV_MAX_BATCH,
    _gemm_tile,
    _gemv_plan,
    _gemv_tile,
    _reduce_splits,
    _select,
    check_interpreter_dot,
)
from .materialize import _const, _table

__all__ = ["MAX_GROUPS", "groupable", "linear_grouped"]

MAX_GROUPS = 3
_META = 10  # int32 fields per weight: k0 k1 fk0 fk1 scale(bits) prune lock rows out_col plane_stride


@triton.jit
def _weight_args(g, meta_ptr, coat_ptr, planes0, planes1, planes2, bits0, bits1, bits2, offs0, offs1, offs2,
                 C: tl.constexpr):
    meta = meta_ptr + g * 10
    k0 = tl.load(meta + 0).to(tl.uint32, bitcast=True)
    k1 = tl.load(meta + 1).to(tl.uint32, bitcast=True)
    fk0 = tl.load(meta + 2).to(tl.uint32, bitcast=True)
    fk1 = tl.load(meta + 3).to(tl.uint32, bitcast=True)
    scale = tl.load(meta + 4).to(tl.float32, bitcast=True)
    prune = tl.load(meta + 5)
    lock = tl.load(meta + 6)
    rows = tl.load(meta + 7)
    col = tl.load(meta + 8)
    plane_stride = tl.load(meta + 9)
    planes, bits, offs = planes0, bits0, offs0
    if g == 1:
        planes, bits, offs = planes1, bits1, offs1
    if g == 2:
        planes, bits, offs = planes2, bits2, offs2
    return k0, k1, fk0, fk1, scale, prune, lock, rows, col, plane_stride, planes, coat_ptr + g * C, bits, offs


@triton.jit
def _gemv_grouped_kernel(
    x_ptr, out_ptr, bias_ptr, table_ptr, meta_ptr, coat_ptr,
    planes0, planes1, planes2, bits0, bits1, bits2, offs0, offs1, offs2,
    M, K, Kp, W, NB, K_PER_SPLIT, RMAX,
    stride_xm, stride_os, stride_om,
    DIST: tl.constexpr, FROZEN: tl.constexpr, C: tl.constexpr, HAS_BIAS: tl.constexpr, UNIT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    g = tl.program_id(2)
    k0, k1, fk0, fk1, scale, prune, lock, R, col, pstride, planes, coat, bits, offs = _weight_args(
        g, meta_ptr, coat_ptr, planes0, planes1, planes2, bits0, bits1, bits2, offs0, offs1, offs2, C)
    if pid_n * BLOCK_N < R:  # the grid is sized for the widest weight
        _gemv_tile(pid_n, tl.program_id(1), x_ptr, out_ptr + col, bias_ptr + col, table_ptr, planes, coat, bits, offs,
                   M, K, Kp, W, NB, 0, R, R, pstride, K_PER_SPLIT, stride_xm, stride_os, stride_om,
                   k0, k1, scale, fk0, fk1, prune, lock, DIST, FROZEN, C, HAS_BIAS, UNIT, BLOCK_M, BLOCK_N, BLOCK_K)


@triton.jit
def _gemm_grouped_kernel(
    x_ptr, out_ptr, bias_ptr, table_ptr, meta_ptr, coat_ptr,
    planes0, planes1, planes2, bits0, bits1, bits2, offs0, offs1, offs2,
    M, K, Kp, W, NB, RMAX,
    stride_xm, stride_om,
    DIST: tl.constexpr, FROZEN: tl.constexpr, C: tl.constexpr, HAS_BIAS: tl.constexpr, UNIT: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid = tl.program_id(0)
    g = tl.program_id(1)
    k0, k1, fk0, fk1, scale, prune, lock, R, col, pstride, planes, coat, bits, offs = _weight_args(
        g, meta_ptr, coat_ptr, planes0, planes1, planes2, bits0, bits1, bits2, offs0, offs1, offs2, C)
    if pid < tl.cdiv(M, BLOCK_M) * tl.cdiv(R, BLOCK_N):
        _gemm_tile(pid, x_ptr, out_ptr + col, bias_ptr + col, table_ptr, planes, coat, bits, offs,
                   M, K, Kp, W, NB, 0, R, R, pstride, stride_xm, stride_om,
                   k0, k1, scale, fk0, fk1, prune, lock,
                   DIST, FROZEN, C, HAS_BIAS, UNIT, PRECISION, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M)


def _kernel(name: str):
    return _select(name, _gemv_grouped_kernel, _gemm_grouped_kernel, rows_arg="RMAX")


def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _f32_bits(v: float) -> int:
    return struct.unpack("<i", struct.pack("<f", v))[0]


def _content_key(t: torch.Tensor | None):
    """What identifies a tensor's current contents: storage, in-place version, layout. None when
    that cannot be known (an inference tensor keeps no version counter)."""
    if t is None:
        return ()
    if t.is_inference():
        return None
    return (t.data_ptr(), t._version, t.dtype, tuple(t.shape), t.stride())


_TABLES: OrderedDict[tuple, tuple] = OrderedDict()
_TABLES_MAX = 64


def _tables(packed, biases, frozen: bool, w: int, device: torch.device):
    """The launch's small device tables: per-weight scalars (int32), coat scales and biases
    (float32, concatenated; bias None if there is none). Built once per distinct set of weights
    and biases, then reused: rebuilding them would cost an H2D copy plus two or three launches
    per call, as many as the projection itself at decode. The key holds every scalar and the
    contents key (storage, version) of every copied tensor, so an in-place change to a bias or a
    coat scale rebuilds them; the entry keeps those tensors alive so their storage cannot be
    reused under the same key."""
    meta, ns = [], []
    for p in packed:
        fk = p.freeze_key if frozen else p.key
        meta += [_i32(p.key.k0), _i32(p.key.k1), _i32(fk.k0), _i32(fk.k1), _f32_bits(p.scale),
                 p.prune_threshold if frozen else 0, p.lock_threshold if frozen else 0, p.out_features,
                 sum(ns), 0 if frozen else p.out_features * w]
        ns.append(p.out_features)
    sources = [] if frozen else [p.coat_scales for p in packed]
    sources += [b for b in biases if b is not None]
    contents = tuple(_content_key(t) for t in sources)
    key = (device, frozen, tuple(meta), tuple(b is not None for b in biases), contents)
    cacheable = None not in contents
    hit = _TABLES.get(key) if cacheable else None
    if hit is not None:
        _TABLES.move_to_end(key)
        return hit[:3]
    meta_t = torch.tensor(meta, dtype=torch.int32).to(device, non_blocking=True)
    coat_t = (_const(device, torch.float32, 1.0).expand(len(packed)).contiguous() if frozen
              else torch.cat([p.coat_scales for p in packed]).contiguous())
    bias_t = None
    if any(b is not None for b in biases):
        bias_t = torch.cat([torch.zeros(n, device=device) if b is None else b.to(torch.float32)
                            for b, n in zip(biases, ns, strict=True)])
    if cacheable:
        _TABLES[key] = (meta_t, coat_t, bias_t, sources)
        if len(_TABLES) > _TABLES_MAX:
            _TABLES.popitem(last=False)
    return meta_t, coat_t, bias_t


def groupable(packed: Sequence[PackedWeight]) -> str | None:
    """None if `packed` can share one launch, else why not."""
    if not 1 <= len(packed) <= MAX_GROUPS:
        return f"expected 1 to {MAX_GROUPS} weights, got {len(packed)}"
    p0 = packed[0]
    for p in packed[1:]:
        for what in ("in_features", "format", "dist", "num_coats", "device"):
            if getattr(p, what) != getattr(p0, what):
                return f"{what} differs ({getattr(p0, what)} vs {getattr(p, what)})"
    return None


def linear_grouped(x: torch.Tensor, packed: Sequence[PackedWeight],
                   biases: Sequence[torch.Tensor | None] | None = None, *, path: str | None = None,
                   split_k: int | None = None) -> torch.Tensor:
    """[x W_0ᵀ + b_0, x W_1ᵀ + b_1, …] concatenated on the last axis, in one launch.

    x: (..., in_features) float32/float16/bfloat16 on the weights' device; returns
    (..., Σ out_features) in x's dtype. path: force "gemv" or "gemm" (default by batch size)."""
    packed = list(packed)
    if not all(isinstance(p, PackedWeight) for p in packed):
        raise TypeError("packed: expected a sequence of slt_hw.PackedWeight")
    why = groupable(packed)
    if why is not None:
        raise ValueError(f"packed: these weights cannot share a launch: {why}")
    biases = [None] * len(packed) if biases is None else list(biases)
    if len(biases) != len(packed):
        raise ValueError(f"biases: expected {len(packed)} entries (tensor or None), got {len(biases)}")
    if path not in (None, "gemv", "gemm"):
        raise ValueError(f"path: expected None, 'gemv' or 'gemm', got {path!r}")
    p0 = packed[0]
    device, k = p0.device, p0.in_features
    if not isinstance(x, torch.Tensor) or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"x: expected a float32/float16/bfloat16 tensor, got {getattr(x, 'dtype', type(x))}")
    if x.dim() < 1 or x.shape[-1] != k or x.device != device:
        raise ValueError(f"x: expected (..., {k}) on {device}, got {tuple(x.shape)} on {x.device}")
    ns = [p.out_features for p in packed]
    for i, (b, n) in enumerate(zip(biases, ns, strict=True)):
        if b is not None and (not isinstance(b, torch.Tensor) or tuple(b.shape) != (n,) or b.device != device):
            raise ValueError(f"biases[{i}]: expected a ({n},) tensor on {device}, got {getattr(b, 'shape', b)}")
    x2 = x.reshape(-1, k).contiguous()
    m, ntot = x2.shape[0], sum(ns)
    out = torch.empty(m, ntot, dtype=x.dtype, device=device)
    if m == 0 or ntot == 0:
        return out.reshape(*x.shape[:-1], ntot)

    frozen = p0.format is Format.FROZEN
    c = 1 if frozen else p0.num_coats
    w = words_per_row(k)
    nb = triton.cdiv(w, OFFSET_BLOCK_WORDS)
    meta_t, coat_t, bias_t = _tables(packed, biases, frozen, w, device)
    planes, bits, offs = [], [], []
    for p in packed:  # passed by pointer: views of the weights' own tensors, never copies kept
        if frozen:
            fb = p.free_bits.reshape(-1).contiguous()
            planes.append(_const(device, torch.int32))
            bits.append(fb if fb.numel() else _const(device, torch.int32))
            offs.append(p.offsets.contiguous())
        else:
            planes.append(p.planes.contiguous())
            bits.append(_const(device, torch.int32))
            offs.append(_const(device, torch.int64))
    pad = MAX_GROUPS - len(packed)
    planes, bits, offs = planes + planes[:1] * pad, bits + bits[:1] * pad, offs + offs[:1] * pad
    has_bias = bias_t is not None
    bias_t = coat_t if bias_t is None else bias_t  # any valid pointer; never read
    table = _table(device)
    dist = p0.dist
    unit = dist is Dist.SIGNED_CONSTANT and not frozen and c == 1
    rmax = max(ns)
    kp = w * WORD_BITS
    common = (table, meta_t, coat_t, *planes, *bits, *offs)
    if path is None:
        path = "gemv" if m <= GEMV_MAX_BATCH else "gemm"
    if path == "gemm":
        check_interpreter_dot(x2, "x")
    if path == "gemv":
        splits, chunk = _gemv_plan(m, ntot, k, device, split_k)
        part = out if splits == 1 else torch.empty(splits, m, ntot, dtype=torch.float32, device=device)
        kern, fixed = _kernel("gemv")
        grid = lambda meta: (triton.cdiv(rmax, meta["BLOCK_N"]), splits, len(packed))  # noqa: E731
        kern[grid](x2, part, bias_t, *common, m, k, kp, w, nb, chunk, rmax,
                   x2.stride(0), part.stride(0) if splits > 1 else 0, part.stride(-2),
                   DIST=dist.code, FROZEN=frozen, C=c, HAS_BIAS=has_bias and splits == 1, UNIT=unit,
                   BLOCK_M=max(1, triton.next_power_of_2(m)), **fixed)
        if splits > 1:
            _reduce_splits(part, bias_t if has_bias else None, out)
    else:
        precision = "ieee" if x2.dtype == torch.float32 else "tf32"
        kern, fixed = _kernel("gemm")
        grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(rmax, meta["BLOCK_N"]),  # noqa: E731
                             len(packed))
        kern[grid](x2, out, bias_t, *common, m, k, kp, w, nb, rmax, x2.stride(0), out.stride(0),
                   DIST=dist.code, FROZEN=frozen, C=c, HAS_BIAS=has_bias, UNIT=unit, PRECISION=precision, **fixed)
    return out.reshape(*x.shape[:-1], ntot)
