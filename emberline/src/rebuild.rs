//! `emberline rebuild`: drop the projections and replay them from the log.
//!
//! Everything in the projection store is a function of the log (the processors read no wall
//! clock), so the store can be thrown away and computed again: after a change of its format,
//! a suspected corruption, or to take back disk. The rebuild
//!
//! 1. opens the log first, which locks the data directory (no other process may use it);
//! 2. refuses when the log no longer starts at offset 0 of an input partition (retention
//!    removed records the projections still summarise: history older than the log would be
//!    lost) unless `--discard-older-history` is given;
//! 3. writes `rebuild.pending`, deletes `projections.redb`, and runs the processors in
//!    catch-up mode (the same code `up` runs) to the ends the log had at start, with a
//!    progress line (records, rate, time left);
//! 4. removes `rebuild.pending` and prints a summary.
//!
//! Interrupted (Ctrl-C, `kill -9`, a power cut), it resumes: with `rebuild.pending` present
//! the store is kept, and the processors carry on from the positions they applied with
//! their last batch — each batch's projections and positions are one transaction. The
//! processors skip outputs already in the derived topics, so a rebuild appends nothing to
//! the log; the summary checks that.
//!
//! Embedded deployments only: on Kafka a processor's or gateway's store is rebuilt from the
//! projection changelog by deleting its data directory and starting it again.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use emberline_log::{EventLog, topics};
use emberline_processors::{Mode, applied_inputs};
use emberline_projections::ProjectionStore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Backend, Config, StoreBackend};
use crate::processing::Processing;
use crate::progress::{Progress, grouped};
use crate::roles::{self, SchemaIds};

/// The marker of a rebuild in progress, in the data directory.
pub(crate) const PENDING: &str = "rebuild.pending";
/// How often the progress line is redrawn.
const REDRAW: Duration = Duration::from_millis(250);

/// Topics the processors write: a rebuild must leave them as they are.
const OUTPUTS: [&str; 3] = [
    topics::DERIVED_TRENDS,
    topics::DERIVED_PREDICTIONS,
    topics::ALERTS,
];

/// Runs the rebuild (see the module docs).
pub(crate) async fn run(config: Config, discard_older_history: bool) -> Result<()> {
    if config.log.backend != Backend::Embedded
        || config.projections.backend != StoreBackend::Embedded
    {
        bail!(
            "rebuild works on the embedded log and projection store; on Kafka, delete the \
             data directory of a processor or gateway and start it again: it restores its \
             store from the projection changelog"
        );
    }
    let dir = config.data_dir()?;
    let pending = dir.join(PENDING);
    let parts = roles::open_log(&config, SchemaIds::Shared).await?;
    let log = parts.log.clone();
    let stage = stage(&pending)?;
    if stage.is_none() {
        refuse_lossy(log.as_ref(), discard_older_history).await?;
    }
    let outputs_before = ends(log.as_ref(), &OUTPUTS).await?;
    let store_path = dir.join("projections.redb");
    if stage == Some(REPLAYING) && !of_current_format(&store_path)? {
        // Interrupted under an Emberline that wrote another format: start the replay over.
        tracing::info!(
            marker = %pending.display(),
            "the interrupted rebuild wrote another store format; starting it over"
        );
        drop_store(&pending, &store_path)?;
    } else if stage == Some(REPLAYING) {
        tracing::info!(
            marker = %pending.display(),
            "resuming the rebuild that was interrupted"
        );
    } else {
        drop_store(&pending, &store_path)?;
    }
    let store = roles::open_store(&config).await?;
    let work = Work::measure(log.as_ref()).await?;

    let shutdown = CancellationToken::new();
    roles::cancel_on_signal(shutdown.clone());
    let mut tasks = JoinSet::new();
    Processing::new(&config, log.clone(), parts.codec.clone(), store.clone()).spawn(
        &mut tasks,
        None,
        Mode::CatchUp,
        &shutdown,
    );
    let mut progress = Progress::new("records", work.total);
    let mut redraw = tokio::time::interval(REDRAW);
    let mut failure = None;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(joined) => {
                    if let Err(e) = joined.context("a processor panicked").and_then(|r| r) {
                        shutdown.cancel();
                        failure.get_or_insert(e);
                    }
                }
            },
            _ = redraw.tick() => progress.show(work.done(store.as_ref()).await?),
        }
    }
    let done = work.done(store.as_ref()).await?;
    progress.finish(done);
    if let Some(e) = failure {
        return Err(e.context(format!(
            "the rebuild stopped at {} of {} records; fix the cause and run `emberline \
             rebuild` again to resume",
            grouped(done),
            grouped(work.total)
        )));
    }
    if shutdown.is_cancelled() || done < work.total {
        bail!(
            "the rebuild was interrupted at {} of {} records; run `emberline rebuild` again \
             to resume where it stopped",
            grouped(done),
            grouped(work.total)
        );
    }
    let outputs_after = ends(log.as_ref(), &OUTPUTS).await?;
    if outputs_after != outputs_before {
        tracing::warn!(
            before = outputs_before.iter().sum::<u64>(),
            after = outputs_after.iter().sum::<u64>(),
            "the rebuild appended to the derived topics"
        );
    }
    std::fs::remove_file(&pending)
        .with_context(|| format!("removing the marker {}", pending.display()))?;
    summary(
        &work,
        &progress,
        &store_path,
        &outputs_after,
        &outputs_before,
    )
}

/// The marker's first word when the old store may still be there.
const DROPPING: &str = "dropping";
/// The marker's first word once the store holds only what this rebuild wrote.
const REPLAYING: &str = "replaying";

/// Where a rebuild stands by its marker: `None` when none is in progress.
fn stage(pending: &Path) -> Result<Option<&'static str>> {
    match std::fs::read_to_string(pending) {
        Ok(text) if text.starts_with(REPLAYING) => Ok(Some(REPLAYING)),
        // A marker cut short by a crash while it was written counts as the earlier stage.
        Ok(_) => Ok(Some(DROPPING)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the marker {}", pending.display())),
    }
}

fn mark(pending: &Path, stage: &str) -> Result<()> {
    let mut marker = std::fs::File::create(pending)
        .with_context(|| format!("writing the marker {}", pending.display()))?;
    writeln!(
        marker,
        "{stage}: a rebuild of the projections is in progress; `emberline rebuild` resumes it"
    )?;
    marker.sync_all()?;
    Ok(())
}

/// Drops the old store under a marker: marked first, then deleted, then marked as
/// replaying, so a crash at any point leaves a marker that says what is left to do — never
/// an old store taken for a rebuilt one.
fn drop_store(pending: &Path, store_path: &Path) -> Result<()> {
    mark(pending, DROPPING)?;
    match std::fs::remove_file(store_path) {
        Ok(()) => tracing::info!(store = %store_path.display(), "dropped the projections"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("deleting {}", store_path.display()));
        }
    }
    mark(pending, REPLAYING)
}

/// Whether the store at `path` opens in this build's format (a missing store does: it is
/// created so). Closed again before returning.
fn of_current_format(path: &Path) -> Result<bool> {
    match emberline_projections::EmbeddedStore::open(path) {
        Ok(_) => Ok(true),
        Err(emberline_projections::ProjectionError::OutdatedFormat { .. }) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
    }
}

/// Fails when an input partition no longer starts at offset 0, unless allowed.
async fn refuse_lossy(log: &dyn EventLog, allowed: bool) -> Result<()> {
    for (_, topic) in applied_inputs() {
        for partition in 0..log.partitions(topic).await? {
            let start = log.start_offset(topic, partition).await?;
            if start > 0 && !allowed {
                bail!(
                    "{topic} partition {partition} now starts at offset {start}: log retention \
                     removed records the projections still hold (history older than the log), \
                     and a rebuild would lose them; pass --discard-older-history to rebuild \
                     from what the log has"
                );
            }
        }
    }
    Ok(())
}

/// End offsets of `topics`' partitions, in order.
async fn ends(log: &dyn EventLog, topics: &[&str]) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for topic in topics {
        for partition in 0..log.partitions(topic).await? {
            out.push(log.end_offset(topic, partition).await?);
        }
    }
    Ok(out)
}

/// The records the processors have to read: per (position key, topic, partition), the
/// partition's start and the end it had when the rebuild began.
struct Work {
    ranges: Vec<(String, u32, u64, u64)>,
    total: u64,
}

impl Work {
    async fn measure(log: &dyn EventLog) -> Result<Self> {
        let mut ranges = Vec::new();
        for (key, topic) in applied_inputs() {
            for partition in 0..log.partitions(topic).await? {
                let start = log.start_offset(topic, partition).await?;
                let end = log.end_offset(topic, partition).await?;
                ranges.push((key.clone(), partition, start, end));
            }
        }
        let total = ranges.iter().map(|(_, _, s, e)| e.saturating_sub(*s)).sum();
        Ok(Self { ranges, total })
    }

    /// Records applied so far, by the positions the store holds.
    async fn done(&self, store: &dyn ProjectionStore) -> Result<u64> {
        let mut done = 0;
        let mut key: Option<(&str, std::collections::BTreeMap<u32, u64>)> = None;
        for (k, partition, start, end) in &self.ranges {
            if key.as_ref().is_none_or(|(held, _)| held != k) {
                key = Some((k.as_str(), store.applied_positions(k).await?));
            }
            let applied = key
                .as_ref()
                .and_then(|(_, positions)| positions.get(partition).copied())
                .unwrap_or(*start);
            done += applied.clamp(*start, *end) - start;
        }
        Ok(done)
    }
}

/// Prints what was rebuilt, how fast, and what the store takes now.
fn summary(
    work: &Work,
    progress: &Progress,
    store_path: &Path,
    outputs_after: &[u64],
    outputs_before: &[u64],
) -> Result<()> {
    let secs = progress.elapsed().as_secs_f64();
    let size = std::fs::metadata(store_path).map(|m| m.len()).unwrap_or(0);
    let appended: u64 = outputs_after
        .iter()
        .zip(outputs_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .sum();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "rebuilt the projections from {} records in {secs:.1} s ({} records/s)",
        grouped(work.total),
        grouped(if secs > 0.0 {
            (work.total as f64 / secs) as u64
        } else {
            work.total
        }),
    )?;
    writeln!(
        out,
        "projections.redb: {:.1} MiB; records appended to the derived topics: {appended}",
        size as f64 / (1u64 << 20) as f64
    )?;
    Ok(())
}
