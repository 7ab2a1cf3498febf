"""The Python API (telcosim.api): the example of docs/api.md runs as written, and the API gives
the same bytes as the command line and refuses what it cannot honour."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

import telcosim
from telcosim.cli import main
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "api.md"


def test_the_documented_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    work = tmp_path / "work"
    work.mkdir()
    # The example reads the shared data sets at ../shared/data, as from the repository's root.
    shared = SHARED_DATA.parent
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    monkeypatch.chdir(work)
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own example
    printed = out.getvalue().splitlines()
    assert "['cdr', 'locations', 'cell_kpis', 'subscribers', 'cells']" in printed
    assert "True 7" in printed
    # The outage run (a baseline kept, labelled rows) and, with the shared data, the evaluation.
    assert printed.count("True True") == (2 if shared.is_dir() else 1)
    assert "['site_outage']" in printed
    assert "400 19" in printed
    assert "2" in printed  # two problems reported at once
    assert all(line != "False" and not line.startswith("False") for line in printed), printed


def test_api_and_cli_give_the_same_bytes(tmp_path):
    api = telcosim.run("small_city", tmp_path / "api", subscribers=300, seed=5, days=1)
    assert main(["run", "small_city", "--out", str(tmp_path / "cli"), "--subscribers", "300", "--seed", "5",
                 "--quiet"]) == 0
    files = lambda d: {k: v["sha256"] for k, v in json.loads((d / "manifest.json").read_text())["files"].items()}  # noqa: E731
    assert files(api.path) == files(tmp_path / "cli")
    assert api.rows == telcosim.open_run(tmp_path / "cli").rows


def test_a_loaded_scenario_takes_no_second_set_of_overrides(tmp_path):
    sc = telcosim.load_scenario("small_city")
    with pytest.raises(telcosim.TelcosimError, match="pass them to telcosim.load_scenario"):
        telcosim.run(sc, tmp_path / "x", seed=3)
    assert not (tmp_path / "x").exists()


def test_baseline_is_refused_without_incidents(tmp_path):
    with pytest.raises(telcosim.TelcosimError, match="no incidents"):
        telcosim.run("small_city", tmp_path / "x", subscribers=100, baseline=True)
    assert not (tmp_path / "x").exists()


def test_bad_tables_and_folders_are_named(tmp_path):
    with pytest.raises(telcosim.TelcosimError, match="not a telcosim run folder"):
        telcosim.open_run(tmp_path)
    run = telcosim.run("small_city", tmp_path / "r", subscribers=100)
    with pytest.raises(telcosim.TelcosimError, match=r"no table 'incidents' \(this run has: cdr, locations"):
        run.dataset("incidents")
    with pytest.raises(telcosim.TelcosimError, match="'nope' is not an input kind"):
        telcosim.evaluate(run, real={"nope": tmp_path})
