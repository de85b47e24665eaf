//! The web UI's origin: the embedded page and grpc-web on one address, so the browser talks
//! to the API without cross-origin requests.
//!
//! Files come from `web/dist/`, embedded at build time (see `build.rs`), served gzip-encoded
//! when the browser accepts it. Hashed files under `/assets/` are cached for a year; the
//! page, the manifest and the service worker are revalidated on every load so an upgrade
//! shows at once. Any other path without a file falls back to the page (client-side routes).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::server::{Gateway, ServeError, api_routes, bind};

/// One embedded file.
pub(crate) struct Asset {
    pub(crate) path: &'static str,
    pub(crate) mime: &'static str,
    pub(crate) raw: &'static [u8],
    pub(crate) gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Whether the embedded bundle holds a page (false when the UI was not built).
pub fn has_web_ui() -> bool {
    find("/index.html").is_some()
}

async fn asset(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = match uri.path() {
        "/" => "/index.html",
        p => p,
    };
    let (asset, fallback) = match find(path) {
        Some(a) => (a, false),
        // Unknown asset files are a 404; anything else is a page route.
        None if path.starts_with("/assets/") => return StatusCode::NOT_FOUND.into_response(),
        None => match find("/index.html") {
            Some(a) => (a, true),
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    "the web UI is not built into this binary (run `npm run build` in web/)",
                )
                    .into_response();
            }
        },
    };
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let cache = if path.starts_with("/assets/") && !fallback {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = Response::new(Body::from(if gzip { asset.gzip } else { asset.raw }));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// The web origin's routes: the API (grpc-web and gRPC over HTTP/1.1 clients) and the page.
pub async fn web_router(gateway: Gateway) -> Result<Router, ServeError> {
    let provider = match &gateway.auth {
        crate::AuthMode::Checked(auth) => auth.oidc().filter(|o| o.browser_sign_in()).cloned(),
        crate::AuthMode::Unchecked => None,
    };
    let sign_in = match provider {
        Some(provider) => crate::oidc_web::routes(provider, gateway.tls.is_some()),
        None => crate::oidc_web::unavailable_routes(),
    };
    Ok(api_routes(gateway)
        .await?
        .into_axum_router()
        // Only API routes speak grpc-web; the layer refuses plain HTTP/1.1 requests, so it
        // must not wrap the page.
        .route_layer(tonic_web::GrpcWebLayer::new())
        .merge(sign_in)
        .fallback(asset))
}

/// The address a web client connects from (on plain TCP and TLS alike).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WebPeer(pub(crate) SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>>
    for WebPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        *stream.remote_addr()
    }
}

/// Serves the web UI and grpc-web on `addr` until the gateway's shutdown token is cancelled.
pub async fn serve_web(
    gateway: Gateway,
    addr: SocketAddr,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServeError> {
    let (listener, local) = bind(addr).await?;
    let shutdown = gateway.shutdown.clone();
    let tls = gateway.tls.clone();
    let router = web_router(gateway).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(url = %format!("{scheme}://{local}/"), "web UI listening");
    if let Some(tx) = bound {
        let _ = tx.send(local);
    }
    // The peer's address reaches the handlers (the sign-in throttle counts by address).
    if let Some(tls) = tls {
        let listener = crate::tls::TlsListener::spawn(listener, &tls, shutdown.clone());
        let service = router.into_make_service_with_connect_info::<WebPeer>();
        return axum::serve(listener, service)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(ServeError::Serve);
    }
    // TCP_NODELAY: a small grpc-web answer must not wait for the browser's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ServeError::Serve)
}
