"""Multicoat weights whose coats share one scale g (coat_levels, csrc/cpu/linear.h; what the
search exports): every int8 kernel joins the coats as one integer, y = ((0 + g float(S)) scale)
xscale with S = sum_k xq (+-level), exact. AVX2's register kernel and the blocked kernels get
there in one pass over the level bytes, the table lookup and the other register kernels by
adding their coats' sums; all of them give the same bits, checked here against S computed
exactly in int64."""

import avx512_emulation
import lut_calls
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import _ext, _ops, pack_binary, pack_multicoat
from slt_hw.backends import cpu
from slt_hw.ops import slt_linear_int8, slt_linear_int8_reference

if _ext.native() is None:
    pytest.skip("needs slt_hw._C", allow_module_level=True)

MOD = _ext.native()
NATIVE = [isa for isa in ("scalar", "avx2") if isa in cpu.cpu_isas()]


def weight(n, k, coats, g, seed):
    u = torch.rand(n, k, generator=torch.Generator().manual_seed(seed))
    lv = sum((u < 0.7 / 1.6**c).long() for c in range(coats))  # nested: level = coats kept
    p = pack_multicoat(lv, coats, seed=seed, name="fc", dist="signed_constant",
                       coat_scales=torch.full((coats,), g))
    signs = torch.sign(pack_binary(torch.ones(n, k, dtype=torch.bool), seed=seed, name="fc",
                                   dist="signed_constant").materialize())
    return p, (signs * lv).long()  # the integer weights +-level


def exact(x, p, wint, g, r0=0):
    """The coats' join as one integer: S exact in int64, then the kernels' float32 steps."""
    xq, xs = torch.empty(x.shape[0], p.in_features, dtype=torch.int8), torch.empty(x.shape[0])
    MOD.quantize_int8(x.data_ptr(), x.shape[0], p.in_features, p.in_features, xq.data_ptr(), xs.data_ptr())
    s = xq.long() @ wint[r0:].T
    acc = torch.zeros((), dtype=torch.float32) + torch.tensor(g, dtype=torch.float32) * s.float()
    return acc * torch.tensor(p.scale, dtype=torch.float32) * xs[:, None]


def call(mod, isa, x, p, r0, lut, threads):
    return lut_calls.run(mod, isa, x, p, None, r0, None, lut, threads, True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 120), k=st.sampled_from([1, 31, 33, 97, 1025, 2080]),
       m=st.sampled_from([1, 2, 3, 8, 9, 33, 40, 70]), coats=st.integers(2, 9), g=st.sampled_from([1.0, 0.37]),
       seed=st.integers(0, 10_000), r0=st.sampled_from([0, 5]), threads=st.sampled_from([1, 2]))
def test_every_kernel_gives_the_exact_join(n, k, m, coats, g, seed, r0, threads):
    """Register kernels (up to 32 rows on AVX2, 8 elsewhere; past 7 coats AVX2's adds its coats'
    sums), blocked kernels (held tiles and not, micro-kernel calls split for the int16 sums), and
    AVX2's table lookup: the exact join's bits, each of them."""
    p, wint = weight(n, k, coats, g, seed)
    r0 = min(r0, n - 1)
    x = 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    want = exact(x, p, wint, g, r0)
    for isa in NATIVE:
        for lut in ("off", "on") if isa == "avx2" and m <= 512 else ("off",):
            assert torch.equal(call(MOD, isa, x, p, r0, lut, threads), want), (isa, lut)


AVX2 = "avx2" in cpu.cpu_isas()


def panel_bytes(n, k):
    return (n + 15) // 16 * ((k + 31) // 32 * 8 * 16)


@pytest.mark.skipif(not AVX2, reason="AVX2's int8 panels")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 150), k=st.sampled_from([31, 97, 1025, 2080]), m=st.sampled_from([64, 65, 130]),
       coats=st.integers(2, 9), g=st.sampled_from([1.0, 0.37]), seed=st.integers(0, 10_000),
       r0=st.sampled_from([0, 5, 48]), threads=st.sampled_from([1, 2]))
def test_avx2_panels_give_the_exact_join(n, k, m, coats, g, seed, r0, threads):
    """AVX2's int8 panels from their layout (each coat's panels' masks, one after another): one
    panel of the coats' levels, int16 sums widened every 64 / C steps; the exact join's bits."""
    p, wint = weight(n, k, coats, g, seed)
    r0 = min(r0, n - 1)
    desc, _alive = _ext.weight_desc(MOD, _ops.weight_args(p)[1])
    kind, nbytes = MOD.lut_layout(desc, m, "avx2", "auto", True, threads)
    assert (kind, nbytes) == ("panels", 64 + coats * panel_bytes(n, k))
    planes = torch.full((nbytes,), 0xA5, dtype=torch.uint8)
    MOD.pack_lut_planes(desc, kind, planes.data_ptr(), nbytes, threads)
    x = 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    got = lut_calls.run(MOD, "avx2", x, p, planes, r0, None, "auto", threads, True)
    assert torch.equal(got, exact(x, p, wint, g, r0))


@pytest.mark.skipif(not AVX2, reason="AVX2's kernels")
def test_where_levels_run(fresh_cache, monkeypatch):
    """int8 activations: the lookup up to 2 rows, the register kernels then, the panels from 64
    rows once their layout is cached (a mask's second use); coats of their own scales keep the
    lookup. The public op gives the exact join's bits on every call."""
    monkeypatch.delenv(cpu.ISA_ENV, raising=False)
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    p, wint = weight(600, 300, 3, 1.0, 11)
    desc, _alive = _ext.weight_desc(MOD, _ops.weight_args(p)[1])
    assert MOD.lut_layout(desc, 2, "avx2", "auto", True, 1)[0] == "int8"
    assert MOD.lut_layout(desc, 3, "avx2", "auto", True, 1) == ("", 0)
    assert MOD.lut_layout(desc, 64, "avx2", "auto", True, 1) == ("panels", 64 + 3 * panel_bytes(600, 300))
    q = pack_multicoat(torch.zeros(600, 300, dtype=torch.long), 3, seed=11, name="fc", dist="signed_constant",
                       coat_scales=torch.tensor([1.0, 0.5, 0.25]))
    qdesc, _qalive = _ext.weight_desc(MOD, _ops.weight_args(q)[1])
    assert MOD.lut_layout(qdesc, 3, "avx2", "auto", True, 1)[0] == "int8"
    assert MOD.lut_layout(qdesc, 64, "avx2", "auto", True, 1)[0] == "int8"
    if cpu.chosen_isa(True, 70, binary=False) != "avx2":
        return
    x = torch.randn(70, 300, generator=torch.Generator().manual_seed(12))
    lut_calls.built_on_second_use(fresh_cache, lambda: slt_linear_int8(x, p, backend="cpp"),
                                  64 + 3 * panel_bytes(600, 300))
    assert torch.equal(slt_linear_int8(x, p, backend="cpp"), exact(x, p, wint, 1.0))


@pytest.mark.parametrize("isa", avx512_emulation.ISAS[:2])
@pytest.mark.parametrize("m,coats", [(3, 3), (9, 3), (70, 3), (70, 9), (40, 32)])
def test_avx512_kernels_give_the_exact_join(isa, m, coats):
    """AVX-512's register and blocked kernels (emulated): without VNNI the int16 pair sums split
    a call past 4096 / C columns (9 and 32 coats here)."""
    emu = avx512_emulation.module()
    p, wint = weight(50, 2080, coats, 0.37, 3)
    x = 3 * torch.randn(m, 2080, generator=torch.Generator().manual_seed(4))
    assert torch.equal(call(emu, isa, x, p, 0, "off", 2), exact(x, p, wint, 0.37))


def test_unequal_scales_keep_the_per_coat_join():
    """Coats with scales of their own are joined in float, coat by coat, as before."""
    u = torch.rand(40, 300, generator=torch.Generator().manual_seed(5))
    lv = (u < 0.6).long() + (u < 0.3).long() + (u < 0.1).long()
    q = pack_multicoat(lv, 3, seed=5, name="fc", dist="signed_constant", coat_scales=torch.tensor([1.0, 0.5, 0.25]))
    x = torch.randn(5, 300, generator=torch.Generator().manual_seed(6))
    for isa in NATIVE:
        got = call(MOD, isa, x, q, 0, "off", 1)
        torch.testing.assert_close(got, slt_linear_int8_reference(x, q), rtol=1e-5, atol=1e-4)


def test_past_32_coats_a_pass_each():
    """Past 32 coats the coats run as before (a pass each, joined in float)."""
    p, wint = weight(20, 100, 33, 1.0, 7)
    x = torch.randn(4, 100, generator=torch.Generator().manual_seed(8))
    for isa in NATIVE:
        torch.testing.assert_close(call(MOD, isa, x, p, 0, "off", 1), slt_linear_int8_reference(x, p),
                                   rtol=1e-5, atol=1e-4)


def test_public_op_matches_the_reference():
    """slt_linear_int8 through the dispatcher on a levels weight, batch 1 to 70."""
    p, _ = weight(64, 515, 3, 1.0, 9)
    for m in (1, 4, 70):
        x = torch.randn(m, 515, generator=torch.Generator().manual_seed(m))
        torch.testing.assert_close(slt_linear_int8(x, p, backend="cpp"), slt_linear_int8_reference(x, p),
                                   rtol=1e-5, atol=1e-4)
