"""Behaviour profiles: the hour-of-day and day-of-week shapes of each service, and the
distributions that come from data rather than from the scenario's knobs.

The embedded default (``sim/data/default_profile.toml``) holds figures derived from the public
data sets it names (``calibration/derive_defaults.py`` recomputes it); a calibrated profile from
``telcosim calibrate`` has the same layout.
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
    if problems:
        raise InputDataError(problems)
    if volume is not None and "data" in shapes:
        d = shapes["data"]
        if (d.hour_weekday == 0).any() or (d.hour_weekend == 0).any() or (d.day_of_week == 0).any():
            raise InputDataError(f"{name}: services.data: every hour and day must be > 0 when the profile has a "
                                 "[data_volume] table (the volume per session is the volume shape over the count shape)")
    return Profile(str(raw.get("name", name)), shapes, float(mu), float(sigma),
                   dict(raw.get("sources", {})), raw, volume)


def load_profile(ref: str, base_dir: Path | None = None) -> Profile:
    """'default' for the embedded profile, else a path (relative to ``base_dir``)."""
    if ref == "default":
        text = resources.files("telcosim.sim").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
        return parse_profile(tomllib.loads(text), "default_profile.toml")
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
