"""slt_conv2d_int8: each output pixel's patch quantized as one int8 row (slt_linear_int8 over
F.unfold's rows), or x quantized per image first (act_scale "image"), on every CPU backend that
has it, against slt_conv2d_int8_reference; the C++ patch quantizer against F.unfold +
quantize_activations, and its gather of per-image bytes against F.unfold + quantize_images, bit
for bit."""

import dataclasses

import avx512_emulation
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packing import random_conv_packed

from slt_hw import _ext, _ops, dispatch, pack_binary
from slt_hw.ops import (
    quantize_activations,
    quantize_images,
    slt_conv2d_int8,
    slt_conv2d_int8_reference,
    slt_conv2d_reference,
)

BACKENDS = [n for n, why in dispatch.reasons("cpu", "conv2d_int8_planes").items() if not why]
CPP = pytest.mark.skipif("cpp" not in BACKENDS, reason="slt_hw._C not built")


def packed(fmt, shape, seed, dist="signed_constant"):
    return random_conv_packed(fmt, dist, shape, seed=seed)


def layout(x, name):
    if name == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if name == "sliced":  # every other channel: strides, no copy
        return torch.cat([x, x], 1)[:, ::2]
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["binary", "multicoat", "frozen"]), groups=st.sampled_from([1, 2, 3]),
       cin_g=st.sampled_from([1, 3, 8, 13]), og=st.integers(1, 5), k=st.sampled_from([(1, 1), (3, 3), (2, 3)]),
       stride=st.sampled_from([1, 2, (2, 1)]), padding=st.sampled_from([0, 1, (2, 0)]),
       dilation=st.sampled_from([1, 2]), batch=st.sampled_from([0, 1, 3]), seed=st.integers(0, 1000),
       with_bias=st.booleans(), lay=st.sampled_from(["contiguous", "channels_last", "sliced"]),
       act_scale=st.sampled_from(["patch", "image"]))
def test_matches_int8_reference(backend, fmt, groups, cin_g, og, k, stride, padding, dilation, batch, seed,
                                with_bias, lay, act_scale):
    """Exact integer sums: equal to the reference (quantize, then a float32 linear) up to the
    rounding of the scale-back, with either activation scale; F.conv2d's output layout; channel
    counts around the 8-wide transposes; empty batch, strided input."""
    p = packed(fmt, (og * groups, cin_g, *k), seed)
    x = layout(4 * torch.randn(batch, cin_g * groups, 9, 8, generator=torch.Generator().manual_seed(seed)), lay)
    bias = torch.randn(og * groups) if with_bias else None
    want = slt_conv2d_int8_reference(x, p, bias, stride, padding, dilation, groups, act_scale=act_scale)
    got = slt_conv2d_int8(x, p, bias, stride, padding, dilation, groups, act_scale=act_scale, backend=backend)
    assert got.shape == want.shape and got.dtype == x.dtype
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(want.abs().max()) if want.numel()
                                                                      else 1.0))
    if batch:  # (a channels-last x with one channel is plain contiguous too: F.conv2d's output then is)
        assert got.is_contiguous(memory_format=_ops.conv2d_output_format(x))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act_scale", ["patch", "image"])
@pytest.mark.parametrize("channels", [1, 8])
def test_an_empty_batch(backend, act_scale, channels):
    """Batch 0, NCHW and channels-last (with one channel both at once): an empty output of the
    float convolution's shape; the implicit GEMM's plan had refused the NCHW strides (found by
    test_matches_int8_reference)."""
    p = random_conv_packed("binary", "signed_constant", (4, channels, 3, 3), seed=1)
    for x in (torch.randn(0, channels, 6, 6), torch.randn(0, channels, 6, 6).contiguous(
            memory_format=torch.channels_last)):
        y = slt_conv2d_int8(x, p, padding=1, act_scale=act_scale, backend=backend)
        assert y.shape == (0, 4, 6, 6) and y.dtype == x.dtype


def test_close_to_the_float_convolution_and_bf16():
    """Per-patch quantization: within a percent of the float convolution on Gaussian inputs
    (torch's per-tensor dynamic int8 convolution: ~4 %); bf16 in, bf16 out."""
    p = packed("binary", (16, 32, 3, 3), 1)
    x = torch.randn(2, 32, 12, 12, generator=torch.Generator().manual_seed(2))
    want = slt_conv2d_reference(x, p, padding=1)
    got = slt_conv2d_int8(x, p, padding=1)
    assert float((got - want).norm() / want.norm()) < 0.01
    xb = x.to(torch.bfloat16)
    torch.testing.assert_close(slt_conv2d_int8(xb, p, padding=1), slt_conv2d_int8_reference(xb, p, padding=1),
                               rtol=1.6e-2, atol=1.6e-2)


def test_image_scales_close_to_the_float_convolution():
    """act_scale "image": one scale per image (whatever the rest of the batch holds), within 1.5 %
    of the float convolution on Gaussian inputs; an image scaled by 1000 leaves the others'
    outputs bit for bit as they were."""
    p = packed("binary", (16, 32, 3, 3), 1)
    x = torch.randn(3, 32, 12, 12, generator=torch.Generator().manual_seed(2))
    want = slt_conv2d_reference(x, p, padding=1)
    got = slt_conv2d_int8(x, p, padding=1, act_scale="image")
    assert float((got - want).norm() / want.norm()) < 0.015
    x2 = x.clone()
    x2[1] *= 1000
    got2 = slt_conv2d_int8(x2, p, padding=1, act_scale="image")
    assert torch.equal(got2[0], got[0]) and torch.equal(got2[2], got[2])


@pytest.mark.parametrize("shape", [(4, 64, 1, 1), (1, 8, 1, 1), (3, 16, 1, 2), (3, 16, 2, 1)])
def test_image_scales_on_a_single_pixel_row_or_column(shape):
    """act_scale "image" on a channels-last x with sides of 1 (a pooled feature map's 1 x 1
    convolution), whose strides torch gives as (C, 1, 1, 1): not refused as non-contiguous (it
    had been), the reference's values, the same bits on a mask's first, second and third use
    (the patches, then the implicit GEMM where the CPU runs it)."""
    p = packed("binary", (12, shape[1], 1, 1), 3)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(5)).contiguous(memory_format=torch.channels_last)
    ys = [slt_conv2d_int8(x, p, act_scale="image", backend="cpp") for _ in range(3)]
    assert all(torch.equal(y, ys[0]) for y in ys)
    torch.testing.assert_close(ys[0], slt_conv2d_int8_reference(x, p, act_scale="image"), rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"act_scale: expected one of 'patch', 'image', got 'tensor'"):
        slt_conv2d_int8(x, packed("binary", (6, 4, 3, 3), 0), act_scale="tensor")
    with pytest.raises(ValueError, match=r"act_scale: expected one of 'patch', 'image', got 'pixel'"):
        slt_conv2d_int8_reference(x, packed("binary", (6, 4, 3, 3), 0), act_scale="pixel")
    with pytest.raises(ValueError, match=r"dist: int8 activations need the signed_constant distribution, got normal"):
        slt_conv2d_int8(x, packed("binary", (6, 4, 3, 3), 0, dist="normal"))
    with pytest.raises(ValueError, match=r"x: expected \(batch, 4, H, W\)"):
        slt_conv2d_int8(torch.randn(1, 5, 8, 8), packed("binary", (6, 4, 3, 3), 0))
    with pytest.raises(ValueError, match=r"packed: expected a conv weight"):
        slt_conv2d_int8(x, pack_binary(torch.ones(6, 36, dtype=torch.bool), seed=0, name="w"))
    with pytest.raises(ValueError, match=r"x: spatial size"):
        slt_conv2d_int8(torch.randn(1, 4, 2, 2), packed("binary", (6, 4, 3, 3), 0))


@pytest.mark.parametrize("fmt", ["binary", "frozen"])
def test_opcheck(fmt):
    p = packed(fmt, (4, 2, 3, 2), 5)
    fmt_name, w = _ops.weight_args(p)
    for x in (torch.randn(2, 4, 6, 5), torch.randn(2, 4, 6, 5).contiguous(memory_format=torch.channels_last)):
        for act_scale in ("patch", "image"):
            torch.library.opcheck(getattr(_ops, f"conv2d_int8_{fmt_name}"),
                                  (x, torch.randn(4), *w, [3, 2], [1, 2], [1, 0], [1, 1], 2, "auto", act_scale))


# the patch gathers' ISAs: this build's, and the emulated build's AVX-512 (its byte permutes
# under SIMDe, whatever this CPU has)
GATHER_ISAS = [*(_ext.require().cpu_isas() if "cpp" in BACKENDS else []), "avx512-emulated"]


def im2col_cpp(x, kernel, stride, padding, dilation, m0=0, m1=None, isa="auto", mod=None):
    if m1 is None:
        oh, ow = _ops.conv2d_output_size(x.shape[2], x.shape[3], kernel, stride, padding, dilation)
        m1 = x.shape[0] * oh * ow
    k = x.shape[1] * kernel[0] * kernel[1]
    q, s = torch.full((m1 - m0, k), 99, dtype=torch.int8), torch.empty(m1 - m0)
    (mod or _ext.require()).im2col_quantize_int8(x.data_ptr(), list(x.shape), list(x.stride()), list(kernel),
                                                 list(stride), list(padding), list(dilation), m0, m1, q.data_ptr(),
                                                 s.data_ptr(), 2, isa)
    return q, s


@CPP
@pytest.mark.parametrize("isa", GATHER_ISAS)
@settings(max_examples=40, deadline=None)
@given(c=st.sampled_from([1, 5, 8, 16, 19, 32]), k=st.sampled_from([(1, 1), (3, 3), (2, 5), (3, 1), (4, 4)]),
       stride=st.sampled_from([(1, 1), (2, 1)]), padding=st.sampled_from([(0, 0), (1, 1), (2, 0)]),
       dilation=st.sampled_from([(1, 1), (2, 1)]), lay=st.sampled_from(["contiguous", "channels_last", "sliced"]),
       seed=st.integers(0, 10_000), scale_exp=st.integers(-30, 30))
def test_patch_quantizer_has_the_reference_bits(isa, c, k, stride, padding, dilation, lay, seed, scale_exp):
    """q and s of every patch row equal quantize_activations on F.unfold's rows, bit for bit,
    from any layout and with every gather (AVX-512's byte permutes where channels are contiguous
    and a multiple of 16, AVX2's transposes where they are contiguous, the strided loop where
    not); a row range is the same rows."""
    x = layout(torch.randn(2, c, 7, 6, generator=torch.Generator().manual_seed(seed)) * 2.0 ** scale_exp, lay)
    if min(_ops.conv2d_output_size(7, 6, k, stride, padding, dilation)) < 1:
        return
    cols = F.unfold(x, k, dilation, padding, stride).transpose(1, 2).reshape(-1, c * k[0] * k[1])
    want_q, want_s = quantize_activations(cols)
    mod = avx512_emulation.module_for(isa)
    q, s = im2col_cpp(x, k, stride, padding, dilation, isa=isa, mod=mod)
    assert torch.equal(q, want_q) and torch.equal(s, want_s)
    m = q.shape[0]
    q2, s2 = im2col_cpp(x, k, stride, padding, dilation, m // 3, m - 1, isa=isa, mod=mod)
    assert torch.equal(q2, want_q[m // 3:m - 1]) and torch.equal(s2, want_s[m // 3:m - 1])


def im2col_int8_cpp(x, kernel, stride, padding, dilation, m0=0, m1=None, isa="auto", mod=None):
    """im2col_int8 of x quantized per image (quantize_int8_isa, an image a row; in x's layout)."""
    mod = mod or _ext.require()
    if m1 is None:
        oh, ow = _ops.conv2d_output_size(x.shape[2], x.shape[3], kernel, stride, padding, dilation)
        m1 = x.shape[0] * oh * ow
    xc = x.contiguous(memory_format=torch.channels_last)
    images, scales = torch.empty_like(xc, dtype=torch.int8), torch.empty(x.shape[0])
    n = xc[0].numel()
    mod.quantize_int8_isa(xc.data_ptr(), x.shape[0], n, n, images.data_ptr(), scales.data_ptr(), 2, isa)
    if x.stride(1) != 1:  # (the strided gather: the bytes in x's layout)
        images = images.contiguous()
    k = x.shape[1] * kernel[0] * kernel[1]
    q, s = torch.full((m1 - m0 + 1, k), 99, dtype=torch.int8), torch.empty(m1 - m0)  # (a row past the end)
    mod.im2col_int8(images.data_ptr(), list(x.shape), list(images.stride()), list(kernel), list(stride), list(padding),
                    list(dilation), m0, m1, q.data_ptr(), s.data_ptr(), scales.data_ptr(), 2, isa)
    assert bool((q[-1] == 99).all()), "a byte written past the last row"  # (another thread's row)
    return q[:-1], s, scales


@CPP
@pytest.mark.parametrize("isa", GATHER_ISAS)
@settings(max_examples=40, deadline=None)
@given(c=st.sampled_from([1, 5, 16, 19, 32, 48]),
       k=st.sampled_from([(1, 1), (1, 2), (2, 3), (3, 3), (2, 5), (4, 4), (5, 5)]),
       stride=st.sampled_from([(1, 1), (2, 1)]), padding=st.sampled_from([(0, 0), (1, 1), (2, 0)]),
       dilation=st.sampled_from([(1, 1), (2, 1)]), lay=st.sampled_from(["contiguous", "channels_last"]),
       seed=st.integers(0, 10_000), scale_exp=st.integers(-30, 30))
def test_image_gather_has_the_reference_bytes(isa, c, k, stride, padding, dilation, lay, seed, scale_exp):
    """act_scale "image": each image quantized in C++ has quantize_images' bits, and every patch
    row (every byte written: q starts as 99s) is F.unfold's row of those bytes with its image's
    scale, from any gather (AVX-512's byte permutes, AVX2's 16 x 16 byte transposes: channels a
    multiple of 16 and at most 16 taps; the loop: 25 taps, odd channels, an NCHW input); a row
    range is the same rows, and nothing is written past the last (2 or 6 taps: AVX2's 16-byte
    channel stores had reached into the next row, another thread's)."""
    x = torch.randn(3, c, 7, 6, generator=torch.Generator().manual_seed(seed)) * 2.0 ** scale_exp
    x[1] *= 64.0  # (images of different scales)
    x = layout(x, lay)
    if min(_ops.conv2d_output_size(7, 6, k, stride, padding, dilation)) < 1:
        return
    want_images, want_scales = quantize_images(x)
    cols = F.unfold(want_images.float(), k, dilation, padding, stride)  # (exact: small integers)
    want_q = cols.transpose(1, 2).reshape(-1, c * k[0] * k[1]).to(torch.int8)
    want_s = want_scales.repeat_interleave(want_q.shape[0] // 3)
    mod = avx512_emulation.module_for(isa)
    q, s, scales = im2col_int8_cpp(x, k, stride, padding, dilation, isa=isa, mod=mod)
    assert torch.equal(scales, want_scales)
    assert torch.equal(q, want_q) and torch.equal(s, want_s)
    m = q.shape[0]
    q2, s2, _ = im2col_int8_cpp(x, k, stride, padding, dilation, m // 3 + 1, m - 1, isa=isa, mod=mod)
    assert torch.equal(q2, want_q[m // 3 + 1:m - 1]) and torch.equal(s2, want_s[m // 3 + 1:m - 1])


@CPP
@pytest.mark.parametrize("isa", GATHER_ISAS)
@pytest.mark.parametrize("batch, threads", [(1, 2), (1, 3), (2, 3), (3, 2)])
def test_images_quantized_in_slices_have_the_reference_bits(isa, batch, threads):
    """Fewer large rows (images) than threads: each is split into slices whose maxima make its
    scale; quantize_activations' bits, the largest value in any slice (here the last, past the
    64-value vectors), every byte written; rows further apart than their length (ldx)."""
    mod = avx512_emulation.module_for(isa)
    n = 3 * 65536 + 37
    wide = torch.randn(batch, n + 7, generator=torch.Generator().manual_seed(batch + threads)) * 3.0
    wide[0, n - 5] = 1e3
    for x in (wide[:, :n].contiguous(), wide[:, :n]):
        q, s = torch.full((batch, n), 99, dtype=torch.int8), torch.empty(batch)
        mod.quantize_int8_isa(x.data_ptr(), batch, n, x.stride(0), q.data_ptr(), s.data_ptr(), threads, isa)
        want_q, want_s = quantize_activations(x)
        assert torch.equal(s, want_s) and torch.equal(q, want_q)


@CPP
@pytest.mark.parametrize("isa", [isa for isa in GATHER_ISAS if isa.startswith(("avx512", "amx"))])
@pytest.mark.parametrize("c, k, padding", [(16, (3, 3), (1, 1)), (64, (3, 3), (1, 1)), (32, (1, 1), (0, 0)),
                                           (16, (4, 4), (2, 1)), (48, (2, 5), (1, 2)), (16, (1, 7), (0, 3)),
                                           (32, (2, 3), (1, 1))])
def test_avx512_patch_permutes_have_the_reference_bits(isa, c, k, padding):
    """Channels-last x, channels a multiple of 16, 1-16 taps: AVX-512 quantizes each tap's 16
    channels and reorders the bytes with vpermi2b (one, two or three output vectors a group of
    channels, the last one partial); every byte is written (q starts as 99s) and equals
    quantize_activations' on F.unfold's rows, padding taps included, with one huge value (the
    row scale's channel anywhere) and one subnormal-scaled sample (clamped quotients); also for
    rows that start inside the second image (the per-pixel maxima are the call's images')."""
    g = torch.Generator().manual_seed(c + 7 * k[1])
    x = torch.randn(3, c, 6, 7, generator=g) * 3.0
    x[0, c // 2, 2, 3] = 1e4
    x[2] = torch.randint(-190, 191, (c, 6, 7), generator=g).float() * 2.0 ** -149  # subnormal: amax / 127 inexact
    x = layout(x, "channels_last")
    cols = F.unfold(x, k, (1, 1), padding, (1, 1)).transpose(1, 2).reshape(-1, c * k[0] * k[1])
    want_q, want_s = quantize_activations(cols)
    mod = avx512_emulation.module_for(isa)
    if mod.patch_gather(c, True, list(k), isa) != "avx512-vbmi":
        pytest.skip(f"{isa}: this CPU has no AVX512-VBMI")
    q, s = im2col_cpp(x, k, (1, 1), padding, (1, 1), isa=isa, mod=mod)
    assert torch.equal(q, want_q) and torch.equal(s, want_s)
    per_image = q.shape[0] // 3  # rows from inside the second image on: its pixels' maxima, not the first's
    q2, s2 = im2col_cpp(x, k, (1, 1), padding, (1, 1), per_image + 3, 3 * per_image, isa=isa, mod=mod)
    assert torch.equal(q2, want_q[per_image + 3:]) and torch.equal(s2, want_s[per_image + 3:])


@CPP
def test_patch_gather_names_the_one_that_runs():
    mod = _ext.require()
    isas = mod.cpu_isas()
    assert mod.patch_gather(64, False, [3, 3], "auto") == "scalar"  # (strided channels)
    assert mod.patch_gather(64, True, [3, 3], "scalar") == "scalar"
    if "avx2" in isas:
        assert mod.patch_gather(64, True, [3, 3], "avx2") == "avx2"
    for isa in ("avx512", "avx512vnni"):
        if isa in isas:
            vbmi = mod.patch_gather(64, True, [3, 3], isa) == "avx512-vbmi"
            assert vbmi == ("avx512vbmi" in _cpu_flags())
            assert mod.patch_gather(24, True, [3, 3], isa) == "avx2"  # (not a multiple of 16)
            assert mod.patch_gather(16, True, [5, 5], isa) == "avx2"  # (25 taps)
            assert mod.patch_gather(24, True, [3, 3], isa, True) == "scalar"  # (int8 bytes: 16 at a time)
    if "avx2" in isas:
        assert mod.patch_gather(64, True, [3, 3], "avx2", True) == "avx2"
        assert mod.patch_gather(32, True, [4, 4], "avx2", True) == "avx2"
        assert mod.patch_gather(32, True, [5, 5], "avx2", True) == "scalar"  # (25 taps)
        assert mod.patch_gather(24, True, [3, 3], "avx2", True) == "scalar"
    with pytest.raises(ValueError, match="isa: expected one of"):
        mod.patch_gather(64, True, [3, 3], "sse9")
    emulated = avx512_emulation.module_for("avx512-emulated")
    assert emulated.patch_gather(16, True, [4, 4], "avx512-emulated") == "avx512-vbmi"


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


@CPP
@pytest.mark.parametrize("c, k, padding", [(8, (3, 3), (1, 1)), (16, (3, 3), (0, 0)), (24, (2, 5), (2, 1)),
                                           (64, (3, 3), (1, 1))])
def test_patch_gathered_and_quantized_in_registers_has_the_reference_bits(c, k, padding):
    """Channels-last x, channels a multiple of 8, at least 8 taps, AVX2: the patch is quantized as
    it is transposed, never stored as floats (every byte written: q starts as 99s); its bits are
    still quantize_activations' on F.unfold's rows, padding taps and the taps past the last 8
    included, with one huge value per row (the scale's channel anywhere in the patch)."""
    if "avx2" not in GATHER_ISAS:
        pytest.skip("no AVX2 here")
    x = torch.randn(2, c, 6, 7, generator=torch.Generator().manual_seed(c)) * 3.0
    x[0, c // 2, 2, 3] = 1e4
    x = layout(x, "channels_last")
    cols = F.unfold(x, k, (1, 1), padding, (1, 1)).transpose(1, 2).reshape(-1, c * k[0] * k[1])
    want_q, want_s = quantize_activations(cols)
    q, s = im2col_cpp(x, k, (1, 1), padding, (1, 1), isa="avx2")
    assert torch.equal(q, want_q) and torch.equal(s, want_s)


@CPP
def test_patch_quantizer_refuses_bad_geometry():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"rows: expected 0 <= m0 <= m1 <= batch \* OH \* OW = 16"):
        im2col_cpp(x, (3, 3), (1, 1), (1, 1), (1, 1), 0, 17)
    with pytest.raises(ValueError, match=r"x: smaller than the dilated kernel"):
        im2col_cpp(x, (5, 5), (1, 1), (0, 0), (1, 1), 0, 0)
    with pytest.raises(ValueError, match=r"kernel_size/stride/dilation: expected >= 1"):
        im2col_cpp(x, (3, 3), (0, 1), (1, 1), (1, 1), 0, 0)


@CPP
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("act_scale", ["patch", "image"])
def test_cpp_chunks_of_rows(monkeypatch, groups, act_scale):
    """The patch matrix in chunks of rows (a large batch's stays in cache): several chunks and a
    short last one, per group, give the one-chunk result."""
    from slt_hw.backends import cpu

    p = packed("binary", (6, 32 // groups, 3, 3), 4)
    x = torch.randn(3, 32, 7, 5, generator=torch.Generator().manual_seed(5))
    bias = torch.randn(6)
    whole = slt_conv2d_int8(x, p, bias, padding=1, groups=groups, act_scale=act_scale, backend="cpp")
    monkeypatch.setattr(cpu, "CONV_INT8_CHUNK_BYTES", 32 * 9 // groups * 8)  # 8 rows a chunk: 105 = 13 x 8 + 1
    assert torch.equal(slt_conv2d_int8(x, p, bias, padding=1, groups=groups, act_scale=act_scale, backend="cpp"),
                       whole)


@CPP
def test_cpp_threads_split_output_pixels(monkeypatch):
    """Few output channels, two threads: the kernel splits the pixel rows as well as the weight
    rows; the result is the one-thread result, bit for bit."""
    p = packed("binary", (6, 8, 3, 3), 4)
    x = torch.randn(3, 8, 17, 15, generator=torch.Generator().manual_seed(6))
    bias = torch.randn(6)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = slt_conv2d_int8(x, p, bias, padding=1, backend="cpp")
        torch.set_num_threads(2)
        got = slt_conv2d_int8(x, p, bias, padding=1, backend="cpp")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got, want)


def test_packed_int8_convolutions_under_torch_compile():
    """A packed CNN switched to int8 activations compiles whole (fullgraph) and gives the eager
    bits, NCHW and channels-last."""
    import slt_hw
    from slt_hw.nn import set_int8_activations

    torch.manual_seed(0)
    torch._dynamo.reset()
    dense = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    model = slt_hw.pack(slt_hw.convert(dense, seed=1, sparsity=0.5)).eval()
    x = torch.randn(2, 3, 9, 9)
    for act_scale in ("patch", "image"):
        assert set_int8_activations(model, act_scale=act_scale) == 2
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        with torch.no_grad():
            for xi in (x, x.contiguous(memory_format=torch.channels_last)):
                assert torch.equal(compiled(xi), model(xi))


def test_set_int8_activations_picks_the_convolutions_scales():
    """set_int8_activations(act_scale="image") runs each packed convolution as slt_conv2d_int8 with
    one scale per image (the functional op's bits), and refuses an unknown granularity by name."""
    import slt_hw
    from slt_hw.nn import set_int8_activations
    from slt_hw.nn.packed_layers import SLTPackedLayer

    torch.manual_seed(0)
    model = slt_hw.pack(slt_hw.convert(torch.nn.Sequential(torch.nn.Conv2d(16, 8, 3, padding=1)), seed=1,
                                       sparsity=0.5)).eval()
    layer = next(m for m in model.modules() if isinstance(m, SLTPackedLayer))
    set_int8_activations(model, act_scale="image")
    assert layer.act_scale == "image" and "act_scale='image'" in repr(layer)
    x = torch.randn(2, 16, 6, 6)
    w = dataclasses.replace(layer.copies[0].packed, shape=tuple(layer.weight_shape))
    with torch.no_grad():
        want = slt_conv2d_int8(x, w, padding=1, act_scale="image")
        assert torch.equal(model(x), want)
    with pytest.raises(ValueError, match=r"act_scale: expected one of 'patch', 'image', got 'row'"):
        set_int8_activations(model, act_scale="row")
    with pytest.raises(ValueError, match=r"act_scale: expected one of"):
        layer.act_scale = "channel"


@CPP
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_transpose_batched(threads):
    """NCHW <-> channels last in C++: whole matrices per thread, or 8-row slices of them when
    there are fewer matrices than threads; sizes around the 8 x 8 tiles."""
    mod = _ext.require()
    for b, r, c in [(1, 1, 1), (1, 7, 5), (1, 8, 49), (1, 13, 3136), (2, 64, 9), (3, 19, 33), (1, 512, 49)]:
        x = torch.randn(b, r, c)
        out = torch.full((b, c, r), float("nan"))
        mod.transpose_batched(x.data_ptr(), out.data_ptr(), b, r, c, threads)
        assert torch.equal(out, x.transpose(1, 2)), (b, r, c)
