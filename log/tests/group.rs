//! Consumer groups: on the embedded log one member owns everything; on Kafka (a real broker,
//! see [`emberline_log::conformance::kafka_from_env`]) members share a topic's partitions,
//! a joining member takes some only after the others released them, and a member that
//! leaves hands its partitions back.

use std::collections::BTreeSet;
use std::time::Duration;

use emberline_log::{EmbeddedLog, EventLog, GroupEvent, GroupMember, KafkaLog};

/// Generous bound for a rebalance; only reached on failure.
const PATIENCE: Duration = Duration::from_secs(60);

/// What a member owns, following its events.
struct Owner {
    member: Box<dyn GroupMember>,
    owned: BTreeSet<u32>,
}

impl Owner {
    async fn join(log: &dyn EventLog, group: &str, topic: &str) -> Self {
        Self {
            member: log.join_group(group, topic).await.expect("join"),
            owned: BTreeSet::new(),
        }
    }

    /// Applies events until `done` holds for what is owned; returns the revoked sets seen.
    async fn until(&mut self, done: impl Fn(&BTreeSet<u32>) -> bool) -> Vec<BTreeSet<u32>> {
        let mut revoked = Vec::new();
        tokio::time::timeout(PATIENCE, async {
            while !done(&self.owned) {
                match self.member.next_event().await.expect("event") {
                    GroupEvent::Assigned(p) => self.owned.extend(p),
                    GroupEvent::Revoked(p, release) => {
                        for q in &p {
                            assert!(self.owned.remove(q), "revoked {q}, which was not owned");
                        }
                        revoked.push(p);
                        drop(release);
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("ownership never settled; owned {:?}", self.owned));
        revoked
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_log_gives_its_one_member_every_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb")).expect("open");
    log.ensure_topic("t", 3).await.expect("topic");
    let mut owner = Owner::join(&log, "g", "t").await;
    owner.until(|o| o.len() == 3).await;
    assert_eq!(owner.owned, BTreeSet::from([0, 1, 2]));
    // Nothing more happens: the one member keeps everything.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), owner.member.next_event())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_members_share_partitions_and_take_back_a_leavers() {
    let Some(config) = emberline_log::conformance::kafka_from_env() else {
        return;
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let (topic, group) = (format!("group.test.{run}"), format!("group.test.{run}"));
    let log = KafkaLog::connect(config).expect("connect");
    log.ensure_topic(&topic, 4).await.expect("topic");
    let all: BTreeSet<u32> = (0..4).collect();

    let mut a = Owner::join(&log, &group, &topic).await;
    a.until(|o| *o == all).await;

    // A second member: the first gives up everything (eager protocol) before the second
    // gets its share; together they own each partition once.
    let mut b = Owner::join(&log, &group, &topic).await;
    let (revoked, _) = tokio::join!(
        a.until(|o| !o.is_empty() && o.len() < 4),
        b.until(|o| !o.is_empty())
    );
    assert!(revoked.contains(&all), "{revoked:?}");
    // Settle: the two shares are disjoint and cover the topic.
    let (_, _) = tokio::join!(a.until(|o| o.len() == 2), b.until(|o| o.len() == 2));
    assert!(a.owned.is_disjoint(&b.owned), "{:?} {:?}", a.owned, b.owned);
    assert_eq!(&a.owned | &b.owned, all);

    // The second leaves: the first owns everything again.
    drop(b);
    let started = std::time::Instant::now();
    a.until(|o| *o == all).await;
    tracing::info!(elapsed = ?started.elapsed(), "partitions taken back");
}
