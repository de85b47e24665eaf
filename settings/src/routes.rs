//! Where a rule's alerts go, and how they escalate: the `settings` document's part the
//! notifier follows besides the channels.
//!
//! A route is an ordered list of the tenant's channels for one alert rule. The first raise
//! goes to the first channel; each time the alert is raised again because nobody
//! acknowledged it (the rule's `repeat_every_s`), it goes to the next channel, and the last
//! keeps getting the repeats. A rule without a route goes to every channel, as before.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{SettingsError, SettingsStore, channels, document_error};

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

impl SettingsStore {
    /// Checks that `channels` are the tenant's channels (the configuration file's or set up
    /// here), each once: the route a rule may be given.
    pub fn check_route(&self, tenant: &str, channels: &[String]) -> Result<(), SettingsError> {
        let mut seen = std::collections::HashSet::new();
        for name in channels {
            if !seen.insert(name) {
                return Err(SettingsError::Invalid(format!(
                    "notify: {name:?} is listed twice"
                )));
            }
            match self.channel(tenant, name) {
                Ok(_) => {}
                Err(SettingsError::NotFound(_)) => {
                    return Err(SettingsError::Invalid(format!(
                        "notify: there is no channel {name:?}"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Routes the tenant's rule `rule_id` to `channels` in escalation order (checked with
    /// [`Self::check_route`]); none: to every channel again.
    pub async fn set_route(
        &self,
        tenant: &str,
        rule_id: &str,
        channels: &[String],
        now_ms: i64,
    ) -> Result<(), SettingsError> {
        self.check_route(tenant, channels)?;
        let route = Route {
            tenant: tenant.to_owned(),
            rule_id: rule_id.to_owned(),
            channels: channels.to_vec(),
            updated_at_ms: now_ms,
        };
        self.doc
            .update(now_ms, |doc| {
                if route.channels.is_empty() {
                    doc.routes.remove(&route.rule_id);
                } else {
                    doc.routes.insert(route.rule_id.clone(), route.clone());
                }
                Ok::<_, SettingsError>(())
            })
            .await
            .map_err(document_error)
    }

    /// The channels the rule `rule_id` of `tenant` goes to, in escalation order; empty:
    /// every channel.
    pub fn route_of(&self, tenant: &str, rule_id: &str) -> Vec<String> {
        self.current()
            .ok()
            .and_then(|doc| doc.routes.get(rule_id).cloned())
            .filter(|r| r.tenant == tenant)
            .map(|r| r.channels)
            .unwrap_or_default()
    }

    /// Every route, by rule id, to the channels' names as the notifier knows them
    /// (qualified), as it is now and whenever it changes.
    pub fn live_routes(self: &Arc<Self>) -> watch::Receiver<Arc<emberline_notify::Routes>> {
        self.follow(Self::qualified_routes)
    }

    fn qualified_routes(&self) -> emberline_notify::Routes {
        let Ok(doc) = self.current() else {
            return emberline_notify::Routes::default();
        };
        doc.routes
            .values()
            .map(|r| {
                let channels = r
                    .channels
                    .iter()
                    .map(|name| self.notifier_name(&r.tenant, name))
                    .collect();
                (r.rule_id.clone(), channels)
            })
            .collect()
    }

    /// The name the notifier knows the tenant's channel `name` by.
    fn notifier_name(&self, tenant: &str, name: &str) -> String {
        self.file_channels
            .iter()
            .find(|c| {
                c.tenant == tenant
                    && (c.name == name || c.name == channels::qualified(tenant, name))
            })
            .map_or_else(|| channels::qualified(tenant, name), |c| c.name.clone())
    }
}
