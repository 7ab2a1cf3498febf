"""The one run path: a scenario, with its incidents and learned generators, into a run folder.

Every caller runs scenarios through :func:`run` (the CLI, the API, studies, calibration,
rebalancing, augmentation): network and population are built once, the learned generators the
scenario names are attached, and a scenario with incidents runs its baseline (the same scenario
and seed without incidents) first and is labelled against it.

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

from telcosim.models.base import read_sidecar
from telcosim.models.behaviour import sample_population
from telcosim.models.sequences import population_rates
from telcosim.models.shapes import cell_multipliers
from telcosim.sim.config import Scenario
from telcosim.sim.engine import DEFAULT_CHECKPOINT_HOURS, DEFAULT_CHUNK, RunResult, Simulation
from telcosim.sim.errors import ConfigError, OutputError, RunInterrupted
from telcosim.sim.labels import RowLog, RowMatcher
from telcosim.sim.population import activity_classes
from telcosim.sim.sinks import RunWriter
from telcosim.sim.streams import kernel_key

from .incidents import compile_incidents


def baseline_path(out: Path) -> Path:
    """Where ``--baseline`` writes the baseline of a run into ``out``."""
    return out.with_name(out.name + ".baseline")


def attach_learned(sim: Simulation) -> None:
    """What the scenario asks of the learned generators in ``telcosim.models`` (they import torch
    only when used): the per-cell weekly shapes of ``behaviour.cell_shapes`` ("vae" / "gan"), and the
    per-service activity of every subscriber from ``population.behaviour_model`` (a behaviour flow,
    or a sequence transformer: each subscriber's activity from days drawn for their segment and home
    density, :func:`sequence_activity`); the cells are then dimensioned again for the load these
    give them (before incidents are compiled from them)."""
    sc = sim.scenario
    if sc.behaviour.cell_shapes != "profile":
        sim.cell_shapes = cell_multipliers(sc.behaviour.cell_shapes, sim.network.density, sc.seed)
        sim.learned["cell_shapes"] = {"kind": sc.behaviour.cell_shapes, "model": f"models/data/{sc.behaviour.cell_shapes}"}
    if sc.population.behaviour_model:
        path = Path(sc.population.behaviour_model).expanduser()
        if not path.is_absolute() and sc.base_dir is not None:
            path = sc.base_dir / path
        pop = sim.population
        kind, means = read_sidecar(path)["model"], None
        seed = int(kernel_key(sc.seed, "population.behaviour")) % 2**32
        if kind == "sequences":
            per_service, means = sequence_activity(sim, path, seed)
        elif kind == "behaviour":
            draw = sample_population(pop.n, seed, path)
            per_service = np.column_stack([draw["voice_activity"], draw["sms_activity"], draw["data_activity"]])
        else:
            raise ConfigError(f"{sc.source}: population.behaviour_model: {str(path)!r} holds a {kind!r} model; "
                              "expected a folder from 'telcosim models behaviour' or 'telcosim models train "
                              "sequences'")
        set_service_activity(pop, per_service)
        side = json.loads((path / "model.json").read_text(encoding="utf-8"))
        sim.learned["behaviour_model"] = {
            "path": str(path), "model": side.get("model"), "telcosim_version": side.get("telcosim_version"),
            "epsilon": side.get("epsilon"), "delta": side.get("delta"),
            "data_fingerprint": side.get("data_fingerprint"), "training_rows": side.get("training_rows")}
        if means is not None:  # the sequence model's own levels (originated events per day), for reference
            sim.learned["behaviour_model"]["sampled_mo_per_day"] = means
    if sim.learned:
        sim.dimension()  # the learned shapes and activities move load between cells: size for them


def sequence_activity(sim: Simulation, path: Path, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """Per-service activity (n x 3, mean 1 per column) of every subscriber from a sequence model:
    one weekday and one weekend day drawn for the subscriber's segment (activity class) and the
    density class of their home cell (:func:`models.sequences.population_rates`), their originated
    voice, SMS and data events per day over the population's mean. The scenario's rates
    (``behaviour.*_per_day``) keep the level; the model's mean rates per day are returned for the
    manifest. A service the model never draws keeps activity 1."""
    pop = sim.population
    rates, _ = population_rates(path, pop.activity_class, sim.network.density[pop.home_cell], seed)
    mean = rates.mean(axis=0)
    per_service = np.where(mean > 0, rates / np.where(mean > 0, mean, 1.0), 1.0)
    return per_service, {s: round(float(m), 4) for s, m in zip(("voice", "sms", "data"), mean, strict=True)}


def set_service_activity(pop, per_service: np.ndarray) -> None:
    """Give each subscriber per-service activity (n x 3: voice, SMS, data, mean 1 per column):
    ``activity`` becomes their mean (mean 1, its classes recomputed) and ``service_activity`` the
    ratios, so that activity x service_activity is the drawn rate multiplier of each service."""
    per_service = np.asarray(per_service, np.float64)
    act = per_service.mean(axis=1)
    act = act / act.mean() if act.mean() > 0 else np.ones(len(act))
    ratio = np.divide(per_service, act[:, None], out=np.ones_like(per_service), where=act[:, None] > 0)
    pop.activity = act
    pop.activity_class = activity_classes(act)
    pop.service_activity = ratio


def prepare(scenario: Scenario) -> Simulation:
    """Build the scenario's network and population (once) and attach what the layers above the
    simulator provide: the learned generators it names and its compiled incidents."""
    sim = Simulation(scenario)
    attach_learned(sim)
    sim.perturbations = compile_incidents(sim)
    if sim.perturbations is not None:
        sim.role = "incidents"
    return sim


def refuse_unsupported(sc: Scenario, *, baseline: bool, resume: bool) -> None:
    """What :func:`run` cannot honour, refused from the scenario alone (before anything is built):
    a baseline of a run without incidents, and resuming a run with incidents."""
    if baseline and not sc.incidents:
        raise ConfigError(f"baseline: {sc.name} has no incidents, so the run is its own baseline; "
                          "run it without a baseline")
    if resume and sc.incidents:
        raise ConfigError(f"resume: not available for {sc.name}, a scenario with incidents (its labels need "
                          "the baseline and the run whole); run it again without resume")


def run(scenario: Scenario | Simulation, out: Path | None, *, baseline_out: Path | None = None,
        overwrite: bool = False, resume: bool = False, progress: Callable[[int, int], None] | None = None,
        chunk_subscribers: int = DEFAULT_CHUNK, workers: int | None = None, scheduler: str | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_HOURS) -> RunResult:
    """Run a scenario into ``out`` (None: count the rows, write nothing): the one run path of the
    CLI, the API, studies, calibration, rebalancing and augmentation.

    ``scenario`` is a loaded scenario, or a :class:`Simulation` from :func:`prepare` (built once,
    e.g. to size a progress bar first). With incidents, the baseline (same seed, no incidents)
    runs first and the run is labelled against it; ``baseline_out`` keeps the baseline there
    (``result.baseline``). ``progress(done, total)`` sees both runs as one sequence of epochs.

    Execution settings never change a byte of the output: ``chunk_subscribers``, ``workers`` /
    ``scheduler`` (demand on a Dask cluster), ``checkpoint_every`` (hours) and ``resume``
    (continue an interrupted run from its last checkpoint; not for runs with incidents, whose
    labels need the baseline and the run whole). An interrupted run that has a checkpoint raises
    :class:`RunInterrupted` and keeps its completed part for ``resume``.
    """
    refuse_unsupported(scenario.scenario if isinstance(scenario, Simulation) else scenario,
                       baseline=baseline_out is not None, resume=resume)
    sim = scenario if isinstance(scenario, Simulation) else prepare(scenario)
    sc = sim.scenario
    pert = sim.perturbations
    if pert is None:
        writer = RunWriter(out, sim.metadata(), sc.output.compression, overwrite=overwrite, resume=resume)
        try:
            return sim.run(writer, progress, chunk_subscribers, workers=workers, scheduler=scheduler,
                           resume=resume, checkpoint_every=checkpoint_every)
        except BaseException as exc:
            writer.abort(keep_partial=True)
            if isinstance(exc, KeyboardInterrupt) and writer.resumable():
                raise RunInterrupted(f"interrupted; the completed part is kept hidden beside {out}: continue "
                                     "it with the same command plus --resume (resume=True from Python)") from None
            raise
    if baseline_out is not None and out is not None and baseline_out.resolve() == out.resolve():
        raise OutputError("the baseline and the run cannot share a folder")
    n = sim.n_epochs

    def shifted(offset: int):
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, 2 * n)

    base = sim.baseline()
    log = RowLog(pert.first_effect_ms)
    b_writer = RunWriter(baseline_out, base.metadata(), sc.output.compression, overwrite=overwrite)
    writer = RunWriter(out, sim.metadata(), sc.output.compression, overwrite=overwrite)
    try:
        b_result = base.run(b_writer, shifted(0), chunk_subscribers, workers=workers, scheduler=scheduler,
                            checkpoint_every=0, row_log=log)
        del base
        result = sim.run(writer, shifted(n), chunk_subscribers, workers=workers, scheduler=scheduler,
                         checkpoint_every=0, matcher=RowMatcher(log), kpi_ref=b_result.kpi)
    except BaseException:
        writer.abort()
        b_writer.abort()
        if baseline_out is not None and "b_result" in locals():
            shutil.rmtree(baseline_out, ignore_errors=True)  # never a baseline without its run
        raise
    result.baseline = b_result if baseline_out is not None else None
    return result


__all__ = ["attach_learned", "baseline_path", "prepare", "refuse_unsupported", "run", "set_service_activity"]
