"""AVX2's table lookup (csrc/cpu/linear_avx2lut.cpp): its planes layout (pack_lut_planes: the
signs hashed once, P = mask & ~sign and N = mask & sign in the kernel's order), the cache that
keeps it per mask tensor (slt_hw/backends/layout_cache.py), and float activations run through
it as int8 slices (quantize.h). The kernel gives the same bits reading the planes as hashing
and transposing itself, the cache builds them on a tensor's second use and drops them when the
tensor changes or dies, a layout of the wrong size, weight or seed is refused, and the slices
are exact digits whose sums are no less accurate than the float kernels'."""

import gc

import lut_calls
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import _ext, _ops, pack_multicoat
from slt_hw.backends import cpu, layout_cache
from slt_hw.ops import slt_linear, slt_linear_int8, slt_linear_int8_reference, slt_linear_reference

if _ext.native() is None or "avx2" not in cpu.cpu_isas():
    pytest.skip("needs slt_hw._C on an AVX2 CPU (the planes are AVX2's table lookups')", allow_module_level=True)

MOD = _ext.native()
binary = lut_calls.binary


def run(x, p, planes=None, r0=0, r1=None, isa="avx2", lut="on", threads=1, int8=True):
    """The kernel (int8 or float activations) on rows [r0, r1) of p's weight, reading `planes`
    (a layout tensor) or not."""
    return lut_calls.run(MOD, isa, x, p, planes, r0, r1, lut, threads, int8)


def layout(p, int8=True, threads=1, m=1):
    return lut_calls.pack(MOD, "avx2", p, "int8", m, int8, threads)  # (float activations read it too, as slices)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 200), k=st.sampled_from([1, 3, 31, 33, 97, 1025]), m=st.sampled_from([1, 2, 3, 4, 5, 9, 33]),
       seed=st.integers(0, 10_000), rows=st.sampled_from(["all", "from 32", "from 8", "from 5"]),
       threads=st.sampled_from([1, 2]))
def test_int8_planes_give_the_same_bits(n, k, m, seed, rows, threads):
    """n not a multiple of 32 (the last block's rows past n have zero masks), odd k, row ranges
    that start on a 32-row block (read from the layout) or off one (hashed per call), 1 and 2
    threads: bit for bit what the kernel gives hashing and transposing itself, and the reference."""
    p = binary(n, k, seed)
    r0 = min({"all": 0, "from 32": 32, "from 8": 8, "from 5": 5}[rows], n - 1)
    x = 3 * torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    packed = layout(p, threads=threads)
    own = run(x, p, r0=r0, threads=threads)
    assert torch.equal(run(x, p, packed, r0=r0, threads=threads), own)
    want = slt_linear_int8_reference(x, p)[:, r0:]
    torch.testing.assert_close(own, want, rtol=1e-5, atol=1e-5 * max(1.0, float(want.abs().max())))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 200), k=st.sampled_from([1, 3, 31, 33, 97, 1025]), m=st.sampled_from([1, 2, 3, 4, 25]),
       seed=st.integers(0, 10_000), rows=st.sampled_from(["all", "from 32", "from 5"]),
       threads=st.sampled_from([1, 2]))
def test_float_planes_give_the_same_bits(n, k, m, seed, rows, threads):
    """Float activations (int8 slices): the same bits with and without the planes, close to the
    reference."""
    p = binary(n, k, seed)
    r0 = min({"all": 0, "from 32": 32, "from 5": 5}[rows], n - 1)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    packed = layout(p, int8=False, threads=threads, m=m)
    own = run(x, p, r0=r0, threads=threads, int8=False)
    assert torch.equal(run(x, p, packed, r0=r0, threads=threads, int8=False), own)
    want = slt_linear_reference(x, p)[:, r0:]
    torch.testing.assert_close(own, want, rtol=1e-4, atol=1e-4 * max(1.0, float(want.abs().max())))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 150), k=st.sampled_from([1, 5, 31, 64, 97, 200, 1025]), m=st.integers(2, 40),
       seed=st.integers(0, 10_000), planes=st.booleans(), extreme=st.booleans())
def test_each_row_gets_the_bits_it_gets_alone(n, k, m, seed, planes, extreme):
    """The lookup's sums are exact integers whatever rows run together (1-4 rows in locals, more
    in its row groups): every row of an m-row call is the bits of that row run alone, with or
    without the planes, with rows at the int8 extremes (the int16 sums at their largest) too."""
    p = binary(n, k, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = 3 * torch.randn(m, k, generator=g)
    if extreme:  # rows of 127 or of -127
        x = torch.where(torch.arange(m)[:, None] % 2 == 0, 1.0, -1.0).expand(m, k).contiguous()
    layout_ = layout(p) if planes else None
    y = run(x, p, layout_)
    for r in range(m):
        assert torch.equal(y[r:r + 1], run(x[r:r + 1], p, layout_)), r


@pytest.mark.parametrize("int8", [True, False])
def test_the_planes_are_what_is_read(int8):
    """Empty planes (a valid header, zero bodies) give zeros where blocks start on a block
    boundary (read from them) and the real sums where they do not (rows from 5: hashed per call)."""
    p = binary(64, 100)
    x = torch.randn(2, 100)
    empty = layout(p, int8)
    empty[64:] = 0
    assert torch.equal(run(x, p, empty, int8=int8), torch.zeros(2, 64))
    assert torch.equal(run(x, p, empty, r0=5, int8=int8), run(x, p, r0=5, int8=int8))
    assert run(x, p, r0=5, int8=int8).abs().sum() > 0


def test_layout_size_and_where_it_is_read():
    """A 64-byte header, then 2 bits per weight in 32-row blocks (256 bytes per 32-column word);
    asked for only where the table lookup runs: int8 activations up to 512 rows forced, 63
    automatically (then AVX2's panels: test_avx2_panels.py), float ones up to 24 automatically,
    128 forced (4 slices of each within the int8 kernel's 512); automatically only with enough
    weight rows per thread for its tables (512 int8, 128 per float row)."""
    p = binary(70, 100)
    _, w = _ops.weight_args(p)
    desc, _alive = _ext.weight_desc(MOD, w)
    size = 64 + 3 * 4 * 256
    assert MOD.lut_layout(desc, 1, "avx2", "on", True) == ("int8", size)
    assert MOD.lut_layout(desc, 128, "avx2", "on", False) == ("int8", size)
    assert MOD.lut_layout(desc, 129, "avx2", "on", False) == ("", 0)
    assert MOD.lut_layout(desc, 1, "avx2", "off", True) == ("", 0)
    assert MOD.lut_layout(desc, 513, "avx2", "on", True) == ("", 0)
    assert MOD.lut_layout(desc, 1, "avx2", "auto", True, 1) == ("", 0)  # 70 rows: too few for its tables
    assert MOD.lut_layout(desc, 1, "scalar", "on", True) == ("", 0)
    big = _ext.weight_desc(MOD, _ops.weight_args(binary(1024, 100))[1])
    size = 64 + 32 * 4 * 256
    for m, threads, int8, runs in [(1, 1, True, True), (63, 1, True, True), (1, 2, True, True),
                                   (1, 3, True, False), (1, 1, False, True), (8, 1, False, True),
                                   (9, 1, False, False), (4, 2, False, True), (5, 2, False, False),
                                   (25, 1, False, False), (0, 1, False, False)]:
        assert MOD.lut_layout(big[0], m, "avx2", "auto", int8, threads) == (("int8", size) if runs else ("", 0)), \
            (m, threads, int8)
    assert MOD.lut_layout(big[0], 64, "avx2", "auto", True, 1)[0] == "panels"
    tall = _ext.weight_desc(MOD, _ops.weight_args(binary(3200, 32))[1])[0]  # 128 x 25 rows: the row limit
    assert MOD.lut_layout(tall, 24, "avx2", "auto", False, 1)[0] == "int8"  # is the float lookup's own
    assert MOD.lut_layout(tall, 25, "avx2", "auto", False, 1) == ("", 0)
    q = pack_multicoat(torch.randint(0, 3, (70, 100)), 2, seed=0, name="fc", dist="signed_constant")
    desc_q, _alive_q = _ext.weight_desc(MOD, _ops.weight_args(q)[1])
    assert MOD.lut_layout(desc_q, 1, "avx2", "on", True) == ("int8", 64 + 2 * 3 * 4 * 256)  # (a block per coat)


def test_a_wrong_layout_is_refused():
    p = binary(70, 100)
    packed = layout(p)
    x = torch.randn(2, 100)
    with pytest.raises(ValueError, match=r"lut_planes: expected 3136 bytes \(pack_lut_planes of this weight, int8"):
        run(x, p, packed[:-1])
    with pytest.raises(ValueError, match=r"lut_planes: expected a 32-byte aligned buffer"):
        run(x, p, torch.cat([torch.zeros(1, dtype=torch.uint8), packed])[1:])
    with pytest.raises(ValueError, match=r"lut_planes: given, but this call reads no layout"):
        run(x, p, packed, lut="off")
    other_shape = layout(binary(96, 100))  # 96 rows: as many 32-row blocks as 70
    with pytest.raises(ValueError, match=r"another weight or kernel \(header: int8 layout, shape \(96, 100\)"):
        run(x, p, other_shape)
    with pytest.raises(ValueError, match=r"built for another weight or kernel .*keys"):
        run(x, p, layout(binary(70, 100, seed=1)))  # another seed: other signs
    bad = packed.clone()
    bad[:8] = 0
    with pytest.raises(ValueError, match=r"not a planes layout \(bad header\)"):
        run(x, p, bad)
    _, w = _ops.weight_args(p)
    desc, _alive = _ext.weight_desc(MOD, w)
    with pytest.raises(ValueError, match=r"dst: expected 3136 bytes, got 3135"):
        MOD.pack_lut_planes(desc, "int8", packed.data_ptr(), 3135, 1)
    with pytest.raises(ValueError, match=r"kind: expected 'int8', 'codes' or 'panels' \(lut_layout's\), got 'float'"):
        MOD.pack_lut_planes(desc, "float", packed.data_ptr(), 3136, 1)
    q = pack_multicoat(torch.randint(0, 3, (70, 100)), 2, seed=0, name="fc", dist="signed_constant")
    desc_q, _alive_q = _ext.weight_desc(MOD, _ops.weight_args(q)[1])
    with pytest.raises(ValueError, match=r"dst: expected 6208 bytes, got 3136"):  # (two coats: two blocks' planes)
        MOD.pack_lut_planes(desc_q, "int8", packed.data_ptr(), 3136, 1)
    with pytest.raises(ValueError, match=r"binary format \(or multicoat, for the int8 and panels layouts\)"):
        MOD.pack_lut_planes(desc_q, "codes", packed.data_ptr(), 3136, 1)
    with pytest.raises(ValueError, match=r"dst: expected 5184 bytes, got 3136"):  # (two coats' panel masks)
        MOD.pack_lut_planes(desc_q, "panels", packed.data_ptr(), 3136, 1)


ACTIVATIONS = {  # what float activations look like, tame to outlier-heavy
    "gaussian": lambda g, m, k: torch.randn(m, k, generator=g),
    "uniform": lambda g, m, k: torch.rand(m, k, generator=g),
    "relu": lambda g, m, k: torch.relu(torch.randn(m, k, generator=g)),
    "sparse": lambda g, m, k: torch.randn(m, k, generator=g) * (torch.rand(m, k, generator=g) < 0.05),
    "log-normal": lambda g, m, k: torch.randn(m, k, generator=g) * torch.exp(2 * torch.randn(m, k, generator=g)),
    "outlier channels": lambda g, m, k: torch.randn(m, k, generator=g) * torch.where(torch.arange(k) % 97 == 0,
                                                                                     100.0, 1.0),
}


def slice_args(x):
    return x.data_ptr(), x.shape[0], x.shape[1], x.stride(0)


@pytest.mark.parametrize("kind", list(ACTIVATIONS))
@pytest.mark.parametrize("k", [1, 64, 1000, 4096])
def test_slices_are_exact_digits(kind, k):
    """slice_int8: digits in [-127, 127], most significant first, whose base-255 value times the
    row's scale (max|x| / ((255^D - 1) / 2), rounded to keep max|x| / s within that) is within
    half a scale step of x."""
    x = ACTIVATIONS[kind](torch.Generator().manual_seed(k), 3, k)
    x[2] = 0.0  # a zero row: scale 1, digits 0
    for d in (3, 4):
        q, s = torch.empty(3 * d, k, dtype=torch.int8), torch.empty(3)
        MOD.slice_int8(*slice_args(x), d, q.data_ptr(), s.data_ptr())
        assert int(q.abs().max()) <= 127
        v = sum(q[i::d].long() * 255 ** (d - 1 - i) for i in range(d))  # exact in int64
        assert int(v.abs().max()) <= (255 ** d - 1) // 2
        err = (v.double() * s.double()[:, None] - x.double()).abs()
        assert bool((err <= s.double()[:, None] / 2 * (1 + 1e-6)).all())
        assert float(s[2]) == 1.0 and not q[2 * d:].any()
        amax, half = x[:2].abs().amax(1).double(), (255 ** d - 1) // 2
        assert bool((amax / s[:2].double() <= half).all())
        torch.testing.assert_close(s[:2].double(), torch.where(amax > 0, amax / half, 1.0), rtol=2.5e-7, atol=0)


def test_slice_count():
    """3 slices for tame rows, 4 for outlier-heavy ones (max|x| / rms(x) past sqrt(K) / 8, at
    most sqrt(K)), none for a NaN or an infinity."""
    k = 4096
    x = torch.randn(2, k, generator=torch.Generator().manual_seed(0))
    assert MOD.slice_count(*slice_args(x)) == 3
    x[1, 7] = 20 * float(x.norm() / k ** 0.5)  # max / rms about 20 > sqrt(4096) / 8 = 8
    assert MOD.slice_count(*slice_args(x)) == 4
    x[1, 7] = 1e30  # max / rms = sqrt(K)
    assert MOD.slice_count(*slice_args(x)) == 4
    for bad in (float("nan"), float("inf")):
        x[1, 7] = bad
        assert MOD.slice_count(*slice_args(x)) == 0
    with pytest.raises(ValueError, match="D: expected 3 or 4 slices, got 5"):
        MOD.slice_int8(*slice_args(x), 5, 0, 0)


@pytest.mark.parametrize("kind", list(ACTIVATIONS))
@pytest.mark.parametrize("n, k", [(256, 64), (256, 1000), (128, 4096)])
def test_sliced_sums_as_accurate_as_the_float_kernels(kind, n, k):
    """Against the float64 product, the RMS error of the sliced lookup stays within 1.5x the float
    register kernels' (measured: 0.07-1.16x over these activations and 11008 columns too)."""
    p = binary(n, k, k)
    g = torch.Generator().manual_seed(n + k)
    _, w = _ops.weight_args(p)
    exact_w = cpu.materialize(*w, 0, n).double()
    for m in (1, 4):
        x = ACTIVATIONS[kind](g, m, k)
        exact = x.double() @ exact_w.T
        sliced = (run(x, p, lut="on", int8=False).double() - exact).pow(2).mean().sqrt()
        floats = (run(x, p, lut="off", int8=False).double() - exact).pow(2).mean().sqrt()
        assert sliced <= 1.5 * floats + 1e-30, (m, float(sliced), float(floats))


def test_non_finite_and_wide_rows_run_the_float_kernels():
    """A NaN or an infinity: the float kernels' result, bit for bit (NaN and infinity propagate
    as in F.linear); a huge value is sliced (4 slices); bf16 activations are sliced too."""
    p = binary(70, 100)
    x = torch.randn(2, 100, generator=torch.Generator().manual_seed(3))
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[1, 3] = bad
        torch.testing.assert_close(run(y, p, lut="on", int8=False), run(y, p, lut="off", int8=False), rtol=0,
                                   atol=0, equal_nan=True)
    y = x.clone()
    y[1, 3] = 1e12
    torch.testing.assert_close(run(y, p, lut="on", int8=False), run(y, p, lut="off", int8=False), rtol=1e-5,
                               atol=1e-5 * 1e12)
    xb = x.to(torch.bfloat16)
    torch.testing.assert_close(slt_linear(xb, p, backend="cpp"), slt_linear_reference(xb.float(), p).to(torch.bfloat16))


def test_public_ops_build_the_planes_on_second_use(fresh_cache, monkeypatch):
    """slt_linear_int8 then slt_linear on one PackedWeight: the first call hashes, the second
    builds and reads the planes, later ones (float activations too) read them; the same bits
    each time. Cache off: never built. (The lookup forced: 100 weight rows are too few for it
    to be chosen.)"""
    monkeypatch.setenv(cpu.ISA_ENV, "avx2")
    monkeypatch.setenv(cpu.LUT_ENV, "on")
    p = binary(100, 300, 3)
    x = torch.randn(3, 300)
    size = 64 + 4 * 10 * 256
    lut_calls.built_on_second_use(fresh_cache, lambda: slt_linear_int8(x, p, backend="cpp"), size)
    zs = [slt_linear(x, p, backend="cpp") for _ in range(2)]
    assert len(fresh_cache) == 1 and fresh_cache.nbytes() == size and torch.equal(zs[0], zs[1])
    monkeypatch.setenv(layout_cache.ENV, "off")
    fresh_cache.clear()
    for _ in range(3):
        assert torch.equal(slt_linear(x, p, backend="cpp"), zs[0])
    assert len(fresh_cache) == 0


@pytest.mark.parametrize("int8", [True, False])
def test_module_keeps_its_planes(fresh_cache, monkeypatch, int8):
    """SLTPackedLinear (float, or int8=True): its planes buffer is the same tensor every call,
    so the layout is built once and read from then on; the same bits throughout (forced)."""
    from slt_hw.nn import SLTPackedLinear

    monkeypatch.setenv(cpu.ISA_ENV, "avx2")
    monkeypatch.setenv(cpu.LUT_ENV, "on")
    layer = SLTPackedLinear(binary(96, 200, 4), int8=int8)
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


def test_cache_keeps_a_layout_per_key(fresh_cache):
    """Two kernels reading one tensor in turn (two keys) each get theirs on its second use, and
    keep it: one slot per tensor had each key evict the other, so that neither was ever built.
    Past per_tensor layouts the least recently used goes."""
    built = []

    def build(tag):
        return lambda: built.append(tag) or torch.full((4,), len(built), dtype=torch.uint8)

    t = torch.zeros(4, dtype=torch.int32)
    for _ in range(3):
        a, b = fresh_cache.get(t, "a", build("a")), fresh_cache.get(t, "b", build("b"))
    assert built == ["a", "b"] and a is not None and b is not None
    assert len(fresh_cache) == 2 and fresh_cache.nbytes() == fresh_cache.held(t) == 8
    assert fresh_cache.peek(t, "a") is a and fresh_cache.peek(t, "c") is None
    small = layout_cache.LayoutCache(per_tensor=2)
    for key in ("a", "b", "a", "b", "a", "c", "c"):  # c drops b, the least recently used
        small.get(t, key, build(key))
    assert small.peek(t, "a") is not None and small.peek(t, "c") is not None and small.peek(t, "b") is None
    t.add_(1)  # in place: every layout of it is stale
    assert small.peek(t, "a") is None and small.get(t, "a", build("a")) is None and len(small) == 0


@pytest.mark.skipif(not {"avx512vnni", "avx512"} & set(cpu.cpu_isas()), reason="needs a native AVX-512 CPU")
def test_one_mask_keeps_both_kernels_layouts(fresh_cache, monkeypatch):
    """On an AVX-512 CPU int8 activations at 16 rows read AVX-512's codes and at 20 another
    layout (VNNI's panels; without VNNI none) (chosen automatically, one thread, 1024 weight
    rows): called in turn, each gets its own."""
    monkeypatch.delenv(cpu.ISA_ENV, raising=False)
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    p = binary(1024, 256, 8)
    mod = _ext.native()
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
    kinds = [mod.lut_layout(desc, m, cpu._isa(None), "auto", True, 1, False)[0] for m in (16, 20)]
    if kinds[0] != "codes" or kinds[1] in ("", "codes"):
        pytest.skip(f"the automatic choice here reads {kinds} at 16 and 20 rows")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    xs = [torch.randn(m, 256, generator=torch.Generator().manual_seed(m)) for m in (16, 20)]
    try:
        ys = [[slt_linear_int8(x, p, backend="cpp") for x in xs] for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert len(fresh_cache) == 2
    assert all(torch.equal(y[i], ys[0][i]) for y in ys for i in range(2))


def test_inference_tensors_are_not_cached(fresh_cache, monkeypatch):
    """A mask made under torch.inference_mode has no version counter: run uncached, same bits."""
    monkeypatch.setenv(cpu.ISA_ENV, "avx2")
    monkeypatch.setenv(cpu.LUT_ENV, "on")
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
    with pytest.raises(ValueError, match="per_tensor: expected an int >= 1, got 0"):
        layout_cache.LayoutCache(per_tensor=0)
    monkeypatch.setenv(layout_cache.ENV, "sometimes")
    with pytest.raises(ValueError, match=r"SLT_HW_CPU_LAYOUT_CACHE: expected one of \['on', 'off'\]"):
        layout_cache.LayoutCache().get(torch.zeros(1), "k", lambda: torch.zeros(1))


def test_cache_shows_in_the_backend_description(monkeypatch):
    from slt_hw import dispatch

    monkeypatch.setenv(cpu.ISA_ENV, "avx2")
    monkeypatch.delenv(cpu.LUT_ENV, raising=False)
    for mode in ("on", "off"):
        monkeypatch.setenv(layout_cache.ENV, mode)
        assert f"masks used twice kept as hashed P/N planes, 2 bits/weight (SLT_HW_CPU_LAYOUT_CACHE={mode})" \
            in dispatch.get("cpp").describe()
    monkeypatch.setenv(layout_cache.ENV, "sometimes")
    assert "SLT_HW_CPU_LAYOUT_CACHE: expected one of" in dispatch.get("cpp").describe()
