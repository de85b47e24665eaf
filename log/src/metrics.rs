//! What both backends record about appends through the `metrics` facade (the binary decides
//! where it goes): records, bytes and batch sizes by topic, append latency (for the embedded
//! log the durable commit with its fsync, for Kafka the acknowledgement with `acks=all`),
//! failures, and the end offset each partition reached. Labels are the topic (a fixed set)
//! and the partition (bounded by `log.partitions`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{NewRecord, Position};

/// Counts and sizes `records`: (records, bytes of keys and values).
pub(crate) fn size<'a>(records: impl IntoIterator<Item = &'a NewRecord>) -> (usize, u64) {
    records.into_iter().fold((0, 0), |(n, bytes), r| {
        (n + 1, bytes + (r.key.len() + r.value.len()) as u64)
    })
}

/// Records one append of `records` records of `bytes` bytes to `topic` that took `elapsed`
/// and ended in `result`.
pub(crate) fn record_append<E>(
    backend: &'static str,
    topic: &str,
    (records, bytes): (usize, u64),
    elapsed: Duration,
    result: Result<&[Position], &E>,
) {
    let topic = topic.to_owned();
    match result {
        Ok(positions) => {
            metrics::histogram!("emberline_log_append_duration_seconds", "backend" => backend)
                .record(elapsed.as_secs_f64());
            metrics::counter!("emberline_log_appended_records_total", "topic" => topic.clone())
                .increment(records as u64);
            metrics::counter!("emberline_log_appended_bytes_total", "topic" => topic.clone())
                .increment(bytes);
            metrics::histogram!("emberline_log_append_batch_records", "topic" => topic.clone())
                .record(records as f64);
            let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
            for p in positions {
                let end = ends.entry(p.partition).or_default();
                *end = (*end).max(p.offset.saturating_add(1));
            }
            for (partition, end) in ends {
                metrics::gauge!(
                    "emberline_log_end_offset",
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(end as f64);
            }
        }
        Err(_) => {
            metrics::counter!(
                "emberline_log_append_errors_total",
                "backend" => backend,
                "topic" => topic
            )
            .increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_count_keys_and_values() {
        let records = [
            NewRecord {
                key: b"dev".to_vec(),
                value: vec![0; 10],
                timestamp_ms: 1,
            },
            NewRecord {
                key: Vec::new(),
                value: vec![0; 5],
                timestamp_ms: 1,
            },
        ];
        assert_eq!(size(&records), (2, 18));
    }
}
