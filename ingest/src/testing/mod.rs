//! Local stand-ins for the thermometer clouds, answering as the protocol reference says
//! (feature `testsuite`). They let the adapters run unchanged — only their base URL set —
//! in tests and by hand.
#![allow(missing_docs)]

pub mod fireboard;
pub mod meater;
pub mod thermoworks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An embedded log in `dir` with every standard topic at `partitions`, and a codec on its
/// registry: the world most tests and benchmarks start from.
pub async fn embedded_log(
    dir: &std::path::Path,
    partitions: u32,
) -> Result<
    (
        Arc<emberline_log::EmbeddedLog>,
        Arc<emberline_schemas::EventCodec>,
    ),
    Box<dyn std::error::Error + Send + Sync>,
> {
    use emberline_log::EventLog;
    let log = emberline_log::EmbeddedLog::open(&dir.join("log.redb"))?;
    let registry = emberline_schemas::EmbeddedRegistry::shared(log.handle());
    let codec = emberline_schemas::EventCodec::connect(Arc::new(registry)).await?;
    for topic in emberline_log::topics::ALL {
        log.ensure_topic(topic, partitions).await?;
    }
    Ok((Arc::new(log), Arc::new(codec)))
}

/// A stand-in's state: what it counts.
pub trait Counted {
    /// Requests received, per endpoint.
    fn calls(&self) -> &HashMap<&'static str, u32>;
}

/// A running stand-in: its state, shared with its handlers, and its base URL.
pub struct Stand<C> {
    state: Arc<Mutex<C>>,
    /// The base URL to give the adapter (its `base_url` setting).
    pub url: String,
}

impl<C: Counted + Send + 'static> Stand<C> {
    /// Serves `app` (given the shared state) on `addr`; the base URL is the address plus `path`.
    async fn serve(
        addr: std::net::SocketAddr,
        state: C,
        path: &str,
        app: impl FnOnce(Arc<Mutex<C>>) -> Router,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(state));
        let router = app(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}{path}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Self { state, url })
    }

    /// Requests received by one endpoint.
    pub fn calls(&self, what: &str) -> u32 {
        self.with(|c| c.calls().get(what).copied().unwrap_or(0))
    }

    /// Changes (or reads) the stand-in's state.
    pub fn with<T>(&self, f: impl FnOnce(&mut C) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A failure a stand-in injects into its next data answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// This HTTP status with a Google error body.
    Status(u16),
    /// 429, with or without `Retry-After` seconds.
    TooMany(Option<u64>),
    /// A 200 whose JSON is cut off.
    Truncated,
    /// A 200 with an HTML error page.
    NotJson,
    /// An answer after this long (for timeouts).
    Slow(Duration),
}

impl Fault {
    /// The answer a real service gives in this failure.
    pub async fn respond(self) -> Response {
        match self {
            Fault::Status(s) => (
                StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(serde_json::json!({"error": {"code": s, "message": "backend error"}})),
            )
                .into_response(),
            Fault::TooMany(Some(s)) => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", s.to_string())], "slow down").into_response(),
            Fault::TooMany(None) => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
            Fault::Truncated => (StatusCode::OK, [("content-type", "application/json")], r#"[{"document": {"name": "projects/x/databases/(default)/documents/devices/A1", "fields": {"serial": {"stri"#).into_response(),
            Fault::NotJson => (StatusCode::OK, [("content-type", "text/html")], "<html>Service Unavailable</html>").into_response(),
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                (StatusCode::OK, "[]").into_response()
            }
        }
    }
}
