"""The resolution state: what the network resolution kernels read and write, grouped by concept.

Each group is a namedtuple of arrays (or, for :class:`Params`, scalars), which numba passes to a
kernel like the arrays one by one and whose fields it resolves at compile time: grouping costs
nothing on the hot path and keeps every kernel's signature short. The arrays persist across epochs
(owned by :class:`sim.resolver.Resolver`, which grows the slot pools between calls); a kernel never
allocates or resizes them.

Slot pools (calls, data sessions, waiting redials) hold a fixed number of slots; ``free`` is a
stack of the free slot ids whose height is a counter (``C_FREE_*``), so a slot is taken and given
back in O(1) without allocating. A slot's fields are only meaningful while it is taken.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

INF = np.int64(2**62)

# Indices into the int64 counter array: next record and session ids, the current KPI interval and
# the time of its end, the heights of the three free-slot stacks.
C_NEXT_REC, C_NEXT_SESS, C_CUR_INT, C_NEXT_TICK, C_FREE_CALLS, C_FREE_DATA, C_FREE_REDIALS = 0, 1, 2, 3, 4, 5, 6
N_COUNTERS = 7

Params = namedtuple("Params", [
    "n_int",            # KPI intervals of the run (the KPI arrays' rows)
    "interval_ms",      # length of one KPI interval
    "ue_bpms",          # peak rate of one data session (bytes per ms)
    "max_data",         # data sessions a cell holds at once (its connection limit)
    "up_share",         # share of a data session's volume that is uplink
    "degraded",         # any cell down or degraded (see Coverage); False skips the coverage draws
    "cover_key",        # key of the coverage draws' stream
    "redial_key",       # key of the redial draws' stream
    "redial_prob",      # chance that a voice attempt that did not connect is tried again
    "redial_delay_ms",  # mean delay before a redial
    "redial_max",       # most redials per attempt
    "t_new_end",        # no redial at or after this time (the end of the window)
])
"""The run's settings, as the kernels need them (scalars)."""

Coverage = namedtuple("Coverage", [
    "serve",  # per cell: the cell serving its area (itself while up, a neighbour or -1 when down)
    "cover",  # per cell: the share of its area that has coverage at all
])
"""Where incidents moved or removed service (identity and 1 while every cell is up)."""

Channels = namedtuple("Channels", [
    "cap",   # voice channels of each cell
    "busy",  # channels in use
    "last",  # time busy[] was last integrated
    "area",  # busy-channel time integral of the current KPI interval
    "peak",  # most channels busy at once in the current KPI interval
    "conn",   # connections in the cell: busy channels plus data sessions (the same array as Sharing's)
    "cpeak",  # most connections at once in the current KPI interval (the same array as Sharing's)
])
"""The voice channels of each cell (a loss system: a call needs one free channel per on-net leg)."""

Sharing = namedtuple("Sharing", [
    "cap_bpms",  # data capacity of each cell (bytes per ms)
    "n_sess",    # data sessions in the cell
    "vt",        # virtual time: bytes received so far by any one session in the cell
    "last",      # time vt was last advanced
    "served",    # bytes served in the current KPI interval
    "sess_ms",   # session-time served in the current KPI interval
    "peak",      # most data sessions at once in the current KPI interval
    "conn",      # connections in the cell (Channels.conn: the same array)
    "cpeak",     # most connections at once in the current KPI interval (Channels.cpeak: the same array)
    "head",      # first data session of the cell's list (-1: none)
    "td",        # tournament tree (values): each cell's next data completion time
    "tdi",       # tournament tree (leaf ids)
])
"""Per cell processor sharing of the data capacity among the cell's sessions."""

Subscribers = namedtuple("Subscribers", [
    "st",    # (n_subs, 2) int32: call slot in progress, first data session (-1: none)
    "bits",  # one bit per subscriber: has a call or a data session (see mark)
])
"""What each subscriber is doing, as far as the network is concerned."""

Calls = namedtuple("Calls", [
    "free", "tv", "tvi",  # free-slot stack; tournament tree of the calls' end times
    "sess", "t0", "interval", "tries",  # session id, start time, KPI interval of the start, redials
    # leg a (the attempting subscriber) and leg b (the on-net counterpart, or -1): subscriber,
    # serving cell now, cell at the start, record id; the direction of leg a (b's is MT)
    "a_sub", "a_cell", "a_start", "a_rec", "a_dir",
    "b_sub", "b_cell", "b_start", "b_rec",
])
"""The voice calls in progress (slot pool)."""

Sessions = namedtuple("Sessions", [
    "free",  # free-slot stack
    "sub", "cell", "start", "t0",  # subscriber, cell now, cell at the start, start time
    "size", "up", "fin",  # downlink bytes, uplink bytes, finish tag (cell virtual time at the end)
    "rec", "sess",  # record and session ids
    "cnext", "cprev",  # the cell's list
    "snext", "sprev",  # the subscriber's list
])
"""The data sessions in progress (slot pool), each in its cell's and its subscriber's list."""

Redials = namedtuple("Redials", [
    "free", "tr", "tri",  # free-slot stack; tournament tree of the times they fall due
    "sub", "kind", "cp", "dur", "cell", "cp_cell", "tries",  # the attempt to repeat
])
"""Voice attempts waiting to be tried again (slot pool)."""

Kpis = namedtuple("Kpis", [
    "att", "comp", "block", "drop", "fail", "hin", "hfail", "sms", "dsess", "dblock",
    "busy_area", "busy_peak", "offered", "carried", "served", "sess_ms", "dpeak", "cpeak",
])
"""Per KPI interval and cell ([interval, cell]) accumulators (see sim.schema's cell KPIs)."""

Mobility = namedtuple("Mobility", ["t", "sub", "cell", "kind"])
"""The epoch's location events in time order (cell changes, periodic updates, attaches)."""

Attempts = namedtuple("Attempts", ["t", "sub", "kind", "cp", "dur", "vol", "cell", "cp_cell"])
"""The epoch's session attempts in time order: subscriber, kind, counterpart (-1: off-net),
duration (ms), data volume (bytes), the serving cells of the subscriber and of the counterpart."""


@njit(cache=True, _nrt=False, inline="always")
def mark(subs, s):
    """Keep the 'has a call or data session' bit of subscriber ``s`` in step with its state row."""
    w = s >> 6
    bit = np.uint64(1) << np.uint64(s & 63)
    if subs.st[s, 0] >= 0 or subs.st[s, 1] >= 0:
        subs.bits[w] |= bit
    else:
        subs.bits[w] &= ~bit


@njit(cache=True, _nrt=False, inline="always")
def is_active(subs, s):
    """Whether subscriber ``s`` has a call or data session (reads the bit set only)."""
    return (subs.bits[s >> 6] >> np.uint64(s & 63)) & np.uint64(1)
