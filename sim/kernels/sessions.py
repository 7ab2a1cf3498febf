"""Sessions: when each subscriber tries to call, text or use data through one epoch, and how much.

Arrivals are Poisson at the subscriber's activity times the hour's rate per attempt kind, modulated
by a two-state Markov process (active / quiet, exponential sojourns) carried across epochs, which
makes inter-event times bursty as in real CDRs. Originated calls and SMS go to a contact of the
social graph (in proportion to tie strength) with probability ``onnet_share``, else off-net.
Voice durations are lognormal; data volumes are lognormal, partly drawn from the subscriber's
hourly data-volume level (:mod:`sim.kernels.volume_level`).

The kernel's inputs come grouped by concept: the model's parameters (:class:`SessionParams`), the
shard's fixed per-subscriber attributes (:class:`Callers`), its state carried across epochs
(:class:`SessionClocks`), the epoch's own inputs (:class:`SessionEpoch`) and the output rows
(:class:`AttemptRows`). They are named tuples of arrays and scalars, which numba takes as they are
and which pickle for remote workers.

Each subscriber's draws come from its own counter-based sequence keyed by the stream, the
subscriber id and the epoch, so any split of subscribers into shards gives the same attempts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .rng import next_exponential, next_lognormal, next_normal, next_uniform, search_cdf, seed_state
from .volume_level import ar_terms, level_advance, level_seeds, level_start, level_value

_HOUR_MS_F = 3_600_000
# Attempt kinds produced by the session kernel.
VOICE_MO, SMS_MO, DATA, VOICE_MT_OFFNET, SMS_MT_OFFNET = 0, 1, 2, 3, 4
_SVC_OF = np.array([0, 1, 2, 0, 1])  # the service (voice, SMS, data) of each attempt kind


class SessionParams(NamedTuple):
    """The session model's parameters (read-only, shared by every shard)."""

    mult_on: float        # rate multiplier while active / while quiet
    mult_off: float
    on_mean_ms: float     # mean sojourn (ms) active / quiet
    off_mean_ms: float
    onnet_share: float    # share of originated calls and SMS that go to a contact
    voice_mu: float       # log-duration (s) of a conversation: lognormal mu, sigma
    voice_sigma: float
    voice_max_ms: float   # longest call
    data_mu: float        # log-volume (bytes) of a data session: lognormal mu, sigma
    data_sigma: float
    level_share: float    # share of the log-volume's variance that is the hourly level (0: none)
    level_rho: float      # the level's hour-to-hour correlation
    habit_share: float    # share of the level that is the daily habit
    voice_short_share: float = 0.0  # share of calls that are short (voicemail, call-backs): lognormal
    voice_short_mu: float = 0.0     # (short_mu, short_sigma) instead of (voice_mu, voice_sigma)
    voice_short_sigma: float = 0.0


class Callers(NamedTuple):
    """A shard's subscribers ``first .. first + len(activity) - 1``: fixed for the run."""

    first: int              # the first subscriber's id (keys the draws and the output)
    activity: np.ndarray    # float64: rate multiplier of each subscriber
    sub_mult: np.ndarray    # float64 [n, 3]: per-service multipliers (voice, SMS, data), or empty
    contact_ptr: np.ndarray  # int64 [n + 1]: each subscriber's contacts in contact_idx / contact_cdf
    contact_cdf: np.ndarray  # float64: cumulative tie strength within each subscriber's contacts
    contact_idx: np.ndarray  # int32: contact subscriber ids


class SessionClocks(NamedTuple):
    """A shard's session state, carried across epochs and updated in place (views of
    ``sim.shards.ShardState``)."""

    burst_on: np.ndarray    # int8: in an active period
    burst_next: np.ndarray  # int64 ms of the next burst switch; -1 before the first epoch
    clock: np.ndarray       # float64: unit hazard left before the next attempt; -1 before the first epoch
    vol_t: np.ndarray       # float64: data-volume level, its transient moving sum
    vol_h: np.ndarray       # float64: data-volume level, its daily-habit moving sum
    vol_hour: np.ndarray    # int64: the clock hour vol_t / vol_h are for; -1 before the first epoch


class SessionEpoch(NamedTuple):
    """One epoch ``[t0, t1)`` (ms) of sessions."""

    epoch: int              # keys the draws
    t0: int
    t1: int
    fresh: bool             # the first epoch of an hour: clocks drawn anew
    rates: np.ndarray       # float64 [kinds]: attempts per ms per unit of activity
    cell_of: np.ndarray     # int32: the cell each subscriber starts the epoch in
    cell_mult: np.ndarray   # float64 [cells, 3]: per-cell multipliers (voice, SMS, data), or empty
    data_mu_shift: float    # added to SessionParams.data_mu in this hour


class AttemptRows(NamedTuple):
    """Output columns of attempts, written from a given row on."""

    t: np.ndarray      # int64 ms
    sub: np.ndarray    # int32 subscriber id
    kind: np.ndarray   # int8 attempt kind (VOICE_MO ...)
    cp: np.ndarray     # int32 counterpart subscriber, -1 off-net or none
    dur: np.ndarray    # int32 ms: call duration (0 for others)
    vol: np.ndarray    # int64 bytes: data volume (0 for others)


@njit(cache=True, nogil=True, _nrt=False)
def sessions_epoch(key, params, callers, clocks, ep, out, lo, n, own):
    """Session attempts of a shard's subscribers (:class:`Callers`) in the epoch ``ep``, written
    to ``out``; ``clocks`` is updated in place. Per-subscriber arrays are indexed from 0
    (``contact_ptr`` has one more entry, pointing into ``contact_idx`` / ``contact_cdf``); the
    subscriber id keys the random stream ``key``.

    Arrivals are Poisson at ``activity * multiplier * rates[kind]`` per ms, where the multiplier
    follows a two-state Markov-modulated process (active / quiet, exponential sojourns) carried
    across epochs: this makes inter-event times bursty. Originated calls and SMS go to a contact
    (chosen in proportion to tie strength) with probability ``onnet_share``, else off-net.
    Voice durations and data volumes are lognormal.

    A data session's log-volume is ``data_mu + data_sigma * z``, z standard normal. With
    ``level_share`` > 0 a part of it is the subscriber's own level that persists over hours:
    ``z = sqrt(level_share) * L + sqrt(1 - level_share) * e``, where ``L`` (standard normal,
    one value per subscriber and clock hour) has hour-to-hour correlation ``level_rho``
    (:func:`sim.kernels.volume_level.volume_levels`) and ``e`` is the session's own draw. A share
    ``habit_share`` of ``L`` is the subscriber's daily habit, the same at each hour of the day
    every day. Every session's volume keeps the same lognormal law; a heavy hour of a subscriber
    is more often followed by another, and by a heavy hour at the same time the next day. The
    level's two moving sums are carried in ``vol_t`` / ``vol_h`` (state, valid for clock hour
    ``vol_hour``; -1 before the run's first epoch, when every subscriber's are set: the transient
    to a keyed normal, the habit to its sum around the day) and advanced hour by hour with one
    keyed draw each, only when a data session needs them: the same values, bit for bit, whoever
    asks and when.

    ``cell_mult`` (empty, or one row per cell: voice, SMS and data multipliers) scales the rates of
    a subscriber by the row of the cell they start the epoch in (``cell_of``): mass events,
    emergencies and per-cell load shapes. ``sub_mult`` (empty, or one row per subscriber: voice,
    SMS and data) scales each subscriber's rates per service (a population drawn from a learned
    behaviour generator). ``own`` is scratch for a subscriber's own rates (as long as ``rates``).

    Arrivals are drawn by time change: each subscriber carries ``clock``, the unit-rate
    exponential hazard left before their next attempt (negative before the first epoch), and
    spends ``rate * time`` of it as time passes; an attempt happens when it runs out. This is
    exact for piecewise-constant rates. When ``fresh`` is set (the first epoch of each hour) the
    clock is drawn anew, which the memoryless law allows: a subscriber whose rates an incident
    changed is back on the same draws as without it from the next hour on.

    Output goes to ``out`` from row ``n`` on, starting with subscriber index ``lo``. When the
    columns fill up, the subscriber being drawn is undone (its state restored) and ``(n, i)`` is
    returned for the caller to grow them and go on from ``i`` (the draws are keyed, so the redo
    is identical). The kernel runs without reference counting, so it allocates nothing. Returns
    ``(n, count)`` when done.
    """
    mult_on, mult_off, on_mean_ms, off_mean_ms = params.mult_on, params.mult_off, params.on_mean_ms, params.off_mean_ms
    onnet_share, voice_mu, voice_sigma, voice_max_ms = (params.onnet_share, params.voice_mu, params.voice_sigma,
                                                        params.voice_max_ms)
    data_mu, data_sigma = params.data_mu + ep.data_mu_shift, params.data_sigma
    level_share, level_rho, habit_share = params.level_share, params.level_rho, params.habit_share
    short_share, short_mu, short_sigma = params.voice_short_share, params.voice_short_mu, params.voice_short_sigma
    first, activity, sub_mult = callers.first, callers.activity, callers.sub_mult
    contact_ptr, contact_cdf, contact_idx = callers.contact_ptr, callers.contact_cdf, callers.contact_idx
    count = activity.shape[0]
    burst_on, burst_next, clock = clocks.burst_on, clocks.burst_next, clocks.clock
    vol_t, vol_h, vol_hour = clocks.vol_t, clocks.vol_h, clocks.vol_hour
    epoch, fresh, t0, t1, rates, cell_of, cell_mult = ep.epoch, ep.fresh, ep.t0, ep.t1, ep.rates, ep.cell_of, ep.cell_mult
    out_t, out_sub, out_kind, out_cp, out_dur, out_vol = out.t, out.sub, out.kind, out.cp, out.dur, out.vol
    base_total = 0.0
    for k in range(rates.shape[0]):
        base_total += rates[k]
    svc_of = _SVC_OF
    hour = t0 // _HOUR_MS_F
    a_lvl = math.sqrt(level_share)
    b_lvl = math.sqrt(1.0 - level_share)
    k_t, c_t = ar_terms(level_rho, 0)
    k_h, c_h = ar_terms(level_rho, 24)
    for i in range(lo, count):
        s = first + i
        lvl_done = False
        lvl = 0.0
        if level_share > 0.0 and vol_hour[i] < 0:  # the run's first epoch: the sums at this hour
            vol_t[i], vol_h[i] = level_start(key, s, hour, level_rho, habit_share)
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
                        st, u = next_uniform(st)
                        if u < short_share:
                            st, x = next_lognormal(st, short_mu, short_sigma)
                        else:
                            st, x = next_lognormal(st, voice_mu, voice_sigma)
                        # whole seconds, as switches bill and CDRs record them
                        dur = np.int64(min(max(math.floor(x + 0.5), 1.0) * 1000.0, voice_max_ms))
                    elif kind == DATA:
                        if level_share > 0.0:
                            if not lvl_done:
                                if vol_hour[i] < hour:
                                    seed_t, seed_h = level_seeds(key, s)
                                while vol_hour[i] < hour:
                                    vol_hour[i] += 1
                                    vol_t[i], vol_h[i] = level_advance(seed_t, seed_h, vol_hour[i], vol_t[i],
                                                                        vol_h[i], level_rho, habit_share, k_t, c_t,
                                                                        k_h, c_h)
                                lvl = level_value(vol_t[i], vol_h[i], habit_share)
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
