"""Search-based calibration of simulator parameters to targets (``telcosim calibrate``).

The fit reads only a targets document (``telcosim targets`` output, or a merge of several made by
:mod:`calibration.federate`): nothing here reads raw data, so it is post-processing of the DP
releases and costs no privacy.

* **Parameters** (:data:`PARAMS`): scenario knobs with public search ranges chosen from domain
  knowledge, never from data. ``behaviour.sms_call_ratio`` is not a scenario key: it sets
  ``behaviour.sms_per_day = ratio x behaviour.voice_per_day``.
* **Statistics** (:data:`STATS`): each compares one figure of a small simulator run with the
  target of the same definition: CDR figures through :mod:`calibration.targets`' own functions
  (per-caller caps included) run without noise on the run's CDRs; mobility and handover figures
  through :func:`calibration.run_stats.mobility_stats`; hourly profiles (reported, weight 0: the
  profile's shapes, not the fitted knobs, set them).
* **Objective**: ``sum_i w_i d_i / sum_i w_i`` over the statistics that have a defined target,
  with ``d_i = |ln(synthetic / target)|`` (``log``: a symmetric relative difference, for
  positive figures), ``|synthetic - target|`` (``abs``: for ln-scale figures such as the
  lognormal mu) or the total-variation distance (``tv``: shapes). A statistic the run cannot
  produce (no calls, no moves) counts :data:`PENALTY`; every term is capped at
  :data:`MAX_DISTANCE` (a zero radius of gyration would otherwise weigh without bound). A statistic found in several targets
  (``edges.call_duration`` and ``cdr.call_duration``) splits its weight between them. A DP
  target's weight is multiplied by ``MODEL_SD^2 / (MODEL_SD^2 + sd^2)`` (``sd``: its released
  figure's noise, ``privacy.noise`` of the targets document); a noise-dominated figure (sd above
  ``targets.NOISE_DOMINATED_SD``) is set aside (:func:`set_aside`), and the CLI names it.
* **Search**: optuna's TPE sampler with a fixed seed, one study per independent block of knobs
  (:func:`blocks`, :func:`fit`); trial 0 is the starting point (the base scenario's values), so
  the report's "before" is the uncalibrated simulator. Every trial runs the same scenario seed
  (common random numbers), ``subscribers`` subscribers, one day. The result is the best point
  evaluated, so never worse than the start.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from telcosim import scenarios
from telcosim.realdata import readers as R
from telcosim.scenarios.loader import _toml_value
from telcosim.scenarios.runner import run
from telcosim.sim import config
from telcosim.sim.errors import ConfigError
from telcosim.sim.profile import load_profile
from telcosim.sim.sessions import resolve_behaviour

from . import targets as T
from .privacy import ExactReleaser
from .run_stats import MOVING_GAP_S, mobility_stats
from .targets import _clean, compute_targets, tv_distance

MAX_DISTANCE = 3.0  # a term's distance is capped here (log: a factor e^3 ~ 20 off), so no term dominates
PENALTY = MAX_DISTANCE  # distance of a statistic the run cannot produce (NaN)
FIT_DAYS = 1


# --------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One fitted knob: ``name`` is a scenario key (or ``behaviour.sms_call_ratio``), searched in
    [low, high] (log scale when ``log``). The range is public: domain knowledge, never data."""

    name: str
    low: float
    high: float
    log: bool
    doc: str

    def overrides(self, value: float, base) -> dict[str, float]:
        if self.name == "behaviour.sms_call_ratio":
            return {"behaviour.sms_per_day": float(value) * base.behaviour.voice_per_day}
        return {self.name: float(value)}

    def start(self, base, profile) -> float:
        """The base scenario's value (the profile's for unset call durations), clipped to the range."""
        b = base.behaviour
        if self.name == "behaviour.sms_call_ratio":
            v = b.sms_per_day / b.voice_per_day if b.voice_per_day > 0 else self.low
        elif self.name == "behaviour.call_duration_log_mu":
            v = b.call_duration_log_mu if b.call_duration_log_mu == b.call_duration_log_mu else profile.call_duration_log_mu
        elif self.name == "behaviour.call_duration_log_sigma":
            v = (b.call_duration_log_sigma if b.call_duration_log_sigma == b.call_duration_log_sigma
                 else profile.call_duration_log_sigma)
        else:
            section, key = self.name.split(".")
            v = getattr(getattr(base, section), key)
        return float(min(max(v, self.low), self.high))


PARAMS: dict[str, Param] = {p.name: p for p in (
    Param("mobility.stickiness", 0.05, 0.95, False,
          "chance per hour of keeping the current place: probabilities, away from the degenerate ends"),
    Param("mobility.explore_rho", 0.05, 1.0, False, "exploration scale of Song et al. (2010): 0.6 there"),
    Param("mobility.speed_kmh_median", 5.0, 90.0, True, "median trip speed: walking to motorway"),
    Param("mobility.ping_pong_prob", 0.0, 0.6, False, "share of handovers that bounce back briefly"),
    Param("behaviour.sms_call_ratio", 0.2, 20.0, True,
          "SMS : call attempts per subscriber (sets sms_per_day = ratio x voice_per_day)"),
    Param("behaviour.call_duration_log_mu", 2.0, 5.5, False, "lognormal mu of call durations: medians 7 s .. 4 min"),
    Param("behaviour.call_duration_log_sigma", 0.3, 2.5, False, "lognormal sigma of call durations"),
    Param("population.tie_sigma", 0.0, 4.0, False, "log-sd of tie strengths: calls concentrate on few contacts"),
)}


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """A statistic: target ``<kind>.<target>`` value key ``key`` (None: the value itself) against
    the run's figure of the same name; ``params``: the knobs that move it."""

    name: str
    target: str
    key: str | None
    distance: str
    weight: float
    params: tuple[str, ...]
    group: str  # "cdr", "mobility" or "profile": what the run must compute


_MOB = ("mobility.stickiness", "mobility.explore_rho")
STATS: list[Stat] = [
    Stat("call_duration.log_mu", "call_duration", "log_mu", "abs", 1.0, ("behaviour.call_duration_log_mu",), "cdr"),
    Stat("call_duration.log_sigma", "call_duration", "log_sigma", "log", 1.0,
         ("behaviour.call_duration_log_sigma",), "cdr"),
    Stat("call_duration.median_s", "call_duration", "median_s", "log", 0.5,
         ("behaviour.call_duration_log_mu", "behaviour.call_duration_log_sigma"), "cdr"),
    Stat("call_duration.p90_s", "call_duration", "p90_s", "log", 0.5,
         ("behaviour.call_duration_log_mu", "behaviour.call_duration_log_sigma"), "cdr"),
    Stat("sms_call_ratio", "sms_call_ratio", None, "log", 1.0, ("behaviour.sms_call_ratio",), "cdr"),
    Stat("contact_concentration", "contact_concentration", "top10pct_pairs_call_share", "log", 1.0,
         ("population.tie_sigma",), "cdr"),
    Stat("radius_of_gyration_km.median", "radius_of_gyration_km", "median", "log", 1.0, _MOB, "mobility"),
    Stat("radius_of_gyration_km.p90", "radius_of_gyration_km", "p90", "log", 0.5, _MOB, "mobility"),
    Stat("distinct_locations_per_day.median", "distinct_locations_per_day", "median", "log", 1.0, _MOB, "mobility"),
    Stat("top_location_share.median", "top_location_share", "median", "log", 1.0, _MOB, "mobility"),
    Stat("hourly_move_probability.mean", "hourly_move_probability", "mean", "log", 1.0, _MOB, "mobility"),
    Stat("handover_rate_per_min_moving", "handover_rate_per_min_moving", None, "log", 1.0,
         ("mobility.speed_kmh_median",), "mobility"),
    Stat("dwell_time_s.median", "dwell_time_s", "median", "log", 1.0, ("mobility.speed_kmh_median",), "mobility"),
    Stat("dwell_time_s.p90", "dwell_time_s", "p90", "log", 0.5, ("mobility.speed_kmh_median",), "mobility"),
    Stat("ping_pong_share", "ping_pong_share", None, "log", 1.0, ("mobility.ping_pong_prob",), "mobility"),
] + [Stat(f"diurnal_profile.{s}", "diurnal_profile", s, "tv", 0.0, (), "profile")
     for s in ("voice", "sms", "data", "all")]
STAT_BY_NAME = {s.name: s for s in STATS}
# profile series of the targets -> the run's series (Nodobo 'calls'/'messages', LTE 'data', Milan 'all')
SERIES = {"calls": "voice", "voice": "voice", "messages": "sms", "sms": "sms", "data": "data", "all": "all"}

# run figure names of calibration.run_stats.mobility_stats -> statistic names
_MOBILITY_KEYS = {
    "radius_of_gyration_km.median": "rg_km_median", "radius_of_gyration_km.p90": "rg_km_p90",
    "distinct_locations_per_day.median": "distinct_locations_day_median",
    "top_location_share.median": "top_location_share_median",
    "hourly_move_probability.mean": "move_probability_mean",
    "handover_rate_per_min_moving": "handover_rate_per_min_moving",
    "dwell_time_s.median": "dwell_median_s_moving", "dwell_time_s.p90": "dwell_p90_s_moving",
    "ping_pong_share": "ping_pong_share",
}


@dataclass(frozen=True)
class Term:
    """One objective term: statistic ``stat`` against the target ``target`` (full name); ``noise_sd``
    is the released figure's noise on the distance's scale (0: exact or aggregate)."""

    stat: str
    target: str
    value: Any
    weight: float
    noise_sd: float = 0.0


# How closely a run is expected to match a target even without noise (the 20-30% tolerances the
# default profile is held to, on the log scale): a term's weight is multiplied by
# MODEL_SD^2 / (MODEL_SD^2 + noise_sd^2), inverse-variance weighting of model error plus noise.
MODEL_SD = 0.2


def noise_sd(doc: dict, name: str, key: str | None) -> float:
    """The noise sd of a target's figure from its ``privacy.noise`` record (``telcosim targets``):
    0 for aggregate and exact targets and for a target without a record (written by an older
    telcosim); infinite where the record says null. For a target merged from several files
    (``privacy.per_source``), the sd of their weighted mean, sqrt(sum (w_i sd_i)^2) / sum w_i."""
    tg = doc.get("targets", {}).get(name, {})
    p = tg.get("privacy")
    if not isinstance(p, dict):
        return 0.0
    fig = key or "value"

    def one(priv) -> float:
        rec = (priv or {}).get("noise") if isinstance(priv, dict) else None
        if not rec or fig not in rec.get("sd", {}):
            return 0.0
        v = rec["sd"][fig]
        return math.inf if v is None else float(v)
    if "per_source" in p:
        w = tg.get("weights") or {}
        parts = [(float(w.get(e.get("source"), 1.0)), one(e.get("privacy"))) for e in p["per_source"]]
        tot = sum(x for x, _ in parts)
        if not tot:
            return 0.0
        return math.sqrt(sum((x * sd) ** 2 for x, sd in parts)) / tot
    return one(p)


def set_aside(doc: dict) -> list[tuple[str, float]]:
    """The (target.figure, noise sd) the objective leaves out as noise-dominated: the fit's
    statistics whose released figure has a noise sd above ``targets.NOISE_DOMINATED_SD``."""
    return [(f"{t}{'.' + k if k else ''}", sd) for t, k, sd in _aside(doc)]


def _aside(doc: dict) -> list[tuple[str, str | None, float]]:
    out = []
    for name in sorted(doc.get("targets", {})):
        suffix = name.split(".", 1)[1] if "." in name else name
        for st in STATS:
            if st.target == suffix and st.group != "profile":
                sd = noise_sd(doc, name, st.key)
                if not sd <= T.NOISE_DOMINATED_SD:
                    out.append((name, st.key, sd))
    return out


def _finite(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def target_terms(doc: dict) -> tuple[list[Term], list[str]]:
    """The objective's terms from a targets document, and notes on targets left out (undefined
    after noise, or not comparable with a run)."""
    terms, notes = [], []
    by_stat: dict[str, list[tuple[str, Any, float]]] = {}
    aside = {(n, k) for n, k, _ in _aside(doc)}
    for name, tg in sorted(doc.get("targets", {}).items()):
        suffix = name.split(".", 1)[1] if "." in name else name
        value = tg.get("value")
        for st in STATS:
            if st.target != suffix:
                continue
            if st.group == "profile":
                if isinstance(value, dict):
                    for series, shape in value.items():
                        if SERIES.get(series) == st.key and isinstance(shape, list) and len(shape) == 24:
                            by_stat.setdefault(st.name, []).append((f"{name}[{series}]", shape))
                continue
            v = value.get(st.key) if (st.key is not None and isinstance(value, dict)) else (
                value if st.key is None else None)
            if (name, st.key) in aside:
                sd = noise_sd(doc, name, st.key)
                notes.append(f"{name}{'.' + st.key if st.key else ''} = {v!r}: noise-dominated (noise sd "
                             f"{'inf' if not math.isfinite(sd) else f'{sd:.3g}'} > {T.NOISE_DOMINATED_SD:g} on the "
                             f"{'log' if st.distance == 'log' else 'value'} scale), set aside")
            elif _finite(v) and (st.distance != "log" or v > 0):
                by_stat.setdefault(st.name, []).append((name, float(v), noise_sd(doc, name, st.key)))
            else:
                notes.append(f"{name}{'.' + st.key if st.key else ''} = {v!r}: undefined or not positive "
                             "(noise?), left out of the objective")
    for st in STATS:
        found = by_stat.get(st.name, [])
        for tname, v, *sd in found:
            noise = sd[0] if sd else 0.0
            w = st.weight / len(found) * MODEL_SD**2 / (MODEL_SD**2 + noise**2)
            terms.append(Term(st.name, tname, v, w, noise))
    return terms, notes


def _hourly_profiles(c, volume: np.ndarray | None = None) -> dict[str, list[float] | None]:
    """MO voice, MO SMS and all records per local hour of day, and data *volume* (bytes of the
    data records, ``volume``; their count without it), as mean-1 shapes: the targets' data series
    is the LTE cells' volume."""
    hour = (c.start_time.astype("datetime64[h]").astype(np.int64) % 24)
    mo = c.direction == "mo"
    masks = {"voice": (c.service == "voice") & mo, "sms": (c.service == "sms") & mo,
             "data": c.service == "data", "all": np.ones(len(hour), bool)}
    out = {}
    for k, m in masks.items():
        w = volume[m] if (k == "data" and volume is not None) else None
        n = np.bincount(hour[m], weights=w, minlength=24).astype(float)
        out[k] = list(n / n.mean()) if n.sum() > 0 else None
    return out


def _record_bytes(run_dir: Path) -> np.ndarray | None:
    """bytes_up + bytes_down per CDR row, in the order :func:`realdata.readers.read_cdr` reads
    them (the same files and row order), or None when the run has no such columns."""
    src = run_dir / "cdr" if (run_dir / "cdr").is_dir() else run_dir
    try:
        t = pq.read_table(src, columns=["bytes_up", "bytes_down"])
    except (OSError, ValueError, KeyError):
        return None
    up = t.column("bytes_up").to_numpy(zero_copy_only=False)
    down = t.column("bytes_down").to_numpy(zero_copy_only=False)
    return np.nan_to_num(up.astype(float)) + np.nan_to_num(down.astype(float))


def run_statistics(run_dir: Path, groups: set[str] | None = None) -> dict[str, Any]:
    """The statistics of a run folder, named as :data:`STATS`, with the targets' definitions."""
    groups = {"cdr", "mobility", "profile"} if groups is None else groups
    out: dict[str, Any] = {}
    if groups & {"cdr", "profile"}:
        c = R.read_cdr(run_dir)
        if "cdr" in groups:
            rel = ExactReleaser({f"run.{n}": ("run", 5) for n in ("call_duration", "sms_call_ratio",
                                                                  "contact_concentration")})
            mo = c.direction == "mo"
            done = np.flatnonzero((c.service == "voice") & mo & (c.outcome == "completed") & (c.duration_s > 0))
            dur = T._duration_target(rel, "run.call_duration", c.subscriber_id[done], c.duration_s[done])["value"]
            for k in ("log_mu", "log_sigma", "median_s", "p90_s"):
                out[f"call_duration.{k}"] = dur[k]
            out["sms_call_ratio"] = T._ratio_target(rel, "run.sms_call_ratio",
                                                    c.subscriber_id[(c.service == "sms") & mo],
                                                    c.subscriber_id[(c.service == "voice") & mo])["value"]
            v = (c.service == "voice") & mo & (c.counterpart_id >= 0)
            cc = T._concentration_target(rel, "run.contact_concentration", c.subscriber_id[v], c.counterpart_id[v])
            out["contact_concentration"] = cc["value"]["top10pct_pairs_call_share"]
            out["_pairs_per_bin"] = [float(x) for x in cc["value"]["pairs_per_bin"]]
        if "profile" in groups:
            vol = _record_bytes(Path(run_dir))
            for k, shape in _hourly_profiles(c, vol if vol is not None and len(vol) == len(c.service) else None).items():
                out[f"diurnal_profile.{k}"] = shape
    if "mobility" in groups:
        mob = mobility_stats(run_dir)
        mob.setdefault("dwell_p90_s_moving", _dwell_p90(run_dir))
        for stat, key in _MOBILITY_KEYS.items():
            out[stat] = mob.get(key, float("nan"))
        out["_move_probability_by_hour"] = mob["move_probability_by_hour"]
    return out


def _dwell_p90(run_dir: Path) -> float:
    """90th percentile of the dwell between cell changes while moving (run_stats' definition of
    the median, which it does not export)."""
    loc = pq.read_table(run_dir / "locations", columns=["subscriber_id", "time", "reason"])
    reason = np.asarray(loc.column("reason").to_pylist())
    keep = np.isin(reason, ["cell_change", "handover"])
    sub = loc.column("subscriber_id").to_numpy()[keep].astype(np.int64)
    t = pc.cast(loc.column("time"), "int64").to_numpy()[keep] // 1000
    o = np.lexsort((t, sub))
    sub, t = sub[o], t[o]
    gap = np.diff(t).astype(float)
    dw = gap[(sub[1:] == sub[:-1]) & (gap <= MOVING_GAP_S)]
    return float(np.quantile(dw, 0.9)) if len(dw) else float("nan")


def distance(kind: str, syn: Any, tgt: Any) -> float:
    """One term's distance (see the module docstring); NaN when the run has no figure."""
    if kind == "tv":
        if syn is None or tgt is None:
            return float("nan")
        return tv_distance(syn, tgt)
    if not _finite(syn):
        return float("nan")
    if kind == "log":
        if syn <= 0 or tgt <= 0:
            return abs(syn - tgt) / max(abs(tgt), 1e-9)
        return abs(math.log(syn / tgt))
    return abs(syn - tgt)


def objective(terms: list[Term], stats: dict[str, Any]) -> tuple[float, list[dict]]:
    """(weighted mean distance, per-term rows) of a run's statistics against the terms."""
    rows, num, den = [], 0.0, 0.0
    for t in terms:
        st = STAT_BY_NAME[t.stat]
        d = distance(st.distance, stats.get(t.stat), t.value)
        used = PENALTY if not math.isfinite(d) else min(d, MAX_DISTANCE)
        rows.append({"statistic": t.stat, "target": t.target, "distance_kind": st.distance, "weight": t.weight,
                     "noise_sd": t.noise_sd,
                     "synthetic": stats.get(t.stat), "target_value": t.value,
                     "distance": d if math.isfinite(d) else None})
        if t.weight > 0:
            num += t.weight * used
            den += t.weight
    return (num / den if den > 0 else float("nan")), rows


def fittable(terms: list[Term]) -> list[str]:
    """The knobs that move at least one weighted statistic present among the terms, in PARAMS order."""
    moved = {p for t in terms if t.weight > 0 for p in STAT_BY_NAME[t.stat].params}
    return [p for p in PARAMS if p in moved]


# --------------------------------------------------------------------------
# the fit
# --------------------------------------------------------------------------


@dataclass
class FitResult:
    params: list[str]
    start: dict[str, float]
    best: dict[str, float]
    trials: list[dict]
    before: dict
    after: dict
    settings: dict
    notes: list[str]
    fixed: dict[str, Any]

    @property
    def best_objective(self) -> float:
        return self.after["objective"]


def base_scenario(ref: str | None, sets: list[str]):
    """The scenario calibration starts from. Its learned generators are honoured (the trials run
    through the one run path); a scenario with incidents is refused, since calibration fits the
    everyday behaviour to real statistics and an incident in every trial would bias that fit."""
    sc = scenarios.load(ref, list(sets))
    if sc.incidents:
        raise ConfigError(f"{sc.source}: incidents: calibration fits everyday behaviour, and {sc.name} has "
                          f"{len(sc.incidents)} incident(s) that every trial would include; calibrate the "
                          "scenario without its [[incidents]] (or the one it extends) and add them back after")
    # the per-day rates the scenario leaves to its profile, filled in: the SMS:call knob scales them
    base_dir = sc.base_dir
    return dataclasses.replace(sc, behaviour=resolve_behaviour(sc.behaviour, load_profile(sc.behaviour.profile,
                                                                                          base_dir)))


def simulate(base, values: dict[str, float], subscribers: int, seed: int, workdir: Path) -> Path:
    """Run ``base`` with ``values`` (PARAMS names), ``subscribers`` subscribers, one day."""
    sets = {"population.subscribers": subscribers, "time.days": FIT_DAYS, "seed": seed}
    for name, v in values.items():
        sets.update(PARAMS[name].overrides(v, base))
    sc = _with(base, sets)
    out = Path(tempfile.mkdtemp(prefix="trial-", dir=workdir)) / "run"
    run(sc, out)
    return out


def _with(base, sets: dict[str, Any]):
    """``base`` with dotted keys replaced (validated by sim.config, as --set would be)."""
    raw = base.to_dict()
    raw = _drop_nan(raw)
    config.apply_overrides(raw, [(k.split("."), v) for k, v in sets.items()])
    sc = config.from_dict(raw, "<calibrate>")
    return dataclasses.replace(sc, source=base.source)


def _drop_nan(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = _drop_nan(v)
        elif not (isinstance(v, float) and math.isnan(v)):
            out[k] = v
    return out


def _groups(terms: list[Term]) -> set[str]:
    return {STAT_BY_NAME[t.stat].group for t in terms}


def blocks(names: list[str], terms: list[Term]) -> list[tuple[list[str], set[str]]]:
    """Independent blocks of the fit: knobs joined when they move a common weighted statistic,
    each with the statistics it moves (e.g. {call_duration_log_mu, call_duration_log_sigma} with
    the call-duration statistics; {stickiness, explore_rho} with the location statistics)."""
    present = {t.stat for t in terms if t.weight > 0}
    out: list[tuple[list[str], set[str]]] = []
    for n in names:
        stats = {s for s in present if n in STAT_BY_NAME[s].params}
        joined = [b for b in out if b[1] & stats]
        for b in joined:
            out.remove(b)
        out.append(([p for b in joined for p in b[0]] + [n], set().union(stats, *(b[1] for b in joined))))
    order = {n: i for i, n in enumerate(names)}
    return sorted(((sorted(b[0], key=order.get), b[1]) for b in out), key=lambda b: order[b[0][0]])


def block_objective(rows: list[dict], stats_of_block: set[str]) -> float:
    """The objective restricted to one block's statistics (rows of :func:`objective`)."""
    num = den = 0.0
    for r in rows:
        if r["statistic"] in stats_of_block and r["weight"] > 0:
            d = r["distance"]
            num += r["weight"] * (PENALTY if d is None else min(d, MAX_DISTANCE))
            den += r["weight"]
    return num / den if den else 0.0


def fit(doc: dict, *, trials: int = 30, subscribers: int = 3000, seed: int = 1, sampler_seed: int = 0,
        params: list[str] | None = None, scenario: str | None = None, sets: list[str] | None = None,
        progress: Callable[[dict], None] | None = None) -> FitResult:
    """Fit ``params`` (default: every knob the targets inform) to the targets document ``doc``.

    The objective is block-separable: each knob moves only its own statistics (:data:`STATS`).
    So each block of :func:`blocks` gets its own TPE study (seed ``sampler_seed + i``) scored on
    its own statistics, and every trial runs the simulator once with all blocks' proposals
    together (ask/tell). The blocks' best proposals are then combined and run once more
    ("confirmation"); the result is whichever of that run and the best single trial has the
    lower total objective, so weak cross-effects (speed on the radius of gyration) cannot make the
    combination worse than a measured trial."""
    import optuna  # lazy: optuna is slow to import and only the search needs it

    sets = list(sets or [])
    base = base_scenario(scenario, sets)
    base_dir = base.base_dir
    profile = load_profile(base.behaviour.profile, base_dir)
    terms, notes = target_terms(doc)
    if not any(t.weight > 0 for t in terms):
        raise ValueError("no target in the document can be compared with a run (see docs/calibration.md)")
    names = params if params is not None else fittable(terms)
    start = {n: PARAMS[n].start(base, profile) for n in names}
    groups = _groups(terms)
    parts = blocks(names, terms)
    workdir = Path(tempfile.mkdtemp(prefix="telcosim-calibrate-"))
    records: list[dict] = []
    full: dict[int, dict] = {}

    def evaluate(values: dict[str, float]) -> tuple[float, dict, list[dict]]:
        out = simulate(base, values, subscribers, seed, workdir)
        try:
            stats = run_statistics(out, groups)
        finally:
            shutil.rmtree(out.parent, ignore_errors=True)
        obj, rows = objective(terms, stats)
        return obj, stats, rows

    part_objective = block_objective

    def record(number: int, values: dict[str, float], kind: str) -> dict:
        t0 = time.perf_counter()
        obj, stats, rows = evaluate(values)
        rec = {"number": number, "kind": kind, "params": values, "objective": obj,
               "wall_s": round(time.perf_counter() - t0, 3)}
        records.append(rec)
        full[number] = {"objective": obj, "params": values, "statistics": rows}
        if progress:
            progress(rec)
        return full[number]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = max(3, min(10, trials // 3))
    studies = []
    for i, (block, _) in enumerate(parts):
        sampler = optuna.samplers.TPESampler(seed=sampler_seed + i, n_startup_trials=startup, multivariate=True)
        st = optuna.create_study(direction="minimize", sampler=sampler)
        st.enqueue_trial({n: start[n] for n in block})
        studies.append(st)
    try:
        for number in range(trials if names else 1):
            asked = [st.ask() for st in studies]
            values: dict[str, float] = {}
            for tr, (block, _) in zip(asked, parts, strict=True):
                values.update({n: tr.suggest_float(n, PARAMS[n].low, PARAMS[n].high, log=PARAMS[n].log)
                               for n in block})
            res = record(number, {n: values[n] for n in names}, "search")
            for st, tr, (_, stats_of_block) in zip(studies, asked, parts, strict=True):
                st.tell(tr, part_objective(res["statistics"], stats_of_block))
        combined = {}
        for st in studies:
            combined.update(st.best_params)
        combined = {n: combined[n] for n in names}
        if names and all(combined != full[k]["params"] for k in full):
            record(len(full), combined, "confirmation")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def score(k):
        o = full[k]["objective"]
        return (o if math.isfinite(o) else 1e9, k)

    best_number = min(full, key=score)
    best, before = full[best_number], full[0]
    settings = {"trials": trials, "subscribers": subscribers, "days": FIT_DAYS, "seed": seed,
                "sampler": f"optuna {optuna.__version__} TPESampler(seed={sampler_seed}+block, multivariate=True, "
                           f"n_startup_trials={startup}), one study per block, ask/tell",
                "blocks": [{"params": b, "statistics": sorted(s)} for b, s in parts],
                "runs": len(full), "scenario": scenario or "<default>", "set": sets, "best_trial": best_number,
                "objective": "sum_i w_i min(d_i, cap) / sum_i w_i (docs/calibration.md)", "cap": MAX_DISTANCE,
                "penalty": PENALTY}
    fixed = {}
    for s_ in sets:
        k, _, v = s_.partition("=")
        fixed[k.strip()] = v.strip()
    return FitResult(names, start, dict(best["params"]), records,
                     {"objective": before["objective"], "params": before["params"], "statistics": before["statistics"]},
                     {"objective": best["objective"], "params": best["params"], "statistics": best["statistics"]},
                     settings, notes, fixed)


# --------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------


def scenario_values(result: FitResult, base) -> dict[str, float]:
    """The fitted scenario keys (sms_call_ratio becomes behaviour.sms_per_day)."""
    out: dict[str, float] = {}
    for n, v in result.best.items():
        out.update({k: float(f"{x:.6g}") for k, x in PARAMS[n].overrides(v, base).items()})
    return out


def calibrated_toml(result: FitResult, base, name: str, merged: dict, sidecar_name: str,
                    sidecar_sha: str, scenario_ref: str | None) -> str:
    """The calibrated scenario: the fitted keys (and the fit's --set keys), with the privacy ledger
    and the targets' provenance as a comment block (the scenario format has no key for them; the
    full ledger is in the sidecar file ``sidecar_name``)."""
    values = scenario_values(result, base)
    for k, v in result.fixed.items():
        if k not in values and k not in ("population.subscribers", "time.days", "seed"):
            values[k] = _parse(v)
    p = merged.get("privacy", {})
    lines = ["# Calibrated by 'telcosim calibrate' (calibration/calibrate.py): fitted to released targets only,",
             "# never to raw data (post-processing of the DP releases: no further privacy cost).",
             f"# Privacy ledger and provenance: {sidecar_name} (sha256 {sidecar_sha}), beside this file;",
             "# 'telcosim run' copies it into every run's manifest.json (privacy_ledger below).",
             "#", "# Targets:"]
    for label, src in merged.get("sources", {}).items():
        lines.append(f"#   {label}  sha256 {src.get('sha256')}")
    lines.append("# Privacy (per source, not composed across sources):")
    for e in p.get("per_source", []):
        spent = e.get("spent") or {}
        lines.append(f"#   {e.get('source')}: spent epsilon={spent.get('epsilon')} delta={spent.get('delta')}"
                     f"{' (EXACT, NO PRIVACY: tests only)' if e.get('exact_no_privacy') else ''}")
    s = result.settings
    lines += [f"# Fit: {s['sampler']}, {s['trials']} trials, {s['subscribers']} subscribers x {s['days']} day, "
              f"seed {s['seed']}; objective {result.before['objective']:.4g} -> {result.after['objective']:.4g}", ""]
    if scenario_ref:
        lines.append(f"extends = {_toml_value(scenario_ref)}")
    eps = p.get("max_spent_per_source", {}).get("epsilon")
    lines.append(f"name = {_toml_value(name)}")
    lines.append(f"privacy_ledger = {_toml_value(sidecar_name)}")
    lines.append("description = " + _toml_value(
        f"calibrated by telcosim calibrate from {len(merged.get('sources', {}))} targets file(s); privacy: "
        f"per source, max epsilon {eps}; ledger {sidecar_name} sha256 {sidecar_sha[:16]}"))
    owner = {k: n for n, v in result.best.items() for k in PARAMS[n].overrides(v, base)}
    sections: dict[str, dict[str, Any]] = {}
    for k, v in values.items():
        parts = k.split(".")
        sections.setdefault(".".join(parts[:-1]), {})[parts[-1]] = v
    for sec in sorted(sections):
        lines += ["", f"[{sec}]"]
        for k, v in sections[sec].items():
            param = owner.get(f"{sec}.{k}" if sec else k)
            note = ""
            if param:
                P = PARAMS[param]
                note = f"  # fitted; search range [{P.low:g}, {P.high:g}]{' log' if P.log else ''}; start " \
                       f"{result.start[param]:.4g}"
                if param == "behaviour.sms_call_ratio":
                    note += f" (ratio {result.best[param]:.4g} x voice_per_day)"
            else:
                note = "  # fixed during the fit (--set)"
            lines.append(f"{k} = {_toml_value(v)}{note}")
    return "\n".join(lines) + "\n"


def _parse(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def sidecar(result: FitResult, merged: dict, toml_name: str) -> dict:
    """The privacy ledger and provenance that travel with the calibrated scenario."""
    return {"calibrated_scenario": toml_name, "privacy": merged.get("privacy"),
            "targets_sources": merged.get("sources"), "merge": merged.get("merge"),
            "fit": {"params": result.params, "best": result.best, "settings": result.settings}}


def report(result: FitResult, merged: dict) -> dict:
    """The JSON fit report: every trial, and per statistic the synthetic value before and after."""
    before = {(r["statistic"], r["target"]): r for r in result.before["statistics"]}
    rows = []
    for r in result.after["statistics"]:
        b = before.get((r["statistic"], r["target"]), {})
        rows.append({"statistic": r["statistic"], "target": r["target"], "target_value": r["target_value"],
                     "weight": r["weight"], "distance_kind": r["distance_kind"],
                     "synthetic_before": b.get("synthetic"), "distance_before": b.get("distance"),
                     "synthetic_after": r["synthetic"], "distance_after": r["distance"]})
    return {"settings": result.settings,
            "params": {n: {"low": PARAMS[n].low, "high": PARAMS[n].high, "log": PARAMS[n].log,
                           "doc": PARAMS[n].doc, "start": result.start[n], "best": result.best[n]}
                       for n in result.params},
            "trials": result.trials,
            "best": {"trial": result.settings["best_trial"], "objective": result.after["objective"],
                     "objective_before": result.before["objective"], "params": result.best,
                     "statistics": rows},
            "notes": result.notes,
            "privacy": {k: v for k, v in (merged.get("privacy") or {}).items() if k != "per_source"}}


# --------------------------------------------------------------------------
# targets of a run (tests: known-answer recovery)
# --------------------------------------------------------------------------


def targets_from_run(run_dir: Path) -> dict:
    """A targets document from a telcosim run, EXACT (no noise; tests only, never to publish):
    the cdr.* targets of :func:`calibration.targets.compute_targets` on the run's CDRs, and
    mobility / handover targets (``locations.*``, ``drive.*`` names) from run_stats' figures."""
    doc = compute_targets([R.read_cdr(run_dir)], exact=True, part="all")
    st = run_statistics(Path(run_dir), {"mobility"})
    note = "from a telcosim run's location trace (calibration.run_stats definitions); exact, tests only"

    def tg(value):
        return {"value": value, "source": "run", "level": "individual",
                "privacy": {"exact_no_privacy": True}, "method": note}

    doc["targets"].update({
        "locations.radius_of_gyration_km": tg({"median": st["radius_of_gyration_km.median"],
                                               "p90": st["radius_of_gyration_km.p90"]}),
        "locations.distinct_locations_per_day": tg({"median": st["distinct_locations_per_day.median"]}),
        "locations.top_location_share": tg({"median": st["top_location_share.median"]}),
        "locations.hourly_move_probability": tg({"by_hour": st["_move_probability_by_hour"],
                                                 "mean": st["hourly_move_probability.mean"]}),
        "drive.handover_rate_per_min_moving": tg(st["handover_rate_per_min_moving"]),
        "drive.dwell_time_s": tg({"median": st["dwell_time_s.median"], "p90": st["dwell_time_s.p90"]}),
        "drive.ping_pong_share": tg(st["ping_pong_share"]),
    })
    return _clean(doc)
