//! Notification channels set up through `SettingsService` on `emberline up`: a webhook
//! channel added while running gets a signed test notification and then a real alert, with
//! no restart; its URL path and signing secret never appear in an answer, in the log topic
//! or in the process's log; it is still there after a restart; a removed channel takes no
//! further alert; bad input is refused naming the field. A rule routed to two channels
//! escalates from the first to the second when nobody acknowledges its alert.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use emberline_proto::v1::alert_service_client::AlertServiceClient;
use emberline_proto::v1::settings_service_client::SettingsServiceClient;
use emberline_proto::v1::{
    AlertRule, DeleteChannelRequest, ListChannelsRequest, NotificationChannel, SetAlertRuleRequest,
    SetChannelRequest, TestChannelRequest,
};
use support::{PATIENCE, Up, eventually, free_port};
use tonic::Code;

const SECRET: &str = "signing-secret-of-the-test";
const PATH: &str = "/hook/the-url-path-is-a-credential";

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A local webhook receiver: every POST, headers and body.
async fn receiver() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let kept = seen.clone();
    let app = Router::new().route(
        "/{*path}",
        post(move |headers: HeaderMap, body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().expect("lock").push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn webhook(url: String, secret: &str) -> SetChannelRequest {
    SetChannelRequest {
        channel: Some(NotificationChannel {
            name: "phone".into(),
            kind: "webhook".into(),
            ..Default::default()
        }),
        url,
        secret: secret.into(),
        ..Default::default()
    }
}

fn start(data: &std::path::Path) -> Up {
    Up::start_with(data, free_port(), &[("RUST_LOG", "info")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_set_up_while_running_is_tested_takes_alerts_and_keeps_its_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (addr, seen) = receiver().await;
    let up = start(&data);
    let mut settings = SettingsServiceClient::new(up.channel().await);

    let refused = settings
        .set_channel(webhook("ftp://nowhere".into(), ""))
        .await
        .expect_err("not http");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().starts_with("url:"), "{refused:?}");

    let saved = settings
        .set_channel(webhook(format!("http://{addr}{PATH}"), SECRET))
        .await
        .expect("save")
        .into_inner()
        .channel
        .expect("the saved channel");
    assert_eq!(saved.target, format!("http://{addr}/…"));
    assert!(saved.secret_set && !saved.from_config_file);
    let listed = settings
        .list_channels(ListChannelsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.channels, vec![saved.clone()]);
    for answer in [format!("{saved:?}"), format!("{listed:?}")] {
        assert!(
            !answer.contains("credential") && !answer.contains(SECRET),
            "{answer}"
        );
    }

    settings
        .test_channel(TestChannelRequest {
            name: "phone".into(),
        })
        .await
        .expect("test notification");
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1, "one test notification");
        let (headers, body) = &seen[0];
        assert!(body.contains("Test notification"), "{body}");
        let timestamp = headers["x-emberline-timestamp"].to_str().expect("ascii");
        let expected = emberline_notify::signature(SECRET.as_bytes(), timestamp, body.as_bytes());
        assert_eq!(
            headers["x-emberline-signature"].to_str().expect("ascii"),
            expected,
            "signed with the stored secret"
        );
    }

    // A real alert reaches the channel, which did not exist when `up` started.
    up.wait_for_device("sim-1").await;
    AlertServiceClient::new(up.channel().await)
        .set_alert_rule(SetAlertRuleRequest {
            rule: Some(AlertRule {
                device_id: "sim-1".into(),
                probe_id: Some("pit".into()),
                kind: "above".into(),
                threshold: Some(0.0),
                ..Default::default()
            }),
        })
        .await
        .expect("rule");
    eventually(
        "the alert reaches the new channel",
        PATIENCE,
        Duration::from_millis(100),
        || async {
            let seen = seen.lock().expect("lock");
            match seen.iter().find(|(_, body)| body.contains("sim-1")) {
                Some(_) => Ok(()),
                None => Err(format!("{} requests", seen.len())),
            }
        },
    )
    .await;

    // Saved again without a secret (as the web form does): the secret stays.
    settings
        .set_channel(webhook(format!("http://{addr}{PATH}"), ""))
        .await
        .expect("save again");
    up.interrupt_keeping_log(|lines| {
        let text = lines.join("\n");
        assert!(
            !text.contains(SECRET) && !text.contains("credential"),
            "in the log: {text}"
        );
    });

    // The log's settings topic holds the channel only sealed.
    let log = emberline_log::EmbeddedLog::open(&data.join("log.redb")).expect("log");
    let text = {
        use emberline_log::EventLog;
        let end = log
            .end_offset(emberline_log::topics::SETTINGS, 0)
            .await
            .expect("end");
        assert!(end >= 2, "both saves are in the log");
        let mut reader = log
            .reader(emberline_log::topics::SETTINGS, 0, 0)
            .await
            .expect("reader");
        let mut text = String::new();
        while reader.position() < end {
            for r in reader.next_batch(100, PATIENCE).await.expect("read") {
                text.push_str(&String::from_utf8_lossy(&r.value));
            }
        }
        text
    };
    drop(log);
    assert!(
        !text.contains(SECRET) && !text.contains("credential") && !text.contains(&addr.to_string()),
        "{text}"
    );

    // After a restart: the channel is there, with its secret; removed, it takes no alert.
    let up = start(&data);
    let mut settings = SettingsServiceClient::new(up.channel().await);
    let listed = settings
        .list_channels(ListChannelsRequest {})
        .await
        .expect("list")
        .into_inner()
        .channels;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].secret_set, "kept across the save without one");
    let before = seen.lock().expect("lock").len();
    settings
        .test_channel(TestChannelRequest {
            name: "phone".into(),
        })
        .await
        .expect("test after restart");
    assert_eq!(seen.lock().expect("lock").len(), before + 1);
    settings
        .delete_channel(DeleteChannelRequest {
            name: "phone".into(),
        })
        .await
        .expect("delete");
    let gone = settings
        .test_channel(TestChannelRequest {
            name: "phone".into(),
        })
        .await
        .expect_err("gone");
    assert_eq!(gone.code(), Code::NotFound);
    up.interrupt();
}

/// An alert rule routed to two channels escalates: the first raise reaches the first
/// channel only, and when nobody acknowledges it within the rule's repeat interval, the
/// raise again reaches the second. The wait is the shortest a rule may have, 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_alert_escalates_to_the_next_channel_of_its_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first_addr, first) = receiver().await;
    let (second_addr, second) = receiver().await;
    let up = start(&dir.path().join("data"));
    let mut settings = SettingsServiceClient::new(up.channel().await);
    for (name, addr) in [("first", first_addr), ("second", second_addr)] {
        let mut channel = webhook(format!("http://{addr}/{name}"), "");
        channel.channel.as_mut().expect("channel").name = name.into();
        settings.set_channel(channel).await.expect("channel saved");
    }
    up.wait_for_device("sim-1").await;
    let mut alerts = AlertServiceClient::new(up.channel().await);
    let rule = |notify: &[&str], repeat: Option<f64>| SetAlertRuleRequest {
        rule: Some(AlertRule {
            device_id: "sim-1".into(),
            probe_id: Some("pit".into()),
            kind: "above".into(),
            threshold: Some(0.0),
            repeat_every_s: repeat,
            notify: notify.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        }),
    };
    let refused = alerts
        .set_alert_rule(rule(&["first", "nobody"], Some(30.0)))
        .await
        .expect_err("no such channel");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().starts_with("notify:"), "{refused:?}");
    let refused = alerts
        .set_alert_rule(rule(&["first", "second"], None))
        .await
        .expect_err("no wait to escalate after");
    assert!(
        refused.message().starts_with("repeat_every_s:"),
        "{refused:?}"
    );

    let rule_id = alerts
        .set_alert_rule(rule(&["first", "second"], Some(30.0)))
        .await
        .expect("rule")
        .into_inner()
        .rule_id;
    let about_sim = |seen: &Seen| {
        seen.lock()
            .expect("lock")
            .iter()
            .filter(|(_, body)| body.contains("sim-1"))
            .count()
    };
    eventually(
        "the second channel gets the alert nobody acknowledged",
        PATIENCE,
        Duration::from_millis(100),
        || async {
            match about_sim(&second) {
                0 => Err(format!("first has {}", about_sim(&first))),
                _ => Ok(()),
            }
        },
    )
    .await;
    assert_eq!(
        about_sim(&first),
        1,
        "the first channel had the first raise only"
    );
    let listed = alerts
        .list_alert_rules(emberline_proto::v1::ListAlertRulesRequest {
            device_id: "sim-1".into(),
        })
        .await
        .expect("rules")
        .into_inner()
        .rules;
    let listed = listed
        .iter()
        .find(|r| r.rule_id == rule_id)
        .expect("the rule is listed");
    assert_eq!(listed.notify, ["first", "second"]);
    up.interrupt();
}
