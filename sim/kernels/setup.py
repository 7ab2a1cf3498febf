"""Kernels of a run's set-up: the neighbour graph of the network and the population's arrays.

Single passes over arrays for :mod:`telcosim.sim.network` and :mod:`telcosim.sim.population`.
The random draws stay with the numpy Generators of the callers (named streams, fixed call order
and sizes), so the arrays depend only on the seed; float operations keep a fixed order (no
fastmath, so no contraction into fused multiply-adds), so they are the same on every machine. The
tests check each kernel against a plain numpy or networkx statement of its rule. The per-row
kernels take a ``[lo, hi)`` range of rows and release the GIL, so :func:`split` can run them on
several threads; their results do not depend on the split.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from . import cores
from .rng import _GOLDEN, _INV53, _S11, mix64

_SALT0 = np.uint64(0x632BE59BD9B4E019)
_SALT1 = np.uint64(0x8CB92BA72F3D8DD7)

# Below this many rows a kernel runs on the calling thread only.
_SPLIT_MIN = 1 << 16


def split(kernel, n: int, *args) -> None:
    """Run ``kernel(lo, hi, *args)`` over ``[0, n)`` in one contiguous range per core (one range
    when ``n`` is small). The kernels write disjoint slices of their outputs, so the result is the
    same for any split."""
    parts = min(cores(), max(1, n // _SPLIT_MIN))
    if parts <= 1:
        kernel(0, n, *args)
        return
    bounds = [n * k // parts for k in range(parts + 1)]
    with ThreadPoolExecutor(parts - 1, thread_name_prefix="telcosim-setup") as pool:
        futures = [pool.submit(kernel, bounds[k], bounds[k + 1], *args) for k in range(1, parts)]
        kernel(bounds[0], bounds[1], *args)
        for f in futures:
            f.result()


# --- network ------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _sort_run(a: np.ndarray, lo: int, hi: int) -> None:
    """Sort ``a[lo:hi]`` in place: an insertion sort, for the short runs here (a node's edges, a
    cell's two-hop neighbourhood: tens of values). Sorted values are the same as ``np.sort``'s;
    using it instead spares compiling numba's quicksort (a few seconds of a first run)."""
    for i in range(lo + 1, hi):
        x = a[i]
        j = i - 1
        while j >= lo and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


@njit(cache=True, nogil=True)
def median_edge_length(n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """For each node, the median length of its edges (0.0 without edges), as ``np.median`` gives
    it: the middle value, or the mean ``(x + y) / 2`` of the two middle values."""
    deg = np.zeros(n + 1, np.int64)
    for k in range(a.shape[0]):
        deg[a[k] + 1] += 1
        deg[b[k] + 1] += 1
    for c in range(n):
        deg[c + 1] += deg[c]
    fill = deg[:-1].copy()
    ws = np.empty(2 * a.shape[0], np.float64)
    for k in range(a.shape[0]):
        ws[fill[a[k]]] = w[k]
        fill[a[k]] += 1
        ws[fill[b[k]]] = w[k]
        fill[b[k]] += 1
    out = np.zeros(n, np.float64)
    for c in range(n):
        lo, hi = deg[c], deg[c + 1]
        k = hi - lo
        if k == 0:
            continue
        _sort_run(ws, lo, hi)
        if k % 2 == 1:
            out[c] = ws[lo + k // 2]
        else:
            out[c] = (ws[lo + k // 2 - 1] + ws[lo + k // 2]) / 2.0
    return out


@njit(cache=True, nogil=True)
def kruskal(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kruskal's spanning forest over edges already in processing order: the mask of the edges
    that join two components when their turn comes (which edges those are depends only on the
    order, not on how the components are kept)."""
    parent = np.arange(n)
    taken = np.zeros(a.shape[0], np.bool_)
    for k in range(a.shape[0]):
        ra = a[k]
        while parent[ra] != ra:
            parent[ra] = parent[parent[ra]]
            ra = parent[ra]
        rb = b[k]
        while parent[rb] != rb:
            parent[rb] = parent[parent[rb]]
            rb = parent[rb]
        if ra != rb:
            parent[ra] = rb
            taken[k] = True
    return taken


# --- population ---------------------------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _collect(m, c, mark, out, pos):
    """Append node ``m`` to ``c``'s neighbourhood at ``pos`` unless already there; the new end."""
    if mark[m] != c:
        mark[m] = c
        out[pos] = m
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def two_hop(ptr: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each node's neighbourhood within two hops (itself included), sorted."""
    n = ptr.shape[0] - 1
    mark = np.full(n, -1, np.int64)
    out_ptr = np.zeros(n + 1, np.int64)
    # Upper bound of the output size, then one pass that collects, sorts and counts.
    bound = 0
    for c in range(n):
        bound += 1
        for k in range(ptr[c], ptr[c + 1]):
            m = idx[k]
            bound += 1 + ptr[m + 1] - ptr[m]
    out = np.empty(bound, np.int32)
    pos = 0
    for c in range(n):
        start = pos
        mark[c] = c
        out[pos] = c
        pos += 1
        for k in range(ptr[c], ptr[c + 1]):
            m = idx[k]
            pos = _collect(m, c, mark, out, pos)
            for j in range(ptr[m], ptr[m + 1]):
                pos = _collect(idx[j], c, mark, out, pos)
        _sort_run(out, start, pos)
        out_ptr[c + 1] = pos
    return out_ptr, out[:pos].copy()


@njit(cache=True, nogil=True)
def own_site(site: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each cell's other cells on its site, in cell order (the cell itself when its site
    has no other)."""
    n = site.shape[0]
    # The cells in site order, ties in cell order (a counting sort: what a stable argsort gives),
    # and where each site's run starts; first[c], last[c]: the run of c's site.
    n_sites = site.max() + 1 if n > 0 else 0
    start = np.zeros(n_sites + 1, np.int64)
    for c in range(n):
        start[site[c] + 1] += 1
    for k in range(n_sites):
        start[k + 1] += start[k]
    order = np.empty(n, np.int64)
    fill = start[:-1].copy()
    for c in range(n):
        order[fill[site[c]]] = c
        fill[site[c]] += 1
    first = np.empty(n, np.int64)
    last = np.empty(n, np.int64)
    for c in range(n):
        first[c] = start[site[c]]
        last[c] = start[site[c] + 1]
    ptr = np.zeros(n + 1, np.int64)
    for c in range(n):
        k = last[c] - first[c] - 1
        ptr[c + 1] = ptr[c] + (k if k > 0 else 1)
    idx = np.empty(ptr[n], np.int32)
    for c in range(n):
        pos = ptr[c]
        if last[c] - first[c] <= 1:
            idx[pos] = c
            continue
        for j in range(first[c], last[c]):
            k = order[j]
            if k != c:
                idx[pos] = k
                pos += 1
    return ptr, idx


@njit(cache=True, nogil=True)
def inhabited_neighbourhood(ptr: np.ndarray, idx: np.ndarray, res_ptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each cell followed by its neighbours, keeping those with residents (the cell itself
    when none has any); order kept."""
    n = ptr.shape[0] - 1
    out_ptr = np.zeros(n + 1, np.int64)
    out = np.empty(n + idx.shape[0], np.int32)
    pos = 0
    for c in range(n):
        start = pos
        if res_ptr[c + 1] > res_ptr[c]:
            out[pos] = c
            pos += 1
        for k in range(ptr[c], ptr[c + 1]):
            m = idx[k]
            if res_ptr[m + 1] > res_ptr[m]:
                out[pos] = m
                pos += 1
        if pos == start:
            out[pos] = c
            pos += 1
        out_ptr[c + 1] = pos
    return out_ptr, out[:pos].copy()


@njit(cache=True, nogil=True, inline="always")
def _weighted_member(cum: np.ndarray, ptr: np.ndarray, r: np.int64, u: float) -> np.int64:
    """Position of the member of CSR row ``r`` hit by the uniform ``u`` on the row's stretch of the
    cumulative weights: what ``np.searchsorted(cum, lo + u * (hi - lo), side='right')`` clipped
    to the row's last member gives. The row's earlier entries are all <= lo <= target, so the
    search over the row alone finds the same position."""
    s, e = ptr[r], ptr[r + 1]
    lo = cum[s - 1] if s > 0 else 0.0
    target = lo + u * (cum[e - 1] - lo)
    a, b = s, e
    while a < b:
        mid = (a + b) >> 1
        if cum[mid] > target:
            b = mid
        else:
            a = mid + 1
    return a if a < e - 1 else e - 1


@njit(cache=True, nogil=True)
def draw_weighted(lo: int, hi: int, cum: np.ndarray, ptr: np.ndarray, idx: np.ndarray,
                  rows: np.ndarray, u: np.ndarray, out: np.ndarray) -> None:
    """``out[j] = idx[member of row rows[j] by u[j]]`` for j in [lo, hi) (see _weighted_member)."""
    for j in range(lo, hi):
        out[j] = idx[_weighted_member(cum, ptr, np.int64(rows[j]), u[j])]


@njit(cache=True, nogil=True)
def draw_uniform(lo: int, hi: int, ptr: np.ndarray, idx: np.ndarray, rows: np.ndarray, u: np.ndarray,
                 out: np.ndarray) -> None:
    """``out[j]`` = the member ``min(int(u[j] * size), size - 1)`` of row ``rows[j]``."""
    for j in range(lo, hi):
        r = rows[j]
        size = ptr[r + 1] - ptr[r]
        k = np.int64(u[j] * size)
        out[j] = idx[ptr[r] + (k if k < size - 1 else size - 1)]


@njit(cache=True, nogil=True)
def stable_order(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """The permutation that sorts ``keys`` (in ``[0, n_keys)``) stably: a counting sort."""
    start = np.zeros(n_keys + 1, np.int64)
    for i in range(keys.shape[0]):
        start[keys[i] + 1] += 1
    for k in range(n_keys):
        start[k + 1] += start[k]
    order = np.empty(keys.shape[0], np.int32)
    for i in range(keys.shape[0]):
        k = keys[i]
        order[start[k]] = i
        start[k] += 1
    return order


@njit(cache=True, nogil=True)
def local_cells(lo: int, hi: int, src: np.ndarray, home: np.ndarray, cum: np.ndarray, one_ptr: np.ndarray,
                one_idx: np.ndarray, u: np.ndarray, cell: np.ndarray) -> None:
    """Each tie's local cell: a member of the CSR row of its proposer's home cell, by ``u`` on the
    row's cumulative weights (see _weighted_member)."""
    for j in range(lo, hi):
        cell[j] = one_idx[_weighted_member(cum, one_ptr, np.int64(home[src[j]]), u[j])]


@njit(cache=True, nogil=True)
def local_contacts(lo: int, hi: int, cell: np.ndarray, res_ptr: np.ndarray, by_home: np.ndarray, u: np.ndarray,
                   dst: np.ndarray) -> None:
    """Each tie's local contact: the resident ``min(int(u * size), max(size - 1, 0))`` of its cell
    (residents listed by ``by_home`` from ``res_ptr``; clipped to the last subscriber)."""
    n = by_home.shape[0]
    for j in range(lo, hi):
        base = res_ptr[cell[j]]
        size = res_ptr[cell[j] + 1] - base
        pick = np.int64(u[j] * size)
        top = size - 1 if size > 0 else 0
        if pick > top:
            pick = top
        at = base + pick
        dst[j] = by_home[at if at < n - 1 else n - 1]


@njit(cache=True, nogil=True)
def local_or_global(lo: int, hi: int, u: np.ndarray, local_share: float, global_dst: np.ndarray,
                    dst: np.ndarray) -> None:
    """In place: ``dst`` (the local contact) where ``u < local_share``, else ``global_dst``."""
    for j in range(lo, hi):
        if not u[j] < local_share:
            dst[j] = global_dst[j]


def symmetric_csr(n: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the undirected graph of the pairs ``(src, dst)`` with ``src != dst``: each row's
    members sorted and distinct, as sorting and deduplicating the keys ``a * n + b`` of both
    directions gives. Each pass is split by rows (every part reads all pairs and keeps its rows)."""
    deg = np.zeros(n + 1, np.int64)
    split(_pair_degrees, n, src, dst, deg)
    np.cumsum(deg, out=deg)
    both = np.empty(deg[n], np.int32)
    split(_pair_rows, n, src, dst, deg, both)
    ptr = np.zeros(n + 1, np.int64)
    split(_sorted_distinct, n, deg, both, ptr)
    np.cumsum(ptr, out=ptr)
    idx = np.empty(ptr[n], np.int32)
    split(_copy_rows, n, deg, ptr, both, idx)
    return ptr, idx


@njit(cache=True, nogil=True)
def _pair_degrees(lo: int, hi: int, src: np.ndarray, dst: np.ndarray, deg: np.ndarray) -> None:
    """``deg[c + 1]`` = the pairs with an end ``c`` (in [lo, hi)) and distinct ends."""
    for j in range(src.shape[0]):
        s, d = src[j], dst[j]
        if s != d:
            if lo <= s < hi:
                deg[s + 1] += 1
            if lo <= d < hi:
                deg[d + 1] += 1


@njit(cache=True, nogil=True)
def _pair_rows(lo: int, hi: int, src: np.ndarray, dst: np.ndarray, start: np.ndarray, both: np.ndarray) -> None:
    """The other end of each pair, written in the row of each end in [lo, hi) from ``start``."""
    fill = start[lo:hi].copy()
    for j in range(src.shape[0]):
        s, d = src[j], dst[j]
        if s != d:
            if lo <= s < hi:
                both[fill[s - lo]] = d
                fill[s - lo] += 1
            if lo <= d < hi:
                both[fill[d - lo]] = s
                fill[d - lo] += 1


@njit(cache=True, nogil=True)
def _sorted_distinct(lo: int, hi: int, start: np.ndarray, both: np.ndarray, count: np.ndarray) -> None:
    """Sort rows [lo, hi) in place and move their distinct members to the front; ``count[c + 1]``
    is how many."""
    for c in range(lo, hi):
        a, b = start[c], start[c + 1]
        row = both[a:b]
        # Insertion sort: rows are short (the mean degree is a handful of contacts).
        for i in range(1, b - a):
            v = row[i]
            k = i - 1
            while k >= 0 and row[k] > v:
                row[k + 1] = row[k]
                k -= 1
            row[k + 1] = v
        distinct = 0
        for i in range(b - a):
            if i == 0 or row[i] != row[i - 1]:
                row[distinct] = row[i]
                distinct += 1
        count[c + 1] = distinct


@njit(cache=True, nogil=True)
def _copy_rows(lo: int, hi: int, start: np.ndarray, ptr: np.ndarray, both: np.ndarray, idx: np.ndarray) -> None:
    for c in range(lo, hi):
        k = ptr[c + 1] - ptr[c]
        idx[ptr[c]:ptr[c + 1]] = both[start[c]:start[c] + k]


@njit(cache=True, nogil=True)
def pair_uniforms(lo: int, hi: int, ptr: np.ndarray, idx: np.ndarray, key: np.uint64, h0: np.ndarray,
                  h1: np.ndarray) -> None:
    """Two uniforms per unordered pair ``(row, idx[k])`` of a CSR, for the entries ``k`` in [lo, hi),
    written at ``k - lo``: the SplitMix64 hash of ``low * golden ^ (high + key)``, salted twice, as
    ``((v >> 11) + 0.5) / 2**53``."""
    r = np.searchsorted(ptr, lo, side="right") - 1  # the row of entry lo
    for k in range(lo, hi):
        while ptr[r + 1] <= k:
            r += 1
        x, y = np.uint64(r), np.uint64(idx[k])
        if y < x:
            x, y = y, x
        z = (x * _GOLDEN) ^ (y + key)
        h0[k - lo] = (np.float64(mix64(z ^ _SALT0) >> _S11) + 0.5) * _INV53
        h1[k - lo] = (np.float64(mix64(z ^ _SALT1) >> _S11) + 0.5) * _INV53


@njit(cache=True, nogil=True)
def row_cumulative(ptr: np.ndarray, w: np.ndarray) -> None:
    """In place: the running sum of ``w`` over the whole array (sequential, as ``np.cumsum``), less
    the sum up to the start of each row."""
    n = ptr.shape[0] - 1
    acc = 0.0
    for k in range(w.shape[0]):
        acc += w[k]
        w[k] = acc
    for c in range(n - 1, -1, -1):
        s, e = ptr[c], ptr[c + 1]
        if s > 0 and e > s:
            base = w[s - 1]
            for k in range(s, e):
                w[k] -= base
