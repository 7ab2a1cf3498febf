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

from .config import NetworkConfig
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


def load_cells_csv(path: Path, cfg: NetworkConfig) -> Network:
    """A user's cell list: columns ``cell_id, lat, lon`` and optionally ``site_id, azimuth_deg,
    voice_channels, data_mbps, density`` (urban|suburban|rural). Every problem is reported."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
            header = rows[0].keys() if rows else []
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such cells file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(f"{path}: cannot read the cells file ({exc})") from None
    name = path.name
    if not rows:
        raise InputDataError(f"{name}: no cells (expected a header with {', '.join(CSV_REQUIRED)} and one row per cell)")
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise InputDataError(f"{name}: missing column(s) {', '.join(missing)} (required: {', '.join(CSV_REQUIRED)}; "
                             f"optional: {', '.join(CSV_OPTIONAL)})")
    problems: list[str] = []
    seen: dict[str, int] = {}
    lat = np.empty(len(rows))
    lon = np.empty(len(rows))
    az = np.full(len(rows), np.nan)
    voice = np.empty(len(rows))
    data = np.empty(len(rows))
    dens = np.full(len(rows), -1, dtype=np.int8)
    sites: list[str] = []

    def num(row_no: int, col: str, text: str | None, lo: float, hi: float) -> float:
        try:
            v = float(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            v = float("nan")
        if v != v:
            problems.append(f"{name}: line {row_no}: {col}: {text!r} is not a number")
            return float("nan")
        if not lo <= v <= hi:
            problems.append(f"{name}: line {row_no}: {col}: {v} is out of range ({lo}..{hi})")
        return v

    for i, row in enumerate(rows):
        line = i + 2
        cid = (row.get("cell_id") or "").strip()
        if not cid:
            problems.append(f"{name}: line {line}: cell_id is empty")
        elif cid in seen:
            problems.append(f"{name}: line {line}: cell_id {cid!r} duplicates line {seen[cid]}")
        else:
            seen[cid] = line
        lat[i] = num(line, "lat", row.get("lat"), -90, 90)
        lon[i] = num(line, "lon", row.get("lon"), -180, 180)
        if row.get("azimuth_deg") not in (None, ""):
            az[i] = num(line, "azimuth_deg", row["azimuth_deg"], 0, 360)
        voice[i] = num(line, "voice_channels", row["voice_channels"], 1, 10_000) if row.get("voice_channels") not in (None, "") else -1
        if voice[i] == voice[i] and voice[i] != round(voice[i]):
            problems.append(f"{name}: line {line}: voice_channels: {voice[i]} is not a whole number of channels")
        data[i] = num(line, "data_mbps", row["data_mbps"], 0.001, 1e6) if row.get("data_mbps") not in (None, "") else -1
        d = (row.get("density") or "").strip()
        if d:
            if d not in DENSITY_CLASSES:
                problems.append(f"{name}: line {line}: density: {d!r} is not one of {', '.join(DENSITY_CLASSES)}")
            else:
                dens[i] = DENSITY_CLASSES.index(d)
        sites.append((row.get("site_id") or "").strip() or f"{row.get('lat')},{row.get('lon')}")
    if problems:
        raise InputDataError(problems)
    # The centre of a user's network is the mean position of its cells.
    origin = (float(lat.mean()), float(lon.mean()))
    x, y = _xy(lat, lon, origin)
    site_names = {s: k for k, s in enumerate(dict.fromkeys(sites))}
    site = np.array([site_names[s] for s in sites], dtype=np.int32)
    # Coverage centroid: towards the azimuth by 30% of the distance to the nearest other site.
    _, first = np.unique(site, return_index=True)
    sx, sy = x[first], y[first]
    spacing = _nearest_other_distance(sx, sy)[site] if len(first) > 1 else np.ones(len(x))
    rad = np.radians(np.nan_to_num(az))
    off = np.where(np.isnan(az), 0.0, 0.3 * spacing)
    cx, cy = x + off * np.sin(rad), y + off * np.cos(rad)
    computed = _density_class(x, y, cfg)
    density = np.where(dens >= 0, dens, computed).astype(np.int8)
    voice_v = np.where(voice > 0, voice, np.asarray(cfg.voice_channels.as_tuple())[density])
    data_v = np.where(data > 0, data, np.asarray(cfg.data_mbps.as_tuple())[density])
    return _assemble(cfg, site, x, y, cx, cy, az, density, voice_v, data_v, source_id=[r["cell_id"].strip() for r in rows],
                     origin=origin, given=(voice > 0, data > 0))
