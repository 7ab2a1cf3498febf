"""Weekly traffic shapes: the data set, the simulator hook and the shipped pretrained models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from telcosim.models import diagnostics, shapes
from telcosim.realdata import splits
from telcosim.sim.errors import ConfigError
from tests.conftest import SHARED_DATA

SHIPPED = {kind: shapes.DATA_DIR / kind for kind in shapes.KINDS}


def _table(days=22, areas=("a", "b", "c"), start="2013-11-01"):
    idx = pd.date_range(start, periods=24 * days, freq="h")
    rng = np.random.default_rng(0)
    return pd.DataFrame({a: rng.integers(1, 50, len(idx)).astype(float) for a in areas}, index=idx)


def test_weekly_items_are_whole_monday_weeks_without_gaps():
    t = _table()  # Fri 1 Nov .. Fri 22 Nov 2013: two whole weeks (Mon 4, Mon 11)
    t.loc["2013-11-13 05:00", "b"] = np.nan  # area b loses week 2
    loads, areas, weeks, mean = shapes.weekly_items(t, skip_weeks=())
    assert loads.shape == (5, 168)
    assert sorted(zip(weeks.astype(str).tolist(), areas.tolist(), strict=True)) == [
        ("2013-11-04", "a"), ("2013-11-04", "b"), ("2013-11-04", "c"), ("2013-11-11", "a"), ("2013-11-11", "c")]
    i = int(np.flatnonzero((areas == "a") & (weeks == np.datetime64("2013-11-11")))[0])
    np.testing.assert_array_equal(loads[i], t.loc["2013-11-11":"2013-11-17 23:00", "a"].to_numpy())
    np.testing.assert_allclose(mean, loads.mean(axis=1))
    _, _, weeks2, _ = shapes.weekly_items(t, skip_weeks=("2013-11-11",))
    assert set(weeks2.astype(str)) == {"2013-11-04"}


def test_postprocess_gives_non_negative_mean_one_rows():
    raw = np.array([np.linspace(-1, 3, 168), np.full(168, -2.0)])
    out = shapes.postprocess(raw)
    assert out.min() >= 0
    np.testing.assert_allclose(out.mean(axis=1), 1.0)


def test_split_is_by_area_stratified_and_fixed():
    rng = np.random.default_rng(1)
    n_areas, weeks = 36, 4
    area = np.repeat([f"s{i:02d}" for i in range(n_areas)], weeks)
    dens = np.repeat(np.arange(n_areas) % 3, weeks).astype(np.int64)
    ds = shapes.ShapeDataset(shape=rng.random((n_areas * weeks, 168)).astype(np.float32),
                             level=rng.random(n_areas * weeks).astype(np.float32), density=dens, area=area,
                             week=np.zeros(n_areas * weeks, "datetime64[D]"))
    tr, ho = shapes.split(ds)
    assert not set(tr.area) & set(ho.area)
    assert len(tr) + len(ho) == len(ds)
    assert [int((ho.density == c).sum()) for c in range(3)] == [3 * weeks] * 3  # 25% of 12 areas per class
    tr2, ho2 = shapes.split(ds)
    assert np.array_equal(ho.area, ho2.area)


def test_prdc_of_a_set_against_itself_and_a_far_set():
    x = np.random.default_rng(2).normal(size=(200, 5))
    same = diagnostics.prdc(x, x.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = diagnostics.prdc(x, x + 100.0)
    assert far["precision"] == far["recall"] == far["coverage"] == far["density"] == 0.0


def test_busy_hour_tv_and_dcr():
    h = np.arange(168)
    a = np.tile(1 + 0.5 * np.cos(2 * np.pi * (h % 24 - 12) / 24), (50, 1))
    b = np.tile(1 + 0.5 * np.cos(2 * np.pi * (h % 24 - 18) / 24), (50, 1))
    assert diagnostics.busy_hour_tv(a, a) == 0.0
    assert diagnostics.busy_hour_tv(a, b) == 1.0
    rng = np.random.default_rng(3)
    train, held = rng.normal(size=(300, 10)), rng.normal(size=(300, 10))
    copies = diagnostics.dcr(train[:100] + 1e-6, train, held)
    assert copies["dcr_ratio"] < 0.5 and copies["closer_to_train_share"] > 0.2
    fresh = diagnostics.dcr(rng.normal(size=(300, 10)), train, held)
    assert 0.85 < fresh["dcr_ratio"] < 1.15 and 0.35 < fresh["closer_to_train_share"] < 0.65


def test_shipped_models_are_small_and_name_their_sources():
    total = sum(p.stat().st_size for d in SHIPPED.values() for p in d.iterdir())
    assert total < 2_000_000
    for kind, d in SHIPPED.items():
        side = json.loads((d / "model.json").read_text())
        assert side["model"] == shapes.MODEL_NAMES[kind]
        assert side["sources"] and "milan_hourly" in side["sources"][0]
        assert side["data_fingerprint"].startswith("sha256:")


@pytest.mark.parametrize("kind", shapes.KINDS)
def test_cell_multipliers(kind):
    dens = np.array([0, 0, 1, 2, 2, 1, 0, 2] * 5)
    m = shapes.cell_multipliers(kind, dens, seed=11)
    assert m.shape == (40, 168) and m.dtype == np.float64
    assert np.all(m >= 0) and np.all(np.isfinite(m))
    # each row: a relative shape (how a cell's week differs from the city's), mean 1; no level
    np.testing.assert_allclose(m.mean(axis=1), 1.0)
    np.testing.assert_array_equal(m, shapes.cell_multipliers(kind, dens, seed=11))
    assert not np.array_equal(m, shapes.cell_multipliers(kind, dens, seed=12))
    # deviations, not a daily cycle: the mean over cells is flat next to a real area's shape
    # (a real week's weekday profile swings by a factor of about 3 between night and midday)
    prof = diagnostics.weekday_profile(m.mean(axis=0)[None, :])[0]
    assert prof.max() / prof.min() < 1.5
    assert diagnostics.weekday_profile(m).std(axis=1).mean() > 0.02  # but cells differ from the city


def test_cell_multipliers_profile_and_bad_input():
    np.testing.assert_array_equal(shapes.cell_multipliers("profile", np.array([0, 2]), seed=1), np.ones((2, 168)))
    assert shapes.cell_multipliers("vae", np.zeros(0, np.int64), seed=1).shape == (0, 168)
    with pytest.raises(ConfigError, match="'nn' is not one of vae, gan, profile"):
        shapes.cell_multipliers("nn", np.array([0]), seed=1)
    with pytest.raises(ConfigError, match="density code 3: allowed 0 urban, 1 suburban, 2 rural"):
        shapes.cell_multipliers("gan", np.array([0, 3]), seed=1)
    with pytest.raises(ConfigError, match="dtype float64; expected integer class codes"):
        shapes.cell_multipliers("gan", np.array([0.0, 1.5]), seed=1)
    with pytest.raises(ConfigError, match="1-d array"):
        shapes.cell_multipliers("gan", np.zeros((2, 2), np.int64), seed=1)


@pytest.fixture(scope="module")
def real_split():
    if not (SHARED_DATA / shapes.MILAN).is_file():
        pytest.skip(f"shared data not present ({SHARED_DATA})")
    return shapes.split(shapes.build_dataset(SHARED_DATA))


def test_dataset_from_milan(real_split):
    train, held = real_split
    for part in (train, held):
        np.testing.assert_allclose(part.shape.mean(axis=1), 1.0, rtol=1e-5)
        assert set(np.unique(part.density)) == {0, 1, 2}
    assert not set(train.area) & set(held.area)
    assert len(held) / (len(train) + len(held)) == pytest.approx(0.25, abs=0.05)
    assert np.datetime64("2013-12-23") not in set(train.week) | set(held.week)
    # urban (busiest third) has the highest level
    lv = [float(np.median(train.level[train.density == c])) for c in range(3)]
    assert lv[0] > lv[1] > lv[2]
    # the models see the fit part of the squares only; the check part judges the simulator
    assert not splits.in_check(np.unique(np.concatenate([train.area, held.area]))).any()
    check = shapes.build_dataset(SHARED_DATA, "check")
    assert splits.in_check(np.unique(check.area)).all()
    # relative shapes: mean 1, and times the city's reference shape they give the shapes back
    rel = train.relative
    np.testing.assert_allclose(rel.mean(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(diagnostics.absolute(rel, train.reference), train.shape, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def shipped_diagnostics(real_split):
    train, held = real_split
    return {kind: diagnostics.diagnose(shapes.pretrained(kind), train, held) for kind in shapes.KINDS}


def _real_vs_real_tv(train, held, draws=20) -> tuple[float, float]:
    """Busy-hour TV of real training weeks (drawn with the held-out class mix) against the
    held-out weeks: mean and sd over ``draws`` draws, what real data gives at this size."""
    rng = np.random.default_rng(1)
    tvs = []
    for _ in range(draws):
        idx = np.concatenate([rng.choice(np.flatnonzero(train.density == c), size=int((held.density == c).sum()),
                                         replace=False) for c in range(3)])
        tvs.append(diagnostics.busy_hour_tv(train.shape[idx], held.shape))
    return float(np.mean(tvs)), float(np.std(tvs))


def test_shipped_models_meet_the_held_out_thresholds(real_split, shipped_diagnostics):
    """Checked on areas of the fit part never trained on: the better model (at least one of the
    two) covers and stays on the real manifold (precision, coverage >= 0.8), gets the busy-hour
    histogram within the spread of real weeks (TV at most real-vs-real mean + 2 sd) and is no
    closer to its training weeks than to unseen ones (closer-to-train share <= 0.6); both models'
    samples are no closer to the training shapes than unseen real shapes are, and their DCR ratio
    is about 1 or more. (The VAE's closer-to-train share is 0.63: docs/models.md.)"""
    mean, sd = _real_vs_real_tv(*real_split)

    def passes(doc) -> bool:
        m = doc["metrics"]
        return (m["precision"] >= 0.8 and m["coverage"] >= 0.8 and m["busy_hour_tv"] <= mean + 2 * sd
                and m["closer_to_train_share"] <= 0.6)

    summary = {kind: {k: d["metrics"][k] for k in ("precision", "coverage", "busy_hour_tv", "closer_to_train_share")}
               for kind, d in shipped_diagnostics.items()}
    assert any(passes(d) for d in shipped_diagnostics.values()), (summary, mean, sd)
    for doc in shipped_diagnostics.values():
        # samples are no closer to the training shapes than held-out real shapes are ...
        assert doc["metrics"]["dcr_vs_held_out_ratio"] >= 1.0, doc
        # ... and about as close to the training shapes as to unseen ones (no copying)
        assert doc["metrics"]["dcr_ratio"] >= 0.95, doc


def test_shipped_diagnostics_file_matches_a_fresh_run(shipped_diagnostics):
    """The diagnostics.json shipped beside each model is what the model gives today (up to float
    differences between CPUs, which can move a borderline neighbour)."""
    for kind, doc in shipped_diagnostics.items():
        shipped = json.loads((SHIPPED[kind] / "diagnostics.json").read_text())
        assert shipped["metrics"].keys() == doc["metrics"].keys()
        for key, value in shipped["metrics"].items():
            assert doc["metrics"][key] == pytest.approx(value, rel=0.02, abs=0.01), key
