//! The connector's settings (the `[home_assistant]` section of Emberline's config).

use std::path::PathBuf;
use std::time::Duration;

use emberline_common::Secret;
use serde::{Deserialize, Serialize};

use crate::ConnectorError;

/// Everything the connector needs to know.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HomeAssistantConfig {
    /// The MQTT broker Home Assistant listens to. The connector runs only when this is set.
    pub mqtt: Option<MqttConfig>,
    /// The Emberline gateway to read from, e.g. `http://127.0.0.1:50051`.
    pub gateway_url: String,
    /// An API token of scope `control` for the gateway (`emberline token create "home
    /// assistant" --scope control`). `emberline up` gives its built-in connector one itself.
    pub token: Option<Secret>,
    /// PEM file of the CA (or the self-signed certificate) the gateway's TLS certificate
    /// is checked against, for an `https://` `gateway_url`.
    pub gateway_ca_file: Option<PathBuf>,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Prefix of Emberline's own state and command topics.
    pub base_topic: String,
    /// Temperature unit of the entities.
    pub unit: TemperatureUnit,
    /// Fewest milliseconds between two state messages of one entity; changes in between are
    /// coalesced and the newest is sent when the interval is up (0 sends every change).
    pub min_state_interval_ms: u64,
    /// A probe is stale — shown unavailable — after this many seconds without a reading, or
    /// after five of its usual reporting intervals when that is longer.
    pub stale_after_s: u64,
    /// No longer used (device changes, predictions and alerts are pushed by the gateway);
    /// still accepted so that older configuration files load, with a warning.
    #[serde(skip_serializing)]
    pub refresh_interval_ms: Option<u64>,
    /// Where the connector keeps its subscription position between runs; `None` keeps it
    /// in `<data_dir>/home-assistant/`.
    pub state_dir: Option<PathBuf>,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            mqtt: None,
            gateway_url: "http://127.0.0.1:50051".into(),
            token: None,
            gateway_ca_file: None,
            discovery_prefix: "homeassistant".into(),
            base_topic: "emberline".into(),
            unit: TemperatureUnit::Celsius,
            min_state_interval_ms: 5_000,
            stale_after_s: 120,
            refresh_interval_ms: None,
            state_dir: None,
        }
    }
}

impl HomeAssistantConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConnectorError> {
        let bad = |reason: String| Err(ConnectorError::Config(reason));
        for (name, topic) in [
            ("discovery_prefix", &self.discovery_prefix),
            ("base_topic", &self.base_topic),
        ] {
            if topic.is_empty() || topic.contains(['+', '#']) || topic.ends_with('/') {
                return bad(format!(
                    "home_assistant.{name} {topic:?} must be a non-empty topic without wildcards or a trailing /"
                ));
            }
        }
        if self.stale_after_s == 0 {
            return bad("home_assistant.stale_after_s must be at least 1".into());
        }
        if let Some(mqtt) = &self.mqtt {
            mqtt.endpoint()?;
        }
        Ok(())
    }

    /// [`Self::min_state_interval_ms`] as a duration.
    pub fn min_state_interval(&self) -> Duration {
        Duration::from_millis(self.min_state_interval_ms)
    }
}

/// How to reach the MQTT broker.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: String,
    /// Client id; one connector per id.
    pub client_id: String,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// Password (prefer `password_file` or the `EMBERLINE__HOME_ASSISTANT__MQTT__PASSWORD`
    /// environment variable over writing it in the file).
    pub password: Option<Secret>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the broker's certificate, for `mqtts://`; the system's
    /// roots when absent.
    pub ca_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "emberline".into(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
        }
    }
}

/// Where the broker is and whether to speak TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `mqtts://`.
    pub tls: bool,
}

impl MqttConfig {
    /// Parses [`Self::url`].
    pub fn endpoint(&self) -> Result<Endpoint, ConnectorError> {
        let bad = || {
            ConnectorError::Config(format!(
                "home_assistant.mqtt.url {:?} is not mqtt://host[:port] or mqtts://host[:port]",
                self.url
            ))
        };
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = self.url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// The password from the config or its file.
    pub fn resolved_password(&self) -> Result<Option<Secret>, ConnectorError> {
        match (&self.password, &self.password_file) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(path)) => Secret::from_file(path).map(Some).map_err(|e| {
                ConnectorError::Config(format!("home_assistant.mqtt.password_file: {e}"))
            }),
            (None, None) => Ok(None),
        }
    }
}

/// The unit temperatures are shown in.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TemperatureUnit {
    /// °C.
    #[default]
    Celsius,
    /// °F.
    Fahrenheit,
}

impl TemperatureUnit {
    /// Home Assistant's unit string.
    pub fn symbol(self) -> &'static str {
        match self {
            TemperatureUnit::Celsius => "°C",
            TemperatureUnit::Fahrenheit => "°F",
        }
    }

    /// A temperature in Celsius, in this unit.
    pub fn from_celsius(self, c: f64) -> f64 {
        match self {
            TemperatureUnit::Celsius => c,
            TemperatureUnit::Fahrenheit => c * 9.0 / 5.0 + 32.0,
        }
    }

    /// A temperature in this unit, in Celsius.
    pub fn to_celsius(self, v: f64) -> f64 {
        match self {
            TemperatureUnit::Celsius => v,
            TemperatureUnit::Fahrenheit => (v - 32.0) * 5.0 / 9.0,
        }
    }

    /// A rate in Celsius per minute, in this unit per minute.
    pub fn rate_from_celsius(self, r: f64) -> f64 {
        match self {
            TemperatureUnit::Celsius => r,
            TemperatureUnit::Fahrenheit => r * 9.0 / 5.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqtt(url: &str) -> MqttConfig {
        MqttConfig {
            url: url.into(),
            ..MqttConfig::default()
        }
    }

    #[test]
    fn broker_urls_parse_with_default_ports_and_refuse_garbage() {
        let e = mqtt("mqtt://broker.lan").endpoint().expect("parses");
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("broker.lan", 1883, false)
        );
        let e = mqtt("mqtts://10.0.0.2:8884/").endpoint().expect("parses");
        assert_eq!((e.host.as_str(), e.port, e.tls), ("10.0.0.2", 8884, true));
        let e = mqtt("mqtt://[::1]:1884").endpoint().expect("parses");
        assert_eq!((e.host.as_str(), e.port), ("::1", 1884));
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://x:99999",
            "mqtt://x:port",
            "broker:1883",
        ] {
            assert!(mqtt(bad).endpoint().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn units_convert_both_ways() {
        let f = TemperatureUnit::Fahrenheit;
        assert_eq!(f.from_celsius(100.0), 212.0);
        assert!((f.to_celsius(f.from_celsius(93.3)) - 93.3).abs() < 1e-9);
        assert_eq!(f.rate_from_celsius(1.0), 1.8);
        assert_eq!(TemperatureUnit::Celsius.from_celsius(5.0), 5.0);
    }

    #[test]
    fn wildcards_in_topics_are_refused() {
        let config = HomeAssistantConfig {
            base_topic: "emberline/#".into(),
            ..HomeAssistantConfig::default()
        };
        assert!(config.validate().is_err());
        assert!(HomeAssistantConfig::default().validate().is_ok());
    }
}
