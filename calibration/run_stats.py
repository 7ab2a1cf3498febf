"""Summary statistics of a telcosim run folder, defined as the real-data figures of the default
profile are (``calibration/derive_defaults.py``), so that the two can be compared.

* Mobility (StudentLife-like): each subscriber's serving cell is sampled every 10 minutes (a GPS
  logger's cadence) from the location trace; per subscriber-day: radius of gyration of the
  sampled site positions, distinct cells, share of samples in the most frequent cell; and the
  probability that the modal cell of hour h+1 differs from that of hour h.
* Handover (Irish-5G-like): cell changes of a subscriber closer than 5 minutes apart form a
  "moving" episode; the rate is changes per minute of episode, the dwell the time between
  consecutive changes, ping-pong the share of changes back to the previous cell within 10 s.
* Voice: median duration of completed calls; SMS:call ratio (records, MO only).

Run: ``python -m telcosim.calibration.run_stats RUN_DIR`` prints them beside the profile's real figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from telcosim.sim.profile import load_profile

SAMPLE_S = 600
MOVING_GAP_S = 300
PING_PONG_S = 10


def _col(table, name) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _window_start_s(run_dir: Path, t: np.ndarray) -> int:
    """Start of the run window (local midnight of its first day, in Unix seconds) from the
    manifest, so that days and hours are the run's local ones; UTC midnight before the first
    observation when there is no manifest."""
    try:
        start = json.loads((run_dir / "manifest.json").read_text())["window"]["start"]
        return int(dt.datetime.fromisoformat(start).timestamp())
    except (OSError, KeyError, ValueError, TypeError):
        return int(t.min() // 86400 * 86400) if len(t) else 0


def mobility_stats(run_dir: Path, max_subscribers: int = 20_000) -> dict[str, float | list[float]]:
    cells = pq.read_table(run_dir / "cells.parquet")
    x, y = _col(cells, "x_km"), _col(cells, "y_km")
    loc = pq.read_table(run_dir / "locations", columns=["subscriber_id", "time", "cell_id", "reason"])
    loc = loc.filter(pc.less(loc.column("subscriber_id"), max_subscribers))
    sub = _col(loc, "subscriber_id").astype(np.int64)
    t = pc.cast(loc.column("time"), "int64").to_numpy() // 1000
    cell = _col(loc, "cell_id").astype(np.int64)
    reason = np.asarray(loc.column("reason").to_pylist())
    order = np.lexsort((t, sub))
    sub, t, cell, reason = sub[order], t[order], cell[order], reason[order]
    t0 = _window_start_s(run_dir, t)

    # Sample every subscriber's cell on a 10-minute grid (last observation carried forward).
    span = int(t.max() - t0) + 1 if len(t) else 0
    grid = np.arange(t0, t0 + span, SAMPLE_S)
    subs = np.unique(sub)
    starts = np.searchsorted(sub, subs)
    ends = np.searchsorted(sub, subs, side="right")
    rg, distinct, top_share = [], [], []
    hourly_modes = []
    for a, b in zip(starts, ends, strict=True):
        idx = np.searchsorted(t[a:b], grid, side="right") - 1
        ok = idx >= 0
        samples = np.where(ok, cell[a:b][np.maximum(idx, 0)], -1)
        day = (grid - t0) // 86400
        for d in np.unique(day[ok]):
            s = samples[(day == d) & ok]
            if len(s) < 20:
                continue
            px, py = x[s], y[s]
            rg.append(float(np.sqrt(np.mean((px - px.mean()) ** 2 + (py - py.mean()) ** 2))))
            _, counts = np.unique(s, return_counts=True)
            distinct.append(len(counts))
            top_share.append(counts.max() / len(s))
        per_hour = samples[: len(samples) // 6 * 6].reshape(-1, 6)
        modes = np.array([np.bincount(h[h >= 0]).argmax() if (h >= 0).any() else -1 for h in per_hour])
        hourly_modes.append(modes)
    move = np.full(24, np.nan)
    if hourly_modes:
        m = np.array(hourly_modes)
        hours = ((grid[::6][: m.shape[1]] - t0) // 3600) % 24
        moved = (m[:, 1:] != m[:, :-1]) & (m[:, 1:] >= 0) & (m[:, :-1] >= 0)
        for h in range(24):
            cols = np.nonzero(hours[:-1] == h)[0]
            if len(cols):
                move[h] = moved[:, cols].mean()

    # Handover statistics over cell changes.
    change = np.isin(reason, ["cell_change", "handover"])
    cs, ct, cc = sub[change], t[change], cell[change]
    same = cs[1:] == cs[:-1]
    gap = np.diff(ct).astype(np.float64)
    moving = same & (gap <= MOVING_GAP_S)
    dwell = gap[moving]
    pp = np.zeros(len(cc), bool)
    if len(cc) > 2:
        pp[2:] = (cs[2:] == cs[:-2]) & (cc[2:] == cc[:-2]) & same[1:] & (gap[1:] <= PING_PONG_S)
    moving_minutes = dwell.sum() / 60.0
    return {
        "rg_km_median": float(np.median(rg)) if rg else float("nan"),
        "rg_km_p90": float(np.quantile(rg, 0.9)) if rg else float("nan"),
        "distinct_locations_day_median": float(np.median(distinct)) if distinct else float("nan"),
        "top_location_share_median": float(np.median(top_share)) if top_share else float("nan"),
        "move_probability_by_hour": [round(float(v), 4) for v in move],
        "move_probability_mean": float(np.nanmean(move)),
        "handover_rate_per_min_moving": float(moving.sum() / moving_minutes) if moving_minutes else float("nan"),
        "dwell_median_s_moving": float(np.median(dwell)) if len(dwell) else float("nan"),
        "ping_pong_share": float(pp.sum() / max(change.sum(), 1)),
    }


def voice_stats(run_dir: Path) -> dict[str, float]:
    cdr = pq.read_table(run_dir / "cdr", columns=["service", "direction", "outcome", "duration_s"])
    svc = np.asarray(cdr.column("service").to_pylist())
    direction = np.asarray(cdr.column("direction").to_pylist())
    outcome = np.asarray(cdr.column("outcome").to_pylist())
    dur = _col(cdr, "duration_s")
    done = (svc == "voice") & (outcome == "completed")
    mo = direction == "mo"
    calls = ((svc == "voice") & mo).sum()
    return {"call_duration_median_s": float(np.median(dur[done])) if done.any() else float("nan"),
            "sms_call_ratio": float(((svc == "sms") & mo).sum() / calls) if calls else float("nan")}


REAL = {  # statistic -> (profile section, key)
    "rg_km_median": ("mobility", "rg_km_median"), "rg_km_p90": ("mobility", "rg_km_p90"),
    "distinct_locations_day_median": ("mobility", "distinct_locations_day_median"),
    "top_location_share_median": ("mobility", "top_location_share_median"),
    "move_probability_mean": ("mobility", "move_probability_mean"),
    "handover_rate_per_min_moving": ("handover", "rate_per_min_moving"),
    "dwell_median_s_moving": ("handover", "dwell_median_s_moving"),
    "ping_pong_share": ("handover", "ping_pong_share"),
    "call_duration_median_s": ("voice", "duration_median_s"),
    "sms_call_ratio": ("sms", "sms_call_ratio"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    raw = load_profile("default").raw
    stats = {**mobility_stats(args.run_dir), **voice_stats(args.run_dir)}
    print(f"{'statistic':34s} {'synthetic':>10s} {'real':>10s}")
    for name, (section, key) in REAL.items():
        real = raw.get(section, {}).get(key, float("nan"))
        print(f"{name:34s} {stats[name]:10.3f} {real:10.3f}")
    if args.json:
        args.json.write_text(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
