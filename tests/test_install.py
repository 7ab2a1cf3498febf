"""A plain (non-editable) install: one import package, telcosim, and nothing generic.

The wheel is built from the working tree and installed into a fresh virtual environment that sees
the test environment's third-party packages (numpy, numba, pyarrow, ...) but not its editable
telcosim, so what imports there is exactly what the wheel installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    root = tmp_path_factory.mktemp("install")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The test environment's dependencies, as a plain path entry: its .pth files (the editable
    # telcosim among them) are not processed there.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # Built from a copy of the tracked files, so the build leaves nothing in the working tree.
    src = root / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    wheel_dir = root / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), str(src)], check=True, capture_output=True)
    wheel = next(wheel_dir.glob("telcosim-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    return py, Path(site), wheel


def _python(py: Path, code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=cwd, env={**os.environ, **env})


def test_the_wheel_installs_one_top_level_package(fresh):
    _, site, _ = fresh
    top = {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"}
    assert "telcosim" in top
    assert not top & {"sim", "models", "calibration", "scenarios", "evaluation", "realdata"}, top


def test_import_telcosim_and_run_the_api(fresh, tmp_path):
    py, site, _ = fresh
    code = ("import telcosim, telcosim.sim, telcosim.models, telcosim.calibration, telcosim.scenarios; "
            "r = telcosim.run('small_city', 'out', subscribers=60, seed=2); "
            "print(telcosim.__file__); print(sorted(r.tables)); print(r.verify())")
    # The kernels run as plain Python there (same bytes, tests/sim/test_determinism.py): this
    # checks the installed package, and a second compilation of every kernel would add a minute.
    proc = _python(py, code, tmp_path, NUMBA_DISABLE_JIT="1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(str(site)), lines[0]
    assert lines[1] == "['cdr', 'cell_kpis', 'cells', 'locations', 'subscribers']"
    assert lines[2] == "[]"


@pytest.mark.parametrize("name", ["sim", "models", "calibration", "scenarios"])
def test_generic_names_do_not_import(fresh, tmp_path, name):
    py, _, _ = fresh
    proc = _python(py, f"import {name}", tmp_path)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, proc.stdout + proc.stderr


def test_the_command_is_installed(fresh, tmp_path):
    py, _, _ = fresh
    proc = subprocess.run([py.parent / "telcosim", "scenario", "list"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "small_city" in proc.stdout
