"""--engine ray on a local Ray instance of 2 CPUs: the same CSV as the local process pool, failed points
retried once then kept, a paper sweep as Ray tasks; every process Ray starts is gone afterwards."""

import math
import os
import pathlib
import time

import pytest
import yaml
from test_executor import _always_fail, _fail_first  # tests/ is on sys.path (conftest)
from test_papers import _load, _rows

from slt_hw import executor
from slt_hw.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(autouse=True)
def _quiet_ray(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats prompt or upload from CI


def _descendants() -> set[int]:
    """Processes below this one (Ray's GCS, raylet and workers are)."""
    parent = {}
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [os.getpid()]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p and c not in out}
        out |= kids
        todo += kids
    return out


def _gone(before: set[int], timeout: float = 20.0) -> set[int]:
    """The processes started since `before` that are still there after `timeout` seconds."""
    end = time.monotonic() + timeout
    while (left := _descendants() - before) and time.monotonic() < end:
        time.sleep(0.2)
    return left


def test_sweep_on_a_local_ray_instance_equals_the_process_pool(tmp_path):
    assert not ray.is_initialized()
    before = _descendants()
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump({"base": "hiddenite", "workloads": ["mlp", "gpt2-decode"], "workers": 2,
                                 "grid": {"array.rows": [16, 64], "generator.units": [1, 4]}, "out": "res"}))
    assert main(["sim", "sweep", str(f), "--no-progress"]) == 0
    local = (tmp_path / "res" / "sweep.csv").read_bytes()
    (tmp_path / "res" / "sweep.csv").unlink()
    assert main(["sim", "sweep", str(f), "--no-progress", "--engine", "ray"]) == 0
    assert (tmp_path / "res" / "sweep.csv").read_bytes() == local  # same rows, same order, same digits
    assert not ray.is_initialized() and not _gone(before)  # the instance it started is shut down


@pytest.fixture(scope="module")
def ray_instance():
    import test_executor

    before = _descendants()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    ray.cloudpickle.register_pickle_by_value(test_executor)  # Ray's workers cannot import tests/
    yield
    ray.cloudpickle.unregister_pickle_by_value(test_executor)
    ray.shutdown()
    assert not _gone(before)


def test_ray_retries_once_then_keeps_the_error(tmp_path, ray_instance):
    outs = executor.run(math.sqrt, [4.0, -1.0], engine="ray", workers=2, progress=False)
    assert outs[0].value == 2.0 and outs[1].error == "ValueError: math domain error"
    flaky = [str(tmp_path / f"p{i}") for i in range(3)]
    assert [o.value for o in executor.run(_fail_first, flaky, engine="ray", progress=False)] == ["p0", "p1", "p2"]
    bad = [str(tmp_path / "bad")]
    assert executor.run(_always_fail, bad, engine="ray", progress=False)[0].error == "RuntimeError: broken point"
    assert pathlib.Path(bad[0]).read_text() == "xx"  # two attempts, no more
    assert ray.is_initialized()  # an instance it did not start is left running


def test_paper_sweep_as_ray_tasks(tmp_path, ray_instance):
    mod = _load("partial_freezing")
    assert mod.main(["--quick", "--out", str(tmp_path / "ray"), "--engine", "ray"]) == 0
    assert mod.main(["--quick", "--out", str(tmp_path / "local")]) == 0
    ray_rows, local_rows = _rows(tmp_path / "ray" / "results.csv"), _rows(tmp_path / "local" / "results.csv")
    drop = {"seconds"}  # wall time of each point
    assert [{k: v for k, v in r.items() if k not in drop} for r in ray_rows] == \
        [{k: v for k, v in r.items() if k not in drop} for r in local_rows]
