"""The C++ CPU kernels (`slt_hw._C`) behind torch-tensor wrappers.

The extension is torch-free: it takes data pointers and sizes. This module owns the checks a
raw pointer cannot make (device, dtype, contiguity, shape) and raises ValueError naming the
argument. Results are bit-identical to `slt_hw.reference` (tests/test_cpp_contract.py).
Threads: torch.get_num_threads(), so `torch.set_num_threads` governs both.
"""

from __future__ import annotations

import os

import torch

from .. import _ext
from ..contract import OFFSET_BLOCK_WORDS, Dist, Key, check_geometry, check_scale, words_per_row

__all__ = ["cpu_isas", "freeze_states", "generate_weights", "linear_frozen", "linear_planes", "materialize_frozen",
           "materialize_planes"]


def _check_tensor(t, arg: str, dtype: torch.dtype, shape: tuple[int, ...] | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{arg}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{arg}: expected a CPU tensor, got device {t.device}")
    if t.dtype != dtype:
        raise ValueError(f"{arg}: expected dtype {dtype}, got {t.dtype}")
    if not t.is_contiguous():
        raise ValueError(f"{arg}: expected a contiguous tensor")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{arg}: expected shape {shape}, got {tuple(t.shape)}")


def _check_key(key, arg: str) -> Key:
    if not isinstance(key, Key):
        raise ValueError(f"{arg}: expected a slt_hw.contract.Key, got {type(key).__name__}")
    for part in (key.k0, key.k1):
        if not 0 <= part <= 0xFFFFFFFF:
            raise ValueError(f"{arg}: key words must be uint32, got {key}")
    return key


def _check_rows(n: int, row_begin: int, row_end: int | None) -> tuple[int, int]:
    row_end = n if row_end is None else row_end
    if not 0 <= row_begin <= row_end <= n:
        raise ValueError(f"row_begin/row_end: [{row_begin}, {row_end}) is not within [0, {n}]")
    return row_begin, row_end


def _check_thresholds(prune_thr: int, lock_thr: int) -> None:
    if not 0 <= prune_thr <= lock_thr <= 65536:
        raise ValueError(
            f"prune_thr/lock_thr: expected 0 <= prune_thr <= lock_thr <= 65536 (lock_thr is P + L, "
            f"see contract.freeze_thresholds), got {prune_thr}, {lock_thr}"
        )


def _output(out: torch.Tensor | None, rows: int, k: int) -> torch.Tensor:
    """A fresh (rows, k) float32 tensor, or the caller's, checked (reusing one avoids page faults)."""
    if out is None:
        return torch.empty(rows, k, dtype=torch.float32)
    _check_tensor(out, "out", torch.float32, (rows, k))
    return out


def generate_weights(key: Key, n: int, k: int, dist: Dist | str, scale: float,
                     row_begin: int = 0, row_end: int | None = None, *,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """Rows [row_begin, row_end) of W0, float32 (row_end - row_begin, k)."""
    mod = _ext.require()
    _check_key(key, "key")
    check_geometry(n, k)
    s = check_scale(scale)
    code = Dist.parse(dist).code
    row_begin, row_end = _check_rows(n, row_begin, row_end)
    out = _output(out, row_end - row_begin, k)
    mod.generate_weights(out.data_ptr(), n, k, key.k0, key.k1, code, s, row_begin, row_end,
                         torch.get_num_threads())
    return out


def freeze_states(fkey: Key, n: int, k: int, prune_thr: int, lock_thr: int) -> torch.Tensor:
    """(n, k) uint8: 0 pruned, 1 locked, 2 free (lock_thr = P + L)."""
    mod = _ext.require()
    _check_key(fkey, "fkey")
    check_geometry(n, k)
    _check_thresholds(prune_thr, lock_thr)
    out = torch.empty(n, k, dtype=torch.uint8)
    mod.freeze_states(out.data_ptr(), n, k, fkey.k0, fkey.k1, prune_thr, lock_thr,
                      torch.get_num_threads())
    return out


def materialize_planes(key: Key, n: int, k: int, dist: Dist | str, scale: float,
                       planes: torch.Tensor, coat_scales: torch.Tensor | None = None,
                       row_begin: int = 0, row_end: int | None = None, *,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """Binary / multicoat effective weights of rows [row_begin, row_end), float32.

    planes: (C, n, ceil(k/32)) int32 words; coat_scales: (C,) float32 (None: all 1)."""
    mod = _ext.require()
    _check_key(key, "key")
    check_geometry(n, k)
    s = check_scale(scale)
    code = Dist.parse(dist).code
    if not isinstance(planes, torch.Tensor) or planes.dim() != 3 or planes.shape[0] < 1:
        raise ValueError(f"planes: expected a (C >= 1, {n}, {words_per_row(k)}) int32 tensor")
    c = planes.shape[0]
    _check_tensor(planes, "planes", torch.int32, (c, n, words_per_row(k)))
    if coat_scales is None:
        coat_scales = torch.ones(c, dtype=torch.float32)
    _check_tensor(coat_scales, "coat_scales", torch.float32, (c,))
    row_begin, row_end = _check_rows(n, row_begin, row_end)
    out = _output(out, row_end - row_begin, k)
    mod.materialize_planes(out.data_ptr(), planes.data_ptr(), c, coat_scales.data_ptr(), n, k,
                           key.k0, key.k1, code, s, row_begin, row_end, torch.get_num_threads())
    return out


def materialize_frozen(key: Key, fkey: Key, n: int, k: int, dist: Dist | str, scale: float,
                       free_bits: torch.Tensor, offsets: torch.Tensor, prune_thr: int, lock_thr: int,
                       row_begin: int = 0, row_end: int | None = None, *,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """Partially frozen effective weights of rows [row_begin, row_end), float32.

    free_bits: 1-D int32 free-bit stream; offsets: (n, ceil(W/32)) int64 (reference.masks.frozen_offsets).
    Raises ValueError if a free weight's stream index falls outside free_bits."""
    mod = _ext.require()
    _check_key(key, "key")
    _check_key(fkey, "fkey")
    check_geometry(n, k)
    s = check_scale(scale)
    code = Dist.parse(dist).code
    _check_thresholds(prune_thr, lock_thr)
    if isinstance(free_bits, torch.Tensor) and free_bits.dim() != 1:
        raise ValueError(f"free_bits: expected a 1-D int32 tensor, got shape {tuple(free_bits.shape)}")
    _check_tensor(free_bits, "free_bits", torch.int32)
    nb = (words_per_row(k) + OFFSET_BLOCK_WORDS - 1) // OFFSET_BLOCK_WORDS
    _check_tensor(offsets, "offsets", torch.int64, (n, nb))
    row_begin, row_end = _check_rows(n, row_begin, row_end)
    out = _output(out, row_end - row_begin, k)
    mod.materialize_frozen(out.data_ptr(), free_bits.data_ptr(), free_bits.numel(), offsets.data_ptr(),
                           n, k, key.k0, key.k1, fkey.k0, fkey.k1, prune_thr, lock_thr, code, s,
                           row_begin, row_end, torch.get_num_threads())
    return out


# --------------------------------------------------------------------------- fused linear

ISA_ENV = "SLT_HW_CPU_ISA"


KNOWN_ISAS = ("scalar", "avx2", "avx512", "avx512vnni")


def cpu_isas() -> list[str]:
    """Instruction sets the fused kernels can use here, worst first (e.g. ['scalar', 'avx2',
    'avx512']); 'auto' takes the last."""
    return list(_ext.require().cpu_isas())


def _isa(isa: str | None) -> str:
    name = isa or os.environ.get(ISA_ENV, "auto") or "auto"
    if name != "auto" and name not in cpu_isas():
        source = "isa" if isa else ISA_ENV
        if name in KNOWN_ISAS:
            raise ValueError(f"{source}: this CPU does not support {name!r} (it supports {cpu_isas()})")
        raise ValueError(f"{source}: expected 'auto' or one of {cpu_isas()} (what this CPU supports), got {name!r}")
    return name


def _rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """x as a (M, k) float32 tensor with unit column stride (rows may be strided)."""
    x2 = x.reshape(-1, k).to(torch.float32)
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _linear(x, n, k, key, dist, scale, bias, isa, threads, rows, planes=None, coat_scales=None, free_bits=None,
            offsets=None, fkey=None, prune_thr=0, lock_thr=0, int8=False):
    mod = _ext.require()
    _check_key(key, "key")
    r0, r1 = (0, n) if rows is None else rows
    if not 0 <= r0 < r1 <= n:
        raise ValueError(f"rows: expected 0 <= row_begin < row_end <= {n}, got [{r0}, {r1})")
    x2 = _rows(x, k)
    xq = xs = None
    if int8:
        if Dist.parse(dist) is not Dist.SIGNED_CONSTANT:
            got = Dist.parse(dist).value
            raise ValueError(f"dist: int8 activations need the signed_constant distribution, got {got}")
        from ..ops import quantize_activations  # one quantizer for the kernel and its reference

        xq, xs = quantize_activations(x2)
    y = torch.empty(x2.shape[0], r1 - r0, dtype=torch.float32)
    b = None if bias is None else bias.to(torch.float32).contiguous()
    if b is not None:
        _check_tensor(b, "bias", torch.float32, (r1 - r0,))
    fk0, fk1 = (fkey.k0, fkey.k1) if fkey is not None else (0, 0)
    ldx = k if int8 or not x2.shape[0] else x2.stride(0)
    mod.slt_linear(0 if int8 else x2.data_ptr(), x2.shape[0], ldx, y.data_ptr(), r1 - r0, n, k,
                   key.k0, key.k1, Dist.parse(dist).code, check_scale(scale), _ptr(b), _ptr(planes),
                   0 if planes is None else planes.shape[0], _ptr(coat_scales), _ptr(free_bits),
                   0 if free_bits is None else free_bits.numel(), _ptr(offsets), fk0, fk1, prune_thr, lock_thr,
                   _isa(isa), torch.get_num_threads() if threads is None else threads, r0, r1, _ptr(xq), _ptr(xs))
    return y.reshape(*x.shape[:-1], r1 - r0)


def linear_planes(x: torch.Tensor, planes: torch.Tensor, coat_scales: torch.Tensor, bias: torch.Tensor | None,
                  key: Key, k: int, dist: Dist | str, scale: float, *, isa: str | None = None,
                  threads: int | None = None, rows: tuple[int, int] | None = None, int8: bool = False) -> torch.Tensor:
    """Fused binary / multicoat linear: float32 (..., N), or (..., r1 - r0) for rows=(r0, r1) (a
    convolution group); the weights are never materialised. int8=True quantizes x per row
    (signed-constant weights only) and sums in integers."""
    if not isinstance(planes, torch.Tensor) or planes.dim() != 3:
        raise ValueError("planes: expected a (C, N, W) int32 tensor")
    c, n = planes.shape[0], planes.shape[1]
    check_geometry(n, k)
    _check_tensor(planes, "planes", torch.int32, (c, n, words_per_row(k)))
    _check_tensor(coat_scales, "coat_scales", torch.float32, (c,))
    return _linear(x, n, k, key, dist, scale, bias, isa, threads, rows, planes=planes, coat_scales=coat_scales,
                   int8=int8)


def linear_frozen(x: torch.Tensor, free_bits: torch.Tensor, offsets: torch.Tensor, bias: torch.Tensor | None,
                  key: Key, fkey: Key, k: int, dist: Dist | str, scale: float, prune_thr: int, lock_thr: int, *,
                  isa: str | None = None, threads: int | None = None,
                  rows: tuple[int, int] | None = None, int8: bool = False) -> torch.Tensor:
    """Fused partially frozen linear: float32 (..., N) (or the rows=(r0, r1) slice)."""
    _check_key(fkey, "fkey")
    if not isinstance(offsets, torch.Tensor) or offsets.dim() != 2:
        raise ValueError("offsets: expected an (N, ceil(W/32)) int64 tensor")
    n = offsets.shape[0]
    check_geometry(n, k)
    _check_thresholds(prune_thr, lock_thr)
    nb = (words_per_row(k) + OFFSET_BLOCK_WORDS - 1) // OFFSET_BLOCK_WORDS
    _check_tensor(offsets, "offsets", torch.int64, (n, nb))
    if isinstance(free_bits, torch.Tensor) and free_bits.dim() != 1:
        raise ValueError(f"free_bits: expected a 1-D int32 tensor, got shape {tuple(free_bits.shape)}")
    _check_tensor(free_bits, "free_bits", torch.int32)
    return _linear(x, n, k, key, dist, scale, bias, isa, threads, rows, free_bits=free_bits, offsets=offsets,
                   fkey=fkey, prune_thr=prune_thr, lock_thr=lock_thr, int8=int8)
