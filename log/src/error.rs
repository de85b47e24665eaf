//! Errors of the event log.

use std::path::PathBuf;

use emberline_common::{Classify, ErrorKind};

/// The cause of a storage or client failure, kept as the error's source.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// Another process has the embedded log open: one data directory serves one process.
    #[error("the data directory {} is in use by another Emberline process (its log {} is locked)", .path.parent().map(|p| p.display().to_string()).unwrap_or_default(), .path.display())]
    InUse {
        /// The log file.
        path: PathBuf,
    },
    /// The embedded store failed (disk full, I/O error, corruption).
    #[error("embedded log storage failed while {action}: {source}")]
    Storage {
        /// What the log was doing.
        action: &'static str,
        /// The storage error.
        #[source]
        source: Cause,
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
    #[error("kafka {action} failed: {source}")]
    Kafka {
        /// What the log was doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: Cause,
    },
    /// A blocking task was cancelled or panicked.
    #[error("log worker task failed: {0}")]
    Task(String),
}

impl Classify for LogError {
    fn kind(&self) -> ErrorKind {
        match self {
            LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => ErrorKind::NotFound,
            LogError::InUse { .. } => ErrorKind::Conflict,
            LogError::Storage { .. } | LogError::Kafka { .. } => ErrorKind::Unavailable,
            LogError::Corrupt { .. } => ErrorKind::Corrupt,
            LogError::Task(_) => ErrorKind::Internal,
        }
    }
}
