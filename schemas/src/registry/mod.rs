//! Schema registries: where schema ids come from.
//!
//! [`SchemaRegistry`] is the seam. [`EmbeddedRegistry`] keeps subjects and schemas in the
//! embedded store (and is what the gateway's Confluent-compatible REST API serves);
//! [`ConfluentRegistry`] talks to any Confluent-compatible registry over HTTP through
//! `schema_registry_converter`.

mod confluent;
mod embedded;

pub use confluent::ConfluentRegistry;
pub use embedded::EmbeddedRegistry;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use async_trait::async_trait;

use crate::RegistryError;

/// One version of a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredVersion {
    /// The subject.
    pub subject: String,
    /// Version within the subject, from 1.
    pub version: u32,
    /// Global schema id.
    pub id: u32,
    /// The schema text (JSON, defaults included).
    pub schema: String,
}

/// A registry of Avro schemas by subject and by global id.
///
/// Contract: ids are global and never reused; registering a schema already registered under a
/// subject returns its id without a new version; a new version is refused unless it can read
/// data written with the subject's latest version (BACKWARD compatibility).
#[async_trait]
pub trait SchemaRegistry: Send + Sync {
    /// Registers `schema` under `subject` and returns its global id.
    async fn register(&self, subject: &str, schema: &Schema) -> Result<u32, RegistryError>;
    /// The schema text with this id.
    async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError>;
    /// The latest version of `subject`.
    async fn latest(&self, subject: &str) -> Result<RegisteredVersion, RegistryError>;
    /// Whether `schema` could be registered as the next version of `subject`.
    async fn is_compatible(&self, subject: &str, schema: &Schema) -> Result<bool, RegistryError>;
}

/// The text a schema is stored and compared as: its full JSON form, defaults and docs kept
/// (the Parsing Canonical Form drops defaults, which schema resolution needs).
pub fn canonical_text(schema: &Schema) -> Result<String, RegistryError> {
    serde_json::to_string(schema).map_err(|e| RegistryError::InvalidSchema(e.to_string()))
}

/// Parses a schema text, as a typed error.
pub(crate) fn parse_schema(text: &str) -> Result<Schema, RegistryError> {
    Schema::parse_str(text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))
}

/// BACKWARD compatibility: can `new` read data written with `old`?
pub(crate) fn backward_compatible(old: &Schema, new: &Schema) -> Result<(), String> {
    SchemaCompatibility::can_read(old, new)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
