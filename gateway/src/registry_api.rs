//! The Confluent Schema Registry REST subset, served from any [`RestRegistry`]: the
//! embedded registry ([`EmbeddedRegistry`], one process's redb file) or the log-backed one
//! ([`LogRegistry`](crate::LogRegistry), whose replicas share the `_schemas` topic).
//!
//! Enough of the API for `schema_registry_converter`, Kafka Connect-style clients and a
//! user with a bare Kafka cluster: register a subject version, look a schema up under a
//! subject, fetch a schema by id, read the latest (or a given) version, list subjects and
//! versions, and check compatibility. Errors use Confluent's JSON shape and codes
//! (`40401` subject not found, `40402` version not found, `40403` schema not found,
//! `409` incompatible, `42201` invalid schema).

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emberline_auth::Permission;
use emberline_common::Classify;

use crate::auth::AuthMode;
use emberline_schemas::{EmbeddedRegistry, RegisteredVersion, RegistryError, SchemaRegistry};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A registry the REST API can serve: the [`SchemaRegistry`] seam plus the listings the API
/// answers (`GET /subjects`, `GET /subjects/{subject}/versions`, version look-ups).
#[async_trait]
pub trait RestRegistry: SchemaRegistry + 'static {
    /// Every subject with at least one version, in order.
    async fn subjects(&self) -> Result<Vec<String>, RegistryError>;
    /// All versions of `subject`, oldest first; empty when the subject is unknown.
    async fn versions(&self, subject: &str) -> Result<Vec<RegisteredVersion>, RegistryError>;
}

#[async_trait]
impl RestRegistry for EmbeddedRegistry {
    async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        EmbeddedRegistry::subjects(self)
    }

    async fn versions(&self, subject: &str) -> Result<Vec<RegisteredVersion>, RegistryError> {
        EmbeddedRegistry::versions(self, subject)
    }
}

/// The registry behind the handlers.
type Shared = Arc<dyn RestRegistry>;

/// The REST API over `registry`.
pub fn registry_router(registry: impl RestRegistry) -> Router {
    let registry: Shared = Arc::new(registry);
    Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_with),
        )
        .route(
            "/config",
            get(|| async { reply(StatusCode::OK, json!({"compatibilityLevel": "BACKWARD"})) }),
        )
        .with_state(registry)
}

/// Who may call the REST API: with sign-in on, every call needs a credential (an API token
/// or a user's access token, as a bearer); registering a schema needs the `ingest` scope or
/// an owner. Answers use Confluent's error shape (`40101` unauthenticated, `40301`
/// forbidden).
async fn check_caller(
    State(access): State<AuthMode>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let AuthMode::Checked(auth) = &access else {
        return next.run(request).await;
    };
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(token) = token else {
        return error(
            StatusCode::UNAUTHORIZED,
            40101,
            "send `Authorization: Bearer <token>` (an API token of scope ingest to register)",
        );
    };
    let caller = match auth.verify_any(&token).await {
        Ok(caller) => caller,
        Err(e) => return error(StatusCode::UNAUTHORIZED, 40101, e.to_string()),
    };
    let registers =
        request.method() == axum::http::Method::POST && request.uri().path().ends_with("/versions");
    let allowed = if registers {
        caller.allows(Permission::Ingest) || caller.allows(Permission::Manage)
    } else {
        caller.allows(Permission::Read) || caller.allows(Permission::Ingest)
    };
    if !allowed {
        return error(
            StatusCode::FORBIDDEN,
            40301,
            format!(
                "{} may not do this (registering needs the ingest scope)",
                caller.name
            ),
        );
    }
    next.run(request).await
}

/// The REST API over `registry`, its callers checked as `access` says.
pub fn guarded_registry_router(registry: impl RestRegistry, access: AuthMode) -> Router {
    registry_router(registry).layer(axum::middleware::from_fn_with_state(access, check_caller))
}

/// Serves the REST API on `addr` until `shutdown` is cancelled.
pub async fn serve_registry(
    registry: impl RestRegistry,
    addr: SocketAddr,
    shutdown: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    access: AuthMode,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "schema registry REST API listening");
    if let Some(tx) = bound {
        let _ = tx.send(local);
    }
    axum::serve(listener, guarded_registry_router(registry, access))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    reply(
        status,
        json!({"error_code": code, "message": message.into()}),
    )
}

fn from_registry(e: RegistryError) -> Response {
    match e {
        RegistryError::InvalidSchema(m) => error(StatusCode::UNPROCESSABLE_ENTITY, 42201, m),
        RegistryError::Incompatible { .. } => error(StatusCode::CONFLICT, 409, e.to_string()),
        RegistryError::UnknownId(_) => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
        RegistryError::UnknownSubject(_) => {
            error(StatusCode::NOT_FOUND, 40401, "Subject not found")
        }
        // Confluent's codes: 50001 for a failing store, 50003 for a failure further on.
        other => {
            let status = StatusCode::from_u16(other.kind().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                50003
            } else {
                50001
            };
            error(status, code, emberline_common::error::chain(&other))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

/// Parses a request body into an Avro schema, or the Confluent error to answer with.
fn parse_body(body: &[u8]) -> Result<apache_avro::Schema, Box<Response>> {
    let invalid =
        |message: String| Box::new(error(StatusCode::UNPROCESSABLE_ENTITY, 42201, message));
    let body: SchemaBody =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid request body: {e}")))?;
    if let Some(t) = body
        .schema_type
        .as_deref()
        .filter(|t| !t.eq_ignore_ascii_case("AVRO"))
    {
        return Err(invalid(format!(
            "schema type {t} is not supported; only AVRO"
        )));
    }
    if !body.references.is_empty() {
        return Err(invalid("schema references are not supported".into()));
    }
    apache_avro::Schema::parse_str(&body.schema)
        .map_err(|e| invalid(format!("invalid Avro schema: {e}")))
}

fn version_json(v: &RegisteredVersion) -> Value {
    json!({"subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema})
}

async fn subjects(State(registry): State<Shared>) -> Response {
    match registry.subjects().await {
        Ok(s) => reply(StatusCode::OK, json!(s)),
        Err(e) => from_registry(e),
    }
}

async fn versions(State(registry): State<Shared>, Path(subject): Path<String>) -> Response {
    match registry.versions(&subject).await {
        Ok(v) if v.is_empty() => from_registry(RegistryError::UnknownSubject(subject)),
        Ok(v) => reply(
            StatusCode::OK,
            json!(v.iter().map(|v| v.version).collect::<Vec<_>>()),
        ),
        Err(e) => from_registry(e),
    }
}

async fn register(
    State(registry): State<Shared>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    let schema = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match registry.register(&subject, &schema).await {
        Ok(id) => reply(StatusCode::OK, json!({"id": id})),
        Err(e) => from_registry(e),
    }
}

async fn lookup(
    State(registry): State<Shared>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    let schema = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let text = match emberline_schemas::canonical_text(&schema) {
        Ok(t) => t,
        Err(e) => return from_registry(e),
    };
    match registry.versions(&subject).await {
        Ok(v) if v.is_empty() => from_registry(RegistryError::UnknownSubject(subject)),
        Ok(v) => match v.iter().find(|v| v.schema == text) {
            Some(found) => reply(StatusCode::OK, version_json(found)),
            None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
        },
        Err(e) => from_registry(e),
    }
}

async fn version(
    State(registry): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let versions = match registry.versions(&subject).await {
        Ok(v) if v.is_empty() => return from_registry(RegistryError::UnknownSubject(subject)),
        Ok(v) => v,
        Err(e) => return from_registry(e),
    };
    let found = match version.as_str() {
        "latest" | "-1" => versions.last(),
        n => match n.parse::<u32>() {
            Ok(n) => versions.iter().find(|v| v.version == n),
            Err(_) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42202,
                    format!("invalid version {n:?}"),
                );
            }
        },
    };
    match found {
        Some(v) => reply(StatusCode::OK, version_json(v)),
        None => error(StatusCode::NOT_FOUND, 40402, "Version not found"),
    }
}

async fn schema_by_id(State(registry): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u32>() else {
        return error(StatusCode::NOT_FOUND, 40403, "Schema not found");
    };
    match registry.schema_by_id(id).await {
        Ok(schema) => reply(StatusCode::OK, json!({"schema": schema})),
        Err(e) => from_registry(e),
    }
}

async fn compatibility(
    State(registry): State<Shared>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    check(registry, subject, body).await
}

async fn compatibility_with(
    State(registry): State<Shared>,
    Path((subject, _version)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    // Compatibility is BACKWARD against the latest version, whichever version is named.
    check(registry, subject, body).await
}

async fn check(registry: Shared, subject: String, body: Bytes) -> Response {
    let schema = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match registry.is_compatible(&subject, &schema).await {
        Ok(ok) => reply(StatusCode::OK, json!({"is_compatible": ok})),
        Err(e) => from_registry(e),
    }
}
