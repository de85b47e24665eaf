//! Reading one partition of an input topic for a processor: every processor's feed.
//!
//! A [`PartitionFeed`] reads a partition from a position, decodes each record into the
//! processor's own event type ([`InputEvent`]) and hands the records on in [`Chunk`]s, in
//! offset order. In [`Mode::CatchUp`] it stops at the end the partition had at start; in
//! [`Mode::Follow`] it tails the partition until shut down.
//!
//! One policy for records that do not decode, whichever processor reads them: the record is
//! written to [`topics::DEAD_LETTER`] with where it was, who rejected it and why, and it
//! still travels on as [`Input::Rejected`], so positions move past it and the processor
//! counts it in its [`RunStats`].

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use emberline_log::{EventLog, NewRecord, Record, topics};
use emberline_schemas::EventCodec;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ProcessorError;

/// Whether the processor follows the log forever or stops once caught up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Tail the input until shut down.
    Follow,
    /// Process up to the end offsets seen at start, then stop (replays, benchmarks).
    CatchUp,
}

/// What a run processed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Input records consumed (including rejected ones).
    pub records: u64,
    /// Records sent to the dead-letter topic.
    pub rejected: u64,
}

impl RunStats {
    /// Counts one consumed record.
    pub(crate) fn count<E>(&mut self, input: &Input<E>) {
        self.records += 1;
        if matches!(input, Input::Rejected) {
            self.rejected += 1;
        }
    }

    /// Adds another run's counts.
    pub(crate) fn add(&mut self, other: &RunStats) {
        self.records += other.records;
        self.rejected += other.rejected;
    }
}

/// The offset a feed of `topic`/`partition` stops at in `mode`: the end seen now when
/// catching up, none when following.
pub(crate) async fn end_for(
    log: &dyn EventLog,
    mode: Mode,
    topic: &str,
    partition: u32,
) -> Result<Option<u64>, ProcessorError> {
    Ok(match mode {
        Mode::Follow => None,
        Mode::CatchUp => Some(log.end_offset(topic, partition).await?),
    })
}

/// A processor's own reading of the records of its input topics.
pub(crate) trait InputEvent: Sized + Send + 'static {
    /// Why a record is not one: the reason written to the dead-letter record.
    type Error: Display + Send;

    /// The event a record holds; `Ok(None)` for a well-formed record the processor has no
    /// use for (it only moves the position on).
    fn decode(
        codec: &EventCodec,
        payload: &[u8],
    ) -> impl Future<Output = Result<Option<Self>, Self::Error>> + Send;
}

/// What became of one record.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Input<E> {
    /// It holds an event for the processor.
    Event(E),
    /// It is well-formed but of no use to the processor.
    Ignored,
    /// It did not decode and was dead-lettered.
    Rejected,
}

impl<E> Input<E> {
    /// The event, if the record held one.
    pub(crate) fn event(&self) -> Option<&E> {
        match self {
            Input::Event(e) => Some(e),
            Input::Ignored | Input::Rejected => None,
        }
    }

    /// The event, if the record held one, by value.
    pub(crate) fn into_event(self) -> Option<E> {
        match self {
            Input::Event(e) => Some(e),
            Input::Ignored | Input::Rejected => None,
        }
    }
}

/// One record of a chunk.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Decoded<E> {
    /// Its offset in the partition.
    pub(crate) offset: u64,
    /// What it held.
    pub(crate) input: Input<E>,
}

/// One batch read from one partition: never empty, in offset order.
#[derive(Debug)]
pub(crate) struct Chunk<E> {
    /// The topic read.
    pub(crate) topic: Arc<str>,
    /// The partition read.
    pub(crate) partition: u32,
    /// The records, every one of them (ignored and rejected ones too).
    pub(crate) records: Vec<Decoded<E>>,
}

impl<E> Chunk<E> {
    /// The position after this chunk.
    pub(crate) fn next_offset(&self) -> u64 {
        self.records.last().map_or(0, |r| r.offset + 1)
    }
}

/// Where a feed sends its chunks, or the error that stopped it.
pub(crate) type ChunkSender<E> = mpsc::Sender<Result<Chunk<E>, ProcessorError>>;

/// Reads one partition of one input topic and sends decoded chunks down a channel.
pub(crate) struct PartitionFeed {
    /// The log read.
    pub(crate) log: Arc<dyn EventLog>,
    /// Decodes the records.
    pub(crate) codec: Arc<EventCodec>,
    /// Who reads: named in the dead-letter records.
    pub(crate) consumer: Arc<str>,
    /// The topic read.
    pub(crate) topic: Arc<str>,
    /// The partition read.
    pub(crate) partition: u32,
    /// The first offset read.
    pub(crate) from: u64,
    /// The offset to stop at (exclusive); `None`: follow until shut down.
    pub(crate) until: Option<u64>,
    /// Most records read at a time.
    pub(crate) batch_size: usize,
    /// Woken after each chunk sent and on failure, when the receiver polls several feeds.
    pub(crate) wake: Option<Arc<Notify>>,
    /// Stops the feed.
    pub(crate) shutdown: CancellationToken,
}

impl PartitionFeed {
    /// Feeds `tx` until the end, shutdown, or the receiver's going away; a failure is sent
    /// down the channel as the feed's last message.
    pub(crate) async fn run<E: InputEvent>(self, tx: ChunkSender<E>) {
        if let Err(e) = self.feed(&tx).await {
            let _ = tx.send(Err(e)).await;
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
    }

    async fn feed<E: InputEvent>(&self, tx: &ChunkSender<E>) -> Result<(), ProcessorError> {
        if self.until.is_some_and(|end| self.from >= end) {
            return Ok(());
        }
        let mut reader = self
            .log
            .reader(&self.topic, self.partition, self.from)
            .await?;
        loop {
            if self.until.is_some_and(|end| reader.position() >= end) {
                return Ok(());
            }
            let batch = tokio::select! {
                r = reader.next_batch(self.batch_size, Duration::from_millis(500)) => r?,
                () = self.shutdown.cancelled() => return Ok(()),
            };
            let records = self.decode(batch).await?;
            if records.is_empty() {
                continue;
            }
            let chunk = Chunk {
                topic: self.topic.clone(),
                partition: self.partition,
                records,
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(()); // the processor has stopped
            }
            self.wake();
        }
    }
}

impl PartitionFeed {
    /// Decodes one batch read from the partition; what cannot be decoded goes to the
    /// dead-letter topic. The `process` span names the records' topic, partition and
    /// offsets, so one reading can be followed from its `append` span.
    #[tracing::instrument(
        name = "process",
        skip_all,
        fields(
            consumer = %self.consumer,
            topic = %self.topic,
            partition = self.partition,
            offset = batch.first().map(|r| r.offset),
            last_offset = batch.last().map(|r| r.offset),
            records = batch.len(),
        )
    )]
    async fn decode<E: InputEvent>(
        &self,
        batch: Vec<Record>,
    ) -> Result<Vec<Decoded<E>>, ProcessorError> {
        let mut records = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        for record in batch {
            if self.until.is_some_and(|end| record.offset >= end) {
                break;
            }
            let input = match E::decode(&self.codec, &record.value).await {
                Ok(Some(event)) => Input::Event(event),
                Ok(None) => Input::Ignored,
                Err(reason) => {
                    dead.push(dead_letter(
                        &self.consumer,
                        &self.topic,
                        &record,
                        &reason.to_string(),
                    ));
                    Input::Rejected
                }
            };
            records.push(Decoded {
                offset: record.offset,
                input,
            });
        }
        if !dead.is_empty() {
            tracing::warn!(
                consumer = %self.consumer,
                topic = %self.topic,
                partition = self.partition,
                count = dead.len(),
                "rejected records sent to the dead-letter topic"
            );
            self.log.append(topics::DEAD_LETTER, dead).await?;
        }
        Ok(records)
    }
}

/// A dead-letter record: JSON with where the record was, who rejected it and why, and its
/// bytes.
fn dead_letter(consumer: &str, topic: &str, record: &Record, reason: &str) -> NewRecord {
    let hex: String = record.value.iter().map(|b| format!("{b:02x}")).collect();
    let body = serde_json::json!({
        "topic": topic,
        "partition": record.partition,
        "offset": record.offset,
        "consumer": consumer,
        "reason": reason,
        "payload_hex": hex,
    });
    NewRecord {
        key: record.key.clone(),
        value: body.to_string().into_bytes(),
        timestamp_ms: record.timestamp_ms,
    }
}
