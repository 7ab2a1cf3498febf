"""Differentially private releases of calibration targets, with OpenDP, and the privacy ledger.

Where the privacy boundary is (see ``docs/privacy.md``):

1. *Contribution bounding* (this project's code, per person): a person's rows are reduced to at
   most ``max_rows`` rows by a rule that reads only that person's own rows (e.g. "the first 10
   answered calls of a caller"), so adding or removing one person changes the bounded data set by
   at most ``max_rows`` rows: a symmetric distance of ``max_rows``. Every cap, clamp bound, bin edge
   and candidate grid is a public constant in :mod:`calibration.targets`, never derived from data.
2. *Measurement* (OpenDP): the bounded rows go into an OpenDP measurement whose input metric is the
   symmetric distance with ``d_in = max_rows``: ``count_by_categories`` (histograms), ``clamp`` +
   ``sum`` (bounded sums) followed by Laplace or Gaussian noise, or ``private_quantile`` (an
   exponential-mechanism quantile over public candidates). OpenDP's own ``map(d_in)`` gives the
   privacy loss that goes into the ledger.
3. *Post-processing*: everything after a release (ratios, normalised shapes, lognormal fits) reads
   only released values, which costs no privacy.

Composition is *basic (sequential)*: the total epsilon and delta are the sums over releases. The
budget is split equally over the planned private targets (with ``disjoint_sources`` the split is
per data source: separate sources are then taken to hold disjoint people, parallel composition),
then equally over each target's releases.

OpenDP draws its noise from the operating system's secure generator and cannot be seeded, so
tests check released values statistically. :class:`ExactReleaser` computes the same quantities
without noise (for tests and comparisons only; never used by the CLI).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

COMPOSITION = "basic sequential composition: total epsilon = sum of epsilons, total delta = sum of deltas"
AGGREGATE_NOTE = "aggregate, no individual-level guarantee"


@dataclass
class LedgerEntry:
    """One noisy release. ``sensitivity``: d_in (rows one person may change) and the resulting
    L1/L2 sensitivity of the released quantity, as OpenDP computes it."""

    target: str
    release: str
    mechanism: str
    max_rows_per_person: int
    sensitivity: float
    noise_scale: float
    epsilon: float
    delta: float
    bounds: list | None = None


@dataclass
class Ledger:
    epsilon_budget: float
    delta_budget: float
    entries: list[LedgerEntry]

    def totals(self) -> dict[str, float]:
        return {"epsilon": float(sum(e.epsilon for e in self.entries)),
                "delta": float(sum(e.delta for e in self.entries))}

    def to_json(self) -> dict:
        return {"composition": COMPOSITION, "budget": {"epsilon": self.epsilon_budget,
                                                       "delta": self.delta_budget},
                "spent": self.totals(), "releases": [asdict(e) for e in self.entries]}


def _dp():
    import opendp.prelude as dp  # lazy: opendp is slow to import; only noisy releases need it

    dp.enable_features("contrib")
    return dp


class TargetBudget:
    """The share of the budget of one target, split equally over its ``n_releases`` releases."""

    def __init__(self, releaser: Releaser, target: str, epsilon: float, delta: float, n_releases: int):
        self.releaser, self.target = releaser, target
        self.epsilon, self.delta = epsilon, delta
        self.n_releases, self.used = n_releases, 0

    def _next(self) -> tuple[float, float]:
        if self.used >= self.n_releases:
            raise RuntimeError(f"{self.target}: more releases than the {self.n_releases} planned")
        self.used += 1
        return self.epsilon / self.n_releases, self.delta / self.n_releases

    def histogram(self, name: str, categories: np.ndarray, n_categories: int, max_rows: int) -> np.ndarray:
        """Counts of ``categories`` (ints in [0, n_categories)) with noise; one person <= max_rows rows."""
        eps, delta = self._next()
        return self.releaser.histogram(self.target, name, np.asarray(categories, np.int64), n_categories,
                                       max_rows, eps, delta)

    def bounded_sum(self, name: str, values: np.ndarray, bounds: tuple[float, float], max_rows: int) -> float:
        """Sum of ``values`` clamped to public ``bounds`` with noise; one person <= max_rows rows."""
        eps, delta = self._next()
        return self.releaser.bounded_sum(self.target, name, np.asarray(values, float), bounds, max_rows,
                                         eps, delta)

    def quantile(self, name: str, values: np.ndarray, candidates: np.ndarray, alpha: float,
                 max_rows: int) -> float:
        """The ``alpha`` quantile of ``values``, chosen among public ``candidates`` (pure DP)."""
        eps, _ = self._next()
        return self.releaser.quantile(self.target, name, np.asarray(values, float), np.asarray(candidates, float),
                                      alpha, max_rows, eps)


class Releaser:
    """Makes OpenDP releases and records each in the ledger.

    ``epsilon`` > 0 is the whole budget; ``delta`` > 0 selects the Gaussian mechanism for counts and
    sums (zCDP converted to (epsilon, delta)), otherwise Laplace (pure epsilon-DP). Quantiles always
    use the exponential mechanism (pure epsilon-DP, no delta)."""

    exact = False

    def __init__(self, epsilon: float, delta: float = 0.0, plan: dict[str, tuple[str, int]] | None = None,
                 disjoint_sources: bool = False):
        if not (np.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon must be a positive number, got {epsilon}")
        if not (0 <= delta < 1):
            raise ValueError(f"delta must be in [0, 1), got {delta}")
        self.epsilon, self.delta = float(epsilon), float(delta)
        self.ledger = Ledger(self.epsilon, self.delta, [])
        self.plan = dict(plan or {})
        self.disjoint_sources = disjoint_sources

    # budget --------------------------------------------------------------------------------

    def share(self, target: str) -> tuple[float, float]:
        """(epsilon, delta) of one planned target: equal shares over all targets (or over the targets
        of its source, with disjoint sources)."""
        if target not in self.plan:
            raise KeyError(f"target {target!r} was not planned")
        source = self.plan[target][0]
        peers = [t for t, (s, _) in self.plan.items() if s == source] if self.disjoint_sources else self.plan
        return self.epsilon / len(peers), self.delta / len(peers)

    def target(self, target: str) -> TargetBudget:
        eps, delta = self.share(target)
        return TargetBudget(self, target, eps, delta, self.plan[target][1])

    # mechanisms ----------------------------------------------------------------------------

    def _record(self, target, release, mechanism, max_rows, sens, scale, eps, delta, bounds=None):
        self.ledger.entries.append(LedgerEntry(target, release, mechanism, int(max_rows), float(sens), float(scale),
                                               float(eps), float(delta), list(bounds) if bounds else None))

    def _noise(self, dp, chain, max_rows: int, eps: float, delta: float):
        """Calibrate the scale of ``chain(scale)`` to (eps, delta) at d_in = max_rows; returns the
        measurement, its scale and the spent (eps, delta)."""
        if delta > 0:
            def make(s):
                return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(chain(s)), delta)
            scale = _search(make, max_rows, (eps, delta))
            m = make(scale)
            spent = m.map(max_rows)
            return m, scale, spent[0], spent[1]
        scale = _linear_scale(chain, max_rows, eps)
        m = chain(scale)
        return m, scale, m.map(max_rows), 0.0

    def histogram(self, target, name, categories, n_categories, max_rows, eps, delta) -> np.ndarray:
        dp = _dp()
        space = dp.vector_domain(dp.atom_domain(T=dp.i64)), dp.symmetric_distance()
        cats = list(range(int(n_categories)))
        gauss = delta > 0
        mo = dp.L2Distance[int] if gauss else dp.L1Distance[int]
        counter = space >> dp.t.then_count_by_categories(categories=cats, null_category=False, MO=mo)

        def chain(scale):
            return counter >> (dp.m.then_gaussian(scale) if gauss else dp.m.then_laplace(scale))
        m, scale, e, d = self._noise(dp, chain, max_rows, eps, delta)
        out = np.asarray(m([int(c) for c in categories]), dtype=float)
        self._record(target, name, "gaussian" if gauss else "laplace", max_rows, counter.map(max_rows), scale, e, d)
        return out

    def bounded_sum(self, target, name, values, bounds, max_rows, eps, delta) -> float:
        dp = _dp()
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
        lo, hi = float(bounds[0]), float(bounds[1])
        summer = space >> dp.t.then_clamp((lo, hi)) >> dp.t.then_sum()
        gauss = delta > 0

        def chain(scale):
            return summer >> (dp.m.then_gaussian(scale) if gauss else dp.m.then_laplace(scale))
        m, scale, e, d = self._noise(dp, chain, max_rows, eps, delta)
        out = float(m([float(v) for v in values]))
        self._record(target, name, "gaussian" if gauss else "laplace", max_rows, summer.map(max_rows), scale, e, d,
                     bounds=(lo, hi))
        return out

    def quantile(self, target, name, values, candidates, alpha, max_rows, eps) -> float:
        dp = _dp()
        cands = sorted({float(c) for c in candidates})

        def chain(scale):
            return dp.m.make_private_quantile(dp.vector_domain(dp.atom_domain(T=float, nan=False)),
                                              dp.symmetric_distance(), dp.max_divergence(),
                                              candidates=cands, alpha=float(alpha), scale=scale)
        scale = _linear_scale(chain, max_rows, eps)
        m = chain(scale)
        lo, hi = cands[0], cands[-1]
        out = float(m([float(min(max(v, lo), hi)) for v in values]))
        self._record(target, name, f"exponential (quantile {alpha})", max_rows, max_rows, scale, m.map(max_rows), 0.0,
                     bounds=(lo, hi))
        return out


def _linear_scale(chain, d_in, eps: float) -> float:
    """Smallest scale (to 1e-9 relative) with privacy loss <= eps, for mechanisms whose loss is
    inversely proportional to the scale (Laplace, exponential mechanism)."""
    scale = chain(1.0).map(d_in) / eps
    while not chain(scale).check(d_in, eps):
        scale *= 1 + 1e-9
    return scale


def _search(make, d_in, d_out) -> float:
    """Smallest scale (to 1e-9 relative) whose measurement passes OpenDP's ``check(d_in, d_out)``:
    a bracket found by doubling, then bisection."""
    # lazy: opendp is slow to import; only noisy releases need it
    from opendp.mod import OpenDPException

    def ok(scale):
        try:
            return make(scale).check(d_in, d_out)
        except OpenDPException:  # a loss too large to represent: not within budget
            return False

    hi = 1.0
    while not ok(hi):
        hi *= 2.0
    lo = hi / 2.0
    while lo > 1e-12 and ok(lo):
        lo /= 2.0
    while hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2.0
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


class ExactReleaser(Releaser):
    """The same releases without noise: for tests and for comparing a DP value with the truth.
    Its ledger records zero epsilon; its output must never be published as private."""

    exact = True

    def __init__(self, plan=None, disjoint_sources: bool = False):
        super().__init__(1.0, 0.0, plan, disjoint_sources)

    def histogram(self, target, name, categories, n_categories, max_rows, eps, delta):
        self._record(target, name, "exact (no noise)", max_rows, max_rows, 0.0, 0.0, 0.0)
        return np.bincount(categories, minlength=n_categories).astype(float)[:n_categories]

    def bounded_sum(self, target, name, values, bounds, max_rows, eps, delta):
        self._record(target, name, "exact (no noise)", max_rows, max_rows * max(abs(bounds[0]), abs(bounds[1])),
                     0.0, 0.0, 0.0, bounds=bounds)
        return float(np.clip(values, bounds[0], bounds[1]).sum())

    def quantile(self, target, name, values, candidates, alpha, max_rows, eps):
        self._record(target, name, "exact (no noise)", max_rows, max_rows, 0.0, 0.0, 0.0)
        if len(values) == 0:
            return float("nan")
        c = np.sort(np.asarray(candidates, float))
        q = float(np.quantile(np.clip(values, c[0], c[-1]), alpha))
        return float(c[np.argmin(np.abs(c - q))])  # nearest public candidate, as the DP release


def cap_rows(person: np.ndarray, max_rows: int, order: np.ndarray | None = None) -> np.ndarray:
    """Indices (ascending) of the rows kept so that each person has at most ``max_rows``.

    A person with more rows keeps ``max_rows`` of them spread evenly over their rows sorted by
    ``order`` (default: row order): ranks ``floor(j * n / max_rows)``. The rule reads only that
    person's own rows, so one person changes the kept rows by at most ``max_rows``."""
    person = np.asarray(person)
    n = len(person)
    if n == 0:
        return np.array([], np.int64)
    key = np.arange(n) if order is None else np.asarray(order)
    idx = np.lexsort((key, person))
    p = person[idx]
    starts = np.r_[0, np.flatnonzero(p[1:] != p[:-1]) + 1]
    sizes = np.diff(np.r_[starts, n])
    size = np.repeat(sizes, sizes)
    rank = np.arange(n) - np.repeat(starts, sizes)
    bucket = rank * max_rows // size
    prev = (rank - 1) * max_rows // size
    keep = (size <= max_rows) | (rank == 0) | (bucket != prev)
    return np.sort(idx[keep])


# --------------------------------------------------------------------------
# noise of a release, from the released values and the ledger alone (post-processing)
# --------------------------------------------------------------------------

NOISE_DRAWS = 1000  # draws of the mechanisms' noise for a target's noise figure
NOISE_SEED = 19  # fixed: a target's noise figure is a deterministic function of its released values
# The exponential-mechanism quantile misses the true rank by about sqrt(2) x its scale (rank
# positions): its rank error is Laplace-like. Measured with OpenDP 0.16 on 2,000 distinct values,
# 400 releases each: sd / scale 1.40-1.43 at alpha 0.5 and 1.12-1.29 at alpha 0.9 (so this is
# conservative for the p90).
RANK_SD_PER_SCALE = math.sqrt(2.0)


def release_entry(ledger: Ledger, target: str, release: str) -> LedgerEntry:
    """The ledger entry of one release of a target (the last one of that name)."""
    for e in reversed(ledger.entries):
        if e.target == target and e.release == release:
            return e
    raise KeyError(f"{target}: no release {release!r} in the ledger")


def noise_draws(ledger: Ledger, target: str, released: dict[str, Any], draws: int = NOISE_DRAWS,
                seed: int = NOISE_SEED) -> dict[str, np.ndarray]:
    """Plausible re-releases of a target: each released value plus a fresh draw of its mechanism's
    noise at the ledger's scale (Laplace, or Gaussian with the scale as its sd), ``draws`` x the
    value's shape. Reads only released values and public scales: post-processing, no privacy cost.
    An exact (noise-free) release comes back as ``draws`` copies of itself."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, v in released.items():
        e = release_entry(ledger, target, name)
        v = np.asarray(v, float)
        shape = (draws, *v.shape)
        if e.noise_scale <= 0:
            out[name] = np.broadcast_to(v, shape).copy()
        elif e.mechanism == "gaussian":
            out[name] = v + rng.normal(0.0, e.noise_scale, shape)
        else:
            out[name] = v + rng.laplace(0.0, e.noise_scale, shape)
    return out


def spread(values: np.ndarray, scale: str, max_undefined: float = 0.1) -> float:
    """Standard deviation of re-released values on the objective's scale: of ln(value) (``log``)
    or of the value (``abs``); infinite when more than ``max_undefined`` of them are undefined
    (not finite, or not positive on the log scale): the noise can unmake the statistic."""
    v = np.asarray(values, float)
    ok = np.isfinite(v) & ((v > 0) if scale == "log" else True)
    if ok.mean() < 1.0 - max_undefined:
        return math.inf
    v = np.log(v[ok]) if scale == "log" else v[ok]
    return float(v.std()) if len(v) > 1 else 0.0


def noise_sd(entry: LedgerEntry) -> float:
    """The standard deviation of a count or sum release's noise: sqrt(2) x the Laplace scale, the
    Gaussian's scale."""
    return entry.noise_scale * (1.0 if entry.mechanism == "gaussian" else math.sqrt(2.0))


def quantile_spread(ledger: Ledger, target: str, release: str, n_rows: float, alpha: float,
                    log_spread: float, n_rows_sd: float = 0.0) -> float:
    """Standard deviation of ln(released quantile): the exponential mechanism's rank error
    (:data:`RANK_SD_PER_SCALE` x its scale, in rows), as a share of the (released) number of rows
    ``n_rows`` taken two of its noise sds ``n_rows_sd`` low (conservative: a count the noise inflated
    would make the quantile look better measured than it is), through the slope of ln(quantile) in
    alpha for a lognormal of log-sd ``log_spread`` (ln q(alpha) = ln q50 + z(alpha) log_spread, slope
    log_spread / phi(z)). Infinite when the rank error reaches 40% of the rows or that count is not
    positive: the release says nothing."""
    e = release_entry(ledger, target, release)
    if e.noise_scale <= 0:
        return 0.0
    n_rows = n_rows - 2.0 * n_rows_sd
    if not (n_rows > 0):
        return math.inf
    share = RANK_SD_PER_SCALE * e.noise_scale / n_rows
    if share >= 0.4:
        return math.inf
    z = _probit(alpha)
    return float(log_spread * share / (math.exp(-z * z / 2) / math.sqrt(2 * math.pi)))


def _probit(p: float) -> float:
    return NormalDist().inv_cdf(p)
