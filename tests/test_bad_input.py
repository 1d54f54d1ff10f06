"""Every bad input gets a ValueError/TypeError naming the argument, what was expected and what came."""

import math

import pytest
import torch

from slt_hw import PackedWeight, pack_binary, pack_frozen, pack_multicoat, slt_linear
from slt_hw.contract import derive_key, freeze_thresholds

N, K = 8, 40


@pytest.fixture
def packed():
    return pack_binary(torch.ones(N, K, dtype=torch.bool), seed=1, name="w")


def _kwargs(p, **over):
    d = dict(shape=p.shape, seed=p.seed, name=p.name, dist=p.dist, scale=p.scale, format=p.format,
             planes=p.planes, coat_scales=p.coat_scales)
    d.update(over)
    return d


def test_x_wrong_dtype(packed):
    with pytest.raises(TypeError, match=r"x: expected dtype float32, float16 or bfloat16, got torch.int64"):
        slt_linear(torch.ones(2, K, dtype=torch.int64), packed)


def test_x_not_a_tensor(packed):
    with pytest.raises(TypeError, match=r"x: expected a torch.Tensor, got list"):
        slt_linear([[1.0] * K], packed)


def test_x_wrong_device(packed):
    with pytest.raises(ValueError, match=r"x: expected device cpu .* got meta"):
        slt_linear(torch.ones(2, K, device="meta"), packed)


def test_x_shape_mismatch(packed):
    with pytest.raises(ValueError, match=r"x: expected last dimension in_features=40 .* got x of shape \(2, 41\)"):
        slt_linear(torch.ones(2, K + 1), packed)


def test_x_scalar(packed):
    with pytest.raises(ValueError, match=r"x: expected last dimension"):
        slt_linear(torch.tensor(1.0), packed)


def test_packed_wrong_type():
    with pytest.raises(TypeError, match=r"packed: expected a slt_hw.PackedWeight, got Tensor"):
        slt_linear(torch.ones(2, K), torch.ones(N, K))


def test_bias_wrong_shape(packed):
    with pytest.raises(ValueError, match=r"bias: expected shape \(8,\), got \(7,\)"):
        slt_linear(torch.ones(2, K), packed, torch.ones(N - 1))


def test_bias_wrong_dtype(packed):
    with pytest.raises(TypeError, match=r"bias: expected dtype .* got torch.int32"):
        slt_linear(torch.ones(2, K), packed, torch.ones(N, dtype=torch.int32))


def test_bias_wrong_device(packed):
    with pytest.raises(ValueError, match=r"bias: expected device cpu, got meta"):
        slt_linear(torch.ones(2, K), packed, torch.ones(N, device="meta"))


def test_mask_words_wrong_dtype(packed):
    with pytest.raises(TypeError, match=r"planes: expected dtype torch.int32, got torch.int64"):
        PackedWeight(**_kwargs(packed, planes=packed.planes.long()))


def test_mask_words_wrong_size(packed):
    with pytest.raises(ValueError, match=r"planes: expected shape \(coats, 8, 2\) .* got \(1, 8, 3\)"):
        PackedWeight(**_kwargs(packed, planes=torch.zeros(1, N, 3, dtype=torch.int32)))


def test_mask_words_wrong_rows(packed):
    with pytest.raises(ValueError, match=r"planes: expected shape \(coats, 8, 2\)"):
        PackedWeight(**_kwargs(packed, planes=torch.zeros(1, N + 1, 2, dtype=torch.int32)))


def test_mask_padding_bits_set(packed):
    planes = packed.planes.clone()
    planes[0, 0, 1] = -1  # K = 40: bits 8..31 of the second word are padding
    with pytest.raises(ValueError, match=r"planes: padding bits beyond in_features=40 must be zero"):
        PackedWeight(**_kwargs(packed, planes=planes))


def test_mask_not_a_tensor(packed):
    with pytest.raises(TypeError, match=r"planes: expected a torch.Tensor"):
        PackedWeight(**_kwargs(packed, planes=[[1, 2]]))


def test_binary_with_two_planes(packed):
    with pytest.raises(ValueError, match=r"planes: the binary format has exactly 1 plane, got 2"):
        PackedWeight(**_kwargs(packed, planes=packed.planes.repeat(2, 1, 1), coat_scales=None))


def test_multicoat_not_nested():
    p = pack_multicoat(torch.full((N, K), 2), 2, seed=0, name="w")
    planes = p.planes.clone()
    planes[0, 0, 0] = 0  # coat 2 now has bits coat 1 lacks
    with pytest.raises(ValueError, match=r"planes: multicoat planes must be nested"):
        PackedWeight(**_kwargs(p, planes=planes))


def test_coat_scales_wrong_count():
    p = pack_multicoat(torch.ones(N, K, dtype=torch.long), 2, seed=0, name="w")
    with pytest.raises(ValueError, match=r"coat_scales: expected 2 values \(one per plane\), got 3"):
        PackedWeight(**_kwargs(p, coat_scales=torch.ones(3)))


def test_coat_scales_non_finite():
    p = pack_multicoat(torch.ones(N, K, dtype=torch.long), 2, seed=0, name="w")
    with pytest.raises(ValueError, match=r"coat_scales: expected finite values"):
        PackedWeight(**_kwargs(p, coat_scales=torch.tensor([1.0, math.nan])))


def test_levels_out_of_range():
    with pytest.raises(ValueError, match=r"levels: expected values in \[0, 2\]"):
        pack_multicoat(torch.full((N, K), 3), 2, seed=0, name="w")


def test_levels_wrong_dtype():
    with pytest.raises(TypeError, match=r"levels: expected an integer tensor of coat levels, got torch.float32"):
        pack_multicoat(torch.ones(N, K), 2, seed=0, name="w")


def test_mask_not_binary():
    with pytest.raises(ValueError, match=r"mask: expected a bool tensor or an integer tensor of 0s and 1s"):
        pack_binary(torch.full((N, K), 2), seed=0, name="w")


def test_mask_wrong_rank():
    with pytest.raises(ValueError, match=r"mask: expected the weight's shape"):
        pack_binary(torch.ones(K, dtype=torch.bool), seed=0, name="w")


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64])
def test_seed_out_of_range(seed):
    with pytest.raises(ValueError, match=rf"seed: expected an int in \[0, 2\*\*63 - 1\], got {seed}"):
        pack_binary(torch.ones(N, K, dtype=torch.bool), seed=seed, name="w")


@pytest.mark.parametrize("seed", [1.5, "1", None, True])
def test_seed_wrong_type(seed):
    with pytest.raises(TypeError, match=r"seed: expected an int"):
        pack_binary(torch.ones(N, K, dtype=torch.bool), seed=seed, name="w")


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-50, 1e39])
def test_scale_not_finite_positive(scale):
    with pytest.raises(ValueError, match=r"scale: "):
        pack_binary(torch.ones(N, K, dtype=torch.bool), seed=0, name="w", scale=scale)


def test_gain_not_finite():
    with pytest.raises(ValueError, match=r"gain: expected a finite float > 0, got nan"):
        pack_binary(torch.ones(N, K, dtype=torch.bool), seed=0, name="w", gain=math.nan)


def test_unknown_distribution():
    want = r"dist: expected one of \['signed_constant', 'uniform', 'normal'\], got 'laplace'"
    with pytest.raises(ValueError, match=want):
        pack_binary(torch.ones(N, K, dtype=torch.bool), seed=0, name="w", dist="laplace")


def test_unknown_format(packed):
    with pytest.raises(ValueError, match=r"format: expected one of \['binary', 'multicoat', 'frozen'\], got 'ternary'"):
        PackedWeight(**_kwargs(packed, format="ternary"))


def test_empty_name():
    with pytest.raises(ValueError, match=r"name: expected a non-empty tensor name"):
        pack_binary(torch.ones(N, K, dtype=torch.bool), seed=0, name="")


def test_bad_shape(packed):
    with pytest.raises(ValueError, match=r"shape: expected \(out_features, in_features, ...\)"):
        PackedWeight(**_kwargs(packed, shape=(N,)))


def test_tensor_too_large_for_counters():
    with pytest.raises(ValueError, match=r"more than 2\*\*32 padded weights"):
        derive_key(0, "w")  # fine
        PackedWeight(**_kwargs(pack_binary(torch.ones(1, 1, dtype=torch.bool), seed=0, name="w"),
                               shape=(2**17, 2**16)))


def test_freeze_ratios_out_of_range():
    with pytest.raises(ValueError, match=r"p_prune: expected a float in \[0, 1\], got 1.5"):
        freeze_thresholds(1.5, 0.0)
    with pytest.raises(ValueError, match=r"p_prune \+ p_lock: expected <= 1, got 0.7 \+ 0.5"):
        pack_frozen(torch.ones(N, K, dtype=torch.bool), seed=0, name="w", p_prune=0.7, p_lock=0.5)


def test_free_bits_wrong_size():
    p = pack_frozen(torch.ones(N, K, dtype=torch.bool), seed=0, name="w", p_prune=0.2, p_lock=0.2)
    with pytest.raises(ValueError, match=r"free_bits: expected \d+ words for the \d+ free weights .* got 9"):
        PackedWeight(p.shape, p.seed, p.name, p.dist, p.scale, p.format, free_bits=torch.zeros(9, dtype=torch.int32),
                     prune_threshold=p.prune_threshold, lock_threshold=p.lock_threshold)


def test_free_bits_for_another_seed():
    """A stream packed for one seed is refused under another seed whose free count differs (the
    checkpoint's checksum catches the rest)."""
    p = pack_frozen(torch.ones(64, 2000, dtype=torch.bool), seed=0, name="w", p_prune=0.4, p_lock=0.2)
    with pytest.raises(ValueError, match=r"free_bits: expected .*wrong seed, name or thresholds"):
        PackedWeight(p.shape, 1, p.name, p.dist, p.scale, p.format, free_bits=p.free_bits,
                     prune_threshold=p.prune_threshold, lock_threshold=p.lock_threshold)


def test_thresholds_out_of_order():
    p = pack_frozen(torch.ones(N, K, dtype=torch.bool), seed=0, name="w", p_prune=0.2, p_lock=0.2)
    with pytest.raises(ValueError, match=r"lock_threshold: expected >= prune_threshold"):
        PackedWeight(p.shape, p.seed, p.name, p.dist, p.scale, p.format, free_bits=p.free_bits,
                     prune_threshold=30000, lock_threshold=100)


def test_unknown_backend(packed):
    with pytest.raises(ValueError, match=r"backend: expected one of .*'reference'.* got 'fast'"):
        slt_linear(torch.ones(2, K), packed, backend="fast")


def test_forced_backend_that_cannot_run(packed, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"backend argument: backend 'cuda' cannot run linear_planes on cpu"):
        slt_linear(torch.ones(2, K), packed, backend="cuda")


def test_env_backend_unknown(packed, monkeypatch):
    monkeypatch.setenv("SLT_HW_BACKEND", "nope")
    with pytest.raises(ValueError, match=r"backend: expected one of"):
        slt_linear(torch.ones(2, K), packed)


@pytest.mark.parametrize("fmt", ["binary", "multicoat"])
def test_padding_bits_set_in_place_are_ignored(fresh_cache, monkeypatch, fmt):
    """Validation runs when a PackedWeight is made, not per call, so a mask edited in place may
    set the padding bits past in_features: every kernel ignores them (the register kernels, the
    table lookups and the VNNI panels, from the mask and from layouts cached after the edit), as
    the reference does: the outputs of the clean mask, bit for bit."""
    from packing import random_packed

    from slt_hw import _ext
    from slt_hw.backends import cpu
    from slt_hw.ops import slt_linear_int8

    backends = ["reference"] + ([] if _ext.native() is None else ["cpp"])
    k = 97  # (the last word's bits 1..31 are padding)
    p = random_packed(fmt, "signed_constant", 600, k, seed=2)
    xs = [torch.randn(m, k, generator=torch.Generator().manual_seed(m)) for m in (1, 4, 24)]
    runs = [(fn, backend, lut) for fn in (slt_linear, slt_linear_int8) for backend in backends
            for lut in (["on", "off"] if backend == "cpp" else ["auto"])]

    def outputs():
        out = []
        for fn, backend, lut in runs:
            monkeypatch.setenv(cpu.LUT_ENV, lut)
            out += [fn(x, p, backend=backend) for x in xs for _ in range(3)]  # (layouts from the 2nd call)
        return out

    clean = outputs()
    p.planes[..., -1] |= torch.tensor(-2, dtype=torch.int32)  # bits 1..31 set, in place
    assert all(torch.equal(a, b) for a, b in zip(outputs(), clean, strict=True))
