"""Mobility: where each subscriber is, millisecond by millisecond, through one epoch.

Each hour a subscriber takes one step of a place chain (home / work / other; keep the place with
probability ``stickiness``, else redraw it from the hour's target). A new place starts a trip that
hops along the neighbour graph towards the destination (greedy routing) at a lognormal speed,
dwelling in each cell the time it takes to cross it times a mean-one lognormal factor, with brief
handover ping-pongs. "Other" places follow the exploration and preferential-return model of
Song et al. (2010), "Modelling the scaling properties of human mobility", Nature Physics 6:
explore a new cell with probability ``rho * S^-gamma`` (S places seen so far), else return to a
remembered one in proportion to past visits. Periodic location updates report the held cell.

The kernel's inputs come grouped by concept: the network as mobility sees it (:class:`CellMap`),
the model's parameters (:class:`MobilityParams`), the shard's fixed per-subscriber attributes
(:class:`Travellers`), its state carried across epochs (:class:`Trips`), the epoch's own inputs
(:class:`MobilityEpoch`) and the output rows (:class:`LocationRows`). They are named tuples of
arrays and scalars, which numba takes as they are and which pickle for remote workers.

Each subscriber's draws come from its own counter-based sequence keyed by the stream, the
subscriber id and the epoch, so any split of subscribers into shards gives the same events.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .rng import next_below, next_exponential, next_lognormal, next_uniform, search_cdf, seed_state

HOME, WORK, OTHER = 0, 1, 2
# Location event kinds: a cell change, a periodic update, an attach.
KIND_CHANGE, KIND_PERIODIC, KIND_ATTACH = 0, 1, 2
# A pseudo-epoch no run reaches: keys the per-subscriber phase of periodic updates.
_PHASE_EPOCH = np.int64(1 << 40)
# Longest single hop once the dwell dispersion factor is applied (a day: keeps the time finite).
_MAX_HOP_MS = 86_400_000.0


class CellMap(NamedTuple):
    """The network as mobility sees it (read-only, shared by every shard)."""

    cx_km: np.ndarray      # float64 [cells]: cell centres
    cy_km: np.ndarray      # float64 [cells]
    nbr_ptr: np.ndarray    # int64 [cells + 1]: CSR row pointers of the neighbour graph
    nbr_idx: np.ndarray    # int64: neighbour cells
    other_cdf: np.ndarray  # float64 [cells]: cumulative law of a global exploration jump's cell


class MobilityParams(NamedTuple):
    """The mobility model's parameters (``sim.mobility.kernel_params``, per-class figures in
    ``classes``)."""

    stickiness: float     # probability of keeping the place at an hourly step
    rho: float            # exploration: probability rho * S^-gamma of a new place
    gamma: float
    hops_mean: float      # mean hops of a local exploration walk
    global_share: float   # share of explorations that jump anywhere (``CellMap.other_cdf``)
    speed_mu: float       # log-speed (km/h) of a trip: lognormal mu, sigma
    speed_sigma: float
    pp_prob: float        # probability of a ping-pong at a handover
    pp_dwell_ms: float    # mean dwell (ms) of each leg of a ping-pong
    dwell_sigma: float    # log-sd of the mean-one dwell factor per hop (0: none)
    periodic_ms: np.int64  # period of location updates (0: none)
    trip_span_ms: np.int64  # a new trip starts uniformly within this span after the decision (an hour)
    classes: np.ndarray   # float64 [classes, 4]: outing factor, stickiness, hops mean, global share


class Travellers(NamedTuple):
    """A shard's subscribers ``first .. first + len(home) - 1``: fixed for the run."""

    first: int             # the first subscriber's id (keys the draws and the output)
    home: np.ndarray       # int32: home cell
    work: np.ndarray       # int32: work cell
    mclass: np.ndarray     # int8: mobility class (row of ``MobilityParams.classes``); empty: none
    phase: np.ndarray      # int64 ms: phase of periodic updates (:func:`periodic_phases`)


class Trips(NamedTuple):
    """A shard's mobility state, carried across epochs and updated in place (views of
    ``sim.shards.ShardState``)."""

    cur_cell: np.ndarray     # int32: cell held
    place: np.ndarray        # int8: HOME, WORK or OTHER
    dest: np.ndarray         # int32: destination cell of the trip in progress
    next_hop_t: np.ndarray   # int64 ms: next handover of the trip in progress, -1 when still
    speed_kmh: np.ndarray    # float64: speed of the trip in progress
    visit_cell: np.ndarray   # int32 [n, slots]: remembered "other" places, -1 empty
    visit_count: np.ndarray  # int32 [n, slots]: visits to each
    n_seen: np.ndarray       # int32: distinct "other" places explored so far


class MobilityEpoch(NamedTuple):
    """One epoch ``[t0, t1)`` (ms) of mobility."""

    epoch: int             # keys the draws
    t0: int
    t1: int
    decide: bool           # the first epoch of an hour: take a step of the place chain
    place_target: np.ndarray  # float64 [3]: the hour's target law over HOME, WORK, OTHER
    force: np.ndarray      # int32: a forced cell per subscriber (-1 none), or empty


class LocationRows(NamedTuple):
    """Output columns of location events, written from a given row on."""

    t: np.ndarray      # int64 ms
    sub: np.ndarray    # int32 subscriber id
    cell: np.ndarray   # int32 cell after the event
    kind: np.ndarray   # int8: KIND_CHANGE or KIND_PERIODIC


@njit(cache=True, _nrt=False, inline="always")
def _dist(cx, cy, a, b):
    """Distance between the centres of cells ``a`` and ``b`` (km; a plain square root: libm's
    hypot guards against overflow these coordinates cannot reach, at several times the cost)."""
    dx = cx[b] - cx[a]
    dy = cy[b] - cy[a]
    return math.sqrt(dx * dx + dy * dy)


@njit(cache=True, _nrt=False)
def _greedy_next(c: np.int64, d: np.int64, cx, cy, nbr_ptr, nbr_idx) -> np.int64:
    """The neighbour of ``c`` closest to ``d``; ``d`` itself when no neighbour is closer than ``c``."""
    best = c
    bx = cx[c] - cx[d]
    by = cy[c] - cy[d]
    best_d = bx * bx + by * by
    for k in range(nbr_ptr[c], nbr_ptr[c + 1]):
        n = nbr_idx[k]
        if n == d:
            return d
        dx = cx[n] - cx[d]
        dy = cy[n] - cy[d]
        dd = dx * dx + dy * dy
        if dd < best_d:
            best_d = dd
            best = n
    if best == c:
        return d
    return best


@njit(cache=True, _nrt=False)
def place_step(state: np.uint64, place: np.int64, pi: np.ndarray, stickiness: float):
    """One hourly step of the place chain: keep the place with probability ``stickiness``, else
    redraw it from ``pi`` (the hour's target distribution over home / work / other). The
    transition matrix is ``stickiness * I + (1 - stickiness) * 1 pi^T``. Returns
    ``(state, new_place, redrawn)``."""
    state, u = next_uniform(state)
    if u < stickiness:
        return state, place, False
    state, u = next_uniform(state)
    acc = 0.0
    for k in range(pi.shape[0]):
        acc += pi[k]
        if u < acc:
            return state, np.int64(k), True
    return state, np.int64(pi.shape[0] - 1), True


@njit(cache=True)
def place_chain(key, n_entities, n_steps, pi_steps, stickiness, start):
    """Place sequences of ``n_entities`` over ``n_steps`` hourly steps (``pi_steps[step]``): the
    chain that :func:`mobility_epoch` uses, for checking its stationary law."""
    out = np.empty((n_entities, n_steps), dtype=np.int8)
    for e in range(n_entities):
        p = np.int64(start)
        for k in range(n_steps):
            st = seed_state(key, e, k)
            st, p, _ = place_step(st, p, pi_steps[k], stickiness)
            out[e, k] = p
    return out


@njit(cache=True, _nrt=False)
def _explore_cell(st, cur, nbr_ptr, nbr_idx, hops_mean, global_share, other_cdf):
    """A newly explored cell: with probability ``global_share`` a jump anywhere (``other_cdf``),
    else a random walk of geometric length (mean ``hops_mean``, at most 64) on the neighbour graph
    from ``cur``."""
    st, u = next_uniform(st)
    if u < global_share:
        st, u = next_uniform(st)
        return st, search_cdf(other_cdf, 0, other_cdf.shape[0], u)
    st, u = next_uniform(st)
    p = 1.0 / hops_mean
    hops = 1
    if p < 1.0:
        hops = 1 + np.int64(math.log(u) / math.log(1.0 - p))
    c = cur
    for _ in range(min(hops, 64)):
        deg = nbr_ptr[c + 1] - nbr_ptr[c]
        if deg == 0:
            break
        st, k = next_below(st, deg)
        c = nbr_idx[nbr_ptr[c] + k]
    return st, c


@njit(cache=True, nogil=True)
def periodic_phases(key, first, count, periodic_ms):
    """Each subscriber's phase of periodic location updates, uniform in ``[0, periodic_ms)`` ms
    (zeros when there are none): a function of the subscriber id alone, keyed by a pseudo-epoch
    of the mobility stream, so computed once per shard rather than every epoch."""
    out = np.zeros(count, dtype=np.int64)
    if periodic_ms <= 0:
        return out
    for i in range(count):
        h = seed_state(key, first + i, _PHASE_EPOCH) >> np.uint64(32)
        out[i] = np.int64((h * np.uint64(periodic_ms)) >> np.uint64(32))
    return out


@njit(cache=True, nogil=True, _nrt=False)
def mobility_epoch(key, cells, params, travellers, trips, ep, out, lo, n, room, pi_own):
    """Move a shard's subscribers (:class:`Travellers`) through the epoch ``ep`` and write their
    location events to ``out``; ``trips`` is updated in place. Per-subscriber arrays hold just
    these subscribers (index ``i`` is subscriber ``first + i``); the subscriber id keys the random
    stream ``key`` and the output.

    When ``ep.decide`` is set (the first epoch of each hour), each subscriber takes one step of the
    hourly place chain at the epoch start; a new place starts a trip at a uniform time within
    the next ``trip_span_ms`` (the hour), possibly in a later epoch. Trips hop along the neighbour
    graph towards the destination (greedy routing) at a lognormal speed, dwelling in each cell the
    time it takes to cross it, times a mean-one lognormal factor of log-sd ``dwell_sigma`` (none
    when 0); a handover may ping-pong back to the previous cell briefly. "Other" places follow
    exploration and preferential return (Song et al. 2010): explore a new cell with probability
    rho * S^-gamma, else return to a known one in proportion to past visits. Periodic location
    updates come every ``periodic_ms`` from a per-subscriber phase (:func:`periodic_phases`).

    ``ep.force`` (empty, or one cell per subscriber, -1 for none) overrides the place decision: a
    subscriber with a forced cell goes there as an "other" place (a mass event's venue) and does
    not remember it among their own places.

    ``travellers.mclass`` (empty: everybody uses the scalar parameters; else one mobility class per
    subscriber) picks a row of ``params.classes`` (outing factor, stickiness, exploration hops
    mean, global jump share; row 0, everybody else, holds the scalars and factor 1): the outing
    factor scales the hour's target probability of an "other" place (home and work share the rest
    in the hour's proportions). The local mobility class (``sim.population``) goes out less, at
    its own pace and nearer. ``pi_own`` is scratch for that target (as long as ``place_target``).

    Output goes to ``out`` from row ``n`` on, starting with subscriber index ``lo``; a subscriber
    is only started with ``room`` rows free (the caller's bound on one subscriber's rows in an
    epoch), else ``(n, i)`` is returned for the caller to grow the columns and go on from ``i``.
    (Growing them in here would make numba count references to them on every iteration; the
    kernel runs without reference counting, so it allocates nothing.) Returns ``(n, count)`` when
    done.
    """
    cx, cy, nbr_ptr, nbr_idx, other_cdf = cells.cx_km, cells.cy_km, cells.nbr_ptr, cells.nbr_idx, cells.other_cdf
    stickiness, rho, gamma = params.stickiness, params.rho, params.gamma
    hops_mean, global_share = params.hops_mean, params.global_share
    speed_mu, speed_sigma = params.speed_mu, params.speed_sigma
    pp_prob, pp_dwell_ms, dwell_sigma = params.pp_prob, params.pp_dwell_ms, params.dwell_sigma
    periodic_ms, trip_span, cls = params.periodic_ms, params.trip_span_ms, params.classes
    first, home, work, mclass, phase = travellers.first, travellers.home, travellers.work, travellers.mclass, travellers.phase
    count = home.shape[0]
    cur_cell, place, dest, next_hop_t, speed_kmh = trips.cur_cell, trips.place, trips.dest, trips.next_hop_t, trips.speed_kmh
    visit_cell, visit_count, n_seen = trips.visit_cell, trips.visit_count, trips.n_seen
    epoch, t0, t1, decide, pi, force = ep.epoch, ep.t0, ep.t1, ep.decide, ep.place_target, ep.force
    out_t, out_sub, out_cell, out_kind = out.t, out.sub, out.cell, out.kind
    K = visit_cell.shape[1]
    # Periodic updates: subscriber s updates at times = phase(s) mod periodic_ms; the first one at
    # or after t0 is found without a division per subscriber.
    t0_mod = t0 % periodic_ms if periodic_ms > 0 else np.int64(0)
    for i in range(lo, count):
        if n + room > out_t.shape[0]:
            return n, i
        s = first + i
        # Draws are needed to decide a place (the first epoch of an hour) or to travel in this
        # epoch; otherwise the sequence is not even seeded (most subscriber-epochs).
        if decide or (next_hop_t[i] >= 0 and next_hop_t[i] < t1):
            st = seed_state(key, s, epoch)
        else:
            st = np.uint64(0)
        c_start = cur_cell[i]
        first_out = n
        newp = np.int64(place[i])
        redrawn = False
        forced = False
        if decide:
            if force.shape[0] > 0 and force[i] >= 0:
                newp = np.int64(OTHER)
                redrawn = True
                forced = True
            elif mclass.shape[0] > 0 and cls[mclass[i], 0] != 1.0:
                # The same draws with this class's own target: "other" scaled, renormalised.
                f = cls[mclass[i], 0]
                tot = 0.0
                for k in range(pi.shape[0]):
                    pi_own[k] = pi[k] * f if k == OTHER else pi[k]
                    tot += pi_own[k]
                for k in range(pi.shape[0]):
                    pi_own[k] = pi_own[k] / tot if tot > 0 else pi[k]
                st, newp, redrawn = place_step(st, newp, pi_own, cls[mclass[i], 1])
            else:
                st, newp, redrawn = place_step(st, newp, pi, cls[mclass[i], 1] if mclass.shape[0] > 0 else stickiness)
        if redrawn and (newp != place[i] or newp == OTHER):
            if newp == HOME:
                target = np.int64(home[i])
            elif newp == WORK:
                target = np.int64(work[i])
            elif forced:
                target = np.int64(force[i])
            else:
                # Exploration and preferential return among the K remembered places.
                seen = max(n_seen[i], 1)
                st, u = next_uniform(st)
                total = 0
                for k in range(K):
                    if visit_cell[i, k] >= 0:
                        total += visit_count[i, k]
                if total == 0 or u < rho * seen ** (-gamma):
                    hm, gs = hops_mean, global_share
                    if mclass.shape[0] > 0:
                        hm, gs = cls[mclass[i], 2], cls[mclass[i], 3]
                    st, target = _explore_cell(st, np.int64(cur_cell[i]), nbr_ptr, nbr_idx,
                                               hm, gs, other_cdf)
                    n_seen[i] += 1
                else:
                    st, u = next_uniform(st)
                    pick = u * total
                    acc = 0.0
                    target = np.int64(visit_cell[i, 0])
                    for k in range(K):
                        if visit_cell[i, k] >= 0:
                            acc += visit_count[i, k]
                            if pick < acc:
                                target = np.int64(visit_cell[i, k])
                                break
                # Remember the visit (replace the least visited slot when full).
                slot = -1
                weakest = 0
                for k in range(K):
                    if visit_cell[i, k] == target:
                        slot = k
                        break
                if slot < 0:
                    for k in range(K):
                        if visit_cell[i, k] < 0:
                            slot = k
                            visit_count[i, k] = 0
                            break
                    if slot < 0:
                        for k in range(1, K):
                            if visit_count[i, k] < visit_count[i, weakest]:
                                weakest = k
                        slot = weakest
                        visit_count[i, slot] = 0
                    visit_cell[i, slot] = target
                visit_count[i, slot] += 1
            place[i] = newp
            where = dest[i] if next_hop_t[i] >= 0 else cur_cell[i]
            if target != where:
                dest[i] = target
                if next_hop_t[i] < 0:
                    st, u = next_uniform(st)
                    st, v = next_lognormal(st, speed_mu, speed_sigma)
                    speed_kmh[i] = max(v, 1.0)
                    c = np.int64(cur_cell[i])
                    nxt = _greedy_next(c, target, cx, cy, nbr_ptr, nbr_idx)
                    dist = _dist(cx, cy, c, nxt)
                    next_hop_t[i] = t0 + np.int64(u * trip_span) + np.int64(0.5 * dist / speed_kmh[i] * 3.6e6)
        # Travel within this epoch.
        while next_hop_t[i] >= 0 and next_hop_t[i] < t1:
            t = next_hop_t[i]
            c = np.int64(cur_cell[i])
            d = np.int64(dest[i])
            if c == d:  # re-routed back to where it is: already there
                next_hop_t[i] = -1
                break
            nxt = _greedy_next(c, d, cx, cy, nbr_ptr, nbr_idx)
            if n + 3 > out_t.shape[0]:
                raise RuntimeError("mobility_epoch: a subscriber's rows exceeded the bound")
            out_t[n] = t
            out_sub[n] = s
            out_cell[n] = nxt
            out_kind[n] = KIND_CHANGE
            n += 1
            extra = np.int64(0)
            st, u = next_uniform(st)
            if u < pp_prob:
                st, back = next_exponential(st, 1.0 / pp_dwell_ms)
                st, fwd = next_exponential(st, 1.0 / pp_dwell_ms)
                tb = t + 1 + np.int64(back)
                tf = tb + 1 + np.int64(fwd)
                if tf < t1:
                    out_t[n] = tb
                    out_sub[n] = s
                    out_cell[n] = c
                    out_kind[n] = KIND_CHANGE
                    out_t[n + 1] = tf
                    out_sub[n + 1] = s
                    out_cell[n + 1] = nxt
                    out_kind[n + 1] = KIND_CHANGE
                    n += 2
                    extra = tf - t
            cur_cell[i] = nxt
            if nxt == d:
                next_hop_t[i] = -1
            else:
                dist = _dist(cx, cy, c, nxt)
                hop_ms = dist / speed_kmh[i] * 3.6e6
                if dwell_sigma > 0.0:
                    # Serving-cell dwell dispersion: a mean-one lognormal factor on the crossing
                    # time (cells clipped at their edge, layers, radio fluctuation), so the mean
                    # time per hop, and the hops per minute, stay distance / speed.
                    st, f = next_lognormal(st, -0.5 * dwell_sigma * dwell_sigma, dwell_sigma)
                    hop_ms = min(hop_ms * f, _MAX_HOP_MS)
                next_hop_t[i] = t + extra + max(np.int64(1000), np.int64(hop_ms))
        # Periodic location updates, in the cell held at each update time.
        if periodic_ms > 0:
            d = phase[i] - t0_mod
            tp = t0 + (d if d >= 0 else d + periodic_ms)
            j = first_out
            held = np.int64(c_start)
            last = n
            while tp < t1:
                while j < last and out_t[j] <= tp:
                    held = out_cell[j]
                    j += 1
                if n + 1 > out_t.shape[0]:
                    raise RuntimeError("mobility_epoch: a subscriber's rows exceeded the bound")
                out_t[n] = tp
                out_sub[n] = s
                out_cell[n] = held
                out_kind[n] = KIND_PERIODIC
                n += 1
                tp += periodic_ms
    return n, count
