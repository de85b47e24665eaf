//! Wiring the roles from configuration.

use std::sync::Arc;

use anyhow::{Context, Result};
use emberline_analytics::Archive;
use emberline_analytics::archive;
use emberline_common::clock::now_ms;
use emberline_common::redb_file::ReopeningDatabase;
use emberline_gateway::{AuthMode, Gateway};
use emberline_ingest::{EventSink, SourceConfig, run_source};
use emberline_log::{
    EmbeddedLog, EventLog, GroupSettings, KafkaConfig, KafkaLog, RedbDatabase, topics,
};
use emberline_processors::Mode;
use emberline_processors::changelog::{self, ChangelogStore};
use emberline_projections::{EmbeddedStore, ProjectionStore, ScyllaStore};
use emberline_schemas::{ConfluentRegistry, EmbeddedRegistry, EventCodec, SchemaRegistry};
use emberline_settings::{SettingsKey, SettingsStore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::accounts;
use crate::config::{Backend, Config, StoreBackend};
use crate::ops::{self, Readiness};
use crate::processing::{self, Processing};

/// Starts the health and readiness endpoint when `ops.addr` is set. The returned readiness
/// starts with the log not ready; each role adds what else it waits for.
fn start_ops(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    shutdown: &CancellationToken,
) -> Readiness {
    let readiness = Readiness::default();
    readiness.waiting("log", "opening the event log");
    if let Some(addr) = config.ops.addr {
        let (r, s) = (readiness.clone(), shutdown.clone());
        let token = config.ops.metrics_token.clone();
        tasks.spawn(async move { ops::serve(addr, r, token, s).await });
    }
    readiness
}

/// Keeps readiness down until the trend and cook processors' projections cover the log's
/// end as it was at start.
fn watch_processors_catch_up(
    tasks: &mut JoinSet<Result<()>>,
    readiness: &Readiness,
    parts: &LogParts,
    store: &Arc<dyn ProjectionStore>,
    shutdown: &CancellationToken,
) {
    for (part, key) in [
        ("trends", topics::PROBE_READINGS.to_owned()),
        ("cooks", format!("cook/{}", topics::PROBE_READINGS)),
    ] {
        let (r, log, store, s) = (
            readiness.clone(),
            parts.log.clone(),
            store.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            ops::watch_catch_up(r, part, log, store, topics::PROBE_READINGS, key, s).await
        });
    }
}

/// The log, its codec and (when local) the embedded registry.
pub(crate) struct LogParts {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) codec: Arc<EventCodec>,
    /// Where the embedded log's retention keeps what it removes (`log.archive`).
    pub(crate) archive: Option<Arc<Archive>>,
    embedded_registry: Option<EmbeddedRegistry>,
}

/// How to reach the broker, from `[log.kafka]`.
pub(crate) fn kafka_config(config: &Config) -> KafkaConfig {
    let k = &config.log.kafka;
    let mut kafka = KafkaConfig::new(k.bootstrap_servers.clone());
    kafka.replication_factor = k.replication_factor;
    kafka.properties = k.properties.clone();
    kafka.topic_prefix = k.topic_prefix.clone();
    kafka.retention_ms = crate::config::retention(config.log.retention_days)
        .map(|r| r.as_millis() as i64)
        .or(Some(-1));
    kafka
}

/// Where a role may take schema ids from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemaIds {
    /// `registry.url`, or the embedded registry in this process's data directory: `up`,
    /// which serves that registry to others, and the `registry` role itself.
    MayServe,
    /// A role of a distributed deployment: on Kafka it must share one registry with the
    /// others, so `registry.url` is required there.
    Shared,
}

pub(crate) async fn open_log(config: &Config, ids: SchemaIds) -> Result<LogParts> {
    if ids == SchemaIds::Shared
        && config.log.backend == Backend::Kafka
        && config.registry.url.is_none()
    {
        anyhow::bail!(
            "registry.url is not set: with log.backend = \"kafka\" every role must use one \
             schema registry (run `emberline registry` or use a Confluent-compatible one, then \
             set registry.url or EMBERLINE__REGISTRY__URL), or schema ids would differ between \
             processes"
        );
    }
    let mut embedded = None;
    let (log, local_db): (Arc<dyn EventLog>, Option<Arc<ReopeningDatabase>>) =
        match config.log.backend {
            Backend::Embedded => {
                let path = config.data_dir()?.join("log.redb");
                let log = EmbeddedLog::open(&path)
                    .with_context(|| format!("opening the embedded log at {}", path.display()))?;
                let db = log.handle();
                crate::backup::hold(&path, db.clone());
                embedded = Some(log.clone());
                (Arc::new(log), Some(db))
            }
            Backend::Kafka => {
                let log = KafkaLog::connect(kafka_config(config)).context("connecting to Kafka")?;
                (Arc::new(log), None)
            }
        };
    let (registry, embedded_registry): (Arc<dyn SchemaRegistry>, Option<EmbeddedRegistry>) =
        match &config.registry.url {
            Some(url) => {
                let client = match &config.registry.token {
                    Some(token) => ConfluentRegistry::with_token(url, token.expose())
                        .context("registry.token")?,
                    None => ConfluentRegistry::new(url),
                };
                (Arc::new(client), None)
            }
            None => {
                let db = match local_db {
                    Some(db) => db,
                    None => {
                        let path = config.data_dir()?.join("registry.redb");
                        std::fs::create_dir_all(config.data_dir()?)?;
                        let db = Arc::new(RedbDatabase::create(&path).with_context(|| {
                            format!("opening the embedded registry at {}", path.display())
                        })?);
                        crate::backup::hold(&path, db.clone());
                        ReopeningDatabase::from_database(db)
                    }
                };
                let registry = EmbeddedRegistry::shared(db);
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
    let codec = Arc::new(codec);
    let archive = match (&embedded, config.log.archive) {
        (Some(_), true) => {
            let dir = config.data_dir()?.join("archive");
            let archive = Archive::open(&dir)
                .with_context(|| format!("opening the log archive at {}", dir.display()))?;
            Some(Arc::new(archive))
        }
        _ => None,
    };
    if let (Some(log), Some(retention)) = (
        embedded,
        crate::config::retention(config.log.retention_days),
    ) {
        let every = std::time::Duration::from_secs(config.log.retention_check_interval_s.max(1));
        // Runs as long as the process: a round cut short is taken up by the next process.
        tokio::spawn(archive::run_retention(
            log,
            codec.clone(),
            archive.clone(),
            retention,
            every,
        ));
    }
    Ok(LogParts {
        log,
        codec,
        archive,
        embedded_registry,
    })
}

pub(crate) async fn open_store(config: &Config) -> Result<Arc<dyn ProjectionStore>> {
    match config.projections.backend {
        StoreBackend::Embedded => {
            let path = config.data_dir()?.join("projections.redb");
            let store = EmbeddedStore::open(&path)
                .with_context(|| format!("opening the projection store at {}", path.display()))?;
            if let Some(retention) = crate::config::retention(config.history.retention_days) {
                let every = std::time::Duration::from_secs(
                    config.history.retention_check_interval_s.max(1),
                );
                let store = store.clone();
                tokio::spawn(async move { store.run_history_retention(retention, every).await });
            }
            crate::backup::hold(&path, store.database());
            Ok(Arc::new(store))
        }
        StoreBackend::Scylla => {
            let scylla = config.projections.scylla.clone().context(
                "projections.backend = \"scylla\" needs [projections.scylla] with its nodes",
            )?;
            let store = ScyllaStore::connect(scylla)
                .await
                .context("connecting to the ScyllaDB projection store")?;
            Ok(Arc::new(store))
        }
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub(crate) fn cancel_on_signal(token: CancellationToken) {
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

/// Supervises what a role started; when starting failed part-way (a bad certificate, an
/// unreadable setting), stops what had already started and waits for it before returning
/// the failure. The processors run on threads of their own: left running, they would keep
/// the process from exiting.
async fn supervise_start(
    start: Result<()>,
    tasks: JoinSet<Result<()>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let Err(failure) = start else {
        return supervise(tasks, shutdown).await;
    };
    shutdown.cancel();
    if let Err(e) = supervise(tasks, shutdown).await {
        tracing::debug!(error = %format!("{e:#}"), "while stopping after a failed start");
    }
    Err(failure)
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

/// Runs the configured sources. A simulator carries on the simulated cook begun at the time
/// kept in the data directory, or begins a new one.
fn spawn_sources(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    parts: &LogParts,
    shutdown: &CancellationToken,
) {
    for source in &config.sources {
        let now = now_ms();
        let start = match source {
            SourceConfig::Simulator(_) => {
                let start = simulated_cook_start(config, now).unwrap_or_else(|e| {
                    tracing::warn!(error = %format!("{e:#}"), "cannot keep the simulated cook's start time; starting a new cook");
                    now
                });
                tracing::info!(cook_started_ms = start, "simulated cook running");
                start
            }
            _ => now,
        };
        let built = match source.build_at(start, now) {
            Ok(built) => built,
            Err(e) => {
                tasks.spawn(async move { Err(anyhow::Error::new(e)) });
                continue;
            }
        };
        let sink = EventSink::new(parts.log.clone(), parts.codec.clone(), shutdown.clone())
            .for_tenant(source.tenant());
        let (shutdown, kind) = (shutdown.clone(), source.kind());
        tasks.spawn(async move {
            run_source(built, sink, shutdown)
                .await
                .with_context(|| format!("{kind} source"))
        });
    }
}

#[allow(clippy::too_many_arguments)] // the parts of a gateway, each from the caller's setup
fn spawn_gateway(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    parts: &LogParts,
    store: Arc<dyn ProjectionStore>,
    shutdown: &CancellationToken,
    readiness: &Readiness,
    auth: AuthMode,
    settings: Option<Arc<SettingsStore>>,
) -> Result<()> {
    if let AuthMode::Checked(auth) = &auth {
        auth.set_audit(emberline_gateway::audit_log(
            parts.log.clone(),
            shutdown.clone(),
        ));
    }
    let mut gateway = Gateway::new(
        parts.log.clone(),
        store,
        parts.codec.clone(),
        shutdown.clone(),
        auth,
    );
    if let Some(settings) = settings {
        gateway = gateway.with_settings(settings);
    }
    let sql = crate::sql_engine::LogSql::new(
        parts.log.clone(),
        parts.codec.clone(),
        parts.archive.clone(),
        config.gateway.sql.clone(),
    )
    .context("starting the SQL engine's threads")?;
    gateway = gateway.with_sql(Arc::new(sql));
    let default_budget = emberline_gateway::rate::Budget::default();
    gateway = gateway.with_budget(emberline_gateway::rate::Budget {
        per_second: config
            .auth
            .calls_per_second
            .unwrap_or(default_budget.per_second),
        burst: config.auth.burst.unwrap_or(default_budget.burst),
    });
    if let Some(tls) = &config.gateway.tls {
        let files = emberline_gateway::TlsFiles {
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
        };
        gateway = gateway.with_tls(
            emberline_gateway::Tls::load(&files)
                .context("gateway.tls (the TLS certificate and key)")?,
        );
    }
    let addr = config.gateway.grpc_addr;
    if let Some(web) = config.gateway.web_addr {
        let gateway = gateway.clone();
        tasks.spawn(async move {
            emberline_gateway::serve_web(gateway, web, None)
                .await
                .with_context(|| format!("web UI on {web} (set gateway.web_addr or --web-addr)"))
        });
    }
    readiness.waiting("grpc", format!("binding {addr}"));
    let (bound_tx, bound) = tokio::sync::oneshot::channel();
    let r = readiness.clone();
    tasks.spawn(async move {
        if bound.await.is_ok() {
            r.ready("grpc");
        }
        Ok(())
    });
    tasks.spawn(async move {
        emberline_gateway::serve_grpc(gateway, addr, Some(bound_tx))
            .await
            .context("gRPC gateway")
    });
    Ok(())
}

/// Serves the embedded registry's REST API. `optional`: a busy port is a warning, not a
/// failure (`up` works without it; only external Kafka clients need it).
fn spawn_registry_api(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    parts: &LogParts,
    shutdown: &CancellationToken,
    optional: bool,
    access: AuthMode,
) {
    if let (Some(registry), Some(addr)) = (
        parts.embedded_registry.clone(),
        config.gateway.registry_addr,
    ) {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            match emberline_gateway::serve_registry(registry, addr, shutdown, None, access).await {
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
    token: Option<String>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut ha = config.home_assistant.clone();
    ha.gateway_url = gateway_url;
    if let Some(tls) = &config.gateway.tls
        && ha.gateway_ca_file.is_none()
    {
        ha.gateway_ca_file = Some(tls.cert_file.clone());
    }
    if ha.token.is_none() {
        ha.token = token.map(emberline_common::Secret::new);
    }
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

/// How this process's gateway checks callers (see [`accounts::gateway_auth`]).
async fn gateway_auth_of(config: &Config, log: &Arc<dyn EventLog>) -> Result<AuthMode> {
    let listeners: Vec<_> = [Some(config.gateway.grpc_addr), config.gateway.web_addr]
        .into_iter()
        .flatten()
        .collect();
    accounts::gateway_auth(config, &listeners, config.gateway.web_addr, log).await
}

/// Every role in one process.
pub(crate) async fn up(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut tasks = JoinSet::new();
    let start = start_up(&config, &mut tasks, &shutdown).await;
    supervise_start(start, tasks, shutdown).await
}

/// Opens the log and the store and starts every part of `up`.
async fn start_up(
    config: &Config,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let readiness = start_ops(tasks, config, shutdown);
    // Not ready before the gRPC port is bound (after the log and the identities are read).
    readiness.waiting("grpc", "starting");
    let parts = open_log(config, SchemaIds::MayServe).await?;
    let store = open_store(config).await?;
    readiness.ready("log");
    tracing::info!(data_dir = %config.data_dir()?.display(), backend = ?config.log.backend, "emberline up");
    watch_processors_catch_up(tasks, &readiness, &parts, &store, shutdown);
    spawn_sources(tasks, config, &parts, shutdown);
    // One process owns every partition; on Kafka it also keeps the projection changelog,
    // so gateways started apart can follow it.
    Processing::new(
        config,
        parts.log.clone(),
        parts.codec.clone(),
        writer(config, &parts, &store),
    )
    .spawn(tasks, None, Mode::Follow, shutdown);
    let auth = gateway_auth_of(config, &parts.log).await?;
    let settings = open_settings(config, &parts.log, false).await?;
    if let Some(settings) = &settings {
        spawn_live_sources(tasks, &parts, shutdown, settings);
    }
    spawn_gateway(
        tasks,
        config,
        &parts,
        store,
        shutdown,
        &readiness,
        auth.clone(),
        settings.clone(),
    )?;
    spawn_registry_api(tasks, config, &parts, shutdown, true, auth.clone());
    if config.home_assistant.mqtt.is_some() {
        // Over TLS the connector checks the gateway's certificate, which must name
        // `localhost` (it is its own root of trust here).
        let url = match &config.gateway.tls {
            None => format!("http://{}", config.gateway.grpc_addr),
            Some(_) => format!("https://localhost:{}", config.gateway.grpc_addr.port()),
        };
        let token = accounts::internal_token(&auth, "home assistant (built in)")?;
        spawn_home_assistant(tasks, config, url, token, shutdown)?;
    }
    // Always: channels may be set up in the web UI at any time.
    spawn_notifier(tasks, config, &parts, shutdown, settings.as_ref())?;
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
    Ok(())
}

/// The ingest role.
pub(crate) async fn ingest(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut tasks = JoinSet::new();
    let readiness = start_ops(&mut tasks, &config, &shutdown);
    let parts = open_log(&config, SchemaIds::Shared).await?;
    let settings = open_settings(&config, &parts.log, true).await?;
    anyhow::ensure!(
        !config.sources.is_empty() || settings.is_some(),
        "no sources are configured: add [[sources]] (kind = \"simulator\" for the simulated \
         grill), or set settings.key to run the accounts added in the web UI"
    );
    readiness.ready("log");
    spawn_sources(&mut tasks, &config, &parts, &shutdown);
    if let Some(settings) = &settings {
        spawn_live_sources(&mut tasks, &parts, &shutdown, settings);
    }
    supervise(tasks, shutdown).await
}

/// The processor role; with `catch_up`, it processes the log as it is now and exits.
///
/// On Kafka (following the log) it is a member of the processor group: it works on the
/// partitions the group gives it and hands them over when the group moves them.
pub(crate) async fn process(config: Config, catch_up: bool) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut tasks = JoinSet::new();
    // A catch-up run is a batch job that exits when done: no endpoint to keep it alive.
    let readiness = if catch_up {
        Readiness::default()
    } else {
        start_ops(&mut tasks, &config, &shutdown)
    };
    let parts = open_log(&config, SchemaIds::Shared).await?;
    let store = open_store(&config).await?;
    readiness.ready("log");
    let processing =
        |writer| Processing::new(&config, parts.log.clone(), parts.codec.clone(), writer);
    match (catch_up, config.log.backend) {
        (true, _) => processing(writer(&config, &parts, &store)).spawn(
            &mut tasks,
            None,
            Mode::CatchUp,
            &shutdown,
        ),
        (false, Backend::Embedded) => {
            watch_processors_catch_up(&mut tasks, &readiness, &parts, &store, &shutdown);
            processing(store.clone()).spawn(&mut tasks, None, Mode::Follow, &shutdown);
        }
        (false, Backend::Kafka) => {
            let changelog = Arc::new(ChangelogStore::new(
                parts.log.clone(),
                store.clone(),
                claim_id(),
            ));
            let processing = processing(changelog.clone());
            let settings = GroupSettings {
                heartbeat: std::time::Duration::from_secs(1),
                session: std::time::Duration::from_millis(
                    config.log.kafka.group_session_timeout_ms,
                ),
            };
            let (r, s) = (readiness.clone(), shutdown.clone());
            tasks.spawn(async move {
                processing::follow_group(processing, store, changelog, settings, r, s).await
            });
        }
    }
    supervise(tasks, shutdown).await
}

/// This process's name in partition claims: host, process id and start time.
fn claim_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}/{}/{}", std::process::id(), now_ms())
}

/// Where processors write: the local store, behind the projection changelog on Kafka.
fn writer(
    config: &Config,
    parts: &LogParts,
    local: &Arc<dyn ProjectionStore>,
) -> Arc<dyn ProjectionStore> {
    match config.log.backend {
        Backend::Embedded => local.clone(),
        Backend::Kafka => Arc::new(ChangelogStore::new(
            parts.log.clone(),
            local.clone(),
            claim_id(),
        )),
    }
}

/// The gateway role. On Kafka it keeps a read model of its own, in its own data directory,
/// following the projection changelog; it is ready once that has caught up.
pub(crate) async fn gateway(config: Config) -> Result<()> {
    accounts::require_shared_signing_key(&config)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut tasks = JoinSet::new();
    let readiness = start_ops(&mut tasks, &config, &shutdown);
    // Not ready before the gRPC port is bound (after the log and the identities are read).
    readiness.waiting("grpc", "starting");
    let parts = open_log(&config, SchemaIds::Shared).await?;
    let store = open_store(&config).await?;
    readiness.ready("log");
    match config.log.backend {
        Backend::Embedded => {
            watch_processors_catch_up(&mut tasks, &readiness, &parts, &store, &shutdown);
        }
        // A shared ScyllaDB store is written by the processors: nothing to follow.
        Backend::Kafka if config.projections.backend == StoreBackend::Scylla => {}
        Backend::Kafka => {
            readiness.waiting("read model", "catching up with the projection changelog");
            let (log, model, r, s) = (
                parts.log.clone(),
                store.clone(),
                readiness.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move {
                changelog::follow(log, model, s, move || r.ready("read model"))
                    .await
                    .context("following the projection changelog")
            });
        }
    }
    let auth = gateway_auth_of(&config, &parts.log).await?;
    let settings = open_settings(&config, &parts.log, true).await?;
    spawn_gateway(
        &mut tasks, &config, &parts, store, &shutdown, &readiness, auth, settings,
    )?;
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
    start_ops(&mut tasks, &config, &shutdown).ready("log");
    let url = config.home_assistant.gateway_url.clone();
    spawn_home_assistant(&mut tasks, &config, url, None, &shutdown)?;
    supervise(tasks, shutdown).await
}

/// The settings made while running, in `log`, sealed with `settings.key` or (one process
/// on its own data) the data directory's key. A role run apart on Kafka without
/// `settings.key` has none: its own key could not open what another process sealed.
async fn open_settings(
    config: &Config,
    log: &Arc<dyn EventLog>,
    apart: bool,
) -> Result<Option<Arc<SettingsStore>>> {
    let previous: Vec<&str> = config
        .settings
        .previous_keys
        .iter()
        .map(emberline_common::Secret::expose)
        .collect();
    // An empty value (an unset variable in a compose file) is no key.
    let key = match config.settings.key.as_ref().filter(|k| !k.is_empty()) {
        Some(key) => SettingsKey::from_text(key.expose(), &previous).context("settings.key")?,
        None if apart && config.log.backend == Backend::Kafka => {
            tracing::warn!(
                "settings.key is not set: notification channels and thermometer accounts set up \
                 in the web UI are not available here (set the same settings.key, or EMBERLINE__SETTINGS__KEY, on \
                 every gateway and notifier)"
            );
            return Ok(None);
        }
        None => SettingsKey::in_dir(&config.data_dir()?, &previous).context("the settings key")?,
    };
    let store = SettingsStore::open(log.clone(), key, config.notifications.channels.clone())
        .await
        .context("reading the settings topic")?
        .with_file_sources(config.sources.clone());
    Ok(Some(Arc::new(store)))
}

/// Runs the thermometer accounts set up in the web UI, starting, restarting and stopping
/// them as `settings` change.
fn spawn_live_sources(
    tasks: &mut JoinSet<Result<()>>,
    parts: &LogParts,
    shutdown: &CancellationToken,
    settings: &Arc<SettingsStore>,
) {
    let sink = EventSink::new(parts.log.clone(), parts.codec.clone(), shutdown.clone());
    let (store, shutdown) = (settings.clone(), shutdown.clone());
    tasks.spawn(async move {
        let configs = store.live_sources();
        emberline_ingest::live::run_live_sources(configs, sink, shutdown).await;
        drop(store);
        Ok(())
    });
}

/// Starts the notifier: alerts from the log to the configured channels and those set up
/// in `settings`, through the outbox in the data directory.
fn spawn_notifier(
    tasks: &mut JoinSet<Result<()>>,
    config: &Config,
    parts: &LogParts,
    shutdown: &CancellationToken,
    settings: Option<&Arc<SettingsStore>>,
) -> Result<()> {
    let path = config.data_dir()?.join("outbox.redb");
    let outbox = emberline_notify::Outbox::open(&path)
        .with_context(|| format!("opening the notification outbox at {}", path.display()))?;
    crate::backup::hold(&path, outbox.database());
    let (added, routes) = match settings {
        Some(store) => (store.live_channels(), store.live_routes()),
        None => (
            tokio::sync::watch::channel(Arc::new(Vec::new())).1,
            tokio::sync::watch::channel(Arc::new(emberline_notify::Routes::new())).1,
        ),
    };
    let (log, codec, notifications, shutdown) = (
        parts.log.clone(),
        parts.codec.clone(),
        config.notifications.clone(),
        shutdown.clone(),
    );
    tasks.spawn(async move {
        emberline_notify::run_notifier_routed(
            log,
            codec,
            notifications,
            added,
            routes,
            outbox,
            shutdown,
        )
        .await
        .context("notifier")
    });
    Ok(())
}

/// The notification role alone.
pub(crate) async fn notify(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut tasks = JoinSet::new();
    let readiness = start_ops(&mut tasks, &config, &shutdown);
    let parts = open_log(&config, SchemaIds::Shared).await?;
    let settings = open_settings(&config, &parts.log, true).await?;
    anyhow::ensure!(
        !config.notifications.channels.is_empty() || settings.is_some(),
        "no channels: add [[notifications.channels]] to the configuration, or set settings.key \
         to deliver to the channels set up in the web UI"
    );
    readiness.ready("log");
    spawn_notifier(&mut tasks, &config, &parts, &shutdown, settings.as_ref())?;
    supervise(tasks, shutdown).await
}

/// The registry's REST API alone: over the embedded registry on the embedded log, over the
/// `_schemas` topic on Kafka, so every replica assigns the same ids and survives restarts.
pub(crate) async fn registry(mut config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    // This process *is* the registry that `registry.url` points the other roles at.
    config.registry.url = None;
    let addr = config
        .gateway
        .registry_addr
        .context("no address: set gateway.registry_addr or pass --addr")?;
    let mut tasks = JoinSet::new();
    let readiness = start_ops(&mut tasks, &config, &shutdown);
    match config.log.backend {
        Backend::Embedded => {
            let parts = open_log(&config, SchemaIds::MayServe).await?;
            let access = accounts::registry_auth(&config, addr, &parts.log).await?;
            readiness.ready("log");
            spawn_registry_api(&mut tasks, &config, &parts, &shutdown, false, access);
        }
        Backend::Kafka => {
            let log: Arc<dyn EventLog> =
                Arc::new(KafkaLog::connect(kafka_config(&config)).context("connecting to Kafka")?);
            let access = accounts::registry_auth(&config, addr, &log).await?;
            let registry = emberline_gateway::LogRegistry::open(log)
                .await
                .context("rebuilding the schema registry from the _schemas topic")?;
            // Register the event schemas up front, so their ids exist before other roles ask.
            EventCodec::connect(Arc::new(registry.clone()))
                .await
                .context("registering the event schemas")?;
            readiness.ready("log");
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                emberline_gateway::serve_registry(registry, addr, shutdown, None, access)
                    .await
                    .with_context(|| format!("schema registry REST API on {addr}"))
            });
        }
    }
    supervise(tasks, shutdown).await
}
