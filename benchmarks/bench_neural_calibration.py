"""Known-answer comparison of neural and search-based calibration (docs/models-behaviour.md).

    nice -n 10 .venv/bin/python benchmarks/bench_neural_calibration.py --cache-dir runs/neural-cache \
        --out runs/neural-bench.json

1. ``--truths`` knob vectors are drawn from the middle 80% of the public search ranges (seeded
   Latin hypercube); each is run once (``--subscribers``, one day, scenario seed 5000 + i) and its
   exact targets are taken (``calibration.calibrate.targets_from_run``).
2. Search: ``calibration.calibrate.fit`` on each targets document, all 8 knobs, ``--trials`` runs.
3. Neural: the surrogate (``calibration.neural.train_or_load``: ``--runs`` prior runs, cached) answers
   each targets document; the answer is timed.
4. Errors per knob: |estimate - truth| as a share of the knob's range (log scale for log knobs),
   and whether the neural 90% interval covers the truth.

``--phase search`` or ``--phase neural`` runs one side only (results merged into ``--out``), so
the two can run one after the other or side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def truths(k: int, seed: int) -> list[dict[str, float]]:
    from scipy.stats import qmc

    from telcosim.calibration import neural as N

    names = N.param_names()
    u = 0.1 + 0.8 * qmc.LatinHypercube(d=len(names), rng=np.random.default_rng(seed)).random(k)
    vals = N.from_unit(u, N._ranges(names))
    return [dict(zip(names, (float(f"{x:.4g}") for x in row), strict=True)) for row in vals]


def truth_targets(cache: Path, truth: dict, i: int, subscribers: int) -> dict:
    from telcosim.calibration import calibrate as C

    path = cache / f"truth-{i}-{subscribers}.json"
    if path.is_file():
        doc = json.loads(path.read_text())
        if doc.get("_truth") == truth:
            return doc
    import tempfile

    base = C.base_scenario(None, [])
    work = Path(tempfile.mkdtemp(prefix="bench-truth-"))
    out = C.simulate(base, truth, subscribers, 5000 + i, work)
    doc = C.targets_from_run(out)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    doc["_truth"] = truth
    path.write_text(json.dumps(doc, indent=1, default=float))
    return doc


def unit_error(name: str, est: float, truth: float) -> float:
    from telcosim.calibration import neural as N

    r = N._ranges([name])
    return float(abs(N.to_unit(np.array([[est]]), r)[0, 0] - N.to_unit(np.array([[truth]]), r)[0, 0]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "neural-cache")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "neural-bench.json")
    ap.add_argument("--phase", choices=("all", "search", "neural"), default="all")
    ap.add_argument("--truths", type=int, default=6)
    ap.add_argument("--truth-seed", type=int, default=99)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=20, help="search trials per targets document")
    ap.add_argument("--runs", type=int, default=200, help="prior runs of the neural surrogate")
    args = ap.parse_args(argv)

    from telcosim.calibration import calibrate as C
    from telcosim.calibration import neural as N

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    res = json.loads(args.out.read_text()) if args.out.is_file() else {}
    res["settings"] = {"subscribers": args.subscribers, "trials": args.trials, "runs": args.runs,
                       "truths": args.truths, "truth_seed": args.truth_seed}
    tr = truths(args.truths, args.truth_seed)
    docs = []
    for i, t in enumerate(tr):
        t0 = time.perf_counter()
        docs.append(truth_targets(args.cache_dir, t, i, args.subscribers))
        print(f"truth {i}: {t}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    names = N.param_names()

    if args.phase in ("all", "neural"):
        t0 = time.perf_counter()
        model, info = N.train_or_load(args.cache_dir, runs=args.runs, subscribers=args.subscribers, seed=0,
                                      progress=lambda s: print(s, flush=True))
        res["neural_model"] = info | {"wall_s": round(time.perf_counter() - t0, 2),
                                      "training_seconds": model.training.get("seconds"),
                                      "simulation_seconds": model.spec.get("simulation_seconds")}
        rows = []
        for i, (t, doc) in enumerate(zip(tr, docs, strict=True)):
            t1 = time.perf_counter()
            r = N.calibrate(doc, model, params=names, check=False)
            dt = time.perf_counter() - t1
            unc = r.settings["uncertainty"]
            rows.append({"truth": i, "answer_s": round(dt, 3), "estimate": r.best,
                         "error": {n: unit_error(n, r.best[n], t[n]) for n in names},
                         "covered": {n: bool(unc[n]["q05"] <= t[n] <= unc[n]["q95"]) for n in names},
                         "interval": {n: [unc[n]["q05"], unc[n]["q95"]] for n in names}})
            print(f"neural truth {i}: {dt:.2f} s  mean error {np.mean(list(rows[-1]['error'].values())):.3f}",
                  flush=True)
        res["neural"] = rows
        args.out.write_text(json.dumps(res, indent=1))

    if args.phase in ("all", "search"):
        rows = []
        for i, (t, doc) in enumerate(zip(tr, docs, strict=True)):
            t1 = time.perf_counter()
            r = C.fit(doc, trials=args.trials, subscribers=args.subscribers, seed=1, sampler_seed=0, params=names)
            dt = time.perf_counter() - t1
            rows.append({"truth": i, "wall_s": round(dt, 2), "runs": r.settings["runs"], "estimate": r.best,
                         "objective": r.after["objective"],
                         "error": {n: unit_error(n, r.best[n], t[n]) for n in names}})
            print(f"search truth {i}: {dt:.1f} s  mean error {np.mean(list(rows[-1]['error'].values())):.3f}",
                  flush=True)
        res = json.loads(args.out.read_text()) if args.out.is_file() else res
        res["search"] = rows
        args.out.write_text(json.dumps(res, indent=1))

    res = json.loads(args.out.read_text())
    if "neural" in res and "search" in res:
        print(f"\n{'knob':38s} {'search':>8s} {'neural':>8s} {'covered':>8s}")
        summary = {}
        for n in names:
            s = float(np.mean([r["error"][n] for r in res["search"]]))
            m = float(np.mean([r["error"][n] for r in res["neural"]]))
            c = int(sum(r["covered"][n] for r in res["neural"]))
            summary[n] = {"search": s, "neural": m, "covered": c}
            print(f"{n:38s} {s:8.3f} {m:8.3f} {c:5d}/{len(res['neural'])}")
        s_all = float(np.mean([v["search"] for v in summary.values()]))
        m_all = float(np.mean([v["neural"] for v in summary.values()]))
        print(f"{'mean':38s} {s_all:8.3f} {m_all:8.3f}")
        res["summary"] = summary | {"_mean": {"search": s_all, "neural": m_all}}
        args.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
