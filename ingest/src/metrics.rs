//! Counters every source keeps for its health reports: polls or requests handled, readings
//! appended, rejects, repeats, failures, and when a delivery last succeeded.
//!
//! The same numbers go to the `metrics` facade, labelled with the source's name (a
//! configured, bounded set — never a device id), so the process' exporter serves them:
//! `emberline_source_*` in `docs/metrics.md`. The health log and `/v1/health` read the
//! atomics here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::validate::{Admitted, Rejection};

/// Counters of one source, for health reports and metrics.
#[derive(Debug)]
pub struct SourceMetrics {
    /// The source's name: the `source` label.
    source: String,
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
    /// Counters of the source named `source`, all zero.
    pub fn new(source: &str) -> Self {
        metrics::gauge!("emberline_source_circuit_open", "source" => source.to_owned()).set(0.0);
        metrics::gauge!("emberline_source_backoff_seconds", "source" => source.to_owned()).set(0.0);
        Self {
            source: source.to_owned(),
            polls: AtomicU64::new(0),
            readings: AtomicU64::new(0),
            rejects: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
        }
    }

    /// Counts a poll or a request handled.
    pub fn polled(&self) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("emberline_source_polls_total", "source" => self.source.clone())
            .increment(1);
    }

    /// Counts `readings` appended at `at_ms` (epoch ms) by a source that needs no gate (the
    /// simulator, whose readings are valid by construction).
    pub fn appended(&self, readings: usize, at_ms: i64) {
        self.readings.fetch_add(readings as u64, Ordering::Relaxed);
        metrics::counter!("emberline_source_readings_total", "source" => self.source.clone())
            .increment(readings as u64);
        self.last_success_ms
            .store(at_ms.max(0) as u64, Ordering::Relaxed);
        metrics::gauge!("emberline_source_last_success_timestamp_seconds", "source" => self.source.clone())
            .set(at_ms as f64 / 1000.0);
    }

    /// Counts what a gate decided once it is in the log, delivered at `at_ms` (epoch ms).
    pub fn delivered(&self, admitted: &Admitted, at_ms: i64) {
        let source = self.source.clone();
        self.readings
            .fetch_add(admitted.readings.len() as u64, Ordering::Relaxed);
        metrics::counter!("emberline_source_readings_total", "source" => source.clone())
            .increment(admitted.readings.len() as u64);
        self.duplicates
            .fetch_add(admitted.duplicates as u64, Ordering::Relaxed);
        metrics::counter!("emberline_source_duplicates_total", "source" => source.clone())
            .increment(admitted.duplicates as u64);
        for rejected in &admitted.rejected {
            self.rejected(&rejected.reason);
        }
        self.last_success_ms
            .store(at_ms.max(0) as u64, Ordering::Relaxed);
        metrics::gauge!("emberline_source_last_success_timestamp_seconds", "source" => source)
            .set(at_ms as f64 / 1000.0);
    }

    /// Counts one reading or payload rejected for `reason`.
    pub fn rejected(&self, reason: &Rejection) {
        self.rejects.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "emberline_source_rejects_total",
            "source" => self.source.clone(),
            "reason" => reason.kind()
        )
        .increment(1);
    }

    /// Counts a failure of `kind` (a fixed word: `log`, `upstream`, `rate_limited`,
    /// `credentials`, `malformed`, …).
    pub fn failed(&self, kind: &'static str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "emberline_source_errors_total",
            "source" => self.source.clone(),
            "kind" => kind
        )
        .increment(1);
    }

    /// Reports the wait before the next attempt after failures; zero when healthy.
    pub fn backing_off(&self, delay: Duration) {
        metrics::gauge!("emberline_source_backoff_seconds", "source" => self.source.clone())
            .set(delay.as_secs_f64());
    }

    /// Reports whether the circuit breaker is open (calls paused).
    pub fn circuit(&self, open: bool) {
        metrics::gauge!("emberline_source_circuit_open", "source" => self.source.clone())
            .set(if open { 1.0 } else { 0.0 });
    }

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

/// Marks `source` as running (`emberline_source_up` 1) until the guard is dropped.
pub(crate) struct Running(String);

impl Running {
    /// `source` runs from now.
    pub(crate) fn start(source: &str) -> Self {
        metrics::gauge!("emberline_source_up", "source" => source.to_owned()).set(1.0);
        Self(source.to_owned())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        metrics::gauge!("emberline_source_up", "source" => self.0.clone()).set(0.0);
    }
}

/// How each polling source last fared, by source name, for the settings pages ("last
/// successful poll", "last error"). Kept in the process that runs the sources: a gateway
/// elsewhere does not see it.
pub mod status {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock, PoisonError};

    /// How a source last fared.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct SourceStatus {
        /// When a poll last delivered, epoch ms (0: never).
        pub last_success_ms: i64,
        /// The last failure since then, if any, in words with no secret in them.
        pub last_error: Option<String>,
        /// Whether the source is running now.
        pub running: bool,
    }

    fn all() -> &'static Mutex<HashMap<String, SourceStatus>> {
        static ALL: OnceLock<Mutex<HashMap<String, SourceStatus>>> = OnceLock::new();
        ALL.get_or_init(Mutex::default)
    }

    fn update(source: &str, f: impl FnOnce(&mut SourceStatus)) {
        let mut all = all().lock().unwrap_or_else(PoisonError::into_inner);
        f(all.entry(source.to_owned()).or_default());
    }

    /// `source` delivered a poll at `at_ms`.
    pub fn succeeded(source: &str, at_ms: i64) {
        update(source, |s| {
            s.last_success_ms = at_ms;
            s.last_error = None;
        });
    }

    /// `source` failed with `error`.
    pub fn failed(source: &str, error: &str) {
        update(source, |s| s.last_error = Some(error.to_owned()));
    }

    /// `source` started (true) or stopped (false).
    pub fn running(source: &str, running: bool) {
        update(source, |s| s.running = running);
    }

    /// How `source` last fared, if it ran in this process.
    pub fn of(source: &str) -> Option<SourceStatus> {
        all()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(source)
            .cloned()
    }
}
