"""Demand as the rest of the simulator sees it: the two pieces' event vocabulary (location event
kinds from :mod:`sim.kernels.mobility`, attempt kinds from :mod:`sim.kernels.sessions`), and
where they meet: the serving cell of each attempt and of its counterpart, from the epoch's
location events and attempts. Both come grouped by subscriber in id order, each subscriber's
events in time order, as the kernels produce them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .mobility import HOME, KIND_ATTACH, KIND_CHANGE, KIND_PERIODIC, OTHER, WORK
from .sessions import DATA, SMS_MO, SMS_MT_OFFNET, VOICE_MO, VOICE_MT_OFFNET

__all__ = ["DATA", "HOME", "KIND_ATTACH", "KIND_CHANGE", "KIND_PERIODIC", "OTHER", "SMS_MO", "SMS_MT_OFFNET",
           "VOICE_MO", "VOICE_MT_OFFNET", "WORK", "attempt_cells", "counterpart_cells", "csr_index"]


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
    Both inputs are grouped by subscriber in id order."""
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
