"""The command line: `slt-hw info` and `slt-hw demo`."""

import os
import subprocess
import sys

import pytest

from slt_hw.cli import main


def test_info_lists_backends_and_reasons(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("slt_hw", "torch", "reference", "cpp", "triton", "cuda", "automatic choice"):
        assert word in out
    assert "runs on CUDA tensors only" in out or "built without CUDA" in out


def test_demo_tells_the_story_and_writes_its_outputs(tmp_path):
    env = {**os.environ, "COLUMNS": "160"}
    env.pop("TRITON_INTERPRET", None)  # the demo as a user runs it
    out = subprocess.run([sys.executable, "-P", "-m", "slt_hw.cli", "demo", "--out", str(tmp_path), "--epochs", "3"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    for word in ("find", "test accuracy packed", "reference", "bits/weight", "dense fp32", "dense bf16",
                 "multicoat", "frozen", "hiddenite", "dense-4k", "energy", "agree", str(tmp_path)):
        assert word in out.stdout, word
    assert "MISMATCH" not in out.stdout
    for name in ("digits.slt", "sim.csv", "sim-energy.png", "sim-memory.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_info_names_the_isa_the_cpu_kernel_runs_and_what_backends_lack(capsys, monkeypatch):
    from slt_hw import _ext, dispatch

    if _ext.native() is None:
        pytest.skip("slt_hw._C not built")
    from slt_hw.backends import cpu

    assert cpu.chosen_isa() == _ext.native().build_info()["cpu_isa"] in cpu.cpu_isas()
    assert f"({cpu.chosen_isa()}, OpenMP)" in dispatch.get("cpp").describe()
    monkeypatch.setenv("SLT_HW_CPU_ISA", "scalar")
    assert "(scalar, OpenMP)" in dispatch.get("cpp").describe()
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "scalar, OpenMP" in out and "lacks" in out and "linear_grouped" in out
