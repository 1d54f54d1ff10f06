"""AVX2's table lookup on multicoat weights (csrc/cpu/linear_avx2lut.cpp): a lookup pass per coat
over one call's tables, each coat's exact int32 sums joined as the register kernel joins them
(acc = 0, acc += g_c float(sum_c), then scale, xscale and bias), so int8 activations give the
register kernel's bits; float ones run as int8 slices, their coats joined in double. Its layout
holds each 32-row block's planes coat after coat, each the planes of a binary weight of that
coat's mask and the same seed."""

import lut_calls
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import _ext, _ops, pack_binary, pack_multicoat
from slt_hw.backends import cpu
from slt_hw.ops import slt_linear, slt_linear_int8, slt_linear_int8_reference, slt_linear_reference

if _ext.native() is None or "avx2" not in cpu.cpu_isas():
    pytest.skip("needs slt_hw._C on an AVX2 CPU", allow_module_level=True)

MOD = _ext.native()
SCALES = [1.0, 0.37, 0.11, 0.05]


def levels(n, k, coats, seed):
    u = torch.rand(n, k, generator=torch.Generator().manual_seed(seed))
    return sum((u < 0.6 / 2**c).long() for c in range(coats))  # nested coats


def multicoat(n, k, coats, seed=0):
    return pack_multicoat(levels(n, k, coats, seed), coats, seed=seed, name="fc", dist="signed_constant",
                          coat_scales=torch.tensor(SCALES[:coats]))


def run(x, p, planes=None, r0=0, lut="on", threads=1, int8=True):
    return lut_calls.run(MOD, "avx2", x, p, planes, r0, None, lut, threads, int8)


def layout(p, m=1, int8=True, threads=1):
    return lut_calls.pack(MOD, "avx2", p, "int8", m, int8, threads)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 150), k=st.sampled_from([1, 31, 33, 97, 1025]), m=st.sampled_from([1, 2, 3, 5, 9, 33]),
       coats=st.integers(2, 4), seed=st.integers(0, 10_000), r0=st.sampled_from([0, 5, 32]),
       threads=st.sampled_from([1, 2]))
def test_int8_lookup_gives_the_register_kernels_bits(n, k, m, coats, seed, r0, threads):
    """With and without the layout (row ranges from a block or off one, 1 and 2 threads): bit for
    bit the register kernels' (lut off), close to the int8 reference."""
    p = multicoat(n, k, coats, seed)
    r0 = min(r0, n - 1)
    x = 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    own = run(x, p, r0=r0, lut="off", threads=threads)
    assert torch.equal(run(x, p, r0=r0, threads=threads), own)
    assert torch.equal(run(x, p, layout(p, m, threads=threads), r0=r0, threads=threads), own)
    want = slt_linear_int8_reference(x, p)[:, r0:]
    torch.testing.assert_close(own, want, rtol=1e-5, atol=1e-5 * max(1.0, float(want.abs().max())))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 150), k=st.sampled_from([1, 33, 97, 1025]), m=st.sampled_from([1, 2, 5]),
       coats=st.integers(2, 4), seed=st.integers(0, 10_000), threads=st.sampled_from([1, 2]))
def test_float_slices_close_to_the_reference(n, k, m, coats, seed, threads):
    """Float activations as slices: the same bits with and without the layout, as close to the
    reference as the float kernels are."""
    p = multicoat(n, k, coats, seed)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    own = run(x, p, threads=threads, int8=False)
    assert torch.equal(run(x, p, layout(p, m, int8=False, threads=threads), threads=threads, int8=False), own)
    want = slt_linear_reference(x, p)
    floats = run(x, p, lut="off", threads=threads, int8=False)
    scale = max(1.0, float(want.abs().max()))
    assert float((own - want).abs().max()) <= max(2 * float((floats - want).abs().max()), 1e-6 * scale)


def test_the_layout_is_each_coats_binary_layout():
    """Block b's coats one after another, coat c's planes those of a binary weight of coat c's
    mask (the same seed and name: the same signs)."""
    n, k, coats = 70, 100, 3
    lv = levels(n, k, coats, 4)
    p = pack_multicoat(lv, coats, seed=4, name="fc", dist="signed_constant", coat_scales=torch.tensor(SCALES[:3]))
    got = layout(p)
    block = 4 * 256  # 4 words of 32 columns
    assert got.numel() == 64 + 3 * coats * block
    for c in range(coats):
        b = pack_binary(lv > c, seed=4, name="fc", dist="signed_constant")
        want = layout(b)
        for blk in range(3):
            assert torch.equal(got[64 + (blk * coats + c) * block:64 + (blk * coats + c + 1) * block],
                               want[64 + blk * block:64 + (blk + 1) * block]), (c, blk)


def test_where_it_runs_automatically(fresh_cache, monkeypatch):
    """int8 activations up to the lookup's rows as for binary weights; float ones as slices only
    while slices times coats stay within 18 (3 coats: 2 rows); the public ops read the layout
    from the mask's second use, the same bits."""
    monkeypatch.delenv(cpu.ISA_ENV, raising=False)
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    p = multicoat(600, 300, 3)
    desc, _alive = _ext.weight_desc(MOD, _ops.weight_args(p)[1])
    size = 64 + 19 * 3 * 10 * 256
    assert MOD.lut_layout(desc, 8, "avx2", "auto", True, 1) == ("int8", size)
    assert MOD.lut_layout(desc, 2, "avx2", "auto", False, 1) == ("int8", size)
    assert MOD.lut_layout(desc, 3, "avx2", "auto", False, 1) == ("", 0)
    assert MOD.lut_layout(desc, 3, "avx2", "on", False, 1) == ("int8", size)
    x = torch.randn(2, 300)
    if cpu.chosen_isa(True, 2, binary=False) != "avx2":
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (600 weight rows: one thread's worth for the int8 lookup)
    try:
        lut_calls.built_on_second_use(fresh_cache, lambda: slt_linear_int8(x, p, backend="cpp"), size)
        y = slt_linear(x, p, backend="cpp")  # (its slices read the same layout)
        assert fresh_cache.nbytes() == size
        torch.testing.assert_close(y, slt_linear_reference(x, p), rtol=1e-4, atol=1e-4)
    finally:
        torch.set_num_threads(threads)
