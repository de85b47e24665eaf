//! Which tables there are, their columns, and how one log record becomes one row.
//!
//! One table per topic ([`TABLES`]). Every table starts with the same four columns:
//!
//! * `log_partition`, `log_offset` — where the record is in the log;
//! * `tenant` — the tenant of the device, derived from its qualified id (see
//!   [`emberline_common::tenant`]): `default` for a plain id, `acme` for `acme/grill-1`;
//! * `device_id` — the device id as the log keys it (qualified).
//!
//! Then one column per field of the topic's events, under the field's Avro name, nullable
//! where the field is optional (or, in a topic carrying several event types, where not every
//! type has it). Topics that carry several event types (`device.events`, `cook.commands`,
//! `alerts`) get an `event_type` column with the record's short name (`CookStarted`,
//! `AlertCleared`, …). Times are Arrow timestamps (ms, UTC). Map fields (`targets_c`,
//! `attributes`, `probe_labels`) are JSON object text for now.
//!
//! Records are decoded with the schema codec: a record written with an older version of its
//! schema is resolved into the current one, so its new fields read as their defaults.
//! Records of a type the table does not hold are not rows: the processor's clock ticks in
//! `cook.commands`. Records that do not decode at all are skipped with a warning (the
//! processors have already sent them to `dead-letter`, which has a table of its own).

use std::collections::BTreeMap;

use emberline_common::tenant;
use emberline_log::{Record, topics};
use emberline_schemas::events::{
    AlertAcknowledged, AlertCleared, AlertRaised, AlertRuleSet, CookEnded, CookNoteAdded,
    CookStarted, DeviceRegistered, DeviceRemoved, DeviceStatus, PredictionUpdated, ProbeReading,
    TargetSet, TrendUpdated,
};
use emberline_schemas::{CodecError, EventCodec, EventKind};

use crate::columns::{Column, Row, Ty, opt, req};

/// How a topic's records decode.
#[derive(Clone, Copy)]
pub(crate) enum Decode {
    /// Confluent-framed Avro events: the row is written from the decoded event of `kind`.
    /// Returns `Ok(false)` (and writes nothing) for a kind the table does not hold.
    Avro(fn(&EventCodec, EventKind, &Record, &mut Row<'_>) -> Result<bool, CodecError>),
    /// The dead-letter topic's JSON documents.
    DeadLetter,
}

/// One table over one topic.
#[derive(Clone, Copy)]
pub struct TableDef {
    /// The table's name in SQL.
    pub name: &'static str,
    /// The topic it reads.
    pub topic: &'static str,
    pub(crate) columns: &'static [Column],
    pub(crate) decode: Decode,
}

impl TableDef {
    /// The column that holds each record's log timestamp, so that filters on it can be
    /// answered from the log's time index: the event's `event_time` (every writer stamps a
    /// record with its event's time), or the dead letter's `record_time`.
    pub(crate) fn time_column(&self) -> &'static str {
        match self.decode {
            Decode::Avro(_) => "event_time",
            Decode::DeadLetter => "record_time",
        }
    }
}

impl std::fmt::Debug for TableDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableDef")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Every table, in the order `SHOW TABLES` would be read.
pub static TABLES: [TableDef; 7] = [
    TableDef {
        name: "probe_readings",
        topic: topics::PROBE_READINGS,
        columns: PROBE_READINGS,
        decode: Decode::Avro(probe_readings),
    },
    TableDef {
        name: "device_events",
        topic: topics::DEVICE_EVENTS,
        columns: DEVICE_EVENTS,
        decode: Decode::Avro(device_events),
    },
    TableDef {
        name: "cook_commands",
        topic: topics::COOK_COMMANDS,
        columns: COOK_COMMANDS,
        decode: Decode::Avro(cook_commands),
    },
    TableDef {
        name: "trends",
        topic: topics::DERIVED_TRENDS,
        columns: TRENDS,
        decode: Decode::Avro(trends),
    },
    TableDef {
        name: "predictions",
        topic: topics::DERIVED_PREDICTIONS,
        columns: PREDICTIONS,
        decode: Decode::Avro(predictions),
    },
    TableDef {
        name: "alerts",
        topic: topics::ALERTS,
        columns: ALERTS,
        decode: Decode::Avro(alerts),
    },
    TableDef {
        name: "dead_letter",
        topic: topics::DEAD_LETTER,
        columns: DEAD_LETTER,
        decode: Decode::DeadLetter,
    },
];

/// The table called `name`.
pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

/// Name of the column holding the device id (the log's key); filters on it are pushed down.
pub const DEVICE_COLUMN: &str = "device_id";
/// Name of the column holding the log partition; filters on it are pushed down.
pub const PARTITION_COLUMN: &str = "log_partition";

macro_rules! columns {
    ($($col:expr),* $(,)?) => {
        [
            req(PARTITION_COLUMN, Ty::Int32),
            req("log_offset", Ty::Int64),
            req("tenant", Ty::Utf8),
            req(DEVICE_COLUMN, Ty::Utf8),
            $($col),*
        ]
    };
}

static PROBE_READINGS: &[Column] = &columns![
    req("probe_id", Ty::Utf8),
    req("event_time", Ty::Time),
    req("received_time", Ty::Time),
    opt("temperature_c", Ty::Float64),
    req("source", Ty::Utf8),
];

static DEVICE_EVENTS: &[Column] = &columns![
    req("event_type", Ty::Utf8),
    req("event_time", Ty::Time),
    // DeviceStatus
    opt("received_time", Ty::Time),
    opt("online", Ty::Bool),
    opt("battery_percent", Ty::Float64),
    opt("signal_dbm", Ty::Int32),
    opt("firmware", Ty::Utf8),
    opt("source", Ty::Utf8),
    opt("note", Ty::Utf8),
    opt("attributes", Ty::Utf8),
    // DeviceRegistered (its `tenant` field, the owner it names, is `owner` here: the
    // `tenant` column is the one derived from the device id, as in every table)
    opt("owner", Ty::Utf8),
    opt("model", Ty::Utf8),
    opt("name", Ty::Utf8),
    opt("probe_labels", Ty::Utf8),
    // DeviceRemoved
    opt("reason", Ty::Utf8),
];

static COOK_COMMANDS: &[Column] = &columns![
    req("event_type", Ty::Utf8),
    req("event_time", Ty::Time),
    opt("cook_id", Ty::Utf8),
    // CookStarted
    opt("what", Ty::Utf8),
    opt("targets_c", Ty::Utf8),
    opt("pit_min_c", Ty::Float64),
    opt("pit_max_c", Ty::Float64),
    opt("meat", Ty::Utf8),
    opt("weight_kg", Ty::Float64),
    opt("serve_at_ms", Ty::Time),
    opt("rest_min", Ty::Float64),
    // TargetSet, AlertRuleSet
    opt("probe_id", Ty::Utf8),
    opt("target_c", Ty::Float64),
    // CookNoteAdded
    opt("text", Ty::Utf8),
    // AlertRuleSet
    opt("rule_id", Ty::Utf8),
    opt("kind", Ty::Utf8),
    opt("threshold", Ty::Float64),
    opt("low", Ty::Float64),
    opt("high", Ty::Float64),
    opt("for_s", Ty::Float64),
    opt("hysteresis", Ty::Float64),
    opt("repeat_every_s", Ty::Float64),
    opt("enabled", Ty::Bool),
    opt("label", Ty::Utf8),
    // AlertAcknowledged
    opt("alert_id", Ty::Utf8),
    opt("snooze_until", Ty::Time),
];

static TRENDS: &[Column] = &columns![
    req("probe_id", Ty::Utf8),
    req("event_time", Ty::Time),
    req("temperature_c", Ty::Float64),
    req("smoothed_c", Ty::Float64),
    opt("rate_c_per_min", Ty::Float64),
    req("min_c", Ty::Float64),
    req("max_c", Ty::Float64),
    req("window_ms", Ty::Int64),
    req("samples", Ty::Int32),
    req("source_offset", Ty::Int64),
];

static PREDICTIONS: &[Column] = &columns![
    req("probe_id", Ty::Utf8),
    req("cook_id", Ty::Utf8),
    req("event_time", Ty::Time),
    req("temperature_c", Ty::Float64),
    req("target_c", Ty::Float64),
    opt("pit_c", Ty::Float64),
    opt("remaining_s", Ty::Float64),
    opt("low_s", Ty::Float64),
    opt("high_s", Ty::Float64),
    opt("done_at", Ty::Time),
    req("stall", Ty::Bool),
    req("phase", Ty::Utf8),
    req("pit_phase", Ty::Utf8),
    req("method", Ty::Utf8),
    req("source_seq", Ty::Int64),
    opt("based_on", Ty::Utf8),
];

static ALERTS: &[Column] = &columns![
    req("event_type", Ty::Utf8),
    req("alert_id", Ty::Utf8),
    req("rule_id", Ty::Utf8),
    req("kind", Ty::Utf8),
    opt("probe_id", Ty::Utf8),
    opt("cook_id", Ty::Utf8),
    req("event_time", Ty::Time),
    opt("value", Ty::Float64),
    opt("threshold", Ty::Float64),
    // AlertRaised
    opt("message", Ty::Utf8),
    opt("repeat", Ty::Int32),
    // AlertCleared
    opt("reason", Ty::Utf8),
    req("source_seq", Ty::Int64),
];

static DEAD_LETTER: &[Column] = &columns![
    req("record_time", Ty::Time),
    opt("reason", Ty::Utf8),
    // Written by ingest for a rejected reading or payload
    opt("source", Ty::Utf8),
    opt("probe_id", Ty::Utf8),
    opt("received_time", Ty::Time),
    opt("payload", Ty::Utf8),
    // Written by a processor for a record it could not decode
    opt("origin_topic", Ty::Utf8),
    opt("origin_partition", Ty::Int64),
    opt("origin_offset", Ty::Int64),
    opt("consumer", Ty::Utf8),
    // Either: the raw bytes as hex when they are not text
    opt("payload_hex", Ty::Utf8),
    // The whole document
    req("document", Ty::Utf8),
];

/// The record's short type name, as in the `event_type` column.
pub(crate) fn short_name(kind: EventKind) -> &'static str {
    let full = kind.full_name();
    full.rsplit_once('.').map_or(full, |(_, short)| short)
}

/// Writes the columns every table starts with.
fn common(row: &mut Row<'_>, record: &Record, device_id: &str) {
    // Partitions are counted in the hundreds at most; offsets stay below 2^63.
    row.set(
        PARTITION_COLUMN,
        i32::try_from(record.partition).unwrap_or(i32::MAX),
    );
    row.set(
        "log_offset",
        i64::try_from(record.offset).unwrap_or(i64::MAX),
    );
    row.set("tenant", tenant::split(device_id).0);
    row.set(DEVICE_COLUMN, device_id);
}

/// A map field as JSON object text.
fn json_map<V: serde::Serialize>(map: &BTreeMap<String, V>) -> String {
    serde_json::to_string(map).unwrap_or_default()
}

fn probe_readings(
    codec: &EventCodec,
    kind: EventKind,
    record: &Record,
    row: &mut Row<'_>,
) -> Result<bool, CodecError> {
    if kind != EventKind::ProbeReading {
        return Ok(false);
    }
    let e: ProbeReading = codec.decode_cached(&record.value)?;
    common(row, record, &e.device_id);
    row.set("probe_id", &e.probe_id);
    row.time("event_time", e.event_time);
    row.time("received_time", e.received_time);
    row.set_opt("temperature_c", e.temperature_c);
    row.set("source", &e.source);
    Ok(true)
}

fn device_events(
    codec: &EventCodec,
    kind: EventKind,
    record: &Record,
    row: &mut Row<'_>,
) -> Result<bool, CodecError> {
    match kind {
        EventKind::DeviceStatus => {
            let e: DeviceStatus = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.time("event_time", e.event_time);
            row.time("received_time", e.received_time);
            row.set("online", e.online);
            row.set_opt("battery_percent", e.battery_percent);
            row.set_opt("signal_dbm", e.signal_dbm);
            row.set_opt("firmware", e.firmware.as_ref());
            row.set("source", &e.source);
            row.set_opt("note", e.note.as_ref());
            row.set("attributes", &json_map(&e.attributes));
        }
        EventKind::DeviceRegistered => {
            let e: DeviceRegistered = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.time("event_time", e.event_time);
            row.set("owner", &e.tenant);
            row.set_opt("model", e.model.as_ref());
            row.set("name", &e.name);
            row.set("probe_labels", &json_map(&e.probe_labels));
            row.set("source", &e.source);
        }
        EventKind::DeviceRemoved => {
            let e: DeviceRemoved = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.time("event_time", e.event_time);
            row.set_opt("reason", e.reason.as_ref());
        }
        _ => return Ok(false),
    }
    row.set("event_type", short_name(kind));
    Ok(true)
}

fn cook_commands(
    codec: &EventCodec,
    kind: EventKind,
    record: &Record,
    row: &mut Row<'_>,
) -> Result<bool, CodecError> {
    match kind {
        EventKind::CookStarted => {
            let e: CookStarted = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.time("event_time", e.event_time);
            row.set("cook_id", &e.cook_id);
            row.set_opt("what", e.what.as_ref());
            row.set("targets_c", &json_map(&e.targets_c));
            row.set_opt("pit_min_c", e.pit_min_c);
            row.set_opt("pit_max_c", e.pit_max_c);
            row.set_opt("meat", e.meat.as_ref());
            row.set_opt("weight_kg", e.weight_kg);
            row.time_opt("serve_at_ms", e.serve_at_ms);
            row.set_opt("rest_min", e.rest_min);
        }
        EventKind::TargetSet => {
            let e: TargetSet = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.time("event_time", e.event_time);
            row.set("cook_id", &e.cook_id);
            row.set("probe_id", &e.probe_id);
            row.set_opt("target_c", e.target_c);
        }
        EventKind::CookEnded => {
            let e: CookEnded = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.time("event_time", e.event_time);
            row.set("cook_id", &e.cook_id);
        }
        EventKind::CookNoteAdded => {
            let e: CookNoteAdded = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.time("event_time", e.event_time);
            row.set("cook_id", &e.cook_id);
            row.set("text", &e.text);
        }
        EventKind::AlertRuleSet => {
            let e: AlertRuleSet = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.time("event_time", e.event_time);
            row.set("rule_id", &e.rule_id);
            row.set_opt("probe_id", e.probe_id.as_ref());
            row.set_opt("cook_id", e.cook_id.as_ref());
            row.set("kind", &e.kind);
            row.set_opt("threshold", e.threshold);
            row.set_opt("low", e.low);
            row.set_opt("high", e.high);
            row.set("for_s", e.for_s);
            row.set("hysteresis", e.hysteresis);
            row.set_opt("repeat_every_s", e.repeat_every_s);
            row.set("enabled", e.enabled);
            row.set_opt("label", e.label.as_ref());
        }
        EventKind::AlertAcknowledged => {
            let e: AlertAcknowledged = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.time("event_time", e.event_time);
            row.set("alert_id", &e.alert_id);
            row.time_opt("snooze_until", e.snooze_until);
        }
        _ => return Ok(false),
    }
    row.set("event_type", short_name(kind));
    Ok(true)
}

fn trends(
    codec: &EventCodec,
    kind: EventKind,
    record: &Record,
    row: &mut Row<'_>,
) -> Result<bool, CodecError> {
    if kind != EventKind::TrendUpdated {
        return Ok(false);
    }
    let e: TrendUpdated = codec.decode_cached(&record.value)?;
    common(row, record, &e.device_id);
    row.set("probe_id", &e.probe_id);
    row.time("event_time", e.event_time);
    row.set("temperature_c", e.temperature_c);
    row.set("smoothed_c", e.smoothed_c);
    row.set_opt("rate_c_per_min", e.rate_c_per_min);
    row.set("min_c", e.min_c);
    row.set("max_c", e.max_c);
    row.set("window_ms", e.window_ms);
    row.set("samples", e.samples);
    row.set("source_offset", e.source_offset);
    Ok(true)
}

fn predictions(
    codec: &EventCodec,
    kind: EventKind,
    record: &Record,
    row: &mut Row<'_>,
) -> Result<bool, CodecError> {
    if kind != EventKind::PredictionUpdated {
        return Ok(false);
    }
    let e: PredictionUpdated = codec.decode_cached(&record.value)?;
    common(row, record, &e.device_id);
    row.set("probe_id", &e.probe_id);
    row.set("cook_id", &e.cook_id);
    row.time("event_time", e.event_time);
    row.set("temperature_c", e.temperature_c);
    row.set("target_c", e.target_c);
    row.set_opt("pit_c", e.pit_c);
    row.set_opt("remaining_s", e.remaining_s);
    row.set_opt("low_s", e.low_s);
    row.set_opt("high_s", e.high_s);
    row.time_opt("done_at", e.done_at);
    row.set("stall", e.stall);
    row.set("phase", &e.phase);
    row.set("pit_phase", &e.pit_phase);
    row.set("method", &e.method);
    row.set("source_seq", e.source_seq);
    row.set_opt("based_on", e.based_on.as_ref());
    Ok(true)
}

fn alerts(
    codec: &EventCodec,
    kind: EventKind,
    record: &Record,
    row: &mut Row<'_>,
) -> Result<bool, CodecError> {
    match kind {
        EventKind::AlertRaised => {
            let e: AlertRaised = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.set("alert_id", &e.alert_id);
            row.set("rule_id", &e.rule_id);
            row.set("kind", &e.kind);
            row.set_opt("probe_id", e.probe_id.as_ref());
            row.set_opt("cook_id", e.cook_id.as_ref());
            row.time("event_time", e.event_time);
            row.set_opt("value", e.value);
            row.set_opt("threshold", e.threshold);
            row.set("message", &e.message);
            row.set("repeat", e.repeat);
            row.set("source_seq", e.source_seq);
        }
        EventKind::AlertCleared => {
            let e: AlertCleared = codec.decode_cached(&record.value)?;
            common(row, record, &e.device_id);
            row.set("alert_id", &e.alert_id);
            row.set("rule_id", &e.rule_id);
            row.set("kind", &e.kind);
            row.set_opt("probe_id", e.probe_id.as_ref());
            row.time("event_time", e.event_time);
            row.set_opt("value", e.value);
            row.set("reason", &e.reason);
            row.set("source_seq", e.source_seq);
        }
        _ => return Ok(false),
    }
    row.set("event_type", short_name(kind));
    Ok(true)
}

/// Why a dead-letter record is not a row.
#[derive(Debug, thiserror::Error)]
#[error("not a JSON object: {0}")]
pub(crate) struct NotADeadLetter(String);

/// Writes a dead-letter document (see the ingest sink and the processors' partition feed
/// for the two shapes) as a row.
pub(crate) fn dead_letter(record: &Record, row: &mut Row<'_>) -> Result<(), NotADeadLetter> {
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&record.value).map_err(|e| NotADeadLetter(e.to_string()))?;
    let text = |k: &str| doc.get(k).and_then(serde_json::Value::as_str);
    let int = |k: &str| doc.get(k).and_then(serde_json::Value::as_i64);
    let device = text("device_id")
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&record.key).into_owned());
    common(row, record, &device);
    row.time("record_time", record.timestamp_ms);
    row.set_opt("reason", text("reason"));
    row.set_opt("source", text("source"));
    row.set_opt("probe_id", text("probe_id"));
    row.time_opt("received_time", int("received_time"));
    row.set_opt("payload", text("payload"));
    row.set_opt("origin_topic", text("topic"));
    row.set_opt("origin_partition", int("partition"));
    row.set_opt("origin_offset", int("offset"));
    row.set_opt("consumer", text("consumer"));
    row.set_opt("payload_hex", text("payload_hex"));
    row.set("document", &*String::from_utf8_lossy(&record.value));
    Ok(())
}
