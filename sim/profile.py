"""Behaviour profiles: the hour-of-day and day-of-week shapes of each service, and the
distributions that come from data rather than from the scenario's knobs.

Two profiles are embedded, one per population (``behaviour.profile``): ``general`` (the default,
also called ``default``: an operator's subscribers, ``sim/data/default_profile.toml``) and
``students`` (the student studies' SMS-heavy phones, ``sim/data/students_profile.toml``). Both hold
figures derived from the fit part of the public data sets they name
(``calibration/derive_defaults.py`` recomputes them); a calibrated profile from ``telcosim
calibrate`` has the same layout.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputDataError

SERVICES = ("voice", "sms", "data")
EMBEDDED = {"general": "data/default_profile.toml", "default": "data/default_profile.toml",
            "students": "data/students_profile.toml"}
RATE_KEYS = ("voice_per_day", "sms_per_day", "data_per_day", "voice_in_offnet_per_day", "sms_in_offnet_per_day")


@dataclass(frozen=True)
class ServiceShape:
    hour_weekday: np.ndarray  # 24 values, mean 1
    hour_weekend: np.ndarray  # 24 values, mean 1
    day_of_week: np.ndarray   # 7 values Mon..Sun, mean 1

    def factor(self, hour: int, weekday: int) -> float:
        """Rate multiplier for a local hour (0..23) and weekday (0 = Monday)."""
        hours = self.hour_weekend if weekday >= 5 else self.hour_weekday
        return float(self.day_of_week[weekday] * hours[hour])


@dataclass(frozen=True)
class Profile:
    name: str
    shapes: dict[str, ServiceShape]
    call_duration_log_mu: float
    call_duration_log_sigma: float
    sources: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    # [data_volume]: the hour-of-week shape of data VOLUME, when it differs from the data
    # sessions' count shape ([services.data]); None: the volume follows the session count.
    volume: ServiceShape | None = None
    # [rates]: per-day rates at activity 1 (keys of RATE_KEYS) that the behaviour.*_per_day knobs
    # take when not set; empty when the profile has none (the knobs must then be set).
    rates: dict[str, float] = field(default_factory=dict)
    # [voice] short-call component of the call-duration mixture: this share of answered calls is
    # lognormal(short_mu, short_sigma), the rest lognormal(call_duration_log_mu, _sigma); share 0: one lognormal.
    call_short_share: float = 0.0
    call_short_log_mu: float = 0.0
    call_short_log_sigma: float = 0.0
    # [gate] required: the evaluation metrics whose real figures the profile takes from data
    # (``telcosim evaluate --gate`` requires them by default); None when the profile does not say.
    gate_required: tuple[str, ...] | None = None

    def data_volume_factor(self, hour: int, weekday: int) -> float:
        """Mean volume of a data session in this local hour, relative to the run's mean: the volume
        shape over the data sessions' count shape (1 without a [data_volume] section)."""
        if self.volume is None:
            return 1.0
        return self.volume.factor(hour, weekday) / max(self.shapes["data"].factor(hour, weekday), 1e-12)


def _vector(raw: dict[str, Any], key: str, n: int, where: str, problems: list[str]) -> np.ndarray:
    v = raw.get(key)
    if not isinstance(v, list) or len(v) != n or not all(isinstance(x, (int, float)) for x in v):
        problems.append(f"{where}.{key}: expected a list of {n} numbers")
        return np.ones(n)
    arr = np.asarray(v, dtype=np.float64)
    if (arr < 0).any() or arr.mean() <= 0:
        problems.append(f"{where}.{key}: values must be >= 0 with a positive mean")
        return np.ones(n)
    return arr / arr.mean()


def parse_profile(raw: dict[str, Any], name: str) -> Profile:
    problems: list[str] = []
    services = raw.get("services", {})
    shapes = {}
    for s in SERVICES:
        sec = services.get(s) if isinstance(services, dict) else None
        if not isinstance(sec, dict):
            problems.append(f"{name}: services.{s}: missing table")
            continue
        where = f"{name}: services.{s}"
        shapes[s] = ServiceShape(_vector(sec, "hour_weekday", 24, where, problems),
                                 _vector(sec, "hour_weekend", 24, where, problems),
                                 _vector(sec, "day_of_week", 7, where, problems))
    volume = None
    vol = raw.get("data_volume")
    if vol is not None:
        if not isinstance(vol, dict):
            problems.append(f"{name}: data_volume: expected a table")
        else:
            where = f"{name}: data_volume"
            volume = ServiceShape(_vector(vol, "hour_weekday", 24, where, problems),
                                  _vector(vol, "hour_weekend", 24, where, problems),
                                  _vector(vol, "day_of_week", 7, where, problems))
    voice = raw.get("voice", {})
    mu, sigma = voice.get("duration_log_mu"), voice.get("duration_log_sigma")
    if not isinstance(mu, (int, float)) or not isinstance(sigma, (int, float)) or sigma < 0:
        problems.append(f"{name}: voice.duration_log_mu / duration_log_sigma: expected numbers (sigma >= 0)")
        mu, sigma = 0.0, 0.0
    short = [voice.get(k, 0.0) for k in ("duration_short_share", "duration_short_log_mu", "duration_short_log_sigma")]
    if not all(isinstance(x, (int, float)) for x in short) or not 0 <= short[0] < 1 or short[2] < 0:
        problems.append(f"{name}: voice.duration_short_share (0 <= share < 1), duration_short_log_mu and "
                        "duration_short_log_sigma (>= 0): expected numbers")
        short = [0.0, 0.0, 0.0]
    rates: dict[str, float] = {}
    rr = raw.get("rates", {})
    if not isinstance(rr, dict):
        problems.append(f"{name}: rates: expected a table")
        rr = {}
    for k in RATE_KEYS:
        if k in rr:
            v = rr[k]
            if not isinstance(v, (int, float)) or v < 0:
                problems.append(f"{name}: rates.{k}: expected a number >= 0, got {v!r}")
            else:
                rates[k] = float(v)
    unknown = sorted(set(rr) - set(RATE_KEYS) - {"source"})
    if unknown:
        problems.append(f"{name}: rates: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(RATE_KEYS)}")
    gate = raw.get("gate", {}).get("required") if isinstance(raw.get("gate"), dict) else None
    if gate is not None and (not isinstance(gate, list) or not all(isinstance(g, str) for g in gate)):
        problems.append(f"{name}: gate.required: expected a list of metric names")
        gate = None
    if problems:
        raise InputDataError(problems)
    if volume is not None and "data" in shapes:
        d = shapes["data"]
        if (d.hour_weekday == 0).any() or (d.hour_weekend == 0).any() or (d.day_of_week == 0).any():
            raise InputDataError(f"{name}: services.data: every hour and day must be > 0 when the profile has a "
                                 "[data_volume] table (the volume per session is the volume shape over the count shape)")
    return Profile(str(raw.get("name", name)), shapes, float(mu), float(sigma),
                   dict(raw.get("sources", {})), raw, volume, rates, float(short[0]), float(short[1]), float(short[2]),
                   tuple(gate) if gate is not None else None)


def load_profile(ref: str, base_dir: Path | None = None) -> Profile:
    """An embedded profile by name (``general`` = ``default``, ``students``), else a path (relative
    to ``base_dir``)."""
    if ref in EMBEDDED:
        text = resources.files("telcosim.sim").joinpath(EMBEDDED[ref]).read_text(encoding="utf-8")
        return parse_profile(tomllib.loads(text), Path(EMBEDDED[ref]).name)
    path = Path(ref)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputDataError(f"{ref}: no such profile file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputDataError(f"{path.name}: cannot read the profile ({exc})") from None
    return parse_profile(raw, path.name)
