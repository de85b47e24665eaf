//! Thermometer-cloud accounts set up while running: the `settings` document's part that
//! the ingest role follows ([`emberline_ingest::live`]).
//!
//! An account is stored under its qualified name (`tenant/name`; plain for the default
//! tenant), which is also its source name on readings and metrics; its whole configuration
//! is sealed (it holds the password). Forms never see the password, so saving one without
//! it keeps the stored password.

use std::collections::BTreeMap;
use std::sync::Arc;

use emberline_ingest::SourceConfig;
use emberline_ingest::accounts::{self, FoundDevice};
use emberline_ingest::metrics::status::SourceStatus;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{SettingsError, SettingsStore, channels, document_error};

/// One stored account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSource {
    /// Whose it is.
    pub tenant: String,
    /// Its name in the tenant.
    pub name: String,
    /// Its kind (`thermoworks`), readable without the key.
    pub kind: String,
    /// The sealed [`SourceConfig`] (JSON).
    pub sealed: String,
    /// When it was last saved, epoch ms.
    pub updated_at_ms: i64,
}

/// The accounts, by qualified name.
pub type Sources = BTreeMap<String, StoredSource>;

/// What an account looks like to someone who may manage it: no password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceView {
    /// Name in its tenant.
    pub name: String,
    /// `thermoworks`, `meater`, `fireboard` (or any kind, for the configuration file's).
    pub kind: String,
    /// Its settings but the password, as a form shows them.
    pub fields: BTreeMap<String, String>,
    /// Whether a password is stored.
    pub secret_set: bool,
    /// From the configuration file: read-only here.
    pub from_config_file: bool,
    /// How it last fared, when it runs in this process.
    pub status: Option<SourceStatus>,
}

/// The name a source of the configuration file goes by, in its tenant.
pub fn file_source_name(config: &SourceConfig) -> String {
    let full = match config {
        SourceConfig::Thermoworks(c) => c.name.clone(),
        SourceConfig::Meater(c) => c.name.clone(),
        SourceConfig::Fireboard(c) => c.name.clone(),
        SourceConfig::Mqtt(c) => c.name.clone(),
        SourceConfig::HttpPush(_) => "http_push".to_owned(),
        SourceConfig::Simulator(_) => "simulator".to_owned(),
    };
    full.rsplit(emberline_common::tenant::SEPARATOR)
        .next()
        .unwrap_or(&full)
        .to_owned()
}

impl SourceView {
    /// The view of `config`, named `name` in its tenant, with the status of the source
    /// named `source_name`.
    pub fn of(
        name: &str,
        config: &SourceConfig,
        from_config_file: bool,
        source_name: &str,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind: config.kind().to_owned(),
            fields: emberline_ingest::accounts::shown_fields(config),
            secret_set: emberline_ingest::accounts::password_set(config),
            from_config_file,
            status: emberline_ingest::metrics::status::of(source_name),
        }
    }
}

impl SettingsStore {
    fn unseal_source(&self, stored: &StoredSource) -> Result<SourceConfig, SettingsError> {
        let plain = self.key.open(&stored.sealed)?;
        serde_json::from_slice(&plain)
            .map_err(|e| SettingsError::Sealed(format!("source {:?}: {e}", stored.name)))
    }

    /// The tenant's sources: the configuration file's first (any kind), then the accounts
    /// set up here, each with how it last fared when it runs in this process.
    pub fn sources(&self, tenant: &str) -> Result<Vec<SourceView>, SettingsError> {
        let mut views: Vec<SourceView> = self
            .file_sources
            .iter()
            .filter(|c| c.tenant() == tenant)
            .map(|c| {
                let name = file_source_name(c);
                let source_name = channels::qualified(tenant, &name);
                SourceView::of(&name, c, true, &source_name)
            })
            .collect();
        for stored in self
            .current()?
            .sources
            .values()
            .filter(|s| s.tenant == tenant)
        {
            match self.unseal_source(stored) {
                Ok(config) => views.push(SourceView::of(
                    &stored.name,
                    &config,
                    false,
                    &channels::qualified(tenant, &stored.name),
                )),
                Err(e) => {
                    tracing::error!(source = %stored.name, error = %e, "a stored source cannot be opened")
                }
            }
        }
        Ok(views)
    }

    /// The account a form describes, for `tenant`, checked; a password left empty is the
    /// one stored under the same name.
    fn account(
        &self,
        tenant: &str,
        kind: &str,
        name: &str,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> Result<SourceConfig, SettingsError> {
        emberline_common::tenant::is_valid_name(name)
            .then_some(())
            .ok_or_else(|| {
                SettingsError::Invalid("name: 1 to 64 letters, digits, '.', '_', '-' or '@'".into())
            })?;
        if self
            .file_sources
            .iter()
            .any(|c| c.tenant() == tenant && file_source_name(c) == name)
        {
            return Err(SettingsError::Invalid(format!(
                "name: {name:?} is a source of the configuration file, which only the file \
                 changes"
            )));
        }
        let qualified = channels::qualified(tenant, name);
        let mut config = accounts::config_of(kind, tenant, &qualified, fields)
            .map_err(|e| SettingsError::Invalid(e.0))?;
        if let Some(stored) = self.current()?.sources.get(&qualified) {
            accounts::keep_password(&self.unseal_source(stored)?, &mut config);
        }
        accounts::check(&config).map_err(|e| SettingsError::Invalid(e.0))?;
        Ok(config)
    }

    /// Saves the account a form describes (a new one, or the one of the same name
    /// replaced) after the checks a configuration file's source gets; the ingest role
    /// starts or restarts it.
    pub async fn set_source(
        &self,
        tenant: &str,
        kind: &str,
        name: &str,
        fields: &std::collections::BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<(), SettingsError> {
        let config = self.account(tenant, kind, name, fields)?;
        let plain = serde_json::to_vec(&config)
            .map_err(|e| SettingsError::Invalid(format!("source: {e}")))?;
        let stored = StoredSource {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            kind: config.kind().to_owned(),
            sealed: self.key.seal(&plain)?,
            updated_at_ms: now_ms,
        };
        let key = channels::qualified(tenant, name);
        self.doc
            .update(now_ms, |doc| {
                doc.sources.insert(key.clone(), stored.clone());
                Ok::<_, SettingsError>(())
            })
            .await
            .map_err(document_error)
    }

    /// Signs in to the account a form describes and polls it once, appending nothing: the
    /// devices it has, or why it failed.
    pub async fn test_source(
        &self,
        tenant: &str,
        kind: &str,
        name: &str,
        fields: &std::collections::BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Vec<FoundDevice>, SettingsError> {
        let config = self.account(tenant, kind, name, fields)?;
        accounts::test(&config, now_ms)
            .await
            .map_err(|e| SettingsError::Failed(e.0))
    }

    /// Removes the tenant's account `name`; the ingest role stops it.
    pub async fn delete_source(
        &self,
        tenant: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<(), SettingsError> {
        let key = channels::qualified(tenant, name);
        self.doc
            .update(now_ms, |doc| match doc.sources.remove(&key) {
                Some(_) => Ok(()),
                None if self
                    .file_sources
                    .iter()
                    .any(|c| c.tenant() == tenant && file_source_name(c) == name) =>
                {
                    Err(SettingsError::Invalid(format!(
                        "name: {name:?} is a source of the configuration file, which only the \
                         file changes"
                    )))
                }
                None => Err(SettingsError::NotFound(format!("no source {name:?}"))),
            })
            .await
            .map_err(document_error)
    }

    /// Every account set up here, opened, as it is now and whenever it changes: what the
    /// ingest role runs besides the configuration's. Runs until the store is dropped.
    pub fn live_sources(self: &Arc<Self>) -> watch::Receiver<Arc<Vec<SourceConfig>>> {
        self.follow(Self::opened_sources)
    }

    fn opened_sources(&self) -> Vec<SourceConfig> {
        self.opened(|doc| {
            doc.sources
                .values()
                .map(|stored| (stored.name.as_str(), self.unseal_source(stored)))
                .collect()
        })
    }
}
