"""Voice: calls holding channels, a loss system per cell, and redials of calls that did not connect.

A call holds one channel in the serving cell of each on-net party. An attempt at a full cell is
blocked (the other party's leg fails with cause ``remote_blocked``); a party that is already in a
call answers busy. A party that changes cell during a call is handed over if the target cell has a
free channel, else the call drops (cause ``handover_failure``, the other leg ``remote_drop``).

A voice attempt that does not connect (blocked, the other side blocked, busy) is tried again with
probability ``redial_prob`` after an exponential delay, up to ``redial_max`` times, with the same
counterpart and duration. The draw is keyed by (subscriber, time, try) in the ``resolution``
stream, so it does not depend on what happened elsewhere in the network. Waiting redials sit in a
tournament tree like the calls in progress, so overload feeds itself: a blocked crowd comes back.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .records import (
    CAUSE_BUSY,
    CAUSE_NO_CHANNEL,
    CAUSE_NO_COVERAGE,
    CAUSE_NONE,
    CAUSE_REMOTE_BLOCKED,
    CAUSE_REMOTE_DROP,
    CAUSE_REMOTE_NO_COVERAGE,
    DIR_MT,
    OUT_BLOCKED,
    OUT_COMPLETED,
    OUT_DROPPED,
    OUT_FAILED,
    SVC_VOICE,
    cdr_row,
)
from .rng import next_exponential, next_uniform, seed_state
from .state import C_FREE_CALLS, C_FREE_REDIALS, INF, mark
from .trees import tree_set


@njit(cache=True, _nrt=False, inline="always")
def flush(ch, c, t, acc):
    """Integrate cell ``c``'s busy channels up to ``t`` (into the KPI interval when ``acc``)."""
    if acc:
        ch.area[c] += ch.busy[c] * (t - ch.last[c])
    ch.last[c] = t


@njit(cache=True, _nrt=False, inline="always")
def seize(ch, c, t, acc):
    """Take a channel of cell ``c`` at ``t``."""
    flush(ch, c, t, acc)
    ch.busy[c] += 1
    if ch.busy[c] > ch.peak[c]:
        ch.peak[c] = ch.busy[c]
    ch.conn[c] += 1
    if ch.conn[c] > ch.cpeak[c]:
        ch.cpeak[c] = ch.conn[c]


@njit(cache=True, _nrt=False, inline="always")
def release(ch, c, t, acc):
    """Give back a channel of cell ``c`` at ``t``."""
    flush(ch, c, t, acc)
    ch.busy[c] -= 1
    ch.conn[c] -= 1


@njit(cache=True, _nrt=False, inline="always")
def move_leg(calls, ch, k, leg, c_new, t, acc):
    """Hand leg ``leg`` (0: a, 1: b) of call ``k`` over to ``c_new`` (which has a free channel)."""
    release(ch, calls.a_cell[k] if leg == 0 else calls.b_cell[k], t, acc)
    seize(ch, c_new, t, acc)
    if leg == 0:
        calls.a_cell[k] = c_new
    else:
        calls.b_cell[k] = c_new


@njit(cache=True, _nrt=False)
def admit(ch, subs, s, b, c, cb, a_nc, b_nc):
    """The outcomes and causes ``(out_a, cause_a, out_b, cause_b)`` of a voice attempt by ``s`` in
    cell ``c`` to ``b`` in ``cb`` (-1: off-net); ``a_nc`` / ``b_nc``: that party has no coverage."""
    out_a = OUT_COMPLETED
    out_b = OUT_COMPLETED
    cause_a = CAUSE_NONE
    cause_b = CAUSE_NONE
    if a_nc:
        out_a = OUT_FAILED
        cause_a = CAUSE_NO_COVERAGE
    elif b_nc:
        out_a = OUT_FAILED
        cause_a = CAUSE_REMOTE_NO_COVERAGE
        out_b = OUT_FAILED
        cause_b = CAUSE_NO_COVERAGE
    elif subs.st[s, 0] >= 0 or (b >= 0 and subs.st[b, 0] >= 0):
        out_a = OUT_FAILED
        out_b = OUT_FAILED
        cause_a = CAUSE_BUSY
        cause_b = CAUSE_BUSY
    else:
        a_ok = ch.busy[c] < ch.cap[c]
        b_ok = True
        if b >= 0:
            need = 2 if cb == c else 1
            b_ok = ch.busy[cb] + need <= ch.cap[cb] if cb == c else ch.busy[cb] < ch.cap[cb]
        if not a_ok:
            out_a = OUT_BLOCKED
            cause_a = CAUSE_NO_CHANNEL
            if b >= 0:
                out_b = OUT_BLOCKED if not b_ok else OUT_FAILED
                cause_b = CAUSE_NO_CHANNEL if not b_ok else CAUSE_REMOTE_BLOCKED
        elif not b_ok:
            out_b = OUT_BLOCKED
            cause_b = CAUSE_NO_CHANNEL
            out_a = OUT_FAILED
            cause_a = CAUSE_REMOTE_BLOCKED
    return out_a, cause_a, out_b, cause_b


@njit(cache=True, _nrt=False)
def connect(calls, ch, subs, counters, t, dur, sess, ki, tries, s, c, rec_a, direction, b, cb, rec_b, acc):
    """Set up a call admitted at ``t``: a slot, a channel per on-net leg, its end in the tree."""
    k = calls.free[counters[C_FREE_CALLS] - 1]
    counters[C_FREE_CALLS] -= 1
    calls.sess[k] = sess
    calls.t0[k] = t
    calls.interval[k] = ki
    calls.tries[k] = tries
    calls.a_sub[k] = s
    calls.a_cell[k] = c
    calls.a_start[k] = c
    calls.a_rec[k] = rec_a
    calls.a_dir[k] = direction
    calls.b_sub[k] = b
    calls.b_cell[k] = cb
    calls.b_start[k] = cb
    calls.b_rec[k] = rec_b
    for leg in range(2):
        p = s if leg == 0 else b
        if p < 0:
            continue
        seize(ch, c if leg == 0 else cb, t, acc)
        subs.st[p, 0] = k
        mark(subs, p)
    tree_set(calls.tv, calls.tvi, k, t + dur)


@njit(cache=True, _nrt=False)
def end_call(k, t, dropper, c_new, drop_cause, k_end, k_carried, acc, calls, ch, subs, counters, cdr, nc):
    """Release both legs of call ``k`` at ``t`` and write their records: completed when
    ``dropper`` < 0, else dropped (the dropper's leg with ``drop_cause``, ending in ``c_new``; the
    other leg remote_drop). ``k_end`` is the KPI the legs count in (completed or dropped), by start
    cell and start interval, as ``k_carried`` their channel-time. Returns the CDR count."""
    tree_set(calls.tv, calls.tvi, k, INF)
    ki = calls.interval[k]
    t0 = calls.t0[k]
    for leg in range(2):
        p = calls.a_sub[k] if leg == 0 else calls.b_sub[k]
        if p < 0:
            continue
        c = calls.a_cell[k] if leg == 0 else calls.b_cell[k]
        c0 = calls.a_start[k] if leg == 0 else calls.b_start[k]
        release(ch, c, t, acc)
        subs.st[p, 0] = -1
        mark(subs, p)
        if dropper < 0:
            end, outcome, cause = c, OUT_COMPLETED, CAUSE_NONE
        elif p == dropper:
            end, outcome, cause = c_new, OUT_DROPPED, drop_cause
        else:
            end, outcome, cause = c, OUT_DROPPED, CAUSE_REMOTE_DROP
        nc = cdr_row(cdr, nc, (calls.a_rec[k] if leg == 0 else calls.b_rec[k]), calls.sess[k], p,
                     (calls.b_sub[k] if leg == 0 else calls.a_sub[k]), SVC_VOICE,
                     (calls.a_dir[k] if leg == 0 else DIR_MT), t0, t - t0, 0, 0, c0, end, outcome, cause,
                     calls.tries[k])
        k_end[ki, c0] += 1
        k_carried[ki, c0] += t - t0
    calls.free[counters[C_FREE_CALLS]] = k
    counters[C_FREE_CALLS] += 1
    return nc


@njit(cache=True, _nrt=False)
def maybe_redial(rd, p, counters, t, s, kind, cp, dur, c, c_cp, tries):
    """After attempt ``tries`` by ``s`` at ``t`` did not connect: with probability
    ``p.redial_prob`` (up to ``p.redial_max`` tries, within the window), queue it again after an
    exponential delay, with the same counterpart, duration and cells."""
    if tries < p.redial_max and p.redial_prob > 0.0:
        st = seed_state(p.redial_key, np.int64(s), t * 128 + tries)
        st, u = next_uniform(st)
        if u < p.redial_prob:
            st, wait = next_exponential(st, 1.0 / p.redial_delay_ms)
            t_again = t + 1 + np.int64(wait)
            if t_again < p.t_new_end:
                r = rd.free[counters[C_FREE_REDIALS] - 1]
                counters[C_FREE_REDIALS] -= 1
                rd.sub[r] = s
                rd.kind[r] = kind
                rd.cp[r] = cp
                rd.dur[r] = dur
                rd.cell[r] = c
                rd.cp_cell[r] = c_cp
                rd.tries[r] = tries + 1
                tree_set(rd.tr, rd.tri, r, t_again)


@njit(cache=True, _nrt=False, inline="always")
def take_redial(rd, counters, r):
    """Take waiting redial ``r`` out of the tree and free its slot (it is being attempted)."""
    tree_set(rd.tr, rd.tri, r, INF)
    rd.free[counters[C_FREE_REDIALS]] = r
    counters[C_FREE_REDIALS] += 1
