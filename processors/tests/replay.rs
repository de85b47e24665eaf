//! Replay determinism and exactly-once resumption of the trend processor on the embedded log.

use std::collections::BTreeMap;
use std::sync::Arc;

use emberline_ingest::testing::embedded_log;
use emberline_ingest::{Simulator, SimulatorConfig};
use emberline_log::{EmbeddedLog, EventLog, NewRecord, conformance::read_to_end, topics};
use emberline_processors::{TrendConfig, catch_up};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use emberline_schemas::EventCodec;
use emberline_schemas::events::{ProbeReading, TrendUpdated};

struct World {
    dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    codec: Arc<EventCodec>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, codec) = embedded_log(dir.path(), 4).await.expect("log");
    World { dir, log, codec }
}

/// Appends `ticks` of a 3-device simulation, in batches per tick.
async fn simulate(w: &World, sim: &mut Simulator, ticks: usize) -> Vec<ProbeReading> {
    let mut all = Vec::new();
    for _ in 0..ticks {
        let readings = sim.tick(None);
        let records = readings
            .iter()
            .map(|r| NewRecord {
                key: r.device_id.as_bytes().to_vec(),
                value: w.codec.encode(r).expect("encode"),
                timestamp_ms: r.event_time,
            })
            .collect();
        w.log
            .append(topics::PROBE_READINGS, records)
            .await
            .expect("append");
        all.extend(readings);
    }
    all
}

fn simulator() -> Simulator {
    let config = SimulatorConfig {
        devices: 3,
        probes: 4,
        interval_ms: 5_000,
        ..Default::default()
    };
    Simulator::new(config, 1_790_000_000_000)
}

async fn process(
    w: &World,
    store: &str,
    output: &str,
    workers: usize,
) -> (Arc<EmbeddedStore>, u64) {
    let store = Arc::new(EmbeddedStore::open(&w.dir.path().join(store)).expect("store"));
    let config = TrendConfig {
        output_topic: output.into(),
        consumer: format!("test.{output}"),
        workers,
        batch_size: 97, // small, odd batches: many rounds
        ..TrendConfig::default()
    };
    let stats = catch_up(w.log.clone(), store.clone(), w.codec.clone(), config)
        .await
        .expect("run");
    (store, stats.records)
}

/// Compares two dumps, naming the first difference instead of printing both.
fn same_dump(
    a: &[(String, Vec<u8>, Vec<u8>)],
    b: &[(String, Vec<u8>, Vec<u8>)],
) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} entries vs {}", a.len(), b.len()));
    }
    match a.iter().zip(b).find(|(x, y)| x != y) {
        None => Ok(()),
        Some((x, y)) => Err(format!(
            "first difference: {} {} vs {} {}",
            x.0,
            String::from_utf8_lossy(&x.1),
            y.0,
            String::from_utf8_lossy(&y.1)
        )),
    }
}

fn same_topic(
    a: &BTreeMap<u32, Vec<Vec<u8>>>,
    b: &BTreeMap<u32, Vec<Vec<u8>>>,
) -> Result<(), String> {
    for (p, records) in a {
        let other = b.get(p).map(Vec::as_slice).unwrap_or_default();
        if records.len() != other.len() {
            return Err(format!(
                "partition {p}: {} records vs {}",
                records.len(),
                other.len()
            ));
        }
        if let Some(i) = records.iter().zip(other).position(|(x, y)| x != y) {
            return Err(format!("partition {p}: record {i} differs"));
        }
    }
    Ok(())
}

async fn topic_bytes(w: &World, topic: &str) -> BTreeMap<u32, Vec<Vec<u8>>> {
    let mut out = BTreeMap::new();
    for p in 0..4 {
        let records = read_to_end(w.log.as_ref(), topic, p, 0)
            .await
            .expect("read");
        out.insert(p, records.into_iter().map(|r| r.value).collect());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_twice_gives_identical_projections_and_trends() {
    let w = world().await;
    let readings = simulate(&w, &mut simulator(), 400).await;
    let (a, processed) = process(&w, "a.redb", topics::DERIVED_TRENDS, 2).await;
    assert_eq!(processed, readings.len() as u64);
    let (b, _) = process(&w, "b.redb", "replay.trends", 2).await;
    let (c, _) = process(&w, "c.redb", "single.trends", 1).await;
    let dump = a.dump().await.expect("dump");
    assert!(!dump.is_empty());
    same_dump(&dump, &b.dump().await.expect("dump")).expect("projections differ between replays");
    same_dump(&dump, &c.dump().await.expect("dump"))
        .expect("projections depend on the worker count");
    let trends = topic_bytes(&w, topics::DERIVED_TRENDS).await;
    same_topic(&trends, &topic_bytes(&w, "replay.trends").await)
        .expect("trends differ between replays");
    same_topic(&trends, &topic_bytes(&w, "single.trends").await)
        .expect("trends depend on the worker count");
    // One trend per plugged-in reading, in source-offset order per partition.
    let plugged = readings
        .iter()
        .filter(|r| r.temperature_c.is_some())
        .count();
    assert_eq!(trends.values().map(Vec::len).sum::<usize>(), plugged);
    for values in trends.values() {
        let offsets: Vec<i64> = values
            .iter()
            .map(|v| {
                w.codec
                    .decode_cached::<TrendUpdated>(v)
                    .expect("trend")
                    .source_offset
            })
            .collect();
        assert!(
            offsets.windows(2).all(|o| o[0] < o[1]),
            "trends out of source order"
        );
    }
    // Every reading is in history, and latest values are the last reading per probe.
    let last = readings.last().expect("readings");
    let latest = a.latest(&last.device_id).await.expect("latest");
    assert_eq!(latest.len(), 4);
    let history = a
        .history(&last.device_id, "pit", 0, i64::MAX, 10_000)
        .await
        .expect("history");
    assert_eq!(history.len(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_a_stop_equals_one_uninterrupted_run() {
    let w = world().await;
    let mut sim = simulator();
    simulate(&w, &mut sim, 150).await;
    // Process the first part, then the rest: one store, one output topic.
    process(&w, "split.redb", "split.trends", 2).await;
    simulate(&w, &mut sim, 150).await;
    let (split, _) = process(&w, "split.redb", "split.trends", 2).await;
    let (whole, _) = process(&w, "whole.redb", topics::DERIVED_TRENDS, 2).await;
    same_dump(
        &split.dump().await.expect("dump"),
        &whole.dump().await.expect("dump"),
    )
    .expect("projections");
    same_topic(
        &topic_bytes(&w, "split.trends").await,
        &topic_bytes(&w, topics::DERIVED_TRENDS).await,
    )
    .expect("trends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_already_appended_are_not_appended_again() {
    // A crash after appending trends but before the projection write: the next run starts
    // from older projections (here: none) and must not repeat what the topic holds.
    let w = world().await;
    simulate(&w, &mut simulator(), 100).await;
    process(&w, "first.redb", topics::DERIVED_TRENDS, 2).await;
    let before = topic_bytes(&w, topics::DERIVED_TRENDS).await;
    let (again, _) = process(&w, "lost.redb", topics::DERIVED_TRENDS, 2).await;
    same_topic(&topic_bytes(&w, topics::DERIVED_TRENDS).await, &before)
        .expect("trends were repeated");
    let (fresh, _) = process(&w, "fresh.redb", "fresh.trends", 2).await;
    same_dump(
        &again.dump().await.expect("dump"),
        &fresh.dump().await.expect("dump"),
    )
    .expect("projections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_readings_go_to_the_dead_letter_topic_with_the_reason() {
    let w = world().await;
    simulate(&w, &mut simulator(), 10).await;
    w.log
        .append(
            topics::PROBE_READINGS,
            vec![NewRecord {
                key: b"sim-1".to_vec(),
                value: vec![0, 0, 0, 0, 1, 0xff],
                timestamp_ms: 1_790_000_000_000,
            }],
        )
        .await
        .expect("append");
    simulate(&w, &mut simulator(), 5).await;
    let (store, processed) = process(&w, "dl.redb", topics::DERIVED_TRENDS, 2).await;
    assert_eq!(processed, 15 * 12 + 1);
    let dead = topic_bytes(&w, topics::DEAD_LETTER).await;
    let dead: Vec<&Vec<u8>> = dead.values().flatten().collect();
    assert_eq!(dead.len(), 1);
    let text = String::from_utf8_lossy(dead[0]);
    assert!(text.contains("\"topic\":\"probe.readings\""), "{text}");
    assert!(text.contains("malformed Avro body"), "{text}");
    assert!(text.contains("0000000001ff"), "{text}");
    // The rejected record's position is covered: a second run has nothing left to do.
    let applied: u64 = store
        .applied_positions(topics::PROBE_READINGS)
        .await
        .expect("applied")
        .values()
        .sum();
    assert_eq!(applied, 15 * 12 + 1);
}
