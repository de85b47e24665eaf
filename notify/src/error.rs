//! Errors of the notification role.

/// Why the notifier stopped or a channel is unusable.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The log failed.
    #[error("event log: {0}")]
    Log(#[from] emberline_log::LogError),
    /// The outbox file failed.
    #[error("outbox: {0}")]
    Outbox(String),
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
        NotifyError::Outbox(e.to_string())
    }
}

/// Why one delivery attempt failed; it is retried.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DeliveryError(pub(crate) String);
