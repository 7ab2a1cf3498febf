"""The second ML-utility task: a step-change detector trained on augment outage episodes, tested on
the real step changes of ran_updates."""

from __future__ import annotations

import numpy as np
import pytest

from telcosim.cli import main
from telcosim.evaluation.detection import (
    AFTER,
    BEFORE,
    _fit,
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
    assert r["auc_trained_on_synthetic"] > 0.6  # outages teach the detector real steps
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


def _windows(rng, n: int, drop: float) -> tuple[np.ndarray, np.ndarray]:
    """n noise windows (unit sd around a level of 10), the second half with a step of ``-drop``
    after BEFORE points: labels 1 for a step, 0 for none."""
    x = 10.0 + rng.normal(size=(n, BEFORE + AFTER))
    y = np.r_[np.zeros(n - n // 2, int), np.ones(n // 2, int)]
    x[y == 1, BEFORE:] -= drop
    return x, y


def _status(auc_syn: float, auc_real: float) -> str:
    from telcosim.evaluation.utility import evaluate_outage_detector

    result = {"auc_trained_on_synthetic": auc_syn, "auc_trained_on_real": auc_real, "auc_ratio": auc_syn / auc_real,
              "synthetic_windows": 400}
    return evaluate_outage_detector(result, "aug", "real")["status"]


def _auc_on(test_x, test_y, train_x, train_y) -> float:
    from sklearn.metrics import roc_auc_score

    model = _fit(train_x, train_y)
    return float(roc_auc_score(test_y, model.predict_proba(window_features(test_x))[:, 1]))


def test_detector_trained_on_clear_synthetic_steps_finds_subtler_real_ones():
    """Known answer: trained on plain outages (a 4 sd drop), tested on other windows with a 2 sd
    drop, the detector ranks steps above flat windows almost always (AUC > 0.95); the detection
    task's pass rule (DETECTOR_RATIO_LIMIT of the real-trained AUC) then holds."""
    from telcosim.evaluation.utility import DETECTOR_RATIO_LIMIT

    syn_x, syn_y = _windows(np.random.default_rng(1), 400, 4.0)
    real_x, real_y = _windows(np.random.default_rng(2), 400, 2.0)
    test_x, test_y = _windows(np.random.default_rng(3), 400, 2.0)
    auc_syn, auc_real = _auc_on(test_x, test_y, syn_x, syn_y), _auc_on(test_x, test_y, real_x, real_y)
    assert auc_syn > 0.95 and auc_real > 0.95
    assert auc_syn / auc_real >= DETECTOR_RATIO_LIMIT and _status(auc_syn, auc_real) == "pass"


def test_detector_trained_on_steps_the_wrong_way_fails():
    """Negative control: synthetic "outages" that raise the load by 4 sd (the wrong effect) teach
    the detector to look for rises, so on the real drops it ranks steps below flat windows
    (AUC < 0.1 where the real-trained detector has > 0.95): the ratio fails the rule."""
    from telcosim.evaluation.utility import DETECTOR_RATIO_LIMIT

    syn_x, syn_y = _windows(np.random.default_rng(1), 400, -4.0)
    real_x, real_y = _windows(np.random.default_rng(2), 400, 2.0)
    test_x, test_y = _windows(np.random.default_rng(3), 400, 2.0)
    auc_syn, auc_real = _auc_on(test_x, test_y, syn_x, syn_y), _auc_on(test_x, test_y, real_x, real_y)
    assert auc_syn < 0.1 and auc_real > 0.95
    assert auc_syn / auc_real < DETECTOR_RATIO_LIMIT and _status(auc_syn, auc_real) == "fail"
