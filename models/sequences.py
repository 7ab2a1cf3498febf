"""A conditional autoregressive transformer over subscriber-days of events (registered as ``"sequences"``).

Each subscriber-day is a sequence of events; each event is a tuple of tokens (:data:`FIELDS`):

* ``service`` voice | sms | data (and ``END``, the end of the day),
* ``direction`` mo | mt,
* ``gap`` the time since the previous event (the first: since local midnight), in :data:`GAP_EDGES` bins,
* ``moved`` 1 when the serving cell differs from the previous event's (the first event: from home),
* ``place`` which of the day's distinct cells serves it (0 the first seen, 1 the second, ...; capped),
* ``cell_class`` the density class of the serving cell (urban | suburban | rural),
* ``size`` the duration (voice, s) or volume (data, bytes) in :data:`VOICE_EDGES` / :data:`DATA_EDGES`
  bins; 0 for an SMS and for a call that did not connect.

Control tokens, summed into the first position, say what to generate (:data:`CONTROLS`): the
subscriber's segment (activity class), the day type (weekday | weekend), the density class of the
home cell and the incident context (none | incident: a record of the day carries an ``incident_id``).

A small causal transformer (``torch.nn.TransformerEncoder`` with a causal mask) reads the control
position, then each event as the sum of its fields' embeddings, its position and the hour of day it
happened; at every position it predicts the next event, field by field: each field's head sees the
transformer's state plus the embeddings of the fields of that event already chosen (service first),
so that a size bin is read as a duration for a call and as a volume for a data session. Sampling is
autoregressive on the CPU with a seeded ``torch.Generator``, conditioned on given controls, until
``END``, the end of the day or ``max_len`` events; the sampler keeps the tokens consistent (an event
that did not move keeps the previous place and class; a revisited place keeps its class).

:func:`sequence_arrays` turns a run folder (or any CDR set in telcosim's schema with its cells and,
where available, subscribers tables) into the training arrays; :func:`split_by_subscriber` holds out
whole subscribers; :func:`day_features` gives the per-subscriber-day feature vectors used by
:func:`prdc` and :func:`closest_distances`; :func:`to_cdr` writes sampled days as CDR-schema rows;
:func:`population_rates` draws per-subscriber per-service rates for a simulation
(``population.sequence_model``). Torch is imported lazily, as :mod:`models.base` requires.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
import zoneinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from telcosim.sim.schema import (
    ACTIVITY_CLASSES,
    DENSITY_CLASSES,
    DIRECTIONS,
    SERVICES,
    cdr_schema,
    dictionary_array,
)

from .base import LearnedGenerator, ModelError, _check_seed, register

FIELDS = ("service", "direction", "gap", "moved", "place", "cell_class", "size")
END = len(SERVICES)  # the service token that ends a day
# time since the previous event (s): bin i is [GAP_EDGES[i], GAP_EDGES[i + 1])
GAP_EDGES = (0, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 5400, 7200, 10800, 14400, 21600, 28800,
             43200, 86400)
# size bins 1..9 of a connected call (s) and of a data session (bytes, up + down); bin 0 is "nothing"
VOICE_EDGES = (1.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0, 10800.0)
DATA_EDGES = (1e3, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 3e9)
N_SIZE = len(VOICE_EDGES)  # 0 plus 9 bins
N_PLACE = 12  # distinct cells of a day told apart; the 12th and later all read as place 11
VOCAB = {"service": len(SERVICES) + 1, "direction": len(DIRECTIONS), "gap": len(GAP_EDGES) - 1, "moved": 2,
         "place": N_PLACE, "cell_class": len(DENSITY_CLASSES), "size": N_SIZE}
CONTROLS = {"segment": ACTIVITY_CLASSES, "day": ("weekday", "weekend"), "density": DENSITY_CLASSES,
            "incident": ("none", "incident")}
# Data-session duration of a sampled record, from public defaults: transfer at the simulator's
# network.ue_peak_mbps (50 Mbps) plus its RRC inactivity tail, 11.576 s (Huang et al., MobiSys 2012).
DATA_RATE_BPS = 50e6
RRC_TAIL_S = 11.576
UPLINK_SHARE = 0.1  # behaviour.data_uplink_share's default: bytes_up of a sampled data session
FEATURES = ("voice", "sms", "data", "active_hours", "first_hour", "last_hour", "voice_seconds", "data_bytes",
            "distinct_cells", "moves")


# --------------------------------------------------------------------------
# CDRs -> token arrays
# --------------------------------------------------------------------------


def _size_bin(service: np.ndarray, value: np.ndarray) -> np.ndarray:
    out = np.zeros(len(value), np.int8)
    v = service == 0
    d = service == 2
    out[v & (value > 0)] = np.clip(np.searchsorted(VOICE_EDGES[1:-1], value[v & (value > 0)], side="right") + 1,
                                   1, N_SIZE - 1)
    out[d & (value > 0)] = np.clip(np.searchsorted(DATA_EDGES[1:-1], value[d & (value > 0)], side="right") + 1,
                                   1, N_SIZE - 1)
    return out


def _gap_bin(gap: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(GAP_EDGES, gap, side="right") - 1, 0, len(GAP_EDGES) - 2).astype(np.int8)


def _codes(col: pa.ChunkedArray, vocab: tuple, what: str) -> np.ndarray:
    names = np.asarray(pc.cast(col, pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    lookup = {v: i for i, v in enumerate(vocab)}
    out = np.array([lookup.get(x, -1) for x in names], np.int64) if len(names) else np.zeros(0, np.int64)
    if (out < 0).any():
        bad = names[out < 0][0]
        raise ModelError(f"{what}: {bad!r} is not one of {', '.join(vocab)}")
    return out


def _read(path: Path, columns: list[str], what: str) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except Exception as exc:  # pyarrow raises several kinds for unreadable or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot read the {what}: {first}") from None


def sequence_arrays(run_dir: str | Path, max_len: int = 128) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The training arrays of a run folder (``cdr/`` in telcosim's schema, ``cells.parquet``, and
    ``subscribers.parquet`` where there is one), one row per subscriber-day, and their context.

    Arrays (same first dimension): ``controls`` (int8, rows x 4: :data:`CONTROLS` codes),
    ``events`` (int8, rows x ``max_len`` x 7: :data:`FIELDS` codes, -1 after the day's last event),
    ``seconds`` (float32: seconds since local midnight of each event, -1 padding), ``value``
    (float64: call seconds or data bytes, -1 padding) and ``length`` (int32: events kept; a day with
    more than ``max_len`` events is cut there). Every subscriber of the subscribers table has a row
    for every day of the window, days without events included; without the table, the subscribers
    seen in the CDRs. Context: ``subscriber`` and ``day`` (ISO date) per row, ``timezone``, the
    cells of each density class, ``truncated_days``.

    Segment is the subscriber's ``activity_class``; without a subscribers table it is the class of
    the subscriber's originated events per day over the mean (the same cuts, 0.5 / 1.5 / 4), and
    home is the subscriber's most frequent cell of records between 22:00 and 06:00 (else of all)."""
    run_dir = Path(run_dir)
    if not (run_dir / "cdr").exists() or not (run_dir / "cells.parquet").exists():
        raise ModelError(f"{run_dir}: missing cdr/ or cells.parquet; expected a run folder written by "
                         "'telcosim run' or CDRs in telcosim's schema with their cells table")
    cdr = _read(run_dir / "cdr", ["subscriber_id", "service", "direction", "start_time", "duration_s", "bytes_up",
                                  "bytes_down", "cell_id", "incident_id"], "CDRs")
    cells = _read(run_dir / "cells.parquet", ["cell_id", "density"], "cells table")
    tz = cdr.schema.field("start_time").type.tz or "UTC"
    cell_id = cells.column("cell_id").to_numpy().astype(np.int64)
    cell_cls_codes = _codes(cells.column("density"), DENSITY_CLASSES, f"{run_dir / 'cells.parquet'}: column 'density'")
    cell_class = np.full(int(cell_id.max()) + 1 if len(cell_id) else 1, -1, np.int64)
    cell_class[cell_id] = cell_cls_codes

    sub = cdr.column("subscriber_id").to_numpy().astype(np.int64)
    svc = _codes(cdr.column("service"), SERVICES, f"{run_dir / 'cdr'}: column 'service'")
    dirn = _codes(cdr.column("direction"), DIRECTIONS, f"{run_dir / 'cdr'}: column 'direction'")
    t_ms = pc.cast(cdr.column("start_time"), pa.int64()).to_numpy()
    cell = cdr.column("cell_id").to_numpy().astype(np.int64)
    if len(cell) and (cell.max() >= len(cell_class) or (cell_class[cell] < 0).any()):
        raise ModelError(f"{run_dir / 'cdr'}: column 'cell_id' names cells not in cells.parquet")
    dur = cdr.column("duration_s").to_numpy().astype(np.float64)
    vol = (cdr.column("bytes_up").fill_null(0).to_numpy().astype(np.float64)
           + cdr.column("bytes_down").fill_null(0).to_numpy().astype(np.float64))
    value = np.where(svc == 0, dur, np.where(svc == 2, vol, 0.0))
    inc = ~np.asarray(cdr.column("incident_id").is_null().to_numpy(zero_copy_only=False), bool)

    # local calendar day and seconds since local midnight
    local = pd.to_datetime(t_ms, unit="ms", utc=True).tz_convert(tz)
    day = np.asarray(local.normalize().tz_localize(None).to_numpy().astype("datetime64[D]"))
    secs = (local.hour.to_numpy() * 3600 + local.minute.to_numpy() * 60 + local.second.to_numpy()
            + (t_ms % 1000) / 1000.0).astype(np.float64)

    # window days: the manifest's, else the days seen
    days = None
    try:
        w = json.loads((run_dir / "manifest.json").read_text())["window"]
        d0 = dt.datetime.fromisoformat(w["start"]).date()
        d1 = dt.datetime.fromisoformat(w["end"]).date()
        days = np.arange(np.datetime64(d0), np.datetime64(d1), dtype="datetime64[D]")
    except (OSError, KeyError, ValueError, TypeError):
        pass
    if days is None or len(days) == 0:
        days = np.unique(day)
    if len(days) == 0:
        raise ModelError(f"{run_dir / 'cdr'}: no records")

    subs_path = run_dir / "subscribers.parquet"
    if subs_path.exists():
        st = _read(subs_path, ["subscriber_id", "home_cell_id", "activity_class"], "subscribers table")
        ids = st.column("subscriber_id").to_numpy().astype(np.int64)
        home = st.column("home_cell_id").to_numpy().astype(np.int64)
        seg = _codes(st.column("activity_class"), ACTIVITY_CLASSES, f"{subs_path}: column 'activity_class'")
    else:
        ids = np.unique(sub)
        pos = np.searchsorted(ids, sub)
        night = (secs >= 22 * 3600) | (secs < 6 * 3600)
        home = np.empty(len(ids), np.int64)
        n_cells = len(cell_class)
        for mask in (np.ones(len(sub), bool), night):  # night overrides where a subscriber has night records
            key = pos[mask] * n_cells + cell[mask]
            uk, cnt = np.unique(key, return_counts=True)
            order = np.lexsort((-cnt, uk // n_cells))
            first = np.ones(len(order), bool)
            first[1:] = (uk // n_cells)[order][1:] != (uk // n_cells)[order][:-1]
            home[(uk // n_cells)[order][first]] = (uk % n_cells)[order][first]
        mo_rate = np.bincount(pos[dirn == 0], minlength=len(ids)) / len(days)
        rel = mo_rate / mo_rate.mean() if mo_rate.mean() > 0 else np.ones(len(ids))
        seg = np.searchsorted((0.5, 1.5, 4.0), rel, side="right")
    order_ids = np.argsort(ids)
    ids, home, seg = ids[order_ids], home[order_ids], seg[order_ids]
    if len(sub) and not np.isin(sub, ids).all():
        raise ModelError(f"{run_dir / 'cdr'}: subscriber_id values not in {subs_path.name}")
    home_cls = np.where(home < len(cell_class), cell_class[np.clip(home, 0, len(cell_class) - 1)], -1)
    if (home_cls < 0).any():
        raise ModelError(f"{subs_path}: column 'home_cell_id' names cells not in cells.parquet")

    n_sub, n_day = len(ids), len(days)
    rows = n_sub * n_day
    r_sub = np.searchsorted(ids, sub)
    r_day = np.searchsorted(days, day)
    in_window = (r_day < n_day) & (days[np.clip(r_day, 0, n_day - 1)] == day)
    row = r_sub * n_day + r_day
    keep = np.flatnonzero(in_window)
    o = keep[np.lexsort((secs[keep], row[keep]))]
    row_o = row[o]
    counts = np.bincount(row_o, minlength=rows)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = np.arange(len(o)) - start[row_o]  # index of the event within its day
    first = k == 0
    prev = np.concatenate([[0], o[:-1]])
    gap = np.where(first, secs[o], secs[o] - secs[prev])
    cell_o = cell[o]
    prev_cell = np.where(first, home[r_sub[o]], cell[prev])
    moved = (cell_o != prev_cell).astype(np.int8)
    # place: rank of the cell's first appearance within the day (events are in time order)
    n_cells = len(cell_class)
    uk, first_i, inv = np.unique(row_o * n_cells + cell_o, return_index=True, return_inverse=True)
    urow = uk // n_cells
    srt = np.lexsort((first_i, urow))
    new_row = np.ones(len(srt), bool)
    new_row[1:] = urow[srt][1:] != urow[srt][:-1]
    group_start = np.maximum.accumulate(np.where(new_row, np.arange(len(srt)), 0))
    rank = np.empty(len(srt), np.int64)
    rank[srt] = np.arange(len(srt)) - group_start
    place = rank[inv.reshape(-1)]
    place = np.minimum(place, N_PLACE - 1)

    L = int(max_len)
    kept = k < L
    events = np.full((rows, L, len(FIELDS)), -1, np.int8)
    seconds = np.full((rows, L), -1.0, np.float32)
    val = np.full((rows, L), -1.0, np.float64)
    r, c = row_o[kept], k[kept]
    ok = o[kept]
    for j, v in enumerate((svc[ok], dirn[ok], _gap_bin(gap[kept]), moved[kept], place[kept],
                           cell_class[cell_o[kept]], _size_bin(svc[ok], value[ok]))):
        events[r, c, j] = v
    seconds[r, c] = secs[ok]
    val[r, c] = value[ok]
    length = np.minimum(counts, L).astype(np.int32)
    incident = np.zeros(rows, np.int8)
    incident[np.unique(row_o[inc[o]])] = 1
    sub_row = np.repeat(np.arange(n_sub), n_day)
    day_row = np.tile(np.arange(n_day), n_sub)
    weekend = (days.astype("datetime64[D]").view("int64") - 4) % 7 >= 5  # 1970-01-01 was a Thursday
    controls = np.stack([seg[sub_row], weekend[day_row].astype(np.int64), home_cls[sub_row], incident],
                        axis=1).astype(np.int8)
    arrays = {"controls": controls, "events": events, "seconds": seconds, "value": val, "length": length}
    context = {"subscriber": ids[sub_row], "day": np.asarray([str(d) for d in days])[day_row], "timezone": tz,
               "cells_by_class": {name: cell_id[cell_cls_codes == i].tolist() for i, name in enumerate(DENSITY_CLASSES)},
               "dates": _dates(days[0]),
               "truncated_days": int((counts > L).sum()), "days": n_day, "subscribers": n_sub}
    return arrays, context


def _dates(first: np.datetime64) -> dict[str, str]:
    """The first weekday and the first weekend day from ``first`` on (where sampled days are placed)."""
    out: dict[str, str] = {}
    for k in range(7):
        d = first + np.timedelta64(k, "D")
        kind = "weekend" if (d.astype("datetime64[D]").view("int64") - 4) % 7 >= 5 else "weekday"
        out.setdefault(kind, str(d))
    return out


def split_by_subscriber(arrays: dict[str, np.ndarray], subscriber: np.ndarray, held_out: float = 0.2,
                        seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """(train, held-out, held-out mask): whole subscribers held out (a share ``held_out`` of them,
    drawn with ``seed``), so no held-out subscriber has a day in the training part."""
    ids = np.unique(subscriber)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(16,)))
    held_ids = rng.choice(ids, size=max(1, int(round(held_out * len(ids)))), replace=False)
    mask = np.isin(subscriber, held_ids)
    return ({k: v[~mask] for k, v in arrays.items()}, {k: v[mask] for k, v in arrays.items()}, mask)


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------


def _net_class():
    import torch  # lazy: torch is optional and slow to import
    from torch import nn

    class SequenceNet(nn.Module):
        """Control position + events -> per-position logits of the next event's fields."""

        def __init__(self, d: int, layers: int, heads: int, max_len: int) -> None:
            super().__init__()
            self.max_len = max_len
            self.ctrl = nn.ModuleList([nn.Embedding(len(v), d) for v in CONTROLS.values()])
            self.field_in = nn.ModuleList([nn.Embedding(VOCAB[f], d) for f in FIELDS])
            self.hour = nn.Embedding(24, d)
            self.pos = nn.Embedding(max_len + 1, d)
            layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=0.0, batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            # within an event, each field's head also sees the embeddings of the fields chosen before it
            self.field_cond = nn.ModuleList([nn.Embedding(VOCAB[f], d) for f in FIELDS[:-1]])
            self.heads = nn.ModuleList([nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, VOCAB[f]))
                                        for f in FIELDS])

        def encode(self, controls, events, hours):
            """controls (B, 4), events (B, T, 7) (no padding codes: clamp first), hours (B, T) ->
            states (B, T + 1, d): position p predicts event p (p = T: what follows the last)."""
            t = events.shape[1]
            x0 = sum(emb(controls[:, i]) for i, emb in enumerate(self.ctrl)).unsqueeze(1)
            if t:
                xe = sum(emb(events[:, :, i]) for i, emb in enumerate(self.field_in)) + self.hour(hours)
                # the controls also enter every event position, not only through attention to the first
                x = torch.cat([x0, xe + x0], dim=1)
            else:
                x = x0
            # positions indexed per row (B, T + 1), so that DP-SGD sees a per-row gradient here too
            x = x + self.pos(torch.arange(t + 1, device=x.device).expand(x.shape[0], t + 1))
            # causal: a large finite negative rather than -inf, so that torch does not take the mask for
            # its own causal form and pass is_causal to the attention (opacus' DP attention refuses it);
            # exp(-1e9) is 0 in float32 all the same
            mask = torch.triu(torch.full((t + 1, t + 1), -1e9, device=x.device), diagonal=1)
            return self.norm(self.encoder(x, mask=mask))

        def head(self, j: int, h, chosen):
            """Logits of field ``j`` from states ``h`` (..., d) and the fields 0..j-1 ``chosen`` (..., >= j)."""
            for i in range(j):
                h = h + self.field_cond[i](chosen[..., i])
            return self.heads[j](h)

        def forward(self, controls, events, hours, targets):
            """Summed cross-entropy per field (mean over each field's valid targets; -1 = ignore)."""
            h = self.encode(controls, events.clamp(min=0), hours)
            chosen = targets.clamp(min=0)
            loss = h.new_zeros(())
            for j in range(len(FIELDS)):
                logits = self.head(j, h, chosen)
                loss = loss + nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                          targets[..., j].reshape(-1).long(), ignore_index=-1)
            return loss

    return SequenceNet


def _targets(events: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Targets (B, T + 1, 7): event p at position p, END (service only) at position length."""
    b, t, f = events.shape
    tg = np.full((b, t + 1, f), -1, np.int64)
    tg[:, :t] = events
    idx = np.arange(t + 1)[None, :]
    end = (idx == length[:, None]) & (length[:, None] < t + 1)
    tg[..., 0][end] = END
    return tg


def _hours(seconds: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(np.maximum(seconds, 0) / 3600.0), 0, 23).astype(np.int64)


# --------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------


@register("sequences")
class SequenceTransformer(LearnedGenerator):
    """The conditional autoregressive transformer over subscriber-days (see the module docstring).

    ``data``: the dict of :func:`sequence_arrays` (``controls``, ``events``, ``seconds``, ``value``,
    ``length``); a sample is the same dict. ``dp = true`` trains with DP-SGD (opacus, RDP
    accountant, ``target_epsilon`` at ``delta``) on one day per subscriber (the rows of a subscriber
    are recognised by ``subscriber`` if given, else every row is its own subscriber), so that the
    guarantee is per subscriber; the control shares of unconditional sampling are then uniform (not
    learned from the data)."""

    defaults = {
        "d_model": 64, "layers": 2, "heads": 4, "max_len": 128, "epochs": 12, "batch_size": 64, "lr": 3e-3,
        "dp": False, "target_epsilon": 8.0, "delta": None, "max_grad_norm": 1.0, "seed": 0,
    }
    tiny_params = {"d_model": 16, "layers": 1, "heads": 2, "max_len": 16, "epochs": 2, "batch_size": 32}
    sources = ("CDRs in telcosim's schema: models.sequences.sequence_arrays (cdr/, cells.parquet, subscribers.parquet)",)

    def _prepare(self, data) -> None:
        need = ("controls", "events", "seconds", "value", "length")
        if not isinstance(data, dict) or any(k not in data for k in need):
            got = ", ".join(data) if isinstance(data, dict) else type(data).__name__
            raise ModelError(f"model 'sequences': training data must be a dict of {', '.join(need)} arrays "
                             f"(models.sequences.sequence_arrays); got {got}")
        ev, ctl = data["events"], data["controls"]
        L = int(self.params["max_len"])
        if ev.ndim != 3 or ev.shape[2] != len(FIELDS):
            raise ModelError(f"model 'sequences': training data key 'events': shape {ev.shape}; expected "
                             f"(rows, max_len, {len(FIELDS)})")
        if ev.shape[1] < L:
            raise ModelError(f"model 'sequences': training data key 'events': {ev.shape[1]} events per row, fewer "
                             f"than hyperparameter max_len = {L}")
        if ctl.ndim != 2 or ctl.shape[1] != len(CONTROLS):
            raise ModelError(f"model 'sequences': training data key 'controls': shape {ctl.shape}; expected "
                             f"(rows, {len(CONTROLS)})")
        for i, (name, vocab) in enumerate(CONTROLS.items()):
            if ctl[:, i].min() < 0 or ctl[:, i].max() >= len(vocab):
                raise ModelError(f"model 'sequences': training data key 'controls': column {name} outside "
                                 f"0..{len(vocab) - 1}")
        for j, f in enumerate(FIELDS):
            v = ev[:, :, j]
            if v.min() < -1 or v.max() >= VOCAB[f]:
                raise ModelError(f"model 'sequences': training data key 'events': field {f} outside "
                                 f"0..{VOCAB[f] - 1} (-1 padding)")
        if self.params["d_model"] % self.params["heads"]:
            raise ModelError(f"model 'sequences': hyperparameter 'd_model' {self.params['d_model']} is not a "
                             f"multiple of 'heads' {self.params['heads']}")
        combos = np.ravel_multi_index(tuple(ctl[:, i].astype(np.int64) for i in range(len(CONTROLS))),
                                      tuple(len(v) for v in CONTROLS.values()))
        counts = np.bincount(combos, minlength=int(np.prod([len(v) for v in CONTROLS.values()])))
        self.spec = {"fields": {f: VOCAB[f] for f in FIELDS}, "controls": {k: list(v) for k, v in CONTROLS.items()},
                     "gap_edges_s": list(GAP_EDGES), "voice_edges_s": list(VOICE_EDGES),
                     "data_edges_bytes": list(DATA_EDGES), "max_len": L,
                     "control_counts": None if self.params["dp"] else counts.tolist(),
                     "truncated_rows": int((np.asarray(data["length"]) >= L).sum()),
                     "privacy_unit": ("one subscriber (one day per subscriber trained on)" if self.params["dp"]
                                      else None)}

    def _build(self):
        import torch  # lazy: torch is optional and slow to import

        p = self.params
        net = _net_class()(int(p["d_model"]), int(p["layers"]), int(p["heads"]), int(p["max_len"]))
        # nn.MultiheadAttention draws its packed input projection from the global RNG (init_parameters
        # covers the Linear and Embedding layers only): draw it again from a generator of the seed
        gen = torch.Generator().manual_seed(int(p["seed"]) ^ 0x5EC5)
        with torch.no_grad():
            for layer in net.encoder.layers:
                torch.nn.init.xavier_uniform_(layer.self_attn.in_proj_weight, generator=gen)
        return net

    # -- training -------------------------------------------------------------------------------
    def _batches(self, data, rows: np.ndarray):
        L = int(self.params["max_len"])
        ln = np.minimum(np.asarray(data["length"])[rows], L)
        t = max(int(ln.max()), 1)
        ev = np.asarray(data["events"])[rows, :t]
        ev = np.where(np.arange(t)[None, :, None] < ln[:, None, None], ev, -1)
        return (np.asarray(data["controls"])[rows].astype(np.int64), ev.astype(np.int64),
                _hours(np.asarray(data["seconds"])[rows, :t]), _targets(ev, ln))

    def _fit(self, data, device, rng) -> None:
        import torch  # lazy: torch is optional and slow to import

        n = len(data["length"])
        opt_params = list(self.module.parameters())
        lr = float(self.params["lr"])
        epochs = int(self.params["epochs"])
        bs = max(1, int(self.params["batch_size"]))
        if self.params["dp"]:
            self._fit_dp(data, device, rng)
            return
        opt = torch.optim.AdamW(opt_params, lr=lr, weight_decay=0.01)
        n_batches = epochs * max(1, -(-n // bs))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=n_batches, pct_start=0.1)
        # batches of days of similar length (less padding), in a random order each epoch
        order_len = np.argsort(np.asarray(data["length"]), kind="stable")
        losses = []
        for _ in range(epochs):
            perm = order_len[np.argsort(np.asarray(data["length"])[order_len] + rng.random(n) * 4, kind="stable")]
            batches = [perm[i:i + bs] for i in range(0, n, bs)]
            tot = 0.0
            for bi in rng.permutation(len(batches)):
                ctl, ev, hr, tg = (torch.as_tensor(a, device=device) for a in self._batches(data, batches[bi]))
                opt.zero_grad()
                loss = self.module(ctl, ev, hr, tg)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(opt_params, 1.0)
                opt.step()
                sched.step()
                tot += float(loss.detach()) * len(batches[bi])
            losses.append(round(tot / n, 5))
        self.history = {"loss": losses}

    def _fit_dp(self, data, device, rng) -> None:
        import torch  # lazy: torch is optional and slow to import
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        subscriber = data.get("subscriber")
        n_all = len(data["length"])
        if subscriber is None:
            rows = np.arange(n_all)
        else:  # one day per subscriber: each row is one person, so the guarantee is per subscriber
            s = np.asarray(subscriber)
            o = np.lexsort((rng.random(n_all), s))
            first = np.ones(n_all, bool)
            first[1:] = s[o][1:] != s[o][:-1]
            rows = np.sort(o[first])
        n = len(rows)
        eps, delta = self._dp_budget(n, "subscribers")
        ctl, ev, hr, tg = (torch.as_tensor(a) for a in self._batches(data, rows))
        # opacus has no per-sample gradients for nn.MultiheadAttention (and its own DPMultiheadAttention
        # refuses a batch-first mask): swap in the same attention built from nn.Linear layers for
        # training, and back afterwards, so that the saved model is the plain one
        d = int(self.params["d_model"])

        class SelfAttention(torch.nn.Module):
            """nn.MultiheadAttention's self-attention (same weights) from two nn.Linear layers, whose
            per-sample gradients opacus computes; nn.MultiheadAttention's own it does not."""

            batch_first = True

            def __init__(self, mha) -> None:
                super().__init__()
                self.heads = mha.num_heads
                self.qkv = torch.nn.Linear(d, 3 * d).to(device)
                self.out_proj = torch.nn.Linear(d, d).to(device)
                with torch.no_grad():
                    self.qkv.weight.copy_(mha.in_proj_weight)
                    self.qkv.bias.copy_(mha.in_proj_bias)
                    self.out_proj.weight.copy_(mha.out_proj.weight)
                    self.out_proj.bias.copy_(mha.out_proj.bias)

            def forward(self, q, k, v, attn_mask=None, key_padding_mask=None, need_weights=False, is_causal=False):
                b, t, _ = q.shape
                x = self.qkv(q).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
                y = torch.nn.functional.scaled_dot_product_attention(x[0], x[1], x[2], attn_mask=attn_mask)
                return self.out_proj(y.transpose(1, 2).reshape(b, t, d)), None

            def plain(self):
                mha = torch.nn.MultiheadAttention(d, self.heads, batch_first=True).to(device)
                with torch.no_grad():
                    mha.in_proj_weight.copy_(self.qkv.weight)
                    mha.in_proj_bias.copy_(self.qkv.bias)
                    mha.out_proj.weight.copy_(self.out_proj.weight)
                    mha.out_proj.bias.copy_(self.out_proj.bias)
                return mha

        for layer in self.module.encoder.layers:
            layer.self_attn = SelfAttention(layer.self_attn)
        seeds = rng.integers(0, 2**62, size=2)
        g_data = torch.Generator().manual_seed(int(seeds[0]))
        g_noise = torch.Generator(device=device).manual_seed(int(seeds[1]))
        loader = DataLoader(TensorDataset(ctl, ev, hr, tg), batch_size=min(int(self.params["batch_size"]), n),
                            shuffle=True, generator=g_data)
        opt = torch.optim.Adam(self.module.parameters(), lr=float(self.params["lr"]))
        epochs = int(self.params["epochs"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # opacus' notes on secure RNG and full backward hooks
            engine = PrivacyEngine(accountant="rdp")
            pmodel, opt, loader = engine.make_private_with_epsilon(
                module=self.module, optimizer=opt, data_loader=loader, target_epsilon=eps, target_delta=delta,
                epochs=epochs, max_grad_norm=float(self.params["max_grad_norm"]), noise_generator=g_noise)
            losses = []
            for _ in range(epochs):
                tot, cnt = 0.0, 0
                for c, e, h, t in loader:
                    if c.shape[0] == 0:
                        continue
                    opt.zero_grad()
                    loss = pmodel(c.to(device), e.to(device), h.to(device), t.to(device))
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * c.shape[0]
                    cnt += c.shape[0]
                losses.append(round(tot / max(cnt, 1), 5))
        self.epsilon = float(engine.get_epsilon(delta))
        self.delta = delta
        self.history = {"loss": losses}
        self.spec.update({"noise_multiplier": float(opt.noise_multiplier), "accountant": "rdp",
                          "dp_rows": n, "max_grad_norm": float(self.params["max_grad_norm"]), "epochs": epochs,
                          "steps": epochs * len(loader), "attention": "nn.Linear self-attention during DP training"})
        if hasattr(pmodel, "_close"):
            pmodel._close()
        for p in self.module.parameters():
            for attr in ("grad_sample", "_forward_counter", "summed_grad"):
                if hasattr(p, attr):
                    delattr(p, attr)
        for layer in self.module.encoder.layers:
            layer.self_attn = layer.self_attn.plain()

    # -- sampling -------------------------------------------------------------------------------
    def _draw_controls(self, n: int, gen, given: dict[str, int] | None = None):
        """``n`` control rows: the given codes, the others drawn from the training shares of the
        control combinations that match them (uniform under DP or when none matches)."""
        import torch  # lazy: torch is optional and slow to import

        sizes = tuple(len(v) for v in CONTROLS.values())
        counts = self.spec.get("control_counts")
        w = np.ones(int(np.prod(sizes))) if counts is None else np.asarray(counts, np.float64)
        grid = np.stack(np.unravel_index(np.arange(len(w)), sizes), axis=1)
        ok = np.ones(len(w), bool)
        for i, name in enumerate(CONTROLS):
            if given and name in given:
                ok &= grid[:, i] == given[name]
        w = np.where(ok, w, 0.0)
        if w.sum() <= 0:
            w = ok.astype(np.float64)
        pick = torch.multinomial(torch.as_tensor(w / w.sum()), n, replacement=True, generator=gen).numpy() if n else \
            np.zeros(0, np.int64)
        return grid[pick].astype(np.int8)

    def _sample(self, n, gen):
        return self._generate(self._draw_controls(n, gen), gen)

    def sample_given(self, controls: np.ndarray, *, seed: int) -> dict[str, np.ndarray]:
        """One day per row of ``controls`` (rows x 4 codes, :data:`CONTROLS` order), seeded."""
        import torch  # lazy: torch is optional and slow to import

        if not self.fitted:
            raise ModelError("model 'sequences': not fitted or loaded; call fit() or load() first")
        gen = torch.Generator(device="cpu").manual_seed(_check_seed(seed))
        self.module.to("cpu").eval()
        with torch.no_grad():
            return self._generate(np.asarray(controls, np.int8).reshape(-1, len(CONTROLS)), gen)

    def sample_condition(self, n: int, condition: dict[str, str], *, seed: int) -> dict[str, np.ndarray]:
        """``n`` days with the named controls fixed (e.g. ``{"day": "weekend", "density": "rural"}``)
        and the others drawn as in training; :func:`parse_condition` checks a condition string."""
        import torch  # lazy: torch is optional and slow to import

        given = {k: CONTROLS[k].index(v) for k, v in condition.items()}
        counts = self.spec.get("control_counts")
        if counts is not None and given:
            sizes = tuple(len(v) for v in CONTROLS.values())
            grid = np.stack(np.unravel_index(np.arange(len(counts)), sizes), axis=1)
            match = np.all([grid[:, list(CONTROLS).index(k)] == c for k, c in given.items()], axis=0)
            if not np.asarray(counts)[match].sum():
                text = ",".join(f"{k}={v}" for k, v in condition.items())
                raise ModelError(f"condition {text}: no training day had it, so the model cannot honour it; "
                                 "train on data with such days or choose another condition")
        seed = _check_seed(seed)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        return self.sample_given(self._draw_controls(int(n), gen, given), seed=seed ^ 0x5A17)

    def _generate(self, controls: np.ndarray, gen) -> dict[str, np.ndarray]:
        import torch  # lazy: torch is optional and slow to import

        net = self.module
        n, L, F = len(controls), int(self.params["max_len"]), len(FIELDS)
        events = torch.zeros((n, L, F), dtype=torch.long)
        secs = torch.zeros((n, L), dtype=torch.float64)
        value = torch.full((n, L), -1.0, dtype=torch.float64)
        length = torch.zeros(n, dtype=torch.long)
        places_cls = torch.full((n, N_PLACE), -1, dtype=torch.long)  # class of each place seen
        n_places = torch.zeros(n, dtype=torch.long)
        active = torch.ones(n, dtype=torch.bool)
        ctl = torch.as_tensor(controls, dtype=torch.long)
        gap_lo = torch.tensor(GAP_EDGES[:-1], dtype=torch.float64)
        gap_hi = torch.tensor(GAP_EDGES[1:], dtype=torch.float64)
        v_lo = torch.log(torch.tensor(VOICE_EDGES[:-1], dtype=torch.float64))
        v_hi = torch.log(torch.tensor(VOICE_EDGES[1:], dtype=torch.float64))
        d_lo = torch.log(torch.tensor(DATA_EDGES[:-1], dtype=torch.float64))
        d_hi = torch.log(torch.tensor(DATA_EDGES[1:], dtype=torch.float64))
        neg = float("-inf")
        for t in range(L):
            idx = torch.nonzero(active).squeeze(1)
            if len(idx) == 0:
                break
            hours = torch.as_tensor(_hours(secs[idx, :t].numpy()))
            h = net.encode(ctl[idx], events[idx, :t], hours)[:, t]
            m = len(idx)
            chosen = torch.zeros((m, F), dtype=torch.long)
            for j, f in enumerate(FIELDS):
                logits = net.head(j, h, chosen).double()
                if f == "place":
                    if t == 0:
                        allow = torch.zeros((m, N_PLACE), dtype=torch.bool)
                        allow[:, 0] = True
                    else:
                        prev = events[idx, t - 1, 4]
                        moved = chosen[:, 3] == 1
                        rng_ = torch.arange(N_PLACE)[None, :]
                        allow = rng_ <= torch.clamp(n_places[idx], max=N_PLACE - 1)[:, None]
                        allow = torch.where(moved[:, None], allow & (rng_ != prev[:, None]) | (
                            (rng_ == N_PLACE - 1) & (prev[:, None] == N_PLACE - 1)), rng_ == prev[:, None])
                    logits = logits.masked_fill(~allow, neg)
                if f == "cell_class":
                    known = places_cls[idx, chosen[:, 4]]
                    fix = (known >= 0) & (chosen[:, 4] < N_PLACE - 1) | ((known >= 0) & (chosen[:, 3] == 0))
                    forced = torch.full_like(logits, neg)
                    forced[torch.arange(m), known.clamp(min=0)] = 0.0
                    logits = torch.where(fix[:, None], forced, logits)
                if f == "size":
                    sms = chosen[:, 0] == 1
                    forced = torch.full_like(logits, neg)
                    forced[:, 0] = 0.0
                    logits = torch.where(sms[:, None], forced, logits)
                probs = torch.softmax(logits, dim=-1)
                chosen[:, j] = torch.multinomial(probs, 1, generator=gen).squeeze(1)
                if f == "service":
                    ended = chosen[:, 0] == END
                    chosen[ended, 0] = 0  # placeholder: the rest of an ended row is not used
            u = torch.rand((m, 2), generator=gen, dtype=torch.float64)
            g = chosen[:, 2]
            # within its bin a gap is log-uniform (gaps crowd towards the short end of a wide bin;
            # uniform offsets drift the clock late), uniform in the first bin, [0, 1) s
            lg_lo = torch.log(gap_lo[g].clamp(min=1.0))
            gap = torch.where(g > 0, torch.exp(lg_lo + u[:, 0] * (torch.log(gap_hi[g]) - lg_lo)), u[:, 0])
            start = secs[idx, t - 1] if t else torch.zeros(m, dtype=torch.float64)
            when = start + gap
            stop = ended | (when >= 86400.0)
            go = ~stop
            gi = idx[go]
            events[gi, t] = chosen[go]
            secs[gi, t] = when[go]
            sb = chosen[:, 6]
            lv = torch.where(chosen[:, 0] == 0, v_lo[(sb - 1).clamp(min=0)], d_lo[(sb - 1).clamp(min=0)])
            hv = torch.where(chosen[:, 0] == 0, v_hi[(sb - 1).clamp(min=0)], d_hi[(sb - 1).clamp(min=0)])
            val = torch.where(sb > 0, torch.exp(lv + u[:, 1] * (hv - lv)), torch.zeros(m, dtype=torch.float64))
            val = torch.where(chosen[:, 0] == 1, torch.zeros_like(val), val)
            value[gi, t] = val[go]
            new_place = chosen[:, 4]
            seen = places_cls[idx, new_place]
            upd = go & (seen < 0)
            places_cls[idx[upd], new_place[upd]] = chosen[upd, 5]
            n_places[idx[upd]] += 1
            length[gi] = t + 1
            active[idx[stop]] = False
        ln = length.numpy().astype(np.int32)
        ev = events.numpy().astype(np.int8)
        pad = np.arange(L)[None, :] >= ln[:, None]
        ev[pad] = -1
        sec = secs.numpy().astype(np.float32)
        sec[pad] = -1.0
        val = value.numpy()
        val[pad] = -1.0
        return {"controls": controls.astype(np.int8), "events": ev, "seconds": sec, "value": val, "length": ln}

    @classmethod
    def toy_data(cls, seed: int) -> dict[str, np.ndarray]:
        """300 made-up subscriber-days (contract tests): weekday days hold about three times as
        many events as weekend days, rural homes move more; events are data, voice or SMS."""
        rng = np.random.default_rng(seed)
        n, L = 300, 16
        ctl = np.stack([rng.integers(0, 4, n), rng.integers(0, 2, n), rng.integers(0, 3, n), np.zeros(n, int)],
                       axis=1).astype(np.int8)
        length = np.minimum(rng.poisson(np.where(ctl[:, 1] == 1, 2.0, 7.0)), L).astype(np.int32)
        events = np.full((n, L, len(FIELDS)), -1, np.int8)
        seconds = np.full((n, L), -1.0, np.float32)
        value = np.full((n, L), -1.0)
        for i in range(n):
            k = int(length[i])
            if not k:
                continue
            t = np.sort(rng.uniform(6 * 3600, 23 * 3600, k))
            gap = np.diff(np.concatenate([[0.0], t]))
            svc = rng.choice(3, size=k, p=[0.3, 0.1, 0.6])
            val = np.where(svc == 0, rng.lognormal(4, 1, k), np.where(svc == 2, rng.lognormal(15, 1.5, k), 0.0))
            moved = (rng.random(k) < (0.6 if ctl[i, 2] == 2 else 0.15)).astype(np.int8)
            place = np.zeros(k, np.int64)
            for j in range(1, k):
                place[j] = min(place[:j].max() + 1, N_PLACE - 1) if moved[j] else place[j - 1]
            moved[0] = 0
            events[i, :k] = np.stack([svc, rng.integers(0, 2, k), _gap_bin(gap), moved, place,
                                      np.full(k, ctl[i, 2]), _size_bin(svc, val)], axis=1)
            seconds[i, :k] = t
            value[i, :k] = val
        return {"controls": ctl, "events": events, "seconds": seconds, "value": value, "length": length}


# --------------------------------------------------------------------------
# conditions, features, PRDC, memorisation
# --------------------------------------------------------------------------


def parse_condition(text: str) -> dict[str, str]:
    """``"day=weekend,density=rural"`` -> ``{"day": "weekend", "density": "rural"}``; a bad key or
    value is a one-line :class:`ModelError` naming what is allowed."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        key, sep, val = part.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key:
            raise ModelError(f"--condition {part!r}: expected KEY=VALUE (keys: {', '.join(CONTROLS)})")
        if key not in CONTROLS:
            raise ModelError(f"--condition {key}: unknown key; allowed: {', '.join(CONTROLS)}")
        if val not in CONTROLS[key]:
            raise ModelError(f"--condition {key}={val}: not allowed; {key} is one of {', '.join(CONTROLS[key])}")
        if key in out:
            raise ModelError(f"--condition {key}: given twice")
        out[key] = val
    return out


def day_features(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Per subscriber-day features (rows x :data:`FEATURES`): events per service, distinct active
    hours, first and last event hour (-1 for a day without events), call seconds, data bytes,
    distinct cells (places) and moves."""
    ev = np.asarray(arrays["events"]).astype(np.int64)
    n, L, _ = ev.shape
    valid = np.arange(L)[None, :] < np.asarray(arrays["length"])[:, None]
    svc = np.where(valid, ev[..., 0], -1)
    hours = np.where(valid, _hours(np.asarray(arrays["seconds"])), -1)
    value = np.where(valid, np.asarray(arrays["value"]), 0.0)
    out = np.zeros((n, len(FEATURES)))
    for s in range(3):
        out[:, s] = (svc == s).sum(1)
    onehot = np.zeros((n, 25), bool)
    np.put_along_axis(onehot, hours + 1, True, axis=1)
    out[:, 3] = onehot[:, 1:].sum(1)
    out[:, 4] = np.where(valid.any(1), np.where(valid, hours, 99).min(1), -1)
    out[:, 5] = np.where(valid.any(1), hours.max(1), -1)
    out[:, 6] = np.where(svc == 0, value, 0.0).sum(1)
    out[:, 7] = np.where(svc == 2, value, 0.0).sum(1)
    out[:, 8] = np.where(valid, ev[..., 4] + 1, 0).max(1)
    out[:, 9] = np.where(valid, ev[..., 3], 0).sum(1)
    return out


def feature_space(real: np.ndarray):
    """A function mapping feature rows to the space distances are measured in: log1p of counts,
    seconds, bytes, cells and moves (hours as they are), standardised by ``real``'s mean and sd."""
    logcols = [0, 1, 2, 6, 7, 8, 9]

    def tr(x):
        y = np.asarray(x, np.float64).copy()
        y[:, logcols] = np.log1p(np.maximum(y[:, logcols], 0))
        return y

    r = tr(real)
    mu, sd = r.mean(0), r.std(0)
    sd[sd == 0] = 1.0
    return lambda x: (tr(x) - mu) / sd


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al., ICML 2020, "Reliable Fidelity and
    Diversity Metrics for Generative Models", eqs. 1-4 and 6-7) of ``fake`` rows against ``real``
    rows, with k-nearest-neighbour balls (k = 5); features already in a common space."""
    from sklearn.neighbors import NearestNeighbors  # lazy: only the diagnostics need sklearn

    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    r_rad = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)[0][:, k]
    f_rad = NearestNeighbors(n_neighbors=k + 1).fit(fake).kneighbors(fake)[0][:, k]
    d_rf = _pairwise(real, fake)  # real x fake
    precision = float((d_rf < r_rad[:, None]).any(axis=0).mean())
    recall = float((d_rf.T < f_rad[:, None]).any(axis=0).mean())
    density = float((d_rf < r_rad[:, None]).sum(axis=0).mean() / k)
    coverage = float((d_rf.min(axis=1) < r_rad).mean())
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def closest_distances(fake: np.ndarray, train: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of each ``fake`` row to its closest ``train`` row and to its closest ``held`` row."""
    from sklearn.neighbors import NearestNeighbors  # lazy: only the diagnostics need sklearn

    d_tr = NearestNeighbors(n_neighbors=1).fit(train).kneighbors(fake)[0][:, 0]
    d_ho = NearestNeighbors(n_neighbors=1).fit(held).kneighbors(fake)[0][:, 0]
    return d_tr, d_ho


# --------------------------------------------------------------------------
# sampled days -> CDR rows; a population's rates
# --------------------------------------------------------------------------


def to_cdr(sample: dict[str, np.ndarray], context: dict[str, Any], seed: int) -> pa.Table:
    """Sampled days as a CDR-schema table (``sim.schema.cdr_schema``): subscriber ``i`` is row ``i``
    of the sample (synthetic ids); each day is placed on ``context["dates"][day type]`` in
    ``context["timezone"]``; a place is a cell drawn (numpy, ``seed``) among ``cells_by_class`` of
    its class; a data session's duration is its transfer at :data:`DATA_RATE_BPS` plus the RRC tail.
    What is not modelled is written plainly: no counterpart, no redial, outcome ``completed`` (a call
    of size 0, ``failed``), no cause, no incident."""
    tz = context.get("timezone") or "UTC"
    dates = context.get("dates") or {}
    cells = {k: np.asarray(v, np.int64) for k, v in (context.get("cells_by_class") or {}).items()}
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(17,)))
    ev = np.asarray(sample["events"]).astype(np.int64)
    n, L, _ = ev.shape
    ln = np.asarray(sample["length"])
    valid = np.arange(L)[None, :] < ln[:, None]
    r, c = np.nonzero(valid)
    m = len(r)
    svc, dirn, place, cls = ev[r, c, 0], ev[r, c, 1], ev[r, c, 4], ev[r, c, 5]
    day_type = np.asarray(sample["controls"])[r, 1]
    midnight = np.zeros(m, np.int64)
    zone = zoneinfo.ZoneInfo(tz)
    for code, name in enumerate(CONTROLS["day"]):
        d = dates.get(name) or dates.get("weekday") or "2024-01-01"
        ms = int(dt.datetime.fromisoformat(d).replace(tzinfo=zone).timestamp() * 1000)
        midnight[day_type == code] = ms
    start_ms = midnight + np.round(np.asarray(sample["seconds"])[r, c].astype(np.float64) * 1000).astype(np.int64)
    val = np.asarray(sample["value"])[r, c]
    # a cell per (row, place), of the place's class
    cell = np.zeros(m, np.int64)
    key = r * N_PLACE + place
    uk, inv = np.unique(key, return_inverse=True)
    first_idx = np.zeros(len(uk), np.int64)
    first_idx[inv[::-1]] = np.arange(m)[::-1]
    for code, name in enumerate(DENSITY_CLASSES):
        pool = cells.get(name)
        sel = cls[first_idx] == code
        if not sel.any():
            continue
        if pool is None or not len(pool):
            pool = np.concatenate([v for v in cells.values() if len(v)]) if cells else np.zeros(1, np.int64)
        cell_of = np.zeros(len(uk), np.int64)
        cell_of[sel] = pool[rng.integers(0, len(pool), int(sel.sum()))]
        cell = np.where(sel[inv], cell_of[inv], cell)
    voice, data = svc == 0, svc == 2
    dur = np.where(voice, val, np.where(data, RRC_TAIL_S + val * 8.0 / DATA_RATE_BPS, 0.0))
    total = np.where(data, val, 0.0)
    up = np.round(total * UPLINK_SHARE).astype(np.int64)
    down = np.round(total).astype(np.int64) - up
    outcome = np.where(voice & (val <= 0), 3, 0)
    schema = cdr_schema(tz)
    cols = {
        "record_id": pa.array(np.arange(m, dtype=np.int64)),
        "session_id": pa.array(np.arange(m, dtype=np.int64)),
        "subscriber_id": pa.array(r.astype(np.int32)),
        "counterpart_id": pa.nulls(m, pa.int32()),
        "service": dictionary_array(svc, SERVICES),
        "direction": dictionary_array(dirn, DIRECTIONS),
        "start_time": pa.array(start_ms, type=pa.int64()).cast(schema.field("start_time").type),
        "duration_s": pa.array(dur),
        "bytes_up": pa.array(up),
        "bytes_down": pa.array(down),
        "cell_id": pa.array(cell.astype(np.int32)),
        "end_cell_id": pa.array(cell.astype(np.int32)),
        "outcome": dictionary_array(outcome, ("completed", "blocked", "dropped", "failed")),
        "cause": pa.DictionaryArray.from_arrays(pa.nulls(m, pa.int8()), pa.array([], type=pa.string())),
        "redial": pa.array(np.zeros(m, np.int8)),
        "incident_id": pa.nulls(m, pa.int32()),
    }
    return pa.table([cols[f.name] for f in schema], schema=schema)


def write_cdr(table: pa.Table, path: str | Path) -> Path:
    """Write a :func:`to_cdr` table to ``path`` (zstd Parquet), under a temporary name then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return path


def population_rates(model_dir: str | Path, segment: np.ndarray, home_density: np.ndarray,
                     seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-subscriber originated events per day of voice, SMS and data (n x 3) drawn from the model
    in ``model_dir``: for each subscriber (segment code, home density code) one weekday and one
    weekend day are sampled (incident context none), and each service's rate is
    (5 x weekday count + 2 x weekend count) / 7 of its ``mo`` events. Returns the rates and the
    model's sidecar."""
    model = SequenceTransformer.load(model_dir)
    n = len(segment)
    ctl = np.zeros((2 * n, len(CONTROLS)), np.int8)
    ctl[:, 0] = np.tile(np.asarray(segment, np.int8), 2)
    ctl[:, 1] = np.repeat([0, 1], n)
    ctl[:, 2] = np.tile(np.asarray(home_density, np.int8), 2)
    s = model.sample_given(ctl, seed=seed)
    ev = s["events"].astype(np.int64)
    valid = np.arange(ev.shape[1])[None, :] < s["length"][:, None]
    counts = np.stack([((ev[..., 0] == k) & (ev[..., 1] == 0) & valid).sum(1) for k in range(3)], axis=1)
    rates = (5.0 * counts[:n] + 2.0 * counts[n:]) / 7.0
    return rates.astype(np.float64), model.sidecar()


def write_context(context: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe part of a :func:`sequence_arrays` context kept in a model's spec (time zone,
    dates, cells by class): what :func:`to_cdr` needs to write CDRs."""
    return {"timezone": context["timezone"], "dates": context["dates"], "cells_by_class": context["cells_by_class"]}


# --------------------------------------------------------------------------
# evaluation against held-out subscribers
# --------------------------------------------------------------------------


def evaluate(model: SequenceTransformer, train: dict[str, np.ndarray], held: dict[str, np.ndarray], *,
             seed: int = 0, rows: int = 2000) -> dict[str, Any]:
    """Held-out diagnostics: ``rows`` held-out days, the same number of sampled days with the same
    controls (row for row), and as many training days (drawn with ``seed``).

    * ``prdc``: precision, recall, density, coverage (k = 5) of the sampled days' :func:`day_features`
      against the held-out days', and the real-vs-real floor: training days against held-out days;
    * ``memorisation``: distance of each sampled day to its closest training day and to its closest
      held-out day (train and held-out sets of equal size): medians, and the share of sampled days
      closer to the training set;
    * ``conditions``: per control value, the mean events per day, data bytes, distinct cells and moves
      of held-out and sampled days."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(18,)))
    n = min(rows, len(held["length"]), len(train["length"]))
    hi = np.sort(rng.choice(len(held["length"]), n, replace=False))
    ti = np.sort(rng.choice(len(train["length"]), n, replace=False))
    h = {k: v[hi] for k, v in held.items()}
    tr = {k: v[ti] for k, v in train.items()}
    fake = model.sample_given(h["controls"], seed=seed)
    fh, ft, ff = day_features(h), day_features(tr), day_features(fake)
    space = feature_space(fh)
    zh, zt, zf = space(fh), space(ft), space(ff)
    d_tr, d_ho = closest_distances(zf, zt, zh)
    out: dict[str, Any] = {
        "rows": n,
        "prdc": {"synthetic_vs_held_out": prdc(zh, zf), "train_vs_held_out": prdc(zh, zt)},
        "memorisation": {"median_to_train": float(np.median(d_tr)), "median_to_held_out": float(np.median(d_ho)),
                         "mean_to_train": float(d_tr.mean()), "mean_to_held_out": float(d_ho.mean()),
                         "share_closer_to_train": float((d_tr < d_ho).mean()),
                         "share_closer_to_held_out": float((d_ho < d_tr).mean())},
        "conditions": {},
    }
    cols = {"events": None, "data_bytes": 7, "distinct_cells": 8, "moves": 9, "active_hours": 3}
    for i, (name, vocab) in enumerate(CONTROLS.items()):
        for code, value in enumerate(vocab):
            m = h["controls"][:, i] == code
            if m.sum() < 20:
                continue
            row = {"days": int(m.sum())}
            for label, fx in (("held_out", fh), ("synthetic", ff)):
                row[label] = {c: float((fx[m, :3].sum(1) if j is None else fx[m, j]).mean()) for c, j in cols.items()}
            out["conditions"][f"{name}={value}"] = row
    return out
