"""Fuzz every backend that can run here against docs/rng.md in float64 (tests/spec_numpy.py: no
slt_hw code). Per case: a format, distribution, seed, name, scale (or the default), coat scales
that are not powers of two, an activation dtype and stride pattern, a batch of 0, 1, odd or
blocked size, a bias or none, and gradients. The materialised weight must be bit-identical to
the spec's; the linear and its gradients within a float32 error bound derived per element."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import spec_numpy as spec
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import _ops, dispatch, pack_binary, pack_frozen, pack_multicoat, slt_linear

EXAMPLES = int(os.environ.get("SLT_HW_FUZZ_EXAMPLES", "200"))
NAMES = ["fc", "blocks.0.attn.q_proj", "é", "層.1", "x" * 200]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
EPS = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
TINY = {torch.float32: 2.0**-149, torch.float16: 2.0**-24, torch.bfloat16: 2.0**-133}  # smallest subnormals
TILE_CAST = {"triton", "cuda", "cupy"}  # their half-precision GEMMs cast the weight tile to x's dtype


def _runnable() -> list[tuple[str, str]]:
    """(backend, device) for every backend that can run slt_linear here."""
    out = []
    for be in dispatch.backends():
        for dev in ("cpu", "cuda"):
            if dev == "cuda" and not torch.cuda.is_available():
                continue
            if not be.why_not("linear_planes", torch.device(dev)):
                out.append((be.name, dev))
                break
    return out


BACKENDS = _runnable()


def _f32(v: float) -> float:
    return float(np.float32(v))


@st.composite
def cases(draw):
    fmt = draw(st.sampled_from(["binary", "multicoat", "frozen"]))
    c = {"fmt": fmt, "dist": draw(st.sampled_from(["signed_constant", "uniform", "normal"])),
         "n": draw(st.integers(1, 24)), "k": draw(st.sampled_from([1, 5, 31, 32, 33, 64, 95, 1030])),
         "m": draw(st.sampled_from([0, 1, 2, 3, 5, 9, 17])), "seed": draw(st.integers(0, 2**63 - 1)),
         "name": draw(st.sampled_from(NAMES)), "dtype": draw(st.sampled_from(DTYPES)),
         "stride": draw(st.sampled_from(["contiguous", "3d", "sliced", "transposed", "expanded"])),
         "bias": draw(st.sampled_from([None, "same", "float32"])), "grad": draw(st.booleans()),
         "scale": draw(st.one_of(st.none(), st.floats(1e-3, 4.0))), "data": draw(st.integers(0, 2**32 - 1))}
    if fmt == "multicoat":
        c["coat_scales"] = draw(st.lists(st.floats(-2.0, 2.0, width=32).filter(lambda g: g != 0), min_size=1,
                                         max_size=4))
    if fmt == "frozen":
        c["p_prune"], c["p_lock"] = draw(st.floats(0, 0.6)), draw(st.floats(0, 0.4))
    return c


def _default_scale(dist: str, k: int) -> float:
    gain = math.sqrt(2.0)  # docs/rng.md §6, in binary64, rounded once
    return _f32(gain * math.sqrt(3.0 / k) if dist == "uniform" else gain / math.sqrt(k))


def _packed_and_spec(c, device):
    """The packed weight (slt_hw) and the effective weight (the spec), from one random mask."""
    n, k, rng = c["n"], c["k"], np.random.default_rng(c["data"])
    kw = {"seed": c["seed"], "name": c["name"], "dist": c["dist"], "scale": c["scale"]}
    scale = _default_scale(c["dist"], k) if c["scale"] is None else _f32(c["scale"])
    w0 = spec.weights(c["seed"], c["name"], n, k, c["dist"], np.float32(scale))
    coats = np.ones(1, np.float32)
    if c["fmt"] == "multicoat":
        coats = np.array(c["coat_scales"], np.float32)
        levels = rng.integers(0, len(coats) + 1, (n, k))
        p = pack_multicoat(torch.from_numpy(levels), len(coats), coat_scales=torch.from_numpy(coats), **kw)
    else:
        mask = rng.random((n, k)) < 0.5
        if c["fmt"] == "binary":
            p, levels = pack_binary(torch.from_numpy(mask), **kw), mask
        else:
            prune = math.floor(c["p_prune"] * 65536 + 0.5)
            lock = prune + math.floor(c["p_lock"] * 65536 + 0.5)
            p = pack_frozen(torch.from_numpy(mask), p_prune=c["p_prune"], p_lock=c["p_lock"], **kw)
            states = spec.freeze_states(c["seed"], c["name"], n, k, prune, lock)
            levels = np.where(states == 0, 0, np.where(states == 1, 1, mask))
    assert p.scale == scale
    return p.to(device), spec.effective(w0, levels, coats)


def _input(c, device):
    """x (m, k) in the case's dtype and stride pattern (3d: (1, m, k))."""
    m, k = c["m"], c["k"]
    base_shape, view = {"contiguous": ((m, k), lambda t: t), "3d": ((1, m, k), lambda t: t),
                        "sliced": ((m, 2 * k), lambda t: t[:, ::2]), "transposed": ((k, m), lambda t: t.t()),
                        "expanded": ((1, k), lambda t: t.expand(m, k))}[c["stride"]]
    base = torch.randn(base_shape, generator=torch.Generator().manual_seed(c["data"]))
    return view(base.to(device=device, dtype=c["dtype"]))


def _within(got: torch.Tensor, want: np.ndarray, magnitude: np.ndarray, eps: float, slack, what: str) -> None:
    """|got - want| <= 2·(eps·magnitude + slack) elementwise; slack covers underflow (subnormals)."""
    g = got.detach().to(torch.float64).cpu().numpy()
    assert g.shape == want.shape, (what, g.shape, want.shape)
    bound = 2 * (eps * magnitude + slack)
    bad = ~(np.abs(g - want) <= bound)
    assert not bad.any(), f"{what}: {int(bad.sum())} of {bad.size} outside the bound; first: got " \
                          f"{g[bad][0]!r}, want {want[bad][0]!r} ± {bound[bad][0]!r}"


def _check_case(c, backend, device):
    p, w_eff = _packed_and_spec(c, device)
    fmt, w = _ops.weight_args(p)
    mat = _ops.call(f"materialize_{fmt}", *w, backend, 0, None).cpu()
    assert torch.equal(mat.view(torch.int32), torch.from_numpy(w_eff).view(torch.int32)), "materialised weight"
    if c["dtype"] == torch.float32:  # one-hot rows read the fused kernel's weights out exactly
        cols = np.random.default_rng(c["data"]).integers(0, c["k"], max(c["m"], 1))
        y1 = slt_linear(torch.eye(c["k"], device=device)[torch.from_numpy(cols)], p, backend=backend).cpu()
        # equal values: the bits of every non-zero weight; the sign of a zero sum is not the contract's
        # (kernels that apply the scale after the sum give -0.0 for a negative scale)
        assert torch.equal(y1, torch.from_numpy(np.ascontiguousarray(w_eff[:, cols].T))), "one-hot rows"
    x = _input(c, device)
    dtype = c["dtype"]
    bias = None if c["bias"] is None else torch.randn(c["n"], generator=torch.Generator().manual_seed(c["data"] + 1))
    if bias is not None:
        bias = bias.to(device=device, dtype=dtype if c["bias"] == "same" else torch.float32)
    if backend == "triton" and device == "cpu" and dtype == torch.bfloat16 and c["m"] > 8:
        with pytest.raises(TypeError, match="x: the triton backend cannot compute bfloat16"):  # the interpreter's dot
            slt_linear(x, p, bias, backend=backend)
        return
    if c["grad"]:
        x = x.detach().requires_grad_(True)
        bias = None if bias is None else bias.detach().requires_grad_(True)
    y = slt_linear(x, p, bias, backend=backend)
    assert y.dtype == dtype and y.shape == (*x.shape[:-1], c["n"])
    x64 = x.detach().to(torch.float64).cpu().numpy().reshape(-1, c["k"])
    b64 = None if bias is None else bias.detach().to(torch.float64).cpu().numpy()
    want = spec.linear64(x64, w_eff, b64)
    mag = np.abs(x64) @ np.abs(w_eff.astype(np.float64)).T + (0 if b64 is None else np.abs(b64))
    eps_w = EPS[dtype] if backend in TILE_CAST and dtype != torch.float32 else 0.0
    eps = (c["k"] + 2) * EPS[torch.float32] + eps_w + EPS[dtype]
    slack = TINY[dtype] * (1 + np.abs(x64).sum(1, keepdims=True))
    if backend == "triton" and device == "cpu" and dtype == torch.bfloat16:
        # Triton's interpreter rounds float32 to bfloat16 wrongly below bfloat16's smallest normal
        # (2^-126): 1e-41 -> 8.7e-39, 2.2e-40 -> 2.1e-39 (its stores, not the kernel's sums)
        slack = np.maximum(slack, 2.0**-126)
    _within(y.reshape(-1, c["n"]), want, mag, eps, slack, "y")
    if not c["grad"]:
        return
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(c["data"] + 2)).to(device=device, dtype=dtype)
    y.backward(gy)
    g64 = gy.to(torch.float64).cpu().numpy().reshape(-1, c["n"])
    w64 = w_eff.astype(np.float64)
    eps_g = (c["n"] + 2) * EPS[torch.float32] + EPS[dtype]
    # underflow as in y: every product with a subnormal weight rounds to the subnormal grid
    slack_g = TINY[dtype] * (1 + np.abs(g64).sum(1, keepdims=True))
    _within(x.grad.reshape(-1, c["k"]), g64 @ w64, np.abs(g64) @ np.abs(w64), eps_g, slack_g, "grad x")
    if bias is not None:
        eps_b = (g64.shape[0] + 2) * EPS[torch.float32] + EPS[bias.dtype]
        _within(bias.grad, g64.sum(0), np.abs(g64).sum(0), eps_b, TINY[bias.dtype], "grad bias")


@pytest.mark.parametrize(("backend", "device"), BACKENDS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(c=cases())
def test_backend_matches_the_spec(backend, device, c):
    _check_case(c, backend, device)


def test_fuzz_covers_the_backends_this_machine_has():
    names = {b for b, _ in BACKENDS}
    assert "reference" in names
    if os.environ.get("SLT_HW_REQUIRE_CPP") == "1":
        assert "cpp" in names
    if os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available():
        assert "triton" in names
