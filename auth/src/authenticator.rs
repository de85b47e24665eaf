//! [`Authenticator`]: signing in, refreshing, signing out, API tokens, and turning a bearer
//! token into a [`Caller`].
//!
//! * Access tokens are JWTs signed with HS256 by the data directory's key, valid
//!   [`AuthSettings::access_ttl`] (15 minutes by default). They name the user and tenant;
//!   the role is read from the identities file on every call, so a changed role or a
//!   removed user takes effect at once.
//! * Refresh tokens are random, stored as digests, valid [`AuthSettings::refresh_ttl`] (30
//!   days) and work once: refreshing spends the token and returns a new one of the same
//!   family. A spent token presented again ends the whole family (the token was copied),
//!   except within [`REUSE_GRACE_MS`] of its spending, so two tabs refreshing together are
//!   not both signed out.
//! * API tokens are random, stored as digests, scoped, and optionally expire.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use emberline_common::clock;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::identity::{Caller, DEFAULT_TENANT, Grant, Role, Scope};
use crate::secrets::{digest, random_id, random_token, signing_key};
use crate::store::{ApiToken, IdentityFile, Session, ShareLink, User};
use crate::throttle::{SignInThrottle, ThrottlePolicy};
use crate::{AuthError, password, users};

/// How long after its spending a refresh token may be presented again without ending its
/// family (a second tab refreshing at the same moment).
pub const REUSE_GRACE_MS: i64 = 10_000;

/// The issuer named in access tokens.
const ISSUER: &str = "emberline";

/// Prefix of refresh tokens.
const REFRESH_PREFIX: &str = "emr_";
/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "emt_";
/// Prefix of share link tokens.
pub const SHARE_TOKEN_PREFIX: &str = "ems_";

/// Lifetimes and limits.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// Sign-in throttling.
    pub throttle: ThrottlePolicy,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            throttle: ThrottlePolicy::default(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    ten: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// A new session: what a sign-in, a setup or a refresh answers.
#[derive(Debug)]
pub struct SignedIn {
    /// The access token (a JWT).
    pub access_token: String,
    /// When it expires, epoch ms.
    pub access_expires_at_ms: i64,
    /// The refresh token.
    pub refresh_token: String,
    /// Who signed in.
    pub caller: Caller,
}

/// Checks credentials against one data directory's identities.
pub struct Authenticator {
    file: IdentityFile,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    throttle: SignInThrottle,
    settings: AuthSettings,
    setup_code: std::sync::Mutex<Option<String>>,
    /// Tokens of this process's own clients (the Home Assistant connector `up` runs): digest
    /// → caller. Never stored; they end with the process.
    internal: std::sync::RwLock<std::collections::HashMap<String, Caller>>,
}

impl Authenticator {
    /// The authenticator of the identities in `dir` (made on first use).
    pub fn open(dir: &std::path::Path, settings: AuthSettings) -> Result<Self, AuthError> {
        let key = signing_key(dir)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        let file = IdentityFile::new(dir);
        file.current()?;
        Ok(Self {
            file,
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
            throttle: SignInThrottle::new(settings.throttle.clone()),
            settings,
            setup_code: std::sync::Mutex::new(None),
            internal: std::sync::RwLock::default(),
        })
    }

    /// The identities file.
    pub fn identities(&self) -> &IdentityFile {
        &self.file
    }

    /// The one-time setup code while no user exists (made on the first call), else none.
    pub fn setup_code(&self) -> Result<Option<String>, AuthError> {
        let mut code = self.setup_code.lock().unwrap_or_else(|p| p.into_inner());
        if !self.file.current()?.users.is_empty() {
            *code = None;
            return Ok(None);
        }
        if code.is_none() {
            *code = Some(random_id()?);
        }
        Ok(code.clone())
    }

    /// Creates the first owner with the setup code, and signs them in.
    pub fn setup(&self, code: &str, user: &str, pass: &str) -> Result<SignedIn, AuthError> {
        {
            let mut expected = self.setup_code.lock().unwrap_or_else(|p| p.into_inner());
            let matches = expected
                .as_deref()
                .is_some_and(|e| constant_time_eq(e.as_bytes(), code.as_bytes()));
            if !matches {
                return Err(AuthError::Unauthenticated(
                    "the setup code is wrong or was used already; restart `emberline up` for \
                     a new one, or add a user with `emberline user add`"
                        .into(),
                ));
            }
            // Only the very first user: refuse if someone was added meanwhile.
            users::add(
                &self.file,
                users::NewUser {
                    name: user,
                    password: pass,
                    role: Role::Owner,
                    tenant: DEFAULT_TENANT,
                },
                true,
            )?;
            *expected = None;
        }
        self.issue(user, None)
    }

    /// Checks a password and signs the user in. Failures from `from` are counted and, past
    /// the policy's free tries, slowed down.
    pub fn sign_in(&self, user: &str, pass: &str, from: IpAddr) -> Result<SignedIn, AuthError> {
        let now = Instant::now();
        self.throttle
            .check(user, from, now)
            .map_err(|t| AuthError::Throttled {
                retry_after: t.retry_after,
            })?;
        let doc = self.file.current()?;
        let known = doc.user(user);
        let stored = known.map_or(password::decoy(), |u| u.password_hash.as_str());
        if !password::verify(pass, stored) || known.is_none() {
            self.throttle.failed(user, from, now);
            tracing::info!(target: "emberline::audit", user, %from, "sign-in failed");
            return Err(AuthError::Unauthenticated(
                "wrong user name or password".into(),
            ));
        }
        self.throttle.succeeded(user, from, now);
        tracing::info!(target: "emberline::audit", user, %from, "signed in");
        let name = known.map_or(user, |u| u.name.as_str()).to_owned();
        self.issue(&name, None)
    }

    /// Trades a refresh token for a new session.
    pub fn refresh(&self, refresh_token: &str) -> Result<SignedIn, AuthError> {
        let spent = digest(refresh_token);
        let now = clock::now_ms();
        let (user, family) = self
            .file
            .update(now, |doc| {
                let Some(session) = doc.sessions.iter_mut().find(|s| s.digest == spent) else {
                    return Ok(Err(
                        "the refresh token is unknown, expired or revoked; sign in again",
                    ));
                };
                match session.spent_at_ms {
                    Some(at) if now - at > REUSE_GRACE_MS => {
                        let family = session.family.clone();
                        doc.sessions.retain(|s| s.family != family);
                        tracing::warn!(
                            target: "emberline::audit",
                            "a spent refresh token was presented again; its sessions are ended"
                        );
                        return Ok(Err(
                            "this refresh token was used already; every session from that sign-in \
                         is ended",
                        ));
                    }
                    Some(_) => {}
                    None => session.spent_at_ms = Some(now),
                }
                let (user, family) = (session.user.clone(), session.family.clone());
                if doc.user(&user).is_none() {
                    return Ok(Err("the user was removed"));
                }
                Ok(Ok((user, family)))
            })?
            .map_err(|reason| AuthError::Unauthenticated(reason.into()))?;
        self.issue(&user, Some(family))
    }

    /// Ends the session of `refresh_token` (every token of its family).
    pub fn sign_out(&self, refresh_token: &str) -> Result<(), AuthError> {
        let spent = digest(refresh_token);
        self.file.update(clock::now_ms(), |doc| {
            if let Some(family) = doc
                .sessions
                .iter()
                .find(|s| s.digest == spent)
                .map(|s| s.family.clone())
            {
                doc.sessions.retain(|s| s.family != family);
            }
            Ok(())
        })
    }

    /// The caller a bearer token proves, or why it proves nothing.
    pub fn verify(&self, bearer: &str) -> Result<Caller, AuthError> {
        if bearer.starts_with(API_TOKEN_PREFIX) {
            return self.verify_api_token(bearer);
        }
        if bearer.starts_with(SHARE_TOKEN_PREFIX) {
            return self.verify_share(bearer);
        }
        let claims = jsonwebtoken::decode::<Claims>(bearer, &self.decoding, &self.validation)
            .map_err(|e| {
                let why = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        "the access token expired; refresh it"
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "the access token was not signed by this server"
                    }
                    jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                        "the access token is not valid yet"
                    }
                    _ => "the access token is malformed",
                };
                AuthError::Unauthenticated(why.into())
            })?
            .claims;
        let doc = self.file.current()?;
        let user = doc
            .user(&claims.sub)
            .filter(|u| u.tenant == claims.ten)
            .ok_or_else(|| AuthError::Unauthenticated("the user no longer exists".into()))?;
        Ok(Caller {
            name: user.name.clone(),
            tenant: user.tenant.clone(),
            grant: Grant::User(user.role),
        })
    }

    /// A token for a client inside this process (the Home Assistant connector of `up`),
    /// valid until the process ends and stored nowhere.
    pub fn internal_token(&self, name: &str, scope: Scope) -> Result<String, AuthError> {
        let token = random_token(API_TOKEN_PREFIX)?;
        let caller = Caller {
            name: name.to_owned(),
            tenant: DEFAULT_TENANT.to_owned(),
            grant: Grant::Token(scope),
        };
        self.internal
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest(&token), caller);
        Ok(token)
    }

    fn verify_api_token(&self, token: &str) -> Result<Caller, AuthError> {
        let wanted = digest(token);
        if let Some(caller) = self
            .internal
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&wanted)
        {
            return Ok(caller.clone());
        }
        let doc = self.file.current()?;
        let found = doc
            .tokens
            .iter()
            .find(|t| constant_time_eq(t.digest.as_bytes(), wanted.as_bytes()))
            .ok_or_else(|| {
                AuthError::Unauthenticated("the API token is unknown or revoked".into())
            })?;
        if found.expires_at_ms.is_some_and(|e| e <= clock::now_ms()) {
            return Err(AuthError::Unauthenticated("the API token expired".into()));
        }
        Ok(Caller {
            name: found.name.clone(),
            tenant: found.tenant.clone(),
            grant: Grant::Token(found.scope),
        })
    }

    fn verify_share(&self, token: &str) -> Result<Caller, AuthError> {
        let wanted = digest(token);
        let doc = self.file.current()?;
        let found = doc
            .shares
            .iter()
            .find(|s| constant_time_eq(s.digest.as_bytes(), wanted.as_bytes()))
            .ok_or_else(|| {
                AuthError::Unauthenticated("the share link is unknown or revoked".into())
            })?;
        if found.expires_at_ms.is_some_and(|e| e <= clock::now_ms()) {
            return Err(AuthError::Unauthenticated("the share link expired".into()));
        }
        Ok(Caller {
            name: format!("share link {}", found.id),
            tenant: found.tenant.clone(),
            grant: Grant::Share {
                cook_id: found.cook_id.clone(),
                device: found.device.clone(),
            },
        })
    }

    /// Creates a share link of `cook_id` (on `device`, qualified) for `tenant`; returns the
    /// token (shown once) and its record.
    pub fn create_share(
        &self,
        tenant: &str,
        cook_id: &str,
        device: &str,
        expires_at_ms: Option<i64>,
    ) -> Result<(String, ShareLink), AuthError> {
        let now = clock::now_ms();
        if expires_at_ms.is_some_and(|e| e <= now) {
            return Err(AuthError::InvalidArgument(
                "the expiry is in the past".into(),
            ));
        }
        let token = random_token(SHARE_TOKEN_PREFIX)?;
        let record = ShareLink {
            id: random_id()?,
            tenant: tenant.to_owned(),
            cook_id: cook_id.to_owned(),
            device: device.to_owned(),
            digest: digest(&token),
            created_at_ms: now,
            expires_at_ms,
        };
        let kept = record.clone();
        self.file.update(now, move |doc| {
            doc.shares.push(kept);
            Ok(())
        })?;
        tracing::info!(target: "emberline::audit", tenant, cook_id, id = %record.id, "share link created");
        Ok((token, record))
    }

    /// The tenant's share links (of one cook, or all).
    pub fn list_shares(
        &self,
        tenant: &str,
        cook_id: Option<&str>,
    ) -> Result<Vec<ShareLink>, AuthError> {
        Ok(self
            .file
            .current()?
            .shares
            .iter()
            .filter(|s| s.tenant == tenant && cook_id.is_none_or(|c| c == s.cook_id))
            .cloned()
            .collect())
    }

    /// Revokes one of the tenant's share links.
    pub fn revoke_share(&self, tenant: &str, id: &str) -> Result<(), AuthError> {
        self.file.update(clock::now_ms(), |doc| {
            let before = doc.shares.len();
            doc.shares.retain(|s| !(s.tenant == tenant && s.id == id));
            if doc.shares.len() == before {
                return Err(AuthError::NotFound(format!("no share link {id:?}")));
            }
            Ok(())
        })?;
        tracing::info!(target: "emberline::audit", tenant, id, "share link revoked");
        Ok(())
    }

    /// Creates an API token for `tenant`; returns the token (shown once) and its record.
    pub fn create_token(
        &self,
        tenant: &str,
        name: &str,
        scope: Scope,
        expires_at_ms: Option<i64>,
    ) -> Result<(String, ApiToken), AuthError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(AuthError::InvalidArgument(
                "a token needs a name of 1 to 100 bytes".into(),
            ));
        }
        let now = clock::now_ms();
        if expires_at_ms.is_some_and(|e| e <= now) {
            return Err(AuthError::InvalidArgument(
                "the expiry is in the past".into(),
            ));
        }
        let token = random_token(API_TOKEN_PREFIX)?;
        let record = ApiToken {
            id: random_id()?,
            name: name.to_owned(),
            tenant: tenant.to_owned(),
            scope,
            digest: digest(&token),
            created_at_ms: now,
            expires_at_ms,
        };
        let kept = record.clone();
        self.file.update(now, move |doc| {
            doc.tokens.push(kept);
            Ok(())
        })?;
        tracing::info!(target: "emberline::audit", tenant, name, %scope, id = %record.id, "API token created");
        Ok((token, record))
    }

    /// The tenant's API tokens.
    pub fn list_tokens(&self, tenant: &str) -> Result<Vec<ApiToken>, AuthError> {
        Ok(self
            .file
            .current()?
            .tokens
            .iter()
            .filter(|t| t.tenant == tenant)
            .cloned()
            .collect())
    }

    /// Revokes one of the tenant's API tokens.
    pub fn revoke_token(&self, tenant: &str, id: &str) -> Result<(), AuthError> {
        self.file.update(clock::now_ms(), |doc| {
            let before = doc.tokens.len();
            doc.tokens.retain(|t| !(t.tenant == tenant && t.id == id));
            if doc.tokens.len() == before {
                return Err(AuthError::NotFound(format!("no API token {id:?}")));
            }
            Ok(())
        })?;
        tracing::info!(target: "emberline::audit", tenant, id, "API token revoked");
        Ok(())
    }

    /// A session for `user`: a new family, or the next token of `family`.
    fn issue(&self, user: &str, family: Option<String>) -> Result<SignedIn, AuthError> {
        let now = clock::now_ms();
        let doc = self.file.current()?;
        let record: User = doc
            .user(user)
            .cloned()
            .ok_or_else(|| AuthError::Unauthenticated("the user no longer exists".into()))?;
        let access_expires_at_ms = now + self.settings.access_ttl.as_millis() as i64;
        let claims = Claims {
            iss: ISSUER.into(),
            sub: record.name.clone(),
            ten: record.tenant.clone(),
            iat: now / 1000,
            nbf: now / 1000,
            exp: access_expires_at_ms / 1000,
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(|e| AuthError::Storage(format!("signing an access token: {e}")))?;
        let refresh_token = random_token(REFRESH_PREFIX)?;
        let session = Session {
            digest: digest(&refresh_token),
            user: record.name.clone(),
            family: match family {
                Some(f) => f,
                None => random_id()?,
            },
            expires_at_ms: now + self.settings.refresh_ttl.as_millis() as i64,
            spent_at_ms: None,
        };
        self.file.update(now, move |doc| {
            doc.sessions.push(session);
            Ok(())
        })?;
        Ok(SignedIn {
            access_token,
            access_expires_at_ms,
            refresh_token,
            caller: Caller {
                name: record.name,
                tenant: record.tenant,
                grant: Grant::User(record.role),
            },
        })
    }
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
