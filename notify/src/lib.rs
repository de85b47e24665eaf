//! Emberline's notification role: it consumes `alerts` and delivers each raise (and, if
//! asked, each clear) to the configured channels — signed webhooks (plain JSON, Slack- or
//! Discord-compatible), e-mail over SMTP, ntfy-compatible push — through an outbox.
//!
//! ```text
//!  alerts p0..pn ──► enqueue: one outbox entry per (alert record, channel), written in the
//!                    same transaction as the position it covers
//!  outbox ─────────► deliver: due entries, one attempt each; success marks the entry
//!                    delivered, failure schedules a retry with exponential backoff
//! ```
//!
//! * **Nothing lost**: an alert is in the outbox before its position moves; a channel that
//!   is down only delays its entries, however long, and a restart resumes them.
//! * **Never twice**: an entry is attempted until one attempt succeeds and is then never
//!   attempted again. Every delivery carries a stable id (`Idempotency-Key` header, the
//!   e-mail's `Message-ID`, ntfy's `X-Emberline-Delivery`), so a receiver can also drop
//!   the one duplicate a crash between a successful send and its record could cause.
//!
//! Alerts go to every channel that wants the device, unless their rule has a route
//! ([`Routes`]): then the first raise goes to the route's first channel, and each raise
//! again for want of an acknowledgement to the next (escalation); a clear goes to them all.
//!
//! This crate knows the log and the schemas; it reads no projections.

mod channel;
mod config;
mod error;
mod notice;
mod outbox;
mod run;

pub use channel::signature;
pub use config::{ChannelConfig, ChannelKind, NotifyConfig, WebhookFormat};
pub use error::NotifyError;
pub use notice::Notice;
pub use outbox::{Outbox, OutboxEntry};
pub use run::{
    Routes, run_notifier, run_notifier_routed, run_notifier_with, send_test, targets,
    validate_channel,
};
