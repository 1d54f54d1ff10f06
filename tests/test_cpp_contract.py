"""The C++ CPU kernels (slt_hw._C via the cpp backend, slt_hw.backends.cpu) against the golden
vectors and the PyTorch reference, bit for bit (int32 views), with 1 and 2 OpenMP threads.

Skipped when the extension is not importable, unless SLT_HW_REQUIRE_CPP=1 (CI), where that fails.
"""

from __future__ import annotations

import os

import golden
import pytest
import torch

from slt_hw import _ext, _ops
from slt_hw.contract import Dist, Key, default_scale, derive_key, freeze_thresholds, words_per_row
from slt_hw.reference import masks, prng

REQUIRE = os.environ.get("SLT_HW_REQUIRE_CPP", "0") == "1"
DISTS = ["signed_constant", "uniform", "normal"]
# K not a multiple of 32, K > 1024 (several offset blocks), tiny and parallel-sized shapes.
SHAPES = [(1, 1), (2, 33), (7, 37), (64, 31), (5, 1025), (3, 2100), (40, 1100), (300, 29)]


@pytest.fixture(scope="module")
def C():
    mod, why = _ext.load()
    if mod is None:
        if REQUIRE:
            pytest.fail(f"SLT_HW_REQUIRE_CPP=1 but the extension is unusable: {why}")
        pytest.skip(why)
    return mod


@pytest.fixture(scope="module")
def native(C):
    from slt_hw.backends import cpu

    return cpu


def mat_planes(native, key, n, k, dist, scale, planes, coat_scales, row_begin=0, row_end=None, **kw):
    """The cpp backend's materialise_planes on the op's arguments."""
    return native.materialize(planes, coat_scales, key.k0, key.k1, k, Dist.parse(dist).code, scale, row_begin,
                              n if row_end is None else row_end, **kw)


def mat_frozen(native, key, fkey, n, k, dist, scale, free_bits, offsets, p, pl, row_begin=0, row_end=None):
    return native.materialize(free_bits, offsets, key.k0, key.k1, fkey.k0, fkey.k1, k, Dist.parse(dist).code, scale,
                              p, pl, row_begin, n if row_end is None else row_end)


@pytest.fixture(params=[1, 2], ids=lambda t: f"threads{t}")
def threads(request):
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def assert_bit_equal(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    diff = (bits(got) != bits(want)).nonzero()
    assert diff.numel() == 0, f"{len(diff)} values differ, first at {diff[0].tolist()}"


def scale_for(dist: str, k: int) -> float:
    return default_scale(dist, k)


def nested_planes(n: int, k: int, coats: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    masks_ = []
    m = torch.rand(n, k, generator=g) < 0.7
    for _ in range(coats):
        masks_.append(m)
        m = m & (torch.rand(n, k, generator=g) < 0.6)
    return masks.pack_bits(torch.stack(masks_))  # (C, n, W) int32


# --------------------------------------------------------------------------- module basics


def test_contract_version_and_build_info(C):
    assert C.contract_version() == 1
    info = C.build_info()
    for field in ("compiler_id", "compiler_version", "openmp", "openmp_max_threads", "flags", "cuda_built"):
        assert field in info, field
    assert isinstance(info["openmp"], bool) and isinstance(info["cuda_built"], bool)
    assert "-ffast-math" not in info["flags"] and "-march=native" not in info["flags"]


@pytest.mark.parametrize("case", golden.GOLDEN["hashes"], ids=lambda c: str(c["counter"]))
def test_hash32_golden(C, case):
    assert C.hash32(case["k0"], case["k1"], case["counter"]) == case["hash"]


# --------------------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("case", golden.weight_cases(), ids=golden.case_id)
def test_weights_golden(native, threads, case):
    n, k = case["shape"]
    scale = golden.f32_from_bits(case["scale_f32_bits"])
    w = native.generate_weights(Key(case["k0"], case["k1"]), n, k, case["dist"], scale)
    golden.check_weights(case, w)


@pytest.mark.parametrize("case", golden.freeze_cases(), ids=golden.case_id)
def test_freeze_golden(native, threads, case):
    n, k = case["shape"]
    st = native.freeze_states(Key(case["k0"], case["k1"]), n, k, case["prune_threshold"],
                              case["lock_threshold"])
    golden.check_freeze(case, st)


# --------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_weights_match_reference(native, threads, dist, shape):
    n, k = shape
    key = derive_key(2024, f"t.{n}x{k}")
    s = scale_for(dist, k)
    want = prng.generate(key, n, k, dist, s)
    assert_bit_equal(native.generate_weights(key, n, k, dist, s), want)
    lo, hi = n // 3, n - n // 4
    assert_bit_equal(native.generate_weights(key, n, k, dist, s, row_begin=lo, row_end=hi), want[lo:hi])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_freeze_states_match_reference(native, threads, shape):
    n, k = shape
    fkey = derive_key(5, "f", 1)
    p, pl = freeze_thresholds(0.4, 0.25)
    assert torch.equal(native.freeze_states(fkey, n, k, p, pl), prng.freeze_states(fkey, n, k, p, pl))


@pytest.mark.parametrize("coat_scales", [[1.0], [1.0, 1.0, 1.0], [0.75, -0.75, 0.1]],
                         ids=["binary", "multicoat", "cancelling"])
@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_materialize_planes_match_reference(native, threads, shape, dist, coat_scales):
    n, k = shape
    key = derive_key(11, "planes")
    s = scale_for(dist, k)
    planes = nested_planes(n, k, len(coat_scales), seed=n * 7919 + k)
    g = torch.tensor(coat_scales, dtype=torch.float32)
    want = masks.materialize_planes(key, n, k, dist, s, planes, g)
    got = mat_planes(native, key, n, k, dist, s, planes, g)
    assert_bit_equal(got, want)
    if len(coat_scales) == 3 and coat_scales[1] < 0:  # m == 0 by cancellation must give +0.0
        assert not torch.signbit(got[got == 0]).any()
    lo, hi = n // 3, n - n // 4
    assert_bit_equal(mat_planes(native, key, n, k, dist, s, planes, g, lo, hi), want[lo:hi])


@pytest.mark.parametrize("probs", [(0.5, 0.2), (0.0, 0.0), (0.9, 0.1), (0.3, 0.0), (1.0, 0.0)],
                         ids=lambda p: f"p{p[0]}-l{p[1]}")
@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_materialize_frozen_match_reference(native, threads, shape, dist, probs):
    n, k = shape
    key, fkey = derive_key(3, "frozen", 0), derive_key(3, "frozen", 1)
    p, pl = freeze_thresholds(*probs)
    s = scale_for(dist, k)
    states = prng.freeze_states(fkey, n, k, p, pl)
    mask = torch.rand(n, k, generator=torch.Generator().manual_seed(n + 31 * k)) < 0.5
    free_bits = masks.pack_free_bits(mask, states)
    offsets = masks.frozen_offsets(fkey, n, k, p, pl)
    assert offsets.shape == (n, (words_per_row(k) + 31) // 32)
    want = masks.materialize_frozen(key, fkey, n, k, dist, s, free_bits, p, pl)
    got = mat_frozen(native, key, fkey, n, k, dist, s, free_bits, offsets, p, pl)
    assert_bit_equal(got, want)
    lo, hi = n // 3, n - n // 4
    part = mat_frozen(native, key, fkey, n, k, dist, s, free_bits, offsets, p, pl, lo, hi)
    assert_bit_equal(part, want[lo:hi])


# --------------------------------------------------------------------------- bad input


def test_op_checks_name_the_argument(native):
    """Bad arguments are refused by the op, before the backend, naming the argument."""
    key = derive_key(0, "w")
    planes = nested_planes(4, 40, 2, 0)
    g = torch.ones(2)
    code = Dist.NORMAL.code

    def mp(*w):
        return _ops.call("materialize_planes", *w, "cpp")

    with pytest.raises(TypeError, match="planes: expected dtype torch.int32"):
        mp(planes.to(torch.int64), g, key.k0, key.k1, 40, code, 0.1)
    with pytest.raises(ValueError, match="planes: expected"):
        mp(planes, g, key.k0, key.k1, 41 + 32, code, 0.1)
    with pytest.raises(TypeError, match="coat_scales: expected dtype torch.float32"):
        mp(planes, g.double(), key.k0, key.k1, 40, code, 0.1)
    with pytest.raises(ValueError, match="coat_scales"):
        mp(planes, torch.ones(3), key.k0, key.k1, 40, code, 0.1)
    with pytest.raises(ValueError, match="dist"):
        mp(planes, g, key.k0, key.k1, 40, 7, 0.1)
    with pytest.raises(ValueError, match="k0/k1"):
        mp(planes, g, 2**32, key.k1, 40, code, 0.1)
    with pytest.raises(ValueError, match="rows"):
        _ops.call("materialize_planes", planes, g, key.k0, key.k1, 40, code, 0.1, "cpp", 3, 2)
    # a strided mask is fine: the backend takes a contiguous copy
    strided = planes.transpose(1, 2).contiguous().transpose(1, 2)
    assert torch.equal(mp(strided, g, key.k0, key.k1, 40, code, 0.1), mp(planes, g, key.k0, key.k1, 40, code, 0.1))
    fkey = derive_key(0, "w", 1)
    p, pl = freeze_thresholds(0.5, 0.2)
    offsets = masks.frozen_offsets(fkey, 4, 40, p, pl)
    fb = torch.zeros(4, dtype=torch.int32)

    def mf(free_bits, offs, prune=p, lock=pl):
        return _ops.call("materialize_frozen", free_bits, offs, key.k0, key.k1, fkey.k0, fkey.k1, 40, code, 0.1,
                         prune, lock, "cpp")

    with pytest.raises(TypeError, match="offsets: expected dtype torch.int64"):
        mf(fb, offsets.to(torch.int32))
    with pytest.raises(ValueError, match="offsets"):
        mf(fb, offsets[:, :0])
    with pytest.raises(ValueError, match="free_bits: expected 1 dimensions"):
        mf(fb.view(2, 2), offsets)
    with pytest.raises(ValueError, match="lock_threshold: expected >= prune_threshold"):
        mf(fb, offsets, pl, p)
    with pytest.raises(ValueError, match="dist"):
        native.generate_weights(key, 4, 40, "gaussian", 0.1)
    with pytest.raises(ValueError, match="rows"):
        native.generate_weights(key, 4, 40, "normal", 0.1, row_begin=3, row_end=2)


def test_output_buffer_is_reused_and_checked(native):
    key = derive_key(3, "w")
    planes = nested_planes(6, 70, 2, 1)
    want = masks.materialize_planes(key, 6, 70, "normal", 0.2, planes, torch.ones(2))
    buf = torch.full((4, 70), float("nan"))
    got = mat_planes(native, key, 6, 70, "normal", 0.2, planes, torch.ones(2), 2, 6, out=buf)
    assert got.data_ptr() == buf.data_ptr()
    assert torch.equal(got.view(torch.int32), want[2:6].view(torch.int32))
    with pytest.raises(ValueError, match=r"out: expected .* shape \(4, 70\), got torch.float32 \(5, 70\)"):
        native.generate_weights(key, 6, 70, "normal", 0.2, 2, 6, out=torch.empty(5, 70))
    with pytest.raises(ValueError, match=r"out: expected a contiguous CPU float32 tensor"):
        native.generate_weights(key, 6, 70, "normal", 0.2, out=torch.empty(6, 70, dtype=torch.float64))


def test_short_free_bit_stream_is_refused(native, threads):
    n, k = 40, 1100
    key, fkey = derive_key(1, "x", 0), derive_key(1, "x", 1)
    p, pl = freeze_thresholds(0.2, 0.1)
    states = prng.freeze_states(fkey, n, k, p, pl)
    free_bits = masks.pack_free_bits(torch.ones(n, k, dtype=torch.bool), states)
    offsets = masks.frozen_offsets(fkey, n, k, p, pl)
    with pytest.raises(ValueError, match="free_bits"):
        mat_frozen(native, key, fkey, n, k, "uniform", 0.1, free_bits[:-2].contiguous(), offsets, p, pl)
    bad = offsets.clone()
    bad[-1, -1] = 10**12
    with pytest.raises(ValueError, match="free_bits"):
        mat_frozen(native, key, fkey, n, k, "uniform", 0.1, free_bits, bad, p, pl)


def test_raw_module_validates_before_touching_memory(C):
    """The extension's own contract checks (core/weight_desc.h), one WeightDesc for every entry."""
    W = C.WeightDesc
    with pytest.raises(ValueError, match="dist"):
        C.generate_weights(0, W(4, 40, 1, 2, dist=7, scale=0.1), 0, 4)
    with pytest.raises(ValueError, match="scale"):
        C.generate_weights(0, W(4, 40, 1, 2, scale=float("nan")), 0, 4)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        C.generate_weights(0, W(2**27 + 1, 32, 1, 2, scale=0.1), 0, 1)
    with pytest.raises(ValueError, match="rows"):
        C.generate_weights(0, W(4, 40, 1, 2, scale=0.1), 2, 5)
    with pytest.raises(ValueError, match="prune_thr/lock_thr"):
        C.freeze_states(0, W(4, 40, 1, 2, prune_thr=10, lock_thr=5))
    with pytest.raises(ValueError, match="coat"):
        C.materialize(0, W(4, 40, 1, 2, scale=0.1, planes=64, C=0), 0, 4)
    with pytest.raises(ValueError, match="offsets: null pointer"):
        C.materialize(64, W(4, 40, 1, 2, scale=0.1), 0, 4)  # no planes: the frozen format
    with pytest.raises(ValueError, match="rows"):
        C.slt_linear(W(4, 40, 1, 2, scale=0.1, planes=64, C=1, coat_scales=64), 64, 1, 40, 64, 4, 3, 5)
    with pytest.raises(TypeError):  # key words are uint32
        C.hash32(2**32, 0, 0)
    C.generate_weights(0, W(4, 40, 1, 2, scale=0.1), 2, 2)  # empty row range: nothing written
