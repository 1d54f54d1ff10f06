"""The package's layers, read from its source with ast (every import statement, also those inside
functions): no import cycle among slt_hw's modules (kernels/ and sim/ as slt_hw.kernels and
slt_hw.sim, as setup.py installs them), the registry imports no backend, and no backend reaches
the public API, directly or through what it imports."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What a user calls: the package's __init__, its functions and modules, and what builds on them.
PUBLIC = ("slt_hw.ops", "slt_hw.mha", "slt_hw.nn", "slt_hw.conversion", "slt_hw.checkpoint", "slt_hw.train",
          "slt_hw.cli", "slt_hw.demo", "slt_hw.memory", "slt_hw.models", "slt_hw.data", "slt_hw.search", "slt_hw.sim",
          "slt_hw.rtl", "slt_hw.distributed", "slt_hw.executor", "slt_hw.csvio")


def _public(module: str) -> bool:
    return module == "slt_hw" or any(module == p or module.startswith(p + ".") for p in PUBLIC)


def _packages() -> dict[str, pathlib.Path]:
    """setup.py's PACKAGES (package name -> folder), read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PACKAGES":
            return {name: ROOT / folder for name, folder in ast.literal_eval(node.value).items()}
    raise AssertionError("setup.py has no PACKAGES mapping")


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for pkg, folder in _packages().items():
        for path in sorted(folder.glob("*.py")):
            mods[pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"] = path
    return mods


MODULES = _modules()


def _target(name: str) -> str | None:
    """The module an imported name lands in: itself, else its longest known prefix."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: pathlib.Path) -> set[str]:
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {_target(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:  # `from pkg import mod` imports the module pkg.mod
                found.add(_target(f"{base}.{a.name}") if f"{base}.{a.name}" in MODULES else _target(base))
    found.discard(None)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _reach(start: str) -> dict[str, list[str]]:
    """Every module `start` imports, directly or not, with one import path to it."""
    paths, todo = {start: [start]}, [start]
    while todo:
        m = todo.pop()
        for n in sorted(GRAPH[m]):
            if n not in paths:
                paths[n] = [*paths[m], n]
                todo.append(n)
    return paths


def test_the_walk_sees_the_package():
    assert {"slt_hw._ops", "slt_hw.dispatch", "slt_hw.backends.cpu", "slt_hw.kernels.linear"} <= set(GRAPH)
    assert "slt_hw.kernels.linear" in GRAPH["slt_hw.kernels.linear_grouped"]  # relative imports resolve
    assert "slt_hw.kernels" in GRAPH["slt_hw.backends.triton"]  # imports inside functions count


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_cycle(module):
    for other, path in _reach(module).items():
        if other != module and module in _reach(other):
            back = _reach(other)[module]
            raise AssertionError(f"import cycle: {' -> '.join(path + back[1:])}")


def test_registry_imports_no_backend():
    assert not [m for m in _reach("slt_hw.dispatch") if m.startswith("slt_hw.backends")]


@pytest.mark.parametrize("backend", sorted(m for m in GRAPH if m.startswith("slt_hw.backends.")))
def test_backends_do_not_reach_the_public_api(backend):
    for m, path in _reach(backend).items():
        assert not _public(m), " -> ".join(path)
