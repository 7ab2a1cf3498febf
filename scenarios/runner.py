"""Runs with incidents: the baseline first (the same scenario and seed without incidents), then the
run with them, labelled against it. ``--baseline`` keeps the baseline beside the run.

Both runs draw the same random numbers (streams keyed by subscriber and time), so rows before the
first incident's effect are identical and every later difference comes from the incidents. The
baseline's rows are logged as hashes; every row of the run with incidents that is not among them
carries the ``incident_id`` it is attributed to (``incidents.parquet`` lists the incidents).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sim.config import Scenario
from sim.engine import DEFAULT_CHUNK, RunResult, Simulation
from sim.errors import OutputError
from sim.labels import RowLog, RowMatcher
from sim.sinks import RunWriter
from sim.streams import kernel_key

from .incidents import compile_incidents


def baseline_path(out: Path) -> Path:
    """Where ``--baseline`` writes the baseline of a run into ``out``."""
    return out.with_name(out.name + ".baseline")


def attach_learned(sim: Simulation) -> None:
    """What the scenario asks of the learned generators in ``models`` (torch is imported only
    then): the per-cell weekly shapes of ``behaviour.cell_shapes`` ("vae" / "gan"), and the
    per-service activity of every subscriber from ``population.behaviour_model``."""
    sc = sim.scenario
    if sc.behaviour.cell_shapes != "profile":
        from models.shapes import cell_multipliers

        sim.cell_shapes = cell_multipliers(sc.behaviour.cell_shapes, sim.network.density, sc.seed)
        sim.learned["cell_shapes"] = {"kind": sc.behaviour.cell_shapes, "model": f"models/data/{sc.behaviour.cell_shapes}"}
    if sc.population.behaviour_model:
        from models.behaviour import sample_population

        path = Path(sc.population.behaviour_model).expanduser()
        if not path.is_absolute() and not sc.source.startswith("<"):
            path = Path(sc.source).parent / path
        pop = sim.population
        draw = sample_population(pop.n, int(kernel_key(sc.seed, "population.behaviour")) % 2**32, path)
        per_service = np.column_stack([draw["voice_activity"], draw["sms_activity"], draw["data_activity"]])
        set_service_activity(pop, per_service)
        side = json.loads((path / "model.json").read_text(encoding="utf-8"))
        sim.learned["behaviour_model"] = {
            "path": str(path), "model": side.get("model"), "telcosim_version": side.get("telcosim_version"),
            "epsilon": side.get("epsilon"), "delta": side.get("delta"),
            "data_fingerprint": side.get("data_fingerprint"), "training_rows": side.get("training_rows")}


def set_service_activity(pop, per_service: np.ndarray) -> None:
    """Give each subscriber per-service activity (n x 3: voice, SMS, data, mean 1 per column):
    ``activity`` becomes their mean (mean 1, its classes recomputed) and ``service_activity`` the
    ratios, so that activity x service_activity is the drawn rate multiplier of each service."""
    from sim.population import activity_classes

    per_service = np.asarray(per_service, np.float64)
    act = per_service.mean(axis=1)
    act = act / act.mean() if act.mean() > 0 else np.ones(len(act))
    ratio = np.divide(per_service, act[:, None], out=np.ones_like(per_service), where=act[:, None] > 0)
    pop.activity = act
    pop.activity_class = activity_classes(act)
    pop.service_activity = ratio


attach_cell_shapes = attach_learned  # the earlier name


def run_scenario(scenario: Scenario, out: Path | None, *, baseline_out: Path | None = None,
                 overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
                 chunk_subscribers: int = DEFAULT_CHUNK, workers: int | None = None,
                 scheduler: str | None = None) -> tuple[RunResult, RunResult | None]:
    """Run ``scenario``; with incidents, run its baseline first and label the run against it.
    Returns (run, baseline or None). ``progress`` sees both runs as one sequence of epochs."""
    sim = Simulation(scenario)
    attach_learned(sim)
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
    base.population = sim.population  # the same people, learned activity included
    base.learned = sim.learned
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


__all__ = ["attach_learned", "baseline_path", "run_scenario", "set_service_activity"]
