"""Derive the embedded default behaviour profile of telcosim from real public data.

Run from the repository root::

    .venv/bin/python -m telcosim.calibration.derive_defaults --data ../shared/data \
        --out sim/data/default_profile.toml

The script reads the read-only data sets under ``--data`` (see its README.md),
computes *summary figures only* (normalised shapes, fitted parameters, rates,
medians) and writes them as TOML. No raw row is ever copied into the output.
Every section names its data set in a ``source`` key (a key of ``[sources]``,
which holds the citation) and every figure is explained by a comment.

Data sets used (folder under ``--data``: citation):

* ``milan_hourly``    Telecom Italia Big Data Challenge (Milan), Barlacchi et al.,
                      Sci. Data 2, 150055 (2015), ODbL-1.0
* ``lte_cells``       hourly data volume of three 4G LTE cells (public LTE traffic
                      set, Kaggle era, no licence stated)
* ``nodobo``          Nodobo published aggregates, Bell, McDiarmid & Irvine (2011)
* ``copenhagen``      Copenhagen Networks Study, Sapiezynski et al., Sci. Data 6,
                      315 (2019), CC BY 4.0
* ``studentlife_gps`` StudentLife, Wang et al., UbiComp 2014
* ``irish_5g``        Irish 5G drive/static traces, Raca et al., MMSys 2020, GPL-3.0
* ``app_profiles``    Sandvine Mobile Internet Phenomena 2021 (digitized), optional

The script is deterministic: it uses no random numbers at all, lists files in
sorted order and formats every number explicitly. Floats are rounded to 4
significant digits; every shape vector (hour-of-day, day-of-week) is rounded
so that its decimal values sum exactly to its length (mean exactly 1.0).

Conventions that are choices rather than facts are documented in the function
that makes them and repeated as comments in the TOML.
"""

from __future__ import annotations

import argparse
import math
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from telcosim.realdata import splits
from telcosim.sim.config import BehaviourConfig, MobilityConfig

from .run_stats import MOVING_GAP_S

# --------------------------------------------------------------------------
# citations, one per data set (written to [sources])
# --------------------------------------------------------------------------

SOURCES = {
    "milan_hourly": "Telecom Italia Big Data Challenge, Barlacchi et al., "
    "Sci. Data 2, 150055 (2015), ODbL-1.0",
    "lte_cells": "Hourly data volume of three 4G LTE cells, 2017-10-23..2018-10-22, "
    "public LTE traffic set (Kaggle era), no licence stated",
    "nodobo": "Nodobo published aggregates (27 students, 2010-2011), "
    "Bell, McDiarmid and Irvine (2011), MIT (code)",
    "copenhagen": "Copenhagen Networks Study, Sapiezynski et al., "
    "Sci. Data 6, 315 (2019), CC BY 4.0",
    "studentlife_gps": "StudentLife GPS (Dartmouth, 2013), Wang et al., UbiComp 2014",
    "irish_5g": "Irish 5G drive and static traces (Cork, 2019-2020), "
    "Raca et al., MMSys 2020, GPL-3.0",
    "national_aggregates": "NMHH (Hungarian regulator), Mobile Market Report press release, 21 Dec 2022 "
    "(calls per SIM, 2021); KSH (Hungarian Central Statistical Office) STADAT table 4.7.3 (outgoing mobile "
    "calls, minutes and SMS, 2020)",
    "app_profiles": "Sandvine Mobile Internet Phenomena Report 2021 (digitized hourly "
    "shares, from an AGPL-3.0 package's data), reference only",
}

DOW_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]

# Italian public holidays and the Christmas period inside the Milan window.
# Dec 8 (Immacolata) and Dec 24 - Jan 1 are excluded as asked; Nov 1
# (Ognissanti, a national holiday) is excluded too: it is a Friday whose
# volume and shape look like a Sunday's.
MILAN_HOLIDAYS = pd.to_datetime(
    ["2013-11-01", "2013-12-08"] + [f"2013-12-{d}" for d in range(24, 32)] + ["2014-01-01"]
)

GRID_M = 250.0  # StudentLife location grid (m)
MAX_ACCURACY_M = 250.0  # StudentLife: drop fixes less accurate than one grid cell
MIN_FIXES_PER_DAY = 20
EARTH_RADIUS_M = 6_371_008.8
PING_PONG_S = 10.0


def kept(units, part: str) -> np.ndarray:
    """Mask of the ``units`` (str ids, as :mod:`telcosim.realdata.splits` names them) that the
    derivation uses: the fit part (``part = "fit"``, the default: the check part is left for
    ``telcosim evaluate``) or every unit (``"all"``)."""
    units = [str(u) for u in units]
    if part == "all":
        return np.ones(len(units), dtype=bool)
    if part != "fit":
        raise ValueError(f"part {part!r}: expected 'fit' or 'all'")
    return ~splits.in_check(units)


# --------------------------------------------------------------------------
# small numeric helpers
# --------------------------------------------------------------------------


def _dec4(x: float) -> Decimal:
    """``x`` rounded to 4 significant digits, as an exact Decimal."""
    if x == 0 or not math.isfinite(x):
        return Decimal(0) if x == 0 else Decimal(str(x))
    d = Decimal(repr(float(x)))
    q = d.quantize(Decimal(1).scaleb(d.adjusted() - 3), rounding=ROUND_HALF_EVEN)
    if q.adjusted() != d.adjusted():  # rounded up to the next power of ten (9.9996 -> 10.00)
        q = q.quantize(Decimal(1).scaleb(q.adjusted() - 3), rounding=ROUND_HALF_EVEN)
    return q


def sig4(x: float) -> float:
    """Round a float to 4 significant digits."""
    return float(_dec4(float(x)))


def _step(d: Decimal) -> Decimal:
    """Last-digit step of a 4-significant-digit Decimal."""
    return Decimal(1).scaleb(d.adjusted() - 3)


def mean_one(values) -> np.ndarray:
    """Scale a non-negative vector to mean 1.0 (float, unrounded)."""
    v = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(v)) or v.mean() <= 0:
        raise ValueError(f"cannot normalise shape {v!r}")
    return v / v.mean()


def shape4(values) -> list[Decimal]:
    """Normalise to mean 1 and round to 4 significant digits, keeping the mean exact.

    After rounding each value, the decimal residual ``n - sum`` is a multiple of
    the finest last-digit step; it is handed out one step at a time to the value
    whose rounding moved it furthest the other way (largest remainder), so the
    decimal sum is exactly ``n`` and no value moves by more than ~1.5 steps.
    """
    v = mean_one(values)
    n = len(v)
    out = [_dec4(x) for x in v]
    exact = [Decimal(repr(float(x))) for x in v]
    residual = Decimal(n) - sum(out)
    while residual != 0:
        sign = 1 if residual > 0 else -1
        best, best_score = None, None
        for i, d in enumerate(out):
            st = _step(d)
            if st > abs(residual):
                continue
            score = sign * (exact[i] - d) / st  # how far rounding moved it the wrong way
            if best_score is None or score > best_score:
                best, best_score = i, score
        if best is None:  # cannot happen: the finest step divides the residual
            raise RuntimeError("shape rounding did not converge")
        st = _step(out[best])
        out[best] += sign * st
        residual -= sign * st
    return out


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in metres (vectorised, degrees in)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def shifted_to_midnight(df: pd.DataFrame, col: str, hour_col: str = "Hour") -> np.ndarray:
    """Values of ``col`` ordered by hour 0..23 (Nodobo tables start at 04)."""
    s = df.set_index(df[hour_col].astype(int))[col]
    if sorted(s.index) != list(range(24)):
        raise ValueError(f"expected hours 0..23, got {list(s.index)}")
    return s.reindex(range(24)).to_numpy(dtype=float)


# --------------------------------------------------------------------------
# Milan: all-services activity shape and over-dispersion
# --------------------------------------------------------------------------


def milan_activity(data: Path, part: str = "fit") -> dict:
    """Hour-of-day / day-of-week shape of Milan CDR activity (all services).

    * Hours are local time (CET; no DST change between Nov 1 and Jan 1).
    * NaN marks a whole missing day of a square; once a square goes missing it
      never comes back, so the set of reporting squares shrinks from 200 to 152
      over the window. To keep that drift out of the shapes only the 152
      squares with all 62 days are used for the shapes and the
      weekend/weekday ratio (a pooled sum over squares, so busy squares weigh more).
    * Holidays (Nov 1, Dec 8, Dec 24 - Jan 1) are excluded from all shapes,
      ratios and the dispersion figure.
    * ``hourly_var_mean_ratio``: per square, variance / mean of its hourly
      counts over all its valid non-holiday hours (the diurnal cycle included),
      median over the squares with at least 7 valid days.
    """
    df = pd.read_csv(data / "milan_hourly" / "square_hourly_load.csv", index_col=0)
    df = df.loc[:, kept(df.columns, part)]  # squares of the part (splits: unit = square)
    df.index = pd.to_datetime(df.index)
    day = df.index.normalize()
    keep = ~day.isin(MILAN_HOLIDAYS)

    complete = df.columns[df.notna().all()]
    tot = df.loc[keep, complete].sum(axis=1)  # pooled load per hour
    hours, dows = tot.index.hour, tot.index.day_of_week
    weekend = dows >= 5
    hour_wd = tot[~weekend].groupby(hours[~weekend]).mean().reindex(range(24))
    hour_we = tot[weekend].groupby(hours[weekend]).mean().reindex(range(24))
    daily = tot.groupby(tot.index.normalize()).sum()
    dow = daily.groupby(daily.index.day_of_week).mean().reindex(range(7))
    we_wd = daily[daily.index.day_of_week >= 5].mean() / daily[daily.index.day_of_week < 5].mean()

    shape_wd = mean_one(hour_wd)
    valid_days = df.notna().groupby(day).all().sum()
    sq = df.columns[valid_days >= 7]
    clean = df.loc[keep, sq]
    var_mean = (clean.var(ddof=1) / clean.mean()).median()
    # for the report only: dispersion left after removing the mean diurnal/weekly
    # cycle (var/mean within the same square, hour of day and weekday/weekend)
    key = [clean.index.hour, clean.index.day_of_week >= 5]
    resid = (clean.groupby(key).var(ddof=1) / clean.groupby(key).mean()).median().median()

    return {
        "hour_weekday": hour_wd.to_numpy(),
        "hour_weekend": hour_we.to_numpy(),
        "day_of_week": dow.to_numpy(),
        "weekend_weekday_ratio": float(we_wd),
        "peak_hour_weekday": int(np.argmax(shape_wd)),
        "trough_hour_weekday": int(np.argmin(shape_wd)),
        "peak_trough_ratio": float(shape_wd.max() / shape_wd.min()),
        "hourly_var_mean_ratio": float(var_mean),
        "_n_squares_shape": len(complete),
        "_n_squares_dispersion": len(sq),
        "_n_days": int(daily.size),
        "_residual_var_mean": float(resid),
    }


# --------------------------------------------------------------------------
# LTE cells: data-volume shape
# --------------------------------------------------------------------------


def lte_series(data: Path, part: str = "fit") -> list[tuple[str, pd.Series]]:
    """Each LTE cell's hourly MB series (sorted, duplicates dropped), restricted to its 28-day
    blocks of the part (:mod:`telcosim.realdata.splits`: unit = cell and block, blocks counted from
    the first day of any cell)."""
    files = sorted((data / "lte_cells").glob("cell_*_hourly.csv"))
    if not files:
        raise FileNotFoundError("no lte_cells/cell_*_hourly.csv")
    out = []
    for f in files:
        d = pd.read_csv(f)
        t = pd.to_datetime(d["DateTime"], format="%m/%d/%Y %H:%M")
        s = pd.Series(d["Traffic"].to_numpy(dtype=float), index=t).sort_index()
        out.append((f.stem.split("_")[1], s[~s.index.duplicated()]))
    start = min(s.index.min() for _, s in out).normalize()
    res = []
    for cell, s in out:
        blocks = splits.cell_blocks(s, start)
        m = kept([f"{cell}:{b}" for b in blocks], part)
        res.append((cell, s[m]))
    return res


def lte_data_volume(data: Path, part: str = "fit") -> dict:
    """Hourly data-volume shape of the three LTE cells.

    * ``DateTime`` is M/D/YYYY H:MM, taken as local time; ~0.3% hours are absent
      and are simply skipped (never interpolated).
    * Each cell's shape is normalised to mean 1 first, then the three cells'
      shapes are averaged, so every cell weighs the same (cell 111 carries about
      twice the volume of the others).
    * Day of week: mean daily total over complete (24-hour) days.
    * ``peak_hour`` / ``peak_trough_ratio`` use the all-days hourly shape.
    * ``hourly_log_sigma``: std of log(hourly MB) over all hours of a cell (the
      diurnal cycle included), median over the three cells.
    """
    cells = lte_series(data, part)
    wd, we, alld, dows, sigmas = [], [], [], [], []
    for _, s in cells:
        s = s.dropna()
        weekend = s.index.day_of_week >= 5
        wd.append(mean_one(s[~weekend].groupby(s.index.hour[~weekend]).mean().reindex(range(24))))
        we.append(mean_one(s[weekend].groupby(s.index.hour[weekend]).mean().reindex(range(24))))
        alld.append(mean_one(s.groupby(s.index.hour).mean().reindex(range(24))))
        by_day = s.groupby(s.index.normalize())
        daily = by_day.sum()[by_day.size() == 24]
        dows.append(mean_one(daily.groupby(daily.index.day_of_week).mean().reindex(range(7))))
        sigmas.append(float(np.log(s[s > 0]).std(ddof=1)))
    shape_all = mean_one(np.mean(alld, axis=0))
    return {
        "hour_weekday": np.mean(wd, axis=0),
        "hour_weekend": np.mean(we, axis=0),
        "day_of_week": np.mean(dows, axis=0),
        "peak_hour": int(np.argmax(shape_all)),
        "peak_trough_ratio": float(shape_all.max() / shape_all.min()),
        "hourly_log_sigma": float(np.median(sigmas)),
        "_trough_hour": int(np.argmin(shape_all)),
        "_sigmas": sigmas,
        "_cells": [c for c, _ in cells],
    }


def lte_volume_persistence(data: Path, days: int = 14, step_days: int = 7, part: str = "fit") -> dict:
    """How persistent the LTE cells' hourly data volume is around its own weekly shape, measured
    the way a run's cell series are used (``evaluation.utility``): each cell's year cut into
    ``days``-long windows (every ``step_days``; windows with > 10% hours missing skipped), each
    window divided by its own mean. The residual of an hour is its value less the window's mean at
    that hour of day and day type (Mon-Fri, Sat, Sun), scaled by sqrt(n / (n - 1)) for the n
    hours averaged. Medians over the windows:

    * ``resid_sd``: sd of the residuals (x the window's mean);
    * ``acf1``, ``acf2``: their autocorrelation at lags 1 and 2 h;
    * ``decay_per_hour``: acf2 / acf1, the hour-to-hour decay of the persistent part;
    * ``shape_sd``: how much a window's own weekday hour-of-day shape differs from the mean shape
      of all windows, beyond the sampling noise of its mean (sqrt of the variance less
      residual variance / days averaged): cells keep a daily shape of their own.

    Targets for ``behaviour.data_volume_level_*`` and ``data_volume_habit_share`` (fitted by
    simulation, see docs/evaluate.md).
    """
    L = days * 24
    wins, hours, wdays = [], None, None
    for _, s in lte_series(data, part):
        idx = pd.date_range(s.index.min().floor("D"), s.index.max(), freq="1h")
        y = s.reindex(idx).to_numpy(float)
        # windows start on the same weekday (a whole number of weeks apart) so they share a calendar
        for a in range(0, len(idx) - L + 1, 24 * step_days):
            w = y[a:a + L]
            if np.isfinite(w).mean() > 0.9:
                wins.append(w / np.nanmean(w))
                if hours is None:
                    hours, wdays = idx.hour[a:a + L].to_numpy(), idx.day_of_week[a:a + L].to_numpy()
    return {**persistence_stats(np.vstack(wins), hours, wdays), "days": days}


def persistence_stats(Y: np.ndarray, hours: np.ndarray, wdays: np.ndarray) -> dict:
    """The statistics of :func:`lte_volume_persistence` for series ``Y`` (series x hours, each
    x its own mean, NaN = missing) with local ``hours`` and ``wdays`` (Mon=0) per column: also
    for a run's cells (``evaluation.utility.run_series``)."""
    dtype = np.where(wdays < 5, 0, wdays - 4)
    key = dtype * 24 + hours
    resid = np.full_like(Y, np.nan)
    for k in np.unique(key):
        m = key == k
        n = np.isfinite(Y[:, m]).sum(axis=1, keepdims=True)
        resid[:, m] = (Y[:, m] - np.nanmean(Y[:, m], axis=1, keepdims=True)) * np.sqrt(n / np.maximum(n - 1, 1))

    def acf(lag):
        a, b = resid[:, :-lag], resid[:, lag:]
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
        return np.median((a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)))

    wd = wdays < 5
    shape = np.stack([np.nanmean(Y[:, wd & (hours == h)], axis=1) for h in range(24)], axis=1)
    noise = np.stack([np.nanvar(Y[:, wd & (hours == h)], axis=1, ddof=1) / np.sum(wd & (hours == h))
                      for h in range(24)], axis=1)
    excess = np.nanmean((shape - np.nanmean(shape, axis=0, keepdims=True)) ** 2) - np.nanmean(noise)
    a1, a2 = float(acf(1)), float(acf(2))
    return {"resid_sd": float(np.median(np.nanstd(resid, axis=1))), "acf1": a1, "acf2": a2,
            "decay_per_hour": a2 / a1, "shape_sd": float(np.sqrt(max(excess, 0.0))), "windows": len(Y)}


# --------------------------------------------------------------------------
# Nodobo: voice and SMS shapes
# --------------------------------------------------------------------------


def nodobo_services(data: Path) -> dict:
    """Voice (Calls) and SMS (Messages) shapes from the Nodobo aggregates.

    The hourly tables give the % of a service's events falling in each hour,
    starting at hour 04; they are reordered to 0..23 and normalised to mean 1.
    ``daily-all.csv`` gives % of events per weekday (Sun..Sat), reordered to
    Mon..Sun; with a study spanning many weeks each weekday occurs about equally
    often, so these are relative daily totals.
    """
    nd = data / "nodobo"
    wd = pd.read_csv(nd / "hourly-weekday.csv")
    we = pd.read_csv(nd / "hourly-weekend.csv")
    daily = pd.read_csv(nd / "daily-all.csv").set_index("Day")
    out = {}
    for service, col in (("voice", "Calls"), ("sms", "Messages")):
        out[service] = {
            "hour_weekday": shifted_to_midnight(wd, col),
            "hour_weekend": shifted_to_midnight(we, col),
            "day_of_week": daily.loc[DOW_NAMES, col].to_numpy(dtype=float),
        }
    return out


# --------------------------------------------------------------------------
# Session counts: every service on Milan's weekly cycle, data records as the residual
# --------------------------------------------------------------------------


# Published national aggregates for the "general" population (operator scale, all subscribers).
# Hungary is the one market with primary figures for calls, minutes and SMS on the same base:
NMHH_CALLS_PER_SIM_MONTH = 74.0  # NMHH (Hungarian regulator), Mobile Market Report press release of
# 21 Dec 2022: in 2021 about 9.5 million voice SIMs made 8.5 billion calls, 74 calls per SIM per month
KSH_CALLS_2020_M = 1955 + 1840 + 2089 + 1967  # KSH (Hungarian Central Statistical Office) STADAT table
KSH_SMS_2020_M = 464 + 386 + 441 + 443  # 4.7.3, 2020 quarters: outgoing mobile calls (million) and SMS
KSH_MINUTES_2020_M = 6325 + 6582 + 6702 + 7023  # (million) and call minutes (million)
NATIONAL_MEAN_CALL_S = {"HU 2020 (KSH 4.7.3)": 60.0 * KSH_MINUTES_2020_M / KSH_CALLS_2020_M,
                        "US 2010 H1 (CTIA survey, as reported)": 100.0,
                        "15 Vodafone markets 2012 (as reported)": 100.0}
DAYS_PER_MONTH = 365.0 / 12.0
POPULATIONS = ("general", "students")
DATA_PER_DAY = 15.0  # data sessions per subscriber-day: no public set counts them; telcosim's choice
ALL_RECORDS_TV_GOAL = 0.03  # all records' hour-of-week shape kept this close (TV) to Milan's: 60% of
# the evaluation's floor (0.05) for hourly_profile.all


# Evaluation metrics (evaluation/fidelity.py) whose real figures each profile takes from the data.
GATE = {
    "general": ["hourly_profile.voice", "hourly_profile.sms", "hourly_profile.data", "hourly_profile.all",
                "weekly_profile.all", "call_duration_median", "call_duration_distribution", "contact_concentration",
                "handover_rate_moving", "ping_pong_share", "move_probability"],
    "students": ["hourly_profile.voice", "hourly_profile.sms", "hourly_profile.data", "weekly_profile.voice",
                 "weekly_profile.sms", "call_duration_median", "call_duration_distribution", "sms_call_ratio",
                 "contact_concentration", "handover_rate_moving", "ping_pong_share", "move_probability"],
}


def population_rates(population: str, cph: dict) -> dict:
    """Per-day rates at activity 1 of a population, each with its source.

    * ``general``: originated calls from NMHH (74 per SIM and month), SMS per call from KSH 2020
      (SMS / outgoing calls = 0.22: messaging apps have replaced most SMS);
    * ``students``: the same calls per day (the student sets count only calls among participants,
      a lower bound), SMS per call from Copenhagen's fit part (students' phones are SMS-heavy).
    Calls and SMS received from outside the network balance those sent out of it:
    ``(1 - onnet_share)`` x originated, with the scenario's default on-net share.
    """
    onnet = BehaviourConfig().onnet_share
    voice = NMHH_CALLS_PER_SIM_MONTH / DAYS_PER_MONTH
    if population == "general":
        ratio, ratio_src = KSH_SMS_2020_M / KSH_CALLS_2020_M, "KSH 2020 SMS / outgoing calls"
    elif population == "students":
        ratio, ratio_src = cph["sms_call_ratio"], "Copenhagen SMS rows / call rows (fit part)"
    else:
        raise ValueError(f"population {population!r}: expected one of {', '.join(POPULATIONS)}")
    sms = ratio * voice
    return {"voice_per_day": voice, "sms_per_day": sms, "data_per_day": DATA_PER_DAY,
            "voice_in_offnet_per_day": (1 - onnet) * voice, "sms_in_offnet_per_day": (1 - onnet) * sms,
            "_sms_call_ratio": ratio, "_ratio_source": ratio_src, "_onnet": onnet}


def record_weights(rates: dict) -> dict[str, float]:
    """Expected CDR records per subscriber-day (activity 1) of each service with these rates:
    originated calls / SMS, their on-net terminating legs and the off-net terminating ones; data
    sessions once. Redials of blocked calls are left out (under 1% of the records in a default run)."""
    on = rates["_onnet"]
    return {"voice": rates["voice_per_day"] * (1 + on) + rates["voice_in_offnet_per_day"],
            "sms": rates["sms_per_day"] * (1 + on) + rates["sms_in_offnet_per_day"],
            "data": rates["data_per_day"]}


def _week(hour_weekday, hour_weekend, day_of_week) -> np.ndarray:
    """7 x 24 hour-of-week factors (mean 1) from mean-1 hour shapes and a mean-1 day shape."""
    hw, he, dw = mean_one(hour_weekday), mean_one(hour_weekend), mean_one(day_of_week)
    return np.array([dw[d] * (he if d >= 5 else hw) for d in range(7)])


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a) / np.sum(a), np.ravel(b) / np.sum(b)
    return 0.5 * float(np.abs(a - b).sum())


def session_shapes(nod: dict, milan: dict, lte: dict, app: np.ndarray, weights: dict[str, float],
                   population: str = "general") -> dict:
    """Count shapes of the three services.

    * Voice and SMS keep Nodobo's hour-of-day shapes (weekday, weekend). Their day of week is
      Milan's for the general population (an operator's week: weekend -12%) and Nodobo's own for
      students (Friday and Saturday calls +31% / +49%): Nodobo's is the only set that counts calls
      by weekday, but its students' Friday and Saturday are not a general population's week (nor
      the week a general network is dimensioned for).
    * Data sessions are app usage: Sandvine's mean hourly shape over application categories
      (``app``), on Milan's day of week, blended with what Milan's all-services load leaves after
      the voice and SMS records (``data(h) = (W milan(h) - w_voice voice(h) - w_sms sms(h)) /
      w_data`` with the general population's record weights): ``(1 - a) app + a residual``, with
      ``a`` the smallest share (steps of 0.01) that keeps all records together within
      ``ALL_RECORDS_TV_GOAL`` of Milan's hour-of-week shape, as the simulator runs it (a weekday
      and a weekend hour shape on a day-of-week shape). App usage alone is deeper at night and
      later in the day than Milan's records (TV about 0.09); the residual alone carries no app
      behaviour (r = 0.6 with app usage).
    * The data volume per session then follows ``lte(h) / data(h)`` (the engine's hour-of-week
      shift of the lognormal mu), so data volume still has the LTE cells' shape.
    """
    w = weights
    total = sum(w.values())
    m = _week(milan["hour_weekday"], milan["hour_weekend"], milan["day_of_week"])
    mdow = np.asarray(milan["day_of_week"], float)
    v = _week(nod["voice"]["hour_weekday"], nod["voice"]["hour_weekend"], mdow)
    s = _week(nod["sms"]["hour_weekday"], nod["sms"]["hour_weekend"], mdow)
    resid = (total * m - w["voice"] * v - w["sms"] * s) / w["data"]
    if resid.min() <= 0:
        raise ValueError(f"Milan's load less the voice and SMS records is not positive (min {resid.min():.3g})")
    app_w = _week(app, app, mdow)

    def as_run(x):  # the week the simulator runs: weekday and weekend hour shapes on a day-of-week shape
        day = x.mean(axis=1)
        return _week(x[:5].mean(axis=0) / day[:5].mean(), x[5:].mean(axis=0) / day[5:].mean(), day)

    alpha, d = 1.0, resid
    for a in np.round(np.arange(0.0, 1.0001, 0.01), 2):
        cand = (1 - a) * app_w + a * resid
        if _tv(w["voice"] * v + w["sms"] * s + w["data"] * as_run(cand), m) <= ALL_RECORDS_TV_GOAL:
            alpha, d = float(a), cand
            break
    day = d.mean(axis=1)
    out = {}
    for svc in ("voice", "sms"):
        dow = mdow if population == "general" else nod[svc]["day_of_week"]
        out[svc] = {"hour_weekday": nod[svc]["hour_weekday"], "hour_weekend": nod[svc]["hour_weekend"],
                    "day_of_week": np.asarray(dow, float)}
    out["data"] = {"hour_weekday": d[:5].mean(axis=0) / day[:5].mean(),
                   "hour_weekend": d[5:].mean(axis=0) / day[5:].mean(), "day_of_week": day}
    hw = mean_one(out["data"]["hour_weekday"])
    out["_alpha"] = alpha
    out["_tv_all_vs_milan"] = _tv(w["voice"] * v + w["sms"] * s + w["data"] * as_run(d), m)
    out["_tv_app_only"] = _tv(w["voice"] * v + w["sms"] * s + w["data"] * app_w, m)
    out["_r_app"] = float(np.corrcoef(hw, mean_one(app))[0, 1])
    out["_night_ratio"] = float(hw[2:5].max() / hw.max())
    out["_weights"] = w
    vol = _week(lte["hour_weekday"], lte["hour_weekend"], lte["day_of_week"]) / d
    out["_volume_factor_range"] = (float(vol.min()), float(vol.max()))
    return out


# --------------------------------------------------------------------------
# Copenhagen: call durations, volumes, social structure
# --------------------------------------------------------------------------

COPENHAGEN_DAYS = 28  # "4 weeks"; timestamps are stripped in this copy


def duration_mixture(answered: np.ndarray, iters: int = 2000) -> dict:
    """Two-lognormal mixture of answered call durations (s), maximum likelihood by EM in log space.

    Copenhagen's answered calls have a mode of very short calls (2-6 s: a voicemail greeting, a
    "call you back") under a broad lognormal of conversations; one lognormal fitted to both puts
    its median at 25 s against the data's 29-30 s and misses the distribution (KS ~0.09). Two
    components: ``short_share`` of calls lognormal(``short_log_mu``, ``short_log_sigma``), the rest
    lognormal(``log_mu``, ``log_sigma``). EM starts from fixed quantiles (no random numbers) and
    runs a fixed number of iterations, so the result is deterministic.
    """
    x = np.log(answered)
    w = np.array([0.2, 0.8])
    m = np.quantile(x, [0.1, 0.6])
    sd = np.array([0.5, 1.0])
    for _ in range(iters):
        dens = w[:, None] * np.exp(-0.5 * ((x[None, :] - m[:, None]) / sd[:, None]) ** 2) / sd[:, None]
        r = dens / dens.sum(axis=0, keepdims=True)
        w = r.mean(axis=1)
        m = (r * x).sum(axis=1) / r.sum(axis=1)
        sd = np.sqrt((r * (x[None, :] - m[:, None]) ** 2).sum(axis=1) / r.sum(axis=1))
    i, j = (0, 1) if m[0] < m[1] else (1, 0)
    mean = float(w[i] * np.exp(m[i] + sd[i] ** 2 / 2) + w[j] * np.exp(m[j] + sd[j] ** 2 / 2))
    return {"short_share": float(w[i]), "short_log_mu": float(m[i]), "short_log_sigma": float(sd[i]),
            "log_mu": float(m[j]), "log_sigma": float(sd[j]), "mean_s": mean}


def copenhagen(data: Path, part: str = "fit") -> dict:
    """Call/SMS volumes, call duration fit and contact concentration.

    Conventions:
    * one row of calls.csv = one call attempt, Source = caller, Target = callee
      (rows are not mirrored: identical reversed rows are as rare as chance);
      one row of sms.csv = one SMS.
    * ``Weight`` = duration in s; Weight <= 1 is taken as a missed/unanswered call.
      The lognormal is the maximum-likelihood fit (mean and population std of
      ln Weight) over answered calls only (Weight > 1).
    * per-person rates: all call attempts (missed included) or all SMS, each
      counted once (for its caller/sender), divided by the whole population
      (everyone appearing in calls.csv or sms.csv) and by 28 days. Only calls and
      SMS *among study participants* are in the data, so these are lower bounds
      on a real subscriber's volume.
    * ``sms_call_ratio`` = SMS rows / call rows (missed calls included).
    * pair concentration: directed (caller, callee) pairs, all call attempts.
    * degrees: undirected distinct contacts in the call graph (over people with
      any call) and in the SMS graph (over people with any SMS);
      ``median_contacts``: distinct contacts by call or SMS, over the population.
    * top1/top3 contact share: per caller, share of their outgoing calls going to
      their most-called 1 / 3 callees, median over callers with >= 5 calls.
    """
    calls = pd.read_csv(data / "copenhagen" / "calls.csv", sep=";")
    sms = pd.read_csv(data / "copenhagen" / "sms.csv", sep=";")
    people = pd.unique(pd.concat([calls.Source, calls.Target, sms.Source, sms.Target]))
    # the part's people (unit = person as caller / sender) and the calls and SMS they made
    people = people[kept(people, part)]
    calls = calls[kept(calls.Source, part)]
    sms = sms[kept(sms.Source, part)]
    n_people = len(people)

    answered = calls.loc[calls.Weight > 1, "Weight"].to_numpy(dtype=float)
    logw = np.log(answered)
    missed_share = float((calls.Weight <= 1).mean())

    pair_counts = calls.groupby(["Source", "Target"]).size().sort_values(ascending=False)
    k = math.ceil(0.10 * len(pair_counts))
    top10 = float(pair_counts.iloc[:k].sum() / pair_counts.sum())

    def undirected_degree(edges: pd.DataFrame) -> pd.Series:
        a = np.minimum(edges.Source, edges.Target)
        b = np.maximum(edges.Source, edges.Target)
        pairs = pd.DataFrame({"a": a, "b": b}).drop_duplicates()
        return pd.concat([pairs.a, pairs.b]).value_counts()

    deg_calls = undirected_degree(calls)
    deg_sms = undirected_degree(sms)
    deg_all = undirected_degree(pd.concat([calls[["Source", "Target"]], sms]))
    deg_all = deg_all.reindex(people, fill_value=0)

    top1, top3 = [], []
    for _, grp in calls.groupby("Source"):
        if len(grp) < 5:
            continue
        c = grp.Target.value_counts().to_numpy()  # sorted descending
        top1.append(c[:1].sum() / c.sum())
        top3.append(c[:3].sum() / c.sum())

    return {
        "duration_mixture": duration_mixture(answered),
        "duration_log_mu": float(logw.mean()),
        "duration_log_sigma": float(logw.std(ddof=0)),
        "duration_median_s": float(np.median(answered)),
        "missed_share": missed_share,
        "calls_per_person_day": len(calls) / n_people / COPENHAGEN_DAYS,
        "sms_per_person_day": len(sms) / n_people / COPENHAGEN_DAYS,
        "sms_call_ratio": len(sms) / len(calls),
        "top10pct_pairs_call_share": top10,
        "mean_degree_calls": float(deg_calls.mean()),
        "mean_degree_sms": float(deg_sms.mean()),
        "median_contacts": float(deg_all.median()),
        "top1_contact_share": float(np.median(top1)),
        "top3_contact_share": float(np.median(top3)),
        "_n_people": n_people,
        "_n_calls": len(calls),
        "_n_sms": len(sms),
        "_n_callers_ge5": len(top1),
        "_n_pairs": len(pair_counts),
    }


# --------------------------------------------------------------------------
# StudentLife: daily mobility
# --------------------------------------------------------------------------

STUDENTLIFE_TZ = "America/New_York"  # Dartmouth, Hanover NH


def studentlife_files(data: Path, part: str = "fit") -> list[Path]:
    """The users' files of the part (unit = user, ``gps_u00.csv.gz`` -> ``u00``)."""
    files = sorted((data / "studentlife_gps").glob("gps_u*.csv.gz"))
    if not files:
        raise FileNotFoundError("no studentlife_gps/gps_u*.csv.gz")
    m = kept([f.name.removeprefix("gps_").split(".")[0] for f in files], part)
    return [f for f, k in zip(files, m, strict=True) if k]


def studentlife_mobility(data: Path, part: str = "fit") -> dict:
    """Daily mobility figures per user-day from StudentLife location fixes.

    Method:
    * fixes with reported accuracy > 250 m are dropped (~2.5%: coarse cell-tower
      fixes, which would otherwise fake km-long jumps);
    * days are local calendar days (America/New_York); user-days with fewer than
      20 remaining fixes are skipped;
    * radius of gyration: RMS distance of the day's fixes (equal weight per fix)
      from their centroid, on a local equirectangular projection;
    * location: a fix snapped to a 250 m x 250 m grid cell of an equirectangular
      projection with a fixed reference latitude of 43.7 deg (Dartmouth); cell =
      (floor(x / 250 m), floor(y / 250 m));
    * top-location share: share of the day's fixes in its most frequent cell
      (fixes come at a near-regular 10-20 min cadence, so fixes ~ time);
    * hourly location: the most frequent cell among the fixes of that clock hour
      (ties -> the cell seen first); move probability for hour h: over qualifying
      user-days, share of (h, h+1) pairs where both hours have a location and it
      differs (h = 23 compares with 00 of the next day); ``move_probability_mean``
      is the mean of the 24 hourly values.
    """
    files = studentlife_files(data, part)
    lat0 = math.radians(43.7)
    m_per_deg = math.pi / 180 * EARTH_RADIUS_M
    rg, n_loc, top_share = [], [], []
    moves = np.zeros(24)
    pairs = np.zeros(24)
    n_users = 0
    for f in files:
        d = pd.read_csv(f, index_col=False, usecols=["time", "accuracy", "latitude", "longitude"])
        d = d[(d.accuracy <= MAX_ACCURACY_M) & d.latitude.notna() & d.longitude.notna()]
        d = d.sort_values("time", kind="stable")
        local = pd.to_datetime(d.time, unit="s", utc=True).dt.tz_convert(STUDENTLIFE_TZ)
        d = d.assign(
            day=local.dt.tz_localize(None).dt.normalize(),
            hour=local.dt.hour,
            cx=np.floor(d.longitude * m_per_deg * math.cos(lat0) / GRID_M).astype(np.int64),
            cy=np.floor(d.latitude * m_per_deg / GRID_M).astype(np.int64),
        )
        d["cell"] = list(zip(d.cx, d.cy, strict=True))

        # hourly location over the user's whole record: modal cell, ties -> first seen
        hourly = {}
        for (day, hour), grp in d.groupby(["day", "hour"], sort=True):
            counts = grp.cell.value_counts(sort=False)  # keeps first-seen order
            hourly[(day, hour)] = counts.index[int(np.argmax(counts.to_numpy()))]

        used = False
        for day, grp in d.groupby("day", sort=True):
            if len(grp) < MIN_FIXES_PER_DAY:
                continue
            used = True
            latm = math.radians(grp.latitude.mean())
            y = (grp.latitude - grp.latitude.mean()).to_numpy() * m_per_deg
            x = (grp.longitude - grp.longitude.mean()).to_numpy() * m_per_deg * math.cos(latm)
            rg.append(math.sqrt(np.mean(x**2 + y**2)) / 1000.0)
            counts = grp.cell.value_counts()
            n_loc.append(len(counts))
            top_share.append(counts.iloc[0] / len(grp))
            for h in range(24):
                a = hourly.get((day, h))
                nxt = (day, h + 1) if h < 23 else (day + pd.Timedelta(days=1), 0)
                b = hourly.get(nxt)
                if a is None or b is None:
                    continue
                pairs[h] += 1
                moves[h] += a != b
        n_users += used
    move_by_hour = moves / np.where(pairs > 0, pairs, np.nan)
    return {
        "rg_km_median": float(np.median(rg)),
        "rg_km_p90": float(np.percentile(rg, 90)),
        "distinct_locations_day_median": float(np.median(n_loc)),
        "top_location_share_median": float(np.median(top_share)),
        "move_probability_by_hour": move_by_hour,
        "move_probability_mean": float(np.mean(move_by_hour)),
        "_n_user_days": len(rg),
        "_n_users": n_users,
        "_min_pairs_per_hour": int(pairs.min()),
    }


def studentlife_rg_on_sites(data: Path, spacing_km: float = 0.75, part: str = "fit") -> dict:
    """Radius of gyration of the StudentLife user-days as a cell network would see them.

    A diagnostic for the comparison with a run, whose positions are site positions: every fix
    (same filters and days as :func:`studentlife_mobility`) is moved to the nearest site of a
    hexagonal lattice of ``spacing_km`` (0.75 km is about the median nearest-site distance of the
    default network: 120 sites within 9 km, denser at the centre), and the daily rg is computed
    from those positions. Four fixed lattice offsets (no random numbers), figures averaged.
    """
    files = studentlife_files(data, part)
    m_per_deg = math.pi / 180 * EARTH_RADIUS_M
    lat0 = math.radians(43.7)
    days = []
    for f in files:
        d = pd.read_csv(f, index_col=False, usecols=["time", "accuracy", "latitude", "longitude"])
        d = d[(d.accuracy <= MAX_ACCURACY_M) & d.latitude.notna() & d.longitude.notna()]
        local = pd.to_datetime(d.time, unit="s", utc=True).dt.tz_convert(STUDENTLIFE_TZ)
        day = local.dt.tz_localize(None).dt.normalize().to_numpy()
        x = (d.longitude * m_per_deg * math.cos(lat0) / 1000.0).to_numpy()
        y = (d.latitude * m_per_deg / 1000.0).to_numpy()
        for dd_ in np.unique(day):
            sel = day == dd_
            if sel.sum() >= MIN_FIXES_PER_DAY:
                days.append((x[sel], y[sel]))
    a, h = spacing_km, spacing_km * math.sqrt(3) / 2

    def snap(x, y, ox, oy):
        best = np.full(len(x), np.inf)
        sx, sy = np.zeros(len(x)), np.zeros(len(x))
        j0 = np.round((y - oy) / h)
        for dj in (-1, 0, 1):
            j = j0 + dj
            i0 = np.round((x - ox - j * a / 2) / a)
            for di in (-1, 0, 1):
                cx, cy = ox + (i0 + di) * a + j * a / 2, oy + j * h
                dist = (x - cx) ** 2 + (y - cy) ** 2
                closer = dist < best
                best, sx, sy = np.where(closer, dist, best), np.where(closer, cx, sx), np.where(closer, cy, sy)
        return sx, sy

    med, p90 = [], []
    for ox, oy in ((0.0, 0.0), (a / 2, 0.0), (0.0, h / 2), (a / 2, h / 2)):
        rg = []
        for x, y in days:
            sx, sy = snap(x, y, ox, oy)
            rg.append(math.sqrt(np.mean((sx - sx.mean()) ** 2 + (sy - sy.mean()) ** 2)))
        med.append(np.median(rg))
        p90.append(np.percentile(rg, 90))
    return {"spacing_km": spacing_km, "rg_km_median": float(np.mean(med)), "rg_km_p90": float(np.mean(p90))}


# --------------------------------------------------------------------------
# Irish 5G: handovers and throughput
# --------------------------------------------------------------------------


def _read_irish(path: Path) -> pd.DataFrame:
    d = pd.read_csv(path, na_values="-", dtype={"RAWCELLID": str}, low_memory=False)
    d["t"] = pd.to_datetime(d["Timestamp"], format="%Y.%m.%d_%H.%M.%S")
    for col in ("Longitude", "Latitude", "Speed", "DL_bitrate"):
        d[col] = pd.to_numeric(d[col], errors="coerce")
    return d


def hop_dwell_log_sigma(dwell_s, speed_log_sigma: float) -> dict:
    """The dispersion of serving-cell dwells while driving that is not trip speed, for the
    simulator's ``mobility.dwell_log_sigma`` (a mean-one lognormal factor on each hop's crossing
    time, so handovers per minute keep their mean: distance / speed).

    ``dwell_s``: the dwells that do not end in a ping-pong return (those the simulator draws
    apart, ``mobility.ping_pong_*``). Their log-sd from two quantiles, as for a lognormal:
    ln(p90 / p50) / z(0.9) (quantiles, not ln(mean / median): the 1 Hz logs round the short
    dwells and the mean hangs on a few long ones); less the spread of trip speeds that the
    simulator draws separately (``mobility.speed_log_sigma``), in quadrature.
    """
    d = np.asarray(dwell_s, float)
    p50, p90 = np.percentile(d, [50, 90])
    total = math.log(p90 / p50) / 1.2815515655446004  # standard normal 0.9 quantile
    return {"total": total, "p50": float(p50), "p90": float(p90),
            "sigma": math.sqrt(max(total * total - speed_log_sigma * speed_log_sigma, 0.0))}


def irish_handover(data: Path, part: str = "fit") -> dict:
    """Serving-cell changes and throughput from the Irish 5G traces.

    * Serving cell = RAWCELLID (ECI, unique); a handover = a change of RAWCELLID
      between consecutive rows of one trace (rows with no RAWCELLID are dropped;
      changes across RAT, e.g. LTE -> HSPA+, count too).
    * Driving = every trace under ``*/Driving/`` (Download and Amazon_Prime);
      time = last minus first timestamp per trace; distance = sum of great-circle
      steps between consecutive GPS positions.
    * Dwell: time between two consecutive handovers of one trace (first and last,
      censored, stays are not counted).
    * Ping-pong: a handover B -> A that follows A -> B within 10 s, as a share of
      all handovers.
    * The logger refreshes position (and Speed) only after ~100 m of movement
      and holds both in between, so Speed stays at its last value while the car
      stands still: distance is therefore taken from the GPS steps, not from
      integrating Speed (which gives ~1.5x more km).
    * Speed: median of the Speed column over all driving rows (stops included,
      held values as logged); the GPS-implied mean speed is reported alongside.
    * Throughput: DL_bitrate (kbps) / 1000, rows with DL_bitrate > 0, all apps.
    """
    root = data / "irish_5g"
    driving = sorted(root.glob("*/Driving/**/*.csv"))
    static = sorted(root.glob("*/Static/**/*.csv"))
    # traces of the part (unit = trace, named by its file's stem as the reader names it)
    driving = [f for f, k in zip(driving, kept([f.stem for f in driving], part), strict=True) if k]
    static = [f for f, k in zip(static, kept([f.stem for f in static], part), strict=True) if k]
    if not driving or not static:
        raise FileNotFoundError("no irish_5g Driving/Static traces")
    n_ho = n_pp = 0
    minutes = km = 0.0
    dwell, speed, dl_drive, dl_static = [], [], [], []
    dwell_hop = []  # dwells not ending in a ping-pong return
    km_speed = 0.0
    for f in driving:
        d = _read_irish(f)
        dl_drive.append(d.loc[d.DL_bitrate > 0, "DL_bitrate"].to_numpy() / 1000.0)
        speed.append(d.Speed.dropna().to_numpy())
        minutes += (d.t.iloc[-1] - d.t.iloc[0]).total_seconds() / 60.0
        g = d.dropna(subset=["Latitude", "Longitude"])
        km += (
            haversine_m(
                g.Latitude.iloc[:-1].to_numpy(),
                g.Longitude.iloc[:-1].to_numpy(),
                g.Latitude.iloc[1:].to_numpy(),
                g.Longitude.iloc[1:].to_numpy(),
            ).sum()
            / 1000
        )
        dt_s = d.t.diff().dt.total_seconds().fillna(0).to_numpy()
        km_speed += float(np.nansum(d.Speed.to_numpy() * dt_s) / 3600.0)

        c = d.dropna(subset=["RAWCELLID"]).reset_index(drop=True)
        change = np.array(c.RAWCELLID != c.RAWCELLID.shift(), dtype=bool)
        change[0] = False
        idx = np.flatnonzero(change)
        n_ho += len(idx)
        times = c.t.to_numpy()[idx]
        frm = c.RAWCELLID.to_numpy()[idx - 1]
        to = c.RAWCELLID.to_numpy()[idx]
        gaps = np.diff(times).astype("timedelta64[s]").astype(float)
        dwell.extend(gaps)
        back = (to[1:] == frm[:-1]) & (gaps <= PING_PONG_S)
        n_pp += int(back.sum())
        dwell_hop.extend(gaps[~back])
    for f in static:
        d = _read_irish(f)
        dl_static.append(d.loc[d.DL_bitrate > 0, "DL_bitrate"].to_numpy() / 1000.0)
    dwell = np.asarray(dwell)
    # The same figures by the rule a run's location trace allows (calibration.run_stats): changes
    # closer than MOVING_GAP_S form a moving episode; the rate is changes per minute of episode.
    ep = dwell[dwell <= MOVING_GAP_S]
    return {
        "rate_per_min_moving": len(ep) / (ep.sum() / 60.0),
        "dwell_median_s_moving": float(np.median(ep)),
        "dwell_p90_s_moving": float(np.percentile(ep, 90)),
        "rate_per_min_driving": n_ho / minutes,
        "rate_per_km_driving": n_ho / km,
        "dwell_median_s_driving": float(np.median(dwell)),
        "dwell_p90_s_driving": float(np.percentile(dwell, 90)),
        "ping_pong_share": n_pp / n_ho,
        "hop_dwell": hop_dwell_log_sigma(dwell_hop, MobilityConfig().speed_log_sigma),
        "speed_kmh_median_driving": float(np.median(np.concatenate(speed))),
        "dl_mbps_median_static": float(np.median(np.concatenate(dl_static))),
        "dl_mbps_median_driving": float(np.median(np.concatenate(dl_drive))),
        "_n_handovers": n_ho,
        "_minutes": minutes,
        "_km": km,
        "_km_from_speed": km_speed,
        "_n_traces": (len(driving), len(static)),
    }


# --------------------------------------------------------------------------
# Sandvine app profiles (optional)
# --------------------------------------------------------------------------


def app_mix(data: Path) -> dict:
    """Mean hourly shape over all Sandvine application categories.

    Each category file (``hour, value``, no header) is normalised to mean 1
    first, so every category weighs the same; the mean of those shapes is then
    normalised to mean 1. The report's hour axis is taken as given.
    """
    files = sorted((data / "app_profiles").glob("*.csv"))
    if not files:
        raise FileNotFoundError("no app_profiles/*.csv")
    shapes = []
    for f in files:
        d = pd.read_csv(f, header=None, names=["hour", "value"], skipinitialspace=True)
        s = d.set_index(d.hour.astype(int)).value.astype(float)
        if sorted(s.index) != list(range(24)):
            raise ValueError(f"{f.name}: expected hours 0..23")
        shapes.append(mean_one(s.reindex(range(24))))
    return {"data_hour_shape": np.mean(shapes, axis=0), "_n_categories": len(files)}


# --------------------------------------------------------------------------
# TOML output
# --------------------------------------------------------------------------


def _fmt_dec(d: Decimal) -> str:
    """Plain (no exponent) TOML float literal; trailing zeros kept (``2.000``)."""
    s = format(d, "f")
    return s if "." in s else s + ".0"


def fmt_float(x: float) -> str:
    """TOML float literal with 4 significant digits."""
    return _fmt_dec(_dec4(float(x)))


def fmt_list_str(values) -> str:
    return "[" + ", ".join(fmt_str(v) for v in values) + "]"


def fmt_shape(values) -> str:
    return "[" + ", ".join(_fmt_dec(d) for d in shape4(values)) + "]"


def fmt_list(values) -> str:
    return "[" + ", ".join(fmt_float(x) for x in values) + "]"


def fmt_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_toml(r: dict) -> str:
    """Assemble the TOML text from the derived figures in ``r``."""
    m, lte, cph = r["milan"], r["lte"], r["copenhagen"]
    mob, ho = r["mobility"], r["handover"]
    used = ["milan_hourly", "lte_cells", "nodobo", "copenhagen", "studentlife_gps", "irish_5g", "national_aggregates"]
    used.append("app_profiles")
    L: list[str] = []
    a = L.append
    pop = r["population"]
    rates, ses = r["rates"], r["sessions"]
    w = ses["_weights"]
    a(f"# telcosim embedded behaviour profile: {pop!r} population.")
    a("# GENERATED by calibration/derive_defaults.py from the public data sets listed in")
    a("# [sources]; do not edit by hand, re-run the script instead. Derived figures only,")
    a("# no raw rows. Floats have 4 significant digits; every shape vector has mean exactly")
    a("# 1.0 (hour vectors: index 0 = 00:00-00:59 local time; day_of_week: Mon..Sun).")
    a("")
    a("version = 1")
    a(f"name = {fmt_str(pop)}")
    desc = {"general": "An operator's general population: calls per day, SMS per call (national aggregates, Hungary) "
                       "and the week (Milan) of all subscribers",
            "students": "Students' phones, as the student studies saw them: SMS-heavy (Copenhagen's SMS per call) "
                        "and with the students' own week (Nodobo)"}[pop]
    a("description = " + fmt_str(
        f"{desc}; session counts by hour (Nodobo voice and SMS hours, app usage for data sessions, Milan for all "
        "records together), data volume by hour of week (LTE cells), call durations and social structure "
        "(Copenhagen), daily mobility (StudentLife) and handover statistics (Irish 5G)."))
    a("")
    a("[sources]  # data set -> citation; every `source` below names one of these keys")
    for k in used:
        a(f"{k} = {fmt_str(SOURCES[k])}")
    fp = r["fit_part"]
    a("")
    a("[fit_part]  # which rows the figures come from: the fit part of every real set (realdata/splits.py); the")
    a("# check part is left for `telcosim evaluate`. Published aggregates (Nodobo, app usage, national figures) whole.")
    a(f"part = {fmt_str(fp['part'])}")
    a(f"salt = {fmt_str(fp['salt'])}")
    a(f"check_share = {fmt_float(fp['check_share'])}")

    a("")
    a("[rates]  # per subscriber-day at activity 1 (the behaviour.*_per_day knobs take these unless set)")
    a('source = "national_aggregates"')
    a(f"voice_per_day = {fmt_float(rates['voice_per_day'])}  # originated calls: NMHH 2021, "
      f"{NMHH_CALLS_PER_SIM_MONTH:g} calls per SIM per month")
    a(f"sms_per_day = {fmt_float(rates['sms_per_day'])}  # originated SMS: {fmt_float(rates['_sms_call_ratio'])} "
      f"per call ({rates['_ratio_source']})")
    a(f"data_per_day = {fmt_float(rates['data_per_day'])}  # data sessions: no public set counts them "
      "(telcosim's choice)")
    a(f"voice_in_offnet_per_day = {fmt_float(rates['voice_in_offnet_per_day'])}  # received from other networks: "
      f"balances those sent to them, (1 - onnet_share {rates['_onnet']:g}) x originated")
    a(f"sms_in_offnet_per_day = {fmt_float(rates['sms_in_offnet_per_day'])}  # the same for SMS")

    notes = {
        "voice": "Nodobo hourly-weekday/-weekend.csv `Calls` (% of calls per hour, reordered from 04..03 to 00..23)",
        "sms": "Nodobo hourly-weekday/-weekend.csv `Messages` (% of SMS per hour, reordered from 04..03 to 00..23)",
    }
    week = "Milan's (as [activity_total])" if pop == "general" else "Nodobo's daily-all.csv (the students' week)"
    for svc in ("voice", "sms"):
        a("")
        a(f"[services.{svc}]  # {notes[svc]}; day of week: {week}")
        a('source = "nodobo"')
        a(f"hour_weekday = {fmt_shape(ses[svc]['hour_weekday'])}")
        a(f"hour_weekend = {fmt_shape(ses[svc]['hour_weekend'])}")
        a(f"day_of_week = {fmt_shape(ses[svc]['day_of_week'])}")
    a("")
    a("[services.data]  # data SESSIONS per hour: app usage ([app_mix], on Milan's day of week) blended with Milan's "
      "all-services load less the voice and SMS records")
    a(f"# of the general population (records per subscriber-day: voice {fmt_float(w['voice'])}, SMS "
      f"{fmt_float(w['sms'])}, data {fmt_float(w['data'])}): (1 - a) app + a residual, a = {ses['_alpha']:g}, the "
      f"smallest that keeps all records within TV {ALL_RECORDS_TV_GOAL:g} of Milan's week")
    a(f"# (TV {ses['_tv_all_vs_milan']:.4f}; app usage alone {ses['_tv_app_only']:.4f}). Weekday shape: r = "
      f"{ses['_r_app']:.3f} with app usage, night (02-04) at {ses['_night_ratio']:.3f} of the busiest hour.")
    a("# The volume per session follows [data_volume] / this shape, so data volume keeps the LTE cells' shape.")
    a('source = "app_profiles"')
    a(f"hour_weekday = {fmt_shape(ses['data']['hour_weekday'])}")
    a(f"hour_weekend = {fmt_shape(ses['data']['hour_weekend'])}")
    a(f"day_of_week = {fmt_shape(ses['data']['day_of_week'])}")
    a("")
    a("[gate]  # the evaluation metrics whose real figures this profile takes from the data: `telcosim evaluate "
      "--gate` requires them by default")
    a(f"required = {fmt_list_str(GATE[pop])}")

    a("")
    a(
        "[activity_total]  # Milan, all services (CDR events), check target. Local time (CET). "
        "Excludes Nov 1, Dec 8, Dec 24 - Jan 1 (holidays)"
    )
    a(
        "# and missing (NaN) square-days; shapes and ratio pool the "
        f"{m['_n_squares_shape']} squares with no missing day, over {m['_n_days']} normal days."
    )
    a('source = "milan_hourly"')
    a(f"hour_weekday = {fmt_shape(m['hour_weekday'])}")
    a(f"hour_weekend = {fmt_shape(m['hour_weekend'])}")
    a(f"day_of_week = {fmt_shape(m['day_of_week'])}")
    a(
        f"weekend_weekday_ratio = {fmt_float(m['weekend_weekday_ratio'])}  "
        "# mean weekend-day total / mean weekday total"
    )
    a(f"peak_hour_weekday = {m['peak_hour_weekday']}")
    a(f"trough_hour_weekday = {m['trough_hour_weekday']}")
    a(f"peak_trough_ratio = {fmt_float(m['peak_trough_ratio'])}  # of hour_weekday")
    a(
        f"hourly_var_mean_ratio = {fmt_float(m['hourly_var_mean_ratio'])}  # var/mean of a square's "
        f"hourly counts over all its valid hours (diurnal cycle included), median over "
        f"{m['_n_squares_dispersion']} squares with >= 7 valid days"
    )

    a("")
    a(
        "[data_volume]  # LTE cells, hourly data volume (MB): mean hourly MB per cell, each cell normalised "
        "to mean 1, then averaged over the 3 cells"
    )
    a('source = "lte_cells"')
    a(f"hour_weekday = {fmt_shape(lte['hour_weekday'])}")
    a(f"hour_weekend = {fmt_shape(lte['hour_weekend'])}")
    a(f"day_of_week = {fmt_shape(lte['day_of_week'])}  # mean daily MB over complete days")
    a(f"peak_hour = {lte['peak_hour']}  # of the all-days hourly shape")
    a(f"peak_trough_ratio = {fmt_float(lte['peak_trough_ratio'])}  # of the all-days hourly shape")
    a(
        f"hourly_log_sigma = {fmt_float(lte['hourly_log_sigma'])}  # std of ln(hourly MB) within a "
        "cell, all hours, median over the 3 cells"
    )

    a("")
    mix = cph["duration_mixture"]
    a("")
    a(
        "[voice]  # Copenhagen calls.csv; Weight = call duration (s); Weight <= 1 is taken as a "
        "missed call (probable, not documented)"
    )
    a('source = "copenhagen"')
    a("# answered calls (Weight > 1): a mixture of two lognormals, maximum likelihood (derive_defaults.duration_mixture):")
    a("# short calls (voicemail, call-backs) and conversations")
    a(f"duration_short_share = {fmt_float(mix['short_share'])}")
    a(f"duration_short_log_mu = {fmt_float(mix['short_log_mu'])}")
    a(f"duration_short_log_sigma = {fmt_float(mix['short_log_sigma'])}")
    a(f"duration_log_mu = {fmt_float(mix['log_mu'])}  # conversations (behaviour.call_duration_log_mu / _sigma "
      "replace these two)")
    a(f"duration_log_sigma = {fmt_float(mix['log_sigma'])}")
    nat = ", ".join(f"{k} {v:.0f} s" for k, v in NATIONAL_MEAN_CALL_S.items())
    a(f"duration_mean_s = {fmt_float(mix['mean_s'])}  # of the mixture; published national means: {nat}")
    a(f"single_lognormal_log_mu = {fmt_float(cph['duration_log_mu'])}  # for reference: one lognormal fitted to "
      "the same calls")
    a(f"single_lognormal_log_sigma = {fmt_float(cph['duration_log_sigma'])}")
    a(f"duration_median_s = {fmt_float(cph['duration_median_s'])}  # empirical, answered calls")
    a(f"missed_share = {fmt_float(cph['missed_share'])}  # share of call rows with Weight <= 1")
    a(
        f"calls_per_person_day = {fmt_float(cph['calls_per_person_day'])}  # all call attempts, each "
        f"once (for the caller) / {cph['_n_people']} people in calls or SMS / 28 days; "
        "calls among participants only"
    )

    a("")
    a("[sms]  # Copenhagen sms.csv, one row = one SMS; same population and period as [voice]")
    a('source = "copenhagen"')
    a(
        f"per_person_day = {fmt_float(cph['sms_per_person_day'])}  # SMS / {cph['_n_people']} "
        "people / 28 days, SMS among participants only"
    )
    a(
        f"sms_call_ratio = {fmt_float(cph['sms_call_ratio'])}  # SMS rows / call rows "
        "(missed calls included)"
    )

    a("")
    a("[social]  # Copenhagen call and SMS graphs among participants")
    a('source = "copenhagen"')
    a(
        f"top10pct_pairs_call_share = {fmt_float(cph['top10pct_pairs_call_share'])}  # share of calls "
        f"on the top 10% directed (caller, callee) pairs, {cph['_n_pairs']} pairs"
    )
    a(
        f"mean_degree_calls = {fmt_float(cph['mean_degree_calls'])}  # distinct undirected call "
        "contacts, mean over people with any call"
    )
    a(
        f"mean_degree_sms = {fmt_float(cph['mean_degree_sms'])}  # distinct undirected SMS contacts, "
        "mean over people with any SMS"
    )
    a(
        f"median_contacts = {fmt_float(cph['median_contacts'])}  # distinct contacts by call or SMS, "
        f"median over all {cph['_n_people']} people"
    )
    a(
        f"top1_contact_share = {fmt_float(cph['top1_contact_share'])}  # per caller share of outgoing "
        f"calls to the #1 callee, median over {cph['_n_callers_ge5']} callers with >= 5 calls"
    )
    a(f"top3_contact_share = {fmt_float(cph['top3_contact_share'])}  # same for the top-3 callees")

    a("")
    a(
        "[mobility]  # StudentLife GPS per user-day (local calendar day, America/New_York); fixes "
        "with accuracy > 250 m dropped,"
    )
    a(
        f"# days with < 20 fixes skipped ({mob['_n_user_days']} user-days, {mob['_n_users']} users). "
        "Location = fix snapped to a 250 m grid (equirectangular, ref. lat 43.7 deg)."
    )
    a('source = "studentlife_gps"')
    a(f"rg_km_median = {fmt_float(mob['rg_km_median'])}  # daily radius of gyration of the fixes")
    a(f"rg_km_p90 = {fmt_float(mob['rg_km_p90'])}")
    a(f"distinct_locations_day_median = {fmt_float(mob['distinct_locations_day_median'])}")
    a(
        f"top_location_share_median = {fmt_float(mob['top_location_share_median'])}  # share of the "
        "day's fixes in its most frequent cell"
    )
    a(
        "# hourly location = modal cell of the hour's fixes; P(location at h+1 != location at h) "
        "over user-days with fixes in both hours (h=23 -> next day 00)"
    )
    a(f"move_probability_by_hour = {fmt_list(mob['move_probability_by_hour'])}")
    a(f"move_probability_mean = {fmt_float(mob['move_probability_mean'])}  # mean of the 24 values")

    a("")
    a(
        "[handover]  # Irish 5G traces, serving cell = RAWCELLID, ~1 Hz rows; handover = RAWCELLID "
        f"change between consecutive rows; {ho['_n_traces'][0]} driving traces"
    )
    a(
        f"# ({ho['_minutes']:.0f} min, {ho['_km']:.0f} km by GPS, {ho['_n_handovers']} handovers), "
        f"{ho['_n_traces'][1]} static traces; Download and Amazon_Prime apps together."
    )
    a(
        "# Distance = sum of GPS steps (positions refresh every ~100 m; the held Speed column is not "
        "integrated)."
    )
    a('source = "irish_5g"')
    a(
        f"rate_per_min_moving = {fmt_float(ho['rate_per_min_moving'])}  # the rule a run's location trace allows "
        f"(calibration.run_stats): handovers closer than {MOVING_GAP_S} s form a moving episode; handovers per "
        "minute of episode"
    )
    a(f"dwell_median_s_moving = {fmt_float(ho['dwell_median_s_moving'])}  # same rule: dwells <= {MOVING_GAP_S} s")
    a(f"dwell_p90_s_moving = {fmt_float(ho['dwell_p90_s_moving'])}")
    a(
        f"rate_per_min_driving = {fmt_float(ho['rate_per_min_driving'])}  # the traces' own: all handovers / "
        "all driving minutes"
    )
    a(f"rate_per_km_driving = {fmt_float(ho['rate_per_km_driving'])}")
    a(
        f"dwell_median_s_driving = {fmt_float(ho['dwell_median_s_driving'])}  # time between "
        "consecutive handovers (censored first/last stays excluded)"
    )
    a(f"dwell_p90_s_driving = {fmt_float(ho['dwell_p90_s_driving'])}")
    a(
        f"ping_pong_share = {fmt_float(ho['ping_pong_share'])}  # handovers B->A within 10 s of "
        "A->B, share of all handovers"
    )
    hd = ho["hop_dwell"]
    a(
        f"dwell_log_sigma = {fmt_float(hd['sigma'])}  # dwells not ending in a ping-pong: p50 "
        f"{hd['p50']:g} s, p90 {hd['p90']:g} s, log-sd ln(p90/p50)/1.2816 = {fmt_float(hd['total'])}, less trip "
        "speeds' mobility.speed_log_sigma in quadrature: the data's mobility.dwell_log_sigma"
    )
    a(
        f"speed_kmh_median_driving = {fmt_float(ho['speed_kmh_median_driving'])}  # Speed column, all "
        "driving rows; the logger holds the last value while stopped, so this is high: GPS "
        f"distance / time gives a mean of {fmt_float(ho['_km'] / ho['_minutes'] * 60)} km/h; "
        "the default mobility.speed_kmh_median (sim/config.py) is this figure"
    )
    a(
        f"dl_mbps_median_static = {fmt_float(ho['dl_mbps_median_static'])}  # DL_bitrate/1000, rows "
        "with DL_bitrate > 0"
    )
    a(f"dl_mbps_median_driving = {fmt_float(ho['dl_mbps_median_driving'])}")

    am = r["app_mix"]
    a("")
    a(
        f"[app_mix]  # Sandvine MIP 2021 hourly share per application category "
        f"({am['_n_categories']} categories), each normalised to mean 1, then averaged"
    )
    a('source = "app_profiles"')
    a(f"data_hour_shape = {fmt_shape(am['data_hour_shape'])}")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------
# sanity check against the figures quoted in the data README
# --------------------------------------------------------------------------


def readme_comparison(r: dict) -> list[tuple[str, float, str]]:
    """(figure, derived value, README's quoted value) rows for the console report."""
    m, lte, cph, ho = r["milan"], r["lte"], r["copenhagen"], r["handover"]
    return [
        ("Milan peak hour (weekday)", m["peak_hour_weekday"], "12"),
        ("Milan trough hour (weekday)", m["trough_hour_weekday"], "4"),
        ("Milan peak/trough", m["peak_trough_ratio"], "~2.6"),
        ("Milan weekend/weekday", m["weekend_weekday_ratio"], "~0.89"),
        ("Milan var/mean hourly", m["hourly_var_mean_ratio"], "~8"),
        ("Milan residual var/mean (same hour)", m["_residual_var_mean"], "(info)"),
        ("LTE peak hour", lte["peak_hour"], "20"),
        ("LTE peak/trough", lte["peak_trough_ratio"], "18-28"),
        ("LTE hourly log sigma", lte["hourly_log_sigma"], "1.5-1.8"),
        ("Copenhagen lognormal mu", cph["duration_log_mu"], "~3.2"),
        ("Copenhagen lognormal sigma", cph["duration_log_sigma"], "~1.6"),
        ("Copenhagen SMS:call", cph["sms_call_ratio"], "~6.8"),
        ("Copenhagen top 10% pairs share", cph["top10pct_pairs_call_share"], "~0.45"),
        ("Irish handovers/min driving", ho["rate_per_min_driving"], "~1.2"),
        ("Irish handovers/min moving (5-min rule)", ho["rate_per_min_moving"], "-"),
        ("Irish handovers/km driving", ho["rate_per_km_driving"], "~3"),
        (
            "Irish handovers/km (km from held Speed)",
            ho["_n_handovers"] / ho["_km_from_speed"],
            "(info)",
        ),
        ("Irish dwell median s", ho["dwell_median_s_driving"], "~19"),
        ("Irish ping-pong share", ho["ping_pong_share"], "~0.24"),
    ] + ([("StudentLife rg median on 0.75 km sites", r["rg_on_sites"]["rg_km_median"], "(info)"),
          ("StudentLife rg p90 on 0.75 km sites", r["rg_on_sites"]["rg_km_p90"], "(info)")]
         if "rg_on_sites" in r else [])


def derive(data: Path, population: str = "general", part: str = "fit") -> dict:
    """Compute every figure of a population's profile from the ``part`` of each real set."""
    r = {
        "population": population,
        "milan": milan_activity(data, part),
        "lte": lte_data_volume(data, part),
        "nodobo": nodobo_services(data),
        "copenhagen": copenhagen(data, part),
        "mobility": studentlife_mobility(data, part),
        "handover": irish_handover(data, part),
        "app_mix": app_mix(data),
        "fit_part": {"part": part, "salt": splits.SALT, "check_share": splits.CHECK_SHARE},
    }
    r["rates"] = population_rates(population, r["copenhagen"])
    # data sessions' shape is the general population's blend whatever the profile (phones' app use)
    general = record_weights(population_rates("general", r["copenhagen"]))
    r["sessions"] = session_shapes(r["nodobo"], r["milan"], r["lte"], r["app_mix"]["data_hour_shape"], general,
                                   population)
    r["rg_on_sites"] = studentlife_rg_on_sites(data, part=part)  # console diagnostic, not written to the TOML
    return r


PROFILE_FILES = {"general": "sim/data/default_profile.toml", "students": "sim/data/students_profile.toml"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data"),
        help="folder holding the public data sets (default ../shared/data)",
    )
    ap.add_argument("--population", choices=POPULATIONS, default="general",
                    help="which profile to derive (default general)")
    ap.add_argument("--part", choices=("fit", "all"), default="fit",
                    help="rows of each real set to use: the fit part (default; the check part is left for "
                         "`telcosim evaluate`) or all")
    ap.add_argument("--out", type=Path, default=None,
                    help="TOML file to write (default: the embedded profile of the population, " +
                         ", ".join(PROFILE_FILES.values()) + ")")
    ap.add_argument("--quiet", action="store_true", help="do not print the README comparison")
    args = ap.parse_args(argv)

    if not (args.data / "README.md").is_file():
        ap.error(f"{args.data} does not look like the shared data folder (no README.md)")
    out = args.out or Path(PROFILE_FILES[args.population])
    results = derive(args.data, args.population, args.part)
    text = render_toml(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if not args.quiet:
        ses = results["sessions"]
        print(f"wrote {out}")
        print(f"data sessions: a = {ses['_alpha']:g}, all records TV {ses['_tv_all_vs_milan']:.4f} "
              f"(app only {ses['_tv_app_only']:.4f}), r app {ses['_r_app']:.3f}, night {ses['_night_ratio']:.3f}")
        print(f"{'figure':40s} {'derived':>10s}  README")
        for name, val, ref in readme_comparison(results):
            print(f"{name:40s} {sig4(val):>10g}  {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
