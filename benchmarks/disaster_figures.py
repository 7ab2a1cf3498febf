"""The figures of ``regional_disaster`` that docs/scenarios.md sets against the published ones.

    .venv/bin/python benchmarks/disaster_figures.py OUT_DIR [--set KEY=VALUE ...]

Runs the built-in with its baseline (at the signature test's size with
``--set population.subscribers=4000 --set network.sites=30``) and prints, for the region (the
surge's cells outside the epicentre outage) in the first 30 minutes after the quake: outgoing
voice attempts (redials included) and first attempts against the baseline's, distinct callers
and calls per caller, the share of the extra calls made by people who made none then in the
baseline, the share of attempts blocked (the region's, per quarter hour, and the most blocked
cell's quarter hour with at least 20 attempts), the redials' share, the texts and data sessions
against the baseline's, the excess attempts per half hour later on against the first half
hour's, and the nearer and farther halves' multiples.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from telcosim import scenarios
from telcosim.scenarios.runner import run as run_scenario


def _t(run: Path, name: str) -> pd.DataFrame:
    p = run / name
    return pq.read_table(p if p.is_dir() else run / f"{name}.parquet").to_pandas()


def main() -> None:
    out = Path(sys.argv[1])
    sets = [a for a in sys.argv[2:] if a != "--set"]
    sc = scenarios.load("regional_disaster", sets)
    run_scenario(sc, out / "run", baseline_out=out / "run.baseline", overwrite=True)
    run, base = out / "run", out / "run.baseline"
    incs = _t(run, "incidents")
    cells, down, start = np.array(incs.iloc[0]["cells"]), np.array(incs.iloc[1]["cells"]), incs.iloc[0]["start"]
    region = np.setdiff1d(cells, down)

    def cdr(d: Path) -> pd.DataFrame:
        c = _t(d, "cdr")
        return c[c["cell_id"].isin(region)]

    ca, cb = cdr(run), cdr(base)

    def window(c: pd.DataFrame, h0: float, h1: float) -> pd.DataFrame:
        t = c["start_time"]
        return c[(t >= start + pd.Timedelta(hours=h0)) & (t < start + pd.Timedelta(hours=h1))]

    def voice(c: pd.DataFrame) -> pd.DataFrame:
        return c[(c["service"] == "voice") & (c["direction"] == "mo")]

    va, vb = voice(ca), voice(cb)
    x, y = window(va, 0, 0.5), window(vb, 0, 0.5)
    fx, fy = x[x["redial"] == 0], y[y["redial"] == 0]
    nx, ny = fx["subscriber_id"].nunique(), fy["subscriber_id"].nunique()
    new = fx[~fx["subscriber_id"].isin(set(fy["subscriber_id"]))]
    print(f"attempts {len(x):,} / {len(y):,} = x{len(x) / len(y):.1f}; first attempts {len(fx):,} / {len(fy):,} "
          f"= x{len(fx) / len(fy):.1f}")
    print(f"callers {nx:,} / {ny:,} = x{nx / ny:.2f}; calls per caller {len(fx) / nx:.2f} / {len(fy) / ny:.2f} "
          f"= x{(len(fx) / nx) / (len(fy) / ny):.2f}; extra calls by new callers {len(new) / (len(fx) - len(fy)):.0%}")
    print(f"blocked {(x['outcome'] == 'blocked').mean():.1%} of attempts ({(fx['outcome'] == 'blocked').mean():.1%} "
          f"of first attempts; baseline {(y['outcome'] == 'blocked').mean():.1%}, its whole day "
          f"{(vb['outcome'] == 'blocked').mean():.2%}); redials {(x['redial'] > 0).mean():.0%} of attempts")
    q = (x["start_time"] - start) // pd.Timedelta(minutes=15)
    per_cell = x.assign(q=q, b=x["outcome"] == "blocked").groupby(["cell_id", "q"])["b"].agg(["mean", "size"])
    print(f"most blocked cell quarter hour (>= 20 attempts): {per_cell.loc[per_cell['size'] >= 20, 'mean'].max():.0%}")
    def count(c: pd.DataFrame, svc: str, mo: bool) -> int:
        w = window(c, 0, 0.5)
        return int(((w["service"] == svc) & ((w["direction"] == "mo") if mo else True)).sum())

    for svc, mo in (("sms", True), ("data", False)):
        a, b = count(ca, svc, mo), count(cb, svc, mo)
        print(f"{svc}: {a:,} / {b:,} = x{a / b:.1f}")
    excess0 = len(x) - len(y)
    for h0, h1 in ((0.5, 1), (1, 2), (2, 3), (3, 4), (4, 8)):
        ex = (len(window(va, h0, h1)) - len(window(vb, h0, h1))) / ((h1 - h0) * 2)
        print(f"excess per half hour {h0}-{h1} h: {ex / excess0:.3f} of the first half hour's")
    cl = _t(run, "cells").set_index("cell_id")
    d = np.hypot(cl.loc[region, "x_km"] - 3.0, cl.loc[region, "y_km"] - 3.0)
    near, far = d[d <= d.median()].index, d[d > d.median()].index
    print("nearer / farther half: " + ", ".join(
        f"x{(x['cell_id'].isin(g)).sum() / max(1, (y['cell_id'].isin(g)).sum()):.1f}" for g in (near, far)))


if __name__ == "__main__":
    main()
