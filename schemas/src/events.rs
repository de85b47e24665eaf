//! Rust types of the events, one per `schemas/avro/*.avsc` file.
//!
//! Field names and types follow the `.avsc` files exactly; a unit test checks every type
//! against its schema, so a drift between the two fails the build's tests.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use apache_avro::Schema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// An event type with an Avro schema of its own.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Which event this is.
    const KIND: EventKind;
    /// The record's full Avro name, also its registry subject.
    const FULL_NAME: &'static str = Self::KIND.full_name();

    /// Appends the Avro body of the current schema, written by hand, and says `true`; the
    /// default says `false` and the codec goes through the schema. For the events on the
    /// hot path only (see `body.rs`).
    #[doc(hidden)]
    fn write_body(&self, _buf: &mut Vec<u8>) -> bool {
        false
    }

    /// Reads an Avro body of the current schema by hand off the front of `bytes` (`Err`:
    /// why it is malformed); `None` by default: the codec goes through the schema.
    #[doc(hidden)]
    fn read_body(_bytes: &mut &[u8]) -> Option<Result<Self, String>> {
        None
    }
}

/// Every event type Emberline writes, with its schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// [`ProbeReading`].
    ProbeReading,
    /// [`DeviceStatus`].
    DeviceStatus,
    /// [`DeviceRegistered`].
    DeviceRegistered,
    /// [`CookStarted`].
    CookStarted,
    /// [`TargetSet`].
    TargetSet,
    /// [`CookEnded`].
    CookEnded,
    /// [`TrendUpdated`].
    TrendUpdated,
    /// [`DeviceRemoved`].
    DeviceRemoved,
    /// [`CookNoteAdded`].
    CookNoteAdded,
    /// [`PredictionUpdated`].
    PredictionUpdated,
    /// [`AlertRuleSet`].
    AlertRuleSet,
    /// [`AlertAcknowledged`].
    AlertAcknowledged,
    /// [`AlertRaised`].
    AlertRaised,
    /// [`AlertCleared`].
    AlertCleared,
    /// [`ClockTick`].
    ClockTick,
}

impl EventKind {
    /// All kinds, in a fixed order.
    pub const ALL: [EventKind; 15] = [
        EventKind::ProbeReading,
        EventKind::DeviceStatus,
        EventKind::DeviceRegistered,
        EventKind::CookStarted,
        EventKind::TargetSet,
        EventKind::CookEnded,
        EventKind::TrendUpdated,
        EventKind::DeviceRemoved,
        EventKind::CookNoteAdded,
        EventKind::PredictionUpdated,
        EventKind::AlertRuleSet,
        EventKind::AlertAcknowledged,
        EventKind::AlertRaised,
        EventKind::AlertCleared,
        EventKind::ClockTick,
    ];

    /// The record's full Avro name.
    pub const fn full_name(self) -> &'static str {
        match self {
            EventKind::ProbeReading => "emberline.events.ProbeReading",
            EventKind::DeviceStatus => "emberline.events.DeviceStatus",
            EventKind::DeviceRegistered => "emberline.events.DeviceRegistered",
            EventKind::CookStarted => "emberline.events.CookStarted",
            EventKind::TargetSet => "emberline.events.TargetSet",
            EventKind::CookEnded => "emberline.events.CookEnded",
            EventKind::TrendUpdated => "emberline.events.TrendUpdated",
            EventKind::DeviceRemoved => "emberline.events.DeviceRemoved",
            EventKind::CookNoteAdded => "emberline.events.CookNoteAdded",
            EventKind::PredictionUpdated => "emberline.events.PredictionUpdated",
            EventKind::AlertRuleSet => "emberline.events.AlertRuleSet",
            EventKind::AlertAcknowledged => "emberline.events.AlertAcknowledged",
            EventKind::AlertRaised => "emberline.events.AlertRaised",
            EventKind::AlertCleared => "emberline.events.AlertCleared",
            EventKind::ClockTick => "emberline.events.ClockTick",
        }
    }

    /// The `.avsc` text the schema is parsed from.
    pub const fn schema_text(self) -> &'static str {
        match self {
            EventKind::ProbeReading => include_str!("../avro/probe_reading.avsc"),
            EventKind::DeviceStatus => include_str!("../avro/device_status.avsc"),
            EventKind::DeviceRegistered => include_str!("../avro/device_registered.avsc"),
            EventKind::CookStarted => include_str!("../avro/cook_started.avsc"),
            EventKind::TargetSet => include_str!("../avro/target_set.avsc"),
            EventKind::CookEnded => include_str!("../avro/cook_ended.avsc"),
            EventKind::TrendUpdated => include_str!("../avro/trend_updated.avsc"),
            EventKind::DeviceRemoved => include_str!("../avro/device_removed.avsc"),
            EventKind::CookNoteAdded => include_str!("../avro/cook_note_added.avsc"),
            EventKind::PredictionUpdated => include_str!("../avro/prediction_updated.avsc"),
            EventKind::AlertRuleSet => include_str!("../avro/alert_rule_set.avsc"),
            EventKind::AlertAcknowledged => include_str!("../avro/alert_acknowledged.avsc"),
            EventKind::AlertRaised => include_str!("../avro/alert_raised.avsc"),
            EventKind::AlertCleared => include_str!("../avro/alert_cleared.avsc"),
            EventKind::ClockTick => include_str!("../avro/clock_tick.avsc"),
        }
    }

    /// The parsed schema (parsed once per process).
    pub fn schema(self) -> &'static Schema {
        static SCHEMAS: LazyLock<Vec<Schema>> = LazyLock::new(|| {
            EventKind::ALL
                .iter()
                .map(|kind| {
                    // The texts are compiled in and parsed by a unit test, so this cannot fail
                    // in a build whose tests passed.
                    #[allow(clippy::expect_used)]
                    Schema::parse_str(kind.schema_text()).expect("compiled-in schema parses")
                })
                .collect()
        });
        &SCHEMAS[self as usize]
    }

    /// The kind whose full name is `name`.
    pub fn from_full_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.full_name() == name)
    }
}

/// One temperature reading of one probe. See `probe_reading.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReading {
    /// Stable device id, unique per source.
    pub device_id: String,
    /// Probe (channel) id within the device.
    pub probe_id: String,
    /// When the device measured it, epoch ms.
    pub event_time: i64,
    /// When Emberline received it, epoch ms.
    pub received_time: i64,
    /// Degrees Celsius; `None` when the probe is unplugged.
    pub temperature_c: Option<f64>,
    /// The ingest adapter that produced it.
    pub source: String,
}

/// Health of a device. See `device_status.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Device id.
    pub device_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Receive time, epoch ms.
    pub received_time: i64,
    /// Whether the device is reachable.
    pub online: bool,
    /// Battery charge, percent.
    pub battery_percent: Option<f64>,
    /// Radio signal, dBm.
    pub signal_dbm: Option<i32>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// The ingest adapter that produced it.
    pub source: String,
    /// Why the device is quiet or unreachable, for the user.
    #[serde(default)]
    pub note: Option<String>,
    /// Source facts: upload interval, alarm thresholds, the vendor's prediction (namespaced keys).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A device became known. See `device_registered.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceRegistered {
    /// Device id.
    pub device_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Owner of the device.
    pub tenant: String,
    /// Model name.
    pub model: Option<String>,
    /// Display name.
    pub name: String,
    /// Probe id to label.
    pub probe_labels: BTreeMap<String, String>,
    /// The ingest adapter that produced it.
    pub source: String,
}

/// A cook began. See `cook_started.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CookStarted {
    /// Cook id.
    pub cook_id: String,
    /// Device id.
    pub device_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// What is being cooked.
    pub what: Option<String>,
    /// Probe id to target, Celsius.
    pub targets_c: BTreeMap<String, f64>,
    /// Lower bound of the pit band, Celsius.
    pub pit_min_c: Option<f64>,
    /// Upper bound of the pit band, Celsius.
    pub pit_max_c: Option<f64>,
    /// The kind of meat (a planner cut name such as `pork_shoulder`).
    pub meat: Option<String>,
    /// Weight of the meat, kilograms.
    pub weight_kg: Option<f64>,
    /// When the food is to be served, epoch ms.
    pub serve_at_ms: Option<i64>,
    /// Planned rest between pulling and serving, minutes.
    pub rest_min: Option<f64>,
}

/// A probe's target changed. See `target_set.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetSet {
    /// Cook id.
    pub cook_id: String,
    /// Device id.
    pub device_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Probe id.
    pub probe_id: String,
    /// New target, Celsius; `None` clears it.
    pub target_c: Option<f64>,
}

/// A cook ended. See `cook_ended.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CookEnded {
    /// Cook id.
    pub cook_id: String,
    /// Device id.
    pub device_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
}

/// The rolling trend of one probe after one reading. See `trend_updated.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendUpdated {
    /// Device id.
    pub device_id: String,
    /// Probe id.
    pub probe_id: String,
    /// Event time of the reading behind this update, epoch ms.
    pub event_time: i64,
    /// Raw temperature of that reading, Celsius.
    pub temperature_c: f64,
    /// Smoothed temperature over the window, Celsius.
    pub smoothed_c: f64,
    /// Rate of rise, Celsius per minute.
    pub rate_c_per_min: Option<f64>,
    /// Lowest reading in the window.
    pub min_c: f64,
    /// Highest reading in the window.
    pub max_c: f64,
    /// Length of the window, ms.
    pub window_ms: i64,
    /// Readings in the window.
    pub samples: i32,
    /// Offset of the reading in `probe.readings`.
    pub source_offset: i64,
}

/// A user removed a device. See `device_removed.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceRemoved {
    /// Device id.
    pub device_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Why, as the user or client said it.
    pub reason: Option<String>,
}

/// A note on a cook. See `cook_note_added.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CookNoteAdded {
    /// Cook id.
    pub cook_id: String,
    /// Device id.
    pub device_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// The note.
    pub text: String,
}

/// When a probe will reach its target. See `prediction_updated.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionUpdated {
    /// Device id.
    pub device_id: String,
    /// Probe id.
    pub probe_id: String,
    /// Cook id; empty outside a cook.
    pub cook_id: String,
    /// Event time of the reading behind it, epoch ms.
    pub event_time: i64,
    /// Smoothed probe temperature, Celsius.
    pub temperature_c: f64,
    /// Target, Celsius.
    pub target_c: f64,
    /// Smoothed pit temperature, Celsius.
    pub pit_c: Option<f64>,
    /// Estimated seconds to target.
    pub remaining_s: Option<f64>,
    /// Lower end of the 80 % interval, seconds.
    pub low_s: Option<f64>,
    /// Upper end of the 80 % interval, seconds; `None` when unbounded.
    pub high_s: Option<f64>,
    /// Estimated done time, epoch ms.
    pub done_at: Option<i64>,
    /// In the evaporative stall.
    pub stall: bool,
    /// Probe phase.
    pub phase: String,
    /// Pit phase.
    pub pit_phase: String,
    /// Estimation method.
    pub method: String,
    /// Position in the processor's merged input order.
    pub source_seq: i64,
    /// What the estimate learnt from the device's completed cooks ("based on your last 3
    /// pork shoulders"); `None` while it has none.
    #[serde(default)]
    pub based_on: Option<String>,
}

/// An alert rule was set or removed. See `alert_rule_set.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRuleSet {
    /// Rule id.
    pub rule_id: String,
    /// Device id.
    pub device_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Probe watched; `None` for device rules.
    pub probe_id: Option<String>,
    /// Cook the rule belongs to.
    pub cook_id: Option<String>,
    /// Rule kind (see the schema).
    pub kind: String,
    /// Threshold, in the kind's unit.
    pub threshold: Option<f64>,
    /// Band low end, Celsius.
    pub low: Option<f64>,
    /// Band high end, Celsius.
    pub high: Option<f64>,
    /// Minimum duration before raising, seconds.
    #[serde(default)]
    pub for_s: f64,
    /// Hysteresis, in the threshold's unit.
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f64,
    /// Repeat interval while unacknowledged, seconds.
    pub repeat_every_s: Option<f64>,
    /// `false` removes the rule.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// User's label.
    pub label: Option<String>,
}

impl AlertRuleSet {
    /// The rule kinds the cook processor evaluates.
    pub const KINDS: [&'static str; 12] = [
        "above",
        "below",
        "outside_band",
        "rate_above",
        "rate_below",
        "probe_disconnected",
        "battery_below",
        "device_offline",
        "fire_out",
        "target_reached",
        "predicted_done_within",
        "behind_plan",
    ];

    /// Kinds that watch the device, not a probe.
    pub const DEVICE_KINDS: [&'static str; 4] =
        ["battery_below", "device_offline", "fire_out", "behind_plan"];
}

fn default_hysteresis() -> f64 {
    1.0
}

fn default_true() -> bool {
    true
}

/// An alert was acknowledged or snoozed. See `alert_acknowledged.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertAcknowledged {
    /// Alert id.
    pub alert_id: String,
    /// Device id.
    pub device_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Snoozed until, epoch ms.
    pub snooze_until: Option<i64>,
}

/// An alert was raised. See `alert_raised.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRaised {
    /// Alert id: rule id and episode.
    pub alert_id: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule kind.
    pub kind: String,
    /// Device id.
    pub device_id: String,
    /// Probe id.
    pub probe_id: Option<String>,
    /// Cook id.
    pub cook_id: Option<String>,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// The value that triggered it.
    pub value: Option<f64>,
    /// The rule's threshold.
    pub threshold: Option<f64>,
    /// For people.
    pub message: String,
    /// 0 for the first raise of the episode.
    #[serde(default)]
    pub repeat: i32,
    /// Position in the processor's merged input order.
    pub source_seq: i64,
}

/// An alert episode ended. See `alert_cleared.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertCleared {
    /// Alert id.
    pub alert_id: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule kind.
    pub kind: String,
    /// Device id.
    pub device_id: String,
    /// Probe id.
    pub probe_id: Option<String>,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Value at clearing.
    pub value: Option<f64>,
    /// Why it cleared.
    pub reason: String,
    /// Position in the processor's merged input order.
    pub source_seq: i64,
}

/// Wall-clock time passing. See `clock_tick.avsc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockTick {
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Who wrote it.
    pub source: String,
    /// How far the writer's wall clock jumped since its previous tick beyond the time that
    /// really passed, ms (positive: forward); `None` when it did not.
    #[serde(default)]
    pub wall_jump_ms: Option<i64>,
}

macro_rules! impl_event {
    ($($ty:ident),*) => {
        $(impl Event for $ty { const KIND: EventKind = EventKind::$ty; })*
    };
}
/// Events whose current-schema body is written and read by hand (`body.rs`).
macro_rules! impl_event_by_hand {
    ($($ty:ident),*) => {
        $(impl Event for $ty {
            const KIND: EventKind = EventKind::$ty;

            fn write_body(&self, buf: &mut Vec<u8>) -> bool {
                crate::body::Body::write_body(self, buf);
                true
            }

            fn read_body(bytes: &mut &[u8]) -> Option<Result<Self, String>> {
                Some(<Self as crate::body::Body>::read_body(bytes).map_err(|e| e.to_string()))
            }
        })*
    };
}
impl_event_by_hand!(ProbeReading, TrendUpdated);
impl_event!(
    DeviceStatus,
    DeviceRegistered,
    CookStarted,
    TargetSet,
    CookEnded,
    DeviceRemoved,
    CookNoteAdded,
    PredictionUpdated,
    AlertRuleSet,
    AlertAcknowledged,
    AlertRaised,
    AlertCleared,
    ClockTick
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_carries_its_full_name() {
        for kind in EventKind::ALL {
            let schema = Schema::parse_str(kind.schema_text()).expect("schema parses");
            match schema {
                Schema::Record(r) => assert_eq!(r.name.fullname(None), kind.full_name()),
                other => panic!("{kind:?} is not a record: {other:?}"),
            }
            assert_eq!(EventKind::from_full_name(kind.full_name()), Some(kind));
        }
    }
}
