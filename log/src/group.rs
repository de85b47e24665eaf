//! Groups: which partitions of a topic this process owns among its peers, agreed through
//! heartbeats in the log itself.
//!
//! Every member appends a heartbeat to the group's topic (`<group>.members`, one partition)
//! every [`GroupSettings::heartbeat`] and reads everyone's. A member is alive while its last
//! heartbeat was read less than [`GroupSettings::session`] ago (by the reader's clock, so
//! hosts' clocks need not agree; heartbeats older than the member itself are dated by their
//! record time); one that stops cleanly says so and leaves at once. Each member sorts the live members and takes its range of the topic's partitions
//! (Kafka's `range` assignment) — every member computes the same answer from the same
//! heartbeats, with no coordinator. Changes of a member's share come as [`GroupEvent`]s:
//! work on a partition starts after it is [`GroupEvent::Assigned`] and must stop before the
//! [`Revocation`] of a [`GroupEvent::Revoked`] is dropped.
//!
//! Members see a change at slightly different moments (within a heartbeat), so two may
//! briefly both think they own a partition: writers must fence each other (the projection
//! changelog's claims do). A member that dies is dropped by the others one session after
//! its last heartbeat.
//!
//! Why not the broker's group coordinator: the protocol is the same on every
//! Kafka-protocol broker, including ones whose coordinator completes a rebalance without
//! waiting for every member or keeps a dead member (seen with Tansu 0.6), and on the
//! embedded log.
//!
//! Topics read together (`probe.readings`, `device.events`, `cook.commands`) are
//! co-partitioned by device id, so a member that owns partition *p* of the topic it joined
//! with owns partition *p* of each of them.

use emberline_common::clock::now_ms;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{EventLog, LogError, NewRecord, PartitionReader};

/// A change of what a member owns.
#[derive(Debug)]
pub enum GroupEvent {
    /// These partitions are this member's now (in addition to any it holds).
    Assigned(BTreeSet<u32>),
    /// These partitions are no longer this member's: stop working on them, then drop the
    /// [`Revocation`].
    Revoked(BTreeSet<u32>, Revocation),
}

/// Held while revoked partitions are still being worked on; dropping it tells the member
/// that they are released.
#[derive(Debug)]
pub struct Revocation {
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Revocation {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

/// A member of a group. See the module docs for the protocol.
#[async_trait]
pub trait GroupMember: Send {
    /// The next change of this member's partitions (the first call: its first share, which
    /// may be empty).
    async fn next_event(&mut self) -> Result<GroupEvent, LogError>;

    /// The share this member holds now, by its latest view of the group.
    fn share(&self) -> BTreeSet<u32>;
}

/// Timing of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    /// How often a member says it is alive.
    pub heartbeat: Duration,
    /// How long a member may stay silent before the others drop it.
    pub session: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            session: Duration::from_secs(10),
        }
    }
}

const HEARTBEAT: u8 = 1;
const LEAVE: u8 = 2;
/// How far back a joining member reads the heartbeats: far more than one session's worth.
const LOOK_BACK: u64 = 4_096;

/// Joins `group` as `member` (unique among the group's processes) to share the partitions
/// of `topic`.
pub async fn join_group(
    log: Arc<dyn EventLog>,
    group: &str,
    topic: &str,
    member: String,
    settings: GroupSettings,
) -> Result<Box<dyn GroupMember>, LogError> {
    let partitions = log.partitions(topic).await?;
    let members_topic = format!("{group}.members");
    log.ensure_topic(&members_topic, 1).await?;
    let end = log.end_offset(&members_topic, 0).await?;
    let reader = log
        .reader(&members_topic, 0, end.saturating_sub(LOOK_BACK))
        .await?;
    let (tx, events) = mpsc::unbounded_channel();
    let share = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = CancellationToken::new();
    let heartbeats = Heartbeats {
        log,
        topic: members_topic,
        member,
        partitions,
        settings,
        reader,
        caught_up_to: end,
        last_seen: BTreeMap::new(),
        share: share.clone(),
        events: tx,
        stop: stop.clone(),
    };
    tokio::spawn(heartbeats.run());
    Ok(Box::new(LogMember {
        events,
        share,
        stop,
    }))
}

/// The member's handle.
struct LogMember {
    events: mpsc::UnboundedReceiver<Result<GroupEvent, LogError>>,
    share: Arc<Mutex<BTreeSet<u32>>>,
    stop: CancellationToken,
}

impl Drop for LogMember {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait]
impl GroupMember for LogMember {
    async fn next_event(&mut self) -> Result<GroupEvent, LogError> {
        match self.events.recv().await {
            Some(event) => event,
            None => Err(LogError::Task("the group member stopped".into())),
        }
    }

    fn share(&self) -> BTreeSet<u32> {
        self.share.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The member's background task: heartbeats out, heartbeats in, shares computed.
struct Heartbeats {
    log: Arc<dyn EventLog>,
    topic: String,
    member: String,
    partitions: u32,
    settings: GroupSettings,
    reader: Box<dyn PartitionReader>,
    /// The members topic's end when this member joined: read before the first share.
    caught_up_to: u64,
    /// Member → time of its latest heartbeat (ms); members that left are removed.
    last_seen: BTreeMap<String, i64>,
    share: Arc<Mutex<BTreeSet<u32>>>,
    events: mpsc::UnboundedSender<Result<GroupEvent, LogError>>,
    stop: CancellationToken,
}

/// Appends a heartbeat or a goodbye of `member`.
async fn say(log: &Arc<dyn EventLog>, topic: &str, member: &str, kind: u8) -> Result<(), LogError> {
    let mut value = vec![kind];
    value.extend_from_slice(member.as_bytes());
    let record = NewRecord {
        key: member.as_bytes().to_vec(),
        value,
        timestamp_ms: now_ms(),
    };
    log.append_to(topic, 0, vec![record]).await?;
    Ok(())
}

/// The partitions of member `index` of `members` (Kafka's `range` assignment).
pub(crate) fn range_share(partitions: u32, members: usize, index: usize) -> BTreeSet<u32> {
    if members == 0 || index >= members {
        return BTreeSet::new();
    }
    let (n, m, i) = (partitions as usize, members, index);
    let (each, extra) = (n / m, n % m);
    let start = i * each + i.min(extra);
    let len = each + usize::from(i < extra);
    (start..start + len).map(|p| p as u32).collect()
}

impl Heartbeats {
    async fn run(mut self) {
        if let Err(e) = self.serve().await {
            let _ = self.events.send(Err(e));
        }
        // Leaving: the others take our partitions at once rather than a session later.
        let _ = say(&self.log, &self.topic, &self.member, LEAVE).await;
    }

    /// Reads what the members topic holds now (at least up to `caught_up_to`).
    async fn read(&mut self) -> Result<(), LogError> {
        loop {
            let behind = self.reader.position() < self.caught_up_to;
            let wait = if behind {
                Duration::from_secs(5)
            } else {
                Duration::from_millis(10)
            };
            let records = self.reader.next_batch(1_024, wait).await?;
            if records.is_empty() && !behind {
                return Ok(());
            }
            // Heartbeats read as they come are dated by this host's clock, so a member whose
            // clock is off is not taken for dead; those read at join (older) by their own.
            let now = now_ms();
            for r in records {
                let at = if r.offset < self.caught_up_to {
                    r.timestamp_ms
                } else {
                    now
                };
                let Some((&kind, id)) = r.value.split_first() else {
                    continue;
                };
                let id = String::from_utf8_lossy(id).into_owned();
                match kind {
                    HEARTBEAT => {
                        let seen = self.last_seen.entry(id).or_insert(i64::MIN);
                        *seen = (*seen).max(at);
                    }
                    LEAVE => {
                        self.last_seen.remove(&id);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Says this member is alive and reads what the others said.
    async fn beat(&mut self) -> Result<(), LogError> {
        say(&self.log, &self.topic, &self.member, HEARTBEAT).await?;
        self.read().await
    }

    /// This member's share by the heartbeats read so far.
    fn compute(&self) -> BTreeSet<u32> {
        let now = now_ms();
        let session = self.settings.session.as_millis() as i64;
        let mut live: BTreeSet<&str> = self
            .last_seen
            .iter()
            .filter(|(_, t)| now - **t < session)
            .map(|(id, _)| id.as_str())
            .collect();
        live.insert(self.member.as_str());
        let index = live
            .iter()
            .position(|id| *id == self.member)
            .unwrap_or_default();
        range_share(self.partitions, live.len(), index)
    }

    async fn serve(&mut self) -> Result<(), LogError> {
        say(&self.log, &self.topic, &self.member, HEARTBEAT).await?;
        self.read().await?;
        let mut ticker = tokio::time::interval(self.settings.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut current: Option<BTreeSet<u32>> = None;
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.stop.cancelled() => return Ok(()),
            }
            ticks += 1;
            // A log that fails now and then costs heartbeats, not the membership: silent
            // for a session, this member is dropped by the others and fenced, as it should.
            if let Err(e) = self.beat().await {
                tracing::warn!(error = %e, group = %self.topic, "group heartbeat failed; retrying at the next one");
                continue;
            }
            // Let the others see this member before taking anything: a share computed at
            // once would take partitions their owners have not yet given up.
            if ticks < 2 {
                continue;
            }
            let next = self.compute();
            *self.share.lock().unwrap_or_else(|p| p.into_inner()) = next.clone();
            let held = current.clone().unwrap_or_default();
            let gone: BTreeSet<u32> = held.difference(&next).copied().collect();
            let new: BTreeSet<u32> = next.difference(&held).copied().collect();
            if !gone.is_empty() {
                let (done, released) = tokio::sync::oneshot::channel();
                let revocation = Revocation { done: Some(done) };
                if self
                    .events
                    .send(Ok(GroupEvent::Revoked(gone, revocation)))
                    .is_err()
                {
                    return Ok(());
                }
                // Keep heartbeating while the member stops its work.
                let mut released = std::pin::pin!(released);
                loop {
                    tokio::select! {
                        _ = &mut released => break,
                        _ = ticker.tick() => {
                            if let Err(e) = say(&self.log, &self.topic, &self.member, HEARTBEAT).await {
                                tracing::warn!(error = %e, "group heartbeat failed; retrying at the next one");
                            }
                        }
                        () = self.stop.cancelled() => return Ok(()),
                    }
                }
            }
            if (current.is_none() || !new.is_empty())
                && self.events.send(Ok(GroupEvent::Assigned(new))).is_err()
            {
                return Ok(());
            }
            current = Some(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_shares_cover_every_partition_once_and_differ_by_at_most_one() {
        for partitions in 0..20u32 {
            for members in 1..7usize {
                let shares: Vec<BTreeSet<u32>> = (0..members)
                    .map(|i| range_share(partitions, members, i))
                    .collect();
                let all: Vec<u32> = shares.iter().flatten().copied().collect();
                assert_eq!(all, (0..partitions).collect::<Vec<_>>());
                let sizes: Vec<usize> = shares.iter().map(BTreeSet::len).collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.zip(min).is_none_or(|(a, b)| a - b <= 1), "{sizes:?}");
            }
        }
        assert!(range_share(4, 2, 2).is_empty());
    }
}
