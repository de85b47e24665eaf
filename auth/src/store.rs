//! Where identities live: users, API tokens, refresh sessions and share links as one
//! [`Identities`] document, kept in an [`IdentityStore`] — the identities file of one data
//! directory ([`IdentityFile`], the embedded default) or the `identities` topic of the log
//! ([`IdentityLog`](crate::identity_log::IdentityLog), which every gateway replica of a
//! distributed deployment follows).
//!
//! The file is `auth.json` in the data directory, shared by the server and the
//! `emberline user` and `emberline token` commands.
//!
//! Every change takes an exclusive lock on `auth.lock` beside it, reads the newest document,
//! applies the change and replaces the file atomically (write, fsync, rename, fsync the
//! directory), so a command run while the server is up never loses a session the server
//! just rotated, and a crash leaves the old document or the new one. Readers keep the
//! parsed document and re-read it when the file's identity (inode, size, modification
//! time) changes. Secrets are never stored: passwords as Argon2id hashes, tokens as SHA-256
//! digests (they are 256-bit random values, so a fast digest is enough).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::AuthError;
use crate::identity::{Role, Scope};

/// The document's format; a newer one is refused rather than misread.
pub(crate) const FORMAT: u32 = 1;

/// A user.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// Sign-in name (unique, compared case-insensitively).
    pub name: String,
    /// The tenant the user belongs to.
    pub tenant: String,
    /// What the user may do there.
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Epoch ms.
    pub created_at_ms: i64,
}

/// An API token, without the token itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiToken {
    /// Short public id, for listing and revoking.
    pub id: String,
    /// What the owner called it ("home assistant").
    pub name: String,
    /// The tenant it reads and writes.
    pub tenant: String,
    /// What it may do.
    pub scope: Scope,
    /// Hex SHA-256 of the token.
    pub digest: String,
    /// Epoch ms.
    pub created_at_ms: i64,
    /// Epoch ms; none: never expires.
    pub expires_at_ms: Option<i64>,
}

/// A live share link of one cook, without its token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShareLink {
    /// Short public id, for listing and revoking.
    pub id: String,
    /// The tenant whose cook it is.
    pub tenant: String,
    /// The cook it shows.
    pub cook_id: String,
    /// The cook's device (qualified id).
    pub device: String,
    /// Hex SHA-256 of the token.
    pub digest: String,
    /// Epoch ms.
    pub created_at_ms: i64,
    /// Epoch ms; none: until revoked.
    pub expires_at_ms: Option<i64>,
}

/// One refresh token of a signed-in session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// Hex SHA-256 of the refresh token.
    pub digest: String,
    /// The user it signs in.
    pub user: String,
    /// Every refresh token descended from one sign-in shares a family; reusing a spent one
    /// ends the family.
    pub family: String,
    /// Epoch ms.
    pub expires_at_ms: i64,
    /// When it was traded for a newer token, epoch ms; none while unspent. A spent token is
    /// kept until it expires, so presenting it again is recognised as reuse.
    #[serde(default)]
    pub spent_at_ms: Option<i64>,
}

/// The whole document.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identities {
    /// Format version.
    #[serde(default)]
    pub format: u32,
    /// Users.
    #[serde(default)]
    pub users: Vec<User>,
    /// API tokens.
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
    /// Refresh sessions.
    #[serde(default)]
    pub sessions: Vec<Session>,
    /// Live share links.
    #[serde(default)]
    pub shares: Vec<ShareLink>,
}

impl Identities {
    /// The user called `name` (case-insensitive).
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(name))
    }

    /// Drops sessions past their expiry (spent ones included).
    pub(crate) fn prune(&mut self, now_ms: i64) {
        self.sessions.retain(|s| s.expires_at_ms > now_ms);
    }
}

/// Where the key's file identity was when it was last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).ok()?;
    Some(Stamp {
        inode: meta.ino(),
        len: meta.len(),
        modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}

/// The identities file of one data directory.
pub struct IdentityFile {
    path: PathBuf,
    lock: PathBuf,
    cached: Mutex<(Option<Stamp>, Arc<Identities>)>,
}

impl IdentityFile {
    /// The file in `dir` (created on the first change).
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("auth.json"),
            lock: dir.join("auth.lock"),
            cached: Mutex::new((None, Arc::new(Identities::default()))),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_file(&self) -> Result<Identities, AuthError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Identities {
                    format: FORMAT,
                    ..Identities::default()
                });
            }
            Err(e) => {
                return Err(AuthError::Storage(format!(
                    "reading {}: {e}",
                    self.path.display()
                )));
            }
        };
        let doc: Identities = serde_json::from_slice(&bytes)
            .map_err(|e| AuthError::Storage(format!("{} is damaged: {e}", self.path.display())))?;
        if doc.format > FORMAT {
            return Err(AuthError::Storage(format!(
                "{} has format {}, newer than this version reads ({FORMAT}); upgrade Emberline",
                self.path.display(),
                doc.format
            )));
        }
        Ok(doc)
    }

    /// The current document, re-read only when the file changed.
    pub fn current(&self) -> Result<Arc<Identities>, AuthError> {
        let now = stamp(&self.path);
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_some() && cached.0 == now {
            return Ok(cached.1.clone());
        }
        let doc = Arc::new(self.read_file()?);
        *cached = (now, doc.clone());
        Ok(doc)
    }

    /// Applies `change` to the newest document under the lock and saves it; returns what
    /// `change` returned. Nothing is written when `change` fails.
    pub fn update<T>(
        &self,
        now_ms: i64,
        change: impl FnOnce(&mut Identities) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let storage = |what: &str, e: std::io::Error| {
            AuthError::Storage(format!("{what} {}: {e}", self.path.display()))
        };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| storage("creating the directory of", e))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| storage("opening the lock of", e))?;
        lock.lock().map_err(|e| storage("locking", e))?;
        let mut doc = self.read_file()?;
        doc.format = FORMAT;
        doc.prune(now_ms);
        let answer = change(&mut doc)?;
        let json = serde_json::to_vec_pretty(&doc)
            .map_err(|e| AuthError::Storage(format!("encoding identities: {e}")))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut file = restricted(&tmp).map_err(|e| storage("writing", e))?;
            file.write_all(&json).map_err(|e| storage("writing", e))?;
            file.sync_all().map_err(|e| storage("syncing", e))?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| storage("replacing", e))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        *cached = (stamp(&self.path), Arc::new(doc));
        drop(lock);
        Ok(answer)
    }
}

/// Where an install's identities live.
pub enum IdentityStore {
    /// The identities file of one data directory (one process and its commands).
    File(IdentityFile),
    /// The log's `identities` topic, shared by every replica that follows it.
    Log(crate::identity_log::IdentityLog),
}

impl IdentityStore {
    /// The identities file in `dir`.
    pub fn file(dir: &Path) -> Self {
        Self::File(IdentityFile::new(dir))
    }

    /// The current document (for the log: as far as this process has read it).
    pub fn current(&self) -> Result<Arc<Identities>, AuthError> {
        match self {
            Self::File(file) => file.current(),
            Self::Log(log) => log.current(),
        }
    }

    /// Applies `change` to the newest document and stores the result; returns what `change`
    /// returned. Nothing is stored when `change` fails. `change` may run more than once (the
    /// log retries it on a newer document when another replica changed it meanwhile), so it
    /// must not have effects outside the document.
    pub async fn update<T>(
        &self,
        now_ms: i64,
        change: impl FnMut(&mut Identities) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        match self {
            Self::File(file) => file.update(now_ms, change),
            Self::Log(log) => log.update(now_ms, change).await,
        }
    }

    /// Whether another process may have changed the identities without this one having read
    /// it yet (the log; the file is read again whenever it changed).
    pub fn may_lag(&self) -> bool {
        matches!(self, Self::Log(_))
    }

    /// Reads every change made up to now (the log: to its current end).
    pub async fn catch_up(&self) -> Result<(), AuthError> {
        match self {
            Self::File(_) => Ok(()),
            Self::Log(log) => log.catch_up().await,
        }
    }

    /// Whether changes made elsewhere are reported by whoever made them (the log: every
    /// writer reports its own), rather than noticed by the server (the file: the commands
    /// write it behind the server's back).
    pub fn writers_report_changes(&self) -> bool {
        matches!(self, Self::Log(_))
    }
}

/// A new file readable by its owner only (it holds password hashes).
fn restricted(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// An owner of the default tenant called `name`, for tests.
#[cfg(test)]
pub(crate) fn test_user(name: &str) -> User {
    User {
        name: name.into(),
        tenant: "default".into(),
        role: Role::Owner,
        password_hash: "x".into(),
        created_at_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::test_user as user;
    use super::*;

    #[test]
    fn a_change_by_one_handle_is_seen_by_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = IdentityFile::new(dir.path());
        let command = IdentityFile::new(dir.path());
        assert!(server.current().expect("read").users.is_empty());
        command
            .update(0, |doc| {
                doc.users.push(user("pat"));
                Ok(())
            })
            .expect("update");
        assert_eq!(server.current().expect("read").users, vec![user("pat")]);
        server
            .update(0, |doc| {
                doc.users.push(user("sam"));
                Ok(())
            })
            .expect("update");
        assert_eq!(
            command.current().expect("read").users.len(),
            2,
            "no lost update"
        );
    }

    #[test]
    fn a_failed_change_writes_nothing_and_expired_sessions_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = IdentityFile::new(dir.path());
        file.update(0, |doc| {
            doc.sessions.push(Session {
                digest: "d".into(),
                user: "pat".into(),
                family: "f".into(),
                expires_at_ms: 100,
                spent_at_ms: None,
            });
            Ok(())
        })
        .expect("update");
        let err = file
            .update(0, |doc| {
                doc.users.push(user("pat"));
                Err::<(), _>(AuthError::InvalidArgument("no".into()))
            })
            .expect_err("refused");
        assert!(matches!(err, AuthError::InvalidArgument(_)));
        assert!(
            IdentityFile::new(dir.path())
                .current()
                .expect("read")
                .users
                .is_empty()
        );
        file.update(200, |_| Ok(())).expect("update");
        assert!(file.current().expect("read").sessions.is_empty(), "expired");
    }

    #[test]
    fn the_file_is_private_and_a_newer_format_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = IdentityFile::new(dir.path());
        file.update(0, |_| Ok(())).expect("update");
        let mode = fs::metadata(file.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(file.path(), br#"{"format": 99}"#).expect("write");
        let err = IdentityFile::new(dir.path()).current().expect_err("newer");
        assert!(err.to_string().contains("upgrade"), "{err}");
        fs::write(file.path(), b"{not json").expect("write");
        let err = IdentityFile::new(dir.path())
            .current()
            .expect_err("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
