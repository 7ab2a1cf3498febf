"""The counter-based generator: uniform, independent of how draws are grouped, stable names."""

from __future__ import annotations

import numpy as np
from scipy import stats

from telcosim.sim.kernels import rng
from telcosim.sim.streams import STREAMS, generator, kernel_key, stable_hash


def test_uniforms_are_uniform_and_distinct_per_entity_and_epoch():
    key = kernel_key(7, "sessions")
    u = rng.uniforms(key, 3, 5, 200_000)
    assert 0.0 < u.min() and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    other = rng.uniforms(key, 4, 5, 1000)
    later = rng.uniforms(key, 3, 6, 1000)
    assert not np.array_equal(u[:1000], other) and not np.array_equal(u[:1000], later)
    # Neighbouring entities are not correlated.
    a = np.array([rng.uniforms(key, e, 0, 1)[0] for e in range(20_000)])
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.03


def test_same_key_same_sequence():
    key = kernel_key(1, "mobility")
    assert np.array_equal(rng.uniforms(key, 10, 2, 50), rng.uniforms(key, 10, 2, 50))


def test_stream_names_are_stable_and_checked():
    # Fixed values: a change here would silently change every run's output.
    assert stable_hash("mobility") == stable_hash("mobility")
    assert len({stable_hash(s) for s in STREAMS}) == len(STREAMS)
    assert kernel_key(1, "mobility") != kernel_key(1, "sessions")
    assert kernel_key(1, "mobility") != kernel_key(2, "mobility")
    g1, g2 = generator(3, "population.homes"), generator(3, "population.homes")
    assert g1.random() == g2.random()
    try:
        kernel_key(1, "mobilty")
    except KeyError as exc:
        assert "unknown random stream" in str(exc)
    else:
        raise AssertionError("a misspelt stream name must be refused")


def _numpy_ziggurat(words: np.ndarray, normal: bool) -> np.ndarray:
    """numpy's ziggurat steps (random_standard_normal / random_standard_exponential), written out
    in Python with telcosim's tables, fed a sequence of raw 64-bit words."""
    import math

    it = iter(int(w) for w in words)
    out: list[float] = []

    def nd() -> float:
        return float(next(it) >> 11) * (1.0 / 9007199254740992.0)

    try:
        while True:
            while True:
                r = next(it)
                if normal:
                    idx = r & 0xFF
                    r >>= 8
                    rabs = (r >> 1) & 0x000FFFFFFFFFFFFF
                    x = rabs * rng._ZN_W[idx] * (-1.0 if r & 1 else 1.0)
                    if rabs < int(rng._ZN_K[idx]):
                        out.append(x)
                        break
                    if idx == 0:
                        while True:
                            xx = -rng._ZN_INV_R * math.log1p(-nd())
                            if -2.0 * math.log1p(-nd()) > xx * xx:
                                break
                        out.append(-(rng._ZN_R + xx) if (rabs >> 8) & 1 else rng._ZN_R + xx)
                        break
                    if (rng._ZN_F[idx - 1] - rng._ZN_F[idx]) * nd() + rng._ZN_F[idx] < math.exp(-0.5 * x * x):
                        out.append(x)
                        break
                else:
                    r >>= 3
                    idx = r & 0xFF
                    r >>= 8
                    x = r * rng._ZE_W[idx]
                    if r < int(rng._ZE_K[idx]):
                        out.append(x)
                        break
                    if idx == 0:
                        out.append(rng._ZE_R - math.log1p(-nd()))
                        break
                    if (rng._ZE_F[idx - 1] - rng._ZE_F[idx]) * nd() + rng._ZE_F[idx] < math.exp(-x):
                        out.append(x)
                        break
    except StopIteration:
        return np.array(out)


def test_ziggurat_tables_and_steps_are_numpys():
    # Fed numpy's own raw words, the same steps with our tables give numpy's draws: the same
    # number of words per draw and values equal to rounding (numpy built its tables in double
    # arithmetic, ours are exact decimals rounded once).
    words = np.random.PCG64(123).random_raw(200_000)
    for normal in (True, False):
        mine = _numpy_ziggurat(words, normal)
        g = np.random.Generator(np.random.PCG64(123))
        ref = g.standard_normal(len(mine)) if normal else g.standard_exponential(len(mine))
        np.testing.assert_allclose(mine, ref, rtol=1e-13, atol=1e-15)
        assert len(mine) > 190_000


def test_kernel_normals_and_exponentials_have_their_laws():
    key = kernel_key(7, "sessions")
    z = np.concatenate([rng.normals(key, e, 3, 100_000) for e in range(10)])
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 0.005 and abs(z.std() - 1.0) < 0.005
    # The tail beyond the base layer (r = 3.654) and the wedges are drawn at their rates.
    for q in (2.0, 3.0, 3.654, 4.0):
        expect = 2 * stats.norm.sf(q)
        got = np.mean(np.abs(z) > q)
        assert abs(got - expect) < 4 * np.sqrt(expect / len(z)) + 1e-6, (q, got, expect)
    e = np.concatenate([rng.exponentials(key, e, 4, 100_000) for e in range(10)])
    assert e.min() > 0.0 and stats.kstest(e, "expon").pvalue > 1e-3
    for q in (3.0, 7.0, 7.697, 9.0):
        expect = np.exp(-q)
        assert abs(np.mean(e > q) - expect) < 4 * np.sqrt(expect / len(e)) + 1e-6
    # Keyed: another entity or epoch, another sequence; the same key, the same one.
    assert not np.array_equal(rng.normals(key, 1, 3, 100), rng.normals(key, 2, 3, 100))
    assert np.array_equal(rng.normals(key, 1, 3, 100), rng.normals(key, 1, 3, 100))
