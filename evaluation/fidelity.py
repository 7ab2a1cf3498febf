"""Fidelity of a telcosim run against real data: metrics, real-vs-real baselines and tolerances.

:func:`evaluate` compares one run folder with real data sets read by :mod:`realdata.readers`
(the ``KIND`` names of ``telcosim targets``) and returns one JSON-ready document (``metrics.json``
of ``telcosim evaluate``). For every metric of :data:`SPECS`:

* the **synthetic value** comes from the run: CDR figures from its ``cdr/`` parts (read with
  :func:`realdata.readers.read_cdr`), data volume from ``cell_kpis.parquet``, mobility and
  handover figures from :func:`calibration.run_stats.mobility_stats`;
* the **real value** from the first real set given among the metric's ``kinds``; definitions are
  those of :mod:`calibration.targets` (whose helpers are called: ``activity_targets``,
  ``cell_series_targets``, ``share_targets``, ``_drive_rows``, ``_user_days``, ``_top_share``),
  computed exactly, without per-person caps or noise (an evaluation compares, it publishes nothing);
  a ``cdr`` real set (a CDR table in telcosim's schema) goes through the same code as the run;
* the **distance** between them (total variation of normalised shapes, Kolmogorov-Smirnov of
  samples, absolute or relative difference of scalars);
* the **judged part**: each real set is restricted to one part of :mod:`realdata.splits` (``check``
  by default: the units calibration did not fit on; ``fit`` or ``all`` on request), recorded with
  its salt and unit counts;
* the **baseline**, within the judged part: (a) the part is split into two disjoint halves of its
  units (area, cell-time block, trace, user, person or subscriber) with a seeded permutation, the
  metric computed on each half and the distance between the halves taken, median over ``splits``
  such splits; (b) where the set has groups coarser than its units (drive traces by app, LTE
  series by cell, Milan squares by spatial band), each group against the rest of the part
  (leave one group out), median over groups. The baseline is the larger of (a) and (b), and the
  document says which set it: a synthetic figure that lies within the spread of the real groups
  passes, one fitted to a single group's value gains nothing;
* the **tolerance**: ``max(2 x baseline, floor)`` (``floor`` stated per metric); for tail metrics
  the floor is a fixed relative tolerance (10%, 20%). A real set that cannot be
  split (published aggregate shares, or fewer than :data:`MIN_SPLIT_UNITS` units) and has no groups
  uses the floor, and the document says so;
* **scale**: per-cell load figures of a real series are computed over windows as long as the run
  (each window divided by its own mean), so a year-long series' growth does not count against a
  14-day run; over-dispersion is compared at the real part's median count per cell-hour.
* **pass** when distance <= tolerance. A metric with no real set among those given, or that the
  run is too short for (weekly shape, 24 h / 168 h autocorrelation), is ``not_evaluated`` with
  the reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from telcosim.calibration import run_stats as RS
from telcosim.calibration import targets as T
from telcosim.calibration.targets import tv_distance
from telcosim.realdata import readers as R
from telcosim.realdata import splits as S

SCHEMA_VERSION = 2
SPLITS = 5  # seeded half-splits per real set; the baseline is the median distance over them
SPLIT_SEED = 20240305
MIN_SPLIT_UNITS = 6  # fewer units than this: the set is "too small to split", the floor is used
MIN_WINDOW_SHARE = 0.5  # a real load window with fewer finite hours than this share is left out
MILAN_GRID = 100  # area ids 1..10000 are the Telecom Italia Milan grid, 100 squares a row, numbered from 1
MILAN_BAND_COLUMNS = 25  # Milan squares are grouped in bands of 25 grid columns (~5.9 km, west to east)
COUNT_RESIDUAL_MIN = 0.8  # residual var/mean (residual_dispersion) below which real values are taken as not counts:
# independent events give about 1 (Poisson), clustered ones more; 0.8 leaves room for sampling error
EXCEEDANCE_X = 2.0  # a cell-hour "exceeds" when its load is above 2 x that cell's mean hourly load
BURST_MIN_EVENTS = 10  # subscribers with fewer records are left out of the burstiness median
MIN_ACF_PAIRS_PER_LAG = 2  # a series needs at least 2 x lag hours for its autocorrelation at lag
TOLERANCE_RULE = ("distance <= max(2 x real-vs-real baseline, floor); baseline = max(median half-split "
                  "distance, median leave-one-group-out distance)")
TAIL_RULE = "relative difference <= max(2 x real-vs-real baseline, fixed tolerance)"


# --------------------------------------------------------------------------
# metric specifications
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One metric: ``kinds`` are the real-data kinds that provide it, in order of preference;
    ``distance``: "tv" (total variation of shapes normalised to sum 1), "ks" (two-sample
    Kolmogorov-Smirnov statistic), "abs" (|syn - real|), "rel" (|syn - real| / |real|);
    ``tail``: a fixed relative tolerance instead of the baseline rule."""

    name: str
    group: str
    title: str
    unit: str
    kinds: tuple[str, ...]
    distance: str
    floor: float
    definition: str
    tail: float | None = None


_SVC = {"voice": "MO voice records", "sms": "MO SMS records",
        "data": "data volume (MB; records when compared with a cdr set)", "all": "all CDR records"}
_SVC_KINDS = {"voice": ("shares", "cdr"), "sms": ("shares", "cdr"), "data": ("cells", "cdr"),
              "all": ("activity", "cdr")}
_LOAD = {"all": "CDR records per cell-hour (Milan: load per square-hour)",
         "data": "data volume per cell-hour (MB; records with a cdr set)"}
_WINDOWED = "real series in windows as long as the run, each divided by its own mean"


def _specs() -> list[Spec]:
    s: list[Spec] = []
    for svc in ("voice", "sms", "data", "all"):
        s.append(Spec(f"hourly_profile.{svc}", "temporal", f"Hourly profile, {svc}", "TV distance",
                      _SVC_KINDS[svc], "tv", 0.05,
                      f"{_SVC[svc]} per local hour of day (mean over days), as a shape normalised to sum 1"))
    for svc in ("voice", "sms", "data", "all"):
        s.append(Spec(f"weekly_profile.{svc}", "temporal", f"Weekly profile, {svc}", "TV distance",
                      _SVC_KINDS[svc], "tv", 0.08,
                      f"{_SVC[svc]} per hour of week (weekday*24 + hour, Mon=0), compared over the hours of "
                      "week the run covers (needs >= 2 days), normalised to sum 1"))
    for lag in (24, 168):
        for svc in ("all", "data"):
            s.append(Spec(f"autocorr_{lag}h.{svc}", "temporal", f"Autocorrelation at {lag} h, {svc}", "1",
                          _SVC_KINDS[svc], "abs", 0.10,
                          f"sample autocorrelation at lag {lag} h of each cell's hourly series ({_LOAD[svc]}), "
                          f"median over cells; {_WINDOWED}; needs >= {2 * lag} h"))
    for svc in ("all", "data"):
        s.append(Spec(f"cell_load_distribution.{svc}", "cell load", f"Per-cell load distribution, {svc}",
                      "KS statistic", _SVC_KINDS[svc], "ks", 0.05,
                      f"{_LOAD[svc]}, each cell's values divided by that cell's mean, pooled over cells; "
                      f"{_WINDOWED}"))
    s.append(Spec("over_dispersion.all", "cell load", "Over-dispersion at equal count (var/mean)", "1",
                  _SVC_KINDS["all"], "rel", 0.25,
                  "var/mean of a cell's hourly record counts (diurnal cycle included), median over cells, at the "
                  "real part's median count per cell-hour m: the run's cells counted with all and with half of "
                  "the subscribers give each cell's line var/mean = D0 + k x mean, read at m (real: each cell at "
                  f"its own count); {_WINDOWED}; counts only, so no data-volume variant"))
    for svc in ("all", "data"):
        s.append(Spec(f"cell_load_p90.{svc}", "cell load", f"Cell load p90, {svc}", "x cell mean",
                      _SVC_KINDS[svc], "rel", 0.0,
                      f"90th percentile of the normalised per-cell load ({_LOAD[svc]}); {_WINDOWED}", tail=0.10))
        s.append(Spec(f"cell_load_p99.{svc}", "cell load", f"Cell load p99, {svc}", "x cell mean",
                      _SVC_KINDS[svc], "rel", 0.0,
                      f"99th percentile of the normalised per-cell load ({_LOAD[svc]}); {_WINDOWED}", tail=0.20))
        s.append(Spec(f"cell_load_exceedance.{svc}", "cell load", f"Exceedance rate > {EXCEEDANCE_X:g}x mean, {svc}",
                      "share of cell-hours", _SVC_KINDS[svc], "rel", 0.0,
                      f"share of cell-hours whose load exceeds {EXCEEDANCE_X:g} x the cell's mean ({_LOAD[svc]}); "
                      f"{_WINDOWED}", tail=0.20))
    loc = ("locations",)
    s += [
        Spec("radius_of_gyration_median", "mobility", "Radius of gyration, median", "km", loc, "rel", 0.15,
             "daily radius of gyration per subscriber-day (run: cell positions sampled every 10 min; real: "
             "GPS fixes), median over subscriber-days"),
        Spec("radius_of_gyration_p90", "mobility", "Radius of gyration, p90", "km", loc, "rel", 0.20,
             "as above, 90th percentile"),
        Spec("distinct_locations_per_day", "mobility", "Distinct locations per day, median", "locations",
             loc, "rel", 0.15, "distinct cells (real: 250 m grid cells) per subscriber-day, median"),
        Spec("top_location_share", "mobility", "Top-location share, median", "share", loc, "rel", 0.10,
             "share of a day's samples in its most frequent location, median over subscriber-days"),
        Spec("move_probability", "mobility", "Hourly move probability, mean", "probability", loc, "rel", 0.15,
             "P(modal location of hour h+1 != that of hour h), mean of the 24 hourly values"),
    ]
    drv = ("drive",)
    s += [
        Spec("handover_rate_moving", "handover", "Handover rate while moving", "1/min", drv, "rel", 0.15,
             "serving-cell changes per minute of moving time: changes < 5 min apart form a moving "
             "episode (real: within Driving traces)"),
        Spec("dwell_time_median", "handover", "Dwell time per cell while moving, median", "s", drv, "rel", 0.15,
             "time between consecutive cell changes while moving, median"),
        Spec("ping_pong_share", "handover", "Ping-pong share", "share", drv, "rel", 0.20,
             "share of cell changes back to the previous cell within 10 s"),
    ]
    use = ("edges", "cdr")
    s += [
        Spec("call_duration_median", "usage", "Call duration, median", "s", use, "rel", 0.10,
             "duration of answered calls (run: completed MO voice; edges: Weight > 1 s), median"),
        Spec("call_duration_distribution", "usage", "Call duration distribution", "KS statistic", use, "ks",
             0.05, "distribution of answered-call durations (two-sample KS)"),
        Spec("sms_call_ratio", "usage", "SMS:call ratio", "1", use, "rel", 0.15,
             "MO SMS / MO call attempts (edges: SMS rows / call rows)"),
        Spec("contact_concentration", "usage", "Contact concentration", "share", use, "rel", 0.10,
             "share of calls on the top 10% directed (caller, callee) pairs (run: MO voice, on-net)"),
        Spec("burstiness", "usage", "Inter-event burstiness B", "1", ("cdr",), "abs", 0.05,
             f"Goh-Barabasi B = (sd - mean) / (sd + mean) of a subscriber's inter-event times (all records), "
             f"median over subscribers with >= {BURST_MIN_EVENTS} records; needs timestamped per-subscriber "
             "records (a cdr set): none of the public real sets has them"),
    ]
    return s


SPECS: list[Spec] = _specs()
SPEC_BY_NAME = {s.name: s for s in SPECS}

# The gate's default: the figures the run's profile takes from real data (its [gate] required,
# written to the run's manifest), which a run with that profile should reproduce; this list for a
# run whose profile names none. Emergent figures (cell load, dispersion, tails, rg, dwell) inform.
DEFAULT_REQUIRED = ("hourly_profile.voice", "hourly_profile.sms", "hourly_profile.data",
                    "call_duration_median", "sms_call_ratio", "contact_concentration",
                    "handover_rate_moving", "ping_pong_share", "move_probability")


# --------------------------------------------------------------------------
# numeric helpers
# --------------------------------------------------------------------------


def _mean_one(v) -> list[float] | None:
    v = np.asarray(v, float)
    ok = np.isfinite(v)
    if not ok.any() or v[ok].mean() <= 0:
        return None
    return list(np.where(ok, v / v[ok].mean(), np.nan))


def ks_distance(a, b) -> float:
    from scipy.stats import ks_2samp  # lazy: scipy.stats takes seconds to import

    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return float("nan")
    return float(ks_2samp(a, b).statistic)


def distance(kind: str, syn, real, ref=None) -> float:
    """Distance of ``kind`` between two values; "rel" divides by ``ref`` (default ``real``)."""
    if syn is None or real is None:
        return float("nan")
    if kind == "tv":
        return tv_distance(syn, real)
    if kind == "ks":
        return ks_distance(syn, real)
    syn, real = float(syn), float(real)
    if kind == "abs":
        return abs(syn - real)
    ref = abs(float(real if ref is None else ref))
    return abs(syn - real) / ref if ref > 0 else float("nan")


def burstiness(sub: np.ndarray, t_s: np.ndarray, min_events: int = BURST_MIN_EVENTS) -> float:
    """Median over subscribers with >= ``min_events`` events of B = (sd - mean) / (sd + mean) of
    their inter-event times (Goh & Barabasi 2008); NaN when no subscriber qualifies."""
    if not len(sub):
        return float("nan")
    order = np.lexsort((t_s, sub))
    s, t = sub[order], t_s[order].astype(float)
    same = s[1:] == s[:-1]
    gap, who = np.diff(t)[same], s[1:][same]
    ids, inv, n = np.unique(who, return_inverse=True, return_counts=True)
    keep = n >= min_events - 1
    if not keep.any():
        return float("nan")
    mean = np.bincount(inv, gap) / n
    var = np.bincount(inv, (gap - mean[inv]) ** 2) / n
    sd = np.sqrt(var)
    den = sd + mean
    b = np.where(den > 0, (sd - mean) / np.where(den > 0, den, 1), np.nan)[keep]
    return float(np.nanmedian(b)) if np.isfinite(b).any() else float("nan")


def acf_median(x: np.ndarray, lag: int) -> float:
    """Median over rows of the sample autocorrelation at ``lag`` of each row (hourly series, NaN =
    missing): mean of products of deviations over the pairs present, over the row's variance.
    Rows with zero variance or fewer than ``lag`` pairs are left out."""
    x = np.asarray(x, float)
    if x.ndim != 2 or x.shape[1] < MIN_ACF_PAIRS_PER_LAG * lag:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(x, axis=1, keepdims=True)
        d = x - m
        var = np.nanmean(d**2, axis=1)
        prod = d[:, :-lag] * d[:, lag:]
        n = np.isfinite(prod).sum(axis=1)
        cov = np.nansum(prod, axis=1) / np.where(n > 0, n, 1)
        r = cov / var
    ok = (var > 0) & (n >= lag) & np.isfinite(r)
    return float(np.median(r[ok])) if ok.any() else float("nan")


def normalised_loads(x: np.ndarray) -> np.ndarray:
    """Each row (a cell's hourly loads, NaN = missing) divided by its mean; pooled finite values of
    the rows with a positive mean."""
    x = np.asarray(x, float)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(x, axis=1, keepdims=True)
    ok = (m[:, 0] > 0) & np.isfinite(m[:, 0])
    v = (x[ok] / m[ok]).ravel()
    return v[np.isfinite(v)]


def dispersion_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (ddof 1) of each row's finite values; NaN for rows with fewer than 2 values
    or a mean that is not positive (rows stay aligned with ``x``)."""
    x = np.asarray(x, float)
    n = np.isfinite(x).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(x, axis=1)
        variances = np.nanvar(x, axis=1, ddof=1)
    bad = (n < 2) | ~(means > 0)
    return np.where(bad, np.nan, means), np.where(bad, np.nan, variances)


def dispersion_at(stats, m: float | None = None) -> float:
    """Median over rows (cells) of var/mean, at the expected count ``m`` per cell-hour where the
    figures of a half of the subscribers are given, else at each row's own count.

    ``stats``: (means, variances) of the rows with all subscribers, optionally followed by the same
    of the rows with half of them (those with an even id). For a cell whose subscribers act
    independently under a common rate profile, var/mean = D0 + k x mean: D0 is each subscriber's
    own clustering of records (bursts; 1 for a Poisson subscriber), k the squared coefficient of
    variation of the common rate (the diurnal cycle and whatever else all subscribers share). A
    cell with fewer subscribers, like a 235 m Milan square against a run's cell, is the same line
    at a smaller mean: the two scales give D0 and k per cell, and the figure at ``m`` is read off
    the line (what keeping a share m / mean of the subscribers gives)."""
    means, variances = np.asarray(stats[0], float), np.asarray(stats[1], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = variances / means
        if m is not None and len(stats) == 4 and stats[2] is not None:
            hm, hv = np.asarray(stats[2], float), np.asarray(stats[3], float)
            dh = hv / hm
            k = (d - dh) / (means - hm)
            d = d + k * (m - means)
    d = d[np.isfinite(d)]
    return float(np.median(d)) if len(d) else float("nan")


def residual_dispersion(x: np.ndarray) -> float:
    """Median over rows of var/mean of the hourly values about the row's own hour-of-week mean
    (column ``j`` is hour ``j % 168`` of the row's week; NaN = missing): what is left of a cell's
    variation once its weekly cycle is taken out. For counts of events that happen independently
    this is at least about 1 (Poisson); clustered events give more. A figure well below 1 says the
    values are not such counts (e.g. counts rescaled by a constant below 1), and then var/mean
    depends on the unit. NaN with fewer than two weeks of hours (one value per hour of week)."""
    x = np.asarray(x, float)
    if x.ndim != 2 or x.shape[1] < 2 * 168:
        return float("nan")
    w = x.shape[1] // 168 * 168
    wk = x[:, :w].reshape(x.shape[0], -1, 168)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n = np.isfinite(wk).sum(axis=1)  # rows x 168: weeks with a value at each hour of week
        prof = np.nanmean(wk, axis=1, keepdims=True)
        ss = np.nansum((wk - prof) ** 2, axis=(1, 2))
        dof = np.where(n >= 2, n - 1, 0).sum(axis=1)
        mean = np.nanmean(np.where(n[:, None, :] >= 2, wk, np.nan), axis=(1, 2))
        d = ss / dof / mean
    d = d[np.isfinite(d) & (dof >= 168)]
    return float(np.median(d)) if len(d) else float("nan")


def in_windows(x: np.ndarray, hours: int | None) -> np.ndarray:
    """Rows (cells' hourly series, NaN = missing) cut into consecutive windows of ``hours`` from
    each row's first column, each window a row of its own; an incomplete last window is dropped,
    and a window with fewer than :data:`MIN_WINDOW_SHARE` of its hours finite is set to NaN.
    ``hours`` None, or longer than the series: the rows as they are."""
    x = np.asarray(x, float)
    if hours is None or x.ndim != 2 or x.shape[1] < hours:
        return x
    k = x.shape[1] // hours
    w = x[:, :k * hours].reshape(-1, hours).copy()
    w[np.isfinite(w).sum(axis=1) < MIN_WINDOW_SHARE * hours] = np.nan
    return w


def _load_features(mat: np.ndarray, svc: str, window_hours: int | None = None,
                   half: np.ndarray | None = None) -> dict[str, Any]:
    """Cell-load figures of a cells x hours matrix (NaN = missing), each row cut into windows of
    ``window_hours`` first (:func:`in_windows`); ``half``: the same matrix of the records of half of
    the subscribers, for the over-dispersion at a common count (:func:`dispersion_at`)."""
    whole = mat
    mat = in_windows(mat, window_hours)
    norm = normalised_loads(mat)
    out = {f"cell_load_distribution.{svc}": norm,
           f"autocorr_24h.{svc}": acf_median(mat, 24),
           f"autocorr_168h.{svc}": acf_median(mat, 168),
           f"cell_load_p90.{svc}": float(np.quantile(norm, 0.9)) if len(norm) else float("nan"),
           f"cell_load_p99.{svc}": float(np.quantile(norm, 0.99)) if len(norm) else float("nan"),
           f"cell_load_exceedance.{svc}": float((norm > EXCEEDANCE_X).mean()) if len(norm) else float("nan")}
    if svc == "all":
        # with a half of the subscribers the value depends on the real part's count m, which
        # evaluate gives; the per-row figures are kept for that
        stats = dispersion_stats(mat)
        if half is not None:
            stats = stats + dispersion_stats(in_windows(half, window_hours))
        out["_dispersion.all"] = stats
        out["over_dispersion.all"] = dispersion_at(stats)
        out["_residual_dispersion.all"] = residual_dispersion(whole)
    return out


def week_coverage(window: Window) -> np.ndarray:
    """How many hours of the window fall on each hour of week (weekday*24 + hour, Mon=0)."""
    dow0 = (int(window.t0.astype("datetime64[D]").astype(np.int64)) + 3) % 7  # 1970-01-01 was a Thursday
    return np.bincount((dow0 * 24 + np.arange(window.hours)) % 168, minlength=168)


def fold_weekly(weekly, coverage) -> list[float] | None:
    """A weekly (168) shape folded to 24 hours with the run's coverage of the hours of week as
    weights: the hourly profile expected on the days of week the run covers."""
    w, k = np.asarray(weekly, float), np.asarray(coverage, float)
    k = np.where(np.isfinite(w), k, 0.0)
    num = np.nan_to_num(w * k).reshape(7, 24).sum(axis=0)
    den = k.reshape(7, 24).sum(axis=0)
    if (den <= 0).any():
        return None
    return _mean_one(num / den)


def _profiles(counts_by_hour: np.ndarray, t0: np.datetime64) -> tuple[list | None, list | None]:
    """Hour-of-day shape (mean over days) and hour-of-week shape (covered hours only, NaN
    elsewhere; None with fewer than 2 days) of an hourly series starting at local midnight t0."""
    n = len(counts_by_hour) // 24 * 24
    c = np.asarray(counts_by_hour[:n], float)
    if not n:
        return None, None
    hourly = _mean_one(c.reshape(-1, 24).mean(axis=0))
    if n < 48:
        return hourly, None
    dow0 = (int(t0.astype("datetime64[D]").astype(np.int64)) + 3) % 7
    wh = (dow0 * 24 + np.arange(n)) % 168
    s = np.bincount(wh, c, 168)
    k = np.bincount(wh, minlength=168)
    weekly = _mean_one(np.where(k > 0, s / np.where(k > 0, k, 1), np.nan))
    return hourly, weekly


# --------------------------------------------------------------------------
# CDR features (the run, and a real set of kind cdr, go through the same code)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Local wall-time window: ``t0`` (midnight, datetime64[s]) and ``hours``."""

    t0: np.datetime64
    hours: int


def cdr_window(c: R.CdrTable) -> Window:
    t = c.start_time.astype("datetime64[s]")
    if not len(t):
        return Window(np.datetime64("1970-01-01T00:00:00", "s"), 24)
    t0 = t.min().astype("datetime64[D]").astype("datetime64[s]")
    days = int((t.max() - t0).astype(np.int64) // 86400) + 1
    return Window(t0, days * 24)


def cdr_features(c: R.CdrTable, window: Window, keep_subscribers: np.ndarray | None = None,
                 window_hours: int | None = None) -> dict[str, Any]:
    """CDR figures of a CdrTable (optionally only some subscribers' records); per-cell load figures
    over windows of ``window_hours`` (a real set judged against a shorter run), else the whole span."""
    m = np.ones(len(c.subscriber_id), bool) if keep_subscribers is None else np.isin(c.subscriber_id,
                                                                                    keep_subscribers)
    sub, svc, dirn, out_, dur = c.subscriber_id[m], c.service[m], c.direction[m], c.outcome[m], c.duration_s[m]
    cp, cell = c.counterpart_id[m], c.cell_id[m]
    t_s = c.start_time[m].astype("datetime64[s]")
    h = ((t_s - window.t0).astype(np.int64) // 3600)
    inside = (h >= 0) & (h < window.hours)
    mo = dirn == "mo"
    masks = {"voice": (svc == "voice") & mo, "sms": (svc == "sms") & mo, "data": svc == "data",
             "all": np.ones(len(svc), bool)}
    f: dict[str, Any] = {}
    for name, mk in masks.items():
        counts = np.bincount(h[mk & inside], minlength=window.hours)
        f[f"hourly_profile.{name}"], f[f"weekly_profile.{name}"] = _profiles(counts, window.t0)
    cells = np.sort(np.asarray(c.cells)) if c.cells is not None else np.unique(c.cell_id)
    pos = np.clip(np.searchsorted(cells, cell), 0, max(len(cells) - 1, 0))
    known = inside & (len(cells) > 0) & (cells[pos] == cell) if len(cells) else inside & False
    shape = (len(cells), window.hours)

    def cell_hours(mk):
        return np.bincount(pos[mk] * window.hours + h[mk], minlength=shape[0] * shape[1]).reshape(shape).astype(float)

    for name in ("all", "data"):
        mk = known & masks[name]
        half = cell_hours(mk & (sub % 2 == 0)) if name == "all" else None  # the subscribers with an even id
        f.update(_load_features(cell_hours(mk), name, window_hours, half))
    done = masks["voice"] & (out_ == "completed") & (dur > 0)
    f["call_duration_distribution"] = dur[done]
    f["call_duration_median"] = float(np.median(dur[done])) if done.any() else float("nan")
    n_calls = int(masks["voice"].sum())
    f["sms_call_ratio"] = float(masks["sms"].sum() / n_calls) if n_calls else float("nan")
    on = masks["voice"] & (cp >= 0)
    if on.any():
        _, pair_counts = np.unique(sub[on] * (int(cp.max()) + 1) + cp[on], return_counts=True)
        f["contact_concentration"] = T._top_share(pair_counts)
    else:
        f["contact_concentration"] = float("nan")
    f["burstiness"] = burstiness(sub, t_s.astype(np.int64))
    return f


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------


class RunError(ValueError):
    """The synthetic run folder cannot be evaluated; ``problems``: one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


RUN_PARTS = ("manifest.json", "cdr", "locations", "cells.parquet", "cell_kpis.parquet")


def check_run_folder(run_dir: Path) -> list[str]:
    """Problems (one line each) that keep ``run_dir`` from being read as a run folder; cheap."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return [f"--synthetic {run_dir}: no such run folder"]
    problems = [f"--synthetic {run_dir}: missing {part}; expected a run folder written by 'telcosim run'"
                for part in RUN_PARTS if not (run_dir / part).exists()]
    if not problems:
        try:
            w = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["window"]
            pd.Timestamp(w["start"]).tz_convert(w["timezone"])
            pd.Timestamp(w["end"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"--synthetic {run_dir / 'manifest.json'}: cannot read the run window: "
                            f"{type(exc).__name__}: {exc}")
    return problems


def read_run(run_dir: Path) -> tuple[dict, R.CdrTable]:
    """The manifest and CDRs of a run folder; :class:`RunError` or ``DataError`` when unreadable."""
    run_dir = Path(run_dir)
    problems = check_run_folder(run_dir)
    if problems:
        raise RunError(problems)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return manifest, R.read_cdr(run_dir)


def run_window(manifest: dict) -> Window:
    w = manifest["window"]
    start = pd.Timestamp(w["start"]).tz_convert(w["timezone"]).tz_localize(None)
    end = pd.Timestamp(w["end"]).tz_convert(w["timezone"]).tz_localize(None)
    t0 = np.datetime64(start.normalize().to_datetime64(), "s")
    hours = int(math.ceil((np.datetime64(end.to_datetime64(), "s") - t0).astype(np.int64) / 3600))
    return Window(t0, max(hours // 24, 1) * 24)


def kpi_volume(run_dir: Path, window: Window) -> np.ndarray:
    """cells x hours matrix of data_volume_mb (downlink MB served) from cell_kpis.parquet."""
    k = pq.read_table(run_dir / "cell_kpis.parquet", columns=["interval_start", "cell_id", "data_volume_mb"])
    cells = pq.read_table(run_dir / "cells.parquet", columns=["cell_id"]).column("cell_id").to_numpy()
    t = pd.Series(k.column("interval_start").to_pandas())
    if getattr(k.column("interval_start").type, "tz", None):
        t = t.dt.tz_convert(k.column("interval_start").type.tz).dt.tz_localize(None)
    h = (t.to_numpy(dtype="datetime64[s]") - window.t0).astype(np.int64) // 3600
    pos = np.searchsorted(np.sort(cells), k.column("cell_id").to_numpy())
    ok = (h >= 0) & (h < window.hours)
    mat = np.bincount(pos[ok] * window.hours + h[ok], k.column("data_volume_mb").to_numpy()[ok],
                      minlength=len(cells) * window.hours)
    return mat.reshape(len(cells), window.hours)


@dataclass
class Synthetic:
    """Figures of a run: ``cdr`` (cdr_features, records everywhere), ``run`` (the same with data
    volume from the KPIs and mobility from run_stats) and the run's description."""

    path: str
    info: dict
    cdr: dict[str, Any]
    run: dict[str, Any]
    window: Window


def synthetic_features(run_dir: Path) -> Synthetic:
    run_dir = Path(run_dir)
    manifest, c = read_run(run_dir)
    window = run_window(manifest)
    cdr = cdr_features(c, window)
    run = dict(cdr)
    vol = kpi_volume(run_dir, window)
    hourly, weekly = _profiles(vol.sum(axis=0), window.t0)
    run["hourly_profile.data"], run["weekly_profile.data"] = hourly, weekly
    run.update(_load_features(vol, "data"))
    mob = RS.mobility_stats(run_dir)
    run.update({"radius_of_gyration_median": mob["rg_km_median"], "radius_of_gyration_p90": mob["rg_km_p90"],
                "distinct_locations_per_day": mob["distinct_locations_day_median"],
                "top_location_share": mob["top_location_share_median"],
                "move_probability": mob["move_probability_mean"],
                "move_probability_by_hour": mob["move_probability_by_hour"],
                "handover_rate_moving": mob["handover_rate_per_min_moving"],
                "dwell_time_median": mob["dwell_median_s_moving"], "ping_pong_share": mob["ping_pong_share"]})
    sc = manifest.get("scenario", {})
    info = {"path": str(run_dir), "scenario": sc.get("name"), "seed": manifest.get("seed"),
            "subscribers": manifest.get("row_counts", {}).get("subscribers"),
            "cells": manifest.get("network", {}).get("cells"), "days": window.hours // 24,
            "window": manifest.get("window"), "cdr_rows": len(c.subscriber_id),
            "profile": (manifest.get("profile") or {}).get("name"),
            "profile_gate": (manifest.get("profile") or {}).get("gate_required")}
    return Synthetic(str(run_dir), info, cdr, run, window)


# --------------------------------------------------------------------------
# real sets: features of the whole set or of a subset of its units
# --------------------------------------------------------------------------


@dataclass
class RealSource:
    """A real set's ``features(units)`` (units = None: the whole set), the units it splits by
    (None: it cannot be split) and how; ``groups``: group name -> its units, where the set has
    groups coarser than its units (None: it has not, ``group_by`` says why)."""

    kind: str
    path: str
    split_by: str
    units: np.ndarray | None
    features: Callable[[np.ndarray | None], dict[str, Any]]
    note: str = ""
    groups: dict[str, np.ndarray] | None = None
    group_by: str = ""


NO_GROUPS_UNITS = ("none coarser than the unit ({unit}): the random halves are already two disjoint groups of "
                   "{unit}s of the judged part, the size of an unseen sample of it")


def _hol(holidays) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(holidays))).normalize() if holidays else pd.DatetimeIndex([])


def milan_bands(units) -> tuple[dict[str, np.ndarray] | None, str]:
    """Areas grouped in spatial bands of :data:`MILAN_BAND_COLUMNS` grid columns when every id is a
    square of the Milan grid (integers 1 .. 10,000, numbered row by row from the south-west corner:
    column = (id - 1) mod 100, west to east); else no groups."""
    units = np.asarray(units, dtype=object)
    try:
        ids = np.array([int(str(u)) for u in units])
    except ValueError:
        return None, "none: the area ids are not squares of the Milan grid (integers 1..10000)"
    if not len(ids) or ids.min() < 1 or ids.max() > MILAN_GRID**2:
        return None, "none: the area ids are not squares of the Milan grid (integers 1..10000)"
    band = ((ids - 1) % MILAN_GRID) // MILAN_BAND_COLUMNS
    w = MILAN_BAND_COLUMNS
    groups = {f"grid columns {b * w}-{b * w + w - 1}": units[band == b] for b in np.unique(band)}
    return groups, (f"spatial band of {w} Milan grid columns (~{w * 0.235:.1f} km wide, west to east; area ids read "
                    "as Milan grid squares)")


def _activity_source(a: R.ActivityTable, holidays, window_hours: int | None = None) -> RealSource:
    hol = _hol(holidays)
    df = a.load
    if a.interval_s != 3600:
        df = df.resample("1h").sum(min_count=1)
    full = df.reindex(pd.date_range(df.index.min().normalize(), df.index.max(), freq="1h"))
    full.loc[full.index.normalize().isin(hol)] = np.nan
    col_of = {str(c): c for c in df.columns}

    def features(units):
        cols = list(df.columns) if units is None else [col_of[str(u)] for u in units]
        t = T.activity_targets(dataclasses.replace(a, load=a.load[cols]), holidays)
        f = {"hourly_profile.all": (t.get("activity.diurnal_profile") or {}).get("value", {}).get("all"),
             "weekly_profile.all": (t.get("activity.weekly_profile") or {}).get("value", {}).get("all")}
        f.update(_load_features(full[cols].to_numpy(float).T, "all", window_hours))
        return f

    units = np.asarray(list(col_of), dtype=object)
    groups, group_by = milan_bands(units)
    return RealSource("activity", a.path, "area (column)", units, features, groups=groups, group_by=group_by)


def _cells_source(c: R.CellSeries, holidays, window_hours: int | None = None) -> RealSource:
    """Units: (cell, 28-day block) as in :mod:`realdata.splits`; groups: the cells."""
    hol = _hol(holidays)
    start = min(s.index.min() for s in c.series.values()).normalize()
    end = max(s.index.max() for s in c.series.values())
    idx = pd.date_range(start, end, freq="1h")
    block = np.asarray((idx - start).days // S.CELL_BLOCK_DAYS)
    names = list(c.series)
    mat = np.vstack([s[~s.index.duplicated()].reindex(idx).to_numpy(float) for s in c.series.values()])
    mat[:, np.asarray(idx.normalize().isin(hol))] = np.nan
    row_blocks = {cell: S.cell_blocks(s, start) for cell, s in c.series.items()}
    units_of_cell = {cell: np.asarray([f"{cell}:{b}" for b in np.unique(row_blocks[cell])], dtype=object)
                     for cell in names}

    def features(units):
        if units is None:
            sub, m = c, mat
        else:
            keep = set(map(str, units))
            series, m = {}, np.full_like(mat, np.nan)
            for i, cell in enumerate(names):
                kb = [int(u.rsplit(":", 1)[1]) for u in units_of_cell[cell] if u in keep]
                rows = np.isin(row_blocks[cell], kb)
                if rows.any():
                    series[cell] = c.series[cell][rows]
                cols = np.isin(block, kb)
                m[i, cols] = mat[i, cols]
            sub = dataclasses.replace(c, series=series)
        t = T.cell_series_targets(sub, holidays)
        f = {"hourly_profile.data": (t.get("cells.diurnal_profile") or {}).get("value", {}).get("data"),
             "weekly_profile.data": (t.get("cells.weekly_profile") or {}).get("value", {}).get("data")}
        f.update(_load_features(m, "data", window_hours))
        return f

    units = np.concatenate([units_of_cell[cell] for cell in names])
    groups = {str(cell): units_of_cell[cell] for cell in names} if len(names) > 1 else None
    return RealSource("cells", c.path, f"cell and {S.CELL_BLOCK_DAYS}-day time block", units, features,
                      groups=groups, group_by="cell" if groups else "none: a single cell")


def _shares_source(s: R.ShareTables) -> RealSource:
    t = T.share_targets(s)

    def pick(value: dict, names):
        for n in names:
            if n in value:
                return value[n]
        return None

    def features(units):
        d = t["shares.diurnal_profile"]["value"]
        w = (t.get("shares.weekly_profile") or {}).get("value", {})
        return {"hourly_profile.voice": pick(d, ("calls", "voice")), "hourly_profile.sms": pick(d, ("messages", "sms")),
                "weekly_profile.voice": pick(w, ("calls", "voice")), "weekly_profile.sms": pick(w, ("messages", "sms"))}

    return RealSource("shares", s.path, "none", None, features,
                      "published aggregate shares: no rows to split, so no real-vs-real baseline; the floor is used",
                      group_by="none: published aggregates")


def drive_apps(d: R.DriveTraces, units) -> tuple[dict[str, np.ndarray] | None, str]:
    """Drive units grouped by app: the top folder of each trace's path under the set (Irish 5G:
    ``Download``, ``Amazon_Prime``). No groups when the traces lie in one folder or a unit's traces
    lie in several."""
    app: dict[str, set] = {}
    for t in d.traces:
        parts = Path(t.name).parts
        app.setdefault(t.unit, set()).add(parts[0] if len(parts) > 1 else None)
    units = np.asarray(units, dtype=object)
    of = [app.get(u, {None}) for u in units]
    if any(len(a) != 1 or None in a for a in of):
        return None, "none: the traces are not filed in one top folder (app) per unit"
    names = np.asarray([next(iter(a)) for a in of], dtype=object)
    if len(set(names)) < 2:
        return None, f"none: every trace of the judged part is in one top folder ({names[0] if len(names) else '-'})"
    return {g: units[names == g] for g in sorted(set(names))}, "app (top folder of the trace, e.g. Download, Amazon_Prime)"


def _drive_source(d: R.DriveTraces) -> RealSource:
    rows = [r for r in T._drive_rows(d) if r[2] > 0]  # traces with moving time
    units = np.array(sorted({r[0] for r in rows}), dtype=object)

    def features(keep):
        sel = rows if keep is None else [r for r in rows if r[0] in set(keep)]
        n = sum(r[1] for r in sel)
        dwell = np.concatenate([r[3] for r in sel]) if sel else np.array([])
        pp = sum(r[4] for r in sel)
        # The run's rule (calibration.run_stats): changes less than MOVING_GAP_S apart form a moving
        # episode, the rate is changes per minute of episode, i.e. 1 / the mean dwell within one.
        # (Changes / all driving minutes would also count the long dwells and the censored first and
        # last stays, which a run's location trace cannot tell from time spent at a place.)
        ep = dwell[dwell <= RS.MOVING_GAP_S]
        return {"handover_rate_moving": len(ep) / (ep.sum() / 60.0) if ep.sum() > 0 else float("nan"),
                "dwell_time_median": float(np.median(ep)) if len(ep) else float("nan"),
                "ping_pong_share": pp / n if n else float("nan")}

    what = "user" if d.unit_kind == "user" else "trace (one trace = one person)"
    groups, group_by = drive_apps(d, units)
    return RealSource("drive", d.path, f"{what}, moving traces only", units, features, groups=groups,
                      group_by=group_by)


def _locations_source(loc: R.LocationTraces) -> RealSource:
    days, key = T._user_days(loc)
    sel = set(zip(days.user, days.day, strict=True))
    cells = key.to_dict()
    rows = []
    for (u, dd, h), c in cells.items():
        if (u, dd) not in sel:
            continue
        nxt = (u, dd, h + 1) if h < 23 else (u, dd + 1, 0)
        if nxt in cells:
            rows.append((u, h, cells[nxt] != c))
    pairs = pd.DataFrame(rows, columns=["user", "hour", "moved"])

    def features(keep):
        dd = days if keep is None else days[days.user.isin(keep)]
        pp = pairs if keep is None else pairs[pairs.user.isin(keep)]
        by_hour = pp.groupby("hour").moved.mean().reindex(range(24)).to_numpy(float)

        def q(v, p):
            return float(np.quantile(v, p)) if len(v) else float("nan")

        return {"radius_of_gyration_median": q(dd.rg, 0.5), "radius_of_gyration_p90": q(dd.rg, 0.9),
                "distinct_locations_per_day": q(dd.distinct, 0.5), "top_location_share": q(dd.top, 0.5),
                "move_probability": float(np.nanmean(by_hour)) if np.isfinite(by_hour).any() else float("nan"),
                "move_probability_by_hour": list(by_hour)}

    return RealSource("locations", loc.path, "user", np.unique(days.user), features,
                      group_by=NO_GROUPS_UNITS.format(unit="user"))


def _edges_source(e: R.EdgeLists) -> RealSource:
    calls, sms = e.calls, e.sms

    def features(keep):
        c = calls if keep is None else calls[calls.source.isin(keep)]
        s = None if sms is None else (sms if keep is None else sms[sms.source.isin(keep)])
        ans = c.duration_s.to_numpy(float)
        ans = ans[ans > T.MISSED_MAX_S]
        pairs = c.groupby(["source", "target"]).size().to_numpy()
        return {"call_duration_distribution": ans,
                "call_duration_median": float(np.median(ans)) if len(ans) else float("nan"),
                "sms_call_ratio": (len(s) / len(c)) if s is not None and len(c) else float("nan"),
                "contact_concentration": T._top_share(pairs)}

    people = pd.unique(pd.concat([calls.source] + ([sms.source] if sms is not None else [])))
    return RealSource("edges", e.path, "person (as caller / sender)", np.asarray(people, dtype=object), features,
                      group_by=NO_GROUPS_UNITS.format(unit="person"))


def _cdr_source(c: R.CdrTable, window_hours: int | None = None) -> RealSource:
    window = cdr_window(c)
    return RealSource("cdr", c.path, "subscriber", np.unique(c.subscriber_id),
                      lambda keep: cdr_features(c, window, keep, window_hours),
                      group_by=NO_GROUPS_UNITS.format(unit="subscriber"))


def real_source(ds, holidays=(), window_hours: int | None = None) -> RealSource:
    """The :class:`RealSource` of a reader object; per-cell load figures of its series over windows
    of ``window_hours`` (the run's length; None: each series whole)."""
    return {"activity": lambda: _activity_source(ds, holidays, window_hours),
            "cells": lambda: _cells_source(ds, holidays, window_hours),
            "shares": lambda: _shares_source(ds), "drive": lambda: _drive_source(ds),
            "locations": lambda: _locations_source(ds), "edges": lambda: _edges_source(ds),
            "cdr": lambda: _cdr_source(ds, window_hours)}[ds.kind]()


def halves(units: np.ndarray, seed: int, i: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``units`` into two disjoint halves (split ``i`` of seed ``seed``)."""
    rng = np.random.default_rng([seed, i])
    perm = rng.permutation(len(units))
    k = len(units) // 2
    return units[np.sort(perm[:k])], units[np.sort(perm[k:])]


def leave_one_group_out(groups: dict[str, np.ndarray] | None, units) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, the group's units, the other units) for every group with units among ``units``; empty
    when fewer than two groups have units there."""
    if not groups:
        return []
    present = set(map(str, units))
    out = []
    for g, members in groups.items():
        inside = np.asarray([u for u in members if str(u) in present], dtype=object)
        if len(inside):
            mine = set(map(str, inside))
            rest = np.asarray([u for u in units if str(u) not in mine], dtype=object)
            out.append((g, inside, rest))
    return out if len(out) >= 2 and all(len(r) for _, _, r in out) else []


# --------------------------------------------------------------------------
# the evaluation
# --------------------------------------------------------------------------


def _summary_value(v) -> Any:
    """A JSON-ready form of a value: samples become quantiles and a count."""
    if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f" and len(v) > 200:
        return {"n": len(v), **{f"p{q}": float(np.quantile(v, q / 100)) for q in (10, 50, 90, 99)}}
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _finite(v) -> bool:
    if v is None:
        return False
    if isinstance(v, list | np.ndarray):
        a = np.asarray(v, float)
        return bool(len(a)) and bool(np.isfinite(a).any())
    return math.isfinite(float(v))


CONCENTRATION_MIN_DAYS = 7  # Copenhagen's pairs accumulate calls over 28 days


def _too_short(name: str, days: int) -> str | None:
    if name == "contact_concentration" and days < CONCENTRATION_MIN_DAYS:
        return (f"the run spans {days} day(s); the share of calls on the top pairs grows with the days observed "
                f"(Copenhagen's over 28), so it is compared from {CONCENTRATION_MIN_DAYS} days on")
    if name.startswith("weekly_profile") and days < 2:
        return f"the run spans {days} day(s); the weekly profile needs at least 2"
    for lag in (24, 168):
        if name.startswith(f"autocorr_{lag}h") and days * 24 < 2 * lag:
            return f"the run spans {days * 24} h; the autocorrelation at {lag} h needs at least {2 * lag} h"
    return None


def _on_run_days(f: dict, coverage: np.ndarray) -> dict:
    """A real set's figures with each hourly profile replaced, where the set has a weekly profile,
    by that weekly profile folded over the days of week the run covers (a one-day Tuesday run is
    compared with real Tuesdays, not with the all-days mean)."""
    f = dict(f)
    for svc in ("voice", "sms", "data", "all"):
        w = f.get(f"weekly_profile.{svc}")
        if w is not None and f.get(f"hourly_profile.{svc}") is not None:
            folded = fold_weekly(w, coverage)
            if folded is not None:
                f[f"hourly_profile.{svc}"] = folded
                f[f"_folded.hourly_profile.{svc}"] = True
    return f


def _own_dispersion(f: dict) -> dict:
    st = f.get("_dispersion.all")
    if st is None or not np.isfinite(st[0]).any():
        return {"var_mean": None, "count": None}
    return {"var_mean": dispersion_at(st), "count": float(np.nanmedian(st[0]))}


def _dispersion_note(basis: dict, real: dict, m: float) -> tuple[str, dict]:
    syn, rl = _own_dispersion(basis), _own_dispersion(real)
    how = ("the run's var/mean read at m from its cells' figures with all and with half of the subscribers"
           if len(basis.get("_dispersion.all", ())) == 4 else "the synthetic figure at its own count")

    def txt(d):
        return "–" if d["var_mean"] is None else f"{d['var_mean']:.3g} at {d['count']:.3g}"

    note = (f"compared at m = {m:.4g} records per cell-hour (the real part's median); {how}; var/mean at each "
            f"side's own median count: synthetic {txt(syn)}, real {txt(rl)}")
    return note, {"count": m, "synthetic_own": syn, "real_own": rl}


def _metric_value(f: dict, name: str, m_star: float | None):
    if name == "over_dispersion.all" and "_dispersion.all" in f:
        return dispersion_at(f["_dispersion.all"], m_star)
    return f.get(name)


def evaluate(run_dir: Path, datasets, required=None, splits: int = SPLITS, seed: int = SPLIT_SEED,
             holidays=(), synthetic: Synthetic | None = None, part: str = "check", salt: str = S.SALT,
             share: float = S.CHECK_SHARE) -> dict:
    """The metrics document of a run against the real ``datasets`` (reader objects, one per kind).

    ``part``: which part of every real set is judged (:mod:`realdata.splits`: ``check``, the units
    calibration does not fit on, by default; ``fit``; ``all``, e.g. for a set the project has never
    seen); baselines are computed within it. ``required``: metric names of the quality gate
    (default: the run's profile's [gate] required, from its manifest, else
    :data:`DEFAULT_REQUIRED`); an unknown name, an unknown part or a part with no unit of a set is
    a ValueError. ``synthetic`` may pass precomputed run figures."""
    kinds = [d.kind for d in datasets]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"one real set per kind, got {kinds}")
    if part not in S.PARTS:
        raise ValueError(f"part {part!r}: expected one of {', '.join(S.PARTS)}")
    judged = {}
    for d in datasets:
        try:
            judged[d.kind] = S.select(d, part, salt, share)
        except S.SplitError as exc:
            raise ValueError(str(exc)) from None
    syn = synthetic or synthetic_features(run_dir)
    explicit = required is not None
    profile_gate = syn.info.get("profile_gate")
    required = list(required if explicit else (profile_gate or DEFAULT_REQUIRED))
    unknown = [r for r in required if r not in SPEC_BY_NAME]
    if unknown:
        where = "" if explicit else f" (the run's profile {syn.info.get('profile')!r} names them in [gate] required)"
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}{where}; known: {', '.join(SPEC_BY_NAME)}")
    days = syn.info["days"]
    sources = {k: real_source(d, holidays, syn.window.hours) for k, d in judged.items()}
    cov = week_coverage(syn.window)
    real_full = {k: _on_run_days(s.features(None), cov) for k, s in sources.items()}
    split_feats: dict[str, list[tuple[dict, dict]]] = {}
    group_feats: dict[str, list[tuple[str, dict, dict]]] = {}
    real_info = {}
    for d in datasets:
        k, s = d.kind, sources[d.kind]
        n_units = 0 if s.units is None else len(s.units)
        ok = s.units is not None and n_units >= MIN_SPLIT_UNITS
        logo = leave_one_group_out(s.groups, s.units) if s.units is not None else []
        note = s.note or ("" if ok else f"only {n_units} units to split by ({s.split_by}); fewer than "
                          f"{MIN_SPLIT_UNITS}: too small to split" + ("" if logo else ", the floor is used"))
        real_info[k] = {"path": s.path, "part": S.describe(d, part, salt, share), "split_by": s.split_by,
                        "units": n_units, "splittable": ok, "splits": splits if ok else 0,
                        "seed": seed if ok else None,
                        "groups": {"by": s.group_by, "names": [g for g, _, _ in logo],
                                   "units": {g: len(inside) for g, inside, _ in logo}},
                        "note": note}
        split_feats[k] = []
        if ok:
            for i in range(splits):
                a, b = halves(s.units, seed, i)
                split_feats[k].append((_on_run_days(s.features(a), cov), _on_run_days(s.features(b), cov)))
        group_feats[k] = [(g, _on_run_days(s.features(inside), cov), _on_run_days(s.features(rest), cov))
                          for g, inside, rest in logo]

    metrics: dict[str, dict] = {}
    for spec in SPECS:
        src = next((k for k in spec.kinds if k in sources), None)
        basis = syn.cdr if src == "cdr" else syn.run
        m_star = None
        if spec.name == "over_dispersion.all" and src is not None:
            means = real_full[src].get("_dispersion.all", (np.array([np.nan]),))[0]
            m_star = float(np.nanmedian(means)) if np.isfinite(means).any() else None

        def value(f, name=spec.name, m=m_star):
            return _metric_value(f, name, m)

        sv = value(basis)
        entry = {"group": spec.group, "title": spec.title, "unit": spec.unit, "definition": spec.definition,
                 "source": src, "real_path": sources[src].path if src else None,
                 "part": real_info[src]["part"]["part"] if src else None,
                 "synthetic": _summary_value(sv), "real": None, "distance": None,
                 "distance_kind": spec.distance, "baseline": None, "floor": spec.floor, "tolerance": None,
                 "tolerance_rule": (f"{TAIL_RULE} ({spec.tail:g})" if spec.tail is not None else
                                    f"{TOLERANCE_RULE}, floor {spec.floor:g}"),
                 "tolerance_short": (f"max(2 x baseline, fixed {spec.tail:g})" if spec.tail is not None else
                                     f"max(2 x baseline, floor {spec.floor:g})"),
                 "status": "not_evaluated", "required": spec.name in required, "note": ""}
        metrics[spec.name] = entry
        short = _too_short(spec.name, days)
        if src is None:
            entry["note"] = (f"no real data: give --real with one of {', '.join(spec.kinds)}")
            continue
        rv = value(real_full[src])
        entry["real"] = _summary_value(rv)
        if short:
            entry["note"] = short
            continue
        if not _finite(sv) or not _finite(rv):
            entry["note"] = ("no synthetic value (too little data in the run)" if not _finite(sv)
                             else f"the real set ({src}) gives no value for this metric")
            continue
        d = distance(spec.distance, sv, rv)
        per_split = []
        for fa, fb in split_feats[src]:
            va, vb = value(fa), value(fb)
            if _finite(va) and _finite(vb):
                per_split.append(distance(spec.distance, va, vb, ref=rv))
        per_group = {}
        for g, fg, fr in group_feats[src]:
            vg, vr = value(fg), value(fr)
            if _finite(vg) and _finite(vr):
                per_group[g] = distance(spec.distance, vg, vr, ref=rv)
        half = float(np.median(per_split)) if per_split else None
        between = float(np.median(list(per_group.values()))) if len(per_group) >= 2 else None
        if len(per_group) < 2:
            per_group = {}
        cands = [(v, r) for v, r in ((half, "half splits"), (between, "leave one group out")) if v is not None]
        base, set_by = max(cands, key=lambda c: c[0]) if cands else (None, None)
        if spec.tail is not None:
            tol = max(2 * base, spec.tail) if base is not None else spec.tail
        else:
            tol = max(2 * base, spec.floor) if base is not None else spec.floor
        notes = []
        if real_full[src].get(f"_folded.{spec.name}"):
            days_run = [R.DAY_NAMES[d] for d in range(7) if cov[d * 24:(d + 1) * 24].sum()]
            notes.append("real hourly profile taken from its weekly profile on the run's days of week "
                         f"({', '.join(days_run)})")
        if m_star is not None:
            note, entry["at_count"] = _dispersion_note(basis, real_full[src], m_star)
            notes.append(note)
        if base is None:
            notes.append(real_info[src]["note"] or "no finite baseline from the halves: the floor is used")
        status = "pass" if d <= tol else "fail"
        resid = real_full[src].get("_residual_dispersion.all") if m_star is not None else None
        if resid is not None and np.isfinite(resid) and resid < COUNT_RESIDUAL_MIN:
            # var/mean is not scale-free: against values that are not event counts it measures the unit
            status = "not_evaluated"
            entry["real_residual_dispersion"] = resid
            notes.append(f"no verdict: the real values are not counts of independent events (about its own week, a "
                         f"real area's hourly values vary {resid:.2f} x their mean, below the {COUNT_RESIDUAL_MIN:g} "
                         "of counts; the Milan set is CDR counts rescaled by an undisclosed constant), so var/mean "
                         "against them measures their unit; the scale-free variation is cell_load_distribution.all")
        if spec.distance == "rel" and tol >= 1.0:
            # |syn - real| / real of any figure between 0 and the real one is below 1: such a
            # tolerance cannot fail it, so no verdict (the real halves or groups differ too much)
            status = "not_evaluated"
            notes.append(f"no verdict: the real set's own halves or groups differ by {base:.3g} (relative), so the "
                         f"tolerance {tol:.3g} could not fail any figure below the real one; judge it on a larger part")
        entry.update({"distance": d, "tolerance": tol, "status": status,
                      "note": "; ".join(notes),
                      "baseline": {"distance": base, "set_by": set_by, "half_splits": half, "per_split": per_split,
                                   "split_by": real_info[src]["split_by"], "groups": between,
                                   "per_group": per_group, "group_by": real_info[src]["groups"]["by"]}
                      if base is not None else None})
        if spec.name == "move_probability":
            entry["synthetic_by_hour"] = basis.get("move_probability_by_hour")
            entry["real_by_hour"] = real_full[src].get("move_probability_by_hour")

    evaluated = [m for m in metrics.values() if m["status"] != "not_evaluated"]
    failed = [n for n, m in metrics.items() if m["status"] == "fail"]
    req_failed = [n for n in required if metrics[n]["status"] == "fail"]
    req_missing = [n for n in required if metrics[n]["status"] == "not_evaluated"]
    gate_fail = req_failed + (req_missing if explicit else [])
    summary = {"metrics": len(metrics), "evaluated": len(evaluated),
               "passed": sum(m["status"] == "pass" for m in evaluated), "failed": len(failed),
               "not_evaluated": len(metrics) - len(evaluated), "failed_metrics": failed,
               "required": required,
               "required_source": "--require" if explicit else ("profile" if profile_gate else "default"),
               "required_failed": req_failed, "required_not_evaluated": req_missing,
               "gate": "fail" if gate_fail else "pass", "part": part}
    return T._clean({"schema_version": SCHEMA_VERSION, "synthetic": syn.info, "real": real_info,
                     "settings": {"part": part, "salt": salt, "check_share": round(share, 6),
                                  "splits": splits, "seed": seed, "tolerance_rule": TOLERANCE_RULE,
                                  "tail_rule": TAIL_RULE, "min_split_units": MIN_SPLIT_UNITS,
                                  "window_hours": syn.window.hours, "min_window_share": MIN_WINDOW_SHARE,
                                  "exceedance_threshold_x_mean": EXCEEDANCE_X,
                                  "holidays": [str(h) for h in holidays]},
                     "summary": summary, "metrics": metrics,
                     "plots": _plot_data(syn, sources, real_full)})


def _plot_data(syn: Synthetic, sources: dict, real_full: dict) -> dict:
    """Series for the report's plots: profiles, load CDFs, duration CDF (downsampled)."""
    out: dict[str, Any] = {"hourly": {}, "weekly": {}, "load_cdf": {}, "duration_cdf": None, "move_by_hour": None}

    def cdf(v, n=200):
        v = np.sort(np.asarray(v, float)[np.isfinite(v)])
        if not len(v):
            return None
        q = np.linspace(0, 1, n)
        return {"x": list(np.quantile(v, q)), "p": list(q)}

    for svc in ("voice", "sms", "data", "all"):
        for what, key in (("hourly", f"hourly_profile.{svc}"), ("weekly", f"weekly_profile.{svc}")):
            src = next((k for k in SPEC_BY_NAME[key].kinds if k in sources), None)
            basis = syn.cdr if src == "cdr" else syn.run
            if src and basis.get(key) is not None and real_full[src].get(key) is not None:
                out[what][svc] = {"synthetic": basis[key], "real": real_full[src][key], "source": src}
    for svc in ("all", "data"):
        key = f"cell_load_distribution.{svc}"
        src = next((k for k in SPEC_BY_NAME[key].kinds if k in sources), None)
        basis = syn.cdr if src == "cdr" else syn.run
        if src and basis.get(key) is not None and len(real_full[src].get(key, [])):
            out["load_cdf"][svc] = {"synthetic": cdf(basis[key]), "real": cdf(real_full[src][key]), "source": src}
    src = next((k for k in SPEC_BY_NAME["call_duration_distribution"].kinds if k in sources), None)
    if src:
        basis = syn.cdr if src == "cdr" else syn.run
        out["duration_cdf"] = {"synthetic": cdf(basis["call_duration_distribution"]),
                               "real": cdf(real_full[src]["call_duration_distribution"]), "source": src}
    if "locations" in sources:
        out["move_by_hour"] = {"synthetic": syn.run.get("move_probability_by_hour"),
                               "real": real_full["locations"].get("move_probability_by_hour"), "source": "locations"}
    return out
