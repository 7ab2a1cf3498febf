"""Readers of real telecom data for calibration targets, one per kind of input.

Every reader validates its input completely before returning: each problem (unreadable file,
missing column, unparsable time, negative count, duplicated row or key, mixed time zones, bad
value) becomes one message naming the file, the column and line (or key), the bad value and what
is allowed; all messages of a call are raised together as one :class:`realdata.errors.DataError`.
CSV line numbers count the header as line 1.

Each reader returns a small frozen dataclass that records ``individual_level``: True when rows
belong to identifiable people (traces, edge lists, CDRs; targets from them must go through
:mod:`calibration.privacy`), False when the input is already an aggregate (counts per area, cell
or hour; no individual-level guarantee can be given or is needed from us).

Kinds (the ``KIND`` of ``telcosim targets --data KIND=PATH``):

======== ================================== =========================== ===========
kind      reader                             like                        level
======== ================================== =========================== ===========
activity  :func:`read_activity`              Milan grid activity         aggregate
cells     :func:`read_cell_series`           LTE hourly cell volumes     aggregate
drive     :func:`read_drive_traces`          Irish 5G drive traces       individual
locations :func:`read_location_traces`       StudentLife GPS             individual
shares    :func:`read_shares`                Nodobo hourly/daily shares  aggregate
edges     :func:`read_edges`                 Copenhagen calls and SMS    individual
cdr       :func:`read_cdr`                   a telcosim run's CDRs       individual
======== ================================== =========================== ===========
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from telcosim.sim.schema import DIRECTIONS, OUTCOMES, SERVICES

from .errors import Problems

TZ_SUFFIX = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
ISO_TEXT = "ISO 8601 (YYYY-MM-DD HH:MM[:SS], optionally with one UTC offset for all rows)"
IRISH_TIME = re.compile(r"^\d{4}\.\d{2}\.\d{2}_\d{2}\.\d{2}\.\d{2}$")
IRISH_FORMAT = "%Y.%m.%d_%H.%M.%S"
LTE_FORMAT = "%m/%d/%Y %H:%M"
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# --------------------------------------------------------------------------
# returned objects
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityTable:
    """Activity (event count or load) per area and interval. ``load``: index = interval start
    (naive local time, sorted), one float column per area id (str), NaN = missing."""

    path: str
    load: pd.DataFrame
    interval_s: int
    time_zone: str
    kind: str = "activity"
    individual_level: bool = False


@dataclass(frozen=True)
class CellSeries:
    """Hourly series per cell: ``series[cell]`` = float Series indexed by naive local time (sorted,
    missing hours absent)."""

    path: str
    series: dict[str, pd.Series]
    kind: str = "cells"
    individual_level: bool = False


@dataclass(frozen=True)
class Trace:
    """One serving-cell trace. ``time``: datetime64[s] wall time, non-decreasing; ``cell``: serving
    cell id (str) per row; ``moving``: whether the interval starting at each row counts as moving;
    ``lat``/``lon``/``speed`` (km/h) are float arrays (NaN = missing) or None when not given."""

    name: str
    unit: str
    time: np.ndarray
    cell: np.ndarray
    moving: np.ndarray
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    speed: np.ndarray | None = None


@dataclass(frozen=True)
class DriveTraces:
    """Serving-cell traces. ``unit_kind``: "user" when a user column identifies people, else "trace"
    (each file is taken as one person: the privacy unit is then the trace)."""

    path: str
    traces: list[Trace]
    unit_kind: str
    kind: str = "drive"
    individual_level: bool = True


@dataclass(frozen=True)
class LocationTraces:
    """Location fixes. Row arrays of equal length, sorted by (user, time): ``user`` (index into
    ``users``), ``time`` (datetime64[s] wall time in ``time_zone``), ``lat``, ``lon`` (deg),
    ``accuracy`` (m, NaN when not given)."""

    path: str
    users: list[str]
    user: np.ndarray
    time: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy: np.ndarray
    time_zone: str
    kind: str = "locations"
    individual_level: bool = True


@dataclass(frozen=True)
class ShareTables:
    """Published shares. ``hourly[variant]``: index hour 0..23, one column per series (e.g. Calls,
    Messages), each column summing to 1; ``daily[variant]``: index Mon..Sun, same."""

    path: str
    hourly: dict[str, pd.DataFrame]
    daily: dict[str, pd.DataFrame] = field(default_factory=dict)
    kind: str = "shares"
    individual_level: bool = False


@dataclass(frozen=True)
class EdgeLists:
    """Calls (``source``, ``target``, ``duration_s``) and SMS (``source``, ``target``), one row per
    event, person ids as str. ``sms`` is None when not given."""

    path: str
    calls: pd.DataFrame
    sms: pd.DataFrame | None
    kind: str = "edges"
    individual_level: bool = True


@dataclass(frozen=True)
class CdrTable:
    """CDRs in telcosim's schema (``sim/schema.py``) as numpy columns. ``start_time`` is
    datetime64[ms] wall time in ``time_zone``; ``counterpart_id`` is -1 when null; ``cells``: the
    network's cell ids (public layout, from ``cells.parquet``) or None for a bare CDR file."""

    path: str
    subscriber_id: np.ndarray
    counterpart_id: np.ndarray
    service: np.ndarray
    direction: np.ndarray
    outcome: np.ndarray
    start_time: np.ndarray
    duration_s: np.ndarray
    cell_id: np.ndarray
    time_zone: str
    cells: np.ndarray | None = None
    kind: str = "cdr"
    individual_level: bool = True


# --------------------------------------------------------------------------
# shared validation helpers
# --------------------------------------------------------------------------


def _lines(index) -> np.ndarray:
    """CSV line numbers of data rows (header = line 1)."""
    return np.asarray(index) + 2


def _files(path: Path, patterns: tuple[str, ...], problems: Problems, what: str) -> list[Path]:
    """``path`` itself, or the files under a folder matching ``patterns`` (recursively, sorted)."""
    if not path.exists():
        problems.add(f"{path}: cannot read: no such file or folder; expected {what}")
        return []
    if path.is_file():
        return [path]
    found = sorted({f for pat in patterns for f in path.rglob(pat) if f.is_file()})
    if not found:
        problems.add(f"{path}: no input files ({', '.join(patterns)}) in this folder; expected {what}")
    return found


def _read_csv(path: Path, problems: Problems, what: str, **kw) -> pd.DataFrame | None:
    try:
        df = pd.read_csv(path, **kw)
    except pd.errors.EmptyDataError:
        problems.add(f"{path}: cannot read: the file is empty; expected {what}")
        return None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError, EOFError) as exc:
        reason = (exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else
                  str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        problems.add(f"{path}: cannot read: {reason}; expected {what}")
        return None
    if df.empty:
        problems.add(f"{path}: no data rows; expected {what}")
        return None
    return df


def _columns(df: pd.DataFrame, path: Path, problems: Problems, required: dict[str, tuple[str, ...]],
             optional: dict[str, tuple[str, ...]] | None = None) -> dict[str, str] | None:
    """Map role -> actual column name (case-insensitive aliases). Missing required roles: one problem."""
    lower = {str(c).strip().lower(): c for c in df.columns}
    found: dict[str, str] = {}
    missing = []
    for role, aliases in {**required, **(optional or {})}.items():
        col = next((lower[a] for a in aliases if a in lower), None)
        if col is not None:
            found[role] = col
        elif role in required:
            missing.append(f"{role} ({' / '.join(aliases)})")
    if missing:
        problems.add(f"{path}: missing column(s) {', '.join(missing)}; found: "
                     f"{', '.join(map(str, df.columns))}")
        return None
    return found


def _numeric(s: pd.Series, path: Path, column: str, problems: Problems, *, minimum: float | None = 0.0,
             maximum: float | None = None, allowed: str = "a number >= 0", na_values=("",),
             integer: bool = False) -> np.ndarray:
    """Float values of a column; non-numbers and out-of-range values are problems, blanks are NaN."""
    raw = s
    v = pd.to_numeric(raw, errors="coerce")
    text = raw.astype("string").str.strip()
    blank = raw.isna() | text.isin(list(na_values))
    bad = v.isna() & ~blank
    problems.rows(path, column, _lines(raw.index[bad]), raw[bad], f"not a number; expected {allowed}")
    arr = v.to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(arr)
    inf = ~finite & ~np.isnan(arr)
    problems.rows(path, column, _lines(raw.index[inf]), raw[inf], f"not finite; expected {allowed}")
    if minimum is not None:
        low = finite & (arr < minimum)
        what = "negative values are not allowed" if minimum == 0 else f"below {minimum}"
        problems.rows(path, column, _lines(raw.index[low]), raw[low], f"{what}; expected {allowed}")
    if maximum is not None:
        high = finite & (arr > maximum)
        problems.rows(path, column, _lines(raw.index[high]), raw[high], f"above {maximum}; expected {allowed}")
    if integer:
        frac = finite & (arr != np.round(arr))
        problems.rows(path, column, _lines(raw.index[frac]), raw[frac], f"not a whole number; expected {allowed}")
    return arr


def _times(raw: pd.Series, path: Path, column: str, problems: Problems, *, fmt: str | None = None,
           fmt_text: str = ISO_TEXT, unix: bool = False, tz: str | None = None) -> np.ndarray | None:
    """Parse a time column to naive wall time (datetime64[s]); None when any row is bad.

    * ``unix``: numbers are unix seconds (UTC), shown as wall time in ``tz`` (default UTC);
    * strings: ``fmt`` (strptime) or ISO 8601. Either every time carries the same UTC offset or
      none does ("mixed time zones" otherwise). With an offset, times are converted to ``tz`` when
      given, else kept as wall time at that offset; without, they are taken as wall time as given.
    """
    before = len(problems.lines)
    missing = raw.isna() | (raw.astype("string").str.strip() == "")
    problems.rows(path, column, _lines(raw.index[missing]), raw[missing].fillna(""),
                  f"a time is required on every row; expected {fmt_text}")
    ok = raw[~missing]
    if unix:
        num = pd.to_numeric(ok, errors="coerce")
        if pd.api.types.is_numeric_dtype(raw) or num.notna().mean() > 0.5:
            bad = num.isna() | ~np.isfinite(num.astype(float)) | (num.abs() > 4e10)
            problems.rows(path, column, _lines(ok.index[bad]), ok[bad], "not a unix time in seconds")
            if len(problems.lines) > before:
                return None
            t = pd.to_datetime(num.astype(float).reindex(raw.index), unit="s", utc=True)
            t = t.dt.tz_convert(tz or "UTC").dt.tz_localize(None)
            return t.to_numpy(dtype="datetime64[s]")
    text = ok.astype(str).str.strip()
    offset = text.str.extract(TZ_SUFFIX)[0]
    has = offset.notna()
    if has.any() and not has.all():
        a, b = text[has], text[~has]
        problems.add(f"{path}: column {column!r}: mixed time zones: {len(a)} times carry a UTC offset "
                     f"(line {_lines(a.index[:1])[0]}: {a.iloc[0]!r}) and {len(b)} do not "
                     f"(line {_lines(b.index[:1])[0]}: {b.iloc[0]!r}); give every time in one zone")
        return None
    if has.any():
        norm = offset.str.replace("Z", "+00:00").str.replace(r"^([+-]\d{2})(\d{2})$", r"\1:\2", regex=True)
        kinds = norm.unique()
        if len(kinds) > 1:
            firsts = [f"{k} (line {_lines(norm.index[norm == k][:1])[0]})" for k in kinds[:3]]
            problems.add(f"{path}: column {column!r}: mixed time zones: UTC offsets {', '.join(firsts)}; "
                         "give every time with the same offset (convert to UTC, suffix Z, across a "
                         "daylight-saving change)")
            return None
    parsed = pd.to_datetime(text, format=fmt or "ISO8601", errors="coerce", utc=bool(has.any()))
    bad = parsed.isna()
    problems.rows(path, column, _lines(text.index[bad]), text[bad], f"not a time; expected {fmt_text}")
    if len(problems.lines) > before:
        return None
    if has.any():
        zone = tz or _fixed_offset(norm.iloc[0])
        parsed = parsed.dt.tz_convert(zone).dt.tz_localize(None)
    return parsed.reindex(raw.index).to_numpy(dtype="datetime64[s]")


def _fixed_offset(text: str):
    """A ``+HH:MM`` / ``-HH:MM`` offset as a fixed tzinfo."""
    sign = 1 if text[0] == "+" else -1
    return _dt.timezone(sign * _dt.timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def _duplicates(keys: pd.DataFrame, path: Path, what: str, problems: Problems, allowed: str) -> None:
    """One problem for every set of rows repeating an earlier row's ``keys``."""
    dup = keys.duplicated(keep="first")
    if dup.any():
        first = keys.drop_duplicates(keep="first")
        rows = keys[dup]
        examples = []
        for idx, row in rows.head(3).iterrows():
            match = first[(first == row).all(axis=1)]
            examples.append(f"line {idx + 2} repeats line {match.index[0] + 2} "
                            f"({', '.join(f'{c}={row[c]!r}' for c in keys.columns)})")
        more = f" (and {int(dup.sum()) - 3} more)" if dup.sum() > 3 else ""
        problems.add(f"{path}: duplicated {what}: {'; '.join(examples)}{more}: {allowed}")


def _tz_label(raw: pd.Series) -> str:
    text = raw.dropna().astype(str).str.strip()
    off = text.str.extract(TZ_SUFFIX)[0].dropna()
    return f"UTC{off.iloc[0]}" if len(off) else "local (as given)"


# --------------------------------------------------------------------------
# (a) activity per area per interval
# --------------------------------------------------------------------------

_AREA = ("area", "square", "square_id", "cellid", "cell_id", "cell", "grid_id")
_TIME = ("time", "hour", "datetime", "timestamp", "interval_start")
_VALUE = ("value", "load", "activity", "count", "events")


def read_activity(path: str | Path) -> ActivityTable:
    """Activity (event counts or load) per area and interval, Milan-like. Aggregate input.

    Two layouts of a CSV file (comma separated, header row):

    * wide: the first column is the interval start (``hour``, ISO 8601 local time, e.g.
      ``2013-11-01 00:00:00``), then one column per area whose header is the area id;
    * long: columns ``area,time,value`` (aliases: area = square/cell_id/...; time = hour/datetime;
      value = load/count).

    Values are numbers >= 0; a blank or NaN value means "missing" (not zero). Rules: every time
    parses (one time zone for all rows), no time (wide) or (area, time) (long) appears twice, no
    negative or non-numeric value, at least one area.
    """
    path = Path(path)
    problems = Problems()
    what = "a CSV of activity per area per interval (wide: time + one column per area; long: area,time,value)"
    df = _read_csv(path, problems, what)
    problems.raise_if_any()
    lower = {str(c).strip().lower() for c in df.columns}
    long = any(a in lower for a in _AREA) and any(v in lower for v in _VALUE)
    if long:
        cols = _columns(df, path, problems, {"area": _AREA, "time": _TIME, "value": _VALUE})
        problems.raise_if_any()
        t = _times(df[cols["time"]], path, cols["time"], problems)
        v = _numeric(df[cols["value"]], path, cols["value"], problems, allowed="a count or load >= 0 (blank = missing)")
        area = df[cols["area"]].astype("string").str.strip()
        blank = area.isna() | (area == "")
        problems.rows(path, cols["area"], _lines(df.index[blank]), df[cols["area"]][blank].fillna(""),
                      "an area id is required on every row")
        if t is not None:
            _duplicates(pd.DataFrame({"area": area, "time": t.astype(str)}), path, "(area, time)",
                        problems, "each area may have one value per interval")
        problems.raise_if_any()
        load = pd.DataFrame({"area": area.to_numpy(dtype=str), "time": t, "value": v}).pivot(
            index="time", columns="area", values="value")
        tz = _tz_label(df[cols["time"]])
    else:
        if df.shape[1] < 2:
            problems.add(f"{path}: found only column(s) {', '.join(map(str, df.columns))}; expected {what}")
            problems.raise_if_any()
        tcol = df.columns[0]
        t = _times(df[tcol], path, str(tcol), problems)
        if t is not None:
            _duplicates(pd.DataFrame({str(tcol): t.astype(str)}), path, "time", problems,
                        "each interval may appear once")
        values = {}
        for c in df.columns[1:]:
            values[str(c).strip()] = _numeric(df[c], path, str(c), problems,
                                              allowed="a count or load >= 0 (blank = missing)")
        problems.raise_if_any()
        load = pd.DataFrame(values, index=pd.DatetimeIndex(t, name="time"))
        tz = _tz_label(df[tcol])
    load = load.sort_index()
    load.index = pd.DatetimeIndex(load.index, name="time")
    steps = np.diff(load.index.values).astype("timedelta64[s]").astype(np.int64)
    interval = int(np.median(steps)) if len(steps) else 3600
    return ActivityTable(path=str(path), load=load.astype(float), interval_s=interval, time_zone=tz)


# --------------------------------------------------------------------------
# (b) per-cell hourly series
# --------------------------------------------------------------------------


def read_cell_series(path: str | Path) -> CellSeries:
    """Hourly series per cell, LTE-like. Aggregate input.

    ``path`` is one CSV or a folder of CSVs (searched recursively). Columns: ``DateTime`` in
    M/D/YYYY H:MM (e.g. ``10/23/2017 00:00``, local time) and ``Traffic`` (a volume >= 0, e.g. MB);
    optionally ``cell`` (cell id per row). Without a ``cell`` column the file is one cell, named by
    the file name (``cell_111_hourly.csv`` -> ``111``). A blank Traffic is a missing hour. Rules:
    DateTime parses, no DateTime twice for a cell, Traffic numeric and >= 0.
    """
    path = Path(path)
    problems = Problems()
    what = "CSV files with columns DateTime (M/D/YYYY H:MM) and Traffic (>= 0)"
    series: dict[str, pd.Series] = {}
    for f in _files(path, ("*.csv",), problems, what):
        df = _read_csv(f, problems, what)
        if df is None:
            continue
        cols = _columns(df, f, problems, {"DateTime": ("datetime", "time"), "Traffic": ("traffic", "value")},
                        {"cell": ("cell", "cell_id", "cellid")})
        if cols is None:
            continue
        t = _times(df[cols["DateTime"]], f, cols["DateTime"], problems, fmt=LTE_FORMAT,
                   fmt_text="M/D/YYYY H:MM (e.g. 10/23/2017 00:00)")
        v = _numeric(df[cols["Traffic"]], f, cols["Traffic"], problems, allowed="a volume >= 0 (blank = missing)")
        if "cell" in cols:
            cell = df[cols["cell"]].astype(str).str.strip().to_numpy()
        else:
            cell = np.full(len(df), re.sub(r"^cell_|_hourly$", "", f.stem))
        if t is None:
            continue
        _duplicates(pd.DataFrame({"cell": cell, cols["DateTime"]: t.astype(str)}), f, "(cell, DateTime)",
                    problems, "each cell may have one value per hour")
        for c in pd.unique(cell):
            m = (cell == c) & ~np.isnan(v)
            if c in series:
                problems.add(f"{f}: cell {c!r} is also in another file; give each cell in one file")
                continue
            series[str(c)] = pd.Series(v[m], index=pd.DatetimeIndex(t[m], name="time"), name=str(c)).sort_index()
    problems.raise_if_any()
    return CellSeries(path=str(path), series=series)


# --------------------------------------------------------------------------
# (c) serving-cell drive traces
# --------------------------------------------------------------------------


def read_drive_traces(path: str | Path, tz: str | None = None) -> DriveTraces:
    """Serving-cell traces (drive tests), Irish-5G-like. Individual-level input.

    ``path`` is one CSV or a folder of CSVs (recursive); each file is one trace. Columns
    (case-insensitive): a time (``Timestamp`` as ``YYYY.MM.DD_HH.MM.SS``, ISO 8601, or unix
    seconds), a serving cell (``RAWCELLID``, ``cell`` or ``cell_id``; ``CellID`` only when none of
    those is there, since it is not unique in the Irish set); optionally ``Latitude``/``Longitude``
    (deg), ``Speed`` (km/h) and ``user`` (a person id; without it each trace counts as one person).
    ``-`` or blank is a missing value; rows without a serving cell are kept out (no service).

    Moving: a trace under a folder named ``Driving`` is moving throughout, one under ``Static``
    never; otherwise an interval is moving when its Speed is >= 5 km/h, or always when there is
    no Speed column. Rules: times parse in one zone, cells present on at least one row, numeric
    columns numeric (lat in [-90, 90], lon in [-180, 180], speed >= 0), no row repeated exactly.
    """
    path = Path(path)
    problems = Problems()
    what = "CSV traces with a time and a serving-cell column"
    traces: list[Trace] = []
    has_user = False
    for f in _files(path, ("*.csv",), problems, what):
        df = _read_csv(f, problems, what, na_values=["-"], keep_default_na=True, dtype=str)
        if df is None:
            continue
        cols = _columns(df, f, problems,
                        {"time": ("timestamp", "time", "datetime"),
                         "cell": ("rawcellid", "cell", "cell_id", "serving_cell", "cellid")},
                        {"lat": ("latitude", "lat"), "lon": ("longitude", "lon", "lng"),
                         "speed": ("speed", "speed_kmh"), "user": ("user", "user_id", "subscriber_id")})
        if cols is None:
            continue
        _duplicates(df.fillna("-"), f, "row", problems, "a trace holds each row once")
        first = df[cols["time"]].dropna().astype(str).str.strip()
        irish = len(first) > 0 and bool(IRISH_TIME.match(first.iloc[0]))
        t = _times(df[cols["time"]], f, cols["time"], problems, fmt=IRISH_FORMAT if irish else None,
                   fmt_text="YYYY.MM.DD_HH.MM.SS" if irish else ISO_TEXT + " or unix seconds",
                   unix=not irish, tz=tz)
        extra = {}
        for role, lo, hi, allowed in (("lat", -90, 90, "a latitude in [-90, 90]"),
                                      ("lon", -180, 180, "a longitude in [-180, 180]"),
                                      ("speed", 0, None, "a speed >= 0 (km/h)")):
            if role in cols:
                extra[role] = _numeric(df[cols[role]], f, cols[role], problems, minimum=lo, maximum=hi,
                                       allowed=allowed + " or '-'", na_values=("", "-"))
        cell = df[cols["cell"]].astype("string").str.strip()
        ok = (cell.notna() & (cell != "")).to_numpy()
        if not ok.any():
            problems.add(f"{f}: column {cols['cell']!r}: no row has a serving cell")
        if t is None or not ok.any():
            continue
        parts = {p.lower() for p in f.relative_to(path).parts[:-1]} if path.is_dir() else \
            {p.lower() for p in f.parts[-3:-1]}
        user = df[cols["user"]].astype(str).to_numpy() if "user" in cols else np.full(len(df), f.stem)
        has_user |= "user" in cols
        order = np.argsort(t, kind="stable")
        for u in pd.unique(user):
            idx = order[(user[order] == u) & ok[order]]
            speed = extra.get("speed")
            if "driving" in parts:
                moving = np.ones(len(idx), bool)
            elif "static" in parts:
                moving = np.zeros(len(idx), bool)
            elif speed is not None:
                moving = np.nan_to_num(speed[idx], nan=0.0) >= MOVING_MIN_KMH
            else:
                moving = np.ones(len(idx), bool)
            traces.append(Trace(
                name=str(f.relative_to(path)) if path.is_dir() else f.name, unit=str(u), time=t[idx],
                cell=cell.to_numpy(dtype=object)[idx].astype(str), moving=moving,
                lat=extra["lat"][idx] if "lat" in extra else None,
                lon=extra["lon"][idx] if "lon" in extra else None,
                speed=speed[idx] if speed is not None else None))
    problems.raise_if_any()
    return DriveTraces(path=str(path), traces=traces, unit_kind="user" if has_user else "trace")


MOVING_MIN_KMH = 5.0  # public constant: an interval with Speed >= 5 km/h counts as moving


# --------------------------------------------------------------------------
# (d) location traces
# --------------------------------------------------------------------------


def read_location_traces(path: str | Path, tz: str | None = None) -> LocationTraces:
    """Location fixes per user, StudentLife-like. Individual-level input.

    ``path`` is one CSV (optionally .gz) or a folder of them. Columns (case-insensitive): ``time``
    (unix seconds or ISO 8601), ``latitude``/``longitude`` (or lat/lon, deg), optionally
    ``accuracy`` (m, >= 0) and ``user``; without a ``user`` column each file is one user named by
    the file (``gps_u00.csv.gz`` -> ``u00``). A trailing comma at the end of rows is tolerated.
    Unix times are shown in ``tz`` (default UTC) to find local days and hours. Rules: time parses in
    one zone, lat in [-90, 90], lon in [-180, 180], no (user, time) twice, a user in one file only.
    """
    path = Path(path)
    problems = Problems()
    what = "CSV location fixes with columns time, latitude, longitude"
    parts = []
    seen: dict[str, Path] = {}
    for f in _files(path, ("*.csv", "*.csv.gz"), problems, what):
        df = _read_csv(f, problems, what, index_col=False)
        if df is None:
            continue
        cols = _columns(df, f, problems, {"time": ("time", "timestamp", "datetime"),
                                          "lat": ("latitude", "lat"), "lon": ("longitude", "lon", "lng")},
                        {"accuracy": ("accuracy",), "user": ("user", "user_id", "uid")})
        if cols is None:
            continue
        t = _times(df[cols["time"]], f, cols["time"], problems, unix=True, tz=tz)
        lat = _numeric(df[cols["lat"]], f, cols["lat"], problems, minimum=-90, maximum=90,
                       allowed="a latitude in [-90, 90]")
        lon = _numeric(df[cols["lon"]], f, cols["lon"], problems, minimum=-180, maximum=180,
                       allowed="a longitude in [-180, 180]")
        acc = (_numeric(df[cols["accuracy"]], f, cols["accuracy"], problems, allowed="an accuracy >= 0 (m)")
               if "accuracy" in cols else np.full(len(df), np.nan))
        stem = re.sub(r"\.csv(\.gz)?$", "", f.name)
        user = (df[cols["user"]].astype(str).str.strip().to_numpy() if "user" in cols
                else np.full(len(df), re.sub(r"^gps_", "", stem)))
        for u in pd.unique(user):
            if u in seen and seen[u] != f:
                problems.add(f"{f}: user {u!r} is also in {seen[u]}; give each user in one file")
            seen[u] = f
        if t is None:
            continue
        _duplicates(pd.DataFrame({"user": user, cols["time"]: t.astype(str)}), f, "(user, time)", problems,
                    "a user has one position at a time")
        keep = ~(np.isnan(lat) | np.isnan(lon))
        parts.append(pd.DataFrame({"user": user[keep], "time": t[keep], "lat": lat[keep], "lon": lon[keep],
                                   "accuracy": acc[keep]}))
    problems.raise_if_any()
    d = pd.concat(parts, ignore_index=True).sort_values(["user", "time"], kind="stable")
    users = sorted(d.user.unique())
    code = pd.Categorical(d.user, categories=users).codes.astype(np.int64)
    return LocationTraces(path=str(path), users=users, user=code, time=d.time.to_numpy(dtype="datetime64[s]"),
                          lat=d.lat.to_numpy(), lon=d.lon.to_numpy(), accuracy=d.accuracy.to_numpy(),
                          time_zone=tz or "UTC (unix times) / as given")


# --------------------------------------------------------------------------
# (e) published shares per hour (and per weekday)
# --------------------------------------------------------------------------


def read_shares(path: str | Path) -> ShareTables:
    """Published shares of events per hour (and per weekday), Nodobo-like. Aggregate input.

    ``path`` is one CSV or a folder. An hourly table has a column ``Hour`` (integers 0..23, each
    once, any order) and one column per series (e.g. ``Calls``, ``Messages``) holding the share
    (percent or fraction, >= 0) of that series' events in the hour; its variant is the file name
    after ``hourly-`` (``hourly-weekday.csv`` -> ``weekday``). A daily table has a column ``Day``
    (Mon..Sun, each once) and the same kind of columns (variant from ``daily-*``). Other files in a
    folder are ignored. Each column is normalised to sum 1; a column summing to 0 is an error.
    """
    path = Path(path)
    problems = Problems()
    what = "CSV shares with a Hour (0..23) or Day (Mon..Sun) column and one column per series"
    files = _files(path, ("hourly-*.csv", "daily-*.csv"), problems, what)
    if path.is_file():
        files = [path]
    hourly: dict[str, pd.DataFrame] = {}
    daily: dict[str, pd.DataFrame] = {}
    for f in files:
        df = _read_csv(f, problems, what)
        if df is None:
            continue
        lower = {str(c).strip().lower(): c for c in df.columns}
        if "hour" in lower:
            key, labels = lower["hour"], list(range(24))
            v = _numeric(df[key], f, str(key), problems, minimum=0, maximum=23, integer=True,
                         allowed="an hour 0..23")
            idx = pd.Series(v).astype("Int64") if not np.isnan(v).any() else None
            target = hourly
        elif "day" in lower:
            key, labels = lower["day"], list(DAY_NAMES)
            names = df[key].astype(str).str.strip().str[:3].str.title()
            bad = ~names.isin(DAY_NAMES)
            problems.rows(f, str(key), _lines(df.index[bad]), df[key][bad], "expected a weekday Mon..Sun")
            idx = names if not bad.any() else None
            target = daily
        else:
            problems.add(f"{f}: missing column Hour or Day; found: {', '.join(map(str, df.columns))}")
            continue
        series = [c for c in df.columns if c != key]
        if not series:
            problems.add(f"{f}: no share column besides {key!r}; expected one column per series")
        vals = {str(c).strip(): _numeric(df[c], f, str(c), problems, allowed="a share >= 0 (percent or fraction)")
                for c in series}
        if idx is None:
            continue
        _duplicates(pd.DataFrame({str(key): idx.astype(str).to_numpy()}), f, str(key), problems,
                    "each hour or day appears once")
        missing = sorted(set(labels) - set(idx.tolist()), key=labels.index)
        if missing:
            problems.add(f"{f}: column {key!r}: missing {', '.join(map(str, missing))}; every one of "
                         f"{labels[0]}..{labels[-1]} must appear once")
        table = pd.DataFrame(vals, index=pd.Index(idx.tolist(), name=str(key)))
        for c in table.columns:
            s = table[c]
            if s.isna().any():
                problems.add(f"{f}: column {c!r}: blank share; every {key} needs a value")
            elif s.sum() <= 0:
                problems.add(f"{f}: column {c!r}: shares sum to 0; expected a positive total")
        if problems:
            continue
        table = table[~table.index.duplicated()].reindex(labels)
        variant = re.sub(r"^(hourly|daily)-?", "", f.stem) or "all"
        target[variant] = table / table.sum()
    problems.raise_if_any()
    if not hourly:
        problems.add(f"{path}: no hourly share table (a CSV with an Hour column); expected {what}")
        problems.raise_if_any()
    return ShareTables(path=str(path), hourly=hourly, daily=daily)


# --------------------------------------------------------------------------
# (f) call and SMS edge lists
# --------------------------------------------------------------------------


def _edge_file(f: Path, problems: Problems, durations: bool) -> pd.DataFrame | None:
    what = ("a ';'-separated CSV Source;Target;Weight (Weight = call duration in s, >= 0)" if durations
            else "a ';'-separated CSV Source;Target")
    df = _read_csv(f, problems, what, sep=";", dtype=str)
    if df is None:
        return None
    if df.shape[1] == 1 and "," in str(df.columns[0]):
        df = _read_csv(f, problems, what, sep=",", dtype=str)
    req = {"source": ("source", "caller", "from"), "target": ("target", "callee", "to")}
    if durations:
        req["duration"] = ("weight", "duration", "duration_s")
    cols = _columns(df, f, problems, req)
    if cols is None:
        return None
    out = {}
    for role in ("source", "target"):
        s = df[cols[role]].astype("string").str.strip()
        blank = s.isna() | (s == "")
        problems.rows(f, cols[role], _lines(df.index[blank]), df[cols[role]][blank].fillna(""),
                      "a person id is required on every row")
        out[role] = s.fillna("").to_numpy(dtype=str)
    if durations:
        out["duration_s"] = _numeric(df[cols["duration"]], f, cols["duration"], problems,
                                     allowed="a call duration >= 0 (s)")
        nan = np.isnan(out["duration_s"])
        problems.rows(f, cols["duration"], _lines(df.index[nan]), df[cols["duration"]][nan].fillna(""),
                      "a duration is required on every row")
    return pd.DataFrame(out)


def read_edges(path: str | Path) -> EdgeLists:
    """Call and SMS edge lists, Copenhagen-like. Individual-level input.

    ``path`` is a folder holding ``calls.csv`` and optionally ``sms.csv``, or a calls file alone.
    ``calls.csv``: ``Source;Target;Weight`` (';'-separated; caller id, callee id, duration in s,
    >= 0; a Weight <= 1 is taken as a missed call by the targets). ``sms.csv``: ``Source;Target``.
    One row is one call or one SMS: with timestamps stripped, repeated rows are separate events and
    are allowed. Rules: ids present on every row, Weight numeric, present and >= 0.
    """
    path = Path(path)
    problems = Problems()
    if path.is_dir():
        calls_f, sms_f = path / "calls.csv", path / "sms.csv"
        if not calls_f.is_file():
            problems.add(f"{path}: no calls.csv in this folder; expected calls.csv (Source;Target;Weight) "
                         "and optionally sms.csv")
            problems.raise_if_any()
        sms_f = sms_f if sms_f.is_file() else None
    elif path.exists():
        calls_f, sms_f = path, None
    else:
        problems.add(f"{path}: cannot read: no such file or folder; expected calls.csv or a folder with it")
        problems.raise_if_any()
    calls = _edge_file(calls_f, problems, durations=True)
    sms = _edge_file(sms_f, problems, durations=False) if sms_f is not None else None
    problems.raise_if_any()
    return EdgeLists(path=str(path), calls=calls, sms=sms)


# --------------------------------------------------------------------------
# (g) telcosim CDRs
# --------------------------------------------------------------------------

CDR_COLUMNS = ("record_id", "subscriber_id", "counterpart_id", "service", "direction", "start_time",
               "duration_s", "cell_id", "outcome")


def read_cdr(path: str | Path) -> CdrTable:
    """CDRs in telcosim's own schema (``docs/schema.md``, ``sim/schema.py``). Individual-level input.

    ``path`` is a run folder written by ``telcosim run`` (its ``cdr/`` parts are read and, when
    present, its ``cells.parquet`` gives the network's cell ids) or a Parquet file / folder of
    parts with the CDR columns. Needed columns: record_id, subscriber_id, counterpart_id, service
    (voice|sms|data), direction (mo|mt), start_time (timestamp), duration_s (>= 0), cell_id,
    outcome (completed|blocked|dropped|failed). Rules: columns present, values in their
    vocabularies, no null subscriber or time, no negative or non-finite duration, no record_id
    twice.
    """

    path = Path(path)
    problems = Problems()
    what = "a telcosim run folder or a Parquet CDR file"
    source = path / "cdr" if (path / "cdr").is_dir() else path
    if not path.exists():
        problems.add(f"{path}: cannot read: no such file or folder; expected {what}")
        problems.raise_if_any()
    try:
        schema = pq.read_schema(source) if source.is_file() else pq.ParquetDataset(source).schema
        missing = [c for c in CDR_COLUMNS if c not in schema.names]
        if missing:
            problems.add(f"{source}: missing column(s) {', '.join(missing)}; found: {', '.join(schema.names)}")
            problems.raise_if_any()
        table = pq.read_table(source, columns=list(CDR_COLUMNS))
    except (OSError, pa.ArrowException, ValueError) as exc:
        problems.add(f"{source}: cannot read: {str(exc).splitlines()[0]}; expected {what}")
        problems.raise_if_any()

    def col(name):
        return table.column(name)

    def text(name, vocab):
        values = np.asarray(col(name).to_pylist(), dtype=object)
        bad = ~np.isin(values, list(vocab))
        problems.rows(source, name, np.flatnonzero(bad), values[bad], f"expected one of {', '.join(vocab)}",
                      unit="row")
        return values.astype(str)

    service = text("service", SERVICES)
    direction = text("direction", DIRECTIONS)
    outcome = text("outcome", OUTCOMES)
    for name in ("record_id", "subscriber_id", "start_time", "cell_id"):
        nulls = np.flatnonzero(np.asarray(col(name).is_null()))
        problems.rows(source, name, nulls, [None] * len(nulls), "a value is required on every row", unit="row")
    dur = col("duration_s").to_numpy(zero_copy_only=False).astype(float)
    bad = ~np.isfinite(dur) | (dur < 0)
    problems.rows(source, "duration_s", np.flatnonzero(bad), dur[bad], "expected a duration >= 0 (s)", unit="row")
    rid = col("record_id").to_numpy(zero_copy_only=False)
    if len(np.unique(rid)) != len(rid):
        uniq, first, counts = np.unique(rid, return_index=True, return_counts=True)
        dup = uniq[counts > 1]
        problems.add(f"{source}: column 'record_id': duplicated ids {', '.join(map(str, dup[:3]))}"
                     f"{f' (and {len(dup) - 3} more)' if len(dup) > 3 else ''}: each record appears once")
    problems.raise_if_any()
    ttype = col("start_time").type
    tz = getattr(ttype, "tz", None)
    st = pd.Series(col("start_time").to_pandas())
    if tz:
        st = st.dt.tz_convert(tz).dt.tz_localize(None)
    cp = col("counterpart_id").to_numpy(zero_copy_only=False)
    cp = np.where(pd.isna(cp), -1, cp).astype(np.int64)
    cells = None
    if (path / "cells.parquet").is_file():
        cells = pq.read_table(path / "cells.parquet", columns=["cell_id"]).column("cell_id").to_numpy()
    return CdrTable(path=str(path), subscriber_id=col("subscriber_id").to_numpy().astype(np.int64),
                    counterpart_id=cp, service=service, direction=direction, outcome=outcome,
                    start_time=st.to_numpy(dtype="datetime64[ms]"), duration_s=dur,
                    cell_id=col("cell_id").to_numpy().astype(np.int64), time_zone=tz or "naive",
                    cells=cells)


READERS = {
    "activity": read_activity,
    "cells": read_cell_series,
    "drive": read_drive_traces,
    "locations": read_location_traces,
    "shares": read_shares,
    "edges": read_edges,
    "cdr": read_cdr,
}
