"""slt_linear on every backend available here against the pure-PyTorch reference."""

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
    key, fkey = p.key, p.freeze_key
    if fmt == "frozen":
        args = (x, p.free_bits, p.offsets, bias, key.k0, key.k1, fkey.k0, fkey.k1, 37, p.dist.code, p.scale,
                p.prune_threshold, p.lock_threshold, "auto")
        op = _ops.linear_frozen
    else:
        args = (x, p.planes, p.coat_scales, bias, key.k0, key.k1, 37, p.dist.code, p.scale, "auto")
        op = _ops.linear_planes
    torch.library.opcheck(op, args)


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
def test_direct_path_only_without_autograd(fmt, monkeypatch):
    """Without autograd, slt_linear skips the torch op (same backend, bit-identical result);
    with an input that requires grad it goes through the op, so backward still works."""
    p = make_packed(fmt, 12, 40, 5, "signed_constant")
    x, bias = torch.randn(3, 40), torch.randn(12)
    name = "linear_frozen" if fmt == "frozen" else "linear_planes"
    real, op_calls = getattr(_ops, name), []
    monkeypatch.setattr(_ops, name, lambda *a: op_calls.append(1) or real(*a))
    y_direct = slt_linear(x, p, bias)
    assert not op_calls
    xg = x.clone().requires_grad_()
    y_op = slt_linear(xg, p, bias)
    assert len(op_calls) == 1
    assert torch.equal(y_direct, y_op.detach())
    y_op.sum().backward()
    torch.testing.assert_close(xg.grad, p.materialize().sum(0).expand(3, -1))
    with torch.no_grad():
        slt_linear(xg, p, bias)
    assert len(op_calls) == 1


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
def test_opcheck_materialize(fmt):
    p = make_packed(fmt, 6, 45, 8, "normal")
    key, fkey = p.key, p.freeze_key
    if fmt == "frozen":
        args = (p.free_bits, p.offsets, key.k0, key.k1, fkey.k0, fkey.k1, 45, p.dist.code, p.scale,
                p.prune_threshold, p.lock_threshold)
        torch.library.opcheck(_ops.materialize_frozen, args)
        assert torch.equal(_ops.materialize_frozen(*args), p.materialize())
    else:
        args = (p.planes, p.coat_scales, key.k0, key.k1, 45, p.dist.code, p.scale)
        torch.library.opcheck(_ops.materialize_planes, args)
        assert torch.equal(_ops.materialize_planes(*args), p.materialize())


@pytest.mark.parametrize("fmt", ["binary", "frozen"])
def test_opcheck_row_range(fmt):
    """The convolution-group form: output rows [row_begin, row_end) of the weight."""
    p = make_packed(fmt, 12, 37, 2, "signed_constant")
    x = torch.randn(3, 37, requires_grad=True)
    key, fkey = p.key, p.freeze_key
    if fmt == "frozen":
        args = (x, p.free_bits, p.offsets, None, key.k0, key.k1, fkey.k0, fkey.k1, 37, p.dist.code, p.scale,
                p.prune_threshold, p.lock_threshold, "auto", 4, 9)
        op = _ops.linear_frozen
    else:
        args = (x, p.planes, p.coat_scales, None, key.k0, key.k1, 37, p.dist.code, p.scale, "auto", 4, 9)
        op = _ops.linear_planes
    torch.library.opcheck(op, args)
    torch.testing.assert_close(op(*args), slt_linear_reference(x, p)[:, 4:9])
