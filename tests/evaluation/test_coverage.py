"""Coverage of a run's strata: targets parsed and validated (every problem, dotted key, exit 2),
counts and shares against an independent count of the run's files, flags, and incident kinds from
an incidents table (a small synthetic one while the simulator does not write incidents)."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from telcosim.cli import rebalance as rebalance_cli
from telcosim.cli.args import EXIT_USAGE
from telcosim.evaluation.coverage import (
    coverage_metrics,
    load_targets,
    parse_hours,
    read_strata,
    targets_from_dict,
)
from telcosim.sim.errors import ConfigError


def parse(argv):
    p = argparse.ArgumentParser(prog="telcosim")
    sub = p.add_subparsers(dest="command", required=True)
    rebalance_cli.add_parser(sub)
    return p.parse_args(argv)


def test_hour_levels():
    assert parse_hours("3") == (3,)
    assert parse_hours("0-5") == (0, 1, 2, 3, 4, 5)
    assert parse_hours("22-1") == (22, 23, 0, 1)
    for bad in ("24", "0-24", "a-3", "1-2-3", "", "-3"):
        assert parse_hours(bad) is None, bad


def test_targets_parse(tmp_path):
    f = tmp_path / "coverage.toml"
    f.write_text('[density]\nrural = { min_share = 0.15 }\n[hour]\n"0-5" = { min_share = 0.08 }\n'
                 '[service]\nsms = { min_count = 10, min_share = 0.2 }\n[incident]\ncell_outage = { min_count = 5 }\n')
    t = load_targets(f)
    by = {i.name: i for i in t.items}
    assert set(by) == {"density.rural", "hour.0-5", "service.sms", "incident.cell_outage"}
    assert by["hour.0-5"].levels == tuple(str(h) for h in range(6))
    assert by["service.sms"].as_dict() == {"min_share": 0.2, "min_count": 10}


def test_bad_targets_report_every_problem_with_its_dotted_key():
    raw = {
        "densty": {"rural": {"min_share": 0.1}},
        "density": {"rurall": {"min_share": 0.1}, "urban": {"min_shar": 0.2}, "suburban": 0.3},
        "hour": {"0-25": {"min_share": 0.1}, "3": {"min_share": 1.5}},
        "service": {"sms": {"min_count": -2}, "voice": {"min_count": 2.5}, "data": {}},
        "home_density": {"rural": {"min_share": "lots"}},
        "incident": [1, 2],
    }
    with pytest.raises(ConfigError) as e:
        targets_from_dict(raw, "cov.toml")
    got = "\n".join(e.value.problems)
    expected = [
        "cov.toml: densty: unknown dimension (did you mean 'density'?",
        "cov.toml: density.rurall: unknown level (did you mean 'rural'?",
        "cov.toml: density.urban.min_shar: unknown key (did you mean 'min_share'?",
        "cov.toml: density.suburban: 0.3 is not a table",
        "cov.toml: hour.0-25: unknown level (allowed: an hour 0..23",
        "cov.toml: hour.3.min_share: 1.5 is out of range (must be > 0 and < 1)",
        "cov.toml: service.sms.min_count: -2 is out of range (must be >= 1)",
        "cov.toml: service.voice.min_count: 2.5 is not an integer",
        "cov.toml: service.data: no target (give min_share and/or min_count)",
        "cov.toml: home_density.rural.min_share: 'lots' is not a number",
        "cov.toml: incident: [1, 2] is not a table of levels",
    ]
    for line in expected:
        assert line in got, line
    assert len(e.value.problems) == len(expected) + 1  # density.urban also has no target left
    with pytest.raises(ConfigError, match=r"cov.toml: density: the min_share targets of its levels add up to 1.1"):
        targets_from_dict({"density": {"rural": {"min_share": 0.6}, "urban": {"min_share": 0.5}}}, "cov.toml")
    with pytest.raises(ConfigError, match="no targets"):
        targets_from_dict({}, "cov.toml")


def _cli_bad(argv, capsys):
    try:
        rc = rebalance_cli.run(parse(argv))
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line]


def test_bad_coverage_files_exit_2_one_line_each_nothing_written(small_run, tmp_path, capsys):
    _, run_dir, _ = small_run
    out = tmp_path / "out"
    bad = tmp_path / "cov.toml"
    bad.write_text('[density]\nrural = { min_share = 2 }\n[hour]\n"25" = { min_count = 3 }\n[servce]\nsms = {}\n')
    lines = _cli_bad(["rebalance", str(run_dir), "--target", str(bad), "--out", str(out)], capsys)
    assert lines == [
        "telcosim: error: cov.toml: density.rural.min_share: 2 is out of range (must be > 0 and < 1)",
        "telcosim: error: cov.toml: hour.25: unknown level (allowed: an hour 0..23 or an inclusive range 'A-B' "
        "of hours 0..23, e.g. '0-5', or '22-2' across midnight)",
        "telcosim: error: cov.toml: servce: unknown dimension (did you mean 'service'? allowed: density, hour, "
        "service, home_density, incident)",
    ]
    assert not out.exists()
    bad.write_text("[density\nrural = 1\n")
    lines = _cli_bad(["rebalance", str(run_dir), "--target", str(bad), "--out", str(out)], capsys)
    assert len(lines) == 1 and lines[0].startswith("telcosim: error: cov.toml: not valid TOML")
    lines = _cli_bad(["rebalance", str(tmp_path / "nope"), "--target", str(tmp_path / "none.toml"), "--out",
                      str(out)], capsys)
    assert lines == [f"telcosim: error: {tmp_path / 'nope'}: no such run folder",
                     f"telcosim: error: {tmp_path / 'none.toml'}: no such coverage target file"]
    assert not out.exists()


def test_coverage_counts_match_the_run_files(small_run):
    _, run_dir, _ = small_run
    doc = coverage_metrics(run_dir, {"density": {"rural": {"min_share": 0.15}, "urban": {"min_share": 0.2}},
                                     "hour": {"22-1": {"min_count": 10}}, "service": {"sms": {"min_share": 0.9}}})
    json.dumps(doc)
    # An independent count with pandas.
    cdr = pd.read_parquet(run_dir / "cdr", columns=["cell_id", "subscriber_id", "service", "start_time"])
    cells = pd.read_parquet(run_dir / "cells.parquet")
    subs = pd.read_parquet(run_dir / "subscribers.parquet")
    dens = cells.set_index("cell_id")["density"].astype(str)
    n = len(cdr)
    assert doc["total"] == n and doc["unit"] == "cdr records"
    serving = dens.loc[cdr["cell_id"]].value_counts()
    home = dens.loc[subs.set_index("subscriber_id").loc[cdr["subscriber_id"], "home_cell_id"]].value_counts()
    hours = cdr["start_time"].dt.hour.value_counts()
    for lv in ("urban", "suburban", "rural"):
        assert doc["dimensions"]["density"]["levels"][lv]["count"] == serving.get(lv, 0)
        assert doc["dimensions"]["home_density"]["levels"][lv]["count"] == home.get(lv, 0)
    for h in range(24):
        assert doc["dimensions"]["hour"]["levels"][str(h)]["count"] == hours.get(h, 0)
    for d in ("density", "hour", "service", "home_density", "incident"):
        assert sum(v["share"] for v in doc["dimensions"][d]["levels"].values()) == pytest.approx(1.0)
    by = {i["name"]: i for i in doc["strata"]}
    rural = serving.get("rural", 0)
    assert by["density.rural"]["count"] == rural and by["density.rural"]["share"] == pytest.approx(rural / n)
    assert by["density.rural"]["flag"] == ("under" if rural / n < 0.15 else "ok")
    assert by["density.urban"]["flag"] == "ok"
    assert by["hour.22-1"]["count"] == sum(hours.get(h, 0) for h in (22, 23, 0, 1))
    assert by["service.sms"]["flag"] == "under"
    # missing_records is the smallest addition (all in the level) that meets the share.
    m = by["service.sms"]["missing_records"]
    c = by["service.sms"]["count"]
    assert (c + m) / (n + m) >= 0.9 > (c + m - 1) / (n + m - 1)
    assert doc["flagged"] == [k for k, v in by.items() if v["flag"] == "under"]
    inc = doc["dimensions"]["incident"]
    assert inc["levels"] == {"none": {"count": n, "share": 1.0}}  # the small run has no incidents
    if "incident_id" in pq.read_schema(next((run_dir / "cdr").rglob("*.parquet"))).names:
        assert inc["available"] is True
    else:  # written before the simulator had incidents
        assert inc["available"] is False and "no incidents" in inc["note"]


def test_incident_kinds_from_an_incidents_table(small_run, tmp_path):
    """The lead's incidents are not written yet: a copy of the small run gets a synthetic
    incidents.parquet and a nullable incident_id column in its CDR parts."""
    _, src, _ = small_run
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    rng = np.random.default_rng(3)
    parts = sorted((run_dir / "cdr").rglob("*.parquet"))
    expected = {"none": 0, "cell_outage": 0, "mass_event": 0}
    kinds = {0: "cell_outage", 1: "mass_event", 2: "cell_outage"}
    for part in parts:
        t = pq.read_table(part)
        ids = rng.integers(-6, 3, len(t))  # -6..-1: not in an incident
        for i, k in kinds.items():
            expected[k] += int((ids == i).sum())
        expected["none"] += int((ids < 0).sum())
        col = pa.array(np.where(ids < 0, None, ids).tolist(), pa.int32())
        if "incident_id" in t.schema.names:
            t = t.drop_columns(["incident_id"])
        t = t.append_column("incident_id", col)
        pq.write_table(t, part)
    pq.write_table(pa.table({"incident_id": pa.array([0, 1, 2], pa.int64()), "kind": ["cell_outage", "mass_event", "cell_outage"],
                             "start": pa.array([0, 0, 0], pa.int64()), "end": pa.array([1, 1, 1], pa.int64()),
                             "cells": pa.array([[1], [2], [3]], pa.list_(pa.int32())), "params": ["{}", "{}", "{}"]}),
                   run_dir / "incidents.parquet")
    doc = coverage_metrics(run_dir, {"incident": {"cell_outage": {"min_count": 10**9}, "mass_event": {"min_count": 1},
                                                  "flood": {"min_count": 1}}})
    inc = doc["dimensions"]["incident"]
    assert inc["available"] is True
    assert {k: v["count"] for k, v in inc["levels"].items()} == expected
    by = {i["name"]: i for i in doc["strata"]}
    assert by["incident.cell_outage"]["flag"] == "under" and by["incident.cell_outage"]["count"] == expected["cell_outage"]
    assert by["incident.mass_event"]["flag"] == "ok"
    assert by["incident.flood"]["count"] == 0 and by["incident.flood"]["flag"] == "under"
    strata = read_strata(run_dir)
    assert strata.vocab["incident"] == ("none", "cell_outage", "mass_event")
