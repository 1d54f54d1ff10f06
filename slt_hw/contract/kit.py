"""The conformance kit: golden vectors of the contract for other implementations (an RTL team,
another framework), a worked answer, and the checker (docs/rng.md §9).

`write_vectors(dir)` writes one JSON file per part of the contract. Each is self-describing:
`description` (what to compute, the section of docs/rng.md), `inputs` / `outputs` (each field
and its encoding), and `cases`, each `{"id", "inputs", "expected"}`. An implementation reads the
inputs and writes a file of the same name holding `{"cases": [{"id", "outputs"}]}`, the outputs
encoded like `expected`; `check(vectors, results)` compares them exactly. Encodings: 32-bit
values as JSON integers (float32 as their bit patterns), 64-bit values as "0x…" hex strings (a
JSON double cannot hold them), arrays flattened row-major.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..reference import masks, prng
from . import CONTRACT_VERSION, Dist, Key, Stream, default_scale, derive_key, f32_bits, fnv1a64, words_per_row

SEEDS = [0, 1, 42, 2**32 - 1, 2**32, 2**63 - 1]
NAMES = ["a", "fc", "blocks.0.attn.q_proj", "層.1", "🎲 with spaces", "nul\x00inside", "w" * 300]
SHAPES = [(1, 1), (3, 33), (4, 70)]
SCALES = [None, 0.1, 1e-40, 5e37]  # None: the default; 1e-40 is a subnormal float32 (kept, never flushed)
COUNTERS = [0, 1, 2, 31, 32, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
THRESHOLDS = [(0, 0), (0, 65536), (65536, 65536), (19661, 32768), (32768, 65536)]
FILES = ("keys", "hash", "weights", "freeze", "masks")


def _hex64(v: int) -> str:
    return f"0x{v:016x}"


def _bits(t: torch.Tensor) -> list[int]:
    """float32 or int32 words as their u32 patterns, flattened."""
    t = t.contiguous().view(torch.int32) if t.dtype == torch.float32 else t.to(torch.int32)
    return [v & 0xFFFFFFFF for v in t.reshape(-1).tolist()]


def _scale(dist: Dist, k: int, scale: float | None) -> float:
    from . import check_scale

    return default_scale(dist, k) if scale is None else check_scale(scale)


def _file(kind: str, description: str, inputs: dict, outputs: dict, cases: list) -> dict:
    return {"contract_version": CONTRACT_VERSION, "kind": kind, "description": description, "inputs": inputs,
            "outputs": outputs, "cases": cases}


def _keys() -> dict:
    cases = [{"id": f"seed{i}-name{j}-stream{s}", "inputs": {"seed": _hex64(seed), "name": name, "stream": s},
              "expected": {"fnv1a64": _hex64(fnv1a64(name.encode())), "key64": _hex64(derive_key(seed, name, s).u64),
                           "k0": derive_key(seed, name, s).k0, "k1": derive_key(seed, name, s).k1}}
             for i, seed in enumerate(SEEDS) for j, name in enumerate(NAMES) for s in (0, 1)]
    return _file("keys", "§2: the per-tensor key of (seed, name, stream)",
                 {"seed": "u64 hex", "name": "str (hash its UTF-8 bytes)", "stream": "0 weights, 1 freeze"},
                 {"fnv1a64": "u64 hex of the name's UTF-8 bytes", "key64": "u64 hex", "k0": "u32", "k1": "u32"}, cases)


def _hash() -> dict:
    keys = [derive_key(0, "fc"), derive_key(2**63 - 1, "層.1", 1), Key(0, 0), Key(0xFFFFFFFF, 0xFFFFFFFF)]
    cases = [{"id": f"key{i}-c{c:#x}", "inputs": {"k0": key.k0, "k1": key.k1, "counter": c},
              "expected": {"h": int(prng.hash32(key, torch.tensor([c], dtype=torch.int64)).item())}}
             for i, key in enumerate(keys) for c in COUNTERS]
    return _file("hash", "§3: h(k0, k1, c) = lowbias32(lowbias32(c ^ k0) ^ k1)",
                 {"k0": "u32", "k1": "u32", "counter": "u32"}, {"h": "u32"}, cases)


def _weights() -> dict:
    cases = []
    for dist in Dist:
        for n, k in SHAPES:
            for scale in SCALES:
                s = _scale(dist, k, scale)
                seed, name = SEEDS[(n + k) % len(SEEDS)], NAMES[(n * k) % len(NAMES)]
                w = prng.generate(derive_key(seed, name), n, k, dist, s)
                cases.append({"id": f"{dist.value}-{n}x{k}-{'default' if scale is None else scale}",
                              "inputs": {"seed": _hex64(seed), "name": name, "dist": dist.value, "dist_code": dist.code,
                                         "shape": [n, k], "scale_bits": f32_bits(s)},
                              "expected": {"w0_bits": _bits(w)}})
    return _file("weights", "§4-§6: the random weights W0 (N, K) of stream 0; scale_bits is the float32 scale "
                 "(the default one where the id says so: gain √2, §6)",
                 {"seed": "u64 hex", "name": "str", "dist": "name", "dist_code": "0 signed_constant, 1 uniform, "
                  "2 normal", "shape": "[N, K]", "scale_bits": "float32 bits"},
                 {"w0_bits": "N·K float32 bits, row-major"}, cases)


def _freeze() -> dict:
    cases = []
    for i, (p, pl) in enumerate(THRESHOLDS):
        n, k = SHAPES[1 + i % 2]
        seed, name = SEEDS[i], NAMES[i]
        st = prng.freeze_states(derive_key(seed, name, Stream.FREEZE), n, k, p, pl)
        cases.append({"id": f"P{p}-PL{pl}-{n}x{k}", "inputs": {"seed": _hex64(seed), "name": name, "shape": [n, k],
                                                             "prune_threshold": p, "lock_threshold": pl},
                      "expected": {"states": [int(v) for v in st.reshape(-1).tolist()]}})
    return _file("freeze", "§7: freeze states of stream 1: 0 pruned (x < P), 1 locked (P <= x < P + L), 2 free",
                 {"seed": "u64 hex", "name": "str", "shape": "[N, K]", "prune_threshold": "P",
                  "lock_threshold": "P + L"}, {"states": "N·K values in {0, 1, 2}, row-major"}, cases)


def _masks() -> dict:
    g = torch.Generator().manual_seed(16)
    cases = []
    for fmt, coats in (("binary", [1.0]), ("multicoat", [1.3, -0.7, 0.45]), ("multicoat", [0.1, 0.2]),
                       ("frozen", [1.0])):
        for dist in Dist:
            n, k = SHAPES[2]
            seed, name = SEEDS[len(cases) % len(SEEDS)], NAMES[len(cases) % len(NAMES)]
            key, fkey, s = derive_key(seed, name), derive_key(seed, name, Stream.FREEZE), default_scale(dist, k)
            inputs = {"seed": _hex64(seed), "name": name, "dist": dist.value, "dist_code": dist.code, "shape": [n, k],
                      "scale_bits": f32_bits(s), "format": fmt}
            if fmt == "frozen":
                p, pl = THRESHOLDS[3]
                states = prng.freeze_states(fkey, n, k, p, pl)
                free = masks.pack_free_bits(torch.rand(n, k, generator=g) < 0.5, states)
                w = masks.materialize_frozen(key, fkey, n, k, dist, s, free, p, pl)
                inputs.update(prune_threshold=p, lock_threshold=pl, free_bits=_bits(free))
                expected = {"w_eff_bits": _bits(w), "offsets": masks.frozen_offsets(fkey, n, k, p, pl).reshape(-1)
                            .tolist()}
            else:
                levels = torch.randint(0, len(coats) + 1, (n, k), generator=g)
                planes = torch.stack([masks.pack_bits(levels > i) for i in range(len(coats))])
                cs = torch.tensor(coats, dtype=torch.float32)
                w = masks.materialize_planes(key, n, k, dist, s, planes, cs)
                inputs.update(coat_scale_bits=_bits(cs), planes=_bits(planes))
                expected = {"w_eff_bits": _bits(w)}
            cases.append({"id": f"{fmt}-{len(coats)}-{dist.value}", "inputs": inputs, "expected": expected})
    return _file("masks", "§7: effective weights of the three formats; binary/multicoat: planes (C, N, W) words, "
                 "W = ⌈K/32⌉, coat scales g_i; frozen: the free-bit stream and thresholds (and the offset table)",
                 {"format": "binary | multicoat | frozen", "planes": "C·N·W u32 words (C = len(coat_scale_bits))",
                  "coat_scale_bits": "C float32 bits", "free_bits": "max(1, ⌈F/32⌉) u32 words", "others": "as weights"},
                 {"w_eff_bits": "N·K float32 bits, row-major", "offsets": "frozen: N·⌈W/32⌉ stream indices"}, cases)


def write_vectors(out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, make in zip(FILES, (_keys, _hash, _weights, _freeze, _masks), strict=True):
        path = out / f"{kind}.json"
        path.write_text(json.dumps(make(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


# ---------------------------------------------------------------------- a worked answer (slt_hw's)


def answer(vectors: str | Path, out: str | Path) -> list[Path]:
    """What a foreign implementation does: read the inputs, compute, write the outputs (here with
    slt_hw's reference). The checker's own test and an example of the file protocol."""
    vectors, out = Path(vectors), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in FILES:
        spec = json.loads((vectors / f"{kind}.json").read_text(encoding="utf-8"))
        rows = [{"id": c["id"], "outputs": _compute(kind, c["inputs"])} for c in spec["cases"]]
        (out / f"{kind}.json").write_text(json.dumps({"cases": rows}) + "\n", encoding="utf-8")
        paths.append(out / f"{kind}.json")
    return paths


def _f32(bits: int) -> float:
    return torch.tensor([bits], dtype=torch.int64).to(torch.int32).view(torch.float32).item()


def _compute(kind: str, i: dict) -> dict:
    if kind == "hash":
        return {"h": int(prng.hash32(Key(i["k0"], i["k1"]), torch.tensor([i["counter"]])).item())}
    seed = int(i["seed"], 16)
    if kind == "keys":
        key = derive_key(seed, i["name"], i["stream"])
        return {"fnv1a64": _hex64(fnv1a64(i["name"].encode())), "key64": _hex64(key.u64), "k0": key.k0, "k1": key.k1}
    n, k = i["shape"]
    if kind == "freeze":
        st = prng.freeze_states(derive_key(seed, i["name"], 1), n, k, i["prune_threshold"], i["lock_threshold"])
        return {"states": [int(v) for v in st.reshape(-1).tolist()]}
    key, s = derive_key(seed, i["name"]), _f32(i["scale_bits"])
    if kind == "weights":
        return {"w0_bits": _bits(prng.generate(key, n, k, i["dist"], s))}
    fkey = derive_key(seed, i["name"], 1)
    if i["format"] == "frozen":
        p, pl = i["prune_threshold"], i["lock_threshold"]
        words = torch.tensor(i["free_bits"], dtype=torch.int64).to(torch.int32)
        return {"w_eff_bits": _bits(masks.materialize_frozen(key, fkey, n, k, i["dist"], s, words, p, pl)),
                "offsets": masks.frozen_offsets(fkey, n, k, p, pl).reshape(-1).tolist()}
    cs = torch.tensor(i["coat_scale_bits"], dtype=torch.int64).to(torch.int32).view(torch.float32)
    planes = torch.tensor(i["planes"], dtype=torch.int64).to(torch.int32).reshape(len(cs), n, words_per_row(k))
    return {"w_eff_bits": _bits(masks.materialize_planes(key, n, k, i["dist"], s, planes, cs))}


# ---------------------------------------------------------------------- the checker


def check(vectors: str | Path, results: str | Path, partial: bool = False) -> tuple[bool, list[str]]:
    """Compare an implementation's output files with the vectors: (all good, report lines).
    Every vector file must have its results file unless `partial` (then it is reported skipped)."""
    vectors, results = Path(vectors), Path(results)
    lines, ok, checked = [], True, 0
    for kind in FILES:
        spec = json.loads((vectors / f"{kind}.json").read_text(encoding="utf-8"))
        path = results / f"{kind}.json"
        if not path.is_file():
            ok = ok and partial
            lines.append(f"{kind}: {'skipped' if partial else 'MISSING'} (no {path})")
            continue
        try:
            got = {r["id"]: r["outputs"] for r in json.loads(path.read_text(encoding="utf-8"))["cases"]}
        except (ValueError, KeyError, TypeError) as e:
            ok = False
            lines.append(f"{kind}: FAIL: {path} is not {{\"cases\": [{{\"id\", \"outputs\"}}]}} ({e})")
            continue
        bad = [_mismatch(c, got.get(c["id"])) for c in spec["cases"]]
        bad = [b for b in bad if b]
        checked += 1
        ok = ok and not bad
        lines.append(f"{kind}: {len(spec['cases']) - len(bad)}/{len(spec['cases'])} cases match" +
                     (f"; first mismatch: {bad[0]}" if bad else ""))
    if not checked:
        ok = False
        lines.append(f"nothing checked: no results file in {results}")
    return ok, lines


def _mismatch(case: dict, out: dict | None) -> str | None:
    if out is None:
        return f"case {case['id']!r}: no outputs"
    for field, want in case["expected"].items():
        have = out.get(field) if isinstance(out, dict) else None
        if have == want:
            continue
        if not isinstance(want, list) or not isinstance(have, list) or len(have) != len(want):
            return f"case {case['id']!r}: {field} = {_short(have)}, expected {_short(want)}"
        j = next(j for j, (a, b) in enumerate(zip(have, want, strict=True)) if a != b)
        return f"case {case['id']!r}: {field}[{j}] = {_fmt(have[j])}, expected {_fmt(want[j])}"
    return None


def _fmt(v) -> str:
    return f"{v:#010x}" if isinstance(v, int) and not isinstance(v, bool) and v > 2 else repr(v)


def _short(v) -> str:
    text = repr(v)
    return text if len(text) < 80 else text[:77] + "..."

