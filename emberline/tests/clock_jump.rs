//! The wall clock jumps an hour forward, then two hours back, then returns, in the middle of
//! a cook, while `emberline up` runs the simulator (its clock moved through
//! `EMBERLINE_CLOCK_OFFSET_FILE`). Beside it runs a control `up` with the same configuration
//! and the same commands on an unmoved clock. Afterwards:
//!
//! * no alert storm: the jumped run raised no more alerts than the control, and no
//!   "offline" or "disconnected" alert (the device reported all along);
//! * no negative duration in any answer: cooks end at or after they start, alerts clear at
//!   or after they are raised, time to target and its interval are never negative;
//! * predictions recover: after the clock is back, the meat probes are predicted again, with
//!   a time to target within a day.
#![allow(clippy::print_stderr)]

mod support;

use std::path::Path;
use std::time::Duration;

use emberline_log::{EventLog, topics};
use emberline_proto::v1::alert_service_client::AlertServiceClient;
use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::{
    AlertRule, EndCookRequest, GetLatestRequest, ListCooksRequest, SetAlertRuleRequest,
    StartCookRequest,
};
use emberline_schemas::events::AlertRaised;
use support::answers::{Answers, answers};
use support::{PATIENCE, Up, eventually, free_port};

const HOUR_MS: i64 = 3_600_000;

const CONFIG: &str = r#"
[[sources]]
kind = "simulator"
devices = 1
probes = 3
interval_ms = 1000
speedup = 10
cook_target_c = 93.0

[processor]
tick_interval_s = 1
"#;

/// The rules both runs get: a value rule that holds all along, and the time-based ones a
/// clock jump could set off.
fn rules() -> Vec<AlertRule> {
    vec![
        AlertRule {
            device_id: "sim-1".into(),
            probe_id: Some("pit".into()),
            kind: "above".into(),
            threshold: Some(50.0),
            ..Default::default()
        },
        AlertRule {
            device_id: "sim-1".into(),
            kind: "device_offline".into(),
            threshold: Some(120.0),
            ..Default::default()
        },
        AlertRule {
            device_id: "sim-1".into(),
            probe_id: Some("meat-1".into()),
            kind: "probe_disconnected".into(),
            threshold: Some(600.0),
            ..Default::default()
        },
    ]
}

/// The newest receive time among sim-1's probes, as the gateway answers it.
async fn received(up: &Up) -> Result<i64, String> {
    let mut devices = DeviceServiceClient::new(up.channel().await);
    let probes = devices
        .get_latest(GetLatestRequest {
            device_id: "sim-1".into(),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .probes;
    probes
        .iter()
        .map(|p| p.received_time_ms)
        .max()
        .ok_or_else(|| "no readings yet".to_owned())
}

/// Moves the jumped run's clock by `offset_ms` and waits until its readings carry it.
async fn jump(file: &Path, offset_ms: i64, up: &Up, control: &Up) {
    std::fs::write(file, offset_ms.to_string()).expect("offset file");
    eventually(
        &format!("readings received at the clock moved by {offset_ms} ms"),
        PATIENCE,
        Duration::from_millis(100),
        || async {
            let (moved, real) = (received(up).await?, received(control).await?);
            // Readings are received every 100 ms: within 5 s of the control's plus the offset.
            if (moved - real - offset_ms).abs() < 5_000 {
                Ok(())
            } else {
                Err(format!("received {moved}, control {real}"))
            }
        },
    )
    .await;
}

/// Ends every cook in progress (a device has one at a time), then starts one.
async fn start_cook(up: &Up, what: &str, targets_c: &[(&str, f64)]) -> String {
    let mut cooks = CookServiceClient::new(up.channel().await);
    let open: Vec<String> = cooks
        .list_cooks(ListCooksRequest::default())
        .await
        .expect("cooks")
        .into_inner()
        .cooks
        .into_iter()
        .filter(|c| c.ended_ms.is_none())
        .map(|c| c.cook_id)
        .collect();
    for cook_id in open {
        cooks
            .end_cook(EndCookRequest { cook_id })
            .await
            .expect("end a cook");
    }
    // The end is applied through the log: retry until the device is free.
    eventually(
        "a cook started",
        PATIENCE,
        Duration::from_millis(100),
        || {
            let mut cooks = cooks.clone();
            async move {
                cooks
                    .start_cook(StartCookRequest {
                        device_id: "sim-1".into(),
                        what: what.into(),
                        targets_c: targets_c
                            .iter()
                            .map(|(p, t)| ((*p).to_owned(), *t))
                            .collect(),
                        pit_min_c: None,
                        pit_max_c: None,
                        meat: None,
                        weight_kg: None,
                        serve_at_ms: None,
                        rest_min: None,
                    })
                    .await
                    .map(|r| r.into_inner().cook_id)
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await
}

/// Alerts raised (episodes and repeats) in the log of `dir`, once `up` is gone, each as
/// "kind rule#episode repeat n (probe, cook)" so a failure says which ones differ.
async fn raised(dir: &Path) -> Vec<String> {
    let (log, codec) = emberline_ingest::testing::embedded_log(dir, 4)
        .await
        .expect("log");
    let mut alerts = Vec::new();
    for p in 0..log.partitions(topics::ALERTS).await.expect("partitions") {
        for r in emberline_log::conformance::read_to_end(log.as_ref(), topics::ALERTS, p, 0)
            .await
            .expect("read")
        {
            if codec.kind_of(&r.value).ok().flatten()
                == Some(emberline_schemas::EventKind::AlertRaised)
            {
                let a: AlertRaised = codec.decode(&r.value).await.expect("an alert raised");
                alerts.push(format!(
                    "{} {} repeat {} ({:?}, {:?}) at {}",
                    a.kind, a.alert_id, a.repeat, a.probe_id, a.cook_id, a.event_time
                ));
            }
        }
    }
    alerts
}

fn no_negative_durations(what: &str, a: &Answers) {
    for c in &a.raw_cooks {
        if let Some(ended) = c.ended_ms {
            assert!(
                ended >= c.started_ms,
                "{what}: cook {} ends {} ms before it starts",
                c.cook_id,
                c.started_ms - ended
            );
        }
    }
    for al in &a.raw_alerts {
        assert!(al.last_raised_ms >= al.raised_ms, "{what}: {al:?}");
        if let Some(cleared) = al.cleared_ms {
            assert!(
                cleared >= al.raised_ms,
                "{what}: cleared before raised: {al:?}"
            );
        }
    }
    for p in &a.raw_predictions {
        for (name, v) in [
            ("remaining", p.remaining_s),
            ("low", p.low_s),
            ("high", p.high_s),
        ] {
            assert!(v.is_none_or(|s| s >= 0.0), "{what}: negative {name}: {p:?}");
        }
        if let Some(done) = p.done_at_ms {
            assert!(done >= p.event_time_ms, "{what}: done before now: {p:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jumping_an_hour_each_way_mid_cook_raises_no_storm_and_no_negative_durations() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("emberline.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let offset = root.path().join("clock-offset");
    std::fs::write(&offset, "0").expect("offset file");
    let (config, offset_text) = (config.display().to_string(), offset.display().to_string());
    let (jumped_dir, control_dir) = (root.path().join("jumped"), root.path().join("control"));
    let jumped = Up::start_with(
        &jumped_dir,
        free_port(),
        &[
            ("EMBERLINE_CONFIG", config.as_str()),
            ("EMBERLINE_CLOCK_OFFSET_FILE", offset_text.as_str()),
        ],
    );
    let control = Up::start_with(
        &control_dir,
        free_port(),
        &[("EMBERLINE_CONFIG", config.as_str())],
    );
    for up in [&jumped, &control] {
        up.wait_for_device("sim-1").await;
        let mut alerts = AlertServiceClient::new(up.channel().await);
        for rule in rules() {
            alerts
                .set_alert_rule(SetAlertRuleRequest { rule: Some(rule) })
                .await
                .expect("set rule");
        }
    }
    // Mid-cook: predictions are being made.
    for up in [&jumped, &control] {
        eventually(
            "a prediction",
            PATIENCE,
            Duration::from_millis(200),
            || async {
                let a = answers(up.grpc).await;
                if a.raw_predictions.iter().any(|p| p.remaining_s.is_some()) {
                    Ok(())
                } else {
                    Err(format!("{:?}", a.raw_predictions))
                }
            },
        )
        .await;
    }

    // An hour forward: a new cook starts (by the moved clock), ...
    jump(&offset, HOUR_MS, &jumped, &control).await;
    let mut cook_ids = Vec::new();
    for up in [&jumped, &control] {
        cook_ids.push(start_cook(up, "pork shoulder", &[("meat-1", 93.0), ("meat-2", 90.0)]).await);
    }
    // ... an hour behind the real time (two back), where it ends, ...
    jump(&offset, -HOUR_MS, &jumped, &control).await;
    for (up, id) in [&jumped, &control].into_iter().zip(&cook_ids) {
        CookServiceClient::new(up.channel().await)
            .end_cook(EndCookRequest {
                cook_id: id.clone(),
            })
            .await
            .expect("end the cook");
    }
    // ... and back to the right time, with a third cook on.
    jump(&offset, 0, &jumped, &control).await;
    let mut later = Vec::new();
    for up in [&jumped, &control] {
        later.push(start_cook(up, "ribs", &[("meat-1", 93.0)]).await);
    }

    // Predictions recover: the new cook's probe is predicted, sanely.
    for (up, id) in [&jumped, &control].into_iter().zip(&later) {
        eventually(
            "a prediction for the cook started after the jumps",
            PATIENCE,
            Duration::from_millis(200),
            || async {
                let a = answers(up.grpc).await;
                let p = a
                    .raw_predictions
                    .iter()
                    .find(|p| p.cook_id.as_deref() == Some(id.as_str()) && p.probe_id == "meat-1")
                    .ok_or_else(|| format!("none for {id}: {:?}", a.raw_predictions))?;
                match p.remaining_s {
                    Some(s) if (0.0..=86_400.0).contains(&s) => Ok(()),
                    _ => Err(format!("{p:?}")),
                }
            },
        )
        .await;
    }
    let after = answers(jumped.grpc).await;
    let control_answers = answers(control.grpc).await;
    no_negative_durations("jumped", &after);
    no_negative_durations("control", &control_answers);
    jumped.interrupt();
    control.interrupt();

    let (storm, normal) = (raised(&jumped_dir).await, raised(&control_dir).await);
    eprintln!(
        "MEASURED: alerts raised with the clock jumping: {}, without: {}\njumped: {storm:#?}\ncontrol: {normal:#?}",
        storm.len(),
        normal.len()
    );
    assert!(
        !normal.is_empty(),
        "the control raised no alert: the comparison is empty"
    );
    // The quiet-time rules: the devices reported all along, so the jumps must not set
    // them off (the clock ticks say how far the clock jumped).
    let quiet: Vec<&String> = storm
        .iter()
        .filter(|a| a.starts_with("device_offline") || a.starts_with("probe_disconnected"))
        .collect();
    assert!(quiet.is_empty(), "the jumps read as silence: {quiet:#?}");
    assert!(
        storm.len() <= normal.len(),
        "the clock jumps raised {} alerts, a run without them {}:\njumped: {storm:#?}\ncontrol: {normal:#?}",
        storm.len(),
        normal.len()
    );
}
