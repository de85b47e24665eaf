//! Shared fixtures of Emberline's benchmarks and load drivers.
//!
//! * `benches/codec.rs` — Avro encode and decode per event (criterion);
//! * `benches/embedded_log.rs` — embedded log append and read (criterion);
//! * `src/bin/e2e.rs` — simulator → log → trend processor → projections, N events,
//!   printing events per second and peak memory;
//! * `src/bin/latency.rs` — starts `emberline up`, pushes readings over HTTP at a fixed rate
//!   and measures each one's arrival at a `SubscribeTrends` client (HDR histogram);
//! * `src/bin/query.rs` — `GetLatest` latency against a running gateway;
//! * `src/bin/analytics.rs` — writes a data directory of simulated readings and cooks that
//!   `emberline` opens, for `analytics/run` to time rebuild, export and SQL beside DuckDB.

use emberline_schemas::events::ProbeReading;

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

/// An embedded log in a directory with the standard topics and a codec on its registry.
pub use emberline_ingest::testing::embedded_log as embedded;

/// Peak resident memory of this process, from `/proc/self/status` (Linux), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
