//! Errors of the notification role.

use emberline_common::{Classify, ErrorKind};

/// Why the notifier stopped or a channel is unusable.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The log failed.
    #[error("event log: {0}")]
    Log(#[from] emberline_log::LogError),
    /// The outbox file failed.
    #[error("outbox: {0}")]
    Outbox(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A channel is misconfigured.
    #[error("channel {channel:?}: {reason}")]
    Config {
        /// Channel name.
        channel: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<redb::Error> for NotifyError {
    fn from(e: redb::Error) -> Self {
        NotifyError::Outbox(Box::new(e))
    }
}

impl Classify for NotifyError {
    fn kind(&self) -> ErrorKind {
        match self {
            NotifyError::Log(e) => e.kind(),
            NotifyError::Outbox(_) => ErrorKind::Unavailable,
            NotifyError::Config { .. } => ErrorKind::InvalidInput,
        }
    }
}

/// Why one delivery attempt failed; it is retried.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DeliveryError(pub(crate) String);
