"""The int8 table lookup's mask layout (csrc/cpu/linear_avx2lut.cpp, pack_lut_masks) and the cache
that keeps it per mask tensor (slt_hw/backends/layout_cache.py): the kernel gives the same bits
reading the layout as transposing the mask itself, the cache builds it on a tensor's second use
and drops it when the tensor changes or dies, and a wrong layout is refused."""

import gc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import _ext, _ops, pack_binary, pack_multicoat
from slt_hw.backends import cpu, layout_cache
from slt_hw.ops import slt_linear_int8, slt_linear_int8_reference

if _ext.native() is None or "avx2" not in cpu.cpu_isas():
    pytest.skip("needs slt_hw._C on an AVX2 CPU (the int8 table lookup is AVX2's)", allow_module_level=True)

MOD = _ext.native()


def binary(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return pack_binary(torch.rand(n, k, generator=g) < 0.5, seed=seed, name="fc", dist="signed_constant")


def run(x, p, masks=None, r0=0, r1=None, isa="avx2", lut="on", threads=1):
    """The int8 kernel on rows [r0, r1) of p's weight, reading `masks` (a layout tensor) or not."""
    _, w = _ops.weight_args(p)
    r1 = p.out_features if r1 is None else r1
    desc, _alive = _ext.weight_desc(MOD, w)
    xq, xs = torch.empty(x.shape[0], desc.k, dtype=torch.int8), torch.empty(x.shape[0])
    MOD.quantize_int8(x.data_ptr(), x.shape[0], desc.k, desc.k, xq.data_ptr(), xs.data_ptr())
    y = torch.zeros(x.shape[0], r1 - r0)
    ptr, nbytes = (0, 0) if masks is None else (masks.data_ptr(), masks.numel())
    MOD.slt_linear(desc, 0, x.shape[0], desc.k, y.data_ptr(), r1 - r0, r0, r1, 0, xq.data_ptr(), xs.data_ptr(), isa,
                   threads, lut, 0, ptr, nbytes)
    return y


def layout(p, threads=1):
    _, w = _ops.weight_args(p)
    desc, _alive = _ext.weight_desc(MOD, w)
    nbytes = MOD.lut_masks_bytes(desc, 1, "avx2", "on")
    out = torch.full((nbytes,), 0xA5, dtype=torch.uint8)  # every byte must be written
    MOD.pack_lut_masks(desc, out.data_ptr(), nbytes, threads)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 200), k=st.sampled_from([1, 3, 31, 33, 97, 1025]), m=st.sampled_from([1, 2, 3, 4, 5, 9, 33]),
       seed=st.integers(0, 10_000), rows=st.sampled_from(["all", "from 32", "from 5"]), threads=st.sampled_from([1, 2]))
def test_layout_gives_the_same_bits(n, k, m, seed, rows, threads):
    """n not a multiple of 32 (the last block's rows past n have zero masks), odd k, row ranges
    that start on a 32-row block (read from the layout) or off one (transposed per call), 1 and 2
    threads: bit for bit what the kernel gives transposing the mask itself, and the reference."""
    p = binary(n, k, seed)
    r0 = {"all": 0, "from 32": min(32, n - 1), "from 5": min(5, n - 1)}[rows]
    x = 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    packed = layout(p, threads)
    own = run(x, p, r0=r0, threads=threads)
    assert torch.equal(run(x, p, packed, r0=r0, threads=threads), own)
    want = slt_linear_int8_reference(x, p)[:, r0:]
    torch.testing.assert_close(own, want, rtol=1e-5, atol=1e-5 * max(1.0, float(want.abs().max())))


def test_the_layout_is_what_is_read():
    """A layout of empty masks gives zeros where blocks start on 32 rows (read from it) and the
    real sums where they do not (rows from 5: transposed from the mask)."""
    p = binary(64, 100)
    x = torch.randn(2, 100)
    empty = torch.zeros_like(layout(p))
    assert torch.equal(run(x, p, empty), torch.zeros(2, 64))
    assert torch.equal(run(x, p, empty, r0=5), run(x, p, r0=5))
    assert run(x, p, r0=5).abs().sum() > 0


def test_layout_size_and_where_it_is_read():
    """32-row blocks of 128 bytes per 32-column word (as many bytes as the mask, rounded up to
    the blocks); asked for only where the int8 table lookup runs."""
    p = binary(70, 100)
    _, w = _ops.weight_args(p)
    desc, _alive = _ext.weight_desc(MOD, w)
    assert MOD.lut_masks_bytes(desc, 1, "avx2", "auto") == 3 * 4 * 128
    assert MOD.lut_masks_bytes(desc, 1, "avx2", "off") == 0
    assert MOD.lut_masks_bytes(desc, 513, "avx2", "on") == 0  # past the lookup's 512 rows
    assert MOD.lut_masks_bytes(desc, 1, "scalar", "on") == 0
    q = pack_multicoat(torch.randint(0, 3, (70, 100)), 2, seed=0, name="fc", dist="signed_constant")
    desc_q, _alive_q = _ext.weight_desc(MOD, _ops.weight_args(q)[1])
    assert MOD.lut_masks_bytes(desc_q, 1, "avx2", "on") == 0


def test_a_wrong_layout_is_refused():
    p = binary(70, 100)
    packed = layout(p)
    x = torch.randn(2, 100)
    with pytest.raises(ValueError, match=r"lut_masks: expected 1536 bytes"):
        run(x, p, packed[:-1])
    _, w = _ops.weight_args(p)
    desc, _alive = _ext.weight_desc(MOD, w)
    with pytest.raises(ValueError, match=r"dst: expected 1536 bytes, got 1535"):
        MOD.pack_lut_masks(desc, packed.data_ptr(), 1535, 1)
    q = pack_multicoat(torch.randint(0, 3, (70, 100)), 2, seed=0, name="fc", dist="signed_constant")
    desc_q, _alive_q = _ext.weight_desc(MOD, _ops.weight_args(q)[1])
    with pytest.raises(ValueError, match=r"binary-format weight"):
        MOD.pack_lut_masks(desc_q, packed.data_ptr(), 1536, 1)


@pytest.fixture
def fresh_cache(monkeypatch):
    cache = layout_cache.LayoutCache()
    monkeypatch.setattr(cpu, "LUT_MASKS", cache)
    monkeypatch.delenv(layout_cache.ENV, raising=False)
    return cache


def test_public_op_builds_the_layout_on_second_use(fresh_cache, monkeypatch):
    """slt_linear_int8 on one PackedWeight: the first call transposes, the second builds and reads
    the layout, the third reads it; the same bits each time. Cache off: never built."""
    monkeypatch.setenv(cpu.ISA_ENV, "avx2")
    p = binary(100, 300, 3)
    x = torch.randn(3, 300)
    ys = []
    for calls in (1, 2, 3):
        ys.append(slt_linear_int8(x, p, backend="cpp"))
        assert len(fresh_cache) == (calls >= 2)
    assert all(torch.equal(y, ys[0]) for y in ys)
    assert fresh_cache.nbytes() == 4 * 10 * 128
    monkeypatch.setenv(layout_cache.ENV, "off")
    fresh_cache.clear()
    for _ in range(3):
        assert torch.equal(slt_linear_int8(x, p, backend="cpp"), ys[0])
    assert len(fresh_cache) == 0


def test_int8_module_keeps_its_layout(fresh_cache, monkeypatch):
    """SLTPackedLinear(int8=True): its planes buffer is the same tensor every call, so the layout
    is built once and read from then on; the same bits throughout."""
    from slt_hw.nn import SLTPackedLinear

    monkeypatch.setenv(cpu.ISA_ENV, "avx2")
    layer = SLTPackedLinear(binary(96, 200, 4), int8=True)
    x = torch.randn(2, 200)
    ys = [layer(x) for _ in range(4)]
    assert len(fresh_cache) == 1 and all(torch.equal(y, ys[0]) for y in ys)


def test_cache_follows_the_tensor(fresh_cache):
    """Rebuilt after the tensor is modified in place (its version), for another key, and dropped
    with the tensor."""
    builds = []

    def build():
        builds.append(1)
        return torch.zeros(8, dtype=torch.uint8)

    t = torch.zeros(4, dtype=torch.int32)
    assert fresh_cache.get(t, "k", build) is None and not builds
    first = fresh_cache.get(t, "k", build)
    assert first is not None and fresh_cache.get(t, "k", build) is first and len(builds) == 1
    t.add_(1)  # in place: the layout is stale
    assert fresh_cache.get(t, "k", build) is None
    assert fresh_cache.get(t, "k", build) is not first and len(builds) == 2
    assert fresh_cache.get(t, "other", build) is None
    del t
    gc.collect()
    assert len(fresh_cache) == 0 and fresh_cache.nbytes() == 0


def test_inference_tensors_are_not_cached(fresh_cache, monkeypatch):
    """A mask made under torch.inference_mode has no version counter: run uncached, same bits."""
    monkeypatch.setenv(cpu.ISA_ENV, "avx2")
    x = torch.randn(2, 300)
    with torch.inference_mode():
        p = binary(64, 300, 7)
        ys = [slt_linear_int8(x, p, backend="cpp") for _ in range(3)]
    assert len(fresh_cache) == 0 and all(torch.equal(y, ys[0]) for y in ys)
    q = binary(64, 300, 7)  # the same mask made outside the mode: cached, used inside it too
    with torch.inference_mode():
        zs = [slt_linear_int8(x, q, backend="cpp") for _ in range(3)]
    assert len(fresh_cache) == 1 and all(torch.equal(z, ys[0]) for z in zs)


def test_cache_arguments(monkeypatch):
    with pytest.raises(ValueError, match="min_uses"):
        layout_cache.LayoutCache(min_uses=0)
    monkeypatch.setenv(layout_cache.ENV, "sometimes")
    with pytest.raises(ValueError, match=r"SLT_HW_CPU_LAYOUT_CACHE: expected one of \['on', 'off'\]"):
        layout_cache.LayoutCache().get(torch.zeros(1), "k", lambda: torch.zeros(1))


def test_cache_shows_in_the_backend_description(monkeypatch):
    from slt_hw import dispatch

    monkeypatch.setenv(cpu.ISA_ENV, "avx2")
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    for mode in ("on", "off"):
        monkeypatch.setenv(layout_cache.ENV, mode)
        assert f"masks used twice kept transposed (SLT_HW_CPU_LAYOUT_CACHE={mode})" in dispatch.get("cpp").describe()
    monkeypatch.setenv(layout_cache.ENV, "sometimes")
    assert "SLT_HW_CPU_LAYOUT_CACHE: expected one of" in dispatch.get("cpp").describe()
