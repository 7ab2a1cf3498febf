"""The learned cell shapes against real squares the models never trained on (the check part of
the Milan squares), with the measurement of benchmarks/bench_shapes.py: 20,000 subscribers, a
week from Monday 4 March 2024, seed 1, one run per ``behaviour.cell_shapes`` setting (about five
minutes on two cores, so slow-marked). Figures: docs/models.md."""

from __future__ import annotations

import importlib.util
import json

import pytest

from telcosim.models import shapes
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow

BENCH = shapes.DATA_DIR.parents[1] / "benchmarks" / "bench_shapes.py"


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    if not (SHARED_DATA / shapes.MILAN).is_file():
        pytest.skip(f"shared data not present ({SHARED_DATA})")
    spec = importlib.util.spec_from_file_location("bench_shapes", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path_factory.mktemp("bench-shapes")
    assert bench.main(["--data", str(SHARED_DATA), "--out-dir", str(out / "runs"), "--json", str(out / "r.json")]) == 0
    return json.loads((out / "r.json").read_text())["results"]


@pytest.mark.parametrize("kind", shapes.KINDS)
def test_learned_shapes_keep_the_city_and_its_busy_hour(measured, kind):
    """What the mechanism promises: load moves between cells, not hours. Data sessions (thousands an
    hour city-wide) keep the profile's city-wide weekday profile within 10%, SMS within 15% (the
    general profile's 0.54 a day leave under 50 an hour at night at this size), the cells' busy
    hours centre where the profile run's do (the city's shape decides the mode: 9 h for half the
    cells was the old mixing's fault), and the busy-hour TV against the check part is no worse than
    the profile's by more than the real-vs-real floor (the old mixing gave 0.58 against 0.12)."""
    r, prof, floor = measured[kind], measured["profile"], measured["real_floor"]
    city = r["city_profile_max_rel_diff"]
    assert city["sms"] < 0.15 and city["data"] < 0.1, city
    assert r["busy_hour_modal"] == prof["busy_hour_modal"], (r["busy_hour_histogram"], prof["busy_hour_histogram"])
    assert r["busy_hour_tv"] < prof["busy_hour_tv"] + floor["busy_hour_tv"][0], (r["busy_hour_tv"], prof, floor)


@pytest.mark.xfail(strict=True, reason="known gap (docs/models.md): the learned shapes keep each service's city-wide "
                   "shape, so they cannot move the cells' busy hours from the profile's afternoon to Milan's midday")
@pytest.mark.parametrize("kind", shapes.KINDS)
def test_learned_shapes_beat_the_profile(measured, kind):
    """Issue 19's bar: with learned shapes the per-cell busy-hour TV against the check part at least
    a third lower than the profile's, and the median peak/trough within 10% of real. Not met today
    (strict xfail: when it is met, this fails until the marker and docs/models.md are updated)."""
    r, prof = measured[kind], measured["profile"]
    assert r["busy_hour_tv"] <= prof["busy_hour_tv"] * 2 / 3
    assert abs(r["peak_trough_median_ratio"] - 1) <= 0.1
