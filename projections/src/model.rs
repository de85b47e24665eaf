//! The values projections hold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A probe's rolling trend, as of one reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// Smoothed temperature, Celsius.
    pub smoothed_c: f64,
    /// Rate of rise, Celsius per minute, once the window spans enough time.
    pub rate_c_per_min: Option<f64>,
    /// Lowest reading in the window.
    pub min_c: f64,
    /// Highest reading in the window.
    pub max_c: f64,
    /// Window length, ms.
    pub window_ms: i64,
    /// Readings in the window.
    pub samples: u32,
}

/// The latest reading of a probe and its trend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatestProbe {
    /// Device id.
    pub device_id: String,
    /// Probe id.
    pub probe_id: String,
    /// Event time of the reading, epoch ms.
    pub event_time: i64,
    /// When Emberline received it, epoch ms.
    pub received_time: i64,
    /// Temperature, Celsius; `None` when unplugged.
    pub temperature_c: Option<f64>,
    /// Ingest adapter.
    pub source: String,
    /// Trend after this reading (`None` while unplugged).
    pub trend: Option<Trend>,
    /// Partition of the reading in `probe.readings`.
    pub source_partition: u32,
    /// Offset of the reading in `probe.readings`.
    pub source_offset: u64,
}

impl LatestProbe {
    /// Whether this value supersedes `other` for the same probe: later event time, then
    /// later offset.
    pub fn supersedes(&self, other: &LatestProbe) -> bool {
        (self.event_time, self.source_offset) >= (other.event_time, other.source_offset)
    }
}

/// One reading in a probe's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Device id.
    pub device_id: String,
    /// Probe id.
    pub probe_id: String,
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Receive time, epoch ms.
    pub received_time: i64,
    /// Temperature, Celsius; `None` when unplugged.
    pub temperature_c: Option<f64>,
}

/// A device as the overview lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceSummary {
    /// Device id.
    pub device_id: String,
    /// Number of probes seen.
    pub probes: u32,
    /// Latest event time over its probes, epoch ms.
    pub last_event_time: i64,
    /// Latest receive time over its probes, epoch ms.
    pub last_received_time: i64,
}

/// What Emberline knows of a device besides its readings: the names its user gave it, its
/// health as its source reports it, the probes' targets, and whether it was removed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device id.
    pub device_id: String,
    /// Display name, once the source registered the device.
    pub name: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Owner.
    pub tenant: Option<String>,
    /// Ingest adapter that registered it.
    pub source: Option<String>,
    /// Probe id to label.
    pub probe_labels: BTreeMap<String, String>,
    /// Event time of the registration in force, epoch ms.
    pub registered_time: Option<i64>,
    /// Latest status: reachable or not.
    pub online: Option<bool>,
    /// Latest battery charge, percent.
    pub battery_percent: Option<f64>,
    /// Latest radio signal, dBm.
    pub signal_dbm: Option<i32>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// Event time of the latest status, epoch ms.
    pub status_time: Option<i64>,
    /// Why the device is quiet or unreachable, from its latest status.
    pub status_note: Option<String>,
    /// Source facts from the latest status (upload interval, alarms, vendor prediction).
    pub attributes: BTreeMap<String, String>,
    /// Probe id to target temperature, Celsius.
    pub targets_c: BTreeMap<String, f64>,
    /// The cook in progress, if any.
    pub cook_id: Option<String>,
    /// Event time of the removal, while the device is removed.
    pub removed_time: Option<i64>,
}

impl DeviceInfo {
    /// A device nothing is known of yet.
    pub fn new(device_id: &str) -> Self {
        Self {
            device_id: device_id.to_owned(),
            ..Self::default()
        }
    }

    /// Whether a user removed the device (and its source has not registered it since).
    pub fn is_removed(&self) -> bool {
        self.removed_time.is_some()
    }
}

/// A note on a cook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CookNote {
    /// When, epoch ms.
    pub time: i64,
    /// What the user wrote.
    pub text: String,
}

/// A cook: what was cooked on which device, when, to what targets, with the user's notes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CookSession {
    /// Cook id.
    pub cook_id: String,
    /// Device id.
    pub device_id: String,
    /// What is being cooked.
    pub what: Option<String>,
    /// When it started, epoch ms.
    pub started_time: i64,
    /// When it ended, epoch ms; `None` while in progress.
    pub ended_time: Option<i64>,
    /// Probe id to target, Celsius.
    pub targets_c: BTreeMap<String, f64>,
    /// Pit band, Celsius.
    pub pit_min_c: Option<f64>,
    /// Pit band, Celsius.
    pub pit_max_c: Option<f64>,
    /// Notes, oldest first.
    pub notes: Vec<CookNote>,
    /// The kind of meat, in the planner's words.
    pub meat: Option<String>,
    /// Weight of the meat, kg.
    pub weight_kg: Option<f64>,
    /// When it is to be served, epoch ms.
    pub serve_at_ms: Option<i64>,
    /// Planned rest before serving, minutes.
    pub rest_min: Option<f64>,
}

/// Everything one processor step writes, applied atomically.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectionBatch {
    /// Latest values (a probe may appear more than once; the superseding one wins).
    pub latest: Vec<LatestProbe>,
    /// History points (upserted by probe and event time).
    pub history: Vec<HistoryPoint>,
    /// Processor state by key (replaced).
    pub state: Vec<(String, Vec<u8>)>,
    /// Device descriptions (replaced whole, by device id).
    pub devices: Vec<DeviceInfo>,
    /// Cooks (replaced whole, by cook id).
    pub cooks: Vec<CookSession>,
    /// Predictions (replaced, by device and probe).
    pub predictions: Vec<ProbePrediction>,
    /// Alert episodes (replaced, by alert id).
    pub alerts: Vec<AlertRecord>,
    /// Alert rules (replaced, by rule id).
    pub alert_rules: Vec<AlertRuleRecord>,
    /// Alert rules removed, by rule id.
    pub removed_rules: Vec<String>,
    /// Positions covered: (topic, partition, next offset).
    pub applied: Vec<(String, u32, u64)>,
}

/// The latest time-to-target prediction of a probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbePrediction {
    /// Device id.
    pub device_id: String,
    /// Probe id.
    pub probe_id: String,
    /// Cook id, when in a cook.
    pub cook_id: Option<String>,
    /// Event time of the reading behind it, epoch ms.
    pub event_time: i64,
    /// Smoothed temperature, Celsius.
    pub temperature_c: f64,
    /// Target, Celsius.
    pub target_c: f64,
    /// Pit level heated toward, Celsius.
    pub pit_c: Option<f64>,
    /// Seconds to target.
    pub remaining_s: Option<f64>,
    /// 80 % interval, seconds.
    pub low_s: Option<f64>,
    /// 80 % interval, seconds (`None`: unbounded).
    pub high_s: Option<f64>,
    /// Estimated done time, epoch ms.
    pub done_at: Option<i64>,
    /// In the stall.
    pub stall: bool,
    /// Probe phase.
    pub phase: String,
    /// Pit phase.
    pub pit_phase: String,
    /// Estimation method.
    pub method: String,
    /// What the estimate learnt from the device's completed cooks ("based on your last 3
    /// pork shoulders").
    pub based_on: Option<String>,
}

/// One alert episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Alert id (rule id and episode).
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
    /// First raised, epoch ms.
    pub raised_time: i64,
    /// Last raised (repeats), epoch ms.
    pub last_raised_time: i64,
    /// Raises after the first.
    pub repeats: u32,
    /// The value that triggered it.
    pub value: Option<f64>,
    /// The rule's threshold.
    pub threshold: Option<f64>,
    /// For people.
    pub message: String,
    /// When it cleared, epoch ms.
    pub cleared_time: Option<i64>,
    /// Why it cleared.
    pub cleared_reason: Option<String>,
    /// When a user acknowledged it.
    pub acknowledged_time: Option<i64>,
    /// Snoozed until, epoch ms.
    pub snoozed_until: Option<i64>,
}

impl AlertRecord {
    /// Raised and not cleared.
    pub fn is_active(&self) -> bool {
        self.cleared_time.is_none()
    }
}

/// An alert rule a user set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRuleRecord {
    /// Rule id.
    pub rule_id: String,
    /// Device id.
    pub device_id: String,
    /// Probe id.
    pub probe_id: Option<String>,
    /// Cook id.
    pub cook_id: Option<String>,
    /// Kind.
    pub kind: String,
    /// Threshold.
    pub threshold: Option<f64>,
    /// Band low end.
    pub low: Option<f64>,
    /// Band high end.
    pub high: Option<f64>,
    /// Minimum duration, seconds.
    pub for_s: f64,
    /// Hysteresis.
    pub hysteresis: f64,
    /// Repeat interval, seconds.
    pub repeat_every_s: Option<f64>,
    /// Label.
    pub label: Option<String>,
    /// When it was set, epoch ms.
    pub set_time: i64,
}
