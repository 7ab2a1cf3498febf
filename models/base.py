"""The contract every learned generator in ``models/`` follows, and the registry of them.

A learned generator is a class registered with :func:`register` that subclasses
:class:`LearnedGenerator`::

    @register("shape-vae")
    class ShapeVAE(LearnedGenerator):
        defaults = {"latent": 8, "epochs": 200, "seed": 0, ...}   # hyperparameters (JSON values)

        def _prepare(self, data) -> None: ...      # set self.spec (JSON: dims, normalisation ...) from data
        def _build(self): ...                      # return a torch.nn.Module built from params + spec
        def _fit(self, data, device, rng) -> None: # train self.module (already on ``device``)
        def _sample(self, n, gen) -> arrays: ...   # draw n items on CPU with torch.Generator ``gen``

        @classmethod
        def toy_data(cls, seed): ...               # tiny data for the contract tests
        tiny_params = {"epochs": 2, ...}           # hyperparameters that train in a second

Public methods (do not override): :meth:`LearnedGenerator.fit` ``(data) -> self``,
:meth:`~LearnedGenerator.sample` ``(n, *, seed) -> arrays``, :meth:`~LearnedGenerator.save`
``(dir)`` and the classmethod :meth:`~LearnedGenerator.load` ``(dir)``.

* ``data`` is a ``numpy`` array or a ``dict`` of arrays with the same first dimension; a sample is
  the same kind of thing with first dimension ``n``.
* ``save`` writes ``DIR/state_dict.pt`` (``torch.save`` of the module's state dict: tensors only,
  read back with ``weights_only=True``) and ``DIR/model.json`` (the sidecar: model name,
  hyperparameters, spec, telcosim version, data fingerprint, training time (wall and process CPU
  seconds) and device, epsilon and
  delta where the training was differentially private, the data sources). Anything the sampler
  needs is either in the spec (JSON) or a registered buffer of the module (so in the state dict).
  The folder is written under a temporary name and renamed into place: never half-written.
* Training runs on a GPU when ``torch.cuda.is_available()`` (else CPU); the module is moved back
  to the CPU afterwards. The global torch RNG is never seeded: ``Linear`` / ``Conv`` / ``Embedding``
  layers are initialised from a generator seeded from the ``seed`` hyperparameter
  (:func:`init_parameters`; initialise any other random parameter in ``_build`` deterministically),
  and ``_fit`` draws from ``self.train_generator`` (a seeded ``torch.Generator`` on the training
  device) and the numpy Generator ``rng``. Anything drawn from the global torch RNG makes the fit
  irreproducible, which the contract tests catch; ``torch.random.fork_rng`` around the fit keeps
  the caller's global state as it was.
* Sampling is always on the CPU, in ``torch.no_grad`` and eval mode, with a ``torch.Generator``
  seeded with ``seed``: the same seed gives the same arrays, before and after a save/load.

``torch`` is imported lazily (inside methods): ``import telcosim.models`` and ``import telcosim.models.base`` do not
import it, and neither may a model module at import time: ``import telcosim.models`` imports every model module,
so that :func:`registered` knows them all, and must stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from telcosim import sim
from telcosim.sim.errors import InputDataError
from telcosim.sim.kernels import cores

STATE_FILE = "state_dict.pt"
SIDECAR_FILE = "model.json"
FORMAT = 1  # sidecar format version

_REGISTRY: dict[str, type[LearnedGenerator]] = {}


class ModelError(InputDataError):
    """A model folder, model name, hyperparameter or training array is unusable (one line each)."""


# --------------------------------------------------------------------------- registry


def register(name: str) -> Callable[[type[LearnedGenerator]], type[LearnedGenerator]]:
    """Class decorator: register a :class:`LearnedGenerator` subclass under ``name``."""

    def deco(cls: type[LearnedGenerator]) -> type[LearnedGenerator]:
        if not (isinstance(cls, type) and issubclass(cls, LearnedGenerator)):
            raise TypeError(f"@register({name!r}) needs a LearnedGenerator subclass, got {cls!r}")
        other = _REGISTRY.get(name)
        if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"model name {name!r} is already registered by {other.__module__}.{other.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registered() -> dict[str, type[LearnedGenerator]]:
    """Every registered generator, by name (sorted): the package's own (``telcosim.models``
    imports its model modules) and those of modules above it once imported
    (``telcosim.calibration.neural``: ``neural-calibration``)."""
    return {k: _REGISTRY[k] for k in sorted(_REGISTRY)}


def get(name: str) -> type[LearnedGenerator]:
    """The generator class registered as ``name``; :class:`ModelError` naming the known ones if none."""
    reg = registered()
    if name not in reg:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(reg) or '(none)'}")
    return reg[name]


# --------------------------------------------------------------------------- helpers


def set_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (default: ``TELCOSIM_TORCH_THREADS`` or the CPUs available,
    at most 4); returns the number set. Imports torch."""
    import torch  # lazy: torch is optional and slow to import

    if n is None:
        env = os.environ.get("TELCOSIM_TORCH_THREADS")
        if env:
            n = int(env)
        else:
            n = min(cores(), 4)
    n = max(1, int(n))
    torch.set_num_threads(n)
    return n


def train_device() -> str:
    """``"cuda"`` when a GPU is usable (and ``TELCOSIM_DEVICE`` does not say ``cpu``), else ``"cpu"``."""
    import torch  # lazy: torch is optional and slow to import

    want = os.environ.get("TELCOSIM_DEVICE", "").strip().lower()
    if want == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _as_arrays(data: Any) -> dict[str, np.ndarray]:
    """``data`` as a dict of arrays (an array becomes ``{"": array}``), checked for a common length."""
    if isinstance(data, np.ndarray):
        arrays = {"": data}
    elif isinstance(data, Mapping):
        arrays = {}
        for k, v in data.items():
            if not isinstance(v, np.ndarray):
                raise ModelError(f"training data key {k!r}: expected a numpy array, got {type(v).__name__}")
            arrays[str(k)] = v
        if not arrays:
            raise ModelError("training data: empty dict; expected one or more numpy arrays")
    else:
        raise ModelError(f"training data: expected a numpy array or a dict of arrays, got {type(data).__name__}")
    lengths = {k: (v.shape[0] if v.ndim else None) for k, v in arrays.items()}
    if any(v is None for v in lengths.values()) or len(set(lengths.values())) != 1:
        raise ModelError(f"training data: arrays need the same first dimension, got {lengths}")
    if next(iter(lengths.values())) == 0:
        raise ModelError("training data: no rows")
    for k, v in arrays.items():
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise ModelError(f"training data key {k!r}: contains NaN or infinite values")
    return arrays


def data_fingerprint(data: Any) -> str:
    """``sha256:<hex>`` over every array's name, dtype, shape and bytes (keys sorted)."""
    h = hashlib.sha256()
    for k, v in sorted(_as_arrays(data).items()):
        a = np.ascontiguousarray(v)
        h.update(json.dumps([k, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= int(seed) < 2**63:
        raise ModelError(f"seed {seed!r}: expected an integer between 0 and 2^63-1")
    return int(seed)


def init_parameters(module, gen) -> None:
    """(Re)initialise every ``Linear``, ``Conv`` and ``Embedding`` layer of ``module`` as torch's own
    ``reset_parameters`` does, but drawing from the ``torch.Generator`` ``gen`` instead of the global RNG."""
    import torch  # lazy: torch is optional and slow to import
    import torch.nn as nn

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
                if m.bias is not None:
                    fan_in = nn.init._calculate_fan_in_and_fan_out(m.weight)[0]
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=gen)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, generator=gen)


def _version() -> str:
    return sim.__version__


# --------------------------------------------------------------------------- base class


class LearnedGenerator:
    """Base class of a learned generator; see the module docstring for the contract."""

    name: str = ""  # set by @register
    defaults: dict[str, Any] = {}  # hyperparameters and their default values (JSON values)
    tiny_params: dict[str, Any] = {}  # hyperparameters for the contract tests: train in about a second
    sources: tuple[str, ...] = ()  # where the training data came from (the sidecar's "sources")

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ModelError(f"model {self.name!r}: unknown hyperparameter(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(self.defaults))}")
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.params["seed"] = _check_seed(self.params.get("seed", 0))
        self.spec: dict[str, Any] = {}
        self.module = None  # torch.nn.Module once fitted or loaded
        self.epsilon: float | None = None  # set by a differentially private _fit
        self.delta: float | None = None
        self.training: dict[str, Any] = {}  # fingerprint, rows, seconds, device; set by fit / load
        self.history: dict[str, list[float]] = {}  # per-epoch losses, optional, for the sidecar
        self.train_generator = None  # seeded torch.Generator on the training device, during fit only

    # -- subclass hooks -------------------------------------------------------------------------
    def _prepare(self, data: Any) -> None:
        """Set ``self.spec`` (JSON-serialisable: dimensions, normalisation, category names) from data."""

    def _build(self):
        """Return a fresh ``torch.nn.Module`` from ``self.params`` and ``self.spec``."""
        raise NotImplementedError

    def _fit(self, data: Any, device: str, rng: np.random.Generator) -> None:
        """Train ``self.module`` (already on ``device``) on ``data``."""
        raise NotImplementedError

    def _sample(self, n: int, gen) -> Any:
        """Draw ``n`` items with the CPU ``torch.Generator`` ``gen``; numpy array(s) with first dim ``n``."""
        raise NotImplementedError

    @classmethod
    def toy_data(cls, seed: int) -> Any:
        """Tiny training data for the contract tests."""
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.module is not None

    def fit(self, data: Any) -> LearnedGenerator:
        """Train on ``data`` (array or dict of arrays); returns ``self``."""
        import torch  # lazy: torch is optional and slow to import

        arrays = _as_arrays(data)
        fingerprint = data_fingerprint(data)
        seed = self.params["seed"]
        device = train_device()
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
        t0, c0 = time.perf_counter(), time.process_time()
        devices = [torch.cuda.current_device()] if device == "cuda" else []
        init_seed, train_seed = (int(v) for v in np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64) >> 1)
        # The global torch RNG is never seeded (no global random state): parameters are initialised
        # from a seeded generator, training draws from self.train_generator or ``rng``. fork_rng
        # only keeps the caller's global state as it was, whatever a library draws from it.
        with torch.random.fork_rng(devices=devices):
            self.epsilon = self.delta = None
            self.history = {}
            self._prepare(data)
            module = self._build()
            init_parameters(module, torch.Generator(device="cpu").manual_seed(init_seed))
            self.module = module.to(device)
            self.train_generator = torch.Generator(device=device).manual_seed(train_seed)
            self.module.train()
            self._fit(data, device, rng)
            self.module = self.module.to("cpu").eval()
            self.train_generator = None
            if device == "cuda":
                torch.cuda.synchronize()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.training = {"fingerprint": fingerprint, "rows": int(next(iter(arrays.values())).shape[0]),
                         "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "device": device,
                         "torch_threads": torch.get_num_threads()}
        return self

    def _dp_budget(self, n: int, unit: str) -> tuple[float, float]:
        """(target epsilon, delta) of a DP-SGD fit on ``n`` ``unit`` (rows, subscribers): ``delta``
        defaults to min(1e-5, 0.1 / n) and must lie in (0, 1/n); epsilon must be positive."""
        delta = self.params["delta"]
        delta = float(delta) if delta is not None else min(1e-5, 0.1 / n)
        if not 0 < delta < 1.0 / n:
            raise ModelError(f"model {self.name!r}: hyperparameter 'delta': {delta!r}; expected 0 < delta < "
                             f"1/{unit} = {1.0 / n:.3g}")
        eps = float(self.params["target_epsilon"])
        if not eps > 0:
            raise ModelError(f"model {self.name!r}: hyperparameter 'target_epsilon': {eps!r}; expected > 0")
        return eps, delta

    def sample(self, n: int, *, seed: int) -> Any:
        """``n`` items drawn on the CPU; the same ``seed`` gives the same arrays."""
        import torch  # lazy: torch is optional and slow to import

        if not self.fitted:
            raise ModelError(f"model {self.name!r}: not fitted or loaded; call fit() or load() first")
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or int(n) < 0:
            raise ModelError(f"sample size {n!r}: expected a non-negative integer")
        seed = _check_seed(seed)
        gen = torch.Generator(device="cpu")
        gen.manual_seed(seed)
        self.module.to("cpu").eval()
        with torch.no_grad():
            return self._sample(int(n), gen)

    def sidecar(self) -> dict[str, Any]:
        """The JSON sidecar written by :meth:`save`."""
        return {
            "format": FORMAT,
            "model": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "telcosim_version": _version(),
            "hyperparameters": self.params,
            "spec": self.spec,
            "data_fingerprint": self.training.get("fingerprint"),
            "training_rows": self.training.get("rows"),
            "training_seconds": self.training.get("seconds"),
            "training_cpu_seconds": self.training.get("cpu_seconds"),
            "training_device": self.training.get("device"),
            "torch_threads": self.training.get("torch_threads"),
            "epsilon": self.epsilon,
            "delta": self.delta,
            "sources": list(self.sources),
            "history": self.history,
            "files": {"state_dict": STATE_FILE},
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``state_dict.pt`` and ``model.json`` to ``directory`` (created or replaced whole)."""
        import torch  # lazy: torch is optional and slow to import

        if not self.fitted:
            raise ModelError(f"model {self.name!r}: nothing to save; fit() it first")
        out = Path(directory)
        if out.exists() and not out.is_dir():
            raise ModelError(f"{out}: is a file; expected a folder for the model")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        try:
            state = {k: v.detach().to("cpu").contiguous() for k, v in self.module.state_dict().items()}
            torch.save(state, tmp / STATE_FILE)
            (tmp / SIDECAR_FILE).write_text(json.dumps(self.sidecar(), indent=2, sort_keys=False) + "\n")
            if out.exists():
                old = out.with_name(f".{out.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                out.rename(old)
                tmp.rename(out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LearnedGenerator:
        """Read a folder written by :meth:`save`. On the base class, the sidecar's model name picks
        the class; on a subclass, the sidecar must name that class's model."""
        import torch  # lazy: torch is optional and slow to import

        d = Path(directory)
        side = read_sidecar(d)
        name = side["model"]
        target = get(name) if cls is LearnedGenerator else cls
        if target.name != name:
            raise ModelError(f"{d / SIDECAR_FILE}: key 'model': {name!r} is not a {target.name!r} model")
        self = target(**{k: v for k, v in side["hyperparameters"].items() if k in target.defaults})
        self.params = dict(side["hyperparameters"])
        self.spec = side.get("spec") or {}
        self.epsilon, self.delta = side.get("epsilon"), side.get("delta")
        self.history = side.get("history") or {}
        self.training = {"fingerprint": side.get("data_fingerprint"), "rows": side.get("training_rows"),
                         "seconds": side.get("training_seconds"),
                         "cpu_seconds": side.get("training_cpu_seconds"), "device": side.get("training_device"),
                         "torch_threads": side.get("torch_threads")}
        if side.get("sources"):
            self.sources = tuple(side["sources"])
        module = self._build()
        try:
            state = torch.load(d / STATE_FILE, map_location="cpu", weights_only=True)
            module.load_state_dict(state)
        except FileNotFoundError:
            raise ModelError(f"{d}: no {STATE_FILE}; expected a model folder written by save()") from None
        except (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{d / STATE_FILE}: cannot load the weights: {first}") from None
        self.module = module.to("cpu").eval()
        return self


def read_sidecar(directory: str | os.PathLike) -> dict[str, Any]:
    """The checked sidecar of a model folder; :class:`ModelError` naming the file and key if bad."""
    d = Path(directory)
    if not d.is_dir():
        raise ModelError(f"{d}: not a folder; expected a model folder (state_dict.pt + model.json)")
    path = d / SIDECAR_FILE
    try:
        side = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{d}: no {SIDECAR_FILE}; expected a model folder written by save()") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(side, dict):
        raise ModelError(f"{path}: expected a JSON object")
    problems = []
    if side.get("format") != FORMAT:
        problems.append(f"{path}: key 'format': {side.get('format')!r}; this telcosim reads format {FORMAT}")
    if not isinstance(side.get("model"), str):
        problems.append(f"{path}: key 'model': {side.get('model')!r}; expected a model name")
    if not isinstance(side.get("hyperparameters"), dict):
        problems.append(f"{path}: key 'hyperparameters': expected an object")
    if "spec" in side and not isinstance(side["spec"], dict):
        problems.append(f"{path}: key 'spec': expected an object")
    if problems:
        raise ModelError(problems)
    return side
