"""The fused C++ CPU kernel (csrc/cpu/linear*.cpp) against the pure-PyTorch reference, for every
format, distribution and instruction-set variant this CPU has (forced one by one), plus the
AVX-512 variants (with and without VNNI) emulated by SIMDe in a test-only build
(tests/avx512_emulation.py)."""

import contextlib
import dataclasses
import functools
import os
import sys
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slt_hw import _ext, _ops, pack_binary, pack_frozen, pack_multicoat, slt_linear
from slt_hw.ops import slt_linear_reference

if _ext.native() is None:
    if os.environ.get("SLT_HW_REQUIRE_CPP") == "1":
        raise RuntimeError(f"SLT_HW_REQUIRE_CPP=1 but the extension is missing: {_ext.load()[1]}")
    pytest.skip("slt_hw._C not built", allow_module_level=True)

import avx512_emulation

from slt_hw.backends import cpu

ISAS = cpu.cpu_isas()
# the kernel tests also run on the emulated AVX-512 build, whatever this CPU has
TESTED_ISAS = [*ISAS, *avx512_emulation.ISAS]


def extension_for(isa):
    """The emulated build stands in for slt_hw._C while its variant is tested."""
    if isa not in avx512_emulation.ISAS:
        return contextlib.nullcontext()
    return mock.patch.object(_ext, "require", return_value=avx512_emulation.module())


# not powers of two, one negative: w0·g_i rounded per coat (an FMA per coat) differs from w0·Σg_i
COAT_SCALES = torch.tensor([1.3, -0.7, 0.45])


def packed(fmt, n, k, seed, dist):
    g = torch.Generator().manual_seed(seed)
    if fmt == "binary":
        return pack_binary(torch.rand(n, k, generator=g) < 0.5, seed=seed, name="fc", dist=dist)
    if fmt == "multicoat":
        return pack_multicoat(torch.randint(0, 4, (n, k), generator=g), 3, seed=seed, name="fc", dist=dist,
                              coat_scales=COAT_SCALES)
    return pack_frozen(torch.rand(n, k, generator=g) < 0.5, seed=seed, name="fc", dist=dist, p_prune=0.3, p_lock=0.2)


def fused(x, p, bias=None, isa=None, threads=None, int8=False):
    """The cpp backend's linear on the op's arguments, with an instruction set forced."""
    _, w = _ops.weight_args(p)
    with extension_for(isa):
        return cpu.linear(x, bias, *w, 0, p.out_features, int8=int8, isa=isa, threads=threads)


def close(y, want):
    # float32 sums of up to a few thousand terms in another order
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4 * max(1.0, float(want.abs().max()) if want.numel() else 1))


@pytest.mark.parametrize("isa", TESTED_ISAS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["binary", "multicoat", "frozen"]), dist=st.sampled_from(["signed_constant", "uniform",
       "normal"]), n=st.integers(1, 50), k=st.sampled_from([1, 5, 31, 32, 33, 95, 1024, 1025, 2100]),
       m=st.sampled_from([0, 1, 2, 5, 8, 9, 17, 70, 515]), seed=st.integers(0, 10_000), with_bias=st.booleans())
def test_matches_reference(isa, fmt, dist, n, k, m, seed, with_bias):
    """m <= 8 takes the small-batch path, m > 8 the blocked large-batch path (515: AVX2's float
    output tile in two chunks); k > 1024 spans several weight blocks (and offset-table blocks of
    the frozen format)."""
    p = packed(fmt, n, k, seed, dist)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    bias = torch.randn(n) if with_bias else None
    close(fused(x, p, bias, isa=isa), slt_linear_reference(x, p, bias))


BATCHES = (*range(1, 10), 17, 32, 33, 70, 515)


@functools.cache
def batch_path_cases(fmt, dist, k, int8):
    """Inputs and reference outputs for BATCHES, shared by every ISA's run (one reference call:
    it materialises the weight)."""
    from slt_hw.ops import slt_linear_int8_reference

    p = packed(fmt, 50, k, k, dist)
    x = torch.randn(sum(BATCHES), k, generator=torch.Generator().manual_seed(k))
    want = (slt_linear_int8_reference if int8 else slt_linear_reference)(x, p)
    return p, list(zip(x.split(BATCHES), want.split(BATCHES), strict=True))


@pytest.mark.parametrize("isa", TESTED_ISAS)
@pytest.mark.parametrize("fmt", ["binary", "multicoat", "frozen"])
@pytest.mark.parametrize("dist", ["signed_constant", "uniform", "normal"])
def test_every_batch_path(isa, fmt, dist):
    """Every small-batch row count (1..8: one kernel each; AVX2 int8: passes of 8 up to 32, so 9,
    17 and 32), the blocked path with row and column tails (9, 33, 70 > one 64-row chunk, 515 >
    one 512-row output tile of AVX2's float path; 50 weight
    rows: a 48-row task and a 2-row one), an even and
    an odd number of words (2; 65 over three 1024-column blocks); int8 too for signed constant."""
    for k in (33, 2080):
        for int8 in (False, True) if dist == "signed_constant" else (False,):
            p, cases = batch_path_cases(fmt, dist, k, int8)
            for x, want in cases:
                close(fused(x, p, isa=isa, int8=int8), want)


@pytest.mark.parametrize("isa", TESTED_ISAS)
@pytest.mark.parametrize("fmt", ["binary", "multicoat", "frozen"])
@pytest.mark.parametrize("dist", ["signed_constant", "uniform", "normal"])
def test_weights_bit_identical_to_the_reference(isa, fmt, dist):
    """One-hot activation rows read the kernel's effective weights out exactly (one product by
    1.0, the rest zeros): bit-identical to the reference's materialised weight, on the small-batch
    (k rows <= 8) and the blocked path, with word tails (k not a multiple of 32); multicoat with
    coat scales that are not powers of two."""
    for n, k in ((5, 8), (7, 40), (3, 100)):
        p = packed(fmt, n, k, 11, dist)
        y = fused(torch.eye(k), p, isa=isa).t().contiguous()
        want = p.materialize()
        assert torch.equal(y.view(torch.int32), want.view(torch.int32)), (n, k, (y != want).sum())


@pytest.mark.parametrize("isa", TESTED_ISAS)
@pytest.mark.parametrize("m", [1, 8, 40])
def test_same_result_for_one_and_two_threads(isa, m):
    p = packed("multicoat", 67, 1500, 3, "uniform")
    x = torch.randn(m, 1500)
    assert torch.equal(fused(x, p, isa=isa, threads=1), fused(x, p, isa=isa, threads=2))


@pytest.mark.parametrize("isa", TESTED_ISAS)
def test_isa_variants_agree(isa):
    p = packed("frozen", 40, 700, 4, "signed_constant")
    x = torch.randn(12, 700)
    close(fused(x, p, isa=isa), fused(x, p, isa="scalar"))


def test_env_var_forces_isa(monkeypatch):
    p = packed("binary", 9, 40, 0, "signed_constant")
    x = torch.randn(2, 40)
    for isa in ISAS:
        monkeypatch.setenv("SLT_HW_CPU_ISA", isa)
        close(fused(x, p), slt_linear_reference(x, p))
    monkeypatch.setenv("SLT_HW_CPU_ISA", "avx1024")
    with pytest.raises(ValueError, match=r"SLT_HW_CPU_ISA: expected 'auto' or one of .* got 'avx1024'"):
        fused(x, p)


def test_strided_3d_and_half_inputs_through_the_op():
    p = packed("binary", 16, 45, 1, "normal")
    base = torch.randn(2, 3, 90)
    x = base[..., ::2]  # 3-D, non-contiguous, last stride 2
    y = slt_linear(x, p, backend="cpp")
    close(y, slt_linear_reference(x, p))
    xb = x.to(torch.bfloat16)
    torch.testing.assert_close(slt_linear(xb, p, backend="cpp"), slt_linear_reference(xb, p), rtol=1.6e-2, atol=1.6e-2)


def test_wrong_free_bits_are_refused():
    """A stream that does not cover the freeze pattern passes the op's shape checks; the kernel's
    own check refuses it."""
    p = packed("frozen", 30, 300, 2, "signed_constant")
    _, w = _ops.weight_args(p)
    with pytest.raises(ValueError, match=r"free_bits/offsets: the free-bit stream does not match"):
        _ops.call("linear_frozen", torch.randn(2, 300), None, p.free_bits[:3], *w[1:], "cpp")


def test_bad_arguments_name_themselves():
    p = packed("binary", 8, 40, 0, "signed_constant")
    x = torch.randn(2, 40)
    planes, coat_scales, *scalars = _ops.weight_args(p)[1]
    with pytest.raises(TypeError, match=r"planes: expected dtype torch.int32"):
        _ops.call("linear_planes", x, None, planes.long(), coat_scales, *scalars, "cpp")
    with pytest.raises(ValueError, match=r"coat_scales: expected \(1,\)"):
        _ops.call("linear_planes", x, None, planes, torch.ones(2), *scalars, "cpp")
    with pytest.raises(ValueError, match=r"bias: expected shape \(8,\)"):
        _ops.call("linear_planes", x, torch.ones(9), planes, coat_scales, *scalars, "cpp")
    with pytest.raises(ValueError, match=r"isa: expected 'auto' or one of"):
        cpu.linear(x, None, planes, coat_scales, *scalars, 0, 8, isa="sse9")


@pytest.mark.parametrize("isa", TESTED_ISAS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["binary", "multicoat", "frozen"]), n=st.integers(1, 40),
       k=st.sampled_from([1, 31, 33, 1100, 2100]), m=st.sampled_from([0, 1, 4, 5, 9, 13, 70]),
       seed=st.integers(0, 10_000), with_bias=st.booleans())
def test_int8_activations_match_int8_reference(isa, fmt, n, k, m, seed, with_bias):
    """The integer sums are exact, so the kernel equals quantize-then-float-linear up to rounding."""
    from slt_hw.ops import slt_linear_int8_reference

    p = packed(fmt, n, k, seed, "signed_constant")
    x = 4 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    bias = torch.randn(n) if with_bias else None
    want = slt_linear_int8_reference(x, p, bias)
    close(fused(x, p, bias, isa=isa, int8=True), want)


def quantize_cpp(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The C++ quantizer (what the int8 path runs) on the rows of x (M, K), unit column stride."""
    m, k = x.shape
    q, s = torch.empty(m, k, dtype=torch.int8), torch.empty(m)
    _ext.require().quantize_int8(x.data_ptr(), m, k, x.stride(0) if m > 1 else k, q.data_ptr(), s.data_ptr())
    return q, s


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 5), k=st.integers(1, 300), seed=st.integers(0, 2**31 - 1),
       exp=st.integers(-140, 122), quarters=st.booleans())
def test_cpp_quantizer_has_the_reference_bits(m, k, seed, exp, quarters):
    """The int8 path quantizes in C++; its q and s are quantize_activations' bit for bit, across
    magnitudes (subnormal values and scales to near overflow), rows of zeros, and values on a grid where
    x / s lands on halves."""
    from slt_hw.reference.quantize import quantize_activations

    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed)) * 2.0**exp
    if quarters:
        x = torch.round(x * 4) / 4
    if m > 1:
        x[1] = 0.0
    q, s = quantize_cpp(x)
    want_q, want_s = quantize_activations(x)
    assert torch.equal(q, want_q) and torch.equal(s, want_s)


def test_cpp_quantizer_rounds_halves_to_even_and_reads_strided_rows():
    """s = 1 exactly (the row's largest |x| is 127), so x / s is x: halves go to the even integer,
    as torch.round does; the rows are every other row of a wider buffer (ldx)."""
    from slt_hw.reference.quantize import quantize_activations

    row = torch.tensor([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.0, 3.49999976])
    wide = torch.full((4, 16), 1e9)
    wide[::2, :10] = row
    q, s = quantize_cpp(wide[::2, :10])  # rows 32 floats apart, 1e9 between them
    assert q[0].tolist() == [127, 0, 2, 2, 0, -2, -2, 126, -127, 3] and s.tolist() == [1.0, 1.0]
    want_q, want_s = quantize_activations(row.expand(2, -1))
    assert torch.equal(q, want_q) and torch.equal(s, want_s)


@pytest.mark.parametrize("isa", TESTED_ISAS)
@pytest.mark.parametrize("mode", ["off", "on"])
def test_int8_sums_with_the_largest_activations(isa, mode):
    """Every weight kept and every activation at +-127 (the quantizer's ends: the largest int16
    partial sums), 4100 columns (129 words: several int16 stretches and a word tail), each small
    batch 1..8, AVX2's multi-pass ones (11, 32) and a blocked one (40); rows all +127, all -127
    and mixed; forced on, AVX2's int8 table lookup up to 8 rows (entries +-508: the extremes of
    its 5-bit low and signed high parts). The integer sums are exact."""
    from slt_hw.ops import slt_linear_int8_reference

    k = 4100
    p = pack_binary(torch.ones(6, k, dtype=torch.bool), seed=3, name="fc")
    for m in (*range(1, 9), 11, 32, 40):
        x = torch.full((m, k), 5.0)
        x[1::2] = -5.0  # odd rows all -127
        x[2::3, ::3] = -5.0  # and some mixed
        want = slt_linear_int8_reference(x, p)
        if isa == "avx2":
            _, w = _ops.weight_args(p)
            y = cpu.linear(x, None, *w, 0, 6, int8=True, isa=isa, lut=mode)
        else:
            y = fused(x, p, isa=isa, int8=True)
        close(y, want)


def _guarded_rows(m, k):
    """An int8 (m, k) tensor whose last byte ends a page, the next page unreadable (any read past
    the rows faults), and the function that releases it."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    data = (m * k + page - 1) // page * page
    buf = mmap.mmap(-1, data + page)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(addr + data, page, 0) == 0  # (PROT_NONE)
    rows = torch.frombuffer(buf, dtype=torch.int8, count=m * k, offset=data - m * k).view(m, k)

    def release():
        libc.mprotect(addr + data, page, mmap.PROT_READ | mmap.PROT_WRITE)

    return rows, release


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs mprotect")
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m, k, lut", [(9, 96, "off"), (24, 32, "off"), (70, 4160, "off"), (13, 96, "off"),
                                       (3, 96, "on"), (16, 4160, "on"), (3, 96, "off")])
def test_int8_rows_read_in_place_stay_within_them(isa, m, k, lut):
    """int8 rows already 32-column words apart are read where they are (AVX2's kernels, AVX-512's
    int8 panels and table lookup; a convolution's chunks of patches are 4 MiB): rows that end at
    an unreadable page give the bits of rows the call copies (a wider row stride)."""
    p = pack_binary(torch.rand(40, k, generator=torch.Generator().manual_seed(k)) < 0.5, seed=k, name="fc")
    _, w = _ops.weight_args(p)
    mod = _ext.require()
    desc, _alive = _ext.weight_desc(mod, w)
    g = torch.Generator().manual_seed(m)
    src = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g)
    xs = torch.rand(m, generator=g) + 0.5
    wide = torch.zeros(m, k + 32, dtype=torch.int8)
    wide[:, :k] = src
    rows, release = _guarded_rows(m, k)
    try:
        rows.copy_(src)
        got, want = torch.empty(m, 40), torch.empty(m, 40)
        for y, xq, ldx in ((got, rows, k), (want, wide, k + 32)):
            mod.slt_linear(desc, 0, m, ldx, y.data_ptr(), 40, 0, 40, 0, xq.data_ptr(), xs.data_ptr(), isa, 1, lut, 0,
                           0, 0)
    finally:
        release()
    assert torch.equal(got, want)


def test_int8_public_op_and_its_error():
    from slt_hw.ops import slt_linear_int8

    p = packed("binary", 16, 100, 0, "signed_constant")
    x = torch.randn(3, 100)
    y = slt_linear_int8(x, p)
    rel = (y - slt_linear_reference(x, p)).norm() / slt_linear_reference(x, p).norm()
    assert rel < 0.02  # int8 activations: about 1% relative error
    with pytest.raises(ValueError, match=r"dist: int8 activations need the signed_constant distribution"):
        slt_linear_int8(x, packed("binary", 16, 100, 0, "uniform"))


def test_emulated_avx512_is_never_chosen_automatically():
    emu = avx512_emulation.module()
    assert set(avx512_emulation.ISAS) <= set(emu.cpu_isas())
    assert emu.build_info()["cpu_isa"] not in avx512_emulation.ISAS
    assert not set(avx512_emulation.ISAS) & set(ISAS)  # the installed extension never has them


def test_automatic_isa_per_problem(monkeypatch):
    """'auto' picks the ISA per problem: the best this CPU has, except on an AVX-512 CPU, where
    int8 activations with other formats than binary below 64 rows (without VNNI every int8
    call past AVX-512's table lookup) and float ones past batch 8 run AVX2's kernels (measured
    faster there); the layout a call reads follows the same choice, and a forced ISA stays
    forced."""
    monkeypatch.delenv("SLT_HW_CPU_ISA", raising=False)
    mod = _ext.native()
    best = mod.build_info()["cpu_isa"]
    assert cpu.chosen_isa() == best
    for int8, rows in [(False, 1), (False, 8), (False, 9), (False, 512), (True, 1), (True, 16), (True, 17),
                       (True, 23), (True, 24), (True, 63), (True, 64)]:
        for binary in (True, False):
            # int8 from 17 rows (binary weights: the panels; other formats from 64) on AVX-512
            # VNNI's kernels, up to 16 (binary, 4096 weight rows) on AVX-512's table lookup
            vnni = best == "avx512vnni" and int8 and rows >= (17 if binary else 64)
            lookup = int8 and binary and rows <= 16
            want = "avx2" if best.startswith("avx512") and (int8 or rows > 8) and not vnni and not lookup else best
            assert mod.cpu_auto_isa(int8, rows, False, binary) == cpu.chosen_isa(int8, rows, binary=binary) == want, \
                (int8, rows, binary)
    # a small layer (128 weight rows: too few a thread for either table lookup) stays on AVX-512
    # VNNI's int8 kernels at every batch; with 4096 rows on one thread AVX-512's lookup runs,
    # with 1000 rows on two AVX2's does not either
    small = "avx512vnni" if best == "avx512vnni" else "avx2" if best == "avx512" else best
    assert [mod.cpu_auto_isa(True, m, n=128, threads=2) for m in (1, 8, 16)] == [small] * 3
    assert mod.cpu_auto_isa(True, 4, n=4096, threads=1) == best
    assert mod.cpu_auto_isa(True, 4, n=1000, threads=2) == small
    monkeypatch.setenv("SLT_HW_CPU_ISA", "scalar")
    assert cpu.chosen_isa(True, 64) == "scalar"
    p = packed("binary", 4096, 256, 0, "signed_constant")
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
    for int8 in (False, True):
        chosen = mod.cpu_auto_isa(int8, 2)
        assert mod.lut_layout(desc, 2, "auto", "auto", int8, 1) == mod.lut_layout(desc, 2, chosen, "auto", int8, 1)
    info = cpu.lut_info("auto")
    assert (info["isa"], info["isa_int8"]) == (mod.cpu_auto_isa(False, 1), mod.cpu_auto_isa(True, 1))


@pytest.mark.skipif("avx512" in ISAS, reason="this CPU has AVX-512")
def test_forcing_avx512_without_it_is_refused(monkeypatch):
    p = packed("binary", 8, 40, 0, "signed_constant")
    x = torch.randn(2, 40)
    with pytest.raises(ValueError, match=r"isa: this CPU does not support 'avx512'"):
        fused(x, p, isa="avx512")
    monkeypatch.setenv("SLT_HW_CPU_ISA", "avx512")
    with pytest.raises(ValueError, match=r"SLT_HW_CPU_ISA: this CPU does not support 'avx512'"):
        fused(x, p)


# ------------------------------------------------------------------ the table-lookup kernel
# Binary format, signed-constant weights, 1..max_rows activation rows when forced
# (SLT_HW_CPU_LUT=on or lut="on"), chosen automatically up to auto_rows; per ISA (lut_info(isa)):
# AVX2: int8 activations by vpshufb on 16-entry tables of 4-column groups, 32 weight rows per
#   lookup; float activations through it as 3 or 4 int8 slices each (tests/test_lut_planes.py).
# AVX-512 (tested emulated): float activations, vpermps on 16-entry tables of 4-column groups,
#   16 weight rows per lookup, column chunks shared by a task's 16-row blocks.
LUT_ISAS = [isa for isa in ISAS if cpu.lut_info(isa)["available"]] + list(avx512_emulation.ISAS)


def lut_limits(isa):
    with extension_for(isa):
        info = cpu.lut_info(isa)
    assert info["available"], info
    return info


def lut(x, p, isa, bias=None, int8=False, mode="on", threads=None):
    _, w = _ops.weight_args(p)
    with extension_for(isa):
        return cpu.linear(x, bias, *w, 0, p.out_features, int8=int8, isa=isa, lut=mode, threads=threads)


@pytest.mark.parametrize("isa", LUT_ISAS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 300), k=st.sampled_from([1, 2, 3, 5, 31, 33, 95, 97, 1025, 2101]),
       m=st.one_of(st.integers(0, 8), st.sampled_from([9, 33, 70, 129, 513])), seed=st.integers(0, 10_000),
       with_bias=st.booleans(), int8=st.booleans(), strided=st.booleans())
def test_lut_matches_reference(isa, n, k, m, seed, with_bias, int8, strided):
    """Odd k (not a multiple of 32: word and group tails; 2101 spans several AVX-512 column
    chunks), n not a multiple of 8, 16 or 32 and above a 128-row task (row tails), the empty
    batch, non-contiguous input (every other column of a wider tensor), float and int8
    activations against their references (rows past the kernel's limit take the other path)."""
    from slt_hw.ops import slt_linear_int8_reference

    p = packed("binary", n, k, seed, "signed_constant")
    g = torch.Generator().manual_seed(seed + 1)
    x = 4 * torch.randn(m, 2 * k if strided else k, generator=g)
    if strided:
        x = x[:, ::2]
        assert not x.is_contiguous() or m <= 1
    bias = torch.randn(n, generator=g) if with_bias else None
    want = (slt_linear_int8_reference if int8 else slt_linear_reference)(x, p, bias)
    close(lut(x, p, isa, bias, int8=int8), want)


@pytest.mark.parametrize("isa", LUT_ISAS)
@pytest.mark.parametrize("m", [1, 2, 3, 8])
def test_lut_across_column_chunks_and_tasks(isa, m):
    """Every geometry at once, which hypothesis rarely draws together: 2101 columns (66 words:
    several AVX-512 column chunks of 16 or 32 words, a word tail), 16-row blocks full and not,
    two 128-row tasks."""
    p = packed("binary", 147, 2101, 4, "signed_constant")
    x = torch.randn(m, 2101)
    close(lut(x, p, isa), slt_linear_reference(x, p))


@pytest.mark.parametrize("isa", LUT_ISAS)
@pytest.mark.parametrize("n, k", [(5, 8), (13, 40), (37, 100), (130, 600)])
def test_lut_weights_bit_identical_to_the_reference(isa, n, k):
    """One-hot activation rows, as many per call as the kernel takes: every table entry is 0 or 1,
    so the lookups give the ternary weight exactly and the kernel returns s * (P - N):
    bit-identical to the reference's materialised weight (rows not a multiple of 8 or 16, columns
    not a multiple of 32; 130 x 600 has full 16 x 16 mask transposes and two tasks). AVX2 runs
    float activations as int8 slices, whose scale puts the one within a float ulp."""
    p = packed("binary", n, k, 11, "signed_constant")
    eye, step = torch.eye(k), lut_limits(isa)["max_rows"]
    y = torch.cat([lut(eye[i:i + step], p, isa) for i in range(0, k, step)]).T
    want = p.materialize()
    if isa == "avx2":  # (float activations as int8 slices: one within a float ulp of the weight)
        assert torch.equal(y == 0, want == 0)
        torch.testing.assert_close(y, want, rtol=2.0 ** -23, atol=0)
        return
    assert torch.equal(y.view(torch.int32), want.view(torch.int32)), (n, k, (y != want).sum())


@pytest.mark.parametrize("isa", LUT_ISAS)
@pytest.mark.parametrize("int8", [False, True])
def test_lut_batch_one_from_many_rows_and_threads(isa, int8):
    """One activation row against 300 weight rows (several tasks) with 1 and 2 threads: the same
    bits (each row's sum is one task's)."""
    p = packed("binary", 300, 777, 5, "signed_constant")
    x = torch.randn(1, 777)
    y1 = lut(x, p, isa, int8=int8, threads=1)
    assert torch.equal(y1, lut(x, p, isa, int8=int8, threads=2))


@pytest.mark.parametrize("isa", LUT_ISAS)
def test_lut_is_the_path_that_runs(isa):
    """Forced on and off, the float sums come out in different orders, so some bits differ; both
    match the reference. Auto runs it up to auto_rows and not beyond (AVX2: one thread, 128
    weight rows a float activation row: its own rule, test_lut_planes.py; AVX-512's float rows
    up to 2 as int8 slices with 512 weight rows a thread, else its float lookup); multicoat
    weights only on AVX2 (test_lut_multicoat.py). Int8 activations: the same bits either way
    (both paths' integer sums are exact, then scaled alike), with or without an int8 table lookup."""
    info = lut_limits(isa)
    p = packed("binary", 64, 4000, 9, "signed_constant")
    tall = packed("binary", 512, 4000, 9, "signed_constant")
    for m in (1, info["max_rows"]):
        x = torch.randn(m, 4000)
        on, off, auto = lut(x, p, isa, mode="on"), lut(x, p, isa, mode="off"), lut(x, p, isa, mode="auto")
        for y in (on, off):
            close(y, slt_linear_reference(x, p))
        assert not torch.equal(on, off)
        if isa == "avx2":  # (64 rows: too few for the automatic choice here; 256 for one row on one thread)
            assert torch.equal(auto, off)
        if isa == "avx2" or m <= 2:  # (AVX-512: 64 rows, too few for the slices; its float lookup runs)
            on, off = lut(x, tall, isa, mode="on", threads=1), lut(x, tall, isa, mode="off", threads=1)
            auto = lut(x, tall, isa, mode="auto", threads=1)
        assert torch.equal(auto, on if m <= info["auto_rows"] else off)
    for m in sorted({1, 3, max(info["max_rows_int8"], 1)}):
        x = torch.randn(m, 4000)
        assert torch.equal(lut(x, p, isa, int8=True, mode="on"), lut(x, p, isa, int8=True, mode="off"))
    q = packed("multicoat", 64, 4000, 9, "signed_constant")  # AVX2's lookup only (a pass per coat)
    x = torch.randn(1, 4000)
    on, off = lut(x, q, isa, mode="on"), lut(x, q, isa, mode="off")
    assert torch.equal(on, off) != (isa == "avx2")
    close(on, slt_linear_reference(x, q))
    assert torch.equal(lut(x, q, isa, int8=True, mode="on"), lut(x, q, isa, int8=True, mode="off"))


def test_lut_limits_per_isa():
    """What lut_info reports: AVX2 has the int8 kernel (up to 512 rows, also chosen automatically
    while its tables fit 12 MiB: faster than the register and blocked kernels there), float
    activations through it as slices (up to 128 rows forced, 24 automatically); AVX-512 a float
    kernel (8 rows) and an int8 one (up to 128 rows forced, 16 automatically); scalar none."""
    assert cpu.lut_info("scalar")["max_rows"] == 0 and not cpu.lut_info("scalar")["available"]
    if "avx2" in ISAS:
        info = cpu.lut_info("avx2")
        assert info["available"] and info["max_rows"] == 128 and info["max_rows_int8"] == 512
        assert info["auto_rows_int8"] == 512 and info["auto_rows"] == 24
    for isa in avx512_emulation.ISAS:
        info = lut_limits(isa)
        assert info["max_rows"] == 8 and info["max_rows_int8"] == 128 and info["auto_rows_int8"] == 16
        assert 1 <= info["auto_rows"] <= info["max_rows"]


# ------------------------------------------------------------------ bf16 activations, AMX
# Every ISA reads bf16 activations exactly (as float); "amx" (forced only) runs binary
# signed-constant weights from kAmxMinRows = 16 rows through tile dot products, tested here on
# amx_intrin.h's stand-in ("amx-emulated") and natively only where the CPU has AMX.
AMX_ISAS = [isa for isa in ISAS if isa == "amx"] + ["amx-emulated"]


def close_bf16(y, want):
    """y: a bf16 result, want: its float32 reference; the float32 sums come in another order, so
    a value next to a bf16 rounding boundary may round one bf16 step (2^-8 relative) apart."""
    assert y.dtype == torch.bfloat16
    scale = float(want.abs().max()) if want.numel() else 1.0
    torch.testing.assert_close(y.float(), want.to(torch.bfloat16).float(), rtol=2**-7, atol=1e-3 * max(1.0, scale))


@pytest.mark.parametrize("isa", AMX_ISAS)
@pytest.mark.parametrize("m", [16, 17, 40, 64])
@pytest.mark.parametrize("n, k", [(1, 1), (16, 31), (17, 64), (40, 100), (33, 1025)])
def test_amx_matches_reference(isa, m, n, k):
    """Batch tails (17, 40: a partial second tile pair), weight-row tails (1, 17, 33, 40 rows:
    partial B tiles and several 32-row tasks), column tails (1, 31, 100, 1025), with a bias,
    against the reference on the same bf16 values. One-hot rows give the weights bit for bit
    (then rounded to the bf16 output as the reference's are)."""
    p = packed("binary", n, k, n + k + m, "signed_constant")
    g = torch.Generator().manual_seed(m)
    x = (4 * torch.randn(m, k, generator=g)).to(torch.bfloat16)
    bias = torch.randn(n, generator=g)
    close_bf16(fused(x, p, bias, isa=isa), slt_linear_reference(x.float(), p, bias))
    eye = torch.eye(k, m, dtype=torch.bfloat16).T  # m one-hot rows (zero rows past k)
    want = torch.zeros(m, n)
    want[: min(m, k)] = p.materialize()[:, : min(m, k)].T
    assert torch.equal(fused(eye, p, isa=isa).view(torch.int16), want.to(torch.bfloat16).view(torch.int16))


# AVX512-BF16 dot products: bf16 activations past 8 rows, binary signed-constant weights, on
# "avx512vnni" where the CPU has AVX512-BF16 (natively) and on the emulated build ("amx-emulated"
# below its 16-row tiles); the weights as bf16 column pairs in 48-row panels.
BF16_DOT_ISAS = [isa for isa in ISAS if _ext.native().cpu_bf16_dot(isa)] + ["avx512vnni-emulated", "amx-emulated"]


@pytest.mark.parametrize("isa", BF16_DOT_ISAS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.sampled_from([1, 16, 47, 49, 97, 150]), k=st.sampled_from([1, 31, 64, 100, 1025, 2101]),
       m=st.sampled_from([9, 15, 17, 70]), seed=st.integers(0, 10_000), with_bias=st.booleans(),
       strided=st.booleans())
@example(n=49, k=100, m=530, seed=2, with_bias=True, strided=False)  # two chunks of the output tile
def test_bf16_dot_products_match_reference(isa, n, k, m, seed, with_bias, strided):
    """Weight-row tails (1, 47, 49, 97, 150 rows: partial 16-row groups and 48-row tasks), column
    tails (1, 31, 100; 1025 and 2101 span several 1024-column panels), batch tails of the 8-row
    micro-tile and of the 512-row output tile, a bias, a non-contiguous input: against the
    reference on the same bf16 values.
    One-hot rows give the weights bit for bit (the panels' bf16 pairs, both halves)."""
    p = packed("binary", n, k, seed, "signed_constant")
    g = torch.Generator().manual_seed(seed)
    x = (4 * torch.randn(m, 2 * k if strided else k, generator=g)).to(torch.bfloat16)
    x = x[:, ::2] if strided else x
    bias = torch.randn(n, generator=g) if with_bias else None
    with extension_for(isa):
        assert _ext.require().cpu_bf16_dot(isa)
    close_bf16(fused(x, p, bias, isa=isa), slt_linear_reference(x.float(), p, bias))
    eye = torch.eye(k, m, dtype=torch.bfloat16).T  # m one-hot rows (zero rows past k)
    want = torch.zeros(m, n)
    want[: min(m, k)] = p.materialize()[:, : min(m, k)].T
    assert torch.equal(fused(eye, p, isa=isa).view(torch.int16), want.to(torch.bfloat16).view(torch.int16))


INT8_PANEL_ISAS = [isa for isa in ISAS if isa == "avx512vnni"] + ["avx512vnni-emulated"]


@pytest.mark.parametrize("isa", INT8_PANEL_ISAS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.sampled_from([1, 16, 47, 49, 64, 97]), k=st.sampled_from([1, 31, 33, 100, 1025, 2101]),
       m=st.sampled_from([1, 2, 5, 8, 9, 15, 16, 17, 70, 130]), seed=st.integers(0, 10_000),
       with_bias=st.booleans(), threads=st.sampled_from([1, 2]))
@example(n=64, k=1025, m=130, seed=1, with_bias=True, threads=2)  # the activation-row split
@example(n=160, k=100, m=20, seed=2, with_bias=True, threads=2)  # the weight-row ranges
def test_vnni_int8_kernels_are_the_int8_path_bit_for_bit(isa, n, k, m, seed, with_bias, threads):
    """AVX-512 VNNI's int8 kernels for binary signed-constant weights: up to 8 rows three weight
    rows at a time sharing each load of x; past 8 rows the panels (48 rows of u = t + 1 bytes,
    vpdpbusd against broadcast x, each row's sum of x taken per tile). The exact int32 sums and
    the epilogue of every int8 kernel, so the scalar kernel's bits; weight-row tails (of 3 and of
    48), column tails (1025, 2101: several mask blocks), batch tails of the 8-row tile, 64
    weight rows on 2 threads (a 48-row and a 16-row task: the activation rows split instead),
    and 160 on 2 (four tasks not shared out evenly: two ranges of 80 rows, 48 + 32 each)."""
    p = packed("binary", n, k, seed, "signed_constant")
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(m, k, generator=g)
    bias = torch.randn(n, generator=g) if with_bias else None
    got = fused(x, p, bias, isa=isa, threads=threads, int8=True)
    assert torch.equal(got, fused(x, p, bias, isa="scalar", int8=True))
    from slt_hw.ops import slt_linear_int8_reference

    close(got, slt_linear_int8_reference(x, p, bias))


def test_bf16_dot_products_are_chosen_automatically(monkeypatch):
    """Where the CPU has AVX512-BF16, bf16 activations past batch 8 stay on AVX-512 (its dot
    products: 2x AVX2's float GEMM) though float ones of that batch go to AVX2; and it shows in
    the backend's description."""
    from slt_hw import dispatch

    monkeypatch.delenv("SLT_HW_CPU_ISA", raising=False)
    mod = _ext.native()
    if not mod.cpu_bf16_dot("auto"):
        assert "AVX512-BF16" not in dispatch.get("cpp").describe()
        pytest.skip("this CPU has no AVX512-BF16")
    assert "AVX512-BF16 dot products" in dispatch.get("cpp").describe()
    p = packed("binary", 64, 256, 0, "signed_constant")
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
    assert mod.cpu_auto_isa(False, 64, True) == mod.build_info()["cpu_isa"]
    assert mod.cpu_auto_isa(False, 64, True, False) == mod.cpu_auto_isa(False, 64) == "avx2"  # (not binary; float)
    x = torch.randn(64, 256).to(torch.bfloat16)
    torch.testing.assert_close(fused(x, p), fused(x, p, isa=mod.build_info()["cpu_isa"]), rtol=0, atol=0)


@pytest.mark.parametrize("m", [4, 16])
def test_planes_follow_the_activations_kind(monkeypatch, m):
    """The cached planes are handed over only where the call runs AVX2's table lookup, which
    depends on the activations: 16 float rows on 2048 weight rows and one thread take AVX2's
    sliced lookup on any AVX2 CPU, where bf16 ones of an AVX512-BF16 CPU take its dot products
    (the planes layout asked for bf16 must say so). Through the public op, twice (the second
    call finds the planes cached)."""
    monkeypatch.delenv("SLT_HW_CPU_ISA", raising=False)
    p = packed("binary", 2048, 64, 1, "signed_constant")
    x = torch.randn(m, 64)
    for xs in (x, x.to(torch.bfloat16)):
        want = slt_linear_reference(xs.float(), p)
        for _ in range(2):
            got = fused(xs, p, threads=1)
            (close if xs.dtype == torch.float32 else close_bf16)(got, want)


@pytest.mark.parametrize("isa", AMX_ISAS)
@pytest.mark.parametrize("m", [16, 40])
@pytest.mark.parametrize("n, k", [(1, 1), (17, 64), (40, 100), (33, 1025)])
def test_amx_int8_is_the_int8_path_bit_for_bit(isa, m, n, k):
    """int8 activations through tdpbssd: the same exact int32 sums and epilogue as the AVX-512
    VNNI int8 kernel, so the same bits (columns not a multiple of 64: a half-empty last tile)."""
    p = packed("binary", n, k, n + k, "signed_constant")
    x = 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    bias = torch.randn(n)
    got = fused(x, p, bias, isa=isa, int8=True)
    want = fused(x, p, bias, isa="avx512vnni-emulated", int8=True)
    assert torch.equal(got, want)
    from slt_hw.ops import slt_linear_int8_reference

    close(got, slt_linear_int8_reference(x, p, bias))


@pytest.mark.parametrize("isa", TESTED_ISAS)
@pytest.mark.parametrize("fmt", ["binary", "multicoat", "frozen"])
@pytest.mark.parametrize("m", [0, 1, 5, 20])
def test_bf16_activations_everywhere(isa, fmt, m):
    """bf16 activations on every ISA and path (table lookup, register, blocked; AMX where it
    applies, the AVX-512 VNNI kernels where it does not: other formats, fewer than 16 rows), a
    non-contiguous input included: the float32 result of the same values, returned in bf16."""
    p = packed(fmt, 24, 70, 3, "signed_constant" if fmt == "binary" else "normal")
    x = torch.randn(m, 140).to(torch.bfloat16)[:, ::2]
    got = fused(x, p, isa=isa)
    assert got.shape == (m, 24)
    close_bf16(got, slt_linear_reference(x.float(), p))


def test_amx_shows_in_the_backend_description(monkeypatch):
    """Where the CPU has AMX, `slt-hw info` says how to use it (it is never chosen by itself)."""
    from slt_hw import dispatch

    monkeypatch.delenv("SLT_HW_CPU_ISA", raising=False)
    monkeypatch.setattr(cpu, "cpu_isas", lambda: [*ISAS, "amx"])
    assert "SLT_HW_CPU_ISA=amx, not chosen automatically" in dispatch.get("cpp").describe()
    monkeypatch.setattr(cpu, "cpu_isas", lambda: [i for i in ISAS if i != "amx"])
    assert "AMX" not in dispatch.get("cpp").describe()


def test_amx_is_never_chosen_automatically(monkeypatch):
    monkeypatch.delenv("SLT_HW_CPU_ISA", raising=False)
    assert cpu.chosen_isa() != "amx"
    assert avx512_emulation.module().build_info()["cpu_isa"] != "amx-emulated"


def test_lut_env_var(monkeypatch):
    p = packed("binary", 9, 40, 0, "signed_constant")
    x = torch.randn(1, 40)
    for mode in ("auto", "on", "off"):
        monkeypatch.setenv("SLT_HW_CPU_LUT", mode)
        assert cpu.lut_info()["mode"] == mode
        close(fused(x, p), slt_linear_reference(x, p))
    monkeypatch.setenv("SLT_HW_CPU_LUT", "yes")
    with pytest.raises(ValueError, match=r"SLT_HW_CPU_LUT: expected one of \['auto', 'on', 'off'\], got 'yes'"):
        fused(x, p)
    with pytest.raises(ValueError, match=r"lut: expected one of"):
        cpu.linear(x, None, *_ops.weight_args(p)[1], 0, 9, lut="always")


def test_lut_shows_in_the_backend_description(monkeypatch):
    from slt_hw import dispatch

    monkeypatch.delenv("SLT_HW_CPU_ISA", raising=False)
    monkeypatch.setenv("SLT_HW_CPU_LUT", "on")
    info = cpu.lut_info()
    if not info["available"]:
        pytest.skip(f"the automatic ISA here ({cpu.chosen_isa()}) has no table-lookup kernel")
    assert info["isa"] == cpu.chosen_isa()
    text = dispatch.get("cpp").describe()
    assert f"batch <= {info['max_rows']}" in text and "table lookup" in text and "SLT_HW_CPU_LUT=on" in text
    monkeypatch.setenv("SLT_HW_CPU_LUT", "off")
    assert "table lookup" not in dispatch.get("cpp").describe()


@pytest.mark.parametrize("isa", TESTED_ISAS)
@pytest.mark.parametrize("threads", [1, 2])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["binary", "multicoat", "frozen"]), dist=st.sampled_from(["signed_constant", "uniform",
       "normal"]), n=st.integers(1, 40), k=st.sampled_from([1, 5, 31, 32, 33, 95, 1024, 1025, 2100]),
       seed=st.integers(0, 10_000), negative_scale=st.booleans())
def test_materialize_is_bit_identical(isa, threads, fmt, dist, n, k, seed, negative_scale):
    """materialise through the ISA's vector weight builder: the reference's bits, +0.0 (never
    -0.0) where a weight is masked, also with a negative coat scale (a binary weight's own
    scale may be negative too), on every row range. (An underflowing product keeps its -0.0:
    tests/test_fuzz.py draws subnormal coat scales.)"""
    p = packed(fmt, n, k, seed, dist)
    if negative_scale and fmt != "frozen":
        p = dataclasses.replace(p, coat_scales=-p.coat_scales)
    _, w = _ops.weight_args(p)
    want = p.materialize()
    lo, hi = n // 3, n - n // 4
    with extension_for(isa):
        got = cpu.materialize(*w, 0, n, isa=isa, threads=threads)
        part = cpu.materialize(*w, lo, hi, isa=isa, threads=threads)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    assert torch.equal(part.view(torch.int32), want[lo:hi].view(torch.int32))


@pytest.mark.parametrize("isa", TESTED_ISAS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["binary", "frozen"]), c=st.sampled_from([1, 3, 8, 13, 64]),
       taps=st.sampled_from([2, 3, 8, 9, 25]), n=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_materialize_tap_major(isa, fmt, c, taps, n, seed):
    """taps > 1: each row in a conv weight's channels-last order, [t * C + c] = W_eff[c * taps
    + t], the same bits (8x8 register transposes and their remainders: C and taps not multiples
    of 8); a row range too."""
    p = packed(fmt, n, c * taps, seed, "signed_constant")
    _, w = _ops.weight_args(p)
    want = p.materialize().view(n, c, taps).transpose(1, 2).reshape(n, c * taps)
    with extension_for(isa):
        got = cpu.materialize(*w, 0, n, isa=isa, taps=taps)
        part = cpu.materialize(*w, n // 2, n, isa=isa, taps=taps)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    assert torch.equal(part.view(torch.int32), want[n // 2:].view(torch.int32))


def test_materialize_taps_must_divide_k():
    _, w = _ops.weight_args(packed("binary", 4, 18, 0, "signed_constant"))
    for taps in (0, 4):
        with pytest.raises(ValueError, match=rf"taps: expected a positive divisor of K=18 \(kernel height x width\), "
                                             rf"got {taps}"):
            cpu.materialize(*w, 0, 4, taps=taps)
