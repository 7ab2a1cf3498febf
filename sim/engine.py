"""The engine: simpy drives the timeline, numba kernels do the bulk.

A :class:`Simulation` is one scenario built (network, population, profile); its :meth:`run`
hands it to an :class:`EpochLoop`, whose docstring gives the step order of a run: quarter-hour
epochs of demand (per subscriber, numba kernels over shards, drawn ahead on their own threads),
resolved network-wide in time order (the :class:`_Resolver`'s kernel: channel admission,
handover or drop, processor sharing, per-cell KPIs), the rows written as they are settled. Rare,
stateful changes of the network (incidents, failures and repairs) are a simpy process beside
the epochs. After the window, the calls and sessions in progress run to their end, then the
KPI, subscriber and cell tables and the manifest are written.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import simpy

from . import __version__, schema
from .config import Scenario
from .dimensioning import Dimensioning, dimension
from .errors import ConfigError, OutputError
from .executors import DaskDemand, LocalDemand, lower_thread_priority
from .kernels import cores, demand, resolution
from .kernels.ordering import stable_time_order_and_times, take
from .labels import RowLog, RowMatcher
from .mobility import expected_presence, kernel_params, other_place_cdf, place_target
from .network import Network, build_network
from .perturb import Perturbations
from .pm import PmCounters
from .population import Population, build_population
from .profile import Profile, load_profile
from .resolver import Resolver as _Resolver
from .sessions import attempt_rates, burst_multipliers, call_duration_params, resolve_behaviour
from .shards import (
    ATT_DTYPES,
    EPOCH_MS,
    EPOCHS_PER_HOUR,
    HOUR_MS,
    MOB_DTYPES,
    NO_CELL_MULT,
    NO_FORCE,
    DemandInputs,
    EpochInputs,
    ShardState,
)
from .sinks import RunWriter
from .streams import generator, kernel_key

DEFAULT_CHUNK = 250_000
DEFAULT_CHECKPOINT_HOURS = 6
SLICES_PER_EPOCH = 3
PIPELINE_MAX_SUBSCRIBERS = 3_000_000
# Epochs of demand drawn ahead of the one being resolved (each holds its events in memory).
PIPELINE_DEPTH = 2


@dataclass
class RunResult:
    out: Path | None
    rows: dict[str, int]
    wall_s: float
    kpi: pa.Table
    stats: dict[str, float] = field(default_factory=dict)
    # With incidents: the baseline's result (same seed, no incidents) when it was kept.
    baseline: RunResult | None = None

    @property
    def records(self) -> int:
        return self.rows.get("cdr", 0) + self.rows.get("locations", 0)


class Simulation:
    """One run of a scenario. Build it, then :meth:`run` it into a :class:`RunWriter`."""

    def __init__(self, scenario: Scenario, perturbations: Perturbations | None = None) -> None:
        """``perturbations`` (from an incident library) change the network and the demand; a
        run without them is the baseline of a run with them."""
        self.scenario = scenario
        self.perturbations = perturbations
        # "plain"; or "incidents" / "baseline" for the two runs of a labelled pair.
        self.role = "plain"
        # behaviour.cell_shapes other than "profile": per-cell weekly load multipliers
        # (n_cells x 168, hour 0 = Monday 00:00 local), set by the caller from a learned
        # generator (see scenarios.runner.attach_learned; sim does not import models).
        self.cell_shapes: np.ndarray | None = None
        # What the learned generators the run used say of themselves (their sidecars: epsilon,
        # data fingerprint), for the manifest.
        self.learned: dict = {}
        base = scenario.base_dir
        seed = scenario.seed
        self.network: Network = build_network(scenario.network, generator(seed, "network.layout"), base)
        self.population: Population = build_population(scenario.population, self.network, seed)
        self.profile: Profile = load_profile(scenario.behaviour.profile, base)
        # per-day rates the scenario leaves unset come from the profile ([rates]); the run, its
        # baseline and its manifest see the resolved figures
        self.scenario = scenario = dataclasses.replace(
            scenario, behaviour=resolve_behaviour(scenario.behaviour, self.profile))
        self.dimensioning: Dimensioning = self.dimension()
        tz = scenario.time.timezone
        self.tz = tz
        self.start = scenario.time.start_datetime()
        self.start_ms = int(self.start.timestamp() * 1000)
        self.n_hours = scenario.time.days * 24
        self.n_epochs = self.n_hours * EPOCHS_PER_HOUR
        self.interval_ms = scenario.output.kpi_interval_s * 1000
        self.n_int = self.n_hours * HOUR_MS // self.interval_ms
        # PM-counter interval (0: no PM tables); the resolver accumulates at the finer of the two
        # intervals' common step, which both KPI tables add up.
        self.pm_ms = scenario.output.pm_interval_s * 1000
        self.tick_ms = math.gcd(self.interval_ms, self.pm_ms) if self.pm_ms else self.interval_ms
        self.n_tick = self.n_hours * HOUR_MS // self.tick_ms
        self.scenario_hash = hashlib.sha256(
            json.dumps(_jsonable(scenario.to_dict()), sort_keys=True).encode()).hexdigest()
        self.privacy_ledger = _read_ledger(scenario.privacy_ledger, base, Path(scenario.source).name)

    def dimension(self) -> Dimensioning:
        """Give the cells their voice channels and data capacity (``network.dimensioning``; see
        :mod:`sim.dimensioning`) from the expected load, never from incidents. Run when the
        simulation is built and again by whoever attaches learned shapes or activities (they move
        load between cells): the result is the same for the same inputs."""
        sc = self.scenario
        self.dimensioning = dimension(self.network, self.population, self.profile, sc.network, sc.behaviour,
                                      sc.mobility, self._shape_multipliers())
        return self.dimensioning

    def baseline(self) -> Simulation:
        """The same run without incidents: the same network, population (learned activity
        included), profile and learned shapes, not built again."""
        base = copy.copy(self)
        base.perturbations = None
        base.role = "baseline"
        return base

    def metadata(self) -> dict[str, str]:
        return {"telcosim.version": __version__, "telcosim.seed": str(self.scenario.seed),
                "telcosim.scenario": self.scenario.name, "telcosim.scenario_sha256": self.scenario_hash}

    def partition(self, k: int) -> str:
        """The hive-style folder of hour ``k`` of the window (from 0; ``k`` = the window's hours
        for the CDRs completed after it): its local date and hour, ``date=YYYY-MM-DD/hour=HH``."""
        t = (self.start.astimezone(dt.UTC) + dt.timedelta(hours=k)).astimezone(self.start.tzinfo)
        return f"date={t:%Y-%m-%d}/hour={t.hour:02d}"

    def local_hour(self, epoch: int) -> tuple[int, int]:
        """(hour, weekday) in local time at the start of an epoch (DST-aware)."""
        t = (self.start.astimezone(dt.UTC) + dt.timedelta(hours=epoch)).astimezone(self.start.tzinfo)
        return t.hour, t.weekday()

    def run(self, writer: RunWriter, progress: Callable[[int, int], None] | None = None,
            chunk_subscribers: int = DEFAULT_CHUNK, *, workers: int | None = None,
            scheduler: str | None = None, resume: bool = False,
            checkpoint_every: int = DEFAULT_CHECKPOINT_HOURS, row_log: RowLog | None = None,
            matcher: RowMatcher | None = None, kpi_ref: pa.Table | None = None) -> RunResult:
        """Run the scenario into ``writer`` (the loop and its step order: :class:`EpochLoop`).

        Execution settings, none of which changes a byte of the output: ``chunk_subscribers``
        (subscribers per demand shard: bounds memory), ``workers`` / ``scheduler`` (demand shards
        on a local Dask cluster of that many processes, or on an existing one), ``resume``
        (continue an interrupted run from its last checkpoint) and ``checkpoint_every`` (hours
        between checkpoints; 0 for none).

        Labels: a baseline run logs its rows into ``row_log``; the run with incidents then marks
        the rows not in it (``matcher``) and the KPI rows that differ from ``kpi_ref`` with the
        id of the incident they are attributed to.
        """
        t_wall = time.perf_counter()
        self._refuse_unprepared()
        loop = EpochLoop(self, writer, progress, chunk_subscribers, workers=workers, scheduler=scheduler,
                         resume=resume, checkpoint_every=checkpoint_every, row_log=row_log, matcher=matcher,
                         kpi_ref=kpi_ref)
        return loop.run(t_wall)

    def _refuse_unprepared(self) -> None:
        """The simulator applies what the layers above it prepare; a scenario whose incidents or
        learned generators were not prepared is refused rather than run without them."""
        sc = self.scenario
        if sc.behaviour.cell_shapes != "profile" and self.cell_shapes is None:
            raise ConfigError(f"behaviour.cell_shapes = {sc.behaviour.cell_shapes!r} needs the learned shapes: run "
                              "it with telcosim.run or 'telcosim run' (they load them)")
        if sc.population.behaviour_model and self.population.service_activity is None:
            raise ConfigError("population.behaviour_model needs the learned behaviour generator: run it with "
                              "telcosim.run or 'telcosim run' (they load it)")
        if sc.incidents and self.perturbations is None and self.role != "baseline":
            raise ConfigError(f"{sc.name}: the scenario has {len(sc.incidents)} incident(s), which a bare "
                              "Simulation does not apply: run it with telcosim.run or 'telcosim run'")

    def _shape_multipliers(self) -> np.ndarray | None:
        """Per-cell rate multipliers (n_cells x 168) that give each cell the learned deviation of
        its load from the city's (``cell_shapes``: one weekly row per cell, mean 1) in place of
        the deviation that the simulator's own mobility gives it.

        A cell's expected load at hour h is the profile's rate at h times the people there,
        P_c(h) (:func:`expected_presence`): the cell's deviation from the city is P_c(h) / mean_h P_c.
        The multiplier is cell_shapes[c, h] * mean_h P_c / P_c(h), then divided at every hour by its
        presence-weighted mean over the cells, so that the expected city-wide demand of every
        service keeps the profile's hour-of-week shape and total exactly: the learned shapes move
        load between cells, never between hours. The profile's service shapes do not enter, so a
        change of profile changes no multiplier."""
        if self.cell_shapes is None:
            return None
        shapes = np.asarray(self.cell_shapes, np.float64)
        net, pop = self.network, self.population
        if shapes.shape != (net.n_cells, 168):
            raise ConfigError(f"behaviour.cell_shapes: expected {net.n_cells} x 168 multipliers, got {shapes.shape}")
        presence = expected_presence(pop, net.n_cells, kernel_params(self.scenario.mobility))
        mean = presence.mean(axis=1, keepdims=True)
        own = np.divide(presence, mean, out=np.ones_like(presence), where=mean > 0)
        mult = shapes / np.clip(own, 0.2, None)
        total = presence.sum(axis=0)
        moved = (presence * mult).sum(axis=0)
        scale = np.divide(moved, total, out=np.ones_like(total), where=(total > 0) & (moved > 0))
        return mult / scale[None, :]

    def _demand_inputs(self) -> DemandInputs:
        sc, net = self.scenario, self.network
        on, off = burst_multipliers(sc.behaviour)
        v_mu, v_sigma, *v_short = call_duration_params(sc.behaviour, self.profile)
        return DemandInputs(
            mob_key=kernel_key(sc.seed, "mobility"), ses_key=kernel_key(sc.seed, "sessions"),
            cx_km=net.cx_km, cy_km=net.cy_km, nbr_ptr=net.nbr_ptr, nbr_idx=net.nbr_idx.astype(np.int64),
            other_cdf=other_place_cdf(net, sc.population),
            mobility=kernel_params(sc.mobility),
            periodic_ms=sc.output.location_update_interval_s * 1000, burst_on_mult=on, burst_off_mult=off,
            burst_on_ms=sc.behaviour.burst_on_mean_min * 60_000.0, burst_off_ms=sc.behaviour.burst_off_mean_min * 60_000.0,
            onnet_share=sc.behaviour.onnet_share, voice_mu=v_mu, voice_sigma=v_sigma,
            voice_max_ms=sc.behaviour.call_duration_max_s * 1000.0, data_mu=sc.behaviour.data_volume_log_mu,
            data_sigma=sc.behaviour.data_volume_log_sigma,
            data_level_share=sc.behaviour.data_volume_level_share,
            data_level_rho=math.exp(-1.0 / sc.behaviour.data_volume_level_hours),
            data_habit_share=sc.behaviour.data_volume_habit_share, voice_short=tuple(v_short))

    # --- tables -----------------------------------------------------------------------------

    def _ts(self, t_ms: np.ndarray) -> pa.Array:
        return pa.array(t_ms + self.start_ms).view(schema.timestamp(self.tz))

    def _cdr_table(self, o: dict, sch: pa.Schema, incident: pa.Array) -> pa.Table:
        # Rows come in the order their records were completed (deterministic); not re-sorted.
        cp = o["cp"]
        # A completed data session is released after the RRC inactivity timer (network.rrc_inactivity_s)
        tail = self.scenario.network.rrc_inactivity_s
        dur = o["dur_s"] + tail * ((o["svc"] == schema.SERVICES.index("data")) & (o["out"] == schema.OUTCOMES.index("completed"))) if tail else o["dur_s"]
        return pa.Table.from_arrays([
            pa.array(o["rec"]), pa.array(o["sess"]), pa.array(o["sub"]), pa.array(cp, mask=cp < 0),
            schema.dictionary_array(o["svc"], schema.SERVICES),
            schema.dictionary_array(o["dir"], schema.DIRECTIONS),
            self._ts(o["t"]), pa.array(dur), pa.array(o["up"]), pa.array(o["down"]),
            pa.array(o["cell"]), pa.array(o["end"]),
            schema.dictionary_array(o["out"], schema.OUTCOMES),
            schema.dictionary_array(o["cause"], schema.CAUSES), pa.array(o["redial"]), incident,
        ], schema=sch)

    def _loc_table(self, loc: dict, sch: pa.Schema, incident: pa.Array) -> pa.Table:
        return pa.Table.from_arrays([
            pa.array(loc["sub"]), self._ts(loc["t"]), pa.array(loc["cell"]),
            schema.dictionary_array(loc["reason"], schema.REASONS), incident,
        ], schema=sch)

    def _kpi_table(self, res: _Resolver, ref: pa.Table | None = None) -> pa.Table:
        k = _coarse(res.kpi, self.interval_ms // self.tick_ms)
        n_int, c = k["att"].shape
        iv = self.interval_ms
        start = np.repeat(np.arange(n_int, dtype=np.int64) * iv, c)
        cell = np.tile(np.arange(c, dtype=np.int32), n_int)
        sess_ms = k["sess_ms"].ravel()
        served = k["served"].ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            thr = served * 8 / 1e6 / (sess_ms / 1000.0)
        i32 = lambda a: pa.array(a.ravel().astype(np.int32))  # noqa: E731
        table = pa.Table.from_arrays([
            self._ts(start), pa.array(cell), i32(k["att"]), i32(k["comp"]), i32(k["block"]), i32(k["drop"]),
            i32(k["fail"]), i32(k["hin"]), i32(k["hfail"]),
            pa.array(k["busy_area"].ravel() / iv), i32(k["busy_peak"]),
            pa.array(k["offered"].ravel() / iv), pa.array(k["carried"].ravel() / iv),
            i32(k["sms"]), i32(k["dsess"]), i32(k["dblock"]), pa.array(served / 1e6), pa.array(sess_ms / iv),
            pa.array(thr, mask=sess_ms <= 0), pa.nulls(len(cell), pa.int32()),
        ], schema=schema.cell_kpis_schema(self.tz))
        if ref is None or self.perturbations is None:
            return table
        # A KPI row differs from the baseline's when any of its figures does.
        differs = np.zeros(table.num_rows, bool)
        for name in table.column_names[2:-1]:
            a = table.column(name).to_numpy(zero_copy_only=False)
            b = ref.column(name).to_numpy(zero_copy_only=False)
            if a.dtype.kind == "f":
                differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
            else:
                differs |= a != b
        ids = np.full(table.num_rows, -1, np.int32)
        if differs.any():
            ids[differs] = self.perturbations.attribute(start[differs] + iv - 1, cell[differs])
        return table.set_column(table.num_columns - 1, table.schema.field(table.num_columns - 1),
                                pa.array(ids, mask=ids < 0))

    def _incidents_table(self, pert: Perturbations) -> pa.Table:
        rows = pert.incidents
        ms = lambda key: self._ts(np.array([r[key] for r in rows], np.int64))  # noqa: E731
        return pa.Table.from_arrays([
            pa.array([r["incident_id"] for r in rows], pa.int32()), pa.array([r["kind"] for r in rows], pa.string()),
            pa.array([r["name"] for r in rows], pa.string()), ms("start_ms"), ms("end_ms"), ms("effect_start_ms"),
            pa.array([list(map(int, r["cells"])) for r in rows], pa.list_(pa.int32())),
            pa.array([json.dumps(r["params"], sort_keys=True) for r in rows], pa.string()),
        ], schema=schema.incidents_schema(self.tz))

    def _subscribers_table(self) -> pa.Table:
        p = self.population
        return pa.Table.from_arrays([
            pa.array(np.arange(p.n, dtype=np.int32)), pa.array(p.home_cell), pa.array(p.work_cell),
            pa.array(p.commuter), pa.array(p.local), pa.array(p.activity),
            schema.dictionary_array(p.activity_class, schema.ACTIVITY_CLASSES),
            pa.array(np.diff(p.contact_ptr).astype(np.int32)),
        ], schema=schema.subscribers_schema())

    def _cells_table(self) -> pa.Table:
        net = self.network
        nbrs = pa.ListArray.from_arrays(pa.array(net.nbr_ptr.astype(np.int32)), pa.array(net.nbr_idx))
        src = pa.array(net.source_id if net.source_id else [None] * net.n_cells, type=pa.string())
        return pa.Table.from_arrays([
            pa.array(np.arange(net.n_cells, dtype=np.int32)), pa.array(net.site_id), pa.array(net.lat),
            pa.array(net.lon), pa.array(net.azimuth_deg, mask=np.isnan(net.azimuth_deg)),
            pa.array(net.x_km), pa.array(net.y_km),
            schema.dictionary_array(net.density, schema.DENSITY_CLASSES),
            pa.array(net.voice_channels), pa.array(net.data_mbps), nbrs, src,
        ], schema=schema.cells_schema())

    def manifest(self, wall_s: float) -> dict:
        sc = self.scenario
        end = (self.start.astimezone(dt.UTC) + dt.timedelta(hours=self.n_hours)).astimezone(self.start.tzinfo)
        return {
            "telcosim_version": __version__,
            "scenario": _jsonable(sc.to_dict()),
            "scenario_sha256": self.scenario_hash,
            "seed": sc.seed,
            "window": {"start": self.start.isoformat(), "end": end.isoformat(), "timezone": self.tz},
            # gate_required: the evaluation metrics the profile takes from real data (telcosim evaluate
            # --gate requires them by default)
            "profile": {"name": self.profile.name, "sources": self.profile.sources,
                        "gate_required": list(self.profile.gate_required) if self.profile.gate_required else None},
            "network": {"cells": self.network.n_cells, "sites": int(self.network.site_id.max()) + 1},
            # How the cells' capacities were set (network.dimensioning), for what expected load.
            "dimensioning": self.dimensioning.summary(),
            # The calibration's privacy ledger (what the real data cost, per target), when the
            # scenario came from 'telcosim calibrate'.
            "privacy_ledger": self.privacy_ledger,
            "learned_generators": self.learned or None,
            # A run with incidents and its baseline (the same seed without them) say which they are.
            "role": self.role,
            # Not part of the deterministic content: everything above is.
            "created": {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "wall_s": round(wall_s, 3)},
        }


class EpochLoop:
    """One run of a :class:`Simulation` into a :class:`RunWriter`: its epochs, the network changes
    among them, the drain and the tables. Build it, then :meth:`run` it (once).

    The window is cut into epochs of ``EPOCH_MS`` (a quarter hour); two simpy processes share the
    timeline, :meth:`epochs` and, when the run has incidents, :meth:`network_changes`. Step order,
    for each epoch ``e``:

    1. **Draw** (:meth:`draw`, on the one ``telcosim-demand`` thread): the demand executor moves
       every subscriber through ``e`` and draws their attempts. Epochs are drawn in order, each
       exactly once, since each continues the shards' state from the one before. Each
       subscriber's draws come from counter-based streams keyed by (stream, subscriber, epoch),
       so the chunking into shards changes nothing.
    2. **Order** (:meth:`order`, on the one ``telcosim-order`` thread, its pieces fanned out on
       the ``telcosim-post`` threads): each attempt's counterpart cell, then both event streams
       in time order (stable: ties keep subscriber order). Ordering ``e`` overlaps drawing
       ``e + 1``.
       Steps 1 and 2 run ahead of resolution by up to ``PIPELINE_DEPTH`` epochs (none above
       ``PIPELINE_MAX_SUBSCRIBERS`` subscribers, to bound memory), but never past an epoch that
       ends with a checkpoint, which saves the shards' live state as of that epoch. These threads
       run at lowered priority, so resolution comes first.
    3. **Resolve** (:meth:`resolve_until`, on the simpy thread): the resolver merges ``e``'s
       events with the calls and sessions in progress in ``SLICES_PER_EPOCH`` slices, each up to
       its end time, and :meth:`emit` hands each slice's rows (labelled with the incident they
       are attributed to, when a matcher is given) to the writer, whose own thread writes them
       while the loop goes on; the last slice of an hour closes that hour's part file. A
       network change at time ``t`` waits until ``e`` (the epoch holding ``t``) is loaded,
       resolves everything before ``t``, then applies (:meth:`apply_change`: calls and
       sessions handed over or dropped, capacities changed, and a registration storm merged
       into ``e``'s remaining location events); the slice that reaches past ``t`` resolves the
       rest.
    4. **Between epochs**: progress is reported (``progress(e + 1, n_epochs)``); after every
       ``checkpoint_every`` hours (not after the last epoch, not to a discarding writer),
       :meth:`checkpoint` saves the shards', the resolver's and the changes' state and waits for
       the write; only then are epochs past ``e`` submitted for drawing.

    After the last epoch, :meth:`drain` runs the calls and sessions still in progress to their
    end (no new demand), and :meth:`finish` writes the KPI, incident, subscriber and cell tables
    and the manifest.
    """

    def __init__(self, sim: Simulation, writer: RunWriter, progress: Callable[[int, int], None] | None = None,
                 chunk_subscribers: int = DEFAULT_CHUNK, *, workers: int | None = None,
                 scheduler: str | None = None, resume: bool = False,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_HOURS, row_log: RowLog | None = None,
                 matcher: RowMatcher | None = None, kpi_ref: pa.Table | None = None) -> None:
        """The settings are :meth:`Simulation.run`'s. Builds the resolver and the demand state
        (or loads both from the writer's checkpoint with ``resume``) and starts the demand
        executor and the post threads, which :meth:`run` closes."""
        self.sim, self.writer, self.progress = sim, writer, progress
        writer.partition = sim.partition
        self.checkpoint_every = checkpoint_every
        self.row_log, self.matcher, self.kpi_ref = row_log, matcher, kpi_ref
        sc, pop, net = sim.scenario, sim.population, sim.network
        b = sc.behaviour
        self.res = _Resolver(net, pop.n, sim.n_tick, sc.network.ue_peak_mbps, sc.network.max_data_sessions,
                             redial_key=int(kernel_key(sc.seed, "resolution")), redial_prob=b.redial_prob,
                             redial_delay_s=b.redial_delay_mean_s, redial_max=b.redial_max,
                             window_end_ms=sim.n_epochs * EPOCH_MS,
                             cover_key=int(kernel_key(sc.seed, "incidents.coverage")))
        self.res.counters[resolution.C_NEXT_TICK] = sim.tick_ms
        self.pm = (PmCounters(pop.n, net.n_cells, sim.n_epochs * EPOCH_MS, sim.pm_ms, net.data_mbps * 1e6 / 8 / 1000,
                              b.data_uplink_share) if sim.pm_ms else None)
        self.pert = sim.perturbations
        self.changes = [] if self.pert is None else sorted(self.pert.changes, key=lambda ch: ch.t_ms)
        # Network changes applied so far (the next one is changes[changes_done]).
        self.changes_done = 0
        self.first_epoch = 0
        state = None
        if resume:
            loaded = writer.load_checkpoint()
            if loaded is not None:
                arrays, meta = loaded
                if meta["scenario_sha256"] != sim.scenario_hash:
                    raise OutputError("the interrupted run was made with another scenario or seed; "
                                      "run again without --resume")
                self.first_epoch = int(meta["epochs_done"])
                self.changes_done = int(meta.get("changes_done", 0))
                state = ShardState(**{k[2:]: v for k, v in arrays.items() if k.startswith("d.")})
                self.res.load_state({k[2:]: v for k, v in arrays.items() if k.startswith("r.")}, meta["resolver"])
                if self.pm is not None:
                    self.pm.load({k[2:]: v for k, v in arrays.items() if k.startswith("p.")})
        if state is None:
            h0, wd0 = sim.local_hour(0)
            state = ShardState.initial(pop, h0, wd0, sc.seed)
        self.shape_mult = sim._shape_multipliers()
        self.cdr_schema = schema.cdr_schema(sim.tz)
        self.loc_schema = schema.locations_schema(sim.tz)
        self.up_share = b.data_uplink_share
        self.stats: dict[str, float] = {"attempts": 0}
        # The epoch in resolution: its time-ordered events, how far each stream is resolved
        # (im, ia), and everybody's cell at its start (kept for registration storms).
        self.epoch = -1
        self.mob: tuple | None = None
        self.att: tuple | None = None
        self.start_cell: np.ndarray | None = None
        self.im = self.ia = 0
        # The draw-and-order pipeline (see the class docstring): epochs submitted, oldest first,
        # and the next epoch to submit; the two single-thread pools live while epochs() runs.
        self.depth = PIPELINE_DEPTH if pop.n <= PIPELINE_MAX_SUBSCRIBERS else 0
        self.upcoming: deque = deque()
        self.next_draw = self.first_epoch
        self._draw_pool: ThreadPoolExecutor | None = None
        self._order_pool: ThreadPoolExecutor | None = None
        inputs = sim._demand_inputs()
        if workers or scheduler:
            self.executor = DaskDemand(inputs, pop, state, chunk_subscribers, workers, scheduler)
        else:
            self.executor = LocalDemand(inputs, pop, state, chunk_subscribers)
        # Threads for the per-epoch work after the shards (CSR index, counterpart cells, time order).
        self.post_threads = cores()
        self.post = (ThreadPoolExecutor(self.post_threads, thread_name_prefix="telcosim-post",
                                        initializer=lower_thread_priority)
                     if self.post_threads > 1 else None)

    def run(self, t_wall: float | None = None) -> RunResult:
        """Run the timeline, then :meth:`finish`; ``t_wall`` (``time.perf_counter()``) is when
        the run began, for the manifest's wall time (default: now)."""
        t_wall = time.perf_counter() if t_wall is None else t_wall
        env = simpy.Environment()
        env.process(self.epochs(env))
        if self.changes:
            env.process(self.network_changes(env))
        try:
            env.run()
        except BaseException:
            if self.pm is not None:
                self.pm.close()
            raise
        finally:
            self.executor.close()
            if self.post is not None:
                self.post.shutdown()
        return self.finish(t_wall)

    # --- steps 1 and 2: demand, drawn and ordered ahead of resolution -------------------------

    def draw(self, e: int) -> tuple:
        """Epoch ``e``'s demand from the executor (step 1): (location events, attempts, the cells
        at the epoch's start), grouped by subscriber. Its inputs: the hour's place targets and
        rates, times the learned per-cell shapes and the incidents' demand changes."""
        sim, pert = self.sim, self.pert
        hour, wd = sim.local_hour(e // EPOCHS_PER_HOUR)
        rates = attempt_rates(sim.scenario.behaviour, sim.profile, hour, wd)
        cell_mult, force = NO_CELL_MULT, NO_FORCE
        if self.shape_mult is not None:
            cell_mult = np.repeat(self.shape_mult[:, wd * 24 + hour, None], 3, axis=1)
        if pert is not None:
            d = pert.demand(e)
            if d.rate_mult is not None:
                rates = rates * d.rate_mult
            if d.cell_mult is not None:
                cell_mult = d.cell_mult if self.shape_mult is None else cell_mult * d.cell_mult
            if d.force is not None:
                force = d.force
        ep = EpochInputs(e, place_target(hour, wd), rates, cell_mult, force,
                         math.log(sim.profile.data_volume_factor(hour, wd)))
        return self.executor.step(ep)

    def order(self, e: int, drawn) -> tuple:
        """Epoch ``e``'s drawn events ready for resolution (step 2): (location events, attempts
        with their counterpart's cell, the cells at the epoch's start or None without
        incidents), both streams in time order."""
        mob_ev, att_ev, start_cell = drawn.result()
        if self.pert is not None and self.pert.extra_attempts is not None:
            att_ev = _with_extra(self.pert.extra_attempts(e, start_cell), mob_ev, att_ev, start_cell)
        # The callee's cell comes from the location events grouped by subscriber (as drawn); the
        # time order is stable (ties keep subscriber order), so the merge is deterministic. The
        # pieces are independent kernels that release the GIL: they run on the post threads side
        # by side, the same arrays whatever the split.
        t0 = np.int64(e * EPOCH_MS)
        ptr, (order_m, t_m), (order_a, t_a) = self._on_post([
            (_csr_index, (mob_ev[1], self.sim.population.n)),
            (stable_time_order_and_times, (mob_ev[0], t0, EPOCH_MS)),
            (stable_time_order_and_times, (att_ev[0], t0, EPOCH_MS))])
        cuts = np.linspace(0, len(att_ev[0]), self.post_threads + 1).round().astype(np.int64)
        cp_cell = np.concatenate(self._on_post([
            (demand.counterpart_cells, (att_ev[3][lo:hi], att_ev[0][lo:hi], ptr, mob_ev[0], mob_ev[2], start_cell))
            for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]))
        del ptr
        if self.pert is None:
            start_cell = None
        cols = self._on_post([(take, (c, order_m)) for c in mob_ev[1:]] +
                             [(take, (c, order_a)) for c in (*att_ev[1:], cp_cell)])
        n_m = len(mob_ev) - 1
        return (t_m, *cols[:n_m]), (t_a, *cols[n_m:]), start_cell

    def _on_post(self, tasks: list) -> list:
        if self.post is None:
            return [f(*a) for f, a in tasks]
        return [fut.result() for fut in [self.post.submit(f, *a) for f, a in tasks]]

    def submit_until(self, last: int) -> None:
        """Submit the epochs up to ``last`` (within the window) for drawing, then ordering."""
        while self.next_draw <= min(last, self.sim.n_epochs - 1):
            e = self.next_draw
            self.upcoming.append(self._order_pool.submit(self.order, e, self._draw_pool.submit(self.draw, e)))
            self.next_draw += 1

    def last_drawable(self, e: int) -> int:
        """The last epoch that may be drawn while epoch ``e`` is resolved: ``depth`` ahead, but
        not past a checkpoint."""
        last = e + self.depth
        for c in range(e, last):
            if self.checkpoint_due(c):
                return c
        return last

    def checkpoint_due(self, e: int) -> bool:
        """Whether a checkpoint follows epoch ``e``."""
        return (self.checkpoint_every > 0 and not self.writer.discard
                and (e + 1) % (self.checkpoint_every * EPOCHS_PER_HOUR) == 0 and e + 1 < self.sim.n_epochs)

    # --- step 3: resolution and rows --------------------------------------------------------

    def epochs(self, env: simpy.Environment):
        """The simpy process of the epochs: steps 1 to 4 of the class docstring for each."""
        n_epochs = self.sim.n_epochs
        if self.first_epoch:
            yield env.timeout(self.first_epoch * EPOCH_MS)
        with (ThreadPoolExecutor(max_workers=1, thread_name_prefix="telcosim-demand",
                                 initializer=lower_thread_priority) as draw_pool,
              ThreadPoolExecutor(max_workers=1, thread_name_prefix="telcosim-order",
                                 initializer=lower_thread_priority) as order_pool):
            self._draw_pool, self._order_pool = draw_pool, order_pool
            self.submit_until(self.first_epoch)
            for e in range(self.first_epoch, n_epochs):
                mob, att, start_cell = self.upcoming.popleft().result()
                checkpoint = self.checkpoint_due(e)
                self.submit_until(self.last_drawable(e))
                self.stats["attempts"] += len(att[0])
                self.epoch, self.mob, self.att, self.start_cell, self.im, self.ia = e, mob, att, start_cell, 0, 0
                del mob, att, start_cell
                # Slices are row groups (each hour's make one part file, part k = hour k): the
                # same events in the same order as one call, a fraction of the output in memory.
                t0 = e * EPOCH_MS
                for k in range(1, SLICES_PER_EPOCH + 1):
                    t_end = t0 + k * EPOCH_MS // SLICES_PER_EPOCH
                    yield env.timeout(t_end - env.now)
                    self.resolve_until(t_end, final=k == SLICES_PER_EPOCH and (e + 1) % EPOCHS_PER_HOUR == 0)
                self.mob = self.att = self.start_cell = None
                if self.progress is not None:
                    self.progress(e + 1, n_epochs)
                if checkpoint:
                    self.checkpoint(e)
                self.submit_until(e + 1)
            self._draw_pool = self._order_pool = None
        self.drain()

    def resolve_until(self, t_end: int, final: bool = False) -> None:
        """Resolve the current epoch's events before ``t_end`` and emit the rows (``final``:
        they close the hour's part file)."""
        mob, att = self.mob, self.att
        im, ia = self.im, self.ia
        jm = int(np.searchsorted(mob[0], t_end, "left"))
        ja = int(np.searchsorted(att[0], t_end, "left"))
        # Pools for calls and data sessions: room for every attempt of the slice.
        kinds = att[2][ia:ja]
        self.res.ensure_slots(int(np.count_nonzero((kinds == demand.VOICE_MO) | (kinds == demand.VOICE_MT_OFFNET))),
                              int(np.count_nonzero(kinds == demand.DATA)))
        cdr, loc = self.res.resolve(t_end, self.sim.tick_ms, tuple(a[im:jm] for a in mob),
                                    tuple(a[ia:ja] for a in att), self.up_share)
        self.im, self.ia = jm, ja
        self.emit(cdr, loc, final, t_end)

    def emit(self, cdr: dict, loc: dict | None, final: bool = True, t_emit: int = int(resolution.INF)) -> None:
        """Hand rows to the row log and the writer; ``t_emit``: everything before it is resolved."""
        writer = self.writer
        if self.pm is not None:
            self.pm.add(cdr, loc, t_emit)
        if self.row_log is not None:
            self.row_log.add("cdr", cdr, t_emit)
            if loc is not None:
                self.row_log.add("locations", loc, t_emit)
        if writer.discard:
            writer.rows["cdr"] = writer.rows.get("cdr", 0) + len(cdr["rec"])
            if loc is not None:
                writer.rows["locations"] = writer.rows.get("locations", 0) + len(loc["t"])
            return
        sim = self.sim
        writer.write_part("cdr", sim._cdr_table(cdr, self.cdr_schema, self.labels("cdr", cdr, t_emit)), final)
        if loc is not None:
            writer.write_part("locations", sim._loc_table(loc, self.loc_schema, self.labels("locations", loc, t_emit)),
                              final)

    def labels(self, table: str, cols: dict, t_emit: int) -> pa.Array:
        """Each row's incident id: the incident a row the baseline does not have is attributed
        to; null for the rest, and for all rows without a matcher."""
        n = len(cols["t"])
        if self.matcher is None or self.pert is None:
            return pa.nulls(n, pa.int32())
        changed = self.matcher.changed(table, cols, t_emit)
        ids = np.full(n, -1, np.int32)
        if changed.any():
            # Attributed by when the row was settled: a call an outage dropped started before it.
            settled = cols["t"][changed]
            if table == "cdr":
                settled = settled + np.round(cols["dur_s"][changed] * 1000.0).astype(np.int64)
            ids[changed] = self.pert.attribute(settled, cols["cell"][changed])
        return pa.array(ids, mask=ids < 0)

    # --- network changes --------------------------------------------------------------------

    def network_changes(self, env: simpy.Environment):
        """The simpy process of incidents, failures and repairs: each change in time order
        (those of the window not applied before a resume), at its time."""
        end_ms = self.sim.n_epochs * EPOCH_MS
        for ch in self.changes[self.changes_done:]:
            if ch.t_ms >= end_ms:
                break
            yield env.timeout(ch.t_ms - env.now)
            while self.epoch != ch.t_ms // EPOCH_MS or self.mob is None:
                yield env.timeout(0)  # the epoch process loads this epoch first
            self.apply_change(ch)

    def apply_change(self, ch) -> None:
        """Resolve everything before the change's time, then apply it (a
        :class:`sim.perturb.CellChange`) and its registration storm."""
        self.resolve_until(ch.t_ms)
        if self.pm is not None:
            self.pm.change(ch.t_ms, ch.cells, ch.data_bpms if ch.radio_bpms is None else ch.radio_bpms)
        # Rows at the change's time and after (the rows emitted up to it are from before).
        self.emit(*self.res.change(ch), False, ch.t_ms + 1)
        if len(ch.storm_cells):
            self.registration_storm(ch)
        self.changes_done += 1

    def registration_storm(self, ch) -> None:
        """Everybody standing in a cell that comes back re-attaches within a minute or so: a
        burst of location updates, merged into the epoch's remaining location events."""
        mob, im = self.mob, self.im
        phys = self.start_cell.copy()
        phys[mob[1][:im]] = mob[2][:im]  # time order: the last assignment wins
        subs = np.flatnonzero(np.isin(phys, ch.storm_cells)).astype(np.int32)
        if not len(subs):
            return
        g = generator(self.sim.scenario.seed, "incidents.storm", ch.t_ms)
        t_ev = ch.t_ms + 1 + g.exponential(ch.storm_spread_ms, len(subs)).astype(np.int64)
        t_ev = np.minimum(t_ev, (self.epoch + 1) * EPOCH_MS - 1)
        new = (t_ev, subs, phys[subs].astype(np.int32), np.full(len(subs), demand.KIND_ATTACH, np.int8))
        rest = [np.concatenate([a[im:], b.astype(a.dtype)]) for a, b in zip(mob, new, strict=True)]
        order = np.argsort(rest[0], kind="stable")
        self.mob = tuple(np.concatenate([a[:im], r[order]]) for a, r in zip(mob, rest, strict=True))

    # --- step 4 and the end -----------------------------------------------------------------

    def checkpoint(self, e: int) -> None:
        """Save the state after epoch ``e`` (the shards', the resolver's, the changes applied)
        and wait for the write: the arrays are the live ones, which the next epoch changes."""
        r_arrays, r_meta = self.res.state()
        arrays = {**{f"d.{k}": v for k, v in self.executor.state_arrays().items()},
                  **{f"r.{k}": v for k, v in r_arrays.items()},
                  **({f"p.{k}": v for k, v in self.pm.state().items()} if self.pm is not None else {})}
        self.writer.write_checkpoint(arrays, {"epochs_done": e + 1, "resolver": r_meta,
                                              "changes_done": self.changes_done,
                                              "scenario_sha256": self.sim.scenario_hash}, wait=True)

    def drain(self) -> None:
        """After the window: calls and sessions in progress run to their end; no new demand."""
        empty_m = tuple(np.zeros(0, dtype) for dtype in MOB_DTYPES)
        empty_a = (*(np.zeros(0, dtype) for dtype in ATT_DTYPES), np.zeros(0, np.int32), np.zeros(0, np.int32))
        cdr, loc = self.res.resolve(int(resolution.INF) - 1, self.sim.tick_ms, empty_m, empty_a, self.up_share)
        assert len(loc["t"]) == 0  # nothing moves or starts after the window
        self.emit(cdr, None)

    def finish(self, t_wall: float) -> RunResult:
        """Write the KPI, incident, subscriber and cell tables and the manifest; commit."""
        sim, writer = self.sim, self.writer
        kpi = sim._kpi_table(self.res, self.kpi_ref)
        pm = self.pm.tables(sim, self.res.kpi, sim.tick_ms) if self.pm is not None else {}
        if not writer.discard:
            writer.write_table("cell_kpis", kpi)
            for name, table in pm.items():
                writer.write_table(name, table)
            if self.pert is not None:
                writer.write_table("incidents", sim._incidents_table(self.pert))
                if self.pert.topology is not None:
                    writer.write_table("topology", pa.Table.from_arrays(
                        [pa.array(self.pert.topology[f.name]) for f in schema.topology_schema()],
                        schema=schema.topology_schema()))
            writer.write_table("subscribers", sim._subscribers_table())
            writer.write_table("cells", sim._cells_table())
        else:
            writer.rows["cell_kpis"] = kpi.num_rows
            writer.rows.update({name: table.num_rows for name, table in pm.items()})
        wall = time.perf_counter() - t_wall
        out = writer.commit(sim.manifest(wall))
        self.stats["wall_s"] = wall
        return RunResult(out, dict(writer.rows), wall, kpi, self.stats)


def _coarse(fine: dict[str, np.ndarray], g: int) -> dict[str, np.ndarray]:
    """KPI accumulators ([tick, cell]) added up over ``g`` ticks per interval (peaks: the most)."""
    if g == 1:
        return fine
    out = {}
    for name, a in fine.items():
        r = a.reshape(a.shape[0] // g, g, a.shape[1])
        out[name] = r.max(axis=1) if name in ("busy_peak", "dpeak", "cpeak") else r.sum(axis=1)
    return out


def _read_ledger(path: str, base: Path | None, file: str) -> dict | None:
    if not path:
        return None
    p = Path(path).expanduser()
    p = p if p.is_absolute() or base is None else base / p
    try:
        ledger = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: privacy_ledger: {path!r}: cannot read it as JSON "
                          f"({exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc})") from None
    return {"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "ledger": ledger}


def counterpart_cells_of(mob: tuple, att_t: np.ndarray, att_cp: np.ndarray, start_cell: np.ndarray) -> np.ndarray:
    """The counterpart's cell at each attempt from time-ordered location events (for callers that
    do not have them grouped by subscriber, as the engine has)."""
    o = np.argsort(mob[1], kind="stable")
    return demand.counterpart_cells(att_cp, att_t, _csr_index(mob[1][o], len(start_cell)), mob[0][o],
                                    mob[2][o], start_cell)


def _with_extra(extra, mob_ev, att_ev, start_cell):
    """The epoch's attempts with an incident's extra ones after them, each with its caller's
    serving cell at its time (as the shards find it for drawn attempts)."""
    if extra is None or not len(extra[0]):
        return att_ev
    cells = demand.counterpart_cells(extra[1], extra[0], _csr_index(mob_ev[1], len(start_cell)), mob_ev[0],
                                     mob_ev[2], start_cell)
    return tuple(np.concatenate([a, x.astype(a.dtype, copy=False)])
                 for a, x in zip(att_ev, (*extra, cells), strict=True))


def _csr_index(sub_sorted: np.ndarray, n: int) -> np.ndarray:
    """CSR row pointers of events grouped by subscriber (``sub_sorted`` ascending)."""
    return demand.csr_index(sub_sorted, np.int64(n))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


__all__ = ["EpochLoop", "RunResult", "Simulation"]
