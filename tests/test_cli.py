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


@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist"])
def test_demo_tells_the_story_and_writes_its_outputs(tmp_path, dataset):
    env = {**os.environ, "COLUMNS": "160"}
    env.pop("TRITON_INTERPRET", None)  # the demo as a user runs it
    if dataset == "fashion-mnist":  # small fake IDX files in the real format stand in for the real set
        from test_real_data import fake_fashion

        fake_fashion(tmp_path / "data", n=(256, 64))
        env["SLT_HW_DATA"] = str(tmp_path / "data")
    else:  # no Fashion-MNIST under the data root: the demo says so and runs on digits
        env["SLT_HW_DATA"] = str(tmp_path / "nothing")
    out = subprocess.run([sys.executable, "-P", "-m", "slt_hw.cli", "demo", "--out", str(tmp_path / "o"),
                          "--epochs", "1"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    for word in ("find", "test accuracy packed", "reference", "bits/weight", "dense fp32", "dense bf16",
                 "multicoat", "frozen", "hiddenite", "dense-4k", "energy", "agree", f"three mask formats on {dataset}",
                 str(tmp_path / "o")):
        assert word in out.stdout, word
    assert "MISMATCH" not in out.stdout
    assert ("Fashion-MNIST not available" in out.stdout) == (dataset == "digits")
    for name in (f"{dataset}-edge_popup.slt", f"{dataset}-multicoat.slt", f"{dataset}-frozen.slt", "sim.csv",
                 "sim-energy.png", "sim-memory.png"):
        assert (tmp_path / "o" / name).stat().st_size > 0


def test_info_names_the_isa_the_cpu_kernel_runs_and_what_backends_lack(capsys, monkeypatch):
    from slt_hw import _ext, dispatch

    if _ext.native() is None:
        pytest.skip("slt_hw._C not built")
    from slt_hw.backends import cpu

    assert cpu.chosen_isa() == _ext.native().build_info()["cpu_isa"] in cpu.cpu_isas()
    assert f"({cpu.chosen_isa()}, OpenMP" in dispatch.get("cpp").describe()  # (then any per-problem ISAs)
    monkeypatch.setenv("SLT_HW_CPU_ISA", "scalar")
    assert "(scalar, OpenMP)" in dispatch.get("cpp").describe()
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "scalar, OpenMP" in out and "lacks" in out and "linear_grouped" in out
