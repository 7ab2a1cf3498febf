"""The cellular network: sites, cells (sectors), capacities and the neighbour graph.

Geometry lives on a local km plane around an origin (x east, y north); latitude and longitude
follow by an equirectangular projection, accurate to well under a cell's size over a city or
region. Each cell has the position of its site (as in an operator's cell list) and the centroid of
its coverage (offset from the site towards the sector's azimuth), which mobility uses. The
neighbour graph (networkx) is the Delaunay triangulation of the coverage centroids with overlong
edges pruned, plus the edges of its minimum spanning tree so the graph stays connected; greedy
routing towards a destination mostly succeeds on it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
from scipy.spatial import Delaunay, QhullError, cKDTree

from .config import CELL_RADIOS, OPENCELLID_KEYS, NetworkConfig, cell_radios
from .errors import InputDataError
from .kernels import setup

DENSITY_CLASSES = ("urban", "suburban", "rural")
KM_PER_DEG_LAT = 110.574


@dataclass
class Network:
    """Cells as parallel arrays indexed by ``cell_id`` (0..n-1)."""

    site_id: np.ndarray        # int32
    x_km: np.ndarray           # site position, float64
    y_km: np.ndarray
    cx_km: np.ndarray          # coverage centroid
    cy_km: np.ndarray
    lat: np.ndarray            # site latitude / longitude (deg)
    lon: np.ndarray
    azimuth_deg: np.ndarray    # float64, NaN for omni cells
    density: np.ndarray        # int8 index into DENSITY_CLASSES
    voice_channels: np.ndarray  # int32
    data_mbps: np.ndarray      # float64
    nbr_ptr: np.ndarray        # int64, CSR of the neighbour graph
    nbr_idx: np.ndarray        # int32
    origin: tuple[float, float]
    source_id: list[str] = field(default_factory=list)  # the user's ids when loaded from CSV
    # Cells whose voice channels / data capacity a cells CSV gave (kept by sim.dimensioning);
    # None: none.
    voice_given: np.ndarray | None = None
    data_given: np.ndarray | None = None

    @property
    def n_cells(self) -> int:
        return int(self.site_id.shape[0])

    def capacity_given(self) -> tuple[np.ndarray, np.ndarray]:
        """(voice, data): per cell, whether its cells CSV gave that capacity."""
        none = np.zeros(self.n_cells, bool)
        return (none if self.voice_given is None else self.voice_given,
                none if self.data_given is None else self.data_given)

    def neighbours(self, cell: int) -> np.ndarray:
        return self.nbr_idx[self.nbr_ptr[cell]:self.nbr_ptr[cell + 1]]

    def graph(self) -> nx.Graph:
        """The neighbour graph as networkx (nodes carry density and capacities)."""
        g = nx.Graph()
        for c in range(self.n_cells):
            g.add_node(c, site=int(self.site_id[c]), density=DENSITY_CLASSES[self.density[c]],
                       pos=(float(self.cx_km[c]), float(self.cy_km[c])))
        for c in range(self.n_cells):
            for n in self.neighbours(c):
                if c < n:
                    g.add_edge(c, int(n))
        return g


def _latlon(x: np.ndarray, y: np.ndarray, origin: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    lat0, lon0 = origin
    return lat0 + y / KM_PER_DEG_LAT, lon0 + x / (111.320 * math.cos(math.radians(lat0)))


def _xy(lat: np.ndarray, lon: np.ndarray, origin: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    lat0, lon0 = origin
    return (lon - lon0) * 111.320 * math.cos(math.radians(lat0)), (lat - lat0) * KM_PER_DEG_LAT


def _hex_sites(n_sites: int, radius_km: float) -> np.ndarray:
    rings = 0
    while 1 + 3 * rings * (rings + 1) < n_sites:
        rings += 1
    spacing = radius_km / max(rings, 1)
    pts = []
    for q in range(-rings, rings + 1):
        for r in range(max(-rings, -q - rings), min(rings, -q + rings) + 1):
            pts.append((spacing * (q + r / 2.0), spacing * r * math.sqrt(3) / 2.0))
    arr = np.array(pts, dtype=np.float64)
    order = np.lexsort((np.arctan2(arr[:, 1], arr[:, 0]), np.round(np.hypot(arr[:, 0], arr[:, 1]), 9)))
    return arr[order[:n_sites]]


def _random_sites(n_sites: int, radius_km: float, scale_km: float, rng: np.random.Generator) -> np.ndarray:
    """Sites with density falling as exp(-r/scale), kept apart by a fraction of the local spacing.

    Candidates are drawn one at a time (so the result depends only on the stream) and checked
    against the accepted sites near them through a grid hash, which keeps this linear in the
    number of sites."""
    pts: list[tuple[float, float]] = []
    cell = max(0.4 / math.sqrt(n_sites / (2 * math.pi * scale_km**2)), 1e-6)  # spacing at the centre
    grid: dict[tuple[int, int], list[int]] = {}
    attempts = 0
    while len(pts) < n_sites:
        attempts += 1
        # r has density ~ r * exp(-r/scale) on [0, radius]: Gamma(2, scale), truncated by rejection.
        r = rng.gamma(2.0, scale_km)
        if r > radius_km:
            continue
        a = rng.uniform(0.0, 2.0 * math.pi)
        x, y = r * math.cos(a), r * math.sin(a)
        # Local spacing expected from the density at r; refuse sites closer than 40% of it.
        local_density = n_sites * math.exp(-r / scale_km) / (2 * math.pi * scale_km**2)
        min_d = 0.4 / math.sqrt(max(local_density, 1e-9))
        gx, gy = int(math.floor(x / cell)), int(math.floor(y / cell))
        if attempts < 200 * n_sites:
            reach = int(math.ceil(min_d / cell))
            if any((x - pts[k][0]) ** 2 + (y - pts[k][1]) ** 2 < min_d**2
                   for i in range(gx - reach, gx + reach + 1) for j in range(gy - reach, gy + reach + 1)
                   for k in grid.get((i, j), ())):
                continue
        grid.setdefault((gx, gy), []).append(len(pts))
        pts.append((x, y))
    return np.array(pts, dtype=np.float64)


def _density_class(x: np.ndarray, y: np.ndarray, cfg: NetworkConfig) -> np.ndarray:
    r = np.hypot(x, y)
    return np.where(r <= cfg.urban_km, 0, np.where(r <= cfg.suburban_km, 1, 2)).astype(np.int8)


def _nearest_other_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if len(x) < 2:
        return np.ones(len(x))
    d, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
    return d[:, 1]


def _sectorise(sx: np.ndarray, sy: np.ndarray, sectors: int, rotation: np.ndarray):
    n = len(sx)
    spacing = _nearest_other_distance(sx, sy)
    site = np.repeat(np.arange(n, dtype=np.int32), sectors)
    if sectors == 1:
        az = np.full(n, np.nan)
        return site, sx.copy(), sy.copy(), sx.copy(), sy.copy(), az
    az = (rotation[:, None] + np.arange(sectors)[None, :] * 360.0 / sectors) % 360.0
    az = az.ravel()
    off = 0.3 * spacing[site]
    rad = np.radians(az)
    x, y = sx[site], sy[site]
    # Azimuth is clockwise from north.
    return site, x, y, x + off * np.sin(rad), y + off * np.cos(rad), az


def _neighbour_csr(cx: np.ndarray, cy: np.ndarray, site: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the neighbour graph: the sectors of a site chained, the Delaunay edges no longer than
    twice the median Delaunay edge of both ends, and the minimum spanning tree of the Delaunay graph.

    The spanning tree is Kruskal's over the Delaunay edges in the order networkx's
    ``minimum_spanning_edges`` would take them from the graph built edge by edge from the set
    ``edges`` (so equal lengths, common in the hex layout, are broken the same way): a stable sort by
    length of the graph's edge order, which lists node by node, each node's edges to later nodes in
    the order they were added."""
    n = len(cx)
    order = np.argsort(site, kind="stable")
    # Sectors of one site are always neighbours.
    chain = site[order[:-1]] == site[order[1:]]
    parts_a = [order[:-1][chain].astype(np.int64)]
    parts_b = [order[1:][chain].astype(np.int64)]
    if n >= 4:
        pts = np.column_stack([cx, cy])
        try:
            tri = Delaunay(pts)
            s = tri.simplices
            t = np.roll(s, -1, axis=1)  # the edge (s[i], s[(i + 1) % 3]), simplex by simplex
            edges = set(zip(np.minimum(s, t).ravel().tolist(), np.maximum(s, t).ravel().tolist(), strict=True))
        except QhullError:  # collinear cells: chain them
            edges = {(int(a), int(b)) for a, b in zip(np.argsort(cx)[:-1], np.argsort(cx)[1:], strict=True)}
        e = np.array(list(edges), dtype=np.int64).reshape(-1, 2)  # the set's order: the graph's insertion order
        a, b = e[:, 0], e[:, 1]
        length = np.hypot(cx[a] - cx[b], cy[a] - cy[b])
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        median = setup.median_edge_length(n, lo, hi, length)
        short = length <= 2.0 * np.minimum(median[lo], median[hi])
        parts_a.append(lo[short])
        parts_b.append(hi[short])
        kruskal_order = np.lexsort((np.arange(len(lo)), lo, length))
        lo, hi = lo[kruskal_order], hi[kruskal_order]
        tree = setup.kruskal(n, lo, hi)
        parts_a.append(lo[tree])
        parts_b.append(hi[tree])
    elif n > 1:
        a, b = np.triu_indices(n, 1)
        parts_a.append(a.astype(np.int64))
        parts_b.append(b.astype(np.int64))
    a = np.concatenate(parts_a)
    b = np.concatenate(parts_b)
    key = np.unique(np.concatenate([a * n + b, b * n + a]))
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // n, minlength=n), out=ptr[1:])
    return ptr, (key % n).astype(np.int32)


def _assemble(cfg: NetworkConfig, site, x, y, cx, cy, az, density=None, voice=None, data=None,
              source_id=None, origin=None, given=(None, None)) -> Network:
    origin = origin or (cfg.origin_lat, cfg.origin_lon)
    lat, lon = _latlon(x, y, origin)
    if density is None:
        density = _density_class(x, y, cfg)
    if voice is None:
        voice = np.asarray(cfg.voice_channels.as_tuple())[density]
    if data is None:
        data = np.asarray(cfg.data_mbps.as_tuple())[density]
    ptr, idx = _neighbour_csr(cx, cy, site)
    return Network(site_id=np.asarray(site, np.int32), x_km=x, y_km=y, cx_km=cx, cy_km=cy, lat=lat,
                   lon=lon, azimuth_deg=az, density=np.asarray(density, np.int8),
                   voice_channels=np.round(voice).astype(np.int32), data_mbps=np.asarray(data, np.float64),
                   nbr_ptr=ptr, nbr_idx=idx, origin=origin, source_id=source_id or [],
                   voice_given=given[0], data_given=given[1])


def build_network(cfg: NetworkConfig, rng: np.random.Generator, base_dir: Path | None = None) -> Network:
    """Build the network the configuration describes (``rng`` is the 'network.layout' stream).
    Its capacities are the density classes' (or the cells CSV's) until
    :func:`sim.dimensioning.dimension` sizes them for the population's load."""
    if cfg.layout == "csv":
        path = Path(cfg.cells_csv)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return load_cells_csv(path, cfg)
    if cfg.layout == "hex":
        sites = _hex_sites(cfg.sites, cfg.radius_km)
        rotation = np.zeros(len(sites))
    else:
        sites = _random_sites(cfg.sites, cfg.radius_km, cfg.centre_scale_km, rng)
        rotation = rng.uniform(0.0, 120.0, size=len(sites))
    site, x, y, cx, cy, az = _sectorise(sites[:, 0], sites[:, 1], cfg.sectors, rotation)
    return _assemble(cfg, site, x, y, cx, cy, az)


CSV_REQUIRED = ("cell_id", "lat", "lon")
CSV_OPTIONAL = ("site_id", "azimuth_deg", "voice_channels", "data_mbps", "density")
# OpenCellID's published layout (cell_towers.csv and its per-country extracts), and the columns read.
OPENCELLID_COLUMNS = ("radio", "mcc", "net", "area", "cell", "unit", "lon", "lat", "range", "samples", "changeable",
                      "created", "updated", "averageSignal")
OPENCELLID_REQUIRED = ("radio", "mcc", "net", "area", "cell", "lon", "lat")


@dataclass
class _Rows:
    """The cells of a list as read, before selection: one entry per row."""

    line: np.ndarray                # int64, the row's line number in the file
    source_id: list[str]
    lat: np.ndarray
    lon: np.ndarray
    site_key: list[object]          # cells with equal keys form a site
    az: np.ndarray
    voice: np.ndarray               # -1: from the density class
    data: np.ndarray
    dens: np.ndarray                # int8, -1: from the distance to the centre

    def take(self, keep: np.ndarray) -> _Rows:
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return _Rows(self.line[idx], [self.source_id[i] for i in idx], self.lat[idx], self.lon[idx],
                     [self.site_key[i] for i in idx], self.az[idx], self.voice[idx], self.data[idx], self.dens[idx])


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such cells file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(f"{path}: cannot read the cells file ({exc})") from None
    return rows, header


class _Checker:
    """Per-line checks that collect every problem of a file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []

    def num(self, line: int, col: str, text: str | None, lo: float, hi: float) -> float:
        try:
            v = float(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            v = float("nan")
        if v != v:
            self.problems.append(f"{self.name}: line {line}: {col}: {text!r} is not a number")
            return float("nan")
        if not lo <= v <= hi:
            self.problems.append(f"{self.name}: line {line}: {col}: {v} is out of range ({lo}..{hi})")
        return v

    def whole(self, line: int, col: str, text: str | None) -> int:
        t = (text or "").strip()
        if not (t.isascii() and t.isdigit()):
            self.problems.append(f"{self.name}: line {line}: {col}: {text!r} is not a whole number >= 0")
            return -1
        return int(t)

    def optional(self, row: dict[str, str], r: _Rows, i: int) -> None:
        """The optional columns both layouts share: site_id, azimuth_deg, voice_channels, data_mbps, density."""
        line = int(r.line[i])
        if (row.get("site_id") or "").strip():
            r.site_key[i] = ("site", row["site_id"].strip())
        if row.get("azimuth_deg") not in (None, ""):
            r.az[i] = self.num(line, "azimuth_deg", row["azimuth_deg"], 0, 360)
        if row.get("voice_channels") not in (None, ""):
            r.voice[i] = self.num(line, "voice_channels", row["voice_channels"], 1, 10_000)
            if r.voice[i] == r.voice[i] and r.voice[i] != round(r.voice[i]):
                self.problems.append(f"{self.name}: line {line}: voice_channels: {r.voice[i]} is not a whole "
                                     "number of channels")
        if row.get("data_mbps") not in (None, ""):
            r.data[i] = self.num(line, "data_mbps", row["data_mbps"], 0.001, 1e6)
        d = (row.get("density") or "").strip()
        if d:
            if d not in DENSITY_CLASSES:
                self.problems.append(f"{self.name}: line {line}: density: {d!r} is not one of "
                                     f"{', '.join(DENSITY_CLASSES)}")
            else:
                r.dens[i] = DENSITY_CLASSES.index(d)


def _empty_rows(n: int) -> _Rows:
    return _Rows(np.arange(2, n + 2, dtype=np.int64), [""] * n, np.empty(n), np.empty(n), [None] * n,
                 np.full(n, np.nan), np.full(n, -1.0), np.full(n, -1.0), np.full(n, -1, dtype=np.int8))


def _plain_rows(rows: list[dict[str, str]], chk: _Checker) -> _Rows:
    """The layout ``cell_id, lat, lon`` (+ optional columns): every row is a cell, ids unique."""
    r = _empty_rows(len(rows))
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        line = i + 2
        cid = (row.get("cell_id") or "").strip()
        if not cid:
            chk.problems.append(f"{chk.name}: line {line}: cell_id is empty")
        elif cid in seen:
            chk.problems.append(f"{chk.name}: line {line}: cell_id {cid!r} duplicates line {seen[cid]}")
        else:
            seen[cid] = line
        r.source_id[i] = cid
        r.lat[i] = chk.num(line, "lat", row.get("lat"), -90, 90)
        r.lon[i] = chk.num(line, "lon", row.get("lon"), -180, 180)
        r.site_key[i] = ("at", f"{row.get('lat')},{row.get('lon')}")  # same position text: one site
        chk.optional(row, r, i)
    return r


def _opencellid_rows(rows: list[dict[str, str]], header: list[str], chk: _Checker,
                     cfg: NetworkConfig) -> tuple[_Rows, np.ndarray, np.ndarray]:
    """OpenCellID's layout: the rows, each one's radio (index into CELL_RADIOS) and samples (-1
    without the column). A cell's site is its site_id when given; else, with cells_sites = 'auto',
    its LTE eNodeB; else none yet (grouped by position later)."""
    n = len(rows)
    r = _empty_rows(n)
    radio = np.full(n, -1, dtype=np.int8)
    samples = np.full(n, -1, dtype=np.int64)
    has_samples = "samples" in header
    for i, row in enumerate(rows):
        line = i + 2
        rt = (row.get("radio") or "").strip().upper()
        if rt in CELL_RADIOS:
            radio[i] = CELL_RADIOS.index(rt)
        else:
            chk.problems.append(f"{chk.name}: line {line}: radio: {row.get('radio')!r} is not one of "
                                f"{', '.join(CELL_RADIOS)}")
        mcc, net, area, cell = (chk.whole(line, c, row.get(c)) for c in ("mcc", "net", "area", "cell"))
        r.source_id[i] = f"{rt}-{mcc}-{net}-{area}-{cell}"
        r.lat[i] = chk.num(line, "lat", row.get("lat"), -90, 90)
        r.lon[i] = chk.num(line, "lon", row.get("lon"), -180, 180)
        if has_samples:
            samples[i] = chk.whole(line, "samples", row.get("samples"))
        if cfg.cells_sites == "auto" and rt == "LTE" and cell >= 256:
            # An LTE cell id (ECI) is eNodeB id * 256 + sector: the sectors of one eNodeB share
            # cell // 256. A cell id below 256 is a bare sector number: its eNodeB is unknown.
            r.site_key[i] = ("enb", mcc, net, cell // 256)
        chk.optional(row, r, i)
    return r, radio, samples


def _position_sites(keys: list[object], x: np.ndarray, y: np.ndarray, within_m: float) -> list[object]:
    """Site keys for the cells without one: in row order, each cell not yet placed starts a site
    that takes every such cell within ``within_m`` of it (0: at the same position)."""
    todo = [i for i, k in enumerate(keys) if k is None]
    out = list(keys)
    if not todo:
        return out
    pts = np.column_stack([x[todo], y[todo]])
    if within_m == 0:
        first: dict[tuple[float, float], int] = {}
        for j, i in enumerate(todo):
            out[i] = ("pos", first.setdefault((float(pts[j, 0]), float(pts[j, 1])), i))
        return out
    tree = cKDTree(pts)
    for j, i in enumerate(todo):
        if out[i] is None:
            for m in sorted(tree.query_ball_point(pts[j], within_m / 1000.0)):
                if out[todo[m]] is None:
                    out[todo[m]] = ("pos", i)
    return out


def _layout_of(name: str, header: list[str]) -> str:
    if "cell_id" in header or not all(c in header for c in OPENCELLID_REQUIRED):
        if "cell_id" not in header and len(header) == len(OPENCELLID_COLUMNS) and header[0].strip().upper() in CELL_RADIOS:
            raise InputDataError(f"{name}: the first line is a cell in OpenCellID's layout, not a header: add the "
                                 f"line {','.join(OPENCELLID_COLUMNS)} at the top")
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise InputDataError(f"{name}: missing column(s) {', '.join(missing)} (required: {', '.join(CSV_REQUIRED)}; "
                                 f"optional: {', '.join(CSV_OPTIONAL)}; or OpenCellID's layout: "
                                 f"{', '.join(OPENCELLID_COLUMNS)})")
        return "plain"
    return "opencellid"


def load_cells_csv(path: Path, cfg: NetworkConfig) -> Network:
    """A cell list, in either layout (told apart by the header):

    - ``cell_id, lat, lon`` and optionally ``site_id, azimuth_deg, voice_channels, data_mbps, density``
      (urban|suburban|rural);
    - OpenCellID's ``radio, mcc, net, area, cell, unit, lon, lat, range, samples, changeable, created,
      updated, averageSignal`` (the optional columns above are read too), selected by radio type and
      samples, duplicates resolved and cells grouped into sites as ``network.cells_*`` say.

    ``network.cells_within_km`` keeps the cells around the origin in both. Every problem is reported."""
    rows, header = _read_csv(path)
    name = path.name
    if not rows:
        raise InputDataError(f"{name}: no cells (expected a header with {', '.join(CSV_REQUIRED)} and one row per cell, "
                             f"or OpenCellID's layout {','.join(OPENCELLID_COLUMNS)})")
    layout = _layout_of(name, header)
    chk = _Checker(name)
    defaults = NetworkConfig()
    if layout == "plain":
        for key in OPENCELLID_KEYS:
            if getattr(cfg, key) != getattr(defaults, key):
                chk.problems.append(f"{name}: network.{key}: has no effect: {name} has the layout cell_id, lat, lon "
                                    f"(it applies to OpenCellID's layout only); remove network.{key}")
        if chk.problems:
            raise InputDataError(chk.problems)
        r = _plain_rows(rows, chk)
        if chk.problems:
            raise InputDataError(chk.problems)
        keep = np.ones(len(rows), dtype=bool)
        dropped: list[str] = []
    else:
        needs_samples = cfg.cells_min_samples > 0 or cfg.cells_duplicates == "most_samples"
        if needs_samples and "samples" not in header:
            key = "cells_min_samples" if cfg.cells_min_samples > 0 else "cells_duplicates"
            raise InputDataError(f"{name}: network.{key}: {getattr(cfg, key)!r} needs the samples column, which "
                                 f"{name} lacks (OpenCellID's layout has it: {','.join(OPENCELLID_COLUMNS)})")
        r, radio, samples = _opencellid_rows(rows, header, chk, cfg)
        if chk.problems:
            raise InputDataError(chk.problems)
        keep = np.ones(len(rows), dtype=bool)
        dropped = []
        wanted = cell_radios(cfg.cells_radio)
        if wanted:
            ok = np.isin(radio, [CELL_RADIOS.index(w) for w in wanted])
            dropped.append(f"{int((keep & ~ok).sum())} not of radio {', '.join(wanted)}")
            keep &= ok
        if cfg.cells_min_samples > 0:
            ok = samples >= cfg.cells_min_samples
            dropped.append(f"{int((keep & ~ok).sum())} with fewer than {cfg.cells_min_samples} samples")
            keep &= ok
    # Selection around the origin, in the simulator's local km frame.
    if cfg.cells_within_km > 0:
        origin = (cfg.origin_lat, cfg.origin_lon)
        x, y = _xy(r.lat, r.lon, origin)
        ok = np.hypot(x, y) <= cfg.cells_within_km
        dropped.append(f"{int((keep & ~ok).sum())} farther than {cfg.cells_within_km} km from "
                       f"({cfg.origin_lat}, {cfg.origin_lon})")
        keep &= ok
    if not keep.any():
        raise InputDataError(f"{name}: no cells left of {len(rows)} rows ({'; then '.join(dropped)}): widen the "
                             "network.cells_* selection")
    r = r.take(keep)
    if layout == "opencellid":
        r = _resolve_duplicates(r, samples[keep], cfg.cells_duplicates, name)
    # The centre is the origin when cells were selected around it, else the mean position of the cells.
    origin = (cfg.origin_lat, cfg.origin_lon) if cfg.cells_within_km > 0 else (float(r.lat.mean()), float(r.lon.mean()))
    x, y = _xy(r.lat, r.lon, origin)
    keys = _position_sites(r.site_key, x, y, cfg.cells_colocated_m) if layout == "opencellid" else r.site_key
    site_names = {k: s for s, k in enumerate(dict.fromkeys(keys))}
    site = np.array([site_names[k] for k in keys], dtype=np.int32)
    if layout == "opencellid":
        # OpenCellID's position of a cell is the mean of where it was measured, so it lies towards
        # the cell's coverage: it is kept as the coverage centroid, and the site sits at the mean
        # position of its cells.
        n_sites = len(site_names)
        cnt = np.bincount(site, minlength=n_sites)
        cx, cy = x.copy(), y.copy()
        x = (np.bincount(site, x, n_sites) / cnt)[site]
        y = (np.bincount(site, y, n_sites) / cnt)[site]
    else:
        cx = cy = None
    # With an azimuth, the coverage centroid lies towards it by 30% of the distance to the nearest other site.
    _, first = np.unique(site, return_index=True)
    sx, sy = x[first], y[first]
    spacing = _nearest_other_distance(sx, sy)[site] if len(first) > 1 else np.ones(len(x))
    rad = np.radians(np.nan_to_num(r.az))
    off = np.where(np.isnan(r.az), 0.0, 0.3 * spacing)
    has_az = ~np.isnan(r.az)
    bx = x if cx is None else np.where(has_az, x, cx)
    by = y if cy is None else np.where(has_az, y, cy)
    cx, cy = bx + off * np.sin(rad), by + off * np.cos(rad)
    computed = _density_class(x, y, cfg)
    density = np.where(r.dens >= 0, r.dens, computed).astype(np.int8)
    voice_v = np.where(r.voice > 0, r.voice, np.asarray(cfg.voice_channels.as_tuple())[density])
    data_v = np.where(r.data > 0, r.data, np.asarray(cfg.data_mbps.as_tuple())[density])
    return _assemble(cfg, site, x, y, cx, cy, r.az, density, voice_v, data_v, source_id=r.source_id, origin=origin,
                     given=(r.voice > 0, r.data > 0))


def _resolve_duplicates(r: _Rows, samples: np.ndarray, policy: str, name: str) -> _Rows:
    """A cell listed more than once (same radio, mcc, net, area, cell): an error, or one row kept
    (the first, or the one with the most samples, the first among equals) at the place of the first."""
    first: dict[str, int] = {}
    best: dict[str, int] = {}
    problems = []
    for i, cid in enumerate(r.source_id):
        if cid not in first:
            first[cid] = best[cid] = i
        elif policy == "error":
            problems.append(f"{name}: line {r.line[i]}: cell {cid} duplicates line {r.line[first[cid]]} (set "
                            "network.cells_duplicates = 'first' or 'most_samples' to keep one row)")
        elif policy == "most_samples" and samples[i] > samples[best[cid]]:
            best[cid] = i
    if problems:
        raise InputDataError(problems)
    return r.take(np.array([best[c] for c in first], dtype=np.int64))
