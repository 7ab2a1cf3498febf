"""Per-cell heterogeneity of a run with ``behaviour.cell_shapes`` = profile vs vae vs gan, against real data.

Usage::

    .venv/bin/python benchmarks/bench_shapes.py [--subscribers 20000] [--days 7] [--seed 1]
        [--data ../shared/data] [--out-dir /tmp/telcosim-bench-shapes] [--json PATH]

Runs the default city small (a Monday-start week) once per ``cell_shapes`` setting with the same
seed, and per cell takes the hourly load = voice attempts + SMS + data sessions of ``cell_kpis``
(all events, like the Milan squares' load). From each cell's mean Monday-Friday daily profile: the
busy hour (hour of day of its maximum) and the peak/trough ratio (max / min). Printed per setting:
the spread of busy hours across cells (number of distinct busy hours, share of cells at the modal
hour, interquartile range in hours, the histogram's total variation distance to the real one),
the peak/trough quantiles (10 / 50 / 90 %), and the coefficient of variation of the cells' mean
load; and, for vae and gan, the share of cells whose busy hour in the run is within an hour of the
busy hour of the shape drawn for the cell (the shape times the demand that mobility brings to the
cell: where the two disagree, movement moved the peak). The same statistics of the real held-out Milan areas (one item per area-week, the areas the
shape models never trained on) are the reference. Cells with fewer than ``--min-events`` per
weekday hour on average are left out (their hourly counts are mostly noise), and counted.
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


def cell_weekly_load(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(cells, 168) hourly events per cell, hour 0 = Monday 00:00 local, and the cell ids."""
    import pyarrow.parquet as pq

    t = pq.read_table(run_dir / "cell_kpis.parquet",
                      columns=["interval_start", "cell_id", "voice_attempts", "sms", "data_sessions"]).to_pandas()
    local = t["interval_start"]
    how = (local.dt.day_of_week * 24 + local.dt.hour).to_numpy()
    load = (t["voice_attempts"] + t["sms"] + t["data_sessions"]).to_numpy(np.float64)
    cells = np.unique(t["cell_id"].to_numpy())
    pos = np.searchsorted(cells, t["cell_id"].to_numpy())
    out = np.zeros((len(cells), 168))
    np.add.at(out, (pos, how), load)
    n_weeks = np.zeros(168)
    np.add.at(n_weeks, how[pos == 0], 1.0)  # intervals per hour of week (kpi interval may be < 1 h)
    return out / np.maximum(n_weeks, 1.0), cells


def stats(loads: np.ndarray, shapes: np.ndarray | None = None) -> dict:
    """Heterogeneity statistics of per-item weekly loads (items, 168); ``shapes``: the loads over
    their row means, when already at hand (as stored, so that tied busy hours resolve alike)."""
    if shapes is None:
        shapes = loads / loads.mean(axis=1, keepdims=True)
    busy = dg.busy_hour(shapes)
    hist = np.bincount(busy, minlength=24)
    pt = dg.peak_trough(shapes)
    q25, q75 = np.quantile(busy, [0.25, 0.75])
    level = loads.mean(axis=1)
    return {"items": int(len(loads)), "busy_hour_distinct": int((hist > 0).sum()),
            "busy_hour_modal_share": round(float(hist.max() / len(busy)), 4),
            "busy_hour_modal": int(hist.argmax()), "busy_hour_iqr_h": float(q75 - q25),
            "busy_hour_histogram": hist.tolist(),
            "peak_trough_q10_q50_q90": np.quantile(pt, [0.1, 0.5, 0.9]).round(3).tolist(),
            "level_cv": round(float(level.std() / level.mean()), 4), "_shapes": shapes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, default=20000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/telcosim-bench-shapes"))
    ap.add_argument("--min-events", type=float, default=1.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.days < 7:
        ap.error("--days must be at least 7: the statistics need a whole week")

    from telcosim.models import shapes
    from telcosim.scenarios.runner import run as run_scenario
    from telcosim.sim import config

    _, held = shapes.split(shapes.build_dataset(args.data))
    real_loads = held.shape * np.exp(held.level)[:, None]
    results = {"real_held_out": stats(real_loads, held.shape)}
    real_shapes = results["real_held_out"]["_shapes"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for kind in ("profile", "vae", "gan"):
        sets = [f"population.subscribers={args.subscribers}", f"time.days={args.days}",
                "time.start='2024-03-04T00:00:00'", f"seed={args.seed}", f"behaviour.cell_shapes='{kind}'"]
        sc = config.load(None, sets)
        out = args.out_dir / kind
        t0 = time.perf_counter()
        run_scenario(sc, out, overwrite=True)
        wall = time.perf_counter() - t0
        loads, cells = cell_weekly_load(out)
        if kind != "profile":  # does a cell's busy hour in the run follow the shape drawn for it?
            import pyarrow.parquet as pq

            dens = pq.read_table(out / "cells.parquet", columns=["cell_id", "density"]).to_pandas()
            codes = (dens.set_index("cell_id")["density"].astype(str).map({d: i for i, d in enumerate(shapes.DENSITY)})
                     .loc[cells].to_numpy(np.int64))
            drawn = dg.busy_hour(shapes.cell_multipliers(kind, codes, sc.seed))
            diff = np.abs(dg.busy_hour(loads) - drawn)
            within1 = float(np.mean(np.minimum(diff, 24 - diff) <= 1))
        busy_enough = loads[:, :120].mean(axis=1) >= args.min_events
        s = stats(loads[busy_enough])
        s["cells_left_out"] = int((~busy_enough).sum())
        s["run_wall_s"] = round(wall, 1)
        s["busy_hour_tv_vs_real"] = round(dg.busy_hour_tv(s["_shapes"], real_shapes), 4)
        if kind != "profile":
            s["busy_hour_within_1h_of_drawn_shape"] = round(within1, 4)
        results[kind] = s
        shutil.rmtree(out, ignore_errors=True)
    for r in results.values():
        r.pop("_shapes")
    print(f"{'':>14}{'items':>7}{'distinct':>9}{'modal':>7}{'modal%':>8}{'IQR h':>7}{'TV real':>9}"
          f"{'p/t q10':>9}{'q50':>7}{'q90':>7}{'level CV':>9}")
    for name, r in results.items():
        q = r["peak_trough_q10_q50_q90"]
        print(f"{name:>14}{r['items']:>7}{r['busy_hour_distinct']:>9}{r['busy_hour_modal']:>7}"
              f"{r['busy_hour_modal_share']:>8.3f}{r['busy_hour_iqr_h']:>7.1f}"
              f"{r.get('busy_hour_tv_vs_real', 0.0):>9.3f}{q[0]:>9.2f}{q[1]:>7.2f}{q[2]:>7.2f}{r['level_cv']:>9.3f}")
    for name in ("vae", "gan"):
        print(f"{name}: share of cells whose busy hour in the run is within 1 h of the drawn shape's: "
              f"{results[name]['busy_hour_within_1h_of_drawn_shape']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
