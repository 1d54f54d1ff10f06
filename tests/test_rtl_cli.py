"""`slt-hw rtl`: the files it writes, its one-line errors, and the emitted testbench under Icarus
Verilog where it is installed (apt-get install iverilog)."""

import re
import shutil
import subprocess

import pytest

from slt_hw.cli import main


def test_rtl_writes_verilog_readme_and_testbench(tmp_path, capsys):
    assert main(["rtl", "--dist", "signed_constant", "--format", "binary", "--units", "4", "--out", str(tmp_path),
                 "--check"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "latency 7 cycles" in out
    v = (tmp_path / "slt_weight_gen.v").read_text()
    header = v[v.index("module slt_weight_gen("):].split(";")[0]
    for port in ("clk", "rst", "cmd_valid", "cmd_ready", "cmd_k0", "cmd_base", "cmd_steps", "mask_valid",
                 "mask_data", "out_valid", "out_ready", "out_level", "out_code"):
        assert re.search(rf"\b{port}\b", header), port
    assert re.search(r"output \[127:0\] out_code;", v)  # 4 units x 32 sign bits
    readme = (tmp_path / "README.md").read_text()
    assert "| `mask_data` | in | 128 |" in readme and "Latency: 7 cycles" in readme
    tb = (tmp_path / "tb_slt_weight_gen.v").read_text()
    assert "PASS" in tb and tb.count("golden[") > 10


@pytest.mark.parametrize("argv,arg", [
    (["--units", "0"], "units"), (["--units", "x"], "units"), (["--dist", "gauss"], "dist"),
    (["--format", "ternary"], "format"), (["--lanes", "3"], "lanes"), (["--dist", "normal", "--lanes", "4"], "lanes"),
    (["--format", "multicoat", "--coats", "0x"], "coats"), (["--format", "binary", "--coats", "2"], "coats"),
    (["--format", "frozen", "--units", "3", "--lanes", "2"], "lanes"),
])
def test_bad_parameters_are_one_line_errors(tmp_path, capsys, argv, arg):
    assert main(["rtl", *argv, "--out", str(tmp_path / "x")]) == 2
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and out.startswith(f"error: {arg}:"), out
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
@pytest.mark.parametrize("dist,fmt", [("signed_constant", "frozen"), ("normal", "multicoat")])
def test_emitted_testbench_passes_under_icarus(tmp_path, dist, fmt):
    assert main(["rtl", "--dist", dist, "--format", fmt, "--units", "2", "--out", str(tmp_path)]) == 0
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "tb"), str(tmp_path / "tb_slt_weight_gen.v"),
                    str(tmp_path / "slt_weight_gen.v")], check=True, capture_output=True)
    run = subprocess.run(["vvp", "-n", str(tmp_path / "tb")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "PASS" in run.stdout, run.stdout
    tb = tmp_path / "tb_slt_weight_gen.v"  # the testbench can fail: corrupt one golden beat
    tb.write_text(re.sub(r"(golden\[3\] = \d+'h)(\w)", lambda m: m[1] + ("1" if m[2] == "0" else "0"),
                         tb.read_text(), count=1))
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "tb"), str(tb), str(tmp_path / "slt_weight_gen.v")],
                   check=True, capture_output=True)
    bad = subprocess.run(["vvp", "-n", str(tmp_path / "tb")], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "FAIL" in bad.stdout
