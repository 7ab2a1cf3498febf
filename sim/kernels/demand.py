"""Per-subscriber demand for one epoch: mobility (cell changes, periodic updates) and session
attempts. Each subscriber's draws come from its own counter-based sequence keyed by the stream,
the subscriber id and the epoch, so any split of subscribers into chunks gives the same events.

Outputs are grown inside the kernel and returned with their length; per subscriber, events are
in time order, and subscribers follow one another in id order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .rng import (
    next_below,
    next_exponential,
    next_lognormal,
    next_normal,
    next_uniform,
    search_cdf,
    seed_state,
)

HOME, WORK, OTHER = 0, 1, 2
KIND_CHANGE, KIND_PERIODIC, KIND_ATTACH = 0, 1, 2
# A pseudo-epoch no run reaches: keys the per-subscriber phase of periodic updates.
_PHASE_EPOCH = np.int64(1 << 40)
# Longest single hop once the dwell dispersion factor is applied (a day: keeps the time finite).
_MAX_HOP_MS = 86_400_000.0
# Pseudo-epoch keying the per-subscriber hourly data-volume level (hour j: sub-sequence j).
_LEVEL_EPOCH = np.int64(1 << 41)
_LEVEL_TERMS = 48  # most hours of the moving sum behind the level (the rest weigh < rho^48)
# Pseudo-epoch keying the level's daily habit (hour of day d: sub-sequence d, see _keyed_normal).
_HABIT_EPOCH = np.int64(1 << 42)
# Words between the starts of two hours' sub-sequences of a level sequence (2^32 draws' worth).
_LEVEL_STRIDE = np.uint64((0x9E3779B97F4A7C15 << 32) & 0xFFFFFFFFFFFFFFFF)
_HOUR_MS_F = 3_600_000
# Attempt kinds produced by the session kernel.
VOICE_MO, SMS_MO, DATA, VOICE_MT_OFFNET, SMS_MT_OFFNET = 0, 1, 2, 3, 4
_SVC_OF = np.array([0, 1, 2, 0, 1])  # the service (voice, SMS, data) of each attempt kind


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
    chain that :func:`mobility_epoch` uses, exposed for checking its stationary law."""
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


@njit(cache=True, nogil=True)
def mobility_epoch(key, first, count, lo, n, room, epoch, t0, t1, decide, trip_span, pi, stickiness, rho, gamma, hops_mean, global_share,
                   other_cdf, speed_mu, speed_sigma, pp_prob, pp_dwell_ms, dwell_sigma, periodic_ms,
                   cx, cy, nbr_ptr, nbr_idx, home, work, force, mclass, cls,
                   cur_cell, place, dest, next_hop_t, speed_kmh, visit_cell, visit_count, n_seen, phase,
                   out_t, out_sub, out_cell, out_kind):
    """See :func:`_mobility_epoch` (this wrapper holds its scratch buffer, so that the kernel
    itself runs without numba's reference counting)."""
    pi_own = np.empty(pi.shape[0])
    return _mobility_epoch(
        key, first, count, lo, n, room, epoch, t0, t1, decide, trip_span, pi, stickiness, rho, gamma, hops_mean,
        global_share, other_cdf, speed_mu, speed_sigma, pp_prob, pp_dwell_ms, dwell_sigma, periodic_ms, cx, cy,
        nbr_ptr, nbr_idx, home, work, force, mclass, cls, cur_cell, place, dest, next_hop_t, speed_kmh,
        visit_cell, visit_count, n_seen, phase, out_t, out_sub, out_cell, out_kind, pi_own)


@njit(cache=True, nogil=True, _nrt=False)
def _mobility_epoch(key, first, count, lo, n, room, epoch, t0, t1, decide, trip_span, pi, stickiness, rho, gamma, hops_mean, global_share,
                   other_cdf, speed_mu, speed_sigma, pp_prob, pp_dwell_ms, dwell_sigma, periodic_ms,
                   cx, cy, nbr_ptr, nbr_idx, home, work, force, mclass, cls,
                   cur_cell, place, dest, next_hop_t, speed_kmh, visit_cell, visit_count, n_seen, phase,
                   out_t, out_sub, out_cell, out_kind, pi_own):
    """Move subscribers ``first .. first+count-1`` through the epoch ``[t0, t1)`` (ms).

    Per-subscriber arrays (``home`` ... ``n_seen``) hold just these subscribers (index ``i`` is
    subscriber ``first + i``); the subscriber id keys the random stream and the output.

    When ``decide`` is set (the first epoch of each hour), each subscriber takes one step of the
    hourly place chain at the epoch start; a new place starts a trip at a uniform time within
    the next ``trip_span`` ms (the hour), possibly in a later epoch. Trips hop along the neighbour graph towards
    the destination (greedy routing) at a lognormal speed, dwelling in each cell the time it
    takes to cross it, times a mean-one lognormal factor of log-sd ``dwell_sigma`` (none when 0);
    a handover may ping-pong back to the previous cell briefly. "Other"
    places follow the exploration and preferential-return model of Song et al. (2010):
    explore a new cell with probability rho * S^-gamma, else return to a known one in
    proportion to past visits. Periodic location updates come every ``periodic_ms`` from a
    per-subscriber phase (``phase``, :func:`periodic_phases`). State arrays are updated in place.

    ``force`` (empty, or one cell per subscriber, -1 for none) overrides the place decision: a
    subscriber with a forced cell goes there as an "other" place (a mass event's venue) and does
    not remember it among their own places.

    ``mclass`` (empty: everybody uses the scalar parameters; else one mobility class per
    subscriber) picks a row of ``cls`` (one per class: outing factor, stickiness, exploration hops
    mean, global jump share; row 0, everybody else, holds the scalars and factor 1): the outing
    factor scales the hour's target probability of an "other" place (home and work share the rest
    in the hour's proportions). The local mobility class (``sim.population``) goes out less, at
    its own pace and nearer.

    Output goes to ``out_*`` from row ``n`` on, starting with subscriber index ``lo``; a
    subscriber is only started with ``room`` rows free (the caller's bound on one subscriber's rows
    in an epoch), else ``(n, i)`` is returned for the caller to grow the arrays and go on from
    ``i``. (Growing them in here would make numba count references to them on every iteration.)
    """
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


@njit(cache=True, nogil=True)
def sessions_epoch(key, first, count, lo, n, epoch, fresh, t0, t1, rates, cell_of, cell_mult, sub_mult, activity,
                   burst_on, burst_next, clock, mult_on, mult_off, on_mean_ms, off_mean_ms, onnet_share,
                   contact_ptr, contact_cdf, contact_idx, voice_mu, voice_sigma, voice_max_ms,
                   data_mu, data_sigma, level_share, level_rho, habit_share, vol_t, vol_h, vol_hour,
                   out_t, out_sub, out_kind, out_cp, out_dur, out_vol):
    """See :func:`_sessions_epoch` (this wrapper holds its scratch buffer, so that the kernel
    itself runs without numba's reference counting)."""
    own = np.empty(rates.shape[0])
    return _sessions_epoch(
        key, first, count, lo, n, epoch, fresh, t0, t1, rates, cell_of, cell_mult, sub_mult, activity, burst_on,
        burst_next, clock, mult_on, mult_off, on_mean_ms, off_mean_ms, onnet_share, contact_ptr, contact_cdf,
        contact_idx, voice_mu, voice_sigma, voice_max_ms, data_mu, data_sigma, level_share, level_rho,
        habit_share, vol_t, vol_h, vol_hour, out_t, out_sub, out_kind, out_cp, out_dur, out_vol, own)


@njit(cache=True, nogil=True, _nrt=False)
def _sessions_epoch(key, first, count, lo, n, epoch, fresh, t0, t1, rates, cell_of, cell_mult, sub_mult, activity,
                   burst_on, burst_next, clock, mult_on, mult_off, on_mean_ms, off_mean_ms, onnet_share,
                   contact_ptr, contact_cdf, contact_idx, voice_mu, voice_sigma, voice_max_ms,
                   data_mu, data_sigma, level_share, level_rho, habit_share, vol_t, vol_h, vol_hour,
                   out_t, out_sub, out_kind, out_cp, out_dur, out_vol, own):
    """Session attempts of subscribers ``first .. first+count-1`` in ``[t0, t1)`` (ms); per-subscriber
    arrays are indexed from 0 as in :func:`mobility_epoch` (``contact_ptr`` has ``count + 1``
    entries pointing into ``contact_idx`` / ``contact_cdf``).

    Arrivals are Poisson at ``activity * multiplier * rates[kind]`` per ms, where the multiplier
    follows a two-state Markov-modulated process (active / quiet, exponential sojourns) carried
    across epochs: this makes inter-event times bursty. Originated calls and SMS go to a contact
    (chosen in proportion to tie strength) with probability ``onnet_share``, else off-net.
    Voice durations and data volumes are lognormal.

    A data session's log-volume is ``data_mu + data_sigma * z``, z standard normal. With
    ``level_share`` > 0 a part of it is the subscriber's own level that persists over hours:
    ``z = sqrt(level_share) * L + sqrt(1 - level_share) * e``, where ``L`` (standard normal,
    one value per subscriber and clock hour) has hour-to-hour correlation ``level_rho``
    (:func:`volume_levels`) and ``e`` is the session's own draw. A share ``habit_share`` of ``L``
    is the subscriber's daily habit, the same at each hour of the day every day. Every session's
    volume keeps the same lognormal law; a heavy hour of a subscriber is more often followed by
    another, and by a heavy hour at the same time the next day. The level's two moving sums are
    carried in ``vol_t`` / ``vol_h`` (state, valid for clock hour ``vol_hour``; -1 before the run's
    first epoch, when every subscriber's are set: the transient to a keyed normal, the habit to its
    sum around the day) and advanced hour
    by hour with one keyed draw each (:func:`_level_step`), only when a data session needs them:
    the same values, bit for bit, whoever asks and when.

    ``cell_mult`` (empty, or one row per cell: voice, SMS and data multipliers) scales the rates of
    a subscriber by the row of the cell they start the epoch in (``cell_of``): mass events,
    emergencies and per-cell load shapes. ``sub_mult`` (empty, or one row per subscriber: voice,
    SMS and data) scales each subscriber's rates per service (a population drawn from a learned
    behaviour generator).

    Arrivals are drawn by time change: each subscriber carries ``clock``, the unit-rate
    exponential hazard left before their next attempt (negative before the first epoch), and
    spends ``rate * time`` of it as time passes; an attempt happens when it runs out. This is
    exact for piecewise-constant rates. When ``fresh`` is set (the first epoch of each hour) the
    clock is drawn anew, which the memoryless law allows: a subscriber whose rates an incident
    changed is back on the same draws as without it from the next hour on.

    Output goes to ``out_*`` from row ``n`` on, starting with subscriber index ``lo``. When the
    arrays fill up, the subscriber being drawn is undone (its state restored) and ``(n, i)`` is
    returned for the caller to grow them and go on from ``i`` (the draws are keyed, so the redo
    is identical).
    """
    base_total = 0.0
    for k in range(rates.shape[0]):
        base_total += rates[k]
    svc_of = _SVC_OF
    hour = t0 // _HOUR_MS_F
    a_lvl = math.sqrt(level_share)
    b_lvl = math.sqrt(1.0 - level_share)
    k_t, c_t = _ar_terms(level_rho, 0)
    k_h, c_h = _ar_terms(level_rho, 24)
    for i in range(lo, count):
        s = first + i
        lvl_done = False
        lvl = 0.0
        if level_share > 0.0 and vol_hour[i] < 0:  # the run's first epoch: the sums at this hour
            vol_t[i], vol_h[i] = _level_start(key, s, hour, level_rho, habit_share)
            vol_hour[i] = hour
        r = rates
        total_rate = base_total
        if cell_mult.shape[0] > 0 or sub_mult.shape[0] > 0:
            total_rate = 0.0
            for k in range(rates.shape[0]):
                m = 1.0
                if cell_mult.shape[0] > 0:
                    m *= cell_mult[cell_of[i], svc_of[k]]
                if sub_mult.shape[0] > 0:
                    m *= sub_mult[i, svc_of[k]]
                own[k] = rates[k] * m
                total_rate += own[k]
            r = own
        if not fresh and clock[i] >= 0.0 and burst_next[i] > t1:
            # The common quiet case, without seeding the draws: no burst switch in the epoch and
            # the hazard left outlasts it (the same arithmetic as the loop below).
            lam = activity[i] * (mult_on if burst_on[i] else mult_off) * total_rate
            if lam > 0.0:
                need = lam * (float(t1) - float(t0))
                if clock[i] >= need:
                    clock[i] -= need
                    continue
            else:
                continue
        st = seed_state(key, s, epoch)
        n_first, on0, next0, clock0 = n, burst_on[i], burst_next[i], clock[i]
        if burst_next[i] < 0:  # first epoch: start in the stationary law
            st, u = next_uniform(st)
            burst_on[i] = 1 if u < on_mean_ms / (on_mean_ms + off_mean_ms) else 0
            st, e = next_exponential(st, 1.0 / (on_mean_ms if burst_on[i] else off_mean_ms))
            burst_next[i] = t0 + np.int64(e)
        if fresh or clock[i] < 0.0:
            st, clock[i] = next_exponential(st, 1.0)
        t = float(t0)
        while t < t1:
            seg_end = float(min(burst_next[i], t1))
            lam = activity[i] * (mult_on if burst_on[i] else mult_off) * total_rate
            if lam > 0.0:
                while True:
                    need = lam * (seg_end - t)
                    if clock[i] >= need:
                        clock[i] -= need
                        break
                    t_next = t + clock[i] / lam
                    if t_next >= seg_end:  # rounding: the hazard ran out at the segment's end
                        clock[i] = 0.0
                        break
                    t = t_next
                    st, clock[i] = next_exponential(st, 1.0)
                    st, u = next_uniform(st)
                    pick = u * total_rate
                    kind = 0
                    acc = r[0]
                    while pick >= acc and kind < r.shape[0] - 1:
                        kind += 1
                        acc += r[kind]
                    cp = -1
                    dur = np.int64(0)
                    vol = np.int64(0)
                    if kind == VOICE_MO or kind == SMS_MO:
                        st, u = next_uniform(st)
                        lo_c = contact_ptr[i]
                        hi_c = contact_ptr[i + 1]
                        if u < onnet_share and hi_c > lo_c:
                            st, u = next_uniform(st)
                            cp = contact_idx[search_cdf(contact_cdf, lo_c, hi_c, u)]
                    if kind == VOICE_MO or kind == VOICE_MT_OFFNET:
                        st, x = next_lognormal(st, voice_mu, voice_sigma)
                        dur = np.int64(min(max(x * 1000.0, 1000.0), voice_max_ms))
                    elif kind == DATA:
                        if level_share > 0.0:
                            if not lvl_done:
                                if vol_hour[i] < hour:
                                    seed_t, seed_h = _level_seeds(key, s)
                                while vol_hour[i] < hour:
                                    vol_hour[i] += 1
                                    vol_t[i], vol_h[i] = _level_advance(seed_t, seed_h, vol_hour[i], vol_t[i],
                                                                        vol_h[i], level_rho, habit_share, k_t, c_t,
                                                                        k_h, c_h)
                                lvl = _level_value(vol_t[i], vol_h[i], habit_share)
                                lvl_done = True
                            st, z = next_normal(st)
                            x = math.exp(data_mu + data_sigma * (a_lvl * lvl + b_lvl * z))
                        else:
                            st, x = next_lognormal(st, data_mu, data_sigma)
                        vol = np.int64(min(max(x, 1.0), 1e12))
                    if n + 1 > out_t.shape[0]:
                        burst_on[i], burst_next[i], clock[i] = on0, next0, clock0
                        return n_first, i
                    out_t[n] = np.int64(t)
                    out_sub[n] = s
                    out_kind[n] = kind
                    out_cp[n] = cp
                    out_dur[n] = dur
                    out_vol[n] = vol
                    n += 1
            t = seg_end
            if burst_next[i] <= t1 and t >= burst_next[i]:
                burst_on[i] = 1 - burst_on[i]
                st, e = next_exponential(st, 1.0 / (on_mean_ms if burst_on[i] else off_mean_ms))
                burst_next[i] = burst_next[i] + 1 + np.int64(e)
    return n, count


@njit(cache=True)
def _ar_sum(seed, at, rho, cycle):
    """``sum_k rho^k g(at - k) / sqrt(sum_k rho^2k)``, g the keyed normals of ``seed``'s hours
    (:func:`_keyed_normal`); k runs over the hours before ``at`` (``cycle`` 0) or once around a
    day of ``cycle`` hours (each g used once, so the variance is exactly 1). A unit-variance AR(1)
    sequence in ``at`` with correlation ``rho`` (around the day: up to the wrap), without state;
    ``K`` and the norm are :func:`_ar_terms`'."""
    k_terms, norm = _ar_terms(rho, cycle)
    acc = 0.0
    w = 1.0
    for k in range(k_terms):
        acc += w * _keyed_normal(seed, at - k, cycle)
        w *= rho
    return acc / norm


@njit(cache=True)
def _ar_terms(rho, cycle):
    """How many terms :func:`_ar_sum` adds (``K``) and the norm it divides by (``sqrt(sum_k<K rho^2k)``)."""
    w = 1.0
    ss = 0.0
    terms = _LEVEL_TERMS if cycle <= 0 else min(_LEVEL_TERMS, cycle)
    k = 0
    while k < terms:
        ss += w * w
        k += 1
        w *= rho
        if w < 1e-3:
            break
    return k, math.sqrt(ss)


@njit(cache=True, inline="always")
def _level_seeds(key, s):
    """Subscriber ``s``'s two level sequences (transient, daily habit), seeded once; hour j of
    each is the sub-sequence ``j`` strides on (:func:`_keyed_normal`)."""
    return seed_state(key, s, _LEVEL_EPOCH), seed_state(key, s, _HABIT_EPOCH)


@njit(cache=True, inline="always")
def _keyed_normal(seed, j, cycle):
    """The standard normal of hour ``j`` (taken modulo ``cycle`` when > 0) of a level sequence:
    drawn from the SplitMix64 sequence ``seed`` from word ``j * 2^32`` on (a draw takes one word,
    rarely a few), so every hour has its own words and one mix per draw instead of a reseed."""
    if cycle > 0:
        j = j % cycle
    st = seed + np.uint64(j) * _LEVEL_STRIDE
    st, g = next_normal(st)
    return g


@njit(cache=True)
def _level_step(seed, at, prev, rho, k, norm, cycle):
    """The level's next value at ``at`` from ``prev`` at ``at - 1``, one keyed draw g(at) in the
    usual case. Transient (``cycle`` 0): the AR(1) ``rho * prev + sqrt(1 - rho^2) g(at)`` (unit
    variance kept from its standard-normal start). Daily
    habit (``cycle`` 24): :func:`_ar_sum` around the day, whose K newest terms lose the oldest and gain
    g(at): ``rho * prev + (g(at) - rho^K g(at - K)) / norm``, where g(at - K) is g(at) when K is the
    whole day; equal to the direct sum up to rounding."""
    g = _keyed_normal(seed, at, cycle)
    if cycle <= 0:
        return rho * prev + math.sqrt(1.0 - rho * rho) * g
    if k == cycle:
        return rho * prev + (1.0 - rho ** k) * g / norm
    return rho * prev + (g - rho ** k * _keyed_normal(seed, at - k, cycle)) / norm


@njit(cache=True)
def _level_start(key, s, hour, rho, habit_share):
    """The level's two parts in the run's first hour: the transient AR(1) at a keyed standard normal,
    the daily habit at its sum around the day (0 without a habit)."""
    seed_t, seed_h = _level_seeds(key, s)
    t = _keyed_normal(seed_t, hour, 0)
    hb = _ar_sum(seed_h, hour % 24, rho, 24) if habit_share > 0.0 else 0.0
    return t, hb


@njit(cache=True, inline="always")
def _level_value(t, hb, habit_share):
    """The level (standard normal) from its transient part ``t`` and daily habit ``hb``."""
    return math.sqrt(1.0 - habit_share) * t + math.sqrt(habit_share) * hb


@njit(cache=True)
def _level_advance(seed_t, seed_h, hour, t, hb, rho, habit_share, k_t, c_t, k_h, c_h):
    """The level's two parts one hour on, in ``hour`` (:func:`_level_step` on each)."""
    t = _level_step(seed_t, hour, t, rho, k_t, c_t, 0)
    if habit_share > 0.0:
        hb = _level_step(seed_h, hour % 24, hb, rho, k_h, c_h, 24)
    return t, hb


@njit(cache=True)
def volume_levels(key, s, start, end, rho, habit_share):
    """Subscriber ``s``'s data-volume level (standard normal) in clock hours ``start .. end - 1`` of a
    run starting at hour ``start``, as :func:`sessions_epoch` carries it: a transient AR(1) part,
    correlated ``rho`` from one hour to the next, and a share ``habit_share`` (of the variance) that
    is the subscriber's daily habit, a function of the hour of day alone, correlated ``rho`` between
    neighbouring hours of the day (across midnight too)."""
    k_t, c_t = _ar_terms(rho, 0)
    k_h, c_h = _ar_terms(rho, 24)
    seed_t, seed_h = _level_seeds(key, s)
    out = np.empty(end - start)
    t, hb = _level_start(key, s, start, rho, habit_share)
    for h in range(start, end):
        if h > start:
            t, hb = _level_advance(seed_t, seed_h, h, t, hb, rho, habit_share, k_t, c_t, k_h, c_h)
        out[h - start] = _level_value(t, hb, habit_share)
    return out


@njit(cache=True, inline="always")
def _latest_cell(lo, hi, t, t_ev, cell_ev, default):
    """The cell of the latest of events ``lo..hi-1`` (one subscriber's location events of the
    epoch: cell changes and periodic updates, which carry the held cell) at or before ``t``; the
    later one on a tie, as in the network-wide merge; ``default`` when there is none."""
    c = default
    best = np.int64(-1)
    for k in range(lo, hi):
        tk = t_ev[k]
        if tk <= t and tk >= best:
            best = tk
            c = cell_ev[k]
    return c


@njit(cache=True, nogil=True)
def attempt_cells(first, start_cell, mob_sub, mob_t, mob_cell, att_sub, att_t):
    """Serving cell of each attempt (location events come before attempts at the same
    millisecond in the network-wide merge), else the cell the subscriber started the epoch in.
    Both inputs are grouped by subscriber in id order, as the kernels above produce them."""
    out = np.empty(att_sub.shape[0], dtype=np.int32)
    j = 0
    for a in range(att_sub.shape[0]):
        s = att_sub[a]
        while j < mob_sub.shape[0] and mob_sub[j] < s:
            j += 1
        k = j
        while k < mob_sub.shape[0] and mob_sub[k] == s:
            k += 1
        out[a] = _latest_cell(j, k, att_t[a], mob_t, mob_cell, start_cell[s - first])
    return out


@njit(cache=True, nogil=True)
def counterpart_cells(att_cp, att_t, ptr, t_bysub, cell_bysub, start_cell):
    """The counterpart's serving cell at each attempt (-1 when off-net), from the epoch's location
    events of every subscriber grouped by subscriber (CSR ``ptr``)."""
    out = np.full(att_cp.shape[0], -1, dtype=np.int32)
    for a in range(att_cp.shape[0]):
        b = att_cp[a]
        if b >= 0:
            out[a] = _latest_cell(ptr[b], ptr[b + 1], att_t[a], t_bysub, cell_bysub, start_cell[b])
    return out


@njit(cache=True, nogil=True)
def csr_index(sub_sorted, n):
    """CSR row pointers (``n + 1``) of events grouped by subscriber (``sub_sorted`` ascending)."""
    ptr = np.empty(n + 1, dtype=np.int64)
    j = 0
    m = sub_sorted.shape[0]
    for s in range(n + 1):
        while j < m and sub_sorted[j] < s:
            j += 1
        ptr[s] = j
    return ptr
