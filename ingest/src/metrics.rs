//! Counters every source keeps for its health reports: polls or requests handled, readings
//! appended, rejects, repeats, failures, and when a delivery last succeeded.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

/// Counters of one source, for health reports.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Requests or polls handled.
    pub polls: AtomicU64,
    /// Readings appended.
    pub readings: AtomicU64,
    /// Readings or payloads rejected.
    pub rejects: AtomicU64,
    /// Repeats discarded.
    pub duplicates: AtomicU64,
    /// Failures (log unavailable, upstream errors).
    pub errors: AtomicU64,
    /// Epoch ms of the last delivery that succeeded.
    pub last_success_ms: AtomicU64,
}

impl SourceMetrics {
    /// The counters as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "polls": get(&self.polls),
            "readings": get(&self.readings),
            "rejects": get(&self.rejects),
            "duplicates": get(&self.duplicates),
            "errors": get(&self.errors),
            "last_success_ms": get(&self.last_success_ms),
        })
    }
}
