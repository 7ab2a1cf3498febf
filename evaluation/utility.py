"""ML utility of a run: train on synthetic, test on real (TSTR) cell-load forecasting.

The question: is a forecaster fitted to a run's cell load as good on *real* cells as the same
forecaster fitted to real cells? For every forecasting task (next hour, next day) and every real
set given (``cells``: the LTE cells' hourly data volume; ``activity``: the Milan squares' hourly
load), two copies of one model are fitted:

* **synthetic-trained**: on every cell of the run (``cell_kpis.parquet``, summed per local hour:
  ``data_volume_mb`` against LTE, voice attempts + SMS + data sessions against Milan, the closest
  thing the KPIs have to Milan's load of all services);
* **real-trained**: on the real set's training split (LTE: the first 75% of the year, the three
  cells are too few to split by cell; Milan: a seeded half of the squares);

and both are scored on the real test split (LTE: the last 25% of the year; Milan: the other half
of the squares). Every series is divided by its mean (LTE: the mean of its training part; Milan and
the run: the series' own mean), so the load is "x the cell's mean" whatever the cell's size.

The model (:func:`make_model`) is a ridge regression (scikit-learn ``Ridge``, alpha 1) on lag
features and the calendar: for horizon H (1 h or 24 h) the lags H, H+1, H+2, the next multiple of
24 h at or after H+1 (24 for H=1, 48 for H=24) and 168 h, one-hot hour of day and one-hot weekday
(local time). A lag the run is too short to learn from (fewer than :data:`MIN_TARGET_HOURS` target
hours per cell left) is dropped for both copies, and the document says so; when the horizon's own
lag cannot be kept the task is ``not_evaluated``. ``HistGradientBoostingRegressor`` is available
as ``model="hgb"``.

Reported per task and set: MAE and sMAPE of both copies on the real test split, and their
**ratio synthetic-trained / real-trained**; a seasonal-naive forecast (the value H hours before for
next hour, 24 h before for next day) is given for scale. A task **passes** when the MAE ratio is
at most :data:`RATIO_LIMIT` (1.25).

The second utility task of issue #6, a step-change detector trained on ``telcosim augment``
outage episodes and tested on real step changes, is in :mod:`evaluation.detection`; evaluate
runs it with ``--utility-augment`` and ``--utility-steps`` (:func:`evaluate_outage_detector`).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .fidelity import run_window

RATIO_LIMIT = 1.25
MIN_TARGET_HOURS = 48  # target hours per synthetic series left after the largest lag
LTE_TEST_SHARE = 0.25  # last quarter of the LTE year is the real test split
SPLIT_SEED = 20240305
HORIZONS = {"next_hour": 1, "next_day": 24}
MODELS = ("ridge", "hgb")
OUTAGE_NOTE = ("outage detector trained on 'telcosim augment' episodes: not evaluated; give "
               "--utility-augment AUGMENT_DIR and --utility-steps PATH (real step changes, e.g. ran_updates)")
DETECTOR_RATIO_LIMIT = 0.8  # ROC AUC trained on synthetic >= 0.8 x trained on real


def evaluate_outage_detector(result: dict, augment_dir, steps_dir) -> dict:
    """Status of the step-change detection task (:func:`evaluation.detection.detection_task`)."""
    ok = result["auc_ratio"] >= DETECTOR_RATIO_LIMIT
    return {**result, "status": "pass" if ok else "fail", "augment": str(augment_dir), "real": str(steps_dir),
            "rule": f"ROC AUC trained on synthetic >= {DETECTOR_RATIO_LIMIT:g} x trained on real (held-out real carriers)",
            "note": (f"AUC {result['auc_trained_on_synthetic']:.3f} trained on {result['synthetic_windows']} synthetic "
                     f"windows vs {result['auc_trained_on_real']:.3f} trained on real; ratio {result['auc_ratio']:.3f}")}


class UtilityError(ValueError):
    """The run or a real set cannot be used for the utility tasks; ``problems``: one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------
# series
# --------------------------------------------------------------------------


class Series:
    """Hourly series: ``y`` (series x hours, NaN = missing), local ``hour`` (0..23) and ``weekday``
    (Mon=0) of each column, and a name per row."""

    def __init__(self, y: np.ndarray, hour: np.ndarray, weekday: np.ndarray, names: list[str]):
        self.y = np.asarray(y, float)
        self.hour = np.asarray(hour, np.int64)
        self.weekday = np.asarray(weekday, np.int64)
        self.names = list(names)

    @property
    def hours(self) -> int:
        return self.y.shape[1]

    def rows(self, idx) -> Series:
        idx = np.asarray(idx)
        return Series(self.y[idx], self.hour, self.weekday, [self.names[i] for i in idx])

    def cols(self, a: int, b: int) -> Series:
        return Series(self.y[:, a:b], self.hour[a:b], self.weekday[a:b], self.names)


def _calendar(index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(index.hour, np.int64), np.asarray(index.day_of_week, np.int64)


def normalise(y: np.ndarray, by: np.ndarray | None = None) -> np.ndarray:
    """Each row divided by the mean of its finite values in ``by`` (default: itself); rows with
    no positive mean become NaN."""
    ref = y if by is None else by
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing row: NaN, handled below
        m = np.nanmean(np.where(np.isfinite(ref), ref, np.nan), axis=1) if ref.shape[1] else np.full(len(ref), np.nan)
    m = np.where(np.isfinite(m) & (m > 0), m, np.nan)
    return y / m[:, None]


def run_series(run_dir: Path, what: str) -> Series:
    """The run's per-cell hourly load from ``cell_kpis.parquet``: ``what`` = "data"
    (data_volume_mb) or "all" (voice_attempts + sms + data_sessions), summed per local hour."""


    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    window = run_window(manifest)
    cols = ["data_volume_mb"] if what == "data" else ["voice_attempts", "sms", "data_sessions"]
    k = pq.read_table(run_dir / "cell_kpis.parquet", columns=["interval_start", "cell_id", *cols])
    cells = np.sort(pq.read_table(run_dir / "cells.parquet", columns=["cell_id"]).column("cell_id").to_numpy())
    t = pd.Series(k.column("interval_start").to_pandas())
    if getattr(k.column("interval_start").type, "tz", None):
        t = t.dt.tz_convert(k.column("interval_start").type.tz).dt.tz_localize(None)
    h = (t.to_numpy(dtype="datetime64[s]") - window.t0).astype(np.int64) // 3600
    pos = np.searchsorted(cells, k.column("cell_id").to_numpy())
    v = sum(k.column(c).to_numpy().astype(float) for c in cols)
    ok = (h >= 0) & (h < window.hours)
    mat = np.bincount(pos[ok] * window.hours + h[ok], v[ok], minlength=len(cells) * window.hours)
    idx = pd.date_range(pd.Timestamp(window.t0), periods=window.hours, freq="1h")
    hour, wd = _calendar(idx)
    return Series(normalise(mat.reshape(len(cells), window.hours)), hour, wd, [str(c) for c in cells])


def _hol_mask(index: pd.DatetimeIndex, holidays) -> np.ndarray:
    if not holidays:
        return np.zeros(len(index), bool)
    hol = pd.DatetimeIndex(pd.to_datetime(list(holidays))).normalize()
    return np.asarray(index.normalize().isin(hol))


def lte_split(c, holidays=()) -> tuple[Series, Series, str]:
    """Real LTE cells (readers.CellSeries): (train, test, how) split in time, the last
    :data:`LTE_TEST_SHARE` of the hours for testing; each cell normalised by its training mean."""
    start = min(s.index.min() for s in c.series.values()).floor("D")
    end = max(s.index.max() for s in c.series.values())
    idx = pd.date_range(start, end, freq="1h")
    y = np.vstack([s[~s.index.duplicated()].reindex(idx).to_numpy(float) for s in c.series.values()])
    y[:, _hol_mask(idx, holidays)] = np.nan
    cut = int(round(len(idx) * (1 - LTE_TEST_SHARE)))
    y = normalise(y, by=y[:, :cut])
    hour, wd = _calendar(idx)
    s = Series(y, hour, wd, list(c.series))
    how = (f"time: train {idx[0].date()} .. {idx[cut - 1].date()}, test {idx[cut].date()} .. {idx[-1].date()} "
           f"({len(c.series)} cells; each normalised by its training mean)")
    return s.cols(0, cut), s.cols(cut, len(idx)), how


def milan_split(a, holidays=(), seed: int = SPLIT_SEED) -> tuple[Series, Series, str]:
    """Real Milan squares (readers.ActivityTable): (train, test, how) split by square, a seeded
    half each; each square normalised by its own mean. Holidays are left out (NaN)."""
    df = a.load if a.interval_s == 3600 else a.load.resample("1h").sum(min_count=1)
    idx = pd.date_range(df.index.min().floor("D"), df.index.max(), freq="1h")
    df = df.reindex(idx)
    y = np.array(df.to_numpy(float).T)
    y[:, _hol_mask(idx, holidays)] = np.nan
    hour, wd = _calendar(idx)
    s = Series(normalise(y), hour, wd, [str(c) for c in df.columns])
    perm = np.random.default_rng([seed, 1]).permutation(len(s.names))
    k = len(perm) // 2
    how = f"area: a seeded half of the {len(s.names)} squares for training, the other half for testing (seed {seed})"
    return s.rows(np.sort(perm[:k])), s.rows(np.sort(perm[k:])), how


# --------------------------------------------------------------------------
# features and model
# --------------------------------------------------------------------------


def lags_for(horizon: int) -> tuple[int, ...]:
    """Lags of the model for forecast horizon ``horizon`` hours (1: 1,2,3,24,168; 24: 24,25,26,48,168)."""
    day = 24 * math.ceil((horizon + 1) / 24)
    return tuple(sorted({horizon, horizon + 1, horizon + 2, day, 168}))


def design(s: Series, lags: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, naive_col) over every (series, hour) whose target and lags are all present: lag
    values, one-hot hour of day (24) and one-hot weekday (7)."""
    L = max(lags)
    n, T = s.y.shape
    if T <= L:
        return np.empty((0, len(lags) + 31)), np.empty(0), np.empty(0)
    tgt = s.y[:, L:]
    lagged = [s.y[:, L - lag:T - lag] for lag in lags]
    ok = np.isfinite(tgt)
    for m in lagged:
        ok &= np.isfinite(m)
    rows, cols = np.nonzero(ok)
    X_l = np.column_stack([m[rows, cols] for m in lagged]) if len(rows) else np.empty((0, len(lags)))
    tt = cols + L
    oh = np.zeros((len(rows), 31))
    oh[np.arange(len(rows)), s.hour[tt]] = 1.0
    oh[np.arange(len(rows)), 24 + s.weekday[tt]] = 1.0
    return np.hstack([X_l, oh]), tgt[rows, cols], X_l


def make_model(name: str = "ridge", seed: int = SPLIT_SEED):
    if name == "ridge":
        # lazy: scikit-learn is slow to import; only this task needs it
        from sklearn.linear_model import Ridge

        return Ridge(alpha=1.0)
    if name == "hgb":
        # lazy: scikit-learn is slow to import; only this task needs it
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, random_state=seed)
    raise ValueError(f"unknown model {name!r}; one of {', '.join(MODELS)}")


def smape(y: np.ndarray, p: np.ndarray) -> float:
    den = np.abs(y) + np.abs(p)
    v = np.where(den > 0, 2 * np.abs(y - p) / np.where(den > 0, den, 1), 0.0)
    return float(v.mean()) if len(v) else float("nan")


def _scores(y, p) -> dict[str, float]:
    return {"mae": float(np.mean(np.abs(y - p))) if len(y) else float("nan"), "smape": smape(y, p)}


def forecast_task(syn: Series, train: Series, test: Series, horizon: int, model: str = "ridge",
                  seed: int = SPLIT_SEED) -> dict[str, Any]:
    """One TSTR task: the same model fitted to ``syn`` and to ``train``, both scored on ``test``."""
    wanted = lags_for(horizon)
    lags = tuple(lag for lag in wanted if syn.hours - lag >= MIN_TARGET_HOURS)
    dropped = [lag for lag in wanted if lag not in lags]
    out: dict[str, Any] = {"horizon_h": horizon, "lags_h": list(lags), "lags_dropped_h": dropped,
                           "model": model, "status": "not_evaluated", "note": ""}
    if horizon not in lags:
        out["note"] = (f"the run spans {syn.hours} h; a {horizon} h forecast needs at least "
                       f"{horizon + 2 + MIN_TARGET_HOURS} h of synthetic series to learn from")
        return out
    if dropped:
        out["note"] = (f"lag(s) {', '.join(map(str, dropped))} h dropped for both models: the run spans "
                       f"{syn.hours} h, fewer than lag + {MIN_TARGET_HOURS} h")
    Xs, ys, _ = design(syn, lags)
    Xr, yr, _ = design(train, lags)
    Xt, yt, lag_t = design(test, lags)
    if not len(ys) or not len(yr) or not len(yt):
        out["note"] = "no complete rows (target and every lag present) in " + ", ".join(
            w for w, v in (("the run", ys), ("the real training split", yr), ("the real test split", yt)) if not len(v))
        return out
    m_syn = make_model(model, seed).fit(Xs, ys)
    m_real = make_model(model, seed).fit(Xr, yr)
    naive_lag = horizon if horizon < 24 else 24 * math.ceil(horizon / 24)
    naive = lag_t[:, lags.index(naive_lag)]
    s_syn, s_real = _scores(yt, m_syn.predict(Xt)), _scores(yt, m_real.predict(Xt))
    ratio = s_syn["mae"] / s_real["mae"] if s_real["mae"] > 0 else float("nan")
    out.update({"rows": {"synthetic_train": len(ys), "real_train": len(yr), "real_test": len(yt)},
                "synthetic_trained": s_syn, "real_trained": s_real, "seasonal_naive": _scores(yt, naive),
                "seasonal_naive_lag_h": naive_lag,
                "ratio_mae": ratio,
                "ratio_smape": s_syn["smape"] / s_real["smape"] if s_real["smape"] > 0 else float("nan"),
                "limit": RATIO_LIMIT,
                "status": "pass" if math.isfinite(ratio) and ratio <= RATIO_LIMIT else "fail"})
    return out


# --------------------------------------------------------------------------
# the section of the report
# --------------------------------------------------------------------------


def evaluate_utility(run_dir: Path, datasets, holidays=(), model: str = "ridge", seed: int = SPLIT_SEED) -> dict:
    """The ``utility`` section of ``metrics.json``: TSTR forecasting per real set (``cells`` and
    ``activity`` readers objects among ``datasets``; others are ignored) and horizon."""
    make_model(model)  # unknown names fail before any work
    by_kind = {d.kind: d for d in datasets}
    tasks: dict[str, dict] = {}
    sets: dict[str, dict] = {}
    for kind, what, split in (("cells", "data", lambda d: lte_split(d, holidays)),
                              ("activity", "all", lambda d: milan_split(d, holidays, seed))):
        if kind not in by_kind:
            continue
        syn = run_series(run_dir, what)
        train, test, how = split(by_kind[kind])
        sets[kind] = {"path": by_kind[kind].path, "split": how,
                      "synthetic_load": ("data_volume_mb per cell-hour" if what == "data" else
                                         "voice_attempts + sms + data_sessions per cell-hour"),
                      "synthetic_series": len(syn.names), "synthetic_hours": syn.hours,
                      "real_train_series": len(train.names), "real_test_series": len(test.names)}
        for task, h in HORIZONS.items():
            tasks[f"{task}.{kind}"] = {"task": task, "real": kind, **forecast_task(syn, train, test, h, model, seed)}
    evaluated = [t for t in tasks.values() if t["status"] != "not_evaluated"]
    summary = {"tasks": len(tasks), "evaluated": len(evaluated),
               "passed": sum(t["status"] == "pass" for t in evaluated),
               "failed": [n for n, t in tasks.items() if t["status"] == "fail"],
               "rule": f"MAE(synthetic-trained) / MAE(real-trained) on the real test split <= {RATIO_LIMIT:g}"}
    if not tasks:
        summary["note"] = "no real set for the utility tasks: give --real cells=... and/or --real activity=..."
    return {"model": model, "seed": seed, "sets": sets, "tasks": tasks, "summary": summary,
            "outage_detector": {"status": "not_evaluated", "note": OUTAGE_NOTE}}
