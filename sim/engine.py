"""The engine: simpy drives the timeline, numba kernels do the bulk.

The run window is cut into quarter-hour epochs (places are decided and rates change hourly, in
the first epoch of each hour). A simpy process walks through them; for each epoch:

1. **Demand** (per subscriber, in chunks; independent across subscribers): the mobility kernel
   moves every subscriber through the epoch (cell changes, periodic location updates) and the
   session kernel draws their voice, SMS and data attempts. Each subscriber's draws come from
   counter-based streams keyed by (stream, subscriber, epoch), so chunking changes nothing.
2. **Resolution** (network-wide, in time order): the resolution kernel merges cell changes and
   attempts with the calls and data sessions in progress: channel admission and blocking,
   handover or drop, processor sharing of data capacity, per-cell KPIs.
3. **Output**: the CDR and location rows completed in the epoch go to the sink (written by a
   background thread while the next epoch runs).

After the last epoch the calls and sessions still in progress run to their end (no new demand),
then the KPI, subscriber and cell tables and the manifest are written. Rare, stateful changes of
the network over the timeline (incidents, failures and repairs) are simpy processes beside the
epoch process.
"""

from __future__ import annotations

import datetime as dt
import copy
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
from .errors import ConfigError, OutputError
from .executors import DaskDemand, LocalDemand, lower_thread_priority
from .kernels import cores, demand, resolution
from .kernels.ordering import stable_time_order_and_times, take
from .labels import RowLog, RowMatcher
from .mobility import kernel_params, other_place_cdf, place_target
from .network import Network, build_network
from .perturb import Perturbations
from .population import Population, build_population
from .profile import Profile, load_profile
from .resolver import Resolver as _Resolver
from .sessions import attempt_rates, burst_multipliers, call_duration_params
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
        base = None if scenario.source.startswith("<") else Path(scenario.source).parent
        seed = scenario.seed
        self.network: Network = build_network(scenario.network, generator(seed, "network.layout"), base)
        self.population: Population = build_population(scenario.population, self.network, seed)
        self.profile: Profile = load_profile(scenario.behaviour.profile, base)
        tz = scenario.time.timezone
        self.tz = tz
        self.start = scenario.time.start_datetime()
        self.start_ms = int(self.start.timestamp() * 1000)
        self.n_hours = scenario.time.days * 24
        self.n_epochs = self.n_hours * EPOCHS_PER_HOUR
        self.interval_ms = scenario.output.kpi_interval_s * 1000
        self.n_int = self.n_hours * HOUR_MS // self.interval_ms
        self.scenario_hash = hashlib.sha256(
            json.dumps(_jsonable(scenario.to_dict()), sort_keys=True).encode()).hexdigest()
        self.privacy_ledger = _read_ledger(scenario.privacy_ledger, base, Path(scenario.source).name)

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

    def local_hour(self, epoch: int) -> tuple[int, int]:
        """(hour, weekday) in local time at the start of an epoch (DST-aware)."""
        t = (self.start.astimezone(dt.UTC) + dt.timedelta(hours=epoch)).astimezone(self.start.tzinfo)
        return t.hour, t.weekday()

    def run(self, writer: RunWriter, progress: Callable[[int, int], None] | None = None,
            chunk_subscribers: int = DEFAULT_CHUNK, *, workers: int | None = None,
            scheduler: str | None = None, resume: bool = False,
            checkpoint_every: int = DEFAULT_CHECKPOINT_HOURS, row_log: RowLog | None = None,
            matcher: RowMatcher | None = None, kpi_ref: pa.Table | None = None) -> RunResult:
        """Run the scenario into ``writer``.

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
        sc = self.scenario
        pop, net = self.population, self.network
        h0, wd0 = self.local_hour(0)
        state = ShardState.initial(pop, h0, wd0, sc.seed)
        b = sc.behaviour
        res = _Resolver(net, pop.n, self.n_int, sc.network.ue_peak_mbps, sc.network.max_data_sessions,
                        redial_key=int(kernel_key(sc.seed, "resolution")), redial_prob=b.redial_prob,
                        redial_delay_s=b.redial_delay_mean_s, redial_max=b.redial_max,
                        window_end_ms=self.n_epochs * EPOCH_MS,
                        cover_key=int(kernel_key(sc.seed, "incidents.coverage")))
        res.counters[resolution.C_NEXT_TICK] = self.interval_ms
        pert = self.perturbations
        changes = [] if pert is None else sorted(pert.changes, key=lambda ch: ch.t_ms)
        done = {"changes": 0}
        first_epoch = 0
        if resume:
            loaded = writer.load_checkpoint()
            if loaded is not None:
                arrays, meta = loaded
                if meta["scenario_sha256"] != self.scenario_hash:
                    raise OutputError("the interrupted run was made with another scenario or seed; "
                                      "run again without --resume")
                first_epoch = int(meta["epochs_done"])
                done["changes"] = int(meta.get("changes_done", 0))
                state = ShardState(**{k[2:]: v for k, v in arrays.items() if k.startswith("d.")})
                res.load_state({k[2:]: v for k, v in arrays.items() if k.startswith("r.")}, meta["resolver"])
        inputs = self._demand_inputs()
        if workers or scheduler:
            executor = DaskDemand(inputs, pop, state, chunk_subscribers, workers, scheduler)
        else:
            executor = LocalDemand(inputs, pop, state, chunk_subscribers)
        cdr_schema = schema.cdr_schema(self.tz)
        loc_schema = schema.locations_schema(self.tz)
        up_share = sc.behaviour.data_uplink_share
        stats = {"attempts": 0}

        # The simulator applies what the layers above it prepare; a scenario whose incidents or
        # learned generators were not prepared is refused here rather than run without them.
        if sc.behaviour.cell_shapes != "profile" and self.cell_shapes is None:
            raise ConfigError(f"behaviour.cell_shapes = {sc.behaviour.cell_shapes!r} needs the learned shapes: run "
                              "it with telcosim.run or 'telcosim run' (they load them)")
        if sc.population.behaviour_model and pop.service_activity is None:
            raise ConfigError("population.behaviour_model needs the learned behaviour generator: run it with "
                              "telcosim.run or 'telcosim run' (they load it)")
        if sc.incidents and pert is None and self.role != "baseline":
            raise ConfigError(f"{sc.name}: the scenario has {len(sc.incidents)} incident(s), which a bare "
                              "Simulation does not apply: run it with telcosim.run or 'telcosim run'")
        shape_mult = self._shape_multipliers()
        # Threads for the per-epoch work after the shards (CSR index, counterpart cells, time order).
        post_threads = cores()
        post = (ThreadPoolExecutor(post_threads, thread_name_prefix="telcosim-post", initializer=lower_thread_priority)
                if post_threads > 1 else None)

        def _on_post(tasks: list) -> list:
            if post is None:
                return [f(*a) for f, a in tasks]
            return [fut.result() for fut in [post.submit(f, *a) for f, a in tasks]]

        def draw_epoch(e: int):
            hour, wd = self.local_hour(e // EPOCHS_PER_HOUR)
            rates = attempt_rates(sc.behaviour, self.profile, hour, wd)
            cell_mult, force = NO_CELL_MULT, NO_FORCE
            if shape_mult is not None:
                cell_mult = np.repeat(shape_mult[:, wd * 24 + hour, None], 3, axis=1)
            if pert is not None:
                d = pert.demand(e)
                if d.rate_mult is not None:
                    rates = rates * d.rate_mult
                if d.cell_mult is not None:
                    cell_mult = d.cell_mult if shape_mult is None else cell_mult * d.cell_mult
                if d.force is not None:
                    force = d.force
            ep = EpochInputs(e, place_target(hour, wd), rates, cell_mult, force,
                             math.log(self.profile.data_volume_factor(hour, wd)))
            return executor.step(ep)

        def order_epoch(e: int, drawn) -> tuple:
            """The drawn epoch ready for resolution. Runs on its own thread, so that the next
            epoch's draw (which needs only the shards' state) overlaps it."""
            mob_ev, att_ev, start_cell = drawn.result()
            # The callee's cell, from the location events grouped by subscriber (as drawn), and
            # the time order (stable: ties keep subscriber order, so the merge is deterministic).
            # The pieces are independent kernels that release the GIL: they run on the post
            # threads side by side (the same arrays whatever the split).
            t0 = np.int64(e * EPOCH_MS)
            ptr, (order_m, t_m), (order_a, t_a) = _on_post([
                (_csr_index, (mob_ev[1], pop.n)),
                (stable_time_order_and_times, (mob_ev[0], t0, EPOCH_MS)),
                (stable_time_order_and_times, (att_ev[0], t0, EPOCH_MS))])
            cuts = np.linspace(0, len(att_ev[0]), post_threads + 1).round().astype(np.int64)
            cp_cell = np.concatenate(_on_post([
                (demand.counterpart_cells, (att_ev[3][lo:hi], att_ev[0][lo:hi], ptr, mob_ev[0], mob_ev[2], start_cell))
                for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]))
            del ptr
            if pert is None:
                start_cell = None  # only kept for registration storms
            cols = _on_post([(take, (c, order_m)) for c in mob_ev[1:]] +
                            [(take, (c, order_a)) for c in (*att_ev[1:], cp_cell)])
            n_m = len(mob_ev) - 1
            return (t_m, *cols[:n_m]), (t_a, *cols[n_m:]), start_cell

        def checkpoint_due(e: int) -> bool:
            return (checkpoint_every > 0 and not writer.discard
                    and (e + 1) % (checkpoint_every * EPOCHS_PER_HOUR) == 0 and e + 1 < self.n_epochs)

        def labels(table: str, cols: dict, t_emit: int) -> pa.Array:
            n = len(cols["t"])
            if matcher is None or pert is None:
                return pa.nulls(n, pa.int32())
            changed = matcher.changed(table, cols, t_emit)
            ids = np.full(n, -1, np.int32)
            if changed.any():
                # Attributed by when the row was settled: a call an outage dropped started before it.
                settled = cols["t"][changed]
                if table == "cdr":
                    settled = settled + np.round(cols["dur_s"][changed] * 1000.0).astype(np.int64)
                ids[changed] = pert.attribute(settled, cols["cell"][changed])
            return pa.array(ids, mask=ids < 0)

        def emit(cdr: dict, loc: dict | None, final: bool = True, t_emit: int = int(resolution.INF)) -> None:
            if row_log is not None:
                row_log.add("cdr", cdr, t_emit)
                if loc is not None:
                    row_log.add("locations", loc, t_emit)
            if writer.discard:
                writer.rows["cdr"] = writer.rows.get("cdr", 0) + len(cdr["rec"])
                if loc is not None:
                    writer.rows["locations"] = writer.rows.get("locations", 0) + len(loc["t"])
                return
            writer.write_part("cdr", self._cdr_table(cdr, cdr_schema, labels("cdr", cdr, t_emit)), final)
            if loc is not None:
                writer.write_part("locations", self._loc_table(loc, loc_schema, labels("locations", loc, t_emit)),
                                  final)

        # The epoch in resolution: its events, how far they are resolved, the cells at its start.
        cur: dict = {"e": -1, "mob": None, "att": None, "start": None, "im": 0, "ia": 0}

        def advance(t_end: int, final: bool = False) -> None:
            """Resolve the current epoch's events before ``t_end`` and write the rows."""
            mob_ev, att_ev = cur["mob"], cur["att"]
            im, ia = cur["im"], cur["ia"]
            jm = int(np.searchsorted(mob_ev[0], t_end, "left"))
            ja = int(np.searchsorted(att_ev[0], t_end, "left"))
            # Pools for calls and data sessions: room for every attempt of the slice.
            kinds = att_ev[2][ia:ja]
            res.ensure_slots(int(np.count_nonzero((kinds == demand.VOICE_MO) | (kinds == demand.VOICE_MT_OFFNET))),
                             int(np.count_nonzero(kinds == demand.DATA)))
            cdr, loc = res.resolve(t_end, self.interval_ms, tuple(a[im:jm] for a in mob_ev),
                                   tuple(a[ia:ja] for a in att_ev), up_share)
            cur["im"], cur["ia"] = jm, ja
            emit(cdr, loc, final, t_end)

        def epochs(env: simpy.Environment):
            # Demand does not depend on resolution, so the next epochs' demand is computed while
            # this one is resolved (the kernels release the GIL): one thread draws epochs in order
            # (the shards), another puts each drawn epoch in time order, so drawing epoch e+1
            # overlaps ordering epoch e.
            if first_epoch:
                yield env.timeout(first_epoch * EPOCH_MS)
            # Overlapping holds 1 + PIPELINE_DEPTH epochs of events in memory: for very large
            # populations the epochs run one after the other instead (same output, bounded
            # memory). Neither overlaps a checkpoint, which saves the live state (no copies)
            # between two epochs.
            depth = PIPELINE_DEPTH if pop.n <= PIPELINE_MAX_SUBSCRIBERS else 0
            with (ThreadPoolExecutor(max_workers=1, thread_name_prefix="telcosim-demand",
                                     initializer=lower_thread_priority) as pool,
                  ThreadPoolExecutor(max_workers=1, thread_name_prefix="telcosim-order",
                                     initializer=lower_thread_priority) as order_pool):
                # Epochs whose demand is submitted (the one thread draws them in order). Demand
                # runs up to ``depth`` epochs ahead of resolution, never past an epoch that ends
                # with a checkpoint (the checkpoint saves the demand state as of that epoch).
                upcoming: deque = deque()
                nxt = first_epoch

                def submit_until(last: int) -> None:
                    nonlocal nxt
                    while nxt <= min(last, self.n_epochs - 1):
                        upcoming.append(order_pool.submit(order_epoch, nxt, pool.submit(draw_epoch, nxt)))
                        nxt += 1

                def may_submit_past(e: int) -> int:
                    # The last epoch that may be drawn while epoch e is resolved.
                    last = e + depth
                    for c in range(e, last):
                        if checkpoint_due(c):
                            return c
                    return last

                submit_until(first_epoch)
                for e in range(first_epoch, self.n_epochs):
                    mob_ev, att_ev, start_cell = upcoming.popleft().result()
                    checkpoint = checkpoint_due(e)
                    submit_until(may_submit_past(e))
                    stats["attempts"] += len(att_ev[0])
                    cur.update(e=e, mob=mob_ev, att=att_ev, start=start_cell, im=0, ia=0)
                    del mob_ev, att_ev, start_cell
                    # Resolved and written in slices (row groups; each hour's make one part file,
                    # part k = hour k): the same events in the same order as one call, with a
                    # fraction of the output in memory at once. Network changes (simpy
                    # processes beside this one) resolve up to their time before they apply.
                    t0 = e * EPOCH_MS
                    for k in range(1, SLICES_PER_EPOCH + 1):
                        t_end = t0 + k * EPOCH_MS // SLICES_PER_EPOCH
                        yield env.timeout(t_end - env.now)
                        advance(t_end, final=k == SLICES_PER_EPOCH and (e + 1) % EPOCHS_PER_HOUR == 0)
                    cur.update(mob=None, att=None, start=None)
                    if progress is not None:
                        progress(e + 1, self.n_epochs)
                    if checkpoint:
                        r_arrays, r_meta = res.state()
                        arrays = {**{f"d.{k}": v for k, v in executor.state_arrays().items()},
                                  **{f"r.{k}": v for k, v in r_arrays.items()}}
                        writer.write_checkpoint(arrays, {"epochs_done": e + 1, "resolver": r_meta,
                                                         "changes_done": done["changes"],
                                                         "scenario_sha256": self.scenario_hash}, wait=True)
                        del arrays, r_arrays
                    submit_until(e + 1)
            # Drain: calls and sessions in progress run to their end; no new demand.
            empty_m = tuple(np.zeros(0, dt) for dt in MOB_DTYPES)
            empty_a = (*(np.zeros(0, dt) for dt in ATT_DTYPES), np.zeros(0, np.int32), np.zeros(0, np.int32))
            cdr, loc = res.resolve(int(resolution.INF) - 1, self.interval_ms, empty_m, empty_a, up_share)
            assert len(loc["t"]) == 0  # nothing moves or starts after the window
            emit(cdr, None)

        def network(env: simpy.Environment):
            # Incidents, failures and repairs: each change resolves everything before its time,
            # then applies (calls and sessions handed over or dropped, capacities changed).
            end_ms = self.n_epochs * EPOCH_MS
            for ch in changes[done["changes"]:]:
                if ch.t_ms >= end_ms:
                    break
                yield env.timeout(ch.t_ms - env.now)
                while cur["e"] != ch.t_ms // EPOCH_MS or cur["mob"] is None:
                    yield env.timeout(0)  # the epoch process loads this epoch first
                advance(ch.t_ms)
                # Rows at the change's time and after (the rows emitted up to it are from before).
                emit(*res.change(ch), False, ch.t_ms + 1)
                if len(ch.storm_cells):
                    registration_storm(ch)
                done["changes"] += 1

        def registration_storm(ch) -> None:
            # Everybody standing in a cell that comes back re-attaches within a minute or so: a
            # burst of location updates, merged into the epoch's remaining location events.
            mob_ev, im = cur["mob"], cur["im"]
            phys = cur["start"].copy()
            phys[mob_ev[1][:im]] = mob_ev[2][:im]  # time order: the last assignment wins
            subs = np.flatnonzero(np.isin(phys, ch.storm_cells)).astype(np.int32)
            if not len(subs):
                return
            g = generator(sc.seed, "incidents.storm", ch.t_ms)
            t_ev = ch.t_ms + 1 + g.exponential(ch.storm_spread_ms, len(subs)).astype(np.int64)
            t_ev = np.minimum(t_ev, (cur["e"] + 1) * EPOCH_MS - 1)
            new = (t_ev, subs, phys[subs].astype(np.int32), np.full(len(subs), demand.KIND_ATTACH, np.int8))
            rest = [np.concatenate([a[im:], b.astype(a.dtype)]) for a, b in zip(mob_ev, new, strict=True)]
            order = np.argsort(rest[0], kind="stable")
            cur["mob"] = tuple(np.concatenate([a[:im], r[order]]) for a, r in zip(mob_ev, rest, strict=True))

        env = simpy.Environment()
        env.process(epochs(env))
        if changes:
            env.process(network(env))
        try:
            env.run()
        finally:
            executor.close()
            if post is not None:
                post.shutdown()

        kpi = self._kpi_table(res, kpi_ref)
        if not writer.discard:
            writer.write_table("cell_kpis", kpi)
            if pert is not None:
                writer.write_table("incidents", self._incidents_table(pert))
            writer.write_table("subscribers", self._subscribers_table())
            writer.write_table("cells", self._cells_table())
        else:
            writer.rows["cell_kpis"] = kpi.num_rows
        wall = time.perf_counter() - t_wall
        out = writer.commit(self.manifest(wall))
        stats["wall_s"] = wall
        return RunResult(out, dict(writer.rows), wall, kpi, stats)

    def _shape_multipliers(self) -> np.ndarray | None:
        """Per-cell rate multipliers that make each cell's load follow its own learned weekly shape
        and level: the shape and level over the profile's all-service shape and over the cell's
        expected presence (the people mobility brings there at each hour of the week: at home,
        at work, or out, by the hourly place targets). Real per-area shapes already contain the
        movement of people; dividing by the simulated presence keeps it from being counted twice.
        Scaled so that the expected total demand is the profile's."""
        if self.cell_shapes is None:
            return None
        shapes = np.asarray(self.cell_shapes, np.float64)
        net, pop = self.network, self.population
        if shapes.shape != (net.n_cells, 168):
            raise ConfigError(f"behaviour.cell_shapes: expected {net.n_cells} x 168 multipliers, got {shapes.shape}")
        prof = np.array([[np.mean([self.profile.shapes[s].factor(h, wd) for s in ("voice", "sms", "data")])
                          for h in range(24)] for wd in range(7)]).ravel()
        prof = prof / prof.mean()
        home = np.bincount(pop.home_cell, minlength=net.n_cells).astype(np.float64)
        work = np.bincount(pop.work_cell, minlength=net.n_cells).astype(np.float64)
        out = 0.5 * (home + work)  # "other" places: exploration lands mostly near home and work
        target = np.array([place_target(h, wd) for wd in range(7) for h in range(24)])  # (168, 3)
        presence = np.outer(home, target[:, 0]) + np.outer(work, target[:, 1]) + np.outer(out, target[:, 2])
        mean = presence.mean(axis=1, keepdims=True)
        rel = np.divide(presence, mean, out=np.ones_like(presence), where=mean > 0)
        mult = shapes / (prof[None, :] * np.clip(rel, 0.2, None))
        # The same expected demand as the profile: sum of presence x profile x multiplier.
        base = (presence * prof[None, :]).sum()
        got = (presence * prof[None, :] * mult).sum()
        return mult * (base / got) if got > 0 else mult

    def _demand_inputs(self) -> DemandInputs:
        sc, net = self.scenario, self.network
        on, off = burst_multipliers(sc.behaviour)
        v_mu, v_sigma = call_duration_params(sc.behaviour, self.profile)
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
            data_habit_share=sc.behaviour.data_volume_habit_share)

    # --- tables -----------------------------------------------------------------------------

    def _ts(self, t_ms: np.ndarray) -> pa.Array:
        return pa.array(t_ms + self.start_ms).view(schema.timestamp(self.tz))

    def _cdr_table(self, o: dict, sch: pa.Schema, incident: pa.Array) -> pa.Table:
        # Rows come in the order their records were completed (deterministic); not re-sorted.
        cp = o["cp"]
        return pa.Table.from_arrays([
            pa.array(o["rec"]), pa.array(o["sess"]), pa.array(o["sub"]), pa.array(cp, mask=cp < 0),
            schema.dictionary_array(o["svc"], schema.SERVICES),
            schema.dictionary_array(o["dir"], schema.DIRECTIONS),
            self._ts(o["t"]), pa.array(o["dur_s"]), pa.array(o["up"]), pa.array(o["down"]),
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
        k = res.kpi
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
            "profile": {"name": self.profile.name, "sources": self.profile.sources},
            "network": {"cells": self.network.n_cells, "sites": int(self.network.site_id.max()) + 1},
            # The calibration's privacy ledger (what the real data cost, per target), when the
            # scenario came from 'telcosim calibrate'.
            "privacy_ledger": self.privacy_ledger,
            "learned_generators": self.learned or None,
            # A run with incidents and its baseline (the same seed without them) say which they are.
            "role": self.role,
            # Not part of the deterministic content: everything above is.
            "created": {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "wall_s": round(wall_s, 3)},
        }


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


def _csr_index(sub_sorted: np.ndarray, n: int) -> np.ndarray:
    """CSR row pointers of events grouped by subscriber (``sub_sorted`` ascending)."""
    return demand.csr_index(sub_sorted, np.int64(n))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


__all__ = ["RunResult", "Simulation"]
