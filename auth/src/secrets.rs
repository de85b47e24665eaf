//! Random tokens and their digests, and the signing key of access tokens.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::AuthError;

/// `prefix` followed by 256 random bits, URL-safe. The prefix says what a leaked string is
/// (`emr_` a refresh token, `emt_` an API token), as secret scanners expect.
pub(crate) fn random_token(prefix: &str) -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Storage(format!("randomness: {e}")))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A short random id (for families and token ids), 64 bits, hex.
pub(crate) fn random_id() -> Result<String, AuthError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Storage(format!("randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Hex SHA-256 of a token: what the identities file keeps instead of the token.
pub(crate) fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The HMAC key access tokens are signed with: `auth.key` in the data directory, 32 random
/// bytes made on first use and readable by the owner only. Deleting it signs every
/// session out (their access tokens stop verifying; refresh tokens still work).
pub fn signing_key(dir: &Path) -> Result<Vec<u8>, AuthError> {
    let path = dir.join("auth.key");
    let storage = |what: &str, e: std::io::Error| {
        AuthError::Storage(format!("{what} {}: {e}", path.display()))
    };
    match fs::read(&path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => {
            return Err(AuthError::Storage(format!(
                "{} is shorter than 32 bytes; delete it to make a new one (signs everyone out)",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage("reading", e)),
    }
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key).map_err(|e| AuthError::Storage(format!("randomness: {e}")))?;
    fs::create_dir_all(dir).map_err(|e| storage("creating the directory of", e))?;
    use std::os::unix::fs::OpenOptionsExt;
    let created = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut file) => {
            file.write_all(&key).map_err(|e| storage("writing", e))?;
            file.sync_all().map_err(|e| storage("syncing", e))?;
            Ok(key)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::read(&path).map_err(|e| storage("reading", e))
        }
        Err(e) => Err(storage("creating", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_prefixed_and_digests_fixed_length() {
        let a = random_token("emt_").expect("token");
        let b = random_token("emt_").expect("token");
        assert!(a.starts_with("emt_") && a.len() == 4 + 43, "{a}");
        assert_ne!(a, b);
        assert_eq!(digest(&a).len(), 64);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn the_signing_key_is_made_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = signing_key(dir.path()).expect("key");
        assert_eq!(signing_key(dir.path()).expect("key"), first);
        fs::write(dir.path().join("auth.key"), b"short").expect("write");
        assert!(signing_key(dir.path()).is_err());
    }
}
