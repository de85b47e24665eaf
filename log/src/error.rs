//! Errors of the event log.

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The topic does not exist.
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// The partition is outside the topic.
    #[error("partition {partition} does not exist in topic {topic} ({partitions} partitions)")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        partitions: u32,
    },
    /// The embedded store failed (disk full, I/O error, corruption).
    #[error("embedded log storage failed while {action}: {reason}")]
    Storage {
        /// What the log was doing.
        action: &'static str,
        /// The storage error.
        reason: String,
    },
    /// A stored batch could not be decoded: the store is corrupt.
    #[error("corrupt batch in {topic}/{partition} at offset {offset}: {reason}")]
    Corrupt {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// First offset of the batch.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The Kafka client or broker failed.
    #[error("kafka {action} failed: {reason}")]
    Kafka {
        /// What the log was doing.
        action: &'static str,
        /// The client's error.
        reason: String,
    },
    /// A blocking task was cancelled or panicked.
    #[error("log worker task failed: {0}")]
    Task(String),
}
