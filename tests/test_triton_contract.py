"""The Triton backend (slt_hw.kernels) against the golden vectors and the PyTorch reference,
bit for bit. Without a GPU, tests/conftest.py selects Triton's interpreter (CPU tensors)."""

from __future__ import annotations

import pytest

triton = pytest.importorskip("triton")

import golden  # noqa: E402
import torch  # noqa: E402
import triton.language as tl  # noqa: E402

from slt_hw import _ops, kernels  # noqa: E402
from slt_hw.contract import Dist, Key, derive_key, freeze_thresholds, words_per_row  # noqa: E402
from slt_hw.reference import masks, prng  # noqa: E402

kc = kernels.contract  # the @triton.jit helpers

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DISTS = ["signed_constant", "uniform", "normal"]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32).cpu()


def assert_bit_equal(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    diff = (_bits(got) != _bits(want)).nonzero()
    assert diff.numel() == 0, f"{len(diff)} values differ, first at {diff[0].tolist()}"


def _key(case) -> Key:
    return Key(case["k0"], case["k1"])


# --------------------------------------------------------------------------- test kernels


@triton.jit
def _hash_scalar_kernel(out_ptr, k0, k1, c):
    # No do_not_specialize on purpose: on a GPU a key equal to 1 arrives as a constexpr and one
    # >= 2**31 as int64; the helpers must cope with both.
    tl.store(out_ptr, kc.hash32(k0, k1, c).to(tl.int64))


@triton.jit
def _hash_tensor_kernel(out_ptr, k0_ptr, k1_ptr, c_ptr, n, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    m = i < n
    h = kc.hash32(tl.load(k0_ptr + i, mask=m), tl.load(k1_ptr + i, mask=m), tl.load(c_ptr + i, mask=m))
    tl.store(out_ptr + i, h.to(tl.int64), mask=m)


@triton.jit(do_not_specialize=["k0", "k1"])
def _weight_value_kernel(out_ptr, N, K, Kp, k0, k1, scale, table_ptr, DIST: tl.constexpr,
                         BLOCK: tl.constexpr):
    # The per-element path (one hash per weight), as opposed to the tiled one in materialize.
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    n = i // K
    k = i % K
    w = kc.weight_value(k0, k1, n, k, Kp, DIST, scale, table_ptr)
    tl.store(out_ptr + i, w, mask=i < N * K)


@triton.jit(do_not_specialize=["fk0", "fk1", "prune_thr", "lock_thr"])
def _freeze_state_kernel(out_ptr, N, K, Kp, fk0, fk1, prune_thr, lock_thr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    st = kc.freeze_state(fk0, fk1, i // K, i % K, Kp, prune_thr, lock_thr)
    tl.store(out_ptr + i, st.to(tl.uint8), mask=i < N * K)


@triton.jit(do_not_specialize=["k0", "k1"])
def _row_sign_kernel(out_ptr, K, Kp: tl.constexpr, k0, k1, scale, BLOCK_W: tl.constexpr):
    # The GEMV pattern: one row per program, BLOCK_W sign words per step, expanded in registers.
    # (Kp constexpr only to keep the interpreter's loop bound a Python int.)
    n = tl.program_id(0)
    for w_start in range(0, Kp // 32, BLOCK_W):
        words = w_start + tl.arange(0, BLOCK_W)
        bits = kc.expand_bits_1d(kc.sign_word(k0, k1, n, words, Kp), BLOCK_W)
        cols = w_start * 32 + tl.arange(0, BLOCK_W * 32)
        tl.store(out_ptr + n * K + cols, kc.signed_value(bits, scale), mask=cols < K)


def _run_weight_value(key, n, k, dist, scale):
    out = torch.empty(n, k, dtype=torch.float32, device=DEVICE)
    block = 1024
    code = {"signed_constant": 0, "uniform": 1, "normal": 2}[dist]
    _weight_value_kernel[(triton.cdiv(n * k, block),)](
        out, n, k, words_per_row(k) * 32, key.k0, key.k1, scale, prng.normal_table(DEVICE),
        DIST=code, BLOCK=block)
    return out


# --------------------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("case", golden.GOLDEN["hashes"], ids=lambda c: f"{c['k0']}-{c['k1']}-{c['counter']}")
def test_hash_scalar_args(case):
    out = torch.zeros(1, dtype=torch.int64, device=DEVICE)
    _hash_scalar_kernel[(1,)](out, case["k0"], case["k1"], case["counter"])
    assert int(out.item()) == case["hash"]


def test_hash_tensor_args():
    cases = golden.GOLDEN["hashes"]
    col = lambda f: torch.tensor([c[f] for c in cases], dtype=torch.int64, device=DEVICE)  # noqa: E731
    out = torch.zeros(len(cases), dtype=torch.int64, device=DEVICE)
    _hash_tensor_kernel[(1,)](out, col("k0"), col("k1"), col("counter"), len(cases), BLOCK=8)
    assert out.tolist() == [c["hash"] for c in cases]


@pytest.mark.parametrize("case", golden.weight_cases(), ids=golden.case_id)
def test_golden_weights(case):
    n, k = case["shape"]
    scale = golden.f32_from_bits(case["scale_f32_bits"])
    golden.check_weights(case, kernels.generate_weights(_key(case), n, k, case["dist"], scale, DEVICE))
    golden.check_weights(case, _run_weight_value(_key(case), n, k, case["dist"], scale))


@pytest.mark.parametrize("case", golden.freeze_cases(), ids=golden.case_id)
def test_golden_freeze(case):
    n, k = case["shape"]
    p, lk = case["prune_threshold"], case["lock_threshold"]
    golden.check_freeze(case, kernels.freeze_states(_key(case), n, k, p, lk, DEVICE))
    out = torch.empty(n, k, dtype=torch.uint8, device=DEVICE)
    _freeze_state_kernel[(triton.cdiv(n * k, 1024),)](
        out, n, k, words_per_row(k) * 32, case["k0"], case["k1"], p, lk, BLOCK=1024)
    golden.check_freeze(case, out)


# --------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("shape,blocks", [
    ((1, 1), (16, 128)),
    ((37, 65), (16, 128)),
    ((37, 65), (1, 32)),
    ((5, 1100), (4, 512)),
])
def test_generate_matches_reference(dist, shape, blocks):
    key = derive_key(2024, f"t.{dist}")
    n, k = shape
    scale = 0.0123
    want = prng.generate(key, n, k, dist, scale, DEVICE)
    got = kernels.generate_weights(key, n, k, dist, scale, DEVICE, block_n=blocks[0], block_k=blocks[1])
    assert_bit_equal(got, want)


def test_row_sign_words_expand():
    key = derive_key(5, "gemv")
    n, k, scale = 3, 1000, 0.5
    out = torch.full((n, k), 7.0, device=DEVICE)
    _row_sign_kernel[(n,)](out, k, words_per_row(k) * 32, key.k0, key.k1, scale, BLOCK_W=8)
    assert_bit_equal(out, prng.generate(key, n, k, "signed_constant", scale, DEVICE))


@pytest.mark.parametrize("p_prune,p_lock", [(0.5, 0.2), (0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.1, 0.9)])
def test_freeze_states_match_reference(p_prune, p_lock):
    fkey = derive_key(9, "freeze", 1)
    n, k = 9, 1061
    p, lk = freeze_thresholds(p_prune, p_lock)
    want = prng.freeze_states(fkey, n, k, p, lk, DEVICE)
    assert torch.equal(kernels.freeze_states(fkey, n, k, p, lk, DEVICE).cpu(), want.cpu())


def _nested_planes(n: int, k: int, c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    bits = torch.rand(n, k, generator=g) < 0.6
    planes = []
    for _ in range(c):
        planes.append(masks.pack_bits(bits))
        bits = bits & (torch.rand(n, k, generator=g) < 0.5)
    return torch.stack(planes).to(DEVICE)


def _mat_planes(key, n, k, dist, scale, planes, g, rows=None, **kw):
    """The kernel on slt_hw::materialize_planes' arguments."""
    return kernels.materialize_planes(planes, g, key.k0, key.k1, k, Dist.parse(dist).code, scale,
                                      *(rows or (0, n)), **kw)


def _mat_frozen(key, fkey, n, k, dist, scale, free_bits, offsets, p, lk, rows=None, **kw):
    return kernels.materialize_frozen(free_bits, offsets, key.k0, key.k1, fkey.k0, fkey.k1, k, Dist.parse(dist).code,
                                      scale, p, lk, *(rows or (0, n)), **kw)


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("shape,coats", [((5, 37), 1), ((19, 1100), 2), ((64, 1100), 3), ((3, 70), 3)])
def test_materialize_planes(dist, shape, coats):
    n, k = shape
    key = derive_key(77, f"planes.{dist}")
    scale = 0.07
    planes = _nested_planes(n, k, coats, seed=n * 1000 + coats)
    for coat_scales in ([1.0] * coats, [0.75, -1.3, 2.5][:coats]):
        g = torch.tensor(coat_scales, dtype=torch.float32, device=DEVICE)
        want = masks.materialize_planes(key, n, k, dist, scale, planes, g)
        got = _mat_planes(key, n, k, dist, scale, planes, g)
        assert_bit_equal(got, want)
        assert_bit_equal(_mat_planes(key, n, k, dist, scale, planes, g, (n // 3, n - n // 4)),
                         want[n // 3:n - n // 4])
    # where no coat is set the weight is +0.0, never -0.0
    assert not (_bits(got) == -(2**31)).any()


def test_materialize_planes_high_bit_and_blocks():
    # every bit set, including bit 31 (negative int32 words); padding bits must stay zero
    n, k = 6, 95
    key = derive_key(1, "full")
    planes = masks.pack_bits(torch.ones(n, k, dtype=torch.bool))[None].to(DEVICE)
    assert (planes < 0).any()
    g = torch.ones(1, dtype=torch.float32, device=DEVICE)
    want = prng.generate(key, n, k, "uniform", 0.3, DEVICE)
    for bn, bk in ((1, 32), (8, 64), (16, 128)):
        got = _mat_planes(key, n, k, "uniform", 0.3, planes, g, block_n=bn, block_k=bk)
        assert_bit_equal(got, want)


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("shape,p_prune,p_lock,block_n", [
    ((7, 2100), 0.5, 0.2, 4),     # three offset blocks, the last one partial
    ((64, 1100), 0.3, 0.3, 8),
    ((1, 1025), 0.0, 0.0, 1),     # all free
    ((5, 3000), 0.9, 0.05, 2),
])
def test_materialize_frozen(dist, shape, p_prune, p_lock, block_n):
    n, k = shape
    key = derive_key(31, f"frozen.{dist}")
    fkey = derive_key(31, f"frozen.{dist}", 1)
    p, lk = freeze_thresholds(p_prune, p_lock)
    states = prng.freeze_states(fkey, n, k, p, lk, DEVICE)
    g = torch.Generator().manual_seed(n + k)
    mask = (torch.rand(n, k, generator=g) < 0.5).to(DEVICE)
    free_bits = masks.pack_free_bits(mask, states)
    offsets = masks.frozen_offsets(fkey, n, k, p, lk, DEVICE)
    scale = 0.021
    want = masks.materialize_frozen(key, fkey, n, k, dist, scale, free_bits, p, lk)
    got = _mat_frozen(key, fkey, n, k, dist, scale, free_bits, offsets, p, lk, block_n=block_n)
    assert_bit_equal(got, want)
    rows = (n // 3, n - n // 4)
    assert_bit_equal(_mat_frozen(key, fkey, n, k, dist, scale, free_bits, offsets, p, lk, rows, block_n=block_n),
                     want[rows[0]:rows[1]])


@pytest.mark.parametrize("p_prune,p_lock", [(1.0, 0.0), (0.0, 1.0)])
def test_materialize_frozen_no_free_weights(p_prune, p_lock):
    n, k = 3, 40
    key, fkey = derive_key(2, "nf"), derive_key(2, "nf", 1)
    p, lk = freeze_thresholds(p_prune, p_lock)
    offsets = masks.frozen_offsets(fkey, n, k, p, lk, DEVICE)
    assert int(offsets.abs().sum()) == 0
    empty = torch.zeros(0, dtype=torch.int32, device=DEVICE)
    got = _mat_frozen(key, fkey, n, k, "normal", 0.5, empty, offsets, p, lk)
    want = masks.materialize_frozen(key, fkey, n, k, "normal", 0.5, torch.zeros(1, dtype=torch.int32,
                                    device=DEVICE), p, lk)
    assert_bit_equal(got, want)


def test_argument_checks():
    """materialise is checked by its op (before the kernel); the dense utilities check their own."""
    key = Key(1, 2)
    planes = torch.zeros(1, 2, 2, dtype=torch.int32, device=DEVICE)
    g = torch.ones(1, dtype=torch.float32, device=DEVICE)
    with pytest.raises(TypeError, match="planes"):
        _ops.call("materialize_planes", planes.to(torch.int64), g, 1, 2, 33, 1, 1.0, "triton")
    with pytest.raises(ValueError, match="coat_scales"):
        _ops.call("materialize_planes", planes, torch.ones(2, device=DEVICE), 1, 2, 33, 1, 1.0, "triton")
    with pytest.raises(ValueError, match="offsets"):
        _ops.call("materialize_frozen", planes.reshape(-1), torch.zeros(2, 2, dtype=torch.int64, device=DEVICE),
                  1, 2, 1, 2, 33, 1, 1.0, 0, 0, "triton")
    with pytest.raises(ValueError, match="lock_threshold"):
        kernels.freeze_states(key, 2, 33, 10, 5, DEVICE)
    with pytest.raises(ValueError, match="dist"):
        kernels.generate_weights(key, 2, 33, "gaussian", 1.0, DEVICE)
