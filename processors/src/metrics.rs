//! What the processors record through the `metrics` facade: records consumed and
//! dead-lettered per processor and topic, each partition's read position (the consumer lag
//! is the log's end offset minus it: `emberline:consumer_lag_records` in
//! `deploy/prometheus/rules.yaml`), the trend rounds' latency and late readings.
//!
//! Wall-clock time is read here only to time work; nothing measured feeds back into what a
//! processor computes, so replays stay deterministic.

use crate::partition_feed::{Chunk, Input};

/// Records that `processor` took `chunk` from the feed.
pub(crate) fn consumed<E>(processor: &'static str, chunk: &Chunk<E>) {
    let topic = chunk.topic.to_string();
    let rejected = chunk
        .records
        .iter()
        .filter(|r| matches!(r.input, Input::Rejected))
        .count();
    metrics::counter!(
        "emberline_processor_records_total",
        "processor" => processor,
        "topic" => topic.clone()
    )
    .increment(chunk.records.len() as u64);
    if rejected > 0 {
        metrics::counter!(
            "emberline_processor_dead_letters_total",
            "processor" => processor,
            "topic" => topic.clone()
        )
        .increment(rejected as u64);
    }
    metrics::gauge!(
        "emberline_processor_position",
        "processor" => processor,
        "topic" => topic,
        "partition" => chunk.partition.to_string()
    )
    .set(chunk.next_offset() as f64);
}

/// Records a reading that came late: `dropped` (older than the trend window) or `reordered`
/// (inserted before newer readings).
pub(crate) fn late_reading(processor: &'static str, outcome: &'static str) {
    metrics::counter!(
        "emberline_processor_late_readings_total",
        "processor" => processor,
        "outcome" => outcome
    )
    .increment(1);
}

/// Times one round of `processor` until dropped.
pub(crate) struct RoundTimer {
    processor: &'static str,
    started: std::time::Instant,
}

impl RoundTimer {
    /// A round of `processor` starts.
    pub(crate) fn start(processor: &'static str) -> Self {
        Self {
            processor,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for RoundTimer {
    fn drop(&mut self) {
        metrics::histogram!("emberline_processor_round_duration_seconds", "processor" => self.processor)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Times one projection batch's write, retries included.
pub(crate) struct ProjectionWrite {
    projection: &'static str,
    bytes: u64,
    started: std::time::Instant,
}

impl ProjectionWrite {
    /// `batch` of `projection` starts being written.
    pub(crate) fn start(
        projection: &'static str,
        batch: &emberline_projections::ProjectionBatch,
    ) -> Self {
        Self {
            projection,
            bytes: postcard::experimental::serialized_size(batch).map_or(0, |n| n as u64),
            started: std::time::Instant::now(),
        }
    }

    /// The batch is durable: records its latency and encoded size.
    pub(crate) fn done(self) {
        metrics::histogram!(
            "emberline_projection_write_duration_seconds",
            "projection" => self.projection
        )
        .record(self.started.elapsed().as_secs_f64());
        metrics::counter!(
            "emberline_projection_written_bytes_total",
            "projection" => self.projection
        )
        .increment(self.bytes);
    }
}
