"""The epoch's time ordering: a stable sort by time (ties keep input order), and the gather."""

from __future__ import annotations

import numpy as np
import pytest

from telcosim.sim.kernels.ordering import stable_time_order_and_times, take


@pytest.mark.parametrize("span", [1, 2, 3, 1000, 1024, 1025, 900_000])
@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_order_is_numpys_stable_argsort(span, n):
    rng = np.random.default_rng(span * 7919 + n)
    t0 = np.int64(123 * 900_000)
    # Few distinct times as well as many: ties must keep input order.
    t = t0 + rng.integers(0, min(span, max(1, n // 3)) if n % 2 else span, n).astype(np.int64)
    order, t_sorted = stable_time_order_and_times(t, t0, np.int64(span))
    assert order.dtype == np.int32
    np.testing.assert_array_equal(order, np.argsort(t, kind="stable"))
    assert t_sorted.dtype == t.dtype
    np.testing.assert_array_equal(t_sorted, t[order])


def test_take_is_fancy_indexing():
    rng = np.random.default_rng(1)
    order = rng.permutation(10_000).astype(np.int32)
    for dtype in (np.int64, np.int32, np.int8, np.float64):
        a = rng.integers(-100, 100, 10_000).astype(dtype)
        got = take(a, order)
        assert got.dtype == a.dtype
        np.testing.assert_array_equal(got, a[order])
