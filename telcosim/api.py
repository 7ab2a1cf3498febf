"""The Python API: what the ``telcosim`` command does, for a script or a notebook.

    import telcosim
    run = telcosim.run("small_city", out="runs/town", subscribers=2000, seed=7)
    cdr = run.to_pandas("cdr", columns=["t_start", "service", "outcome"])

Every function takes a scenario as a built-in name, a TOML path, a loaded :class:`Scenario` or
None (the embedded default), with ``overrides`` as ``{"dotted.key": value}`` (the CLI's
``--set``). Runs go through the same path as ``telcosim run`` (incidents, learned generators,
baseline, checkpoints, resume), so the same seed gives the same bytes from either. Bad input
raises a :class:`TelcosimError` whose ``problems`` name the file, the dotted key, the value and
what is allowed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from telcosim import scenarios
from telcosim.evaluation import fidelity
from telcosim.evaluation import hybrid as _hybrid
from telcosim.evaluation.report import write_report
from telcosim.realdata import readers
from telcosim.scenarios import augment as _augment
from telcosim.scenarios import study as _study
from telcosim.scenarios.loader import _toml_value
from telcosim.scenarios.runner import baseline_path
from telcosim.scenarios.runner import run as _run
from telcosim.sim.config import Scenario
from telcosim.sim.engine import DEFAULT_CHUNK
from telcosim.sim.errors import ConfigError, OutputError, TelcosimError
from telcosim.sim.verify import verify_run

# Tables written as a folder of hourly parts, and those written as one file.
PARTED = ("cdr", "locations")


def _override_lines(overrides: Mapping[str, Any] | None, **named: Any) -> list[str]:
    lines = [f"{key}={_toml_value(value)}" for key, value in (overrides or {}).items()]
    lines += [f"{key}={_toml_value(value)}" for key, value in named.items() if value is not None]
    return lines


def load_scenario(scenario: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *,
                  seed: int | None = None, subscribers: int | None = None, days: int | None = None) -> Scenario:
    """A validated scenario: a built-in name, a TOML path or None (the embedded default), with its
    ``extends`` chain merged and ``overrides`` applied. Raises :class:`ConfigError` with every
    problem at once."""
    lines = _override_lines(overrides, seed=seed, **{"population.subscribers": subscribers, "time.days": days})
    return scenarios.load(None if scenario is None else str(scenario), lines)


def check_scenario(scenario: str | Path, overrides: Mapping[str, Any] | None = None) -> list[str]:
    """Every problem of a scenario file (and the files it names) without running it; empty when sound."""
    return scenarios.check(str(scenario), _override_lines(overrides))


def _scenario(scenario: str | Path | Scenario | None, overrides, seed, subscribers, days) -> Scenario:
    if not isinstance(scenario, Scenario):
        return load_scenario(scenario, overrides, seed=seed, subscribers=subscribers, days=days)
    if overrides or seed is not None or subscribers is not None or days is not None:
        raise ConfigError("overrides, seed, subscribers and days apply to a scenario name or file, not to a loaded "
                          "Scenario: pass them to telcosim.load_scenario instead")
    return scenario


@dataclass(frozen=True)
class Run:
    """A run folder written by telcosim: its tables as pyarrow datasets or pandas frames, its
    manifest (scenario, seed, version, row counts, checksums) and, for a run with incidents kept
    with its baseline, the baseline run."""

    path: Path

    def __post_init__(self) -> None:
        if not (self.path / "manifest.json").is_file():
            raise OutputError(f"{self.path}: not a telcosim run folder (no manifest.json)")

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "manifest.json").read_text(encoding="utf-8"))

    @property
    def rows(self) -> dict[str, int]:
        """Rows per table."""
        return dict(self.manifest["row_counts"])

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    @property
    def tables(self) -> list[str]:
        """The tables this run holds (cdr, locations, cell_kpis, subscribers, cells; the PM
        counters pm_cells, pm_relations and voice_matrix unless output.pm_interval_s = 0;
        incidents for a run with incidents)."""
        return [t for t in (*PARTED, "cell_kpis", "subscribers", "cells", "pm_cells", "pm_relations", "voice_matrix",
                            "incidents") if self._where(t).exists()]

    def _where(self, table: str) -> Path:
        return self.path / table if table in PARTED else self.path / f"{table}.parquet"

    def dataset(self, table: str) -> ds.Dataset:
        """A table as a pyarrow dataset: filter and project before reading, e.g.
        ``run.dataset("cdr").to_table(filter=pc.field("service") == "voice")``."""
        if table not in self.tables:
            raise OutputError(f"{self.path}: no table {table!r} (this run has: {', '.join(self.tables)})")
        return ds.dataset(self._where(table), format="parquet")

    def table(self, table: str, columns: list[str] | None = None, filter: ds.Expression | None = None) -> pa.Table:
        """A table (or some of its columns and rows) read into memory."""
        return self.dataset(table).to_table(columns=columns, filter=filter)

    def to_pandas(self, table: str, columns: list[str] | None = None, filter: ds.Expression | None = None):
        """A table as a pandas DataFrame (timestamps keep the run's time zone)."""
        return self.table(table, columns, filter).to_pandas()

    @property
    def baseline(self) -> Run | None:
        """The baseline kept beside a run with incidents (``baseline=True``), else None."""
        b = baseline_path(self.path)
        return Run(b) if (b / "manifest.json").is_file() else None

    def verify(self) -> list[str]:
        """Checksums, schema, references and invariants: one line per problem, empty when sound."""
        return verify_run(self.path)

    def __repr__(self) -> str:
        rows = ", ".join(f"{k}={v:,}" for k, v in self.rows.items())
        return f"Run({str(self.path)!r}: {rows})"


def open_run(path: str | Path) -> Run:
    """A run folder written earlier (by the API or the CLI)."""
    return Run(Path(path))


def run(scenario: str | Path | Scenario | None, out: str | Path, *,
        overrides: Mapping[str, Any] | None = None, seed: int | None = None, subscribers: int | None = None,
        days: int | None = None, baseline: bool = False, overwrite: bool = False, resume: bool = False,
        workers: int | None = None, scheduler: str | None = None, chunk_subscribers: int = DEFAULT_CHUNK,
        progress: Callable[[int, int], None] | None = None) -> Run:
    """Run a scenario into the folder ``out`` and open it.

    ``baseline=True`` keeps, for a scenario with incidents, the same run without them in
    ``OUT.baseline`` (``run.baseline``). ``workers`` / ``scheduler`` draw demand on a local Dask
    cluster or an existing one, ``chunk_subscribers`` bounds memory, ``resume`` continues an
    interrupted run: none of them changes a byte of the output. ``progress(done, total)`` is
    called after each quarter-hour epoch."""
    sc = _scenario(scenario, overrides, seed, subscribers, days)
    out = Path(out)
    _run(sc, out, baseline_out=baseline_path(out) if baseline else None, overwrite=overwrite, resume=resume,
         progress=progress, chunk_subscribers=chunk_subscribers, workers=workers, scheduler=scheduler)
    return Run(out)


def evaluate(synthetic: str | Path | Run, real: Mapping[str, str | Path], *, out: str | Path | None = None,
             required: list[str] | None = None, holidays: list[str] = (), tz: str | None = None,
             part: str = "check") -> dict[str, Any]:
    """Fidelity of a run against real data: ``real`` maps an input kind (activity, cells,
    shares, drive, locations, edges, cdr; see docs/calibration.md) to a file or folder; ``part``
    is the part of each set judged (``check``: the units calibration does not fit on; ``fit``;
    ``all``, for data the project has never seen; docs/evaluate.md). Returns the metrics document
    (``doc["metrics"]``: distance, tolerance and status per metric; ``doc["summary"]["gate"]``)
    and, with ``out``, writes metrics.json and report.html there."""
    path = synthetic.path if isinstance(synthetic, Run) else Path(synthetic)
    problems: list[str] = []
    datasets = []
    for kind, where in real.items():
        if kind not in readers.READERS:
            problems.append(f"real: {kind!r} is not an input kind (choose from {', '.join(sorted(readers.READERS))})")
            continue
        kw = {"tz": tz} if kind in ("drive", "locations") and tz else {}
        try:
            datasets.append(readers.READERS[kind](Path(where), **kw))
        except TelcosimError as exc:
            problems.extend(f"real[{kind!r}]: {p}" for p in exc.problems)
    if part not in ("check", "fit", "all"):
        problems.append(f"part: {part!r} is not a part of a real set (choose from check, fit, all)")
    if problems:
        raise ConfigError(problems)
    try:
        doc = fidelity.evaluate(path, datasets, required=required, holidays=list(holidays), part=part)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    if out is not None:
        write_report(doc, Path(out))
    return doc


def study(study: str | Path, out: str | Path, *, replicates: int | None = None, seed: int | None = None,
          workers: int | None = None, overwrite: bool = False, keep_runs: bool = False, plots: bool = True):
    """Run a study (a built-in name or a study TOML: a grid of scenario variants x replicate
    seeds) into ``out``: runs.parquet, summary.csv/json, one plot per KPI. Returns the result,
    whose ``summary`` holds each KPI's mean and 95% interval per variant."""
    spec = _study.load_study(study, replicates=replicates, seed=seed)
    return _study.run_study(spec, Path(out), workers=workers, keep_runs=keep_runs, overwrite=overwrite,
                            plots=plots)


def augment(kind: str, episodes: int, out: str | Path, *, scenario: str | Path | Scenario | None = None,
            overrides: Mapping[str, Any] | None = None, seed: int = 1, natural_rate: float | None = None,
            window_before_h: float = 2.0, window_after_h: float = 2.0, overwrite: bool = False) -> dict[str, Any]:
    """Labelled episodes of an incident kind (e.g. "site_outage"), each with its baseline and a
    weight that brings the set back to the kind's natural frequency; returns the manifest."""
    sc = _scenario(scenario, overrides, None, None, None)
    return _augment.augment(sc, kind, episodes, Path(out), seed=seed, natural_rate=natural_rate,
                            window_before_h=window_before_h, window_after_h=window_after_h, overwrite=overwrite)


def hybrid(real: str | Path, out: str | Path, *, synthetic: str | Path | Run | None = None,
           scenario: str | Path | Scenario | None = None, scenario_overrides: Mapping[str, Any] | None = None,
           policy: str | Path | Mapping[str, Any] | None = None, key_file: str | Path | None = None,
           cells: str | Path | None = None, report: str | Path | None = None, attacks: int = 2000,
           overwrite: bool = False) -> dict[str, Any]:
    """A governed subset of the real CDRs ``real`` filled with synthetic records (``telcosim
    hybrid``; docs/hybrid.md), written to ``out``; returns its manifest. The synthetic source is a
    run folder ``synthetic`` or a ``scenario`` run on the real records' window. ``policy``: a
    policy TOML path or a mapping of dotted keys (``{"k": 10, "dp.epsilon": 0.5}``); None, the
    defaults. With ``report``, the hybrid and the synthetic run alone are judged against the full
    real set there, and the manifest gets ``"comparison"`` (side by side; not written into ``out``)."""
    if (synthetic is None) == (scenario is None):
        raise ConfigError("give exactly one synthetic source: synthetic= (a run folder) or scenario=")
    if report is not None and synthetic is None:
        raise ConfigError("report: needs synthetic= (a run folder): the synthetic run alone is judged beside the hybrid")
    if isinstance(policy, Mapping):
        pol = _hybrid.policy_from_dict({}, "<policy>", policy)
    else:
        pol = _hybrid.load_policy(policy)
    syn_path = synthetic.path if isinstance(synthetic, Run) else synthetic
    sc = None if scenario is None else _scenario(scenario, scenario_overrides, None, None, None)
    built = _hybrid.hybrid(real, out, synthetic=syn_path, scenario=sc, policy=pol, key_file=key_file, cells=cells,
                           overwrite=overwrite)
    manifest = dict(built.manifest)
    if report is not None:
        manifest["comparison"] = _hybrid.evaluate_hybrid(out, real, syn_path, report, key_file=key_file, cells=cells,
                                                         n_attacks=attacks)
    return manifest


def builtin_scenarios() -> list[str]:
    """The names of the built-in scenarios."""
    return scenarios.builtin_names()


__all__ = ["Run", "Scenario", "TelcosimError", "augment", "builtin_scenarios", "check_scenario", "evaluate",
           "hybrid", "load_scenario", "open_run", "run", "study"]
