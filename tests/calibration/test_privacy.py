"""OpenDP releases: the noise scale follows the budget and the per-person bound, the ledger adds
up (basic composition), and released values scatter around the truth as the scale says. OpenDP
cannot be seeded, so the checks on values are statistical with wide margins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcosim.calibration.privacy import ExactReleaser, Releaser, cap_rows


def releaser(eps=1.0, delta=0.0, n=1, plan=None, disjoint=False):
    return Releaser(eps, delta, plan or {"s.t": ("s", n)}, disjoint)


def test_laplace_scale_is_sensitivity_over_epsilon():
    r = releaser(eps=0.5, n=2)
    b = r.target("s.t")
    b.histogram("h", np.arange(240) % 24, 24, max_rows=6)
    b.bounded_sum("s", np.ones(10), (0.0, 3.0), max_rows=4)
    h, s = r.ledger.entries
    assert h.mechanism == "laplace" and h.sensitivity == 6 and h.epsilon == pytest.approx(0.25)
    assert h.noise_scale == pytest.approx(6 / 0.25, rel=1e-6)
    assert s.sensitivity == pytest.approx(12.0, rel=1e-6) and s.bounds == [0.0, 3.0]
    assert s.noise_scale == pytest.approx(12.0 / 0.25, rel=1e-6)
    assert r.ledger.totals()["epsilon"] == pytest.approx(0.5) and r.ledger.totals()["delta"] == 0.0
    assert r.ledger.to_json()["composition"].startswith("basic sequential")


def test_laplace_values_scatter_as_the_scale_says():
    r = releaser(eps=2.0, n=200)
    b = r.target("s.t")
    values = np.linspace(0, 1, 50)
    out = np.array([b.bounded_sum("s", values, (0.0, 1.0), 1) for _ in range(200)])
    scale = r.ledger.entries[0].noise_scale
    assert scale == pytest.approx(1 / (2.0 / 200), rel=1e-6)
    err = out - values.sum()
    # Laplace(b): mean 0, std b*sqrt(2); 200 draws: the mean is within 4 standard errors
    assert abs(err.mean()) < 4 * scale * np.sqrt(2) / np.sqrt(200)
    assert 0.75 < err.std() / (scale * np.sqrt(2)) < 1.3
    assert np.median(np.abs(err)) == pytest.approx(scale * np.log(2), rel=0.3)


def test_gaussian_with_delta():
    r = releaser(eps=1.0, delta=1e-6, n=2)
    b = r.target("s.t")
    counts = b.histogram("h", np.zeros(1000, np.int64), 3, max_rows=1)
    total = b.bounded_sum("s", np.ones(1000), (0.0, 1.0), 1)
    for e in r.ledger.entries:
        assert e.mechanism == "gaussian" and e.delta == pytest.approx(5e-7) and e.epsilon <= 0.5 + 1e-9
    assert r.ledger.totals()["delta"] <= 1e-6 + 1e-15
    scale = r.ledger.entries[0].noise_scale
    assert abs(counts[0] - 1000) < 6 * scale and abs(total - 1000) < 6 * scale
    # the classic analytic bound sqrt(2 ln(1.25/delta))/eps is an upper bound on the calibrated scale
    assert scale < np.sqrt(2 * np.log(1.25 / 5e-7)) / 0.5


def test_quantile_picks_a_public_candidate_near_the_truth():
    r = releaser(eps=50.0, n=1)
    cands = np.linspace(0, 100, 101)
    values = np.random.default_rng(3).uniform(0, 100, 5000)
    q = r.target("s.t").quantile("median", values, cands, 0.5, max_rows=1)
    assert q in cands and abs(q - np.median(values)) <= 5
    (e,) = r.ledger.entries
    assert e.mechanism.startswith("exponential") and e.delta == 0 and e.epsilon == pytest.approx(50.0)


def test_budget_plan_and_shares():
    plan = {"a.x": ("a", 1), "a.y": ("a", 2), "b.z": ("b", 1)}
    r = Releaser(3.0, 0.0, plan)
    assert r.share("a.x") == (1.0, 0.0)
    p = Releaser(3.0, 0.0, plan, disjoint_sources=True)
    assert p.share("a.x") == (1.5, 0.0) and p.share("b.z") == (3.0, 0.0)
    b = r.target("a.x")
    b.bounded_sum("s", [1.0], (0, 1), 1)
    with pytest.raises(RuntimeError, match="more releases"):
        b.bounded_sum("s", [1.0], (0, 1), 1)
    with pytest.raises(KeyError):
        r.target("c.w")
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Releaser(bad)
    with pytest.raises(ValueError):
        Releaser(1.0, 1.5)


def test_exact_releaser_spends_nothing():
    r = ExactReleaser({"s.t": ("s", 3)})
    b = r.target("s.t")
    assert b.histogram("h", [0, 0, 2], 3, 1).tolist() == [2.0, 0.0, 1.0]
    assert b.bounded_sum("s", [0.5, 5.0], (0.0, 1.0), 1) == 1.5
    assert b.quantile("q", [1.0, 2.0, 3.0], [0.0, 2.0, 4.0], 0.5, 1) == 2.0
    assert r.ledger.totals() == {"epsilon": 0.0, "delta": 0.0}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=60), st.integers(1, 6), st.integers(0, 5))
def test_cap_rows_bounds_each_person_and_reads_only_their_rows(person, cap, dropped):
    person = np.array(person, np.int64)
    keep = cap_rows(person, cap)
    assert np.all(np.diff(keep) > 0)
    counts = np.bincount(person[keep], minlength=6)
    full = np.bincount(person, minlength=6)
    assert np.all(counts == np.minimum(full, cap))
    # removing one person does not change which rows the others keep (the per-person bound holds)
    others = np.flatnonzero(person != dropped)
    keep2 = others[cap_rows(person[others], cap)]
    assert set(keep2) == set(keep[person[keep] != dropped])
