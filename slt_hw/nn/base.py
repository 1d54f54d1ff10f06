"""Search layers: frozen random weights from the contract, trainable scores, a supermask.

Weight identity: the weights of a layer are `generate(derive_key(seed, name), N, K, dist, scale)`
with `name` given at construction (`convert` uses the module's qualified name, e.g.
"blocks.0.attn.q_proj"). They are a non-persistent buffer (regenerated from the seed, never
saved) and bit-identical to what the packed layer regenerates. Scores are the only Parameters
(plus an optional bias).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..contract import (
    DEFAULT_GAIN,
    Dist,
    Stream,
    check_name,
    check_positive_finite,
    check_scale,
    check_seed,
    derive_key,
    freeze_thresholds,
)
from ..reference.prng import FREE, LOCKED, PRUNED, freeze_states, generate
from ..search.masks import coat_taus, levels
from ..search.threshold import check_sparsity

METHODS = ("edge_popup", "multicoat")


def _score_generator(seed: int, name: str) -> torch.Generator:
    """Scores are learned, not part of the contract: a CPU generator keyed like the weights."""
    return torch.Generator().manual_seed(derive_key(seed, name).u64 & (2**63 - 1))


class SLTLayer(nn.Module):
    """Base of SLTLinear / SLTConv2d: weight0 buffer, scores, and the mask rule.

    sparsity: fraction of weights removed (coat 1 for multicoat).
    num_coats, coat_sparsities: M-Sup; coat_sparsities=None with num_coats > 1 = adaptive coats.
    p_prune, p_lock: partially frozen source (pattern from the contract's FREEZE stream).
    rescale: fold 1/√(1 − sparsity) into the weight scale (static: the sparsity at construction).
    scale_multiplier: extra factor folded into the scale (e.g. the MHA paper's n_K^{1/4} on Q/K).
    """

    def _init_slt(self, shape: tuple[int, ...], *, seed: int, name: str, sparsity: float = 0.5,
                  num_coats: int = 1, coat_sparsities: tuple[float, ...] | None = None,
                  p_prune: float = 0.0, p_lock: float = 0.0, rescale: bool = False,
                  dist: Dist | str = Dist.SIGNED_CONSTANT, scale: float | None = None,
                  gain: float = DEFAULT_GAIN, scale_multiplier: float = 1.0) -> None:
        self.seed = check_seed(seed)
        self.name = check_name(name)
        self.dist = Dist.parse(dist)
        self.weight_shape = tuple(shape)
        n, k = shape[0], math.prod(shape[1:])
        self.sparsity = check_sparsity(sparsity)
        if isinstance(num_coats, bool) or not isinstance(num_coats, int) or num_coats < 1:
            raise ValueError(f"num_coats: expected an int >= 1, got {num_coats!r}")
        self.num_coats = num_coats
        if coat_sparsities is not None:
            cs = tuple(check_sparsity(s, "coat_sparsities") for s in coat_sparsities)
            if len(cs) != num_coats or any(a >= b for a, b in zip(cs, cs[1:], strict=False)):
                raise ValueError(f"coat_sparsities: expected {num_coats} increasing values, got {coat_sparsities!r}")
            self.sparsity = cs[0]
            coat_sparsities = cs
        self.coat_sparsities = coat_sparsities
        self.p_prune, self.p_lock = float(p_prune), float(p_lock)
        self.frozen = p_prune > 0 or p_lock > 0
        if self.frozen and num_coats > 1:
            raise ValueError("p_prune, p_lock: partial freezing is defined for binary masks (num_coats=1)")
        self.prune_threshold, self.lock_threshold = freeze_thresholds(p_prune, p_lock)
        self.rescale = bool(rescale)
        check_positive_finite(scale_multiplier, "scale_multiplier")
        check_positive_finite(gain, "gain")  # checked even when an explicit scale wins over it
        if scale is None:  # binary64, rounded once to float32 below (docs/rng.md §6)
            base = gain * math.sqrt(3.0 / k) if self.dist is Dist.UNIFORM else gain / math.sqrt(k)
        else:
            base = check_scale(scale)
        if self.rescale:
            base /= math.sqrt(1.0 - self.sparsity)
        arg = "scale" if scale is not None else "gain" if scale_multiplier == 1.0 else "gain, scale_multiplier"
        self.scale = check_scale(base * scale_multiplier, arg)
        self.register_buffer("weight0", generate(derive_key(self.seed, self.name), n, k, self.dist,
                                                 self.scale).reshape(shape), persistent=False)
        if self.frozen:
            st = freeze_states(derive_key(self.seed, self.name, Stream.FREEZE), n, k,
                               self.prune_threshold, self.lock_threshold).reshape(shape)
            self.register_buffer("freeze_state", st, persistent=False)
            # fixed by the seed: precomputed so the mask needs no data-dependent shape or host sync
            self.register_buffer("free_index", (st.reshape(-1) == FREE).nonzero().reshape(-1), persistent=False)
            self.num_pruned = int((st == PRUNED).sum())
        else:
            self.freeze_state = self.free_index = None
            self.num_pruned = 0
        self.scores = nn.Parameter(self._init_scores(0))
        self.extra_scores = nn.ParameterList()
        self.mask_index = 0
        self.global_taus: list[float] | None = None

    def _init_scores(self, copy: int) -> torch.Tensor:
        """Kaiming-uniform (a = √5), PyTorch's default layer init, as Edge-Popup."""
        g = _score_generator(self.seed, self.name if copy == 0 else f"{self.name}#scores{copy}")
        fan_in = math.prod(self.weight_shape[1:])
        bound = 1.0 / math.sqrt(fan_in)
        return (torch.rand(self.weight_shape, generator=g) * 2 - 1) * bound

    # ------------------------------------------------------------------ masks

    def set_mask_copies(self, copies: int) -> None:
        """Unshared masks: `copies` independent score tensors over the same random weights."""
        dev = self.scores.device
        while len(self.extra_scores) < copies - 1:
            self.extra_scores.append(nn.Parameter(self._init_scores(len(self.extra_scores) + 1).to(dev)))

    @property
    def num_masks(self) -> int:
        return 1 + len(self.extra_scores)

    def score_tensors(self) -> list[torch.Tensor]:
        return [self.scores, *self.extra_scores]

    def set_sparsity(self, sparsity: float) -> None:
        s = check_sparsity(sparsity)
        if self.coat_sparsities is not None:
            raise ValueError("sparsity: a schedule needs adaptive coats (coat_sparsities=None)")
        self.sparsity = s

    def free_scores(self, scores: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(|scores| of free weights, all weights, pruned weights)."""
        a = scores.detach().abs().reshape(-1)
        if self.free_index is None:
            return a, a.numel(), 0
        return a[self.free_index], a.numel(), self.num_pruned

    def thresholds(self, index: int | None = None) -> list[float]:
        """Per-coat thresholds τ_1 ≤ … ≤ τ_K as floats (the mask keeps |score| > τ_k)."""
        return [float(t) for t in self._taus(index)]

    def _taus(self, index: int | None = None) -> list:
        if self.global_taus is not None:
            return self.global_taus
        scores = self.score_tensors()[self.mask_index if index is None else index]
        free, total, pruned = self.free_scores(scores)
        sparsities = (self.sparsity,) if self.coat_sparsities is None else self.coat_sparsities
        return coat_taus(free, total, pruned, sparsities, self.num_coats)

    def mask(self, index: int | None = None) -> torch.Tensor:
        """Float mask levels in {0..num_coats} shaped like the weight; gradients reach the scores."""
        i = self.mask_index if index is None else index
        scores = self.score_tensors()[i]
        with torch.no_grad():
            taus = self._taus(i)
        m = levels(scores.abs(), taus)
        if self.freeze_state is not None:
            m = torch.where(self.freeze_state == LOCKED, 1.0, torch.where(self.freeze_state == PRUNED, 0.0, m))
        return m

    def effective_weight(self, index: int | None = None) -> torch.Tensor:
        # + 0.0 turns the -0.0 of pruned negative weights into the reference's +0.0 while keeping
        # the straight-through gradient for pruned weights (torch.where would cut it)
        return self.weight0 * self.mask(index) + 0.0

    def extra_repr(self) -> str:
        kind = f"multicoat(K={self.num_coats})" if self.num_coats > 1 else "edge_popup"
        fz = f", p_prune={self.p_prune}, p_lock={self.p_lock}" if self.frozen else ""
        return (f"shape={self.weight_shape}, name={self.name!r}, seed={self.seed}, {kind}, "
                f"sparsity={self.sparsity}{fz}, dist={self.dist.value}, masks={self.num_masks}")


def _slt_kwargs(kw: dict) -> dict:
    return {k: (v.value if isinstance(v, Dist) else v) for k, v in kw.items()}


class SLTLinear(SLTLayer):
    """y = x (W0 ⊙ M)ᵀ (+ b). W0 is regenerated from (seed, name); M from the scores."""

    def __init__(self, in_features: int, out_features: int, *, seed: int, name: str, bias: bool = False,
                 **slt):
        super().__init__()
        for arg, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg}: expected an int >= 1, got {v!r}")
        self.in_features, self.out_features = in_features, out_features
        self._init_slt((out_features, in_features), seed=seed, name=name, **slt)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self._arch = {"in_features": in_features, "out_features": out_features, "seed": seed, "name": name,
                      "bias": bool(bias), **_slt_kwargs(slt)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_sparse:  # e.g. bag-of-words node features (Planetoid): only the non-zeros are multiplied
            y = torch.sparse.mm(x.to(torch.float32), self.effective_weight().t())
            return y if self.bias is None else y + self.bias.to(torch.float32)
        # the same operations as the reference backend, so packed outputs match bit for bit
        y = F.linear(x.to(torch.float32), self.effective_weight())
        if self.bias is not None:
            y = y + self.bias.to(torch.float32)
        return y.to(x.dtype)


def _pair(v, arg: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in t):
        raise ValueError(f"{arg}: expected an int or a pair of ints, got {v!r}")
    return t


class SLTConv2d(SLTLayer):
    """2-D convolution (groups = 1, zero padding) with a supermasked random weight."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, *, seed: int, name: str,
                 stride=1, padding=0, dilation=1, bias: bool = False, **slt):
        super().__init__()
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg}: expected an int >= 1, got {v!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride, self.padding, self.dilation = (_pair(stride, "stride"), _pair(padding, "padding"),
                                                    _pair(dilation, "dilation"))
        self._init_slt((out_channels, in_channels, *self.kernel_size), seed=seed, name=name, **slt)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._arch = {"in_channels": in_channels, "out_channels": out_channels,
                      "kernel_size": list(self.kernel_size), "seed": seed, "name": name,
                      "stride": list(self.stride), "padding": list(self.padding),
                      "dilation": list(self.dilation), "bias": bool(bias), **_slt_kwargs(slt)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.effective_weight(), None, self.stride, self.padding, self.dilation)
        return y if self.bias is None else y + self.bias[:, None, None]
