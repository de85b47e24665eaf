//! The gateway side: query clients and the live trend subscription.
//!
//! The subscription runs on its own task and survives gateway restarts: it reconnects with
//! backoff and resumes from the position after the last update it handed over, so nothing
//! is skipped or repeated across a reconnect.

use std::collections::HashMap;
use std::time::Duration;

use emberline_common::Backoff;
use emberline_proto::v1::alert_service_client::AlertServiceClient;
use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::prediction_service_client::PredictionServiceClient;
use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{StartFrom, SubscribeTrendsRequest, TrendEvent};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::ConnectorError;

/// Clients of the gateway's query and command services, over one lazy channel.
#[derive(Clone)]
pub struct Upstream {
    /// Devices.
    pub devices: DeviceServiceClient<Channel>,
    /// History.
    pub readings: ReadingServiceClient<Channel>,
    /// Cook commands.
    pub cooks: CookServiceClient<Channel>,
    /// Predictions.
    pub predictions: PredictionServiceClient<Channel>,
    /// Alerts and their rules.
    pub alerts: AlertServiceClient<Channel>,
    channel: Channel,
}

impl Upstream {
    /// Clients for `url`; nothing connects until the first call.
    pub fn new(url: &str) -> Result<Self, ConnectorError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ConnectorError::Gateway {
                url: url.into(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        let channel = endpoint.connect_lazy();
        Ok(Self {
            devices: DeviceServiceClient::new(channel.clone()),
            readings: ReadingServiceClient::new(channel.clone()),
            cooks: CookServiceClient::new(channel.clone()),
            predictions: PredictionServiceClient::new(channel.clone()),
            alerts: AlertServiceClient::new(channel.clone()),
            channel,
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

/// Starts the subscription task from `resume` (next offset per partition; empty for "from
/// now").
pub fn subscribe(
    upstream: &Upstream,
    url: &str,
    resume: HashMap<u32, u64>,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Feed> {
    let (tx, rx) = mpsc::channel(4_096);
    // Subscriptions are long-lived: no per-call timeout on this channel.
    let channel = Endpoint::from_shared(url.to_owned())
        .map(|e| e.connect_timeout(Duration::from_secs(5)).connect_lazy())
        .unwrap_or_else(|_| upstream.channel.clone());
    tokio::spawn(run(TrendServiceClient::new(channel), resume, tx, shutdown));
    rx
}

async fn run(
    mut client: TrendServiceClient<Channel>,
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
                Ok(response) => response.into_inner(),
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
