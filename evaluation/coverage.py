"""Coverage of a run's strata, targets for it (``coverage.toml``) and the flags of what falls short.

A run's CDR records are classified along five *dimensions* (docs/rebalance.md):

============== ===================================================================================
dimension      level of a CDR record
============== ===================================================================================
density        density class of the serving cell (``cdr.cell_id`` -> ``cells.density``)
hour           local hour of day of ``cdr.start_time`` (0..23, in the scenario's time zone)
service        ``cdr.service``: voice, sms, data
home_density   density class of the subscriber's home cell (``subscribers.home_cell_id``)
incident       kind of the incident the record belongs to (``cdr.incident_id`` ->
               ``incidents.parquet`` ``kind``); ``none`` for records outside incidents, and for
               every record of a run without incidents
============== ===================================================================================

The unit of coverage is the CDR record: a level's *share* is its records over all records. A
``coverage.toml`` sets, per dimension and level, a ``min_share`` (0 < x < 1) and/or a ``min_count``
(an integer >= 1)::

    [density]
    rural = { min_share = 0.15 }

    [hour]
    "0-5" = { min_share = 0.08 }     # hours 0..5 together; "22-2" wraps past midnight; "3" one hour

    [incident]
    outage = { min_count = 500 }

A level below its target is *flagged* (``"under"``). :func:`coverage_metrics` gives the JSON-able
summary that the evaluate report (or anybody) can show; :func:`read_strata` and :func:`evaluate`
are the parts the rebalancing loop (:mod:`evaluation.rebalance`) uses, also for several sources
combined and weighted.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from telcosim.sim.errors import ConfigError, InputDataError

DENSITY = ("urban", "suburban", "rural")
SERVICES = ("voice", "sms", "data")
HOURS = tuple(str(h) for h in range(24))
NO_INCIDENT = "none"
DIMENSIONS = ("density", "hour", "service", "home_density", "incident")
DIMENSION_DOC = {
    "density": "density class of the serving cell",
    "hour": "local hour of day of the record's start",
    "service": "service of the record",
    "home_density": "density class of the subscriber's home cell",
    "incident": "kind of incident the record belongs to ('none' outside incidents)",
}
LEVEL_KEYS = ("min_share", "min_count")
UNIT = "cdr records"


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LevelTarget:
    """One target: ``dimension.key`` (as written) covering the levels ``levels`` together."""

    dimension: str
    key: str
    levels: tuple[str, ...]  # hour: the hours of the range; others: the one level
    min_share: float | None = None
    min_count: int | None = None

    @property
    def name(self) -> str:
        return f"{self.dimension}.{self.key}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.min_share is not None:
            out["min_share"] = self.min_share
        if self.min_count is not None:
            out["min_count"] = self.min_count
        return out


@dataclass(frozen=True)
class Targets:
    file: str
    items: tuple[LevelTarget, ...] = field(default_factory=tuple)


def parse_hours(key: str) -> tuple[int, ...] | None:
    """``"3"`` -> (3,); ``"0-5"`` -> 0..5; ``"22-2"`` -> 22, 23, 0, 1, 2. None when malformed."""
    text = key.strip()
    parts = text.split("-")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        return None
    a = int(parts[0])
    b = int(parts[-1])
    if not (0 <= a <= 23 and 0 <= b <= 23):
        return None
    if a <= b:
        return tuple(range(a, b + 1))
    return tuple(range(a, 24)) + tuple(range(0, b + 1))


def _hint(word: str, allowed: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(allowed), n=1)
    mean = f"did you mean {close[0]!r}? " if close else ""
    return f"({mean}allowed: {', '.join(allowed)})"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def targets_from_dict(raw: dict[str, Any], file: str = "<coverage>") -> Targets:
    """Validate a coverage document; raise :class:`ConfigError` with every problem (file, dotted
    key, value, what is allowed)."""
    problems: list[str] = []
    items: list[LevelTarget] = []
    example = "e.g. [density] rural = { min_share = 0.15 }"
    for dim, table in raw.items():
        if dim not in DIMENSIONS:
            problems.append(f"{file}: {dim}: unknown dimension {_hint(dim, DIMENSIONS)}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{file}: {dim}: {table!r} is not a table of levels ({example})")
            continue
        if not table:
            problems.append(f"{file}: {dim}: no levels given ({example})")
            continue
        dim_items: list[LevelTarget] = []
        for key, spec in table.items():
            where = f"{file}: {dim}.{key}"
            levels: tuple[str, ...]
            if dim == "hour":
                hours = parse_hours(key)
                if hours is None:
                    problems.append(f"{where}: unknown level (allowed: an hour 0..23 or an inclusive range "
                                    "'A-B' of hours 0..23, e.g. '0-5', or '22-2' across midnight)")
                    continue
                levels = tuple(str(h) for h in hours)
            elif dim in ("density", "home_density"):
                if key not in DENSITY:
                    problems.append(f"{where}: unknown level {_hint(key, DENSITY)}")
                    continue
                levels = (key,)
            elif dim == "service":
                if key not in SERVICES:
                    problems.append(f"{where}: unknown level {_hint(key, SERVICES)}")
                    continue
                levels = (key,)
            else:  # incident: an open vocabulary of kinds
                if not key.strip() or key != key.strip():
                    problems.append(f"{where}: {key!r} is not an incident kind (a non-empty name without "
                                    "leading or trailing spaces, e.g. outage; 'none' = outside incidents)")
                    continue
                levels = (key,)
            if not isinstance(spec, dict):
                problems.append(f"{where}: {spec!r} is not a table (expected {{ min_share = X }} and/or "
                                "{ min_count = N })")
                continue
            ok = True
            for k in spec:
                if k not in LEVEL_KEYS:
                    problems.append(f"{where}.{k}: unknown key {_hint(k, LEVEL_KEYS)}")
                    ok = False
            if not any(k in spec for k in LEVEL_KEYS):
                problems.append(f"{where}: no target (give min_share and/or min_count)")
                continue
            share = spec.get("min_share")
            count = spec.get("min_count")
            if share is not None:
                if not _is_number(share) or not math.isfinite(share):
                    problems.append(f"{where}.min_share: {share!r} is not a number (a share 0 < x < 1)")
                    ok = False
                elif not 0 < share < 1:
                    problems.append(f"{where}.min_share: {share!r} is out of range (must be > 0 and < 1)")
                    ok = False
            if count is not None:
                if not isinstance(count, int) or isinstance(count, bool):
                    problems.append(f"{where}.min_count: {count!r} is not an integer (a count >= 1)")
                    ok = False
                elif count < 1:
                    problems.append(f"{where}.min_count: {count!r} is out of range (must be >= 1)")
                    ok = False
            if ok:
                dim_items.append(LevelTarget(dim, key, levels, None if share is None else float(share),
                                             None if count is None else int(count)))
        # Shares of levels that do not overlap cannot add up to more than 1.
        shares = [t for t in dim_items if t.min_share is not None]
        covered = [lv for t in shares for lv in t.levels]
        total = sum(t.min_share for t in shares)  # type: ignore[misc]
        if len(covered) == len(set(covered)) and total > 1 + 1e-12:
            problems.append(f"{file}: {dim}: the min_share targets of its levels add up to {total:g}, more "
                            "than 1: no data can meet them all (lower them)")
        items.extend(dim_items)
    if not raw:
        problems.append(f"{file}: no targets (expected tables of dimensions {', '.join(DIMENSIONS)}, {example}; "
                        "see docs/rebalance.md)")
    if problems:
        raise ConfigError(problems)
    return Targets(file, tuple(items))


def load_targets(path: str | Path) -> Targets:
    """Read and validate a ``coverage.toml``; every problem in one :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such coverage target file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected a coverage target file (TOML)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the coverage target file ({type(exc).__name__}: {exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p.name}: not valid TOML: {exc}") from None
    return targets_from_dict(raw, p.name)


# ---------------------------------------------------------------------------------------------
# Strata of a run
# ---------------------------------------------------------------------------------------------

@dataclass
class Strata:
    """Every CDR record of a source with its level codes per dimension."""

    record_id: np.ndarray      # int64
    subscriber_id: np.ndarray  # int32
    codes: dict[str, np.ndarray]  # dimension -> int16 codes into vocab[dimension]
    vocab: dict[str, tuple[str, ...]]
    subscribers: int
    incidents_available: bool
    incidents_note: str

    def __len__(self) -> int:
        return int(self.record_id.shape[0])

    def select(self, mask: np.ndarray) -> Strata:
        return Strata(self.record_id[mask], self.subscriber_id[mask], {d: c[mask] for d, c in self.codes.items()},
                      dict(self.vocab), self.subscribers, self.incidents_available, self.incidents_note)


def check_run_dir(run_dir: Path) -> list[str]:
    """Problems that make ``run_dir`` unreadable as a run folder (empty when it looks sound)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return [f"{run_dir}: no such run folder"]
    missing = [n for n in ("manifest.json", "cells.parquet", "subscribers.parquet", "cdr") if not (run_dir / n).exists()]
    if missing:
        return [f"{run_dir}: not a run folder (missing {', '.join(missing)}; expected a folder written by "
                "'telcosim run')"]
    return []


def _dict_codes(col, vocab: tuple[str, ...], what: str) -> np.ndarray:
    """Codes into ``vocab`` of a (dictionary or string) pyarrow column."""
    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    names = col.dictionary.to_pylist()
    bad = [n for n in names if n not in vocab]
    if bad:
        raise InputDataError(f"{what}: unexpected value(s) {', '.join(map(repr, bad))} (allowed: {', '.join(vocab)})")
    lut = np.asarray([vocab.index(n) for n in names] or [0], np.int16)
    idx = col.indices.to_numpy(zero_copy_only=False)
    return lut[idx.astype(np.int64)]


def read_strata(run_dir: str | Path) -> Strata:
    """The strata of every CDR record of a run folder. Raises :class:`InputDataError` (one line
    per problem) when the folder is not a readable run."""
    run_dir = Path(run_dir)
    problems = check_run_dir(run_dir)
    if problems:
        raise InputDataError(problems)
    try:
        cells = pq.read_table(run_dir / "cells.parquet", columns=["cell_id", "density"])
        subs = pq.read_table(run_dir / "subscribers.parquet", columns=["subscriber_id", "home_cell_id"])
        cell_density = np.zeros(len(cells), np.int16)
        cell_density[cells["cell_id"].to_numpy()] = _dict_codes(cells["density"], DENSITY,
                                                                f"{run_dir / 'cells.parquet'}: column 'density'")
        home = subs["home_cell_id"].to_numpy()
        home_density = np.zeros(len(subs), np.int16)
        home_density[subs["subscriber_id"].to_numpy()] = cell_density[home]
        cdr = ds.dataset(run_dir / "cdr", format="parquet")
        has_incident = "incident_id" in cdr.schema.names
        cols = ["record_id", "subscriber_id", "cell_id", "service", "start_time"] + (["incident_id"] if has_incident else [])
        # Part by part (one hour each), so only one part's Arrow columns are in memory at once.
        pieces: dict[str, list[np.ndarray]] = {k: [] for k in ("rid", "sid", "cell", "service", "hour", "incident")}
        for frag in cdr.get_fragments():
            table = frag.to_table(columns=cols)
            if not len(table):
                continue
            pieces["rid"].append(table["record_id"].to_numpy().astype(np.int64))
            pieces["sid"].append(table["subscriber_id"].to_numpy().astype(np.int32))
            pieces["cell"].append(table["cell_id"].to_numpy())
            pieces["service"].append(_dict_codes(table["service"], SERVICES, f"{frag.path}: column 'service'"))
            pieces["hour"].append(pd.Series(table["start_time"].to_pandas()).dt.hour.to_numpy().astype(np.int16))
            if has_incident:
                pieces["incident"].append(table["incident_id"].combine_chunks().fill_null(-1)
                                          .to_numpy(zero_copy_only=False).astype(np.int64))
            del table
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise InputDataError(f"{run_dir}: cannot read the run ({type(exc).__name__}: {exc})") from None

    def cat(key: str, dtype) -> np.ndarray:
        return np.concatenate(pieces[key]) if pieces[key] else np.zeros(0, dtype)

    rid, sid, cell = cat("rid", np.int64), cat("sid", np.int32), cat("cell", np.int32)
    n = len(rid)
    if n and (cell.max() >= len(cell_density) or sid.max() >= len(home_density) or min(cell.min(), sid.min()) < 0):
        raise InputDataError(f"{run_dir}: CDR records name cells or subscribers that cells.parquet or "
                             "subscribers.parquet lack (check it with 'telcosim verify')")
    incident_vocab, incident, available, note = _incident_codes(
        run_dir, n, cat("incident", np.int64) if has_incident else None)
    codes = {"density": cell_density[cell], "hour": cat("hour", np.int16), "service": cat("service", np.int16),
             "home_density": home_density[sid], "incident": incident}
    vocab = {"density": DENSITY, "hour": HOURS, "service": SERVICES, "home_density": DENSITY,
             "incident": incident_vocab}
    return Strata(rid, sid, codes, vocab, len(subs), available, note)


def _incident_codes(run_dir: Path, n: int, ids: np.ndarray | None):
    """Incident kind codes (0 = none) of the CDR rows (``ids``: their incident_id, -1 for null;
    None without the column), the vocabulary, and whether incident data was there at all (with a
    note on what was missing)."""
    path = run_dir / "incidents.parquet"
    if not path.is_file() and ids is None:
        return ((NO_INCIDENT,), np.zeros(n, np.int16), False,
                "the run has no incidents.parquet and its CDRs no incident_id column: every record counts as 'none'")
    kinds_of: dict[int, str] = {}
    if path.is_file():
        try:
            inc = pq.read_table(path, columns=["incident_id", "kind"])
        except (OSError, ValueError, KeyError) as exc:
            raise InputDataError(f"{path}: cannot read incident_id and kind ({type(exc).__name__}: {exc})") from None
        kinds_of = {int(i): str(k) for i, k in zip(inc["incident_id"].to_pylist(), inc["kind"].to_pylist(),
                                                   strict=True) if i is not None}
    vocab = [NO_INCIDENT, *sorted(set(kinds_of.values()) - {NO_INCIDENT})]
    if ids is None:
        note = "the run has incidents.parquet but its CDRs no incident_id column: every record counts as 'none'"
        return tuple(vocab), np.zeros(n, np.int16), False, note
    out = np.zeros(n, np.int16)
    present = np.unique(ids[ids >= 0]).tolist()
    if set(present) - set(kinds_of):
        vocab.append("unknown")
    index = {k: i for i, k in enumerate(vocab)}
    for iid in present:
        out[ids == iid] = index[kinds_of.get(iid, "unknown")]
    note = ("the run has no incidents.parquet: records with an incident_id count as 'unknown'"
            if present and not path.is_file() else "")
    return tuple(vocab), out, True, note


def combine(parts: list[Strata]) -> Strata:
    """Several sources' strata as one (incident vocabularies merged)."""
    vocab_inc = [NO_INCIDENT]
    for p in parts:
        vocab_inc += [k for k in p.vocab["incident"] if k not in vocab_inc]
    codes = {}
    for d in DIMENSIONS:
        if d == "incident":
            codes[d] = np.concatenate([np.asarray([vocab_inc.index(k) for k in p.vocab[d]], np.int16)[p.codes[d]]
                                       if len(p) else np.zeros(0, np.int16) for p in parts])
        else:
            codes[d] = np.concatenate([p.codes[d] for p in parts])
    vocab = dict(parts[0].vocab)
    vocab["incident"] = tuple(vocab_inc)
    return Strata(np.concatenate([p.record_id for p in parts]), np.concatenate([p.subscriber_id for p in parts]),
                  codes, vocab, sum(p.subscribers for p in parts), any(p.incidents_available for p in parts),
                  "; ".join(dict.fromkeys(p.incidents_note for p in parts if p.incidents_note)))


# ---------------------------------------------------------------------------------------------
# Coverage
# ---------------------------------------------------------------------------------------------

def level_counts(strata: Strata, weights: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Records (or the sum of their weights) per level of every dimension."""
    out = {}
    for d in DIMENSIONS:
        v = strata.vocab[d]
        c = np.bincount(strata.codes[d].astype(np.int64), weights=weights, minlength=len(v))
        out[d] = {name: (float(c[i]) if weights is not None else int(c[i])) for i, name in enumerate(v)}
    return out


def needed_rows(count: float, total: float, t: LevelTarget) -> int:
    """Records of the level to add (all of them in the level) so that ``t`` is met."""
    need = 0.0
    if t.min_share is not None:
        need = max(need, (t.min_share * total - count) / (1.0 - t.min_share))
    if t.min_count is not None:
        need = max(need, t.min_count - count)
    return max(0, math.ceil(need - 1e-9))


def evaluate(strata: Strata, targets: Targets | None, weights: np.ndarray | None = None,
             source: str = "") -> dict[str, Any]:
    """The coverage document of ``strata``: shares and counts of every level, and each target with
    its flag (``"under"`` or ``"ok"``). With ``weights`` the counts are sums of weights."""
    counts = level_counts(strata, weights)
    total = float(weights.sum()) if weights is not None else len(strata)
    dims: dict[str, Any] = {}
    for d in DIMENSIONS:
        lv = {k: {"count": c, "share": (c / total if total else 0.0)} for k, c in counts[d].items()}
        dims[d] = {"about": DIMENSION_DOC[d], "levels": lv}
    dims["incident"]["available"] = strata.incidents_available
    if strata.incidents_note:
        dims["incident"]["note"] = strata.incidents_note
    items = []
    for t in (targets.items if targets is not None else ()):
        c = sum(counts[t.dimension].get(lv, 0) for lv in t.levels)
        share = c / total if total else 0.0
        under = ((t.min_share is not None and share < t.min_share) or
                 (t.min_count is not None and c < t.min_count))
        item = {"name": t.name, "dimension": t.dimension, "level": t.key, "levels": list(t.levels),
                "count": c, "share": share, "target": t.as_dict(), "flag": "under" if under else "ok"}
        if under:
            item["missing_records"] = needed_rows(c, total, t)
        items.append(item)
    return {
        "source": source,
        "unit": UNIT,
        "weighted": weights is not None,
        "total": total if weights is not None else int(total),
        "subscribers": strata.subscribers,
        "dimensions": dims,
        "strata": items,
        "flagged": [i["name"] for i in items if i["flag"] == "under"],
        "targets_file": targets.file if targets is not None else None,
    }


def coverage_metrics(run_dir: str | Path, target: str | Path | Targets | dict | None) -> dict[str, Any]:
    """Coverage of a run folder against targets (a ``coverage.toml`` path, a parsed
    :class:`Targets`, a dict in the same layout, or None for the shares alone). JSON-able: per
    dimension every level's ``count`` and ``share``; per target (``strata``) the observed count
    and share, the ``target``, its ``flag`` (``"under"``/``"ok"``) and, when under, the
    ``missing_records``; ``flagged`` lists the targets not met. Raises
    :class:`~sim.errors.TelcosimError` for a bad run folder or target file."""
    if isinstance(target, Targets) or target is None:
        targets = target
    elif isinstance(target, dict):
        targets = targets_from_dict(target)
    else:
        targets = load_targets(target)
    doc = evaluate(read_strata(run_dir), targets, source=str(run_dir))
    json.dumps(doc)  # JSON-able by construction; fail here rather than in a caller's writer
    return doc


__all__ = ["DIMENSIONS", "LevelTarget", "Strata", "Targets", "combine", "coverage_metrics", "evaluate",
           "level_counts", "load_targets", "needed_rows", "parse_hours", "read_strata", "targets_from_dict"]
