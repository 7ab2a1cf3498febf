"""Scenario validation details: partial tables keep defaults, cross-key checks, overrides."""

from __future__ import annotations

import datetime as dt

import pytest

from telcosim.sim import config
from telcosim.sim.config import Scenario
from telcosim.sim.errors import ConfigError


def test_partial_table_keeps_the_other_defaults():
    sc = config.from_dict({"network": {"voice_channels": {"urban": 20}}})
    d = Scenario().network.voice_channels
    assert sc.network.voice_channels.urban == 20
    assert (sc.network.voice_channels.suburban, sc.network.voice_channels.rural) == (d.suburban, d.rural)
    # Spelling out a default gives the same scenario (and so the same hash and bytes).
    assert config.from_dict({"network": {"voice_channels": {"urban": 8}}}).to_dict() == Scenario().to_dict()


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as err:
        config.from_dict({"network": {"sites": -1, "data_mbps": {"rural": 0}, "voice_channels": {"urban": 2.5}},
                          "time": {"start": "2024-01-01T00:00:00+02:00"}, "output": {"kpi_interval_s": 700}},
                         "x.toml")
    text = "\n".join(err.value.problems)
    for needle in ("network.sites: -1 is out of range", "network.data_mbps.rural: 0.0 is out of range (must be > 0)",
                   "network.voice_channels.urban: 2.5 is not a whole number", "time.start: '2024-01-01T00:00:00+02:00' has a UTC offset",
                   "output.kpi_interval_s: 700 does not divide 3600"):
        assert needle in text
    assert len(err.value.problems) == 5


def test_all_malformed_overrides_reported():
    with pytest.raises(ConfigError) as err:
        config.load(None, ["a", "b.c=1", "=3"])
    assert len(err.value.problems) == 2


def test_manifest_window_spans_real_hours_across_a_clock_change():
    from telcosim.sim.engine import Simulation

    sim = Simulation(config.from_dict({"time": {"start": "2024-03-31T00:00:00", "timezone": "Europe/Rome"},
                                       "population": {"subscribers": 10}}))
    window = sim.manifest(0.0)["window"]
    start, end = dt.datetime.fromisoformat(window["start"]), dt.datetime.fromisoformat(window["end"])
    assert end - start == dt.timedelta(hours=24)
    # The spring-forward day: local hour 2 does not exist, so epoch 2 starts at 03:00.
    assert [sim.local_hour(e)[0] for e in range(4)] == [0, 1, 3, 4]


@pytest.mark.parametrize(("sets", "key", "instead"), [
    (["network.cells_csv='cells.csv'"], "network.cells_csv", "set network.layout = 'csv'"),
    (["network.layout='hex'", "network.centre_scale_km=2.0"], "network.centre_scale_km", "random layout only"),
    (["network.layout='csv'", "network.cells_csv='c.csv'", "network.sites=40"], "network.sites",
     "the cells CSV gives the sites"),
])
def test_a_key_without_effect_is_an_error_that_says_what_to_set(sets, key, instead):
    with pytest.raises(ConfigError) as err:
        config.load(None, sets)
    line = next(p for p in err.value.problems if f": {key}: has no effect" in p)
    assert instead in line


def test_keys_inherited_from_a_builtin_are_not_blamed_on_the_user(tmp_path):
    from telcosim import scenarios

    # small_city writes network.sites = 19 for its hex layout; a file that extends it with a
    # cells CSV cannot remove that key, so only the keys it writes itself are checked.
    (tmp_path / "cells.csv").write_text("cell_id,lat,lon\n0,45.0,9.0\n1,45.01,9.0\n")
    f = tmp_path / "mine.toml"
    f.write_text('extends = "small_city"\n[network]\nlayout = "csv"\ncells_csv = "cells.csv"\n')
    assert scenarios.load(str(f)).network.layout == "csv"
    f.write_text('extends = "small_city"\n[network]\nlayout = "csv"\ncells_csv = "cells.csv"\nsectors = 1\n')
    with pytest.raises(ConfigError, match=r"mine.toml: network.sectors: has no effect with network.layout = 'csv'"):
        scenarios.load(str(f))
