"""The bad-input table of issue 16: API, checkpoint and command-line cases, each asserting the
error type and that the message names the argument or the path (test_bad_input.py holds the
per-argument API cases from before)."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time

import pytest
import torch

import slt_hw
from slt_hw import _ops, dispatch, pack_binary, pack_multicoat
from slt_hw.checkpoint import CheckpointError, read
from slt_hw.checkpoint_file import clean_stale_temporaries, digest
from slt_hw.cli import main
from slt_hw.models import MLP
from slt_hw.nn import SLTLinear
from slt_hw.ops import slt_conv2d

ONES = torch.ones(4, 8, dtype=torch.bool)
CONV = pack_binary(torch.ones(4, 2, 3, 3, dtype=torch.bool), seed=0, name="c")
HEADS = (torch.randn(1, 4, 2, 8), torch.randn(1, 2, 2, 8))  # T = 4 queries, S = 2 keys

API = {  # id: (call, error type, pattern naming the argument)
    "conv2d float64 bias": (lambda: slt_conv2d(torch.randn(1, 2, 5, 5), CONV, torch.ones(4, dtype=torch.float64)),
                            TypeError, r"^bias: expected dtype float32, float16 or bfloat16, got torch.float64"),
    "conv2d int64 bias": (lambda: slt_conv2d(torch.randn(1, 2, 5, 5), CONV, torch.ones(4, dtype=torch.int64)),
                          TypeError, r"^bias: expected dtype .* got torch.int64"),
    "mask with 0 columns": (lambda: pack_binary(torch.ones(3, 0, dtype=torch.bool), seed=0, name="w"),
                            ValueError, r"^mask: expected a weight with at least one row and column, got \(3, 0\)"),
    "mask with 0 rows": (lambda: pack_binary(torch.ones(0, 3, dtype=torch.bool), seed=0, name="w"),
                         ValueError, r"^mask: .* got \(0, 3\)"),
    "levels with 0 columns": (lambda: pack_multicoat(torch.ones(3, 2, 0, dtype=torch.long), 2, seed=0, name="w"),
                              ValueError, r"^levels: .* got \(3, 0\)"),
    "gain 1e300": (lambda: pack_binary(ONES, seed=0, name="w", gain=1e300), ValueError, r"^gain: 1e\+300 gives"),
    "gain 1e-300": (lambda: pack_binary(ONES, seed=0, name="w", gain=1e-300), ValueError, r"^gain: 1e-300 gives"),
    "gain nan beside a scale": (lambda: pack_binary(ONES, seed=0, name="w", scale=0.5, gain=math.nan),
                                ValueError, r"^gain: expected a finite float > 0"),
    "search layer gain 1e300": (lambda: SLTLinear(8, 4, seed=0, name="w", gain=1e300), ValueError, r"^gain: "),
    "scale 1e39": (lambda: pack_binary(ONES, seed=0, name="w", scale=1e39), ValueError, r"^scale: 1e\+39 is not"),
    "causal, more queries than keys (mha)": (
        lambda: slt_hw.slt_mha(torch.randn(1, 4, 8), *[pack_binary(torch.ones(8, 8, dtype=torch.bool), seed=0,
                               name=n) for n in "qkvo"], 2, key=torch.randn(1, 2, 8), value=torch.randn(1, 2, 8),
                               causal=True),
        ValueError, r"^causal: causal attention needs T <= S .* T=4 queries and S=2 keys"),
}


@pytest.mark.parametrize("case", sorted(API))
def test_api(case):
    call, error, pattern = API[case]
    with pytest.raises(error, match=pattern):
        call()


ATTENTION = [b.name for b in dispatch.backends() if not b.why_not("attention", torch.device("cpu"))]


@pytest.mark.parametrize("backend", ATTENTION)
def test_causal_with_more_queries_than_keys_is_one_error_everywhere(backend):
    """The composed and reference paths returned zeros for queries before every key, Triton refused."""
    q, k = HEADS
    with pytest.raises(ValueError, match=r"^causal: causal attention needs T <= S"):
        _ops.call("attention", q, k, k, None, None, True, 0.3, backend)
    with pytest.raises(ValueError, match=r"^causal: "):
        slt_hw.reference.attention.allowed_mask(1, 4, 2, True, None, None, "cpu")  # the search form's mask


@pytest.mark.skipif("triton" not in ATTENTION or torch.cuda.is_available(), reason="Triton's interpreter only")
def test_triton_interpreter_refuses_bfloat16():
    p = pack_binary(ONES, seed=0, name="w")
    x = torch.randn(9, 8, dtype=torch.bfloat16)  # 9 rows: the tl.dot path, garbage (~1e10) before
    with pytest.raises(TypeError, match=r"^x: the triton backend cannot compute bfloat16 with tl.dot under "
                                        r"TRITON_INTERPRET=1"):
        slt_hw.slt_linear(x, p, backend="triton")
    y = slt_hw.slt_linear(x[:8], p, backend="triton")  # the GEMV path has no tl.dot: computed, and right
    torch.testing.assert_close(y, slt_hw.slt_linear(x[:8], p, backend="reference"), rtol=2e-2, atol=2e-2)
    with pytest.raises(TypeError, match=r"^q: the triton backend cannot compute bfloat16"):
        _ops.call("attention", *(t.to(torch.bfloat16) for t in (HEADS[1], HEADS[1], HEADS[1])), None, None, False,
                  0.3, "triton")


@pytest.mark.parametrize("backend", [b.name for b in dispatch.backends()
                                     if not b.why_not("linear_planes", torch.device("cpu"))])
def test_expanded_batch_rows_work_on_every_backend(backend):
    """Stride-0 rows (an expanded batch): the cpp backend refused them, the reference took them."""
    p = pack_binary(torch.rand(5, 40, generator=torch.Generator().manual_seed(0)) < 0.5, seed=1, name="w")
    row = torch.randn(1, 40)
    for x in (row.expand(3, 40), row[0].expand(2, 3, 40), row.expand(1, 40)):
        want = slt_hw.slt_linear(x.contiguous(), p, backend=backend)
        assert torch.equal(slt_hw.slt_linear(x, p, backend=backend), want)


# ---------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "m.slt"
    slt_hw.save(MLP([10, 20, 4], seed=3, bias=True), path)
    return path, path.read_bytes()


def _split(blob: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _join(header: dict, data: bytes) -> bytes:
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


def _edited(blob: bytes, edit, redigest: bool = False) -> bytes:
    header, data = _split(blob)
    meta = json.loads(header["__metadata__"]["slt_hw"])
    edit(meta)
    if redigest:  # a writer's bug, or an edit with the checksum recomputed
        meta["sha256"] = digest(_tensors(blob), meta)
    header["__metadata__"]["slt_hw"] = json.dumps(meta)
    return _join(header, data)


def _tensors(blob: bytes) -> dict:
    from safetensors.torch import load
    return load(blob)


def _refused(tmp_path, blob: bytes, error=CheckpointError, pattern: str = "", name: str = "bad.slt"):
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(error) as info:
        slt_hw.load(path)
    assert str(path) in str(info.value), str(info.value)
    assert pattern in str(info.value), str(info.value)


def _layer(meta):
    return meta["layers"][0]


EDITS = {  # each changes an output if loaded
    "seed": lambda m: _layer(m).update(seed=4),
    "scale bits": lambda m: _layer(m).update(scale_bits=_layer(m)["scale_bits"] + 1),
    "key name": lambda m: _layer(m).update(key_name="fc9"),
    "distribution": lambda m: _layer(m).update(dist="uniform"),
    "layer name": lambda m: m["layers"].reverse(),
    "architecture": lambda m: m["architecture"]["kwargs"].update(bias=False),
    "thresholds": lambda m: _layer(m).update(prune_threshold=1, lock_threshold=1),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_checkpoint_edited_metadata_is_refused(tmp_path, ckpt, edit):
    """The checksum covered the tensors only: these edits loaded silently wrong."""
    _refused(tmp_path, _edited(ckpt[1], EDITS[edit]), pattern="checksum mismatch")


def test_checkpoint_metadata_disagreeing_with_the_stored_seeds_is_refused(tmp_path, ckpt):
    _refused(tmp_path, _edited(ckpt[1], EDITS["seed"], redigest=True), pattern="disagree with the stored seeds")
    _refused(tmp_path, _edited(ckpt[1], lambda m: _layer(m).update(scale_bits=0x7F800000), redigest=True),
             pattern="no finite float32 > 0")
    _refused(tmp_path, _edited(ckpt[1], lambda m: _layer(m).pop("key_name"), redigest=True),
             pattern="'key_name' missing")


def test_checkpoint_every_flipped_header_and_payload_byte_is_refused(ckpt):
    path, blob = ckpt
    flipped = path.parent / "flipped.slt"
    n = struct.unpack("<Q", blob[:8])[0]
    for i in range(8, len(blob)):
        b = bytearray(blob)
        b[i] ^= 1 << (i % 8)
        flipped.write_bytes(bytes(b))
        with pytest.raises(CheckpointError) as info:
            read(flipped)
        assert str(flipped) in str(info.value)
        if i >= 8 + n:
            assert "checksum mismatch" in str(info.value), i


@pytest.mark.parametrize("keep", [0, 7, 8, 100, -1])
def test_checkpoint_truncated(tmp_path, ckpt, keep):
    _refused(tmp_path, ckpt[1][:keep], pattern="not a readable safetensors file")


def test_checkpoint_other_contract_version(tmp_path, ckpt):
    _refused(tmp_path, _edited(ckpt[1], lambda m: m.update(contract_version=2)), pattern="contract version 2")


def test_checkpoint_format_1_needs_consent(tmp_path, ckpt):
    """A format-1 file (checksum of the tensors only) is refused unless the caller trusts it."""
    def v1(meta):
        meta["format_version"] = 1
        meta["sha256"] = digest(_tensors(ckpt[1]), None)

    path = tmp_path / "v1.slt"
    path.write_bytes(_edited(ckpt[1], v1))
    _refused(tmp_path, path.read_bytes(), pattern="unverified_metadata=True")
    x = torch.randn(3, 10)
    assert torch.equal(slt_hw.load(path, unverified_metadata=True)(x), slt_hw.load(ckpt[0])(x))


def test_checkpoint_plain_safetensors_pt_file_directory_missing(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(3)}, tmp_path / "plain.safetensors")
    _refused(tmp_path, (tmp_path / "plain.safetensors").read_bytes(), pattern="no slt_hw metadata")
    torch.save({"w": torch.ones(3)}, tmp_path / "model.pt")
    _refused(tmp_path, (tmp_path / "model.pt").read_bytes(), pattern="not a readable safetensors file", name="m.pt")
    with pytest.raises(IsADirectoryError, match=rf"^path: '{tmp_path}' is a directory"):
        slt_hw.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^path: no checkpoint at '.*missing.slt'"):
        slt_hw.load(tmp_path / "missing.slt")
    model = MLP([4, 3], seed=0)
    with pytest.raises(IsADirectoryError, match=rf"^path: '{tmp_path}' is a directory"):
        slt_hw.save(model, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^path: the directory of '.*nowhere/m.slt' does not exist"):
        slt_hw.save(model, tmp_path / "nowhere" / "m.slt")


def test_stale_temporaries_of_killed_saves_are_cleaned(tmp_path):
    """A killed save leaves `.<name>.<host>.<pid>.<random>.tmp`; the next save to that path removes
    the ones whose process is gone (and, by age, those it cannot judge), never a live one."""
    from slt_hw.checkpoint_file import _host

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live = tmp_path / f".m.slt.{_host()}.{os.getppid()}.abc.tmp"  # our parent: alive
    stale = tmp_path / f".m.slt.{_host()}.{dead_pid}.xyz.tmp"
    old = tmp_path / ".m.slt.k3j_x9q2.tmp"  # an older slt_hw's name: judged by age
    young = tmp_path / ".m.slt.a8d7f6s5.tmp"
    other = tmp_path / ".n.slt.k3j_x9q2.tmp"  # another checkpoint's
    for f in (live, stale, old, young, other):
        f.write_bytes(b"x" * 100)
    two_days = time.time() - 2 * 86400
    for f in (old, other):
        os.utime(f, (two_days, two_days))
    slt_hw.save(MLP([4, 3], seed=0), tmp_path / "m.slt")
    assert not stale.exists() and not old.exists()
    assert live.exists() and young.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, young.name, other.name, "m.slt"])
    assert clean_stale_temporaries(tmp_path / "m.slt") == []


# ---------------------------------------------------------------------- command line

CLI = {  # argv: text the one line must contain
    ("find", "--sparsity", "1.5"): "--sparsity: expected",
    ("find", "--dataset", "nosuch"): "--dataset: expected one of",
    ("find", "--method", "nosuch"): "--method: expected one of",
    ("find", "--epochs", "-1"): "--epochs: expected an int >= 1",
    ("find", "--nproc", "0"): "--nproc: expected an int >= 1",
    ("find", "--out", "/nonexistent-dir/m.slt"): "--out: the directory of '/nonexistent-dir/m.slt' does not exist",
    ("find", "--dataset", "cifar10", "--data-root", "/nonexistent-dir"): "--data-root: no CIFAR-10 under",
    ("demo", "--epochs", "0"): "--epochs: expected an int >= 1",
}


def _one_line_error(capsys, argv, status=2) -> str:
    assert main(list(argv)) == status
    out, err = capsys.readouterr()
    text = (out + err).strip()
    assert "Traceback" not in text
    return text.splitlines()[-1] if text else ""


@pytest.mark.parametrize("argv", sorted(CLI), ids=" ".join)
def test_cli_usage_errors(capsys, argv):
    main_line = _one_line_error(capsys, argv)
    assert CLI[argv] in main_line and main_line.startswith(f"slt-hw {argv[0]}: error: "), main_line


def test_cli_sim_files(capsys, tmp_path, ckpt):
    """The simulator's own handling (its owner's fix), in this table: one line naming the file."""
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("base: [hiddenite\n")
    corrupt = tmp_path / "corrupt.slt"
    corrupt.write_bytes(ckpt[1][:-3])
    for argv, name in ((["sim", "sweep", str(tmp_path / "missing.yaml")], "missing.yaml"),
                       (["sim", "sweep", str(syntax)], str(syntax)),
                       (["sim", "--workload", str(corrupt), "--no-plots", "--out", str(tmp_path)], str(corrupt))):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        lines = (out + err).strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "error" in lines[0], lines


def test_cli_debug_shows_the_traceback(capsys):
    with pytest.raises(ValueError, match="sparsity"):
        main(["--debug", "find", "--sparsity", "1.5"])
    with pytest.raises(ValueError, match="sparsity"):
        main(["find", "--sparsity", "1.5", "--debug"])


def test_cli_entry_point_prints_one_line_and_exits_2():
    out = subprocess.run([sys.executable, "-P", "-m", "slt_hw.cli", "find", "--sparsity", "1.5"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stdout == "" and out.stderr.strip().splitlines() == [
        "slt-hw find: error: --sparsity: expected the fraction of weights removed in [0, 1), got 1.5"]
