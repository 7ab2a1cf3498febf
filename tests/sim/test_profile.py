"""Session count shapes and the data volume per session by hour (profile [data_volume]).

The embedded profiles' data sessions are app usage moved towards what Milan's all-services load
leaves after the voice and SMS records, just enough for all records to follow Milan
(calibration/derive_defaults.py::session_shapes); the volume per session follows the LTE volume
shape over that count shape, so data volume per hour keeps the LTE shape.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from telcosim.calibration.derive_defaults import (
    ALL_RECORDS_TV_GOAL,
    _tv,
    _week,
    population_rates,
    record_weights,
    session_shapes,
)
from telcosim.sim.errors import InputDataError
from telcosim.sim.profile import load_profile, parse_profile
from tests.conftest import read


def _shape(rng, n, lo=0.2):
    v = rng.uniform(lo, 2.0, n)
    return v / v.mean()


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    milan = {"hour_weekday": _shape(rng, 24, 0.8), "hour_weekend": _shape(rng, 24, 0.8), "day_of_week": _shape(rng, 7, 0.9)}
    nod = {s: {"hour_weekday": _shape(rng, 24), "hour_weekend": _shape(rng, 24), "day_of_week": _shape(rng, 7)}
           for s in ("voice", "sms")}
    lte = {"hour_weekday": _shape(rng, 24), "hour_weekend": _shape(rng, 24), "day_of_week": _shape(rng, 7)}
    return nod, milan, lte


def _total(ses, w):
    return sum(w[s] * _week(ses[s]["hour_weekday"], ses[s]["hour_weekend"], ses[s]["day_of_week"])
               for s in ("voice", "sms", "data"))


def test_data_sessions_are_app_usage_moved_towards_milan_just_enough():
    nod, milan, lte = _inputs()
    rng = np.random.default_rng(5)
    app = _shape(rng, 24, 0.1)
    w = {"voice": 3.0, "sms": 4.0, "data": 20.0}
    ses = session_shapes(nod, milan, lte, app, w)
    m = _week(milan["hour_weekday"], milan["hour_weekend"], milan["day_of_week"])
    a = ses["_alpha"]
    assert 0 < a < 1
    assert _tv(_total(ses, w), m) <= ALL_RECORDS_TV_GOAL < ses["_tv_app_only"]
    # a step less of Milan would leave the goal: the blend is the smallest that meets it
    resid = (sum(w.values()) * m - w["voice"] * _week(nod["voice"]["hour_weekday"], nod["voice"]["hour_weekend"],
                                                      milan["day_of_week"])
             - w["sms"] * _week(nod["sms"]["hour_weekday"], nod["sms"]["hour_weekend"], milan["day_of_week"])) / w["data"]
    less = (1 - (a - 0.01)) * _week(app, app, milan["day_of_week"]) + (a - 0.01) * resid
    ses_less = {**ses, "data": {"hour_weekday": less[:5].mean(0), "hour_weekend": less[5:].mean(0),
                                "day_of_week": less.mean(1)}}
    assert _tv(_total(ses_less, w), m) > ALL_RECORDS_TV_GOAL
    # voice and SMS keep their own hours; the general population takes Milan's week, students their own
    for s in ("voice", "sms"):
        assert np.array_equal(ses[s]["hour_weekday"], nod[s]["hour_weekday"])
        assert np.array_equal(ses[s]["day_of_week"], milan["day_of_week"])
    stu = session_shapes(nod, milan, lte, app, w, "students")
    assert np.array_equal(stu["voice"]["day_of_week"], nod["voice"]["day_of_week"])
    assert np.array_equal(stu["data"]["hour_weekday"], ses["data"]["hour_weekday"])


def test_voice_and_sms_outweighing_milan_is_refused():
    nod, milan, lte = _inputs(1)
    with pytest.raises(ValueError, match="not positive"):
        session_shapes(nod, milan, lte, np.ones(24), {"voice": 30.0, "sms": 30.0, "data": 1.0})


def test_record_weights_count_both_legs_of_on_net_calls_and_populations_differ_in_sms_only():
    cph = {"sms_call_ratio": 6.0}
    gen, stu = population_rates("general", cph), population_rates("students", cph)
    w = record_weights(gen)
    assert w["voice"] == pytest.approx(gen["voice_per_day"] * 1.7 + gen["voice_in_offnet_per_day"])
    assert gen["voice_per_day"] == stu["voice_per_day"] == pytest.approx(74 * 12 / 365)
    assert stu["sms_per_day"] == pytest.approx(6.0 * stu["voice_per_day"])
    assert gen["sms_per_day"] / gen["voice_per_day"] == pytest.approx(0.2209, abs=1e-3)
    with pytest.raises(ValueError, match="population"):
        population_rates("pensioners", cph)


def test_embedded_profiles_carry_rates_gate_and_fit_part():
    gen, stu = load_profile("general"), load_profile("students")
    assert load_profile("default").raw == gen.raw
    assert gen.raw["fit_part"]["part"] == "fit" and gen.gate_required and "sms_call_ratio" in stu.gate_required
    assert "sms_call_ratio" not in gen.gate_required
    assert stu.rates["sms_per_day"] > 10 * gen.rates["sms_per_day"]
    assert 0 < gen.call_short_share < 0.5 and gen.call_short_log_mu < gen.call_duration_log_mu


def test_volume_factor_times_count_shape_is_the_volume_shape():
    prof = load_profile("default")
    vol, data = prof.volume, prof.shapes["data"]
    assert vol is not None
    for wd in range(7):
        for h in range(24):
            assert prof.data_volume_factor(h, wd) * data.factor(h, wd) == pytest.approx(vol.factor(h, wd))
    # mean volume over the week is unchanged: sum of count x factor = sum of the volume shape
    tot = sum(prof.data_volume_factor(h, wd) * data.factor(h, wd) for wd in range(7) for h in range(24))
    assert tot == pytest.approx(168.0, rel=1e-9)


def test_profile_without_a_volume_table_keeps_one_volume_and_zero_data_hours_are_refused():
    raw = dict(load_profile("default").raw)
    raw.pop("data_volume")
    assert parse_profile(raw, "p.toml").data_volume_factor(20, 1) == 1.0
    raw = dict(load_profile("default").raw)
    raw["services"] = {**raw["services"], "data": {**raw["services"]["data"], "hour_weekday": [0.0] + [1.0] * 23}}
    with pytest.raises(InputDataError, match="services.data: every hour and day must be > 0"):
        parse_profile(raw, "p.toml")


def test_run_data_volume_per_session_follows_the_hourly_factor(small_run):
    """The log volume of a data session is mu + log(factor of its hour) + a mean-zero level: the
    mean log volume per hour, regressed on the log factor over the day, has slope 1 and intercept
    mu. (A regression over the 24 hours, not a ratio of two hours' medians: a subscriber's level
    persists over the hour, so one hour's median from 4,000 subscribers moves by about 15% from
    seed to seed; slope and intercept stay within 0.04 and 0.07 over seeds 1-8.)"""
    sc, out, _ = small_run
    prof = load_profile("default")
    cdr = read(out, "cdr")
    data = cdr.filter(pc.and_(pc.equal(cdr["service"], "data"), pc.equal(cdr["outcome"], "completed")))
    hours = pc.hour(data["start_time"]).to_numpy()  # local time: the column carries the network's zone
    log_vol = np.log((data["bytes_up"].to_numpy() + data["bytes_down"].to_numpy()).astype(float))
    wd = 1  # the small run is one Tuesday
    mean = np.array([log_vol[hours == h].mean() for h in range(24)])
    log_factor = np.log([prof.data_volume_factor(h, wd) for h in range(24)])
    assert np.ptp(log_factor) > 2.0  # the LTE shape: a wide range to fit on
    slope, intercept = np.polyfit(log_factor, mean, 1)
    assert slope == pytest.approx(1.0, abs=0.1)
    assert intercept == pytest.approx(sc.behaviour.data_volume_log_mu, abs=0.2)
    assert np.abs(mean - (intercept + slope * log_factor)).max() < 0.4
