//! Latency and fan-out driver: how long a reading takes from a device's HTTP push to
//! `SubscribeTrends` clients — ingest, log append, the trend processor's round (its
//! projection writes and the derived append), the gateway's tail and the gRPC stream —
//! measured from outside the process, at a fixed rate whatever the answers' speed (open
//! loop), and what each subscriber costs the server.
//!
//! The driver starts `emberline up` itself on loopback ports with a configuration it writes
//! (an `http_push` source taking `--devices` devices' readings, sign-in off, a fresh data
//! directory; `--extra FILE` appends TOML to it, e.g. a `[log]` section for the Kafka
//! backend), subscribes to every device's trends, and pushes one request per device in
//! turn, each carrying one reading of each of 4 probes stamped with the device's time. A
//! reading is matched to its trend update by (device, probe, event time); the latency, from
//! just before the push request is sent to when its update is read off a stream, goes into
//! an HDR histogram. The first `--warmup` seconds are not counted.
//!
//! `--subscribers N` opens N subscriptions, each on its own HTTP/2 connection, subscriber i
//! following device i mod `--devices` (`--all` : every device), and every delivery is
//! measured; the server's resident memory before and after they connect gives its cost per
//! subscriber. The driver raises its open-file limit to what N connections need (the soft
//! limit up to the hard one, which `emberline up`, its child, inherits); when the hard limit
//! is too low it says so — raise it with `ulimit -Hn` as root, or `LimitNOFILE=` under
//! systemd. The run is bounded: `--seconds` of pushing, then at most 10 s for the last
//! updates.
//!
//! `cargo run --release -p emberline-benches --bin latency -- --emberline target/release/emberline --rate 20000`
//! (build `emberline` in release first: `cargo build --release -p emberline`).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use emberline_benches::Flags;
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{StartFrom, SubscribeTrendsRequest};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use tonic::transport::Channel;

const HELP: &str = "latency --emberline PATH [--devices N] [--rate READINGS_PER_S] [--seconds S] \
                    [--warmup S] [--subscribers N [--all]] [--extra FILE]";
/// Probes per device: each push carries one reading of each.
const PROBES: usize = 4;
/// The log line `emberline up` writes once its gRPC port accepts connections.
const LISTENING: &str = "gRPC (and grpc-web) listening";

struct Args {
    emberline: PathBuf,
    devices: usize,
    rate: u64,
    seconds: u64,
    warmup: u64,
    subscribers: usize,
    all: bool,
    extra: Option<PathBuf>,
}

impl Args {
    /// How many subscribers receive device `d`'s updates.
    fn receivers(&self, d: usize) -> u32 {
        if self.all || self.subscribers == 1 {
            self.subscribers as u32
        } else {
            let (q, r) = (
                self.subscribers / self.devices,
                self.subscribers % self.devices,
            );
            (q + usize::from(d < r)) as u32
        }
    }

    /// The device subscriber `i` follows; `None`: every device.
    fn followed(&self, i: usize) -> Option<String> {
        (!self.all && self.subscribers > 1).then(|| device(i % self.devices))
    }
}

fn args() -> Result<Args> {
    let mut out = Args {
        emberline: PathBuf::from("target/release/emberline"),
        devices: 100,
        rate: 20_000,
        seconds: 10,
        warmup: 2,
        subscribers: 1,
        all: false,
        extra: None,
    };
    let mut flags = Flags::new(HELP);
    while let Some(flag) = flags.next_flag() {
        let f = flag.as_str();
        match f {
            "--emberline" => out.emberline = flags.value(f)?.into(),
            "--devices" => out.devices = flags.parse(f)?,
            "--rate" => out.rate = flags.parse(f)?,
            "--seconds" => out.seconds = flags.parse(f)?,
            "--warmup" => out.warmup = flags.parse(f)?,
            "--subscribers" => out.subscribers = flags.parse(f)?,
            "--all" => out.all = true,
            "--extra" => out.extra = Some(flags.value(f)?.into()),
            other => return Err(flags.unknown(other)),
        }
    }
    if out.devices == 0 || out.rate == 0 || out.seconds == 0 || out.subscribers == 0 {
        bail!("--devices, --rate, --seconds and --subscribers must be above 0");
    }
    Ok(out)
}

fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn device(i: usize) -> String {
    format!("bench-{i}")
}

fn token(i: usize) -> String {
    format!("token-{i}")
}

/// `emberline up`, killed when dropped.
struct Up {
    child: Child,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    /// A memory figure of the process from `/proc` (`VmHWM:` peak, `VmRSS:` now), KiB.
    fn memory_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

/// Raises this process's open-file limit for `subscribers` connections (and the server's,
/// which inherits it). Each process holds one end of every connection, so each needs one
/// file per subscriber, and some to spare for everything else.
fn raise_file_limit(subscribers: usize) -> Result<()> {
    let needed = subscribers as u64 + 1_024;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        bail!(
            "{subscribers} subscribers need about {needed} open files in this driver and as \
             many in the server, but the hard limit is {hard}: raise it (`ulimit -Hn {needed}` as root, or \
             LimitNOFILE= under systemd)"
        );
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, needed, hard)?;
    tracing::info!("open-file limit raised from {soft} to {needed}");
    Ok(())
}

/// Writes the configuration and starts `emberline up`; returns once gRPC listens.
async fn start(args: &Args, dir: &std::path::Path) -> Result<(Up, SocketAddr, SocketAddr)> {
    let (grpc, push, registry, web) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let tokens = (0..args.devices)
        .map(|i| format!("\"{}\" = \"{}\"", device(i), token(i)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut config = format!(
        "[auth]\nmode = \"none\"\n\n[[sources]]\nkind = \"http_push\"\nname = \"push\"\n\
         listen = \"{push}\"\ntokens = {{ {tokens} }}\n"
    );
    if let Some(extra) = &args.extra {
        config.push('\n');
        config.push_str(
            &std::fs::read_to_string(extra)
                .with_context(|| format!("reading {}", extra.display()))?,
        );
    }
    let config_path = dir.join("emberline.toml");
    std::fs::write(&config_path, config)?;
    let mut child = Command::new(&args.emberline)
        .arg("--config")
        .arg(&config_path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("up")
        .args(["--grpc-addr", &grpc.to_string()])
        .args(["--registry-addr", &registry.to_string()])
        .args(["--web-addr", &web.to_string()])
        .env("RUST_LOG", "warn,emberline_gateway=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", args.emberline.display()))?;
    let stderr = child.stderr.take().context("the child's stderr")?;
    let up = Up { child };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(LISTENING) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            } else if line.contains("WARN") || line.contains("ERROR") {
                tracing::warn!("emberline: {line}");
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(120), rx)
        .await
        .context("emberline up did not start listening within 120 s")?
        .context("emberline up exited before listening")?;
    Ok((up, grpc, push))
}

/// When each pushed reading was sent and how many subscribers are still to receive it, by
/// (device index, probe index, event time).
type Sent = Arc<Mutex<HashMap<(usize, usize, i64), (Instant, u32)>>>;

/// One push request per tick, devices in turn, at `rate` readings per second.
async fn push_readings(args: &Args, push: SocketAddr, sent: Sent) -> Result<(u64, u64)> {
    let started = Instant::now();
    emberline_common::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()?;
    let requests_per_s = (args.rate as f64 / PROBES as f64).max(1.0);
    let every = Duration::from_secs_f64(1.0 / requests_per_s);
    let total = (requests_per_s * (args.warmup + args.seconds) as f64) as u64;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut last_time = vec![0i64; args.devices];
    let mut tasks = tokio::task::JoinSet::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    let url = format!("http://{push}/v1/readings");
    for n in 0..total {
        ticker.tick().await;
        let d = (n as usize) % args.devices;
        // The device's clock: never the same millisecond twice, so each reading is unique.
        let t = now_ms().max(last_time[d] + 1);
        last_time[d] = t;
        let readings: Vec<_> = (0..PROBES)
            .map(|p| {
                serde_json::json!({"probe_id": format!("probe-{p}"), "value": 20.0 + (n % 500) as f64 * 0.1, "time": t})
            })
            .collect();
        let body = serde_json::json!({"device_id": device(d), "readings": readings});
        let request = client.post(&url).bearer_auth(token(d)).json(&body);
        let receivers = args.receivers(d);
        if receivers > 0 {
            let at = Instant::now();
            let mut sent = sent.lock().unwrap_or_else(PoisonError::into_inner);
            for p in 0..PROBES {
                sent.insert((d, p, t), (at, receivers));
            }
        }
        let sent = sent.clone();
        tasks.spawn(async move {
            let refused = match request.send().await {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) => format!("refused: {}", r.status()),
                Err(e) => format!("failed: {e}"),
            };
            tracing::warn!("a push {refused}");
            // Not in the log: nobody is to receive these.
            let mut sent = sent.lock().unwrap_or_else(PoisonError::into_inner);
            for p in 0..PROBES {
                sent.remove(&(d, p, t));
            }
            false
        });
        while let Some(done) = tasks.try_join_next() {
            if done? { ok += 1 } else { failed += 1 }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if done? { ok += 1 } else { failed += 1 }
    }
    tracing::info!(
        "pushed {} readings in {:.1} s ({} requests failed)",
        ok * PROBES as u64,
        started.elapsed().as_secs_f64(),
        failed
    );
    Ok((ok * PROBES as u64, failed))
}

/// What the subscribers saw.
#[derive(Default)]
struct Seen {
    histogram: Option<Histogram<u64>>,
    matched: u64,
    unknown: u64,
    failed: u64,
}

/// Opens subscriber `i` on its own connection and records each delivery into `seen`.
async fn subscriber(
    args: &Args,
    i: usize,
    grpc: SocketAddr,
    sent: Sent,
    seen: Arc<Mutex<Seen>>,
    counted_from: Arc<OnceLock<Instant>>,
) -> Result<tokio::task::JoinHandle<()>> {
    let channel = Channel::from_shared(format!("http://{grpc}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut stream = TrendServiceClient::new(channel)
        .subscribe_trends(SubscribeTrendsRequest {
            device_id: args.followed(i).unwrap_or_default(),
            resume: HashMap::new(),
            start: StartFrom::Latest as i32,
        })
        .await
        .context("SubscribeTrends")?
        .into_inner();
    Ok(tokio::spawn(async move {
        loop {
            let event = match stream.message().await {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(status) => {
                    tracing::warn!(%status, "a subscription ended");
                    seen.lock().unwrap_or_else(PoisonError::into_inner).failed += 1;
                    return;
                }
            };
            let at = Instant::now();
            let key = event
                .device_id
                .strip_prefix("bench-")
                .and_then(|d| d.parse::<usize>().ok())
                .zip(
                    event
                        .probe_id
                        .strip_prefix("probe-")
                        .and_then(|p| p.parse::<usize>().ok()),
                );
            let pushed = key.and_then(|(d, p)| {
                let mut sent = sent.lock().unwrap_or_else(PoisonError::into_inner);
                let entry = sent.get_mut(&(d, p, event.event_time_ms))?;
                let pushed = entry.0;
                entry.1 -= 1;
                if entry.1 == 0 {
                    sent.remove(&(d, p, event.event_time_ms));
                }
                Some(pushed)
            });
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            match pushed {
                Some(pushed) if counted_from.get().is_some_and(|from| pushed >= *from) => {
                    seen.matched += 1;
                    let us = at.duration_since(pushed).as_micros() as u64;
                    if let Some(h) = seen.histogram.as_mut() {
                        h.saturating_record(us.max(1));
                    }
                }
                Some(_) => {}
                None => seen.unknown += 1,
            }
        }
    }))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let args = args()?;
    raise_file_limit(args.subscribers)?;
    let dir = tempfile::tempdir()?;
    let (up, grpc, push) = start(&args, dir.path()).await?;
    let rss_before = up.memory_kib("VmRSS:");

    let sent: Sent = Arc::default();
    let seen = Arc::new(Mutex::new(Seen {
        histogram: Some(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?),
        ..Seen::default()
    }));
    // Set when pushing starts (after the warm-up): deliveries before it are not counted.
    let counted_from: Arc<OnceLock<Instant>> = Arc::default();
    let opened = Instant::now();
    let args = Arc::new(args);
    let receivers = futures::stream::iter(0..args.subscribers)
        .map(|i| {
            let (args, sent, seen) = (args.clone(), sent.clone(), seen.clone());
            let counted_from = counted_from.clone();
            async move { subscriber(&args, i, grpc, sent, seen, counted_from).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let rss_subscribed = up.memory_kib("VmRSS:");
    tracing::info!(
        "{} subscriptions open in {:.1} s",
        args.subscribers,
        opened.elapsed().as_secs_f64()
    );
    let _ = counted_from.set(Instant::now() + Duration::from_secs(args.warmup));
    let (pushed, _failed) = push_readings(&args, push, sent.clone()).await?;
    // Wait for the last updates: until nothing is outstanding, or 10 s without progress.
    let mut outstanding = usize::MAX;
    let mut progress_at = Instant::now();
    loop {
        let now = sent.lock().unwrap_or_else(PoisonError::into_inner).len();
        if now == 0 || progress_at.elapsed() > Duration::from_secs(10) {
            outstanding = now;
            break;
        }
        if now < outstanding {
            outstanding = now;
            progress_at = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (peak, rss_after) = (up.memory_kib("VmHWM:"), up.memory_kib("VmRSS:"));
    // The subscriptions end here, not because the server stops.
    for receiver in &receivers {
        receiver.abort();
    }
    for receiver in receivers {
        let _ = receiver.await;
    }
    drop(up);
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    let histogram = seen.histogram.context("histogram")?;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    let per_subscriber = rss_before
        .zip(rss_subscribed)
        .map(|(b, a)| a.saturating_sub(b) as f64 / args.subscribers as f64);
    tracing::info!(
        "ingest → SubscribeTrends at {} readings/s, {} devices × {PROBES} probes, {} subscribers: \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms \
         over {} deliveries ({pushed} readings pushed, {outstanding} never reached every \
         subscriber, {} updates not matched, {} subscriptions failed); \
         emberline RSS {} MiB idle, {} MiB with the subscribers ({} KiB each), {} MiB after, \
         peak {} MiB",
        args.rate,
        args.devices,
        args.subscribers,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1e3,
        seen.matched,
        seen.unknown,
        seen.failed,
        mib(rss_before),
        mib(rss_subscribed),
        per_subscriber.map_or("?".into(), |k| format!("{k:.1}")),
        mib(rss_after),
        mib(peak),
    );
    if outstanding > 0 || seen.failed > 0 {
        bail!("{outstanding} pushed readings never reached every subscriber");
    }
    Ok(())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}
