//! Identities in the log: the store every gateway replica of a distributed deployment
//! shares.
//!
//! The `identities` topic is a [`LogDocument`] of [`Identities`]: each record is a change
//! (the users, tokens, sessions and share links it puts or removes, by key) and the
//! document version it makes. A change counts only if no other replica appended that
//! version first; the loser runs its change again on the newer document. So every replica
//! agrees, a replay into an empty data directory gives the same users and sessions, and two
//! replicas trading the same refresh token cannot both win: the second sees it spent.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use emberline_log::document::{Document, DocumentError, LogDocument};
use emberline_log::{EventLog, topics};
use serde::{Deserialize, Serialize};

use crate::AuthError;
use crate::store::{ApiToken, FORMAT, Identities, Session, ShareLink, User};

/// One change to the document, as stored in the log.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Change {
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
}

impl Document for Identities {
    type Change = Change;
    const FORMAT: u32 = FORMAT;

    fn change(old: &Self, new: &Self) -> Option<Change> {
        let (users, users_gone) = diff(&old.users, &new.users);
        let (tokens, tokens_gone) = diff(&old.tokens, &new.tokens);
        let (sessions, sessions_gone) = diff(&old.sessions, &new.sessions);
        let (shares, shares_gone) = diff(&old.shares, &new.shares);
        let change = Change {
            users,
            users_gone,
            tokens,
            tokens_gone,
            sessions,
            sessions_gone,
            shares,
            shares_gone,
        };
        (!change.is_empty()).then_some(change)
    }

    fn apply(&mut self, change: &Change) {
        self.format = FORMAT;
        patch(&mut self.users, &change.users, &change.users_gone);
        patch(&mut self.tokens, &change.tokens, &change.tokens_gone);
        patch(&mut self.sessions, &change.sessions, &change.sessions_gone);
        patch(&mut self.shares, &change.shares, &change.shares_gone);
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

/// The identities of a deployment, in its log.
pub struct IdentityLog(LogDocument<Identities>);

impl IdentityLog {
    /// Follows the `identities` topic of `log` (created if missing) and returns once the
    /// document is read to the topic's current end.
    pub async fn open(log: Arc<dyn EventLog>) -> Result<Self, AuthError> {
        LogDocument::open(log, topics::IDENTITIES)
            .await
            .map(Self)
            .map_err(|e| AuthError::Storage(e.to_string()))
    }

    /// The document as far as this process has read (a change another replica made shows
    /// once the follower reads it, normally within milliseconds).
    pub fn current(&self) -> Result<Arc<Identities>, AuthError> {
        self.0
            .current()
            .map_err(|e| AuthError::Storage(e.to_string()))
    }

    /// The document version (how many changes made it).
    pub fn version(&self) -> u64 {
        self.0.version()
    }

    /// Reads the topic up to its end as of now; see [`LogDocument::catch_up`].
    pub async fn catch_up(&self) -> Result<(), AuthError> {
        self.0
            .catch_up()
            .await
            .map_err(|e| AuthError::Storage(e.to_string()))
    }

    /// Applies `change` to the newest document (expired sessions pruned) and appends the
    /// difference; see [`LogDocument::update`].
    pub async fn update<T>(
        &self,
        now_ms: i64,
        mut change: impl FnMut(&mut Identities) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        self.0
            .update(now_ms, |doc| {
                doc.format = FORMAT;
                doc.prune(now_ms);
                change(doc)
            })
            .await
            .map_err(|e| match e {
                DocumentError::Refused(e) => e,
                DocumentError::Log(e) => AuthError::Storage(e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Role, Scope};
    use crate::store::test_user as user;

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

    #[test]
    fn a_change_carries_only_what_differs_and_rebuilds_the_document() {
        let old = Identities {
            format: FORMAT,
            users: vec![user("pat"), user("sam")],
            tokens: vec![token("a")],
            ..Identities::default()
        };
        let mut new = old.clone();
        new.users[1].role = Role::Viewer;
        new.users.retain(|u| u.name != "pat");
        new.tokens.push(token("b"));
        let change = Identities::change(&old, &new).expect("a change");
        assert_eq!(change.users, vec![new.users[0].clone()], "only sam changed");
        assert_eq!(change.users_gone, vec!["pat".to_owned()]);
        assert_eq!(change.tokens, vec![token("b")]);
        assert!(change.tokens_gone.is_empty() && change.sessions.is_empty());
        let mut rebuilt = old.clone();
        rebuilt.apply(&change);
        assert_eq!(rebuilt, new);
        assert!(Identities::change(&new, &new).is_none());
    }

    #[tokio::test]
    async fn two_replicas_lose_no_change_and_a_late_one_reads_the_same_document() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log: Arc<dyn EventLog> =
            Arc::new(emberline_log::EmbeddedLog::open(&dir.path().join("log.redb")).expect("log"));
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
        a.catch_up().await.expect("catch up");
        b.catch_up().await.expect("catch up");
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
        let late = IdentityLog::open(log).await.expect("open late");
        assert_eq!(late.current().expect("doc"), a.current().expect("doc"));
    }
}
