"""slt_conv2d_int8's fused epilogue, relu(conv · out_scale + bias + residual): on every backend,
the bits of the same ops run one by one on the unfused output (float32), in the implicit GEMM's
store (natively and under SIMDe) and after the patches; its bad arguments; and
slt_hw.nn.fuse_epilogues, which folds a packed CNN's BatchNorms, residual adds and ReLUs into it."""

import copy
import operator

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packing import random_conv_packed
from test_conv_int8_taps import TAPS_ISAS, taps_conv
from torch import nn

import slt_hw
from slt_hw import _ext, _ops, dispatch
from slt_hw.backends import cpu
from slt_hw.backends.composite import conv_epilogue
from slt_hw.models import ConvNet, ResNet18
from slt_hw.nn import SLTFusedConv2d, SLTLayer, fuse_epilogues, set_int8_activations
from slt_hw.ops import slt_conv2d_int8, slt_conv2d_int8_reference

BACKENDS = [n for n, why in dispatch.reasons("cpu", "conv2d_int8_planes").items() if not why]
CPP = pytest.mark.skipif("cpp" not in BACKENDS, reason="slt_hw._C not built")


def packed(shape, seed, fmt="binary"):
    return random_conv_packed(fmt, "signed_constant", shape, seed=seed)


def unfused(x, p, bias, scale, residual, relu, **conv):
    """The epilogue as torch ops after the unfused convolution (float32 x)."""
    y = slt_conv2d_int8(x, p, None if scale is not None else bias, **conv)
    return conv_epilogue(y, scale, bias if scale is not None else None, residual, relu)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.sampled_from([3, 8, 16, 20]), cout=st.sampled_from([1, 5, 16, 48, 50]),
       hw=st.sampled_from([(4, 4), (9, 7), (12, 12)]), batch=st.sampled_from([0, 1, 3]),
       act_scale=st.sampled_from(["patch", "image"]), channels_last=st.booleans(),
       parts=st.sampled_from(["s", "b", "r", "u", "sb", "sbr", "sbru", "bru", "ru", "su"]),
       residual_layout=st.sampled_from(["like_output", "contiguous", "channels_last", "strided"]),
       fmt=st.sampled_from(["binary", "multicoat", "frozen"]), seed=st.integers(0, 1000))
def test_fused_epilogue_has_the_unfused_ops_bits(backend, cin, cout, hw, batch, act_scale, channels_last, parts,
                                                 residual_layout, fmt, seed):
    """Any subset of (scale, bias, residual, relu), any geometry (the implicit GEMM from 64
    output pixels, the patches below it or for channels not a multiple of 4), an empty batch,
    a residual in any layout: the fused output is the unfused one's ops' bits."""
    gen = torch.Generator().manual_seed(seed)
    p = packed((cout, cin, 3, 3), seed, fmt)
    x = torch.randn(batch, cin, *hw, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    scale = torch.rand(cout, generator=gen) + 0.5 if "s" in parts else None
    bias = torch.randn(cout, generator=gen) if "b" in parts else None
    residual = None
    if "r" in parts:
        residual = torch.randn(batch, cout, *hw, generator=gen)
        if residual_layout == "like_output":
            residual = residual.contiguous(memory_format=_ops.conv2d_output_format(x))
        elif residual_layout == "channels_last":
            residual = residual.contiguous(memory_format=torch.channels_last)
        elif residual_layout == "strided":
            residual = torch.randn(batch, 2 * cout, *hw, generator=gen)[:, ::2]
    relu = "u" in parts
    conv = dict(padding=1, act_scale=act_scale, backend=backend)
    got = slt_conv2d_int8(x, p, bias, out_scale=scale, residual=residual, relu=relu, **conv)
    assert torch.equal(got, unfused(x, p, bias, scale, residual, relu, **conv))
    assert got.is_contiguous(memory_format=_ops.conv2d_output_format(x))
    want = slt_conv2d_int8_reference(x, p, bias, padding=1, act_scale=act_scale, out_scale=scale,
                                     residual=residual, relu=relu)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(want.abs().max()) if want.numel()
                                                                      else 1.0))


@CPP
@pytest.mark.parametrize("isa", TAPS_ISAS)
@pytest.mark.parametrize("parts", ["sbru", "ru", "s", "u"])
def test_implicit_gemm_store_has_the_unfused_ops_bits(isa, parts):
    """In the implicit GEMM's store, the vector loop (native) and the scalar one (SIMDe, and
    every 16-column tail: 50 channels) give the bits of the ops one by one."""
    gen = torch.Generator().manual_seed(7)
    p = packed((50, 8, 3, 3), 3)
    x = torch.relu(torch.randn(2, 8, 7, 6, generator=gen)) * 3
    m, n = 2 * 7 * 6, 50
    scale = torch.rand(n, generator=gen) + 0.5 if "s" in parts else None
    bias = torch.randn(n, generator=gen) if "b" in parts else None
    residual = torch.randn(m, n, generator=gen) if "r" in parts else None
    relu = "u" in parts
    got = taps_conv(isa, x, p, bias, (1, 1), (1, 1), (1, 1), 1, epilogue=(scale, residual, relu))
    y = taps_conv(isa, x, p, None if scale is not None else bias, (1, 1), (1, 1), (1, 1), 1)
    rows = y.view(2, 7, 6, n).permute(0, 3, 1, 2)
    conv_epilogue(rows, scale, bias if scale is not None else None,
                  None if residual is None else residual.view(2, 7, 6, n).permute(0, 3, 1, 2), relu)
    assert torch.equal(got, y)


@CPP
def test_taps_and_patches_epilogues_have_the_same_bits(monkeypatch):
    """The epilogue in the implicit GEMM's store and apply_epilogue's pass after the patches:
    the same bits; apply_epilogue's bad arguments."""
    gen = torch.Generator().manual_seed(1)
    p = packed((64, 16, 3, 3), 2)
    x = torch.randn(2, 16, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    scale, bias = torch.rand(64, generator=gen) + 0.5, torch.randn(64, generator=gen)
    residual = torch.randn(2, 64, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    conv = dict(padding=1, act_scale="image", out_scale=scale, residual=residual, relu=True, backend="cpp")
    got = slt_conv2d_int8(x, p, bias, **conv)
    monkeypatch.setenv(cpu.CONV_INT8_ENV, "patches")
    assert torch.equal(slt_conv2d_int8(x, p, bias, **conv), got)
    mod, y = _ext.require(), torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"y: row stride smaller than the number of columns"):
        mod.apply_epilogue(y.data_ptr(), 3, 4, 3)
    with pytest.raises(ValueError, match=r"residual: row stride smaller"):
        mod.apply_epilogue(y.data_ptr(), 3, 4, 4, 0, 0, y.data_ptr(), 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_epilogue_rounds_once(dtype):
    """fp16/bf16 x: the epilogue in float32, one rounding to x's dtype at the end."""
    gen = torch.Generator().manual_seed(4)
    p = packed((16, 8, 3, 3), 5)
    x = torch.randn(2, 8, 9, 9, generator=gen)
    scale, bias, res = torch.rand(16, generator=gen) + 0.5, torch.randn(16, generator=gen), torch.randn(2, 16, 9, 9)
    got = slt_conv2d_int8(x.to(dtype), p, bias, padding=1, act_scale="image", out_scale=scale,
                          residual=res.to(dtype), relu=True)
    assert got.dtype == dtype
    want = slt_conv2d_int8(x, p, bias, padding=1, act_scale="image", out_scale=scale,
                           residual=res.to(dtype).float(), relu=True)
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=5e-2)


def test_bad_epilogue_arguments():
    p, x = packed((6, 4, 3, 3), 0), torch.randn(2, 4, 8, 8)
    cases = [
        (dict(out_scale=torch.ones(6, dtype=torch.float64)), r"out_scale: expected a float32 tensor of shape \(6,\), "
                                                             r"one per output channel, got torch.float64 \(6,\)"),
        (dict(out_scale=torch.ones(5)), r"out_scale: expected a float32 tensor of shape \(6,\).*got torch.float32 "
                                        r"\(5,\)"),
        (dict(out_scale=[1.0] * 6), r"out_scale: expected a float32 tensor.*got list"),
        (dict(residual=torch.ones(2, 6, 8, 7)), r"residual: expected a torch.float32 tensor of the output's shape "
                                                r"\(2, 6, 8, 8\), got torch.float32 \(2, 6, 8, 7\)"),
        (dict(residual=torch.ones(2, 6, 8, 8, dtype=torch.float16)), r"residual: expected a torch.float32 tensor"),
    ]
    for backend in BACKENDS:
        for kwargs, match in cases:
            with pytest.raises(ValueError, match=match):
                slt_conv2d_int8(x, p, padding=1, backend=backend, **kwargs)
    with pytest.raises(TypeError, match=r"relu: expected a bool, got int"):
        slt_conv2d_int8(x, p, padding=1, relu=1)
    with pytest.raises(ValueError, match=r"residual: expected a torch.float32 tensor"):
        slt_conv2d_int8_reference(x, p, padding=1, residual=torch.ones(1))


def test_opcheck_with_an_epilogue():
    p = packed((4, 2, 3, 2), 5)
    fmt, w = _ops.weight_args(p)
    x = torch.randn(2, 4, 6, 5)
    for act_scale in ("patch", "image"):
        torch.library.opcheck(getattr(_ops, f"conv2d_int8_{fmt}"),
                              (x, torch.randn(4), *w, [3, 2], [1, 2], [1, 0], [1, 1], 2, "auto", act_scale,
                               torch.rand(4) + 0.5, torch.randn(2, 4, 6, 2), True))


# ---------------------------------------------------------------------- fuse_epilogues


def _random_bn_stats(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return model


def _packed_model(model: nn.Module) -> nn.Module:
    """model packed (a dense one converted first, its weights' signs and a half of them kept)."""
    model = _random_bn_stats(model.eval())
    if not any(isinstance(m, SLTLayer) for m in model.modules()):
        model = slt_hw.convert(model, seed=0, sparsity=0.5)
    return slt_hw.pack(model).eval()


@pytest.mark.parametrize("dense", [False, True])
def test_fused_resnet_matches_the_model(dense):
    """A CIFAR ResNet-18 (non-affine BatchNorms as Edge-Popup's, or affine): every convolution
    takes its BatchNorm, the blocks' second ones their shortcut and ReLU; float activations give
    the model's outputs up to rounding, int8 ones the same error against them."""
    model = _packed_model(ResNet18((3, 16, 16), 10, seed=0, width=0.25, dense=dense))
    fused = fuse_epilogues(model)
    kinds = [type(m) for m in fused.modules()]
    assert kinds.count(SLTFusedConv2d) == 20 and nn.BatchNorm2d not in kinds  # (stem, 16 in blocks, 3 shortcuts)
    assert sum(isinstance(m, SLTFusedConv2d) and m.relu for m in fused.modules()) == 17
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2)).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        want = model(x)
        torch.testing.assert_close(fused(x), want, rtol=1e-4, atol=1e-4)
        assert set_int8_activations(fused, act_scale="image") == 21  # (the layers are the model's)
        err_fused = float((fused(x) - want).norm() / want.norm())
        err_model = float((model(x) - want).norm() / want.norm())
    assert err_fused < 0.05 and err_model < 0.05 and abs(err_fused - err_model) < 0.02


def test_fused_convnet_relus_are_exact():
    """Conv6's convolutions and ReLU modules (no BatchNorm): the fused ReLU is the same max."""
    model = _packed_model(ConvNet("conv2", (3, 12, 12), 10, seed=0))
    fused = fuse_epilogues(model)
    assert sum(isinstance(m, SLTFusedConv2d) for m in fused.modules()) == 2
    x = torch.randn(2, 3, 12, 12)
    with torch.inference_mode():
        assert torch.equal(fused(x), model(x))
        set_int8_activations(model, act_scale="image")
        assert torch.equal(fused(x), model(x))


class _Patterns(nn.Module):
    """The forms of ReLU and add the fusion knows, and two adds it must leave alone."""

    def __init__(self, conv, bn, bias):
        super().__init__()
        self.c1, self.c2, self.c3, self.c4, self.c5, self.bn = conv(), conv(), conv(), conv(), conv(), bn
        self.act = nn.ReLU()
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x):
        a = F.relu(torch.add(self.bn(self.c1(x)), x), inplace=True)  # bn, torch.add, F.relu(inplace)
        b = self.act(operator.add(x, self.c2(a)))  # the residual first, nn.ReLU
        c = self.c3(b).add(a).relu()  # methods
        d = self.c4(c) + self.bias  # a parameter that broadcasts: the add after the fused part
        e = self.c5(d)
        e += 1.0  # a constant: not a residual
        return d.relu_() + e


def test_fusion_patterns():
    torch.manual_seed(0)
    convs = [nn.Conv2d(4, 4, 3, padding=1, bias=False) for _ in range(5)]
    it = iter(convs)

    class Dense(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _Patterns(lambda: next(it), nn.BatchNorm2d(4), torch.randn(4, 1, 1))

        def forward(self, x):
            return self.inner(x)

    model = _packed_model(Dense())
    model.inner.c2.bias = nn.Parameter(torch.randn(4), requires_grad=False)  # (convert drops biases)
    fused = fuse_epilogues(model)
    got = {n: (m.out_scale is not None, m.bias is not None, m.relu) for n, m in fused.named_modules()
           if isinstance(m, SLTFusedConv2d)}
    assert got == {"inner.c1": (True, True, True), "inner.c2": (False, True, True), "inner.c3": (False, False, True),
                   "inner.c4": (False, False, False), "inner.c5": (False, False, False)}
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)


def test_fusion_refuses_training_batchnorm_and_untraceable_models():
    model = _packed_model(ResNet18((3, 8, 8), 10, seed=0, width=0.125))
    model.blocks[0].bn1.train()
    with pytest.raises(ValueError, match=r"model: BatchNorm2d 'blocks.0.bn1' is in training mode.*model.eval\(\)"):
        fuse_epilogues(model)

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ValueError, match=r"model: torch.fx cannot trace Branchy"):
        fuse_epilogues(Branchy())
    with pytest.raises(TypeError, match=r"model: expected an nn.Module, got int"):
        fuse_epilogues(3)
    with pytest.raises(TypeError, match=r"conv: expected a packed convolution"):
        SLTFusedConv2d(nn.Conv2d(1, 1, 1), None, None, False)


# ---------------------------------------------------------------------- prepared calls


def _prepared_block(act_scale):
    """A packed 16-channel convolution + BatchNorm + shortcut + ReLU block, fused, int8."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)) + x)

    torch.manual_seed(0)
    model = _packed_model(Block())
    set_int8_activations(model, act_scale=act_scale)
    return model, fuse_epilogues(model)


@CPP
@pytest.mark.parametrize(("act_scale", "shape", "kind"), [("image", (2, 16, 8, 8), "TapsCall"),
                                                          ("image", (1, 16, 4, 4), "either"),
                                                          ("patch", (2, 16, 8, 8), "PatchesCall")])
def test_prepared_calls_have_the_op_bits_and_follow_what_they_depend_on(monkeypatch, act_scale, shape, kind):
    """From a mask's second use a fused convolution's calls are prepared (no op-layer checks;
    the implicit GEMM's, or the patches' with the table lookup's planes; 16 output pixels take
    the implicit GEMM from its layout where it runs, else the patches): the bits of the op's
    path; a change of input shape, strides, threads, environment, mask (in place) or bias goes
    back through the op, and the outputs follow it."""
    taps = {"avx512vnni", "avx2"} & set(_ext.native().cpu_isas())  # (AVX2: from the planes, cached by now)
    if kind == "TapsCall" and not taps:
        pytest.skip("the implicit GEMM needs AVX-512 VNNI or AVX2")
    if kind == "either":
        kind = "TapsCall" if taps else "PatchesCall"
    model, fused = _prepared_block(act_scale)
    conv = fused.get_submodule("conv")
    runs = []
    real_call = cpu.PreparedConv2dInt8.__call__
    monkeypatch.setattr(cpu.PreparedConv2dInt8, "__call__", lambda self, *a: runs.append(1) or real_call(self, *a))
    gen = torch.Generator().manual_seed(3)

    def x_of(*shape, cl=True):
        x = torch.randn(*shape, generator=gen)
        return x.contiguous(memory_format=torch.channels_last) if cl else x

    x = x_of(*shape)
    with torch.inference_mode():
        first = [fused(x) for _ in range(2)]  # (the layouts are cached on the mask's second use, then prepared)
        assert type(conv._prepared.call.call).__name__ == kind
        assert torch.equal(fused(x), first[0]) and runs and torch.equal(first[1], first[0])
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)
        for changed in (x_of(shape[0] + 1, *shape[1:]), x_of(*shape, cl=False)):  # another shape; NCHW strides
            runs.clear()
            once = fused(changed)
            assert not runs and torch.equal(fused(changed), once) and once.shape[0] == changed.shape[0]
        runs.clear()
        fused(x)
        fused(x)  # (prepared again for x)
        assert runs
        for env, value in ((cpu.CONV_INT8_ENV, "patches"), (cpu.ISA_ENV, "avx2"), (cpu.LUT_ENV, "off")):
            with monkeypatch.context() as m:
                m.setenv(env, value)
                runs.clear()
                assert torch.equal(fused(x), first[0]) and not runs
        threads = torch.get_num_threads()
        torch.set_num_threads(1 if threads > 1 else 2)
        try:
            runs.clear()
            assert torch.equal(fused(x), first[0]) and not runs
        finally:
            torch.set_num_threads(threads)
    fused(x), fused(x)
    planes = conv.conv.copies[0].planes
    with torch.no_grad():
        planes[0, :3].bitwise_xor_(0x5A5A5A5A)  # in place: the cached layouts are stale
    runs.clear()
    with torch.inference_mode():
        flipped = fused(x)
        assert not runs and not torch.equal(flipped, first[0])
        torch.testing.assert_close(flipped, model(x), rtol=1e-4, atol=1e-4)
        conv.bias = conv.bias + 1  # a new tensor: not the prepared call's
        biased = fused(x)
        assert not torch.equal(biased, flipped)
        lin = conv.conv.copies[0]
        new = lin.planes.clone()
        new[0, :3].bitwise_xor_(0x5A5A5A5A)  # (the flip undone)
        lin.planes = new  # a new mask tensor: not the prepared call's either
        replaced = fused(x)
        conv.__dict__.pop("_prepared", None)  # (the op's own result, unprepared)
        assert not torch.equal(replaced, biased) and torch.equal(replaced, fused(x))
    clone = copy.deepcopy(fused)  # (the prepared call stays behind)
    with torch.inference_mode():
        assert "_prepared" not in clone.get_submodule("conv").__dict__ and torch.equal(clone(x), fused(x))


@CPP
@pytest.mark.parametrize("threads", [1, 2])
def test_patches_with_the_lookups_stored_planes(threads, fresh_cache, monkeypatch):
    """The patches' int8 kernel at 16 output rows: the table lookup's planes stored on the
    mask's second use and run from then on, through the op and prepared: the same bits. (Forced:
    on AVX-512 VNNI the implicit GEMM takes these rows from its own layout.)"""
    monkeypatch.setenv(cpu.CONV_INT8_ENV, "patches")
    p = packed((512, 128, 3, 3), 6)  # (a CIFAR ResNet-18's layer4 shape, fewer input channels)
    x = torch.randn(1, 128, 4, 4, generator=torch.Generator().manual_seed(6)).contiguous(
        memory_format=torch.channels_last)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        mod = _ext.require()
        desc, _alive = _ext.weight_desc(mod, _ops.weight_args(p)[1])
        if not mod.lut_layout(desc, 16, "auto", "auto", True, threads, False)[0]:
            pytest.skip("no int8 table lookup runs 16 rows here")
        got = [slt_conv2d_int8(x, p, padding=1, act_scale="image", relu=True, backend="cpp") for _ in range(3)]
        assert fresh_cache.nbytes() > 0
        assert torch.equal(got[0], got[1]) and torch.equal(got[0], got[2])
        block = SLTFusedConv2d(slt_hw.nn.SLTPackedLayer([p], kind="conv2d", conv=dict(
            in_channels=128, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1))), None, None, True)
        block.conv.copies[0].int8, block.conv.act_scale = True, "image"
        with torch.inference_mode():
            outs = [block(x) for _ in range(3)]
        assert block._prepared.call is not None and all(torch.equal(o, got[0]) for o in outs)
    finally:
        torch.set_num_threads(old)
