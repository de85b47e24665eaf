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

/// A driver's command line, read flag by flag: `--name value` pairs and bare switches.
pub struct Flags {
    args: std::iter::Skip<std::env::Args>,
    help: &'static str,
}

impl Flags {
    /// The process's arguments; `help` is the driver's usage, printed for `--help` and
    /// named in every error.
    pub fn new(help: &'static str) -> Self {
        Self {
            args: std::env::args().skip(1),
            help,
        }
    }

    /// The next flag, `None` after the last. `--help` (`-h`) prints the usage and exits.
    pub fn next_flag(&mut self) -> Option<String> {
        let flag = self.args.next()?;
        if flag == "--help" || flag == "-h" {
            tracing::info!("{}", self.help);
            std::process::exit(0);
        }
        Some(flag)
    }

    /// The value after `flag`.
    pub fn value(&mut self, flag: &str) -> anyhow::Result<String> {
        self.args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value; {}", self.help))
    }

    /// The value after `flag`, parsed.
    pub fn parse<T>(&mut self, flag: &str) -> anyhow::Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let value = self.value(flag)?;
        value
            .parse()
            .map_err(|e| anyhow::anyhow!("{flag} {value:?}: {e}; {}", self.help))
    }

    /// The error for a flag the driver does not know.
    pub fn unknown(&self, flag: &str) -> anyhow::Error {
        anyhow::anyhow!("unknown argument {flag}; {}", self.help)
    }
}
