"""`import slt_hw` is lean: no Triton, numba or CUDA, and it works without the native extension."""

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_touches_neither_triton_numba_nor_cuda():
    out = _run(
        "import sys, torch, slt_hw, slt_hw.nn, slt_hw.ops\n"
        "heavy = ('triton', 'numba', 'slt_hw.kernels', 'slt_hw.sim.rng', 'slt_hw._C')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(torch.cuda.is_initialized())\n"
    )
    assert out.split("\n")[:2] == ["[]", "False"]


def test_works_without_native_extension():
    """Block slt_hw._C as if the build had failed: reference backend still runs, info says why."""
    out = _run(
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'slt_hw._C': raise ImportError('simulated failed build')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import torch, slt_hw\n"
        "from slt_hw import dispatch\n"
        "p = slt_hw.pack_binary(torch.ones(4, 40, dtype=torch.bool), seed=0, name='w')\n"
        "y = slt_hw.slt_linear(torch.ones(2, 40), p)\n"
        "print(dispatch.select('linear_planes', torch.device('cpu')).name)\n"
        "print(dispatch.reasons('cpu')['cpp'])\n"
        "from slt_hw.cli import main\n"
        "main(['info'])\n"
    )
    assert out.startswith("reference\n")
    assert "simulated failed build" in out
    assert "missing" in out


def test_subpackages_import_under_package_names():
    pytest.importorskip("numba")
    import slt_hw.sim

    assert slt_hw.sim.__name__ == "slt_hw.sim"
    assert "sim" not in sys.modules and "kernels" not in sys.modules
