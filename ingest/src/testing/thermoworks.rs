//! A local stand-in for ThermoWorks Cloud that answers exactly as the protocol reference
//! describes: the Firebase web config, Identity Toolkit sign-in (with `INVALID_PASSWORD` and
//! friends), Secure Token refresh, and Firestore documents in its typed encoding — plus the
//! failures the real services produce (5xx, 429 with and without `Retry-After`, truncated and
//! malformed bodies, slow answers). Tests drive it; `examples/thermoworks-cloud.rs` runs it
//! for trying the adapter by hand.
#![allow(clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use super::Fault;

/// ThermoWorks' public web-client API key.
pub const KEY: &str = "AIzaSyCf079iccUFc1k7VHdGXng22zXDy8Y3KEY";
/// ThermoWorks' web app id.
pub const APP: &str = "1:78998049458:web:b41e9d405d8c7de95eefab";
/// The project id the server reports.
pub const PROJECT: &str = "smoke-cloud-test";

/// The server's state; tests change it to act as the cloud would.
#[derive(Default)]
pub struct Cloud {
    /// The account's password (the e-mail is [`EMAIL`]).
    pub password: String,
    /// Id tokens that Firestore accepts.
    pub id_tokens: HashSet<String>,
    /// Refresh tokens the token endpoint accepts.
    pub refresh_tokens: HashSet<String>,
    issued: u32,
    /// Lifetime of issued tokens, seconds.
    pub expires_in: u64,
    /// Requests per endpoint (`webConfig`, `signIn`, `refresh`, `firestore`, `user`,
    /// `runQuery`, `channel`, `unauthorized`).
    pub calls: HashMap<&'static str, u32>,
    /// Failures to inject, one per Firestore request.
    pub faults: VecDeque<Fault>,
    /// serial → (device fields, channels by number), as plain JSON.
    pub devices: BTreeMap<String, (Value, BTreeMap<u32, Value>)>,
}

/// The account's e-mail.
pub const EMAIL: &str = "cook@example.com";

type Shared = Arc<Mutex<Cloud>>;

impl super::Counted for Cloud {
    fn calls(&self) -> &HashMap<&'static str, u32> {
        &self.calls
    }
}

/// A plain JSON value in Firestore's typed encoding.
pub fn typed(v: &Value) -> Value {
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
        Err(fault) => fault.respond().await,
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
    let mut c = cloud.lock().unwrap_or_else(|p| p.into_inner());
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
        if req["email"] != EMAIL {
            return Ok(google_error(StatusCode::BAD_REQUEST, "EMAIL_NOT_FOUND"));
        }
        if req["password"] != c.password.as_str() {
            return Ok(google_error(StatusCode::BAD_REQUEST, "INVALID_PASSWORD"));
        }
        c.issued += 1;
        let (id, refresh) = (format!("id-{}", c.issued), format!("refresh-{}", c.issued));
        c.id_tokens.insert(id.clone());
        c.refresh_tokens.insert(refresh.clone());
        return Ok(axum::Json(json!({"kind": "identitytoolkit#VerifyPasswordResponse", "localId": "uid-1", "email": EMAIL, "displayName": "", "idToken": id, "registered": true, "refreshToken": refresh, "expiresIn": c.expires_in.to_string()})).into_response());
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

/// Epoch ms as the RFC 3339 string Firestore uses.
pub use crate::cloud::firestore::format_rfc3339_ms as stamp;

/// A ThermoWorks Node last seen at `seen_ms`: a pit channel in °F with a high alarm, a
/// meat channel in °C, and a humidity channel.
pub fn node(seen_ms: i64) -> (Value, BTreeMap<u32, Value>) {
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

/// A running fake ThermoWorks Cloud.
pub type FakeThermoworks = super::Stand<Cloud>;

impl FakeThermoworks {
    /// Serves on `addr` an account ([`EMAIL`], `password`) owning one Node, serial `A1`,
    /// last seen at `seen_ms`.
    pub async fn start(
        addr: std::net::SocketAddr,
        password: &str,
        seen_ms: i64,
    ) -> std::io::Result<Self> {
        let cloud = Cloud {
            password: password.into(),
            expires_in: 3_600,
            devices: BTreeMap::from([("A1".to_owned(), node(seen_ms))]),
            ..Cloud::default()
        };
        Self::serve(addr, cloud, "", |state| {
            Router::new().fallback(handle).with_state(state)
        })
        .await
    }
}
