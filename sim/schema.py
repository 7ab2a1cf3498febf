"""The record schema: every output table's columns, types and units, defined once.

Categorical columns are Parquet dictionary columns whose codes are the kernel constants in
:mod:`sim.kernels.resolution`; the vocabularies below are in code order. ``docs/schema.md``
documents the same tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SERVICES = ("voice", "sms", "data")
DIRECTIONS = ("mo", "mt")
OUTCOMES = ("completed", "blocked", "dropped", "failed")
CAUSES = (None, "no_channel", "remote_blocked", "handover_failure", "remote_drop", "busy", "session_limit",
          "no_coverage", "cell_outage", "remote_no_coverage")
REASONS = ("cell_change", "handover", "event", "periodic", "attach")
INCIDENT_DOC = "the incident that changed this row (see incidents.parquet); null where the row is as without incidents"
DENSITY_CLASSES = ("urban", "suburban", "rural")
ACTIVITY_CLASSES = ("low", "medium", "high", "very_high")

TABLES = ("cdr", "locations", "cell_kpis", "subscribers", "cells")
# The PM-counter tables (output.pm_interval_s > 0).
PM_TABLES = ("pm_cells", "pm_relations", "voice_matrix")


def _f(name: str, type_: pa.DataType, unit: str, doc: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"unit": unit, "doc": doc})


def _dict() -> pa.DataType:
    return pa.dictionary(pa.int8(), pa.string())


def timestamp(tz: str) -> pa.DataType:
    return pa.timestamp("ms", tz=tz)


def cdr_schema(tz: str) -> pa.Schema:
    return pa.schema([
        _f("record_id", pa.int64(), "", "unique id of the record within the run"),
        _f("session_id", pa.int64(), "", "id of the call, SMS or data session; the MO and MT records of an on-net call share it"),
        _f("subscriber_id", pa.int32(), "", "subscriber this record belongs to"),
        _f("counterpart_id", pa.int32(), "", "the other party when on-net; null when off-net or for data", nullable=True),
        _f("service", _dict(), "", "voice | sms | data"),
        _f("direction", _dict(), "", "mo (originated) | mt (terminated)"),
        _f("start_time", timestamp(tz), "ms", "time of the attempt"),
        _f("duration_s", pa.float64(), "s", "time from attempt to release (0 when not connected)"),
        _f("bytes_up", pa.int64(), "byte", "uplink volume (data sessions)"),
        _f("bytes_down", pa.int64(), "byte", "downlink volume (data sessions)"),
        _f("cell_id", pa.int32(), "", "serving cell at the start"),
        _f("end_cell_id", pa.int32(), "", "serving cell at the end (after handovers)"),
        _f("outcome", _dict(), "", "completed | blocked | dropped | failed"),
        _f("cause", _dict(), "", "why not completed: no_channel | remote_blocked | handover_failure | remote_drop | busy | session_limit | no_coverage | cell_outage | remote_no_coverage", nullable=True),
        _f("redial", pa.int8(), "", "0 for a first attempt; k for the k-th redial of a call that did not connect"),
        _f("incident_id", pa.int32(), "", INCIDENT_DOC, nullable=True),
    ])


def locations_schema(tz: str) -> pa.Schema:
    return pa.schema([
        _f("subscriber_id", pa.int32(), "", "subscriber"),
        _f("time", timestamp(tz), "ms", "time of the observation"),
        _f("cell_id", pa.int32(), "", "serving cell from this time on"),
        _f("reason", _dict(), "", "cell_change (idle) | handover (in a call or data session) | event (a CDR) | periodic (location update) | attach (re-attach when a cell comes back)"),
        _f("incident_id", pa.int32(), "", INCIDENT_DOC, nullable=True),
    ])


def cell_kpis_schema(tz: str) -> pa.Schema:
    i32, f64 = pa.int32(), pa.float64()
    return pa.schema([
        _f("interval_start", timestamp(tz), "ms", "start of the KPI interval"),
        _f("cell_id", i32, "", "cell"),
        _f("voice_attempts", i32, "1", "voice call legs attempted in this cell and interval"),
        _f("voice_completed", i32, "1", "of those, completed normally"),
        _f("voice_blocked", i32, "1", "of those, blocked for lack of a channel here"),
        _f("voice_dropped", i32, "1", "of those, dropped after connecting"),
        _f("voice_failed", i32, "1", "of those, failed otherwise (busy party, remote blocking)"),
        _f("handover_attempts", i32, "1", "handovers of calls into this cell"),
        _f("handover_failures", i32, "1", "of those, failed for lack of a channel (the call dropped)"),
        _f("busy_channels_mean", f64, "channel", "time-average of busy voice channels in this cell and interval (Erlang)"),
        _f("busy_channels_peak", i32, "channel", "most channels busy at once"),
        _f("offered_erlang", f64, "Erl", "requested holding time of the legs attempted here, per interval length"),
        _f("carried_erlang", f64, "Erl", "holding time actually served to the legs attempted here, per interval length"),
        _f("sms", i32, "1", "SMS sent or received in this cell"),
        _f("data_sessions", i32, "1", "data sessions started in this cell"),
        _f("data_blocked", i32, "1", "data sessions refused: the cell already served its maximum at once"),
        _f("data_volume_mb", f64, "MB", "downlink volume served in this cell in the interval (10^6 bytes)"),
        _f("data_sessions_mean", f64, "1", "time-average of concurrent data sessions"),
        _f("throughput_mean_mbps", f64, "Mbps", "volume served per session-second (null when idle)", nullable=True),
        _f("incident_id", i32, "", INCIDENT_DOC, nullable=True),
    ])


def pm_cells_schema(tz: str) -> pa.Schema:
    i32, f64 = pa.int32(), pa.float64()
    return pa.schema([
        _f("interval_start", timestamp(tz), "ms", "start of the PM interval (output.pm_interval_s)"),
        _f("cell_id", i32, "", "cell"),
        _f("rru_prb_used_dl", f64, "1", "RRU.PrbUsedDl / RRU.PrbAvailDl: downlink volume served against the cell's radio capacity over the interval (0..1)"),
        _f("rru_prb_used_ul", f64, "1", "RRU.PrbUsedUl / RRU.PrbAvailUl: uplink volume against the uplink capacity (the downlink's times 51024/150752, TS 36.306) (0..1)"),
        _f("rrc_conn_mean", f64, "1", "RRC.ConnMean: time-average of connected UEs (call legs holding a channel plus data sessions in transfer)"),
        _f("rrc_conn_max", i32, "1", "RRC.ConnMax: most connected UEs at once"),
        _f("drb_ue_active_dl_mean", f64, "1", "DRB.UEActiveDl: time-average of data sessions in transfer"),
        _f("drb_ue_active_dl_max", i32, "1", "most data sessions in transfer at once"),
        _f("drb_ue_thp_dl_mean_mbps", f64, "Mbps", "DRB.UEThpDl: downlink volume over session-time in transfer (null when idle)", nullable=True),
        _f("drb_ue_thp_dl_p10_mbps", f64, "Mbps", "10th percentile of the mean downlink rate of the data sessions completed in this cell and interval (null when none)", nullable=True),
        _f("drb_vol_dl_mb", f64, "MB", "downlink volume served (10^6 bytes), as cell_kpis.data_volume_mb"),
        _f("rrc_conn_estab_att", i32, "1", "RRC.ConnEstabAtt: session attempts (CDR rows) of UEs that reached this cell"),
        _f("rrc_conn_estab_succ", i32, "1", "RRC.ConnEstabSucc: of those, not refused for lack of resources (blocked)"),
        _f("ho_out_att", i32, "1", "HO.ExeAtt (outgoing): handovers of calls and data sessions out of this cell"),
        _f("ho_out_succ", i32, "1", "HO.ExeSucc (outgoing): of those, not failed for lack of a channel in the target (which drops the call)"),
        _f("voice_erlang", f64, "Erl", "ERAB.UsageNbr.Mean (QCI 1): time-average of voice call legs holding a channel"),
        _f("voice_estab_att", i32, "1", "ERAB.EstabInitAttNbr (QCI 1): voice call legs attempted here"),
        _f("voice_estab_succ", i32, "1", "ERAB.EstabInitSuccNbr (QCI 1): of those, not blocked for lack of a channel here"),
        _f("voice_blocking", f64, "1", "(attempts - successes) / attempts (null without attempts)", nullable=True),
    ])


def pm_relations_schema(tz: str) -> pa.Schema:
    i32 = pa.int32()
    return pa.schema([
        _f("interval_start", timestamp(tz), "ms", "start of the PM interval"),
        _f("source_cell_id", i32, "", "the cell handed over from"),
        _f("target_cell_id", i32, "", "the cell handed over to"),
        _f("ho_att", i32, "1", "HO.OutAttTarget: handovers of calls and data sessions from source to target"),
        _f("ho_succ", i32, "1", "HO.OutSuccTarget: of those, not failed for lack of a channel in the target (which drops the call)"),
    ])


def voice_matrix_schema(tz: str) -> pa.Schema:
    i32 = pa.int32()
    return pa.schema([
        _f("hour_start", timestamp(tz), "ms", "start of the hour of the attempts"),
        _f("from_cell_id", i32, "", "the calling party's cell at the attempt; null for a call from outside the network", nullable=True),
        _f("to_cell_id", i32, "", "the called party's cell at the attempt; null for an off-net call or one that never reached the called party", nullable=True),
        _f("calls", i32, "1", "voice calls attempted (each redial one more)"),
        _f("calls_connected", i32, "1", "of those, connected (completed or dropped later)"),
        _f("duration_s", pa.float64(), "s", "holding time of the connected calls, whenever they ended"),
        _f("erlang", pa.float64(), "Erl", "duration_s / 3600: the traffic these calls carried, per hour"),
    ])


def subscribers_schema() -> pa.Schema:
    return pa.schema([
        _f("subscriber_id", pa.int32(), "", "subscriber"),
        _f("home_cell_id", pa.int32(), "", "cell of home"),
        _f("work_cell_id", pa.int32(), "", "cell of work or daytime anchor"),
        _f("commuter", pa.bool_(), "", "whether the work cell may be far from home"),
        _f("local", pa.bool_(), "", "local mobility class: anchor on the home site, fewer and nearer outings"),
        _f("activity", pa.float64(), "1", "activity multiplier (lognormal, mean 1)"),
        _f("activity_class", _dict(), "", "low (<0.5) | medium (<1.5) | high (<4) | very_high"),
        _f("contacts", pa.int32(), "1", "number of contacts in the social graph"),
    ])


def cells_schema() -> pa.Schema:
    return pa.schema([
        _f("cell_id", pa.int32(), "", "cell"),
        _f("site_id", pa.int32(), "", "site (cells of a site share a position)"),
        _f("lat", pa.float64(), "deg", "site latitude (WGS84)"),
        _f("lon", pa.float64(), "deg", "site longitude"),
        _f("azimuth_deg", pa.float64(), "deg", "sector azimuth clockwise from north; null for omni cells", nullable=True),
        _f("x_km", pa.float64(), "km", "site east offset from the network origin"),
        _f("y_km", pa.float64(), "km", "site north offset from the network origin"),
        _f("density", _dict(), "", "urban | suburban | rural"),
        _f("voice_channels", pa.int32(), "channel", "voice channels"),
        _f("data_mbps", pa.float64(), "Mbps", "downlink data capacity"),
        _f("neighbours", pa.list_(pa.int32()), "", "neighbour cells (handover candidates)"),
        _f("source_id", pa.string(), "", "the cell's id in the user's CSV (null for generated layouts)", nullable=True),
    ])


def dictionary_array(codes, vocabulary: tuple) -> pa.DictionaryArray:
    """Codes (numpy int) to a dictionary column; a None entry of the vocabulary means null."""
    codes = np.asarray(codes, dtype=np.int8)
    values = [v for v in vocabulary if v is not None]
    if vocabulary[0] is None:
        idx = pa.array(codes - np.int8(1), mask=codes == 0)
    else:
        idx = pa.array(codes)
    return pa.DictionaryArray.from_arrays(idx, pa.array(values, type=pa.string()))


def incidents_schema(tz: str) -> pa.Schema:
    return pa.schema([
        _f("incident_id", pa.int32(), "", "id used in the incident_id column of cdr, locations and cell_kpis"),
        _f("kind", pa.string(), "", "cell_outage | site_outage | degraded_cell | backhaul_failure | mass_event | emergency | special_day | random_failure"),
        _f("name", pa.string(), "", "the incident's name in the scenario (or generated)"),
        _f("start", timestamp(tz), "ms", "start of the incident"),
        _f("end", timestamp(tz), "ms", "end of the incident"),
        _f("effect_start", timestamp(tz), "ms", "earliest time an output row can differ from the baseline (travel to a venue, the quarter hour a demand change begins)"),
        _f("cells", pa.list_(pa.int32()), "", "affected cells (footprint)"),
        _f("params", pa.string(), "", "the incident's parameters as JSON"),
    ])


def topology_schema() -> pa.Schema:
    return pa.schema([
        _f("site_id", pa.int32(), "", "site"),
        _f("agg_node", pa.int32(), "", "the aggregation (transport) node the site hangs on"),
        _f("ring", pa.int32(), "", "the transport ring of that node"),
        _f("power_domain", pa.int32(), "", "the power domain (sites fed together) of the site"),
    ])
