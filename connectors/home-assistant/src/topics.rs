//! Topic names and the ids Home Assistant sees.
//!
//! Home Assistant allows only `[a-zA-Z0-9_-]` in discovery ids. Emberline's device and probe
//! ids are kept as they are when they fit; otherwise the offending characters become `_`
//! and a short hash of the original id is appended, so two ids that differ only in such
//! characters still get different entities. Ids never come from labels: renaming a probe
//! changes its display name, not its entity.

/// An id made safe for topics and `unique_id`s (see the module docs).
pub fn safe_id(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == id && !id.is_empty() {
        clean
    } else {
        format!("{clean}_{:08x}", fnv1a(id.as_bytes()) as u32)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The topics of one connector.
#[derive(Clone, Debug)]
pub struct Topics {
    prefix: String,
    base: String,
    client_id: String,
}

impl Topics {
    /// Topics under discovery prefix `prefix` and Emberline's `base`.
    pub fn new(prefix: &str, base: &str, client_id: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            base: base.to_owned(),
            client_id: safe_id(client_id),
        }
    }

    /// Home Assistant's birth and will messages.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The connector's own availability (its MQTT last will).
    pub fn bridge_availability(&self) -> String {
        format!("{}/bridge/{}/availability", self.base, self.client_id)
    }

    /// Where the connector echoes checkpoints to itself.
    pub fn checkpoint(&self) -> String {
        format!("{}/bridge/{}/checkpoint", self.base, self.client_id)
    }

    /// Every target command (a subscription filter).
    pub fn all_target_commands(&self) -> String {
        format!("{}/+/+/target/set", self.base)
    }

    /// Node id of a device in discovery topics.
    pub fn node_id(device: &str) -> String {
        format!("emberline_{}", safe_id(device))
    }

    /// Discovery config of one entity.
    pub fn config(&self, component: &str, device: &str, object: &str) -> String {
        format!(
            "{}/{component}/{}/{object}/config",
            self.prefix,
            Self::node_id(device)
        )
    }

    /// A device's availability (`online`/`offline`).
    pub fn device_availability(&self, device: &str) -> String {
        format!("{}/{}/availability", self.base, safe_id(device))
    }

    /// A device's health: battery, signal, firmware (JSON).
    pub fn device_status(&self, device: &str) -> String {
        format!("{}/{}/status", self.base, safe_id(device))
    }

    /// A probe's temperature and rate (JSON).
    pub fn probe_state(&self, device: &str, probe: &str) -> String {
        format!("{}/{}/{}/state", self.base, safe_id(device), safe_id(probe))
    }

    /// A probe's prediction (JSON: `done_at`, remaining, interval, stall, phase).
    pub fn probe_prediction(&self, device: &str, probe: &str) -> String {
        format!(
            "{}/{}/{}/prediction",
            self.base,
            safe_id(device),
            safe_id(probe)
        )
    }

    /// Whether an alert of `kind` is active on a device (`ON`/`OFF`).
    pub fn alert_state(&self, device: &str, kind: &str) -> String {
        format!("{}/{}/alert/{}", self.base, safe_id(device), safe_id(kind))
    }

    /// Whether a probe's readings are current (`online`/`offline`).
    pub fn probe_availability(&self, device: &str, probe: &str) -> String {
        format!(
            "{}/{}/{}/availability",
            self.base,
            safe_id(device),
            safe_id(probe)
        )
    }

    /// A probe's health problem flag (`ON` when unplugged or stale).
    pub fn probe_health(&self, device: &str, probe: &str) -> String {
        format!(
            "{}/{}/{}/health",
            self.base,
            safe_id(device),
            safe_id(probe)
        )
    }

    /// A probe's target, in the configured unit (`None` when unset).
    pub fn target_state(&self, device: &str, probe: &str) -> String {
        format!(
            "{}/{}/{}/target",
            self.base,
            safe_id(device),
            safe_id(probe)
        )
    }

    /// Where Home Assistant sends a new target.
    pub fn target_command(&self, device: &str, probe: &str) -> String {
        format!(
            "{}/{}/{}/target/set",
            self.base,
            safe_id(device),
            safe_id(probe)
        )
    }

    /// The (safe device id, safe probe id) of a target command topic.
    pub fn parse_target_command<'t>(&self, topic: &'t str) -> Option<(&'t str, &'t str)> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        let rest = rest.strip_suffix("/target/set")?;
        let (device, probe) = rest.split_once('/')?;
        (!probe.contains('/')).then_some((device, probe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ids_keep_good_ids_and_never_collide_on_replaced_characters() {
        assert_eq!(safe_id("sim-1"), "sim-1");
        assert_eq!(safe_id("meat_2"), "meat_2");
        let a = safe_id("grill.1");
        let b = safe_id("grill/1");
        assert!(a.starts_with("grill_1_") && b.starts_with("grill_1_"));
        assert_ne!(a, b);
        assert_ne!(safe_id("grill_1"), a);
        assert!(
            safe_id("Größe #1")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert!(!safe_id("").is_empty());
    }

    #[test]
    fn target_commands_round_trip_through_their_topic() {
        let t = Topics::new("homeassistant", "emberline", "emberline");
        let topic = t.target_command("sim-1", "meat-1");
        assert_eq!(topic, "emberline/sim-1/meat-1/target/set");
        assert_eq!(t.parse_target_command(&topic), Some(("sim-1", "meat-1")));
        assert_eq!(t.parse_target_command("emberline/sim-1/target/set"), None);
        assert_eq!(t.parse_target_command("other/sim-1/p/target/set"), None);
        assert_eq!(t.parse_target_command("emberline/a/b/c/target/set"), None);
    }
}
