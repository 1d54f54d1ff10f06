"""Statistical sanity of the contract's random stream (slt_hw.reference.prng on CPU).

Deterministic (fixed seeds and names), so a pass is reproducible and cannot flake; the bounds
are 5 sigma (or a generous chi-square band), tight enough that a broken mixer fails them: with
the identity in place of lowbias32 (h = c ^ k0 ^ k1) sign lanes, row/column and cross-tensor
agreement, chunk histograms, moments and avalanche all fail; with a single lowbias32 round the
xor-relabelled cross-tensor test fails; with an identity mix64, the key tests fail.
"""

from __future__ import annotations

import math

import pytest
import torch

from slt_hw.contract import Dist, Key, Stream, default_scale, derive_key, freeze_thresholds
from slt_hw.reference import prng

N, K = 1024, 1024  # ~1M weights per tensor
NW, KW = 1024, 4096  # sign-word tensor: 1024 x 128 words = 4.2M sign bits


def popcount32(x: torch.Tensor) -> torch.Tensor:
    """Per-element popcount of int64 tensors holding u32 values (SWAR)."""
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    return ((x * 0x01010101) & 0xFFFFFFFF) >> 24


def assert_rate(hits: int, trials: int, p: float, what: str, sigmas: float = 5.0) -> None:
    sd = math.sqrt(trials * p * (1 - p))
    assert abs(hits - trials * p) <= sigmas * sd, (
        f"{what}: {hits}/{trials} = {hits / trials:.5f}, expected {p:.5f} ± {sigmas * sd / trials:.5f}")


def agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """(equal bits, total bits) between two int64 tensors of u32 words."""
    return int((32 - popcount32(a ^ b)).sum()), 32 * a.numel()


@pytest.fixture(scope="module")
def key() -> Key:
    return derive_key(20240611, "blocks.3.mlp.fc1", Stream.WEIGHTS)


@pytest.fixture(scope="module")
def words(key) -> torch.Tensor:
    return prng.sign_words(key, NW, KW)


@pytest.fixture(scope="module")
def chunks(key) -> torch.Tensor:
    return prng.half_words(key, N, K)


# --------------------------------------------------------------------------- (a) (b) signs


def test_sign_balance(key):
    s = default_scale(Dist.SIGNED_CONSTANT, K)
    w = prng.generate(key, N, K, Dist.SIGNED_CONSTANT, s)
    assert bool((w.abs() == s).all())
    assert_rate(int((w < 0).sum()), w.numel(), 0.5, "negative weights")


def test_sign_lanes_balanced(words):
    ones = ((words.reshape(-1, 1) >> torch.arange(32)) & 1).sum(0)
    for lane in range(32):
        assert_rate(int(ones[lane]), words.numel(), 0.5, f"bit lane {lane}")


# --------------------------------------------------------------------------- (c) correlations


def test_adjacent_rows_and_words_uncorrelated(words):
    assert_rate(*agreement(words[1:], words[:-1]), 0.5, "adjacent rows")
    assert_rate(*agreement(words[:, 1:], words[:, :-1]), 0.5, "adjacent words of a row")
    # Per lane too: a correlation confined to a few lanes would hide in the total.
    eq = ~((words[1:] ^ words[:-1]).reshape(-1, 1) >> torch.arange(32)) & 1
    for lane, hits in enumerate(eq.sum(0).tolist()):
        assert_rate(hits, eq.shape[0], 0.5, f"adjacent rows, lane {lane}")


OTHER_KEYS = [  # differ from `key` in name, seed, stream, or all
    (20240611, "blocks.3.mlp.fc2", Stream.WEIGHTS),
    (20240612, "blocks.3.mlp.fc1", Stream.WEIGHTS),
    (20240611, "blocks.3.mlp.fc1", Stream.FREEZE),
    (0, "blocks.4.mlp.fc1", Stream.WEIGHTS),
]


@pytest.mark.parametrize("other", OTHER_KEYS, ids=lambda o: f"{o[0]}-{o[1]}-{int(o[2])}")
def test_tensors_uncorrelated(key, words, other):
    k2 = derive_key(*other)
    w2 = prng.sign_words(k2, NW, KW)
    assert_rate(*agreement(words, w2), 0.5, f"same counters, key {other}")
    # c ^ k0 only relabels counters; the k1 round must make the relabelled streams independent
    # too (with one round, tensor 2 at counter c ^ d would equal tensor 1 at c).
    c = torch.arange(words.numel(), dtype=torch.int64)
    relabelled = prng.hash32(k2, c ^ (key.k0 ^ k2.k0))
    assert_rate(*agreement(words.reshape(-1), relabelled), 0.5, f"xor-relabelled counters, key {other}")


def test_counter_avalanche(key):
    # Flipping one counter bit flips ~16 of the 32 output bits (mean over 2^16 counters).
    c = torch.arange(1 << 16, dtype=torch.int64)
    h = prng.hash32(key, c)
    sd = math.sqrt(32 * 0.25 / c.numel())
    for bit in range(32):
        mean = popcount32(h ^ prng.hash32(key, c ^ (1 << bit))).double().mean().item()
        assert abs(mean - 16) <= 5 * sd, f"counter bit {bit}: {mean:.3f} output bits flip on average"


# --------------------------------------------------------------------------- (d) 16-bit chunks


@pytest.mark.parametrize("half", ["low (even k)", "high (odd k)"])
@pytest.mark.parametrize("byte", ["top", "bottom"])
def test_chunks_uniform(chunks, half, byte):
    x = chunks[:, 0::2] if half.startswith("low") else chunks[:, 1::2]
    b = (x >> 8) if byte == "top" else (x & 0xFF)
    counts = torch.bincount(b.reshape(-1), minlength=256).double()
    expected = b.numel() / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # df = 255: mean 255, sd 22.6. Too small is as suspicious (a counter is perfectly even).
    assert 150 < chi2 < 400, f"chi-square {chi2:.1f} over 256 bins of the {byte} byte, {half}"


# --------------------------------------------------------------------------- (e) values


def moments(w: torch.Tensor) -> tuple[float, float, float, float]:
    w = w.double().reshape(-1)
    mean = w.mean().item()
    c = w - mean
    var = (c * c).mean().item()
    skew = ((c**3).mean() / var**1.5).item()
    kurt = ((c**4).mean() / var**2).item()
    return mean, math.sqrt(var), skew, kurt


def test_uniform_values(key):
    a = default_scale(Dist.UNIFORM, K)
    w = prng.generate(key, N, K, Dist.UNIFORM, a)
    n = w.numel()
    mean, std, skew, kurt = moments(w)
    sd = a / math.sqrt(3)
    assert abs(mean) <= 5 * sd / math.sqrt(n), mean
    # Var(w^2) = 4a^4/45 for U(-a, a), so std's relative error is ~0.45/sqrt(n).
    assert abs(std / sd - 1) <= 5 * 0.45 / math.sqrt(n), std / sd
    assert abs(skew) <= 5 * math.sqrt(6 / n), skew
    assert abs(kurt - 1.8) <= 5 * math.sqrt(1.32 / n), kurt  # U(-a, a): kurtosis 9/5, delta-method sd
    assert float(w.abs().max()) < a and float(w.abs().max()) > 0.999 * a
    assert_rate(int((w > 0).sum()), n, 0.5, "positive uniform weights")


def test_normal_values(key):
    sigma = default_scale(Dist.NORMAL, K)
    w = prng.generate(key, N, K, Dist.NORMAL, sigma)
    n = w.numel()
    mean, std, skew, kurt = moments(w)
    table = prng.normal_table().double()
    assert abs(table.mean().item()) < 1e-12 and abs(table.pow(2).mean().item() - 1) < 1e-6
    t_kurt = table.pow(4).mean().item()  # tails stop at 3.67 sigma: slightly below 3
    assert abs(mean) <= 5 * sigma / math.sqrt(n), mean
    assert abs(std / sigma - 1) <= 5 / math.sqrt(2 * n), std / sigma
    assert abs(skew) <= 5 * math.sqrt(6 / n), skew
    assert abs(kurt - t_kurt) <= 5 * math.sqrt(24 / n), (kurt, t_kurt)
    assert_rate(int((w > 0).sum()), n, 0.5, "positive normal weights")
    assert_rate(int((w.abs() > sigma).sum()), n, float((table.abs() > 1).double().mean()), "|w| > sigma")


# --------------------------------------------------------------------------- (f) freeze states


@pytest.mark.parametrize("p_prune,p_lock", [(0.5, 0.2), (0.9, 0.05), (0.0, 0.3), (0.25, 0.75), (0.01, 0.0)])
def test_freeze_fractions(p_prune, p_lock):
    fkey = derive_key(77, f"frozen.{p_prune}.{p_lock}", Stream.FREEZE)
    prune_thr, lock_thr = freeze_thresholds(p_prune, p_lock)
    s = prng.freeze_states(fkey, N, K, prune_thr, lock_thr)
    n = s.numel()
    p, q = prune_thr / 65536, (lock_thr - prune_thr) / 65536  # exact; within 2^-17 of the ratios
    assert abs(p - p_prune) <= 2**-17 and abs(q - p_lock) <= 2**-16
    counts = torch.bincount(s.reshape(-1).long(), minlength=3).tolist()
    for state, prob, cnt in zip(("pruned", "locked", "free"), (p, q, 1 - p - q), counts, strict=True):
        if prob in (0.0, 1.0):
            assert cnt == n * prob, (state, cnt)
        else:
            assert_rate(cnt, n, prob, state)


# --------------------------------------------------------------------------- (g) keys


SEEDS = [0, 1, 2**32, 12345, 2**63 - 1]
NAMES = ["w", "blocks.0.attn.q_proj", "blocks.1.attn.q_proj", "blocks.0.attn.k_proj", "ünïcode/τensor"]


def test_keys_distinct():
    keys = [derive_key(s, nm, st) for s in SEEDS for nm in NAMES for st in Stream]
    assert len({k.u64 for k in keys}) == len(keys)
    assert len({k.k0 for k in keys}) == len(keys) and len({k.k1 for k in keys}) == len(keys)


def test_key_avalanche():
    flips = []
    for seed in SEEDS:
        for name in NAMES[:2]:
            base = derive_key(seed, name).u64
            for bit in range(63):  # seeds are < 2^63
                flips.append((base ^ derive_key(seed ^ (1 << bit), name).u64).bit_count())
    # Each flip: Binomial(64, 1/2), sd 4.
    assert min(flips) >= 12 and max(flips) <= 52, (min(flips), max(flips))
    mean = sum(flips) / len(flips)
    assert abs(mean - 32) <= 5 * 4 / math.sqrt(len(flips)), mean
    # One name character, and the stream, likewise.
    for a, b in [("blocks.0.attn.q_proj", "blocks.1.attn.q_proj"), ("w", "x"), ("fc1", "fc1 ")]:
        assert 12 <= (derive_key(3, a).u64 ^ derive_key(3, b).u64).bit_count() <= 52
    for seed in SEEDS:
        d = derive_key(seed, "w", Stream.WEIGHTS).u64 ^ derive_key(seed, "w", Stream.FREEZE).u64
        assert 12 <= d.bit_count() <= 52
