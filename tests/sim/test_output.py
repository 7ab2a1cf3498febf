"""Invariants of a run: conservation per cell, referential integrity, times and capacities."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow.compute as pc

from tests.conftest import read


def _np(table, name):
    return table.column(name).to_numpy(zero_copy_only=False)


def test_conservation_per_cell(small_run):
    sc, out, _ = small_run
    k = read(out, "cell_kpis")
    att = _np(k, "voice_attempts")
    parts = sum(_np(k, c) for c in ("voice_completed", "voice_blocked", "voice_dropped", "voice_failed"))
    assert np.array_equal(att, parts)
    # The scenario is tight enough that every outcome occurs.
    for c in ("voice_blocked", "voice_dropped", "voice_failed", "handover_failures"):
        assert _np(k, c).sum() > 0, c
    # The CDR agrees with the KPIs: voice legs by start cell.
    cdr = read(out, "cdr")
    voice = cdr.filter(pc.equal(cdr.column("service"), "voice"))
    n_cells = read(out, "cells").num_rows
    by_cell = np.bincount(_np(voice, "cell_id"), minlength=n_cells)
    kpi_by_cell = np.bincount(_np(k, "cell_id"), weights=att, minlength=n_cells)
    assert np.array_equal(by_cell, kpi_by_cell.astype(np.int64))
    for outcome, col in (("blocked", "voice_blocked"), ("dropped", "voice_dropped"), ("failed", "voice_failed")):
        n = pc.sum(pc.equal(voice.column("outcome"), outcome)).as_py()
        assert n == _np(k, col).sum(), outcome


def test_ids_exist_and_are_unique(small_run):
    _, out, _ = small_run
    cdr, loc = read(out, "cdr"), read(out, "locations")
    subs, cells = read(out, "subscribers"), read(out, "cells")
    n_subs, n_cells = subs.num_rows, cells.num_rows
    assert np.array_equal(_np(subs, "subscriber_id"), np.arange(n_subs))
    assert np.array_equal(_np(cells, "cell_id"), np.arange(n_cells))
    for t in (cdr, loc):
        s = _np(t, "subscriber_id")
        assert s.min() >= 0 and s.max() < n_subs
        c = _np(t, "cell_id")
        assert c.min() >= 0 and c.max() < n_cells
    e = _np(cdr, "end_cell_id")
    assert e.min() >= 0 and e.max() < n_cells
    cp = cdr.column("counterpart_id").drop_null().to_numpy()
    assert cp.min() >= 0 and cp.max() < n_subs
    rec = _np(cdr, "record_id")
    assert len(np.unique(rec)) == len(rec)
    for col in ("home_cell_id", "work_cell_id"):
        v = _np(subs, col)
        assert v.min() >= 0 and v.max() < n_cells


def test_on_net_calls_appear_for_both_parties(small_run):
    _, out, _ = small_run
    cdr = read(out, "cdr")
    onnet = cdr.filter(pc.and_(pc.is_valid(cdr.column("counterpart_id")),
                               pc.not_equal(cdr.column("service"), "data")))
    sess = _np(onnet, "session_id")
    _, counts = np.unique(sess, return_counts=True)
    assert (counts == 2).all()
    order = np.lexsort((_np(onnet, "record_id"), sess))
    sub = _np(onnet, "subscriber_id")[order]
    cp = _np(onnet, "counterpart_id")[order]
    direction = np.asarray(onnet.column("direction").to_pylist())[order]
    assert np.array_equal(sub[0::2], cp[1::2]) and np.array_equal(sub[1::2], cp[0::2])
    assert (direction[0::2] == "mo").all() and (direction[1::2] == "mt").all()


def test_times_durations_and_capacity(small_run):
    sc, out, _ = small_run
    cdr, loc, k = read(out, "cdr"), read(out, "locations"), read(out, "cell_kpis")
    start = sc.time.start_datetime()
    end = start + dt.timedelta(days=sc.time.days)
    for t, col in ((cdr, "start_time"), (loc, "time")):
        assert pc.min(t.column(col)).as_py() >= start
        assert pc.max(t.column(col)).as_py() < end
    assert pc.min(cdr.column("duration_s")).as_py() >= 0
    assert pc.min(cdr.column("bytes_down")).as_py() >= 0
    outcome = np.asarray(cdr.column("outcome").to_pylist())
    not_connected = np.isin(outcome, ["blocked", "failed"])
    assert not_connected.any() and (_np(cdr, "duration_s")[not_connected] == 0).all()
    cells = read(out, "cells")
    cap = _np(cells, "voice_channels")[_np(k, "cell_id")]
    assert (_np(k, "busy_channels_peak") <= cap).all()
    assert (_np(k, "busy_channels_mean") <= cap + 1e-9).all()
    thr = k.column("throughput_mean_mbps").drop_null().to_numpy()
    assert (thr <= sc.network.ue_peak_mbps + 1e-6).all()


def test_data_sessions_share_capacity(small_run):
    """Processor sharing: throughput never exceeds the UE peak and falls when cells are busy."""
    sc, out, _ = small_run
    cdr = read(out, "cdr")
    data = cdr.filter(pc.equal(cdr.column("service"), "data"))
    dur = _np(data, "duration_s")
    vol = _np(data, "bytes_down")
    ok = dur > 0.05
    rate_mbps = vol[ok] * 8 / 1e6 / dur[ok]
    assert rate_mbps.max() <= sc.network.ue_peak_mbps * 1.01
    k = read(out, "cell_kpis")
    busy = _np(k, "data_sessions_mean")
    thr = k.column("throughput_mean_mbps").to_numpy(zero_copy_only=False)
    m = ~np.isnan(thr)
    assert thr[m & (busy > 2)].mean() < thr[m & (busy < 0.2)].mean()


def test_manifest_and_metadata(small_run):
    sc, out, result = small_run
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == sc.seed and man["scenario"]["name"] == sc.name
    assert man["row_counts"]["cdr"] == read(out, "cdr").num_rows == result.rows["cdr"]
    for rel, info in man["files"].items():
        assert (out / rel).stat().st_size == info["bytes"]
    import pyarrow.parquet as pq

    meta = pq.read_schema(out / "cells.parquet").metadata
    assert meta[b"telcosim.seed"] == str(sc.seed).encode()
    assert meta[b"telcosim.scenario"] == sc.name.encode()
    # Nothing half-written is left beside the run folder.
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
