"""The .slt file itself: atomic writes (and the cleanup of killed ones), verified reads.

A checkpoint is a safetensors file whose header metadata `slt_hw` is JSON: contract and format
versions, per-layer seed, tensor name, shape, format, distribution, scale bits, thresholds, the
architecture, and `sha256`. Since format 2 the SHA-256 covers everything that can change an
output: the canonical JSON of that metadata (all of it but `sha256`) and every tensor's name,
dtype, shape and bytes. A read also refuses metadata that disagrees with itself (layer seeds
against the stored `seeds` tensor, scale bits that are no finite positive float32, ...).

Format 1 files (slt_hw before this change) hashed the tensors only: an edited seed, name or
scale loaded silently wrong. They are refused unless the caller passes `unverified_metadata=True`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import time
from pathlib import Path

import torch

from ._io import atomic_write
from .contract import CONTRACT_VERSION, SEED_MAX

FORMAT_VERSION = 2
STALE_FOREIGN_SECONDS = 24 * 3600  # a temporary file this machine cannot judge by pid: stale after a day


class CheckpointError(ValueError):
    """A checkpoint that is corrupt, of another contract version, or does not match the model."""


def _canonical(meta: dict) -> bytes:
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return json.dumps(json.loads(json.dumps(body)), sort_keys=True, separators=(",", ":")).encode()


def digest(tensors: dict[str, torch.Tensor], meta: dict | None) -> str:
    """SHA-256 of the metadata (format >= 2; None: format 1, tensors only) and of the tensors."""
    h = hashlib.sha256()
    if meta is not None:
        h.update(b"slt_hw-meta|" + _canonical(meta) + b"|")
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---------------------------------------------------------------------- atomic write


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_stale_temporaries(path: Path) -> list[Path]:
    """Remove what killed saves to `path` left: `.<name>.<host>.<pid>.<random>.tmp` files of this
    machine whose process is gone, and any other `.<name>.*.tmp` older than a day (another
    machine's, or an older slt_hw's, which named them without host and pid). Returns them."""
    pat = re.compile(re.escape(f".{path.name}.") + r"(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?[^.]+\.tmp")
    removed = []
    for f in path.parent.glob(f".{_glob_escape(path.name)}.*.tmp"):
        m = pat.fullmatch(f.name)
        if m is None:
            continue
        try:
            if m["pid"] and m["host"] == _host():
                stale = int(m["pid"]) != os.getpid() and not _alive(int(m["pid"]))
            else:
                stale = time.time() - f.stat().st_mtime > STALE_FOREIGN_SECONDS
            if stale:
                f.unlink()
                removed.append(f)
        except FileNotFoundError:  # another save cleaned it first
            continue
    return removed


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def write_atomic(path: Path, blob: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, rename over `path`, fsync the directory:
    a reader sees the old file or the new one, never a torn one."""
    parent = path.parent
    if path.is_dir():
        raise IsADirectoryError(f"path: {str(path)!r} is a directory; expected a checkpoint file name")
    if not parent.is_dir():
        raise FileNotFoundError(f"path: the directory of {str(path)!r} does not exist")
    clean_stale_temporaries(path)
    # host and pid in the temporary's name: clean_stale_temporaries tells a live writer's from a dead one's
    atomic_write(path, blob, prefix=f".{path.name}.{_host()}.{os.getpid()}.")


# ---------------------------------------------------------------------- verified read


def read(path: str | os.PathLike, *, unverified_metadata: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """The verified tensors and metadata of a checkpoint (checksum, versions, consistency)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(path)
    where = f"checkpoint {str(path)!r}"
    if path.is_dir():
        raise IsADirectoryError(f"path: {str(path)!r} is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint at {str(path)!r}")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n]).get("__metadata__") or {}
    except (SafetensorError, ValueError, RuntimeError, OSError, AttributeError) as e:
        raise CheckpointError(f"{where}: not a readable safetensors file ({e})") from e
    if "slt_hw" not in header:
        raise CheckpointError(f"{where}: no slt_hw metadata (not written by slt_hw.save)")
    try:
        meta = json.loads(header["slt_hw"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where}: corrupt metadata ({e})") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: corrupt metadata (not a JSON object)")
    v = meta.get("contract_version")
    if v != CONTRACT_VERSION:
        raise CheckpointError(f"{where}: weight-generation contract version {v!r}, this slt_hw implements version "
                              f"{CONTRACT_VERSION}; its weights cannot be regenerated")
    fv = meta.get("format_version")
    if fv == 1 and not unverified_metadata:
        raise CheckpointError(f"{where}: file format 1, whose checksum does not cover the metadata (seeds, names, "
                              "scales): an edit there would load silently wrong. If you trust the file, load it with "
                              "unverified_metadata=True and save it again (format 2)")
    if fv not in (1, FORMAT_VERSION):
        raise CheckpointError(f"{where}: file format {fv!r}, this slt_hw reads {FORMAT_VERSION} (and 1 on request)")
    if digest(tensors, meta if fv >= 2 else None) != meta.get("sha256"):
        raise CheckpointError(f"{where}: checksum mismatch (the file is corrupt or was edited)")
    check_meta(meta, tensors, where)
    return tensors, meta


_LAYER_KEYS = {"layer": str, "key_name": str, "seed": int, "shape": list, "kind": str, "format": str, "dist": str,
               "scale_bits": int, "num_coats": int, "prune_threshold": int, "lock_threshold": int, "masks": int,
               "conv": (dict, type(None)), "arch": dict}


def check_meta(meta: dict, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Metadata that agrees with itself and with the stored seeds (what the checksum cannot
    know: a writer's bug, or an edit with the checksum recomputed)."""
    layers = meta.get("layers")
    if not isinstance(layers, list) or not layers:
        raise CheckpointError(f"{where}: metadata has no layers")
    for lm in layers:
        name = lm.get("layer") if isinstance(lm, dict) else None
        for key, typ in _LAYER_KEYS.items():
            if not isinstance(lm, dict) or not isinstance(lm.get(key), typ) or isinstance(lm.get(key), bool):
                raise CheckpointError(f"{where}: layer {name!r}: metadata {key!r} missing or of the wrong type")
        if not 0 <= lm["seed"] <= SEED_MAX or not lm["key_name"]:
            raise CheckpointError(f"{where}: layer {name!r}: seed {lm['seed']} or key name {lm['key_name']!r} invalid")
        if not lm["shape"] or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in lm["shape"]):
            raise CheckpointError(f"{where}: layer {name!r}: shape {lm['shape']!r} invalid")
        s = lm["scale_bits"]
        f = torch.tensor([s & 0xFFFFFFFF], dtype=torch.int64).to(torch.int32).view(torch.float32).item()
        if not 0 <= s <= 0xFFFFFFFF or not math.isfinite(f) or f <= 0.0:
            raise CheckpointError(f"{where}: layer {name!r}: scale bits {s:#x} are no finite float32 > 0")
    seeds = tensors.get("seeds")
    want = sorted({lm["seed"] for lm in layers})
    if seeds is None or seeds.dtype != torch.int64 or seeds.dim() != 1 or seeds.tolist() != want:
        got = None if seeds is None else seeds.tolist()
        raise CheckpointError(f"{where}: the layers' seeds {want} disagree with the stored seeds {got}")
