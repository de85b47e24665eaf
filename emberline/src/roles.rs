//! Wiring the roles from configuration.

use std::sync::Arc;

use anyhow::{Context, Result};
use emberline_gateway::Gateway;
use emberline_ingest::{EventSink, Simulator, SimulatorConfig, SourceConfig, run_source};
use emberline_log::{
    EmbeddedLog, EventLog, KafkaConfig, KafkaLog, NewRecord, RedbDatabase, topics,
};
use emberline_processors::{Mode, TrendConfig, run_cook, run_devices, run_trends};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use emberline_schemas::events::{ClockTick, CookStarted};
use emberline_schemas::{ConfluentRegistry, EmbeddedRegistry, EventCodec, SchemaRegistry};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Backend, Config};

/// The log, its codec and (when local) the embedded registry.
struct LogParts {
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    embedded_registry: Option<EmbeddedRegistry>,
}

async fn open_log(config: &Config) -> Result<LogParts> {
    let (log, local_db): (Arc<dyn EventLog>, Option<Arc<RedbDatabase>>) = match config.log.backend {
        Backend::Embedded => {
            let path = config.data_dir()?.join("log.redb");
            let log = EmbeddedLog::open(&path)
                .with_context(|| format!("opening the embedded log at {}", path.display()))?;
            let db = log.database();
            (Arc::new(log), Some(db))
        }
        Backend::Kafka => {
            let k = &config.log.kafka;
            let mut kafka = KafkaConfig::new(k.bootstrap_servers.clone());
            kafka.replication_factor = k.replication_factor;
            kafka.properties = k.properties.clone();
            let log = KafkaLog::connect(kafka).context("connecting to Kafka")?;
            (Arc::new(log), None)
        }
    };
    let (registry, embedded_registry): (Arc<dyn SchemaRegistry>, Option<EmbeddedRegistry>) =
        match &config.registry.url {
            Some(url) => (Arc::new(ConfluentRegistry::new(url)), None),
            None => {
                let db = match local_db {
                    Some(db) => db,
                    None => {
                        let path = config.data_dir()?.join("registry.redb");
                        std::fs::create_dir_all(config.data_dir()?)?;
                        Arc::new(RedbDatabase::create(&path).with_context(|| {
                            format!("opening the embedded registry at {}", path.display())
                        })?)
                    }
                };
                let registry = EmbeddedRegistry::new(db);
                (Arc::new(registry.clone()), Some(registry))
            }
        };
    let codec = EventCodec::connect(registry)
        .await
        .context("registering the event schemas with the schema registry")?;
    for topic in topics::ALL {
        let partitions = log
            .ensure_topic(topic, config.log.partitions)
            .await
            .with_context(|| format!("creating topic {topic}"))?;
        if partitions != config.log.partitions {
            tracing::warn!(
                topic,
                partitions,
                configured = config.log.partitions,
                "topic exists with another partition count; keeping it"
            );
        }
    }
    Ok(LogParts {
        log,
        codec: Arc::new(codec),
        embedded_registry,
    })
}

fn open_store(config: &Config) -> Result<Arc<dyn ProjectionStore>> {
    let path = config.data_dir()?.join("projections.redb");
    let store = EmbeddedStore::open(&path)
        .with_context(|| format!("opening the projection store at {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM");
                        let _ = tokio::signal::ctrl_c().await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        token.cancel();
    });
}

/// Runs every task to the end; the first failure cancels the others.
async fn supervise(mut tasks: JoinSet<Result<()>>, shutdown: CancellationToken) -> Result<()> {
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.context("a role panicked").and_then(|r| r);
        if let Err(e) = result {
            tracing::error!(error = %format!("{e:#}"), "role failed; stopping");
            shutdown.cancel();
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Simulated cooks last at most this long; after that a restart begins a new one.
const SIMULATED_COOK_MS: i64 = 24 * 3_600 * 1_000;

/// When the simulated cook began, kept in the data directory so a restarted `up` carries
/// on with the same cook instead of putting cold meat back on the grill.
fn simulated_cook_start(config: &Config, now: i64) -> Result<i64> {
    let dir = config.data_dir()?;
    let path = dir.join("simulator-cook-start");
    let stored = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    match stored {
        Some(start) if start <= now && now - start < SIMULATED_COOK_MS => Ok(start),
        _ => {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, now.to_string())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(now)
        }
    }
}

/// Runs the configured sources, or the `[simulator]` when none are listed.
fn spawn_sources(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    parts: &LogParts,
    shutdown: &CancellationToken,
) {
    if config.sources.is_empty() {
        if config.simulator.enabled {
            spawn_simulator(
                tasks,
                config,
                config.simulator.settings.clone(),
                config
                    .simulator
                    .start_cook
                    .then_some(config.simulator.cook_target_c),
                parts,
                shutdown,
            );
        }
        return;
    }
    for source in &config.sources {
        match source {
            SourceConfig::Simulator(settings) => {
                spawn_simulator(tasks, config, settings.clone(), None, parts, shutdown);
            }
            other => {
                let source = match other.build(wall_clock_ms()) {
                    Ok(source) => source,
                    Err(e) => {
                        tasks.spawn(async move { Err(anyhow::Error::new(e)) });
                        continue;
                    }
                };
                let sink = EventSink::new(parts.log.clone(), parts.codec.clone(), shutdown.clone());
                let (shutdown, kind) = (shutdown.clone(), other.kind());
                tasks.spawn(async move {
                    run_source(source, sink, shutdown)
                        .await
                        .with_context(|| format!("{kind} source"))
                });
            }
        }
    }
}

fn spawn_simulator(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    settings: SimulatorConfig,
    cook_target_c: Option<f64>,
    parts: &LogParts,
    shutdown: &CancellationToken,
) {
    let now = wall_clock_ms();
    let start = match simulated_cook_start(config, now) {
        Ok(start) => start,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot keep the simulated cook's start time; starting a new cook");
            now
        }
    };
    let mut simulator = Simulator::new(settings, start);
    simulator.skip_to(now);
    tracing::info!(cook_started_ms = start, "simulated cook running");
    // A new simulated cook comes with a cook session and targets, as a user would start one.
    let cook = match cook_target_c {
        Some(target) if start == now => simulated_cook_commands(&simulator, start, target),
        _ => Vec::new(),
    };
    let sink = EventSink::new(parts.log.clone(), parts.codec.clone(), shutdown.clone());
    let (log, codec, shutdown) = (parts.log.clone(), parts.codec.clone(), shutdown.clone());
    tasks.spawn(async move {
        let mut records = Vec::with_capacity(cook.len());
        for started in &cook {
            records.push(NewRecord {
                key: started.device_id.as_bytes().to_vec(),
                value: codec.encode(started)?,
                timestamp_ms: started.event_time,
            });
        }
        if !records.is_empty() {
            log.append(topics::COOK_COMMANDS, records)
                .await
                .context("starting the simulated cook")?;
        }
        run_source(Box::new(simulator), sink, shutdown)
            .await
            .context("simulator")
    });
}

/// One `CookStarted` per simulated device, every food probe aimed at `target_c`.
fn simulated_cook_commands(simulator: &Simulator, start: i64, target_c: f64) -> Vec<CookStarted> {
    let probes = simulator.probe_ids();
    simulator
        .device_ids()
        .map(|device| CookStarted {
            cook_id: format!("sim-{start}-{device}"),
            device_id: device.to_owned(),
            event_time: start,
            what: Some("Simulated brisket".into()),
            targets_c: probes
                .iter()
                .filter(|p| p.as_str() != "pit")
                .map(|p| (p.clone(), target_c))
                .collect(),
            pit_min_c: None,
            pit_max_c: None,
        })
        .collect()
}

fn spawn_processor(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    parts: &LogParts,
    store: Arc<dyn ProjectionStore>,
    shutdown: &CancellationToken,
    mode: Mode,
) {
    let (log, codec, cook_shutdown) = (parts.log.clone(), parts.codec.clone(), shutdown.clone());
    let cook_store = store.clone();
    tasks.spawn(async move {
        let stats = run_cook(log, cook_store, codec, mode, cook_shutdown)
            .await
            .context("cook processor")?;
        tracing::info!(records = stats.records, "cook processor stopped");
        Ok(())
    });
    if mode == Mode::Follow && config.processor.tick_interval_s > 0 {
        let every = std::time::Duration::from_secs(config.processor.tick_interval_s);
        let (log, codec, shutdown) = (parts.log.clone(), parts.codec.clone(), shutdown.clone());
        tasks.spawn(async move { write_clock_ticks(log, codec, every, shutdown).await });
    }
    let trend_config = TrendConfig {
        workers: config.processor.workers,
        ..TrendConfig::default()
    };
    let (log, codec, devices_shutdown) = (parts.log.clone(), parts.codec.clone(), shutdown.clone());
    let devices_store = store.clone();
    tasks.spawn(async move {
        let stats = run_devices(log, devices_store, codec, mode, devices_shutdown)
            .await
            .context("device projector")?;
        tracing::info!(records = stats.records, "device projector stopped");
        Ok(())
    });
    let (log, codec, shutdown) = (parts.log.clone(), parts.codec.clone(), shutdown.clone());
    let runtime = tokio::runtime::Handle::current();
    tasks.spawn(async move {
        let stats = tokio::task::spawn_blocking(move || {
            run_trends(log, store, codec, trend_config, mode, shutdown, runtime)
        })
        .await
        .context("the trend processor panicked")?
        .context("trend processor")?;
        tracing::info!(
            records = stats.records,
            rejected = stats.rejected,
            "trend processor stopped"
        );
        Ok(())
    });
}

/// Writes the wall-clock time to `cook.commands` every `every`, so time-based alerts fire
/// on a quiet device and a replay sees the same time pass. A failed write is retried at the
/// next tick: a missed tick only delays such alerts.
async fn write_clock_ticks(
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        let now = wall_clock_ms();
        let tick = ClockTick {
            event_time: now,
            source: "processor".into(),
        };
        let record = NewRecord {
            key: b"clock".to_vec(),
            value: codec.encode(&tick)?,
            timestamp_ms: now,
        };
        if let Err(e) = log.append(topics::COOK_COMMANDS, vec![record]).await {
            tracing::warn!(error = %e, "could not write the clock tick; retrying at the next one");
        }
    }
}

fn spawn_gateway(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    parts: &LogParts,
    store: Arc<dyn ProjectionStore>,
    shutdown: &CancellationToken,
) {
    let gateway = Gateway::new(
        parts.log.clone(),
        store,
        parts.codec.clone(),
        shutdown.clone(),
    );
    let addr = config.gateway.grpc_addr;
    if let Some(web) = config.gateway.web_addr {
        let gateway = gateway.clone();
        tasks.spawn(async move {
            emberline_gateway::serve_web(gateway, web, None)
                .await
                .with_context(|| format!("web UI on {web} (set gateway.web_addr or --web-addr)"))
        });
    }
    tasks.spawn(async move {
        emberline_gateway::serve_grpc(gateway, addr, None)
            .await
            .context("gRPC gateway")
    });
}

/// Serves the embedded registry's REST API. `optional`: a busy port is a warning, not a
/// failure (`up` works without it; only external Kafka clients need it).
fn spawn_registry_api(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    parts: &LogParts,
    shutdown: &CancellationToken,
    optional: bool,
) {
    if let (Some(registry), Some(addr)) = (
        parts.embedded_registry.clone(),
        config.gateway.registry_addr,
    ) {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            match emberline_gateway::serve_registry(registry, addr, shutdown, None).await {
                Err(e) if optional && e.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::warn!(%addr, "schema registry REST API not served: the address is in use (set gateway.registry_addr or --registry-addr)");
                    Ok(())
                }
                result => result.with_context(|| format!("schema registry REST API on {addr}")),
            }
        });
    }
}

/// Starts the Home Assistant connector against the gateway at `gateway_url`.
fn spawn_home_assistant(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    gateway_url: String,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut ha = config.home_assistant.clone();
    ha.gateway_url = gateway_url;
    ha.validate().context("home_assistant settings")?;
    let data_dir = config.data_dir()?;
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        emberline_home_assistant::run(ha, data_dir, shutdown)
            .await
            .context("Home Assistant connector")
    });
    Ok(())
}

/// Every role in one process.
pub(crate) async fn up(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let parts = open_log(&config).await?;
    let store = open_store(&config)?;
    tracing::info!(data_dir = %config.data_dir()?.display(), backend = ?config.log.backend, "emberline up");
    let mut tasks = JoinSet::new();
    spawn_sources(&mut tasks, &config, &parts, &shutdown);
    spawn_processor(
        &mut tasks,
        &config,
        &parts,
        store.clone(),
        &shutdown,
        Mode::Follow,
    );
    spawn_gateway(&mut tasks, &config, &parts, store, &shutdown);
    spawn_registry_api(&mut tasks, &config, &parts, &shutdown, true);
    if config.home_assistant.mqtt.is_some() {
        let url = format!("http://{}", config.gateway.grpc_addr);
        spawn_home_assistant(&mut tasks, &config, url, &shutdown)?;
    }
    if !config.notifications.channels.is_empty() {
        spawn_notifier(&mut tasks, &config, &parts, &shutdown)?;
    }
    match config.gateway.web_addr {
        Some(web) if emberline_gateway::has_web_ui() => tracing::info!(
            "Emberline is starting: open http://{web}/ in a browser (gRPC on {}); Ctrl-C stops it",
            config.gateway.grpc_addr
        ),
        _ => tracing::info!(
            "Emberline is starting on http://{}: try `emberline watch --device sim-1`; Ctrl-C stops it",
            config.gateway.grpc_addr
        ),
    }
    supervise(tasks, shutdown).await
}

/// The ingest role.
pub(crate) async fn ingest(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let parts = open_log(&config).await?;
    anyhow::ensure!(
        config.simulator.enabled || !config.sources.is_empty(),
        "no sources are configured: add [[sources]] or enable [simulator]"
    );
    let mut tasks = JoinSet::new();
    spawn_sources(&mut tasks, &config, &parts, &shutdown);
    supervise(tasks, shutdown).await
}

/// The processor role; with `catch_up`, it processes the log as it is now and exits.
pub(crate) async fn process(config: Config, catch_up: bool) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let parts = open_log(&config).await?;
    let store = open_store(&config)?;
    let mut tasks = JoinSet::new();
    let mode = if catch_up {
        Mode::CatchUp
    } else {
        Mode::Follow
    };
    spawn_processor(&mut tasks, &config, &parts, store, &shutdown, mode);
    supervise(tasks, shutdown).await
}

/// The gateway role.
pub(crate) async fn gateway(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let parts = open_log(&config).await?;
    let store = open_store(&config)?;
    let mut tasks = JoinSet::new();
    spawn_gateway(&mut tasks, &config, &parts, store, &shutdown);
    supervise(tasks, shutdown).await
}

/// The Home Assistant connector alone, a client of a gateway and an MQTT broker.
pub(crate) async fn connect_ha(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    anyhow::ensure!(
        config.home_assistant.mqtt.is_some(),
        "no MQTT broker: set home_assistant.mqtt.url (or pass --mqtt-url)"
    );
    let mut tasks = JoinSet::new();
    let url = config.home_assistant.gateway_url.clone();
    spawn_home_assistant(&mut tasks, &config, url, &shutdown)?;
    supervise(tasks, shutdown).await
}

/// Starts the notifier: alerts from the log to the configured channels, through the outbox
/// in the data directory.
fn spawn_notifier(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    parts: &LogParts,
    shutdown: &CancellationToken,
) -> Result<()> {
    let path = config.data_dir()?.join("outbox.redb");
    let outbox = emberline_notify::Outbox::open(&path)
        .with_context(|| format!("opening the notification outbox at {}", path.display()))?;
    let (log, codec, settings, shutdown) = (
        parts.log.clone(),
        parts.codec.clone(),
        config.notifications.clone(),
        shutdown.clone(),
    );
    tasks.spawn(async move {
        emberline_notify::run_notifier(log, codec, settings, outbox, shutdown)
            .await
            .context("notifier")
    });
    Ok(())
}

/// The notification role alone.
pub(crate) async fn notify(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    anyhow::ensure!(
        !config.notifications.channels.is_empty(),
        "no channels: add [[notifications.channels]] to the configuration"
    );
    let parts = open_log(&config).await?;
    let mut tasks = JoinSet::new();
    spawn_notifier(&mut tasks, &config, &parts, &shutdown)?;
    supervise(tasks, shutdown).await
}

/// The embedded registry's REST API alone.
pub(crate) async fn registry(mut config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    // This process *is* the registry that `registry.url` points the other roles at.
    config.registry.url = None;
    let parts = open_log(&config).await?;
    anyhow::ensure!(
        config.gateway.registry_addr.is_some(),
        "no address: set gateway.registry_addr or pass --addr"
    );
    let mut tasks = JoinSet::new();
    spawn_registry_api(&mut tasks, &config, &parts, &shutdown, false);
    supervise(tasks, shutdown).await
}
