"""Runs with incidents: the baseline first (the same scenario and seed without incidents), then the
run with them, labelled against it. ``--baseline`` keeps the baseline beside the run.

Both runs draw the same random numbers (streams keyed by subscriber and time), so rows before the
first incident's effect are identical and every later difference comes from the incidents. The
baseline's rows are logged as hashes; every row of the run with incidents that is not among them
carries the ``incident_id`` it is attributed to (``incidents.parquet`` lists the incidents).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sim.config import Scenario
from sim.engine import DEFAULT_CHUNK, RunResult, Simulation
from sim.errors import OutputError
from sim.labels import RowLog, RowMatcher
from sim.sinks import RunWriter

from .incidents import compile_incidents


def baseline_path(out: Path) -> Path:
    """Where ``--baseline`` writes the baseline of a run into ``out``."""
    return out.with_name(out.name + ".baseline")


def attach_cell_shapes(sim: Simulation) -> None:
    """Load the per-cell weekly shapes of ``behaviour.cell_shapes`` ("vae" / "gan") from the learned
    generators in ``models`` (torch is imported only then)."""
    kind = sim.scenario.behaviour.cell_shapes
    if kind == "profile":
        return
    from models.shapes import cell_multipliers

    sim.cell_shapes = cell_multipliers(kind, sim.network.density, sim.scenario.seed)


def run_scenario(scenario: Scenario, out: Path | None, *, baseline_out: Path | None = None,
                 overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
                 chunk_subscribers: int = DEFAULT_CHUNK, workers: int | None = None,
                 scheduler: str | None = None) -> tuple[RunResult, RunResult | None]:
    """Run ``scenario``; with incidents, run its baseline first and label the run against it.
    Returns (run, baseline or None). ``progress`` sees both runs as one sequence of epochs."""
    sim = Simulation(scenario)
    attach_cell_shapes(sim)
    pert = compile_incidents(sim)
    if pert is None:
        writer = RunWriter(out, sim.metadata(), scenario.output.compression, overwrite=overwrite)
        try:
            return sim.run(writer, progress, chunk_subscribers, workers=workers, scheduler=scheduler), None
        except BaseException:
            writer.abort()
            raise
    if baseline_out is not None and out is not None and baseline_out.resolve() == out.resolve():
        raise OutputError("the baseline and the run cannot share a folder")
    n = sim.n_epochs

    def shifted(offset: int):
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, 2 * n)

    base = Simulation(scenario)
    base.role = "baseline"
    base.cell_shapes = sim.cell_shapes
    log = RowLog(pert.first_effect_ms)
    b_writer = RunWriter(baseline_out, base.metadata(), scenario.output.compression, overwrite=overwrite)
    writer = RunWriter(out, sim.metadata(), scenario.output.compression, overwrite=overwrite)
    try:
        b_result = base.run(b_writer, shifted(0), chunk_subscribers, workers=workers, scheduler=scheduler,
                            checkpoint_every=0, row_log=log)
        del base
        sim.perturbations = pert
        sim.role = "incidents"
        result = sim.run(writer, shifted(n), chunk_subscribers, workers=workers, scheduler=scheduler,
                         checkpoint_every=0, matcher=RowMatcher(log), kpi_ref=b_result.kpi)
    except BaseException:
        writer.abort()
        b_writer.abort()
        if baseline_out is not None and "b_result" in locals():
            shutil.rmtree(baseline_out, ignore_errors=True)  # never a baseline without its run
        raise
    return result, (b_result if baseline_out is not None else None)


__all__ = ["attach_cell_shapes", "baseline_path", "run_scenario"]
