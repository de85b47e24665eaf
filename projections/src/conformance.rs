//! The conformance suite every [`ProjectionStore`] must pass.
//!
//! Each check is an async function over a [`Backend`] that opens the store under test;
//! [`projection_suite!`](crate::projection_suite) turns them into one `#[tokio::test]` each.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{
    AlertRecord, AlertRuleRecord, CookNote, CookSession, DeviceInfo, HistoryPoint, LatestProbe,
    ProbePrediction, ProjectionBatch, ProjectionStore,
};

/// A boxed, sendable future (spelled out to keep a futures crate out of the store).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A store under test.
pub trait Backend: Send + Sync {
    /// Opens the store. Opening again after every handle is dropped sees the same data.
    fn open(&self) -> BoxFuture<'_, Arc<dyn ProjectionStore>>;
}

/// Expands to one `#[tokio::test]` per check, inside a module named `$name`.
/// `$backend` is an async expression yielding `Option<impl Backend>`; `None` skips.
#[macro_export]
macro_rules! projection_suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::projection_suite!(@case $backend;
                latest_moves_forward_only,
                batches_are_idempotent,
                batches_applied_together_equal_batches_applied_in_turn,
                history_is_a_half_open_range_with_a_limit,
                history_across_minutes_arriving_in_any_order,
                history_steps_summarise_the_points_of_their_range,
                state_and_positions_survive_reopen,
                an_empty_store_answers_empty,
                device_descriptions_are_replaced_whole_and_survive_reopen,
                cooks_list_newest_first_by_device_and_are_replaced_whole,
                predictions_alerts_and_rules_are_kept_listed_and_removed);
        }
    };
    (@case $backend:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(backend) = $backend.await {
                    $crate::conformance::$case(&backend).await;
                }
            }
        )*
    };
}

fn latest(device: &str, probe: &str, t: i64, offset: u64, temp: f64) -> LatestProbe {
    LatestProbe {
        device_id: device.into(),
        probe_id: probe.into(),
        event_time: t,
        received_time: t + 5,
        temperature_c: Some(temp),
        source: "test".into(),
        trend: None,
        source_partition: 0,
        source_offset: offset,
    }
}

fn point(device: &str, probe: &str, t: i64, temp: f64) -> HistoryPoint {
    HistoryPoint {
        device_id: device.into(),
        probe_id: probe.into(),
        event_time: t,
        received_time: t + 5,
        temperature_c: Some(temp),
    }
}

/// Within a batch and across batches, the latest value of a probe only moves forward in
/// (event time, source offset); devices list every device with a probe.
pub async fn latest_moves_forward_only(backend: &impl Backend) {
    let store = backend.open().await;
    let batch = ProjectionBatch {
        latest: vec![
            latest("d1", "p1", 2_000, 2, 50.0),
            latest("d1", "p1", 1_000, 1, 40.0),
        ],
        ..Default::default()
    };
    store.apply(batch).await.expect("apply");
    store
        .apply(ProjectionBatch {
            latest: vec![
                latest("d1", "p1", 500, 0, 10.0),
                latest("d2", "p9", 1, 9, 1.0),
            ],
            ..Default::default()
        })
        .await
        .expect("apply");
    assert_eq!(
        store.latest("d1").await.expect("latest"),
        vec![latest("d1", "p1", 2_000, 2, 50.0)]
    );
    store
        .apply(ProjectionBatch {
            latest: vec![latest("d1", "p1", 2_000, 3, 51.0)],
            ..Default::default()
        })
        .await
        .expect("apply");
    assert_eq!(
        store.latest("d1").await.expect("latest"),
        vec![latest("d1", "p1", 2_000, 3, 51.0)]
    );
    let devices = store.devices().await.expect("devices");
    assert_eq!(
        devices
            .iter()
            .map(|d| (d.device_id.as_str(), d.probes))
            .collect::<Vec<_>>(),
        [("d1", 1), ("d2", 1)]
    );
    assert_eq!(devices[0].last_event_time, 2_000);
}

/// Applying the same batch twice leaves the store as applying it once.
pub async fn batches_are_idempotent(backend: &impl Backend) {
    let store = backend.open().await;
    let batch = ProjectionBatch {
        latest: vec![latest("d1", "p1", 2_000, 2, 50.0)],
        history: (0..10)
            .map(|i| point("d1", "p1", i * 1_000, i as f64))
            .collect(),
        state: vec![("trend/d1/p1".into(), vec![1, 2])],
        devices: vec![DeviceInfo::new("d1")],
        cooks: vec![cook("c1", "d1", 5)],
        predictions: Vec::new(),
        alerts: vec![alert("r#1", "d1", 10, None)],
        alert_rules: vec![rule("r", "d1")],
        removed_rules: vec!["gone".into()],
        applied: vec![("probe.readings".into(), 0, 3)],
    };
    store.apply(batch.clone()).await.expect("apply");
    let once = store.dump().await.expect("dump");
    store.apply(batch).await.expect("apply again");
    assert!(
        store.dump().await.expect("dump") == once,
        "a repeated batch changed the store"
    );
}

/// `apply_all` applies its batches in order: the later batch's state and position win,
/// every history point is kept, the latest value is the newest.
pub async fn batches_applied_together_equal_batches_applied_in_turn(backend: &impl Backend) {
    let batch = |partition: u32, t: i64, temp: f64| ProjectionBatch {
        latest: vec![latest("d1", "p1", t, t as u64, temp)],
        history: vec![point("d1", "p1", t, temp), point("d2", "p1", t, temp)],
        state: vec![("trend/d1/p1".into(), temp.to_le_bytes().to_vec())],
        applied: vec![("probe.readings".into(), partition, t as u64)],
        ..Default::default()
    };
    let batches = vec![
        batch(0, 1_000, 40.0),
        batch(1, 2_000, 41.0),
        batch(0, 3_000, 39.0),
    ];
    let store = backend.open().await;
    store.apply_all(Arc::new(batches)).await.expect("apply all");
    let together = store.dump().await.expect("dump");
    assert_eq!(
        store.latest("d1").await.expect("latest"),
        vec![latest("d1", "p1", 3_000, 3_000, 39.0)]
    );
    assert_eq!(
        store.state("trend/d1/p1").await.expect("state"),
        Some(39.0f64.to_le_bytes().to_vec())
    );
    assert_eq!(
        store
            .history("d2", "p1", 0, 10_000, 10)
            .await
            .expect("history")
            .len(),
        3
    );
    assert_eq!(
        store
            .applied_positions("probe.readings")
            .await
            .expect("positions"),
        BTreeMap::from([(0, 3_000), (1, 2_000)])
    );
    // Nothing applied at all is nothing changed.
    store.apply_all(Arc::new(Vec::new())).await.expect("none");
    assert!(store.dump().await.expect("dump") == together);
}

/// History answers `from <= t < to`, oldest first, at most `limit`, per probe.
pub async fn history_is_a_half_open_range_with_a_limit(backend: &impl Backend) {
    let store = backend.open().await;
    let mut history: Vec<_> = (0..10)
        .map(|i| point("d1", "p1", i * 1_000, i as f64))
        .collect();
    history.push(point("d1", "p2", 3_000, 99.0));
    history.push(point("d0", "p1", 3_000, 98.0));
    store
        .apply(ProjectionBatch {
            history,
            ..Default::default()
        })
        .await
        .expect("apply");
    let times =
        |points: Vec<HistoryPoint>| points.into_iter().map(|p| p.event_time).collect::<Vec<_>>();
    assert_eq!(
        times(
            store
                .history("d1", "p1", 2_000, 5_000, 100)
                .await
                .expect("history")
        ),
        [2_000, 3_000, 4_000]
    );
    assert_eq!(
        times(
            store
                .history("d1", "p1", 0, 10_000, 4)
                .await
                .expect("history")
        ),
        [0, 1_000, 2_000, 3_000]
    );
    assert_eq!(
        times(
            store
                .history("d1", "p2", 0, 10_000, 4)
                .await
                .expect("history")
        ),
        [3_000]
    );
    assert!(
        store
            .history("d1", "p1", 5_000, 5_000, 4)
            .await
            .expect("history")
            .is_empty()
    );
    assert!(
        store
            .history("d1", "p3", 0, i64::MAX, 4)
            .await
            .expect("history")
            .is_empty()
    );
}

/// History spanning minutes, applied in shuffled batches with one point rewritten, answers
/// every window as the points themselves say: later writes of an event time win, values come
/// back bit for bit (tenths, conversions from Fahrenheit, unplugged probes).
pub async fn history_across_minutes_arriving_in_any_order(backend: &impl Backend) {
    let store = backend.open().await;
    let t0 = 1_790_000_000_000 - 30_123;
    let at = |i: i64, temp: Option<f64>| HistoryPoint {
        device_id: "d1".into(),
        probe_id: "p1".into(),
        event_time: t0 + i * 937,
        received_time: t0 + i * 937 + 40 + i % 7,
        temperature_c: temp,
    };
    let temp = |i: i64| match i % 50 {
        0 => None,
        7 => Some((200.0 + i as f64 - 32.0) * 5.0 / 9.0),
        _ => Some(20.0 + i as f64 / 10.0),
    };
    let n = 400;
    // Every point once, in the order 0, 7, 14, … (mod 400), then point 123 again.
    let mut order: Vec<_> = (0..n).map(|i| at(i * 7 % n, temp(i * 7 % n))).collect();
    order.push(at(123, Some(-0.0)));
    let mut expected = BTreeMap::new();
    for p in &order {
        expected.insert(p.event_time, p.clone());
    }
    for chunk in order.chunks(101) {
        store
            .apply(ProjectionBatch {
                history: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .expect("apply");
    }
    let bits = |points: &[HistoryPoint]| {
        points
            .iter()
            .map(|p| {
                let temp = p.temperature_c.map(f64::to_bits);
                (p.event_time, p.received_time, temp)
            })
            .collect::<Vec<_>>()
    };
    let minute = (t0 / 60_000 + 2) * 60_000;
    for (from, to, limit) in [
        (i64::MIN, i64::MAX, 1_000),
        (t0 + 61_000, t0 + 185_500, 1_000),
        (minute, minute + 60_000, 1_000),
        (minute - 1, minute + 1, 1_000),
        (t0 + 50_000, i64::MAX, 7),
    ] {
        let want: Vec<_> = expected
            .range(from..to)
            .map(|(_, p)| p.clone())
            .take(limit)
            .collect();
        let got = store
            .history("d1", "p1", from, to, limit)
            .await
            .expect("history");
        assert_eq!(
            bits(&got),
            bits(&want),
            "window {from}..{to}, limit {limit}"
        );
        assert!(
            got.iter()
                .all(|p| p.device_id == "d1" && p.probe_id == "p1")
        );
    }
}

/// History summarised in steps holds exactly the stored points of the range, of that probe
/// alone: the steps equal the points read one by one and summarised, for steps shorter and
/// longer than the store's own buckets, ranges cutting through steps, and a limit.
pub async fn history_steps_summarise_the_points_of_their_range(backend: &impl Backend) {
    let store = backend.open().await;
    let t0 = 1_790_000_000_000 - 41_777;
    let point = |probe: &str, i: i64| HistoryPoint {
        device_id: "d1".into(),
        probe_id: probe.into(),
        event_time: t0 + i * 1_499,
        received_time: t0 + i * 1_499 + 25,
        temperature_c: (i % 23 != 0).then(|| 30.0 + i as f64 / 3.0),
    };
    // Neighbours that must not leak in: another probe of the device, the same probe id on
    // another device.
    let mut history: Vec<_> = (0..1_200).map(|i| point("p1", i)).collect();
    history.extend((0..50).map(|i| point("p10", i)));
    history.extend((0..50).map(|i| HistoryPoint {
        device_id: "d10".into(),
        ..point("p1", i)
    }));
    store
        .apply(ProjectionBatch {
            history,
            ..Default::default()
        })
        .await
        .expect("apply");
    let end = t0 + 1_200 * 1_499;
    for (from, to, step, limit) in [
        (i64::MIN, i64::MAX, 60_000, 10_000),
        (t0 + 30_001, end - 90_000, 60_000, 10_000),
        (t0 + 30_001, end - 90_000, 600_000, 10_000),
        (t0, end, 7_000, 10_000),
        // Both ends on a point: the first is in, the last is out.
        (t0 + 100 * 1_499, t0 + 700 * 1_499, 60_000, 10_000),
        (t0, end, 60_000, 3),
        (end, end + 1, 60_000, 10),
    ] {
        let points = store
            .history("d1", "p1", from, to, usize::MAX)
            .await
            .expect("history");
        let mut want = crate::Downsampler::new(step, limit);
        for p in &points {
            if !want.push(p.event_time, p.temperature_c) {
                break;
            }
        }
        let want = want.finish();
        let got = store
            .history_steps("d1", "p1", from, to, step, limit)
            .await
            .expect("history steps");
        assert_eq!(got, want, "window {from}..{to}, step {step}, limit {limit}");
        let readings: u32 = got.iter().map(|s| s.readings).sum();
        if limit == 10_000 {
            assert_eq!(readings as usize, points.len(), "every point counted once");
        }
    }
}

/// State and applied positions are durable: a reopened store has them.
pub async fn state_and_positions_survive_reopen(backend: &impl Backend) {
    {
        let store = backend.open().await;
        store
            .apply(ProjectionBatch {
                state: vec![
                    ("trend/d1/p1".into(), vec![1, 2]),
                    ("trend/d1/p2".into(), vec![3]),
                ],
                applied: vec![
                    ("probe.readings".into(), 0, 3),
                    ("probe.readings".into(), 2, 7),
                    ("other".into(), 0, 1),
                ],
                ..Default::default()
            })
            .await
            .expect("apply");
        store
            .apply(ProjectionBatch {
                state: vec![("trend/d1/p1".into(), vec![9])],
                applied: vec![("probe.readings".into(), 0, 4)],
                ..Default::default()
            })
            .await
            .expect("apply");
    }
    let store = backend.open().await;
    assert_eq!(
        store.state("trend/d1/p1").await.expect("state"),
        Some(vec![9])
    );
    assert_eq!(
        store.state("trend/d1/p2").await.expect("state"),
        Some(vec![3])
    );
    assert_eq!(
        store
            .applied_positions("probe.readings")
            .await
            .expect("applied"),
        BTreeMap::from([(0, 4), (2, 7)])
    );
}

/// A new store answers every query with nothing, not an error.
pub async fn an_empty_store_answers_empty(backend: &impl Backend) {
    let store = backend.open().await;
    assert!(store.devices().await.expect("devices").is_empty());
    assert!(store.device_infos().await.expect("infos").is_empty());
    assert!(store.cooks(None).await.expect("cooks").is_empty());
    assert_eq!(store.cook("c").await.expect("cook"), None);
    assert!(store.latest("x").await.expect("latest").is_empty());
    assert!(
        store
            .applied_positions("t")
            .await
            .expect("applied")
            .is_empty()
    );
    assert_eq!(store.state("k").await.expect("state"), None);
    assert!(
        store
            .history("d", "p", 0, i64::MAX, 10)
            .await
            .expect("history")
            .is_empty()
    );
    assert!(store.dump().await.expect("dump").is_empty());
}

/// A device description is replaced whole by a later batch (fields cleared there stay
/// cleared), descriptions list in device order, and they survive a reopen.
pub async fn device_descriptions_are_replaced_whole_and_survive_reopen(backend: &impl Backend) {
    let mut first = DeviceInfo::new("d2");
    first.name = Some("Kamado".into());
    first.battery_percent = Some(80.0);
    first.targets_c.insert("meat-1".into(), 93.0);
    let other = DeviceInfo::new("d1");
    {
        let store = backend.open().await;
        store
            .apply(ProjectionBatch {
                devices: vec![first.clone(), other.clone()],
                ..Default::default()
            })
            .await
            .expect("apply");
        let mut second = first.clone();
        second.battery_percent = None;
        second.targets_c.clear();
        second.removed_time = Some(5);
        store
            .apply(ProjectionBatch {
                devices: vec![second],
                ..Default::default()
            })
            .await
            .expect("apply");
    }
    let store = backend.open().await;
    let infos = store.device_infos().await.expect("infos");
    let ids: Vec<&str> = infos.iter().map(|i| i.device_id.as_str()).collect();
    assert_eq!(ids, ["d1", "d2"]);
    assert_eq!(infos[0], other);
    assert_eq!(infos[1].name.as_deref(), Some("Kamado"));
    assert_eq!(infos[1].battery_percent, None);
    assert!(infos[1].targets_c.is_empty());
    assert!(infos[1].is_removed());
    assert_eq!(
        store.device_info("d2").await.expect("info").as_ref(),
        Some(&infos[1])
    );
    assert_eq!(store.device_info("d9").await.expect("info"), None);
}

fn cook(id: &str, device: &str, started: i64) -> CookSession {
    CookSession {
        cook_id: id.into(),
        device_id: device.into(),
        what: Some("brisket".into()),
        started_time: started,
        ended_time: None,
        targets_c: BTreeMap::from([("meat-1".into(), 93.0)]),
        pit_min_c: Some(105.0),
        pit_max_c: Some(125.0),
        notes: Vec::new(),
        meat: Some("brisket".into()),
        weight_kg: Some(5.5),
        serve_at_ms: Some(started + 14 * 3_600_000),
        rest_min: Some(60.0),
    }
}

/// Cooks list newest first, filter by device, are replaced whole by id, and survive a reopen.
pub async fn cooks_list_newest_first_by_device_and_are_replaced_whole(backend: &impl Backend) {
    {
        let store = backend.open().await;
        store
            .apply(ProjectionBatch {
                cooks: vec![
                    cook("a", "d1", 10),
                    cook("b", "d1", 30),
                    cook("c", "d2", 20),
                ],
                ..Default::default()
            })
            .await
            .expect("apply");
        let mut ended = cook("a", "d1", 10);
        ended.ended_time = Some(15);
        ended.notes.push(CookNote {
            time: 12,
            text: "wrapped".into(),
        });
        store
            .apply(ProjectionBatch {
                cooks: vec![ended],
                ..Default::default()
            })
            .await
            .expect("apply");
    }
    let store = backend.open().await;
    let all: Vec<String> = store
        .cooks(None)
        .await
        .expect("cooks")
        .into_iter()
        .map(|c| c.cook_id)
        .collect();
    assert_eq!(all, ["b", "c", "a"]);
    let d1: Vec<String> = store
        .cooks(Some("d1"))
        .await
        .expect("cooks")
        .into_iter()
        .map(|c| c.cook_id)
        .collect();
    assert_eq!(d1, ["b", "a"]);
    let a = store.cook("a").await.expect("cook").expect("present");
    assert_eq!((a.ended_time, a.notes.len()), (Some(15), 1));
}

fn alert(id: &str, device: &str, raised: i64, cleared: Option<i64>) -> AlertRecord {
    AlertRecord {
        alert_id: id.into(),
        rule_id: id.split('#').next().unwrap_or(id).into(),
        kind: "above".into(),
        device_id: device.into(),
        probe_id: Some("p".into()),
        cook_id: None,
        raised_time: raised,
        last_raised_time: raised,
        repeats: 0,
        value: Some(101.0),
        threshold: Some(100.0),
        message: "hot".into(),
        cleared_time: cleared,
        cleared_reason: cleared.map(|_| "back to normal".into()),
        acknowledged_time: None,
        snoozed_until: None,
    }
}

fn rule(id: &str, device: &str) -> AlertRuleRecord {
    AlertRuleRecord {
        rule_id: id.into(),
        device_id: device.into(),
        probe_id: None,
        cook_id: None,
        kind: "battery_below".into(),
        threshold: Some(20.0),
        low: None,
        high: None,
        for_s: 0.0,
        hysteresis: 1.0,
        repeat_every_s: None,
        label: None,
        set_time: 1,
    }
}

/// Predictions are one per probe (replaced), alert episodes list newest first and filter by
/// device and activity, rules are replaced and removed by id; all survive a reopen.
pub async fn predictions_alerts_and_rules_are_kept_listed_and_removed(backend: &impl Backend) {
    let prediction = |device: &str, t: i64| ProbePrediction {
        device_id: device.into(),
        probe_id: "meat".into(),
        cook_id: None,
        event_time: t,
        temperature_c: 60.0,
        target_c: 93.0,
        pit_c: Some(120.0),
        remaining_s: Some(3_600.0),
        low_s: Some(3_000.0),
        high_s: None,
        done_at: Some(t + 3_600_000),
        stall: t > 5,
        phase: "heating".into(),
        pit_phase: "holding".into(),
        based_on: Some("based on your last 2 briskets".into()),
        method: "newton".into(),
    };
    {
        let store = backend.open().await;
        store
            .apply(ProjectionBatch {
                predictions: vec![prediction("d1", 1), prediction("d2", 2)],
                alerts: vec![
                    alert("r#1", "d1", 10, Some(20)),
                    alert("r#2", "d1", 30, None),
                ],
                alert_rules: vec![rule("x", "d1"), rule("y", "d2")],
                ..Default::default()
            })
            .await
            .expect("apply");
        store
            .apply(ProjectionBatch {
                predictions: vec![prediction("d1", 9)],
                alerts: vec![alert("s#1", "d2", 40, None)],
                removed_rules: vec!["y".into()],
                ..Default::default()
            })
            .await
            .expect("apply");
    }
    let store = backend.open().await;
    let d1 = store.predictions(Some("d1")).await.expect("predictions");
    assert_eq!(d1, [prediction("d1", 9)]);
    assert_eq!(store.predictions(None).await.expect("all").len(), 2);
    let ids = |v: Vec<AlertRecord>| v.into_iter().map(|a| a.alert_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.alerts(None, false).await.expect("alerts")),
        ["s#1", "r#2", "r#1"]
    );
    assert_eq!(
        ids(store.alerts(Some("d1"), true).await.expect("alerts")),
        ["r#2"]
    );
    assert_eq!(
        store
            .alert("r#1")
            .await
            .expect("alert")
            .map(|a| a.cleared_time),
        Some(Some(20))
    );
    let rules: Vec<String> = store
        .alert_rules(None)
        .await
        .expect("rules")
        .into_iter()
        .map(|r| r.rule_id)
        .collect();
    assert_eq!(rules, ["x"]);
}
