//! The cook processor loop: read the input topics, merge them deterministically, fold them
//! through [`CookBrain`], and write outputs, projections and positions exactly once.
//!
//! * **Partitions**: the three input topics are co-partitioned by device id, and partition
//!   *p* of each is folded on its own — its own [`CookBrain`], sequence numbers, state
//!   (`cook/header/<p>` and the devices' `cook/device/<id>`) and outputs (partition *p* of
//!   the output topics) — so partitions can be shared among processes and move between
//!   them. Clock ticks are written to every partition.
//! * **Merge**: within a partition, one lane per input topic; the next input is the lane
//!   head with the least (server time, topic, offset). In [`Mode::CatchUp`] the merge waits for every
//!   unfinished lane, so a replay of a fixed log always sees one order. Following a live log it
//!   does not wait for a quiet lane (that would stall every alert behind an idle partition);
//!   then the order is by arrival, which equals the replay order unless two inputs race.
//! * **Exactly once**: every output carries the sequence number of the input behind it.
//!   Outputs go to the partition of their device key, in sequence order; on start the last
//!   record of each output partition says up to where it was written, and re-emitted outputs
//!   at or below that are skipped. The fold's state and the applied input positions are
//!   written in one projection batch after the outputs, so a crash anywhere replays the batch
//!   with the same result and no duplicate.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use emberline_log::{EventLog, NewRecord, partition_for, topics};
use emberline_projections::{
    AlertRecord, AlertRuleRecord, ProbePrediction, ProjectionBatch, ProjectionStore,
};
use emberline_schemas::events::{AlertCleared, AlertRaised, PredictionUpdated};
use emberline_schemas::{CodecError, EventCodec, EventKind};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::intel::{CookBrain, CookInput, CookOutput, DeviceIntel};
use crate::ProcessorError;
use crate::partition_feed::{Chunk, Decoded, InputEvent, Mode, PartitionFeed, RunStats, end_for};
use crate::projection_writer::ProjectionWriter;

/// The topics the cook processor reads, in tie-break order.
pub const COOK_INPUTS: [&str; 3] = [
    topics::PROBE_READINGS,
    topics::DEVICE_EVENTS,
    topics::COOK_COMMANDS,
];
/// The header of the single fold of every partition that earlier versions kept; a
/// partition without a header of its own starts from it (an upgrade loses no state).
const LEGACY_HEADER_KEY: &str = "cook/header";

fn header_key(partition: u32) -> String {
    format!("cook/header/{partition}")
}

/// The key of this processor's applied positions of `topic` in the projection store: its
/// own, apart from the other processors reading the same topics.
pub(crate) fn applied_key(topic: &str) -> String {
    format!("cook/{topic}")
}
/// The name the processor reads under, as its dead-letter records give it.
const CONSUMER: &str = "processor.cook";
/// Most records read from one partition at a time.
const BATCH_SIZE: usize = 1_024;
/// Most inputs folded between two writes. Each write stores every changed device's whole
/// state, so a backlog (a restart, a rebuild) is worked through in large batches; live
/// input is written as soon as the partition has nothing more waiting.
const BATCH_INPUTS: usize = 16_384;

fn device_key(id: &str) -> String {
    format!("cook/device/{id}")
}

/// The persisted part of [`CookBrain`] besides the devices.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Header {
    now: i64,
    seq: u64,
    devices: BTreeSet<String>,
}

/// One decoded input record; one without an event (not for this processor, or rejected)
/// only advances the lane.
type Item = Decoded<CookInput>;

fn merge_time(item: &Item) -> i64 {
    item.input.event().map_or(i64::MIN, CookInput::merge_time)
}

struct Lane {
    topic: &'static str,
    rank: usize,
    partition: u32,
    rx: mpsc::Receiver<Result<Chunk<CookInput>, ProcessorError>>,
    buf: VecDeque<Item>,
    closed: bool,
    next_offset: u64,
}

impl Lane {
    /// Moves whatever the feed has sent into the buffer, without waiting.
    fn refill(&mut self) -> Result<(), ProcessorError> {
        while self.buf.is_empty() && !self.closed {
            match self.rx.try_recv() {
                Ok(Ok(chunk)) => {
                    crate::metrics::consumed("cooks", &chunk);
                    self.buf.extend(chunk.records);
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.closed = true,
            }
        }
        Ok(())
    }

    /// Waits for the feed's next chunk (catch-up mode).
    async fn wait(&mut self) -> Result<(), ProcessorError> {
        match self.rx.recv().await {
            Some(Ok(chunk)) => {
                crate::metrics::consumed("cooks", &chunk);
                self.buf.extend(chunk.records);
            }
            Some(Err(e)) => return Err(e),
            None => self.closed = true,
        }
        Ok(())
    }

    fn key(&self) -> Option<(i64, usize, u32, u64)> {
        self.buf
            .front()
            .map(|i| (merge_time(i), self.rank, self.partition, i.offset))
    }
}

/// Runs the cook processor until shut down ([`Mode::Follow`]) or until the ends seen at
/// start are folded ([`Mode::CatchUp`]).
pub async fn run_cook(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    codec: Arc<EventCodec>,
    mode: Mode,
    shutdown: CancellationToken,
) -> Result<RunStats, ProcessorError> {
    run_cook_on(log, store, codec, mode, shutdown, None).await
}

/// [`run_cook`] on the input partitions in `owned` only (a consumer group's share);
/// `None`: all of them. Each partition is folded on its own; the first failure stops all.
pub async fn run_cook_on(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    codec: Arc<EventCodec>,
    mode: Mode,
    shutdown: CancellationToken,
    owned: Option<&BTreeSet<u32>>,
) -> Result<RunStats, ProcessorError> {
    let partitions = log.partitions(topics::PROBE_READINGS).await?;
    for topic in COOK_INPUTS {
        let count = log.partitions(topic).await?;
        if count != partitions {
            return Err(mismatch(topic, count, partitions));
        }
    }
    for topic in [topics::DERIVED_PREDICTIONS, topics::ALERTS] {
        let count = log.ensure_topic(topic, partitions).await?;
        if count != partitions {
            return Err(mismatch(topic, count, partitions));
        }
    }
    let legacy = match store.state(LEGACY_HEADER_KEY).await? {
        Some(bytes) => Some(decode_state::<Header>(LEGACY_HEADER_KEY, &bytes)?),
        None => None,
    };
    let stop = shutdown.child_token();
    let mut runs = tokio::task::JoinSet::new();
    for partition in (0..partitions).filter(|p| owned.is_none_or(|o| o.contains(p))) {
        let run = PartitionRun {
            log: log.clone(),
            store: store.clone(),
            codec: codec.clone(),
            mode,
            shutdown: stop.clone(),
            partition,
            partitions,
            legacy: legacy.clone(),
        };
        runs.spawn(run.run());
    }
    let mut stats = RunStats::default();
    let mut failure = None;
    while let Some(joined) = runs.join_next().await {
        let result = joined
            .map_err(|e| ProcessorError::Dataflow(format!("a cook partition task failed: {e}")))
            .and_then(|r| r);
        match result {
            Ok(s) => stats.add(&s),
            Err(e) => {
                stop.cancel();
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

fn mismatch(topic: &str, count: u32, partitions: u32) -> ProcessorError {
    ProcessorError::PartitionMismatch {
        input: topics::PROBE_READINGS.into(),
        input_partitions: partitions,
        output: topic.into(),
        output_partitions: count,
    }
}

/// The fold of one partition.
struct PartitionRun {
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    codec: Arc<EventCodec>,
    mode: Mode,
    shutdown: CancellationToken,
    partition: u32,
    partitions: u32,
    legacy: Option<Header>,
}

impl PartitionRun {
    async fn run(self) -> Result<RunStats, ProcessorError> {
        let partition = self.partition;
        let notify = Arc::new(Notify::new());
        let mut lanes = Vec::new();
        let mut feeds = Vec::new();
        for (rank, topic) in COOK_INPUTS.into_iter().enumerate() {
            let applied = self.store.applied_positions(&applied_key(topic)).await?;
            let from = applied.get(&partition).copied().unwrap_or(0);
            let (tx, rx) = mpsc::channel(4);
            let feed = PartitionFeed {
                log: self.log.clone(),
                codec: self.codec.clone(),
                consumer: CONSUMER.into(),
                topic: topic.into(),
                partition,
                from,
                until: end_for(self.log.as_ref(), self.mode, topic, partition).await?,
                batch_size: BATCH_SIZE,
                wake: Some(notify.clone()),
                shutdown: self.shutdown.clone(),
            };
            feeds.push(tokio::spawn(feed.run(tx)));
            lanes.push(Lane {
                topic,
                rank,
                partition,
                rx,
                buf: VecDeque::new(),
                closed: false,
                next_offset: from,
            });
        }
        let mut writer = Writer::start(
            self.log.clone(),
            self.store.clone(),
            self.codec.clone(),
            partition,
            self.partitions,
        )
        .await?;
        let mut brain = writer.load_brain(self.legacy.as_ref()).await?;
        tracing::debug!(
            partition,
            seq = brain.seq,
            devices = brain.devices.len(),
            mode = ?self.mode,
            "cook processor starting on a partition"
        );
        let result = merge_loop(
            &mut lanes,
            &mut brain,
            &mut writer,
            self.mode,
            &notify,
            &self.shutdown,
        )
        .await;
        for feed in feeds {
            feed.abort();
        }
        result
    }
}

async fn merge_loop(
    lanes: &mut [Lane],
    brain: &mut CookBrain,
    writer: &mut Writer,
    mode: Mode,
    notify: &Notify,
    shutdown: &CancellationToken,
) -> Result<RunStats, ProcessorError> {
    let mut stats = RunStats::default();
    let mut pending = Pending::default();
    loop {
        if shutdown.is_cancelled() {
            return Ok(stats);
        }
        let notified = notify.notified();
        for lane in lanes.iter_mut() {
            lane.refill()?;
            if mode == Mode::CatchUp {
                while lane.buf.is_empty() && !lane.closed {
                    tokio::select! {
                        r = lane.wait() => r?,
                        () = shutdown.cancelled() => return Ok(stats),
                    }
                }
            }
        }
        let next = lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.key().map(|k| (k, i)))
            .min()
            .map(|(_, i)| i);
        let Some(index) = next else {
            if !pending.is_empty() && !writer.flush(brain, lanes, &mut pending, shutdown).await? {
                return Ok(stats);
            }
            if lanes.iter().all(|l| l.closed) {
                return Ok(stats);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = shutdown.cancelled() => return Ok(stats),
            }
            continue;
        };
        let lane = &mut lanes[index];
        let Some(item) = lane.buf.pop_front() else {
            continue;
        };
        lane.next_offset = item.offset + 1;
        stats.count(&item.input);
        if let Some(input) = item.input.event() {
            pending.fold(brain, input);
        }
        if pending.inputs >= BATCH_INPUTS
            && !writer.flush(brain, lanes, &mut pending, shutdown).await?
        {
            return Ok(stats);
        }
    }
}

/// What the inputs folded since the last write produced.
#[derive(Default)]
struct Pending {
    inputs: usize,
    outputs: Vec<CookOutput>,
    changed: BTreeSet<String>,
    /// Acknowledgements to show on the alert records: (alert id, time, snooze until).
    acks: Vec<(String, i64, Option<i64>)>,
    /// Rules set (`Some`) or removed (`None`), by rule id, in order.
    rules: Vec<(String, Option<AlertRuleRecord>)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.inputs == 0
    }

    fn fold(&mut self, brain: &mut CookBrain, input: &CookInput) {
        // Only rule commands and cook starts and ends change a device's rules: the rest (all
        // readings) skip the before/after comparison.
        let rule_device = match input {
            CookInput::RuleSet(_) | CookInput::CookStarted(_) | CookInput::CookEnded(_) => {
                input.device_id()
            }
            _ => None,
        };
        let rules_before: BTreeSet<String> = rule_device
            .and_then(|d| brain.devices.get(d))
            .map(|d| d.rules.keys().cloned().collect())
            .unwrap_or_default();
        let (outputs, changed) = brain.apply(input);
        self.inputs += 1;
        self.outputs.extend(outputs);
        self.changed.extend(changed);
        if let CookInput::Acknowledged(a) = input {
            self.acks
                .push((a.alert_id.clone(), a.event_time, a.snooze_until));
        }
        let Some(dev) = rule_device.and_then(|d| brain.devices.get(d)) else {
            return;
        };
        for gone in rules_before
            .iter()
            .filter(|id| !dev.rules.contains_key(*id))
        {
            self.rules.push((gone.clone(), None));
        }
        if let CookInput::RuleSet(r) = input
            && let Some(rule) = dev.rules.get(&r.rule_id)
        {
            self.rules.push((
                rule.id.clone(),
                Some(AlertRuleRecord {
                    rule_id: rule.id.clone(),
                    device_id: dev.device_id.clone(),
                    probe_id: rule.probe_id.clone(),
                    cook_id: rule.cook_id.clone(),
                    kind: rule.kind.as_str().to_owned(),
                    threshold: rule.threshold,
                    low: rule.low,
                    high: rule.high,
                    for_s: rule.for_ms as f64 / 1_000.0,
                    hysteresis: rule.hysteresis,
                    repeat_every_s: rule.repeat_every_ms.map(|ms| ms as f64 / 1_000.0),
                    label: rule.label.clone(),
                    set_time: input.merge_time(),
                }),
            ));
        }
    }
}

/// Writes one partition's outputs, projections and positions.
struct Writer {
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    projections: ProjectionWriter,
    codec: Arc<EventCodec>,
    /// The input partition, and so the output partition, of this fold.
    partition: u32,
    /// Partitions of every input and output topic.
    partitions: u32,
    /// Per (output topic, partition): the highest input sequence number already written.
    written: HashMap<(&'static str, u32), i64>,
}

impl Writer {
    async fn start(
        log: Arc<dyn EventLog>,
        store: Arc<dyn ProjectionStore>,
        codec: Arc<EventCodec>,
        partition: u32,
        partitions: u32,
    ) -> Result<Self, ProcessorError> {
        let mut written = HashMap::new();
        for topic in [topics::DERIVED_PREDICTIONS, topics::ALERTS] {
            if let Some(seq) = last_seq(log.as_ref(), &codec, topic, partition).await? {
                written.insert((topic, partition), seq);
            }
        }
        Ok(Self {
            log,
            projections: ProjectionWriter::new(store.clone(), "cook"),
            store,
            codec,
            partition,
            partitions,
            written,
        })
    }

    /// The fold's saved state: the partition's own header, or for a partition that has
    /// none yet, its share of the legacy single fold's.
    async fn load_brain(&self, legacy: Option<&Header>) -> Result<CookBrain, ProcessorError> {
        let key = header_key(self.partition);
        let header: Header = match self.store.state(&key).await? {
            Some(bytes) => decode_state(&key, &bytes)?,
            None => match legacy {
                Some(h) => Header {
                    now: h.now,
                    seq: h.seq,
                    devices: h
                        .devices
                        .iter()
                        .filter(|d| partition_for(d.as_bytes(), self.partitions) == self.partition)
                        .cloned()
                        .collect(),
                },
                None => return Ok(CookBrain::default()),
            },
        };
        let mut brain = CookBrain {
            now: header.now,
            seq: header.seq,
            devices: BTreeMap::new(),
            jump_tick: None,
        };
        for id in header.devices {
            let key = device_key(&id);
            let Some(bytes) = self.store.state(&key).await? else {
                continue;
            };
            let device: DeviceIntel = decode_state(&key, &bytes)?;
            brain.devices.insert(id, device);
        }
        Ok(brain)
    }

    /// Writes what `pending` holds; `false` when shut down while the store was failing.
    async fn flush(
        &mut self,
        brain: &CookBrain,
        lanes: &[Lane],
        pending: &mut Pending,
        shutdown: &CancellationToken,
    ) -> Result<bool, ProcessorError> {
        let pending = std::mem::take(pending);
        tracing::debug!(
            seq = brain.seq,
            inputs = pending.inputs,
            outputs = pending.outputs.len(),
            "cook processor writing a batch"
        );
        self.append_outputs(&pending.outputs).await?;
        let mut batch = ProjectionBatch::default();
        let header = Header {
            now: brain.now,
            seq: brain.seq,
            devices: brain.devices.keys().cloned().collect(),
        };
        batch
            .state
            .push((header_key(self.partition), encode_state(&header)));
        for id in &pending.changed {
            if let Some(dev) = brain.devices.get(id) {
                batch.state.push((device_key(id), encode_state(dev)));
            }
        }
        let mut predictions: BTreeMap<(String, String), ProbePrediction> = BTreeMap::new();
        let mut alerts: BTreeMap<String, AlertRecord> = BTreeMap::new();
        for output in &pending.outputs {
            match output {
                CookOutput::Prediction(p) => {
                    predictions.insert((p.device_id.clone(), p.probe_id.clone()), prediction(p));
                }
                CookOutput::Raised(r) => {
                    let existing = self.alert(&alerts, &r.alert_id).await?;
                    alerts.insert(r.alert_id.clone(), raise(existing, r));
                }
                CookOutput::Cleared(c) => {
                    if let Some(mut a) = self.alert(&alerts, &c.alert_id).await? {
                        a.cleared_time = Some(c.event_time);
                        a.cleared_reason = Some(c.reason.clone());
                        alerts.insert(c.alert_id.clone(), a);
                    }
                }
            }
        }
        for (id, time, until) in &pending.acks {
            if let Some(mut a) = self.alert(&alerts, id).await?
                && a.is_active()
            {
                a.acknowledged_time = Some(*time);
                a.snoozed_until = *until;
                alerts.insert(id.clone(), a);
            }
        }
        batch.predictions = predictions.into_values().collect();
        batch.alerts = alerts.into_values().collect();
        let mut rules: BTreeMap<String, Option<AlertRuleRecord>> = BTreeMap::new();
        for (id, rule) in pending.rules {
            rules.insert(id, rule);
        }
        for (id, rule) in rules {
            match rule {
                Some(r) => batch.alert_rules.push(r),
                None => batch.removed_rules.push(id),
            }
        }
        batch.applied = lanes
            .iter()
            .map(|l| (applied_key(l.topic), l.partition, l.next_offset))
            .collect();
        Ok(self.projections.apply(batch, shutdown).await)
    }

    /// The alert record as this batch or the store has it.
    async fn alert(
        &self,
        batch: &BTreeMap<String, AlertRecord>,
        id: &str,
    ) -> Result<Option<AlertRecord>, ProcessorError> {
        if let Some(a) = batch.get(id) {
            return Ok(Some(a.clone()));
        }
        Ok(self.store.alert(id).await?)
    }

    /// Appends outputs to their partitions in sequence order, skipping what was written
    /// before a restart.
    async fn append_outputs(&mut self, outputs: &[CookOutput]) -> Result<(), ProcessorError> {
        let mut groups: BTreeMap<(&'static str, u32), Vec<(i64, NewRecord)>> = BTreeMap::new();
        for output in outputs {
            let (topic, device, time, seq, value) = match output {
                CookOutput::Prediction(p) => (
                    topics::DERIVED_PREDICTIONS,
                    &p.device_id,
                    p.event_time,
                    p.source_seq,
                    self.codec.encode(p)?,
                ),
                CookOutput::Raised(r) => (
                    topics::ALERTS,
                    &r.device_id,
                    r.event_time,
                    r.source_seq,
                    self.codec.encode(r)?,
                ),
                CookOutput::Cleared(c) => (
                    topics::ALERTS,
                    &c.device_id,
                    c.event_time,
                    c.source_seq,
                    self.codec.encode(c)?,
                ),
            };
            let partition = partition_for(device.as_bytes(), self.partitions);
            debug_assert_eq!(partition, self.partition, "co-partitioned by device id");
            if self
                .written
                .get(&(topic, partition))
                .is_some_and(|done| seq <= *done)
            {
                continue;
            }
            groups.entry((topic, partition)).or_default().push((
                seq,
                NewRecord {
                    key: device.as_bytes().to_vec(),
                    value,
                    timestamp_ms: time,
                },
            ));
        }
        for ((topic, partition), records) in groups {
            let Some(last) = records.last().map(|(seq, _)| *seq) else {
                continue;
            };
            let records = records.into_iter().map(|(_, r)| r).collect();
            self.log.append_to(topic, partition, records).await?;
            self.written.insert((topic, partition), last);
        }
        Ok(())
    }
}

fn prediction(p: &PredictionUpdated) -> ProbePrediction {
    ProbePrediction {
        device_id: p.device_id.clone(),
        probe_id: p.probe_id.clone(),
        cook_id: (!p.cook_id.is_empty()).then(|| p.cook_id.clone()),
        event_time: p.event_time,
        temperature_c: p.temperature_c,
        target_c: p.target_c,
        pit_c: p.pit_c,
        remaining_s: p.remaining_s,
        low_s: p.low_s,
        high_s: p.high_s,
        done_at: p.done_at,
        stall: p.stall,
        phase: p.phase.clone(),
        pit_phase: p.pit_phase.clone(),
        based_on: p.based_on.clone(),
        method: p.method.clone(),
    }
}

fn raise(existing: Option<AlertRecord>, r: &AlertRaised) -> AlertRecord {
    match existing {
        Some(mut a) => {
            a.last_raised_time = r.event_time;
            a.repeats = r.repeat.max(0) as u32;
            a.value = r.value;
            a.message = r.message.clone();
            a.acknowledged_time = None;
            a.snoozed_until = None;
            a
        }
        None => AlertRecord {
            alert_id: r.alert_id.clone(),
            rule_id: r.rule_id.clone(),
            kind: r.kind.clone(),
            device_id: r.device_id.clone(),
            probe_id: r.probe_id.clone(),
            cook_id: r.cook_id.clone(),
            raised_time: r.event_time,
            last_raised_time: r.event_time,
            repeats: r.repeat.max(0) as u32,
            value: r.value,
            threshold: r.threshold,
            message: r.message.clone(),
            cleared_time: None,
            cleared_reason: None,
            acknowledged_time: None,
            snoozed_until: None,
        },
    }
}

fn encode_state<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain structs of numbers, strings and maps into a Vec cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

fn decode_state<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, ProcessorError> {
    postcard::from_bytes(bytes).map_err(|e| {
        ProcessorError::Dataflow(format!(
            "the cook processor's saved state {key} is unreadable ({e}); rebuild the projections to replay the log"
        ))
    })
}

/// The input sequence number of the last record of an output partition.
async fn last_seq(
    log: &dyn EventLog,
    codec: &EventCodec,
    topic: &str,
    partition: u32,
) -> Result<Option<i64>, ProcessorError> {
    let end = log.end_offset(topic, partition).await?;
    if end == 0 {
        return Ok(None);
    }
    let mut reader = log.reader(topic, partition, end - 1).await?;
    let records = reader.next_batch(1, Duration::from_secs(30)).await?;
    // Below the end there is a record: not finding it is a failure, not "nothing written"
    // (which would write everything again).
    let Some(record) = records.first() else {
        return Err(ProcessorError::Log(emberline_log::LogError::Task(format!(
            "{topic}/{partition}: no record at offset {} below the end",
            end - 1
        ))));
    };
    output_seq(codec, &record.value).await
}

/// The input sequence number a cook output record carries (`None` for another record).
pub async fn output_seq(codec: &EventCodec, payload: &[u8]) -> Result<Option<i64>, ProcessorError> {
    let kind = codec.kind_of_learning(payload).await?;
    Ok(match kind {
        Some(EventKind::PredictionUpdated) => {
            Some(codec.decode::<PredictionUpdated>(payload).await?.source_seq)
        }
        Some(EventKind::AlertRaised) => {
            Some(codec.decode::<AlertRaised>(payload).await?.source_seq)
        }
        Some(EventKind::AlertCleared) => {
            Some(codec.decode::<AlertCleared>(payload).await?.source_seq)
        }
        _ => None,
    })
}

impl InputEvent for CookInput {
    type Error = CodecError;

    /// A record of an input topic as a cook input; `None` for events the cook processor
    /// does not use.
    async fn decode(codec: &EventCodec, payload: &[u8]) -> Result<Option<Self>, CodecError> {
        let kind = codec.kind_of_learning(payload).await?;
        Ok(Some(match kind {
            Some(EventKind::ProbeReading) => CookInput::Reading(codec.decode(payload).await?),
            Some(EventKind::DeviceStatus) => CookInput::Status(codec.decode(payload).await?),
            Some(EventKind::DeviceRegistered) => {
                CookInput::Registered(codec.decode(payload).await?)
            }
            Some(EventKind::DeviceRemoved) => CookInput::Removed(codec.decode(payload).await?),
            Some(EventKind::CookStarted) => CookInput::CookStarted(codec.decode(payload).await?),
            Some(EventKind::TargetSet) => CookInput::TargetSet(codec.decode(payload).await?),
            Some(EventKind::CookEnded) => CookInput::CookEnded(codec.decode(payload).await?),
            Some(EventKind::AlertRuleSet) => CookInput::RuleSet(codec.decode(payload).await?),
            Some(EventKind::AlertAcknowledged) => {
                CookInput::Acknowledged(codec.decode(payload).await?)
            }
            Some(EventKind::ClockTick) => CookInput::Tick(codec.decode(payload).await?),
            _ => return Ok(None),
        }))
    }
}
