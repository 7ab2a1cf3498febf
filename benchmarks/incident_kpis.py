"""KPIs of the built-in incident scenarios at their built-in size, for docs/scenarios.md.

    .venv/bin/python benchmarks/incident_kpis.py OUT_DIR [NAME ...]

Runs each scenario with its baseline (``telcosim run NAME --baseline``) and prints, per incident,
the footprint's KPIs during the incident next to the baseline's, and how many rows are labelled.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from telcosim import scenarios
from telcosim.scenarios.runner import run as run_scenario

NAMES = ("stadium_event", "site_outage_peak", "backhaul_failure", "regional_disaster", "new_years_eve",
         "random_failures_week")


def _t(run: Path, name: str):
    p = run / name
    return pq.read_table(p if p.is_dir() else run / f"{name}.parquet").to_pandas()


def footprint_kpis(kpi, cells, start, end) -> dict:
    sel = kpi["cell_id"].isin(cells) & (kpi["interval_start"] >= start) & (kpi["interval_start"] < end)
    k = kpi[sel]
    att = k["voice_attempts"].sum()
    thr = k["throughput_mean_mbps"].dropna()
    return {"voice_attempts": int(att), "blocked": int(k["voice_blocked"].sum()),
            "blocking": float(k["voice_blocked"].sum() / att) if att else float("nan"),
            "dropped": int(k["voice_dropped"].sum()), "failed": int(k["voice_failed"].sum()),
            "sms": int(k["sms"].sum()), "data_gb": float(k["data_volume_mb"].sum() / 1000),
            "throughput_mbps": float(thr.mean()) if len(thr) else float("nan")}


def main() -> None:
    out = Path(sys.argv[1])
    names = sys.argv[2:] or NAMES
    for name in names:
        sc = scenarios.load(name)
        t0 = time.perf_counter()
        run = run_scenario(sc, out / name, baseline_out=out / f"{name}.baseline", overwrite=True)
        wall = time.perf_counter() - t0
        incs = _t(out / name, "incidents")
        kpi, kb = _t(out / name, "cell_kpis"), _t(out / f"{name}.baseline", "cell_kpis")
        cdr = _t(out / name, "cdr")
        loc = _t(out / name, "locations")
        report = {"name": name, "wall_s_both_runs": round(wall, 1), "rows": run.rows,
                  "labelled": {"cdr": int(cdr["incident_id"].notna().sum()),
                               "locations": int(loc["incident_id"].notna().sum()),
                               "cell_kpis": int(kpi["incident_id"].notna().sum())},
                  "causes": {str(k): int(v) for k, v in cdr["cause"].value_counts().items()},
                  "incidents": []}
        shown = incs if len(incs) <= 3 else incs.head(1)
        for _, inc in shown.iterrows():
            cells = np.array(inc["cells"])
            report["incidents"].append({
                "kind": inc["kind"], "name": inc["name"], "cells": len(cells), "start": str(inc["start"]),
                "end": str(inc["end"]), "with": footprint_kpis(kpi, cells, inc["start"], inc["end"]),
                "baseline": footprint_kpis(kb, cells, inc["start"], inc["end"])})
        if len(incs) > 3:
            report["n_incidents"] = len(incs)
            report["kinds"] = incs["kind"].value_counts().to_dict()
            down_h = ((incs["end"] - incs["start"]).dt.total_seconds() / 3600)[incs["kind"] == "random_failure"]
            report["failure_hours"] = {"total": round(float(down_h.sum()), 1), "median": round(float(down_h.median()), 2)}
        print(json.dumps(report, default=str))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
