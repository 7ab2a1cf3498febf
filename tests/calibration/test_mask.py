"""``telcosim targets --mask-volumes``: shapes and ratios are kept, absolute levels are put on a fixed
reference (so two data sets that differ only in their volume give the same masked document), and
the document records what was rescaled."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from telcosim.calibration.targets import MASK_REFERENCE_PAIRS, compute_targets, mask_volumes
from telcosim.cli import main as sim_main
from telcosim.realdata import readers as R


def _activity(scale: float) -> R.ActivityTable:
    """Three weeks of hourly load for 30 areas with a diurnal cycle and heterogeneous levels."""
    rng = np.random.default_rng(3)
    idx = pd.date_range("2024-01-01", periods=21 * 24, freq="h")
    shape = 1.0 + 0.6 * np.sin((idx.hour.to_numpy() - 6) / 24 * 2 * np.pi)
    level = rng.lognormal(3.0, 0.8, 30)
    load = rng.poisson(np.outer(shape, level)).astype(float) * scale
    return R.ActivityTable("synthetic.csv", pd.DataFrame(load, index=idx, columns=[f"a{i}" for i in range(30)]),
                           3600, "UTC")


def _cells(scale: float) -> R.CellSeries:
    rng = np.random.default_rng(4)
    idx = pd.date_range("2024-01-01", periods=14 * 24, freq="h")
    shape = 1.0 + 0.8 * np.sin((idx.hour.to_numpy() - 12) / 24 * 2 * np.pi)
    return R.CellSeries("cells/", {f"c{i}": pd.Series(rng.gamma(2.0, 50.0 * (i + 1), len(idx)) * shape * scale, idx)
                                   for i in range(3)})


def test_masked_aggregate_targets_keep_shapes_and_hide_levels():
    plain = compute_targets([_activity(1.0), _cells(1.0)])
    big = compute_targets([_activity(37.0), _cells(37.0)])
    assert plain["masking"] == {"volumes": False}
    # unmasked, the two differ in absolute level by the factor
    a, b = plain["targets"], big["targets"]
    assert b["activity.area_load_distribution"]["value"]["p50"] == pytest.approx(
        37 * a["activity.area_load_distribution"]["value"]["p50"], rel=1e-5)
    m, mb = mask_volumes(plain), mask_volumes(big)
    t, tb = m["targets"], mb["targets"]
    for name in ("activity.area_load_distribution", "cells.cell_load_distribution"):
        orig, masked = a[name]["value"], t[name]["value"]
        assert masked["p50"] == pytest.approx(1.0)
        assert masked["p50"] != pytest.approx(orig["p50"])  # the level changed
        for q in ("p10", "p90"):  # ratios to the median kept
            assert masked[q] == pytest.approx(orig[q] / orig["p50"], rel=1e-5)
            assert masked[q] == pytest.approx(tb[name]["value"][q], rel=1e-4)  # level hidden
        assert masked["cv"] == orig["cv"]
        assert "masked" in t[name]
    for name in ("activity.over_dispersion", "cells.over_dispersion"):
        assert t[name]["value"] != pytest.approx(a[name]["value"])
        assert t[name]["value"] == pytest.approx(tb[name]["value"], rel=1e-3)
    # shapes and scale-free figures untouched
    for name in ("activity.diurnal_profile", "activity.weekly_profile", "cells.diurnal_profile",
                 "cells.hourly_log_sigma"):
        assert t[name] == a[name]
    assert m["masking"]["volumes"] is True
    assert set(m["masking"]["rescaled"]) == {"activity.area_load_distribution", "activity.over_dispersion",
                                             "cells.cell_load_distribution", "cells.over_dispersion"}
    assert m["masking"]["withheld"] == {}
    json.dumps(m, allow_nan=False)


def test_masked_run_targets(small_run):
    _, run_dir, _ = small_run
    doc = compute_targets([R.read_cdr(run_dir)], exact=True)
    m = mask_volumes(doc)
    a, t = doc["targets"], m["targets"]
    cc, mcc = a["cdr.contact_concentration"]["value"], t["cdr.contact_concentration"]["value"]
    assert sum(mcc["pairs_per_bin"]) == pytest.approx(MASK_REFERENCE_PAIRS)
    assert sum(cc["pairs_per_bin"]) != pytest.approx(MASK_REFERENCE_PAIRS)
    ratio = np.array(mcc["pairs_per_bin"]) / np.array(cc["pairs_per_bin"])
    ratio = ratio[np.isfinite(ratio)]
    assert np.allclose(ratio, ratio[0], rtol=1e-4)  # proportional: same shape
    assert mcc["top10pct_pairs_call_share"] == cc["top10pct_pairs_call_share"]
    load, mload = a["cdr.cell_load_distribution"]["value"], t["cdr.cell_load_distribution"]["value"]
    assert mload["p50"] == pytest.approx(1.0) and load["p50"] > 10
    assert mload["p90"] == pytest.approx(load["p90"] / load["p50"], rel=1e-5)
    assert mload["var_mean_ratio"] == pytest.approx(load["var_mean_ratio"] / load["p50"], rel=1e-5)
    assert mload["top10pct_share"] == load["top10pct_share"]
    for name in ("cdr.weekly_profile", "cdr.call_duration", "cdr.sms_call_ratio"):
        assert t[name] == a[name]
    assert m["privacy"] == doc["privacy"]  # post-processing: nothing more spent


def test_level_that_cannot_be_referenced_is_withheld():
    doc = compute_targets([_activity(1.0)])
    doc["targets"]["activity.area_load_distribution"]["value"]["p50"] = 0.0
    m = mask_volumes(doc)
    v = m["targets"]["activity.area_load_distribution"]["value"]
    assert v["p10"] is None and v["p50"] is None and v["p90"] is None
    assert m["targets"]["activity.over_dispersion"]["value"] is None
    assert set(m["masking"]["withheld"]) == {"activity.area_load_distribution", "activity.over_dispersion"}


def test_cli_mask_volumes(small_run, tmp_path, capsys):
    _, run_dir, _ = small_run
    out = tmp_path / "masked.json"
    assert sim_main(["targets", "--data", f"cdr={run_dir}", "--epsilon", "5", "--mask-volumes",
                     "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["masking"]["volumes"] is True
    assert "cdr.contact_concentration" in doc["masking"]["rescaled"]
    assert "volumes masked" in capsys.readouterr().out
