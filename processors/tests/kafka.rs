//! The trend processor on the Kafka backend (a real broker; see `log/tests/conformance.rs`
//! for the environment variables): same results as on the embedded log, and a second run
//! appends nothing twice.

use std::sync::Arc;

use emberline_ingest::{Simulator, SimulatorConfig};
use emberline_log::{EmbeddedLog, EventLog, KafkaLog, NewRecord, conformance::read_to_end};
use emberline_processors::{TrendConfig, catch_up};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use emberline_schemas::{EmbeddedRegistry, EventCodec};

async fn process(
    log: Arc<dyn EventLog>,
    store: Arc<EmbeddedStore>,
    codec: Arc<EventCodec>,
    input: &str,
    output: &str,
) -> u64 {
    let config = TrendConfig {
        input_topic: input.into(),
        output_topic: output.into(),
        consumer: format!("test.{output}"),
        ..TrendConfig::default()
    };
    catch_up(log, store, codec, config)
        .await
        .expect("run")
        .records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_on_kafka_equal_trends_on_the_embedded_log() {
    let Some(kafka_config) = emberline_log::conformance::kafka_from_env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("log"));
    let codec = Arc::new(
        EventCodec::connect(Arc::new(EmbeddedRegistry::shared(embedded.handle())))
            .await
            .expect("codec"),
    );
    let kafka: Arc<dyn EventLog> = Arc::new(KafkaLog::connect(kafka_config).expect("kafka"));
    let run = emberline_common::clock::now_nanos();
    let (input, output) = (
        format!("trends-test.readings.{run}"),
        format!("trends-test.trends.{run}"),
    );
    for log in [kafka.clone(), embedded.clone() as Arc<dyn EventLog>] {
        log.ensure_topic(&input, 3).await.expect("topic");
        log.ensure_topic(emberline_log::topics::DEAD_LETTER, 3)
            .await
            .expect("topic");
    }
    let mut sim = Simulator::new(
        SimulatorConfig {
            devices: 3,
            interval_ms: 5_000,
            ..Default::default()
        },
        1_790_000_000_000,
    );
    let mut total = 0;
    for _ in 0..60 {
        let records: Vec<NewRecord> = sim
            .tick(None)
            .iter()
            .map(|r| NewRecord {
                key: r.device_id.as_bytes().to_vec(),
                value: codec.encode(r).expect("encode"),
                timestamp_ms: r.event_time,
            })
            .collect();
        total += records.len() as u64;
        kafka
            .append(&input, records.clone())
            .await
            .expect("append to kafka");
        embedded
            .append(&input, records)
            .await
            .expect("append to embedded");
    }
    let on_kafka = Arc::new(EmbeddedStore::open(&dir.path().join("k.redb")).expect("store"));
    let on_embedded = Arc::new(EmbeddedStore::open(&dir.path().join("e.redb")).expect("store"));
    assert_eq!(
        process(
            kafka.clone(),
            on_kafka.clone(),
            codec.clone(),
            &input,
            &output
        )
        .await,
        total
    );
    assert_eq!(
        process(
            embedded.clone(),
            on_embedded.clone(),
            codec.clone(),
            &input,
            &output
        )
        .await,
        total
    );
    assert!(
        on_kafka.dump().await.expect("dump") == on_embedded.dump().await.expect("dump"),
        "projections differ between backends"
    );
    for p in 0..3 {
        let k = read_to_end(kafka.as_ref(), &output, p, 0)
            .await
            .expect("read");
        let e = read_to_end(embedded.as_ref(), &output, p, 0)
            .await
            .expect("read");
        assert_eq!(k.len(), e.len(), "partition {p}: trend counts differ");
        assert!(
            k.iter()
                .zip(&e)
                .all(|(a, b)| a.value == b.value && a.key == b.key),
            "partition {p}: trends differ"
        );
    }
    // Positions were committed to the broker's consumer group.
    let committed = kafka
        .load_positions(&format!("test.{output}"), &input)
        .await
        .expect("positions");
    let mut ends = 0;
    for p in 0..3 {
        ends += kafka.end_offset(&input, p).await.expect("end");
    }
    assert_eq!(committed.values().sum::<u64>(), ends);
    // A second run from empty projections appends nothing already there.
    let before: usize = futures_len(kafka.as_ref(), &output).await;
    let again = Arc::new(EmbeddedStore::open(&dir.path().join("again.redb")).expect("store"));
    process(kafka.clone(), again, codec, &input, &output).await;
    assert_eq!(futures_len(kafka.as_ref(), &output).await, before);
}

async fn futures_len(log: &dyn EventLog, topic: &str) -> usize {
    let mut n = 0;
    for p in 0..3 {
        n += read_to_end(log, topic, p, 0).await.expect("read").len();
    }
    n
}
