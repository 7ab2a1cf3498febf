"""Progress bar and closing summary of a run (rich, on stderr / stdout)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from .engine import RunResult, Simulation


@contextlib.contextmanager
def progress_bar(total: int, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    progress = Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("quarter hours"),
                        TimeElapsedColumn(), console=Console(stderr=True), disable=disable, transient=False)
    with progress:
        task = progress.add_task("run", total=total)

        def advance(done: int, _total: int) -> None:
            progress.update(task, completed=done)

        yield advance


def kpi_totals(result: RunResult) -> dict[str, float]:
    k = result.kpi
    col = lambda name: np.asarray(k.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)  # noqa: E731
    att = col("voice_attempts").sum()
    return {
        "voice_attempts": att,
        "blocking_rate": col("voice_blocked").sum() / att if att else 0.0,
        "drop_rate": col("voice_dropped").sum() / att if att else 0.0,
        "handover_failure_rate": (col("handover_failures").sum() / col("handover_attempts").sum()
                                  if col("handover_attempts").sum() else 0.0),
        "data_volume_gb": col("data_volume_mb").sum() / 1e3,
    }


def busiest_cells(result: RunResult, n: int = 5) -> list[tuple[int, float, int, int]]:
    """(cell, peak-interval carried Erlang, attempts, blocked) of the cells with most traffic."""
    k = result.kpi
    cell = k.column("cell_id").to_numpy()
    busy = k.column("busy_channels_mean").to_numpy()
    att = k.column("voice_attempts").to_numpy()
    blk = k.column("voice_blocked").to_numpy()
    n_cells = int(cell.max()) + 1 if len(cell) else 0
    peak = np.zeros(n_cells)
    np.maximum.at(peak, cell, busy)
    att_c = np.bincount(cell, weights=att, minlength=n_cells)
    blk_c = np.bincount(cell, weights=blk, minlength=n_cells)
    top = np.argsort(-peak, kind="stable")[:n]
    return [(int(c), float(peak[c]), int(att_c[c]), int(blk_c[c])) for c in top]


def print_summary(sim: Simulation, result: RunResult) -> None:
    console = Console()
    t = kpi_totals(result)
    rows = Table(title="telcosim run", show_header=True)
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, count in sorted(result.rows.items()):
        rows.add_row(name, f"{count:,}")
    console.print(rows)
    net, pop = sim.network, sim.population
    console.print(f"network: {net.n_cells} cells on {int(net.site_id.max()) + 1} sites; "
                  f"{pop.n:,} subscribers; {sim.scenario.time.days} day(s) from {sim.start.isoformat()}")
    console.print(f"voice: {int(t['voice_attempts']):,} call legs attempted, blocking {t['blocking_rate']:.3%}, "
                  f"drops {t['drop_rate']:.3%}, handover failures {t['handover_failure_rate']:.3%}; "
                  f"data served {t['data_volume_gb']:.1f} GB")
    busy = Table(title="busiest cells (peak hour)", show_header=True)
    for h in ("cell", "carried Erl", "channels", "attempts", "blocked"):
        busy.add_column(h, justify="right")
    for c, erl, att, blk in busiest_cells(result):
        busy.add_row(str(c), f"{erl:.2f}", str(int(net.voice_channels[c])), f"{att:,}", f"{blk:,}")
    console.print(busy)
    rate = result.records / result.wall_s if result.wall_s > 0 else 0.0
    console.print(f"wall time {result.wall_s:.1f} s; {result.records:,} CDR + location records, {rate:,.0f} records/s")
    if result.out is not None:
        console.print(f"output: {result.out}")
