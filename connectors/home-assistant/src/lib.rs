//! Emberline's Home Assistant connector.
//!
//! A client of the gateway (gRPC) and of an MQTT broker; it reads nothing from the log or
//! the stores. For every device it publishes Home Assistant MQTT discovery configs — a
//! temperature and a rate-of-rise sensor, a probe-health binary sensor and a target number
//! per probe, battery and signal per device — keeps their states and availability in step
//! with the gateway, and turns targets set in Home Assistant into cook commands.
//!
//! * [`topics`]: topic names and the ids Home Assistant sees (from device and probe ids,
//!   never labels).
//! * [`discovery`]: the discovery configs.
//! * [`freshness`]: when a probe counts as stale, without flapping for rare reporters.
//! * [`throttle`]: per-entity rate limiting that always delivers the newest value.
//! * [`checkpoint`]: the subscription position kept between runs, saved only once the
//!   broker has the states it covers.
//! * [`bridge::run`]: the loop tying the gateway and the broker together.

pub mod bridge;
pub mod checkpoint;
pub mod config;
pub mod discovery;
mod error;
pub mod format;
pub mod freshness;
pub mod mqtt;
pub mod throttle;
pub mod topics;
pub mod upstream;

pub use bridge::run;
pub use config::{HomeAssistantConfig, MqttConfig, TemperatureUnit};
pub use error::ConnectorError;

/// Records that the connection to `peer` (`mqtt` or `gateway`) came up: counted in
/// `emberline_ha_connections_total` (more than one means reconnects) and shown by
/// `emberline_ha_connected`.
pub(crate) fn connection(peer: &'static str) {
    metrics::counter!("emberline_ha_connections_total", "peer" => peer).increment(1);
    metrics::gauge!("emberline_ha_connected", "peer" => peer).set(1.0);
}

/// Records that the connection to `peer` failed or dropped.
pub(crate) fn connection_lost(peer: &'static str) {
    metrics::counter!("emberline_ha_connection_failures_total", "peer" => peer).increment(1);
    metrics::gauge!("emberline_ha_connected", "peer" => peer).set(0.0);
}
