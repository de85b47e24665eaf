//! The names users give devices and probes. A source reports its own (the cloud app's
//! names, an MQTT discovery name); a name given here goes over it wherever the gateway
//! answers — the dashboard, Home Assistant (whose entity ids stay those of the ids, so
//! automations keep working) — and an empty name gives the source's back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::SettingsError;

/// The longest name or label, in characters.
const LONGEST: usize = 64;

/// What one device is called, by its users.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNames {
    /// Whose device it is.
    pub tenant: String,
    /// The device (qualified id).
    pub device_id: String,
    /// The device's name; none: the source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Probe id to label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<String, String>,
    /// When they were last changed, epoch ms.
    pub updated_at_ms: i64,
}

impl DeviceNames {
    /// The names a request asks for, checked: trimmed, not too long, no control characters,
    /// labels only for `known_probes`. Empty values are left out.
    pub fn checked(
        tenant: &str,
        device_id: &str,
        name: &str,
        probes: &BTreeMap<String, String>,
        known_probes: &[String],
        now_ms: i64,
    ) -> Result<Self, SettingsError> {
        let clean = |field: &str, text: &str| -> Result<Option<String>, SettingsError> {
            let text = text.trim();
            if text.chars().count() > LONGEST || text.chars().any(char::is_control) {
                return Err(SettingsError::Invalid(format!(
                    "{field}: at most {LONGEST} characters, none of them control characters"
                )));
            }
            Ok((!text.is_empty()).then(|| text.to_owned()))
        };
        let mut labels = BTreeMap::new();
        for (probe, label) in probes {
            if !known_probes.contains(probe) {
                return Err(SettingsError::Invalid(format!(
                    "probe_labels: the device has no probe {probe:?}"
                )));
            }
            if let Some(label) = clean("probe_labels", label)? {
                labels.insert(probe.clone(), label);
            }
        }
        Ok(Self {
            tenant: tenant.to_owned(),
            device_id: device_id.to_owned(),
            name: clean("name", name)?,
            probes: labels,
            updated_at_ms: now_ms,
        })
    }

    /// Whether nothing is renamed (the source's names all round).
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.probes.is_empty()
    }

    /// Puts these names over a device's `name` and `labels` as its source reported them.
    pub fn apply(&self, name: &mut String, labels: &mut std::collections::HashMap<String, String>) {
        if let Some(n) = &self.name {
            name.clone_from(n);
        }
        for (probe, label) in &self.probes {
            labels.insert(probe.clone(), label.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_only_for_known_probes() {
        let probes = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        let known = vec!["pit".to_owned(), "meat-1".to_owned()];
        let named = DeviceNames::checked(
            "default",
            "grill",
            "  Big Green Egg ",
            &probes(&[("meat-1", "Brisket flat"), ("pit", "  ")]),
            &known,
            1,
        )
        .expect("valid");
        assert_eq!(named.name.as_deref(), Some("Big Green Egg"));
        assert_eq!(
            named.probes,
            probes(&[("meat-1", "Brisket flat")]),
            "an empty label is the source's"
        );
        let err = DeviceNames::checked(
            "default",
            "grill",
            "",
            &probes(&[("meat-9", "x")]),
            &known,
            1,
        )
        .expect_err("unknown probe");
        assert!(err.to_string().starts_with("probe_labels:"), "{err}");
        let long = "x".repeat(65);
        let err = DeviceNames::checked("default", "grill", &long, &BTreeMap::new(), &known, 1)
            .expect_err("long");
        assert!(err.to_string().starts_with("name:"), "{err}");
        assert!(
            DeviceNames::checked("default", "grill", "", &BTreeMap::new(), &known, 1)
                .expect("valid")
                .is_empty()
        );

        let mut name = "Simulated grill 1".to_owned();
        let mut labels = std::collections::HashMap::from([("pit".to_owned(), "Pit".to_owned())]);
        named.apply(&mut name, &mut labels);
        assert_eq!(name, "Big Green Egg");
        assert_eq!(labels["meat-1"], "Brisket flat");
        assert_eq!(
            labels["pit"], "Pit",
            "the source's label where none is given"
        );
    }
}
