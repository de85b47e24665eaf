//! The conformance suite every [`Source`] kind must pass (feature `testsuite`), as the log
//! has one for its backends.
//!
//! A kind plugs in through a small [`Kind`] adapter: how to build the source against its
//! local stand-in, how to make it emit, and how to make the stand-in misbehave. Each check is
//! a plain async function; [`source_conformance_suite!`] turns them into one `#[tokio::test]`
//! each, so test output names the property that broke:
//!
//! ```ignore
//! emberline_ingest::source_conformance_suite!(mqtt, async { Some(MqttKind::start().await) });
//! ```
//!
//! Every source runs with a real [`EventSink`] on an embedded log (through [`FlakyLog`],
//! which fails appends when told to), so what the checks see is what the log holds.
//!
//! [`source_conformance_suite!`]: crate::source_conformance_suite

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use emberline_log::{
    EmbeddedLog, EventLog, LogError, NewRecord, PartitionReader, Position, Record, topics,
};
use emberline_schemas::EventCodec;
use emberline_schemas::events::ProbeReading;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{EventSink, IngestError, Source};

/// How long a check waits for something the source must do (a reading to arrive, a dead
/// letter to be written). Reached only on failure: generous, for a loaded machine and for
/// the cloud pollers' backoff after a bad answer (2 s, 4 s, 8 s …).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How long a source may take to stop once its shutdown token is cancelled.
pub const SHUTDOWN_WITHIN: Duration = Duration::from_secs(5);

/// How often an emission is repeated while its readings have not arrived: a push source may
/// not be listening yet (an MQTT subscription the test cannot see), and a repeat is harmless.
const REEMIT_EVERY: Duration = Duration::from_secs(1);

/// Append failures a source must live through in [`survives_a_failing_log`].
const FAILURES: usize = 3;

/// A reading a kind promises the log will hold after [`Kind::emit`].
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    /// Its device.
    pub device_id: String,
    /// Its probe.
    pub probe_id: String,
    /// Its temperature, Celsius (to 0.05 °C), or `None` for any.
    pub temperature_c: Option<f64>,
}

impl Expected {
    /// A reading of `device`/`probe` at `temperature_c` (None: any temperature).
    pub fn new(device: &str, probe: &str, temperature_c: Option<f64>) -> Self {
        Self {
            device_id: device.to_owned(),
            probe_id: probe.to_owned(),
            temperature_c,
        }
    }

    fn matches(&self, r: &ProbeReading) -> bool {
        r.device_id == self.device_id
            && r.probe_id == self.probe_id
            && match (self.temperature_c, r.temperature_c) {
                (None, _) => true,
                (Some(want), Some(got)) => (want - got).abs() < 0.05,
                (Some(_), None) => false,
            }
    }
}

/// One bad answer a kind's stand-in gives after [`Kind::misbehave`].
#[derive(Clone, Debug)]
pub struct BadInput {
    /// What it is, for failure messages (e.g. `truncated JSON`).
    pub what: &'static str,
    /// Whether it must become a dead-letter record (otherwise it is a typed error the source
    /// logs and retries, like a 5xx).
    pub dead_letter: bool,
}

/// A source kind under test, with its stand-in.
#[async_trait]
pub trait Kind: Send + Sync {
    /// The kind's name, for messages.
    fn name(&self) -> &'static str;

    /// A fresh source configured against the stand-in. Called once per check.
    async fn build(&self) -> Box<dyn Source>;

    /// Makes the source emit, and returns readings the log must then hold. Called again
    /// while they have not arrived, so repeating it must be harmless.
    async fn emit(&self) -> Vec<Expected>;

    /// The bad answers [`Kind::misbehave`] sets up; empty for a kind that reads nothing
    /// from outside.
    fn bad_inputs(&self) -> Vec<BadInput>;

    /// Makes the stand-in give its bad answers. Called once, before the source starts; the
    /// source meets them before (or while) making its next emission.
    async fn misbehave(&self);
}

/// An [`EventLog`] whose appends fail while [`FlakyLog::fail`] is on — as a broker that is
/// down or a full disk would — remembering the probe readings it refused.
pub struct FlakyLog {
    inner: Arc<EmbeddedLog>,
    failing: AtomicBool,
    failures: tokio::sync::watch::Sender<usize>,
    refused: Mutex<Vec<NewRecord>>,
}

impl FlakyLog {
    /// Wraps `inner`, working.
    pub fn new(inner: Arc<EmbeddedLog>) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
            failures: tokio::sync::watch::Sender::new(0),
            refused: Mutex::new(Vec::new()),
        }
    }

    /// Turns failing on or off.
    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// Waits until at least `n` appends have failed.
    pub async fn failed_at_least(&self, n: usize) {
        let mut rx = self.failures.subscribe();
        tokio::time::timeout(PATIENCE, rx.wait_for(|f| *f >= n))
            .await
            .expect("appends were failing but the source never tried to append")
            .expect("the log is alive");
    }

    /// Probe-reading records whose append failed.
    pub fn refused_readings(&self) -> Vec<NewRecord> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn refuse(&self, topic: &str, records: &[NewRecord]) -> Result<(), LogError> {
        if !self.failing.load(Ordering::SeqCst) {
            return Ok(());
        }
        if topic == topics::PROBE_READINGS {
            self.refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(records.iter().cloned());
        }
        self.failures.send_modify(|f| *f += 1);
        Err(LogError::Storage {
            action: "appending (a failure the conformance suite injected)",
            source: "injected failure".into(),
        })
    }
}

#[async_trait]
impl EventLog for FlakyLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        self.inner.ensure_topic(topic, partitions).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.inner.partitions(topic).await
    }
    async fn append(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Position>, LogError> {
        self.refuse(topic, &records)?;
        self.inner.append(topic, records).await
    }
    async fn append_to(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Position>, LogError> {
        self.refuse(topic, &records)?;
        self.inner.append_to(topic, partition, records).await
    }
    async fn reader(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Box<dyn PartitionReader>, LogError> {
        self.inner.reader(topic, partition, from).await
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.inner.end_offset(topic, partition).await
    }
    async fn store_positions(
        &self,
        consumer: &str,
        topic: &str,
        positions: &BTreeMap<u32, u64>,
    ) -> Result<(), LogError> {
        self.inner.store_positions(consumer, topic, positions).await
    }
    async fn load_positions(
        &self,
        consumer: &str,
        topic: &str,
    ) -> Result<BTreeMap<u32, u64>, LogError> {
        self.inner.load_positions(consumer, topic).await
    }
}

/// Follows one topic of the log: everything appended so far, waiting for more.
struct Tail {
    readers: Vec<Box<dyn PartitionReader>>,
    records: Vec<Record>,
}

impl Tail {
    async fn new(log: &EmbeddedLog, topic: &str) -> Self {
        let partitions = log.partitions(topic).await.expect("partitions");
        let mut readers = Vec::new();
        for p in 0..partitions {
            readers.push(log.reader(topic, p, 0).await.expect("reader"));
        }
        Self {
            readers,
            records: Vec::new(),
        }
    }

    /// Reads what has arrived, waiting up to `wait` in all.
    async fn poll(&mut self, wait: Duration) {
        let each = wait / self.readers.len().max(1) as u32;
        for reader in &mut self.readers {
            let batch = reader.next_batch(10_000, each).await.expect("read");
            self.records.extend(batch);
        }
    }
}

/// A source running on an embedded log behind a [`FlakyLog`].
pub struct World {
    _dir: tempfile::TempDir,
    /// The log the source's sink appends to.
    pub flaky: Arc<FlakyLog>,
    codec: Arc<EventCodec>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), IngestError>>>,
    readings: Tail,
    dead_letters: Tail,
    name: &'static str,
}

impl World {
    /// Builds `kind`'s source (after its stand-in misbehaves, with `misbehave`) and starts
    /// it; with `failing`, the log fails appends from the start.
    pub async fn start(kind: &impl Kind, misbehave: bool, failing: bool) -> Self {
        emberline_common::http::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, codec) = crate::testing::embedded_log(dir.path(), 2)
            .await
            .expect("embedded log");
        let flaky = Arc::new(FlakyLog::new(log.clone()));
        flaky.fail(failing);
        if misbehave {
            kind.misbehave().await;
        }
        let mut source = kind.build().await;
        let shutdown = CancellationToken::new();
        let sink = EventSink::new(flaky.clone(), codec.clone(), shutdown.clone());
        let token = shutdown.clone();
        let task = tokio::spawn(async move { source.run(sink, token).await });
        let readings = Tail::new(&log, topics::PROBE_READINGS).await;
        let dead_letters = Tail::new(&log, topics::DEAD_LETTER).await;
        Self {
            _dir: dir,
            flaky,
            codec,
            shutdown,
            task: Some(task),
            readings,
            dead_letters,
            name: kind.name(),
        }
    }

    /// Every probe reading in the log so far.
    async fn readings(&mut self, wait: Duration) -> Vec<ProbeReading> {
        self.readings.poll(wait).await;
        let mut out = Vec::with_capacity(self.readings.records.len());
        for r in &self.readings.records {
            out.push(
                self.codec
                    .decode::<ProbeReading>(&r.value)
                    .await
                    .expect("a probe reading"),
            );
        }
        out
    }

    /// Fails the check if the source has stopped (it must run until cancelled).
    async fn assert_running(&mut self, when: &str) {
        if self.task.as_ref().is_some_and(|t| t.is_finished())
            && let Some(task) = self.task.take()
        {
            let outcome = match task.await {
                Ok(Ok(())) => "it returned Ok".to_owned(),
                Ok(Err(e)) => format!("it returned an error: {e}"),
                Err(e) => format!("it panicked: {e}"),
            };
            panic!(
                "{}: the source stopped {when} without being asked to: {outcome}",
                self.name
            );
        }
    }

    /// Emits through `kind` (again and again) until the log holds what it promised.
    pub async fn emit_until_seen(&mut self, kind: &impl Kind) -> Vec<ProbeReading> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let expected = kind.emit().await;
            let until = Instant::now() + REEMIT_EVERY;
            loop {
                let readings = self.readings(Duration::from_millis(200)).await;
                if expected
                    .iter()
                    .all(|e| readings.iter().any(|r| e.matches(r)))
                {
                    return readings;
                }
                self.assert_running("before its readings arrived").await;
                assert!(
                    Instant::now() < deadline,
                    "{}: {expected:?} never reached the log; it holds {readings:?}",
                    self.name
                );
                if Instant::now() >= until {
                    break;
                }
            }
        }
    }

    /// Dead-letter records, once there are at least `n` (each parsed from its JSON).
    pub async fn dead_letters_at_least(&mut self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + PATIENCE;
        while self.dead_letters.records.len() < n {
            assert!(
                Instant::now() < deadline,
                "{}: expected at least {n} dead letters, the log holds {}",
                self.name,
                self.dead_letters.records.len()
            );
            self.assert_running("before writing its dead letters").await;
            self.dead_letters.poll(Duration::from_millis(200)).await;
        }
        self.dead_letters
            .records
            .iter()
            .map(|r| serde_json::from_slice(&r.value).expect("a dead letter is JSON"))
            .collect()
    }

    /// Cancels the source and checks it returns `Ok(())` within [`SHUTDOWN_WITHIN`].
    pub async fn stop_promptly(&mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("the source is running");
        match tokio::time::timeout(SHUTDOWN_WITHIN, task).await {
            Err(_) => panic!(
                "{}: still running {SHUTDOWN_WITHIN:?} after its shutdown token fired",
                self.name
            ),
            Ok(Err(e)) => panic!("{}: panicked: {e}", self.name),
            Ok(Ok(Err(e))) => panic!("{}: returned an error on shutdown: {e}", self.name),
            Ok(Ok(Ok(()))) => {}
        }
    }
}

/// (a) It starts and emits: readings reach the log through the sink, and it keeps running.
pub async fn starts_and_emits(kind: &impl Kind) {
    let mut w = World::start(kind, false, false).await;
    let readings = w.emit_until_seen(kind).await;
    assert!(
        readings.iter().all(|r| !r.source.is_empty()),
        "{}: readings carry their source: {readings:?}",
        kind.name()
    );
    w.assert_running("after emitting").await;
    w.stop_promptly().await;
}

/// (b) It stops within [`SHUTDOWN_WITHIN`] of its shutdown token firing, returning `Ok(())`.
pub async fn stops_promptly_when_cancelled(kind: &impl Kind) {
    let mut w = World::start(kind, false, false).await;
    w.emit_until_seen(kind).await;
    w.stop_promptly().await;
}

/// (b) … also while the log is failing and its sink is retrying an append.
pub async fn stops_promptly_while_the_log_is_failing(kind: &impl Kind) {
    let mut w = World::start(kind, false, true).await;
    let flaky = w.flaky.clone();
    // Keep emitting until the source has met the failing log twice, then cancel.
    tokio::select! {
        () = flaky.failed_at_least(2) => {}
        () = async { loop { w.emit_until_seen(kind).await; } } => {}
    }
    w.stop_promptly().await;
}

/// (c) It survives a log whose appends fail for a while: once the log works again,
/// everything it emitted is there — every reading an append was refused for included —
/// and it did not panic or stop.
pub async fn survives_a_failing_log(kind: &impl Kind) {
    let mut w = World::start(kind, false, true).await;
    let flaky = w.flaky.clone();
    let recover = async {
        flaky.failed_at_least(FAILURES).await;
        flaky.fail(false);
    };
    let (readings, ()) = tokio::join!(w.emit_until_seen(kind), recover);
    let refused: BTreeSet<(String, String, i64)> = {
        let mut out = BTreeSet::new();
        for r in flaky.refused_readings() {
            let r: ProbeReading = w.codec.decode(&r.value).await.expect("a probe reading");
            out.insert((r.device_id, r.probe_id, r.event_time));
        }
        out
    };
    // The refused readings may arrive after the one the emission promised.
    let deadline = Instant::now() + PATIENCE;
    let mut readings = readings;
    loop {
        let held: BTreeSet<(String, String, i64)> = readings
            .iter()
            .map(|r| (r.device_id.clone(), r.probe_id.clone(), r.event_time))
            .collect();
        let lost: Vec<_> = refused.difference(&held).collect();
        if lost.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: readings refused by the failing log never reached it: {lost:?}",
            kind.name()
        );
        w.assert_running("while re-appending refused readings")
            .await;
        readings = w.readings(Duration::from_millis(200)).await;
    }
    w.assert_running("after the log recovered").await;
    w.stop_promptly().await;
}

/// (d) Bad answers from outside (malformed or truncated bodies, 5xx, garbage payloads) do
/// not make it panic or stop: each becomes a dead-letter record (with its reason) or a
/// typed error it retries, and good readings after them still arrive.
pub async fn survives_bad_answers(kind: &impl Kind) {
    let bad = kind.bad_inputs();
    assert!(
        !bad.is_empty(),
        "{}: a kind in this check must say how its stand-in misbehaves",
        kind.name()
    );
    let mut w = World::start(kind, true, false).await;
    w.emit_until_seen(kind).await;
    let letters = bad.iter().filter(|b| b.dead_letter).count();
    let dead = w.dead_letters_at_least(letters).await;
    for d in &dead {
        assert!(
            d["reason"].as_str().is_some_and(|r| !r.is_empty())
                && d["source"].as_str().is_some_and(|s| !s.is_empty())
                && (d.get("payload").is_some() || d.get("payload_hex").is_some()),
            "{}: a dead letter names its source and reason and keeps the payload: {d}",
            kind.name()
        );
    }
    w.assert_running("after bad answers").await;
    w.stop_promptly().await;
}

/// Expands to one `#[tokio::test]` per conformance check, inside a module named `$name`.
/// `$kind` is an async expression yielding `Option<impl Kind>`; `None` skips. A list of
/// checks after `;` runs only those (for a kind that reads nothing from outside, which has no
/// bad answers to survive).
#[macro_export]
macro_rules! source_conformance_suite {
    ($name:ident, $kind:expr) => {
        $crate::source_conformance_suite!($name, $kind;
            starts_and_emits,
            stops_promptly_when_cancelled,
            stops_promptly_while_the_log_is_failing,
            survives_a_failing_log,
            survives_bad_answers);
    };
    ($name:ident, $kind:expr; $($case:ident),* $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(kind) = $kind.await {
                        $crate::conformance::$case(&kind).await;
                    }
                }
            )*
        }
    };
}
