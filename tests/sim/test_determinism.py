"""Same seed, same bytes: whatever the chunk size, and whether kernels are compiled or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from telcosim.scenarios.runner import run
from tests.conftest import small_scenario

ROOT = Path(__file__).resolve().parents[2]


def _checksums(out: Path) -> dict[str, str]:
    files = json.loads((out / "manifest.json").read_text())["files"]
    return {k: v["sha256"] for k, v in files.items()}


def _deterministic_manifest(out: Path) -> dict:
    man = json.loads((out / "manifest.json").read_text())
    man.pop("created")
    return man


def test_same_seed_same_bytes_any_chunk_size(tmp_path):
    sc = small_scenario(**{"population.subscribers": 1500})
    run(sc, tmp_path / "a", chunk_subscribers=1500)
    run(sc, tmp_path / "b", chunk_subscribers=97)
    run(sc, tmp_path / "c", chunk_subscribers=1)
    a = _checksums(tmp_path / "a")
    assert len(a) > 10
    assert a == _checksums(tmp_path / "b") == _checksums(tmp_path / "c")
    assert _deterministic_manifest(tmp_path / "a") == _deterministic_manifest(tmp_path / "c")


def test_different_seed_different_data(tmp_path):
    run(small_scenario(**{"population.subscribers": 800}), tmp_path / "a")
    run(small_scenario(**{"population.subscribers": 800, "seed": 2}), tmp_path / "b")
    a, b = _checksums(tmp_path / "a"), _checksums(tmp_path / "b")
    assert all(a[k] != b.get(k) for k in a if k.startswith(("cdr/", "locations/")))


_PURE_PYTHON = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.conftest import small_scenario
from telcosim.scenarios.runner import run
run(small_scenario(**{{"population.subscribers": 150, "network.sites": 8}}), Path({out!r}))
"""


def test_compiled_kernels_equal_their_python_functions(tmp_path):
    """Every kernel run as plain Python (NUMBA_DISABLE_JIT=1) gives the same bytes as compiled."""
    run(small_scenario(**{"population.subscribers": 150, "network.sites": 8}), tmp_path / "jit")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONWARNINGS="ignore")
    code = _PURE_PYTHON.format(root=str(ROOT), out=str(tmp_path / "py"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=600)
    assert _checksums(tmp_path / "jit") == _checksums(tmp_path / "py")
