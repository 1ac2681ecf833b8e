//! Passwords read from files (Docker secrets), never from the command line, never logged.

use std::fmt;
use std::path::Path;

use crate::config::ConfigError;

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Reads a secret from `path`; the trailing newline editors add is dropped.
    /// `key` names the configuration key for the error message.
    pub fn from_file(key: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(key, path.display().to_string(), format!("cannot read: {e}"))
        })?;
        let value = raw.trim_end_matches(['\r', '\n']).to_owned();
        if value.is_empty() {
            return Err(ConfigError::invalid(
                key,
                path.display().to_string(),
                "the file is empty",
            ));
        }
        Ok(Self(value))
    }

    /// A secret already in memory (generated, or read by a caller that checked its file).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads the secret when a path is configured.
    pub fn from_optional_file(key: &str, path: Option<&Path>) -> Result<Option<Self>, ConfigError> {
        path.map(|p| Self::from_file(key, p)).transpose()
    }

    /// The secret itself, for the protocol that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_trims_and_redacts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let s = Secret::from_file("redis_password_file", &p).unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert!(!format!("{s:?} {s}").contains("s3cret"));
    }

    #[test]
    fn missing_file_names_key_and_path() {
        let e = Secret::from_file("redis_password_file", Path::new("/nonexistent/pw"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("redis_password_file") && e.contains("/nonexistent/pw"),
            "{e}"
        );
    }
}
