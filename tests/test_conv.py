"""Packed 2-D convolution (im2col + the fused linear per group) against F.conv2d with the
materialised weight, on every CPU backend."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw import dispatch, pack_binary, pack_frozen, pack_multicoat
from slt_hw.ops import slt_conv2d, slt_conv2d_reference

BACKENDS = [n for n, why in dispatch.reasons("cpu", "linear_planes").items() if not why]


def packed(fmt, shape, seed):
    g = torch.Generator().manual_seed(seed)
    if fmt == "binary":
        return pack_binary(torch.rand(shape, generator=g) < 0.5, seed=seed, name="conv", dist="normal")
    if fmt == "multicoat":
        return pack_multicoat(torch.randint(0, 3, shape, generator=g), 2, seed=seed, name="conv")
    return pack_frozen(torch.rand(shape, generator=g) < 0.5, seed=seed, name="conv", p_prune=0.3, p_lock=0.3,
                       dist="uniform")


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["binary", "multicoat", "frozen"]), groups=st.sampled_from([1, 2, 3]),
       cin_g=st.integers(1, 4), og=st.integers(1, 5), k=st.sampled_from([(1, 1), (3, 3), (2, 3)]),
       stride=st.sampled_from([1, 2, (2, 1)]), padding=st.sampled_from([0, 1, (2, 0)]),
       dilation=st.sampled_from([1, 2]), batch=st.sampled_from([0, 1, 3]), seed=st.integers(0, 1000),
       with_bias=st.booleans())
def test_matches_conv2d(backend, fmt, groups, cin_g, og, k, stride, padding, dilation, batch, seed, with_bias):
    p = packed(fmt, (og * groups, cin_g, *k), seed)
    x = torch.randn(batch, cin_g * groups, 9, 8, generator=torch.Generator().manual_seed(seed))
    bias = torch.randn(og * groups) if with_bias else None
    want = slt_conv2d_reference(x, p, bias, stride, padding, dilation, groups)
    got = slt_conv2d(x, p, bias, stride, padding, dilation, groups, backend=backend)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_channels_last_and_bf16_input():
    p = packed("binary", (6, 4, 3, 3), 0)
    x = torch.randn(2, 4, 10, 10).to(memory_format=torch.channels_last)
    torch.testing.assert_close(slt_conv2d(x, p, padding=1), slt_conv2d_reference(x, p, padding=1), rtol=1e-4, atol=1e-4)
    xb = x.to(torch.bfloat16)
    torch.testing.assert_close(slt_conv2d(xb, p, padding=1), slt_conv2d_reference(xb, p, padding=1),
                               rtol=2e-2, atol=2e-2)


def test_bad_arguments():
    p = packed("binary", (6, 4, 3, 3), 0)
    with pytest.raises(ValueError, match=r"x: expected \(batch, 4, H, W\)"):
        slt_conv2d(torch.randn(1, 5, 8, 8), p)
    with pytest.raises(ValueError, match=r"groups: expected an int >= 1 dividing out_channels=6, got 4"):
        slt_conv2d(torch.randn(1, 16, 8, 8), p, groups=4)
    with pytest.raises(ValueError, match=r"stride: expected an int >= 1"):
        slt_conv2d(torch.randn(1, 4, 8, 8), p, stride=0)
    with pytest.raises(ValueError, match=r"packed: expected a conv weight"):
        slt_conv2d(torch.randn(1, 4, 8, 8), pack_binary(torch.ones(6, 36, dtype=torch.bool), seed=0, name="w"))
    with pytest.raises(ValueError, match=r"x: spatial size"):
        slt_conv2d(torch.randn(1, 4, 2, 2), p)
