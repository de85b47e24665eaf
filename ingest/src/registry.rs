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

    /// The tenant whose devices the source reports.
    pub fn tenant(&self) -> &str {
        match self {
            SourceConfig::Simulator(c) => &c.tenant,
            SourceConfig::Mqtt(c) => &c.tenant,
            SourceConfig::HttpPush(c) => &c.tenant,
            SourceConfig::Thermoworks(c) => &c.tenant,
            SourceConfig::Meater(c) => &c.tenant,
            SourceConfig::Fireboard(c) => &c.tenant,
        }
    }

    /// The source, ready to run; a simulator starts a new cook at `start_ms`.
    pub fn build(&self, start_ms: i64) -> Result<Box<dyn Source>, IngestError> {
        self.build_at(start_ms, start_ms)
    }

    /// The source, ready to run at `now_ms`. A simulator's cook began at `start_ms`: when
    /// that is earlier it carries on where the cook would be by now (and starts no cook
    /// session, which began with it); when it is `now_ms` it is a new cook.
    pub fn build_at(&self, start_ms: i64, now_ms: i64) -> Result<Box<dyn Source>, IngestError> {
        let config_error = |source_name: &str, e: CloudError| IngestError::Config {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        };
        if !emberline_common::tenant::is_valid_name(self.tenant()) {
            return Err(IngestError::Config {
                source_name: self.kind().to_owned(),
                reason: format!(
                    "tenant {:?}: a tenant name has 1 to 64 letters, digits, '.', '_', '-' or '@'",
                    self.tenant()
                ),
            });
        }
        Ok(match self {
            SourceConfig::Simulator(c) => {
                let mut simulator = Simulator::new(c.clone(), start_ms);
                simulator.skip_to(now_ms);
                Box::new(simulator)
            }
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
    use std::time::Duration;

    use emberline_log::{EventLog, topics};
    use emberline_schemas::events::CookStarted;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::EventSink;

    /// The cook sessions a simulator built at `now_ms` for a cook begun at `start_ms`
    /// starts before its first readings.
    async fn cooks_started(start_ms: i64, now_ms: i64) -> Vec<CookStarted> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, codec) = crate::testing::embedded_log(dir.path(), 1)
            .await
            .expect("log");
        let config = SourceConfig::Simulator(SimulatorConfig {
            interval_ms: 10,
            cook_target_c: Some(93.0),
            ..SimulatorConfig::default()
        });
        let mut source = config.build_at(start_ms, now_ms).expect("build");
        let shutdown = CancellationToken::new();
        let sink = EventSink::new(log.clone(), codec.clone(), shutdown.clone());
        let run = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { source.run(sink, shutdown).await }
        });
        // The cook session, if any, is appended before the first reading.
        let mut readings = log
            .reader(topics::PROBE_READINGS, 0, 0)
            .await
            .expect("reader");
        assert!(
            !readings
                .next_batch(1, Duration::from_secs(60))
                .await
                .expect("read")
                .is_empty(),
            "no readings"
        );
        shutdown.cancel();
        run.await.expect("no panic").expect("stops cleanly");
        let mut out = Vec::new();
        let end = log.end_offset(topics::COOK_COMMANDS, 0).await.expect("end");
        let mut reader = log
            .reader(topics::COOK_COMMANDS, 0, 0)
            .await
            .expect("reader");
        while reader.position() < end {
            for r in reader
                .next_batch(100, Duration::from_secs(60))
                .await
                .expect("read")
            {
                out.push(codec.decode(&r.value).await.expect("a cook start"));
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_simulated_cook_starts_a_cook_session_and_a_resumed_one_does_not() {
        let start = 1_790_000_000_000;
        let started = cooks_started(start, start).await;
        assert_eq!(started.len(), 1, "{started:?}");
        let cook = &started[0];
        assert_eq!((cook.device_id.as_str(), cook.event_time), ("sim-1", start));
        assert_eq!(
            cook.targets_c
                .iter()
                .map(|(p, t)| (p.as_str(), *t))
                .collect::<Vec<_>>(),
            [("meat-1", 93.0), ("meat-2", 93.0), ("meat-3", 93.0)]
        );
        let resumed = cooks_started(start, start + 600_000).await;
        assert!(resumed.is_empty(), "{resumed:?}");
    }

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
                {"kind": "simulator", "devices": 2, "cook_target_c": 93.0},
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
        match &doc.sources[2] {
            SourceConfig::Simulator(s) => assert_eq!((s.devices, s.cook_target_c), (2, Some(93.0))),
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
