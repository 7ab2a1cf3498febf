"""The data-volume level: each subscriber's own hourly level of data use, a standard normal that
persists over hours (sessions draw their log-volume partly from it, see
:func:`sim.kernels.sessions.sessions_epoch`).

The level is a transient AR(1) part, correlated ``rho`` from one hour to the next, plus a share
``habit_share`` (of the variance) that is the subscriber's daily habit, a function of the hour of
day alone, correlated ``rho`` between neighbouring hours of the day (across midnight too). Both
are moving sums of keyed standard normals, one per subscriber and hour, so any hour's value is
the same whoever computes it and when: the sessions kernel advances them hour by hour with one
keyed draw each, :func:`volume_levels` computes a run of them directly.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .rng import next_normal, seed_state

# Pseudo-epoch keying the per-subscriber hourly data-volume level (hour j: sub-sequence j).
_LEVEL_EPOCH = np.int64(1 << 41)
_LEVEL_TERMS = 48  # most hours of the moving sum behind the level (the rest weigh < rho^48)
# Pseudo-epoch keying the level's daily habit (hour of day d: sub-sequence d, see _keyed_normal).
_HABIT_EPOCH = np.int64(1 << 42)
# Words between the starts of two hours' sub-sequences of a level sequence (2^32 draws' worth).
_LEVEL_STRIDE = np.uint64((0x9E3779B97F4A7C15 << 32) & 0xFFFFFFFFFFFFFFFF)


@njit(cache=True)
def _ar_sum(seed, at, rho, cycle):
    """``sum_k rho^k g(at - k) / sqrt(sum_k rho^2k)``, g the keyed normals of ``seed``'s hours
    (:func:`_keyed_normal`); k runs over the hours before ``at`` (``cycle`` 0) or once around a
    day of ``cycle`` hours (each g used once, so the variance is exactly 1). A unit-variance AR(1)
    sequence in ``at`` with correlation ``rho`` (around the day: up to the wrap), without state;
    ``K`` and the norm are :func:`ar_terms`'."""
    k_terms, norm = ar_terms(rho, cycle)
    acc = 0.0
    w = 1.0
    for k in range(k_terms):
        acc += w * _keyed_normal(seed, at - k, cycle)
        w *= rho
    return acc / norm


@njit(cache=True)
def ar_terms(rho, cycle):
    """How many terms :func:`_ar_sum` adds (``K``) and the norm it divides by (``sqrt(sum_k<K rho^2k)``)."""
    w = 1.0
    ss = 0.0
    terms = _LEVEL_TERMS if cycle <= 0 else min(_LEVEL_TERMS, cycle)
    k = 0
    while k < terms:
        ss += w * w
        k += 1
        w *= rho
        if w < 1e-3:
            break
    return k, math.sqrt(ss)


@njit(cache=True, inline="always")
def level_seeds(key, s):
    """Subscriber ``s``'s two level sequences (transient, daily habit), seeded once; hour j of
    each is the sub-sequence ``j`` strides on (:func:`_keyed_normal`)."""
    return seed_state(key, s, _LEVEL_EPOCH), seed_state(key, s, _HABIT_EPOCH)


@njit(cache=True, inline="always")
def _keyed_normal(seed, j, cycle):
    """The standard normal of hour ``j`` (taken modulo ``cycle`` when > 0) of a level sequence:
    drawn from the SplitMix64 sequence ``seed`` from word ``j * 2^32`` on (a draw takes one word,
    rarely a few), so every hour has its own words and one mix per draw instead of a reseed."""
    if cycle > 0:
        j = j % cycle
    st = seed + np.uint64(j) * _LEVEL_STRIDE
    st, g = next_normal(st)
    return g


@njit(cache=True)
def _level_step(seed, at, prev, rho, k, norm, cycle):
    """The level's next value at ``at`` from ``prev`` at ``at - 1``, one keyed draw g(at) in the
    usual case. Transient (``cycle`` 0): the AR(1) ``rho * prev + sqrt(1 - rho^2) g(at)`` (unit
    variance kept from its standard-normal start). Daily
    habit (``cycle`` 24): :func:`_ar_sum` around the day, whose K newest terms lose the oldest and gain
    g(at): ``rho * prev + (g(at) - rho^K g(at - K)) / norm``, where g(at - K) is g(at) when K is the
    whole day; equal to the direct sum up to rounding."""
    g = _keyed_normal(seed, at, cycle)
    if cycle <= 0:
        return rho * prev + math.sqrt(1.0 - rho * rho) * g
    if k == cycle:
        return rho * prev + (1.0 - rho ** k) * g / norm
    return rho * prev + (g - rho ** k * _keyed_normal(seed, at - k, cycle)) / norm


@njit(cache=True)
def level_start(key, s, hour, rho, habit_share):
    """The level's two parts in the run's first hour: the transient AR(1) at a keyed standard normal,
    the daily habit at its sum around the day (0 without a habit)."""
    seed_t, seed_h = level_seeds(key, s)
    t = _keyed_normal(seed_t, hour, 0)
    hb = _ar_sum(seed_h, hour % 24, rho, 24) if habit_share > 0.0 else 0.0
    return t, hb


@njit(cache=True, inline="always")
def level_value(t, hb, habit_share):
    """The level (standard normal) from its transient part ``t`` and daily habit ``hb``."""
    return math.sqrt(1.0 - habit_share) * t + math.sqrt(habit_share) * hb


@njit(cache=True)
def level_advance(seed_t, seed_h, hour, t, hb, rho, habit_share, k_t, c_t, k_h, c_h):
    """The level's two parts one hour on, in ``hour`` (:func:`_level_step` on each)."""
    t = _level_step(seed_t, hour, t, rho, k_t, c_t, 0)
    if habit_share > 0.0:
        hb = _level_step(seed_h, hour % 24, hb, rho, k_h, c_h, 24)
    return t, hb


@njit(cache=True)
def volume_levels(key, s, start, end, rho, habit_share):
    """Subscriber ``s``'s data-volume level (standard normal) in clock hours ``start .. end - 1`` of a
    run starting at hour ``start``, as :func:`sim.kernels.sessions.sessions_epoch` carries it: a transient AR(1) part,
    correlated ``rho`` from one hour to the next, and a share ``habit_share`` (of the variance) that
    is the subscriber's daily habit, a function of the hour of day alone, correlated ``rho`` between
    neighbouring hours of the day (across midnight too)."""
    k_t, c_t = ar_terms(rho, 0)
    k_h, c_h = ar_terms(rho, 24)
    seed_t, seed_h = level_seeds(key, s)
    out = np.empty(end - start)
    t, hb = level_start(key, s, start, rho, habit_share)
    for h in range(start, end):
        if h > start:
            t, hb = level_advance(seed_t, seed_h, h, t, hb, rho, habit_share, k_t, c_t, k_h, c_h)
        out[h - start] = level_value(t, hb, habit_share)
    return out

