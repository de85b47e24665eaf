//! The projection changelog: every projection batch a processor writes, as a record of the
//! log, so that state and read models live in the log rather than on one machine's disk.
//!
//! In the distributed deployment each processor writes through a [`ChangelogStore`]: a
//! batch — which covers exactly one input partition *p* (its state, its outputs' projections
//! and the positions it has applied) — is first appended, as one record, to partition *p*
//! of [`topics::PROJECTIONS_CHANGELOG`], then applied to the processor's own local store
//! together with the changelog position it came from. A single record is written
//! atomically, so a batch is in the changelog whole or not at all.
//!
//! * **State handoff** ([`restore`]): a processor that is assigned partition *p* first
//!   applies the changelog of *p* from where its local store last saw it up to the end.
//!   Its local store then holds exactly what the last owner's durable batches say — state
//!   and positions together — and it resumes *p* where that owner's output ends. Outputs
//!   written after the last owner's last batch are skipped on resumption (they carry
//!   their source offset or sequence number), so nothing is lost or repeated.
//! * **Read models** ([`follow`]): a gateway tails every partition of the changelog into a
//!   store of its own, resumable from the changelog positions it keeps in that store.
//! * **Fencing** ([`ChangelogStore::claim`]): members of the processor group see a change
//!   of shares a heartbeat apart, and a member may stall, so two writers could briefly work
//!   on one partition. So a new owner first appends a *claim* to the partition's changelog,
//!   and every write
//!   checks that nothing but its own records was appended since its claim — before the
//!   append, and by the offset the append got. A writer that finds another's record is
//!   fenced: its batch is refused with [`ProjectionError::Fenced`] and it stops working on
//!   the partition. The new owner waits a grace period after its claim before it reads
//!   where the outputs end, so the round a fenced writer had in flight is seen and skipped.
//!
//! A crash between the append and the local apply leaves the record in the changelog and
//! the local store behind it: the processor re-processes the batch and appends the same
//! upserts again, which every reader applies idempotently.
//!
//! Values are postcard-encoded [`ProjectionBatch`]es behind a format byte: the changelog is
//! internal to Emberline (like a Kafka Streams changelog), not an Avro topic for others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use emberline_log::{EventLog, NewRecord, topics};
use emberline_projections::{
    AlertRecord, AlertRuleRecord, CookSession, DeviceInfo, DeviceSummary, HistoryPoint,
    LatestProbe, ProbePrediction, ProjectionBatch, ProjectionError, ProjectionStore,
};
use tokio_util::sync::CancellationToken;

use crate::ProcessorError;

/// The applied-positions key under which a store records how far it has applied the
/// changelog.
pub const CHANGELOG_POSITIONS: &str = topics::PROJECTIONS_CHANGELOG;

/// The first byte of a changelog value holding a projection batch.
const FORMAT_V1: u8 = 1;
/// The first byte of a changelog value holding an ownership claim.
const CLAIM_V1: u8 = 0x10;

/// Most changelog records read at a time.
const READ_BATCH: usize = 256;

/// Encodes a batch as a changelog value.
pub fn encode(batch: &ProjectionBatch) -> Result<Vec<u8>, ProcessorError> {
    postcard::to_extend(batch, vec![FORMAT_V1])
        .map_err(|e| ProcessorError::Dataflow(format!("encoding a changelog batch: {e}")))
}

/// Decodes a changelog value: its batch, or `None` for a claim (which only moves a
/// reader's position on).
pub fn decode(value: &[u8]) -> Result<Option<ProjectionBatch>, String> {
    match value.split_first() {
        Some((&FORMAT_V1, body)) => postcard::from_bytes(body)
            .map(Some)
            .map_err(|e| e.to_string()),
        Some((&CLAIM_V1, _)) => Ok(None),
        Some((format, _)) => Err(format!(
            "changelog format {format} is newer than this binary understands"
        )),
        None => Err("empty changelog record".into()),
    }
}

/// The one input partition a processor's batch covers.
fn partition_of(batch: &ProjectionBatch) -> Result<u32, ProjectionError> {
    let mut partitions = batch.applied.iter().map(|(_, p, _)| *p);
    let first = partitions.next().ok_or_else(|| {
        ProjectionError::Invalid("a changelog batch must cover an input partition".into())
    })?;
    if partitions.any(|p| p != first) {
        return Err(ProjectionError::Invalid(format!(
            "a changelog batch must cover one input partition: {:?}",
            batch.applied
        )));
    }
    Ok(first)
}

/// The time a batch's record carries: the latest event time in it (processors read no
/// clock), or 0 for a batch with none.
fn timestamp(batch: &ProjectionBatch) -> i64 {
    let times = batch
        .latest
        .iter()
        .map(|l| l.event_time)
        .chain(batch.history.iter().map(|h| h.event_time))
        .chain(batch.predictions.iter().map(|p| p.event_time))
        .chain(batch.alerts.iter().map(|a| a.last_raised_time));
    times.max().unwrap_or(0).max(0)
}

/// A store that appends every batch to the changelog before applying it locally. Reads
/// are the local store's.
pub struct ChangelogStore {
    local: Arc<dyn ProjectionStore>,
    log: Arc<dyn EventLog>,
    /// This process's claim id.
    id: String,
    /// Per claimed partition: where the changelog must end for this writer to still own it
    /// (the offset after its own last record). One lock per partition orders this
    /// process's writers.
    fences: std::sync::Mutex<BTreeMap<u32, Arc<tokio::sync::Mutex<u64>>>>,
    /// Cancelled when a write finds that another process claimed one of the partitions;
    /// replaced by a fresh one at each claim.
    fenced: std::sync::Mutex<Fenced>,
    /// Set by the first claim: from then on a partition without a claim takes no writes.
    claiming: std::sync::atomic::AtomicBool,
}

impl ChangelogStore {
    /// Writes through `log`'s changelog topic (which must exist) to `local`; `id` names this
    /// process in its claims.
    pub fn new(log: Arc<dyn EventLog>, local: Arc<dyn ProjectionStore>, id: String) -> Self {
        Self {
            local,
            log,
            id,
            fences: std::sync::Mutex::new(BTreeMap::new()),
            fenced: std::sync::Mutex::new(Fenced::default()),
            claiming: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This process's claim id (unique among the processes writing the changelog).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Cancelled once a write to a partition this process still holds was fenced (its
    /// claim is void then: stop, and claim again when the group has settled). A fence on a
    /// partition released since does not count.
    pub fn fenced(&self) -> CancellationToken {
        self.fenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .token
            .clone()
    }

    fn fence_off(&self, partition: u32) {
        let mut fenced = self.fenced.lock().unwrap_or_else(|p| p.into_inner());
        fenced.partitions.insert(partition);
        fenced.token.cancel();
    }

    fn fence(&self, partition: u32) -> Option<Arc<tokio::sync::Mutex<u64>>> {
        self.fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&partition)
            .cloned()
    }

    /// Claims `partitions` for this process: appends a claim to each one's changelog, after
    /// which only this process's writes are taken there (until another claims it). Without
    /// a claim (one process owning every partition) writes are not checked.
    pub async fn claim(&self, partitions: &BTreeSet<u32>) -> Result<(), ProcessorError> {
        self.claiming
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut fences = BTreeMap::new();
        for &partition in partitions {
            let mut value = vec![CLAIM_V1];
            value.extend_from_slice(self.id.as_bytes());
            let record = NewRecord {
                key: partition.to_be_bytes().to_vec(),
                value,
                timestamp_ms: 0,
            };
            let positions = self
                .log
                .append_to(topics::PROJECTIONS_CHANGELOG, partition, vec![record])
                .await?;
            let next = positions.last().map_or(0, |p| p.offset + 1);
            fences.insert(partition, Arc::new(tokio::sync::Mutex::new(next)));
        }
        let mut held = self.fences.lock().unwrap_or_else(|p| p.into_inner());
        held.clear();
        held.extend(fences);
        *self.fenced.lock().unwrap_or_else(|p| p.into_inner()) = Fenced::default();
        Ok(())
    }

    /// Forgets the claims on `partitions` (they were revoked): writes to them are refused.
    pub fn release(&self, partitions: &BTreeSet<u32>) {
        let mut fences = self.fences.lock().unwrap_or_else(|p| p.into_inner());
        for p in partitions {
            fences.remove(p);
        }
        // A write refused on a partition given up anyway (the new owner claimed it while
        // this process was stopping) is no reason to stop the others.
        let mut fenced = self.fenced.lock().unwrap_or_else(|p| p.into_inner());
        fenced.partitions.retain(|p| !partitions.contains(p));
        if fenced.partitions.is_empty() && fenced.token.is_cancelled() {
            *fenced = Fenced::default();
        }
    }
}

/// The partitions whose writes were fenced, and the token that says so.
#[derive(Default)]
struct Fenced {
    partitions: BTreeSet<u32>,
    token: CancellationToken,
}

fn log_failed(e: emberline_log::LogError) -> ProjectionError {
    ProjectionError::Unavailable(format!("appending to the projection changelog: {e}"))
}

#[async_trait]
impl ProjectionStore for ChangelogStore {
    async fn apply(&self, mut batch: ProjectionBatch) -> Result<(), ProjectionError> {
        let partition = partition_of(&batch)?;
        let value = encode(&batch).map_err(|e| ProjectionError::Invalid(e.to_string()))?;
        let record = NewRecord {
            key: partition.to_be_bytes().to_vec(),
            value,
            timestamp_ms: timestamp(&batch),
        };
        let fence = self.fence(partition);
        if fence.is_none() && self.claiming.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ProjectionError::Fenced { partition });
        }
        let mut expected = match &fence {
            Some(f) => Some(f.lock().await),
            None => None,
        };
        if let Some(expected) = &expected {
            let end = self
                .log
                .end_offset(topics::PROJECTIONS_CHANGELOG, partition)
                .await
                .map_err(log_failed)?;
            if end != **expected {
                self.fence_off(partition);
                return Err(ProjectionError::Fenced { partition });
            }
        }
        let positions = self
            .log
            .append_to(topics::PROJECTIONS_CHANGELOG, partition, vec![record])
            .await
            .map_err(log_failed)?;
        if let (Some(expected), Some(position)) = (expected.as_mut(), positions.last()) {
            if position.offset != **expected {
                // Another's record landed between the check and this one: this batch is in
                // the changelog after the new owner's claim, which its restore will read.
                self.fence_off(partition);
                return Err(ProjectionError::Fenced { partition });
            }
            **expected = position.offset + 1;
        }
        if let Some(position) = positions.last() {
            batch.applied.push((
                CHANGELOG_POSITIONS.to_owned(),
                partition,
                position.offset + 1,
            ));
        }
        self.local.apply(batch).await
    }

    async fn devices(&self) -> Result<Vec<DeviceSummary>, ProjectionError> {
        self.local.devices().await
    }

    async fn device_infos(&self) -> Result<Vec<DeviceInfo>, ProjectionError> {
        self.local.device_infos().await
    }

    async fn device_info(&self, device_id: &str) -> Result<Option<DeviceInfo>, ProjectionError> {
        self.local.device_info(device_id).await
    }

    async fn cooks(&self, device_id: Option<&str>) -> Result<Vec<CookSession>, ProjectionError> {
        self.local.cooks(device_id).await
    }

    async fn cook(&self, cook_id: &str) -> Result<Option<CookSession>, ProjectionError> {
        self.local.cook(cook_id).await
    }

    async fn latest(&self, device_id: &str) -> Result<Vec<LatestProbe>, ProjectionError> {
        self.local.latest(device_id).await
    }

    async fn predictions(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<ProbePrediction>, ProjectionError> {
        self.local.predictions(device_id).await
    }

    async fn alerts(
        &self,
        device_id: Option<&str>,
        active_only: bool,
    ) -> Result<Vec<AlertRecord>, ProjectionError> {
        self.local.alerts(device_id, active_only).await
    }

    async fn alert(&self, alert_id: &str) -> Result<Option<AlertRecord>, ProjectionError> {
        self.local.alert(alert_id).await
    }

    async fn alert_rules(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<AlertRuleRecord>, ProjectionError> {
        self.local.alert_rules(device_id).await
    }

    async fn history(
        &self,
        device_id: &str,
        probe_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<HistoryPoint>, ProjectionError> {
        self.local
            .history(device_id, probe_id, from_ms, to_ms, limit)
            .await
    }

    async fn history_retained_from(&self) -> Result<Option<i64>, ProjectionError> {
        self.local.history_retained_from().await
    }

    async fn applied_positions(&self, topic: &str) -> Result<BTreeMap<u32, u64>, ProjectionError> {
        self.local.applied_positions(topic).await
    }

    async fn state(&self, key: &str) -> Result<Option<Vec<u8>>, ProjectionError> {
        self.local.state(key).await
    }

    async fn dump(&self) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>, ProjectionError> {
        self.local.dump().await
    }
}

/// Applies changelog partition `partition` to `store` from where the store last saw it,
/// up to `until` (or, with `None`, forever, waiting for new records). Returns the number
/// of batches applied.
async fn apply_partition(
    log: &dyn EventLog,
    store: &dyn ProjectionStore,
    partition: u32,
    until: Option<u64>,
    shutdown: &CancellationToken,
) -> Result<u64, ProcessorError> {
    let from = store
        .applied_positions(CHANGELOG_POSITIONS)
        .await?
        .get(&partition)
        .copied()
        .unwrap_or(0);
    if until.is_some_and(|end| from >= end) {
        return Ok(0);
    }
    let mut reader = log
        .reader(topics::PROJECTIONS_CHANGELOG, partition, from)
        .await?;
    let mut applied = 0;
    loop {
        if until.is_some_and(|end| reader.position() >= end) || shutdown.is_cancelled() {
            return Ok(applied);
        }
        let records = tokio::select! {
            r = reader.next_batch(READ_BATCH, Duration::from_millis(500)) => r?,
            () = shutdown.cancelled() => return Ok(applied),
        };
        // The records read together are applied as one batch (one durable write): their
        // lists concatenated in log order, which every store applies in order. Removing an
        // alert rule does not commute with setting it, so such a batch is applied alone.
        let mut merged = ProjectionBatch::default();
        for record in records {
            if until.is_some_and(|end| record.offset >= end) {
                break;
            }
            // A claim only moves the position on.
            let mut batch = decode(&record.value)
                .map_err(|reason| {
                    ProcessorError::Dataflow(format!(
                        "{}/{partition} at offset {}: {reason}",
                        topics::PROJECTIONS_CHANGELOG,
                        record.offset
                    ))
                })?
                .unwrap_or_default();
            batch
                .applied
                .push((CHANGELOG_POSITIONS.to_owned(), partition, record.offset + 1));
            applied += 1;
            if batch.removed_rules.is_empty() {
                append(&mut merged, batch);
                continue;
            }
            store
                .apply(last_per_key(std::mem::take(&mut merged)))
                .await?;
            store.apply(batch).await?;
        }
        if merged != ProjectionBatch::default() {
            store.apply(last_per_key(merged)).await?;
        }
    }
}

/// Keeps only the last entry per key of each list (the latest values choose themselves by
/// time), so a merged batch says the same to a store that resolves duplicates by order as
/// to one that does not.
fn last_per_key(mut b: ProjectionBatch) -> ProjectionBatch {
    fn keep_last<T, K: Ord>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
        let mut seen = BTreeSet::new();
        let mut kept: Vec<T> = Vec::with_capacity(items.len());
        for item in items.drain(..).rev() {
            if seen.insert(key(&item)) {
                kept.push(item);
            }
        }
        kept.reverse();
        *items = kept;
    }
    keep_last(&mut b.history, |h| {
        (h.device_id.clone(), h.probe_id.clone(), h.event_time)
    });
    keep_last(&mut b.state, |(k, _)| k.clone());
    keep_last(&mut b.devices, |d| d.device_id.clone());
    keep_last(&mut b.cooks, |c| c.cook_id.clone());
    keep_last(&mut b.predictions, |p| {
        (p.device_id.clone(), p.probe_id.clone())
    });
    keep_last(&mut b.alerts, |a| a.alert_id.clone());
    keep_last(&mut b.alert_rules, |r| r.rule_id.clone());
    keep_last(&mut b.applied, |(t, p, _)| (t.clone(), *p));
    b
}

/// Appends `more`'s entries after `into`'s.
fn append(into: &mut ProjectionBatch, more: ProjectionBatch) {
    into.latest.extend(more.latest);
    into.history.extend(more.history);
    into.state.extend(more.state);
    into.devices.extend(more.devices);
    into.cooks.extend(more.cooks);
    into.predictions.extend(more.predictions);
    into.alerts.extend(more.alerts);
    into.alert_rules.extend(more.alert_rules);
    into.removed_rules.extend(more.removed_rules);
    into.applied.extend(more.applied);
}

/// Brings `store` up to the changelog's end for `partitions`: the state handoff of a
/// processor that was just assigned them. Returns the number of batches applied.
pub async fn restore(
    log: &dyn EventLog,
    store: &dyn ProjectionStore,
    partitions: impl IntoIterator<Item = u32>,
    shutdown: &CancellationToken,
) -> Result<u64, ProcessorError> {
    let mut applied = 0;
    for partition in partitions {
        let end = log
            .end_offset(topics::PROJECTIONS_CHANGELOG, partition)
            .await?;
        applied += apply_partition(log, store, partition, Some(end), shutdown).await?;
    }
    Ok(applied)
}

/// Tails every partition of the changelog into `store` until `shutdown` (a gateway's read
/// model). `caught_up` is called once every partition has reached the end it had when
/// following began.
pub async fn follow(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    shutdown: CancellationToken,
    caught_up: impl FnOnce() + Send,
) -> Result<(), ProcessorError> {
    let partitions = log.partitions(topics::PROJECTIONS_CHANGELOG).await?;
    let started = std::time::Instant::now();
    let applied = restore(log.as_ref(), store.as_ref(), 0..partitions, &shutdown).await?;
    tracing::info!(
        batches = applied,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "read model caught up with the projection changelog"
    );
    caught_up();
    let mut tails = tokio::task::JoinSet::new();
    for partition in 0..partitions {
        let (log, store, shutdown) = (log.clone(), store.clone(), shutdown.clone());
        tails.spawn(async move {
            apply_partition(log.as_ref(), store.as_ref(), partition, None, &shutdown).await
        });
    }
    while let Some(joined) = tails.join_next().await {
        joined
            .map_err(|e| ProcessorError::Dataflow(format!("a changelog reader failed: {e}")))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use emberline_projections::HistoryPoint;

    fn point(t: i64, temp: f64) -> HistoryPoint {
        HistoryPoint {
            device_id: "d".into(),
            probe_id: "p".into(),
            event_time: t,
            received_time: t,
            temperature_c: Some(temp),
        }
    }

    #[test]
    fn a_merged_batch_keeps_the_last_entry_per_key_in_log_order() {
        let mut merged = ProjectionBatch::default();
        for (i, batch) in [
            ProjectionBatch {
                history: vec![point(1, 10.0), point(2, 20.0)],
                state: vec![("s".into(), vec![1])],
                applied: vec![("t".into(), 0, 5)],
                ..Default::default()
            },
            ProjectionBatch {
                history: vec![point(2, 21.0)],
                state: vec![("s".into(), vec![2]), ("u".into(), vec![3])],
                applied: vec![("t".into(), 0, 9)],
                ..Default::default()
            },
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(merged.applied.len(), i);
            append(&mut merged, batch);
        }
        let b = last_per_key(merged);
        assert_eq!(b.history, vec![point(1, 10.0), point(2, 21.0)]);
        assert_eq!(b.state, vec![("s".into(), vec![2]), ("u".into(), vec![3])]);
        assert_eq!(b.applied, vec![("t".into(), 0, 9)]);
    }

    #[test]
    fn batches_and_claims_round_trip_and_unknown_formats_are_refused() {
        let batch = ProjectionBatch {
            history: vec![point(1, 10.0)],
            applied: vec![("t".into(), 3, 7)],
            ..Default::default()
        };
        let value = encode(&batch).expect("encode");
        assert_eq!(decode(&value), Ok(Some(batch)));
        assert_eq!(decode(&[CLAIM_V1, b'x']), Ok(None));
        assert!(decode(&[9, 1, 2]).expect_err("newer").contains("newer"));
        assert!(decode(&[]).is_err());
    }
}
