//! Who a caller is and what they may do: roles of users, scopes of API tokens, and the
//! permissions each call needs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use emberline_common::tenant::DEFAULT_TENANT;

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read devices, readings, cooks, predictions and alerts.
    Read,
    /// Change cooks, targets and alert rules; acknowledge alerts.
    Control,
    /// Remove devices, manage API tokens.
    Manage,
    /// Append readings and register schemas (sources and processes, not people).
    Ingest,
}

/// A user's role in their tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including tokens and removing devices.
    Owner,
    /// Read and control cooks.
    Cook,
    /// Read only.
    Viewer,
}

impl Role {
    /// Whether this role may do what `need` names.
    pub fn allows(self, need: Permission) -> bool {
        match self {
            Role::Owner => need != Permission::Ingest,
            Role::Cook => matches!(need, Permission::Read | Permission::Control),
            Role::Viewer => need == Permission::Read,
        }
    }

    /// The role's name, as the CLI and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Cook => "cook",
            Role::Viewer => "viewer",
        }
    }
}

/// What an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read, as a viewer.
    Read,
    /// Read and control, as a cook (the Home Assistant connector's buttons).
    Control,
    /// Append readings and register schemas only.
    Ingest,
}

impl Scope {
    /// Whether a token of this scope may do what `need` names.
    pub fn allows(self, need: Permission) -> bool {
        match self {
            Scope::Read => need == Permission::Read,
            Scope::Control => matches!(need, Permission::Read | Permission::Control),
            Scope::Ingest => need == Permission::Ingest,
        }
    }

    /// The scope's name, as the CLI and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Control => "control",
            Scope::Ingest => "ingest",
        }
    }
}

/// A role or scope name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}; expected one of {expected}")]
pub struct UnknownName {
    what: &'static str,
    given: String,
    expected: &'static str,
}

impl FromStr for Role {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Role::Owner),
            "cook" => Ok(Role::Cook),
            "viewer" => Ok(Role::Viewer),
            _ => Err(UnknownName {
                what: "role",
                given: s.to_owned(),
                expected: "owner, cook, viewer",
            }),
        }
    }
}

impl FromStr for Scope {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Scope::Read),
            "control" => Ok(Scope::Control),
            "ingest" => Ok(Scope::Ingest),
            _ => Err(UnknownName {
                what: "scope",
                given: s.to_owned(),
                expected: "read, control, ingest",
            }),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// A signed-in user, with their role.
    User(Role),
    /// An API token, with its scope.
    Token(Scope),
    /// A live share link: read-only, one cook of one device.
    Share {
        /// The cook it shows.
        cook_id: String,
        /// The cook's device (qualified id).
        device: String,
    },
    /// Nobody checked: `auth.mode = "none"`, where every caller on the loopback address acts
    /// as the default tenant's owner.
    Unchecked,
}

/// The identity behind one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user's name, or the API token's.
    pub name: String,
    /// The tenant whose data the call may see.
    pub tenant: String,
    /// What the caller may do.
    pub grant: Grant,
}

impl Caller {
    /// The caller of an install without authentication.
    pub fn unchecked() -> Self {
        Self {
            name: "local".into(),
            tenant: DEFAULT_TENANT.into(),
            grant: Grant::Unchecked,
        }
    }

    /// Whether this caller may do what `need` names.
    pub fn allows(&self, need: Permission) -> bool {
        match &self.grant {
            Grant::User(role) => role.allows(need),
            Grant::Token(scope) => scope.allows(need),
            Grant::Share { .. } => need == Permission::Read,
            Grant::Unchecked => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_no_person_ingests() {
        use Permission::*;
        let table = [
            (Role::Owner, [true, true, true, false]),
            (Role::Cook, [true, true, false, false]),
            (Role::Viewer, [true, false, false, false]),
        ];
        for (role, expected) in table {
            let got = [Read, Control, Manage, Ingest].map(|p| role.allows(p));
            assert_eq!(got, expected, "{role}");
        }
    }

    #[test]
    fn scopes_grant_only_what_they_name() {
        use Permission::*;
        let table = [
            (Scope::Read, [true, false, false, false]),
            (Scope::Control, [true, true, false, false]),
            (Scope::Ingest, [false, false, false, true]),
        ];
        for (scope, expected) in table {
            let got = [Read, Control, Manage, Ingest].map(|p| scope.allows(p));
            assert_eq!(got, expected, "{scope}");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for role in [Role::Owner, Role::Cook, Role::Viewer] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        for scope in [Scope::Read, Scope::Control, Scope::Ingest] {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        let err = "admin".parse::<Role>().expect_err("not a role");
        assert!(err.to_string().contains("owner, cook, viewer"), "{err}");
    }
}
