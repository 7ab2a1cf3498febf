"""telcosim augment: labelled incident episodes with baselines, weights and provenance."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from telcosim.cli import main


def test_augment_writes_labelled_episodes(tmp_path, capsys):
    out = tmp_path / "aug"
    rc = main(["augment", "--kind", "site_outage", "--episodes", "3", "--out", str(out), "--quiet",
               "--set", "population.subscribers=1500", "--seed", "7"])
    assert rc == 0, capsys.readouterr().err
    man = json.loads((out / "manifest.json").read_text())
    eps = pq.read_table(out / "episodes.parquet").to_pandas()
    assert len(eps) == 3 and man["episodes"] == 3
    assert set(man["sampling_distributions"]) == {"place", "start", "duration_min", "severity"}
    # Weight = natural incidents expected in the window: rate x sites x window / year.
    nat = man["natural_frequency"]
    hours = (eps["window_end"] - eps["window_start"]).dt.total_seconds() / 3600
    expected = nat["per_year"] * nat["units_in_network"] * hours / (365 * 24)
    assert np.allclose(eps["weight"], expected)
    cdr = pq.read_table(out / "cdr").to_pandas()
    assert {"episode_id", "variant", "provenance", "incident_id"} <= set(cdr.columns)
    assert set(cdr["provenance"].astype(str)) == {"telcosim-augment"}
    for k, ep in eps.iterrows():
        rows = cdr[cdr["episode_id"] == k]
        inc, base = rows[rows["variant"] == "incident"], rows[rows["variant"] == "baseline"]
        assert len(inc) and len(base)
        # Only the incident variant carries labels, and only inside the window.
        assert base["incident_id"].isna().all()
        assert inc["incident_id"].notna().any()
        assert (rows["start_time"] >= ep["window_start"]).all() and (rows["start_time"] < ep["window_end"]).all()
        params = json.loads(ep["params"])
        assert params["on_active"] in ("handover", "drop") and 0 <= params["coverage_overlap"] <= 0.8
    # Same seed, same episodes.
    again = tmp_path / "again"
    assert main(["augment", "--kind", "site_outage", "--episodes", "3", "--out", str(again), "--quiet",
                 "--set", "population.subscribers=1500", "--seed", "7"]) == 0
    eps2 = pq.read_table(again / "episodes.parquet").to_pandas()
    assert eps2[["start", "end", "seed", "params"]].equals(eps[["start", "end", "seed", "params"]])


def test_augment_bad_input(tmp_path, capsys):
    for argv in (["--kind", "volcano", "--episodes", "2"], ["--kind", "site_outage", "--episodes", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["augment", *argv, "--out", str(tmp_path / "a")])
        assert exc.value.code == 2
    assert main(["augment", "--kind", "site_outage", "--episodes", "1", "--out", str(tmp_path / "a"),
                 "--scenario", "site_outage_peak"]) == 2
    err = capsys.readouterr().err
    assert "already has incidents" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()


# --- the episode sampler (augment._sample) against its documented distributions ------------------

def _sampler_setup():
    from telcosim.sim import config
    from telcosim.sim.network import build_network
    from telcosim.sim.streams import generator

    sc = config.load(None, ["population.subscribers=2000", "network.sites=40"])
    return sc, build_network(sc.network, generator(sc.seed, "network.layout"))


def _draw(kind, n, sc, net, seed=5, before_h=2.0, after_h=2.0):
    from telcosim.scenarios.augment import _sample
    from telcosim.sim.streams import generator

    return [_sample(kind, k, sc, net, generator(seed, "incidents.augment", k), before_h, after_h) for k in range(n)]


@pytest.mark.parametrize("kind", ["site_outage", "cell_outage", "degraded_cell", "backhaul_failure",
                                  "mass_event", "emergency"])
def test_sampled_incidents_are_valid_and_inside_the_window(kind):
    """Every sampled incident is one the scenario format accepts on the base network, starts on the
    base scenario's first day at a whole minute, and leaves the windows before and after it free."""
    import dataclasses
    import datetime as dt

    from telcosim.scenarios import incidents

    sc, net = _sampler_setup()
    day0 = dt.datetime.fromisoformat(sc.time.start)
    drawn = _draw(kind, 300, sc, net, before_h=3.0, after_h=1.5)
    for k, inc in enumerate(drawn):
        assert inc["kind"] == kind and inc["name"] == f"{kind}-episode-{k}"
        start = dt.datetime.fromisoformat(inc["start"])
        offset_min = (start - day0).total_seconds() / 60
        assert offset_min == int(offset_min), inc["start"]
        assert 3 * 60 <= offset_min and offset_min + inc["duration_min"] <= 24 * 60 - 1.5 * 60 + 0.05
    one_day = dataclasses.replace(sc, time=dataclasses.replace(sc.time, days=1), incidents=tuple(drawn))
    parsed = incidents.parse(one_day, net, "augment")  # raises ConfigError listing any bad incident
    assert len(parsed) == len(drawn) and all(len(p.cells) >= 1 for p in parsed)


def test_sampled_durations_places_and_severities_follow_the_documented_laws():
    sc, net = _sampler_setup()
    n_sites = int(net.site_id.max()) + 1
    n = 4000
    # Duration: lognormal with median 60 min and log-sd 0.7, clipped to [10, 360].
    site = _draw("site_outage", n, sc, net)
    dur = np.array([i["duration_min"] for i in site])
    assert dur.min() >= 10 and dur.max() <= 360
    assert abs(np.median(np.log(dur)) - np.log(60)) < 0.05
    inner = np.log(dur[(dur > 10) & (dur < 360)])
    assert 0.64 < inner.std() < 0.71  # 0.67 expected: the clip at about 2.6 sd trims 1% of draws
    # Place: a site uniformly at random.
    counts = np.bincount([i["sites"][0] for i in site], minlength=n_sites)
    assert len(counts) == n_sites
    expected = n / n_sites
    assert ((counts - expected) ** 2 / expected).sum() < n_sites + 5 * np.sqrt(2 * n_sites)  # chi-square
    # Severity: handover with probability 0.7, coverage overlap U(0, 0.8).
    handover = np.mean([i["on_active"] == "handover" for i in site])
    assert abs(handover - 0.7) < 4 * np.sqrt(0.7 * 0.3 / n)
    overlap = np.array([i["coverage_overlap"] for i in site])
    assert overlap.min() >= 0 and overlap.max() <= 0.8 and abs(overlap.mean() - 0.4) < 0.02
    # Cells uniformly over the network's cells.
    cells = np.array([i["cells"][0] for i in _draw("degraded_cell", 2000, sc, net)])
    assert cells.min() >= 0 and cells.max() < net.n_cells and len(np.unique(cells)) > 0.6 * net.n_cells
    # Mass events: U(90, 180) minutes; attendees log-uniform between 2% and 15% of subscribers.
    mass = _draw("mass_event", 2000, sc, net)
    dur = np.array([i["duration_min"] for i in mass])
    assert dur.min() >= 90 and dur.max() <= 180 and abs(dur.mean() - 135) < 2
    share = np.array([i["attendees"] for i in mass]) / sc.population.subscribers
    assert share.min() >= 0.02 - 1 / sc.population.subscribers and share.max() <= 0.15
    assert abs(np.mean(np.log(share)) - np.log(np.sqrt(0.02 * 0.15))) < 0.03
    # Emergencies: centred on a site's position, radius U(1, 4) km; the main path's shape: extra
    # callers falling off with distance (falloff_km), no voice rate multiplier.
    for inc in _draw("emergency", 200, sc, net):
        x, y = inc["centre_km"]
        assert np.any((net.x_km == x) & (net.y_km == y))
        assert 1 <= inc["radius_km"] <= 4 and 0.2 <= inc["callers"] <= 1 and "voice" not in inc["multipliers"]
        assert 0.5 * inc["radius_km"] - 1e-3 <= inc["falloff_km"] <= 2 * inc["radius_km"] + 1e-3


def test_sampler_is_a_function_of_its_generator():
    """Same stream, same incident; another episode index or seed, another incident."""
    sc, net = _sampler_setup()
    a, b = _draw("backhaul_failure", 20, sc, net, seed=5), _draw("backhaul_failure", 20, sc, net, seed=5)
    assert a == b
    other = _draw("backhaul_failure", 20, sc, net, seed=6)
    assert all(x != y for x, y in zip(a, other, strict=True))
    assert len({(i["start"], i["sites"][0], i["loss"]) for i in a}) == 20
    assert all(0.5 <= i["loss"] <= 0.98 for i in a)


def test_windows_that_leave_no_room_for_the_incident_are_refused():
    from telcosim.sim.errors import ConfigError

    sc, net = _sampler_setup()
    with pytest.raises(ConfigError, match="--window-before/--window-after: 12.0 h \\+ 11.0 h leave no room"):
        _draw("mass_event", 1, sc, net, before_h=12.0, after_h=11.0)
