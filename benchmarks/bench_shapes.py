"""Per-cell weekly shapes of a run with ``behaviour.cell_shapes`` = profile vs vae vs gan, against
the check part of the Milan squares (squares the shape models never trained on).

Usage::

    .venv/bin/python benchmarks/bench_shapes.py [--subscribers 20000] [--days 7] [--seed 1]
        [--data ../shared/data] [--set KEY=VALUE ...] [--kinds profile,vae,gan]
        [--out-dir /tmp/telcosim-bench-shapes] [--json PATH]

Runs the default city (a week from Monday 4 March 2024) once per ``cell_shapes`` setting with the
same seed and ``--set`` overrides, and per cell takes the hourly load = voice attempts + SMS + data
sessions of ``cell_kpis`` (all events, like the Milan squares' load). From each cell's mean
Monday-Friday daily profile (docs/models.md): the busy hour (hour of day of its maximum) and the
peak/trough ratio (max / min). Printed per setting:

* ``TV``: total variation distance between the cells' busy-hour histogram and the check part's
  (one item per square-week);
* peak/trough quantiles (10 / 50 / 90 %), the median's ratio to real and the KS statistic;
* ``dev``: how far the cells' weekday profiles stray from the city's: the standard deviation over
  the 24 hours of (item's profile / mean profile of its set), mean over items;
* ``city``: for voice, SMS and data, the largest relative difference of the city-wide weekday
  hourly profile from the ``profile`` run's (learned shapes move load between cells, not hours).

The real-vs-real floor: fit-part square-weeks (drawn as many as the run has cells, 20 draws)
against the check part, the distance a perfect simulator would still show at this sample size.
Cells with fewer than ``--min-events`` events per weekday hour on average are left out (their
hourly counts are mostly noise), and counted. The run folders are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telcosim.models import diagnostics as dg  # noqa: E402

SERVICES = ("voice_attempts", "sms", "data_sessions")


def cell_weekly_load(run_dir: Path, columns=SERVICES) -> tuple[np.ndarray, np.ndarray]:
    """(cells, 168) hourly events per cell of ``columns`` summed, hour 0 = Monday 00:00 local
    (mean over the weeks of the run), and the cell ids."""
    import pyarrow.parquet as pq  # lazy: a benchmark helper

    t = pq.read_table(run_dir / "cell_kpis.parquet", columns=["interval_start", "cell_id", *columns]).to_pandas()
    local = t["interval_start"]
    how = (local.dt.day_of_week * 24 + local.dt.hour).to_numpy()
    load = t[list(columns)].sum(axis=1).to_numpy(np.float64)
    cells = np.unique(t["cell_id"].to_numpy())
    pos = np.searchsorted(cells, t["cell_id"].to_numpy())
    out = np.zeros((len(cells), 168))
    np.add.at(out, (pos, how), load)
    n_weeks = np.zeros(168)
    np.add.at(n_weeks, how[pos == 0], 1.0)  # intervals per hour of week (kpi interval may be < 1 h)
    return out / np.maximum(n_weeks, 1.0), cells


def deviation(shapes: np.ndarray) -> np.ndarray:
    """Per item: sd over the 24 hours of its weekday profile over its set's mean weekday profile."""
    wp = dg.weekday_profile(shapes)
    wp = wp / wp.mean(axis=1, keepdims=True)
    return (wp / wp.mean(axis=0, keepdims=True)).std(axis=1)


def stats(shapes: np.ndarray, real: np.ndarray | None) -> dict:
    """Figures of weekly shapes (items, 168; row mean 1) against the real ``real`` shapes."""
    busy = dg.busy_hour(shapes)
    hist = np.bincount(busy, minlength=24)
    pt = dg.peak_trough(shapes)
    out = {"items": int(len(shapes)), "busy_hour_histogram": hist.tolist(), "busy_hour_modal": int(hist.argmax()),
           "busy_hour_modal_share": round(float(hist.max() / len(busy)), 4),
           "peak_trough_q10_q50_q90": np.quantile(pt, [0.1, 0.5, 0.9]).round(3).tolist(),
           "deviation_mean": round(float(deviation(shapes).mean()), 4)}
    if real is not None:
        out["busy_hour_tv"] = round(dg.busy_hour_tv(shapes, real), 4)
        out["peak_trough_median_ratio"] = round(float(np.median(pt) / np.median(dg.peak_trough(real))), 4)
        out["peak_trough_ks"] = round(dg._ks(pt, dg.peak_trough(real)), 4)
        out["deviation_ks"] = round(dg._ks(deviation(shapes), deviation(real)), 4)
    return out


def city_profiles(run_dir: Path) -> np.ndarray:
    """(3, 24) city-wide weekday hourly profile of voice attempts, SMS and data sessions, mean 1."""
    rows = []
    for col in SERVICES:
        load, _ = cell_weekly_load(run_dir, (col,))
        wp = dg.weekday_profile(load.sum(axis=0)[None, :])[0]
        rows.append(wp / wp.mean())
    return np.array(rows)


def real_floor(fit: np.ndarray, check: np.ndarray, n: int, draws: int = 20) -> dict:
    """Fit-part items (``n`` drawn, ``draws`` times) against the check part: mean and sd of each figure."""
    rng = np.random.default_rng(0)
    runs = [stats(fit[rng.choice(len(fit), size=n, replace=n > len(fit))], check) for _ in range(draws)]
    keys = ("busy_hour_tv", "peak_trough_median_ratio", "peak_trough_ks", "deviation_ks")
    return {k: [round(float(np.mean([r[k] for r in runs])), 4), round(float(np.std([r[k] for r in runs])), 4)]
            for k in keys}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, default=20000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="scenario override for every run (e.g. behaviour.profile='my.toml')")
    ap.add_argument("--kinds", default="profile,vae,gan")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/telcosim-bench-shapes"))
    ap.add_argument("--min-events", type=float, default=1.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.days < 7:
        ap.error("--days must be at least 7: the statistics need a whole week")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if "profile" not in kinds or any(k not in ("profile", "vae", "gan") for k in kinds):
        ap.error("--kinds: a comma-separated list of profile, vae, gan that includes profile")

    from telcosim.models import shapes
    from telcosim.scenarios.runner import run as run_scenario
    from telcosim.sim import config

    check = shapes.build_dataset(args.data, "check").shape.astype(np.float64)
    fit = shapes.build_dataset(args.data, "fit").shape.astype(np.float64)
    results: dict = {"real_check": stats(check, None), "real_fit": stats(fit, check)}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    city = {}
    try:
        for kind in kinds:
            sets = [f"population.subscribers={args.subscribers}", f"time.days={args.days}",
                    "time.start='2024-03-04T00:00:00'", f"seed={args.seed}", *args.sets,
                    f"behaviour.cell_shapes='{kind}'"]
            sc = config.load(None, sets)
            out = args.out_dir / kind
            t0 = time.perf_counter()
            run_scenario(sc, out, overwrite=True)
            wall = time.perf_counter() - t0
            loads, _ = cell_weekly_load(out)
            busy_enough = loads[:, :120].mean(axis=1) >= args.min_events
            kept = loads[busy_enough]
            s = stats(kept / kept.mean(axis=1, keepdims=True), check)
            s["cells_left_out"] = int((~busy_enough).sum())
            s["run_wall_s"] = round(wall, 1)
            city[kind] = city_profiles(out)
            if kind != "profile":
                s["city_profile_max_rel_diff"] = dict(zip(
                    ("voice", "sms", "data"), np.abs(city[kind] / city["profile"] - 1).max(axis=1).round(4).tolist(),
                    strict=True))
            results[kind] = s
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(args.out_dir / "profile", ignore_errors=True)
    n_cells = results["profile"]["items"]
    results["real_floor"] = real_floor(fit, check, n_cells)

    print(f"reference: check part, {len(check)} square-weeks; fit part {len(fit)} square-weeks; "
          f"runs: {args.subscribers} subscribers, {args.days} days, seed {args.seed}"
          + (f", {' '.join(args.sets)}" if args.sets else ""))
    print(f"{'':>12}{'items':>7}{'modal':>7}{'modal%':>8}{'TV':>8}{'p/t q10':>9}{'q50':>7}{'q90':>7}"
          f"{'q50/real':>10}{'p/t KS':>8}{'dev':>8}{'dev KS':>8}")
    for name, r in results.items():
        if name == "real_floor":
            continue
        q = r["peak_trough_q10_q50_q90"]
        print(f"{name:>12}{r['items']:>7}{r['busy_hour_modal']:>7}{r['busy_hour_modal_share']:>8.3f}"
              f"{r.get('busy_hour_tv', 0.0):>8.3f}{q[0]:>9.2f}{q[1]:>7.2f}{q[2]:>7.2f}"
              f"{r.get('peak_trough_median_ratio', 1.0):>10.3f}{r.get('peak_trough_ks', 0.0):>8.3f}"
              f"{r['deviation_mean']:>8.3f}{r.get('deviation_ks', 0.0):>8.3f}")
    f = results["real_floor"]
    print(f"real-vs-real floor ({n_cells} fit square-weeks vs check, 20 draws, mean ± sd): "
          f"TV {f['busy_hour_tv'][0]:.3f} ± {f['busy_hour_tv'][1]:.3f}, p/t q50/real {f['peak_trough_median_ratio'][0]:.3f}"
          f" ± {f['peak_trough_median_ratio'][1]:.3f}, p/t KS {f['peak_trough_ks'][0]:.3f}, dev KS {f['deviation_ks'][0]:.3f}")
    for kind in kinds:
        if kind != "profile":
            d = results[kind]["city_profile_max_rel_diff"]
            print(f"{kind}: city-wide weekday hourly profile vs the profile run's, largest relative difference: "
                  f"voice {d['voice']:.3f}, SMS {d['sms']:.3f}, data {d['data']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
