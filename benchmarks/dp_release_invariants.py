"""Repeated DP releases of the shared individual-level sets, and calibration on each (issue 19, item 9).

    python benchmarks/dp_release_invariants.py --data ../shared/data --releases 20 --epsilon 1 \
        --trials 8 --subscribers 1000 --cache-dir /tmp/neural --out dp_releases.json

For each of ``--releases`` releases at ``--epsilon`` (all three sets in one budget, sequential
composition, targets from the fit part: what ``telcosim targets --data drive=... --data
locations=... --data edges=... --epsilon E`` writes):

* the released figures outside their public bounds or out of order (``targets.release_problems``:
  must be none), and which figures are noise-dominated (set aside by calibration);
* the search (``calibrate.fit``, ``--trials`` runs of ``--subscribers``) and the neural method
  (``neural.calibrate`` with the cached network of ``telcosim calibrate --method neural``'s
  defaults) on that release: objective at the start and at the written point.

OpenDP's noise is not seeded, so a rerun gives other releases; the fits are seeded. Prints a summary
and writes every figure to ``--out``. Numbers in docs/privacy.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telcosim.calibration import calibrate as C  # noqa: E402
from telcosim.calibration import neural as N  # noqa: E402
from telcosim.calibration import targets as T  # noqa: E402
from telcosim.models.base import set_torch_threads  # noqa: E402
from telcosim.realdata import readers as R  # noqa: E402

WATCH = {  # figures the issue saw go wrong at epsilon 1
    "drive.handover_rate_per_min_moving": None, "drive.dwell_time_s": ("median", "p90"),
    "drive.ping_pong_share": None, "edges.call_duration": ("log_mu", "log_sigma", "median_s", "p90_s"),
    "edges.sms_call_ratio": None, "edges.contact_concentration": ("top10pct_pairs_call_share",),
    "locations.radius_of_gyration_km": ("median", "p90"), "locations.top_location_share": ("median",),
    "locations.distinct_locations_per_day": ("median",), "locations.hourly_move_probability": ("mean",),
}


def figures(doc: dict) -> dict[str, float | None]:
    out = {}
    for name, keys in WATCH.items():
        v = doc["targets"][name]["value"]
        for k in keys or (None,):
            x = v.get(k) if k else v
            out[f"{name}{'.' + k if k else ''}"] = x if isinstance(x, int | float) else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--releases", type=int, default=20)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--cache-dir", type=Path, default=N.default_cache_dir())
    ap.add_argument("--out", type=Path, default=Path("dp_releases.json"))
    args = ap.parse_args(argv)
    set_torch_threads(1)
    sets = [R.read_drive_traces(args.data / "irish_5g"),
            R.read_location_traces(args.data / "studentlife_gps", tz="America/New_York"),
            R.read_edges(args.data / "copenhagen")]
    model, info = N.train_or_load(args.cache_dir, runs=120, subscribers=1000, seed=0,
                                  progress=lambda m: print(m, flush=True))
    rows = []
    for i in range(args.releases):
        t0 = time.perf_counter()
        doc = T.compute_targets(sets, epsilon=args.epsilon)
        row = {"release": i, "problems": T.release_problems(doc), "figures": figures(doc),
               "set_aside": [n for n, _ in C.set_aside(doc)], "release_s": round(time.perf_counter() - t0, 1)}
        for method in ("search", "neural"):
            try:
                res = (C.fit(doc, trials=args.trials, subscribers=args.subscribers, seed=1) if method == "search"
                       else N.calibrate(doc, model, subscribers=1000, seed=1))
                row[method] = {"before": res.before["objective"], "after": res.after["objective"],
                               "best": res.best, "terms": len([r for r in res.after["statistics"] if r["weight"] > 0])}
            except ValueError as exc:  # every comparable target noise-dominated: nothing to fit
                row[method] = {"refused": str(exc)}
        rows.append(row)
        s, n = row["search"], row["neural"]
        print(f"release {i:2d}: {len(row['problems'])} problems, {len(row['set_aside'])} set aside; "
              f"search {s.get('before', math.nan):.3f} -> {s.get('after', math.nan):.3f}; "
              f"neural {n.get('before', math.nan):.3f} -> {n.get('after', math.nan):.3f}", flush=True)
    args.out.write_text(json.dumps({"settings": vars(args) | {"data": str(args.data), "cache_dir": str(args.cache_dir),
                                                              "out": str(args.out)},
                                    "model": info, "releases": rows}, indent=1, default=str))
    # summary
    print(f"\n{args.releases} releases at epsilon {args.epsilon}: "
          f"{sum(len(r['problems']) for r in rows)} figures outside their bounds or out of order")
    print(f"{'figure':52s} {'min':>9s} {'median':>9s} {'max':>9s} {'undef':>5s} {'set aside':>9s}")
    for name in rows[0]["figures"]:
        v = np.array([r["figures"][name] for r in rows if r["figures"][name] is not None], float)
        aside = sum(name in r["set_aside"] for r in rows)
        stats = (f"{v.min():9.4g} {np.median(v):9.4g} {v.max():9.4g}" if len(v) else f"{'-':>9s} {'-':>9s} {'-':>9s}")
        print(f"{name:52s} {stats} {len(rows) - len(v):5d} {aside:9d}")
    for method in ("search", "neural"):
        done = [r[method] for r in rows if "after" in r[method]]
        worse = [d for d in done if d["after"] > d["before"] + 1e-12]
        better = [d for d in done if d["after"] < d["before"] - 1e-12]
        gain = [d["before"] - d["after"] for d in done]
        print(f"{method}: {len(done)} fitted, {len(rows) - len(done)} refused (nothing usable); ended worse than the "
              f"start {len(worse)}, better {len(better)}, equal {len(done) - len(worse) - len(better)}; "
              f"objective gain median {np.median(gain) if gain else math.nan:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
