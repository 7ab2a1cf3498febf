"""Run statistics (calibration/run_stats.py) on a run folder built by hand: three cells, three
subscribers with a scripted day each, a few CDRs; every figure is checked against its value
worked out by hand from the script below."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from telcosim.calibration.run_stats import mobility_stats, voice_stats
from telcosim.sim import schema

TZ = "Europe/Paris"
START = "2024-03-04T00:00:00+01:00"  # local midnight; 23:00 UTC the day before
T0_MS = int(np.datetime64("2024-03-03T23:00:00", "ms").astype(np.int64))
CELL_XY_KM = [(0.0, 0.0), (3.0, 0.0), (0.0, 4.0)]  # cell id = row

# (subscriber, seconds after local midnight, cell, reason)
LOCATIONS = [
    # 0: cell 0 until noon, then cell 1 (a periodic update at the end of the day fixes the span)
    (0, 0, 0, "attach"), (0, 43_200, 1, "cell_change"), (0, 86_399, 1, "periodic"),
    # 1: cell 2 until 10:00, then a moving episode 0 -> 1 -> 0 (ping-pong, 5 s) -> 2, a long stay
    #    (815 s, not moving) and back to 0 for the rest of the day
    (1, 0, 2, "attach"), (1, 36_000, 0, "handover"), (1, 36_060, 1, "handover"), (1, 36_065, 0, "handover"),
    (1, 36_185, 2, "cell_change"), (1, 37_000, 0, "cell_change"),
    # 2: never leaves cell 1; a CDR event there is an observation, not a cell change
    (2, 0, 1, "attach"), (2, 50_000, 1, "event"),
]

# (service, direction, outcome, duration_s)
CDRS = [
    ("voice", "mo", "completed", 30.0), ("voice", "mt", "completed", 30.0),  # the two legs of an on-net call
    ("voice", "mo", "completed", 90.0), ("voice", "mo", "completed", 200.0),
    ("voice", "mo", "blocked", 0.0), ("voice", "mo", "dropped", 45.0), ("voice", "mt", "failed", 0.0),
    ("sms", "mo", "completed", 0.0), ("sms", "mo", "completed", 0.0), ("sms", "mo", "completed", 0.0),
    ("sms", "mt", "completed", 0.0), ("sms", "mt", "completed", 0.0),
    ("data", "mo", "completed", 500.0),
]


def _table(sch: pa.Schema, **given) -> pa.Table:
    """A table of ``sch`` with the given columns (Python lists); the others zero, or null where nullable."""
    n = len(next(iter(given.values())))
    cols = []
    for f in sch:
        if f.name in given:
            v = given[f.name]
            if pa.types.is_dictionary(f.type):
                cols.append(pa.array(v, pa.string()).dictionary_encode().cast(f.type))
            elif pa.types.is_timestamp(f.type):
                cols.append(pa.array(np.asarray(v, "datetime64[ms]")).cast(f.type))
            else:
                cols.append(pa.array(v, f.type))
        elif f.nullable:
            cols.append(pa.nulls(n, f.type))
        else:
            cols.append(pa.array(np.zeros(n), pa.float64()).cast(f.type))
    return pa.Table.from_arrays(cols, schema=sch)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hand_run")
    (d / "manifest.json").write_text(json.dumps({"window": {"start": START, "timezone": TZ}}))
    n = len(CELL_XY_KM)
    pq.write_table(_table(schema.cells_schema(), cell_id=list(range(n)), site_id=list(range(n)),
                          x_km=[x for x, _ in CELL_XY_KM], y_km=[y for _, y in CELL_XY_KM],
                          density=["urban"] * n, neighbours=[[]] * n), d / "cells.parquet")
    (d / "locations").mkdir()
    sub, sec, cell, reason = zip(*LOCATIONS, strict=True)
    t = T0_MS + 1000 * np.asarray(sec, np.int64)
    loc = _table(schema.locations_schema(TZ), subscriber_id=list(sub), time=t, cell_id=list(cell),
                 reason=list(reason))
    # two parts, as the sinks write them, rows not in time order
    pq.write_table(loc.slice(0, 5), d / "locations" / "part-1.parquet")
    pq.write_table(loc.slice(5), d / "locations" / "part-0.parquet")
    (d / "cdr").mkdir()
    svc, dirn, out, dur = zip(*CDRS, strict=True)
    m = len(CDRS)
    cdr = _table(schema.cdr_schema(TZ), record_id=list(range(m)), subscriber_id=[0] * m, service=list(svc),
                 direction=list(dirn), outcome=list(out), duration_s=list(dur),
                 start_time=np.full(m, T0_MS + 3_600_000))
    pq.write_table(cdr.slice(0, 6), d / "cdr" / "part-0.parquet")
    pq.write_table(cdr.slice(6), d / "cdr" / "part-1.parquet")
    return d


# Sampled every 600 s from local midnight: 144 samples a day.
#   0: 72 in cell 0 (0, 0), 72 in cell 1 (3, 0): rg 1.5 km, 2 cells, top share 1/2.
#   1: cell 2 (0, 4) for samples 0-59 and 61 (36,600 s falls in the stay in cell 2 from 36,185 s),
#      cell 0 for sample 60 and 62-143: 61 in cell 2, 83 in cell 0; rg = 4 sqrt(p (1 - p)), p = 61/144.
#   2: 144 in cell 1: rg 0, 1 cell, top share 1.
RG_1 = 4 * math.sqrt(61 * 83) / 144


def test_mobility_figures(run_dir):
    m = mobility_stats(run_dir)
    assert m["rg_km_median"] == pytest.approx(1.5)
    assert m["rg_km_p90"] == pytest.approx(1.5 + 0.8 * (RG_1 - 1.5))  # linear quantile of [0, 1.5, RG_1]
    assert m["distinct_locations_day_median"] == 2.0
    assert m["top_location_share_median"] == pytest.approx(83 / 144)
    # Hourly modal cells: subscriber 1 moves from hour 9 to 10 (cell 2 -> 0; hour 10 holds 5 samples
    # of cell 0 and one of cell 2), subscriber 0 from hour 11 to 12, subscriber 2 never; hour 23 has
    # no next hour within the run.
    expect = [0.0] * 23 + [math.nan]
    expect[9] = expect[11] = round(1 / 3, 4)
    assert m["move_probability_by_hour"] == pytest.approx(expect, nan_ok=True)
    assert m["move_probability_mean"] == pytest.approx(2 / 3 / 23)


def test_handover_figures(run_dir):
    m = mobility_stats(run_dir)
    # Cell changes (cell_change or handover rows): subscriber 0 one, subscriber 1 five, 10:00:00,
    # :01:00, :01:05, :03:05, :16:40. Gaps within 300 s are moving: 60, 5, 120 s (815 s is a stay).
    assert m["handover_rate_per_min_moving"] == pytest.approx(3 / (185 / 60))
    assert m["dwell_median_s_moving"] == 60.0
    # one change back to the cell before the previous one within 10 s (1 -> 0 after 5 s), of 6
    assert m["ping_pong_share"] == pytest.approx(1 / 6)


def test_subscribers_beyond_the_cap_are_left_out(run_dir):
    m = mobility_stats(run_dir, max_subscribers=2)  # subscriber 2 (rg 0, top share 1) left out
    assert m["rg_km_median"] == pytest.approx((1.5 + RG_1) / 2)
    assert m["top_location_share_median"] == pytest.approx((0.5 + 83 / 144) / 2)
    assert m["move_probability_by_hour"][9] == 0.5


def test_days_are_local_days_of_the_manifest(run_dir, tmp_path):
    """Without the manifest the day starts at UTC midnight, 23 h before the local one: the same
    trace then spans two days and the hours shift, so the figures differ."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    (bare / "manifest.json").unlink()
    m = mobility_stats(bare)
    assert m["move_probability_by_hour"][9] != round(1 / 3, 4)
    assert m["rg_km_median"] != pytest.approx(1.5)


def test_voice_figures(run_dir):
    v = voice_stats(run_dir)
    # completed voice records, both legs: 30, 30, 90, 200 s
    assert v["call_duration_median_s"] == 60.0
    # MO SMS (3) per MO voice attempt whatever its outcome (30, 90, 200, blocked, dropped: 5)
    assert v["sms_call_ratio"] == pytest.approx(3 / 5)


def test_agrees_with_counts_by_pandas_on_a_simulated_run(small_run):
    """On a simulated run: the voice figures equal those counted by pandas on the same files."""
    _, out, _ = small_run
    df = pq.read_table(out / "cdr", columns=["service", "direction", "outcome", "duration_s"]).to_pandas()
    for c in ("service", "direction", "outcome"):
        df[c] = df[c].astype(str)
    voice, mo = df.service == "voice", df.direction == "mo"
    v = voice_stats(out)
    assert v["call_duration_median_s"] == df.duration_s[voice & (df.outcome == "completed")].median()
    assert v["sms_call_ratio"] == pytest.approx(((df.service == "sms") & mo).sum() / (voice & mo).sum())
    assert 0 < v["sms_call_ratio"]
