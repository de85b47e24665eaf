//! Passwords, hashed with Argon2id.
//!
//! Parameters: 19 MiB of memory, 2 passes, 1 lane (the OWASP recommendation for Argon2id),
//! a 16-byte random salt, a 32-byte hash, stored as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$…`), so stronger parameters later still verify the old
//! hashes. One check costs about 30 ms of one core in a release build: cheap for a person,
//! expensive for a guesser, and the sign-in throttle bounds how often anyone may try.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::AuthError;

/// Memory cost, KiB.
const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over the memory.
const PASSES: u32 = 2;
/// Parallel lanes.
const LANES: u32 = 1;

/// Shortest password accepted.
pub const MIN_LEN: usize = 8;
/// Longest password accepted, bytes (a bound on work per request, not on strength).
pub const MAX_LEN: usize = 1024;

fn argon2() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, Some(32))
        .map_err(|e| AuthError::Storage(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Refuses a password too short or too long to accept.
pub fn check_policy(password: &str) -> Result<(), AuthError> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(AuthError::InvalidArgument(format!(
            "a password needs at least {MIN_LEN} characters"
        )));
    }
    if password.len() > MAX_LEN {
        return Err(AuthError::InvalidArgument(format!(
            "a password may have at most {MAX_LEN} bytes"
        )));
    }
    Ok(())
}

/// The PHC string of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Storage(format!("random salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| AuthError::Storage(format!("salt encoding: {e}")))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Storage(format!("hashing a password: {e}")))
}

/// Whether `password` matches the PHC string `stored`. A malformed `stored` never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        tracing::warn!("a stored password hash is malformed; that user cannot sign in");
        return false;
    };
    // Verify with the parameters the hash names, so older hashes keep working.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash no password matches, checked when the user does not exist so that an unknown
/// name takes as long to refuse as a wrong password.
pub fn decoy() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$3b5FZHpnLNErdIGV8EwpIw0uO4EkNFqdGhbrJIbGAcw"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("smoke-ring-42").expect("hash");
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify("smoke-ring-42", &stored));
        assert!(!verify("smoke-ring-43", &stored));
        assert_ne!(stored, hash("smoke-ring-42").expect("hash"), "salted");
    }

    #[test]
    fn malformed_hashes_and_the_decoy_match_nothing() {
        assert!(!verify("anything", "not a hash"));
        assert!(!verify("", decoy()));
        assert!(
            PasswordHash::new(decoy()).is_ok(),
            "the decoy parses, so it costs a check"
        );
    }

    #[test]
    fn policy_bounds_length() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
        assert!(check_policy(&"x".repeat(MAX_LEN + 1)).is_err());
    }
}
