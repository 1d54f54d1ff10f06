"""Golden vectors of the weight-generation contract, shared by every backend's tests."""

from __future__ import annotations

import json
import pathlib
import struct
import zlib

import numpy as np

from slt_hw.contract import CONTRACT_VERSION

PATH = pathlib.Path(__file__).parent / "golden" / f"contract_v{CONTRACT_VERSION}.json"
GOLDEN = json.loads(PATH.read_text())


def f32_from_bits(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def weight_cases():
    return GOLDEN["weights"]


def freeze_cases():
    return GOLDEN["freeze"]


def case_id(case) -> str:
    return f"{case['name']}-{case.get('dist', 'freeze')}-{case['shape'][0]}x{case['shape'][1]}"


def check_weights(case, w) -> None:
    """`w`: the (N, K) float32 array (numpy or torch) a backend generated for `case`."""
    a = np.ascontiguousarray(np.asarray(w.cpu() if hasattr(w, "cpu") else w, dtype=np.float32))
    assert a.shape == tuple(case["shape"]), (a.shape, case["shape"])
    head = [int(b) for b in a.reshape(-1)[:16].view(np.uint32)]
    assert head == case["head_f32_bits"], f"leading values differ: {head} != {case['head_f32_bits']}"
    assert zlib.crc32(a.view(np.int32).tobytes()) == case["crc32"], "checksum differs"


def check_freeze(case, states) -> None:
    """`states`: the (N, K) uint8 array (0 pruned, 1 locked, 2 free) for `case`."""
    s = np.ascontiguousarray(np.asarray(states.cpu() if hasattr(states, "cpu") else states, dtype=np.uint8))
    assert s.shape == tuple(case["shape"])
    assert s.reshape(-1)[:32].tolist() == case["head"]
    assert [int((s == v).sum()) for v in range(3)] == case["counts"]
    assert zlib.crc32(s.tobytes()) == case["crc32"]
