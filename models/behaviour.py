"""Subscriber-behaviour generator: per-subscriber features of a run, and a small VAE over them
trained with DP-SGD (opacus), so that a population can be drawn without copying anyone.

* :func:`subscriber_features` turns a run folder (``telcosim run``; columns in docs/schema.md) into
  one row per subscriber: originated voice, SMS and data attempts per day, the burstiness of the
  subscriber's originated events (Goh-Barabasi ``B``), the radius of gyration and the home-work
  distance (km) of the serving cells sampled every 10 minutes, and the number of distinct on-net
  contacts reached by originated calls and SMS. Every figure of a row comes from that subscriber's
  own originated records and own location trace (see docs/models-behaviour.md).
* :class:`BehaviourVAE` (registered as ``"behaviour-vae"``, contract in :mod:`models.base`) maps
  each feature through a *public* transform (``log1p`` for counts and distances, clipped to fixed
  bounds chosen from domain knowledge, never from data; then scaled to [-1, 1]), and trains a
  Gaussian-decoder VAE with DP-SGD: per-subscriber gradient clipping and Gaussian noise calibrated
  by opacus to ``target_epsilon`` at ``delta`` with Poisson sampling (RDP accountant). The data
  hold one row per subscriber, so the guarantee is per subscriber; the spent epsilon and delta go
  into the sidecar. Nothing else is learned from the data (no data-dependent scaling).
* :func:`sample_population` draws ``n`` synthetic subscribers from a saved model, with activity
  multipliers per service (each subscriber's rate over the population's mean rate, the way the
  simulator's ``activity`` scales all rates).

Torch is imported lazily (inside functions), as :mod:`models.base` requires.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .base import LearnedGenerator, ModelError, register

FEATURES = ("voice_per_day", "sms_per_day", "data_per_day", "burstiness", "rg_km", "home_work_km", "contacts")

# Public transform of each feature: (kind, upper bound). "log": log1p(clip(x, 0, hi)); "lin": clip(x, -1, hi).
# Bounds are domain knowledge (a heavy user makes a few hundred calls a day; a city region is < 200 km
# across), not data: values beyond them are clipped, which bounds each row's influence.
TRANSFORMS: dict[str, tuple[str, float]] = {
    "voice_per_day": ("log", 300.0),
    "sms_per_day": ("log", 1000.0),
    "data_per_day": ("log", 3000.0),
    "burstiness": ("lin", 1.0),
    "rg_km": ("log", 200.0),
    "home_work_km": ("log", 200.0),
    "contacts": ("log", 1000.0),
}

SAMPLE_S = 600  # the location trace is sampled every 10 minutes (as calibration.run_stats does)
NIGHT_HOURS = (22, 23, 0, 1, 2, 3, 4, 5)  # local hours that locate home
DAY_HOURS = tuple(range(9, 17))  # local hours that locate work


# --------------------------------------------------------------------------
# features of a run
# --------------------------------------------------------------------------


def _window(run_dir: Path) -> tuple[int, int, str] | None:
    """(start, end) of the run window in Unix seconds and its time zone, from the manifest."""
    try:
        w = json.loads((run_dir / "manifest.json").read_text())["window"]
        return (int(dt.datetime.fromisoformat(w["start"]).timestamp()),
                int(dt.datetime.fromisoformat(w["end"]).timestamp()), str(w["timezone"]))
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _burstiness(sub: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    """Goh-Barabasi B = (sd - mean) / (sd + mean) of each subscriber's inter-event times (sub, t
    sorted by subscriber then time); NaN with fewer than 3 events (2 gaps)."""
    gaps_ok = sub[1:] == sub[:-1]
    g = np.diff(t).astype(np.float64)[gaps_ok]
    gs = sub[1:][gaps_ok]
    cnt = np.bincount(gs, minlength=n).astype(np.float64)
    s1 = np.bincount(gs, weights=g, minlength=n)
    s2 = np.bincount(gs, weights=g * g, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / cnt
        sd = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
        b = (sd - mean) / (sd + mean)
    b[(cnt < 2) | ~np.isfinite(b)] = np.nan
    return b


def _modal(sub: np.ndarray, cell: np.ndarray, n: int, n_cells: int) -> np.ndarray:
    """Each subscriber's most frequent cell among (sub, cell) samples (lowest id on ties); -1 if none."""
    out = np.full(n, -1, np.int64)
    if len(sub) == 0:
        return out
    key = sub.astype(np.int64) * n_cells + cell
    uk, counts = np.unique(key, return_counts=True)
    us = uk // n_cells
    # within each subscriber, the largest count; np.unique sorts keys, so ties keep the lowest cell
    order = np.lexsort((-counts, us))
    first = np.ones(len(order), bool)
    first[1:] = us[order][1:] != us[order][:-1]
    best = order[first]
    out[us[best]] = uk[best] % n_cells
    return out


def subscriber_features(run_dir: str | Path) -> Any:
    """One row per subscriber of a run folder, indexed by ``subscriber_id`` (a pandas DataFrame).

    Columns (:data:`FEATURES`): ``voice_per_day``, ``sms_per_day`` (originated attempts, redials
    included), ``data_per_day`` (data sessions attempted, blocked ones included), ``burstiness``
    (B of the gaps between the subscriber's originated events of all services; NaN with fewer than
    3 events), ``rg_km`` (radius of gyration of the serving cell's site, sampled every 10 minutes
    from the first observation on), ``home_work_km`` (distance between the most frequent cell
    at night, 22-06 local, and by day, 09-17; NaN when either is never observed), ``contacts``
    (distinct on-net counterparts of originated calls and SMS), and ``days``, the length of the
    window in days (the same for everyone; the rates' denominator). Raises
    :class:`models.base.ModelError` (one line) for a folder that is not a run.
    """
    run_dir = Path(run_dir)
    missing = [p for p in ("cdr", "locations", "cells.parquet", "subscribers.parquet") if not (run_dir / p).exists()]
    if missing:
        raise ModelError(f"{run_dir}: missing {', '.join(missing)}; expected a run folder written by 'telcosim run'")
    try:
        subs = pq.read_table(run_dir / "subscribers.parquet", columns=["subscriber_id"])
        cells = pq.read_table(run_dir / "cells.parquet", columns=["cell_id", "x_km", "y_km"])
        cdr = pq.read_table(run_dir / "cdr", columns=["subscriber_id", "counterpart_id", "service", "direction",
                                                      "start_time"])
        loc = pq.read_table(run_dir / "locations", columns=["subscriber_id", "time", "cell_id"])
    except Exception as exc:  # pyarrow raises several kinds for unreadable or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{run_dir}: cannot read the run's tables: {first}") from None
    ids = subs.column("subscriber_id").to_numpy()
    n = int(ids.max()) + 1 if len(ids) else 0
    cx = np.zeros(0)
    cid = cells.column("cell_id").to_numpy().astype(np.int64)
    n_cells = int(cid.max()) + 1 if len(cid) else 1
    cx, cy = np.zeros(n_cells), np.zeros(n_cells)
    cx[cid], cy[cid] = cells.column("x_km").to_numpy(), cells.column("y_km").to_numpy()

    window = _window(run_dir)
    c_sub = cdr.column("subscriber_id").to_numpy().astype(np.int64)
    c_t = pc.cast(cdr.column("start_time"), "int64").to_numpy() // 1000
    l_sub = loc.column("subscriber_id").to_numpy().astype(np.int64)
    l_t = pc.cast(loc.column("time"), "int64").to_numpy() // 1000
    l_cell = loc.column("cell_id").to_numpy().astype(np.int64)
    if window is None:
        lo = min(int(c_t.min()) if len(c_t) else 0, int(l_t.min()) if len(l_t) else 0) // 86400 * 86400
        window = (lo, lo + 86400 * max(1, math.ceil((max(int(c_t.max()) if len(c_t) else lo, 0) - lo + 1) / 86400)),
                  "UTC")
    start, end, tz = window
    days = max((end - start) / 86400.0, 1e-9)

    service = np.asarray(pc.cast(cdr.column("service"), "string").to_numpy(zero_copy_only=False))
    mo = np.asarray(pc.cast(cdr.column("direction"), "string").to_numpy(zero_copy_only=False)) == "mo"
    cp = cdr.column("counterpart_id").fill_null(-1).to_numpy().astype(np.int64)
    out: dict[str, np.ndarray] = {}
    for name, svc in (("voice_per_day", "voice"), ("sms_per_day", "sms"), ("data_per_day", "data")):
        m = mo & (service == svc)
        out[name] = np.bincount(c_sub[m], minlength=n)[:n] / days

    m = mo
    o = np.lexsort((c_t[m], c_sub[m]))
    out["burstiness"] = _burstiness(c_sub[m][o], c_t[m][o], n)

    pair = mo & (cp >= 0) & np.isin(service, ["voice", "sms"])
    uniq = np.unique(c_sub[pair] * (n + 1) + cp[pair])
    out["contacts"] = np.bincount(uniq // (n + 1), minlength=n)[:n].astype(np.float64)

    # serving cell on a 10-minute grid (last observation carried forward; nothing before the first)
    o = np.lexsort((l_t, l_sub))
    l_sub, l_t, l_cell = l_sub[o], l_t[o], l_cell[o]
    grid = np.arange(start, end, SAMPLE_S, dtype=np.int64)
    span = int(end - start) + 1
    key = l_sub * span + np.clip(l_t - start, 0, span - 1)
    g_sub = np.repeat(np.arange(n, dtype=np.int64), len(grid))
    g_t = np.tile(grid, n)
    idx = np.searchsorted(key, g_sub * span + (g_t - start), side="right") - 1
    ok = (idx >= 0) & (l_sub[np.maximum(idx, 0)] == g_sub)
    s_sub, s_cell, s_t = g_sub[ok], l_cell[idx[ok]], g_t[ok]
    cnt = np.bincount(s_sub, minlength=n).astype(np.float64)
    px, py = cx[s_cell], cy[s_cell]
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(s_sub, weights=px, minlength=n) / cnt
        my = np.bincount(s_sub, weights=py, minlength=n) / cnt
        var = (np.bincount(s_sub, weights=px * px, minlength=n) / cnt - mx * mx
               + np.bincount(s_sub, weights=py * py, minlength=n) / cnt - my * my)
    out["rg_km"] = np.sqrt(np.maximum(var, 0.0))

    hours = pd.DatetimeIndex(pd.to_datetime(grid, unit="s", utc=True)).tz_convert(tz).hour.to_numpy()
    s_hour = hours[(s_t - start) // SAMPLE_S]
    night = np.isin(s_hour, NIGHT_HOURS)
    day = np.isin(s_hour, DAY_HOURS)
    home = _modal(s_sub[night], s_cell[night], n, n_cells)
    work = _modal(s_sub[day], s_cell[day], n, n_cells)
    hw = np.hypot(cx[home] - cx[work], cy[home] - cy[work])
    hw[(home < 0) | (work < 0)] = np.nan
    out["home_work_km"] = hw

    df = pd.DataFrame({k: np.asarray(out[k], dtype=np.float64)[ids] for k in FEATURES},
                      index=pd.Index(ids, name="subscriber_id"))
    df["days"] = days
    return df


def training_arrays(features, burstiness_fill: float = 0.0) -> dict[str, np.ndarray]:
    """A features DataFrame as the model's input, a dict of float64 arrays, one row per subscriber.

    An undefined burstiness (fewer than 3 originated events) becomes ``burstiness_fill`` (0: the B
    of a Poisson process, "too few events to tell"), so that quiet subscribers stay in the
    population; rows with another undefined figure (never seen at night or by day) are left out."""
    missing = [c for c in FEATURES if c not in features.columns]
    if missing:
        raise ModelError(f"features: missing column(s) {', '.join(missing)}; expected {', '.join(FEATURES)}")
    if "days" not in features.columns:
        raise ModelError("features: missing column 'days' (the days each subscriber was observed)")
    cols = {c: features[c].to_numpy(dtype=np.float64).copy() for c in (*FEATURES, "days")}
    cols["burstiness"][np.isnan(cols["burstiness"])] = burstiness_fill
    keep = np.all(np.isfinite(np.stack(list(cols.values()), axis=1)), axis=1)
    return {c: v[keep] for c, v in cols.items()}


# --------------------------------------------------------------------------
# public transform
# --------------------------------------------------------------------------


def _forward(name: str, x: np.ndarray, transforms: dict) -> np.ndarray:
    kind, hi = transforms[name]
    if kind == "log":
        lo_t, hi_t = 0.0, math.log1p(hi)
        v = np.log1p(np.clip(x, 0.0, hi))
    else:
        lo_t, hi_t = -1.0, float(hi)
        v = np.clip(x, -1.0, hi)
    return 2.0 * (v - lo_t) / (hi_t - lo_t) - 1.0


def _inverse(name: str, z: np.ndarray, transforms: dict) -> np.ndarray:
    kind, hi = transforms[name]
    z = np.clip(z, -1.0, 1.0)
    if kind == "log":
        return np.expm1((z + 1.0) / 2.0 * math.log1p(hi))
    return -1.0 + (z + 1.0) / 2.0 * (float(hi) + 1.0)


# --------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------


def _flow_class():
    import torch  # lazy: torch is optional and slow to import
    from torch import nn
    from torch.nn import functional as F

    class Marginals(nn.Module):
        """Per feature j a strictly increasing map g_j(y) = c_j + e^{s_j} y + sum_k softplus(w_jk)
        tanh(e^{a_jk} y + b_jk); returns [g(y), log g'(y)] side by side (rows x 2d)."""

        def __init__(self, d: int, k: int) -> None:
            super().__init__()
            grid = torch.linspace(-1.0, 1.0, k)
            self.shift = nn.Parameter(torch.zeros(d))
            self.log_scale = nn.Parameter(torch.zeros(d))
            self.w = nn.Parameter(torch.full((d, k), -2.0))
            self.log_a = nn.Parameter(torch.full((d, k), math.log(3.0)))
            self.b = nn.Parameter(-3.0 * grid.repeat(d, 1))

        def forward(self, y):
            a = torch.exp(self.log_a)
            t = torch.tanh(a * y.unsqueeze(-1) + self.b)  # rows x d x k
            w = F.softplus(self.w)
            u = self.shift + torch.exp(self.log_scale) * y + (w * t).sum(-1)
            du = torch.exp(self.log_scale) + (w * a * (1.0 - t * t)).sum(-1)
            return torch.cat([u, torch.log(du)], dim=-1)

    class GaussianLogDensity(nn.Module):
        """log N(u; 0, L L^T) of each row, L lower triangular with a positive diagonal."""

        def __init__(self, d: int) -> None:
            super().__init__()
            self.d = d
            self.raw = nn.Parameter(torch.zeros(d, d))

        def chol(self):
            lower = torch.tril(self.raw, -1)
            return lower + torch.diag(torch.exp(torch.diagonal(self.raw)))

        def forward(self, u):
            L = self.chol()
            z = torch.linalg.solve_triangular(L, u.unsqueeze(-1), upper=False).squeeze(-1)
            return (-0.5 * (z * z).sum(-1) - torch.diagonal(self.raw).sum()
                    - 0.5 * self.d * math.log(2 * math.pi)).unsqueeze(-1)

    class CopulaFlow(nn.Module):
        """A two-layer normalising flow: monotone per-feature maps, then a correlated Gaussian
        (a Gaussian copula with learned margins), fitted by maximum likelihood."""

        def __init__(self, d: int, knots: int) -> None:
            super().__init__()
            self.d = d
            self.marginals = Marginals(d, knots)
            self.gauss = GaussianLogDensity(d)

        def forward(self, y):
            out = self.marginals(y)
            u, logdet = out[:, : self.d], out[:, self.d:]
            return self.gauss(u)[:, 0] + logdet.sum(-1)

        def invert(self, u, lo: float = -6.0, hi: float = 6.0, steps: int = 60):
            """y with g(y) = u, by bisection per feature (g is increasing)."""
            a = torch.full_like(u, lo)
            b = torch.full_like(u, hi)
            for _ in range(steps):
                m = 0.5 * (a + b)
                g = self.marginals(m)[:, : self.d]
                below = g < u
                a = torch.where(below, m, a)
                b = torch.where(below, b, m)
            return 0.5 * (a + b)

    return CopulaFlow


# Count features are dequantised in training (uniform noise over one count), so the model learns a
# continuous rate; floor(rate x days) of a sample is then a count with the data's distribution.
ZERO_SPREAD = 0.4  # transformed units below -1 over which exact zeros of distances are spread
COUNT_FEATURES = ("voice_per_day", "sms_per_day", "data_per_day", "contacts")
PER_DAY = ("voice_per_day", "sms_per_day", "data_per_day")


@register("behaviour")
class BehaviourGenerator(LearnedGenerator):
    """A normalising flow (monotone per-feature maps, then a correlated Gaussian: a Gaussian
    copula with learned margins) over the publicly transformed subscriber features, trained by
    maximum likelihood with DP-SGD. ``data``: a dict of the :data:`FEATURES` arrays and ``days``
    (the days each subscriber was observed) from :func:`training_arrays`; a sample is a dict of the
    features in their own units (rates per day continuous)."""

    defaults = {
        "knots": 12, "epochs": 30, "batch_size": 512, "lr": 0.03,
        "target_epsilon": 4.0, "delta": None, "max_grad_norm": 1.0, "seed": 0,
        "transforms": {k: list(v) for k, v in TRANSFORMS.items()},
    }
    tiny_params = {"epochs": 2, "batch_size": 64, "knots": 3}
    sources = ("telcosim run: models.behaviour.subscriber_features (CDR + location trace)",)

    def _transforms(self) -> dict[str, tuple[str, float]]:
        tr = self.params.get("transforms") or {}
        out = {}
        for name in FEATURES:
            v = tr.get(name, TRANSFORMS[name])
            if (not isinstance(v, list | tuple) or len(v) != 2 or v[0] not in ("log", "lin")
                    or isinstance(v[1], bool) or not isinstance(v[1], int | float) or not v[1] > 0):
                raise ModelError(f"model 'behaviour': hyperparameter 'transforms.{name}': {v!r}; "
                                 "expected [\"log\" or \"lin\", positive upper bound]")
            out[name] = (v[0], float(v[1]))
        return out

    def _prepare(self, data) -> None:
        need = (*FEATURES, "days")
        if not isinstance(data, dict) or any(f not in data for f in need):
            got = ", ".join(data) if isinstance(data, dict) else type(data).__name__
            raise ModelError(f"model 'behaviour': training data must be a dict of {', '.join(need)} arrays "
                             f"(models.behaviour.training_arrays); got {got}")
        if not np.all(np.asarray(data["days"]) > 0):
            raise ModelError("model 'behaviour': training data key 'days': expected positive numbers of days")
        self._transforms()
        self.spec = {"features": list(FEATURES), "order": list(FEATURES),
                     "privacy_unit": "one row per subscriber (add/remove one subscriber's row)",
                     "dequantised": list(COUNT_FEATURES),
                     "zeros_spread_below_bound": [f for f in FEATURES if f not in COUNT_FEATURES
                                                  and self._transforms()[f][0] == "log"]}

    def _build(self):
        return _flow_class()(len(FEATURES), int(self.params["knots"]))

    def _encode(self, data, rng: np.random.Generator | None = None) -> np.ndarray:
        tr = self._transforms()
        cols = []
        days = np.asarray(data["days"], np.float64) if "days" in data else None
        for f in FEATURES:
            x = np.asarray(data[f], np.float64)
            if rng is not None and f in COUNT_FEATURES:
                step = 1.0 / days if f in PER_DAY else 1.0
                x = x + rng.random(len(x)) * step
            z = _forward(f, x, tr)
            if rng is not None and f not in COUNT_FEATURES and tr[f][0] == "log":
                # an exact zero (never moved; home and work in one cell) is spread just below the
                # lower bound, so the flow can put mass there and a sample clipped back gives 0
                at0 = x <= 0
                z[at0] = -1.0 - ZERO_SPREAD * rng.random(int(at0.sum()))
            cols.append(z)
        return np.stack(cols, axis=1)

    def _fit(self, data, device, rng) -> None:
        import torch  # lazy: torch is optional and slow to import
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        x = torch.tensor(self._encode(data, rng), dtype=torch.float32)
        n = x.shape[0]
        eps, delta = self._dp_budget(n, "rows")
        seeds = rng.integers(0, 2**62, size=2)
        g_data = torch.Generator().manual_seed(int(seeds[0]))
        g_noise = torch.Generator(device=device).manual_seed(int(seeds[1]))
        loader = DataLoader(TensorDataset(x), batch_size=min(int(self.params["batch_size"]), n), shuffle=True,
                            generator=g_data)
        model = self.module
        opt = torch.optim.Adam(model.parameters(), lr=float(self.params["lr"]))
        epochs = int(self.params["epochs"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # opacus' notes on secure RNG and full backward hooks
            engine = PrivacyEngine(accountant="rdp")
            pmodel, opt, loader = engine.make_private_with_epsilon(
                module=model, optimizer=opt, data_loader=loader, target_epsilon=eps, target_delta=delta,
                epochs=epochs, max_grad_norm=float(self.params["max_grad_norm"]), noise_generator=g_noise)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt.original_optimizer, T_max=epochs)
            losses = []
            for _ in range(epochs):
                tot, rows = 0.0, 0
                for (xb,) in loader:
                    if xb.shape[0] == 0:
                        continue
                    xb = xb.to(device)
                    opt.zero_grad()
                    loss = -pmodel(xb).mean()
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * xb.shape[0]
                    rows += xb.shape[0]
                sched.step()
                losses.append(round(tot / max(rows, 1), 5))
        self.epsilon = float(engine.get_epsilon(delta))
        self.delta = delta
        self.history = {"neg_log_likelihood": losses}
        self.spec.update({"noise_multiplier": float(opt.noise_multiplier), "accountant": "rdp",
                          "sample_rate": float(getattr(loader, "sample_rate", 0.0)) or None,
                          "max_grad_norm": float(self.params["max_grad_norm"]), "epochs": epochs,
                          "steps": epochs * len(loader)})
        if hasattr(pmodel, "_close"):
            pmodel._close()  # remove opacus' hooks: self.module is a plain module again
        for p in model.parameters():
            for attr in ("grad_sample", "_forward_counter", "summed_grad"):
                if hasattr(p, attr):
                    delattr(p, attr)

    def _sample(self, n, gen):
        import torch  # lazy: torch is optional and slow to import

        d = len(FEATURES)
        eps = torch.randn(n, d, generator=gen)
        u = eps @ self.module.gauss.chol().T
        z = self.module.invert(u).double().numpy()
        tr = self._transforms()
        return {f: _inverse(f, z[:, i], tr) for i, f in enumerate(FEATURES)}

    @classmethod
    def toy_data(cls, seed: int) -> dict[str, np.ndarray]:
        """Correlated features of 400 made-up subscribers over one day (contract tests)."""
        rng = np.random.default_rng(seed)
        a = rng.lognormal(0.0, 0.6, 400)
        return {"voice_per_day": np.floor(5 * a * rng.lognormal(0, 0.3, 400)),
                "sms_per_day": np.floor(8 * a * rng.lognormal(0, 0.5, 400)), "data_per_day": np.floor(40 * a),
                "burstiness": np.clip(rng.normal(0.2, 0.15, 400), -1, 1), "rg_km": rng.lognormal(0.0, 1.0, 400),
                "home_work_km": rng.lognormal(0.5, 1.0, 400),
                "contacts": np.floor(3 * a + rng.poisson(2, 400)).astype(np.float64), "days": np.ones(400)}


# --------------------------------------------------------------------------
# a population from a saved model
# --------------------------------------------------------------------------


def sample_population(n: int, seed: int, model_dir: str | Path) -> dict[str, np.ndarray]:
    """``n`` synthetic subscribers drawn from the model saved in ``model_dir``.

    Returns the features (:data:`FEATURES`, in their units) and activity multipliers per service,
    ``voice_activity``, ``sms_activity``, ``data_activity``: each subscriber's rate over the mean
    rate of this sample (mean 1, as the simulator's ``subscribers.activity``), plus ``contacts``
    rounded to whole numbers (at least 1). The same seed gives the same arrays."""
    model = BehaviourGenerator.load(model_dir)
    s = model.sample(int(n), seed=seed)
    out = dict(s)
    for svc in ("voice", "sms", "data"):
        rate = s[f"{svc}_per_day"]
        m = float(rate.mean()) if len(rate) else 0.0
        out[f"{svc}_activity"] = rate / m if m > 0 else np.ones_like(rate)
    out["contacts"] = np.maximum(np.rint(s["contacts"]), 1.0)
    return out
