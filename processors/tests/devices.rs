//! The device projector on the embedded log: what it folds, resumption, replay equality
//! and dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;

use emberline_ingest::testing::embedded_log;
use emberline_log::{EmbeddedLog, EventLog, NewRecord, conformance::read_to_end, topics};
use emberline_processors::{Mode, run_devices};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use emberline_schemas::events::{
    CookEnded, CookNoteAdded, CookStarted, DeviceRegistered, DeviceRemoved, DeviceStatus, TargetSet,
};
use emberline_schemas::{Event, EventCodec};
use tokio_util::sync::CancellationToken;

struct World {
    dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    codec: Arc<EventCodec>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, codec) = embedded_log(dir.path(), 3).await.expect("log");
    World { dir, log, codec }
}

impl World {
    async fn append<E: Event>(&self, topic: &str, device: &str, event: &E) {
        let record = NewRecord {
            key: device.as_bytes().to_vec(),
            value: self.codec.encode(event).expect("encode"),
            timestamp_ms: 1,
        };
        self.log.append(topic, vec![record]).await.expect("append");
    }

    async fn project(&self, store: &str) -> Arc<EmbeddedStore> {
        let store = Arc::new(EmbeddedStore::open(&self.dir.path().join(store)).expect("store"));
        run_devices(
            self.log.clone(),
            store.clone(),
            self.codec.clone(),
            Mode::CatchUp,
            CancellationToken::new(),
        )
        .await
        .expect("run");
        store
    }
}

fn registered(device: &str, name: &str) -> DeviceRegistered {
    DeviceRegistered {
        device_id: device.into(),
        event_time: 10,
        tenant: "local".into(),
        model: Some("Sim".into()),
        name: name.into(),
        probe_labels: BTreeMap::from([("pit".into(), "Pit".into())]),
        source: "test".into(),
    }
}

fn status(device: &str, t: i64, battery: f64) -> DeviceStatus {
    DeviceStatus {
        device_id: device.into(),
        event_time: t,
        received_time: t,
        online: true,
        battery_percent: Some(battery),
        signal_dbm: Some(-60),
        firmware: None,
        source: "test".into(),
        note: None,
        attributes: BTreeMap::new(),
    }
}

fn target(device: &str, probe: &str, target_c: Option<f64>) -> TargetSet {
    TargetSet {
        cook_id: String::new(),
        device_id: device.into(),
        event_time: 20,
        probe_id: probe.into(),
        target_c,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folds_both_topics_resumes_and_equals_a_replay() {
    let w = world().await;
    for d in ["a", "b", "c", "d"] {
        w.append(
            topics::DEVICE_EVENTS,
            d,
            &registered(d, &format!("Grill {d}")),
        )
        .await;
        w.append(topics::DEVICE_EVENTS, d, &status(d, 100, 90.0))
            .await;
    }
    w.append(
        topics::COOK_COMMANDS,
        "a",
        &target("a", "meat-1", Some(93.0)),
    )
    .await;
    let live = w.project("live.redb").await;
    let infos = live.device_infos().await.expect("infos");
    assert_eq!(infos.len(), 4);
    assert_eq!(infos[0].name.as_deref(), Some("Grill a"));
    assert_eq!(infos[0].targets_c.get("meat-1"), Some(&93.0));
    assert_eq!(infos[1].battery_percent, Some(90.0));

    // More events, a second run on the same store resumes after the first.
    w.append(topics::DEVICE_EVENTS, "b", &status("b", 200, 40.0))
        .await;
    w.append(
        topics::DEVICE_EVENTS,
        "c",
        &DeviceRemoved {
            device_id: "c".into(),
            event_time: 300,
            reason: Some("sold it".into()),
        },
    )
    .await;
    w.append(
        topics::COOK_COMMANDS,
        "a",
        &target("a", "meat-1", Some(95.0)),
    )
    .await;
    w.append(
        topics::COOK_COMMANDS,
        "a",
        &target("a", "meat-2", Some(60.0)),
    )
    .await;
    w.append(topics::COOK_COMMANDS, "a", &target("a", "meat-2", None))
        .await;
    drop(live);
    let live = w.project("live.redb").await;
    let infos = live.device_infos().await.expect("infos");
    assert_eq!(
        infos[0].targets_c,
        BTreeMap::from([("meat-1".into(), 95.0)])
    );
    assert_eq!(infos[1].battery_percent, Some(40.0));
    assert!(infos[2].is_removed());
    assert!(!infos[3].is_removed());

    let replay = w.project("replay.redb").await;
    assert_eq!(
        live.dump().await.expect("dump"),
        replay.dump().await.expect("dump"),
        "resumed projections differ from a replay from offset 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_are_not_device_events_go_to_the_dead_letter_topic() {
    let w = world().await;
    w.append(topics::DEVICE_EVENTS, "a", &registered("a", "Kept"))
        .await;
    // Garbage, and a valid record of the wrong kind.
    w.log
        .append(
            topics::DEVICE_EVENTS,
            vec![NewRecord {
                key: b"a".to_vec(),
                value: b"not avro".to_vec(),
                timestamp_ms: 1,
            }],
        )
        .await
        .expect("append");
    let reading = emberline_schemas::events::ProbeReading {
        device_id: "a".into(),
        probe_id: "pit".into(),
        event_time: 1,
        received_time: 1,
        temperature_c: Some(100.0),
        source: "test".into(),
    };
    w.append(topics::COOK_COMMANDS, "a", &reading).await;
    let store = w.project("p.redb").await;
    assert_eq!(
        store.device_infos().await.expect("infos")[0]
            .name
            .as_deref(),
        Some("Kept")
    );
    let mut reasons = Vec::new();
    for p in 0..3 {
        for record in read_to_end(w.log.as_ref(), topics::DEAD_LETTER, p, 0)
            .await
            .expect("read")
        {
            reasons.push(String::from_utf8(record.value).expect("utf-8"));
        }
    }
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("\"topic\":\"cook.commands\""),
        "{reasons:?}"
    );
    assert!(
        reasons[0].contains("does not describe a device"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("\"topic\":\"device.events\""),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("magic byte"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cook_is_started_changed_noted_and_ended() {
    let w = world().await;
    w.append(topics::DEVICE_EVENTS, "a", &registered("a", "Grill"))
        .await;
    let start = CookStarted {
        cook_id: "a-100".into(),
        device_id: "a".into(),
        event_time: 100,
        what: Some("Brisket".into()),
        targets_c: BTreeMap::from([("meat-1".into(), 93.0)]),
        pit_min_c: Some(105.0),
        pit_max_c: Some(125.0),
        meat: None,
        weight_kg: None,
        serve_at_ms: None,
        rest_min: None,
    };
    w.append(topics::COOK_COMMANDS, "a", &start).await;
    let mut target = target("a", "meat-2", Some(70.0));
    target.cook_id = "a-100".into();
    w.append(topics::COOK_COMMANDS, "a", &target).await;
    let note = CookNoteAdded {
        cook_id: "a-100".into(),
        device_id: "a".into(),
        event_time: 150,
        text: "wrapped".into(),
    };
    w.append(topics::COOK_COMMANDS, "a", &note).await;
    let store = w.project("p.redb").await;
    let cook = store.cook("a-100").await.expect("read").expect("the cook");
    assert_eq!(
        cook.targets_c,
        BTreeMap::from([("meat-1".into(), 93.0), ("meat-2".into(), 70.0)])
    );
    assert_eq!(
        (cook.ended_time, cook.notes.len(), cook.what.as_deref()),
        (None, 1, Some("Brisket"))
    );
    assert_eq!(
        store.device_infos().await.expect("infos")[0]
            .cook_id
            .as_deref(),
        Some("a-100")
    );
    let end = CookEnded {
        cook_id: "a-100".into(),
        device_id: "a".into(),
        event_time: 200,
    };
    w.append(topics::COOK_COMMANDS, "a", &end).await;
    drop(store);
    let store = w.project("p.redb").await;
    let cook = store.cook("a-100").await.expect("read").expect("the cook");
    assert_eq!(cook.ended_time, Some(200));
    assert_eq!(store.device_infos().await.expect("infos")[0].cook_id, None);
    let replay = w.project("replay.redb").await;
    assert_eq!(
        store.dump().await.expect("dump"),
        replay.dump().await.expect("dump")
    );
}
