"""Run configuration: the knobs of a simulation, their defaults, units and allowed values.

The dataclasses below *are* the schema: each field's metadata says what it means and what is
allowed, and :func:`from_dict` validates a TOML document against them, collecting every problem
(file, dotted key, bad value, what is allowed) before raising one :class:`~sim.errors.ConfigError`.
Unknown keys are errors with a did-you-mean. ``docs/scenario-format.md`` documents the same fields.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import re
import tomllib
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _f(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
       lo_open: bool = False, choices: tuple[Any, ...] | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "lo": lo, "hi": hi, "lo_open": lo_open,
                                            "choices": choices})


def _section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc})


@dataclass(frozen=True)
class TimeConfig:
    start: str = _f("2024-03-05T00:00:00", "local start date-time of the run window (ISO 8601)")
    days: int = _f(1, "length of the run window in days", lo=1, hi=366)
    timezone: str = _f("Europe/Rome", "IANA time zone of the network; profiles are in local time")

    def start_datetime(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.start).replace(tzinfo=zoneinfo.ZoneInfo(self.timezone))


@dataclass(frozen=True)
class ByDensity:
    urban: float = _f(0.0, "value for urban cells", lo=0)
    suburban: float = _f(0.0, "value for suburban cells", lo=0)
    rural: float = _f(0.0, "value for rural cells", lo=0)

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.urban, self.suburban, self.rural)


def _by_density(u: float, s: float, r: float, doc: str) -> Any:
    return field(default_factory=lambda: ByDensity(float(u), float(s), float(r)), metadata={"doc": doc})


@dataclass(frozen=True)
class NetworkConfig:
    layout: str = _f("random", "site layout: hexagonal grid, random sites denser towards the centre, or a CSV of cells",
                     choices=("hex", "random", "csv"))
    sites: int = _f(120, "number of sites (hex and random layouts)", lo=1, hi=200_000)
    sectors: int = _f(3, "cells (sectors) per site", lo=1, hi=6)
    radius_km: float = _f(9.0, "radius of the covered area around the origin", lo=0, lo_open=True)
    centre_scale_km: float = _f(3.0, "random layout: site density falls as exp(-r / centre_scale_km)", lo=0, lo_open=True)
    origin_lat: float = _f(45.4642, "latitude of the centre (deg)", lo=-90, hi=90)
    origin_lon: float = _f(9.19, "longitude of the centre (deg)", lo=-180, hi=180)
    urban_km: float = _f(2.5, "cells within this distance of the centre are urban", lo=0)
    suburban_km: float = _f(6.0, "cells within this distance (and not urban) are suburban; beyond, rural", lo=0)
    cells_csv: str = _f("", "layout = 'csv': path of a CSV of cells (cell_id, lat, lon, ...), relative to the scenario file")
    # How a cell list is selected and grouped into sites (docs/scenario-format.md, "Cell lists").
    cells_within_km: float = _f(0.0, "layout = 'csv': keep only the cells within this distance of (origin_lat, "
                                "origin_lon), which is then the centre; 0: every cell, centred on their mean "
                                "position", lo=0)
    cells_radio: str = _f("", "OpenCellID cell list: the radio types to keep, comma-separated (GSM, UMTS, CDMA, LTE, "
                          "NR); '': every type in the file")
    cells_min_samples: int = _f(0, "OpenCellID cell list: drop the cells measured fewer times than this (samples "
                                "column)", lo=0)
    cells_duplicates: str = _f("error", "OpenCellID cell list: a cell listed twice (same radio, mcc, net, area, cell) is "
                               "an error, or its first row is kept, or its row with the most samples",
                               choices=("error", "first", "most_samples"))
    cells_sites: str = _f("auto", "OpenCellID cell list: how cells become the sectors of a site: LTE cells by eNodeB "
                          "(cell // 256) and the others by position, or every cell by position",
                          choices=("auto", "position"))
    cells_colocated_m: float = _f(0.0, "OpenCellID cell list: a cell grouped by position joins the first site within "
                                  "this distance of its first cell (0: only cells at the same position)", lo=0)
    dimensioning: str = _f("grade_of_service", "how cells get their voice channels and data capacity: "
                           "'grade_of_service' sizes each cell for its own busy-hour expected load "
                           "(target_blocking, target_data_utilisation); 'fixed' gives each density class "
                           "voice_channels and data_mbps, whatever the load", choices=("grade_of_service", "fixed"))
    # "Most cellular systems are designed to a blocking rate of 1% to 5% during the busy hour, with 2%
    # being the most common" (G. Wagoner, "Blocking probability", garywagoner.tripod.com/traffic/BLOCKING.HTML).
    target_blocking: float = _f(0.02, "dimensioning = 'grade_of_service': Erlang B blocking each cell's voice "
                                "channels are sized for at its busy hour", lo=0, lo_open=True, hi=0.5)
    # T-Mobile US (2024 Analyst Day, as reported by 5g6gacademy.com/learn/5g-capacity-planning) expands
    # capacity at 70% busy-hour PRB utilisation; operators' guidelines range 70-85% (telecomhall.net).
    target_data_utilisation: float = _f(0.7, "dimensioning = 'grade_of_service': share of a cell's downlink data "
                                        "capacity its busy-hour demand uses (capacity never below "
                                        "ue_peak_mbps)", lo=0, lo_open=True, hi=1)
    voice_channels: ByDensity = _by_density(8, 6, 4, "dimensioning = 'fixed': voice channels per cell by density class")
    data_mbps: ByDensity = _by_density(150, 100, 50, "dimensioning = 'fixed': downlink data capacity per cell (Mbps) "
                                       "by density class")
    max_data_sessions: int = _f(200, "most data sessions a cell serves at once; a new one beyond is blocked", lo=1)
    ue_peak_mbps: float = _f(50.0, "peak downlink rate of one data session alone in a cell (Mbps)", lo=0, lo_open=True)
    # Huang et al., "A Close Examination of Performance and Power Characteristics of 4G LTE
    # Networks", MobiSys 2012, Table 3: the RRC_CONNECTED tail a commercial LTE network kept after
    # the last packet, 11.576 s.
    rrc_inactivity_s: float = _f(11.576, "time a data session stays connected after its last byte before the network "
                                 "releases it (RRC inactivity timer): a completed data record's duration is its "
                                 "transfer time plus this; radio capacity is used during the transfer only", lo=0)


@dataclass(frozen=True)
class PopulationConfig:
    subscribers: int = _f(50_000, "number of subscribers", lo=1, hi=200_000_000)
    activity_sigma: float = _f(1.0, "log-sd of the heavy-tailed (lognormal, mean 1) activity level", lo=0)
    contacts_mean: float = _f(8.0, "mean number of contacts in the social graph", lo=1)
    contacts_local_share: float = _f(0.8, "share of contacts drawn among people living nearby", lo=0, hi=1)
    tie_sigma: float = _f(1.5, "log-sd of tie strengths: larger means calls concentrate on fewer contacts", lo=0)
    commuter_share: float = _f(1.0, "share of subscribers whose work/anchor cell may be far from home (the local "
                               "class never; default fitted with local_share, docs/calibration.md)", lo=0, hi=1)
    far_commute_share: float = _f(1.0, "share of commuters whose work/anchor cell is drawn anywhere by work weight "
                                  "(the others': within two neighbour hops of home)", lo=0, hi=1)
    local_share: float = _f(0.65, "share of subscribers of the local mobility class: their anchor is on their home "
                            "site and they go out less and nearer (mobility.local_*); the rest commute and "
                            "explore as commuter_share says (default fitted to StudentLife's radius of "
                            "gyration, docs/calibration.md)", lo=0, hi=1)
    home_weight: ByDensity = _by_density(1.0, 0.8, 0.5, "relative chance that a cell is someone's home, by density class")
    work_weight: ByDensity = _by_density(3.0, 1.0, 0.4, "relative chance that a cell is someone's work/anchor, by density class")
    behaviour_model: str = _f("", "folder of a trained behaviour generator ('telcosim models behaviour') or sequence "
                              "model ('telcosim models train sequences'): draw each subscriber's voice, SMS and "
                              "data activity from it instead of the lognormal activity; relative to the scenario "
                              "file; '' for none")


@dataclass(frozen=True)
class BehaviourConfig:
    profile: str = _f("default", "behaviour profile: 'general' (= 'default': an operator's subscribers) or 'students' "
                      "(the student studies' SMS-heavy phones), both embedded and derived from real data, or a path "
                      "to a profile TOML")
    voice_per_day: float = _f(float("nan"), "mobile-originated calls per subscriber per day (activity 1; default: "
                              "the profile's [rates])", lo=0)
    sms_per_day: float = _f(float("nan"), "mobile-originated SMS per subscriber per day (activity 1; default: the "
                            "profile's [rates])", lo=0)
    data_per_day: float = _f(float("nan"), "data sessions per subscriber per day (activity 1; default: the "
                             "profile's [rates])", lo=0)
    voice_in_offnet_per_day: float = _f(float("nan"), "calls received from outside the network per subscriber per "
                                        "day (default: the profile's [rates])", lo=0)
    sms_in_offnet_per_day: float = _f(float("nan"), "SMS received from outside the network per subscriber per day "
                                      "(default: the profile's [rates])", lo=0)
    onnet_share: float = _f(0.7, "share of originated calls and SMS that go to a contact on this network", lo=0, hi=1)
    burst_on_mean_min: float = _f(20.0, "mean length of an active (bursty) period", lo=0, lo_open=True)
    burst_off_mean_min: float = _f(100.0, "mean length of a quiet period", lo=0, lo_open=True)
    burst_multiplier: float = _f(4.0, "rate multiplier while active (quiet rate follows so the mean is 1)", lo=1)
    call_duration_log_mu: float = _f(float("nan"), "lognormal mu of conversations' durations in s (default: from "
                                     "the profile, whose short-call share, if any, is kept)")
    call_duration_log_sigma: float = _f(float("nan"), "lognormal sigma of conversations' durations (default: from "
                                        "the profile)")
    call_duration_max_s: float = _f(10800.0, "longest call (s)", lo=1, hi=86400)
    # sigma fitted with the level below to the LTE cells' hourly residual sd (docs/evaluate.md); mu moved
    # with it so that the mean volume e^(mu + sigma^2 / 2) stays e^17 (~24 MB), as with 15.0 and 2.0 before.
    data_volume_log_mu: float = _f(15.72, "lognormal mu of data session volume in bytes (median e^mu, ~6.7 MB)")
    data_volume_log_sigma: float = _f(1.6, "lognormal sigma of data session volume", lo=0)
    # The level's defaults are fitted by 50,000-subscriber x 14-day sweeps to the LTE cells' persistence
    # around their weekly shape (calibration.derive_defaults.lte_volume_persistence; docs/evaluate.md).
    data_volume_level_share: float = _f(1.0, "share of a data session's log-volume variance that is the subscriber's own "
                                        "level, persistent over hours (0: every session independent); the volume "
                                        "law per session stays lognormal(mu, sigma)", lo=0, hi=1)
    data_volume_level_hours: float = _f(8.0, "correlation time (h) of that level: its hour-to-hour correlation is "
                                        "exp(-1 / hours)", lo=0.01, hi=168)
    data_volume_habit_share: float = _f(0.7, "share of that level that is the subscriber's daily habit: the same at "
                                        "each hour of the day every day (a heavy evening hour recurs)", lo=0, hi=1)
    data_uplink_share: float = _f(0.1, "uplink bytes as a share of a data session's volume", lo=0, hi=1)
    redial_prob: float = _f(0.5, "chance that a call that did not connect (blocked, busy) is dialled again", lo=0, hi=1)
    redial_delay_mean_s: float = _f(30.0, "mean delay before a redial (exponential, s)", lo=0, lo_open=True)
    redial_max: int = _f(3, "most redials of one call attempt (0: nobody redials)", lo=0, hi=100)
    cell_shapes: str = _f("profile", "weekly load shape per cell: the profile's for every cell, or a deviation from "
                          "the city's shape drawn per cell from a learned generator trained on real squares (each "
                          "service keeps its city-wide shape; measured no closer to real than the profile)",
                          choices=("profile", "vae", "gan"))


@dataclass(frozen=True)
class MobilityConfig:
    stickiness: float = _f(0.55, "chance per hour of keeping the current place without re-deciding", lo=0, hi=1)
    explore_rho: float = _f(0.6, "exploration: P(new place) = rho * S^-gamma, S = distinct places seen", lo=0, hi=1)
    explore_gamma: float = _f(0.21, "exploration decay exponent (Song et al. 2010)", lo=0)
    jump_hops_mean: float = _f(3.0, "mean neighbour hops of an exploration jump", lo=1)
    global_jump_share: float = _f(0.1, "share of exploration jumps anywhere in the network, weighted by work weight", lo=0, hi=1)
    local_outing_scale: float = _f(0.5, "local mobility class (population.local_share): their hourly chance of an "
                                   "'other' place (an outing) relative to everybody else's", lo=0, hi=1)
    local_stickiness: float = _f(0.4, "local mobility class (population.local_share): their chance per hour of "
                                 "keeping the current place (everybody else: stickiness)", lo=0, hi=1)
    local_jump_hops_mean: float = _f(1.0, "local mobility class: mean neighbour hops of their exploration jumps "
                                     "(everybody else: jump_hops_mean)", lo=1)
    local_global_jump_share: float = _f(0.0, "local mobility class: share of their exploration jumps anywhere in the "
                                        "network (everybody else: global_jump_share)", lo=0, hi=1)
    speed_kmh_median: float = _f(33.0, "median travel speed of a trip (default: the Irish 5G drive traces' Speed median, profile [handover])", lo=0, lo_open=True)
    speed_log_sigma: float = _f(0.5, "log-sd of trip speeds", lo=0)
    ping_pong_prob: float = _f(0.18, "chance that a handover while moving bounces back to the previous cell briefly", lo=0, hi=1)
    ping_pong_dwell_s: float = _f(4.0, "mean time spent in the cell bounced into", lo=0, lo_open=True)
    dwell_log_sigma: float = _f(1.149, "log-sd of a mean-one lognormal factor on each hop's dwell while moving "
                                "(0: dwell = crossing distance / trip speed; default: the Irish 5G driving traces', "
                                "profile [handover] dwell_log_sigma)", lo=0, hi=4)


@dataclass(frozen=True)
class OutputConfig:
    location_update_interval_s: int = _f(3600, "periodic location update interval (s); 0 disables them", lo=0, hi=604_800)
    kpi_interval_s: int = _f(3600, "cell KPI interval (s); must divide 3600", lo=60, hi=3600)
    pm_interval_s: int = _f(0, "interval of the PM-counter tables pm_cells and pm_relations (s), e.g. 900; must "
                            "divide 3600; 0 (default) writes no PM tables (pm_cells, pm_relations, voice_matrix)",
                            lo=0, hi=3600)
    compression: str = _f("zstd", "Parquet compression codec", choices=("zstd", "snappy", "lz4", "gzip", "none"))


@dataclass(frozen=True)
class Scenario:
    name: str = _f("default", "name of the scenario, written into every output")
    description: str = _f("", "one line on what the scenario is for")
    seed: int = _f(1, "root random seed", lo=0, hi=2**63 - 1)
    privacy_ledger: str = _f("", "path of the privacy ledger (JSON) of the calibration this scenario came from, "
                             "relative to the scenario file; copied into every run's manifest")
    time: TimeConfig = _section(TimeConfig, "the run window")
    network: NetworkConfig = _section(NetworkConfig, "cells, sites and capacities")
    population: PopulationConfig = _section(PopulationConfig, "subscribers, homes, workplaces and contacts")
    behaviour: BehaviourConfig = _section(BehaviourConfig, "service demand")
    mobility: MobilityConfig = _section(MobilityConfig, "movement between places and cells")
    output: OutputConfig = _section(OutputConfig, "what is written and how")
    incidents: tuple[dict, ...] = field(default=(), metadata={
        "doc": "the incidents ([[incidents]] tables; validated against the network by scenarios.incidents)",
        "raw": True})
    # Where the scenario came from (not a TOML key): relative paths resolve against it.
    source: str = field(default="<default>", metadata={"internal": True})

    @property
    def base_dir(self) -> Path | None:
        """The folder the scenario's relative paths resolve against: its file's folder, or None for
        a built-in or in-memory scenario (source "<...>")."""
        return None if self.source.startswith("<") else Path(self.source).parent

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        return out


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def _check_scalar(value: Any, tp: type, meta: dict[str, Any], where: str, problems: list[str]) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, tp) and not (tp in (int, float) and isinstance(value, bool))
    if not ok:
        problems.append(f"{where}: {value!r} is not {_TYPE_NAMES.get(tp, tp.__name__)}")
        return None
    if tp is float and not math.isfinite(value):
        problems.append(f"{where}: {value!r} is not a finite number")
        return None
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        problems.append(f"{where}: {value!r} is not allowed (choose one of {', '.join(map(repr, choices))})")
        return None
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        rule = f"> {lo}" if meta.get("lo_open") else f">= {lo}"
        problems.append(f"{where}: {value!r} is out of range (must be {rule})")
        return None
    if hi is not None and value > hi:
        problems.append(f"{where}: {value!r} is out of range (must be <= {hi})")
        return None
    return value


def _build(cls: type, raw: Any, path: str, file: str, problems: list[str], base: Any = None) -> Any:
    """Validate ``raw`` as a ``cls`` table; keys not given keep their value in ``base`` (the default)."""
    base = cls() if base is None else base
    if not isinstance(raw, dict):
        problems.append(f"{file}: {path}: {raw!r} is not a table")
        return base
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(fields)})"
            problems.append(f"{file}: {where}: unknown key{hint}")
            continue
        tp = hints[key]
        if fields[key].metadata.get("raw"):
            if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
                problems.append(f"{file}: {where}: {value!r} is not a list of tables ([[{key}]])")
            else:
                kwargs[key] = tuple(value)
        elif _is_section(tp):
            kwargs[key] = _build(tp, value, where, file, problems, getattr(base, key))
        else:
            checked = _check_scalar(value, tp, dict(fields[key].metadata), f"{file}: {where}", problems)
            if checked is not None:
                kwargs[key] = checked
    return dataclasses.replace(base, **kwargs)


def _cross_checks(sc: Scenario, file: str, problems: list[str]) -> None:
    try:
        zoneinfo.ZoneInfo(sc.time.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"{file}: time.timezone: {sc.time.timezone!r} is not an IANA time zone (e.g. 'Europe/Rome', 'UTC')")
    try:
        if dt.datetime.fromisoformat(sc.time.start).tzinfo is not None:
            problems.append(f"{file}: time.start: {sc.time.start!r} has a UTC offset; give the local time "
                            "without one (the zone is time.timezone)")
    except ValueError:
        problems.append(f"{file}: time.start: {sc.time.start!r} is not an ISO date-time (e.g. '2024-03-05T00:00:00')")
    for cls_name in ("urban", "suburban", "rural"):
        ch = getattr(sc.network.voice_channels, cls_name)
        if ch != int(ch):
            problems.append(f"{file}: network.voice_channels.{cls_name}: {ch} is not a whole number of channels")
        if getattr(sc.network.data_mbps, cls_name) <= 0:
            problems.append(f"{file}: network.data_mbps.{cls_name}: {getattr(sc.network.data_mbps, cls_name)} "
                            "is out of range (must be > 0)")
    if 3600 % sc.output.kpi_interval_s:
        problems.append(f"{file}: output.kpi_interval_s: {sc.output.kpi_interval_s} does not divide 3600 "
                        "(use e.g. 300, 900, 1800 or 3600)")
    if sc.output.pm_interval_s and (sc.output.pm_interval_s < 60 or 3600 % sc.output.pm_interval_s):
        problems.append(f"{file}: output.pm_interval_s: {sc.output.pm_interval_s} does not divide 3600 or is under 60 "
                        "(use e.g. 300, 900, 1800 or 3600; 0 for no PM tables)")
    if sc.network.suburban_km < sc.network.urban_km:
        problems.append(f"{file}: network.suburban_km: {sc.network.suburban_km} is smaller than "
                        f"network.urban_km ({sc.network.urban_km})")
    if sc.network.layout == "csv" and not sc.network.cells_csv:
        problems.append(f"{file}: network.cells_csv: required when network.layout = 'csv'")
    bad_radio = [r for r in cell_radios(sc.network.cells_radio) if r not in CELL_RADIOS]
    if bad_radio or (sc.network.cells_radio.strip() and not cell_radios(sc.network.cells_radio)):
        problems.append(f"{file}: network.cells_radio: {sc.network.cells_radio!r} is not a comma-separated list of "
                        f"radio types (choose among {', '.join(CELL_RADIOS)}; '' for every type)")
    for name, value in (("call_duration_log_sigma", sc.behaviour.call_duration_log_sigma),):
        if value == value and value < 0:  # NaN means "from the profile"
            problems.append(f"{file}: behaviour.{name}: {value} is out of range (must be >= 0)")


# The radio types of OpenCellID's cell lists (its radio column).
CELL_RADIOS = ("GSM", "UMTS", "CDMA", "LTE", "NR")
# The keys that select and group the rows of an OpenCellID cell list (no effect on other CSVs).
OPENCELLID_KEYS = ("cells_radio", "cells_min_samples", "cells_duplicates", "cells_sites", "cells_colocated_m")


def cell_radios(text: str) -> tuple[str, ...]:
    """``network.cells_radio`` as a tuple of radio names (upper case); empty for every type."""
    return tuple(r.strip().upper() for r in text.split(",") if r.strip())


# Keys that act only with some network layouts: (key, layouts where it acts, what to set instead).
_LAYOUT_KEYS = (
    ("cells_csv", ("csv",), "set network.layout = 'csv' to use the file, or remove network.cells_csv"),
    ("centre_scale_km", ("random",), "it shapes the random layout only; remove it"),
    ("sites", ("hex", "random"), "the cells CSV gives the sites; remove network.sites"),
    ("sectors", ("hex", "random"), "the cells CSV gives the cells of each site; remove network.sectors"),
    ("radius_km", ("hex", "random"), "the cells CSV gives the positions; remove network.radius_km"),
    ("cells_within_km", ("csv",), "it selects the rows of the cells CSV; remove it"),
    *((key, ("csv",), "it selects and groups the rows of an OpenCellID cell list; remove it") for key in OPENCELLID_KEYS),
)


# Keys that act only with one network.dimensioning: (key, the mode where it acts, what to set instead).
_DIMENSIONING_KEYS = (
    ("voice_channels", "fixed", "each cell's channels come from its busy-hour load at network.target_blocking; "
     "set that, or network.dimensioning = 'fixed' to give channels per density class"),
    ("data_mbps", "fixed", "each cell's capacity comes from its busy-hour demand at "
     "network.target_data_utilisation; set that, or network.dimensioning = 'fixed' to give it per density class"),
    ("target_blocking", "grade_of_service", "the channels are network.voice_channels per density class; set "
     "those, or network.dimensioning = 'grade_of_service'"),
    ("target_data_utilisation", "grade_of_service", "the capacity is network.data_mbps per density class; set "
     "that, or network.dimensioning = 'grade_of_service'"),
)


def idle_network_keys(sc: Scenario) -> dict[str, str]:
    """The network keys that have no effect with the scenario's layout or dimensioning, each with
    the setting that idles it (complete dumps leave them out, so that the dump loads as the user's
    own file would)."""
    out = {key: f"layout = {sc.network.layout!r}" for key, layouts, _ in _LAYOUT_KEYS
           if sc.network.layout not in layouts}
    out.update({key: f"dimensioning = {sc.network.dimensioning!r}" for key, mode, _ in _DIMENSIONING_KEYS
                if sc.network.dimensioning != mode})
    if _origin_idle(sc.network):
        out.update({key: "layout = 'csv' without cells_within_km" for key in ("origin_lat", "origin_lon")})
    return out


def _origin_idle(net: NetworkConfig) -> bool:
    """A cell list is centred on its cells' mean position unless cells_within_km selects around the origin."""
    return net.layout == "csv" and net.cells_within_km == 0


def _no_effect(sc: Scenario, file: str, given: set[tuple[str, ...]], problems: list[str]) -> None:
    """A key that has no effect where it is given is an error that says what to set instead. A
    key written at its default value is let through: it changes nothing either way."""
    defaults = NetworkConfig()
    for key, layouts, instead in _LAYOUT_KEYS:
        if (sc.network.layout not in layouts and ("network", key) in given
                and getattr(sc.network, key) != getattr(defaults, key)):
            problems.append(f"{file}: network.{key}: has no effect with network.layout = "
                            f"{sc.network.layout!r}: {instead}")
    for key in ("origin_lat", "origin_lon"):
        if (_origin_idle(sc.network) and ("network", key) in given
                and getattr(sc.network, key) != getattr(defaults, key)):
            problems.append(f"{file}: network.{key}: has no effect with network.layout = 'csv' unless "
                            "network.cells_within_km is set (the centre is then the cells' mean position): "
                            "remove it, or set network.cells_within_km to keep the cells around it")
    for key, mode, instead in _DIMENSIONING_KEYS:
        said = any(f": network.{key}." in p or f": network.{key}:" in p for p in problems)  # one line a key
        if (sc.network.dimensioning != mode and ("network", key) in given and not said
                and getattr(sc.network, key) != getattr(defaults, key)):
            problems.append(f"{file}: network.{key}: has no effect with network.dimensioning = "
                            f"{sc.network.dimensioning!r}: {instead}")


def _keys(raw: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out = set()
    for k, v in raw.items():
        out.add((*prefix, k))
        if isinstance(v, dict):
            out |= _keys(v, (*prefix, k))
    return out


def from_dict(raw: dict[str, Any], file: str = "<scenario>",
              given: set[tuple[str, ...]] | None = None) -> Scenario:
    """Validate a TOML document; raise :class:`ConfigError` listing every problem. ``given`` is
    the set of keys the user wrote (dotted paths as tuples): those are also checked for having
    no effect where they are given. None (a complete scenario rebuilt from a manifest, a
    calibrated file, a study variant) checks none: such documents hold every key, and a key
    inherited through ``extends`` cannot be removed by the file that inherits it."""
    problems: list[str] = []
    sc = _build(Scenario, raw, "", file, problems)
    # Checks across keys run on what was valid (bad keys keep their defaults), so every
    # problem is reported in one go.
    _cross_checks(sc, file, problems)
    if given is not None:
        _no_effect(sc, file, given, problems)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(sc, source=file)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value), the value read as a TOML value (else a string)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected dotted.key=value")
    key, _, value = text.partition("=")
    keys = [k.strip() for k in key.strip().split(".")]
    if not all(keys):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return keys, parsed


_INDEXED = re.compile(r"^(\w+)\[(\d+)\]$")


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides; a key may index a list of tables (``incidents[0].start``)."""
    for keys, value in overrides:
        node = raw
        for j, k in enumerate(keys):
            m = _INDEXED.match(k)
            last = j == len(keys) - 1
            if m:
                items = node.get(m.group(1))
                i = int(m.group(2))
                if not isinstance(items, list) or i >= len(items):
                    n = len(items) if isinstance(items, list) else 0
                    raise ConfigError(f"--set {'.'.join(keys)}: {m.group(1)} has no entry {i} "
                                      f"({'valid 0..' + str(n - 1) if n else 'it has none'})")
                if last:
                    items[i] = value
                elif not isinstance(items[i], dict):
                    raise ConfigError(f"--set {'.'.join(keys)}: {k!r} is not a table")
                else:
                    node = items[i]
            elif last:
                node[k] = value
            else:
                nxt = node.setdefault(k, {})
                if not isinstance(nxt, dict):
                    raise ConfigError(f"--set {'.'.join(keys)}: {k!r} is not a table")
                node = nxt
    return raw


def read_toml(path: Path, label: str, shown: str, missing_hint: str = "") -> dict[str, Any]:
    """A scenario file's TOML table; unreadable or malformed files raise one :class:`ConfigError`
    line (``shown`` names the file in read errors, ``label`` in TOML errors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such scenario file{f' ({missing_hint})' if missing_hint else ''}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read the scenario file ({exc.__class__.__name__}: {exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: not valid TOML: {exc}") from None


def load(path: str | Path | None, overrides: list[str] | None = None) -> Scenario:
    """Load and validate a scenario file (or the defaults when ``path`` is None)."""
    parsed_overrides, bad = [], []
    for o in overrides or []:
        try:
            parsed_overrides.append(parse_override(o))
        except ConfigError as exc:
            bad.extend(exc.problems)
    if bad:
        raise ConfigError(bad)
    if path is None:
        if not parsed_overrides:
            return Scenario()
        raw = apply_overrides({}, parsed_overrides)
        return from_dict(raw, "<default>", given=_keys(raw))
    p = Path(path)
    name = p.name
    raw = apply_overrides(read_toml(p, name, str(path)), parsed_overrides)
    sc = from_dict(raw, name, given=_keys(raw))
    return dataclasses.replace(sc, source=str(p.resolve()))
