"""slt_conv2d_int8's implicit GEMM (act_scale "image"; csrc/cpu/conv_int8.h): each output
pixel's taps read in place in images quantized into a zero frame give the patch matrix's bits
(im2col_int8 + slt_linear), natively where the CPU has AVX-512 VNNI or AVX2 (from the weight's
tap-major planes) and under SIMDe; the framed
quantizer against F.pad of quantize_images; where the implicit GEMM declines, and bad
arguments."""

import dataclasses

import avx512_emulation
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packing import random_conv_packed, random_packed

from slt_hw import _ext, _ops
from slt_hw.backends import cpu
from slt_hw.ops import quantize_images, slt_conv2d_int8

NATIVE_ISAS = list(_ext.native().cpu_isas()) if _ext.native() is not None else []
CPP = pytest.mark.skipif(not NATIVE_ISAS, reason="slt_hw._C not built")
NATIVE_VNNI = "avx512vnni" in NATIVE_ISAS
TAPS_ISAS = [*(["avx512vnni"] if NATIVE_VNNI else []), *(["avx2"] if "avx2" in NATIVE_ISAS else []),
             "avx512vnni-emulated"]


module = avx512_emulation.module_for


def packed(shape, seed):
    return random_conv_packed("binary", "signed_constant", shape, seed=seed)


def framed_images(mod, isa, x, padding, cq=None):
    """x (float32) quantized per image by mod's quantize_images_padded: channels-last int8 images
    inside a zero frame of `padding` (cq channels a pixel, those past x's zero), and their scales."""
    xc = x.contiguous(memory_format=torch.channels_last)
    (b, c, h, w), (ph, pw) = x.shape, padding
    cq = c if cq is None else cq
    q = torch.full((b, cq, h + 2 * ph, w + 2 * pw), 99, dtype=torch.int8).contiguous(memory_format=torch.channels_last)
    s = torch.empty(b)
    mod.quantize_images_padded(xc.data_ptr(), b, h, w, c, ph, pw, q.data_ptr(), s.data_ptr(), 2, isa, cq)
    return q, s


def taps_planes(mod, p):
    """p's tap-major P/N planes (pack_conv_taps_planes) from mod."""
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
    out = torch.empty(mod.conv_taps_planes_bytes(desc, p.shape[2] * p.shape[3]), dtype=torch.uint8)
    mod.pack_conv_taps_planes(desc, p.shape[2] * p.shape[3], out.data_ptr(), out.numel(), 2)
    return out


def taps_conv(isa, x, p, bias, stride, padding, dilation, groups, planes=False, epilogue=(None, None, False)):
    """slt_conv2d_int8(act_scale="image") as the cpp backend runs it through the implicit GEMM,
    with `isa`'s module (planes: with the weight's tap-major planes; epilogue: (scale, residual
    as output rows, relu)): its output rows (b, oh, ow), float32. AVX2 runs from the planes only."""
    mod = module(isa)
    planes = planes or isa == "avx2"
    _, w = _ops.weight_args(p)
    desc, _alive = _ext.weight_desc(mod, w)
    tp = taps_planes(mod, p) if planes else None
    scale, residual, relu = epilogue
    kernel, (oh, ow) = list(p.shape[2:]), _ops.conv2d_output_size(x.shape[2], x.shape[3], p.shape[2:], stride,
                                                                  padding, dilation)
    n, cin_g = p.out_features, x.shape[1] // groups
    og = n // groups
    images, scales = framed_images(mod, isa, x, padding, mod.taps_channels(cin_g) if groups == 1 else None)
    y = torch.full((x.shape[0] * oh * ow, n), float("nan"))
    shape, strides = [x.shape[0], cin_g, *x.shape[2:]], list(images.stride())
    geometry = (kernel, list(stride), list(padding), list(dilation))
    for g in range(groups):
        c_all, h, w_ = x.shape[1:]
        x_strides = [c_all * h * w_, 1, w_ * c_all, c_all]  # (the refusal's: channels-last x's)
        assert mod.conv_int8_taps_refusal(desc, shape, x_strides, *geometry, isa, planes) == ""
        mod.conv2d_int8_taps(desc, images.data_ptr() + g * cin_g, shape, strides, *geometry,
                             y.data_ptr() + g * og * 4, n, g * og, (g + 1) * og,
                             0 if bias is None else bias.data_ptr() + g * og * 4, scales.data_ptr(), 2, isa,
                             0 if tp is None else tp.data_ptr(), 0 if tp is None else tp.numel(),
                             0 if scale is None else scale.data_ptr() + g * og * 4,
                             0 if residual is None else residual.data_ptr() + g * og * 4, n, relu)
    return y


def patches_conv(x, p, bias, stride, padding, dilation, groups, monkeypatch):
    """The same through the patch matrix (im2col_int8 + slt_linear), as output rows (b, oh, ow)."""
    with monkeypatch.context() as m:
        m.setenv(cpu.CONV_INT8_ENV, "patches")
        y = slt_conv2d_int8(x, p, bias, stride, padding, dilation, groups, act_scale="image", backend="cpp")
    return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])


@CPP
@pytest.mark.parametrize("isa", TAPS_ISAS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(cin_g=st.sampled_from([1, 3, 4, 5, 8, 12, 16, 20, 48, 64, 68]),
       og=st.sampled_from([1, 5, 16, 17, 48, 50, 100]), groups=st.sampled_from([1, 2]),
       k=st.sampled_from([(1, 1), (3, 3), (2, 3), (5, 5)]), stride=st.sampled_from([(1, 1), (2, 2), (2, 1)]),
       padding=st.sampled_from([(0, 0), (1, 1), (2, 0)]), dilation=st.sampled_from([(1, 1), (2, 1)]),
       batch=st.sampled_from([1, 3]), wide=st.booleans(), seed=st.integers(0, 1000), with_bias=st.booleans(),
       planes=st.booleans())
def test_taps_have_the_patch_matrix_bits(isa, cin_g, og, groups, k, stride, padding, dilation, batch, wide, seed,
                                         with_bias, planes, monkeypatch):
    """Every output, bit for bit, whatever the geometry: one and several weight-row tasks (48
    rows each, 16-row groups), channels a multiple of 4 but not of 16 or 64 (or, one group, not
    of 4: padded in the images), tiles of fewer than 8 rows at the end, strides, dilations, a
    frame wider on one side, groups, rows of 16 pixels and more (the row sums' vectors: four-
    byte pixels, channels a multiple of 16, outputs along a row); the panels from the sign hash
    and a permute, or from the weight's tap-major planes."""
    if cin_g % 4 and groups > 1:
        return  # (the patches run those: conv_int8_taps_refusal)
    side = 9 if k == (5, 5) else 7
    width = side + (20 if wide else 1)
    if min(_ops.conv2d_output_size(side, width, k, stride, padding, dilation)) < 1:
        return
    gen = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(batch, cin_g * groups, side, width, generator=gen)) * 3
    oh, ow = _ops.conv2d_output_size(side, width, k, stride, padding, dilation)
    x = torch.cat([x] * -(-64 // (batch * oh * ow)))  # (kConvTapsMinRows: below it the implicit GEMM declines)
    p = packed((og * groups, cin_g, *k), seed)
    bias = torch.randn(og * groups, generator=gen) if with_bias else None
    got = taps_conv(isa, x, p, bias, stride, padding, dilation, groups, planes)
    want = patches_conv(x, p, bias, stride, padding, dilation, groups, monkeypatch)
    assert torch.equal(got, want)


@CPP
@pytest.mark.parametrize("isa", TAPS_ISAS)
@pytest.mark.parametrize(("cin", "stride"), [(3, 1), (4, 2), (16, 1), (48, 1), (64, 2), (128, 1), (20, 1)])
def test_row_sums_of_wide_rows_have_the_patch_matrix_bits(isa, cin, stride, monkeypatch):
    """Rows of 16 pixels and more: each pixel's channel sum 16 pixels at a time (four-byte
    pixels, one vpdpbusd; channels a multiple of 16, reduced together; else byte by byte) and
    each output's 16 at a time along a row (stride 1): every output bit for bit."""
    gen = torch.Generator().manual_seed(cin)
    x = torch.relu(torch.randn(2, cin, 5, 37, generator=gen)) * 3 - 1
    p = packed((20, cin, 3, 3), cin)
    got = taps_conv(isa, x, p, None, (stride, stride), (1, 1), (1, 1), 1)
    assert torch.equal(got, patches_conv(x, p, None, (stride, stride), (1, 1), (1, 1), 1, monkeypatch))


@CPP
@pytest.mark.parametrize("isa", TAPS_ISAS)
@pytest.mark.parametrize("out_channels", [64, 96, 416, 512])
def test_tasks_shared_among_threads_have_the_same_bits(isa, out_channels, monkeypatch):
    """Two threads: weight rows in whole 48-row tasks (96), a few uneven ones over each thread's
    part of the pixels (64), many uneven ones in equal row ranges (416: 4 x 48 + 16 a thread;
    512: 5 x 48 + 16)."""
    gen = torch.Generator().manual_seed(out_channels)
    x = torch.relu(torch.randn(3, 8, 18, 18, generator=gen))  # (enough work for both threads)
    p = packed((out_channels, 8, 3, 3), 5)
    bias = torch.randn(out_channels, generator=gen)
    got = taps_conv(isa, x, p, bias, (1, 1), (1, 1), (1, 1), 1)
    assert torch.equal(got, patches_conv(x, p, bias, (1, 1), (1, 1), (1, 1), 1, monkeypatch))


@CPP
@pytest.mark.parametrize("shape", [(20, 8, 3, 3), (33, 4, 1, 1), (7, 12, 2, 5), (20, 3, 3, 3), (5, 6, 1, 2)])
def test_tap_major_planes_have_the_weights_bits(shape):
    """pack_conv_taps_planes: after the header, the int8 panels' layout (linear.h, LutLayout::kPanels)
    of the tap-major weight: per 16-row group g and 4 columns c, the byte masks of P = (w > 0)
    then of N = (w < 0), bit 4 lane + j for row 16 g + lane and column 4 c + j, where column
    t Cp + c holds the materialised weight's column c kh kw + t (C padded to Cp, a multiple of 4,
    with zero columns; rows and columns past the weight's zero)."""
    p = packed(shape, 3)
    mod = _ext.require()
    buf = taps_planes(mod, p)
    w = p.materialize().reshape(shape)  # (out, C, kh, kw)
    w = F.pad(w, (0, 0, 0, 0, 0, mod.taps_channels(shape[1]) - shape[1]))
    tap_major = w.permute(0, 2, 3, 1).reshape(shape[0], -1)  # (out, (i, j, c))
    groups, cols = (shape[0] + 15) // 16, (tap_major.shape[1] + 31) // 32 * 32
    assert buf.numel() == 64 + groups * cols // 4 * 16
    masks = buf[64:].view(groups, cols // 4, 2, 8)  # (group, c, P/N, 8 bytes)
    bits = torch.stack([(masks.long() >> i) & 1 for i in range(8)], -1).flatten(-2)  # (group, c, 2, 64)
    got = (bits[:, :, 0] - bits[:, :, 1]).view(groups, -1, 16, 4).permute(0, 2, 1, 3).reshape(16 * groups, cols)
    want = torch.zeros_like(got)
    want[:shape[0], :tap_major.shape[1]] = torch.sign(tap_major).long()
    assert torch.equal(got, want)


@CPP
def test_tap_major_planes_of_another_weight_or_kernel_are_refused():
    vnni = "avx512vnni" if NATIVE_VNNI else "avx512vnni-emulated"
    m = module(vnni)
    p, other = packed((20, 8, 3, 3), 1), packed((20, 8, 3, 3), 2)
    desc, _alive = _ext.weight_desc(m, _ops.weight_args(p)[1])
    images, scales = framed_images(m, vnni, torch.randn(4, 8, 6, 6), (1, 1))
    y = torch.empty(4 * 36, 20)
    args = (images.data_ptr(), [4, 8, 6, 6], list(images.stride()), [3, 3], [1, 1], [1, 1], [1, 1], y.data_ptr(),
            20, 0, 20, 0, scales.data_ptr(), 1, vnni)
    good = taps_planes(m, p)
    m.conv2d_int8_taps(desc, *args, good.data_ptr(), good.numel())
    bad = taps_planes(m, other)
    with pytest.raises(ValueError, match=r"planes: built for another weight or kernel \(header: .* keys"):
        m.conv2d_int8_taps(desc, *args, bad.data_ptr(), bad.numel())
    nine_by_one = taps_planes(m, dataclasses.replace(p, shape=(20, 8, 9, 1)))  # (9 taps too: the same layout)
    assert torch.equal(nine_by_one, good)
    three = torch.empty_like(good)
    m.pack_conv_taps_planes(desc, 3, three.data_ptr(), three.numel(), 1)
    with pytest.raises(ValueError, match=r"3 taps; this call: .* 9 taps"):
        m.conv2d_int8_taps(desc, *args, three.data_ptr(), three.numel())
    with pytest.raises(ValueError, match=r"planes: expected \d+ bytes"):
        m.conv2d_int8_taps(desc, *args, good.data_ptr(), good.numel() - 4)
    junk = good.clone()
    junk[:8] = 0
    with pytest.raises(ValueError, match=r"planes: not a tap-major planes layout \(bad header\)"):
        m.conv2d_int8_taps(desc, *args, junk.data_ptr(), junk.numel())
    with pytest.raises(ValueError, match=r"taps: expected a divisor of in_features 72, got 5"):
        m.pack_conv_taps_planes(desc, 5, three.data_ptr(), three.numel(), 1)
    with pytest.raises(ValueError, match=r"dst: expected \d+ bytes, got 3"):
        m.pack_conv_taps_planes(desc, 9, three.data_ptr(), 3, 1)


@CPP
@pytest.mark.skipif(not NATIVE_VNNI and "avx2" not in NATIVE_ISAS, reason="this CPU has neither AVX-512 VNNI nor AVX2")
def test_slt_conv2d_int8_keeps_the_tap_major_planes_of_a_mask_used_again(monkeypatch):
    """The cpp backend builds a mask's tap-major planes on its second use (layout_cache.py) and
    runs from them on: the same bits; with them, at any number of output pixels rather than from
    64 (AVX-512 VNNI), and only with them (AVX2: the first call runs the patches)."""
    monkeypatch.setattr(cpu, "CONV_TAPS_PLANES", type(cpu.CONV_TAPS_PLANES)())
    p = packed((20, 8, 3, 3), 4)
    x = torch.randn(1, 8, 5, 5)  # (25 output pixels)
    first = slt_conv2d_int8(x, p, padding=1, act_scale="image", backend="cpp")
    assert cpu.CONV_TAPS_PLANES.nbytes() == 0
    second = slt_conv2d_int8(x, p, padding=1, act_scale="image", backend="cpp")
    assert cpu.CONV_TAPS_PLANES.nbytes() == _ext.require().conv_taps_planes_bytes(
        _ext.weight_desc(_ext.require(), _ops.weight_args(p)[1])[0], 9)
    calls = []
    real = _ext.require().conv_int8_plan
    monkeypatch.setattr(_ext.require(), "conv_int8_plan", lambda *a: (calls.append(a[8:14]), real(*a))[1])
    third = slt_conv2d_int8(x, p, padding=1, act_scale="image", backend="cpp")
    assert calls and calls[0][0] == "taps" and calls[0][-1] != 0  # (the implicit GEMM, the planes' pointer)
    assert torch.equal(first, second) and torch.equal(second, third)


@CPP
@pytest.mark.skipif(not NATIVE_VNNI, reason="this CPU has no AVX-512 VNNI")
def test_slt_conv2d_int8_runs_the_taps_where_they_apply(monkeypatch):
    """slt_conv2d_int8(act_scale="image") on the cpp backend: the implicit GEMM (no patches
    plan) where conv_int8_taps_refusal says "", the patches otherwise; the same bits."""
    mod = _ext.require()
    calls = []
    real = mod.conv_int8_plan  # (records the plans made for the patches)
    monkeypatch.setattr(mod, "conv_int8_plan", lambda *a: (a[8] == "patches" and calls.append(a), real(*a))[1])
    p = packed((20, 8, 3, 3), 1)
    x = torch.randn(4, 8, 6, 6)
    y = slt_conv2d_int8(x, p, padding=1, act_scale="image", backend="cpp")
    assert not calls
    monkeypatch.setenv(cpu.CONV_INT8_ENV, "patches")
    assert torch.equal(slt_conv2d_int8(x, p, padding=1, act_scale="image", backend="cpp"), y) and calls
    monkeypatch.delenv(cpu.CONV_INT8_ENV)
    calls.clear()
    x3 = torch.randn(4, 3, 6, 6)  # (3 channels, one group: the taps, the images' channels padded to 4)
    p3 = packed((20, 3, 3, 3), 1)
    y3 = slt_conv2d_int8(x3, p3, padding=1, act_scale="image", backend="cpp")
    assert not calls
    x6 = torch.randn(4, 12, 6, 6)  # (two groups of 6 channels: the patches)
    slt_conv2d_int8(x6, packed((20, 6, 3, 3), 1), padding=1, groups=2, act_scale="image", backend="cpp")
    assert calls
    monkeypatch.setenv(cpu.CONV_INT8_ENV, "patches")
    assert torch.equal(slt_conv2d_int8(x3, p3, padding=1, act_scale="image", backend="cpp"), y3)
    monkeypatch.setenv(cpu.CONV_INT8_ENV, "implicit")
    with pytest.raises(ValueError, match=r"SLT_HW_CPU_CONV_INT8: expected one of \['auto', 'patches'\], "
                                         r"got 'implicit'"):
        slt_conv2d_int8(x, p, padding=1, act_scale="image", backend="cpp")


@CPP
@pytest.mark.parametrize("isa", [*NATIVE_ISAS, "avx512-emulated"])
@settings(max_examples=20, deadline=None)
@given(c=st.sampled_from([1, 3, 4, 19, 64]), padding=st.sampled_from([(0, 0), (1, 1), (2, 0), (0, 3)]),
       batch=st.sampled_from([1, 3]), seed=st.integers(0, 1000), scale_exp=st.integers(-20, 20),
       extra=st.sampled_from([0, 1, 5]))
def test_framed_images_have_the_reference_bits(isa, c, padding, batch, seed, scale_exp, extra):
    """quantize_images_padded: quantize_images' bytes and scales (every ISA's quantizer), inside
    a frame of zeros, the channels past x's (extra of them) zero too (every byte written: q
    starts as 99s)."""
    x = torch.randn(batch, c, 5, 7, generator=torch.Generator().manual_seed(seed)) * 2.0 ** scale_exp
    x[0] *= 100.0  # (images of different scales)
    q, s = framed_images(module(isa), isa, x, padding, c + extra)
    want_q, want_s = quantize_images(x)
    ph, pw = padding
    assert torch.equal(s, want_s)
    assert torch.equal(q, F.pad(want_q, (pw, pw, ph, ph, 0, extra)))


@CPP
def test_where_the_taps_decline_and_bad_arguments():
    mod = _ext.require()
    p = packed((20, 8, 3, 3), 1)
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
    cl = [8 * 6 * 6, 1, 6 * 8, 8]  # (channels-last strides of (B, 8, 6, 6))
    geometry = ([3, 3], [1, 1], [1, 1], [1, 1])
    assert "needs AVX-512 VNNI or AVX2" in mod.conv_int8_taps_refusal(desc, [4, 8, 6, 6], cl, *geometry, "scalar")
    if "avx2" in NATIVE_ISAS:
        assert "needs the weight's tap-major planes on AVX2" in mod.conv_int8_taps_refusal(
            desc, [4, 8, 6, 6], cl, *geometry, "avx2")
        assert mod.conv_int8_taps_refusal(desc, [4, 8, 6, 6], cl, *geometry, "avx2", True) == ""
    vnni = "avx512vnni" if NATIVE_VNNI else "avx512vnni-emulated"
    m = module(vnni)
    desc, _alive = _ext.weight_desc(m, _ops.weight_args(p)[1])
    why = m.conv_int8_taps_refusal
    assert why(desc, [4, 8, 6, 6], cl, *geometry, vnni) == ""
    assert "channels-contiguous" in why(desc, [4, 8, 6, 6], [288, 36, 6, 1], *geometry, vnni)
    assert why(desc, [4, 6, 6, 6], [216, 1, 36, 6], *geometry, vnni) == ""  # (one group: padded to 8)
    assert "multiple of 4 (6), or one group (then padded to 8)" in why(desc, [4, 6, 6, 6], [432, 1, 72, 12],
                                                                      *geometry, vnni)
    assert "at least 64 output pixels (any with the weight's tap-major planes)" in why(desc, [1, 8, 6, 6], cl,
                                                                                      *geometry, vnni)
    assert why(desc, [1, 8, 6, 6], cl, *geometry, vnni, True) == ""
    assert why(desc, [1, 8, 1, 1], [8, 1, 8, 8], *geometry, vnni, True) == ""  # (one output pixel)
    assert "at most 64 x 64" in why(desc, [4, 8, 70, 6], [8 * 70 * 6, 1, 48, 8], [65, 1], [1, 1], [0, 0], [1, 1],
                                    vnni)
    multicoat = random_packed("multicoat", "signed_constant", 20, 72, seed=1, name="conv")
    desc_m, _alive_m = _ext.weight_desc(m, _ops.weight_args(multicoat)[1])
    assert "binary signed-constant" in why(desc_m, [4, 8, 6, 6], cl, *geometry, vnni)
    images, scales = framed_images(m, vnni, torch.randn(4, 8, 6, 6), (1, 1))
    y = torch.empty(4 * 36, 20)
    run = m.conv2d_int8_taps
    args = (images.data_ptr(), [4, 8, 6, 6], list(images.stride()), *geometry)
    run(desc, *args, y.data_ptr(), 20, 0, 20, 0, scales.data_ptr(), 1, vnni)
    with pytest.raises(ValueError, match=r"weight: expected in_features = channels \* kh \* kw = 72, got 36"):
        small = random_packed("binary", "signed_constant", 20, 36, seed=1, name="conv")
        desc_s, _alive_s = _ext.weight_desc(m, _ops.weight_args(small)[1])
        run(desc_s, *args, y.data_ptr(), 20, 0, 20, 0, scales.data_ptr(), 1, vnni)
    with pytest.raises(ValueError, match=r"conv2d_int8_taps: needs at least 64 output pixels"):
        run(desc, images.data_ptr(), [1, 8, 6, 6], list(images.stride()), *geometry, y.data_ptr(), 20, 0, 20, 0,
            scales.data_ptr(), 1, vnni)
    with pytest.raises(ValueError, match=r"xq/image_scale/y: null pointer"):
        run(desc, *args, y.data_ptr(), 20, 0, 20, 0, 0, 1, vnni)
    with pytest.raises(ValueError, match=r"y: row stride smaller"):
        run(desc, *args, y.data_ptr(), 19, 0, 20, 0, scales.data_ptr(), 1, vnni)
    with pytest.raises(ValueError, match=r"rows: expected 0 <= row_begin <= row_end <= 20"):
        run(desc, *args, y.data_ptr(), 20, 0, 21, 0, scales.data_ptr(), 1, vnni)
    with pytest.raises(ValueError, match=r"negative sizes or padding"):
        m.quantize_images_padded(0, 1, 2, 2, 4, -1, 0, 0, 0, 1, vnni)
    with pytest.raises(ValueError, match=r"Cq: expected at least C = 4 channels a pixel"):
        m.quantize_images_padded(0, 1, 2, 2, 4, 1, 0, 0, 0, 1, vnni, 3)
    p3 = packed((20, 3, 3, 3), 1)
    desc3, _alive3 = _ext.weight_desc(m, _ops.weight_args(p3)[1])
    unpadded, scales3 = framed_images(m, vnni, torch.randn(4, 3, 6, 6), (1, 1))
    with pytest.raises(ValueError, match=r"needs images of channels padded to 4 \(3 channels 3 bytes apart\)"):
        run(desc3, unpadded.data_ptr(), [4, 3, 6, 6], list(unpadded.stride()), *geometry, y.data_ptr(), 20, 0, 20, 0,
            scales3.data_ptr(), 1, vnni)
