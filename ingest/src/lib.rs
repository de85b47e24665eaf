//! Getting readings into the log: the [`Source`] trait, the sources ([`Simulator`],
//! [`mqtt`], [`http_push`]; the registry of kinds is [`SourceConfig`]), the [`validate`]
//! gate every reading passes, and the [`EventSink`] every source writes through.
//!
//! A source produces events (probe readings, device registrations and status) and hands them
//! to an [`EventSink`], which encodes them (Avro, Confluent wire format) and appends them to
//! the log keyed by device id. An append that fails is retried with exponential backoff until
//! it succeeds or the source is shut down: a reading is never dropped silently.
//!
//! [`accounts`] turns the web UI's account forms into sources, and [`live`] runs the sources
//! whose settings change while Emberline runs.
//!
//! With the `testsuite` feature, [`testing`] holds local stand-ins for the clouds and
//! `conformance` the suite every source kind must pass.
//!
//! This crate knows the log and the schemas; it knows nothing of processors, projections or
//! gRPC.

pub mod accounts;
pub mod cloud;
#[cfg(feature = "testsuite")]
pub mod conformance;
mod error;
pub mod http_push;
pub mod live;
pub mod metrics;
pub mod mqtt;
mod registry;
pub mod simulator;
mod sink;
mod source;
pub mod validate;

#[cfg(any(test, feature = "testsuite"))]
pub mod testing;

pub use error::IngestError;
pub use registry::SourceConfig;
pub use simulator::{Simulator, SimulatorConfig};
pub use sink::EventSink;
pub use source::{Source, run_source};
