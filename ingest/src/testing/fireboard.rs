//! A local stand-in for FireBoard Cloud: `POST /api/rest-auth/login/`,
//! `GET /api/v1/devices.json` and `GET /api/v1/devices/<uuid>/drivelog.json`, with
//! `Authorization: Token <key>`, and FireBoard's rule that more than 200 calls in an hour
//! blocks the account (every later call gets 429 and the block is recorded).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use super::Fault;

/// The account's user name.
pub const USERNAME: &str = "cook@example.com";

/// The server's state; tests change it to act as the cloud would.
#[derive(Default)]
pub struct Cloud {
    /// The account's password.
    pub password: String,
    /// Keys the API accepts.
    pub keys: HashSet<String>,
    issued: u32,
    /// Requests per endpoint (`login`, `devices`, `drivelog`).
    pub calls: HashMap<&'static str, u32>,
    arrivals: VecDeque<Instant>,
    /// Set once the account went over 200 calls in an hour.
    pub blocked: bool,
    /// Failures to inject, one per data request.
    pub faults: VecDeque<Fault>,
    /// What `devices.json` lists.
    pub devices: Vec<Value>,
    /// uuid → drive log.
    pub drivelogs: HashMap<String, Value>,
}

type Shared = Arc<Mutex<Cloud>>;

impl super::Counted for Cloud {
    fn calls(&self) -> &HashMap<&'static str, u32> {
        &self.calls
    }
}

/// A FireBoard 2 Drive: two channels (°F), the second disabled, battery 82 %.
pub fn fireboard_drive(uuid: &str, pit_f: f64, created: &str) -> Value {
    json!({
        "uuid": uuid, "title": "Kamado", "model": "FBX2D", "channel_count": 6, "degreetype": 2, "version": "2.0.5",
        "channels": [
            {"channel": 1, "channel_label": "Ambient", "enabled": true},
            {"channel": 2, "channel_label": "Pork butt", "enabled": true},
            {"channel": 3, "channel_label": "Spare", "enabled": false}
        ],
        "latest_temps": [
            {"temp": pit_f, "channel": 1, "degreetype": 2, "created": created},
            {"temp": 150.2, "channel": 2, "degreetype": 2, "created": created},
            {"temp": 70.0, "channel": 3, "degreetype": 2, "created": created}
        ],
        "device_log": {"vBattPer": 0.82, "signallevel": -58}
    })
}

async fn handle(
    State(cloud): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = {
        let mut c = cloud.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while c
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t).as_secs() >= 3_600)
        {
            c.arrivals.pop_front();
        }
        c.arrivals.push_back(now);
        if c.arrivals.len() > 200 {
            c.blocked = true;
        }
        if c.blocked {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"detail": "Request was throttled."})),
            )
                .into_response();
        }
        let path = uri.path().to_owned();
        if method == Method::POST && path == "/api/rest-auth/login/" {
            *c.calls.entry("login").or_default() += 1;
            let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if req["username"] != USERNAME || req["password"] != c.password.as_str() {
                return (StatusCode::BAD_REQUEST, axum::Json(json!({"non_field_errors": ["Unable to log in with provided credentials."]}))).into_response();
            }
            c.issued += 1;
            let key = format!("key-{}", c.issued);
            c.keys.insert(key.clone());
            return axum::Json(json!({"key": key})).into_response();
        }
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Token "));
        let authorised = token.is_some_and(|t| c.keys.contains(t));
        let what = if method == Method::GET && path == "/api/v1/devices.json" {
            "devices"
        } else if method == Method::GET
            && path.starts_with("/api/v1/devices/")
            && path.ends_with("/drivelog.json")
        {
            "drivelog"
        } else {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"detail": "Not found."})),
            )
                .into_response();
        };
        *c.calls.entry(what).or_default() += 1;
        if !authorised {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"detail": "Invalid token."})),
            )
                .into_response();
        }
        match c.faults.pop_front() {
            Some(f) => f,
            None if what == "devices" => {
                return axum::Json(Value::Array(c.devices.clone())).into_response();
            }
            None => {
                let uuid = path
                    .trim_start_matches("/api/v1/devices/")
                    .trim_end_matches("/drivelog.json");
                return match c.drivelogs.get(uuid) {
                    Some(log) => axum::Json(log.clone()).into_response(),
                    None => (
                        StatusCode::NOT_FOUND,
                        axum::Json(json!({"detail": "Not found."})),
                    )
                        .into_response(),
                };
            }
        }
    };
    fault.respond().await
}

/// A running fake FireBoard Cloud.
pub type FakeFireboard = super::Stand<Cloud>;

impl FakeFireboard {
    /// Serves on `addr` an account ([`USERNAME`], `password`) with no devices yet.
    pub async fn start(addr: std::net::SocketAddr, password: &str) -> std::io::Result<Self> {
        let cloud = Cloud {
            password: password.into(),
            ..Cloud::default()
        };
        Self::serve(addr, cloud, "", |state| {
            Router::new().fallback(handle).with_state(state)
        })
        .await
    }
}
