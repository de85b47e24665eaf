//! Managing users: what `emberline user add|list|remove|passwd` does, through the
//! identities store, whether or not the server is running.

use emberline_common::clock;

use crate::identity::Role;
use crate::store::{IdentityStore, User};
use crate::{AuthError, password};

/// A user to add.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    /// Sign-in name.
    pub name: &'a str,
    /// Password in clear (hashed here).
    pub password: &'a str,
    /// Role in the tenant.
    pub role: Role,
    /// Tenant.
    pub tenant: &'a str,
}

/// Checks a user or tenant name: 1–64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_name(what: &str, name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidArgument(format!(
            "a {what} name has 1 to 64 letters, digits, '.', '_', '-' or '@' (got {name:?})"
        )))
    }
}

/// Adds a user. With `only_if_none`, refuses when any user exists (the first owner).
pub async fn add(
    file: &IdentityStore,
    new: NewUser<'_>,
    only_if_none: bool,
) -> Result<(), AuthError> {
    check_name("user", new.name)?;
    if !emberline_common::tenant::is_valid_name(new.tenant) {
        return Err(AuthError::InvalidArgument(format!(
            "a tenant name has 1 to 64 letters, digits, '.', '_', '-' or '@' (got {:?})",
            new.tenant
        )));
    }
    password::check_policy(new.password)?;
    let password_hash = password::hash(new.password)?;
    let now = clock::now_ms();
    file.update(now, |doc| {
        if only_if_none && !doc.users.is_empty() {
            return Err(AuthError::InvalidArgument(
                "a user exists already; sign in instead".into(),
            ));
        }
        if doc.user(new.name).is_some() {
            return Err(AuthError::InvalidArgument(format!(
                "a user called {:?} exists already",
                new.name
            )));
        }
        doc.users.push(User {
            name: new.name.to_owned(),
            tenant: new.tenant.to_owned(),
            role: new.role,
            password_hash: password_hash.clone(),
            created_at_ms: now,
        });
        Ok(())
    })
    .await?;
    tracing::info!(target: "emberline::audit", user = new.name, tenant = new.tenant, role = %new.role, "user added");
    Ok(())
}

/// Removes a user and ends their sessions. Refuses to remove a tenant's last owner.
pub async fn remove(file: &IdentityStore, name: &str) -> Result<(), AuthError> {
    file.update(clock::now_ms(), |doc| {
        let user = doc
            .user(name)
            .cloned()
            .ok_or_else(|| AuthError::NotFound(format!("no user called {name:?}")))?;
        let owners = doc
            .users
            .iter()
            .filter(|u| u.tenant == user.tenant && u.role == Role::Owner)
            .count();
        if user.role == Role::Owner && owners == 1 {
            return Err(AuthError::InvalidArgument(format!(
                "{:?} is the last owner of tenant {:?}; add another owner first",
                user.name, user.tenant
            )));
        }
        doc.users.retain(|u| u.name != user.name);
        doc.sessions.retain(|s| s.user != user.name);
        Ok(())
    })
    .await?;
    tracing::info!(target: "emberline::audit", user = name, "user removed");
    Ok(())
}

/// Sets a user's password and ends their sessions.
pub async fn set_password(
    file: &IdentityStore,
    name: &str,
    new_password: &str,
) -> Result<(), AuthError> {
    password::check_policy(new_password)?;
    let hash = password::hash(new_password)?;
    file.update(clock::now_ms(), |doc| {
        let canonical = doc
            .user(name)
            .map(|u| u.name.clone())
            .ok_or_else(|| AuthError::NotFound(format!("no user called {name:?}")))?;
        for user in doc.users.iter_mut().filter(|u| u.name == canonical) {
            user.password_hash = hash.clone();
        }
        doc.sessions.retain(|s| s.user != canonical);
        Ok(())
    })
    .await?;
    tracing::info!(target: "emberline::audit", user = name, "password changed");
    Ok(())
}

/// Every user, by name.
pub fn list(file: &IdentityStore) -> Result<Vec<User>, AuthError> {
    let mut users = file.current()?.users.clone();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(users)
}
