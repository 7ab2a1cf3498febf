"""Record emission: the CDR and location rows the resolution writes, and their codes.

Rows are written straight into preallocated columns of their final dtypes (see :mod:`sim.schema`),
so building the Arrow tables copies nothing. Times are ms from the start of the run; a CDR's
duration is written in seconds.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

# Codes shared with sim.schema.
SVC_VOICE, SVC_SMS, SVC_DATA = 0, 1, 2
DIR_MO, DIR_MT = 0, 1
OUT_COMPLETED, OUT_BLOCKED, OUT_DROPPED, OUT_FAILED = 0, 1, 2, 3
(
    CAUSE_NONE,
    CAUSE_NO_CHANNEL,
    CAUSE_REMOTE_BLOCKED,
    CAUSE_HANDOVER,
    CAUSE_REMOTE_DROP,
    CAUSE_BUSY,
    CAUSE_SESSION_LIMIT,
    CAUSE_NO_COVERAGE,
    CAUSE_CELL_OUTAGE,
    CAUSE_REMOTE_NO_COVERAGE,
) = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
REASON_CELL_CHANGE, REASON_HANDOVER, REASON_EVENT, REASON_PERIODIC, REASON_ATTACH = 0, 1, 2, 3, 4

# The columns and their dtypes: CDR (record id, session id, subscriber, counterpart, service,
# direction, start, duration, uplink and downlink bytes, start cell, end cell, outcome, cause,
# redial try) and locations (time, subscriber, cell, reason).
CDR_DTYPES = (
    ("rec", np.int64), ("sess", np.int64), ("sub", np.int32), ("cp", np.int32), ("svc", np.int8),
    ("dir", np.int8), ("t", np.int64), ("dur_s", np.float64), ("up", np.int64), ("down", np.int64),
    ("cell", np.int32), ("end", np.int32), ("out", np.int8), ("cause", np.int8), ("redial", np.int8),
)
LOC_DTYPES = (("t", np.int64), ("sub", np.int32), ("cell", np.int32), ("reason", np.int8))

Cdr = namedtuple("Cdr", [name for name, _ in CDR_DTYPES])
"""The CDR columns being written (arrays of CDR_DTYPES)."""
Loc = namedtuple("Loc", [name for name, _ in LOC_DTYPES])
"""The location columns being written (arrays of LOC_DTYPES)."""


def empty_cdr(n: int) -> Cdr:
    return Cdr(*(np.empty(n, dtype) for _, dtype in CDR_DTYPES))


def empty_loc(n: int) -> Loc:
    return Loc(*(np.empty(n, dtype) for _, dtype in LOC_DTYPES))


@njit(cache=True, _nrt=False, inline="always")
def cdr_row(cdr, n, rec, sess, sub, cp, svc, direction, t, dur_ms, up, down, cell, end, outcome, cause, redial):
    """Write CDR row ``n``; return the next row."""
    cdr.rec[n] = rec
    cdr.sess[n] = sess
    cdr.sub[n] = sub
    cdr.cp[n] = cp
    cdr.svc[n] = svc
    cdr.dir[n] = direction
    cdr.t[n] = t
    cdr.dur_s[n] = dur_ms / 1000.0
    cdr.up[n] = up
    cdr.down[n] = down
    cdr.cell[n] = cell
    cdr.end[n] = end
    cdr.out[n] = outcome
    cdr.cause[n] = cause
    cdr.redial[n] = redial
    return n + 1


@njit(cache=True, _nrt=False, inline="always")
def loc_row(loc, n, t, sub, cell, reason):
    """Write location row ``n``; return the next row."""
    loc.t[n] = t
    loc.sub[n] = sub
    loc.cell[n] = cell
    loc.reason[n] = reason
    return n + 1


@njit(cache=True, _nrt=False)
def instant_legs(cdr, nc, rec_a, rec_b, sess, s, b, cp, direction, svc, t, c, cb, out_a, cause_a, out_b,
                 cause_b, tries):
    """Records of an attempt settled at once (an SMS, a call not connected): the attempting
    subscriber's leg in cell ``c`` and, when on-net, the counterpart ``b``'s leg in ``cb``."""
    nc = cdr_row(cdr, nc, rec_a, sess, s, cp if direction == DIR_MO else -1, svc, direction, t, 0, 0, 0,
                 c, c, out_a, cause_a, tries)
    if b >= 0:
        nc = cdr_row(cdr, nc, rec_b, sess, b, s, svc, DIR_MT, t, 0, 0, 0, cb, cb, out_b, cause_b, tries)
    return nc
