"""Sessions (sim/sessions.py, the sessions kernel): a subscriber's data-volume level
(behaviour.data_volume_level_*, data_volume_habit_share): its correlation over hours and days, the
per-session volume law it leaves unchanged, and the same bytes whatever the chunk size."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from telcosim.cli import main
from telcosim.scenarios.runner import run
from telcosim.sim.kernels.volume_level import volume_levels
from telcosim.sim.streams import kernel_key
from tests.conftest import read, small_scenario


def _levels(hours, rho, habit, n=6000):
    key = kernel_key(7, "sessions")
    return np.array([volume_levels(key, s, 0, max(hours) + 1, rho, habit)[hours] for s in range(n)])


def test_level_is_unit_normal_with_its_hourly_and_daily_correlation():
    rho, habit = math.exp(-1 / 1.5), 0.4
    v = _levels([30, 31, 33, 54], rho, habit)
    assert abs(v.mean()) < 0.05 and abs(v.std() - 1) < 0.03
    c = np.corrcoef(v.T)
    # next hour: rho for both parts (the habit's neighbouring hours of day are correlated rho too)
    assert c[0, 1] == pytest.approx(rho, abs=0.03)
    assert c[0, 2] == pytest.approx(rho ** 3, abs=0.03)
    # a day later: only the habit remains (the transient part has decayed to rho^24)
    assert c[0, 3] == pytest.approx(habit + (1 - habit) * rho ** 24, abs=0.03)
    none = _levels([30, 54], rho, 0.0)
    assert abs(np.corrcoef(none.T)[0, 1]) < 0.04
    # A slow habit (its sum runs once around the day, every draw used once) keeps unit variance,
    # so the mean volume e^(mu + sigma^2 / 2) is kept.
    slow = _levels([3, 40], math.exp(-1 / 8), 1.0, n=20000)
    assert abs(slow.std() - 1) < 0.015


def _volumes(out):
    cdr = read(out, "cdr").to_pandas()
    data = cdr[(cdr["service"] == "data") & (cdr["outcome"] == "completed")]
    return data, np.log((data["bytes_up"] + data["bytes_down"]).to_numpy(float))


LEVEL = {"behaviour.data_volume_level_share": 0.9, "behaviour.data_volume_level_hours": 2.0,
         "behaviour.data_volume_habit_share": 0.5, "population.subscribers": 700, "network.sites": 10}


def test_level_keeps_the_session_law_and_the_bytes_for_any_chunk_size(tmp_path):
    sc = small_scenario(**LEVEL)
    run(sc, tmp_path / "a", chunk_subscribers=700)
    run(sc, tmp_path / "b", chunk_subscribers=89)
    files = [json.loads((tmp_path / d / "manifest.json").read_text())["files"] for d in ("a", "b")]
    assert {k: v["sha256"] for k, v in files[0].items()} == {k: v["sha256"] for k, v in files[1].items()}
    run(small_scenario(**{**LEVEL, "behaviour.data_volume_level_share": 0.0}), tmp_path / "off")
    data, lv = _volumes(tmp_path / "a")
    _, lv0 = _volumes(tmp_path / "off")
    # Each session still lognormal(mu, sigma) (the run's hourly mu shift aside): same spread with
    # the level as without it.
    assert len(lv) > 5000 and np.std(lv) == pytest.approx(np.std(lv0), rel=0.05)
    # ... but with it a subscriber's sessions in one hour share a level: the within-(subscriber, hour)
    # spread is smaller than the overall one.
    data = data.assign(lv=lv, hour=data["start_time"].dt.floor("h"))
    g = data.groupby(["subscriber_id", "hour"])["lv"]
    within = float(np.sqrt((g.transform(lambda x: x - x.mean()) ** 2).sum() / (len(data) - g.ngroups)))
    assert within < 0.6 * np.std(lv)


@pytest.mark.parametrize("setting, needle", [
    ("behaviour.data_volume_level_share=1.5", "data_volume_level_share"),
    ("behaviour.data_volume_level_hours=0", "data_volume_level_hours"),
    ("behaviour.data_volume_habit_share=-0.1", "data_volume_habit_share"),
])
def test_bad_level_settings_are_refused(tmp_path, capsys, setting, needle):
    code = main(["run", "--out", str(tmp_path / "r"), "--subscribers", "50", "--quiet", "--set", setting])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and needle in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("hours", [8.0, 1.0, 0.2])
def test_the_carried_level_is_the_ar1_and_the_daily_sum(hours):
    """sessions_epoch carries the level's two parts and advances them by one keyed draw an hour
    (_level_step): the transient is the AR(1) with its own keyed innovations, the habit equals the
    direct sum around the day (_ar_sum) up to rounding, for a correlation time long enough that
    the sums hit their 48 / 24 caps and short enough that they do not."""
    from telcosim.sim.kernels.volume_level import (
        _ar_sum,
        _keyed_normal,
        _level_step,
        ar_terms,
        level_seeds,
    )

    key, rho = kernel_key(7, "sessions"), math.exp(-1.0 / hours)
    seed_t, seed_h = level_seeds(key, 5)
    start = 1_000_000
    k, norm = ar_terms(rho, 0)
    v = want = _ar_sum(seed_t, start, rho, 0)
    for h in range(start + 1, start + 200):
        v = _level_step(seed_t, h, v, rho, k, norm, 0)
        want = rho * want + math.sqrt(1 - rho * rho) * _keyed_normal(seed_t, h, 0)
        assert v == want
    k, norm = ar_terms(rho, 24)
    v = _ar_sum(seed_h, start % 24, rho, 24)
    for h in range(start + 1, start + 200):
        v = _level_step(seed_h, h % 24, v, rho, k, norm, 24)
        assert v == pytest.approx(_ar_sum(seed_h, h % 24, rho, 24), abs=1e-9)
