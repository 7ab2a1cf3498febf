"""The golden pin: the SHA-256 of every output file of the test city, and of one incident run
with its baseline, as they were when the pin was last taken.

A change that alters output on purpose changes the pin in the same commit, with the reason in the
commit message: ``TELCOSIM_UPDATE_GOLDEN=1 pytest tests/test_golden_output.py`` rewrites
tests/data/golden_output.json. Any other change must leave every byte as it was (refactors,
speed-ups, a new layout). manifest.json is left out: it holds the wall time and creation date.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from telcosim import scenarios
from telcosim.scenarios.runner import run

GOLDEN = Path(__file__).with_name("data") / "golden_output.json"
UPDATE = os.environ.get("TELCOSIM_UPDATE_GOLDEN") == "1"


def _digests(run_dir: Path) -> dict[str, str]:
    return {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def _check(name: str, run_dir: Path) -> None:
    pins = json.loads(GOLDEN.read_text())
    got = _digests(run_dir)
    if UPDATE:
        pins[name] = got
        GOLDEN.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
        return
    want = pins[name]
    assert sorted(got) == sorted(want), f"{name}: files differ: {sorted(set(got) ^ set(want))}"
    changed = [f for f in want if got[f] != want[f]]
    assert not changed, f"{name}: {len(changed)} of {len(want)} files changed, e.g. {changed[:5]}"


def test_test_city_output_is_pinned(small_run):
    _, out, _ = small_run
    _check("test_city", out)


@pytest.fixture(scope="module")
def outage_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    sc = scenarios.load("site_outage_peak", ["population.subscribers=4000"])
    run(sc, root / "run", baseline_out=root / "run.baseline")
    return root


def test_incident_run_and_its_baseline_are_pinned(outage_pair):
    _check("site_outage_peak", outage_pair / "run")
    _check("site_outage_peak.baseline", outage_pair / "run.baseline")


def test_the_pin_covers_every_table():
    pins = json.loads(GOLDEN.read_text())
    for name in ("test_city", "site_outage_peak", "site_outage_peak.baseline"):
        files = pins[name]
        assert {"cell_kpis.parquet", "cells.parquet", "subscribers.parquet"} <= set(files)
        # One part per simulated hour; the CDRs have one more, for calls that end after the window.
        assert sum(f.startswith("cdr/") for f in files) == 25 and sum(f.startswith("locations/") for f in files) == 24
    assert "incidents.parquet" in pins["site_outage_peak"]
    assert pins["site_outage_peak"]["cells.parquet"] == pins["site_outage_peak.baseline"]["cells.parquet"]
