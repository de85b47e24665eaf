//! Emberline's shared plumbing: what several crates need and none of them owns.
//!
//! * [`clock`] — the wall clock, read in this one place;
//! * [`secret`] — [`Secret`], the one type for every password and token;
//! * [`error`] — [`ErrorKind`] and [`Classify`]: what kind of failure an error is, for
//!   precise gRPC and HTTP codes; [`error::chain`] prints an error with its causes;
//! * [`backoff`] — [`Backoff`], exponential delays with jitter for retrying external failures;
//! * [`http`] (feature `http`) — the outbound HTTP client every cloud and webhook call uses;
//! * [`data_dir`] — where the process' stores keep their files, for the disk metrics;
//! * [`redb_file`] (feature `redb`) — a redb file that reopens itself after an I/O error;
//! * [`tenant`] — whose data a device is: qualified device ids.
//!
//! It depends on no other Emberline crate, so the log, the gateway, the sources, the
//! notifier and the connectors can all use it without depending on each other.

pub mod backoff;
pub mod clock;
pub mod data_dir;
pub mod error;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "redb")]
pub mod redb_file;
pub mod secret;
pub mod tenant;

pub use backoff::Backoff;
pub use error::{Classify, ErrorKind};
pub use secret::Secret;
