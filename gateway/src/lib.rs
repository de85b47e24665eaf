//! Emberline's gateway: the gRPC API (with grpc-web, health and reflection on the same port)
//! and the Confluent-compatible Schema Registry REST API (over the embedded registry or the
//! log-backed one).
//!
//! * Queries ([`DeviceService`](emberline_proto::v1::device_service_server::DeviceService),
//!   [`ReadingService`](emberline_proto::v1::reading_service_server::ReadingService)) read the
//!   projection store.
//! * Subscriptions ([`TrendService`](emberline_proto::v1::trend_service_server::TrendService))
//!   tail `derived.trends` from the log, so any number of gateway replicas serve them without
//!   shared memory. Each update carries its (partition, offset); a client that resumes with
//!   the next offsets it expects gets exactly the updates after them.
//!
//!   [`PredictionService`](emberline_proto::v1::prediction_service_server::PredictionService)
//!   and `AlertService/SubscribeAlerts` tail `derived.predictions` and `alerts` the same way.
//!   `DeviceService/SubscribeDevices` follows what changes a device's description and
//!   sends each device once the projections hold the change (`device_feed`).
//!
//! * Commands ([`CookService`](emberline_proto::v1::cook_service_server::CookService),
//!   alert rules, acknowledgements and snoozes, and `DeleteDevice`) validate against the projections and append one event to the log;
//!   the processors fold it like any other event.
//!
//! * [`PlannerService`](emberline_proto::v1::planner_service_server::PlannerService) plans
//!   a cook backwards from serving time (`emberline_processors::cook::plan`); it stores
//!   nothing.
//!
//! * Access ([`AuthMode`]): one layer in front of every service checks the caller's token
//!   against the method's [`rule`]; `AuthService` signs in and out, `TokenService` manages
//!   API tokens (identities are `emberline_auth`'s).
//!
//! * `SettingsService` sets up notification channels while running, in the log through
//!   `emberline_settings` (the notifier applies them live).
//! * `SourceService` adds thermometer-cloud accounts the same way (the ingest role runs
//!   them live).
//!
//! * [`QueryService`](emberline_proto::v1::query_service_server::QueryService) runs SQL
//!   over the caller's tenant's log through a [`sql::SqlEngine`] the binary provides, so the
//!   gateway links no query engine of its own.
//!
//! * The web UI ([`serve_web`]): the embedded page and grpc-web on one origin.
//!
//! * The schema registry REST API ([`serve_registry`]) over the embedded registry or over
//!   [`LogRegistry`], whose replicas share the `_schemas` log topic and so agree on ids.
//!
//! The gateway knows the log, the projections and the schemas; it computes nothing itself
//! (the planner's arithmetic is the processors' crate's).

mod alerts;
mod audit;
mod auth;
mod auth_api;
mod commands;
mod cooks;
mod device_feed;
mod metrics;
mod oidc_web;
mod planner;
mod queries;
pub mod rate;
mod registry_api;
mod registry_log;
mod server;
mod settings;
mod share;
mod sources;
pub mod sql;
mod status;
mod subscriptions;
mod tail_hub;
mod tenancy;
mod tls;
mod web;

pub use audit::{audit_log, audit_record};
pub use auth::{AuthMode, Rule, rule};
pub use queries::HISTORY_RETAINED_FROM_HEADER;
pub use registry_api::{RestRegistry, guarded_registry_router, registry_router, serve_registry};
pub use registry_log::{LogRegistry, SCHEMAS_TOPIC};
pub use server::{Gateway, MAX_REQUEST_BYTES, ServeError, serve_grpc};
pub use subscriptions::START_OFFSETS;
pub use tls::{Tls, TlsFiles};
pub use web::{has_web_ui, serve_web, web_router};
