//! Events to Confluent-framed Avro bytes and back.
//!
//! Writing uses the event's current schema through apache-avro's schema-aware serializer
//! (no intermediate `Value`), or, for the events on the hot path, a body written by hand
//! (`body.rs`). Reading takes the same direct paths when the payload was written with the
//! current schema, and otherwise resolves the writer's schema (fetched from the
//! registry by id, then cached) into the current one, so data written by older versions stays
//! readable.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;

use crate::events::{Event, EventKind};
use crate::registry::parse_schema;
use crate::{CodecError, SchemaRegistry, wire};

/// Upper bound on what one decoded value may allocate: a garbage length prefix must give an
/// error, not a gigabyte allocation. Events are small; 4 MiB leaves ample room.
const MAX_ALLOCATION_BYTES: usize = 4 << 20;

/// A writer schema seen on the wire.
struct WriterSchema {
    full_name: String,
    schema: &'static Schema,
}

/// Encodes and decodes events in the Confluent wire format, with ids from a registry.
pub struct EventCodec {
    registry: Arc<dyn SchemaRegistry>,
    /// The id each kind is written with, indexed by `kind as usize` (looked up per event).
    own_ids: [Option<u32>; EventKind::ALL.len()],
    writers: HashMap<EventKind, GenericDatumWriter<'static>>,
    readers: HashMap<EventKind, GenericDatumReader<'static>>,
    /// Writer schemas by id, fetched from the registry. Leaked: a process sees a handful.
    known: RwLock<HashMap<u32, Arc<WriterSchema>>>,
}

impl EventCodec {
    /// Registers every event schema with `registry` and returns a codec that writes them.
    ///
    /// Fails when the registry refuses a schema (for example an incompatible change).
    pub async fn connect(registry: Arc<dyn SchemaRegistry>) -> Result<Self, CodecError> {
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let mut own_ids = [None; EventKind::ALL.len()];
        let mut writers = HashMap::new();
        let mut readers = HashMap::new();
        let mut known = HashMap::new();
        for kind in EventKind::ALL {
            let schema = kind.schema();
            let id = registry.register(kind.full_name(), schema).await?;
            own_ids[kind as usize] = Some(id);
            let encode = |e: apache_avro::Error| CodecError::Encode {
                record: kind.full_name(),
                reason: e.to_string(),
            };
            writers.insert(
                kind,
                GenericDatumWriter::builder(schema)
                    .build()
                    .map_err(encode)?,
            );
            readers.insert(
                kind,
                GenericDatumReader::builder(schema)
                    .build()
                    .map_err(encode)?,
            );
            known.insert(
                id,
                Arc::new(WriterSchema {
                    full_name: kind.full_name().to_owned(),
                    schema,
                }),
            );
        }
        Ok(Self {
            registry,
            own_ids,
            writers,
            readers,
            known: RwLock::new(known),
        })
    }

    /// The id this codec writes `kind` with.
    pub fn schema_id(&self, kind: EventKind) -> Option<u32> {
        self.own_ids.get(kind as usize).copied().flatten()
    }

    /// Encodes `event` as a Confluent-framed Avro payload.
    pub fn encode<E: Event>(&self, event: &E) -> Result<Vec<u8>, CodecError> {
        // Room for the hot events (a reading's body is ~45 bytes, a trend's ~95) in one go.
        let mut buf = Vec::with_capacity(128);
        self.encode_into(event, &mut buf)?;
        Ok(buf)
    }

    /// Appends the framed payload of `event` to `buf`.
    pub fn encode_into<E: Event>(&self, event: &E, buf: &mut Vec<u8>) -> Result<(), CodecError> {
        let not_registered = || CodecError::NotRegistered {
            record: E::FULL_NAME,
        };
        let id = self.schema_id(E::KIND).ok_or_else(not_registered)?;
        wire::start_frame(id, buf);
        if event.write_body(buf) {
            return Ok(());
        }
        let writer = self.writers.get(&E::KIND).ok_or_else(not_registered)?;
        writer
            .write_ser(buf, event)
            .map_err(|e| CodecError::Encode {
                record: E::FULL_NAME,
                reason: e.to_string(),
            })?;
        Ok(())
    }

    /// Decodes a payload whose writer schema this codec already knows.
    ///
    /// Returns [`CodecError::UnknownSchemaId`] when the id has not been seen; [`Self::decode`]
    /// fetches it from the registry instead.
    pub fn decode_cached<E: Event>(&self, payload: &[u8]) -> Result<E, CodecError> {
        let (id, mut body) = wire::split(payload)?;
        let malformed = |e: apache_avro::Error| CodecError::Malformed {
            id,
            record: E::FULL_NAME,
            reason: e.to_string(),
        };
        let value: E = if self.schema_id(E::KIND) == Some(id) {
            if let Some(read) = E::read_body(&mut body) {
                read.map_err(|reason| CodecError::Malformed {
                    id,
                    record: E::FULL_NAME,
                    reason,
                })?
            } else {
                let reader = self
                    .readers
                    .get(&E::KIND)
                    .ok_or(CodecError::NotRegistered {
                        record: E::FULL_NAME,
                    })?;
                reader.read_deser(&mut body).map_err(malformed)?
            }
        } else {
            let writer = self.writer_schema(id)?;
            if writer.full_name != E::FULL_NAME {
                return Err(CodecError::WrongType {
                    id,
                    expected: E::FULL_NAME,
                    found: writer.full_name.clone(),
                });
            }
            let reader = GenericDatumReader::builder(writer.schema)
                .reader_schema(E::KIND.schema())
                .build()
                .map_err(|e| CodecError::Incompatible {
                    id,
                    expected: E::FULL_NAME,
                    reason: e.to_string(),
                })?;
            let value = reader.read_value(&mut body).map_err(malformed)?;
            apache_avro::from_value(&value).map_err(malformed)?
        };
        if !body.is_empty() {
            return Err(CodecError::TrailingBytes {
                id,
                record: E::FULL_NAME,
                extra: body.len(),
            });
        }
        Ok(value)
    }

    /// Decodes a payload, fetching an unseen writer schema from the registry first.
    pub async fn decode<E: Event>(&self, payload: &[u8]) -> Result<E, CodecError> {
        match self.decode_cached(payload) {
            Err(CodecError::UnknownSchemaId { id }) => {
                self.learn(id).await?;
                self.decode_cached(payload)
            }
            other => other,
        }
    }

    /// Which event a payload holds, if its schema id is known.
    pub fn kind_of(&self, payload: &[u8]) -> Result<Option<EventKind>, CodecError> {
        let (id, _) = wire::split(payload)?;
        Ok(EventKind::from_full_name(
            &self.writer_schema(id)?.full_name,
        ))
    }

    /// Which event a payload holds, fetching its writer schema from the registry first when
    /// this codec has not seen the schema id yet (records written by another process).
    pub async fn kind_of_learning(&self, payload: &[u8]) -> Result<Option<EventKind>, CodecError> {
        match self.kind_of(payload) {
            Err(CodecError::UnknownSchemaId { id }) => {
                self.learn(id).await?;
                self.kind_of(payload)
            }
            other => other,
        }
    }

    /// Fetches the schema with `id` from the registry and remembers it.
    pub async fn learn(&self, id: u32) -> Result<(), CodecError> {
        if self.writer_schema(id).is_ok() {
            return Ok(());
        }
        let text = match self.registry.schema_by_id(id).await {
            Ok(text) => text,
            Err(crate::RegistryError::UnknownId(_)) => {
                return Err(CodecError::UnknownSchemaId { id });
            }
            Err(e) => return Err(e.into()),
        };
        let schema = parse_schema(&text)?;
        let full_name = schema.name().map(|n| n.fullname(None)).unwrap_or_default();
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        known.insert(id, Arc::new(WriterSchema { full_name, schema }));
        Ok(())
    }

    fn writer_schema(&self, id: u32) -> Result<Arc<WriterSchema>, CodecError> {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        known
            .get(&id)
            .cloned()
            .ok_or(CodecError::UnknownSchemaId { id })
    }
}
