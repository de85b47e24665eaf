//! `AuthService`, `TokenService` and `UserService`: signing in and out, refreshing, API
//! tokens, and the tenant's users.
//!
//! With `cookie` set (the web UI), the tokens go into HttpOnly, SameSite=Strict cookies the
//! page's scripts cannot read, instead of into the answer: the access cookie for every
//! path, the refresh cookie only for this service's paths.

use emberline_auth::{AuthError, Authenticator, Caller, Grant, SignedIn};
use emberline_proto::v1::auth_service_server::AuthService;
use emberline_proto::v1::token_service_server::TokenService;
use emberline_proto::v1::user_service_server::UserService;
use emberline_proto::v1::{
    AddUserRequest, AddUserResponse, ApiToken, CreateTokenRequest, CreateTokenResponse,
    ListTokensRequest, ListTokensResponse, ListUsersRequest, ListUsersResponse, RefreshRequest,
    RemoveUserRequest, RemoveUserResponse, RevokeTokenRequest, RevokeTokenResponse, SetupRequest,
    SignInRequest, SignInResponse, SignOutRequest, SignOutResponse, UserInfo, WhoAmIRequest,
    WhoAmIResponse,
};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::auth::{ACCESS_COOKIE, AuthMode, Peer, REFRESH_COOKIE, caller_of, cookie};

/// The gRPC status of an authentication failure.
pub(crate) fn auth_status(e: AuthError) -> Status {
    match e {
        AuthError::Unauthenticated(why) => Status::unauthenticated(why),
        e @ AuthError::Throttled { .. } => Status::resource_exhausted(e.to_string()),
        AuthError::InvalidArgument(why) => Status::invalid_argument(why),
        AuthError::NotFound(why) => Status::not_found(why),
        e @ AuthError::Storage(_) => {
            tracing::error!(error = %e, "identities store");
            Status::unavailable(e.to_string())
        }
    }
}

fn who(caller: &Caller) -> WhoAmIResponse {
    let (role, scope, cook_id) = match &caller.grant {
        Grant::User(role) => (role.as_str(), "", ""),
        Grant::Token(scope) => ("", scope.as_str(), ""),
        Grant::Share { cook_id, .. } => ("", "share", cook_id.as_str()),
        Grant::Unchecked => ("owner", "", ""),
    };
    WhoAmIResponse {
        name: caller.name.clone(),
        tenant: caller.tenant.clone(),
        role: role.into(),
        scope: scope.into(),
        cook_id: cook_id.into(),
    }
}

impl Gateway {
    pub(crate) fn authenticator(&self) -> Result<&std::sync::Arc<Authenticator>, Status> {
        match &self.auth {
            AuthMode::Checked(a) => Ok(a),
            AuthMode::Unchecked => Err(Status::failed_precondition(
                "authentication is off on this install (auth.mode = \"none\")",
            )),
        }
    }
}

/// Like [`blocking`], for work that also waits on the identities store (the log): the
/// future runs to completion on the blocking thread.
pub(crate) async fn blocking_async<T, F>(
    work: impl FnOnce() -> F + Send + 'static,
) -> Result<T, Status>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, AuthError>>,
{
    let runtime = tokio::runtime::Handle::current();
    blocking(move || runtime.block_on(work())).await
}

/// Runs blocking authenticator work (password hashing, file writes) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("authentication task: {e}")))?
        .map_err(auth_status)
}

/// The answer to a sign-in: tokens in the body, or in cookies.
fn signed_in(session: SignedIn, cookie: bool, secure: bool) -> Response<SignInResponse> {
    let caller = Some(who(&session.caller));
    if !cookie {
        return Response::new(SignInResponse {
            access_token: session.access_token,
            refresh_token: session.refresh_token,
            access_expires_at_ms: session.access_expires_at_ms,
            caller,
        });
    }
    let access_age =
        ((session.access_expires_at_ms - emberline_common::clock::now_ms()) / 1000).max(0);
    let mut response = Response::new(SignInResponse {
        access_expires_at_ms: session.access_expires_at_ms,
        caller,
        ..SignInResponse::default()
    });
    set_cookie(
        &mut response,
        ACCESS_COOKIE,
        &session.access_token,
        "/",
        access_age,
        secure,
    );
    set_cookie(
        &mut response,
        REFRESH_COOKIE,
        &session.refresh_token,
        "/emberline.v1.AuthService/",
        30 * 24 * 3600,
        secure,
    );
    response
}

/// Sets a session cookie; `secure` (served over TLS) keeps it off plain-HTTP requests.
fn set_cookie<T>(
    response: &mut Response<T>,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    secure: bool,
) {
    let secure = if secure { "; Secure" } else { "" };
    let header = format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age}{secure}"
    );
    if let Ok(v) = MetadataValue::try_from(header) {
        response.metadata_mut().append("set-cookie", v);
    }
}

fn refresh_token_of<T>(request: &Request<T>, given: &str) -> Option<String> {
    if !given.is_empty() {
        return Some(given.to_owned());
    }
    let headers = request.metadata().clone().into_headers();
    cookie(&headers, REFRESH_COOKIE).map(str::to_owned)
}

#[tonic::async_trait]
impl AuthService for Gateway {
    async fn setup(
        &self,
        request: Request<SetupRequest>,
    ) -> Result<Response<SignInResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let r = request.into_inner();
        let session =
            blocking_async(move || async move { auth.setup(&r.code, &r.user, &r.password).await })
                .await?;
        Ok(signed_in(session, r.cookie, self.tls.is_some()))
    }

    async fn sign_in(
        &self,
        request: Request<SignInRequest>,
    ) -> Result<Response<SignInResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let from = request
            .extensions()
            .get::<Peer>()
            .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| {
                p.0
            });
        let r = request.into_inner();
        let session =
            blocking_async(move || async move { auth.sign_in(&r.user, &r.password, from).await })
                .await?;
        Ok(signed_in(session, r.cookie, self.tls.is_some()))
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<SignInResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let token = refresh_token_of(&request, &request.get_ref().refresh_token)
            .ok_or_else(|| Status::unauthenticated("no refresh token; sign in again"))?;
        let cookie = request.get_ref().cookie;
        let session = blocking_async(move || async move { auth.refresh(&token).await }).await?;
        Ok(signed_in(session, cookie, self.tls.is_some()))
    }

    async fn sign_out(
        &self,
        request: Request<SignOutRequest>,
    ) -> Result<Response<SignOutResponse>, Status> {
        let auth = self.authenticator()?.clone();
        if let Some(token) = refresh_token_of(&request, &request.get_ref().refresh_token) {
            blocking_async(move || async move { auth.sign_out(&token).await }).await?;
        }
        let mut response = Response::new(SignOutResponse {});
        let secure = self.tls.is_some();
        set_cookie(&mut response, ACCESS_COOKIE, "", "/", 0, secure);
        set_cookie(
            &mut response,
            REFRESH_COOKIE,
            "",
            "/emberline.v1.AuthService/",
            0,
            secure,
        );
        Ok(response)
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        Ok(Response::new(who(&caller_of(&request)?)))
    }
}

fn token_to_proto(t: emberline_auth::store::ApiToken) -> ApiToken {
    ApiToken {
        id: t.id,
        name: t.name,
        scope: t.scope.as_str().into(),
        created_at_ms: t.created_at_ms,
        expires_at_ms: t.expires_at_ms,
    }
}

#[tonic::async_trait]
impl TokenService for Gateway {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let scope = r
            .scope
            .parse()
            .map_err(|e: emberline_auth::identity::UnknownName| {
                Status::invalid_argument(format!("scope: {e}"))
            })?;
        let (token, info) = blocking_async(move || async move {
            auth.create_token(
                &caller.name,
                &caller.tenant,
                &r.name,
                scope,
                r.expires_at_ms,
            )
            .await
        })
        .await?;
        Ok(Response::new(CreateTokenResponse {
            token,
            info: Some(token_to_proto(info)),
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let caller = caller_of(&request)?;
        let tokens = blocking(move || auth.list_tokens(&caller.tenant)).await?;
        Ok(Response::new(ListTokensResponse {
            tokens: tokens.into_iter().map(token_to_proto).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let caller = caller_of(&request)?;
        let id = request.into_inner().id;
        blocking_async(move || async move {
            auth.revoke_token(&caller.name, &caller.tenant, &id).await
        })
        .await?;
        Ok(Response::new(RevokeTokenResponse {}))
    }
}

fn user_to_proto(u: emberline_auth::store::User) -> UserInfo {
    UserInfo {
        name: u.name,
        role: u.role.as_str().into(),
        created_at_ms: u.created_at_ms,
    }
}

#[tonic::async_trait]
impl UserService for Gateway {
    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let caller = caller_of(&request)?;
        let users = blocking(move || auth.list_users(&caller.tenant)).await?;
        Ok(Response::new(ListUsersResponse {
            users: users.into_iter().map(user_to_proto).collect(),
        }))
    }

    async fn add_user(
        &self,
        request: Request<AddUserRequest>,
    ) -> Result<Response<AddUserResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let role = r
            .role
            .parse()
            .map_err(|e: emberline_auth::identity::UnknownName| {
                Status::invalid_argument(format!("role: {e}"))
            })?;
        let (tenant, name) = (caller.tenant.clone(), r.name.clone());
        let check = auth.clone();
        blocking_async(move || async move {
            check
                .add_user(&caller.name, &caller.tenant, &r.name, role, &r.password)
                .await
        })
        .await?;
        let added = blocking(move || auth.list_users(&tenant))
            .await?
            .into_iter()
            .find(|u| u.name == name)
            .map(user_to_proto);
        Ok(Response::new(AddUserResponse { user: added }))
    }

    async fn remove_user(
        &self,
        request: Request<RemoveUserRequest>,
    ) -> Result<Response<RemoveUserResponse>, Status> {
        let auth = self.authenticator()?.clone();
        let caller = caller_of(&request)?;
        let name = request.into_inner().name;
        blocking_async(move || async move {
            auth.remove_user(&caller.name, &caller.tenant, &name).await
        })
        .await?;
        Ok(Response::new(RemoveUserResponse {}))
    }
}
