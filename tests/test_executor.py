"""slt_hw.executor on the local engine and the sweep's --resume: results in item order, a failed point
retried once and then kept with its error, a dead worker reported, a partial CSV continued."""

import csv
import math
import os
import pathlib

import pytest
import yaml

from slt_hw import executor
from slt_hw.cli import main
from slt_hw.csvio import read_rows, write_rows


def _fail_first(path: str) -> str:
    """Fails on its first call for a path, succeeds on the second (the file remembers)."""
    p = pathlib.Path(path)
    if not p.exists():
        p.write_text("tried")
        raise RuntimeError(f"first try of {p.name}")
    return p.name


def _always_fail(path: str) -> None:
    with open(path, "a") as f:
        f.write("x")
    raise RuntimeError("broken point")


def _die(_):
    os._exit(3)


@pytest.mark.parametrize("workers", [1, 2])
def test_order_failures_and_one_retry(tmp_path, workers):
    outs = executor.run(math.sqrt, [4.0, -1.0, 9.0, 16.0], workers=workers, progress=False)
    assert [o.index for o in outs] == [0, 1, 2, 3]
    assert [o.value for o in outs] == [2.0, None, 3.0, 4.0]
    assert outs[1].error == "ValueError: math domain error" and all(o.ok for o in outs if o.index != 1)
    flaky = [str(tmp_path / f"p{i}") for i in range(3)]
    assert [o.value for o in executor.run(_fail_first, flaky, workers=workers, progress=False)] == ["p0", "p1", "p2"]
    bad = [str(tmp_path / f"bad{i}") for i in range(2)]
    outs = executor.run(_always_fail, bad, workers=workers, progress=False)
    assert [o.error for o in outs] == ["RuntimeError: broken point"] * 2
    assert [pathlib.Path(p).read_text() for p in bad] == ["xx", "xx"]  # exactly two attempts each


def test_dead_worker_is_reported_not_dropped():
    outs = executor.run(_die, [0, 1], workers=2, progress=False)
    assert [o.error for o in outs] == ["BrokenProcessPool: a worker process died"] * 2


def test_engine_errors_are_one_line(tmp_path, capsys, monkeypatch):
    with pytest.raises(executor.EngineError, match="--engine: expected one of"):
        executor.check_engine("dask", None)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"base": "hiddenite", "workloads": ["mlp"], "out": "o"}))
    assert main(["sim", "sweep", str(f), "--address", "10.0.0.1:6379"]) == 2
    assert "--address: only with --engine ray" in capsys.readouterr().out
    assert main(["sim", "--engine", "ray"]) == 2
    assert "--engine: only for `slt-hw sim sweep" in capsys.readouterr().out
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if the extra were not installed
    assert main(["sim", "sweep", str(f), "--engine", "ray"]) == 2
    out = capsys.readouterr().out
    assert "pip install 'slt_hw[ray]'" in out and len(out.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def _sweep_file(tmp_path: pathlib.Path, workloads: list[str]) -> pathlib.Path:
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump({"base": "hiddenite", "workloads": workloads, "workers": 2, "out": "res",
                                 "grid": {"array.rows": [16, 64], "generator.units": [1, 4]}, "designs": ["dense-4k"]}))
    return f


def test_sweep_resume_continues_the_partial_csv(tmp_path):
    f = _sweep_file(tmp_path, ["mlp", "gpt2-decode"])
    assert main(["sim", "sweep", str(f), "--no-progress"]) == 0
    full = (tmp_path / "res" / "sweep.csv").read_text()
    rows = read_rows(tmp_path / "res" / "sweep.csv")
    rows[0]["cycles"] = 1.5  # a kept row is not run again: its value survives
    write_rows([rows[0], rows[2], rows[7]], tmp_path / "res" / "sweep.csv")  # an interrupted sweep, holes included
    assert main(["sim", "sweep", str(f), "--no-progress", "--resume"]) == 0
    resumed = (tmp_path / "res" / "sweep.csv").read_text().splitlines()
    assert resumed[0] == full.splitlines()[0] and resumed[2:] == full.splitlines()[2:]
    assert list(csv.DictReader(resumed))[0]["cycles"] == "1.5"
    # rows that are not points of this sweep: refused, not silently dropped
    write_rows([rows[0] | {"design": "other"}], tmp_path / "res" / "sweep.csv")
    assert main(["sim", "sweep", str(f), "--no-progress", "--resume"]) == 2


def test_sweep_failed_point_written_with_its_error(tmp_path, capsys, monkeypatch):
    """A workload file that vanishes after the sweep was read: its points fail twice, are written
    with the error, the others finish, the exit status is non-zero; --resume runs the failed ones again."""
    topo = tmp_path / "g.csv"
    topo.write_text("name,M,N,K\nqkv,16,96,32\n")
    f = _sweep_file(tmp_path, ["mlp", str(topo)])
    from slt_hw.sim import sweep

    real = sweep.load_sweep

    def read_then_lose(path):
        spec = real(path)
        topo.rename(tmp_path / "g.moved")
        return spec

    monkeypatch.setattr(sweep, "load_sweep", read_then_lose)
    assert main(["sim", "sweep", str(f), "--no-progress"]) == 1
    assert "5 of 10 points failed twice" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "res" / "sweep.csv").open()))
    assert len(rows) == 10 and [r["workload"] for r in rows[:2]] == ["mlp", "g"]
    failed = [r for r in rows if r["failure"]]
    assert {r["workload"] for r in failed} == {"g"} and "neither a zoo name" in failed[0]["failure"]
    assert all(r["cycles"] == "" for r in failed) and all(float(r["cycles"]) > 0 for r in rows if not r["failure"])
    monkeypatch.setattr(sweep, "load_sweep", real)
    (tmp_path / "g.moved").rename(topo)
    assert main(["sim", "sweep", str(f), "--no-progress", "--resume"]) == 0
    rows = list(csv.DictReader((tmp_path / "res" / "sweep.csv").open()))
    assert len(rows) == 10 and "failure" not in rows[0] and all(float(r["cycles"]) > 0 for r in rows)


def test_paper_sweep_engine_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from test_papers import _load  # tests/ is on sys.path (conftest)

    mod = _load("partial_freezing")
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    for argv, needle in ((["--engine", "ray"], "pip install 'slt_hw[ray]'"),
                         (["--address", "h:6379"], "--address: only with --engine ray")):
        with pytest.raises(SystemExit) as e:
            mod.main(["--quick", "--out", str(tmp_path / "o"), *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
