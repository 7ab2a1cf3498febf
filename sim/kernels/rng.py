"""Counter-based random numbers for kernels.

A draw sequence is keyed by ``(stream key, entity, epoch)``: the stream key comes from a named
``np.random.SeedSequence`` (see :mod:`sim.streams`), the entity is usually a subscriber id. The
sequence itself is SplitMix64 (Steele, Lea & Flood 2014), whose output function is a strong
64-bit mixer. Because the state depends only on the key and never on how subscribers are
chunked or which thread runs them, the same seed gives the same draws everywhere.

Kernels keep the state in a local ``np.uint64`` and thread it through ``next_*`` calls, which
return ``(state, value)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, inline="always")
def mix64(z: np.uint64) -> np.uint64:
    """SplitMix64 finaliser: a bijective 64-bit mixer."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def seed_state(key: np.uint64, entity: np.int64, epoch: np.int64) -> np.uint64:
    """Initial state of the sequence for one entity in one epoch of one stream."""
    a = mix64(np.uint64(entity) + _GOLDEN)
    b = mix64(np.uint64(epoch) * _M2 + a)
    return mix64(key ^ b)


@njit(cache=True, inline="always")
def next_u64(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    state = state + _GOLDEN
    return state, mix64(state)


@njit(cache=True, inline="always")
def next_uniform(state: np.uint64) -> tuple[np.uint64, float]:
    """A float in the open interval (0, 1)."""
    state, z = next_u64(state)
    return state, (float(z >> _S11) + 0.5) * _INV53


@njit(cache=True, inline="always")
def next_exponential(state: np.uint64, rate: float) -> tuple[np.uint64, float]:
    state, u = next_uniform(state)
    return state, -math.log(u) / rate


@njit(cache=True, inline="always")
def next_normal(state: np.uint64) -> tuple[np.uint64, float]:
    """Standard normal by Box-Muller (one of the pair; two uniforms per draw)."""
    state, u1 = next_uniform(state)
    state, u2 = next_uniform(state)
    return state, math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True, inline="always")
def next_lognormal(state: np.uint64, mu: float, sigma: float) -> tuple[np.uint64, float]:
    state, z = next_normal(state)
    return state, math.exp(mu + sigma * z)


@njit(cache=True, inline="always")
def next_below(state: np.uint64, n: np.int64) -> tuple[np.uint64, np.int64]:
    """An integer in 0..n-1 (n >= 1)."""
    state, u = next_uniform(state)
    k = np.int64(u * n)
    if k >= n:
        k = n - 1
    return state, k


@njit(cache=True, inline="always")
def next_poisson(state: np.uint64, mean: float) -> tuple[np.uint64, np.int64]:
    """Poisson by inversion (means here are small: per subscriber and epoch)."""
    state, u = next_uniform(state)
    p = math.exp(-mean)
    cdf = p
    k = np.int64(0)
    while u > cdf and k < 10_000:
        k += 1
        p *= mean / k
        cdf += p
    return state, k


@njit(cache=True)
def search_cdf(cdf: np.ndarray, lo: np.int64, hi: np.int64, u: float) -> np.int64:
    """Index i in [lo, hi) of the first cdf[i] > u * cdf[hi-1] (inclusive cumulative weights)."""
    target = u * cdf[hi - 1]
    a = lo
    b = hi - 1
    while a < b:
        m = (a + b) // 2
        if cdf[m] > target:
            b = m
        else:
            a = m + 1
    return a


@njit(cache=True)
def uniforms(key: np.uint64, entity: np.int64, epoch: np.int64, n: np.int64) -> np.ndarray:
    """``n`` uniforms of one sequence (tests and diagnostics)."""
    out = np.empty(n, dtype=np.float64)
    st = seed_state(key, entity, epoch)
    for i in range(n):
        st, out[i] = next_uniform(st)
    return out
