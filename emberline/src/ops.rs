//! The operations endpoint every role serves on `ops.addr`: `GET /healthz` (the process
//! runs; for liveness probes) and `GET /readyz` (every part of the role is ready to take
//! traffic — for a processor or a gateway, caught up with the log as it was at start — for
//! readiness probes and load balancers) and `GET /metrics` (Prometheus text format; see
//! [`exporter`] and `docs/metrics.md`).

mod exporter;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use emberline_log::EventLog;
use emberline_projections::ProjectionStore;
use tokio_util::sync::CancellationToken;

pub(crate) use self::exporter::install as install_metrics;

/// What is not ready yet, by part; empty when the role is ready.
#[derive(Clone, Default)]
pub(crate) struct Readiness {
    waiting: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Readiness {
    /// Marks `part` as not ready, with what it waits for.
    pub(crate) fn waiting(&self, part: &'static str, reason: impl Into<String>) {
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(part, reason.into());
        }
    }

    /// Marks `part` as ready.
    pub(crate) fn ready(&self, part: &'static str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(part);
        }
    }

    /// `None` when ready, else what is missing, one part a line.
    fn missing(&self) -> Option<String> {
        let w = self.waiting.lock().ok()?;
        (!w.is_empty()).then(|| {
            w.iter()
                .map(|(part, why)| format!("{part}: {why}\n"))
                .collect()
        })
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, String) {
    match readiness.missing() {
        None => (StatusCode::OK, "ready\n".into()),
        Some(missing) => (StatusCode::SERVICE_UNAVAILABLE, missing),
    }
}

/// Whether `headers` carry `token` as a bearer (compared in constant time).
fn carries(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The endpoint's routes. With `metrics_token`, `/metrics` answers only a scraper that
/// sends it as a bearer (health and readiness stay open: probes carry no credentials).
pub(crate) fn router(
    readiness: Readiness,
    metrics_token: Option<emberline_common::Secret>,
) -> Router {
    let metrics = get(move |headers: axum::http::HeaderMap| {
        let token = metrics_token.clone();
        async move {
            if let Some(token) = token
                && !carries(&headers, token.expose())
            {
                return (
                    StatusCode::UNAUTHORIZED,
                    "send `Authorization: Bearer <ops.metrics_token>`\n",
                )
                    .into_response();
            }
            exporter::render().await.into_response()
        }
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", metrics)
        .with_state(readiness)
        .merge(crate::backup::routes())
}

/// Serves the endpoint on `addr` until `shutdown`.
pub(crate) async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    metrics_token: Option<emberline_common::Secret>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    install_metrics()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("ops endpoint on {addr} (ops.addr): {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "health, readiness and metrics endpoint listening");
    axum::serve(listener, router(readiness, metrics_token))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// Keeps `part` not ready until the projections cover, for every partition of `topic`, the
/// log's end as it was when this was called (positions under `applied_key`): a process that
/// starts behind the log says so until it has caught up.
pub(crate) async fn watch_catch_up(
    readiness: Readiness,
    part: &'static str,
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    topic: &'static str,
    applied_key: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    readiness.waiting(part, format!("reading the end of {topic}"));
    let mut ends = BTreeMap::new();
    for p in 0..log.partitions(topic).await? {
        ends.insert(p, log.end_offset(topic, p).await?);
    }
    let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        let applied = store.applied_positions(&applied_key).await?;
        let behind: u64 = ends
            .iter()
            .map(|(p, end)| end.saturating_sub(applied.get(p).copied().unwrap_or(0)))
            .sum();
        if behind == 0 {
            readiness.ready(part);
            tracing::info!(part, topic, "caught up with the log");
            return Ok(());
        }
        readiness.waiting(part, format!("{behind} records of {topic} to catch up"));
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_when_no_part_waits_and_says_what_is_missing() {
        emberline_common::http::install_crypto_provider();
        let readiness = Readiness::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let server = {
            let (r, s) = (readiness.clone(), shutdown.clone());
            tokio::spawn(async move {
                axum::serve(listener, router(r, None))
                    .with_graceful_shutdown(async move { s.cancelled().await })
                    .await
            })
        };
        let get = |path: &'static str| async move {
            let r = reqwest::get(format!("http://{addr}{path}"))
                .await
                .expect("get");
            (r.status().as_u16(), r.text().await.expect("body"))
        };
        readiness.waiting("processor", "12 records of probe.readings to catch up");
        assert_eq!(get("/healthz").await.0, 200);
        let (status, body) = get("/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("processor: 12 records"), "{body}");
        readiness.ready("processor");
        assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));
        install_metrics().expect("install the recorder");
        metrics::counter!("emberline_ops_test_total", "part" => "ops").increment(3);
        let (status, body) = get("/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("emberline_ops_test_total{part=\"ops\"} 3"),
            "{body}"
        );
        assert!(body.contains("emberline_build_info{version="), "{body}");
        shutdown.cancel();
        server.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn with_a_metrics_token_only_its_bearer_reads_metrics_and_probes_stay_open() {
        emberline_common::http::install_crypto_provider();
        install_metrics().expect("install the recorder");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let token = emberline_common::Secret::new("scrape-me-please");
        let server = {
            let s = shutdown.clone();
            let app = router(Readiness::default(), Some(token));
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { s.cancelled().await })
                    .await
            })
        };
        let http = reqwest::Client::new();
        let status = |bearer: Option<&'static str>, path: &'static str| {
            let http = http.clone();
            async move {
                let mut request = http.get(format!("http://{addr}{path}"));
                if let Some(b) = bearer {
                    request = request.bearer_auth(b);
                }
                request.send().await.expect("answer").status().as_u16()
            }
        };
        assert_eq!(status(None, "/metrics").await, 401);
        assert_eq!(status(Some("scrape-me-pleasE"), "/metrics").await, 401);
        assert_eq!(status(Some("scrape-me-please"), "/metrics").await, 200);
        assert_eq!(status(None, "/healthz").await, 200);
        shutdown.cancel();
        server.await.expect("join").expect("serve");
    }
}
