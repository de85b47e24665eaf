//! The registry kept in the embedded store (a redb database shared with the embedded log).

use std::sync::Arc;

use apache_avro::Schema;
use async_trait::async_trait;
use emberline_common::redb_file::ReopeningDatabase;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{RegisteredVersion, SchemaRegistry, backward_compatible, canonical_text, parse_schema};
use crate::RegistryError;

/// Schema id → schema text.
const SCHEMAS: TableDefinition<u32, &str> = TableDefinition::new("registry.schemas");
/// (subject, version) → schema id.
const VERSIONS: TableDefinition<(&str, u32), u32> = TableDefinition::new("registry.versions");
/// Schema text → schema id, so the same schema keeps one id across subjects.
const BY_TEXT: TableDefinition<&str, u32> = TableDefinition::new("registry.by_text");

/// A schema registry in a redb database.
#[derive(Clone)]
pub struct EmbeddedRegistry {
    /// Taken per operation, so the embedded log sharing the file can reopen it after an
    /// I/O error.
    db: Arc<ReopeningDatabase>,
}

fn storage(action: &'static str) -> impl FnOnce(redb::Error) -> RegistryError {
    move |e| RegistryError::Storage {
        action,
        source: Box::new(e),
    }
}

impl EmbeddedRegistry {
    /// A registry in `db`; its tables are created on first write.
    pub fn new(db: Arc<Database>) -> Self {
        Self::shared(ReopeningDatabase::from_database(db))
    }

    /// A registry in a file shared with a store that reopens it after I/O errors (the
    /// embedded log's `EmbeddedLog::handle`): it takes the current database per operation.
    pub fn shared(db: Arc<ReopeningDatabase>) -> Self {
        Self { db }
    }

    /// A registry in a fresh in-memory redb database: nothing is kept on disk. For
    /// registries materialised from somewhere else (the gateway's log-backed registry
    /// replays its topic into one at start-up).
    pub fn in_memory() -> Result<Self, RegistryError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| RegistryError::Storage {
                action: "creating an in-memory registry",
                source: Box::new(e),
            })?;
        Ok(Self::new(Arc::new(db)))
    }

    /// What [`SchemaRegistry::register`] would do, without doing it: `Some(id)` when
    /// `schema` is already a version of `subject`, `None` when it would become the next
    /// version, or the same [`RegistryError::Incompatible`] (or `InvalidSchema`) that
    /// registering it would return.
    pub fn check_registration(
        &self,
        subject: &str,
        schema: &Schema,
    ) -> Result<Option<u32>, RegistryError> {
        let text = canonical_text(schema)?;
        self.check_against_latest(subject, schema, &text)
    }

    /// Every subject with its versions, in order.
    pub fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let read = || -> Result<Vec<String>, redb::Error> {
            let txn = self.db.current()?.begin_read()?;
            let table = match txn.open_table(VERSIONS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out: Vec<String> = Vec::new();
            for entry in table.iter()? {
                let (key, _) = entry?;
                let subject = key.value().0.to_owned();
                if out.last() != Some(&subject) {
                    out.push(subject);
                }
            }
            Ok(out)
        };
        read().map_err(storage("listing subjects"))
    }

    /// All versions of `subject`, oldest first.
    pub fn versions(&self, subject: &str) -> Result<Vec<RegisteredVersion>, RegistryError> {
        let read = || -> Result<Vec<RegisteredVersion>, redb::Error> {
            let txn = self.db.current()?.begin_read()?;
            let (versions, schemas) = match (txn.open_table(VERSIONS), txn.open_table(SCHEMAS)) {
                (Ok(v), Ok(s)) => (v, s),
                (Err(redb::TableError::TableDoesNotExist(_)), _)
                | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(Vec::new()),
                (Err(e), _) | (_, Err(e)) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for entry in versions.range((subject, 0)..=(subject, u32::MAX))? {
                let (key, id) = entry?;
                let id = id.value();
                let schema = schemas
                    .get(id)?
                    .map(|s| s.value().to_owned())
                    .unwrap_or_default();
                out.push(RegisteredVersion {
                    subject: subject.to_owned(),
                    version: key.value().1,
                    id,
                    schema,
                });
            }
            Ok(out)
        };
        read().map_err(storage("reading versions"))
    }

    fn check_against_latest(
        &self,
        subject: &str,
        schema: &Schema,
        text: &str,
    ) -> Result<Option<u32>, RegistryError> {
        let versions = self.versions(subject)?;
        if let Some(existing) = versions.iter().find(|v| v.schema == text) {
            return Ok(Some(existing.id));
        }
        if let Some(latest) = versions.last() {
            let old = parse_schema(&latest.schema)?;
            backward_compatible(&old, schema).map_err(|reason| RegistryError::Incompatible {
                subject: subject.to_owned(),
                version: latest.version,
                reason,
            })?;
        }
        Ok(None)
    }
}

#[async_trait]
impl SchemaRegistry for EmbeddedRegistry {
    /// Deterministic: the outcome (id, version or refusal) depends only on the registry's
    /// contents and the arguments — a new id is the largest id + 1, a new version the
    /// subject's last + 1, and no clock, randomness or iteration order of a hash map takes
    /// part. The gateway's log-backed registry relies on this: replicas replaying the same
    /// registrations in the same order into empty registries agree on every id and version.
    /// Keep it so.
    async fn register(&self, subject: &str, schema: &Schema) -> Result<u32, RegistryError> {
        let text = canonical_text(schema)?;
        if let Some(id) = self.check_against_latest(subject, schema, &text)? {
            return Ok(id);
        }
        let write = || -> Result<u32, redb::Error> {
            let txn = self.db.current()?.begin_write()?;
            let id = {
                let mut by_text = txn.open_table(BY_TEXT)?;
                let mut schemas = txn.open_table(SCHEMAS)?;
                let mut versions = txn.open_table(VERSIONS)?;
                let existing = by_text.get(text.as_str())?.map(|g| g.value());
                let id = match existing {
                    Some(id) => id,
                    None => {
                        let next = schemas.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                        schemas.insert(next, text.as_str())?;
                        by_text.insert(text.as_str(), next)?;
                        next
                    }
                };
                let version = versions
                    .range((subject, 0)..=(subject, u32::MAX))?
                    .next_back()
                    .transpose()?
                    .map(|(k, _)| k.value().1 + 1)
                    .unwrap_or(1);
                versions.insert((subject, version), id)?;
                id
            };
            txn.commit()?;
            Ok(id)
        };
        let id = write().map_err(storage("registering a schema"))?;
        tracing::info!(subject, id, "registered schema");
        Ok(id)
    }

    async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let read = || -> Result<Option<String>, redb::Error> {
            let txn = self.db.current()?.begin_read()?;
            let table = match txn.open_table(SCHEMAS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(table.get(id)?.map(|s| s.value().to_owned()))
        };
        read()
            .map_err(storage("reading a schema"))?
            .ok_or(RegistryError::UnknownId(id))
    }

    async fn latest(&self, subject: &str) -> Result<RegisteredVersion, RegistryError> {
        self.versions(subject)?
            .pop()
            .ok_or_else(|| RegistryError::UnknownSubject(subject.to_owned()))
    }

    async fn is_compatible(&self, subject: &str, schema: &Schema) -> Result<bool, RegistryError> {
        let text = canonical_text(schema)?;
        match self.check_against_latest(subject, schema, &text) {
            Ok(_) => Ok(true),
            Err(RegistryError::Incompatible { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
