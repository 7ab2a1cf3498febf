"""Mobility: where subscribers want to be, hour by hour, and where they start (their state across
epochs is :class:`sim.shards.ShardState`; the kernel is :func:`sim.kernels.mobility.mobility_epoch`).

Each hour a subscriber keeps their place (home / work / other) with probability ``stickiness``,
otherwise redraws it from the hour's target distribution below: a time-inhomogeneous Markov chain
``P_h = s I + (1 - s) 1 pi_h^T`` whose occupancy follows ``pi_h`` with a lag. The tables are a
plain time-use assumption (night at home, weekday office hours at work, evening outings, later
and looser weekends), meant to be calibrated (issue: calibration) against the hourly move
probability and time-at-top-location of real traces.
"""

from __future__ import annotations

import numpy as np

from .config import MobilityConfig, PopulationConfig
from .network import Network
from .population import Population
from .streams import generator

N_PLACES = 3
VISIT_SLOTS = 6


def _table(rows: list[tuple[range | int, tuple[float, float, float]]]) -> np.ndarray:
    out = np.zeros((24, N_PLACES))
    for hours, p in rows:
        for h in [hours] if isinstance(hours, int) else hours:
            out[h] = p
    assert (out.sum(axis=1) > 0).all()
    return out / out.sum(axis=1, keepdims=True)


# Target distribution over (home, work, other) by local hour.
PLACE_TARGET_WEEKDAY = _table([
    (range(0, 6), (0.95, 0.02, 0.03)), (6, (0.85, 0.10, 0.05)), (7, (0.60, 0.30, 0.10)),
    (8, (0.35, 0.50, 0.15)), (range(9, 12), (0.25, 0.55, 0.20)), (12, (0.25, 0.45, 0.30)),
    (13, (0.25, 0.52, 0.23)), (range(14, 17), (0.25, 0.55, 0.20)), (17, (0.40, 0.35, 0.25)),
    (18, (0.55, 0.15, 0.30)), (19, (0.65, 0.07, 0.28)), (20, (0.72, 0.05, 0.23)),
    (21, (0.80, 0.03, 0.17)), (22, (0.88, 0.02, 0.10)), (23, (0.93, 0.02, 0.05)),
])
PLACE_TARGET_WEEKEND = _table([
    (range(0, 2), (0.90, 0.01, 0.09)), (range(2, 8), (0.96, 0.01, 0.03)), (range(8, 10), (0.85, 0.03, 0.12)),
    (range(10, 13), (0.60, 0.05, 0.35)), (range(13, 18), (0.55, 0.05, 0.40)), (range(18, 21), (0.60, 0.03, 0.37)),
    (21, (0.72, 0.02, 0.26)), (22, (0.82, 0.02, 0.16)), (23, (0.88, 0.01, 0.11)),
])


def place_target(hour: int, weekday: int) -> np.ndarray:
    return (PLACE_TARGET_WEEKEND if weekday >= 5 else PLACE_TARGET_WEEKDAY)[hour]


def initial_places(pop: Population, hour: int, weekday: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell, place) of every subscriber at the start: at home, or at work with the start hour's
    odds of being there."""
    pi = place_target(hour, weekday)
    at_work = generator(seed, "mobility", 1).random(pop.n) < pi[1] / (pi[0] + pi[1])
    return np.where(at_work, pop.work_cell, pop.home_cell).astype(np.int32), at_work.astype(np.int8)


def other_place_cdf(net: Network, pop_cfg: PopulationConfig) -> np.ndarray:
    """Where exploration jumps land when they go anywhere: cells weighted like workplaces."""
    w = np.asarray(pop_cfg.work_weight.as_tuple())[net.density]
    if w.sum() <= 0:
        w = np.ones(net.n_cells)
    return np.cumsum(w)


def kernel_params(cfg: MobilityConfig) -> dict[str, float]:
    return {
        "stickiness": cfg.stickiness, "rho": cfg.explore_rho, "gamma": cfg.explore_gamma,
        "hops_mean": cfg.jump_hops_mean, "global_share": cfg.global_jump_share,
        "speed_mu": float(np.log(cfg.speed_kmh_median)), "speed_sigma": cfg.speed_log_sigma,
        "pp_prob": cfg.ping_pong_prob, "pp_dwell_ms": cfg.ping_pong_dwell_s * 1000.0,
        "dwell_sigma": cfg.dwell_log_sigma,
        # the local mobility class's own figures (sim.population.Population.class_mobility)
        "local_outing": cfg.local_outing_scale, "local_stickiness": cfg.local_stickiness,
        "local_hops_mean": cfg.local_jump_hops_mean, "local_global_share": cfg.local_global_jump_share,
    }


def expected_presence(pop: Population, n_cells: int, mobility: dict[str, float],
                      weights: np.ndarray | None = None) -> np.ndarray:
    """Expected subscribers in each cell at each hour of the week (n_cells x 168, hour 0 = Monday
    00:00 local), from the hourly place chain of the mobility kernel: per mobility class the
    share at home, at work and out follows p(h) = s p(h-1) + (1 - s) pi(h) (s the class's
    stickiness, pi the hour's place targets with "other" scaled by the class's outing factor),
    iterated to its weekly cycle; home and work counts come from the population, "out" is
    placed half at home cells and half at work cells (exploration lands mostly near them).
    Trip times and where exploration lands are not modelled: on the default city (20,000
    subscribers) the relative presence of a cell at an hour is off by 5% on average.

    ``weights`` (one per subscriber): count each subscriber as that much (e.g. their expected
    attempts, for the expected load of a cell) instead of 1."""
    target = np.array([place_target(h, wd) for wd in range(7) for h in range(24)])  # (168, 3)
    cls, table = pop.class_mobility(mobility)
    out = np.zeros((n_cells, 168))
    for k in range(table.shape[0] if cls.shape[0] else 1):  # no class array: everybody is of class 0
        members = cls == k if cls.shape[0] else np.ones(pop.n, dtype=bool)
        if not members.any():
            continue
        pi = target.copy()
        pi[:, 2] *= table[k, 0]
        pi /= pi.sum(axis=1, keepdims=True)
        stick = table[k, 1]
        p = np.array([1.0, 0.0, 0.0])
        share = np.zeros((168, 3))
        for _ in range(3):  # two weeks to forget the start, the third is the cycle
            for h in range(168):
                p = stick * p + (1.0 - stick) * pi[h]
                share[h] = p
        w = None if weights is None else weights[members]
        home = np.bincount(pop.home_cell[members], weights=w, minlength=n_cells).astype(np.float64)
        work = np.bincount(pop.work_cell[members], weights=w, minlength=n_cells).astype(np.float64)
        out += np.outer(home, share[:, 0]) + np.outer(work, share[:, 1]) + np.outer(0.5 * (home + work), share[:, 2])
    return out
