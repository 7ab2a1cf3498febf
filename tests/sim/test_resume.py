"""Checkpoints and resume: a run interrupted (Ctrl-C or killed) and resumed gives the same bytes as one
uninterrupted run; resuming needs an interrupted run of the same scenario and seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from telcosim.scenarios.runner import run
from telcosim.sim.errors import OutputError
from tests.conftest import small_scenario

ROOT = Path(__file__).resolve().parents[2]


def _files(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["files"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "reference"
    sc = small_scenario(**{"population.subscribers": 2500})
    run(sc, out)
    return sc, out


def test_ctrl_c_then_resume_is_identical(reference, tmp_path):
    sc, ref = reference
    out = tmp_path / "run"

    def interrupt(done, total):
        if done == 15 * 4:  # 15 hours of quarter-hour epochs
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(sc, out, progress=interrupt, checkpoint_every=4)
    partial = tmp_path / ".run.partial"
    assert not out.exists() and (partial / "checkpoint.npz").exists()
    # No file there looks complete: no manifest until the very end.
    assert not list(partial.rglob("manifest.json"))
    run(sc, out, resume=True, checkpoint_every=4)
    assert _files(out) == _files(ref)
    assert not partial.exists()


_SLOW_RUN = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.conftest import small_scenario
from telcosim.scenarios.runner import run
sc = small_scenario(**{{"population.subscribers": 2500}})
run(sc, Path({out!r}), checkpoint_every=2, progress=lambda d, t: time.sleep(0.06))
"""


def test_kill_halfway_then_resume_is_identical(reference, tmp_path):
    sc, ref = reference
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN.format(root=str(ROOT), out=str(out))])
    checkpoint = tmp_path / ".killed.partial" / "checkpoint.npz"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        parts = list((tmp_path / ".killed.partial" / "cdr").rglob("part-*.parquet")) if checkpoint.exists() else []
        if len(parts) >= 10:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    run(sc, out, resume=True)
    assert _files(out) == _files(ref)


def test_resume_needs_an_interrupted_run(tmp_path):
    with pytest.raises(OutputError, match="nothing to resume"):
        run(small_scenario(**{"population.subscribers": 100}), tmp_path / "none", resume=True)


def test_resume_refuses_another_scenario(tmp_path):
    out = tmp_path / "run"

    def interrupt(done, total):
        if done == 5 * 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(small_scenario(**{"population.subscribers": 300}), out, progress=interrupt, checkpoint_every=2)
    with pytest.raises(OutputError, match="another scenario or seed"):
        run(small_scenario(**{"population.subscribers": 300, "seed": 9}), out, resume=True)
    # The interrupted run is still there to resume with the right scenario.
    assert (tmp_path / ".run.partial" / "checkpoint.npz").exists()
