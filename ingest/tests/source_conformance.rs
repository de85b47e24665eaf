//! The source conformance suite ([`emberline_ingest::conformance`]) for every kind: the
//! simulator, MQTT against a real Mosquitto, HTTP push over real HTTP, and the three cloud
//! pollers against their local stand-ins. Each kind is a small adapter: how to build it,
//! how to make it emit, how to make its stand-in misbehave.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use emberline_common::clock::now_ms;
use emberline_ingest::cloud::Credentials;
use emberline_ingest::cloud::fireboard::FireboardConfig;
use emberline_ingest::cloud::meater::MeaterConfig;
use emberline_ingest::cloud::thermoworks::ThermoworksConfig;
use emberline_ingest::conformance::{BadInput, Expected, Kind};
use emberline_ingest::http_push::{HttpPush, HttpPushConfig};
use emberline_ingest::mqtt::{MqttSourceConfig, PayloadFormat, TopicMapping};
use emberline_ingest::testing::Fault;
use emberline_ingest::testing::fireboard::{FakeFireboard, fireboard_drive};
use emberline_ingest::testing::meater::{FakeMeater, probe};
use emberline_ingest::testing::thermoworks::{FakeThermoworks, node, stamp};
use emberline_ingest::{SimulatorConfig, Source, SourceConfig};
use rumqttc::{AsyncClient, MqttOptions, QoS};

// The Mosquitto the emberline end-to-end tests start (on a free loopback port), reused.
#[path = "../../emberline/tests/support/mosquitto.rs"]
#[allow(dead_code, unreachable_pub)]
mod mosquitto;

/// How long the broker may take to listen.
const PATIENCE: Duration = emberline_ingest::conformance::PATIENCE;

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn f_to_c(f: f64) -> f64 {
    (f - 32.0) * 5.0 / 9.0
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// The three bad answers every cloud stand-in gives: a 5xx (a typed, retried failure) and
/// two bodies that are not what the protocol says (dead letters).
fn cloud_faults() -> Vec<(Fault, BadInput)> {
    vec![
        (
            Fault::Status(502),
            BadInput {
                what: "HTTP 502",
                dead_letter: false,
            },
        ),
        (
            Fault::Truncated,
            BadInput {
                what: "truncated JSON",
                dead_letter: true,
            },
        ),
        (
            Fault::NotJson,
            BadInput {
                what: "an HTML error page",
                dead_letter: true,
            },
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// The simulator: nothing outside to misbehave.

struct SimulatorKind;

#[async_trait]
impl Kind for SimulatorKind {
    fn name(&self) -> &'static str {
        "simulator"
    }
    async fn build(&self) -> Box<dyn Source> {
        let config = SourceConfig::Simulator(SimulatorConfig {
            devices: 2,
            interval_ms: 50,
            ..SimulatorConfig::default()
        });
        config.build(now_ms()).expect("build")
    }
    async fn emit(&self) -> Vec<Expected> {
        // It emits by itself, every interval.
        vec![
            Expected::new("sim-1", "pit", None),
            Expected::new("sim-2", "meat-3", None),
        ]
    }
    fn bad_inputs(&self) -> Vec<BadInput> {
        Vec::new()
    }
    async fn misbehave(&self) {}
}

emberline_ingest::source_conformance_suite!(simulator, async { Some(SimulatorKind) };
    starts_and_emits,
    stops_promptly_when_cancelled,
    stops_promptly_while_the_log_is_failing,
    survives_a_failing_log);

// ---------------------------------------------------------------------------------------
// MQTT, against a real Mosquitto.

struct MqttKind {
    broker: mosquitto::Broker,
    publisher: AsyncClient,
    round: Mutex<u32>,
}

impl MqttKind {
    async fn start() -> Option<Self> {
        let binary = mosquitto::mosquitto_binary()?;
        let broker = mosquitto::Broker::start(binary);
        let (publisher, mut eventloop) = AsyncClient::new(
            MqttOptions::new("conformance-publisher", "127.0.0.1", broker.port),
            64,
        );
        tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Some(Self {
            broker,
            publisher,
            round: Mutex::new(0),
        })
    }

    async fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.publisher
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .await
            .expect("publish");
    }
}

#[async_trait]
impl Kind for MqttKind {
    fn name(&self) -> &'static str {
        "mqtt"
    }
    async fn build(&self) -> Box<dyn Source> {
        SourceConfig::Mqtt(MqttSourceConfig {
            url: self.broker.url(),
            client_id: "emberline-conformance".into(),
            topics: vec![
                TopicMapping::default(),
                TopicMapping {
                    filter: "bbq/+/json".into(),
                    device: "heatermeter".into(),
                    probe: "{1}".into(),
                    format: PayloadFormat::Json,
                    value_field: "temp".into(),
                    ..TopicMapping::default()
                },
            ],
            ..MqttSourceConfig::default()
        })
        .build(now_ms())
        .expect("build")
    }
    async fn emit(&self) -> Vec<Expected> {
        let round = {
            let mut r = self.round.lock().expect("round");
            *r += 1;
            *r
        };
        let (pit, meat) = (100.0 + f64::from(round), 50.0 + f64::from(round));
        self.publish(
            "esp-grill/sensor/pit/state",
            pit.to_string().as_bytes(),
            false,
        )
        .await;
        self.publish(
            "bbq/meat/json",
            format!(r#"{{"temp": {meat}}}"#).as_bytes(),
            false,
        )
        .await;
        vec![
            Expected::new("esp-grill", "pit", Some(pit)),
            Expected::new("heatermeter", "meat", Some(meat)),
        ]
    }
    fn bad_inputs(&self) -> Vec<BadInput> {
        [
            "a payload that is not a number",
            "a payload that is not UTF-8",
            "NaN",
            "truncated JSON",
            "JSON without the value field",
        ]
        .into_iter()
        .map(|what| BadInput {
            what,
            dead_letter: true,
        })
        .collect()
    }
    async fn misbehave(&self) {
        // Retained, so the source gets them when it subscribes, whenever that is.
        self.publish("garbage-1/sensor/pit/state", b"hot", true)
            .await;
        self.publish("garbage-2/sensor/pit/state", &[0xff, 0xfe, 0x00], true)
            .await;
        self.publish("garbage-3/sensor/pit/state", b"NaN", true)
            .await;
        self.publish("bbq/truncated/json", br#"{"temp": 1"#, true)
            .await;
        self.publish("bbq/other/json", br#"{"value": 20}"#, true)
            .await;
    }
}

emberline_ingest::source_conformance_suite!(mqtt, MqttKind::start());

// ---------------------------------------------------------------------------------------
// HTTP push, over real HTTP.

struct HttpPushKind {
    addr: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<SocketAddr>>>,
    bound: tokio::sync::OnceCell<SocketAddr>,
    round: Mutex<i64>,
    bad_pending: Mutex<bool>,
    client: reqwest::Client,
}

const TOKEN: &str = "s3cret";

impl HttpPushKind {
    fn new() -> Self {
        emberline_common::http::install_crypto_provider();
        Self {
            addr: tokio::sync::Mutex::new(None),
            bound: tokio::sync::OnceCell::new(),
            round: Mutex::new(0),
            bad_pending: Mutex::new(false),
            client: reqwest::Client::new(),
        }
    }

    async fn url(&self) -> String {
        let addr = self
            .bound
            .get_or_init(|| async {
                let rx = self
                    .addr
                    .lock()
                    .await
                    .take()
                    .expect("built before emitting");
                rx.await.expect("the source bound its address")
            })
            .await;
        format!("http://{addr}/v1/readings")
    }

    async fn post(&self, body: Vec<u8>) -> u16 {
        let url = self.url().await;
        let response = self
            .client
            .post(url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the endpoint answers");
        response.status().as_u16()
    }

    /// The bad bodies, each with the 4xx it must get.
    fn bad_bodies() -> Vec<(&'static str, Vec<u8>, u16)> {
        vec![
            (
                "a truncated body",
                br#"{"device_id": "smoker", "readings": [{"probe_id": "pit", "val"#.to_vec(),
                400,
            ),
            ("a body that is not UTF-8", vec![0xff, 0xfe, b'{'], 400),
            (
                "a body of the wrong shape",
                br#"{"device": "smoker", "temps": [1, 2]}"#.to_vec(),
                400,
            ),
            (
                "a reading whose value is text",
                br#"{"device_id": "smoker", "readings": [{"probe_id": "pit", "value": "hot"}]}"#
                    .to_vec(),
                422,
            ),
        ]
    }
}

#[async_trait]
impl Kind for HttpPushKind {
    fn name(&self) -> &'static str {
        "http_push"
    }
    async fn build(&self) -> Box<dyn Source> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.addr.lock().await = Some(rx);
        Box::new(
            HttpPush::new(HttpPushConfig {
                listen: any_port(),
                tokens: BTreeMap::from([("smoker".to_owned(), TOKEN.into())]),
                ..HttpPushConfig::default()
            })
            .on_bound(tx),
        )
    }
    async fn emit(&self) -> Vec<Expected> {
        let bad = std::mem::take(&mut *self.bad_pending.lock().expect("flag"));
        if bad {
            for (what, body, want) in Self::bad_bodies() {
                let status = self.post(body).await;
                assert_eq!(status, want, "{what}");
            }
        }
        let round = {
            let mut r = self.round.lock().expect("round");
            *r += 1;
            *r
        };
        let (pit, meat) = (110.0 + round as f64, 40.0 + round as f64);
        // Device times, so a batch re-posted after a 503 is the same readings.
        let time = now_ms();
        let body = serde_json::json!({"device_id": "smoker", "readings": [
            {"probe_id": "pit", "value": pit, "time": time},
            {"probe_id": "meat-1", "value": meat * 9.0 / 5.0 + 32.0, "unit": "F", "time": time},
        ]});
        let status = self.post(body.to_string().into_bytes()).await;
        // 503 while the log cannot take them: the suite emits again, as a device would.
        assert!(
            status == 200 || status == 503,
            "a good batch got HTTP {status}"
        );
        vec![
            Expected::new("smoker", "pit", Some(pit)),
            Expected::new("smoker", "meat-1", Some(meat)),
        ]
    }
    fn bad_inputs(&self) -> Vec<BadInput> {
        Self::bad_bodies()
            .into_iter()
            .map(|(what, _, _)| BadInput {
                what,
                dead_letter: true,
            })
            .collect()
    }
    async fn misbehave(&self) {
        // Nothing listens before the source starts: the bad bodies go before the next batch.
        *self.bad_pending.lock().expect("flag") = true;
    }
}

emberline_ingest::source_conformance_suite!(http_push, async { Some(HttpPushKind::new()) });

// ---------------------------------------------------------------------------------------
// ThermoWorks Cloud, against its stand-in.

struct ThermoworksKind {
    cloud: FakeThermoworks,
}

impl ThermoworksKind {
    async fn start() -> Option<Self> {
        emberline_common::http::install_crypto_provider();
        let cloud = FakeThermoworks::start(any_port(), "s3cret", now_ms())
            .await
            .expect("start");
        Some(Self { cloud })
    }
}

#[async_trait]
impl Kind for ThermoworksKind {
    fn name(&self) -> &'static str {
        "thermoworks"
    }
    async fn build(&self) -> Box<dyn Source> {
        SourceConfig::Thermoworks(ThermoworksConfig {
            credentials: Credentials::with_password("cook@example.com", "s3cret"),
            base_url: Some(self.cloud.url.clone()),
            poll_interval_s: 5,
            ..ThermoworksConfig::default()
        })
        .build(now_ms())
        .expect("build")
    }
    async fn emit(&self) -> Vec<Expected> {
        // The Node uploads: channel 1 is 225.5 °F, channel 2 71.25 °C.
        self.cloud
            .with(|c| c.devices.insert("A1".to_owned(), node(now_ms())));
        vec![
            Expected::new("A1", "1", Some(f_to_c(225.5))),
            Expected::new("A1", "2", Some(71.25)),
        ]
    }
    fn bad_inputs(&self) -> Vec<BadInput> {
        cloud_faults().into_iter().map(|(_, b)| b).collect()
    }
    async fn misbehave(&self) {
        self.cloud
            .with(|c| c.faults.extend(cloud_faults().into_iter().map(|(f, _)| f)));
    }
}

emberline_ingest::source_conformance_suite!(thermoworks, ThermoworksKind::start());

// ---------------------------------------------------------------------------------------
// MEATER Cloud, against its stand-in.

struct MeaterKind {
    cloud: FakeMeater,
}

impl MeaterKind {
    async fn start() -> Option<Self> {
        emberline_common::http::install_crypto_provider();
        let cloud = FakeMeater::start(any_port(), "s3cret")
            .await
            .expect("start");
        let kind = Self { cloud };
        // In a cook from the start: the first poll comes at once, the next 30 s later.
        kind.emit().await;
        Some(kind)
    }
}

#[async_trait]
impl Kind for MeaterKind {
    fn name(&self) -> &'static str {
        "meater"
    }
    async fn build(&self) -> Box<dyn Source> {
        SourceConfig::Meater(MeaterConfig {
            credentials: Credentials::with_password("cook@example.com", "s3cret"),
            base_url: self.cloud.url.clone(),
            ..MeaterConfig::default()
        })
        .build(now_ms())
        .expect("build")
    }
    async fn emit(&self) -> Vec<Expected> {
        self.cloud.with(|c| {
            c.devices.clear();
            c.devices
                .push(probe("probe-00CF01", 61.5, 118.0, now_ms() / 1_000));
        });
        vec![
            Expected::new("probe-00CF01", "internal", Some(61.5)),
            Expected::new("probe-00CF01", "ambient", Some(118.0)),
        ]
    }
    fn bad_inputs(&self) -> Vec<BadInput> {
        cloud_faults().into_iter().map(|(_, b)| b).collect()
    }
    async fn misbehave(&self) {
        self.cloud
            .with(|c| c.faults.extend(cloud_faults().into_iter().map(|(f, _)| f)));
    }
}

emberline_ingest::source_conformance_suite!(meater, MeaterKind::start());

// ---------------------------------------------------------------------------------------
// FireBoard Cloud, against its stand-in.

struct FireboardKind {
    cloud: FakeFireboard,
}

impl FireboardKind {
    async fn start() -> Option<Self> {
        emberline_common::http::install_crypto_provider();
        let cloud = FakeFireboard::start(any_port(), "s3cret")
            .await
            .expect("start");
        cloud.with(|c| {
            c.drivelogs.insert(
                "uuid-1".into(),
                serde_json::json!([{"setpoint": 250, "driveper": 35, "lidpaused": false, "drivetype": 1}]),
            );
        });
        let kind = Self { cloud };
        // Listed from the start: the first poll comes at once, the next a minute later.
        kind.emit().await;
        Some(kind)
    }
}

#[async_trait]
impl Kind for FireboardKind {
    fn name(&self) -> &'static str {
        "fireboard"
    }
    async fn build(&self) -> Box<dyn Source> {
        SourceConfig::Fireboard(FireboardConfig {
            credentials: Credentials::with_password("cook@example.com", "s3cret"),
            base_url: self.cloud.url.clone(),
            ..FireboardConfig::default()
        })
        .build(now_ms())
        .expect("build")
    }
    async fn emit(&self) -> Vec<Expected> {
        let created = stamp(now_ms() / 1_000 * 1_000);
        self.cloud.with(|c| {
            c.devices.clear();
            c.devices.push(fireboard_drive("uuid-1", 250.0, &created));
        });
        vec![
            Expected::new("uuid-1", "1", Some(f_to_c(250.0))),
            Expected::new("uuid-1", "2", Some(f_to_c(150.2))),
        ]
    }
    fn bad_inputs(&self) -> Vec<BadInput> {
        cloud_faults().into_iter().map(|(_, b)| b).collect()
    }
    async fn misbehave(&self) {
        self.cloud
            .with(|c| c.faults.extend(cloud_faults().into_iter().map(|(f, _)| f)));
    }
}

emberline_ingest::source_conformance_suite!(fireboard, FireboardKind::start());
