"""Ground-truth labels: which rows of a run differ from its baseline (the same run without incidents).

The baseline runs first and logs a 64-bit hash of every row it emits from the first incident's
effect on (rows before are identical by construction: same seed, keyed draws). The run with the
incidents then looks each of its rows up in that multiset: a row found there (content equal,
record ids aside, since the counters shift) uses one copy of it up; a row not found is one the
incidents changed, removed or created, and gets an incident id. Two different rows share a hash
with probability about n^2 / 2^64: about 1e-3 for 10^8 rows, and such a collision can only leave
a changed row unlabelled, never label an unchanged one.
"""

from __future__ import annotations

import numpy as np

_K = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

# Columns that identify a row's content (record and session ids are counters: excluded).
CONTENT = {
    "cdr": ("sub", "cp", "svc", "dir", "t", "dur_s", "up", "down", "cell", "end", "out", "cause", "redial"),
    "locations": ("t", "sub", "cell", "reason"),
}


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * _M1
    h = h ^ (h >> np.uint64(27))
    h = h * _M2
    return h ^ (h >> np.uint64(31))


def row_hashes(cols: dict[str, np.ndarray], table: str) -> np.ndarray:
    """A 64-bit hash of each row's content."""
    names = CONTENT[table]
    n = len(cols[names[0]])
    h = np.full(n, np.uint64(len(names)), np.uint64)
    with np.errstate(over="ignore"):
        for name in names:
            a = np.ascontiguousarray(cols[name])
            v = a.view(np.uint64) if a.dtype.itemsize == 8 else a.astype(np.int64).view(np.uint64)
            h = _mix(h * _K + v)
    return h


class RowLog:
    """The baseline's rows emitted at or after ``since_ms``, as hashes per table."""

    def __init__(self, since_ms: int) -> None:
        self.since_ms = since_ms
        self.parts: dict[str, list[np.ndarray]] = {"cdr": [], "locations": []}

    def add(self, table: str, cols: dict[str, np.ndarray], t_emit_ms: int) -> None:
        if t_emit_ms > self.since_ms and len(cols[CONTENT[table][0]]):
            self.parts[table].append(row_hashes(cols, table))

    def frozen(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per table: sorted distinct hashes and how many rows carry each."""
        out = {}
        for table, parts in self.parts.items():
            h = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
            out[table] = np.unique(h, return_counts=True)
        return out


class RowMatcher:
    """Marks the rows of a run that are not in the baseline's multiset (consumed as matched)."""

    def __init__(self, log: RowLog) -> None:
        self.since_ms = log.since_ms
        self.ref = log.frozen()
        self.left = {t: counts.astype(np.int64) for t, (_, counts) in self.ref.items()}

    def changed(self, table: str, cols: dict[str, np.ndarray], t_emit_ms: int) -> np.ndarray:
        """Boolean mask of the rows (emitted in a slice ending at ``t_emit_ms``) that differ."""
        n = len(cols[CONTENT[table][0]])
        if t_emit_ms <= self.since_ms or n == 0:
            return np.zeros(n, bool)
        h = row_hashes(cols, table)
        uniq, _ = self.ref[table]
        left = self.left[table]
        idx = np.searchsorted(uniq, h)
        idx_c = np.minimum(idx, max(len(uniq) - 1, 0))
        found = (idx < len(uniq)) & (uniq[idx_c] == h) if len(uniq) else np.zeros(n, bool)
        # Within this batch, the k-th copy of a hash is matched when k < copies left; rows keep
        # their order (the first copies match first).
        order = np.argsort(h, kind="stable")
        hs = h[order]
        start = np.r_[0, np.flatnonzero(hs[1:] != hs[:-1]) + 1] if n else np.zeros(0, np.int64)
        rank_sorted = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
        rank = np.empty(n, np.int64)
        rank[order] = rank_sorted
        avail = np.where(found, left[idx_c] if len(uniq) else 0, 0)
        matched = found & (rank < avail)
        if len(uniq):
            np.subtract.at(left, idx_c[matched], 1)
        return ~matched
