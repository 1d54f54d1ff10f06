"""The CUDA slt_linear (csrc/cuda/linear.cu) on a GPU: the cuda backend (slt_hw._C built with
CUDA) and the cupy backend (CuPy/NVRTC), both against the reference. What needs a GPU skips
cleanly without one."""

from __future__ import annotations

import pytest
import torch
from packing import random_packed

from slt_hw import _ext, _ops, dispatch, ops
from slt_hw.formats import pack_binary

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DISTS = ["signed_constant", "uniform", "normal"]
FORMATS = ["binary", "multicoat", "frozen"]


def _packed(fmt, dist, n, k, seed=3):
    return random_packed(fmt, dist, n, k, seed=seed, name=f"cuda.{fmt}.{dist}", device="cuda")


def _close(got, want):
    tol = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}[want.dtype]
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.numel():
        scale = want.float().abs().max().clamp_min(1.0)
        assert (got.float() - want.float()).abs().max() <= tol * scale


def _cuda_built() -> bool:
    mod, _ = _ext.load()
    return mod is not None and mod.build_info().get("cuda_built", False)


def _native(x, pw, bias=None, rows=None, **kw):
    from slt_hw.backends import cuda

    _, w = _ops.weight_args(pw)
    return cuda.linear(x, bias, *w, *(rows or (0, pw.out_features)), **kw)


def _via_cupy(x, pw, bias=None, **kw):
    cupy = pytest.importorskip("cupy")
    from slt_hw.backends import cupy as cupy_backend

    y = cupy_backend.slt_linear(cupy.from_dlpack(x), pw, None if bias is None else cupy.from_dlpack(bias), **kw)
    assert isinstance(y, cupy.ndarray)
    return torch.from_dlpack(y)


IMPLS = [pytest.param(_native, id="native"), pytest.param(_via_cupy, id="cupy")]


@pytest.fixture(params=IMPLS)
def impl(request):
    if request.param is _native and not _cuda_built():
        pytest.skip("slt_hw._C was built without CUDA")
    return request.param


@gpu
@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_formats_dists_paths(impl, fmt, dist, dtype):
    n, k = 200, 2100  # odd K, three offset blocks
    pw = _packed(fmt, dist, n, k)
    bias = torch.randn(n, device="cuda")
    for m in (1, 5, 8, 9, 100):
        x = torch.randn(m, k, device="cuda").to(dtype)
        _close(impl(x, pw, bias), ops.slt_linear_reference(x, pw, bias))
    x = torch.randn(3, k, device="cuda").to(dtype)
    _close(impl(x, pw, bias, path="gemv", split_k=1), ops.slt_linear_reference(x, pw, bias))
    _close(impl(x, pw, bias, path="gemm"), ops.slt_linear_reference(x, pw, bias))


@gpu
@pytest.mark.parametrize("fmt", FORMATS)
def test_weights_bit_identical(impl, fmt):
    n, k = 70, 1100
    pw = _packed(fmt, "normal", n, k)
    eye = torch.eye(k, device="cuda")
    want = pw.materialize().t()
    for path, cols in (("gemv", [0, 31, 32, 1023, 1024, 1099]), ("gemm", list(range(1030, 1100)))):
        got = impl(eye[cols], pw, path=path, split_k=1 if path == "gemv" else None)
        assert torch.equal(got, want[cols])


@gpu
@pytest.mark.parametrize("path", ["gemv", "gemm"])
def test_row_ranges(impl, path):
    n, k = 150, 1000
    pw = _packed("frozen", "uniform", n, k)
    x = torch.randn(4, k, device="cuda")
    full = ops.slt_linear_reference(x, pw)
    for r0, r1 in ((0, 150), (17, 90), (149, 150), (5, 5)):
        _close(impl(x, pw, rows=(r0, r1), path=path), full[:, r0:r1])


@gpu
@pytest.mark.parametrize("backend", ["cuda", "cupy"])
def test_registered_backends(backend):
    why = dispatch.reasons("cuda", "linear_planes")[backend]
    if why:
        pytest.skip("; ".join(why))
    pw = _packed("multicoat", "signed_constant", 64, 512)
    x = torch.randn(2, 512, device="cuda", dtype=torch.bfloat16)
    _close(ops.slt_linear(x, pw, backend=backend), ops.slt_linear_reference(x, pw))
    fz = _packed("frozen", "uniform", 64, 512)
    _close(ops.slt_linear(x, fz, backend=backend), ops.slt_linear_reference(x, fz))
    if backend == "cuda":  # the native materialise kernels, bit for bit
        for p in (pw, fz):
            fmt, w = _ops.weight_args(p)
            assert torch.equal(_ops.call(f"materialize_{fmt}", *w, "cuda"), p.materialize())


@gpu
def test_triton_on_gpu_matches_reference():
    pytest.importorskip("triton")
    for fmt in FORMATS:
        pw = _packed(fmt, "normal", 300, 4100)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            for m in (1, 7, 64):
                x = torch.randn(m, 4100, device="cuda").to(dtype)
                _close(ops.slt_linear(x, pw, backend="triton"), ops.slt_linear_reference(x, pw))


def test_cupy_backend_without_cupy_or_gpu():
    """Importing the cupy backend never needs CuPy; its NVRTC name expressions exist in the
    installed source (tests/test_packaging.py: the same from a wheel)."""
    import re

    from slt_hw.backends import cupy as cupy_backend

    ok, why = cupy_backend.available()
    assert ok or why
    src = cupy_backend.source()
    assert "#ifndef __CUDACC_RTC__" in src  # host launchers hidden from NVRTC
    assert (cupy_backend.csrc() / "core" / "slt_contract.h").is_file()
    for name in cupy_backend._names():
        kind = re.match(r"slt::cuda::(slt_\w+)<", name).group(1)
        assert re.search(rf"__global__ void __launch_bounds__\(kLinearThreads\) {kind}\(", src), name
    if not ok:
        with pytest.raises(RuntimeError, match="CuPy|cupy|CUDA|device"):
            cupy_backend.slt_linear(torch.zeros(1, 4), _packed_cpu())
        assert dispatch.reasons("cuda", "linear_planes")["cupy"]


def _packed_cpu():
    return pack_binary(torch.ones(2, 4, dtype=torch.bool), seed=1, name="w")


def test_cuda_backend_is_checked_by_the_op_first():
    """Bad inputs are refused by the op, naming the argument, before the cuda backend (so this
    runs without a GPU or a CUDA build); a backend that cannot run says why."""
    pw = _packed_cpu()
    planes, coat_scales, *scalars = _ops.weight_args(pw)[1]
    x = torch.zeros(1, 4)
    with pytest.raises(TypeError, match="x"):
        _ops.call("linear_planes", x.to(torch.int64), None, planes, coat_scales, *scalars, "cuda")
    with pytest.raises(ValueError, match="planes"):
        _ops.call("linear_planes", x, None, planes[:, :, :0], coat_scales, *scalars, "cuda")
    with pytest.raises(RuntimeError, match="backend argument: backend 'cuda' cannot run linear_planes on cpu"):
        _ops.call("linear_planes", x, None, planes, coat_scales, *scalars, "cuda")
    if not _cuda_built():
        assert any("without CUDA" in why for why in dispatch.reasons("cuda", "linear_planes")["cuda"])
