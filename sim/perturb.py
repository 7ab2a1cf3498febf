"""Perturbations: what the engine accepts from an incident library (``scenarios.incidents``).

The engine knows nothing of stadiums or disasters. It applies three generic kinds of change,
each exact in time and keyed so that a run equals its baseline until the first one:

* **Cell changes** at a time: new voice channels, data capacity, serving cell and covered share
  for a set of cells (outages, degraded cells, backhaul failures, failures and repairs). Calls
  and sessions in a cell that stops serving its own area are handed over or dropped; a cell that
  serves itself again can trigger a registration storm (a burst of location updates from the
  subscribers standing in it).
* **Demand changes** per quarter-hour epoch: a multiplier per attempt kind for everybody (a
  special day), per cell and service (mass events, emergencies) and forced destinations for some
  subscribers (a venue's attendees), and extra voice attempts of given subscribers (an
  emergency's callers: people who would not otherwise have called).
* **Attribution** of the rows that differ from the baseline run to an incident id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CellChange:
    """At ``t_ms`` (from the run start) the ``cells`` take these values (one entry per cell)."""

    t_ms: int
    cells: np.ndarray          # int64
    voice_channels: np.ndarray  # int64
    data_bpms: np.ndarray      # float64, bytes per ms
    serve: np.ndarray          # int32: the cell serving this cell's area, -1 for none
    cover: np.ndarray          # float64: share of the area covered (by ``serve``)
    handover: bool = True      # calls and sessions of a cell that goes are handed over if possible
    storm_cells: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # re-attach here
    storm_spread_ms: float = 60_000.0
    incident: int = -1
    # float64, bytes per ms: the cells' radio capacity (what PRB utilisation is measured against),
    # which a backhaul cap leaves as it was; None: data_bpms
    radio_bpms: np.ndarray | None = None


@dataclass(frozen=True)
class EpochDemand:
    """Demand changes for one epoch (None: no change)."""

    rate_mult: np.ndarray | None = None   # float64[5] per attempt kind
    cell_mult: np.ndarray | None = None   # float64[n_cells, 3] voice, sms, data
    force: tuple[np.ndarray, np.ndarray] | None = None  # (ascending subscriber ids, cells)


@dataclass
class Perturbations:
    """Everything an incident library hands the engine. ``first_effect_ms`` is the earliest time
    at which any output can differ from the baseline (rows before it are identical)."""

    changes: list[CellChange]
    demand: Callable[[int], EpochDemand]
    attribute: Callable[[np.ndarray, np.ndarray], np.ndarray]
    first_effect_ms: int
    incidents: list[dict] = field(default_factory=list)  # rows of incidents.parquet
    # Columns of topology.parquet (site_id, agg_node, ring, power_domain) when failures use it.
    topology: dict[str, np.ndarray] | None = None
    storm_key: int = 0
    # Extra attempts of an epoch, from the cell each subscriber starts it in: (t, sub, kind,
    # counterpart, duration_ms, bytes) columns with ``t`` in the epoch, or None for none.
    extra_attempts: Callable[[int, np.ndarray], tuple[np.ndarray, ...] | None] | None = None
