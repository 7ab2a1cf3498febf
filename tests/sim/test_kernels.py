"""numba's cache of the kernels is dropped when any kernel source changes (sim/kernels/__init__.py)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import telcosim.sim.kernels


def _load(pkg: Path) -> None:
    """Run a copy of sim/kernels/__init__.py as the package ``pkg`` (its check runs on import)."""
    spec = importlib.util.spec_from_file_location("kernels_copy", pkg / "__init__.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_cache_kept_while_sources_stay_and_dropped_when_one_changes(tmp_path):
    pkg = tmp_path / "kernels"
    pkg.mkdir()
    shutil.copy(Path(telcosim.sim.kernels.__file__), pkg / "__init__.py")
    (pkg / "rng.py").write_text("X = 1\n")
    cache = pkg / "__pycache__"
    cache.mkdir()
    (cache / "demand.f-1.py311.nbi").write_bytes(b"old")
    _load(pkg)  # no digest yet: the cache is of unknown sources
    assert not (cache / "demand.f-1.py311.nbi").exists()
    assert (cache / "kernel-sources.sha256").is_file()
    (cache / "demand.f-1.py311.nbi").write_bytes(b"new")
    (cache / "demand.f-1.py311.0.nbc").write_bytes(b"new")
    _load(pkg)  # same sources: kept
    assert (cache / "demand.f-1.py311.nbi").exists() and (cache / "demand.f-1.py311.0.nbc").exists()
    (pkg / "rng.py").write_text("X = 2\n")  # an inlined helper changed: every kernel may be stale
    _load(pkg)
    assert not list(cache.glob("*.nb?"))
