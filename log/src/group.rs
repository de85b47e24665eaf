//! Consumer groups: which partitions of a topic this process owns among its peers.
//!
//! A [`GroupMember`] reports its partitions as [`GroupEvent`]s. Work on a partition starts
//! after it is [`GroupEvent::Assigned`] and must stop before the [`Revocation`] of a
//! [`GroupEvent::Revoked`] is dropped: the group hands the partition to another member only
//! then (or when the wait for it times out), so two members never work on one partition
//! at once unless one of them stalls past that timeout. A member that dies stops
//! heartbeating and loses its partitions once the group's session timeout passes.
//!
//! Topics read together (`probe.readings`, `device.events`, `cook.commands`) are
//! co-partitioned by device id, so a member that owns partition *p* of the topic it joined
//! with owns partition *p* of each of them.

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::LogError;

/// A change of what a member owns.
#[derive(Debug)]
pub enum GroupEvent {
    /// These partitions are this member's now (in addition to any it holds).
    Assigned(BTreeSet<u32>),
    /// These partitions are no longer this member's: stop working on them, then drop the
    /// [`Revocation`].
    Revoked(BTreeSet<u32>, Revocation),
}

/// Held while revoked partitions are still being worked on; dropping it tells the group
/// that they may move.
#[derive(Debug)]
pub struct Revocation {
    done: Option<std::sync::mpsc::SyncSender<()>>,
}

impl Revocation {
    /// A revocation that the receiving end of `done` hears about when it is dropped.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn new(done: std::sync::mpsc::SyncSender<()>) -> Self {
        Self { done: Some(done) }
    }

    /// A revocation nobody waits for.
    pub fn detached() -> Self {
        Self { done: None }
    }
}

impl Drop for Revocation {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.try_send(());
        }
    }
}

/// A member of a consumer group. See the module docs for the protocol.
#[async_trait]
pub trait GroupMember: Send {
    /// The next change of this member's partitions (the first call: its first assignment).
    async fn next_event(&mut self) -> Result<GroupEvent, LogError>;
}

/// The member of a group of one: every partition, for good (the embedded log, which one
/// process owns).
pub(crate) struct SoleMember {
    partitions: Option<BTreeSet<u32>>,
}

impl SoleMember {
    pub(crate) fn new(partitions: u32) -> Self {
        Self {
            partitions: Some((0..partitions).collect()),
        }
    }
}

#[async_trait]
impl GroupMember for SoleMember {
    async fn next_event(&mut self) -> Result<GroupEvent, LogError> {
        match self.partitions.take() {
            Some(all) => Ok(GroupEvent::Assigned(all)),
            None => std::future::pending().await,
        }
    }
}
