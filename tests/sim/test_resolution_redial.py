"""Redial behaviour: a call that does not connect is dialled again, by the same subscriber, later.

The small congested city blocks and finds parties busy often enough that redials are common; each
redial must follow a not-connected attempt of the same caller to the same counterpart, the chance
of redialling must match ``behaviour.redial_prob``, chains stop at ``redial_max``, and turning
redials off removes them.
"""

from __future__ import annotations

import numpy as np
import pytest

from telcosim.scenarios.runner import run
from tests.conftest import read, small_scenario


def _voice_mo(run_dir):
    cdr = read(run_dir, "cdr").to_pandas()
    v = cdr[(cdr.service == "voice") & (cdr.direction == "mo")]
    return v.sort_values(["subscriber_id", "start_time", "redial"], kind="stable")


@pytest.fixture(scope="module")
def redial_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("redial") / "run"
    sc = small_scenario(**{"behaviour.redial_prob": 0.7, "behaviour.redial_max": 2,
                           "behaviour.redial_delay_mean_s": 20.0})
    run(sc, out)
    return sc, out


def test_every_redial_follows_a_failed_attempt_of_the_same_caller(redial_run):
    _, out = redial_run
    v = _voice_mo(out)
    redials = v[v.redial > 0]
    assert len(redials) > 100
    assert v.redial.max() <= 2
    firsts = v[v.outcome != "completed"]
    # For each redial, the same caller's not-connected attempt to the same counterpart one try
    # earlier, started before it.
    key = ["subscriber_id", "counterpart_id"]
    prev = firsts.assign(next_try=firsts.redial + 1)[key + ["start_time", "next_try"]]
    joined = redials.merge(prev, left_on=key + ["redial"], right_on=key + ["next_try"], suffixes=("", "_prev"))
    joined = joined[joined.start_time_prev < joined.start_time]
    matched = joined.drop_duplicates("record_id")
    # (An off-net call's counterpart is null on both sides, and pandas joins nulls to nulls.)
    assert len(matched) == len(redials)
    assert redials.counterpart_id.notna().sum() > 100


def test_redial_share_matches_the_probability(redial_run):
    sc, out = redial_run
    v = _voice_mo(out)
    # A not-connected first attempt is redialled with probability redial_prob, unless the redial
    # would fall after the end of the window or the caller is in another call by then; count
    # redials of first attempts against first attempts that failed well before the end.
    end = v.start_time.max()
    early = v[(v.outcome != "completed") & (v.redial == 0) & (v.start_time < end - np.timedelta64(3600, "s"))]
    n_fail = len(early)
    retried = v[v.redial == 1]
    key = ["subscriber_id", "counterpart_id", "cell_id"]
    hit = early.merge(retried[key + ["start_time"]], on=key, suffixes=("", "_r"))
    hit = hit[(hit.start_time_r > hit.start_time)
              & (hit.start_time_r - hit.start_time < np.timedelta64(600, "s"))].drop_duplicates("record_id")
    share = len(hit) / n_fail
    p = sc.behaviour.redial_prob
    se = np.sqrt(p * (1 - p) / n_fail)
    # Callers who are in another call when the redial falls due do not redial: at most a few %.
    assert p - 5 * se - 0.05 < share <= p + 5 * se, (share, n_fail)


def test_no_redials_when_turned_off(tmp_path):
    out = tmp_path / "off"
    run(small_scenario(**{"behaviour.redial_prob": 0.0, "population.subscribers": 1500}), out)
    cdr = read(out, "cdr")
    assert cdr.num_rows > 0
    assert int(np.asarray(cdr.column("redial")).max()) == 0


def test_redials_raise_attempts_under_congestion(tmp_path):
    """The retry storm: with redials, the same demand produces more voice attempts and more
    blocking in a congested city than without."""
    sets = {"population.subscribers": 2500, "network.voice_channels.urban": 1,
            "network.voice_channels.suburban": 1, "network.voice_channels.rural": 1}
    on, off = tmp_path / "on", tmp_path / "off"
    run(small_scenario(**sets, **{"behaviour.redial_prob": 0.9}), on)
    run(small_scenario(**sets, **{"behaviour.redial_prob": 0.0}), off)
    k_on = read(on, "cell_kpis").to_pandas()
    k_off = read(off, "cell_kpis").to_pandas()
    assert k_on.voice_attempts.sum() > k_off.voice_attempts.sum() * 1.02
    assert k_on.voice_blocked.sum() > k_off.voice_blocked.sum()


def test_redialled_call_in_a_stale_cell_keeps_the_state_consistent():
    """A redial is set up in the cell of its first attempt; its party may have moved since and
    then start a data session where it is now. The call's leg and the data session then sit in
    different cells, and the next move must take each from its own cell (moving both from one
    cell would corrupt the other cell's data-session list and hang the run)."""
    from telcosim.sim.config import NetworkConfig
    from telcosim.sim.engine import _Resolver
    from telcosim.sim.kernels import demand
    from telcosim.sim.kernels.state import C_NEXT_TICK
    from telcosim.sim.network import build_network
    from telcosim.sim.streams import generator
    from tests.sim.test_resolution import _check_data_lists

    net = build_network(NetworkConfig(layout="hex", sites=2, sectors=3), generator(0, "network.layout"))
    hour = 3_600_000
    res = _Resolver(net, 3, 1, ue_peak_mbps=20.0, redial_key=1, redial_prob=1.0, redial_delay_s=1.0,
                    redial_max=100, window_end_ms=hour)
    res.counters[C_NEXT_TICK] = hour
    # (t, sub, kind, counterpart, duration_ms, bytes, cell, counterpart_cell)
    att = [(0, 1, demand.VOICE_MO, 2, 30_000, 0, 3, 3),            # 1 talks to 2 for 30 s
           (1_000, 0, demand.VOICE_MO, 1, 1_000_000, 0, 0, 3),     # 0 calls 1: busy, redials
           (40_000, 0, demand.DATA, -1, 0, 10**10, 1, -1)]         # 0 starts data where it is now
    mob = [(1_500, 0, 1, 0), (50_000, 0, 2, 0)]                    # 0 moves to cell 1, then 2
    a_cols = [np.asarray([a[i] for a in att], dt) for i, dt in enumerate(
        (np.int64, np.int32, np.int8, np.int32, np.int32, np.int64, np.int32, np.int32))]
    m_cols = [np.asarray([m[i] for m in mob], dt) for i, dt in enumerate((np.int64, np.int32, np.int32, np.int8))]
    res.ensure_slots(2, 1)
    cdr, _ = res.resolve(hour, hour, tuple(m_cols), tuple(a_cols), 0.1)
    _check_data_lists(res)
    assert res.sharing.n_sess.sum() == 1 and res.sessions.cell[res.subs.st[0, 1]] == 2
    # The redialled call connected once 1 was free, in cell 0 where it was first dialled, and
    # followed its party to cell 2; the data session (started in cell 1) did too.
    done = (cdr["sub"] == 0) & (cdr["svc"] == 0) & (cdr["out"] == 0)
    assert done.sum() == 1
    assert cdr["redial"][done][0] >= 1 and cdr["cell"][done][0] == 0 and cdr["end"][done][0] == 2
    assert cdr["t"][done][0] >= 30_000
