//! Groups through heartbeats in the log, on the embedded log and on a real Kafka-protocol
//! broker (see [`emberline_log::conformance::kafka_from_env`]): members share a topic's
//! partitions once each, a joining member's share is given up by the others first, and a
//! member that leaves — or goes silent for a session — has its partitions taken back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use emberline_log::{EmbeddedLog, EventLog, GroupEvent, GroupMember, GroupSettings, KafkaLog};

/// Generous bound for a change of shares; only reached on failure.
const PATIENCE: Duration = Duration::from_secs(60);

fn settings() -> GroupSettings {
    GroupSettings {
        heartbeat: Duration::from_millis(200),
        session: Duration::from_secs(2),
    }
}

/// What a member owns, following its events.
struct Owner {
    member: Box<dyn GroupMember>,
    owned: BTreeSet<u32>,
}

impl Owner {
    async fn join(log: &Arc<dyn EventLog>, group: &str, topic: &str, id: &str) -> Self {
        Self {
            member: emberline_log::join_group(log.clone(), group, topic, id.into(), settings())
                .await
                .expect("join"),
            owned: BTreeSet::new(),
        }
    }

    /// Applies events until `done` holds for what is owned.
    async fn until(&mut self, done: impl Fn(&BTreeSet<u32>) -> bool) {
        tokio::time::timeout(PATIENCE, async {
            while !done(&self.owned) {
                match self.member.next_event().await.expect("event") {
                    GroupEvent::Assigned(p) => {
                        assert!(self.owned.is_disjoint(&p), "assigned {p:?} twice");
                        self.owned.extend(p);
                    }
                    GroupEvent::Revoked(p, release) => {
                        for q in &p {
                            assert!(self.owned.remove(q), "revoked {q}, which was not owned");
                        }
                        drop(release);
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("shares never settled; owned {:?}", self.owned));
    }
}

async fn members_share_and_take_back(log: Arc<dyn EventLog>, run: &str) {
    let (topic, group) = (format!("group.test.{run}"), format!("group.test.{run}"));
    log.ensure_topic(&topic, 4).await.expect("topic");
    let all: BTreeSet<u32> = (0..4).collect();

    let mut a = Owner::join(&log, &group, &topic, "a").await;
    a.until(|o| *o == all).await;

    // A second member: the first gives up half, the second takes it.
    let mut b = Owner::join(&log, &group, &topic, "b").await;
    let ((), ()) = tokio::join!(a.until(|o| o.len() == 2), b.until(|o| o.len() == 2));
    assert!(a.owned.is_disjoint(&b.owned), "{:?} {:?}", a.owned, b.owned);
    assert_eq!(&a.owned | &b.owned, all);

    // The second leaves cleanly: the first owns everything again.
    drop(b);
    a.until(|o| *o == all).await;

    // A member that says it is alive once and then nothing more (as after kill -9): its
    // share is taken back a session later.
    let now = emberline_common::clock::now_ms();
    let heartbeat = emberline_log::NewRecord {
        key: b"z".to_vec(),
        value: [&[1u8][..], b"z"].concat(),
        timestamp_ms: now,
    };
    log.append_to(&format!("{group}.members"), 0, vec![heartbeat])
        .await
        .expect("heartbeat");
    a.until(|o| o.len() == 2).await;
    let silent = std::time::Instant::now();
    a.until(|o| *o == all).await;
    assert!(
        silent.elapsed() >= Duration::from_millis(1_500),
        "{:?}",
        silent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_on_the_embedded_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("open"));
    members_share_and_take_back(log, "embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_on_kafka() {
    let Some(config) = emberline_log::conformance::kafka_from_env() else {
        return;
    };
    let run = emberline_common::clock::now_nanos();
    let log: Arc<dyn EventLog> = Arc::new(KafkaLog::connect(config).expect("connect"));
    members_share_and_take_back(log, &run.to_string()).await;
}
