//! The configuration file: one TOML document, layered over built-in defaults, with
//! `EMBERLINE__SECTION__KEY` environment overrides (e.g. `EMBERLINE__LOG__BACKEND=kafka`).
//! Unknown keys are errors. `emberline config --print-default` prints the defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use emberline_home_assistant::HomeAssistantConfig;
use emberline_ingest::{SimulatorConfig, SourceConfig};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Where the embedded log and projections live. Default: the user's data directory
    /// (`~/.local/share/emberline` on Linux).
    pub(crate) data_dir: Option<PathBuf>,
    /// The event log.
    pub(crate) log: LogConfig,
    /// Schema ids.
    pub(crate) registry: RegistryConfig,
    /// The processors.
    pub(crate) processor: ProcessorConfig,
    /// The gateway.
    pub(crate) gateway: GatewayConfig,
    /// The old `[simulator]` section, still read: [`Config::load`] turns it into a
    /// `[[sources]]` entry of kind `simulator` (with a deprecation warning). Never printed.
    #[serde(skip_serializing)]
    pub(crate) simulator: Option<SimulatorSection>,
    /// The Home Assistant connector; `up` starts it when `home_assistant.mqtt` is set.
    pub(crate) home_assistant: HomeAssistantConfig,
    /// Alert notifications (`[[notifications.channels]]`); `up` delivers them when any
    /// channel is configured, `emberline notify` runs the role alone.
    pub(crate) notifications: emberline_notify::NotifyConfig,
    /// Configured sources (`[[sources]]` with a `kind`), which `up` and `ingest` run. By
    /// default one simulated grill with a cook on it ([`default_sources`]); listing any
    /// replaces it.
    pub(crate) sources: Vec<SourceConfig>,
    /// The health and readiness endpoint of every role.
    pub(crate) ops: OpsConfig,
    /// Where projections (and processor state) are kept.
    pub(crate) projections: ProjectionsConfig,
    /// How long projection history is kept.
    pub(crate) history: HistoryConfig,
    /// Span export (OpenTelemetry, OTLP/gRPC).
    pub(crate) telemetry: crate::telemetry::TelemetryConfig,
    /// Who may call the API.
    pub(crate) auth: AuthConfig,
    /// Settings made while running (the web UI's notification channels).
    pub(crate) settings: SettingsConfig,
}

/// How settings made while running are sealed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SettingsConfig {
    /// The key that seals credentials in the settings, 32+ characters; every gateway and
    /// notifier of a distributed deployment needs the same. Default: `settings.key` in the
    /// data directory, made on first start.
    pub(crate) key: Option<emberline_common::Secret>,
    /// Older keys, still opening what they sealed (rotation).
    pub(crate) previous_keys: Vec<emberline_common::Secret>,
}

/// How callers of the API are checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthConfig {
    /// `password` (default): users sign in, scripts use API tokens. `none`: nobody is
    /// checked — allowed only when every listener is on a loopback address.
    pub(crate) mode: AuthModeName,
    /// A file holding the first owner's password: with no user yet, `up` creates the owner
    /// `admin_user` with it instead of printing a one-time setup link.
    pub(crate) admin_password_file: Option<PathBuf>,
    /// The first owner's name, with `admin_password_file` (default `admin`).
    pub(crate) admin_user: Option<String>,
    /// Calls each user, API token or share link may make per second, sustained (0: no
    /// limit); default 100.
    pub(crate) calls_per_second: Option<f64>,
    /// Calls each caller may make at once; default 400.
    pub(crate) burst: Option<f64>,
    /// A pre-shared token the roles of a distributed deployment present to its registry
    /// (as `registry.token`), accepted with scope `ingest`; from the deployment's secrets.
    pub(crate) service_token: Option<emberline_common::Secret>,
    /// The key access tokens are signed with, 32+ characters; every gateway replica of a
    /// distributed deployment needs the same one. Default: `auth.key` in the data
    /// directory, made on first start.
    pub(crate) signing_key: Option<emberline_common::Secret>,
    /// An OpenID provider whose tokens are accepted besides Emberline's own (the hosted
    /// deployment).
    pub(crate) oidc: Option<emberline_auth::oidc::OidcSettings>,
}

/// `auth.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthModeName {
    /// Users and tokens.
    #[default]
    Password,
    /// Nobody is checked (loopback only).
    None,
}

/// Where projections are kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ProjectionsConfig {
    /// `embedded` (a file in each process's data directory) or `scylla` (one shared
    /// ScyllaDB keyspace; `[projections.scylla]` says where).
    pub(crate) backend: StoreBackend,
    /// The ScyllaDB cluster (with `backend = "scylla"`).
    pub(crate) scylla: Option<emberline_projections::ScyllaConfig>,
}

/// The projection store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreBackend {
    /// redb in the data directory.
    #[default]
    Embedded,
    /// A ScyllaDB (or Cassandra) cluster.
    Scylla,
}

/// The operations endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct OpsConfig {
    /// Where to serve `GET /healthz` and `GET /readyz` (e.g. `"0.0.0.0:9400"` in a pod);
    /// unset serves neither.
    pub(crate) addr: Option<SocketAddr>,
    /// A token `GET /metrics` requires as a bearer (Prometheus: `authorization:
    /// credentials_file`); unset leaves metrics open to whoever reaches `addr`.
    pub(crate) metrics_token: Option<emberline_common::Secret>,
}

/// Which log backend, and how to reach it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogConfig {
    /// `embedded` (redb in the data directory) or `kafka`.
    pub(crate) backend: Backend,
    /// Partitions of the topics Emberline creates.
    pub(crate) partitions: u32,
    /// Kafka settings (used when `backend = "kafka"`).
    pub(crate) kafka: KafkaSection,
    /// Records older than this (by record time, which is the event time) are removed, days;
    /// 0 keeps them forever. The embedded log removes them in the background; on Kafka it is
    /// the `retention.ms` of the topics Emberline creates. The projection changelog and
    /// `_schemas` are always kept.
    pub(crate) retention_days: u32,
    /// How often the embedded log looks for expired records, seconds.
    pub(crate) retention_check_interval_s: u64,
    /// Whether the embedded log keeps what retention removes, as Parquet files by day and
    /// device in `<data_dir>/archive`, which `emberline sql`, `export` and the `Sql` RPC read
    /// with the live log. Not used on Kafka, whose brokers delete by `retention.ms`.
    pub(crate) archive: bool,
}

/// How long projection history is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HistoryConfig {
    /// History points with an event time older than this are removed from the embedded
    /// projection store, days; 0 keeps them forever. `GetHistory` for a range before what is
    /// kept answers OUT_OF_RANGE ("expired").
    pub(crate) retention_days: u32,
    /// How often the embedded store looks for expired history, seconds.
    pub(crate) retention_check_interval_s: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            retention_days: 365,
            retention_check_interval_s: 60,
        }
    }
}

/// `days` as a duration; `None` for 0 (keep forever).
pub(crate) fn retention(days: u32) -> Option<std::time::Duration> {
    (days > 0).then(|| std::time::Duration::from_secs(u64::from(days) * 86_400))
}

/// The log backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    /// redb in the data directory; every role in one process.
    Embedded,
    /// A Kafka-protocol broker.
    Kafka,
}

/// Kafka connection settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KafkaSection {
    /// `bootstrap.servers`.
    pub(crate) bootstrap_servers: String,
    /// Replication factor of created topics.
    pub(crate) replication_factor: i32,
    /// Extra librdkafka properties (security.protocol, sasl.*, …); their values are treated
    /// as secrets (never logged).
    pub(crate) properties: BTreeMap<String, emberline_common::Secret>,
    /// Put before every topic, consumer and group name, so several installations can share
    /// one cluster.
    pub(crate) topic_prefix: String,
    /// How long a processor may go silent before its partitions move to the others, ms
    /// (the consumer group's `session.timeout.ms`).
    pub(crate) group_session_timeout_ms: u64,
}

/// Where schema ids come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RegistryConfig {
    /// URL of a Confluent-compatible registry. Required with Kafka; with the embedded log,
    /// unset means the embedded registry.
    pub(crate) url: Option<String>,
    /// An API token (scope `ingest`) sent to `url`, when that registry checks callers.
    pub(crate) token: Option<emberline_common::Secret>,
}

/// Processor settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ProcessorConfig {
    /// Timely worker threads of the trend processor.
    pub(crate) workers: usize,
    /// How often the processor role writes the time to the log, seconds, so that "device
    /// offline" and "probe disconnected" alerts fire on a quiet device; 0 turns it off.
    pub(crate) tick_interval_s: u64,
}

/// Gateway settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GatewayConfig {
    /// gRPC and grpc-web address.
    pub(crate) grpc_addr: SocketAddr,
    /// Address of the embedded registry's Confluent-compatible REST API (embedded log only).
    pub(crate) registry_addr: Option<SocketAddr>,
    /// Address of the web UI (with grpc-web on the same origin); unset serves none.
    pub(crate) web_addr: Option<SocketAddr>,
    /// TLS on the gRPC port and the web origin, from PEM files; unset serves plain text.
    pub(crate) tls: Option<TlsSection>,
    /// Bounds of `QueryService/Sql`.
    pub(crate) sql: SqlLimits,
}

/// `[gateway.sql]`: what one `QueryService/Sql` query may take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SqlLimits {
    /// Longest a query may run, seconds (planning, reading and sending its result).
    pub(crate) timeout_s: u64,
    /// Memory a query's joins, sorts and aggregations may hold, MiB (nothing spills to disk).
    pub(crate) memory_mib: u64,
    /// Largest result, MiB of Arrow IPC.
    pub(crate) max_result_mib: u64,
    /// Queries that run at once; more wait up to 5 s for a turn, then are refused.
    pub(crate) concurrent: usize,
    /// Threads the queries run on (apart from those that answer other calls).
    pub(crate) threads: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout_s: 30,
            memory_mib: 256,
            max_result_mib: 64,
            concurrent: 2,
            threads: 2,
        }
    }
}

/// `[gateway.tls]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// PEM certificate chain.
    pub(crate) cert_file: PathBuf,
    /// PEM private key.
    pub(crate) key_file: PathBuf,
}

/// The sources `up` and `ingest` run when none are listed: one simulated grill with a cook
/// on it, its meat probes aimed at 93 °C.
pub(crate) fn default_sources() -> Vec<SourceConfig> {
    vec![SourceConfig::Simulator(SimulatorConfig {
        cook_target_c: Some(93.0),
        ..SimulatorConfig::default()
    })]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            log: LogConfig::default(),
            registry: RegistryConfig::default(),
            processor: ProcessorConfig::default(),
            gateway: GatewayConfig::default(),
            simulator: None,
            home_assistant: HomeAssistantConfig::default(),
            notifications: emberline_notify::NotifyConfig::default(),
            sources: default_sources(),
            ops: OpsConfig::default(),
            projections: ProjectionsConfig::default(),
            history: HistoryConfig::default(),
            telemetry: crate::telemetry::TelemetryConfig::default(),
            auth: AuthConfig::default(),
            settings: SettingsConfig::default(),
        }
    }
}

/// The deprecated `[simulator]` section: the simulator's settings, and whether it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SimulatorSection {
    /// Run the simulator.
    pub(crate) enabled: bool,
    /// Start a cook session with each new simulated cook, its food probes aimed at
    /// `cook_target_c`, so predictions and the target-reached alert show at once.
    pub(crate) start_cook: bool,
    /// Target of the simulated food probes, Celsius.
    pub(crate) cook_target_c: f64,
    /// Its settings.
    #[serde(flatten)]
    pub(crate) settings: SimulatorConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            partitions: 4,
            kafka: KafkaSection::default(),
            retention_days: 30,
            retention_check_interval_s: 60,
            archive: true,
        }
    }
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            replication_factor: 1,
            properties: BTreeMap::new(),
            topic_prefix: String::new(),
            group_session_timeout_ms: 10_000,
        }
    }
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            tick_interval_s: 15,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            registry_addr: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            web_addr: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            tls: None,
            sql: SqlLimits::default(),
        }
    }
}

impl Default for SimulatorSection {
    fn default() -> Self {
        Self {
            enabled: true,
            start_cook: true,
            cook_target_c: 93.0,
            settings: SimulatorConfig::default(),
        }
    }
}

impl SimulatorSection {
    /// The `[[sources]]` entry doing what this section did, or none when it was disabled.
    fn to_source(&self) -> Option<SourceConfig> {
        self.enabled.then(|| {
            SourceConfig::Simulator(SimulatorConfig {
                cook_target_c: self.start_cook.then_some(self.cook_target_c),
                ..self.settings.clone()
            })
        })
    }
}

/// The TOML of `sources` on one line (`[[sources]] kind = "simulator", devices = 1, …`), for
/// a message.
fn one_line(sources: &[SourceConfig]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        sources: &'a [SourceConfig],
    }
    if sources.is_empty() {
        return "sources = []".to_owned();
    }
    let text = toml::to_string(&Doc { sources }).unwrap_or_default();
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('[') {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(line);
            out.push(' ');
        } else {
            if !out.ends_with(' ') {
                out.push_str(", ");
            }
            out.push_str(line);
        }
    }
    out
}

impl Config {
    /// Defaults, then `file` (if given), then `EMBERLINE__…` environment variables.
    pub(crate) fn load(file: Option<&Path>) -> Result<Self> {
        // What the user wrote (the file, then the environment), over the defaults.
        let mut given = Figment::new();
        if let Some(file) = file {
            anyhow::ensure!(
                file.exists(),
                "config file {} does not exist",
                file.display()
            );
            given = given.merge(Toml::file_exact(file));
        }
        let env = Env::prefixed("EMBERLINE__").split("__").lowercase(true);
        given = given.merge(env);
        let sources_given = given.contains("sources");
        let figment = Figment::from(Serialized::defaults(Config::default())).merge(given);
        let mut config: Config = figment.extract().with_context(|| match file {
            Some(f) => format!(
                "invalid configuration in {} or EMBERLINE__ variables",
                f.display()
            ),
            None => "invalid configuration in EMBERLINE__ variables".to_owned(),
        })?;
        if let Some(section) = config.simulator.take() {
            // As before: `[simulator]` counts only when no `[[sources]]` are listed.
            if sources_given {
                tracing::warn!(
                    "the [simulator] section is deprecated and ignored because [[sources]] are listed: add a [[sources]] entry with kind = \"simulator\" to run the simulator"
                );
            } else {
                config.sources = section.to_source().into_iter().collect();
                tracing::warn!(
                    "the [simulator] section is deprecated: write `{}` instead",
                    one_line(&config.sources)
                );
            }
        }
        Ok(config)
    }

    /// The data directory, resolved.
    pub(crate) fn data_dir(&self) -> Result<PathBuf> {
        match &self.data_dir {
            Some(d) => Ok(d.clone()),
            None => dirs::data_dir()
                .map(|d| d.join("emberline"))
                .context("no data directory for this user; pass --data-dir"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml_and_files_override_them() {
        let printed = toml::to_string(&Config::default()).expect("print");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("emberline.toml");
        std::fs::write(&path, &printed).expect("write");
        assert_eq!(Config::load(Some(&path)).expect("load"), Config::default());

        std::fs::write(
            &path,
            "[log]\nbackend = \"kafka\"\n[log.kafka]\nbootstrap_servers = \"b:9\"\n",
        )
        .expect("write");
        let c = Config::load(Some(&path)).expect("load");
        assert_eq!(c.log.backend, Backend::Kafka);
        assert_eq!(c.log.kafka.bootstrap_servers, "b:9");
        assert_eq!(c.log.partitions, 4);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("emberline.toml");
        std::fs::write(&path, "[log]\nbakend = \"kafka\"\n").expect("write");
        let err = format!("{:#}", Config::load(Some(&path)).expect_err("must fail"));
        assert!(err.contains("bakend"), "{err}");
    }

    #[test]
    fn the_default_sources_are_a_simulated_cook_and_listing_sources_replaces_them() {
        match Config::default().sources.as_slice() {
            [SourceConfig::Simulator(s)] => {
                assert_eq!(
                    SimulatorConfig {
                        cook_target_c: None,
                        ..s.clone()
                    },
                    SimulatorConfig::default()
                );
                assert_eq!(s.cook_target_c, Some(93.0));
            }
            other => panic!("{other:?}"),
        }
        let printed = toml::to_string(&Config::default()).expect("print");
        assert!(
            printed.contains("[[sources]]") && !printed.contains("[simulator]"),
            "{printed}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("emberline.toml");
        std::fs::write(
            &path,
            "[[sources]]\nkind = \"simulator\"\ndevices = 3\n\n[[sources]]\nkind = \"mqtt\"\n",
        )
        .expect("write");
        let kinds: Vec<_> = Config::load(Some(&path))
            .expect("load")
            .sources
            .iter()
            .map(|s| match s {
                SourceConfig::Simulator(s) => {
                    format!("simulator {} {:?}", s.devices, s.cook_target_c)
                }
                other => other.kind().to_owned(),
            })
            .collect();
        assert_eq!(kinds, ["simulator 3 None", "mqtt"]);
        std::fs::write(&path, "sources = []\n").expect("write");
        assert!(Config::load(Some(&path)).expect("load").sources.is_empty());
    }

    #[test]
    fn the_old_simulator_section_becomes_a_sources_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("emberline.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Config::load(Some(&path)).expect("load")
        };
        let c = load("[simulator]\ndevices = 8\ninterval_ms = 100\ncook_target_c = 90.0\n");
        assert_eq!(c.simulator, None, "translated, not kept");
        assert_eq!(
            c.sources,
            [SourceConfig::Simulator(SimulatorConfig {
                devices: 8,
                interval_ms: 100,
                cook_target_c: Some(90.0),
                ..SimulatorConfig::default()
            })]
        );
        // An empty section is the old default: exactly the new default.
        assert_eq!(load("[simulator]\n").sources, Config::default().sources);
        let no_cook = load("[simulator]\nstart_cook = false\n");
        assert_eq!(
            no_cook.sources,
            [SourceConfig::Simulator(SimulatorConfig::default())]
        );
        assert!(load("[simulator]\nenabled = false\n").sources.is_empty());
        // Listed sources win, as they always did.
        let listed = load("[simulator]\ndevices = 8\n\n[[sources]]\nkind = \"mqtt\"\n");
        assert_eq!(
            listed
                .sources
                .iter()
                .map(SourceConfig::kind)
                .collect::<Vec<_>>(),
            ["mqtt"]
        );
        // Unknown keys in the old section are still errors.
        std::fs::write(&path, "[simulator]\ndevicez = 2\n").expect("write");
        assert!(Config::load(Some(&path)).is_err());
        // The message says what to write, on one line.
        let line = one_line(&load("[simulator]\ndevices = 2\n").sources);
        assert!(
            line.starts_with("[[sources]] kind = \"simulator\", devices = 2,")
                && line.contains("cook_target_c = 93.0")
                && !line.contains('\n'),
            "{line}"
        );
    }

    #[test]
    fn the_shipped_kafka_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kafka.toml");
        let c = Config::load(Some(&path)).expect("deploy/kafka.toml");
        assert_eq!(c.log.backend, Backend::Kafka);
        assert!(c.registry.url.is_some());
    }
}
