"""Targets from real data: aggregate targets agree with the default profile's derivation, private
targets computed without noise agree with it up to the per-person caps, and with noise they
scatter around those exact values; the document is JSON and every target says its privacy."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from telcosim.calibration import derive_defaults as dd
from telcosim.calibration.privacy import AGGREGATE_NOTE
from telcosim.calibration.run_stats import voice_stats
from telcosim.calibration.targets import (
    PAIR_BIN_EDGES,
    compute_targets,
    contact_concentration_from_bins,
    holiday_effect,
)
from telcosim.realdata import readers as R
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "README.md").is_file(), reason="shared data not present")
HOLIDAYS = [str(d.date()) for d in dd.MILAN_HOLIDAYS]


@pytest.fixture(scope="module")
def aggregate_sets():
    return [R.read_activity(SHARED_DATA / "milan_hourly" / "square_hourly_load.csv"),
            R.read_cell_series(SHARED_DATA / "lte_cells"), R.read_shares(SHARED_DATA / "nodobo")]


@pytest.fixture(scope="module")
def individual_sets():
    return [R.read_drive_traces(SHARED_DATA / "irish_5g"),
            R.read_location_traces(SHARED_DATA / "studentlife_gps", tz=dd.STUDENTLIFE_TZ),
            R.read_edges(SHARED_DATA / "copenhagen")]


@pytest.fixture(scope="module")
def exact_doc(individual_sets):
    return compute_targets(individual_sets, exact=True, part="fit")  # the fit part, as derive_defaults


def test_aggregate_targets_match_the_default_profile_derivation(aggregate_sets):
    doc = compute_targets(aggregate_sets, holidays=HOLIDAYS, part="fit")  # the fit part, as derive_defaults
    t = doc["targets"]
    milan = dd.milan_activity(SHARED_DATA)
    assert t["activity.over_dispersion"]["value"] == pytest.approx(milan["hourly_var_mean_ratio"], rel=1e-5)
    assert t["activity.diurnal_profile"]["peak_hour"] == milan["peak_hour_weekday"]
    lte = dd.lte_data_volume(SHARED_DATA)
    assert t["cells.hourly_log_sigma"]["value"] == pytest.approx(lte["hourly_log_sigma"], rel=1e-5)
    assert t["cells.diurnal_profile"]["peak_hour"] == lte["peak_hour"]
    assert t["cells.diurnal_profile"]["peak_trough_ratio"] == pytest.approx(lte["peak_trough_ratio"], rel=1e-5)
    nod = pd.read_csv(SHARED_DATA / "nodobo" / "hourly-all.csv")
    assert t["shares.diurnal_profile"]["value"]["calls"] == pytest.approx(
        list(dd.mean_one(dd.shifted_to_midnight(nod, "Calls"))), rel=1e-5)
    for name, target in t.items():
        assert target["level"] == "aggregate" and target["privacy"] == AGGREGATE_NOTE, name
        for key in ("diurnal_profile", "weekly_profile"):
            if name.endswith(key):
                for shape in target["value"].values():
                    assert len(shape) == (24 if key.startswith("diurnal") else 168)
                    assert np.mean(shape) == pytest.approx(1.0, abs=1e-5)
    # Christmas Day is quieter than the normal days of its weekday in Milan
    assert t["activity.holiday_effect"]["value"]["per_day"]["2013-12-25"] < 1.0
    assert doc["privacy"]["spent"] == {"epsilon": 0.0, "delta": 0.0}


def test_exact_private_targets_match_the_default_profile_up_to_caps(exact_doc):
    t = exact_doc["targets"]
    ho = dd.irish_handover(SHARED_DATA)
    assert t["drive.handover_rate_per_min_moving"]["value"] == pytest.approx(ho["rate_per_min_moving"], rel=0.15)
    assert t["drive.ping_pong_share"]["value"] == pytest.approx(ho["ping_pong_share"], abs=0.05)
    assert t["drive.dwell_time_s"]["value"]["median"] == pytest.approx(ho["dwell_median_s_moving"], rel=0.5)
    cph = dd.copenhagen(SHARED_DATA)
    dur = t["edges.call_duration"]["value"]
    assert dur["log_mu"] == pytest.approx(cph["duration_log_mu"], abs=0.2)
    assert dur["log_sigma"] == pytest.approx(cph["duration_log_sigma"], abs=0.2)
    assert t["edges.sms_call_ratio"]["value"] == pytest.approx(cph["sms_call_ratio"], rel=0.15)
    conc = t["edges.contact_concentration"]["value"]["top10pct_pairs_call_share"]
    assert conc == pytest.approx(cph["top10pct_pairs_call_share"], abs=0.06)
    rg = t["locations.radius_of_gyration_km"]["value"]
    assert 0 < rg["median"] < rg["p90"] < 50
    assert 0 < t["locations.top_location_share"]["value"]["median"] <= 1
    by_hour = t["locations.hourly_move_probability"]["value"]["by_hour"]
    assert len(by_hour) == 24 and all(0 <= p <= 1 for p in by_hour)
    assert exact_doc["privacy"]["exact_no_privacy"] is True
    assert all(v["privacy"]["exact_no_privacy"] for v in t.values())


def test_private_targets_scatter_around_the_exact_values(individual_sets, exact_doc):
    """With a large budget the noise is small: DP values sit near the exact ones."""
    doc = compute_targets(individual_sets, epsilon=2e4, delta=0.0, part="fit")  # as exact_doc
    t, x = doc["targets"], exact_doc["targets"]
    assert t["drive.handover_rate_per_min_moving"]["value"] == pytest.approx(
        x["drive.handover_rate_per_min_moving"]["value"], rel=0.05)
    assert t["edges.call_duration"]["value"]["log_mu"] == pytest.approx(x["edges.call_duration"]["value"]["log_mu"],
                                                                        abs=0.05)
    assert t["edges.sms_call_ratio"]["value"] == pytest.approx(x["edges.sms_call_ratio"]["value"], rel=0.05)
    ledger = doc["privacy"]
    assert ledger["spent"]["epsilon"] == pytest.approx(2e4, rel=1e-6)
    assert sum(v["privacy"]["epsilon"] for k, v in t.items() if k in {e["target"] for e in ledger["releases"]}) \
        == pytest.approx(2e4, rel=1e-6)
    json.dumps(doc, allow_nan=False)


def test_document_at_epsilon_one_records_every_release(aggregate_sets, individual_sets):
    doc = compute_targets(aggregate_sets + individual_sets, epsilon=1.0, delta=1e-6, holidays=HOLIDAYS)
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["schema_version"] == 1
    ledger = doc["privacy"]
    assert ledger["spent"]["epsilon"] <= 1.0 + 1e-9 and ledger["spent"]["delta"] <= 1e-6 + 1e-15
    planned = {"drive.handover_rate_per_min_moving": 2, "drive.dwell_time_s": 3, "drive.ping_pong_share": 2,
               "locations.radius_of_gyration_km": 3, "locations.distinct_locations_per_day": 1,
               "locations.top_location_share": 1, "locations.hourly_move_probability": 2,
               "edges.call_duration": 5, "edges.sms_call_ratio": 2, "edges.contact_concentration": 1}
    got = pd.Series([e["target"] for e in ledger["releases"]]).value_counts().to_dict()
    assert got == planned
    for e in ledger["releases"]:
        assert e["epsilon"] == pytest.approx(1.0 / len(planned) / planned[e["target"]], rel=1e-6)
        assert e["noise_scale"] > 0 and e["sensitivity"] > 0 and e["max_rows_per_person"] >= 1
    for name, target in doc["targets"].items():
        src = doc["sources"][target["source"]]
        if src["level"] == "individual":
            assert target["level"] == "individual" and target["privacy"]["epsilon"] > 0, name
        else:
            assert target["privacy"] == AGGREGATE_NOTE, name
    assert "trace" in doc["sources"]["drive"]["privacy_unit"]


def test_holiday_effect_on_a_constructed_series():
    idx = pd.date_range("2024-01-01", periods=24 * 21, freq="h")  # three weeks from a Monday
    s = pd.Series(10.0, index=idx)
    s[idx.normalize() == pd.Timestamp("2024-01-10")] = 5.0  # a Wednesday at half load
    eff = holiday_effect(s, ["2024-01-10", "2030-01-01"])
    assert eff == {"per_day": {"2024-01-10": 0.5}, "mean": 0.5}
    assert holiday_effect(s, ["2030-01-01"]) is None


def test_contact_concentration_from_bins():
    # 9 pairs with one call and 1 pair with 2 calls: the top 10% (one pair) carries 2 of 11 calls
    hist = np.zeros(len(PAIR_BIN_EDGES) - 1)
    hist[0], hist[1] = 9, 1
    assert contact_concentration_from_bins(hist) == pytest.approx(2 / 11)
    assert math.isnan(contact_concentration_from_bins(np.zeros_like(hist)))


def test_cdr_targets_of_a_run_match_run_stats(small_run):
    _, out, _ = small_run
    cdr = R.read_cdr(out)
    doc = compute_targets([cdr], exact=True, part="all")  # the whole run, as run_stats
    t = doc["targets"]
    assert t["cdr.sms_call_ratio"]["value"] == pytest.approx(voice_stats(out)["sms_call_ratio"], rel=1e-6)
    for svc, shape in t["cdr.diurnal_profile"]["value"].items():
        assert len(shape) == 24 and np.mean(shape) == pytest.approx(1.0, abs=1e-5), svc
    assert "cdr.cell_load_distribution" in t and t["cdr.cell_load_distribution"]["value"]["p50"] >= 0
    noisy = compute_targets([cdr], epsilon=1.0)
    assert noisy["privacy"]["spent"]["epsilon"] == pytest.approx(1.0)
    assert noisy["targets"]["cdr.diurnal_profile"]["derived_from"] == "cdr.weekly_profile"


def test_individual_level_input_needs_a_budget(individual_sets):
    with pytest.raises(ValueError, match="epsilon"):
        compute_targets(individual_sets[:1])
