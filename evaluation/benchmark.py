"""``telcosim benchmark``: a versioned suite of telecom tasks on which telcosim and other
generators are compared side by side (docs/benchmark.md).

Every generator produces tables in three **representations** that peers (table synthesisers) and
telcosim (a simulator) can both make, each fitted to, or calibrated on, the *fit* part of a public
set (realdata/splits.py) and judged against its *check* part:

* ``area_week``: one row per area and week, the load in each of the 168 hours (Monday 00:00 first)
  divided by the week's mean (Milan squares; a run's cells: voice attempts + SMS + data sessions);
* ``subscriber``: one row per person: calls and SMS per day, median answered call (s), share of the
  person's events with the top contact (Copenhagen people; a run's subscribers, from its CDRs);
* ``change_window``: 16 points of a traffic series (12 before a candidate change, 4 from it) and a
  label, 1 at a change (ran_updates carriers around a 5G addition; telcosim: site-outage episodes).

Each **task** gives a score, a 95% bootstrap interval (the check part's natural units resampled,
seeded) and a direction; fidelity tasks also a tolerance from a real-vs-real split of the check
part (:data:`fidelity.TOLERANCE_RULE`). :data:`SUITE_VERSION` changes whenever a task, a
representation or a default size changes, so that tables of different versions are never mixed.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from telcosim.evaluation import attacks, detection, fidelity, utility
from telcosim.evaluation.benchmark_generators import (
    GENERATORS,
    Context,
    GeneratorError,
    people_table,
    window_frame,
)
from telcosim.evaluation.report import CSS
from telcosim.models import shapes
from telcosim.realdata import readers, splits

SUITE_VERSION = "1.0"
CONFIDENCE = 0.95
BOOT = 200
BOOT_QUICK = 50
SEED = 20240305
TAIL_SHARE = 0.10  # the tail of a real table: its top 10% by the task's tail statistic
COVER_K = 5  # coverage radius: distance to a record's 5th nearest real neighbour (as PRDC)
COPENHAGEN_DAYS = 28
FIDELITY_FLOOR = {"fidelity.weekly_profile": 0.08, "fidelity.load_distribution": 0.05,
                  "fidelity.subscriber_marginals": 0.05, "fidelity.subscriber_dependence": 0.05}


# --------------------------------------------------------------------------- real data per representation


@dataclass
class Real:
    """A representation's real fit and check parts: feature frames and the unit id of each row."""

    fit: pd.DataFrame
    check: pd.DataFrame
    fit_units: np.ndarray
    check_units: np.ndarray
    source: str


def milan_weeks(data_dir: Path) -> Real:
    parts = {p: shapes.build_dataset(data_dir, p) for p in ("fit", "check")}
    cols = [f"h{i:03d}" for i in range(168)]
    frames = {p: pd.DataFrame(d.shape.astype(float), columns=cols) for p, d in parts.items()}
    return Real(frames["fit"], frames["check"], parts["fit"].area, parts["check"].area,
                f"{data_dir / shapes.MILAN}: complete Monday..Sunday weeks per square (Christmas week left out)")


def copenhagen_people(data_dir: Path) -> Real:
    e = readers.read_edges(data_dir / "copenhagen")
    out = {}
    for part in ("fit", "check"):
        p = splits.select(e, part)
        calls = pd.DataFrame({"person": p.calls.source.astype(str), "voice": True, "sms": False,
                              "counterpart": p.calls.target.astype(str),
                              "answered_s": np.where(p.calls.duration_s > 1, p.calls.duration_s, np.nan)})
        sms = pd.DataFrame({"person": p.sms.source.astype(str), "voice": False, "sms": True,
                            "counterpart": p.sms.target.astype(str), "answered_s": np.nan})
        ev = pd.concat([calls, sms], ignore_index=True)
        out[part] = (people_table(ev, COPENHAGEN_DAYS), np.asarray(sorted(ev.person.unique()), dtype=object))
    return Real(out["fit"][0], out["check"][0], out["fit"][1], out["check"][1],
                f"{data_dir / 'copenhagen'}: calls.csv and sms.csv over {COPENHAGEN_DAYS} days, one row per caller/sender")


def ran_windows(data_dir: Path) -> Real:
    x, y, ids = detection.real_windows(data_dir / "ran_updates")
    chk = splits.in_check(ids)
    return Real(window_frame(x[~chk], y[~chk]), window_frame(x[chk], y[chk]), ids[~chk], ids[chk],
                f"{data_dir / 'ran_updates'}: daily DL z-scores, a window at the 5G addition and one "
                f"{detection.REAL_NEG_OFFSET_DAYS} days before, per carrier")


REPRESENTATIONS: dict[str, Callable[[Path], Real]] = {
    "area_week": milan_weeks, "subscriber": copenhagen_people, "change_window": ran_windows}
REPRESENTATION_DOC = {
    "area_week": "per area-week: load in each of the 168 hours of the week / the week's mean",
    "subscriber": "per person: voice_per_day, sms_per_day, call_s_median, top_contact_share",
    "change_window": "per window: 16 points (12 before a candidate change, 4 from it) and a label (1 = change)"}


# --------------------------------------------------------------------------- tasks


@dataclass
class Task:
    """A task: its representation, direction, what its bootstrap resamples, and ``prepare``, which
    returns ``score(idx)``: the score on the check units picked by ``idx`` (a bootstrap draw of
    indices into ``units``), or on all of them when ``idx`` is None."""

    name: str
    rep: str
    direction: str  # "lower" or "higher" is better
    group: str
    doc: str
    prepare: Callable[[Real, pd.DataFrame, int], tuple[Callable, np.ndarray]]
    reference: str = ""
    ideal: float | None = None  # privacy: a score past the no-leak value ranks as that value (a tie)


def _unit_index(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique units and, per row, the unit's position."""
    return np.unique(units, return_inverse=True)


def _rows_of(inv: np.ndarray, idx) -> np.ndarray:
    """Rows of the drawn units (a unit drawn twice counts twice)."""
    if idx is None:
        return np.arange(len(inv))
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(inv.max() + 1))
    ends = np.searchsorted(inv[order], np.arange(inv.max() + 1), side="right")
    return np.concatenate([order[starts[u]:ends[u]] for u in idx]) if len(idx) else np.empty(0, int)


def _weekly_profile(real: Real, syn: pd.DataFrame, seed: int):
    syn_mean = syn.to_numpy(float).mean(axis=0)
    chk = real.check.to_numpy(float)
    uniq, inv = _unit_index(real.check_units)
    return (lambda idx: fidelity.distance("tv", list(syn_mean), list(chk[_rows_of(inv, idx)].mean(axis=0)))), uniq


def _load_distribution(real: Real, syn: pd.DataFrame, seed: int):
    s = syn.to_numpy(float).ravel()
    chk = real.check.to_numpy(float)
    uniq, inv = _unit_index(real.check_units)
    return (lambda idx: fidelity.ks_distance(s, chk[_rows_of(inv, idx)].ravel())), uniq


def _marginals(real: Real, syn: pd.DataFrame, seed: int):
    chk = real.check
    uniq, inv = _unit_index(np.arange(len(chk)).astype(str))
    return (lambda idx: float(np.mean([fidelity.ks_distance(syn[c], chk[c].to_numpy()[_rows_of(inv, idx)])
                                        for c in chk.columns]))), uniq


def _spearman(x: np.ndarray) -> np.ndarray:
    r = pd.DataFrame(x).rank().to_numpy()
    c = np.corrcoef(r, rowvar=False)
    return np.nan_to_num(c[np.triu_indices(x.shape[1], 1)])


def _dependence(real: Real, syn: pd.DataFrame, seed: int):
    cs = _spearman(syn[list(real.check.columns)].to_numpy(float))
    chk = real.check.to_numpy(float)
    uniq, inv = _unit_index(np.arange(len(chk)).astype(str))
    return (lambda idx: float(np.mean(np.abs(_spearman(chk[_rows_of(inv, idx)]) - cs)))), uniq


def _series(frame: pd.DataFrame) -> utility.Series:
    hours = np.arange(168)
    return utility.Series(frame.to_numpy(float), hours % 24, hours // 24, [str(i) for i in range(len(frame))])


def _forecast(horizon: int):
    def prepare(real: Real, syn: pd.DataFrame, seed: int):
        lags = tuple(lag for lag in utility.lags_for(horizon) if 168 - lag >= utility.MIN_TARGET_HOURS)
        Xs, ys, _ = utility.design(_series(syn), lags)
        Xr, yr, _ = utility.design(_series(real.fit), lags)
        m_syn = utility.make_model("ridge", seed).fit(Xs, ys)
        m_real = utility.make_model("ridge", seed).fit(Xr, yr)
        test = _series(real.check)
        err = np.zeros((len(real.check), 2))
        for i in range(len(real.check)):
            Xt, yt, _ = utility.design(test.rows([i]), lags)
            err[i] = [np.abs(yt - m_syn.predict(Xt)).sum(), np.abs(yt - m_real.predict(Xt)).sum()]
        uniq, inv = _unit_index(real.check_units)

        def score(idx):
            e = err[_rows_of(inv, idx)].sum(axis=0)
            return float(e[0] / e[1]) if e[1] > 0 else float("nan")
        return score, uniq
    return prepare


def _detection(real: Real, syn: pd.DataFrame, seed: int):
    from sklearn.metrics import roc_auc_score  # lazy: scikit-learn is slow to import

    cols = [c for c in real.fit.columns if c != "label"]
    ys = syn["label"].to_numpy()
    if len(np.unique(ys)) < 2:
        p = np.full(len(real.check), float(ys[0]) if len(ys) else 0.5)
    else:
        model = detection._fit(syn[cols].to_numpy(float), ys)
        p = model.predict_proba(detection.window_features(real.check[cols].to_numpy(float)))[:, 1]
    y = real.check["label"].to_numpy()
    uniq, inv = _unit_index(real.check_units)

    def score(idx):
        rows = _rows_of(inv, idx)
        return float(roc_auc_score(y[rows], p[rows])) if len(np.unique(y[rows])) == 2 else float("nan")
    return score, uniq


def _scaled(real: Real, *frames: pd.DataFrame) -> list[np.ndarray]:
    """Features on a log scale (counts and seconds are heavy-tailed), divided by the fit part's
    robust spread (IQR / 1.349, as evaluation.attacks)."""
    cols = list(real.fit.columns)
    logs = [np.log1p(np.maximum(f[cols].to_numpy(float), 0)) for f in (real.fit, *frames)]
    q = np.quantile(logs[0], [0.25, 0.75], axis=0)
    iqr = (q[1] - q[0]) / 1.349
    sd = logs[0].std(axis=0)
    sc = np.where(iqr > 0, iqr, np.where(sd > 0, sd, 1.0))
    return [v / sc for v in logs]


def _dcr(real: Real, syn: pd.DataFrame, seed: int):
    fit, chk, s = _scaled(real, real.check, syn)
    rng = np.random.default_rng([seed, 11])
    n = min(len(fit), len(chk))
    d_fit = cKDTree(fit[rng.choice(len(fit), n, replace=False)]).query(s)[0]
    d_chk = cKDTree(chk[rng.choice(len(chk), n, replace=False)]).query(s)[0]
    closer = (d_fit < d_chk) + 0.5 * (d_fit == d_chk)
    uniq = np.arange(len(s)).astype(str)
    return (lambda idx: float(closer.mean() if idx is None else closer[idx].mean())), uniq


def _mia(real: Real, syn: pd.DataFrame, seed: int):
    fit, chk, s = _scaled(real, real.check, syn)
    tree = cKDTree(s)
    d_in, d_out = tree.query(fit)[0], tree.query(chk)[0]
    n_in = len(d_in)
    uniq = np.arange(n_in + len(d_out)).astype(str)

    def score(idx):
        if idx is None:
            return attacks.auc(-d_in, -d_out) - 0.5
        i = idx[idx < n_in]
        o = idx[idx >= n_in] - n_in
        return attacks.auc(-d_in[i], -d_out[o]) - 0.5 if len(i) and len(o) else float("nan")
    return score, uniq


def _tail_coverage(stat: Callable[[pd.DataFrame], np.ndarray], log: bool):
    def prepare(real: Real, syn: pd.DataFrame, seed: int):
        if log:
            _, chk, s = _scaled(real, real.check, syn)
        else:
            chk, s = real.check.to_numpy(float), syn[list(real.check.columns)].to_numpy(float)
        radius = cKDTree(chk).query(chk, k=COVER_K + 1)[0][:, -1]
        covered = cKDTree(s).query(chk)[0] <= radius
        t = stat(real.check)
        tail = t >= np.quantile(t, 1 - TAIL_SHARE)
        units = real.check_units[tail]
        cov = covered[tail]
        uniq, inv = _unit_index(units)
        return (lambda idx: float(cov[_rows_of(inv, idx)].mean())), uniq
    return prepare


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("fidelity.weekly_profile", "area_week", "lower", "fidelity",
         "TV distance between the mean weekly shape (168 h) of the synthetic rows and of the real check part",
         _weekly_profile),
    Task("fidelity.load_distribution", "area_week", "lower", "fidelity",
         "KS distance of the pooled normalised hourly loads (x the week's mean), synthetic vs real check",
         _load_distribution),
    Task("fidelity.subscriber_marginals", "subscriber", "lower", "fidelity",
         "mean over the 4 features of the KS distance, synthetic people vs the real check part", _marginals),
    Task("fidelity.subscriber_dependence", "subscriber", "lower", "fidelity",
         "mean |difference| of the 6 pairwise Spearman correlations, synthetic vs real check", _dependence),
    Task("utility.next_hour", "area_week", "lower", "utility",
         "TSTR: MAE of a ridge next-hour forecaster (evaluation.utility: lags 1,2,3,24 h, hour and weekday) "
         "trained on synthetic / trained on the real fit part, both on the real check part; 1 = as good as real",
         _forecast(1), reference="1.0 = trained on real; pass <= 1.25 (evaluation.utility.RATIO_LIMIT)"),
    Task("utility.next_day", "area_week", "lower", "utility",
         "as utility.next_hour, 24 h ahead (lags 24, 25, 26, 48 h)", _forecast(24),
         reference="1.0 = trained on real; pass <= 1.25"),
    Task("detection.step_change", "change_window", "higher", "detection",
         "ROC AUC on the real check carriers of the step-change detector of evaluation.detection "
         "(logistic regression on 3 scale-free window features) trained on the synthetic windows",
         _detection, reference="the same detector trained on the real fit part (row 'real fit part')"),
    Task("privacy.dcr_share", "subscriber", "lower", "privacy",
         "share of synthetic people closer to a fit-part person than to a check-part person (equal-size "
         "samples; log features over their robust spread): 0.5 = no sign of copying, 1 = copies",
         _dcr, reference=f"pass <= {attacks.DCR_SHARE_LIMIT:g} (evaluation.attacks.DCR_SHARE_LIMIT)", ideal=0.5),
    Task("privacy.mia_advantage", "subscriber", "lower", "privacy",
         "membership inference (distance to the closest synthetic person) ROC AUC - 0.5, fit-part people as "
         "members and check-part people as non-members: 0 = no advantage", _mia,
         reference=f"target |AUC - 0.5| <= {attacks.MIA_BAND:g} (evaluation.attacks.MIA_BAND)", ideal=0.0),
    Task("coverage.area_week_tail", "area_week", "higher", "coverage",
         "share of the real check part's tail area-weeks (top 10% by weekly peak / mean) with a synthetic "
         "row inside their 5-nearest-real-neighbour radius (PRDC coverage of the tail)",
         _tail_coverage(lambda f: f.to_numpy(float).max(axis=1), log=False)),
    Task("coverage.subscriber_tail", "subscriber", "higher", "coverage",
         "the same for the tail people (top 10% by calls + SMS per day), on the log-scaled features",
         _tail_coverage(lambda f: (f["voice_per_day"] + f["sms_per_day"]).to_numpy(float), log=True)),
)}


# --------------------------------------------------------------------------- scoring


def bootstrap_ci(score: Callable, units: np.ndarray, boot: int, seed: int) -> tuple[float, list[float]]:
    """The score on every unit and its 95% percentile interval over ``boot`` draws of the units with
    replacement (seeded: the same seed gives the same interval)."""
    value = float(score(None))
    rng = np.random.default_rng([seed, 7])
    draws = [score(rng.integers(0, len(units), len(units))) for _ in range(boot)]
    draws = np.asarray([d for d in draws if math.isfinite(d)])
    a = (1 - CONFIDENCE) / 2
    ci = [float(np.quantile(draws, a)), float(np.quantile(draws, 1 - a))] if len(draws) else [math.nan, math.nan]
    return value, ci


def real_vs_real(task: Task, real: Real, seed: int, splits_n: int = fidelity.SPLITS) -> float:
    """A fidelity task's real-vs-real baseline: the median, over seeded half-splits of the check
    part's units, of the task's distance between one half (as if synthetic) and the other."""
    uniq = np.unique(real.check_units)
    vals = []
    for i in range(splits_n):
        a, b = fidelity.halves(uniq, seed, i)
        ma, mb = np.isin(real.check_units, a), np.isin(real.check_units, b)
        half = Real(real.fit, real.check[mb].reset_index(drop=True), real.fit_units, real.check_units[mb], real.source)
        score, _ = task.prepare(half, real.check[ma].reset_index(drop=True), seed)
        vals.append(score(None))
    return float(np.median(vals))


def score_task(task: Task, real: Real, syn: pd.DataFrame, seed: int, boot: int) -> dict[str, Any]:
    score, units = task.prepare(real, syn, seed)
    value, ci = bootstrap_ci(score, units, boot, seed)
    return {"score": value, "ci": ci, "rows": int(len(syn))}


def ranks(task: Task, scores: dict[str, float]) -> dict[str, int]:
    """Competition ranks (1 = best; equal keys share a rank). A privacy score better than its
    no-leak value (``task.ideal``: a DCR share below 0.5, a negative MIA advantage) says nothing
    more about privacy, so it ranks as that value."""
    def key(v: float) -> float:
        if task.ideal is not None:
            v = max(v, task.ideal) if task.direction == "lower" else min(v, task.ideal)
        return -v if task.direction == "higher" else v
    keys = {g: round(key(v), 12) for g, v in scores.items() if math.isfinite(v)}
    return {g: 1 + sum(k2 < k for k2 in keys.values()) for g, k in keys.items()}


def _fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def run_benchmark(data_dir: Path, out: Path, generators: list[str], tasks: list[str], *, quick: bool = False,
                  seed: int = SEED, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Score ``generators`` on ``tasks``; writes ``leaderboard.json`` and ``leaderboard.html`` into
    ``out`` and returns the document."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(data_dir=Path(data_dir), work=out / "work", quick=quick)
    ctx.work.mkdir(exist_ok=True)
    boot = BOOT_QUICK if quick else BOOT
    reps = sorted({TASKS[t].rep for t in tasks})
    real = {}
    for r in reps:
        real[r] = REPRESENTATIONS[r](Path(data_dir))
    results: dict[str, dict[str, Any]] = {t: {} for t in tasks}
    gen_info: dict[str, Any] = {}
    for g in generators:
        gen = GENERATORS[g]()
        info = {"family": gen.family, "description": gen.description, "seconds": {}, "not_applicable": []}
        for r in reps:
            if r not in gen.representations:
                info["not_applicable"].append(r)
                continue
            t0 = time.perf_counter()
            log(f"{g}: {r}")
            syn = gen.sample(r, real[r].fit, len(real[r].fit), seed, ctx)
            info["seconds"][r] = round(time.perf_counter() - t0, 1)
            if ("peer_info", g, r) in ctx.cache:
                info.setdefault("peer", {})[r] = ctx.cache[("peer_info", g, r)]
            for t in tasks:
                if TASKS[t].rep == r:
                    results[t][g] = score_task(TASKS[t], real[r], syn, seed, boot)
        gen_info[g] = info
    # reference rows: the real fit part scored as if it were synthetic, and the fidelity tolerances
    refs: dict[str, dict[str, Any]] = {}
    for t in tasks:
        task = TASKS[t]
        ref: dict[str, Any] = {"real_fit_part": score_task(task, real[task.rep], real[task.rep].fit, seed, boot)}
        if task.group == "fidelity":
            base = real_vs_real(task, real[task.rep], seed)
            ref["real_vs_real_baseline"] = base
            ref["tolerance"] = max(2 * base, FIDELITY_FLOOR[t])
            for r in results[t].values():
                r["within_tolerance"] = bool(r["score"] <= ref["tolerance"])
        refs[t] = ref
        for g, rank in ranks(task, {g: r["score"] for g, r in results[t].items()}).items():
            results[t][g]["rank"] = rank
    doc = {"suite_version": SUITE_VERSION, "seed": seed, "quick": quick, "bootstrap_draws": boot,
           "confidence": CONFIDENCE, "generators_ran": list(generators), "generators": gen_info,
           "real": {r: {"source": real[r].source, "doc": REPRESENTATION_DOC[r], "fit_rows": len(real[r].fit),
                        "check_rows": len(real[r].check), "fit_units": int(len(np.unique(real[r].fit_units))),
                        "check_units": int(len(np.unique(real[r].check_units))),
                        "split": {"salt": splits.SALT, "check_share": round(splits.CHECK_SHARE, 6)}}
                    for r in reps},
           "tasks": {t: {"representation": TASKS[t].rep, "group": TASKS[t].group, "direction": TASKS[t].direction,
                         "definition": TASKS[t].doc, "reference_rule": TASKS[t].reference, **refs[t],
                         "results": results[t]} for t in tasks},
           "tolerance_rule": "distance <= max(2 x real-vs-real baseline, floor); baseline = median distance between "
                             "the two halves of the check part's units over 5 seeded half-splits"}
    (out / "leaderboard.json").write_text(json.dumps(doc, indent=1, default=_json_default), encoding="utf-8")
    (out / "leaderboard.html").write_text(render_html(doc), encoding="utf-8")
    return doc


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(type(v).__name__)


def markdown_table(doc: dict) -> str:
    """The leaderboard as a Markdown table (tasks as rows, generators as columns): docs/benchmark.md."""
    gens = doc["generators_ran"]
    head = "| task | better | " + " | ".join(gens) + " | real fit part |"
    lines = [head, "|" + "---|" * (len(gens) + 3)]
    for t, d in doc["tasks"].items():
        cells = []
        for g in gens:
            r = d["results"].get(g)
            cells.append("–" if r is None else f"{_fmt(r['score'])} [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]"
                         + (" ★" if r.get("rank") == 1 else ""))
        rf = d["real_fit_part"]
        lines.append(f"| {t} | {d['direction']} | " + " | ".join(cells) + f" | {_fmt(rf['score'])} |")
    return "\n".join(lines)


def render_html(doc: dict) -> str:
    gens = doc["generators_ran"]
    e = html.escape
    rows = []
    for t, d in doc["tasks"].items():
        cells = []
        for g in gens:
            r = d["results"].get(g)
            if r is None:
                cells.append("<td class='na'>not applicable</td>")
                continue
            cls = "pass" if r.get("rank") == 1 else ""
            tol = "" if "within_tolerance" not in r else (" ✓" if r["within_tolerance"] else " ✗")
            cells.append(f"<td class='{cls}'>{_fmt(r['score'])}{tol}<br><small>[{_fmt(r['ci'][0])}, "
                         f"{_fmt(r['ci'][1])}]</small></td>")
        ref = d["real_fit_part"]
        tol = f"<br><small>tolerance {_fmt(d['tolerance'])}</small>" if "tolerance" in d else ""
        rows.append(f"<tr><td><b>{e(t)}</b><br><small>{e(d['definition'])}</small></td><td>{e(d['direction'])}</td>"
                    + "".join(cells) + f"<td>{_fmt(ref['score'])}{tol}</td></tr>")
    gen_rows = "".join(f"<tr><td>{e(g)}</td><td>{e(i['family'])}</td><td>{e(i['description'])}</td>"
                       f"<td>{e(', '.join(i['not_applicable']) or '–')}</td></tr>" for g, i in doc["generators"].items())
    real_rows = "".join(f"<tr><td>{e(r)}</td><td>{e(v['doc'])}</td><td>{e(v['source'])}</td><td>{v['fit_rows']} / "
                        f"{v['check_rows']} rows, {v['fit_units']} / {v['check_units']} units</td></tr>"
                        for r, v in doc["real"].items())
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>telcosim benchmark</title>
<style>{CSS} td small{{color:#555}} td.na{{color:#999}}</style></head><body>
<h1>telcosim benchmark, suite {e(doc['suite_version'])}</h1>
<p>Generators that ran: {e(', '.join(gens))}. Seed {doc['seed']}{' (quick sizes)' if doc['quick'] else ''};
intervals: {int(doc['confidence'] * 100)}% bootstrap over the check part's units, {doc['bootstrap_draws']} draws.
★ / green: first on the task. Fidelity: ✓ within the tolerance ({e(doc['tolerance_rule'])}).</p>
<table><tr><th>task</th><th>better</th>{''.join(f'<th>{e(g)}</th>' for g in gens)}<th>real fit part</th></tr>
{''.join(rows)}</table>
<h2>Generators</h2><table><tr><th>name</th><th>family</th><th>what</th><th>not applicable to</th></tr>{gen_rows}</table>
<h2>Real data</h2><table><tr><th>representation</th><th>row</th><th>source</th><th>fit / check</th></tr>{real_rows}</table>
</body></html>
"""


__all__ = ["REPRESENTATIONS", "SUITE_VERSION", "TASKS", "GeneratorError", "bootstrap_ci",
           "markdown_table", "ranks", "real_vs_real", "render_html", "run_benchmark", "score_task"]
