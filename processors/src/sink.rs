//! Writing a completed round: derived records, then projections, then log positions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use emberline_log::{EventLog, NewRecord};
use emberline_projections::{HistoryPoint, LatestProbe, ProjectionBatch, ProjectionStore, Trend};
use emberline_schemas::EventCodec;
use emberline_schemas::events::TrendUpdated;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::ProcessorError;
use crate::projection_writer::{ProjectionWriter, retry};
use crate::trend_round::{Updated, state_key};

/// Where a sink writes, and what it reports.
pub(crate) struct SinkTopics {
    /// The input topic, whose applied positions the projections record.
    pub(crate) input: String,
    /// The topic trends are appended to.
    pub(crate) output: String,
    /// The name consumer positions are stored under in the log.
    pub(crate) consumer: String,
}

/// One input partition's share of a round, ready to write.
struct PartitionRound {
    partition: u32,
    /// Its derived records, above what the output partition already holds (encoded by
    /// each append attempt, so a retry needs no copy kept aside).
    trends: Vec<TrendUpdated>,
    /// The last input offset of the round, and the next.
    last: u64,
    next: u64,
    batch: ProjectionBatch,
}

/// The sink of one worker. It owns the output partitions whose inputs route to it.
pub(crate) struct TrendSink {
    log: Arc<dyn EventLog>,
    projections: ProjectionWriter,
    codec: Arc<EventCodec>,
    topics: SinkTopics,
    runtime: Handle,
    shutdown: CancellationToken,
    /// Per output partition: the highest source offset already appended.
    appended_up_to: HashMap<u32, Option<u64>>,
    /// Set when shutdown interrupted a failing write: later rounds must not be applied
    /// over the gap, so they are dropped and re-processed after the restart.
    abandoned: bool,
}

impl TrendSink {
    pub(crate) fn new(
        log: Arc<dyn EventLog>,
        store: Arc<dyn ProjectionStore>,
        codec: Arc<EventCodec>,
        topics: SinkTopics,
        runtime: Handle,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            log,
            projections: ProjectionWriter::new(store, "trend"),
            codec,
            topics,
            runtime,
            shutdown,
            appended_up_to: HashMap::new(),
            abandoned: false,
        }
    }

    /// Writes one or more completed rounds.
    pub(crate) fn write(&mut self, mut items: Vec<Updated>) {
        if self.abandoned || items.is_empty() {
            return;
        }
        let _round = crate::metrics::RoundTimer::start("trends");
        items.sort_by_key(|u| (u.reading.partition, u.reading.offset));
        let mut by_partition: BTreeMap<u32, Vec<Updated>> = BTreeMap::new();
        for item in items {
            by_partition
                .entry(item.reading.partition)
                .or_default()
                .push(item);
        }
        // One projection batch per input partition: a batch covers one partition's state
        // and positions, so partitions can move between processes (see `changelog`).
        let mut rounds = Vec::with_capacity(by_partition.len());
        for (partition, items) in by_partition {
            let Some(floor) = self.appended_up_to(partition) else {
                return;
            };
            rounds.push(self.partition_round(partition, items, floor));
        }
        // The derived records of every partition, appended concurrently (an embedded log
        // commits appends that arrive together in one sync), then every projection batch.
        if !self.append_all(&rounds) {
            return;
        }
        let positions: BTreeMap<u32, u64> = rounds.iter().map(|r| (r.partition, r.next)).collect();
        let batches = rounds.into_iter().map(|r| r.batch).collect();
        if !self
            .runtime
            .block_on(self.projections.apply_all(batches, &self.shutdown))
        {
            self.abandoned = true;
            return;
        }
        // Informational (lag, tooling): resumption trusts the projections' positions.
        let (log, consumer, topic) = (
            self.log.clone(),
            self.topics.consumer.clone(),
            self.topics.input.clone(),
        );
        if let Err(e) = self
            .runtime
            .block_on(log.store_positions(&consumer, &topic, &positions))
        {
            tracing::warn!(error = %e, "could not store consumer positions in the log");
        }
    }

    /// What one input partition's part of a round writes: its derived records (those above
    /// `floor`, the highest source offset already appended) and its projection batch. The
    /// latest value is coalesced here, one per probe (the store would keep the same one), and
    /// each reading's names move into its history point rather than being copied.
    fn partition_round(
        &self,
        partition: u32,
        items: Vec<Updated>,
        floor: Option<u64>,
    ) -> PartitionRound {
        let mut batch = ProjectionBatch::default();
        let mut states: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut latest: HashMap<(String, String), LatestProbe> = HashMap::new();
        let mut trends = Vec::new();
        let last = items.last().map(|u| u.reading.offset).unwrap_or_default();
        batch.history.reserve(items.len());
        for item in items {
            let Some(event) = item.reading.event else {
                continue;
            };
            let offset = item.reading.offset;
            let trend = item.figures.as_ref().map(|f| Trend {
                smoothed_c: f.smoothed_c,
                rate_c_per_min: f.rate_c_per_min,
                min_c: f.min_c,
                max_c: f.max_c,
                window_ms: f.window_ms,
                samples: f.samples,
            });
            if let Some(f) = &item.figures
                && floor.is_none_or(|done| offset > done)
                && let Some(temperature_c) = event.temperature_c
            {
                trends.push(TrendUpdated {
                    device_id: event.device_id.clone(),
                    probe_id: event.probe_id.clone(),
                    event_time: event.event_time,
                    temperature_c,
                    smoothed_c: f.smoothed_c,
                    rate_c_per_min: f.rate_c_per_min,
                    min_c: f.min_c,
                    max_c: f.max_c,
                    window_ms: f.window_ms,
                    samples: f.samples as i32,
                    source_offset: offset as i64,
                });
            }
            let value = LatestProbe {
                device_id: String::new(),
                probe_id: String::new(),
                event_time: event.event_time,
                received_time: event.received_time,
                temperature_c: event.temperature_c,
                source: event.source,
                trend,
                source_partition: partition,
                source_offset: offset,
            };
            let key = (event.device_id, event.probe_id);
            if !item.state.is_empty() {
                states.insert(state_key(&key.0, &key.1), item.state);
            }
            batch.history.push(HistoryPoint {
                device_id: key.0.clone(),
                probe_id: key.1.clone(),
                event_time: value.event_time,
                received_time: value.received_time,
                temperature_c: value.temperature_c,
            });
            match latest.get_mut(&key) {
                Some(old) if !value.supersedes(old) => {}
                Some(old) => *old = value,
                None => {
                    latest.insert(key, value);
                }
            }
        }
        batch.latest = latest
            .into_iter()
            .map(|((device_id, probe_id), value)| LatestProbe {
                device_id,
                probe_id,
                ..value
            })
            .collect();
        batch
            .applied
            .push((self.topics.input.clone(), partition, last + 1));
        batch.state = states.into_iter().collect();
        PartitionRound {
            partition,
            trends,
            last,
            next: last + 1,
            batch,
        }
    }

    /// Appends every partition's derived records at once, each retried on its own;
    /// `false` (and the sink abandoned) when one could not be.
    fn append_all(&mut self, rounds: &[PartitionRound]) -> bool {
        let appends = rounds.iter().filter(|r| !r.trends.is_empty()).map(|r| {
            let (log, topic, shutdown) = (
                self.log.clone(),
                self.topics.output.clone(),
                self.shutdown.clone(),
            );
            let partition = r.partition;
            let codec = &self.codec;
            async move {
                let done = retry("appending trends", &shutdown, || {
                    let (log, topic) = (log.clone(), topic.clone());
                    let records = encode_trends(codec, &r.trends);
                    async move {
                        log.append_to(&topic, partition, records)
                            .await
                            .map_err(ProcessorError::from)
                    }
                })
                .await;
                done.map(|_| partition)
            }
        });
        let done = self.runtime.block_on(futures::future::join_all(appends));
        if done.iter().any(Option::is_none) {
            self.abandoned = true;
            return false;
        }
        for round in rounds.iter().filter(|r| !r.trends.is_empty()) {
            self.appended_up_to
                .insert(round.partition, Some(round.last));
        }
        true
    }

    /// The highest source offset already in output `partition` (read once from the log).
    /// `None` (outer) when shut down while the log was unreachable.
    fn appended_up_to(&mut self, partition: u32) -> Option<Option<u64>> {
        if let Some(known) = self.appended_up_to.get(&partition) {
            return Some(*known);
        }
        let (log, codec, topic) = (
            self.log.clone(),
            self.codec.clone(),
            self.topics.output.clone(),
        );
        let found = self.retry("reading the last trend", || {
            let (log, codec, topic) = (log.clone(), codec.clone(), topic.clone());
            async move {
                let end = log.end_offset(&topic, partition).await?;
                if end == 0 {
                    return Ok(None);
                }
                let mut reader = log.reader(&topic, partition, end - 1).await?;
                let records = reader.next_batch(1, Duration::from_secs(30)).await?;
                let Some(last) = records.last() else {
                    return Err(ProcessorError::Log(emberline_log::LogError::Task(format!(
                        "{topic}/{partition}: no record at offset {} below the end",
                        end - 1
                    ))));
                };
                let trend: TrendUpdated = codec.decode(&last.value).await?;
                Ok(Some(trend.source_offset as u64))
            }
        })?;
        self.appended_up_to.insert(partition, found);
        Some(found)
    }

    /// Runs `op` until it succeeds, backing off between failures. Gives up (and abandons
    /// this sink) only when the partition has a new owner or shutdown is requested.
    fn retry<T, F, Fut>(&mut self, what: &'static str, op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProcessorError>>,
    {
        let done = self.runtime.block_on(retry(what, &self.shutdown, op));
        self.abandoned |= done.is_none();
        done
    }
}

/// The records of `trends`, keyed by device. A trend that cannot be encoded is logged and
/// left out (its reading's projections are still written).
fn encode_trends(codec: &EventCodec, trends: &[TrendUpdated]) -> Vec<NewRecord> {
    let mut records = Vec::with_capacity(trends.len());
    for trend in trends {
        match codec.encode(trend) {
            Ok(value) => records.push(NewRecord {
                key: trend.device_id.as_bytes().to_vec(),
                value,
                timestamp_ms: trend.event_time,
            }),
            Err(e) => tracing::error!(
                error = %e,
                offset = trend.source_offset,
                "trend could not be encoded"
            ),
        }
    }
    records
}
