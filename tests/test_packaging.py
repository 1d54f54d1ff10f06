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
                     "slt_hw/_normal_table.py", "slt_hw/backends/cpu.py", "slt_hw/reference/prng.py",
                     "slt_hw/rtl/top.py", "slt_hw/sim/data/generator_synthesis.json", "slt_hw/csrc/cuda/linear.cu",
                     "slt_hw/csrc/core/slt_contract.h", "slt_hw/csrc/core/slt_normal_table.h"):
        assert required in names
    assert not any(n.startswith(("kernels/", "sim/", "tests/", "bench/", "csrc/")) for n in names)
    assert not any(n.startswith("slt_hw/csrc/cpu/") for n in names)  # only what NVRTC compiles


def test_wheel_carries_the_native_extension(wheel):
    if os.environ.get("SLT_HW_BUILD_CPP") == "0":
        pytest.skip("SLT_HW_BUILD_CPP=0")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("slt_hw/_C") and n.endswith(".so") for n in names), names


def test_cupy_backend_loads_its_source_from_the_installed_wheel(wheel, tmp_path):
    """The wheel installed into a fresh venv (no dependencies downloaded: torch and the rest come
    from this environment, after the venv's own site-packages): the cupy backend finds linear.cu
    and its headers in the installed package, not in a source tree."""
    import site
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if pathlib.Path(p).is_dir()]
    (pathlib.Path(purelib) / "outer_env.pth").write_text("\n".join(ours) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    code = ("import slt_hw, slt_hw.backends.cupy as c\n"
            "print(slt_hw.__file__)\nprint(c.csrc())\n"
            "src = c.source()\n"
            "assert '__global__' in src and '#include \"core/slt_contract.h\"' in src\n"
            "assert (c.csrc() / 'core' / 'slt_contract.h').is_file()\n"
            "assert (c.csrc() / 'core' / 'slt_normal_table.h').is_file()\n"
            "print(slt_hw.dispatch.reasons('cuda', 'linear_planes')['cupy'])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run = subprocess.run([str(py), "-P", "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    pkg, src_dir = run.stdout.splitlines()[:2]
    assert pkg.startswith(purelib) and src_dir.startswith(purelib), run.stdout
    assert not src_dir.startswith(str(ROOT))


def test_isolated_build_never_needs_torch():
    """pip's build isolation installs [build-system].requires: torch there would pull CUDA wheels."""
    import tomllib

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert not [r for r in requires if r.lower().startswith("torch")], requires
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "find_package(Torch" not in cmake and "TORCH_LIBRARIES" not in cmake
