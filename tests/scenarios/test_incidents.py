"""The incident library: every built-in incident scenario at small size, its signature, the
counterfactual pair (identical prefix, labels = exactly the rows that differ) and bad files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from telcosim import scenarios
from telcosim.cli import main
from telcosim.scenarios.incidents import compile_incidents
from telcosim.scenarios.runner import run as run_scenario
from telcosim.sim.engine import Simulation

# SMS-rich enough for the SMS signatures (the general profile sends 0.54 SMS a day)
SMALL = ["population.subscribers=4000", "behaviour.sms_per_day=4.0", "output.pm_interval_s=900"]


def _run(tmp_path_factory, name: str, extra: list[str] | None = None):
    sc = scenarios.load(name, SMALL + (extra or []))
    root = tmp_path_factory.mktemp(name)
    run_scenario(sc, root / "run", baseline_out=root / "run.baseline")
    return sc, root / "run", root / "run.baseline"


def _table(run_dir: Path, name: str):
    p = run_dir / name
    return pq.read_table(p if p.is_dir() else run_dir / f"{name}.parquet").to_pandas()


def _incident(run_dir: Path, i: int = 0) -> dict:
    inc = _table(run_dir, "incidents").iloc[i]
    return {"cells": np.array(inc["cells"]), "start": inc["start"], "end": inc["end"],
            "effect_start": inc["effect_start"], "params": json.loads(inc["params"])}


def _during(kpi, inc, *, pad_min: int = 0):
    t = kpi["interval_start"]
    return (t >= inc["start"] + np.timedelta64(pad_min, "m")) & (t + np.timedelta64(15, "m") <= inc["end"])


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    return _run(tmp_path_factory, "site_outage_peak")


@pytest.fixture(scope="module")
def stadium(tmp_path_factory):
    return _run(tmp_path_factory, "stadium_event", ["incidents[0].attendees=1500"])


@pytest.fixture(scope="module")
def backhaul(tmp_path_factory):
    return _run(tmp_path_factory, "backhaul_failure")


@pytest.fixture(scope="module")
def failures(tmp_path_factory):
    return _run(tmp_path_factory, "random_failures_week", FAILURES)


def test_outage_cells_are_silent_and_neighbours_take_the_load(outage):
    _, run, base = outage
    inc = _incident(run)
    kpi, kb = _table(run, "cell_kpis"), _table(base, "cell_kpis")
    down = kpi["cell_id"].isin(inc["cells"]) & _during(kpi, inc)
    assert down.sum() > 0
    # No traffic carried while down: nothing completes, no channel busy, no data served.
    assert kpi.loc[down, "voice_completed"].sum() == 0
    assert kpi.loc[down, "busy_channels_mean"].sum() == 0
    assert kpi.loc[down, "data_volume_mb"].sum() == 0
    # ... though people there still try (and fail: no coverage).
    assert kpi.loc[down, "voice_attempts"].sum() > 0
    assert kpi.loc[down, "voice_failed"].sum() == kpi.loc[down, "voice_attempts"].sum()
    # The neighbours' load rises.
    cells = _table(run, "cells")
    nbrs = set(np.concatenate(cells.loc[cells.cell_id.isin(inc["cells"]), "neighbours"].to_list())) - set(inc["cells"])
    near = kpi["cell_id"].isin(list(nbrs)) & _during(kpi, inc)
    near_b = kb["cell_id"].isin(list(nbrs)) & _during(kb, inc)
    assert kpi.loc[near, "voice_attempts"].sum() > 1.1 * kb.loc[near_b, "voice_attempts"].sum()
    assert kpi.loc[near, "carried_erlang"].sum() > kb.loc[near_b, "carried_erlang"].sum()
    # Failed attempts carry the cause and the incident's label.
    cdr = _table(run, "cdr")
    nc = cdr[cdr["cause"] == "no_coverage"]
    assert len(nc) > 0 and nc["incident_id"].notna().all()
    # An attempt in a down cell, or a call started outside that moved into one and was dropped.
    assert (nc["cell_id"].isin(inc["cells"]) | nc["end_cell_id"].isin(inc["cells"])).all()
    assert set(nc.loc[~nc["cell_id"].isin(inc["cells"]), "outcome"]) <= {"dropped"}
    # When the site comes back, the subscribers there re-attach (a registration storm).
    loc = _table(run, "locations")
    att = loc[loc["reason"] == "attach"]
    assert len(att) > 0 and set(att["cell_id"]) <= set(inc["cells"])
    assert (att["time"] >= inc["end"]).all() and (att["time"] < inc["end"] + np.timedelta64(15, "m")).all()


def _dark_hours(kpi, cells, start, ok) -> float:
    """How long (hours) the footprint ``cells`` stayed in state ``ok`` (a test on their KPIs summed
    per interval), counted in whole KPI intervals from the one that begins at ``start``."""
    per = kpi[kpi["cell_id"].isin(cells)].groupby("interval_start").agg(
        done=("voice_completed", "sum"), busy=("busy_channels_mean", "sum"), mb=("data_volume_mb", "sum"),
        thr=("throughput_mean_mbps", "max"))
    step = per.index.to_series().diff().min()
    t, n = pd.Timestamp(start), 0
    while t in per.index and ok(per.loc[t]):
        t, n = t + step, n + 1
    return n * step / pd.Timedelta(hours=1)


def test_site_outage_lasts_the_published_median(outage):
    # docs/scenarios.md, site_outage_peak: US FCC-reportable outages last a median of "a bit under
    # three hours" (NRSC, 1999) and 3.3 h on average (GAO/RCED-93-79FS). Measured as an operator
    # would see it: how long the site's cells carried nothing (no call completed, no channel busy,
    # no data) from the failure on, while in the baseline they carried traffic in every interval.
    _, run, base = outage
    inc = _incident(run)
    kpi, kb = _table(run, "cell_kpis"), _table(base, "cell_kpis")
    dark = _dark_hours(kpi, inc["cells"], inc["start"], lambda r: r.done == 0 and r.busy == 0 and r.mb == 0)
    assert 2.5 <= dark <= 3.3
    lit = _dark_hours(kb, inc["cells"], inc["start"], lambda r: r.busy > 0 and r.mb > 0)
    assert lit >= dark


def test_incident_runs_pass_verify(outage, stadium, capsys):
    # Checksums, schema (incident_id columns, incidents.parquet) and the per-cell invariants hold
    # for the run with incidents and for its baseline.
    for case in (outage, stadium):
        _, run, base = case
        for d in (run, base):
            assert main(["verify", str(d)]) == 0, capsys.readouterr().err


def test_counterfactual_prefix_is_byte_identical(outage):
    _, run, base = outage
    inc = _incident(run)
    first_hour = (inc["effect_start"] - _table(run, "cell_kpis")["interval_start"].min()) // np.timedelta64(1, "h")
    assert first_hour >= 1
    for table in ("cdr", "locations"):
        for k in range(int(first_hour)):
            a = next((run / table).rglob(f"part-{k:05d}.parquet")).read_bytes()
            b = next((base / table).rglob(f"part-{k:05d}.parquet")).read_bytes()
            assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest(), (table, k)


_CONTENT = {"cdr": ["subscriber_id", "counterpart_id", "service", "direction", "start_time", "duration_s",
                    "bytes_up", "bytes_down", "cell_id", "end_cell_id", "outcome", "cause", "redial"],
            "locations": ["subscriber_id", "time", "cell_id", "reason"]}


@pytest.mark.parametrize("table", ["cdr", "locations"])
@pytest.mark.parametrize("case", ["outage", "stadium", "failures"])
def test_labels_cover_exactly_the_rows_that_differ(case, table, request):
    _, run, base = request.getfixturevalue(case)
    cols = _CONTENT[table]
    a = _table(run, table)
    b = _table(base, table)
    # Row content as pandas hashes it (independent of telcosim's own row hashes).
    key = lambda df: pd.util.hash_pandas_object(df[cols].astype(object), index=False)  # noqa: E731
    ka, kb = key(a), key(b)
    # Per distinct row content: the run's copies beyond the baseline's are the changed ones.
    n_run = ka.value_counts()
    n_base = kb.value_counts().reindex(n_run.index, fill_value=0)
    expected = (n_run - n_base).clip(lower=0)
    labelled = ka[a["incident_id"].notna()].value_counts().reindex(n_run.index, fill_value=0)
    assert expected.sum() > 0
    assert (labelled == expected).all()
    # Nothing before the first effect is labelled.
    tcol = "start_time" if table == "cdr" else "time"
    first = _table(run, "incidents")["effect_start"].min()
    assert (a.loc[a["incident_id"].notna(), tcol] >= first - np.timedelta64(3, "h")).all()


def test_kpi_labels_mark_the_rows_that_differ(outage):
    _, run, base = outage
    a, b = _table(run, "cell_kpis"), _table(base, "cell_kpis")
    figures = [c for c in a.columns if c not in ("interval_start", "cell_id", "incident_id")]
    differs = ~((a[figures] == b[figures]) | (a[figures].isna() & b[figures].isna())).all(axis=1)
    assert differs.sum() > 0
    assert (a["incident_id"].notna() == differs).all()


def test_stadium_crowd_arrives_and_venue_blocks(stadium):
    _, run, base = stadium
    inc = _incident(run)
    kpi, kb = _table(run, "cell_kpis"), _table(base, "cell_kpis")
    venue = kpi["cell_id"].isin(inc["cells"]) & _during(kpi, inc)
    venue_b = kb["cell_id"].isin(inc["cells"]) & _during(kb, inc)
    m = inc["params"]["multipliers"]
    # More people and more demand per person: attempts rise by more than the multiplier.
    assert kpi.loc[venue, "voice_attempts"].sum() > m["voice"] * kb.loc[venue_b, "voice_attempts"].sum()
    assert kpi.loc[venue, "sms"].sum() > m["sms"] * kb.loc[venue_b, "sms"].sum()
    # Local congestion: blocking appears at the venue.
    assert kpi.loc[venue, "voice_blocked"].sum() > max(5, 3 * kb.loc[venue_b, "voice_blocked"].sum())
    # The attendees are there: location rows in the venue cells during the match.
    loc = _table(run, "locations")
    there = loc["cell_id"].isin(inc["cells"]) & (loc["time"] >= inc["start"]) & (loc["time"] < inc["end"])
    loc_b = _table(base, "locations")
    there_b = loc_b["cell_id"].isin(inc["cells"]) & (loc_b["time"] >= inc["start"]) & (loc_b["time"] < inc["end"])
    assert loc.loc[there, "subscriber_id"].nunique() > 5 * loc_b.loc[there_b, "subscriber_id"].nunique()
    # Against the published figures (docs/scenarios.md): connection failures far above a routine
    # day's in the same cells (Shafiq et al. 2013: more than two orders of magnitude; at this size
    # the venue's 3 blocked of its day's few hundred calls set the routine rate, so a 30-fold rise
    # here, 240-fold at the built-in size) ...
    day = kb["cell_id"].isin(inc["cells"])
    routine = max(kb.loc[day, "voice_blocked"].sum(), 1) / kb.loc[day, "voice_attempts"].sum()
    match = kpi.loc[venue, "voice_blocked"].sum() / kpi.loc[venue, "voice_attempts"].sum()
    assert match > 30 * routine
    # ... and per-session throughput 40-120 times under the uncrowded cells' (1-3 Mbps in a hall
    # of 10,000 people against 120 Mbps before they came: Sauter, wirelessmoves, Dec. 2019).
    thr = kpi.loc[venue, "throughput_mean_mbps"].mean()
    assert thr < kb.loc[venue_b, "throughput_mean_mbps"].mean() / 40


def test_mass_event_multiplier_is_the_configured_factor(tmp_path_factory):
    # With a single attendee the crowd is the usual one: attempts in the venue rise by the
    # multiplier alone (SMS x3 here), within sampling error.
    sc, run, base = _run(tmp_path_factory, "stadium_event",
                         ["incidents[0].attendees=1", "incidents[0].multipliers={ sms = 3.0 }",
                          "incidents[0].peaks=[]", "incidents[0].radius_km=3.0"])
    inc = _incident(run)

    def mo_sms(run_dir):
        cdr = _table(run_dir, "cdr")
        sel = ((cdr["service"] == "sms") & (cdr["direction"] == "mo") & cdr["cell_id"].isin(inc["cells"])
               & (cdr["start_time"] >= inc["start"]) & (cdr["start_time"] < inc["end"]))
        return int(sel.sum())

    n_run, n_base = mo_sms(run), mo_sms(base)
    assert n_base > 200
    ratio = n_run / n_base
    assert abs(ratio - 3.0) < 4 * 3.0 * np.sqrt(1 / n_run + 1 / n_base)


def test_backhaul_caps_data_and_voice_holds(backhaul):
    _, run, base = backhaul
    inc = _incident(run)
    cap = inc["params"]["cap_mbps"]
    kpi, kb = _table(run, "cell_kpis"), _table(base, "cell_kpis")
    hit = kpi["cell_id"].isin(inc["cells"]) & _during(kpi, inc)
    hit_b = kb["cell_id"].isin(inc["cells"]) & _during(kb, inc)
    thr, thr_b = kpi.loc[hit, "throughput_mean_mbps"].dropna(), kb.loc[hit_b, "throughput_mean_mbps"].dropna()
    assert len(thr) > 0
    assert (thr <= cap + 1e-6).all()
    assert thr.mean() < thr_b.mean() * cap / 50.0 * 1.5  # 50 Mbps: the peak rate of one session alone
    # Voice holds: attempts and completions as in the baseline.
    va, vb = kpi.loc[hit, "voice_attempts"].sum(), kb.loc[hit_b, "voice_attempts"].sum()
    ca, cb = kpi.loc[hit, "voice_completed"].sum(), kb.loc[hit_b, "voice_completed"].sum()
    assert abs(va - vb) <= 0.03 * vb and abs(ca - cb) <= 0.03 * cb


def test_backhaul_cut_takes_the_published_number_of_sites_for_a_fibre_repair(backhaul):
    # docs/scenarios.md, backhaul_failure: one cut or hub took 15, 20 and 27 sites in the
    # published incidents (Lærdal 2014, Melbourne 2012, Sydney 2019), and a buried fibre's repair
    # takes "6 hours or longer", within GAO-18-198's bound for accidents (under half of 19-36 h).
    # Measured the same way: the sites whose cells lost their backhaul, and how long from the cut
    # every session there stayed at or under the cap while the baseline's went above it.
    _, run, base = backhaul
    inc = _incident(run)
    cells = _table(run, "cells")
    sites = cells.loc[cells["cell_id"].isin(inc["cells"]), "site_id"].nunique()
    assert 15 <= sites <= 27
    cap = inc["params"]["cap_mbps"]
    kpi, kb = _table(run, "cell_kpis"), _table(base, "cell_kpis")
    capped = _dark_hours(kpi, inc["cells"], inc["start"], lambda r: r.thr <= cap + 1e-6)
    assert 5.75 <= capped <= 9.5
    assert _dark_hours(kb, inc["cells"], inc["start"], lambda r: r.thr > cap) >= capped


# The disaster's signature at a small size: 4,000 subscribers on 30 sites, each cell's channels
# dimensioned for its own busy hour of the ordinary week (network.dimensioning, the default).
DISASTER = ["population.subscribers=4000", "network.sites=30"]


def test_disaster_signature_against_published_figures(tmp_path_factory):
    sc = scenarios.load("regional_disaster", DISASTER)
    root = tmp_path_factory.mktemp("disaster")
    run_scenario(sc, root / "run", baseline_out=root / "run.baseline")
    run, base = root / "run", root / "run.baseline"
    surge, down = _incident(run, 0), _incident(run, 1)
    # Outgoing calls made in the region (the sites still standing).

    def calls(run_dir):
        c = _table(run_dir, "cdr")
        return c[(c["service"] == "voice") & (c["direction"] == "mo") & c["cell_id"].isin(surge["cells"])
                 & ~c["cell_id"].isin(down["cells"])]

    a, b = calls(run), calls(base)

    def window(c, h0, h1):
        t = c["start_time"]
        return c[(t >= surge["start"] + pd.Timedelta(hours=h0)) & (t < surge["start"] + pd.Timedelta(hours=h1))]

    x, y = window(a, 0, 0.5), window(b, 0, 0.5)
    # All attempts, redials included, as operators count them: several times the normal (the
    # published 50-60 fold needs persistent redialling: docs/scenarios.md).
    assert len(x) > 6 * len(y)
    # The surge is people who would not otherwise have called (Bagrow et al. 2011, Fig. 1C):
    # first attempts, distinct callers up many times, calls per caller nearly flat.
    fx, fy = x[x["redial"] == 0], y[y["redial"] == 0]
    callers = fx["subscriber_id"].nunique() / fy["subscriber_id"].nunique()
    per_caller = (len(fx) / fx["subscriber_id"].nunique()) / (len(fy) / fy["subscriber_id"].nunique())
    assert callers > 4.0 and per_caller < 1.5 and callers - 1 > 4 * (per_caller - 1)
    # ... so nearly all the extra calls are made by people who made none then in the baseline.
    new = fx[~fx["subscriber_id"].isin(set(fy["subscriber_id"]))]
    assert len(new) > 0.8 * (len(fx) - len(fy))
    # Blocking far above the normal day's, up to the published 70-95% restriction (MIC, 2011) in
    # the most blocked cell's quarter hour; the blocked calls are redialled.
    blocked, blocked_b = (x["outcome"] == "blocked").mean(), (y["outcome"] == "blocked").mean()
    assert blocked > 0.1 and blocked > 10 * max(blocked_b, 0.005)
    q = (x["start_time"] - surge["start"]) // pd.Timedelta(minutes=15)
    per_cell = x.assign(q=q, b=x["outcome"] == "blocked").groupby(["cell_id", "q"])["b"].agg(["mean", "size"])
    assert per_cell.loc[per_cell["size"] >= 20, "mean"].max() > 0.6
    assert (x["redial"] > 0).mean() > 0.1
    # A decay: hours 4-8 carry under half the first half-hour's surge (per half-hour).
    excess0 = len(x) - len(y)
    excess48 = (len(window(a, 4, 8)) - len(window(b, 4, 8))) / 8
    assert excess48 < 0.5 * excess0
    # The surge falls off with distance from the epicentre: the nearer half of the standing cells
    # takes a larger multiple of its normal calls than the farther half.
    cells = _table(run, "cells").set_index("cell_id")
    d = np.hypot(cells["x_km"] - 3.0, cells["y_km"] - 3.0)
    standing = [c for c in surge["cells"] if c not in set(down["cells"])]
    ds = d[standing]
    near, far = ds[ds <= ds.median()].index, ds[ds > ds.median()].index
    ratio = [len(x[x["cell_id"].isin(g)]) / max(1, len(y[y["cell_id"].isin(g)])) for g in (near, far)]
    assert ratio[0] > ratio[1]
    # The epicentre carries nothing while down.
    kpi = _table(run, "cell_kpis")
    dead = kpi["cell_id"].isin(down["cells"]) & _during(kpi, down)
    assert kpi.loc[dead, "voice_completed"].sum() == 0 and kpi.loc[dead, "voice_attempts"].sum() > 0


def test_outage_drops_calls_in_progress_when_told_to(tmp_path_factory):
    # Long, frequent calls so that many are in progress when the site goes down.
    sets = ['incidents[0].on_active="drop"', "behaviour.voice_per_day=30.0", "behaviour.call_duration_log_mu=6.0"]
    _, run, base = _run(tmp_path_factory, "site_outage_peak", sets)
    inc = _incident(run)
    cdr = _table(run, "cdr")
    dropped = cdr[cdr["cause"] == "cell_outage"]
    assert len(dropped) > 0
    # Dropped at the outage start, in a cell of the footprint, and labelled.
    assert (dropped["start_time"] + pd.to_timedelta(dropped["duration_s"], unit="s")
            - inc["start"]).abs().max() < pd.Timedelta(seconds=1)
    assert set(dropped["end_cell_id"]) <= set(inc["cells"])
    assert dropped["incident_id"].notna().all()
    # In handover mode the same calls move to a neighbour instead, where one has room.
    _, run_h, _ = _run(tmp_path_factory, "site_outage_peak", sets[1:])
    cdr_h = _table(run_h, "cdr")
    assert (cdr_h["cause"] == "cell_outage").sum() < len(dropped)
    loc_h = _table(run_h, "locations")
    moved = loc_h[(loc_h["reason"] == "handover") & (loc_h["time"] == inc["start"])]
    assert len(moved) > 0 and not moved["cell_id"].isin(inc["cells"]).any()


# Milan, New Year 2013/14, all records per hour against a normal weekday at the same hour, on the
# check part of the squares (the built-in is set from the fit part): docs/scenarios.md.
MILAN_NYE_CHECK = {22: 1.11, 23: 1.38, 0: 2.08, 1: 1.50, 2: 1.40}


def test_new_years_eve_follows_milan(tmp_path_factory):
    _, run, base = _run(tmp_path_factory, "new_years_eve",
                        ['time.start="2024-12-31T06:00:00"', "time.days=1", "network.sites=30"])

    def per_hour(run_dir):
        t = _table(run_dir, "cdr")["start_time"].dt.tz_convert("Europe/Rome")
        return t.dt.floor("h").value_counts()

    a, b = per_hour(run), per_hour(base)
    for hour, milan in MILAN_NYE_CHECK.items():
        day = 31 if hour >= 12 else 1
        (key,) = [k for k in a.index if k.hour == hour and k.day == day]
        ratio = a[key] / b[key]
        assert abs(ratio / milan - 1) < 0.25, (hour, ratio, milan)
    # Before the day's window opens at 12:00 the run is its baseline exactly.
    kpi = _table(run, "cell_kpis")
    hour = kpi["interval_start"].dt.tz_convert("Europe/Rome")
    assert kpi.loc[(hour.dt.day == 31) & (hour.dt.hour < 12), "incident_id"].isna().all()
    assert kpi.loc[(hour.dt.day == 31) & (hour.dt.hour >= 12), "incident_id"].notna().any()


# One day, rates x300 (not x26) and a ring level (capacity cap): sites, nodes, rings and power
# domains all fail.
# A day at 300 times the rates, with a ring level and nodes failing often enough that each level
# shows up in it (the built-in has 8 nodes: at its 0.36 a year a day here may draw none).
FAILURES = ["time.days=1", "incidents[0].acceleration=300", "incidents[0].node.per_year=1.0",
            'incidents[0].ring={ per_year = 2.0, law = "exponential" }']


def test_random_failures_take_whole_groups_each_one_labelled_incident(failures):
    sc, run, base = failures
    incs = _table(run, "incidents")
    fails = incs[incs["kind"] == "random_failure"]
    assert (fails["end"] > fails["start"]).all()
    params = fails["params"].map(json.loads)
    levels = params.map(lambda p: p["level"])
    assert {"site", "node", "ring", "power"} <= set(levels), levels.value_counts()
    # Each failure is one incident holding every cell of every site under its unit.
    topo = _table(run, "topology")
    cells = _table(run, "cells")
    column = {"site": "site_id", "node": "agg_node", "ring": "ring", "power": "power_domain"}
    for (_, row), p in zip(fails.iterrows(), params, strict=True):
        sites = topo.loc[topo[column[p["level"]]] == p["unit"], "site_id"]
        assert sorted(sites) == p["sites"]
        assert sorted(row["cells"]) == sorted(cells.loc[cells["site_id"].isin(sites), "cell_id"])
        assert p["effect"] == ("cap" if p["level"] == "ring" else "down")
    assert (params.map(lambda p: len(p["sites"])) > 1).sum() >= 3
    # Labels name these incidents, and a node's or power domain's label covers several sites at once.
    kpi = _table(run, "cell_kpis")
    ids = set(kpi["incident_id"].dropna().astype(int))
    assert ids and ids <= set(fails["incident_id"])
    group = fails.loc[levels.isin(["node", "power"]).to_numpy(), "incident_id"]
    site_of = cells.set_index("cell_id")["site_id"]
    labelled = kpi[kpi["incident_id"].isin(group)]
    assert labelled.groupby("incident_id")["cell_id"].agg(lambda c: site_of[c].nunique()).max() > 1
    # A capped ring carries voice as before but its data throughput falls.
    ring = fails[levels.eq("ring").to_numpy()].iloc[0]
    kb = _table(base, "cell_kpis")
    inside = {"cells": np.array(ring["cells"]), "start": ring["start"], "end": ring["end"]}
    sel = kpi["cell_id"].isin(inside["cells"]) & _during(kpi, inside)
    sel_b = kb["cell_id"].isin(inside["cells"]) & _during(kb, inside)
    if sel.sum():
        assert kpi.loc[sel, "data_volume_mb"].sum() <= kb.loc[sel_b, "data_volume_mb"].sum()
    assert main(["verify", str(run)]) == 0  # topology.parquet is listed in the manifest
    # Same seed, same failures.
    again = compile_incidents(Simulation(sc)).incidents
    assert [r["start_ms"] for r in again if r["kind"] == "random_failure"] == \
        [int((t - kpi["interval_start"].min()) / np.timedelta64(1, "ms")) for t in fails["start"]]


def test_bad_incidents_every_problem_with_its_path(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('''extends = "small_city"
[[incidents]]
kind = "site_outage"
cells = [999]
start = "2024-03-05T18:00:00"
end = "2024-03-05T17:00:00"
colour = "red"
[[incidents]]
kind = "mass_event"
sites = []
start = "2024-03-05T18:00:00"
duration_min = 30
multipliers = { voice = -2 }
[[incidents]]
kind = "backhaul_failure"
centre_km = [0.0, 0.0]
radius_km = 0.5
start = 5
duration_min = "long"
cap_mbps = 5
[[incidents]]
kind = "emergency"
sites = [1]
start = "2024-03-05T18:00:00"
duration_min = 30
multipliers = { voice = 3 }
falloff_km = 2.0
[[incidents]]
kind = "emergency"
centre_km = [0.0, 0.0]
radius_km = 2.0
start = "2024-03-05T18:00:00"
duration_min = 30
multipliers = { voice = 3 }
falloff_km = 0
[[incidents]]
kind = "emergency"
centre_km = [0.0, 0.0]
radius_km = 2.0
start = "2024-03-05T18:00:00"
duration_min = 30
callers = 1.5
multipliers = { voice = 3 }
[[incidents]]
kind = "emergency"
centre_km = [0.0, 0.0]
radius_km = 2.0
start = "2024-03-05T18:00:00"
duration_min = 30
multipliers = { voice = 3 }
calls_per_caller = 2
''')
    assert main(["run", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    for expected in ("bad.toml: incidents[0].colour: unknown key",
                     "bad.toml: incidents[0].end: '2024-03-05T17:00:00' is not after the start",
                     "bad.toml: incidents[0].cells: 999 is not a cell of this network (valid 0..56)",
                     "bad.toml: incidents[1].sites: [] is an empty footprint",
                     "bad.toml: incidents[1].multipliers.voice: -2 is not a multiplier >= 0",
                     "bad.toml: incidents[2].start: 5 is not a date-time string",
                     "bad.toml: incidents[2].duration_min: 'long' is not a duration > 0",
                     "bad.toml: incidents[3].falloff_km: needs a centre (give centre_km",
                     "bad.toml: incidents[4].falloff_km: 0 is not a number > 0",
                     "bad.toml: incidents[5].callers: 1.5 is out of range",
                     "bad.toml: incidents[5].multipliers.voice: has no effect with callers",
                     "bad.toml: incidents[6].calls_per_caller: has no effect without callers"):
        assert expected in err, (expected, err)
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --- generated bad incidents ------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from telcosim.scenarios.incidents import KINDS  # noqa: E402
from telcosim.sim.errors import ConfigError  # noqa: E402

_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                  st.text(max_size=8), st.lists(st.integers(-5, 2000), max_size=4))
_PLANTED = {
    "cells out of range": ({"cells": [999]}, "incidents[0].cells: 999 is not a cell of this network (valid 0..56)"),
    "end before start": ({"start": "2024-03-05T18:00:00", "end": "2024-03-05T17:00:00"}, "incidents[0].end:"),
    "negative multiplier": ({"multipliers": {"voice": -1.5}}, "incidents[0].multipliers.voice: -1.5 is not a multiplier >= 0"),
    "empty footprint": ({"sites": []}, "incidents[0].sites: [] is an empty footprint"),
    "unknown key": ({"severity": 3}, "incidents[0].severity: unknown key"),
    "wrong type": ({"duration_min": "long"}, "incidents[0].duration_min: 'long' is not a duration > 0"),
}


def _toml(v):
    from telcosim.scenarios.loader import _toml_value

    return _toml_value(v)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from([k for k in KINDS if k not in ("special_day", "random_failures")]),
       planted=st.sampled_from(sorted(_PLANTED)),
       junk=st.dictionaries(st.sampled_from(["start", "end", "duration_min", "cells", "radius_km", "centre_km",
                                             "attendees", "loss", "cap_mbps", "on_active", "capacity_factor",
                                             "coverage_overlap", "decay_min", "peaks", "name"]), _JUNK, max_size=4))
def test_generated_bad_incidents_are_all_reported(tmp_path_factory, kind, planted, junk):
    base = {"kind": kind, "start": "2024-03-05T10:00:00", "duration_min": 60, "cells": [3],
            "multipliers": {"voice": 2.0}, "cap_mbps": 5.0}
    inc = {**base, **{k: v for k, v in junk.items() if v is not None}}
    change, expected = _PLANTED[planted]
    for k in ("cells", "sites", "centre_km", "radius_km") if "sites" in change or "cells" in change else ():
        inc.pop(k, None)
    if planted == "end before start":
        inc.pop("duration_min", None)
    if planted == "wrong type":
        inc.pop("end", None)
    inc.update(change)
    if kind not in ("mass_event", "emergency") and planted == "negative multiplier":
        expected = "incidents[0].multipliers: unknown key"
    path = tmp_path_factory.mktemp("gen") / "bad.toml"
    path.write_text('extends = "small_city"\n[[incidents]]\n'
                    + "".join(f"{k} = {_toml(v)}\n" for k, v in inc.items()))
    with pytest.raises(ConfigError) as err:
        scenarios.load(str(path))
    lines = err.value.problems
    assert any(expected in line for line in lines), (expected, lines)
    assert all(line.startswith("bad.toml: incidents[0]") for line in lines), lines


def test_degraded_cell_loses_capacity_and_coverage(tmp_path_factory):
    root = tmp_path_factory.mktemp("degraded")
    f = root / "sleepy.toml"
    f.write_text('''extends = "normal_weekday"
[[incidents]]
kind = "degraded_cell"
sites = [0, 1, 2]
start = "2024-03-05T09:00:00"
end = "2024-03-05T18:00:00"
capacity_factor = 0.25
coverage_factor = 0.5
''')
    sc = scenarios.load(str(f), SMALL)
    run_scenario(sc, root / "run")
    inc = _incident(root / "run")
    kpi = _table(root / "run", "cell_kpis")
    cells = _table(root / "run", "cells").set_index("cell_id")
    sel = kpi["cell_id"].isin(inc["cells"]) & _during(kpi, inc, pad_min=60)
    k = kpi[sel]
    cap = np.floor(cells.loc[k["cell_id"], "voice_channels"].to_numpy() * 0.25)
    # Calls in progress are not pre-empted; an hour on, no cell holds more than its reduced channels.
    assert (k["busy_channels_peak"].to_numpy() <= cap).all()
    # Half the area is covered: about half of the attempts there fail for lack of coverage.
    cdr = _table(root / "run", "cdr")
    there = cdr["cell_id"].isin(inc["cells"]) & (cdr["start_time"] >= inc["start"]) & (cdr["start_time"] < inc["end"]) \
        & (cdr["direction"] == "mo")
    share = (cdr.loc[there, "cause"] == "no_coverage").mean()
    assert there.sum() > 300 and 0.4 < share < 0.6


def test_incident_run_same_bytes_whatever_the_chunking(tmp_path):
    # Forced destinations and per-cell multipliers reach every demand shard alike: the labelled
    # run is byte-identical with one shard or many (and with two Dask workers).
    sc = scenarios.load("stadium_event", ["population.subscribers=1500", "incidents[0].attendees=400"])
    run_scenario(sc, tmp_path / "one")
    run_scenario(sc, tmp_path / "many", chunk_subscribers=128)
    run_scenario(sc, tmp_path / "dask", workers=2)
    for other in ("many", "dask"):
        for p in sorted((tmp_path / "one").rglob("*.parquet")):
            q = tmp_path / other / p.relative_to(tmp_path / "one")
            assert hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(q.read_bytes()).digest(), (other, p.name)


def test_emergency_callers_same_bytes_whatever_the_chunking_and_labelled(tmp_path):
    # The emergency's callers are drawn once per subscriber from the incident's own stream: the
    # run is byte-identical with one shard or many, and labels mark exactly the rows that differ.
    sc = scenarios.load("regional_disaster", ["population.subscribers=1500", "network.sites=30"])
    run_scenario(sc, tmp_path / "one", baseline_out=tmp_path / "base")
    run_scenario(sc, tmp_path / "many", chunk_subscribers=128)
    for p in sorted((tmp_path / "one").rglob("*.parquet")):
        q = tmp_path / "many" / p.relative_to(tmp_path / "one")
        assert hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(q.read_bytes()).digest(), p.name
    a, b = _table(tmp_path / "one", "cdr"), _table(tmp_path / "base", "cdr")
    ka, kb = (pd.util.hash_pandas_object(df[_CONTENT["cdr"]].astype(object), index=False) for df in (a, b))
    n_run = ka.value_counts()
    expected = (n_run - kb.value_counts().reindex(n_run.index, fill_value=0)).clip(lower=0)
    labelled = ka[a["incident_id"].notna()].value_counts().reindex(n_run.index, fill_value=0)
    assert expected.sum() > 100
    assert (labelled == expected).all()


def test_review_edge_cases(tmp_path, capsys):
    # Out-of-range severities and durations are input errors, not crashes later on.
    bad = tmp_path / "edge.toml"
    bad.write_text('''extends = "small_city"
[[incidents]]
kind = "backhaul_failure"
sites = [0]
start = "2024-03-05T10:00:00"
duration_min = 1e20
loss = 1.0
[[incidents]]
kind = "degraded_cell"
cells = [1]
start = "2024-03-05T10:00:00"
duration_min = 60
capacity_factor = 0.0
[[incidents]]
kind = "random_failures"
mtbf_hours = 1e-6
''')
    assert main(["scenario", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    for needle in ("incidents[0].duration_min: 1e+20 is not a duration > 0 and <= 527040",
                   "incidents[0].loss: 1.0 is out of range", "incidents[1].capacity_factor: 0.0 is out of range",
                   "incidents[2].mtbf_hours: replaced by the laws per level"):
        assert needle in err, (needle, err)
    # An incident already under way when the window opens starts with it.
    ok = tmp_path / "early.toml"
    ok.write_text('''extends = "small_city"
[population]
subscribers = 800
[[incidents]]
kind = "site_outage"
sites = [0]
start = "2024-03-04T23:00:00"
end = "2024-03-05T02:00:00"
''')
    run_scenario(scenarios.load(str(ok)), tmp_path / "early")
    inc = _table(tmp_path / "early", "incidents").iloc[0]
    kpi = _table(tmp_path / "early", "cell_kpis")
    assert inc["start"] == kpi["interval_start"].min()


def test_dropped_calls_go_to_the_outage_not_an_earlier_event(tmp_path):
    # A call that started before the outage and was dropped by it is the outage's, even when a
    # mass event elsewhere started earlier.
    f = tmp_path / "two.toml"
    f.write_text('''extends = "site_outage_peak"
[population]
subscribers = 4000
[behaviour]
voice_per_day = 30.0
call_duration_log_mu = 6.0
[[incidents]]
kind = "site_outage"
centre_km = [0.0, 0.0]
radius_km = 0.5
start = "2024-03-05T18:02:30"
duration_min = 60
on_active = "drop"
[[incidents]]
kind = "mass_event"
centre_km = [2.0, 1.0]
radius_km = 0.6
start = "2024-03-05T19:00:00"
duration_min = 60
attendees = 200
multipliers = { sms = 2.0 }
''')
    run_scenario(scenarios.load(str(f)), tmp_path / "run")
    cdr = _table(tmp_path / "run", "cdr")
    dropped = cdr[cdr["cause"] == "cell_outage"]
    assert len(dropped) > 0 and (dropped["incident_id"] == 0).all()


# --- PM counters under incidents (docs/schema.md, "PM counters under incidents") ---------------

def _nbrs(run_dir: Path, cells: np.ndarray) -> list[int]:
    c = _table(run_dir, "cells")
    return sorted(set(np.concatenate(c.loc[c.cell_id.isin(cells), "neighbours"].to_list())) - set(cells))


def test_pm_outage_dead_cell_silent_neighbours_loaded(outage):
    _, run, base = outage
    inc = _incident(run)
    pm, pb = _table(run, "pm_cells"), _table(base, "pm_cells")
    down = pm["cell_id"].isin(inc["cells"]) & _during(pm, inc)
    assert down.sum() > 0
    # The dead cells: no PRB used, nobody connected, no RRC attempt heard.
    for col in ("rru_prb_used_dl", "rru_prb_used_ul", "rrc_conn_mean", "rrc_conn_max", "rrc_conn_estab_att",
                "drb_ue_active_dl_max", "voice_erlang"):
        assert pm.loc[down, col].sum() == 0, col
    assert pb.loc[pb["cell_id"].isin(inc["cells"]) & _during(pb, inc), "rrc_conn_estab_att"].sum() > 0
    # Their neighbours carry the load: more users, more PRB, more RRC attempts than in the baseline.
    near = pm["cell_id"].isin(_nbrs(run, inc["cells"])) & _during(pm, inc)
    near_b = pb["cell_id"].isin(_nbrs(run, inc["cells"])) & _during(pb, inc)
    for col, factor in (("rrc_conn_mean", 1.1), ("rru_prb_used_dl", 1.05), ("rrc_conn_estab_att", 1.1)):
        assert pm.loc[near, col].sum() > factor * pb.loc[near_b, col].sum(), col
    # No handover into or out of a dead cell while it is down.
    rel = _table(run, "pm_relations")
    dead = rel["source_cell_id"].isin(inc["cells"]) | rel["target_cell_id"].isin(inc["cells"])
    assert rel.loc[dead & _during(rel, inc, pad_min=15), "ho_att"].sum() == 0


def test_pm_mass_event_saturates_prb_and_throughput_falls(stadium):
    _, run, base = stadium
    inc = _incident(run)
    pm, pb = _table(run, "pm_cells"), _table(base, "pm_cells")
    venue = pm["cell_id"].isin(inc["cells"]) & _during(pm, inc)
    venue_b = pb["cell_id"].isin(inc["cells"]) & _during(pb, inc)
    # The venue's radio is saturated: PRB utilisation near 1 where the baseline has headroom.
    assert pm.loc[venue, "rru_prb_used_dl"].max() > 0.95
    assert pm.loc[venue, "rru_prb_used_dl"].mean() > 2 * pb.loc[venue_b, "rru_prb_used_dl"].mean()
    # Shared among many users, each gets less: mean and low-percentile throughput fall.
    for col in ("drb_ue_thp_dl_mean_mbps", "drb_ue_thp_dl_p10_mbps"):
        assert pm.loc[venue, col].median() < 0.7 * pb.loc[venue_b, col].median(), col
    assert pm.loc[venue, "drb_ue_active_dl_max"].max() > 3 * max(1, pb.loc[venue_b, "drb_ue_active_dl_max"].max())
    # Congestion refuses connections.
    v = pm.loc[venue]
    assert (v["rrc_conn_estab_att"] - v["rrc_conn_estab_succ"]).sum() > 0


def test_pm_backhaul_throughput_at_the_cap_with_prb_headroom(backhaul):
    _, run, base = backhaul
    inc = _incident(run)
    cap = inc["params"]["cap_mbps"]
    pm, pb = _table(run, "pm_cells"), _table(base, "pm_cells")
    cells = _table(run, "cells").set_index("cell_id")["data_mbps"]
    hit = pm["cell_id"].isin(inc["cells"]) & _during(pm, inc)
    hit_b = pb["cell_id"].isin(inc["cells"]) & _during(pb, inc)
    thr = pm.loc[hit, "drb_ue_thp_dl_mean_mbps"].dropna()
    # Users get the backhaul's rate at most, and most of the time about all of it ...
    assert len(thr) > 10 and (thr <= cap + 1e-6).all() and thr.median() > 0.5 * cap
    assert pb.loc[hit_b, "drb_ue_thp_dl_mean_mbps"].median() > 2 * cap
    # ... while the radio has headroom: PRB utilisation at most the cap's share of the radio capacity.
    radio = cells.loc[pm.loc[hit, "cell_id"]].to_numpy()
    prb = pm.loc[hit, "rru_prb_used_dl"].to_numpy()
    assert (prb <= cap / radio + 1e-9).all() and prb.max() < 0.5
