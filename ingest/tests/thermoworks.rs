//! The ThermoWorks Cloud adapter, unchanged, against a local server that answers exactly as
//! the protocol reference describes: Firebase web config, Identity Toolkit sign-in and
//! Secure Token refresh, Firestore documents with typed values — plus the failures the
//! real services produce.

use std::collections::BTreeMap;
use std::time::Duration;

use emberline_ingest::cloud::thermoworks::{Thermoworks, ThermoworksConfig};
use emberline_ingest::cloud::{CloudAdapter, CloudError, CloudPoller, Credentials};
use emberline_ingest::testing::embedded_log;
use emberline_ingest::testing::thermoworks::{FakeThermoworks, Fault, node, stamp};
use emberline_ingest::validate::Unit;
use emberline_ingest::{EventSink, run_source};
use emberline_log::{EventLog, conformance::read_to_end, topics};
use emberline_schemas::events::{DeviceStatus, ProbeReading};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NOW: i64 = 1_795_000_000_000;

async fn server() -> FakeThermoworks {
    FakeThermoworks::start("127.0.0.1:0".parse().expect("addr"), "s3cret", NOW)
        .await
        .expect("start")
}

fn config(s: &FakeThermoworks, password: &str) -> ThermoworksConfig {
    ThermoworksConfig {
        credentials: Credentials::with_password("cook@example.com", password),
        base_url: Some(s.url.clone()),
        poll_interval_s: 5,
        // The default request timeout: a local answer can be slow on a loaded machine. Only
        // the timeout check uses a short one.
        ..ThermoworksConfig::default()
    }
}

#[tokio::test]
async fn a_poll_signs_in_reads_the_account_devices_and_channels_and_emits_only_new_readings() {
    let s = server().await;
    let mut tw = Thermoworks::new(config(&s, "s3cret")).expect("config");
    let out = tw.poll(NOW + 1_000).await.expect("poll");
    // Channels 1 and 2 are temperatures; 3 is humidity; 4 is missing and ends the list.
    let mut readings: Vec<_> = out
        .readings
        .iter()
        .map(|r| (r.probe_id.as_str(), r.value, r.unit, r.device_time_ms))
        .collect();
    readings.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        readings,
        [
            ("1", Some(225.5), Unit::F, Some(NOW)),
            ("2", Some(71.25), Unit::C, Some(NOW))
        ]
    );
    assert_eq!(
        s.calls("channel"),
        4,
        "channels 1–3 and the missing 4th, no more"
    );
    let reg = &out.registrations[0];
    assert_eq!(
        (
            reg.device_id.as_str(),
            reg.name.as_str(),
            reg.model.as_deref()
        ),
        ("A1", "Back yard Node", Some("node"))
    );
    assert_eq!(
        reg.probe_labels,
        BTreeMap::from([
            ("1".to_owned(), "Pit".to_owned()),
            ("2".to_owned(), "Brisket".to_owned())
        ])
    );
    let status: &DeviceStatus = &out.statuses[0];
    assert_eq!(
        (
            status.battery_percent,
            status.signal_dbm,
            status.firmware.as_deref()
        ),
        (Some(87.0), Some(-61), Some("1.2.3"))
    );
    assert_eq!(
        status
            .attributes
            .get("thermoworks.transmit_interval_s")
            .map(String::as_str),
        Some("600")
    );
    assert_eq!(
        status
            .attributes
            .get("thermoworks.alarm_high.1")
            .map(String::as_str),
        Some("275 F")
    );
    assert!(
        !status.attributes.contains_key("thermoworks.alarm_low.1"),
        "a disabled alarm is not a threshold"
    );

    // Nothing new: no readings, no new registration, no new sign-in.
    let again = tw.poll(NOW + 2_000).await.expect("poll");
    assert!(again.readings.is_empty() && again.registrations.is_empty());
    // Channel 2 uploads again.
    s.with(|c| {
        let ch = c
            .devices
            .get_mut("A1")
            .expect("device")
            .1
            .get_mut(&2)
            .expect("channel");
        ch["value"] = json!(72.0);
        ch["lastTelemetrySaved"] = json!(stamp(NOW + 600_000));
    });
    let third = tw.poll(NOW + 700_000).await.expect("poll");
    assert_eq!(third.readings.len(), 1);
    assert_eq!(
        (third.readings[0].probe_id.as_str(), third.readings[0].value),
        ("2", Some(72.0))
    );
    assert_eq!(
        (
            s.calls("webConfig"),
            s.calls("signIn"),
            s.calls("user"),
            s.calls("runQuery")
        ),
        (1, 1, 1, 3)
    );
}

#[tokio::test]
async fn expired_tokens_are_refreshed_and_a_refused_refresh_signs_in_again() {
    let s = server().await;
    let mut tw = Thermoworks::new(config(&s, "s3cret")).expect("config");
    tw.poll(NOW).await.expect("poll");
    // The id token expires server-side: one 401, one refresh, the poll succeeds.
    s.with(|c| c.id_tokens.clear());
    tw.poll(NOW + 1).await.expect("poll after a refresh");
    assert_eq!((s.calls("refresh"), s.calls("signIn")), (1, 1));
    // Both tokens are revoked: the refresh is refused, a new sign-in follows.
    s.with(|c| {
        c.id_tokens.clear();
        c.refresh_tokens.clear();
    });
    tw.poll(NOW + 2).await.expect("poll after signing in again");
    assert_eq!((s.calls("refresh"), s.calls("signIn")), (2, 2));
    // Tokens that expire at once are refreshed before each use, never after a 401.
    s.with(|c| {
        c.expires_in = 0;
        c.id_tokens.clear();
    });
    tw.poll(NOW + 3).await.expect("poll");
    let (refreshes, rejected) = (s.calls("refresh"), s.calls("unauthorized"));
    tw.poll(NOW + 4).await.expect("poll");
    assert!(s.calls("refresh") > refreshes, "refreshed ahead of expiry");
    assert_eq!(
        s.calls("unauthorized"),
        rejected,
        "no request was spent on an expired token"
    );
    assert_eq!(s.calls("signIn"), 2);
}

#[tokio::test]
async fn failures_are_typed_and_never_panic() {
    let s = server().await;
    let mut bad = Thermoworks::new(config(&s, "wrong")).expect("config");
    match bad.poll(NOW).await {
        Err(CloudError::CredentialsRejected(code)) => assert_eq!(code, "INVALID_PASSWORD"),
        other => panic!("{other:?}"),
    }
    let mut tw = Thermoworks::new(config(&s, "s3cret")).expect("config");
    tw.poll(NOW).await.expect("poll");
    type Check = fn(&CloudError) -> bool;
    let cases: Vec<(Fault, Check)> = vec![
        (
            Fault::Status(500),
            |e| matches!(e, CloudError::Upstream(m) if m.contains("500")),
        ),
        (Fault::Status(503), |e| matches!(e, CloudError::Upstream(_))),
        (
            Fault::TooMany(Some(7)),
            |e| matches!(e, CloudError::RateLimited { retry_after: Some(d) } if d.as_secs() == 7),
        ),
        (Fault::TooMany(None), |e| {
            matches!(e, CloudError::RateLimited { retry_after: None })
        }),
        (
            Fault::Truncated,
            |e| matches!(e, CloudError::Malformed { body, .. } if body.starts_with(b"[{")),
        ),
        (Fault::NotJson, |e| {
            matches!(e, CloudError::Malformed { .. })
        }),
    ];
    for (fault, expected) in cases {
        s.with(|c| c.faults.push_back(fault.clone()));
        // The fault hits the first Firestore call of the poll (the devices query).
        let err = tw.poll(NOW + 1).await.expect_err("a fault");
        assert!(expected(&err), "{fault:?} gave {err:?}");
    }
    tw.poll(NOW + 2).await.expect("recovers");
    // A slow answer times out: a fresh adapter with a 1 s request timeout against a 3 s
    // answer. (Should a loaded machine delay even its sign-in past 1 s, that too is a
    // request that timed out.)
    let mut short = Thermoworks::new(ThermoworksConfig {
        request_timeout_s: 1,
        ..config(&s, "s3cret")
    })
    .expect("config");
    s.with(|c| c.faults.push_back(Fault::Slow(Duration::from_secs(3))));
    let err = short.poll(NOW + 3).await.expect_err("a fault");
    assert!(
        matches!(&err, CloudError::Upstream(m) if m.contains("timed out")),
        "a slow answer gave {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_delivers_celsius_readings_dead_letters_bad_answers_and_reports_rejected_credentials()
 {
    let s = server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, codec) = embedded_log(dir.path(), 1).await.expect("log");
    // A fresh stamp so the readings are inside the retention.
    let fresh = emberline_common::clock::now_ms() - 5_000;
    s.with(|c| {
        c.devices.insert("A1".into(), node(fresh));
        c.faults.push_back(Fault::Truncated);
    });
    let shutdown = CancellationToken::new();
    let poller = CloudPoller::new(Thermoworks::new(config(&s, "s3cret")).expect("config"), 30);
    let sink = EventSink::new(log.clone(), codec.clone(), shutdown.clone());
    let task = tokio::spawn(run_source(Box::new(poller), sink, shutdown.clone()));
    let read = |topic: &'static str| {
        let log = log.clone();
        async move { read_to_end(log.as_ref(), topic, 0, 0).await.expect("read") }
    };
    // The truncated answer is dead-lettered, the retry after backoff succeeds.
    let readings = loop {
        let records = read(topics::PROBE_READINGS).await;
        if records.len() >= 2 {
            break records;
        }
        log.reader(topics::PROBE_READINGS, 0, records.len() as u64)
            .await
            .expect("reader")
            .next_batch(1, Duration::from_secs(30))
            .await
            .expect("wait");
    };
    let mut decoded: Vec<ProbeReading> = Vec::new();
    for r in &readings {
        decoded.push(codec.decode(&r.value).await.expect("decode"));
    }
    decoded.sort_by(|a, b| a.probe_id.cmp(&b.probe_id));
    assert_eq!(
        decoded[0]
            .temperature_c
            .map(|t| (t * 100.0).round() / 100.0),
        Some(107.5),
        "225.5 °F in °C"
    );
    assert_eq!(decoded[1].temperature_c, Some(71.25));
    assert!(
        decoded
            .iter()
            .all(|r| r.source == "thermoworks" && r.event_time == fresh)
    );
    let dead = read(topics::DEAD_LETTER).await;
    assert_eq!(dead.len(), 1);
    let dead: Value = serde_json::from_slice(&dead[0].value).expect("json");
    assert!(
        dead["reason"]
            .as_str()
            .expect("reason")
            .contains("EOF while parsing"),
        "{dead}"
    );
    assert!(
        dead["payload"]
            .as_str()
            .expect("payload")
            .starts_with("[{\"document\""),
        "{dead}"
    );
    shutdown.cancel();
    task.await.expect("join").expect("stopped cleanly");

    // The password changes upstream and the session is revoked: the device gets a
    // "credentials rejected" status, and the poller does not hammer the sign-in endpoint.
    s.with(|c| {
        c.password = "changed".into();
        c.id_tokens.clear();
        c.refresh_tokens.clear();
    });
    let shutdown = CancellationToken::new();
    let mut tw = Thermoworks::new(config(&s, "s3cret")).expect("config");
    s.with(|c| c.password = "s3cret".into());
    tw.poll(fresh)
        .await
        .expect("a first good poll learns the device");
    s.with(|c| {
        c.password = "changed".into();
        c.id_tokens.clear();
        c.refresh_tokens.clear();
    });
    let sign_ins = s.calls("signIn");
    let sink = EventSink::new(log.clone(), codec.clone(), shutdown.clone());
    let task = tokio::spawn(run_source(
        Box::new(CloudPoller::new(tw, 30)),
        sink,
        shutdown.clone(),
    ));
    let note = loop {
        let mut found = None;
        let records = read(topics::DEVICE_EVENTS).await;
        let seen = records.len() as u64;
        for r in records {
            if let Ok(status) = codec.decode::<DeviceStatus>(&r.value).await
                && let Some(note) = status.note
            {
                found = Some(note);
            }
        }
        if let Some(note) = found {
            break note;
        }
        // Wait for a record after the ones just read (not after the end now: one may have
        // arrived in between).
        log.reader(topics::DEVICE_EVENTS, 0, seen)
            .await
            .expect("reader")
            .next_batch(1, Duration::from_secs(30))
            .await
            .expect("wait");
    };
    assert!(
        note.contains("credentials rejected") && note.contains("INVALID_PASSWORD"),
        "{note}"
    );
    assert_eq!(
        s.calls("signIn"),
        sign_ins + 1,
        "one attempt, then an hour's wait"
    );
    shutdown.cancel();
    task.await.expect("join").expect("stopped cleanly");
}
