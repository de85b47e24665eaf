//! "Sign in with …" for the web UI: the authorization-code flow with PKCE against the
//! configured OpenID provider, run by the server (the browser never holds a token).
//!
//! `GET /auth/oidc/login` sends the browser to the provider with a fresh state and PKCE
//! challenge (the state also goes into a short-lived cookie, so a callback can only finish
//! the sign-in its own browser began); `GET /auth/oidc/callback` trades the code for the
//! provider's access token, checks it like any bearer token, and keeps it in the same
//! HttpOnly session cookie a password sign-in uses. `GET /auth/oidc/info` tells the sign-in
//! page whether to offer the button.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use emberline_auth::oidc::OidcVerifier;

use crate::auth::{ACCESS_COOKIE, cookie};

/// Cookie holding the state of a sign-in under way.
const STATE_COOKIE: &str = "emberline_oidc_state";
/// How long a begun sign-in may take.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// Sign-ins under way at most (the oldest go first).
const MAX_PENDING: usize = 1_000;

/// Sign-ins begun and not finished: state → PKCE verifier.
#[derive(Clone)]
struct Flow {
    provider: Arc<OidcVerifier>,
    pending: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    secure: bool,
}

/// The routes, when `provider` lets browsers sign in.
pub(crate) fn routes(provider: Arc<OidcVerifier>, secure: bool) -> Router {
    let flow = Flow {
        provider,
        pending: Arc::default(),
        secure,
    };
    Router::new()
        .route("/auth/oidc/info", get(info))
        .route("/auth/oidc/login", get(login))
        .route("/auth/oidc/callback", get(callback))
        .with_state(flow)
}

/// The answer when no provider is configured.
pub(crate) fn unavailable_routes() -> Router {
    Router::new().route(
        "/auth/oidc/info",
        get(|| async {
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"available":false}"#,
            )
        }),
    )
}

/// Where the provider sends the browser back: this origin's callback.
fn redirect_uri(headers: &HeaderMap, secure: bool) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = if secure { "https" } else { "http" };
    Some(format!("{scheme}://{host}/auth/oidc/callback"))
}

async fn info(State(flow): State<Flow>) -> Response {
    let body = serde_json::json!({"available": true, "issuer": flow.provider.issuer()});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn page(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_owned(),
    )
        .into_response()
}

async fn login(State(flow): State<Flow>, headers: HeaderMap) -> Response {
    let Some(redirect) = redirect_uri(&headers, flow.secure) else {
        return page(StatusCode::BAD_REQUEST, "no Host header");
    };
    let begun = match flow.provider.begin(&redirect) {
        Ok(b) => b,
        Err(e) => return page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    {
        let mut pending = flow.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, (_, at)| at.elapsed() < PENDING_FOR);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(begun.state.clone(), (begun.verifier, Instant::now()));
    }
    let secure = if flow.secure { "; Secure" } else { "" };
    // Lax: the provider's redirect back is a top-level navigation from another site.
    let state_cookie = format!(
        "{STATE_COOKIE}={}; HttpOnly; SameSite=Lax; Path=/auth/oidc/; Max-Age={}{secure}",
        begun.state,
        PENDING_FOR.as_secs()
    );
    let mut response = StatusCode::FOUND.into_response();
    let h = response.headers_mut();
    if let (Ok(location), Ok(cookie)) = (
        HeaderValue::from_str(&begun.url),
        HeaderValue::from_str(&state_cookie),
    ) {
        h.insert(header::LOCATION, location);
        h.insert(header::SET_COOKIE, cookie);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// What the provider sends back in the callback's query.
#[derive(Default)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl Callback {
    fn of(uri: &Uri) -> Self {
        let mut back = Self::default();
        for (key, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
            let value = Some(value.into_owned());
            match key.as_ref() {
                "code" => back.code = value,
                "state" => back.state = value,
                "error" => back.error = value,
                "error_description" => back.error_description = value,
                _ => {}
            }
        }
        back
    }
}

async fn callback(State(flow): State<Flow>, headers: HeaderMap, uri: Uri) -> Response {
    let back = Callback::of(&uri);
    if let Some(error) = back.error {
        let why = back.error_description.unwrap_or_default();
        return page(
            StatusCode::UNAUTHORIZED,
            &format!("The provider did not sign you in: {error} {why}"),
        );
    }
    let (Some(code), Some(state)) = (back.code, back.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            "the provider sent no code or state",
        );
    };
    if cookie(&headers, STATE_COOKIE) != Some(state.as_str()) {
        return page(
            StatusCode::UNAUTHORIZED,
            "this sign-in was not begun in this browser; start again from the sign-in page",
        );
    }
    let verifier = flow
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&state)
        .filter(|(_, at)| at.elapsed() < PENDING_FOR)
        .map(|(v, _)| v);
    let Some(verifier) = verifier else {
        return page(
            StatusCode::UNAUTHORIZED,
            "this sign-in expired or was finished already; start again from the sign-in page",
        );
    };
    let Some(redirect) = redirect_uri(&headers, flow.secure) else {
        return page(StatusCode::BAD_REQUEST, "no Host header");
    };
    let (token, lifetime, caller) = match flow.provider.finish(&code, &verifier, &redirect).await {
        Ok(done) => done,
        Err(e) => return page(StatusCode::UNAUTHORIZED, &e.to_string()),
    };
    tracing::info!(target: "emberline::audit", name = %caller.name, tenant = %caller.tenant, "signed in through the OpenID provider");
    let secure = if flow.secure { "; Secure" } else { "" };
    let session = format!(
        "{ACCESS_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={lifetime}{secure}"
    );
    let clear =
        format!("{STATE_COOKIE}=; HttpOnly; SameSite=Lax; Path=/auth/oidc/; Max-Age=0{secure}");
    let mut response = StatusCode::FOUND.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/#/"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in [session, clear] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}
