"""Mask formats: pack/unpack round trips, exact sizes, nesting, the frozen stream and offsets."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slt_hw import Format, pack_binary, pack_frozen, pack_multicoat
from slt_hw.contract import words_per_row
from slt_hw.reference import masks
from slt_hw.reference.prng import FREE, LOCKED, PRUNED

shapes = st.tuples(st.integers(1, 9), st.integers(1, 1100))


def _rand_bool(shape, seed, p=0.5):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 1000))
def test_pack_bits_round_trip(shape, seed):
    m = _rand_bool(shape, seed)
    words = masks.pack_bits(m)
    assert words.dtype == torch.int32 and words.shape == (shape[0], words_per_row(shape[1]))
    assert torch.equal(masks.unpack_bits(words, shape[1]), m)
    # bit k of row r is bit k % 32 of word k // 32, LSB first
    r, k = shape[0] - 1, shape[1] - 1
    assert bool((int(words[r, k // 32]) >> (k % 32)) & 1) == bool(m[r, k])


@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 1000))
def test_binary_format(shape, seed):
    m = _rand_bool(shape, seed)
    p = pack_binary(m, seed=seed, name="w")
    assert p.format is Format.BINARY and p.planes.shape == (1, shape[0], words_per_row(shape[1]))
    assert torch.equal(p.mask(), m)
    assert p.mask_bits() == shape[0] * shape[1]


@settings(max_examples=20, deadline=None)
@given(shape=shapes, coats=st.integers(1, 4), seed=st.integers(0, 1000))
def test_multicoat_round_trip_and_hierarchical_size(shape, coats, seed):
    levels = torch.randint(0, coats + 1, shape, generator=torch.Generator().manual_seed(seed))
    p = pack_multicoat(levels, coats, seed=seed, name="w")
    assert torch.equal(p.mask(), levels)
    n = shape[0] * shape[1]
    want = n + sum(int((levels >= i).sum()) for i in range(1, coats))
    assert p.mask_bits() == want


def test_multicoat_size_matches_msup_example():
    """M-Sup's ResNet-50 'linear' schedule, 3 coats at sparsities 0.7/0.9212/0.9685 -> 1.379 bits."""
    n, k = 1000, 1000
    s = torch.rand(n, k, generator=torch.Generator().manual_seed(0))
    levels = (s >= 0.7).long() + (s >= 0.9212).long() + (s >= 0.9685).long()
    bits = pack_multicoat(levels, 3, seed=0, name="w").mask_bits() / (n * k)
    assert bits == pytest.approx(1 + 0.3 + 0.0788, abs=3e-3)


def test_multicoat_values_are_sign_times_level():
    levels = torch.randint(0, 4, (6, 50), generator=torch.Generator().manual_seed(1))
    p = pack_multicoat(levels, 3, seed=3, name="w")
    w = p.materialize()
    assert torch.equal(w.abs(), levels.float() * p.scale)


@settings(max_examples=15, deadline=None)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 2500)), pp=st.floats(0, 0.6), pl=st.floats(0, 0.4),
       seed=st.integers(0, 2**63 - 1))
def test_frozen_format(shape, pp, pl, seed):
    m = _rand_bool(shape, 7)
    p = pack_frozen(m, seed=seed, name="layer", p_prune=pp, p_lock=pl)
    states = p.freeze_states()
    eff = p.mask()
    assert not eff[states == PRUNED].any() and eff[states == LOCKED].all()
    assert torch.equal(eff[states == FREE], m[states == FREE])
    assert p.mask_bits() == int((states == FREE).sum())
    assert p.free_bits.shape == (max(1, math.ceil(p.mask_bits() / 32)),)
    # offsets: free weights before (row, 1024·block), counted directly
    free = (states == FREE).long()
    for r in range(shape[0]):
        for b in range(p.offsets.shape[1]):
            want = int(free[:r].sum()) + int(free[r, : 1024 * b].sum())
            assert int(p.offsets[r, b]) == want


def test_frozen_pattern_depends_on_seed_not_on_mask():
    m1, m2 = _rand_bool((8, 300), 1), _rand_bool((8, 300), 2)
    a = pack_frozen(m1, seed=1, name="x", p_prune=0.5, p_lock=0.2)
    b = pack_frozen(m2, seed=1, name="x", p_prune=0.5, p_lock=0.2)
    c = pack_frozen(m1, seed=2, name="x", p_prune=0.5, p_lock=0.2)
    assert torch.equal(a.freeze_states(), b.freeze_states())
    assert not torch.equal(a.freeze_states(), c.freeze_states())


def test_conv_shaped_weight_flattens_in_row_major_order():
    m = _rand_bool((4, 3, 3, 3), 0)
    p = pack_binary(m, seed=0, name="conv")
    assert p.in_features == 27 and p.shape == (4, 3, 3, 3)
    assert torch.equal(p.mask(), m.reshape(4, 27))


def test_to_device_keeps_everything():
    p = pack_frozen(_rand_bool((3, 70), 0), seed=4, name="x", p_prune=0.3, p_lock=0.3)
    q = p.to("cpu")
    assert torch.equal(q.materialize(), p.materialize()) and q.num_free == p.num_free
