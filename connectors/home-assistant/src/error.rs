//! Errors of the connector.

use emberline_common::{Classify, ErrorKind};

/// Why the connector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The settings are wrong; nothing was started.
    #[error("configuration: {0}")]
    Config(String),
    /// TLS could not be set up for the broker.
    #[error("MQTT TLS: {0}")]
    Tls(String),
    /// The gateway URL is unusable.
    #[error("gateway {url}: {reason}")]
    Gateway {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The subscription position could not be kept.
    #[error("keeping the subscription position in {path}: {reason}")]
    State {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
}

impl Classify for ConnectorError {
    fn kind(&self) -> ErrorKind {
        match self {
            ConnectorError::Config(_) | ConnectorError::Tls(_) => ErrorKind::InvalidInput,
            ConnectorError::Gateway { .. } | ConnectorError::State { .. } => ErrorKind::Unavailable,
        }
    }
}
