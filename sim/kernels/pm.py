"""PM counters from records: one pass over a slice's CDR or location rows, in their order.

Private kernels of :mod:`sim.pm`; each reads the columns of one emitted slice and writes into
arrays it is given (the per-interval accumulators, or per-row outputs that the caller sizes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .records import (
    CAUSE_NO_COVERAGE,
    DIR_MO,
    OUT_BLOCKED,
    OUT_COMPLETED,
    OUT_DROPPED,
    OUT_FAILED,
    REASON_HANDOVER,
    SVC_DATA,
    SVC_VOICE,
)

# Bits of a (subscriber, time) key: time in ms from the run start below 2**36 (795 days).
T_BITS = np.int64(36)


@njit(cache=True, nogil=True)
def rrc_and_throughput(t, dur_s, down, svc, out, cause, cell, end, pm_ms, n_pm, rrc_att, rrc_succ, thp_int,
                       thp_cell, thp_mbps):
    """RRC establishment attempts and successes by (interval of the attempt, cell of the attempt)
    into ``rrc_att`` / ``rrc_succ``; one throughput sample (Mbps, downlink volume over the time
    from the start to the last byte) per completed data session ending inside the window, by
    (interval of its end, end cell), into the ``thp_*`` outputs. Returns the samples written.

    An attempt is a CDR row of a party that reached a cell (every row but ``failed`` with
    ``no_coverage``); a success, one not ``blocked`` (no voice channel, or the cell's connection
    limit)."""
    n = 0
    for i in range(t.shape[0]):
        if out[i] == OUT_FAILED and cause[i] == CAUSE_NO_COVERAGE:
            continue
        k = t[i] // pm_ms
        if k < n_pm:
            rrc_att[k, cell[i]] += 1
            if out[i] != OUT_BLOCKED:
                rrc_succ[k, cell[i]] += 1
        if svc[i] == SVC_DATA and out[i] == OUT_COMPLETED:
            d_ms = np.int64(round(dur_s[i] * 1000.0))
            k_end = (t[i] + d_ms) // pm_ms
            if k_end < n_pm:
                thp_int[n] = k_end
                thp_cell[n] = end[i]
                thp_mbps[n] = down[i] * 8.0 / 1e6 / (max(d_ms, 1) / 1000.0)
                n += 1
    return n


@njit(cache=True, nogil=True)
def handovers(t, sub, cell, reason, last_cell, fail_keys, pm_ms, n_pm, src, dst, k_out, failed):
    """Walk location rows in order, keeping each subscriber's last cell in ``last_cell``; for every
    ``handover`` row into another cell than the last, write (interval, source, target, failed)
    into the outputs. ``fail_keys`` (ascending) are the (subscriber << T_BITS | time) keys of the
    slice's ``handover_failure`` records. Returns the handovers written."""
    n = 0
    for i in range(t.shape[0]):
        s = sub[i]
        prev = last_cell[s]
        last_cell[s] = cell[i]
        if reason[i] != REASON_HANDOVER or prev < 0 or prev == cell[i]:
            continue
        k = t[i] // pm_ms
        if k >= n_pm:
            continue
        key = (np.int64(s) << T_BITS) | t[i]
        j = np.searchsorted(fail_keys, key)
        src[n] = prev
        dst[n] = cell[i]
        k_out[n] = k
        failed[n] = j < fail_keys.shape[0] and fail_keys[j] == key
        n += 1
    return n


@njit(cache=True, nogil=True)
def voice_pairs(sess, t, dur_s, svc, direction, cp, cell, out, hour_ms, n_cells, key, connected, hold_ms):
    """One entry per voice call (session) of the slice: its key, (hour of the attempt × (cells + 1)
    + the originating party's cell + 1) × (cells + 1) + the receiving party's cell + 1 (cell -1:
    outside the network, or never reached), whether it connected and its holding time (ms). The
    two rows of an on-net call are adjacent (MO first). Returns the calls written."""
    n = 0
    m = t.shape[0]
    for i in range(m):
        if svc[i] != SVC_VOICE:
            continue
        if direction[i] == DIR_MO:
            a = cell[i]
            b = np.int32(-1)
            if cp[i] >= 0 and i + 1 < m and sess[i + 1] == sess[i]:
                b = cell[i + 1]
        elif cp[i] < 0:
            a = np.int32(-1)
            b = cell[i]
        else:
            continue  # the MT leg of an on-net call: counted with its MO leg
        c1 = n_cells + 1
        key[n] = ((t[i] // hour_ms) * c1 + (a + 1)) * c1 + (b + 1)
        ok = out[i] == OUT_COMPLETED or out[i] == OUT_DROPPED
        connected[n] = ok
        hold_ms[n] = np.int64(round(dur_s[i] * 1000.0)) if ok else np.int64(0)
        n += 1
    return n


@njit(cache=True, nogil=True)
def p10_into(k, c, v, upto, n_cells, out):
    """The 10th percentile (linear interpolation, as numpy's default) of the samples ``v`` of
    each (interval ``k``, cell ``c``) with ``k < upto`` into ``out[k, c]``. Returns a mask of the
    samples left (``k >= upto``)."""
    n = k.shape[0]
    left = k >= upto
    k0 = upto
    for i in range(n):
        if k[i] < k0:
            k0 = k[i]
    groups = (upto - k0) * n_cells
    if groups <= 0:
        return left
    # counting sort of the samples by group, then each group sorted in place
    start = np.zeros(groups + 1, np.int64)
    for i in range(n):
        if not left[i]:
            start[(k[i] - k0) * n_cells + c[i] + 1] += 1
    for g in range(groups):
        start[g + 1] += start[g]
    fill = start[:-1].copy()
    x = np.empty(start[groups], np.float64)
    for i in range(n):
        if not left[i]:
            g = (k[i] - k0) * n_cells + c[i]
            x[fill[g]] = v[i]
            fill[g] += 1
    for g in range(groups):
        a, b = start[g], start[g + 1]
        if b == a:
            continue
        x[a:b].sort()
        pos = 0.1 * (b - a - 1)
        lo = np.int64(np.floor(pos))
        hi = min(lo + 1, b - a - 1)
        out[k0 + g // n_cells, g % n_cells] = x[a + lo] + (x[a + hi] - x[a + lo]) * (pos - lo)
    return left
