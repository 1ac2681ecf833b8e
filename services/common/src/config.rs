//! Layered configuration: built-in defaults < TOML file (`--config PATH`) < environment
//! variables with a per-binary prefix (e.g. `REDIS_HA_AGENT_HEARTBEAT_MS=500`).
//!
//! Config structs use `#[serde(deny_unknown_fields)]`, so a misspelt key is refused
//! instead of silently ignored. Every error names the key, the value and where it came from.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0}")]
    Figment(String),
    #[error("config key `{key}` = {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub fn invalid(key: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    fn from_figment(err: figment::Error, env_prefix: &str) -> Self {
        let lines: Vec<String> = err.into_iter().map(|e| describe(e, env_prefix)).collect();
        Self::Figment(lines.join("; "))
    }
}

/// One figment error as "config key `k` (from SOURCE): what is wrong".
fn describe(e: figment::Error, env_prefix: &str) -> String {
    let key = e.path.join(".");
    let source = e.metadata.as_ref().map(|m| {
        let name = if m.name.contains("environment") && !e.path.is_empty() {
            // The exact variable, so the user knows what to unset.
            format!(
                "environment variable {env_prefix}{}",
                e.path.join("__").to_uppercase()
            )
        } else {
            m.name.to_string()
        };
        match &m.source {
            Some(src) => format!("{name} in {src}"),
            None => name,
        }
    });
    let what = e.kind.to_string();
    match (key.is_empty(), source) {
        (false, Some(src)) => format!("config key `{key}` (from {src}): {what}"),
        (false, None) => format!("config key `{key}`: {what}"),
        (true, Some(src)) => format!("configuration (from {src}): {what}"),
        (true, None) => format!("configuration: {what}"),
    }
}

/// One entry of a configured `nodes` list as [`check_nodes`] sees it: its id and its
/// addresses, each under its key (`redis`, `sentinel`, ...).
pub struct NodeEntry<'a> {
    pub id: &'a str,
    pub addresses: Vec<(&'static str, &'a crate::HostPort)>,
}

/// The rule of every `nodes` list: each id non-empty, and no two nodes sharing an id or an
/// address under the same key (`same` compares addresses, as the caller's decisions do); two
/// nodes at one address would make the list mean less than it says. Errors name
/// `nodes[i].<key>` and the node it repeats.
pub fn check_nodes(
    nodes: &[NodeEntry<'_>],
    same: impl Fn(&crate::HostPort, &crate::HostPort) -> bool,
) -> Result<(), ConfigError> {
    for (i, n) in nodes.iter().enumerate() {
        if n.id.trim().is_empty() {
            return Err(ConfigError::invalid(
                &format!("nodes[{i}].id"),
                n.id,
                "must not be empty",
            ));
        }
        for (j, m) in nodes.iter().enumerate().take(i) {
            let repeated = if n.id == m.id {
                Some(("id", n.id.to_owned()))
            } else {
                n.addresses
                    .iter()
                    .zip(&m.addresses)
                    .find(|((_, a), (_, b))| same(a, b))
                    .map(|((key, a), _)| (*key, a.to_string()))
            };
            if let Some((field, value)) = repeated {
                return Err(ConfigError::invalid(
                    &format!("nodes[{i}].{field}"),
                    value,
                    format!("the same as nodes[{j}].{field}: every node must be distinct"),
                ));
            }
        }
    }
    Ok(())
}

/// Loads `T` from its defaults, then the optional TOML file, then environment variables
/// starting with `env_prefix` (the rest of the name, lower-cased, is the key; `__`
/// separates nested tables).
pub fn load_config<T>(file: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    figment_for::<T>(file, env_prefix)?
        .extract()
        .map_err(|e| ConfigError::from_figment(e, env_prefix))
}

fn figment_for<T: Serialize + Default>(
    file: Option<&Path>,
    env_prefix: &str,
) -> Result<Figment, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                reason: "no such file".into(),
            });
        }
        fig = fig.merge(Toml::file(path));
    }
    Ok(fig.merge(Env::prefixed(env_prefix).split("__")))
}

#[cfg(test)]
// figment's Jail API fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        heartbeat_ms: u64,
        name: String,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                heartbeat_ms: 1000,
                name: "node-1".into(),
            }
        }
    }

    #[test]
    fn layers_defaults_file_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "heartbeat_ms = 500\nname = \"from-file\"")?;
            jail.set_env("DEMO_NAME", "from-env");
            let d: Demo = load_config(Some(Path::new("c.toml")), "DEMO_").unwrap();
            assert_eq!(
                d,
                Demo {
                    heartbeat_ms: 500,
                    name: "from-env".into()
                }
            );
            Ok(())
        });
    }

    #[test]
    fn wrong_type_names_key_value_and_source() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DEMO_HEARTBEAT_MS", "soon");
            let e = load_config::<Demo>(None, "DEMO_").unwrap_err().to_string();
            assert!(e.contains("heartbeat_ms"), "{e}");
            assert!(e.contains("soon"), "{e}");
            assert!(e.contains("DEMO_HEARTBEAT_MS"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "heartbeet_ms = 5")?;
            let e = load_config::<Demo>(Some(Path::new("c.toml")), "DEMO_")
                .unwrap_err()
                .to_string();
            assert!(e.contains("heartbeet_ms"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_refused() {
        let e = load_config::<Demo>(Some(Path::new("/nonexistent.toml")), "DEMO_")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent.toml"), "{e}");
    }
}
