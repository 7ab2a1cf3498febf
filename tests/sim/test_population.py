"""The local mobility class (population.local_share): anchors on the home site, the share drawn as
asked, other subscribers' draws untouched, and in a run a local without outings stays on their site."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from sim import config
from sim.engine import Simulation, run
from sim.errors import ConfigError
from sim.population import build_population
from tests.conftest import small_scenario


def _build(**sets):
    sc = small_scenario(**{"population.subscribers": 20_000, **sets})
    net = Simulation(small_scenario(**{"population.subscribers": 1})).network
    return sc, net, build_population(sc.population, net, sc.seed)


def test_local_anchor_is_another_cell_of_the_home_site():
    _, net, pop = _build(**{"population.local_share": 0.5, "population.commuter_share": 1.0,
                            "population.far_commute_share": 1.0})
    loc = pop.local
    assert loc.any() and (~loc).any()
    assert np.array_equal(net.site_id[pop.work_cell[loc]], net.site_id[pop.home_cell[loc]])
    # Every site of the small city has three sectors: the anchor is never the home cell itself.
    assert (pop.work_cell[loc] != pop.home_cell[loc]).all()
    assert not (pop.commuter & loc).any()
    # Commuters who all may work far mostly work on another site.
    far = pop.commuter
    assert (net.site_id[pop.work_cell[far]] != net.site_id[pop.home_cell[far]]).mean() > 0.8


@pytest.mark.parametrize("share", [0.0, 0.3, 0.65, 1.0])
def test_local_share_is_honoured(share):
    _, _, pop = _build(**{"population.local_share": share})
    n = pop.n
    sd = np.sqrt(share * (1 - share) / n)
    assert abs(pop.local.mean() - share) <= 4 * sd + 1e-12


def test_the_local_class_leaves_everybody_else_alone():
    _, _, a = _build(**{"population.local_share": 0.0})
    _, _, b = _build(**{"population.local_share": 0.4})
    assert not a.local.any()
    np.testing.assert_array_equal(a.home_cell, b.home_cell)
    np.testing.assert_array_equal(a.work_cell[~b.local], b.work_cell[~b.local])
    np.testing.assert_array_equal(a.commuter[~b.local], b.commuter[~b.local])
    np.testing.assert_array_equal(a.activity, b.activity)


def test_class_mobility_arrays():
    _, _, pop = _build(**{"population.local_share": 0.5})
    m = {"stickiness": 0.55, "hops_mean": 3.0, "global_share": 0.1, "local_outing": 0.2,
         "local_stickiness": 0.3, "local_hops_mean": 1.0, "local_global_share": 0.0}
    mclass, table = pop.class_mobility(m)
    np.testing.assert_array_equal(mclass, pop.local.astype(np.int8))
    np.testing.assert_array_equal(table, [[1.0, 0.55, 3.0, 0.1], [0.2, 0.3, 1.0, 0.0]])
    # Nobody local: no classes passed (the kernel's scalar parameters).
    _, _, none = _build(**{"population.local_share": 0.0})
    assert none.class_mobility(m)[0].shape == (0,)


def test_a_local_without_outings_stays_on_the_home_site(tmp_path):
    sc = small_scenario(**{"population.subscribers": 1500, "population.local_share": 0.5,
                           "mobility.local_outing_scale": 0.0})
    out = tmp_path / "run"
    run(sc, out)
    subs = pq.read_table(out / "subscribers.parquet").to_pandas()
    cells = pq.read_table(out / "cells.parquet").to_pandas().set_index("cell_id")
    loc = pq.read_table(out / "locations").to_pandas()
    site = cells["site_id"]
    home_site = site.loc[subs["home_cell_id"]].to_numpy()
    row_site = site.loc[loc["cell_id"]].to_numpy()
    is_local = subs["local"].to_numpy()[loc["subscriber_id"].to_numpy()]
    away = row_site != home_site[loc["subscriber_id"].to_numpy()]
    assert is_local.any() and not away[is_local].any()
    # Everybody else does go out (the test would pass vacuously if nobody moved).
    assert away[~is_local].mean() > 0.2
    # ... and locals still move between the cells of their site.
    moves = loc[is_local & (loc["reason"].astype(str) == "cell_change")]
    assert len(moves) > 100


@pytest.mark.parametrize("key,value", [("population.local_share", "1.5"), ("population.far_commute_share", "-0.1"),
                                       ("mobility.local_outing_scale", "2"), ("mobility.local_stickiness", "-1"),
                                       ("mobility.local_jump_hops_mean", "0.5"),
                                       ("mobility.local_global_jump_share", "1.1")])
def test_bad_class_knobs_are_one_line_errors(key, value):
    with pytest.raises(ConfigError) as exc:
        config.load(None, [f"{key}={value}"])
    assert len(exc.value.problems) == 1 and key in exc.value.problems[0] and "out of range" in exc.value.problems[0]
