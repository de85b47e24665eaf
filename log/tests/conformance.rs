//! The conformance suite against both backends.
//!
//! The Kafka run needs a Kafka-protocol broker: see
//! [`emberline_log::conformance::kafka_from_env`] (the test script starts one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use emberline_log::conformance::Backend;
use emberline_log::{EmbeddedLog, EventLog, KafkaConfig, KafkaLog};
use futures::future::BoxFuture;

struct Embedded {
    dir: tempfile::TempDir,
}

impl Backend for Embedded {
    fn open(&self) -> BoxFuture<'_, Arc<dyn EventLog>> {
        Box::pin(async move {
            let log = EmbeddedLog::open(&self.dir.path().join("log.redb")).expect("open");
            Arc::new(log) as Arc<dyn EventLog>
        })
    }
    fn topic(&self, name: &str) -> String {
        name.to_owned()
    }
}

async fn embedded() -> Option<Embedded> {
    Some(Embedded {
        dir: tempfile::tempdir().expect("tempdir"),
    })
}

struct Kafka {
    config: KafkaConfig,
    run: u64,
}

static TOPIC_SEQ: AtomicU64 = AtomicU64::new(0);

impl Backend for Kafka {
    fn open(&self) -> BoxFuture<'_, Arc<dyn EventLog>> {
        Box::pin(async move {
            Arc::new(KafkaLog::connect(self.config.clone()).expect("connect")) as Arc<dyn EventLog>
        })
    }
    fn topic(&self, name: &str) -> String {
        let seq = TOPIC_SEQ.fetch_add(1, Ordering::Relaxed);
        format!("conformance.{name}.{}.{seq}", self.run)
    }
    fn deletes_records(&self) -> bool {
        // Set for a broker that implements DeleteRecords (Kafka itself; not Tansu 0.6).
        std::env::var("EMBERLINE_TEST_KAFKA_DELETE_RECORDS").as_deref() == Ok("1")
    }
}

async fn kafka() -> Option<Kafka> {
    Some(Kafka {
        config: emberline_log::conformance::kafka_from_env()?,
        // Topics of earlier runs stay on the broker: make this run's names unique.
        run: emberline_common::clock::now_nanos() as u64,
    })
}

emberline_log::conformance_suite!(embedded_log, embedded());
emberline_log::conformance_suite!(kafka_log, kafka());
