//! End-to-end: ThermoWorks credentials in the config put the account's devices and channels
//! on the live stream — `emberline up` against the local ThermoWorks stand-in, configured
//! with the keys a real account uses plus `base_url`.

mod support;

use emberline_ingest::testing::thermoworks::FakeThermoworks;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{ListDevicesRequest, StartFrom, SubscribeTrendsRequest};
use support::{PATIENCE, Up, free_port};
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thermoworks_devices_and_channels_stream_as_probes() {
    let seen = emberline_common::clock::now_ms() - 2_000;
    let cloud = FakeThermoworks::start("127.0.0.1:0".parse().expect("addr"), "s3cret", seen)
        .await
        .expect("cloud");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("emberline.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nkind = \"thermoworks\"\nusername = \"cook@example.com\"\npassword = \"s3cret\"\nbase_url = \"{}\"\npoll_interval_s = 5\n",
            cloud.url
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let up = Up::start_full(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &[("EMBERLINE_CONFIG", config.as_str())],
    );
    let channel = up.channel().await;
    let mut stream = TrendServiceClient::new(channel.clone())
        .subscribe_trends(SubscribeTrendsRequest {
            device_id: "A1".into(),
            resume: Default::default(),
            start: StartFrom::Earliest as i32,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut probes = std::collections::BTreeMap::new();
    while probes.len() < 2 {
        let e = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("an update in time")
            .expect("stream")
            .expect("event");
        probes.insert(
            e.probe_id.clone(),
            (e.temperature_c * 100.0).round() / 100.0,
        );
    }
    assert_eq!(
        probes.get("1"),
        Some(&107.5),
        "the pit channel, 225.5 °F, in °C"
    );
    assert_eq!(
        probes.get("2"),
        Some(&71.25),
        "the brisket channel, already °C"
    );
    // The device description is folded by its own projector: wait until it is there.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let node = loop {
        let devices = DeviceServiceClient::new(channel.clone())
            .list_devices(ListDevicesRequest::default())
            .await
            .expect("list")
            .into_inner()
            .devices;
        if let Some(node) = devices
            .into_iter()
            .find(|d| d.device_id == "A1" && d.name != "A1")
        {
            break node;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Node was never described"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(node.name, "Back yard Node");
    assert_eq!(node.probe_labels.get("1").map(String::as_str), Some("Pit"));
    assert!(
        !node.probe_ids.contains(&"3".to_owned()),
        "the humidity channel is not a probe"
    );
    assert_eq!(cloud.calls("signIn"), 1);
    up.interrupt();
}
