"""Where demand shards run (sim/executors.py): local shards stepped by several threads give the same
events as one thread, in the same order; Dask workers give the same run bytes as one process."""

from __future__ import annotations

import numpy as np

from telcosim.sim.engine import Simulation
from telcosim.sim.executors import LocalDemand
from telcosim.sim.mobility import place_target
from telcosim.sim.sessions import attempt_rates
from telcosim.sim.shards import EpochInputs, ShardState
from tests.conftest import small_scenario


def _epochs(threads: int, shard_size: int, n_epochs: int = 6) -> list:
    sim = Simulation(small_scenario(**{"population.subscribers": 1500}))
    h0, wd0 = sim.local_hour(0)
    state = ShardState.initial(sim.population, h0, wd0, sim.scenario.seed)
    ex = LocalDemand(sim._demand_inputs(), sim.population, state, shard_size, threads=threads)
    out = []
    try:
        for e in range(n_epochs):
            hour, wd = sim.local_hour(e // 4)
            ep = EpochInputs(e, place_target(hour, wd), attempt_rates(sim.scenario.behaviour, sim.profile, hour, wd))
            out.append(ex.step(ep))
    finally:
        ex.close()
    return out, ex


def test_threads_do_not_change_the_events():
    ref, one = _epochs(threads=1, shard_size=10_000)
    assert len(one.shards) == 1 and one.threads == 1
    for threads, size in ((2, 10_000), (3, 100), (4, 1)):
        got, ex = _epochs(threads=threads, shard_size=size)
        assert ex.threads == threads and len(ex.shards) >= threads
        for (m0, a0, s0), (m1, a1, s1) in zip(ref, got, strict=True):
            for x, y in zip((*m0, *a0, s0), (*m1, *a1, s1), strict=True):
                np.testing.assert_array_equal(x, y)


def test_one_and_two_dask_workers_match_a_single_process(tmp_path):
    import json

    from telcosim.scenarios.runner import run

    def files(out):
        return json.loads((out / "manifest.json").read_text())["files"]

    sc = small_scenario(**{"population.subscribers": 2500})
    run(sc, tmp_path / "local")
    run(sc, tmp_path / "w1", workers=1, chunk_subscribers=700)
    run(sc, tmp_path / "w2", workers=2, chunk_subscribers=700)
    assert files(tmp_path / "w1") == files(tmp_path / "local") == files(tmp_path / "w2")
