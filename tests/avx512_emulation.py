"""A test-only build of the extension whose AVX-512 kernels run on SIMDe (header-only emulation
of the x86 intrinsics), and its AMX kernel on csrc/cpu/amx_intrin.h's stand-in, so that
linear_avx512*.cpp and linear_amx.cpp are checked against the reference on CPUs without them.
The variants are named "avx512-emulated", "avx512vnni-emulated" and "amx-emulated" there; the
installed slt_hw._C never has them.

SIMDe comes from Debian's libsimde-dev, fetched without root into build/simde (`apt-get download`
+ `dpkg -x`; nothing is installed), or from $SLT_HW_SIMDE_INCLUDE. The build goes to
build/avx512-emulated/<hash of the sources>, so reruns reuse it.

A failed fetch or build skips the emulated tests, or fails them with
SLT_HW_REQUIRE_AVX512_EMULATION=1 (set by `make test`).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ISAS = ("avx512-emulated", "avx512vnni-emulated", "amx-emulated")
REQUIRE_ENV = "SLT_HW_REQUIRE_AVX512_EMULATION"
ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"


class EmulationUnavailable(Exception):
    pass


def _run(cmd: list[str], **kw) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:
        raise EmulationUnavailable(f"{cmd[0]}: {e}") from None
    if r.returncode != 0:
        tail = (r.stdout + r.stderr).strip()[-3000:]
        raise EmulationUnavailable(f"`{' '.join(cmd)}` failed (exit {r.returncode}):\n{tail}")


def simde_include() -> Path:
    env = os.environ.get("SLT_HW_SIMDE_INCLUDE")
    if env:
        if not (Path(env) / "simde/x86/avx512.h").is_file():
            raise EmulationUnavailable(f"SLT_HW_SIMDE_INCLUDE={env}: no simde/x86/avx512.h there")
        return Path(env)
    dest = BUILD / "simde"
    inc = dest / "usr" / "include"
    if (inc / "simde/x86/avx512.h").is_file():
        return inc
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise EmulationUnavailable("SIMDe: no apt-get/dpkg to fetch libsimde-dev; set SLT_HW_SIMDE_INCLUDE")
    BUILD.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD) as tmp:
        try:  # downloads only: no root needed
            _run(["apt-get", "download", "libsimde-dev"], cwd=tmp)
        except EmulationUnavailable:  # no package lists on this machine: fetch private ones
            opts = [f"-oDir::State::Lists={tmp}/lists", f"-oDir::Cache={tmp}/cache", "-oDebug::NoLocking=1"]
            for d in ("lists/partial", "cache/archives/partial"):
                os.makedirs(os.path.join(tmp, d))
            _run(["apt-get", *opts, "update"], cwd=tmp)
            _run(["apt-get", *opts, "download", "libsimde-dev"], cwd=tmp)
        debs = glob.glob(os.path.join(tmp, "libsimde-dev_*.deb"))
        if not debs:
            raise EmulationUnavailable("apt-get download libsimde-dev left no .deb")
        _run(["dpkg", "-x", debs[0], os.path.join(tmp, "x")])
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(os.path.join(tmp, "x"), dest)
    if not (inc / "simde/x86/avx512.h").is_file():
        raise EmulationUnavailable(f"libsimde-dev unpacked into {dest} has no simde/x86/avx512.h")
    return inc


def _tool(module: str, attr: str, exe: str) -> str | None:
    try:
        path = os.path.join(getattr(__import__(module), attr), exe)
        if os.path.isfile(path):
            return path
    except ImportError:
        pass
    return shutil.which(exe)


def _source_hash(inc: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in (ROOT / "csrc").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files.append(ROOT / "CMakeLists.txt")
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    h.update(str(inc.resolve()).encode())
    h.update(sys.version.encode())
    return h.hexdigest()[:16]


def build() -> Path:
    """The emulated extension's file, built if needed."""
    inc = simde_include()
    out = BUILD / "avx512-emulated" / _source_hash(inc)
    lib = out / "lib"
    found = glob.glob(str(lib / "_C*.so"))
    if found:
        return Path(found[0])
    cmake = _tool("cmake", "CMAKE_BIN_DIR", "cmake")
    if cmake is None:
        raise EmulationUnavailable("cmake not found (pip install cmake)")
    import pybind11

    for old in out.parent.glob("*"):  # earlier sources' builds, and a half-done one of these
        shutil.rmtree(old, ignore_errors=True)
    args = [cmake, "-S", str(ROOT), "-B", str(out / "cmake"), "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out / 'lib.tmp'}", "-DSLT_HW_WITH_CUDA=OFF",
            "-DSLT_HW_CPU_EMULATE_AVX512=ON", f"-DSLT_HW_SIMDE_INCLUDE={inc}"]
    ninja = _tool("ninja", "BIN_DIR", "ninja")
    if ninja is not None:
        args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    _run(args)
    _run([cmake, "--build", str(out / "cmake"), "-j", str(os.cpu_count() or 1)])
    os.replace(out / "lib.tmp", lib)  # complete builds only
    found = glob.glob(str(lib / "_C*.so"))
    if not found:
        raise EmulationUnavailable(f"the build left no _C*.so in {lib}")
    return Path(found[0])


@functools.cache
def _load():
    try:
        path = build()
        spec = importlib.util.spec_from_file_location("slt_hw_avx512_emulated._C", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except EmulationUnavailable as e:
        return None, str(e)
    if not set(ISAS) <= set(mod.cpu_isas()):
        return None, f"{path} does not list {ISAS} in cpu_isas(): {mod.cpu_isas()}"
    return mod, None


def module():
    """The emulated extension; skips the test (fails it under SLT_HW_REQUIRE_AVX512_EMULATION=1)
    if SIMDe or the build is unavailable."""
    mod, why = _load()
    if mod is None:
        msg = f"AVX-512 emulation (SIMDe) unavailable: {why}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {msg}", pytrace=False)
        pytest.skip(msg)
    return mod


def module_for(isa: str):
    """The extension that runs `isa`: the emulated one for an emulated ISA's name (module()),
    else the native one."""
    from slt_hw import _ext

    return module() if isa in ISAS else _ext.require()
