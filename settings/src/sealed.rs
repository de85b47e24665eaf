//! Sealing: what a setting holds in confidence (a webhook URL that is itself a credential,
//! a signing secret, an SMTP password) is stored only encrypted, with ChaCha20-Poly1305
//! under the install's settings key.
//!
//! A sealed value reads `v1.<key id>.<base64 of nonce and ciphertext>`; the key id is the
//! first 8 hex digits of the key's SHA-256, so a value sealed under an older key is opened
//! with that key while it is still listed. The key is `settings.key` (from the
//! configuration, an environment variable or a file, 32+ characters; every process of a
//! distributed deployment needs the same) or, by default, 32 random bytes made on first
//! use in `<data_dir>/settings.key`. To rotate: set the new key, list the old one in
//! `settings.previous_keys`, and every value is sealed under the new key the next time it
//! is saved.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

use crate::SettingsError;

/// One key: its id and its cipher.
struct Sealer {
    id: String,
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    fn new(material: &[u8]) -> Self {
        let key: [u8; 32] = Sha256::digest(material).into();
        let id: String = Sha256::digest(key)
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            id,
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }
}

/// The settings key, and older keys that still open what they sealed.
pub struct SettingsKey {
    current: Sealer,
    previous: Vec<Sealer>,
}

impl std::fmt::Debug for SettingsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SettingsKey({})", self.current.id)
    }
}

impl SettingsKey {
    /// A key from configured text (32 characters or more), with older ones for rotation.
    pub fn from_text(current: &str, previous: &[&str]) -> Result<Self, SettingsError> {
        for k in std::iter::once(&current).chain(previous) {
            if k.len() < 32 {
                return Err(SettingsError::Key(
                    "a settings key needs 32 characters or more (e.g. `openssl rand -hex 32`)"
                        .into(),
                ));
            }
        }
        Ok(Self {
            current: Sealer::new(current.as_bytes()),
            previous: previous.iter().map(|k| Sealer::new(k.as_bytes())).collect(),
        })
    }

    /// The key in `dir/settings.key`, made (32 random bytes, hex, mode 0600) if missing.
    pub fn in_dir(dir: &Path, previous: &[&str]) -> Result<Self, SettingsError> {
        let path = dir.join("settings.key");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut raw = [0u8; 32];
                getrandom::fill(&mut raw)
                    .map_err(|e| SettingsError::Key(format!("no randomness: {e}")))?;
                let text: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                std::fs::create_dir_all(dir)
                    .and_then(|()| write_private(&path, text.as_bytes()))
                    .map_err(|e| SettingsError::Key(format!("writing {}: {e}", path.display())))?;
                text
            }
            Err(e) => {
                return Err(SettingsError::Key(format!(
                    "reading {}: {e}",
                    path.display()
                )));
            }
        };
        Self::from_text(&text, previous)
            .map_err(|e| SettingsError::Key(format!("{}: {e}", path.display())))
    }

    /// `plain`, sealed under the current key.
    pub fn seal(&self, plain: &[u8]) -> Result<String, SettingsError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce)
            .map_err(|e| SettingsError::Key(format!("no randomness: {e}")))?;
        let mut sealed = nonce.to_vec();
        sealed.extend(
            self.current
                .cipher
                .encrypt(Nonce::from_slice(&nonce), plain)
                .map_err(|_| SettingsError::Key("sealing failed".into()))?,
        );
        Ok(format!(
            "v1.{}.{}",
            self.current.id,
            STANDARD.encode(sealed)
        ))
    }

    /// What `sealed` holds, opened with the key that sealed it.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SettingsError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SettingsError::Sealed("not a sealed value".into()));
        };
        let sealer = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|s| s.id == id)
            .ok_or_else(|| {
                SettingsError::Sealed(format!(
                    "sealed under key {id}, which is not the settings key nor one of \
                     settings.previous_keys"
                ))
            })?;
        let raw = STANDARD
            .decode(body)
            .map_err(|e| SettingsError::Sealed(format!("damaged: {e}")))?;
        if raw.len() < 12 {
            return Err(SettingsError::Sealed("damaged: too short".into()));
        }
        let (nonce, ciphertext) = raw.split_at(12);
        sealer
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SettingsError::Sealed("damaged or sealed under another key".into()))
    }

    /// Whether `sealed` was sealed under an older key.
    pub fn is_stale(&self, sealed: &str) -> bool {
        sealed.split('.').nth(1) != Some(self.current.id.as_str())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "an old settings key of 32+ characters";
    const NEW: &str = "a new settings key of 32+ characters!";

    #[test]
    fn sealed_values_open_only_with_their_key_and_rotate() {
        let old = SettingsKey::from_text(OLD, &[]).expect("key");
        let sealed = old
            .seal(b"https://hooks.example/T0/B0/secret")
            .expect("seal");
        assert!(!sealed.contains("hooks.example"), "{sealed}");
        assert_ne!(
            old.seal(b"x").expect("seal"),
            old.seal(b"x").expect("seal"),
            "a nonce each"
        );
        assert_eq!(
            old.open(&sealed).expect("open"),
            b"https://hooks.example/T0/B0/secret"
        );
        let rotated = SettingsKey::from_text(NEW, &[OLD]).expect("key");
        assert_eq!(
            rotated.open(&sealed).expect("old key listed"),
            old.open(&sealed).expect("open")
        );
        assert!(rotated.is_stale(&sealed) && !old.is_stale(&sealed));
        let new_only = SettingsKey::from_text(NEW, &[]).expect("key");
        let err = new_only.open(&sealed).expect_err("old key not listed");
        assert!(err.to_string().contains("previous_keys"), "{err}");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(old.open(&tampered).is_err(), "tampering is detected");
        assert!(SettingsKey::from_text("short", &[]).is_err());
    }

    #[test]
    fn the_default_key_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = SettingsKey::in_dir(dir.path(), &[]).expect("key");
        let sealed = first.seal(b"v").expect("seal");
        let again = SettingsKey::in_dir(dir.path(), &[]).expect("key");
        assert_eq!(again.open(&sealed).expect("same key"), b"v");
        let mode = std::fs::metadata(dir.path().join("settings.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
