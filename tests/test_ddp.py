"""Data-parallel supermask search on 2 gloo processes: the same scores as one process on the same global
batch, torchrun's path, one checkpoint writer, a dead worker failing the run with a message; every
process started is gone afterwards."""

import multiprocessing
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch

from slt_hw.cli import main
from slt_hw.train import FindConfig, find

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _scores(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.endswith("scores")}


def test_two_processes_equal_one_process_on_the_same_global_batch(tmp_path):
    # batch 75 splits 38 + 37: unequal shares must still add up to the batch mean
    cfg = FindConfig(dataset="digits", hidden=64, epochs=2, batch_size=75, out=str(tmp_path / "two.slt"))
    two = find(cfg, progress=False, nproc=2)
    assert not multiprocessing.active_children()
    one = find(FindConfig(**{**cfg.__dict__, "out": None}), progress=False)
    a, b = _scores(one.model), _scores(two.model)
    assert a.keys() == b.keys() and len(a) == 3
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    # Adam turns a gradient near 0 into a step of about +-lr whatever its size, so summation-order noise
    # can move the odd score by up to lr (0.01); all others agree to float precision. A rank that trained
    # on its share alone, or shares weighted wrongly, would move most scores by ~1e-3.
    assert (diff > 1e-5).float().mean() < 1e-3 and diff.max() < 0.01, diff.topk(5).values
    for h1, h2 in zip(one.history, two.history, strict=True):
        assert h1["accuracy"] == h2["accuracy"] and h1["loss"] == pytest.approx(h2["loss"], rel=1e-5)
    assert two.saved is not None and (tmp_path / "two.slt").stat().st_size == two.saved.bytes_on_disk
    assert [p.name for p in tmp_path.iterdir()] == ["two.slt"]  # no temporary file left by the writer


def test_torchrun_runs_one_rank_per_process_and_rank_0_reports(tmp_path):
    torchrun = pathlib.Path(sys.executable).with_name("torchrun")
    out = tmp_path / "tr.slt"
    args = ["find", "--dataset", "synthetic", "--hidden", "32", "--epochs", "2", "--batch-size", "64",
            "--no-progress", "--out", str(out)]
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "slt_hw.cli", *args],
                          capture_output=True, text=True, timeout=120, env=ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("test accuracy") == 1 and proc.stdout.count("saved ") == 1  # rank 0 only
    one = find(FindConfig(dataset="synthetic", hidden=32, epochs=2, batch_size=64, out=None), progress=False)
    logged = [line.split() for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [int(f[1]) for f in logged] == [1, 2]
    for h, f in zip(one.history, logged, strict=True):  # printed with 4 decimals
        assert abs(float(f[3]) - h["loss"]) < 2e-4 and abs(float(f[5]) - h["accuracy"]) < 2e-4
    assert out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["tr.slt"]


def _session(sid: int) -> list[int]:
    """Processes of a session (the CLI and everything it started)."""
    pids = []
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(d.name))
    return pids


def _workers(pid: int) -> list[int]:
    out = []
    for p in _session(pid):
        try:
            cmd = pathlib.Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            out.append(p)
    return sorted(out)


def test_a_dead_worker_fails_the_run_with_a_message(tmp_path):
    out = tmp_path / "never.slt"
    proc = subprocess.Popen([sys.executable, "-m", "slt_hw.cli", "find", "--dataset", "digits", "--epochs", "500",
                             "--nproc", "2", "--no-progress", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV, start_new_session=True)
    try:
        end = time.monotonic() + 60
        while len(_workers(proc.pid)) < 2 and time.monotonic() < end:
            time.sleep(0.2)
        workers = _workers(proc.pid)
        assert len(workers) == 2, "the two workers never started"
        time.sleep(3)  # into rendezvous or training: either way the survivor must not wait for it
        os.kill(workers[-1], signal.SIGKILL)
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, text[-2000:]
    assert "slt-hw find: error: worker " in text
    assert "of 2 died (signal SIGKILL); the other workers were stopped" in text
    assert "Traceback" not in text and not out.exists()
    end = time.monotonic() + 10
    while _session(proc.pid) and time.monotonic() < end:
        time.sleep(0.2)
    assert not _session(proc.pid)  # the survivor was stopped, not left waiting on its peer


def test_parallel_usage_errors_are_one_line(capsys):
    for argv, needle in ((["--nproc", "0"], "--nproc: expected an int >= 1, got 0"),
                         (["--dataset", "sbm", "--nproc", "2"], "--nproc: sbm trains full-batch"),
                         (["--batch-size", "1", "--nproc", "2"], "--batch-size: 1 cannot be shared by 2 processes"),
                         (["--sparsity", "1.5"], "--sparsity: expected")):
        assert main(["find", "--no-progress", "--out", "unused.slt", *argv]) == 2
        out, err = capsys.readouterr()
        assert not out and needle in err and len(err.strip().splitlines()) == 1, err
