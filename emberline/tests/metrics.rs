//! A real Prometheus scrapes every role: the roles run apart on Kafka (registry, ingest with
//! the simulator, an HTTP push source and an MQTT source whose broker is down, a processor,
//! a gateway, the notifier with a webhook channel, the Home Assistant connector) beside an
//! `emberline up` on the embedded log. Prometheus scrapes each ops endpoint every second with
//! `deploy/prometheus/rules.yaml` loaded; the test waits until every metric family of
//! `docs/metrics.md` has a sample, until the rules are loaded and healthy, and until every
//! query of the Grafana dashboard (`deploy/grafana/emberline.json`, whose shape it checks
//! too) returns data.
//!
//! Needs `EMBERLINE_TEST_KAFKA` (Tansu), `EMBERLINE_TEST_PROMETHEUS` and
//! `EMBERLINE_TEST_MOSQUITTO`; `EMBERLINE_REQUIRE_PROMETHEUS=1` makes a missing Prometheus
//! a failure instead of a skip.

#![allow(clippy::print_stderr)] // the test reports how long the families took to appear

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emberline_log::{EventLog, KafkaLog, NewRecord, topics};
use emberline_proto::v1::alert_service_client::AlertServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::{AlertRule, ListDevicesRequest, SetAlertRuleRequest};
use serde_json::Value;
use support::roles::{Role, kafka_roles_config};
use support::{PATIENCE, eventually, free_port};

/// Every family the roles export; each must have a sample in Prometheus.
const FAMILIES: &[&str] = &[
    "emberline_build_info",
    "emberline_data_dir_bytes",
    "emberline_data_dir_filesystem_avail_bytes",
    "emberline_data_dir_filesystem_size_bytes",
    "emberline_source_up",
    "emberline_source_polls_total",
    "emberline_source_readings_total",
    "emberline_source_rejects_total",
    "emberline_source_duplicates_total",
    "emberline_source_errors_total",
    "emberline_source_last_success_timestamp_seconds",
    "emberline_source_backoff_seconds",
    "emberline_source_circuit_open",
    "emberline_log_appended_records_total",
    "emberline_log_appended_bytes_total",
    "emberline_log_append_batch_records_bucket",
    "emberline_log_append_duration_seconds_bucket",
    "emberline_log_end_offset",
    "emberline_processor_records_total",
    "emberline_processor_dead_letters_total",
    "emberline_processor_position",
    "emberline_processor_late_readings_total",
    "emberline_processor_round_duration_seconds_bucket",
    "emberline_projection_write_duration_seconds_bucket",
    "emberline_projection_written_bytes_total",
    "emberline_grpc_requests_total",
    "emberline_grpc_request_duration_seconds_bucket",
    "emberline_gateway_subscriptions",
    "emberline_notify_outbox_pending",
    "emberline_notify_outbox_oldest_pending_age_seconds",
    "emberline_notify_deliveries_total",
    "emberline_ha_publishes_total",
    "emberline_ha_connections_total",
    "emberline_ha_connected",
    "emberline:consumer_lag_records",
];

/// The alerting rules `deploy/prometheus/rules.yaml` must hold.
const ALERTS: &[&str] = &[
    "EmberlineConsumerLagGrowing",
    "EmberlineSourceFailing",
    "EmberlineOutboxStuck",
    "EmberlineDiskFilling",
];

const TICK: Duration = Duration::from_millis(500);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// The Prometheus binary, or `None` to skip (a failure under `EMBERLINE_REQUIRE_PROMETHEUS=1`).
fn prometheus_binary() -> Option<PathBuf> {
    let found = std::env::var_os("EMBERLINE_TEST_PROMETHEUS")
        .map(PathBuf::from)
        .filter(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("EMBERLINE_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "EMBERLINE_REQUIRE_PROMETHEUS=1 but EMBERLINE_TEST_PROMETHEUS names no binary"
        );
        eprintln!("skipped: set EMBERLINE_TEST_PROMETHEUS to a prometheus binary");
    }
    found
}

/// A Prometheus server scraping `targets` (role name, ops address) every second.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Prometheus {
    fn start(binary: &Path, dir: &Path, targets: &[(&str, SocketAddr)]) -> Self {
        let rules = repo_root().join("deploy/prometheus/rules.yaml");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\nscrape_configs:\n",
            rules.display()
        );
        for (role, addr) in targets {
            config.push_str(&format!(
                "  - job_name: {role}\n    static_configs:\n      - targets: ['{addr}']\n        labels: {{ role: {role} }}\n"
            ));
        }
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).expect("prometheus.yml");
        let addr = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Self {
            child,
            addr,
            http: reqwest::Client::new(),
        }
    }

    /// `GET /api/v1/<path>` with `query`; the `data` of a successful answer.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let url =
            reqwest::Url::parse_with_params(&format!("http://{}/api/v1/{path}", self.addr), query)
                .map_err(|e| e.to_string())?;
        let answer = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let body: Value = answer.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{path}: {body}"));
        }
        Ok(body["data"].clone())
    }

    /// How many series `expr` returns now.
    async fn series(&self, expr: &str) -> Result<usize, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().map_or(0, Vec::len))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kafka_config(dir: &Path, bootstrap: &str, prefix: &str, registry: SocketAddr) -> PathBuf {
    let path = dir.join("kafka.toml");
    std::fs::write(&path, kafka_roles_config(2, bootstrap, prefix, registry, 1)).expect("config");
    path
}

/// The ingest role's sources: the simulator, an HTTP push endpoint and an MQTT source whose
/// broker is not there (its failures and backoff are what the test wants to see).
fn ingest_config(base: &Path, dir: &Path, push: SocketAddr, dead_broker: SocketAddr) -> PathBuf {
    let path = dir.join("ingest.toml");
    let text = format!(
        r#"{}
[[sources]]
kind = "simulator"
devices = 1
probes = 2
interval_ms = 200

[[sources]]
kind = "http_push"
name = "push"
listen = "{push}"
tokens = {{ pushed = "metrics-test-token" }}

[[sources]]
kind = "mqtt"
name = "mqtt-down"
url = "mqtt://{dead_broker}"
client_id = "emberline-metrics-test"

[[sources.topics]]
filter = "+/state"
device = "{{0}}"
probe = "p"
"#,
        std::fs::read_to_string(base).expect("base config")
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// Receives webhook deliveries; counts them.
async fn webhook_receiver() -> (SocketAddr, Arc<Mutex<u32>>) {
    let received = Arc::new(Mutex::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                *counter.lock().expect("count") += 1;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// Checks the fields Grafana needs to import the dashboard; returns every query in it.
fn dashboard_queries() -> Vec<String> {
    let path = repo_root().join("deploy/grafana/emberline.json");
    let text = std::fs::read_to_string(&path).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    for field in ["title", "uid"] {
        assert!(
            dashboard[field].as_str().is_some_and(|s| !s.is_empty()),
            "dashboard {field}"
        );
    }
    assert!(
        dashboard["schemaVersion"].as_u64().is_some(),
        "schemaVersion"
    );
    assert!(
        text.contains("${DS_PROMETHEUS}"),
        "the datasource is the DS_PROMETHEUS input"
    );
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"));
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "{title}: id"
        );
        let kind = panel["type"].as_str().expect("panel type");
        let grid = &panel["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(grid[k].as_u64().is_some(), "{title}: gridPos.{k}");
        }
        if kind == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            let expr = target["expr"].as_str().expect("every target has an expr");
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
            queries.push(expr.to_owned());
        }
    }
    assert!(queries.len() >= 20, "only {} queries", queries.len());
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_role_and_the_dashboard_and_rules_work() {
    let queries = dashboard_queries();
    let Some(kafka) = emberline_log::conformance::kafka_from_env() else {
        return;
    };
    let Some(prometheus_bin) = prometheus_binary() else {
        return;
    };
    let Some(mosquitto_bin) = support::mosquitto::mosquitto_binary() else {
        return;
    };
    emberline_common::http::install_crypto_provider();
    let started = Instant::now();
    let root = tempfile::tempdir().expect("tempdir");
    let dir = |name: &str| root.path().join(name);
    let prefix = format!("metrics.{}.", emberline_common::clock::now_nanos());
    let registry_addr = free_port();
    let base = kafka_config(
        root.path(),
        &kafka.bootstrap_servers,
        &prefix,
        registry_addr,
    );
    let push = free_port();
    let ingest_toml = ingest_config(&base, root.path(), push, free_port());
    let broker = support::mosquitto::Broker::start(mosquitto_bin);
    let (hook, hooked) = webhook_receiver().await;
    let grpc = free_port();

    let mut registry = Role::registry(&base, &dir("registry"), registry_addr);
    registry.ready().await;
    let mut roles = vec![
        Role::start("ingest", &ingest_toml, &dir("ingest"), &["ingest"], &[]),
        Role::start("process", &base, &dir("process"), &["process"], &[]),
        Role::gateway("gateway", &base, &dir("gateway"), grpc),
        Role::start(
            "notify",
            &base,
            &dir("notify"),
            &["notify"],
            &[(
                "EMBERLINE__NOTIFICATIONS__CHANNELS",
                format!(r#"[{{name="hook", kind="webhook", url="http://{hook}/hook"}}]"#),
            )],
        ),
        Role::start(
            "connect-ha",
            &base,
            &dir("connect-ha"),
            &["connect-ha", "--gateway", &format!("http://{grpc}")],
            &[
                ("EMBERLINE__HOME_ASSISTANT__MQTT__URL", broker.url()),
                (
                    "EMBERLINE__HOME_ASSISTANT__MIN_STATE_INTERVAL_MS",
                    "0".into(),
                ),
            ],
        ),
    ];
    let up_config = dir("up.toml");
    std::fs::write(
        &up_config,
        "[[sources]]\nkind = \"simulator\"\ndevices = 1\nprobes = 2\ninterval_ms = 200\n",
    )
    .expect("up config");
    roles.push(Role::start(
        "up",
        &up_config,
        &dir("up"),
        &[
            "up",
            "--grpc-addr",
            &free_port().to_string(),
            "--registry-addr",
            &free_port().to_string(),
            "--web-addr",
            &free_port().to_string(),
        ],
        &[],
    ));
    for role in &mut roles {
        role.ready().await;
    }
    eprintln!("MEASURED: every role ready after {:?}", started.elapsed());

    let mut targets = vec![("registry", registry.ops)];
    targets.extend(roles.iter().map(|r| (r.name.as_str(), r.ops)));
    let prometheus = Prometheus::start(&prometheus_bin, root.path(), &targets);

    // What makes the rarer families move: an alert for the webhook (a rule any pit
    // temperature raises), pushed readings (one rejected, one late), an undecodable record.
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .expect("url")
        .connect_lazy();
    eventually(
        "the gateway lists the simulated grill",
        PATIENCE,
        TICK,
        || {
            let mut devices = DeviceServiceClient::new(channel.clone());
            async move {
                let listed = devices
                    .list_devices(ListDevicesRequest::default())
                    .await
                    .map_err(|s| s.to_string())?
                    .into_inner();
                if listed.devices.iter().any(|d| d.device_id == "sim-1") {
                    Ok(())
                } else {
                    Err(format!("{} devices", listed.devices.len()))
                }
            }
        },
    )
    .await;
    AlertServiceClient::new(channel.clone())
        .set_alert_rule(SetAlertRuleRequest {
            rule: Some(AlertRule {
                device_id: "sim-1".into(),
                probe_id: Some("pit".into()),
                kind: "above".into(),
                threshold: Some(-40.0),
                label: Some("Metrics test".into()),
                ..Default::default()
            }),
        })
        .await
        .expect("set an alert rule");
    let now_s = emberline_common::clock::now_ms() / 1000;
    let http = reqwest::Client::new();
    for (time, value) in [(now_s, 100.0), (now_s - 3_600, 90.0), (now_s, 5_000.0)] {
        let answer = http
            .post(format!("http://{push}/v1/readings"))
            .bearer_auth("metrics-test-token")
            .json(&serde_json::json!({
                "device_id": "pushed",
                "readings": [{ "probe_id": "p1", "value": value, "time": time }],
            }))
            .send()
            .await
            .expect("push");
        assert!(
            answer.status().is_success() || answer.status().as_u16() == 422,
            "push answered {}",
            answer.status()
        );
    }
    let log: Arc<dyn EventLog> = {
        let mut k = emberline_log::KafkaConfig::new(kafka.bootstrap_servers.clone());
        k.topic_prefix = prefix.clone();
        Arc::new(KafkaLog::connect(k).expect("connect"))
    };
    log.append(
        topics::PROBE_READINGS,
        vec![NewRecord {
            key: b"sim-1".to_vec(),
            value: b"not avro".to_vec(),
            timestamp_ms: emberline_common::clock::now_ms(),
        }],
    )
    .await
    .expect("append an undecodable record");

    let rules = eventually(
        "the rules are loaded and healthy",
        PATIENCE,
        TICK,
        || async {
            let data = prometheus.api("rules", &[]).await?;
            let mut alerts = Vec::new();
            for group in data["groups"].as_array().into_iter().flatten() {
                for rule in group["rules"].as_array().into_iter().flatten() {
                    if rule["health"] != "ok" {
                        return Err(format!(
                            "{} is {}: {}",
                            rule["name"], rule["health"], rule["lastError"]
                        ));
                    }
                    if rule["type"] == "alerting" {
                        alerts.push(rule["name"].as_str().unwrap_or_default().to_owned());
                    }
                }
            }
            match ALERTS.iter().find(|a| !alerts.iter().any(|b| b == *a)) {
                Some(missing) => Err(format!("{missing} not loaded yet ({alerts:?})")),
                None => Ok(alerts),
            }
        },
    )
    .await;
    eprintln!("MEASURED: {} alerting rules loaded", rules.len());

    for family in FAMILIES {
        let expr = family.to_string();
        eventually(
            &format!("Prometheus has a sample of {family}"),
            PATIENCE,
            TICK,
            || async {
                match prometheus.series(&expr).await? {
                    0 => Err("no sample yet".to_owned()),
                    _ => Ok(()),
                }
            },
        )
        .await;
    }
    eprintln!(
        "MEASURED: every family scraped after {:?}",
        started.elapsed()
    );
    // Every role, each once: a family seen above may come from the other roles while one
    // role's first scrape is still due.
    for (role, _) in &targets {
        let expr = format!("emberline_build_info{{role=\"{role}\"}}");
        eventually(&format!("{role} is scraped"), PATIENCE, TICK, || async {
            match prometheus.series(&expr).await? {
                1 => Ok(()),
                n => Err(format!("{n} series")),
            }
        })
        .await;
    }
    for expr in &queries {
        eventually(
            &format!("the dashboard's query {expr} returns data"),
            PATIENCE,
            TICK,
            || async {
                match prometheus.series(expr).await? {
                    0 => Err("no data".to_owned()),
                    _ => Ok(()),
                }
            },
        )
        .await;
    }
    assert!(
        *hooked.lock().expect("count") > 0,
        "the webhook got the alert"
    );
    eprintln!(
        "MEASURED: metrics test done in {:?} ({} dashboard queries)",
        started.elapsed(),
        queries.len()
    );
}
