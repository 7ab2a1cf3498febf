"""``telcosim verify``: check a run folder against its manifest and the run's invariants.

:func:`verify_run` returns a list of human-readable problems (empty when the run is sound). It
never raises on bad input: a missing or garbled manifest, an unreadable Parquet file or a table
with the wrong columns are reported as problems. The checks, in groups:

1. **Manifest and files**: ``manifest.json`` exists and parses; every file it lists exists with the
   recorded size and SHA-256; no Parquet file is present that it does not list; every table is
   there; the scenario hash matches the recorded scenario.
2. **Schema**: every Parquet file has the schema of :mod:`sim.schema` (names, types, nullability,
   field metadata) and the ``telcosim.*`` key-value metadata of the manifest (seed, scenario hash,
   version).
3. **References**: subscriber, counterpart and cell ids in ``cdr``, ``locations``, ``cell_kpis``
   and ``subscribers`` exist in ``subscribers`` and ``cells``; ``record_id`` is unique.
4. **Invariants**: per KPI row, attempts = completed + blocked + dropped + failed and the busy
   channel peak within the cell's channels; timestamps inside the manifest's window; durations
   and volumes not negative; CDR voice legs, their outcomes, SMS legs and data sessions per cell
   equal the ``cell_kpis`` counts; row counts equal the manifest's.

Tables are read in batches, part by part, with only the columns a check needs, so that a large run
is verified in bounded memory (apart from one byte per CDR row for the ``record_id`` check).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema
from .sinks import sha256_file

PARTITIONED = ("cdr", "locations")
BATCH_ROWS = 1 << 20
CAP = 5  # problems of one kind reported in full; the rest are counted
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class _Problems:
    """Collects problems, at most ``CAP`` of each kind, then a count of the rest."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.counts: Counter[str] = Counter()
        self.labels: dict[str, str] = {}

    def add(self, kind: str, line: str, label: str | None = None) -> None:
        self.counts[kind] += 1
        self.labels.setdefault(kind, label or kind)
        if self.counts[kind] <= CAP:
            self.lines.append(line)

    def result(self) -> list[str]:
        more = [f"... and {n - CAP} more problem(s) of this kind: {self.labels[k]}"
                for k, n in self.counts.items() if n > CAP]
        return self.lines + more


class _Run:
    """A run folder, its manifest (once loaded) and what was learnt while reading it."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.manifest: dict[str, Any] = {}
        self.tz: str | None = None
        self.window_ms: tuple[int, int] | None = None
        self.unreadable: dict[str, str] = {}  # relative path -> error, reported once

    def rel(self, path: Path) -> str:
        return path.relative_to(self.dir).as_posix()

    def files(self, table: str) -> list[Path]:
        """The Parquet files of a table present on disk (the parts of a partitioned table in order)."""
        if table in PARTITIONED:
            folder = self.dir / table
            return sorted((p for p in folder.rglob("*.parquet") if p.is_file()), key=lambda p: p.name) if folder.is_dir() else []
        path = self.dir / f"{table}.parquet"
        return [path] if path.is_file() else []

    def fail(self, path: Path, exc: BaseException) -> None:
        self.unreadable.setdefault(self.rel(path), f"{type(exc).__name__}: {exc}")

    def unreadable_in(self, table: str) -> bool:
        return any(rel == f"{table}.parquet" or rel.startswith(f"{table}/") for rel in self.unreadable)

    def read_schema(self, path: Path) -> pa.Schema | None:
        if self.rel(path) in self.unreadable:
            return None
        try:
            return pq.read_schema(path)
        except Exception as exc:
            self.fail(path, exc)
            return None

    def batches(self, table: str, columns: list[str]) -> Iterator[tuple[str, int, dict[str, pa.Array]]]:
        """Yield ``(relative path, first row, {column: array})`` over the table's files, in
        batches; a file without all of ``columns`` (a schema problem) or unreadable is skipped."""
        for path in self.files(table):
            rel = self.rel(path)
            sch = self.read_schema(path)
            if sch is None or any(sch.get_field_index(c) < 0 for c in columns):
                continue
            try:
                pf = pq.ParquetFile(path)
                row = 0
                for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                    cols = {c: batch.column(c) for c in columns}
                    yield rel, row, cols
                    row += batch.num_rows
            except Exception as exc:
                self.fail(path, exc)


def _np(arr: pa.Array) -> np.ndarray:
    """A numeric or timestamp column as numpy (timestamps as int64 ms; nulls not expected)."""
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64())
    return arr.to_numpy(zero_copy_only=False)


def _codes(arr: pa.Array) -> tuple[np.ndarray, list]:
    """A categorical column as (codes, vocabulary); null is code -1."""
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    codes = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, arr.dictionary.to_pylist()


def _mask(arr: pa.Array, value: str) -> np.ndarray:
    codes, vocab = _codes(arr)
    if value not in vocab:
        return np.zeros(len(codes), dtype=bool)
    return codes == vocab.index(value)


def _member(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Whether each value is one of ``sorted_ids`` (sorted, unique)."""
    if len(sorted_ids) == 0:
        return np.zeros(len(values), dtype=bool)
    idx = np.clip(np.searchsorted(sorted_ids, values), 0, len(sorted_ids) - 1)
    return sorted_ids[idx] == values


def _ms(t: int) -> str:
    return (_EPOCH + dt.timedelta(milliseconds=int(t))).isoformat()


# --- 1. manifest and files -----------------------------------------------------------------------

def _load_manifest(run: _Run) -> list[str]:
    """Read ``manifest.json`` into ``run``; problems when it is missing, garbled or incomplete."""
    path = run.dir / "manifest.json"
    if not run.dir.is_dir():
        return [f"{run.dir}: not a folder"]
    if not path.is_file():
        return [f"manifest.json: missing from {run.dir}"]
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [f"manifest.json: cannot be read as JSON ({exc})"]
    if not isinstance(man, dict):
        return [f"manifest.json: expected a JSON object, found {type(man).__name__}"]
    run.manifest = man
    problems = []
    for key, kind in (("files", dict), ("row_counts", dict), ("window", dict), ("seed", int),
                      ("scenario", dict), ("scenario_sha256", str)):
        if not isinstance(man.get(key), kind) or isinstance(man.get(key), bool):
            problems.append(f"manifest.json: '{key}' is missing or not a {kind.__name__}")
    window = man.get("window")
    if isinstance(window, dict):
        tz = window.get("timezone")
        if isinstance(tz, str) and tz:
            run.tz = tz
        else:
            problems.append("manifest.json: window.timezone is missing")
        bounds = []
        for key in ("start", "end"):
            try:
                t = dt.datetime.fromisoformat(window[key])
                if t.tzinfo is None:
                    raise ValueError("no UTC offset")
                bounds.append((t - _EPOCH) // dt.timedelta(milliseconds=1))
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"manifest.json: window.{key} is not an ISO 8601 time with offset ({exc})")
        if len(bounds) == 2:
            if bounds[0] < bounds[1]:
                run.window_ms = (bounds[0], bounds[1])
            else:
                problems.append(f"manifest.json: window end {window['end']} is not after its start {window['start']}")
    if isinstance(man.get("scenario"), dict) and isinstance(man.get("scenario_sha256"), str):
        digest = hashlib.sha256(json.dumps(man["scenario"], sort_keys=True).encode()).hexdigest()
        if digest != man["scenario_sha256"]:
            problems.append("manifest.json: scenario_sha256 does not match the recorded scenario")
    return problems


def check_files(run: _Run) -> list[str]:
    """Listed files exist with their size and checksum; nothing unlisted; every table present."""
    p = _Problems()
    files = run.manifest.get("files")
    files = files if isinstance(files, dict) else {}
    listed = set()
    for rel, info in sorted(files.items()):
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or not rel:
            p.add("bad-path", f"manifest.json: listed file {rel!r} is not a path inside the run folder")
            continue
        listed.add(pure.as_posix())
        path = run.dir / pure
        if not path.is_file():
            p.add("missing", f"{rel}: listed in manifest.json but missing", "files missing")
            continue
        if not isinstance(info, dict):
            p.add("bad-entry", f"manifest.json: entry for {rel} is not an object")
            continue
        size = path.stat().st_size
        if info.get("bytes") != size:
            p.add("size", f"{rel}: {size} bytes, manifest.json records {info.get('bytes')}", "size mismatches")
        try:
            digest = sha256_file(path)
        except OSError as exc:
            p.add("unreadable", f"{rel}: cannot be read ({exc})")
            continue
        if info.get("sha256") != digest:
            p.add("sha256", f"{rel}: SHA-256 {digest[:12]}… does not match manifest.json's "
                            f"{str(info.get('sha256'))[:12]}… (the file was changed)", "checksum mismatches")
    for path in sorted(run.dir.rglob("*.parquet")):
        rel = run.rel(path)
        if rel not in listed:
            p.add("unlisted", f"{rel}: Parquet file not listed in manifest.json", "unlisted files")
    for table in schema.TABLES:
        if not run.files(table):
            name = f"{table}/" if table in PARTITIONED else f"{table}.parquet"
            p.add("table", f"{name}: table missing", "tables missing")
    return p.result()


# --- 2. schema ------------------------------------------------------------------------------------

def _expected_schema(table: str, tz: str) -> pa.Schema:
    return {
        "cdr": lambda: schema.cdr_schema(tz),
        "locations": lambda: schema.locations_schema(tz),
        "cell_kpis": lambda: schema.cell_kpis_schema(tz),
        "subscribers": schema.subscribers_schema,
        "cells": schema.cells_schema,
    }[table]()


def _schema_diffs(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    diffs = []
    names, want = actual.names, expected.names
    if names != want:
        missing = [n for n in want if n not in names]
        extra = [n for n in names if n not in want]
        if missing:
            diffs.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            diffs.append(f"unexpected column(s) {', '.join(extra)}")
        if not missing and not extra:
            diffs.append(f"columns in the wrong order: {', '.join(names)}")
    for f in expected:
        i = actual.get_field_index(f.name)
        if i < 0:
            continue
        a = actual.field(i)
        if not a.type.equals(f.type):
            diffs.append(f"column {f.name} is {a.type}, expected {f.type}")
        elif a.nullable != f.nullable:
            diffs.append(f"column {f.name} is {'nullable' if a.nullable else 'not nullable'}, "
                         f"expected {'nullable' if f.nullable else 'not nullable'}")
        elif (a.metadata or {}) != (f.metadata or {}):
            diffs.append(f"column {f.name} has field metadata {a.metadata}, expected {f.metadata}")
    return diffs


def check_schemas(run: _Run) -> list[str]:
    """Every file's Arrow schema and ``telcosim.*`` key-value metadata."""
    p = _Problems()
    man = run.manifest
    want_meta = {b"telcosim.seed": str(man.get("seed")).encode(),
                 b"telcosim.scenario_sha256": str(man.get("scenario_sha256")).encode(),
                 b"telcosim.version": str(man.get("telcosim_version")).encode()}
    for table in schema.TABLES:
        expected = _expected_schema(table, run.tz or "UTC")
        for path in run.files(table):
            rel = run.rel(path)
            actual = run.read_schema(path)
            if actual is None:
                continue  # reported as unreadable
            if run.tz is not None:
                for d in _schema_diffs(actual, expected):
                    p.add(f"schema-{table}", f"{rel}: {d}", f"{table} schema differences")
            meta = actual.metadata or {}
            for key, value in want_meta.items():
                if meta.get(key) != value:
                    found = meta.get(key)
                    p.add(f"meta-{key!r}",
                          f"{rel}: key-value metadata {key.decode()} is "
                          f"{found.decode(errors='replace') if found is not None else 'missing'}, "
                          f"manifest.json has {value.decode()}", f"{key.decode()} mismatches")
    return p.result()


# --- 3. references --------------------------------------------------------------------------------

def _ids(run: _Run, table: str, column: str, p: _Problems) -> np.ndarray | None:
    """The sorted unique ids of a dimension table (None when unreadable); duplicates reported."""
    parts = [_np(cols[column]) for _, _, cols in run.batches(table, [column])]
    if not parts:
        return None
    ids = np.concatenate(parts)
    uniq, counts = np.unique(ids, return_counts=True)
    dup = uniq[counts > 1]
    if len(dup):
        p.add(f"dup-{table}", f"{table}.parquet: {len(dup)} duplicate {column}(s), e.g. "
                              f"{', '.join(map(str, dup[:CAP]))}")
    return uniq


class _Dangling:
    """Rows of one column whose ids are not in the referenced table: count and first examples."""

    def __init__(self, table: str, column: str, target: str) -> None:
        self.table, self.column, self.target = table, column, target
        self.rows = 0
        self.examples: list[str] = []

    def feed(self, rel: str, row0: int, values: np.ndarray, ok: np.ndarray) -> None:
        bad = np.flatnonzero(~ok)
        self.rows += len(bad)
        for i in bad[: CAP - len(self.examples)]:
            self.examples.append(f"{values[i]} ({rel} row {row0 + i})")

    def problem(self) -> list[str]:
        if not self.rows:
            return []
        return [f"{self.table}: {self.rows} row(s) with a {self.column} not in {self.target}.parquet, "
                f"e.g. {'; '.join(self.examples)}"]


def check_references(run: _Run) -> list[str]:
    """Ids in the tables exist in ``subscribers`` and ``cells``; ``record_id`` is unique."""
    p = _Problems()
    subs = _ids(run, "subscribers", "subscriber_id", p)
    cells = _ids(run, "cells", "cell_id", p)
    sub_cols = ("subscriber_id", "counterpart_id")
    cell_cols = ("cell_id", "end_cell_id", "home_cell_id", "work_cell_id")
    plan = {"cdr": ["subscriber_id", "counterpart_id", "cell_id", "end_cell_id"],
            "locations": ["subscriber_id", "cell_id"],
            "cell_kpis": ["cell_id"],
            "subscribers": ["home_cell_id", "work_cell_id"]}
    dangling = []
    for table, columns in plan.items():
        checks = []
        for c in columns:
            ids = subs if c in sub_cols else cells if c in cell_cols else None
            if ids is not None:
                checks.append((c, ids, _Dangling(table, c, "subscribers" if c in sub_cols else "cells")))
        if not checks:
            continue
        for rel, row0, cols in run.batches(table, [c for c, _, _ in checks]):
            for c, ids, d in checks:
                arr = cols[c]
                values = _np(arr.fill_null(ids[0] if len(ids) else 0) if arr.null_count else arr)
                d.feed(rel, row0, values, _member(values, ids))
        dangling += [d for _, _, d in checks]
    lines = p.result()
    for d in dangling:
        lines += d.problem()
    return lines + _check_record_ids(run)


def _check_record_ids(run: _Run) -> list[str]:
    """``record_id`` unique over the whole CDR (one byte per row, ids expected in 0..rows-1)."""
    n = 0
    for path in run.files("cdr"):
        try:
            n += pq.read_metadata(path).num_rows
        except Exception as exc:
            run.fail(path, exc)
    seen = np.zeros(n, dtype=bool)
    dup_rows, out_rows, examples = 0, 0, []
    for rel, _, cols in run.batches("cdr", ["record_id"]):
        rec = _np(cols["record_id"])
        out = (rec < 0) | (rec >= n)
        out_rows += int(out.sum())
        ids = rec[~out]
        uniq, counts = np.unique(ids, return_counts=True)
        new = ~seen[uniq]
        dup_rows += len(ids) - int(new.sum())
        for i in np.flatnonzero((counts > 1) | ~new)[: CAP - len(examples)]:
            examples.append(f"{uniq[i]} ({rel})")
        seen[uniq] = True
    lines = []
    if out_rows and run.unreadable_in("cdr"):
        out_rows = 0  # the row total is short by the unreadable parts: ranges are not meaningful
    if dup_rows:
        lines.append(f"cdr: {dup_rows} row(s) repeat a record_id of another row, e.g. {'; '.join(examples)}")
    if out_rows:
        lines.append(f"cdr: {out_rows} record_id(s) outside 0..{n - 1} (ids run over the rows)")
    return lines


# --- 4. invariants ---------------------------------------------------------------------------------

_OUTCOME_COLUMNS = {"completed": "voice_completed", "blocked": "voice_blocked",
                    "dropped": "voice_dropped", "failed": "voice_failed"}


def _add_counts(acc: Counter, keys: np.ndarray, weights: np.ndarray | None = None) -> None:
    uniq, inv = np.unique(keys, return_inverse=True)
    sums = np.bincount(inv, weights=weights, minlength=len(uniq))
    for k, s in zip(uniq.tolist(), sums.tolist(), strict=True):
        acc[k] += int(s)


def _check_window(run: _Run, p: _Problems, table: str, column: str) -> None:
    if run.window_ms is None:
        return
    lo, hi = run.window_ms
    for rel, row0, cols in run.batches(table, [column]):
        t = _np(cols[column])
        for i in np.flatnonzero((t < lo) | (t >= hi)):
            p.add(f"window-{table}", f"{rel} row {row0 + i}: {column} {_ms(t[i])} outside the window "
                                     f"[{_ms(lo)}, {_ms(hi)})", f"{table}.{column} outside the window")


def check_invariants(run: _Run) -> list[str]:
    """Per-row KPI identities, capacities, times, signs, conservation between tables, row counts."""
    p = _Problems()
    # Voice channels per cell.
    chan_ids, chan = np.zeros(0, np.int64), np.zeros(0, np.int64)
    parts = list(run.batches("cells", ["cell_id", "voice_channels"]))
    if parts:
        ids = np.concatenate([_np(c["cell_id"]) for _, _, c in parts])
        ch = np.concatenate([_np(c["voice_channels"]) for _, _, c in parts])
        chan_ids, first = np.unique(ids, return_index=True)
        chan = ch[first]

    # cell_kpis: per-row identities, and totals per cell for the comparison with the CDR.
    kpi_cols = ["cell_id", "voice_attempts", *_OUTCOME_COLUMNS.values(),
                "busy_channels_peak", "sms", "data_sessions"]
    kpi: dict[str, Counter] = {c: Counter() for c in kpi_cols if c not in ("cell_id", "busy_channels_peak")}
    kpi_read = False
    for rel, row0, cols in run.batches("cell_kpis", kpi_cols):
        kpi_read = True
        v = {c: _np(cols[c]).astype(np.int64) for c in kpi_cols}
        cell = v["cell_id"]
        parts_sum = sum(v[c] for c in _OUTCOME_COLUMNS.values())
        for i in np.flatnonzero(v["voice_attempts"] != parts_sum):
            p.add("kpi-sum", f"{rel} row {row0 + i} (cell {cell[i]}): voice_attempts {v['voice_attempts'][i]} != "
                             f"completed + blocked + dropped + failed = {parts_sum[i]}",
                  "KPI rows whose attempts are not the sum of outcomes")
        cap = np.full(len(cell), np.iinfo(np.int64).max)
        if len(chan_ids):
            idx = np.clip(np.searchsorted(chan_ids, cell), 0, len(chan_ids) - 1)
            hit = chan_ids[idx] == cell
            cap[hit] = chan[idx[hit]]
        for i in np.flatnonzero(v["busy_channels_peak"] > cap):
            p.add("kpi-peak", f"{rel} row {row0 + i} (cell {cell[i]}): busy_channels_peak "
                              f"{v['busy_channels_peak'][i]} exceeds the cell's {cap[i]} voice channels",
                  "KPI rows above the cell's channels")
        for c, acc in kpi.items():
            _add_counts(acc, cell, v[c])
    _check_window(run, p, "cell_kpis", "interval_start")

    # CDR: times, signs, and counts per start cell.
    cdr: dict[str, Counter] = {c: Counter() for c in kpi}
    cdr_read = False
    for rel, row0, cols in run.batches("cdr", ["service", "cell_id", "outcome", "duration_s",
                                               "bytes_up", "bytes_down"]):
        cdr_read = True
        for c in ("duration_s", "bytes_up", "bytes_down"):
            x = _np(cols[c])
            for i in np.flatnonzero(~(x >= 0)):
                p.add(f"neg-{c}", f"{rel} row {row0 + i}: {c} is {x[i]} (must be >= 0)", f"cdr.{c} negative")
        cell = _np(cols["cell_id"]).astype(np.int64)
        voice = _mask(cols["service"], "voice")
        _add_counts(cdr["voice_attempts"], cell[voice])
        codes, vocab = _codes(cols["outcome"])
        for name, col in _OUTCOME_COLUMNS.items():
            if name in vocab:
                _add_counts(cdr[col], cell[voice & (codes == vocab.index(name))])
        # SMS sent and data sessions started: not those that failed (no coverage) or were refused.
        settled = np.ones(len(cell), bool)
        for name in ("failed", "blocked"):
            if name in vocab:
                settled &= codes != vocab.index(name)
        _add_counts(cdr["sms"], cell[_mask(cols["service"], "sms") & settled])
        _add_counts(cdr["data_sessions"], cell[_mask(cols["service"], "data") & settled])
    _check_window(run, p, "cdr", "start_time")
    _check_window(run, p, "locations", "time")

    if kpi_read and cdr_read and not run.unreadable_in("cdr") and not run.unreadable_in("cell_kpis"):
        what = {"voice_attempts": "voice legs", "sms": "SMS legs", "data_sessions": "data sessions"}
        what.update({c: f"{o} voice legs" for o, c in _OUTCOME_COLUMNS.items()})
        for c in kpi:
            for cell in sorted(set(kpi[c]) | set(cdr[c])):
                if kpi[c][cell] != cdr[c][cell]:
                    p.add(f"conserve-{c}", f"cell {cell}: cdr/ has {cdr[c][cell]} {what[c]} started there, "
                                           f"cell_kpis.parquet counts {kpi[c][cell]} ({c})",
                          f"cells whose {c} disagree between cdr/ and cell_kpis.parquet")
    return p.result() + _check_row_counts(run)


def _check_row_counts(run: _Run) -> list[str]:
    counts = run.manifest.get("row_counts")
    counts = counts if isinstance(counts, dict) else {}
    lines = []
    for table in schema.TABLES:
        n, ok = 0, True
        for path in run.files(table):
            try:
                n += pq.read_metadata(path).num_rows
            except Exception as exc:
                run.fail(path, exc)
                ok = False
        if not ok:
            continue
        if table not in counts:
            lines.append(f"manifest.json: row_counts has no entry for {table}")
        elif counts[table] != n:
            lines.append(f"{table}: {n} rows, manifest.json row_counts records {counts[table]}")
    net = run.manifest.get("network")
    if isinstance(net, dict) and "cells" in net and isinstance(counts.get("cells"), int) \
            and net["cells"] != counts["cells"]:
        lines.append(f"manifest.json: network.cells {net['cells']} != row_counts.cells {counts['cells']}")
    return lines


# --- entry point -----------------------------------------------------------------------------------

def verify_run(run_dir: Path) -> list[str]:
    """Check a run folder; return one line per problem (empty when the run is sound)."""
    run = _Run(Path(run_dir))
    problems = _load_manifest(run)
    if not run.manifest:
        return problems
    for check in (check_files, check_schemas, check_references, check_invariants):
        try:
            problems += check(run)
        except Exception as exc:  # a check tripped over data too broken for it: still no traceback
            problems.append(f"{check.__name__}: could not complete ({type(exc).__name__}: {exc})")
    problems += [f"{rel}: cannot be read as Parquet ({err})" for rel, err in sorted(run.unreadable.items())]
    return problems


__all__ = ["verify_run"]
