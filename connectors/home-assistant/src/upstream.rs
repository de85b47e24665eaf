//! The gateway side: query clients, the live trend subscription, and the device,
//! prediction and alert subscriptions that say when to re-read them.
//!
//! The trend subscription runs on its own task and survives gateway restarts: it reconnects
//! with backoff and resumes from the position after the last update it handed over, so
//! nothing is skipped or repeated across a reconnect. Device changes, predictions and
//! alerts are pushed too ([`watch_changes`]): each one (and each re-opened subscription,
//! which may have missed some) asks for a re-read at once. Nothing is re-read on a timer.

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
    AlertEvent, DeviceUpdate, PredictionEvent, StartFrom, SubscribeAlertsRequest,
    SubscribeDevicesRequest, SubscribePredictionsRequest, SubscribeTrendsRequest, TrendEvent,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

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
    tls: Option<ClientTlsConfig>,
}

impl Upstream {
    /// Clients for `url`, calling with `token` (an API token of scope `control`); nothing
    /// connects until the first call.
    pub fn new(
        url: &str,
        token: Option<&Secret>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, ConnectorError> {
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
        let endpoint = endpoint(url, ca_file)?
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
            tls: tls_of(url, ca_file)?,
        })
    }
}

/// The TLS settings of an `https://` gateway: its certificate checked against `ca_file`.
fn tls_of(
    url: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<Option<ClientTlsConfig>, ConnectorError> {
    if !url.starts_with("https://") {
        return Ok(None);
    }
    let Some(ca_file) = ca_file else {
        return Err(ConnectorError::Config(format!(
            "{url} is https: set home_assistant.gateway_ca_file to the PEM file its certificate is checked against"
        )));
    };
    let pem = std::fs::read(ca_file).map_err(|e| {
        ConnectorError::Config(format!(
            "reading gateway_ca_file {}: {e}",
            ca_file.display()
        ))
    })?;
    Ok(Some(
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
    ))
}

/// An endpoint for `url`, over TLS when it is `https://`.
fn endpoint(url: &str, ca_file: Option<&std::path::Path>) -> Result<Endpoint, ConnectorError> {
    let gateway_error = |reason: String| ConnectorError::Gateway {
        url: url.into(),
        reason,
    };
    let endpoint =
        Endpoint::from_shared(url.to_owned()).map_err(|e| gateway_error(e.to_string()))?;
    match tls_of(url, ca_file)? {
        Some(tls) => endpoint
            .tls_config(tls)
            .map_err(|e| gateway_error(e.to_string())),
        None => Ok(endpoint),
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
    let endpoint = Endpoint::from_shared(url.to_owned()).and_then(|e| match &upstream.tls {
        Some(tls) => e.tls_config(tls.clone()),
        None => Ok(e),
    });
    endpoint
        .map(|e| e.connect_timeout(Duration::from_secs(5)).connect_lazy())
        .unwrap_or_else(|_| upstream.channel.clone())
}

/// What a pushed change asks the next re-read to show. The processors append a prediction
/// or an alert to the log before their projections hold it, so a re-read right after the
/// push may come too early: the bridge reads again until it shows what was pushed.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// Nothing in particular: a device's description changed (the gateway sends it once its
    /// projections hold it), or a subscription (re)opened and may have missed changes.
    Anything,
    /// The probe's prediction made at `event_time_ms`, or a later one.
    Prediction {
        /// Device id.
        device: String,
        /// Probe id.
        probe: String,
        /// When the pushed prediction was made.
        event_time_ms: i64,
    },
    /// The alert active (raised) or not (cleared).
    Alert {
        /// Device id.
        device: String,
        /// The alert episode.
        alert_id: String,
        /// Raised and not cleared since.
        active: bool,
    },
}

/// Pushed changes a re-read has not caught up with yet, per subscription, at most.
const EXPECTED: usize = 1_024;

/// Subscribes to every device's description, prediction updates and alerts; the receiver
/// gets what each change (or a re-opened subscription) expects a re-read to show.
pub fn watch_changes(
    upstream: &Upstream,
    url: &str,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Expect> {
    let (tx, rx) = mpsc::channel(EXPECTED);
    let channel = streaming_channel(upstream, url);
    let bearer = &upstream.bearer;
    let devices = DeviceServiceClient::with_interceptor(channel.clone(), bearer.clone());
    tokio::spawn(signal_changes(
        "devices",
        move || {
            let mut client = devices.clone();
            async move {
                let request = SubscribeDevicesRequest::default();
                Ok(client.subscribe_devices(request).await?.into_inner())
            }
        },
        |_: &DeviceUpdate| Expect::Anything,
        tx.clone(),
        shutdown.clone(),
    ));
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
        |e: &PredictionEvent| {
            e.prediction
                .as_ref()
                .map_or(Expect::Anything, |p| Expect::Prediction {
                    device: p.device_id.clone(),
                    probe: p.probe_id.clone(),
                    event_time_ms: p.event_time_ms,
                })
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
        |e: &AlertEvent| Expect::Alert {
            device: e.device_id.clone(),
            alert_id: e.alert_id.clone(),
            active: e.raised,
        },
        tx,
        shutdown,
    ));
    rx
}

/// Keeps one subscription open (re-opening with backoff) and sends `tx` what each item
/// expects, and [`Expect::Anything`] at every (re)opening.
async fn signal_changes<T, F, Fut>(
    what: &'static str,
    mut open: F,
    expect: fn(&T) -> Expect,
    tx: mpsc::Sender<Expect>,
    shutdown: CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Streaming<T>, tonic::Status>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let attempt = async {
            let mut stream = open().await.map_err(|s| s.message().to_owned())?;
            // A full channel re-reads soon anyway: what does not fit only loses its
            // second look.
            let _ = tx.try_send(Expect::Anything);
            backoff.reset();
            while let Some(item) = stream.next().await {
                let item = item.map_err(|s| s.message().to_owned())?;
                let _ = tx.try_send(expect(&item));
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
