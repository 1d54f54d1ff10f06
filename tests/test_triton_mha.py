"""The fused attention path: the grouped slt_linear (kernels/linear_grouped.py), the
flash-attention kernel (kernels/attention.py) and slt_mha(backend="triton") against the
reference. Without a GPU tests/conftest.py selects Triton's interpreter, so shapes stay small
(and fp16 stands in for bf16, whose tl.dot is wrong in the interpreter)."""

from __future__ import annotations

import math
import os

import pytest

triton = pytest.importorskip("triton")

import torch  # noqa: E402
from packing import random_packed  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from slt_hw import _ops, ops  # noqa: E402
from slt_hw.kernels import linear_grouped  # noqa: E402
from slt_hw.kernels.attention import flash_attention  # noqa: E402
from slt_hw.mha import KVCache, slt_mha, slt_mha_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HALF = [torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])
TOL = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}


def _pw(fmt, dist, n, k, name, seed=3):
    return random_packed(fmt, dist, n, k, seed=seed, name=name, device=DEVICE)


def _close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == want.dtype
    if want.numel() == 0:
        return
    assert torch.isfinite(got).all()
    scale = want.float().abs().max().clamp_min(1.0)
    err = (got.float() - want.float()).abs().max()
    assert err <= TOL[dtype] * scale, f"max error {err.item():.3g} (scale {scale.item():.3g})"


# ---------------------------------------------------------------------- grouped slt_linear


@pytest.mark.parametrize("fmt", ["binary", "multicoat", "frozen"])
@pytest.mark.parametrize("dist", ["signed_constant", "uniform", "normal"])
@pytest.mark.parametrize("m,path", [(1, "gemv"), (5, "gemv"), (19, "gemm"), (3, "gemm")])
def test_grouped_linear_matches_reference(fmt, dist, m, path):
    k = 70  # not a multiple of 32
    ps = [_pw(fmt, dist, n, k, f"g{i}") for i, n in enumerate((24, 40, 8))]
    biases = [torch.randn(24, device=DEVICE), None, torch.randn(8, device=DEVICE)]
    x = torch.randn(m, k, device=DEVICE)
    want = torch.cat([ops.slt_linear_reference(x, p, b) for p, b in zip(ps, biases, strict=True)], -1)
    _close(linear_grouped.linear_grouped(x, ps, biases, path=path), want, torch.float32)


@pytest.mark.parametrize("groups", [1, 2])
def test_grouped_linear_split_k_half_and_3d(groups):
    k = 2100  # three 1024-column chunks for split-K
    ps = [_pw("binary", "signed_constant", 16 + 8 * i, k, f"s{i}") for i in range(groups)]
    x = torch.randn(2, 1, k, device=DEVICE).to(torch.float16)
    want = torch.cat([ops.slt_linear_reference(x, p) for p in ps], -1)
    got = linear_grouped.linear_grouped(x, ps, path="gemv", split_k=3)
    assert got.shape == (2, 1, sum(p.out_features for p in ps))
    _close(got, want, torch.float16)


def test_grouped_linear_empty_and_errors():
    a, b = _pw("binary", "uniform", 8, 40, "a"), _pw("frozen", "uniform", 8, 40, "b")
    assert linear_grouped.linear_grouped(torch.zeros(0, 40, device=DEVICE), [a]).shape == (0, 8)
    with pytest.raises(ValueError, match="format differs"):
        linear_grouped.linear_grouped(torch.zeros(1, 40, device=DEVICE), [a, b])
    with pytest.raises(ValueError, match="1 to 3 weights"):
        linear_grouped.linear_grouped(torch.zeros(1, 40, device=DEVICE), [a] * 4)
    with pytest.raises(ValueError, match=r"biases\[0\]"):
        linear_grouped.linear_grouped(torch.zeros(1, 40, device=DEVICE), [a], [torch.zeros(3, device=DEVICE)])
    with pytest.raises(ValueError, match="x: expected"):
        linear_grouped.linear_grouped(torch.zeros(1, 41, device=DEVICE), [a])


# ---------------------------------------------------------------------- flash attention


def _attn_ref(q, k, v, causal, kpm, scale=None):
    t, s, d = q.shape[1], k.shape[1], q.shape[3]
    qh, kh, vh = (x.float().transpose(1, 2) for x in (q, k, v))
    logits = qh @ kh.transpose(-1, -2) * (scale or 1 / math.sqrt(d))
    allowed = torch.ones(q.shape[0], 1, t, s, dtype=torch.bool, device=q.device)
    if causal:
        allowed &= ~torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1 + s - t)
    if kpm is not None:
        allowed &= ~kpm[:, None, None, :]
    a = torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0)
    return (a @ vh).transpose(1, 2).to(q.dtype)


CASES = [  # (B, T, S, H, D, DV, causal, padded, splits)
    (2, 5, 5, 1, 16, 16, False, False, 1),
    (2, 19, 19, 3, 24, 40, True, True, 1),   # T, S not multiples of the block; D != DV
    (1, 33, 33, 8, 16, 16, True, False, 1),
    (2, 1, 37, 2, 128, 128, True, True, 3),  # decode step, split over the keys
    (1, 4, 50, 2, 64, 32, True, True, None),  # prefill chunk after cached keys
    (3, 7, 7, 2, 32, 32, False, True, 2),
    (2, 5, 70, 3, 32, 48, True, True, 3),  # several queries over 3 key splits (the combine kernel's T axis)
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
def test_flash_attention_matches_math(case, dtype):
    b, t, s, h, d, dv, causal, padded, splits = case
    g = torch.Generator().manual_seed(b * 100 + t)
    q = torch.randn(b, t, h, d, generator=g).to(dtype).to(DEVICE)
    k = torch.randn(b, s, h, d, generator=g).to(dtype).to(DEVICE)
    v = torch.randn(b, s, h, dv, generator=g).to(dtype).to(DEVICE)
    kpm = (torch.rand(b, s, generator=g) < 0.3).to(DEVICE) if padded else None
    if padded and b > 1:
        kpm[0] = True  # a batch with no key: zeros, not NaN
    got = flash_attention(q, k, v, causal=causal, key_padding_mask=kpm, splits=splits)
    _close(got, _attn_ref(q, k, v, causal, kpm), dtype)
    if padded and b > 1:
        assert torch.equal(got[0], torch.zeros_like(got[0]))


def test_flash_attention_strided_views_and_errors():
    """Shapes and masks are checked by the attention op; the kernel checks its own limits."""
    qkv = torch.randn(2, 9, 3 * 2 * 16, device=DEVICE)  # one projection buffer, heads interleaved
    q, k, v = (qkv[..., i * 32:(i + 1) * 32].view(2, 9, 2, 16) for i in range(3))
    _close(flash_attention(q, k, v, causal=True), _attn_ref(q, k, v, True, None), torch.float32)
    _close(_ops.call("attention", q, k, v, None, None, True, 0.25, "triton"), _attn_ref(q, k, v, True, None),
           torch.float32)
    with pytest.raises(ValueError, match="k, v: expected"):
        _ops.call("attention", q, k[:, :, :1], v, None, None, False, 0.25, "triton")
    with pytest.raises(ValueError, match="key_padding_mask"):
        _ops.call("attention", q, k, v, torch.zeros(2, 9, device=DEVICE), None, False, 0.25, "triton")
    with pytest.raises(ValueError, match="causal attention needs T <= S"):
        flash_attention(q, k[:, :4], v[:, :4], causal=True)
    with pytest.raises(ValueError, match="unit stride"):
        flash_attention(q.transpose(2, 3), k, v)


# ---------------------------------------------------------------------- slt_mha, fused


def _mha_weights(fmt, dist, e, h, dq, dv, e_kv=None):
    e_kv = e_kv or e
    return (_pw(fmt, dist, h * dq, e, "q"), _pw(fmt, dist, h * dq, e_kv, "k"), _pw(fmt, dist, h * dv, e_kv, "v"),
            _pw(fmt, dist, e, h * dv, "o"))


@pytest.mark.parametrize("fmt,dist", [("binary", "signed_constant"), ("multicoat", "normal"), ("frozen", "uniform")])
@pytest.mark.parametrize("h,d,t", [(1, 16, 5), (2, 24, 17), (8, 16, 9), (1, 128, 3)])
def test_fused_mha_matches_reference(fmt, dist, h, d, t):
    e = 37
    q, k, v, o = _mha_weights(fmt, dist, e, h, d, d)
    x = torch.randn(2, t, e, device=DEVICE)
    kpm = torch.rand(2, t, generator=torch.Generator().manual_seed(t)).to(DEVICE) < 0.3
    bias = (torch.randn(h * d, device=DEVICE), None, None, torch.randn(e, device=DEVICE))
    with torch.no_grad():
        for causal in (False, True):
            want = slt_mha_reference(x, q, k, v, o, h, bias=bias, key_padding_mask=kpm, causal=causal)
            got = slt_mha(x, q, k, v, o, h, bias=bias, key_padding_mask=kpm, causal=causal, backend="triton")
            _close(got, want, torch.float32)


@pytest.mark.parametrize("dtype", HALF)
def test_fused_mha_half(dtype):
    q, k, v, o = _mha_weights("binary", "signed_constant", 32, 2, 16, 16)
    x = torch.randn(2, 12, 32, device=DEVICE).to(dtype)
    with torch.no_grad():
        _close(slt_mha(x, q, k, v, o, 2, causal=True, backend="triton"),
               slt_mha_reference(x, q, k, v, o, 2, causal=True), dtype)


def test_fused_cross_attention_and_empty_batch():
    q, k, v, o = _mha_weights("binary", "uniform", 24, 2, 16, 8, e_kv=20)
    x, mem = torch.randn(2, 5, 24, device=DEVICE), torch.randn(2, 11, 20, device=DEVICE)
    with torch.no_grad():
        _close(slt_mha(x, q, k, v, o, 2, key=mem, value=mem, backend="triton"),
               slt_mha_reference(x, q, k, v, o, 2, key=mem, value=mem), torch.float32)
        e = torch.zeros(0, 5, 24, device=DEVICE)
        q2, k2, v2, o2 = _mha_weights("binary", "uniform", 24, 2, 16, 8)
        assert slt_mha(e, q2, k2, v2, o2, 2, backend="triton").shape == (0, 5, 24)


@pytest.mark.parametrize("fmt", ["binary", "frozen"])
def test_fused_prefill_then_decode_equals_one_prefill(fmt):
    h, e, d = 2, 40, 16
    q, k, v, o = _mha_weights(fmt, "signed_constant", e, h, d, d)
    x = torch.randn(2, 10, e, device=DEVICE)
    kpm = (torch.rand(2, 10, generator=torch.Generator().manual_seed(5)) < 0.25).to(DEVICE)
    with torch.no_grad():
        whole = slt_mha_reference(x, q, k, v, o, h, causal=True, key_padding_mask=kpm)
        cache = KVCache(2, h, 16, d, device=DEVICE)
        steps = [slt_mha(x[:, :5], q, k, v, o, h, causal=True, key_padding_mask=kpm[:, :5], cache=cache,
                         backend="triton")]
        for i in range(5, 10):
            steps.append(slt_mha(x[:, i:i + 1], q, k, v, o, h, causal=True, key_padding_mask=kpm[:, i:i + 1],
                                 cache=cache, backend="triton"))
    _close(torch.cat(steps, 1), whole, torch.float32)


# ---------------------------------------------------------------------- a decode step's launches

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
# Ops that allocate or re-view memory: no device work, no launch of their own.
_NO_LAUNCH = {"view", "_unsafe_view", "slice", "select", "as_strided", "detach", "alias", "t", "transpose",
              "unsqueeze", "squeeze", "expand", "empty", "empty_strided", "new_empty", "set_", "lift_fresh"}


class _DeviceWork(TorchDispatchMode):
    """Records the Triton kernels a call launches and the torch ops it runs outside them (ops
    run by the interpreter inside a kernel are its own machinery, not launches)."""

    def __init__(self):
        super().__init__()
        self.kernels, self.ops, self._inside = [], [], 0

    def __enter__(self):
        import triton.runtime.interpreter as interp

        self._grid_call = interp.GridExecutor.__call__

        def call(grid_self, *args, **kwargs):
            self.kernels.append(grid_self.fn.__name__)
            self._inside += 1
            try:
                return self._grid_call(grid_self, *args, **kwargs)
            finally:
                self._inside -= 1

        interp.GridExecutor.__call__ = call
        return super().__enter__()

    def __exit__(self, *exc):
        import triton.runtime.interpreter as interp

        interp.GridExecutor.__call__ = self._grid_call
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self._inside and name not in _NO_LAUNCH:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.skipif(not INTERPRETED, reason="counts launches through Triton's interpreter")
@pytest.mark.parametrize("splits", [False, True])
def test_decode_step_launches_only_its_kernels_and_cache_writes(monkeypatch, splits):
    """A decode step is host-bound: every extra launch costs about as much as the projection
    itself. Once its tables are cached it runs the grouped Q/K/V kernel (plus one split-K sum
    when K is split), the attention kernel (plus one combine kernel when the keys are split)
    and the O projection, and writes K, V and the padding into the cache: nothing else."""
    from slt_hw.kernels import attention

    if splits:  # as on a large GPU: the 1100-wide projections and the 41 keys get split
        monkeypatch.setattr(attention, "_num_sms", lambda device: 64)
        monkeypatch.setattr(attention, "_MIN_SPLIT_KEYS", 16)
    monkeypatch.setattr(linear_grouped, "_gemv_plan", lambda m, rows, k, device, split_k: (2, 1024) if splits
                        else (1, 2048))
    h, d, e, t = 2, 16, 1100, 40
    q, k, v, o = _mha_weights("binary", "signed_constant", e, h, d, d)
    x = torch.randn(2, t + 1, e, device=DEVICE)
    kpm = torch.zeros(2, t + 1, dtype=torch.bool, device=DEVICE)
    kpm[1, 0] = True
    bias = (torch.randn(h * d, device=DEVICE), None, torch.randn(h * d, device=DEVICE), torch.randn(e, device=DEVICE))
    cache = KVCache(2, h, 64, d, device=DEVICE)
    with torch.no_grad():
        got = [slt_mha(x[:, :t], q, k, v, o, h, causal=True, key_padding_mask=kpm[:, :t], cache=cache, bias=bias,
                       backend="triton")]
        step = x[:, t:].contiguous()
        with _DeviceWork() as work:
            got.append(slt_mha(step, q, k, v, o, h, causal=True, key_padding_mask=kpm[:, t:], cache=cache,
                               bias=bias, backend="triton"))
        want = slt_mha_reference(x, q, k, v, o, h, causal=True, key_padding_mask=kpm, bias=bias)
    _close(torch.cat(got, 1), want, torch.float32)
    if splits:
        assert work.kernels == ["_gemv_grouped_kernel", "_reduce_splits_kernel", "_attn_kernel", "_combine_kernel",
                                "_gemv_kernel"]
    else:
        assert work.kernels == ["_gemv_grouped_kernel", "_attn_kernel", "_gemv_kernel"]
    assert work.ops == ["copy_", "copy_", "copy_"]  # the cache's K, V and padding writes


def test_grouped_tables_follow_in_place_changes():
    """The grouped launch's cached tables (scalars, coat scales, biases) are rebuilt when a bias
    or a coat scale changes in place, and reused otherwise."""
    ps = [_pw("multicoat", "normal", 16, 40, name) for name in "abc"]
    bias = [torch.randn(16, device=DEVICE), None, torch.randn(16, device=DEVICE)]
    x = torch.randn(3, 40, device=DEVICE)

    def want():
        return torch.cat([ops.slt_linear_reference(x, p, b) for p, b in zip(ps, bias, strict=True)], -1)

    _close(linear_grouped.linear_grouped(x, ps, bias), want(), torch.float32)
    before = len(linear_grouped._TABLES)
    _close(linear_grouped.linear_grouped(x, ps, bias), want(), torch.float32)
    assert len(linear_grouped._TABLES) == before  # reused
    with torch.no_grad():
        bias[2].mul_(-3.0)
        ps[1].coat_scales.mul_(0.5)
    _close(linear_grouped.linear_grouped(x, ps, bias), want(), torch.float32)
    with torch.inference_mode():  # inference tensors keep no version: never cached, still right
        b_inf = torch.randn(16, device=DEVICE)
        got = linear_grouped.linear_grouped(x, ps, [b_inf, None, None])
    _close(got, torch.cat([ops.slt_linear_reference(x, ps[0], b_inf), *(ops.slt_linear_reference(x, p)
                                                                        for p in ps[1:])], -1), torch.float32)
