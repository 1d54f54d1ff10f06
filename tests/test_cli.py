"""The command line: `slt-hw info` and `slt-hw demo`."""

import os
import subprocess
import sys

from slt_hw.cli import main


def test_info_lists_backends_and_reasons(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("slt_hw", "torch", "reference", "cpp", "triton", "cuda", "automatic choice"):
        assert word in out
    assert "runs on CUDA tensors only" in out or "built without CUDA" in out


def test_demo_checks_backends_and_prints_memory_table():
    env = {**os.environ, "COLUMNS": "160"}
    env.pop("TRITON_INTERPRET", None)  # the demo as a user runs it
    out = subprocess.run([sys.executable, "-P", "-m", "slt_hw.cli", "demo"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    for word in ("reference", "bits/weight", "dense fp32", "dense bf16", "multicoat", "frozen", "agree"):
        assert word in out.stdout
    assert "MISMATCH" not in out.stdout
