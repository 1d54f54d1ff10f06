"""Flash-attention forward in Triton: online softmax over key blocks, the T×S score matrix
never stored. Inference only.

q (B, T, H, D), k (B, S, H, D), v (B, S, H, DV) are read through arbitrary strides, so the
projections' output (one (B·T, H·D + …) buffer from the grouped slt_linear) and a KV cache
are used in place. Query i sits at absolute position S − T + i (bottom-right causal
alignment: a decode step's queries come after the cached keys). A key padding mask (B, S)
marks keys to ignore. A query row with no key left gets zeros, not NaN.

Long key ranges with few (batch × head × query-block) programs, i.e. decode, are split over
the keys (flash-decoding): each split writes its normalised partial output and log-sum-exp,
and a second small kernel combines them (one launch: a decode step's host cost is its launches).
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from .linear import check_interpreter_dot

__all__ = ["flash_attention"]

_LOG2E = 1.4426950408889634
_MIN_SPLIT_KEYS = 512  # below this a split's combine costs more than its keys


@triton.jit
def _attn_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, kpm_ptr,
    T, S, H, S_PER_SPLIT,
    sqb, sqt, sqh, skb, sks, skh, svb, svs, svh,
    sob, sot, soh, so_split, slse_split, skpm,
    qk_scale,  # softmax scale · log2(e): the softmax runs in base 2
    D: tl.constexpr, DV: tl.constexpr, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, SPLIT: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    split = tl.program_id(2)
    b = bh // H
    h = bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    m_ok = offs_m < T
    q = tl.load(q_ptr + b.to(tl.int64) * sqb + h * sqh + offs_m.to(tl.int64)[:, None] * sqt + offs_d[None, :],
                mask=m_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    pos = S - T + offs_m  # absolute positions of the queries

    lo = split * S_PER_SPLIT
    hi = tl.minimum(lo + S_PER_SPLIT, S)
    if CAUSAL:  # keys past the block's last query are never allowed
        hi = tl.minimum(hi, S - T + (pid_m + 1) * BLOCK_M)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_DV), dtype=tl.float32)
    k_base = k_ptr + b.to(tl.int64) * skb + h * skh
    v_base = v_ptr + b.to(tl.int64) * svb + h * svh
    for start in range(lo, hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        k = tl.load(k_base + offs_n.to(tl.int64)[:, None] * sks + offs_d[None, :],
                    mask=n_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        allowed = n_ok[None, :]
        if CAUSAL:
            allowed = allowed & (offs_n[None, :] <= pos[:, None])
        if HAS_KPM:
            pad = tl.load(kpm_ptr + b.to(tl.int64) * skpm + offs_n, mask=n_ok, other=1)
            allowed = allowed & (pad == 0)[None, :]
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing allowed yet stays at 0
        alpha = tl.math.exp2(m_i - m_use)
        p = tl.math.exp2(s - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_base + offs_n.to(tl.int64)[:, None] * svs + offs_dv[None, :],
                    mask=n_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    optr = (o_ptr + split * so_split + b.to(tl.int64) * sob + h * soh + offs_m.to(tl.int64)[:, None] * sot
            + offs_dv[None, :])
    tl.store(optr, out.to(o_ptr.dtype.element_ty), mask=m_ok[:, None] & (offs_dv[None, :] < DV))
    if SPLIT:
        lse = tl.where(l_i > 0.0, m_i + tl.math.log2(tl.where(l_i > 0.0, l_i, 1.0)), float("-inf"))
        tl.store(lse_ptr + split * slse_split + bh.to(tl.int64) * T + offs_m, lse, mask=m_ok)


@triton.jit
def _combine_kernel(
    part_ptr, lse_ptr, o_ptr, T, H, SPLITS,
    sp_split, sp_b, sp_t, sp_h, slse_split, sob, sot, soh,
    DV: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    """One (query, batch·head) row of a split run: the splits' normalised partial outputs
    weighted by 2^(lse_i − max lse), in one launch (a decode step's whole second pass). A row
    with no key in any split (every lse −inf) gets zeros."""
    t = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_s = tl.arange(0, BLOCK_S)
    offs_dv = tl.arange(0, BLOCK_DV)
    s_ok = offs_s < SPLITS
    lse = tl.load(lse_ptr + offs_s * slse_split + bh.to(tl.int64) * T + t, mask=s_ok, other=float("-inf"))
    top = tl.max(lse, axis=0)
    top = tl.where(top == float("-inf"), 0.0, top)
    wts = tl.math.exp2(lse - top)  # 0 for a split without keys (and the padding)
    den = tl.sum(wts, axis=0)
    part = tl.load(part_ptr + offs_s.to(tl.int64)[:, None] * sp_split + b.to(tl.int64) * sp_b + t * sp_t + h * sp_h
                   + offs_dv[None, :], mask=s_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
    out = tl.sum(part * wts[:, None], axis=0) / tl.where(den > 0.0, den, 1.0)
    tl.store(o_ptr + b.to(tl.int64) * sob + t.to(tl.int64) * sot + h * soh + offs_dv,
             out.to(o_ptr.dtype.element_ty), mask=offs_dv < DV)


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _num_sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def _blocks(t: int, d: int, dv: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, warps, stages): small query tiles for decode, FA2-style tiles for prefill."""
    if _interpreted():
        return 16, 16, 1, 1
    if t <= 16:
        return 16, 64 if max(d, dv) > 64 else 128, 4, 3
    return (128, 64, 8, 3) if max(d, dv) > 64 else (128, 64, 4, 3)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                    key_padding_mask: torch.Tensor | None = None, softmax_scale: float | None = None,
                    out: torch.Tensor | None = None, splits: int | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scale + masks) v per (batch, head), returned as (B, T, H, DV) in q's dtype.

    q: (B, T, H, D); k: (B, S, H, D); v: (B, S, H, DV), as the attention op (slt_hw._ops)
    checked them; strided views are fine (last axis unit-stride). key_padding_mask: (B, S) bool,
    True = ignore the key. softmax_scale defaults to 1/√D. out: optional (B, T, H, DV)
    destination. splits: key splits (default: enough to fill the GPU when there are few query
    blocks). Checks only this kernel's own limits."""
    bsz, t, h, d = q.shape
    s, dv = k.shape[1], v.shape[3]
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.stride(-1) != 1:
            raise ValueError(f"{name}: expected a unit stride on the last (head-dim) axis, got strides {x.stride()}")
    if causal and t > s:
        raise ValueError(f"q: causal attention needs T <= S (queries are the last T positions), got T={t}, S={s}")
    if d > 256 or dv > 256:
        raise ValueError(f"q: head dims up to 256 are supported, got D={d}, DV={dv}")
    check_interpreter_dot(q, "q")
    scale = 1.0 / math.sqrt(d) if softmax_scale is None else float(softmax_scale)
    if out is None:
        out = torch.empty(bsz, t, h, dv, dtype=q.dtype, device=q.device)
    elif tuple(out.shape) != (bsz, t, h, dv) or out.dtype != q.dtype or out.stride(-1) != 1:
        raise ValueError(f"out: expected a {q.dtype} ({bsz}, {t}, {h}, {dv}) tensor, got {out.dtype} "
                         f"{tuple(out.shape)}")
    if out.numel() == 0:
        return out
    block_m, block_n, warps, stages = _blocks(t, d, dv)
    m_blocks = triton.cdiv(t, block_m)
    if splits is None:
        # Few programs (decode) leave SMs idle: split the keys, at least _MIN_SPLIT_KEYS per split.
        want = triton.cdiv(2 * _num_sms(q.device), m_blocks * bsz * h)
        splits = max(1, min(want, triton.cdiv(s, _MIN_SPLIT_KEYS)))
    if not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits: expected an int >= 1, got {splits!r}")
    per_split = triton.cdiv(max(s, 1), splits)
    per_split = triton.cdiv(per_split, block_n) * block_n
    splits = max(1, triton.cdiv(s, per_split))
    kpm = out  # any valid pointer; never read without a mask
    if key_padding_mask is not None:  # bool and uint8 share their bytes: a view, not a launch per call
        kpm = key_padding_mask if key_padding_mask.stride(-1) == 1 else key_padding_mask.contiguous()
        kpm = kpm.view(torch.uint8)
    if splits == 1:
        dst, lse = out, out
    else:
        dst = torch.empty(splits, bsz, t, h, dv, dtype=torch.float32, device=q.device)
        lse = torch.empty(splits, bsz * h, t, dtype=torch.float32, device=q.device)
    dst4 = dst if splits == 1 else dst[0]
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    grid = (m_blocks, bsz * h, splits)
    _attn_kernel[grid](
        q, k, v, dst, lse, kpm, t, s, h, per_split,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        dst4.stride(0), dst4.stride(1), dst4.stride(2), dst.stride(0) if splits > 1 else 0,
        lse.stride(0) if splits > 1 else 0, kpm.stride(0) if key_padding_mask is not None else 0,
        scale * _LOG2E,
        D=d, DV=dv, CAUSAL=bool(causal), HAS_KPM=key_padding_mask is not None, SPLIT=splits > 1,
        PRECISION=precision, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=max(16, triton.next_power_of_2(d)),
        BLOCK_DV=max(16, triton.next_power_of_2(dv)), num_warps=warps, num_stages=stages,
    )
    if splits > 1:
        _combine_kernel[(t, bsz * h)](
            dst, lse, out, t, h, splits, dst.stride(0), dst.stride(1), dst.stride(2), dst.stride(3),
            lse.stride(0), out.stride(0), out.stride(1), out.stride(2),
            DV=dv, BLOCK_S=max(2, triton.next_power_of_2(splits)), BLOCK_DV=max(16, triton.next_power_of_2(dv)),
        )
    return out
