"""The resolver: the persistent state of the network resolution, and the calls into its kernels.

The state is a handful of typed structures (:mod:`sim.kernels.state`): the cells' coverage, voice
channels and data sharing, the subscribers, the three slot pools (calls, data sessions, waiting
redials), the KPI accumulators and the counters. They persist across epochs; between two calls
:meth:`Resolver.ensure_slots` grows the slot pools so that the kernels never run out of slots.
"""

from __future__ import annotations

import math

import numpy as np

from .kernels import demand, resolution
from .kernels.records import CDR_DTYPES, LOC_DTYPES, empty_cdr, empty_loc
from .kernels.state import (
    C_FREE_CALLS,
    C_FREE_DATA,
    C_FREE_REDIALS,
    INF,
    N_COUNTERS,
    Attempts,
    Calls,
    Channels,
    Coverage,
    Kpis,
    Mobility,
    Params,
    Redials,
    Sessions,
    Sharing,
    Subscribers,
)
from .kernels.trees import tree_init, tree_set
from .network import Network

# The structures the resolver holds, by attribute name (their arrays are saved as NAME.FIELD).
_STRUCTURES = {"coverage": Coverage, "channels": Channels, "sharing": Sharing, "subs": Subscribers,
               "calls": Calls, "sessions": Sessions, "redials": Redials, "kpis": Kpis}
# Float fields of the pools (all others are int64).
_FLOAT_FIELDS = {"sessions": ("size", "fin")}


def _grown(a: np.ndarray, n: int) -> np.ndarray:
    b = np.zeros(n, dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


def _tree(leaves: int) -> tuple[np.ndarray, np.ndarray]:
    """An empty tournament tree with room for ``leaves`` leaves (at least 2)."""
    p = 1 << max(1, math.ceil(math.log2(max(leaves, 2))))
    tt, ti = np.empty(2 * p, np.int64), np.empty(2 * p, np.int64)
    tree_init(tt, ti)
    return tt, ti


def _empty_pool(kind, trees: tuple[str, ...], floats: tuple[str, ...] = ()):
    """A pool of no slots: empty arrays, its tree (if any) a lone root at INF."""
    tree_arrays = {}
    for i in range(0, len(trees), 2):
        tt, ti = np.empty(2, np.int64), np.empty(2, np.int64)
        tree_init(tt, ti)
        tree_arrays[trees[i]], tree_arrays[trees[i + 1]] = tt, ti
    return kind(**{f: tree_arrays[f] if f in tree_arrays else np.zeros(0, np.float64 if f in floats else np.int64)
                   for f in kind._fields})


class Resolver:
    """The persistent state of the resolution kernel, and growth of its slot pools."""

    def __init__(self, net: Network, n_subs: int, n_int: int,
                 ue_peak_mbps: float, max_data_sessions: int = 200, *, redial_key: int = 0,
                 redial_prob: float = 0.0, redial_delay_s: float = 30.0, redial_max: int = 0,
                 window_end_ms: int = int(INF), cover_key: int = 0) -> None:
        c = net.n_cells
        # Settings (scalars, also saved with the state).
        self.degraded = False  # any cell down or degraded: see Coverage
        self.cover_key = int(cover_key)
        self.redial_key = int(redial_key)
        self.redial_prob = float(redial_prob)
        self.redial_delay_ms = float(redial_delay_s) * 1000.0
        self.redial_max = int(redial_max)
        self.window_end_ms = int(window_end_ms)
        self.n_int = n_int
        self.max_data = max_data_sessions
        self.ue_bpms = ue_peak_mbps * 1e6 / 8 / 1000
        # Slots in each pool.
        self.n_calls = 0
        self.n_data = 0
        self.n_redials = 0
        # Incidents: the cell serving each cell's area and the share covered (identity and 1
        # while every cell is up).
        self.coverage = Coverage(serve=np.arange(c, dtype=np.int32), cover=np.ones(c))
        # Connections (busy channels plus data sessions) and their peak: one pair of arrays that
        # the channels and the sharing both hold.
        conn, cpeak = np.zeros(c, np.int64), np.zeros(c, np.int64)
        self.channels = Channels(cap=net.voice_channels.astype(np.int64), busy=np.zeros(c, np.int64),
                                 last=np.zeros(c, np.int64), area=np.zeros(c), peak=np.zeros(c, np.int64),
                                 conn=conn, cpeak=cpeak)
        td, tdi = _tree(c)
        self.sharing = Sharing(cap_bpms=net.data_mbps * 1e6 / 8 / 1000, n_sess=np.zeros(c, np.int64),
                               vt=np.zeros(c), last=np.zeros(c, np.int64), served=np.zeros(c),
                               sess_ms=np.zeros(c), peak=np.zeros(c, np.int64), conn=conn, cpeak=cpeak,
                               head=np.full(c, -1, np.int64), td=td, tdi=tdi)
        self.subs = Subscribers(st=np.full((n_subs, 2), -1, np.int32), bits=np.zeros(n_subs // 64 + 1, np.uint64))
        self.calls = _empty_pool(Calls, ("tv", "tvi"))
        self.sessions = _empty_pool(Sessions, (), _FLOAT_FIELDS["sessions"])
        self.redials = _empty_pool(Redials, ("tr", "tri"))
        shape = (n_int, c)
        self.kpis = Kpis(**{k: np.zeros(shape) if k in ("busy_area", "offered", "carried", "served", "sess_ms")
                            else np.zeros(shape, np.int64) for k in Kpis._fields})
        self.counters = np.zeros(N_COUNTERS, np.int64)  # the engine sets the first KPI tick

    @property
    def kpi(self) -> dict[str, np.ndarray]:
        """The KPI arrays by name ([interval, cell])."""
        return self.kpis._asdict()

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Everything that persists across epochs: arrays (``STRUCTURE.FIELD``, and ``counters``)
        and scalars. The arrays are the live ones, not copies: save them before the next epoch."""
        arrays, scalars = {"counters": self.counters}, {}
        for name, value in vars(self).items():
            if name in _STRUCTURES:
                arrays.update({f"{name}.{f}": a for f, a in value._asdict().items()})
            elif not isinstance(value, np.ndarray):
                scalars[name] = value
        return arrays, scalars

    def load_state(self, arrays: dict[str, np.ndarray], scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            setattr(self, name, value)
        self.counters = arrays["counters"]
        for name, kind in _STRUCTURES.items():
            setattr(self, name, kind(**{f: arrays[f"{name}.{f}"] for f in kind._fields}))
        # The channels and the sharing hold one pair of connection arrays (saved twice).
        self.sharing = self.sharing._replace(conn=self.channels.conn, cpeak=self.channels.cpeak)

    def active_calls(self) -> int:
        return self.n_calls - int(self.counters[C_FREE_CALLS])

    def active_data(self) -> int:
        return self.n_data - int(self.counters[C_FREE_DATA])

    def pending_redials(self) -> int:
        return self.n_redials - int(self.counters[C_FREE_REDIALS])

    def ensure_slots(self, voice_attempts: int, data_attempts: int) -> None:
        """Grow the pools of calls, data sessions and waiting redials so that a slice with these
        many new attempts cannot run out: every attempt, and every redial that falls due, may
        start a call or session, and every voice attempt may leave a redial behind."""
        self._grow("calls", "n_calls", C_FREE_CALLS, voice_attempts + self.pending_redials(), ("tv", "tvi"))
        self._grow("sessions", "n_data", C_FREE_DATA, data_attempts, None)
        if self.redial_max > 0 and self.redial_prob > 0:
            self._grow("redials", "n_redials", C_FREE_REDIALS, voice_attempts, ("tr", "tri"))

    def _grow(self, pool: str, n_name: str, counter: int, needed: int, tree: tuple[str, str] | None) -> None:
        free = int(self.counters[counter])
        if free >= needed:
            return
        old = getattr(self, n_name)
        new = max(old + old // 2, old + needed - free, 1024)
        slots = getattr(self, pool)
        fields = {f: _grown(a, new) for f, a in slots._asdict().items() if f != "free" and f not in (tree or ())}
        # Free slots are popped from the end of the stack: keep the lowest ids on top.
        added = np.arange(new - 1, old - 1, -1, dtype=np.int64)
        stack = np.concatenate([added, slots.free[:free]])
        self.counters[counter] = len(stack)
        fields["free"] = _grown(stack, new)
        if tree is not None:
            t_old = getattr(slots, tree[0])
            tt, ti = _tree(new)
            p_old = t_old.shape[0] // 2
            for k in range(min(old, p_old)):
                if t_old[p_old + k] != INF:
                    tree_set(tt, ti, k, t_old[p_old + k])
            fields[tree[0]], fields[tree[1]] = tt, ti
        setattr(self, pool, slots._replace(**fields))
        setattr(self, n_name, new)

    def _params(self, interval_ms: int, up_share: float) -> Params:
        return Params(np.int64(self.n_int), np.int64(interval_ms), self.ue_bpms, np.int64(self.max_data), up_share,
                      bool(self.degraded), np.uint64(self.cover_key), np.uint64(self.redial_key), self.redial_prob,
                      self.redial_delay_ms, np.int64(self.redial_max), np.int64(self.window_end_ms))

    def resolve(self, t1: int, interval_ms: int, mob: tuple, att: tuple, up_share: float):
        """Resolve everything before ``t1``. ``mob`` = (t, sub, cell, kind) and ``att`` = (t, sub,
        kind, counterpart, duration_ms, bytes, cell, counterpart_cell), both in time order.
        Returns the CDR and location columns written, by name."""
        mob, att = Mobility(*mob), Attempts(*att)
        n_att = len(att.t)
        # Upper bounds on the rows: one per attempt and one more per on-net counterpart, plus the
        # records of calls and sessions in progress that may end in this epoch.
        n_legs = n_att + int(np.count_nonzero(att.cp >= 0))
        # Redials: every voice attempt and every waiting redial starts a chain of at most
        # redial_max more attempts (each two rows at most) within the slice.
        redials = 0
        if self.redial_max > 0 and self.redial_prob > 0:
            voice = int(np.count_nonzero((att.kind == demand.VOICE_MO) | (att.kind == demand.VOICE_MT_OFFNET)))
            pending = self.pending_redials()
            redials = (voice + pending) * self.redial_max + pending
        cdr = empty_cdr(n_legs + 2 * redials + 2 * self.active_calls() + self.active_data() + 16)
        loc = empty_loc(n_legs + 2 * redials + len(mob.t) + 16)
        nc, nl = resolution.resolve_epoch(
            np.int64(t1), self._params(interval_ms, up_share), self.coverage, self.channels, self.sharing,
            self.subs, self.calls, self.sessions, self.redials, self.kpis, self.counters, mob, att, cdr, loc)
        return _rows(cdr, nc, CDR_DTYPES), _rows(loc, nl, LOC_DTYPES)

    def change(self, ch) -> tuple[dict, dict]:
        """Apply a :class:`sim.perturb.CellChange` (everything before it resolved)."""
        cap = 2 * self.active_calls() + self.active_data() + 16
        cdr, loc = empty_cdr(cap), empty_loc(cap)
        nc, nl = resolution.change_cells(
            np.int64(ch.t_ms), ch.cells.astype(np.int64), ch.voice_channels.astype(np.int64),
            ch.data_bpms.astype(np.float64), ch.serve.astype(np.int32), ch.cover.astype(np.float64),
            bool(ch.handover), self._params(0, 0.0), self.coverage, self.channels, self.sharing, self.subs,
            self.calls, self.sessions, self.kpis, self.counters, cdr, loc)
        serve, cover = self.coverage
        self.degraded = bool(np.any(serve != np.arange(len(serve))) or np.any(cover < 1.0))
        return _rows(cdr, nc, CDR_DTYPES), _rows(loc, nl, LOC_DTYPES)


def _rows(cols, n: int, dtypes) -> dict[str, np.ndarray]:
    return {name: col[:n] for (name, _), col in zip(dtypes, cols, strict=True)}
