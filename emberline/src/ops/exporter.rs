//! `GET /metrics`: every metric the process records, in Prometheus' text format.
//!
//! The libraries record through the [`metrics`] facade and know nothing of the exporter;
//! this module installs `metrics-exporter-prometheus` as the process' recorder (without its
//! HTTP listener: the ops endpoint renders the handle) and adds what only the binary knows:
//! the build, the data directory's size and filesystem, the stores' caches and the
//! allocator's heap figures. Chosen over `prometheus-client` because the facade lets the
//! library crates record with one macro call and no registry passed through their APIs,
//! and because the exporter without default features adds no server, TLS or runtime of its
//! own. The families are listed in `docs/metrics.md`.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static EXPORTER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Bucket bounds of every `_seconds` histogram: 0.5 ms to 10 s.
const SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds of batch-size histograms (`_records`).
const RECORDS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];
/// Bucket bounds of size histograms (`_bytes`).
const BYTES: [f64; 9] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
];

/// How often histograms are drained when nobody scrapes, so they stay small.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for the whole process (once; later calls do nothing)
/// and starts its upkeep. What is recorded before does not count, so the ops endpoint
/// installs it before the role opens anything.
pub(crate) fn install() -> anyhow::Result<()> {
    if EXPORTER.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_records".into()), &RECORDS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &BYTES)?
        .install_recorder()?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        })?;
    metrics::gauge!("emberline_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let _ = EXPORTER.set(handle);
    Ok(())
}

/// Total size of the regular files under `dir` (not following links).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => todo.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// Records the size of the data directory (the first one a store noted) and its
/// filesystem's size and free space.
fn record_data_dir() {
    let Some(dir) = emberline_common::data_dir::noted().into_iter().next() else {
        return;
    };
    let dir = dir.as_path();
    metrics::gauge!("emberline_data_dir_bytes").set(dir_bytes(dir) as f64);
    if let Ok(fs) = rustix::fs::statvfs(dir) {
        let block = fs.f_frsize as f64;
        metrics::gauge!("emberline_data_dir_filesystem_size_bytes").set(fs.f_blocks as f64 * block);
        metrics::gauge!("emberline_data_dir_filesystem_avail_bytes")
            .set(fs.f_bavail as f64 * block);
    }
}

/// Records each open store's cache: bytes held and evictions so far (a cache that keeps
/// evicting is full; one still growing is not).
fn record_store_caches() {
    use redb::ReadableDatabase as _;
    for (path, store) in crate::backup::held() {
        let name = path
            .file_stem()
            .map_or_else(|| "store".to_owned(), |s| s.to_string_lossy().into_owned());
        let _ = store.with_current(&mut |db| {
            let stats = db.cache_stats();
            metrics::gauge!("emberline_store_cache_bytes", "store" => name.clone())
                .set(stats.used_bytes() as f64);
            metrics::counter!("emberline_store_cache_evictions_total", "store" => name.clone())
                .absolute(stats.evictions());
            Ok(())
        });
    }
}

/// The rendered metrics, or 503 when no recorder is installed (a role run in a test).
pub(super) async fn render() -> Response {
    let Some(handle) = EXPORTER.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded in this process\n",
        )
            .into_response();
    };
    let _ = tokio::task::spawn_blocking(|| {
        record_data_dir();
        record_store_caches();
    })
    .await;
    if let Some(heap) = crate::allocator::stats() {
        metrics::gauge!("emberline_memory_allocated_bytes").set(heap.allocated as f64);
        metrics::gauge!("emberline_memory_resident_bytes").set(heap.resident as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_size_counts_nested_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), [0u8; 100]).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/b"), [0u8; 23]).expect("write");
        assert_eq!(dir_bytes(dir.path()), 123);
    }
}
