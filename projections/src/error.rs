//! Errors of projection stores.

/// Why a projection read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The embedded store failed (disk full, I/O error).
    #[error("projection storage failed while {action}: {reason}")]
    Storage {
        /// What the store was doing.
        action: &'static str,
        /// The storage error.
        reason: String,
    },
    /// A stored value could not be decoded: the store is corrupt or from a newer version.
    #[error("corrupt projection value in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A blocking task was cancelled or panicked.
    #[error("projection worker task failed: {0}")]
    Task(String),
}
