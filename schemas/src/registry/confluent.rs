//! A client of a Confluent-compatible Schema Registry, through `schema_registry_converter`.

use apache_avro::Schema;
use async_trait::async_trait;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, get_schema_by_subject, is_compatible_schema, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use super::{RegisteredVersion, SchemaRegistry, canonical_text};
use crate::RegistryError;

/// A Confluent-compatible registry at a URL.
pub struct ConfluentRegistry {
    url: String,
    settings: SrSettings,
}

impl ConfluentRegistry {
    /// A client of the registry at `url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(url: &str) -> Self {
        emberline_common::http::install_crypto_provider();
        let url = url.trim_end_matches('/').to_owned();
        Self {
            settings: SrSettings::new(url.clone()),
            url,
        }
    }

    /// A client of the registry at `url` that sends `token` as a bearer (an Emberline API
    /// token of scope `ingest`, for a registry that checks callers).
    pub fn with_token(url: &str, token: &str) -> Result<Self, RegistryError> {
        emberline_common::http::install_crypto_provider();
        let url = url.trim_end_matches('/').to_owned();
        let settings = SrSettings::new_builder(url.clone())
            .set_token_authorization(token)
            .build()
            .map_err(|e| RegistryError::Remote {
                url: url.clone(),
                reason: e.to_string(),
                retriable: false,
            })?;
        Ok(Self { settings, url })
    }

    fn remote(&self, e: SRCError) -> RegistryError {
        RegistryError::Remote {
            url: self.url.clone(),
            reason: e.to_string(),
            retriable: e.retriable,
        }
    }

    fn supplied(schema: &Schema) -> Result<SuppliedSchema, RegistryError> {
        Ok(SuppliedSchema::new(
            schema.name().map(|n| n.fullname(None)),
            SchemaType::Avro,
            canonical_text(schema)?,
        ))
    }
}

#[async_trait]
impl SchemaRegistry for ConfluentRegistry {
    async fn register(&self, subject: &str, schema: &Schema) -> Result<u32, RegistryError> {
        let registered = post_schema(&self.settings, subject.to_owned(), Self::supplied(schema)?)
            .await
            .map_err(|e| {
                if e.error.contains("409") || e.error.to_lowercase().contains("incompatible") {
                    RegistryError::Incompatible {
                        subject: subject.to_owned(),
                        version: 0,
                        reason: e.to_string(),
                    }
                } else {
                    self.remote(e)
                }
            })?;
        Ok(registered.id)
    }

    async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        match get_schema_by_id(id, &self.settings).await {
            Ok(s) => Ok(s.schema),
            Err(e) if e.error.contains("404") => Err(RegistryError::UnknownId(id)),
            Err(e) => Err(self.remote(e)),
        }
    }

    async fn latest(&self, subject: &str) -> Result<RegisteredVersion, RegistryError> {
        let strategy = SubjectNameStrategy::RecordNameStrategy(subject.to_owned());
        match get_schema_by_subject(&self.settings, &strategy).await {
            Ok(s) => Ok(RegisteredVersion {
                subject: subject.to_owned(),
                version: s.version.unwrap_or(0),
                id: s.id,
                schema: s.schema,
            }),
            Err(e) if e.error.contains("404") => {
                Err(RegistryError::UnknownSubject(subject.to_owned()))
            }
            Err(e) => Err(self.remote(e)),
        }
    }

    async fn is_compatible(&self, subject: &str, schema: &Schema) -> Result<bool, RegistryError> {
        is_compatible_schema(&self.settings, subject.to_owned(), Self::supplied(schema)?)
            .await
            .map_err(|e| self.remote(e))
    }
}
