//! [`Authenticator`]: signing in, refreshing, signing out, API tokens, and turning a bearer
//! token into a [`Caller`].
//!
//! * Access tokens are JWTs signed with HS256 by the data directory's key, valid
//!   [`AuthSettings::access_ttl`] (15 minutes by default). They name the user, tenant and
//!   session; the role and the session are read from the identities file on every call, so
//!   a changed role, a removed user or a signed-out session takes effect at once.
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

use crate::audit::{AuditEvent, AuditKind, AuditSink};
use crate::identity::{Caller, DEFAULT_TENANT, Grant, Role, Scope};
use crate::secrets::{digest, random_id, random_token, signing_key};
use crate::store::{ApiToken, IdentityStore, Session, ShareLink, User};
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
    /// The session (refresh family) it belongs to: signing out ends it at once.
    #[serde(default)]
    sid: String,
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

/// Checks credentials against an install's identities.
pub struct Authenticator {
    file: IdentityStore,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    throttle: SignInThrottle,
    settings: AuthSettings,
    setup_code: std::sync::Mutex<Option<String>>,
    /// Tokens of this process's own clients (the Home Assistant connector `up` runs): digest
    /// → caller. Never stored; they end with the process.
    internal: std::sync::RwLock<std::collections::HashMap<String, Caller>>,
    /// Where security events go besides the log target.
    audit: std::sync::OnceLock<std::sync::Arc<dyn AuditSink>>,
    /// Share links used since this process started (their first use is an event).
    shares_opened: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The users and API tokens last seen in the identities file, to report changes made
    /// by the command.
    seen_users: std::sync::Mutex<Option<std::sync::Arc<crate::store::Identities>>>,
    /// A pre-shared token for the deployment's own roles (scope `ingest`), from its secrets.
    service_token: Option<String>,
    /// The OpenID provider whose tokens are accepted too.
    oidc: Option<std::sync::Arc<crate::oidc::OidcVerifier>>,
    /// When a throttled sign-in from an address was last reported.
    throttled_noted: std::sync::Mutex<std::collections::HashMap<IpAddr, Instant>>,
    /// Ids of API tokens this process created or revoked (reported already).
    own_token_changes: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Users this process added or removed and has reported, not yet seen in the file.
    own_user_changes: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Authenticator {
    /// The authenticator of the identities file in `dir` (made on first use), signing with
    /// the key in `dir`.
    pub fn open(dir: &std::path::Path, settings: AuthSettings) -> Result<Self, AuthError> {
        Self::new(IdentityStore::file(dir), &signing_key(dir)?, settings)
    }

    /// The authenticator of the identities in `store`, signing access tokens with `key`
    /// (every replica that shares a store must share the key).
    pub fn new(
        store: IdentityStore,
        key: &[u8],
        settings: AuthSettings,
    ) -> Result<Self, AuthError> {
        if key.len() < 32 {
            return Err(AuthError::InvalidArgument(
                "the key that signs access tokens needs at least 32 bytes (e.g. `openssl rand \
                 -hex 32`)"
                    .into(),
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        store.current()?;
        Ok(Self {
            file: store,
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            throttle: SignInThrottle::new(settings.throttle.clone()),
            settings,
            setup_code: std::sync::Mutex::new(None),
            internal: std::sync::RwLock::default(),
            audit: std::sync::OnceLock::new(),
            shares_opened: std::sync::Mutex::default(),
            seen_users: std::sync::Mutex::default(),
            own_token_changes: std::sync::Mutex::default(),
            own_user_changes: std::sync::Mutex::default(),
            throttled_noted: std::sync::Mutex::default(),
            service_token: None,
            oidc: None,
        })
    }

    /// The same authenticator also accepting `token` as the deployment's service token:
    /// the roles of a distributed deployment present it to the registry (scope `ingest`:
    /// registering and reading schemas, appending). It comes from the deployment's secrets;
    /// at least 32 characters.
    pub fn with_service_token(mut self, token: &str) -> Result<Self, AuthError> {
        if token.len() < 32 {
            return Err(AuthError::InvalidArgument(
                "the service token needs at least 32 characters (e.g. `openssl rand -hex 32`)"
                    .into(),
            ));
        }
        self.service_token = Some(token.to_owned());
        Ok(self)
    }

    /// The same authenticator also accepting the tokens `provider` signs.
    pub fn with_oidc(mut self, provider: crate::oidc::OidcVerifier) -> Self {
        self.oidc = Some(std::sync::Arc::new(provider));
        self
    }

    /// The OpenID provider whose tokens are accepted, if any.
    pub fn oidc(&self) -> Option<&std::sync::Arc<crate::oidc::OidcVerifier>> {
        self.oidc.as_ref()
    }

    /// The caller a bearer token proves — this server's tokens, or the OpenID provider's
    /// (which may need its keys fetched) — or why it proves nothing.
    pub async fn verify_any(&self, bearer: &str) -> Result<Caller, AuthError> {
        match &self.oidc {
            Some(oidc) if oidc.claims_issuer(bearer) => oidc.verify(bearer).await,
            _ => match self.check(bearer) {
                Ok(caller) => Ok(caller),
                // Signed in, made or shared on another replica a moment ago: read the log
                // to its end before refusing.
                Err(Miss::NotSeen(_)) if self.file.may_lag() => {
                    self.file.catch_up().await?;
                    self.verify(bearer)
                }
                Err(miss) => Err(miss.into_error()),
            },
        }
    }

    /// Sends security events to `sink` from now on (once; later calls are ignored).
    pub fn set_audit(&self, sink: std::sync::Arc<dyn AuditSink>) {
        let _ = self.audit.set(sink);
        self.remember_users();
    }

    /// Reports one security event.
    fn audit(
        &self,
        tenant: &str,
        kind: AuditKind,
        actor: &str,
        subject: Option<&str>,
        address: Option<IpAddr>,
    ) {
        tracing::info!(target: "emberline::audit", tenant, ?kind, actor, subject, address = ?address, "security event");
        if let Some(sink) = self.audit.get() {
            sink.record(AuditEvent {
                time_ms: clock::now_ms(),
                tenant: tenant.to_owned(),
                kind,
                actor: actor.to_owned(),
                subject: subject.map(str::to_owned),
                address: address.map(|a| a.to_string()),
            });
        }
    }

    fn remember_users(&self) {
        if let Ok(doc) = self.file.current() {
            *self.seen_users.lock().unwrap_or_else(|p| p.into_inner()) = Some(doc);
        }
    }

    /// Reports users added, removed, re-roled or re-keyed since last looked (changes made
    /// with `emberline user` while this process runs).
    fn notice_user_changes(&self, doc: &std::sync::Arc<crate::store::Identities>) {
        if self.audit.get().is_none() || self.file.writers_report_changes() {
            return;
        }
        let mut seen = self.seen_users.lock().unwrap_or_else(|p| p.into_inner());
        let Some(last) = seen.as_ref() else {
            *seen = Some(doc.clone());
            return;
        };
        // The file unchanged since (the common case on every call): nothing to compare.
        if std::sync::Arc::ptr_eq(last, doc) {
            return;
        }
        let (before, tokens_before) = (&last.users, &last.tokens);
        if *before == doc.users && *tokens_before == doc.tokens {
            *seen = Some(doc.clone());
            return;
        }
        let actor = "command line";
        let mut mine = self
            .own_user_changes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for user in &doc.users {
            let kind = match before.iter().find(|b| b.name == user.name) {
                None => Some(AuditKind::UserAdded),
                Some(b) if b.role != user.role || b.tenant != user.tenant => {
                    Some(AuditKind::RoleChanged)
                }
                Some(b) if b.password_hash != user.password_hash => {
                    Some(AuditKind::PasswordChanged)
                }
                Some(_) => None,
            };
            if let Some(kind) = kind
                && !(kind == AuditKind::UserAdded && mine.remove(&user.name))
            {
                self.audit(&user.tenant, kind, actor, Some(&user.name), None);
            }
        }
        for gone in before.iter().filter(|b| doc.user(&b.name).is_none()) {
            if mine.remove(&gone.name) {
                continue;
            }
            self.audit(
                &gone.tenant,
                AuditKind::UserRemoved,
                actor,
                Some(&gone.name),
                None,
            );
        }
        // Tokens this process made or revoked were reported when it did; the rest were the
        // command's.
        let (made, revoked): (Vec<_>, Vec<_>) = (
            doc.tokens
                .iter()
                .filter(|t| !tokens_before.iter().any(|b| b.id == t.id))
                .collect(),
            tokens_before
                .iter()
                .filter(|b| !doc.tokens.iter().any(|t| t.id == b.id))
                .collect(),
        );
        let mine = self
            .own_token_changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for t in made.into_iter().filter(|t| !mine.contains(&t.id)) {
            self.audit(&t.tenant, AuditKind::TokenCreated, actor, Some(&t.id), None);
        }
        for t in revoked.into_iter().filter(|t| !mine.contains(&t.id)) {
            self.audit(&t.tenant, AuditKind::TokenRevoked, actor, Some(&t.id), None);
        }
        *seen = Some(doc.clone());
    }

    /// Where the identities live.
    pub fn identities(&self) -> &IdentityStore {
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
    pub async fn setup(&self, code: &str, user: &str, pass: &str) -> Result<SignedIn, AuthError> {
        {
            let matches = self
                .setup_code
                .lock()
                .unwrap_or_else(|p| p.into_inner())
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
            )
            .await?;
            *self.setup_code.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.remember_users();
        self.audit(DEFAULT_TENANT, AuditKind::SetupCompleted, user, None, None);
        self.issue(user, None).await
    }

    /// Checks a password and signs the user in. Failures from `from` are counted and, past
    /// the policy's free tries, slowed down.
    pub async fn sign_in(
        &self,
        user: &str,
        pass: &str,
        from: IpAddr,
    ) -> Result<SignedIn, AuthError> {
        let now = Instant::now();
        let doc = self.file.current()?;
        self.notice_user_changes(&doc);
        let known = doc.user(user);
        let tenant = known.map_or(DEFAULT_TENANT, |u| u.tenant.as_str());
        if let Err(t) = self.throttle.check(user, from, now) {
            // Once a minute per address: a guesser must not fill the trail (or the disk).
            let note = {
                let mut noted = self
                    .throttled_noted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if noted.len() >= 10_000 {
                    noted.clear();
                }
                let last = noted.get(&from).copied();
                let due = last
                    .is_none_or(|l| now.saturating_duration_since(l) >= Duration::from_secs(60));
                if due {
                    noted.insert(from, now);
                }
                due
            };
            if note {
                self.audit(tenant, AuditKind::SignInThrottled, user, None, Some(from));
            }
            return Err(AuthError::Throttled {
                retry_after: t.retry_after,
            });
        }
        let stored = known.map_or(password::decoy(), |u| u.password_hash.as_str());
        if !password::verify(pass, stored) || known.is_none() {
            self.throttle.failed(user, from, now);
            self.audit(tenant, AuditKind::SignInFailed, user, None, Some(from));
            return Err(AuthError::Unauthenticated(
                "wrong user name or password".into(),
            ));
        }
        self.throttle.succeeded(user, from, now);
        self.audit(tenant, AuditKind::SignedIn, user, None, Some(from));
        let name = known.map_or(user, |u| u.name.as_str()).to_owned();
        self.issue(&name, None).await
    }

    /// Trades a refresh token for a new session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<SignedIn, AuthError> {
        let spent = digest(refresh_token);
        let now = clock::now_ms();
        let outcome = self
            .file
            .update(now, |doc| {
                let Some(session) = doc.sessions.iter_mut().find(|s| s.digest == spent) else {
                    return Ok(Refreshed::Unknown);
                };
                match session.spent_at_ms {
                    Some(at) if now - at > REUSE_GRACE_MS => {
                        let family = session.family.clone();
                        let user = session.user.clone();
                        doc.sessions.retain(|s| s.family != family);
                        let tenant = doc
                            .user(&user)
                            .map_or(DEFAULT_TENANT, |u| u.tenant.as_str())
                            .to_owned();
                        return Ok(Refreshed::Reused { user, tenant });
                    }
                    Some(_) => {}
                    None => session.spent_at_ms = Some(now),
                }
                let (user, family) = (session.user.clone(), session.family.clone());
                if doc.user(&user).is_none() {
                    return Ok(Refreshed::UserGone);
                }
                Ok(Refreshed::Traded { user, family })
            })
            .await?;
        let why = match outcome {
            Refreshed::Traded { user, family } => return self.issue(&user, Some(family)).await,
            Refreshed::Unknown => "the refresh token is unknown, expired or revoked; sign in again",
            Refreshed::UserGone => "the user was removed",
            Refreshed::Reused { user, tenant } => {
                self.audit(&tenant, AuditKind::RefreshReused, &user, None, None);
                "this refresh token was used already; every session from that sign-in is ended"
            }
        };
        Err(AuthError::Unauthenticated(why.into()))
    }

    /// Ends the session of `refresh_token` (every token of its family).
    pub async fn sign_out(&self, refresh_token: &str) -> Result<(), AuthError> {
        let spent = digest(refresh_token);
        let ended = self
            .file
            .update(clock::now_ms(), |doc| {
                let Some((family, user)) = doc
                    .sessions
                    .iter()
                    .find(|s| s.digest == spent)
                    .map(|s| (s.family.clone(), s.user.clone()))
                else {
                    return Ok(None);
                };
                doc.sessions.retain(|s| s.family != family);
                let tenant = doc.user(&user).map(|u| u.tenant.clone());
                Ok(Some((
                    user,
                    tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
                )))
            })
            .await?;
        if let Some((user, tenant)) = ended {
            self.audit(&tenant, AuditKind::SignedOut, &user, None, None);
        }
        Ok(())
    }

    /// The caller a bearer token proves, or why it proves nothing, as far as this process
    /// has read the identities ([`verify_any`](Self::verify_any) reads on before refusing).
    pub fn verify(&self, bearer: &str) -> Result<Caller, AuthError> {
        self.check(bearer).map_err(Miss::into_error)
    }

    fn check(&self, bearer: &str) -> Result<Caller, Miss> {
        if let Some(service) = &self.service_token
            && constant_time_eq(service.as_bytes(), bearer.as_bytes())
        {
            return Ok(Caller {
                name: "service".into(),
                tenant: DEFAULT_TENANT.into(),
                grant: Grant::Token(Scope::Ingest),
            });
        }
        if bearer.starts_with(API_TOKEN_PREFIX) {
            return self.verify_api_token(bearer);
        }
        if bearer.starts_with(SHARE_TOKEN_PREFIX) {
            return self.verify_share(bearer);
        }
        let doc = self.file.current().map_err(Miss::Refused)?;
        self.notice_user_changes(&doc);
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
                Miss::Refused(AuthError::Unauthenticated(why.into()))
            })?
            .claims;
        let user = doc
            .user(&claims.sub)
            .filter(|u| u.tenant == claims.ten)
            .ok_or_else(|| Miss::unseen("the user no longer exists"))?;
        // Signing out, a new password or a reused refresh token ended the session: its
        // access tokens end with it, not when they expire.
        if !doc.sessions.iter().any(|s| s.family == claims.sid) {
            return Err(Miss::unseen("the session was ended; sign in again"));
        }
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

    fn verify_api_token(&self, token: &str) -> Result<Caller, Miss> {
        let wanted = digest(token);
        if let Some(caller) = self
            .internal
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&wanted)
        {
            return Ok(caller.clone());
        }
        let doc = self.file.current().map_err(Miss::Refused)?;
        let found = doc
            .tokens
            .iter()
            .find(|t| constant_time_eq(t.digest.as_bytes(), wanted.as_bytes()))
            .ok_or_else(|| Miss::unseen("the API token is unknown or revoked"))?;
        if found.expires_at_ms.is_some_and(|e| e <= clock::now_ms()) {
            return Err(Miss::Refused(AuthError::Unauthenticated(
                "the API token expired".into(),
            )));
        }
        Ok(Caller {
            name: found.name.clone(),
            tenant: found.tenant.clone(),
            grant: Grant::Token(found.scope),
        })
    }

    fn verify_share(&self, token: &str) -> Result<Caller, Miss> {
        let wanted = digest(token);
        let doc = self.file.current().map_err(Miss::Refused)?;
        let found = doc
            .shares
            .iter()
            .find(|s| constant_time_eq(s.digest.as_bytes(), wanted.as_bytes()))
            .ok_or_else(|| Miss::unseen("the share link is unknown or revoked"))?;
        if found.expires_at_ms.is_some_and(|e| e <= clock::now_ms()) {
            return Err(Miss::Refused(AuthError::Unauthenticated(
                "the share link expired".into(),
            )));
        }
        let first = self
            .shares_opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(found.id.clone());
        if first {
            self.audit(
                &found.tenant,
                AuditKind::ShareOpened,
                &format!("share link {}", found.id),
                Some(&found.cook_id),
                None,
            );
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
    pub async fn create_share(
        &self,
        actor: &str,
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
        self.file
            .update(now, |doc| {
                doc.shares.push(record.clone());
                Ok(())
            })
            .await?;
        self.audit(
            tenant,
            AuditKind::ShareCreated,
            actor,
            Some(&record.id),
            None,
        );
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
    pub async fn revoke_share(&self, actor: &str, tenant: &str, id: &str) -> Result<(), AuthError> {
        self.file
            .update(clock::now_ms(), |doc| {
                let before = doc.shares.len();
                doc.shares.retain(|s| !(s.tenant == tenant && s.id == id));
                if doc.shares.len() == before {
                    return Err(AuthError::NotFound(format!("no share link {id:?}")));
                }
                Ok(())
            })
            .await?;
        self.audit(tenant, AuditKind::ShareRevoked, actor, Some(id), None);
        Ok(())
    }

    /// Creates an API token for `tenant`; returns the token (shown once) and its record.
    pub async fn create_token(
        &self,
        actor: &str,
        tenant: &str,
        name: &str,
        scope: Scope,
        expires_at_ms: Option<i64>,
    ) -> Result<(String, ApiToken), AuthError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(AuthError::InvalidArgument(
                "name: a token needs a name of 1 to 100 bytes".into(),
            ));
        }
        let now = clock::now_ms();
        if expires_at_ms.is_some_and(|e| e <= now) {
            return Err(AuthError::InvalidArgument(
                "expires_at_ms: the expiry is in the past".into(),
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
        // Known as this process's own before the file shows it: not the command's.
        self.own_token_changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.id.clone());
        self.file
            .update(now, |doc| {
                doc.tokens.push(record.clone());
                Ok(())
            })
            .await?;
        self.audit(
            tenant,
            AuditKind::TokenCreated,
            actor,
            Some(&record.id),
            None,
        );
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

    /// The tenant's users, by name.
    pub fn list_users(&self, tenant: &str) -> Result<Vec<User>, AuthError> {
        Ok(users::list(&self.file)?
            .into_iter()
            .filter(|u| u.tenant == tenant)
            .collect())
    }

    /// Adds a user to the tenant (the password checked against the policy).
    pub async fn add_user(
        &self,
        actor: &str,
        tenant: &str,
        name: &str,
        role: Role,
        password: &str,
    ) -> Result<(), AuthError> {
        // Refusals name their field first, for forms.
        let on = |field: &str| {
            let field = field.to_owned();
            move |e: AuthError| match e {
                AuthError::InvalidArgument(why) => {
                    AuthError::InvalidArgument(format!("{field}: {why}"))
                }
                other => other,
            }
        };
        users::check_name("user", name).map_err(on("name"))?;
        password::check_policy(password).map_err(on("password"))?;
        self.own_user_changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
        let added = users::add(
            &self.file,
            users::NewUser {
                name,
                password,
                role,
                tenant,
            },
            false,
        )
        .await;
        if added.is_err() {
            self.own_user_changes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
        }
        // What is left to refuse is a name taken.
        added.map_err(on("name"))?;
        self.audit(tenant, AuditKind::UserAdded, actor, Some(name), None);
        Ok(())
    }

    /// Removes one of the tenant's users and ends their sessions (never the tenant's last
    /// owner).
    pub async fn remove_user(
        &self,
        actor: &str,
        tenant: &str,
        name: &str,
    ) -> Result<(), AuthError> {
        let theirs = self
            .file
            .current()?
            .user(name)
            .is_some_and(|u| u.tenant == tenant);
        if !theirs {
            return Err(AuthError::NotFound(format!("no user called {name:?}")));
        }
        self.own_user_changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
        let removed = users::remove(&self.file, name).await;
        if removed.is_err() {
            self.own_user_changes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
        }
        removed?;
        self.audit(tenant, AuditKind::UserRemoved, actor, Some(name), None);
        Ok(())
    }

    /// Revokes one of the tenant's API tokens.
    pub async fn revoke_token(&self, actor: &str, tenant: &str, id: &str) -> Result<(), AuthError> {
        self.own_token_changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
        self.file
            .update(clock::now_ms(), |doc| {
                let before = doc.tokens.len();
                doc.tokens.retain(|t| !(t.tenant == tenant && t.id == id));
                if doc.tokens.len() == before {
                    return Err(AuthError::NotFound(format!("no API token {id:?}")));
                }
                Ok(())
            })
            .await?;
        self.audit(tenant, AuditKind::TokenRevoked, actor, Some(id), None);
        Ok(())
    }

    /// A session for `user`: a new family, or the next token of `family`.
    async fn issue(&self, user: &str, family: Option<String>) -> Result<SignedIn, AuthError> {
        let now = clock::now_ms();
        let doc = self.file.current()?;
        let record: User = doc
            .user(user)
            .cloned()
            .ok_or_else(|| AuthError::Unauthenticated("the user no longer exists".into()))?;
        let access_expires_at_ms = now + self.settings.access_ttl.as_millis() as i64;
        let family = match family {
            Some(f) => f,
            None => random_id()?,
        };
        let claims = Claims {
            iss: ISSUER.into(),
            sub: record.name.clone(),
            ten: record.tenant.clone(),
            sid: family.clone(),
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
            family,
            expires_at_ms: now + self.settings.refresh_ttl.as_millis() as i64,
            spent_at_ms: None,
        };
        self.file
            .update(now, |doc| {
                doc.sessions.push(session.clone());
                Ok(())
            })
            .await?;
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

/// Why a token proved nothing: for good, or only as far as this process has read.
enum Miss {
    /// Refused whatever the identities say (expired, forged, malformed).
    Refused(AuthError),
    /// Nobody, no session or no token of that name here (yet).
    NotSeen(AuthError),
}

impl Miss {
    fn unseen(why: &str) -> Self {
        Self::NotSeen(AuthError::Unauthenticated(why.into()))
    }

    fn into_error(self) -> AuthError {
        match self {
            Self::Refused(e) | Self::NotSeen(e) => e,
        }
    }
}

/// What trading a refresh token came to.
enum Refreshed {
    Traded { user: String, family: String },
    Unknown,
    UserGone,
    Reused { user: String, tenant: String },
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
