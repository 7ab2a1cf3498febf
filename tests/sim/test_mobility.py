"""Mobility while moving (sim/mobility.py, the mobility kernel): the serving-cell dwell dispersion
(``mobility.dwell_log_sigma``). Each hop's crossing time is multiplied by a mean-one lognormal
factor, so dwells spread out while the mean time per hop (distance / speed), the route and the
handovers per trip stay as they were."""

from __future__ import annotations

import json
import math
import tomllib
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from telcosim.calibration.derive_defaults import hop_dwell_log_sigma
from telcosim.scenarios.runner import run
from telcosim.sim import config
from telcosim.sim.errors import ConfigError
from telcosim.sim.kernels import mobility
from tests.conftest import small_scenario

N_CELLS = 41        # a straight road of cells 0.5 km apart
SPACING_KM = 0.5
SPEED_KMH = 36.0    # 50 s per hop
HOP_MS = SPACING_KM / SPEED_KMH * 3.6e6
SUBS = 2500


def _line_network():
    cx = np.arange(N_CELLS) * SPACING_KM
    cy = np.zeros(N_CELLS)
    nbr = [[k - 1] * (k > 0) + [k + 1] * (k < N_CELLS - 1) for k in range(N_CELLS)]
    ptr = np.cumsum([0] + [len(a) for a in nbr]).astype(np.int64)
    idx = np.array([c for a in nbr for c in a], np.int32)
    return cx, cy, ptr, idx


def _trips(sigma: float, first: int = 0, count: int = SUBS):
    """Subscribers ``first .. first+count-1``, each mid-trip from cell 0 to the last cell (first
    hop at t = 0, no ping-pongs, no periodic updates), driven through one long epoch. Returns
    (time, subscriber, cell) of their cell changes."""
    cx, cy, ptr, idx = _line_network()
    room = 3 * N_CELLS + 8
    cap = count * room
    out = (np.zeros(cap, np.int64), np.zeros(cap, np.int32), np.zeros(cap, np.int32), np.zeros(cap, np.int8))
    cells = mobility.CellMap(cx, cy, ptr, idx, np.ones(1))
    params = mobility.MobilityParams(
        stickiness=1.0, rho=0.5, gamma=0.2, hops_mean=2.0, global_share=0.0, speed_mu=math.log(SPEED_KMH),
        speed_sigma=0.0, pp_prob=0.0, pp_dwell_ms=4000.0, dwell_sigma=sigma, periodic_ms=np.int64(0),
        trip_span_ms=np.int64(3_600_000), classes=np.ones((1, 4)))  # no ping-pongs, no periodic updates, no classes
    travellers = mobility.Travellers(first, np.zeros(count, np.int32), np.zeros(count, np.int32), np.zeros(0, np.int8),
                                     np.zeros(count, np.int64))
    trips = mobility.Trips(
        cur_cell=np.zeros(count, np.int32), place=np.zeros(count, np.int8), dest=np.full(count, N_CELLS - 1, np.int32),
        next_hop_t=np.zeros(count, np.int64), speed_kmh=np.full(count, SPEED_KMH),
        visit_cell=np.full((count, 4), -1, np.int32), visit_count=np.zeros((count, 4), np.int32),
        n_seen=np.zeros(count, np.int32))
    ep = mobility.MobilityEpoch(epoch=7, t0=np.int64(0), t1=np.int64(30 * 86_400_000), decide=False,
                                place_target=np.array([1.0, 0.0, 0.0]), force=np.zeros(0, np.int32))
    n, done = mobility.mobility_epoch(np.uint64(12345), cells, params, travellers, trips, ep,
                                      mobility.LocationRows(*out), 0, 0, np.int64(room), np.empty(3))
    assert done == count
    t, sub, cell, kind = (a[:n] for a in out)
    assert (kind == mobility.KIND_CHANGE).all()
    return t, sub, cell


def _hop_times(t, sub):
    same = sub[1:] == sub[:-1]
    return np.diff(t)[same] / 1000.0


def test_no_dispersion_keeps_the_crossing_time():
    t, sub, cell = _trips(0.0, count=50)
    np.testing.assert_array_equal(np.bincount(sub), N_CELLS - 1)
    np.testing.assert_array_equal(_hop_times(t, sub), HOP_MS / 1000.0)


def test_dispersion_keeps_route_and_mean_hop_time():
    sigma = 1.166
    t, sub, cell = _trips(sigma)
    # Same route: every subscriber makes all the hops, in order, and arrives.
    np.testing.assert_array_equal(np.bincount(sub, minlength=SUBS), N_CELLS - 1)
    np.testing.assert_array_equal(cell.reshape(SUBS, -1), np.tile(np.arange(1, N_CELLS), (SUBS, 1)))
    hop = _hop_times(t, sub)
    assert len(hop) == SUBS * (N_CELLS - 2)
    # The factor has mean one: the mean hop time (so handovers per minute moving) is unchanged...
    assert hop.mean() == pytest.approx(HOP_MS / 1000.0, rel=0.03)
    trip_s = (t.reshape(SUBS, -1)[:, -1] - t.reshape(SUBS, -1)[:, 0]) / 1000.0
    assert trip_s.mean() == pytest.approx((N_CELLS - 2) * HOP_MS / 1000.0, rel=0.03)
    # ...while the dwells are lognormal around it: median e^(-sigma^2/2) of the mean, log-sd sigma.
    assert np.median(hop) == pytest.approx(HOP_MS / 1000.0 * math.exp(-sigma * sigma / 2), rel=0.04)
    assert np.log(hop).std() == pytest.approx(sigma, rel=0.03)
    assert hop.min() >= 1.0  # a hop still takes at least a second


def test_dispersion_draws_do_not_depend_on_the_chunking():
    whole = _trips(1.166, 0, 300)
    parts = [_trips(1.166, a, 100) for a in (0, 100, 200)]
    for k in range(3):
        np.testing.assert_array_equal(whole[k], np.concatenate([p[k] for p in parts]))


def test_estimator_takes_trip_speed_spread_out_in_quadrature():
    rng = np.random.default_rng(3)
    total = 1.3
    d = np.exp(math.log(25.0) + total * rng.standard_normal(200_000))
    est = hop_dwell_log_sigma(d, 0.5)
    assert est["total"] == pytest.approx(total, rel=0.02)
    assert est["sigma"] == pytest.approx(math.sqrt(total ** 2 - 0.25), rel=0.03)
    assert hop_dwell_log_sigma(d, 2.0)["sigma"] == 0.0  # never imaginary


def test_profile_records_the_data_estimate():
    text = resources.files("telcosim.sim").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
    ho = tomllib.loads(text)["handover"]
    assert 0.5 < ho["dwell_log_sigma"] < 2.0


@pytest.mark.parametrize("value", ["-0.5", "5", "nan"])
def test_bad_dwell_sigma_is_a_config_error(value):
    with pytest.raises(ConfigError) as err:
        config.load(None, [f"mobility.dwell_log_sigma={value}"])
    assert len(err.value.problems) == 1 and "mobility.dwell_log_sigma" in err.value.problems[0]


def _changes(out):
    loc = pq.read_table(out / "locations", columns=["subscriber_id", "time", "reason"])
    loc = loc.filter(pc.is_in(loc.column("reason"), value_set=pa.array(["cell_change", "handover"])))
    sub = loc.column("subscriber_id").to_numpy().astype(np.int64)
    t = pc.cast(loc.column("time"), "int64").to_numpy()
    o = np.lexsort((t, sub))
    sub, t = sub[o], t[o]
    gap = np.diff(t)[sub[1:] == sub[:-1]] / 1000.0
    return len(sub), gap[gap <= 300]


def test_the_knob_reaches_the_run_and_keeps_its_bytes_per_seed(tmp_path):
    on = small_scenario(**{"population.subscribers": 600, "mobility.dwell_log_sigma": 1.166})
    run(on, tmp_path / "on", chunk_subscribers=600)
    run(on, tmp_path / "on_chunks", chunk_subscribers=61)
    run(small_scenario(**{"population.subscribers": 600, "mobility.dwell_log_sigma": 0.0}), tmp_path / "off")
    files = [json.loads((tmp_path / d / "manifest.json").read_text())["files"] for d in ("on", "on_chunks")]
    assert files[0] == files[1]
    n_on, gap_on = _changes(tmp_path / "on")
    n_off, gap_off = _changes(tmp_path / "off")
    assert n_on == pytest.approx(n_off, rel=0.05)  # same routes: as many handovers
    assert np.median(gap_on) < 0.5 * np.median(gap_off)  # dwells while moving spread out
