"""Stable time ordering of an epoch's events.

Event times of one epoch lie in ``[t0, t0 + span)`` ms, so a counting sort over the millisecond
offsets orders them in linear time and, being stable, keeps input order (subscriber, then each
subscriber's own sequence) among equal times, which makes the network-wide merge deterministic.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def stable_time_order(t: np.ndarray, t0: np.int64, span: np.int64) -> np.ndarray:
    """The permutation that sorts ``t`` (all in ``[t0, t0 + span)``) stably."""
    counts = np.zeros(span + 1, dtype=np.int64)
    for i in range(t.shape[0]):
        counts[t[i] - t0 + 1] += 1
    for k in range(1, span + 1):
        counts[k] += counts[k - 1]
    order = np.empty(t.shape[0], dtype=np.int32)  # an epoch holds fewer than 2**31 events
    for i in range(t.shape[0]):
        k = t[i] - t0
        order[counts[k]] = i
        counts[k] += 1
    return order
