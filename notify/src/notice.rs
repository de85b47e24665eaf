//! What a notification says, from an `AlertRaised` or `AlertCleared`.

use emberline_schemas::events::{AlertCleared, AlertRaised};
use serde::{Deserialize, Serialize};

/// One notification, before it is shaped for a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Stable id of this delivery: alert id, repeat and whether raised or cleared.
    pub delivery_id: String,
    /// Alert id.
    pub alert_id: String,
    /// Rule kind.
    pub kind: String,
    /// Device id.
    pub device_id: String,
    /// Probe id.
    pub probe_id: Option<String>,
    /// Raised (`true`) or cleared.
    pub raised: bool,
    /// Repeat number of a raise.
    pub repeat: i32,
    /// When, epoch ms.
    pub time_ms: i64,
    /// The value behind it.
    pub value: Option<f64>,
    /// The rule's threshold.
    pub threshold: Option<f64>,
    /// One line for people.
    pub message: String,
}

impl Notice {
    /// From a raise.
    pub fn raised(a: &AlertRaised) -> Self {
        Self {
            delivery_id: format!("{}/{}/raised", a.alert_id, a.repeat),
            alert_id: a.alert_id.clone(),
            kind: a.kind.clone(),
            device_id: a.device_id.clone(),
            probe_id: a.probe_id.clone(),
            raised: true,
            repeat: a.repeat,
            time_ms: a.event_time,
            value: a.value,
            threshold: a.threshold,
            message: a.message.clone(),
        }
    }

    /// From a clear.
    pub fn cleared(a: &AlertCleared) -> Self {
        Self {
            delivery_id: format!("{}/cleared", a.alert_id),
            alert_id: a.alert_id.clone(),
            kind: a.kind.clone(),
            device_id: a.device_id.clone(),
            probe_id: a.probe_id.clone(),
            raised: false,
            repeat: 0,
            time_ms: a.event_time,
            value: a.value,
            threshold: None,
            message: format!("Cleared ({}): {}", a.reason, a.alert_id),
        }
    }

    /// A short title.
    pub fn title(&self) -> String {
        let what = self.kind.replace('_', " ");
        if self.raised {
            format!("Emberline: {what} on {}", self.device_id)
        } else {
            format!("Emberline: {what} on {} cleared", self.device_id)
        }
    }
}
