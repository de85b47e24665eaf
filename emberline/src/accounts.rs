//! Accounts: how the gateway checks callers (`[auth]`), where identities live, the first
//! owner of a new install, and the `emberline user …` and `emberline token …` commands.
//!
//! On the embedded log the identities are a file of the data directory: the commands change
//! it directly and the server sees the change on its next check. On Kafka they are the
//! log's `identities` topic, which every gateway replica follows: the commands append to it
//! (and write their own audit events, since no server notices them).

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use emberline_auth::identity_log::IdentityLog;
use emberline_auth::store::{IdentityFile, IdentityStore};
use emberline_auth::users::{self, NewUser};
use emberline_auth::{
    AuditEvent, AuditKind, AuditSink, AuthSettings, Authenticator, DEFAULT_TENANT, Role, Scope,
};
use emberline_gateway::AuthMode;
use emberline_log::{EventLog, KafkaLog, topics};

use crate::config::{AuthModeName, Backend, Config};

/// `emberline user …`.
#[derive(Subcommand, Debug)]
pub(crate) enum UserCommand {
    /// Add a user (the password is read from the terminal, or from --password-file).
    Add {
        /// Sign-in name.
        name: String,
        /// owner, cook (read and control cooks) or viewer (read only).
        #[arg(long, default_value = "cook")]
        role: String,
        /// Read the password from this file's first line.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// The tenant (household or organisation) the user belongs to.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
    },
    /// List users and their roles.
    List,
    /// Remove a user and end their sessions.
    Remove {
        /// Sign-in name.
        name: String,
    },
    /// Set a user's password and end their sessions.
    Passwd {
        /// Sign-in name.
        name: String,
        /// Read the password from this file's first line.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// `emberline token …`.
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Create an API token; it is printed once and never again.
    Create {
        /// What it is for ("home assistant").
        name: String,
        /// read, control (read and control cooks) or ingest (append readings).
        #[arg(long, default_value = "read")]
        scope: String,
        /// Expire after this many days (default: never).
        #[arg(long)]
        expires_days: Option<u32>,
        /// The tenant whose data it reads and writes.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
    },
    /// List API tokens (not the tokens themselves).
    List {
        /// The tenant whose tokens to list.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
    },
    /// Revoke an API token by its id.
    Revoke {
        /// The id `token list` shows.
        id: String,
        /// The tenant whose token it is.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
    },
}

/// The authenticator of this install's identities: the log's `identities` topic on Kafka
/// (`log` is the process's own connection), else the data directory's file.
async fn authenticator(config: &Config, log: Option<&Arc<dyn EventLog>>) -> Result<Authenticator> {
    let dir = config.data_dir()?;
    let key = match &config.auth.signing_key {
        Some(key) => key.expose().as_bytes().to_vec(),
        None => emberline_auth::data_dir_signing_key(&dir)
            .with_context(|| format!("the signing key in {}", dir.display()))?,
    };
    let store = match log {
        Some(log) if config.log.backend == Backend::Kafka => identities_in_log(log, &dir).await?,
        _ => IdentityStore::file(&dir),
    };
    let auth = Authenticator::new(store, &key, AuthSettings::default())
        .with_context(|| format!("opening the identities of {}", dir.display()))
        .context("auth.signing_key")?;
    match &config.auth.service_token {
        Some(token) => auth
            .with_service_token(token.expose())
            .context("auth.service_token"),
        None => Ok(auth),
    }
}

/// The identities in `log`, after importing the data directory's identities file into an
/// empty topic (an install moving from the embedded log to Kafka keeps its users).
async fn identities_in_log(log: &Arc<dyn EventLog>, dir: &Path) -> Result<IdentityStore> {
    let store = IdentityLog::open(log.clone())
        .await
        .context("reading the identities topic")?;
    let file = IdentityFile::new(dir);
    if store.version() == 0 && file.path().exists() {
        let local = file.current()?;
        if !local.users.is_empty() || !local.tokens.is_empty() {
            let imported = store
                .update(emberline_common::clock::now_ms(), |doc| {
                    // Another replica may have imported or added someone meanwhile.
                    let empty = doc.users.is_empty() && doc.tokens.is_empty();
                    if empty {
                        *doc = (*local).clone();
                    }
                    Ok(empty)
                })
                .await?;
            if imported {
                tracing::info!(
                    users = local.users.len(),
                    tokens = local.tokens.len(),
                    from = %file.path().display(),
                    "imported the identities file into the log's identities topic"
                );
            }
        }
    }
    Ok(IdentityStore::Log(store))
}

/// Refuses to start a gateway replica on Kafka without `auth.signing_key`: each would sign
/// with its own data directory's key, and reject the access tokens of the others.
pub(crate) fn require_shared_signing_key(config: &Config) -> Result<()> {
    if config.log.backend == Backend::Kafka
        && config.auth.mode == AuthModeName::Password
        && config.auth.signing_key.is_none()
    {
        bail!(
            "auth.signing_key is not set: gateway replicas must sign access tokens with one \
             shared key, or each rejects the others' (set it, or EMBERLINE__AUTH__SIGNING_KEY, \
             to the same 32+ random characters on every gateway, e.g. `openssl rand -hex 32`)"
        );
    }
    Ok(())
}

/// The command's own connection to the log when identities live there (Kafka).
fn command_log(config: &Config) -> Result<Option<Arc<dyn EventLog>>> {
    match config.log.backend {
        Backend::Embedded => Ok(None),
        Backend::Kafka => Ok(Some(Arc::new(
            KafkaLog::connect(crate::roles::kafka_config(config)).context("connecting to Kafka")?,
        ))),
    }
}

/// A command's view of the identities, and the security events it caused.
struct Accounts {
    auth: Authenticator,
    log: Option<Arc<dyn EventLog>>,
    events: Arc<Collected>,
}

/// Security events of one command.
#[derive(Default)]
struct Collected(std::sync::Mutex<Vec<AuditEvent>>);

impl AuditSink for Collected {
    fn record(&self, event: AuditEvent) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }
}

impl Accounts {
    async fn open(config: &Config) -> Result<Self> {
        let log = command_log(config)?;
        if let Some(log) = &log {
            // Before any change, so a change is never made without its audit event.
            log.ensure_topic(topics::AUDIT, config.log.partitions)
                .await
                .context("creating the audit topic")?;
        }
        let auth = authenticator(config, log.as_ref()).await?;
        let events = Arc::new(Collected::default());
        auth.set_audit(events.clone());
        Ok(Self { auth, log, events })
    }

    fn note(&self, tenant: &str, kind: AuditKind, subject: &str) {
        self.events.record(AuditEvent {
            time_ms: emberline_common::clock::now_ms(),
            tenant: tenant.to_owned(),
            kind,
            actor: "command line".into(),
            subject: Some(subject.to_owned()),
            address: None,
        });
    }

    /// Appends the command's security events to the log's audit topic, when identities
    /// live there (with the file, the server notices the change and reports it).
    async fn finish(self) -> Result<()> {
        let Some(log) = self.log else { return Ok(()) };
        let events = std::mem::take(&mut *self.events.0.lock().unwrap_or_else(|p| p.into_inner()));
        let records: Vec<_> = events
            .iter()
            .filter_map(emberline_gateway::audit_record)
            .collect();
        if !records.is_empty() {
            log.append(topics::AUDIT, records)
                .await
                .context("appending the audit events of this change")?;
        }
        Ok(())
    }
}

/// A password from `file`'s first line, else from the terminal (not echoed, asked twice),
/// else from standard input's first line.
fn read_password(file: Option<&Path>) -> Result<String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the password file {}", file.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ")?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Runs `emberline user …`.
pub(crate) async fn user(config: &Config, command: UserCommand) -> Result<()> {
    let accounts = Accounts::open(config).await?;
    let file = accounts.auth.identities();
    let mut out = std::io::stdout().lock();
    match command {
        UserCommand::Add {
            name,
            role,
            password_file,
            tenant,
        } => {
            let role: Role = role.parse()?;
            let password = read_password(password_file.as_deref())?;
            users::add(
                file,
                NewUser {
                    name: &name,
                    password: &password,
                    role,
                    tenant: &tenant,
                },
                false,
            )
            .await?;
            accounts.note(&tenant, AuditKind::UserAdded, &name);
            writeln!(out, "added {name} ({role} of {tenant})")?;
        }
        UserCommand::List => {
            for u in users::list(file)? {
                writeln!(out, "{}\t{}\t{}", u.name, u.role, u.tenant)?;
            }
        }
        UserCommand::Remove { name } => {
            let tenant = tenant_of(file, &name)?;
            users::remove(file, &name).await?;
            accounts.note(&tenant, AuditKind::UserRemoved, &name);
            writeln!(out, "removed {name}; their sessions are ended")?;
        }
        UserCommand::Passwd {
            name,
            password_file,
        } => {
            let password = read_password(password_file.as_deref())?;
            let tenant = tenant_of(file, &name)?;
            users::set_password(file, &name, &password).await?;
            accounts.note(&tenant, AuditKind::PasswordChanged, &name);
            writeln!(out, "password of {name} changed; their sessions are ended")?;
        }
    }
    accounts.finish().await
}

/// The tenant of user `name` (for its audit event); the change itself says when there is
/// no such user.
fn tenant_of(store: &IdentityStore, name: &str) -> Result<String> {
    Ok(store
        .current()?
        .user(name)
        .map_or_else(|| DEFAULT_TENANT.to_owned(), |u| u.tenant.clone()))
}

/// Runs `emberline token …`.
pub(crate) async fn token(config: &Config, command: TokenCommand) -> Result<()> {
    let accounts = Accounts::open(config).await?;
    let auth = &accounts.auth;
    let mut out = std::io::stdout().lock();
    match command {
        TokenCommand::Create {
            name,
            scope,
            expires_days,
            tenant,
        } => {
            let scope: Scope = scope.parse()?;
            let expires = expires_days
                .map(|d| emberline_common::clock::now_ms() + i64::from(d) * 24 * 3600 * 1000);
            if !emberline_common::tenant::is_valid_name(&tenant) {
                bail!("a tenant name has 1 to 64 letters, digits, '.', '_', '-' or '@'");
            }
            let (token, info) = auth
                .create_token("command line", &tenant, &name, scope, expires)
                .await?;
            writeln!(out, "{token}")?;
            tracing::info!(id = %info.id, %scope, "API token created; it is shown only this once");
        }
        TokenCommand::List { tenant } => {
            for t in auth.list_tokens(&tenant)? {
                let expires = t
                    .expires_at_ms
                    .map_or_else(|| "never".to_owned(), |e| e.to_string());
                writeln!(
                    out,
                    "{}\t{}\t{}\texpires {}",
                    t.id, t.name, t.scope, expires
                )?;
            }
        }
        TokenCommand::Revoke { id, tenant } => {
            auth.revoke_token("command line", &tenant, &id).await?;
            writeln!(out, "revoked {id}")?;
        }
    }
    accounts.finish().await
}

/// How the gateway checks callers, for listeners on `listeners`. With no user yet, creates
/// the first owner from `auth.admin_password_file` or logs a one-time setup link for the
/// web UI at `web`.
pub(crate) async fn gateway_auth(
    config: &Config,
    listeners: &[SocketAddr],
    web: Option<SocketAddr>,
    log: &Arc<dyn EventLog>,
) -> Result<AuthMode> {
    if config.auth.mode == AuthModeName::None {
        if let Some(open) = listeners.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "auth.mode = \"none\" leaves the API open to anyone who reaches it, so it is \
                 allowed only on loopback addresses, and {open} is not one; sign in instead \
                 (the default) or listen on 127.0.0.1"
            );
        }
        tracing::warn!("auth.mode = \"none\": every local caller acts as the owner");
        return Ok(AuthMode::Unchecked);
    }
    let mut auth = authenticator(config, Some(log)).await?;
    if let Some(settings) = &config.auth.oidc {
        let provider = emberline_auth::oidc::OidcVerifier::discover(settings.clone())
            .await
            .with_context(|| format!("auth.oidc: the OpenID provider {}", settings.issuer))?;
        tracing::info!(issuer = %settings.issuer, "accepting the OpenID provider's tokens");
        auth = auth.with_oidc(provider);
    }
    if let Some(file) = &config.auth.admin_password_file
        && users::list(auth.identities())?.is_empty()
    {
        let name = config.auth.admin_user.as_deref().unwrap_or("admin");
        let password = read_password(Some(file))?;
        users::add(
            auth.identities(),
            NewUser {
                name,
                password: &password,
                role: Role::Owner,
                tenant: DEFAULT_TENANT,
            },
            true,
        )
        .await
        .context("creating the first owner from auth.admin_password_file")?;
        tracing::info!(
            user = name,
            "created the first owner from auth.admin_password_file"
        );
    }
    if let Some(code) = auth.setup_code()? {
        match web {
            Some(web) => tracing::warn!(
                "no user yet: create the first owner account at http://{web}/#/setup/{code} \
                 (a one-time link), or run `emberline user add NAME --role owner`"
            ),
            None => tracing::warn!(
                "no user yet: run `emberline user add NAME --role owner` to create the first \
                 owner account"
            ),
        }
    }
    Ok(AuthMode::Checked(Arc::new(auth)))
}

/// How the registry role checks callers of its REST API on `addr`: as the gateway does,
/// without the first-owner set-up (owners sign in to a gateway, not to the registry).
pub(crate) async fn registry_auth(
    config: &Config,
    addr: SocketAddr,
    log: &Arc<dyn EventLog>,
) -> Result<AuthMode> {
    if config.auth.mode == AuthModeName::None {
        if !addr.ip().is_loopback() {
            bail!(
                "auth.mode = \"none\" leaves the registry open to anyone who reaches it, so it is \
                 allowed only on loopback addresses, and {addr} is not one"
            );
        }
        return Ok(AuthMode::Unchecked);
    }
    Ok(AuthMode::Checked(Arc::new(
        authenticator(config, Some(log)).await?,
    )))
}

/// A token for the Home Assistant connector `up` runs beside the gateway, when the config
/// gives it none.
pub(crate) fn internal_token(mode: &AuthMode, name: &str) -> Result<Option<String>> {
    match mode {
        AuthMode::Unchecked => Ok(None),
        AuthMode::Checked(auth) => Ok(Some(auth.internal_token(name, Scope::Control)?)),
    }
}
