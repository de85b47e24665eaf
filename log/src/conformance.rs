//! The conformance suite every [`EventLog`] backend must pass.
//!
//! Each check is a plain async function over a [`Backend`]; [`conformance_suite!`] turns them
//! into one `#[tokio::test]` each, so test output names the property that broke:
//!
//! ```ignore
//! emberline_log::conformance_suite!(embedded, async { Some(MyBackend::new()) });
//! ```
//!
//! [`conformance_suite!`]: crate::conformance_suite

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

#[cfg(feature = "kafka")]
use crate::KafkaConfig;
use crate::{EventLog, LogError, NewRecord, Record, partition_for};

/// How long a read may wait for records the test knows are there (a broker round trip).
/// Reached only on failure: generous, since the suite shares a loaded machine with the
/// broker.
const PATIENCE: Duration = Duration::from_secs(60);

/// A backend under test.
pub trait Backend: Send + Sync {
    /// Opens the log. Opening again after every handle is dropped sees the same data.
    fn open(&self) -> BoxFuture<'_, Arc<dyn EventLog>>;
    /// A topic name that no other test of this backend uses.
    fn topic(&self, name: &str) -> String;
    /// Whether [`EventLog::delete_before`] works here. Tansu 0.6 (the test broker) panics
    /// on `DeleteRecords` ("not yet implemented"), which breaks its storage for every test
    /// after, so its run leaves the deleting part of the start-offset check out.
    fn deletes_records(&self) -> bool {
        true
    }
}

#[cfg(feature = "kafka")]
/// The test broker from `EMBERLINE_TEST_KAFKA` (a bootstrap address), or `None` to skip
/// Kafka tests — unless `EMBERLINE_REQUIRE_KAFKA=1`, which makes a missing broker a failure
/// (the test script sets both).
pub fn kafka_from_env() -> Option<KafkaConfig> {
    match std::env::var("EMBERLINE_TEST_KAFKA") {
        Ok(servers) if !servers.is_empty() => Some(KafkaConfig::new(servers)),
        _ => {
            assert!(
                std::env::var("EMBERLINE_REQUIRE_KAFKA").as_deref() != Ok("1"),
                "EMBERLINE_REQUIRE_KAFKA=1 but EMBERLINE_TEST_KAFKA is not set"
            );
            tracing::warn!("skipped: set EMBERLINE_TEST_KAFKA to run against a broker");
            None
        }
    }
}

/// Expands to one `#[tokio::test]` per conformance check, inside a module named `$name`.
/// `$backend` is an async expression yielding `Option<impl Backend>`; `None` skips.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $backend;
                per_partition_order_and_dense_offsets,
                read_from_any_offset,
                reads_below_the_start_continue_from_it,
                tail_sees_new_appends,
                positions_survive_reopen,
                many_partitions,
                large_batches,
                concurrent_appenders,
                unknown_topics_and_partitions_are_errors,
                ensure_topic_is_idempotent);
        }
    };
    (@case $backend:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(backend) = $backend.await {
                    $crate::conformance::$case(&backend).await;
                }
            }
        )*
    };
}

/// Event times in the suite are realistic epoch milliseconds: Kafka clients treat a
/// timestamp of 0 as "unset" and stamp the append time instead.
const EPOCH_MS: i64 = 1_700_000_000_000;

fn record(key: &str, value: String, ts: i64) -> NewRecord {
    NewRecord {
        key: key.as_bytes().to_vec(),
        value: value.into_bytes(),
        timestamp_ms: EPOCH_MS + ts,
    }
}

/// Reads `partition` from `from` up to its current end.
pub async fn read_to_end(
    log: &dyn EventLog,
    topic: &str,
    partition: u32,
    from: u64,
) -> Result<Vec<Record>, LogError> {
    let end = log.end_offset(topic, partition).await?;
    let mut reader = log.reader(topic, partition, from).await?;
    let mut out = Vec::new();
    while reader.position() < end {
        let batch = reader.next_batch(10_000, PATIENCE).await?;
        assert!(
            !batch.is_empty(),
            "{topic}/{partition}: no records at {} though the end is {end}",
            reader.position()
        );
        out.extend(batch);
    }
    Ok(out)
}

async fn read_all(log: &dyn EventLog, topic: &str) -> Vec<Record> {
    let partitions = log.partitions(topic).await.expect("partitions");
    let mut out = Vec::new();
    for p in 0..partitions {
        out.extend(read_to_end(log, topic, p, 0).await.expect("read"));
    }
    out
}

/// Records of one key keep append order in one partition; offsets are dense from 0; the
/// positions `append` returns point at the records it appended.
pub async fn per_partition_order_and_dense_offsets(backend: &impl Backend) {
    let log = backend.open().await;
    let topic = backend.topic("order");
    assert_eq!(log.ensure_topic(&topic, 3).await.expect("topic"), 3);
    let keys = ["dev-a", "dev-b", "dev-c", "dev-d", "dev-e"];
    let mut appended = Vec::new();
    for batch in 0..4 {
        let records: Vec<_> = (0..25)
            .map(|i| {
                let key = keys[i % keys.len()];
                record(key, format!("{key}:{batch}:{i}"), (batch * 100 + i) as i64)
            })
            .collect();
        let positions = log.append(&topic, records.clone()).await.expect("append");
        assert_eq!(positions.len(), records.len());
        appended.extend(records.into_iter().zip(positions));
    }
    let read = read_all(log.as_ref(), &topic).await;
    assert_eq!(read.len(), appended.len());
    let by_position: HashMap<(u32, u64), &Record> =
        read.iter().map(|r| ((r.partition, r.offset), r)).collect();
    for (rec, pos) in &appended {
        let got = by_position[&(pos.partition, pos.offset)];
        assert_eq!(got.value, rec.value, "record at {pos:?}");
        assert_eq!(got.key, rec.key);
        assert_eq!(got.timestamp_ms, rec.timestamp_ms, "timestamp of {pos:?}");
        assert_eq!(pos.partition, partition_for(&rec.key, 3));
    }
    for p in 0..3 {
        let offsets: Vec<u64> = read
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as u64).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
    for key in keys {
        let seen: Vec<&[u8]> = read
            .iter()
            .filter(|r| r.key == key.as_bytes())
            .map(|r| r.value.as_slice())
            .collect();
        let expected: Vec<&[u8]> = appended
            .iter()
            .filter(|(r, _)| r.key == key.as_bytes())
            .map(|(r, _)| r.value.as_slice())
            .collect();
        assert_eq!(seen, expected, "order of {key}");
    }
}

/// A reader started at any offset returns exactly the records from that offset on.
pub async fn read_from_any_offset(backend: &impl Backend) {
    let log = backend.open().await;
    let topic = backend.topic("offsets");
    log.ensure_topic(&topic, 1).await.expect("topic");
    for chunk in 0..5 {
        let records = (0..10)
            .map(|i| record("k", format!("{}", chunk * 10 + i), 0))
            .collect();
        log.append(&topic, records).await.expect("append");
    }
    assert_eq!(log.end_offset(&topic, 0).await.expect("end"), 50);
    for from in [0u64, 1, 9, 10, 11, 27, 49, 50] {
        let read = read_to_end(log.as_ref(), &topic, 0, from)
            .await
            .expect("read");
        let values: Vec<String> = read
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect();
        let expected: Vec<String> = (from..50).map(|i| i.to_string()).collect();
        assert_eq!(values, expected, "from {from}");
        assert!(read.iter().zip(from..).all(|(r, o)| r.offset == o));
    }
}

/// Once records are deleted from the start of a partition, the start offset says so, and a
/// reader asked for an offset below it returns the records from the start on (offsets skip
/// forward) instead of failing — what a Kafka consumer with `auto.offset.reset = earliest`
/// does, and what retention on the embedded log does.
pub async fn reads_below_the_start_continue_from_it(backend: &impl Backend) {
    let log = backend.open().await;
    let topic = backend.topic("start");
    log.ensure_topic(&topic, 1).await.expect("topic");
    assert_eq!(log.start_offset(&topic, 0).await.expect("start"), 0);
    if !backend.deletes_records() {
        tracing::warn!("skipped deleting: this broker cannot delete records");
        return;
    }
    for chunk in 0..3 {
        let records = (0..10)
            .map(|i| record("k", format!("{}", chunk * 10 + i), 0))
            .collect();
        log.append(&topic, records).await.expect("append");
    }
    // At a batch boundary, so both backends remove exactly the first ten.
    let start = log.delete_before(&topic, 0, 10).await.expect("delete");
    assert_eq!(start, 10);
    assert_eq!(log.start_offset(&topic, 0).await.expect("start"), 10);
    assert_eq!(log.end_offset(&topic, 0).await.expect("end"), 30);
    for from in [0u64, 5, 10, 17] {
        let mut reader = log.reader(&topic, 0, from).await.expect("reader");
        let mut read = Vec::new();
        while reader.position() < 30 {
            let batch = reader.next_batch(100, PATIENCE).await.expect("read");
            assert!(
                !batch.is_empty(),
                "from {from}: nothing at {}",
                reader.position()
            );
            read.extend(batch);
        }
        let first = from.max(10);
        let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (first..30).collect::<Vec<_>>(), "from {from}");
        assert!(
            read.iter()
                .all(|r| r.value == r.offset.to_string().as_bytes()),
            "from {from}"
        );
    }
    // Appends carry on after the end as before.
    let positions = log
        .append(&topic, vec![record("k", "30".into(), 0)])
        .await
        .expect("append");
    assert_eq!(positions[0].offset, 30);
    // With every record removed, a reader below the start moves to it (the end) instead of
    // waiting at an offset that will never come.
    let start = log.delete_before(&topic, 0, 31).await.expect("delete all");
    assert_eq!(start, 31);
    let mut reader = log.reader(&topic, 0, 5).await.expect("reader");
    let batch = reader
        .next_batch(100, Duration::from_millis(200))
        .await
        .expect("read");
    assert!(batch.is_empty(), "{batch:?}");
    assert_eq!(reader.position(), 31);
}

/// A reader waiting at the end returns records appended while it waits.
pub async fn tail_sees_new_appends(backend: &impl Backend) {
    let log = backend.open().await;
    let topic = backend.topic("tail");
    log.ensure_topic(&topic, 1).await.expect("topic");
    log.append(&topic, vec![record("k", "before".into(), 1)])
        .await
        .expect("append");
    let mut reader = log.reader(&topic, 0, 1).await.expect("reader");
    for round in 0..3 {
        let value = format!("live-{round}");
        let appender = log.clone();
        let t = topic.clone();
        let v = value.clone();
        let (batch, appended) = tokio::join!(reader.next_batch(100, PATIENCE), async move {
            appender.append(&t, vec![record("k", v, 2)]).await
        });
        appended.expect("append");
        let batch = batch.expect("tail");
        assert_eq!(batch.len(), 1, "round {round}");
        assert_eq!(batch[0].value, value.as_bytes());
        assert_eq!(batch[0].offset, 1 + round);
    }
    // Nothing new: a short wait returns empty rather than repeating.
    let empty = reader
        .next_batch(100, Duration::from_millis(50))
        .await
        .expect("tail");
    assert!(empty.is_empty(), "repeated {empty:?}");
}

/// Stored positions are per consumer and topic, overwrite earlier ones and survive reopening.
pub async fn positions_survive_reopen(backend: &impl Backend) {
    let topic = backend.topic("positions");
    {
        let log = backend.open().await;
        log.ensure_topic(&topic, 4).await.expect("topic");
        assert!(
            log.load_positions("proc", &topic)
                .await
                .expect("load")
                .is_empty()
        );
        log.store_positions("proc", &topic, &BTreeMap::from([(0, 5), (2, 7)]))
            .await
            .expect("store");
        log.store_positions("proc", &topic, &BTreeMap::from([(2, 9), (3, 1)]))
            .await
            .expect("store");
        log.store_positions("other", &topic, &BTreeMap::from([(0, 100)]))
            .await
            .expect("store");
    }
    let log = backend.open().await;
    assert_eq!(
        log.load_positions("proc", &topic).await.expect("load"),
        BTreeMap::from([(0, 5), (2, 9), (3, 1)])
    );
    assert_eq!(
        log.load_positions("other", &topic).await.expect("load"),
        BTreeMap::from([(0, 100)])
    );
}

/// Many partitions: every record is in the partition its key maps to, none lost.
pub async fn many_partitions(backend: &impl Backend) {
    let log = backend.open().await;
    let topic = backend.topic("many");
    assert_eq!(log.ensure_topic(&topic, 32).await.expect("topic"), 32);
    let records: Vec<_> = (0..640)
        .map(|i| record(&format!("device-{i}"), i.to_string(), i))
        .collect();
    log.append(&topic, records).await.expect("append");
    let mut total = 0;
    let mut nonempty = 0;
    for p in 0..32 {
        let read = read_to_end(log.as_ref(), &topic, p, 0).await.expect("read");
        nonempty += usize::from(!read.is_empty());
        for r in &read {
            assert_eq!(partition_for(&r.key, 32), p);
        }
        total += read.len();
    }
    assert_eq!(total, 640);
    assert!(
        nonempty >= 28,
        "keys spread over only {nonempty} of 32 partitions"
    );
}

/// A large batch is appended whole and read back byte for byte.
pub async fn large_batches(backend: &impl Backend) {
    let log = backend.open().await;
    let topic = backend.topic("large");
    log.ensure_topic(&topic, 2).await.expect("topic");
    let records: Vec<_> = (0..20_000)
        .map(|i| {
            record(
                if i % 2 == 0 { "even" } else { "odd" },
                format!("{i:0>200}"),
                i,
            )
        })
        .collect();
    let positions = log.append(&topic, records.clone()).await.expect("append");
    assert_eq!(positions.len(), 20_000);
    let read = read_all(log.as_ref(), &topic).await;
    assert_eq!(read.len(), 20_000);
    for key in ["even", "odd"] {
        let got: Vec<&Vec<u8>> = read
            .iter()
            .filter(|r| r.key == key.as_bytes())
            .map(|r| &r.value)
            .collect();
        let want: Vec<&Vec<u8>> = records
            .iter()
            .filter(|r| r.key == key.as_bytes())
            .map(|r| &r.value)
            .collect();
        assert!(got == want, "{key}: read back differs");
    }
}

/// Concurrent appenders: nothing lost or duplicated, each appender's order kept, offsets dense.
pub async fn concurrent_appenders(backend: &impl Backend) {
    let log = backend.open().await;
    let topic = backend.topic("concurrent");
    log.ensure_topic(&topic, 2).await.expect("topic");
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let log = log.clone();
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let mut placed = Vec::new();
            for batch in 0..25 {
                let records: Vec<NewRecord> = (0..8)
                    .map(|i| {
                        record(
                            &format!("dev-{}", i % 3),
                            format!("{writer}:{batch}:{i}"),
                            0,
                        )
                    })
                    .collect();
                let values: Vec<Vec<u8>> = records.iter().map(|r| r.value.clone()).collect();
                let positions = log.append(&topic, records).await.expect("append");
                placed.extend(values.into_iter().zip(positions));
            }
            placed
        }));
    }
    let mut placed = Vec::new();
    for t in tasks {
        placed.extend(t.await.expect("appender"));
    }
    let read = read_all(log.as_ref(), &topic).await;
    assert_eq!(read.len(), 4 * 25 * 8);
    // Each append was told where each of its records landed.
    let at: HashMap<(u32, u64), &[u8]> = read
        .iter()
        .map(|r| ((r.partition, r.offset), r.value.as_slice()))
        .collect();
    for (value, position) in &placed {
        assert_eq!(
            at.get(&(position.partition, position.offset)).copied(),
            Some(value.as_slice()),
            "the position returned for {:?}",
            String::from_utf8_lossy(value)
        );
    }
    let mut seen = std::collections::HashSet::new();
    for r in &read {
        assert!(
            seen.insert(r.value.clone()),
            "duplicate {:?}",
            String::from_utf8_lossy(&r.value)
        );
    }
    for p in 0..2 {
        let offsets: Vec<u64> = read
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>());
    }
    // Per writer and key, (batch, i) must increase.
    let mut last: HashMap<(String, Vec<u8>), (u32, u32)> = HashMap::new();
    for r in &read {
        let text = String::from_utf8_lossy(&r.value).into_owned();
        let parts: Vec<u32> = text
            .split(':')
            .map(|s| s.parse().expect("number"))
            .collect();
        let key = (parts[0].to_string(), r.key.clone());
        let now = (parts[1], parts[2]);
        if let Some(prev) = last.insert(key, now) {
            assert!(prev < now, "{text} came after {prev:?}");
        }
    }
}

/// Unknown topics and partitions give typed errors, not panics or empty reads.
pub async fn unknown_topics_and_partitions_are_errors(backend: &impl Backend) {
    let log = backend.open().await;
    let missing = backend.topic("missing");
    assert!(matches!(
        log.partitions(&missing).await,
        Err(LogError::UnknownTopic(_))
    ));
    assert!(
        log.append(&missing, vec![record("k", "v".into(), 0)])
            .await
            .is_err()
    );
    let topic = backend.topic("bounded");
    log.ensure_topic(&topic, 2).await.expect("topic");
    assert!(matches!(
        log.reader(&topic, 2, 0).await.err(),
        Some(LogError::UnknownPartition {
            partition: 2,
            partitions: 2,
            ..
        })
    ));
    assert!(matches!(
        log.append_to(&topic, 5, vec![record("k", "v".into(), 0)])
            .await,
        Err(LogError::UnknownPartition { .. })
    ));
}

/// Ensuring an existing topic keeps its partition count.
pub async fn ensure_topic_is_idempotent(backend: &impl Backend) {
    let log = backend.open().await;
    let topic = backend.topic("idem");
    assert_eq!(log.ensure_topic(&topic, 3).await.expect("topic"), 3);
    assert_eq!(log.ensure_topic(&topic, 3).await.expect("topic"), 3);
    assert_eq!(log.partitions(&topic).await.expect("partitions"), 3);
}
