//! Errors of projection stores.

use std::path::PathBuf;

use emberline_common::{Classify, ErrorKind};

/// Why a projection read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Another process has the embedded store open: one data directory serves one process.
    #[error("the data directory {} is in use by another Emberline process (its projection store {} is locked)", .path.parent().map(|p| p.display().to_string()).unwrap_or_default(), .path.display())]
    InUse {
        /// The store file.
        path: PathBuf,
    },
    /// The embedded store failed (disk full, I/O error).
    #[error("projection storage failed while {action}: {source}")]
    Storage {
        /// What the store was doing.
        action: &'static str,
        /// The storage error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A stored value could not be decoded: the store is corrupt or from a newer version.
    #[error("corrupt projection value in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The store was written by an Emberline whose stored format differs from this one's
    /// (older: a value type gained a field; postcard has no field defaults, so its values
    /// cannot be read). Everything in it is a function of the log: `emberline rebuild`
    /// computes it again in the current format.
    #[error("the projection store {} has format version {found}, this Emberline reads version {expected}; run `emberline rebuild` to compute the projections again from the log", .path.display())]
    OutdatedFormat {
        /// The store file.
        path: PathBuf,
        /// The version found (1: a store from before versions were recorded).
        found: i64,
        /// The version this build reads and writes.
        expected: i64,
    },
    /// The database behind a networked store (ScyllaDB) failed — unreachable, timed out,
    /// refused a statement, answered rows of an unexpected shape — or its settings are
    /// invalid. The driver's error is kept as the source (and shown in the message, as the
    /// other variants show their reasons).
    #[error("projection database failed while {action}: {source}")]
    Database {
        /// What the store was doing.
        action: &'static str,
        /// The driver's (or the settings check's) error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A blocking task was cancelled or panicked.
    #[error("projection worker task failed: {0}")]
    Task(String),
    /// A batch the store cannot take as it is (a bug in its writer).
    #[error("invalid projection batch: {0}")]
    Invalid(String),
    /// Where the store writes through to is unreachable for now; retrying may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// Another process has claimed the partition this batch belongs to: this writer must
    /// stop working on it (retrying would write over the new owner).
    #[error("partition {partition} was claimed by another processor; this one stops working on it")]
    Fenced {
        /// The input partition.
        partition: u32,
    },
}

impl Classify for ProjectionError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProjectionError::InUse { .. } | ProjectionError::Fenced { .. } => ErrorKind::Conflict,
            ProjectionError::Storage { .. }
            | ProjectionError::Database { .. }
            | ProjectionError::Unavailable(_) => ErrorKind::Unavailable,
            ProjectionError::Corrupt { .. } | ProjectionError::OutdatedFormat { .. } => {
                ErrorKind::Corrupt
            }
            ProjectionError::Task(_) | ProjectionError::Invalid(_) => ErrorKind::Internal,
        }
    }
}
