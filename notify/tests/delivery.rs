//! Delivery through real servers: a webhook that fails three times then recovers, a Slack-
//! shaped webhook, an ntfy endpoint, and e-mail to a local SMTP server (aiosmtpd) that is
//! down at first. Each alert arrives exactly once; the notifier is restarted mid-way.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use emberline_common::Secret;
use emberline_log::{EventLog, NewRecord, topics};
use emberline_notify::{
    ChannelConfig, ChannelKind, NotifyConfig, Outbox, WebhookFormat, run_notifier, signature,
};
use emberline_schemas::events::{AlertCleared, AlertRaised};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(60);

/// An embedded log in `dir` with the `alerts` topic (the only one the notifier reads), and
/// a codec on its registry.
async fn embedded_log(
    dir: &Path,
    partitions: u32,
) -> Result<
    (
        Arc<emberline_log::EmbeddedLog>,
        Arc<emberline_schemas::EventCodec>,
    ),
    Box<dyn std::error::Error + Send + Sync>,
> {
    let log = emberline_log::EmbeddedLog::open(&dir.join("log.redb"))?;
    let registry = emberline_schemas::EmbeddedRegistry::shared(log.handle());
    let codec = emberline_schemas::EventCodec::connect(Arc::new(registry)).await?;
    log.ensure_topic(topics::ALERTS, partitions).await?;
    Ok((Arc::new(log), Arc::new(codec)))
}

#[derive(Default)]
struct Received {
    /// (status answered, headers, body) per request, in order.
    requests: Vec<(u16, HeaderMap, Vec<u8>)>,
    failures_left: u32,
}

/// A local HTTP receiver that answers 500 to its first `failures` requests, 200 after.
async fn receiver(failures: u32) -> (SocketAddr, Arc<Mutex<Received>>) {
    let state = Arc::new(Mutex::new(Received {
        failures_left: failures,
        ..Received::default()
    }));
    let shared = state.clone();
    let app = Router::new().route(
        "/{*path}",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let shared = shared.clone();
            async move {
                let mut s = shared.lock().expect("lock");
                let status = if s.failures_left > 0 {
                    s.failures_left -= 1;
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                s.requests.push((status.as_u16(), headers, body.to_vec()));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

fn raised(alert: &str, device: &str, repeat: i32, seq: i64) -> AlertRaised {
    AlertRaised {
        alert_id: alert.into(),
        rule_id: alert.split('#').next().unwrap_or(alert).into(),
        kind: "target_reached".into(),
        device_id: device.into(),
        probe_id: Some("meat-1".into()),
        cook_id: None,
        event_time: 1_790_000_000_000 + seq,
        value: Some(93.4),
        threshold: Some(93.0),
        message: format!("Meat 1 on {device} reached its target of 93.0 °C (93.4 °C)"),
        repeat,
        source_seq: seq,
    }
}

/// Writes three raises (one a repeat) and a clear to `alerts`.
async fn write_alerts(
    dir: &Path,
) -> (
    Arc<emberline_log::EmbeddedLog>,
    Arc<emberline_schemas::EventCodec>,
) {
    let (log, codec) = embedded_log(dir, 4).await.expect("log");
    let mut records = Vec::new();
    for (i, a) in [
        raised("a#1", "sim-1", 0, 1),
        raised("b#1", "sim-2", 0, 2),
        raised("a#1", "sim-1", 1, 3),
    ]
    .iter()
    .enumerate()
    {
        records.push(NewRecord {
            key: a.device_id.as_bytes().to_vec(),
            value: codec.encode(a).expect("encode"),
            timestamp_ms: i as i64,
        });
    }
    let cleared = AlertCleared {
        alert_id: "b#1".into(),
        rule_id: "b".into(),
        kind: "target_reached".into(),
        device_id: "sim-2".into(),
        probe_id: Some("meat-1".into()),
        event_time: 1_790_000_000_100,
        value: Some(90.0),
        reason: "back to normal".into(),
        source_seq: 4,
    };
    records.push(NewRecord {
        key: b"sim-2".to_vec(),
        value: codec.encode(&cleared).expect("encode"),
        timestamp_ms: 4,
    });
    log.append(topics::ALERTS, records).await.expect("append");
    (log, codec)
}

/// Polls `check` until it holds (the notifier works on its own schedule).
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn channel(name: &str, kind: ChannelKind) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        user: Some("pitmaster".into()),
        devices: Vec::new(),
        tenant: "default".into(),
        kind,
    }
}

fn config(channels: Vec<ChannelConfig>) -> NotifyConfig {
    NotifyConfig {
        channels,
        notify_cleared: true,
        retry_initial_ms: 20,
        retry_max_ms: 200,
        // Reached only on failure: an attempt that times out after the receiver took it is
        // sent again, which the exactly-once checks below would count twice (a loaded
        // machine can keep a local webhook or aiosmtpd from answering for seconds).
        timeout_ms: PATIENCE.as_millis() as u64,
    }
}

fn delivered(outbox: &Outbox, channel: &str) -> usize {
    outbox
        .entries()
        .expect("entries")
        .iter()
        .filter(|e| e.channel == channel && e.delivered_ms.is_some())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_gets_each_alert_once_after_it_recovers_even_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, codec) = write_alerts(dir.path()).await;
    let (flaky, flaky_seen) = receiver(3).await;
    let (slack, slack_seen) = receiver(0).await;
    let (ntfy, ntfy_seen) = receiver(0).await;
    let config = config(vec![
        channel(
            "hook",
            ChannelKind::Webhook {
                url: format!("http://{flaky}/hook"),
                secret: Some(Secret::new("s3cret")),
                format: WebhookFormat::Json,
            },
        ),
        channel(
            "slack",
            ChannelKind::Webhook {
                url: format!("http://{slack}/services/T/B/X"),
                secret: None,
                format: WebhookFormat::Slack,
            },
        ),
        channel(
            "phone",
            ChannelKind::Ntfy {
                url: format!("http://{ntfy}/grill"),
                token: Some(Secret::new("tk")),
            },
        ),
    ]);
    let outbox = Outbox::open(&dir.path().join("outbox.redb")).expect("outbox");

    // First run: stopped once the flaky hook has failed twice.
    let stop = CancellationToken::new();
    let run = tokio::spawn(run_notifier(
        log.clone(),
        codec.clone(),
        config.clone(),
        outbox.clone(),
        stop.clone(),
    ));
    until("two failures", || {
        flaky_seen.lock().expect("lock").requests.len() >= 2
    })
    .await;
    stop.cancel();
    run.await.expect("join").expect("notifier");

    // Second run: the hook recovers after its third failure; everything is delivered.
    let stop = CancellationToken::new();
    let run = tokio::spawn(run_notifier(
        log,
        codec,
        config,
        outbox.clone(),
        stop.clone(),
    ));
    until("every delivery", || {
        ["hook", "slack", "phone"]
            .iter()
            .all(|c| delivered(&outbox, c) == 4)
    })
    .await;
    stop.cancel();
    run.await.expect("join").expect("notifier");

    let seen = flaky_seen.lock().expect("lock");
    let failures = seen.requests.iter().filter(|(s, _, _)| *s != 200).count();
    assert_eq!(failures, 3);
    let mut ok: BTreeMap<String, usize> = BTreeMap::new();
    for (status, headers, body) in &seen.requests {
        let id = headers["idempotency-key"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let ts = headers["x-emberline-timestamp"].to_str().expect("ascii");
        assert_eq!(
            headers["x-emberline-signature"].to_str().expect("ascii"),
            signature(b"s3cret", ts, body),
            "bad signature on {id}"
        );
        let json: serde_json::Value = serde_json::from_slice(body).expect("json");
        assert_eq!(json["delivery_id"], id.as_str());
        if *status == 200 {
            *ok.entry(id).or_default() += 1;
        }
    }
    let expected = [
        "a#1/0/raised",
        "a#1/1/raised",
        "b#1/0/raised",
        "b#1/cleared",
    ];
    assert_eq!(ok.keys().map(String::as_str).collect::<Vec<_>>(), expected);
    assert!(
        ok.values().all(|n| *n == 1),
        "delivered more than once: {ok:?}"
    );

    let slack = slack_seen.lock().expect("lock");
    assert_eq!(
        slack.requests.len(),
        4,
        "the healthy channel is not held up"
    );
    for (_, _, body) in &slack.requests {
        let json: serde_json::Value = serde_json::from_slice(body).expect("json");
        assert!(
            json["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("*Emberline: "))
        );
    }
    let ntfy = ntfy_seen.lock().expect("lock");
    assert_eq!(ntfy.requests.len(), 4);
    let (_, headers, body) = &ntfy.requests[0];
    assert_eq!(headers["authorization"], "Bearer tk");
    assert!(
        headers["title"]
            .to_str()
            .expect("ascii")
            .starts_with("Emberline: target reached")
    );
    assert!(String::from_utf8_lossy(body).contains("reached its target"));
}

/// aiosmtpd from Debian's python3-aiosmtpd (the test command installs it), storing mail
/// in a Maildir.
fn smtp_server(addr: SocketAddr, maildir: &Path) -> Child {
    Command::new("/usr/bin/python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &addr.to_string(),
            "-c",
            "aiosmtpd.handlers.Mailbox",
            &maildir.display().to_string(),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("start aiosmtpd (apt-get install python3-aiosmtpd)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_waits_for_a_down_smtp_server_and_arrives_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, codec) = write_alerts(dir.path()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut config = config(vec![channel(
        "mail",
        ChannelKind::Email {
            smtp_url: format!("smtp://{port}"),
            from: "Emberline <grill@example.com>".into(),
            to: vec!["cook@example.com".into()],
            username: None,
            password: None,
        },
    )]);
    config.notify_cleared = false;
    let outbox = Outbox::open(&dir.path().join("outbox.redb")).expect("outbox");
    let stop = CancellationToken::new();
    let run = tokio::spawn(run_notifier(
        log,
        codec,
        config,
        outbox.clone(),
        stop.clone(),
    ));
    // Nothing listens yet: every attempt fails and is rescheduled.
    until("failed attempts", || {
        outbox
            .entries()
            .expect("entries")
            .iter()
            .any(|e| e.attempts >= 2)
    })
    .await;
    assert_eq!(delivered(&outbox, "mail"), 0);
    let maildir = dir.path().join("mail");
    let mut server = smtp_server(port, &maildir);
    until("three e-mails", || delivered(&outbox, "mail") == 3).await;
    stop.cancel();
    run.await.expect("join").expect("notifier");
    let _ = server.kill();
    let _ = server.wait();

    let mut ids = Vec::new();
    for entry in std::fs::read_dir(maildir.join("new")).expect("maildir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("mail");
        assert!(
            text.contains("Subject: Emberline: target reached on sim-"),
            "{text}"
        );
        assert!(text.contains("To: cook@example.com"), "{text}");
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .expect("a Message-ID")
            .to_owned();
        ids.push(id);
    }
    ids.sort();
    assert_eq!(
        ids,
        [
            "<a_1_0_raised@emberline.invalid>",
            "<a_1_1_raised@emberline.invalid>",
            "<b_1_0_raised@emberline.invalid>"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_channels_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, codec) = embedded_log(dir.path(), 4).await.expect("log");
    let outbox = Outbox::open(&dir.path().join("outbox.redb")).expect("outbox");
    for (kind, what) in [
        (
            ChannelKind::Webhook {
                url: "ftp://example.com".into(),
                secret: None,
                format: WebhookFormat::Json,
            },
            "not http",
        ),
        (
            ChannelKind::Email {
                smtp_url: "smtp://localhost:25".into(),
                from: "no address".into(),
                to: vec!["a@example.com".into()],
                username: None,
                password: None,
            },
            "address",
        ),
    ] {
        let err = run_notifier(
            log.clone(),
            codec.clone(),
            config(vec![channel("x", kind)]),
            outbox.clone(),
            CancellationToken::new(),
        )
        .await
        .expect_err("refused");
        assert!(err.to_string().contains(what), "{err}");
    }
}

/// Appends one raise of `alert` on device `sim-1`; returns its partition's new end.
async fn append_raise(
    log: &emberline_log::EmbeddedLog,
    codec: &emberline_schemas::EventCodec,
    alert: &str,
    seq: i64,
) -> (u32, u64) {
    let a = raised(alert, "sim-1", 0, seq);
    let at = log
        .append(
            topics::ALERTS,
            vec![NewRecord {
                key: a.device_id.as_bytes().to_vec(),
                value: codec.encode(&a).expect("encode"),
                timestamp_ms: seq,
            }],
        )
        .await
        .expect("append");
    (at[0].partition, at[0].offset + 1)
}

/// Waits until the notifier has read `partition` up to `end` (its outbox position).
async fn read_to(outbox: &Outbox, (partition, end): (u32, u64)) {
    until("the notifier read the alert", || {
        outbox
            .positions()
            .expect("positions")
            .get(&partition)
            .is_some_and(|p| *p >= end)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_set_up_while_running_take_alerts_from_then_on_and_stop_when_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, codec) = embedded_log(dir.path(), 1).await.expect("log");
    let (hook, seen) = receiver(0).await;
    let outbox = Outbox::open(&dir.path().join("outbox.redb")).expect("outbox");
    let (set, added) = tokio::sync::watch::channel(Arc::new(Vec::new()));
    let stop = CancellationToken::new();
    let run = tokio::spawn(emberline_notify::run_notifier_with(
        log.clone(),
        codec.clone(),
        config(Vec::new()),
        added,
        outbox.clone(),
        stop.clone(),
    ));
    read_to(&outbox, append_raise(&log, &codec, "before#1", 1).await).await;

    let live = channel(
        "added",
        ChannelKind::Webhook {
            url: format!("http://{hook}/hook"),
            secret: None,
            format: WebhookFormat::Json,
        },
    );
    // A channel with a bad URL in the same set is left out; the good one still works.
    let broken = channel(
        "broken",
        ChannelKind::Webhook {
            url: "not a url".into(),
            secret: None,
            format: WebhookFormat::Json,
        },
    );
    set.send_replace(Arc::new(vec![live, broken]));
    // The notifier takes the new set before the next alert: retry until one arrives.
    let mut seq = 2;
    while seen.lock().expect("lock").requests.is_empty() {
        read_to(
            &outbox,
            append_raise(&log, &codec, &format!("during#{seq}"), seq).await,
        )
        .await;
        until("delivered", || {
            outbox
                .entries()
                .expect("entries")
                .iter()
                .all(|e| e.delivered_ms.is_some())
        })
        .await;
        seq += 1;
    }
    let bodies: Vec<String> = seen
        .lock()
        .expect("lock")
        .requests
        .iter()
        .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(
        bodies.iter().all(|b| !b.contains("before#1")),
        "an alert read before the channel existed is not sent to it: {bodies:?}"
    );
    assert!(
        outbox
            .entries()
            .expect("entries")
            .iter()
            .all(|e| e.channel == "added")
    );

    set.send_replace(Arc::new(Vec::new()));
    let sent = seen.lock().expect("lock").requests.len();
    // Once removed, later alerts make no entries (allow the one batch that may have been
    // read before the change arrived).
    for i in 0..3 {
        read_to(
            &outbox,
            append_raise(&log, &codec, &format!("after#{i}"), 100 + i).await,
        )
        .await;
    }
    let after = outbox
        .entries()
        .expect("entries")
        .iter()
        .filter(|e| e.notice.alert_id.starts_with("after#"))
        .count();
    assert!(after <= 1, "{after} entries for a removed channel");
    assert!(seen.lock().expect("lock").requests.len() <= sent + 1);
    stop.cancel();
    run.await.expect("join").expect("notifier");
}

/// A local stand-in for a Twilio-compatible Messages API, answering as its documentation
/// says: 201 and the message resource for a good request, 401 with error 20003 for a wrong
/// login, 400 with error 21211 for a `To` it cannot text (its test number +15005550001). Keeps every form it accepted.
async fn sms_api(
    sid: &'static str,
    token: &'static str,
) -> (SocketAddr, Arc<Mutex<Vec<BTreeMap<String, String>>>>) {
    use axum::extract::{Form, Path as UrlPath};
    use axum::http::header::AUTHORIZATION;
    use axum::response::IntoResponse;
    use base64::Engine;
    let sent: Arc<Mutex<Vec<BTreeMap<String, String>>>> = Arc::default();
    let kept = sent.clone();
    let app = Router::new().route(
        "/2010-04-01/Accounts/{account}/Messages.json",
        post(
            move |UrlPath(account): UrlPath<String>,
                  headers: HeaderMap,
                  Form(form): Form<BTreeMap<String, String>>| {
                let kept = kept.clone();
                async move {
                    let expected = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"))
                    );
                    let authorized = account == sid
                        && headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(expected.as_str());
                    if !authorized {
                        let body = serde_json::json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401});
                        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                    }
                    let to = form.get("To").cloned().unwrap_or_default();
                    // Twilio's test number for "not a valid phone number".
                    if to == "+15005550001" {
                        let body = serde_json::json!({"code": 21211, "message": format!("The 'To' number {to} is not a valid phone number."), "status": 400});
                        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
                    }
                    kept.lock().expect("lock").push(form.clone());
                    let body = serde_json::json!({"sid": "SM0123", "status": "queued", "to": to, "body": form.get("Body")});
                    (StatusCode::CREATED, axum::Json(body)).into_response()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_message_goes_through_a_twilio_compatible_api_and_its_refusals_are_explained() {
    let (api, sent) = sms_api("AC0123456789", "the-auth-token").await;
    let sms = |token: &str, to: &str| {
        channel(
            "text",
            ChannelKind::Sms {
                api_url: format!("http://{api}"),
                account_sid: "AC0123456789".into(),
                auth_token: Secret::new(token),
                from: "+15005550006".into(),
                to: to.into(),
            },
        )
    };
    emberline_notify::send_test(&sms("the-auth-token", "+15551234567"), PATIENCE)
        .await
        .expect("texted");
    {
        let sent = sent.lock().expect("lock");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["To"], "+15551234567");
        assert_eq!(sent[0]["From"], "+15005550006");
        assert!(
            sent[0]["Body"].contains("Test notification"),
            "{:?}",
            sent[0]
        );
    }
    let err = emberline_notify::send_test(&sms("wrong", "+15551234567"), PATIENCE)
        .await
        .expect_err("wrong token");
    assert!(
        err.to_string()
            .contains("HTTP 401 Unauthorized: Authenticate (code 20003)"),
        "{err}"
    );
    let err = emberline_notify::send_test(&sms("the-auth-token", "+15005550001"), PATIENCE)
        .await
        .expect_err("a number the API cannot text");
    assert!(
        err.to_string()
            .contains("is not a valid phone number. (code 21211)"),
        "{err}"
    );
    let err = emberline_notify::send_test(&sms("the-auth-token", "+1"), PATIENCE)
        .await
        .expect_err("not a number, refused before sending");
    assert!(err.to_string().contains("to:"), "{err}");
    assert_eq!(sent.lock().expect("lock").len(), 1);
}
