//! The Kafka backend, through rdkafka (librdkafka 2.12, built by `rdkafka-sys`).
//!
//! * Appends go through one idempotent producer with `acks=all` and no compression, to the
//!   partition [`crate::partition_for`] picks; an append returns when every record is
//!   acknowledged, so the returned positions are durable on the broker.
//! * Each [`PartitionReader`] is a consumer *assigned* to one partition at an offset: it does
//!   not join a group, so readers never rebalance each other away.
//! * Positions are committed offsets of a consumer group named after the consumer, so Kafka's
//!   own tooling shows Emberline's lag.
//! * Transactions are not used (some Kafka-protocol brokers lack `EndTxn`); exactly-once
//!   effects come from committing positions after idempotent effects are durable.
//! * Topics are created up front by [`EventLog::ensure_topic`]; brokers that auto-create
//!   topics are not relied on. A topic's partition count is looked up once per process and
//!   cached (keys map to partitions by that count, so growing a topic needs a restart of
//!   its producers anyway).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::{EventLog, LogError, NewRecord, PartitionReader, Position, Record, partition_for};

/// How the Kafka backend connects.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// Replication factor for topics Emberline creates.
    pub replication_factor: i32,
    /// Timeout of metadata, offset and commit requests.
    pub request_timeout: Duration,
    /// Further librdkafka properties (security, SASL, …), applied to every client; values
    /// are secrets (a SASL password is one), never shown in `Debug` output.
    pub properties: BTreeMap<String, emberline_common::Secret>,
    /// Put before every topic, consumer and group name on the broker, so several
    /// Emberline installations (or test runs) can share one cluster.
    pub topic_prefix: String,
    /// `retention.ms` of the topics Emberline creates (those of
    /// [`KEEP_FOREVER`](crate::topics::KEEP_FOREVER) aside, which get -1); `None` leaves the
    /// broker's default.
    pub retention_ms: Option<i64>,
}

impl KafkaConfig {
    /// Settings for a broker at `bootstrap_servers` with single-replica topics.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            replication_factor: 1,
            request_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
            topic_prefix: String::new(),
            retention_ms: None,
        }
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.properties {
            config.set(k, v.expose());
        }
        config
    }
}

fn kafka(action: &'static str) -> impl Fn(KafkaError) -> LogError {
    move |e| LogError::Kafka {
        action,
        source: Box::new(e),
    }
}

/// An [`EventLog`] on a Kafka-protocol broker.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// One committing consumer per consumer name.
    committers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    /// Partition counts already looked up: an append must not cost a metadata round trip.
    partitions: Mutex<HashMap<String, u32>>,
}

impl KafkaLog {
    /// Connects to the brokers in `config` (lazily: the first request opens connections).
    pub fn connect(config: KafkaConfig) -> Result<Self, LogError> {
        let producer: FutureProducer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "none")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "60000")
            .create()
            .map_err(kafka("creating the producer"))?;
        let admin = config
            .client()
            .create()
            .map_err(kafka("creating the admin client"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                committers: Mutex::new(HashMap::new()),
                partitions: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn timeout(&self) -> Duration {
        self.inner.config.request_timeout
    }

    /// The broker's name of a topic, consumer or group.
    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.inner.config.topic_prefix)
    }

    fn partitions_blocking(&self, topic: &str) -> Result<u32, LogError> {
        let cache = || {
            self.inner
                .partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        if let Some(n) = cache().get(topic) {
            return Ok(*n);
        }
        let metadata = self
            .inner
            .producer
            .client()
            .fetch_metadata(Some(topic), self.timeout())
            .map_err(kafka("fetching metadata"))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                let n = t.partitions().len() as u32;
                cache().insert(topic.to_owned(), n);
                Ok(n)
            }
            _ => Err(LogError::UnknownTopic(topic.to_owned())),
        }
    }

    fn committer(&self, consumer: &str) -> Result<Arc<BaseConsumer>, LogError> {
        let mut committers = self
            .inner
            .committers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = committers.get(consumer) {
            return Ok(c.clone());
        }
        let c: BaseConsumer = self
            .inner
            .config
            .client()
            .set("group.id", consumer)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka("creating a committing consumer"))?;
        let c = Arc::new(c);
        committers.insert(consumer.to_owned(), c.clone());
        Ok(c)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(KafkaLog) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || f(log))
            .await
            .map_err(|e| LogError::Task(e.to_string()))?
    }

    /// The low and high watermarks of `partition` of the (unprefixed) `topic`, never below 0.
    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        let topic = self.name(topic);
        self.blocking(move |log| {
            let (low, high) = log
                .inner
                .producer
                .client()
                .fetch_watermarks(&topic, partition as i32, log.timeout())
                .map_err(kafka("fetching watermarks"))?;
            Ok((low.max(0) as u64, high.max(0) as u64))
        })
        .await
    }

    /// [`send_all`](Self::send_all) to the (unprefixed) `topic`, recorded in the metrics.
    async fn send_metered(
        &self,
        topic: &str,
        records: Vec<(u32, NewRecord)>,
    ) -> Result<Vec<Position>, LogError> {
        let sized = crate::metrics::size(records.iter().map(|(_, r)| r));
        let started = std::time::Instant::now();
        let result = self.send_all(&self.name(topic), records).await;
        let outcome = result.as_ref().map(Vec::as_slice);
        crate::metrics::record_append("kafka", topic, sized, started.elapsed(), outcome);
        result
    }

    /// Sends records to explicit partitions and waits for every acknowledgement.
    async fn send_all(
        &self,
        topic: &str,
        records: Vec<(u32, NewRecord)>,
    ) -> Result<Vec<Position>, LogError> {
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
        for (partition, record) in &records {
            let mut future_record = FutureRecord::to(topic)
                .partition(*partition as i32)
                .key(&record.key)
                .payload(&record.value)
                .timestamp(record.timestamp_ms);
            loop {
                match self.inner.producer.send_result(future_record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: let librdkafka deliver some, then retry.
                        future_record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(kafka("producing")(e)),
                }
            }
        }
        let mut positions = Vec::with_capacity(pending.len());
        for delivery in futures::future::join_all(pending).await {
            match delivery {
                // A delivery without an offset (-1: the broker acknowledged a retried
                // batch without saying where it is) is no position: the caller retries,
                // and effects are idempotent.
                Ok(Ok(d)) if d.offset < 0 || d.partition < 0 => {
                    return Err(LogError::Kafka {
                        action: "producing",
                        source: format!(
                            "the broker acknowledged a record without its position (partition {}, offset {})",
                            d.partition, d.offset
                        )
                        .into(),
                    });
                }
                Ok(Ok(d)) => positions.push(Position {
                    partition: d.partition as u32,
                    offset: d.offset as u64,
                }),
                Ok(Err((e, _))) => return Err(kafka("producing")(e)),
                Err(_) => {
                    return Err(LogError::Kafka {
                        action: "producing",
                        source: "the producer was dropped before delivery".into(),
                    });
                }
            }
        }
        Ok(positions)
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        let keep_forever = crate::topics::KEEP_FOREVER.contains(&topic);
        let topic = &self.name(topic);
        let mut new = NewTopic::new(
            topic,
            partitions.max(1) as i32,
            TopicReplication::Fixed(self.inner.config.replication_factor),
        );
        let retention = self.inner.config.retention_ms.map(|ms| ms.to_string());
        if keep_forever {
            new = new.set("retention.ms", "-1").set("retention.bytes", "-1");
        } else if let Some(ms) = &retention {
            new = new.set("retention.ms", ms);
        }
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout()));
        let results = self
            .inner
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(kafka("creating a topic"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(LogError::Kafka {
                        action: "creating a topic",
                        source: format!("{name}: {code}").into(),
                    });
                }
            }
        }
        // Metadata can lag a fresh creation for a moment: ask until the topic shows up.
        let topic = topic.to_owned();
        let mut delay = Duration::from_millis(20);
        for _ in 0..20 {
            let t = topic.clone();
            match self.blocking(move |log| log.partitions_blocking(&t)).await {
                Ok(n) => return Ok(n),
                Err(LogError::UnknownTopic(_)) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
        Err(LogError::UnknownTopic(topic))
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        let topic = self.name(topic);
        self.blocking(move |log| log.partitions_blocking(&topic))
            .await
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Position>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let partitions = self.partitions(topic).await?;
        let routed = records
            .into_iter()
            .map(|r| (partition_for(&r.key, partitions), r))
            .collect();
        self.send_metered(topic, routed).await
    }

    async fn append_to(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Position>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let partitions = self.partitions(topic).await?;
        if partition >= partitions {
            return Err(LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions,
            });
        }
        let routed = records.into_iter().map(|r| (partition, r)).collect();
        self.send_metered(topic, routed).await
    }

    async fn reader(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Box<dyn PartitionReader>, LogError> {
        let partitions = self.partitions(topic).await?;
        if partition >= partitions {
            return Err(LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions,
            });
        }
        let consumer: StreamConsumer = self
            .inner
            .config
            .client()
            .set("group.id", "emberline.reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "100")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(kafka("creating a reader"))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.name(topic),
            partition as i32,
            Offset::Offset(from as i64),
        )
        .map_err(kafka("assigning a partition"))?;
        consumer
            .assign(&tpl)
            .map_err(kafka("assigning a partition"))?;
        Ok(Box::new(KafkaReader {
            consumer,
            next: from,
        }))
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        let (_, high) = self.watermarks(topic, partition).await?;
        Ok(high)
    }

    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        let (low, _) = self.watermarks(topic, partition).await?;
        Ok(low)
    }

    async fn delete_before(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<u64, LogError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.name(topic),
            partition as i32,
            Offset::Offset(offset as i64),
        )
        .map_err(kafka("deleting records"))?;
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout()));
        let result = self
            .inner
            .admin
            .delete_records(&tpl, &opts)
            .await
            .map_err(kafka("deleting records"))?;
        for element in result.elements() {
            if let Err(e) = element.error() {
                return Err(kafka("deleting records")(e));
            }
        }
        self.start_offset(topic, partition).await
    }

    async fn store_positions(
        &self,
        consumer: &str,
        topic: &str,
        positions: &BTreeMap<u32, u64>,
    ) -> Result<(), LogError> {
        if positions.is_empty() {
            return Ok(());
        }
        let committer = self.committer(&self.name(consumer))?;
        let topic = self.name(topic);
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in positions {
            tpl.add_partition_offset(&topic, *partition as i32, Offset::Offset(*offset as i64))
                .map_err(kafka("committing positions"))?;
        }
        self.blocking(move |_| {
            committer
                .commit(&tpl, CommitMode::Sync)
                .map_err(kafka("committing positions"))
        })
        .await
    }

    async fn load_positions(
        &self,
        consumer: &str,
        topic: &str,
    ) -> Result<BTreeMap<u32, u64>, LogError> {
        let partitions = self.partitions(topic).await?;
        let committer = self.committer(&self.name(consumer))?;
        let topic = self.name(topic);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&topic, p as i32);
        }
        self.blocking(move |log| {
            let committed = committer
                .committed_offsets(tpl, log.timeout())
                .map_err(kafka("loading positions"))?;
            let mut out = BTreeMap::new();
            for element in committed.elements() {
                if let Offset::Offset(o) = element.offset() {
                    out.insert(element.partition() as u32, o.max(0) as u64);
                }
            }
            Ok(out)
        })
        .await
    }
}

/// A consumer assigned to one partition.
struct KafkaReader {
    consumer: StreamConsumer,
    next: u64,
}

/// Keeps `message` unless it was returned already; advances `next` past it.
fn take(next: &mut u64, message: &rdkafka::message::BorrowedMessage<'_>, out: &mut Vec<Record>) {
    let offset = message.offset().max(0) as u64;
    if offset < *next {
        return; // a re-fetch after a reconnect: already returned
    }
    if offset > *next {
        crate::warn_expired(message.topic(), message.partition() as u32, *next, offset);
    }
    out.push(Record {
        partition: message.partition() as u32,
        offset,
        key: message.key().map(<[u8]>::to_vec).unwrap_or_default(),
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
    });
    *next = offset + 1;
}

/// Errors librdkafka reports while it reconnects by itself: a broker that restarts (or a
/// network that drops for a while) is no reason to stop reading, and a role that stopped
/// would need restarting by hand.
fn reconnecting(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::BrokerNotAvailable
                | RDKafkaErrorCode::NetworkException
        )
    )
}

#[async_trait]
impl PartitionReader for KafkaReader {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.is_empty() {
            let first = match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_) => return Ok(out),
                Ok(Err(e)) if reconnecting(&e) => {
                    tracing::warn!(error = %e, "the broker is unreachable; reading resumes when it is back");
                    continue;
                }
                Ok(result) => result.map_err(kafka("reading"))?,
            };
            take(&mut self.next, &first, &mut out);
        }
        // Then whatever is already buffered, without waiting.
        while out.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => take(&mut self.next, &message, &mut out),
                Some(Err(e)) if reconnecting(&e) => break,
                Some(Err(e)) => return Err(kafka("reading")(e)),
                None => break,
            }
        }
        Ok(out)
    }

    fn position(&self) -> u64 {
        self.next
    }
}
