"""Data: egalitarian processor sharing of each cell's capacity among its data sessions.

The ``n`` sessions in a cell each get ``min(ue_peak, capacity / n)``; a session's volume is fixed,
so its duration stretches under load. Tracked exactly by a per-cell virtual time (bytes received by
any one session since the cell was last empty): a session finishes when its cell's virtual time
reaches its finish tag, and every cell's next completion sits in a tournament tree. A session
follows its subscriber through cell changes, keeping its remaining volume. A cell admits at most
``max_data`` sessions at once (its connection limit): a new session beyond it is blocked (cause
``session_limit``), which also bounds the work per event.

Each session is in two doubly linked lists: its cell's (``head`` / ``cnext`` / ``cprev``) and its
subscriber's (first session in the subscriber's state row, then ``snext`` / ``sprev``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .records import CAUSE_NONE, DIR_MO, OUT_COMPLETED, OUT_DROPPED, SVC_DATA, cdr_row
from .state import C_FREE_DATA, C_NEXT_REC, C_NEXT_SESS, INF, mark
from .trees import tree_set


@njit(cache=True, _nrt=False, inline="always")
def rate(ps, c, ue_bpms):
    """Bytes per ms each session of cell ``c`` receives now."""
    share = ps.cap_bpms[c] / ps.n_sess[c]
    return share if share < ue_bpms else ue_bpms


@njit(cache=True, _nrt=False, inline="always")
def advance(ps, c, t, ue_bpms, acc):
    """Advance cell ``c``'s virtual time to ``t`` (and its served bytes and session-time, when
    ``acc``: the KPI interval is open)."""
    if ps.n_sess[c] > 0 and t > ps.last[c]:
        r = rate(ps, c, ue_bpms)
        dt = t - ps.last[c]
        ps.vt[c] += r * dt
        if acc:
            ps.served[c] += r * dt * ps.n_sess[c]
            ps.sess_ms[c] += dt * ps.n_sess[c]
    ps.last[c] = t


@njit(cache=True, _nrt=False, inline="always")
def predict(ps, ds, c, t, ue_bpms):
    """Put cell ``c``'s next completion (its smallest finish tag at the current rate) in the tree."""
    if ps.n_sess[c] == 0:
        tree_set(ps.td, ps.tdi, c, INF)
        return
    best = 1e300
    j = ps.head[c]
    while j >= 0:
        if ds.fin[j] < best:
            best = ds.fin[j]
        j = ds.cnext[j]
    r = rate(ps, c, ue_bpms)
    if r <= 0.0:
        tree_set(ps.td, ps.tdi, c, INF)
        return
    rem = best - ps.vt[c]
    wait = np.int64(math.ceil(rem / r)) if rem > 0.0 else np.int64(0)
    tree_set(ps.td, ps.tdi, c, t + wait)


@njit(cache=True, _nrt=False, inline="always")
def cell_unlink(ps, ds, j, c):
    """Take session ``j`` out of cell ``c``'s list (a cell left empty restarts its virtual time)."""
    if ds.cprev[j] >= 0:
        ds.cnext[ds.cprev[j]] = ds.cnext[j]
    else:
        ps.head[c] = ds.cnext[j]
    if ds.cnext[j] >= 0:
        ds.cprev[ds.cnext[j]] = ds.cprev[j]
    ps.n_sess[c] -= 1
    ps.conn[c] -= 1
    if ps.n_sess[c] == 0:
        ps.vt[c] = 0.0


@njit(cache=True, _nrt=False, inline="always")
def cell_link(ps, ds, j, c):
    """Put session ``j`` at the head of cell ``c``'s list."""
    ds.cprev[j] = -1
    ds.cnext[j] = ps.head[c]
    if ps.head[c] >= 0:
        ds.cprev[ps.head[c]] = j
    ps.head[c] = j
    ps.n_sess[c] += 1
    if ps.n_sess[c] > ps.peak[c]:
        ps.peak[c] = ps.n_sess[c]
    ps.conn[c] += 1
    if ps.conn[c] > ps.cpeak[c]:
        ps.cpeak[c] = ps.conn[c]


@njit(cache=True, _nrt=False, inline="always")
def unlink(ps, ds, subs, j, c, s):
    """Take session ``j`` (in cell ``c``, of subscriber ``s``) out of both its lists."""
    cell_unlink(ps, ds, j, c)
    if ds.sprev[j] >= 0:
        ds.snext[ds.sprev[j]] = ds.snext[j]
    else:
        subs.st[s, 1] = ds.snext[j]
    if ds.snext[j] >= 0:
        ds.sprev[ds.snext[j]] = ds.sprev[j]
    mark(subs, s)


@njit(cache=True, _nrt=False, inline="always")
def move(ps, ds, j, c_new):
    """Move session ``j`` to ``c_new`` keeping its remaining volume (both cells' virtual times
    advanced to now)."""
    c_old = ds.cell[j]
    rem = ds.fin[j] - ps.vt[c_old]
    cell_unlink(ps, ds, j, c_old)
    ds.fin[j] = ps.vt[c_new] + rem
    ds.cell[j] = c_new
    cell_link(ps, ds, j, c_new)


@njit(cache=True, _nrt=False, inline="always")
def start(ps, ds, subs, counters, s, c, t, vol, up_share):
    """Start a session of ``vol`` bytes (``up_share`` of them uplink) for ``s`` in cell ``c`` at
    ``t`` (the cell's virtual time advanced to ``t``, the cell below its connection limit)."""
    j = ds.free[counters[C_FREE_DATA] - 1]
    counters[C_FREE_DATA] -= 1
    up = np.int64(vol * up_share)
    ds.sub[j] = s
    ds.cell[j] = c
    ds.start[j] = c
    ds.t0[j] = t
    ds.size[j] = float(vol - up)
    ds.up[j] = up
    ds.fin[j] = ps.vt[c] + float(vol - up)
    ds.rec[j] = counters[C_NEXT_REC]
    ds.sess[j] = counters[C_NEXT_SESS]
    counters[C_NEXT_REC] += 1
    counters[C_NEXT_SESS] += 1
    cell_link(ps, ds, j, c)
    ds.sprev[j] = -1
    ds.snext[j] = subs.st[s, 1]
    if subs.st[s, 1] >= 0:
        ds.sprev[subs.st[s, 1]] = j
    subs.st[s, 1] = j
    mark(subs, s)


@njit(cache=True, _nrt=False)
def complete(ps, ds, subs, counters, c, t, ue_bpms, acc, cdr, nc):
    """The session with the smallest finish tag in cell ``c`` completes at ``t``: its record, its
    slot freed, the cell's next completion predicted. Returns the CDR count."""
    advance(ps, c, t, ue_bpms, acc)
    best = -1
    j = ps.head[c]
    while j >= 0:
        if best < 0 or ds.fin[j] < ds.fin[best]:
            best = j
        j = ds.cnext[j]
    j = best
    s = ds.sub[j]
    unlink(ps, ds, subs, j, c, s)
    nc = cdr_row(cdr, nc, ds.rec[j], ds.sess[j], s, -1, SVC_DATA, DIR_MO, ds.t0[j], t - ds.t0[j], ds.up[j],
                 np.int64(ds.size[j]), ds.start[j], c, OUT_COMPLETED, CAUSE_NONE, 0)
    ds.free[counters[C_FREE_DATA]] = j
    counters[C_FREE_DATA] += 1
    predict(ps, ds, c, t, ue_bpms)
    return nc


@njit(cache=True, _nrt=False)
def drop(ps, ds, subs, counters, j, t, cause, end, cdr, nc):
    """End session ``j`` early at ``t`` (its cell's virtual time already advanced to ``t``): a
    dropped record with the bytes received so far, ending in cell ``end`` (-1: its serving cell).
    Returns the CDR count."""
    c = ds.cell[j]
    rem = ds.fin[j] - ps.vt[c]
    got = ds.size[j] - rem if rem > 0.0 else ds.size[j]
    unlink(ps, ds, subs, j, c, ds.sub[j])
    nc = cdr_row(cdr, nc, ds.rec[j], ds.sess[j], ds.sub[j], -1, SVC_DATA, DIR_MO, ds.t0[j], t - ds.t0[j],
                 ds.up[j], np.int64(max(got, 0.0)), ds.start[j], c if end < 0 else end, OUT_DROPPED, cause, 0)
    ds.free[counters[C_FREE_DATA]] = j
    counters[C_FREE_DATA] += 1
    return nc


@njit(cache=True, _nrt=False)
def drop_all(ps, ds, subs, counters, s, t, cause, end, ue_bpms, acc, cdr, nc):
    """End every session of subscriber ``s`` at ``t`` with ``cause``, in cell ``end`` (where the
    subscriber lost coverage, as a call's record ends there). Returns the CDR count."""
    while subs.st[s, 1] >= 0:
        j = subs.st[s, 1]
        c_old = ds.cell[j]
        advance(ps, c_old, t, ue_bpms, acc)
        nc = drop(ps, ds, subs, counters, np.int64(j), t, np.int64(cause), np.int64(end), cdr, nc)
        predict(ps, ds, c_old, t, ue_bpms)
    return nc


@njit(cache=True, _nrt=False)
def follow(ps, ds, subs, s, c_new, t, ue_bpms, acc):
    """Move every session of subscriber ``s`` to ``c_new``, each from its own cell (after an
    outage a subscriber's sessions may sit in two cells)."""
    advance(ps, c_new, t, ue_bpms, acc)
    j = subs.st[s, 1]
    while j >= 0:
        c_old = ds.cell[j]
        if c_old != c_new:
            advance(ps, c_old, t, ue_bpms, acc)
            move(ps, ds, j, c_new)
            predict(ps, ds, c_old, t, ue_bpms)
        j = ds.snext[j]
    predict(ps, ds, c_new, t, ue_bpms)
