//! Where a rule's alerts go, and how they escalate: the `settings` document's part the
//! notifier follows besides the channels.
//!
//! A route is an ordered list of the tenant's channels for one alert rule. The first raise
//! goes to the first channel; each time the alert is raised again because nobody
//! acknowledged it (the rule's `repeat_every_s`), it goes to the next channel, and the last
//! keeps getting the repeats. A rule without a route goes to every channel, as before.

use serde::{Deserialize, Serialize};

/// One rule's route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Whose rule it is.
    pub tenant: String,
    /// The rule (its id is unique across tenants).
    pub rule_id: String,
    /// The tenant's channels, by name, in escalation order.
    pub channels: Vec<String>,
    /// When it was last saved, epoch ms.
    pub updated_at_ms: i64,
}

/// The routes, by rule id.
pub type Routes = std::collections::BTreeMap<String, Route>;
