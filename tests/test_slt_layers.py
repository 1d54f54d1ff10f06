"""Search layers against the pure-PyTorch reference: shapes, packing parity, attention, GNN."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slt_hw.conversion import pack, pack_layer
from slt_hw.nn import (
    SLTConv2d,
    SLTGCNConv,
    SLTGINConv,
    SLTLinear,
    SLTMultiheadAttention,
    SLTTransformerBlock,
    gcn_adjacency,
    sum_adjacency,
)
from slt_hw.ops import slt_linear_reference


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 24), k=st.sampled_from([1, 7, 31, 33, 65]), batch=st.sampled_from([(0,), (1,), (5,), (2, 3)]),
       method=st.sampled_from(["binary", "multicoat", "frozen"]), dist=st.sampled_from(["signed_constant", "uniform",
       "normal"]), s=st.floats(0, 0.95), seed=st.integers(0, 2**40), bias=st.booleans(), noncontig=st.booleans())
def test_linear_equals_reference_and_packed(n, k, batch, method, dist, s, seed, bias, noncontig):
    kw = {"num_coats": 3} if method == "multicoat" else {"p_prune": 0.2, "p_lock": 0.1} if method == "frozen" else {}
    layer = SLTLinear(k, n, seed=seed, name="layer.fc", sparsity=s, dist=dist, bias=bias, **kw).eval()
    if bias:
        with torch.no_grad():
            layer.bias.normal_()
    x = torch.randn(*batch, 2 * k)[..., ::2] if noncontig else torch.randn(*batch, k)
    y = layer(x)
    p = pack_layer(layer, backend="reference")
    packed = p.packed[0]
    assert torch.equal(packed.materialize(), layer.effective_weight().detach())  # bit-identical weights
    assert torch.equal(y, slt_linear_reference(x, packed, layer.bias))
    assert torch.equal(p(x), y)
    auto = pack_layer(layer)  # the fastest backend here: float32 rounding only
    torch.testing.assert_close(auto(x), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_conv_packed_matches(stride, padding, dilation):
    conv = SLTConv2d(3, 6, (3, 2), seed=1, name="conv", stride=stride, padding=padding, dilation=dilation,
                     bias=True, sparsity=0.6).eval()
    x = torch.randn(2, 3, 9, 8)
    torch.testing.assert_close(pack_layer(conv)(x), conv(x), rtol=1e-5, atol=1e-5)
    assert pack_layer(conv)(x[:0]).shape == (0, *conv(x).shape[1:])


def _attention_ref(mha, x, mask):
    q, k, v = (getattr(mha, f"{n}_proj").effective_weight() for n in "qkv")
    o = mha.out_proj.effective_weight()
    b, t, _ = x.shape
    h = mha.num_heads
    qs, ks, vs = ((x @ w.T).view(b, t, h, -1).transpose(1, 2) for w in (q, k, v))
    logits = qs @ ks.transpose(-1, -2) / math.sqrt(q.shape[0] // h)
    att = torch.softmax(logits.masked_fill(mask, float("-inf")), -1)
    return (att @ vs).transpose(1, 2).reshape(b, t, -1) @ o.T


def test_mha_causal_padding_and_separate_masks():
    mha = SLTMultiheadAttention(8, 2, seed=0, name="attn", qk_dim=12, v_dim=6, qk_init_scale=2.0, sparsity=0.5)
    names = {m.name for m in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj)}
    assert len(names) == 4  # separate weights and masks per projection
    assert mha.q_proj.scale == pytest.approx(2 * SLTLinear(8, 12, seed=0, name="q").scale)
    x = torch.randn(3, 5, 8)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[1, 3:] = True
    out, _ = mha(x, key_padding_mask=pad, is_causal=True)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    torch.testing.assert_close(out, _attention_ref(mha, x, causal | pad[:, None, None, :]))
    assert mha(x[:1])[0].shape == (1, 5, 8)
    packed = pack(mha)
    torch.testing.assert_close(packed(x, key_padding_mask=pad, is_causal=True)[0], out, rtol=1e-5, atol=1e-5)


def test_transformer_block_no_norm():
    blk = SLTTransformerBlock(8, 2, 16, seed=0, name="blk", causal=True)
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm1d)) for m in blk.modules())
    x = torch.randn(2, 4, 8)
    a = blk.attn(x, is_causal=True)[0] + x
    torch.testing.assert_close(blk(x), blk.fc2(torch.relu(blk.fc1(a))) + a)
    blk(x).sum().backward()
    assert all(p.grad is not None for n, p in blk.named_parameters() if n.endswith("scores"))


def test_gnn_layers_sparse_aggregation():
    edges = torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 1, 0]])
    adj = gcn_adjacency(edges, 4)
    dense_a = torch.zeros(4, 4)
    dense_a[edges[1], edges[0]] = 1
    a_hat = dense_a + torch.eye(4)
    d = a_hat.sum(1).rsqrt()
    torch.testing.assert_close(adj.to_dense(), d[:, None] * a_hat * d[None, :])
    x = torch.randn(4, 6)
    gcn = SLTGCNConv(6, 5, seed=0, name="gcn")
    torch.testing.assert_close(gcn(x, adj), adj.to_dense() @ gcn.lin(x))
    gin = SLTGINConv(6, 5, seed=0, name="gin", eps=0.5).eval()
    h = 1.5 * x + dense_a @ x
    torch.testing.assert_close(gin(x, sum_adjacency(edges, 4)), gin.lin2(torch.relu(gin.norm(gin.lin1(h)))))
    with pytest.raises(ValueError, match="edge_index"):
        gcn_adjacency(torch.tensor([[0, 9], [1, 0]]), 4)
