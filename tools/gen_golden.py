"""Regenerate tests/golden/contract_v1.json from the reference (only when the contract changes,
together with CONTRACT_VERSION); the tests check the reference against a scalar spec too."""

from __future__ import annotations

import json
import pathlib
import zlib

import torch

from slt_hw.contract import CONTRACT_VERSION, Dist, Stream, default_scale, derive_key, f32_bits, freeze_thresholds
from slt_hw.reference.prng import freeze_states, generate, hash32

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "golden" / f"contract_v{CONTRACT_VERSION}.json"

KEYS = [(0, "w", 0), (1, "w", 0), (1, "w", 1), (2**63 - 1, "blocks.0.attn.q_proj", 0),
        (12345, "layer.weight", 1), (42, "ünïcode/τensor", 0)]
HASHES = [(0, 0, 0), (0, 0, 1), (1, 0, 0), (0, 1, 0), (0xDEADBEEF, 0x12345678, 0xFFFFFFFF),
          (0x9E3779B9, 0x7F4A7C15, 1000003)]
WEIGHTS = [  # seed, name, (N, K), dist
    (0, "fc1", (4, 32), "signed_constant"),
    (7, "fc2", (3, 37), "signed_constant"),
    (123456789, "conv1", (16, 27), "signed_constant"),
    (7, "fc2", (3, 37), "uniform"),
    (2024, "attn.k", (5, 64), "uniform"),
    (7, "fc2", (3, 37), "normal"),
    (99, "mlp.out", (8, 100), "normal"),
    (2**63 - 1, "big", (33, 257), "signed_constant"),
]
FREEZE = [  # seed, name, (N, K), p_prune, p_lock
    (3, "fc1", (16, 70), 0.5, 0.2),
    (11, "conv", (8, 33), 0.7, 0.0),
    (11, "conv", (8, 33), 0.0, 0.3),
]


def f32_crc(t: torch.Tensor) -> int:
    return zlib.crc32(t.contiguous().view(torch.int32).numpy().tobytes())


def main() -> None:
    doc = {"contract_version": CONTRACT_VERSION, "keys": [], "hashes": [], "weights": [], "freeze": []}
    for seed, name, stream in KEYS:
        k = derive_key(seed, name, stream)
        doc["keys"].append({"seed": seed, "name": name, "stream": stream, "k0": k.k0, "k1": k.k1})
    for k0, k1, c in HASHES:
        from slt_hw.contract import Key

        hv = int(hash32(Key(k0, k1), torch.tensor([c], dtype=torch.int64))[0])
        doc["hashes"].append({"k0": k0, "k1": k1, "counter": c, "hash": hv})
    for seed, name, (n, kk), dist in WEIGHTS:
        key = derive_key(seed, name, Stream.WEIGHTS)
        scale = default_scale(dist, kk)
        w = generate(key, n, kk, dist, scale)
        doc["weights"].append({
            "seed": seed, "name": name, "shape": [n, kk], "dist": Dist.parse(dist).value,
            "k0": key.k0, "k1": key.k1, "scale_f32_bits": f32_bits(scale),
            "head_f32_bits": [int(b) & 0xFFFFFFFF for b in w.flatten()[:16].view(torch.int32)],
            "crc32": f32_crc(w), "sum": float(w.double().sum()),
        })
    for seed, name, (n, kk), pp, pl in FREEZE:
        key = derive_key(seed, name, Stream.FREEZE)
        p, pl_ = freeze_thresholds(pp, pl)
        st = freeze_states(key, n, kk, p, pl_)
        doc["freeze"].append({
            "seed": seed, "name": name, "shape": [n, kk], "p_prune": pp, "p_lock": pl,
            "prune_threshold": p, "lock_threshold": pl_, "k0": key.k0, "k1": key.k1,
            "counts": [int((st == s).sum()) for s in range(3)],
            "crc32": zlib.crc32(st.numpy().tobytes()), "head": st.flatten()[:32].tolist(),
        })
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
