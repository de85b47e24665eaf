//! MEATER Cloud, through its public REST API.
//!
//! `POST /login` gives a token; `GET /devices` lists the probes that are in a cook, each with
//! its internal (meat) and ambient temperatures, the time it last reported and the cook
//! (name, state, target, elapsed and remaining time as MEATER estimates them). The internal
//! and ambient sensors become two probes of one device; the cook's figures go into the
//! device's status attributes, so Emberline's prediction can be compared with MEATER's.
//!
//! MEATER lists a probe only while it cooks. A probe that disappears was put away: it gets
//! one status saying so, not an error every poll. The API asks for at most 2 requests a
//! minute (60 is the hard limit): polls are 30 s apart at the least, and a 429 backs off.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use emberline_schemas::events::{DeviceRegistered, DeviceStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    CloudAdapter, CloudError, Credentials, PollOutput, http_client, json, malformed, read_body,
};
use crate::validate::{RawReading, Unit};
use emberline_common::Secret;

/// Settings of a MEATER Cloud source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeaterConfig {
    /// The tenant whose devices these are (`default` for a single household).
    pub tenant: String,
    /// Name in logs and on readings.
    pub name: String,
    /// The account: `username`, and `password`, `password_env` or `password_file`.
    #[serde(flatten)]
    pub credentials: Credentials,
    /// API base (a local test server instead of MEATER's).
    pub base_url: String,
    /// Seconds between polls (at least 30: MEATER asks for no more than 2 requests a minute).
    pub poll_interval_s: u64,
    /// Readings older than this are refused, days.
    pub retention_days: u32,
    /// Seconds before a request is given up.
    pub request_timeout_s: u64,
}

impl Default for MeaterConfig {
    fn default() -> Self {
        Self {
            tenant: emberline_common::tenant::DEFAULT_TENANT.into(),
            name: "meater".into(),
            credentials: Credentials::default(),
            base_url: "https://public-api.cloud.meater.com/v1".into(),
            poll_interval_s: 30,
            retention_days: 30,
            request_timeout_s: 30,
        }
    }
}

/// Fewest seconds between polls.
pub const MIN_INTERVAL_S: u64 = 30;

/// The adapter.
pub struct Meater {
    config: MeaterConfig,
    http: reqwest::Client,
    token: Option<Secret>,
    /// Devices seen, and whether they were in a cook at the last poll.
    cooking: HashMap<String, bool>,
}

impl Meater {
    /// An adapter for `config`; checks the settings.
    pub fn new(config: MeaterConfig) -> Result<Self, CloudError> {
        if config.poll_interval_s < MIN_INTERVAL_S {
            return Err(CloudError::Config(format!(
                "poll_interval_s must be at least {MIN_INTERVAL_S}: MEATER allows 2 requests a minute"
            )));
        }
        if config.credentials.username.is_empty() {
            return Err(CloudError::Config(
                "username (the account e-mail) is required".into(),
            ));
        }
        Ok(Self {
            http: http_client(Duration::from_secs(config.request_timeout_s.max(1)))?,
            config,
            token: None,
            cooking: HashMap::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    async fn login(&mut self) -> Result<Secret, CloudError> {
        let password = self
            .config
            .credentials
            .password()
            .map_err(CloudError::Config)?;
        let body =
            json!({"email": self.config.credentials.username, "password": password.expose()});
        let response = self.http.post(self.url("/login")).json(&body).send().await;
        let (status, body) = read_body("login", response).await?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::BAD_REQUEST
        {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let why = v["message"]
                .as_str()
                .or_else(|| v["status"].as_str())
                .unwrap_or("Unauthorized");
            return Err(CloudError::CredentialsRejected(why.to_owned()));
        }
        if !status.is_success() {
            return Err(CloudError::Upstream(format!("login: HTTP {status}")));
        }
        let v: Value = json("login", &body)?;
        let token = v["data"]["token"]
            .as_str()
            .ok_or_else(|| malformed("login", "no data.token", &body))?;
        tracing::info!(source = %self.config.name, "signed in to MEATER Cloud");
        Ok(Secret::new(token.to_owned()))
    }

    /// `GET /devices`, signing in first and once more when the token is refused.
    async fn devices(&mut self) -> Result<Vec<u8>, CloudError> {
        for attempt in 0..2 {
            let token = match &self.token {
                Some(t) => t.clone(),
                None => {
                    let t = self.login().await?;
                    self.token = Some(t.clone());
                    t
                }
            };
            let response = self
                .http
                .get(self.url("/devices"))
                .bearer_auth(token.expose())
                .send()
                .await;
            let (status, body) = read_body("devices", response).await?;
            match status.as_u16() {
                200..=299 => return Ok(body),
                401 if attempt == 0 => self.token = None, // expired: sign in again
                401 | 403 => {
                    return Err(CloudError::CredentialsRejected(format!(
                        "devices: HTTP {status}"
                    )));
                }
                _ => return Err(CloudError::Upstream(format!("devices: HTTP {status}"))),
            }
        }
        Err(CloudError::Upstream(
            "devices: refused right after signing in".into(),
        ))
    }
}

fn status(
    device_id: &str,
    now_ms: i64,
    online: bool,
    note: Option<String>,
    attributes: BTreeMap<String, String>,
    source: &str,
) -> DeviceStatus {
    DeviceStatus {
        device_id: device_id.to_owned(),
        event_time: now_ms,
        received_time: now_ms,
        online,
        battery_percent: None,
        signal_dbm: None,
        firmware: None,
        source: source.to_owned(),
        note,
        attributes,
    }
}

#[async_trait]
impl CloudAdapter for Meater {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.config.poll_interval_s)
    }

    fn device_ids(&self) -> Vec<String> {
        self.cooking.keys().cloned().collect()
    }

    async fn poll(&mut self, now_ms: i64) -> Result<PollOutput, CloudError> {
        let body = self.devices().await?;
        self.digest(&body, now_ms)
    }
}

impl Meater {
    /// Turns a `/devices` answer into events, remembering which probes are cooking.
    /// Never panics, whatever the bytes (a fuzz target checks).
    pub fn digest(&mut self, body: &[u8], now_ms: i64) -> Result<PollOutput, CloudError> {
        let v: Value = json("devices", body)?;
        let devices = v["data"]["devices"]
            .as_array()
            .ok_or_else(|| malformed("devices", "no data.devices list", body))?;
        let mut out = PollOutput::default();
        let mut present = Vec::new();
        for d in devices {
            let Some(id) = d["id"].as_str().map(str::to_owned) else {
                return Err(malformed("devices", "a device without id", body));
            };
            present.push(id.clone());
            if !self.cooking.contains_key(&id) {
                let short: String = id
                    .chars()
                    .rev()
                    .take(4)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                out.registrations.push(DeviceRegistered {
                    device_id: id.clone(),
                    event_time: now_ms,
                    tenant: self.config.credentials.username.clone(),
                    model: Some("MEATER".into()),
                    name: format!("MEATER {short}"),
                    probe_labels: BTreeMap::from([
                        ("internal".to_owned(), "Meat".to_owned()),
                        ("ambient".to_owned(), "Ambient".to_owned()),
                    ]),
                    source: self.config.name.clone(),
                });
            }
            self.cooking.insert(id.clone(), true);
            let updated = d["updated_at"].as_i64().map(|s| s * 1_000);
            for (probe, field) in [("internal", "internal"), ("ambient", "ambient")] {
                out.readings.push(RawReading {
                    device_id: id.clone(),
                    probe_id: probe.to_owned(),
                    device_time_ms: updated,
                    value: d["temperature"][field].as_f64(),
                    unit: Unit::C,
                    raw: d.to_string().into_bytes(),
                });
            }
            let mut attributes = BTreeMap::new();
            let cook = &d["cook"];
            if cook.is_object() {
                let mut put = |key: &str, v: &Value| {
                    if let Some(text) = match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    } {
                        attributes.insert(format!("meater.cook.{key}"), text);
                    }
                };
                put("id", &cook["id"]);
                put("name", &cook["name"]);
                put("state", &cook["state"]);
                put("target_c", &cook["temperature"]["target"]);
                put("peak_c", &cook["temperature"]["peak"]);
                put("elapsed_s", &cook["time"]["elapsed"]);
                // -1 means MEATER does not know yet.
                if cook["time"]["remaining"].as_i64().is_some_and(|r| r >= 0) {
                    put("remaining_s", &cook["time"]["remaining"]);
                }
            }
            out.statuses.push(status(
                &id,
                updated.unwrap_or(now_ms),
                true,
                None,
                attributes,
                &self.config.name,
            ));
        }
        // Probes no longer listed were put away: say so once.
        for (id, cooking) in self.cooking.iter_mut() {
            if *cooking && !present.contains(id) {
                *cooking = false;
                out.statuses.push(status(
                    id,
                    now_ms,
                    false,
                    Some("not cooking: MEATER reports a probe only during a cook".into()),
                    BTreeMap::new(),
                    &self.config.name,
                ));
            }
        }
        Ok(out)
    }
}
