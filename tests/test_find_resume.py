"""find's per-epoch run state: a run killed after an epoch resumes to the same result; corrupt or foreign
states are one-line errors. Also: the search model compiles without graph breaks; converted
TransformerEncoderLayers evaluate; the memory table prints as text."""

import pytest
import torch

import slt_hw
from slt_hw import runstate, train
from slt_hw.cli import main
from slt_hw.train import FindConfig, find


class Killed(Exception):
    pass


def _cfg(tmp_path, **kw):
    return FindConfig(**{"dataset": "digits", "hidden": 32, "epochs": 3, "batch_size": 64, "seed": 3,
                         "out": str(tmp_path / "r.slt"), **kw})


def test_a_killed_run_resumes_to_the_same_scores(tmp_path, monkeypatch):
    whole = find(_cfg(tmp_path, out=str(tmp_path / "whole.slt")), progress=False)
    assert not (tmp_path / "whole.slt.state").exists()  # removed once the checkpoint is written
    saves = []

    def save_then_die(path, state):  # the process dies right after epoch 1's state reached the disk
        runstate.save_state(path, state)
        saves.append(state["epoch"])
        raise Killed

    monkeypatch.setattr(train, "save_state", save_then_die)
    with pytest.raises(Killed):
        find(_cfg(tmp_path), progress=False)
    monkeypatch.undo()
    assert saves == [1] and (tmp_path / "r.slt.state").exists() and not (tmp_path / "r.slt").exists()
    resumed = find(_cfg(tmp_path, resume=True), progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history == whole.history
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert (tmp_path / "r.slt").exists() and not (tmp_path / "r.slt.state").exists()


def test_resume_refuses_corrupt_and_foreign_states(tmp_path, capsys):
    state = tmp_path / "s.state"
    runstate.save_state(state, {"config": train._fingerprint(_cfg(tmp_path)), "epoch": 1})
    argv = ["find", "--dataset", "digits", "--hidden", "64", "--epochs", "3", "--batch-size", "64", "--seed", "3",
            "--out", str(tmp_path / "r.slt"), "--state", str(state), "--resume", "--no-progress"]
    assert main(argv) == 2  # hidden 64, the state's run had 32
    out = capsys.readouterr().err
    assert "belongs to another run (it differs in hidden=32 here 64)" in out and len(out.strip().splitlines()) == 1
    blob = state.read_bytes()
    state.write_bytes(blob[:-3])
    assert main(argv) == 2
    assert "is corrupt (checksum mismatch; truncated or altered)" in capsys.readouterr().err
    state.write_bytes(b"something else")
    assert main(argv) == 2
    assert "is not an slt_hw run state" in capsys.readouterr().err


@pytest.mark.parametrize("slt", [{"sparsity": 0.5}, {"num_coats": 3, "sparsity": 0.5},
                                 {"p_prune": 0.2, "p_lock": 0.2, "sparsity": 0.6}])
def test_search_model_compiles_without_graph_breaks(slt):
    from slt_hw.models import ConvNet

    model = ConvNet("conv2", (3, 8, 8), 10, seed=0, width=0.25, **slt)
    explained = torch._dynamo.explain(model)(torch.randn(2, 3, 8, 8))
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


def test_converted_transformer_encoder_trains_and_evaluates():
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = slt_hw.convert(torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), seed=0)
    x = torch.randn(3, 5, 16)
    model.train()
    model(x).sum().backward()  # scores get gradients
    model.eval()
    with torch.no_grad():  # torch's fused fast path would read in_proj_bias of the converted attention
        y = model(x)
        torch.testing.assert_close(slt_hw.pack(model)(x), y)


def test_memory_table_prints_as_text(capsys):
    from slt_hw.models import MLP

    print(slt_hw.memory_report(MLP([10, 20, 3], seed=0)).table())
    out = capsys.readouterr().out
    assert "dense fp32" in out and "seeds + dense extras" in out and "rich.table" not in out


def test_cli_run_killed_with_sigkill_resumes(tmp_path):
    """The real thing: `slt-hw find` killed (SIGKILL) after some epochs; the same command with --resume
    continues from the last run state and writes the checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "k.slt"
    argv = [sys.executable, "-P", "-m", "slt_hw.cli", "find", "--dataset", "digits", "--hidden", "32",
            "--epochs", "60", "--threads", "1", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "k.slt.state"
    end = time.monotonic() + 120
    while not state.exists() and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.exists() and not out.exists(), "killed too late: the run had finished"
    epoch = runstate.load_state(state)["epoch"]
    assert 1 <= epoch < 60
    done = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed {state} at epoch" in done.stdout and out.exists() and not state.exists()
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("epoch ")][-1] == "60"
