//! The gateway side: query clients, the live trend subscription, and the prediction and
//! alert subscriptions that say when to re-read them.
//!
//! The trend subscription runs on its own task and survives gateway restarts: it reconnects
//! with backoff and resumes from the position after the last update it handed over, so
//! nothing is skipped or repeated across a reconnect. Prediction and alert updates are
//! pushed too ([`watch_changes`]): each one (and each re-opened subscription, which may have
//! missed some) asks for a re-read at once instead of at the next refresh interval.

use std::collections::HashMap;
use std::time::Duration;

use emberline_common::{Backoff, Secret};
use emberline_proto::v1::alert_service_client::AlertServiceClient;
use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::prediction_service_client::PredictionServiceClient;
use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{
    StartFrom, SubscribeAlertsRequest, SubscribePredictionsRequest, SubscribeTrendsRequest,
    TrendEvent,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::ConnectorError;

/// Puts the connector's API token on every call.
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to the gateway that carries the token.
pub type Link = InterceptedService<Channel, Bearer>;

/// Clients of the gateway's query and command services, over one lazy channel.
#[derive(Clone)]
pub struct Upstream {
    /// Devices.
    pub devices: DeviceServiceClient<Link>,
    /// History.
    pub readings: ReadingServiceClient<Link>,
    /// Cook commands.
    pub cooks: CookServiceClient<Link>,
    /// Predictions.
    pub predictions: PredictionServiceClient<Link>,
    /// Alerts and their rules.
    pub alerts: AlertServiceClient<Link>,
    channel: Channel,
    bearer: Bearer,
}

impl Upstream {
    /// Clients for `url`, calling with `token` (an API token of scope `control`); nothing
    /// connects until the first call.
    pub fn new(url: &str, token: Option<&Secret>) -> Result<Self, ConnectorError> {
        let bearer = Bearer(
            token
                .map(|t| format!("Bearer {}", t.expose()).parse())
                .transpose()
                .map_err(|_| {
                    ConnectorError::Config(
                        "home_assistant.token has characters a header cannot carry".into(),
                    )
                })?,
        );
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ConnectorError::Gateway {
                url: url.into(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        let channel = endpoint.connect_lazy();
        Ok(Self {
            devices: DeviceServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            readings: ReadingServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            cooks: CookServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            predictions: PredictionServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            alerts: AlertServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            channel,
            bearer,
        })
    }
}

/// What the subscription task reports.
#[derive(Debug)]
pub enum Feed {
    /// A subscription is open: what happened before it is in the projections, so a full
    /// re-read now misses nothing.
    Subscribed,
    /// One trend update.
    Update(TrendEvent),
    /// The subscription broke; it is being re-opened.
    Lost(String),
}

/// A channel for subscriptions: long-lived, so no per-call timeout.
fn streaming_channel(upstream: &Upstream, url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .map(|e| e.connect_timeout(Duration::from_secs(5)).connect_lazy())
        .unwrap_or_else(|_| upstream.channel.clone())
}

/// Subscribes to every device's prediction updates and alerts; the receiver gets a signal
/// whenever either changed (or a subscription re-opened). Signals coalesce: at most one
/// waits, since one re-read covers every change before it.
pub fn watch_changes(
    upstream: &Upstream,
    url: &str,
    shutdown: CancellationToken,
) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    let channel = streaming_channel(upstream, url);
    let bearer = &upstream.bearer;
    let predictions = PredictionServiceClient::with_interceptor(channel.clone(), bearer.clone());
    tokio::spawn(signal_changes(
        "predictions",
        move || {
            let mut client = predictions.clone();
            async move {
                let request = SubscribePredictionsRequest {
                    device_id: String::new(),
                    resume: HashMap::new(),
                    start: StartFrom::Latest as i32,
                };
                Ok(client.subscribe_predictions(request).await?.into_inner())
            }
        },
        tx.clone(),
        shutdown.clone(),
    ));
    let alerts = AlertServiceClient::with_interceptor(channel, bearer.clone());
    tokio::spawn(signal_changes(
        "alerts",
        move || {
            let mut client = alerts.clone();
            async move {
                let request = SubscribeAlertsRequest {
                    device_id: String::new(),
                    resume: HashMap::new(),
                    start: StartFrom::Latest as i32,
                };
                Ok(client.subscribe_alerts(request).await?.into_inner())
            }
        },
        tx,
        shutdown,
    ));
    rx
}

/// Keeps one subscription open (re-opening with backoff) and signals `tx` on every item
/// and every (re)opening.
async fn signal_changes<T, F, Fut>(
    what: &'static str,
    mut open: F,
    tx: mpsc::Sender<()>,
    shutdown: CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Streaming<T>, tonic::Status>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let attempt = async {
            let mut stream = open().await.map_err(|s| s.message().to_owned())?;
            // A full channel already holds a signal: this one adds nothing.
            let _ = tx.try_send(());
            backoff.reset();
            while let Some(item) = stream.next().await {
                item.map_err(|s| s.message().to_owned())?;
                let _ = tx.try_send(());
            }
            Err::<(), String>("the gateway ended the stream".to_owned())
        };
        let reason = tokio::select! {
            r = attempt => r.err().unwrap_or_default(),
            () = shutdown.cancelled() => return,
        };
        if tx.is_closed() {
            return;
        }
        tracing::debug!(what, %reason, "change subscription lost; re-opening");
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Starts the subscription task from `resume` (next offset per partition; empty for "from
/// now").
pub fn subscribe(
    upstream: &Upstream,
    url: &str,
    resume: HashMap<u32, u64>,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Feed> {
    let (tx, rx) = mpsc::channel(4_096);
    let channel = streaming_channel(upstream, url);
    let bearer = &upstream.bearer;
    tokio::spawn(run(
        TrendServiceClient::with_interceptor(channel, bearer.clone()),
        resume,
        tx,
        shutdown,
    ));
    rx
}

async fn run(
    mut client: TrendServiceClient<Link>,
    mut resume: HashMap<u32, u64>,
    tx: mpsc::Sender<Feed>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let attempt = async {
            let request = SubscribeTrendsRequest {
                device_id: String::new(),
                resume: resume.clone(),
                start: StartFrom::Latest as i32,
            };
            let mut stream = match client.subscribe_trends(request).await {
                Ok(response) => {
                    // A break before the first update resumes from where this started.
                    emberline_proto::start_offsets::seed(&mut resume, response.metadata());
                    response.into_inner()
                }
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::OutOfRange | tonic::Code::InvalidArgument
                    ) =>
                {
                    // The log was rebuilt or re-partitioned: the old positions mean nothing.
                    tracing::warn!(error = %status.message(), "the saved subscription position is not valid on this gateway; starting from now");
                    resume.clear();
                    return Err(status.message().to_owned());
                }
                Err(status) => return Err(status.message().to_owned()),
            };
            crate::connection("gateway");
            if tx.send(Feed::Subscribed).await.is_err() {
                return Ok(());
            }
            backoff.reset();
            while let Some(item) = stream.next().await {
                let event = item.map_err(|s| s.message().to_owned())?;
                resume.insert(event.partition, event.offset + 1);
                if tx.send(Feed::Update(event)).await.is_err() {
                    return Ok(());
                }
            }
            Err("the gateway ended the stream".to_owned())
        };
        let result = tokio::select! {
            r = attempt => r,
            () = shutdown.cancelled() => return,
        };
        match result {
            Ok(()) => return,
            Err(reason) => {
                crate::connection_lost("gateway");
                if tx.send(Feed::Lost(reason)).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
