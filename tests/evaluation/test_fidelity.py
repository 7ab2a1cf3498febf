"""Fidelity metrics: distances and statistics on inputs with known answers, real figures equal to
the default profile's derivation, and controls: a scrambled run fails what it should, a run of the
same model with another seed passes against the first one's CDRs, tolerances come from the halves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from telcosim.calibration.run_stats import voice_stats
from telcosim.evaluation import fidelity as F
from telcosim.realdata import readers as R
from tests.conftest import small_scenario


def test_distances_on_known_inputs():
    p = np.array([1.0, 2.0, 3.0, 4.0])
    assert F.tv_distance(p, 10 * p) == pytest.approx(0.0)
    assert F.tv_distance([1, 0, 0], [0, 0, 1]) == pytest.approx(1.0)
    assert F.tv_distance([1, 1, np.nan], [1, 3, 5]) == pytest.approx(0.25)  # over entries finite in both
    rng = np.random.default_rng(1)
    a = rng.normal(size=2000)
    assert F.ks_distance(a, a) == 0.0
    assert F.ks_distance(a, a + 10) == pytest.approx(1.0)
    assert F.distance("rel", 3.0, 2.0) == pytest.approx(0.5)
    assert F.distance("rel", 3.0, 2.0, ref=4.0) == pytest.approx(0.25)
    assert F.distance("abs", 0.2, 0.5) == pytest.approx(0.3)


def test_burstiness_regular_poisson_and_bursty():
    rng = np.random.default_rng(3)
    n = 4000
    sub = np.repeat([0, 1, 2], n)
    regular = np.arange(n) * 60
    poisson = np.cumsum(rng.exponential(60, n))
    bursty = np.cumsum(rng.lognormal(0, 2.5, n))
    assert F.burstiness(np.zeros(n, np.int64), regular) == pytest.approx(-1.0)
    assert F.burstiness(np.zeros(n, np.int64), poisson.astype(np.int64)) == pytest.approx(0.0, abs=0.05)
    assert F.burstiness(np.zeros(n, np.int64), (bursty * 1000).astype(np.int64)) > 0.4
    # the median over subscribers: the Poisson one is in the middle
    t = np.concatenate([regular, poisson.astype(np.int64), (bursty * 1000).astype(np.int64)])
    assert F.burstiness(sub, t) == pytest.approx(F.burstiness(np.zeros(n, np.int64), poisson.astype(np.int64)))
    assert math.isnan(F.burstiness(np.array([0, 0]), np.array([1, 2])))


def test_autocorrelation_of_a_daily_cycle():
    rng = np.random.default_rng(5)
    h = np.arange(24 * 14)
    x = np.vstack([10 + 5 * np.sin(2 * np.pi * h / 24) + rng.normal(0, 0.5, len(h)) for _ in range(4)])
    assert F.acf_median(x, 24) > 0.9
    x_gaps = x.copy()
    x_gaps[:, 100:150] = np.nan  # missing hours are left out of the pairs
    assert F.acf_median(x_gaps, 24) > 0.9
    assert math.isnan(F.acf_median(x[:, :40], 24))  # shorter than 2 x lag


def test_halves_are_disjoint_complete_and_seeded():
    units = np.arange(35)
    a, b = F.halves(units, 11, 0)
    assert len(set(a) & set(b)) == 0 and sorted(np.r_[a, b]) == list(units)
    assert np.array_equal(F.halves(units, 11, 0)[0], a)
    assert not np.array_equal(F.halves(units, 11, 1)[0], a)


def test_real_figures_equal_the_default_profile(real_sets):
    """The real side uses the definitions of the default profile's derivation (rounded to 4 digits)."""
    from telcosim.sim.profile import load_profile

    raw = load_profile("default").raw
    src = {d.kind: F.real_source(d) for d in real_sets}
    loc, drv, edg = src["locations"].features(None), src["drive"].features(None), src["edges"].features(None)
    assert loc["radius_of_gyration_median"] == pytest.approx(raw["mobility"]["rg_km_median"], rel=1e-3)
    assert loc["radius_of_gyration_p90"] == pytest.approx(raw["mobility"]["rg_km_p90"], rel=1e-3)
    assert loc["distinct_locations_per_day"] == pytest.approx(raw["mobility"]["distinct_locations_day_median"])
    assert loc["top_location_share"] == pytest.approx(raw["mobility"]["top_location_share_median"], rel=1e-3)
    assert loc["move_probability"] == pytest.approx(raw["mobility"]["move_probability_mean"], rel=1e-3)
    assert drv["handover_rate_moving"] == pytest.approx(raw["handover"]["rate_per_min_moving"], rel=1e-3)
    assert drv["dwell_time_median"] == pytest.approx(raw["handover"]["dwell_median_s_moving"], rel=1e-3)
    assert drv["ping_pong_share"] == pytest.approx(raw["handover"]["ping_pong_share"], rel=1e-3)
    assert edg["call_duration_median"] == pytest.approx(raw["voice"]["duration_median_s"], rel=1e-3)
    assert edg["sms_call_ratio"] == pytest.approx(raw["sms"]["sms_call_ratio"], rel=1e-3)
    assert edg["contact_concentration"] == pytest.approx(raw["social"]["top10pct_pairs_call_share"], rel=1e-3)


def test_run_cdr_figures_agree_with_run_stats(small_run):
    _, out, _ = small_run
    syn = F.synthetic_features(out)
    assert syn.cdr["sms_call_ratio"] == pytest.approx(voice_stats(out)["sms_call_ratio"])
    assert syn.info["days"] == 1 and syn.info["subscribers"] == 4000
    for svc in ("voice", "sms", "data", "all"):
        assert np.mean(syn.run[f"hourly_profile.{svc}"]) == pytest.approx(1.0)


PROFILES = ("hourly_profile.voice", "hourly_profile.sms")  # "all" against Milan is far off either way
MOBILITY = ("radius_of_gyration_median", "distinct_locations_per_day", "top_location_share", "move_probability",
            "ping_pong_share")


def test_control_scrambled_run_fails_profiles_and_mobility(honest_doc, wrong_doc):
    """Uniform start times and uniformly random cells must fail the shapes and mobility metrics
    they destroy, and be much further off than the honest run."""
    h, w = honest_doc["metrics"], wrong_doc["metrics"]
    for name in PROFILES + MOBILITY:
        assert w[name]["status"] == "fail", name
        assert w[name]["distance"] > 1.5 * h[name]["distance"], name
    # what the scrambling does not touch (KPI data volume, durations) is unchanged
    assert w["hourly_profile.data"]["distance"] == pytest.approx(h["hourly_profile.data"]["distance"])
    assert w["call_duration_median"]["distance"] == pytest.approx(h["call_duration_median"]["distance"])


def test_honest_run_is_reported_metric_by_metric(honest_doc):
    s, m = honest_doc["summary"], honest_doc["metrics"]
    assert set(m) == set(F.SPEC_BY_NAME)
    assert s["passed"] + s["failed"] == s["evaluated"] and s["evaluated"] + s["not_evaluated"] == len(m)
    assert s["failed_metrics"] == [n for n, v in m.items() if v["status"] == "fail"]
    for name, v in m.items():
        if v["status"] == "not_evaluated":
            assert v["note"], name
        else:
            assert math.isfinite(v["distance"]) and v["tolerance"] > 0, name
            spec = F.SPEC_BY_NAME[name]
            if spec.tail is None:
                base = v["baseline"]["distance"] if v["baseline"] else None
                assert v["tolerance"] == pytest.approx(max(2 * base, spec.floor) if base is not None else spec.floor,
                                                      rel=1e-5)
            else:
                assert v["tolerance"] == spec.tail
            assert (v["status"] == "pass") == (v["distance"] <= v["tolerance"])
    # one-day run: week shapes and autocorrelations cannot be judged, and say why
    assert m["weekly_profile.voice"]["status"] == "not_evaluated" and "1 day" in m["weekly_profile.voice"]["note"]
    assert m["autocorr_24h.all"]["status"] == "not_evaluated"
    # Nodobo shares cannot be split: the floor, and the document says so
    assert honest_doc["real"]["shares"]["splittable"] is False and "floor" in honest_doc["real"]["shares"]["note"]
    assert m["hourly_profile.voice"]["baseline"] is None and m["hourly_profile.voice"]["tolerance"] == 0.05
    assert honest_doc["real"]["locations"]["splittable"] and len(m["move_probability"]["baseline"]["per_split"]) == F.SPLITS


def test_same_model_other_seed_passes_against_cdr_and_scramble_fails(small_run, small_run_b, wrong_run):
    _, out, _ = small_run
    ref = R.read_cdr(small_run_b)
    h = F.evaluate(out, [ref])
    w = F.evaluate(wrong_run, [ref])
    assert h["real"]["cdr"]["splittable"] and h["real"]["cdr"]["split_by"] == "subscriber"
    judged = ["hourly_profile.voice", "hourly_profile.sms", "hourly_profile.data", "hourly_profile.all",
              "cell_load_distribution.all", "burstiness", "sms_call_ratio", "call_duration_median"]
    for name in judged:
        assert h["metrics"][name]["status"] == "pass", (name, h["metrics"][name])
        assert h["metrics"][name]["baseline"]["distance"] > 0
    for name in ("hourly_profile.voice", "hourly_profile.sms", "hourly_profile.data", "hourly_profile.all",
                 "cell_load_distribution.all", "burstiness"):
        assert w["metrics"][name]["status"] == "fail", name


def test_gate_follows_the_required_metrics(wrong_run, honest_doc, real_sets):
    shares = [d for d in real_sets if d.kind == "shares"]
    syn = F.synthetic_features(wrong_run)
    doc = F.evaluate(wrong_run, shares, required=["hourly_profile.voice"], synthetic=syn)
    assert doc["summary"]["gate"] == "fail" and doc["summary"]["required_failed"] == ["hourly_profile.voice"]
    # an explicitly required metric that cannot be evaluated fails the gate; a default one is listed
    doc = F.evaluate(wrong_run, shares, required=["burstiness"], synthetic=syn)
    assert doc["summary"]["gate"] == "fail" and doc["summary"]["required_not_evaluated"] == ["burstiness"]
    doc = F.evaluate(wrong_run, shares, synthetic=syn)
    assert doc["summary"]["required_source"] == "default" and "handover_rate_moving" in \
        doc["summary"]["required_not_evaluated"]
    with pytest.raises(ValueError, match="unknown metric"):
        F.evaluate(wrong_run, shares, required=["no_such_metric"], synthetic=syn)


def test_multi_day_run_gets_weekly_and_autocorrelation(tmp_path, real_sets):
    from telcosim.scenarios.runner import run

    out = tmp_path / "two_days"
    run(small_scenario(**{"population.subscribers": 1500, "time.days": 3}), out)
    sets = [d for d in real_sets if d.kind in ("shares", "cells", "activity")]
    doc = F.evaluate(out, sets)
    m = doc["metrics"]
    for name in ("weekly_profile.voice", "weekly_profile.data", "weekly_profile.all", "autocorr_24h.all",
                 "autocorr_24h.data"):
        assert m[name]["status"] in ("pass", "fail") and math.isfinite(m[name]["distance"]), name
    assert m["autocorr_168h.all"]["status"] == "not_evaluated" and "336 h" in m["autocorr_168h.all"]["note"]
    # the weekly shape compares only the hours of week the run covers (3 of 7 days)
    syn_weekly = np.asarray(doc["plots"]["weekly"]["voice"]["synthetic"], float)
    assert np.isfinite(syn_weekly).sum() == 72
