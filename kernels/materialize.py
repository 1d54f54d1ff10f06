"""Triton kernels that materialise W0, freeze states and effective weights as dense (N, K)
tensors: the triton backend's materialise ops (on the op's checked arguments), and
generate_weights / freeze_states for tests and exports. The fused GEMV/GEMM kernels reuse the
same helpers from `.contract` without materialising anything.

Under TRITON_INTERPRET=1 they run on CPU tensors; otherwise tensors must be on a CUDA device.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from slt_hw.contract import (
    OFFSET_BLOCK_WORDS,
    WORD_BITS,
    Dist,
    Key,
    check_geometry,
    check_key,
    check_scale,
    check_thresholds,
    words_per_row,
)
from slt_hw.reference.prng import normal_table

from .contract import FREE, LOCKED, expand_bits, freeze_tile, weight_tile

__all__ = ["freeze_states", "generate_weights", "materialize_frozen", "materialize_planes"]

OFFSET_BLOCK = OFFSET_BLOCK_WORDS * WORD_BITS  # 1024 columns per offset-table entry

# Keys and thresholds: no value specialisation (a key equal to 1 would become a constexpr and
# every distinct small value would recompile).
_DNS = ["k0", "k1", "fk0", "fk1", "prune_thr", "lock_thr", "row0"]


@triton.jit(do_not_specialize=_DNS)
def _weights_kernel(out_ptr, N, K, Kp, k0, k1, scale, table_ptr,
                    DIST: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_start = tl.program_id(1) * BLOCK_K
    cols = k_start + tl.arange(0, BLOCK_K)
    w0 = weight_tile(k0, k1, rows, k_start, Kp, DIST, scale, table_ptr, BLOCK_K)
    mask = (rows[:, None] < N) & (cols[None, :] < K)
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * K + cols[None, :], w0, mask=mask)


@triton.jit(do_not_specialize=_DNS)
def _freeze_kernel(out_ptr, N, K, Kp, fk0, fk1, prune_thr, lock_thr,
                   BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_start = tl.program_id(1) * BLOCK_K
    cols = k_start + tl.arange(0, BLOCK_K)
    st = freeze_tile(fk0, fk1, rows, k_start, Kp, prune_thr, lock_thr, BLOCK_K)
    mask = (rows[:, None] < N) & (cols[None, :] < K)
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * K + cols[None, :], st.to(tl.uint8), mask=mask)


@triton.jit(do_not_specialize=_DNS)
def _planes_kernel(out_ptr, planes_ptr, coat_ptr, plane_stride, row0, N, K, Kp, k0, k1, scale,
                   table_ptr, DIST: tl.constexpr, C: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    # Rows [row0, N) of the weight into out's rows [0, N - row0).
    BLOCK_W: tl.constexpr = BLOCK_K // 32
    W = Kp // 32
    rows = row0 + tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_start = tl.program_id(1) * BLOCK_K
    cols = k_start + tl.arange(0, BLOCK_K)
    wcols = k_start // 32 + tl.arange(0, BLOCK_W)
    wmask = (rows[:, None] < N) & (wcols[None, :] < W)
    wptr = planes_ptr + rows.to(tl.int64)[:, None] * W + wcols[None, :]
    m = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    # m = sum_i g_i * bit_i in order; a select instead of g*bit so nothing can be fused into an FMA.
    # C is a constexpr (a handful of coats): the loop unrolls.
    for i in tl.static_range(C):
        words = tl.load(wptr, mask=wmask, other=0)
        bits = expand_bits(words, BLOCK_N, BLOCK_W)
        g = tl.load(coat_ptr + i)
        m = tl.where(bits != 0, m + g, m)
        wptr += plane_stride
    w0 = weight_tile(k0, k1, rows, k_start, Kp, DIST, scale, table_ptr, BLOCK_K)
    w = tl.where(m == 0.0, 0.0, w0 * m)  # +0.0, never -0.0, where no coat is set
    mask = (rows[:, None] < N) & (cols[None, :] < K)
    tl.store(out_ptr + (rows - row0).to(tl.int64)[:, None] * K + cols[None, :], w, mask=mask)


@triton.jit(do_not_specialize=_DNS)
def _frozen_kernel(out_ptr, bits_ptr, offsets_ptr, NB, row0, N, K, Kp, k0, k1, fk0, fk1, prune_thr,
                   lock_thr, scale, table_ptr, DIST: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    # Rows [row0, N) as _planes_kernel. BLOCK_K is the offset-table block (1024): offsets[n, b] is
    # the stream index of the first free weight of the tile's row, and an exclusive prefix sum
    # gives each one's index.
    rows = row0 + tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    b = tl.program_id(1)
    k_start = b * BLOCK_K
    cols = k_start + tl.arange(0, BLOCK_K)
    valid = (rows[:, None] < N) & (cols[None, :] < K)
    st = freeze_tile(fk0, fk1, rows, k_start, Kp, prune_thr, lock_thr, BLOCK_K)
    free = (st == FREE) & valid  # padding columns are never in the stream
    free_i = free.to(tl.int32)
    before = tl.cumsum(free_i, axis=1) - free_i
    base = tl.load(offsets_ptr + rows.to(tl.int64) * NB + b, mask=rows < N, other=0)
    idx = base[:, None] + before.to(tl.int64)
    word = tl.load(bits_ptr + (idx >> 5), mask=free, other=0)
    bit = (word.to(tl.uint32, bitcast=True) >> (idx & 31).to(tl.uint32)) & 1
    keep = (st == LOCKED) | (free & (bit != 0))
    w0 = weight_tile(k0, k1, rows, k_start, Kp, DIST, scale, table_ptr, BLOCK_K)
    w = tl.where(keep, w0, 0.0)
    tl.store(out_ptr + (rows - row0).to(tl.int64)[:, None] * K + cols[None, :], w, mask=valid)


# --------------------------------------------------------------------------- host side

_TABLES: dict[torch.device, torch.Tensor] = {}


def _table(device: torch.device) -> torch.Tensor:
    t = _TABLES.get(device)
    if t is None:
        t = _TABLES[device] = normal_table(device).contiguous()
    return t


_CONSTS: dict[tuple, torch.Tensor] = {}


def _const(device: torch.device, dtype: torch.dtype, value: float = 0) -> torch.Tensor:
    """A one-element tensor holding `value`, made once per device: the pointer of an argument a
    kernel never reads, or a unit coat scale, without an allocation and a fill launch per call
    (at decode a call's host cost is its launches). Read-only: kernels never write it."""
    key = (device, dtype, value)
    t = _CONSTS.get(key)
    if t is None:
        t = _CONSTS[key] = torch.full((1,), value, dtype=dtype, device=device)
    return t


def _device(device) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _blocks(block_n, block_k, default_n, default_k):
    bn = default_n if block_n is None else block_n
    bk = default_k if block_k is None else block_k
    if bn < 1 or bn & (bn - 1) or bk < 32 or bk & (bk - 1):
        raise ValueError(f"block sizes: expected powers of two, block_k >= 32, got {bn}, {bk}")
    return bn, bk


def generate_weights(key: Key, n: int, k: int, dist: Dist | str, scale: float, device=None, *,
                     block_n: int | None = None, block_k: int | None = None) -> torch.Tensor:
    """W0 of an (n, k) tensor as float32, bit-identical to slt_hw.reference.prng.generate."""
    dist = Dist.parse(dist)
    check_geometry(n, k)
    check_key(key)
    s = check_scale(scale)
    device = _device(device)
    bn, bk = _blocks(block_n, block_k, 16, 128)
    kp = words_per_row(k) * WORD_BITS
    out = torch.empty(n, k, dtype=torch.float32, device=device)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(k, meta["BLOCK_K"]))  # noqa: E731
    _weights_kernel[grid](out, n, k, kp, key.k0, key.k1, s, _table(device),
                          DIST=dist.code, BLOCK_N=bn, BLOCK_K=bk)
    return out


def freeze_states(fkey: Key, n: int, k: int, prune_thr: int, lock_thr: int, device=None, *,
                  block_n: int | None = None, block_k: int | None = None) -> torch.Tensor:
    """(n, k) uint8 freeze states (0 pruned, 1 locked, 2 free); lock_thr is P + L."""
    check_geometry(n, k)
    check_key(fkey, "fkey")
    check_thresholds(prune_thr, lock_thr)
    device = _device(device)
    bn, bk = _blocks(block_n, block_k, 16, 128)
    kp = words_per_row(k) * WORD_BITS
    out = torch.empty(n, k, dtype=torch.uint8, device=device)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(k, meta["BLOCK_K"]))  # noqa: E731
    _freeze_kernel[grid](out, n, k, kp, fkey.k0, fkey.k1, prune_thr, lock_thr,
                         BLOCK_N=bn, BLOCK_K=bk)
    return out


def materialize_planes(planes: torch.Tensor, coat_scales: torch.Tensor, k0: int, k1: int, in_features: int,
                       dist: int, scale: float, row_begin: int, row_end: int, *, block_n: int | None = None,
                       block_k: int | None = None) -> torch.Tensor:
    """Effective weights w0*m of rows [row_begin, row_end), binary / multicoat, float32: the
    arguments of slt_hw::materialize_planes as the op checked them (planes (C, N, W) int32, bit
    k%32 of word k//32, LSB first; m accumulates in float32 in coat order)."""
    planes = planes.contiguous()
    c, n = planes.shape[0], planes.shape[1]
    device, k = planes.device, in_features
    bn, bk = _blocks(block_n, block_k, 16, 128)
    w = words_per_row(k)
    out = torch.empty(row_end - row_begin, k, dtype=torch.float32, device=device)
    if row_end == row_begin:
        return out
    grid = lambda meta: (triton.cdiv(row_end - row_begin, meta["BLOCK_N"]),  # noqa: E731
                         triton.cdiv(k, meta["BLOCK_K"]))
    _planes_kernel[grid](out, planes, coat_scales.contiguous(), n * w, row_begin, row_end, k, w * WORD_BITS, k0, k1,
                         scale, _table(device), DIST=dist, C=c, BLOCK_N=bn, BLOCK_K=bk)
    return out


def materialize_frozen(free_bits: torch.Tensor, offsets: torch.Tensor, k0: int, k1: int, fk0: int, fk1: int,
                       in_features: int, dist: int, scale: float, prune_thr: int, lock_thr: int, row_begin: int,
                       row_end: int, *, block_n: int | None = None) -> torch.Tensor:
    """Effective weights of rows [row_begin, row_end), partially frozen, float32 (pruned +0.0,
    locked w0, free w0 where its stream bit is set): the arguments of slt_hw::materialize_frozen
    as the op checked them (offsets (N, ceil(W/32)) int64: stream index of each row's first free
    weight per 1024-column block)."""
    device, k = free_bits.device, in_features
    free_bits = free_bits.contiguous()
    if free_bits.numel() == 0:  # no free weight: every load is masked, but keep a valid pointer
        free_bits = _const(device, torch.int32)
    offsets = offsets.contiguous()
    nb = offsets.shape[1]
    bn, _ = _blocks(block_n, None, 4, OFFSET_BLOCK)
    out = torch.empty(row_end - row_begin, k, dtype=torch.float32, device=device)
    if row_end == row_begin:
        return out
    grid = lambda meta: (triton.cdiv(row_end - row_begin, meta["BLOCK_N"]), nb)  # noqa: E731
    _frozen_kernel[grid](out, free_bits, offsets, nb, row_begin, row_end, k, words_per_row(k) * WORD_BITS, k0, k1,
                         fk0, fk1, prune_thr, lock_thr, scale, _table(device), DIST=dist, BLOCK_N=bn,
                         BLOCK_K=OFFSET_BLOCK)
    return out
