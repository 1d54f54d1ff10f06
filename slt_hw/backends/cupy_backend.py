"""slt_linear for CuPy arrays without building anything: csrc/cuda/linear.cu compiled at run time
by NVRTC (cupy.RawModule), the same source the extension builds with nvcc.

Inputs may be CuPy arrays or anything with `__dlpack__` on a CUDA device (torch tensors, a
PackedWeight's tensors); results are CuPy arrays. CuPy is imported on first use, so importing
this module never needs it.

    from slt_hw.backends import cupy_backend
    y = cupy_backend.slt_linear(x_cupy, packed)          # packed: a PackedWeight on CUDA
"""

from __future__ import annotations

import functools
import os
import pathlib
import tempfile

import numpy as np

from ..contract import OFFSET_BLOCK_WORDS, Dist, Key, check_geometry, check_scale, words_per_row

__all__ = ["available", "linear_frozen", "linear_planes", "slt_linear", "source"]

CSRC = pathlib.Path(__file__).resolve().parents[2] / "csrc"
SOURCE = CSRC / "cuda" / "linear.cu"
THREADS = 128
TILE = 64
GEMV_MAX_BATCH = 8
_ACT = {"float32": "float", "float16": "__half", "bfloat16": "__nv_bfloat16"}

# NVRTC releases without a built-in <cstdint>: the fixed-width types the header needs (LP64).
_CSTDINT_SHIM = """#pragma once
typedef signed char int8_t; typedef short int16_t; typedef int int32_t; typedef long int64_t;
typedef unsigned char uint8_t; typedef unsigned short uint16_t; typedef unsigned int uint32_t;
typedef unsigned long uint64_t; typedef unsigned long uintptr_t;
namespace std { using ::int8_t; using ::int16_t; using ::int32_t; using ::int64_t; using ::uint8_t;
using ::uint16_t; using ::uint32_t; using ::uint64_t; using ::uintptr_t; }
"""


def _cupy():
    try:
        import cupy
    except ImportError as e:  # the message names what to install
        raise RuntimeError(f"cupy_backend needs CuPy (pip install cupy-cuda12x or cupy-cuda13x): {e}") from None
    return cupy


def available() -> tuple[bool, str]:
    """(True, "") if CuPy imports and sees a GPU, else (False, why)."""
    try:
        cupy = _cupy()
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, "no CUDA device"
    except Exception as e:  # any CuPy or driver failure means "not available"
        return False, str(e)
    return True, ""


def source() -> str:
    return SOURCE.read_text()


def _names():
    return [f"slt::cuda::slt_{kind}<{t}, {'true' if frozen else 'false'}>"
            for kind in ("gemv", "gemm") for t in _ACT.values() for frozen in (False, True)]


@functools.cache
def _module(device_id: int):
    cupy = _cupy()
    with cupy.cuda.Device(device_id):
        cc = cupy.cuda.Device(device_id).compute_capability
        include = [f"-I{CSRC}"]
        cuda_path = cupy.cuda.get_cuda_path()
        if cuda_path and os.path.isdir(os.path.join(cuda_path, "include")):
            include.append(f"-I{os.path.join(cuda_path, 'include')}")  # mma.h, cuda_fp16.h
        options = ["-std=c++17", f"--gpu-architecture=sm_{cc}", *include]
        # Retry once per missing piece of a bare NVRTC: <cstdint> (shimmed), <mma.h> (FMA GEMM).
        for _ in range(3):
            try:
                mod = cupy.RawModule(code=source(), options=tuple(options), name_expressions=_names(),
                                     backend="nvrtc")
                mod.compile()
                return mod
            except cupy.cuda.compiler.CompileException as e:
                msg = str(e)
                if "cstdint" in msg and not any(o.endswith("slt_hw_shim") for o in options):
                    shim = pathlib.Path(tempfile.mkdtemp(prefix="slt_hw_nvrtc_")) / "slt_hw_shim"
                    shim.mkdir()
                    (shim / "cstdint").write_text(_CSTDINT_SHIM)
                    options.append(f"-I{shim}")
                elif "mma.h" in msg and "-DSLT_HW_NO_WMMA" not in options:
                    options.append("-DSLT_HW_NO_WMMA")
                else:
                    raise
        raise RuntimeError("cupy_backend: NVRTC compilation kept failing")


def _arr(a, arg: str, dtype: str | None = None):
    cupy = _cupy()
    if a is None:
        return None
    if not isinstance(a, cupy.ndarray):
        if not hasattr(a, "__dlpack__"):
            raise TypeError(f"{arg}: expected a CuPy array or a DLPack-capable CUDA array, got {type(a).__name__}")
        a = cupy.from_dlpack(a)
    if dtype is not None and a.dtype.name != dtype:
        raise TypeError(f"{arg}: expected dtype {dtype}, got {a.dtype.name}")
    return cupy.ascontiguousarray(a)


def _null():
    return np.uint64(0)  # a null pointer argument (8 bytes, like a device pointer)


def _run(x, bias, n, k, key: Key, dist: Dist, scale: float, rows, frozen: bool, fmt_args, path, split_k):
    cupy = _cupy()
    if x.dtype.name not in _ACT:
        raise TypeError(f"x: expected float32, float16 or bfloat16, got {x.dtype.name}")
    if x.ndim < 1 or x.shape[-1] != k:
        raise ValueError(f"x: expected (..., {k}), got {x.shape}")
    r0, r1 = (0, n) if rows is None else rows
    if not 0 <= r0 <= r1 <= n:
        raise ValueError(f"rows: expected 0 <= row_begin <= row_end <= {n}, got ({r0}, {r1})")
    r = r1 - r0
    if path not in (None, "gemv", "gemm"):
        raise ValueError(f"path: expected None, 'gemv' or 'gemm', got {path!r}")
    if bias is not None:
        bias = cupy.ascontiguousarray(bias, dtype=cupy.float32)
        if bias.shape != (r,):
            raise ValueError(f"bias: expected ({r},), got {bias.shape}")
    lead = x.shape[:-1]
    x2 = cupy.ascontiguousarray(x.reshape(-1, k))
    m = x2.shape[0]
    out = cupy.zeros((m, r), dtype=cupy.float32)
    if m and r:
        gemv = path == "gemv" or (path is None and m <= GEMV_MAX_BATCH)
        if gemv and m > GEMV_MAX_BATCH:
            raise ValueError(f"path: the GEMV path takes at most {GEMV_MAX_BATCH} activation rows, got {m}")
        kind = "gemv" if gemv else "gemm"
        fn = _module(x2.device.id).get_function(
            f"slt::cuda::slt_{kind}<{_ACT[x2.dtype.name]}, {'true' if frozen else 'false'}>")
        args = [x2, np.int64(m), np.int64(k), out, _null() if bias is None else bias, *fmt_args,
                np.int64(n), np.uint32(k), np.uint32(key.k0), np.uint32(key.k1), np.int32(dist.code),
                np.float32(scale), np.int64(r0), np.int64(r)]
        if gemv:
            nb = -(-words_per_row(k) // OFFSET_BLOCK_WORDS)
            if split_k is None:
                sms = cupy.cuda.Device(x2.device.id).attributes["MultiProcessorCount"]
                split_k = -(-2 * sms // -(-r // 4))
            if split_k < 1:
                raise ValueError(f"split_k: expected >= 1, got {split_k}")
            split_k = min(split_k, nb)
            bps = -(-nb // split_k)
            split_k = -(-nb // bps)  # out starts zeroed: partial sums are added atomically
            fn((-(-r // 4), split_k), (THREADS,), (*args, np.int64(bps)))
        else:
            fn((-(-m // TILE), -(-r // TILE)), (THREADS,), tuple(args))
    return out.astype(x.dtype, copy=False).reshape(*lead, r)


def linear_planes(x, planes, coat_scales, bias, key: Key, in_features: int, dist, scale: float, *, rows=None,
                  path: str | None = None, split_k: int | None = None):
    """y = x @ W_eff[rows]ᵀ + bias for the binary / multicoat formats; CuPy in, CuPy out."""
    dist = Dist.parse(dist)
    s = check_scale(scale)
    x = _arr(x, "x")
    planes = _arr(planes, "planes", "int32")
    if planes.ndim == 2:
        planes = planes[None]
    n = planes.shape[1]
    check_geometry(n, in_features)
    if planes.ndim != 3 or planes.shape[2] != words_per_row(in_features):
        raise ValueError(f"planes: expected (C, {n}, {words_per_row(in_features)}), got {planes.shape}")
    c = planes.shape[0]
    coat_scales = _arr(coat_scales, "coat_scales", "float32")
    if coat_scales.shape != (c,):
        raise ValueError(f"coat_scales: expected ({c},), got {coat_scales.shape}")
    fmt = [planes, np.int64(c), coat_scales, _null(), np.int64(0), _null(), np.uint32(0), np.uint32(0),
           np.uint32(0), np.uint32(0)]
    return _run(x, _arr(bias, "bias"), n, in_features, key, dist, s, rows, False, fmt, path, split_k)


def linear_frozen(x, free_bits, offsets, bias, key: Key, fkey: Key, in_features: int, dist, scale: float,
                  prune_thr: int, lock_thr: int, *, rows=None, path: str | None = None, split_k: int | None = None):
    """y = x @ W_eff[rows]ᵀ + bias for the partially frozen format; CuPy in, CuPy out."""
    dist = Dist.parse(dist)
    s = check_scale(scale)
    if not 0 <= prune_thr <= lock_thr <= 65536:
        raise ValueError(f"prune_thr/lock_thr: expected 0 <= P <= P + L <= 65536, got {prune_thr}, {lock_thr}")
    x = _arr(x, "x")
    free_bits = _arr(free_bits, "free_bits", "int32").reshape(-1)
    offsets = _arr(offsets, "offsets", "int64")
    n = offsets.shape[0]
    check_geometry(n, in_features)
    nb = -(-words_per_row(in_features) // OFFSET_BLOCK_WORDS)
    if offsets.shape != (n, nb):
        raise ValueError(f"offsets: expected ({n}, {nb}), got {offsets.shape}")
    fmt = [_null(), np.int64(0), _null(), free_bits if free_bits.size else _null(), np.int64(free_bits.size * 32),
           offsets, np.uint32(fkey.k0), np.uint32(fkey.k1), np.uint32(prune_thr), np.uint32(lock_thr)]
    return _run(x, _arr(bias, "bias"), n, in_features, key, dist, s, rows, True, fmt, path, split_k)


def slt_linear(x, packed, bias=None, *, rows=None, path: str | None = None, split_k: int | None = None):
    """slt_hw.ops.slt_linear for CuPy: `packed` is a PackedWeight whose tensors are on the GPU."""
    from ..formats import Format

    if packed.format is Format.FROZEN:
        return linear_frozen(x, packed.free_bits, packed.offsets, bias, packed.key, packed.freeze_key,
                             packed.in_features, packed.dist, packed.scale, packed.prune_threshold,
                             packed.lock_threshold, rows=rows, path=path, split_k=split_k)
    return linear_planes(x, packed.planes, packed.coat_scales, bias, packed.key, packed.in_features, packed.dist,
                         packed.scale, rows=rows, path=path, split_k=split_k)
