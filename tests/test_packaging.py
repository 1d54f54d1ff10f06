"""The built wheel installs everything under slt_hw/: no top-level `kernels`, `sim` or `tests`."""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".venv", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".git",
                                ".pytest_cache", ".ruff_cache", ".hypothesis", ".benchmarks")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("build")
    src = tmp_path_factory.mktemp("src") / "slt_hw"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
                          cwd=src, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_every_file_is_under_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert all(t == "slt_hw" or (t.startswith("slt_hw-") and t.endswith(".dist-info")) for t in tops), tops
    for required in ("slt_hw/__init__.py", "slt_hw/kernels/__init__.py", "slt_hw/sim/__init__.py",
                     "slt_hw/_normal_table.py", "slt_hw/backends/builtin.py", "slt_hw/reference/prng.py",
                     "slt_hw/rtl/top.py", "slt_hw/sim/data/generator_synthesis.json"):
        assert required in names
    assert not any(n.startswith(("kernels/", "sim/", "tests/", "bench/", "csrc/")) for n in names)


def test_wheel_carries_the_native_extension(wheel):
    if os.environ.get("SLT_HW_BUILD_CPP") == "0":
        pytest.skip("SLT_HW_BUILD_CPP=0")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("slt_hw/_C") and n.endswith(".so") for n in names), names


def test_isolated_build_never_needs_torch():
    """pip's build isolation installs [build-system].requires: torch there would pull CUDA wheels."""
    import tomllib

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert not [r for r in requires if r.lower().startswith("torch")], requires
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "find_package(Torch" not in cmake and "TORCH_LIBRARIES" not in cmake
