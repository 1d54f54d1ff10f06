"""The per-epoch run state of `slt-hw find`: what a killed run needs to resume where it stopped.

State: the model's state_dict (scores, normalization statistics), the optimizer's, the epoch count, the
history, the data-order and augmentation generators and the global RNG (dropout), and the run's
configuration. File: a magic line, the SHA-256 of the payload in hex and a newline, then the payload
(torch.save bytes, read back with weights_only=True). Written atomically after every epoch, verified on
read: a truncated or altered file is an error, never a silent restart.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from ._io import atomic_write

MAGIC = b"slt_hw run state v1\n"


class RunStateError(ValueError):
    """A run state that is missing, corrupt, or belongs to another configuration."""


def save_state(path: str | os.PathLike, state: dict) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    return atomic_write(path, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_state(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RunStateError(f"resume: no run state at {path} (a run writes it after every epoch)")
    blob = path.read_bytes()
    head = len(MAGIC) + 65
    if not blob.startswith(MAGIC) or len(blob) < head:
        raise RunStateError(f"resume: {path} is not an slt_hw run state")
    digest, payload = blob[len(MAGIC):head - 1].decode("ascii", "replace"), blob[head:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise RunStateError(f"resume: {path} is corrupt (checksum mismatch; truncated or altered)")
    try:
        return torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as e:  # verified bytes that still do not load: another torch, or a bug
        raise RunStateError(f"resume: {path} does not load ({type(e).__name__}: {e})") from e
