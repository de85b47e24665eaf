//! The cook processor on the embedded log: what it does with records it cannot read.

use std::collections::BTreeMap;
use std::sync::Arc;

use emberline_ingest::testing::embedded_log;
use emberline_log::{EventLog, NewRecord, conformance::read_to_end, topics};
use emberline_processors::{Mode, RunStats, run_cook};
use emberline_projections::EmbeddedStore;
use emberline_schemas::events::{CookStarted, ProbeReading};
use tokio_util::sync::CancellationToken;

const PARTITIONS: u32 = 3;

fn record(value: Vec<u8>) -> Vec<NewRecord> {
    vec![NewRecord {
        key: b"a".to_vec(),
        value,
        timestamp_ms: 1_000,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_commands_and_readings_go_to_the_dead_letter_topic_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, codec) = embedded_log(dir.path(), PARTITIONS).await.expect("log");
    let start = CookStarted {
        cook_id: "a-1".into(),
        device_id: "a".into(),
        event_time: 1_000,
        what: None,
        targets_c: BTreeMap::from([("meat-1".into(), 93.0)]),
        pit_min_c: None,
        pit_max_c: None,
        meat: None,
        weight_kg: None,
        serve_at_ms: None,
        rest_min: None,
    };
    let reading = ProbeReading {
        device_id: "a".into(),
        probe_id: "meat-1".into(),
        event_time: 2_000,
        received_time: 2_000,
        temperature_c: Some(20.0),
        source: "test".into(),
    };
    let appends = [
        (topics::COOK_COMMANDS, codec.encode(&start).expect("encode")),
        (topics::COOK_COMMANDS, b"not avro".to_vec()),
        (
            topics::PROBE_READINGS,
            codec.encode(&reading).expect("encode"),
        ),
        (topics::PROBE_READINGS, vec![0, 0, 0, 0, 1, 0xff]),
    ];
    for (topic, value) in appends {
        log.append(topic, record(value)).await.expect("append");
    }
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("p.redb")).expect("store"));
    let run = || {
        run_cook(
            log.clone(),
            store.clone(),
            codec.clone(),
            Mode::CatchUp,
            CancellationToken::new(),
        )
    };

    let stats = run().await.expect("run");
    assert_eq!(
        stats,
        RunStats {
            records: 4,
            rejected: 2
        }
    );
    let mut dead: Vec<serde_json::Value> = Vec::new();
    for p in 0..PARTITIONS {
        for r in read_to_end(log.as_ref(), topics::DEAD_LETTER, p, 0)
            .await
            .expect("read")
        {
            dead.push(serde_json::from_slice(&r.value).expect("dead letters are JSON"));
        }
    }
    dead.sort_by_key(|d| d["topic"].as_str().map(str::to_owned));
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in &dead {
        assert_eq!(d["consumer"], "processor.cook", "{d}");
        assert_eq!(d["offset"], 1, "{d}");
    }
    let reason = |d: &serde_json::Value| d["reason"].as_str().unwrap_or_default().to_owned();
    assert_eq!(dead[0]["topic"], "cook.commands", "{dead:?}");
    assert!(reason(&dead[0]).contains("magic byte"), "{dead:?}");
    assert_eq!(dead[0]["payload_hex"], hex(b"not avro"), "{dead:?}");
    assert_eq!(dead[1]["topic"], "probe.readings", "{dead:?}");
    assert!(reason(&dead[1]).contains("malformed Avro body"), "{dead:?}");
    assert_eq!(dead[1]["payload_hex"], "0000000001ff", "{dead:?}");

    // The rejected records' positions are applied: a second run reads nothing and
    // dead-letters nothing again.
    let again = run().await.expect("run");
    assert_eq!(again, RunStats::default());
    let mut total = 0;
    for p in 0..PARTITIONS {
        total += log.end_offset(topics::DEAD_LETTER, p).await.expect("end");
    }
    assert_eq!(total, 2);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
