//! The ThermoWorks Cloud adapter, unchanged, against a local server that answers exactly as
//! the protocol reference describes: Firebase web config, Identity Toolkit sign-in and
//! Secure Token refresh, Firestore documents with typed values — plus the failures the
//! real services produce.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use emberline_ingest::cloud::thermoworks::{Thermoworks, ThermoworksConfig};
use emberline_ingest::cloud::{CloudAdapter, CloudError, CloudPoller, Secret};
use emberline_ingest::validate::Unit;
use emberline_ingest::{EventSink, run_source};
use emberline_log::{EmbeddedLog, EventLog, conformance::read_to_end, topics};
use emberline_schemas::events::{DeviceStatus, ProbeReading};
use emberline_schemas::{EmbeddedRegistry, EventCodec};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const KEY: &str = "AIzaSyCf079iccUFc1k7VHdGXng22zXDy8Y3KEY";
const APP: &str = "1:78998049458:web:b41e9d405d8c7de95eefab";
const PROJECT: &str = "smoke-cloud-test";
const NOW: i64 = 1_795_000_000_000;

/// A failure the server injects into the next Firestore answer.
#[derive(Clone, Debug)]
enum Fault {
    Status(u16),
    TooMany(Option<u64>),
    Truncated,
    NotJson,
    Slow(Duration),
}

#[derive(Default)]
struct Cloud {
    password: String,
    id_tokens: HashSet<String>,
    refresh_tokens: HashSet<String>,
    issued: u32,
    expires_in: u64,
    calls: HashMap<&'static str, u32>,
    faults: VecDeque<Fault>,
    /// serial → (device fields, channels by number).
    devices: BTreeMap<String, (Value, BTreeMap<u32, Value>)>,
}

type Shared = Arc<Mutex<Cloud>>;

fn typed(v: &Value) -> Value {
    match v {
        Value::String(s) if s.ends_with('Z') && s.contains('T') => json!({"timestampValue": s}),
        Value::String(s) => json!({"stringValue": s}),
        Value::Bool(b) => json!({"booleanValue": b}),
        Value::Number(n) if n.is_i64() => json!({"integerValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n}),
        Value::Object(m) => {
            json!({"mapValue": {"fields": m.iter().map(|(k, v)| (k.clone(), typed(v))).collect::<serde_json::Map<_, _>>()}})
        }
        Value::Array(a) => {
            json!({"arrayValue": {"values": a.iter().map(typed).collect::<Vec<_>>()}})
        }
        Value::Null => json!({"nullValue": null}),
    }
}

fn document(name: String, plain: &Value) -> Value {
    let fields: serde_json::Map<_, _> = plain
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), typed(v)))
        .collect();
    json!({"name": name, "fields": fields, "createTime": "2026-01-01T00:00:00Z", "updateTime": "2026-11-27T00:00:00Z"})
}

fn google_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "errors": [{"message": message, "domain": "global", "reason": "invalid"}]}}))).into_response()
}

async fn handle(
    State(cloud): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match route(&cloud, &method, &uri, &headers, &body) {
        Ok(response) => response,
        Err(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "[]").into_response()
        }
        Err(Fault::Status(s)) => google_error(StatusCode::from_u16(s).expect("status"), "backend error"),
        Err(Fault::TooMany(Some(s))) => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", s.to_string())], "slow down").into_response(),
        Err(Fault::TooMany(None)) => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        Err(Fault::Truncated) => (StatusCode::OK, [("content-type", "application/json")], r#"[{"document": {"name": "projects/x/databases/(default)/documents/devices/A1", "fields": {"serial": {"stri"#).into_response(),
        Err(Fault::NotJson) => (StatusCode::OK, [("content-type", "text/html")], "<html>Service Unavailable</html>").into_response(),
    }
}

/// Answers a request, or returns the fault to inject instead.
fn route(
    cloud: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Fault> {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let docs = format!("/v1/projects/{PROJECT}/databases/(default)/documents");
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let mut c = cloud.lock().expect("lock");
    let count = |c: &mut Cloud, what: &'static str| *c.calls.entry(what).or_default() += 1;
    if *method == Method::GET && path == format!("/v1alpha/projects/-/apps/{APP}/webConfig") {
        count(&mut c, "webConfig");
        if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
            return Ok(google_error(StatusCode::FORBIDDEN, "API key not valid"));
        }
        return Ok(axum::Json(json!({"projectId": PROJECT, "appId": APP, "storageBucket": format!("{PROJECT}.appspot.com"), "authDomain": format!("{PROJECT}.firebaseapp.com")})).into_response());
    }
    if *method == Method::POST && path == "/v1/accounts:signInWithPassword" {
        count(&mut c, "signIn");
        assert_eq!(query, format!("key={KEY}"));
        let req: Value = serde_json::from_slice(body).expect("sign-in body");
        assert_eq!(req["returnSecureToken"], true);
        if req["email"] != "cook@example.com" {
            return Ok(google_error(StatusCode::BAD_REQUEST, "EMAIL_NOT_FOUND"));
        }
        if req["password"] != c.password.as_str() {
            return Ok(google_error(StatusCode::BAD_REQUEST, "INVALID_PASSWORD"));
        }
        c.issued += 1;
        let (id, refresh) = (format!("id-{}", c.issued), format!("refresh-{}", c.issued));
        c.id_tokens.insert(id.clone());
        c.refresh_tokens.insert(refresh.clone());
        return Ok(axum::Json(json!({"kind": "identitytoolkit#VerifyPasswordResponse", "localId": "uid-1", "email": "cook@example.com", "displayName": "", "idToken": id, "registered": true, "refreshToken": refresh, "expiresIn": c.expires_in.to_string()})).into_response());
    }
    if *method == Method::POST && path == "/v1/token" {
        count(&mut c, "refresh");
        let req: Value = serde_json::from_slice(body).expect("refresh body");
        assert_eq!(req["grant_type"], "refresh_token");
        let old = req["refresh_token"].as_str().unwrap_or("").to_owned();
        if !c.refresh_tokens.contains(&old) {
            return Ok(google_error(
                StatusCode::BAD_REQUEST,
                "INVALID_REFRESH_TOKEN",
            ));
        }
        c.issued += 1;
        let (id, refresh) = (format!("id-{}", c.issued), format!("refresh-{}", c.issued));
        c.id_tokens.insert(id.clone());
        c.refresh_tokens.insert(refresh.clone());
        return Ok(axum::Json(json!({"access_token": id, "expires_in": c.expires_in.to_string(), "token_type": "Bearer", "refresh_token": refresh, "id_token": id, "user_id": "uid-1", "project_id": "78998049458"})).into_response());
    }
    let Some(rest) = path.strip_prefix(&docs) else {
        return Ok(google_error(StatusCode::NOT_FOUND, "no such endpoint"));
    };
    count(&mut c, "firestore");
    if !bearer.as_ref().is_some_and(|t| c.id_tokens.contains(t)) {
        count(&mut c, "unauthorized");
        return Ok(google_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials.",
        ));
    }
    if let Some(fault) = c.faults.pop_front() {
        return Err(fault);
    }
    if *method == Method::GET && rest == "/users/uid-1" {
        count(&mut c, "user");
        return Ok(axum::Json(document(format!("projects/{PROJECT}/databases/(default)/documents/users/uid-1"), &json!({"accountId": "acct-9", "preferredUnits": "F", "timeZone": "America/Chicago", "deviceOrder": {"acct-9": ["A1"]}}))).into_response());
    }
    if *method == Method::POST && rest == ":runQuery" {
        count(&mut c, "runQuery");
        let req: Value = serde_json::from_slice(body).expect("query");
        assert_eq!(
            req["structuredQuery"]["where"]["fieldFilter"]["value"]["stringValue"],
            "acct-9"
        );
        let rows: Vec<Value> = c
            .devices
            .iter()
            .map(|(serial, (d, _))| json!({"document": document(format!("projects/{PROJECT}/databases/(default)/documents/devices/{serial}"), d), "readTime": "2026-11-27T00:00:00Z"}))
            .collect();
        return Ok(axum::Json(if rows.is_empty() {
            json!([{"readTime": "2026-11-27T00:00:00Z"}])
        } else {
            Value::Array(rows)
        })
        .into_response());
    }
    if let Some(channel) = rest
        .strip_prefix("/devices/")
        .and_then(|r| r.split_once("/channels/"))
    {
        count(&mut c, "channel");
        let (serial, n) = (channel.0.to_owned(), channel.1.parse::<u32>().unwrap_or(0));
        return Ok(match c.devices.get(&serial).and_then(|(_, chans)| chans.get(&n)) {
            Some(ch) => axum::Json(document(format!("projects/{PROJECT}/databases/(default)/documents/devices/{serial}/channels/{n}"), ch)).into_response(),
            None => google_error(StatusCode::NOT_FOUND, &format!("Document \"projects/{PROJECT}/databases/(default)/documents/devices/{serial}/channels/{n}\" not found.")),
        });
    }
    Ok(google_error(StatusCode::NOT_FOUND, "not found"))
}

fn stamp(ms: i64) -> String {
    let secs = ms / 1000;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Days to a civil date (inverse of days_from_civil).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        ms % 1000
    )
}

fn node(seen_ms: i64) -> (Value, BTreeMap<u32, Value>) {
    let device = json!({
        "serial": "A1", "deviceId": "A1", "label": "Back yard Node", "type": "datalogger", "device": "node",
        "firmware": "1.2.3", "battery": 87, "batteryState": "discharging", "wifi_stength": -61, "status": "online",
        "lastSeen": stamp(seen_ms), "lastTelemetrySaved": stamp(seen_ms), "accountId": "acct-9",
        "recordingIntervalInSeconds": 60, "transmitIntervalInSeconds": 600
    });
    let channels = BTreeMap::from([
        (
            1,
            json!({"value": 225.5, "units": "F", "status": "NORMAL", "type": "TEMPERATURE", "label": "Pit", "number": "1",
                   "lastSeen": stamp(seen_ms), "lastTelemetrySaved": stamp(seen_ms),
                   "alarmHigh": {"enabled": true, "alarming": false, "value": 275, "units": "F"}, "alarmLow": {"enabled": false, "alarming": false, "value": 0, "units": "F"},
                   "minimum": {"reading": {"value": 200.1, "units": "F"}, "dateReading": stamp(seen_ms - 60_000)}}),
        ),
        (
            2,
            json!({"value": 71.25, "units": "C", "label": "Brisket", "number": "2", "lastSeen": stamp(seen_ms), "lastTelemetrySaved": stamp(seen_ms)}),
        ),
        (
            3,
            json!({"value": 55.0, "units": "H", "label": "Humidity", "number": "3", "lastSeen": stamp(seen_ms), "lastTelemetrySaved": stamp(seen_ms)}),
        ),
    ]);
    (device, channels)
}

struct Server {
    cloud: Shared,
    url: String,
}

async fn server() -> Server {
    let cloud: Shared = Arc::new(Mutex::new(Cloud {
        password: "s3cret".into(),
        expires_in: 3_600,
        devices: BTreeMap::from([("A1".to_owned(), node(NOW))]),
        ..Cloud::default()
    }));
    let app = Router::new().fallback(handle).with_state(cloud.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { cloud, url }
}

impl Server {
    fn calls(&self, what: &str) -> u32 {
        self.cloud
            .lock()
            .expect("lock")
            .calls
            .get(what)
            .copied()
            .unwrap_or(0)
    }
    fn with<T>(&self, f: impl FnOnce(&mut Cloud) -> T) -> T {
        f(&mut self.cloud.lock().expect("lock"))
    }
    fn config(&self, password: &str) -> ThermoworksConfig {
        ThermoworksConfig {
            username: "cook@example.com".into(),
            password: Some(Secret(password.into())),
            base_url: Some(self.url.clone()),
            poll_interval_s: 5,
            request_timeout_s: 1,
            ..ThermoworksConfig::default()
        }
    }
}

#[tokio::test]
async fn a_poll_signs_in_reads_the_account_devices_and_channels_and_emits_only_new_readings() {
    let s = server().await;
    let mut tw = Thermoworks::new(s.config("s3cret")).expect("config");
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
    let mut tw = Thermoworks::new(s.config("s3cret")).expect("config");
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
    let mut bad = Thermoworks::new(s.config("wrong")).expect("config");
    match bad.poll(NOW).await {
        Err(CloudError::CredentialsRejected(code)) => assert_eq!(code, "INVALID_PASSWORD"),
        other => panic!("{other:?}"),
    }
    let mut tw = Thermoworks::new(s.config("s3cret")).expect("config");
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
        (
            Fault::Slow(Duration::from_secs(3)),
            |e| matches!(e, CloudError::Upstream(m) if m.contains("timed out")),
        ),
    ];
    for (fault, expected) in cases {
        s.with(|c| c.faults.push_back(fault.clone()));
        // The fault hits the first Firestore call of the poll (the devices query).
        let err = tw.poll(NOW + 1).await.expect_err("a fault");
        assert!(expected(&err), "{fault:?} gave {err:?}");
    }
    tw.poll(NOW + 2).await.expect("recovers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_delivers_celsius_readings_dead_letters_bad_answers_and_reports_rejected_credentials()
 {
    let s = server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("log"));
    let codec = Arc::new(
        EventCodec::connect(Arc::new(EmbeddedRegistry::new(log.database())))
            .await
            .expect("codec"),
    );
    for topic in topics::ALL {
        log.ensure_topic(topic, 1).await.expect("topic");
    }
    // A fresh stamp so the readings are inside the retention.
    let fresh = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 5_000;
    s.with(|c| {
        c.devices.insert("A1".into(), node(fresh));
        c.faults.push_back(Fault::Truncated);
    });
    let shutdown = CancellationToken::new();
    let poller = CloudPoller::new(Thermoworks::new(s.config("s3cret")).expect("config"), 30);
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
    let mut tw = Thermoworks::new(s.config("s3cret")).expect("config");
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
        for r in read(topics::DEVICE_EVENTS).await {
            if let Ok(status) = codec.decode::<DeviceStatus>(&r.value).await
                && let Some(note) = status.note
            {
                found = Some(note);
            }
        }
        if let Some(note) = found {
            break note;
        }
        let end = log.end_offset(topics::DEVICE_EVENTS, 0).await.expect("end");
        log.reader(topics::DEVICE_EVENTS, 0, end)
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
