//! Accounts: how the gateway checks callers (`[auth]`), the first owner of a new install,
//! and the `emberline user …` and `emberline token …` commands, which change the
//! identities file directly — the server sees the change on its next check.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use emberline_auth::users::{self, NewUser};
use emberline_auth::{AuthSettings, Authenticator, DEFAULT_TENANT, Role, Scope};
use emberline_gateway::AuthMode;

use crate::config::{AuthModeName, Config};

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

fn authenticator(config: &Config) -> Result<Authenticator> {
    let dir = config.data_dir()?;
    Authenticator::open(&dir, AuthSettings::default())
        .with_context(|| format!("opening the identities in {}", dir.display()))
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
pub(crate) fn user(config: &Config, command: UserCommand) -> Result<()> {
    let auth = authenticator(config)?;
    let file = auth.identities();
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
            )?;
            writeln!(out, "added {name} ({role} of {tenant})")?;
        }
        UserCommand::List => {
            for u in users::list(file)? {
                writeln!(out, "{}\t{}\t{}", u.name, u.role, u.tenant)?;
            }
        }
        UserCommand::Remove { name } => {
            users::remove(file, &name)?;
            writeln!(out, "removed {name}; their sessions are ended")?;
        }
        UserCommand::Passwd {
            name,
            password_file,
        } => {
            let password = read_password(password_file.as_deref())?;
            users::set_password(file, &name, &password)?;
            writeln!(out, "password of {name} changed; their sessions are ended")?;
        }
    }
    Ok(())
}

/// Runs `emberline token …`.
pub(crate) fn token(config: &Config, command: TokenCommand) -> Result<()> {
    let auth = authenticator(config)?;
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
            let (token, info) = auth.create_token(&tenant, &name, scope, expires)?;
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
            auth.revoke_token(&tenant, &id)?;
            writeln!(out, "revoked {id}")?;
        }
    }
    Ok(())
}

/// How the gateway checks callers, for listeners on `listeners`. With no user yet, creates
/// the first owner from `auth.admin_password_file` or logs a one-time setup link for the
/// web UI at `web`.
pub(crate) fn gateway_auth(
    config: &Config,
    listeners: &[SocketAddr],
    web: Option<SocketAddr>,
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
    let auth = authenticator(config)?;
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

/// A token for the Home Assistant connector `up` runs beside the gateway, when the config
/// gives it none.
pub(crate) fn internal_token(mode: &AuthMode, name: &str) -> Result<Option<String>> {
    match mode {
        AuthMode::Unchecked => Ok(None),
        AuthMode::Checked(auth) => Ok(Some(auth.internal_token(name, Scope::Control)?)),
    }
}
