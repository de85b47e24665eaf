//! Emberline's settings made while it runs — today the notification channels the web UI
//! sets up — kept as changes in the log's `settings` topic, so every replica and a replay
//! agree ("the log is the database"), and applied live by the processes that follow it.
//!
//! * [`sealed`] — the settings key, and sealing what a setting holds in confidence;
//! * [`channels`] — stored channels, and what a manager is shown of one;
//! * [`names`] — the names users give devices and probes, over those their sources report;
//! * [`sources`] — thermometer-cloud accounts, which the ingest role runs as they change;
//! * [`routes`] — which channels a rule's alerts go to, and in what order they escalate;
//! * [`preferences`] — each user's °C/°F and theme;
//! * [`SettingsStore`] — the document in the log: read, change, and follow.
//!
//! What the configuration file sets stays there and is shown read-only; a setting may not
//! take a name the file uses.

pub mod channels;
pub mod names;
pub mod preferences;
pub mod routes;
pub mod sealed;
pub mod sources;

use std::sync::Arc;

use emberline_log::document::{Document, DocumentError, LogDocument};
use emberline_log::{EventLog, topics};
use emberline_notify::ChannelConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use channels::{ChannelView, StoredChannel};
pub use names::DeviceNames;
pub use sealed::SettingsKey;
pub use sources::{SourceView, StoredSource};

use emberline_ingest::SourceConfig;

/// What can go wrong with settings, in terms the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The setting is not valid; the text names the field first (`url: …`).
    #[error("{0}")]
    Invalid(String),
    /// No such setting (in the caller's tenant).
    #[error("{0}")]
    NotFound(String),
    /// The settings key is missing, short or unreadable.
    #[error("settings key: {0}")]
    Key(String),
    /// A sealed value cannot be opened.
    #[error("a sealed setting: {0}")]
    Sealed(String),
    /// The log failed.
    #[error("settings store: {0}")]
    Storage(String),
    /// What a setting reaches refused or failed (a test sign-in); the text says how.
    #[error("{0}")]
    Failed(String),
}

/// The settings document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Notification channels, by qualified name.
    pub channels: channels::Channels,
    /// Names users gave devices and probes, by qualified device id.
    #[serde(default)]
    pub names: std::collections::BTreeMap<String, DeviceNames>,
    /// Thermometer-cloud accounts, by qualified name.
    #[serde(default)]
    pub sources: sources::Sources,
    /// Alert routes, by rule id.
    #[serde(default)]
    pub routes: routes::Routes,
    /// Users' preferences, by [`preferences::key`].
    #[serde(default)]
    pub preferences: std::collections::BTreeMap<String, preferences::UserPreferences>,
}

/// One change to the settings document.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SettingsChange {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    channels: Vec<StoredChannel>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    channels_gone: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    names: Vec<DeviceNames>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    names_gone: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sources: Vec<StoredSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sources_gone: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<routes::Route>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes_gone: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    preferences: Vec<preferences::UserPreferences>,
}

/// The entries of `new` that `old` lacks or holds otherwise, and the keys `new` dropped.
fn diff<V: Clone + PartialEq>(
    old: &std::collections::BTreeMap<String, V>,
    new: &std::collections::BTreeMap<String, V>,
) -> (Vec<V>, Vec<String>) {
    let changed = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(_, v)| v.clone())
        .collect();
    let gone = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    (changed, gone)
}

impl Document for Settings {
    type Change = SettingsChange;
    const FORMAT: u32 = 1;

    fn change(old: &Self, new: &Self) -> Option<SettingsChange> {
        let (channels, channels_gone) = diff(&old.channels, &new.channels);
        let (names, names_gone) = diff(&old.names, &new.names);
        let (sources, sources_gone) = diff(&old.sources, &new.sources);
        let (routes, routes_gone) = diff(&old.routes, &new.routes);
        // Preferences are only ever replaced, never removed.
        let (preferences, _) = diff(&old.preferences, &new.preferences);
        let change = SettingsChange {
            channels,
            channels_gone,
            names,
            names_gone,
            sources,
            sources_gone,
            routes,
            routes_gone,
            preferences,
        };
        let empty = change.channels.is_empty()
            && change.channels_gone.is_empty()
            && change.names.is_empty()
            && change.names_gone.is_empty()
            && change.sources.is_empty()
            && change.sources_gone.is_empty()
            && change.routes.is_empty()
            && change.routes_gone.is_empty()
            && change.preferences.is_empty();
        (!empty).then_some(change)
    }

    fn apply(&mut self, change: &SettingsChange) {
        for gone in &change.channels_gone {
            self.channels.remove(gone);
        }
        for c in &change.channels {
            self.channels
                .insert(channels::qualified(&c.tenant, &c.name), c.clone());
        }
        for gone in &change.names_gone {
            self.names.remove(gone);
        }
        for n in &change.names {
            self.names.insert(n.device_id.clone(), n.clone());
        }
        for gone in &change.sources_gone {
            self.sources.remove(gone);
        }
        for source in &change.sources {
            self.sources.insert(
                channels::qualified(&source.tenant, &source.name),
                source.clone(),
            );
        }
        for gone in &change.routes_gone {
            self.routes.remove(gone);
        }
        for route in &change.routes {
            self.routes.insert(route.rule_id.clone(), route.clone());
        }
        for p in &change.preferences {
            self.preferences.insert(p.key(), p.clone());
        }
    }
}

/// The settings of a deployment, in its log, with the key that seals them and the names
/// the configuration file holds.
pub struct SettingsStore {
    doc: LogDocument<Settings>,
    key: SettingsKey,
    /// Channels of the configuration file, by qualified name (read-only here).
    file_channels: Vec<ChannelConfig>,
    /// Sources of the configuration file (read-only here).
    file_sources: Vec<SourceConfig>,
}

impl SettingsStore {
    /// Follows the `settings` topic of `log`; `file_channels` are the configuration's.
    pub async fn open(
        log: Arc<dyn EventLog>,
        key: SettingsKey,
        file_channels: Vec<ChannelConfig>,
    ) -> Result<Self, SettingsError> {
        let doc = LogDocument::open(log, topics::SETTINGS)
            .await
            .map_err(|e| SettingsError::Storage(e.to_string()))?;
        Ok(Self {
            doc,
            key,
            file_channels,
            file_sources: Vec::new(),
        })
    }

    /// The same store, knowing the configuration file's sources (shown read-only; their
    /// names are taken).
    pub fn with_file_sources(mut self, sources: Vec<SourceConfig>) -> Self {
        self.file_sources = sources;
        self
    }

    fn unseal(&self, stored: &StoredChannel) -> Result<ChannelConfig, SettingsError> {
        let plain = self.key.open(&stored.sealed)?;
        let mut channel: ChannelConfig = serde_json::from_slice(&plain)
            .map_err(|e| SettingsError::Sealed(format!("channel {:?}: {e}", stored.name)))?;
        channel.name = channels::qualified(&stored.tenant, &stored.name);
        channel.tenant.clone_from(&stored.tenant);
        Ok(channel)
    }

    fn current(&self) -> Result<Arc<Settings>, SettingsError> {
        self.doc
            .current()
            .map_err(|e| SettingsError::Storage(e.to_string()))
    }

    /// The tenant's channels: the configuration file's first, then those set up here.
    pub fn channels(&self, tenant: &str) -> Result<Vec<ChannelView>, SettingsError> {
        let mut views: Vec<ChannelView> = self
            .file_channels
            .iter()
            .filter(|c| c.tenant == tenant)
            .map(|c| ChannelView::of(&c.name, c, true))
            .collect();
        for stored in self
            .current()?
            .channels
            .values()
            .filter(|c| c.tenant == tenant)
        {
            match self.unseal(stored) {
                Ok(channel) => views.push(ChannelView::of(&stored.name, &channel, false)),
                Err(e) => {
                    tracing::error!(channel = %stored.name, error = %e, "a stored channel cannot be opened")
                }
            }
        }
        Ok(views)
    }

    /// The tenant's channel `name` as the notifier uses it (a test notification).
    pub fn channel(&self, tenant: &str, name: &str) -> Result<ChannelConfig, SettingsError> {
        if let Some(c) = self
            .file_channels
            .iter()
            .find(|c| c.tenant == tenant && c.name == name)
        {
            return Ok(c.clone());
        }
        let doc = self.current()?;
        let stored = doc
            .channels
            .get(&channels::qualified(tenant, name))
            .ok_or_else(|| SettingsError::NotFound(format!("no channel {name:?}")))?;
        self.unseal(stored)
    }

    /// Saves `channel` for `tenant` (a new one, or one of the same name replaced; a missing
    /// secret keeps the stored one), after the same checks the configuration file gets.
    pub async fn set_channel(
        &self,
        tenant: &str,
        mut channel: ChannelConfig,
        now_ms: i64,
    ) -> Result<(), SettingsError> {
        emberline_common::tenant::is_valid_name(&channel.name)
            .then_some(())
            .ok_or_else(|| {
                SettingsError::Invalid("name: 1 to 64 letters, digits, '.', '_', '-' or '@'".into())
            })?;
        let qualified = channels::qualified(tenant, &channel.name);
        if self
            .file_channels
            .iter()
            .any(|c| c.name == qualified || (c.tenant == tenant && c.name == channel.name))
        {
            return Err(SettingsError::Invalid(format!(
                "name: {:?} is a channel of the configuration file, which only the file \
                 changes",
                channel.name
            )));
        }
        channel.tenant = tenant.to_owned();
        let key = channels::qualified(tenant, &channel.name);
        if let Some(stored) = self.current()?.channels.get(&key) {
            keep_secrets_of(&self.unseal(stored)?, &mut channel);
        }
        emberline_notify::validate_channel(&channel).map_err(|e| match e {
            emberline_notify::NotifyError::Config { reason, .. } => SettingsError::Invalid(reason),
            other => SettingsError::Invalid(other.to_string()),
        })?;
        let plain = serde_json::to_vec(&channel)
            .map_err(|e| SettingsError::Invalid(format!("channel: {e}")))?;
        let stored = StoredChannel {
            tenant: tenant.to_owned(),
            name: channel.name.clone(),
            sealed: self.key.seal(&plain)?,
            updated_at_ms: now_ms,
        };
        self.doc
            .update(now_ms, |doc| {
                doc.channels.insert(key.clone(), stored.clone());
                Ok::<_, SettingsError>(())
            })
            .await
            .map_err(document_error)
    }

    /// Removes the tenant's channel `name`.
    pub async fn delete_channel(
        &self,
        tenant: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<(), SettingsError> {
        let key = channels::qualified(tenant, name);
        self.doc
            .update(now_ms, |doc| match doc.channels.remove(&key) {
                Some(_) => Ok(()),
                None if self.file_channels.iter().any(|c| c.name == key) => {
                    Err(SettingsError::Invalid(format!(
                        "name: {name:?} is a channel of the configuration file, which only the \
                         file changes"
                    )))
                }
                None => Err(SettingsError::NotFound(format!("no channel {name:?}"))),
            })
            .await
            .map_err(document_error)
    }

    /// The names given to the device `device_id` (qualified), if any.
    pub fn names_of(&self, device_id: &str) -> Option<DeviceNames> {
        self.current().ok()?.names.get(device_id).cloned()
    }

    /// The names given to devices, by qualified device id, as they are now and whenever
    /// they change (a rename by any gateway replica). Runs until the store is dropped.
    pub fn live_names(
        self: &Arc<Self>,
    ) -> watch::Receiver<Arc<std::collections::BTreeMap<String, DeviceNames>>> {
        self.follow(|store| {
            store
                .current()
                .map(|doc| doc.names.clone())
                .unwrap_or_default()
        })
    }

    /// Gives the device `device_id` (qualified, of `tenant`) the name `name` (empty: the
    /// one its source reports) and its probes the labels `probes` (an empty label: the
    /// source's again); `known_probes` are the probes it has, which alone may be labelled.
    pub async fn rename_device(
        &self,
        tenant: &str,
        device_id: &str,
        name: &str,
        probes: &std::collections::BTreeMap<String, String>,
        known_probes: &[String],
        now_ms: i64,
    ) -> Result<DeviceNames, SettingsError> {
        let named =
            names::DeviceNames::checked(tenant, device_id, name, probes, known_probes, now_ms)?;
        let kept = named.clone();
        self.doc
            .update(now_ms, |doc| {
                if kept.is_empty() {
                    doc.names.remove(&kept.device_id);
                } else {
                    doc.names.insert(kept.device_id.clone(), kept.clone());
                }
                Ok::<_, SettingsError>(())
            })
            .await
            .map_err(document_error)?;
        Ok(named)
    }

    /// `view` of the document as it is now and whenever it changes, until the store is
    /// dropped.
    fn follow<T: Send + Sync + 'static>(
        self: &Arc<Self>,
        view: fn(&Self) -> T,
    ) -> watch::Receiver<Arc<T>> {
        let (tx, rx) = watch::channel(Arc::new(view(self)));
        let mut changes = self.doc.watch();
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(store) = store.upgrade() else { return };
                tx.send_replace(Arc::new(view(&store)));
            }
        });
        rx
    }

    /// Every channel set up here, opened, as it is now and whenever it changes: what the
    /// notifier takes besides the configuration's. Runs until the store is dropped.
    pub fn live_channels(self: &Arc<Self>) -> watch::Receiver<Arc<Vec<ChannelConfig>>> {
        self.follow(Self::opened_channels)
    }

    fn opened_channels(&self) -> Vec<ChannelConfig> {
        self.opened(|doc| {
            doc.channels
                .values()
                .map(|stored| (stored.name.as_str(), self.unseal(stored)))
                .collect()
        })
    }

    /// What `open` opens of the document now, each entry named; one that cannot be opened
    /// (another key sealed it, say) is left out with an error line.
    fn opened<T>(
        &self,
        open: impl for<'d> Fn(&'d Settings) -> Vec<(&'d str, Result<T, SettingsError>)>,
    ) -> Vec<T> {
        let Ok(doc) = self.current() else {
            return Vec::new();
        };
        open(&doc)
            .into_iter()
            .filter_map(|(name, opened)| match opened {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!(setting = %name, error = %e, "a stored setting cannot be opened; it is left out");
                    None
                }
            })
            .collect()
    }
}

fn keep_secrets_of(old: &ChannelConfig, new: &mut ChannelConfig) {
    channels::keep_secrets(&old.kind, &mut new.kind);
}

fn document_error(e: DocumentError<SettingsError>) -> SettingsError {
    match e {
        DocumentError::Refused(e) => e,
        DocumentError::Log(e) => SettingsError::Storage(e.to_string()),
    }
}
