"""Supermask search: thresholds, Edge-Popup, coats, freezing, schedules, folding (defining properties)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slt_hw.contract import Stream, derive_key, freeze_thresholds
from slt_hw.nn import SLTConv2d, SLTLinear
from slt_hw.reference.prng import LOCKED, PRUNED, freeze_states, generate
from slt_hw.search import (
    Folded,
    FoldedStages,
    constant,
    freeze_ratios,
    global_threshold,
    kth_smallest,
    layer_densities,
    linear_ramp,
    set_sparsity,
    sparsity_threshold,
)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 10**6), ties=st.booleans(), k_frac=st.floats(0, 1))
def test_radix_select_matches_sort(n, seed, ties, k_frac):
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(n, generator=g)
    if ties:
        v = (v * 7).floor() / 7
    parts = list(torch.split(v, max(1, n // 3)))
    k = 1 + int(k_frac * (n - 1))
    assert kth_smallest(parts, k) == float(v.sort().values[k - 1])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2000), s=st.floats(0, 0.999), seed=st.integers(0, 1000))
def test_threshold_hits_sparsity_within_one_element(n, s, seed):
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed)).abs()
    tau = sparsity_threshold([v], math.floor(s * n))
    removed = int((v <= tau).sum())
    assert abs(removed - s * n) < 1


def test_threshold_tie_rule_removes_all_ties():
    v = torch.tensor([0.1, 0.2, 0.2, 0.2, 0.3])
    tau = sparsity_threshold([v], 2)
    assert tau == pytest.approx(0.2) and int((v > tau).sum()) == 1  # ties at τ all go


def test_kth_smallest_rejects_bad_input():
    with pytest.raises(ValueError, match="k"):
        kth_smallest([torch.rand(3)], 0)
    with pytest.raises(ValueError, match="values"):
        kth_smallest([torch.tensor([-1.0, 2.0])], 1)


@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (16, 100)])
@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.9])
def test_layer_sparsity_and_weights_from_contract(shape, s):
    layer = SLTLinear(shape[1], shape[0], seed=5, name="fc", sparsity=s)
    m = layer.mask()
    assert int((m == 0).sum()) == math.floor(s * m.numel())
    want = generate(derive_key(5, "fc"), shape[0], shape[1], "signed_constant", layer.scale)
    assert torch.equal(layer.weight0, want)
    assert [n for n, _ in layer.named_parameters()] == ["scores"]
    assert "weight0" not in layer.state_dict()  # regenerated from the seed, never saved


def test_gradients_reach_scores_straight_through():
    layer = SLTLinear(9, 4, seed=1, name="fc", sparsity=0.5)
    x = torch.randn(3, 9)
    layer(x).pow(2).sum().backward()
    g = layer.scores.grad
    assert g is not None and bool((g != 0).any())
    # straight-through: dL/dS = sign(S) ⊙ W0 ⊙ dL/dW_eff, pruned weights included
    w = layer.effective_weight().detach().requires_grad_(True)
    torch.nn.functional.linear(x, w).pow(2).sum().backward()
    torch.testing.assert_close(g, layer.scores.sign() * layer.weight0 * w.grad)


def test_conv_matches_linear_view():
    conv = SLTConv2d(3, 5, 3, seed=2, name="c", padding=1, sparsity=0.4)
    w = generate(derive_key(2, "c"), 5, 27, "signed_constant", conv.scale).reshape(5, 3, 3, 3)
    assert torch.equal(conv.weight0, w)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, conv.effective_weight(), padding=1))


def test_multicoat_coats_nested_and_counts():
    layer = SLTLinear(64, 32, seed=3, name="fc", num_coats=3, coat_sparsities=(0.5, 0.8, 0.95))
    m = layer.mask()
    n = m.numel()
    for c, s in enumerate((0.5, 0.8, 0.95)):
        assert int((m > c).sum()) == n - math.floor(s * n)
    adaptive = SLTLinear(64, 32, seed=3, name="fc", num_coats=4, sparsity=0.5)
    taus = adaptive.thresholds()
    assert taus == sorted(taus)
    a = adaptive.scores.detach().abs()
    assert taus[1] == pytest.approx(float(a[a > taus[0]].double().mean()), rel=1e-6)  # the documented rule
    m = adaptive.mask()
    assert set(m.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    assert torch.equal(adaptive.effective_weight(), torch.where(m != 0, adaptive.weight0 * m, 0.0))


def test_multicoat_gradient_is_coats_times():
    layer = SLTLinear(8, 4, seed=3, name="fc", num_coats=3, sparsity=0.2)
    layer.mask().sum().backward()
    torch.testing.assert_close(layer.scores.grad, 3 * layer.scores.sign())


@pytest.mark.parametrize("s", [0.1, 0.5, 0.9])
def test_freezing_locked_kept_pruned_never(s):
    layer = SLTLinear(70, 40, seed=9, name="fc", sparsity=s, p_prune=0.3, p_lock=0.2)
    with torch.no_grad():  # scores that would prune locked and keep pruned weights
        layer.scores.copy_(torch.where(layer.freeze_state == LOCKED, 0.0, 1.0) + torch.rand(40, 70) * 0.1)
    m = layer.mask()
    assert bool((m[layer.freeze_state == LOCKED] == 1).all())
    assert bool((m[layer.freeze_state == PRUNED] == 0).all())
    p, lk = freeze_thresholds(0.3, 0.2)
    assert torch.equal(layer.freeze_state, freeze_states(derive_key(9, "fc", Stream.FREEZE), 40, 70, p, lk))
    pruned, locked = int((layer.freeze_state == PRUNED).sum()), int((layer.freeze_state == LOCKED).sum())
    want = min(max(math.floor(s * 2800), pruned), 2800 - locked)
    assert int((m == 0).sum()) == want


def test_rescale_folds_into_scale():
    a = SLTLinear(50, 10, seed=0, name="fc", sparsity=0.75)
    b = SLTLinear(50, 10, seed=0, name="fc", sparsity=0.75, rescale=True)
    assert b.scale == pytest.approx(a.scale * 2.0, rel=1e-6)


def test_freeze_ratio_distributions():
    shapes = {"a": (100, 10), "b": (200, 200), "c": (10, 50)}
    sizes = {k: math.prod(v) for k, v in shapes.items()}
    total = sum(sizes.values())
    for dist in ("uniform", "erk", "epl"):
        d = layer_densities(shapes, 0.3, dist)
        assert sum(d[k] * sizes[k] for k in d) == pytest.approx(0.3 * total)
        assert all(0 <= v <= 1 for v in d.values())
        r = freeze_ratios(shapes, 0.5, 0.2, dist)
        assert sum(r[k][0] * sizes[k] for k in r) == pytest.approx(0.5 * total)
        assert sum((r[k][0] + r[k][1]) * sizes[k] for k in r) == pytest.approx(0.7 * total)
    epl = layer_densities(shapes, 0.3, "epl")
    kept = [epl[k] * sizes[k] for k in shapes]
    assert kept[0] == pytest.approx(kept[1]) or epl["a"] == 1.0
    with pytest.raises(ValueError, match="distribution"):
        layer_densities(shapes, 0.3, "igq")


def test_schedules():
    assert constant(0.4)(10) == 0.4
    r = linear_ramp(0.0, 0.8, 4)
    assert [r(i) for i in (0, 2, 4, 9)] == [0.0, 0.4, 0.8, 0.8]
    with pytest.raises(ValueError, match="sparsity"):
        constant(1.0)
    with pytest.raises(ValueError, match="ramp_steps"):
        linear_ramp(0, 0.5, 0)


def test_global_threshold_counts_all_layers():
    model = torch.nn.Sequential(SLTLinear(30, 20, seed=0, name="a"), SLTLinear(20, 5, seed=0, name="b"))
    with torch.no_grad():
        model[1].scores.mul_(10)  # layer b ranks higher: a global threshold prunes mostly layer a
    global_threshold(model, 0.6)
    model(torch.randn(2, 30))
    removed = sum(int((m.mask() == 0).sum()) for m in model)
    assert removed == math.floor(0.6 * 700)
    assert int((model[1].mask() == 0).sum()) < int((model[0].mask() == 0).sum())
    set_sparsity(model, 0.3)
    model(torch.randn(2, 30))
    assert sum(int((m.mask() == 0).sum()) for m in model) == math.floor(0.3 * 700)


@pytest.mark.parametrize("shared", [True, False])
def test_folding_shares_weights(shared):
    block = SLTLinear(12, 12, seed=4, name="blk", sparsity=0.5)
    folded = Folded(block, 3, shared_masks=shared, norm="layer", num_features=12)
    weights = [b for n, b in folded.named_buffers(remove_duplicate=False) if n.endswith("weight0")]
    assert len(weights) == 1  # one random weight tensor for all iterations
    assert block.num_masks == (1 if shared else 3)
    x = torch.randn(4, 12)
    h = x
    for i in range(3):
        w = block.effective_weight(0 if shared else i)
        h = torch.nn.functional.layer_norm(h @ w.T, (12,))
    torch.testing.assert_close(folded(x), h)
    if not shared:
        assert not torch.equal(block.mask(0), block.mask(1))
    stages = FoldedStages([folded, Folded(SLTLinear(12, 12, seed=4, name="blk2"), 2)])
    assert stages(x).shape == (4, 12)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="sparsity"):
        SLTLinear(4, 4, seed=0, name="a", sparsity=1.0)
    with pytest.raises(TypeError, match="sparsity"):
        SLTLinear(4, 4, seed=0, name="a", sparsity="half")
    with pytest.raises(ValueError, match="name"):
        SLTLinear(4, 4, seed=0, name="")
    with pytest.raises(ValueError, match="in_features"):
        SLTLinear(0, 4, seed=0, name="a")
    with pytest.raises(ValueError, match="coat_sparsities"):
        SLTLinear(4, 4, seed=0, name="a", num_coats=2, coat_sparsities=(0.5, 0.4))
    with pytest.raises(ValueError, match="p_prune"):
        SLTLinear(4, 4, seed=0, name="a", num_coats=2, p_prune=0.2)
    with pytest.raises(ValueError, match="iters"):
        Folded(SLTLinear(4, 4, seed=0, name="a"), 0)
