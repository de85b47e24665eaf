//! The event log seam: [`EventLog`] and its two backends.
//!
//! Everything downstream of ingest is a pure function of this log, so its contract is the
//! foundation of Emberline's guarantees:
//!
//! * **Topics and partitions.** A topic has a fixed number of partitions, created up front with
//!   [`EventLog::ensure_topic`]. A record goes to the partition chosen by [`partition_for`] from
//!   its key (Kafka's murmur2 partitioner), so every event of one device lands in one partition
//!   on either backend.
//! * **Order and offsets.** Within a partition, records keep append order and get dense,
//!   increasing offsets from 0. [`EventLog::append`] returns each record's position once the
//!   batch is durable (embedded: fsynced; Kafka: acknowledged by all in-sync replicas through
//!   an idempotent producer).
//! * **Reading and tailing.** A [`PartitionReader`] reads a partition from any offset and, given
//!   a wait, tails it: it returns as soon as new records are appended.
//! * **Retention.** Records older than the retention are removed from the start of a partition
//!   (embedded: [`EmbeddedLog::run_retention`]; Kafka: the topic's `retention.ms`), except in
//!   [`topics::KEEP_FOREVER`]. [`EventLog::start_offset`] is the first offset still stored; a
//!   reader asked for an offset below it returns records from the start offset on (offsets
//!   skip forward, with a warning), never an error, on both backends.
//! * **Groups.** [`join_group`] shares a topic's partitions among the processes of a group,
//!   moving them when a member joins, leaves or dies — through heartbeats in the log itself.
//! * **Positions.** A consumer's positions (the next offset to read, per partition) are stored
//!   with [`EventLog::store_positions`] and survive a restart. Callers store a position only
//!   after the effects of everything before it are durable; effects are idempotent, so a
//!   crash re-processes and never loses. No Kafka transactions are needed.
//!
//! Backends: [`EmbeddedLog`] (redb on local disk, the default) and [`KafkaLog`] (rdkafka).
//! With the `testsuite` feature, `conformance` holds the generic suite both must pass.
//!
//! This crate knows nothing of what records mean: keys and values are bytes. The one
//! exception, [`document`], keeps a caller's document type as JSON changes in a topic that
//! every process follows (identities, settings).

pub mod document;
mod embedded;
mod error;
mod group;
#[cfg(feature = "kafka")]
mod kafka;
mod metrics;
mod partitioner;
mod record;

#[cfg(any(test, feature = "testsuite"))]
pub mod conformance;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

pub use embedded::{EmbeddedLog, PartitionStats, stats_read_only};
pub use error::{Cause, LogError};
pub use group::{GroupEvent, GroupMember, GroupSettings, Revocation, join_group};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaConfig, KafkaLog};
pub use partitioner::partition_for;
pub use record::{NewRecord, Position, Record};

/// The standard topics.
pub mod topics {
    /// Probe readings from ingest adapters.
    pub const PROBE_READINGS: &str = "probe.readings";
    /// Device status and registration events.
    pub const DEVICE_EVENTS: &str = "device.events";
    /// Cook commands.
    pub const COOK_COMMANDS: &str = "cook.commands";
    /// Rolling trends derived from readings.
    pub const DERIVED_TRENDS: &str = "derived.trends";
    /// Predictions derived by the cook processor.
    pub const DERIVED_PREDICTIONS: &str = "derived.predictions";
    /// Alerts raised and cleared by the cook processor.
    pub const ALERTS: &str = "alerts";
    /// Rejected input with the reason.
    pub const DEAD_LETTER: &str = "dead-letter";
    /// Every projection batch the processors write, by input partition (distributed
    /// deployments: state handoff and the gateways' read models). Kept forever.
    pub const PROJECTIONS_CHANGELOG: &str = "projections.changelog";
    /// Security events (sign-ins, tokens, share links, users), JSON, keyed by tenant.
    pub const AUDIT: &str = "audit";
    /// Every standard topic.
    pub const ALL: [&str; 9] = [
        PROBE_READINGS,
        DEVICE_EVENTS,
        COOK_COMMANDS,
        DERIVED_TRENDS,
        DERIVED_PREDICTIONS,
        ALERTS,
        DEAD_LETTER,
        PROJECTIONS_CHANGELOG,
        AUDIT,
    ];
    /// Schema registrations of the log-backed registry, in the order that assigns ids.
    pub const SCHEMAS: &str = "_schemas";
    /// Changes to users, API tokens, sessions and share links, JSON, one partition
    /// (distributed deployments: what every gateway replica signs callers in with).
    pub const IDENTITIES: &str = "identities";
    /// Settings made while running (notification channels), JSON changes, sealed where
    /// confidential, one partition.
    pub const SETTINGS: &str = "settings";
    /// Topics whose records must never expire (created with `retention.ms = -1`).
    pub const KEEP_FOREVER: [&str; 4] = [PROJECTIONS_CHANGELOG, SCHEMAS, IDENTITIES, SETTINGS];
}

/// An append-only, partitioned log of byte records. See the crate docs for the contract.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Creates `topic` with `partitions` partitions unless it exists; returns its actual count.
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError>;

    /// Number of partitions of `topic`.
    async fn partitions(&self, topic: &str) -> Result<u32, LogError>;

    /// Appends `records` (each to the partition of its key) and returns their positions, in
    /// the same order, once they are durable.
    async fn append(&self, topic: &str, records: Vec<NewRecord>)
    -> Result<Vec<Position>, LogError>;

    /// Appends `records` to one given partition, in order.
    async fn append_to(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Position>, LogError>;

    /// A reader of `partition` starting at offset `from`.
    async fn reader(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Box<dyn PartitionReader>, LogError>;

    /// The offset the next append to `partition` will get (the high watermark).
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError>;

    /// The first offset of `partition` still stored (the low watermark): 0 until retention
    /// or [`delete_before`](Self::delete_before) removed records.
    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        let _ = (topic, partition);
        Ok(0)
    }

    /// Removes records of `partition` below `offset` (at most; the embedded log removes
    /// whole batches, so the start may stay lower) and returns the new start offset.
    async fn delete_before(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<u64, LogError> {
        let _ = (topic, partition, offset);
        Err(LogError::Storage {
            action: "deleting records",
            source: "this log cannot delete records".into(),
        })
    }

    /// The offsets of `partition` a reader must read to see every record whose timestamp is
    /// in `[from_ms, to_ms)`: ascending, disjoint ranges within the partition's start and end
    /// offsets, from the log's own time index. A record outside them has a timestamp outside
    /// the range (records inside them may too: the index is coarse). `None` when the log
    /// keeps no such index: the whole partition must be read.
    async fn time_ranges(
        &self,
        topic: &str,
        partition: u32,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<Vec<std::ops::Range<u64>>>, LogError> {
        let _ = (topic, partition, from_ms, to_ms);
        Ok(None)
    }

    /// Durably stores `consumer`'s positions (next offset to read) for partitions of `topic`.
    async fn store_positions(
        &self,
        consumer: &str,
        topic: &str,
        positions: &BTreeMap<u32, u64>,
    ) -> Result<(), LogError>;

    /// `consumer`'s stored positions for `topic`; partitions never stored are absent.
    async fn load_positions(
        &self,
        consumer: &str,
        topic: &str,
    ) -> Result<BTreeMap<u32, u64>, LogError>;
}

/// Reads one partition forward from an offset.
#[async_trait]
pub trait PartitionReader: Send {
    /// Up to `max` records from the current position. Waits up to `wait` for the first
    /// record when none is ready; returns an empty batch when none came in time.
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError>;

    /// The offset of the next record this reader will return.
    fn position(&self) -> u64;
}
/// Logs that a reader asked for `from` but the partition now starts at `start`: the records
/// between expired (retention) and are skipped.
pub(crate) fn warn_expired(topic: &str, partition: u32, from: u64, start: u64) {
    tracing::warn!(
        topic,
        partition,
        from,
        start,
        skipped = start - from,
        "records below the partition's start have expired (log retention); reading on from the start"
    );
}

/// The redb database type, for stores that share the embedded log's file.
pub use redb::Database as RedbDatabase;
