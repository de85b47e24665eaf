//! Everything a gateway answers — devices, latest values, history, cooks, predictions,
//! alerts — as comparable text, and reading a data directory's log and projections once no
//! process holds them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use emberline_log::{EventLog, topics};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use emberline_proto::v1::alert_service_client::AlertServiceClient;
use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::prediction_service_client::PredictionServiceClient;
use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use emberline_proto::v1::{
    GetHistoryRequest, GetLatestRequest, ListAlertsRequest, ListCooksRequest, ListDevicesRequest,
    ListPredictionsRequest,
};
use emberline_schemas::events::ProbeReading;

/// Everything a gateway answers, for comparing gateways and replays.
#[derive(Debug, PartialEq)]
pub struct Answers {
    pub devices: Vec<String>,
    pub latest: Vec<String>,
    pub history: Vec<String>,
    /// Every history point as (device, probe, event time).
    pub points: Vec<(String, String, i64)>,
    pub cooks: Vec<String>,
    pub predictions: Vec<String>,
    pub alerts: Vec<String>,
    /// The answers as protobuf values, for checks on their fields.
    pub raw_cooks: Vec<emberline_proto::v1::Cook>,
    pub raw_predictions: Vec<emberline_proto::v1::Prediction>,
    pub raw_alerts: Vec<emberline_proto::v1::Alert>,
}

impl Answers {
    /// The first difference from `other`, per part; empty when equal.
    pub fn difference(&self, other: &Answers) -> String {
        let parts = [
            ("devices", &self.devices, &other.devices),
            ("latest", &self.latest, &other.latest),
            ("history", &self.history, &other.history),
            ("cooks", &self.cooks, &other.cooks),
            ("predictions", &self.predictions, &other.predictions),
            ("alerts", &self.alerts, &other.alerts),
        ];
        let mut out = Vec::new();
        for (name, a, b) in parts {
            if a == b {
                continue;
            }
            let at = a.iter().zip(b.iter()).position(|(x, y)| x != y);
            match at {
                Some(i) => out.push(format!("{name}[{i}]: {} vs {}", a[i], b[i])),
                None => out.push(format!("{name}: {} vs {} entries", a.len(), b.len())),
            }
        }
        out.join("; ")
    }
}

/// Asks the gateway at `grpc` everything.
pub async fn answers(grpc: std::net::SocketAddr) -> Answers {
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut devices = DeviceServiceClient::new(channel.clone());
    let mut readings = ReadingServiceClient::new(channel.clone());
    let listed = devices
        .list_devices(ListDevicesRequest::default())
        .await
        .expect("devices")
        .into_inner()
        .devices;
    // Maps print in hash order: take them out and print them sorted.
    let sorted = |m: &std::collections::HashMap<String, f64>| {
        format!("{:?}", m.iter().collect::<BTreeMap<_, _>>())
    };
    let sorted_text = |m: &std::collections::HashMap<String, String>| {
        format!("{:?}", m.iter().collect::<BTreeMap<_, _>>())
    };
    let mut out = Answers {
        devices: listed
            .iter()
            .map(|d| {
                let plain = emberline_proto::v1::Device {
                    probe_labels: Default::default(),
                    targets_c: Default::default(),
                    attributes: Default::default(),
                    ..d.clone()
                };
                format!(
                    "{plain:?} labels {} targets {} attributes {}",
                    sorted_text(&d.probe_labels),
                    sorted(&d.targets_c),
                    sorted_text(&d.attributes)
                )
            })
            .collect(),
        latest: Vec::new(),
        history: Vec::new(),
        points: Vec::new(),
        cooks: Vec::new(),
        predictions: Vec::new(),
        alerts: Vec::new(),
        raw_cooks: Vec::new(),
        raw_predictions: Vec::new(),
        raw_alerts: Vec::new(),
    };
    for d in &listed {
        // A device registered but not yet read from has no latest values.
        let latest = match devices
            .get_latest(GetLatestRequest {
                device_id: d.device_id.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner().probes,
            Err(e) if e.code() == tonic::Code::NotFound => Vec::new(),
            Err(e) => panic!("latest: {e}"),
        };
        out.latest.extend(latest.iter().map(|p| format!("{p:?}")));
        for probe in &d.probe_ids {
            let points = readings
                .get_history(GetHistoryRequest {
                    device_id: d.device_id.clone(),
                    probe_id: probe.clone(),
                    from_ms: 0,
                    to_ms: i64::MAX,
                    limit: 1_000_000,
                    step_ms: 0,
                })
                .await
                .expect("history")
                .into_inner();
            out.points.extend(
                points
                    .points
                    .iter()
                    .map(|p| (d.device_id.clone(), probe.clone(), p.event_time_ms)),
            );
            out.history
                .push(format!("{}/{probe}: {points:?}", d.device_id));
        }
    }
    out.raw_cooks = CookServiceClient::new(channel.clone())
        .list_cooks(ListCooksRequest::default())
        .await
        .expect("cooks")
        .into_inner()
        .cooks;
    out.cooks = out
        .raw_cooks
        .iter()
        .map(|c| {
            let plain = emberline_proto::v1::Cook {
                targets_c: Default::default(),
                ..c.clone()
            };
            format!("{plain:?} targets {}", sorted(&c.targets_c))
        })
        .collect();
    out.raw_predictions = PredictionServiceClient::new(channel.clone())
        .list_predictions(ListPredictionsRequest::default())
        .await
        .expect("predictions")
        .into_inner()
        .predictions;
    out.predictions = out
        .raw_predictions
        .iter()
        .map(|p| format!("{p:?}"))
        .collect();
    out.raw_alerts = AlertServiceClient::new(channel)
        .list_alerts(ListAlertsRequest::default())
        .await
        .expect("alerts")
        .into_inner()
        .alerts;
    out.alerts = out.raw_alerts.iter().map(|a| format!("{a:?}")).collect();
    out
}

/// Every reading in the embedded log of `dir` as (device, probe, event time), with how many
/// times each occurs; and the end offset of every partition of `probe.readings`.
pub async fn logged_readings(
    dir: &Path,
) -> (BTreeMap<(String, String, i64), u32>, BTreeMap<u32, u64>) {
    let (log, codec) = emberline_ingest::testing::embedded_log(dir, 4)
        .await
        .expect("open the log");
    let mut readings = BTreeMap::new();
    let mut ends = BTreeMap::new();
    for p in 0..log
        .partitions(topics::PROBE_READINGS)
        .await
        .expect("partitions")
    {
        let records =
            emberline_log::conformance::read_to_end(log.as_ref(), topics::PROBE_READINGS, p, 0)
                .await
                .expect("read");
        ends.insert(
            p,
            log.end_offset(topics::PROBE_READINGS, p)
                .await
                .expect("end"),
        );
        for r in records {
            let reading: ProbeReading = codec.decode(&r.value).await.expect("a reading");
            *readings
                .entry((reading.device_id, reading.probe_id, reading.event_time))
                .or_insert(0) += 1;
        }
    }
    (readings, ends)
}

/// What the projections in `dir` have applied (per applied-positions key) and every history
/// point they hold.
pub async fn projected(
    dir: &Path,
    keys: &[&str],
) -> (
    BTreeMap<String, BTreeMap<u32, u64>>,
    BTreeSet<(String, String, i64)>,
) {
    let store = EmbeddedStore::open(&dir.join("projections.redb")).expect("open projections");
    let mut applied = BTreeMap::new();
    for key in keys {
        applied.insert(
            (*key).to_owned(),
            store.applied_positions(key).await.expect("applied"),
        );
    }
    let mut points = BTreeSet::new();
    for d in store.devices().await.expect("devices") {
        for probe in store.latest(&d.device_id).await.expect("latest") {
            for p in store
                .history(&d.device_id, &probe.probe_id, 0, i64::MAX, usize::MAX)
                .await
                .expect("history")
            {
                points.insert((p.device_id, p.probe_id, p.event_time));
            }
        }
    }
    (applied, points)
}
