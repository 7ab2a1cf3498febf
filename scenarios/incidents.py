"""The incident library: typed incidents in scenario files, compiled into the engine's generic
perturbations (:mod:`sim.perturb`), and runs with exact ground-truth labels.

A scenario lists incidents as ``[[incidents]]`` tables (``docs/scenario-format.md``). Each has a
``kind``, a start, an end or a duration, a footprint (``cells``, ``sites``, or ``centre_km`` and
``radius_km``) and its own parameters:

``cell_outage`` / ``site_outage``
    The cells stop serving. Calls and data sessions in them are handed over to the nearest
    working neighbour with room (``on_active = "handover"``) or dropped (``"drop"``). New attempts
    in the area are served by that neighbour for a share ``coverage_overlap`` of the area, else
    fail with cause ``no_coverage``. When the cells come back, the subscribers standing in them
    re-attach within about ``storm_spread_s`` (``registration_storm``).
``degraded_cell``
    A "sleeping cell": voice channels and data capacity times ``capacity_factor``; only a share
    ``coverage_factor`` of its area covered.
``backhaul_failure``
    The sites' data capacity capped at ``cap_mbps`` or cut by ``loss`` (a share); voice stays.
``mass_event``
    ``attendees`` subscribers travel to the venue (the footprint's cells) in the hour that begins
    ``arrive_before_min`` before the start, stay until the end and disperse with the next hourly
    decision; demand in the venue cells is multiplied per service (``multipliers``), more at
    ``peaks`` (``at_min`` after the start, for ``duration_min``, times ``factor``).
``emergency``
    Voice and SMS attempts in the region surge by ``multipliers`` at the start, decaying
    exponentially with ``decay_min``; with ``falloff_km`` (a ``centre_km`` footprint only) the
    surge falls off exponentially with a cell's distance from the centre (Bagrow et al. 2011,
    Fig. 2C). With ``callers`` the voice surge is people who would not otherwise have called
    (their Fig. 1C) instead of a rate multiplier: a share ``callers`` of the people at the
    centre (times the fall-off at their cell) each place ``1 + Poisson(calls_per_caller - 1)``
    calls to contacts, the first ``Exp(decay_min)`` after the start, the others
    ``Exp(call_gap_min)`` apart; blocked calls are redialled (``behaviour.redial_*``). Combine
    with outages for a disaster.
``special_day``
    Every subscriber's rates times ``multipliers`` (per service) over the window, with ``hourly``
    overrides by local hour (New Year's midnight SMS).
``random_failures``
    Sites, aggregation nodes, rings and power domains (:mod:`scenarios.failures`) fail and are
    repaired, each level with its own law of time to failure (exponential, Weibull,
    hyperexponential) at ``per_year`` failures per unit-year, and its own repair law: simpy
    processes, one per unit. Each failure is one labelled incident (kind ``random_failure``)
    holding every site it took, an outage or (``effect = "cap"``) a data capacity cap.

Redials are not an incident: they are always on (``behaviour.redial_*``).

Demand changes apply per quarter-hour epoch (from the quarter hour containing the start);
network changes apply at the exact millisecond.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
from pathlib import Path
from typing import Any

import numpy as np

from telcosim.sim.config import Scenario
from telcosim.sim.errors import ConfigError
from telcosim.sim.kernels.demand import VOICE_MO
from telcosim.sim.perturb import CellChange, EpochDemand, Perturbations
from telcosim.sim.sessions import call_duration_params
from telcosim.sim.shards import EPOCH_MS, EPOCHS_PER_HOUR, HOUR_MS
from telcosim.sim.streams import generator

from . import failures

KINDS = ("cell_outage", "site_outage", "degraded_cell", "backhaul_failure", "mass_event", "emergency",
         "special_day", "random_failures")
ON_ACTIVE = ("handover", "drop")
SERVICES = ("voice", "sms", "data")
_COMMON = ("kind", "name", "start", "end", "duration_min")
_FOOTPRINT = ("cells", "sites", "centre_km", "radius_km")
_KEYS: dict[str, tuple[str, ...]] = {
    "cell_outage": _COMMON + _FOOTPRINT + ("on_active", "coverage_overlap", "registration_storm", "storm_spread_s"),
    "site_outage": _COMMON + _FOOTPRINT + ("on_active", "coverage_overlap", "registration_storm", "storm_spread_s"),
    "degraded_cell": _COMMON + _FOOTPRINT + ("capacity_factor", "coverage_factor"),
    "backhaul_failure": _COMMON + _FOOTPRINT + ("cap_mbps", "loss"),
    "mass_event": _COMMON + _FOOTPRINT + ("attendees", "arrive_before_min", "multipliers", "peaks"),
    "emergency": _COMMON + _FOOTPRINT + ("multipliers", "decay_min", "falloff_km", "callers", "calls_per_caller",
                                         "call_gap_min"),
    "special_day": _COMMON + ("multipliers", "hourly"),
    "random_failures": _COMMON + ("sites",) + failures.KEYS + ("on_active", "coverage_overlap", "registration_storm",
                                                             "storm_spread_s"),
}
# Parameters and their defaults (the footprint and times have none).
DEFAULTS: dict[str, Any] = {
    "on_active": "handover", "coverage_overlap": 0.5, "registration_storm": True, "storm_spread_s": 60.0,
    "capacity_factor": 0.3, "coverage_factor": 1.0, "cap_mbps": -1.0, "loss": -1.0,
    "attendees": 2000, "arrive_before_min": 90.0, "multipliers": {}, "peaks": [], "decay_min": 120.0, "falloff_km": None,
    "hourly": [], "callers": None, "calls_per_caller": 1.0, "call_gap_min": 10.0,
}
_OUTAGES = ("cell_outage", "site_outage", "random_failure")
MAX_DURATION_MIN = 366 * 24 * 60


@dataclasses.dataclass
class Incident:
    """One validated incident, times in ms from the run start."""

    id: int
    kind: str
    name: str
    start_ms: int
    end_ms: int
    cells: np.ndarray
    params: dict[str, Any]
    effect_start_ms: int = 0

    def row(self) -> dict[str, Any]:
        return {"incident_id": self.id, "kind": self.kind, "name": self.name, "start_ms": self.start_ms,
                "end_ms": self.end_ms, "effect_start_ms": self.effect_start_ms, "cells": self.cells.tolist(),
                "params": self.params}


# --- validation --------------------------------------------------------------------------------


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _local_ms(text: Any, where: str, sc: Scenario, start: dt.datetime, problems: list[str]) -> int | None:
    if not isinstance(text, str):
        problems.append(f"{where}: {text!r} is not a date-time string (e.g. '2024-03-05T18:00:00')")
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{where}: {text!r} is not an ISO date-time (e.g. '2024-03-05T18:00:00')")
        return None
    if t.tzinfo is not None:
        problems.append(f"{where}: {text!r} has a UTC offset; give the local time (the zone is time.timezone)")
        return None
    t = t.replace(tzinfo=start.tzinfo)
    return int(round((t.timestamp() - start.timestamp()) * 1000))


def _footprint(inc: dict, where: str, net, problems: list[str], required: bool = True) -> np.ndarray | None:
    n_cells = net.n_cells
    n_sites = int(net.site_id.max()) + 1
    given = [k for k in ("cells", "sites", "centre_km") if k in inc]
    if "radius_km" in inc and "centre_km" not in inc:
        problems.append(f"{where}.radius_km: given without centre_km")
    if len(given) > 1:
        problems.append(f"{where}: give one footprint of cells, sites or centre_km + radius_km, not {' and '.join(given)}")
        return None
    if not given:
        if required:
            problems.append(f"{where}: no footprint (give cells = [...], sites = [...], or centre_km = [x, y] "
                            "and radius_km)")
        return None
    key = given[0]
    value = inc[key]
    if key in ("cells", "sites"):
        top = n_cells if key == "cells" else n_sites
        if not isinstance(value, list) or not value:
            problems.append(f"{where}.{key}: {value!r} is an empty footprint (give a non-empty list of {key[:-1]} ids)")
            return None
        ids = []
        for i, v in enumerate(value):
            if not isinstance(v, int) or isinstance(v, bool):
                problems.append(f"{where}.{key}[{i}]: {v!r} is not an integer id")
            elif not 0 <= v < top:
                problems.append(f"{where}.{key}: {v} is not a {key[:-1]} of this network (valid 0..{top - 1})")
            else:
                ids.append(v)
        if len(ids) != len(value):
            return None
        if key == "cells":
            return np.unique(np.array(ids, np.int64))
        return np.flatnonzero(np.isin(net.site_id, ids)).astype(np.int64)
    if not (isinstance(value, list) and len(value) == 2 and all(_num(v) for v in value)):
        problems.append(f"{where}.centre_km: {value!r} is not a point [x_km, y_km]")
        return None
    r = inc.get("radius_km")
    if not _num(r) or r <= 0:
        problems.append(f"{where}.radius_km: {r!r} is not a radius > 0 (km)")
        return None
    d = np.hypot(net.x_km - value[0], net.y_km - value[1])
    cells = np.flatnonzero(d <= r).astype(np.int64)
    if not len(cells):
        problems.append(f"{where}: the circle of {r} km around {value} holds no site: an empty footprint")
        return None
    return cells


def _multipliers(v: Any, where: str, problems: list[str], services=SERVICES) -> dict[str, float]:
    if not isinstance(v, dict):
        problems.append(f"{where}: {v!r} is not a table of multipliers per service ({', '.join(services)})")
        return {}
    out = {}
    for k, x in v.items():
        if k not in services:
            close = difflib.get_close_matches(k, services, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(services)})"
            problems.append(f"{where}.{k}: unknown service{hint}")
        elif not _num(x) or x < 0:
            problems.append(f"{where}.{k}: {x!r} is not a multiplier >= 0")
        else:
            out[k] = float(x)
    return out


def _tables(v: Any, where: str, shape: str, problems: list[str]) -> list[tuple[str, dict]] | None:
    """The tables of a list-of-tables parameter with their dotted paths; a problem for anything
    else (None when ``v`` is not a list at all)."""
    if not isinstance(v, list):
        problems.append(f"{where}: {v!r} is not a list of {shape}")
        return None
    out = []
    for i, item in enumerate(v):
        if isinstance(item, dict):
            out.append((f"{where}[{i}]", item))
        else:
            problems.append(f"{where}[{i}]: {item!r} is not a table {shape}")
    return out


def _check_param(key: str, v: Any, where: str, problems: list[str]) -> Any:
    def bad(what: str) -> None:
        problems.append(f"{where}.{key}: {v!r} {what}")

    if key == "on_active":
        if v not in ON_ACTIVE:
            bad(f"is not allowed (choose one of {', '.join(map(repr, ON_ACTIVE))})")
            return None
        return v
    if key == "registration_storm":
        if not isinstance(v, bool):
            bad("is not true or false")
            return None
        return v
    if key in ("coverage_overlap", "coverage_factor"):
        if not _num(v) or not 0 <= v <= 1:
            bad("is out of range (a share between 0 and 1)")
            return None
        return float(v)
    if key in ("capacity_factor", "loss"):
        # No capacity at all would stall data sessions for good: that is an outage, not this.
        ok = _num(v) and (0 < v <= 1 if key == "capacity_factor" else 0 <= v < 1)
        if not ok:
            bad("is out of range (" + ("a share > 0 and <= 1" if key == "capacity_factor" else "a share >= 0 and < 1")
                + "; for no service at all use a cell_outage or site_outage)")
            return None
        return float(v)
    if key == "callers":
        if not _num(v) or not 0 < v <= 1:
            bad("is out of range (a share of the people at the centre > 0 and <= 1)")
            return None
        return float(v)
    if key == "calls_per_caller":
        if not _num(v) or not 1 <= v <= 20:
            bad("is out of range (a mean number of calls >= 1 and <= 20)")
            return None
        return float(v)
    if key in ("storm_spread_s", "arrive_before_min", "decay_min", "cap_mbps", "falloff_km", "call_gap_min"):
        if not _num(v) or v <= 0:
            bad("is not a number > 0")
            return None
        return float(v)
    if key == "attendees":
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            bad("is not a whole number of attendees >= 1")
            return None
        return v
    if key == "multipliers":
        return _multipliers(v, f"{where}.{key}", problems)
    if key == "peaks":
        items = _tables(v, f"{where}.{key}", "{ at_min, duration_min, factor }", problems)
        if items is None:
            return None
        out = []
        for w, p in items:
            for k in p:
                if k not in ("at_min", "duration_min", "factor"):
                    problems.append(f"{w}.{k}: unknown key (allowed: at_min, duration_min, factor)")
            ok = True
            for k, lo in (("at_min", 0.0), ("duration_min", 0.0), ("factor", 0.0)):
                x = p.get(k)
                if not _num(x) or x < lo or (k == "duration_min" and x == 0):
                    problems.append(f"{w}.{k}: {x!r} is not a number {'> 0' if k == 'duration_min' else '>= 0'}")
                    ok = False
            if ok:
                out.append({k: float(p[k]) for k in ("at_min", "duration_min", "factor")})
        return out
    if key == "hourly":
        items = _tables(v, f"{where}.{key}", "{ hour, voice, sms, data }", problems)
        if items is None:
            return None
        out = []
        for w, h in items:
            hour = h.get("hour")
            if not isinstance(hour, int) or isinstance(hour, bool) or not 0 <= hour <= 23:
                problems.append(f"{w}.hour: {hour!r} is not a local hour 0..23")
                continue
            mult = _multipliers({k: x for k, x in h.items() if k != "hour"}, w, problems)
            out.append({"hour": hour, **mult})
        return out
    raise AssertionError(key)


def parse(sc: Scenario, net, label: str) -> list[Incident]:
    """Validate the scenario's incidents against its network; raise one :class:`ConfigError`
    listing every problem (``label: incidents[i].key: value ...``)."""
    problems: list[str] = []
    start = sc.time.start_datetime()
    window_ms = sc.time.days * 24 * HOUR_MS
    out: list[Incident] = []
    raw = sc.incidents
    for i, inc in enumerate(raw):
        where = f"{label}: incidents[{i}]"
        if not isinstance(inc, dict):
            problems.append(f"{where}: {inc!r} is not a table")
            continue
        kind = inc.get("kind")
        if kind not in KINDS:
            close = difflib.get_close_matches(str(kind), KINDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}.kind: {kind!r} is not an incident kind{hint} (choose one of {', '.join(KINDS)})")
            continue
        allowed = _KEYS[kind]
        for k in inc:
            if kind == "random_failures" and k in failures.OLD_KEYS:
                problems.append(f"{where}.{failures.old_key_hint(k)}")
            elif k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed for {kind}: {', '.join(allowed)})"
                problems.append(f"{where}.{k}: unknown key{hint}")
        n0 = len(problems)
        s_ms = _local_ms(inc["start"], f"{where}.start", sc, start, problems) if "start" in inc else 0
        if "end" in inc and "duration_min" in inc:
            problems.append(f"{where}: give end or duration_min, not both")
            e_ms = None
        elif "end" in inc:
            e_ms = _local_ms(inc["end"], f"{where}.end", sc, start, problems)
        elif "duration_min" in inc:
            d = inc["duration_min"]
            if not _num(d) or d <= 0 or d > MAX_DURATION_MIN:
                problems.append(f"{where}.duration_min: {d!r} is not a duration > 0 and <= {MAX_DURATION_MIN} "
                                "(minutes, a year)")
                e_ms = None
            else:
                e_ms = None if s_ms is None else s_ms + int(round(d * 60_000))
        elif kind in ("random_failures", "special_day") or "start" not in inc:
            e_ms = window_ms
        else:
            problems.append(f"{where}: no end (give end = '...' or duration_min)")
            e_ms = None
        if "start" not in inc and kind not in ("random_failures",):
            problems.append(f"{where}.start: missing (the local date-time the incident starts)")
        if s_ms is not None and e_ms is not None:
            if e_ms <= s_ms:
                problems.append(f"{where}.end: {inc.get('end', inc.get('duration_min'))!r} is not after the start "
                                f"{inc.get('start')!r}")
            elif s_ms >= window_ms or e_ms <= 0:
                problems.append(f"{where}: {inc.get('start')!r} .. is outside the run window "
                                f"({start.isoformat(timespec='minutes')} for {sc.time.days} day(s))")
        cells = None
        if kind == "random_failures":
            cells = _footprint(inc, where, net, problems, required=False)
            if cells is None and "sites" not in inc:
                cells = np.arange(net.n_cells, dtype=np.int64)
        elif kind != "special_day":
            cells = _footprint(inc, where, net, problems)
        params = {}
        if kind == "random_failures":
            params.update(failures.check(inc, where, problems))
        for key in allowed:
            if key in _COMMON or key in _FOOTPRINT or (kind == "random_failures" and key in failures.KEYS):
                continue
            if key in inc:
                v = _check_param(key, inc[key], where, problems)
                if v is not None:
                    params[key] = v
            else:
                params[key] = DEFAULTS[key]
        if kind == "backhaul_failure" and ("cap_mbps" in inc) == ("loss" in inc):
            problems.append(f"{where}: give one of cap_mbps (a cap in Mbps) or loss (a share of capacity lost)")
        if kind == "emergency" and "falloff_km" in inc:
            if "centre_km" not in inc:
                problems.append(f"{where}.falloff_km: needs a centre (give centre_km = [x, y] and radius_km, "
                                "not cells or sites)")
            elif isinstance(inc["centre_km"], list):
                params["centre_km"] = inc["centre_km"]
        if kind == "emergency" and "callers" in inc:
            if isinstance(inc.get("multipliers"), dict) and "voice" in inc["multipliers"]:
                problems.append(f"{where}.multipliers.voice: has no effect with callers (the voice surge is the "
                                "callers' calls: drop it, or drop callers for a rate multiplier)")
        elif kind == "emergency":
            for k in ("calls_per_caller", "call_gap_min"):
                if k in inc:
                    problems.append(f"{where}.{k}: has no effect without callers (give callers = a share of the "
                                    "people at the centre who call)")
        if kind in ("mass_event", "emergency", "special_day") and not any(k in inc for k in ("multipliers", "peaks",
                                                                                              "hourly", "callers")):
            problems.append(f"{where}.multipliers: missing (e.g. multipliers = {{ voice = 2.0, sms = 3.0 }})")
        name = inc.get("name", f"{kind}-{i}")
        if not isinstance(name, str):
            problems.append(f"{where}.name: {name!r} is not a string")
        if len(problems) == n0:
            # An incident already under way when the window opens starts with the window.
            out.append(Incident(len(out), kind, str(name), max(0, int(s_ms)), int(e_ms),
                                cells if cells is not None else np.zeros(0, np.int64), params))
    if problems:
        raise ConfigError(problems)
    return out


# --- compilation -------------------------------------------------------------------------------


def _epoch_floor(t_ms: int) -> int:
    return max(0, t_ms // EPOCH_MS * EPOCH_MS)


def _random_failures(inc: Incident, net, topo: failures.Topology, seed: int, window_ms: int,
                     first_id: int) -> list[Incident]:
    """The failures of a ``random_failures`` incident (:func:`scenarios.failures.schedule`), one
    incident each with every cell of the sites it took."""
    p = inc.params
    sites = np.unique(net.site_id[inc.cells])
    out = []
    for f in failures.schedule(p, topo, sites, seed, min(inc.end_ms, window_ms)):
        if f.t_fail_ms < inc.start_ms:
            continue
        lv = p[f.level]
        params = {k: p[k] for k in ("on_active", "coverage_overlap", "registration_storm", "storm_spread_s")}
        params.update({"level": f.level, "unit": f.unit, "sites": f.sites.tolist(), "effect": lv["effect"],
                       "law": lv["law"], "from": inc.name})
        if lv["effect"] == "cap":
            params.update({"cap_mbps": -1.0, "loss": lv["loss"]})
        out.append(Incident(first_id + len(out), "random_failure",
                            f"{inc.name}/{f.level}{f.unit}@{f.t_fail_ms // 60000}min", f.t_fail_ms, f.t_repair_ms,
                            np.flatnonzero(np.isin(net.site_id, f.sites)).astype(np.int64), params))
    return out


def _down(inc: Incident) -> bool:
    """Whether the incident takes its cells out of service (an outage, or a failure with effect down)."""
    return inc.kind in _OUTAGES and inc.params.get("effect", "down") == "down"


def _capped(inc: Incident) -> bool:
    """Whether the incident caps its cells' data capacity (a backhaul failure, or a failure with
    effect cap)."""
    return inc.kind == "backhaul_failure" or (inc.kind == "random_failure" and inc.params.get("effect") == "cap")


def topology_of(sc: Scenario, net, incidents: list[Incident]) -> failures.Topology | None:
    """The network's transport and power topology when a ``random_failures`` incident needs it
    (every one of them must describe the same topology)."""
    specs = [i.params["topology"] for i in incidents if i.kind == "random_failures"]
    if not specs:
        return None
    if any(t != specs[0] for t in specs[1:]):
        raise ConfigError(f"{sc.name}: the random_failures incidents describe different topologies "
                          f"({specs[0]} and others): give the same topology in every one")
    return failures.build_topology(net, **specs[0])


class _CellTimeline:
    """The state of every cell over time from the network incidents: capacity, serving cell,
    covered share."""

    def __init__(self, net, incidents: list[Incident]) -> None:
        self.net = net
        self.incs = [i for i in incidents if i.kind in _OUTAGES + ("degraded_cell", "backhaul_failure")]
        self.base_ch = net.voice_channels.astype(np.int64)
        self.base_bpms = net.data_mbps * 1e6 / 8 / 1000

    def state(self, active: list[Incident]):
        net = self.net
        n = net.n_cells
        ch = self.base_ch.copy()
        bpms = self.base_bpms.copy()
        cover = np.ones(n)
        down = np.zeros(n, bool)
        overlap = np.ones(n)
        # The radio capacity: a backhaul cap limits what a cell serves, not its PRBs.
        radio = bpms.copy()
        for inc in active:
            c = inc.cells
            p = inc.params
            if _down(inc):
                down[c] = True
                overlap[c] = np.minimum(overlap[c], p["coverage_overlap"])
            elif inc.kind == "degraded_cell":
                ch[c] = np.floor(ch[c] * p["capacity_factor"]).astype(np.int64)
                bpms[c] = bpms[c] * p["capacity_factor"]
                radio[c] = radio[c] * p["capacity_factor"]
                cover[c] = cover[c] * p["coverage_factor"]
            elif _capped(inc):
                if p["cap_mbps"] > 0:
                    bpms[c] = np.minimum(bpms[c], p["cap_mbps"] * 1e6 / 8 / 1000)
                else:
                    bpms[c] = bpms[c] * (1.0 - p["loss"])
        serve = np.arange(n, dtype=np.int32)
        for c in np.flatnonzero(down):
            nb = net.neighbours(c)
            nb = nb[~down[nb]]
            if len(nb):
                d = np.hypot(net.cx_km[nb] - net.cx_km[c], net.cy_km[nb] - net.cy_km[c])
                serve[c] = nb[np.lexsort((nb, d))[0]]
                cover[c] = overlap[c]
            else:
                serve[c] = -1
                cover[c] = 0.0
        return ch, bpms, serve, cover, down, radio

    def changes(self) -> list[CellChange]:
        times = sorted({t for i in self.incs for t in (i.start_ms, i.end_ms)})
        out: list[CellChange] = []
        prev = self.state([])
        for t in times:
            active = [i for i in self.incs if i.start_ms <= t < i.end_ms]
            now = self.state(active)
            ch, bpms, serve, cover, down, radio = now
            diff = (ch != prev[0]) | (bpms != prev[1]) | (serve != prev[2]) | (cover != prev[3]) | (radio != prev[5])
            cells = np.flatnonzero(diff).astype(np.int64)
            if len(cells):
                starting = [i for i in self.incs if i.start_ms == t]
                ending = [i for i in self.incs if i.end_ms == t]
                trigger = (starting or ending)[0]
                handover = all(i.params.get("on_active", "handover") == "handover" for i in starting)
                back = np.flatnonzero(prev[4] & ~down)
                storm = [i for i in ending if _down(i) and i.params.get("registration_storm")]
                spread = max((i.params["storm_spread_s"] for i in storm), default=60.0) * 1000.0
                storm_cells = back[np.isin(back, np.concatenate([i.cells for i in storm]))] if storm else back[:0]
                out.append(CellChange(int(t), cells, ch[cells], bpms[cells], serve[cells], cover[cells],
                                      handover, storm_cells.astype(np.int64), spread, trigger.id,
                                      radio_bpms=radio[cells]))
            prev = now
        return out


class _Demand:
    """Per-epoch demand changes from mass events, emergencies and special days."""

    def __init__(self, sc: Scenario, sim, incidents: list[Incident]) -> None:
        self.sim = sim
        self.n_cells = sim.network.n_cells
        self.events = [i for i in incidents if i.kind == "mass_event"]
        self.emergencies = [i for i in incidents if i.kind == "emergency"]
        self.days = [i for i in incidents if i.kind == "special_day"]
        self.attendees: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        n = sim.population.n
        for inc in self.events:
            g = generator(sc.seed, "incidents.attendees", inc.id)
            k = min(inc.params["attendees"], n)
            ids = np.sort(g.choice(n, size=k, replace=False)).astype(np.int32)
            venue = inc.cells[g.integers(0, len(inc.cells), size=k)].astype(np.int32)
            self.attendees[inc.id] = (ids, venue)
            inc.params = {**inc.params, "attendees": int(k)}
        self.calls = {inc.id: self._emergency_calls(sc, sim, inc) for inc in self.emergencies
                      if inc.params.get("callers") is not None}

    @staticmethod
    def _emergency_calls(sc: Scenario, sim, inc: Incident) -> tuple[np.ndarray, ...]:
        """Every subscriber's would-be emergency calls, drawn once from the incident's own stream
        (so any epoch's share is the same whenever and however it is asked for): (time in ms
        from the run start, ascending; subscriber; counterpart, -1 off-net; duration in ms;
        the subscriber's uniform draw, which makes them a caller where it is under
        ``callers`` times the fall-off at their cell).

        A subscriber's first call comes ``Exp(decay_min)`` after the start (the surge peaks at
        once and decays), their others ``Exp(call_gap_min)`` apart; they place
        ``1 + Poisson(calls_per_caller - 1)`` in all, each to a contact chosen by tie strength
        with probability ``behaviour.onnet_share`` (else off-net), lasting as everyday calls do."""
        p = inc.params
        pop, b = sim.population, sc.behaviour
        n = pop.n
        g = generator(sc.seed, "incidents.emergency_calls", inc.id)
        v = g.random(n)
        k = 1 + g.poisson(p["calls_per_caller"] - 1.0, size=n)
        sub = np.repeat(np.arange(n, dtype=np.int64), k)
        first = np.repeat(np.cumsum(k) - k, k)
        nth = np.arange(len(sub)) - first
        gaps = np.where(nth == 0, g.exponential(p["decay_min"] * 60_000.0, size=len(sub)),
                        g.exponential(p["call_gap_min"] * 60_000.0, size=len(sub)))
        cs = np.cumsum(gaps)
        head = np.cumsum(k) - k
        t = inc.start_ms + np.floor(cs - np.repeat(cs[head] - gaps[head], k)).astype(np.int64)
        # Contacts: the first whose cumulative tie strength exceeds u times the row's total
        # (sim.kernels.rng.search_cdf's rule), found for all at once on owner + normalised cdf.
        u = g.random(len(sub))
        onnet = g.random(len(sub)) < b.onnet_share
        ptr = pop.contact_ptr
        lo, hi = ptr[sub], ptr[sub + 1]
        cp = np.full(len(sub), -1, np.int64)
        if len(pop.contact_idx):
            owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(ptr))
            key = owner + pop.contact_cdf / pop.contact_cdf[ptr[owner + 1] - 1]
            j = np.minimum(np.searchsorted(key, sub + u, "right"), np.maximum(hi - 1, lo))
            pick = onnet & (hi > lo)
            cp[pick] = pop.contact_idx[j[pick]]
        mu, sigma, short_share, short_mu, short_sigma = call_duration_params(b, sim.profile)
        short = g.random(len(sub)) < short_share
        x = np.exp(np.where(short, short_mu + short_sigma * g.standard_normal(len(sub)),
                            mu + sigma * g.standard_normal(len(sub))))
        dur = np.minimum(np.maximum(np.floor(x + 0.5), 1.0) * 1000.0, b.call_duration_max_s * 1000.0)
        keep = t < inc.end_ms
        o = np.argsort(t[keep], kind="stable")
        return (t[keep][o], sub[keep][o].astype(np.int32), cp[keep][o].astype(np.int32),
                dur[keep][o].astype(np.int32), v[sub[keep][o]])

    @staticmethod
    def surge_share(inc: Incident, t0: int, t1: int) -> float:
        """The mean over the epoch ``[t0, t1)`` of the emergency's decay ``exp(-age / decay_min)``
        (0 before the start and after the end): the surge is at its height in the first minutes
        and the epoch's rates carry its exact average."""
        tau = inc.params["decay_min"] * 60_000.0
        a0 = max(t0, inc.start_ms) - inc.start_ms
        a1 = min(t1, inc.end_ms) - inc.start_ms
        if a1 <= a0:
            return 0.0
        return tau * (math.exp(-a0 / tau) - math.exp(-a1 / tau)) / (t1 - t0)

    def falloff(self, inc: Incident) -> np.ndarray:
        """Each footprint cell's share of the surge: ``exp(-d / falloff_km)`` at distance ``d``
        of its coverage centroid from the centre, or 1 everywhere without ``falloff_km``."""
        f = inc.params.get("falloff_km")
        if f is None:
            return np.ones(len(inc.cells))
        net = self.sim.network
        x, y = inc.params["centre_km"]
        return np.exp(-np.hypot(net.cx_km[inc.cells] - x, net.cy_km[inc.cells] - y) / f)

    def extra(self, e: int, start_cell: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """The emergency calls of epoch ``e`` (:attr:`sim.perturb.Perturbations.extra_attempts`):
        those of the pre-drawn calls (:meth:`_emergency_calls`) that fall in the epoch, of the
        subscribers who start it in the footprint at a cell where their draw is under
        ``callers`` times its fall-off."""
        t0, t1 = e * EPOCH_MS, (e + 1) * EPOCH_MS
        parts = []
        for inc in self.emergencies:
            calls = self.calls.get(inc.id)
            if calls is None or not (inc.start_ms < t1 and t0 < inc.end_ms):
                continue
            t, sub, cp, dur, v = calls
            a, b = np.searchsorted(t, [t0, t1])
            share = np.zeros(self.n_cells)
            share[inc.cells] = inc.params["callers"] * self.falloff(inc)
            go = v[a:b] < share[start_cell[sub[a:b]]]
            parts.append((t[a:b][go], sub[a:b][go], cp[a:b][go], dur[a:b][go]))
        if not parts:
            return None
        t, sub, cp, dur = (np.concatenate(c) for c in zip(*parts, strict=True))
        return (t, sub, np.full(len(t), VOICE_MO, np.int8), cp, dur, np.zeros(len(t), np.int64))

    @staticmethod
    def arrive_ms(inc: Incident) -> int:
        # Attendees set off with the hourly place decision before the arrival time.
        return max(0, (inc.start_ms - int(inc.params["arrive_before_min"] * 60_000)) // HOUR_MS * HOUR_MS)

    def __call__(self, e: int) -> EpochDemand:
        t0, t1 = e * EPOCH_MS, (e + 1) * EPOCH_MS
        rate_mult = None
        cell_mult = None
        force_parts = []
        for inc in self.days:
            if inc.start_ms < t1 and t0 < inc.end_ms:
                hour, _ = self.sim.local_hour(e // EPOCHS_PER_HOUR)
                m = dict(inc.params["multipliers"])
                for h in inc.params["hourly"]:
                    if h["hour"] == hour:
                        m.update({k: v for k, v in h.items() if k != "hour"})
                kinds = np.array([m.get("voice", 1.0), m.get("sms", 1.0), m.get("data", 1.0),
                                  m.get("voice", 1.0), m.get("sms", 1.0)])
                rate_mult = kinds if rate_mult is None else rate_mult * kinds
        for inc in self.events:
            if self.arrive_ms(inc) <= t0 < inc.end_ms:
                force_parts.append(self.attendees[inc.id])
            if inc.start_ms < t1 and t0 < inc.end_ms:
                m = inc.params["multipliers"]
                row = np.array([m.get("voice", 1.0), m.get("sms", 1.0), m.get("data", 1.0)])
                mid = (t0 + t1) / 2 - inc.start_ms
                for pk in inc.params["peaks"]:
                    if pk["at_min"] * 60_000 <= mid < (pk["at_min"] + pk["duration_min"]) * 60_000:
                        row = row * pk["factor"]
                cell_mult = np.ones((self.n_cells, 3)) if cell_mult is None else cell_mult
                cell_mult[inc.cells] *= row
        for inc in self.emergencies:
            if inc.start_ms < t1 and t0 < inc.end_ms:
                m = inc.params["multipliers"]
                excess = np.array([m.get("voice", 1.0), m.get("sms", 1.0), m.get("data", 1.0)]) - 1.0
                rows = 1.0 + excess[None, :] * self.surge_share(inc, t0, t1) * self.falloff(inc)[:, None]
                cell_mult = np.ones((self.n_cells, 3)) if cell_mult is None else cell_mult
                cell_mult[inc.cells] *= rows
        force = None
        if force_parts:
            ids = np.concatenate([p[0] for p in force_parts])
            cells = np.concatenate([p[1] for p in force_parts])
            ids, first = np.unique(ids, return_index=True)  # one venue per person: the first event's
            force = (ids.astype(np.int32), cells[first].astype(np.int32))
        return EpochDemand(rate_mult, cell_mult, force)


def compile_incidents(sim) -> Perturbations | None:
    """The perturbations of ``sim``'s scenario (a :class:`sim.engine.Simulation`), None when it has
    no incidents."""
    sc = sim.scenario
    if not sc.incidents:
        return None
    label = Path(sc.source).name if not sc.source.startswith("<") else sc.source
    incidents = parse(sc, sim.network, label)
    window_ms = sim.n_epochs * EPOCH_MS
    expanded: list[Incident] = []
    topo = topology_of(sc, sim.network, incidents)
    for inc in incidents:
        if inc.kind == "random_failures":
            expanded += _random_failures(inc, sim.network, topo, sc.seed, window_ms, len(incidents) + len(expanded))
    incidents = incidents + expanded
    demand = _Demand(sc, sim, incidents)
    for inc in incidents:
        if inc.kind == "mass_event":
            inc.effect_start_ms = _Demand.arrive_ms(inc)
        elif inc.kind in ("emergency", "special_day"):
            inc.effect_start_ms = _epoch_floor(inc.start_ms)
        elif inc.kind == "random_failures":
            inc.effect_start_ms = window_ms  # the process itself changes nothing; its failures do
        else:
            inc.effect_start_ms = max(0, inc.start_ms)
    changes = _CellTimeline(sim.network, incidents).changes()
    order = sorted(incidents, key=lambda i: (i.effect_start_ms, i.id))
    footprint = [(i.id, i.effect_start_ms, i.cells) for i in order]

    def attribute(t: np.ndarray, cell: np.ndarray) -> np.ndarray:
        """The incident a changed row is put down to, ``t`` being when the row was settled (a CDR
        row's end, a location row's time, a KPI interval's last millisecond): the latest started
        one whose footprint holds the row's cell, else the latest started one."""
        ids = np.full(len(t), -1, np.int32)
        for iid, eff, _ in footprint:
            ids[t >= eff] = iid
        for iid, eff, cells in footprint:
            ids[(t >= eff) & np.isin(cell, cells)] = iid
        if (ids < 0).any():  # rows changed before any effect: cannot happen; keep them labelled
            ids[ids < 0] = order[0].id
        return ids

    first = min((i.effect_start_ms for i in incidents if i.kind != "random_failures"), default=window_ms)
    return Perturbations(changes=changes, demand=demand, attribute=attribute, first_effect_ms=int(first),
                         incidents=[i.row() for i in sorted(incidents, key=lambda i: i.id)],
                         topology=topo.columns() if topo is not None else None,
                         extra_attempts=demand.extra if demand.calls else None)
