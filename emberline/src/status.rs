//! `emberline status`: what a data directory holds and what it takes on disk.
//!
//! Reads the stores' files directly, opened read-only: the embedded log and projection
//! store are opened in redb's single-writer mode, so this works while `emberline up` runs
//! on the same directory (and sees its last commit). A file held by a process that opened
//! it exclusively (an Emberline from before that mode) cannot be read: it is reported with
//! its size only, saying so.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use emberline_log::LogError;
use emberline_projections::ProjectionError;

/// The report for `data_dir`, as text.
pub(crate) fn report(data_dir: &Path) -> Result<String> {
    anyhow::ensure!(
        data_dir.is_dir(),
        "data directory {} does not exist",
        data_dir.display()
    );
    let mut out = String::new();
    writeln!(out, "data directory {}", data_dir.display())?;
    let mut total = 0u64;
    let mut files: Vec<_> = std::fs::read_dir(data_dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    files.sort();
    writeln!(out, "\nfiles")?;
    for (name, size) in &files {
        total += size;
        writeln!(out, "  {name:<32} {:>12}", bytes(*size))?;
    }
    writeln!(out, "  {:<32} {:>12}", "total", bytes(total))?;

    let log = data_dir.join("log.redb");
    if log.exists() {
        writeln!(out, "\nlog (log.redb)")?;
        match emberline_log::stats_read_only(&log) {
            Ok((partitions, table_bytes)) => {
                writeln!(
                    out,
                    "  {:<24} {:>10} {:>12} {:<24} {:<24}",
                    "topic", "records", "bytes", "oldest", "newest"
                )?;
                let mut topics: Vec<&str> = partitions.iter().map(|p| p.topic.as_str()).collect();
                topics.dedup();
                for topic in topics {
                    let parts: Vec<_> = partitions.iter().filter(|p| p.topic == topic).collect();
                    let records: u64 = parts.iter().map(|p| p.records()).sum();
                    let size: u64 = parts.iter().map(|p| p.bytes).sum();
                    let oldest = parts.iter().filter_map(|p| p.oldest_ms).min();
                    let newest = parts.iter().filter_map(|p| p.newest_ms).max();
                    writeln!(
                        out,
                        "  {topic:<24} {records:>10} {:>12} {:<24} {:<24}",
                        bytes(size),
                        time(oldest),
                        time(newest)
                    )?;
                }
                writeln!(out, "  batches table stores {}", bytes(table_bytes))?;
            }
            Err(e) => unreadable(&mut out, matches!(e, LogError::InUse { .. }), &e)?,
        }
    }
    let projections = data_dir.join("projections.redb");
    if projections.exists() {
        writeln!(out, "\nprojections (projections.redb)")?;
        match emberline_projections::table_stats_read_only(&projections) {
            Ok(tables) => {
                writeln!(
                    out,
                    "  {:<24} {:>10} {:>12} {:>12}",
                    "table", "entries", "stored", "overhead"
                )?;
                for t in tables {
                    writeln!(
                        out,
                        "  {:<24} {:>10} {:>12} {:>12}",
                        t.table,
                        t.entries,
                        bytes(t.stored_bytes),
                        bytes(t.overhead_bytes)
                    )?;
                }
            }
            Err(e) => unreadable(&mut out, matches!(e, ProjectionError::InUse { .. }), &e)?,
        }
    }
    Ok(out)
}

/// What the report says of a store it could not read: only its size is known when a
/// running process holds it (`in_use`), otherwise why.
fn unreadable(
    out: &mut String,
    in_use: bool,
    error: &(dyn std::error::Error + 'static),
) -> std::fmt::Result {
    if in_use {
        writeln!(
            out,
            "  locked by a running process that opened it exclusively: only its size is known"
        )
    } else {
        writeln!(
            out,
            "  cannot read it: {}",
            emberline_common::error::chain(error)
        )
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".to_owned();
    };
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`, shown as `YYYY-MM-DD HH:MM:SS UTC`.
    let rfc3339 = emberline_ingest::cloud::firestore::format_rfc3339_ms(ms);
    format!("{} {} UTC", &rfc3339[..10], &rfc3339[11..19])
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc_dates() {
        assert_eq!(super::time(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            super::time(Some(1_700_000_000_000)),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(
            super::time(Some(951_782_400_000)),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(super::time(None), "-");
    }
}
