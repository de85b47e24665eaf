//! A local ThermoWorks Cloud to try the adapter against, no account needed:
//!
//! ```sh
//! cargo run -p emberline-ingest --features testsuite --example thermoworks-cloud
//! ```
//!
//! It serves the account `cook@example.com` / `s3cret` on http://127.0.0.1:8765 with one
//! Node (serial `A1`): a pit channel holding about 225 °F and a brisket channel warming up,
//! uploading every 5 s. Point a `thermoworks` source at it with `base_url` (see the README).
#![allow(clippy::print_stdout)]

use std::time::Duration;

use emberline_common::clock::now_ms;
use emberline_ingest::testing::thermoworks::{EMAIL, FakeThermoworks, stamp};
use serde_json::json;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8765".into())
        .parse()
        .map_err(|e| std::io::Error::other(format!("address: {e}")))?;
    let cloud = FakeThermoworks::start(addr, "s3cret", now_ms()).await?;
    println!(
        "ThermoWorks Cloud stand-in on {} — account {EMAIL} / s3cret, device A1",
        cloud.url
    );
    cloud.with(|c| {
        if let Some(meat) = c.devices.get_mut("A1").and_then(|(_, ch)| ch.get_mut(&2)) {
            meat["value"] = json!(5.0);
        }
    });
    let mut step = 0u32;
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        step += 1;
        let now = now_ms();
        cloud.with(|c| {
            if let Some((device, channels)) = c.devices.get_mut("A1") {
                device["lastSeen"] = json!(stamp(now));
                if let Some(pit) = channels.get_mut(&1) {
                    pit["value"] = json!(225.0 + f64::from(step % 7) - 3.0);
                    pit["lastTelemetrySaved"] = json!(stamp(now));
                }
                if let Some(meat) = channels.get_mut(&2) {
                    meat["value"] = json!((5.0 + f64::from(step) * 0.2).min(95.0));
                    meat["lastTelemetrySaved"] = json!(stamp(now));
                }
            }
        });
    }
}
