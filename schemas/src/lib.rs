//! Emberline's events and how they travel as bytes.
//!
//! This crate owns:
//!
//! * the Avro schemas in `schemas/avro/*.avsc` (the source of truth) and the Rust types that
//!   follow them ([`events`]);
//! * the Confluent wire format — magic byte `0`, a 4-byte big-endian schema id, then the Avro
//!   body — and the codec that writes and reads it ([`EventCodec`]);
//! * schema registries ([`SchemaRegistry`]): the embedded one kept in the embedded store
//!   ([`EmbeddedRegistry`]) and a client of any Confluent-compatible registry
//!   ([`ConfluentRegistry`]).
//!
//! It knows nothing of logs, processors or gRPC: callers hand it bytes and events.
//!
//! Subjects follow the *record name strategy* (the subject is the record's full name, e.g.
//! `emberline.events.ProbeReading`), because several event types share a topic
//! (`device.events`, `cook.commands`). Registration refuses a schema that cannot read data
//! written with the subject's latest version (Avro backward compatibility).
//!
//! ```
//! use emberline_schemas::{wire, events::ProbeReading, Event};
//! assert_eq!(ProbeReading::FULL_NAME, "emberline.events.ProbeReading");
//! assert!(wire::split(&[0, 0, 0, 0, 7, 42]).is_ok());
//! ```

mod body;
mod codec;
mod error;
pub mod events;
mod registry;
pub mod wire;

pub use codec::EventCodec;
pub use error::{CodecError, RegistryError};
pub use events::{Event, EventKind};
pub use registry::{
    ConfluentRegistry, EmbeddedRegistry, RegisteredVersion, SchemaRegistry, canonical_text,
};
