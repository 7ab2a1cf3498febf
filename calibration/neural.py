"""Neural calibration: an amortised posterior over the simulator's knobs given summary statistics.

The search (:mod:`calibration.calibrate`) runs the simulator tens of times for every targets
document. This module spends the simulations once, up front, and then answers any targets
document in well under a second:

1. **Training set** (:func:`simulate_training_set`): ``runs`` small simulator runs (``subscribers``
   subscribers, one day, a different scenario seed each, so the simulator's own noise is in the
   data), their knobs drawn from the prior: the public search ranges of
   :data:`calibration.calibrate.PARAMS`, uniform (log-uniform for ``log`` knobs) by a seeded Latin
   hypercube. Each run gives the scalar statistics of :data:`calibration.calibrate.STATS`
   (:data:`STAT_NAMES`), computed by :func:`calibration.calibrate.run_statistics` with the
   targets' own definitions.
2. **Posterior network** (:class:`NeuralPosterior`, registered as ``"neural-calibration"``): an
   ensemble of small MLPs, each mapping (standardised statistics with missing ones zeroed, the
   missing-mask) to a Gaussian per knob in an unbounded space (logit of the knob's position in
   its range). Trained by Gaussian negative log-likelihood with random masking of statistics
   (single statistics and whole groups), so a targets document with only some statistics (only
   CDR figures, say) gets the posterior given those: knobs it does not inform come back with
   prior-wide intervals. The ensemble's members, mixed equally, give the posterior: median (the
   estimate), mean, sd and a 90% interval per knob, mapped back to the knob's scale.
3. **Answer** (:func:`calibrate`): the targets document's statistics in, each block of knobs
   (:func:`calibration.calibrate.blocks`) answered from its own statistics, a
   :class:`calibration.calibrate.FitResult` out (so the search's TOML, ledger sidecar and report
   writers serve both methods), with the intervals added. Checking runs (unless ``check=False``)
   at the start, at the estimate and at the per-block better of the two: the result is the best
   point evaluated, so it is never worse than the start.

:func:`train_or_load` keys a cache folder by everything that determines the model (base
scenario, run size, number of runs, seed, ranges, statistics, hyperparameters, telcosim version),
so a second call with the same settings loads instead of simulating.

Torch is imported lazily, as :mod:`models.base` requires.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from telcosim import sim
from telcosim.calibration import calibrate as C
from telcosim.models.base import (
    SIDECAR_FILE,
    LearnedGenerator,
    ModelError,
    register,
    set_torch_threads,
)
from telcosim.sim.profile import load_profile

QUANTILES = (0.05, 0.5, 0.95)  # the interval (5%, 95%) and the estimate (median)
POSTERIOR_DRAWS = 4000  # draws from the ensemble mixture for the quantiles of an answer


def param_names() -> list[str]:
    return list(C.PARAMS)


def stat_names() -> list[str]:
    """The scalar statistics the network reads (the STATS of the search, profiles left out)."""
    return [s.name for s in C.STATS if s.group != "profile"]


def stat_groups() -> dict[str, str]:
    """Statistic -> masking group: call durations, other CDR figures, location figures, handovers."""
    out = {}
    for s in C.STATS:
        if s.group == "profile":
            continue
        if s.name.startswith("call_duration"):
            out[s.name] = "duration"
        elif s.group == "cdr":
            out[s.name] = s.name
        elif "mobility.speed_kmh_median" in s.params or "mobility.ping_pong_prob" in s.params:
            out[s.name] = "handover"
        else:
            out[s.name] = "location"
    return out


# --------------------------------------------------------------------------
# transforms: knobs <-> unbounded space, statistics -> network inputs
# --------------------------------------------------------------------------

EDGE = 1e-3  # positions in the range are kept in [EDGE, 1 - EDGE] before the logit


def _ranges(names: list[str]) -> list[tuple[float, float, bool]]:
    P = C.PARAMS
    return [(P[n].low, P[n].high, P[n].log) for n in names]


def to_unit(values: np.ndarray, ranges) -> np.ndarray:
    """Knob values (rows x knobs) -> position in each range, 0..1 (log scale for log knobs)."""
    v = np.asarray(values, np.float64)
    out = np.empty_like(v)
    for j, (lo, hi, log) in enumerate(ranges):
        out[:, j] = ((np.log(v[:, j]) - math.log(lo)) / (math.log(hi) - math.log(lo)) if log
                     else (v[:, j] - lo) / (hi - lo))
    return out


def from_unit(u: np.ndarray, ranges) -> np.ndarray:
    u = np.clip(np.asarray(u, np.float64), 0.0, 1.0)
    out = np.empty_like(u)
    for j, (lo, hi, log) in enumerate(ranges):
        out[:, j] = (np.exp(math.log(lo) + u[:, j] * (math.log(hi) - math.log(lo))) if log
                     else lo + u[:, j] * (hi - lo))
    return out


def to_latent(values: np.ndarray, ranges) -> np.ndarray:
    u = np.clip(to_unit(values, ranges), EDGE, 1 - EDGE)
    return np.log(u) - np.log1p(-u)


def from_latent(z: np.ndarray, ranges) -> np.ndarray:
    return from_unit(1.0 / (1.0 + np.exp(-np.asarray(z, np.float64))), ranges)


def stat_transform(names: list[str], values: np.ndarray) -> np.ndarray:
    """Statistics (rows x stats) on the scale of their distance: log for ``log`` terms, as is for
    ``abs`` terms; NaN (missing, or not positive where a log is taken) stays NaN."""
    v = np.asarray(values, np.float64).copy()
    for j, n in enumerate(names):
        if C.STAT_BY_NAME[n].distance == "log":
            col = v[:, j]
            with np.errstate(invalid="ignore", divide="ignore"):
                v[:, j] = np.where(col > 0, np.log(np.where(col > 0, col, 1.0)), np.nan)
    return v


# --------------------------------------------------------------------------
# training set
# --------------------------------------------------------------------------


def prior_design(n: int, names: list[str], seed: int) -> np.ndarray:
    """``n`` knob vectors from the prior (uniform / log-uniform over the public ranges), a seeded
    Latin hypercube (every knob's range covered evenly with few runs)."""
    from scipy.stats import qmc  # lazy: scipy.stats takes seconds to import

    u = qmc.LatinHypercube(d=len(names), rng=np.random.default_rng(seed)).random(n)
    return from_unit(u, _ranges(names))


def simulate_training_set(n_runs: int, *, subscribers: int = 1000, seed: int = 0, scenario: str | None = None,
                          sets: list[str] | None = None, partial: Path | None = None,
                          progress: Callable[[int, float], None] | None = None) -> dict[str, np.ndarray]:
    """``n_runs`` simulator runs at knobs drawn from the prior; returns ``{"params": runs x knobs,
    "stats": runs x statistics, "seeds": runs}``. Run ``i`` uses scenario seed ``seed * 100003 + i + 1``.
    With ``partial`` (an .npz path), the runs done so far are saved there every few runs and a
    later call with the same arguments continues from them."""
    names, snames = param_names(), stat_names()
    base = C.base_scenario(scenario, list(sets or []))
    theta = prior_design(n_runs, names, seed)
    stats = np.full((n_runs, len(snames)), np.nan)
    seeds = np.array([seed * 100003 + i + 1 for i in range(n_runs)], np.int64)
    done = 0
    if partial is not None and Path(partial).is_file():
        with np.load(partial) as z:
            if np.array_equal(z["params"], theta) and np.array_equal(z["seeds"], seeds):
                done = int(z["done"])
                stats[:done] = z["stats"][:done]

    def save(k: int) -> None:
        if partial is not None:
            tmp = Path(partial).with_name(f".{Path(partial).stem}.tmp.npz")
            np.savez(tmp, params=theta, stats=stats, seeds=seeds, done=k)
            tmp.replace(partial)

    workdir = Path(tempfile.mkdtemp(prefix="telcosim-neural-"))
    try:
        for i in range(done, n_runs):
            if i > done and i % 5 == 0:
                save(i)
            t0 = time.perf_counter()
            out = C.simulate(base, dict(zip(names, theta[i].tolist(), strict=True)), subscribers, int(seeds[i]),
                             workdir)
            try:
                st = C.run_statistics(out, {"cdr", "mobility"})
            finally:
                shutil.rmtree(out.parent, ignore_errors=True)
            stats[i] = [st.get(s, np.nan) if isinstance(st.get(s), int | float) else np.nan for s in snames]
            if progress:
                progress(i, time.perf_counter() - t0)
        save(n_runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"params": theta, "stats": stats, "seeds": seeds}


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------


def _ensemble_class():
    import torch  # lazy: torch is optional and slow to import
    from torch import nn

    class Ensemble(nn.Module):
        """``members`` MLPs (statistics + mask -> mean and log-variance per knob)."""

        def __init__(self, n_in: int, n_out: int, hidden: int, members: int) -> None:
            super().__init__()
            self.nets = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                              nn.Linear(hidden, 2 * n_out)) for _ in range(members))

        def forward(self, x, mask):
            """x: rows x stats (standardised, 0 where missing); mask: 1 where present.
            Returns (members x rows x knobs) means and log-variances."""
            inp = torch.cat([x * mask, mask], dim=-1)
            outs = [net(inp).chunk(2, dim=-1) for net in self.nets]
            mean = torch.stack([o[0] for o in outs])
            logvar = torch.stack([o[1] for o in outs]).clamp(-9.0, 4.0)
            return mean, logvar

    return Ensemble


@register("neural-calibration")
class NeuralPosterior(LearnedGenerator):
    """Amortised posterior of the simulator's knobs given summary statistics (see the module doc).

    ``data``: ``{"params": runs x knobs, "stats": runs x statistics}`` in the knobs' and
    statistics' own units (NaN statistics are treated as missing). :meth:`posterior` answers a
    set of statistics; :meth:`sample` draws knob vectors with no statistic given (the learned
    prior), as the contract's unconditional sampler."""

    defaults = {"hidden": 64, "members": 5, "epochs": 1500, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4,
                "seed": 0, "params": None, "stats": None}
    tiny_params = {"hidden": 16, "members": 2, "epochs": 3}
    sources = ("telcosim simulator runs at knobs drawn from the public search ranges",)

    def _names(self, data=None) -> tuple[list[str], list[str]]:
        p = self.params.get("params") or param_names()
        s = self.params.get("stats") or stat_names()
        return list(p), list(s)

    def _prepare(self, data) -> None:
        if not isinstance(data, dict) or "params" not in data or "stats" not in data:
            got = ", ".join(data) if isinstance(data, dict) else type(data).__name__
            raise ModelError(f"model 'neural-calibration': training data must be a dict with 'params' (runs x "
                             f"knobs) and 'stats' (runs x statistics); got {got}")
        pn, sn = self._names()
        unknown = [n for n in pn if n not in C.PARAMS]
        if unknown:
            raise ModelError(f"model 'neural-calibration': hyperparameter 'params': unknown knob(s) {unknown}")
        unknown = [n for n in sn if n not in C.STAT_BY_NAME]
        if unknown:
            raise ModelError(f"model 'neural-calibration': hyperparameter 'stats': unknown statistic(s) {unknown}")
        P, S = np.asarray(data["params"], np.float64), np.asarray(data["stats"], np.float64)
        if P.ndim != 2 or P.shape[1] != len(pn) or S.ndim != 2 or S.shape[1] != len(sn):
            raise ModelError(f"model 'neural-calibration': training data shapes params {P.shape}, stats {S.shape}; "
                             f"expected runs x {len(pn)} and runs x {len(sn)}")
        T = stat_transform(sn, S)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(np.isfinite(T), T, np.nan), axis=0)
            sd = np.nanstd(np.where(np.isfinite(T), T, np.nan), axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        sd = np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)
        groups = stat_groups()
        with np.errstate(invalid="ignore"):
            lo = np.nanmin(np.where(np.isfinite(T), T, np.nan), axis=0)
            hi = np.nanmax(np.where(np.isfinite(T), T, np.nan), axis=0)
        self.spec = {"params": pn, "stats": sn, "ranges": [list(r) for r in _ranges(pn)],
                     "stat_mean": mean.tolist(), "stat_sd": sd.tolist(),
                     "stat_min": [float(x) if np.isfinite(x) else None for x in lo],  # None: never seen
                     "stat_max": [float(x) if np.isfinite(x) else None for x in hi],
                     "stat_groups": [groups.get(s, s) for s in sn], "latent": "logit of the position in the range",
                     "quantiles": list(QUANTILES), "training_runs": int(P.shape[0]),
                     "stats_missing_share": [round(float(x), 4) for x in np.mean(~np.isfinite(T), axis=0)]}

    def _build(self):
        return _ensemble_class()(len(self.spec["stats"]), len(self.spec["params"]), int(self.params["hidden"]),
                                 int(self.params["members"]))

    def _inputs(self, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        T = stat_transform(self.spec["stats"], np.atleast_2d(np.asarray(stats, np.float64)))
        mask = np.isfinite(T)
        if "stat_min" in self.spec:  # a target beyond every training run is answered as at the nearest edge
            lo = np.array([-np.inf if x is None else x for x in self.spec["stat_min"]], float)
            hi = np.array([np.inf if x is None else x for x in self.spec["stat_max"]], float)
            T = np.clip(T, lo, hi)
        x = (np.where(mask, T, 0.0) - np.asarray(self.spec["stat_mean"])) / np.asarray(self.spec["stat_sd"])
        return np.where(mask, x, 0.0), mask.astype(np.float64)

    def _random_masks(self, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
        """Training masks: a third of rows keep every statistic, a third drop whole groups (each with
        probability 1/2), a third drop single statistics (each with probability 0.3)."""
        n, k = base.shape
        groups = self.spec["stat_groups"]
        uniq = sorted(set(groups))
        gi = np.array([uniq.index(g) for g in groups])
        kind = rng.integers(0, 3, n)
        drop_group = rng.random((n, len(uniq))) < 0.5
        drop_single = rng.random((n, k)) < 0.3
        keep = np.ones((n, k), bool)
        keep[kind == 1] = ~drop_group[kind == 1][:, gi]
        keep[kind == 2] = ~drop_single[kind == 2]
        return base * keep

    def _fit(self, data, device, rng) -> None:
        import torch  # lazy: torch is optional and slow to import

        P = np.asarray(data["params"], np.float64)
        x, mask = self._inputs(np.asarray(data["stats"], np.float64))
        z = to_latent(P, [tuple(r) for r in self.spec["ranges"]])
        X = torch.tensor(x, dtype=torch.float32, device=device)
        Z = torch.tensor(z, dtype=torch.float32, device=device)
        model = self.module
        opt = torch.optim.AdamW(model.parameters(), lr=float(self.params["lr"]),
                                weight_decay=float(self.params["weight_decay"]))
        epochs = int(self.params["epochs"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
        n = len(P)
        members = int(self.params["members"])
        bs = min(int(self.params["batch_size"]), n)
        losses = []
        for _ in range(epochs):
            # each member sees its own bootstrap-free shuffle and masks (diversity of the ensemble)
            order = np.stack([rng.permutation(n) for _ in range(members)])
            masks = np.stack([self._random_masks(rng, mask) for _ in range(members)])
            tot = 0.0
            for b in range(0, n, bs):
                idx = order[:, b:b + bs]
                opt.zero_grad()
                loss = 0.0
                for m, net in enumerate(model.nets):
                    ii = torch.as_tensor(idx[m], device=device)
                    mk = torch.tensor(masks[m][idx[m]], dtype=torch.float32, device=device)
                    out = net(torch.cat([X[ii] * mk, mk], dim=-1))
                    mean, logvar = out.chunk(2, dim=-1)
                    logvar = logvar.clamp(-9.0, 4.0)
                    loss = loss + 0.5 * (((Z[ii] - mean) ** 2) * torch.exp(-logvar) + logvar).sum(1).mean()
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * idx.shape[1] / members
            sched.step()
            losses.append(round(tot / n, 5))
        self.history = {"nll": losses[:: max(1, epochs // 50)] + losses[-1:]}

    # -- answers -----------------------------------------------------------------------------------
    def _mixture(self, stats: np.ndarray):
        import torch  # lazy: torch is optional and slow to import

        x, mask = self._inputs(stats)
        self.module.eval()
        with torch.no_grad():
            mean, logvar = self.module(torch.tensor(x, dtype=torch.float32), torch.tensor(mask, dtype=torch.float32))
        return mean[:, 0].double(), logvar[:, 0].double()  # members x knobs

    def _draws(self, stats: np.ndarray, n: int, gen) -> np.ndarray:
        import torch  # lazy: torch is optional and slow to import

        mean, logvar = self._mixture(stats)
        members = mean.shape[0]
        which = torch.randint(0, members, (n,), generator=gen)
        eps = torch.randn(n, mean.shape[1], generator=gen, dtype=torch.float64)
        z = mean[which] + torch.exp(0.5 * logvar[which]) * eps
        return from_latent(z.numpy(), [tuple(r) for r in self.spec["ranges"]])

    def _sample(self, n, gen):
        return {"params": self._draws(np.full(len(self.spec["stats"]), np.nan), n, gen)}

    def posterior(self, stats: dict[str, float], *, seed: int = 0, draws: int = POSTERIOR_DRAWS) -> dict[str, dict]:
        """Per knob: ``median`` (the estimate), ``mean``, ``sd``, ``q05``, ``q95`` of the posterior
        given ``stats`` (statistic name -> value in its own unit; absent or NaN = unknown)."""
        import torch  # lazy: torch is optional and slow to import

        if not self.fitted:
            raise ModelError("model 'neural-calibration': not fitted or loaded")
        unknown = sorted(set(stats) - set(self.spec["stats"]))
        if unknown:
            raise ModelError(f"model 'neural-calibration': unknown statistic(s) {', '.join(unknown)}; "
                             f"known: {', '.join(self.spec['stats'])}")
        vec = np.array([float(stats.get(s, np.nan)) if stats.get(s) is not None else np.nan
                        for s in self.spec["stats"]])
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            d = self._draws(vec, int(draws), gen)
        out = {}
        for j, name in enumerate(self.spec["params"]):
            col = d[:, j]
            q = np.quantile(col, QUANTILES)
            out[name] = {"median": float(q[1]), "q05": float(q[0]), "q95": float(q[2]),
                         "mean": float(col.mean()), "sd": float(col.std())}
        return out

    @classmethod
    def toy_data(cls, seed: int) -> dict[str, np.ndarray]:
        """Made-up (knobs, statistics) pairs: each statistic a noisy function of the knobs."""
        rng = np.random.default_rng(seed)
        names, snames = param_names(), stat_names()
        P = prior_design(64, names, seed)
        U = to_unit(P, _ranges(names))
        W = rng.normal(size=(len(names), len(snames)))
        S = np.exp(U @ W * 0.5 + rng.normal(0, 0.05, (64, len(snames))))
        return {"params": P, "stats": S}


# --------------------------------------------------------------------------
# cache: simulate and train once per setting
# --------------------------------------------------------------------------


def cache_key(base, *, subscribers: int, runs: int, seed: int, hyper: dict) -> str:
    """sha256 over what determines the surrogate: resolved base scenario, run size and count,
    seed, the knobs' ranges, the statistics, the hyperparameters and telcosim's version."""
    raw = C._drop_nan(base.to_dict())
    for k in ("population", "time"):
        raw.get(k, {}).pop("subscribers" if k == "population" else "days", None)
    raw.pop("seed", None)
    doc = {"scenario": raw, "subscribers": subscribers, "runs": runs, "seed": seed, "days": C.FIT_DAYS,
           "ranges": {n: [p.low, p.high, p.log] for n, p in C.PARAMS.items()}, "stats": stat_names(),
           "hyper": hyper, "version": sim.__version__, "format": 1}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def train_or_load(cache_dir: str | Path, *, runs: int = 120, subscribers: int = 1000, seed: int = 0,
                  scenario: str | None = None, sets: list[str] | None = None, hyper: dict | None = None,
                  progress: Callable[[str], None] | None = None) -> tuple[NeuralPosterior, dict]:
    """The surrogate for these settings: loaded from ``cache_dir`` when it was trained before,
    else simulated, trained and saved there. Returns (model, info: key, folder, loaded?, seconds)."""
    hyper = dict(hyper or {})
    base = C.base_scenario(scenario, list(sets or []))
    # the simulations depend on the settings only; the network also on its hyperparameters
    sims_key = cache_key(base, subscribers=subscribers, runs=runs, seed=seed, hyper={})
    effective = {k: v for k, v in {**NeuralPosterior.defaults, **hyper}.items() if k != "seed"}
    effective["spec"] = 2  # the network's spec (2: training ranges of the statistics); the simulations keep their key
    key = cache_key(base, subscribers=subscribers, runs=runs, seed=seed, hyper=effective)
    cache_dir = Path(cache_dir)
    folder = cache_dir / f"neural-{key[:16]}"
    sims = cache_dir / f"sims-{sims_key[:16]}.npz"
    info: dict[str, Any] = {"key": key, "folder": str(folder), "runs": runs, "subscribers": subscribers,
                            "seed": seed}
    if (folder / SIDECAR_FILE).is_file():
        t0 = time.perf_counter()
        model = NeuralPosterior.load(folder)
        if model.spec.get("cache_key") != key:
            raise ModelError(f"{folder / SIDECAR_FILE}: key 'spec.cache_key': does not match these settings; "
                             "remove the folder or use another --cache-dir")
        info.update(loaded=True, load_s=round(time.perf_counter() - t0, 3))
        return model, info
    cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if sims.is_file():
        with np.load(sims) as z:
            data = {"params": z["params"], "stats": z["stats"], "seeds": z["seeds"]}
    else:
        def prog(i, s):
            if progress:
                progress(f"simulation {i + 1}/{runs}  {s:.1f} s")

        partial = sims.with_name(f"{sims.stem}.partial.npz")
        data = simulate_training_set(runs, subscribers=subscribers, seed=seed, scenario=scenario, sets=sets,
                                     partial=partial, progress=prog)
        tmp = sims.with_name(f".{sims.stem}.tmp.npz")
        np.savez(tmp, **data)
        tmp.replace(sims)
        partial.unlink(missing_ok=True)
    sim_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    if progress:
        progress(f"training the posterior network on {runs} runs")
    model = NeuralPosterior(seed=seed, **hyper).fit({"params": data["params"], "stats": data["stats"]})
    model.spec.update({"cache_key": key, "subscribers": subscribers, "days": C.FIT_DAYS,
                       "scenario": scenario or "<default>", "set": list(sets or []),
                       "simulation_seconds": round(sim_s, 2)})
    model.save(folder)
    info.update(loaded=False, simulate_s=round(sim_s, 2), train_s=round(time.perf_counter() - t1, 2))
    return model, info


# --------------------------------------------------------------------------
# answering a targets document
# --------------------------------------------------------------------------


def target_statistics(doc: dict) -> tuple[dict[str, float], list[str]]:
    """The scalar statistics of a targets document (a statistic found in several targets: their
    weighted mean on the distance's scale) and the search's notes on targets left out."""
    terms, notes = C.target_terms(doc)
    acc: dict[str, list[tuple[float, float]]] = {}
    names = set(stat_names())
    for t in terms:
        if t.stat in names and t.weight > 0 and isinstance(t.value, int | float):
            log = C.STAT_BY_NAME[t.stat].distance == "log"
            if log and not t.value > 0:
                continue
            acc.setdefault(t.stat, []).append((math.log(t.value) if log else float(t.value), t.weight))
    out = {}
    for s, vals in acc.items():
        w = sum(v[1] for v in vals)
        m = sum(v[0] * v[1] for v in vals) / w
        out[s] = math.exp(m) if C.STAT_BY_NAME[s].distance == "log" else m
    return out, notes


def calibrate(doc: dict, model: NeuralPosterior, *, params: list[str] | None = None, scenario: str | None = None,
              sets: list[str] | None = None, check: bool = True, subscribers: int = 1000, seed: int = 1,
              posterior_seed: int = 0, info: dict | None = None,
              progress: Callable[[dict], None] | None = None):
    """Answer a targets document with the posterior network: a :class:`calibration.calibrate.FitResult`
    whose ``best`` are posterior medians, and ``settings["uncertainty"]`` the per-knob posterior
    summaries. With ``check``, the start and the estimate are each run once (``subscribers``, one
    day, scenario seed ``seed``) so the report's before/after objective is measured, as the search's is."""
    t0 = time.perf_counter()
    sets = list(sets or [])
    base = C.base_scenario(scenario, sets)
    base_dir = base.base_dir
    profile = load_profile(base.behaviour.profile, base_dir)
    terms, _ = C.target_terms(doc)
    if not any(t.weight > 0 for t in terms):
        raise ValueError("no target in the document can be compared with a run (see docs/calibration.md)")
    stats, notes = target_statistics(doc)
    names = params if params is not None else C.fittable(terms)
    missing = [n for n in names if n not in model.spec["params"]]
    if missing:
        raise ValueError(f"--params: the neural model was trained without {', '.join(missing)}")
    # Each block of knobs is answered from its own statistics only (the others masked, as in
    # training): the objective is block-separable, and a statistic the simulator cannot reach (a
    # dwell of 13 s, say) must not move the knobs of another block.
    parts = C.blocks(names, terms)
    post: dict[str, dict] = {}
    for block, block_stats in parts:
        answer = model.posterior({k: v for k, v in stats.items() if k in block_stats}, seed=posterior_seed)
        post.update({n: answer[n] for n in block})
    answer_s = time.perf_counter() - t0
    start = {n: C.PARAMS[n].start(base, profile) for n in names}
    estimate = {n: post[n]["median"] for n in names}
    groups = C._groups(terms)
    records: list[dict] = []
    full: dict[int, dict] = {}
    chosen, kinds = 1, {0: "start", 1: "estimate"}
    if check:
        workdir = Path(tempfile.mkdtemp(prefix="telcosim-neural-check-"))

        def evaluate(number: int, kind: str, values: dict[str, float]) -> None:
            t1 = time.perf_counter()
            out = C.simulate(base, values, subscribers, seed, workdir)
            try:
                st = C.run_statistics(out, groups)
            finally:
                shutil.rmtree(out.parent, ignore_errors=True)
            obj, rows = C.objective(terms, st)
            rec = {"number": number, "kind": f"check-{kind}", "params": values, "objective": obj,
                   "wall_s": round(time.perf_counter() - t1, 3)}
            records.append(rec)
            full[number] = {"objective": obj, "params": values, "statistics": rows}
            kinds[number] = kind
            if progress:
                progress(rec)
        try:
            evaluate(0, "start", start)
            evaluate(1, "estimate", estimate)
            # per block, the better of start and estimate on the block's own statistics, combined
            combined = {}
            for block, block_stats in parts:
                better = (estimate if C.block_objective(full[1]["statistics"], block_stats)
                          < C.block_objective(full[0]["statistics"], block_stats) else start)
                combined.update({n: better[n] for n in block})
            if combined not in (start, estimate):
                evaluate(2, "combined", combined)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

        def score(k):
            o = full[k]["objective"]
            return (o if math.isfinite(o) else 1e9, k)
        chosen = min(full, key=score)  # the best point evaluated; the start on a tie
    else:
        for number, values in enumerate((start, estimate)):
            full[number] = {"objective": float("nan"), "params": values, "statistics": []}
    best = dict(full[chosen]["params"])
    spec = model.spec
    settings = {
        "method": "neural",
        "trials": spec.get("training_runs"), "subscribers": spec.get("subscribers", subscribers),
        "days": C.FIT_DAYS, "seed": seed,
        "sampler": (f"neural posterior: ensemble of {model.params['members']} Gaussian-head MLPs "
                    f"(hidden {model.params['hidden']}) trained on {spec.get('training_runs')} prior runs"),
        "runs": len(records), "scenario": scenario or "<default>", "set": sets,
        "best_trial": chosen if check else None,
        "chosen": kinds[chosen] if check else "estimate (not checked: --no-check)",
        "estimate": estimate,
        "blocks": [{"params": b, "statistics": sorted(s)} for b, s in parts],
        "objective": "sum_i w_i min(d_i, cap) / sum_i w_i (docs/calibration.md), checking runs only; the written "
                     "values are the best point evaluated: the start, the posterior estimate, or per block the "
                     "better of the two",
        "cap": C.MAX_DISTANCE, "penalty": C.PENALTY,
        "answer_s": round(answer_s, 3), "posterior_draws": POSTERIOR_DRAWS, "posterior_seed": posterior_seed,
        "statistics_used": stats,
        "uncertainty": {n: post[n] for n in names},
        "interval": "5% - 95% posterior quantiles; estimate = posterior median",
        "model": {k: v for k, v in (info or {}).items()} | {"cache_key": spec.get("cache_key")},
    }
    fixed = {}
    for s_ in sets:
        k, _, v = s_.partition("=")
        fixed[k.strip()] = v.strip()
    return C.FitResult(names, start, best, records,
                       {"objective": full[0]["objective"], "params": start, "statistics": full[0]["statistics"]},
                       {"objective": full[chosen]["objective"], "params": best, "statistics": full[chosen]["statistics"]},
                       settings, notes, fixed)


def interval_comment(result) -> list[str]:
    """TOML comment lines with each fitted knob's 90% interval (added to the calibrated scenario)."""
    unc = result.settings.get("uncertainty", {})
    lines = [f"# Neural calibration (calibration/neural.py): written = {result.settings.get('chosen')}; "
             "estimate = posterior median; 90% interval (5%-95%):"]
    for n, u in unc.items():
        lines.append(f"#   {n} = {u['median']:.4g}  [{u['q05']:.4g}, {u['q95']:.4g}]  sd {u['sd']:.3g}")
    return lines


def with_intervals(toml: str, result) -> str:
    """The calibrated scenario TOML with the intervals as comments, just before its first key."""
    lines = toml.split("\n")
    at = next((i for i, ln in enumerate(lines) if ln and not ln.startswith("#")), len(lines))
    return "\n".join(lines[:at] + interval_comment(result) + [""] + lines[at:])


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "telcosim" / "neural"


def run_cli(args, merged: dict, params: list[str] | None, progress: Callable[[dict], None]):
    """``telcosim calibrate --method neural``: train or load the cached network, answer ``merged``."""
    quiet = getattr(args, "quiet", False)
    cache = args.cache_dir if args.cache_dir is not None else default_cache_dir()
    subscribers = args.subscribers or 1000

    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    # one torch thread unless TELCOSIM_TORCH_THREADS says otherwise (as 'telcosim models'): the
    # small network trains 1500 epochs in about 3 minutes on one core, and far slower when several
    # threads contend for 2 cores
    set_torch_threads(int(os.environ.get("TELCOSIM_TORCH_THREADS", "1")))
    try:
        model, info = train_or_load(cache, runs=args.neural_runs, subscribers=subscribers, seed=args.sampler_seed,
                                    scenario=args.scenario, sets=args.overrides, progress=say)
    except ModuleNotFoundError as exc:
        raise ModelError(f"--method neural needs {exc.name} (not installed): pip install 'telcosim[models]'") from None
    except OSError as exc:
        raise ModelError(f"--cache-dir {cache}: cannot write: {exc.strerror or exc}") from None
    say(f"neural model {'loaded from' if info['loaded'] else 'trained and saved in'} {info['folder']}")
    return calibrate(merged, model, params=params, scenario=args.scenario, sets=args.overrides,
                     check=not args.no_check, subscribers=subscribers, seed=args.seed, info=info,
                     progress=progress)
