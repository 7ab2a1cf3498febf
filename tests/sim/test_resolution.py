"""Property-based checks of the resolution kernel on random small worlds (hypothesis).

Whatever the arrivals, moves and capacities: every leg's outcome is accounted for in its cell,
channels never exceed capacity, everything in progress is released after the drain, data
volumes are served in full, and durations are sane.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telcosim.sim.config import NetworkConfig
from telcosim.sim.engine import _Resolver, counterpart_cells_of
from telcosim.sim.kernels import demand
from telcosim.sim.kernels.records import SVC_DATA, SVC_VOICE
from telcosim.sim.kernels.state import C_FREE_CALLS, C_FREE_DATA, C_NEXT_TICK
from telcosim.sim.network import build_network
from telcosim.sim.shards import ATT_DTYPES, MOB_DTYPES
from telcosim.sim.streams import generator

NET = build_network(NetworkConfig(layout="hex", sites=2, sectors=3), generator(0, "network.layout"))
EPOCH = 3_600_000


@st.composite
def worlds(draw):
    n_subs = draw(st.integers(2, 12))
    caps = draw(st.lists(st.integers(0, 3), min_size=NET.n_cells, max_size=NET.n_cells))
    data_caps = draw(st.lists(st.floats(0.5, 50.0), min_size=NET.n_cells, max_size=NET.n_cells))
    n_att = draw(st.integers(0, 60))
    att = []
    for _ in range(n_att):
        t = draw(st.integers(0, EPOCH - 1))
        s = draw(st.integers(0, n_subs - 1))
        kind = draw(st.sampled_from([demand.VOICE_MO, demand.SMS_MO, demand.DATA, demand.VOICE_MT_OFFNET, demand.SMS_MT_OFFNET]))
        cp = -1
        if kind in (demand.VOICE_MO, demand.SMS_MO) and draw(st.booleans()):
            cp = draw(st.integers(0, n_subs - 1).filter(lambda x, s=s: x != s)) if n_subs > 1 else -1
        dur = draw(st.integers(1000, 1_800_000)) if kind in (demand.VOICE_MO, demand.VOICE_MT_OFFNET) else 0
        vol = draw(st.integers(1, 50_000_000)) if kind == demand.DATA else 0
        att.append((t, s, kind, cp, dur, vol))
    n_mob = draw(st.integers(0, 40))
    mob = [(draw(st.integers(0, EPOCH - 1)), draw(st.integers(0, n_subs - 1)), draw(st.integers(0, NET.n_cells - 1)))
           for _ in range(n_mob)]
    start = draw(st.lists(st.integers(0, NET.n_cells - 1), min_size=n_subs, max_size=n_subs))
    return n_subs, caps, data_caps, sorted(att, key=lambda a: a[0]), sorted(mob, key=lambda m: m[0]), start


def _check_data_lists(res):
    """Every data session in progress is in its cell's list exactly once, and the counts agree."""
    seen = 0
    for c in range(NET.n_cells):
        j, steps = res.sharing.head[c], 0
        while j >= 0:
            assert res.sessions.cell[j] == c
            steps += 1
            assert steps <= res.n_data, "a cycle in a cell's data-session list"
            j = res.sessions.cnext[j]
        assert steps == res.sharing.n_sess[c]
        seen += steps
    assert seen == res.active_data()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.sampled_from([0.0, 0.9]))
def test_resolution_invariants(world, redial_prob):
    n_subs, caps, data_caps, att, mob, start = world
    interval = 900_000
    n_int = EPOCH // interval
    # With redials, a call can be set up in the cell of its first attempt while its party's data
    # sessions have moved on: the state must stay consistent.
    res = _Resolver(NET, n_subs, n_int, ue_peak_mbps=20.0, redial_key=5, redial_prob=redial_prob,
                    redial_delay_s=120.0, redial_max=3, window_end_ms=EPOCH)
    res.channels.cap[:] = caps
    res.sharing.cap_bpms[:] = np.asarray(data_caps) * 1e6 / 8 / 1000
    res.counters[C_NEXT_TICK] = interval
    # The engine's column types (sim.shards), so the kernels run as compiled for a real run.
    cols = [np.asarray([a[i] for a in att], dt) for i, dt in enumerate(ATT_DTYPES)]
    # The serving cell of each attempt: its subscriber's latest move at or before it.
    cols.append(np.asarray([max(((m[0], m[2]) for m in mob if m[1] == a[1] and m[0] <= a[0]),
                                default=(-1, start[a[1]]))[1] for a in att], np.int32))
    mcols = [np.asarray([m[i] for m in mob], dt) for i, dt in enumerate(MOB_DTYPES[:3])] + [np.zeros(len(mob), MOB_DTYPES[3])]
    cols.append(counterpart_cells_of(tuple(mcols), cols[0], cols[3], np.asarray(start, np.int32)))
    kinds = cols[2]
    res.ensure_slots(int(np.isin(kinds, [demand.VOICE_MO, demand.VOICE_MT_OFFNET]).sum()),
                     int((kinds == demand.DATA).sum()))
    cdr1, loc1 = res.resolve(EPOCH, interval, tuple(mcols), tuple(cols), 0.1)
    _check_data_lists(res)
    empty_m = tuple(np.zeros(0, dt) for dt in MOB_DTYPES)
    empty_a = (*(np.zeros(0, dt) for dt in ATT_DTYPES), np.zeros(0, np.int32), np.zeros(0, np.int32))
    cdr2, loc2 = res.resolve(2**62 - 1, interval, empty_m, empty_a, 0.1)
    cdr = {k: np.concatenate([cdr1[k], cdr2[k]]) for k in cdr1}

    # Everything in progress ended and was released.
    assert (res.channels.busy == 0).all() and (res.sharing.n_sess == 0).all()
    assert (res.subs.st == -1).all() and (res.subs.bits == 0).all()
    assert res.counters[C_FREE_CALLS] == res.n_calls and res.counters[C_FREE_DATA] == res.n_data
    # Conservation per cell and interval, and agreement with the CDR.
    k = res.kpi
    assert (k["att"] == k["comp"] + k["block"] + k["drop"] + k["fail"]).all()
    voice = cdr["svc"] == SVC_VOICE
    assert voice.sum() == k["att"].sum()
    assert np.array_equal(np.bincount(cdr["cell"][voice], minlength=NET.n_cells), k["att"].sum(axis=0))
    # Capacity.
    assert (k["busy_peak"] <= np.asarray(caps)[None, :]).all()
    # Data: one record per attempt, volume served in full, never faster than the UE peak.
    data = cdr["svc"] == SVC_DATA
    vols = cols[5][kinds == demand.DATA]
    assert data.sum() == len(vols)
    assert cdr["down"][data].sum() + cdr["up"][data].sum() == vols.sum()
    dur_ms = np.round(cdr["dur_s"] * 1000.0)  # durations are whole ms
    assert (dur_ms[data] >= 0).all()
    rate_ok = dur_ms[data] > 0
    assert (cdr["down"][data][rate_ok] / dur_ms[data][rate_ok] <= res.ue_bpms * 1.001 + 1).all()
    # Durations: never negative, a voice leg never longer than requested.
    assert (dur_ms >= 0).all()
    assert dur_ms[voice].max(initial=0) <= cols[4].max(initial=0)
    # Record ids are unique; every location row names a real subscriber and cell.
    assert len(np.unique(cdr["rec"])) == len(cdr["rec"])
    loc_sub = np.concatenate([loc1["sub"], loc2["sub"]])
    assert ((loc_sub >= 0) & (loc_sub < n_subs)).all()
