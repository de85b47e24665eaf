//! The timely wiring of the trend processor: readers, exchanges, the trend operator, the sink.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use emberline_log::{EventLog, topics};
use emberline_projections::ProjectionStore;
use emberline_schemas::events::ProbeReading;
use emberline_schemas::{CodecError, EventCodec};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Input, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ProcessorError;
use crate::partition_feed::{Chunk, InputEvent, Mode, PartitionFeed, RunStats};
use crate::sink::{SinkTopics, TrendSink};
use crate::trend_round::{Reading, States, Updated, load_state, trend_round};

/// Settings of the trend processor.
#[derive(Clone, Debug)]
pub struct TrendConfig {
    /// Topic read: probe readings.
    pub input_topic: String,
    /// Topic written: trend updates (created with the input's partition count).
    pub output_topic: String,
    /// Name under which positions are stored in the log.
    pub consumer: String,
    /// Timely worker threads.
    pub workers: usize,
    /// Most records read from one partition at a time.
    pub batch_size: usize,
    /// Most readings a worker starts one round with, when that many are waiting. A round
    /// costs per probe it touches (the state, the open history minute, the latest value are
    /// written once per round), so a backlog is worked through in large rounds; a trickle
    /// still makes a round of whatever arrived.
    pub round_size: usize,
    /// How long an idle worker waits for input before advancing its round anyway.
    pub idle_wait: Duration,
    /// The input partitions this process owns (a consumer group's share); `None`: all.
    pub partitions: Option<BTreeSet<u32>>,
}

impl Default for TrendConfig {
    fn default() -> Self {
        Self {
            input_topic: topics::PROBE_READINGS.into(),
            output_topic: topics::DERIVED_TRENDS.into(),
            consumer: "processor.trends".into(),
            workers: 2,
            batch_size: 4_096,
            round_size: 32_768,
            idle_wait: Duration::from_millis(50),
            partitions: None,
        }
    }
}

fn key_hash(device: &str, probe: &str) -> u64 {
    // A fixed hasher: the same key must land on the same worker in every process.
    let mut h = FixedHasher::default();
    device.hash(&mut h);
    probe.hash(&mut h);
    h.finish()
}

/// FNV-1a: stable across processes and Rust versions, unlike `DefaultHasher`.
struct FixedHasher(u64);
impl Default for FixedHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}
impl Hasher for FixedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl InputEvent for ProbeReading {
    type Error = CodecError;

    async fn decode(codec: &EventCodec, payload: &[u8]) -> Result<Option<Self>, CodecError> {
        codec.decode(payload).await.map(Some)
    }
}

/// The workers' shared round number.
///
/// A round is complete when every worker's input has moved past it, and each worker moves
/// its own input. Counted per worker, a worker with no input (waiting up to `idle_wait`)
/// holds back the rounds its busy peers start, and since a busy worker keeps only a few
/// rounds in flight, every update then waits out several of its idle peer's waits. So a
/// worker that starts a round with readings publishes it and wakes its peers, and every
/// worker moves its input to at least the newest round published.
struct RoundClock {
    newest: AtomicU64,
    /// One per worker: woken when a peer publishes (a wake-up is kept until taken).
    wakes: Vec<tokio::sync::Notify>,
}

impl RoundClock {
    fn new(workers: usize) -> Self {
        Self {
            newest: AtomicU64::new(0),
            wakes: (0..workers).map(|_| tokio::sync::Notify::new()).collect(),
        }
    }

    /// The round after `epoch`: at least the newest any worker has published.
    fn next(&self, epoch: u64) -> u64 {
        (epoch + 1).max(self.newest.load(Ordering::Acquire))
    }

    /// Worker `index` has moved its input to `epoch` with readings before it: every other
    /// worker is woken to move there too.
    fn publish(&self, epoch: u64, index: usize) {
        self.newest.fetch_max(epoch, Ordering::AcqRel);
        for (i, wake) in self.wakes.iter().enumerate() {
            if i != index {
                wake.notify_one();
            }
        }
    }

    /// Resolves when a peer of worker `index` has published a round.
    async fn woken(&self, index: usize) {
        match self.wakes.get(index) {
            Some(wake) => wake.notified().await,
            None => std::future::pending().await,
        }
    }
}

/// A chunk's records as the dataflow carries them, each counted in `stats`.
fn readings(chunk: Chunk<ProbeReading>, stats: &mut RunStats) -> impl Iterator<Item = Reading> {
    crate::metrics::consumed("trends", &chunk);
    for record in &chunk.records {
        stats.count(&record.input);
    }
    let partition = chunk.partition;
    chunk.records.into_iter().map(move |r| Reading {
        partition,
        offset: r.offset,
        event: r.input.into_event(),
    })
}

fn owns(config: &TrendConfig, partition: u32) -> bool {
    config
        .partitions
        .as_ref()
        .is_none_or(|owned| owned.contains(&partition))
}

/// Runs the trend dataflow on the calling thread's behalf (it blocks until done).
///
/// `runtime` is the tokio runtime the log and store run their I/O on; call this from a
/// blocking context (`spawn_blocking` or a plain thread), never from an async task.
pub fn run_trends(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    codec: Arc<EventCodec>,
    config: TrendConfig,
    mode: Mode,
    shutdown: CancellationToken,
    runtime: Handle,
) -> Result<RunStats, ProcessorError> {
    let (partitions, starts, ends) = runtime.block_on(async {
        let partitions = log.partitions(&config.input_topic).await?;
        let out = log.ensure_topic(&config.output_topic, partitions).await?;
        if out != partitions {
            return Err(ProcessorError::PartitionMismatch {
                input: config.input_topic.clone(),
                input_partitions: partitions,
                output: config.output_topic.clone(),
                output_partitions: out,
            });
        }
        let starts = store.applied_positions(&config.input_topic).await?;
        let mut ends = BTreeMap::new();
        if mode == Mode::CatchUp {
            for p in (0..partitions).filter(|p| owns(&config, *p)) {
                ends.insert(p, log.end_offset(&config.input_topic, p).await?);
            }
        }
        Ok::<_, ProcessorError>((partitions, starts, ends))
    })?;
    tracing::info!(topic = %config.input_topic, partitions, ?starts, ?mode, "trend processor starting");
    let records = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let workers = config.workers.max(1);
    let counters = (records.clone(), rejected.clone());
    let clock = Arc::new(RoundClock::new(workers));
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        // Timers and spawns from this thread belong to the caller's runtime.
        let _runtime_context = runtime.enter();
        let index = worker.index();
        let peers = worker.peers();
        let (tx, mut rx) = mpsc::channel(8);
        let topic: Arc<str> = config.input_topic.as_str().into();
        let consumer: Arc<str> = config.consumer.as_str().into();
        for p in (0..partitions).filter(|p| *p as usize % peers == index && owns(&config, *p)) {
            let feed = PartitionFeed {
                log: log.clone(),
                codec: codec.clone(),
                consumer: consumer.clone(),
                topic: topic.clone(),
                partition: p,
                from: starts.get(&p).copied().unwrap_or(0),
                until: ends.get(&p).copied(),
                batch_size: config.batch_size,
                wake: None,
                shutdown: shutdown.clone(),
            };
            runtime.spawn(feed.run::<ProbeReading>(tx.clone()));
        }
        drop(tx);
        let mut stats = RunStats::default();

        let mut input = InputHandle::new();
        let probe = ProbeHandle::new();
        let mut sink = TrendSink::new(
            log.clone(),
            store.clone(),
            codec.clone(),
            SinkTopics {
                input: config.input_topic.clone(),
                output: config.output_topic.clone(),
                consumer: config.consumer.clone(),
            },
            runtime.clone(),
            shutdown.clone(),
        );
        let store_for_state = store.clone();
        let rt = runtime.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .container::<Vec<Reading>>()
                .unary(
                    Exchange::new(|r: &Reading| match &r.event {
                        Some(e) => key_hash(&e.device_id, &e.probe_id),
                        None => u64::from(r.partition),
                    }),
                    "Trend",
                    move |_capability, _info| {
                        let mut states = States::new();
                        move |input, output| {
                            let mut rounds: BTreeMap<
                                u64,
                                (timely::dataflow::operators::Capability<u64>, Vec<Reading>),
                            > = BTreeMap::new();
                            input.for_each(|cap, data| {
                                if let Some(cap) = cap.retain_least(0) {
                                    let time = *cap.time();
                                    rounds
                                        .entry(time)
                                        .or_insert_with(|| (cap, Vec::new()))
                                        .1
                                        .append(data);
                                }
                            });
                            // Rounds in order; within a round `trend_round` keeps log order.
                            // Each update keeps its round, so the sink sees a partition's
                            // offsets in order across rounds.
                            for (_, (cap, items)) in rounds {
                                let updates = trend_round(&mut states, items, |device, probe| {
                                    load_state(&rt, store_for_state.as_ref(), device, probe)
                                });
                                output.session(&cap).give_iterator(updates.into_iter());
                            }
                        }
                    },
                )
                .container::<Vec<Updated>>()
                .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Exchange::new(|u: &Updated| u64::from(u.reading.partition)),
                    "Sink",
                    move |_capability, _info| {
                        let mut pending: BTreeMap<
                            u64,
                            (timely::dataflow::operators::Capability<u64>, Vec<Updated>),
                        > = BTreeMap::new();
                        move |(input, frontier), output| {
                            input.for_each(|cap, data| {
                                let time = cap.least().copied().unwrap_or_default();
                                if let Some(held) = cap.retain_least(0) {
                                    pending
                                        .entry(time)
                                        .or_insert_with(|| (held, Vec::new()))
                                        .1
                                        .append(data);
                                }
                            });
                            let ready: Vec<u64> = pending
                                .keys()
                                .copied()
                                .filter(|t| !frontier.less_equal(t))
                                .collect();
                            if ready.is_empty() {
                                return;
                            }
                            let mut batch = Vec::new();
                            let mut held = Vec::new();
                            for t in ready {
                                if let Some((cap, items)) = pending.remove(&t) {
                                    batch.extend(items);
                                    held.push(cap);
                                }
                            }
                            sink.write(batch);
                            // Nothing is emitted: the capabilities only tell the probe when
                            // the writes are done.
                            let _ = output;
                            drop(held);
                        }
                    },
                )
                .container::<Vec<()>>()
                .probe_with(&probe);
        });

        let mut epoch: u64 = 0;
        let mut feeding = true;
        // Rounds sent and not yet written: (round, readings in it).
        let mut in_flight: VecDeque<(u64, usize)> = VecDeque::new();
        loop {
            // Keep at most a few rounds, and about one full round of readings, in flight:
            // the sink's writes pace the readers, and a backlog does not pile up in memory.
            loop {
                while in_flight.front().is_some_and(|(t, _)| !probe.less_equal(t)) {
                    in_flight.pop_front();
                }
                let readings: usize = in_flight.iter().map(|(_, n)| n).sum();
                if !probe.less_than(&epoch.saturating_sub(4)) && readings < config.round_size {
                    break;
                }
                worker.step_or_park(Some(Duration::from_millis(5)));
            }
            if shutdown.is_cancelled() || !feeding {
                break;
            }
            let mut got: Vec<Reading> = Vec::new();
            loop {
                match rx.try_recv() {
                    Ok(Ok(chunk)) => got.extend(readings(chunk, &mut stats)),
                    Ok(Err(e)) => return Err(e),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        feeding = false;
                        break;
                    }
                }
                if got.len() >= config.round_size {
                    break;
                }
            }
            if got.is_empty() && feeding {
                worker.step();
                // Until a feed sends, a peer starts a round, or `idle_wait` passes.
                let woken = runtime.block_on(async {
                    tokio::select! {
                        chunk = rx.recv() => Some(chunk),
                        () = clock.woken(index) => None,
                        () = tokio::time::sleep(config.idle_wait) => None,
                    }
                });
                match woken {
                    Some(Some(Ok(chunk))) => got.extend(readings(chunk, &mut stats)),
                    Some(Some(Err(e))) => return Err(e),
                    Some(None) => feeding = false,
                    None => {}
                }
            }
            let started_round = !got.is_empty();
            if started_round {
                in_flight.push_back((epoch, got.len()));
            }
            for reading in got {
                input.send(reading);
            }
            epoch = clock.next(epoch);
            input.advance_to(epoch);
            if started_round {
                clock.publish(epoch, index);
            }
            worker.step();
        }
        drop(input);
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(5)));
        }
        counters.0.fetch_add(stats.records, Ordering::Relaxed);
        counters.1.fetch_add(stats.rejected, Ordering::Relaxed);
        Ok(())
    })
    .map_err(ProcessorError::Dataflow)?;
    for result in guards.join() {
        result.map_err(ProcessorError::Dataflow)??;
    }
    Ok(RunStats {
        records: records.load(Ordering::Relaxed),
        rejected: rejected.load(Ordering::Relaxed),
    })
}

/// Processes `config.input_topic` up to its current end on a blocking thread and returns
/// when the projections and the output topic cover it (replays, rebuilds, tests).
pub async fn catch_up(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    codec: Arc<EventCodec>,
    config: TrendConfig,
) -> Result<RunStats, ProcessorError> {
    let runtime = Handle::current();
    tokio::task::spawn_blocking(move || {
        run_trends(
            log,
            store,
            codec,
            config,
            Mode::CatchUp,
            CancellationToken::new(),
            runtime,
        )
    })
    .await
    .map_err(|e| ProcessorError::Dataflow(format!("the catch-up thread failed: {e}")))?
}
