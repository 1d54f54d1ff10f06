"""Test vectors from slt_hw's reference: jobs (commands and mask/stream input) for a tensor, and the
beats the hardware must produce, computed by `slt_hw.reference` (never by the RTL's own logic).

A job covers whole rows [r0, r1) of an (N, K) tensor; its hash count must be a multiple of units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import _normal_table, formats
from ..contract import Dist, Key, words_per_row
from ..formats import Format, PackedWeight
from ..reference import masks as ref_masks
from ..reference import prng
from .params import RtlParams


@dataclass
class Job:
    cmd: dict[str, int]  # command port (without the cmd_ prefix) -> value
    mask: list[int] = field(default_factory=list)  # mask_data per beat (binary, multicoat)
    fb: list[int] = field(default_factory=list)  # fb_data beats of the free-bit stream (frozen)
    expect: list[tuple[int, int]] = field(default_factory=list)  # (out_level, out_code) per beat
    rows: tuple[int, int] = (0, 0)


def _pack(values, bits: int) -> int:
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return out


def lane_codes(p: RtlParams, key: Key, base: int, hashes: int) -> list[int]:
    """The value code of each weight of `hashes` consecutive hashes from counter `base`."""
    h = prng.hash32(key, torch.arange(base, base + hashes, dtype=torch.int64)).tolist()
    if p.dist is Dist.SIGNED_CONSTANT:
        return [(x >> j) & 1 for x in h for j in range(32)]
    chunks = [(x >> (16 * j)) & 0xFFFF for x in h for j in range(2)]
    if p.dist is Dist.UNIFORM:
        return [(2 * x - 65535) & 0x1FFFF for x in chunks]  # the odd level as 17-bit two's complement
    table = _normal_table.NORMAL_TABLE_F32_BITS
    return [table[x >> 4] for x in chunks]


def padded_levels(p: RtlParams, w: PackedWeight) -> torch.Tensor:
    """(N, Kp) int64 level of every weight: coats set (binary/multicoat) or the frozen mask bit."""
    n, k = w.out_features, w.in_features
    kp = words_per_row(k) * 32
    out = torch.zeros(n, kp, dtype=torch.int64)
    if p.format is Format.FROZEN:
        states = w.freeze_states()
        out[:, :k] = ref_masks.unpack_free_bits(w.free_bits, states).to(torch.int64)
    else:
        out[:, :k] = prng.unpack_bits(w.planes, k).to(torch.int64).sum(0)
    return out


def _plane_bits(w: PackedWeight) -> torch.Tensor:
    """(C, N·Kp) bool plane bits in the padded row-major order."""
    c, n, nw = w.planes.shape
    return prng.unpack_bits(w.planes.reshape(c, n * nw), n * nw * 32)


def build_job(p: RtlParams, w: PackedWeight, r0: int, r1: int) -> Job:
    n, k = w.out_features, w.in_features
    nw = words_per_row(k)
    kp = nw * 32
    per_row = nw if p.dist is Dist.SIGNED_CONSTANT else kp // 2  # hashes per row
    hashes = (r1 - r0) * per_row
    if hashes % p.units or not 0 <= r0 < r1 <= n:
        raise ValueError(f"rows [{r0}, {r1}): {hashes} hashes is not a multiple of units={p.units}")
    base = r0 * per_row
    cmd = {"k0": w.key.k0, "k1": w.key.k1, "base": base, "steps": hashes // p.units}
    codes = lane_codes(p, w.key, base, hashes)
    levels = padded_levels(p, w)[r0:r1].reshape(-1).tolist()
    b, lb, cb = p.beat, p.level_bits, p.code_bits
    job = Job(cmd=cmd, rows=(r0, r1))
    for i in range(0, len(codes), b):
        job.expect.append((_pack(levels[i:i + b], lb), _pack(codes[i:i + b], cb)))
    if p.format is Format.FROZEN:
        fk = w.freeze_key
        offset = int(ref_masks.frozen_offsets(fk, n, k, w.prune_threshold, w.lock_threshold)[r0, 0])
        cmd.update(fk0=fk.k0, fk1=fk.k1, prune=w.prune_threshold, lock=w.lock_threshold, skip=offset % 32,
                   words=nw, tail=k % 32, wcol=0)
        words = [x & 0xFFFFFFFF for x in w.free_bits.tolist()][offset // 32:]
        per = p.fb_width // 32
        job.fb = [_pack(words[i:i + per], 32) for i in range(0, len(words), per)]
    else:
        bits = _plane_bits(w)[:, r0 * kp:r1 * kp].to(torch.int64)
        job.mask = [_pack(bits[:, i:i + b].reshape(-1).tolist(), 1) for i in range(0, bits.shape[1], b)]
    return job


def make_weight(p: RtlParams, n: int, k: int, seed: int, name: str, mask_seed: int = 0) -> PackedWeight:
    """A packed (n, k) weight in p's distribution and format with a random mask (half density)."""
    g = torch.Generator().manual_seed(mask_seed)
    if p.format is Format.BINARY:
        return formats.pack_binary(torch.rand(n, k, generator=g) < 0.5, seed=seed, name=name, dist=p.dist)
    if p.format is Format.MULTICOAT:
        scales = torch.tensor([1.0, 0.5, 0.375, 3.0] * 4, dtype=torch.float32)[:p.coats]
        levels = torch.randint(0, p.coats + 1, (n, k), generator=g)
        return formats.pack_multicoat(levels, p.coats, seed=seed, name=name, dist=p.dist, coat_scales=scales)
    return formats.pack_frozen(torch.rand(n, k, generator=g) < 0.5, seed=seed, name=name, p_prune=0.3,
                               p_lock=0.2, dist=p.dist)


# Edge seeds and names: the largest seed, a non-ASCII name (its UTF-8 bytes are hashed).
EDGE_TENSORS = ((0, "w"), (2**63 - 1, "blocks.0.attn.q_proj"), (12345, "ŝlt/π·層"))


def standard_jobs(p: RtlParams, k: int = 40) -> list[Job]:
    """The emitted testbench's vectors: per edge tensor, (2·units, k) weights in two jobs of units rows."""
    jobs = []
    for i, (seed, name) in enumerate(EDGE_TENSORS):
        w = make_weight(p, 2 * p.units, k, seed, name, mask_seed=i)
        jobs += [build_job(p, w, 0, p.units), build_job(p, w, p.units, 2 * p.units)]
    return jobs


def unpack_beats(p: RtlParams, beats: list[tuple[int, int]], rows: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, k) int64 levels and codes from the beats of jobs covering `rows` whole rows."""
    lm, cm = (1 << p.level_bits) - 1, (1 << p.code_bits) - 1
    lv = [(lvl >> (i * p.level_bits)) & lm for lvl, _ in beats for i in range(p.beat)]
    cd = [(code >> (i * p.code_bits)) & cm for _, code in beats for i in range(p.beat)]
    kp = words_per_row(k) * 32
    return tuple(torch.tensor(x, dtype=torch.int64).view(rows, kp)[:, :k] for x in (lv, cd))
