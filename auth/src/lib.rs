//! Emberline's identities: who may call the API, and what they may do.
//!
//! This crate owns the users of an install (Argon2id password hashes, roles per tenant),
//! their sessions (signed access tokens, refresh tokens that rotate on use), API tokens for
//! scripts and connectors, live share links of one cook, and the throttle that slows
//! password guessing. It stores them in one file of the data directory, or in the log where
//! several gateway replicas share them, and knows nothing of gRPC: the gateway asks
//! [`Authenticator::verify`] who a bearer token is and checks [`Caller::allows`] against
//! the permission a method needs.
//!
//! * [`identity`] — roles, scopes, permissions, [`Caller`];
//! * [`password`] — Argon2id, with its parameters;
//! * [`store`] — the identities document and where it lives; the file, safe to change
//!   from several processes;
//! * [`identity_log`] — the identities as changes in the log, for replicas;
//! * [`users`] — adding, removing and re-keying users;
//! * [`audit`] — security events and where they go;
//! * [`authenticator`] — sign-in, refresh, sign-out, API tokens, verifying a token;
//! * [`oidc`] — tokens of an OpenID provider, checked against its published keys;
//! * [`throttle`] — the sign-in throttle and its policy.

pub mod audit;
pub mod authenticator;
mod error;
pub mod identity;
pub mod identity_log;
pub mod oidc;
pub mod password;
mod secrets;
pub mod store;
pub mod throttle;
pub mod users;

pub use audit::{AuditEvent, AuditKind, AuditSink};
pub use authenticator::{
    API_TOKEN_PREFIX, AuthSettings, Authenticator, SHARE_TOKEN_PREFIX, SignedIn,
};
pub use error::AuthError;
pub use identity::{Caller, DEFAULT_TENANT, Grant, Permission, Role, Scope};
pub use secrets::signing_key as data_dir_signing_key;
