//! A schema registry whose source of truth is a log topic, so that any number of registry
//! replicas (and restarts of them) agree on every schema id and version without a leader.
//!
//! # Design
//!
//! * **The topic.** Registrations are records of one topic, [`SCHEMAS_TOPIC`] (`_schemas`)
//!   by default, with one partition (created at start if missing). Its offset order is the
//!   one order every replica agrees on.
//! * **The record.** Key: the subject, UTF-8. Value: a JSON object, stable and versioned —
//!
//!   ```json
//!   {"emberline_registry": 1, "subject": "emberline.ProbeReading", "schema": "{\"type\":…}"}
//!   ```
//!
//!   `schema` is the schema's [`canonical_text`] (its full JSON, defaults kept), the text
//!   the embedded registry stores and compares. Ids and versions are *not* in the record:
//!   they follow from the order. A value that is not such an object (say a record of
//!   another tool that shares the topic name) is skipped by every replica alike; a record
//!   of a newer format version (`emberline_registry` > 1) stops the replica, which must be
//!   upgraded rather than skip registrations the others apply. (A Confluent Schema
//!   Registry on the same cluster also defaults to `_schemas`; give one of the two another
//!   topic with [`LogRegistry::open_topic`]: its records would be skipped here, but ours
//!   would confuse it.)
//! * **The materialisation.** Each replica applies the topic's records in offset order,
//!   from offset 0, to an [`EmbeddedRegistry`] in memory ([`EmbeddedRegistry::in_memory`])
//!   by calling its `register`. That `register` is deterministic given the same sequence
//!   of calls (new id = largest id + 1, new version = the subject's last + 1, an identical
//!   text keeps its id, a BACKWARD-incompatible schema is refused and changes nothing), so
//!   every replica derives the same ids and versions, and refuses the same records.
//! * **Registering** catches up to the topic's end, answers from the local state when the
//!   schema already is a version of the subject (no record is appended), refuses with the
//!   embedded registry's own error when it is incompatible with the latest version, and
//!   otherwise appends a record, catches up to (and including) that record and returns
//!   what applying it gave. A registration racing another replica's can still be refused
//!   at that point (the other one came first in the log); every replica refuses it.
//!   Registrations of one replica are serialised (its state lock is held across the
//!   append), which costs nothing at the rate schemas are registered.
//! * **Reading** (latest, subjects, versions, compatibility) first catches up to the
//!   topic's current end, so a replica answers with everything any replica had registered
//!   before the read began (read-your-writes across replicas). A schema found by id needs
//!   no catch-up: an id's schema never changes once assigned.
//! * **Start-up** rebuilds the state from offset 0; the state lives only in memory.
//!
//! # Why the topic is not compacted
//!
//! Ids and versions are derived from the order of the records, so the topic must keep every
//! record in its place, forever. Compaction keeps only the *last* record of each key: keyed
//! by subject, it would delete all but the newest version of each subject; keyed by (subject,
//! schema), a second registration of the same schema (two replicas racing both append one)
//! would survive while the first is deleted, moving that schema behind later ones in the
//! order — a replay would then give different ids to schemas already written into Avro
//! payloads. So the topic uses the delete policy and must have unlimited retention (on
//! Kafka: `retention.ms=-1`, `retention.bytes=-1`; `EventLog::ensure_topic` creates it with
//! the broker's defaults, so set these when deploying). It stays tiny: one record per
//! accepted registration (plus the occasional duplicate of a race). A replica refuses to
//! serve when it finds a gap in the offsets (records lost to retention or compaction)
//! rather than assign ids that differ from the other replicas'.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use async_trait::async_trait;
use emberline_log::{EventLog, LogError, NewRecord, PartitionReader, Record};
use emberline_schemas::{
    EmbeddedRegistry, RegisteredVersion, RegistryError, SchemaRegistry, canonical_text,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::registry_api::RestRegistry;

/// The topic the registry is kept in unless told otherwise.
pub const SCHEMAS_TOPIC: &str = emberline_log::topics::SCHEMAS;

/// The record format version this code writes and applies.
const FORMAT: u32 = 1;

/// The only partition of the topic.
const PARTITION: u32 = 0;

/// How many records one read asks for.
const BATCH: usize = 512;

/// How long one read waits for records before the catch-up deadline is checked again.
const POLL: Duration = Duration::from_millis(500);

/// The value of a registration record (see the module docs).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    /// Format version: [`FORMAT`].
    emberline_registry: u32,
    /// The subject.
    subject: String,
    /// The schema's canonical text.
    schema: String,
}

/// A [`SchemaRegistry`] kept in a single-partition log topic; see the module docs.
///
/// Cloning is cheap and shares the replica's state.
#[derive(Clone)]
pub struct LogRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    log: Arc<dyn EventLog>,
    topic: String,
    /// How long a catch-up may go without reading what it knows is there.
    patience: Duration,
    state: Mutex<State>,
}

/// The replica's materialisation of the topic.
struct State {
    registry: EmbeddedRegistry,
    /// The offset of the next record to apply: everything before it is applied.
    next: u64,
    /// A reader positioned at `next`; dropped after an error and reopened when needed.
    reader: Option<Box<dyn PartitionReader>>,
}

/// What applying one record did.
type Applied = Result<u32, RegistryError>;

impl LogRegistry {
    /// Opens the registry in [`SCHEMAS_TOPIC`] of `log`; see [`LogRegistry::open_topic`].
    pub async fn open(log: Arc<dyn EventLog>) -> Result<Self, RegistryError> {
        Self::open_topic(log, SCHEMAS_TOPIC).await
    }

    /// Opens the registry in `topic` of `log`: creates the topic (one partition) unless it
    /// exists, then applies every record from offset 0.
    pub async fn open_topic(log: Arc<dyn EventLog>, topic: &str) -> Result<Self, RegistryError> {
        let partitions = log
            .ensure_topic(topic, 1)
            .await
            .map_err(log_error(topic, "creating the topic"))?;
        if partitions != 1 {
            tracing::warn!(
                topic,
                partitions,
                "the schemas topic has more than one partition; only partition 0 is used"
            );
        }
        let registry = Self {
            inner: Arc::new(Inner {
                log,
                topic: topic.to_owned(),
                patience: Duration::from_secs(30),
                state: Mutex::new(State {
                    registry: EmbeddedRegistry::in_memory()?,
                    next: 0,
                    reader: None,
                }),
            }),
        };
        let mut state = registry.inner.state.lock().await;
        registry.catch_up_to_end(&mut state).await?;
        tracing::info!(
            topic,
            records = state.next,
            "schema registry rebuilt from the log"
        );
        drop(state);
        Ok(registry)
    }

    /// The topic this registry is kept in.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// Every subject with at least one version, after catching up with the topic.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let mut state = self.inner.state.lock().await;
        self.catch_up_to_end(&mut state).await?;
        state.registry.subjects()
    }

    /// All versions of `subject`, oldest first, after catching up with the topic; empty
    /// when the subject has none.
    pub async fn versions(&self, subject: &str) -> Result<Vec<RegisteredVersion>, RegistryError> {
        let mut state = self.inner.state.lock().await;
        self.catch_up_to_end(&mut state).await?;
        state.registry.versions(subject)
    }

    /// Applies every record up to the topic's current end.
    async fn catch_up_to_end(&self, state: &mut State) -> Result<(), RegistryError> {
        let end = self
            .inner
            .log
            .end_offset(&self.inner.topic, PARTITION)
            .await
            .map_err(log_error(&self.inner.topic, "reading the end offset"))?;
        self.catch_up(state, end, None).await.map(|_| ())
    }

    /// Applies records until every offset below `end` is applied, and returns what applying
    /// the record at `watch` gave, if it was applied now.
    async fn catch_up(
        &self,
        state: &mut State,
        end: u64,
        watch: Option<u64>,
    ) -> Result<Option<Applied>, RegistryError> {
        let topic = self.inner.topic.as_str();
        let mut watched = None;
        let mut deadline = tokio::time::Instant::now() + self.inner.patience;
        while state.next < end {
            // A reader that is not where the state is (a read whose caller went away between
            // reading and applying) is replaced by one that is.
            let reader = match state.reader.take() {
                Some(r) if r.position() == state.next => r,
                _ => self
                    .inner
                    .log
                    .reader(topic, PARTITION, state.next)
                    .await
                    .map_err(log_error(topic, "opening a reader"))?,
            };
            let reader = state.reader.insert(reader);
            let batch = reader
                .next_batch(BATCH, POLL)
                .await
                .map_err(log_error(topic, "reading"));
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    state.reader = None;
                    return Err(e);
                }
            };
            if batch.is_empty() {
                if tokio::time::Instant::now() >= deadline {
                    state.reader = None;
                    return Err(RegistryError::Remote {
                        url: format!("log topic {topic}"),
                        reason: format!(
                            "no record at offset {} though the topic ends at {end}",
                            state.next
                        ),
                        retriable: true,
                    });
                }
                continue;
            }
            deadline = tokio::time::Instant::now() + self.inner.patience;
            for record in batch {
                if record.offset < state.next {
                    continue;
                }
                if record.offset > state.next {
                    state.reader = None;
                    return Err(RegistryError::Remote {
                        url: format!("log topic {topic}"),
                        reason: format!(
                            "offsets {}..{} are missing (deleted by retention or compaction?); \
                             the schema ids they assigned cannot be rebuilt",
                            state.next, record.offset
                        ),
                        retriable: false,
                    });
                }
                let applied = match apply(&state.registry, topic, &record).await {
                    Ok(applied) => applied,
                    Err(e) => {
                        // Not applied: the next catch-up retries this record.
                        state.reader = None;
                        return Err(e);
                    }
                };
                state.next = record.offset + 1;
                if watch == Some(record.offset) {
                    watched = applied;
                }
            }
        }
        Ok(watched)
    }
}

/// Applies one record to `registry`. `Ok(None)`: skipped (not a registration);
/// `Ok(Some(outcome))`: what registering it gave, a refusal included; `Err`: it could not be
/// applied and the replica must not move past it.
async fn apply(
    registry: &EmbeddedRegistry,
    topic: &str,
    record: &Record,
) -> Result<Option<Applied>, RegistryError> {
    let Ok(registration) = serde_json::from_slice::<serde_json::Value>(&record.value) else {
        tracing::warn!(
            topic,
            offset = record.offset,
            "skipped a record that is not JSON"
        );
        return Ok(None);
    };
    match registration
        .get("emberline_registry")
        .and_then(|v| v.as_u64())
    {
        Some(v) if v == u64::from(FORMAT) => {}
        Some(v) => {
            return Err(RegistryError::Remote {
                url: format!("log topic {topic}"),
                reason: format!(
                    "the record at offset {} has format version {v}; this replica reads \
                     version {FORMAT}: upgrade it",
                    record.offset
                ),
                retriable: false,
            });
        }
        None => {
            tracing::warn!(
                topic,
                offset = record.offset,
                "skipped a record of another format"
            );
            return Ok(None);
        }
    }
    let Ok(registration) = serde_json::from_value::<Registration>(registration) else {
        tracing::warn!(
            topic,
            offset = record.offset,
            "skipped a malformed registration"
        );
        return Ok(None);
    };
    let schema = match Schema::parse_str(&registration.schema) {
        Ok(s) => s,
        Err(e) => return Ok(Some(Err(RegistryError::InvalidSchema(e.to_string())))),
    };
    match registry.register(&registration.subject, &schema).await {
        Err(e @ RegistryError::Storage { .. }) => Err(e),
        outcome => {
            if let Err(e) = &outcome {
                tracing::info!(topic, offset = record.offset, error = %e, "registration refused");
            }
            Ok(Some(outcome))
        }
    }
}

/// Maps a log error to a registry error.
fn log_error(topic: &str, action: &'static str) -> impl FnOnce(LogError) -> RegistryError {
    let url = format!("log topic {topic}");
    move |e| {
        let retriable = !matches!(e, LogError::Corrupt { .. });
        RegistryError::Remote {
            url,
            reason: format!("{action}: {e}"),
            retriable,
        }
    }
}

#[async_trait]
impl SchemaRegistry for LogRegistry {
    async fn register(&self, subject: &str, schema: &Schema) -> Result<u32, RegistryError> {
        let text = canonical_text(schema)?;
        let topic = self.inner.topic.as_str();
        let mut state = self.inner.state.lock().await;
        self.catch_up_to_end(&mut state).await?;
        // Already a version (no record), or refused against the latest version.
        if let Some(id) = state.registry.check_registration(subject, schema)? {
            return Ok(id);
        }
        let value = serde_json::to_vec(&Registration {
            emberline_registry: FORMAT,
            subject: subject.to_owned(),
            schema: text,
        })
        .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        let timestamp_ms = emberline_common::clock::now_ms();
        let record = NewRecord {
            key: subject.as_bytes().to_vec(),
            value,
            timestamp_ms,
        };
        let positions = self
            .inner
            .log
            .append_to(topic, PARTITION, vec![record])
            .await
            .map_err(log_error(topic, "appending a registration"))?;
        let Some(offset) = positions.first().map(|p| p.offset) else {
            return Err(RegistryError::Remote {
                url: format!("log topic {topic}"),
                reason: "the append returned no position".into(),
                retriable: true,
            });
        };
        match self.catch_up(&mut state, offset + 1, Some(offset)).await? {
            Some(outcome) => outcome,
            // The record was applied by an earlier catch-up (impossible while the lock is
            // held) or skipped (impossible for a record written here).
            None => Err(RegistryError::Remote {
                url: format!("log topic {topic}"),
                reason: format!("the registration at offset {offset} was not applied"),
                retriable: true,
            }),
        }
    }

    async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let mut state = self.inner.state.lock().await;
        match state.registry.schema_by_id(id).await {
            Err(RegistryError::UnknownId(_)) => {
                self.catch_up_to_end(&mut state).await?;
                state.registry.schema_by_id(id).await
            }
            found => found,
        }
    }

    async fn latest(&self, subject: &str) -> Result<RegisteredVersion, RegistryError> {
        let mut state = self.inner.state.lock().await;
        self.catch_up_to_end(&mut state).await?;
        state.registry.latest(subject).await
    }

    async fn is_compatible(&self, subject: &str, schema: &Schema) -> Result<bool, RegistryError> {
        let mut state = self.inner.state.lock().await;
        self.catch_up_to_end(&mut state).await?;
        state.registry.is_compatible(subject, schema).await
    }
}

#[async_trait]
impl RestRegistry for LogRegistry {
    async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        LogRegistry::subjects(self).await
    }

    async fn versions(&self, subject: &str) -> Result<Vec<RegisteredVersion>, RegistryError> {
        LogRegistry::versions(self, subject).await
    }
}
