//! The HTTP push source: devices (or scripts, or bridges) POST JSON batches of readings.
//!
//! ```text
//! POST /v1/readings
//! Authorization: Bearer <the device's token>
//! Content-Type: application/json
//!
//! {"device_id": "smoker", "readings": [
//!   {"probe_id": "pit", "value": 225.5, "unit": "F", "time": 1790000000000},
//!   {"probe_id": "meat-1", "value": null}
//! ]}
//! ```
//!
//! `unit` is `C` (default), `F` or `K`; `time` is the device's epoch time in milliseconds
//! (or seconds — values below 10¹¹ are read as seconds), the receive time when absent;
//! `value: null` means the probe is unplugged. Each token belongs to one device.
//!
//! Answers: `200 {"accepted": n, "duplicates": d}`; `422` with the accepted count and each
//! rejected reading's index and reason (the others are kept); `400` for a body that is not
//! the shape above, naming where; `401` without a known token; `403` for another device's
//! token; `413` over the size limit; `415` without a JSON content type; `503` while the log
//! cannot take the readings (retry: repeats are recognised). Every rejected reading and
//! every unreadable body also goes to the `dead-letter` topic. `GET /v1/health` reports the
//! counters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::metrics::SourceMetrics;
use crate::validate::{Gate, RawReading, Rejected, Rejection, Unit};
use crate::{EventSink, IngestError, Source};
use emberline_common::Secret;
use emberline_common::clock::now_ms;

/// Settings of an HTTP push source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPushConfig {
    /// The tenant whose devices these are (`default` for a single household).
    pub tenant: String,
    /// Name in logs, metrics and on readings.
    pub name: String,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Device id → its token.
    pub tokens: BTreeMap<String, Secret>,
    /// A file of `device_id = "token"` lines (TOML), merged with `tokens`.
    pub tokens_file: Option<PathBuf>,
    /// Largest accepted body, bytes.
    pub max_body_bytes: usize,
    /// Readings older than this are refused, days (the log's retention).
    pub retention_days: u32,
}

impl Default for HttpPushConfig {
    fn default() -> Self {
        Self {
            tenant: emberline_common::tenant::DEFAULT_TENANT.into(),
            name: "http-push".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            tokens: BTreeMap::new(),
            tokens_file: None,
            max_body_bytes: 1 << 20,
            retention_days: 30,
        }
    }
}

/// The source.
pub struct HttpPush {
    config: HttpPushConfig,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
}

impl HttpPush {
    /// A source for `config`.
    pub fn new(config: HttpPushConfig) -> Self {
        Self {
            config,
            bound: None,
        }
    }

    /// Reports the bound address (useful with port 0).
    pub fn on_bound(mut self, tx: tokio::sync::oneshot::Sender<SocketAddr>) -> Self {
        self.bound = Some(tx);
        self
    }

    fn tokens(&self) -> Result<BTreeMap<String, Secret>, IngestError> {
        let mut tokens = self.config.tokens.clone();
        if let Some(path) = &self.config.tokens_file {
            let bad = |reason: String| IngestError::Config {
                source_name: self.config.name.clone(),
                reason,
            };
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad(format!("reading tokens_file {}: {e}", path.display())))?;
            let more: BTreeMap<String, Secret> = toml_lines(&text)
                .map_err(|e| bad(format!("tokens_file {}: {e}", path.display())))?;
            tokens.extend(more);
        }
        if tokens.is_empty() {
            return Err(IngestError::Config {
                source_name: self.config.name.clone(),
                reason: "no device tokens: set tokens or tokens_file".into(),
            });
        }
        Ok(tokens)
    }
}

/// Reads `key = "value"` lines (comments and blank lines allowed).
fn toml_lines(text: &str) -> Result<BTreeMap<String, Secret>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected device = \"token\"", n + 1))?;
        let unquote = |s: &str| s.trim().trim_matches('"').to_owned();
        out.insert(unquote(k), Secret::new(unquote(v)));
    }
    Ok(out)
}

struct Shared {
    name: String,
    tokens: BTreeMap<String, Secret>,
    gate: Mutex<Gate>,
    sink: EventSink,
    metrics: SourceMetrics,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    probe_id: String,
    value: Option<f64>,
    #[serde(default)]
    unit: Unit,
    time: Option<i64>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Epoch seconds or milliseconds, as milliseconds.
fn epoch_ms(t: i64) -> i64 {
    if t.abs() < 100_000_000_000 {
        t * 1_000
    } else {
        t
    }
}

async fn push(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.metrics.polled();
    let received = now_ms();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>`",
        );
    };
    let Some(owner) = shared
        .tokens
        .iter()
        .find(|(_, t)| constant_time_eq(t.expose().as_bytes(), token.as_bytes()))
        .map(|(d, _)| d.clone())
    else {
        return error(StatusCode::UNAUTHORIZED, "unknown token");
    };
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json",
        );
    }
    let batch = match parse_batch(&body) {
        Ok(b) => b,
        Err(e) => {
            let reason = format!("not a readings batch: {e}");
            dead_letter_body(&shared, &owner, &reason, &body, received).await;
            return error(StatusCode::BAD_REQUEST, reason);
        }
    };
    if batch.device_id != owner {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "this token is for device {owner:?}, not {:?}",
                batch.device_id
            ),
        );
    }
    let (raws, malformed) = split_batch(&batch);
    // Validate one by one to report each rejection's index.
    let mut readings = Vec::new();
    let mut rejected = malformed;
    let mut duplicates = 0;
    {
        let mut gate = shared.gate.lock().unwrap_or_else(|p| p.into_inner());
        for (index, raw) in raws {
            let mut out = gate.admit(vec![raw], received);
            readings.append(&mut out.readings);
            duplicates += out.duplicates;
            rejected.extend(out.rejected.into_iter().map(|r| (index, r)));
        }
    }
    rejected.sort_by_key(|(i, _)| *i);
    let admitted = crate::validate::Admitted {
        readings,
        rejected: rejected.iter().map(|(_, r)| r.clone()).collect(),
        duplicates,
    };
    let delivery = tokio::time::timeout(
        Duration::from_secs(10),
        shared.sink.deliver(&shared.name, &admitted, received),
    )
    .await;
    if !matches!(delivery, Ok(Ok(()))) {
        // The client is told to retry: its retry must not be taken for a repeat of readings
        // that never reached the log.
        shared
            .gate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(&admitted.readings);
    }
    match delivery {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            shared.metrics.failed("log");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the log did not take the readings: {e}; retry"),
            );
        }
        Err(_) => {
            shared.metrics.failed("log_timeout");
            let reason = match shared.sink.failing() {
                Some(why) => format!("the log is failing ({why}); retry (repeats are recognised)"),
                None => "the log is not answering; retry (repeats are recognised)".to_owned(),
            };
            return error(StatusCode::SERVICE_UNAVAILABLE, reason);
        }
    }
    shared.metrics.delivered(&admitted, received);
    let accepted = admitted.readings.len();
    if rejected.is_empty() {
        return (
            StatusCode::OK,
            axum::Json(json!({ "accepted": accepted, "duplicates": duplicates })),
        )
            .into_response();
    }
    let details: Vec<_> = rejected
        .iter()
        .map(|(index, r)| json!({ "index": index, "probe_id": r.probe_id, "reason": r.reason.to_string() }))
        .collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({ "accepted": accepted, "duplicates": duplicates, "rejected": details })),
    )
        .into_response()
}

/// A readings batch as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The device the readings are from.
    pub device_id: String,
    /// The readings, each checked on its own.
    pub readings: Vec<serde_json::Value>,
}

/// Parses a posted body. Never panics, whatever the bytes (a fuzz target checks).
pub fn parse_batch(body: &[u8]) -> Result<Batch, serde_json::Error> {
    serde_json::from_slice(body)
}

/// A reading with its place in the batch.
pub type Indexed<T> = (usize, T);

/// The batch's readings, each parsed on its own: readable ones (with their index) and
/// refused ones (with theirs). Never panics.
pub fn split_batch(batch: &Batch) -> (Vec<Indexed<RawReading>>, Vec<Indexed<Rejected>>) {
    let mut raws = Vec::new();
    let mut malformed = Vec::new();
    for (index, value) in batch.readings.iter().enumerate() {
        let raw = value.to_string().into_bytes();
        match serde_json::from_value::<Item>(value.clone()) {
            Ok(item) => raws.push((
                index,
                RawReading {
                    device_id: batch.device_id.clone(),
                    probe_id: item.probe_id,
                    device_time_ms: item.time.map(epoch_ms),
                    value: item.value,
                    unit: item.unit,
                    raw,
                },
            )),
            Err(e) => malformed.push((
                index,
                Rejected {
                    device_id: batch.device_id.clone(),
                    probe_id: String::new(),
                    reason: Rejection::Malformed(e.to_string()),
                    raw,
                },
            )),
        }
    }
    (raws, malformed)
}

async fn dead_letter_body(shared: &Shared, device: &str, reason: &str, body: &[u8], received: i64) {
    let rejected = [Rejected {
        device_id: device.to_owned(),
        probe_id: String::new(),
        reason: Rejection::Malformed(reason.to_owned()),
        raw: body.to_vec(),
    }];
    shared.metrics.rejected(&rejected[0].reason);
    let sent = tokio::time::timeout(
        Duration::from_secs(10),
        shared.sink.dead_letters(&shared.name, &rejected, received),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::error!(source = %shared.name, "could not record a malformed body in the dead-letter topic");
    }
}

/// Compares tokens without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "source": shared.name, "metrics": shared.metrics.to_json() }))
        .into_response()
}

#[async_trait]
impl Source for HttpPush {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn run(
        &mut self,
        sink: EventSink,
        shutdown: CancellationToken,
    ) -> Result<(), IngestError> {
        let tokens = self.tokens()?;
        let shared = Arc::new(Shared {
            name: self.config.name.clone(),
            tokens,
            gate: Mutex::new(Gate::new(
                &self.config.name,
                i64::from(self.config.retention_days) * 86_400_000,
            )),
            sink,
            metrics: SourceMetrics::new(&self.config.name),
        });
        let app = Router::new()
            .route("/v1/readings", post(push))
            .route("/v1/health", get(health))
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind(self.config.listen)
            .await
            .map_err(|e| IngestError::Config {
                source_name: self.config.name.clone(),
                reason: format!("cannot listen on {}: {e}", self.config.listen),
            })?;
        let local = listener.local_addr().map_err(|e| IngestError::Config {
            source_name: self.config.name.clone(),
            reason: e.to_string(),
        })?;
        tracing::info!(source = %self.config.name, url = %format!("http://{local}/v1/readings"), "HTTP push endpoint listening");
        if let Some(tx) = self.bound.take() {
            let _ = tx.send(local);
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(|e| IngestError::Config {
                source_name: self.config.name.clone(),
                reason: format!("server failed: {e}"),
            })
    }
}
