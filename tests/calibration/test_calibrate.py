"""Federated merge rules on hand-made targets documents, the objective, and the fit: known
parameters are recovered from targets of a run made with them, reproducibly."""

from __future__ import annotations

import math

import pytest

from telcosim.calibration import calibrate as C
from telcosim.calibration import federate as F
from telcosim.calibration.targets import PAIR_BIN_EDGES, contact_concentration_from_bins


def doc(targets: dict, eps: float = 1.0, **top) -> dict:
    return {"schema_version": 1, "sources": {"edges": {"path": "x", "level": "individual"}},
            "targets": targets,
            "privacy": {"composition": "basic", "budget": {"epsilon": eps, "delta": 0.0},
                        "spent": {"epsilon": eps, "delta": 0.0}, "disjoint_sources": False,
                        "exact_no_privacy": False, "releases": [{"target": "t", "epsilon": eps}]}, **top}


def tg(value, level="individual", **extra):
    return {"value": value, "source": "edges", "level": level, "privacy": {"epsilon": 0.1}, "method": "m", **extra}


def test_scalars_and_quantiles_weighted_by_file_weight():
    a = doc({"edges.sms_call_ratio": tg(2.0), "drive.dwell_time_s": tg({"median": 10.0, "p90": 100.0})}, weight=3)
    b = doc({"edges.sms_call_ratio": tg(6.0), "drive.dwell_time_s": tg({"median": 20.0, "p90": None})})
    m = F.merge_documents([("a", a), ("b", b)])
    assert m["targets"]["edges.sms_call_ratio"]["value"] == pytest.approx((3 * 2 + 6) / 4)
    assert m["targets"]["drive.dwell_time_s"]["value"] == {"median": pytest.approx(12.5), "p90": 100.0}
    # --weights override the documents' own
    m = F.merge_documents([("a", a), ("b", b)], weights=[1, 1])
    assert m["targets"]["edges.sms_call_ratio"]["value"] == pytest.approx(4.0)


def test_stated_sample_sizes_win_over_file_weights():
    a = doc({"edges.sms_call_ratio": tg(2.0, sample_size=100)}, weight=50)
    b = doc({"edges.sms_call_ratio": tg(6.0, sample_size=300)})
    m = F.merge_documents([("a", a), ("b", b)])
    assert m["targets"]["edges.sms_call_ratio"]["value"] == pytest.approx((200 + 1800) / 400)
    assert "sample_size" in m["merge"]["rules"]["edges.sms_call_ratio"]["weights"]


def test_lognormal_pooled_moments_and_profiles_mean_one():
    a = doc({"edges.call_duration": tg({"log_mu": 3.0, "log_sigma": 1.0, "median_s": 20.0, "p90_s": 100.0}),
             "shares.diurnal_profile": tg({"calls": [2.0] * 12 + [0.0] * 12}, level="aggregate")})
    b = doc({"edges.call_duration": tg({"log_mu": 4.0, "log_sigma": 2.0, "median_s": 60.0, "p90_s": 500.0}),
             "shares.diurnal_profile": tg({"calls": [0.0] * 12 + [2.0] * 12, "messages": [1.0] * 24},
                                          level="aggregate")})
    m = F.merge_documents([("a", a), ("b", b)], weights=[1, 3])
    v = m["targets"]["edges.call_duration"]["value"]
    mu = (3 + 3 * 4) / 4
    assert v["log_mu"] == pytest.approx(mu)
    assert v["log_sigma"] == pytest.approx(math.sqrt((1 * (1 + 9) + 3 * (4 + 16)) / 4 - mu * mu), rel=1e-5)
    prof = m["targets"]["shares.diurnal_profile"]["value"]
    assert sum(prof["calls"]) / 24 == pytest.approx(1.0)
    assert prof["calls"][0] == pytest.approx(0.5) and prof["calls"][23] == pytest.approx(1.5)
    assert prof["messages"] == pytest.approx([1.0] * 24)  # only in b


def test_contact_histograms_are_pooled_not_averaged():
    h1, h2 = [10, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 5]
    a = doc({"edges.contact_concentration": tg({"top10pct_pairs_call_share": 0.1, "pairs_per_bin": h1,
                                                 "bin_edges": PAIR_BIN_EDGES.tolist()})})
    b = doc({"edges.contact_concentration": tg({"top10pct_pairs_call_share": 0.1, "pairs_per_bin": h2,
                                                 "bin_edges": PAIR_BIN_EDGES.tolist()})})
    v = F.merge_documents([("a", a), ("b", b)], weights=[100, 1])["targets"]["edges.contact_concentration"]["value"]
    assert v["pairs_per_bin"] == [10, 0, 0, 0, 0, 0, 5]
    assert v["top10pct_pairs_call_share"] == pytest.approx(contact_concentration_from_bins(v["pairs_per_bin"]), rel=1e-5)


def test_ledgers_listed_per_source_never_composed():
    m = F.merge_documents([("a", doc({}, eps=1.0)), ("b", doc({}, eps=2.0))], shas=["s1", "s2"])
    p = m["privacy"]
    assert [e["source"] for e in p["per_source"]] == ["a", "b"]
    assert [e["spent"]["epsilon"] for e in p["per_source"]] == [1.0, 2.0]
    assert p["max_spent_per_source"]["epsilon"] == 2.0 and p["sum_if_not_disjoint"]["epsilon"] == 3.0
    assert "not composed" in p["composition"] and p["per_source"][0]["releases"]
    # a merged document merged again keeps the flat per-source list
    again = F.merge_documents([("m", m), ("c", doc({}, eps=0.5))])
    assert [e["source"] for e in again["privacy"]["per_source"]] == ["a", "b", "c"]


def test_incompatible_documents_one_line_per_problem():
    a = doc({"edges.sms_call_ratio": tg(2.0), "shares.weekly_profile": tg({"calls": [1.0] * 168}, "aggregate"),
             "drive.dwell_time_s": tg({"median": 1.0}, unit="s")})
    b = doc({"edges.sms_call_ratio": tg({"x": 1.0}), "shares.weekly_profile": tg({"calls": [1.0] * 24}, "aggregate"),
             "drive.dwell_time_s": tg({"median": 1.0}, unit="min")})
    c = doc({}, **{"schema_version": 2})
    with pytest.raises(F.MergeError) as e:
        F.merge_documents([("a", a), ("b", b)])
    lines = e.value.problems
    assert any("edges.sms_call_ratio" in x and "different structure" in x for x in lines)
    assert any("shares.weekly_profile" in x and "{calls: 168 values} vs {calls: 24 values}" in x for x in lines)
    assert any("drive.dwell_time_s" in x and "unit 'min' contradicts" in x for x in lines)
    assert len(lines) == 3, lines
    with pytest.raises(F.MergeError) as e:
        F.merge_documents([("a", a), ("c", c)])
    assert e.value.problems == ["c: schema_version 2 is not supported (this telcosim reads schema_version 1); "
                                "re-create it with this version's 'telcosim targets'"]
    exact = doc({})
    exact["privacy"]["exact_no_privacy"] = True
    with pytest.raises(F.MergeError, match="exact values without noise"):
        F.merge_documents([("e", exact)])
    assert F.merge_documents([("e", exact)], allow_exact=True)["privacy"]["exact_no_privacy"] is True


def test_masked_volumes_merge_only_with_masked_volumes():
    from telcosim.calibration.targets import mask_volumes

    def cells(p50):
        return doc({"cells.cell_load_distribution": tg({"p10": p50 / 4, "p50": p50, "p90": 3 * p50}, "aggregate"),
                    "edges.sms_call_ratio": tg(2.0)})

    a, b = mask_volumes(cells(100.0)), mask_volumes(cells(7.0))
    m = F.merge_documents([("a", a), ("b", b)])
    v = m["targets"]["cells.cell_load_distribution"]
    assert v["value"]["p50"] == pytest.approx(1.0) and "divided by p50" in v["masked"]
    assert m["masking"]["volumes"] is True and set(m["masking"]["per_source"]) == {"a", "b"}
    assert m["masking"]["rescaled"]["cells.cell_load_distribution"] == ["p10", "p50", "p90"]
    assert F.merge_documents([("a", cells(1.0)), ("b", cells(2.0))])["masking"] == {"volumes": False}
    with pytest.raises(F.MergeError) as e:
        F.merge_documents([("a", a), ("raw", cells(7.0))])
    assert e.value.problems == ["target cells.cell_load_distribution: volumes masked in a but not in raw; a rescaled "
                                "level cannot be averaged with an absolute one: make every file with 'telcosim "
                                "targets --mask-volumes', or none"]


def test_objective_terms_and_distances():
    d = doc({"edges.call_duration": tg({"log_mu": 3.0, "log_sigma": None, "median_s": 20.0, "p90_s": 100.0}),
             "cdr.call_duration": tg({"log_mu": 3.2, "log_sigma": 1.5, "median_s": 20.0, "p90_s": 100.0}),
             "edges.sms_call_ratio": tg(4.0), "activity.over_dispersion": tg(2.0, "aggregate")})
    terms, notes = C.target_terms(d)
    mu = [t for t in terms if t.stat == "call_duration.log_mu"]
    assert len(mu) == 2 and all(t.weight == 0.5 for t in mu)  # found twice: weight split
    assert any("edges.call_duration.log_sigma = None" in n for n in notes)
    obj, rows = C.objective(terms, {"call_duration.log_mu": 3.1, "call_duration.log_sigma": 1.5,
                                    "call_duration.median_s": 20.0, "call_duration.p90_s": 100.0,
                                    "sms_call_ratio": 8.0})
    by = {(r["statistic"], r["target"]): r for r in rows}
    assert by[("call_duration.log_mu", "edges.call_duration")]["distance"] == pytest.approx(0.1)
    assert by[("sms_call_ratio", "edges.sms_call_ratio")]["distance"] == pytest.approx(math.log(2))
    assert obj == pytest.approx((0.5 * 0.1 + 0.5 * 0.1 + math.log(2)) / (1 + 1 + 0.5 + 0.5 + 1))
    assert C.fittable(terms) == ["behaviour.sms_call_ratio", "behaviour.call_duration_log_mu",
                                 "behaviour.call_duration_log_sigma"]
    # a statistic the run cannot produce costs the penalty
    obj2, _ = C.objective([t for t in terms if t.stat == "sms_call_ratio"], {"sms_call_ratio": float("nan")})
    assert obj2 == C.PENALTY


def test_blocks_follow_the_statistics():
    terms, _ = C.target_terms(doc({"cdr.call_duration": tg({"log_mu": 3.2, "log_sigma": 1.5, "median_s": 20.0,
                                                             "p90_s": 100.0}),
                                   "locations.top_location_share": tg({"median": 0.6}),
                                   "drive.ping_pong_share": tg(0.2)}))
    names = C.fittable(terms)
    parts = C.blocks(names, terms)
    assert [b for b, _ in parts] == [["mobility.stickiness", "mobility.explore_rho"], ["mobility.ping_pong_prob"],
                                     ["behaviour.call_duration_log_mu", "behaviour.call_duration_log_sigma"]]


# --------------------------------------------------------------------------
# the fit
# --------------------------------------------------------------------------

TRUTH = {"mobility.stickiness": 0.8, "behaviour.call_duration_log_mu": 4.5}  # defaults: 0.55, 3.82


@pytest.fixture(scope="module")
def truth_targets(tmp_path_factory):
    from telcosim.scenarios.runner import run
    from telcosim.sim import config

    out = tmp_path_factory.mktemp("truth") / "run"
    sc = config.load(None, ["population.subscribers=1000", "seed=11"] + [f"{k}={v}" for k, v in TRUTH.items()])
    run(sc, out)
    return C.targets_from_run(out)


# Slow (about 70 s on 2 cores: 24 fit runs); test_calibrate_cli's tiny fit and test_same_seed_same_best
# keep the search and its determinism in the default suite.
@pytest.mark.slow
def test_fit_recovers_known_parameters(truth_targets):
    """Targets from a run with stickiness 0.8 and conversations' duration mu 4.5 (another seed); the
    fit starts from the defaults (0.55, 3.82) with 12 runs of 1,000 subscribers. Tolerances: 0.1 on
    stickiness, 0.25 on mu (run-to-run noise at this size is about 0.03 and 0.05)."""
    res = C.fit(truth_targets, trials=12, subscribers=1000, seed=1, sampler_seed=0, params=list(TRUTH))
    assert res.start == {"mobility.stickiness": 0.55, "behaviour.call_duration_log_mu": 3.82}
    assert abs(res.best["mobility.stickiness"] - 0.8) <= 0.10
    assert abs(res.best["behaviour.call_duration_log_mu"] - 4.5) <= 0.25
    assert res.after["objective"] < 0.5 * res.before["objective"]
    rep = C.report(res, {"privacy": {}})
    assert len(rep["trials"]) == res.settings["runs"] >= 12
    row = next(r for r in rep["best"]["statistics"] if r["statistic"] == "call_duration.log_mu")
    assert abs(row["synthetic_after"] - row["target_value"]) < abs(row["synthetic_before"] - row["target_value"])


def test_same_seed_same_best(truth_targets):
    kw = dict(trials=3, subscribers=400, seed=2, sampler_seed=5, params=["behaviour.call_duration_log_mu"])
    a, b = C.fit(truth_targets, **kw), C.fit(truth_targets, **kw)
    assert a.best == b.best and [t["objective"] for t in a.trials] == [t["objective"] for t in b.trials]


@pytest.mark.slow
def test_fit_recovers_five_parameters(tmp_path):
    """Five knobs that one day of a 3,000-subscriber run identifies, fitted together (40 runs).
    ``population.tie_sigma`` is not among them: its statistic, the contact concentration, moves only
    from 0.308 to 0.339 as tie sigma goes from 1.5 to 3.5 (seed 1, the other knobs as here), while
    two seeds at 2.5 give 0.304 and 0.325: a day holds too few calls per pair (docs/calibration.md)."""
    from telcosim.scenarios.runner import run
    from telcosim.sim import config

    truth = {"mobility.stickiness": 0.75, "mobility.ping_pong_prob": 0.3, "mobility.speed_kmh_median": 40.0,
             "behaviour.call_duration_log_mu": 3.8, "behaviour.call_duration_log_sigma": 1.2}
    sc = config.load(None, ["population.subscribers=3000", "seed=11"] + [f"{k}={v}" for k, v in truth.items()])
    run(sc, tmp_path / "run")
    res = C.fit(C.targets_from_run(tmp_path / "run"), trials=40, subscribers=3000, seed=1, params=list(truth))
    tol = {"mobility.stickiness": 0.1, "mobility.ping_pong_prob": 0.08, "mobility.speed_kmh_median": 12.0,
           "behaviour.call_duration_log_mu": 0.2, "behaviour.call_duration_log_sigma": 0.2}
    off = {k: res.best[k] for k in truth if abs(res.best[k] - truth[k]) > tol[k]}
    assert not off, f"not recovered: {off} (truth {truth})"
    assert res.after["objective"] < 0.5 * res.before["objective"]
