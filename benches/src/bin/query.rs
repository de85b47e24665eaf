//! Query load driver: `GetLatest` (or, with `--history PROBE`, the last hour of one probe's
//! `GetHistory`) against a running gateway, either one after another over one connection
//! (`--sequential N`: the floor every unary call pays) or at a fixed request rate whatever
//! the answers' speed (open loop, so queueing shows as latency instead of as a lower rate),
//! and prints latency percentiles.
//!
//! Run `emberline up` (release for figures worth quoting), then:
//! `cargo run --release -p emberline-benches --bin query -- --addr http://127.0.0.1:50051 --device sim-1 --sequential 2000`
//! or `… --rate 5000 --seconds 10`. With sign-in on (the default), pass an API token:
//! `--token emt_…` (`emberline token create bench --scope read`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use emberline_benches::Flags;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use emberline_proto::v1::{GetHistoryRequest, GetLatestRequest};
use tonic::transport::Channel;

const HELP: &str = "query --addr URL --device ID [--history PROBE] [--token T] [--sequential N] [--rate PER_S --seconds S]";

/// The `authorization` value of every request, when a token was given.
type Auth = Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>;

/// `message` carrying `auth`.
fn request<T>(message: T, auth: &Auth) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = auth {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    request
}

/// The call measured.
#[derive(Clone)]
enum Query {
    /// `GetLatest` of a device.
    Latest { device: String },
    /// `GetHistory` of one probe over the hour before the call.
    History { device: String, probe: String },
}

impl Query {
    fn name(&self) -> &'static str {
        match self {
            Query::Latest { .. } => "GetLatest",
            Query::History { .. } => "GetHistory (1 h)",
        }
    }

    /// Makes the call once over `channel`; the points a history answered.
    async fn call(&self, channel: &Channel, auth: &Auth) -> Result<usize, tonic::Status> {
        match self {
            Query::Latest { device } => {
                let message = GetLatestRequest {
                    device_id: device.clone(),
                };
                let answer = DeviceServiceClient::new(channel.clone())
                    .get_latest(request(message, auth))
                    .await?;
                Ok(answer.into_inner().probes.len())
            }
            Query::History { device, probe } => {
                let now = emberline_common::clock::now_ms();
                let message = GetHistoryRequest {
                    device_id: device.clone(),
                    probe_id: probe.clone(),
                    from_ms: now - 3_600_000,
                    to_ms: now,
                    limit: 0,
                    step_ms: 0,
                };
                let answer = ReadingServiceClient::new(channel.clone())
                    .get_history(request(message, auth))
                    .await?;
                Ok(answer.into_inner().points.len())
            }
        }
    }
}

struct Args {
    addr: String,
    device: String,
    history: Option<String>,
    sequential: Option<u64>,
    rate: Option<u64>,
    seconds: u64,
    token: Option<String>,
}

fn args() -> Result<Args> {
    let mut out = Args {
        addr: "http://127.0.0.1:50051".into(),
        device: "sim-1".into(),
        history: None,
        sequential: None,
        rate: None,
        seconds: 10,
        token: None,
    };
    let mut flags = Flags::new(HELP);
    while let Some(flag) = flags.next_flag() {
        let f = flag.as_str();
        match f {
            "--addr" => out.addr = flags.value(f)?,
            "--device" => out.device = flags.value(f)?,
            "--history" => out.history = Some(flags.value(f)?),
            "--sequential" => out.sequential = Some(flags.parse(f)?),
            "--rate" => out.rate = Some(flags.parse(f)?),
            "--seconds" => out.seconds = flags.parse(f)?,
            "--token" => out.token = Some(flags.value(f)?),
            other => return Err(flags.unknown(other)),
        }
    }
    if out.sequential.is_none() && out.rate.is_none() {
        out.sequential = Some(1_000);
    }
    Ok(out)
}

/// p50, p99, p99.9 and max of `samples`, ms.
fn percentiles(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "no request answered".into();
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms over {} requests",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0),
        samples.len()
    )
}

async fn sequential(channel: &Channel, query: &Query, auth: &Auth, n: u64) -> Result<()> {
    let mut samples = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let started = Instant::now();
        query.call(channel, auth).await?;
        samples.push(started.elapsed());
    }
    tracing::info!(
        "{} one after another: {}",
        query.name(),
        percentiles(&mut samples)
    );
    Ok(())
}

async fn open_loop(
    channel: &Channel,
    query: &Query,
    auth: &Auth,
    rate: u64,
    seconds: u64,
) -> Result<()> {
    let every = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..total {
        ticker.tick().await;
        let (channel, query, auth) = (channel.clone(), query.clone(), auth.clone());
        // Latency counts from when the request was due, not from when it could be sent.
        let due = Instant::now();
        tasks.spawn(async move { query.call(&channel, &auth).await.map(|_| due.elapsed()) });
    }
    let mut samples = Vec::with_capacity(total as usize);
    let mut failed = 0u64;
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(d) => samples.push(d),
            Err(_) => failed += 1,
        }
    }
    tracing::info!(
        "{} at {rate}/s for {seconds} s: {} ({failed} failed)",
        query.name(),
        percentiles(&mut samples)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let args = args()?;
    let channel = Channel::from_shared(args.addr.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.addr))?;
    let auth: Auth = args
        .token
        .as_ref()
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .context("the token has characters a header cannot carry")?;
    let query = match args.history {
        Some(probe) => Query::History {
            device: args.device,
            probe,
        },
        None => Query::Latest {
            device: args.device,
        },
    };
    // One warm-up call: connection set-up is not what is measured.
    let answered = query
        .call(&channel, &auth)
        .await
        .with_context(|| format!("the first {}", query.name()))?;
    tracing::info!("{} answers with {answered} items", query.name());
    if let Some(n) = args.sequential.filter(|n| *n > 0) {
        sequential(&channel, &query, &auth, n).await?;
    }
    if let Some(rate) = args.rate {
        open_loop(&channel, &query, &auth, rate, args.seconds).await?;
    }
    Ok(())
}
