"""How the engine applies learned per-cell shapes (``behaviour.cell_shapes``): it replaces each
cell's own deviation from the city by the drawn one and keeps every service's city-wide shape."""

from __future__ import annotations

import numpy as np
import pytest

from telcosim.sim import config
from telcosim.sim.engine import Simulation, expected_presence
from telcosim.sim.mobility import kernel_params


@pytest.fixture(scope="module")
def small_sim():
    sc = config.load(None, ["population.subscribers=3000", "time.days=1", "seed=3"])
    return Simulation(sc)


def _drawn(n_cells: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = np.arange(168)
    phase = rng.uniform(0, 24, n_cells)
    x = 1 + 0.3 * np.cos(2 * np.pi * ((h[None, :] % 24) - phase[:, None]) / 24) * rng.uniform(0.2, 1, (n_cells, 1))
    return x / x.mean(axis=1, keepdims=True)


def test_expected_presence_counts_everybody_every_hour(small_sim):
    sim = small_sim
    p = expected_presence(sim.population, sim.network.n_cells, kernel_params(sim.scenario.mobility))
    assert p.shape == (sim.network.n_cells, 168)
    np.testing.assert_allclose(p.sum(axis=0), sim.population.n, rtol=1e-9)
    # weekday nights at home, weekday mid-mornings more at work than at night
    work = np.bincount(sim.population.work_cell, minlength=sim.network.n_cells)
    home = np.bincount(sim.population.home_cell, minlength=sim.network.n_cells)
    workish = work > 2 * home
    assert workish.any()
    assert p[workish, 10].sum() > 1.5 * p[workish, 3].sum()


def test_expected_presence_without_a_local_class():
    sim = Simulation(config.load(None, ["population.subscribers=500", "time.days=1", "seed=4",
                                        "population.local_share=0"]))
    p = expected_presence(sim.population, sim.network.n_cells, kernel_params(sim.scenario.mobility))
    np.testing.assert_allclose(p.sum(axis=0), 500, rtol=1e-9)


def test_multipliers_move_load_between_cells_not_hours(small_sim):
    sim = small_sim
    n = sim.network.n_cells
    sim.cell_shapes = _drawn(n, 1)
    try:
        mult = sim._shape_multipliers()
    finally:
        sim.cell_shapes = None
    p = expected_presence(sim.population, n, kernel_params(sim.scenario.mobility))
    # the expected number of "people-equivalents" at every hour is unchanged: each service keeps
    # the profile's city-wide hour-of-week shape and total
    np.testing.assert_allclose((p * mult).sum(axis=0), p.sum(axis=0), rtol=1e-9)
    # where presence is not clipped, a cell's expected load over its mean presence follows the
    # drawn shape, up to one factor per hour common to all cells
    pbar = p.mean(axis=1, keepdims=True)
    ok = (p >= 0.2 * pbar).all(axis=1) & (pbar[:, 0] > 0)
    ratio = (p * mult / pbar)[ok] / _drawn(n, 1)[ok]
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1], ratio.shape), rtol=1e-9)
    assert abs(ratio[0].mean() - 1) < 0.05


def test_multipliers_do_not_depend_on_the_profile(small_sim, tmp_path):
    """The profile's service shapes do not enter: a change of profile changes no multiplier."""
    sim = small_sim
    sim.cell_shapes = _drawn(sim.network.n_cells, 2)
    try:
        a = sim._shape_multipliers()
        saved = sim.profile
        flat = {k: type(v)(np.ones(24), np.ones(24), np.ones(7)) for k, v in saved.shapes.items()}
        sim.profile = type(saved)(**{**saved.__dict__, "shapes": flat})
        try:
            b = sim._shape_multipliers()
        finally:
            sim.profile = saved
    finally:
        sim.cell_shapes = None
    np.testing.assert_array_equal(a, b)
