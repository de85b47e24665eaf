//! Serving the gRPC API: the services, grpc-web, health and reflection on one port.

use std::net::SocketAddr;
use std::sync::Arc;

use emberline_log::EventLog;
use emberline_projections::ProjectionStore;
use emberline_proto::v1::alert_service_server::AlertServiceServer;
use emberline_proto::v1::audit_service_server::AuditServiceServer;
use emberline_proto::v1::auth_service_server::AuthServiceServer;
use emberline_proto::v1::cook_service_server::CookServiceServer;
use emberline_proto::v1::device_service_server::DeviceServiceServer;
use emberline_proto::v1::planner_service_server::PlannerServiceServer;
use emberline_proto::v1::prediction_service_server::PredictionServiceServer;
use emberline_proto::v1::query_service_server::QueryServiceServer;
use emberline_proto::v1::reading_service_server::ReadingServiceServer;
use emberline_proto::v1::settings_service_server::SettingsServiceServer;
use emberline_proto::v1::share_service_server::ShareServiceServer;
use emberline_proto::v1::source_service_server::SourceServiceServer;
use emberline_proto::v1::token_service_server::TokenServiceServer;
use emberline_proto::v1::trend_service_server::TrendServiceServer;
use emberline_proto::v1::user_service_server::UserServiceServer;
use emberline_schemas::EventCodec;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthLayer, AuthMode};

/// Largest request message any API call takes. Requests are small (ids, a rule, a note);
/// a larger one is refused before it is read, whoever sends it.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The gateway's shared handles; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) store: Arc<dyn ProjectionStore>,
    pub(crate) codec: Arc<EventCodec>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) auth: AuthMode,
    pub(crate) tls: Option<crate::tls::Tls>,
    pub(crate) budget: crate::rate::Budget,
    pub(crate) settings: Option<Arc<emberline_settings::SettingsStore>>,
    pub(crate) sql: Option<Arc<dyn crate::sql::SqlEngine>>,
    /// The live subscriptions' shared tails, one per partition followed.
    pub(crate) tails: Arc<crate::tail_hub::TailHubs>,
}

impl Gateway {
    /// A gateway over these handles; `shutdown` also ends open subscriptions; `auth` says
    /// how callers are checked.
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Arc<dyn ProjectionStore>,
        codec: Arc<EventCodec>,
        shutdown: CancellationToken,
        auth: AuthMode,
    ) -> Self {
        let tails = Arc::new(crate::tail_hub::TailHubs::new(
            log.clone(),
            codec.clone(),
            shutdown.clone(),
        ));
        Self {
            log,
            store,
            codec,
            shutdown,
            tails,
            auth,
            tls: None,
            budget: crate::rate::Budget::default(),
            settings: None,
            sql: None,
        }
    }

    /// The same gateway answering `QueryService/Sql` with `engine`.
    pub fn with_sql(mut self, engine: Arc<dyn crate::sql::SqlEngine>) -> Self {
        self.sql = Some(engine);
        self
    }

    /// The same gateway answering `SettingsService` from `settings`.
    pub fn with_settings(mut self, settings: Arc<emberline_settings::SettingsStore>) -> Self {
        self.settings = Some(settings);
        self
    }

    /// The same gateway giving each caller `budget` (calls per second and burst).
    pub fn with_budget(mut self, budget: crate::rate::Budget) -> Self {
        self.budget = budget;
        self
    }

    /// The same gateway serving TLS on both ports with `tls` (and marking its session
    /// cookies `Secure`).
    pub fn with_tls(mut self, tls: crate::tls::Tls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Errors starting the gRPC server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The reflection service could not be built.
    #[error("reflection service: {0}")]
    Reflection(String),
    /// The server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The web server failed while serving.
    #[error("web server: {0}")]
    Serve(std::io::Error),
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Every API service — the Emberline services, health, and reflection (v1 and v1alpha) —
/// as one set of routes behind the one access check, for the gRPC port and the web origin
/// alike.
pub(crate) async fn api_routes(gateway: Gateway) -> Result<tonic::service::Routes, ServeError> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(emberline_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(emberline_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<DeviceServiceServer<Gateway>>().await;
    health.set_serving::<ReadingServiceServer<Gateway>>().await;
    health.set_serving::<TrendServiceServer<Gateway>>().await;
    health.set_serving::<CookServiceServer<Gateway>>().await;
    health
        .set_serving::<PredictionServiceServer<Gateway>>()
        .await;
    health.set_serving::<AlertServiceServer<Gateway>>().await;
    health.set_serving::<PlannerServiceServer<Gateway>>().await;
    if gateway.sql.is_some() {
        health.set_serving::<QueryServiceServer<Gateway>>().await;
    }
    health.set_serving::<AuthServiceServer<Gateway>>().await;
    health.set_serving::<TokenServiceServer<Gateway>>().await;
    health.set_serving::<ShareServiceServer<Gateway>>().await;
    health.set_serving::<AuditServiceServer<Gateway>>().await;
    health.set_serving::<SettingsServiceServer<Gateway>>().await;
    health.set_serving::<SourceServiceServer<Gateway>>().await;
    health.set_serving::<UserServiceServer<Gateway>>().await;
    let auth = AuthLayer {
        mode: gateway.auth.clone(),
        budget: std::sync::Arc::new(crate::rate::RateLimiter::new(gateway.budget)),
    };
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            DeviceServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            ReadingServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            CookServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            PredictionServiceServer::new(gateway.clone())
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AlertServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            PlannerServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            QueryServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AuthServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            TokenServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            ShareServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AuditServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            SettingsServiceServer::new(gateway.clone())
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            SourceServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            UserServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(TrendServiceServer::new(gateway).max_decoding_message_size(MAX_REQUEST_BYTES));
    Ok(tonic::service::Routes::from(
        routes.into_axum_router().layer(auth),
    ))
}

/// Binds `addr`; returns the listener and the address it got (the port, when 0 was asked).
pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Binds `addr` and serves the API until `gateway`'s shutdown token is cancelled.
/// Returns the bound address through `bound` (useful with port 0) before serving.
pub async fn serve_grpc(
    gateway: Gateway,
    addr: SocketAddr,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServeError> {
    let (listener, local) = bind(addr).await?;
    let shutdown = gateway.shutdown.clone();
    let gateway_tls = gateway.tls.clone();
    let routes = api_routes(gateway).await?;
    tracing::info!(%local, tls = gateway_tls.is_some(), "gRPC (and grpc-web) listening");
    if let Some(tx) = bound {
        let _ = tx.send(local);
    }
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &gateway_tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    server
        // One span per RPC (gRPC and grpc-web alike), named by its method.
        .trace_fn(|request| tracing::info_span!("rpc", method = %request.uri().path()))
        .accept_http1(true)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(crate::metrics::RpcMetricsLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a small response waits for the client's delayed ACK:
            // every unary call took ~40 ms however little it did.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move { shutdown.cancelled().await },
        )
        .await?;
    Ok(())
}
