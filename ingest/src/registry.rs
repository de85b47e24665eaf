//! The one registry of source kinds: what `[[sources]]` entries in the config may say.
//!
//! ```toml
//! [[sources]]
//! kind = "mqtt"
//! url = "mqtt://192.168.1.10:1883"
//!
//! [[sources]]
//! kind = "http_push"
//! listen = "0.0.0.0:8090"
//! tokens = { smoker = "…" }
//! ```
//!
//! Adding a kind means a variant here and its settings type; `emberline ingest` and `up`
//! run whatever the config lists.

use serde::{Deserialize, Serialize};

use crate::cloud::fireboard::{Fireboard, FireboardConfig};
use crate::cloud::meater::{Meater, MeaterConfig};
use crate::cloud::thermoworks::{Thermoworks, ThermoworksConfig};
use crate::cloud::{CloudError, CloudPoller};
use crate::http_push::{HttpPush, HttpPushConfig};
use crate::mqtt::{MqttSource, MqttSourceConfig};
use crate::{IngestError, Simulator, SimulatorConfig, Source};

/// One configured source, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// The simulated grill.
    Simulator(SimulatorConfig),
    /// An MQTT broker (ESPHome, DIY bridges).
    Mqtt(MqttSourceConfig),
    /// The HTTP push endpoint.
    HttpPush(HttpPushConfig),
    /// ThermoWorks Cloud (or ETI Cloud).
    Thermoworks(ThermoworksConfig),
    /// MEATER Cloud.
    Meater(MeaterConfig),
    /// FireBoard Cloud.
    Fireboard(FireboardConfig),
}

impl SourceConfig {
    /// The kind's name, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Simulator(_) => "simulator",
            SourceConfig::Mqtt(_) => "mqtt",
            SourceConfig::HttpPush(_) => "http_push",
            SourceConfig::Thermoworks(_) => "thermoworks",
            SourceConfig::Meater(_) => "meater",
            SourceConfig::Fireboard(_) => "fireboard",
        }
    }

    /// The source, ready to run. `start_ms` starts a simulated cook.
    pub fn build(&self, start_ms: i64) -> Result<Box<dyn Source>, IngestError> {
        let config_error = |source_name: &str, e: CloudError| IngestError::Config {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        };
        Ok(match self {
            SourceConfig::Simulator(c) => Box::new(Simulator::new(c.clone(), start_ms)),
            SourceConfig::Mqtt(c) => Box::new(MqttSource::new(c.clone())),
            SourceConfig::HttpPush(c) => Box::new(HttpPush::new(c.clone())),
            SourceConfig::Thermoworks(c) => Box::new(CloudPoller::new(
                Thermoworks::new(c.clone()).map_err(|e| config_error(&c.name, e))?,
                c.retention_days,
            )),
            SourceConfig::Meater(c) => Box::new(CloudPoller::new(
                Meater::new(c.clone()).map_err(|e| config_error(&c.name, e))?,
                c.retention_days,
            )),
            SourceConfig::Fireboard(c) => Box::new(CloudPoller::new(
                Fireboard::new(c.clone()).map_err(|e| config_error(&c.name, e))?,
                c.retention_days,
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        sources: Vec<SourceConfig>,
    }

    #[test]
    fn kinds_parse_with_their_settings_and_refuse_unknown_ones() {
        let doc: Doc = serde_json::from_str(
            r#"{"sources": [
                {"kind": "mqtt", "url": "mqtt://broker:1884", "topics": [{"filter": "bbq/#", "format": "json"}]},
                {"kind": "http_push", "tokens": {"smoker": "t"}},
                {"kind": "simulator", "devices": 2},
                {"kind": "thermoworks", "username": "a@b.c", "password_env": "TW", "poll_interval_s": 30}
            ]}"#,
        )
        .expect("parses");
        let kinds: Vec<&str> = doc.sources.iter().map(SourceConfig::kind).collect();
        assert_eq!(kinds, ["mqtt", "http_push", "simulator", "thermoworks"]);
        match &doc.sources[3] {
            SourceConfig::Thermoworks(t) => {
                assert_eq!(
                    (t.credentials.username.as_str(), t.poll_interval_s),
                    ("a@b.c", 30)
                );
                assert_eq!(t.credentials.password_env.as_deref(), Some("TW"));
            }
            other => panic!("{other:?}"),
        }
        match &doc.sources[0] {
            SourceConfig::Mqtt(m) => assert_eq!(m.topics[0].filter, "bbq/#"),
            other => panic!("{other:?}"),
        }
        for bad in [
            r#"{"sources": [{"kind": "pigeon"}]}"#,
            r#"{"sources": [{"kind": "mqtt", "uri": "x"}]}"#,
            r#"{"sources": [{"url": "mqtt://x"}]}"#,
            r#"{"sources": [{"kind": "thermoworks", "username": "a", "pasword": "typo"}]}"#,
        ] {
            assert!(serde_json::from_str::<Doc>(bad).is_err(), "{bad}");
        }
    }
}
