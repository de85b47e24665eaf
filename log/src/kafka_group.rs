//! Consumer-group membership on Kafka: a consumer that subscribes to the topic only to take
//! part in the group protocol. It fetches nothing (its partitions are paused as soon as they
//! are assigned); the partitions themselves are read by [`crate::PartitionReader`]s.
//!
//! * Protocol: eager `range` assignment. Every rebalance revokes all partitions of every
//!   member first, so a partition never has two owners; the revoke callback holds the
//!   rebalance until the member has stopped working on them (or `revoke_timeout` passes).
//! * Failure detection: `session.timeout.ms` = [`KafkaConfig::group_session_timeout`]
//!   (10 s by default), heartbeats every third of that: a member killed with `kill -9`
//!   loses its partitions about that long after its last heartbeat. A member that stops
//!   cleanly leaves the group at once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use tokio::sync::mpsc;

use crate::LogError;
use crate::group::{GroupEvent, GroupMember, Revocation};
use crate::kafka::KafkaConfig;

struct MemberContext {
    events: mpsc::UnboundedSender<GroupEvent>,
    revoke_timeout: Duration,
}

fn partitions(tpl: &TopicPartitionList) -> BTreeSet<u32> {
    tpl.elements()
        .iter()
        .map(|e| e.partition().max(0) as u32)
        .collect()
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked = partitions(tpl);
        if revoked.is_empty() {
            return;
        }
        let (done, stopped) = std::sync::mpsc::sync_channel(1);
        let event = GroupEvent::Revoked(revoked.clone(), Revocation::new(done));
        if self.events.send(event).is_err() {
            return; // the member is gone: nothing works on these partitions
        }
        if stopped.recv_timeout(self.revoke_timeout).is_err() {
            tracing::warn!(
                ?revoked,
                timeout = ?self.revoke_timeout,
                "revoked partitions were not released in time; handing them over anyway"
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                // Membership only: fetch nothing.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::debug!(error = %e, "could not pause the membership consumer");
                }
                // Sent even when empty: a member with nothing to do knows it has joined.
                let _ = self.events.send(GroupEvent::Assigned(partitions(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A member of a Kafka consumer group.
pub(crate) struct KafkaMember {
    events: mpsc::UnboundedReceiver<GroupEvent>,
    stop: Arc<AtomicBool>,
}

impl KafkaMember {
    /// Joins `group` on `topic`; the group protocol runs on a thread of its own.
    pub(crate) fn join(config: &KafkaConfig, group: &str, topic: &str) -> Result<Self, LogError> {
        let (tx, events) = mpsc::unbounded_channel();
        let session = config.group_session_timeout;
        let context = MemberContext {
            events: tx,
            revoke_timeout: session,
        };
        let consumer: BaseConsumer<MemberContext> = config
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", session.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                (session / 3).as_millis().to_string(),
            )
            .create_with_context(context)
            .map_err(|e| LogError::Kafka {
                action: "joining a consumer group",
                reason: e.to_string(),
            })?;
        consumer.subscribe(&[topic]).map_err(|e| LogError::Kafka {
            action: "joining a consumer group",
            reason: e.to_string(),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let running = stop.clone();
        let name = format!("{group} member");
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while !running.load(Ordering::Relaxed) {
                    // Serves the group protocol and its callbacks; a record fetched before
                    // the pause took effect is ignored.
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        tracing::debug!(error = %e, "consumer group poll");
                    }
                }
                consumer.unsubscribe();
                // Dropping the consumer closes it: it leaves the group at once.
            })
            .map_err(|e| LogError::Task(format!("starting the group member thread: {e}")))?;
        Ok(Self { events, stop })
    }
}

impl Drop for KafkaMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl GroupMember for KafkaMember {
    async fn next_event(&mut self) -> Result<GroupEvent, LogError> {
        self.events
            .recv()
            .await
            .ok_or_else(|| LogError::Task("the consumer group member thread stopped".into()))
    }
}
