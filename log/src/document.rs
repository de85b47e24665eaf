//! A document every process agrees on, kept as changes in one partition of the log.
//!
//! [`LogDocument`] follows a topic of one partition (kept forever) whose records are
//! changes to a [`Document`]: what the change puts or removes, and the document version it
//! makes. A record is applied when its version is exactly one more than the version the
//! records before it made, and ignored otherwise. Every process reads the same records in
//! the same order, so every process agrees on the document, and a replay into an empty
//! data directory gives it back — the log is the database.
//!
//! A change is optimistic: a writer reads the partition to its end, applies its change to
//! that document, appends the record with the next version and reads on until its record.
//! When another process appended first, the record is ignored everywhere and the writer
//! runs its change again on the newer document. So two processes making conflicting
//! changes (trading the same refresh token, taking the same name) cannot both win.
//!
//! Records are small (only what differs), and the topic is never trimmed: a process that
//! starts reads it from the start, about a second per few hundred thousand changes.
//!
//! Users: the identities of the gateway replicas, the settings made in the web UI.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{EventLog, LogError, NewRecord};

/// How long a writer or a newly opened document waits for the log to show a record.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often a change is tried again after losing a race before giving up.
const ATTEMPTS: usize = 32;

/// A document kept as changes in the log.
pub trait Document: Clone + Default + PartialEq + Send + Sync + 'static {
    /// One change, as stored.
    type Change: Serialize + DeserializeOwned + Send;
    /// The format this version of the code writes and reads; a record of a newer format
    /// makes the document refuse to answer rather than misread it.
    const FORMAT: u32;
    /// What turns `old` into `new`; `None` when they are the same.
    fn change(old: &Self, new: &Self) -> Option<Self::Change>;
    /// Applies a change made by [`change`](Self::change).
    fn apply(&mut self, change: &Self::Change);
}

/// The log failed, did not answer in time, or holds a record of a newer format.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Why a change was not made.
#[derive(Debug)]
pub enum DocumentError<E> {
    /// The change itself refused (its error, unchanged).
    Refused(E),
    /// See [`Unavailable`].
    Log(Unavailable),
}

/// One record: the change and the version it makes.
#[derive(Serialize, Deserialize)]
struct Record<C> {
    version: u64,
    #[serde(default)]
    format: u32,
    #[serde(flatten)]
    change: C,
}

/// The document as far as this process has read the topic.
struct Followed<D> {
    version: u64,
    doc: Arc<D>,
    /// Offsets of the latest records that were applied (a writer asks whether its own was,
    /// even when later ones were applied since).
    applied: std::collections::VecDeque<u64>,
    /// Why the document cannot be trusted (a record of a newer format).
    refused: Option<String>,
}

struct Shared<D> {
    log: Arc<dyn EventLog>,
    topic: String,
    followed: Mutex<Followed<D>>,
    /// The next offset the follower will read.
    read_to: watch::Sender<u64>,
    /// A new document, for watchers.
    changed: watch::Sender<Arc<D>>,
}

impl<D: Document> Shared<D> {
    fn apply(&self, offset: u64, value: &[u8]) {
        let record: Record<D::Change> = match serde_json::from_slice(value) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(topic = %self.topic, offset, error = %e, "a document record is damaged; ignoring it");
                return;
            }
        };
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        if record.format > D::FORMAT {
            followed.refused = Some(format!(
                "topic {} has a record of format {} at offset {offset}, newer than this version \
                 reads ({}); upgrade Emberline",
                self.topic,
                record.format,
                D::FORMAT
            ));
            return;
        }
        if followed.refused.is_some() || record.version != followed.version + 1 {
            // A writer that lost the race to another: every process ignores it alike.
            return;
        }
        let mut doc = (*followed.doc).clone();
        D::apply(&mut doc, &record.change);
        followed.doc = Arc::new(doc);
        followed.version = record.version;
        if followed.applied.len() == 1_024 {
            followed.applied.pop_front();
        }
        followed.applied.push_back(offset);
        self.changed.send_replace(followed.doc.clone());
    }

    /// Waits until the follower has read past `offset` (exclusive).
    async fn read_past(&self, offset: u64) -> Result<(), String> {
        let mut read = self.read_to.subscribe();
        match tokio::time::timeout(PATIENCE, read.wait_for(|at| *at >= offset)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(format!("the follower of topic {} stopped", self.topic)),
            Err(_) => Err(format!(
                "topic {} did not show offset {offset} within {} s; is the log reachable?",
                self.topic,
                PATIENCE.as_secs()
            )),
        }
    }

    async fn end(&self) -> Result<u64, String> {
        self.log
            .end_offset(&self.topic, 0)
            .await
            .map_err(|e| format!("reading topic {}: {e}", self.topic))
    }
}

/// A [`Document`] followed from, and changed through, one topic of the log.
pub struct LogDocument<D: Document> {
    shared: Arc<Shared<D>>,
    /// One change of this process at a time (they would only race each other).
    writer: tokio::sync::Mutex<()>,
    /// When the last catch-up began: callers that asked before it need not read again.
    caught_up: tokio::sync::Mutex<Option<Instant>>,
    follower: tokio::task::JoinHandle<()>,
}

impl<D: Document> Drop for LogDocument<D> {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl<D: Document> LogDocument<D> {
    /// Follows `topic` of `log` (created with one partition if missing) and returns once
    /// the document is read to the topic's current end.
    pub async fn open(log: Arc<dyn EventLog>, topic: &str) -> Result<Self, Unavailable> {
        let failed = |e: LogError| Unavailable(format!("reading topic {topic}: {e}"));
        log.ensure_topic(topic, 1).await.map_err(failed)?;
        let start = log.start_offset(topic, 0).await.map_err(failed)?;
        let end = log.end_offset(topic, 0).await.map_err(failed)?;
        let (read_to, _) = watch::channel(start);
        let (changed, _) = watch::channel(Arc::new(D::default()));
        let shared = Arc::new(Shared {
            log,
            topic: topic.to_owned(),
            followed: Mutex::new(Followed {
                version: 0,
                doc: Arc::new(D::default()),
                applied: std::collections::VecDeque::new(),
                refused: None,
            }),
            read_to,
            changed,
        });
        let follower = tokio::spawn(follow(shared.clone(), start));
        let document = Self {
            shared,
            writer: tokio::sync::Mutex::new(()),
            caught_up: tokio::sync::Mutex::new(None),
            follower,
        };
        document.shared.read_past(end).await.map_err(Unavailable)?;
        Ok(document)
    }

    /// The document as far as this process has read (a change another process made shows
    /// once the follower reads it, normally within milliseconds); an error names a record
    /// of a newer format.
    pub fn current(&self) -> Result<Arc<D>, Unavailable> {
        let followed = self
            .shared
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &followed.refused {
            Some(why) => Err(Unavailable(why.clone())),
            None => Ok(followed.doc.clone()),
        }
    }

    /// The document version (how many changes made it).
    pub fn version(&self) -> u64 {
        self.shared
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .version
    }

    /// Every new document from now on.
    pub fn watch(&self) -> watch::Receiver<Arc<D>> {
        self.shared.changed.subscribe()
    }

    /// Reads the topic up to its end as of now, so every change made before this call is
    /// in [`current`](Self::current). Callers waiting together share one read.
    pub async fn catch_up(&self) -> Result<(), Unavailable> {
        let asked = Instant::now();
        let mut last = self.caught_up.lock().await;
        if last.is_some_and(|began| began >= asked) {
            return Ok(());
        }
        let began = Instant::now();
        let end = self.shared.end().await.map_err(Unavailable)?;
        self.shared.read_past(end).await.map_err(Unavailable)?;
        *last = Some(began);
        Ok(())
    }

    /// Applies `change` to the newest document and appends the difference; returns what
    /// `change` returned. Nothing is appended when `change` fails or changes nothing.
    /// `change` may run more than once (see the module docs), so it must not have effects
    /// outside the document. `time_ms` stamps the record.
    pub async fn update<T, E>(
        &self,
        time_ms: i64,
        mut change: impl FnMut(&mut D) -> Result<T, E>,
    ) -> Result<T, DocumentError<E>> {
        let _one_at_a_time = self.writer.lock().await;
        let shared = &self.shared;
        let log = |why: String| DocumentError::Log(Unavailable(why));
        for attempt in 0..ATTEMPTS {
            let end = shared.end().await.map_err(log)?;
            shared.read_past(end).await.map_err(log)?;
            let (version, old) = {
                let followed = shared.followed.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(why) = &followed.refused {
                    return Err(log(why.clone()));
                }
                (followed.version, followed.doc.clone())
            };
            let mut new = (*old).clone();
            let answer = change(&mut new).map_err(DocumentError::Refused)?;
            let Some(change) = D::change(&old, &new) else {
                return Ok(answer);
            };
            let value = serde_json::to_vec(&Record {
                version: version + 1,
                format: D::FORMAT,
                change,
            })
            .map_err(|e| log(format!("encoding a change: {e}")))?;
            let at = shared
                .log
                .append_to(
                    &shared.topic,
                    0,
                    vec![NewRecord {
                        key: shared.topic.as_bytes().to_vec(),
                        value,
                        timestamp_ms: time_ms.max(1),
                    }],
                )
                .await
                .map_err(|e| log(format!("writing topic {}: {e}", shared.topic)))?;
            let offset = at
                .first()
                .map(|p| p.offset)
                .ok_or_else(|| log("the log did not say where the change went".into()))?;
            shared.read_past(offset + 1).await.map_err(log)?;
            let applied = shared
                .followed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .applied
                .contains(&offset);
            if applied {
                return Ok(answer);
            }
            tracing::debug!(topic = %shared.topic, attempt, offset, "another process changed the document first; trying again");
        }
        Err(log(format!(
            "topic {} changed under this change {ATTEMPTS} times in a row; try again",
            shared.topic
        )))
    }
}

/// Reads the topic from `from` for as long as the document lives, retrying a failing log.
async fn follow<D: Document>(shared: Arc<Shared<D>>, from: u64) {
    let mut backoff =
        emberline_common::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut position = from;
    loop {
        let mut reader = match shared.log.reader(&shared.topic, 0, position).await {
            Ok(r) => r,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(topic = %shared.topic, error = %e, retry_in = ?delay, "cannot read a document topic");
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
                    tracing::warn!(topic = %shared.topic, error = %e, retry_in = ?delay, "reading a document topic failed");
                    tokio::time::sleep(delay).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::EmbeddedLog;

    /// Names and numbers; a change puts and removes names.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Names(BTreeMap<String, u32>);

    #[derive(Serialize, Deserialize)]
    struct NamesChange {
        #[serde(default)]
        put: BTreeMap<String, u32>,
        #[serde(default)]
        gone: Vec<String>,
    }

    impl Document for Names {
        type Change = NamesChange;
        const FORMAT: u32 = 1;

        fn change(old: &Self, new: &Self) -> Option<NamesChange> {
            let put: BTreeMap<_, _> = new
                .0
                .iter()
                .filter(|(k, v)| old.0.get(*k) != Some(v))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let gone: Vec<_> = old
                .0
                .keys()
                .filter(|k| !new.0.contains_key(*k))
                .cloned()
                .collect();
            (!put.is_empty() || !gone.is_empty()).then_some(NamesChange { put, gone })
        }

        fn apply(&mut self, change: &NamesChange) {
            for k in &change.gone {
                self.0.remove(k);
            }
            self.0.extend(change.put.clone());
        }
    }

    fn embedded() -> (tempfile::TempDir, Arc<dyn EventLog>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(&dir.path().join("log.redb")).expect("log");
        (dir, Arc::new(log))
    }

    async fn append(log: &Arc<dyn EventLog>, value: Vec<u8>) {
        log.append_to(
            "names",
            0,
            vec![NewRecord {
                key: b"names".to_vec(),
                value,
                timestamp_ms: 1,
            }],
        )
        .await
        .expect("append");
    }

    #[tokio::test]
    async fn two_writers_lose_no_change_and_a_late_reader_agrees() {
        let (_dir, log) = embedded();
        let a = Arc::new(
            LogDocument::<Names>::open(log.clone(), "names")
                .await
                .expect("a"),
        );
        let b = Arc::new(
            LogDocument::<Names>::open(log.clone(), "names")
                .await
                .expect("b"),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20u32 {
            let doc = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move {
                doc.update(1, |names| {
                    // Each change reads what the others wrote: a counter no race may lose.
                    let count = names.0.get("count").copied().unwrap_or(0);
                    names.0.insert("count".into(), count + 1);
                    names.0.insert(format!("n{i}"), i);
                    Ok::<_, ()>(())
                })
                .await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task").expect("update");
        }
        a.catch_up().await.expect("catch up");
        b.catch_up().await.expect("catch up");
        let doc = a.current().expect("doc");
        assert_eq!(doc.0.get("count"), Some(&20), "no change lost: {doc:?}");
        assert_eq!(doc.0.len(), 21);
        assert_eq!(b.current().expect("doc"), doc);
        assert_eq!(a.version(), 20, "one version per change");
        let late = LogDocument::<Names>::open(log, "names")
            .await
            .expect("late");
        assert_eq!(late.current().expect("doc"), doc);
    }

    #[tokio::test]
    async fn refused_and_empty_changes_append_nothing_and_stale_or_damaged_records_are_ignored() {
        let (_dir, log) = embedded();
        let doc = LogDocument::<Names>::open(log.clone(), "names")
            .await
            .expect("open");
        let mut watcher = doc.watch();
        doc.update(1, |n| {
            n.0.insert("pat".into(), 1);
            Ok::<_, String>(())
        })
        .await
        .expect("put");
        assert_eq!(
            watcher.borrow_and_update().0.get("pat"),
            Some(&1),
            "watchers see it"
        );
        let end = log.end_offset("names", 0).await.expect("end");
        let refused = doc
            .update(1, |n| {
                n.0.insert("sam".into(), 2);
                Err::<(), _>("no".to_owned())
            })
            .await;
        assert!(matches!(refused, Err(DocumentError::Refused(ref e)) if e == "no"));
        doc.update(1, |_| Ok::<_, String>(()))
            .await
            .expect("nothing");
        assert_eq!(log.end_offset("names", 0).await.expect("end"), end);

        // Made on a stale document (version 1 again): ignored by every reader.
        append(
            &log,
            br#"{"version":1,"format":1,"put":{"mallory":9}}"#.to_vec(),
        )
        .await;
        append(&log, b"{damaged".to_vec()).await;
        doc.update(1, |n| {
            n.0.insert("sam".into(), 2);
            Ok::<_, String>(())
        })
        .await
        .expect("put after");
        let late = LogDocument::<Names>::open(log.clone(), "names")
            .await
            .expect("open");
        let names: Vec<_> = late.current().expect("doc").0.keys().cloned().collect();
        assert_eq!(names, ["pat", "sam"]);
        assert_eq!(late.version(), 2);

        append(&log, br#"{"version":3,"format":2}"#.to_vec()).await;
        let err = LogDocument::<Names>::open(log, "names")
            .await
            .expect("open")
            .current()
            .expect_err("newer format refused");
        assert!(err.0.contains("upgrade"), "{err}");
    }
}
