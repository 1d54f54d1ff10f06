"""The cpp backend's attention op: decode steps (float32 or bfloat16, up to
ATTENTION_DECODE_QUERIES queries) by the C++ kernel (csrc/cpu/attention.cpp), the
rest by torch's SDPA; both against the reference (the softmax written out in float32) on many
shapes: keys in a KV cache's head-major views, padding (rows with no key left: zeros), causal
with T < S, bool and float attn_masks, odd head dims, empty batches."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import _ops, dispatch
from slt_hw.backends import composite, cpu
from slt_hw.reference.attention import attention as reference

pytestmark = pytest.mark.skipif(bool(dispatch.reasons("cpu", "attention").get("cpp", "absent")),
                                reason="slt_hw._C not built")


def _kernel_runs(monkeypatch) -> list:
    """Counts the calls that fall back to SDPA."""
    fallbacks = []
    real = composite.sdpa_attention
    monkeypatch.setattr(composite, "sdpa_attention", lambda *a: fallbacks.append(1) or real(*a))
    return fallbacks


def _same_strides(x, dtype):
    """x in dtype, with x's strides (a view of a buffer laid out as x's)."""
    out = torch.empty_strided(x.shape, x.stride(), dtype=dtype) if x.numel() else x.to(dtype)
    return out.copy_(x) if x.numel() else out


def _heads(b, s, h, d, cache, gen):
    """(B, S, H, D): contiguous, or a KVCache-like head-major view of a longer buffer."""
    if not cache:
        return torch.randn(b, s, h, d, generator=gen)
    return torch.randn(b, h, s + 3, d, generator=gen).transpose(1, 2)[:, :s]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(b=st.integers(0, 3), t=st.integers(1, 4), extra=st.integers(0, 40), h=st.sampled_from([1, 2, 5]),
       d=st.sampled_from([1, 7, 16, 33, 128]), dv=st.sampled_from([1, 12, 40]), causal=st.booleans(),
       padded=st.sampled_from([None, 0.3, 1.0]), cache=st.booleans(), q_strided=st.booleans(),
       bf16=st.booleans(), mask=st.sampled_from([None, "bool", "float", "float64"]), seed=st.integers(0, 2**16))
def test_decode_kernel_matches_the_reference(b, t, extra, h, d, dv, causal, padded, cache, q_strided, bf16, mask,
                                             seed, monkeypatch):
    fallbacks = _kernel_runs(monkeypatch)  # (patched again each example: the same wrapper's effect)
    gen = torch.Generator().manual_seed(seed)
    s = t + extra
    q = torch.randn(b, h, t, d, generator=gen).transpose(1, 2) if q_strided else torch.randn(b, t, h, d, generator=gen)
    k, v = _heads(b, s, h, d, cache, gen), _heads(b, s, h, dv, cache, gen)
    if bf16:  # (a bfloat16 cache: the same strides, half the bytes)
        q, k, v = (x.to(torch.bfloat16) if x.is_contiguous() else _same_strides(x, torch.bfloat16) for x in (q, k, v))
    kpm = None if padded is None else torch.rand(b, s, generator=gen) < padded
    am = None
    if mask == "bool":
        am = torch.rand(t, s, generator=gen) < 0.3
    elif mask is not None:  # (some keys at -inf: not allowed)
        am = torch.randn(t, s, generator=gen).masked_fill(torch.rand(t, s, generator=gen) < 0.2, float("-inf"))
        am = am.to(torch.float64 if mask == "float64" else torch.float32).t().contiguous().t()  # (strided too)
    scale = d ** -0.5
    got = cpu.attention(q, k, v, kpm, am, causal, scale)
    want = reference(q, k, v, kpm, am, causal, scale)  # (float32 sums of the same inputs)
    assert not fallbacks and got.shape == (b, t, h, dv) and got.dtype == q.dtype
    if bf16:  # float32 sums, then one rounding to bfloat16 (half an ulp: 2^-9 relative)
        torch.testing.assert_close(got.float(), want, rtol=2 ** -8, atol=1e-5)
    else:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if padded == 1.0:  # every key padded: zeros, not NaN
        assert torch.equal(got, torch.zeros_like(got))


def test_no_keys_left_gives_zeros_and_the_rest_matches(monkeypatch):
    """One query whose keys are all masked (causal and padding together) among others."""
    fallbacks = _kernel_runs(monkeypatch)
    gen = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(2, 3, 2, 8, generator=gen), torch.randn(2, 5, 2, 8, generator=gen), \
        torch.randn(2, 5, 2, 4, generator=gen)
    kpm = torch.tensor([[True, True, True, False, False], [False] * 5])
    got = cpu.attention(q, k, v, kpm, None, True, 0.5)  # batch 0, query 0 sees keys 0-2: all padded
    assert not fallbacks and torch.equal(got[0, 0], torch.zeros(2, 4)) and torch.isfinite(got).all()
    torch.testing.assert_close(got, reference(q, k, v, kpm, None, True, 0.5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["many_queries", "fp16", "grad", "strided_last_dim"])
def test_other_calls_go_to_sdpa(case, monkeypatch):
    fallbacks = _kernel_runs(monkeypatch)
    gen = torch.Generator().manual_seed(0)
    t = cpu._ext.require().ATTENTION_DECODE_QUERIES + 1 if case == "many_queries" else 2
    q, k, v = (torch.randn(1, n, 2, 8, generator=gen) for n in (t, 20, 20))
    mask = torch.randn(t, 20, generator=gen)
    if case == "fp16":
        q, k, v = (x.to(torch.float16) for x in (q, k, v))
    if case == "grad":
        q.requires_grad_()
    if case == "strided_last_dim":
        k = torch.randn(1, 20, 2, 16, generator=gen)[..., ::2]
    got = cpu.attention(q, k, v, None, mask, False, 0.3)
    assert fallbacks
    want = reference(q.detach(), k, v, None, mask, False, 0.3)
    torch.testing.assert_close(got.detach().float(), want, rtol=2e-3 if case == "fp16" else 1e-5,
                               atol=2e-3 if case == "fp16" else 1e-5)


def test_the_op_dispatches_to_it_and_bad_calls_are_refused(monkeypatch):
    fallbacks = _kernel_runs(monkeypatch)
    q, k, v = torch.randn(1, 1, 2, 8), torch.randn(1, 9, 2, 8), torch.randn(1, 9, 2, 8)
    got = _ops.call("attention", q, k, v, None, None, True, 0.25, "cpp")
    assert not fallbacks
    torch.testing.assert_close(got, reference(q, k, v, None, None, True, 0.25), rtol=1e-5, atol=1e-6)
    mod = cpu._ext.require()
    out = torch.empty(1, 17, 2, 8)
    many = mod.ATTENTION_DECODE_QUERIES + 1
    with pytest.raises(ValueError, match=f"at most {many - 1} queries, got {many}"):
        mod.attention_decode(q.data_ptr(), k.data_ptr(), v.data_ptr(), 0, out.data_ptr(), 1, many, 9, 2, 8, 8,
                             [16, 16, 8], [144, 16, 8], [144, 16, 8], False, 1.0)
    with pytest.raises(ValueError, match="strides: expected 3"):
        mod.attention_decode(q.data_ptr(), k.data_ptr(), v.data_ptr(), 0, out.data_ptr(), 1, 1, 9, 2, 8, 8,
                             [16, 16], [144, 16, 8], [144, 16, 8], False, 1.0)
    with pytest.raises(ValueError, match="one attn_mask, bool or float, not both"):
        mod.attention_decode(q.data_ptr(), k.data_ptr(), v.data_ptr(), 0, out.data_ptr(), 1, 1, 9, 2, 8, 8,
                             [16, 16, 8], [144, 16, 8], [144, 16, 8], False, 1.0, mask_bool=q.data_ptr(),
                             mask_add=q.data_ptr())
    with pytest.raises(ValueError, match="causal needs T <= S"):
        mod.attention_decode(q.data_ptr(), k.data_ptr(), v.data_ptr(), 0, out.data_ptr(), 1, 2, 1, 2, 8, 8,
                             [32, 16, 8], [144, 16, 8], [144, 16, 8], True, 1.0)


def test_slt_hw_info_names_it():
    queries = cpu._ext.require().ATTENTION_DECODE_QUERIES
    assert f"attention decode steps (float32 or bfloat16, <= {queries} queries)" in cpu._describe()


def test_a_nan_query_gives_nan_for_that_query_only(monkeypatch):
    """NaN in, NaN out (as SDPA), not a softmax over the other scores or a row of zeros."""
    fallbacks = _kernel_runs(monkeypatch)
    gen = torch.Generator().manual_seed(5)
    q, k, v = torch.randn(2, 2, 3, 8, generator=gen), torch.randn(2, 6, 3, 8, generator=gen), \
        torch.randn(2, 6, 3, 4, generator=gen)
    q[1, 0, 2, 5] = float("nan")
    got = cpu.attention(q, k, v, None, None, False, 0.5)
    assert not fallbacks and torch.isnan(got[1, 0, 2]).all()
    keep = torch.ones(2, 2, 3, dtype=torch.bool)
    keep[1, 0, 2] = False
    q_ok = torch.where(torch.isnan(q), 0.0, q)
    torch.testing.assert_close(got[keep], reference(q_ok, k, v, None, None, False, 0.5)[keep], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bf16", [False, True])
def test_the_build_without_clones_agrees(bf16):
    """The kernel as the emulation build compiles it: without target_clones, the portable loops
    (what a compiler or OS without them runs; here the AVX-512 clone is the one picked)."""
    import avx512_emulation

    mod = avx512_emulation.module()
    gen = torch.Generator().manual_seed(7)
    dt = torch.bfloat16 if bf16 else torch.float32
    q = torch.randn(2, 3, 4, 33, generator=gen).to(dt)
    k = torch.randn(2, 4, 50, 33, generator=gen).to(dt).transpose(1, 2)
    v = torch.randn(2, 4, 50, 20, generator=gen).to(dt).transpose(1, 2)
    kpm = torch.rand(2, 50, generator=gen) < 0.3
    mask = torch.randn(3, 50, generator=gen)
    out = torch.empty(2, 3, 4, 20)
    mod.attention_decode(q.data_ptr(), k.data_ptr(), v.data_ptr(), kpm.data_ptr(), out.data_ptr(), 2, 3, 50, 4, 33, 20,
                         list(q.stride()[:3]), list(k.stride()[:3]), list(v.stride()[:3]), True, 0.2, 2, bf16, 0,
                         mask.data_ptr())
    want = reference(q, k, v, kpm, mask, True, 0.2)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cpu.attention(q, k, v, kpm, mask, True, 0.2).float(), want,
                               rtol=2 ** -8 if bf16 else 1e-5, atol=1e-5)
