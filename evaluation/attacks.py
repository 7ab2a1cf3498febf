"""Privacy attacks on a run's trajectories, for when calibration used individual-level data.

The case (docs/evaluate.md, "Privacy"): real location traces (StudentLife GPS) are split by person
with a seeded permutation into a **training** half (the people calibration may have seen) and a
**held-out** half (people it never saw). The synthetic data is a run's per-subscriber trajectories
(``locations/`` and the cells' positions). Every attack compares what it achieves on the training
people with what it achieves, in the same way, on the held-out people (the control): the synthetic
data may well resemble people *in general*; it leaks when it resembles the *training* people more.

Records. Every trajectory is sampled on a 10-minute grid (last position carried forward for at most
an hour), positions in km from the median position of its own data set (the run's city and
Dartmouth are different places; each is centred on itself). One record per person-day with at least
:data:`MIN_SLOTS` samples: radius of gyration (km), distinct 250 m areas, top-area share, share of
hours whose modal area differs from the previous hour's, centroids (km) of the night (22-6 h),
morning (6-10 h), day (10-16 h) and evening (16-22 h), active hours (hours with an observation: a GPS fix; in a run, a location row other than the
hourly periodic update), weekday, and the 1 km home area (modal at night) and day area.

Attacks (each with its pass rule in :data:`THRESHOLDS`):

* **distance to closest record** (DCR): synthetic -> training against held-out -> training
  (quantiles), and the share of synthetic records closer to a training record than to a held-out
  one (training and held-out subsampled to the same size, so 0.5 is no leak);
* **membership inference** (distance-based): the score of a real record is minus its distance to
  the closest synthetic record; AUC of training (members) against held-out (non-members) records,
  with a 95% bootstrap interval over people;
* **singling out, linkability, inference** in the manner of anonymeter (Giomi et al., PoPETs 2023;
  a link here is two nearest synthetic records of the *same synthetic person*, since a person has
  many days): the attack's success rate on training targets against the same attack on held-out targets (the
  control) and a naive baseline; rates with Wilson 95% intervals, risk = (main - control) /
  (1 - control) with the interval propagated as anonymeter does;
* **trajectory unicity** (de Montjoye et al. 2013): draws of 4 spatio-temporal points (1 km area,
  weekday, hour) of a synthetic trace, matched against every training trace; the same for
  held-out traces as the control;
* a **canary audit** of the DP release of :mod:`calibration.targets` (the 90th percentile of the
  daily radius of gyration, an exponential-mechanism quantile): the release run many times with and
  without a planted outlier person, and an empirical lower bound on epsilon from the best threshold
  test (threshold chosen on half the trials, false positive and negative rates with Clopper-Pearson
  bounds on the other half), compared with the claimed epsilon of that release;
* the **DP ledger** of the run's manifest (``privacy_ledger``), as written by ``telcosim calibrate``.

No attack is seeded by the global RNG: everything draws from ``numpy.random.default_rng`` with the
given seed, except OpenDP's noise in the canary audit, which comes from the operating system's
secure generator and cannot be seeded (the audit's bound is therefore a random quantity).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.spatial import cKDTree

from telcosim.calibration import targets as T
from telcosim.calibration.privacy import Releaser, _dp, cap_rows

SLOT_S = 600  # sampling grid (s)
MAX_CARRY_SLOTS = 6  # a position is carried forward for at most an hour
MIN_SLOTS = 20  # samples a person-day needs to become a record
AREA_KM = 0.25  # area grid for distinct areas, top share and moves (the 250 m grid of the real figures)
COARSE_KM = 1.0  # grid of home / day areas and of the unicity points
MAX_ACCURACY_M = 250.0
KM_PER_DEG = math.pi / 180 * 6371.0088
PERIODS = {"night": (22, 23, 0, 1, 2, 3, 4, 5), "morning": (6, 7, 8, 9), "day": tuple(range(10, 16)),
           "evening": tuple(range(16, 22))}
BEHAVIOUR = ("rg_km", "distinct_areas", "top_share", "move_share", "active_hours")
PLACES = tuple(f"{p}_{a}" for p in PERIODS for a in ("x", "y"))
NUMERIC = BEHAVIOUR + PLACES
LINK_COLS = (("night_x", "night_y", "morning_x", "morning_y"), ("day_x", "day_y", "evening_x", "evening_y"))
SINGLING_COLS = ("rg_km", "distinct_areas", "top_share", "move_share", "active_hours", "weekday", "home_area",
                 "day_area")
INFERENCE_SECRETS = {"home_area": BEHAVIOUR + ("day_x", "day_y", "evening_x", "evening_y"),
                     "day_area": BEHAVIOUR + ("night_x", "night_y", "morning_x", "morning_y")}
N_ATTACKS = 2000
UNICITY_POINTS = 4
UNICITY_DRAWS = 5  # draws of 4 points per trace
CANARY_TRIALS = 400  # releases with and as many without the canary
CONFIDENCE = 0.95
SPLIT_SEED = 20240305
MAX_SYNTHETIC_PERSONS = 2000

THRESHOLDS = {
    "dcr": "share of synthetic records closer to a training than to a held-out record <= 0.60 (0.5 = no leak)",
    "mia": "AUC target 0.5 +- 0.05; high risk when the 95% interval (bootstrap over people) lies wholly "
           "outside it (distance-based membership inference, record level)",
    "singling_out": "risk <= 0.10 (anonymeter-style, multivariate predicates)",
    "linkability": "risk <= 0.10",
    "inference": "risk <= 0.10 for every secret",
    "unicity": "share of synthetic 4-point draws matching a training trace <= control share + 0.05",
    "canary": "empirical epsilon lower bound (95%) <= the release's claimed epsilon",
}
DCR_SHARE_LIMIT = 0.60
MIA_BAND = 0.05
RISK_LIMIT = 0.10
UNICITY_MARGIN = 0.05


class AttackError(ValueError):
    """Trajectories or real data that the attacks cannot use; ``problems``: one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------
# trajectories and per-person-day records
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Trajectories:
    """Observations of people: ``person`` (int codes into ``names``), ``time`` (datetime64[s], local
    wall time), ``x``/``y`` (km, east/north of the set's median position), ``active`` (the row is an
    activity observation, not a periodic update)."""

    source: str
    names: list[str]
    person: np.ndarray
    time: np.ndarray
    x: np.ndarray
    y: np.ndarray
    active: np.ndarray

    def subset(self, persons) -> Trajectories:
        keep = np.isin(self.person, np.asarray(list(persons)))
        return dataclasses.replace(self, person=self.person[keep], time=self.time[keep], x=self.x[keep],
                                   y=self.y[keep], active=self.active[keep])

    @property
    def persons(self) -> np.ndarray:
        return np.unique(self.person)


def _centre(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(x):
        return x, y
    return x - np.median(x), y - np.median(y)


def from_location_traces(loc) -> Trajectories:
    """A :class:`realdata.readers.LocationTraces` (fixes with accuracy <= 250 m) as trajectories."""
    ok = ~(loc.accuracy > MAX_ACCURACY_M)
    lat, lon = loc.lat[ok], loc.lon[ok]
    lat0 = float(np.median(lat)) if len(lat) else 0.0
    x = lon * KM_PER_DEG * math.cos(math.radians(lat0))
    y = lat * KM_PER_DEG
    x, y = _centre(x, y)
    return Trajectories(str(loc.path), list(loc.users), loc.user[ok].astype(np.int64),
                        loc.time[ok].astype("datetime64[s]"), x, y, np.ones(int(ok.sum()), bool))


def from_run(run_dir: Path, max_persons: int = MAX_SYNTHETIC_PERSONS, seed: int = SPLIT_SEED) -> Trajectories:
    """A run's location rows as trajectories of at most ``max_persons`` subscribers (a seeded sample),
    positions from ``cells.parquet`` (site x_km, y_km), times in the run's local time."""
    run_dir = Path(run_dir)
    cells = pq.read_table(run_dir / "cells.parquet", columns=["cell_id", "x_km", "y_km"]).to_pandas()
    n_sub = pq.ParquetFile(run_dir / "subscribers.parquet").metadata.num_rows
    rng = np.random.default_rng([seed, 2])
    chosen = np.sort(rng.choice(n_sub, size=min(max_persons, n_sub), replace=False)).astype(np.int32)
    loc = pq.read_table(run_dir / "locations", columns=["subscriber_id", "time", "cell_id", "reason"],
                        filters=[("subscriber_id", "in", chosen.tolist())])
    tcol = loc.column("time")
    t = pd.Series(tcol.to_pandas())
    if getattr(tcol.type, "tz", None):
        t = t.dt.tz_convert(tcol.type.tz).dt.tz_localize(None)
    cell = loc.column("cell_id").to_numpy()
    pos = cells.set_index("cell_id").reindex(cell)
    sub = loc.column("subscriber_id").to_numpy().astype(np.int64)
    active = ~np.asarray(pc.equal(pc.cast(loc.column("reason"), "string"), "periodic").to_numpy(zero_copy_only=False))
    order = np.lexsort((t.to_numpy(dtype="datetime64[s]"), sub))
    x, y = _centre(pos.x_km.to_numpy(float)[order], pos.y_km.to_numpy(float)[order])
    names = sorted(set(sub.tolist()))
    code = np.searchsorted(np.asarray(names), sub[order])
    return Trajectories(str(run_dir), [str(n) for n in names], code.astype(np.int64),
                        t.to_numpy(dtype="datetime64[s]")[order], x, y, active[order])


def jitter_copy(tr: Trajectories, km: float = 0.025, seconds: int = 60, seed: int = 1) -> Trajectories:
    """The deliberately leaky control: ``tr`` copied with Gaussian position noise (sd ``km``) and
    uniform time shifts within +-``seconds``."""
    rng = np.random.default_rng([seed, 3])
    n = len(tr.person)
    dt = rng.integers(-seconds, seconds + 1, n).astype("timedelta64[s]")
    return dataclasses.replace(tr, source=f"jittered copy of {tr.source}", time=tr.time + dt,
                               x=tr.x + rng.normal(0, km, n), y=tr.y + rng.normal(0, km, n))


def _grid(v: np.ndarray, step: float) -> np.ndarray:
    return np.floor(v / step).astype(np.int64)


def slots(tr: Trajectories) -> pd.DataFrame:
    """Samples on the 10-minute grid: columns person, day (days since epoch), slot (0..143 within
    the day), hour, x, y, area (250 m), coarse (1 km), carrying each observation forward for at
    most an hour and never past midnight."""
    ts = tr.time.astype(np.int64)
    s_abs = ts // SLOT_S
    d = pd.DataFrame({"person": tr.person, "s": s_abs, "x": tr.x, "y": tr.y})
    d = d.drop_duplicates(["person", "s"], keep="last").sort_values(["person", "s"], kind="stable")
    p, s, x, y = (d[c].to_numpy() for c in ("person", "s", "x", "y"))
    per_day = 86400 // SLOT_S
    day = s // per_day
    nxt = np.r_[s[1:], np.iinfo(np.int64).max]
    same = np.r_[(p[1:] == p[:-1]) & (day[1:] == day[:-1]), False]
    end = np.minimum(s + MAX_CARRY_SLOTS, (day + 1) * per_day)
    end = np.where(same, np.minimum(end, nxt), end)
    length = (end - s).astype(np.int64)
    idx = np.repeat(np.arange(len(s)), length)
    off = np.arange(len(idx)) - np.repeat(np.cumsum(length) - length, length)
    ss = s[idx] + off
    out = pd.DataFrame({"person": p[idx], "day": ss // per_day, "slot": ss % per_day, "x": x[idx], "y": y[idx]})
    out["hour"] = out.slot // 6
    out["area"] = _grid(out.x.to_numpy(), AREA_KM) * 1_000_003 + _grid(out.y.to_numpy(), AREA_KM)
    out["coarse"] = _grid(out.x.to_numpy(), COARSE_KM) * 1_000_003 + _grid(out.y.to_numpy(), COARSE_KM)
    return out


def records(tr: Trajectories) -> pd.DataFrame:
    """One row per person-day with at least :data:`MIN_SLOTS` samples: the features of the module
    docstring, plus ``person`` and ``day``."""
    sl = slots(tr)
    g = sl.groupby(["person", "day"], sort=True)
    n = g.size()
    keep = n[n >= MIN_SLOTS].index
    sl = sl.set_index(["person", "day"]).loc[keep].reset_index()
    if not len(sl):
        return pd.DataFrame(columns=["person", "day", *NUMERIC, "weekday", "home_area", "day_area"])
    g = sl.groupby(["person", "day"], sort=True)
    r = pd.DataFrame({"n": g.size()})
    mx, my = g.x.transform("mean"), g.y.transform("mean")
    sl["d2"] = (sl.x - mx) ** 2 + (sl.y - my) ** 2
    r["rg_km"] = np.sqrt(sl.groupby(["person", "day"], sort=True).d2.mean())
    r["distinct_areas"] = g.area.nunique().astype(float)
    r["top_share"] = sl.groupby(["person", "day", "area"]).size().groupby(level=[0, 1]).max() / r.n
    hm = sl.groupby(["person", "day", "hour", "area"]).size().reset_index(name="c")
    hm = hm.sort_values("c", ascending=False, kind="stable").drop_duplicates(["person", "day", "hour"])
    hm = hm.sort_values(["person", "day", "hour"])
    moved = (hm.area.to_numpy()[1:] != hm.area.to_numpy()[:-1])
    same = ((hm.person.to_numpy()[1:] == hm.person.to_numpy()[:-1]) & (hm.day.to_numpy()[1:] == hm.day.to_numpy()[:-1])
            & (hm.hour.to_numpy()[1:] == hm.hour.to_numpy()[:-1] + 1))
    mv = pd.DataFrame({"person": hm.person.to_numpy()[1:][same], "day": hm.day.to_numpy()[1:][same],
                       "moved": moved[same].astype(float)})
    r["move_share"] = mv.groupby(["person", "day"]).moved.mean().reindex(r.index).fillna(0.0)
    for name, hours in PERIODS.items():
        part = sl[sl.hour.isin(hours)].groupby(["person", "day"])
        r[f"{name}_x"] = part.x.mean().reindex(r.index)
        r[f"{name}_y"] = part.y.mean().reindex(r.index)
        r[f"{name}_x"] = r[f"{name}_x"].fillna(g.x.mean())
        r[f"{name}_y"] = r[f"{name}_y"].fillna(g.y.mean())
    r["home_area"] = _grid(r.night_x.to_numpy(), COARSE_KM) * 1_000_003 + _grid(r.night_y.to_numpy(), COARSE_KM)
    r["day_area"] = _grid(r.day_x.to_numpy(), COARSE_KM) * 1_000_003 + _grid(r.day_y.to_numpy(), COARSE_KM)
    act = pd.DataFrame({"person": tr.person[tr.active],
                        "day": tr.time[tr.active].astype("datetime64[D]").astype(np.int64),
                        "hour": tr.time[tr.active].astype("datetime64[h]").astype(np.int64) % 24})
    r["active_hours"] = act.drop_duplicates().groupby(["person", "day"]).size().reindex(r.index).fillna(0).astype(float)
    r = r.reset_index()
    r["weekday"] = ((r.day.to_numpy() + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
    return r[["person", "day", *NUMERIC, "weekday", "home_area", "day_area"]]


def traces(tr: Trajectories) -> dict[int, set]:
    """Per person: the set of spatio-temporal points (1 km area, weekday, hour) of the modal 1 km
    area of every hour with samples."""
    sl = slots(tr)
    hm = sl.groupby(["person", "day", "hour", "coarse"]).size().reset_index(name="c")
    hm = hm.sort_values("c", ascending=False, kind="stable").drop_duplicates(["person", "day", "hour"])
    wd = (hm.day.to_numpy() + 3) % 7
    pts = pd.DataFrame({"person": hm.person.to_numpy(), "pt": list(zip(hm.coarse.to_numpy().tolist(), wd.tolist(),
                                                                       hm.hour.to_numpy().tolist(), strict=True))})
    return {int(p): set(g.pt) for p, g in pts.groupby("person")}


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------


def wilson(k: int, n: int, conf: float = CONFIDENCE) -> tuple[float, float, float]:
    """(rate, low, high): the success rate and its Wilson score interval."""
    from scipy.stats import norm  # lazy: scipy.stats takes seconds to import

    if n == 0:
        return float("nan"), 0.0, 1.0
    z = float(norm.ppf(0.5 + conf / 2))
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return p, max(0.0, c - h), min(1.0, c + h)


def _wilson_centre(k: int, n: int, conf: float = CONFIDENCE) -> tuple[float, float]:
    """anonymeter's rate: the Wilson interval's centre and half width."""
    _, lo, hi = wilson(k, n, conf)
    return (lo + hi) / 2, (hi - lo) / 2


def risk(main: tuple[int, int], control: tuple[int, int], conf: float = CONFIDENCE) -> dict[str, float]:
    """Residual risk (main - control) / (1 - control) from (successes, attacks) of the attack on
    training targets and on control targets, with anonymeter's error propagation."""
    a, ea = _wilson_centre(*main, conf)
    c, ec = _wilson_centre(*control, conf)
    if c >= 1:
        return {"value": 0.0, "low": 0.0, "high": 1.0}
    r = (a - c) / (1 - c)
    err = math.sqrt((ea / (1 - c)) ** 2 + (ec * (1 - a) / (1 - c) ** 2) ** 2)
    return {"value": float(r), "low": float(max(0.0, r - err)), "high": float(min(1.0, r + err))}


def clopper_pearson(k: int, n: int, conf: float = CONFIDENCE) -> tuple[float, float]:
    from scipy.stats import beta  # lazy: scipy.stats takes seconds to import

    a = 1 - conf
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve of scores ``pos`` (members) against ``neg`` (ties count half)."""
    from scipy.stats import rankdata  # lazy: scipy.stats takes seconds to import

    if not len(pos) or not len(neg):
        return float("nan")
    r = rankdata(np.r_[pos, neg])
    return float((r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _scale(ref: pd.DataFrame, cols) -> np.ndarray:
    """Robust spread of each column (IQR / 1.349; the sd where the IQR is 0; else 1): people's
    rare long trips (hundreds of km) would otherwise swamp everyday differences."""
    v = ref[list(cols)].to_numpy(float)
    iqr = (np.quantile(v, 0.75, axis=0) - np.quantile(v, 0.25, axis=0)) / 1.349 if len(v) else np.ones(len(cols))
    sd = v.std(axis=0) if len(v) else np.ones(len(cols))
    return np.where(iqr > 0, iqr, np.where(sd > 0, sd, 1.0))


def _nn(ref: np.ndarray, q: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    d, i = cKDTree(ref).query(q, k=k)
    return np.asarray(d), np.asarray(i)


def _cdf(v, n: int = 101) -> dict[str, list[float]] | None:
    """Quantiles 0..1 of ``v`` in ``n`` steps, for plotting."""
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    q = np.linspace(0, 1, n)
    return {"x": np.quantile(v, q).tolist(), "p": q.tolist()}


def _q(v) -> dict[str, float]:
    v = np.asarray(v, float)
    return {f"p{p}": float(np.quantile(v, p / 100)) for p in (5, 25, 50, 75)} if len(v) else {}


# --------------------------------------------------------------------------
# attacks
# --------------------------------------------------------------------------


def dcr(train: pd.DataFrame, hold: pd.DataFrame, syn: pd.DataFrame, seed: int) -> dict[str, Any]:
    sc = _scale(train, NUMERIC)
    T_, H_, S_ = (d[list(NUMERIC)].to_numpy(float) / sc for d in (train, hold, syn))
    d_syn, _ = _nn(T_, S_)
    d_hold, _ = _nn(T_, H_)
    rng = np.random.default_rng([seed, 4])
    n = min(len(T_), len(H_))
    Ts, Hs = T_[rng.choice(len(T_), n, replace=False)], H_[rng.choice(len(H_), n, replace=False)]
    dt, _ = _nn(Ts, S_)
    dh, _ = _nn(Hs, S_)
    closer = int((dt < dh).sum() + 0.5 * (dt == dh).sum())
    share, lo, hi = wilson(closer, len(S_))
    return {"synthetic_to_training": _q(d_syn), "held_out_to_training": _q(d_hold),
            "p5_ratio": float(np.quantile(d_syn, 0.05) / np.quantile(d_hold, 0.05))
            if np.quantile(d_hold, 0.05) > 0 else None,
            "share_closer_to_training": share, "share_ci": [lo, hi], "equal_sizes": n,
            "cdf": {"synthetic_to_training": _cdf(d_syn), "held_out_to_training": _cdf(d_hold)},
            "limit": DCR_SHARE_LIMIT, "unit": "distance of features scaled by the training records' robust spread (IQR / 1.349)",
            "status": "pass" if share <= DCR_SHARE_LIMIT else "fail"}


def mia(train: pd.DataFrame, hold: pd.DataFrame, syn: pd.DataFrame, seed: int, boot: int = 200) -> dict[str, Any]:
    sc = _scale(pd.concat([train, hold]), NUMERIC)
    S_ = syn[list(NUMERIC)].to_numpy(float) / sc
    s_in, _ = _nn(S_, train[list(NUMERIC)].to_numpy(float) / sc)
    s_out, _ = _nn(S_, hold[list(NUMERIC)].to_numpy(float) / sc)
    a = auc(-s_in, -s_out)
    rng = np.random.default_rng([seed, 5])
    p_in, p_out = train.person.to_numpy(), hold.person.to_numpy()
    u_in, u_out = np.unique(p_in), np.unique(p_out)
    idx_in = {p: np.flatnonzero(p_in == p) for p in u_in}
    idx_out = {p: np.flatnonzero(p_out == p) for p in u_out}
    bs = []
    for _ in range(boot):
        bi = np.concatenate([idx_in[p] for p in rng.choice(u_in, len(u_in))])
        bo = np.concatenate([idx_out[p] for p in rng.choice(u_out, len(u_out))])
        bs.append(auc(-s_in[bi], -s_out[bo]))
    pa = auc(-pd.Series(s_in).groupby(p_in).mean().to_numpy(), -pd.Series(s_out).groupby(p_out).mean().to_numpy())
    bs_lo, bs_hi = float(np.quantile(bs, 0.025)), float(np.quantile(bs, 0.975))
    return {"auc": a, "auc_ci": [bs_lo, bs_hi],
            "person_level_auc": pa, "members": len(s_in), "non_members": len(s_out),
            "member_persons": len(u_in), "non_member_persons": len(u_out),
            "attack": "score = -distance to the closest synthetic record (features scaled by their robust spread)",
            "target": f"0.5 +- {MIA_BAND:g}", "within_target": bool(abs(a - 0.5) <= MIA_BAND),
            "limit": f"fail when the 95% interval lies wholly outside 0.5 +- {MIA_BAND:g}",
            "status": "fail" if (bs_lo > 0.5 + MIA_BAND or bs_hi < 0.5 - MIA_BAND) else "pass"}


def _cat_table(d: pd.DataFrame) -> np.ndarray:
    return d[list(SINGLING_COLS)].to_numpy(float)


_CATEGORICAL = {"weekday", "home_area", "day_area"}


def _count(tab: np.ndarray, pred) -> int:
    m = np.ones(len(tab), bool)
    for j, op, v in pred:
        col = tab[:, j]
        m &= (col == v) if op == "==" else (col <= v) if op == "<=" else (col >= v)
    return int(m.sum())


def _predicates_multivariate(syn: np.ndarray, n: int, k_cols: int, rng) -> list:
    preds, seen, tries = [], set(), 0
    cat = [c in _CATEGORICAL for c in SINGLING_COLS]
    while len(preds) < n and tries < 30 * n:
        tries += 1
        r = syn[rng.integers(len(syn))]
        cols = rng.choice(len(SINGLING_COLS), k_cols, replace=False)
        pred = tuple(sorted((int(j), "==" if cat[j] else ("<=" if rng.random() < 0.5 else ">="), float(r[j]))
                            for j in cols))
        if pred in seen:
            continue
        seen.add(pred)
        if _count(syn, pred) == 1:
            preds.append(pred)
    return preds


def _predicates_univariate(syn: np.ndarray, n: int, rng) -> list:
    preds = []
    for j, c in enumerate(SINGLING_COLS):
        col = syn[:, j]
        if c in _CATEGORICAL:
            v, k = np.unique(col, return_counts=True)
            preds += [((j, "==", float(x)),) for x in v[k == 1]]
        else:
            preds += [((j, "<=", float(col.min())),), ((j, ">=", float(col.max())),)]
    preds = [p for p in preds if _count(syn, p) == 1]
    if len(preds) > n:
        preds = [preds[i] for i in rng.choice(len(preds), n, replace=False)]
    return preds


def _baseline_predicates(ori: np.ndarray, syn: np.ndarray, n: int, k_cols: int, rng) -> list:
    """Naive predicates: k columns, values drawn uniformly between the column's synthetic min and max."""
    lo, hi = syn.min(axis=0), syn.max(axis=0)
    cat = [c in _CATEGORICAL for c in SINGLING_COLS]
    preds = []
    for _ in range(n):
        cols = rng.choice(len(SINGLING_COLS), k_cols, replace=False)
        pred = []
        for j in cols:
            if cat[j]:
                pred.append((int(j), "==", float(rng.choice(np.unique(syn[:, j])))))
            else:
                pred.append((int(j), "<=" if rng.random() < 0.5 else ">=", float(rng.uniform(lo[j], hi[j]))))
        preds.append(tuple(pred))
    return preds


def singling_out(train, hold, syn, seed: int, n_attacks: int = N_ATTACKS) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 6])
    n = min(len(train), len(hold))
    ori = _cat_table(train.iloc[np.sort(rng.choice(len(train), n, replace=False))])
    ctl = _cat_table(hold.iloc[np.sort(rng.choice(len(hold), n, replace=False))])
    S = _cat_table(syn)
    out: dict[str, Any] = {"records_each": n}
    for mode in ("univariate", "multivariate"):
        preds = (_predicates_univariate(S, n_attacks, rng) if mode == "univariate"
                 else _predicates_multivariate(S, n_attacks, 3, rng))
        k_main = sum(_count(ori, p) == 1 for p in preds)
        k_ctl = sum(_count(ctl, p) == 1 for p in preds)
        base = _baseline_predicates(ori, S, len(preds), 1 if mode == "univariate" else 3, rng)
        k_base = sum(_count(ori, p) == 1 for p in base)
        na = len(preds)
        out[mode] = {"attacks": na, "main_rate": wilson(k_main, na), "control_rate": wilson(k_ctl, na),
                     "baseline_rate": wilson(k_base, na), "risk": risk((k_main, na), (k_ctl, na))
                     if na else {"value": float("nan"), "low": 0.0, "high": 1.0}}
    r = out["multivariate"]["risk"]["value"]
    out.update({"limit": RISK_LIMIT, "status": "pass" if (math.isfinite(r) and r <= RISK_LIMIT) else "fail",
                "columns": list(SINGLING_COLS)})
    return out


def linkability(train, hold, syn, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 7])
    n = min(len(train), len(hold))
    tr = train.iloc[np.sort(rng.choice(len(train), n, replace=False))]
    ho = hold.iloc[np.sort(rng.choice(len(hold), n, replace=False))]
    who = syn.person.to_numpy()  # a link: both halves lead to the same synthetic person
    res = {}
    for name, targets in (("main", tr), ("control", ho)):
        idx = []
        for cols in LINK_COLS:
            sc = _scale(syn, cols)
            _, i = _nn(syn[list(cols)].to_numpy(float) / sc, targets[list(cols)].to_numpy(float) / sc)
            idx.append(who[i])
        res[name] = int((idx[0] == idx[1]).sum())
    # baseline: two random synthetic records per target
    k_base = int((who[rng.integers(len(syn), size=n)] == who[rng.integers(len(syn), size=n)]).sum())
    rk = risk((res["main"], n), (res["control"], n))
    return {"attacks": n, "aux_columns": [list(c) for c in LINK_COLS], "n_neighbors": 1,
            "link": "the nearest synthetic records on the two column sets belong to the same synthetic person",
            "main_rate": wilson(res["main"], n), "control_rate": wilson(res["control"], n),
            "baseline_rate": wilson(k_base, n), "risk": rk, "limit": RISK_LIMIT,
            "status": "pass" if rk["value"] <= RISK_LIMIT else "fail"}


def inference(train, hold, syn, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 8])
    n = min(len(train), len(hold))
    tr = train.iloc[np.sort(rng.choice(len(train), n, replace=False))]
    ho = hold.iloc[np.sort(rng.choice(len(hold), n, replace=False))]
    out: dict[str, Any] = {"attacks_per_secret": n, "secrets": {}}
    worst = -1.0
    for secret, aux in INFERENCE_SECRETS.items():
        sc = _scale(syn, aux)
        S_ = syn[list(aux)].to_numpy(float) / sc
        k = {}
        for name, targets in (("main", tr), ("control", ho)):
            _, i = _nn(S_, targets[list(aux)].to_numpy(float) / sc)
            k[name] = int((syn[secret].to_numpy()[i] == targets[secret].to_numpy()).sum())
        guess = rng.choice(syn[secret].to_numpy(), n)
        k_base = int((guess == tr[secret].to_numpy()).sum())
        rk = risk((k["main"], n), (k["control"], n))
        worst = max(worst, rk["value"])
        out["secrets"][secret] = {"aux_columns": list(aux), "main_rate": wilson(k["main"], n),
                                  "control_rate": wilson(k["control"], n), "baseline_rate": wilson(k_base, n),
                                  "risk": rk}
    out.update({"limit": RISK_LIMIT, "status": "pass" if worst <= RISK_LIMIT else "fail"})
    return out


def unicity(train_tr: Trajectories, hold_tr: Trajectories, syn_tr: Trajectories, seed: int) -> dict[str, Any]:
    ref = traces(train_tr)
    index: dict[tuple, set] = {}
    for p, pts in ref.items():
        for pt in pts:
            index.setdefault(pt, set()).add(p)
    rng = np.random.default_rng([seed, 9])

    def match(tr_sets: dict[int, set]) -> tuple[int, int, int, int]:
        draws = any_ = unique = traces_n = 0
        for _, pts in sorted(tr_sets.items()):
            if len(pts) < UNICITY_POINTS:
                continue
            traces_n += 1
            pts = sorted(pts)
            for _ in range(UNICITY_DRAWS):
                pick = rng.choice(len(pts), UNICITY_POINTS, replace=False)
                cand = None
                for j in pick:
                    s = index.get(pts[j], set())
                    cand = set(s) if cand is None else cand & s
                    if not cand:
                        break
                draws += 1
                any_ += bool(cand)
                unique += bool(cand) and len(cand) == 1
        return draws, any_, unique, traces_n

    sd, sa, su, sn = match(traces(syn_tr))
    cd, ca, cu, cn = match(traces(hold_tr))
    s_rate, c_rate = wilson(sa, sd), wilson(ca, cd)
    ok = (s_rate[0] if sd else 0.0) <= (c_rate[0] if cd else 0.0) + UNICITY_MARGIN
    return {"points": UNICITY_POINTS, "draws_per_trace": UNICITY_DRAWS,
            "point": f"({COARSE_KM:g} km area, weekday, hour) of the modal area of each hour",
            "training_traces": len(ref),
            "synthetic": {"traces": sn, "draws": sd, "match_share": s_rate, "unique_match_share": wilson(su, sd)},
            "control": {"traces": cn, "draws": cd, "match_share": c_rate, "unique_match_share": wilson(cu, cd)},
            "limit": f"synthetic match share <= control + {UNICITY_MARGIN:g}", "status": "pass" if ok else "fail"}


# --------------------------------------------------------------------------
# canary audit of the DP release
# --------------------------------------------------------------------------


def _quantile_measurement(candidates, alpha: float, scale: float):
    """The measurement of :meth:`calibration.privacy.Releaser.quantile` at a given scale."""
    dp = _dp()
    return dp.m.make_private_quantile(dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance(),
                                      dp.max_divergence(), candidates=sorted({float(c) for c in candidates}),
                                      alpha=float(alpha), scale=scale)


def epsilon_lower_bound(with_c: np.ndarray, without_c: np.ndarray, delta: float = 0.0,
                        conf: float = CONFIDENCE) -> dict[str, Any]:
    """Empirical epsilon lower bound from released values with and without the canary: the
    threshold test ("canary present when value >= thr", or <=) is chosen on the first half of
    each, and its FPR / FNR on the second half are bounded above with Clopper-Pearson."""
    h1, h0 = len(with_c) // 2, len(without_c) // 2
    a1, b1, a0, b0 = with_c[:h1], with_c[h1:], without_c[:h0], without_c[h0:]
    cands = np.unique(np.r_[a1, a0])

    def eps_of(fpr, fnr):
        vals = [0.0]
        if fpr > 0 and 1 - delta - fnr > 0:
            vals.append(math.log((1 - delta - fnr) / fpr))
        if fnr > 0 and 1 - delta - fpr > 0:
            vals.append(math.log((1 - delta - fpr) / fnr))
        return max(vals)

    best = (-1.0, None, ">=")
    for thr in cands:
        for side in (">=", "<="):
            pos = (a1 >= thr) if side == ">=" else (a1 <= thr)
            neg = (a0 >= thr) if side == ">=" else (a0 <= thr)
            fpr = clopper_pearson(int(neg.sum()), len(a0), 1 - 2 * (1 - conf))[1]
            fnr = clopper_pearson(int((~pos).sum()), len(a1), 1 - 2 * (1 - conf))[1]
            e = eps_of(fpr, fnr)
            if e > best[0]:
                best = (e, float(thr), side)
    _, thr, side = best
    if thr is None:
        return {"epsilon_lower_bound": 0.0, "threshold": None}
    fp = int(((b0 >= thr) if side == ">=" else (b0 <= thr)).sum())
    fn = int((~((b1 >= thr) if side == ">=" else (b1 <= thr))).sum())
    fpr_hi = clopper_pearson(fp, len(b0), 1 - 2 * (1 - conf))[1]
    fnr_hi = clopper_pearson(fn, len(b1), 1 - 2 * (1 - conf))[1]
    return {"epsilon_lower_bound": eps_of(fpr_hi, fnr_hi), "threshold": thr, "test": f"value {side} threshold",
            "false_positives": fp, "false_negatives": fn, "trials_evaluated": [len(b1), len(b0)],
            "fpr_upper": fpr_hi, "fnr_upper": fnr_hi, "confidence": conf}


def canary_audit(train_loc, epsilon: float, trials: int = CANARY_TRIALS, broken: bool = False) -> dict[str, Any]:
    """Canary audit of the release ``locations.radius_of_gyration_km`` p90 of
    :func:`calibration.targets.location_targets` at total budget ``epsilon`` over the location
    targets. The canary is one extra person with the maximum number of days a person may
    contribute, each with the largest radius of the public candidate grid. ``broken`` audits a
    deliberately wrong release (noise calibrated for one row per person: the cap forgotten), the
    control that the audit can catch a violation."""
    days, _ = T._user_days(train_loc)
    keep = cap_rows(days.user.to_numpy(), T.LOC_DAYS_PER_USER, order=days.day.to_numpy())
    rg = days.rg.to_numpy(float)[keep]
    k = T.LOC_DAYS_PER_USER
    canary = np.full(k, float(T.RG_CANDIDATES_KM[-1]))
    target = "locations.radius_of_gyration_km"
    rel = Releaser(epsilon, plan=T.plan_for([train_loc]))
    b = rel.target(target)
    b.quantile("median", rg, T.RG_CANDIDATES_KM, 0.5, k)
    b.quantile("p90", rg, T.RG_CANDIDATES_KM, 0.9, k)
    entry = rel.ledger.entries[-1]
    claimed = entry.epsilon
    scale = entry.noise_scale / (k if broken else 1)
    m = _quantile_measurement(T.RG_CANDIDATES_KM, 0.9, scale)
    lo, hi = float(T.RG_CANDIDATES_KM[0]), float(T.RG_CANDIDATES_KM[-1])
    d0 = [float(min(max(v, lo), hi)) for v in rg]
    d1 = d0 + canary.tolist()
    w = np.array([m(d1) for _ in range(trials)], float)
    wo = np.array([m(d0) for _ in range(trials)], float)
    lb = epsilon_lower_bound(w, wo)
    return {"release": f"{target} p90 (exponential-mechanism quantile over {len(T.RG_CANDIDATES_KM)} public "
                       "candidates)", "mechanism": "broken on purpose: noise for 1 row per person" if broken
            else entry.mechanism, "claimed_epsilon": claimed, "total_epsilon": epsilon,
            "max_rows_per_person": k, "canary": f"one person, {k} days of radius {hi:g} km",
            "trials": trials, "days_released": len(rg), **lb,
            "released_with_canary": _q(w), "released_without_canary": _q(wo),
            "limit": "epsilon lower bound <= claimed epsilon",
            "status": "pass" if lb["epsilon_lower_bound"] <= claimed else "fail"}


# --------------------------------------------------------------------------
# the section of the report
# --------------------------------------------------------------------------


def split_persons(real: Trajectories, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out person codes: a seeded permutation, halves."""
    p = real.persons
    perm = np.random.default_rng([seed, 1]).permutation(len(p))
    k = len(p) // 2
    return np.sort(p[perm[:k]]), np.sort(p[perm[k:]])


def ledger_section(manifest: dict | None) -> dict[str, Any]:
    led = (manifest or {}).get("privacy_ledger")
    if not led:
        return {"present": False, "note": "the run's manifest has no privacy ledger: its scenario was not "
                "calibrated from individual-level data with 'telcosim calibrate'"}
    body = led.get("ledger", led)
    return {"present": True, "file": led.get("file"), "sha256": led.get("sha256"), "ledger": body}


def evaluate_privacy(real_loc, synthetic: Trajectories, split_seed: int = SPLIT_SEED, manifest: dict | None = None,
                     epsilon: float = 1.0, canary_trials: int = CANARY_TRIALS, n_attacks: int = N_ATTACKS,
                     broken_canary: bool = False) -> dict[str, Any]:
    """The ``privacy`` section: every attack of the module docstring, with the real set
    ``real_loc`` (readers.LocationTraces) split by person with ``split_seed``."""
    real = from_location_traces(real_loc)
    tr_p, ho_p = split_persons(real, split_seed)
    if len(tr_p) < 2 or len(ho_p) < 2:
        raise AttackError([f"{real_loc.path}: {len(real.persons)} person(s) with usable fixes; the privacy "
                           "attacks need at least 4 (two training, two held out)"])
    train_tr, hold_tr = real.subset(tr_p), real.subset(ho_p)
    train, hold, syn = records(train_tr), records(hold_tr), records(synthetic)
    problems = [f"{what}: no person-day with at least {MIN_SLOTS} ten-minute samples" for what, d in
                (("real training half", train), ("real held-out half", hold), ("synthetic trajectories", syn))
                if not len(d)]
    if problems:
        raise AttackError(problems)
    seed = split_seed
    out: dict[str, Any] = {
        "real": str(real_loc.path), "synthetic": synthetic.source,
        "split": {"seed": split_seed, "by": "person", "training_persons": [real.names[i] for i in tr_p],
                  "held_out_persons": [real.names[i] for i in ho_p]},
        "records": {"unit": "person-day", "training": len(train), "held_out": len(hold), "synthetic": len(syn),
                    "synthetic_persons": int(len(synthetic.persons))},
        "thresholds": THRESHOLDS}
    out["dcr"] = dcr(train, hold, syn, seed)
    out["mia"] = mia(train, hold, syn, seed)
    out["singling_out"] = singling_out(train, hold, syn, seed, n_attacks)
    out["linkability"] = linkability(train, hold, syn, seed)
    out["inference"] = inference(train, hold, syn, seed)
    out["unicity"] = unicity(train_tr, hold_tr, synthetic, seed)
    train_loc = dataclasses.replace(real_loc, **{f: getattr(real_loc, f)[np.isin(real_loc.user, tr_p)]
                                                 for f in ("user", "time", "lat", "lon", "accuracy")})
    out["canary"] = canary_audit(train_loc, epsilon, canary_trials, broken=broken_canary) if canary_trials else {
        "status": "not_evaluated", "note": "--privacy-canary-trials 0"}
    out["ledger"] = ledger_section(manifest)
    checks = ["dcr", "mia", "singling_out", "linkability", "inference", "unicity", "canary"]
    ev = [c for c in checks if out[c]["status"] != "not_evaluated"]
    out["summary"] = {"checks": len(checks), "evaluated": len(ev),
                      "passed": sum(out[c]["status"] == "pass" for c in ev),
                      "high_risk": [c for c in ev if out[c]["status"] == "fail"]}
    return out
