//! Sign-in through an OpenID provider, for the hosted deployment: bearer tokens that the
//! provider signed (JWT access tokens) are checked against its published keys.
//!
//! On start the provider's discovery document names its key set (JWKS); the keys are
//! cached and fetched again when a token names a key id not yet known (the provider
//! rotated its keys), at most once per [`REFETCH_AFTER`]. A token must carry the issuer
//! and the audience configured, be within its `exp` and `nbf` (with [`LEEWAY_S`] of clock
//! skew), be signed with an asymmetric algorithm of the key it names, and carry the
//! tenant and role claims; the role is one of `owner`, `cook`, `viewer`.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::AuthError;
use crate::identity::{Caller, Grant, Role};

/// Clock skew allowed on `exp` and `nbf`, seconds.
pub const LEEWAY_S: u64 = 60;
/// Least time between two fetches of the key set.
pub const REFETCH_AFTER: Duration = Duration::from_secs(5);

/// `[auth.oidc]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The provider's issuer URL (its discovery document is under
    /// `/.well-known/openid-configuration`).
    pub issuer: String,
    /// The audience tokens must be for.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// The claim naming the caller's tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// The claim naming the caller's role (`owner`, `cook` or `viewer`).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The web UI's client id at the provider: set, the sign-in page offers "sign in with
    /// …" (authorization code with PKCE; the redirect URI to register is
    /// `<web origin>/auth/oidc/callback`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The client's secret, for a provider that treats the web UI as a confidential client.
    #[serde(default)]
    pub client_secret: Option<emberline_common::Secret>,
    /// Scopes asked for at sign-in.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The resource indicator asked for (RFC 8707), for providers that issue JWT access
    /// tokens per resource.
    #[serde(default)]
    pub resource: Option<String>,
}

fn default_scope() -> String {
    "openid".into()
}

fn default_audience() -> String {
    "emberline".into()
}

fn default_tenant_claim() -> String {
    "emberline_tenant".into()
}

fn default_role_claim() -> String {
    "emberline_role".into()
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    authorization_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint: Option<String>,
}

/// A sign-in begun in a browser: where to send it, and what to keep for its return.
#[derive(Debug)]
pub struct BrowserSignIn {
    /// The provider's authorization URL to redirect the browser to.
    pub url: String,
    /// The state the provider sends back.
    pub state: String,
    /// The PKCE verifier, kept by the server until the code comes back.
    pub verifier: String,
}

/// A usable key of the provider.
#[derive(Clone)]
struct Key {
    key: DecodingKey,
    algorithm: Algorithm,
}

/// Checks tokens of one OpenID provider.
pub struct OidcVerifier {
    settings: OidcSettings,
    jwks_uri: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, Key>>,
    fetched: Mutex<Option<Instant>>,
}

fn unavailable(what: &str, e: impl std::error::Error + 'static) -> AuthError {
    AuthError::Storage(format!(
        "OpenID provider: {what}: {}",
        emberline_common::error::chain(&e)
    ))
}

impl OidcVerifier {
    /// Reads the provider's discovery document and keys.
    pub async fn discover(settings: OidcSettings) -> Result<Self, AuthError> {
        // No pooled connections: calls to the provider are rare, and a provider closing an
        // idle keep-alive connection would otherwise reset the next call (a code exchange
        // cannot be retried).
        emberline_common::http::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .user_agent(concat!("emberline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| unavailable("HTTP client", e))?;
        let issuer = settings.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let discovery: Discovery = http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unavailable(&url, e))?
            .json()
            .await
            .map_err(|e| unavailable(&url, e))?;
        if discovery.issuer.trim_end_matches('/') != issuer {
            return Err(AuthError::InvalidArgument(format!(
                "the provider at {issuer} says its issuer is {}; set auth.oidc.issuer to that",
                discovery.issuer
            )));
        }
        let verifier = Self {
            settings,
            jwks_uri: discovery.jwks_uri,
            authorization_endpoint: discovery.authorization_endpoint,
            token_endpoint: discovery.token_endpoint,
            http,
            keys: RwLock::default(),
            fetched: Mutex::new(None),
        };
        verifier.fetch_keys().await?;
        Ok(verifier)
    }

    /// The provider's issuer URL.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Whether browsers can sign in through the provider (a client id is configured and the
    /// provider has the endpoints).
    pub fn browser_sign_in(&self) -> bool {
        self.settings.client_id.is_some()
            && self.authorization_endpoint.is_some()
            && self.token_endpoint.is_some()
    }

    /// Begins a browser sign-in returning to `redirect_uri`: the authorization URL (code
    /// flow, PKCE with S256) and the state and verifier to keep.
    pub fn begin(&self, redirect_uri: &str) -> Result<BrowserSignIn, AuthError> {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use sha2::Digest;
        let (Some(client_id), Some(endpoint)) =
            (&self.settings.client_id, &self.authorization_endpoint)
        else {
            return Err(AuthError::InvalidArgument(
                "sign-in through the provider is not configured (auth.oidc.client_id)".into(),
            ));
        };
        let verifier = crate::secrets::random_token("")?;
        let state = crate::secrets::random_token("")?;
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let mut url =
            reqwest::Url::parse(endpoint).map_err(|e| unavailable("authorization endpoint", e))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.settings.scope)
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(resource) = &self.settings.resource {
                q.append_pair("resource", resource);
            }
        }
        Ok(BrowserSignIn {
            url: url.into(),
            state,
            verifier,
        })
    }

    /// Finishes a browser sign-in: trades `code` (with the PKCE `verifier`) for tokens and
    /// checks the access token; returns it, its lifetime in seconds, and whom it proves.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<(String, u64, Caller), AuthError> {
        let (Some(client_id), Some(endpoint)) = (&self.settings.client_id, &self.token_endpoint)
        else {
            return Err(AuthError::InvalidArgument(
                "sign-in through the provider is not configured (auth.oidc.client_id)".into(),
            ));
        };
        let mut form =
            reqwest::Url::parse("http://form.invalid/").map_err(|e| unavailable("form", e))?;
        {
            let mut q = form.query_pairs_mut();
            q.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("code_verifier", verifier)
                .append_pair("client_id", client_id);
            if let Some(resource) = &self.settings.resource {
                q.append_pair("resource", resource);
            }
        }
        let mut request = self
            .http
            .post(endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.query().unwrap_or_default().to_owned());
        if let Some(secret) = &self.settings.client_secret {
            request = request.basic_auth(client_id, Some(secret.expose()));
        }
        #[derive(Deserialize)]
        struct Tokens {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let answer = request
            .send()
            .await
            .map_err(|e| unavailable("token endpoint", e))?;
        if !answer.status().is_success() {
            let status = answer.status();
            let body = answer.text().await.unwrap_or_default();
            return Err(AuthError::Unauthenticated(format!(
                "the provider refused the sign-in ({status}): {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        let tokens: Tokens = answer
            .json()
            .await
            .map_err(|e| unavailable("token endpoint answer", e))?;
        let caller = self.verify(&tokens.access_token).await?;
        Ok((
            tokens.access_token,
            tokens.expires_in.unwrap_or(300),
            caller,
        ))
    }

    async fn fetch_keys(&self) -> Result<(), AuthError> {
        *self.fetched.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let set: JwkSet = self
            .http
            .get(&self.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unavailable(&self.jwks_uri, e))?
            .json()
            .await
            .map_err(|e| unavailable(&self.jwks_uri, e))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                continue;
            };
            let algorithm = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    jsonwebtoken::jwk::EllipticCurve::P384 => Algorithm::ES384,
                    _ => Algorithm::ES256,
                },
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                // A shared secret is no public key: never accept it.
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_) => continue,
            };
            keys.insert(kid, Key { key, algorithm });
        }
        tracing::info!(keys = keys.len(), uri = %self.jwks_uri, "OpenID provider keys fetched");
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(())
    }

    /// The key `kid`, fetching the key set again when it is unknown (and the last fetch is
    /// old enough).
    async fn key(&self, kid: &str) -> Result<Option<Key>, AuthError> {
        if let Some(key) = self.keys.read().unwrap_or_else(|p| p.into_inner()).get(kid) {
            return Ok(Some(key.clone()));
        }
        let recent = self
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < REFETCH_AFTER);
        if recent {
            return Ok(None);
        }
        self.fetch_keys().await?;
        Ok(self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kid)
            .cloned())
    }

    /// Whether `token` looks like one of this provider's (it names this issuer); the
    /// signature is not checked here.
    pub fn claims_issuer(&self, token: &str) -> bool {
        use base64::Engine;
        let Some(payload) = token.split('.').nth(1) else {
            return false;
        };
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
            return false;
        };
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        serde_json::from_slice::<Iss>(&bytes)
            .ok()
            .and_then(|c| c.iss)
            .is_some_and(|iss| {
                iss.trim_end_matches('/') == self.settings.issuer.trim_end_matches('/')
            })
    }

    /// The caller `token` proves, or why it proves nothing.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let bad = |why: String| AuthError::Unauthenticated(why);
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| bad("the token is malformed".into()))?;
        let kid = header
            .kid
            .ok_or_else(|| bad("the token names no key (kid)".into()))?;
        let key = self.key(&kid).await?.ok_or_else(|| {
            bad(format!(
                "the token's key {kid:?} is not one of the provider's"
            ))
        })?;
        if header.alg != key.algorithm {
            return Err(bad(format!(
                "the token is signed with {:?}, its key is for {:?}",
                header.alg, key.algorithm
            )));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[
            self.settings.issuer.trim_end_matches('/'),
            &self.settings.issuer,
        ]);
        validation.set_audience(&[&self.settings.audience]);
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(|e| {
                bad(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token expired".into(),
                    jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                        "the token is not valid yet".into()
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        "the token is for another audience".into()
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                        "the token is from another issuer".into()
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "the token's signature does not verify".into()
                    }
                    _ => format!("the token is not acceptable: {e}"),
                })
            })?
            .claims;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let tenant = text(&self.settings.tenant_claim).ok_or_else(|| {
            bad(format!(
                "the token has no {} claim",
                self.settings.tenant_claim
            ))
        })?;
        if !emberline_common::tenant::is_valid_name(&tenant) {
            return Err(bad(format!(
                "the token's tenant {tenant:?} is not a tenant name"
            )));
        }
        let role: Role = text(&self.settings.role_claim)
            .ok_or_else(|| {
                bad(format!(
                    "the token has no {} claim",
                    self.settings.role_claim
                ))
            })?
            .parse()
            .map_err(|e: crate::identity::UnknownName| bad(e.to_string()))?;
        let name = text("preferred_username")
            .or_else(|| text("email"))
            .or_else(|| text("sub"))
            .unwrap_or_default();
        Ok(Caller {
            name,
            tenant,
            grant: Grant::User(role),
        })
    }
}
