//! A local stand-in for MEATER Cloud's public REST API: `POST /v1/login` and
//! `GET /v1/devices` in the documented envelope (`status`, `statusCode`, `data`, `meta`),
//! 401 for a bad password or an expired token, and the documented hard limit of 60
//! requests a minute answered with 429.

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

/// The account's e-mail.
pub const EMAIL: &str = "cook@example.com";

/// The server's state; tests change it to act as the cloud would.
#[derive(Default)]
pub struct Cloud {
    /// The account's password.
    pub password: String,
    /// Tokens `/devices` accepts.
    pub tokens: HashSet<String>,
    issued: u32,
    /// Requests per endpoint (`login`, `devices`).
    pub calls: HashMap<&'static str, u32>,
    /// When each request arrived (for the rate limit).
    pub arrivals: VecDeque<Instant>,
    /// Failures to inject, one per `/devices` request.
    pub faults: VecDeque<Fault>,
    /// The devices `/devices` lists (probes in a cook).
    pub devices: Vec<Value>,
}

type Shared = Arc<Mutex<Cloud>>;

impl super::Counted for Cloud {
    fn calls(&self) -> &HashMap<&'static str, u32> {
        &self.calls
    }
}

fn envelope(status: StatusCode, data: Value) -> Response {
    let word = if status.is_success() {
        "OK"
    } else {
        status.canonical_reason().unwrap_or("Error")
    };
    (
        status,
        axum::Json(
            json!({"status": word, "statusCode": status.as_u16(), "data": data, "meta": {}}),
        ),
    )
        .into_response()
}

/// A probe in a cook: internal and ambient °C, last update at `updated_s`.
pub fn probe(id: &str, internal: f64, ambient: f64, updated_s: i64) -> Value {
    json!({
        "id": id,
        "temperature": {"internal": internal, "ambient": ambient},
        "cook": {"id": "cook-1", "name": "Brisket", "state": "Started", "temperature": {"target": 93.0, "peak": internal}, "time": {"elapsed": 7200, "remaining": 14400}},
        "updated_at": updated_s
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
            .is_some_and(|t| now.duration_since(*t).as_secs() >= 60)
        {
            c.arrivals.pop_front();
        }
        c.arrivals.push_back(now);
        if c.arrivals.len() > 60 {
            return envelope(StatusCode::TOO_MANY_REQUESTS, Value::Null);
        }
        match (&method, uri.path()) {
            (&Method::POST, "/v1/login") => {
                *c.calls.entry("login").or_default() += 1;
                let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if req["email"] != EMAIL || req["password"] != c.password.as_str() {
                    return envelope(StatusCode::UNAUTHORIZED, Value::Null);
                }
                c.issued += 1;
                let token = format!("jwt-{}", c.issued);
                c.tokens.insert(token.clone());
                return envelope(StatusCode::OK, json!({"token": token, "userId": "user-1"}));
            }
            (&Method::GET, "/v1/devices") => {
                *c.calls.entry("devices").or_default() += 1;
                let bearer = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                if !bearer.is_some_and(|t| c.tokens.contains(t)) {
                    return envelope(StatusCode::UNAUTHORIZED, Value::Null);
                }
                match c.faults.pop_front() {
                    Some(f) => f,
                    None => return envelope(StatusCode::OK, json!({"devices": c.devices})),
                }
            }
            _ => return envelope(StatusCode::NOT_FOUND, Value::Null),
        }
    };
    fault.respond().await
}

/// A running fake MEATER Cloud.
pub type FakeMeater = super::Stand<Cloud>;

impl FakeMeater {
    /// Serves on `addr` an account ([`EMAIL`], `password`) with no probe in a cook yet.
    pub async fn start(addr: std::net::SocketAddr, password: &str) -> std::io::Result<Self> {
        let cloud = Cloud {
            password: password.into(),
            ..Cloud::default()
        };
        Self::serve(addr, cloud, "/v1", |state| {
            Router::new().fallback(handle).with_state(state)
        })
        .await
    }
}
