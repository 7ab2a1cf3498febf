"""Session count shapes and the data volume per session by hour (profile [data_volume]).

The default profile's data sessions fill Milan's all-services load after the voice and SMS
records (calibration/derive_defaults.py::session_shapes), and the volume per session follows
the LTE volume shape over that count shape, so data volume per hour keeps the LTE shape.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from telcosim.calibration.derive_defaults import _week, record_weights, session_shapes
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


def test_all_records_follow_milan_hour_by_hour_of_week():
    nod, milan, lte = _inputs()
    w = {"voice": 3.0, "sms": 4.0, "data": 20.0}
    ses = session_shapes(nod, milan, lte, w)
    total = sum(w[s] * _week(ses[s]["hour_weekday"], ses[s]["hour_weekend"], ses[s]["day_of_week"])
                for s in ("voice", "sms", "data"))
    assert total / sum(w.values()) == pytest.approx(_week(milan["hour_weekday"], milan["hour_weekend"],
                                                          milan["day_of_week"]), rel=1e-9)
    # voice and SMS keep their own hours but take Milan's week
    for s in ("voice", "sms"):
        assert np.array_equal(ses[s]["hour_weekday"], nod[s]["hour_weekday"])
        assert np.array_equal(ses[s]["day_of_week"], milan["day_of_week"])


def test_voice_and_sms_outweighing_milan_is_refused():
    nod, milan, lte = _inputs(1)
    with pytest.raises(ValueError, match="not positive"):
        session_shapes(nod, milan, lte, {"voice": 30.0, "sms": 30.0, "data": 1.0})


def test_record_weights_count_both_legs_of_on_net_calls():
    w = record_weights()
    assert w["voice"] == pytest.approx(2.5 * 1.7 + 1.0) and w["data"] == 15.0


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
