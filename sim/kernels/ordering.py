"""Stable time ordering of an epoch's events.

Event times of one epoch lie in ``[t0, t0 + span)`` ms. They are ordered by a stable radix sort
over the millisecond offsets, in two passes of about ten bits each (a quarter hour is 900,000 ms,
20 bits): two small bucket tables that stay in cache instead of one counter per millisecond. Being
stable, it keeps input order (subscriber, then each subscriber's own sequence) among equal times,
which makes the network-wide merge deterministic: the permutation is exactly that of a stable
counting sort by time.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def stable_time_order_and_times(t: np.ndarray, t0: np.int64, span: np.int64):
    """The permutation that sorts ``t`` (all in ``[t0, t0 + span)``) stably, and ``t`` in that
    order (``t[order]``), written by the sort's second pass from the offsets it already holds
    instead of gathered afterwards. Pass 1
    carries each event's index and offset ``t - t0`` (int32: ``span`` < 2^31 ms, 24 days)."""
    if span >= np.int64(1) << 31:
        raise ValueError("stable_time_order_and_times: span must be under 2**31")
    n = t.shape[0]
    order = np.empty(n, dtype=np.int32)  # an epoch holds fewer than 2**31 events
    t_sorted = np.empty(n, dtype=t.dtype)
    bits = 1
    while (np.int64(1) << bits) < span:
        bits += 1
    lo = (bits + 1) // 2
    mask = (np.int64(1) << lo) - 1
    c_lo = np.zeros((np.int64(1) << lo) + 1, dtype=np.int64)
    c_hi = np.zeros((np.int64(1) << (bits - lo)) + 1, dtype=np.int64)
    for i in range(n):
        k = t[i] - t0
        c_lo[(k & mask) + 1] += 1
        c_hi[(k >> lo) + 1] += 1
    for d in range(1, c_lo.shape[0]):
        c_lo[d] += c_lo[d - 1]
    for d in range(1, c_hi.shape[0]):
        c_hi[d] += c_hi[d - 1]
    # Pass 1, by the low digit: the events' indices and offsets, in that order.
    tmp_i = np.empty(n, dtype=np.int32)
    tmp_k = np.empty(n, dtype=np.int32)
    for i in range(n):
        k = t[i] - t0
        d = k & mask
        p = c_lo[d]
        c_lo[d] = p + 1
        tmp_i[p] = i
        tmp_k[p] = k
    # Pass 2, by the high digit (stable: ties keep the order of pass 1, hence of the input).
    for m in range(n):
        k = np.int64(tmp_k[m])
        d = k >> lo
        p = c_hi[d]
        c_hi[d] = p + 1
        order[p] = tmp_i[m]
        t_sorted[p] = t0 + k
    return order, t_sorted


@njit(cache=True, nogil=True)
def take(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``a[order]`` (a gather loop: quicker than numpy's fancy indexing for these columns, and
    it releases the GIL)."""
    out = np.empty(order.shape[0], dtype=a.dtype)
    for i in range(order.shape[0]):
        out[i] = a[order[i]]
    return out
