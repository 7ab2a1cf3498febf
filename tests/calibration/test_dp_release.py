"""DP releases calibration can use (issue 19, item 9): post-processing from the released values and
public bounds alone (clamped, monotone quantiles, non-negative rates), each target's noise, and
calibration that weights targets by their noise and sets aside noise-dominated ones, naming them.
The 20-release measurement behind docs/privacy.md is benchmarks/dp_release_invariants.py."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from telcosim.calibration import calibrate as C
from telcosim.calibration import targets as T
from telcosim.cli import calibrate as cli
from telcosim.realdata import readers as R
from tests.calibration.test_calibrate import doc, tg
from tests.conftest import SHARED_DATA

needs_data = pytest.mark.skipif(not (SHARED_DATA / "README.md").is_file(), reason="shared data not present")


def test_postprocess_clamps_orders_and_keeps_rates_non_negative():
    assert T.postprocess("drive.handover_rate_per_min_moving", -0.43) == 0.0
    assert T.postprocess("drive.ping_pong_share", 1.7) == 1.0
    assert T.postprocess("drive.dwell_time_s", {"median": 3.3, "p90": 1.9}) == {"median": 1.9, "p90": 3.3}
    v = T.postprocess("edges.call_duration", {"log_mu": 13.1, "log_sigma": 9.0, "median_s": 300.0, "p90_s": 20.0})
    assert v == {"log_mu": pytest.approx(math.log(14400)), "log_sigma": pytest.approx(math.log(14400) / 2),
                 "median_s": 20.0, "p90_s": 300.0}
    assert math.isnan(T.postprocess("edges.sms_call_ratio", float("nan")))  # undefined stays undefined
    bad = {"targets": {"drive.dwell_time_s": {"value": {"median": 22.0, "p90": 20.0}},
                       "edges.sms_call_ratio": {"value": -1.0},
                       "locations.hourly_move_probability": {"value": {"by_hour": [0.5, 1.2], "mean": 0.8}}}}
    problems = T.release_problems(bad)
    assert len(problems) == 3 and any("p90 20.0 below median 22.0" in p for p in problems)
    fixed = {"targets": {n: {"value": T.postprocess(n, t["value"])} for n, t in bad["targets"].items()}}
    assert T.release_problems(fixed) == []


@pytest.fixture(scope="module")
def drive_and_edges():
    return [R.read_drive_traces(SHARED_DATA / "irish_5g"), R.read_edges(SHARED_DATA / "copenhagen")]


@needs_data
def test_releases_at_epsilon_one_are_consistent_and_say_their_noise(drive_and_edges):
    """The README's setting (drive and edges, epsilon 1): three releases, each within its public
    bounds and in order; every private figure the fit reads has a noise record, and a generous
    budget makes none of them noise-dominated."""
    for _ in range(3):
        d = T.compute_targets(drive_and_edges, epsilon=1.0)
        assert T.release_problems(d) == []
        for name, t in d["targets"].items():
            noise = t["privacy"]["noise"]
            assert set(noise["sd"]) and set(noise["noise_dominated"]) <= set(noise["sd"]), name
            assert all(v is None or v >= 0 for v in noise["sd"].values()), name
            assert t["privacy"]["noise_scales"] and all(x > 0 for x in t["privacy"]["noise_scales"].values())
    big = T.compute_targets(drive_and_edges, epsilon=1e5)
    assert all(not t["privacy"]["noise"]["noise_dominated"] for t in big["targets"].values())
    exact = T.compute_targets(drive_and_edges, exact=True)
    assert all(set(t["privacy"]["noise"]["sd"].values()) == {0.0} for t in exact["targets"].values())
    # the fit part by default, recorded per source
    assert exact["split"]["part"] == "fit"
    assert exact["sources"]["drive"]["split"]["units_fit"] > exact["sources"]["drive"]["split"]["units_check"] > 0


def test_a_set_too_small_to_split_is_refused_naming_part_all(tmp_path):
    calls = tmp_path / "e"
    calls.mkdir()
    (calls / "calls.csv").write_text("Source;Target;Weight\n1;2;30\n")
    e = R.read_edges(calls)
    with pytest.raises(T.TooSmallToSplit, match="use --part all"):
        T.compute_targets([e], exact=True)
    assert T.compute_targets([e], exact=True, part="all")["split"]["part"] == "all"


def _noisy(value, sd: dict):
    t = tg(value)
    t["privacy"] = {"epsilon": 0.1, "noise": {"sd": sd, "noise_dominated": [k for k, v in sd.items()
                                                                            if v is None or v > 0.5]}}
    return t


def test_calibration_weights_by_noise_and_sets_aside_the_noise_dominated():
    d = doc({"edges.sms_call_ratio": _noisy(6.0, {"value": 0.2}),
             "drive.ping_pong_share": _noisy(0.3, {"value": None}),
             "edges.call_duration": _noisy({"log_mu": 3.2, "log_sigma": 1.5, "median_s": 29.0, "p90_s": 180.0},
                                           {"log_mu": 0.0, "log_sigma": 0.9, "median_s": 0.05, "p90_s": 0.3})})
    terms, notes = C.target_terms(d)
    by = {t.stat: t for t in terms}
    assert by["call_duration.log_mu"].weight == 1.0  # exact: full weight
    assert by["sms_call_ratio"].weight == pytest.approx(0.2**2 / (0.2**2 + 0.2**2))  # noise = model sd: half
    assert by["call_duration.p90_s"].weight == pytest.approx(0.5 * 0.04 / (0.04 + 0.09))
    assert "ping_pong_share" not in by and "call_duration.log_sigma" not in by
    assert sorted(n for n, _ in C.set_aside(d)) == ["drive.ping_pong_share", "edges.call_duration.log_sigma"]
    assert any("drive.ping_pong_share" in n and "noise-dominated" in n for n in notes)


def test_cli_names_the_noise_dominated_targets(tmp_path, capsys):
    only_noise = tmp_path / "t.json"
    only_noise.write_text(json.dumps(doc({"drive.ping_pong_share": _noisy(0.3, {"value": None}),
                                          "edges.sms_call_ratio": _noisy(6.0, {"value": 0.8})})))
    p = argparse.ArgumentParser(prog="telcosim")
    cli.add_parser(p.add_subparsers(dest="command", required=True))
    code = cli.run(p.parse_args(["calibrate", "--targets", str(only_noise), "--out", str(tmp_path / "c.toml")]))
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "c.toml").exists()
    assert "noise-dominated targets set aside" in err and "drive.ping_pong_share (sd inf)" in err
    assert "edges.sms_call_ratio (sd 0.8)" in err and "every comparable one is noise-dominated" in err
