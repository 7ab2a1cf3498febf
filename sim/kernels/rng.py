"""Counter-based random numbers for kernels.

A draw sequence is keyed by ``(stream key, entity, epoch)``: the stream key comes from a named
``np.random.SeedSequence`` (see :mod:`sim.streams`), the entity is usually a subscriber id. The
sequence itself is SplitMix64 (Steele, Lea & Flood 2014), whose output function is a strong
64-bit mixer. Because the state depends only on the key and never on how subscribers are
chunked or which thread runs them, the same seed gives the same draws everywhere.

Kernels keep the state in a local ``np.uint64`` and thread it through ``next_*`` calls, which
return ``(state, value)``.

Normal and exponential draws use the 256-layer ziggurat of Marsaglia & Tsang (2000) in the form
numpy's ``Generator.standard_normal`` / ``standard_exponential`` use it (same tables, same
acceptance steps, same 64-bit word layout): one 64-bit word per draw almost always (99.3% for the
normal, 98.9% for the exponential), no logarithm or cosine. The tables are computed here once,
in exact decimal arithmetic rounded to doubles, so they are the same on every machine (numpy
built its own in double arithmetic: entries differ in the last bits); ``tests/sim/test_rng.py``
checks that, fed numpy's own raw 64-bit words, these steps take the same words per draw and
give numpy's draws to within 1e-13 relative.

numba stamps a cached kernel with its own source file only, so an edit here would not reach the
cached kernels that inline these functions; :mod:`sim.kernels` drops the cache whenever any
kernel source changes.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

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


def _ziggurat_tables(r: str, v: str, normal: bool, bits: int):
    """The 256-layer ziggurat tables (Marsaglia & Tsang 2000, ``zigset``) for the standard normal
    (``f(x) = exp(-x^2 / 2)``) or the standard exponential (``f(x) = exp(-x)``): rightmost layer
    edge ``r``, layer area ``v``, acceptance thresholds ``k`` scaled to ``bits``-bit integers,
    widths ``w`` per integer step and ``f`` at each layer edge. Computed in 40-digit decimal
    arithmetic and rounded once, so the doubles do not depend on the platform's libm."""
    with localcontext() as ctx:
        ctx.prec = 40
        m = Decimal(2) ** bits
        dn = tn = Decimal(r)
        vn = Decimal(v)

        def f(x: Decimal) -> Decimal:
            return (-(x * x) / 2).exp() if normal else (-x).exp()

        k = [0] * 256
        w = [0.0] * 256
        fv = [0.0] * 256
        q = vn / f(dn)
        k[0] = int(dn / q * m)
        k[1] = 0
        w[0] = float(q / m)
        w[255] = float(dn / m)
        fv[0] = 1.0
        fv[255] = float(f(dn))
        for i in range(254, 0, -1):
            dn = (-2 * (vn / dn + f(dn)).ln()).sqrt() if normal else -((vn / dn + f(dn)).ln())
            k[i + 1] = int(dn / tn * m)
            tn = dn
            fv[i] = float(f(dn))
            w[i] = float(dn / m)
    return np.array(k, np.uint64), np.array(w), np.array(fv)


_ZN_R = 3.6541528853610088  # numpy's ziggurat_nor_r
_ZN_INV_R = 1.0 / _ZN_R
_ZN_K, _ZN_W, _ZN_F = _ziggurat_tables("3.6541528853610088", "0.0049286732339746548702", True, 52)
_ZE_R = 7.69711747013104972  # numpy's ziggurat_exp_r
_ZE_K, _ZE_W, _ZE_F = _ziggurat_tables("7.69711747013104972", "0.0039496598225815571993", False, 53)
_M52 = np.uint64(0x000FFFFFFFFFFFFF)
_FF = np.uint64(0xFF)
_S8 = np.uint64(8)
_S3 = np.uint64(3)
_ONE = np.uint64(1)


@njit(cache=True, inline="always")
def _next_double(state: np.uint64) -> tuple[np.uint64, float]:
    """A float in [0, 1) (numpy's ``next_double``: the word's top 53 bits)."""
    state, z = next_u64(state)
    return state, float(z >> _S11) * _INV53


@njit(cache=True, inline="always")
def _under_curve(state: np.uint64, f: np.ndarray, idx: np.int64, density: float) -> tuple[np.uint64, bool]:
    """The ziggurat's wedge test for layer ``idx`` (edges' densities ``f``): a height uniform
    between the layer's bottom and top falls under the curve, whose value there is ``density``."""
    state, u = _next_double(state)
    return state, (f[idx - 1] - f[idx]) * u + f[idx] < density


@njit(cache=True)
def _normal_slow(state: np.uint64, idx: np.int64, x: float, rabs: np.uint64) -> tuple[np.uint64, float, bool]:
    """The ziggurat's rare steps for a draw that missed the fast test: the tail beyond r (layer 0)
    or the wedge test; returns (state, value, accepted)."""
    if idx == 0:
        while True:
            state, u1 = _next_double(state)
            state, u2 = _next_double(state)
            xx = -_ZN_INV_R * math.log1p(-u1)
            yy = -math.log1p(-u2)
            if yy + yy > xx * xx:
                return state, (-(_ZN_R + xx) if (rabs >> _S8) & _ONE else _ZN_R + xx), True
    state, ok = _under_curve(state, _ZN_F, idx, math.exp(-0.5 * x * x))
    return state, (x if ok else 0.0), ok


@njit(cache=True, inline="always")
def next_normal(state: np.uint64) -> tuple[np.uint64, float]:
    """Standard normal by the ziggurat (numpy's ``random_standard_normal``): one word, 99.3% of the time."""
    while True:
        state, r = next_u64(state)
        idx = np.int64(r & _FF)
        r = r >> _S8
        rabs = (r >> _ONE) & _M52
        x = float(rabs) * _ZN_W[idx]
        if r & _ONE:
            x = -x
        if rabs < _ZN_K[idx]:
            return state, x
        state, y, ok = _normal_slow(state, idx, x, rabs)
        if ok:
            return state, y


@njit(cache=True)
def _exp_slow(state: np.uint64, idx: np.int64, x: float) -> tuple[np.uint64, float, bool]:
    if idx == 0:
        state, u = _next_double(state)
        return state, _ZE_R - math.log1p(-u), True
    state, ok = _under_curve(state, _ZE_F, idx, math.exp(-x))
    return state, (x if ok else 0.0), ok


@njit(cache=True, inline="always")
def next_standard_exponential(state: np.uint64) -> tuple[np.uint64, float]:
    """Standard exponential by the ziggurat (numpy's ``random_standard_exponential``)."""
    while True:
        state, r = next_u64(state)
        r = r >> _S3
        idx = np.int64(r & _FF)
        r = r >> _S8
        x = float(r) * _ZE_W[idx]
        if r < _ZE_K[idx]:
            return state, x
        state, y, ok = _exp_slow(state, idx, x)
        if ok:
            return state, y


@njit(cache=True, inline="always")
def next_exponential(state: np.uint64, rate: float) -> tuple[np.uint64, float]:
    state, e = next_standard_exponential(state)
    return state, e / rate


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
def draws(key: np.uint64, entity: np.int64, epoch: np.int64, n: np.int64, law: np.int64) -> np.ndarray:
    """``n`` draws of one sequence: uniforms (``law`` 0), standard normals (1) or standard
    exponentials (2), as the kernels take them (tests and diagnostics)."""
    out = np.empty(n, dtype=np.float64)
    st = seed_state(key, entity, epoch)
    for i in range(n):
        if law == 0:
            st, out[i] = next_uniform(st)
        elif law == 1:
            st, out[i] = next_normal(st)
        else:
            st, out[i] = next_standard_exponential(st)
    return out


def uniforms(key: np.uint64, entity: int, epoch: int, n: int) -> np.ndarray:
    return draws(key, entity, epoch, n, 0)


def normals(key: np.uint64, entity: int, epoch: int, n: int) -> np.ndarray:
    return draws(key, entity, epoch, n, 1)


def exponentials(key: np.uint64, entity: int, epoch: int, n: int) -> np.ndarray:
    return draws(key, entity, epoch, n, 2)
