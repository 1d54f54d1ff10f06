"""AVX-512 VNNI's int8 panels (csrc/cpu/linear_avx512.cpp) read from a layout of their own
(pack_lut_planes kind 'panels'): per 16-row group and 4 columns, the byte masks of P = mask & ~sign
and N = mask & sign in the panel's order, 2 bits a weight. It gives the bits of the panels made
from the mask as stored, for any rows, columns, row range and threads; the layout holds what its
comment in linear.h says; a wrong one is refused; the public op builds it on a mask's second
use. Natively where the CPU has AVX-512 VNNI, and always on the SIMDe-emulated build
(tests/avx512_emulation.py)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import _ext, _ops
from slt_hw.backends import cpu
from slt_hw.ops import slt_linear_int8, slt_linear_int8_reference

if _ext.native() is None:
    pytest.skip("slt_hw._C not built", allow_module_level=True)

import avx512_emulation
import lut_calls

NATIVE = [isa for isa in cpu.cpu_isas() if isa in ("avx512vnni", "amx")]
ISAS = NATIVE + [isa for isa in avx512_emulation.ISAS if isa.startswith(("avx512vnni", "amx"))]
module = avx512_emulation.module_for
binary = lut_calls.binary


def run(isa, x, p, layout=None, r0=0, threads=1):
    """The panels (lut off: no table lookup takes the rows) on rows [r0, n)."""
    return lut_calls.run(module(isa), isa, x, p, layout, r0, None, "off", threads)


def panels(isa, p, m=9, threads=1):
    _, w = _ops.weight_args(p)
    mod = module(isa)
    desc, _alive = _ext.weight_desc(mod, w)
    kind, nbytes = mod.lut_layout(desc, m, isa, "off", True)
    assert kind == "panels", (kind, m)
    out = torch.full((nbytes,), 0xA5, dtype=torch.uint8)
    mod.pack_lut_planes(desc, kind, out.data_ptr(), nbytes, threads)
    return out


def group_bytes(k):
    return (k + 31) // 32 * 8 * 16


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 200), k=st.sampled_from([1, 3, 31, 33, 97, 1025]), m=st.sampled_from([9, 15, 17, 33]),
       seed=st.integers(0, 10_000), rows=st.sampled_from(["all", "from 16", "from 5"]),
       threads=st.sampled_from([1, 2]))
def test_panels_layout_gives_the_kernels_own_bits(isa, n, k, m, seed, rows, threads):
    """n not a multiple of 16 or 48 (a last group of fewer rows), k not a multiple of 4 or 32,
    several 8-row passes (the first makes the panel from the layout, the others read it), row
    ranges from a 16-row group (read from the layout) or off one (made per call), 1 and 2
    threads: bit for bit the panels made from the mask, close to the int8 reference."""
    if isa.startswith("amx"):
        m = min(m, 15)  # (from 16 rows AMX's tiles take int8 activations)
    p = binary(n, k, seed)
    r0 = min({"all": 0, "from 16": 16, "from 5": 5}[rows], n - 1)
    x = 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    own = run(isa, x, p, r0=r0, threads=threads)
    assert torch.equal(run(isa, x, p, panels(isa, p, m, threads), r0=r0, threads=threads), own)
    want = slt_linear_int8_reference(x, p)[:, r0:]
    torch.testing.assert_close(own, want, rtol=1e-5, atol=1e-5 * max(1.0, float(want.abs().max())))


@pytest.mark.parametrize("isa", ISAS)
def test_the_layout_holds_the_ternary_weights_in_panel_order(isa):
    """Decoded as linear.h says (per group g and 4-column group c, 16 bytes: P's mask, then N's;
    bit 4 lane + j is row 16 g + lane, column 4 c + j), the layout is the weight's signs where the
    mask keeps it, zero elsewhere and past the weight's rows and columns; zeroing a group's
    masks zeroes exactly its 16 outputs."""
    n, k = 40, 70
    p = binary(n, k, 3)
    layout = panels(isa, p)
    assert layout.numel() == 64 + 3 * group_bytes(k)
    masks = layout[64:].view(3, -1, 2, 8)  # (group, c, P/N, 8 bytes)
    bits = torch.stack([(masks >> i) & 1 for i in range(8)], -1).flatten(-2)  # (group, c, 2, 64)
    t = (bits[:, :, 0] - bits[:, :, 1]).view(3, -1, 16, 4).permute(0, 2, 1, 3).reshape(48, -1)
    w = p.materialize()
    want = torch.zeros_like(t)
    want[:n, :k] = torch.sign(w).to(t.dtype)
    assert torch.equal(t, want)
    x = torch.randn(9, k)
    own = run(isa, x, p)
    zeroed = layout.clone()
    zeroed[64 + group_bytes(k):64 + 2 * group_bytes(k)] = 0
    y = run(isa, x, p, zeroed)
    assert torch.equal(y[:, 16:32], torch.zeros(9, 16)) and own[:, 16:32].abs().sum() > 0
    y[:, 16:32] = own[:, 16:32]
    assert torch.equal(y, own)


@pytest.mark.parametrize("isa", ISAS)
def test_where_the_panels_layout_is_read_and_a_wrong_one_refused(isa):
    """Asked for int8 rows past 8 that no table lookup takes (lut off, or past its rows); never
    for float activations, a multicoat weight or 8 rows; refused when its size, kind or weight
    is another's."""
    mod = module(isa)
    p = binary(70, 100)
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
    size = 64 + 5 * group_bytes(100)
    assert mod.lut_layout(desc, 9, isa, "off", True) == ("panels", size)
    assert mod.lut_layout(desc, 8, isa, "off", True) == ("", 0)
    assert mod.lut_layout(desc, 9, isa, "off", False) == ("", 0)
    assert mod.lut_layout(desc, 9, isa, "on", True)[0] == "codes"
    good = panels(isa, p)
    x = torch.randn(9, 100)
    with pytest.raises(ValueError, match=rf"lut_planes: expected {size} bytes \(pack_lut_planes of this weight, pan"):
        run(isa, x, p, good[:-64])
    with pytest.raises(ValueError, match=r"built for another weight or kernel .*keys"):
        run(isa, x, p, panels(isa, binary(70, 100, seed=1)))
    codes = lut_calls.pack(mod, isa, p, "codes", m=9)
    with pytest.raises(ValueError, match=r"lut_planes: expected .* bytes \(pack_lut_planes of this weight, panels"):
        run(isa, x, p, codes)
    with pytest.raises(ValueError, match=r"lut_planes: given, but this call reads no layout"):
        run(isa, x[:8], p, good)


@pytest.mark.parametrize("isa", ISAS)
def test_packing_on_threads_gives_the_same_panels(isa):
    p = binary(300, 1025, 7)
    assert torch.equal(panels(isa, p, threads=1), panels(isa, p, threads=2))


@pytest.mark.skipif("avx512vnni" not in cpu.cpu_isas(), reason="this CPU has no AVX-512 VNNI")
def test_public_ops_cache_the_panels(fresh_cache, monkeypatch):
    """Automatically (AVX-512 VNNI CPU, 24 int8 rows): the first call makes its panels from the
    mask, the second builds the layout and reads it, the same bits each time."""
    monkeypatch.delenv(cpu.ISA_ENV, raising=False)
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    p = binary(100, 300, 3)
    x = torch.randn(24, 300)
    lut_calls.built_on_second_use(fresh_cache, lambda: slt_linear_int8(x, p, backend="cpp"),
                                  64 + 7 * group_bytes(300))
