"""The population (sim/population.py) and its set-up kernels (sim/kernels/setup.py).

The local mobility class (population.local_share): anchors on the home site, the share drawn as
asked, other subscribers' draws untouched, and in a run a local without outings stays on their site.
The set-up: every network and population array pinned to a digest, the networkx views equal to the
CSRs, and each set-up kernel equal to the plain numpy / Python rule it implements."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from telcosim.scenarios.runner import run
from telcosim.sim import config
from telcosim.sim.engine import Simulation
from telcosim.sim.errors import ConfigError
from telcosim.sim.population import build_population
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


# --- the set-up kernels (sim/kernels/setup.py) against the plain numpy / networkx rules ----------

def _arrays_digest(net, pop) -> str:
    import hashlib

    h = hashlib.sha256()
    arrays = {f"net_{k}": v for k, v in vars(net).items() if isinstance(v, np.ndarray)}
    arrays |= {f"pop_{k}": v for k, v in vars(pop).items() if isinstance(v, np.ndarray)}
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("sets,digest", [
    ({}, "804ed2ee5c5c6e1f"),
    ({"population.local_share": 0.3}, "0acc0b31c8da1803"),
    ({"network.layout": "hex", "network.sites": 91, "population.subscribers": 20000}, "69946d3f25baf3dd"),
    ({"network.layout": "hex", "network.sites": 37, "network.sectors": 6, "population.subscribers": 3000},
     "a3c45be4de1928a5"),
])
def test_setup_arrays_are_those_of_the_python_setup(sets, digest):
    """Every network and population array, byte for byte, pinned to a digest, so that any change in
    what the set-up builds shows here (a deliberate change of the model changes the digests: pin
    the new ones)."""
    from telcosim.sim.network import build_network
    from telcosim.sim.streams import generator

    base = {"network.layout": "random", "network.sites": 30, "network.radius_km": 4.0,
            "population.subscribers": 4000}
    sc = small_scenario(**{**base, **sets}) if sets.get("network.layout") != "hex" else config.load(
        None, [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in sets.items()])
    net = build_network(sc.network, generator(sc.seed, "network.layout"))
    pop = build_population(sc.population, net, sc.seed)
    assert _arrays_digest(net, pop) == digest


def test_networkx_views_match_the_csr():
    sc = small_scenario(**{"population.subscribers": 300})
    sim = Simulation(sc)
    g = sim.network.graph()
    assert sorted(g.edges()) == sorted((c, int(m)) for c in range(sim.network.n_cells)
                                       for m in sim.network.neighbours(c) if c < m)
    pop = sim.population
    s = pop.social_graph()
    assert s.number_of_edges() * 2 == len(pop.contact_idx)
    # Tie strengths are positive and symmetric.
    for a, b, d in list(s.edges(data=True))[:200]:
        assert d["weight"] > 0
        row = pop.contacts(b).tolist()
        k = pop.contact_ptr[b] + row.index(a)
        prev = pop.contact_cdf[k - 1] if k > pop.contact_ptr[b] else 0.0
        assert pop.contact_cdf[k] - prev == pytest.approx(d["weight"], rel=1e-9)


@pytest.fixture(params=[False, True], ids=["one-range", "split"])
def splitting(request, monkeypatch):
    """Kernels on one range, or split into three ranges of a few rows each."""
    from telcosim.sim.kernels import setup

    if request.param:
        monkeypatch.setattr(setup, "_SPLIT_MIN", 7)
        monkeypatch.setattr(setup, "cores", lambda: 3)
    return request.param


def _random_csr(rng, rows: int, empty_ok: bool):
    size = rng.integers(0 if empty_ok else 1, 9, size=rows)
    ptr = np.zeros(rows + 1, np.int64)
    np.cumsum(size, out=ptr[1:])
    return ptr, rng.integers(0, 50, size=int(ptr[-1])).astype(np.int32)


def test_in_row_draws_match_the_numpy_rule(splitting):
    from telcosim.sim.population import _draw_in_rows

    rng = np.random.default_rng(3)
    ptr, idx = _random_csr(rng, 40, empty_ok=False)
    weight = rng.random(50) * (rng.random(50) < 0.7)  # zero weights too, and whole rows of them
    rows = rng.integers(0, 40, size=5000)
    got_w = _draw_in_rows(np.random.default_rng(9), ptr, idx, rows, weight)
    got_u = _draw_in_rows(np.random.default_rng(9), ptr, idx, rows)
    u = np.random.default_rng(9).random(len(rows))
    cum = np.cumsum(weight[idx])
    lo = np.where(ptr[rows] > 0, cum[ptr[rows] - 1], 0.0)
    target = lo + u * (cum[ptr[rows + 1] - 1] - lo)
    want_w = idx[np.minimum(np.searchsorted(cum, target, side="right"), ptr[rows + 1] - 1)]
    size = ptr[rows + 1] - ptr[rows]
    want_u = idx[ptr[rows] + np.minimum((u * size).astype(np.int64), size - 1)]
    np.testing.assert_array_equal(got_w, want_w)
    np.testing.assert_array_equal(got_u, want_u)
    assert got_w.dtype == got_u.dtype == np.int32


def test_symmetric_csr_matches_sorted_unique_keys(splitting):
    from telcosim.sim.kernels import setup

    rng = np.random.default_rng(4)
    n = 300
    src = np.sort(rng.integers(0, n, size=2000)).astype(np.int32)
    dst = rng.integers(0, n, size=2000).astype(np.int32)
    dst[::17] = src[::17]  # self pairs are dropped
    dst[1::13] = dst[::13][:len(dst[1::13])]  # and repeated pairs merged
    ptr, idx = setup.symmetric_csr(n, src, dst)
    keep = src != dst
    key = np.unique(np.concatenate([src[keep].astype(np.int64) * n + dst[keep], dst[keep].astype(np.int64) * n + src[keep]]))
    np.testing.assert_array_equal(idx, (key % n).astype(np.int32))
    np.testing.assert_array_equal(ptr[1:], np.cumsum(np.bincount(key // n, minlength=n)))


def test_pair_uniforms_and_row_cumulative_match_numpy():
    from telcosim.sim.kernels import setup

    rng = np.random.default_rng(5)
    ptr, idx = _random_csr(rng, 60, empty_ok=True)
    key = np.uint64(0xD1B54A32D192ED03)
    lo, hi = 7, len(idx) - 3
    h0, h1 = np.empty(hi - lo), np.empty(hi - lo)
    setup.pair_uniforms(lo, hi, ptr, idx, key, h0, h1)
    row = np.repeat(np.arange(60), np.diff(ptr))[lo:hi].astype(np.uint64)
    a, b = np.minimum(row, idx[lo:hi].astype(np.uint64)), np.maximum(row, idx[lo:hi].astype(np.uint64))
    with np.errstate(over="ignore"):
        z = a * np.uint64(0x9E3779B97F4A7C15) ^ (b + key)
        for salt, got in ((0x632BE59BD9B4E019, h0), (0x8CB92BA72F3D8DD7, h1)):
            v = z ^ np.uint64(salt)
            v = (v ^ (v >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            v = (v ^ (v >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            v = v ^ (v >> np.uint64(31))
            np.testing.assert_array_equal(got, ((v >> np.uint64(11)).astype(np.float64) + 0.5) / 9007199254740992.0)
    w = rng.lognormal(size=len(idx))
    want = np.cumsum(w)
    want -= np.repeat(np.where(ptr[:-1] > 0, want[np.maximum(ptr[:-1] - 1, 0)], 0.0), np.diff(ptr))
    setup.row_cumulative(ptr, w)
    np.testing.assert_array_equal(w, want)


def test_neighbourhood_csrs_match_python_sets():
    from telcosim.sim.kernels import setup

    rng = np.random.default_rng(6)
    ptr, idx = _random_csr(rng, 50, empty_ok=True)
    idx %= 50
    p2, i2 = setup.two_hop(ptr, idx)
    for c in range(50):
        near = {c} | {int(m) for m in idx[ptr[c]:ptr[c + 1]]}
        near |= {int(q) for m in idx[ptr[c]:ptr[c + 1]] for q in idx[ptr[m]:ptr[m + 1]]}
        assert i2[p2[c]:p2[c + 1]].tolist() == sorted(near)
    site = rng.integers(0, 12, size=30)
    ps, is_ = setup.own_site(site)
    for c in range(30):
        assert is_[ps[c]:ps[c + 1]].tolist() == ([k for k in range(30) if site[k] == site[c] and k != c] or [c])
    res_ptr = np.concatenate([[0], np.cumsum(rng.integers(0, 2, size=50))])
    po, io = setup.inhabited_neighbourhood(ptr, idx, res_ptr)
    for c in range(50):
        cand = [k for k in [c, *idx[ptr[c]:ptr[c + 1]].tolist()] if res_ptr[k + 1] > res_ptr[k]] or [c]
        assert io[po[c]:po[c + 1]].tolist() == cand
    home = rng.integers(0, 9, size=400).astype(np.int32)
    np.testing.assert_array_equal(setup.stable_order(home, 9), np.argsort(home, kind="stable"))


def test_contact_kernels_match_the_numpy_rule(splitting):
    """Local cell by resident count, resident by a uniform (a pick in an empty cell, or past the
    last subscriber, is clipped to the last valid index), then local or global."""
    from telcosim.sim.kernels import setup

    rng = np.random.default_rng(8)
    n_cells, n, m = 30, 500, 4000
    home = rng.integers(0, n_cells - 3, size=n).astype(np.int32)  # the last cells have nobody
    by_home = np.argsort(home, kind="stable").astype(np.int32)
    res_ptr = np.zeros(n_cells + 1, np.int64)
    np.cumsum(np.bincount(home, minlength=n_cells), out=res_ptr[1:])
    one_ptr, one_idx = _random_csr(rng, n_cells, empty_ok=False)
    one_idx %= n_cells
    one_idx[one_ptr[0]:one_ptr[1]] = n_cells - 1  # home cell 0's row: only an empty cell
    cum = np.cumsum((res_ptr[1:] - res_ptr[:-1]).astype(np.float64)[one_idx] + 1e-12)
    src = np.sort(rng.integers(0, n, size=m)).astype(np.int32)
    u_cell, u_pick, u_local = rng.random(m), rng.random(m), rng.random(m)
    global_dst = rng.integers(0, n, size=m).astype(np.int32)
    cell = np.empty(m, np.int32)
    setup.split(setup.local_cells, m, src, home, cum, one_ptr, one_idx, u_cell, cell)
    dst = np.empty(m, np.int32)
    setup.split(setup.local_contacts, m, cell, res_ptr, by_home, u_pick, dst)
    setup.split(setup.local_or_global, m, u_local, 0.8, global_dst, dst)
    rows = home[src].astype(np.int64)
    lo = np.where(one_ptr[rows] > 0, cum[one_ptr[rows] - 1], 0.0)
    target = lo + u_cell * (cum[one_ptr[rows + 1] - 1] - lo)
    want_cell = one_idx[np.minimum(np.searchsorted(cum, target, side="right"), one_ptr[rows + 1] - 1)]
    np.testing.assert_array_equal(cell, want_cell)
    size = res_ptr[want_cell + 1] - res_ptr[want_cell]
    pick = np.minimum((u_pick * size).astype(np.int64), np.maximum(size - 1, 0))
    want = np.where(u_local < 0.8, by_home[np.minimum(res_ptr[want_cell] + pick, n - 1)], global_dst)
    np.testing.assert_array_equal(dst, want)
    assert (size == 0).any()  # the clipping is exercised
