"""Tail-event augmentation: many labelled episodes of one incident kind, for training detectors.

``telcosim augment --kind site_outage --episodes N --out DIR`` draws N incidents of the kind from
documented distributions (place, time of day, duration, severity), runs each on a copy of a base
scenario (one day, with its baseline: same seed, no incident), keeps a window around the incident
from both runs, and writes them as one dataset in telcosim's schema plus provenance columns:

* ``episode_id``: the episode (``episodes.parquet`` has its incident and weight);
* ``variant``: ``incident`` or ``baseline`` (the counterfactual of the same episode);
* ``provenance``: ``telcosim-augment`` (so the rows can be mixed with a governed real subset and
  still be told apart).

Every episode holds exactly one incident, far more often than nature. The manifest states the
natural frequency assumed for the kind (per site, cell or network and year; ``--natural-rate``)
and each episode's weight: the expected number of such incidents in the episode's window under
that natural rate. The sampling distributions of place, time, duration and severity are taken to
be the natural ones, so the weight is the same for every episode and de-biasing is a reweighting
by frequency alone; weighting each episode by its ``weight`` (and each ordinary day by 1) gives
the natural mix.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from telcosim.sim.config import Scenario
from telcosim.sim.errors import ConfigError, OutputError
from telcosim.sim.network import build_network
from telcosim.sim.staging import staging_folder, swap_into_place
from telcosim.sim.streams import generator

from .runner import run as run_scenario

AUGMENT_KINDS = ("site_outage", "cell_outage", "degraded_cell", "backhaul_failure", "mass_event", "emergency")

# Natural frequency per kind: (events per unit and year, unit).
NATURAL = {
    "site_outage": (2.0, "site"), "cell_outage": (4.0, "cell"), "degraded_cell": (6.0, "cell"),
    "backhaul_failure": (0.5, "site"), "mass_event": (100.0, "network"), "emergency": (0.2, "network"),
}

# The sampling distributions, documented in the manifest and in docs/scenario-format.md.
DISTRIBUTIONS = {
    "place": "site (or cell) uniformly at random; mass events and emergencies: a site uniformly, "
             "footprint its cells (mass event) or a circle of radius U(1, 4) km around it (emergency)",
    "start": "local time of day uniform in [window_before_h, 24 - window_after_h - duration) on the base "
             "scenario's first day, rounded to the minute",
    "duration_min": "lognormal, median 60, log-sd 0.7, clipped to [10, 360] (mass events: U(90, 180))",
    "severity": {
        "site_outage": "on_active handover w.p. 0.7 else drop; coverage_overlap U(0, 0.8)",
        "cell_outage": "on_active handover w.p. 0.7 else drop; coverage_overlap U(0, 0.8)",
        "degraded_cell": "capacity_factor U(0.05, 0.6); coverage_factor U(0.5, 1)",
        "backhaul_failure": "loss U(0.5, 0.98)",
        "mass_event": "attendees: log-uniform between 2% and 15% of subscribers; multipliers voice U(1, 2), "
                      "sms U(1.5, 4), data U(1.5, 4); one half-time peak x U(1.5, 3)",
        "emergency": "the main path's shape (scenarios.incidents, emergency with callers): callers U(0.2, 1) at "
                     "the centre, falling off as exp(-d / falloff_km) with falloff_km = radius_km x U(0.5, 2); "
                     "calls_per_caller U(1, 2), call_gap_min 10; multipliers sms U(3, 12), data U(1, 2); "
                     "decay_min U(10, 60)",
    },
}


def _sample(kind: str, k: int, sc: Scenario, net, g: np.random.Generator, before_h: float,
            after_h: float) -> dict[str, Any]:
    n_sites = int(net.site_id.max()) + 1
    if kind == "mass_event":
        dur = float(g.uniform(90, 180))
    else:
        dur = float(np.clip(g.lognormal(math.log(60.0), 0.7), 10, 360))
    lo = before_h * 60
    hi = 24 * 60 - after_h * 60 - dur
    if hi <= lo:
        raise ConfigError(f"--window-before/--window-after: {before_h} h + {after_h} h leave no room in a day "
                          f"for a {dur:.0f}-minute incident")
    start_min = int(g.uniform(lo, hi))
    day0 = dt.datetime.fromisoformat(sc.time.start)
    start = day0 + dt.timedelta(minutes=start_min)
    inc: dict[str, Any] = {"kind": kind, "name": f"{kind}-episode-{k}", "start": start.isoformat(),
                           "duration_min": round(dur, 1)}
    site = int(g.integers(n_sites))
    if kind == "cell_outage" or kind == "degraded_cell":
        inc["cells"] = [int(g.integers(net.n_cells))]
    elif kind == "emergency":
        inc["centre_km"] = [float(net.x_km[net.site_id == site][0]), float(net.y_km[net.site_id == site][0])]
        inc["radius_km"] = round(float(g.uniform(1, 4)), 2)
    else:
        inc["sites"] = [site]
    if kind in ("site_outage", "cell_outage"):
        inc["on_active"] = "handover" if g.uniform() < 0.7 else "drop"
        inc["coverage_overlap"] = round(float(g.uniform(0, 0.8)), 3)
    elif kind == "degraded_cell":
        inc["capacity_factor"] = round(float(g.uniform(0.05, 0.6)), 3)
        inc["coverage_factor"] = round(float(g.uniform(0.5, 1.0)), 3)
    elif kind == "backhaul_failure":
        inc["loss"] = round(float(g.uniform(0.5, 0.98)), 3)
    elif kind == "mass_event":
        n = sc.population.subscribers
        inc["attendees"] = max(1, int(n * math.exp(g.uniform(math.log(0.02), math.log(0.15)))))
        inc["multipliers"] = {"voice": round(float(g.uniform(1, 2)), 3), "sms": round(float(g.uniform(1.5, 4)), 3),
                              "data": round(float(g.uniform(1.5, 4)), 3)}
        inc["peaks"] = [{"at_min": 45.0, "duration_min": 15.0, "factor": round(float(g.uniform(1.5, 3)), 3)}]
    elif kind == "emergency":
        # The same shape as the built-in disaster's surge: extra callers, falling off with distance.
        inc["callers"] = round(float(g.uniform(0.2, 1.0)), 3)
        inc["falloff_km"] = round(inc["radius_km"] * float(g.uniform(0.5, 2.0)), 3)
        inc["calls_per_caller"] = round(float(g.uniform(1.0, 2.0)), 3)
        inc["call_gap_min"] = 10.0
        inc["multipliers"] = {"sms": round(float(g.uniform(3, 12)), 3), "data": round(float(g.uniform(1, 2)), 3)}
        inc["decay_min"] = round(float(g.uniform(10, 60)), 1)
    return inc


def _window_filter(table: pa.Table, column: str, lo: dt.datetime, hi: dt.datetime) -> pa.Table:
    t = table.column(column)
    lo_s = pa.scalar(lo, type=t.type)
    hi_s = pa.scalar(hi, type=t.type)
    return table.filter(pc.and_(pc.greater_equal(t, lo_s), pc.less(t, hi_s)))


def _with_provenance(table: pa.Table, episode: int, variant: str) -> pa.Table:
    n = table.num_rows
    return (table.append_column("episode_id", pa.array(np.full(n, episode, np.int32)))
            .append_column("variant", pa.array([variant] * n, pa.string()).dictionary_encode())
            .append_column("provenance", pa.array(["telcosim-augment"] * n, pa.string()).dictionary_encode()))


def augment(base: Scenario, kind: str, episodes: int, out: Path, *, seed: int = 1, natural_rate: float | None = None,
            window_before_h: float = 2.0, window_after_h: float = 2.0, overwrite: bool = False,
            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write ``episodes`` labelled episodes of ``kind`` into ``out``; return the manifest."""
    if kind not in AUGMENT_KINDS:
        raise ConfigError(f"--kind: {kind!r} is not an augmentable incident kind (choose one of "
                          f"{', '.join(AUGMENT_KINDS)})")
    if base.incidents:
        raise ConfigError(f"{Path(base.source).name}: the base scenario already has incidents; augment needs "
                          "one without (each episode adds its own)")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} exists and is not empty (use --overwrite to replace it)")
    base = dataclasses.replace(base, time=dataclasses.replace(base.time, days=1))
    net = build_network(base.network, generator(base.seed, "network.layout"),
                        base.base_dir)
    rate, unit = NATURAL[kind]
    if natural_rate is not None:
        rate = natural_rate
    units = {"site": int(net.site_id.max()) + 1, "cell": net.n_cells, "network": 1}[unit]
    window_h = None
    tmp = staging_folder(out, "augment folder")
    rows: list[dict[str, Any]] = []
    try:
        work = tmp / "_runs"
        for table in ("cdr", "locations", "cell_kpis"):
            (tmp / table).mkdir(parents=True)
        for k in range(episodes):
            g = generator(seed, "incidents.augment", k)
            inc = _sample(kind, k, base, net, g, window_before_h, window_after_h)
            ep_seed = int(g.integers(2**62))
            sc = dataclasses.replace(base, seed=ep_seed, incidents=(inc,), name=f"{base.name}-augment-{k}")
            run_scenario(sc, work / "run", baseline_out=work / "base", overwrite=True)
            info = pq.read_table(work / "run" / "incidents.parquet").to_pylist()[0]
            lo = info["start"] - dt.timedelta(hours=window_before_h)
            hi = info["end"] + dt.timedelta(hours=window_after_h)
            window_h = (hi - lo).total_seconds() / 3600
            for variant, folder in (("incident", work / "run"), ("baseline", work / "base")):
                for table, col in (("cdr", "start_time"), ("locations", "time"), ("cell_kpis", "interval_start")):
                    src = folder / table
                    # the hourly parts' date=/hour= folders are not columns of the episode tables
                    t = pq.read_table(src if src.is_dir() else folder / f"{table}.parquet", partitioning=None)
                    t = _with_provenance(_window_filter(t, col, lo, hi), k, variant)
                    pq.write_table(t, tmp / table / f"episode-{k:05d}-{variant}.parquet", compression="zstd")
            weight = rate * units * window_h / (365.0 * 24.0)
            rows.append({"episode_id": k, "kind": kind, "seed": ep_seed, "start": info["start"], "end": info["end"],
                         "window_start": lo, "window_end": hi, "cells": info["cells"], "params": info["params"],
                         "weight": weight})
            if progress is not None:
                progress(k + 1, episodes)
        shutil.rmtree(work)
        pq.write_table(pa.Table.from_pylist(rows), tmp / "episodes.parquet")
        manifest = {
            "tool": "telcosim augment", "kind": kind, "episodes": episodes, "seed": seed,
            "base_scenario": base.name, "window_hours": {"before": window_before_h, "after": window_after_h},
            "sampling_distributions": {k: (v[kind] if isinstance(v, dict) else v) for k, v in DISTRIBUTIONS.items()},
            "natural_frequency": {"per_year": rate, "per": unit, "units_in_network": units},
            "weights": "expected number of such incidents in the episode's window at the natural frequency "
                       "(the sampling distributions of place, time, duration and severity are the natural "
                       "ones): weight each episode by it, each ordinary day by 1, to recover the natural mix",
            "episode_weights": [r["weight"] for r in rows],
            "columns_added": {"episode_id": "the episode (episodes.parquet)",
                              "variant": "incident | baseline (same seed, no incident)",
                              "provenance": "telcosim-augment"},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


__all__ = ["AUGMENT_KINDS", "DISTRIBUTIONS", "NATURAL", "augment"]
