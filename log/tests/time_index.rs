//! The embedded log's time index: `time_ranges` names every offset whose record falls in the
//! asked time range, leaves out batches wholly outside it, and follows retention.

use emberline_log::{EmbeddedLog, EventLog, NewRecord, Record, topics};
use std::time::Duration;

/// A batch of `n` records stamped `from`, `from + step`, … (out of order inside the batch,
/// as late readings are).
fn batch(n: i64, from: i64, step: i64) -> Vec<NewRecord> {
    (0..n)
        .rev()
        .map(|i| NewRecord {
            key: b"dev".to_vec(),
            value: i.to_le_bytes().to_vec(),
            timestamp_ms: from + i * step,
        })
        .collect()
}

async fn everything(log: &EmbeddedLog, topic: &str) -> Vec<Record> {
    let start = log.start_offset(topic, 0).await.expect("start");
    let end = log.end_offset(topic, 0).await.expect("end");
    let mut reader = log.reader(topic, 0, start).await.expect("reader");
    let mut out = Vec::new();
    while (out.len() as u64) < end - start {
        out.extend(
            reader
                .next_batch(1000, Duration::from_secs(5))
                .await
                .expect("read"),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_ranges_cover_every_record_in_range_and_skip_batches_outside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb")).expect("open");
    let topic = topics::PROBE_READINGS;
    log.ensure_topic(topic, 1).await.expect("topic");
    // Hours 0..24, one batch of 60 records a minute apart each, then a late batch holding
    // hour 3 again (a device that was offline).
    for hour in 0..24 {
        log.append_to(topic, 0, batch(60, hour * 3_600_000, 60_000))
            .await
            .expect("append");
    }
    log.append_to(topic, 0, batch(10, 3 * 3_600_000 + 30_000, 1_000))
        .await
        .expect("append");
    let all = everything(&log, topic).await;
    assert_eq!(all.len(), 24 * 60 + 10);

    for (from, to) in [
        (3 * 3_600_000, 4 * 3_600_000),
        (3 * 3_600_000 + 59 * 60_000, 3 * 3_600_000 + 59 * 60_000 + 1),
        (0, 1),
        (23 * 3_600_000, i64::MAX),
        (-5, 0),
        (i64::MIN, i64::MAX),
    ] {
        let ranges = log
            .time_ranges(topic, 0, from, to)
            .await
            .expect("ranges")
            .expect("the embedded log keeps a time index");
        let inside = |offset: u64| ranges.iter().any(|r| r.contains(&offset));
        for r in &all {
            if (from..to).contains(&r.timestamp_ms) {
                assert!(
                    inside(r.offset),
                    "{from}..{to}: offset {} left out",
                    r.offset
                );
            }
        }
        for pair in ranges.windows(2) {
            assert!(
                pair[0].end < pair[1].start,
                "sorted, disjoint, merged: {ranges:?}"
            );
        }
        let read: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        let matching = all
            .iter()
            .filter(|r| (from..to).contains(&r.timestamp_ms))
            .count() as u64;
        // Only the batches that overlap are read: at most two of 60 beyond the matches
        // here (a range cut inside a batch), plus the late batch.
        assert!(
            read <= matching + 2 * 60 + 10,
            "{from}..{to}: {read} offsets to read for {matching} matches: {ranges:?}"
        );
    }
    // Hour 3 is in its own batch and in the late one.
    let hour3 = log
        .time_ranges(topic, 0, 3 * 3_600_000, 4 * 3_600_000)
        .await
        .expect("ranges")
        .expect("index");
    assert_eq!(hour3, vec![180..240, 1440..1450]);
    let none = log
        .time_ranges(topic, 0, 30 * 3_600_000, 31 * 3_600_000)
        .await
        .expect("ranges")
        .expect("index");
    assert_eq!(none, vec![], "no batch reaches hour 30");

    // Retention removes whole batches and their index entries; ranges start at the start.
    let start = log.delete_before(topic, 0, 600).await.expect("delete");
    assert_eq!(start, 600);
    let early = log
        .time_ranges(topic, 0, 0, 12 * 3_600_000)
        .await
        .expect("ranges")
        .expect("index");
    assert_eq!(early, vec![600..720, 1440..1450]);
}
