"""The cupy backend: slt_linear through CuPy, with nothing built ahead of time. linear.cu, the
same source the extension builds with nvcc, is compiled at run time by NVRTC (cupy.RawModule)
from the copy installed with the package (slt_hw/csrc: cuda/linear.cu and core/*.h).

As a registered backend it takes an op's checked torch CUDA tensors (shared with CuPy through
DLPack, launched on torch's current stream). CuPy code can call it directly too: `slt_linear`
takes CuPy arrays (or any DLPack CUDA array) and returns CuPy arrays. CuPy is imported on first
use, so importing this module never needs it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import os
import pathlib
import tempfile

import numpy as np
import torch

from .._ops import weight_args
from ..contract import OFFSET_BLOCK_WORDS, words_per_row
from ..dispatch import Backend, register
from . import composite

__all__ = ["available", "csrc", "linear", "slt_linear", "source"]

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
        raise RuntimeError(f"the cupy backend needs CuPy (pip install cupy-cuda12x or cupy-cuda13x): {e}") from None
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


def csrc() -> pathlib.Path:
    """The installed CUDA sources (package data slt_hw.csrc): the include root NVRTC compiles from."""
    return pathlib.Path(str(importlib.resources.files("slt_hw.csrc")))


def source() -> str:
    return (csrc() / "cuda" / "linear.cu").read_text()


def _names():
    return [f"slt::cuda::slt_{kind}<{t}, {'true' if frozen else 'false'}>"
            for kind in ("gemv", "gemm") for t in _ACT.values() for frozen in (False, True)]


@functools.cache
def _module(device_id: int):
    cupy = _cupy()
    with cupy.cuda.Device(device_id):
        cc = cupy.cuda.Device(device_id).compute_capability
        include = [f"-I{csrc()}"]
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
        raise RuntimeError("the cupy backend: NVRTC compilation kept failing")


def _arr(a, arg: str):
    """A contiguous CuPy view of a CuPy or DLPack array (None stays None)."""
    cupy = _cupy()
    if a is None:
        return None
    if not isinstance(a, cupy.ndarray):
        if not hasattr(a, "__dlpack__"):
            raise TypeError(f"{arg}: expected a CuPy array or a DLPack-capable CUDA array, got {type(a).__name__}")
        a = cupy.from_dlpack(a)
    return cupy.ascontiguousarray(a)


def _null():
    return np.uint64(0)  # a null pointer argument (8 bytes, like a device pointer)


def _weight(w):
    """(N, frozen, the kernels' weight arguments after `bias`, up to the row range) of a weight
    block of CuPy arrays and ints."""
    zeros = [np.uint32(0)] * 4
    if w[0].ndim == 3:  # planes (C, N, W), coat_scales (C,)
        planes, coat_scales, k0, k1, k, dist, scale = w
        n, frozen = planes.shape[1], False
        mask = [planes, np.int64(planes.shape[0]), coat_scales, _null(), np.int64(0), _null(), *zeros]
    else:
        free_bits, offsets, k0, k1, fk0, fk1, k, dist, scale, prune, lock = w
        n, frozen = offsets.shape[0], True
        mask = [_null(), np.int64(0), _null(), free_bits if free_bits.size else _null(), np.int64(free_bits.size * 32),
                offsets, np.uint32(fk0), np.uint32(fk1), np.uint32(prune), np.uint32(lock)]
    return n, frozen, k, [*mask, np.int64(n), np.uint32(k), np.uint32(k0), np.uint32(k1), np.int32(dist),
                          np.float32(scale)]


def _launch(x, bias, w, r0: int, r1: int, path, split_k):
    """y = x @ W_eff[r0:r1]ᵀ + bias on CuPy arrays, in x's dtype."""
    cupy = _cupy()
    if x.dtype.name not in _ACT:
        raise TypeError(f"x: expected float32, float16 or bfloat16, got {x.dtype.name}")
    if path not in (None, "gemv", "gemm"):
        raise ValueError(f"path: expected None, 'gemv' or 'gemm', got {path!r}")
    n, frozen, k, weight = _weight(w)
    r = r1 - r0
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
        args = [x2, np.int64(m), np.int64(k), out, _null() if bias is None else bias, *weight, np.int64(r0),
                np.int64(r)]
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
    return out.astype(x.dtype, copy=False).reshape(*x.shape[:-1], r)


def linear(x, bias, *rest, path: str | None = None, split_k: int | None = None):
    """The op slt_hw::linear_planes / linear_frozen (rest: the weight block, row_begin, row_end):
    torch tensors in and out, or CuPy arrays in and out. path: force "gemv" or "gemm"; split_k:
    GEMV K splits (default: enough to fill the GPU)."""
    cupy = _cupy()
    *w, r0, r1 = rest
    torch_in = isinstance(x, torch.Tensor)
    w = [_arr(a, "weight") if hasattr(a, "__dlpack__") else a for a in w]
    b = None if bias is None else cupy.ascontiguousarray(_arr(bias, "bias"), dtype=cupy.float32)
    stream = (cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream) if torch_in
              else contextlib.nullcontext())
    with stream:
        y = _launch(_arr(x, "x"), b, w, r0, r1, path, split_k)
    return torch.from_dlpack(y) if torch_in else y


def slt_linear(x, packed, bias=None, *, rows=None, path: str | None = None, split_k: int | None = None):
    """slt_hw.slt_linear for CuPy: `packed` is a PackedWeight whose tensors are on the GPU; rows:
    (row_begin, row_end) of the weight (default all); CuPy in, CuPy out."""
    _, w = weight_args(packed)
    r0, r1 = (0, packed.out_features) if rows is None else rows
    return linear(x, bias, *w, r0, r1, path=path, split_k=split_k)


def _reasons(device: torch.device) -> list[str]:
    if device.type != "cuda":
        return [f"runs on CUDA tensors only, got {device.type}"]
    ok, why = available()
    return [] if ok else [why]


_ONLY_LINEAR = "NVRTC compiles linear.cu only"

register(Backend(
    name="cupy", priority=25,
    description="linear.cu compiled at run time by NVRTC through CuPy (nothing built ahead): GEMV or WMMA GEMM",
    not_supported_reasons=_reasons,
    ops=composite.linear_ops(linear),
    lacks={"linear_int8_planes": f"no int8 kernel ({_ONLY_LINEAR})",
           "linear_int8_frozen": f"no int8 kernel ({_ONLY_LINEAR})",
           "conv2d_int8_planes": f"no int8 kernel ({_ONLY_LINEAR})",
           "conv2d_int8_frozen": f"no int8 kernel ({_ONLY_LINEAR})",
           "materialize_planes": f"{_ONLY_LINEAR}, not generate.cu",
           "materialize_frozen": f"{_ONLY_LINEAR}, not generate.cu",
           "linear_grouped": "no grouped kernel: slt_mha runs one linear per projection"},
))
