"""Build slt_hw. Packages are mapped explicitly so `kernels/`, `sim/` and `csrc/` install only as
`slt_hw.kernels`, `slt_hw.sim` and `slt_hw.csrc` (never as top-level modules); of csrc/ only the
CUDA sources the cupy backend compiles at run time are installed.

The native extension `slt_hw._C` is described once, in CMakeLists.txt; this file only drives
CMake (Ninja generator, parallel build) and puts the library where setuptools expects
`slt_hw._C`, for wheels (`python -m build --wheel --no-isolation`) and PEP 660 editable installs
(`pip install -e . --no-build-isolation`) alike. Environment switches (all optional):
  SLT_HW_BUILD_CPP=0      skip the native extension (pure-Python install; reference backend only)
  SLT_HW_BUILD_CUDA=auto  build the CUDA sources only if nvcc is found (PATH, $CUDACXX or
                          $CUDA_HOME/bin) and `torch.version.cuda` is set (torch may be absent:
                          then no CUDA); 1 = always (a missing nvcc or a failed CUDA build is
                          an error), 0 = never
  SLT_HW_CUDA_ARCHS=90    CMAKE_CUDA_ARCHITECTURES, e.g. "80;90" or "80,90"
  SLT_HW_REQUIRE_CPP=1    a failed native build fails the install (CI); by default it is a
                          warning and the install goes on without `slt_hw._C`
  SLT_HW_CMAKE_ARGS       extra arguments for the CMake configure step (shell-split)
  CMAKE_BUILD_PARALLEL_LEVEL  build jobs (default: `build_ext -j`, else all cores)
A failed native build is a warning, not an error: `import slt_hw` still works and
`slt-hw info` reports why the extension is missing.
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent

PACKAGES = {
    "slt_hw": "slt_hw",
    "slt_hw.contract": "slt_hw/contract",
    "slt_hw.reference": "slt_hw/reference",
    "slt_hw.backends": "slt_hw/backends",
    "slt_hw.nn": "slt_hw/nn",
    "slt_hw.search": "slt_hw/search",
    "slt_hw.rtl": "slt_hw/rtl",
    "slt_hw.kernels": "kernels",
    "slt_hw.sim": "sim",
    "slt_hw.csrc": "csrc",  # package data only: the CUDA sources the cupy backend compiles at run time
}


def _env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default).strip().lower()


def _warn(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\nslt_hw: {msg}\n{bar}\n", file=sys.stderr, flush=True)


def _find_nvcc():
    for cand in (os.environ.get("CUDACXX"),
                 os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc") if os.environ.get("CUDA_HOME") else None,
                 shutil.which("nvcc")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _torch_cuda():
    """torch.version.cuda, or None (also when torch is absent, as in isolated builds)."""
    try:
        import torch
    except Exception:
        return None
    return getattr(torch.version, "cuda", None)


def _tool(module: str, attr: str, exe: str):
    """A build tool from its PyPI package (pip does not put the venv's bin on PATH), else PATH."""
    try:
        mod = __import__(module)
        path = os.path.join(getattr(mod, attr), exe)
        if os.path.isfile(path):
            return path
    except Exception:
        pass
    return shutil.which(exe)


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: Path = ROOT, optional: bool = True):
        super().__init__(name, sources=[], optional=optional)
        self.sourcedir = str(sourcedir)


class NativeBuildError(Exception):
    pass


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        try:
            self._build_cmake(ext)
        except NativeBuildError as e:
            if not ext.optional:
                raise SystemExit(f"slt_hw: native build failed (SLT_HW_REQUIRE_CPP=1): {e}") from None
            _warn(f"the native extension {ext.name} was NOT built: {e}\n"
                  "The install continues in pure Python (reference backend only). Set "
                  "SLT_HW_REQUIRE_CPP=1 to make this an error, SLT_HW_BUILD_CPP=0 to silence it.")
            self._drop(ext)

    def _drop(self, ext):
        # An optional extension whose file is missing is skipped when copied in place (editable
        # installs). Remove stale copies too, so an old build is not loaded as if it were new.
        stale = [self.get_ext_fullpath(ext.name)]
        if self.editable_mode or self.inplace:
            try:
                stale.append(self._get_inplace_equivalent(self.get_finalized_command("build_py"), ext)[0])
            except Exception:  # a private setuptools helper: best effort
                pass
        for path in stale:
            try:
                os.remove(path)
            except OSError:
                pass

    def _build_cmake(self, ext):
        cmake = _tool("cmake", "CMAKE_BIN_DIR", "cmake")
        if cmake is None:
            raise NativeBuildError("cmake not found (pip install cmake)")
        ninja = _tool("ninja", "BIN_DIR", "ninja")

        extdir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_temp = Path(self.build_temp).resolve() / "cmake" / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)

        cuda_mode = _env_flag("SLT_HW_BUILD_CUDA", "auto")
        if cuda_mode not in ("auto", "0", "1"):
            raise NativeBuildError(f"SLT_HW_BUILD_CUDA={cuda_mode!r}: expected auto, 0 or 1")
        nvcc = _find_nvcc() if cuda_mode != "0" else None
        if cuda_mode == "1" and nvcc is None:
            raise SystemExit("slt_hw: SLT_HW_BUILD_CUDA=1 but nvcc was not found "
                             "(PATH, $CUDACXX, $CUDA_HOME/bin)")
        if cuda_mode == "auto":
            with_cuda = nvcc is not None and _torch_cuda() is not None
            why = ("nvcc and a CUDA torch found" if with_cuda else
                   "no nvcc" if nvcc is None else "torch absent or CPU-only")
        else:
            with_cuda = cuda_mode == "1"
            why = f"SLT_HW_BUILD_CUDA={cuda_mode}"
        archs = os.environ.get("SLT_HW_CUDA_ARCHS", "90").replace(",", ";").strip() or "90"
        print(f"slt_hw: building {ext.name} with CUDA {'ON' if with_cuda else 'OFF'} ({why})",
              flush=True)

        import pybind11  # a build requirement

        cfg = "Debug" if self.debug else "Release"
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DSLT_HW_WITH_CUDA={'ON' if with_cuda else 'OFF'}",
            f"-DSLT_HW_CUDA_ARCHS={archs}",
        ]
        if with_cuda:
            args.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
        if ninja is not None:
            args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        args += shlex.split(os.environ.get("SLT_HW_CMAKE_ARGS", ""))
        cache = build_temp / "CMakeCache.txt"
        if cache.exists():  # configure from scratch: an old cache may hold another generator,
            # compiler or CUDA setting, which CMake would either reuse silently or reject
            shutil.rmtree(build_temp)
            build_temp.mkdir(parents=True)

        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(self.parallel or os.cpu_count() or 1)
        target = extdir / Path(self.get_ext_filename(ext.name)).name
        steps = [("configure", [cmake, "-S", ext.sourcedir, "-B", str(build_temp), *args]),
                 ("build", [cmake, "--build", str(build_temp), "--config", cfg, "-j", jobs])]
        for step, cmd in steps:
            try:
                subprocess.run(cmd, check=True)
            except (subprocess.CalledProcessError, OSError) as e:
                what = (f"exit status {e.returncode}" if isinstance(e, subprocess.CalledProcessError)
                        else str(e))
                msg = f"CMake {step} step failed ({what}; its output is above): {shlex.join(cmd)}"
                if with_cuda and cuda_mode == "1":
                    raise SystemExit(f"slt_hw: SLT_HW_BUILD_CUDA=1 and {msg}") from None
                raise NativeBuildError(msg) from None
        if not target.exists():
            raise NativeBuildError(f"CMake succeeded but {target} is missing")


def _ext_modules():
    if _env_flag("SLT_HW_BUILD_CPP", "1") in ("0", "false", "no", "off"):
        return []
    required = _env_flag("SLT_HW_REQUIRE_CPP", "0") in ("1", "true", "yes", "on")
    return [CMakeExtension("slt_hw._C", optional=not required)]


setup(
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={"slt_hw.sim": ["presets/*.yaml", "data/*.json"], "slt_hw.csrc": ["core/*.h", "cuda/linear.cu"]},
    ext_modules=_ext_modules(),
    cmdclass={"build_ext": CMakeBuild},
)
