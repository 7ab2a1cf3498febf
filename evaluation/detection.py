"""ML utility, second task: a step-change detector trained on synthetic outage episodes
(``telcosim augment``) and tested on real step changes (``ran_updates``: daily DL traffic of
carriers around a network change, Boiano et al., INFOCOM 2026).

The two are at different time scales (quarter hours around an outage; days around a carrier
addition), so the detector sees scale-free features of a window: ``BEFORE`` points before a
candidate change point and ``AFTER`` points from it, each series standardised by its own "before"
part:

* the shift of the mean after, in standard deviations of the before part;
* the shift of the median after, in median absolute deviations of the before part;
* the share of after points below the before part's 10th percentile.

Positives are windows centred at a change (synthetic: the incident's start in an affected cell's
data volume, for outages that last the whole "after" part; real: the day of the event),
negatives windows without one (synthetic: the same cell
and time in the baseline, and unaffected cells in the incident run; real: windows ending 20 days
before the event). The detector is a logistic regression (scikit-learn). Reported: its ROC AUC on
a held-out half of the real carriers, trained on synthetic episodes (TSTR) and trained on the
other half of the real carriers (TRTR), and their ratio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

BEFORE, AFTER = 12, 4
REAL_NEG_OFFSET_DAYS = 40


def window_features(windows: np.ndarray) -> np.ndarray:
    """Features of windows of shape (n, BEFORE + AFTER): see the module docstring."""
    b, a = windows[:, :BEFORE], windows[:, BEFORE:]
    sd = b.std(axis=1) + 1e-9
    med = np.median(b, axis=1)
    mad = np.median(np.abs(b - med[:, None]), axis=1) * 1.4826 + 1e-9
    low = np.quantile(b, 0.1, axis=1)
    return np.column_stack([
        np.clip((a.mean(axis=1) - b.mean(axis=1)) / sd, -20, 20),
        np.clip((np.median(a, axis=1) - med) / mad, -20, 20),
        (a < low[:, None]).mean(axis=1),
    ])


def synthetic_windows(augment_dir: Path, max_negative_cells: int = 6, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Windows and labels from an augment dataset's ``cell_kpis`` (data volume per interval)."""
    eps = pq.read_table(augment_dir / "episodes.parquet").to_pandas()
    kpi = pq.read_table(augment_dir / "cell_kpis").to_pandas()
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _, ep in eps.iterrows():
        k = kpi[kpi["episode_id"] == ep["episode_id"]]
        for variant in ("incident", "baseline"):
            v = k[k["variant"] == variant]
            wide = v.pivot_table(index="interval_start", columns="cell_id", values="data_volume_mb",
                                 aggfunc="sum").sort_index()
            t = wide.index.get_indexer([ep["start"]], method="bfill")[0]
            if t < BEFORE or t + AFTER > len(wide):
                continue
            # A step detector learns from changes that last the whole "after" part: shorter
            # outages are over (and followed by a catch-up burst) before it ends.
            step = wide.index[1] - wide.index[0]
            if ep["end"] < wide.index[t] + AFTER * step:
                continue
            affected = [c for c in ep["cells"] if c in wide.columns]
            others = [c for c in wide.columns if c not in set(ep["cells"])]
            pick = list(rng.choice(others, size=min(max_negative_cells, len(others)), replace=False))
            for cells, label in ((affected, 1 if variant == "incident" else 0), (pick, 0)):
                for c in cells:
                    xs.append(wide[c].to_numpy()[t - BEFORE:t + AFTER])
                    ys.append(label)
    return np.array(xs, float), np.array(ys, int)


def real_windows(ran_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows, labels and carrier ids from ran_updates' daily DL z-scores: one window at the event
    and one ending ``REAL_NEG_OFFSET_DAYS`` before it per carrier."""
    t = pd.read_parquet(ran_dir / "traffic_daily.parquet").sort_values(["UUID", "deltaT"])
    xs, ys, ids = [], [], []
    for uuid, g in t.groupby("UUID", sort=True):
        dl = g["DL"].to_numpy(float)
        day = np.round(g["deltaT"].to_numpy() / 86400).astype(int)
        if np.isnan(dl).any():
            continue
        e = int(np.searchsorted(day, 0))
        for centre, label in ((e, 1), (e - REAL_NEG_OFFSET_DAYS, 0)):
            if centre - BEFORE >= 0 and centre + AFTER <= len(dl):
                xs.append(dl[centre - BEFORE:centre + AFTER])
                ys.append(label)
                ids.append(uuid)
    return np.array(xs, float), np.array(ys, int), np.array(ids)


def _fit(x: np.ndarray, y: np.ndarray):
    # lazy: scikit-learn is slow to import; only this task needs it
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(window_features(x), y)


def detection_task(augment_dir: Path, ran_dir: Path, seed: int = 0) -> dict:
    """TSTR vs TRTR ROC AUC of the step-change detector on held-out real carriers."""
    # lazy: scikit-learn is slow to import; only this task needs it
    from sklearn.metrics import roc_auc_score

    xs, ys = synthetic_windows(augment_dir, seed=seed)
    xr, yr, ids = real_windows(ran_dir)
    carriers = np.unique(ids)
    rng = np.random.default_rng(seed)
    test_c = set(rng.choice(carriers, size=len(carriers) // 2, replace=False))
    test = np.array([i in test_c for i in ids])
    syn = _fit(xs, ys)
    real = _fit(xr[~test], yr[~test])
    auc_syn = float(roc_auc_score(yr[test], syn.predict_proba(window_features(xr[test]))[:, 1]))
    auc_real = float(roc_auc_score(yr[test], real.predict_proba(window_features(xr[test]))[:, 1]))
    # The same detector on the synthetic episodes themselves (how separable they are).
    auc_syn_self = float(roc_auc_score(ys, syn.predict_proba(window_features(xs))[:, 1]))
    return {"task": "step-change detection (ran_updates)", "window": {"before": BEFORE, "after": AFTER},
            "synthetic_windows": int(len(ys)), "synthetic_positives": int(ys.sum()),
            "real_test_windows": int(test.sum()), "real_train_windows": int((~test).sum()),
            "auc_trained_on_synthetic": auc_syn, "auc_trained_on_real": auc_real,
            "auc_ratio": auc_syn / auc_real if auc_real > 0 else float("nan"),
            "auc_synthetic_in_sample": auc_syn_self}


__all__ = ["AFTER", "BEFORE", "detection_task", "real_windows", "synthetic_windows", "window_features"]
