"""The second ML-utility task: a step-change detector trained on augment outage episodes, tested on
the real step changes of ran_updates."""

from __future__ import annotations

import numpy as np
import pytest

from telcosim.cli import main
from telcosim.evaluation.detection import (
    AFTER,
    BEFORE,
    detection_task,
    real_windows,
    window_features,
)
from tests.conftest import SHARED_DATA

RAN = SHARED_DATA / "ran_updates"


def test_features_see_a_step_and_not_noise():
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(200, BEFORE + AFTER))
    step = flat.copy()
    step[:, BEFORE:] -= 2.0
    f_flat, f_step = window_features(flat), window_features(step)
    assert f_step[:, 0].mean() < -1.5 < f_flat[:, 0].mean()
    assert f_step[:, 2].mean() > 0.5 > f_flat[:, 2].mean()


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    out = tmp_path_factory.mktemp("aug") / "episodes"
    assert main(["augment", "--kind", "site_outage", "--episodes", "6", "--out", str(out), "--quiet",
                 "--window-before", "4", "--window-after", "2", "--set", "output.kpi_interval_s=900",
                 "--set", "population.subscribers=2000"]) == 0
    return out


@pytest.mark.skipif(not RAN.exists(), reason="needs ../shared/data/ran_updates")
def test_detection_task_reports_tstr_and_trtr(episodes):
    x, y, ids = real_windows(RAN)
    assert x.shape[1] == BEFORE + AFTER and set(np.unique(y)) == {0, 1}
    r = detection_task(episodes, RAN)
    assert r["synthetic_positives"] > 0 and r["synthetic_windows"] > r["synthetic_positives"]
    # Outages are plain to see in the synthetic data; the real changes are subtler.
    assert r["auc_synthetic_in_sample"] > 0.9
    assert r["auc_trained_on_real"] > 0.6
    assert 0.0 <= r["auc_trained_on_synthetic"] <= 1.0
    assert r["auc_ratio"] == pytest.approx(r["auc_trained_on_synthetic"] / r["auc_trained_on_real"])


@pytest.mark.skipif(not RAN.exists(), reason="needs ../shared/data/ran_updates")
def test_evaluate_runs_the_detector(episodes, small_run, tmp_path, capsys):
    import json

    _, run_dir, _ = small_run
    milan = SHARED_DATA / "milan_hourly" / "square_hourly_load.csv"
    out = tmp_path / "report"
    rc = main(["evaluate", "--synthetic", str(run_dir), "--real", f"activity={milan}", "--out", str(out),
               "--utility-augment", str(episodes), "--utility-steps", str(RAN)])
    assert rc == 0, capsys.readouterr().err
    od = json.loads((out / "metrics.json").read_text())["utility"]["outage_detector"]
    assert od["status"] in ("pass", "fail") and od["auc_ratio"] == pytest.approx(
        od["auc_trained_on_synthetic"] / od["auc_trained_on_real"], rel=1e-4)
    assert "outage_detector" in (out / "report.html").read_text()


def test_evaluate_detector_options_go_together(small_run, tmp_path, capsys):
    _, run_dir, _ = small_run
    rc = main(["evaluate", "--synthetic", str(run_dir), "--real", f"activity={tmp_path}", "--out",
               str(tmp_path / "r"), "--utility-augment", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "--utility-augment and --utility-steps: give both" in err
    assert "not a 'telcosim augment' folder" in err and "Traceback" not in err
