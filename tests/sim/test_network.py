"""The neighbour graph of the network's cells (sim/network.py, built by a kernel): for any cell
layout the same neighbours as the rule written with networkx, ties in edge length included."""

from __future__ import annotations

import numpy as np
import pytest

from telcosim.sim import config


def _reference_neighbours(cx, cy, site):
    """The neighbour rule written plainly with networkx: cells of one site, Delaunay edges no longer
    than twice the shorter of the two cells' median edge, and a minimum spanning tree."""
    import networkx as nx
    from scipy.spatial import Delaunay

    n = len(cx)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    order = np.argsort(site, kind="stable")
    for a, b in zip(order[:-1], order[1:], strict=True):
        if site[a] == site[b]:
            g.add_edge(int(a), int(b))
    edges = set()
    for s in Delaunay(np.column_stack([cx, cy])).simplices:
        for i in range(3):
            a, b = int(s[i]), int(s[(i + 1) % 3])
            edges.add((min(a, b), max(a, b)))
    full = nx.Graph()
    full.add_nodes_from(range(n))
    for a, b in edges:
        full.add_edge(a, b, weight=float(np.hypot(cx[a] - cx[b], cy[a] - cy[b])))
    med = {c: float(np.median([full[c][m]["weight"] for m in full[c]])) if len(full[c]) else 0.0 for c in range(n)}
    g.add_edges_from((a, b) for a, b, d in full.edges(data=True) if d["weight"] <= 2.0 * min(med[a], med[b]))
    g.add_edges_from(nx.minimum_spanning_edges(full, data=False))
    return [sorted(g.neighbors(c)) for c in range(n)]


def _grid_points(seed: int):
    """Cells on an integer grid: many equal edge lengths and cocircular points."""
    rng = np.random.default_rng(seed)
    side = int(rng.integers(4, 16))
    pts = rng.choice(side * side, size=int(rng.integers(4, side * side)), replace=False)
    cx, cy = (pts % side).astype(float), (pts // side).astype(float)
    return cx, cy, np.arange(len(cx), dtype=np.int32) // int(rng.integers(1, 4))


@pytest.mark.parametrize("case", [("hex", 19, 3), ("hex", 61, 1), ("hex", 100, 6), ("random", 5, 3),
                                  ("random", 60, 1), ("random", 150, 3), *[("grid", s, 0) for s in range(6)]])
def test_neighbour_graph_breaks_ties_as_networkx(case):
    """Kruskal in the kernel takes the Delaunay edges in networkx's order, so equal lengths (the
    hex layout, grids) give the same spanning tree and hence the same neighbours."""
    from telcosim.sim.network import _neighbour_csr, build_network
    from telcosim.sim.streams import generator

    layout, sites, sectors = case
    if layout == "grid":
        cx, cy, site = _grid_points(sites)
    else:
        sc = config.load(None, [f"network.layout='{layout}'", f"network.sites={sites}", f"network.sectors={sectors}"])
        net = build_network(sc.network, generator(sc.seed, "network.layout"))
        cx, cy, site = net.cx_km, net.cy_km, net.site_id
    ptr, idx = _neighbour_csr(cx, cy, site)
    assert [idx[ptr[c]:ptr[c + 1]].tolist() for c in range(len(cx))] == _reference_neighbours(cx, cy, site)
