"""How much partitioned resolution would have to exchange: the share of a run's events that couple
two regions when the cells are split into R regions (k-d bisection of the sites by position,
balanced by the rows each cell carries). docs/performance.md, "Resolution beyond one core".

Usage::

    .venv/bin/python benchmarks/region_coupling.py RUN_DIR
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def kd(ids: np.ndarray, x: np.ndarray, y: np.ndarray, load: np.ndarray, depth: int, regions: int) -> list:
    """Split ``ids`` into ``regions`` (a power of two) parts of about equal load, alternating axes."""
    if regions == 1:
        return [ids]
    axis = x if depth % 2 == 0 else y
    o = ids[np.argsort(axis[ids], kind="stable")]
    cw = np.cumsum(load[o])
    half = int(np.searchsorted(cw, cw[-1] / 2))
    return kd(o[:half], x, y, load, depth + 1, regions // 2) + kd(o[half:], x, y, load, depth + 1, regions // 2)


def main(run: str) -> None:
    cells = pq.read_table(f"{run}/cells.parquet", columns=["cell_id", "x_km", "y_km"]).to_pandas()
    cdr = ds.dataset(f"{run}/cdr", partitioning="hive").to_table(
        columns=["session_id", "counterpart_id", "direction", "cell_id"]).to_pandas()
    loc = ds.dataset(f"{run}/locations", partitioning="hive").to_table(
        columns=["subscriber_id", "time", "cell_id", "reason"]).to_pandas()
    n_cells = len(cells)
    load = np.bincount(cdr.cell_id, minlength=n_cells) + np.bincount(loc.cell_id, minlength=n_cells)
    print(f"{run}: {n_cells} cells, {len(cdr):,} CDR rows, {len(loc):,} location rows")
    loc = loc.sort_values(["subscriber_id", "time"], kind="stable")
    cell = loc.cell_id.to_numpy()
    prev = np.r_[-1, cell[:-1]]
    sub = loc.subscriber_id.to_numpy()
    same = np.r_[False, sub[1:] == sub[:-1]]
    handover = (loc.reason == "handover").to_numpy() & same
    moves = loc.reason.isin(["cell_change", "handover"]).to_numpy() & same
    onnet = cdr.counterpart_id.notna()
    pair = cdr[onnet & (cdr.direction == "mo")].merge(
        cdr[onnet & (cdr.direction == "mt")][["session_id", "cell_id"]], on="session_id", suffixes=("", "_b"))
    rows = len(cdr) + len(loc)
    for regions in (2, 4, 8, 16):
        reg = np.empty(n_cells, np.int64)
        for r, ids in enumerate(kd(np.arange(n_cells), cells.x_km.to_numpy(), cells.y_km.to_numpy(), load, 0,
                                   regions)):
            reg[ids] = r
        x_pair = int((reg[pair.cell_id.to_numpy()] != reg[pair.cell_id_b.to_numpy()]).sum())
        x_ho = int((reg[cell[handover]] != reg[prev[handover]]).sum())
        x_mv = int((reg[cell[moves]] != reg[prev[moves]]).sum())
        busiest = (np.bincount(reg, weights=load, minlength=regions) / load.sum()).max()
        print(f"R={regions:2d}: on-net calls/SMS across regions {x_pair / len(pair):.1%} ({x_pair:,} of {len(pair):,}); "
              f"handovers across a border {x_ho / handover.sum():.1%}; cell changes across a border "
              f"{x_mv / moves.sum():.1%}; coupling events {(x_pair + x_ho) / rows:.2%} of all rows; "
              f"busiest region {busiest:.1%} of the load")


if __name__ == "__main__":
    main(sys.argv[1])
