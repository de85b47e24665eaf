//! The MEATER adapter, unchanged, against a local MEATER Cloud that answers as the public
//! REST API's documentation describes.

use emberline_ingest::cloud::meater::{Meater, MeaterConfig};
use emberline_ingest::cloud::{CloudAdapter, CloudError, Credentials};
use emberline_ingest::testing::meater::{FakeMeater, Fault, probe};
use emberline_ingest::validate::Unit;

const NOW_S: i64 = 1_795_000_000;

async fn server() -> FakeMeater {
    FakeMeater::start("127.0.0.1:0".parse().expect("addr"), "s3cret")
        .await
        .expect("start")
}

/// An adapter with the default request timeout: a local answer can be slow on a loaded
/// machine, so only the timeout check uses a short one.
fn adapter(s: &FakeMeater, password: &str) -> Meater {
    Meater::new(config(s, password)).expect("config")
}

fn config(s: &FakeMeater, password: &str) -> MeaterConfig {
    MeaterConfig {
        credentials: Credentials::with_password("cook@example.com", password),
        base_url: s.url.clone(),
        ..MeaterConfig::default()
    }
}

#[tokio::test]
async fn a_cooking_probe_is_two_probes_with_meaters_own_estimate_in_the_status() {
    let s = server().await;
    s.with(|c| c.devices.push(probe("probe-00AB12", 61.5, 118.0, NOW_S)));
    let mut m = adapter(&s, "s3cret");
    let out = m.poll(NOW_S * 1_000 + 500).await.expect("poll");
    let readings: Vec<_> = out
        .readings
        .iter()
        .map(|r| (r.probe_id.as_str(), r.value, r.unit, r.device_time_ms))
        .collect();
    assert_eq!(
        readings,
        [
            ("internal", Some(61.5), Unit::C, Some(NOW_S * 1_000)),
            ("ambient", Some(118.0), Unit::C, Some(NOW_S * 1_000))
        ]
    );
    assert_eq!(out.registrations[0].name, "MEATER AB12");
    let attrs = &out.statuses[0].attributes;
    assert_eq!(
        attrs.get("meater.cook.remaining_s").map(String::as_str),
        Some("14400")
    );
    assert_eq!(
        attrs.get("meater.cook.target_c").map(String::as_str),
        Some("93.0")
    );
    assert_eq!(
        attrs.get("meater.cook.name").map(String::as_str),
        Some("Brisket")
    );
    // One login, one request per poll.
    m.poll(NOW_S * 1_000 + 30_500).await.expect("poll");
    assert_eq!((s.calls("login"), s.calls("devices")), (1, 2));
}

#[tokio::test]
async fn a_put_away_probe_is_quiet_and_says_why_once() {
    let s = server().await;
    s.with(|c| c.devices.push(probe("probe-1", 50.0, 110.0, NOW_S)));
    let mut m = adapter(&s, "s3cret");
    m.poll(NOW_S * 1_000).await.expect("poll");
    s.with(|c| c.devices.clear());
    let out = m
        .poll(NOW_S * 1_000 + 30_000)
        .await
        .expect("an empty list is no error");
    assert!(out.readings.is_empty());
    assert_eq!(out.statuses.len(), 1);
    assert!(!out.statuses[0].online);
    assert!(
        out.statuses[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("not cooking"))
    );
    let again = m.poll(NOW_S * 1_000 + 60_000).await.expect("poll");
    assert!(again.statuses.is_empty(), "said once, not every poll");
}

#[tokio::test]
async fn tokens_are_re_obtained_and_failures_are_typed() {
    let s = server().await;
    s.with(|c| c.devices.push(probe("probe-1", 50.0, 110.0, NOW_S)));
    let mut m = adapter(&s, "s3cret");
    m.poll(NOW_S * 1_000).await.expect("poll");
    s.with(|c| c.tokens.clear()); // the JWT expired
    m.poll(NOW_S * 1_000 + 1)
        .await
        .expect("signed in again without the user noticing");
    assert_eq!(s.calls("login"), 2);
    match adapter(&s, "wrong").poll(NOW_S * 1_000).await {
        Err(CloudError::CredentialsRejected(_)) => {}
        other => panic!("{other:?}"),
    }
    for (fault, ok) in [
        (
            Fault::TooMany(Some(60)),
            &(|e: &CloudError| matches!(e, CloudError::RateLimited { retry_after: Some(d) } if d.as_secs() == 60))
                as &dyn Fn(&CloudError) -> bool,
        ),
        (Fault::TooMany(None), &|e| {
            matches!(e, CloudError::RateLimited { retry_after: None })
        }),
        (Fault::Status(502), &|e| {
            matches!(e, CloudError::Upstream(_))
        }),
        (Fault::Truncated, &|e| {
            matches!(e, CloudError::Malformed { .. })
        }),
        (Fault::NotJson, &|e| {
            matches!(e, CloudError::Malformed { .. })
        }),
    ] {
        s.with(|c| c.faults.push_back(fault.clone()));
        let err = m.poll(NOW_S * 1_000 + 2).await.expect_err("fault");
        assert!(ok(&err), "{fault:?} gave {err:?}");
    }
    // A slow answer times out: a fresh adapter with a 1 s request timeout against a 3 s
    // answer. (Should a loaded machine delay even its sign-in past 1 s, that too is a
    // request that timed out.)
    let mut short = Meater::new(MeaterConfig {
        request_timeout_s: 1,
        ..config(&s, "s3cret")
    })
    .expect("config");
    s.with(|c| {
        c.faults
            .push_back(Fault::Slow(std::time::Duration::from_secs(3)))
    });
    let err = short.poll(NOW_S * 1_000 + 3).await.expect_err("fault");
    assert!(
        matches!(&err, CloudError::Upstream(m) if m.contains("timed out")),
        "a slow answer gave {err:?}"
    );
}

#[test]
fn polling_faster_than_meater_allows_is_refused() {
    let err = Meater::new(MeaterConfig {
        credentials: Credentials::with_password("a@b.c", ""),
        poll_interval_s: 10,
        ..MeaterConfig::default()
    });
    assert!(matches!(err, Err(CloudError::Config(m)) if m.contains("at least 30")));
}
