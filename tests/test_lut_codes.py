"""AVX-512's int8 table lookup (csrc/cpu/linear_avx512lut8.cpp): three weights as one base-3 code,
32-entry int16 tables looked up with vpermw. Its codes layout (pack_lut_planes kind 'codes':
three codes a row per uint16, 32-row blocks) gives the same bits as the codes the kernel makes
itself, and both the bits of the other int8 kernels (exact integer sums, scaled alike); float
activations reach it as int8 slices up to 4 rows. Natively where the CPU has AVX-512, and always
on the SIMDe-emulated build (tests/avx512_emulation.py)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import _ext, _ops, pack_multicoat
from slt_hw.backends import cpu
from slt_hw.ops import slt_linear, slt_linear_int8, slt_linear_int8_reference, slt_linear_reference

if _ext.native() is None:
    pytest.skip("slt_hw._C not built", allow_module_level=True)

import avx512_emulation
import lut_calls

NATIVE = [isa for isa in cpu.cpu_isas() if isa in ("avx512", "avx512vnni", "amx")]
ISAS = NATIVE + list(avx512_emulation.ISAS)


module = avx512_emulation.module_for


binary = lut_calls.binary


def run(isa, x, p, codes=None, r0=0, r1=None, lut="on", threads=1, int8=True):
    return lut_calls.run(module(isa), isa, x, p, codes, r0, r1, lut, threads, int8)


def codes(isa, p, m=1, int8=True, threads=1):
    return lut_calls.pack(module(isa), isa, p, "codes", m, int8, threads)


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 200), k=st.sampled_from([1, 2, 3, 8, 9, 10, 31, 33, 97, 1025]),
       m=st.sampled_from([1, 2, 3, 5, 8, 9, 16, 33]), seed=st.integers(0, 10_000),
       rows=st.sampled_from(["all", "from 32", "from 5"]), threads=st.sampled_from([1, 2]))
def test_codes_give_the_int8_kernels_bits(isa, n, k, m, seed, rows, threads):
    """n not a multiple of 32 (rows past n have zero masks), k not a multiple of 9 or 32 (a
    triple spanning two mask words, the last triple's columns past k), more than 8 activation
    rows (two row sweeps), row ranges that start on a 32-row block (read from the layout) or off
    one (codes made per call), 1 and 2 threads: bit for bit the kernel making its own codes and
    the int8 path without a table lookup, close to the int8 reference."""
    if isa.startswith("amx"):
        m = min(m, 15)  # (from 16 rows AMX's tiles take int8 activations)
    p = binary(n, k, seed)
    r0 = min({"all": 0, "from 32": 32, "from 5": 5}[rows], n - 1)
    x = 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    own = run(isa, x, p, r0=r0, threads=threads)
    assert torch.equal(run(isa, x, p, codes(isa, p, threads=threads), r0=r0, threads=threads), own)
    assert torch.equal(run(isa, x, p, r0=r0, threads=threads, lut="off"), own)
    want = slt_linear_int8_reference(x, p)[:, r0:]
    torch.testing.assert_close(own, want, rtol=1e-5, atol=1e-5 * max(1.0, float(want.abs().max())))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 2, 4])
@pytest.mark.parametrize("n, k", [(5, 8), (70, 100), (300, 1025)])
def test_float_rows_as_slices(isa, m, n, k):
    """Float activations at 1-4 rows: int8 slices through the lookup, the same bits with and
    without the codes, as accurate as the float kernels."""
    p = binary(n, k, 2)
    x = torch.randn(m, k)
    own = run(isa, x, p, int8=False)
    assert torch.equal(run(isa, x, p, codes(isa, p, m=m, int8=False), int8=False), own)
    want = slt_linear_reference(x, p)
    torch.testing.assert_close(own, want, rtol=1e-4, atol=1e-4 * max(1.0, float(want.abs().max())))


@pytest.mark.parametrize("isa", ISAS)
def test_the_codes_are_what_is_read(isa):
    """Codes of zero weights (code 13 = digits 1, 1, 1 in every field) give zeros where blocks
    start on a 32-row boundary (read from them), and the real sums where they do not (rows from
    5: made per call)."""
    p = binary(64, 100)
    x = torch.randn(2, 100)
    zero = codes(isa, p)
    zero[64:] = torch.tensor([13 | 13 << 5 | 13 << 10], dtype=torch.int16).view(torch.uint8).repeat(
        (zero.numel() - 64) // 2)
    assert torch.equal(run(isa, x, p, zero), torch.zeros(2, 64))
    assert torch.equal(run(isa, x, p, zero, r0=5), run(isa, x, p, r0=5))
    assert run(isa, x, p, r0=5).abs().sum() > 0


def codes_offset(n_triples, blocks, b, t, group=16, chunk=16):
    """Where block b's triple t lies in the codes layout, in 64-byte units past the header: the
    blocks in groups of 16 (512 rows), a group's triples in chunks of 16, a chunk's blocks one
    after another (linear_avx512lut8.cpp, Codes)."""
    g, bi = divmod(b, group)
    in_group = min(group, blocks - g * group)
    c0 = t // chunk * chunk
    return g * group * n_triples + c0 * in_group + bi * min(chunk, n_triples - c0) + t - c0


@pytest.mark.parametrize("isa", ISAS)
def test_codes_lie_in_the_sweep_order(isa):
    """Three groups of blocks (the last of 3) and two chunks of triples (the last of 7): zero
    codes written where block 17's belong (the second group's second block) zero its 32 rows and
    no others, and the layout gives the kernel's own bits on 1 and 2 threads, from a block's
    start and off one."""
    n, k = 1100, 200  # 35 blocks; 23 triples
    p = binary(n, k, 4)
    x = torch.randn(3, k, generator=torch.Generator().manual_seed(5))
    n_triples, blocks = (k + 8) // 9, (n + 31) // 32
    for threads in (1, 2):
        layout = codes(isa, p, m=3, threads=threads)
        for r0 in (0, 32, 5):
            assert torch.equal(run(isa, x, p, layout, r0=r0, threads=threads), run(isa, x, p, r0=r0, threads=threads))
    body = layout[64:].view(-1, 64)
    zero = torch.tensor([13 | 13 << 5 | 13 << 10], dtype=torch.int16).view(torch.uint8).repeat(32)
    for t in range(n_triples):
        body[codes_offset(n_triples, blocks, 17, t)] = zero
    y, own = run(isa, x, p, layout), run(isa, x, p)
    rows = slice(17 * 32, 18 * 32)
    assert torch.equal(y[:, rows], torch.zeros(3, 32)) and own[:, rows].abs().sum() > 0
    y[:, rows] = own[:, rows]
    assert torch.equal(y, own)


@pytest.mark.parametrize("isa", ISAS)
def test_codes_size_and_where_they_are_read(isa):
    """A 64-byte header, then per 32-row block 64 bytes per 9 columns (1.78 bits a weight); asked
    for where the lookup runs: int8 activations up to 128 rows forced, 16 automatically with 512
    weight rows a thread; float ones up to 4 rows (as slices; from 5 rows AVX-512's float lookup,
    which reads none); never for another format. (AMX: its tiles take int8 activations from 16
    rows. With VNNI, int8 rows past 8 that no lookup takes read the panels' layout instead,
    test_vnni_panels.py.)"""
    mod = module(isa)
    amx = isa.startswith("amx")
    vnni = amx or "vnni" in isa

    def panels(n, m):  # (int8 rows: AMX's tiles from 16)
        return ("panels", 64 + (n + 15) // 16 * 512) if vnni and 8 < m and not (amx and m >= 16) else ("", 0)

    p = binary(70, 100)
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
    size = 64 + 3 * 12 * 64
    assert mod.lut_layout(desc, 1, isa, "on", True) == ("codes", size)
    assert mod.lut_layout(desc, 128, isa, "on", True) == (("", 0) if amx else ("codes", size))
    assert mod.lut_layout(desc, 129, isa, "on", True) == panels(70, 129)
    assert mod.lut_layout(desc, 4, isa, "on", False) == ("codes", size)
    assert mod.lut_layout(desc, 5, isa, "on", False) == ("", 0)
    assert mod.lut_layout(desc, 1, isa, "off", True) == ("", 0)
    assert mod.lut_layout(desc, 1, isa, "auto", True, 1) == ("", 0)  # 70 rows: too few for its tables
    big = _ext.weight_desc(mod, _ops.weight_args(binary(1024, 100))[1])[0]
    size = 64 + 32 * 12 * 64
    for m, threads, int8, runs in [(1, 1, True, True), (15, 1, True, True), (16, 1, True, not amx),
                                   (17, 1, True, False), (1, 2, True, True), (1, 3, True, False),
                                   (2, 2, False, True), (4, 2, False, True), (5, 1, False, False),
                                   (0, 1, True, False)]:
        other = panels(1024, m) if int8 else ("", 0)
        assert mod.lut_layout(big, m, isa, "auto", int8, threads) == (("codes", size) if runs else other), \
            (m, threads, int8)
    q = pack_multicoat(torch.randint(0, 3, (70, 100)), 2, seed=0, name="fc", dist="signed_constant")
    desc_q, _alive_q = _ext.weight_desc(mod, _ops.weight_args(q)[1])
    assert mod.lut_layout(desc_q, 1, isa, "on", True) == ("", 0)
    out = torch.empty(size, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"signed_constant weight in the binary format \(or multicoat, for the int8"):
        mod.pack_lut_planes(desc_q, "codes", out.data_ptr(), size, 1)


@pytest.mark.parametrize("isa", ISAS)
def test_a_wrong_codes_layout_is_refused(isa):
    """The wrong size, AVX2's planes (another kernel's layout), another weight's codes."""
    p = binary(70, 100)
    good = codes(isa, p)
    x = torch.randn(2, 100)
    with pytest.raises(ValueError, match=r"lut_planes: expected 2368 bytes \(pack_lut_planes of this weight, codes"):
        run(isa, x, p, good[:-64])
    mod = module(isa)
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
    if "avx2" in cpu.cpu_isas():
        kind, nbytes = mod.lut_layout(desc, 2, "avx2", "on", True)
        planes = torch.empty(nbytes, dtype=torch.uint8)
        mod.pack_lut_planes(desc, kind, planes.data_ptr(), nbytes, 1)
        header = torch.cat([planes[:64], good[64:]])  # the size of codes, the header of AVX2's planes
        with pytest.raises(ValueError, match=r"another weight or kernel \(header: int8 layout"):
            run(isa, x, p, header)
    with pytest.raises(ValueError, match=r"built for another weight or kernel .*keys"):
        run(isa, x, p, codes(isa, binary(70, 100, seed=1)))


@pytest.mark.parametrize("isa", ISAS)
def test_packing_on_threads_gives_the_same_codes(isa):
    p = binary(300, 1025, 7)
    assert torch.equal(codes(isa, p, threads=1), codes(isa, p, threads=2))


@pytest.mark.skipif(not NATIVE, reason="this CPU has no AVX-512")
def test_public_ops_cache_the_codes(fresh_cache, monkeypatch):
    """Automatically (AVX-512 CPU, 1024 weight rows on one thread): the first int8 call runs the
    register kernel (making the codes would cost more than it), the second builds the codes and
    reads them, float rows at batch 1 read the same; the same bits each time."""
    monkeypatch.delenv(cpu.ISA_ENV, raising=False)
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    p = binary(1024, 300, 3)
    x = torch.randn(4, 300)
    size = 64 + 32 * 34 * 64
    lut_calls.built_on_second_use(fresh_cache, lambda: slt_linear_int8(x, p, backend="cpp"), size)
    z = slt_linear(x[:1], p, backend="cpp")
    assert len(fresh_cache) == 1 and fresh_cache.nbytes() == size
    torch.testing.assert_close(z, slt_linear_reference(x[:1], p), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("isa", ISAS)
def test_codes_show_in_the_backend_description(monkeypatch, isa):
    from unittest import mock

    from slt_hw import dispatch

    monkeypatch.setenv(cpu.ISA_ENV, isa)
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    with mock.patch.object(_ext, "require", return_value=module(isa)):
        text = dispatch.get("cpp").describe()
    cached = " (its codes cached: a mask's second use on)"
    assert "int8 activations at batch <= 16, with >= 512 weight rows a thread" + cached in text
    assert "float activations as int8 slices at batch <= 4 with >= 512 weight rows a thread" + cached in text
    assert "masks used twice kept as base-3 codes of 3 weights, 1.78 bits/weight" in text


@pytest.mark.parametrize("isa", ISAS)
def test_chosen_automatically_only_with_the_codes_given(isa):
    """Making the codes costs more than the register kernels' whole call at 1-16 rows, so 'auto'
    runs the lookup only where the caller gives them (forced on, it makes them): float rows at
    batch 1 take the slices with codes given (the forced path's bits) and AVX-512's float lookup
    without (other bits, the same sums in another order); int8 rows the same bits either way."""
    p = binary(512, 300, 6)
    x = torch.randn(1, 300)
    given = codes(isa, p, int8=False)
    on = run(isa, x, p, lut="on", int8=False)
    assert torch.equal(run(isa, x, p, given, lut="auto", int8=False), on)
    without = run(isa, x, p, lut="auto", int8=False)
    assert not torch.equal(without, on)
    want = slt_linear_reference(x, p)
    for y in (on, without):
        torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4 * max(1.0, float(want.abs().max())))
    x8 = torch.randn(4, 300)
    assert torch.equal(run(isa, x8, p, codes(isa, p), lut="auto"), run(isa, x8, p, lut="auto"))
