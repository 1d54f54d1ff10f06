"""`slt-hw sim`: comparison tables, plots, CSV; sweeps with a Pareto plot; errors name the field."""

from __future__ import annotations

import csv

import pytest
import yaml

from slt_hw.cli import main
from slt_hw.sim import report


def test_sim_compare_writes_tables_and_plots(tmp_path, capsys):
    assert main(["sim", "--design", "hiddenite", "--workload", "mlp", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("hiddenite", "dense-4k", "binary-4k", "ternary-4k", "energy breakdown"):
        assert name in out
    for f in ("mlp.csv", "mlp-energy.png", "mlp-memory.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert (tmp_path / "mlp-energy.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((tmp_path / "mlp.csv").open()))
    by = {r["design"]: r for r in rows}
    # 784-300-100-10: 266,200 weights; the hiddenite preset's masks 0.5 bit (supermask expansion),
    # binary weights 1 bit, dense 8 bits
    assert int(by["hiddenite"]["model_bits"]) == 266_200 // 2 and int(by["binary-4k"]["model_bits"]) == 266_200
    assert int(by["dense-4k"]["model_bits"]) == 8 * 266_200
    layers = list(csv.DictReader((tmp_path / "mlp-layers.csv").open()))
    assert len(layers) == 4 * 3 * 2  # designs x layers x (first, steady)
    for d in by:  # per-layer rows add up to the design's totals
        mine = [r for r in layers if r["design"] == d and r["inference"] == "steady"]
        first = [r for r in layers if r["design"] == d and r["inference"] == "first"]
        assert sum(float(r["cycles"]) for r in mine) == float(by[d]["cycles"])
        assert sum(float(r["cycles"]) for r in first) == float(by[d]["first_cycles"])
        assert sum(float(r["dram_weights_bits"]) for r in mine) == float(by[d]["dram_weights_bits"])
        assert all(float(r["cycles"]) >= float(r["bound_dram"]) for r in mine)
    for name in ("residency", "peak supply", "silicon area"):
        assert name in out


def test_sim_bad_inputs_named(tmp_path, capsys):
    assert main(["sim", "--design", "nope", "--out", str(tmp_path)]) == 2
    assert "design" in capsys.readouterr().out
    assert main(["sim", "--workload", "nope", "--out", str(tmp_path)]) == 2
    assert "workload" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": "hiddenite", "workloads": ["mlp"], "grid": {"array.rowz": [8]}}))
    assert main(["sim", "sweep", str(bad)]) == 2
    assert "array.rowz" in capsys.readouterr().out
    bad.write_text(yaml.safe_dump({"base": "hiddenite", "workloads": ["mlp"], "gird": {}}))
    assert main(["sim", "sweep", str(bad)]) == 2
    assert "gird: unknown sweep field" in capsys.readouterr().out


def test_sweep_csv_and_pareto(tmp_path, capsys):
    spec = {"base": "hiddenite", "workloads": ["mlp", "gpt2-decode"], "mode": "cycle", "workers": 2,
            "grid": {"array.rows": [16, 64], "generator.units": [1, 4]}, "designs": ["dense-4k"], "out": "res"}
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump(spec))
    assert main(["sim", "sweep", str(f), "--no-progress"]) == 0
    rows = list(csv.DictReader((tmp_path / "res" / "sweep.csv").open()))
    assert len(rows) == (4 + 1) * 2
    assert {r["design"] for r in rows} >= {"hiddenite[rows=16,units=1]", "dense-4k"}
    assert (tmp_path / "res" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # fewer rows means fewer PEs: never faster on the same workload
    c = {(r["design"], r["workload"]): float(r["cycles"]) for r in rows}
    assert c[("hiddenite[rows=16,units=4]", "mlp")] >= c[("hiddenite[rows=64,units=4]", "mlp")]


def test_pareto_front():
    pts = [(1, 5), (2, 3), (3, 4), (4, 1), (2, 6), (5, 1)]
    assert report.pareto_front(pts) == [0, 1, 3]
    assert report.pareto_front([(1, 2)]) == [0]


def test_sim_format_option(tmp_path, capsys):
    assert main(["sim", "--workload", "mlp", "--format", "multicoat", "--design", "hiddenite", "--baseline",
                 "binary-4k", "--no-plots", "--out", str(tmp_path)]) == 0
    rows = {r["design"]: r for r in csv.DictReader((tmp_path / "mlp-multicoat.csv").open())}
    assert int(rows["hiddenite"]["model_bits"]) == round(266_200 * (1 + 0.3 + 0.0788))
    assert main(["sim", "--format", "multicoat", "--coat-densities", "0.3,x", "--out", str(tmp_path)]) == 2
    assert "--coat-densities" in capsys.readouterr().out


def test_sim_runs_a_checkpoint_from_find(tmp_path, capsys):
    import torch

    import slt_hw
    from slt_hw.models import MLP

    mlp = tmp_path / "mlp.slt"
    slt_hw.save(MLP([64, 32, 10], seed=1, sparsity=0.5), mlp)
    exact = tmp_path / "exact.yaml"  # the preset with the checkpoint's own mask sizes
    exact.write_text("base: hiddenite\nname: exact\nmask_memory: {binary: null}\n")
    assert main(["sim", "--workload", str(mlp), "--design", str(exact), "--batch", "4", "--no-plots",
                 "--out", str(tmp_path)]) == 0
    rows = {r["design"]: r for r in csv.DictReader((tmp_path / "mlp.csv").open())}
    assert int(rows["exact"]["model_bits"]) == 64 * 32 + 32 * 10  # the exact packed mask bits
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 8 * 8, 10))
    cnn = tmp_path / "cnn.slt"
    slt_hw.save(slt_hw.convert(net, seed=0, sparsity=0.5), cnn)
    assert main(["sim", "--workload", str(cnn), "--no-plots", "--out", str(tmp_path)]) == 2
    assert "--input-shape" in capsys.readouterr().out
    assert main(["sim", "--workload", str(cnn), "--input-shape", "3,8,8", "--no-plots", "--out", str(tmp_path)]) == 0
    layers = [r for r in csv.DictReader((tmp_path / "cnn-layers.csv").open()) if r["design"] == "hiddenite"]
    assert {r["layer"] for r in layers} == {"0", "3"}


def test_sim_bad_workloads_and_files_are_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    bad_slt = tmp_path / "broken.slt"
    bad_slt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    cases = [(["--workload", str(junk)], "junk.bin"), (["--workload", str(tmp_path)], "a directory"),
             (["--workload", str(bad_slt)], "broken.slt"), (["--workload", "mlp", "--inferences", "0"], "--inferences"),
             (["--workload", "mlp", "--iso-area", "nope"], "design"),
             (["--workload", "mlp", "--input-shape", "3,x"], "--input-shape")]
    for extra, needle in cases:
        assert main(["sim", *extra, "--no-plots", "--out", str(tmp_path)]) == 2, extra
        out = capsys.readouterr().out
        assert needle in out and "Traceback" not in out and len(out.strip().splitlines()) <= 2, (extra, out)
    assert main(["sim", "sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().out
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("base: hiddenite\nworkloads: [mlp\n")
    assert main(["sim", "sweep", str(syntax)]) == 2
    assert "syntax.yaml" in capsys.readouterr().out


def test_sim_iso_area_and_inferences(tmp_path, capsys):
    assert main(["sim", "--workload", "mlp", "--iso-area", "dense-4k", "--inferences", "5", "--no-plots",
                 "--out", str(tmp_path)]) == 0
    rows = {r["design"]: r for r in csv.DictReader((tmp_path / "mlp.csv").open())}
    grown = [r for d, r in rows.items() if d.startswith("hiddenite@")]
    assert len(grown) == 1 and float(grown[0]["area_mm2"]) <= float(rows["dense-4k"]["area_mm2"])
    for r in rows.values():
        assert float(r["total_energy_pj"]) == pytest.approx(float(r["first_energy_pj"]) + 4 * float(r["energy_pj"]))
