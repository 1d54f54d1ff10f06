"""slt_linear on every backend available here against the pure-PyTorch reference."""

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packing import random_packed

from slt_hw import _ops, dispatch, slt_linear
from slt_hw.nn import SLTPackedLinear
from slt_hw.ops import slt_linear_reference

BACKENDS = [name for name, why in dispatch.reasons("cpu", "linear_planes").items() if not why]
# float32 GEMMs in other reduction orders; half-precision inputs round the output once more
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}


def make_packed(fmt, n, k, seed, dist):
    return random_packed(fmt, dist, n, k, seed=seed, coat_scales=(1.0, 0.5, 0.25))


def check(y, x, p, bias=None):
    want = slt_linear_reference(x, p, bias)
    assert y.dtype == x.dtype and y.shape == (*x.shape[:-1], p.out_features)
    rtol, atol = TOL[x.dtype]
    torch.testing.assert_close(y, want, rtol=rtol, atol=atol * max(1.0, float(want.abs().max()) if want.numel() else 1))


def test_backends_here():
    assert "reference" in BACKENDS
    # an op no backend implements (a typo) gets a reason from every backend, not a KeyError
    assert all("does not implement linear_binary" in " ".join(why)
               for why in dispatch.reasons("cpu", "linear_binary").values())


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["binary", "multicoat", "frozen"]), n=st.integers(1, 40),
       k=st.sampled_from([1, 7, 31, 32, 33, 100, 257, 1030]), batch=st.sampled_from([(0,), (1,), (5,), (2, 3)]),
       dist=st.sampled_from(["signed_constant", "uniform", "normal"]), seed=st.integers(0, 2**63 - 1),
       with_bias=st.booleans())
def test_parity_shapes(backend, fmt, n, k, batch, dist, seed, with_bias):
    p = make_packed(fmt, n, k, seed % 1000, dist)
    x = torch.randn(*batch, k, generator=torch.Generator().manual_seed(seed % 997))
    bias = torch.randn(n) if with_bias else None
    check(slt_linear(x, p, bias, backend=backend), x, p, bias)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", ["binary", "multicoat", "frozen"])
def test_dtypes(backend, dtype, fmt):
    p = make_packed(fmt, 24, 70, 3, "signed_constant")
    x = torch.randn(4, 70).to(dtype)
    bias = torch.randn(24, dtype=dtype)
    check(slt_linear(x, p, bias, backend=backend), x, p, bias)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_and_strided_input(backend):
    p = make_packed("binary", 16, 45, 0, "uniform")
    base = torch.randn(6, 90)
    for x in (base[:, ::2], base.t()[:45].t(), torch.randn(45, 6).t()):
        assert not x.is_contiguous()
        check(slt_linear(x, p, backend=backend), x, p)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_one_and_empty(backend):
    p = make_packed("frozen", 9, 33, 1, "normal")
    for shape in [(1, 33), (0, 33), (33,), (3, 0, 33)]:
        x = torch.randn(shape)
        check(slt_linear(x, p, backend=backend), x, p)


def test_env_var_selects_backend(monkeypatch):
    p = make_packed("binary", 8, 40, 0, "signed_constant")
    monkeypatch.setenv("SLT_HW_BACKEND", "reference")
    assert dispatch.select("linear_planes", torch.device("cpu")).name == "reference"
    x = torch.randn(2, 40)
    check(slt_linear(x, p), x, p)


def test_automatic_choice_prefers_native_on_cpu():
    want = "cpp" if "cpp" in BACKENDS else "reference"
    assert dispatch.select("linear_planes", torch.device("cpu")).name == want


@pytest.mark.parametrize("fmt", ["binary", "multicoat", "frozen"])
def test_opcheck(fmt):
    p = make_packed(fmt, 12, 37, 2, "uniform")
    x = torch.randn(3, 37, requires_grad=True)
    bias = torch.randn(12, requires_grad=True)
    op, w = _ops.weight_args(p)
    torch.library.opcheck(getattr(_ops, f"linear_{op}"), (x, bias, *w, "auto"))


@pytest.mark.parametrize("fmt", ["binary", "frozen"])
def test_gradients_match_reference(fmt):
    p = make_packed(fmt, 10, 50, 4, "signed_constant")
    x = torch.randn(3, 50, requires_grad=True)
    bias = torch.randn(10, requires_grad=True)
    slt_linear(x, p, bias).square().sum().backward()
    x2, b2 = x.detach().clone().requires_grad_(), bias.detach().clone().requires_grad_()
    torch.nn.functional.linear(x2, p.materialize(), b2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(bias.grad, b2.grad)


@pytest.mark.parametrize("fmt", ["binary", "frozen"])
@pytest.mark.parametrize("via", ["function", "module"])
def test_direct_path_only_without_autograd(fmt, via, monkeypatch):
    """Without autograd, slt_linear and SLTPackedLinear skip the torch op (same backend,
    bit-identical result); with an input that requires grad they go through the op, so backward
    still works."""
    p = make_packed(fmt, 12, 40, 5, "signed_constant")
    x, bias = torch.randn(3, 40), torch.randn(12)
    layer = SLTPackedLinear(p, bias)

    def run(t):
        return slt_linear(t, p, bias) if via == "function" else layer(t)

    name = "linear_frozen" if fmt == "frozen" else "linear_planes"
    real, op_calls = getattr(_ops, name), []
    monkeypatch.setattr(_ops, name, lambda *a: op_calls.append(1) or real(*a))
    y_direct = run(x)
    assert not op_calls
    xg = x.clone().requires_grad_()
    y_op = run(xg)
    assert len(op_calls) == 1
    assert torch.equal(y_direct, y_op.detach())
    y_op.sum().backward()
    torch.testing.assert_close(xg.grad, p.materialize().sum(0).expand(3, -1))
    with torch.no_grad():
        run(xg)
    assert len(op_calls) == 1


@pytest.mark.parametrize("fmt", ["binary", "multicoat", "frozen"])
def test_module_int8(fmt):
    """SLTPackedLinear(int8=True) is slt_linear_int8 bit for bit (whatever backend runs it), also
    under torch.compile; it needs signed-constant weights and a bool."""
    from slt_hw.ops import slt_linear_int8, slt_linear_int8_reference

    p, bias = make_packed(fmt, 20, 70, 5, "signed_constant"), torch.randn(20)
    layer = SLTPackedLinear(p, bias, int8=True)
    x = torch.randn(3, 70)
    y = layer(x)
    assert torch.equal(y, slt_linear_int8(x, p, bias))
    torch.testing.assert_close(y, slt_linear_int8_reference(x, p, bias), rtol=1e-5, atol=1e-4)
    assert not torch.equal(y, SLTPackedLinear(p, bias)(x))  # the float path: other bits
    assert "int8=True" in repr(layer)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), y)
    with pytest.raises(ValueError, match="int8: int8 activations need the signed_constant distribution, got uniform"):
        SLTPackedLinear(make_packed(fmt, 20, 70, 5, "uniform"), int8=True)
    with pytest.raises(TypeError, match="int8: expected a bool, got int"):
        SLTPackedLinear(p, int8=1)


def test_set_int8_activations_on_a_packed_model():
    """A converted and packed model: its signed-constant linears and convolutions switch to int8
    activations (the same bits as slt_conv2d_int8 / slt_linear_int8 layer by layer) and back;
    the layers of another distribution stay float."""
    import slt_hw
    from slt_hw.nn import SLTPackedLayer, set_int8_activations
    from slt_hw.ops import slt_conv2d_int8, slt_linear_int8

    nn = torch.nn
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 10))
    model = slt_hw.pack(slt_hw.convert(dense, seed=3, sparsity=0.5)).eval()
    x = torch.randn(2, 3, 8, 8)
    y_float = model(x)
    assert set_int8_activations(model) == 3
    layers = [m for m in model.modules() if isinstance(m, SLTPackedLayer)]
    assert [m.kind for m in layers] == ["conv2d", "linear", "linear"] and all(m.copies[0].int8 for m in layers)
    assert all(m.bias is None for m in layers)  # (convert drops biases: an SLT learns none)
    conv_w = dataclasses.replace(layers[0].copies[0].packed, shape=layers[0].weight_shape)  # the flattened copy in 4-D
    h = torch.relu(slt_linear_int8(model[1](slt_conv2d_int8(x, conv_w)), layers[1].copies[0].packed))
    assert torch.equal(model(x), slt_linear_int8(h, layers[2].copies[0].packed))
    assert float((model(x) - y_float).norm() / y_float.norm()) < 0.02
    assert set_int8_activations(model, enabled=False) == 3 and torch.equal(model(x), y_float)
    uniform = slt_hw.pack(slt_hw.convert(nn.Sequential(nn.Linear(8, 4)), seed=1, dist="uniform"))
    assert set_int8_activations(uniform) == 0
    with pytest.raises(TypeError, match="enabled: expected a bool"):
        set_int8_activations(model, enabled="yes")
    with pytest.raises(ValueError, match="int8: int8 activations need the signed_constant distribution"):
        next(m for m in uniform.modules() if isinstance(m, SLTPackedLinear)).int8 = True


@pytest.mark.parametrize("fmt", ["multicoat", "frozen"])
def test_module_under_torch_compile(fmt):
    torch._dynamo.reset()
    layer = SLTPackedLinear(make_packed(fmt, 20, 70, 5, "signed_constant"), bias=torch.randn(20))
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    for batch in (3, 8):
        x = torch.randn(batch, 70)
        torch.testing.assert_close(compiled(x), layer(x))
    check(layer(x), x, layer.packed, layer.bias.detach())


def test_functional_op_under_torch_compile_inductor():
    torch._dynamo.reset()
    layer = SLTPackedLinear(make_packed("binary", 16, 40, 6, "uniform"))
    compiled = torch.compile(lambda x: torch.relu(layer(x)) * 2, fullgraph=True)
    x = torch.randn(5, 40)
    torch.testing.assert_close(compiled(x), torch.relu(layer(x)) * 2)


def test_module_state_dict_and_move():
    layer = SLTPackedLinear(make_packed("frozen", 12, 40, 7, "normal"))
    sd = layer.state_dict()
    assert set(sd) == {"free_bits"}  # offsets are derived from the seed, never stored
    layer2 = SLTPackedLinear(make_packed("frozen", 12, 40, 7, "normal"))
    layer2.load_state_dict(sd)
    x = torch.randn(2, 40)
    torch.testing.assert_close(layer2(x), layer(x))
    layer.to("cpu")
    assert layer.packed.free_bits is layer.free_bits


@pytest.mark.parametrize("fmt", ["binary", "frozen"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_materialize(fmt, backend):
    """Materialise on every backend that has it is the reference's weight, bit for bit (no sums)."""
    p = make_packed(fmt, 6, 45, 8, "normal")
    op, w = _ops.weight_args(p)
    op = getattr(_ops, f"materialize_{op}")
    torch.library.opcheck(op, (*w, backend))
    assert torch.equal(op(*w, backend), p.materialize())
    assert torch.equal(op(*w, backend, 2, 5), p.materialize()[2:5])
    assert op(*w, backend, 3, 3).shape == (0, 45)


@pytest.mark.parametrize("fmt", ["binary", "frozen"])
def test_opcheck_row_range(fmt):
    """The convolution-group form: output rows [row_begin, row_end) of the weight."""
    p = make_packed(fmt, 12, 37, 2, "signed_constant")
    x = torch.randn(3, 37, requires_grad=True)
    op, w = _ops.weight_args(p)
    op = getattr(_ops, f"linear_{op}")
    args = (x, None, *w, "auto", 4, 9)
    torch.library.opcheck(op, args)
    torch.testing.assert_close(op(*args), slt_linear_reference(x, p)[:, 4:9])


def test_every_backend_implements_or_explains_every_op():
    for b in dispatch.backends():
        assert set(b.ops) | set(b.lacks) == set(dispatch.OPS), b.name
        assert all(why for why in b.lacks.values()), b.name
    assert set(dispatch.get("reference").ops) >= set(dispatch.OPS) - {"linear_grouped"}
    with pytest.raises(ValueError, match="every op in dispatch.OPS"):
        dispatch.register(dispatch.Backend("half", 1, "", lambda d: [], {"linear_planes": print}))


@pytest.mark.parametrize("op", ["materialize_planes", "linear_int8_planes", "attention"])
def test_ops_other_than_linear_dispatch_like_it(op, monkeypatch):
    """Materialise, int8 and attention go through the registry: automatic choice, forced
    backends, and the backend's reason where it lacks the op."""
    assert dispatch.automatic(op, torch.device("cpu")).name == ("cpp" if "cpp" in BACKENDS else "reference")
    with pytest.raises(RuntimeError, match=f"backend 'cuda' cannot run {op} on cpu"):
        dispatch.select(op, torch.device("cpu"), "cuda")
    called = []
    b = dispatch.get("reference")
    monkeypatch.setitem(b.ops, op, lambda *a: called.append(op) or torch.zeros(0))
    p = make_packed("binary", 4, 40, 0, "signed_constant")
    _, w = _ops.weight_args(p)
    q = torch.randn(1, 2, 1, 8)
    args = {"materialize_planes": (*w, "reference"), "linear_int8_planes": (torch.randn(2, 40), None, *w, "reference"),
            "attention": (q, q, q, None, None, False, 1.0, "reference")}[op]
    _ops.call(op, *args)
    assert called == [op]
