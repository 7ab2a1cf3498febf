"""Per-area weekly traffic shapes learned from real data: a conditional VAE and a conditional WGAN-GP.

An item is one area's one week: 168 hourly loads divided by their mean (so the shape has mean 1;
hour of week 0 = Monday 00:00 local time) and a level, the log of the mean hourly load. The
condition is the area's density class, 0 urban, 1 suburban, 2 rural. The models learn the
*relative* shape: the area-week's shape over the city's (the mean shape of the areas of the part
it was built from), renormalised to mean 1: how an area's week differs from the city's, not the
city's week itself, which is the profile's business.

Data (see docs/models.md): the Milan grid squares of ``milan_hourly`` (Telecom Italia Big Data
Challenge, Barlacchi et al. 2015), read with :func:`realdata.readers.read_activity`. Weeks
Monday..Sunday with no missing day; the Christmas week (23-29 Dec 2013) is left out as a holiday
week. Only the *fit* part of the squares (:mod:`telcosim.realdata.splits`) is used to train; the
check part judges the simulator (benchmarks/bench_shapes.py). Density class = tertile of the square's mean hourly load over its complete weeks (the
squares have equal area, so mean load is activity density): the busiest third urban, the middle
third suburban, the quietest third rural. ``lte_cells`` and ``published_profiles`` are not used for
training (why: docs/models.md). Train / held-out split by area, stratified by class, seeded.

:func:`cell_multipliers` is the simulator hook: per cell a sampled relative weekly shape (mean 1),
from the shipped pretrained model in ``models/data/<kind>/``; the engine replaces the cell's own
deviation from the city by it and keeps every service's city-wide hour-of-week shape.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from telcosim.realdata import splits
from telcosim.realdata.readers import read_activity
from telcosim.sim.errors import ConfigError

from .base import LearnedGenerator, ModelError, _check_seed, init_parameters, register

HOURS = 168
DENSITY = ("urban", "suburban", "rural")
HOLIDAY_WEEKS = ("2013-12-23",)  # Monday of a week left out (Christmas week, Milan)
MILAN = "milan_hourly/square_hourly_load.csv"
SOURCES = ("milan_hourly: Telecom Italia Big Data Challenge, hourly load per 235 m grid square, "
           "Milan, Nov-Dec 2013 (Barlacchi et al., Sci. Data 2, 150055, 2015; ODbL-1.0)",)
DENSITY_METHOD = ("tertiles of each square's mean hourly load over its complete weeks (squares have equal "
                  "area): busiest third urban, middle suburban, quietest rural")
HELD_OUT_FRACTION = 0.25
SPLIT_SEED = 20131101
DATA_DIR = Path(__file__).resolve().parent / "data"
KINDS = ("vae", "gan")
MODEL_NAMES = {"vae": "shape-cvae", "gan": "shape-wgan-gp"}


# --------------------------------------------------------------------------- data set


@dataclass(frozen=True)
class ShapeDataset:
    """Weekly shapes. ``shape`` (n, 168) float32 with row mean 1; ``level`` (n,) float32 = log mean
    load; ``density`` (n,) int64 class code; ``area`` (n,) str; ``week`` (n,) datetime64[D] (Monday);
    ``reference`` (168,) float64 = the city's shape: the mean of the shapes of the set it was built
    from (mean 1), which :attr:`relative` divides out."""

    shape: np.ndarray
    level: np.ndarray
    density: np.ndarray
    area: np.ndarray
    week: np.ndarray
    thresholds: tuple[float, float] = (np.nan, np.nan)  # mean-load tertile cuts (urban > t2 >= suburban > t1)
    reference: np.ndarray | None = None  # (168,) the city's shape; None: all ones

    def __len__(self) -> int:
        return int(self.shape.shape[0])

    def take(self, mask: np.ndarray) -> ShapeDataset:
        return ShapeDataset(self.shape[mask], self.level[mask], self.density[mask], self.area[mask],
                            self.week[mask], self.thresholds, self.reference)

    @property
    def relative(self) -> np.ndarray:
        """(n, 168) float32: each shape over the city's (``reference``), renormalised to mean 1."""
        ref = np.ones(HOURS) if self.reference is None else self.reference
        return postprocess(self.shape / ref[None, :]).astype(np.float32)

    def model_data(self) -> dict[str, np.ndarray]:
        """The arrays a shape model is fitted on: the relative shapes, the level, the class."""
        return {"shape": self.relative, "level": self.level, "density": self.density}


def weekly_items(load, *, skip_weeks=HOLIDAY_WEEKS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split an hourly load table (index local time, one column per area) into complete Monday..Sunday
    weeks. Returns (loads (n, 168), area ids, week Mondays, mean load per item); weeks with any missing
    hour, zero total or in ``skip_weeks`` are left out."""
    idx = pd.DatetimeIndex(load.index)
    start = idx.min().normalize()
    start = start + pd.Timedelta(days=(7 - start.weekday()) % 7)
    full = pd.date_range(start, idx.max().normalize() + pd.Timedelta(hours=23), freq="h")
    full = full[: len(full) // HOURS * HOURS]
    table = load.reindex(full)
    values = table.to_numpy(dtype=np.float64)  # (hours, areas)
    n_weeks = len(full) // HOURS
    weeks = np.array(full[::HOURS].values.astype("datetime64[D]"))
    cube = values.reshape(n_weeks, HOURS, -1).transpose(0, 2, 1)  # (weeks, areas, 168)
    skip = np.isin(weeks, np.array(skip_weeks, dtype="datetime64[D]"))
    ok = np.all(np.isfinite(cube), axis=2) & (np.nansum(cube, axis=2) > 0) & ~skip[:, None]
    w_i, a_i = np.nonzero(ok)
    loads = cube[w_i, a_i]
    areas = np.asarray(table.columns.astype(str))[a_i]
    return loads, areas, weeks[w_i], loads.mean(axis=1)


def build_dataset(data_dir: str | Path, part: str = "fit") -> ShapeDataset:
    """The weekly-shape data set from ``data_dir`` (the folder holding ``milan_hourly/``), from the
    squares of ``part`` (``fit``: what the models train on; ``check``: what the simulator is
    judged on; ``all``). Density cuts and the city's reference shape are those of the part."""
    path = Path(data_dir) / MILAN
    if not path.is_file():
        raise ModelError(f"{Path(data_dir)}: no {MILAN}; expected the shared data folder "
                         "(../shared/data) or one laid out like it")
    table = read_activity(path)
    if table.interval_s != 3600:
        raise ModelError(f"{path}: interval {table.interval_s} s; expected hourly (3600 s)")
    try:
        table = splits.select(table, part)
    except splits.SplitError as exc:
        raise ModelError(str(exc)) from None
    loads, areas, weeks, mean = weekly_items(table.load)
    if len(np.unique(areas)) < 8:
        raise ModelError(f"{path}: only {len(np.unique(areas))} area(s) with a complete week; need at least 8")
    # density class: tertile of the area's mean load over its complete weeks
    uniq, inv = np.unique(areas, return_inverse=True)
    area_mean = np.bincount(inv, weights=mean) / np.bincount(inv)
    t1, t2 = np.quantile(area_mean, [1 / 3, 2 / 3])
    cls_area = np.where(area_mean > t2, 0, np.where(area_mean > t1, 1, 2))
    shape = (loads / mean[:, None]).astype(np.float32)
    reference = shape.astype(np.float64).mean(axis=0)
    return ShapeDataset(shape=shape, level=np.log(mean).astype(np.float32),
                        density=cls_area[inv].astype(np.int64), area=areas, week=weeks,
                        thresholds=(float(t1), float(t2)), reference=reference / reference.mean())


def split(ds: ShapeDataset, held_out: float = HELD_OUT_FRACTION, seed: int = SPLIT_SEED
          ) -> tuple[ShapeDataset, ShapeDataset]:
    """(train, held-out) by area: in each density class a seeded ``held_out`` share of the areas
    (sorted by id, then permuted) and all their weeks are held out."""
    rng = np.random.default_rng(seed)
    held_areas = []
    for c in range(len(DENSITY)):
        a = np.unique(ds.area[ds.density == c])
        k = int(round(held_out * len(a)))
        held_areas.extend(rng.permutation(a)[:k].tolist())
    m = np.isin(ds.area, np.array(held_areas, dtype=ds.area.dtype))
    return ds.take(~m), ds.take(m)


def postprocess(raw: np.ndarray) -> np.ndarray:
    """Model output (n, 168) in shape units -> non-negative shapes with row mean exactly 1."""
    x = np.clip(np.asarray(raw, dtype=np.float64), 0.0, None)
    m = x.mean(axis=1, keepdims=True)
    flat = m[:, 0] <= 1e-12
    x[flat] = 1.0
    m[flat] = 1.0
    return x / m


# --------------------------------------------------------------------------- models


def _mlp(sizes, act="silu", final=None):
    import torch.nn as nn  # lazy: torch is optional and slow to import

    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU() if act == "silu" else nn.LeakyReLU(0.2))
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class _ShapeModel(LearnedGenerator):
    """Shared by the shape models: data checks, standardisation, conditional sampling."""

    sources = SOURCES

    def _prepare(self, data) -> None:
        if not isinstance(data, dict) or not {"shape", "level", "density"} <= set(data):
            raise ModelError(f"model {self.name!r}: training data must be a dict with keys shape, level, density")
        shape, level, dens = data["shape"], data["level"], data["density"]
        if shape.ndim != 2 or shape.shape[1] != HOURS:
            raise ModelError(f"model {self.name!r}: 'shape' must be (n, {HOURS}), got {shape.shape}")
        if level.shape != (shape.shape[0],) or dens.shape != (shape.shape[0],):
            raise ModelError(f"model {self.name!r}: 'level' and 'density' must be (n,) with n = {shape.shape[0]}")
        if dens.dtype.kind not in "iu" or dens.min() < 0 or dens.max() >= len(DENSITY):
            raise ModelError(f"model {self.name!r}: 'density' must hold integer codes 0..{len(DENSITY) - 1}")
        x = np.column_stack([shape, level]).astype(np.float64)
        counts = np.bincount(dens, minlength=len(DENSITY))
        self.spec = {"hours": HOURS, "classes": list(DENSITY), "class_share": (counts / counts.sum()).tolist(),
                     "dim": HOURS + 1}
        self._mean = x.mean(axis=0)
        sd = x.std(axis=0)
        # one scale for the 168 shape values (keeps their relative amplitudes), one for the level
        self._scale = np.concatenate([np.full(HOURS, max(float(sd[:HOURS].mean()), 1e-6)),
                                      [max(float(sd[HOURS]), 1e-6)]])

    def _norm_buffers(self, module) -> None:
        import torch  # lazy: torch is optional and slow to import

        mean = getattr(self, "_mean", np.zeros(self.spec["dim"]))
        scale = getattr(self, "_scale", np.ones(self.spec["dim"]))
        module.register_buffer("x_mean", torch.as_tensor(mean, dtype=torch.float32))
        module.register_buffer("x_scale", torch.as_tensor(scale, dtype=torch.float32))

    def _tensors(self, data, device):
        import torch  # lazy: torch is optional and slow to import

        x = np.column_stack([data["shape"], data["level"]]).astype(np.float32)
        xt = torch.as_tensor(x, device=device)
        xt = (xt - self.module.x_mean) / self.module.x_scale
        c = torch.nn.functional.one_hot(torch.as_tensor(data["density"], device=device),
                                        len(DENSITY)).float()
        return xt, c

    def _decode(self, z, c, gen=None):
        raise NotImplementedError

    def _generate(self, codes: np.ndarray, gen) -> dict[str, np.ndarray]:
        import torch  # lazy: torch is optional and slow to import

        n = len(codes)
        z = torch.randn(n, self.params["latent"], generator=gen)
        c = torch.nn.functional.one_hot(torch.as_tensor(codes, dtype=torch.int64), len(DENSITY)).float()
        out = self._decode(z, c, gen) * self.module.x_scale + self.module.x_mean
        out = out.numpy().astype(np.float64)
        return {"shape": postprocess(out[:, :HOURS]), "level": out[:, HOURS].copy(),
                "density": np.asarray(codes, dtype=np.int64)}

    def _sample(self, n, gen):
        import torch  # lazy: torch is optional and slow to import

        share = torch.as_tensor(self.spec["class_share"], dtype=torch.float64)
        codes = (torch.multinomial(share, n, replacement=True, generator=gen).numpy()
                 if n else np.zeros(0, np.int64))
        return self._generate(codes, gen)

    def sample_conditional(self, density, *, seed: int) -> dict[str, np.ndarray]:
        """One item per entry of ``density`` (class codes), CPU, deterministic for ``seed``."""
        import torch  # lazy: torch is optional and slow to import

        codes = np.asarray(density)
        if codes.ndim != 1 or (codes.size and (codes.dtype.kind not in "iu" or codes.min() < 0
                                               or codes.max() >= len(DENSITY))):
            raise ModelError(f"density: expected a 1-d array of class codes 0..{len(DENSITY) - 1} "
                             f"({', '.join(f'{i} {d}' for i, d in enumerate(DENSITY))})")
        if not self.fitted:
            raise ModelError(f"model {self.name!r}: not fitted or loaded")

        gen = torch.Generator(device="cpu")
        gen.manual_seed(_check_seed(seed))
        self.module.eval()
        with torch.no_grad():
            return self._generate(codes.astype(np.int64), gen)

    @classmethod
    def toy_data(cls, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        n = 48
        dens = np.arange(n) % len(DENSITY)
        h = np.arange(HOURS)
        peak = np.array([13.0, 18.0, 20.0])[dens]
        amp = np.array([0.6, 0.45, 0.3])[dens]
        base = 1 + amp[:, None] * np.cos(2 * np.pi * ((h[None, :] % 24) - peak[:, None]) / 24)
        base = base * np.where(h >= 120, 0.85, 1.0)[None, :]
        x = base * rng.gamma(20.0, 1 / 20.0, size=base.shape)
        shape = (x / x.mean(axis=1, keepdims=True)).astype(np.float32)
        level = (np.array([3.2, 2.8, 2.4])[dens] + 0.2 * rng.normal(size=n)).astype(np.float32)
        return {"shape": shape, "level": level, "density": dens.astype(np.int64)}


@register("shape-cvae")
class ShapeVAE(_ShapeModel):
    """Conditional VAE: MLP encoder/decoder, Gaussian likelihood with a learned per-value scale,
    condition = one-hot density class on both sides. A sample is the decoder mean plus the learned
    per-value Gaussian noise (``noise=True``, a draw from the model's p(x)), or the decoder mean alone
    (``noise=False``: smooth shapes)."""

    defaults = {"seed": 0, "latent": 8, "hidden": 256, "epochs": 300, "batch": 64, "lr": 1e-3,
                "beta": 4.0, "weight_decay": 0.0, "noise": True}
    tiny_params = {"latent": 4, "hidden": 32, "epochs": 3, "batch": 16}

    def _build(self):
        import torch  # lazy: torch is optional and slow to import
        import torch.nn as nn

        d, k, h, z = self.spec["dim"], len(DENSITY), self.params["hidden"], self.params["latent"]
        m = nn.ModuleDict({"enc": _mlp([d + k, h, h // 2, 2 * z]), "dec": _mlp([z + k, h // 2, h, d])})
        m.register_parameter("log_sigma", nn.Parameter(torch.full((d,), -1.0)))
        self._norm_buffers(m)
        return m

    def _decode(self, z, c, gen=None):
        import torch  # lazy: torch is optional and slow to import

        mu = self.module["dec"](torch.cat([z, c], dim=1))
        if gen is None or not self.params.get("noise", True):
            return mu
        eps = torch.randn(mu.shape, generator=gen)
        return mu + eps * torch.exp(self.module.log_sigma)

    def _fit(self, data, device, rng) -> None:
        import torch  # lazy: torch is optional and slow to import

        x, c = self._tensors(data, device)
        p, gen = self.params, self.train_generator
        opt = torch.optim.Adam(self.module.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        n, zdim = x.shape[0], p["latent"]
        losses = []
        for _ in range(p["epochs"]):
            perm = torch.as_tensor(rng.permutation(n), device=device)
            total = 0.0
            for i in range(0, n, p["batch"]):
                b = perm[i:i + p["batch"]]
                xb, cb = x[b], c[b]
                h = self.module["enc"](torch.cat([xb, cb], 1))
                mu, logvar = h[:, :zdim], h[:, zdim:].clamp(-10, 10)
                zb = mu + torch.randn(mu.shape, device=device, generator=gen) * torch.exp(0.5 * logvar)
                rec = self.module["dec"](torch.cat([zb, cb], 1))
                ls = self.module.log_sigma
                nll = (0.5 * ((xb - rec) / torch.exp(ls)) ** 2 + ls).sum(1).mean()
                kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
                loss = nll + p["beta"] * kl
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            losses.append(round(total / n, 4))
        self.history = {"loss": losses}


@register("shape-wgan-gp")
class ShapeGAN(_ShapeModel):
    """Conditional WGAN-GP (Gulrajani et al. 2017): MLP generator and critic, condition = one-hot
    density class concatenated to the noise and to the critic's input; gradient penalty 10. The
    critic is discarded after training: the saved state dict holds the generator only."""

    defaults = {"seed": 0, "latent": 32, "hidden": 256, "steps": 6000, "critic_steps": 5, "batch": 64,
                "lr": 2e-4, "gp": 10.0}
    tiny_params = {"latent": 4, "hidden": 32, "steps": 4, "critic_steps": 2, "batch": 16}

    def _build(self):
        import torch.nn as nn  # lazy: torch is optional and slow to import

        d, k, h, z = self.spec["dim"], len(DENSITY), self.params["hidden"], self.params["latent"]
        m = nn.ModuleDict({"gen": _mlp([z + k, h, h, d])})  # the critic lives only while training
        self._norm_buffers(m)
        return m

    def _decode(self, z, c, gen=None):
        import torch  # lazy: torch is optional and slow to import

        return self.module["gen"](torch.cat([z, c], dim=1))

    def _fit(self, data, device, rng) -> None:
        import torch  # lazy: torch is optional and slow to import

        x, c = self._tensors(data, device)
        p, gen = self.params, self.train_generator
        d, k, h = self.spec["dim"], len(DENSITY), self.params["hidden"]
        D = _mlp([d + k, h, h, 1], act="lrelu")
        init_parameters(D, torch.Generator(device="cpu").manual_seed(int(rng.integers(2**62))))
        G, D = self.module["gen"], D.to(device)
        opt_g = torch.optim.Adam(G.parameters(), lr=p["lr"], betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(D.parameters(), lr=p["lr"], betas=(0.5, 0.9))
        n, bs = x.shape[0], min(p["batch"], x.shape[0])
        w_hist, g_hist = [], []
        for step in range(p["steps"]):
            for _ in range(p["critic_steps"]):
                b = torch.as_tensor(rng.integers(0, n, bs), device=device)
                xr, cb = x[b], c[b]
                z = torch.randn(bs, p["latent"], device=device, generator=gen)
                xf = G(torch.cat([z, cb], 1)).detach()
                eps = torch.rand(bs, 1, device=device, generator=gen)
                xi = (eps * xr + (1 - eps) * xf).requires_grad_(True)
                di = D(torch.cat([xi, cb], 1))
                grad = torch.autograd.grad(di.sum(), xi, create_graph=True)[0]
                gp = ((grad.norm(2, dim=1) - 1) ** 2).mean()
                wd = D(torch.cat([xr, cb], 1)).mean() - D(torch.cat([xf, cb], 1)).mean()
                loss_d = -wd + p["gp"] * gp
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
            b = torch.as_tensor(rng.integers(0, n, bs), device=device)
            cb = c[b]
            z = torch.randn(bs, p["latent"], device=device, generator=gen)
            loss_g = -D(torch.cat([G(torch.cat([z, cb], 1)), cb], 1)).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            if step % 100 == 0 or step == p["steps"] - 1:
                w_hist.append(round(float(wd.detach()), 4))
                g_hist.append(round(float(loss_g.detach()), 4))
        self.history = {"wasserstein_estimate_every_100": w_hist, "generator_loss_every_100": g_hist}


# --------------------------------------------------------------------------- simulator hook


@functools.lru_cache(maxsize=4)
def pretrained(kind: str, directory: str | None = None) -> _ShapeModel:
    """The shipped pretrained shape model of ``kind`` ('vae' or 'gan'), loaded once per process."""
    if kind not in KINDS:
        raise ModelError(f"shape model kind {kind!r}: allowed: {', '.join(KINDS)}")
    d = Path(directory) if directory else DATA_DIR / kind
    cls = ShapeVAE if kind == "vae" else ShapeGAN
    return cls.load(d)


def cell_multipliers(kind: str, density: np.ndarray, seed: int) -> np.ndarray:
    """Per-cell relative weekly shapes, float64 (n_cells, 168), hour 0 = Monday 00:00 local.

    ``kind``: 'vae' or 'gan' (the shipped pretrained model), or 'profile' (all ones: no learned
    deviation). ``density``: class code per cell (0 urban, 1 suburban, 2 rural). Row c = a sampled
    relative shape for cell c's class: how an area's week differs from the city's, mean 1 over
    the 168 hours. The sampled level is not used: a cell's size is the simulator's (where its
    people live and work). Deterministic for ``seed``."""
    codes = np.asarray(density)
    if codes.ndim != 1:
        raise ConfigError(f"cell_multipliers: density must be a 1-d array of class codes, got shape {codes.shape}")
    if codes.size and codes.dtype.kind not in "iu":
        raise ConfigError(f"cell_multipliers: density has dtype {codes.dtype}; expected integer class codes "
                          "0 urban, 1 suburban, 2 rural")
    if codes.size and (codes.min() < 0 or codes.max() >= len(DENSITY)):
        bad = codes[(codes < 0) | (codes >= len(DENSITY))]
        raise ConfigError(f"cell_multipliers: density code {bad.flat[0].item()!r}: allowed 0 urban, 1 suburban, 2 rural")
    if kind == "profile":
        return np.ones((codes.size, HOURS), dtype=np.float64)
    if kind not in KINDS:
        raise ConfigError(f"behaviour.cell_shapes: {kind!r} is not one of vae, gan, profile")
    if codes.size == 0:
        return np.zeros((0, HOURS), dtype=np.float64)
    model = pretrained(kind)
    return model.sample_conditional(codes.astype(np.int64), seed=seed)["shape"]

