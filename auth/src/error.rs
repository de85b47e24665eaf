//! What can go wrong authenticating, in terms a caller can act on.

use std::time::Duration;

/// An authentication or account-management failure.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that prove nothing: unknown, expired, revoked, or
    /// signed by another key. The text says which, without naming a secret.
    #[error("not signed in: {0}")]
    Unauthenticated(String),
    /// Too many failed sign-ins; try again after the delay.
    #[error("too many failed sign-ins; try again in {} s", retry_after.as_secs().max(1))]
    Throttled {
        /// How long to wait.
        retry_after: Duration,
    },
    /// A request that cannot be carried out as asked (a short password, a taken name).
    #[error("{0}")]
    InvalidArgument(String),
    /// No such user or token (in the caller's tenant).
    #[error("{0}")]
    NotFound(String),
    /// The identities file could not be read or written.
    #[error("identities store: {0}")]
    Storage(String),
}
