"""Demand shards: a contiguous range of subscribers and everything needed to draw their demand.

A shard owns the per-subscriber state of its range (mobility and burst state) and steps it one
epoch at a time through the mobility and session kernels. Shards never talk to each other: the
subscriber id keys every random draw, so any split into shards, run in any place (a thread here,
a Dask worker elsewhere), gives the same events. Concatenated in shard order they are exactly the
events of one shard holding everybody.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .kernels.demand import attempt_cells
from .kernels.mobility import (
    CellMap,
    LocationRows,
    MobilityEpoch,
    MobilityParams,
    Travellers,
    Trips,
    mobility_epoch,
    periodic_phases,
)
from .kernels.sessions import (
    AttemptRows,
    Callers,
    SessionClocks,
    SessionEpoch,
    SessionParams,
    sessions_epoch,
)
from .mobility import VISIT_SLOTS, initial_places
from .population import Population

# Epochs are a quarter of an hour: a quarter of the events in flight at once. Places are
# decided hourly (in the first epoch of each hour) and rates change hourly.
HOUR_MS = 3_600_000
EPOCHS_PER_HOUR = 4
EPOCH_MS = HOUR_MS // EPOCHS_PER_HOUR
# Event columns: location events (t_ms, sub, cell, kind) and attempts (t_ms, sub, kind,
# counterpart, duration_ms, bytes); narrow types halve the memory of an epoch in flight.
MOB_DTYPES = (np.int64, np.int32, np.int32, np.int8)
ATT_DTYPES = (np.int64, np.int32, np.int8, np.int32, np.int32, np.int64)


@dataclass(frozen=True)
class DemandInputs:
    """Read-only inputs shared by every shard: network geometry and model parameters."""

    mob_key: np.uint64
    ses_key: np.uint64
    cx_km: np.ndarray
    cy_km: np.ndarray
    nbr_ptr: np.ndarray
    nbr_idx: np.ndarray
    other_cdf: np.ndarray
    mobility: dict[str, float]
    periodic_ms: int
    burst_on_mult: float
    burst_off_mult: float
    burst_on_ms: float
    burst_off_ms: float
    onnet_share: float
    voice_mu: float
    voice_sigma: float
    voice_max_ms: float
    data_mu: float
    data_sigma: float
    # Share of the data volume's log-variance that is a subscriber's hourly level, and its
    # hour-to-hour correlation (behaviour.data_volume_level_share / _level_hours).
    data_level_share: float = 0.0
    data_level_rho: float = 0.0
    data_habit_share: float = 0.0  # of that level, the daily habit (behaviour.data_volume_habit_share)
    # short-call component of call durations (the profile's [voice] duration_short_*): share, mu, sigma
    voice_short: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def cells(self) -> CellMap:
        """The network as the mobility kernel sees it."""
        return CellMap(self.cx_km, self.cy_km, self.nbr_ptr, self.nbr_idx, self.other_cdf)

    def mobility_params(self, classes: np.ndarray) -> MobilityParams:
        """The mobility kernel's parameters, with the mobility classes' table ``classes``
        (:meth:`sim.population.Population.class_mobility`)."""
        m = self.mobility
        return MobilityParams(
            m["stickiness"], m["rho"], m["gamma"], m["hops_mean"], m["global_share"], m["speed_mu"],
            m["speed_sigma"], m["pp_prob"], m["pp_dwell_ms"], m["dwell_sigma"], np.int64(self.periodic_ms),
            np.int64(HOUR_MS), classes)

    def session_params(self) -> SessionParams:
        """The session kernel's parameters."""
        return SessionParams(
            self.burst_on_mult, self.burst_off_mult, self.burst_on_ms, self.burst_off_ms, self.onnet_share,
            self.voice_mu, self.voice_sigma, self.voice_max_ms, self.data_mu, self.data_sigma,
            self.data_level_share, self.data_level_rho, self.data_habit_share, *self.voice_short)


NO_CELL_MULT = np.ones((0, 3))
NO_SUB_MULT = np.ones((0, 3))
NO_CLASS = np.zeros(0, np.int8)
NO_CLASS_TABLE = np.ones((1, 4))
NO_FORCE = (np.zeros(0, np.int32), np.zeros(0, np.int32))


@dataclass(frozen=True)
class EpochInputs:
    """What changes from epoch to epoch: the hour's place targets and attempt rates (``epoch``
    counts quarter hours); incidents add per-cell rate multipliers (voice, SMS, data; empty for
    none) and forced destinations (ascending subscriber ids and their cells); ``data_mu_shift``
    is added to the data volume's lognormal mu (the profile's volume per session in this hour)."""

    epoch: int
    place_target: np.ndarray
    rates: np.ndarray
    cell_mult: np.ndarray = field(default_factory=lambda: NO_CELL_MULT)
    force: tuple[np.ndarray, np.ndarray] = NO_FORCE
    data_mu_shift: float = 0.0


@dataclass
class ShardState:
    """Per-subscriber state carried across epochs (arrays of the shard's length)."""

    cur_cell: np.ndarray     # int32: cell at the end of the last processed epoch
    place: np.ndarray        # int8: 0 home, 1 work, 2 other
    dest: np.ndarray         # int32: destination cell of the trip in progress
    next_hop_t: np.ndarray   # int64 ms: next handover of the trip in progress, -1 when still
    speed_kmh: np.ndarray    # float64: speed of the trip in progress
    visit_cell: np.ndarray   # int32 [n, VISIT_SLOTS]: remembered "other" places, -1 empty
    visit_count: np.ndarray  # int32 [n, VISIT_SLOTS]
    n_seen: np.ndarray       # int32: distinct "other" places explored so far
    burst_on: np.ndarray     # int8: in an active (bursty) period
    burst_next: np.ndarray   # int64 ms of the next burst switch; -1 before the first epoch
    clock: np.ndarray        # float64: unit hazard left before the next attempt; -1 before the first epoch
    vol_t: np.ndarray        # float64: data-volume level, its transient moving sum (sim.kernels.volume_level)
    vol_h: np.ndarray        # float64: data-volume level, its daily-habit moving sum
    vol_hour: np.ndarray     # int64: the clock hour vol_t / vol_h are for; -1 before the first epoch

    @classmethod
    def initial(cls, pop: Population, hour: int, weekday: int, seed: int) -> ShardState:
        """Everybody at their starting place (:func:`sim.mobility.initial_places`), still."""
        n = pop.n
        cell, place = initial_places(pop, hour, weekday, seed)
        return cls(cur_cell=cell, place=place, dest=cell.copy(), next_hop_t=np.full(n, -1, np.int64),
                   speed_kmh=np.zeros(n), visit_cell=np.full((n, VISIT_SLOTS), -1, np.int32),
                   visit_count=np.zeros((n, VISIT_SLOTS), np.int32), n_seen=np.zeros(n, np.int32),
                   burst_on=np.zeros(n, np.int8), burst_next=np.full(n, -1, np.int64),
                   clock=np.full(n, -1.0), vol_t=np.zeros(n), vol_h=np.zeros(n), vol_hour=np.full(n, -1, np.int64))

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def trips(self) -> Trips:
        """The mobility kernel's part (the same arrays: its writes land here)."""
        return Trips(self.cur_cell, self.place, self.dest, self.next_hop_t, self.speed_kmh, self.visit_cell,
                     self.visit_count, self.n_seen)

    def clocks(self) -> SessionClocks:
        """The session kernel's part (the same arrays: its writes land here)."""
        return SessionClocks(self.burst_on, self.burst_next, self.clock, self.vol_t, self.vol_h, self.vol_hour)

    def slice(self, lo: int, hi: int) -> ShardState:
        """A view of subscribers lo..hi-1 (writes go through to this state)."""
        return ShardState(**{k: v[lo:hi] for k, v in self.arrays().items()})


class Shard:
    """Subscribers ``first .. first + count - 1``: their fixed attributes and their state."""

    def __init__(self, first: int, inputs: DemandInputs, home: np.ndarray, work: np.ndarray,
                 activity: np.ndarray, contact_ptr: np.ndarray, contact_cdf: np.ndarray,
                 contact_idx: np.ndarray, state: ShardState, sub_mult: np.ndarray = NO_SUB_MULT,
                 mclass: np.ndarray = NO_CLASS, cls: np.ndarray = NO_CLASS_TABLE) -> None:
        self.first = first
        self.count = len(home)
        self.inputs = inputs
        self.state = state
        # The kernels' fixed inputs, grouped once: the network and both models' parameters
        # (``cls``: each mobility class's outing factor, stickiness, exploration hops mean and
        # global jump share, sim.population.Population.class_mobility), and the subscribers'
        # attributes: home and work cells, mobility class (empty: none), phase of periodic
        # location updates; activity, per-service rate multipliers (empty: none), contacts.
        self.cells, self.mob_params, self.ses_params = inputs.cells(), inputs.mobility_params(cls), inputs.session_params()
        phase = periodic_phases(inputs.mob_key, first, self.count, np.int64(inputs.periodic_ms))
        self.travellers = Travellers(first, home, work, mclass, phase)
        self.callers = Callers(first, activity, sub_mult, contact_ptr, contact_cdf, contact_idx)

    def step(self, ep: EpochInputs):
        """Draw one epoch: ``((t, sub, cell, kind), (t, sub, kind, counterpart, duration_ms, bytes,
        cell), start_cell)``: location events and attempts grouped by subscriber in id order, and
        the cell each subscriber started the epoch in."""
        d, st = self.inputs, self.state
        e = ep.epoch
        start_cell = st.cur_cell.copy()
        t0, t1 = e * EPOCH_MS, (e + 1) * EPOCH_MS
        first_of_hour = e % EPOCHS_PER_HOUR == 0
        cap = 2 * self.count + 64
        # One subscriber's location rows in an epoch are bounded: hops are at least a second
        # apart and write at most three rows each, plus the periodic updates.
        room = 3 * (EPOCH_MS // 1000 + 1) + (EPOCH_MS // d.periodic_ms + 1 if d.periodic_ms > 0 else 0) + 8
        mob_ep = MobilityEpoch(e, t0, t1, first_of_hour, ep.place_target, _dense_force(ep.force, self.first, self.count))
        trips, pi_own = st.trips(), np.empty(ep.place_target.shape[0])
        mob = _fill(lambda lo, n, bufs: mobility_epoch(
            d.mob_key, self.cells, self.mob_params, self.travellers, trips, mob_ep, LocationRows(*bufs), lo, n,
            np.int64(room), pi_own), self.count, max(cap, 2 * room), MOB_DTYPES)
        ses_ep = SessionEpoch(e, t0, t1, first_of_hour, ep.rates, start_cell, ep.cell_mult, ep.data_mu_shift)
        clocks, own = st.clocks(), np.empty(ep.rates.shape[0])
        att = _fill(lambda lo, n, bufs: sessions_epoch(
            d.ses_key, self.ses_params, self.callers, clocks, ses_ep, AttemptRows(*bufs), lo, n, own),
            self.count, cap, ATT_DTYPES)
        cells = attempt_cells(self.first, start_cell, mob[1], mob[0], mob[2], att[1], att[0])
        return mob, (*att, cells), start_cell

    def state_arrays(self) -> dict[str, np.ndarray]:
        return self.state.arrays()


def _dense_force(force: tuple[np.ndarray, np.ndarray], first: int, count: int) -> np.ndarray:
    """This shard's forced destinations, one per subscriber (-1 for none), or an empty array."""
    ids, cells = force
    lo, hi = np.searchsorted(ids, [first, first + count])
    if hi <= lo:
        return NO_FORCE[0]
    out = np.full(count, -1, np.int32)
    out[ids[lo:hi] - first] = cells[lo:hi]
    return out


def _fill(kernel, count: int, cap: int, dtypes: tuple) -> tuple[np.ndarray, ...]:
    """Run a demand kernel into output columns, growing them (doubling) whenever it stops for
    room, and return them trimmed (views: the merge copies them anyway)."""
    bufs = [np.empty(cap, dt) for dt in dtypes]
    n, i = kernel(0, np.int64(0), bufs)
    while i < count:
        cap = 2 * cap
        grown = []
        for b in bufs:
            g = np.empty(cap, b.dtype)
            g[:n] = b[:n]
            grown.append(g)
        bufs = grown
        n, i = kernel(np.int64(i), np.int64(n), bufs)
    return tuple(b[:n] for b in bufs)


def make_shard(first: int, inputs: DemandInputs, home, work, activity, contact_ptr, contact_cdf, contact_idx,
               state_arrays: dict[str, np.ndarray], sub_mult=NO_SUB_MULT, mclass=NO_CLASS,
               cls=NO_CLASS_TABLE) -> Shard:
    """A self-contained shard for a remote worker: own copies, ``contact_cdf`` / ``contact_idx``
    holding just this range's rows and ``contact_ptr`` (count + 1 entries) pointing into the
    global arrays, rebased here."""
    return Shard(first, inputs, np.array(home), np.array(work), np.array(activity),
                 np.asarray(contact_ptr) - contact_ptr[0], np.array(contact_cdf), np.array(contact_idx),
                 ShardState(**{k: np.array(v) for k, v in state_arrays.items()}), np.array(sub_mult),
                 np.array(mclass), np.array(cls))


def merge_epoch(parts: list):
    """Concatenate shard outputs (in shard order, which is subscriber order)."""
    def column(group: int, j: int) -> np.ndarray:
        out = np.concatenate([p[group][j] for p in parts])
        for p in parts:  # drop each shard's copy as soon as it is merged
            p[group][j] = None
        return out

    parts = [[list(p[0]), list(p[1]), p[2]] for p in parts]
    mob = tuple(column(0, j) for j in range(len(parts[0][0])))
    att = tuple(column(1, j) for j in range(len(parts[0][1])))
    return mob, att, np.concatenate([p[2] for p in parts])
