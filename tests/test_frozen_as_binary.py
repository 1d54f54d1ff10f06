"""Frozen weights on the CPU backend run as the binary weight of their effective mask (C++
frozen_mask_planes, cached per free-bit stream from its second use: backends/cpu.py's
_as_binary): the plane is the effective mask bit for bit, the int8 outputs and the materialised
weights keep their bits, float outputs stay as close to the reference, and an in-place change of
the stream is seen."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import _ext, _ops, pack_binary, pack_frozen
from slt_hw.backends import cpu
from slt_hw.ops import (
    slt_conv2d_int8,
    slt_conv2d_int8_reference,
    slt_linear,
    slt_linear_int8,
    slt_linear_int8_reference,
    slt_linear_reference,
)
from slt_hw.reference import masks

if _ext.native() is None:
    pytest.skip("slt_hw._C not built", allow_module_level=True)

MOD = _ext.native()


def frozen(n, k, seed=0, shape=None, dist="signed_constant"):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(*(shape or (n, k)), generator=g) < 0.5
    return pack_frozen(mask, seed=seed, name="fz", p_prune=0.3, p_lock=0.2, dist=dist)


@pytest.fixture
def fresh(monkeypatch):
    """Empty, enabled frozen-plane and layout caches in place of the process's."""
    from slt_hw.backends import layout_cache

    monkeypatch.setattr(cpu, "FROZEN_PLANES", layout_cache.LayoutCache())
    monkeypatch.setattr(cpu, "LUT_PLANES", layout_cache.LayoutCache())
    monkeypatch.delenv(layout_cache.ENV, raising=False)
    return cpu.FROZEN_PLANES


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 150), k=st.sampled_from([1, 31, 33, 97, 1025]), seed=st.integers(0, 10_000),
       threads=st.sampled_from([1, 2]))
def test_plane_is_the_effective_mask(n, k, seed, threads):
    p = frozen(n, k, seed)
    desc, _alive = _ext.weight_desc(MOD, _ops.weight_args(p)[1])
    out = torch.full((1, n, (k + 31) // 32), -1, dtype=torch.int32)
    MOD.frozen_mask_planes(desc, out.data_ptr(), threads)
    assert torch.equal(out[0], masks.pack_bits(p.mask()))


def test_refusals():
    b = pack_binary(torch.rand(8, 40) < 0.5, seed=0, name="b")
    desc, _alive = _ext.weight_desc(MOD, _ops.weight_args(b)[1])
    out = torch.empty(8, 2, dtype=torch.int32)
    with pytest.raises(ValueError, match="expected a frozen-format weight"):
        MOD.frozen_mask_planes(desc, out.data_ptr(), 1)
    p = frozen(8, 40)
    desc, _alive = _ext.weight_desc(MOD, _ops.weight_args(p)[1])
    with pytest.raises(ValueError, match="out: null pointer"):
        MOD.frozen_mask_planes(desc, 0, 1)


@pytest.mark.parametrize("m", [1, 5, 70])
def test_ops_keep_their_bits_from_the_second_use(fresh, m):
    """int8: the frozen kernels' bits on the first call, the binary kernels' (the lookup, the
    panels) after, the same; float: close to the reference either way; the plane is cached from
    the second call and rebuilt when the stream changes in place."""
    p = frozen(300, 200, 3)
    x = torch.randn(m, 200)
    first = slt_linear_int8(x, p, backend="cpp")
    assert fresh.nbytes() == 0
    for _ in range(3):
        assert torch.equal(slt_linear_int8(x, p, backend="cpp"), first)
        torch.testing.assert_close(slt_linear(x, p, backend="cpp"), slt_linear_reference(x, p), rtol=1e-4, atol=1e-4)
    assert fresh.nbytes() == 300 * 7 * 4
    torch.testing.assert_close(first, slt_linear_int8_reference(x, p), rtol=1e-5, atol=1e-5)
    p.free_bits.bitwise_not_()  # (every free weight flipped: another mask)
    want = slt_linear_int8_reference(x, p)
    torch.testing.assert_close(slt_linear_int8(x, p, backend="cpp"), want, rtol=1e-5, atol=1e-5)


def test_materialize_and_convolutions(fresh):
    p = frozen(0, 0, 5, shape=(16, 8, 3, 3))
    _, w = _ops.weight_args(p)
    want = cpu.materialize(*w, 0, 16)
    x = torch.randn(2, 8, 9, 9)
    first = slt_conv2d_int8(x, p, padding=1, backend="cpp")
    for _ in range(3):
        assert torch.equal(cpu.materialize(*w, 0, 16), want)
        assert torch.equal(slt_conv2d_int8(x, p, padding=1, backend="cpp"), first)
    assert fresh.nbytes() > 0
    torch.testing.assert_close(want, p.materialize(), rtol=0, atol=0)
    ref = slt_conv2d_int8_reference(x, p, padding=1)
    torch.testing.assert_close(first, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
