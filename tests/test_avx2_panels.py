"""AVX2's int8 panels (csrc/cpu/linear_avx2panel.cpp): int8 activations from kPanelRowsInt8Avx2
(64) rows on, read from the panels' layout (pack_lut_planes kind 'panels', the VNNI panels' own,
packed here in portable C++). They give the table lookup's bits for any rows, columns, row range
and threads; the layout is the VNNI packer's and the 1 x 1 convolution's, byte for byte; it is
asked for where the panels run and a wrong one is refused; the public ops (a linear, a
convolution's patch rows) build it on a mask's second use."""

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slt_hw import _ext, _ops, pack_binary
from slt_hw.backends import cpu
from slt_hw.ops import slt_conv2d_int8, slt_conv2d_int8_reference, slt_linear_int8, slt_linear_int8_reference

if _ext.native() is None:
    pytest.skip("slt_hw._C not built", allow_module_level=True)
if "avx2" not in cpu.cpu_isas():
    pytest.skip("this CPU has no AVX2", allow_module_level=True)

import avx512_emulation
import lut_calls

ROWS = 64  # kPanelRowsInt8Avx2
binary = lut_calls.binary


def mod():
    return _ext.require()


def panels(p, m=ROWS, threads=1):
    desc, _alive = _ext.weight_desc(mod(), _ops.weight_args(p)[1])
    kind, nbytes = mod().lut_layout(desc, m, "avx2", "auto", True)
    assert kind == "panels", (kind, m)
    out = torch.full((nbytes,), 0xA5, dtype=torch.uint8)
    mod().pack_lut_planes(desc, kind, out.data_ptr(), nbytes, threads)
    return out


def group_bytes(k):
    return (k + 31) // 32 * 8 * 16


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 200), k=st.sampled_from([1, 3, 31, 33, 97, 1025]), m=st.sampled_from([64, 67, 131]),
       seed=st.integers(0, 10_000), r0=st.sampled_from([0, 5, 8, 16, 48]), threads=st.sampled_from([1, 2]))
@example(n=64, k=97, m=64, seed=1, r0=0, threads=2)  # 48 + 16 rows on 2 threads: equal 32-row ranges
@example(n=64, k=33, m=131, seed=2, r0=0, threads=2)  # ... or the activation rows split in two
def test_panels_give_the_lookups_bits(n, k, m, seed, r0, threads):
    """n not a multiple of 8, 16 or 48 (a last group of fewer rows), k not a multiple of 4 or 32,
    m not a multiple of the micro-tile's 4 rows, row ranges from off an 8-row boundary (the panel
    made row by row), 1 and 2 threads (the rows split among them, or the activation rows): bit for
    bit the table lookup's sums without a layout, close to the int8 reference."""
    p = binary(n, k, seed)
    r0 = min(r0, n - 1)
    x = 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    got = lut_calls.run(mod(), "avx2", x, p, panels(p, m, threads), r0, None, "auto", threads)
    assert torch.equal(got, lut_calls.run(mod(), "avx2", x, p, None, r0, None, "on", threads))
    want = slt_linear_int8_reference(x, p)[:, r0:]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(want.abs().max())))


def test_the_layout_is_the_vnni_packers_and_the_1x1_convolutions():
    """The portable packer writes what AVX-512 VNNI's packer writes (on the emulated build) and
    what pack_conv_taps_planes writes for a 1 x 1 kernel (its own header aside), on 1 or 2 threads;
    decoded, it is the weight's signs where the mask keeps it."""
    n, k = 70, 1025
    p = binary(n, k, 3)
    layout = panels(p)
    assert layout.numel() == 64 + 5 * group_bytes(k)
    assert torch.equal(layout, panels(p, threads=2))
    desc, _alive = _ext.weight_desc(mod(), _ops.weight_args(p)[1])
    taps = torch.empty(mod().conv_taps_planes_bytes(desc, 1), dtype=torch.uint8)
    mod().pack_conv_taps_planes(desc, 1, taps.data_ptr(), taps.numel(), 1)
    assert torch.equal(taps[64:], layout[64:])
    masks = layout[64:].view(5, -1, 2, 8)  # (group, c, P/N, 8 bytes)
    bits = torch.stack([(masks >> i) & 1 for i in range(8)], -1).flatten(-2)
    t = (bits[:, :, 0] - bits[:, :, 1]).view(5, -1, 16, 4).permute(0, 2, 1, 3).reshape(80, -1)
    want = torch.zeros_like(t)
    want[:n, :k] = torch.sign(p.materialize()).to(t.dtype)
    assert torch.equal(t, want)
    emulated = avx512_emulation.module()  # (skips, or fails where emulation is required, without it)
    desc_e, _alive_e = _ext.weight_desc(emulated, _ops.weight_args(p)[1])
    vnni = torch.full_like(layout, 0xA5)
    emulated.pack_lut_planes(desc_e, "panels", vnni.data_ptr(), vnni.numel(), 1)
    assert torch.equal(vnni, layout)


def test_where_the_panels_run_and_a_wrong_layout_is_refused():
    """Asked for from 64 int8 rows (lut auto or off); below that, with lut on, or for float
    activations the table lookup's layout (or none); refused when its size or weight is
    another's."""
    p = binary(70, 100)
    desc, _alive = _ext.weight_desc(mod(), _ops.weight_args(p)[1])
    size = 64 + 5 * group_bytes(100)
    for lut in ("auto", "off"):
        assert mod().lut_layout(desc, ROWS, "avx2", lut, True) == ("panels", size)
    assert mod().lut_layout(desc, ROWS - 1, "avx2", "off", True) == ("", 0)
    assert mod().lut_layout(desc, ROWS, "avx2", "on", True)[0] == "int8"
    assert mod().lut_layout(desc, ROWS, "avx2", "auto", False)[0] != "panels"
    good = panels(p)
    x = torch.randn(ROWS, 100)
    with pytest.raises(ValueError, match=rf"lut_planes: expected {size} bytes \(pack_lut_planes of this weight, pan"):
        lut_calls.run(mod(), "avx2", x, p, good[:-64], lut="auto")
    with pytest.raises(ValueError, match=r"built for another weight or kernel .*keys"):
        lut_calls.run(mod(), "avx2", x, p, panels(binary(70, 100, seed=1)), lut="auto")
    with pytest.raises(ValueError, match=r"lut_planes: given, but this call reads no layout"):
        lut_calls.run(mod(), "avx2", x[:ROWS - 1], p, good, lut="off")


def test_public_ops_cache_the_panels(fresh_cache, monkeypatch):
    """Automatically (64 int8 rows: AVX2's panels, or AVX-512 VNNI's where the CPU has it): the
    first call runs without the layout, the second builds it and reads it, the same bits."""
    monkeypatch.delenv(cpu.ISA_ENV, raising=False)
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    p = binary(100, 300, 3)
    x = torch.randn(ROWS, 300)
    lut_calls.built_on_second_use(fresh_cache, lambda: slt_linear_int8(x, p, backend="cpp"),
                                  64 + 7 * group_bytes(300))


def test_patch_convolutions_read_the_panels(fresh_cache, monkeypatch):
    """A convolution's patch rows (act_scale "patch", 100 output pixels) are int8 rows of the
    linear: from the mask's second use they run from the panels' layout, the same bits, close to
    the reference."""
    monkeypatch.delenv(cpu.ISA_ENV, raising=False)
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    g = torch.Generator().manual_seed(5)
    p = pack_binary(torch.rand(20, 8, 3, 3, generator=g) < 0.5, seed=5, name="conv", dist="signed_constant")
    x = torch.randn(1, 8, 10, 10, generator=g)
    lut_calls.built_on_second_use(fresh_cache, lambda: slt_conv2d_int8(x, p, padding=1, backend="cpp"),
                                  64 + 2 * group_bytes(72))
    want = slt_conv2d_int8_reference(x, p, padding=1)
    got = slt_conv2d_int8(x, p, padding=1, backend="cpp")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
