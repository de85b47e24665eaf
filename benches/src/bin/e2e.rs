//! End-to-end driver: the simulator writes N readings into an embedded log (batched per
//! tick), then the trend processor catches up — log read, decode, timely exchange, trend,
//! derived append, projection writes — and the driver prints events per second for each
//! stage and the peak memory.
//!
//! Run: `cargo run --release -p emberline-benches --bin e2e -- [devices] [ticks] [workers]`
//! (defaults: 100 devices × 4 probes × 500 ticks = 200 000 readings, 2 workers).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use emberline_benches::{embedded, peak_rss_kib};
use emberline_ingest::{Simulator, SimulatorConfig};
use emberline_log::{EventLog, NewRecord, topics};
use emberline_processors::{Mode, TrendConfig, run_trends};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use tokio_util::sync::CancellationToken;

fn arg(n: usize, default: u64) -> anyhow::Result<u64> {
    match std::env::args().nth(n) {
        Some(v) => v
            .parse()
            .with_context(|| format!("argument {n}: {v:?} is not a number")),
        None => Ok(default),
    }
}

/// Bytes of every file under `path`.
fn dir_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Disk at rest per reading: the log, the projection store file, and the history table's
/// share of it (its stored bytes and B-tree overhead).
fn disk_report(dir: &std::path::Path, readings: u64) -> anyhow::Result<String> {
    let store = dir.join("projections.redb");
    let projections = std::fs::metadata(&store)?.len();
    let log = dir_bytes(dir)? - projections;
    let per = |bytes: u64| bytes as f64 / readings as f64;
    let history = match emberline_projections::table_stats_read_only(&store) {
        Ok(tables) => tables
            .into_iter()
            .find(|t| t.table == "proj.history")
            .map_or("none".into(), |t| {
                format!("{:.1} B", per(t.stored_bytes + t.overhead_bytes))
            }),
        Err(e) => format!("unknown: {e}"),
    };
    Ok(format!(
        "disk per reading: log {:.1} B, projection file {:.1} B (history table {history})\n",
        per(log),
        per(projections),
    ))
}

fn main() -> anyhow::Result<()> {
    let devices = arg(1, 100)? as u32;
    let ticks = arg(2, 500)?;
    let workers = arg(3, 2)? as usize;
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let (log, codec) = rt
        .block_on(embedded(dir.path(), 8))
        .map_err(|e| anyhow::anyhow!(e))?;
    let config = SimulatorConfig {
        devices,
        probes: 4,
        ..Default::default()
    };
    let mut sim = Simulator::new(config, 1_790_000_000_000);

    let started = Instant::now();
    let mut readings = 0u64;
    rt.block_on(async {
        for _ in 0..ticks {
            let batch = sim.tick(None);
            readings += batch.len() as u64;
            let records = batch
                .iter()
                .map(|r| {
                    Ok(NewRecord {
                        key: r.device_id.as_bytes().to_vec(),
                        value: codec.encode(r)?,
                        timestamp_ms: r.event_time,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            log.append(topics::PROBE_READINGS, records).await?;
        }
        anyhow::Ok(())
    })?;
    let ingest = started.elapsed();

    let store: Arc<dyn ProjectionStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("projections.redb"))?);
    let started = Instant::now();
    let stats = run_trends(
        log.clone() as Arc<dyn EventLog>,
        store,
        codec,
        TrendConfig {
            workers,
            ..TrendConfig::default()
        },
        Mode::CatchUp,
        CancellationToken::new(),
        rt.handle().clone(),
    )?;
    let process = started.elapsed();
    anyhow::ensure!(
        stats.records == readings,
        "processed {} of {readings}",
        stats.records
    );
    let rate = |d: std::time::Duration| readings as f64 / d.as_secs_f64();
    let report = format!(
        "readings {readings} ({devices} devices x 4 probes x {ticks} ticks), workers {workers}\n\
         ingest (encode + durable append per tick): {:.2?}, {:.0} readings/s\n\
         process (read, decode, trend, derived append, projections): {:.2?}, {:.0} readings/s\n\
         peak RSS: {} MiB\n\
         {}",
        ingest,
        rate(ingest),
        process,
        rate(process),
        peak_rss_kib().map_or("unknown".into(), |k| (k / 1024).to_string()),
        disk_report(dir.path(), readings)?,
    );
    #[allow(clippy::print_stdout)]
    {
        print!("{report}");
    }
    Ok(())
}
