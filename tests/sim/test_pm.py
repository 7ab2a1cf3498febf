"""PM counters (pm_cells, pm_relations, voice_matrix): invariants, and every figure against what
the CDRs and location rows of the same run give (docs/schema.md, "PM counters")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from telcosim.sim import config
from telcosim.sim.errors import ConfigError
from telcosim.sim.pm import UL_DL_CAPACITY
from tests.conftest import read


@pytest.fixture(scope="module")
def tables(small_run):
    sc, out, _ = small_run
    names = ("pm_cells", "pm_relations", "voice_matrix", "cdr", "locations", "cell_kpis", "cells")
    t = {n: read(out, n).to_pandas() for n in names}
    start = t["cell_kpis"]["interval_start"].min()
    for name, col in (("pm_cells", "interval_start"), ("pm_relations", "interval_start"),
                      ("voice_matrix", "hour_start"), ("cdr", "start_time"), ("locations", "time")):
        t[name]["ms"] = (t[name][col] - start) // pd.Timedelta(milliseconds=1)
    return sc, t


def test_pm_invariants(tables):
    sc, t = tables
    pm = t["pm_cells"]
    n_cells = len(t["cells"])
    assert len(pm) == sc.time.days * 86400 // sc.output.pm_interval_s * n_cells
    for col in ("rru_prb_used_dl", "rru_prb_used_ul", "voice_blocking"):
        v = pm[col].dropna()
        assert ((v >= 0) & (v <= 1)).all(), col
    assert pm["rru_prb_used_dl"].max() > 0.5  # the small city's data capacity is tight
    for att, succ in (("rrc_conn_estab_att", "rrc_conn_estab_succ"), ("ho_out_att", "ho_out_succ"),
                      ("voice_estab_att", "voice_estab_succ")):
        assert (pm[succ] <= pm[att]).all() and (pm[succ] >= 0).all(), att
        assert (pm[succ] < pm[att]).any(), f"{att}: no failure at all in a congested city"
    assert (pm["rrc_conn_mean"] <= pm["rrc_conn_max"] + 1e-9).all()
    assert (pm["drb_ue_active_dl_mean"] <= pm["drb_ue_active_dl_max"] + 1e-9).all()
    assert (pm["drb_ue_active_dl_max"] <= pm["rrc_conn_max"]).all()
    assert (pm["voice_erlang"] <= pm["rrc_conn_mean"] + 1e-9).all()
    peak = sc.network.ue_peak_mbps
    for col in ("drb_ue_thp_dl_mean_mbps", "drb_ue_thp_dl_p10_mbps"):
        v = pm[col].dropna()
        assert len(v) and (v > 0).all() and (v <= peak + 1e-6).all(), col
    # Uplink follows the downlink at the uplink share, against a third of the capacity.
    u = sc.behaviour.data_uplink_share
    dl = pm["rru_prb_used_dl"].to_numpy()
    assert np.allclose(pm["rru_prb_used_ul"], np.minimum(dl * u / (1 - u) / UL_DL_CAPACITY, 1.0))
    # The relations add up to each cell's outgoing handovers.
    rel = t["pm_relations"]
    assert (rel["ho_succ"] <= rel["ho_att"]).all() and (rel["source_cell_id"] != rel["target_cell_id"]).all()
    by = rel.groupby(["ms", "source_cell_id"])[["ho_att", "ho_succ"]].sum()
    got = pm.set_index(["ms", "cell_id"])[["ho_out_att", "ho_out_succ"]]
    got = got[got["ho_out_att"] > 0]
    assert np.array_equal(by.to_numpy(), got.loc[by.index].to_numpy()) and len(got) == len(by)


def test_pm_time_integrals_equal_the_cdrs_per_interval(tables):
    """Per interval, summed over cells: channel time, data session time, RRC connection time and
    attempts equal the CDR-derived figures (each record's time overlapped with the interval)."""
    sc, t = tables
    pm, cdr = t["pm_cells"], t["cdr"]
    iv = sc.output.pm_interval_s * 1000
    n_int = sc.time.days * 86400_000 // iv
    window = n_int * iv
    dur = np.round(cdr["duration_s"].to_numpy() * 1000).astype(np.int64)
    data_done = (cdr["service"] == "data") & (cdr["outcome"] == "completed")
    # the data duration in the CDR includes the RRC inactivity tail after the last byte
    active = dur - np.where(data_done, round(sc.network.rrc_inactivity_s * 1000), 0)
    start = cdr["ms"].to_numpy()
    edges = np.arange(n_int + 1) * iv

    def overlap(sel):
        a, b = start[sel], np.minimum(start[sel] + active[sel], window)
        # time of [a, b) before each edge, differenced
        before = np.clip(edges[None, :] - a[:, None], 0, (b - a)[:, None]).sum(axis=0)
        return np.diff(before).astype(np.float64)

    voice = ((cdr["service"] == "voice") & cdr["outcome"].isin(["completed", "dropped"])).to_numpy()
    data = ((cdr["service"] == "data") & cdr["outcome"].isin(["completed", "dropped"])).to_numpy()
    per = pm.groupby("ms")
    assert np.allclose(per["voice_erlang"].sum().to_numpy() * iv, overlap(voice), rtol=1e-9, atol=1e-3)
    assert np.allclose(per["drb_ue_active_dl_mean"].sum().to_numpy() * iv, overlap(data), rtol=1e-9, atol=1e-3)
    assert np.allclose(per["rrc_conn_mean"].sum().to_numpy() * iv, overlap(voice | data), rtol=1e-9, atol=1e-3)
    # RRC attempts: every row of a party that reached a cell, by the interval of its attempt.
    reached = ~((cdr["outcome"] == "failed") & (cdr["cause"] == "no_coverage"))
    k = start // iv
    att = np.bincount(k[reached.to_numpy()], minlength=n_int)
    succ = np.bincount(k[(reached & (cdr["outcome"] != "blocked")).to_numpy()], minlength=n_int)
    assert np.array_equal(per["rrc_conn_estab_att"].sum().to_numpy(), att)
    assert np.array_equal(per["rrc_conn_estab_succ"].sum().to_numpy(), succ)
    # Voice E-RAB attempts and blocking agree with the cell KPIs (hourly there).
    kpi = t["cell_kpis"]
    assert pm["voice_estab_att"].sum() == kpi["voice_attempts"].sum()
    assert (pm["voice_estab_att"] - pm["voice_estab_succ"]).sum() == kpi["voice_blocked"].sum()
    assert np.isclose(pm["drb_vol_dl_mb"].sum(), kpi["data_volume_mb"].sum())


def test_throughput_percentile_is_the_sessions(tables):
    sc, t = tables
    pm, cdr = t["pm_cells"], t["cdr"]
    iv = sc.output.pm_interval_s * 1000
    done = cdr[(cdr["service"] == "data") & (cdr["outcome"] == "completed")].copy()
    ms = np.round(done["duration_s"].to_numpy() * 1000).astype(np.int64) - round(sc.network.rrc_inactivity_s * 1000)
    done["k"] = (done["ms"] + ms) // iv * iv
    done["mbps"] = done["bytes_down"] * 8 / 1e6 / (np.maximum(ms, 1) / 1000)
    done = done[done["k"] < sc.time.days * 86400_000]
    want = done.groupby(["k", "end_cell_id"])["mbps"].quantile(0.1)
    got = pm.set_index(["ms", "cell_id"])["drb_ue_thp_dl_p10_mbps"]
    assert got.notna().sum() == len(want)
    assert np.allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=1e-9)


def test_handovers_per_relation_follow_the_location_rows(tables):
    _, t = tables
    loc, rel, cdr = t["locations"], t["pm_relations"], t["cdr"]
    prev = loc.groupby("subscriber_id")["cell_id"].shift()
    ho = loc[(loc["reason"] == "handover") & prev.notna() & (prev != loc["cell_id"])]
    assert rel["ho_att"].sum() == len(ho) > 0
    # A failed handover drops the call: one handover_failure record each.
    fails = int((cdr["cause"] == "handover_failure").sum())
    assert fails > 0 and (rel["ho_att"] - rel["ho_succ"]).sum() == fails
    # Every relation with a handover is a neighbour relation or a jump to a cell further away;
    # most are neighbours.
    nb = {(int(c), int(n)) for c, ns in zip(t["cells"]["cell_id"], t["cells"]["neighbours"], strict=True) for n in ns}
    pairs = list(zip(rel["source_cell_id"], rel["target_cell_id"], strict=True))
    share = np.average([p in nb for p in pairs], weights=rel["ho_att"])
    assert share > 0.8


def test_voice_matrix_adds_up_to_the_cdrs_and_the_cell_kpis(tables):
    sc, t = tables
    m, cdr, kpi = t["voice_matrix"], t["cdr"], t["cell_kpis"]
    voice = cdr[cdr["service"] == "voice"]
    per_hour = voice.drop_duplicates("session_id").groupby(voice["ms"] // 3_600_000).size()
    got = m.groupby(m["ms"] // 3_600_000)["calls"].sum()
    assert np.array_equal(got.to_numpy(), per_hour.to_numpy())
    # Carried traffic: each leg of a call carries its holding time, as cell_kpis counts it.
    legs = m["from_cell_id"].notna().astype(int) + m["to_cell_id"].notna().astype(int)
    assert np.isclose((m["duration_s"] * legs).sum(), (kpi["carried_erlang"] * sc.output.kpi_interval_s).sum())
    assert np.allclose(m["erlang"], m["duration_s"] / 3600)
    assert (m["calls_connected"] <= m["calls"]).all()
    on_net = m["from_cell_id"].notna() & m["to_cell_id"].notna()
    assert on_net.any() and (~on_net).any()


def test_pm_interval_is_validated():
    with pytest.raises(ConfigError, match="output.pm_interval_s: 700"):
        config.load(None, ["output.pm_interval_s=700"])
    assert config.load(None, []).output.pm_interval_s == 0  # off by default: they cost CPU (docs/performance.md)
