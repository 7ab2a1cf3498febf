"""Does the learned behaviour generator (``population.behaviour_model``) bring a run closer to
real per-person activity than the profile alone? Against the check part of Copenhagen (people the
project never fitted on).

Usage::

    .venv/bin/python benchmarks/bench_behaviour.py [--subscribers 20000] [--days 7] [--seed 1]
        [--epsilon 4] [--data ../shared/data] [--out-dir /tmp/telcosim-bench-behaviour] [--json PATH]

Runs the default (the profile alone), trains the behaviour generator on that run's own records
(``telcosim models behaviour``: there is no real per-subscriber record set to train it on, see
docs/models-behaviour.md), runs again with ``population.behaviour_model`` set to it (same seed),
and compares the per-person figures the generator learns with Copenhagen's check part: calls and
SMS sent per person, each over its mean (Copenhagen counts calls among participants only, so only
the shape of the distribution is comparable, not the level): coefficient of variation, share of
people with none, the 90th percentile over the mean, the KS statistic of the mean-scaled counts,
and the Spearman correlation between a person's calls and SMS. People of the run: every subscriber
(calls and SMS originated in the window); of Copenhagen: every person in the call or SMS file of
the check part (a person is a unit when they call or send an SMS).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def figures(calls: np.ndarray, sms: np.ndarray) -> dict:
    from scipy.stats import spearmanr  # lazy: a benchmark helper

    out = {}
    for name, x in (("calls", calls), ("sms", sms)):
        x = np.asarray(x, np.float64)
        out[name] = {"people": int(len(x)), "cv": round(float(x.std() / x.mean()), 4),
                     "zero_share": round(float((x == 0).mean()), 4),
                     "p90_over_mean": round(float(np.quantile(x, 0.9) / x.mean()), 4), "_scaled": x / x.mean()}
    out["spearman_calls_sms"] = round(float(spearmanr(calls, sms).statistic), 4)
    return out


def ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                        - np.searchsorted(b, grid, side="right") / len(b)).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, default=20000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epsilon", type=float, default=4.0)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/telcosim-bench-behaviour"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from telcosim.models.behaviour import subscriber_features
    from telcosim.realdata import splits
    from telcosim.realdata.readers import read_edges
    from telcosim.scenarios.runner import run as run_scenario
    from telcosim.sim import config

    full = read_edges(args.data / "copenhagen")
    units = splits.units_of(full)
    people = sorted(units[splits.in_check(units)])  # every check-part person, with or without a record
    edges = splits.select(full, "check")
    c = edges.calls.source.astype(str).value_counts().reindex(people, fill_value=0).to_numpy()
    s = (edges.sms.source.astype(str).value_counts().reindex(people, fill_value=0).to_numpy()
         if edges.sms is not None else np.zeros(len(people)))
    results = {"copenhagen_check": figures(c, s)}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    base = [f"population.subscribers={args.subscribers}", f"time.days={args.days}",
            "time.start='2024-03-04T00:00:00'", f"seed={args.seed}"]
    try:
        prof = args.out_dir / "profile"
        run_scenario(config.load(None, base), prof, overwrite=True)
        model = args.out_dir / "behaviour-model"
        subprocess.run([sys.executable, "-m", "telcosim", "models", "behaviour", str(prof), "--out", str(model),
                        "--epsilon", str(args.epsilon)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        learned = args.out_dir / "learned"
        run_scenario(config.load(None, [*base, f"population.behaviour_model='{model}'"]), learned, overwrite=True)
        for name, run in (("profile", prof), ("behaviour_model", learned)):
            f = subscriber_features(run)
            results[name] = figures((f["voice_per_day"] * f["days"]).round().to_numpy(),
                                    (f["sms_per_day"] * f["days"]).round().to_numpy())
    finally:
        shutil.rmtree(args.out_dir, ignore_errors=True)
    real = results["copenhagen_check"]
    for name in ("profile", "behaviour_model"):
        for svc in ("calls", "sms"):
            results[name][svc]["ks_scaled_vs_real"] = round(ks(results[name][svc]["_scaled"], real[svc]["_scaled"]), 4)
    for r in results.values():
        for svc in ("calls", "sms"):
            r[svc].pop("_scaled")
    print(f"{'':>18}{'svc':>6}{'people':>8}{'CV':>8}{'zero':>7}{'p90/mean':>10}{'KS':>7}{'rho c-s':>9}")
    for name, r in results.items():
        for svc in ("calls", "sms"):
            x = r[svc]
            print(f"{name:>18}{svc:>6}{x['people']:>8}{x['cv']:>8.3f}{x['zero_share']:>7.3f}{x['p90_over_mean']:>10.3f}"
                  f"{x.get('ks_scaled_vs_real', 0.0):>7.3f}{r['spearman_calls_sms']:>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
