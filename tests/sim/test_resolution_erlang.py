"""The resolution kernel against Erlang's loss formula.

One cell with C channels fed Poisson calls with exponential holding times at offered load A must
block a share B(C, A) of them (Erlang B) and carry A(1 - B) Erlang. Calls come from distinct
subscribers (off-net, so one leg each) and nobody moves, which is exactly the M/M/C/C loss system.
The standard error comes from batch means, since blocking events are correlated in time.
"""

from __future__ import annotations

import numpy as np
import pytest

from telcosim.sim.config import ByDensity, NetworkConfig
from telcosim.sim.engine import _Resolver
from telcosim.sim.kernels import demand
from telcosim.sim.kernels.records import OUT_BLOCKED, OUT_COMPLETED
from telcosim.sim.kernels.state import C_NEXT_TICK
from telcosim.sim.network import build_network
from telcosim.sim.shards import ATT_DTYPES, MOB_DTYPES
from telcosim.sim.streams import generator


def erlang_b(c: int, a: float) -> float:
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def simulate_loss_system(channels: int, offered: float, calls: int, seed: int):
    net = build_network(NetworkConfig(layout="hex", sites=1, sectors=1,
                                      voice_channels=ByDensity(channels, channels, channels)),
                        generator(seed, "network.layout"))
    assert net.n_cells == 1 and net.voice_channels[0] == channels
    rng = np.random.default_rng(seed)
    hold_ms = 120_000.0
    gaps = rng.exponential(hold_ms / offered, size=calls)
    t = np.floor(np.cumsum(gaps)).astype(np.int64)
    dur = np.maximum(1, np.round(rng.exponential(hold_ms, size=calls))).astype(np.int64)
    horizon = int(t[-1]) + 1
    res = _Resolver(net, calls, n_int=1, ue_peak_mbps=10.0)
    res.counters[C_NEXT_TICK] = 2**62  # one KPI interval covering everything
    res.ensure_slots(calls, 0)
    # The engine's column types (sim.shards), so the kernels run as compiled for a real run.
    t_, sub_, kind_, cp_, dur_, vol_ = ATT_DTYPES
    att = (t.astype(t_), np.arange(calls, dtype=sub_), np.full(calls, demand.VOICE_MT_OFFNET, kind_),
           np.full(calls, -1, cp_), dur.astype(dur_), np.zeros(calls, vol_), np.zeros(calls, np.int32),
           np.full(calls, -1, np.int32))
    empty_m = tuple(np.zeros(0, dt) for dt in MOB_DTYPES)
    cdr, _ = res.resolve(2**62 - 1, 2**62, empty_m, att, 0.0)
    order = np.argsort(cdr["t"], kind="stable")
    blocked = cdr["out"][order] == OUT_BLOCKED
    assert set(np.unique(cdr["out"])) <= {OUT_BLOCKED, OUT_COMPLETED}
    assert len(blocked) == calls
    carried_ms = np.where(blocked, 0.0, cdr["dur_s"][order] * 1000.0)
    return blocked, carried_ms, horizon, res


@pytest.mark.parametrize("channels,offered", [(30, 20.34), (30, 25.0), (10, 7.0)])
def test_blocking_matches_erlang_b(channels, offered):
    calls = 400_000
    blocked, carried_ms, horizon, res = simulate_loss_system(channels, offered, calls, seed=channels * 1000 + int(offered))
    expected = erlang_b(channels, offered)
    batches = np.array_split(blocked, 40)
    means = np.array([b.mean() for b in batches])
    se = means.std(ddof=1) / np.sqrt(len(means))
    assert abs(blocked.mean() - expected) <= 3 * se, (blocked.mean(), expected, se)
    # Carried traffic A(1 - B): holding time served per unit time, batch-means error again.
    carried = carried_ms.sum() / horizon
    per_batch = np.array([c.sum() for c in np.array_split(carried_ms, 40)]) / (horizon / 40)
    se_c = per_batch.std(ddof=1) / np.sqrt(len(per_batch))
    assert abs(carried - offered * (1 - expected)) <= 3 * se_c + 0.01 * offered
    # Busy channels never exceed the cell's channels, and all are released at the end.
    assert res.kpi["busy_peak"].max() <= channels
    assert res.channels.busy[0] == 0


def test_erlang_b_formula_reference_values():
    # Published table values: B(30, 20.34) ~ 1%, B(10, 7) ~ 7.9%.
    assert erlang_b(30, 20.34) == pytest.approx(0.01, abs=5e-4)
    assert erlang_b(10, 7.0) == pytest.approx(0.0787, abs=5e-4)
