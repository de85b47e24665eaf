//! Retention on the embedded log: whole batches older than the cut-off go, oldest first;
//! topics kept forever stay; readers below the start continue from it.

use emberline_log::{EmbeddedLog, EventLog, NewRecord, topics};

fn records(n: usize, ts: i64) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord {
            key: b"dev".to_vec(),
            value: format!("v{i}").into_bytes(),
            timestamp_ms: ts,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_batches_go_and_kept_topics_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb")).expect("open");
    let day = 86_400_000i64;
    for topic in [topics::PROBE_READINGS, topics::PROJECTIONS_CHANGELOG] {
        log.ensure_topic(topic, 1).await.expect("topic");
        // 200 old batches (more than one expiry transaction), then a new one, then an old
        // one again: retention stops at the first batch it must keep.
        for _ in 0..200 {
            log.append_to(topic, 0, records(3, day))
                .await
                .expect("append");
        }
        log.append_to(topic, 0, records(3, 10 * day))
            .await
            .expect("append");
        log.append_to(topic, 0, records(3, day))
            .await
            .expect("append");
    }
    let removed = log.expire(5 * day).await.expect("expire");
    assert_eq!(removed, 600);
    let readings = topics::PROBE_READINGS;
    assert_eq!(log.start_offset(readings, 0).await.expect("start"), 600);
    assert_eq!(log.end_offset(readings, 0).await.expect("end"), 606);
    let changelog = topics::PROJECTIONS_CHANGELOG;
    assert_eq!(log.start_offset(changelog, 0).await.expect("start"), 0);
    let mut reader = log.reader(readings, 0, 0).await.expect("reader");
    let batch = reader
        .next_batch(1000, std::time::Duration::from_secs(5))
        .await
        .expect("read");
    assert_eq!(batch.first().map(|r| r.offset), Some(600));
    assert_eq!(batch.len(), 6);
    // Nothing more to remove: a second sweep is a no-op.
    assert_eq!(log.expire(5 * day).await.expect("expire"), 0);
    let stats = log.stats().await.expect("stats");
    let readings_stats = stats
        .iter()
        .find(|s| s.topic == readings)
        .expect("readings stats");
    assert_eq!(readings_stats.records(), 6);
    assert_eq!(readings_stats.oldest_ms, Some(10 * day));
    assert_eq!(readings_stats.newest_ms, Some(day));
    let kept = stats.iter().find(|s| s.topic == changelog).expect("kept");
    assert_eq!(kept.records(), 606);
}
