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

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import networkx as nx
import numpy as np

from .config import PopulationConfig
from .kernels import cores, setup
from .network import Network
from .streams import generator, kernel_key

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
    return setup.two_hop(net.nbr_ptr, net.nbr_idx)


def _own_site(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each cell's other cells on its site (the cell itself when its site has no other)."""
    return setup.own_site(np.asarray(net.site_id, np.int64))


def _draw_in_rows(rng: np.random.Generator, ptr: np.ndarray, idx: np.ndarray, rows: np.ndarray,
                  weight: np.ndarray | None = None) -> np.ndarray:
    """For each entry of ``rows``, one member of that CSR row (uniform or by ``weight[member]``):
    one uniform per row, ``min(int(u * size), size - 1)`` or where ``u`` falls on the row's stretch
    of the cumulative weights (rows must not be empty)."""
    u = rng.random(len(rows))
    out = np.empty(len(rows), idx.dtype)
    if weight is None:
        setup.split(setup.draw_uniform, len(rows), ptr, idx, rows, u, out)
    else:
        setup.split(setup.draw_weighted, len(rows), np.cumsum(weight[idx]), ptr, idx, rows, u, out)
    return out


def build_population(cfg: PopulationConfig, net: Network, seed: int) -> Population:
    n = cfg.subscribers
    rng_h = generator(seed, "population.homes")
    home_w = np.asarray(cfg.home_weight.as_tuple())[net.density]
    work_w = np.asarray(cfg.work_weight.as_tuple())[net.density]
    if home_w.sum() <= 0:
        home_w = np.ones(net.n_cells)
    if work_w.sum() <= 0:
        work_w = np.ones(net.n_cells)
    # Each stream's draws keep their order; what is independent runs side by side: the social
    # stream's draws need only the number of subscribers, so they start first on a worker thread
    # and are handed over one by one; once the homes are drawn, the work cells, class and activity
    # follow them there while this thread builds the social graph.
    with ThreadPoolExecutor(1, thread_name_prefix="telcosim-setup") as pool:
        draws = [Future() for _ in range(5)] if n >= 2 else None
        if draws is not None:
            pool.submit(_social_draws, cfg, n, seed, draws)
        home = rng_h.choice(net.n_cells, size=n, p=home_w / home_w.sum()).astype(np.int32)
        rest = pool.submit(_work_class_activity, cfg, net, seed, rng_h, home, work_w)
        ptr, idx, cdf = _social_graph(cfg, net, home, seed, draws)
        work, commuter, local, activity, activity_class = rest.result()
    return Population(home, work, commuter, local, activity, activity_class, ptr, idx, cdf)


def _work_class_activity(cfg: PopulationConfig, net: Network, seed: int, rng_h: np.random.Generator,
                         home: np.ndarray, work_w: np.ndarray):
    """Work/anchor cells, commuters, the local class and activity levels, given the homes (drawn
    from ``rng_h`` just before)."""
    n = len(home)
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
    return work, commuter, local, activity, activity_classes(activity)


def activity_classes(activity: np.ndarray) -> np.ndarray:
    """The activity class code of each activity level (see sim.schema.ACTIVITY_CLASSES)."""
    return np.searchsorted(np.asarray(_ACTIVITY_EDGES), activity, side="right").astype(np.int8)


def _social_draws(cfg: PopulationConfig, n: int, seed: int, out: list[Future]) -> None:
    """The social stream's draws (two or more subscribers), in their order, each handed over in
    ``out`` as soon as it is drawn: the proposer of each tie (from the number of ties each
    subscriber proposes), then per tie the local contact's cell and resident, a global contact,
    and whether the contact is local."""
    try:
        rng = generator(seed, "population.social")
        stubs = np.maximum(1, rng.poisson(cfg.contacts_mean / 2.0, size=n))
        src = np.repeat(np.arange(n, dtype=np.int32), stubs)
        del stubs
        m = len(src)
        out[0].set_result(src)
        del src
        out[1].set_result(rng.random(m))
        out[2].set_result(rng.random(m))
        out[3].set_result(rng.integers(0, n, size=m).astype(np.int32))
        out[4].set_result(rng.random(m))
    except BaseException as exc:
        for f in out:
            if f is not None and not f.done():
                f.set_exception(exc)
        raise


def _social_graph(cfg: PopulationConfig, net: Network, home: np.ndarray, seed: int, draws: list[Future] | None):
    """Undirected contacts: each subscriber proposes ~contacts_mean/2 ties, mostly to people whose
    home is within one hop of theirs; ties are symmetrised, so the mean degree is ~contacts_mean.
    ``draws`` are :func:`_social_draws`'s (None under two subscribers); each is used as soon as it
    is drawn and dropped once used."""
    n = len(home)
    if draws is None:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float64)
    # Residents of each cell, as CSR.
    by_home = setup.stable_order(home, net.n_cells)
    res_ptr = np.zeros(net.n_cells + 1, np.int64)
    np.cumsum(np.bincount(home, minlength=net.n_cells), out=res_ptr[1:])
    # Local: a random resident of the home cell or one of its neighbours (empty cells fall back),
    # the cell drawn by its residents; else anybody.
    one_ptr, one_idx = setup.inhabited_neighbourhood(net.nbr_ptr, net.nbr_idx, res_ptr)
    cum = np.cumsum((res_ptr[1:] - res_ptr[:-1]).astype(np.float64)[one_idx] + 1e-12)
    src = draws[0].result()
    m = len(src)
    cell = np.empty(m, np.int32)
    setup.split(setup.local_cells, m, src, home, cum, one_ptr, one_idx, draws[1].result(), cell)
    draws[1] = None
    dst = np.empty(m, np.int32)
    setup.split(setup.local_contacts, m, cell, res_ptr, by_home, draws[2].result(), dst)
    draws[2] = None
    del cell, by_home
    setup.split(setup.local_or_global, m, draws[4].result(), float(cfg.contacts_local_share), draws[3].result(), dst)
    draws[:] = [None] * 5
    ptr, b = setup.symmetric_csr(n, src, dst)
    del src, dst
    # Symmetric tie strength from a hash of the unordered pair, so A->B and B->A agree; drawn in
    # blocks to bound the temporaries (one block per core at a time), then turned into per-row
    # cumulative weights in place.
    w = _tie_strengths(cfg.tie_sigma, ptr, b, kernel_key(seed, "population.social", 1))
    setup.row_cumulative(ptr, w)
    return ptr, b, w


def _tie_strengths(sigma: float, ptr: np.ndarray, idx: np.ndarray, key: np.uint64) -> np.ndarray:
    """Lognormal strength ``exp(sigma * z)`` of each entry of the CSR (row, ``idx``), ``z`` by
    Box-Muller from the two uniforms hashed from the unordered pair
    (:func:`sim.kernels.setup.pair_uniforms`)."""
    out = np.empty(len(idx), np.float64)
    block = 1 << 18

    def blocks(lo: int) -> None:
        hi = min(lo + block, len(idx))
        h0 = np.empty(hi - lo, np.float64)
        h1 = np.empty(hi - lo, np.float64)
        setup.pair_uniforms(lo, hi, ptr, idx, key, h0, h1)
        out[lo:hi] = np.exp(sigma * (np.sqrt(-2.0 * np.log(h0)) * np.cos(2.0 * np.pi * h1)))

    starts = range(0, len(idx), block)
    if len(starts) > 1 and cores() > 1:
        with ThreadPoolExecutor(min(cores(), len(starts)), thread_name_prefix="telcosim-setup") as pool:
            list(pool.map(blocks, starts))
    else:
        for lo in starts:
            blocks(lo)
    return out
