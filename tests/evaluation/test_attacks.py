"""Privacy attacks (evaluation/attacks.py): the statistics, the per-person-day records, and the
controls: a deliberately leaky synthetic set (the training people's traces copied with small
jitter) must be flagged as high risk by every attack, and by the canary audit a deliberately
broken DP release; an honest set (other people of the same kind) must pass. Run on generated
people (no shared data needed) and on StudentLife against a small run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from telcosim.evaluation import attacks as A
from telcosim.realdata.readers import LocationTraces
from tests.conftest import SHARED_DATA

needs_data = pytest.mark.skipif(not (SHARED_DATA / "README.md").is_file(), reason="shared data not present")
ATTACKS = ("dcr", "mia", "singling_out", "linkability", "inference", "unicity")


def fake_people(n: int, days: int, seed: int) -> LocationTraces:
    """People with a home, a daytime place and an evening place (each within ~6 km), a fix every
    20 minutes with 20 m GPS noise: nights at home, 9-17 h at the day place, 18-21 h at the evening
    place on some days; around Hanover NH (lat 43.7)."""
    rng = np.random.default_rng(seed)
    t0 = np.datetime64("2013-04-01T00:00:00", "s")
    users, time, lat, lon = [], [], [], []
    km_lat, km_lon = 1 / 111.2, 1 / (111.2 * math.cos(math.radians(43.7)))
    for u in range(n):
        home, work, eve = (rng.uniform(-3, 3, 2) for _ in range(3))
        for d in range(days):
            out = rng.random() < 0.5
            for k in range(72):
                h = k // 3
                place = work if 9 <= h < 17 else (eve if out and 18 <= h < 22 else home)
                x, y = place + rng.normal(0, 0.02, 2)
                users.append(u)
                time.append(t0 + np.timedelta64(d * 86400 + k * 1200 + int(rng.integers(0, 60)), "s"))
                lat.append(43.7 + y * km_lat)
                lon.append(-72.29 + x * km_lon)
    return LocationTraces(path=f"fake people seed {seed}", users=[f"p{i:02d}" for i in range(n)],
                          user=np.array(users, np.int64), time=np.array(time, "datetime64[s]"),
                          lat=np.array(lat), lon=np.array(lon), accuracy=np.full(len(lat), 10.0),
                          time_zone="UTC")


def test_wilson_risk_clopper_pearson_auc():
    p, lo, hi = A.wilson(0, 10)
    assert p == 0 and lo == 0 and hi == pytest.approx(0.2775, abs=1e-3)
    p, lo, hi = A.wilson(50, 100)
    assert lo == pytest.approx(1 - hi) and lo == pytest.approx(0.4038, abs=1e-3)
    r = A.risk((100, 1000), (100, 1000))
    assert r["value"] == pytest.approx(0.0, abs=1e-12) and r["low"] == 0 and r["high"] > 0
    r = A.risk((900, 1000), (100, 1000))
    assert r["value"] == pytest.approx((0.8987 - 0.1013) / (1 - 0.1013), abs=2e-3) and r["low"] > 0.8
    assert A.clopper_pearson(0, 100)[1] == pytest.approx(1 - 0.025 ** (1 / 100), rel=1e-6)
    assert A.auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert A.auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5


def test_epsilon_lower_bound():
    rng = np.random.default_rng(1)
    same = A.epsilon_lower_bound(rng.normal(0, 1, 400), rng.normal(0, 1, 400))
    assert same["epsilon_lower_bound"] < 0.6
    apart = A.epsilon_lower_bound(np.ones(400), np.zeros(400))
    # no error on 200 + 200 held-out trials: bounded only by Clopper-Pearson at 90% per rate
    fpr = A.clopper_pearson(0, 200, 0.90)[1]
    assert apart["epsilon_lower_bound"] == pytest.approx(math.log((1 - fpr) / fpr), rel=1e-9)
    assert apart["epsilon_lower_bound"] > 4


def test_records_of_a_person_who_stays_home():
    t0 = np.datetime64("2013-04-02T00:00:00", "s")  # a Tuesday
    n = 144
    tr = A.Trajectories("x", ["a"], np.zeros(n, np.int64), t0 + np.arange(n) * 600, np.full(n, 1.1),
                        np.full(n, -0.6), np.ones(n, bool))
    r = A.records(tr)
    assert len(r) == 1
    row = r.iloc[0]
    assert row.rg_km == pytest.approx(0) and row.distinct_areas == 1 and row.top_share == 1
    assert row.move_share == 0 and row.active_hours == 24 and row.weekday == 1
    assert row.night_x == pytest.approx(1.1) and row.day_y == pytest.approx(-0.6)
    assert row.home_area == row.day_area == 1 * 1_000_003 + (-1)
    # fewer than MIN_SLOTS samples (carried at most an hour): no record
    few = A.Trajectories("x", ["a"], np.zeros(2, np.int64), t0 + np.array([0, 36000]), np.zeros(2), np.zeros(2),
                         np.ones(2, bool))
    assert len(A.records(few)) == 0


@pytest.fixture(scope="module")
def fake_real():
    return fake_people(40, 8, seed=11)


def _leaky(real_loc, seed=A.SPLIT_SEED):
    real = A.from_location_traces(real_loc)
    train, _ = A.split_persons(real, seed)
    return A.jitter_copy(real.subset(train))


def test_leaky_copy_is_flagged_by_every_attack_generated_people(fake_real):
    doc = A.evaluate_privacy(fake_real, _leaky(fake_real), epsilon=4.0, canary_trials=1000, broken_canary=True)
    for name in ATTACKS + ("canary",):
        assert doc[name]["status"] == "fail", (name, doc[name])
    assert doc["summary"]["high_risk"] == list(ATTACKS) + ["canary"]
    assert doc["dcr"]["share_closer_to_training"] > 0.8 and doc["mia"]["auc"] > 0.8
    assert doc["singling_out"]["multivariate"]["risk"]["low"] > A.RISK_LIMIT
    assert doc["canary"]["epsilon_lower_bound"] > doc["canary"]["claimed_epsilon"]


def test_other_people_pass_generated_people(fake_real):
    other = A.from_location_traces(fake_people(100, 3, seed=12))
    doc = A.evaluate_privacy(fake_real, other, epsilon=1.0, canary_trials=100)
    for name in ATTACKS + ("canary",):
        assert doc[name]["status"] == "pass", (name, doc[name])
    assert doc["singling_out"]["multivariate"]["attacks"] == A.N_ATTACKS
    assert doc["records"]["training"] == 20 * 8 and doc["ledger"]["present"] is False


def test_ledger_and_too_few_people(fake_real):
    led = {"file": "/x/city.privacy.json", "sha256": "ab", "ledger": {"spent": {"epsilon": 1.0, "delta": 0.0}}}
    s = A.ledger_section({"privacy_ledger": led})
    assert s["present"] and s["ledger"]["spent"]["epsilon"] == 1.0
    tiny = fake_people(3, 2, seed=1)
    with pytest.raises(A.AttackError, match="at least 4"):
        A.evaluate_privacy(tiny, A.from_location_traces(tiny), canary_trials=0)


@pytest.fixture(scope="module")
def studentlife():
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip("shared data not present")
    from telcosim.calibration import derive_defaults as dd
    from telcosim.realdata import readers as R

    return R.read_location_traces(SHARED_DATA / "studentlife_gps", tz=dd.STUDENTLIFE_TZ)


@needs_data
def test_leaky_copy_is_flagged_by_every_attack_studentlife(studentlife):
    doc = A.evaluate_privacy(studentlife, _leaky(studentlife), epsilon=4.0, canary_trials=1000, broken_canary=True,
                             n_attacks=1000)
    for name in ATTACKS + ("canary",):
        assert doc[name]["status"] == "fail", (name, doc[name])
    assert doc["records"]["training"] > 800 and doc["linkability"]["attacks"] > 800


@needs_data
def test_small_run_passes_against_studentlife(studentlife, small_run):
    _, run_dir, _ = small_run
    syn = A.from_run(run_dir, max_persons=500)
    assert len(syn.persons) == 500 and not syn.active.all()  # periodic updates are not activity
    doc = A.evaluate_privacy(studentlife, syn, canary_trials=100, n_attacks=1000,
                             manifest={"privacy_ledger": None})
    for name in ATTACKS + ("canary",):
        assert doc[name]["status"] == "pass", (name, doc[name])
    assert doc["records"]["synthetic"] == 500
