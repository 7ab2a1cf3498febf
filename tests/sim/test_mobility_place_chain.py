"""The hourly place chain of the mobility kernel against its stationary law."""

from __future__ import annotations

import numpy as np

from telcosim.sim.kernels import mobility
from telcosim.sim.mobility import PLACE_TARGET_WEEKDAY
from telcosim.sim.streams import kernel_key


def test_fixed_chain_occupancy_matches_stationary_distribution():
    # P = s I + (1 - s) 1 pi^T has stationary law pi whatever the start.
    pi = np.array([0.5, 0.3, 0.2])
    s = 0.6
    steps = 400
    chain = mobility.place_chain(kernel_key(11, "mobility"), 2000, steps, np.tile(pi, (steps, 1)), s, 2)
    tail = chain[:, 100:].ravel()
    occupancy = np.bincount(tail, minlength=3) / tail.size
    # Effective sample size is reduced by the chain's autocorrelation s: n (1 - s) / (1 + s).
    n_eff = tail.size * (1 - s) / (1 + s)
    se = np.sqrt(pi * (1 - pi) / n_eff)
    assert np.all(np.abs(occupancy - pi) < 4 * se), (occupancy, pi)
    # Transition frequencies match P.
    a, b = chain[:, :-1].ravel(), chain[:, 1:].ravel()
    p_hat = np.array([[np.mean(b[a == i] == j) for j in range(3)] for i in range(3)])
    p = s * np.eye(3) + (1 - s) * np.tile(pi, (3, 1))
    assert np.abs(p_hat - p).max() < 0.01


def test_time_inhomogeneous_chain_follows_its_periodic_law():
    # With a daily cycle of targets pi_h, the occupancy at hour h converges to the periodic
    # solution of d_h = s d_{h-1} + (1 - s) pi_h.
    s = 0.55
    days = 30
    pis = np.tile(PLACE_TARGET_WEEKDAY, (days, 1))
    chain = mobility.place_chain(kernel_key(12, "mobility"), 3000, 24 * days, pis, s, 0)
    d = np.array([1.0, 0.0, 0.0])
    for _ in range(50):
        for h in range(24):
            d = s * d + (1 - s) * PLACE_TARGET_WEEKDAY[h]
    expected = []
    for h in range(24):
        d = s * d + (1 - s) * PLACE_TARGET_WEEKDAY[h]
        expected.append(d.copy())
    expected = np.array(expected)
    observed = np.array([[np.mean(chain[:, 24 * 5 + h::24] == k) for k in range(3)] for h in range(24)])
    assert np.abs(observed - expected).max() < 0.015
