"""The fused Triton slt_linear (kernels/linear.py) against the reference, every format and
distribution, both paths (GEMV with split-K, tensor-core GEMM), row ranges and odd shapes.
Without a GPU tests/conftest.py selects Triton's interpreter, so shapes stay small."""

from __future__ import annotations

import pytest

triton = pytest.importorskip("triton")

import torch  # noqa: E402
from packing import random_packed  # noqa: E402

from slt_hw import _ops, ops  # noqa: E402
from slt_hw.formats import Format  # noqa: E402
from slt_hw.kernels import linear  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DISTS = ["signed_constant", "uniform", "normal"]
FORMATS = ["binary", "multicoat", "frozen"]
# bf16 tl.dot is wrong in the interpreter (triton-lang/triton#11584): bf16 only on a GPU.
HALF = [torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])


def _packed(fmt: str, dist: str, n: int, k: int, seed: int = 7):
    return random_packed(fmt, dist, n, k, seed=seed, name=f"lin.{fmt}.{dist}", device=DEVICE)


def _fused(x, pw, bias=None, rows=None, **kw):
    """The kernel on the op's arguments (as slt_hw._ops checks them)."""
    _, w = _ops.weight_args(pw)
    fn = linear.linear_frozen if pw.format is Format.FROZEN else linear.linear_planes
    return fn(x, bias, *w, *(rows or (0, pw.out_features)), **kw)


def _x(m, k, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g).to(dtype).to(DEVICE)


def _close(got, want, dtype):
    # fp32: only the summation order differs. Half: the weight tile is rounded to the activation
    # dtype before tl.dot and the output is rounded once more.
    tol = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.numel() == 0:
        return
    scale = want.to(torch.float32).abs().max().clamp_min(1.0)
    err = (got.to(torch.float32) - want.to(torch.float32)).abs().max()
    assert err <= tol * scale, f"max error {err.item():.3g} (scale {scale.item():.3g})"


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_formats_and_dists(fmt, dist):
    # K = 1100: not a multiple of 32 and two offset-table blocks. Batch 1 takes the GEMV with
    # split-K (two 1024-column chunks), batch 17 the GEMM.
    n, k = 24, 1100
    pw = _packed(fmt, dist, n, k)
    bias = torch.randn(n).to(DEVICE)
    for m in (1, 17):
        x = _x(m, k, seed=m)
        _close(_fused(x, pw, bias), ops.slt_linear_reference(x, pw, bias), torch.float32)


@pytest.mark.parametrize("fmt,dist", [("binary", "normal"), ("binary", "signed_constant"), ("multicoat", "normal"),
                                      ("frozen", "normal")])
def test_regenerated_weights_bit_identical(fmt, dist):
    # x = rows of the identity picks columns of W_eff: every product but one is an exact zero,
    # so both paths must return W_effᵀ bit for bit (the contract, not a tolerance). Binary signed
    # constant takes the ±1 fast path, scaled once at the end: still the same bits.
    n, k = 20, 1070
    pw = _packed(fmt, dist, n, k)
    want = pw.materialize().t()
    cols = torch.tensor([0, 1, 31, 32, 500, 1023, 1024, 1069])
    eye = torch.eye(k, device=DEVICE)
    got = _fused(eye[cols], pw, path="gemv", split_k=2)
    assert torch.equal(got, want[cols.to(DEVICE)])
    cols = torch.arange(1040, 1070)  # the GEMM's last, partial K tile and offset block
    got = _fused(eye[cols], pw, path="gemm")
    assert torch.equal(got, want[cols.to(DEVICE)])


@pytest.mark.parametrize("path,split_k", [("gemv", 1), ("gemv", 3), ("gemm", None)])
def test_frozen_several_offset_blocks(path, split_k):
    n, k = 9, 2100  # three offset blocks, the last one partial
    pw = _packed("frozen", "uniform", n, k, seed=3)
    x = _x(5, k)
    _close(_fused(x, pw, path=path, split_k=split_k), ops.slt_linear_reference(x, pw), torch.float32)


@pytest.mark.parametrize("fmt", ["multicoat", "frozen"])
@pytest.mark.parametrize("path", ["gemv", "gemm"])
def test_row_ranges(fmt, path):
    n, k = 40, 1030
    pw = _packed(fmt, "signed_constant", n, k, seed=5)
    bias = torch.randn(n).to(DEVICE)
    x = _x(3, k)
    full = ops.slt_linear_reference(x, pw, bias)
    for r0, r1 in ((0, 40), (7, 29), (33, 34), (12, 12)):
        got = _fused(x, pw, bias[r0:r1], rows=(r0, r1), path=path)
        assert got.shape == (3, r1 - r0)
        _close(got, full[:, r0:r1], torch.float32)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("m", [1, 5, 16, 33])
def test_half_activations(dtype, m):
    n, k = 32, 200
    pw = _packed("binary", "uniform", n, k, seed=11)
    x = _x(m, k, dtype)
    bias = torch.randn(n).to(DEVICE)
    _close(_fused(x, pw, bias), ops.slt_linear_reference(x, pw, bias), dtype)


def test_batch_shapes():
    n, k = 12, 70
    pw = _packed("binary", "signed_constant", n, k)
    assert _fused(torch.empty(0, k, device=DEVICE), pw).shape == (0, n)
    assert _fused(torch.empty(2, 0, k, device=DEVICE), pw).shape == (2, 0, n)
    x = _x(6, k).reshape(2, 3, k)
    got = _fused(x, pw)
    assert got.shape == (2, 3, n)
    _close(got, ops.slt_linear_reference(x, pw), torch.float32)
    _close(_fused(_x(7, k), pw, path="gemm"), ops.slt_linear_reference(_x(7, k), pw), torch.float32)


def test_registered_backend_and_compile():
    n, k = 16, 96
    pw = _packed("multicoat", "normal", n, k)
    x = _x(3, k)
    want = ops.slt_linear_reference(x, pw)
    _close(ops.slt_linear(x, pw, backend="triton"), want, torch.float32)
    # The op stays opaque to the compiler: Dynamo traces the fake kernel, the kernel runs as is.
    fn = torch.compile(lambda t: ops.slt_linear(t, pw, backend="triton"), backend="aot_eager", fullgraph=True)
    _close(fn(x), want, torch.float32)


def test_argument_checks():
    """The op checks the arguments before the kernel runs; the kernel checks its own knobs."""
    pw = _packed("binary", "uniform", 4, 40)
    fz = _packed("frozen", "uniform", 4, 40)
    x = _x(2, 40)
    planes, coat_scales, *scalars = _ops.weight_args(pw)[1]
    free_bits, offsets, *fscalars = _ops.weight_args(fz)[1]

    def op(name, *args, rows=(0, None)):
        return _ops.call(name, *args, "triton", *rows)

    with pytest.raises(TypeError, match="x"):
        op("linear_planes", x.to(torch.int32), None, planes, coat_scales, *scalars)
    with pytest.raises(ValueError, match="x"):
        op("linear_planes", _x(2, 41), None, planes, coat_scales, *scalars)
    with pytest.raises(ValueError, match="rows"):
        op("linear_planes", x, None, planes, coat_scales, *scalars, rows=(3, 5))
    with pytest.raises(ValueError, match="bias"):
        op("linear_planes", x, torch.zeros(5, device=DEVICE), planes, coat_scales, *scalars)
    with pytest.raises(TypeError, match="planes"):
        op("linear_planes", x, None, planes.to(torch.int64), coat_scales, *scalars)
    with pytest.raises(ValueError, match="coat_scales"):
        op("linear_planes", x, None, planes, torch.ones(2, device=DEVICE), *scalars)
    with pytest.raises(ValueError, match="offsets"):
        op("linear_frozen", x, None, free_bits, offsets[:, :0], *fscalars)
    with pytest.raises(ValueError, match="lock_threshold"):
        op("linear_frozen", x, None, free_bits, offsets, *fscalars[:-2], 9, 3)
    with pytest.raises(ValueError, match="dist"):
        op("linear_planes", x, None, planes, coat_scales, *scalars[:3], 9, scalars[4])
    with pytest.raises(ValueError, match="path"):
        _fused(x, pw, path="gemmv")
    with pytest.raises(ValueError, match="split_k"):
        _fused(x, pw, path="gemv", split_k=0)


def test_autotune_configs():
    # GPU tuning lists: short (each config compiles on first use), within the keep() limits,
    # and tiles taller than the batch are pruned for small batches.
    gemv, gemm = linear._gemv_configs(), linear._gemm_configs()
    assert 4 <= len(gemv) <= 16 and 4 <= len(gemm) <= 16
    assert all(c.kwargs["BLOCK_N"] * c.kwargs["BLOCK_K"] <= 4096 * c.num_warps for c in gemv)
    assert all(linear.OFFSET_BLOCK % c.kwargs["BLOCK_K"] == 0 for c in gemv + gemm)  # frozen resets
    small = linear._prune_gemm(gemm, {"M": 12})
    assert small and all(c.kwargs["BLOCK_M"] <= 16 for c in small)
    assert linear._prune_gemm(gemm, {"M": 4096}) == gemm
