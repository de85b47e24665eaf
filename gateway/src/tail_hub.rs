//! One tail per partition per gateway, shared by every live subscription of it.
//!
//! A subscription used to open its own log reader per partition, so every append woke and
//! was read and decoded once per subscriber. Here the first subscriber of a partition starts
//! a [`Hub`]: one task that reads the partition from its end, decodes each record once and
//! broadcasts it into a ring of [`RING`] events. Each subscriber follows the ring with its
//! own cursor ([`Follower`]). The hub never waits for anyone: a subscriber that falls more
//! than the ring behind (a slow client) loses its place in the ring, not updates — it reads
//! what it missed from the log itself, at its own pace, and then takes the ring's events
//! again. The same catch-up serves a subscriber that starts behind the hub (a `resume`
//! offset, `EARLIEST`). Events are delivered by offset, each once, in order, so the rule is
//! simply: an event above the next offset expected means a gap, read from the log first. The
//! hub stops when its last subscriber has gone.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use emberline_log::{EventLog, PartitionReader};
use emberline_schemas::EventCodec;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::status::to_status;
use crate::subscriptions::Tailed;

/// Events a hub keeps for subscribers that are behind: beyond it they read the log.
pub(crate) const RING: usize = 4_096;
/// Records read from the log at a time, by a hub or by a subscriber catching up.
const READ_BATCH: usize = 256;
/// How long a read waits for records before a hub checks whether anyone still listens.
const IDLE_CHECK: Duration = Duration::from_secs(10);

/// A record of the partition as its subscribers receive it: decoded once, shared.
struct Item<E> {
    offset: u64,
    /// The event, or why the record does not decode (the subscription ends with it).
    event: Result<E, String>,
}

/// Each running hub's sender, by topic and partition, its event type erased.
type Senders = HashMap<(&'static str, u32), Arc<dyn Any + Send + Sync>>;

impl<E: Tailed> Item<E> {
    /// `record` of `partition`, decoded (or why it does not decode).
    async fn decode(codec: &EventCodec, partition: u32, record: &emberline_log::Record) -> Self {
        Item {
            offset: record.offset,
            event: E::decode(codec, partition, record.offset, &record.value)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// The shared tails of one gateway, by topic and partition.
pub(crate) struct TailHubs {
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    shutdown: CancellationToken,
    ring: usize,
    /// Each running hub's sender (a `broadcast::Sender<Arc<Item<E>>>` for the topic's `E`).
    hubs: Mutex<Senders>,
}

impl TailHubs {
    pub(crate) fn new(
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
        shutdown: CancellationToken,
    ) -> Self {
        Self::with_ring(log, codec, shutdown, RING)
    }

    /// Hubs keeping `ring` events (tests make it small to exercise the catch-up).
    pub(crate) fn with_ring(
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
        shutdown: CancellationToken,
        ring: usize,
    ) -> Self {
        Self {
            log,
            codec,
            shutdown,
            ring: ring.max(1),
            hubs: Mutex::default(),
        }
    }

    /// Hubs running now (one per partition someone follows).
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.hubs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Follows `topic`/`partition` from offset `from`: every record from there on, once, in
    /// order, through the partition's hub.
    pub(crate) async fn follow<E: Tailed>(
        self: &Arc<Self>,
        topic: &'static str,
        partition: u32,
        from: u64,
    ) -> Result<Follower<E>, Status> {
        // Into the ring first, then the log's end: whatever the ring starts after, the
        // catch-up below reads up to at least there.
        let ring = self.subscribe::<E>(topic, partition).await?;
        let end = self
            .log
            .end_offset(topic, partition)
            .await
            .map_err(to_status)?;
        Ok(Follower {
            hubs: self.clone(),
            topic,
            partition,
            next: from,
            ring,
            catch_up: (from < end).then_some(CatchUp {
                to: end,
                reader: None,
            }),
            ready: VecDeque::new(),
            held: None,
        })
    }

    /// A receiver of the partition's hub, starting the hub if none runs.
    async fn subscribe<E: Tailed>(
        self: &Arc<Self>,
        topic: &'static str,
        partition: u32,
    ) -> Result<broadcast::Receiver<Arc<Item<E>>>, Status> {
        if let Some(rx) = self.existing::<E>(topic, partition) {
            return Ok(rx);
        }
        let from = self
            .log
            .end_offset(topic, partition)
            .await
            .map_err(to_status)?;
        let reader = self
            .log
            .reader(topic, partition, from)
            .await
            .map_err(to_status)?;
        let mut hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        // Another subscriber may have started it meanwhile.
        if let Some(sender) = hubs
            .get(&(topic, partition))
            .and_then(|s| s.clone().downcast::<broadcast::Sender<Arc<Item<E>>>>().ok())
        {
            return Ok(sender.subscribe());
        }
        let (sender, rx) = broadcast::channel(self.ring);
        hubs.insert((topic, partition), Arc::new(sender.clone()));
        drop(hubs);
        let hub = Hub {
            hubs: self.clone(),
            topic,
            partition,
            sender,
        };
        tokio::spawn(hub.run(reader));
        Ok(rx)
    }

    fn existing<E: Tailed>(
        &self,
        topic: &'static str,
        partition: u32,
    ) -> Option<broadcast::Receiver<Arc<Item<E>>>> {
        let hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = hubs
            .get(&(topic, partition))?
            .clone()
            .downcast::<broadcast::Sender<Arc<Item<E>>>>()
            .ok()?;
        Some(sender.subscribe())
    }
}

/// The one reader of a partition, broadcasting what it reads.
struct Hub<E> {
    hubs: Arc<TailHubs>,
    topic: &'static str,
    partition: u32,
    sender: broadcast::Sender<Arc<Item<E>>>,
}

impl<E: Tailed> Hub<E> {
    async fn run(self, mut reader: Box<dyn PartitionReader>) {
        loop {
            if self.retire() {
                return;
            }
            let batch = tokio::select! {
                b = reader.next_batch(READ_BATCH, IDLE_CHECK) => b,
                () = self.hubs.shutdown.cancelled() => return self.remove(),
            };
            let records = match batch {
                Ok(records) => records,
                Err(e) => {
                    // Its followers end with an error naming the partition (clients resume
                    // from their last offset); the next subscriber starts a new hub.
                    tracing::warn!(topic = self.topic, partition = self.partition, error = %e, "shared tail failed; its subscribers read on their own");
                    return self.remove();
                }
            };
            for record in records {
                let item = Item::decode(&self.hubs.codec, self.partition, &record).await;
                // No receiver: nobody to tell; `retire` notices.
                let _ = self.sender.send(Arc::new(item));
            }
        }
    }

    /// Stops the hub when nobody follows it any more; checked under the map's lock, so a
    /// subscriber either joins this hub before or starts a new one after.
    fn retire(&self) -> bool {
        let mut hubs = self
            .hubs
            .hubs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.sender.receiver_count() > 0 {
            return false;
        }
        hubs.remove(&(self.topic, self.partition));
        true
    }

    fn remove(&self) {
        let mut hubs = self
            .hubs
            .hubs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Dropping the sender closes the ring: followers then read the log themselves.
        hubs.remove(&(self.topic, self.partition));
    }
}

/// A subscriber behind where it must be: reading the log itself up to `to`.
struct CatchUp {
    to: u64,
    reader: Option<Box<dyn PartitionReader>>,
}

/// One subscriber's place in a partition: the next offset it expects, its cursor in the
/// hub's ring, and a catch-up from the log while it is behind.
pub(crate) struct Follower<E> {
    hubs: Arc<TailHubs>,
    topic: &'static str,
    partition: u32,
    next: u64,
    ring: broadcast::Receiver<Arc<Item<E>>>,
    catch_up: Option<CatchUp>,
    /// Decoded by the catch-up, not yet handed out.
    ready: VecDeque<Item<E>>,
    /// The ring's event that revealed a gap, handed out once the gap is read.
    held: Option<Arc<Item<E>>>,
}

impl<E: Tailed> Follower<E> {
    /// The next record's offset and event that is `wanted`, in offset order; an error ends
    /// the subscription. Unwanted events are passed over without being copied.
    pub(crate) async fn next(
        &mut self,
        wanted: &(dyn Fn(&E) -> bool + Send + Sync),
    ) -> Result<(u64, E), Status> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                if let Some(out) = self.hand_out(&item, wanted) {
                    return out;
                }
                continue;
            }
            if self.catch_up.is_some() {
                self.read_log().await?;
                continue;
            }
            if let Some(item) = self.held.take() {
                if item.offset >= self.next
                    && let Some(out) = self.hand_out(&item, wanted)
                {
                    return out;
                }
                continue;
            }
            match self.ring.recv().await {
                Ok(item) if item.offset < self.next => {}
                Ok(item) if item.offset > self.next => {
                    self.catch_up = Some(CatchUp {
                        to: item.offset,
                        reader: None,
                    });
                    self.held = Some(item);
                }
                Ok(item) => {
                    if let Some(out) = self.hand_out(&item, wanted) {
                        return out;
                    }
                }
                // Fell behind the ring: the next event shows the gap, read from the log.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    // Shutdown, or the hub's read failed (logged there): the client resumes
                    // from its last offset.
                    return Err(if self.hubs.shutdown.is_cancelled() {
                        Status::unavailable("the gateway is shutting down")
                    } else {
                        Status::unavailable(format!(
                            "the live tail of {}/{} failed; resume from the last offset received",
                            self.topic, self.partition
                        ))
                    });
                }
            }
        }
    }

    /// Moves past `item`; its event when wanted, or the error that ends the subscription.
    fn hand_out(
        &mut self,
        item: &Item<E>,
        wanted: &(dyn Fn(&E) -> bool + Send + Sync),
    ) -> Option<Result<(u64, E), Status>> {
        self.next = item.offset + 1;
        match &item.event {
            Ok(event) if wanted(event) => Some(Ok((item.offset, event.clone()))),
            Ok(_) => None,
            Err(e) => Some(Err(Status::data_loss(format!(
                "{}/{} offset {}: {e}",
                self.topic, self.partition, item.offset
            )))),
        }
    }

    /// Reads one batch of the gap from the log; ends the catch-up at its target.
    async fn read_log(&mut self) -> Result<(), Status> {
        let Some(catch_up) = self.catch_up.as_mut() else {
            return Ok(());
        };
        if self.next >= catch_up.to {
            self.catch_up = None;
            return Ok(());
        }
        let reader = match &mut catch_up.reader {
            Some(reader) => reader,
            None => catch_up.reader.insert(
                self.hubs
                    .log
                    .reader(self.topic, self.partition, self.next)
                    .await
                    .map_err(to_status)?,
            ),
        };
        // The records up to `to` exist: the wait only covers a remote log's fetch.
        let records = reader
            .next_batch(READ_BATCH, Duration::from_secs(30))
            .await
            .map_err(to_status)?;
        let to = catch_up.to;
        if records.is_empty() || reader.position() >= to {
            // Read up to the target (or retention removed the rest of the gap).
            self.catch_up = None;
        }
        for record in records.into_iter().filter(|r| r.offset < to) {
            let item = Item::decode(&self.hubs.codec, self.partition, &record).await;
            self.ready.push_back(item);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emberline_log::{EmbeddedLog, NewRecord, topics};
    use emberline_proto::v1::TrendEvent;
    use emberline_schemas::EmbeddedRegistry;
    use emberline_schemas::events::TrendUpdated;

    const TOPIC: &str = topics::DERIVED_TRENDS;

    async fn world(
        dir: &std::path::Path,
        ring: usize,
    ) -> (Arc<EmbeddedLog>, Arc<EventCodec>, Arc<TailHubs>) {
        let log = Arc::new(EmbeddedLog::open(&dir.join("log.redb")).expect("log"));
        let registry = EmbeddedRegistry::shared(log.handle());
        let codec = Arc::new(
            EventCodec::connect(Arc::new(registry))
                .await
                .expect("codec"),
        );
        log.ensure_topic(TOPIC, 1).await.expect("topic");
        let hubs = Arc::new(TailHubs::with_ring(
            log.clone(),
            codec.clone(),
            CancellationToken::new(),
            ring,
        ));
        (log, codec, hubs)
    }

    /// Appends trend updates numbered `from..to` (the number is the event time).
    async fn append(log: &EmbeddedLog, codec: &EventCodec, from: i64, to: i64) {
        let records = (from..to)
            .map(|n| NewRecord {
                key: b"grill".to_vec(),
                value: codec
                    .encode(&TrendUpdated {
                        device_id: "grill".into(),
                        probe_id: "pit".into(),
                        event_time: n,
                        temperature_c: 100.0,
                        smoothed_c: 100.0,
                        rate_c_per_min: None,
                        min_c: 100.0,
                        max_c: 100.0,
                        window_ms: 60_000,
                        samples: 1,
                        source_offset: n,
                    })
                    .expect("encode"),
                timestamp_ms: n,
            })
            .collect();
        log.append_to(TOPIC, 0, records).await.expect("append");
    }

    /// Takes `n` events, checking each is the next offset and carries its own record.
    async fn take(follower: &mut Follower<TrendEvent>, from: u64, n: u64) {
        for expected in from..from + n {
            let (offset, event) = follower.next(&|_| true).await.expect("event");
            assert_eq!(offset, expected, "events come once each, in offset order");
            assert_eq!(
                event.event_time_ms, expected as i64,
                "the record at {offset}"
            );
        }
    }

    #[tokio::test]
    async fn followers_share_one_reader_and_a_slow_one_loses_no_update() {
        let dir = tempfile::tempdir().expect("dir");
        // A ring of 8: the slow follower falls far behind it.
        let (log, codec, hubs) = world(dir.path(), 8).await;
        append(&log, &codec, 0, 5).await;

        let mut from_start = hubs
            .follow::<TrendEvent>(TOPIC, 0, 0)
            .await
            .expect("follow");
        let mut live = hubs
            .follow::<TrendEvent>(TOPIC, 0, 5)
            .await
            .expect("follow");
        let mut slow = hubs
            .follow::<TrendEvent>(TOPIC, 0, 2)
            .await
            .expect("follow");
        assert_eq!(hubs.running(), 1, "one shared reader for three followers");

        // Two followers keep up while 200 more updates are appended in batches of 10; the
        // third reads nothing meanwhile.
        let writer = {
            let (log, codec) = (log.clone(), codec.clone());
            tokio::spawn(async move {
                for batch in 0..20 {
                    append(&log, &codec, 5 + batch * 10, 15 + batch * 10).await;
                }
            })
        };
        tokio::join!(take(&mut from_start, 0, 205), take(&mut live, 5, 200));
        writer.await.expect("writer");
        assert_eq!(hubs.running(), 1);

        // The slow one then gets every update from where it started, once, in order —
        // most of them read back from the log — and carries on live.
        take(&mut slow, 2, 203).await;
        append(&log, &codec, 205, 206).await;
        for follower in [&mut from_start, &mut live, &mut slow] {
            take(follower, 205, 1).await;
        }

        // With nobody left, the reader stops (at its next record).
        drop((from_start, live, slow));
        append(&log, &codec, 206, 207).await;
        tokio::time::timeout(Duration::from_secs(30), async {
            while hubs.running() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the hub stops once unfollowed");
        // And the next follower starts a new one.
        let mut again = hubs
            .follow::<TrendEvent>(TOPIC, 0, 6)
            .await
            .expect("follow");
        take(&mut again, 6, 201).await;
        assert_eq!(hubs.running(), 1);
    }

    #[tokio::test]
    async fn a_record_that_does_not_decode_ends_the_subscription_there() {
        let dir = tempfile::tempdir().expect("dir");
        let (log, codec, hubs) = world(dir.path(), 8).await;
        let mut follower = hubs
            .follow::<TrendEvent>(TOPIC, 0, 0)
            .await
            .expect("follow");
        append(&log, &codec, 0, 2).await;
        log.append_to(
            TOPIC,
            0,
            vec![NewRecord {
                key: b"grill".to_vec(),
                value: b"not avro".to_vec(),
                timestamp_ms: 2,
            }],
        )
        .await
        .expect("append");
        take(&mut follower, 0, 2).await;
        let status = follower
            .next(&|_| true)
            .await
            .expect_err("the garbage record");
        assert_eq!(status.code(), tonic::Code::DataLoss);
        assert!(
            status.message().contains("offset 2"),
            "{}",
            status.message()
        );
    }
}
