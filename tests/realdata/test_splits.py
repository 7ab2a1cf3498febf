"""Fit and check parts: disjoint, covering, stable per unit, and the same rows in every reader kind."""

import numpy as np
import pandas as pd
import pytest

from telcosim.realdata import readers as R
from telcosim.realdata import splits as S


def _activity(cols):
    idx = pd.date_range("2024-03-04", periods=48, freq="1h")
    return R.ActivityTable(path="x.csv", load=pd.DataFrame({c: np.arange(48.0) for c in cols}, index=idx),
                           interval_s=3600, time_zone="local")


def test_parts_are_disjoint_cover_the_set_and_keep_the_share():
    cols = [str(i) for i in range(3000)]
    a = _activity(cols)
    fit = set(S.select(a, "fit").load.columns)
    check = set(S.select(a, "check").load.columns)
    assert not fit & check
    assert fit | check == set(cols)
    assert abs(len(check) / len(cols) - S.CHECK_SHARE) < 0.03


def test_a_units_part_does_not_depend_on_the_other_units():
    small = set(S.select(_activity([str(i) for i in range(50)]), "check").load.columns)
    big = set(S.select(_activity([str(i) for i in range(500)]), "check").load.columns)
    assert small == {c for c in big if int(c) < 50}
    other_salt = set(S.select(_activity([str(i) for i in range(500)]), "check", salt="another").load.columns)
    assert other_salt != big


def test_edges_and_locations_follow_their_person():
    calls = pd.DataFrame({"source": [str(i % 40) for i in range(400)], "target": ["0"] * 400,
                          "duration_s": np.full(400, 30.0)})
    e = R.EdgeLists(path="c", calls=calls, sms=calls[["source", "target"]].copy())
    chk = S.select(e, "check")
    keep = set(S.units_of(e)[S.in_check(S.units_of(e))])
    assert set(chk.calls.source) == keep == set(chk.sms.source)
    users = [f"u{i:02d}" for i in range(30)]
    n = 300
    loc = R.LocationTraces(path="g", users=users, user=np.repeat(np.arange(30), 10), time=np.zeros(n, "datetime64[s]"),
                           lat=np.repeat(np.arange(30.0), 10), lon=np.zeros(n), accuracy=np.zeros(n), time_zone="UTC")
    part = S.select(loc, "fit")
    assert set(part.users) == set(users) - set(np.asarray(users)[S.in_check(users)])
    # rows keep their person: latitude was the user's index
    assert all(users[int(lat)] == part.users[u] for u, lat in zip(part.user, part.lat, strict=True))


def test_cells_split_by_cell_and_block_and_aggregates_stay_whole():
    idx = pd.date_range("2024-01-01", periods=24 * 7 * 40, freq="1h")
    c = R.CellSeries(path="l", series={k: pd.Series(1.0, index=idx) for k in ("a", "b", "c")})
    fit, check = S.select(c, "fit"), S.select(c, "check")
    for k in ("a", "b", "c"):
        n = len(fit.series.get(k, [])) + len(check.series.get(k, []))
        assert n == len(idx)
    assert S.describe(c, "check")["units_check"] + S.describe(c, "check")["units_fit"] == 3 * 10
    shares = R.ShareTables(path="n", hourly={})
    assert S.select(shares, "check") is shares
    assert S.describe(shares, "check")["unit"] is None


def test_an_empty_part_and_an_unknown_part_are_refused():
    with pytest.raises(S.SplitError, match="too small|part 'all'"):
        S.select(_activity(["only"]), "check" if not S.in_check(["only"])[0] else "fit")
    with pytest.raises(S.SplitError, match="expected one of"):
        S.select(_activity(["a"]), "train")
