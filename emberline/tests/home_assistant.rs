//! End-to-end: the Home Assistant connector between a real `emberline up` and a real
//! Mosquitto broker, watched by an MQTT client the way Home Assistant would see it.
//!
//! Needs Debian's `mosquitto` (the test command installs it). Without it these tests are
//! skipped — unless `EMBERLINE_REQUIRE_MOSQUITTO=1`, which makes that a failure.
#![allow(clippy::print_stderr)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emberline_home_assistant::format::rfc3339_ms;
use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{
    DeleteDeviceRequest, ListDevicesRequest, SetTargetRequest, StartFrom, SubscribeTrendsRequest,
    TrendEvent,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use support::mosquitto::{Broker, mosquitto_binary};
use support::{PATIENCE, Up, free_port};
use tokio_stream::StreamExt;

// --- the broker ---------------------------------------------------------------------------

// --- a client that records what Home Assistant would see ---------------------------------

#[derive(Clone, Debug)]
struct Msg {
    topic: String,
    payload: String,
}

/// Records every message on its filters; reconnects (and re-subscribes) after a broker
/// restart. Its connection ends when it is dropped.
struct Recorder {
    client: AsyncClient,
    log: Arc<Mutex<Vec<Msg>>>,
    changed: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Waits until a state of every one of `probes` of `device` is published under `base`.
    async fn wait_for_states(&self, what: &str, base: &str, device: &str, probes: &[&str]) {
        self.wait_for(what, |m| {
            probes
                .iter()
                .all(|p| {
                    let topic = format!("{base}/{device}/{p}/state");
                    m.iter().any(|m| m.topic == topic)
                })
                .then_some(())
        })
        .await;
    }

    /// Connects and returns once the broker has acknowledged every subscription, so that
    /// nothing published afterwards is missed.
    async fn connect(port: u16, id: &str, filters: &[&str]) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1_024);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, changed) = tokio::sync::watch::channel(0u64);
        let (subscribed_tx, mut subscribed) = tokio::sync::watch::channel(false);
        let (sub, sink) = (client.clone(), log.clone());
        let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
        let task = tokio::spawn(async move {
            let mut acks = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        acks = 0;
                        for f in &filters {
                            let _ = sub.subscribe(f, QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == filters.len() {
                            subscribed_tx.send_replace(true);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock().expect("lock").push(Msg {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        });
                        tx.send_modify(|n| *n += 1);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(PATIENCE, subscribed.wait_for(|s| *s))
            .await
            .unwrap_or_else(|_| panic!("{id}: the broker never acknowledged the subscriptions"))
            .expect("recorder task");
        Self {
            client,
            log,
            changed,
            task,
        }
    }

    fn messages(&self) -> Vec<Msg> {
        self.log.lock().expect("lock").clone()
    }

    /// Waits until `check` finds what it looks for in the messages so far.
    async fn wait_for<T>(&self, what: &str, check: impl Fn(&[Msg]) -> Option<T>) -> T {
        let mut changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(found) = check(&self.messages()) {
                return found;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!("timed out waiting for {what}"),
            }
        }
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .expect("publish");
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Otherwise its event loop reconnects forever (under its client id).
        self.task.abort();
    }
}

/// Every retained message under `filter` as a new subscriber gets it: subscribes, then
/// sends itself a marker; the broker delivers retained messages before the marker.
async fn retained(port: u16, filter: &str) -> BTreeMap<String, String> {
    // A client id of its own per snapshot: two clients with one id take the session from
    // each other, over and over.
    static SNAPSHOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SNAPSHOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("snapshot-{}-{n}", std::process::id());
    let marker = format!("test/marker/{id}");
    let recorder = Recorder::connect(port, &id, &[filter, &marker]).await;
    // The marker is sent after the subscriptions are acknowledged; the broker delivers the
    // retained messages before it. It is re-sent now and then in case the connection to the
    // broker was lost in between (a QoS 1 message of a clean session is not re-sent then).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut n = 0;
    loop {
        n += 1;
        recorder.publish(&marker, &n.to_string()).await;
        let got = tokio::time::timeout(
            Duration::from_millis(500),
            recorder.wait_for("marker", |m| {
                m.iter().any(|m| m.topic == marker).then_some(())
            }),
        )
        .await;
        if got.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the marker of {id} never came back"
        );
    }
    let _ = recorder.client.disconnect().await;
    recorder
        .messages()
        .into_iter()
        .filter(|m| m.topic != marker && !m.payload.is_empty())
        .map(|m| (m.topic, m.payload))
        .collect()
}

// --- what Home Assistant requires of a discovery config -----------------------------------

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks a discovery message against the keys and types Home Assistant's MQTT discovery
/// requires for the component in its topic.
fn validate_config(topic: &str, payload: &str) -> Value {
    let parts: Vec<&str> = topic.split('/').collect();
    assert_eq!(
        parts.len(),
        5,
        "{topic}: <prefix>/<component>/<node>/<object>/config"
    );
    assert_eq!(parts[0], "homeassistant");
    assert_eq!(parts[4], "config");
    let component = parts[1];
    assert!(
        ["sensor", "binary_sensor", "number"].contains(&component),
        "{topic}: unexpected component"
    );
    assert!(
        is_id(parts[2]) && is_id(parts[3]),
        "{topic}: ids must be [a-zA-Z0-9_-]"
    );
    let c: Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("{topic}: {e}"));
    let text = |key: &str| {
        c[key]
            .as_str()
            .unwrap_or_else(|| panic!("{topic}: {key} must be a string: {c}"))
            .to_owned()
    };
    assert!(is_id(&text("unique_id")), "{topic}: unique_id");
    text("name");
    text("state_topic");
    let device = &c["device"];
    assert!(
        device["identifiers"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{topic}: device.identifiers"
    );
    assert!(device["name"].is_string(), "{topic}: device.name");
    assert!(c["origin"]["name"].is_string(), "{topic}: origin.name");
    let availability = c["availability"].as_array().expect("availability list");
    assert!(availability.iter().all(|a| a["topic"].is_string()));
    match component {
        "sensor" => {
            if c["device_class"] == "timestamp" {
                assert!(
                    c.get("unit_of_measurement").is_none(),
                    "{topic}: a timestamp has no unit"
                );
                text("value_template");
            }
            if c["device_class"] == "temperature" {
                assert_eq!(c["state_class"], "measurement", "{topic}");
                assert_eq!(c["unit_of_measurement"], "°C", "{topic}");
                assert!(
                    c["expire_after"].as_u64().is_some_and(|s| s > 0),
                    "{topic}: expire_after"
                );
                text("value_template");
            }
        }
        "binary_sensor" => {
            assert_eq!(c["payload_on"], "ON");
            assert_eq!(c["payload_off"], "OFF");
        }
        "number" => {
            text("command_topic");
            let (min, max) = (
                c["min"].as_f64().expect("min"),
                c["max"].as_f64().expect("max"),
            );
            assert!(min < max, "{topic}: min < max");
            assert!(c["step"].as_f64().is_some_and(|s| s > 0.0));
        }
        _ => unreachable!(),
    }
    c
}

// --- helpers over the gateway --------------------------------------------------------------

/// Every trend update of `device` from the start of the log until one at or after `until_ms`.
async fn trends_until(grpc: std::net::SocketAddr, device: &str, until_ms: i64) -> Vec<TrendEvent> {
    let mut client = TrendServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    let mut stream = client
        .subscribe_trends(SubscribeTrendsRequest {
            device_id: device.into(),
            resume: Default::default(),
            start: StartFrom::Earliest as i32,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut out = Vec::new();
    while let Some(event) = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("trend update in time")
    {
        let event = event.expect("event");
        let done = event.event_time_ms >= until_ms;
        out.push(event);
        if done {
            break;
        }
    }
    out
}

/// (event time, temperature) of every state message of one probe, in arrival order.
fn probe_states(messages: &[Msg], topic: &str) -> Vec<(String, f64)> {
    messages
        .iter()
        .filter(|m| m.topic == topic && !m.payload.is_empty())
        .filter_map(|m| {
            let v: Value = serde_json::from_str(&m.payload).ok()?;
            Some((
                v["event_time"].as_str()?.to_owned(),
                v["temperature"].as_f64()?,
            ))
        })
        .collect()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Every trend update of `probe` with event time in `[from, to]` was published as a state
/// with the same temperature.
fn assert_every_update_published(
    trends: &[TrendEvent],
    probe: &str,
    states: &[(String, f64)],
    from: &str,
    to: &str,
) -> usize {
    let published: BTreeMap<&str, f64> = states.iter().map(|(t, v)| (t.as_str(), *v)).collect();
    let mut checked = 0;
    for t in trends.iter().filter(|t| t.probe_id == probe) {
        let at = rfc3339_ms(t.event_time_ms);
        if at.as_str() < from || at.as_str() > to {
            continue;
        }
        let got = published.get(at.as_str()).unwrap_or_else(|| {
            panic!(
                "the update at {at} ({} °C) never reached MQTT",
                t.temperature_c
            )
        });
        assert_eq!(
            *got,
            round2(t.temperature_c),
            "state at {at} differs from the trend"
        );
        checked += 1;
    }
    checked
}

fn ha_env(broker: &Broker) -> Vec<(&'static str, String)> {
    vec![
        ("EMBERLINE__HOME_ASSISTANT__MQTT__URL", broker.url()),
        (
            "EMBERLINE__HOME_ASSISTANT__MIN_STATE_INTERVAL_MS",
            "0".into(),
        ),
    ]
}

const PROBES: [&str; 4] = ["pit", "meat-1", "meat-2", "meat-3"];

// --- the tests ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_publishes_discovery_and_states_takes_targets_and_deletes_devices() {
    let Some(binary) = mosquitto_binary() else {
        return;
    };
    let broker = Broker::start(binary);
    let watcher =
        Recorder::connect(broker.port, "watcher", &["homeassistant/#", "emberline/#"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let mut env = ha_env(&broker);
    env.push(("EMBERLINE__SIMULATOR__DEVICES", "2".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    let up = Up::start_with(dir.path(), grpc, &env);

    // Discovery and a state for every probe of sim-1.
    let configs = watcher
        .wait_for("sim-1's discovery configs and states", |m| {
            let configs: BTreeMap<String, String> = m
                .iter()
                .filter(|m| {
                    m.topic.starts_with("homeassistant/") && m.topic.contains("/emberline_sim-1/")
                })
                .map(|m| (m.topic.clone(), m.payload.clone()))
                .collect();
            let states = PROBES.iter().all(|p| {
                m.iter()
                    .any(|m| m.topic == format!("emberline/sim-1/{p}/state"))
            });
            // Per probe: temperature, rate, health, target, done at; per device: battery,
            // signal, and the implied alert kinds (target reached, fire out).
            (configs.len() == 5 * PROBES.len() + 4 && states).then_some(configs)
        })
        .await;
    eprintln!(
        "MEASURED: discovery configs and live states of sim-1 under homeassistant/ {:.2} s after spawning `emberline up` (debug build)",
        started.elapsed().as_secs_f64()
    );
    let mut names = BTreeSet::new();
    for (topic, payload) in &configs {
        let c = validate_config(topic, payload);
        assert_eq!(c["device"]["name"], "Simulated grill 1");
        names.insert(c["name"].as_str().expect("name").to_owned());
    }
    for expected in [
        "Pit",
        "Meat 1",
        "Pit rate of rise",
        "Meat 3 target",
        "Meat 1 done at",
        "Alert: target reached",
        "Alert: fire out",
        "Battery",
        "Signal",
    ] {
        assert!(
            names.contains(expected),
            "no entity named {expected}: {names:?}"
        );
    }

    // States track the probes: each is a trend update's temperature at its event time.
    let pit = "emberline/sim-1/pit/state";
    let last = watcher
        .wait_for("five pit states", |m| {
            let s = probe_states(m, pit);
            (s.len() >= 5).then(|| s.last().cloned().expect("some"))
        })
        .await;
    let states = probe_states(&watcher.messages(), pit);
    let until = states.iter().map(|s| s.0.clone()).max().expect("states");
    let trends = trends_until(grpc, "sim-1", ms_of_rfc3339(&until)).await;
    let first = states.iter().map(|s| s.0.clone()).min().expect("states");
    let checked = assert_every_update_published(&trends, "pit", &states, &first, &last.0);
    assert!(checked >= 5, "only {checked} updates compared");

    // Home Assistant restarting (its birth message) gets every config again.
    let pit_config = "homeassistant/sensor/emberline_sim-1/pit_temperature/config";
    let sent = |m: &[Msg]| m.iter().filter(|m| m.topic == pit_config).count();
    let before = sent(&watcher.messages());
    watcher.publish("homeassistant/status", "online").await;
    watcher
        .wait_for(
            "configs re-sent after Home Assistant's birth message",
            |m| (sent(m) > before).then_some(()),
        )
        .await;

    // A target set in Home Assistant becomes a cook command and comes back as the state.
    let channel = up.channel().await;
    watcher
        .publish("emberline/sim-1/meat-1/target/set", "93")
        .await;
    watcher
        .wait_for("target 93 on the number entity", |m| {
            m.iter()
                .any(|m| m.topic == "emberline/sim-1/meat-1/target" && m.payload == "93")
                .then_some(())
        })
        .await;
    let devices = DeviceServiceClient::new(channel.clone())
        .list_devices(ListDevicesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .devices;
    assert_eq!(devices[0].targets_c.get("meat-1"), Some(&93.0));

    // Invalid values are refused and the entity is put back to the target in force.
    for bad in ["abc", "600", "-5"] {
        let count = |m: &[Msg]| {
            m.iter()
                .filter(|m| m.topic == "emberline/sim-1/meat-1/target" && m.payload == "93")
                .count()
        };
        let before = count(&watcher.messages());
        watcher
            .publish("emberline/sim-1/meat-1/target/set", bad)
            .await;
        watcher
            .wait_for("the target put back after an invalid command", |m| {
                (count(m) > before).then_some(())
            })
            .await;
    }
    // The gateway itself refuses what the connector would: a direct call is checked too.
    let refused = CookServiceClient::new(channel.clone())
        .set_target(SetTargetRequest {
            device_id: "sim-1".into(),
            probe_id: "meat-1".into(),
            target_c: Some(f64::NAN),
        })
        .await
        .expect_err("NaN target accepted");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let devices = DeviceServiceClient::new(channel.clone())
        .list_devices(ListDevicesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .devices;
    assert_eq!(
        devices[0].targets_c.get("meat-1"),
        Some(&93.0),
        "a refused target changed it"
    );

    // Deleting a device removes its entities.
    let sim2: BTreeSet<String> = watcher
        .wait_for("sim-2's configs", |m| {
            let c: BTreeSet<String> = m
                .iter()
                .filter(|m| m.topic.contains("/emberline_sim-2/") && !m.payload.is_empty())
                .map(|m| m.topic.clone())
                .collect();
            (c.len() == 5 * PROBES.len() + 4).then_some(c)
        })
        .await;
    DeviceServiceClient::new(channel.clone())
        .delete_device(DeleteDeviceRequest {
            device_id: "sim-2".into(),
            reason: "test".into(),
        })
        .await
        .expect("delete");
    watcher
        .wait_for("empty configs for every sim-2 entity", |m| {
            sim2.iter()
                .all(|t| m.iter().any(|m| &m.topic == t && m.payload.is_empty()))
                .then_some(())
        })
        .await;
    let held = retained(broker.port, "homeassistant/#").await;
    assert!(
        !held.keys().any(|t| t.contains("emberline_sim-2")),
        "a deleted device's config is still retained"
    );
    assert_eq!(
        held.keys()
            .filter(|t| t.contains("emberline_sim-1"))
            .count(),
        5 * PROBES.len() + 4
    );
    let listed = DeviceServiceClient::new(channel)
        .list_devices(ListDevicesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .devices;
    assert_eq!(
        listed
            .iter()
            .map(|d| d.device_id.as_str())
            .collect::<Vec<_>>(),
        ["sim-1"]
    );
    drop(up);
}

/// Epoch ms of an RFC 3339 time the connector wrote (inverse of `rfc3339_ms`, by search:
/// the function under test is only trusted for formatting).
fn ms_of_rfc3339(at: &str) -> i64 {
    let (mut lo, mut hi) = (0i64, 4_102_444_800_000i64);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if rfc3339_ms(mid).as_str() < at {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `emberline connect-ha` as its own process.
struct Connector {
    child: Child,
    log: tokio::sync::watch::Receiver<Vec<String>>,
}

impl Connector {
    fn start(data_dir: &Path, grpc: std::net::SocketAddr, broker: &Broker) -> Self {
        Self::start_with(data_dir, grpc, &broker.url(), &[])
    }

    fn start_with(
        data_dir: &Path,
        grpc: std::net::SocketAddr,
        mqtt_url: &str,
        env: &[(&str, String)],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_emberline"))
            .args(["--data-dir", &data_dir.display().to_string(), "connect-ha"])
            .args([
                "--gateway",
                &format!("http://{grpc}"),
                "--mqtt-url",
                mqtt_url,
            ])
            .env("EMBERLINE__HOME_ASSISTANT__MIN_STATE_INTERVAL_MS", "0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn connect-ha");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = tokio::sync::watch::channel(Vec::new());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[connect-ha] {line}");
                tx.send_modify(|l| l.push(line));
            }
        });
        Self { child, log }
    }

    /// Waits until the connector logs a line containing `needle`.
    async fn wait_for_line(&self, needle: &str) {
        let mut log = self.log.clone();
        tokio::time::timeout(
            PATIENCE,
            log.wait_for(|l| l.iter().any(|l| l.contains(needle))),
        )
        .await
        .unwrap_or_else(|_| panic!("the connector never logged {needle:?}"))
        .expect("log");
    }

    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_the_connector_the_gateway_and_the_broker_lose_no_state_change() {
    let Some(binary) = mosquitto_binary() else {
        return;
    };
    let mut broker = Broker::start(binary);
    let watcher =
        Recorder::connect(broker.port, "watcher", &["homeassistant/#", "emberline/#"]).await;
    let (up_dir, ha_dir) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let grpc = free_port();
    let up = Up::start(up_dir.path(), grpc);
    up.channel().await;
    let connector = Connector::start(ha_dir.path(), grpc, &broker);
    let pit = "emberline/sim-1/pit/state";
    let bridge = "emberline/bridge/emberline/availability";
    let states_after = |n: usize| {
        move |m: &[Msg]| {
            let s = probe_states(m, pit);
            (s.len() >= n).then(|| s.last().cloned().expect("some"))
        }
    };
    let (first, _) = watcher.wait_for("three pit states", states_after(3)).await;

    // 1. The connector is killed; the broker announces it offline (its last will); pit
    //    updates go on meanwhile; restarted, it resumes and publishes every one of them.
    //    (It resumes from its first saved position: one must be saved before the kill — a
    //    connector killed before its first checkpoint, two seconds in, starts from now.)
    let positions = ha_dir.path().join("home-assistant");
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_dir(&positions)
        .map(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("positions-")))
        })
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < deadline,
            "the connector never saved its position"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = probe_states(&watcher.messages(), pit).len();
    connector.kill_9();
    watcher
        .wait_for("the connector's last will", |m| {
            m.iter()
                .rev()
                .find(|m| m.topic == bridge)
                .is_some_and(|m| m.payload == "offline")
                .then_some(())
        })
        .await;
    let mut client = TrendServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    let mut live = client
        .subscribe_trends(SubscribeTrendsRequest {
            device_id: "sim-1".into(),
            resume: Default::default(),
            start: StartFrom::Latest as i32,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut missed = 0;
    let mut newest = 0;
    while missed < 3 {
        let e = tokio::time::timeout(PATIENCE, live.next())
            .await
            .expect("a trend update in time")
            .expect("stream")
            .expect("event");
        if e.probe_id == "pit" {
            missed += 1;
            newest = e.event_time_ms;
        }
    }
    drop(live);
    let connector = Connector::start(ha_dir.path(), grpc, &broker);
    let newest_at = rfc3339_ms(newest);
    watcher
        .wait_for("the pit states missed while the connector was down", |m| {
            let s = probe_states(m, pit);
            (s.len() >= seen + 3 && s.iter().any(|(t, _)| *t >= newest_at)).then_some(())
        })
        .await;

    // 2. The gateway (the whole `emberline up`) is killed and restarted on its data.
    up.kill_9();
    let before_gateway = probe_states(&watcher.messages(), pit).len();
    let up = Up::start(up_dir.path(), grpc);
    up.channel().await;
    let (after_gateway, _) = watcher
        .wait_for(
            "pit states after the gateway restart",
            states_after(before_gateway + 3),
        )
        .await;

    // Everything so far: every pit update from the first state on reached MQTT.
    let states = probe_states(&watcher.messages(), pit);
    let trends = trends_until(grpc, "sim-1", ms_of_rfc3339(&after_gateway)).await;
    let checked = assert_every_update_published(&trends, "pit", &states, &first, &after_gateway);
    assert!(checked >= 6, "only {checked} updates compared");
    eprintln!(
        "MEASURED: {checked} pit updates across a connector kill -9 and a gateway kill -9, none lost"
    );

    // 3. The broker restarts and forgets every retained message; the connector republishes
    //    discovery, availability and states, and carries on.
    broker.kill();
    broker.restart();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let held = retained(broker.port, "#").await;
        let configs = held
            .keys()
            .filter(|t| t.contains("emberline_sim-1"))
            .count();
        let online = |t: &str| held.get(t).map(String::as_str) == Some("online");
        if configs == 5 * PROBES.len() + 4
            && online(bridge)
            && online("emberline/sim-1/availability")
            && online("emberline/sim-1/pit/availability")
            && held.contains_key(pit)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the connector did not republish after the broker restart: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = probe_states(&watcher.messages(), pit).len();
    watcher
        .wait_for(
            "pit states after the broker restart",
            states_after(count + 3),
        )
        .await;
    drop(connector);
    drop(up);
}

/// A CA, and a certificate for `localhost` it signed, as PEM files in `dir`.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .expect("cert");
    let files = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&files.0, ca_cert.pem()).expect("write");
    std::fs::write(&files.1, cert.pem()).expect("write");
    std::fs::write(&files.2, key.serialize_pem()).expect("write");
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_login_and_tls_are_used_and_a_rejected_password_is_reported() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(binary) = mosquitto_binary() else {
        return;
    };
    // The broker drops root privileges unless told otherwise: keep its files readable.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (ca, cert, key) = tls_files(dir.path());
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "grill:s3cret\n").expect("write");
    let hashed = Command::new(binary.with_file_name("mosquitto_passwd"))
        .arg("-U")
        .arg(&passwd)
        .status()
        .or_else(|_| {
            Command::new("mosquitto_passwd")
                .arg("-U")
                .arg(&passwd)
                .status()
        })
        .expect("mosquitto_passwd");
    assert!(hashed.success());
    for f in [&ca, &cert, &key, &passwd] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    let tls_port = free_port().port();
    let extra = format!(
        "{}listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\n",
        if root { "user root\n" } else { "" },
        ca.display(),
        cert.display(),
        key.display(),
        passwd.display()
    );
    let broker = Broker::start_with(binary, dir, extra);
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on the TLS port"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watcher = Recorder::connect(broker.port, "watcher", &["homeassistant/#"]).await;
    let up_dir = tempfile::tempdir().expect("tmp");
    let grpc = free_port();
    let up = Up::start(up_dir.path(), grpc);
    up.channel().await;
    let url = format!("mqtts://localhost:{tls_port}");
    let password_file = broker.dir.path().join("password");
    std::fs::write(&password_file, "wrong\n").expect("write");
    let env = |password_file: &Path| {
        vec![
            (
                "EMBERLINE__HOME_ASSISTANT__MQTT__USERNAME",
                "grill".to_owned(),
            ),
            (
                "EMBERLINE__HOME_ASSISTANT__MQTT__PASSWORD_FILE",
                password_file.display().to_string(),
            ),
            (
                "EMBERLINE__HOME_ASSISTANT__MQTT__CA_FILE",
                ca.display().to_string(),
            ),
        ]
    };

    let ha_dir = tempfile::tempdir().expect("tmp");
    let rejected = Connector::start_with(ha_dir.path(), grpc, &url, &env(&password_file));
    rejected.wait_for_line("rejected the credentials").await;
    rejected.kill_9();

    std::fs::write(&password_file, "s3cret\n").expect("write");
    let accepted = Connector::start_with(ha_dir.path(), grpc, &url, &env(&password_file));
    accepted.wait_for_line("connected to the MQTT broker").await;
    watcher
        .wait_for("discovery through the TLS listener with a login", |m| {
            m.iter()
                .any(|m| m.topic.contains("emberline_sim-1") && !m.payload.is_empty())
                .then_some(())
        })
        .await;
    drop(accepted);
    drop(up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_done_time_sensor_and_the_target_reached_alert_follow_a_cook_by_subscription() {
    let Some(binary) = mosquitto_binary() else {
        return;
    };
    let broker = Broker::start(binary);
    let watcher = Recorder::connect(broker.port, "watcher", &["emberline/#"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = ha_env(&broker);
    // The connector re-reads nothing on a timer: the device, its prediction and its alert
    // must all arrive because the gateway pushed them.
    // The simulated cook, sped up: a pit and one food probe aimed at 93 °C.
    for (k, v) in [
        ("EMBERLINE__SIMULATOR__START_COOK", "true"),
        ("EMBERLINE__SIMULATOR__PROBES", "2"),
        ("EMBERLINE__SIMULATOR__INTERVAL_MS", "10000"),
        ("EMBERLINE__SIMULATOR__SPEEDUP", "1200"),
    ] {
        env.push((k, v.into()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _up = Up::start_with(dir.path(), free_port(), &env);
    let prediction = "emberline/sim-1/meat-1/prediction";
    let done_at = watcher
        .wait_for("a predicted done time", |m| {
            m.iter()
                .filter(|m| m.topic == prediction)
                .filter_map(|m| serde_json::from_str::<Value>(&m.payload).ok())
                .find_map(|v| v["done_at"].as_str().map(str::to_owned))
        })
        .await;
    assert!(
        done_at.ends_with('Z') && ms_of_rfc3339(&done_at) > 1_700_000_000_000,
        "{done_at}"
    );
    let alert = "emberline/sim-1/alert/target_reached";
    watcher
        .wait_for("the target-reached alert", |m| {
            m.iter()
                .any(|m| m.topic == alert && m.payload == "ON")
                .then_some(())
        })
        .await;
    let states: Vec<String> = watcher
        .messages()
        .iter()
        .filter(|m| m.topic == alert)
        .map(|m| m.payload.clone())
        .collect();
    assert_eq!(
        states.first().map(String::as_str),
        Some("OFF"),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sign_in_on_connectors_need_a_token_and_up_gives_its_own_one() {
    let Some(binary) = mosquitto_binary() else {
        return;
    };
    let broker = Broker::start(binary);
    let watcher = Recorder::connect(broker.port, "watcher", &["emberline/#", "elsewhere/#"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let admin = dir.path().join("admin.password");
    std::fs::write(&admin, "grill-master-9").expect("password file");
    let grpc = free_port();
    let mut env = ha_env(&broker);
    env.push(("EMBERLINE__AUTH__MODE", "password".into()));
    env.push((
        "EMBERLINE__AUTH__ADMIN_PASSWORD_FILE",
        admin.display().to_string(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _up = Up::start_with(&data, grpc, &env);

    // The connector inside `up` signs in with the token `up` gave it.
    watcher
        .wait_for_states(
            "sim-1's states from the built-in connector",
            "emberline",
            "sim-1",
            &PROBES,
        )
        .await;

    // A separate connector without a token is refused, and says what to do.
    let elsewhere = |token: Option<String>| {
        let mut env = vec![
            (
                "EMBERLINE__HOME_ASSISTANT__BASE_TOPIC",
                "elsewhere".to_owned(),
            ),
            (
                "EMBERLINE__HOME_ASSISTANT__MQTT__CLIENT_ID",
                "elsewhere".to_owned(),
            ),
            (
                "EMBERLINE__HOME_ASSISTANT__DISCOVERY_PREFIX",
                "ha-elsewhere".to_owned(),
            ),
        ];
        if let Some(t) = token {
            env.push(("EMBERLINE__HOME_ASSISTANT__TOKEN", t));
        }
        Connector::start_with(&dir.path().join("connector"), grpc, &broker.url(), &env)
    };
    let refused = elsewhere(None);
    refused
        .wait_for_line("the gateway refused the connector")
        .await;
    assert!(
        !watcher
            .messages()
            .iter()
            .any(|m| m.topic.starts_with("elsewhere/sim-1/")),
        "a refused connector published nothing"
    );
    drop(refused);

    // With a control token made by the command, it publishes.
    let out = Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--data-dir")
        .arg(&data)
        .args(["token", "create", "home assistant", "--scope", "control"])
        .output()
        .expect("emberline token create");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(token.starts_with("emt_"), "{token}");
    let _allowed = elsewhere(Some(token));
    watcher
        .wait_for_states(
            "sim-1's states from the connector with a token",
            "elsewhere",
            "sim-1",
            &PROBES,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_built_in_connector_checks_the_gateways_certificate() {
    let Some(binary) = mosquitto_binary() else {
        return;
    };
    let broker = Broker::start(binary);
    let watcher = Recorder::connect(broker.port, "watcher", &["emberline/#"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
    let mut env = ha_env(&broker);
    env.push((
        "EMBERLINE__GATEWAY__TLS__CERT_FILE",
        cert.display().to_string(),
    ));
    env.push((
        "EMBERLINE__GATEWAY__TLS__KEY_FILE",
        key.display().to_string(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _up = Up::start_with(&dir.path().join("data"), free_port(), &env);
    watcher
        .wait_for_states(
            "sim-1's states through a TLS gateway",
            "emberline",
            "sim-1",
            &PROBES,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenants_connector_publishes_its_own_grills_only() {
    let Some(binary) = mosquitto_binary() else {
        return;
    };
    let broker = Broker::start(binary);
    let watcher = Recorder::connect(broker.port, "watcher", &["home-ha/#", "acme-ha/#"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Both tenants have a `sim-1`; the other tenant's has two probes, and a `sim-2` too.
    let config = dir.path().join("emberline.toml");
    std::fs::write(
        &config,
        "[[sources]]\nkind = \"simulator\"\ndevices = 1\nprobes = 4\nseed = 1\n\n\
         [[sources]]\nkind = \"simulator\"\ntenant = \"acme\"\ndevices = 2\nprobes = 2\nseed = 2\n\n\
         [processor]\ntick_interval_s = 1\n",
    )
    .expect("config");
    let admin = dir.path().join("admin.password");
    std::fs::write(&admin, "grill-master-9").expect("password");
    let grpc = free_port();
    let mut up = support::roles::Role::start(
        "up",
        &config,
        &data,
        &[
            "up",
            "--grpc-addr",
            &grpc.to_string(),
            "--web-addr",
            "127.0.0.1:0",
        ],
        &[
            ("EMBERLINE__AUTH__MODE", "password".to_owned()),
            (
                "EMBERLINE__AUTH__ADMIN_PASSWORD_FILE",
                admin.display().to_string(),
            ),
            (
                "EMBERLINE__GATEWAY__REGISTRY_ADDR",
                "127.0.0.1:0".to_owned(),
            ),
        ],
    );
    up.ready().await;
    let token_of = |tenant: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_emberline"))
            .arg("--data-dir")
            .arg(&data)
            .args([
                "token",
                "create",
                "home assistant",
                "--scope",
                "control",
                "--tenant",
                tenant,
            ])
            .output()
            .expect("emberline token create");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    };
    let connector = |tenant: &str, base: &str| {
        let env = vec![
            ("EMBERLINE__HOME_ASSISTANT__BASE_TOPIC", base.to_owned()),
            (
                "EMBERLINE__HOME_ASSISTANT__MQTT__CLIENT_ID",
                base.to_owned(),
            ),
            (
                "EMBERLINE__HOME_ASSISTANT__DISCOVERY_PREFIX",
                format!("discovery-{base}"),
            ),
            ("EMBERLINE__HOME_ASSISTANT__TOKEN", token_of(tenant)),
        ];
        Connector::start_with(&dir.path().join(base), grpc, &broker.url(), &env)
    };
    let _home = connector("default", "home-ha");
    let _acme = connector("acme", "acme-ha");
    watcher
        .wait_for(
            "both tenants' grills published by their own connectors",
            |m| {
                let has = |topic: &str| m.iter().any(|m| m.topic == topic);
                let home = PROBES
                    .iter()
                    .all(|p| has(&format!("home-ha/sim-1/{p}/state")));
                let acme = ["sim-1", "sim-2"].iter().all(|d| {
                    ["pit", "meat-1"]
                        .iter()
                        .all(|p| has(&format!("acme-ha/{d}/{p}/state")))
                });
                (home && acme).then_some(())
            },
        )
        .await;
    let messages = watcher.messages();
    let leaked: Vec<&str> = messages
        .iter()
        .map(|m| m.topic.as_str())
        .filter(|t| {
            t.starts_with("home-ha/sim-2/")
                || ["meat-2", "meat-3"]
                    .iter()
                    .any(|p| t.starts_with(&format!("acme-ha/sim-1/{p}/")))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "published for the other tenant's devices: {leaked:?}"
    );
    up.interrupt();
}

/// A name given in the Settings (`SettingsService/RenameDevice`) reaches Home Assistant as
/// the device's and the entity's name, on the same discovery topic and unique id, so
/// entity ids and automations stay; an empty name gives the source's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_and_probe_renamed_in_the_settings_keep_their_home_assistant_ids() {
    use emberline_proto::v1::RenameDeviceRequest;
    use emberline_proto::v1::settings_service_client::SettingsServiceClient;
    let Some(binary) = mosquitto_binary() else {
        return;
    };
    let broker = Broker::start(binary);
    let watcher = Recorder::connect(broker.port, "watcher", &["homeassistant/#"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = ha_env(&broker);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let up = Up::start_with(dir.path(), free_port(), &env);
    let pit_config = "homeassistant/sensor/emberline_sim-1/pit_temperature/config";
    let named = |device: &'static str, entity: &'static str| {
        move |m: &[Msg]| {
            m.iter()
                .rev()
                .find(|m| m.topic == pit_config)
                .and_then(|m| {
                    let c: Value = serde_json::from_str(&m.payload).ok()?;
                    (c["device"]["name"] == device && c["name"] == entity)
                        .then(|| c["unique_id"].as_str().map(str::to_owned))
                        .flatten()
                })
        }
    };
    let before = watcher
        .wait_for(
            "the pit's discovery config",
            named("Simulated grill 1", "Pit"),
        )
        .await;

    let mut settings = SettingsServiceClient::new(up.channel().await);
    let refused = settings
        .rename_device(RenameDeviceRequest {
            device_id: "sim-1".into(),
            name: "Big Green Egg".into(),
            probe_labels: [("meat-9".to_owned(), "Nope".to_owned())].into(),
        })
        .await
        .expect_err("no such probe");
    assert!(
        refused.message().starts_with("probe_labels:"),
        "{refused:?}"
    );
    let missing = settings
        .rename_device(RenameDeviceRequest {
            device_id: "no-such-grill".into(),
            name: "x".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such device");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    settings
        .rename_device(RenameDeviceRequest {
            device_id: "sim-1".into(),
            name: "Big Green Egg".into(),
            probe_labels: [("pit".to_owned(), "Dome".to_owned())].into(),
        })
        .await
        .expect("rename");
    let device = DeviceServiceClient::new(up.channel().await)
        .list_devices(ListDevicesRequest::default())
        .await
        .expect("devices")
        .into_inner()
        .devices
        .into_iter()
        .find(|d| d.device_id == "sim-1")
        .expect("sim-1");
    assert_eq!(device.name, "Big Green Egg");
    assert_eq!(device.probe_labels["pit"], "Dome");
    let after = watcher
        .wait_for(
            "the renamed pit's discovery config",
            named("Big Green Egg", "Dome"),
        )
        .await;
    assert_eq!(after, before, "same unique id: the entity id stays");

    settings
        .rename_device(RenameDeviceRequest {
            device_id: "sim-1".into(),
            ..Default::default()
        })
        .await
        .expect("names back");
    watcher
        .wait_for(
            "the source's names again",
            named("Simulated grill 1", "Pit"),
        )
        .await;
    up.interrupt();
}
