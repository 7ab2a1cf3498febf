"""The generators of ``telcosim benchmark``: small adapters behind one registry.

A generator is a class with a ``name``, a ``family`` (telcosim, learned, peer, control), a
``description``, the ``representations`` it can produce (see :data:`evaluation.benchmark.REPRESENTATIONS`)
and one method, ``sample(rep, fit, n, seed, ctx)``: a DataFrame with the representation's feature
columns (``fit`` is the real fit part in that representation, ``n`` the rows wanted, ``ctx`` a
:class:`Context` with the data folder, a work folder and the size). ``missing(ctx)`` returns None
when the generator can run here, else the one-line reason (e.g. the peers venv is not built).
Adding a generator is a class with :func:`register` (docs/benchmark.md, "Adding a generator").
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from telcosim import scenarios
from telcosim.evaluation import detection
from telcosim.evaluation.utility import run_series
from telcosim.models import behaviour, sequences, shapes
from telcosim.models.base import set_torch_threads
from telcosim.realdata import readers
from telcosim.scenarios import augment as augment_mod
from telcosim.scenarios.runner import run as run_scenario

REPO = Path(__file__).resolve().parent.parent
PEERS_PYTHON = REPO / "benchmarks" / ".venv-peers" / "bin" / "python"
PEERS_SCRIPT = REPO / "benchmarks" / "peers_sdv.py"
PEERS_MAKE = "make peers"

GENERATORS: dict[str, type[Generator]] = {}


class GeneratorError(RuntimeError):
    """A generator that cannot produce its table (one line: which and why)."""


def register(cls):
    """Class decorator: add a generator to :data:`GENERATORS` under its ``name``."""
    if cls.name in GENERATORS:
        raise ValueError(f"generator {cls.name!r} registered twice")
    GENERATORS[cls.name] = cls
    return cls


@dataclass
class Context:
    """What every generator may use: the shared data folder, a work folder for its runs, the size
    (``quick``: a smaller run and fewer epochs) and a cache shared by generators (one telcosim run
    per profile, whatever the number of representations asked of it)."""

    data_dir: Path
    work: Path
    quick: bool = False
    cache: dict = field(default_factory=dict)

    @property
    def subscribers(self) -> int:
        return 3000 if self.quick else 10000


class Generator:
    name = ""
    family = ""
    description = ""
    representations: tuple[str, ...] = ()

    def missing(self, ctx: Context) -> str | None:
        return None

    def sample(self, rep: str, fit: pd.DataFrame, n: int, seed: int, ctx: Context) -> pd.DataFrame:
        raise NotImplementedError


# --------------------------------------------------------------------------- controls


@register
class Bootstrap(Generator):
    name = "bootstrap"
    family = "control"
    description = ("the fit part's rows resampled with replacement: an upper bound for fidelity, a lower "
                   "bound for privacy (it copies real records)")
    representations = ("area_week", "subscriber", "change_window")

    def sample(self, rep, fit, n, seed, ctx):
        rng = np.random.default_rng([seed, 101])
        return fit.iloc[rng.integers(0, len(fit), n)].reset_index(drop=True)


@register
class Marginals(Generator):
    name = "marginals"
    family = "control"
    description = ("every column drawn on its own from the fit part's values: right marginals, no dependence "
                   "between columns (hours of a week, features of a person, a window's label and its values)")
    representations = ("area_week", "subscriber", "change_window")

    def sample(self, rep, fit, n, seed, ctx):
        rng = np.random.default_rng([seed, 102])
        return pd.DataFrame({c: fit[c].to_numpy()[rng.integers(0, len(fit), n)] for c in fit.columns})


# --------------------------------------------------------------------------- telcosim


def _run_dir(ctx: Context, profile: str, label: str | None = None, extra: tuple[str, ...] = ()) -> Path:
    """One week of the small_city scenario with ``profile`` (and ``extra`` overrides), run once per
    benchmark and kept under the work folder as ``run-<label>``."""
    label = label or profile
    key = ("run", label)
    if key not in ctx.cache:
        out = ctx.work / f"run-{label}"
        sc = scenarios.load("small_city", [f'behaviour.profile="{profile}"', "time.days=7",
                                           f"population.subscribers={ctx.subscribers}", "seed=1", *extra])
        run_scenario(sc, out, overwrite=True)
        ctx.cache[key] = out
    return ctx.cache[key]


def _augment_dir(ctx: Context, profile: str) -> Path:
    """Site-outage episodes with their baselines (``telcosim augment``), as the detection tests use."""
    key = ("augment", profile)
    if key not in ctx.cache:
        out = ctx.work / f"augment-{profile}"
        sc = scenarios.load("small_city", [f'behaviour.profile="{profile}"', "output.kpi_interval_s=900",
                                           "population.subscribers=2000"])
        augment_mod.augment(sc, "site_outage", 4 if ctx.quick else 8, out, seed=1, window_before_h=4,
                            window_after_h=2, overwrite=True)
        ctx.cache[key] = out
    return ctx.cache[key]


def week_table(run_dir: Path) -> pd.DataFrame:
    """Per cell, the run's load (voice attempts + SMS + data sessions) in each hour of the week,
    Monday 00:00 first, divided by the cell's mean: the ``area_week`` representation of a run."""
    s = run_series(run_dir, "all")
    if s.hours != 168:
        raise GeneratorError(f"{run_dir}: the run spans {s.hours} h; the area_week table needs exactly 168 h")
    order = np.argsort(s.weekday * 24 + s.hour, kind="stable")
    y = s.y[:, order]
    ok = np.isfinite(y).all(axis=1)
    y = y[ok] / y[ok].mean(axis=1, keepdims=True)
    return pd.DataFrame(y, columns=[f"h{i:03d}" for i in range(168)])


def subscriber_table_from_cdr(c: readers.CdrTable, days: float) -> pd.DataFrame:
    """Per subscriber with at least one mobile-originated call or SMS: the ``subscriber``
    representation (as :func:`evaluation.benchmark.copenhagen_people` makes of Copenhagen)."""
    mo = c.direction == "mo"
    voice = mo & (c.service == "voice")
    sms = mo & (c.service == "sms")
    rows = voice | sms
    sub = c.subscriber_id[rows]
    df = pd.DataFrame({"person": sub, "voice": voice[rows], "sms": sms[rows], "counterpart": c.counterpart_id[rows],
                       "answered_s": np.where(voice[rows] & (c.outcome[rows] == "completed"),
                                              c.duration_s[rows], np.nan)})
    return people_table(df, days)


def people_table(df: pd.DataFrame, days: float) -> pd.DataFrame:
    """Per person of an event table (person, voice, sms, counterpart, answered_s): calls and SMS per
    day, median answered call (s; 0 without one), share of events with the top counterpart."""
    g = df.groupby("person", sort=True)
    known = df[df["counterpart"].astype(str) != "-1"]
    top = known.groupby(["person", "counterpart"]).size().groupby(level=0).max()
    n_known = known.groupby("person").size()
    out = pd.DataFrame({"voice_per_day": g["voice"].sum() / days, "sms_per_day": g["sms"].sum() / days,
                        "call_s_median": g["answered_s"].median().fillna(0.0),
                        "top_contact_share": (top / n_known).reindex(g.size().index).fillna(0.0)})
    return out.reset_index(drop=True).astype(float)


class _Telcosim(Generator):
    family = "telcosim"
    representations = ("area_week", "subscriber", "change_window")
    profile = "default"

    def run_dir(self, ctx: Context) -> Path:
        return _run_dir(ctx, self.profile)

    def sample(self, rep, fit, n, seed, ctx):
        if rep == "area_week":
            return week_table(self.run_dir(ctx))
        if rep == "subscriber":
            run_dir = self.run_dir(ctx)
            manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
            days = (pd.Timestamp(manifest["window"]["end"]) - pd.Timestamp(manifest["window"]["start"])).days
            return subscriber_table_from_cdr(readers.read_cdr(run_dir), days)
        x, y = detection.synthetic_windows(_augment_dir(ctx, self.profile), seed=seed)
        if not len(y):
            raise GeneratorError(f"{self.name}: the augment episodes gave no detection window")
        return window_frame(x, y)


@register
class TelcosimDefault(_Telcosim):
    name = "telcosim-default"
    description = ("telcosim's embedded general profile (calibrated on the fit parts), small_city network, one "
                   "week; detection: site-outage episodes from 'telcosim augment'")
    profile = "default"


@register
class TelcosimStudents(_Telcosim):
    name = "telcosim-students"
    description = "the same with the embedded students profile (SMS-heavy student phones)"
    profile = "students"


@register
class TelcosimFlow(_Telcosim):
    name = "telcosim-flow"
    family = "learned"
    description = ("telcosim's behaviour flow (models/behaviour.py, DP-SGD, epsilon 4) trained on the "
                   "telcosim-default week's subscribers, then driving a run of the same network "
                   "(population.behaviour_model): learned per-subscriber rates meet the simulated network")
    representations = ("area_week", "subscriber")

    def run_dir(self, ctx: Context) -> Path:
        key = ("flow_model",)
        if key not in ctx.cache:
            feats = behaviour.subscriber_features(_run_dir(ctx, "default"))
            set_torch_threads(1)
            model = behaviour.BehaviourGenerator(seed=1, target_epsilon=4.0)
            model.fit(behaviour.training_arrays(feats))
            ctx.cache[key] = model.save(ctx.work / "flow-model")
        return _run_dir(ctx, "default", "flow", (f'population.behaviour_model="{ctx.cache[key]}"',))


@register
class TelcosimSequences(_Telcosim):
    name = "telcosim-sequences"
    family = "learned"
    description = ("telcosim's sequence transformer (models/sequences.py) trained on the telcosim-default "
                   "week's subscriber-days, then driving a run of the same network "
                   "(population.behaviour_model): each subscriber's activity from a weekday and a weekend "
                   "day sampled for their segment and home density, resolved by the simulated network")
    representations = ("area_week", "subscriber")

    def run_dir(self, ctx: Context) -> Path:
        key = ("sequence_model",)
        if key not in ctx.cache:
            arrays, _ = sequences.sequence_arrays(_run_dir(ctx, "default"))
            set_torch_threads(1)
            # --quick: fewer epochs (the documented 12 take about 3 CPU minutes on 21,000 days)
            model = sequences.SequenceTransformer(seed=1, epochs=4 if ctx.quick else 12)
            ctx.cache[key] = model.fit(arrays).save(ctx.work / "sequence-model")
        return _run_dir(ctx, "default", "sequences", (f'population.behaviour_model="{ctx.cache[key]}"',))


def window_frame(x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(x, columns=[f"w{i:02d}" for i in range(x.shape[1])])
    df["label"] = np.asarray(y, np.int64)
    return df


# --------------------------------------------------------------------------- learned models


@functools.lru_cache(maxsize=2)
def _shape_fit(data_dir: str) -> shapes.ShapeDataset:
    return shapes.build_dataset(data_dir, "fit")


class _Shape(Generator):
    family = "learned"
    representations = ("area_week",)
    kind = "vae"

    def missing(self, ctx):
        if not (shapes.DATA_DIR / self.kind / "model.json").is_file():
            return f"{self.name}: no pretrained model in {shapes.DATA_DIR / self.kind}"
        return None

    def sample(self, rep, fit, n, seed, ctx):
        set_torch_threads(1)  # the benchmark shares the CPU; sampling is cheap
        ds = _shape_fit(str(ctx.data_dir))
        rng = np.random.default_rng([seed, 103])
        codes = ds.density[rng.integers(0, len(ds), n)].astype(np.int64)
        rel = shapes.pretrained(self.kind).sample_conditional(codes, seed=seed)["shape"]
        y = rel * ds.reference[None, :]
        y = y / y.mean(axis=1, keepdims=True)
        return pd.DataFrame(y, columns=[f"h{i:03d}" for i in range(168)])


@register
class ShapeVAE(_Shape):
    name = "shape-vae"
    description = ("telcosim's shipped conditional VAE of weekly cell shapes (trained on Milan's fit part), "
                   "density classes drawn as in the fit part, times the fit part's city shape")
    kind = "vae"


@register
class ShapeGAN(_Shape):
    name = "shape-gan"
    description = "the same with telcosim's shipped WGAN-GP of weekly cell shapes"
    kind = "gan"


# --------------------------------------------------------------------------- peers (own venv)


class _SDV(Generator):
    family = "peer"
    representations = ("area_week", "subscriber", "change_window")
    model = ""

    def missing(self, ctx):
        if not PEERS_SCRIPT.is_file():
            return (f"generator {self.name!r} needs a source checkout of telcosim ({PEERS_SCRIPT} is not "
                    "installed with the package)")
        if not PEERS_PYTHON.is_file():
            return (f"generator {self.name!r} needs the peers venv {PEERS_PYTHON.parent.parent} "
                    f"(SDV pins pandas < 3): run '{PEERS_MAKE}' first")
        return None

    def epochs(self, ctx) -> int:
        return 0

    def sample(self, rep, fit, n, seed, ctx):
        reason = self.missing(ctx)
        if reason:
            raise GeneratorError(reason)
        d = ctx.work / f"{self.name}-{rep}"
        d.mkdir(parents=True, exist_ok=True)
        fit.to_parquet(d / "fit.parquet", index=False)
        cmd = [str(PEERS_PYTHON), str(PEERS_SCRIPT), "--model", self.model, "--fit", str(d / "fit.parquet"),
               "--out", str(d / "sample.parquet"), "--rows", str(n), "--seed", str(seed)]
        if self.epochs(ctx):
            cmd += ["--epochs", str(self.epochs(ctx))]
        if "label" in fit.columns:
            cmd += ["--categorical", "label"]
        p = subprocess.run(cmd, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise GeneratorError(f"{self.name}: the peer script failed on {rep}: {tail}")
        ctx.cache[("peer_info", self.name, rep)] = json.loads(p.stdout.strip().splitlines()[-1])
        out = pd.read_parquet(d / "sample.parquet")
        if "label" in out.columns:
            out["label"] = out["label"].astype(str).astype(float).astype(np.int64)
        return out[list(fit.columns)]


@register
class SDVGaussianCopula(_SDV):
    name = "sdv-gaussian-copula"
    description = "SDV 2.0 GaussianCopulaSynthesizer (defaults) fitted to the fit part (own venv)"
    model = "gaussian_copula"


@register
class SDVCTGAN(_SDV):
    name = "sdv-ctgan"
    description = "SDV 2.0 CTGANSynthesizer fitted to the fit part, CPU, one thread (own venv)"
    model = "ctgan"

    def epochs(self, ctx):
        return 30 if ctx.quick else 150


def default_names(ctx: Context | None = None) -> list[str]:
    """The generators that run here: every registered one whose ``missing`` is None."""
    ctx = ctx or Context(Path("."), Path("."))
    return [n for n, cls in GENERATORS.items() if cls().missing(ctx) is None]


__all__ = ["GENERATORS", "Context", "Generator", "GeneratorError", "default_names", "people_table", "register",
           "subscriber_table_from_cdr", "week_table", "window_frame"]
