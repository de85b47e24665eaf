//! Errors of ingest.

use emberline_log::LogError;
use emberline_schemas::CodecError;

/// Why ingest could not deliver events.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An event could not be encoded (a bug or an absurd value).
    #[error("encoding an event failed: {0}")]
    Encode(#[from] CodecError),
    /// The log refused or failed the append.
    #[error("appending to the log failed: {0}")]
    Log(#[from] LogError),
    /// The source was asked to stop before its events were appended.
    #[error("shut down with {pending} events not yet appended")]
    ShutDown {
        /// Events that were not appended.
        pending: usize,
    },
    /// The source's configuration is invalid.
    #[error("invalid configuration of source {source_name}: {reason}")]
    Config {
        /// The source.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}
