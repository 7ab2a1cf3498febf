"""Hybrid sets: a governed subset of a user's real CDRs, filled with synthetic records.

``telcosim hybrid --real CDRS --synthetic RUN --out DIR`` (or ``--scenario NAME`` to run one on
the real set's window) writes one CDR table in telcosim's schema plus a ``provenance`` column
(``real`` / ``synthetic``). The real part is kept under a declarative policy (:class:`Policy`, a
TOML file and flags; docs/hybrid.md):

1. **coarsening**: start times truncated to ``coarsen.time_resolution_s``; durations rounded to
   ``coarsen.duration_step_s`` and top-coded at ``coarsen.duration_top_s``; byte volumes rounded
   to ``coarsen.bytes_step`` and top-coded at ``coarsen.bytes_top``; a cell seen by fewer than
   ``coarsen.cell_min_subscribers`` distinct real subscribers is merged into its site (the site's
   lowest cell id, when the cell layout is known and the site has enough subscribers) or else
   into the "other" cell ``-1``;
2. **suppression**: every stratum (``strata``, by default service x local hour x cell) with fewer
   than ``k`` distinct real subscribers loses all its real records;
3. **re-keying**: subscriber and counterpart ids become a keyed hash (HMAC-SHA256 with a secret
   from ``--key-file``, or a fresh random one that is never written), 31 bits, re-drawn on a
   collision so that no output id equals any input id or another output id; synthetic ids go
   through the same hash in their own domain, so the two sets of ids are disjoint; record and
   session ids are renumbered;
4. **DP release**: the real records per cell of the margin ``dp.margin`` (by default service x
   hour), each subscriber capped at ``dp.max_rows_per_subscriber`` rows, are released through the
   project's OpenDP releaser (:mod:`calibration.privacy`) with ``dp.epsilon`` / ``dp.delta``; the
   ledger goes into the manifest.

Synthetic records fill every stratum of the synthetic source that has no real records left
(suppressed, or absent from the real set). ``fill = "dp"`` sizes each margin cell's fill to the
DP-released count minus the real records kept there, shared over its empty strata in proportion
to the synthetic source's records; ``fill = "subset"`` sizes each empty stratum to the synthetic
source's count times the ratio of real to synthetic records over the strata both have (derived
from the released real subset only). With ``incidents = true`` every synthetic record labelled
with an incident comes along with its ``incident_id`` (and ``incidents.parquet``).

The folder is written into a staging folder and renamed into place; on any error nothing is
left. :func:`evaluate_hybrid` judges the hybrid and the synthetic source alone against the full
real set with the fidelity report (:mod:`evaluation.fidelity`, :mod:`evaluation.report`) and the
privacy attacks (:mod:`evaluation.attacks`) on trajectories made from the CDRs' cells.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import math
import secrets
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from telcosim.calibration.privacy import Releaser, cap_rows
from telcosim.realdata import readers as R
from telcosim.realdata.errors import DataError
from telcosim.scenarios.runner import run as run_scenario
from telcosim.sim import __version__
from telcosim.sim.config import Scenario
from telcosim.sim.errors import ConfigError, OutputError
from telcosim.sim.schema import DIRECTIONS, OUTCOMES, SERVICES, cdr_schema
from telcosim.sim.staging import staging_folder, swap_into_place
from telcosim.sim.streams import generator

from . import attacks as A
from . import fidelity as F
from .coverage import _hint
from .report import write_report

STRATUM_COLUMNS = ("service", "direction", "outcome", "hour", "day_type", "cell")
MARGIN_VOCAB: dict[str, tuple] = {"service": SERVICES, "direction": DIRECTIONS, "outcome": OUTCOMES,
                                  "hour": tuple(range(24)), "day_type": ("weekday", "weekend")}
FILL_MODES = ("dp", "subset")
COUNTERPARTS = ("rekey", "drop")
OTHER_CELL = -1
KEY_MIN_BYTES = 16
ID_BITS = 31
DP_TARGET = "hybrid.margin"


# --------------------------------------------------------------------------
# the policy
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What is kept of the real records and how the rest is filled (docs/hybrid.md)."""

    k: int = 5
    strata: tuple[str, ...] = ("service", "hour", "cell")
    fill: str = "subset"
    incidents: bool = True
    counterparts: str = "rekey"
    seed: int = 1
    cell_min_subscribers: int | None = None  # None: k
    time_resolution_s: int = 60
    duration_step_s: float = 1.0
    duration_top_s: float = 3600.0
    bytes_step: int = 1000
    bytes_top: int = 1_000_000_000
    epsilon: float = 1.0
    delta: float = 0.0
    margin: tuple[str, ...] = ("service", "hour")
    max_rows_per_subscriber: int = 100

    @property
    def cell_min(self) -> int:
        return self.k if self.cell_min_subscribers is None else self.cell_min_subscribers

    def to_toml_dict(self) -> dict[str, Any]:
        """The policy as written in a policy file (every key, defaults filled in)."""
        return {"k": self.k, "strata": list(self.strata), "fill": self.fill, "incidents": self.incidents,
                "counterparts": self.counterparts, "seed": self.seed,
                "coarsen": {"cell_min_subscribers": self.cell_min, "time_resolution_s": self.time_resolution_s,
                            "duration_step_s": self.duration_step_s, "duration_top_s": self.duration_top_s,
                            "bytes_step": self.bytes_step, "bytes_top": self.bytes_top},
                "dp": {"epsilon": self.epsilon, "delta": self.delta, "margin": list(self.margin),
                       "max_rows_per_subscriber": self.max_rows_per_subscriber}}


# dotted key -> (Policy field, kind, doc); the kinds are checked by _check_value
KEYS: dict[str, tuple[str, str, str]] = {
    "k": ("k", "int>=2", "fewest distinct real subscribers a stratum needs to keep its real records"),
    "strata": ("strata", "strata", f"stratum columns, from {', '.join(STRATUM_COLUMNS)}"),
    "fill": ("fill", "fill", "how the fill is sized: dp (DP-released margin counts) or subset (released real part)"),
    "incidents": ("incidents", "bool", "bring the synthetic source's incident-labelled records along"),
    "counterparts": ("counterparts", "counterparts", "real records' counterpart ids: rekey (keyed hash, the "
                     "contact graph stays) or drop (null)"),
    "seed": ("seed", "seed", "seed of the choice of synthetic records"),
    "coarsen.cell_min_subscribers": ("cell_min_subscribers", "int>=1",
                                     "cells with fewer distinct real subscribers are merged (default: k)"),
    "coarsen.time_resolution_s": ("time_resolution_s", "res", "start times truncated to this (s, 1..3600)"),
    "coarsen.duration_step_s": ("duration_step_s", "pos", "durations rounded to this step (s)"),
    "coarsen.duration_top_s": ("duration_top_s", "pos", "durations top-coded at this (s)"),
    "coarsen.bytes_step": ("bytes_step", "int>=1", "byte volumes rounded to this step (bytes)"),
    "coarsen.bytes_top": ("bytes_top", "int>=1", "byte volumes top-coded at this (bytes)"),
    "dp.epsilon": ("epsilon", "pos", "epsilon of the DP release of the margin counts"),
    "dp.delta": ("delta", "delta", "delta of that release (0: Laplace, > 0: Gaussian)"),
    "dp.margin": ("margin", "margin", f"columns of the released margin, from {', '.join(MARGIN_VOCAB)}"),
    "dp.max_rows_per_subscriber": ("max_rows_per_subscriber", "int>=1",
                                   "rows one subscriber contributes to the DP release at most"),
}
SECTIONS = ("coarsen", "dp")


def _check_value(where: str, kind: str, v: Any) -> tuple[Any, str | None]:
    """(the value in its Policy form, or a problem line)."""
    isnum = isinstance(v, int | float) and not isinstance(v, bool)
    isint = isinstance(v, int) and not isinstance(v, bool)
    if kind in ("int>=2", "int>=1", "seed"):
        lo = {"int>=2": 2, "int>=1": 1, "seed": 0}[kind]
        if not isint:
            return None, f"{where}: {v!r} is not an integer (an integer >= {lo})"
        if v < lo or (kind == "seed" and v > 2**63 - 1):
            return None, f"{where}: {v!r} is out of range (must be >= {lo}{' and < 2^63' if kind == 'seed' else ''})"
        return int(v), None
    if kind == "res":
        if not isint or not 1 <= v <= 3600:
            return None, f"{where}: {v!r} is not allowed (an integer number of seconds, 1 to 3600)"
        return int(v), None
    if kind in ("pos", "delta"):
        if not isnum or not math.isfinite(v):
            return None, f"{where}: {v!r} is not a number"
        if kind == "pos" and v <= 0:
            return None, f"{where}: {v!r} is out of range (must be > 0)"
        if kind == "delta" and not 0 <= v < 1:
            return None, f"{where}: {v!r} is out of range (must be >= 0 and < 1)"
        return float(v), None
    if kind == "bool":
        if not isinstance(v, bool):
            return None, f"{where}: {v!r} is not true or false"
        return v, None
    if kind in ("fill", "counterparts"):
        allowed_words = FILL_MODES if kind == "fill" else COUNTERPARTS
        if v not in allowed_words:
            return None, f"{where}: {v!r} is not allowed {_hint(str(v), allowed_words)}"
        return v, None
    allowed = STRATUM_COLUMNS if kind == "strata" else tuple(MARGIN_VOCAB)
    if not isinstance(v, list | tuple) or not v or not all(isinstance(x, str) for x in v):
        return None, f"{where}: {v!r} is not a non-empty list of column names (allowed: {', '.join(allowed)})"
    bad = [x for x in v if x not in allowed]
    if bad:
        return None, f"{where}: {bad[0]!r} is not a {'stratum' if kind == 'strata' else 'margin'} column {_hint(bad[0], allowed)}"
    if len(set(v)) != len(v):
        return None, f"{where}: {list(v)!r} names a column twice"
    return tuple(v), None


def policy_from_dict(raw: Mapping[str, Any], file: str = "<policy>",
                     overrides: Mapping[str, Any] | None = None, flags: Mapping[str, str] | None = None) -> Policy:
    """A validated :class:`Policy` from a parsed policy file and ``overrides`` (dotted key ->
    value, e.g. from command-line flags, which win; ``flags`` names the flag of a key for the
    messages); every problem in one :class:`ConfigError`."""
    problems: list[str] = []
    flat: dict[str, tuple[str, Any]] = {}
    for key, v in raw.items():
        if key in SECTIONS:
            if not isinstance(v, dict):
                problems.append(f"{file}: {key}: {v!r} is not a table (expected [{key}] with keys "
                                f"{', '.join(k.split('.', 1)[1] for k in KEYS if k.startswith(key + '.'))})")
                continue
            for sub, w in v.items():
                flat[f"{key}.{sub}"] = (file, w)
        else:
            flat[key] = (file, v)
    flags = flags or {}
    for key, v in (overrides or {}).items():
        flat[key] = (None, v)
    values: dict[str, Any] = {}
    for key, (src, v) in flat.items():
        where = f"{src}: {key}" if src else flags.get(key, f"policy override {key}")
        if key not in KEYS:
            problems.append(f"{where}: unknown key {_hint(key, tuple(KEYS))}")
            continue
        name, kind, _ = KEYS[key]
        val, problem = _check_value(where, kind, v)
        if problem:
            problems.append(problem)
        else:
            values[name] = val
    if not problems:
        p = Policy(**values)
        if p.fill == "dp" and not set(p.margin) <= set(p.strata):
            extra = [c for c in p.margin if c not in p.strata]
            problems.append(f"{file}: dp.margin: {list(p.margin)!r} has {', '.join(map(repr, extra))}, not a stratum "
                            f"column ({', '.join(p.strata)}): with fill = \"dp\" each stratum must lie in one margin "
                            "cell (add it to strata, drop it from dp.margin, or set fill = \"subset\")")
        if not problems:
            return p
    raise ConfigError(problems)


def load_policy(path: str | Path | None, overrides: Mapping[str, Any] | None = None,
                flags: Mapping[str, str] | None = None) -> Policy:
    """The policy of a TOML file (None: the defaults) with ``overrides`` applied."""
    if path is None:
        return policy_from_dict({}, "<defaults>", overrides, flags)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such policy file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected a policy file (TOML)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the policy file ({type(exc).__name__}: {exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p.name}: not valid TOML: {exc}") from None
    return policy_from_dict(raw, p.name, overrides, flags)


def read_key(path: str | Path | None) -> tuple[bytes, str]:
    """The re-keying secret: the bytes of ``path`` (at least 16), or 32 fresh random bytes that
    are never written anywhere (the ids then differ on every call)."""
    if path is None:
        return secrets.token_bytes(32), "generated for this call and not written anywhere"
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the key file ({exc.strerror or exc})") from None
    if len(key) < KEY_MIN_BYTES:
        raise ConfigError(f"{path}: the key file holds {len(key)} bytes; a key needs at least {KEY_MIN_BYTES} "
                          "(e.g. head -c 32 /dev/urandom > hybrid.key)")
    return key, f"from a key file ({len(key)} bytes; not written to the output)"


# --------------------------------------------------------------------------
# reading CDRs
# --------------------------------------------------------------------------

# Columns of the CDR schema and the type class each must have.
_TYPE_RULES = {"record_id": "integer", "session_id": "integer", "subscriber_id": "integer",
               "counterpart_id": "integer", "service": "text", "direction": "text", "start_time": "timestamp",
               "duration_s": "number", "bytes_up": "integer", "bytes_down": "integer", "cell_id": "integer",
               "end_cell_id": "integer", "outcome": "text", "cause": "text", "redial": "integer",
               "incident_id": "integer"}


def _type_ok(t: pa.DataType, rule: str) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return {"integer": pa.types.is_integer(t), "number": pa.types.is_integer(t) or pa.types.is_floating(t),
            "text": pa.types.is_string(t) or pa.types.is_large_string(t), "timestamp": pa.types.is_timestamp(t)}[rule]


def _cdr_source(path: Path) -> Path:
    return path / "cdr" if (path / "cdr").is_dir() else path


def read_cdr_frame(path: Path, what: str) -> tuple[pd.DataFrame, str]:
    """A CDR file or folder (or a run folder) as a DataFrame with the schema's columns it has,
    checked by :func:`realdata.readers.read_cdr` and for column types; and its time zone."""
    path = Path(path)
    source = _cdr_source(path)
    if path.exists():
        try:
            schema = pq.read_schema(source) if source.is_file() else pq.ParquetDataset(source).schema
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise DataError(f"{what} {source}: cannot read: {str(exc).splitlines()[0]}; expected a Parquet CDR "
                            "file or folder in telcosim's schema") from None
        bad = [f"{what} {source}: column {n!r}: type {schema.field(n).type}, expected {_TYPE_RULES[n]}"
               for n in schema.names if n in _TYPE_RULES and not _type_ok(schema.field(n).type, _TYPE_RULES[n])]
        if bad:
            raise DataError(bad)
    try:
        c = R.read_cdr(path)  # columns, vocabularies, nulls, durations, unique record ids
    except DataError as exc:
        raise DataError([f"{what} {p}" for p in exc.problems]) from None
    cols = [n for n in cdr_schema("UTC").names if n in schema.names]
    table = pq.read_table(source, columns=cols, partitioning=None)
    df = table.to_pandas()
    for name in ("service", "direction", "outcome", "cause"):
        if name in df:
            df[name] = df[name].astype(object).where(df[name].notna(), None)
    tz = c.time_zone if c.time_zone != "naive" else "UTC"
    st = pd.Series(df["start_time"])
    df["start_time"] = st.dt.tz_convert(tz) if st.dt.tz is not None else st.dt.tz_localize(tz)
    return df, tz


@dataclass
class Layout:
    """What is known of the cells: site of each cell (for merging) and position (for attacks)."""

    cells: pd.DataFrame | None  # index cell_id; columns site_id and, when known, lat, lon
    source: str | None


def read_layout(path: Path | None) -> Layout:
    if path is None or not Path(path).is_file():
        return Layout(None, None)
    try:
        t = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read the cell layout: {str(exc).splitlines()[0]}") from None
    if "cell_id" not in t.column_names or "site_id" not in t.column_names:
        raise DataError(f"{path}: the cell layout needs columns cell_id and site_id; found {', '.join(t.column_names)}")
    cols = [c for c in ("cell_id", "site_id", "lat", "lon") if c in t.column_names]
    return Layout(t.select(cols).to_pandas().set_index("cell_id"), str(path))


# --------------------------------------------------------------------------
# governance
# --------------------------------------------------------------------------


def coarsen_values(df: pd.DataFrame, p: Policy) -> pd.DataFrame:
    """Times, durations and volumes coarsened as the policy says (cells: :func:`cell_map`)."""
    df = df.copy()
    df["start_time"] = df["start_time"].dt.floor(f"{p.time_resolution_s}s")
    d = np.round(df["duration_s"].to_numpy(float) / p.duration_step_s) * p.duration_step_s
    df["duration_s"] = np.minimum(d, p.duration_top_s)
    for c in ("bytes_up", "bytes_down"):
        if c in df:
            b = np.round(df[c].to_numpy(np.int64) / p.bytes_step).astype(np.int64) * p.bytes_step
            df[c] = np.minimum(b, p.bytes_top).astype(np.int64)
    return df


def cell_map(real: pd.DataFrame, p: Policy, layout: Layout) -> dict[int, int]:
    """Cells seen by fewer than ``cell_min`` distinct real subscribers -> their site's lowest cell
    (site known, with enough subscribers) or :data:`OTHER_CELL`; other cells map to themselves
    (absent from the dict)."""
    subs = real.groupby("cell_id").subscriber_id.nunique()
    rare = subs.index[subs < p.cell_min].to_numpy()
    if not len(rare):
        return {}
    out = {int(c): OTHER_CELL for c in rare}
    if layout.cells is not None:
        site = layout.cells.site_id.reindex(real.cell_id.to_numpy()).to_numpy()
        ok = ~pd.isna(site)
        by_site = pd.DataFrame({"site": site[ok], "sub": real.subscriber_id.to_numpy()[ok]}).groupby("site")["sub"].nunique()
        first = layout.cells.reset_index().groupby("site_id").cell_id.min()
        for c in rare:
            s = layout.cells.site_id.get(int(c))
            if s is not None and by_site.get(s, 0) >= p.cell_min:
                out[int(c)] = int(first[s])
    return out


def apply_cells(df: pd.DataFrame, mapping: dict[int, int]) -> pd.DataFrame:
    df = df.copy()
    for c in ("cell_id", "end_cell_id"):
        if c in df and mapping:
            v = df[c].to_numpy(np.int64)
            df[c] = pd.Series(v).map(mapping).fillna(pd.Series(v)).to_numpy(np.int64)
    return df


def strata_values(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The stratum columns of each row (hour and day type in the records' local time)."""
    out = {}
    for c in columns:
        if c == "hour":
            out[c] = df.start_time.dt.hour.to_numpy()
        elif c == "day_type":
            out[c] = np.where(df.start_time.dt.dayofweek.to_numpy() >= 5, "weekend", "weekday")
        elif c == "cell":
            out[c] = df.cell_id.to_numpy()
        else:
            out[c] = df[c].to_numpy()
    return pd.DataFrame(out, index=df.index)


def stratum_codes(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> list[np.ndarray]:
    """One integer code per distinct stratum, the same across ``frames``."""
    allv = pd.concat([strata_values(f, columns) for f in frames], ignore_index=True)
    codes = allv.groupby(list(columns), sort=True, dropna=False).ngroup().to_numpy()
    out, i = [], 0
    for f in frames:
        out.append(codes[i:i + len(f)])
        i += len(f)
    return out


def subscribers_per_stratum(codes: np.ndarray, subscriber: np.ndarray) -> pd.Series:
    return pd.DataFrame({"s": codes, "u": subscriber}).groupby("s").u.nunique()


def _digest(key: bytes, text: str) -> int:
    return int.from_bytes(hmac.new(key, text.encode("ascii"), hashlib.sha256).digest()[:8], "big") & ((1 << ID_BITS) - 1)


class Rekeyer:
    """Keyed-hash pseudonyms: ``ids(domain, values)`` maps every value to a 31-bit id that is the
    same for the same (domain, value), differs from every id in ``avoid`` (the input's real ids)
    and from every other pseudonym handed out (a collision draws again with a counter)."""

    def __init__(self, key: bytes, avoid: np.ndarray):
        self.key = key
        self.used: set[int] = set(int(v) for v in np.unique(avoid))
        self.given: dict[tuple[str, int], int] = {}

    def ids(self, domain: str, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.int64)
        uniq, inv = np.unique(values, return_inverse=True)
        new = np.empty(len(uniq), np.int64)
        for i, v in enumerate(uniq.tolist()):
            got = self.given.get((domain, v))
            if got is None:
                n = 0
                got = _digest(self.key, f"{domain}:{v}")
                while got in self.used:
                    n += 1
                    got = _digest(self.key, f"{domain}:{v}:{n}")
                self.used.add(got)
                self.given[(domain, v)] = got
            new[i] = got
        return new[inv]


# --------------------------------------------------------------------------
# building a hybrid
# --------------------------------------------------------------------------


@dataclass
class Synthetic:
    """The synthetic source: its CDRs (shifted onto the real window), cells, incidents and origin."""

    cdr: pd.DataFrame
    layout: Layout
    incidents: pa.Table | None
    info: dict[str, Any]
    path: Path


@dataclass
class Built:
    """A hybrid in memory: the table, the manifest, and the exact figures that stay with the
    operator (``private``: never written into the output)."""

    table: pa.Table
    manifest: dict[str, Any]
    private: dict[str, Any] = field(default_factory=dict)


def _day0(t: pd.Series) -> pd.Timestamp:
    return t.min().normalize()


def open_synthetic(run_dir: Path, real_day0: pd.Timestamp, tz: str) -> Synthetic:
    """A run folder as the synthetic source; its records shifted by whole weeks onto the real
    window's first day (weekdays kept)."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file() or not (run_dir / "cdr").is_dir():
        raise ConfigError(f"--synthetic {run_dir}: not a telcosim run folder (needs manifest.json and cdr/; "
                          "write one with 'telcosim run', or give --scenario to run one)")
    cdr, _ = read_cdr_frame(run_dir, "--synthetic")
    cdr["start_time"] = cdr["start_time"].dt.tz_convert(tz)
    days = (real_day0.tz_localize(None) - _day0(cdr.start_time).tz_localize(None)).days if len(cdr) else 0
    weeks = int(round(days / 7))
    if weeks:
        cdr["start_time"] = cdr["start_time"] + pd.Timedelta(days=7 * weeks)
    inc = run_dir / "incidents.parquet"
    m = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    info = {"kind": "run folder", "path": str(run_dir), "scenario": (m.get("scenario") or {}).get("name"),
            "seed": m.get("seed"), "shifted_days": 7 * weeks}
    return Synthetic(cdr, read_layout(run_dir / "cells.parquet"), pq.read_table(inc) if inc.is_file() else None,
                     info, run_dir)


def run_synthetic(scenario: Scenario, real: pd.DataFrame, tz: str, work: Path) -> Synthetic:
    """Run ``scenario`` on the real set's window (its first day, as many days as the real records
    span, the real time zone) through the one run path, into ``work``."""
    day0 = _day0(real.start_time)
    days = max(1, int((real.start_time.max() - day0).days) + 1)
    sc = dataclasses.replace(scenario, time=dataclasses.replace(
        scenario.time, start=day0.tz_localize(None).isoformat(), days=days,
        timezone=tz if tz != "UTC" or scenario.time.timezone == "UTC" else scenario.time.timezone))
    run_scenario(sc, work, overwrite=True)
    syn = open_synthetic(work, day0, tz)
    syn.info = {"kind": "scenario run", "scenario": sc.name, "seed": sc.seed, "start": sc.time.start,
                "days": days, "timezone": sc.time.timezone, "subscribers": sc.population.subscribers}
    return syn


def _margin_codes(df: pd.DataFrame, margin: tuple[str, ...]) -> tuple[np.ndarray, int]:
    sv = strata_values(df, margin)
    code = np.zeros(len(df), np.int64)
    n = 1
    for c in margin:
        vocab = MARGIN_VOCAB[c]
        idx = pd.Index(vocab).get_indexer(sv[c].to_numpy())
        code = code * len(vocab) + idx
        n *= len(vocab)
    return code, n


def _margin_labels(margin: tuple[str, ...]) -> list[str]:
    labels = [""]
    for c in margin:
        labels = [f"{a}{'|' if a else ''}{c}={v}" for a in labels for v in MARGIN_VOCAB[c]]
    return labels


def _take(codes: np.ndarray, targets: dict[int, int], g: np.random.Generator) -> np.ndarray:
    """Row indices: for each code with a target, that many of its rows chosen at random (all of
    them when it has fewer)."""
    want = np.array([targets.get(int(c), 0) for c in codes], np.int64) if len(codes) else np.zeros(0, np.int64)
    u = g.random(len(codes))
    order = np.lexsort((u, codes))
    c = codes[order]
    start = np.r_[0, np.flatnonzero(c[1:] != c[:-1]) + 1] if len(c) else np.zeros(0, np.int64)
    rank = np.arange(len(c)) - np.repeat(start, np.diff(np.r_[start, len(c)]))
    return np.sort(order[rank < want[order]])


def build(real: pd.DataFrame, tz: str, syn: Synthetic, policy: Policy, key: bytes, *, real_layout: Layout,
          releaser: Releaser | None = None, sources: dict[str, Any] | None = None) -> Built:
    """The hybrid of real records ``real`` (from :func:`read_cdr_frame`) and the synthetic source."""
    p = policy
    layout = real_layout if real_layout.cells is not None else syn.layout
    real = coarsen_values(real, p)
    cmap = cell_map(real, p, layout)
    real = apply_cells(real, cmap)
    s_all = apply_cells(coarsen_values(syn.cdr, p), cmap)
    s_all["start_time"] = s_all["start_time"].dt.tz_convert(tz)
    labelled = (s_all["incident_id"].notna().to_numpy() if "incident_id" in s_all else np.zeros(len(s_all), bool))
    s_inc = s_all[labelled] if p.incidents else s_all.iloc[:0]
    s_pool = s_all[~labelled]
    r_code, s_code = stratum_codes([real, s_pool], p.strata)
    per = subscribers_per_stratum(r_code, real.subscriber_id.to_numpy())
    small = per.index[per < p.k].to_numpy()
    keep = ~np.isin(r_code, small)
    kept = real[keep]
    kept_codes = np.unique(r_code[keep])

    # the DP release: capped real rows per margin cell
    releaser = releaser or Releaser(p.epsilon, p.delta, {DP_TARGET: ("real", 1)})
    rows = cap_rows(real.subscriber_id.to_numpy(), p.max_rows_per_subscriber,
                    order=real.start_time.astype("int64").to_numpy())
    m_all, n_m = _margin_codes(real.iloc[rows], p.margin)
    noisy = releaser.target(DP_TARGET).histogram("records_per_margin_cell", m_all, n_m, p.max_rows_per_subscriber)

    # the fill: strata of the synthetic pool with no real record kept
    empty = ~np.isin(s_code, kept_codes)
    syn_per = pd.Series(s_code[empty]).value_counts()
    targets: dict[int, int] = {}
    if p.fill == "subset":
        both = np.isin(s_code, kept_codes).sum()
        ratio = len(kept) / both if both else 0.0
        targets = {int(c): int(round(n * ratio)) for c, n in syn_per.items()}
        sizing = {"mode": "subset", "ratio_real_to_synthetic": ratio,
                  "rule": "each empty stratum: its synthetic records x (real records kept / synthetic records in "
                          "the strata with real records kept)"}
    else:
        s_m, _ = _margin_codes(s_pool, p.margin)
        k_m = np.bincount(_margin_codes(kept, p.margin)[0], minlength=n_m)
        deficit = np.maximum(0.0, noisy - k_m)
        e = pd.DataFrame({"s": s_code[empty], "m": s_m[empty]}).groupby(["m", "s"]).size().reset_index(name="n")
        e["share"] = e.n / e.groupby("m").n.transform("sum")
        e["t"] = np.round(e.share * deficit[e.m.to_numpy()]).astype(np.int64)
        targets = dict(zip(e.s.tolist(), e.t.tolist(), strict=True))
        sizing = {"mode": "dp", "rule": "each margin cell: max(0, DP-released real records - real records kept), "
                  "shared over its empty strata in proportion to the synthetic records in each"}
    g = generator(p.seed, "hybrid.fill")
    take = _take(s_code, targets, g) if len(s_code) else np.zeros(0, np.int64)
    fill = s_pool.iloc[take]
    wanted = int(sum(targets.values()))

    # ids, schema, one table
    avoid = np.r_[real.subscriber_id.to_numpy(np.int64), real.counterpart_id.dropna().to_numpy(np.int64)]
    rk = Rekeyer(key, avoid)
    parts = []
    for frame, prov in ((kept, "real"), (fill, "synthetic"), (s_inc, "synthetic")):
        f = frame.copy()
        f["subscriber_id"] = rk.ids(prov, f.subscriber_id.to_numpy())
        cp = f.counterpart_id
        ok = cp.notna().to_numpy() & (prov == "synthetic" or p.counterparts == "rekey")
        new = np.full(len(f), -1, np.int64)
        new[ok] = rk.ids(prov, cp[ok].to_numpy(np.int64))
        f["counterpart_id"] = pd.Series(new, index=f.index, dtype="Int64").mask(~ok)
        f["provenance"] = prov
        if prov == "real":  # incident_id labels the synthetic incidents only (their ids are the synthetic run's)
            f["incident_id"] = np.nan
        parts.append(f)
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values(["start_time", "provenance", "subscriber_id"], kind="stable").reset_index(drop=True)
    out["record_id"] = np.arange(len(out), dtype=np.int64)
    if "session_id" in out:
        key_s = out.provenance.astype(str) + ":" + out.session_id.astype(str)
        out["session_id"] = pd.factorize(key_s)[0].astype(np.int64)
    table = _to_table(out, tz)

    n_real, n_syn = len(kept), len(fill) + len(s_inc)
    manifest = {
        "tool": "telcosim hybrid", "version": __version__,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "policy": p.to_toml_dict(), "k": p.k, "stratum_columns": list(p.strata),
        "privacy": {"epsilon": p.epsilon, "delta": p.delta, "ledger": releaser.ledger.to_json(),
                    "dp_release": {"target": DP_TARGET, "margin": list(p.margin),
                                   "max_rows_per_subscriber": p.max_rows_per_subscriber,
                                   "records_per_margin_cell": dict(zip(_margin_labels(p.margin),
                                                                       [float(v) for v in noisy], strict=True))},
                    "key": None, "ids": "subscriber_id and counterpart_id: HMAC-SHA256 of (provenance, id), 31 bits, "
                                        "re-drawn on a collision; no output id equals an input id; record_id and "
                                        "session_id renumbered"},
        "rows": {"real": n_real, "synthetic": n_syn, "synthetic_fill": len(fill), "synthetic_incidents": len(s_inc),
                 "total": n_real + n_syn},
        "subscribers": {"real": int(kept.subscriber_id.nunique()),
                        "synthetic": int(pd.concat([fill.subscriber_id, s_inc.subscriber_id]).nunique())},
        "strata": {"kept_with_real_records": int(len(kept_codes)), "suppressed": int(len(small)),
                   "suppressed_note": "exact count of real strata with 1..k-1 distinct subscribers; not covered by "
                                      "the DP ledger (every other figure here is either DP or visible in the data)",
                   "filled": int(sum(1 for v in targets.values() if v > 0)),
                   "fill_records_wanted": wanted, "fill_records_short": wanted - len(fill)},
        "cells_merged": {"to_site": int(sum(v != OTHER_CELL for v in cmap.values())),
                         "to_other": int(sum(v == OTHER_CELL for v in cmap.values())), "other_cell_id": OTHER_CELL},
        "fill": sizing, "incidents": {"included": p.incidents, "records": len(s_inc),
                                      "real_labels": "dropped: incident_id labels the synthetic source's incidents "
                                                     "only (incidents.parquet)",
                                      "labelled_incidents": int(s_inc.incident_id.nunique()) if len(s_inc) else 0},
        "sources": {"real": None, "synthetic": syn.info, **(sources or {})},
        "columns_added": {"provenance": "real | synthetic"},
        "time_zone": tz,
    }
    private = {"suppressed_records": int((~keep).sum()), "real_records_in": len(real)}
    return Built(table, manifest, private)


def _to_table(df: pd.DataFrame, tz: str) -> pa.Table:
    schema = cdr_schema(tz)
    fields = [schema.field(n) for n in schema.names if n in df.columns]
    if "incident_id" not in [f.name for f in fields]:
        fields.append(schema.field("incident_id"))
    arrays = []
    for f in fields:
        col = df[f.name]
        if pa.types.is_dictionary(f.type):
            arrays.append(pa.array(col.astype(object).where(col.notna(), None).tolist(), pa.string()).dictionary_encode()
                          .cast(f.type))
        elif pa.types.is_timestamp(f.type):
            arrays.append(pa.array(col.dt.tz_convert(tz), type=f.type))
        else:
            arrays.append(pa.array(col.astype(object).where(col.notna(), None).tolist(), type=f.type))
    fields.append(pa.field("provenance", pa.dictionary(pa.int8(), pa.string()), nullable=False,
                           metadata={"unit": "", "doc": "real (a governed real record) | synthetic"}))
    arrays.append(pa.array(df.provenance.tolist(), pa.string()).dictionary_encode().cast(fields[-1].type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def hybrid(real_path: str | Path, out: str | Path, *, synthetic: str | Path | None = None,
           scenario: Scenario | None = None, policy: Policy | None = None, key_file: str | Path | None = None,
           cells: str | Path | None = None, overwrite: bool = False) -> Built:
    """Write the hybrid of the real CDRs at ``real_path`` and a synthetic source (a run folder
    ``synthetic``, or a ``scenario`` run on the real window) into the folder ``out``: ``cdr/``,
    ``incidents.parquet`` (when incidents came along), ``cells.parquet`` (the layout, when known)
    and ``manifest.json``. Returns the :class:`Built` (its ``private`` figures are not written)."""
    policy = policy or Policy()
    out = Path(out)
    if (synthetic is None) == (scenario is None):
        raise ConfigError("give exactly one synthetic source: --synthetic RUN_FOLDER or --scenario NAME_OR_TOML")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} exists and is not empty (use --overwrite to replace it)")
    key, key_note = read_key(key_file)
    real, tz = read_cdr_frame(Path(real_path), "--real")
    if not len(real):
        raise DataError(f"--real {real_path}: no records")
    layout_path = Path(cells) if cells is not None else Path(real_path) / "cells.parquet"
    if cells is not None and not layout_path.is_file():
        raise ConfigError(f"--cells {cells}: no such file (a Parquet cell layout with cell_id, site_id[, lat, lon])")
    real_layout = read_layout(layout_path)
    tmp = staging_folder(out, "hybrid folder")
    try:
        if synthetic is not None:
            syn = open_synthetic(Path(synthetic), _day0(real.start_time), tz)
        else:
            syn = run_synthetic(scenario, real, tz, tmp / "_synthetic")
        b = build(real, tz, syn, policy, key, real_layout=real_layout)
        b.manifest["privacy"]["key"] = key_note
        b.manifest["sources"]["real"] = {"path": str(real_path), "cells": real_layout.source}
        shutil.rmtree(tmp / "_synthetic", ignore_errors=True)
        (tmp / "cdr").mkdir()
        pq.write_table(b.table, tmp / "cdr" / "part-00000.parquet", compression="zstd")
        layout = real_layout if real_layout.cells is not None else syn.layout
        if layout.cells is not None:
            pq.write_table(pa.Table.from_pandas(layout.cells.reset_index(), preserve_index=False),
                           tmp / "cells.parquet")
        if policy.incidents and syn.incidents is not None and b.manifest["incidents"]["records"]:
            ids = set(pc_unique(b.table))
            inc = syn.incidents.filter(pa.array([i in ids for i in syn.incidents.column("incident_id").to_pylist()]))
            pq.write_table(inc, tmp / "incidents.parquet")
        (tmp / "manifest.json").write_text(json.dumps(b.manifest, indent=2, default=str) + "\n", encoding="utf-8")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return b


def pc_unique(table: pa.Table) -> list[int]:
    v = table.column("incident_id").drop_null().unique().to_pylist()
    return [int(x) for x in v]


# --------------------------------------------------------------------------
# evaluation: fidelity and privacy, hybrid and synthetic-only against the full real set
# --------------------------------------------------------------------------


def cdr_synthetic(df: pd.DataFrame, label: str, info: dict[str, Any]) -> F.Synthetic:
    """Fidelity figures of a CDR frame (no locations or KPIs: the CDR metrics only)."""
    c = _cdr_table(df, label)
    window = F.cdr_window(c)
    feats = F.cdr_features(c, window)
    return F.Synthetic(label, {"path": label, "scenario": info.get("scenario"), "seed": info.get("seed"),
                               "subscribers": int(df.subscriber_id.nunique()), "cells": int(df.cell_id.nunique()),
                               "days": window.hours // 24, "window": None, "cdr_rows": len(df),
                               "profile": None, "profile_gate": None}, feats, dict(feats), window)


def _cdr_table(df: pd.DataFrame, label: str) -> R.CdrTable:
    st = df.start_time.dt.tz_localize(None).to_numpy(dtype="datetime64[ms]")
    return R.CdrTable(path=label, subscriber_id=df.subscriber_id.to_numpy(np.int64),
                      counterpart_id=df.counterpart_id.fillna(-1).to_numpy(np.int64),
                      service=df.service.astype(str).to_numpy(), direction=df.direction.astype(str).to_numpy(),
                      outcome=df.outcome.astype(str).to_numpy(), start_time=st,
                      duration_s=df.duration_s.to_numpy(float), cell_id=df.cell_id.to_numpy(np.int64),
                      time_zone=str(df.start_time.dt.tz))


def _locations(df: pd.DataFrame, pos: pd.DataFrame, label: str) -> R.LocationTraces:
    """CDRs as location fixes: a record at its start cell's site position (records in cells
    without a position, e.g. the merged "other" cell, are left out)."""
    p = pos.reindex(df.cell_id.to_numpy())
    ok = p.lat.notna().to_numpy()
    d = pd.DataFrame({"user": df.subscriber_id.to_numpy()[ok].astype(str),
                      "time": df.start_time.dt.tz_localize(None).to_numpy(dtype="datetime64[s]")[ok],
                      "lat": p.lat.to_numpy()[ok], "lon": p.lon.to_numpy()[ok]})
    d = d.sort_values(["user", "time"], kind="stable")
    users = sorted(d.user.unique())
    code = pd.Categorical(d.user, categories=users).codes.astype(np.int64)
    return R.LocationTraces(path=label, users=users, user=code, time=d.time.to_numpy(dtype="datetime64[s]"),
                            lat=d.lat.to_numpy(), lon=d.lon.to_numpy(), accuracy=np.zeros(len(d)),
                            time_zone="local")


def _trajectories_like(real_loc: R.LocationTraces, loc: R.LocationTraces) -> A.Trajectories:
    """``loc`` as trajectories in the frame of the real set (its median position as origin), so a
    record copied from the real set lands on the very same point."""
    lat0 = float(np.median(real_loc.lat))
    rx = real_loc.lon * A.KM_PER_DEG * math.cos(math.radians(lat0))
    ry = real_loc.lat * A.KM_PER_DEG
    x = loc.lon * A.KM_PER_DEG * math.cos(math.radians(lat0)) - np.median(rx)
    y = loc.lat * A.KM_PER_DEG - np.median(ry)
    return A.Trajectories(loc.path, list(loc.users), loc.user, loc.time.astype("datetime64[s]"), x, y,
                          np.ones(len(loc.user), bool))


def read_hybrid(hybrid_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The records and manifest of a hybrid folder written by :func:`hybrid`."""
    hybrid_dir = Path(hybrid_dir)
    mf = hybrid_dir / "manifest.json"
    if not mf.is_file() or not (hybrid_dir / "cdr").is_dir():
        raise ConfigError(f"{hybrid_dir}: not a hybrid folder (needs manifest.json and cdr/; write one with "
                          "'telcosim hybrid')")
    manifest = json.loads(mf.read_text(encoding="utf-8"))
    if manifest.get("tool") != "telcosim hybrid":
        raise ConfigError(f"{mf}: tool: {manifest.get('tool')!r} is not 'telcosim hybrid'")
    t = pq.read_table(hybrid_dir / "cdr", partitioning=None)
    df = t.to_pandas()
    for name in ("service", "direction", "outcome", "provenance"):
        df[name] = df[name].astype(str)
    df["start_time"] = pd.Series(df.start_time).dt.tz_convert(manifest["time_zone"])
    return df, manifest


def evaluate_hybrid(hybrid_dir: str | Path, real_path: str | Path, synthetic: str | Path, out: str | Path, *,
                    key_file: str | Path | None = None, cells: str | Path | None = None,
                    n_attacks: int = A.N_ATTACKS, split_seed: int = A.SPLIT_SEED) -> dict[str, Any]:
    """Fidelity and privacy of the hybrid in ``hybrid_dir`` and of the synthetic run alone, both
    against the full real set: ``out/hybrid/`` and ``out/synthetic/`` (metrics.json and
    report.html each, the privacy section included) and ``out/comparison.json``.

    The attacks need a hybrid built from half of the real subscribers only (the training half;
    the other half is the control), so the privacy figures come from that half-hybrid, built with
    the hybrid's own policy (from its manifest) and the same synthetic source; the fidelity
    figures from the hybrid itself. Keep ``out`` apart from the hybrid: it holds figures of the
    full real set."""
    hyb, manifest = read_hybrid(Path(hybrid_dir))
    policy = policy_from_dict(manifest["policy"], f"{hybrid_dir}/manifest.json: policy")
    key, _ = read_key(key_file)
    real, tz = read_cdr_frame(Path(real_path), "--real")
    layout_path = Path(cells) if cells is not None else Path(real_path) / "cells.parquet"
    real_layout = read_layout(layout_path)
    syn = open_synthetic(Path(synthetic), _day0(real.start_time), tz)
    real_cdr = _cdr_table(real, f"{real_path}")
    if (Path(real_path) / "cells.parquet").is_file():
        real_cdr = dataclasses.replace(real_cdr, cells=pq.read_table(Path(real_path) / "cells.parquet",
                                                                     columns=["cell_id"]).column("cell_id").to_numpy())
    out = Path(out)
    docs: dict[str, dict] = {}
    sets = {"hybrid": (hyb, {"scenario": f"hybrid {Path(hybrid_dir).name}", "seed": policy.seed}),
            "synthetic": (syn.cdr, syn.info)}
    for name, (df, info) in sets.items():
        s = cdr_synthetic(df, f"{name}: {hybrid_dir if name == 'hybrid' else synthetic}", info)
        docs[name] = F.evaluate(Path(name), [real_cdr], synthetic=s, part="all")

    layout = real_layout if real_layout.cells is not None else syn.layout
    privacy: dict[str, Any] = {}
    if layout.cells is None or not {"lat", "lon"} <= set(layout.cells.columns):
        for name in sets:
            docs[name]["privacy_note"] = ("privacy attacks not evaluated: no cell positions (give --cells with "
                                          "cell_id, site_id, lat, lon)")
    else:
        pos = layout.cells[["lat", "lon"]]
        pos = pd.concat([pos, syn.layout.cells[["lat", "lon"]]]) if syn.layout.cells is not None else pos
        pos = pos[~pos.index.duplicated()]
        real_loc = _locations(real, pos, str(real_path))
        tr_p, _ = A.split_persons(A.from_location_traces(real_loc), split_seed)
        train_ids = np.array([int(real_loc.users[i]) for i in tr_p], np.int64)
        half = build(real[real.subscriber_id.isin(train_ids)], tz, syn, policy, key, real_layout=real_layout)
        hdf = half.table.to_pandas()
        hdf["start_time"] = pd.Series(hdf.start_time).dt.tz_convert(tz)
        led = {"privacy_ledger": {"file": f"{hybrid_dir}/manifest.json", "ledger": manifest["privacy"]["ledger"]}}
        for name, df, man in (("hybrid", hdf, led), ("synthetic", syn.cdr, None)):
            tr = _trajectories_like(real_loc, _locations(df, pos, name))
            p = A.evaluate_privacy(real_loc, tr, split_seed=split_seed, manifest=man, canary_trials=0,
                                   n_attacks=n_attacks)
            if name == "hybrid":
                p["note"] = ("attacks on a hybrid built, with the same policy, key and synthetic source, from the "
                             "training half of the real subscribers only")
            docs[name]["privacy"] = privacy[name] = p
    for name, doc in docs.items():
        write_report(doc, out / name)
    comparison = _comparison(docs, manifest)
    tmp = out / ".comparison.json.partial"
    tmp.write_text(json.dumps(comparison, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(out / "comparison.json")
    return comparison


def _comparison(docs: dict[str, dict], manifest: dict) -> dict[str, Any]:
    """Side by side: each metric's distance and status, hybrid against synthetic-only; privacy headlines."""
    metrics = {}
    for name in docs["hybrid"]["metrics"]:
        h, s = docs["hybrid"]["metrics"][name], docs["synthetic"]["metrics"][name]
        if h["status"] == "not_evaluated" and s["status"] == "not_evaluated":
            continue
        metrics[name] = {"tolerance": h["tolerance"], "real": h["real"],
                         "hybrid": {"value": h["synthetic"], "distance": h["distance"], "status": h["status"]},
                         "synthetic": {"value": s["synthetic"], "distance": s["distance"], "status": s["status"]}}
    out: dict[str, Any] = {"metrics": metrics,
                           "summary": {k: {"passed": d["summary"]["passed"], "evaluated": d["summary"]["evaluated"]}
                                       for k, d in docs.items()},
                           "hybrid_rows": manifest["rows"], "policy": manifest["policy"]}
    priv = {}
    for k, d in docs.items():
        p = d.get("privacy")
        if p is None:
            priv[k] = {"note": d.get("privacy_note")}
            continue
        priv[k] = {"mia_auc": p["mia"]["auc"], "mia_auc_ci": p["mia"]["auc_ci"],
                   "mia_person_level_auc": p["mia"]["person_level_auc"], "mia_status": p["mia"]["status"],
                   "dcr_share_closer_to_training": p["dcr"]["share_closer_to_training"],
                   "linkability_risk": p["linkability"]["risk"]["value"],
                   "singling_out_risk": p["singling_out"]["multivariate"]["risk"]["value"],
                   "inference_risk": {s: v["risk"]["value"] for s, v in p["inference"]["secrets"].items()},
                   "unicity_match_share": p["unicity"]["synthetic"]["match_share"],
                   "high_risk": p["summary"]["high_risk"]}
    out["privacy"] = priv
    return out


__all__ = ["FILL_MODES", "KEYS", "OTHER_CELL", "Policy", "STRATUM_COLUMNS", "Built", "build", "evaluate_hybrid",
           "hybrid", "load_policy", "policy_from_dict", "read_cdr_frame", "read_hybrid", "read_key"]
