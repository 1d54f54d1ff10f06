"""slt_mha's composed path (slt_linear on the CPU backend + SDPA) against the reference,
prefill vs decode with a KV cache, the packed SLTMultiheadAttention / transformer block, and
bad input. The fused Triton path is tested in test_triton_mha.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from packing import random_packed

import slt_hw
from slt_hw.mha import KVCache, slt_mha, slt_mha_reference
from slt_hw.nn.attention import SLTMultiheadAttention, SLTTransformerBlock


def _pw(fmt, dist, n, k, name, seed=11):
    return random_packed(fmt, dist, n, k, seed=seed, name=name, coat_scales=(1.0, 0.5))


def weights(fmt="binary", dist="signed_constant", e=24, h=2, dq=8, dv=8, out=None, e_kv=None):
    e_kv = e_kv or e
    return (_pw(fmt, dist, h * dq, e, "q"), _pw(fmt, dist, h * dq, e_kv, "k"), _pw(fmt, dist, h * dv, e_kv, "v"),
            _pw(fmt, dist, out or e, h * dv, "o"))


def _close(got, want, tol=1e-4):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.isfinite(got).all()
    scale = want.abs().max().clamp_min(1.0) if want.numel() else 1.0
    assert (got.float() - want.float()).abs().max() <= tol * scale if want.numel() else True


def _kpm(b, s, seed=0, p=0.3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, s, generator=g) < p


@settings(max_examples=25, deadline=None)
@given(h=st.sampled_from([1, 2, 4, 8]), dq=st.sampled_from([16, 24, 32]), dv=st.sampled_from([16, 40]),
       b=st.integers(0, 3), t=st.integers(1, 21), causal=st.booleans(), padded=st.booleans(),
       fmt=st.sampled_from(["binary", "multicoat", "frozen"]), dist=st.sampled_from(["signed_constant", "uniform",
                                                                                      "normal"]))
def test_composed_matches_reference(h, dq, dv, b, t, causal, padded, fmt, dist):
    e = 37  # not a multiple of 32
    q, k, v, o = weights(fmt, dist, e, h, dq, dv)
    x = torch.randn(b, t, e)
    kpm = _kpm(b, t) if padded else None
    with torch.no_grad():
        want = slt_mha_reference(x, q, k, v, o, h, causal=causal, key_padding_mask=kpm)
        got = slt_mha(x, q, k, v, o, h, causal=causal, key_padding_mask=kpm)  # auto: cpp projections + SDPA
    _close(got, want)


def test_noncontiguous_input_bias_and_cross_attention():
    e, h = 24, 3
    q, k, v, o = weights(e=e, h=h, dq=8, dv=16, out=10, e_kv=20)
    x = torch.randn(7, 2, e).transpose(0, 1)  # (2, 7, e), non-contiguous
    mem = torch.randn(2, 9, 20)
    bias = (torch.randn(24), None, torch.randn(48), torch.randn(10))
    with torch.no_grad():
        want = slt_mha_reference(x, q, k, v, o, h, key=mem, value=mem, bias=bias)
        got = slt_mha(x, q, k, v, o, h, key=mem, value=mem, bias=bias)
    assert got.shape == (2, 7, 10)
    _close(got, want)


def test_fully_masked_rows_are_zero_not_nan():
    q, k, v, o = weights()
    x = torch.randn(2, 5, 24)
    kpm = torch.zeros(2, 5, dtype=torch.bool)
    kpm[1] = True
    with torch.no_grad():
        y = slt_mha(x, q, k, v, o, 2, key_padding_mask=kpm)
        r = slt_mha_reference(x, q, k, v, o, 2, key_padding_mask=kpm)
    assert torch.isfinite(y).all()
    # batch 1 has no key: its attention output is 0, so the output is o's response to zeros
    assert torch.equal(y[1], torch.zeros_like(y[1]))
    _close(y, r)


def test_attn_mask_bool_and_float():
    q, k, v, o = weights()
    x = torch.randn(2, 6, 24)
    bmask = torch.rand(6, 6, generator=torch.Generator().manual_seed(1)) < 0.3
    fmask = torch.randn(6, 6)
    with torch.no_grad():
        for m in (bmask, fmask):
            _close(slt_mha(x, q, k, v, o, 2, attn_mask=m), slt_mha_reference(x, q, k, v, o, 2, attn_mask=m))


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_prefill_then_decode_equals_one_prefill(backend):
    h, e = 2, 24
    q, k, v, o = weights(e=e, h=h, dq=16, dv=8)
    x = torch.randn(3, 11, e)
    kpm = _kpm(3, 11, seed=3)
    with torch.no_grad():
        whole = slt_mha(x, q, k, v, o, h, causal=True, key_padding_mask=kpm, backend=backend)
        cache = KVCache(3, h, 16, 16, 8)
        parts = [slt_mha(x[:, :6], q, k, v, o, h, causal=True, key_padding_mask=kpm[:, :6], cache=cache,
                         backend=backend)]
        for i in range(6, 11):
            parts.append(slt_mha(x[:, i:i + 1], q, k, v, o, h, causal=True, key_padding_mask=kpm[:, i:i + 1],
                                 cache=cache, backend=backend))
    assert cache.length == 11
    _close(torch.cat(parts, 1), whole)
    cache.reset()
    assert cache.length == 0


def _random_scores(module, biases=False):
    """module with its supermask scores (and, with biases, its biases) drawn at random."""
    for m in module.modules():
        if hasattr(m, "scores"):
            m.scores.data.normal_()
        if biases and getattr(m, "bias", None) is not None:
            m.bias.data.normal_()
    return module


def _block(**kw):
    torch.manual_seed(0)
    return _random_scores(SLTTransformerBlock(24, 2, 40, seed=5, name="blk", causal=True, **kw)).eval()


@pytest.mark.parametrize("kw", [{}, {"num_coats": 2}, {"p_prune": 0.2, "p_lock": 0.2}])
def test_packed_block_uses_slt_mha_and_matches_search_form(kw, monkeypatch):
    blk = _block(**kw)
    packed = slt_hw.pack(blk)
    x = torch.randn(2, 9, 24)
    calls = []
    import slt_hw.nn.attention as attn_mod

    real = attn_mod._mha  # (slt_mha's body, with the layers' own calls for the projections)
    monkeypatch.setattr(attn_mod, "_mha", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        want = blk(x)
        got = packed(x)
    assert calls, "the packed attention did not go through slt_mha"
    _close(got, want, 1e-4)
    # decode through the packed block with its cache
    with torch.no_grad():
        cache = packed.new_cache(2, 12)
        steps = [packed(x[:, :4], cache=cache)] + [packed(x[:, i:i + 1], cache=cache) for i in range(4, 9)]
    _close(torch.cat(steps, 1), got, 1e-4)


def test_search_form_decode_and_need_weights():
    mha = SLTMultiheadAttention(24, 4, seed=1, name="a", qk_dim=32, v_dim=16).eval()
    x = torch.randn(2, 7, 24)
    with torch.no_grad():
        whole, w = mha(x, x, x, is_causal=True, need_weights=True)
        cache = mha.new_cache(2, 7)
        steps = [mha(x[:, i:i + 1], is_causal=True, cache=cache)[0] for i in range(7)]
    assert w.shape == (2, 7, 7)
    _close(torch.cat(steps, 1), whole)
    packed = slt_hw.pack(mha)
    with torch.no_grad():
        pw_out, pw_w = packed(x, x, x, is_causal=True, need_weights=True)  # math path: weights returned
    _close(pw_out, whole)
    assert torch.allclose(pw_w, w, atol=1e-5)


def test_batch_first_false_and_qk_init_scale():
    mha = SLTMultiheadAttention(16, 2, seed=1, name="a", batch_first=False, qk_init_scale=2.0).eval()
    packed = slt_hw.pack(mha)
    x = torch.randn(5, 3, 16)  # (T, B, E)
    with torch.no_grad():
        _close(packed(x, x, x)[0], mha(x, x, x)[0])


def test_checkpoint_roundtrip_keeps_fused_attention(tmp_path):
    blk = _block()
    packed = slt_hw.pack(blk)
    slt_hw.save(packed, tmp_path / "blk.slt")
    loaded = slt_hw.load(tmp_path / "blk.slt")
    x = torch.randn(1, 6, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), packed(x))
    assert loaded.attn._packed_weights() is not None


# ---------------------------------------------------------------------- bad input


def test_requires_grad_is_a_clear_error():
    q, k, v, o = weights()
    x = torch.randn(1, 3, 24, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference-only"):
        slt_mha(x, q, k, v, o, 2)
    with torch.no_grad():
        slt_mha(x, q, k, v, o, 2)  # fine without grad


def test_bad_inputs():
    q, k, v, o = weights()
    x = torch.randn(2, 4, 24)
    with torch.no_grad():
        with pytest.raises(ValueError, match="x: expected"):
            slt_mha(x[0], q, k, v, o, 2)
        with pytest.raises(TypeError, match="x: expected dtype"):
            slt_mha(x.to(torch.float64), q, k, v, o, 2)
        with pytest.raises(ValueError, match="num_heads"):
            slt_mha(x, q, k, v, o, 0)
        with pytest.raises(ValueError, match="divisible by num_heads=3"):
            slt_mha(x, q, k, v, o, 3)
        with pytest.raises(ValueError, match="o: in_features"):
            slt_mha(x, q, k, v, q, 2)
        with pytest.raises(ValueError, match="q: in_features"):
            slt_mha(torch.randn(2, 4, 20), q, k, v, o, 2)
        with pytest.raises(ValueError, match="key_padding_mask"):
            slt_mha(x, q, k, v, o, 2, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
        with pytest.raises(ValueError, match="key_padding_mask"):
            slt_mha(x, q, k, v, o, 2, key_padding_mask=torch.zeros(2, 4))
        with pytest.raises(ValueError, match="attn_mask"):
            slt_mha(x, q, k, v, o, 2, attn_mask=torch.zeros(3, 3, dtype=torch.bool))
        with pytest.raises(ValueError, match="bias"):
            slt_mha(x, q, k, v, o, 2, bias=(torch.zeros(3), None, None, None))
        with pytest.raises(TypeError, match="q: expected a 2-D"):
            slt_mha(x, "q", k, v, o, 2)
        with pytest.raises(ValueError, match="backend"):
            slt_mha(x, q, k, v, o, 2, backend="nope")


def test_attn_mask_on_triton_runs_sdpa():
    """The flash kernel takes causal and key-padding masks only: with an arbitrary attn_mask the
    triton backend's attention is torch's SDPA (its projections stay Triton's)."""
    q, k, v, o = weights()
    x = torch.randn(2, 4, 24)
    if slt_hw.dispatch.get("triton").not_supported_reasons(x.device):  # needs a GPU or the interpreter
        pytest.skip("triton cannot run here")
    mask = torch.tensor([[False, True, False, False]] * 4)
    with torch.no_grad():
        got = slt_mha(x, q, k, v, o, 2, attn_mask=mask, causal=True, backend="triton")
        torch.testing.assert_close(got, slt_mha_reference(x, q, k, v, o, 2, attn_mask=mask, causal=True),
                                   rtol=1e-4, atol=1e-4)


def test_cache_errors():
    q, k, v, o = weights(dq=8, dv=8)
    x = torch.randn(2, 4, 24)
    with torch.no_grad():
        cache = KVCache(2, 2, 5, 8)
        slt_mha(x, q, k, v, o, 2, cache=cache)
        with pytest.raises(ValueError, match="cache: full"):
            slt_mha(x, q, k, v, o, 2, cache=cache)
        with pytest.raises(ValueError, match="cache: holds"):
            slt_mha(x.to(torch.bfloat16), q, k, v, o, 2, cache=KVCache(2, 2, 5, 8))
        with pytest.raises(ValueError, match="does not fit"):
            slt_mha(x, q, k, v, o, 2, cache=KVCache(3, 2, 5, 8))
        with pytest.raises(ValueError, match="self-attention"):
            slt_mha(x, q, k, v, o, 2, key=torch.randn(2, 4, 24), cache=KVCache(2, 2, 5, 8))
        with pytest.raises(TypeError, match="cache"):
            slt_mha(x, q, k, v, o, 2, cache={})
    with pytest.raises(ValueError, match="max_len"):
        KVCache(1, 1, 0, 8)
    with pytest.raises(TypeError, match="dtype"):
        KVCache(1, 1, 4, 8, dtype=torch.int32)


# ---------------------------------------------------------------------- int8 projections


@pytest.mark.parametrize("fmt", ["binary", "multicoat", "frozen"])
def test_int8_projections_match_the_int8_reference(fmt):
    """slt_mha(int8=True): the four projections through slt_linear_int8 (the cpp kernel against
    the reference backend's quantize-then-float linear), attention in float; close to the float
    attention too. Causal with padding, biases, cross-attention."""
    e, h = 40, 2
    x, mem = torch.randn(3, 5, e), torch.randn(3, 7, 24)
    cross = weights(fmt, "signed_constant", e, h, 16, 16, e_kv=24)
    bias = [torch.randn(p.out_features) for p in cross]
    with torch.no_grad():
        for w, kw in ((weights(fmt, "signed_constant", e, h, 16, 16), {"causal": True, "key_padding_mask": _kpm(3, 5)}),
                      (cross, {"key": mem, "value": mem, "bias": bias})):
            want = slt_mha_reference(x, *w, h, int8=True, **kw)
            _close(slt_mha(x, *w, h, int8=True, backend="cpp", **kw), want)
            flt = slt_mha_reference(x, *w, h, **kw)
            assert float((want - flt).norm() / flt.norm()) < 0.03


def test_int8_needs_signed_constant_weights_and_a_bool():
    q, k, v, o = weights(dist="uniform")
    x = torch.randn(1, 3, 24)
    with torch.no_grad(), pytest.raises(ValueError, match="dist: int8 activations need the signed_constant"):
        slt_mha(x, q, k, v, o, 2, int8=True)
    with torch.no_grad(), pytest.raises(TypeError, match="int8: expected a bool, got int"):
        slt_mha(x, *weights(), 2, int8=1)


def test_set_int8_activations_switches_attention_projections_together():
    """A packed transformer block: its attention's four projections switch with its MLP's linears
    (the block then equals slt_mha(int8=True) and the int8 linears), and back; projections set
    apart are refused."""
    from slt_hw.nn import set_int8_activations

    packed = slt_hw.pack(_block()).eval()
    x = torch.randn(2, 6, 24)
    with torch.no_grad():
        y_float = packed(x)
        n = set_int8_activations(packed)
        lins = [m for m in packed.modules() if isinstance(m, slt_hw.nn.SLTPackedLinear)]
        assert n == len(lins) and all(m.int8 for m in lins)
        (q, k, v, o), bias, _, int8 = packed.attn._packed_weights()
        assert int8
        y8 = packed(x)
        assert not torch.equal(y8, y_float) and float((y8 - y_float).norm() / y_float.norm()) < 0.05
        attn = packed.attn(x)[0]
        assert torch.equal(attn, slt_mha(x, q, k, v, o, packed.attn.num_heads, bias=bias, int8=True,
                                         softmax_scale=packed.attn.head_dim ** -0.5))
        packed.attn.q_proj.copies[0].int8 = False
        with pytest.raises(ValueError, match=r"int8: the four projections of an attention layer run int8 "
                                             r"activations together"):
            packed(x)
        assert set_int8_activations(packed, enabled=False) == n and torch.equal(packed(x), y_float)


@pytest.mark.skipif(bool(slt_hw.dispatch.reasons("cpu", "linear_planes").get("cpp", "absent")),
                    reason="slt_hw._C not built")
@pytest.mark.parametrize("int8", [False, True])
def test_packed_attention_runs_its_layers_prepared_calls_with_slt_mhas_bits(int8, monkeypatch):
    """The packed layer's projections are its packed layers' calls (prepared on the CPU from the
    second on, without the op layer's Python): slt_mha's bits at every decode step, biases
    included; projections set to different backends are refused."""
    from slt_hw.backends import cpu
    from slt_hw.nn import set_int8_activations

    torch.manual_seed(0)
    mha = _random_scores(SLTMultiheadAttention(40, 2, seed=3, name="a", bias=True, qk_dim=48, v_dim=32), biases=True)
    packed = slt_hw.pack(mha.eval(), backend="cpp").eval()
    if int8:
        set_int8_activations(packed)
    (q, k, v, o), bias, _, _ = packed._packed_weights()
    runs = []
    real_call = cpu.PreparedLinear.__call__
    monkeypatch.setattr(cpu.PreparedLinear, "__call__", lambda self, *a: runs.append(1) or real_call(self, *a))
    x = torch.randn(2, 6, 40)
    with torch.no_grad():
        cache, ref = packed.new_cache(2, 6), KVCache(2, 2, 6, 24, 16)
        for i in range(6):  # (the last step's input a strided slice: through the op)
            xi = x[:, i:i + 1] if i == 5 else x[:, i:i + 1].contiguous()
            got = packed(xi, cache=cache)[0]
            want = slt_mha(xi, q, k, v, o, 2, bias=bias, cache=ref, softmax_scale=24 ** -0.5, backend="cpp",
                           int8=int8)
            assert torch.equal(got, want), i
            if i == 4:
                layers = (packed.q_proj, packed.k_proj, packed.v_proj, packed.out_proj)
                assert len(runs) >= 8 and all(m.copies[0]._prepared.call is not None for m in layers)
        mem = torch.randn(2, 7, 40)  # cross-attention: q from x, k and v from mem, each through its layer
        for _ in range(3):
            got = packed(x, mem, mem)[0]
            assert torch.equal(got, slt_mha(x, q, k, v, o, 2, key=mem, value=mem, bias=bias,
                                            softmax_scale=24 ** -0.5, backend="cpp", int8=int8))
    packed.v_proj.copies[0].backend = "reference"
    with torch.no_grad(), pytest.raises(ValueError, match=r"backend: the four projections of an attention layer "
                                                          r"run on one backend"):
        packed(x)
