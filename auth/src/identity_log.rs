//! Identities in the log: the store every gateway replica of a distributed deployment
//! shares.
//!
//! The `identities` topic (one partition, kept forever) holds every change to the
//! [`Identities`] document as a record: the users, tokens, sessions and share links it puts
//! or removes, and the document version it makes. A record is applied when its version is
//! exactly one more than the version the records before it made, and ignored otherwise.
//! Every replica reads the same records in the same order, so every replica agrees on the
//! document — the log is the database, and a replay into an empty data directory gives the
//! same users and sessions.
//!
//! A change is optimistic: a writer reads the partition to its end, applies its change to
//! that document, appends the record with the next version and reads on until its record.
//! When another replica appended first, the record is ignored everywhere and the writer
//! runs its change again on the newer document. So two replicas trading the same refresh
//! token cannot both win: the second sees the token spent.
//!
//! Records are small (a sign-in adds one session; a refresh puts two), and the topic is
//! never trimmed: a process that starts reads it from the start, which takes about a
//! second per few hundred thousand changes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emberline_log::{EventLog, NewRecord, topics};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::AuthError;
use crate::store::{ApiToken, FORMAT, Identities, Session, ShareLink, User};

/// How long a writer or a newly opened store waits for the log to show a record.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often a change is tried again after losing a race before giving up.
const ATTEMPTS: usize = 32;
/// The key of every record (the topic has one partition).
const KEY: &[u8] = b"identities";

/// One change to the document, as stored in the log.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Change {
    /// The document version this change makes.
    version: u64,
    /// The document format the writer knew.
    #[serde(default)]
    format: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    users: Vec<User>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    users_gone: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tokens: Vec<ApiToken>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tokens_gone: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sessions: Vec<Session>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sessions_gone: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shares: Vec<ShareLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shares_gone: Vec<String>,
}

impl Change {
    /// What turns `old` into `new`.
    fn between(old: &Identities, new: &Identities, version: u64) -> Self {
        let (users, users_gone) = diff(&old.users, &new.users);
        let (tokens, tokens_gone) = diff(&old.tokens, &new.tokens);
        let (sessions, sessions_gone) = diff(&old.sessions, &new.sessions);
        let (shares, shares_gone) = diff(&old.shares, &new.shares);
        Self {
            version,
            format: FORMAT,
            users,
            users_gone,
            tokens,
            tokens_gone,
            sessions,
            sessions_gone,
            shares,
            shares_gone,
        }
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.users_gone.is_empty()
            && self.tokens.is_empty()
            && self.tokens_gone.is_empty()
            && self.sessions.is_empty()
            && self.sessions_gone.is_empty()
            && self.shares.is_empty()
            && self.shares_gone.is_empty()
    }

    fn apply_to(&self, doc: &mut Identities) {
        doc.format = FORMAT;
        patch(&mut doc.users, &self.users, &self.users_gone);
        patch(&mut doc.tokens, &self.tokens, &self.tokens_gone);
        patch(&mut doc.sessions, &self.sessions, &self.sessions_gone);
        patch(&mut doc.shares, &self.shares, &self.shares_gone);
    }
}

/// An entry of the document with the key it is put and removed by.
trait Keyed: Clone + PartialEq {
    fn key(&self) -> &str;
}

impl Keyed for User {
    fn key(&self) -> &str {
        &self.name
    }
}

impl Keyed for ApiToken {
    fn key(&self) -> &str {
        &self.id
    }
}

impl Keyed for Session {
    fn key(&self) -> &str {
        &self.digest
    }
}

impl Keyed for ShareLink {
    fn key(&self) -> &str {
        &self.id
    }
}

/// The entries of `new` that are new or changed, and the keys of those gone.
fn diff<T: Keyed>(old: &[T], new: &[T]) -> (Vec<T>, Vec<String>) {
    let before: HashMap<&str, &T> = old.iter().map(|e| (e.key(), e)).collect();
    let after: HashSet<&str> = new.iter().map(Keyed::key).collect();
    let put = new
        .iter()
        .filter(|e| before.get(e.key()) != Some(e))
        .cloned()
        .collect();
    let gone = old
        .iter()
        .filter(|e| !after.contains(e.key()))
        .map(|e| e.key().to_owned())
        .collect();
    (put, gone)
}

fn patch<T: Keyed>(list: &mut Vec<T>, put: &[T], gone: &[String]) {
    if !gone.is_empty() {
        let gone: HashSet<&str> = gone.iter().map(String::as_str).collect();
        list.retain(|e| !gone.contains(e.key()));
    }
    for entry in put {
        match list.iter_mut().find(|e| e.key() == entry.key()) {
            Some(old) => *old = entry.clone(),
            None => list.push(entry.clone()),
        }
    }
}

/// The document as far as this process has read the topic.
#[derive(Default)]
struct Followed {
    version: u64,
    doc: Arc<Identities>,
    /// Offset of the record that made `version`.
    made_at: Option<u64>,
    /// Why the document cannot be trusted (a record of a newer format).
    refused: Option<String>,
}

struct Shared {
    log: Arc<dyn EventLog>,
    followed: Mutex<Followed>,
    /// The next offset the follower will read.
    read_to: watch::Sender<u64>,
}

impl Shared {
    fn apply(&self, offset: u64, value: &[u8]) {
        let change: Change = match serde_json::from_slice(value) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(offset, error = %e, "an identities record is damaged; ignoring it");
                return;
            }
        };
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        if change.format > FORMAT {
            followed.refused = Some(format!(
                "the identities topic has a record of format {} at offset {offset}, newer than \
                 this version reads ({FORMAT}); upgrade Emberline",
                change.format
            ));
            return;
        }
        if followed.refused.is_some() || change.version != followed.version + 1 {
            // A writer that lost the race to another: every replica ignores it alike.
            return;
        }
        let mut doc = (*followed.doc).clone();
        change.apply_to(&mut doc);
        followed.doc = Arc::new(doc);
        followed.version = change.version;
        followed.made_at = Some(offset);
    }

    /// Waits until the follower has read past `offset` (exclusive).
    async fn read_past(&self, offset: u64) -> Result<(), AuthError> {
        let mut read = self.read_to.subscribe();
        match tokio::time::timeout(PATIENCE, read.wait_for(|at| *at >= offset)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(AuthError::Storage("the identities follower stopped".into())),
            Err(_) => Err(AuthError::Storage(format!(
                "the identities topic did not show offset {offset} within {} s; is the log \
                 reachable?",
                PATIENCE.as_secs()
            ))),
        }
    }
}

/// The identities of a deployment, in its log.
pub struct IdentityLog {
    shared: Arc<Shared>,
    /// One change of this process at a time (they would only race each other).
    writer: tokio::sync::Mutex<()>,
    /// When the last catch-up began: callers that asked before it need not read again.
    caught_up: tokio::sync::Mutex<Option<std::time::Instant>>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for IdentityLog {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl IdentityLog {
    /// Follows the `identities` topic of `log` (created if missing) and returns once the
    /// document is read to the topic's current end.
    pub async fn open(log: Arc<dyn EventLog>) -> Result<Self, AuthError> {
        let storage = |what: &str, e: emberline_log::LogError| {
            AuthError::Storage(format!("{what} the identities topic: {e}"))
        };
        log.ensure_topic(topics::IDENTITIES, 1)
            .await
            .map_err(|e| storage("creating", e))?;
        let start = log
            .start_offset(topics::IDENTITIES, 0)
            .await
            .map_err(|e| storage("reading", e))?;
        let end = log
            .end_offset(topics::IDENTITIES, 0)
            .await
            .map_err(|e| storage("reading", e))?;
        let (read_to, _) = watch::channel(start);
        let shared = Arc::new(Shared {
            log,
            followed: Mutex::default(),
            read_to,
        });
        let follower = tokio::spawn(follow(shared.clone(), start));
        let store = Self {
            shared,
            writer: tokio::sync::Mutex::new(()),
            caught_up: tokio::sync::Mutex::new(None),
            follower,
        };
        store.shared.read_past(end).await?;
        Ok(store)
    }

    /// The document as far as this process has read (a change another replica made shows
    /// once the follower reads it, normally within milliseconds).
    pub fn current(&self) -> Result<Arc<Identities>, AuthError> {
        let followed = self
            .shared
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &followed.refused {
            Some(why) => Err(AuthError::Storage(why.clone())),
            None => Ok(followed.doc.clone()),
        }
    }

    /// Reads the topic up to its end as of now, so every change made before this call is in
    /// [`current`](Self::current). Callers waiting together share one read.
    pub async fn catch_up(&self) -> Result<(), AuthError> {
        let asked = std::time::Instant::now();
        let mut last = self.caught_up.lock().await;
        if last.is_some_and(|began| began >= asked) {
            return Ok(());
        }
        let began = std::time::Instant::now();
        let end = self
            .shared
            .log
            .end_offset(topics::IDENTITIES, 0)
            .await
            .map_err(|e| AuthError::Storage(format!("reading the identities topic: {e}")))?;
        self.shared.read_past(end).await?;
        *last = Some(began);
        Ok(())
    }

    /// The document version (how many changes made it).
    pub fn version(&self) -> u64 {
        self.shared
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .version
    }

    /// Applies `change` to the newest document and appends the result; see the module docs.
    pub async fn update<T>(
        &self,
        now_ms: i64,
        mut change: impl FnMut(&mut Identities) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let _one_at_a_time = self.writer.lock().await;
        let log = &self.shared.log;
        let storage = |e: emberline_log::LogError| {
            AuthError::Storage(format!("writing the identities topic: {e}"))
        };
        for attempt in 0..ATTEMPTS {
            let end = log
                .end_offset(topics::IDENTITIES, 0)
                .await
                .map_err(storage)?;
            self.shared.read_past(end).await?;
            let (version, old) = {
                let followed = self
                    .shared
                    .followed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if let Some(why) = &followed.refused {
                    return Err(AuthError::Storage(why.clone()));
                }
                (followed.version, followed.doc.clone())
            };
            let mut new = (*old).clone();
            new.format = FORMAT;
            new.prune(now_ms);
            let answer = change(&mut new)?;
            let record = Change::between(&old, &new, version + 1);
            if record.is_empty() {
                return Ok(answer);
            }
            let value = serde_json::to_vec(&record)
                .map_err(|e| AuthError::Storage(format!("encoding an identities change: {e}")))?;
            let at = log
                .append_to(
                    topics::IDENTITIES,
                    0,
                    vec![NewRecord {
                        key: KEY.to_vec(),
                        value,
                        timestamp_ms: now_ms.max(1),
                    }],
                )
                .await
                .map_err(storage)?;
            let offset = at.first().map(|p| p.offset).ok_or_else(|| {
                AuthError::Storage("the log did not say where the change went".into())
            })?;
            self.shared.read_past(offset + 1).await?;
            let made_at = self
                .shared
                .followed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .made_at;
            if made_at == Some(offset) {
                return Ok(answer);
            }
            tracing::debug!(
                attempt,
                offset,
                "another replica changed the identities first; trying again"
            );
        }
        Err(AuthError::Storage(format!(
            "the identities changed under this change {ATTEMPTS} times in a row; try again"
        )))
    }
}

/// Reads the topic from `from` for as long as the store lives, retrying a failing log.
async fn follow(shared: Arc<Shared>, from: u64) {
    let mut backoff =
        emberline_common::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut position = from;
    loop {
        let mut reader = match shared.log.reader(topics::IDENTITIES, 0, position).await {
            Ok(r) => r,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot read the identities topic");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        loop {
            match reader.next_batch(1_024, Duration::from_secs(1)).await {
                Ok(batch) => {
                    backoff.reset();
                    for record in &batch {
                        shared.apply(record.offset, &record.value);
                    }
                    position = reader.position();
                    shared.read_to.send_replace(position);
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "reading the identities topic failed");
                    tokio::time::sleep(delay).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Role, Scope};

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            tenant: "default".into(),
            role: Role::Owner,
            password_hash: "x".into(),
            created_at_ms: 0,
        }
    }

    fn token(id: &str) -> ApiToken {
        ApiToken {
            id: id.into(),
            name: id.into(),
            tenant: "default".into(),
            scope: Scope::Read,
            digest: format!("digest of {id}"),
            created_at_ms: 0,
            expires_at_ms: None,
        }
    }

    fn embedded() -> (tempfile::TempDir, Arc<dyn EventLog>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = emberline_log::EmbeddedLog::open(&dir.path().join("log.redb")).expect("log");
        (dir, Arc::new(log))
    }

    #[test]
    fn a_change_carries_only_what_differs_and_rebuilds_the_document() {
        let old = Identities {
            users: vec![user("pat"), user("sam")],
            tokens: vec![token("a")],
            ..Identities::default()
        };
        let mut new = old.clone();
        new.users[1].role = Role::Viewer;
        new.users.retain(|u| u.name != "pat");
        new.tokens.push(token("b"));
        let change = Change::between(&old, &new, 7);
        assert_eq!(change.users, vec![new.users[0].clone()], "only sam changed");
        assert_eq!(change.users_gone, vec!["pat".to_owned()]);
        assert_eq!(change.tokens, vec![token("b")]);
        assert!(change.tokens_gone.is_empty() && change.sessions.is_empty());
        let mut rebuilt = old.clone();
        change.apply_to(&mut rebuilt);
        rebuilt.format = new.format;
        assert_eq!(rebuilt, new);
        assert!(Change::between(&new, &new, 8).is_empty());
    }

    #[tokio::test]
    async fn two_replicas_lose_no_change_and_a_late_one_reads_the_same_document() {
        let (_dir, log) = embedded();
        let a = Arc::new(IdentityLog::open(log.clone()).await.expect("open a"));
        let b = Arc::new(IdentityLog::open(log.clone()).await.expect("open b"));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move {
                store
                    .update(0, |doc| {
                        doc.tokens.push(token(&format!("t{i}")));
                        Ok(())
                    })
                    .await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task").expect("update");
        }
        // Each replica saw its own changes at once; it sees the other's once it has read
        // them, which the next change of its own waits for.
        b.update(0, |_| Ok(())).await.expect("catch up");
        a.update(0, |_| Ok(())).await.expect("catch up");
        let ids = |store: &IdentityLog| {
            let mut ids: Vec<String> = store
                .current()
                .expect("doc")
                .tokens
                .iter()
                .map(|t| t.id.clone())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&a).len(), 20, "no change lost: {:?}", ids(&a));
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(a.version(), 20, "one version per change");
        let late = IdentityLog::open(log).await.expect("open late");
        assert_eq!(late.current().expect("doc"), a.current().expect("doc"));
    }

    #[tokio::test]
    async fn a_refused_change_writes_nothing_and_the_loser_of_a_race_sees_the_winner() {
        let (_dir, log) = embedded();
        let a = IdentityLog::open(log.clone()).await.expect("open a");
        let b = IdentityLog::open(log.clone()).await.expect("open b");
        a.update(0, |doc| {
            doc.users.push(user("pat"));
            Ok(())
        })
        .await
        .expect("add");
        let end = log.end_offset(topics::IDENTITIES, 0).await.expect("end");
        let err = b
            .update(0, |doc| {
                if doc.user("pat").is_some() {
                    return Err(AuthError::InvalidArgument("taken".into()));
                }
                doc.users.push(user("pat"));
                Ok(())
            })
            .await
            .expect_err("b sees pat before deciding");
        assert!(matches!(err, AuthError::InvalidArgument(_)));
        assert_eq!(
            log.end_offset(topics::IDENTITIES, 0).await.expect("end"),
            end,
            "nothing appended"
        );

        // A record made on a stale document (version 1 again) is ignored by every reader.
        let stale = Change {
            version: 1,
            format: FORMAT,
            users: vec![user("mallory")],
            ..Change::default()
        };
        log.append_to(
            topics::IDENTITIES,
            0,
            vec![NewRecord {
                key: KEY.to_vec(),
                value: serde_json::to_vec(&stale).expect("json"),
                timestamp_ms: 1,
            }],
        )
        .await
        .expect("append");
        log.append_to(
            topics::IDENTITIES,
            0,
            vec![NewRecord {
                key: KEY.to_vec(),
                value: b"{damaged".to_vec(),
                timestamp_ms: 1,
            }],
        )
        .await
        .expect("append");
        a.update(0, |doc| {
            doc.users.push(user("sam"));
            Ok(())
        })
        .await
        .expect("add after");
        let late = IdentityLog::open(log.clone()).await.expect("open");
        let names: Vec<String> = late
            .current()
            .expect("doc")
            .users
            .iter()
            .map(|u| u.name.clone())
            .collect();
        assert_eq!(names, vec!["pat".to_owned(), "sam".to_owned()]);
        assert_eq!(late.version(), 2);

        let newer = Change {
            version: 3,
            format: FORMAT + 1,
            ..Change::default()
        };
        log.append_to(
            topics::IDENTITIES,
            0,
            vec![NewRecord {
                key: KEY.to_vec(),
                value: serde_json::to_vec(&newer).expect("json"),
                timestamp_ms: 1,
            }],
        )
        .await
        .expect("append");
        let err = IdentityLog::open(log)
            .await
            .expect("open")
            .current()
            .expect_err("newer format refused");
        assert!(err.to_string().contains("upgrade"), "{err}");
    }
}
