"""Calibration targets: summary statistics of real data, as one JSON-serialisable document.

:func:`compute_targets` takes the objects of :mod:`realdata.readers` and returns::

    {"schema_version": 1,
     "sources": {kind: {"path", "level": "aggregate" | "individual", "privacy_unit"}},
     "targets": {"<kind>.<name>": {"value", "source", "level", "privacy", "method"}},
     "privacy": {"composition", "budget", "spent", "releases": [ledger entries]}}

Aggregate inputs (activity, cells, shares) are summarised directly and marked
"aggregate, no individual-level guarantee". Individual-level inputs (drive traces, location
traces, edge lists, CDRs) are summarised only through :mod:`calibration.privacy`: each person's
rows are first bounded (caps below), then released with OpenDP noise; ratios, shapes and fits are
post-processing of those releases. Every cap, clamp bound and candidate grid is a public constant
of this module, chosen from domain knowledge, never read from the data.

Definitions follow ``calibration/derive_defaults.py`` (the embedded default profile) and
``calibration/run_stats.py`` (statistics of a run) where they overlap; its helpers are reused.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from telcosim.realdata import readers as R
from telcosim.realdata import splits

from .derive_defaults import (
    EARTH_RADIUS_M,
    GRID_M,
    MAX_ACCURACY_M,
    MIN_FIXES_PER_DAY,
    PING_PONG_S,
    mean_one,
)
from .privacy import (
    AGGREGATE_NOTE,
    ExactReleaser,
    Releaser,
    cap_rows,
    noise_draws,
    noise_sd,
    quantile_spread,
    release_entry,
    spread,
)
from .run_stats import MOVING_GAP_S

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------
# public constants of the private targets (never derived from the data)
# --------------------------------------------------------------------------

# drive traces: per person (trace, or user when given)
DRIVE_MAX_HANDOVERS = 300.0  # handovers counted per person (a 2-hour drive at ~2/min)
DRIVE_MAX_MINUTES = 240.0  # moving minutes counted per person
DRIVE_MAX_GAP_S = 60.0  # a gap between rows longer than this is not counted as moving time
DRIVE_DWELLS_PER_PERSON = 50  # dwell times per person (spread evenly over the person's dwells)
DWELL_CANDIDATES_S = np.unique(np.round(np.geomspace(1.0, 3600.0, 160), 1))
# location traces: per user
LOC_DAYS_PER_USER = 14  # user-days per user (spread evenly over the user's qualifying days)
RG_CANDIDATES_KM = np.r_[0.0, np.geomspace(0.01, 200.0, 200)]
DISTINCT_CANDIDATES = np.arange(1.0, 151.0)
SHARE_CANDIDATES = np.linspace(0.0, 1.0, 201)
STUDENTLIFE_REF_LAT = 43.7  # grid reference latitude (as derive_defaults)
# edge lists and CDRs: per originating person
CALLS_PER_PERSON = 20  # answered calls per caller used for durations
LOG_DURATION_BOUNDS = (0.0, math.log(4 * 3600.0))  # ln(duration s), 1 s .. 4 h
DURATION_CANDIDATES_S = np.unique(np.round(np.geomspace(1.0, 14400.0, 200)))
MAX_CALLS_COUNTED = 200.0  # call attempts counted per person (SMS:call ratio)
MAX_SMS_COUNTED = 1000.0  # SMS counted per person
PAIRS_PER_PERSON = 10  # (caller, callee) pairs per caller: the caller's 10 most called
PAIR_BIN_EDGES = np.array([1, 2, 3, 5, 9, 17, 33, 65])  # calls per pair, bins [1,2) .. [33,65), clamp 64
CDR_RECORDS_PER_PERSON = 50  # records per subscriber and service for profiles and cell load
MISSED_MAX_S = 1.0  # an edge-list call with duration <= 1 s is taken as missed (derive_defaults)

PRIVACY_UNITS = {
    "drive": "a person (the user column, else one trace file)",
    "locations": "a user",
    "edges": "a person as originator (caller or SMS sender)",
    "cdr": "a subscriber (subscriber_id)",
}

# private targets per input kind: name -> number of releases (the budget plan; public)
PLAN = {
    "drive": {"handover_rate_per_min_moving": 2, "dwell_time_s": 3, "ping_pong_share": 2},
    "locations": {"radius_of_gyration_km": 3, "distinct_locations_per_day": 1, "top_location_share": 1,
                  "hourly_move_probability": 2},
    "edges": {"call_duration": 5, "sms_call_ratio": 2, "contact_concentration": 1},
    "cdr": {"weekly_profile": 3, "call_duration": 5, "sms_call_ratio": 2, "contact_concentration": 1,
            "cell_load_distribution": 1},
}


# public bounds of each released figure (domain knowledge and the public caps; never data): a
# released value is clamped into them, post-processing. Key None = the value itself.
_DURATION_BOUNDS = {"log_mu": LOG_DURATION_BOUNDS, "log_sigma": (0.0, LOG_DURATION_BOUNDS[1] / 2),  # sd <= range/2
                    "median_s": (1.0, 14400.0), "p90_s": (1.0, 14400.0)}
BOUNDS: dict[str, dict[str | None, tuple[float, float]]] = {
    "drive.handover_rate_per_min_moving": {None: (0.0, 60.0)},  # dwells >= 1 s (the grid's floor)
    "drive.dwell_time_s": {"median": (1.0, 3600.0), "p90": (1.0, 3600.0)},
    "drive.ping_pong_share": {None: (0.0, 1.0)},
    "locations.radius_of_gyration_km": {"median": (0.0, 200.0), "p90": (0.0, 200.0)},
    "locations.distinct_locations_per_day": {"median": (1.0, 150.0)},
    "locations.top_location_share": {"median": (0.0, 1.0)},
    "locations.hourly_move_probability": {"mean": (0.0, 1.0), "by_hour": (0.0, 1.0)},
    "call_duration": _DURATION_BOUNDS,
    "sms_call_ratio": {None: (0.0, MAX_SMS_COUNTED)},  # <= the per-person SMS cap over >= 1 call
    "contact_concentration": {"top10pct_pairs_call_share": (0.1, 1.0),  # the top 10% carry >= 10%
                              "pairs_per_bin": (0.0, math.inf)},
    "cell_load_distribution": {"p10": (0.0, math.inf), "p50": (0.0, math.inf), "p90": (0.0, math.inf),
                               "var_mean_ratio": (0.0, math.inf), "top10pct_share": (0.1, 1.0)},
}
# quantiles that must not decrease, in this order (released separately, so noise can swap them)
ORDERED = {"drive.dwell_time_s": ("median", "p90"), "locations.radius_of_gyration_km": ("median", "p90"),
           "call_duration": ("median_s", "p90_s"), "cell_load_distribution": ("p10", "p50", "p90")}
# the scale of a figure's noise, as the calibration objective measures distance: ln(value), or
# the value itself for ln-scale figures
ABS_SCALE = {"log_mu"}
# a released figure whose noise sd on that scale is above this is noise-dominated: one sd is a
# factor of e^0.5 = 1.65 either way, beyond the 20-30% the default profile is held to
NOISE_DOMINATED_SD = 0.5
# log-spread of a figure released as a single median, for its noise (no second quantile to take
# it from): public guesses from the definitions (counts of places per day, a share in [0, 1])
SINGLE_QUANTILE_LOG_SPREAD = {"locations.distinct_locations_per_day": 0.5, "locations.top_location_share": 0.3}
DEFAULT_LOG_SPREAD = 1.0  # of a two-quantile figure whose released quantiles coincide


def bounds_of(name: str) -> dict[str | None, tuple[float, float]]:
    """The public bounds of a target's figures (by full name, else by the name after the kind)."""
    return BOUNDS.get(name) or BOUNDS.get(name.split(".", 1)[-1], {})


def ordered_of(name: str) -> tuple[str, ...]:
    return ORDERED.get(name) or ORDERED.get(name.split(".", 1)[-1], ())


def postprocess(name: str, value: Any) -> Any:
    """A released value made consistent with what it can be, from itself and public bounds alone
    (post-processing: no privacy cost, nothing reads the data): every figure clamped into its
    public bounds (rates and counts non-negative, shares in [0, 1]), and quantiles that noise put
    out of order rearranged into non-decreasing order (the monotone rearrangement, which never
    increases the error against the true quantiles)."""
    b = bounds_of(name)

    def clamp(key, v):
        lo, hi = b.get(key, (-math.inf, math.inf))
        if isinstance(v, list):
            return [clamp(key, x) for x in v]
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(min(max(v, lo), hi))
        return v
    if not isinstance(value, dict):
        return clamp(None, value)
    out = {k: clamp(k, v) for k, v in value.items()}
    keys = [k for k in ordered_of(name) if isinstance(out.get(k), int | float) and math.isfinite(out[k])]
    for k, v in zip(keys, sorted(out[k] for k in keys), strict=True):
        out[k] = v
    return out


def release_problems(doc: dict) -> list[str]:
    """Every released figure of a targets document outside its public bounds, and every quantile
    pair out of order (p90 below the median): what :func:`postprocess` rules out."""
    out = []
    for name, tg in sorted(doc.get("targets", {}).items()):
        value, b = tg.get("value"), bounds_of(name)
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for k, v in items:
            lo, hi = b.get(k, (-math.inf, math.inf))
            for x in (v if isinstance(v, list) else [v]):
                if isinstance(x, int | float) and not isinstance(x, bool) and not lo <= x <= hi:
                    out.append(f"{name}{'.' + k if k else ''} = {x} outside its public bounds [{lo}, {hi}]")
        keys = [k for k in ordered_of(name) if isinstance(value, dict) and isinstance(value.get(k), int | float)]
        for a, c in zip(keys, keys[1:], strict=False):
            if value[c] < value[a]:
                out.append(f"{name}: {c} {value[c]} below {a} {value[a]}")
    return out


def plan_for(datasets) -> dict[str, tuple[str, int]]:
    """The budget plan (target -> (source, releases)) for the individual-level inputs given."""
    plan = {}
    for ds in datasets:
        if ds.individual_level:
            for name, n in PLAN[ds.kind].items():
                if ds.kind == "cdr" and name == "cell_load_distribution" and ds.cells is None:
                    continue
                plan[f"{ds.kind}.{name}"] = (ds.kind, n)
    return plan


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _clean(x: Any) -> Any:
    """JSON-ready: numpy -> Python, NaN/inf -> None, floats to 6 significant digits."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray | pd.Series):
        return [_clean(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return float(f"{x:.6g}") if math.isfinite(x) else None
    return x


def tv_distance(p, q) -> float:
    """Total variation distance of two non-negative shapes over the entries finite in both, each
    renormalised to sum 1: 0 = same shape, 1 = disjoint. The distance of a diurnal-profile target
    to a run's profile, for the fit and for the fidelity report alike."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    ok = np.isfinite(p) & np.isfinite(q)
    if not ok.any() or p[ok].sum() <= 0 or q[ok].sum() <= 0:
        return float("nan")
    return float(0.5 * np.abs(p[ok] / p[ok].sum() - q[ok] / q[ok].sum()).sum())


def _shape(v) -> list[float] | None:
    v = np.asarray(v, float)
    if not np.all(np.isfinite(v)) or v.mean() <= 0:
        return None
    return list(mean_one(v))


def _shape_noisy(counts: np.ndarray) -> list[float] | None:
    """Mean-1 shape of released counts (negative noisy counts set to 0: post-processing)."""
    return _shape(np.clip(counts, 0, None))


def _quantiles(v, qs=(0.1, 0.5, 0.9)) -> dict[str, float]:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return {f"p{int(q * 100)}": float(np.quantile(v, q)) if len(v) else float("nan") for q in qs}


def _aggregate(value, source, method, **extra) -> dict:
    return {"value": value, "source": source, "level": "aggregate", "privacy": AGGREGATE_NOTE,
            "method": method, **extra}


def _private(rel: Releaser, target: str, value, method: str, noise: dict[str, float] | None = None,
             released: dict | None = None) -> dict:
    """A private target: its post-processed value, its privacy figures and, with ``noise``
    (figure -> sd on the objective's scale, see :func:`_noise_record`), its noise."""
    entries = [e for e in rel.ledger.entries if e.target == target]
    privacy = {"mechanisms": sorted({e.mechanism for e in entries}),
               "epsilon": float(sum(e.epsilon for e in entries)),
               "delta": float(sum(e.delta for e in entries)),
               "releases": [e.release for e in entries],
               "noise_scales": {e.release: e.noise_scale for e in entries},
               "exact_no_privacy": rel.exact}
    if noise is not None:
        privacy["noise"] = _noise_record(noise)
    if released is not None:
        privacy["released"] = released
    return {"value": postprocess(target, value), "source": target.split(".")[0], "level": "individual",
            "privacy": privacy, "method": method}


NOISE_METHOD = ("sd of each figure on the calibration objective's scale (ln value; the value itself for log_mu) "
                "over 1,000 re-releases: the released counts and sums plus fresh noise at the ledger's scales "
                "(post-processing of released values and public scales; no privacy cost); a quantile's from the "
                "exponential mechanism's rank error (sqrt(2) x its scale) as a share of the released row count, "
                "through a lognormal slope. null = infinite (the noise can unmake the figure)")


def _noise_record(sd: dict[str, float]) -> dict:
    """``{"sd": {figure: sd or None (infinite)}, "scale": {figure: "log" | "abs"}, "noise_dominated":
    [figures with sd > NOISE_DOMINATED_SD], "method"}``; figure "value" is a scalar target's value."""
    sd = {k: (0.0 if v < 1e-12 else v) for k, v in sd.items()}  # rounding of an exact release's copies
    return {"sd": {k: (float(f"{v:.4g}") if math.isfinite(v) else None) for k, v in sd.items()},
            "scale": {k: "abs" if k in ABS_SCALE else "log" for k in sd},
            "noise_dominated": sorted(k for k, v in sd.items() if not v <= NOISE_DOMINATED_SD),
            "threshold_sd": NOISE_DOMINATED_SD, "method": NOISE_METHOD}


def _log_spread(lo: float, hi: float, z: float) -> float:
    """ln-sd of a lognormal through two released quantiles (hi at z sds above lo)."""
    if lo > 0 and hi > lo:
        return math.log(hi / lo) / z
    return DEFAULT_LOG_SPREAD


Z90 = 1.2815515655446004  # the standard normal's 90% point


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def _ratios(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise a / b, NaN where b is not positive."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _finite(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _lognormal(n, s1, s2):
    """(mu, sigma) of ln duration from a count, a sum and a sum of squares (arrays or floats);
    NaN where the count is not positive or the variance not positive."""
    n, s1, s2 = (np.asarray(x, float) for x in (n, s1, s2))
    mu = _ratios(s1, n)
    var = _ratios(s2, n) - mu**2
    with np.errstate(invalid="ignore"):
        sigma = np.where(var > 0, np.sqrt(np.where(var > 0, var, 1.0)), np.nan)
    if mu.ndim == 0:
        return float(mu), float(sigma)
    return mu, sigma


def _move_probability(moved, pairs) -> np.ndarray:
    """Per hour moves / pairs (noisy counts; negative moves count 0), NaN without a positive pair
    count, clamped to [0, 1]."""
    return np.clip(_ratios(np.clip(moved, 0, None), pairs), 0, 1)


def _quantile_noise(rel: Releaser, name: str, value: dict, n_rows: float, keys: tuple[str, ...],
                    log_spread: float | None = None, count: tuple[str, str] | None = None) -> dict[str, float]:
    """Noise sd of released quantiles (keys named "median"/"p90" or "median_s"/"p90_s"), see
    :func:`calibration.privacy.quantile_spread`; ``log_spread`` default: from the two released
    quantiles, else the public guess for a single median; ``count``: (target, release) of the row
    count ``n_rows`` (default: this target's only other release, named by the caller)."""
    n_sd = noise_sd(release_entry(rel.ledger, *count)) if count else 0.0
    alpha = {"median": 0.5, "median_s": 0.5, "p90": 0.9, "p90_s": 0.9}
    release = {"median": "median", "median_s": "median", "p90": "p90", "p90_s": "p90"}
    if log_spread is None:
        if len(keys) == 2 and _finite(value.get(keys[0])) and _finite(value.get(keys[1])):
            log_spread = _log_spread(value[keys[0]], value[keys[1]], Z90)
        else:
            log_spread = SINGLE_QUANTILE_LOG_SPREAD.get(name, DEFAULT_LOG_SPREAD)
    return {k: quantile_spread(rel.ledger, name, release[k], n_rows, alpha[k], log_spread, n_sd) for k in keys}


def holiday_effect(hourly_total: pd.Series, holidays) -> dict | None:
    """Ratio of each given holiday's total to the mean total of the normal days with the same
    weekday (complete days only: 24 values); None when no holiday falls in the series."""
    s = hourly_total.dropna()
    day = s.index.normalize()
    counts = s.groupby(day).size()
    daily = s.groupby(day).sum()[counts == 24]
    hol = pd.DatetimeIndex(pd.to_datetime(list(holidays))).normalize()
    normal = daily[~daily.index.isin(hol)]
    per_day = {}
    for h in hol:
        if h in daily.index:
            same = normal[normal.index.day_of_week == h.day_of_week]
            if len(same):
                per_day[str(h.date())] = float(daily[h] / same.mean())
    if not per_day:
        return None
    return {"per_day": per_day, "mean": float(np.mean(list(per_day.values())))}


# --------------------------------------------------------------------------
# aggregate inputs
# --------------------------------------------------------------------------


def _week_hour(index: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(index.day_of_week * 24 + index.hour)


def activity_targets(a: R.ActivityTable, holidays=()) -> dict[str, dict]:
    """Milan-like activity: shapes pooled over the areas with no missing value (holidays left
    out), per-area load distribution, over-dispersion (median over areas with >= 7 valid days of
    var/mean of the area's hourly values, diurnal cycle included; derive_defaults' definition)."""
    df = a.load
    hol = pd.DatetimeIndex(pd.to_datetime(list(holidays))).normalize()
    day = df.index.normalize()
    keep = ~day.isin(hol)
    complete = df.columns[df.notna().all()]
    src = "activity"
    out: dict[str, dict] = {}
    tot = df.loc[keep, complete].sum(axis=1) if len(complete) else pd.Series(dtype=float)
    if len(tot):
        hourly = tot.groupby(tot.index.hour).mean().reindex(range(24))
        weekly = tot.groupby(_week_hour(tot.index)).mean().reindex(range(168))
        shape = _shape(hourly)
        out["activity.diurnal_profile"] = _aggregate(
            {"all": shape}, src, f"mean load per hour of day over {len(complete)} areas with no missing "
            "value, holidays excluded, normalised to mean 1",
            peak_hour=int(np.argmax(shape)) if shape else None,
            peak_trough_ratio=float(max(shape) / min(shape)) if shape else None)
        out["activity.weekly_profile"] = _aggregate(
            {"all": _shape(weekly)}, src, "mean load per hour of week (index = weekday*24 + hour, Mon=0), "
            "normalised to mean 1")
    valid_days = df.notna().groupby(day).all().sum()
    sq = df.columns[valid_days >= 7]
    clean = df.loc[keep, sq]
    means = clean.mean()
    out["activity.area_load_distribution"] = _aggregate(
        {**_quantiles(means), "cv": float(means.std(ddof=1) / means.mean()) if len(means) > 1 else float("nan"),
         "top10pct_share": _top_share(means.to_numpy())},
        src, f"mean load per interval of each of {len(sq)} areas with >= 7 valid days: quantiles, "
        "coefficient of variation, share of the total carried by the top 10% areas")
    vm = (clean.var(ddof=1) / clean.mean()).replace([np.inf, -np.inf], np.nan)
    out["activity.over_dispersion"] = _aggregate(
        float(vm.median()), src, "var/mean of an area's values over its valid non-holiday intervals "
        "(diurnal cycle included), median over areas with >= 7 valid days")
    if len(hol) and len(complete):
        eff = holiday_effect(df[complete].sum(axis=1), holidays)
        if eff:
            out["activity.holiday_effect"] = _aggregate(
                eff, src, "holiday total / mean total of normal days with the same weekday, pooled "
                "areas with no missing value")
    return out


def _top_share(v: np.ndarray, top: float = 0.10) -> float:
    v = np.sort(np.asarray(v, float)[np.isfinite(v)])[::-1]
    if not len(v) or v.sum() <= 0:
        return float("nan")
    return float(v[: math.ceil(top * len(v))].sum() / v.sum())


def cell_series_targets(c: R.CellSeries, holidays=()) -> dict[str, dict]:
    """LTE-like cells: per-cell shapes normalised to mean 1 then averaged (every cell weighs the
    same, derive_defaults' convention), cell load distribution, over-dispersion, hourly log sigma."""
    src = "cells"
    hol = pd.DatetimeIndex(pd.to_datetime(list(holidays))).normalize()
    hours, weeks, means, vm, sig, effects = [], [], [], [], [], []
    for s in c.series.values():
        s = s[~s.index.normalize().isin(hol)]
        if not len(s):
            continue
        h = s.groupby(s.index.hour).mean().reindex(range(24))
        w = s.groupby(_week_hour(s.index)).mean().reindex(range(168))
        if _shape(h):
            hours.append(_shape(h))
        if _shape(w):
            weeks.append(_shape(w))
        means.append(float(s.mean()))
        vm.append(float(s.var(ddof=1) / s.mean()) if s.mean() > 0 else np.nan)
        pos = s[s > 0]
        sig.append(float(np.log(pos).std(ddof=1)) if len(pos) > 1 else np.nan)
    for s in c.series.values():
        eff = holiday_effect(s, holidays) if len(hol) else None
        if eff:
            effects.append(eff["mean"])
    out: dict[str, dict] = {}
    if hours:
        shape = _shape(np.mean(hours, axis=0))
        out["cells.diurnal_profile"] = _aggregate(
            {"data": shape}, src, f"mean volume per hour of day of each of {len(hours)} cells, normalised to "
            "mean 1, averaged over cells, renormalised", peak_hour=int(np.argmax(shape)),
            peak_trough_ratio=float(max(shape) / min(shape)))
    if weeks:
        out["cells.weekly_profile"] = _aggregate(
            {"data": _shape(np.mean(weeks, axis=0))}, src, "as diurnal_profile per hour of week "
            "(weekday*24 + hour, Mon=0)")
    out["cells.cell_load_distribution"] = _aggregate(
        {**_quantiles(means), "cv": float(np.std(means, ddof=1) / np.mean(means)) if len(means) > 1 else float("nan")},
        src, "mean hourly volume per cell: quantiles over cells and coefficient of variation")
    out["cells.over_dispersion"] = _aggregate(
        float(np.nanmedian(vm)) if vm else float("nan"), src,
        "var/mean of a cell's hourly volumes (unit as given, e.g. MB), median over cells")
    out["cells.hourly_log_sigma"] = _aggregate(
        float(np.nanmedian(sig)) if sig else float("nan"), src,
        "std of ln(hourly volume) of a cell, all hours, median over cells")
    if effects:
        out["cells.holiday_effect"] = _aggregate(
            {"mean": float(np.mean(effects))}, src, "per cell: holiday total / mean total of normal days "
            "with the same weekday, averaged over holidays, then over cells")
    return out


def share_targets(s: R.ShareTables) -> dict[str, dict]:
    """Nodobo-like shares: diurnal profile per series (the ``all`` variant, else the first);
    weekly 168 profile per series when a daily table and weekday/weekend hourly tables exist:
    share(day) * hourly shape of that day type, normalised to mean 1."""
    src = "shares"
    variant = "all" if "all" in s.hourly else sorted(s.hourly)[0]
    hourly = s.hourly[variant]
    out = {"shares.diurnal_profile": _aggregate(
        {str(c).lower(): _shape(hourly[c]) for c in hourly.columns}, src,
        f"published share per hour (variant {variant!r}), normalised to mean 1")}
    dvar = "all" if "all" in s.daily else (sorted(s.daily)[0] if s.daily else None)
    if dvar and {"weekday", "weekend"} <= set(s.hourly):
        daily = s.daily[dvar]
        week = {}
        for c in daily.columns:
            if c in s.hourly["weekday"] and c in s.hourly["weekend"]:
                rows = [daily.loc[d, c] * s.hourly["weekend" if i >= 5 else "weekday"][c].to_numpy()
                        for i, d in enumerate(R.DAY_NAMES)]
                week[str(c).lower()] = _shape(np.concatenate(rows))
        if week:
            out["shares.weekly_profile"] = _aggregate(
                week, src, f"daily share ({dvar!r}) x hourly shape of weekday/weekend, per hour of week "
                "(weekday*24 + hour, Mon=0), normalised to mean 1")
    return out


# --------------------------------------------------------------------------
# individual-level inputs (private)
# --------------------------------------------------------------------------


def _drive_rows(d: R.DriveTraces):
    """Per trace: handovers (moving), moving minutes, dwell times, ping-pongs; keyed by person."""
    rows = []
    for tr in d.traces:
        t = tr.time.astype("datetime64[s]").astype(np.int64).astype(float)
        gap = np.diff(t)
        mov = tr.moving[:-1] & (gap <= DRIVE_MAX_GAP_S)
        minutes = float(gap[mov].sum() / 60.0)
        change = np.r_[False, tr.cell[1:] != tr.cell[:-1]]
        change[1:] &= mov  # a change counts when the interval leading to it is moving
        idx = np.flatnonzero(change)
        times, frm, to = t[idx], tr.cell[idx - 1], tr.cell[idx]
        dwell = np.diff(times)
        pp = int(((to[1:] == frm[:-1]) & (dwell <= PING_PONG_S)).sum())
        rows.append((tr.unit, len(idx), minutes, dwell, pp))
    return rows


def drive_targets(d: R.DriveTraces, rel: Releaser) -> dict[str, dict]:
    """Handover rate per moving minute, dwell time per cell (time between consecutive handovers,
    censored first/last stays excluded), ping-pong share (a handover back to the previous cell within
    10 s, as a share of handovers); derive_defaults' definitions, per person bounded."""
    rows = _drive_rows(d)
    units = sorted({r[0] for r in rows})
    per = {u: [0, 0.0, [], 0] for u in units}
    for u, n, _, dw, pp in rows:
        per[u][0] += n
        per[u][2].extend(dw[dw <= MOVING_GAP_S].tolist())  # the run's rule: a moving episode's dwells
        per[u][3] += pp
    ho = np.array([per[u][0] for u in units], float)
    ep_n = np.array([len(per[u][2]) for u in units], float)
    ep_min = np.array([sum(per[u][2]) / 60.0 for u in units], float)
    pps = np.array([per[u][3] for u in units], float)
    out = {}
    name = "drive.handover_rate_per_min_moving"
    b = rel.target(name)
    n_ho = b.bounded_sum("handovers", ep_n, (0.0, DRIVE_MAX_HANDOVERS), 1)
    n_min = b.bounded_sum("moving_minutes", ep_min, (0.0, DRIVE_MAX_MINUTES), 1)
    released = {"handovers": n_ho, "moving_minutes": n_min}
    d = noise_draws(rel.ledger, name, released)
    rate = _ratios(d["handovers"], d["moving_minutes"])
    lo, hi = BOUNDS[name][None]
    out[name] = _private(rel, name, _ratio(n_ho, n_min),
                         f"handovers per minute of moving episode, the rule a run's location trace allows "
                         f"(calibration.run_stats): handovers closer than {MOVING_GAP_S} s form an episode; per "
                         f"person clamped to {DRIVE_MAX_HANDOVERS:g} handovers and {DRIVE_MAX_MINUTES:g} min; moving = "
                         "Driving folder, Speed >= 5 km/h, or no Speed",
                         noise={"value": spread(np.clip(rate, lo, hi), "log")}, released=released)
    name = "drive.dwell_time_s"
    b = rel.target(name)
    who = np.concatenate([[i] * len(per[u][2]) for i, u in enumerate(units)]) if units else np.array([])
    vals = np.concatenate([per[u][2] for u in units]) if units else np.array([])
    keep = cap_rows(who.astype(np.int64), DRIVE_DWELLS_PER_PERSON)
    vals = vals[keep]
    n_rows = b.bounded_sum("dwells", np.ones(len(vals)), (0.0, 1.0), DRIVE_DWELLS_PER_PERSON)
    value = postprocess(name, {
        "median": b.quantile("median", vals, DWELL_CANDIDATES_S, 0.5, DRIVE_DWELLS_PER_PERSON),
        "p90": b.quantile("p90", vals, DWELL_CANDIDATES_S, 0.9, DRIVE_DWELLS_PER_PERSON)})
    out[name] = _private(rel, name, value,
        f"time between consecutive handovers while moving (at most {MOVING_GAP_S} s apart, the run's rule), "
        f"<= {DRIVE_DWELLS_PER_PERSON} per person "
        "(spread over the person's dwells), quantiles over a public grid 1 s .. 1 h; their number released "
        "for the quantiles' noise", noise=_quantile_noise(rel, name, value, n_rows, ("median", "p90"),
                                                        count=(name, "dwells")),
        released={"dwells": n_rows})
    name = "drive.ping_pong_share"
    b = rel.target(name)
    n_pp = b.bounded_sum("ping_pongs", pps, (0.0, DRIVE_MAX_HANDOVERS), 1)
    n_h = b.bounded_sum("handovers", ho, (0.0, DRIVE_MAX_HANDOVERS), 1)
    released = {"ping_pongs": n_pp, "handovers": n_h}
    d = noise_draws(rel.ledger, name, released)
    share = _ratios(d["ping_pongs"], d["handovers"])  # unclipped: clipping would hide the noise
    out[name] = _private(rel, name, float(np.clip(_ratio(max(n_pp, 0.0), n_h), 0, 1)) if n_h > 0 else float("nan"),
                         f"handovers back to the previous cell within {PING_PONG_S:g} s / handovers, per person "
                         f"clamped to {DRIVE_MAX_HANDOVERS:g}; a negative noisy count of ping-pongs counts 0",
                         noise={"value": spread(share, "log")}, released=released)
    return out


def _user_days(loc: R.LocationTraces):
    """Per user-day (>= MIN_FIXES_PER_DAY fixes of accuracy <= 250 m): rg (km), distinct 250 m grid
    cells, top-cell share; and per user-day-hour pairs (hour, moved) from the modal cell per hour."""
    ok = ~(loc.accuracy > MAX_ACCURACY_M)  # NaN accuracy (not given) is kept
    user, t, lat, lon = loc.user[ok], loc.time[ok], loc.lat[ok], loc.lon[ok]
    m_per_deg = math.pi / 180 * EARTH_RADIUS_M
    lat0 = math.radians(STUDENTLIFE_REF_LAT)
    cx = np.floor(lon * m_per_deg * math.cos(lat0) / GRID_M).astype(np.int64)
    cy = np.floor(lat * m_per_deg / GRID_M).astype(np.int64)
    cell = cx * 10_000_019 + cy
    day = t.astype("datetime64[D]").astype(np.int64)
    hour = (t.astype("datetime64[h]").astype(np.int64) % 24)
    d = pd.DataFrame({"user": user, "day": day, "hour": hour, "lat": lat, "lon": lon, "cell": cell})
    days = []
    for (u, dd), g in d.groupby(["user", "day"], sort=True):
        if len(g) < MIN_FIXES_PER_DAY:
            continue
        latm = math.radians(g.lat.mean())
        y = (g.lat - g.lat.mean()).to_numpy() * m_per_deg
        x = (g.lon - g.lon.mean()).to_numpy() * m_per_deg * math.cos(latm)
        counts = g.cell.value_counts()
        days.append((u, dd, math.sqrt(np.mean(x**2 + y**2)) / 1000.0, len(counts), counts.iloc[0] / len(g)))
    days = pd.DataFrame(days, columns=["user", "day", "rg", "distinct", "top"])
    # modal cell per (user, day, hour), ties -> first seen
    first = d.groupby(["user", "day", "hour", "cell"], sort=False).size().reset_index(name="n")
    modal = first.loc[first.groupby(["user", "day", "hour"], sort=False)["n"].idxmax()]
    key = modal.set_index(["user", "day", "hour"])["cell"]
    return days, key


def location_targets(loc: R.LocationTraces, rel: Releaser) -> dict[str, dict]:
    """Per user-day radius of gyration, distinct locations and top-location share (derive_defaults'
    definitions), each user bounded to LOC_DAYS_PER_USER days spread over their qualifying days;
    hourly move probability from the same days (modal 250 m cell of hour h vs h+1)."""
    days, key = _user_days(loc)
    keep = cap_rows(days.user.to_numpy(), LOC_DAYS_PER_USER, order=days.day.to_numpy())
    days = days.iloc[keep]
    k = LOC_DAYS_PER_USER
    out = {}
    name = "locations.radius_of_gyration_km"
    b = rel.target(name)
    n_days = b.bounded_sum("user_days", np.ones(len(days)), (0.0, 1.0), k)
    value = postprocess(name, {"median": b.quantile("median", days.rg, RG_CANDIDATES_KM, 0.5, k),
                               "p90": b.quantile("p90", days.rg, RG_CANDIDATES_KM, 0.9, k)})
    out[name] = _private(rel, name, value,
                         f"daily radius of gyration of fixes (accuracy <= {MAX_ACCURACY_M:g} m, days with >= "
                         f"{MIN_FIXES_PER_DAY} fixes), <= {k} days per user, public grid 0..200 km; the number of "
                         "user-days released for the quantiles' noise (also those of distinct locations and top share)",
                         noise=_quantile_noise(rel, name, value, n_days, ("median", "p90"),
                                               count=("locations.radius_of_gyration_km", "user_days")),
                         released={"user_days": n_days})
    name = "locations.distinct_locations_per_day"
    b = rel.target(name)
    value = {"median": b.quantile("median", days.distinct, DISTINCT_CANDIDATES, 0.5, k)}
    out[name] = _private(rel, name, value, f"distinct {GRID_M:g} m grid cells visited per user-day, <= {k} days "
                         "per user", noise=_quantile_noise(rel, name, value, n_days, ("median",),
                                                     count=("locations.radius_of_gyration_km", "user_days")))
    name = "locations.top_location_share"
    b = rel.target(name)
    value = {"median": b.quantile("median", days.top, SHARE_CANDIDATES, 0.5, k)}
    out[name] = _private(rel, name, value, f"share of a day's fixes in its most frequent grid cell, <= {k} days "
                         "per user", noise=_quantile_noise(rel, name, value, n_days, ("median",),
                                                     count=("locations.radius_of_gyration_km", "user_days")))
    name = "locations.hourly_move_probability"
    b = rel.target(name)
    sel = set(zip(days.user, days.day, strict=True))
    hours_moved, hours_pair = [], []
    cells = key.to_dict()
    for (u, dd, h), c in cells.items():
        if (u, dd) not in sel:
            continue
        nxt = (u, dd, h + 1) if h < 23 else (u, dd + 1, 0)
        if nxt in cells:
            hours_pair.append(h)
            if cells[nxt] != c:
                hours_moved.append(h)
    moved = b.histogram("moves", np.array(hours_moved, np.int64), 24, 24 * k)
    pairs = b.histogram("pairs", np.array(hours_pair, np.int64), 24, 24 * k)
    prob = _move_probability(moved, pairs)
    d = noise_draws(rel.ledger, name, {"moves": moved, "pairs": pairs})
    with np.errstate(invalid="ignore"):  # unclipped: clipping noisy hours into [0, 1] would hide the noise
        means = np.nanmean(_ratios(d["moves"], d["pairs"]), axis=-1)
    out[name] = _private(rel, name, {"by_hour": list(prob), "mean": float(np.nanmean(prob))
                                     if np.isfinite(prob).any() else float("nan")},
                         "P(modal cell of hour h+1 != that of hour h) over the selected user-days: "
                         "moves per hour / hour pairs per hour (each a noisy 24-bin histogram)",
                         noise={"mean": spread(means, "log")}, released={"moves": list(moved), "pairs": list(pairs)})
    return out


def _duration_target(rel: Releaser, name: str, person, dur) -> dict:
    """Lognormal mu/sigma (noisy count, sum and sum of squares of ln duration) and quantiles."""
    b = rel.target(name)
    keep = cap_rows(person, CALLS_PER_PERSON)
    logd = np.log(np.clip(dur[keep], 1.0, None))
    k = CALLS_PER_PERSON
    n = b.bounded_sum("count", np.ones(len(logd)), (0.0, 1.0), k)
    s1 = b.bounded_sum("sum_log", logd, LOG_DURATION_BOUNDS, k)
    s2 = b.bounded_sum("sum_log_sq", logd**2, (0.0, LOG_DURATION_BOUNDS[1] ** 2), k)
    mu, sigma = _lognormal(n, s1, s2)
    q50 = b.quantile("median", dur[keep], DURATION_CANDIDATES_S, 0.5, k)
    q90 = b.quantile("p90", dur[keep], DURATION_CANDIDATES_S, 0.9, k)
    released = {"count": n, "sum_log": s1, "sum_log_sq": s2}
    d = noise_draws(rel.ledger, name, released)
    mus, sigmas = _lognormal(d["count"], d["sum_log"], d["sum_log_sq"])
    value = postprocess(name, {"log_mu": mu, "log_sigma": sigma, "median_s": q50, "p90_s": q90})
    b_ = BOUNDS["call_duration"]
    noise = {"log_mu": spread(np.clip(mus, *b_["log_mu"]), "abs"), "log_sigma": spread(np.clip(sigmas, *b_["log_sigma"]),
                                                                                          "log")}
    spread_ln = value["log_sigma"] if _finite(value["log_sigma"]) and value["log_sigma"] > 0 else None
    noise.update(_quantile_noise(rel, name, value, n, ("median_s", "p90_s"), spread_ln, count=(name, "count")))
    return _private(rel, name, value,
                    f"answered calls, <= {k} per caller (spread over their calls), ln(duration) clamped to "
                    f"[0, ln 4 h]; lognormal fit from noisy count, sum and sum of squares", noise=noise,
                    released=released)


def _per_person_counts(person: np.ndarray) -> np.ndarray:
    return np.unique(person, return_counts=True)[1].astype(float) if len(person) else np.array([])


def _ratio_target(rel: Releaser, name: str, sms_person, call_person) -> dict:
    b = rel.target(name)
    s = b.bounded_sum("sms", _per_person_counts(sms_person), (0.0, MAX_SMS_COUNTED), 1)
    c = b.bounded_sum("calls", _per_person_counts(call_person), (0.0, MAX_CALLS_COUNTED), 1)
    released = {"sms": s, "calls": c}
    d = noise_draws(rel.ledger, name, released)
    ratio = _ratios(d["sms"], d["calls"])  # unclipped: clipping would hide the noise
    return _private(rel, name, _ratio(max(s, 0.0), c),
                    f"SMS / call attempts, per originator clamped to {MAX_SMS_COUNTED:g} SMS and "
                    f"{MAX_CALLS_COUNTED:g} calls", noise={"value": spread(ratio, "log")}, released=released)


def contact_concentration_from_bins(pairs_per_bin: np.ndarray, top: float = 0.10) -> float:
    """Share of calls carried by the top ``top`` of pairs, from pairs per calls-per-pair bin: each
    pair in a bin is taken to carry the bin's midpoint (exact for the 1 and 2 bins)."""
    n = np.clip(np.asarray(pairs_per_bin, float), 0, None)
    lo, hi = PAIR_BIN_EDGES[:-1], PAIR_BIN_EDGES[1:] - 1
    rep = (lo + hi) / 2.0
    total_pairs, total_calls = n.sum(), (n * rep).sum()
    if total_pairs <= 0 or total_calls <= 0:
        return float("nan")
    left, carried = top * total_pairs, 0.0
    for i in range(len(n) - 1, -1, -1):
        take = min(n[i], left)
        carried += take * rep[i]
        left -= take
        if left <= 0:
            break
    return float(carried / total_calls)


def _concentration_target(rel: Releaser, name: str, caller, callee) -> dict:
    b = rel.target(name)
    pairs = pd.DataFrame({"a": caller, "b": callee}).groupby(["a", "b"]).size().reset_index(name="n")
    pairs = pairs.sort_values(["a", "n"], ascending=[True, False], kind="stable")
    keep = cap_rows(pairs.a.to_numpy(), PAIRS_PER_PERSON, order=-pairs.n.to_numpy())
    n = np.minimum(pairs.n.to_numpy()[keep], PAIR_BIN_EDGES[-1] - 1)
    bins = np.searchsorted(PAIR_BIN_EDGES, n, side="right") - 1
    hist = b.histogram("pairs_per_bin", bins, len(PAIR_BIN_EDGES) - 1, PAIRS_PER_PERSON)
    d = noise_draws(rel.ledger, name, {"pairs_per_bin": hist})["pairs_per_bin"]
    shares = np.array([contact_concentration_from_bins(h) for h in d])
    return _private(rel, name, {"top10pct_pairs_call_share": contact_concentration_from_bins(hist),
                                "pairs_per_bin": list(np.clip(hist, 0, None)),
                                "bin_edges": PAIR_BIN_EDGES.tolist()},
                    noise={"top10pct_pairs_call_share": spread(shares, "log")},
                    method=f"directed (caller, callee) pairs, each caller's {PAIRS_PER_PERSON} most called, calls per "
                    "pair binned [1,2,3,5,9,17,33,65) (clamped to 64); share of calls on the top 10% pairs with "
                    "bin midpoints")


def edge_targets(e: R.EdgeLists, rel: Releaser) -> dict[str, dict]:
    """Copenhagen-like: call duration fit (answered calls: duration > 1 s), SMS:call ratio (all
    call attempts), contact concentration; the privacy unit is the originator (caller, sender)."""
    calls = e.calls
    out = {}
    ans = calls[calls.duration_s > MISSED_MAX_S]
    out["edges.call_duration"] = _duration_target(rel, "edges.call_duration", ans.source.to_numpy(),
                                                  ans.duration_s.to_numpy())
    sms_src = e.sms.source.to_numpy() if e.sms is not None else np.array([], str)
    out["edges.sms_call_ratio"] = _ratio_target(rel, "edges.sms_call_ratio", sms_src, calls.source.to_numpy())
    out["edges.contact_concentration"] = _concentration_target(rel, "edges.contact_concentration",
                                                               calls.source.to_numpy(), calls.target.to_numpy())
    return out


def cdr_targets(c: R.CdrTable, rel: Releaser) -> dict[str, dict]:
    """telcosim CDRs, privacy unit the subscriber: per-service weekly profile (MO voice and SMS,
    all data records; <= 50 records per subscriber and service, spread over time) and its diurnal
    fold, completed-call durations, SMS:call ratio (MO records), contact concentration (MO voice
    with an on-net counterpart), cell load distribution (records per cell; needs cells.parquet)."""
    out = {}
    t = pd.DatetimeIndex(c.start_time)
    week = _week_hour(t)
    order = c.start_time.astype(np.int64)
    mo = c.direction == "mo"
    name = "cdr.weekly_profile"
    b = rel.target(name)
    weekly, diurnal = {}, {}
    for svc in ("voice", "sms", "data"):
        m = np.flatnonzero((c.service == svc) & (mo | (svc == "data")))
        keep = m[cap_rows(c.subscriber_id[m], CDR_RECORDS_PER_PERSON, order=order[m])]
        counts = b.histogram(svc, week[keep], 168, CDR_RECORDS_PER_PERSON)
        weekly[svc] = _shape_noisy(counts)
        diurnal[svc] = _shape_noisy(np.clip(counts, 0, None).reshape(7, 24).sum(axis=0))
    out[name] = _private(rel, name, weekly, f"records per hour of week (weekday*24 + hour), <= "
                         f"{CDR_RECORDS_PER_PERSON} per subscriber and service, normalised to mean 1")
    out["cdr.diurnal_profile"] = {**_private(rel, name, diurnal, "the weekly_profile release folded to 24 "
                                             "hours (post-processing, no extra budget)"),
                                  "derived_from": name}
    done = np.flatnonzero((c.service == "voice") & mo & (c.outcome == "completed") & (c.duration_s > 0))
    out["cdr.call_duration"] = _duration_target(rel, "cdr.call_duration", c.subscriber_id[done],
                                                c.duration_s[done])
    out["cdr.sms_call_ratio"] = _ratio_target(rel, "cdr.sms_call_ratio", c.subscriber_id[(c.service == "sms") & mo],
                                              c.subscriber_id[(c.service == "voice") & mo])
    v = (c.service == "voice") & mo & (c.counterpart_id >= 0)
    out["cdr.contact_concentration"] = _concentration_target(rel, "cdr.contact_concentration",
                                                             c.subscriber_id[v], c.counterpart_id[v])
    if c.cells is not None:
        name = "cdr.cell_load_distribution"
        b = rel.target(name)
        cells = np.sort(np.asarray(c.cells))
        pos = np.searchsorted(cells, c.cell_id)
        known = (pos < len(cells)) & (cells[np.minimum(pos, len(cells) - 1)] == c.cell_id)
        idx = np.flatnonzero(known)
        keep = idx[cap_rows(c.subscriber_id[idx], CDR_RECORDS_PER_PERSON, order=order[idx])]
        raw = b.histogram("records_per_cell", pos[keep], len(cells), CDR_RECORDS_PER_PERSON)
        load = np.clip(raw, 0, None)
        d = np.clip(noise_draws(rel.ledger, name, {"records_per_cell": raw}, draws=200)["records_per_cell"], 0, None)
        qs = np.quantile(d, [0.1, 0.5, 0.9], axis=1)
        noise = {k: spread(q, "log") for k, q in zip(("p10", "p50", "p90"), qs, strict=True)}
        out[name] = _private(rel, name, {**_quantiles(load), "var_mean_ratio": float(load.var(ddof=1) / load.mean())
                                         if load.mean() > 0 else float("nan"), "top10pct_share": _top_share(load)},
                             f"records per cell (network cells from cells.parquet, public), <= "
                             f"{CDR_RECORDS_PER_PERSON} per subscriber: quantiles, var/mean across cells, top 10% share",
                             noise=noise)
    return out


# --------------------------------------------------------------------------
# the document
# --------------------------------------------------------------------------


class TooSmallToSplit(ValueError):
    """A real set with too few units for a fit part and a check part."""


def select_part(ds, part: str):
    """``ds`` restricted to ``part`` (``fit``, ``check`` or ``all``) of :mod:`realdata.splits`, and
    the record of that split. A set with units in only one part cannot give an out-of-sample
    check: :class:`TooSmallToSplit` (use ``all``)."""
    record = splits.describe(ds, part)
    if part != "all" and record.get("unit") is not None and (record["units_fit"] == 0 or record["units_check"] == 0):
        n = record["units_fit"] + record["units_check"]
        raise TooSmallToSplit(f"{ds.path}: {n} {record['unit']} unit(s), {record['units_fit']} in the fit part and "
                              f"{record['units_check']} in the check part: too few to split; use --part all "
                              "(every row; nothing is then held out for the evaluation)")
    try:
        return splits.select(ds, part), record
    except splits.SplitError as exc:
        raise TooSmallToSplit(f"{exc}; use --part all") from None


def compute_targets(datasets, epsilon: float | None = None, delta: float = 0.0, holidays=(),
                    disjoint_sources: bool = False, exact: bool = False, part: str = "fit") -> dict:
    """The targets document for ``datasets`` (reader objects, at most one per kind).

    ``part``: which rows of each set the targets come from (:mod:`realdata.splits`): ``fit``
    (default: the evaluation judges on the held-out ``check`` part), ``check`` or ``all``; the
    split of each set is recorded in ``sources[kind]["split"]`` and the document's ``split``.
    ``epsilon`` (and ``delta``) is the privacy budget for the individual-level inputs, required
    when there is one. ``exact=True`` computes the private targets without noise, for tests only:
    the document then says ``exact_no_privacy`` and must not be published.
    """
    kinds = [d.kind for d in datasets]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"one input per kind, got {kinds}")
    if part not in splits.PARTS:
        raise ValueError(f"part {part!r}: expected one of {', '.join(splits.PARTS)}")
    chosen = [select_part(ds, part) for ds in datasets]
    datasets = [c[0] for c in chosen]
    split_of = {ds.kind: c[1] for ds, c in zip(datasets, chosen, strict=True)}
    plan = plan_for(datasets)
    if exact:
        rel: Releaser = ExactReleaser(plan, disjoint_sources)
    else:
        if plan and epsilon is None:
            raise ValueError("individual-level inputs need a privacy budget epsilon")
        rel = Releaser(epsilon if epsilon is not None else 1.0, delta, plan, disjoint_sources)
    targets: dict[str, dict] = {}
    sources = {}
    for ds in datasets:
        sources[ds.kind] = {"path": ds.path, "level": "individual" if ds.individual_level else "aggregate",
                            "privacy_unit": PRIVACY_UNITS.get(ds.kind) if ds.individual_level else None}
        if ds.kind == "drive":
            sources[ds.kind]["privacy_unit"] = ("a user (user column)" if ds.unit_kind == "user"
                                                else "a trace file (no user column: one trace = one person)")
        sources[ds.kind]["split"] = split_of[ds.kind]
        fn = {"activity": lambda d: activity_targets(d, holidays),
              "cells": lambda d: cell_series_targets(d, holidays),
              "shares": share_targets,
              "drive": lambda d: drive_targets(d, rel),
              "locations": lambda d: location_targets(d, rel),
              "edges": lambda d: edge_targets(d, rel),
              "cdr": lambda d: cdr_targets(d, rel)}[ds.kind]
        targets.update(fn(ds))
    privacy = rel.ledger.to_json() if plan else {"composition": None, "budget": None,
                                                 "spent": {"epsilon": 0.0, "delta": 0.0}, "releases": []}
    privacy["disjoint_sources"] = disjoint_sources
    privacy["exact_no_privacy"] = exact
    privacy["note"] = ("individual-level targets are DP releases; aggregate inputs carry "
                       f"'{AGGREGATE_NOTE}'" if not exact else
                       "EXACT VALUES WITHOUT NOISE: for testing only, not private")
    return _clean({"schema_version": SCHEMA_VERSION, "sources": sources, "targets": targets, "privacy": privacy,
                   "masking": {"volumes": False},
                   "split": {"part": part, "salt": splits.SALT, "check_share": splits.CHECK_SHARE,
                             "note": "targets from the fit part of each set by default; evaluation judges on the "
                                     "check part (realdata/splits.py). Per set: sources[kind].split"}})


# --------------------------------------------------------------------------
# masking absolute volumes (--mask-volumes)
# --------------------------------------------------------------------------

MASK_REFERENCE_PAIRS = 1000.0  # pairs_per_bin histograms are rescaled to this many pairs in total
MASK_METHOD = (
    "absolute levels rescaled to a fixed reference, shapes and ratios kept: load quantiles are divided "
    "by the median (p50 = 1, i.e. the data as if scaled so that the median area/cell carries 1), the "
    "var/mean figures of the same input by the same factor (var/mean scales with the unit), pair "
    "histograms scaled to 1000 pairs in total; the factors are not stored. Post-processing of the "
    "released values: no privacy cost.")


def _level_factor(value: dict) -> float | None:
    """1 / p50 of a load-quantile table (None when p50 is not a positive number)."""
    p50 = value.get("p50") if isinstance(value, dict) else None
    if isinstance(p50, int | float) and math.isfinite(p50) and p50 > 0:
        return 1.0 / float(p50)
    return None


def mask_volumes(doc: dict) -> dict:
    """The targets document with its absolute volumes rescaled to fixed reference levels.

    Kept (scale-free): every shape, ratio, share, CV, log sigma, holiday effect, duration, mobility
    and handover figure. Rescaled, per input:

    * ``<kind>.area_load_distribution`` / ``<kind>.cell_load_distribution``: ``p10``, ``p50``,
      ``p90`` divided by ``p50`` (so ``p50 = 1``); ``cdr``'s ``var_mean_ratio`` by the same factor;
    * ``<kind>.over_dispersion`` (var/mean in the input's unit): times that input's load factor;
    * ``<kind>.contact_concentration``: ``pairs_per_bin`` scaled to ``MASK_REFERENCE_PAIRS`` pairs
      (the top-10% share is unchanged: it depends only on the histogram's shape).

    A level that cannot be put on the reference (p50 zero or missing, e.g. after DP noise) is
    withheld (set to null), never published as is. The factors are computed from the document only
    and not stored. The document gets a top-level ``masking`` record naming every rescaled field,
    and each rescaled target a ``masked`` note.
    """
    out = json.loads(json.dumps(doc))  # deep copy of a JSON document
    targets = out.get("targets", {})
    rescaled: dict[str, list[str]] = {}
    withheld: dict[str, list[str]] = {}

    def note(name: str, fields: list[str], ok: bool, how: str) -> None:
        (rescaled if ok else withheld).setdefault(name, []).extend(fields)
        targets[name]["masked"] = how if ok else "withheld: no positive reference level to rescale to"

    kinds = {n.split(".")[0] for n in targets}
    for kind in sorted(kinds):
        dist_name = next((f"{kind}.{d}" for d in ("area_load_distribution", "cell_load_distribution")
                          if f"{kind}.{d}" in targets), None)
        factor = None
        if dist_name is not None:
            v = targets[dist_name]["value"]
            factor = _level_factor(v)
            fields = [k for k in ("p10", "p50", "p90", "var_mean_ratio") if k in v]
            for k in fields:
                v[k] = v[k] * factor if factor is not None and v[k] is not None else None
            note(dist_name, fields, factor is not None, "p10/p50/p90 (and var/mean) divided by p50")
        od = f"{kind}.over_dispersion"
        if od in targets:
            v = targets[od]["value"]
            ok = factor is not None and isinstance(v, int | float)
            targets[od]["value"] = v * factor if ok else None
            note(od, ["value"], ok, f"times the load factor of {dist_name} (1 / its p50)")
        cc = f"{kind}.contact_concentration"
        if cc in targets and isinstance(targets[cc]["value"], dict) and "pairs_per_bin" in targets[cc]["value"]:
            bins = np.clip(np.array([0.0 if x is None else x for x in targets[cc]["value"]["pairs_per_bin"]]),
                           0, None)
            ok = bins.sum() > 0
            targets[cc]["value"]["pairs_per_bin"] = (list(bins * (MASK_REFERENCE_PAIRS / bins.sum())) if ok
                                                     else [None] * len(bins))
            note(cc, ["pairs_per_bin"], ok, f"pairs_per_bin scaled to {MASK_REFERENCE_PAIRS:g} pairs in total")
    out["masking"] = {"volumes": True, "method": MASK_METHOD, "rescaled": rescaled, "withheld": withheld}
    return _clean(out)
