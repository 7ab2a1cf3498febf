"""Diagnostics of a weekly-shape generator against held-out real shapes.

All on shapes (n, 168) with row mean 1, hour 0 = Monday 00:00:

* manifold metrics (Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models",
  ICML 2020): precision, recall, density, coverage with k nearest neighbours (Euclidean);
* memorisation: for each sample the distance to its closest training record (DCR) and to its
  closest held-out record, with the training set subsampled to the held-out size (so both
  reference sets are equally dense); ``dcr_ratio`` = median DCR-to-train / median DCR-to-held-out
  (about 1 or more: no closer to training than to unseen data; well below 1: copies training
  records) and ``closer_to_train_share`` (about 0.5 expected without memorisation). For reference,
  the same distance of held-out real records to the training records;
* telling features: busy hour (hour of day of the maximum of the mean Monday-Friday daily
  profile) histogram, total variation distance; peak/trough ratio of that profile (quantiles and
  the KS statistic); smoothness (mean absolute second difference over the week); sharpness
  (mean standard deviation of the 168 values); weekend/weekday load ratio.

The same metrics for real train vs real held-out are reported as the reference (``real_vs_real``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

K = 5


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(d2, 0.0, None))


def _kth_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = _pairwise(x, x)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = K) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (Naeem et al. 2020)."""
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"prdc needs more than k={k} real and fake items, got {len(real)} and {len(fake)}")
    r_real = _kth_radius(real, k)
    r_fake = _kth_radius(fake, k)
    d = _pairwise(real, fake)  # (n_real, n_fake)
    inside_real = d <= r_real[:, None]  # fake j inside real i's ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d <= r_fake[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum() / (k * len(fake))),
        "coverage": float((d.min(axis=1) <= r_real).mean()),
    }


def dcr(samples: np.ndarray, train: np.ndarray, held: np.ndarray, *, seed: int = 0, repeats: int = 5
        ) -> dict[str, float]:
    """Distance to closest record: samples to train (subsampled to the held-out size) vs to held-out."""
    rng = np.random.default_rng(seed)
    n = min(len(held), len(train))
    d_held = _pairwise(samples, held[rng.permutation(len(held))[:n]]).min(axis=1)
    to_train, closer, held_to_train = [], [], []
    for _ in range(repeats):
        sub = train[rng.permutation(len(train))[:n]]
        d_tr = _pairwise(samples, sub).min(axis=1)
        to_train.append(np.median(d_tr))
        closer.append(float((d_tr < d_held).mean()))
        held_to_train.append(np.median(_pairwise(held, sub).min(axis=1)))
    m_train, m_held = float(np.mean(to_train)), float(np.median(d_held))
    return {"median_dcr_train": m_train, "median_dcr_held_out": m_held,
            "dcr_ratio": m_train / m_held if m_held > 0 else float("inf"),
            "closer_to_train_share": float(np.mean(closer)),
            "held_out_median_dcr_train": float(np.mean(held_to_train)),
            "dcr_vs_held_out_ratio": m_train / float(np.mean(held_to_train))}


def weekday_profile(shapes: np.ndarray) -> np.ndarray:
    """Mean Monday-Friday daily profile (n, 24)."""
    return np.asarray(shapes, np.float64)[:, :120].reshape(-1, 5, 24).mean(axis=1)


def busy_hour(shapes: np.ndarray) -> np.ndarray:
    return weekday_profile(shapes).argmax(axis=1)


def peak_trough(shapes: np.ndarray) -> np.ndarray:
    p = weekday_profile(shapes)
    return p.max(axis=1) / np.maximum(p.min(axis=1), 1e-3)


def busy_hour_tv(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between the busy-hour histograms (24 bins) of two shape sets."""
    ha = np.bincount(busy_hour(a), minlength=24) / len(a)
    hb = np.bincount(busy_hour(b), minlength=24) / len(b)
    return float(0.5 * np.abs(ha - hb).sum())


def smoothness(shapes: np.ndarray) -> float:
    return float(np.abs(np.diff(np.asarray(shapes, np.float64), n=2, axis=1)).mean())


def sharpness(shapes: np.ndarray) -> float:
    return float(np.asarray(shapes, np.float64).std(axis=1).mean())


def weekend_ratio(shapes: np.ndarray) -> np.ndarray:
    s = np.asarray(shapes, np.float64)
    return s[:, 120:].mean(axis=1) / np.maximum(s[:, :120].mean(axis=1), 1e-9)


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                        - np.searchsorted(b, grid, side="right") / len(b)).max())


def features(shapes: np.ndarray) -> dict:
    pt = peak_trough(shapes)
    return {"busy_hour_histogram": np.bincount(busy_hour(shapes), minlength=24).tolist(),
            "peak_trough_quantiles": dict(zip(("q10", "q50", "q90"), np.quantile(pt, [0.1, 0.5, 0.9]).round(4).tolist(),
                                              strict=True)),
            "smoothness": round(smoothness(shapes), 5), "sharpness": round(sharpness(shapes), 5),
            "weekend_ratio_median": round(float(np.median(weekend_ratio(shapes))), 5)}


def compare(fake: np.ndarray, held: np.ndarray, train: np.ndarray, *, seed: int = 0) -> dict:
    """Every metric of ``fake`` shapes against ``held`` (and ``train`` for memorisation)."""
    out = prdc(held, fake)
    out["busy_hour_tv"] = busy_hour_tv(fake, held)
    out["peak_trough_ks"] = _ks(peak_trough(fake), peak_trough(held))
    out.update(dcr(fake, train, held, seed=seed))
    out["smoothness_ratio"] = smoothness(fake) / smoothness(held)
    out["sharpness_ratio"] = sharpness(fake) / sharpness(held)
    out["features"] = features(fake)
    return out


def absolute(relative: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Relative shapes (a shape model's samples) times the city's reference shape, row mean 1."""
    x = np.clip(np.asarray(relative, np.float64), 0.0, None) * np.asarray(reference, np.float64)[None, :]
    m = x.mean(axis=1, keepdims=True)
    return np.divide(x, m, out=np.ones_like(x), where=m > 1e-12)


def diagnose(model, train, held, *, seeds=(0, 1, 2)) -> dict:
    """Diagnostics of a fitted shape model: per seed, samples conditioned on the held-out items'
    density classes (one per held-out item), made absolute with the training set's city shape
    (the models learn shapes relative to it), metrics averaged over the seeds; plus the real
    train-vs-held-out reference (a train subsample of the held-out size, same class mix)."""
    runs = []
    ref = np.ones(held.shape.shape[1]) if train.reference is None else np.asarray(train.reference, np.float64)
    for s in seeds:
        fake = absolute(model.sample_conditional(held.density, seed=s)["shape"], ref)
        runs.append(compare(fake, held.shape, train.shape, seed=s))
    keys = [k for k in runs[0] if k != "features"]
    mean = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in keys}
    # real reference: train items drawn with the held-out class mix
    rng = np.random.default_rng(12345)
    idx = np.concatenate([rng.choice(np.flatnonzero(train.density == c), size=int((held.density == c).sum()),
                                     replace=int((held.density == c).sum()) > int((train.density == c).sum()))
                          for c in np.unique(held.density)])
    ref_prdc = prdc(held.shape, train.shape[idx])
    ref = {**{k: round(v, 4) for k, v in ref_prdc.items()},
           "busy_hour_tv": round(busy_hour_tv(train.shape[idx], held.shape), 4),
           "peak_trough_ks": round(_ks(peak_trough(train.shape[idx]), peak_trough(held.shape)), 4),
           "smoothness_ratio": round(smoothness(train.shape[idx]) / smoothness(held.shape), 4),
           "sharpness_ratio": round(sharpness(train.shape[idx]) / sharpness(held.shape), 4)}
    lv = np.concatenate([model.sample_conditional(held.density, seed=s)["level"] for s in seeds])
    return {
        "model": model.name, "seeds": list(seeds), "k": K,
        "held_out_items": len(held), "train_items": len(train),
        "held_out_areas": int(len(np.unique(held.area))), "train_areas": int(len(np.unique(train.area))),
        "metrics": mean, "per_seed": [{k: round(float(v), 4) for k, v in r.items() if k != "features"} for r in runs],
        "features": {"samples_seed0": runs[0]["features"], "held_out": features(held.shape),
                     "train": features(train.shape)},
        "level": {"samples_median": round(float(np.median(lv)), 4), "held_out_median": round(float(np.median(held.level)), 4),
                  "ks": round(_ks(lv, np.tile(held.level, len(seeds))), 4)},
        "real_vs_real": ref,
        "training_seconds": model.training.get("seconds"),
        "training_cpu_seconds": model.training.get("cpu_seconds"), "training_device": model.training.get("device"),
    }


def format_report(doc: dict) -> str:
    m, r = doc["metrics"], doc["real_vs_real"]
    rows = [("precision", "precision"), ("recall", "recall"), ("density", "density"), ("coverage", "coverage"),
            ("busy-hour TV", "busy_hour_tv"), ("peak/trough KS", "peak_trough_ks"),
            ("smoothness ratio", "smoothness_ratio"), ("sharpness ratio", "sharpness_ratio")]
    lines = [f"{doc['model']}: {doc['held_out_items']} held-out weeks ({doc['held_out_areas']} areas), "
             f"{doc['train_items']} train weeks, seeds {doc['seeds']}, k={doc['k']}",
             f"  {'metric':<22}{'model':>10}{'real-vs-real':>14}"]
    for label, key in rows:
        lines.append(f"  {label:<22}{m[key]:>10.4f}{r.get(key, float('nan')):>14.4f}")
    lines.append(f"  {'DCR ratio':<22}{m['dcr_ratio']:>10.4f}   (train / held-out; <1 = closer to training)")
    lines.append(f"  {'closer-to-train share':<22}{m['closer_to_train_share']:>10.4f}")
    lines.append(f"  level median {doc['level']['samples_median']} vs held-out {doc['level']['held_out_median']}"
                 f", KS {doc['level']['ks']}")
    lines.append(f"  training {doc['training_seconds']} s wall, {doc['training_cpu_seconds']} s CPU, "
                 f"on {doc['training_device']}")
    return "\n".join(lines)


def write(doc: dict, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path
