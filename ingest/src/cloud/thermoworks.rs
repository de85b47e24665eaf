//! ThermoWorks Cloud (Signals, Smoke Gateway, Node, RFX …) and its ETI Cloud twin.
//!
//! The protocol, as the web client speaks it (see `shared/reference/thermometer-clouds.md`):
//! Firebase web-config lookup for the project id; e-mail/password sign-in for an id token,
//! refreshed a minute before it expires (or re-obtained when refreshing fails); the user
//! document for the account id; a Firestore query for the account's devices; each device's
//! channel documents `1, 2, …` up to the first 404. Every Firestore value is typed.
//!
//! A channel gives a reading only when its `lastTelemetrySaved` (or `lastSeen`) advances, so
//! polling faster than the device uploads adds nothing. Humidity channels (units `H`) are
//! not temperatures and are left out. The device's transmit and recording intervals and each
//! channel's alarm thresholds travel in its status's attributes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use emberline_schemas::events::{DeviceRegistered, DeviceStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::firestore::{fields, rfc3339_ms};
use super::{
    CloudAdapter, CloudError, Credentials, PollOutput, http_client, json, malformed, read_body,
};
use crate::validate::{RawReading, Unit};
use emberline_common::Secret;

/// Which brand's cloud.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Brand {
    /// cloud.thermoworks.com
    #[default]
    Thermoworks,
    /// cloud.etiltd.com
    Eti,
}

/// Settings of a ThermoWorks Cloud source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThermoworksConfig {
    /// The tenant whose devices these are (`default` for a single household).
    pub tenant: String,
    /// Name in logs and on readings.
    pub name: String,
    /// The account: `username`, and `password`, `password_env` or `password_file`.
    #[serde(flatten)]
    pub credentials: Credentials,
    /// ThermoWorks or ETI.
    pub brand: Brand,
    /// Firebase web API key (the brand's public web-client key by default).
    pub api_key: Option<String>,
    /// Firebase app id (the brand's by default).
    pub app_id: Option<String>,
    /// Serve every Google endpoint from this base URL instead (a local test server).
    pub base_url: Option<String>,
    /// Seconds between polls (at least 5).
    pub poll_interval_s: u64,
    /// Readings older than this are refused, days.
    pub retention_days: u32,
    /// Seconds before a request is given up as timed out.
    pub request_timeout_s: u64,
}

impl Default for ThermoworksConfig {
    fn default() -> Self {
        Self {
            tenant: emberline_common::tenant::DEFAULT_TENANT.into(),
            name: "thermoworks".into(),
            credentials: Credentials::default(),
            brand: Brand::Thermoworks,
            api_key: None,
            app_id: None,
            base_url: None,
            poll_interval_s: 60,
            retention_days: 30,
            request_timeout_s: 30,
        }
    }
}

impl Brand {
    fn api_key(self) -> &'static str {
        match self {
            Brand::Thermoworks => "AIzaSyCf079iccUFc1k7VHdGXng22zXDy8Y3KEY",
            Brand::Eti => "AIzaSyBD4snlT2LllO4k0NywX5qYjJ7M7WfU4_I",
        }
    }
    fn app_id(self) -> &'static str {
        match self {
            Brand::Thermoworks => "1:78998049458:web:b41e9d405d8c7de95eefab",
            Brand::Eti => "1:701566661301:web:7a9bc711c05985ead144fc",
        }
    }
    fn referer(self) -> &'static str {
        match self {
            Brand::Thermoworks => "https://cloud.thermoworks.com/",
            Brand::Eti => "https://cloud.etiltd.com/",
        }
    }
}

/// The four Google services, or one test server standing in for all of them.
struct Endpoints {
    firebase: String,
    identity: String,
    securetoken: String,
    firestore: String,
}

struct Session {
    id_token: Secret,
    refresh_token: Secret,
    expires_at: Instant,
    /// How long before expiry to refresh: a minute, or half the lifetime when shorter.
    margin: Duration,
    local_id: String,
}

fn margin(lifetime: Duration) -> Duration {
    (lifetime / 2).min(Duration::from_secs(60))
}

/// Highest channel number probed (clients stop at the first missing one anyway).
const MAX_CHANNELS: u32 = 9;

/// The adapter.
pub struct Thermoworks {
    config: ThermoworksConfig,
    http: reqwest::Client,
    endpoints: Endpoints,
    api_key: String,
    app_id: String,
    project_id: Option<String>,
    session: Option<Session>,
    account_id: Option<String>,
    /// (device, channel) → the last `lastTelemetrySaved`/`lastSeen` emitted.
    last_seen: HashMap<(String, String), String>,
    /// Device → the registration last sent.
    registered: HashMap<String, DeviceRegistered>,
}

impl Thermoworks {
    /// An adapter for `config`; checks the settings.
    pub fn new(config: ThermoworksConfig) -> Result<Self, CloudError> {
        if config.poll_interval_s < 5 {
            return Err(CloudError::Config(
                "poll_interval_s must be at least 5".into(),
            ));
        }
        if config.credentials.username.is_empty() {
            return Err(CloudError::Config(
                "username (the account e-mail) is required".into(),
            ));
        }
        let endpoints = match &config.base_url {
            Some(base) => {
                let base = base.trim_end_matches('/').to_owned();
                Endpoints {
                    firebase: base.clone(),
                    identity: base.clone(),
                    securetoken: base.clone(),
                    firestore: base,
                }
            }
            None => Endpoints {
                firebase: "https://firebase.googleapis.com".into(),
                identity: "https://identitytoolkit.googleapis.com".into(),
                securetoken: "https://securetoken.googleapis.com".into(),
                firestore: "https://firestore.googleapis.com".into(),
            },
        };
        Ok(Self {
            api_key: config
                .api_key
                .clone()
                .unwrap_or_else(|| config.brand.api_key().to_owned()),
            app_id: config
                .app_id
                .clone()
                .unwrap_or_else(|| config.brand.app_id().to_owned()),
            http: http_client(Duration::from_secs(config.request_timeout_s.max(1)))?,
            endpoints,
            config,
            project_id: None,
            session: None,
            account_id: None,
            last_seen: HashMap::new(),
            registered: HashMap::new(),
        })
    }

    fn documents(&self, project: &str) -> String {
        format!(
            "{}/v1/projects/{project}/databases/(default)/documents",
            self.endpoints.firestore
        )
    }

    async fn project_id(&mut self) -> Result<String, CloudError> {
        if let Some(p) = &self.project_id {
            return Ok(p.clone());
        }
        let url = format!(
            "{}/v1alpha/projects/-/apps/{}/webConfig",
            self.endpoints.firebase, self.app_id
        );
        let response = self
            .http
            .get(url)
            .header("x-goog-api-key", &self.api_key)
            .header("referer", self.config.brand.referer())
            .send()
            .await;
        let (status, body) = read_body("webConfig", response).await?;
        if !status.is_success() {
            return Err(CloudError::Upstream(format!("webConfig: HTTP {status}")));
        }
        let v: Value = json("webConfig", &body)?;
        let project = v["projectId"]
            .as_str()
            .ok_or_else(|| malformed("webConfig", "no projectId", &body))?
            .to_owned();
        self.project_id = Some(project.clone());
        Ok(project)
    }

    async fn sign_in(&mut self) -> Result<(), CloudError> {
        let password = self
            .config
            .credentials
            .password()
            .map_err(CloudError::Config)?;
        let url = format!(
            "{}/v1/accounts:signInWithPassword?key={}",
            self.endpoints.identity, self.api_key
        );
        let body = json!({"email": self.config.credentials.username, "password": password.expose(), "returnSecureToken": true});
        let response = self
            .http
            .post(url)
            .header("referer", self.config.brand.referer())
            .json(&body)
            .send()
            .await;
        let (status, body) = read_body("sign-in", response).await?;
        let v: Value = json("sign-in", &body)?;
        if status == reqwest::StatusCode::BAD_REQUEST {
            let code = v["error"]["message"].as_str().unwrap_or("").to_owned();
            if [
                "INVALID_EMAIL",
                "EMAIL_NOT_FOUND",
                "INVALID_PASSWORD",
                "USER_DISABLED",
                "INVALID_LOGIN_CREDENTIALS",
            ]
            .iter()
            .any(|c| code.starts_with(c))
            {
                return Err(CloudError::CredentialsRejected(code));
            }
            return Err(CloudError::Upstream(format!("sign-in refused: {code}")));
        }
        if !status.is_success() {
            return Err(CloudError::Upstream(format!("sign-in: HTTP {status}")));
        }
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| malformed("sign-in", &format!("no {k}"), &body))
        };
        let expires_s: u64 = field("expiresIn")?
            .parse()
            .map_err(|_| malformed("sign-in", "expiresIn is not a number", &body))?;
        self.session = Some(Session {
            id_token: Secret::new(field("idToken")?),
            refresh_token: Secret::new(field("refreshToken")?),
            expires_at: Instant::now() + Duration::from_secs(expires_s),
            margin: margin(Duration::from_secs(expires_s)),
            local_id: field("localId")?,
        });
        tracing::info!(source = %self.config.name, "signed in to ThermoWorks Cloud");
        Ok(())
    }

    /// Refreshes the id token; signs in afresh when the refresh token is refused.
    async fn refresh(&mut self) -> Result<(), CloudError> {
        let Some(session) = &self.session else {
            return self.sign_in().await;
        };
        let url = format!(
            "{}/v1/token?key={}",
            self.endpoints.securetoken, self.api_key
        );
        let body =
            json!({"grant_type": "refresh_token", "refresh_token": session.refresh_token.expose()});
        let response = self.http.post(url).json(&body).send().await;
        let (status, body) = read_body("token refresh", response).await?;
        if status.is_client_error() {
            tracing::info!(source = %self.config.name, %status, "token refresh refused; signing in again");
            self.session = None;
            return self.sign_in().await;
        }
        if !status.is_success() {
            return Err(CloudError::Upstream(format!(
                "token refresh: HTTP {status}"
            )));
        }
        let v: Value = json("token refresh", &body)?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| malformed("token refresh", &format!("no {k}"), &body))
        };
        let expires_s: u64 = field("expires_in")?
            .parse()
            .map_err(|_| malformed("token refresh", "expires_in is not a number", &body))?;
        let local_id = session.local_id.clone();
        self.session = Some(Session {
            id_token: Secret::new(field("id_token")?),
            refresh_token: Secret::new(field("refresh_token")?),
            expires_at: Instant::now() + Duration::from_secs(expires_s),
            margin: margin(Duration::from_secs(expires_s)),
            local_id,
        });
        Ok(())
    }

    /// A valid session, refreshed a minute before expiry.
    async fn ensure_session(&mut self) -> Result<(), CloudError> {
        match &self.session {
            None => self.sign_in().await,
            Some(s) if s.expires_at <= Instant::now() + s.margin => self.refresh().await,
            Some(_) => Ok(()),
        }
    }

    /// A Firestore call with the id token; a 401 refreshes the token and tries once more.
    /// Returns `None` for 404.
    async fn firestore(
        &mut self,
        what: &str,
        request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Option<Vec<u8>>, CloudError> {
        for attempt in 0..2 {
            self.ensure_session().await?;
            let token = self
                .session
                .as_ref()
                .map(|s| s.id_token.expose().to_owned())
                .unwrap_or_default();
            let response = request(&self.http, &token).send().await;
            let (status, body) = read_body(what, response).await?;
            match status.as_u16() {
                200..=299 => return Ok(Some(body)),
                404 => return Ok(None),
                401 if attempt == 0 => self.refresh().await?,
                401 | 403 => {
                    return Err(CloudError::CredentialsRejected(format!(
                        "{what}: HTTP {status}"
                    )));
                }
                _ => return Err(CloudError::Upstream(format!("{what}: HTTP {status}"))),
            }
        }
        Err(CloudError::Upstream(format!(
            "{what}: still unauthorised after a token refresh"
        )))
    }

    async fn account_id(&mut self, docs: &str) -> Result<String, CloudError> {
        if let Some(a) = &self.account_id {
            return Ok(a.clone());
        }
        let local_id = self
            .session
            .as_ref()
            .map(|s| s.local_id.clone())
            .unwrap_or_default();
        let url = format!("{docs}/users/{local_id}");
        let body = self
            .firestore("user", |http, token| http.get(&url).bearer_auth(token))
            .await?
            .ok_or_else(|| CloudError::Upstream("the user document is missing".into()))?;
        let user = fields(&json::<Value>("user", &body)?);
        let account = user
            .get("accountId")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("user", "no accountId", &body))?
            .to_owned();
        self.account_id = Some(account.clone());
        Ok(account)
    }

    fn device_event(
        &mut self,
        serial: &str,
        device: &serde_json::Map<String, Value>,
        channels: &[(String, serde_json::Map<String, Value>)],
        now_ms: i64,
        out: &mut PollOutput,
    ) {
        let label = device
            .get("label")
            .and_then(Value::as_str)
            .unwrap_or(serial)
            .to_owned();
        let registration = DeviceRegistered {
            device_id: serial.to_owned(),
            event_time: now_ms,
            tenant: self.account_id.clone().unwrap_or_default(),
            model: device
                .get("device")
                .or_else(|| device.get("type"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: label,
            probe_labels: channels
                .iter()
                .filter(|(_, c)| c.get("units").and_then(Value::as_str) != Some("H"))
                .map(|(n, c)| {
                    (
                        n.clone(),
                        c.get("label")
                            .and_then(Value::as_str)
                            .map_or_else(|| format!("Channel {n}"), str::to_owned),
                    )
                })
                .collect(),
            source: self.config.name.clone(),
        };
        let changed = self.registered.get(serial).is_none_or(|old| {
            (&old.name, &old.model, &old.probe_labels)
                != (
                    &registration.name,
                    &registration.model,
                    &registration.probe_labels,
                )
        });
        if changed {
            self.registered
                .insert(serial.to_owned(), registration.clone());
            out.registrations.push(registration);
        }
        let mut attributes = BTreeMap::new();
        for (key, field) in [
            (
                "thermoworks.transmit_interval_s",
                "transmitIntervalInSeconds",
            ),
            (
                "thermoworks.recording_interval_s",
                "recordingIntervalInSeconds",
            ),
            ("thermoworks.battery_state", "batteryState"),
            ("thermoworks.status", "status"),
        ] {
            if let Some(v) = device.get(field).filter(|v| !v.is_null()) {
                attributes.insert(
                    key.to_owned(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                );
            }
        }
        for (n, c) in channels {
            for (kind, field) in [("alarm_high", "alarmHigh"), ("alarm_low", "alarmLow")] {
                let alarm = c.get(field).and_then(Value::as_object);
                if let Some(alarm) =
                    alarm.filter(|a| a.get("enabled").and_then(Value::as_bool) == Some(true))
                {
                    let value = alarm.get("value").map(Value::to_string).unwrap_or_default();
                    let units = alarm.get("units").and_then(Value::as_str).unwrap_or("");
                    attributes.insert(
                        format!("thermoworks.{kind}.{n}"),
                        format!("{value} {units}").trim().to_owned(),
                    );
                }
            }
        }
        let last_seen = device
            .get("lastSeen")
            .and_then(Value::as_str)
            .and_then(rfc3339_ms);
        out.statuses.push(DeviceStatus {
            device_id: serial.to_owned(),
            event_time: last_seen.unwrap_or(now_ms),
            received_time: now_ms,
            online: device
                .get("status")
                .and_then(Value::as_str)
                .is_none_or(|s| !s.eq_ignore_ascii_case("offline")),
            battery_percent: device.get("battery").and_then(Value::as_f64),
            signal_dbm: device
                .get("wifi_stength")
                .or_else(|| device.get("wifi_strength"))
                .and_then(Value::as_i64)
                .and_then(|v| i32::try_from(v).ok()),
            firmware: device
                .get("firmware")
                .and_then(Value::as_str)
                .map(str::to_owned),
            source: self.config.name.clone(),
            note: None,
            attributes,
        });
    }
}

/// The reading a channel document gives, unless it is humidity or has not advanced past
/// `last_stamp`; with the stamp to remember. Never panics, whatever the document (a fuzz
/// target checks).
pub fn channel_reading(
    serial: &str,
    number: &str,
    channel: &serde_json::Map<String, Value>,
    last_stamp: Option<&String>,
) -> Option<(RawReading, Option<String>)> {
    let unit = match channel.get("units").and_then(Value::as_str).unwrap_or("F") {
        "C" | "c" => Unit::C,
        "F" | "f" => Unit::F,
        _ => return None, // "H" is humidity, not a temperature
    };
    let stamp = channel
        .get("lastTelemetrySaved")
        .or_else(|| channel.get("lastSeen"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if stamp.is_some() && last_stamp == stamp.as_ref() {
        return None; // nothing new since the last poll
    }
    let reading = RawReading {
        device_id: serial.to_owned(),
        probe_id: number.to_owned(),
        device_time_ms: stamp.as_deref().and_then(rfc3339_ms),
        value: channel.get("value").and_then(Value::as_f64),
        unit,
        raw: serde_json::to_vec(&Value::Object(channel.clone())).unwrap_or_default(),
    };
    Some((reading, stamp))
}

#[async_trait]
impl CloudAdapter for Thermoworks {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.config.poll_interval_s)
    }

    fn device_ids(&self) -> Vec<String> {
        self.registered.keys().cloned().collect()
    }

    async fn poll(&mut self, now_ms: i64) -> Result<PollOutput, CloudError> {
        let project = self.project_id().await?;
        self.ensure_session().await?;
        let docs = self.documents(&project);
        let account = self.account_id(&docs).await?;
        let query = json!({"structuredQuery": {
            "from": [{"collectionId": "devices"}],
            "where": {"fieldFilter": {"field": {"fieldPath": "accountId"}, "op": "EQUAL", "value": {"stringValue": account}}}
        }});
        let url = format!("{docs}:runQuery");
        let body = self
            .firestore("devices query", |http, token| {
                http.post(&url).bearer_auth(token).json(&query)
            })
            .await?
            .unwrap_or_else(|| b"[]".to_vec());
        let rows: Vec<Value> = json("devices query", &body)?;
        let mut out = PollOutput::default();
        for row in rows {
            let Some(doc) = row.get("document") else {
                continue; // a row with only readTime: no match
            };
            let device = fields(doc);
            let serial = match device.get("serial").and_then(Value::as_str) {
                Some(s) => s.to_owned(),
                None => match doc
                    .get("name")
                    .and_then(Value::as_str)
                    .and_then(|n| n.rsplit('/').next())
                {
                    Some(s) => s.to_owned(),
                    None => {
                        return Err(malformed(
                            "devices query",
                            "a device without serial or name",
                            &body,
                        ));
                    }
                },
            };
            let mut channels = Vec::new();
            for n in 1..=MAX_CHANNELS {
                let url = format!("{docs}/devices/{serial}/channels/{n}");
                let Some(body) = self
                    .firestore("channel", |http, token| http.get(&url).bearer_auth(token))
                    .await?
                else {
                    break; // the first missing channel ends the list
                };
                channels.push((n.to_string(), fields(&json::<Value>("channel", &body)?)));
            }
            for (n, c) in &channels {
                let key = (serial.clone(), n.clone());
                if let Some((reading, stamp)) =
                    channel_reading(&serial, n, c, self.last_seen.get(&key))
                {
                    out.readings.push(reading);
                    if let Some(stamp) = stamp {
                        self.last_seen.insert(key, stamp);
                    }
                }
            }
            self.device_event(&serial, &device, &channels, now_ms, &mut out);
        }
        Ok(out)
    }
}
