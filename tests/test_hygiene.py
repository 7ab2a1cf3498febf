"""Project rules that code review alone would miss: no global RNG, numba only in sim/kernels,
dependencies pointing one way, and a clean lint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "calibration", "scenarios", "models")
GLOBAL_RNG = re.compile(
    r"np\.random\.seed|random\.seed\(|torch\.manual_seed|np\.random\.(rand|randn|randint|random|choice|normal|"
    r"uniform|poisson|exponential|lognormal|shuffle|permutation)\(|^\s*import random\b|^from random import",
    re.MULTILINE)


def _sources(*dirs: str):
    for d in dirs:
        yield from (ROOT / d).rglob("*.py")


def test_no_global_random_state():
    offenders = [str(p.relative_to(ROOT)) for p in _sources(*PACKAGES, "benchmarks") if GLOBAL_RNG.search(p.read_text())]
    assert not offenders, f"global RNG used in {offenders}"


def test_only_kernels_import_numba():
    offenders = [str(p.relative_to(ROOT)) for p in _sources(*PACKAGES)
                 if re.search(r"^\s*(import numba|from numba)", p.read_text(), re.MULTILINE)
                 and "kernels" not in p.parts]
    assert not offenders


def test_sim_does_not_import_the_other_packages():
    pattern = re.compile(r"^\s*(from|import) (calibration|scenarios|models)\b", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in _sources("sim") if p.name != "cli.py" and pattern.search(p.read_text())]
    assert not offenders


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None, reason="ruff not installed")
def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    proc = subprocess.run([ruff, "check", "--quiet", str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
