"""Fit and check parts of a real set, split by its natural unit.

Fidelity is earned out of sample: calibration (``telcosim targets``, ``calibration/derive_defaults``)
fits on the *fit* part of a real set, evaluation (``telcosim evaluate``) judges on the *check* part.
Each unit (a Milan square, an LTE cell's 28-day block, a drive trace, a StudentLife user, a
Copenhagen person, a CDR subscriber) goes to the check part when a SHA-256 of ``salt:unit`` falls
below ``CHECK_SHARE``. The part of a unit therefore depends on its own id alone: it does not move
when other units are added or removed, and the same id lands in the same part in every tool and
every session. Published aggregates (Nodobo shares) have no rows to split and are used whole by
both sides, which :func:`describe` says.

The salt and share are recorded in what each tool writes (targets.json, metrics.json) so that a
reader can tell which rows a figure came from.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd

PARTS = ("fit", "check", "all")
SALT = "telcosim-holdout-1"
CHECK_SHARE = 1.0 / 3.0
CELL_BLOCK_DAYS = 28  # an LTE cell's series is cut into blocks of 4 weeks; the unit is (cell, block)

UNIT_NAMES = {"activity": "area (column)", "cells": f"cell and {CELL_BLOCK_DAYS}-day time block",
              "drive": "trace (one trace = one person) or user", "locations": "user",
              "edges": "person (as caller / sender)", "cdr": "subscriber", "shares": None}


class SplitError(ValueError):
    """A part that cannot be formed (unknown part, or no unit of a set falls in it)."""


def in_check(units, salt: str = SALT, share: float = CHECK_SHARE) -> np.ndarray:
    """Boolean mask: which of ``units`` (ids, any type with a stable ``str``) are in the check part."""
    out = np.empty(len(units), dtype=bool)
    for i, u in enumerate(units):
        h = hashlib.sha256(f"{salt}:{u}".encode()).digest()
        out[i] = int.from_bytes(h[:8], "big") / 2.0**64 < share
    return out


def _keep(units, part: str, salt: str, share: float) -> np.ndarray:
    if part == "all":
        return np.ones(len(units), dtype=bool)
    m = in_check(units, salt, share)
    return m if part == "check" else ~m


def cell_blocks(series: pd.Series, start: pd.Timestamp) -> np.ndarray:
    """The 28-day block index of each row of a cell series, counted from ``start``."""
    return np.asarray((series.index - start).days // CELL_BLOCK_DAYS)


def _cells_start(ds) -> pd.Timestamp:
    return min(s.index.min() for s in ds.series.values()).normalize()


def units_of(ds) -> np.ndarray | None:
    """The natural units of a reader object, as str ids (None for published aggregates)."""
    kind = ds.kind
    if kind == "activity":
        return np.asarray([str(c) for c in ds.load.columns], dtype=object)
    if kind == "cells":
        start = _cells_start(ds)
        return np.asarray([f"{cell}:{b}" for cell, s in ds.series.items() for b in np.unique(cell_blocks(s, start))],
                          dtype=object)
    if kind == "drive":
        return np.asarray(sorted({t.unit for t in ds.traces}), dtype=object)
    if kind == "locations":
        return np.asarray([str(u) for u in ds.users], dtype=object)
    if kind == "edges":
        src = [ds.calls.source] + ([ds.sms.source] if ds.sms is not None else [])
        return np.asarray(sorted(set(pd.concat(src).astype(str))), dtype=object)
    if kind == "cdr":
        return np.asarray([str(s) for s in np.unique(ds.subscriber_id)], dtype=object)
    if kind == "shares":
        return None
    raise SplitError(f"unknown kind of real set {kind!r}")


def select(ds, part: str, salt: str = SALT, share: float = CHECK_SHARE):
    """The same reader object restricted to one part (``fit``, ``check`` or ``all``).

    Published aggregates are returned whole. Raises :class:`SplitError` when the part would be
    empty (a set with too few units to split: use ``all``)."""
    if part not in PARTS:
        raise SplitError(f"part {part!r}: expected one of {', '.join(PARTS)}")
    if part == "all" or ds.kind == "shares":
        return ds
    units = units_of(ds)
    keep = set(units[_keep(units, part, salt, share)])
    if not keep:
        raise SplitError(f"{ds.path}: none of its {len(units)} {UNIT_NAMES[ds.kind]} units falls in the {part} "
                         f"part; use the part 'all' for a set this small")
    k = ds.kind
    if k == "activity":
        return dataclasses.replace(ds, load=ds.load[[c for c in ds.load.columns if str(c) in keep]])
    if k == "cells":
        start = _cells_start(ds)
        series = {}
        for cell, s in ds.series.items():
            m = np.isin(np.array([f"{cell}:{b}" for b in cell_blocks(s, start)], dtype=object), list(keep))
            if m.any():
                series[cell] = s[m]
        return dataclasses.replace(ds, series=series)
    if k == "drive":
        return dataclasses.replace(ds, traces=[t for t in ds.traces if t.unit in keep])
    if k == "locations":
        codes = np.asarray([i for i, u in enumerate(ds.users) if str(u) in keep])
        rows = np.isin(ds.user, codes)
        remap = np.full(len(ds.users), -1, dtype=ds.user.dtype)
        remap[codes] = np.arange(len(codes), dtype=ds.user.dtype)
        return dataclasses.replace(ds, users=[ds.users[i] for i in codes], user=remap[ds.user[rows]],
                                   time=ds.time[rows], lat=ds.lat[rows], lon=ds.lon[rows],
                                   accuracy=ds.accuracy[rows])
    if k == "edges":
        calls = ds.calls[ds.calls.source.astype(str).isin(keep)].reset_index(drop=True)
        sms = None if ds.sms is None else ds.sms[ds.sms.source.astype(str).isin(keep)].reset_index(drop=True)
        return dataclasses.replace(ds, calls=calls, sms=sms)
    if k == "cdr":
        m = np.isin(ds.subscriber_id.astype(str), list(keep))
        cols = ("subscriber_id", "counterpart_id", "service", "direction", "outcome", "start_time", "duration_s",
                "cell_id")
        return dataclasses.replace(ds, **{c: getattr(ds, c)[m] for c in cols})
    raise SplitError(f"unknown kind of real set {k!r}")


def describe(ds, part: str, salt: str = SALT, share: float = CHECK_SHARE) -> dict:
    """What a part of a set is, for a manifest: unit, salt, share and unit counts per part."""
    units = units_of(ds)
    if units is None:
        return {"part": "all", "unit": None, "note": "published aggregates: no rows to split, used whole"}
    m = in_check(units, salt, share)
    return {"part": part, "unit": UNIT_NAMES[ds.kind], "salt": salt, "check_share": round(share, 6),
            "units_fit": int((~m).sum()), "units_check": int(m.sum())}
