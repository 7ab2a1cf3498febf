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
def test_learned_shapes_keep_the_city_and_the_real_busy_hour(measured, kind):
    """What the mechanism promises: load moves between cells, not hours (SMS and data sessions,
    thousands an hour city-wide, keep the profile's city-wide weekday profile within 10%), and the
    cells' busy hours centre where the real squares' do (the mode is the check part's), not on the
    9 h that the old mixing with the profile put half the cells at. The busy-hour TV stays within
    three times the real-vs-real floor (the old mixing gave 0.58 against held-out squares)."""
    r, real, floor = measured[kind], measured["real_check"], measured["real_floor"]
    city = r["city_profile_max_rel_diff"]
    assert city["sms"] < 0.1 and city["data"] < 0.1, city
    assert r["busy_hour_modal"] == real["busy_hour_modal"], (r["busy_hour_histogram"], real["busy_hour_histogram"])
    assert r["busy_hour_tv"] < 3 * floor["busy_hour_tv"][0], (r["busy_hour_tv"], floor)


@pytest.mark.xfail(strict=True, reason="known gap (docs/models.md): the profile is already within the real-vs-real "
                   "floor on the check part, and the learned shapes add heterogeneity to the simulator's own noise")
@pytest.mark.parametrize("kind", shapes.KINDS)
def test_learned_shapes_beat_the_profile(measured, kind):
    """Issue 19's bar: with learned shapes the per-cell busy-hour TV against the check part at least
    a third lower than the profile's, and the median peak/trough within 10% of real. Not met today
    (strict xfail: when it is met, this fails until the marker and docs/models.md are updated)."""
    r, prof = measured[kind], measured["profile"]
    assert r["busy_hour_tv"] <= prof["busy_hour_tv"] * 2 / 3
    assert abs(r["peak_trough_median_ratio"] - 1) <= 0.1
