//! Typed errors of the codec and the registries.

use emberline_common::{Classify, ErrorKind};

/// Why bytes could not become an event, or an event could not become bytes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are too short to hold the 5-byte Confluent header.
    #[error("payload of {len} bytes is shorter than the 5-byte schema-id header")]
    Truncated {
        /// Length of the payload.
        len: usize,
    },
    /// The first byte is not the Confluent magic byte 0.
    #[error("payload starts with magic byte {found}, expected 0")]
    BadMagic {
        /// The byte found.
        found: u8,
    },
    /// The schema id is not known to the registry.
    #[error("schema id {id} is not known to the registry")]
    UnknownSchemaId {
        /// The id read from the header.
        id: u32,
    },
    /// The id names a schema of another record type than the one asked for.
    #[error("schema id {id} is a {found}, not a {expected}")]
    WrongType {
        /// The id read from the header.
        id: u32,
        /// Full name of the record asked for.
        expected: &'static str,
        /// Full name of the record the id names.
        found: String,
    },
    /// The writer's schema cannot be read as the current schema of the type.
    #[error("schema id {id} cannot be read as {expected}: {reason}")]
    Incompatible {
        /// The id read from the header.
        id: u32,
        /// Full name of the record asked for.
        expected: &'static str,
        /// What the resolution said.
        reason: String,
    },
    /// The Avro body is malformed for the writer's schema.
    #[error("malformed Avro body for {record} (schema id {id}): {reason}")]
    Malformed {
        /// The id read from the header.
        id: u32,
        /// Full name of the record.
        record: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// Bytes remain after the Avro body.
    #[error("{extra} trailing bytes after the Avro body of {record} (schema id {id})")]
    TrailingBytes {
        /// The id read from the header.
        id: u32,
        /// Full name of the record.
        record: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// An event could not be written with its own schema (a value the schema cannot hold).
    #[error("cannot encode {record}: {reason}")]
    Encode {
        /// Full name of the record.
        record: &'static str,
        /// What the encoder said.
        reason: String,
    },
    /// The codec was built without registering this event type.
    #[error("{record} was not registered with this codec")]
    NotRegistered {
        /// Full name of the record.
        record: &'static str,
    },
    /// Looking the schema up failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Why a registry could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A schema text is not valid Avro.
    #[error("invalid Avro schema: {0}")]
    InvalidSchema(String),
    /// The new schema cannot read data written with the subject's latest version.
    #[error("schema for subject {subject} is incompatible with version {version}: {reason}")]
    Incompatible {
        /// The subject.
        subject: String,
        /// The latest version it was checked against.
        version: u32,
        /// What the compatibility check said.
        reason: String,
    },
    /// No schema has this id.
    #[error("no schema with id {0}")]
    UnknownId(u32),
    /// The subject has no versions.
    #[error("subject {0} not found")]
    UnknownSubject(String),
    /// The embedded store failed.
    #[error("embedded registry storage failed while {action}: {source}")]
    Storage {
        /// What the registry was doing.
        action: &'static str,
        /// The storage error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A remote registry could not be reached or answered with an error.
    #[error("schema registry at {url} failed: {reason}")]
    Remote {
        /// The registry's URL.
        url: String,
        /// What failed.
        reason: String,
        /// Whether retrying may help.
        retriable: bool,
    },
}

impl Classify for CodecError {
    fn kind(&self) -> ErrorKind {
        match self {
            CodecError::Truncated { .. }
            | CodecError::BadMagic { .. }
            | CodecError::UnknownSchemaId { .. }
            | CodecError::WrongType { .. }
            | CodecError::Incompatible { .. }
            | CodecError::Malformed { .. }
            | CodecError::TrailingBytes { .. }
            | CodecError::Encode { .. } => ErrorKind::InvalidInput,
            CodecError::NotRegistered { .. } => ErrorKind::Internal,
            CodecError::Registry(e) => e.kind(),
        }
    }
}

impl Classify for RegistryError {
    fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::InvalidSchema(_) => ErrorKind::InvalidInput,
            RegistryError::Incompatible { .. } => ErrorKind::Conflict,
            RegistryError::UnknownId(_) | RegistryError::UnknownSubject(_) => ErrorKind::NotFound,
            RegistryError::Storage { .. } => ErrorKind::Unavailable,
            RegistryError::Remote {
                retriable: true, ..
            } => ErrorKind::Unavailable,
            RegistryError::Remote {
                retriable: false, ..
            } => ErrorKind::Internal,
        }
    }
}
