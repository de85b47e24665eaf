//! `DeviceService/SubscribeDevices` against a running `emberline up`: a snapshot, then each
//! change to a device's description — its first reading, a new probe, a target, a name, its
//! removal — once, as `ListDevices` answers right after it, and nothing for readings that
//! change no description.
#![allow(clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};

use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::settings_service_client::SettingsServiceClient;
use emberline_proto::v1::{
    DeleteDeviceRequest, Device, DeviceUpdate, ListDevicesRequest, RenameDeviceRequest,
    SetTargetRequest, SubscribeDevicesRequest,
};
use support::{PATIENCE, Up, free_port};
use tokio_stream::StreamExt;

const DEVICE: &str = "kettle";
const TOKEN: &str = "device-feed-test-token";

fn config(dir: &Path, push: std::net::SocketAddr) -> PathBuf {
    let path = dir.join("feed.toml");
    std::fs::write(&path, support::push::source(push, DEVICE, TOKEN)).expect("config");
    path
}

/// The next update of `stream`, failing the test after [`PATIENCE`].
async fn next(stream: &mut tonic::Streaming<DeviceUpdate>, what: &str) -> DeviceUpdate {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no device update for {what}"))
        .unwrap_or_else(|| panic!("the device stream ended before {what}"))
        .unwrap_or_else(|s| panic!("the device stream failed before {what}: {s}"))
}

/// The one device a (non-snapshot) update carries.
fn only_device(update: DeviceUpdate, what: &str) -> Device {
    assert!(
        !update.snapshot,
        "{what}: only the first message is a snapshot"
    );
    assert_eq!(update.devices.len(), 1, "{what}: {update:?}");
    update.devices.into_iter().next().expect("one device")
}

/// `DEVICE` as `ListDevices` answers now (removed ones included).
async fn listed(devices: &mut DeviceServiceClient<tonic::transport::Channel>) -> Option<Device> {
    devices
        .list_devices(ListDevicesRequest {
            include_removed: true,
        })
        .await
        .expect("list devices")
        .into_inner()
        .devices
        .into_iter()
        .find(|d| d.device_id == DEVICE)
}

/// Pushes one reading of each of `probes` at `time_ms`, and checks it was taken.
async fn push(client: &reqwest::Client, addr: std::net::SocketAddr, probes: &[&str], time_ms: i64) {
    let readings = probes
        .iter()
        .map(|p| serde_json::json!({"probe_id": p, "value": 80.0, "time": time_ms}))
        .collect();
    let (status, text) = support::push::push(client, addr, DEVICE, TOKEN, readings).await;
    assert!(
        (200..300).contains(&status),
        "push refused: {status} {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_stream_each_change_once_as_listed() {
    emberline_common::http::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let push_addr = free_port();
    let config = config(dir.path(), push_addr);
    let env = [("EMBERLINE_CONFIG", config.to_str().expect("utf-8"))];
    let up = Up::start_with(&dir.path().join("data"), free_port(), &env);
    let channel = up.channel().await;
    let mut devices = DeviceServiceClient::new(channel.clone());
    let mut cooks = CookServiceClient::new(channel.clone());
    let mut settings = SettingsServiceClient::new(channel.clone());
    let client = reqwest::Client::new();

    let mut stream = devices
        .subscribe_devices(SubscribeDevicesRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    let first = next(&mut stream, "the snapshot").await;
    assert!(
        first.snapshot,
        "the first message is the snapshot: {first:?}"
    );
    assert!(
        first.devices.is_empty(),
        "nothing has reported yet: {first:?}"
    );

    // Its first reading makes it a device.
    let t0 = emberline_common::clock::now_ms() - 60_000;
    push(&client, push_addr, &["meat"], t0).await;
    let got = only_device(
        next(&mut stream, "the first reading").await,
        "first reading",
    );
    assert_eq!(got.device_id, DEVICE);
    assert_eq!(got.probe_ids, ["meat"]);
    assert_eq!(listed(&mut devices).await.as_ref(), Some(&got), "as listed");

    // More readings of the same probe describe nothing new; a new probe does. Nothing
    // comes between: the next update is the new probe's.
    for i in 1..=5 {
        push(&client, push_addr, &["meat"], t0 + i * 1_000).await;
    }
    push(&client, push_addr, &["meat", "pit"], t0 + 6_000).await;
    let got = only_device(next(&mut stream, "a new probe").await, "new probe");
    assert_eq!(got.probe_ids, ["meat", "pit"]);
    assert_eq!(listed(&mut devices).await.as_ref(), Some(&got), "as listed");

    // A target: the update carries it, as the projections hold it.
    cooks
        .set_target(SetTargetRequest {
            device_id: DEVICE.into(),
            probe_id: "meat".into(),
            target_c: Some(93.0),
        })
        .await
        .expect("set target");
    let got = only_device(next(&mut stream, "a target").await, "target");
    assert_eq!(got.targets_c.get("meat"), Some(&93.0), "{got:?}");
    assert_eq!(listed(&mut devices).await.as_ref(), Some(&got), "as listed");

    // A name and a probe label, from the settings.
    settings
        .rename_device(RenameDeviceRequest {
            device_id: DEVICE.into(),
            name: "Back-yard kettle".into(),
            probe_labels: [("pit".to_owned(), "Grate".to_owned())].into(),
        })
        .await
        .expect("rename");
    let got = only_device(next(&mut stream, "a rename").await, "rename");
    assert_eq!(got.name, "Back-yard kettle");
    assert_eq!(
        got.probe_labels.get("pit").map(String::as_str),
        Some("Grate")
    );
    assert_eq!(listed(&mut devices).await.as_ref(), Some(&got), "as listed");

    // A second subscriber, for this device only, starts from the same description.
    let mut one = devices
        .subscribe_devices(SubscribeDevicesRequest {
            device_id: DEVICE.into(),
        })
        .await
        .expect("subscribe to one device")
        .into_inner();
    let snapshot = next(&mut one, "the one device's snapshot").await;
    assert!(snapshot.snapshot);
    assert_eq!(snapshot.devices, std::slice::from_ref(&got));

    // Removal: flagged once on both streams; a later subscriber no longer sees it.
    devices
        .delete_device(DeleteDeviceRequest {
            device_id: DEVICE.into(),
            reason: "sold".into(),
        })
        .await
        .expect("delete");
    for (stream, what) in [(&mut stream, "every device"), (&mut one, "one device")] {
        let got = only_device(next(stream, "the removal").await, what);
        assert!(got.removed, "{what}: {got:?}");
        assert_eq!(
            listed(&mut devices).await.as_ref(),
            Some(&got),
            "{what}: as listed"
        );
    }
    let mut later = devices
        .subscribe_devices(SubscribeDevicesRequest::default())
        .await
        .expect("subscribe again")
        .into_inner();
    let snapshot = next(&mut later, "a later snapshot").await;
    assert!(
        snapshot.snapshot && snapshot.devices.is_empty(),
        "{snapshot:?}"
    );

    drop((stream, one, later));
    up.interrupt();
}
