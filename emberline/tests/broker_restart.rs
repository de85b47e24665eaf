//! The Kafka-protocol broker killed with SIGKILL mid-ingest and restarted on the same port
//! and storage, under the roles run apart (registry, ingest with the HTTP push source,
//! processor, gateway). The test starts its own Tansu broker (its own sqlite file), so the
//! kill touches no other test. Every reading the push source acknowledged (`200`) must be
//! in the log and in the gateway's history; no effect may be doubled: history points are
//! unique per (device, probe, time) and `derived.trends` holds each source offset once, in
//! order.
//!
//! Needs `EMBERLINE_TEST_KAFKA` (as every Kafka test: skipped without it, failing with
//! `EMBERLINE_REQUIRE_KAFKA=1`) and the Tansu binary (`EMBERLINE_TANSU`, default
//! `~/.cache/emberline/tools/bin/tansu`, where `scripts/test` installs it).
#![allow(clippy::print_stderr)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emberline_log::{EventLog, KafkaConfig, KafkaLog, topics};
use emberline_schemas::events::{ProbeReading, TrendUpdated};
use emberline_schemas::{ConfluentRegistry, EventCodec};
use support::answers::answers;
use support::roles::{Role, kafka_roles_config, read_until};
use support::{PATIENCE, eventually, free_port};

const DEVICES: usize = 4;
const PARTITIONS: u32 = 4;

fn tansu_binary() -> PathBuf {
    std::env::var_os("EMBERLINE_TANSU").map_or_else(
        || dirs_home().join(".cache/emberline/tools/bin/tansu"),
        PathBuf::from,
    )
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME"))
}

/// Starts Tansu on `port` with its sqlite file in `dir`, and waits until it listens.
async fn start_broker(dir: &Path, port: u16) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(tansu_binary())
        .current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://tansu.db",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", tansu_binary().display()));
    eventually(
        "the broker listens",
        PATIENCE,
        Duration::from_millis(50),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;
    child
}

fn config_file(
    dir: &Path,
    port: u16,
    prefix: &str,
    registry: SocketAddr,
    push: SocketAddr,
) -> PathBuf {
    let path = dir.join("emberline.toml");
    let tokens: String = (1..=DEVICES)
        .map(|d| format!("\"dev-{d}\" = \"token-{d}\"\n"))
        .collect();
    let text = format!(
        r#"{}
[[sources]]
kind = "http_push"
listen = "{push}"

[sources.tokens]
{tokens}"#,
        kafka_roles_config(
            PARTITIONS,
            &format!("127.0.0.1:{port}"),
            prefix,
            registry,
            0
        )
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// What the pusher has had acknowledged, and how many pushes failed.
#[derive(Default)]
struct Pushed {
    acknowledged: BTreeSet<(String, String, i64)>,
    failures: u64,
}

/// Pushes `total` readings, one device after another, each until it is acknowledged.
async fn push(addr: SocketAddr, total: usize, start: i64, pushed: Arc<Mutex<Pushed>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    for i in 0..total {
        let d = i % DEVICES + 1;
        let (device, time) = (format!("dev-{d}"), start + (i / DEVICES) as i64 * 1_000);
        let body = serde_json::json!({
            "device_id": device,
            "readings": [{"probe_id": "pit", "value": 100.0 + (i % 50) as f64, "time": time}],
        });
        let deadline = tokio::time::Instant::now() + PATIENCE * 3;
        loop {
            let answer = http
                .post(format!("http://{addr}/v1/readings"))
                .bearer_auth(format!("token-{d}"))
                .json(&body)
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => break,
                _ => {
                    pushed.lock().expect("lock").failures += 1;
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "reading {i} never acknowledged"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        pushed
            .lock()
            .expect("lock")
            .acknowledged
            .insert((device, "pit".into(), time));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_ingest_loses_and_doubles_nothing() {
    if emberline_log::conformance::kafka_from_env().is_none() {
        return;
    }
    emberline_common::http::install_crypto_provider();
    let root = tempfile::tempdir().expect("tempdir");
    let broker_dir = root.path().join("broker");
    std::fs::create_dir_all(&broker_dir).expect("dir");
    let port = free_port().port();
    let mut broker = start_broker(&broker_dir, port).await;

    let prefix = format!("restart.{}.", emberline_common::clock::now_nanos());
    let (registry_addr, push_addr) = (free_port(), free_port());
    let config = config_file(root.path(), port, &prefix, registry_addr, push_addr);
    let dir = |name: &str| root.path().join(name);
    let mut registry = Role::registry(&config, &dir("registry"), registry_addr);
    registry.ready().await;
    let mut ingest = Role::start("ingest", &config, &dir("ingest"), &["ingest"], &[]);
    let mut processor = Role::start("processor", &config, &dir("processor"), &["process"], &[]);
    let grpc = free_port();
    let mut gateway = Role::gateway("gateway", &config, &dir("gateway"), grpc);
    ingest.ready().await;
    processor.ready().await;
    gateway.ready().await;

    let total = 1_200;
    let pushed = Arc::new(Mutex::new(Pushed::default()));
    // Device times in the recent past, inside the source's retention and not ahead of now.
    let start = emberline_common::clock::now_ms() - 3_600_000;
    let pusher = tokio::spawn(push(push_addr, total, start, pushed.clone()));
    let count = |p: &Arc<Mutex<Pushed>>| {
        let p = p.lock().expect("lock");
        (p.acknowledged.len(), p.failures)
    };
    eventually(
        "a third acknowledged",
        PATIENCE,
        Duration::from_millis(20),
        || async {
            let (n, _) = count(&pushed);
            if n >= total / 3 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        },
    )
    .await;
    broker.kill().expect("SIGKILL the broker");
    broker.wait().expect("reap");
    let (at_kill, _) = count(&pushed);
    // Down until pushes fail, then back on the same port and storage.
    eventually(
        "pushes fail while the broker is down",
        PATIENCE,
        Duration::from_millis(50),
        || async {
            let (_, failures) = count(&pushed);
            if failures >= 3 {
                Ok(())
            } else {
                Err(format!("{failures} failures"))
            }
        },
    )
    .await;
    let mut broker = start_broker(&broker_dir, port).await;
    tokio::time::timeout(PATIENCE * 4, pusher)
        .await
        .expect("the pusher finished")
        .expect("the pusher");
    let (acknowledged, failures) = {
        let p = pushed.lock().expect("lock");
        (p.acknowledged.clone(), p.failures)
    };
    eprintln!(
        "MEASURED: broker killed after {at_kill} of {total} readings acknowledged; {failures} pushes failed and were retried"
    );

    // Every acknowledged reading reaches the gateway's history, each once.
    let history = eventually(
        "every acknowledged reading in the history",
        PATIENCE * 2,
        Duration::from_millis(500),
        || async {
            let a = answers(grpc).await;
            let held: BTreeSet<_> = a.points.iter().cloned().collect();
            let missing = acknowledged.difference(&held).count();
            if missing == 0 {
                Ok(a)
            } else {
                Err(format!("{missing} missing of {}", acknowledged.len()))
            }
        },
    )
    .await;
    let mut seen = BTreeMap::new();
    for p in &history.points {
        *seen.entry(p.clone()).or_insert(0u32) += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "history points twice: {doubled:?}");

    // The log: every acknowledged reading, and how often (a retried push after a timeout may
    // repeat one; effects must not).
    let log = KafkaLog::connect(KafkaConfig {
        topic_prefix: prefix.clone(),
        ..KafkaConfig::new(format!("127.0.0.1:{port}"))
    })
    .expect("log");
    let codec = EventCodec::connect(Arc::new(ConfluentRegistry::new(&format!(
        "http://{registry_addr}"
    ))))
    .await
    .expect("codec");
    let mut logged: BTreeMap<(String, String, i64), u32> = BTreeMap::new();
    let mut trend_offsets = 0;
    for p in 0..PARTITIONS {
        let end = log
            .end_offset(topics::PROBE_READINGS, p)
            .await
            .expect("end");
        for r in read_until(&log, topics::PROBE_READINGS, p, end).await {
            let reading: ProbeReading = codec.decode(&r.value).await.expect("reading");
            *logged
                .entry((reading.device_id, reading.probe_id, reading.event_time))
                .or_insert(0) += 1;
        }
        // Trends: each source offset once, in order, up to what the processor reached.
        let trends_end = log
            .end_offset(topics::DERIVED_TRENDS, p)
            .await
            .expect("end");
        let mut last = -1;
        for r in read_until(&log, topics::DERIVED_TRENDS, p, trends_end).await {
            let t: TrendUpdated = codec.decode(&r.value).await.expect("trend");
            assert!(
                t.source_offset > last,
                "partition {p}: trend of source offset {} after {last}",
                t.source_offset
            );
            last = t.source_offset;
            trend_offsets += 1;
        }
    }
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|k| !logged.contains_key(*k))
        .collect();
    let repeated = logged.values().filter(|n| **n > 1).count();
    eprintln!(
        "MEASURED: {} acknowledged, {} in the log ({repeated} stored more than once), {} lost, {trend_offsets} trend updates",
        acknowledged.len(),
        logged.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but not in the log: {lost:?}");
    assert_eq!(acknowledged.len(), total);

    for role in [&mut gateway, &mut processor, &mut ingest, &mut registry] {
        role.interrupt();
    }
    broker.kill().expect("stop the broker");
    broker.wait().expect("reap");
}
