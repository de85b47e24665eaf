//! End-to-end: an MQTT source configured in `[[sources]]`, run by the real `emberline up`
//! against a real Mosquitto — ESPHome numbers and JSON payloads become readings, bad
//! payloads reach the dead-letter topic, and a broker restart is survived.
#![allow(clippy::print_stderr)]

mod support;

use std::time::Duration;

use emberline_log::{EmbeddedLog, EventLog, conformance::read_to_end, topics};
use emberline_proto::v1::GetLatestRequest;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use support::mosquitto::{Broker, mosquitto_binary};
use support::{PATIENCE, Up, free_port};
use tonic::transport::Channel;

fn publisher(port: u16) -> AsyncClient {
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new("publisher", "127.0.0.1", port), 64);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    client
}

/// The latest temperature of a probe, if the gateway has one.
async fn latest(channel: &Channel, device: &str, probe: &str) -> Option<f64> {
    let probes = DeviceServiceClient::new(channel.clone())
        .get_latest(GetLatestRequest {
            device_id: device.into(),
        })
        .await
        .ok()?
        .into_inner()
        .probes;
    probes
        .into_iter()
        .find(|p| p.probe_id == probe)?
        .temperature_c
}

/// Publishes `payload` every 200 ms until the gateway shows `expect` for the probe: the
/// source subscribes (again) at a time the test cannot see, and QoS 1 only covers messages
/// published after that.
async fn publish_until(
    client: &AsyncClient,
    channel: &Channel,
    topic: &str,
    payload: &str,
    device: &str,
    probe: &str,
    expect: f64,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .expect("publish");
        let got = tokio::time::timeout(Duration::from_millis(200), async {
            loop {
                if latest(channel, device, probe)
                    .await
                    .is_some_and(|t| (t - expect).abs() < 1e-6)
                {
                    return;
                }
                // Not a busy loop: the CPU is the emberline process's to catch up with.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if got.is_ok() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{device}/{probe} never showed {expect}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esphome_and_json_payloads_become_readings_and_bad_ones_dead_letters() {
    let Some(binary) = mosquitto_binary() else {
        return;
    };
    let mut broker = Broker::start(binary);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("emberline.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[sources]]
kind = "mqtt"
url = "mqtt://127.0.0.1:{port}"
client_id = "emberline-test"

[[sources.topics]]
filter = "+/sensor/+/state"
device = "{{0}}"
probe = "{{2}}"

[[sources.topics]]
filter = "bbq/+/json"
device = "heatermeter"
probe = "{{1}}"
format = "json"
value_field = "temp"
time_field = "ts"
unit_field = "unit"
"#,
            port = broker.port
        ),
    )
    .expect("write config");
    let config = config.display().to_string();
    let data = dir.path().join("data");
    let up = Up::start_full(
        &data,
        free_port(),
        free_port(),
        &[("EMBERLINE_CONFIG", config.as_str())],
    );
    let channel = up.channel().await;
    let mqtt = publisher(broker.port);

    publish_until(
        &mqtt,
        &channel,
        "esp-grill/sensor/pit/state",
        "120.5",
        "esp-grill",
        "pit",
        120.5,
    )
    .await;
    let now_s = emberline_common::clock::now_ms() / 1_000;
    let json = format!(r#"{{"temp": 212, "unit": "F", "ts": {now_s}}}"#);
    publish_until(
        &mqtt,
        &channel,
        "bbq/probe1/json",
        &json,
        "heatermeter",
        "probe1",
        100.0,
    )
    .await;
    for (topic, payload) in [
        ("esp-grill/sensor/meat/state", "hot"),
        ("bbq/probe2/json", "{not json"),
        ("esp-grill/sensor/pit/state", "5000"),
    ] {
        mqtt.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .expect("publish");
    }
    // `publish` only queues them, and the broker below forgets whatever it has not
    // delivered when it is killed. A good reading published after them is delivered after
    // them, and the source handles messages in order: once it is shown, the three bad ones
    // are in the dead-letter topic.
    publish_until(
        &mqtt,
        &channel,
        "esp-grill/sensor/pit/state",
        "121",
        "esp-grill",
        "pit",
        121.0,
    )
    .await;
    assert!(
        latest(&channel, "esp-grill", "meat").await.is_none(),
        "a bad payload became a reading"
    );

    // The broker restarts; the source reconnects and carries on.
    broker.kill();
    broker.restart();
    publish_until(
        &mqtt,
        &channel,
        "esp-grill/sensor/pit/state",
        "130.25",
        "esp-grill",
        "pit",
        130.25,
    )
    .await;
    up.interrupt();

    let log = EmbeddedLog::open(&data.join("log.redb")).expect("log");
    let mut dead = Vec::new();
    for p in 0..log
        .partitions(topics::DEAD_LETTER)
        .await
        .expect("partitions")
    {
        for r in read_to_end(&log, topics::DEAD_LETTER, p, 0)
            .await
            .expect("read")
        {
            dead.push(serde_json::from_slice::<serde_json::Value>(&r.value).expect("json"));
        }
    }
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| format!("{} {}", d["reason"], d["payload"]))
        .collect();
    eprintln!("dead letters: {reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not a number") && r.contains("esp-grill/sensor/meat/state")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not JSON") && r.contains("bbq/probe2/json")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("outside -50…1000") && r.contains("5000")),
        "{reasons:?}"
    );
    assert!(dead.iter().all(|d| d["source"] == "mqtt"));
}

/// An MQTT broker added through `SourceService` on a running `up`: a test connection lists
/// the ESPHome node a retained message announces, a closed port is reported as such, and
/// once saved the node's readings arrive with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_added_while_running_is_tested_and_streams() {
    use emberline_proto::v1::SetSourceRequest;
    use emberline_proto::v1::source_service_client::SourceServiceClient;

    let Some(binary) = mosquitto_binary() else {
        return;
    };
    let broker = Broker::start(binary);
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start(&dir.path().join("data"), free_port());
    let channel = up.channel().await;
    let mqtt = publisher(broker.port);
    mqtt.publish(
        "smoker-node/sensor/pit/state",
        QoS::AtLeastOnce,
        true,
        b"110.5".to_vec(),
    )
    .await
    .expect("publish a retained reading");
    let account = |url: String| SetSourceRequest {
        name: "shed".into(),
        kind: "mqtt".into(),
        fields: [("url".to_owned(), url)].into_iter().collect(),
    };
    let mut sources = SourceServiceClient::new(channel.clone());

    let closed = free_port();
    let refused = sources
        .test_source(account(format!("mqtt://{closed}")))
        .await
        .expect_err("nothing listens there");
    assert!(
        refused.message().starts_with("cannot connect"),
        "{refused:?}"
    );
    let bad = sources
        .set_source(account("http://127.0.0.1:1883".into()))
        .await
        .expect_err("not an MQTT URL");
    assert!(bad.message().starts_with("url:"), "{bad:?}");

    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let found = sources
        .test_source(account(url.clone()))
        .await
        .expect("test connection")
        .into_inner()
        .devices;
    assert_eq!(
        found
            .iter()
            .map(|d| (
                d.device_id.as_str(),
                d.probes.keys().cloned().collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>(),
        [("smoker-node", vec!["pit".to_owned()])]
    );
    sources
        .set_source(account(url))
        .await
        .expect("broker added");
    publish_until(
        &mqtt,
        &channel,
        "smoker-node/sensor/pit/state",
        "111.5",
        "smoker-node",
        "pit",
        111.5,
    )
    .await;
    let listed = sources
        .list_sources(emberline_proto::v1::ListSourcesRequest {})
        .await
        .expect("list")
        .into_inner()
        .sources;
    let shed = listed.iter().find(|s| s.name == "shed").expect("listed");
    assert!(
        shed.running && shed.last_success_ms > 0 && shed.last_error.is_empty(),
        "the broker's status shows its last delivery: {shed:?}"
    );
    up.interrupt();
}
