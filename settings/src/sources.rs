//! Thermometer-cloud accounts set up while running: the `settings` document's part that
//! the ingest role follows ([`emberline_ingest::live`]).
//!
//! An account is stored under its qualified name (`tenant/name`; plain for the default
//! tenant), which is also its source name on readings and metrics; its whole configuration
//! is sealed (it holds the password). Forms never see the password, so saving one without
//! it keeps the stored password.

use std::collections::BTreeMap;

use emberline_ingest::SourceConfig;
use emberline_ingest::metrics::status::SourceStatus;
use serde::{Deserialize, Serialize};

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
