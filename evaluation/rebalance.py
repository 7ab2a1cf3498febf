"""Rebalancing: fill the under-represented strata of a run with targeted extra simulation.

:func:`rebalance` reads a run folder and a ``coverage.toml`` (:mod:`evaluation.coverage`), finds
the flagged gaps and, round by round, runs the simulator on the run's own scenario with changed
settings, keeping from each extra run only the records that fall in the gaps it was made for:

- ``density.L`` / ``home_density.L`` (a density class short of records): an extra population
  that lives (and, for ``density``, works) only in cells of class ``L``
  (``population.home_weight`` / ``work_weight``); kept: the records served in class ``L`` cells
  (``density``) or of subscribers living there (``home_density``). Each round is capped so that
  the extra run's ``L`` cells hold no more subscribers per cell, on average, than the original's
  cells (1.5x): a crowd in a few cells would block and drop calls the original never does there.
- ``hour.A-B`` (hours short of records): the same scenario with another seed; kept: the records
  that start in the starved hours. The model is unchanged, so the kept records are draws from the
  very distribution of the original within those hours.
- ``service.sms``: SMS rates x4 (SMS use no voice channel or data capacity, so nothing else in
  the network changes); ``service.voice`` / ``service.data``: the same scenario with another seed
  (raising their rates would load the cells and change blocking); kept: the service's records.
- ``incident.K``: episodes from ``telcosim augment`` (:func:`scenarios.augment.augment`), each one
  incident of kind ``K`` on the run's scenario (without its own incidents) beside its baseline;
  kept: the records attributed to the incident (non-null ``incident_id``). Kinds augment cannot
  make are reported as not fillable. ``incident.none``: the same scenario with another seed.

Every extra run is an ordinary, complete run folder (``telcosim verify`` passes) on the same
cells (written out as a cells CSV from the run's ``cells.parquet``) with a seed derived from the
original's by its own stream (``rebalance``, round, action). Subscriber ids of extra run *k* are
offset by the subscribers of the original and of extra runs 1..k-1 (``combined_subscriber_id``),
so they never collide; ``source`` says where each record comes from.

Weights (post-stratification on the joint stratum s = density x hour x service x home_density x
incident): ``w_s = (n_orig(s) / N_orig) / (n_comb(s) / N_comb)``. The weighted combined data then
has exactly the original's share in every joint stratum (so every marginal of the five
dimensions); extra records in strata the original never had get weight 0. Within a stratum the
estimator assumes the extra records are exchangeable with the original's, which is what the
actions above are designed for (docs/rebalance.md).
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from telcosim import scenarios
from telcosim.scenarios.augment import AUGMENT_KINDS, augment
from telcosim.scenarios.runner import run as run_scenario
from telcosim.sim import config
from telcosim.sim.errors import ConfigError, InputDataError, OutputError
from telcosim.sim.network import load_cells_csv
from telcosim.sim.population import build_population
from telcosim.sim.staging import staging_folder, swap_into_place
from telcosim.sim.streams import stable_hash

from . import coverage as cov
from .coverage import DENSITY, DIMENSIONS, LevelTarget, Strata, Targets

STREAM = "rebalance"
SMS_BOOST = 4.0
MARGIN = 1.1  # extra records asked for, relative to the deficit (draws vary)
MIN_SUBSCRIBERS = 200
PLACE_LOAD_CAP = 1.5  # subscribers per cell of the class, relative to the original's mean per cell
MAX_EPISODES = 20  # incident episodes of one augment call at most (each is two one-day runs)


def extra_seed(root: int, salt: int, round_no: int, action: str) -> int:
    """The seed of an extra run: its own stream of the original's root seed (0 <= seed < 2^63)."""
    ss = np.random.SeedSequence(root, spawn_key=(stable_hash(STREAM), salt, round_no, stable_hash(action)))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass
class Action:
    """One way of making extra records, for the gaps it can fill."""

    key: str
    gaps: list[LevelTarget]
    changes: dict[str, Any] = field(default_factory=dict)  # dotted scenario key -> value
    why: str = ""
    kept_yield: float = 0.0  # kept records per extra subscriber or episode (estimated, then measured)
    gap_yield: dict[str, float] = field(default_factory=dict)  # per gap: its records per subscriber or episode
    cap: int | None = None
    augment_kind: str | None = None  # incident episodes from 'telcosim augment' instead of a run

    def keep(self, strata: Strata) -> np.ndarray:
        mask = np.zeros(len(strata), bool)
        for t in self.gaps:
            mask |= _in_gap(strata, t)
        return mask


def _scenario_raw(manifest: dict, run_dir: Path) -> dict[str, Any]:
    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    raw = manifest.get("scenario")
    if not isinstance(raw, dict):
        raise InputDataError(f"{run_dir / 'manifest.json'}: no 'scenario' table (was the run written by "
                             "'telcosim run'?)")
    return strip(raw)


def _write_cells_csv(run_dir: Path, path: Path) -> tuple[int, ...]:
    """The run's cells as a cells CSV (same ids, positions, classes and capacities); returns the
    number of cells per density class."""
    t = pq.read_table(run_dir / "cells.parquet").to_pandas()
    lines = ["cell_id,site_id,lat,lon,azimuth_deg,voice_channels,data_mbps,density"]
    for r in t.itertuples(index=False):
        az = "" if r.azimuth_deg is None or r.azimuth_deg != r.azimuth_deg else repr(float(r.azimuth_deg))
        cid = r.source_id if isinstance(r.source_id, str) and r.source_id else str(int(r.cell_id))
        if "," in cid or '"' in cid:
            cid = '"' + cid.replace('"', '""') + '"'
        lines.append(f"{cid},{int(r.site_id)},{float(r.lat)!r},{float(r.lon)!r},{az},{int(r.voice_channels)},"
                     f"{float(r.data_mbps)!r},{r.density}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts = t["density"].astype(str).value_counts()
    return tuple(int(counts.get(c, 0)) for c in DENSITY)


def _neighbours_identical(run_dir: Path, csv: Path, net_cfg) -> bool:
    """Whether the network rebuilt from the CSV has the run's neighbour graph (it is recomputed
    from the positions, which the CSV holds to the last bit of a double)."""

    net = load_cells_csv(csv, net_cfg)
    orig = pq.read_table(run_dir / "cells.parquet", columns=["neighbours"])["neighbours"].to_pylist()
    return all(sorted(orig[c]) == net.neighbours(c).tolist() for c in range(net.n_cells))


def plan_actions(targets: Targets, before: dict, class_cells: tuple[int, ...], scenario_raw: dict
                 ) -> tuple[list[Action], list[dict[str, Any]]]:
    """The actions that fill the flagged gaps, and the gaps that cannot be filled (with why)."""
    flagged = {i["name"] for i in before["strata"] if i["flag"] == "under"}
    gaps = [t for t in targets.items if t.name in flagged]
    beh = scenario_raw.get("behaviour", {})
    actions: dict[str, Action] = {}
    unfillable = []
    for t in gaps:
        if t.dimension == "incident":
            if t.key == cov.NO_INCIDENT:
                a = Action("incident.none", [t], why="the same scenario with another seed, keeping the records "
                                                     "outside incidents")
                actions[a.key] = a
                continue
            if t.key not in AUGMENT_KINDS:
                made = f"it makes episodes of {', '.join(AUGMENT_KINDS)} only"
                unfillable.append({"gap": t.name, "reason": f"extra incident episodes come from 'telcosim augment', "
                                   f"and {made}: no {t.key!r} episodes can be made (nothing is faked)"})
                continue
            a = Action(f"incident.{t.key}", [t], augment_kind=t.key,
                       why=f"episodes from 'telcosim augment', each one {t.key} on the run's scenario beside its "
                           "baseline, keeping the records attributed to the incident")
            actions[a.key] = a
            continue
        if t.dimension in ("density", "home_density"):
            level = t.key
            if class_cells[DENSITY.index(level)] == 0:
                unfillable.append({"gap": t.name, "reason": f"the network has no {level} cells"})
                continue
            a = actions.setdefault(f"place.{level}", Action(f"place.{level}", []))
            a.gaps.append(t)
            only = {c: (1.0 if c == level else 0.0) for c in DENSITY}
            a.changes["population.home_weight"] = only
            if t.dimension == "density":
                a.changes["population.work_weight"] = only
            what = ("live and work" if "population.work_weight" in a.changes else "live")
            a.why = f"an extra population that will {what} only in {level} cells"
            continue
        if t.dimension == "service":
            s = t.key
            rates = {"voice": ("voice_per_day", "voice_in_offnet_per_day"), "sms": ("sms_per_day", "sms_in_offnet_per_day"),
                     "data": ("data_per_day",)}[s]
            # the manifest's scenario holds the rates the run used (the profile's where it set none)
            missing = [r for r in rates if not isinstance(beh.get(r), (int, float))]
            if missing:
                raise InputDataError(f"the run's manifest has no behaviour.{missing[0]} (a run from an older "
                                     "telcosim: re-run it)")
            values = {r: float(beh[r]) for r in rates}
            if not any(v > 0 for v in values.values()):
                unfillable.append({"gap": t.name, "reason": f"the scenario makes no {s} records "
                                   f"({', '.join(f'behaviour.{r} = 0' for r in rates)})"})
                continue
            a = Action(f"service.{s}", [t])
            if s == "sms":
                a.changes = {f"behaviour.{r}": v * SMS_BOOST for r, v in values.items()}
                a.why = f"SMS rates x{SMS_BOOST:g} (SMS use no channels or capacity: nothing else changes)"
            else:
                a.why = f"the same scenario with another seed, keeping its {s} records"
            actions[a.key] = a
            continue
        a = actions.setdefault("hour", Action("hour", [], why="the same scenario with another seed, keeping "
                                                          "the records of the starved hours"))
        a.gaps.append(t)
    order = sorted(actions.values(), key=lambda a: (not a.key.startswith("place"), a.augment_kind is not None,
                                                    a.key != "hour", a.key))
    return order, unfillable


def _in_gap(strata: Strata, t: LevelTarget) -> np.ndarray:
    idx = [strata.vocab[t.dimension].index(lv) for lv in t.levels if lv in strata.vocab[t.dimension]]
    return np.isin(strata.codes[t.dimension], idx)


def _first_yields(action: Action, orig: Strata) -> None:
    """Records per subscriber expected of an extra run before any was made (then measured): kept
    records, and records in each gap."""
    subs = max(orig.subscribers, 1)
    per_sub = len(orig) / subs
    if action.augment_kind is not None:  # unknown until an episode is made: the first round makes one
        action.kept_yield, action.gap_yield = 0.0, {}
        return
    if action.key.startswith("place"):
        # Everybody of the extra population lives in the class (a home_density gap keeps all their
        # records); with a density gap they also work there, so most of their records are served
        # in the class.
        homes = any(t.dimension == "home_density" for t in action.gaps)
        action.kept_yield = per_sub * (1.0 if homes else 0.9)
        action.gap_yield = {t.name: per_sub * (1.0 if t.dimension == "home_density" else 0.9) for t in action.gaps}
        return
    boost = SMS_BOOST if action.key == "service.sms" else 1.0
    action.kept_yield = boost * int(action.keep(orig).sum()) / subs
    action.gap_yield = {t.name: boost * int(_in_gap(orig, t).sum()) / subs for t in action.gaps}


def _prepare(actions: list[Action], orig: Strata, class_cells: tuple[int, ...], max_subscribers: int | None,
             max_episodes: int = MAX_EPISODES) -> int:
    """First yields and size caps of the actions; returns the subscriber cap of one extra run."""
    cap_total = max_subscribers if max_subscribers is not None else max(4 * orig.subscribers, MIN_SUBSCRIBERS)
    n_cells = max(sum(class_cells), 1)
    for a in actions:
        _first_yields(a, orig)
        a.cap = max_episodes if a.augment_kind is not None else cap_total
        if a.key.startswith("place"):
            in_class = class_cells[DENSITY.index(a.key.split(".", 1)[1])]
            a.cap = min(cap_total, max(MIN_SUBSCRIBERS, math.ceil(PLACE_LOAD_CAP * orig.subscribers * in_class / n_cells)))
    return cap_total


def _first_size(a: Action, counts: dict[str, dict[str, float]], total: float) -> int:
    """Subscribers of the action's next extra run (episodes for an augment action)."""
    if a.augment_kind is not None:
        if not a.gap_yield:
            return 1
        want = _subscribers_needed(a, counts, total) * MARGIN
        return int(min(max(math.ceil(want) if math.isfinite(want) else a.cap, 1), a.cap))
    want = _subscribers_needed(a, counts, total) * MARGIN
    return int(min(max(math.ceil(want) if math.isfinite(want) else a.cap, MIN_SUBSCRIBERS), a.cap))


def plan(run_dir: str | Path, targets: Targets, max_subscribers: int | None = None,
         max_episodes: int = MAX_EPISODES) -> dict[str, Any]:
    """What :func:`rebalance` would do first, without simulating: the coverage, the gaps that
    cannot be filled, and each action with the size of its first extra run (estimated)."""
    run_dir = Path(run_dir)
    orig = cov.read_strata(run_dir)
    before = cov.evaluate(orig, targets, source="original")
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        dens = pq.read_table(run_dir / "cells.parquet", columns=["density"])["density"].to_pylist()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputDataError(f"{run_dir}: cannot read the run ({type(exc).__name__}: {exc})") from None
    class_cells = tuple(dens.count(c) for c in DENSITY)
    actions, unfillable = plan_actions(targets, before, class_cells, _scenario_raw(manifest, run_dir))
    _prepare(actions, orig, class_cells, max_subscribers, max_episodes)
    counts = cov.level_counts(orig)
    return {"before": before, "not_fillable": unfillable,
            "actions": [{"action": a.key, "for": [t.name for t in a.gaps], "why": a.why,
                         "scenario_changes": dict(a.changes), "records_short": _deficit(a, counts, float(len(orig))),
                         "first_run_size": _first_size(a, counts, float(len(orig))), "cap": a.cap,
                         "unit": "episode(s)" if a.augment_kind is not None else "subscribers"}
                        for a in actions]}


def _subscribers_needed(action: Action, counts: dict[str, dict[str, float]], total: float) -> float:
    """Extra subscribers that meet every gap of the action at the current yields: a share target t
    needs (c + n*y_gap) >= t*(N + n*y_kept), the kept records outside the gap diluting it."""
    n = 0.0
    for t in action.gaps:
        c = sum(counts[t.dimension].get(lv, 0) for lv in t.levels)
        yg = action.gap_yield.get(t.name, 0.0)
        if t.min_share is not None and c < t.min_share * total:
            denom = yg - t.min_share * action.kept_yield
            n = max(n, (t.min_share * total - c) / denom if denom > 1e-9 else math.inf)
        if t.min_count is not None and c < t.min_count:
            n = max(n, (t.min_count - c) / yg if yg > 1e-9 else math.inf)
    return n


def _add_counts(counts: dict[str, dict[str, float]], more: dict[str, dict[str, float]]) -> None:
    for d, lv in more.items():
        for k, v in lv.items():
            counts[d][k] = counts[d].get(k, 0) + v


def _deficit(action: Action, counts: dict[str, dict[str, float]], total: float) -> int:
    return max((cov.needed_rows(sum(counts[t.dimension].get(lv, 0) for lv in t.levels), total, t)
                for t in action.gaps), default=0)


def joint_key(strata: Strata, n_incident: int) -> np.ndarray:
    c = strata.codes
    k = c["density"].astype(np.int64)
    for d, size in (("hour", 24), ("service", 3), ("home_density", 3), ("incident", n_incident)):
        k = k * size + c[d]
    return k


def poststratify(orig: Strata, combined: Strata) -> tuple[np.ndarray, dict[str, Any]]:
    """Weights of the combined records: w_s = (n_orig(s)/N_orig) / (n_comb(s)/N_comb) per joint
    stratum s; also the per-stratum table. ``orig`` must be ``combined``'s first records."""
    n_inc = len(combined.vocab["incident"])
    # Original's incident codes in the combined vocabulary (combine() keeps 'none' = 0 and orders
    # the original's kinds first, so they agree).
    kc = joint_key(combined, n_inc)
    ko = kc[: len(orig)]
    uniq, inv = np.unique(kc, return_inverse=True)
    n_comb = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    n_orig = np.bincount(inv[: len(ko)], minlength=len(uniq)).astype(np.float64)
    w_s = np.where(n_comb > 0, (n_orig / max(len(orig), 1)) / (n_comb / max(len(combined), 1)), 0.0)
    weights = w_s[inv]
    table = {"key": uniq, "original_records": n_orig.astype(np.int64), "combined_records": n_comb.astype(np.int64),
             "weight": w_s}
    return weights, table


def _decode_key(keys: np.ndarray, vocab: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    sizes = [("incident", len(vocab["incident"])), ("home_density", 3), ("service", 3), ("hour", 24)]
    out: dict[str, list[str]] = {}
    k = keys.copy()
    for d, size in sizes:
        out[d] = [vocab[d][i] for i in (k % size)]
        k //= size
    out["density"] = [vocab["density"][i] for i in k]
    return out


def _kish(w: np.ndarray) -> float:
    s2 = float((w * w).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


@dataclass
class Result:
    out: Path
    manifest: dict[str, Any]
    coverage: dict[str, Any]


def rebalance(run_dir: str | Path, targets: Targets, out: str | Path, *, max_rounds: int = 4,
              max_subscribers: int | None = None, max_episodes: int = MAX_EPISODES, salt: int = 0,
              overwrite: bool = False,
              log: Callable[[str], None] | None = None) -> Result:
    """Fill the flagged gaps of ``run_dir`` against ``targets``; write the extra runs, the
    per-record weights, the manifest and coverage before/after into ``out`` (atomically)."""
    run_dir, out = Path(run_dir), Path(out)
    log = log or (lambda _m: None)
    t_start = time.time()
    problems = cov.check_run_dir(run_dir)
    if problems:
        raise InputDataError(problems)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out}: already exists and is not empty (choose another --out or pass --overwrite)")
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{run_dir / 'manifest.json'}: cannot read it as JSON ({type(exc).__name__}: {exc})") from None
    orig = cov.read_strata(run_dir)
    before = cov.evaluate(orig, targets, source="original")
    raw = _scenario_raw(manifest, run_dir)
    tmp = staging_folder(out)
    (tmp / "extra").mkdir()
    try:
        doc = _rebalance_into(tmp, run_dir, manifest, raw, orig, before, targets, max_rounds, max_subscribers,
                              salt, log, max_episodes)
        doc["created"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": round(time.time() - t_start, 3)}
        (tmp / "manifest.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    after = json.loads((out / "coverage_before_after.json").read_text(encoding="utf-8"))
    return Result(out, doc, after)


def _base_scenario(raw: dict, manifest: dict, extra_dir: Path, run_dir: Path) -> dict:
    raw = json.loads(json.dumps(raw))
    net = raw.setdefault("network", {})
    net["layout"] = "csv"
    net["cells_csv"] = "cells.csv"
    beh = raw.setdefault("behaviour", {})
    prof = beh.get("profile", "default")
    if prof != "default":
        p = Path(prof).expanduser()
        if not p.is_absolute():
            raise ConfigError(f"{run_dir / 'manifest.json'}: scenario.behaviour.profile: {prof!r} is relative to the "
                              "scenario file the run came from, which is not known here (rerun the original with an "
                              "absolute profile path to rebalance it)")
        if not p.is_file():
            raise ConfigError(f"{run_dir / 'manifest.json'}: scenario.behaviour.profile: {prof!r}: no such profile file")
    ledger = manifest.get("privacy_ledger")
    if isinstance(ledger, dict) and "ledger" in ledger:
        (extra_dir / "privacy_ledger.json").write_text(json.dumps(ledger["ledger"], indent=2, sort_keys=True) + "\n",
                                                       encoding="utf-8")
        raw["privacy_ledger"] = "privacy_ledger.json"
    else:
        raw["privacy_ledger"] = ""
    return raw


def _set(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def _rebalance_into(tmp: Path, run_dir: Path, manifest: dict, raw: dict, orig: Strata, before: dict,
                    targets: Targets, max_rounds: int, max_subscribers: int | None, salt: int,
                    log: Callable[[str], None], max_episodes: int = MAX_EPISODES) -> dict[str, Any]:

    extra_dir = tmp / "extra"
    class_cells = _write_cells_csv(run_dir, extra_dir / "cells.csv")
    base = _base_scenario(raw, manifest, extra_dir, run_dir)
    base_sc = config.from_dict(json.loads(json.dumps(base)), "rebalance")
    same_graph = _neighbours_identical(run_dir, extra_dir / "cells.csv", base_sc.network)
    net = load_cells_csv(extra_dir / "cells.csv", base_sc.network)
    cell_density = np.asarray([DENSITY.index(d) for d in
                               pq.read_table(run_dir / "cells.parquet", columns=["density"])["density"].to_pylist()],
                              np.int16)
    actions, unfillable = plan_actions(targets, before, class_cells, raw)
    for u in unfillable:
        log(f"{u['gap']}: not fillable: {u['reason']}")
    root_seed = int(manifest.get("seed", raw.get("seed", 1)))
    orig_subs = orig.subscribers
    cap_total = _prepare(actions, orig, class_cells, max_subscribers, max_episodes)
    counts = cov.level_counts(orig)
    total = float(len(orig))
    kept_parts: list[Strata] = []
    sources: list[tuple[str, int]] = []  # (source name, subscriber id offset) of each kept part
    generated: list[dict[str, Any]] = []
    offset = orig_subs
    rounds_used = 0
    for round_no in range(1, max_rounds + 1):
        if not any(_deficit(a, counts, total) > 0 for a in actions):
            break
        rounds_used = round_no
        for a in actions:
            deficit = _deficit(a, counts, total)  # earlier actions of the round may have helped
            if deficit <= 0:
                continue
            n = _first_size(a, counts, total)
            name = f"extra-{len(generated) + 1:02d}"
            seed = extra_seed(root_seed, salt, round_no, a.key)
            sc = _write_scenario(extra_dir, name, base, raw, a, n, seed, round_no)
            t0 = time.time()
            entry: dict[str, Any] = {
                "name": name, "path": f"extra/{name}", "scenario_file": f"extra/{name}.toml", "round": round_no,
                "action": a.key, "for": [t.name for t in a.gaps], "why": a.why, "records_short_before": deficit,
                "scenario_changes": dict(a.changes), "seed": seed}
            if a.augment_kind is None:
                log(f"round {round_no}: {name}: {a.key}: {n} subscribers ({a.why}); {deficit} records short")
                run_scenario(sc, extra_dir / name)
                strata = cov.read_strata(extra_dir / name)
                kept = strata.select(a.keep(strata))
                kept.subscribers = n
                parts = [(name, kept)]
                entry.update(kind="run", subscribers=n, subscriber_cap=a.cap, subscriber_id_offset=offset,
                             records=len(strata))
                produced = len(strata)
            else:
                log(f"round {round_no}: {name}: {a.key}: {n} episode(s) ({a.why}); {deficit} records short")
                augment(sc, a.augment_kind, n, extra_dir / name, seed=seed)
                parts, produced = _episode_strata(extra_dir / name, sc, net, cell_density, a.augment_kind)
                entry.update(kind="augment", episodes=n, episode_cap=a.cap, subscribers_per_episode=sc.population.subscribers,
                             subscriber_id_offset=offset, records=produced)
            n_kept = 0
            for src, kept in parts:
                kept_parts.append(kept)
                sources.append((src, offset))
                offset += kept.subscribers
                _add_counts(counts, cov.level_counts(kept))
                total += len(kept)
                n_kept += len(kept)
            a.kept_yield = n_kept / n
            a.gap_yield = {t.name: sum(int(_in_gap(k, t).sum()) for _, k in parts) / n for t in a.gaps}
            entry.update(kept_records=n_kept, kept_per_unit=a.kept_yield, sources=[src for src, _ in parts],
                         wall_s=round(time.time() - t0, 3))
            generated.append(entry)
    # The combined data and its weights.
    combined = cov.combine([orig, *kept_parts]) if kept_parts else orig
    weights, table = poststratify(orig, combined)
    after = cov.evaluate(combined, targets, source="combined")
    after_w = cov.evaluate(combined, targets, weights=weights, source="combined, weighted")
    gaps = _gap_status(before, after, unfillable, actions, generated, max_rounds)
    _write_records(tmp, orig, kept_parts, sources, combined, weights)
    _write_strata_weights(tmp, table, combined.vocab)
    extra_w = weights[len(orig):]
    doc_cov = {"before": before, "after": after, "after_weighted": after_w, "gaps": gaps}
    (tmp / "coverage_before_after.json").write_text(json.dumps(doc_cov, indent=2) + "\n", encoding="utf-8")
    write_html(tmp / "coverage.html", doc_cov, generated)
    return {
        "telcosim_rebalance": 1,
        "original": {"path": str(run_dir.resolve()), "seed": root_seed, "scenario": raw.get("name"),
                     "scenario_sha256": manifest.get("scenario_sha256"), "subscribers": orig_subs,
                     "records": len(orig)},
        "targets": {"file": targets.file, "targets": {t.name: t.as_dict() for t in targets.items}},
        "gaps": gaps,
        "generated": generated,
        "rounds": rounds_used,
        "settings": {"max_rounds": max_rounds, "max_subscribers": cap_total, "seed_salt": salt, "margin": MARGIN,
                     "sms_boost": SMS_BOOST, "place_load_cap": PLACE_LOAD_CAP, "max_episodes": max_episodes},
        "network": {"cells_csv": "extra/cells.csv", "cells_by_density": dict(zip(DENSITY, class_cells, strict=True)),
                    "neighbour_graph_identical": same_graph},
        "combined": {"records": len(combined), "original_records": len(orig), "extra_records": len(combined) - len(orig),
                     "subscribers": combined.subscribers},
        "weights": {
            "estimator": "post-stratification on density x hour x service x home_density x incident: "
                         "w_s = (n_orig(s)/N_orig) / (n_comb(s)/N_comb)",
            "sum": float(weights.sum()), "original_sum": float(weights[:len(orig)].sum()),
            "extra_sum": float(extra_w.sum()), "extra_zero_weight_records": int((extra_w == 0).sum()),
            "effective_records": _kish(weights), "strata": int(len(table["key"])),
        },
        "files": {"records": "records.parquet", "strata_weights": "strata_weights.parquet",
                  "coverage": "coverage_before_after.json", "report": "coverage.html"},
    }


def _write_scenario(extra_dir: Path, name: str, base: dict, raw: dict, a: Action, n: int, seed: int,
                    round_no: int):
    """The scenario of an extra run (or the base of an augment call), written as extra/NAME.toml
    (``telcosim run extra/NAME.toml`` remakes the run) and loaded from there."""
    sc_raw = json.loads(json.dumps(base))
    sc_raw["name"] = f"{raw.get('name', 'default')}+rebalance-{a.key}"
    sc_raw["seed"] = seed
    if a.augment_kind is None:
        _set(sc_raw, "population.subscribers", n)
    else:
        sc_raw.pop("incidents", None)  # augment adds one incident per episode to a base without any
    for k, v in a.changes.items():
        _set(sc_raw, k, v)
    sc = config.from_dict(sc_raw, f"{name}.toml")
    path = extra_dir / f"{name}.toml"
    what = f"{n} episode(s) of telcosim augment on this base" if a.augment_kind is not None else a.why
    path.write_text(scenarios.dumps(sc, header=f"telcosim rebalance: {a.key}, round {round_no}: {what}"),
                    encoding="utf-8")
    return dataclasses.replace(config.load(path), source=str(path))


def _episode_strata(folder: Path, sc, net, cell_density: np.ndarray, kind: str) -> tuple[list[tuple[str, Strata]], int]:
    """The records of each augment episode attributed to its incident, as strata (one part per
    episode: each episode is its own run, with its own subscribers and record ids); and the
    number of records of the episodes' incident runs."""

    episodes = pq.read_table(folder / "episodes.parquet", columns=["episode_id", "seed"]).to_pylist()
    parts: list[tuple[str, Strata]] = []
    produced = 0
    for ep in episodes:
        k, ep_seed = int(ep["episode_id"]), int(ep["seed"])
        t = pq.read_table(folder / "cdr" / f"episode-{k:05d}-incident.parquet",
                          columns=["record_id", "subscriber_id", "cell_id", "service", "start_time", "incident_id"])
        produced += len(t)
        t = t.filter(t["incident_id"].is_valid())
        # The episode's population (not stored by augment) is rebuilt from its seed: homes only.
        home = build_population(sc.population, net, ep_seed).home_cell
        n = len(t)
        sid = t["subscriber_id"].to_numpy().astype(np.int32)
        codes = {
            "density": cell_density[t["cell_id"].to_numpy()] if n else np.zeros(0, np.int16),
            "hour": (pd.Series(t["start_time"].to_pandas()).dt.hour.to_numpy().astype(np.int16) if n
                     else np.zeros(0, np.int16)),
            "service": cov._dict_codes(t["service"], cov.SERVICES, "augment cdr") if n else np.zeros(0, np.int16),
            "home_density": cell_density[home[sid]] if n else np.zeros(0, np.int16),
            "incident": np.ones(n, np.int16),
        }
        vocab = {"density": DENSITY, "hour": cov.HOURS, "service": cov.SERVICES, "home_density": DENSITY,
                 "incident": (cov.NO_INCIDENT, kind)}
        parts.append((f"{folder.name}/episode-{k:05d}",
                      Strata(t["record_id"].to_numpy().astype(np.int64), sid, codes, vocab, len(home), True, "")))
    return parts, produced


def _gap_status(before, after, unfillable, actions, generated, max_rounds) -> list[dict[str, Any]]:
    by_after = {i["name"]: i for i in after["strata"]}
    why_not = {u["gap"]: u["reason"] for u in unfillable}
    action_of = {t.name: a for a in actions for t in a.gaps}
    out = []
    for i in before["strata"]:
        if i["flag"] != "under":
            continue
        name = i["name"]
        a = by_after[name]
        entry = {"gap": name, "target": i["target"], "before": {"count": i["count"], "share": i["share"]},
                 "after": {"count": a["count"], "share": a["share"]},
                 "extra_runs": [g["name"] for g in generated if name in g["for"]]}
        if name in why_not:
            entry.update(status="not_fillable", reason=why_not[name])
        elif a["flag"] == "ok":
            entry.update(status="filled", action=action_of[name].key)
        else:
            act = action_of[name]
            capped = any(g.get("episodes", g.get("subscribers", 0)) >= g.get("episode_cap", g.get("subscriber_cap", 0))
                         for g in generated if g["action"] == act.key)
            entry.update(status="short", action=act.key, missing_records=a.get("missing_records"),
                         reason=f"still short after {max_rounds} round(s)"
                                + (" (extra runs were capped in size: raise --max-rounds, --max-subscribers or "
                                   "--max-episodes)"
                                   if capped else " (raise --max-rounds)"))
        out.append(entry)
    return out


def _write_records(tmp: Path, orig: Strata, kept: list[Strata], sources: list[tuple[str, int]], combined: Strata,
                   weights: np.ndarray) -> None:
    names = ["original", *[name for name, _ in sources]]
    src = np.concatenate([np.full(len(p), i, np.int32) for i, p in enumerate([orig, *kept])])
    offsets = np.asarray([0, *[off for _, off in sources]], np.int64)
    sub = combined.subscriber_id.astype(np.int64)
    cols = {
        "source": pa.DictionaryArray.from_arrays(pa.array(src, pa.int32()), pa.array(names)),
        "record_id": pa.array(combined.record_id, pa.int64()),
        "subscriber_id": pa.array(combined.subscriber_id, pa.int32()),
        "combined_subscriber_id": pa.array(sub + offsets[src], pa.int64()),
    }
    for d in DIMENSIONS:
        cols[d] = pa.DictionaryArray.from_arrays(pa.array(combined.codes[d], pa.int16()),
                                                 pa.array(list(combined.vocab[d])))
    cols["weight"] = pa.array(weights, pa.float64())
    pq.write_table(pa.table(cols), tmp / "records.parquet", compression="zstd")


def _write_strata_weights(tmp: Path, table: dict, vocab: dict) -> None:
    dec = _decode_key(table["key"], vocab)
    cols = {d: pa.array(dec[d]) for d in DIMENSIONS}
    cols["hour"] = pa.array([int(h) for h in dec["hour"]], pa.int8())
    cols.update({"original_records": pa.array(table["original_records"]),
                 "combined_records": pa.array(table["combined_records"]), "weight": pa.array(table["weight"])})
    pq.write_table(pa.table(cols), tmp / "strata_weights.parquet", compression="zstd")


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _charts(doc: dict) -> list[str]:
    """One SVG per dimension that has a target: share of each level before, after, and after
    weighting, with the min_share targets of single levels marked."""
    import matplotlib  # lazy: matplotlib is slow to import; only figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib is slow to import; only figures need it

    dims = list(dict.fromkeys(i["dimension"] for i in doc["before"]["strata"]))
    out = []
    for d in dims:
        levels = list(doc["after"]["dimensions"][d]["levels"])
        series = [("before", doc["before"], "#9e9e9e"), ("after", doc["after"], "#1f77b4"),
                  ("after, weighted", doc["after_weighted"], "#ff7f0e")]
        fig, ax = plt.subplots(figsize=(max(4.5, 0.35 * len(levels) + 2), 2.8))
        x = np.arange(len(levels))
        width = 0.27
        for j, (label, dd, colour) in enumerate(series):
            lv = dd["dimensions"][d]["levels"]
            ax.bar(x + (j - 1) * width, [lv.get(k, {"share": 0.0})["share"] for k in levels], width, label=label,
                   color=colour)
        for t in doc["before"]["strata"]:
            if t["dimension"] != d or "min_share" not in t["target"]:
                continue
            pos = [levels.index(lv) for lv in t["levels"] if lv in levels]
            if len(pos) == 1:
                ax.hlines(t["target"]["min_share"], pos[0] - 0.45, pos[0] + 0.45, colors="red", linestyles="--")
            elif pos:  # a range of hours: shaded, its total share written on it
                after = next(i for i in doc["after"]["strata"] if i["name"] == t["name"])
                for p in pos:
                    ax.axvspan(p - 0.5, p + 0.5, color="red", alpha=0.06, lw=0)
                ax.text(pos[0] - 0.4, ax.get_ylim()[1] * 0.92,
                        f"{t['level']}: {100 * t['share']:.2f}% -> {100 * after['share']:.2f}% "
                        f"(min {100 * t['target']['min_share']:g}%)", fontsize=7, color="red")
        ax.set_xticks(x, levels, rotation=0 if len(levels) < 8 else 90)
        ax.set_ylabel("share of records")
        ax.set_title(f"{d}: share by level (red: min_share)", fontsize=10)
        ax.legend(fontsize=7, frameon=False)
        out.append(_svg(fig))
        plt.close(fig)
    return out


def write_html(path: Path, doc: dict, generated: list[dict]) -> None:
    """A self-contained page: the gaps, what was generated, and the charts (inline SVG)."""
    def pct(x):
        return f"{100 * x:.2f}%"

    rows = []
    for g in doc["gaps"]:
        tgt = ", ".join(f"{k} {v}" for k, v in g["target"].items())
        rows.append(f"<tr><td>{html.escape(g['gap'])}</td><td>{html.escape(tgt)}</td>"
                    f"<td>{g['before']['count']:,} ({pct(g['before']['share'])})</td>"
                    f"<td>{g['after']['count']:,} ({pct(g['after']['share'])})</td>"
                    f"<td>{html.escape(g['status'])}</td><td>{html.escape(g.get('reason', g.get('action', '')))}</td></tr>")
    met = [i for i in doc["before"]["strata"] if i["flag"] == "ok"]
    gen = [f"<tr><td>{html.escape(g['name'])}</td><td>{g['round']}</td><td>{html.escape(g['action'])}</td>"
           f"<td>{html.escape(g['why'])}</td>"
           f"<td>{g['subscribers'] if 'subscribers' in g else str(g['episodes']) + ' episode(s)'}</td><td>{g['records']:,}</td>"
           f"<td>{g['kept_records']:,}</td><td>{g['seed']}</td></tr>" for g in generated]
    charts = "\n".join(f"<figure>{svg}</figure>" for svg in _charts(doc))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>telcosim rebalance: coverage before and after</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:.2em .5em;font-size:90%}}
figure{{display:inline-block;margin:.5em}}</style></head><body>
<h1>Coverage before and after rebalancing</h1>
<p>Unit: {html.escape(doc['before']['unit'])}. Original: {doc['before']['total']:,} records; combined:
{doc['after']['total']:,}. Weighted (post-stratified) shares of the combined data equal the original's in every
joint stratum.</p>
<h2>Gaps</h2>
<table><tr><th>target</th><th>wanted</th><th>before</th><th>after</th><th>status</th><th>how / why not</th></tr>
{''.join(rows) or '<tr><td colspan="6">no target was short</td></tr>'}</table>
<p>Targets met already: {html.escape(', '.join(i['name'] for i in met) or 'none')}.</p>
<h2>Extra runs</h2>
<table><tr><th>run</th><th>round</th><th>action</th><th>how</th><th>subscribers</th><th>records</th><th>kept</th>
<th>seed</th></tr>{''.join(gen) or '<tr><td colspan="8">none</td></tr>'}</table>
<h2>Shares by level</h2>
{charts}
</body></html>
"""
    path.write_text(page, encoding="utf-8")


__all__ = ["Action", "Result", "extra_seed", "plan_actions", "plan", "poststratify", "rebalance", "write_html"]
