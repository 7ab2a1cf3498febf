"""Dimensioning: how many voice channels and how much data capacity each cell gets.

``network.dimensioning = "grade_of_service"`` (the default) sizes every cell as an operator plans
it, for its own busy hour: the cell's expected offered voice traffic (Erlang) and downlink data
demand (Mbps) at each hour of the week come from the expected presence of the subscribers in it
(:func:`sim.mobility.expected_presence`, weighted by each one's activity), the profile's rates and
hour-of-week shapes, the mean call holding time and data volume; the busy hour is the hour of the
week with the most offered voice traffic (for data, the most demand). Voice channels are the
fewest whose Erlang B blocking at that load is at most ``network.target_blocking``; data capacity
is the busy-hour demand over ``network.target_data_utilisation``, and never below
``network.ue_peak_mbps`` (a lone session gets its peak rate). The load is the expected one, not a
pre-run: no draw, the same cells whatever the window, and no incident seen, so a run and its
baseline share the network. ``"fixed"`` gives every cell its density class's
``network.voice_channels`` and ``network.data_mbps``. A cells CSV's own ``voice_channels`` /
``data_mbps`` are kept in both modes; only the cells it leaves blank are sized.

What the expected load leaves out: redials (about ``redial_prob`` x blocking more attempts),
calls refused because a party is already talking, and where trips and exploration take people
(the presence puts "out" half at home, half at work).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from .config import BehaviourConfig, NetworkConfig
from .mobility import expected_presence, kernel_params
from .network import Network
from .population import Population
from .profile import Profile
from .sessions import call_duration_params

HOURS_OF_WEEK = 168


def erlang_b(channels: int, offered_erl: float) -> float:
    """Erlang's loss formula B(C, A): the share of attempts blocked at ``channels`` servers offered
    ``offered_erl`` Erlang (the stable recursion B(k) = A B(k-1) / (k + A B(k-1)), B(0) = 1)."""
    b = 1.0
    for k in range(1, int(channels) + 1):
        b = offered_erl * b / (k + offered_erl * b)
    return b


def channels_for(offered_erl: np.ndarray, target: float) -> np.ndarray:
    """The fewest channels (at least 1) whose Erlang B blocking at each offered load is at most
    ``target``."""
    a = np.asarray(offered_erl, np.float64)
    out = np.zeros(len(a), np.int32)
    pending, b, c = np.arange(len(a)), np.ones(len(a)), 0
    while len(pending):  # the recursion for every cell not yet met, one channel more a step
        c += 1
        b = a[pending] * b / (c + a[pending] * b)
        met = b <= target
        out[pending[met]] = c
        pending, b = pending[~met], b[~met]
    return out


def _lognormal_mean_capped(mu: float, sigma: float, cap: float) -> float:
    """E[min(X, cap)] for X lognormal(mu, sigma)."""
    if sigma <= 0:
        return min(math.exp(mu), cap)
    lc = math.log(cap)
    return float(math.exp(mu + sigma**2 / 2) * ndtr((lc - mu - sigma**2) / sigma)
                 + cap * (1.0 - ndtr((lc - mu) / sigma)))


def mean_holding_s(cfg: BehaviourConfig, profile: Profile) -> float:
    """Mean drawn call duration (s): the profile's short-call share and conversations, capped at
    ``call_duration_max_s`` as the session kernel draws them."""
    mu, sigma, share, s_mu, s_sigma = call_duration_params(cfg, profile)
    cap = cfg.call_duration_max_s
    return ((1.0 - share) * _lognormal_mean_capped(mu, sigma, cap)
            + share * _lognormal_mean_capped(s_mu, s_sigma, cap))


def voice_leg_weights(pop: Population, cfg: BehaviourConfig) -> np.ndarray:
    """Each subscriber's expected voice legs per day at a shape factor of 1: the calls they make
    and receive from off-net at their activity, and the on-net calls their contacts make to them
    (each contact's on-net calls split by tie strength)."""
    act = pop.activity if pop.service_activity is None else pop.activity * pop.service_activity[:, 0]
    ptr, idx, cdf = pop.contact_ptr, pop.contact_idx, pop.contact_cdf
    deg = np.diff(ptr)
    caller = np.repeat(np.arange(pop.n), deg)
    pick = np.diff(cdf, prepend=0.0)
    starts = ptr[:-1][deg > 0]
    pick[starts] = cdf[starts]  # each row's cumulative strength starts afresh
    row_total = np.zeros(pop.n)
    row_total[deg > 0] = cdf[ptr[1:][deg > 0] - 1]
    share = np.divide(pick, row_total[caller], out=np.zeros_like(pick), where=row_total[caller] > 0)
    received = np.bincount(idx, weights=act[caller] * share, minlength=pop.n)
    # Who has no contact calls off-net only: their on-net share goes out of the network.
    own = act * (cfg.voice_per_day + cfg.voice_in_offnet_per_day)
    return own + cfg.onnet_share * cfg.voice_per_day * received


def data_weights(pop: Population) -> np.ndarray:
    return pop.activity if pop.service_activity is None else pop.activity * pop.service_activity[:, 2]


def busy_interval_blocking(cell: np.ndarray, offered_erl: np.ndarray, voice_channels: np.ndarray) -> np.ndarray:
    """Per cell, the Erlang B blocking of its busy interval: B(channels, offered) at the KPI
    interval with the most offered voice traffic (``cell_kpis``' ``cell_id`` and
    ``offered_erlang`` columns; cells without a row get NaN). The measure an operator's
    grade of service is stated in, free of the few-attempts noise of counting blocked calls."""
    cell = np.asarray(cell, np.int64)
    offered_erl = np.asarray(offered_erl, np.float64)
    busy = np.full(len(voice_channels), -1.0)
    np.maximum.at(busy, cell, offered_erl)
    return np.array([erlang_b(int(c), a) if a >= 0 else math.nan for c, a in zip(voice_channels, busy, strict=True)])


@dataclass(frozen=True)
class Dimensioning:
    """The capacities a network was given and the expected busy-hour load they were sized for."""

    mode: str
    voice_channels: np.ndarray      # int32 per cell
    data_mbps: np.ndarray           # float64 per cell
    busy_erlang: np.ndarray         # expected offered voice traffic at each cell's busy hour (Erl)
    busy_data_mbps: np.ndarray      # expected downlink demand at each cell's data busy hour (Mbps)
    target_blocking: float = math.nan
    target_data_utilisation: float = math.nan

    def summary(self) -> dict:
        """For the manifest: the mode, its targets and the spread of what the cells got."""

        def spread(a: np.ndarray, digits: int) -> dict:
            q = np.quantile(a, [0.0, 0.5, 1.0]) if len(a) else np.zeros(3)
            return {"min": round(float(q[0]), digits), "median": round(float(q[1]), digits),
                    "max": round(float(q[2]), digits), "total": round(float(np.sum(a)), digits)}

        out = {"mode": self.mode, "voice_channels": spread(self.voice_channels, 0),
               "data_mbps": spread(self.data_mbps, 3),
               "busy_hour_offered_erlang": spread(self.busy_erlang, 4),
               "busy_hour_data_mbps": spread(self.busy_data_mbps, 4)}
        if self.mode == "grade_of_service":
            out["target_blocking"] = self.target_blocking
            out["target_data_utilisation"] = self.target_data_utilisation
            out["busy_hour"] = "each cell's hour of the week with the most expected offered traffic"
        return out


def expected_load(net: Network, pop: Population, profile: Profile, behaviour: BehaviourConfig,
                  mobility: dict[str, float], cell_mult: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(offered voice Erlang, downlink data Mbps), each n_cells x 168 (hour 0 = Monday 00:00
    local): expected presence times the hour's per-subscriber rates. ``cell_mult`` (n_cells x
    168): the learned per-cell shapes' multipliers, when the run has them."""
    voice_p = expected_presence(pop, net.n_cells, mobility, voice_leg_weights(pop, behaviour))
    data_p = expected_presence(pop, net.n_cells, mobility, data_weights(pop))
    fv = np.array([profile.shapes["voice"].factor(h, wd) for wd in range(7) for h in range(24)])
    fd = np.array([profile.shapes["data"].factor(h, wd) for wd in range(7) for h in range(24)])
    fvol = np.array([profile.data_volume_factor(h, wd) for wd in range(7) for h in range(24)])
    erlang = voice_p * (fv / 24.0 * mean_holding_s(behaviour, profile) / 3600.0)[None, :]
    mean_vol = math.exp(behaviour.data_volume_log_mu + behaviour.data_volume_log_sigma**2 / 2)
    down_bits = mean_vol * (1.0 - behaviour.data_uplink_share) * 8.0
    mbps = data_p * (behaviour.data_per_day * fd / 86_400.0 * fvol * down_bits / 1e6)[None, :]
    if cell_mult is not None:
        erlang, mbps = erlang * cell_mult, mbps * cell_mult
    return erlang, mbps


def dimension(net: Network, pop: Population, profile: Profile, cfg: NetworkConfig, behaviour: BehaviourConfig,
              mobility_cfg, cell_mult: np.ndarray | None = None) -> Dimensioning:
    """Size the cells (the module docstring) and set ``net.voice_channels`` / ``net.data_mbps``
    accordingly; the cells a CSV gave capacities keep them. Idempotent: run again after the
    learned shapes or activities are attached, it sizes for them."""
    erlang, mbps = expected_load(net, pop, profile, behaviour, kernel_params(mobility_cfg), cell_mult)
    busy_erl, busy_mbps = erlang.max(axis=1), mbps.max(axis=1)
    if cfg.dimensioning == "fixed":
        voice = np.asarray(cfg.voice_channels.as_tuple())[net.density]
        data = np.asarray(cfg.data_mbps.as_tuple())[net.density]
    else:
        voice = channels_for(busy_erl, cfg.target_blocking)
        data = np.maximum(busy_mbps / cfg.target_data_utilisation, cfg.ue_peak_mbps)
    voice_given, data_given = net.capacity_given()
    net.voice_channels = np.where(voice_given, net.voice_channels, np.round(voice)).astype(np.int32)
    net.data_mbps = np.where(data_given, net.data_mbps, data).astype(np.float64)
    return Dimensioning(cfg.dimensioning, net.voice_channels.copy(), net.data_mbps.copy(), busy_erl, busy_mbps,
                        cfg.target_blocking if cfg.dimensioning != "fixed" else math.nan,
                        cfg.target_data_utilisation if cfg.dimensioning != "fixed" else math.nan)


__all__ = ["Dimensioning", "busy_interval_blocking", "channels_for", "dimension", "erlang_b", "expected_load", "mean_holding_s",
           "voice_leg_weights"]
