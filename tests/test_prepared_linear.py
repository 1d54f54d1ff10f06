"""SLTPackedLinear's prepared calls on the CPU (cpu.prepare_linear, _C.LinearPlan): from a
mask's second use a layer's calls on inputs of one shape run one C++ plan, the op's bits; a
change of what the op's choices read (input shape or strides, threads, environment, backend,
mask edited in place, a new bias or mask buffer, autograd) goes back through the op, and the
outputs follow it."""

import copy
import pickle

import pytest
import torch
from packing import random_packed

from slt_hw import _ext, _ops, dispatch
from slt_hw.backends import cpu
from slt_hw.formats import Format
from slt_hw.nn import SLTPackedLinear
from slt_hw.ops import slt_linear, slt_linear_int8

CPP = pytest.mark.skipif(bool(dispatch.reasons("cpu", "linear_planes").get("cpp", "absent")),
                         reason="slt_hw._C not built")


def _layer(fmt, int8, bias=True, seed=0):
    p = random_packed(fmt.value, "signed_constant", 96, 80, seed=seed)
    b = torch.randn(96, generator=torch.Generator().manual_seed(seed)) if bias else None
    return p, SLTPackedLinear(p, b, backend="cpp", int8=int8)


def _op(layer, x):
    fn = slt_linear_int8 if layer.int8 else slt_linear
    return fn(x, layer.packed, layer.bias, backend="cpp")


@CPP
@pytest.mark.parametrize("fmt", [Format.BINARY, Format.MULTICOAT, Format.FROZEN])
@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("shape", [(1, 80), (5, 80), (2, 3, 80)])
def test_prepared_calls_have_the_op_bits_and_follow_what_they_depend_on(monkeypatch, fmt, int8, shape):
    _, layer = _layer(fmt, int8)
    runs = []
    real_call = cpu.PreparedLinear.__call__
    monkeypatch.setattr(cpu.PreparedLinear, "__call__", lambda self, *a: runs.append(1) or real_call(self, *a))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=gen)
    want = _op(layer, x)
    with torch.no_grad():
        outs = [layer(x) for _ in range(4)]  # (the table lookup's planes cached on the second use, then prepared)
    assert layer._prepared.call is not None and runs
    assert all(torch.equal(o, want) for o in outs) and outs[-1].shape == want.shape

    def through_op(x_, expect=None):
        runs.clear()
        with torch.no_grad():
            got = layer(x_)
        assert not runs and torch.equal(got, _op(layer, x_) if expect is None else expect)

    through_op(torch.randn(shape[0] + 1, *shape[1:], generator=gen))  # another shape
    through_op(torch.randn(80, shape[0], generator=gen).t() if len(shape) == 2 else x.transpose(0, 1))  # strides
    with torch.no_grad():
        layer(x), layer(x)  # (prepared again for x)
    for env, value in ((cpu.ISA_ENV, "avx2"), (cpu.LUT_ENV, "off"), (dispatch.ENV_VAR, "reference")):
        with monkeypatch.context() as m:
            m.setenv(env, value)
            runs.clear()
            with torch.no_grad():
                got = layer(x)
            assert not runs and torch.equal(got, _op(layer, x))  # (float sums: another ISA, other bits)
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        through_op(x, want)
    finally:
        torch.set_num_threads(threads)
    xg = x.clone().requires_grad_()
    runs.clear()
    y = layer(xg)  # (autograd: the op)
    assert not runs and torch.equal(y.detach(), want)
    masks = layer.free_bits if fmt is Format.FROZEN else layer.planes
    with torch.no_grad():
        layer(x), layer(x)
        masks.view(-1)[:3].bitwise_xor_(0x5A5A5A5A)  # in place: the plan's choices are stale
    through_op(x)
    layer.bias = torch.nn.Parameter(layer.bias + 1, requires_grad=False)  # a new tensor: not the plan's
    through_op(x)
    with torch.no_grad():
        layer(x), layer(x)
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):  # (the prepared call stays behind)
        assert "_prepared" not in clone.__dict__
        with torch.no_grad():
            assert torch.equal(clone(x), layer(x))


@CPP
def test_layers_without_version_counters_or_inputs_are_not_prepared():
    """Masks made under inference_mode (no version counter: an edit in place could not be seen)
    and empty or bf16 inputs keep to the op."""
    with torch.inference_mode():
        _, layer = _layer(Format.BINARY, True)
        x = torch.randn(2, 80)
        outs = [layer(x) for _ in range(4)]
    assert layer._prepared.call is None and all(torch.equal(o, outs[0]) for o in outs)
    _, layer = _layer(Format.BINARY, True, seed=1)
    with torch.no_grad():
        for x in (torch.randn(0, 80), torch.randn(2, 80, dtype=torch.bfloat16)):
            for _ in range(4):
                layer(x)
            assert layer._prepared.call is None
    mod = _ext.require()
    desc, _alive = _ext.weight_desc(mod, _ops.weight_args(layer.packed)[1])
    for kw, match in ((dict(M=-1), "M"), (dict(row_end=97), "row"), (dict(lut="maybe"), "lut"),
                      (dict(isa="sse9"), "isa")):
        args = dict(w=desc, M=2, row_begin=0, row_end=96, int8=False, isa="auto", threads=1, lut="auto",
                    lut_planes=0, lut_planes_bytes=0, bias=0)
        args.update(kw)
        with pytest.raises(ValueError, match=match):
            mod.linear_plan(**args)
