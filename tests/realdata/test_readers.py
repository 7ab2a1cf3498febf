"""Readers of real data: the real sets load with the documented layout, and every validation rule
gives one clear message naming the file, column, line and value (collected, never a traceback)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from telcosim.realdata import readers as R
from telcosim.realdata.errors import DataError
from telcosim.sim.errors import TelcosimError
from tests.conftest import SHARED_DATA

needs_data = pytest.mark.skipif(not (SHARED_DATA / "README.md").is_file(), reason="shared data not present")


def problems_of(fn, *args, **kw) -> list[str]:
    with pytest.raises(DataError) as info:
        fn(*args, **kw)
    assert isinstance(info.value, TelcosimError)
    assert info.value.problems
    return info.value.problems


def write(tmp_path, name, text):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


# ---------------------------------------------------------------- the real data


@needs_data
def test_real_sets_load_with_their_level():
    a = R.read_activity(SHARED_DATA / "milan_hourly" / "square_hourly_load.csv")
    assert a.load.shape == (1488, 200) and a.interval_s == 3600 and not a.individual_level
    assert a.load.index.is_monotonic_increasing
    c = R.read_cell_series(SHARED_DATA / "lte_cells")
    assert sorted(c.series) == ["111", "112", "113"] and not c.individual_level
    assert all(len(s) > 8000 and (s >= 0).all() for s in c.series.values())
    s = R.read_shares(SHARED_DATA / "nodobo")
    assert {"all", "weekday", "weekend"} <= set(s.hourly) and "all" in s.daily
    assert np.allclose(s.hourly["all"].sum(), 1.0) and list(s.daily["all"].index) == list(R.DAY_NAMES)
    e = R.read_edges(SHARED_DATA / "copenhagen")
    assert e.individual_level and len(e.calls) == 3600 and len(e.sms) == 24333
    assert (e.calls.duration_s >= 0).all()


@needs_data
def test_real_traces_load_per_person():
    d = R.read_drive_traces(SHARED_DATA / "irish_5g")
    assert d.individual_level and d.unit_kind == "trace"
    driving = [t for t in d.traces if "Driving" in t.name]
    static = [t for t in d.traces if "Static" in t.name]
    assert driving and static
    assert all(t.moving.all() for t in driving) and not any(t.moving.any() for t in static)
    assert all((np.diff(t.time.astype(np.int64)) >= 0).all() for t in d.traces)
    loc = R.read_location_traces(SHARED_DATA / "studentlife_gps", tz="America/New_York")
    assert len(loc.users) == 35 and "u00" in loc.users
    assert len(loc.user) == len(loc.time) == len(loc.lat)
    # unix times are shown as New York wall time (EDT, UTC-4 in late March)
    raw = pd.read_csv(SHARED_DATA / "studentlife_gps" / "gps_u00.csv.gz", index_col=False).time.min()
    first = loc.time[loc.user == loc.users.index("u00")][0]
    assert first == np.datetime64(int(raw) - 4 * 3600, "s")


def test_cdr_of_a_run(small_run):
    _, out, _ = small_run
    c = R.read_cdr(out)
    assert c.individual_level and len(c.subscriber_id) > 1000
    assert set(np.unique(c.service)) <= {"voice", "sms", "data"}
    assert c.cells is not None and len(c.cells) > 0 and (c.duration_s >= 0).all()
    direct = R.read_cdr(next((out / "cdr").rglob("*.parquet")))  # one part of the date=/hour= folders
    assert direct.cells is None and 0 < len(direct.subscriber_id) <= len(c.subscriber_id)


# ---------------------------------------------------------------- every rule, with a hand-made bad file


def test_unreadable_and_missing_files(tmp_path):
    (p,) = problems_of(R.read_activity, tmp_path / "none.csv")
    assert "none.csv" in p and "no such file" in p
    empty = write(tmp_path, "empty.csv", "")
    (p,) = problems_of(R.read_activity, empty)
    assert "empty" in p
    bad_gz = tmp_path / "locs" / "gps_u01.csv.gz"
    bad_gz.parent.mkdir()
    bad_gz.write_bytes(b"not gzip at all")
    (p,) = problems_of(R.read_location_traces, bad_gz.parent)
    assert "gps_u01.csv.gz" in p and "cannot read" in p
    (p,) = problems_of(R.read_cell_series, tmp_path / "locs")  # a folder without CSVs
    assert "no input files" in p


def test_wide_activity_rules(tmp_path):
    f = write(tmp_path, "a.csv", "hour,1,2\n2013-11-01 00:00,3,-1\n2013-11-01 01:00,x,2\n"
                                 "not a time,1,1\n2013-11-01 00:00,1,1\n")
    probs = problems_of(R.read_activity, f)
    text = "\n".join(probs)
    assert any("column '2'" in p and "line 2: -1" in p and "negative" in p for p in probs), text
    assert any("column '1'" in p and "line 3: 'x'" in p and "not a number" in p for p in probs), text
    assert any("column 'hour'" in p and "line 4: 'not a time'" in p and "ISO 8601" in p for p in probs), text
    assert len(probs) == 3  # the duplicate time is reported once the times parse
    g = write(tmp_path, "b.csv", "hour,1\n2013-11-01 00:00,3\n2013-11-01 00:00,4\n")
    (p,) = problems_of(R.read_activity, g)
    assert "duplicated time" in p and "line 3 repeats line 2" in p


def test_long_activity_and_mixed_time_zones(tmp_path):
    f = write(tmp_path, "long.csv", "area,time,value\nA,2013-11-01T00:00+01:00,1\nA,2013-11-01T01:00,2\n")
    (p,) = problems_of(R.read_activity, f)
    assert "mixed time zones" in p and "line 2" in p and "line 3" in p
    g = write(tmp_path, "long2.csv", "area,time,value\nA,2013-11-01T00:00+01:00,1\nA,2013-11-01T01:00+02:00,2\n")
    (p,) = problems_of(R.read_activity, g)
    assert "mixed time zones" in p and "+01:00" in p and "+02:00" in p
    h = write(tmp_path, "long3.csv", "area,time,value\nA,2013-11-01T00:00,1\nA,2013-11-01T00:00,2\n,2013-11-01T02:00,1\n")
    probs = problems_of(R.read_activity, h)
    assert any("duplicated (area, time)" in p for p in probs)
    assert any("area id is required" in p and "line 4" in p for p in probs)
    ok = write(tmp_path, "ok.csv", "area,time,value\nA,2013-11-01T00:00Z,1\nB,2013-11-01T00:00Z,2\n"
                                   "A,2013-11-01T01:00Z,3\n")
    a = R.read_activity(ok)
    assert list(a.load.columns) == ["A", "B"] and np.isnan(a.load.loc["2013-11-01 01:00", "B"])


def test_cell_series_rules(tmp_path):
    write(tmp_path, "cells/cell_7_hourly.csv", "DateTime,Traffic\n10/23/2017 00:00,1.5\n2017-10-23 01:00,2\n"
                                               "10/23/2017 02:00,-3\n")
    write(tmp_path, "cells/cell_8_hourly.csv", "Time,Volume\n10/23/2017 00:00,1\n")
    probs = problems_of(R.read_cell_series, tmp_path / "cells")
    assert len(probs) == 3, probs
    assert any("cell_7" in p and "line 3: '2017-10-23 01:00'" in p and "M/D/YYYY H:MM" in p for p in probs)
    assert any("cell_7" in p and "line 4: -3" in p and "negative" in p for p in probs)
    assert any("cell_8" in p and "missing column(s) Traffic" in p for p in probs)
    write(tmp_path, "dup/c.csv", "DateTime,Traffic\n10/23/2017 00:00,1\n10/23/2017 00:00,1\n")
    (p,) = problems_of(R.read_cell_series, tmp_path / "dup")
    assert "duplicated (cell, DateTime)" in p


def test_drive_trace_rules(tmp_path):
    write(tmp_path, "t/Driving/a.csv", "Timestamp,RAWCELLID,Latitude,Speed\n"
                                       "2020.02.14_09.38.22,1,51.9,2\n2020.02.14_09.38.22,1,51.9,2\n"
                                       "2020.02.14_09.38.xx,2,95,-\n2020.02.14_09.38.25,2,51.9,-4\n")
    write(tmp_path, "t/Static/b.csv", "Timestamp,CellName\n2020.02.14_09.38.22,1\n")
    probs = problems_of(R.read_drive_traces, tmp_path / "t")
    text = "\n".join(probs)
    assert any("duplicated row" in p and "line 3 repeats line 2" in p for p in probs), text
    assert any("line 4: '2020.02.14_09.38.xx'" in p and "YYYY.MM.DD_HH.MM.SS" in p for p in probs), text
    assert any("'Latitude'" in p and "line 4: '95'" in p for p in probs), text
    assert any("'Speed'" in p and "line 5: '-4'" in p and "negative" in p for p in probs), text
    assert any("b.csv" in p and "missing column(s) cell" in p for p in probs), text


def test_drive_traces_moving_from_speed_and_users(tmp_path):
    f = write(tmp_path, "trace.csv", "time,cell,speed,user\n2020-01-01T00:00:00,A,0,u1\n"
                                     "2020-01-01T00:00:01,B,30,u1\n2020-01-01T00:00:02,-,30,u2\n"
                                     "2020-01-01T00:00:03,C,30,u2\n")
    d = R.read_drive_traces(f)
    assert d.unit_kind == "user" and [t.unit for t in d.traces] == ["u1", "u2"]
    assert d.traces[0].moving.tolist() == [False, True] and list(d.traces[1].cell) == ["C"]


def test_location_rules(tmp_path):
    write(tmp_path, "g/gps_u1.csv", "time,latitude,longitude,accuracy,\n1364356963,43.7,-72.3,10,\n"
                                    "1364356963,43.7,-72.3,10,\nabc,43.7,-72.3,10,\n1364356999,91,-72.3,-5,\n")
    with gzip.open(tmp_path / "g" / "gps_u2.csv.gz", "wt") as fh:
        fh.write("time,lat\n1,2\n")
    probs = problems_of(R.read_location_traces, tmp_path / "g")
    text = "\n".join(probs)
    assert any("gps_u1.csv" in p and "line 4: 'abc'" in p and "unix time" in p for p in probs), text
    assert any("'latitude'" in p and "line 5: 91" in p for p in probs), text
    assert any("'accuracy'" in p and "line 5: -5" in p for p in probs), text
    assert any("gps_u2.csv.gz" in p and "missing column(s) lon" in p for p in probs), text
    write(tmp_path, "h/x.csv", "user,time,lat,lon\na,1364356963,43.7,-72.3\na,1364356963,43.8,-72.3\n")
    (p,) = problems_of(R.read_location_traces, tmp_path / "h")
    assert "duplicated (user, time)" in p


def test_share_rules(tmp_path):
    rows = "\n".join(f"{h},{1 + h}" for h in range(23))
    write(tmp_path, "s/hourly-all.csv", f"Hour,Calls\n{rows}\n5,1\n")
    write(tmp_path, "s/daily-all.csv", "Day,Calls\nMon,1\nTue,1\nWed,1\nThu,1\nFri,1\nSat,1\nFunday,1\n")
    probs = problems_of(R.read_shares, tmp_path / "s")
    text = "\n".join(probs)
    assert any("hourly-all.csv" in p and "missing 23" in p for p in probs), text
    assert any("hourly-all.csv" in p and "duplicated Hour" in p for p in probs), text
    assert any("daily-all.csv" in p and "'Funday'" in p and "Mon..Sun" in p for p in probs), text
    write(tmp_path, "z/hourly-x.csv", "Hour,Calls\n" + "\n".join(f"{h},0" for h in range(24)) + "\n")
    (p,) = problems_of(R.read_shares, tmp_path / "z")
    assert "sum to 0" in p


def test_edge_rules(tmp_path):
    write(tmp_path, "e/calls.csv", "Source;Target;Weight\n1;2;10\n1;2;10\n3;;5\n4;5;-2\n6;7;abc\n8;9;\n")
    write(tmp_path, "e/sms.csv", "From;Dest\n1;2\n")
    probs = problems_of(R.read_edges, tmp_path / "e")
    text = "\n".join(probs)
    assert any("'Target'" in p and "line 4" in p and "person id" in p for p in probs), text
    assert any("'Weight'" in p and "line 5: '-2'" in p and "negative" in p for p in probs), text
    assert any("'Weight'" in p and "line 6: 'abc'" in p for p in probs), text
    assert any("'Weight'" in p and "line 7" in p and "required" in p for p in probs), text
    assert any("sms.csv" in p and "missing column(s)" in p for p in probs), text
    ok = write(tmp_path, "f/calls.csv", "Source;Target;Weight\n1;2;10\n1;2;10\n")
    assert len(R.read_edges(ok).calls) == 2  # repeated rows are separate calls


def test_cdr_rules(tmp_path):
    t = pa.array([0, 1000, 2000], type=pa.timestamp("ms", tz="UTC"))
    table = pa.table({"record_id": [1, 1, 2], "subscriber_id": [5, 5, None], "counterpart_id": [None, 3, 3],
                      "service": ["voice", "fax", "sms"], "direction": ["mo", "mo", "up"], "start_time": t,
                      "duration_s": [10.0, -1.0, float("nan")], "cell_id": [1, 2, 3],
                      "outcome": ["completed", "completed", "blocked"]})
    pq.write_table(table, tmp_path / "c.parquet")
    probs = problems_of(R.read_cdr, tmp_path / "c.parquet")
    text = "\n".join(probs)
    for expected in ("'service': row 1: 'fax'", "'direction': row 2: 'up'", "'subscriber_id': row 2",
                     "'duration_s': row 1: -1.0", "'record_id': duplicated ids 1"):
        assert any(expected in p for p in probs), (expected, text)
    pq.write_table(table.drop(["outcome"]), tmp_path / "d.parquet")
    (p,) = problems_of(R.read_cdr, tmp_path / "d.parquet")
    assert "missing column(s) outcome" in p
    (tmp_path / "junk.parquet").write_bytes(b"nope")
    (p,) = problems_of(R.read_cdr, tmp_path / "junk.parquet")
    assert "cannot read" in p


def test_problems_are_capped_per_rule(tmp_path):
    rows = "\n".join(f"2013-11-01 {h:02d}:00,-{h + 1}" for h in range(10))
    f = write(tmp_path, "a.csv", f"hour,9\n{rows}\n")
    (p,) = problems_of(R.read_activity, f)
    assert "(and 7 more)" in p and p.count("line ") == 3


def test_activity_values_roundtrip(tmp_path):
    idx = pd.date_range("2013-11-04", periods=48, freq="h")
    df = pd.DataFrame({"a": np.arange(48.0), "b": np.r_[np.full(24, np.nan), np.ones(24)]}, index=idx)
    df.index.name = "hour"
    df.to_csv(tmp_path / "w.csv")
    a = R.read_activity(tmp_path / "w.csv")
    pd.testing.assert_frame_equal(a.load, df.rename_axis("time"), check_freq=False, check_index_type=False)
    assert (a.load.index == idx).all()
