//! Each user's own preferences (°C or °F, light or dark), so that every browser and phone
//! they sign in on shows the same. Kept per tenant and user; not secret.

use serde::{Deserialize, Serialize};

use crate::{SettingsError, SettingsStore, document_error};

/// One user's preferences.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPreferences {
    /// Whose tenant.
    pub tenant: String,
    /// The user (or API token) name.
    pub user: String,
    /// `C` or `F`; empty: not chosen.
    #[serde(default)]
    pub unit: String,
    /// `light` or `dark`; empty: not chosen.
    #[serde(default)]
    pub theme: String,
    /// When they were last changed, epoch ms.
    pub updated_at_ms: i64,
}

impl UserPreferences {
    /// Preferences a request asks for, checked.
    pub fn checked(
        tenant: &str,
        user: &str,
        unit: &str,
        theme: &str,
        now_ms: i64,
    ) -> Result<Self, SettingsError> {
        if !matches!(unit, "" | "C" | "F") {
            return Err(SettingsError::Invalid(format!(
                "unit: {unit:?} is not C or F"
            )));
        }
        if !matches!(theme, "" | "light" | "dark") {
            return Err(SettingsError::Invalid(format!(
                "theme: {theme:?} is not light or dark"
            )));
        }
        Ok(Self {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            unit: unit.to_owned(),
            theme: theme.to_owned(),
            updated_at_ms: now_ms,
        })
    }

    /// The key they are kept under.
    pub fn key(&self) -> String {
        key(&self.tenant, &self.user)
    }
}

/// The key a user's preferences are kept under.
pub fn key(tenant: &str, user: &str) -> String {
    format!("{tenant}\u{1f}{user}")
}

impl SettingsStore {
    /// The preferences of `user` in `tenant` (nothing chosen when none are kept).
    pub fn preferences(&self, tenant: &str, user: &str) -> UserPreferences {
        self.current()
            .ok()
            .and_then(|doc| doc.preferences.get(&key(tenant, user)).cloned())
            .unwrap_or_else(|| UserPreferences {
                tenant: tenant.to_owned(),
                user: user.to_owned(),
                ..Default::default()
            })
    }

    /// Saves the preferences of `user` in `tenant`, checked.
    pub async fn set_preferences(
        &self,
        tenant: &str,
        user: &str,
        unit: &str,
        theme: &str,
        now_ms: i64,
    ) -> Result<UserPreferences, SettingsError> {
        let p = UserPreferences::checked(tenant, user, unit, theme, now_ms)?;
        let kept = p.clone();
        self.doc
            .update(now_ms, |doc| {
                doc.preferences.insert(kept.key(), kept.clone());
                Ok::<_, SettingsError>(())
            })
            .await
            .map_err(document_error)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_values_are_kept() {
        let p = UserPreferences::checked("default", "pat", "F", "dark", 1).expect("valid");
        assert_eq!((p.unit.as_str(), p.theme.as_str()), ("F", "dark"));
        UserPreferences::checked("default", "pat", "", "", 1).expect("nothing chosen");
        let e = UserPreferences::checked("default", "pat", "K", "", 1).expect_err("kelvin");
        assert!(e.to_string().starts_with("unit:"), "{e}");
        let e = UserPreferences::checked("default", "pat", "C", "blue", 1).expect_err("blue");
        assert!(e.to_string().starts_with("theme:"), "{e}");
        assert_ne!(key("a", "b/c"), key("a/b", "c"), "keys cannot collide");
    }
}
