//! The archive against the oracle: after retention moves the older part of the sample log
//! into Parquet files, every table (read from the archive and the live log as one) still
//! holds exactly the records the log held, once each — also when a crash left a range in
//! both places — and filters on device and time still see every row; the files are laid out
//! by day and device, and a record that makes no row is kept as it was.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use emberline_analytics::archive::{self, Archive};
use emberline_analytics::datafusion::arrow::array::AsArray as _;
use emberline_analytics::datafusion::arrow::datatypes::TimestampMillisecondType;
use emberline_analytics::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use emberline_analytics::testsuite::{
    Cell, Cells, READING_EVERY_MS, READINGS_PER_PROBE, Sample, T0, expected_rows, query_rows,
    write_sample_to,
};
use emberline_analytics::{Analytics, TABLES, table};
use emberline_log::{EmbeddedLog, EventLog, NewRecord, topics};
use emberline_schemas::EmbeddedRegistry;

const PARTITIONS: u32 = 3;

async fn sample(dir: &Path) -> (EmbeddedLog, Sample) {
    let log = EmbeddedLog::open(&dir.join("log.redb")).expect("open log");
    let registry = EmbeddedRegistry::shared(log.handle());
    let sample = write_sample_to(Arc::new(log.clone()), registry, PARTITIONS).await;
    (log, sample)
}

/// A session over the sample's log and `store`.
async fn with_archive(sample: &Sample, store: &Arc<Archive>) -> Analytics {
    Analytics::with_config(
        sample.log.clone(),
        sample.codec.clone(),
        Some(store.clone()),
        Default::default(),
    )
    .await
    .expect("session")
}

/// Every table's rows, in partition and offset order.
async fn all_rows(analytics: &Analytics) -> Vec<(&'static str, Vec<Cells>)> {
    let mut out = Vec::new();
    for def in &TABLES {
        let sql = format!(
            "SELECT * FROM {} ORDER BY log_partition, log_offset",
            def.name
        );
        out.push((def.name, query_rows(analytics, &sql).await));
    }
    out
}

async fn oracle(sample: &Sample) -> Vec<(&'static str, Vec<Cells>)> {
    let mut out = Vec::new();
    for def in &TABLES {
        out.push((
            def.name,
            expected_rows(sample.log.as_ref(), &sample.codec, def).await,
        ));
    }
    out
}

fn assert_same(actual: &[(&str, Vec<Cells>)], expected: &[(&str, Vec<Cells>)], when: &str) {
    for ((name, a), (_, e)) in actual.iter().zip(expected) {
        assert_eq!(a.len(), e.len(), "{when}: rows of {name}");
        for (a, e) in a.iter().zip(e) {
            assert_eq!(a, e, "{when}: a row of {name}");
        }
    }
}

/// Records still in the live log, over every table's topic.
async fn live_records(log: &EmbeddedLog) -> u64 {
    let mut n = 0;
    for def in &TABLES {
        for p in 0..PARTITIONS {
            n += log.end_offset(def.topic, p).await.expect("end")
                - log.start_offset(def.topic, p).await.expect("start");
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_records_read_back_exactly_as_the_log_held_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, sample) = sample(dir.path()).await;
    let expected = oracle(&sample).await;
    // A record that makes no row, old enough to expire: it must be kept as it was.
    let garbage = NewRecord {
        key: b"grill".to_vec(),
        value: b"not an event".to_vec(),
        timestamp_ms: T0 - 1,
    };
    log.append(topics::PROBE_READINGS, vec![garbage.clone()])
        .await
        .expect("append");
    let before = live_records(&log).await;

    // Half the readings' span expires.
    let cutoff = T0 + READING_EVERY_MS * READINGS_PER_PROBE as i64 / 2;
    let store = Arc::new(Archive::open(&dir.path().join("archive")).expect("archive"));
    // Ranges of 7 records: many ranges, most ending inside a batch.
    let done = archive::expire_in_ranges(&log, &sample.codec, Some(&store), cutoff, 7)
        .await
        .expect("expire");
    assert_eq!(done.failed, 0);
    let after = live_records(&log).await;
    assert!(done.removed > 0, "nothing expired: {done:?}");
    assert_eq!(before - after, done.removed);
    assert_eq!(
        done.archived_rows + done.archived_raw,
        done.removed,
        "every removed record is in the archive"
    );
    assert!(after > 0, "the cut-off should keep the newer half live");

    // Without the archive the tables lost rows; with it they hold every one, once.
    let live_only = Analytics::new(sample.log.clone(), sample.codec.clone())
        .await
        .expect("session");
    let readings_live = query_rows(&live_only, "SELECT count(*) AS n FROM probe_readings").await;
    let expected_readings = expected[0].1.len() as i64;
    assert!(matches!(readings_live[0].get("n"), Some(Cell::I(n)) if *n < expected_readings));
    let both = with_archive(&sample, &store).await;
    assert_same(&all_rows(&both).await, &expected, "archive and live log");

    // Filters on device and time see archived and live rows alike.
    let readings = &expected[0].1;
    let device = match readings[0].get("device_id") {
        Some(Cell::S(d)) => d.clone(),
        other => panic!("device {other:?}"),
    };
    let (from, to) = (cutoff - 60_000, cutoff + 60_000);
    let want: Vec<&Cells> = readings
        .iter()
        .filter(|r| r.get("device_id") == Some(&Cell::S(device.clone())))
        .filter(|r| matches!(r.get("event_time"), Some(Cell::I(t)) if (from..to).contains(t)))
        .collect();
    assert!(
        want.iter()
            .any(|r| matches!(r.get("event_time"), Some(Cell::I(t)) if *t < cutoff))
            && want
                .iter()
                .any(|r| matches!(r.get("event_time"), Some(Cell::I(t)) if *t >= cutoff)),
        "the window should straddle the cut-off"
    );
    let got = query_rows(
        &both,
        &format!(
            "SELECT * FROM probe_readings WHERE device_id = '{device}' \
             AND event_time >= to_timestamp_millis({from}) \
             AND event_time < to_timestamp_millis({to}) ORDER BY log_partition, log_offset"
        ),
    )
    .await;
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w);
    }

    // The files: one per day and device, each holding only its device and day.
    let dir_of = store.topic_dir(topics::PROBE_READINGS);
    let ranges = store.ranges(topics::PROBE_READINGS).expect("manifest");
    assert!(!ranges.is_empty());
    let mut devices = BTreeSet::new();
    for file in ranges.iter().flat_map(|r| &r.files) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(dir_of.join(&file.path)).expect("open"),
        )
        .expect("parquet")
        .build()
        .expect("reader");
        let mut n = 0;
        for batch in reader {
            let batch = batch.expect("batch");
            n += batch.num_rows() as u64;
            let ids = batch
                .column_by_name("device_id")
                .expect("device")
                .as_string::<i32>();
            let times = batch
                .column_by_name("event_time")
                .expect("time")
                .as_primitive::<TimestampMillisecondType>();
            for row in 0..batch.num_rows() {
                assert_eq!(ids.value(row), file.device);
                let t = times.value(row);
                assert!(t >= file.min_ms && t <= file.max_ms);
                let day = emberline_analytics::datafusion::arrow::temporal_conversions::
                    timestamp_ms_to_datetime(t)
                    .expect("time")
                    .date()
                    .to_string();
                assert!(
                    file.path.starts_with(&format!("day={day}/")),
                    "{}",
                    file.path
                );
            }
        }
        assert_eq!(n, file.rows, "{}", file.path);
        devices.insert(file.device.clone());
    }
    assert!(devices.len() > 1, "files of several devices: {devices:?}");

    // Everything expires: the tables read the archive alone, and still hold every row.
    let done = archive::expire(&log, &sample.codec, Some(&store), i64::MAX)
        .await
        .expect("expire all");
    assert_eq!(done.removed, after);
    assert_eq!(done.failed, 0);
    assert_eq!(done.archived_rows + done.archived_raw, done.removed);
    assert_eq!(live_records(&log).await, 0);
    let fresh = with_archive(&sample, &store).await;
    assert_same(&all_rows(&fresh).await, &expected, "archive alone");

    // The record that makes no row, byte for byte.
    let ranges = store.ranges(topics::PROBE_READINGS).expect("manifest");
    let raw = ranges
        .iter()
        .find_map(|r| r.raw.as_ref())
        .expect("a raw file");
    let batch = ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(dir_of.join(&raw.path)).expect("open"),
    )
    .expect("parquet")
    .build()
    .expect("reader")
    .next()
    .expect("a batch")
    .expect("batch");
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(
        batch
            .column_by_name("value")
            .expect("value")
            .as_binary::<i32>()
            .value(0),
        garbage.value
    );
    assert_eq!(
        batch
            .column_by_name("key")
            .expect("key")
            .as_binary::<i32>()
            .value(0),
        garbage.key
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_archived_but_not_yet_deleted_is_read_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, sample) = sample(dir.path()).await;
    let expected = oracle(&sample).await;
    let store = Arc::new(Archive::open(&dir.path().join("archive")).expect("archive"));
    // A crash after the archive's manifest line and before the log's delete: the range is
    // in both places.
    let def = table("probe_readings").expect("table");
    for partition in 0..PARTITIONS {
        let end = log.end_offset(def.topic, partition).await.expect("end");
        store
            .archive_range(
                def,
                sample.log.clone(),
                sample.codec.clone(),
                partition,
                0..end / 2,
            )
            .await
            .expect("archive");
    }
    let live = live_records(&log).await;
    let analytics = with_archive(&sample, &store).await;
    assert_same(
        &all_rows(&analytics).await,
        &expected,
        "range in both places",
    );
    // The next round deletes what was archived, and archives nothing twice.
    let done = archive::expire(&log, &sample.codec, Some(&store), i64::MAX)
        .await
        .expect("expire");
    assert_eq!(done.removed, live);
    let archived: u64 = TABLES
        .iter()
        .map(|d| {
            store
                .ranges(d.topic)
                .expect("manifest")
                .iter()
                .map(|r| r.to - r.from)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(archived, live, "each offset archived once");
    assert_same(&all_rows(&analytics).await, &expected, "after the delete");

    // The archive beside a log it was not written from (an older backup restored): nothing
    // is archived over it, and nothing expires unarchived.
    let other = EmbeddedLog::open(&dir.path().join("other.redb")).expect("open log");
    other
        .ensure_topic(topics::PROBE_READINGS, PARTITIONS)
        .await
        .expect("topic");
    let old = (0..6)
        .map(|i| NewRecord {
            key: format!("grill-{i}").into_bytes(),
            value: b"x".to_vec(),
            timestamp_ms: T0 - 1,
        })
        .collect();
    other
        .append(topics::PROBE_READINGS, old)
        .await
        .expect("append");
    let done = archive::expire(&other, &sample.codec, Some(&store), i64::MAX)
        .await
        .expect("expire");
    assert!(done.failed > 0, "{done:?}");
    assert_eq!(done.removed, 0);
    let mut kept = 0;
    for p in 0..PARTITIONS {
        kept += other
            .end_offset(topics::PROBE_READINGS, p)
            .await
            .expect("end")
            - other
                .start_offset(topics::PROBE_READINGS, p)
                .await
                .expect("start");
    }
    assert_eq!(kept, 6);
}
