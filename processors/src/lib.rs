//! Emberline's processors: timely dataflows that turn the input topics into derived topics
//! and projections.
//!
//! ## The trend dataflow
//!
//! ```text
//!  probe.readings ──(partition p, read by one worker)──► decode
//!        │ exchange by hash(device, probe)
//!        ▼
//!  trend operator: per-probe window state → TrendUpdated
//!        │ exchange by source partition
//!        ▼
//!  sink, once the frontier passes a round: sort by source offset, append to
//!  derived.trends (same partition p), apply one projection batch (latest, history,
//!  state, applied position) durably, then store the consumer position in the log.
//! ```
//!
//! ## Exactly-once effects without transactions
//!
//! * The projection batch holds the per-probe trend state *and* the applied position of each
//!   input partition, written atomically: after a crash the processor resumes exactly where its
//!   state is, so the trend after a restart equals a replay from offset 0.
//! * `derived.trends` has as many partitions as `probe.readings` and partition p of it holds the
//!   trends of partition p's readings in offset order. Each `TrendUpdated` carries its source
//!   offset; on start the sink reads the last one and skips what it already appended, so a
//!   crash between the append and the projection write repeats nothing.
//! * Positions in the log (`store_positions`) are written last, for lag monitoring and
//!   Kafka tooling; the projections' applied positions are what resumption trusts.
//!
//! No operator reads the wall clock: all time is event time from the readings.
//!
//! ## The device projector
//!
//! [`devices`] folds `device.events` and `cook.commands` into one description per device
//! (names, health, targets, removal) with the same resume-from-applied-positions rule.
//!
//! ## The cook processor
//!
//! [`cook`] merges readings, device events and cook commands into phases, predictions
//! (`derived.predictions`) and alerts (`alerts`); see its docs for how it stays
//! deterministic and exactly-once.
//!
//! ## Reading the inputs
//!
//! Every processor reads its input partitions through the one partition feed
//! (`partition_feed`): positions, catch-up ends and shutdown work alike, and a record a
//! processor cannot decode goes to the dead-letter topic with the reason and is counted in
//! its [`RunStats`].
//!
//! This crate knows the log, the schemas and the projection store; it knows nothing of gRPC.

pub mod changelog;
pub mod cook;
mod dataflow;
pub mod devices;
mod error;
mod metrics;
mod partition_feed;
mod projection_writer;
mod sink;
pub mod trend;
mod trend_round;

pub use cook::run::{run_cook, run_cook_on};
pub use dataflow::{TrendConfig, catch_up, run_trends};
pub use devices::{run_devices, run_devices_on};
pub use error::ProcessorError;
pub use partition_feed::{Mode, RunStats};

use emberline_log::topics;

/// Every input whose applied positions the processors record in the projection store, as
/// (position key, topic read): the trend processor's readings, the device projector's and
/// the cook processor's inputs. The sum of these positions against the sum of the topics'
/// end offsets is how far a catch-up has got.
pub fn applied_inputs() -> Vec<(String, &'static str)> {
    let trend = TrendConfig::default().input_topic;
    let mut inputs = vec![(trend, topics::PROBE_READINGS)];
    inputs.extend(devices::DEVICE_INPUTS.map(|t| (t.to_owned(), t)));
    inputs.extend(cook::run::COOK_INPUTS.map(|t| (cook::run::applied_key(t), t)));
    inputs
}
