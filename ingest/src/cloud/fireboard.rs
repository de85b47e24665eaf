//! FireBoard Cloud.
//!
//! `POST /api/rest-auth/login/` gives a key (`Authorization: Token <key>`);
//! `GET /api/v1/devices.json` lists the account's devices with their channels, latest
//! temperatures (`degreetype` 1 = °C, 2 = °F) and device log (battery); a fan controller's
//! `GET /api/v1/devices/<uuid>/drivelog.json` gives its set point, drive and lid pause.
//!
//! FireBoard blocks an account for 30 minutes once it makes more than 200 calls in an hour,
//! across all its devices. Every call here draws on a [`CallBudget`] of `budget_per_hour`
//! (200) over a rolling hour: a poll that would overdraw it is not made (the poller waits
//! instead), and the poll interval is stretched so the budget is not reached in normal
//! running. A reading is emitted only when a channel's `created` time advances.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use emberline_schemas::events::{DeviceRegistered, DeviceStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::firestore::rfc3339_ms;
use super::{
    CloudAdapter, CloudError, Credentials, PollOutput, http_client, json, malformed, read_body,
};
use crate::validate::{RawReading, Unit};
use emberline_common::Secret;

/// Settings of a FireBoard source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FireboardConfig {
    /// The tenant whose devices these are (`default` for a single household).
    pub tenant: String,
    /// Name in logs and on readings.
    pub name: String,
    /// The account: `username`, and `password`, `password_env` or `password_file`.
    #[serde(flatten)]
    pub credentials: Credentials,
    /// Site base (a local test server instead of fireboard.io).
    pub base_url: String,
    /// Seconds between polls; stretched when the call budget needs it.
    pub poll_interval_s: u64,
    /// Calls allowed per rolling hour across the account (FireBoard's limit is 200).
    pub budget_per_hour: u32,
    /// Devices with a fan controller whose drive log is read; unset: those whose model
    /// names a drive (`FBX…D`, or "Drive" in it).
    pub drive_devices: Option<Vec<String>>,
    /// Readings older than this are refused, days.
    pub retention_days: u32,
    /// Seconds before a request is given up.
    pub request_timeout_s: u64,
}

impl Default for FireboardConfig {
    fn default() -> Self {
        Self {
            tenant: emberline_common::tenant::DEFAULT_TENANT.into(),
            name: "fireboard".into(),
            credentials: Credentials::default(),
            base_url: "https://fireboard.io".into(),
            poll_interval_s: 60,
            budget_per_hour: 200,
            drive_devices: None,
            retention_days: 30,
            request_timeout_s: 30,
        }
    }
}

/// Calls kept back from the budget for logins and retries.
const RESERVE: u32 = 10;
const HOUR: Duration = Duration::from_secs(3_600);

/// At most `limit` calls in any rolling hour.
#[derive(Debug)]
pub struct CallBudget {
    limit: u32,
    calls: VecDeque<Instant>,
}

impl CallBudget {
    /// A budget of `limit` calls per hour.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            calls: VecDeque::new(),
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            self.calls.pop_front();
        }
    }

    /// Takes `n` calls at `now`, or says how long until they fit.
    pub fn take(&mut self, n: u32, now: Instant) -> Result<(), Duration> {
        self.fits(n, now)?;
        self.calls.extend(std::iter::repeat_n(now, n as usize));
        Ok(())
    }

    /// Whether `n` calls fit at `now` (taking none), or how long until they do.
    pub fn fits(&mut self, n: u32, now: Instant) -> Result<(), Duration> {
        self.forget_old(now);
        let used = self.calls.len() as u32;
        if used + n <= self.limit {
            return Ok(());
        }
        // The oldest calls that must age out for `n` more to fit.
        let must_expire = (used + n - self.limit) as usize;
        let wait = self
            .calls
            .get(must_expire - 1)
            .map_or(HOUR, |t| HOUR.saturating_sub(now.duration_since(*t)));
        Err(wait.max(Duration::from_secs(1)))
    }
}

/// The adapter.
pub struct Fireboard {
    config: FireboardConfig,
    http: reqwest::Client,
    key: Option<Secret>,
    budget: CallBudget,
    /// Devices with a fan controller (from the last devices list).
    drives: Vec<String>,
    /// (device, channel) → the last `created` emitted.
    last_created: HashMap<(String, String), String>,
    registered: HashMap<String, DeviceRegistered>,
}

impl Fireboard {
    /// An adapter for `config`; checks the settings.
    pub fn new(config: FireboardConfig) -> Result<Self, CloudError> {
        if config.credentials.username.is_empty() {
            return Err(CloudError::Config("username is required".into()));
        }
        if config.budget_per_hour <= RESERVE {
            return Err(CloudError::Config(format!(
                "budget_per_hour must be more than {RESERVE}"
            )));
        }
        Ok(Self {
            http: http_client(Duration::from_secs(config.request_timeout_s.max(1)))?,
            budget: CallBudget::new(config.budget_per_hour),
            config,
            key: None,
            drives: Vec::new(),
            last_created: HashMap::new(),
            registered: HashMap::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// Calls one poll makes: the devices list and each fan controller's drive log.
    fn calls_per_poll(&self) -> u32 {
        1 + self.drives.len() as u32
    }

    fn spend(&mut self, n: u32) -> Result<(), CloudError> {
        self.budget
            .take(n, Instant::now())
            .map_err(|wait| CloudError::RateLimited {
                retry_after: Some(wait),
            })
    }

    async fn login(&mut self) -> Result<Secret, CloudError> {
        self.spend(1)?;
        let password = self
            .config
            .credentials
            .password()
            .map_err(CloudError::Config)?;
        let response = self
            .http
            .post(self.url("/api/rest-auth/login/"))
            .json(&json!({"username": self.config.credentials.username, "password": password.expose()}))
            .send()
            .await;
        let (status, body) = read_body("login", response).await?;
        if status == reqwest::StatusCode::BAD_REQUEST || status == reqwest::StatusCode::UNAUTHORIZED
        {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let why = v["non_field_errors"][0].as_str().unwrap_or("login refused");
            return Err(CloudError::CredentialsRejected(why.to_owned()));
        }
        if !status.is_success() {
            return Err(CloudError::Upstream(format!("login: HTTP {status}")));
        }
        let v: Value = json("login", &body)?;
        let key = v["key"]
            .as_str()
            .ok_or_else(|| malformed("login", "no key", &body))?;
        tracing::info!(source = %self.config.name, "signed in to FireBoard");
        Ok(Secret::new(key.to_owned()))
    }

    /// A GET with the key (signing in first, and again after a 401), drawn from the budget.
    async fn get(&mut self, what: &str, path: &str) -> Result<Vec<u8>, CloudError> {
        for attempt in 0..2 {
            let key = match &self.key {
                Some(k) => k.clone(),
                None => {
                    let k = self.login().await?;
                    self.key = Some(k.clone());
                    k
                }
            };
            self.spend(1)?;
            let response = self
                .http
                .get(self.url(path))
                .header("authorization", format!("Token {}", key.expose()))
                .send()
                .await;
            let (status, body) = read_body(what, response).await?;
            match status.as_u16() {
                200..=299 => return Ok(body),
                401 if attempt == 0 => self.key = None,
                401 | 403 => {
                    return Err(CloudError::CredentialsRejected(format!(
                        "{what}: HTTP {status}"
                    )));
                }
                _ => return Err(CloudError::Upstream(format!("{what}: HTTP {status}"))),
            }
        }
        Err(CloudError::Upstream(format!(
            "{what}: refused right after signing in"
        )))
    }

    fn has_drive(&self, uuid: &str, model: &str) -> bool {
        match &self.config.drive_devices {
            Some(list) => list.iter().any(|d| d == uuid),
            // "FireBoard 2 Drive" reports its model as FBX2D.
            None => {
                model.to_ascii_lowercase().contains("drive")
                    || (model.starts_with("FBX") && model.ends_with('D'))
            }
        }
    }
}

fn unit_of(degreetype: Option<i64>) -> Unit {
    if degreetype == Some(1) {
        Unit::C
    } else {
        Unit::F
    }
}

#[async_trait]
impl CloudAdapter for Fireboard {
    fn name(&self) -> &str {
        &self.config.name
    }

    /// The configured interval, stretched so a poll's calls fit the hourly budget.
    fn interval(&self) -> Duration {
        let usable = f64::from(self.config.budget_per_hour - RESERVE);
        let needed = HOUR.mul_f64(f64::from(self.calls_per_poll()) / usable);
        Duration::from_secs(self.config.poll_interval_s).max(needed)
    }

    fn device_ids(&self) -> Vec<String> {
        self.registered.keys().cloned().collect()
    }

    async fn poll(&mut self, now_ms: i64) -> Result<PollOutput, CloudError> {
        // The whole poll must fit before any call of it is made (a login too, if due).
        let needed = self.calls_per_poll() + u32::from(self.key.is_none());
        if let Err(wait) = self.budget.fits(needed, Instant::now()) {
            return Err(CloudError::RateLimited {
                retry_after: Some(wait),
            });
        }
        let body = self.get("devices.json", "/api/v1/devices.json").await?;
        let (mut out, drives) = self.digest(&body, now_ms)?;
        for uuid in &drives {
            let drive = self
                .get(
                    "drivelog.json",
                    &format!("/api/v1/devices/{uuid}/drivelog.json"),
                )
                .await?;
            apply_drivelog(&mut out, uuid, &drive)?;
        }
        self.drives = drives;
        Ok(out)
    }
}

/// Adds a fan controller's drive log to its device's status attributes. Never panics.
pub fn apply_drivelog(out: &mut PollOutput, uuid: &str, body: &[u8]) -> Result<(), CloudError> {
    let v: Value = json("drivelog.json", body)?;
    let latest = if v.is_array() { v[0].clone() } else { v };
    if let Some(status) = out.statuses.iter_mut().find(|s| s.device_id == uuid) {
        for key in ["setpoint", "driveper", "lidpaused", "drivetype"] {
            if !latest[key].is_null() {
                status
                    .attributes
                    .insert(format!("fireboard.drive.{key}"), latest[key].to_string());
            }
        }
    }
    Ok(())
}

impl Fireboard {
    /// Turns a `devices.json` answer into events; returns them and the devices whose drive
    /// log to read. Never panics, whatever the bytes (a fuzz target checks).
    pub fn digest(
        &mut self,
        body: &[u8],
        now_ms: i64,
    ) -> Result<(PollOutput, Vec<String>), CloudError> {
        let devices: Vec<Value> = json("devices.json", body)?;
        let mut out = PollOutput::default();
        let mut drives = Vec::new();
        for d in &devices {
            let Some(uuid) = d["uuid"].as_str().map(str::to_owned) else {
                return Err(malformed("devices.json", "a device without uuid", body));
            };
            let model = d["model"].as_str().unwrap_or("").to_owned();
            let device_unit = unit_of(d["degreetype"].as_i64());
            let channels = d["channels"].as_array().cloned().unwrap_or_default();
            let enabled = |ch: i64| {
                channels
                    .iter()
                    .find(|c| c["channel"].as_i64() == Some(ch))
                    .is_none_or(|c| c["enabled"].as_bool() != Some(false))
            };
            let registration = DeviceRegistered {
                device_id: uuid.clone(),
                event_time: now_ms,
                tenant: self.config.credentials.username.clone(),
                model: (!model.is_empty()).then(|| model.clone()),
                name: d["title"].as_str().unwrap_or(&uuid).to_owned(),
                probe_labels: channels
                    .iter()
                    .filter_map(|c| {
                        Some((
                            c["channel"].as_i64()?.to_string(),
                            c["channel_label"]
                                .as_str()
                                .map_or_else(|| format!("Channel {}", c["channel"]), str::to_owned),
                        ))
                    })
                    .collect(),
                source: self.config.name.clone(),
            };
            if self.registered.get(&uuid).is_none_or(|old| {
                (&old.name, &old.model, &old.probe_labels)
                    != (
                        &registration.name,
                        &registration.model,
                        &registration.probe_labels,
                    )
            }) {
                self.registered.insert(uuid.clone(), registration.clone());
                out.registrations.push(registration);
            }
            for t in d["latest_temps"].as_array().into_iter().flatten() {
                let Some(ch) = t["channel"].as_i64() else {
                    continue;
                };
                if !enabled(ch) {
                    continue;
                }
                let created = t["created"].as_str().map(str::to_owned);
                let key = (uuid.clone(), ch.to_string());
                if created.is_some() && self.last_created.get(&key) == created.as_ref() {
                    continue;
                }
                out.readings.push(RawReading {
                    device_id: uuid.clone(),
                    probe_id: ch.to_string(),
                    device_time_ms: created.as_deref().and_then(rfc3339_ms),
                    value: t["temp"].as_f64(),
                    unit: t["degreetype"]
                        .as_i64()
                        .map_or(device_unit, |dt| unit_of(Some(dt))),
                    raw: t.to_string().into_bytes(),
                });
                if let Some(created) = created {
                    self.last_created.insert(key, created);
                }
            }
            let log = &d["device_log"];
            let battery = log["vBattPer"]
                .as_f64()
                .map(|b| if b <= 1.0 { b * 100.0 } else { b });
            let mut attributes = BTreeMap::new();
            attributes.insert(
                "fireboard.degreetype".to_owned(),
                d["degreetype"].to_string(),
            );
            if self.has_drive(&uuid, &model) {
                drives.push(uuid.clone());
            }
            out.statuses.push(DeviceStatus {
                device_id: uuid.clone(),
                event_time: now_ms,
                received_time: now_ms,
                online: true,
                battery_percent: battery,
                signal_dbm: log["signallevel"]
                    .as_i64()
                    .and_then(|s| i32::try_from(s).ok()),
                firmware: d["version"]
                    .as_str()
                    .or_else(|| log["version"].as_str())
                    .map(str::to_owned),
                source: self.config.name.clone(),
                note: None,
                attributes,
            });
        }
        Ok((out, drives))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the pattern of polls, no rolling hour ever holds more calls than the budget.
        #[test]
        fn the_budget_is_never_overdrawn(gaps in prop::collection::vec(0u64..400, 1..400), per_poll in 1u32..8) {
            let t0 = Instant::now();
            let mut budget = CallBudget::new(200);
            let mut now = t0;
            let mut made: Vec<Instant> = Vec::new();
            for gap in gaps {
                now += Duration::from_secs(gap);
                if budget.take(per_poll, now).is_ok() {
                    made.extend(std::iter::repeat_n(now, per_poll as usize));
                }
            }
            for (i, t) in made.iter().enumerate() {
                let in_hour = made[i..].iter().take_while(|u| u.duration_since(*t) < HOUR).count();
                prop_assert!(in_hour <= 200, "{} calls within an hour", in_hour);
            }
        }
    }

    #[test]
    fn a_refusal_says_how_long_to_wait() {
        let t0 = Instant::now();
        let mut budget = CallBudget::new(3);
        assert!(budget.take(2, t0).is_ok());
        assert!(budget.take(1, t0 + Duration::from_secs(600)).is_ok());
        let wait = budget
            .take(2, t0 + Duration::from_secs(1_200))
            .expect_err("full");
        // Two must age out: the second of the first pair, at t0 + 1 h.
        assert_eq!(wait, Duration::from_secs(2_400));
        assert!(budget.take(2, t0 + HOUR).is_ok());
    }

    #[test]
    fn the_interval_stretches_with_fan_controllers() {
        let mut f = Fireboard::new(FireboardConfig {
            credentials: Credentials::with_password("u", ""),
            poll_interval_s: 5,
            ..FireboardConfig::default()
        })
        .expect("config");
        assert_eq!(
            f.interval(),
            Duration::from_secs(3_600).mul_f64(1.0 / 190.0)
        );
        f.drives = vec!["a".into(), "b".into()];
        let interval = f.interval();
        assert!(
            interval.as_secs_f64() * 190.0 / 3.0 >= 3_599.0,
            "{interval:?}"
        );
        assert!(3_600.0 / interval.as_secs_f64() * 3.0 <= 190.5);
    }
}
