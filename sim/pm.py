"""PM counters: what an operator's performance-management system exports per cell and interval.

Three tables (``docs/schema.md``, section "PM counters"), named after the 3GPP measurement
families they mirror (TS 32.425 for E-UTRAN):

* ``pm_cells``: per PM interval (``output.pm_interval_s``) and cell: PRB utilisation (DL, UL),
  RRC-connected and active users (mean, max), user throughput (mean, 10th percentile), RRC
  establishment attempts and successes, outgoing handover attempts and successes, voice Erlangs,
  attempts and blocking;
* ``pm_relations``: per PM interval and neighbour relation (source and target cell): handover
  attempts and successes;
* ``voice_matrix``: per hour and pair of cells: voice calls and their Erlangs.

Time integrals (PRB, users, Erlangs, throughput mean) come from the resolver's accumulators,
which run at the PM interval (or finer, for the cell KPIs); counts come from the records as each
slice is emitted (:mod:`sim.kernels.pm`), so memory stays bounded by the intervals and the chunking
of the run changes nothing. The counting runs on its own thread (``telcosim-pm``, at lowered
priority, its kernels free of the GIL), off the resolution's critical path: one thread takes the
slices in the order they were emitted, so the result is the same as counting them in line.
Everything a checkpoint must carry is in :meth:`PmCounters.state`.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from . import schema
from .executors import lower_thread_priority
from .kernels import pm as kpm
from .kernels.records import CAUSE_HANDOVER
from .shards import HOUR_MS

# The uplink capacity of a cell against its downlink: the peak rates of a category-4 LTE UE,
# 51,024 against 150,752 bits per TTI (3GPP TS 36.306, Tables 4.1-1 and 4.1-2).
UL_DL_CAPACITY = 51_024 / 150_752
# Pieces of the sparse tables (relations, voice matrix) kept before they are merged.
_MERGE_EVERY = 256
# Slices queued for the counting thread before the emitter waits (each holds its rows).
_QUEUED = 8


class _Sparse:
    """Sums of integer columns by an int64 key, gathered from slices and merged now and then."""

    def __init__(self, n_cols: int) -> None:
        self.keys: list[np.ndarray] = [np.zeros(0, np.int64)]
        self.cols: list[list[np.ndarray]] = [[np.zeros(0, np.int64)] for _ in range(n_cols)]

    def add(self, keys: np.ndarray, *cols: np.ndarray) -> None:
        if not len(keys):
            return
        self.keys.append(keys)
        for acc, c in zip(self.cols, cols, strict=True):
            acc.append(c)
        if len(self.keys) > _MERGE_EVERY:
            self.merge()

    def merge(self) -> tuple[np.ndarray, list[np.ndarray]]:
        keys = np.concatenate(self.keys)
        uniq, inv = np.unique(keys, return_inverse=True)
        # integer sums in float64 are exact below 2**53
        sums = [np.bincount(inv, weights=np.concatenate(acc), minlength=len(uniq)).astype(np.int64)
                for acc in self.cols]
        self.keys = [uniq]
        self.cols = [[s] for s in sums]
        return uniq, sums

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        keys, sums = self.merge()
        return {f"{prefix}.keys": keys, **{f"{prefix}.{i}": s for i, s in enumerate(sums)}}

    def load(self, arrays: dict[str, np.ndarray], prefix: str) -> None:
        self.keys = [arrays[f"{prefix}.keys"]]
        self.cols = [[arrays[f"{prefix}.{i}"]] for i in range(len(self.cols))]


class PmCounters:
    """The PM counters of one run, gathered as its rows are emitted."""

    def __init__(self, n_subs: int, n_cells: int, window_ms: int, pm_ms: int, radio_bpms: np.ndarray,
                 up_share: float) -> None:
        self.n_cells = n_cells
        self.pm_ms = pm_ms
        self.window_ms = window_ms
        self.n_pm = window_ms // pm_ms
        self.n_hours = window_ms // HOUR_MS
        self.up_share = up_share
        self.radio0 = np.asarray(radio_bpms, np.float64).copy()
        shape = (self.n_pm, n_cells)
        self.rrc_att = np.zeros(shape, np.int64)
        self.rrc_succ = np.zeros(shape, np.int64)
        self.thp_p10 = np.full(shape, np.nan)
        self.last_cell = np.full(n_subs, -1, np.int32)
        # Throughput samples of intervals not yet closed, and the first such interval.
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.open_from = 0
        # Radio capacity changes: (t_ms, cells, bytes per ms), in time order.
        self.radio_changes: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.relations = _Sparse(2)  # handover attempts, successes
        self.matrix = _Sparse(3)     # calls, connected calls, holding ms
        self._pool: ThreadPoolExecutor | None = None
        self._queued: deque[Future] = deque()

    # --- gathering --------------------------------------------------------------------------

    def add(self, cdr: dict, loc: dict | None, t_emit: int) -> None:
        """Count one emitted slice (on the counting thread; the columns are not changed after
        they are emitted); everything before ``t_emit`` is resolved."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telcosim-pm",
                                            initializer=lower_thread_priority)
        while self._queued and (self._queued[0].done() or len(self._queued) >= _QUEUED):
            self._queued.popleft().result()  # surfaces an error of the counting
        self._queued.append(self._pool.submit(self._add, cdr, loc, t_emit))

    def sync(self) -> None:
        """Wait until every slice handed to :meth:`add` is counted."""
        while self._queued:
            self._queued.popleft().result()

    def close(self) -> None:
        """Stop the counting thread (after :meth:`sync`, or to abandon the run)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._queued.clear()

    def _add(self, cdr: dict, loc: dict | None, t_emit: int) -> None:
        n = len(cdr["t"])
        if n:
            self._cdr(cdr, n)
        if loc is not None and len(loc["t"]):
            self._loc(loc, cdr)
        self._close(t_emit)

    def _cdr(self, c: dict, n: int) -> None:
        t_int = np.empty(n, np.int64)
        t_cell = np.empty(n, np.int32)
        t_mbps = np.empty(n, np.float64)
        k = kpm.rrc_and_throughput(c["t"], c["dur_s"], c["down"], c["svc"], c["out"], c["cause"], c["cell"],
                                   c["end"], np.int64(self.pm_ms), np.int64(self.n_pm), self.rrc_att, self.rrc_succ,
                                   t_int, t_cell, t_mbps)
        if k:
            self.pending.append((t_int[:k], t_cell[:k], t_mbps[:k]))
        key = np.empty(n, np.int64)
        ok = np.empty(n, np.int64)
        hold = np.empty(n, np.int64)
        m = kpm.voice_pairs(c["sess"], c["t"], c["dur_s"], c["svc"], c["dir"], c["cp"], c["cell"], c["out"],
                            np.int64(HOUR_MS), np.int64(self.n_cells), key, ok, hold)
        if m:
            self.matrix.add(key[:m], np.ones(m, np.int64), ok[:m], hold[:m])

    def _loc(self, loc: dict, cdr: dict) -> None:
        fail = cdr["cause"] == CAUSE_HANDOVER
        if fail.any():
            t_end = cdr["t"][fail] + np.round(cdr["dur_s"][fail] * 1000.0).astype(np.int64)
            fail_keys = np.sort((cdr["sub"][fail].astype(np.int64) << kpm.T_BITS) | t_end)
        else:
            fail_keys = np.zeros(0, np.int64)
        n = len(loc["t"])
        src = np.empty(n, np.int32)
        dst = np.empty(n, np.int32)
        k_out = np.empty(n, np.int64)
        failed = np.empty(n, np.bool_)
        m = kpm.handovers(loc["t"], loc["sub"], loc["cell"], loc["reason"], self.last_cell, fail_keys,
                          np.int64(self.pm_ms), np.int64(self.n_pm), src, dst, k_out, failed)
        if m:
            c = np.int64(self.n_cells)
            key = (k_out[:m] * c + src[:m]) * c + dst[:m]
            self.relations.add(key, np.ones(m, np.int64), (~failed[:m]).astype(np.int64))

    def _close(self, t_emit: int) -> None:
        """The 10th percentile of throughput for every interval that ended by ``t_emit``."""
        upto = min((t_emit - 1) // self.pm_ms, self.n_pm)
        if upto <= self.open_from:
            return
        if self.pending:
            k = np.concatenate([p[0] for p in self.pending])
            c = np.concatenate([p[1] for p in self.pending])
            v = np.concatenate([p[2] for p in self.pending])
            rest = kpm.p10_into(k, c, v, np.int64(upto), np.int64(self.n_cells), self.thp_p10)
            self.pending = [(k[rest], c[rest], v[rest])] if rest.any() else []
        self.open_from = upto

    def change(self, t_ms: int, cells: np.ndarray, radio_bpms: np.ndarray) -> None:
        """A network change at ``t_ms``: the cells' radio capacity from then on."""
        self.radio_changes.append((int(t_ms), np.asarray(cells, np.int64).copy(),
                                   np.asarray(radio_bpms, np.float64).copy()))

    # --- checkpoints ------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """Everything a resumed run needs, as arrays."""
        self.sync()
        k = [p[0] for p in self.pending] or [np.zeros(0, np.int64)]
        rc_t = np.array([r[0] for r in self.radio_changes], np.int64)
        rc_n = np.array([len(r[1]) for r in self.radio_changes], np.int64)
        rc_c = np.concatenate([r[1] for r in self.radio_changes]) if self.radio_changes else np.zeros(0, np.int64)
        rc_b = np.concatenate([r[2] for r in self.radio_changes]) if self.radio_changes else np.zeros(0)
        return {"rrc_att": self.rrc_att, "rrc_succ": self.rrc_succ, "thp_p10": self.thp_p10,
                "last_cell": self.last_cell, "open_from": np.array(self.open_from, np.int64),
                "pend.k": np.concatenate(k),
                "pend.c": np.concatenate([p[1] for p in self.pending] or [np.zeros(0, np.int32)]),
                "pend.v": np.concatenate([p[2] for p in self.pending] or [np.zeros(0)]),
                "rc.t": rc_t, "rc.n": rc_n, "rc.c": rc_c, "rc.b": rc_b,
                **self.relations.state("rel"), **self.matrix.state("mat")}

    def load(self, a: dict[str, np.ndarray]) -> None:
        self.rrc_att, self.rrc_succ, self.thp_p10 = a["rrc_att"], a["rrc_succ"], a["thp_p10"]
        self.last_cell, self.open_from = a["last_cell"], int(a["open_from"])
        self.pending = [(a["pend.k"], a["pend.c"], a["pend.v"])] if len(a["pend.k"]) else []
        cuts = np.concatenate([[0], np.cumsum(a["rc.n"])])
        self.radio_changes = [(int(t), a["rc.c"][lo:hi], a["rc.b"][lo:hi])
                              for t, lo, hi in zip(a["rc.t"], cuts[:-1], cuts[1:], strict=True)]
        self.relations.load(a, "rel")
        self.matrix.load(a, "mat")

    # --- tables -----------------------------------------------------------------------------

    def radio_bytes(self) -> np.ndarray:
        """The radio capacity available in each interval and cell (bytes): the capacity's time
        integral, following the network changes."""
        pm, n_pm = self.pm_ms, self.n_pm
        avail = np.repeat(self.radio0[None, :] * pm, n_pm, axis=0)
        cur = self.radio0.copy()
        starts = np.arange(n_pm, dtype=np.int64) * pm
        for t, cells, bpms in self.radio_changes:
            if t >= self.window_ms:
                break
            after = np.clip(starts + pm - np.maximum(starts, t), 0, None).astype(np.float64)  # ms of each interval from t
            avail[:, cells] += after[:, None] * (bpms - cur[cells])[None, :]
            cur[cells] = bpms
        return np.clip(avail, 0.0, None)

    def tables(self, sim, fine: dict[str, np.ndarray], tick_ms: int) -> dict[str, pa.Table]:
        """The three PM tables from the gathered counts and the resolver's accumulators ``fine``
        ([interval, cell] at ``tick_ms``, which divides the PM interval)."""
        self.sync()
        self.close()
        self._close(self.window_ms + 1)
        g = self.pm_ms // tick_ms
        c = self.n_cells
        k = {name: a.reshape(self.n_pm, g, c) for name, a in fine.items()}
        add = {name: k[name].sum(axis=1) for name in ("att", "block", "busy_area", "served", "sess_ms")}
        peak = {name: k[name].max(axis=1) for name in ("dpeak", "cpeak")}
        served = add["served"]
        avail = self.radio_bytes()
        with np.errstate(divide="ignore", invalid="ignore"):
            prb_dl = np.where(avail > 0, np.minimum(served / avail, 1.0), 0.0)
            up = served * (self.up_share / (1.0 - self.up_share)) if self.up_share < 1.0 else served * 0.0
            prb_ul = np.where(avail > 0, np.minimum(up / (avail * UL_DL_CAPACITY), 1.0), 0.0)
            thp = served * 8 / 1e6 / (add["sess_ms"] / 1000.0)
            blocking = add["block"] / add["att"]
        active_mean = add["sess_ms"] / self.pm_ms
        erl = add["busy_area"] / self.pm_ms
        rel_keys, (ho_att, ho_succ) = self.relations.merge()
        r_int, rest = np.divmod(rel_keys, np.int64(c) * c)
        r_src, r_dst = np.divmod(rest, np.int64(c))
        out_att = np.zeros((self.n_pm, c), np.int64)
        out_succ = np.zeros((self.n_pm, c), np.int64)
        np.add.at(out_att, (r_int, r_src), ho_att)
        np.add.at(out_succ, (r_int, r_src), ho_succ)
        start = np.repeat(np.arange(self.n_pm, dtype=np.int64) * self.pm_ms, c)
        cell = np.tile(np.arange(c, dtype=np.int32), self.n_pm)
        i32 = lambda a: pa.array(a.ravel().astype(np.int32))  # noqa: E731
        f64 = lambda a: pa.array(a.ravel().astype(np.float64))  # noqa: E731
        thp_f, p10_f, blk_f = thp.ravel(), self.thp_p10.ravel(), blocking.ravel()
        cells = pa.Table.from_arrays([
            sim._ts(start), pa.array(cell),
            f64(prb_dl), f64(prb_ul),
            f64(erl + active_mean), i32(peak["cpeak"]), f64(active_mean), i32(peak["dpeak"]),
            pa.array(thp_f, mask=~np.isfinite(thp_f)), pa.array(p10_f, mask=np.isnan(p10_f)),
            f64(served / 1e6), i32(self.rrc_att), i32(self.rrc_succ), i32(out_att), i32(out_succ),
            f64(erl), i32(add["att"]), i32(add["att"] - add["block"]), pa.array(blk_f, mask=~np.isfinite(blk_f)),
        ], schema=schema.pm_cells_schema(sim.tz))
        relations = pa.Table.from_arrays([
            sim._ts(r_int * self.pm_ms), pa.array(r_src.astype(np.int32)), pa.array(r_dst.astype(np.int32)),
            i32(ho_att), i32(ho_succ),
        ], schema=schema.pm_relations_schema(sim.tz))
        m_keys, (calls, conn, hold) = self.matrix.merge()
        c1 = np.int64(c + 1)
        m_hour, rest = np.divmod(m_keys, c1 * c1)
        m_a, m_b = np.divmod(rest, c1)
        m_a, m_b = (m_a - 1).astype(np.int32), (m_b - 1).astype(np.int32)
        matrix = pa.Table.from_arrays([
            sim._ts(m_hour * HOUR_MS), pa.array(m_a, mask=m_a < 0), pa.array(m_b, mask=m_b < 0),
            i32(calls), i32(conn), pa.array(hold / 1000.0), pa.array(hold / HOUR_MS),
        ], schema=schema.voice_matrix_schema(sim.tz))
        return {"pm_cells": cells, "pm_relations": relations, "voice_matrix": matrix}


__all__ = ["UL_DL_CAPACITY", "PmCounters"]
