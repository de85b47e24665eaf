//! Thermometer accounts set up through `SourceService` on `emberline up`, against the local
//! ThermoWorks stand-in: a test sign-in lists the account's devices and stores nothing; the
//! saved account streams at once, with no restart; changed while readings flow, it is
//! restarted and the log holds every reading exactly once (no gap, no repeat at the
//! switch); removed and added back, it carries on; after a restart it is still there. Its
//! password never appears in an answer, in the log's topics or in the process's log.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use emberline_ingest::testing::thermoworks::{self, FakeThermoworks};
use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use emberline_proto::v1::source_service_client::SourceServiceClient;
use emberline_proto::v1::{
    DeleteSourceRequest, ListSourceKindsRequest, ListSourcesRequest, SetSourceRequest,
};
use support::{PATIENCE, Up, eventually, free_port, history};
use tonic::Code;
use tonic::transport::Channel;

const PASSWORD: &str = "password-of-the-test-account";

fn account(cloud: &str, password: &str, interval_s: u32) -> SetSourceRequest {
    SetSourceRequest {
        name: "garage".into(),
        kind: "thermoworks".into(),
        fields: [
            ("username", thermoworks::EMAIL.to_owned()),
            ("password", password.to_owned()),
            ("poll_interval_s", interval_s.to_string()),
            ("base_url", cloud.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    }
}

/// The Node's readings now carry `seen_ms` as their time.
fn advance(cloud: &FakeThermoworks, seen_ms: i64) {
    cloud.with(|c| {
        c.devices.insert("A1".into(), thermoworks::node(seen_ms));
    });
}

/// Waits until the gateway's history of the pit channel holds a point at `at_ms`.
async fn charted(channel: &Channel, at_ms: i64) {
    let readings = ReadingServiceClient::new(channel.clone());
    eventually(
        &format!("the reading at {at_ms} reaches the history"),
        PATIENCE,
        Duration::from_millis(100),
        || {
            let mut readings = readings.clone();
            async move {
                let points = history(&mut readings, "A1", "1", at_ms - 1, at_ms + 1)
                    .await
                    .map_err(|e| e.to_string())?;
                if points.iter().any(|p| p.event_time_ms == at_ms) {
                    Ok(())
                } else {
                    Err(format!("{} points", points.len()))
                }
            }
        },
    )
    .await;
}

fn start(data: &std::path::Path) -> Up {
    Up::start_with(data, free_port(), &[("RUST_LOG", "info")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_added_changed_and_removed_while_running_logs_every_reading_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Whole seconds: the times Firestore's timestamps carry.
    let t0 = (emberline_common::clock::now_ms() / 1_000 - 60) * 1_000;
    let cloud = FakeThermoworks::start("127.0.0.1:0".parse().expect("addr"), PASSWORD, t0)
        .await
        .expect("cloud");
    let up = start(&data);
    let channel = up.channel().await;
    let mut sources = SourceServiceClient::new(channel.clone());

    let kinds = sources
        .list_source_kinds(ListSourceKindsRequest {})
        .await
        .expect("kinds")
        .into_inner()
        .kinds;
    let thermoworks_form = kinds
        .iter()
        .find(|k| k.kind == "thermoworks")
        .expect("ThermoWorks is offered");
    assert!(
        thermoworks_form
            .fields
            .iter()
            .any(|f| f.name == "password" && f.r#type == "secret" && f.required)
    );

    // A wrong password: the test says what the cloud answered, and nothing is stored.
    let refused = sources
        .test_source(account(&cloud.url, "wrong", 5))
        .await
        .expect_err("wrong password");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("credentials rejected"),
        "{refused:?}"
    );
    let refused = sources
        .set_source(account(&cloud.url, PASSWORD, 1))
        .await
        .expect_err("too often");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("poll_interval_s"),
        "{refused:?}"
    );

    // The test sign-in finds the Node, and appends nothing.
    let found = sources
        .test_source(account(&cloud.url, PASSWORD, 5))
        .await
        .expect("test sign-in")
        .into_inner()
        .devices;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].device_id.as_str(), found[0].name.as_str()),
        ("A1", "Back yard Node")
    );
    assert_eq!(found[0].probes.get("1").map(String::as_str), Some("Pit"));
    assert!(
        sources
            .list_sources(ListSourcesRequest {})
            .await
            .expect("list")
            .into_inner()
            .sources
            .iter()
            .all(|s| s.name != "garage"),
        "a test stores nothing"
    );

    // Saved: it streams at once.
    let saved = sources
        .set_source(account(&cloud.url, PASSWORD, 5))
        .await
        .expect("save")
        .into_inner()
        .source
        .expect("the saved source");
    assert!(saved.secret_set && !saved.from_config_file);
    assert_eq!(
        saved.fields.get("username").map(String::as_str),
        Some(thermoworks::EMAIL)
    );
    charted(&channel, t0).await;

    // Changed while running (the password left empty keeps the stored one): restarted,
    // and the new run's first poll — the same latest readings — appends nothing again.
    let (sign_ins_before, polls_before) = (cloud.calls("signIn"), cloud.calls("runQuery"));
    sources
        .set_source(account(&cloud.url, "", 6))
        .await
        .expect("change");
    eventually(
        "the restarted account polls",
        PATIENCE,
        Duration::from_millis(50),
        || async {
            let signed_in = cloud.calls("signIn");
            if signed_in > sign_ins_before && cloud.calls("runQuery") > polls_before {
                Ok(())
            } else {
                Err(format!("{signed_in} sign-ins"))
            }
        },
    )
    .await;
    let t1 = t0 + 10_000;
    advance(&cloud, t1);
    charted(&channel, t1).await;

    let listed = sources
        .list_sources(ListSourcesRequest {})
        .await
        .expect("list")
        .into_inner()
        .sources;
    let garage = listed.iter().find(|s| s.name == "garage").expect("listed");
    assert_eq!(
        garage.fields.get("poll_interval_s").map(String::as_str),
        Some("6")
    );
    assert!(garage.running && garage.last_success_ms > 0, "{garage:?}");
    assert!(garage.last_error.is_empty(), "{garage:?}");

    // Removed, then added back under the same name: it carries on from the cloud's state.
    sources
        .delete_source(DeleteSourceRequest {
            name: "garage".into(),
        })
        .await
        .expect("remove");
    let gone = sources
        .delete_source(DeleteSourceRequest {
            name: "garage".into(),
        })
        .await
        .expect_err("already gone");
    assert_eq!(gone.code(), Code::NotFound);
    let t2 = t1 + 10_000;
    advance(&cloud, t2);
    sources
        .set_source(account(&cloud.url, PASSWORD, 5))
        .await
        .expect("add back");
    charted(&channel, t2).await;

    for answer in [
        format!("{listed:?}"),
        format!("{saved:?}"),
        format!("{found:?}"),
    ] {
        assert!(!answer.contains(PASSWORD), "{answer}");
    }
    up.interrupt_keeping_log(|lines| {
        let text = lines.join("\n");
        assert!(!text.contains(PASSWORD), "in the process's log: {text}");
    });

    // Every reading of the Node's two temperature channels is in the log exactly once.
    let (readings, _) = support::answers::logged_readings(&data).await;
    let node: BTreeMap<(String, i64), u32> = readings
        .into_iter()
        .filter(|((device, _, _), _)| device == "A1")
        .map(|((_, probe, at), n)| ((probe, at), n))
        .collect();
    let expected: BTreeMap<(String, i64), u32> = ["1", "2"]
        .into_iter()
        .flat_map(|p| [t0, t1, t2].map(|t| ((p.to_owned(), t), 1)))
        .collect();
    assert_eq!(node, expected, "each reading once, none missing");

    // No topic holds the password.
    let log = emberline_log::EmbeddedLog::open(&data.join("log.redb")).expect("log");
    {
        use emberline_log::EventLog;
        for topic in [
            emberline_log::topics::SETTINGS,
            emberline_log::topics::DEVICE_EVENTS,
            emberline_log::topics::DEAD_LETTER,
        ] {
            for p in 0..log.partitions(topic).await.unwrap_or(0) {
                let records = emberline_log::conformance::read_to_end(&log, topic, p, 0)
                    .await
                    .expect("read");
                for r in records {
                    assert!(
                        !String::from_utf8_lossy(&r.value).contains(PASSWORD),
                        "{topic} holds the password"
                    );
                }
            }
        }
    }
    drop(log);

    // After a restart the account is there and runs: the next reading arrives.
    let up = start(&data);
    let channel = up.channel().await;
    let t3 = t2 + 10_000;
    advance(&cloud, t3);
    charted(&channel, t3).await;
    let listed = SourceServiceClient::new(channel)
        .list_sources(ListSourcesRequest {})
        .await
        .expect("list")
        .into_inner()
        .sources;
    assert!(
        listed.iter().any(|s| s.name == "garage" && s.secret_set),
        "{listed:?}"
    );
    up.interrupt();
}
