//! Polling thermometer clouds: what every cloud adapter shares.
//!
//! An adapter ([`CloudAdapter`]) knows one cloud's protocol and answers one poll with
//! readings, statuses and registrations, or a [`CloudError`] saying what kind of failure it
//! was. The [`CloudPoller`] runs it as a [`Source`] and owns the behaviour
//! users rely on, the same for every cloud:
//!
//! * readings go through the [validation gate](crate::validate) (units, ranges, repeats);
//! * transient failures (5xx, timeouts, connection errors) back off exponentially with
//!   jitter, and after several in a row a circuit breaker stops calling for a while;
//! * `429` waits for `Retry-After` when given, else backs off;
//! * malformed or truncated answers go to the `dead-letter` topic with the body, then back
//!   off like a failure;
//! * rejected credentials become a "credentials rejected" status on the account's devices
//!   and an error in the log — once, then a retry only every hour: no retry storm;
//! * passwords are [`Secret`]s: never printed by `Debug`, never logged.

pub mod fireboard;
pub mod firestore;
pub mod meater;
pub mod thermoworks;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use emberline_schemas::events::{DeviceRegistered, DeviceStatus};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::SourceMetrics;
use crate::validate::{Gate, RawReading, Rejected, Rejection, Remembered};
use crate::{EventSink, IngestError, Source};
use emberline_common::clock::now_ms;
use emberline_common::{Backoff, Secret};

/// Where a password comes from: the config itself, an environment variable, or a file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Credentials {
    /// Account e-mail or user name.
    pub username: String,
    /// The password, written in the config (prefer the other two).
    pub password: Option<Secret>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
}

impl Credentials {
    /// A user name with the password written out.
    pub fn with_password(username: &str, password: &str) -> Self {
        Self {
            username: username.to_owned(),
            password: Some(Secret::new(password)),
            ..Self::default()
        }
    }

    /// The password, from wherever it is configured.
    pub fn password(&self) -> Result<Secret, String> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        if let Some(var) = &self.password_env {
            return Secret::from_env(var);
        }
        if let Some(path) = &self.password_file {
            return Secret::from_file(path);
        }
        Err("no password: set password, password_env or password_file".into())
    }
}

/// How a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The cloud refused the account's credentials: retrying will not help.
    #[error("credentials rejected: {0}")]
    CredentialsRejected(String),
    /// Too many requests; wait `retry_after` if the cloud said.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// The `Retry-After` the cloud sent.
        retry_after: Option<Duration>,
    },
    /// A failure worth retrying: 5xx, timeout, connection refused.
    #[error("upstream failure: {0}")]
    Upstream(String),
    /// An answer that is not what the protocol says (truncated, malformed, wrong shape).
    #[error("malformed answer from {what}: {reason}")]
    Malformed {
        /// Which call.
        what: String,
        /// What is wrong.
        reason: String,
        /// The body as received.
        body: Vec<u8>,
    },
    /// The adapter's settings are wrong.
    #[error("configuration: {0}")]
    Config(String),
}

impl CloudError {
    /// A fixed word for the failure, for the `kind` label of `emberline_source_errors_total`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            CloudError::CredentialsRejected(_) => "credentials",
            CloudError::RateLimited { .. } => "rate_limited",
            CloudError::Upstream(_) => "upstream",
            CloudError::Malformed { .. } => "malformed",
            CloudError::Config(_) => "config",
        }
    }
}

/// What one poll produced.
#[derive(Debug, Default)]
pub struct PollOutput {
    /// Readings, before validation.
    pub readings: Vec<RawReading>,
    /// Device health.
    pub statuses: Vec<DeviceStatus>,
    /// Devices and their labels (sent when they change).
    pub registrations: Vec<DeviceRegistered>,
}

/// One cloud's protocol.
#[async_trait]
pub trait CloudAdapter: Send {
    /// Source name (on readings and in logs).
    fn name(&self) -> &str;
    /// How long to wait between polls.
    fn interval(&self) -> Duration;
    /// Devices seen so far (to report an account-wide problem on them).
    fn device_ids(&self) -> Vec<String>;
    /// One poll. `now_ms` is the receive time to stamp.
    async fn poll(&mut self, now_ms: i64) -> Result<PollOutput, CloudError>;
}

/// Opens after `threshold` failures in a row and stays open for `cooldown`.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    open_until: Option<Instant>,
}

impl CircuitBreaker {
    /// A breaker opening after `threshold` consecutive failures.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            failures: 0,
            open_until: None,
        }
    }

    /// Until when calls must wait, if the breaker is open.
    pub fn open_until(&self, now: Instant) -> Option<Instant> {
        self.open_until.filter(|t| *t > now)
    }

    /// A call succeeded: close.
    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    /// A call failed; returns true when this failure opened the breaker.
    pub fn failure(&mut self, now: Instant) -> bool {
        self.failures += 1;
        if self.failures >= self.threshold && self.open_until(now).is_none() {
            self.open_until = Some(now + self.cooldown);
            self.failures = 0;
            return true;
        }
        false
    }
}

/// The shared outbound HTTP client ([`emberline_common::http::client`]), its failure as a
/// configuration error.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, CloudError> {
    emberline_common::http::client(timeout)
        .map_err(|e| CloudError::Config(format!("HTTP client: {e}")))
}

/// Classifies a response: success bodies are returned; 401/403 are `auth`; 429 carries
/// `Retry-After`; 5xx and transport errors are upstream failures.
pub async fn read_body(
    what: &str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<(reqwest::StatusCode, Vec<u8>), CloudError> {
    let response =
        response.map_err(|e| CloudError::Upstream(format!("{what}: {}", transport_reason(&e))))?;
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(CloudError::RateLimited { retry_after });
    }
    if status.is_server_error() {
        return Err(CloudError::Upstream(format!("{what}: HTTP {status}")));
    }
    let body = response.bytes().await.map_err(|e| {
        CloudError::Upstream(format!(
            "{what}: reading the body: {}",
            transport_reason(&e)
        ))
    })?;
    Ok((status, body.to_vec()))
}

fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        // reqwest's messages carry the URL, which never holds a secret here (keys are public
        // web-client constants), but keep them short.
        e.to_string()
    }
}

/// An answer that does not follow the protocol, with its body for the dead-letter topic.
pub fn malformed(what: &str, reason: &str, body: &[u8]) -> CloudError {
    CloudError::Malformed {
        what: what.to_owned(),
        reason: reason.to_owned(),
        body: body.to_vec(),
    }
}

/// Parses a JSON body, or says it is malformed (with the body, for the dead-letter topic).
pub fn json<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, CloudError> {
    serde_json::from_slice(body).map_err(|e| malformed(what, &e.to_string(), body))
}

/// Runs a [`CloudAdapter`] as a source. See the module docs for what it guarantees.
pub struct CloudPoller<A> {
    adapter: A,
    retention_ms: i64,
    metrics: SourceMetrics,
    remembered: Remembered,
}

impl<A: CloudAdapter> CloudPoller<A> {
    /// Polls `adapter`; readings older than `retention_days` are refused.
    pub fn new(adapter: A, retention_days: u32) -> Self {
        Self {
            metrics: SourceMetrics::new(adapter.name()),
            adapter,
            retention_ms: i64::from(retention_days) * 86_400_000,
            remembered: Remembered::default(),
        }
    }

    /// Remembers the readings it admits in `remembered`, which an earlier run of the same
    /// account may have filled: what that run appended is not appended again.
    pub fn remembering(mut self, remembered: Remembered) -> Self {
        self.remembered = remembered;
        self
    }
}

/// Waits `d` unless shut down first; false when shut down.
async fn wait(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = shutdown.cancelled() => false,
    }
}

/// How often a poller logs its counters.
const HEALTH_EVERY: Duration = Duration::from_secs(600);

/// How long a rejected login waits before trying again.
const CREDENTIALS_RETRY: Duration = Duration::from_secs(3_600);

#[async_trait]
impl<A: CloudAdapter> Source for CloudPoller<A> {
    fn name(&self) -> &str {
        self.adapter.name()
    }

    async fn run(
        &mut self,
        sink: EventSink,
        shutdown: CancellationToken,
    ) -> Result<(), IngestError> {
        let name = self.adapter.name().to_owned();
        let mut gate = Gate::remembering(&name, self.retention_ms, self.remembered.clone());
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(600));
        let mut breaker = CircuitBreaker::new(5, Duration::from_secs(300));
        let m = &self.metrics;
        let mut reported = Instant::now();
        loop {
            if reported.elapsed() >= HEALTH_EVERY {
                reported = Instant::now();
                tracing::info!(source = %name, metrics = %m.to_json(), "source health");
            }
            if let Some(until) = breaker.open_until(Instant::now()) {
                m.circuit(true);
                tracing::warn!(source = %name, wait_s = (until - Instant::now()).as_secs(), "circuit open after repeated failures; pausing calls");
                if !wait(until - Instant::now(), &shutdown).await {
                    return Ok(());
                }
            }
            m.circuit(false);
            m.polled();
            let received = now_ms();
            let delay = match self.adapter.poll(received).await {
                Ok(out) => {
                    breaker.success();
                    backoff.reset();
                    let admitted = gate.admit(out.readings, received);
                    let delivered = async {
                        sink.registrations(&out.registrations).await?;
                        sink.statuses(&out.statuses).await?;
                        sink.deliver(&name, &admitted, received).await
                    };
                    match delivered.await {
                        Ok(()) => {}
                        Err(IngestError::ShutDown { .. }) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                    m.delivered(&admitted, received);
                    m.backing_off(Duration::ZERO);
                    crate::metrics::status::succeeded(&name, received);
                    self.adapter.interval()
                }
                Err(CloudError::CredentialsRejected(reason)) => {
                    m.failed("credentials");
                    m.backing_off(CREDENTIALS_RETRY);
                    tracing::error!(source = %name, %reason, "credentials rejected; fix them in the config — retrying only once an hour");
                    crate::metrics::status::failed(
                        &name,
                        &format!("credentials rejected: {reason}"),
                    );
                    let note = format!("{name} credentials rejected: {reason}");
                    let statuses: Vec<DeviceStatus> = self
                        .adapter
                        .device_ids()
                        .into_iter()
                        .map(|device_id| DeviceStatus {
                            device_id,
                            event_time: received,
                            received_time: received,
                            online: false,
                            battery_percent: None,
                            signal_dbm: None,
                            firmware: None,
                            source: name.clone(),
                            note: Some(note.clone()),
                            attributes: Default::default(),
                        })
                        .collect();
                    if let Err(IngestError::ShutDown { .. }) = sink.statuses(&statuses).await {
                        return Ok(());
                    }
                    CREDENTIALS_RETRY
                }
                Err(CloudError::RateLimited { retry_after }) => {
                    m.failed("rate_limited");
                    let delay = retry_after
                        .unwrap_or_else(|| backoff.next_delay())
                        .max(self.adapter.interval());
                    m.backing_off(delay);
                    tracing::warn!(source = %name, ?delay, "rate limited by the cloud; waiting");
                    crate::metrics::status::failed(&name, "rate limited by the cloud");
                    delay
                }
                Err(CloudError::Config(reason)) => {
                    return Err(IngestError::Config {
                        source_name: name,
                        reason,
                    });
                }
                Err(e) => {
                    m.failed(e.kind_name());
                    if let CloudError::Malformed { what, reason, body } = &e {
                        let rejected = [Rejected {
                            device_id: String::new(),
                            probe_id: String::new(),
                            reason: Rejection::Malformed(format!("{what}: {reason}")),
                            raw: body.clone(),
                        }];
                        if let Err(IngestError::ShutDown { .. }) =
                            sink.dead_letters(&name, &rejected, received).await
                        {
                            return Ok(());
                        }
                    }
                    let opened = breaker.failure(Instant::now());
                    let delay = backoff.next_delay();
                    m.backing_off(delay);
                    tracing::warn!(source = %name, error = %e, ?delay, circuit_opened = opened, "poll failed; retrying");
                    crate::metrics::status::failed(&name, &e.to_string());
                    delay
                }
            };
            if !wait(delay, &shutdown).await {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = Credentials {
            username: "cook@example.com".into(),
            password: Some(Secret::new("hunter2")),
            ..Credentials::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn the_breaker_opens_after_repeated_failures_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(3, Duration::from_secs(60));
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert!(b.failure(t0), "third failure opens it");
        assert_eq!(b.open_until(t0), Some(t0 + Duration::from_secs(60)));
        assert_eq!(
            b.open_until(t0 + Duration::from_secs(61)),
            None,
            "open only for the cooldown"
        );
        b.failure(t0);
        b.success();
        assert_eq!(b.open_until(t0), None);
    }
}
