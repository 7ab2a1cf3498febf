"""Shared fixtures: small runs reused by several tests (module scope keeps the suite quick)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from telcosim.scenarios.runner import run
from telcosim.sim import config

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def small_scenario(**overrides):
    """A small city, tight enough on channels that blocking, busy parties and drops all occur."""
    sets = {
        "population.subscribers": 4000,
        "network.sites": 30,
        "network.radius_km": 4.0,
        "network.dimensioning": "fixed",  # channels per class, fewer than an operator would give
        "network.voice_channels.urban": 3,
        "network.voice_channels.suburban": 3,
        "network.voice_channels.rural": 2,
        "network.data_mbps.urban": 20.0,
        "behaviour.voice_per_day": 6.0,
        # SMS-rich enough for the SMS tests (the general profile sends 0.54 a day)
        "behaviour.sms_per_day": 4.0,
        "output.kpi_interval_s": 900,
        # the PM counters (off by default), so that every test of the small city covers them
        "output.pm_interval_s": 900,
    }
    sets.update(overrides)
    return config.load(None, [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in sets.items()])


def read(run_dir: Path, table: str):
    path = run_dir / table
    return pq.read_table(path if path.is_dir() else run_dir / f"{table}.parquet")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "small"
    sc = small_scenario()
    result = run(sc, out)
    return sc, out, result
