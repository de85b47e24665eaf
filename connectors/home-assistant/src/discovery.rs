//! Home Assistant MQTT discovery configs for one device.
//!
//! Per-entity discovery (`<prefix>/<component>/<node_id>/<object_id>/config`), retained,
//! with full key names. Every entity has a `unique_id` made of the device and probe ids, a
//! `device` block grouping it under the device as its user named it, and availability that
//! requires the connector, the device and (for readings) the probe to be available.

use serde_json::{Value, json};

use crate::config::{HomeAssistantConfig, TemperatureUnit};
use crate::topics::{Topics, safe_id};

/// Highest target the number entity offers, Celsius (the gateway refuses above it too).
pub const MAX_TARGET_C: f64 = 500.0;

/// What discovery needs to know of a device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceShape {
    /// Device id.
    pub device_id: String,
    /// Display name.
    pub name: String,
    /// Model.
    pub model: Option<String>,
    /// Firmware.
    pub firmware: Option<String>,
    /// Probes: (id, label, seconds after which HA expires its state).
    pub probes: Vec<ProbeShape>,
    /// Alert kinds with a binary sensor: those the device's rules can raise.
    pub alert_kinds: Vec<String>,
}

/// What discovery needs to know of a probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeShape {
    /// Probe id.
    pub probe_id: String,
    /// Label as the user gave it (the id when none).
    pub label: String,
    /// `expire_after`, seconds.
    pub expire_after_s: u64,
}

/// One retained discovery message.
#[derive(Clone, Debug, PartialEq)]
pub struct EntityConfig {
    /// Config topic.
    pub topic: String,
    /// Payload (JSON object).
    pub payload: Value,
}

/// Builds the discovery configs of devices.
#[derive(Clone, Debug)]
pub struct Discovery {
    topics: Topics,
    unit: TemperatureUnit,
}

impl Discovery {
    /// Discovery for one connector's settings.
    pub fn new(config: &HomeAssistantConfig, topics: Topics) -> Self {
        Self {
            topics,
            unit: config.unit,
        }
    }

    /// Every entity of `device`.
    pub fn configs(&self, device: &DeviceShape) -> Vec<EntityConfig> {
        let t = &self.topics;
        let d = device.device_id.as_str();
        let device_block = self.device_block(device);
        let origin = json!({
            "name": "Emberline",
            "sw_version": env!("CARGO_PKG_VERSION"),
            "support_url": "https://github.com/emberline/emberline",
        });
        let device_availability = json!([
            {"topic": t.bridge_availability()},
            {"topic": t.device_availability(d)},
        ]);
        let unit = self.unit.symbol();
        let mut out = Vec::new();
        let mut push = |component: &str, object: &str, mut payload: Value| {
            payload["unique_id"] = json!(format!("{}_{object}", Topics::node_id(d)));
            payload["device"] = device_block.clone();
            payload["origin"] = origin.clone();
            payload["has_entity_name"] = json!(true);
            out.push(EntityConfig {
                topic: t.config(component, d, object),
                payload,
            });
        };
        for probe in &device.probes {
            let p = probe.probe_id.as_str();
            let sp = safe_id(p);
            let probe_availability = json!([
                {"topic": t.bridge_availability()},
                {"topic": t.device_availability(d)},
                {"topic": t.probe_availability(d, p)},
            ]);
            push(
                "sensor",
                &format!("{sp}_temperature"),
                json!({
                    "name": probe.label,
                    "state_topic": t.probe_state(d, p),
                    "value_template": "{{ value_json.temperature }}",
                    "json_attributes_topic": t.probe_state(d, p),
                    "device_class": "temperature",
                    "state_class": "measurement",
                    "unit_of_measurement": unit,
                    "suggested_display_precision": 1,
                    "expire_after": probe.expire_after_s,
                    "availability": probe_availability,
                    "availability_mode": "all",
                }),
            );
            push(
                "sensor",
                &format!("{sp}_rate"),
                json!({
                    "name": format!("{} rate of rise", probe.label),
                    "state_topic": t.probe_state(d, p),
                    "value_template": "{{ value_json.rate }}",
                    "state_class": "measurement",
                    "unit_of_measurement": format!("{unit}/min"),
                    "suggested_display_precision": 2,
                    "icon": "mdi:thermometer-chevron-up",
                    "expire_after": probe.expire_after_s,
                    "availability": probe_availability,
                    "availability_mode": "all",
                }),
            );
            push(
                "binary_sensor",
                &format!("{sp}_health"),
                json!({
                    "name": format!("{} probe", probe.label),
                    "state_topic": t.probe_health(d, p),
                    "device_class": "problem",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "entity_category": "diagnostic",
                    "availability": device_availability,
                    "availability_mode": "all",
                }),
            );
            push(
                "sensor",
                &format!("{sp}_done_at"),
                json!({
                    "name": format!("{} done at", probe.label),
                    "state_topic": t.probe_prediction(d, p),
                    "value_template": "{{ value_json.done_at }}",
                    "json_attributes_topic": t.probe_prediction(d, p),
                    "device_class": "timestamp",
                    "icon": "mdi:timer-sand",
                    "availability": device_availability,
                    "availability_mode": "all",
                }),
            );
            let (min, max) = (
                self.unit.from_celsius(0.0),
                self.unit.from_celsius(MAX_TARGET_C),
            );
            push(
                "number",
                &format!("{sp}_target"),
                json!({
                    "name": format!("{} target", probe.label),
                    "state_topic": t.target_state(d, p),
                    "command_topic": t.target_command(d, p),
                    "device_class": "temperature",
                    "unit_of_measurement": unit,
                    "min": min,
                    "max": max,
                    "step": match self.unit { TemperatureUnit::Celsius => 0.5, TemperatureUnit::Fahrenheit => 1.0 },
                    "mode": "box",
                    "retain": false,
                    "availability": device_availability,
                    "availability_mode": "all",
                }),
            );
        }
        for kind in &device.alert_kinds {
            push(
                "binary_sensor",
                &format!("alert_{}", safe_id(kind)),
                json!({
                    "name": format!("Alert: {}", kind.replace('_', " ")),
                    "state_topic": t.alert_state(d, kind),
                    "device_class": "problem",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "availability": device_availability,
                    "availability_mode": "all",
                }),
            );
        }
        push(
            "sensor",
            "battery",
            json!({
                "name": "Battery",
                "state_topic": t.device_status(d),
                "value_template": "{{ value_json.battery }}",
                "device_class": "battery",
                "state_class": "measurement",
                "unit_of_measurement": "%",
                "entity_category": "diagnostic",
                "availability": device_availability,
                "availability_mode": "all",
            }),
        );
        push(
            "sensor",
            "signal",
            json!({
                "name": "Signal",
                "state_topic": t.device_status(d),
                "value_template": "{{ value_json.signal }}",
                "device_class": "signal_strength",
                "state_class": "measurement",
                "unit_of_measurement": "dBm",
                "entity_category": "diagnostic",
                "enabled_by_default": false,
                "availability": device_availability,
                "availability_mode": "all",
            }),
        );
        out
    }

    /// Topics to clear (empty retained payload) when `device` is removed: its configs, which
    /// deletes the entities, and its retained states.
    pub fn removal_topics(&self, device: &DeviceShape) -> Vec<String> {
        let t = &self.topics;
        let d = device.device_id.as_str();
        let mut out: Vec<String> = self.configs(device).into_iter().map(|c| c.topic).collect();
        out.push(t.device_availability(d));
        out.push(t.device_status(d));
        for probe in &device.probes {
            let p = probe.probe_id.as_str();
            out.extend([
                t.probe_state(d, p),
                t.probe_availability(d, p),
                t.probe_health(d, p),
                t.target_state(d, p),
                t.probe_prediction(d, p),
            ]);
        }
        out.extend(device.alert_kinds.iter().map(|k| t.alert_state(d, k)));
        out
    }

    fn device_block(&self, device: &DeviceShape) -> Value {
        let mut block = json!({
            "identifiers": [Topics::node_id(&device.device_id)],
            "name": device.name,
            "manufacturer": "Emberline",
        });
        if let Some(model) = &device.model {
            block["model"] = json!(model);
        }
        if let Some(firmware) = &device.firmware {
            block["sw_version"] = json!(firmware);
        }
        block
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn shape(labels: [&str; 2]) -> DeviceShape {
        DeviceShape {
            device_id: "grill.1".into(),
            name: "Back yard".into(),
            model: Some("Sim".into()),
            firmware: None,
            probes: ["pit", "meat-1"]
                .iter()
                .zip(labels)
                .map(|(p, l)| ProbeShape {
                    probe_id: (*p).into(),
                    label: l.into(),
                    expire_after_s: 300,
                })
                .collect(),
            alert_kinds: vec!["target_reached".into()],
        }
    }

    fn discovery(unit: TemperatureUnit) -> Discovery {
        let config = HomeAssistantConfig {
            unit,
            ..HomeAssistantConfig::default()
        };
        Discovery::new(
            &config,
            Topics::new("homeassistant", "emberline", "emberline"),
        )
    }

    #[test]
    fn renaming_a_probe_changes_names_but_not_ids_or_topics() {
        let d = discovery(TemperatureUnit::Celsius);
        let before = d.configs(&shape(["Pit", "Brisket"]));
        let after = d.configs(&shape(["Smoker", "Pork butt"]));
        // Per probe: temperature, rate, health, target, done at; battery, signal; one alert.
        assert_eq!(before.len(), 2 * 5 + 2 + 1);
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a.topic, b.topic);
            assert_eq!(a.payload["unique_id"], b.payload["unique_id"]);
        }
        assert_ne!(before[0].payload["name"], after[0].payload["name"]);
        let ids: BTreeSet<_> = before
            .iter()
            .map(|c| c.payload["unique_id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids.len(), before.len(), "unique ids repeat");
    }

    #[test]
    fn fahrenheit_changes_units_and_the_target_range() {
        let d = discovery(TemperatureUnit::Fahrenheit);
        let configs = d.configs(&shape(["Pit", "Meat"]));
        let target = configs
            .iter()
            .find(|c| c.topic.ends_with("pit_target/config"))
            .expect("target entity");
        assert_eq!(target.payload["unit_of_measurement"], "°F");
        assert_eq!(target.payload["min"], 32.0);
        assert_eq!(target.payload["max"], 932.0);
        let rate = configs
            .iter()
            .find(|c| c.topic.ends_with("pit_rate/config"))
            .expect("rate entity");
        assert_eq!(rate.payload["unit_of_measurement"], "°F/min");
    }

    #[test]
    fn removal_clears_every_config_and_state() {
        let d = discovery(TemperatureUnit::Celsius);
        let device = shape(["Pit", "Meat"]);
        let topics = d.removal_topics(&device);
        for config in d.configs(&device) {
            assert!(topics.contains(&config.topic));
        }
        let t = Topics::new("homeassistant", "emberline", "emberline");
        for probe in ["pit", "meat-1"] {
            assert!(topics.contains(&t.probe_state("grill.1", probe)));
            assert!(topics.contains(&t.target_state("grill.1", probe)));
        }
        assert!(topics.contains(&t.device_availability("grill.1")));
    }
}
