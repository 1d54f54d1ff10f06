"""Fused slt_linear in Triton: y = x @ W_effᵀ (+ bias) with W_eff regenerated from (key, mask)
inside the matmul, never written to memory.

Two paths, sharing the weight-tile helpers (`_eff_tile` for every format, `_unit_tile` for the
binary signed-constant fast path, whose ±1 tile is scaled once at the end):
- GEMV (batch ≤ 8): CUDA cores. A program owns BLOCK_N output rows and one K split; per step it
  hashes one sign word per 32 weights (signed constant) next to the row's 32-bit mask word,
  expands both in registers and reduces against the few activation rows. Mask words of a row are
  contiguous, so a (BLOCK_N, BLOCK_K/32) word tile is a coalesced load. When the output is narrow
  the K range is split across programs (partials summed on the host, deterministically).
- GEMM (batch > 8): tensor cores. A (BLOCK_N, BLOCK_K) tile of W_eff is rebuilt in registers,
  cast to the activation dtype (fp16/bf16; fp32 stays IEEE fp32) and fed to tl.dot with an fp32
  accumulator. The integer work per weight is independent of the batch, so it amortises.

Rows [row_begin, row_end) of the weight are computed (a convolution group); counters always use
the absolute row. The frozen format walks K in order and carries each row's free-bit stream
index from tile to tile, reloading it from the offset table at every 1024-column block.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from slt_hw.contract import OFFSET_BLOCK_WORDS, WORD_BITS, Dist, words_per_row

from .contract import FREE, LOCKED, expand_bits, freeze_tile, sign_word, weight_tile
from .materialize import _const, _table

__all__ = ["linear_frozen", "linear_planes"]

OFFSET_BLOCK = OFFSET_BLOCK_WORDS * WORD_BITS  # 1024: BLOCK_K divides it, split-K chunks are multiples
GEMV_MAX_BATCH = 8
_DNS = ["k0", "k1", "fk0", "fk1", "prune_thr", "lock_thr"]


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def check_interpreter_dot(x: torch.Tensor, arg: str) -> None:
    """Triton's interpreter gets a bf16 tl.dot wrong (triton-lang/triton#11584: outputs ~1e10): the
    kernels that use one (GEMM, flash attention) refuse bf16 there rather than answer wrong."""
    if x.dtype == torch.bfloat16 and x.device.type == "cpu" and _interpreted():
        raise TypeError(f"{arg}: the triton backend cannot compute bfloat16 with tl.dot under TRITON_INTERPRET=1 "
                        f"(the GEMM path, more than {GEMV_MAX_BATCH} rows, and attention; the interpreter's bf16 "
                        "dot is wrong, triton-lang/triton#11584): use float16 or float32, another backend, or a GPU")


# --------------------------------------------------------------------------- the weight tile


@triton.jit
def _unit_tile(rows, row_ok, k_start, W, Kp, k0, k1, planes_ptr, BLOCK_K: tl.constexpr):
    """Binary signed-constant fast path: W_eff / (scale·g) in {-1, 0, +1}. Per 32 weights one sign
    hash and one mask word are combined into a "+1" and a "-1" word; the common factor scale·g
    (the reference's single rounding of w0·m) is applied once to the accumulator. ±1 is exact in
    fp16/bf16, so the tensor-core path loses nothing to the weight cast either."""
    BLOCK_W: tl.constexpr = BLOCK_K // 32
    BLOCK_N: tl.constexpr = rows.shape[0]
    wcols = k_start // 32 + tl.arange(0, BLOCK_W)
    wmask = row_ok[:, None] & (wcols[None, :] < W)
    mw = tl.load(planes_ptr + rows.to(tl.int64)[:, None] * W + wcols[None, :], mask=wmask, other=0)
    mw = mw.to(tl.uint32, bitcast=True)
    h = sign_word(k0, k1, rows[:, None], wcols[None, :].to(tl.uint32), Kp)
    neg = mw & h  # masked-in weights whose sign bit says -scale
    plus = expand_bits(mw ^ neg, BLOCK_N, BLOCK_W)
    minus = expand_bits(neg, BLOCK_N, BLOCK_W)
    return plus.to(tl.float32) - minus.to(tl.float32)


@triton.jit
def _eff_tile(rows, row_ok, k_start, K, Kp, W, k0, k1, scale, table_ptr,
              # binary / multicoat
              planes_ptr, coat_ptr, plane_stride,
              # frozen
              bits_ptr, offsets_ptr, NB, fk0, fk1, prune_thr, lock_thr, idx,
              DIST: tl.constexpr, FROZEN: tl.constexpr, C: tl.constexpr, BLOCK_K: tl.constexpr):
    """(BLOCK_N, BLOCK_K) float32 W_eff of columns [k_start, k_start + BLOCK_K) (zero past K),
    and the rows' free-bit stream index after the tile (frozen; passed through otherwise)."""
    BLOCK_W: tl.constexpr = BLOCK_K // 32
    BLOCK_N: tl.constexpr = rows.shape[0]
    cols = k_start + tl.arange(0, BLOCK_K)
    w0 = weight_tile(k0, k1, rows, k_start, Kp, DIST, scale, table_ptr, BLOCK_K)
    if FROZEN:
        valid = row_ok[:, None] & (cols[None, :] < K)
        # The offset table restarts every row's stream index at each 1024-column block.
        b = k_start // 1024
        base = tl.load(offsets_ptr + rows.to(tl.int64) * NB + b, mask=row_ok, other=0)
        idx = tl.where(k_start % 1024 == 0, base, idx)
        st = freeze_tile(fk0, fk1, rows, k_start, Kp, prune_thr, lock_thr, BLOCK_K)
        free = (st == FREE) & valid
        free_i = free.to(tl.int32)
        pos = idx[:, None] + (tl.cumsum(free_i, axis=1) - free_i).to(tl.int64)
        word = tl.load(bits_ptr + (pos >> 5), mask=free, other=0)
        bit = (word.to(tl.uint32, bitcast=True) >> (pos & 31).to(tl.uint32)) & 1
        keep = ((st == LOCKED) & valid) | (free & (bit != 0))
        w = tl.where(keep, w0, 0.0)
        idx = idx + tl.sum(free_i, axis=1).to(tl.int64)
    else:
        wcols = k_start // 32 + tl.arange(0, BLOCK_W)
        wmask = row_ok[:, None] & (wcols[None, :] < W)
        wptr = planes_ptr + rows.to(tl.int64)[:, None] * W + wcols[None, :]
        if C == 1:
            # Binary: one mask word per 32 weights selects w0 or +0.0 (coat scale applied as in
            # the reference: m = g where the bit is set).
            bits = expand_bits(tl.load(wptr, mask=wmask, other=0), BLOCK_N, BLOCK_W)
            m = tl.where(bits != 0, tl.load(coat_ptr), 0.0)
            w = tl.where(m == 0.0, 0.0, w0 * m)
        else:
            m = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
            for i in tl.static_range(C):
                bits = expand_bits(tl.load(wptr + i * plane_stride, mask=wmask, other=0), BLOCK_N, BLOCK_W)
                m = tl.where(bits != 0, m + tl.load(coat_ptr + i), m)
            w = tl.where(m == 0.0, 0.0, w0 * m)
    return w, idx


@triton.jit
def _weight_tile(rows, row_ok, k_start, K, Kp, W, k0, k1, scale, table_ptr, planes_ptr, coat_ptr, plane_stride,
                 bits_ptr, offsets_ptr, NB, fk0, fk1, prune_thr, lock_thr, idx,
                 DIST: tl.constexpr, FROZEN: tl.constexpr, C: tl.constexpr, UNIT: tl.constexpr,
                 BLOCK_K: tl.constexpr):
    """The tile both paths multiply: {-1, 0, +1} on the UNIT fast path (scaled in _epilogue),
    else W_eff; and the frozen rows' stream index after it."""
    if UNIT:
        w = _unit_tile(rows, row_ok, k_start, W, Kp, k0, k1, planes_ptr, BLOCK_K)
    else:
        w, idx = _eff_tile(rows, row_ok, k_start, K, Kp, W, k0, k1, scale, table_ptr, planes_ptr, coat_ptr,
                           plane_stride, bits_ptr, offsets_ptr, NB, fk0, fk1, prune_thr, lock_thr, idx,
                           DIST, FROZEN, C, BLOCK_K)
    return w, idx


@triton.jit
def _epilogue(acc, out_cols, row_ok, scale, coat_ptr, bias_ptr, HAS_BIAS: tl.constexpr, UNIT: tl.constexpr):
    if UNIT:
        acc = acc * (scale * tl.load(coat_ptr))
    if HAS_BIAS:
        acc += tl.load(bias_ptr + out_cols, mask=row_ok, other=0.0).to(tl.float32)[None, :]
    return acc


# --------------------------------------------------------------------------- GEMV


@triton.jit
def _gemv_tile(
    pid_n, pid_k,
    # pointers
    x_ptr, out_ptr, bias_ptr, table_ptr, planes_ptr, coat_ptr, bits_ptr, offsets_ptr,
    # sizes
    M, K, Kp, W, NB, row_begin, row_end, R, plane_stride, K_PER_SPLIT,
    # strides
    stride_xm, stride_os, stride_om,
    # contract
    k0, k1, scale, fk0, fk1, prune_thr, lock_thr,
    # meta-parameters
    DIST: tl.constexpr, FROZEN: tl.constexpr, C: tl.constexpr, HAS_BIAS: tl.constexpr, UNIT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = row_begin + pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < row_end
    ms = tl.arange(0, BLOCK_M)
    m_ok = ms < M
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    idx = tl.zeros((BLOCK_N,), dtype=tl.int64)
    k_lo = pid_k * K_PER_SPLIT
    k_hi = tl.minimum(k_lo + K_PER_SPLIT, K)
    for k_start in range(k_lo, k_hi, BLOCK_K):
        w, idx = _weight_tile(rows, row_ok, k_start, K, Kp, W, k0, k1, scale, table_ptr, planes_ptr, coat_ptr,
                              plane_stride, bits_ptr, offsets_ptr, NB, fk0, fk1, prune_thr, lock_thr, idx,
                              DIST, FROZEN, C, UNIT, BLOCK_K)
        cols = k_start + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + ms.to(tl.int64)[:, None] * stride_xm + cols[None, :],
                    mask=m_ok[:, None] & (cols[None, :] < K), other=0.0).to(tl.float32)
        acc += tl.sum(x[:, None, :] * w[None, :, :], axis=2)
    out_cols = rows - row_begin
    acc = _epilogue(acc, out_cols, row_ok, scale, coat_ptr, bias_ptr, HAS_BIAS, UNIT)
    optr = out_ptr + pid_k * stride_os + ms.to(tl.int64)[:, None] * stride_om + out_cols[None, :]
    tl.store(optr, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & (out_cols < R)[None, :])


@triton.jit(do_not_specialize=_DNS)
def _gemv_kernel(
    x_ptr, out_ptr, bias_ptr, table_ptr, planes_ptr, coat_ptr, bits_ptr, offsets_ptr,
    M, K, Kp, W, NB, row_begin, row_end, R, plane_stride, K_PER_SPLIT,
    stride_xm, stride_os, stride_om,
    k0, k1, scale, fk0, fk1, prune_thr, lock_thr,
    DIST: tl.constexpr, FROZEN: tl.constexpr, C: tl.constexpr, HAS_BIAS: tl.constexpr, UNIT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    _gemv_tile(tl.program_id(0), tl.program_id(1), x_ptr, out_ptr, bias_ptr, table_ptr, planes_ptr, coat_ptr,
               bits_ptr, offsets_ptr, M, K, Kp, W, NB, row_begin, row_end, R, plane_stride, K_PER_SPLIT,
               stride_xm, stride_os, stride_om, k0, k1, scale, fk0, fk1, prune_thr, lock_thr,
               DIST, FROZEN, C, HAS_BIAS, UNIT, BLOCK_M, BLOCK_N, BLOCK_K)


@triton.jit
def _reduce_splits_kernel(part_ptr, bias_ptr, out_ptr, SPLITS, NUMEL, R, HAS_BIAS: tl.constexpr,
                          BLOCK: tl.constexpr):
    """out = Σ_s part[s] (+ bias[column]) in out's dtype, part (SPLITS, M, R) and out (M, R)
    contiguous: a split-K GEMV's second pass in one launch (torch's sum, add and cast take three)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < NUMEL
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    ptrs = part_ptr + offs
    for _ in range(0, SPLITS):
        acc += tl.load(ptrs, mask=ok, other=0.0)
        ptrs += NUMEL  # pointer arithmetic is 64-bit
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs % R, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=ok)


def _reduce_splits(part: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
    """Sum the (splits, M, R) float32 partial products of a split-K GEMV into out (M, R)."""
    numel = out.numel()
    block = 1024
    _reduce_splits_kernel[(triton.cdiv(numel, block),)](
        part, part if bias is None else bias.contiguous(), out, part.shape[0], numel, out.shape[-1],
        HAS_BIAS=bias is not None, BLOCK=block)
    return out


# --------------------------------------------------------------------------- GEMM


@triton.jit
def _gemm_tile(
    pid,
    # pointers
    x_ptr, out_ptr, bias_ptr, table_ptr, planes_ptr, coat_ptr, bits_ptr, offsets_ptr,
    # sizes
    M, K, Kp, W, NB, row_begin, row_end, R, plane_stride,
    # strides
    stride_xm, stride_om,
    # contract
    k0, k1, scale, fk0, fk1, prune_thr, lock_thr,
    # meta-parameters
    DIST: tl.constexpr, FROZEN: tl.constexpr, C: tl.constexpr, HAS_BIAS: tl.constexpr, UNIT: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    # Grouped ordering: GROUP_M row-blocks of x share each regenerated weight column in L2.
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(R, BLOCK_N)
    group = GROUP_M * num_n
    first_m = (pid // group) * GROUP_M
    size_m = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group) % size_m
    pid_n = (pid % group) // size_m

    ms = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = ms < M
    rows = row_begin + pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < row_end
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    idx = tl.zeros((BLOCK_N,), dtype=tl.int64)
    for k_start in range(0, K, BLOCK_K):
        w, idx = _weight_tile(rows, row_ok, k_start, K, Kp, W, k0, k1, scale, table_ptr, planes_ptr, coat_ptr,
                              plane_stride, bits_ptr, offsets_ptr, NB, fk0, fk1, prune_thr, lock_thr, idx,
                              DIST, FROZEN, C, UNIT, BLOCK_K)
        cols = k_start + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + ms.to(tl.int64)[:, None] * stride_xm + cols[None, :],
                    mask=m_ok[:, None] & (cols[None, :] < K), other=0.0)
        acc = tl.dot(x, tl.trans(w.to(x.dtype)), acc, input_precision=PRECISION)
    out_cols = rows - row_begin
    acc = _epilogue(acc, out_cols, row_ok, scale, coat_ptr, bias_ptr, HAS_BIAS, UNIT)
    optr = out_ptr + ms.to(tl.int64)[:, None] * stride_om + out_cols[None, :]
    tl.store(optr, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & (out_cols < R)[None, :])


@triton.jit(do_not_specialize=_DNS)
def _gemm_kernel(
    x_ptr, out_ptr, bias_ptr, table_ptr, planes_ptr, coat_ptr, bits_ptr, offsets_ptr,
    M, K, Kp, W, NB, row_begin, row_end, R, plane_stride,
    stride_xm, stride_om,
    k0, k1, scale, fk0, fk1, prune_thr, lock_thr,
    DIST: tl.constexpr, FROZEN: tl.constexpr, C: tl.constexpr, HAS_BIAS: tl.constexpr, UNIT: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    _gemm_tile(tl.program_id(0), x_ptr, out_ptr, bias_ptr, table_ptr, planes_ptr, coat_ptr, bits_ptr, offsets_ptr,
               M, K, Kp, W, NB, row_begin, row_end, R, plane_stride, stride_xm, stride_om,
               k0, k1, scale, fk0, fk1, prune_thr, lock_thr,
               DIST, FROZEN, C, HAS_BIAS, UNIT, PRECISION, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M)


# --------------------------------------------------------------------------- autotuning


def _gemv_configs():
    def keep(bn, bk, warps):
        # A (BLOCK_N, BLOCK_K) fp32 weight tile per program: past ~128 values per thread it spills.
        return bn * bk <= 128 * 32 * warps
    # Each config costs a compile on first use (seconds): a short list, not a grid sweep.
    return [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=2)
            for bn in (8, 16, 32) for bk in (512, 1024) for w in (4, 8) if keep(bn, bk, w)]


def _gemm_configs():
    def keep(bm, bn, bk, warps):
        # Regeneration runs on every warp: bigger weight tiles need more warps to hide it.
        return bm * bn <= 128 * 64 * warps // 2 and bn * bk <= 128 * 128
    candidates = [  # (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages)
        (128, 256, 64, 8, 3), (128, 128, 64, 8, 3), (128, 128, 64, 4, 4), (64, 128, 64, 4, 4),
        (128, 64, 64, 4, 4), (64, 64, 64, 4, 4), (64, 256, 32, 8, 3),
        (32, 128, 128, 4, 3), (16, 128, 128, 4, 3), (16, 64, 128, 4, 3),  # batches of 9-64
    ]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=s)
            for bm, bn, bk, w, s in candidates if keep(bm, bn, bk, w)]


def _prune_gemm(configs, named_args, **kwargs):
    """Drop tiles much taller than the batch: they only add padding rows to every tl.dot."""
    m = named_args["M"]
    fit = [c for c in configs if c.kwargs["BLOCK_M"] <= max(16, triton.next_power_of_2(m))]
    return fit or configs


# Interpreter: one fixed, small config (autotuning would run every config in numpy).
_GEMV_FIXED = {"BLOCK_N": 16, "BLOCK_K": 256}
_GEMM_FIXED = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 64, "GROUP_M": 4}

_TUNED: dict[object, object] = {}


def _select(name: str, gemv, gemm, rows_arg: str = "R"):
    """The autotuned `gemv`/`gemm` kernel on a GPU (tuning keyed on the batch, the output width
    argument `rows_arg` and K), the plain one plus the fixed config in the interpreter."""
    if _interpreted():
        return (gemv, _GEMV_FIXED) if name == "gemv" else (gemm, _GEMM_FIXED)
    fn = gemv if name == "gemv" else gemm
    if fn not in _TUNED:
        if name == "gemv":
            _TUNED[fn] = triton.autotune(_gemv_configs(), key=[rows_arg, "K", "BLOCK_M"])(fn)
        else:
            _TUNED[fn] = triton.autotune(_gemm_configs(), key=["M", rows_arg, "K"],
                                         prune_configs_by={"early_config_prune": _prune_gemm})(fn)
    return _TUNED[fn], {}


def _kernel(name: str):
    return _select(name, _gemv_kernel, _gemm_kernel)


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def _split_k(rows: int, k: int, device: torch.device) -> int:
    """Split K (in 1024-column chunks) until about two programs per SM are busy: a narrow
    output (few row tiles) would otherwise leave most SMs idle."""
    tiles = triton.cdiv(rows, 16)
    want = triton.cdiv(2 * _num_sms(device), max(tiles, 1))
    return max(1, min(want, triton.cdiv(k, OFFSET_BLOCK)))


# --------------------------------------------------------------------------- host side


def _gemv_plan(m: int, rows: int, k: int, device: torch.device, split_k: int | None) -> tuple[int, int]:
    """(splits, columns per split) of a GEMV launch; splits are whole 1024-column chunks."""
    if m > 16:
        raise ValueError(f"path: the GEMV path takes at most 16 activation rows, got {m}")
    splits = _split_k(rows, k, device) if split_k is None else split_k
    if splits < 1:
        raise ValueError(f"split_k: expected >= 1, got {splits}")
    chunk = triton.cdiv(triton.cdiv(k, splits), OFFSET_BLOCK) * OFFSET_BLOCK
    return triton.cdiv(k, chunk), chunk


def _check_path(path: str | None) -> None:
    if path not in (None, "gemv", "gemm"):
        raise ValueError(f"path: expected None, 'gemv' or 'gemm', got {path!r}")


def _launch(x, bias, k, rows, dist, scale, keys, planes, coat_scales, plane_stride, c, free_bits, offsets,
            prune_thr, lock_thr, frozen, path, split_k):
    _check_path(path)
    x2 = x.reshape(-1, k).contiguous()
    device = x2.device
    r0, r1 = rows
    r = r1 - r0
    mrows = x2.shape[0]
    out = torch.empty(mrows, r, dtype=x2.dtype, device=device)
    if mrows == 0 or r == 0:
        return out.reshape(*x.shape[:-1], r)
    w = words_per_row(k)
    kp = w * WORD_BITS
    nb = triton.cdiv(w, OFFSET_BLOCK_WORDS)
    table = _table(device)
    has_bias = bias is not None
    bias_arg = bias if has_bias else table  # any valid pointer; never read
    k0, k1, fk0, fk1 = keys
    contract = (k0, k1, scale, fk0, fk1, prune_thr, lock_thr)
    unit = dist == Dist.SIGNED_CONSTANT.code and not frozen and c == 1
    if path is None:
        path = "gemv" if mrows <= GEMV_MAX_BATCH else "gemm"
    if path == "gemm":
        check_interpreter_dot(x2, "x")
    if path == "gemv":
        splits, chunk = _gemv_plan(mrows, r, k, device, split_k)
        block_m = max(1, triton.next_power_of_2(mrows))
        part = out if splits == 1 else torch.empty(splits, mrows, r, dtype=torch.float32, device=device)
        kern, fixed = _kernel("gemv")
        grid = lambda meta: (triton.cdiv(r, meta["BLOCK_N"]), splits)  # noqa: E731
        kern[grid](x2, part, bias_arg, table, planes, coat_scales, free_bits, offsets,
                   mrows, k, kp, w, nb, r0, r1, r, plane_stride, chunk,
                   x2.stride(0), part.stride(0) if splits > 1 else 0, part.stride(-2),
                   *contract, DIST=dist, FROZEN=frozen, C=c, HAS_BIAS=has_bias and splits == 1, UNIT=unit,
                   BLOCK_M=block_m, **fixed)
        if splits > 1:
            _reduce_splits(part, bias, out)
        return out.reshape(*x.shape[:-1], r)
    precision = "ieee" if x2.dtype == torch.float32 else "tf32"
    kern, fixed = _kernel("gemm")
    grid = lambda meta: (triton.cdiv(mrows, meta["BLOCK_M"]) * triton.cdiv(r, meta["BLOCK_N"]),)  # noqa: E731
    kern[grid](x2, out, bias_arg, table, planes, coat_scales, free_bits, offsets,
               mrows, k, kp, w, nb, r0, r1, r, plane_stride,
               x2.stride(0), out.stride(0),
               *contract, DIST=dist, FROZEN=frozen, C=c, HAS_BIAS=has_bias, UNIT=unit, PRECISION=precision,
               **fixed)
    return out.reshape(*x.shape[:-1], r)


def linear_planes(x: torch.Tensor, bias: torch.Tensor | None, planes: torch.Tensor, coat_scales: torch.Tensor,
                  k0: int, k1: int, in_features: int, dist: int, scale: float, row_begin: int, row_end: int, *,
                  path: str | None = None, split_k: int | None = None) -> torch.Tensor:
    """y = x @ W_eff[row_begin:row_end]ᵀ + bias (binary / multicoat) in x's dtype; the arguments
    of slt_hw::linear_planes as the op checked them (planes (C, N, W) int32, dist its code, bias
    one value per computed row). path: force "gemv" or "gemm" (default by batch size); split_k:
    GEMV K splits (default: enough to fill the GPU)."""
    planes = planes.contiguous()
    n, c = planes.shape[1], planes.shape[0]
    dummy = _const(planes.device, torch.int64)
    return _launch(x, bias, in_features, (row_begin, row_end), dist, scale, (k0, k1, 0, 0), planes,
                   coat_scales.contiguous(), n * words_per_row(in_features), c, dummy, dummy, 0, 0, False, path,
                   split_k)


def linear_frozen(x: torch.Tensor, bias: torch.Tensor | None, free_bits: torch.Tensor, offsets: torch.Tensor,
                  k0: int, k1: int, fk0: int, fk1: int, in_features: int, dist: int, scale: float,
                  prune_thr: int, lock_thr: int, row_begin: int, row_end: int, *, path: str | None = None,
                  split_k: int | None = None) -> torch.Tensor:
    """y = x @ W_eff[row_begin:row_end]ᵀ + bias (partially frozen) in x's dtype; the arguments of
    slt_hw::linear_frozen as the op checked them (offsets (N, ceil(W/32)) int64: each row's
    stream index per 1024-column block). path, split_k: as linear_planes."""
    device = free_bits.device
    free_bits = free_bits.contiguous()
    if free_bits.numel() == 0:  # no free weight: every load is masked, but keep a valid pointer
        free_bits = _const(device, torch.int32)
    no_planes, unit_coat = _const(device, torch.int32), _const(device, torch.float32, 1.0)
    return _launch(x, bias, in_features, (row_begin, row_end), dist, scale, (k0, k1, fk0, fk1), no_planes,
                   unit_coat, 0, 1, free_bits, offsets.contiguous(), prune_thr, lock_thr, True, path, split_k)
