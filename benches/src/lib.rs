//! Shared fixtures of Emberline's benchmarks and load drivers.
//!
//! * `benches/codec.rs` — Avro encode and decode per event (criterion);
//! * `benches/embedded_log.rs` — embedded log append and read (criterion);
//! * `src/bin/e2e.rs` — simulator → log → trend processor → projections, N events,
//!   printing events per second and peak memory.

use std::path::Path;
use std::sync::Arc;

use emberline_log::{EmbeddedLog, EventLog, topics};
use emberline_schemas::events::ProbeReading;
use emberline_schemas::{EmbeddedRegistry, EventCodec};

/// A typical reading: 43 bytes of Avro body.
pub fn sample_reading() -> ProbeReading {
    ProbeReading {
        device_id: "sim-1".into(),
        probe_id: "meat-1".into(),
        event_time: 1_790_000_000_000,
        received_time: 1_790_000_000_120,
        temperature_c: Some(71.4),
        source: "simulator".into(),
    }
}

/// An embedded log in `dir` with the standard topics and a codec on its registry.
pub async fn embedded(
    dir: &Path,
    partitions: u32,
) -> anyhow::Result<(Arc<EmbeddedLog>, Arc<EventCodec>)> {
    let log = EmbeddedLog::open(&dir.join("log.redb"))?;
    let codec = EventCodec::connect(Arc::new(EmbeddedRegistry::new(log.database()))).await?;
    for topic in topics::ALL {
        log.ensure_topic(topic, partitions).await?;
    }
    Ok((Arc::new(log), Arc::new(codec)))
}

/// Peak resident memory of this process, from `/proc/self/status` (Linux), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
