"""Random failures with common causes: the topology, the laws (checked against their closed forms
and by fitting the schedule's failure times) and the published figures of random_failures_week,
all on the failure schedule alone (no traffic is simulated here: quick)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from telcosim import scenarios
from telcosim.scenarios import failures
from telcosim.scenarios.incidents import parse
from telcosim.sim.config import NetworkConfig
from telcosim.sim.errors import ConfigError
from telcosim.sim.network import build_network
from telcosim.sim.streams import generator

YEAR_MS = failures.HOURS_PER_YEAR * 3_600_000


def _net(sites: int = 120):
    cfg = NetworkConfig(layout="random", sites=sites, sectors=3, radius_km=9.0)
    return build_network(cfg, generator(1, "network.layout"))


def _level(**kw):
    lv = {"law": "exponential", "effect": "down", "repair": {"law": "lognormal", "median_hours": 3.0, "sigma": 0.8}}
    lv.update(kw)
    return lv


def test_topology_groups_are_spatial_balanced_and_deterministic():
    net = _net()
    topo = failures.build_topology(net, 8, 6, 12)
    assert np.bincount(topo.agg_node).tolist() == [8] * 15
    assert np.bincount(topo.ring).tolist() == [5, 5, 5]  # 15 nodes in ceil(15 / 6) rings
    assert np.bincount(topo.power_domain).tolist() == [12] * 10
    again = failures.build_topology(net, 8, 6, 12)
    assert all(np.array_equal(a, b) for a, b in zip(topo.columns().values(), again.columns().values(), strict=True))
    # Compact: a node's sites lie closer together than random groups of the same size.
    _, first = np.unique(net.site_id, return_index=True)
    x, y = net.x_km[first], net.y_km[first]

    def spread(groups):
        return np.mean([np.hypot(x[groups == g] - x[groups == g].mean(), y[groups == g] - y[groups == g].mean()).mean()
                        for g in np.unique(groups)])
    shuffled = generator(1, "incidents.failures", 99).permutation(topo.agg_node)
    assert spread(topo.agg_node) < 0.5 * spread(shuffled)
    # Power domains straddle the transport groups rather than copying them.
    assert len({(a, p) for a, p in zip(topo.agg_node, topo.power_domain, strict=True)}) > 15


@pytest.mark.parametrize("lv", [_level(law="exponential", per_year=2.0),
                                _level(law="weibull", shape=0.6, per_year=2.0),
                                _level(law="hyperexponential", cv=2.5, per_year=2.0)],
                         ids=["exponential", "weibull", "hyperexponential"])
def test_laws_have_their_mean_cv_and_residual(lv):
    g = generator(3, "incidents.failures", 1)
    u = g.random((200_000, 2))
    x = failures.time_to_failure_h(lv, 1.0, u, False)
    r = failures.time_to_failure_h(lv, 1.0, u, True)
    mean = failures.HOURS_PER_YEAR / 2.0
    cv = {"exponential": 1.0, "hyperexponential": 2.5,
          "weibull": math.sqrt(math.gamma(1 + 2 / 0.6) / math.gamma(1 + 1 / 0.6) ** 2 - 1)}[lv["law"]]
    assert x.mean() == pytest.approx(mean, rel=0.04)
    assert x.std() / x.mean() == pytest.approx(cv, rel=0.08)
    # The equilibrium residual life has mean E[X^2] / (2 E[X]) = mean (1 + cv^2) / 2.
    assert r.mean() == pytest.approx(mean * (1 + cv**2) / 2, rel=0.06)


def _up_times(fails, until_ms):
    """Per unit, the up times that follow a repair: complete (the next failure came) or censored
    at the end of the schedule. The first up time of each unit is a residual life: left out."""
    done, cut = [], []
    by_unit: dict[tuple, list] = {}
    for f in fails:
        by_unit.setdefault((f.level, f.unit), []).append(f)
    for fs in by_unit.values():
        done += [f.up_ms for f in fs if not f.first]
        if until_ms > fs[-1].t_repair_ms:
            cut.append(until_ms - fs[-1].t_repair_ms)
    return np.array(done, float) / 3.6e6, np.array(cut, float) / 3.6e6


def test_fitted_law_of_the_schedule_is_the_configured_weibull():
    net = _net()
    topo = failures.build_topology(net, 8, 6, 12)
    params = {"acceleration": 1.0, "site": _level(law="weibull", shape=0.6, per_year=1.0)}
    until = int(20 * YEAR_MS)
    fails = failures.schedule(params, topo, np.arange(120), 7, until)
    done, cut = _up_times(fails, until)
    assert len(done) > 1500
    shape, _, scale = stats.weibull_min.fit(stats.CensoredData(uncensored=done, right=cut), floc=0)
    # The MLE's standard error for the shape is about 0.78 k / sqrt(n): 0.013 here.
    assert shape == pytest.approx(0.6, abs=0.04)
    assert scale * math.gamma(1 + 1 / shape) == pytest.approx(failures.HOURS_PER_YEAR, rel=0.1)
    # The rate is per_year from the first hour (no burst of early failures at the window's start).
    first_year = sum(f.t_fail_ms < YEAR_MS for f in fails)
    assert first_year == pytest.approx(120, rel=0.2)


def test_upstream_failures_take_every_site_under_them():
    net = _net()
    topo = failures.build_topology(net, 8, 6, 12)
    params = {"acceleration": 1.0, "node": _level(per_year=3.0), "power": _level(per_year=3.0)}
    fails = failures.schedule(params, topo, np.array([5]), 2, int(YEAR_MS))
    assert fails
    for f in fails:
        under = topo.units(f.level)
        assert f.unit == under[5]
        assert f.sites.tolist() == np.flatnonzero(under == f.unit).tolist()
    assert {f.level for f in fails} == {"node", "power"}


def _compiled(extra):
    sc = scenarios.load("random_failures_week", ["population.subscribers=1000"] + extra)
    net = build_network(sc.network, generator(sc.seed, "network.layout"))
    incidents = parse(sc, net, "random_failures_week.toml")
    return sc, net, incidents


def test_random_failures_week_matches_its_published_figures():
    """docs/scenarios.md, random_failures_week: 0.90 site outages per site-year, 80% of them
    caused upstream, failure times Weibull with shape 0.7 (CV above 1). Measured on the
    built-in's own schedule over 200 years (the run uses its first week): with 8 nodes of 15
    sites, 60 years leave the rate's standard error near 5%."""
    sc, net, incidents = _compiled([])
    p = incidents[0].params
    topo = failures.build_topology(net, **p["topology"])
    sites = np.unique(net.site_id)
    until = int(200 * YEAR_MS / p["acceleration"])
    fails = failures.schedule(p, topo, sites, sc.seed, until)
    site_years = len(sites) * 200.0  # 200 / acceleration years of run time, at acceleration times the rate
    outages = sum(len(f.sites) for f in fails)
    assert outages / site_years == pytest.approx(0.90, rel=0.1)
    upstream = sum(len(f.sites) for f in fails if f.level != "site") / outages
    assert upstream == pytest.approx(0.80, abs=0.05)
    done, cut = _up_times([f for f in fails if f.level == "site"], until)
    shape, _, _ = stats.weibull_min.fit(stats.CensoredData(uncensored=done, right=cut), floc=0)
    assert shape == pytest.approx(0.7, abs=0.05)  # standard error about 0.008 (4300 failures)
    # Common causes: 80% of site outages come in groups that fail at the same instant, in 23% of
    # the incidents (8 nodes of 15 sites and 10 power domains at 0.36 a year against 120 sites at 0.18).
    assert np.mean([len(f.sites) > 1 for f in fails]) == pytest.approx(6.48 / 28.08, rel=0.1)


def test_bad_failure_settings_every_problem_with_its_path():
    with pytest.raises(ConfigError) as err:
        _compiled(["incidents[0].site.law=\"gamma\"", "incidents[0].node.shape=-1",
                   "incidents[0].power.cv=0.5", "incidents[0].power.loss=0.2",
                   "incidents[0].topology.sites_per_node=0", "incidents[0].mtbf_hours=500"])
    text = "\n".join(err.value.problems)
    for needle in ("incidents[0].site.law: 'gamma' is not a law of time to failure",
                   "incidents[0].node.shape: -1 is not a number > 0",
                   "incidents[0].power.cv: 0.5 is not a number > 1",
                   "incidents[0].power.loss: has no effect with effect = 'down'",
                   "incidents[0].topology.sites_per_node: 0 is not a whole number >= 1",
                   "incidents[0].mtbf_hours: replaced by the laws per level"):
        assert needle in text, (needle, text)
