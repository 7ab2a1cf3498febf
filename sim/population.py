"""Subscribers: home and work/anchor cells, a heavy-tailed activity level and a social graph.

Homes are placed by a per-density-class weight; the work/anchor cell of a commuter is drawn either
near home (within two neighbour hops) or anywhere by work attractiveness, which gives the mix of
short and long commutes seen in real home-work distances; a non-commuter's anchor (school, shops)
is within two hops. A share ``local_share`` of subscribers is of the *local* mobility class (a
campus-like life: classes, canteen and room on one site): their anchor is another cell of their
home site (the home cell itself on a one-cell site), and the mobility kernel scales their chance of
an outing by ``mobility.local_outing_scale`` and gives them their own ``mobility.local_stickiness``
and exploration range (``mobility.local_jump_hops_mean``, ``local_global_jump_share``; see
:meth:`Population.class_mobility`). A mixture of locals
and commuters gives what real daily radii of gyration look like: many days spent around one place
and a tail of long trips. The social graph is built so that most contacts live nearby, with lognormal
tie strengths, so that a few contacts carry most of a subscriber's calls. It is stored as CSR
arrays for the kernels; :meth:`Population.social_graph` gives the networkx view.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from .config import PopulationConfig
from .network import Network
from .streams import generator

ACTIVITY_CLASSES = ("low", "medium", "high", "very_high")
_ACTIVITY_EDGES = (0.5, 1.5, 4.0)


@dataclass
class Population:
    home_cell: np.ndarray      # int32
    work_cell: np.ndarray      # int32
    commuter: np.ndarray       # bool
    local: np.ndarray          # bool: local mobility class (anchor on the home site, few outings)
    activity: np.ndarray       # float64, lognormal with mean 1
    activity_class: np.ndarray  # int8 index into ACTIVITY_CLASSES
    contact_ptr: np.ndarray    # int64, CSR of the (symmetric) social graph
    contact_idx: np.ndarray    # int32
    contact_cdf: np.ndarray    # float64, cumulative tie strength within each row
    # Optional per-service rate multipliers (voice, SMS, data) on top of ``activity``, from a
    # learned behaviour generator (population.behaviour_model); None for the lognormal model.
    service_activity: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.home_cell.shape[0])

    def class_mobility(self, mobility: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """The mobility kernel's class inputs: the class of each subscriber (int8: 0 everybody
        else, 1 local; empty when nobody is local, and the kernel uses its scalar parameters) and
        one row per class of (outing factor, stickiness, exploration hops mean, global jump share)
        from the kernel parameters ``mobility`` (:func:`sim.mobility.kernel_params`, ``local_*`` entries
        included)."""
        m = mobility
        table = np.array([
            [1.0, m["stickiness"], m["hops_mean"], m["global_share"]],
            [m.get("local_outing", 1.0), m.get("local_stickiness", m["stickiness"]),
             m.get("local_hops_mean", m["hops_mean"]), m.get("local_global_share", m["global_share"])],
        ], np.float64)
        if not self.local.any():
            return np.zeros(0, np.int8), table
        return self.local.astype(np.int8), table

    def contacts(self, sub: int) -> np.ndarray:
        return self.contact_idx[self.contact_ptr[sub]:self.contact_ptr[sub + 1]]

    def social_graph(self) -> nx.Graph:
        """The social graph as networkx, edges weighted by tie strength (for analysis; O(edges))."""
        g = nx.Graph()
        g.add_nodes_from(range(self.n))
        for s in range(self.n):
            lo, hi = self.contact_ptr[s], self.contact_ptr[s + 1]
            prev = 0.0
            for k in range(lo, hi):
                t = int(self.contact_idx[k])
                w = float(self.contact_cdf[k] - prev)
                prev = float(self.contact_cdf[k])
                if s < t:
                    g.add_edge(s, t, weight=w)
        return g


def _two_hop(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each cell's neighbourhood within two hops (itself included)."""
    ptr = [0]
    idx: list[int] = []
    for c in range(net.n_cells):
        near = {c}
        for n in net.neighbours(c):
            near.add(int(n))
            near.update(int(m) for m in net.neighbours(int(n)))
        idx.extend(sorted(near))
        ptr.append(len(idx))
    return np.asarray(ptr, np.int64), np.asarray(idx, np.int32)


def _own_site(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each cell's other cells on its site (the cell itself when its site has no other)."""
    order = np.argsort(net.site_id, kind="stable")
    first = np.searchsorted(net.site_id[order], net.site_id, side="left")
    last = np.searchsorted(net.site_id[order], net.site_id, side="right")
    ptr = [0]
    idx: list[int] = []
    for c in range(net.n_cells):
        same = [int(k) for k in order[first[c]:last[c]] if k != c] or [c]
        idx.extend(same)
        ptr.append(len(idx))
    return np.asarray(ptr, np.int64), np.asarray(idx, np.int32)


def _draw_in_rows(rng: np.random.Generator, ptr: np.ndarray, idx: np.ndarray, rows: np.ndarray,
                  weight: np.ndarray | None = None) -> np.ndarray:
    """For each entry of ``rows``, one member of that CSR row (uniform or by ``weight[member]``)."""
    if weight is None:
        size = ptr[rows + 1] - ptr[rows]
        return idx[ptr[rows] + np.minimum((rng.random(len(rows)) * size).astype(np.int64), size - 1)]
    w = weight[idx]
    cum = np.cumsum(w)
    lo = np.where(ptr[rows] > 0, cum[ptr[rows] - 1], 0.0)
    hi = cum[ptr[rows + 1] - 1]
    target = lo + rng.random(len(rows)) * (hi - lo)
    pos = np.searchsorted(cum, target, side="right")
    return idx[np.minimum(pos, ptr[rows + 1] - 1)]


def build_population(cfg: PopulationConfig, net: Network, seed: int) -> Population:
    n = cfg.subscribers
    rng_h = generator(seed, "population.homes")
    home_w = np.asarray(cfg.home_weight.as_tuple())[net.density]
    work_w = np.asarray(cfg.work_weight.as_tuple())[net.density]
    if home_w.sum() <= 0:
        home_w = np.ones(net.n_cells)
    if work_w.sum() <= 0:
        work_w = np.ones(net.n_cells)
    home = rng_h.choice(net.n_cells, size=n, p=home_w / home_w.sum()).astype(np.int32)
    two_ptr, two_idx = _two_hop(net)
    commuter = rng_h.random(n) < cfg.commuter_share
    # A commuter works anywhere (by attractiveness) with chance far_commute_share (by default
    # half the time), otherwise near home.
    far = commuter & (rng_h.random(n) < cfg.far_commute_share)
    work = _draw_in_rows(rng_h, two_ptr, two_idx, home, work_w)
    work[far] = rng_h.choice(net.n_cells, size=int(far.sum()), p=work_w / work_w.sum())
    work = work.astype(np.int32)
    # The local class, from its own stream (index 1 of the homes stream; the draws above do not
    # depend on it): the anchor is
    # another cell of the home site.
    rng_l = generator(seed, "population.homes", 1)
    local = rng_l.random(n) < cfg.local_share
    if local.any():
        site_ptr, site_idx = _own_site(net)
        rows = home[local].astype(np.int64)
        work[local] = _draw_in_rows(rng_l, site_ptr, site_idx, rows)
        commuter &= ~local

    rng_a = generator(seed, "population.activity")
    sigma = cfg.activity_sigma
    activity = rng_a.lognormal(-0.5 * sigma * sigma, sigma, size=n)
    activity_class = activity_classes(activity)

    ptr, idx, cdf = _social_graph(cfg, net, home, seed)
    return Population(home, work, commuter, local, activity, activity_class, ptr, idx, cdf)


def activity_classes(activity: np.ndarray) -> np.ndarray:
    """The activity class code of each activity level (see sim.schema.ACTIVITY_CLASSES)."""
    return np.searchsorted(np.asarray(_ACTIVITY_EDGES), activity, side="right").astype(np.int8)


def _social_graph(cfg: PopulationConfig, net: Network, home: np.ndarray, seed: int):
    """Undirected contacts: each subscriber proposes ~contacts_mean/2 ties, mostly to people whose
    home is within one hop of theirs; ties are symmetrised, so the mean degree is ~contacts_mean."""
    n = len(home)
    rng = generator(seed, "population.social")
    if n < 2:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float64)
    stubs = np.maximum(1, rng.poisson(cfg.contacts_mean / 2.0, size=n))
    src = np.repeat(np.arange(n, dtype=np.int32), stubs)
    del stubs
    m = len(src)
    # Residents of each cell, as CSR.
    by_home = np.argsort(home, kind="stable").astype(np.int32)
    res_ptr = np.zeros(net.n_cells + 1, np.int64)
    np.cumsum(np.bincount(home, minlength=net.n_cells), out=res_ptr[1:])
    # Local: a random resident of the home cell or one of its neighbours (empty cells fall back).
    one_ptr = np.zeros(net.n_cells + 1, np.int64)
    one_idx_l: list[int] = []
    for c in range(net.n_cells):
        cand = [c, *map(int, net.neighbours(c))]
        cand = [k for k in cand if res_ptr[k + 1] > res_ptr[k]] or [c]
        one_idx_l.extend(cand)
        one_ptr[c + 1] = len(one_idx_l)
    one_idx = np.asarray(one_idx_l, np.int32)
    cell = _draw_in_rows(rng, one_ptr, one_idx, home[src].astype(np.int64),
                         weight=(res_ptr[1:] - res_ptr[:-1]).astype(np.float64) + 1e-12)
    # (Temporaries are dropped as soon as they are used: this runs once for the whole
    # population and would otherwise be the peak of a large run's memory.)
    size = res_ptr[cell + 1] - res_ptr[cell]
    pick = np.minimum((rng.random(m) * size).astype(np.int64), np.maximum(size - 1, 0))
    del size
    local_dst = by_home[np.minimum(res_ptr[cell] + pick, n - 1)]
    del pick, cell, by_home
    global_dst = rng.integers(0, n, size=m).astype(np.int32)
    dst = np.where(rng.random(m) < cfg.contacts_local_share, local_dst, global_dst)
    del local_dst, global_dst
    keep = dst != src
    src, dst = src[keep], dst[keep]
    del keep
    key = np.concatenate([src.astype(np.int64) * n + dst, dst.astype(np.int64) * n + src])
    del src, dst
    key.sort()
    key = key[np.concatenate(([True], key[1:] != key[:-1]))]
    a = (key // n).astype(np.int32)
    b = (key % n).astype(np.int32)
    del key
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(a, minlength=n), out=ptr[1:])
    # Symmetric tie strength from a hash of the unordered pair, so A->B and B->A agree; drawn in
    # blocks to bound the temporaries, then turned into per-row cumulative weights in place.
    w = np.empty(len(a), np.float64)
    block = 1 << 22
    for lo_i in range(0, len(a), block):
        aa, bb = a[lo_i:lo_i + block], b[lo_i:lo_i + block]
        h = _pair_uniform(np.minimum(aa, bb).astype(np.uint64), np.maximum(aa, bb).astype(np.uint64), seed)
        w[lo_i:lo_i + block] = np.exp(cfg.tie_sigma * (np.sqrt(-2.0 * np.log(h[0])) * np.cos(2.0 * np.pi * h[1])))
    del a
    np.cumsum(w, out=w)
    base = np.where(ptr[:-1] > 0, w[np.maximum(ptr[:-1] - 1, 0)], 0.0)
    w -= np.repeat(base, np.diff(ptr))
    return ptr, b, w


def _pair_uniform(lo: np.ndarray, hi: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two uniforms per unordered pair, from a SplitMix64 hash keyed by the 'population.social' stream."""
    from .streams import kernel_key

    key = kernel_key(seed, "population.social", 1)
    with np.errstate(over="ignore"):
        z = lo * np.uint64(0x9E3779B97F4A7C15) ^ (hi + key)
        out = []
        for salt in (np.uint64(0x632BE59BD9B4E019), np.uint64(0x8CB92BA72F3D8DD7)):
            v = z ^ salt
            v = (v ^ (v >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            v = (v ^ (v >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            v = v ^ (v >> np.uint64(31))
            out.append(((v >> np.uint64(11)).astype(np.float64) + 0.5) / 9007199254740992.0)
    return out[0], out[1]
