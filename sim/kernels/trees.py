"""Min tournament trees: the next event among many slots (calls ending, data completions per cell,
redials falling due) in O(1) to read and O(log n) to update.

A tree of ``p`` leaves (a power of two) is two arrays of ``2p``: node values ``tt`` and the leaf
each node's value comes from ``ti``; node 1 is the root (the minimum and its leaf), leaf ``k`` is
node ``p + k``. Ties go to the left, i.e. the lower leaf, so the order of events is deterministic.
"""

from __future__ import annotations

from numba import njit

from .state import INF


@njit(cache=True, _nrt=False, inline="always")
def tree_set(tt, ti, leaf, value):
    """Set a leaf of the min tournament tree and repair the path to the root, stopping as soon
    as a node's winner does not change (most updates touch a few levels only)."""
    p = tt.shape[0] // 2
    j = p + leaf
    tt[j] = value
    ti[j] = leaf
    j //= 2
    while j >= 1:
        a = 2 * j
        b = a + 1
        if tt[b] < tt[a]:
            wt = tt[b]
            wi = ti[b]
        else:
            wt = tt[a]
            wi = ti[a]
        if wt == tt[j] and wi == ti[j]:
            break
        tt[j] = wt
        ti[j] = wi
        j //= 2


@njit(cache=True, _nrt=False)
def tree_init(tt, ti):
    """Fill a tournament tree with INF everywhere (leaves hold their own index)."""
    p = tt.shape[0] // 2
    for j in range(p, 2 * p):
        tt[j] = INF
        ti[j] = j - p
    for j in range(p - 1, 0, -1):
        tt[j] = INF
        ti[j] = ti[2 * j]
