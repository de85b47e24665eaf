//! The FireBoard adapter, unchanged, against a local FireBoard Cloud that answers as the
//! reference describes and blocks an account past 200 calls an hour.

use emberline_ingest::cloud::fireboard::{Fireboard, FireboardConfig};
use emberline_ingest::cloud::firestore::rfc3339_ms;
use emberline_ingest::cloud::{CloudAdapter, CloudError, Credentials};
use emberline_ingest::testing::fireboard::{FakeFireboard, Fault, fireboard_drive};
use emberline_ingest::validate::Unit;
use serde_json::json;

const NOW: i64 = 1_795_000_000_000;

async fn server() -> FakeFireboard {
    let s = FakeFireboard::start("127.0.0.1:0".parse().expect("addr"), "s3cret")
        .await
        .expect("start");
    s.with(|c| {
        c.devices
            .push(fireboard_drive("uuid-1", 250.0, "2026-11-19T08:00:00Z"));
        c.drivelogs.insert(
            "uuid-1".into(),
            json!([{"setpoint": 250, "driveper": 35, "lidpaused": false, "drivetype": 1}]),
        );
    });
    s
}

fn adapter(s: &FakeFireboard, password: &str, budget: u32) -> Fireboard {
    Fireboard::new(FireboardConfig {
        credentials: Credentials::with_password("cook@example.com", password),
        base_url: s.url.clone(),
        budget_per_hour: budget,
        // The default request timeout: a local answer can be slow on a loaded machine, and
        // no test here waits for a timeout.
        ..FireboardConfig::default()
    })
    .expect("config")
}

#[tokio::test]
async fn latest_temps_battery_and_the_fan_controller_are_read() {
    let s = server().await;
    let mut f = adapter(&s, "s3cret", 200);
    let out = f.poll(NOW).await.expect("poll");
    let created = rfc3339_ms("2026-11-19T08:00:00Z");
    let readings: Vec<_> = out
        .readings
        .iter()
        .map(|r| (r.probe_id.as_str(), r.value, r.unit, r.device_time_ms))
        .collect();
    assert_eq!(
        readings,
        [
            ("1", Some(250.0), Unit::F, created),
            ("2", Some(150.2), Unit::F, created)
        ],
        "the disabled channel 3 is left out"
    );
    let status = &out.statuses[0];
    assert_eq!(
        (status.battery_percent.map(f64::round), status.signal_dbm),
        (Some(82.0), Some(-58))
    );
    assert_eq!(
        status
            .attributes
            .get("fireboard.drive.setpoint")
            .map(String::as_str),
        Some("250")
    );
    assert_eq!(
        status
            .attributes
            .get("fireboard.drive.driveper")
            .map(String::as_str),
        Some("35")
    );
    assert_eq!(
        out.registrations[0]
            .probe_labels
            .get("2")
            .map(String::as_str),
        Some("Pork butt")
    );
    let again = f.poll(NOW + 60_000).await.expect("poll");
    assert!(again.readings.is_empty(), "nothing new: no readings");
    assert_eq!(
        (s.calls("login"), s.calls("devices"), s.calls("drivelog")),
        (1, 2, 2)
    );
}

#[tokio::test]
async fn the_call_budget_is_never_exceeded_and_the_account_never_blocked() {
    let s = server().await;
    // A budget of 20 calls an hour: each poll costs 2 (devices + drive log), the login 1.
    let mut f = adapter(&s, "s3cret", 20);
    let mut polled = 0;
    let mut refused = None;
    for i in 0..30 {
        match f.poll(NOW + i).await {
            Ok(_) => polled += 1,
            Err(CloudError::RateLimited { retry_after }) => {
                refused = retry_after;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let total = s.calls("login") + s.calls("devices") + s.calls("drivelog");
    assert!(total <= 20, "{total} calls made");
    assert_eq!(polled, 9, "(20 - 1 login) / 2 calls per poll");
    assert!(
        refused.is_some_and(|w| w.as_secs() > 3_000),
        "waits for the oldest calls to age out: {refused:?}"
    );
    assert!(!s.with(|c| c.blocked));
    // Polling at the adapter's own pace keeps a 200-call budget: 2 calls per poll.
    let pace = adapter(&s, "s3cret", 200);
    assert!(3_600.0 / pace.interval().as_secs_f64() * 2.0 <= 200.0);
}

#[tokio::test]
async fn logins_and_failures_are_typed() {
    let s = server().await;
    match adapter(&s, "wrong", 200).poll(NOW).await {
        Err(CloudError::CredentialsRejected(why)) => {
            assert!(why.contains("Unable to log in"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let mut f = adapter(&s, "s3cret", 200);
    f.poll(NOW).await.expect("poll");
    s.with(|c| c.keys.clear());
    f.poll(NOW + 1).await.expect("a refused key is re-obtained");
    assert_eq!(s.calls("login"), 3);
    for fault in [
        Fault::Status(500),
        Fault::TooMany(Some(30)),
        Fault::Truncated,
        Fault::NotJson,
    ] {
        s.with(|c| c.faults.push_back(fault.clone()));
        let err = f.poll(NOW + 2).await.expect_err("fault");
        assert!(
            matches!(
                err,
                CloudError::Upstream(_)
                    | CloudError::RateLimited { .. }
                    | CloudError::Malformed { .. }
            ),
            "{fault:?}: {err:?}"
        );
    }
}
