"""Scenario studies: one scenario run over a grid or list of variants, replicated with common
random numbers, summarised per variant with Student-t confidence intervals and plotted.

    from telcosim.scenarios.study import load_study, run_study
    st = load_study("studies/voice.toml")          # every problem at once, as a ConfigError
    result = run_study(st, Path("out/voice"), workers=2)

A study file (TOML; the format is in ``docs/studies.md``)::

    scenario = "small_city"                        # built-in name or path (relative to this file)
    seed = 7                                       # replicate seeds are derived from it
    replicates = 5
    kpis = ["blocking_rate", "drop_rate"]          # optional subset of KPIS
    set = { "behaviour.voice_per_day" = 6.0 }      # fixed overrides for every run
    [grid]                                         # cartesian product of the lists ...
    "network.voice_channels.urban" = [2, 4, 6]
    # ... or explicit variants instead:  [[variant]]  name = "busy"  set = { ... }

Every (variant, replicate) is one simulator run. Replicate r has the same seed in every variant
(:func:`replicate_seeds`), so variants differ by their overrides only: common random numbers.
Runs are independent, so they are spread over worker processes; the KPI values do not depend on
how many.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import difflib
import itertools
import json
import math
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from telcosim import scenarios
from telcosim.scenarios import loader
from telcosim.sim import __version__, config
from telcosim.sim.config import Scenario, read_toml
from telcosim.sim.errors import ConfigError, OutputError, TelcosimError
from telcosim.sim.kernels import cores
from telcosim.sim.staging import staging_folder, swap_into_place

from .runner import prepare, run

STUDY_DIR = Path(__file__).resolve().parent / "builtin" / "studies"

TOP_KEYS = ("name", "description", "scenario", "seed", "replicates", "kpis", "set", "grid", "variant")
VARIANT_KEYS = ("name", "description", "set")
MAX_REPLICATES = 10_000
MAX_RUNS = 100_000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]*$")
_KEY_PART_RE = re.compile(r"^[A-Za-z0-9_-]+(\[[0-9]+\])?$")  # "incidents[0]" indexes a list of tables
# Keys a study may not override: the seed comes from the study's seed and the replicate index.
_RESERVED = {"seed": "set by the study: give the study's 'seed' (replicate seeds derive from it)"}


# -- KPIs ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kpi:
    name: str
    label: str  # axis label, with its unit
    unit: str
    doc: str
    integer: bool = False


KPIS: dict[str, Kpi] = {k.name: k for k in (
    Kpi("voice_attempts", "voice call attempts (legs)", "1",
        "voice call legs attempted, redials included (sum of cell_kpis.voice_attempts)", True),
    Kpi("blocking_rate", "blocking rate (blocked / attempts)", "fraction",
        "voice legs blocked for lack of a channel / voice legs attempted"),
    Kpi("drop_rate", "drop rate (dropped / (completed + dropped))", "fraction",
        "voice legs dropped after connecting / legs that connected (completed + dropped)"),
    Kpi("failed_attempts", "failed voice attempts (legs)", "1",
        "voice legs failed otherwise: busy party, remote blocking (sum of voice_failed)", True),
    Kpi("peak_cell_load", "peak cell load (busy channels / channels)", "fraction",
        "highest time-average channel occupancy of any cell in any KPI interval: "
        "busy_channels_mean / voice channels of the cell (cells without channels left out)"),
    Kpi("peak_carried_erlang", "peak carried traffic per cell (Erl)", "Erl",
        "highest time-average busy channels (carried Erlang) of any cell in any KPI interval"),
    Kpi("data_volume_gb", "data volume (GB)", "GB", "downlink data volume served, 10^9 bytes"),
    Kpi("throughput_p95_mbps", "p95 cell throughput (Mbps)", "Mbps",
        "95th percentile (linear interpolation) of throughput_mean_mbps over the cell-intervals "
        "with data traffic"),
    Kpi("cdr_records", "CDR records", "1", "rows of the run's cdr table", True),
)}


def run_kpis(kpi_table, rows: dict[str, int], voice_channels: np.ndarray) -> dict[str, float]:
    """The study KPIs of one run from its cell KPI table (``docs/schema.md`` cell_kpis), its row
    counts and the voice channels of each cell (indexed by cell_id). Rates with an empty
    denominator and the percentile of a run without data traffic are NaN."""

    def col(name: str) -> np.ndarray:
        return np.asarray(kpi_table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    att, blocked = col("voice_attempts").sum(), col("voice_blocked").sum()
    completed, dropped = col("voice_completed").sum(), col("voice_dropped").sum()
    busy_mean = col("busy_channels_mean")
    channels = np.asarray(voice_channels, dtype=np.float64)[kpi_table.column("cell_id").to_numpy()]
    has = channels > 0
    thr = kpi_table.column("throughput_mean_mbps").drop_null().to_numpy()
    return {
        "voice_attempts": float(att),
        "blocking_rate": float(blocked / att) if att else math.nan,
        "drop_rate": float(dropped / (completed + dropped)) if completed + dropped else math.nan,
        "failed_attempts": float(col("voice_failed").sum()),
        "peak_cell_load": float((busy_mean[has] / channels[has]).max()) if has.any() else math.nan,
        "peak_carried_erlang": float(busy_mean.max()) if busy_mean.size else math.nan,
        "data_volume_gb": float(col("data_volume_mb").sum() / 1e3),
        "throughput_p95_mbps": float(np.percentile(thr, 95)) if thr.size else math.nan,
        "cdr_records": float(rows.get("cdr", 0)),
    }


# -- statistics ------------------------------------------------------------------------------------

def ci95(values) -> dict[str, float]:
    """mean, sample sd (ddof 1), n and the two-sided 95% Student-t interval of the mean of the
    finite ``values`` (NaNs are left out). sd and the interval are NaN when n < 2."""
    from scipy.stats import t  # lazy: scipy.stats takes seconds to import

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "sd": math.nan, "n": n, "ci95_low": math.nan, "ci95_high": math.nan,
                "ci95_half": math.nan}
    sd = float(x.std(ddof=1))
    half = float(t.ppf(0.975, n - 1) * sd / math.sqrt(n))
    return {"mean": mean, "sd": sd, "n": n, "ci95_low": mean - half, "ci95_high": mean + half,
            "ci95_half": half}


def replicate_seeds(seed: int, replicates: int) -> list[int]:
    """The root seed of each replicate: ``SeedSequence(seed, spawn_key=(r,))``'s first 64-bit word,
    shifted to 63 bits. The same list for every variant (common random numbers); it depends on
    ``seed`` and the index only, so adding replicates keeps the seeds of the earlier ones."""
    return [int(np.random.SeedSequence(seed, spawn_key=(r,)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
            for r in range(replicates)]


# -- the study file ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[tuple[str, Any], ...]  # (dotted key, value) specific to this variant
    origins: dict[str, str]  # dotted key -> where the study file gives it (for messages)
    description: str = ""


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    label: str  # how messages name the study file
    path: Path
    scenario_ref: str  # as written
    scenario_path: str  # built-in name or absolute path, as given to scenarios.load
    seed: int
    replicates: int
    kpis: tuple[str, ...]
    fixed: tuple[tuple[str, Any], ...]
    varied: tuple[str, ...]  # dotted keys that differ between variants (grid keys in file order)
    is_grid: bool
    variants: tuple[Variant, ...]
    scenarios: tuple[Scenario, ...]  # per variant, loaded and validated (seed not yet set)
    params: tuple[dict[str, Any], ...]  # per variant: the value of every varied key in its scenario

    @property
    def seeds(self) -> list[int]:
        return replicate_seeds(self.seed, self.replicates)

    @property
    def n_runs(self) -> int:
        return len(self.variants) * self.replicates

    def overrides(self, i: int) -> list[str]:
        """The ``--set`` overrides of variant ``i`` (fixed ones first)."""
        return [f"{k}={toml_literal(v)}" for k, v in (*self.fixed, *self.variants[i].overrides)]


def builtin_studies() -> list[str]:
    return sorted(p.stem for p in STUDY_DIR.glob("*.toml"))


def describe_builtin_studies() -> list[tuple[str, str, str]]:
    """(name, path, description) of each built-in study."""
    out = []
    for name in builtin_studies():
        path = STUDY_DIR / f"{name}.toml"
        try:
            raw = read_toml(path, path.name, str(path))
        except ConfigError:
            raw = {}
        desc = raw.get("description", "")
        out.append((name, str(path), desc if isinstance(desc, str) else ""))
    return out


def toml_literal(v: Any) -> str:
    """A TOML value as text, so that ``scenarios.load``'s ``key=value`` overrides read it back."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    raise TypeError(type(v).__name__)


def _fmt(v: Any) -> str:
    """A value in a variant name or a message: TOML-like, strings without quotes."""
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return toml_literal(v)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, bool | int | float | str | dt.date | dt.time)


def _type_name(v: Any) -> str:
    return "a table" if isinstance(v, dict) else "a list" if isinstance(v, list) else type(v).__name__


def _did_you_mean(key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"


def _flatten(table: dict[str, Any], where: str, label: str, problems: list[str],
             leaf: Callable[[Any], bool]) -> list[tuple[str, Any]]:
    """Dotted keys of a table written either as quoted ``"a.b.c" = v`` or as nested tables; a
    value for which ``leaf`` is true ends a key."""
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict) and not leaf(v):
                if not v:
                    problems.append(f"{label}: {where}.{key}: an empty table (give dotted.key = value)")
                walk(v, key)
                continue
            parts = key.split(".")
            if not all(_KEY_PART_RE.match(p) for p in parts):
                problems.append(f"{label}: {where}.{key}: not a dotted scenario key (parts of letters, digits, "
                                "'_' and '-', joined by '.', e.g. network.voice_channels.urban; a list of "
                                "tables is indexed as incidents[0].start)")
                continue
            if key in seen:
                problems.append(f"{label}: {where}.{key}: given twice")
                continue
            if parts[0] in _RESERVED:
                problems.append(f"{label}: {where}.{key}: {_RESERVED[parts[0]]}")
                continue
            seen.add(key)
            out.append((key, v))

    walk(table, "")
    return out


def _scalar_overrides(table: Any, where: str, label: str, problems: list[str]) -> list[tuple[str, Any]]:
    if not isinstance(table, dict):
        problems.append(f"{label}: {where}: {table!r} is not a table (write {where} = {{ \"dotted.key\" = value }})")
        return []
    out = []
    for key, v in _flatten(table, where, label, problems, leaf=lambda _: False):
        if not _is_scalar(v):
            problems.append(f"{label}: {where}.{key}: {_type_name(v)} is not an override value "
                            "(give a number, string or true/false)")
        else:
            out.append((key, v))
    return out


def _short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other key ends with."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            s = ".".join(parts[-n:])
            if not any(o != k and (o == s or o.endswith("." + s)) for o in keys):
                out[k] = s
                break
        else:
            out[k] = k
    return out


def _safe(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)
    return s if s and s[0] not in ".-" else f"v{s}"


def _resolve_study_ref(ref: str | Path) -> tuple[Path, str]:
    text = str(ref)
    if "/" not in text and os.sep not in text and not text.endswith(".toml") and text in builtin_studies():
        return STUDY_DIR / f"{text}.toml", f"builtin:studies/{text}"
    return Path(text).expanduser(), text


def _lookup(d: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = d
    for part in key.split("."):
        name, _, index = part.partition("[")
        if not isinstance(node, dict) or name not in node:
            return False, None
        node = node[name]
        if index:
            i = int(index.rstrip("]"))
            if not isinstance(node, list | tuple) or i >= len(node):
                return False, None
            node = node[i]
    return True, node


def load_study(ref: str | Path, *, replicates: int | None = None, seed: int | None = None) -> Study:
    """Read and validate a study file (a path or a built-in study name), and load the scenario of
    every variant. ``replicates`` and ``seed`` replace the file's. Raises one
    :class:`~sim.errors.ConfigError` listing every problem: file, dotted key, bad value, what is
    allowed."""
    path, label = _resolve_study_ref(ref)
    if not path.exists():
        hint = f"built-in studies: {', '.join(builtin_studies())}" if builtin_studies() else ""
        close = difflib.get_close_matches(str(ref), builtin_studies(), n=1)
        hint = (f"did you mean {close[0]!r}? " if close else "") + hint
        raise ConfigError(f"{label}: no such study file or built-in study ({hint})")
    raw = read_toml(path, label, label)
    p: list[str] = []

    for key in raw:
        if key not in TOP_KEYS:
            p.append(f"{label}: {key}: unknown key ({_did_you_mean(key, TOP_KEYS)})")

    def text(key: str, default: str) -> str:
        v = raw.get(key, default)
        if not isinstance(v, str):
            p.append(f"{label}: {key}: {v!r} is not a string")
            return default
        return v

    name = text("name", path.stem)
    description = text("description", "")

    def integer(key: str, default: int, lo: int, hi: int, given: int | None) -> int:
        v = raw.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool):
            p.append(f"{label}: {key}: {v!r} is not an integer (allowed: {lo} to {hi})")
            v = default
        elif not lo <= v <= hi:
            p.append(f"{label}: {key}: {v} is out of range (allowed: {lo} to {hi})")
            v = default
        return v if given is None else given

    seed_v = integer("seed", 1, 0, 2**63 - 1, seed)
    reps = integer("replicates", 5, 1, MAX_REPLICATES, replicates)

    kpis: list[str] = list(KPIS)
    if "kpis" in raw:
        v = raw["kpis"]
        if not isinstance(v, list) or not v:
            p.append(f"{label}: kpis: {v!r} is not a non-empty list of KPI names (allowed: {', '.join(KPIS)})")
        else:
            chosen = []
            for i, k in enumerate(v):
                if not isinstance(k, str) or k not in KPIS:
                    hint = _did_you_mean(k, KPIS) if isinstance(k, str) else f"allowed: {', '.join(KPIS)}"
                    p.append(f"{label}: kpis[{i}]: {k!r} is not a KPI ({hint})")
                elif k in chosen:
                    p.append(f"{label}: kpis[{i}]: {k!r} is listed twice")
                else:
                    chosen.append(k)
            if chosen:
                kpis = chosen

    # The scenario: a built-in name or a path relative to the study file.
    scenario_ref, scenario_path = "", ""
    if "scenario" not in raw:
        p.append(f"{label}: scenario: missing (give a built-in scenario name, "
                 f"{', '.join(scenarios.builtin_names())}, or the path of a scenario file)")
    elif not isinstance(raw["scenario"], str) or not raw["scenario"].strip():
        p.append(f"{label}: scenario: {raw['scenario']!r} is not a scenario name or path "
                 f"(built-in scenarios: {', '.join(scenarios.builtin_names())})")
    else:
        scenario_ref = raw["scenario"]
        looks_like_path = "/" in scenario_ref or os.sep in scenario_ref or scenario_ref.endswith(".toml")
        if not looks_like_path and scenario_ref in scenarios.builtin_names():
            scenario_path = scenario_ref
        else:
            sp = Path(scenario_ref).expanduser()
            sp = sp if sp.is_absolute() else path.resolve().parent / sp
            if sp.is_file():
                scenario_path = str(sp)
            else:
                close = difflib.get_close_matches(scenario_ref, scenarios.builtin_names(), n=1)
                mean = f"did you mean {close[0]!r}? " if close else ""
                p.append(f"{label}: scenario: {scenario_ref!r}: no such built-in scenario or scenario file "
                         f"(paths are relative to the study file; {mean}built-in scenarios: "
                         f"{', '.join(scenarios.builtin_names())})")

    fixed = _scalar_overrides(raw.get("set", {}), "set", label, p)
    fixed_keys = {k for k, _ in fixed}

    variants: list[Variant] = []
    varied: list[str] = []
    is_grid = "grid" in raw
    if "grid" in raw and "variant" in raw:
        p.append(f"{label}: grid: give either [grid] or [[variant]] tables, not both "
                 "(a grid is every combination; variants are listed one by one)")
    elif "grid" in raw:
        g = raw["grid"]
        axes: list[tuple[str, list[Any]]] = []
        if not isinstance(g, dict):
            p.append(f"{label}: grid: {g!r} is not a table (write [grid] then \"dotted.key\" = [values])")
        else:
            for key, values in _flatten(g, "grid", label, p, leaf=lambda _: False):
                where = f"grid.{key}"
                if not isinstance(values, list) or not values:
                    what = "an empty list" if isinstance(values, list) else repr(values)
                    p.append(f"{label}: {where}: {what} is not a list of values (write {key} = [a, b, ...])")
                    continue
                bad = [v for v in values if not _is_scalar(v)]
                if bad:
                    p.append(f"{label}: {where}: {_type_name(bad[0])} in the list is not an override value "
                             "(give numbers, strings or true/false)")
                    continue
                dups = sorted({_fmt(v) for i, v in enumerate(values) if any(
                    type(v) is type(u) and v == u for u in values[:i])})
                if dups:
                    p.append(f"{label}: {where}: {', '.join(dups)} listed twice (each value once)")
                    continue
                if key in fixed_keys:
                    p.append(f"{label}: {where}: also given in set (a key is either fixed or varied)")
                    continue
                axes.append((key, values))
            if not axes and isinstance(g, dict) and not any(line.startswith(f"{label}: grid.") for line in p):
                p.append(f"{label}: grid: empty (give at least one \"dotted.key\" = [values])")
        if axes:
            n = math.prod(len(v) for _, v in axes)
            if n * reps > MAX_RUNS:
                p.append(f"{label}: grid: {n} variants x {reps} replicates = {n * reps} runs "
                         f"(at most {MAX_RUNS}; fewer values or replicates)")
            else:
                varied = [k for k, _ in axes]
                short = _short_names(varied)
                taken: set[str] = set()
                for combo in itertools.product(*(v for _, v in axes)):
                    vname = _safe(",".join(f"{short[k]}={_fmt(v)}" for k, v in zip(varied, combo, strict=True)))
                    base, k = vname, 2
                    while vname in taken:  # e.g. 2 and 2.0, or values that differ in unsafe characters
                        vname, k = f"{base}+{k}", k + 1
                    taken.add(vname)
                    origins = {k: f"grid.{k}" for k in varied}
                    variants.append(Variant(vname, tuple(zip(varied, combo, strict=True)), origins))
    elif "variant" in raw:
        vs = raw["variant"]
        if not isinstance(vs, list) or not vs or not all(isinstance(v, dict) for v in vs):
            p.append(f"{label}: variant: {vs!r} is not a list of tables (write one [[variant]] table "
                     "per variant, with name and set)")
        else:
            names: set[str] = set()
            for i, v in enumerate(vs, start=1):
                at = f"variant[{i}]"
                for key in v:
                    if key not in VARIANT_KEYS:
                        p.append(f"{label}: {at}.{key}: unknown key ({_did_you_mean(key, VARIANT_KEYS)})")
                vname = v.get("name")
                if vname is None:
                    p.append(f"{label}: {at}.name: missing (each variant needs a name: letters, digits, "
                             "and . _ = , + -)")
                    vname = ""  # the study is refused; messages then name the variant by number only
                elif not isinstance(vname, str) or not _NAME_RE.match(vname):
                    p.append(f"{label}: {at}.name: {vname!r} is not allowed (a name starts with a letter or "
                             "digit, then letters, digits and . _ = , + -; it names a folder)")
                    vname = ""
                elif vname in names:
                    p.append(f"{label}: {at}.name: {vname!r} is used by an earlier variant (names must differ)")
                names.add(vname)
                vdesc = v.get("description", "")
                if not isinstance(vdesc, str):
                    p.append(f"{label}: {at}.description: {vdesc!r} is not a string")
                    vdesc = ""
                ov = _scalar_overrides(v.get("set", {}), f"{at}.set", label, p)
                for k, _ in ov:
                    if k not in varied:
                        varied.append(k)
                variants.append(Variant(vname, tuple(ov), {k: f"{at}.set.{k}" for k, _ in ov},
                                        f"{vdesc}"))
            if len(vs) * reps > MAX_RUNS:
                p.append(f"{label}: variant: {len(vs)} variants x {reps} replicates = {len(vs) * reps} runs "
                         f"(at most {MAX_RUNS})")
    else:
        variants.append(Variant("baseline", (), {}, "the scenario with the fixed overrides"))
        is_grid = False

    # Problems of the file itself are kept and reported together with those of the variants.
    # Load every variant's scenario: a bad key or value is reported where the study writes it.
    # The label loader.load gives an override's problems: "builtin:NAME" or the file's name.
    top = Path(scenario_path).name if Path(scenario_path).is_absolute() else f"builtin:{scenario_path}"
    loaded: list[Scenario] = []
    fixed_origin = {k: f"set.{k}" for k, _ in fixed}
    base: dict[str, set[str]] = {}

    def base_problems(fixed_pairs: list[tuple[str, Any]]) -> set[str]:
        """The problems of the scenario with the fixed overrides only (loaded once)."""
        if "lines" not in base:
            try:
                loader.load(scenario_path, [f"{k}={toml_literal(v)}" for k, v in fixed_pairs])
                base["lines"] = set()
            except ConfigError as exc:
                base["lines"] = set(exc.problems)
        return base["lines"]

    for var in variants if scenario_path else []:
        pairs = dict([*fixed, *var.overrides])
        origins = {**fixed_origin, **var.origins}
        problems: list[str] = []
        while True:
            try:
                loaded.append(loader.load(scenario_path, [f"{k}={toml_literal(v)}" for k, v in pairs.items()]))
                break
            except ConfigError as exc:
                # An override through a value that is not a table ("a.b.c" where a.b is a number)
                # stops the loader at once: report it, leave it out and look for the others.
                stuck = [line for line in exc.problems if line.startswith("--set ")]
                problems.extend(stuck)
                key = next((k for k in pairs if stuck and stuck[0].startswith((f"--set {k}:", f"--set '{k}"))),
                           None)
                if key is None:
                    problems.extend(line for line in exc.problems if line not in stuck)
                    break
                del pairs[key]
        if problems:
            suffix = f" (variant {var.name!r})" if not is_grid and var.origins and var.name else ""
            for line in problems:
                mapped = _map_problem(line, top, origins, label, scenario_ref)
                if var.origins and any(mapped.startswith(f"{label}: {o}") for o in var.origins.values()):
                    mapped += suffix
                elif var.origins and var.name and line not in base_problems(fixed):
                    # A check across keys that only this variant's values fail (e.g. a grid value
                    # of network.urban_km beyond the scenario's suburban_km): say which variant.
                    mapped += f" (variant {var.name!r})"
                if mapped not in p:
                    p.append(mapped)
    if p:
        raise ConfigError(p)
    if scenario_path:
        extra = loader.check(scenario_path, [f"{k}={toml_literal(v)}" for k, v in fixed])
        if extra:
            raise ConfigError([f"{label}: scenario {scenario_ref!r}: {line}" for line in extra])

    params = []
    for sc in loaded:
        d = sc.to_dict()
        row = {}
        for k in varied:
            found, value = _lookup(d, k)
            row[k] = value if found else None
        params.append(row)
    return Study(name=name, description=description, label=label, path=path.resolve(),
                 scenario_ref=scenario_ref, scenario_path=scenario_path, seed=seed_v, replicates=reps,
                 kpis=tuple(kpis), fixed=tuple(fixed), varied=tuple(varied), is_grid=is_grid,
                 variants=tuple(variants), scenarios=tuple(loaded), params=tuple(params))


def _map_problem(line: str, top: str, origins: dict[str, str], label: str, scenario_ref: str) -> str:
    """Rewrite a scenario loader problem about an override as a problem of the study file."""
    rest = None
    if line.startswith(f"{top}: "):
        rest = line[len(top) + 2:]
    elif line.startswith("--set "):  # "--set 'a.b=..': ..." or "--set a.b: ..."
        m = re.match(r"--set '?([^':=]+)", line)
        key = m.group(1) if m else ""
        for k, origin in origins.items():
            if k == key or k.startswith(key + "."):
                return f"{label}: {origin}: {line.split(': ', 1)[-1]}"
    if rest is not None:
        key, _, msg = rest.partition(": ")
        for k, origin in origins.items():
            if k == key:
                return f"{label}: {origin}: {msg}"
        for k, origin in origins.items():
            if k.startswith(key + ".") or key.startswith(k + "."):
                return f"{label}: {origin}: {key}: {msg}"
    return f"{label}: scenario {scenario_ref!r}: {line}"


# -- running -----------------------------------------------------------------------------------------

def _run_one(task: tuple[int, Scenario, str | None]) -> tuple[int, str, Any]:
    """One simulator run in a worker: (index, "ok", (kpis, rows, wall_s)) or (index, "error", problems).
    A scenario with incidents runs as ``telcosim run`` runs it (its baseline first, then the run
    labelled against it); its KPIs are those of the run with the incidents."""
    index, scenario, out = task
    dest = Path(out) if out else None
    t0 = time.perf_counter()
    try:
        sim = prepare(scenario)
        channels = sim.network.voice_channels.copy()  # as dimensioned; incidents change the run's, not these
        result = run(sim, dest, checkpoint_every=0)
    except TelcosimError as exc:
        return index, "error", exc.problems
    wall = time.perf_counter() - t0
    return index, "ok", (run_kpis(result.kpi, result.rows, channels), dict(result.rows), wall)


def _warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the kernels once in this process, so that the
    worker processes started next load them from the cache instead of each compiling them."""
    sc = config.load(None, ["population.subscribers=30", "network.sites=2", "network.layout='hex'"])
    _run_one((0, sc, None))


def default_workers(n_runs: int) -> int:
    return max(1, min(cores(), n_runs))


@dataclass
class StudyResult:
    out: Path
    runs: Any  # pandas DataFrame, one row per run
    summary: Any  # pandas DataFrame, one row per (variant, KPI)
    wall_s: float


def _prepare_out(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is a file (give a folder for the study)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out}: already exists and is not empty (choose another --out or pass --overwrite)")
    return staging_folder(out, "study folder")


def run_study(study: Study, out: Path, *, workers: int | None = None, keep_runs: bool = False,
              overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
              plots: bool = True) -> StudyResult:
    """Run every (variant, replicate) of ``study`` and write ``out`` atomically: runs.parquet,
    runs.csv, summary.csv, summary.json, plots/<kpi>.svg and study.toml (a copy of the file)."""
    t0 = time.perf_counter()
    tmp = _prepare_out(out, overwrite)
    try:
        seeds = study.seeds
        tasks = []
        for i, (var, sc) in enumerate(zip(study.variants, study.scenarios, strict=True)):
            for r, s in enumerate(seeds):
                keep = str(tmp / "runs" / _safe(var.name) / str(s)) if keep_runs else None
                tasks.append((i * study.replicates + r, dataclasses.replace(sc, seed=s), keep))
        n = len(tasks)
        workers = default_workers(n) if workers is None else max(1, min(workers, n))
        results: list[Any] = [None] * n
        done = 0

        def collect(index: int, status: str, payload: Any) -> None:
            nonlocal done
            if status == "error":
                var = study.variants[index // study.replicates]
                seed = seeds[index % study.replicates]
                raise ConfigError([f"{study.label}: variant {var.name!r}, seed {seed}: {line}" for line in payload])
            results[index] = payload
            done += 1
            if progress is not None:
                progress(done, n)

        if progress is not None:
            progress(0, n)
        if workers == 1:
            for task in tasks:
                collect(*_run_one(task))
        else:
            _warm_up()
            ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_run_one, t) for t in tasks]
                try:
                    for fut in cf.as_completed(futures):
                        collect(*fut.result())
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        runs = _runs_frame(study, seeds, results)
        summary = summarize(study, runs)
        _write_outputs(study, runs, summary, tmp, plots)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StudyResult(out, runs, summary, time.perf_counter() - t0)


# -- outputs -----------------------------------------------------------------------------------------

def _runs_frame(study: Study, seeds: list[int], results: list[Any]):
    rows = []
    for i, var in enumerate(study.variants):
        for r, s in enumerate(seeds):
            kpis, _, wall = results[i * study.replicates + r]
            row = {"variant": var.name}
            row.update(study.params[i])
            row.update({"replicate": r, "seed": s})
            for k in study.kpis:
                row[k] = kpis[k]
            row["wall_s"] = wall
            rows.append(row)
    df = pd.DataFrame(rows)
    for k in study.kpis:
        if KPIS[k].integer:
            df[k] = df[k].astype("int64")
    df["seed"] = df["seed"].astype("int64")
    df["replicate"] = df["replicate"].astype("int64")
    return df


def summarize(study: Study, runs):
    """Per variant and KPI: mean, sd, n and the 95% Student-t interval (one row each)."""
    rows = []
    for i, var in enumerate(study.variants):
        sel = runs[runs["variant"] == var.name]
        for k in study.kpis:
            row: dict[str, Any] = {"variant": var.name}
            row.update(study.params[i])
            row.update({"kpi": k, "unit": KPIS[k].unit})
            row.update(ci95(sel[k].to_numpy(dtype=np.float64)))
            rows.append(row)
    return pd.DataFrame(rows)


def _json_value(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    return v


def summary_json(study: Study, summary, wall_s: float | None = None) -> dict[str, Any]:
    variants = []
    for i, var in enumerate(study.variants):
        sel = summary[summary["variant"] == var.name]
        kpis = {}
        for _, r in sel.iterrows():
            kpis[r["kpi"]] = {"unit": r["unit"], "mean": _json_value(r["mean"]), "sd": _json_value(r["sd"]),
                              "n": int(r["n"]), "ci95": [_json_value(r["ci95_low"]), _json_value(r["ci95_high"])]}
        variants.append({"name": var.name, "description": var.description,
                         "overrides": {k: _json_value(v) for k, v in var.overrides},
                         "params": {k: _json_value(v) for k, v in study.params[i].items()}, "kpis": kpis})
    return {
        "study": study.name, "description": study.description, "scenario": study.scenario_ref,
        "seed": study.seed, "replicates": study.replicates, "replicate_seeds": study.seeds,
        "fixed": {k: _json_value(v) for k, v in study.fixed}, "varied": list(study.varied),
        "kpis": {k: {"unit": KPIS[k].unit, "doc": KPIS[k].doc} for k in study.kpis},
        "telcosim_version": __version__, "variants": variants,
    }


def _write_outputs(study: Study, runs, summary, tmp: Path, plots: bool) -> None:
    table = pa.Table.from_pandas(runs, preserve_index=False)
    meta = {b"telcosim.study": study.name.encode(), b"telcosim.study_seed": str(study.seed).encode()}
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}),
                   tmp / "runs.parquet")
    runs.to_csv(tmp / "runs.csv", index=False, float_format="%.10g")
    summary.to_csv(tmp / "summary.csv", index=False, float_format="%.10g")
    (tmp / "summary.json").write_text(json.dumps(summary_json(study, summary), indent=2) + "\n")
    shutil.copyfile(study.path, tmp / "study.toml")
    if plots:
        plot_dir = tmp / "plots"
        plot_dir.mkdir()
        for k in study.kpis:
            plot_kpi(study, summary, k, plot_dir / f"{k}.svg")


_UNIT_SUFFIXES = (("_km", "km"), ("_mbps", "Mbps"), ("_s", "s"), ("_min", "min"), ("_per_day", "per day"),
                  ("_prob", "probability"), ("_share", "share"), ("_deg", "deg"), ("_kmh_median", "km/h"))


def param_label(key: str) -> str:
    """An axis label for a scenario key, with its unit where the key's name says it."""
    parts = key.split(".")
    if "voice_channels" in parts:
        return f"{key} (channels per cell)"
    if "data_mbps" in parts:
        return f"{key} (Mbps per cell)"
    for suffix, unit in _UNIT_SUFFIXES:
        if parts[-1].endswith(suffix):
            return f"{key} ({unit})"
    return key


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_kpi(study: Study, summary, kpi: str, path: Path, fmt: str = "svg") -> None:
    """KPI mean with 95% CI error bars against the first varied parameter; one line per level of
    the other parameters (grid), or one point per variant when the variants vary several keys."""
    import matplotlib as mpl  # lazy: matplotlib is slow to import; only figures need it
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no backend switch

    sel = summary[summary["kpi"] == kpi]
    info = KPIS[kpi]
    # Text stays text (searchable, small files); a fixed salt and no date make the SVG reproducible.
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "telcosim"}):
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        _draw(study, sel, info, kpi, ax)
        fig.tight_layout()
        fig.savefig(path, format=fmt, metadata={"Date": None} if fmt == "svg" else None)


def _draw(study: Study, sel, info: Kpi, kpi: str, ax) -> None:
    xkey = study.varied[0] if study.varied else None
    xs_all = [p.get(xkey) for p in study.params] if xkey else []
    by_x = xkey is not None and _numeric(xs_all) and (study.is_grid or len(study.varied) == 1)
    if by_x:
        others = list(study.varied[1:])
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(study.params):
            groups.setdefault(tuple(p[k] for k in others), []).append(i)
        short = _short_names(list(study.varied))
        for level, idx in groups.items():
            idx = sorted(idx, key=lambda i: study.params[i][xkey])
            rows = [sel[sel["variant"] == study.variants[i].name].iloc[0] for i in idx]
            x = [study.params[i][xkey] for i in idx]
            y = [r["mean"] for r in rows]
            err = [0.0 if not math.isfinite(r["ci95_half"]) else r["ci95_half"] for r in rows]
            if len(others) == 1:
                lab = _fmt(level[0])
            else:
                lab = ", ".join(f"{short[k]} = {_fmt(v)}" for k, v in zip(others, level, strict=True)) or None
            ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=lab)
        ax.set_xlabel(param_label(xkey))
        if others:
            ax.legend(title=param_label(others[0]) if len(others) == 1 else None, fontsize="small",
                      title_fontsize="small")
    else:
        names = [v.name for v in study.variants]
        rows = [sel[sel["variant"] == n].iloc[0] for n in names]
        err = [0.0 if not math.isfinite(r["ci95_half"]) else r["ci95_half"] for r in rows]
        ax.errorbar(range(len(names)), [r["mean"] for r in rows], yerr=err, marker="o", linestyle="none",
                    capsize=4)
        ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 3 else 0, ha="right"
                      if len(names) > 3 else "center", fontsize="small")
        ax.set_xlabel("variant")
    ax.set_ylabel(info.label)
    ax.set_title(f"{study.name}: {kpi}, mean and 95% CI over {study.replicates} replicates", fontsize="medium")
    ax.grid(True, alpha=0.3)


def format_summary(study: Study, summary) -> str:
    """The summary as text: one block per KPI, one line per variant (mean ± 95% CI half-width)."""
    names = [v.name for v in study.variants]
    width = max(len(n) for n in names)
    lines = [f"study {study.name}: {len(names)} variant(s) x {study.replicates} replicate(s) of "
             f"{study.scenario_ref} (seed {study.seed})"]
    for k in study.kpis:
        info = KPIS[k]
        sel = summary[summary["kpi"] == k]
        lines += ["", f"{k}  [{info.unit}]   mean ± 95% CI half-width (n)"]
        for n in names:
            r = sel[sel["variant"] == n].iloc[0]
            mean = _num(r["mean"])
            half = _num(r["ci95_half"])
            lines.append(f"  {n:<{width}}  {mean:>12} ± {half:<10} ({int(r['n'])})")
    return "\n".join(lines)


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 1e4:
        return f"{v:,.0f}"
    if abs(v) < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4g}"


__all__ = ["KPIS", "Kpi", "Study", "StudyResult", "Variant", "builtin_studies", "ci95", "describe_builtin_studies",
           "format_summary", "load_study", "plot_kpi", "replicate_seeds", "run_kpis", "run_study", "summarize"]
