//! Emberline's identities: who may call the API, and what they may do.
//!
//! This crate owns the users of an install (Argon2id password hashes, roles per tenant),
//! their sessions (signed access tokens, refresh tokens that rotate on use), API tokens for
//! scripts and connectors, live share links of one cook, and the throttle that slows password guessing. It stores them in
//! one file of the data directory and knows nothing of gRPC: the gateway asks
//! [`Authenticator::verify`] who a bearer token is and checks [`Caller::allows`] against
//! the permission a method needs.
//!
//! * [`identity`] — roles, scopes, permissions, [`Caller`];
//! * [`password`] — Argon2id, with its parameters;
//! * [`store`] — the identities file, safe to change from several processes;
//! * [`users`] — adding, removing and re-keying users;
//! * [`authenticator`] — sign-in, refresh, sign-out, API tokens, verifying a token;
//! * [`throttle`] — the sign-in throttle and its policy.

pub mod authenticator;
mod error;
pub mod identity;
pub mod password;
mod secrets;
pub mod store;
pub mod throttle;
pub mod users;

pub use authenticator::{
    API_TOKEN_PREFIX, AuthSettings, Authenticator, SHARE_TOKEN_PREFIX, SignedIn,
};
pub use error::AuthError;
pub use identity::{Caller, DEFAULT_TENANT, Grant, Permission, Role, Scope};
