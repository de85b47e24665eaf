//! [`Secret`]: the one type for every password and token in Emberline.
//!
//! A secret never shows in `Debug` output, so it never reaches a log line or a panic
//! message by accident; reading its value takes an explicit [`Secret::expose`]. In
//! configuration it is written as a plain string, and [`Secret::from_env`] and
//! [`Secret::from_file`] read the forms the config files offer beside it
//! (`password_env`, `password_file`, `tokens_file`).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A password or token: redacted in `Debug`, read only through [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it (a sign-in, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (an unset secret in a config file).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of environment variable `var`, or a message naming it.
    pub fn from_env(var: &str) -> Result<Self, String> {
        std::env::var(var)
            .map(Self)
            .map_err(|_| format!("environment variable {var} is not set"))
    }

    /// The contents of `path` without its trailing newline, or a message naming the file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        std::fs::read_to_string(path)
            .map(|s| Self(s.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| format!("reading {}: {e}", path.display()))
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"***\"");
        assert_eq!(format!("{:?}", Some(&s)), "Some(\"***\")");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn reads_as_a_plain_string_in_config() {
        let s: Secret = serde_json::from_str("\"p@ss\"").expect("a string");
        assert_eq!(s.expose(), "p@ss");
        assert_eq!(serde_json::to_string(&s).expect("serializes"), "\"p@ss\"");
    }

    #[test]
    fn from_file_drops_the_trailing_newline_and_names_a_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\r\n").expect("write");
        assert_eq!(Secret::from_file(&path).expect("reads").expose(), "s3cret");
        let missing = dir.path().join("nope");
        let err = Secret::from_file(&missing).expect_err("missing");
        assert!(err.contains("nope"), "{err}");
        let err = Secret::from_env("EMBERLINE_TEST_SURELY_UNSET_VAR").expect_err("unset");
        assert!(err.contains("EMBERLINE_TEST_SURELY_UNSET_VAR"), "{err}");
    }
}
