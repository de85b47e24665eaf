//! End-to-end: `emberline up`'s simulated cook, sped up, through the real processor and
//! gateway — the prediction converges on the simulator's finish, the stall is flagged while
//! it lasts, and the target-reached alert is raised once; alert rules, acknowledgements and
//! snoozes through the API.

mod support;

use emberline_proto::v1::alert_service_client::AlertServiceClient;
use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::prediction_service_client::PredictionServiceClient;
use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use emberline_proto::v1::{
    AcknowledgeAlertRequest, AlertEvent, AlertRule, GetHistoryRequest, ListAlertsRequest,
    ListCooksRequest, ListPredictionsRequest, Prediction, SetAlertRuleRequest, SnoozeAlertRequest,
    StartFrom, SubscribeAlertsRequest, SubscribePredictionsRequest,
};
use support::{PATIENCE, Up, free_port};
use tokio_stream::StreamExt;
use tonic::Code;

const TARGET_C: f64 = 93.0;
/// Simulated time after the target that is watched for a second raise, ms.
const WATCH_AFTER_DONE_MS: i64 = 45 * 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_cook_converges_flags_its_stall_and_raises_target_reached_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One grill with a pit and one food probe; 10 s readings at 1200× (a 7-hour cook in about
    // 20 s); the processor folds them as they come.
    let up = Up::start_with(
        dir.path(),
        free_port(),
        &[
            ("EMBERLINE__SIMULATOR__START_COOK", "true"),
            ("EMBERLINE__SIMULATOR__PROBES", "2"),
            ("EMBERLINE__SIMULATOR__INTERVAL_MS", "10000"),
            ("EMBERLINE__SIMULATOR__SPEEDUP", "1200"),
        ],
    );
    let channel = up.channel().await;
    let mut predictions = PredictionServiceClient::new(channel.clone());
    let mut alerts = AlertServiceClient::new(channel.clone());
    let mut stream = predictions
        .subscribe_predictions(SubscribePredictionsRequest {
            device_id: "sim-1".into(),
            start: StartFrom::Earliest as i32,
            ..Default::default()
        })
        .await
        .expect("subscribe predictions")
        .into_inner();
    let mut alert_stream = alerts
        .subscribe_alerts(SubscribeAlertsRequest {
            device_id: "sim-1".into(),
            start: StartFrom::Earliest as i32,
            ..Default::default()
        })
        .await
        .expect("subscribe alerts")
        .into_inner();
    // Predictions until 45 simulated minutes after the food reached its target.
    let mut seen: Vec<Prediction> = Vec::new();
    let mut reached_at: Option<i64> = None;
    tokio::time::timeout(PATIENCE * 3, async {
        while let Some(event) = stream.next().await {
            let p = event
                .expect("prediction event")
                .prediction
                .expect("prediction");
            assert_eq!((p.probe_id.as_str(), p.target_c), ("meat-1", TARGET_C));
            if p.phase == "done" {
                reached_at.get_or_insert(p.event_time_ms);
            }
            let last = p.event_time_ms;
            seen.push(p);
            if reached_at.is_some_and(|t| last >= t + WATCH_AFTER_DONE_MS) {
                return;
            }
        }
        panic!("the prediction stream ended");
    })
    .await
    .expect("the simulated cook did not finish in time");

    // The simulator's truth: the first reading at or above the target.
    let first = seen.first().expect("predictions").event_time_ms;
    let last = seen.last().expect("predictions").event_time_ms;
    // History is the trend processor's, which may lag the cook processor's predictions:
    // wait until it covers the time the food was done.
    let done_at = reached_at.expect("done");
    let mut readings = ReadingServiceClient::new(channel.clone());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let history = loop {
        let history = readings
            .get_history(GetHistoryRequest {
                device_id: "sim-1".into(),
                probe_id: "meat-1".into(),
                from_ms: first - 3_600_000,
                to_ms: last,
                ..Default::default()
            })
            .await
            .expect("history")
            .into_inner();
        if history
            .points
            .last()
            .is_some_and(|p| p.event_time_ms >= done_at)
        {
            break history;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history never reached the done time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let truth = history
        .points
        .iter()
        .find(|p| p.temperature_c.is_some_and(|t| t >= TARGET_C))
        .expect("the food reached its target")
        .event_time_ms;
    let cook_start = history.points.first().expect("readings").event_time_ms;

    // Converges: over the last quarter of the cook every estimate of the done time is within
    // 15 % of the time then left (plus ten minutes), and the error shrinks from the first
    // quarter to the last.
    let span = (truth - cook_start) as f64;
    let error = |p: &Prediction| {
        p.done_at_ms
            .map_or(f64::INFINITY, |d| (d - truth).abs() as f64)
    };
    let quarter = |from: f64, to: f64| -> Vec<&Prediction> {
        seen.iter()
            .filter(|p| {
                let at = (p.event_time_ms - cook_start) as f64 / span;
                at >= from && at < to
            })
            .collect()
    };
    let late = quarter(0.75, 1.0);
    assert!(late.len() > 10, "only {} late predictions", late.len());
    for p in &late {
        let left = (truth - p.event_time_ms) as f64;
        assert!(
            error(p) <= 0.15 * left + 600_000.0,
            "at {:.2} of the cook the done time was off by {:.0} min with {:.0} min left: {p:?}",
            (p.event_time_ms - cook_start) as f64 / span,
            error(p) / 60_000.0,
            left / 60_000.0
        );
    }
    let mean =
        |v: &[&Prediction]| v.iter().map(|p| error(p).min(1e9)).sum::<f64>() / v.len() as f64;
    let early = quarter(0.0, 0.25);
    assert!(!early.is_empty());
    assert!(
        mean(&late) < mean(&early),
        "{} vs {}",
        mean(&late),
        mean(&early)
    );

    // The stall: flagged for a long stretch, only while the food sat in the evaporative band,
    // and no longer once the food climbed out of it.
    let stalled: Vec<&Prediction> = seen.iter().filter(|p| p.stall).collect();
    assert!(
        stalled.len() > 30,
        "stall flagged in {} predictions",
        stalled.len()
    );
    for p in &stalled {
        assert!(
            (55.0..82.0).contains(&p.temperature_c) && p.phase == "stall",
            "stall flagged at {:.1} °C in phase {}",
            p.temperature_c,
            p.phase
        );
    }
    let stall_span = stalled.last().map_or(0, |p| p.event_time_ms)
        - stalled.first().map_or(0, |p| p.event_time_ms);
    assert!(stall_span > 3_600_000, "stall lasted {stall_span} ms");
    assert!(seen.iter().any(|p| !p.stall && p.temperature_c > 82.0));

    // Target reached: raised exactly once over the cook and the 45 minutes after it.
    // The stream can be ahead of the projections (outputs are appended before the batch that
    // projects them): wait until the listing holds the raise as well.
    let mut raised: Vec<AlertEvent> = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let alerts_now = loop {
        let listed = alerts
            .list_alerts(ListAlertsRequest {
                device_id: "sim-1".into(),
                active_only: false,
            })
            .await
            .expect("list alerts")
            .into_inner()
            .alerts;
        if listed.iter().any(|a| a.kind == "target_reached") {
            break listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "target reached never listed: {listed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let expected = alerts_now.len();
    while raised.len() < expected {
        let event = tokio::time::timeout(PATIENCE, alert_stream.next())
            .await
            .expect("alert event")
            .expect("stream open")
            .expect("alert");
        if event.raised {
            raised.push(event);
        }
    }
    let target: Vec<&AlertEvent> = raised
        .iter()
        .filter(|a| a.kind == "target_reached")
        .collect();
    assert_eq!(target.len(), 1, "{raised:?}");
    assert_eq!(
        (target[0].probe_id.as_deref(), target[0].repeat),
        (Some("meat-1"), 0)
    );
    assert!(target[0].value.is_some_and(|v| v >= TARGET_C));
    let listed = alerts_now
        .iter()
        .find(|a| a.alert_id == target[0].alert_id)
        .expect("listed");
    assert!(listed.active && listed.message.contains("reached its target"));

    // Acknowledge it; acknowledging an unknown alert is refused.
    alerts
        .acknowledge_alert(AcknowledgeAlertRequest {
            alert_id: target[0].alert_id.clone(),
        })
        .await
        .expect("acknowledge");
    let err = alerts
        .acknowledge_alert(AcknowledgeAlertRequest {
            alert_id: "nope#1".into(),
        })
        .await
        .expect_err("unknown alert");
    assert_eq!(err.code(), Code::NotFound);
    let err = alerts
        .snooze_alert(SnoozeAlertRequest {
            alert_id: target[0].alert_id.clone(),
            minutes: 0,
        })
        .await
        .expect_err("zero-minute snooze");
    assert_eq!(err.code(), Code::InvalidArgument);

    // The projections hold the latest prediction and the cook the simulator started.
    // (They may trail the streams by a batch: wait for them as a client would.)
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let latest = loop {
        let latest = predictions
            .list_predictions(ListPredictionsRequest {
                device_id: "sim-1".into(),
            })
            .await
            .expect("list predictions")
            .into_inner()
            .predictions;
        if latest.iter().any(|p| p.remaining_s == Some(0.0)) {
            break latest;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the done prediction was never listed: {latest:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].remaining_s, Some(0.0));
    let mut cook_client = CookServiceClient::new(channel);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let cooks = loop {
        let cooks = cook_client
            .list_cooks(ListCooksRequest {
                device_id: "sim-1".into(),
            })
            .await
            .expect("cooks")
            .into_inner()
            .cooks;
        if !cooks.is_empty() {
            break cooks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the simulated cook was never listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(cooks.len(), 1);
    assert_eq!(cooks[0].targets_c.get("meat-1"), Some(&TARGET_C));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_rule_raises_on_its_probe_and_bad_rules_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start(dir.path(), free_port());
    let mut alerts = AlertServiceClient::new(up.channel().await);
    // A rule names a device Emberline must know: wait for the simulator's registration.
    up.wait_for_device("sim-1").await;
    let mut stream = alerts
        .subscribe_alerts(SubscribeAlertsRequest {
            device_id: "sim-1".into(),
            start: StartFrom::Earliest as i32,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    // The pit of the (real-time) simulator sits near 120 °C: above 50 °C holds at once.
    let rule = AlertRule {
        device_id: "sim-1".into(),
        probe_id: Some("pit".into()),
        kind: "above".into(),
        threshold: Some(50.0),
        label: Some("Pit is hot".into()),
        ..Default::default()
    };
    let rule_id = alerts
        .set_alert_rule(SetAlertRuleRequest {
            rule: Some(rule.clone()),
        })
        .await
        .expect("set rule")
        .into_inner()
        .rule_id;
    let event = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("an alert in time")
        .expect("open")
        .expect("event");
    assert!(event.raised);
    assert_eq!(event.rule_id, rule_id);
    assert_eq!(event.alert_id, format!("{rule_id}#1"));
    assert!(
        event.message.starts_with("Pit is hot: "),
        "{}",
        event.message
    );
    assert!(event.value.is_some_and(|v| v > 50.0));

    for (bad, what) in [
        (
            AlertRule {
                kind: "warmer".into(),
                ..rule.clone()
            },
            "unknown kind",
        ),
        (
            AlertRule {
                probe_id: None,
                ..rule.clone()
            },
            "probe_id",
        ),
        (
            AlertRule {
                threshold: None,
                ..rule.clone()
            },
            "threshold",
        ),
    ] {
        let err = alerts
            .set_alert_rule(SetAlertRuleRequest { rule: Some(bad) })
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(what), "{}", err.message());
    }
    let err = alerts
        .set_alert_rule(SetAlertRuleRequest {
            rule: Some(AlertRule {
                device_id: "nope".into(),
                ..rule
            }),
        })
        .await
        .expect_err("unknown device");
    assert_eq!(err.code(), Code::NotFound);
}
