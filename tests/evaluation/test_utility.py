"""TSTR cell-load forecasting (evaluation/utility.py): features, the ratio rule, a control series
that must fail it, a run too short to learn from, and the real LTE / Milan sets end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from telcosim.evaluation import utility as U
from tests.conftest import SHARED_DATA

needs_data = pytest.mark.skipif(not (SHARED_DATA / "README.md").is_file(), reason="shared data not present")


def _series(n_series: int, days: int, seed: int, shuffle: bool = False) -> U.Series:
    """Daily-cycle load with AR(1) noise per series (x the series' mean); ``shuffle`` permutes each
    series' hours: the same values, no temporal structure (the control)."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-03-04", periods=24 * days, freq="1h")
    base = 1 + 0.8 * np.sin(2 * np.pi * (idx.hour.to_numpy() - 9) / 24)
    y = np.empty((n_series, len(idx)))
    for i in range(n_series):
        e = np.zeros(len(idx))
        for t in range(1, len(idx)):
            e[t] = 0.7 * e[t - 1] + rng.normal(0, 0.15)
        y[i] = np.maximum(base * (1 + 0.3 * (idx.day_of_week.to_numpy() >= 5)) + e, 0.01)
        if shuffle:
            y[i] = rng.permutation(y[i])
    return U.Series(U.normalise(y), idx.hour.to_numpy(), idx.day_of_week.to_numpy(), [str(i) for i in range(n_series)])


def test_lags_and_design_rows():
    assert U.lags_for(1) == (1, 2, 3, 24, 168)
    assert U.lags_for(24) == (24, 25, 26, 48, 168)
    idx = pd.date_range("2024-03-04", periods=30, freq="1h")  # a Monday
    y = np.arange(30, dtype=float)[None, :]
    y[0, 27] = np.nan
    s = U.Series(y, idx.hour.to_numpy(), idx.day_of_week.to_numpy(), ["a"])
    X, tgt, lag = U.design(s, (1, 24))
    # targets at hours 24..29, less 27 (missing) and 28 (its lag 1 is missing)
    assert tgt.tolist() == [24.0, 25.0, 26.0, 29.0]
    assert lag[:, 0].tolist() == [23.0, 24.0, 25.0, 28.0] and lag[:, 1].tolist() == [0.0, 1.0, 2.0, 5.0]
    assert X.shape == (4, 2 + 31)
    assert X[0, 2 + 0] == 1 and X[0, 2 + 24 + 1] == 1  # hour 0, Tuesday


def test_same_process_passes_and_shuffled_hours_fail():
    real_train, real_test = _series(6, 28, 1), _series(6, 28, 2)
    good = U.forecast_task(_series(20, 14, 3), real_train, real_test, 1)
    assert good["status"] == "pass" and good["ratio_mae"] <= U.RATIO_LIMIT
    assert good["real_trained"]["mae"] < good["seasonal_naive"]["mae"]  # the model learns something
    bad = U.forecast_task(_series(20, 14, 3, shuffle=True), real_train, real_test, 1)
    assert bad["status"] == "fail" and bad["ratio_mae"] > 1.5 * U.RATIO_LIMIT
    day = U.forecast_task(_series(20, 14, 3), real_train, real_test, 24)
    assert day["lags_h"] == [24, 25, 26, 48, 168] and day["status"] == "pass"


def test_short_run_drops_lags_or_is_not_evaluated():
    real_train, real_test = _series(3, 28, 1), _series(3, 28, 2)
    t = U.forecast_task(_series(10, 7, 3), real_train, real_test, 1)
    assert t["lags_h"] == [1, 2, 3, 24] and t["lags_dropped_h"] == [168] and "dropped" in t["note"]
    assert math.isfinite(t["ratio_mae"])
    t = U.forecast_task(_series(10, 2, 3), real_train, real_test, 24)
    assert t["status"] == "not_evaluated" and "needs at least" in t["note"]


def test_one_day_run_is_not_evaluated_and_outage_detector_not_asked_for(small_run):
    _, run_dir, _ = small_run
    from telcosim.realdata.readers import CellSeries

    idx = pd.date_range("2024-01-01", periods=24 * 30, freq="1h")
    cells = CellSeries("mem", {"a": pd.Series(1.0 + np.sin(np.arange(len(idx))), index=idx)})
    doc = U.evaluate_utility(run_dir, [cells])
    assert set(doc["tasks"]) == {"next_hour.cells", "next_day.cells"}
    assert all(t["status"] == "not_evaluated" for t in doc["tasks"].values())
    assert doc["summary"]["evaluated"] == 0
    assert doc["outage_detector"]["status"] == "not_evaluated"
    assert U.evaluate_utility(run_dir, [])["summary"]["note"].startswith("no real set")


@pytest.fixture(scope="module")
def four_day_run(tmp_path_factory):
    from telcosim.scenarios.runner import run
    from tests.conftest import small_scenario

    out = tmp_path_factory.mktemp("runs4") / "four"
    run(small_scenario(**{"time.days": 4, "population.subscribers": 2000}), out)
    return out


def test_run_series_sums_kpis_per_hour(four_day_run):
    import pyarrow.parquet as pq

    s = U.run_series(four_day_run, "data")
    assert s.y.shape == (90, 96) and s.hour[:3].tolist() == [0, 1, 2]
    assert np.allclose(np.nanmean(s.y, axis=1)[np.isfinite(np.nanmean(s.y, axis=1))], 1.0)
    k = pq.read_table(four_day_run / "cell_kpis.parquet").to_pandas()
    assert k.data_volume_mb.sum() > 0 and len(k) == 90 * 96 * 4  # quarter-hour KPIs summed to hours


@needs_data
def test_against_lte_and_milan(four_day_run):
    from telcosim.realdata import readers as R

    ds = [R.read_cell_series(SHARED_DATA / "lte_cells"),
          R.read_activity(SHARED_DATA / "milan_hourly" / "square_hourly_load.csv")]
    doc = U.evaluate_utility(four_day_run, ds, holidays=["2013-12-25"])
    assert set(doc["tasks"]) == {"next_hour.cells", "next_day.cells", "next_hour.activity", "next_day.activity"}
    for t in doc["tasks"].values():
        assert t["status"] in ("pass", "fail") and t["lags_dropped_h"] == [168]
        assert t["ratio_mae"] == pytest.approx(t["synthetic_trained"]["mae"] / t["real_trained"]["mae"])
        assert t["rows"]["real_test"] > 1000
    assert doc["sets"]["cells"]["real_train_series"] == 3 and doc["sets"]["activity"]["real_test_series"] == 100


# --------------------------------------------------------------------------
# what makes the run's cells teach a forecaster: persistence around the weekly shape
# --------------------------------------------------------------------------


def _persistent_series(n: int, days: int, seed: int, phi: float, shape_sd: float) -> U.Series:
    """Daily cycle x (1 + an own daily shape of sd ``shape_sd``) + AR(1) noise (lag-1 ``phi``,
    sd 0.3), each series x its mean."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-03-04", periods=24 * days, freq="1h")
    base = 1 + 0.8 * np.sin(2 * np.pi * (idx.hour.to_numpy() - 9) / 24)
    y = np.empty((n, len(idx)))
    for i in range(n):
        own = rng.normal(0, shape_sd, 24)[idx.hour.to_numpy()]
        e = np.zeros(len(idx))
        e[0] = rng.normal(0, 0.3)
        for t in range(1, len(idx)):
            e[t] = phi * e[t - 1] + rng.normal(0, 0.3 * np.sqrt(1 - phi ** 2))
        y[i] = base + own + e
    return U.Series(U.normalise(y), idx.hour.to_numpy(), idx.day_of_week.to_numpy(), [str(i) for i in range(n)])


def test_persistence_stats_recover_the_autocorrelation_and_the_own_shape():
    from telcosim.calibration.derive_defaults import persistence_stats

    s = _persistent_series(200, 14, 5, 0.5, 0.2)
    st = persistence_stats(s.y, s.hour, s.weekday)
    assert st["acf1"] == pytest.approx(0.5, abs=0.07) and st["acf2"] == pytest.approx(0.25, abs=0.07)
    assert st["shape_sd"] == pytest.approx(0.2, rel=0.15) and st["resid_sd"] == pytest.approx(0.3, rel=0.15)
    flat = _persistent_series(200, 14, 6, 0.0, 0.0)
    st = persistence_stats(flat.y, flat.hour, flat.weekday)
    assert abs(st["acf1"]) < 0.05 and st["shape_sd"] < 0.05  # no persistence, no own shape: none found


def test_persistent_training_series_transfer_better():
    """The mechanism behind the simulator's data-volume level: trained on series with an own
    shape and autocorrelated noise, like the "real" ones, the forecaster transfers; trained on
    white-noise series around one common shape, it does clearly worse."""
    real_train, real_test = _persistent_series(6, 28, 1, 0.5, 0.2), _persistent_series(6, 28, 2, 0.5, 0.2)
    like = U.forecast_task(_persistent_series(40, 14, 3, 0.5, 0.2), real_train, real_test, 1)
    white = U.forecast_task(_persistent_series(40, 14, 3, 0.0, 0.0), real_train, real_test, 1)
    assert like["ratio_mae"] <= 1.1 and white["ratio_mae"] > like["ratio_mae"] + 0.1


@needs_data
def test_lte_persistence_figures():
    """The LTE cells' figures the data-volume level defaults are fitted to (docs/evaluate.md): the
    fit part's (28-day blocks of realdata.splits). The knobs were fitted to all rows' figures before
    the split; those differ from the fit part's by less than 0.011 each, under the sweeps' noise."""
    from telcosim.calibration.derive_defaults import lte_volume_persistence

    st = lte_volume_persistence(SHARED_DATA)
    assert st["windows"] == 106
    assert st["acf1"] == pytest.approx(0.328, abs=0.002) and st["decay_per_hour"] == pytest.approx(0.398, abs=0.002)
    assert st["shape_sd"] == pytest.approx(0.221, abs=0.002) and st["resid_sd"] == pytest.approx(0.682, abs=0.002)
    whole = lte_volume_persistence(SHARED_DATA, part="all")
    assert whole["windows"] == 153
    assert max(abs(whole[k] - st[k]) for k in ("acf1", "decay_per_hour", "shape_sd", "resid_sd")) < 0.011


def _daily_series(rng, n_series: int, days: int, noise: float) -> U.Series:
    """Series with a daily cycle (peak in the afternoon) and noise, hours from a Monday 00:00."""
    hours = np.arange(days * 24)
    cycle = 1.0 + 0.8 * np.sin(2 * np.pi * (hours % 24 - 9) / 24)
    y = cycle[None, :] * rng.uniform(0.5, 2.0, (n_series, 1)) + rng.normal(0, noise, (n_series, len(hours)))
    return U.Series(np.clip(y, 0.01, None), hours % 24, (hours // 24) % 7, [f"s{i}" for i in range(n_series)])


def test_forecaster_trained_on_the_real_series_themselves_passes():
    """Known answer: synthetic training series that are the real training split give the same
    model, so the MAE ratio is exactly 1 and the task passes."""
    rng = np.random.default_rng(0)
    train, test = _daily_series(rng, 20, 21, 0.05), _daily_series(rng, 20, 21, 0.05)
    r = U.forecast_task(train, train, test, horizon=1)
    assert r["ratio_mae"] == pytest.approx(1.0)
    assert r["status"] == "pass"


def test_forecaster_trained_on_noise_fails():
    """Clearly different synthetic data (flat level plus large noise, no daily cycle) teaches a
    forecaster that misses the real cycle: MAE ratio well above the limit, the task fails."""
    rng = np.random.default_rng(0)
    train, test = _daily_series(rng, 20, 21, 0.05), _daily_series(rng, 20, 21, 0.05)
    hours = np.arange(21 * 24)
    noise = U.Series(np.clip(1.0 + rng.normal(0, 1.0, (20, len(hours))), 0.01, None), hours % 24,
                     (hours // 24) % 7, [f"n{i}" for i in range(20)])
    r = U.forecast_task(noise, train, test, horizon=1)
    assert r["ratio_mae"] > 2 * U.RATIO_LIMIT
    assert r["status"] == "fail"
