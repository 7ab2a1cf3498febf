"""Random failures with common causes: the transport and power topology the sites hang on, the
laws of time to failure and of repair per level, and the schedule of failures.

Sites hang on **aggregation nodes** (``sites_per_node`` neighbouring sites each), the nodes on
**rings** (``nodes_per_ring`` neighbouring nodes each) and, independently, on **power domains**
(``sites_per_power_domain`` neighbouring sites fed together). The groups are spatial and
deterministic: recursive bisection of the site positions at the median of the longer extent into
groups of about the wanted size (power domains are cut along axes turned by 45 degrees, so they
straddle the transport groups, as a grid feeder does). No randomness: the same layout gives the
same topology.

Each level (``site``, ``node``, ``ring``, ``power``) fails as an alternating renewal process per
unit: up for a time drawn from its law of time to failure (exponential, Weibull or two-phase
hyperexponential with balanced means), at a rate of ``per_year`` failures per unit-year (times
``acceleration``), then down for a repair time drawn from its repair law (lognormal, exponential
or Weibull), and so on. The window opens with every unit up and the time to its first failure
drawn from the law's equilibrium residual life (so a decreasing hazard makes no burst of
failures at the start: the rate is ``per_year`` from the first hour). Draws are uniforms from the
``incidents.failures`` stream, one stream per level and unit, turned into times by the laws'
inverse distribution functions (scipy.stats): the same seed gives the same failures.

A failure of a unit takes every site under it (``effect = "down"``: a site outage) or caps their
data capacity (``effect = "cap"``: the sites lose a share ``loss`` of it, as a ring that lost
one side and runs protected on the other); it is one incident, labelled as such.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import simpy
from scipy import special, stats

from telcosim.sim.streams import generator

LEVELS = ("site", "node", "ring", "power")
FAIL_LAWS = ("exponential", "weibull", "hyperexponential")
REPAIR_LAWS = ("lognormal", "exponential", "weibull")
EFFECTS = ("down", "cap")
HOURS_PER_YEAR = 8760.0
MIN_REPAIR_MS = 1000
TOPOLOGY_DEFAULTS = {"sites_per_node": 8, "nodes_per_ring": 6, "sites_per_power_domain": 12}
# The keys of a random_failures incident this module checks, and the ones it replaced.
KEYS = ("topology", "acceleration") + LEVELS
OLD_KEYS = ("mtbf_hours", "mttr_hours", "mttr_sigma")
_LEVEL_KEYS = ("per_year", "law", "shape", "cv", "effect", "loss", "repair")
_REPAIR_KEYS = ("law", "median_hours", "sigma", "mean_hours", "shape")
_REPAIR_DEFAULT = {"law": "lognormal", "median_hours": 4.0, "sigma": 0.8}


# --- validation --------------------------------------------------------------------------------


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _unknown(table: dict, allowed: tuple[str, ...], where: str, problems: list[str]) -> None:
    for k in table:
        if k not in allowed:
            problems.append(f"{where}.{k}: unknown key (allowed: {', '.join(allowed)})")


def _positive(table: dict, key: str, where: str, problems: list[str], *, default: float | None = None,
              above: float = 0.0, strict: bool = True) -> float | None:
    if key not in table:
        if default is None:
            problems.append(f"{where}.{key}: missing")
        return default
    v = table[key]
    if not _num(v) or (v <= above if strict else v < above):
        problems.append(f"{where}.{key}: {v!r} is not a number {'>' if strict else '>='} {above:g}")
        return None
    return float(v)


def _only_with(table: dict, key: str, law: str, needed: str, where: str, problems: list[str]) -> None:
    if key in table and law != needed:
        problems.append(f"{where}.{key}: has no effect with law = {law!r} (it belongs to law = {needed!r})")


def _repair(v: Any, where: str, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(v, dict):
        problems.append(f"{where}: {v!r} is not a table (e.g. {{ law = \"lognormal\", median_hours = 3, sigma = 0.8 }})")
        return None
    _unknown(v, _REPAIR_KEYS, where, problems)
    law = v.get("law", "lognormal")
    if law not in REPAIR_LAWS:
        problems.append(f"{where}.law: {law!r} is not a repair law (choose one of {', '.join(REPAIR_LAWS)})")
        return None
    out: dict[str, Any] = {"law": law}
    if law == "lognormal":
        for k in ("mean_hours", "shape"):
            if k in v:
                problems.append(f"{where}.{k}: has no effect with law = 'lognormal' (give median_hours and sigma)")
        out["median_hours"] = _positive(v, "median_hours", where, problems, default=_REPAIR_DEFAULT["median_hours"])
        out["sigma"] = _positive(v, "sigma", where, problems, default=_REPAIR_DEFAULT["sigma"], strict=False)
    else:
        for k in ("median_hours", "sigma"):
            if k in v:
                problems.append(f"{where}.{k}: has no effect with law = {law!r} (give mean_hours"
                                + (" and shape)" if law == "weibull" else ")"))
        out["mean_hours"] = _positive(v, "mean_hours", where, problems)
        if law == "weibull":
            out["shape"] = _positive(v, "shape", where, problems)
        elif "shape" in v:
            problems.append(f"{where}.shape: has no effect with law = 'exponential'")
    return out


def _level(name: str, v: Any, where: str, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(v, dict):
        problems.append(f"{where}: {v!r} is not a table (e.g. {name} = {{ per_year = 0.5, law = \"weibull\", "
                        "shape = 0.7 }})")
        return None
    _unknown(v, _LEVEL_KEYS, where, problems)
    law = v.get("law", "exponential")
    if law not in FAIL_LAWS:
        problems.append(f"{where}.law: {law!r} is not a law of time to failure (choose one of {', '.join(FAIL_LAWS)})")
        return None
    out: dict[str, Any] = {"law": law, "per_year": _positive(v, "per_year", where, problems)}
    _only_with(v, "shape", law, "weibull", where, problems)
    _only_with(v, "cv", law, "hyperexponential", where, problems)
    if law == "weibull":
        out["shape"] = _positive(v, "shape", where, problems)
    if law == "hyperexponential":
        out["cv"] = _positive(v, "cv", where, problems, above=1.0)
    effect = v.get("effect", "cap" if name == "ring" else "down")
    if effect not in EFFECTS:
        problems.append(f"{where}.effect: {effect!r} is not allowed (choose 'down': the sites stop serving, or "
                        "'cap': they lose a share loss of their data capacity)")
        return None
    out["effect"] = effect
    if effect == "cap":
        loss = v.get("loss", 0.5)
        if not _num(loss) or not 0 <= loss < 1:
            problems.append(f"{where}.loss: {loss!r} is out of range (a share >= 0 and < 1; for no service at all "
                            "use effect = 'down')")
        out["loss"] = float(loss) if _num(loss) else None
    elif "loss" in v:
        problems.append(f"{where}.loss: has no effect with effect = 'down' (set effect = 'cap' to cap the capacity)")
    out["repair"] = _repair(v.get("repair", dict(_REPAIR_DEFAULT)), f"{where}.repair", problems)
    return out


def check(inc: dict, where: str, problems: list[str]) -> dict[str, Any]:
    """The validated topology, acceleration and levels of a ``random_failures`` incident table;
    problems are appended (``where.key: value ...``)."""
    out: dict[str, Any] = {}
    topo = inc.get("topology", {})
    if not isinstance(topo, dict):
        problems.append(f"{where}.topology: {topo!r} is not a table (e.g. {{ sites_per_node = 8 }})")
        topo = {}
    _unknown(topo, tuple(TOPOLOGY_DEFAULTS), f"{where}.topology", problems)
    out["topology"] = {}
    for k, d in TOPOLOGY_DEFAULTS.items():
        v = topo.get(k, d)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            problems.append(f"{where}.topology.{k}: {v!r} is not a whole number >= 1")
        out["topology"][k] = v
    out["acceleration"] = _positive(inc, "acceleration", where, problems, default=1.0)
    given = [name for name in LEVELS if name in inc]
    if not given:
        problems.append(f"{where}: no level fails (give one or more of {', '.join(LEVELS)}, e.g. "
                        "site = { per_year = 0.5, law = \"weibull\", shape = 0.7 })")
    for name in given:
        out[name] = _level(name, inc[name], f"{where}.{name}", problems)
    return out


def old_key_hint(key: str) -> str:
    """What replaced a key of the exponential-only random failures."""
    return (f"{key}: replaced by the laws per level: site = {{ per_year = 8760 / mtbf_hours, law = \"exponential\", "
            "repair = { law = \"lognormal\", median_hours = mttr_hours, sigma = mttr_sigma } } (and node, ring, power)")


# --- topology ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Topology:
    """Per site (index = site id): its aggregation node, ring and power domain."""

    agg_node: np.ndarray      # int32
    ring: np.ndarray          # int32
    power_domain: np.ndarray  # int32

    def units(self, level: str) -> np.ndarray:
        """The unit of each site at ``level``."""
        if level == "site":
            return np.arange(len(self.agg_node), dtype=np.int32)
        if level == "node":
            return self.agg_node
        if level == "ring":
            return self.ring[self.agg_node]
        return self.power_domain

    def columns(self) -> dict[str, np.ndarray]:
        """The topology table's columns, one row per site."""
        n = len(self.agg_node)
        return {"site_id": np.arange(n, dtype=np.int32), "agg_node": self.agg_node,
                "ring": self.ring[self.agg_node].astype(np.int32), "power_domain": self.power_domain}


def _bisect(x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Group the points into ceil(n / size) spatially compact groups of near-equal size: split at
    the median of the longer extent, the number of groups shared in proportion, until one group
    is left. Ties in position are broken by index, so the grouping is fully deterministic."""
    n = len(x)
    out = np.zeros(n, np.int32)
    stack = [(np.arange(n), max(1, -(-n // size)))]
    next_id = 0
    parts = []
    while stack:
        ids, k = stack.pop()
        if k == 1 or len(ids) <= 1:
            parts.append(ids)
            continue
        px, py = x[ids], y[ids]
        key = px if np.ptp(px) >= np.ptp(py) else py
        order = ids[np.lexsort((ids, key))]
        k1 = k // 2
        cut = int(round(len(ids) * k1 / k))
        # Depth first, left first: groups are numbered in the order their regions are reached.
        stack.append((order[cut:], k - k1))
        stack.append((order[:cut], k1))
    for ids in parts:
        out[ids] = next_id
        next_id += 1
    return out


def build_topology(net, sites_per_node: int, nodes_per_ring: int, sites_per_power_domain: int) -> Topology:
    """The topology of ``net``'s sites (see the module's docstring)."""
    site_ids, first = np.unique(net.site_id, return_index=True)
    sx, sy = net.x_km[first], net.y_km[first]
    node = _bisect(sx, sy, sites_per_node)
    n_nodes = int(node.max()) + 1
    nx_ = np.bincount(node, weights=sx, minlength=n_nodes) / np.bincount(node, minlength=n_nodes)
    ny_ = np.bincount(node, weights=sy, minlength=n_nodes) / np.bincount(node, minlength=n_nodes)
    ring = _bisect(nx_, ny_, nodes_per_ring)
    power = _bisect(sx + sy, sx - sy, sites_per_power_domain)
    return Topology(node.astype(np.int32), ring.astype(np.int32), power.astype(np.int32))


# --- laws --------------------------------------------------------------------------------------


def time_to_failure_h(lv: dict[str, Any], acceleration: float, u: np.ndarray, first: bool) -> np.ndarray:
    """Times to failure in hours from pairs of uniforms ``u`` (shape (..., 2)); ``first``: from
    the equilibrium residual life (the time to the next failure seen from a random instant)."""
    u = np.asarray(u, np.float64)
    mean_h = HOURS_PER_YEAR / (lv["per_year"] * acceleration)
    law = lv["law"]
    if law == "exponential":
        return stats.expon.ppf(u[..., 0], scale=mean_h)
    if law == "weibull":
        k = lv["shape"]
        scale = mean_h / math.gamma(1.0 + 1.0 / k)
        if first:  # residual life: F(t) = P(1/k, (t/scale)^k), the regularised lower gamma
            return scale * special.gammaincinv(1.0 / k, u[..., 0]) ** (1.0 / k)
        return stats.weibull_min.ppf(u[..., 0], k, scale=scale)
    # Two exponential phases with balanced means (p_i / rate_i = mean / 2): squared CV = cv^2.
    c2 = lv["cv"] ** 2
    p1 = 0.5 * (1.0 + math.sqrt((c2 - 1.0) / (c2 + 1.0)))
    # The residual life is the same two phases, each with weight 1/2.
    p = np.where(u[..., 1] < (0.5 if first else p1), p1, 1.0 - p1)
    return stats.expon.ppf(u[..., 0], scale=mean_h / (2.0 * p))


def repair_h(rp: dict[str, Any], u: float) -> float:
    """A repair time in hours from a uniform ``u``."""
    if rp["law"] == "lognormal":
        return float(stats.lognorm.ppf(u, rp["sigma"], scale=rp["median_hours"])) if rp["sigma"] > 0 \
            else rp["median_hours"]
    if rp["law"] == "exponential":
        return float(stats.expon.ppf(u, scale=rp["mean_hours"]))
    k = rp["shape"]
    return float(stats.weibull_min.ppf(u, k, scale=rp["mean_hours"] / math.gamma(1.0 + 1.0 / k)))


# --- schedule ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failure of one unit: when, until when, and the sites it took."""

    t_fail_ms: int
    t_repair_ms: int
    level: str
    unit: int
    sites: np.ndarray  # int64, ascending
    first: bool        # the unit's first failure in the window (its up time was a residual life)
    up_ms: int         # the up time before it (since the window opened, for the first)


def schedule(params: dict[str, Any], topo: Topology, sites: np.ndarray, seed: int, until_ms: int) -> list[Failure]:
    """Every failure before ``until_ms`` of the units at each configured level that serve one of
    ``sites``, in time order (ties: level, unit). simpy runs one process per unit."""
    env = simpy.Environment()
    found: list[Failure] = []
    acc = params["acceleration"]

    def unit_process(level: str, li: int, unit: int, members: np.ndarray, lv: dict[str, Any]):
        g = generator(seed, "incidents.failures", (li << 24) | unit)
        first = True
        while True:
            up_ms = max(int(float(time_to_failure_h(lv, acc, g.random(2), first)) * 3_600_000), 1)
            yield env.timeout(up_ms)
            t_fail = int(env.now)
            down_ms = max(int(repair_h(lv["repair"], g.random()) * 3_600_000), MIN_REPAIR_MS)
            found.append(Failure(t_fail, t_fail + down_ms, level, unit, members, first, up_ms))
            first = False
            yield env.timeout(down_ms)

    for li, level in enumerate(LEVELS):
        lv = params.get(level)
        if lv is None:
            continue
        of_site = topo.units(level)
        for unit in np.unique(of_site[sites]):
            members = np.flatnonzero(of_site == unit).astype(np.int64)
            env.process(unit_process(level, li, int(unit), members, lv))
    env.run(until=until_ms)
    return sorted(found, key=lambda f: (f.t_fail_ms, LEVELS.index(f.level), f.unit))
