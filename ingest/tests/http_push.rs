//! The HTTP push source over real HTTP into the embedded log: what is accepted, what is
//! refused with which status and reason, and what reaches the dead-letter topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use emberline_ingest::http_push::{HttpPush, HttpPushConfig};
use emberline_ingest::testing::embedded_log;
use emberline_ingest::{EventSink, run_source};
use emberline_log::{EmbeddedLog, conformance::read_to_end, topics};
use emberline_schemas::EventCodec;
use emberline_schemas::events::ProbeReading;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct World {
    _dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    codec: Arc<EventCodec>,
    url: String,
    shutdown: CancellationToken,
}

async fn world() -> World {
    emberline_common::http::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, codec) = embedded_log(dir.path(), 2).await.expect("log");
    let shutdown = CancellationToken::new();
    let config = HttpPushConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tokens: BTreeMap::from([
            ("smoker".to_owned(), "s3cret".into()),
            ("kettle".to_owned(), "other".into()),
        ]),
        ..HttpPushConfig::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let source = HttpPush::new(config).on_bound(tx);
    let sink = EventSink::new(log.clone(), codec.clone(), shutdown.clone());
    tokio::spawn(run_source(Box::new(source), sink, shutdown.clone()));
    let addr = rx.await.expect("bound");
    World {
        _dir: dir,
        log,
        codec,
        url: format!("http://{addr}/v1/readings"),
        shutdown,
    }
}

impl World {
    async fn post(&self, token: Option<&str>, body: &str) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json answer"))
    }

    async fn readings(&self) -> Vec<ProbeReading> {
        let mut out = Vec::new();
        for p in 0..2 {
            for r in read_to_end(self.log.as_ref(), topics::PROBE_READINGS, p, 0)
                .await
                .expect("read")
            {
                out.push(self.codec.decode(&r.value).await.expect("decode"));
            }
        }
        out.sort_by_key(|r: &ProbeReading| (r.probe_id.clone(), r.event_time));
        out
    }

    async fn dead_letters(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for p in 0..2 {
            for r in read_to_end(self.log.as_ref(), topics::DEAD_LETTER, p, 0)
                .await
                .expect("read")
            {
                out.push(serde_json::from_slice(&r.value).expect("dead letter is JSON"));
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_normalised_and_appended_and_repeats_are_recognised() {
    let w = world().await;
    let now = 1_795_000_000_000i64;
    let body = json!({"device_id": "smoker", "readings": [
        {"probe_id": "pit", "value": 257.0, "unit": "F", "time": now},
        {"probe_id": "meat-1", "value": 60.5, "time": now / 1000},
        {"probe_id": "meat-2", "value": null, "time": now},
    ]})
    .to_string();
    // `now` is in the past of the test machine's clock, well inside the retention.
    let (status, answer) = w.post(Some("s3cret"), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 3);
    let (status, answer) = w.post(Some("s3cret"), &body).await;
    assert_eq!(
        (
            status,
            answer["accepted"].as_u64(),
            answer["duplicates"].as_u64()
        ),
        (200, Some(0), Some(3))
    );
    let readings = w.readings().await;
    assert_eq!(readings.len(), 3, "{readings:?}");
    let pit = readings.iter().find(|r| r.probe_id == "pit").expect("pit");
    assert_eq!(
        (pit.temperature_c, pit.event_time, pit.source.as_str()),
        (Some(125.0), now, "http-push")
    );
    assert!(
        pit.received_time > now,
        "the receive time is kept beside the device time"
    );
    assert_eq!(
        readings
            .iter()
            .find(|r| r.probe_id == "meat-1")
            .map(|r| r.event_time),
        Some(now)
    );
    assert_eq!(
        readings
            .iter()
            .find(|r| r.probe_id == "meat-2")
            .map(|r| r.temperature_c),
        Some(None)
    );
    w.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_4xx_and_bad_readings_reach_the_dead_letter_topic() {
    let w = world().await;
    let good = json!({"device_id": "smoker", "readings": [{"probe_id": "pit", "value": 100.0}]})
        .to_string();
    let (status, answer) = w.post(None, &good).await;
    assert_eq!(status, 401, "{answer}");
    let (status, _) = w.post(Some("wrong"), &good).await;
    assert_eq!(status, 401);
    let (status, answer) = w.post(Some("other"), &good).await;
    assert_eq!(status, 403);
    assert!(
        answer["error"].as_str().expect("reason").contains("kettle"),
        "{answer}"
    );

    // Truncated JSON: 400 naming the position, and the body kept in dead-letter.
    let (status, answer) = w
        .post(
            Some("s3cret"),
            r#"{"device_id": "smoker", "readings": [{"probe_id": "#,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .expect("reason")
            .contains("line 1 column"),
        "{answer}"
    );

    // One good reading, and one of each kind of bad one.
    let body = json!({"device_id": "smoker", "readings": [
        {"probe_id": "pit", "value": 110.0},
        {"probe_id": "pit", "value": 5000.0},
        {"probe_id": "meat-1", "value": -300.0},
        {"probe_id": "meat-2", "value": 40.0, "time": 4_102_444_800_000i64},
        {"probe_id": "meat-3", "value": 40.0, "time": 946_684_800_000i64},
        {"probe_id": "meat-4", "value": "hot"},
        {"probe_id": "", "value": 40.0},
    ]})
    .to_string();
    let (status, answer) = w.post(Some("s3cret"), &body).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let reasons: Vec<(u64, String)> = answer["rejected"]
        .as_array()
        .expect("rejections")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().expect("index"),
                r["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect();
    let indexes: Vec<u64> = reasons.iter().map(|r| r.0).collect();
    assert_eq!(indexes, [1, 2, 3, 4, 5, 6]);
    assert!(reasons[0].1.contains("outside -50…1000"), "{reasons:?}");
    assert!(reasons[1].1.contains("sentinel"), "{reasons:?}");
    assert!(reasons[2].1.contains("future"), "{reasons:?}");
    assert!(reasons[3].1.contains("retention"), "{reasons:?}");
    assert!(reasons[4].1.contains("malformed"), "{reasons:?}");
    assert!(reasons[5].1.contains("probe id"), "{reasons:?}");

    let dead = w.dead_letters().await;
    assert_eq!(
        dead.len(),
        7,
        "six readings and one unreadable body: {dead:?}"
    );
    assert!(
        dead.iter()
            .all(|d| d["source"] == "http-push" && d["reason"].is_string())
    );
    assert!(
        dead.iter()
            .any(|d| d["payload"].as_str().is_some_and(|p| p.contains("5000")))
    );
    assert_eq!(w.readings().await.len(), 1);

    let (status, _) = {
        let r = reqwest::Client::new()
            .post(&w.url)
            .bearer_auth("s3cret")
            .header("content-type", "text/plain")
            .body(good.clone())
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 415);
    let huge = format!(
        "{{\"device_id\":\"smoker\",\"readings\":[{}]}}",
        vec!["{\"probe_id\":\"pit\",\"value\":1}"; 60_000].join(",")
    );
    let r = reqwest::Client::new()
        .post(&w.url)
        .bearer_auth("s3cret")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 413);
    w.shutdown.cancel();
}
