"""The demand kernels stop when their output arrays are full and go on after the caller grows
them; the result must not depend on where they stopped (tiny buffers vs ample ones)."""

from __future__ import annotations

import numpy as np

from telcosim.sim import shards
from telcosim.sim.engine import Simulation
from telcosim.sim.executors import LocalDemand
from telcosim.sim.mobility import place_target
from telcosim.sim.sessions import attempt_rates
from telcosim.sim.shards import EPOCHS_PER_HOUR, EpochInputs, ShardState
from tests.conftest import small_scenario


def _draw(cap_of, epochs: int = 8):
    sc = small_scenario(**{"population.subscribers": 1500})
    sim = Simulation(sc)
    pop = sim.population
    state = ShardState.initial(pop, *sim.local_hour(0), sc.seed)
    ex = LocalDemand(sim._demand_inputs(), pop, state, 700)
    real_fill = shards._fill
    shards._fill = lambda kernel, count, cap, dtypes: real_fill(kernel, count, cap_of(cap), dtypes)
    try:
        out = []
        for e in range(EPOCHS_PER_HOUR * 7, EPOCHS_PER_HOUR * 7 + epochs):  # 7:00 on: trips and calls
            hour, wd = sim.local_hour(e // EPOCHS_PER_HOUR)
            out.append(ex.step(EpochInputs(e, place_target(hour, wd), attempt_rates(sim.scenario.behaviour, sim.profile, hour, wd))))
    finally:
        shards._fill = real_fill
    return out, state


def test_tiny_buffers_give_the_same_events_and_state():
    ample, st_a = _draw(lambda cap: cap * 4)
    tiny, st_t = _draw(lambda cap: 1)
    assert sum(len(m[0]) for m, _, _ in ample) > 1000 and sum(len(a[0]) for _, a, _ in ample) > 100
    for (m1, a1, c1), (m2, a2, c2) in zip(ample, tiny, strict=True):
        for x, y in zip((*m1, *a1, c1), (*m2, *a2, c2), strict=True):
            np.testing.assert_array_equal(x, y)
    for k, v in st_a.arrays().items():
        np.testing.assert_array_equal(v, st_t.arrays()[k], err_msg=k)
