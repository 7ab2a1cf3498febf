"""Project rules that code review alone would miss: no global RNG, numba only in sim/kernels,
dependencies pointing one way with no exemption, project imports at module level, and a clean lint."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The package graph, bottom first: a package may import only the packages before it (and itself).
#   sim          the simulator: network, population, kernels, timeline, sinks
#   realdata     readers of real data sets (shared by calibration, evaluation and the shape model)
#   models       learned generators (torch, lazily) that feed populations and profiles
#   scenarios    scenario files, incidents, the one run path (uses models' generators), studies
#   calibration  real data -> DP targets (ledger) -> fitted scenario (runs scenarios)
#   evaluation   synthetic vs real: fidelity, utility, detection, privacy attacks, coverage, report
#   telcosim     the public face on top: Python API and CLI, may import anything
LAYERS = ("sim", "realdata", "models", "scenarios", "calibration", "evaluation", "telcosim")
FOLDERS = {"telcosim": "telcosim", **{p: p for p in LAYERS if p != "telcosim"}}
PACKAGES = tuple(FOLDERS.values())

# Libraries that may be imported inside a function: heavy to import and needed by only some paths
# (torch and opacus are optional extras; scipy.stats alone takes longer to import than numba).
# Everything else, the standard library included, is imported at the top of the module.
LAZY_ALLOWED = ("torch", "opacus", "optuna", "sklearn", "matplotlib", "opendp", "distributed", "dask.distributed",
                "scipy.stats")


def _lazy_allowed(module: str) -> bool:
    return any(module == lib or module.startswith(f"{lib}.") for lib in LAZY_ALLOWED)

GLOBAL_RNG = re.compile(
    r"np\.random\.seed|random\.seed\(|torch\.manual_seed|np\.random\.(rand|randn|randint|random|choice|normal|"
    r"uniform|poisson|exponential|lognormal|shuffle|permutation)\(|^\s*import random\b|^from random import",
    re.MULTILINE)


def _sources(*dirs: str):
    for d in dirs:
        # hidden folders (benchmarks/.venv-peers: a venv of third-party code) are not the project's
        yield from (p for p in (ROOT / d).rglob("*.py") if not any(x.startswith(".") for x in p.relative_to(ROOT).parts))


def _layer_of(path: Path) -> str:
    folder = path.relative_to(ROOT).parts[0]
    return next(layer for layer, f in FOLDERS.items() if f == folder)


def _module_parts(path: Path) -> list[str]:
    """``telcosim.<layer>...`` dotted parts of a source file's module (a package for __init__.py)."""
    rel = path.relative_to(ROOT)
    layer = _layer_of(path)
    inner = list(rel.parts[1:-1]) + ([] if rel.stem == "__init__" else [rel.stem])
    return ["telcosim"] + ([] if layer == "telcosim" else [layer]) + inner


def _imports(path: Path, text: str | None = None):
    """(module imported, line, inside a function?) for every import of ``path`` (or of ``text`` as
    if it were that file), relative ones resolved to absolute names. ``if TYPE_CHECKING:`` blocks at
    module level count as module level."""
    source = path.read_text(encoding="utf-8") if text is None else text
    tree = ast.parse(source, filename=str(path))
    here = _module_parts(path)
    package = here if path.name == "__init__.py" else here[:-1]

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[:len(package) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                for alias in child.names:  # from a import b: b is a module of a, or a name in it
                    yield f"{mod}.{alias.name}", child.lineno, in_function
            yield from visit(child, inner)

    yield from visit(tree, False)


def _target_layer(module: str) -> str | None:
    """The layer a ``telcosim...`` module belongs to; None for any other module."""
    parts = module.split(".")
    if parts[0] != "telcosim":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in FOLDERS and parts[1] != "telcosim" else "telcosim"


def test_layers_are_the_packages():
    """Every top-level folder with Python sources that installs as telcosim.X is a declared layer."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    mapped = set(re.findall(r'^"telcosim\.(\w+)" = "(\w+)"', pyproject, re.MULTILINE))
    assert {(p, p) for p in LAYERS if p != "telcosim"} == mapped


def test_dependencies_point_down():
    """A package imports only packages below it in LAYERS: no exemption."""
    offenders = []
    for path in _sources(*PACKAGES):
        layer = _layer_of(path)
        allowed = set(LAYERS[:LAYERS.index(layer) + 1])
        for module, line, _ in _imports(path):
            target = _target_layer(module)
            if target is not None and target not in allowed:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {module} ({target} sits above)")
    assert not offenders, "\n".join(offenders)


def test_project_imports_at_module_level():
    """No telcosim module is imported inside a function: a cycle cannot be hidden that way."""
    offenders = [f"{path.relative_to(ROOT)}:{line}: {module}"
                 for path in _sources(*PACKAGES)
                 for module, line, in_function in _imports(path)
                 if in_function and _target_layer(module) is not None]
    assert not offenders, "\n".join(offenders)


def test_lazy_imports_only_of_heavy_optional_libraries():
    """Inside a function only LAZY_ALLOWED libraries are imported (the rest at the top of the module)."""
    offenders = [f"{path.relative_to(ROOT)}:{line}: {module}"
                 for path in _sources(*PACKAGES)
                 for module, line, in_function in _imports(path)
                 if in_function and _target_layer(module) is None and not _lazy_allowed(module)]
    assert not offenders, "\n".join(offenders)


def test_lazy_imports_say_why():
    """Each import inside a function says why it is lazy (``# lazy: ...`` on its line, or above
    the block of imports it belongs to), so a reader can tell a deliberate lazy import from a
    hidden dependency."""
    offenders = []
    for path in _sources(*PACKAGES):
        lines = path.read_text().splitlines()
        for module, line, in_function in _imports(path):
            i = line - 1
            while i > 0 and "# lazy:" not in lines[i] and lines[i - 1].strip().startswith(("import ", "from ")):
                i -= 1
            said = "# lazy:" in lines[i] or (i > 0 and "# lazy:" in lines[i - 1])
            if in_function and not said:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert not offenders, "\n".join(offenders)


def test_import_resolution_sees_relative_and_nested_imports():
    """The checks above find what they look for: a relative import two levels up, one inside a
    method, and a guarded TYPE_CHECKING import at module level."""
    text = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..calibration import targets\n"
            "class A:\n    def f(self):\n        from . import base\n        import pandas\n")
    got = list(_imports(ROOT / "models" / "probe.py", text))
    assert ("telcosim.calibration.targets", 3, False) in got
    assert ("telcosim.models.base", 6, True) in got and ("pandas", 7, True) in got
    assert _target_layer("telcosim.calibration.targets") == "calibration" and _target_layer("telcosim.cli") == "telcosim"
    assert _lazy_allowed("scipy.stats.qmc") and not _lazy_allowed("scipy.spatial")


def test_no_global_random_state():
    offenders = [str(p.relative_to(ROOT)) for p in _sources(*PACKAGES, "benchmarks") if GLOBAL_RNG.search(p.read_text())]
    assert not offenders, f"global RNG used in {offenders}"


def test_only_kernels_import_numba():
    offenders = [str(p.relative_to(ROOT)) for p in _sources(*PACKAGES)
                 if any(m.split(".")[0] in ("numba", "llvmlite") for m, _, _ in _imports(p))
                 and p.relative_to(ROOT).parts[:2] != ("sim", "kernels")]
    assert not offenders


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None, reason="ruff not installed")
def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    proc = subprocess.run([ruff, "check", "--quiet", str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
