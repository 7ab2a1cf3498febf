"""A plain-simpy reference implementation of telcosim's model, for the benchmark.

This is the simulator a straightforward simpy user would write for the same model: one simpy
process per subscriber, one per call and one per data session, voice channels as
``simpy.Resource`` objects, and rows appended to Python lists. It reuses telcosim's set-up
(network, population, behaviour profile, the hourly place targets and the session rates) so that
both simulate the same thing; only the execution differs. It does not aim to be byte-identical to
telcosim (its random numbers come from ``numpy.random.Generator`` streams, not from the kernels'
counter-based ones), only to follow the same model, so its rows per subscriber-day should be
close to telcosim's.

The model, as in ``sim/kernels/mobility.py``, ``sim/kernels/sessions.py`` and ``sim/kernels/resolution.py``:

* Mobility: every hour a subscriber keeps their place (home / work / other) with probability
  ``stickiness``, else redraws it from the hour's target distribution; a new place starts a trip
  that hops cell to cell along the neighbour graph (greedy routing) at a lognormal speed, with
  ping-pong handovers. "Other" places follow exploration and preferential return. Periodic
  location updates come every ``location_update_interval_s`` from a per-subscriber phase.
* Sessions: Poisson attempts at ``activity * burst multiplier * rate[kind]`` with a two-state
  (active / quiet) burst process; calls and SMS go to a contact with probability
  ``onnet_share``; call durations from the profile's two-lognormal mixture, lognormal data volumes.
* Voice: each party's leg holds a channel of its cell (``simpy.Resource``); an attempt at a full
  cell is blocked (no queueing); a busy party fails the call; a handover requests a channel in
  the new cell and drops the call when there is none. A call that does not connect is dialled
  again (``redial_prob``, exponential delay, at most ``redial_max`` times) by a process that
  sleeps until then.
* Data: processor sharing per cell: the ``n`` sessions of a cell each get
  ``min(ue_peak, capacity / n)``; a session's process is interrupted to recompute its end
  whenever its cell's share changes; sessions follow their subscriber through cell changes.

Run it alone to compare its rows per subscriber-day with telcosim's::

    .venv/bin/python benchmarks/simpy_reference.py --subscribers 2000
"""

from __future__ import annotations

import argparse
import bisect
import math
import time
from dataclasses import dataclass, field

import numpy as np
import simpy

from telcosim.sim import config
from telcosim.sim.config import Scenario
from telcosim.sim.engine import Simulation
from telcosim.sim.kernels.demand import DATA, SMS_MO, SMS_MT_OFFNET, VOICE_MO
from telcosim.sim.kernels.records import (
    CAUSE_BUSY,
    CAUSE_HANDOVER,
    CAUSE_NO_CHANNEL,
    CAUSE_NONE,
    CAUSE_REMOTE_BLOCKED,
    CAUSE_REMOTE_DROP,
    DIR_MO,
    DIR_MT,
    OUT_BLOCKED,
    OUT_COMPLETED,
    OUT_DROPPED,
    OUT_FAILED,
    REASON_CELL_CHANGE,
    REASON_EVENT,
    REASON_HANDOVER,
    REASON_PERIODIC,
    SVC_DATA,
    SVC_SMS,
    SVC_VOICE,
)
from telcosim.sim.mobility import (
    VISIT_SLOTS,
    initial_places,
    kernel_params,
    other_place_cdf,
    place_target,
)
from telcosim.sim.sessions import attempt_rates, burst_multipliers, call_duration_params
from telcosim.sim.streams import generator

HOUR_MS = 3_600_000.0
INF = math.inf
MAX_HOP_MS = 86_400_000.0  # as sim.kernels.mobility._MAX_HOP_MS: a dwell factor never parks a trip for days
HOME, WORK, OTHER = 0, 1, 2
# Index of the reference's own streams (telcosim uses index 0 and 1 of "mobility").
STREAM_INDEX = 1000


@dataclass(slots=True)
class Leg:
    """One party of a call: the channel it holds and where."""

    sub: int
    rec: int
    direction: int
    counterpart: int
    start_cell: int
    cell: int
    req: simpy.resources.resource.Request


@dataclass(slots=True)
class Call:
    sess: int
    t0: float
    legs: list[Leg]
    dropped: bool = False


@dataclass(slots=True)
class DataSession:
    sub: int
    rec: int
    sess: int
    t0: float
    start_cell: int
    cell: int
    up: int
    down: int
    left: float          # bytes still to receive
    waiting: bool = False
    proc: simpy.Process | None = None


@dataclass(slots=True)
class DataCell:
    """Processor sharing of one cell's downlink: every session gets the same rate."""

    capacity: float      # bytes per ms
    ue_peak: float       # bytes per ms
    sessions: list[DataSession] = field(default_factory=list)
    rate: float = 0.0
    last: float = 0.0

    def advance(self, t: float) -> None:
        """Account for the bytes received by every session since the last change."""
        if self.sessions and t > self.last:
            got = self.rate * (t - self.last)
            for ds in self.sessions:
                ds.left -= got
        self.last = t

    def add(self, ds: DataSession, t: float, moved: bool = False) -> None:
        """A session starts here, or (``moved``) arrives from another cell with what it has left."""
        self.advance(t)
        self.sessions.append(ds)
        self._reshare(ds if moved else None)

    def remove(self, ds: DataSession, t: float) -> None:
        self.advance(t)
        self.sessions.remove(ds)
        self._reshare()

    def _reshare(self, moved: DataSession | None = None) -> None:
        n = len(self.sessions)
        rate = min(self.ue_peak, self.capacity / n) if n else 0.0
        if rate != self.rate:
            self.rate = rate
            # Every waiting session recomputes its end (one whose process has not started yet
            # computes it when it starts).
            for ds in self.sessions:
                if ds.waiting:
                    ds.proc.interrupt()
        elif moved is not None and moved.waiting:
            moved.proc.interrupt()  # it came with another cell's share


class ReferenceModel:
    """The whole simulation as simpy processes; rows go to ``self.cdr`` and ``self.loc``."""

    def __init__(self, scenario: Scenario) -> None:
        sim = Simulation(scenario)
        self.scenario = sc = scenario
        net, pop = sim.network, sim.population
        self.n = pop.n
        self.n_epochs = sc.time.days * 24
        self.end = self.n_epochs * HOUR_MS
        self.start_ms = sim.start_ms
        self.env = simpy.Environment()
        self.rng_mob = generator(sc.seed, "mobility", STREAM_INDEX)
        self.rng_ses = generator(sc.seed, "sessions", STREAM_INDEX)
        self.rng_phase = generator(sc.seed, "mobility", STREAM_INDEX + 1)
        self.rng_redial = generator(sc.seed, "resolution", STREAM_INDEX)

        # The network, as plain Python lists.
        self.cx = net.cx_km.tolist()
        self.cy = net.cy_km.tolist()
        self.nbrs = [net.neighbours(c).tolist() for c in range(net.n_cells)]
        self.other_cdf = other_place_cdf(net, sc.population).tolist()
        self.channels = [simpy.Resource(self.env, capacity=int(ch)) for ch in net.voice_channels]
        ue = sc.network.ue_peak_mbps * 1e6 / 8 / 1000
        self.data_cells = [DataCell(float(m) * 1e6 / 8 / 1000, ue) for m in net.data_mbps]

        # The population.
        h0, wd0 = sim.local_hour(0)
        cell, place = initial_places(pop, h0, wd0, sc.seed)
        self.cell = cell.tolist()
        self.initial_place = place.tolist()
        self.home = pop.home_cell.tolist()
        self.work = pop.work_cell.tolist()
        self.activity = pop.activity.tolist()
        self.contact_ptr = pop.contact_ptr.tolist()
        self.contact_idx = pop.contact_idx.tolist()
        self.contact_cdf = pop.contact_cdf.tolist()
        self.in_call: list[Call | None] = [None] * self.n
        self.data_of: list[list[DataSession]] = [[] for _ in range(self.n)]

        # Behaviour, per epoch (local hour and weekday).
        b = sim.scenario.behaviour  # the profile's rates filled in
        self.pi, self.rates, self.total_rate = [], [], []
        for e in range(self.n_epochs):
            hour, wd = sim.local_hour(e)
            self.pi.append(place_target(hour, wd).tolist())
            r = attempt_rates(b, sim.profile, hour, wd)
            self.rates.append(r.tolist())
            self.total_rate.append(float(r.sum()))
        # Data volume per session: the profile's hour-of-week shift of mu, and the subscriber's
        # persistent level (transient AR(1) in clock hours plus a daily habit), as in telcosim's
        # sessions kernel; the reference draws them from its own stream.
        self.vol_shift = [math.log(sim.profile.data_volume_factor(*sim.local_hour(e))) for e in range(self.n_epochs)]
        self.lvl_share, self.habit_share = b.data_volume_level_share, b.data_volume_habit_share
        self.lvl_rho = math.exp(-1.0 / b.data_volume_level_hours)
        self.rng_lvl = generator(sc.seed, "sessions", STREAM_INDEX + 1)
        g = self.rng_lvl.standard_normal((self.n, 24))
        w = self.lvl_rho ** np.arange(24)
        self.habit = (np.stack([(g[:, (d - np.arange(24)) % 24] * w).sum(axis=1) for d in range(24)], axis=1)
                      / math.sqrt((w * w).sum())).tolist()
        self.lvl_t = self.rng_lvl.standard_normal(self.n).tolist()
        self.lvl_hour = [0] * self.n
        self.mp = kernel_params(sc.mobility)
        # Mobility class per subscriber (0 everybody else, 1 local) and each class's outing factor,
        # stickiness, exploration hops mean and global jump share, as the engine passes them.
        mclass, table = pop.class_mobility(self.mp)
        self.mclass = mclass.tolist() if len(mclass) else [0] * self.n
        self.cls = table.tolist()
        self.mult_on, self.mult_off = burst_multipliers(b)
        self.on_ms = b.burst_on_mean_min * 60_000.0
        self.off_ms = b.burst_off_mean_min * 60_000.0
        self.voice_mu, self.voice_sigma, *self.voice_short = call_duration_params(b, sim.profile)
        self.voice_max_ms = b.call_duration_max_s * 1000.0
        self.periodic_ms = sc.output.location_update_interval_s * 1000.0

        self.cdr: list[tuple] = []
        self.loc: list[tuple] = []
        self.next_rec = 0
        self.next_sess = 0

    # --- output ---------------------------------------------------------------------------

    def _ts(self, t: float) -> int:
        return self.start_ms + int(t)

    def _new_rec(self) -> int:
        self.next_rec += 1
        return self.next_rec - 1

    def _new_sess(self) -> int:
        self.next_sess += 1
        return self.next_sess - 1

    def _cdr(self, rec, sess, sub, cp, svc, direction, t0, dur_ms, up, down, cell, end, outcome, cause):
        self.cdr.append((rec, sess, sub, cp if cp >= 0 else None, svc, direction, self._ts(t0),
                         dur_ms / 1000.0, up, down, cell, end, outcome, cause))

    # --- mobility helpers -----------------------------------------------------------------

    def greedy_next(self, c: int, d: int) -> int:
        """The neighbour of ``c`` closest to ``d`` (``d`` itself when none is closer than ``c``)."""
        cx, cy = self.cx, self.cy
        xd, yd = cx[d], cy[d]
        best, best_d = c, (cx[c] - xd) ** 2 + (cy[c] - yd) ** 2
        for n in self.nbrs[c]:
            if n == d:
                return d
            dd = (cx[n] - xd) ** 2 + (cy[n] - yd) ** 2
            if dd < best_d:
                best, best_d = n, dd
        return d if best == c else best

    def distance(self, a: int, b: int) -> float:
        dx, dy = self.cx[b] - self.cx[a], self.cy[b] - self.cy[a]
        return math.sqrt(dx * dx + dy * dy)  # as telcosim's mobility kernel (mobility._dist)

    def explore(self, cur: int, s: int) -> int:
        """A new "other" place: anywhere (by work weight) or a few random neighbour hops away
        (subscriber ``s``'s class's jump share and hops mean)."""
        rng = self.rng_mob
        _, _, hops_mean, global_share = self.cls[self.mclass[s]]
        if rng.random() < global_share:
            cdf = self.other_cdf
            return min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), len(cdf) - 1)
        u = rng.random()
        p = 1.0 / hops_mean
        hops = 1 + int(math.log(u) / math.log(1.0 - p)) if p < 1.0 else 1
        c = cur
        for _ in range(min(hops, 64)):
            nb = self.nbrs[c]
            if not nb:
                break
            c = nb[min(int(rng.random() * len(nb)), len(nb) - 1)]
        return c

    def other_place(self, s: int, cur: int, visits: list[int], counts: list[int], n_seen: int) -> tuple[int, int]:
        """Exploration and preferential return (Song et al. 2010); updates the visit memory.
        Returns the target cell and the new number of places seen."""
        rng, mp = self.rng_mob, self.mp
        total = sum(counts)
        if total == 0 or rng.random() < mp["rho"] * max(n_seen, 1) ** (-mp["gamma"]):
            target = self.explore(cur, s)
            n_seen += 1
        else:
            pick = rng.random() * total
            acc = 0
            target = visits[0]
            for c, k in zip(visits, counts, strict=True):
                acc += k
                if pick < acc:
                    target = c
                    break
        if target in visits:
            counts[visits.index(target)] += 1
        elif len(visits) < VISIT_SLOTS:
            visits.append(target)
            counts.append(1)
        else:
            weakest = counts.index(min(counts))
            visits[weakest] = target
            counts[weakest] = 1
        return target, n_seen

    def change_cell(self, s: int, new: int, t: float) -> None:
        """The subscriber moves: location row, handover or drop of a call, data follows."""
        old = self.cell[s]
        if new == old:
            return
        self.cell[s] = new
        call = self.in_call[s]
        sessions = self.data_of[s]
        busy = call is not None or bool(sessions)
        self.loc.append((s, self._ts(t), new, REASON_HANDOVER if busy else REASON_CELL_CHANGE))
        if call is not None:
            leg = call.legs[0] if call.legs[0].sub == s else call.legs[1]
            target = self.channels[new]
            if target.count < target.capacity:
                req = target.request()
                self.channels[old].release(leg.req)
                leg.req, leg.cell = req, new
            else:
                self.end_call(call, t, OUT_DROPPED, mover=s, mover_cell=new)
        for ds in sessions:
            self.data_cells[old].remove(ds, t)
            ds.cell = new
            self.data_cells[new].add(ds, t, moved=True)

    # --- processes ------------------------------------------------------------------------

    def subscriber(self, s: int):
        """One subscriber: hourly place decisions, trips, periodic updates and session arrivals.

        The process keeps the time of each of its next events and sleeps until the earliest.
        """
        env, rng_m, rng_s, mp = self.env, self.rng_mob, self.rng_ses, self.mp
        end = self.end
        activity = self.activity[s]
        place = self.initial_place[s]
        dest = self.cell[s]
        hop_t = INF                  # next hop of the trip in progress
        speed = 1.0
        bounce: list[tuple[float, int]] = []  # ping-pong moves still to come
        visits: list[int] = []
        counts: list[int] = []
        n_seen = 0
        epoch = -1
        next_hour = 0.0
        next_periodic = self.rng_phase.random() * self.periodic_ms if self.periodic_ms > 0 else INF
        burst_on = rng_s.random() < self.on_ms / (self.on_ms + self.off_ms)
        next_switch = rng_s.exponential(self.on_ms if burst_on else self.off_ms)
        next_arrival = INF

        def arrival_after(t: float) -> float:
            lam = activity * (self.mult_on if burst_on else self.mult_off) * self.total_rate[epoch]
            return t + rng_s.exponential(1.0 / lam) if lam > 0.0 else INF

        while True:
            t_move = bounce[0][0] if bounce else hop_t
            t = min(next_hour, t_move, next_periodic, next_switch, next_arrival)
            if t >= end:
                return
            if t > env.now:
                yield env.timeout(t - env.now)
            if t == next_hour:
                # The hourly step of the place chain; a new place starts (or redirects) a trip.
                epoch += 1
                next_hour = (epoch + 1) * HOUR_MS
                outing, stick = self.cls[self.mclass[s]][:2]
                if rng_m.random() >= stick:
                    u = rng_m.random()
                    pi = self.pi[epoch]
                    if outing != 1.0:  # this class's own target: "other" scaled, renormalised
                        tot = pi[0] + pi[1] + pi[2] * outing
                        pi = [pi[0] / tot, pi[1] / tot, pi[2] * outing / tot]
                    newp = HOME if u < pi[0] else WORK if u < pi[0] + pi[1] else OTHER
                    if newp != place or newp == OTHER:
                        if newp == HOME:
                            target = self.home[s]
                        elif newp == WORK:
                            target = self.work[s]
                        else:
                            target, n_seen = self.other_place(s, self.cell[s], visits, counts, n_seen)
                        place = newp
                        where = dest if hop_t < INF else self.cell[s]
                        if target != where:
                            dest = target
                            if hop_t == INF:
                                speed = max(rng_m.lognormal(mp["speed_mu"], mp["speed_sigma"]), 1.0)
                                c = self.cell[s]
                                first = self.greedy_next(c, target)
                                hop_t = (t + rng_m.random() * HOUR_MS
                                         + 0.5 * self.distance(c, first) / speed * 3.6e6)
                next_arrival = arrival_after(t)
            elif t == t_move:
                if bounce:
                    self.change_cell(s, bounce.pop(0)[1], t)
                    continue
                c = self.cell[s]
                nxt = self.greedy_next(c, dest)
                self.change_cell(s, nxt, t)
                extra = 0.0
                if rng_m.random() < mp["pp_prob"]:
                    tb = t + 1 + rng_m.exponential(mp["pp_dwell_ms"])
                    tf = tb + 1 + rng_m.exponential(mp["pp_dwell_ms"])
                    if tf < next_hour:  # as in telcosim, a bounce ends within its hour
                        bounce = [(tb, c), (tf, nxt)]
                        extra = tf - t
                if nxt == dest:
                    hop_t = INF
                else:
                    hop_ms = self.distance(c, nxt) / speed * 3.6e6
                    if mp["dwell_sigma"] > 0.0:  # as in telcosim: mean-one lognormal dwell dispersion
                        sig = mp["dwell_sigma"]
                        hop_ms = min(hop_ms * rng_m.lognormal(-0.5 * sig * sig, sig), MAX_HOP_MS)
                    hop_t = t + extra + max(1000.0, hop_ms)
            elif t == next_periodic:
                self.loc.append((s, self._ts(t), self.cell[s], REASON_PERIODIC))
                next_periodic += self.periodic_ms
            elif t == next_switch:
                burst_on = not burst_on
                next_switch += 1 + rng_s.exponential(self.on_ms if burst_on else self.off_ms)
                next_arrival = arrival_after(t)
            else:
                rates = self.rates[epoch]
                pick = rng_s.random() * self.total_rate[epoch]
                kind, acc = 0, rates[0]
                while pick >= acc and kind < len(rates) - 1:
                    kind += 1
                    acc += rates[kind]
                self.attempt(s, kind, t)
                next_arrival = arrival_after(t)

    def attempt(self, s: int, kind: int, t: float) -> None:
        """A session attempt: draw its counterpart, duration or volume, then resolve it."""
        rng, b_cfg = self.rng_ses, self.scenario.behaviour
        cp = -1
        if kind in (VOICE_MO, SMS_MO):
            lo, hi = self.contact_ptr[s], self.contact_ptr[s + 1]
            if rng.random() < b_cfg.onnet_share and hi > lo:
                cdf = self.contact_cdf
                k = bisect.bisect_right(cdf, rng.random() * cdf[hi - 1], lo, hi - 1)
                cp = self.contact_idx[k]
        c = self.cell[s]
        if kind == DATA:
            h = int(t // HOUR_MS)
            mu = b_cfg.data_volume_log_mu + self.vol_shift[min(h, self.n_epochs - 1)]
            z = rng.standard_normal()
            if self.lvl_share > 0.0:
                rho = self.lvl_rho
                while self.lvl_hour[s] < h:
                    self.lvl_t[s] = rho * self.lvl_t[s] + math.sqrt(1.0 - rho * rho) * self.rng_lvl.standard_normal()
                    self.lvl_hour[s] += 1
                lvl = (math.sqrt(1.0 - self.habit_share) * self.lvl_t[s]
                       + math.sqrt(self.habit_share) * self.habit[s][h % 24])
                z = math.sqrt(self.lvl_share) * lvl + math.sqrt(1.0 - self.lvl_share) * z
            vol = int(min(max(math.exp(mu + b_cfg.data_volume_log_sigma * z), 1.0), 1e12))
            up = int(vol * b_cfg.data_uplink_share)
            ds = DataSession(s, self._new_rec(), self._new_sess(), t, c, c, up, vol - up, float(vol - up))
            self.loc.append((s, self._ts(t), c, REASON_EVENT))
            self.data_of[s].append(ds)
            self.data_cells[c].add(ds, t)
            ds.proc = self.env.process(self.data_session(ds))
            return
        is_sms = kind in (SMS_MO, SMS_MT_OFFNET)
        dur = 0.0
        if not is_sms:
            share, s_mu, s_sigma = self.voice_short
            x = rng.lognormal(s_mu, s_sigma) if rng.random() < share else rng.lognormal(self.voice_mu, self.voice_sigma)
            dur = min(max(np.floor(x + 0.5), 1.0) * 1000.0, self.voice_max_ms)
        direction = DIR_MO if kind in (VOICE_MO, SMS_MO) else DIR_MT
        b = cp if direction == DIR_MO else -1
        cb = self.cell[b] if b >= 0 else -1
        self.dial(s, kind, cp, dur, c, cb, t, 0)

    def dial(self, s: int, kind: int, cp: int, dur: float, c: int, cb: int, t: float, tries: int) -> None:
        """Resolve a voice or SMS attempt (a first try or a redial) in cells ``c`` and ``cb``."""
        is_sms = kind in (SMS_MO, SMS_MT_OFFNET)
        if kind == VOICE_MO and self.in_call[s] is not None:
            return  # nobody dials while already talking
        sess = self._new_sess()
        direction = DIR_MO if kind in (VOICE_MO, SMS_MO) else DIR_MT
        b = cp if direction == DIR_MO else -1
        rec_a = self._new_rec()
        rec_b = self._new_rec() if b >= 0 else -1
        self.loc.append((s, self._ts(t), c, REASON_EVENT))
        if b >= 0:
            self.loc.append((b, self._ts(t), cb, REASON_EVENT))
        if is_sms:
            self._cdr(rec_a, sess, s, b, SVC_SMS, direction, t, 0, 0, 0, c, c, OUT_COMPLETED, CAUSE_NONE)
            if b >= 0:
                self._cdr(rec_b, sess, b, s, SVC_SMS, DIR_MT, t, 0, 0, 0, cb, cb, OUT_COMPLETED, CAUSE_NONE)
            return
        # Voice: admission on every leg; no queueing.
        out_a = out_b = OUT_COMPLETED
        cause_a = cause_b = CAUSE_NONE
        if self.in_call[s] is not None or (b >= 0 and self.in_call[b] is not None):
            out_a = out_b = OUT_FAILED
            cause_a = cause_b = CAUSE_BUSY
        else:
            ch_a = self.channels[c]
            a_ok = ch_a.count < ch_a.capacity
            b_ok = True
            if b >= 0:
                ch_b = self.channels[cb]
                b_ok = ch_b.count + (2 if cb == c else 1) <= ch_b.capacity
            if not a_ok:
                out_a, cause_a = OUT_BLOCKED, CAUSE_NO_CHANNEL
                if b >= 0:
                    out_b, cause_b = (OUT_FAILED, CAUSE_REMOTE_BLOCKED) if b_ok else (OUT_BLOCKED, CAUSE_NO_CHANNEL)
            elif not b_ok:
                out_a, cause_a = OUT_FAILED, CAUSE_REMOTE_BLOCKED
                out_b, cause_b = OUT_BLOCKED, CAUSE_NO_CHANNEL
        if out_a == OUT_COMPLETED:
            legs = [Leg(s, rec_a, direction, b, c, c, self.channels[c].request())]
            if b >= 0:
                legs.append(Leg(b, rec_b, DIR_MT, s, cb, cb, self.channels[cb].request()))
            call = Call(sess, t, legs)
            for leg in legs:
                self.in_call[leg.sub] = call
            self.env.process(self.call(call, dur))
            return
        self._cdr(rec_a, sess, s, b, SVC_VOICE, direction, t, 0, 0, 0, c, c, out_a, cause_a)
        if b >= 0:
            self._cdr(rec_b, sess, b, s, SVC_VOICE, DIR_MT, t, 0, 0, 0, cb, cb, out_b, cause_b)
        # Not connected: dial again later, with some probability (same party, duration, cells).
        b_cfg = self.scenario.behaviour
        if tries < b_cfg.redial_max and self.rng_redial.random() < b_cfg.redial_prob:
            wait = 1.0 + self.rng_redial.exponential(b_cfg.redial_delay_mean_s * 1000.0)
            if t + wait < self.end:
                self.env.process(self.redial(s, kind, cp, dur, c, cb, t + wait, tries + 1))

    def redial(self, s: int, kind: int, cp: int, dur: float, c: int, cb: int, at: float, tries: int):
        yield self.env.timeout(at - self.env.now)
        self.dial(s, kind, cp, dur, c, cb, self.env.now, tries)

    def call(self, call: Call, dur: float):
        """A connected call: it ends after its duration unless a failed handover dropped it."""
        yield self.env.timeout(dur)
        if not call.dropped:
            self.end_call(call, self.env.now, OUT_COMPLETED)

    def end_call(self, call: Call, t: float, outcome: int, mover: int = -1, mover_cell: int = -1) -> None:
        call.dropped = outcome != OUT_COMPLETED
        for leg in call.legs:
            self.channels[leg.cell].release(leg.req)
            self.in_call[leg.sub] = None
            if outcome == OUT_COMPLETED:
                end, cause = leg.cell, CAUSE_NONE
            elif leg.sub == mover:
                end, cause = mover_cell, CAUSE_HANDOVER
            else:
                end, cause = leg.cell, CAUSE_REMOTE_DROP
            self._cdr(leg.rec, call.sess, leg.sub, leg.counterpart, SVC_VOICE, leg.direction, call.t0,
                      t - call.t0, 0, 0, leg.start_cell, end, outcome, cause)

    def data_session(self, ds: DataSession):
        """A data session: waits for its volume at its cell's current share, re-waiting whenever
        the share changes (an interrupt), then completes."""
        env = self.env
        while True:
            cell = self.data_cells[ds.cell]
            cell.advance(env.now)
            ds.waiting = True
            try:
                yield env.timeout(max(ds.left, 0.0) / cell.rate)
            except simpy.Interrupt:
                continue
            finally:
                ds.waiting = False
            break
        t = env.now
        self.data_cells[ds.cell].remove(ds, t)
        self.data_of[ds.sub].remove(ds)
        self._cdr(ds.rec, ds.sess, ds.sub, -1, SVC_DATA, DIR_MO, ds.t0, t - ds.t0, ds.up, ds.down,
                  ds.start_cell, ds.cell, OUT_COMPLETED, CAUSE_NONE)

    def run(self) -> None:
        for s in range(self.n):
            self.env.process(self.subscriber(s))
        self.env.run()  # subscribers stop at the end; calls and sessions run to their end


def run_reference(scenario: Scenario) -> dict:
    """Run the reference on ``scenario``; the wall time includes the set-up (as telcosim's
    telcosim's run path does)."""
    t0 = time.perf_counter()
    model = ReferenceModel(scenario)
    setup = time.perf_counter() - t0
    model.run()
    wall = time.perf_counter() - t0
    return {"cdr_rows": len(model.cdr), "location_rows": len(model.loc), "wall_s": wall,
            "setup_s": setup, "subscribers": model.n, "days": scenario.time.days}


def main(argv: list[str] | None = None) -> None:
    from telcosim.scenarios.runner import run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--days", type=int, default=1)
    args = ap.parse_args(argv)
    sc = config.load(None, [f"population.subscribers={args.subscribers}", f"time.days={args.days}"])
    ref = run_reference(sc)
    res = run(sc, None)
    sub_days = args.subscribers * args.days
    print(f"{args.subscribers:,} subscribers x {args.days} day(s); rows per subscriber-day:")
    print(f"  simpy reference: cdr {ref['cdr_rows'] / sub_days:6.2f}  locations {ref['location_rows'] / sub_days:6.2f}"
          f"   ({ref['wall_s']:.2f} s)")
    print(f"  telcosim:        cdr {res.rows['cdr'] / sub_days:6.2f}  locations {res.rows['locations'] / sub_days:6.2f}"
          f"   ({res.wall_s:.2f} s)")


if __name__ == "__main__":
    main()
