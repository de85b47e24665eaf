//! Security events: who signed in or failed to, which tokens and share links were made,
//! used or revoked, which users and roles changed. The authenticator reports them to an
//! [`AuditSink`] (the gateway's appends them to the log's `audit` topic, where owners query
//! them); without one they go to the `emberline::audit` log target only.

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// The first owner was created with the setup code.
    SetupCompleted,
    /// A password sign-in succeeded.
    SignedIn,
    /// A password sign-in failed (wrong password or unknown user).
    SignInFailed,
    /// A sign-in was refused unchecked: too many failures from that address.
    SignInThrottled,
    /// A session was ended.
    SignedOut,
    /// A spent refresh token was presented again; its sessions were ended.
    RefreshReused,
    /// An API token was created.
    TokenCreated,
    /// An API token was revoked.
    TokenRevoked,
    /// A share link was created.
    ShareCreated,
    /// A share link was revoked.
    ShareRevoked,
    /// A share link was opened (its first use by this process).
    ShareOpened,
    /// A user was added.
    UserAdded,
    /// A user was removed.
    UserRemoved,
    /// A user's role changed.
    RoleChanged,
    /// A user's password changed.
    PasswordChanged,
}

/// One security event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, epoch ms.
    pub time_ms: i64,
    /// Whose: the tenant concerned.
    pub tenant: String,
    /// What happened.
    pub kind: AuditKind,
    /// Who did it: a user, a token's name, or `command line` for changes made with
    /// `emberline user`.
    pub actor: String,
    /// What it was done to (a user, a token or share link id), when not the actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The address it came from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Where security events go.
pub trait AuditSink: Send + Sync {
    /// Takes one event; must not block.
    fn record(&self, event: AuditEvent);
}
