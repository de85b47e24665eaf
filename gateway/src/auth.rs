//! Who may call what: one tower layer in front of every API service, on the gRPC port and
//! the web origin alike (so grpc-web is checked by the same code).
//!
//! The layer finds the method's rule in [`rule`], reads the caller's credentials —
//! `authorization: Bearer <token>` (an access token or an API token), else the web UI's
//! HttpOnly session cookie — and answers `UNAUTHENTICATED` when they prove nothing and
//! `PERMISSION_DENIED` when the caller's role or scope lacks what the method needs.
//! Otherwise the [`Caller`] goes into the request's extensions for the handler. A method
//! missing from the table is refused to everyone: a new RPC is closed until it is given a
//! rule.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use emberline_auth::{Authenticator, Caller, Permission};
use tonic::codegen::Service;
use tonic::codegen::http::{HeaderMap, Request, Response};

/// The cookie holding the web UI's access token.
pub(crate) const ACCESS_COOKIE: &str = "emberline_access";
/// The cookie holding the web UI's refresh token (sent to the auth service only).
pub(crate) const REFRESH_COOKIE: &str = "emberline_refresh";

/// How the gateway checks callers.
#[derive(Clone)]
pub enum AuthMode {
    /// Nobody is checked: every caller acts as the default tenant's owner. Only for an
    /// install whose every listener is on a loopback address (`auth.mode = "none"`).
    Unchecked,
    /// Every call but signing in needs credentials.
    Checked(Arc<Authenticator>),
}

/// What a method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Anyone: health, reflection, and the sign-in calls themselves.
    Public,
    /// A caller allowed this.
    Needs(Permission),
    /// Not in the table: refused to everyone.
    Unlisted,
}

/// The rule of a gRPC path (`/package.Service/Method`).
pub fn rule(path: &str) -> Rule {
    use Permission::*;
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return Rule::Public;
    }
    let Some(method) = path.strip_prefix("/emberline.v1.") else {
        return Rule::Unlisted;
    };
    let needs = match method {
        "AuthService/Setup"
        | "AuthService/SignIn"
        | "AuthService/Refresh"
        | "AuthService/SignOut" => return Rule::Public,
        "AuthService/WhoAmI" => Read,
        "DeviceService/ListDevices"
        | "DeviceService/GetLatest"
        | "DeviceService/SubscribeDevices" => Read,
        "DeviceService/DeleteDevice" => Manage,
        "ReadingService/GetHistory" => Read,
        "TrendService/SubscribeTrends" => Read,
        "CookService/ListCooks" | "CookService/GetCook" => Read,
        "CookService/SetTarget"
        | "CookService/StartCook"
        | "CookService/AddNote"
        | "CookService/EndCook" => Control,
        "PredictionService/ListPredictions" | "PredictionService/SubscribePredictions" => Read,
        "AlertService/ListAlertRules"
        | "AlertService/ListAlerts"
        | "AlertService/SubscribeAlerts" => Read,
        "AlertService/SetAlertRule"
        | "AlertService/DeleteAlertRule"
        | "AlertService/AcknowledgeAlert"
        | "AlertService/SnoozeAlert" => Control,
        "PlannerService/Plan" => Read,
        "QueryService/Sql" => Read,
        "TokenService/CreateToken" | "TokenService/ListTokens" | "TokenService/RevokeToken" => {
            Manage
        }
        "AuditService/ListAuditEvents" => Manage,
        "UserService/ListUsers" | "UserService/AddUser" | "UserService/RemoveUser" => Manage,
        "SettingsService/ListChannels"
        | "SettingsService/SetChannel"
        | "SettingsService/DeleteChannel"
        | "SettingsService/TestChannel"
        | "SettingsService/RenameDevice" => Manage,
        "SettingsService/GetPreferences" | "SettingsService/SetPreferences" => Read,
        "SourceService/ListSourceKinds"
        | "SourceService/ListSources"
        | "SourceService/SetSource"
        | "SourceService/DeleteSource"
        | "SourceService/TestSource" => Manage,
        "ShareService/CreateShareLink"
        | "ShareService/ListShareLinks"
        | "ShareService/RevokeShareLink" => Control,
        _ => return Rule::Unlisted,
    };
    Rule::Needs(needs)
}

/// What a share link may call: reading its cook's page, nothing else.
const SHARE_READS: &[&str] = &[
    "/emberline.v1.AuthService/WhoAmI",
    "/emberline.v1.DeviceService/ListDevices",
    "/emberline.v1.DeviceService/GetLatest",
    "/emberline.v1.DeviceService/SubscribeDevices",
    "/emberline.v1.ReadingService/GetHistory",
    "/emberline.v1.TrendService/SubscribeTrends",
    "/emberline.v1.CookService/GetCook",
    "/emberline.v1.CookService/ListCooks",
    "/emberline.v1.PredictionService/ListPredictions",
    "/emberline.v1.PredictionService/SubscribePredictions",
    "/emberline.v1.AlertService/ListAlerts",
    "/emberline.v1.AlertService/SubscribeAlerts",
];

/// The value of cookie `name` in `headers`.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The bearer token of a request: the `authorization` header, else the access cookie.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim());
    }
    cookie(headers, ACCESS_COOKIE)
}

/// The caller of a request, or the status to answer instead.
async fn admit(
    mode: &AuthMode,
    path: &str,
    headers: &HeaderMap,
) -> Result<Option<Caller>, tonic::Status> {
    let needs = match rule(path) {
        Rule::Public => None,
        Rule::Needs(p) => Some(p),
        Rule::Unlisted => {
            return Err(tonic::Status::permission_denied(format!(
                "{path} has no access rule; it is closed"
            )));
        }
    };
    let authenticator = match mode {
        AuthMode::Unchecked => return Ok(Some(Caller::unchecked())),
        AuthMode::Checked(a) => a,
    };
    let Some(token) = bearer(headers).filter(|t| !t.is_empty()) else {
        return match needs {
            None => Ok(None),
            Some(_) => Err(tonic::Status::unauthenticated(
                "sign in first: send `authorization: Bearer <token>` (an access token from \
                 AuthService/SignIn, or an API token)",
            )),
        };
    };
    let caller = match authenticator.verify_any(token).await {
        Ok(caller) => caller,
        // A public call with stale credentials still goes through (signing in again).
        Err(_) if needs.is_none() => return Ok(None),
        Err(e) => return Err(crate::auth_api::auth_status(e)),
    };
    if needs.is_some()
        && matches!(caller.grant, emberline_auth::Grant::Share { .. })
        && !SHARE_READS.contains(&path)
    {
        return Err(tonic::Status::permission_denied(format!(
            "a share link shows one cook; it may not call {path}"
        )));
    }
    if let Some(needs) = needs
        && !caller.allows(needs)
    {
        return Err(tonic::Status::permission_denied(format!(
            "{} may not call {path} (it needs {needs:?} permission)",
            caller.name
        )));
    }
    Ok(Some(caller))
}

/// The credential a call was admitted with, for calls that outlive it (a subscription is
/// ended when its token expires or is revoked).
#[derive(Clone)]
pub(crate) struct Credential {
    auth: Arc<Authenticator>,
    token: String,
}

impl Credential {
    /// Of the request, when it was admitted with one.
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> Option<Self> {
        request.extensions().get::<Self>().cloned()
    }

    /// Why it proves nothing any more, or `None` while it still does.
    pub(crate) async fn ended(&self) -> Option<String> {
        self.auth
            .verify_any(&self.token)
            .await
            .err()
            .map(|e| e.to_string())
    }
}

/// The address a request came from, on either port.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) IpAddr);

fn peer<B>(request: &Request<B>) -> Option<IpAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    if let Some(info) = extensions.get::<TcpConnectInfo>() {
        return info.remote_addr().map(|a| a.ip());
    }
    if let Some(info) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        return info.get_ref().remote_addr().map(|a| a.ip());
    }
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        return Some(info.0.ip());
    }
    extensions
        .get::<axum::extract::ConnectInfo<crate::web::WebPeer>>()
        .map(|c| c.0.0.ip())
}

/// Wraps each service in [`AuthCheck`].
#[derive(Clone)]
pub(crate) struct AuthLayer {
    pub(crate) mode: AuthMode,
    pub(crate) budget: std::sync::Arc<crate::rate::RateLimiter>,
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthCheck<S>;

    fn layer(&self, inner: S) -> AuthCheck<S> {
        AuthCheck {
            inner,
            mode: self.mode.clone(),
            budget: self.budget.clone(),
        }
    }
}

/// Admits or refuses each request before `inner` sees it.
#[derive(Clone)]
pub(crate) struct AuthCheck<S> {
    inner: S,
    mode: AuthMode,
    budget: std::sync::Arc<crate::rate::RateLimiter>,
}

impl<S, B, RB> Service<Request<B>> for AuthCheck<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The service that was polled ready answers; a fresh clone waits for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (mode, budget) = (self.mode.clone(), self.budget.clone());
        Box::pin(async move {
            let admitted = match admit(&mode, request.uri().path(), request.headers()).await {
                Ok(Some(c)) if matches!(mode, AuthMode::Checked(_)) => {
                    let key = format!("{}\u{1f}{}", c.tenant, c.name);
                    match budget.take(&key, std::time::Instant::now()) {
                        Ok(()) => Ok(Some(c)),
                        Err(wait) => Err(tonic::Status::resource_exhausted(format!(
                            "{} is over its budget of {} calls a second; retry in {} ms",
                            c.name,
                            budget.budget().per_second,
                            wait.as_millis().max(1)
                        ))),
                    }
                }
                other => other,
            };
            match admitted {
                Ok(caller) => {
                    if let Some(ip) = peer(&request) {
                        request.extensions_mut().insert(Peer(ip));
                    }
                    if let Some(caller) = caller {
                        request.extensions_mut().insert(caller);
                        // Long calls (subscriptions) check again that it still proves
                        // something.
                        if let (AuthMode::Checked(auth), Some(token)) =
                            (&mode, bearer(request.headers()))
                        {
                            let credential = Credential {
                                auth: auth.clone(),
                                token: token.to_owned(),
                            };
                            request.extensions_mut().insert(credential);
                        }
                    }
                    inner.call(request).await
                }
                Err(status) => {
                    let (parts, ()) = status.into_http::<()>().into_parts();
                    Ok(Response::from_parts(parts, RB::default()))
                }
            }
        })
    }
}

/// The caller the layer admitted (handlers behind the layer always have one, except for
/// public methods).
pub(crate) fn caller_of<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("sign in first"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_comes_from_the_header_before_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            "a=1; emberline_access=from-cookie".parse().expect("value"),
        );
        assert_eq!(bearer(&h), Some("from-cookie"));
        h.insert(
            "authorization",
            "Bearer from-header".parse().expect("value"),
        );
        assert_eq!(bearer(&h), Some("from-header"));
        h.insert("authorization", "Basic abc".parse().expect("value"));
        assert_eq!(bearer(&h), None, "another scheme is no bearer");
    }

    #[test]
    fn unknown_paths_are_closed_and_sign_in_is_open() {
        assert_eq!(rule("/emberline.v1.DeviceService/Nope"), Rule::Unlisted);
        assert_eq!(rule("/other.Service/Method"), Rule::Unlisted);
        assert_eq!(rule("/emberline.v1.AuthService/SignIn"), Rule::Public);
        assert_eq!(
            rule("/emberline.v1.DeviceService/DeleteDevice"),
            Rule::Needs(Permission::Manage)
        );
        assert!(matches!(
            futures::executor::block_on(admit(&AuthMode::Unchecked, "/emberline.v1.X/Y", &HeaderMap::new())),
            Err(s) if s.code() == tonic::Code::PermissionDenied
        ));
    }
}
