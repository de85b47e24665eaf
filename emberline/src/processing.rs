//! The processor role's wiring: the trend processor, the device projector, the cook
//! processor and the clock, on the input partitions this process owns.
//!
//! * `up`, and `process --catch-up`, own every partition.
//! * `process` on Kafka joins the processor group [`GROUP`] (heartbeats in the log: see
//!   `emberline_log::join_group`): on every change of its share it stops its processors
//!   (what they had not written is redone by the next owner), claims the partitions it was
//!   given in the
//!   projection changelog (which fences off any other writer of them), restores them from
//!   it (the state handoff: see `emberline_processors::changelog`) and starts them again on
//!   its new share.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, Result};
use emberline_common::clock::now_ms;
use emberline_log::{EventLog, GroupEvent, GroupSettings, NewRecord, join_group, topics};
use emberline_processors::changelog::ChangelogStore;
use emberline_processors::{Mode, TrendConfig, run_cook_on, run_devices_on, run_trends};
use emberline_projections::ProjectionStore;
use emberline_schemas::EventCodec;
use emberline_schemas::events::ClockTick;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ops::Readiness;

/// The group of the processor role.
pub(crate) const GROUP: &str = "emberline.processors";

/// What the processors need.
#[derive(Clone)]
pub(crate) struct Processing {
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    /// Where they write: the local store, or the changelog in front of it.
    store: Arc<dyn ProjectionStore>,
    workers: usize,
    tick_every: Option<std::time::Duration>,
}

impl Processing {
    pub(crate) fn new(
        config: &Config,
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
        store: Arc<dyn ProjectionStore>,
    ) -> Self {
        let tick = config.processor.tick_interval_s;
        Self {
            log,
            codec,
            store,
            workers: config.processor.workers,
            tick_every: (tick > 0).then(|| std::time::Duration::from_secs(tick)),
        }
    }

    /// Starts every processor on `owned` (`None`: every partition) into `tasks`.
    pub(crate) fn spawn(
        &self,
        tasks: &mut JoinSet<Result<()>>,
        owned: Option<BTreeSet<u32>>,
        mode: Mode,
        shutdown: &CancellationToken,
    ) {
        let (p, stop, part) = (self.clone(), shutdown.clone(), owned.clone());
        tasks.spawn(async move {
            let stats = run_cook_on(p.log, p.store, p.codec, mode, stop, part.as_ref())
                .await
                .context("cook processor")?;
            tracing::info!(records = stats.records, "cook processor stopped");
            Ok(())
        });
        if mode == Mode::Follow
            && let Some(every) = self.tick_every
        {
            let (p, stop, part) = (self.clone(), shutdown.clone(), owned.clone());
            tasks.spawn(async move { write_clock_ticks(p.log, p.codec, every, part, stop).await });
        }
        let (p, stop, part) = (self.clone(), shutdown.clone(), owned.clone());
        tasks.spawn(async move {
            let stats = run_devices_on(p.log, p.store, p.codec, mode, stop, part.as_ref())
                .await
                .context("device projector")?;
            tracing::info!(records = stats.records, "device projector stopped");
            Ok(())
        });
        let trend_config = TrendConfig {
            workers: self.workers,
            partitions: owned,
            ..TrendConfig::default()
        };
        let (p, stop) = (self.clone(), shutdown.clone());
        let runtime = tokio::runtime::Handle::current();
        tasks.spawn(async move {
            let stats = tokio::task::spawn_blocking(move || {
                run_trends(p.log, p.store, p.codec, trend_config, mode, stop, runtime)
            })
            .await
            .context("the trend processor panicked")?
            .context("trend processor")?;
            tracing::info!(
                records = stats.records,
                rejected = stats.rejected,
                "trend processor stopped"
            );
            Ok(())
        });
    }
}

/// Processors running on one share of the partitions.
struct Running {
    stop: CancellationToken,
    tasks: JoinSet<Result<()>>,
}

impl Running {
    fn start(processing: &Processing, owned: &BTreeSet<u32>, shutdown: &CancellationToken) -> Self {
        let stop = shutdown.child_token();
        let mut tasks = JoinSet::new();
        processing.spawn(&mut tasks, Some(owned.clone()), Mode::Follow, &stop);
        Self { stop, tasks }
    }

    /// Stops them and waits until they have; the first failure, if any.
    async fn stop(mut self) -> Result<()> {
        self.stop.cancel();
        let mut first = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined.context("a processor panicked").and_then(|r| r)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Waits for a processor to end (they run until stopped, so that is a failure).
    async fn failed(&mut self) -> anyhow::Error {
        loop {
            match self.tasks.join_next().await {
                Some(joined) => match joined.context("a processor panicked").and_then(|r| r) {
                    Err(e) => return e,
                    Ok(()) => continue,
                },
                None => std::future::pending::<()>().await,
            }
        }
    }
}

/// How long a new owner waits after claiming partitions before it reads where their
/// outputs end: the round a fenced previous owner had in flight lands within it.
const CLAIM_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Follows the processor group: runs the processors on this member's share, claiming newly
/// assigned partitions in the changelog and restoring them into `local` before starting on
/// them. A write refused because another member claimed a partition stops the processors;
/// after a heartbeat, when the views of the group have converged, they start again on the
/// member's share as it is then.
pub(crate) async fn follow_group(
    processing: Processing,
    local: Arc<dyn ProjectionStore>,
    changelog: Arc<ChangelogStore>,
    settings: GroupSettings,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<()> {
    readiness.waiting("processors", "joining the processor group");
    let mut member = join_group(
        processing.log.clone(),
        GROUP,
        topics::PROBE_READINGS,
        changelog.id().to_owned(),
        settings.clone(),
    )
    .await
    .context("joining the processor group")?;
    let mut owned: BTreeSet<u32> = BTreeSet::new();
    let mut running: Option<Running> = None;
    loop {
        let fenced = changelog.fenced();
        let event = tokio::select! {
            event = member.next_event() => Some(event.context("the processor group")?),
            e = async { match running.as_mut() { Some(r) => r.failed().await, None => std::future::pending().await } } => return Err(e),
            () = fenced.cancelled(), if running.is_some() => None,
            () = shutdown.cancelled() => break,
        };
        // An assignment of what is held already changes nothing.
        if let Some(GroupEvent::Assigned(partitions)) = &event
            && partitions.is_subset(&owned)
            && (running.is_some() || owned.is_empty())
        {
            readiness.ready("processors");
            continue;
        }
        if let Some(r) = running.take() {
            r.stop().await?;
        }
        let gained = match event {
            Some(GroupEvent::Assigned(partitions)) => {
                owned.extend(partitions.iter().copied());
                partitions
            }
            Some(GroupEvent::Revoked(partitions, release)) => {
                for p in &partitions {
                    owned.remove(p);
                }
                changelog.release(&partitions);
                tracing::info!(revoked = ?partitions, owned = ?owned, "partitions revoked");
                drop(release);
                BTreeSet::new()
            }
            None => {
                tracing::warn!(owned = ?owned, "another processor claimed a partition of ours; stopping for a heartbeat");
                changelog.release(&owned);
                readiness.waiting("processors", "fenced: waiting for the group to settle");
                tokio::select! {
                    () = tokio::time::sleep(settings.heartbeat * 2) => {}
                    () = shutdown.cancelled() => break,
                }
                owned = member.share();
                owned.clone()
            }
        };
        if !gained.is_empty() {
            readiness.waiting("processors", format!("restoring partitions {gained:?}"));
            let started = std::time::Instant::now();
            changelog
                .claim(&owned)
                .await
                .context("claiming partitions in the projection changelog")?;
            tokio::select! {
                () = tokio::time::sleep(CLAIM_GRACE) => {}
                () = shutdown.cancelled() => break,
            }
            let batches = emberline_processors::changelog::restore(
                processing.log.as_ref(),
                local.as_ref(),
                owned.iter().copied(),
                &shutdown,
            )
            .await
            .context("restoring state from the projection changelog")?;
            tracing::info!(
                assigned = ?gained,
                owned = ?owned,
                restored_batches = batches,
                handoff_ms = started.elapsed().as_millis() as u64,
                "partitions assigned"
            );
        }
        if !owned.is_empty() {
            running = Some(Running::start(&processing, &owned, &shutdown));
        }
        readiness.ready("processors");
    }
    if let Some(r) = running.take() {
        r.stop().await?;
    }
    Ok(())
}

/// Below this, a difference between the wall clock's step and the time that really passed is
/// drift or scheduling, not a jump.
const JUMP_TOLERANCE_MS: i64 = 2_000;

/// How far the wall clock jumped over a step that really took `elapsed`: `Some` when the
/// wall clock moved `wall_step_ms` and that differs from `elapsed` by more than
/// [`JUMP_TOLERANCE_MS`] (positive: forward).
fn wall_jump(wall_step_ms: i64, elapsed: std::time::Duration) -> Option<i64> {
    let elapsed_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
    let jump = wall_step_ms.saturating_sub(elapsed_ms);
    (jump.abs() > JUMP_TOLERANCE_MS).then_some(jump)
}

/// Writes the wall-clock time to every owned partition of `cook.commands` every `every`, so
/// time-based alerts fire on a quiet device and a replay sees the same time pass. A failed
/// write is retried at the next tick: a missed tick only delays such alerts.
async fn write_clock_ticks(
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    every: std::time::Duration,
    owned: Option<BTreeSet<u32>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let partitions = match owned {
        Some(owned) => owned,
        None => (0..log.partitions(topics::COOK_COMMANDS).await?).collect(),
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<(i64, std::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        let (now, at) = (now_ms(), std::time::Instant::now());
        let jump = previous.and_then(|(wall, mono)| wall_jump(now - wall, at - mono));
        if let Some(ms) = jump {
            tracing::warn!(
                jump_ms = ms,
                "the wall clock jumped; quiet-time alerts will not count the jump"
            );
        }
        previous = Some((now, at));
        let tick = ClockTick {
            event_time: now,
            source: "processor".into(),
            wall_jump_ms: jump,
        };
        let value = codec.encode(&tick)?;
        for &partition in &partitions {
            let record = NewRecord {
                key: b"clock".to_vec(),
                value: value.clone(),
                timestamp_ms: now,
            };
            if let Err(e) = log
                .append_to(topics::COOK_COMMANDS, partition, vec![record])
                .await
            {
                tracing::warn!(error = %e, partition, "could not write the clock tick; retrying at the next one");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wall_jump;
    use std::time::Duration;

    #[test]
    fn a_step_is_a_jump_only_when_the_wall_clock_moved_more_than_time_passed() {
        let second = Duration::from_secs(1);
        assert_eq!(wall_jump(1_000, second), None);
        assert_eq!(wall_jump(2_900, second), None, "under the tolerance");
        assert_eq!(wall_jump(3_601_000, second), Some(3_600_000));
        assert_eq!(wall_jump(-7_199_000, second), Some(-7_200_000));
        assert_eq!(wall_jump(0, Duration::from_secs(15)), Some(-15_000));
    }
}
