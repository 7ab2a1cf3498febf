"""Sessions: how much each subscriber asks of the network, hour by hour.

Rates per service come from the scenario's per-day figures times the profile's day-of-week and
hour-of-day shapes (local time); each subscriber scales them by their activity level and by a
two-state burst process (active / quiet) so that inter-event times are bursty, as in real CDRs.
The kernel is :func:`sim.kernels.sessions.sessions_epoch`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import BehaviourConfig
from .errors import ConfigError
from .profile import RATE_KEYS, Profile

MS_PER_DAY = 86_400_000


def resolve_behaviour(cfg: BehaviourConfig, profile: Profile) -> BehaviourConfig:
    """The behaviour with every per-day rate left unset (NaN) taken from the profile's [rates]."""
    fill, missing = {}, []
    for k in RATE_KEYS:
        v = getattr(cfg, k)
        if v != v:
            if k in profile.rates:
                fill[k] = profile.rates[k]
            else:
                missing.append(k)
    if missing:
        raise ConfigError(f"behaviour.profile {cfg.profile!r} has no [rates] for {', '.join(missing)}: set "
                          + ", ".join(f"behaviour.{k}" for k in missing) + " in the scenario, or add them to the profile")
    return dataclasses.replace(cfg, **fill) if fill else cfg


def attempt_rates(cfg: BehaviourConfig, profile: Profile, hour: int, weekday: int) -> np.ndarray:
    """Rates per ms at activity 1 of: voice MO, SMS MO, data, voice MT off-net, SMS MT off-net."""
    fv = profile.shapes["voice"].factor(hour, weekday)
    fs = profile.shapes["sms"].factor(hour, weekday)
    fd = profile.shapes["data"].factor(hour, weekday)
    per_day = np.array([cfg.voice_per_day * fv, cfg.sms_per_day * fs, cfg.data_per_day * fd,
                        cfg.voice_in_offnet_per_day * fv, cfg.sms_in_offnet_per_day * fs])
    return per_day / MS_PER_DAY


def burst_multipliers(cfg: BehaviourConfig) -> tuple[float, float]:
    """(active, quiet) multipliers whose stationary mean is 1."""
    p_on = cfg.burst_on_mean_min / (cfg.burst_on_mean_min + cfg.burst_off_mean_min)
    on = min(cfg.burst_multiplier, 1.0 / p_on)
    off = (1.0 - p_on * on) / (1.0 - p_on)
    return on, max(off, 0.0)


def call_duration_params(cfg: BehaviourConfig, profile: Profile) -> tuple[float, float, float, float, float]:
    """(mu, sigma) of conversations (the knobs, else the profile's) and the profile's short-call
    component (share, mu, sigma) of answered call durations in s."""
    mu = cfg.call_duration_log_mu if cfg.call_duration_log_mu == cfg.call_duration_log_mu else profile.call_duration_log_mu
    sigma = cfg.call_duration_log_sigma if cfg.call_duration_log_sigma == cfg.call_duration_log_sigma else profile.call_duration_log_sigma
    return (float(mu), float(sigma), profile.call_short_share, profile.call_short_log_mu,
            profile.call_short_log_sigma)
