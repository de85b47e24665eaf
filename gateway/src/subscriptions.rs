//! Live subscriptions, tailed from the derived topics and `alerts`.
//!
//! Each subscribed partition is followed through the gateway's shared tail of it
//! ([`crate::tail_hub`]: one reader per partition, whatever the number of subscribers) and
//! forwarded in offset order; a slow client holds back only its own stream, and reads from
//! the log what it fell behind. The stream ends when
//! the client goes away or the gateway shuts down. Every event carries its position, and a
//! `resume` map of next offsets continues after a disconnect with nothing skipped or
//! repeated. The response's [`START_OFFSETS`] header says where each partition started,
//! so a client that lost the stream before its first event can still resume without a gap. The three subscriptions differ only in the topic and how a record becomes an
//! event ([`Tailed`]).

use std::collections::HashMap;
use std::time::Duration;

use emberline_log::{partition_for, topics};
use emberline_proto::v1::trend_service_server::TrendService;
use emberline_proto::v1::{StartFrom, SubscribeTrendsRequest, TrendEvent};
use emberline_schemas::events::TrendUpdated;
use emberline_schemas::{CodecError, EventCodec};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::status::to_status;
use crate::tenancy::Tenant;
use tracing::Instrument;

/// Updates buffered per subscription before the readers wait for the client.
const BUFFER: usize = 1_024;

/// How often an open subscription checks that its credential still proves something: a
/// revoked token, an expired share link or session ends the stream within this.
const RECHECK: Duration = Duration::from_secs(5);

/// Response header of every subscription: where each subscribed partition starts.
pub const START_OFFSETS: &str = emberline_proto::start_offsets::HEADER;

/// An event a subscription streams, made from one record of its topic.
#[tonic::async_trait]
pub(crate) trait Tailed: Sized + Clone + Send + Sync + 'static {
    /// Decodes the record at (`partition`, `offset`).
    async fn decode(
        codec: &EventCodec,
        partition: u32,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Self, CodecError>;
    /// The (qualified) id of the device it concerns, to check and then unqualify.
    fn device_id_mut(&mut self) -> Option<&mut String>;
    /// The same, to look at.
    fn device_id(&self) -> Option<&str>;
    /// When it happened, epoch ms.
    fn event_time_ms(&self) -> i64;
    /// The cook it belongs to (`Some(None)`: of no cook), or `None` for events that know
    /// no cook (trends, bounded by time instead).
    fn cook_id(&self) -> Option<Option<&str>> {
        None
    }
}

/// What to tail: whose, which device (qualified; none: every device of the tenant), from
/// where.
pub(crate) struct Tail {
    pub(crate) tenant: Tenant,
    pub(crate) device_id: Option<String>,
    /// Only events inside this time window (a share link's cook), when set.
    pub(crate) window: Option<(i64, i64)>,
    /// What the caller was admitted with, re-checked while the stream is open.
    pub(crate) credential: Option<crate::auth::Credential>,
    pub(crate) resume: HashMap<u32, u64>,
    pub(crate) start: i32,
}

impl Gateway {
    /// Streams `topic` as `E` events, with the [`START_OFFSETS`] header.
    pub(crate) async fn tail<E: Tailed>(
        &self,
        topic: &'static str,
        r: Tail,
    ) -> Result<Response<ReceiverStream<Result<E, Status>>>, Status> {
        let partitions = self.log.partitions(topic).await.map_err(to_status)?;
        if let Some(p) = r.resume.keys().find(|p| **p >= partitions) {
            return Err(Status::invalid_argument(format!(
                "resume names partition {p}, but {topic} has {partitions}"
            )));
        }
        let wanted = partitions_holding(r.device_id.as_deref(), partitions);
        let start = StartFrom::try_from(r.start).unwrap_or(StartFrom::Unspecified);
        let (tx, rx) = mpsc::channel(BUFFER);
        let open = std::sync::Arc::new(crate::metrics::OpenSubscription::open(topic));
        let mut starts = Vec::with_capacity(wanted.len());
        for partition in wanted {
            let end = self
                .log
                .end_offset(topic, partition)
                .await
                .map_err(to_status)?;
            let from = match (r.resume.get(&partition), start) {
                (Some(next), _) if *next > end => {
                    return Err(Status::out_of_range(format!(
                        "resume offset {next} for partition {partition} is past its end {end}"
                    )));
                }
                (Some(next), _) => *next,
                (None, StartFrom::Earliest) => 0,
                (None, _) => end,
            };
            starts.push((partition, from));
            let mut follower = self.tails.follow::<E>(topic, partition, from).await?;
            let (tx, tenant) = (tx.clone(), r.tenant.clone());
            let (device, window) = (r.device_id.clone(), r.window);
            let (shutdown, open) = (self.shutdown.clone(), open.clone());
            tokio::spawn(async move {
                let _open = open;
                // Another device's events are passed over before they are copied.
                let filter = device.clone();
                let wanted = move |e: &E| {
                    e.device_id()
                        .is_some_and(|id| filter.as_deref().is_none_or(|d| d == id))
                };
                loop {
                    let next = tokio::select! {
                        n = follower.next(&wanted) => n,
                        () = tx.closed() => return,
                        () = shutdown.cancelled() => return,
                    };
                    let (offset, mut event) = match next {
                        Ok(next) => next,
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    };
                    // A share link's caller: its cook's time, and its cook's records.
                    if window
                        .is_some_and(|(from, to)| !(from..=to).contains(&event.event_time_ms()))
                        || event.cook_id().is_some_and(|c| !tenant.sees_cook_id(c))
                    {
                        continue;
                    }
                    // Only the wanted device of the caller's tenant, under the caller's id.
                    let Some(id) = event.device_id_mut() else {
                        continue;
                    };
                    if device.as_deref().is_some_and(|d| d != id.as_str()) || !tenant.unqualify(id)
                    {
                        continue;
                    }
                    // The `deliver` span: the record handed to this subscriber.
                    let span = tracing::info_span!(
                        "deliver",
                        topic = %topic,
                        partition,
                        offset
                    );
                    if tx.send(Ok(event)).instrument(span).await.is_err() {
                        return;
                    }
                }
            });
        }
        if let Some(credential) = r.credential {
            recheck_credential(credential, tx, self.shutdown.clone());
        }
        let mut response = Response::new(ReceiverStream::new(rx));
        let header = emberline_proto::start_offsets::render(&starts)
            .parse()
            .map_err(|_| Status::internal("start offsets are not a valid header value"))?;
        response.metadata_mut().insert(START_OFFSETS, header);
        Ok(response)
    }
}

/// The partitions (of `partitions`) that can hold `device`'s records: all, without one.
pub(crate) fn partitions_holding(device: Option<&str>, partitions: u32) -> Vec<u32> {
    match device {
        None => (0..partitions).collect(),
        Some(device) => vec![partition_for(device.as_bytes(), partitions)],
    }
}

/// Ends the stream behind `tx` with `UNAUTHENTICATED` once `credential` no longer proves
/// anything (checked every [`RECHECK`]), so a revoked token cannot keep a stream open.
pub(crate) fn recheck_credential<T: Send + 'static>(
    credential: crate::auth::Credential,
    tx: mpsc::Sender<Result<T, Status>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RECHECK);
        every.tick().await;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = tx.closed() => return,
                () = shutdown.cancelled() => return,
            }
            if let Some(why) = credential.ended().await {
                let _ = tx.send(Err(Status::unauthenticated(why))).await;
                return;
            }
        }
    });
}

#[tonic::async_trait]
impl TrendService for Gateway {
    type SubscribeTrendsStream = ReceiverStream<Result<TrendEvent, Status>>;

    async fn subscribe_trends(
        &self,
        request: Request<SubscribeTrendsRequest>,
    ) -> Result<Response<Self::SubscribeTrendsStream>, Status> {
        let tenant = Tenant::of(&request)?;
        let credential = crate::auth::Credential::of(&request);
        let r = request.into_inner();
        let tail = Tail {
            credential,
            device_id: tenant.filter(&r.device_id)?,
            window: self.share_window(&tenant).await?,
            tenant,
            resume: r.resume,
            start: r.start,
        };
        self.tail(topics::DERIVED_TRENDS, tail).await
    }
}

#[tonic::async_trait]
impl Tailed for TrendEvent {
    async fn decode(
        codec: &EventCodec,
        partition: u32,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Self, CodecError> {
        let u: TrendUpdated = codec.decode(bytes).await?;
        Ok(TrendEvent {
            partition,
            offset,
            device_id: u.device_id,
            probe_id: u.probe_id,
            event_time_ms: u.event_time,
            temperature_c: u.temperature_c,
            trend: Some(emberline_proto::v1::Trend {
                smoothed_c: u.smoothed_c,
                rate_c_per_min: u.rate_c_per_min,
                min_c: u.min_c,
                max_c: u.max_c,
                window_ms: u.window_ms,
                samples: u.samples.max(0) as u32,
            }),
            source_offset: u.source_offset.max(0) as u64,
        })
    }

    fn device_id_mut(&mut self) -> Option<&mut String> {
        Some(&mut self.device_id)
    }

    fn device_id(&self) -> Option<&str> {
        Some(&self.device_id)
    }

    fn event_time_ms(&self) -> i64 {
        self.event_time_ms
    }
}
