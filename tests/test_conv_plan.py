"""_C.ConvInt8Plan, slt_conv2d_int8's kernel calls for one input shape held in C++ (what the op
runs, and what SLTFusedConv2d's prepared calls run again): on many shapes, groups, strides and
epilogues, empty batches included, the implicit GEMM's plan gives the patches' bits, the fused
epilogue the bits of torch's ops after the plain plan, both near the reference; and its bad
specs."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packing import random_conv_packed

from slt_hw import _ext, _ops, dispatch
from slt_hw.backends import cpu
from slt_hw.backends.composite import conv_epilogue, split_bias
from slt_hw.ops import slt_conv2d_int8_reference

CPP = pytest.mark.skipif(bool(dispatch.reasons("cpu", "conv2d_int8_planes").get("cpp", "absent")),
                         reason="slt_hw._C not built")


def _call(p, x, geometry, groups, act_scale, path):
    """The TapsCall or PatchesCall cpu.conv2d_int8 makes for these arguments (path "taps": None
    where the implicit GEMM declines)."""
    mod = _ext.require()
    w = _ops.weight_args(p)[1]
    desc, alive = _ext.weight_desc(mod, w)
    isa, nt = cpu._isa(None), torch.get_num_threads()
    if path == "taps":
        return cpu._taps_call(mod, w, desc, alive, x, geometry, groups, isa, nt)
    return cpu.PatchesCall(mod, w, desc, alive, x, geometry, groups, act_scale, isa, cpu._lut(None), nt)


def _run(call, x, bias=None, scale=None, residual=None, relu=False):
    """call's plan run once, into a NaN-filled output (every element must be written)."""
    plan = call.plan(x, bias, scale, relu)
    assert (plan.out_h, plan.out_w) == (call.oh, call.ow)
    y = torch.full((x.shape[0] * call.oh * call.ow, call.n), float("nan"))
    plan.run(x.data_ptr(), y.data_ptr(), 0 if residual is None else residual.data_ptr())
    return y


@CPP
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.sampled_from([3, 4, 8, 20]), cout=st.sampled_from([2, 16, 50]), hw=st.sampled_from([(5, 4), (9, 9)]),
       batch=st.sampled_from([0, 1, 3]), groups=st.sampled_from([1, 2]), stride=st.sampled_from([1, 2]),
       padding=st.sampled_from([0, 1]), act_scale=st.sampled_from(["patch", "image"]),
       parts=st.sampled_from(["b", "s", "sb", "sbr", "r", "br"]),
       fmt=st.sampled_from(["binary", "multicoat", "frozen"]), seed=st.integers(0, 1000))
def test_plans_agree_and_fuse_the_epilogue_exactly(cin, cout, hw, batch, groups, stride, padding, act_scale, parts,
                                                   fmt, seed):
    if cin % groups or cout % groups:
        groups = 1
    gen = torch.Generator().manual_seed(seed)
    p = random_conv_packed(fmt, "signed_constant", (cout, cin // groups, 3, 3), seed=seed)
    x = torch.randn(batch, cin, *hw, generator=gen).contiguous(memory_format=torch.channels_last)
    geometry = ([3, 3], [stride, stride], [padding, padding], [1, 1])
    patches = _call(p, x, geometry, groups, act_scale, "patches")
    plain = _run(patches, x)
    if act_scale == "image":  # the implicit GEMM, where it runs: the patches' bits
        taps = _call(p, x, geometry, groups, act_scale, "taps")
        if taps is not None:
            assert torch.equal(_run(taps, x), plain)
    m, n = plain.shape
    bias = torch.randn(n, generator=gen) if "b" in parts else None
    scale = torch.rand(n, generator=gen) + 0.5 if "s" in parts else None
    relu = "r" in parts
    residual = torch.randn(m, n, generator=gen) if "r" in parts else None
    conv_bias, late_bias = split_bias(bias, scale)
    y = conv_epilogue(_run(patches, x, conv_bias).view(batch, patches.oh, patches.ow, n).permute(0, 3, 1, 2), scale,
                      late_bias, None if residual is None else residual.view(batch, patches.oh, patches.ow, n)
                      .permute(0, 3, 1, 2), relu)
    fused = _run(patches, x, bias, scale, residual, relu)
    assert torch.equal(fused, y.permute(0, 2, 3, 1).reshape(m, n))
    want = slt_conv2d_int8_reference(x, p, bias, stride=stride, padding=padding, groups=groups, act_scale=act_scale,
                                     out_scale=scale, relu=relu, residual=None if residual is None else
                                     residual.view(batch, patches.oh, patches.ow, n).permute(0, 3, 1, 2))
    torch.testing.assert_close(fused, want.permute(0, 2, 3, 1).reshape(m, n), rtol=1e-4,
                               atol=1e-4 * max(1.0, float(want.abs().max()) if want.numel() else 1.0))


@CPP
def test_plan_spec_errors_name_the_argument():
    mod = _ext.require()
    p = random_conv_packed("binary", "signed_constant", (8, 4, 3, 3), seed=1)
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    nchw = torch.randn(2, 4, 6, 6)

    def plan(**kw):
        args = dict(w=desc, shape=list(x.shape), strides=list(x.stride()), kernel=[3, 3], stride=[1, 1],
                    padding=[1, 1], dilation=[1, 1], groups=1, path="patches", act_scale="image", isa="auto",
                    threads=1, lut="auto", taps_planes=0, taps_planes_bytes=0, chunk=16, lut_rows=[], lut_planes=[],
                    lut_planes_bytes=[], bias=0, scale=0, relu=False)
        args.update(kw)
        return mod.conv_int8_plan(**args)

    plan()  # (a good spec)
    for kw, match in [(dict(path="gather"), "path"), (dict(act_scale="row"), "act_scale"),
                      (dict(path="taps", act_scale="patch"), "act_scale"), (dict(lut="maybe"), "lut"),
                      (dict(groups=3), "groups"), (dict(chunk=0), "chunk"),
                      (dict(lut_rows=[16], lut_planes=[]), "lut planes"),
                      (dict(strides=list(nchw.stride())), "channels-last"),
                      (dict(shape=[2, 8, 6, 6], strides=[288, 1, 48, 8]), "in_features"),
                      (dict(isa="sse9"), "isa")]:
        with pytest.raises(ValueError, match=match):
            plan(**kw)
    plan(strides=list(nchw.stride()), act_scale="patch")  # (the per-patch gather reads any strides)
    if "avx512vnni" in mod.cpu_isas():
        with pytest.raises(ValueError, match="output pixels"):  # (the implicit GEMM's refusal, made once)
            plan(path="taps", shape=[1, 4, 3, 3], strides=[36, 1, 12, 4])
