//! The MQTT source: ESPHome nodes, DIY bridges and anything else that publishes readings.
//!
//! Each `[[sources.topics]]` mapping names a topic filter, how to find the device and probe
//! in the topic (`{n}` is the topic's n-th level, from 0) and how to read the payload:
//! `number` (a plain number, ESPHome's `<node>/sensor/<name>/state`) or `json` (a field of a
//! JSON object, with optional time and unit fields). Without mappings the source listens
//! the ESPHome way: `+/sensor/+/state`, device `{0}`, probe `{2}`.
//!
//! The session is persistent and messages are acknowledged only once their readings are in
//! the log, so a reading published while Emberline restarts or reconnects is delivered
//! later, not lost. Connection failures are retried with backoff; rejected credentials are
//! reported as such and retried slowly.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::validate::{Gate, RawReading, Rejected, Rejection, Remembered, Unit};
use crate::{EventSink, IngestError, Source};
use emberline_common::clock::now_ms;
use emberline_common::{Backoff, Secret};

/// Settings of an MQTT source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSourceConfig {
    /// The tenant whose devices these are (`default` for a single household).
    #[serde(skip_serializing_if = "emberline_common::tenant::is_default")]
    pub tenant: String,
    /// Name in logs and on readings.
    pub name: String,
    /// `mqtt://host[:port]`.
    pub url: String,
    /// Client id (the broker keeps this session's messages while Emberline is away).
    pub client_id: String,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// Password (prefer `password_file` or the environment).
    pub password: Option<Secret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Readings older than this are refused, days.
    pub retention_days: u32,
    /// Topic mappings; empty means ESPHome's convention.
    pub topics: Vec<TopicMapping>,
}

impl Default for MqttSourceConfig {
    fn default() -> Self {
        Self {
            tenant: emberline_common::tenant::DEFAULT_TENANT.into(),
            name: "mqtt".into(),
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "emberline-ingest".into(),
            username: None,
            password: None,
            password_file: None,
            retention_days: 30,
            topics: Vec::new(),
        }
    }
}

/// How the payload carries the value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// A plain number.
    #[default]
    Number,
    /// A JSON object.
    Json,
}

/// One topic filter and how to read what arrives on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicMapping {
    /// MQTT filter (`+` and `#` allowed).
    pub filter: String,
    /// Device id: literal text with `{n}` for topic level n.
    pub device: String,
    /// Probe id, likewise.
    pub probe: String,
    /// Payload format.
    pub format: PayloadFormat,
    /// Unit of the values (a JSON `unit_field` overrides it).
    pub unit: Unit,
    /// JSON: field holding the value (dots for nesting).
    pub value_field: String,
    /// JSON: field holding the device's time (epoch seconds or milliseconds).
    pub time_field: Option<String>,
    /// JSON: field holding the unit (`C`, `F`, `K`).
    pub unit_field: Option<String>,
}

impl Default for TopicMapping {
    fn default() -> Self {
        Self {
            filter: "+/sensor/+/state".into(),
            device: "{0}".into(),
            probe: "{2}".into(),
            format: PayloadFormat::Number,
            unit: Unit::C,
            value_field: "value".into(),
            time_field: None,
            unit_field: None,
        }
    }
}

/// Whether `topic` matches MQTT `filter`.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match f {
            "#" => return true,
            "+" => {
                if t.next().is_none() {
                    return false;
                }
            }
            level => {
                if t.next() != Some(level) {
                    return false;
                }
            }
        }
    }
    t.next().is_none()
}

/// Fills `{n}` in `template` with topic level n.
fn expand(template: &str, levels: &[&str]) -> Result<String, Rejection> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| Rejection::Malformed(format!("unclosed {{ in {template:?}")))?;
        let n: usize = rest[start + 1..end].parse().map_err(|_| {
            Rejection::Malformed(format!("{template:?}: {{…}} must hold a level number"))
        })?;
        let level = levels
            .get(n)
            .ok_or_else(|| Rejection::Malformed(format!("the topic has no level {n}")))?;
        out.push_str(level);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn field<'v>(value: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// Reads one message into a reading (before validation). Never panics, whatever the bytes.
pub fn parse_message(
    mapping: &TopicMapping,
    topic: &str,
    payload: &[u8],
) -> Result<RawReading, Rejection> {
    let levels: Vec<&str> = topic.split('/').collect();
    let device_id = expand(&mapping.device, &levels)?;
    let probe_id = expand(&mapping.probe, &levels)?;
    let text = std::str::from_utf8(payload)
        .map_err(|_| Rejection::Malformed("the payload is not UTF-8".into()))?;
    let (value, time, unit) = match mapping.format {
        PayloadFormat::Number => {
            let v: f64 = text.trim().parse().map_err(|_| {
                Rejection::Malformed(format!("{:?} is not a number", truncate(text)))
            })?;
            (Some(v), None, mapping.unit)
        }
        PayloadFormat::Json => {
            let doc: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| Rejection::Malformed(format!("not JSON: {e}")))?;
            let value = match field(&doc, &mapping.value_field) {
                Some(serde_json::Value::Null) => None,
                Some(v) => Some(v.as_f64().ok_or_else(|| {
                    Rejection::Malformed(format!("field {:?} is not a number", mapping.value_field))
                })?),
                None => {
                    return Err(Rejection::Malformed(format!(
                        "no field {:?}",
                        mapping.value_field
                    )));
                }
            };
            let time = match &mapping.time_field {
                None => None,
                Some(f) => match field(&doc, f) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(t) => {
                        let t = t
                            .as_f64()
                            .filter(|t| t.is_finite() && t.abs() < 1e16)
                            .ok_or_else(|| {
                                Rejection::Malformed(format!("field {f:?} is not an epoch time"))
                            })?;
                        Some(if t.abs() < 1e11 {
                            (t * 1_000.0) as i64
                        } else {
                            t as i64
                        })
                    }
                },
            };
            let unit = match &mapping.unit_field {
                None => mapping.unit,
                Some(f) => match field(&doc, f).and_then(|u| u.as_str()) {
                    None => mapping.unit,
                    Some(u) => serde_json::from_value(serde_json::Value::String(u.to_owned()))
                        .map_err(|_| {
                            Rejection::Malformed(format!("unit {u:?} is not C, F or K"))
                        })?,
                },
            };
            (value, time, unit)
        }
    };
    Ok(RawReading {
        device_id,
        probe_id,
        device_time_ms: time,
        value,
        unit,
        raw: payload.to_vec(),
    })
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The source.
pub struct MqttSource {
    config: MqttSourceConfig,
    remembered: Remembered,
}

impl MqttSource {
    /// A source for `config`.
    pub fn new(mut config: MqttSourceConfig) -> Self {
        if config.topics.is_empty() {
            config.topics.push(TopicMapping::default());
        }
        Self {
            config,
            remembered: Remembered::default(),
        }
    }

    /// Remembers the readings it admits in `remembered`, which an earlier run of the same
    /// source may have filled: a message that run appended but could not acknowledge, which
    /// the broker sends again, is not appended twice.
    pub fn remembering(mut self, remembered: Remembered) -> Self {
        self.remembered = remembered;
        self
    }

    /// Checks the settings (the URL's form; a password file is read).
    pub fn check(&self) -> Result<(), IngestError> {
        self.options().map(drop)
    }

    /// Connects as a passing client — its own client id, a clean session, nothing
    /// acknowledged for the source — and listens for `wait`: the (device, probe) pairs the
    /// topics carried, or why the broker could not be used.
    pub async fn probe(&self, wait: Duration) -> Result<Vec<(String, String)>, String> {
        let source = self.options().map_err(|e| e.to_string())?;
        let (host, port) = source.broker_address();
        let mut options = MqttOptions::new(format!("emberline-test-{}", now_ms()), host, port);
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(10));
        if let Some(login) = source.credentials() {
            options.set_credentials(login.username, login.password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let mut found = std::collections::BTreeSet::new();
        let deadline = tokio::time::Instant::now() + wait;
        let mut connected = false;
        loop {
            let polled = tokio::select! {
                p = eventloop.poll() => p,
                () = tokio::time::sleep_until(deadline) => break,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    for mapping in &self.config.topics {
                        client
                            .subscribe(&mapping.filter, QoS::AtMostOnce)
                            .await
                            .map_err(|e| {
                                format!("cannot subscribe to {:?}: {e}", mapping.filter)
                            })?;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let parsed = self
                        .config
                        .topics
                        .iter()
                        .find(|m| topic_matches(&m.filter, &publish.topic))
                        .and_then(|m| parse_message(m, &publish.topic, &publish.payload).ok());
                    if let Some(raw) = parsed {
                        found.insert((raw.device_id, raw.probe_id));
                    }
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(
                    ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
                )) => {
                    return Err(
                        "credentials rejected: the broker refused the user name or password".into(),
                    );
                }
                Err(e) if !connected => {
                    return Err(format!("cannot connect to {}: {e}", self.config.url));
                }
                Err(e) => {
                    return Err(format!(
                        "the connection to {} dropped: {e}",
                        self.config.url
                    ));
                }
            }
        }
        if !connected {
            return Err(format!(
                "cannot connect to {}: no answer within {wait:?}",
                self.config.url
            ));
        }
        let _ = client.disconnect().await;
        Ok(found.into_iter().collect())
    }

    fn options(&self) -> Result<MqttOptions, IngestError> {
        let bad = |reason: String| IngestError::Config {
            source_name: self.config.name.clone(),
            reason,
        };
        let rest = self
            .config
            .url
            .strip_prefix("mqtt://")
            .ok_or_else(|| {
                bad(format!(
                    "url {:?} must be mqtt://host[:port]",
                    self.config.url
                ))
            })?
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| bad(format!("bad port in {:?}", self.config.url)))?,
            ),
            None => (rest, 1883),
        };
        let mut options = MqttOptions::new(&self.config.client_id, host, port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_manual_acks(true);
        if let Some(user) = &self.config.username {
            let password = match (&self.config.password, &self.config.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(path)) => {
                    Secret::from_file(path).map_err(|e| bad(format!("password_file: {e}")))?
                }
                (None, None) => Secret::default(),
            };
            options.set_credentials(user, password.expose());
        }
        Ok(options)
    }
}

#[async_trait]
impl Source for MqttSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn run(
        &mut self,
        sink: EventSink,
        shutdown: CancellationToken,
    ) -> Result<(), IngestError> {
        let options = self.options()?;
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let mut gate = Gate::remembering(
            &self.config.name,
            i64::from(self.config.retention_days) * 86_400_000,
            self.remembered.clone(),
        );
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(60));
        let metrics = crate::metrics::SourceMetrics::new(&self.config.name);
        loop {
            let polled = tokio::select! {
                p = eventloop.poll() => p,
                () = shutdown.cancelled() => return Ok(()),
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(source = %self.config.name, broker = %self.config.url, "connected to the MQTT broker");
                    backoff.reset();
                    metrics.backing_off(Duration::ZERO);
                    for mapping in &self.config.topics {
                        if let Err(e) = client.subscribe(&mapping.filter, QoS::AtLeastOnce).await {
                            tracing::warn!(filter = %mapping.filter, error = %e, "cannot subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    metrics.polled();
                    let received = now_ms();
                    let mapping = self
                        .config
                        .topics
                        .iter()
                        .find(|m| topic_matches(&m.filter, &publish.topic));
                    let admitted =
                        match mapping.map(|m| parse_message(m, &publish.topic, &publish.payload)) {
                            Some(Ok(raw)) => gate.admit(vec![raw], received),
                            Some(Err(reason)) => crate::validate::Admitted {
                                rejected: vec![Rejected {
                                    device_id: String::new(),
                                    probe_id: String::new(),
                                    reason: with_topic(reason, &publish.topic),
                                    raw: publish.payload.to_vec(),
                                }],
                                ..Default::default()
                            },
                            None => continue, // a broker may send more than was asked for
                        };
                    match sink.deliver(&self.config.name, &admitted, received).await {
                        Ok(()) => {
                            metrics.delivered(&admitted, received);
                            crate::metrics::status::succeeded(&self.config.name, received);
                            // Only now may the broker forget the message.
                            if let Err(e) = client.ack(&publish).await {
                                tracing::warn!(error = %e, "cannot acknowledge a message; the broker re-sends it");
                            }
                        }
                        Err(IngestError::ShutDown { .. }) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let rejected = matches!(
                        e,
                        ConnectionError::ConnectionRefused(
                            ConnectReturnCode::BadUserNamePassword
                                | ConnectReturnCode::NotAuthorized
                        )
                    );
                    metrics.failed(if rejected {
                        "credentials"
                    } else {
                        "connection"
                    });
                    let delay = if rejected {
                        tracing::error!(source = %self.config.name, "the MQTT broker rejected the credentials");
                        backoff.next_delay().max(Duration::from_secs(30))
                    } else {
                        let delay = backoff.next_delay();
                        tracing::warn!(source = %self.config.name, error = %e, ?delay, "MQTT connection lost; reconnecting");
                        delay
                    };
                    metrics.backing_off(delay);
                    crate::metrics::status::failed(
                        &self.config.name,
                        &if rejected {
                            "credentials rejected: the broker refused the user name or password"
                                .to_owned()
                        } else {
                            format!("MQTT connection lost: {e}")
                        },
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
    }
}

fn with_topic(reason: Rejection, topic: &str) -> Rejection {
    match reason {
        Rejection::Malformed(m) => Rejection::Malformed(format!("{m} (topic {topic})")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn filters_match_like_a_broker() {
        assert!(topic_matches("+/sensor/+/state", "grill/sensor/pit/state"));
        assert!(!topic_matches(
            "+/sensor/+/state",
            "grill/sensor/pit/state/x"
        ));
        assert!(!topic_matches(
            "+/sensor/+/state",
            "grill/binary_sensor/pit/state"
        ));
        assert!(topic_matches("bbq/#", "bbq/a/b"));
        assert!(topic_matches("bbq/#", "bbq"));
        assert!(!topic_matches("bbq/+", "bbq"));
    }

    #[test]
    fn esphome_numbers_and_json_fields_are_read() {
        let esphome = TopicMapping::default();
        let r =
            parse_message(&esphome, "kitchen-grill/sensor/pit/state", b"121.5").expect("number");
        assert_eq!(
            (r.device_id.as_str(), r.probe_id.as_str(), r.value),
            ("kitchen-grill", "pit", Some(121.5))
        );
        let json = TopicMapping {
            filter: "bbq/+/temp".into(),
            device: "heatermeter".into(),
            probe: "probe-{1}".into(),
            format: PayloadFormat::Json,
            value_field: "t.value".into(),
            time_field: Some("ts".into()),
            unit_field: Some("unit".into()),
            ..TopicMapping::default()
        };
        let r = parse_message(
            &json,
            "bbq/2/temp",
            br#"{"t": {"value": 250}, "ts": 1790000000, "unit": "F"}"#,
        )
        .expect("json");
        assert_eq!(
            (r.device_id.as_str(), r.probe_id.as_str()),
            ("heatermeter", "probe-2")
        );
        assert_eq!(
            (r.value, r.device_time_ms, r.unit),
            (Some(250.0), Some(1_790_000_000_000), Unit::F)
        );
        let unplugged =
            parse_message(&json, "bbq/2/temp", br#"{"t": {"value": null}}"#).expect("null");
        assert_eq!(unplugged.value, None);
        for bad in [
            &b"{"[..],
            br#"{"t": {"value": "hot"}}"#,
            br#"{"t": 1}"#,
            br#"{"t": {"value": 1}, "unit": "R"}"#,
            b"\xff\xfe",
        ] {
            assert!(
                matches!(
                    parse_message(&json, "bbq/2/temp", bad),
                    Err(Rejection::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert!(parse_message(&esphome, "a/sensor/b/state", b"unavailable").is_err());
    }

    proptest! {
        #[test]
        fn no_payload_or_topic_makes_the_parser_panic(topic in "[a-z/+#{}0-9]{0,30}", payload in prop::collection::vec(any::<u8>(), 0..64), template in "[a-z{}0-9]{0,12}") {
            let mapping = TopicMapping { device: template.clone(), format: PayloadFormat::Json, time_field: Some("ts".into()), unit_field: Some("u".into()), ..TopicMapping::default() };
            let _ = parse_message(&mapping, &topic, &payload);
            let _ = parse_message(&TopicMapping { probe: template, ..TopicMapping::default() }, &topic, &payload);
        }
    }
}
