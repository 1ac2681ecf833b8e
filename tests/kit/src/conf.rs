//! The shipped configuration, rendered for a test: the templates `deploy/up.sh --local` renders
//! (`deploy/local/redis.conf.tmpl`, `deploy/local/sentinel.conf.tmpl`) and the HAProxy config
//! it runs (`deploy/haproxy/haproxy.cfg`), read from the repository at run time, never copied.
//!
//! The rendering rule is up.sh's `render`: every `@KEY@` replaced by its value, and an
//! unfilled placeholder is an error. A test sets only what the templates leave open (ports,
//! directories, the master, Sentinel timings, a password); everything else is what users run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use redis_ha_common::Secret;
use redis_ha_node::acl::{Credentials, User, UserPasswords};

/// The repository root (this crate lives in `tests/kit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `deploy/local/redis.conf.tmpl`.
pub fn redis_template() -> PathBuf {
    repo_root().join("deploy/local/redis.conf.tmpl")
}

/// `deploy/local/sentinel.conf.tmpl`.
pub fn sentinel_template() -> PathBuf {
    repo_root().join("deploy/local/sentinel.conf.tmpl")
}

/// `deploy/haproxy/haproxy.cfg` (configured through environment variables, not rendered).
pub fn haproxy_config() -> PathBuf {
    repo_root().join("deploy/haproxy/haproxy.cfg")
}

/// `deploy/haproxy/majority-guard.lua`, which the shipped configuration loads
/// (`REDIS_HA_GUARD_LUA`).
pub fn haproxy_guard() -> PathBuf {
    repo_root().join("deploy/haproxy/majority-guard.lua")
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{template}: placeholders left unfilled: {names:?}")]
    Unfilled {
        template: PathBuf,
        names: BTreeSet<String>,
    },
    #[error("{template}: no placeholder @{key}@ to fill (template and kit disagree)")]
    Unknown { template: PathBuf, key: String },
}

pub use redis_ha_common::template::placeholders;

/// Renders `template` as up.sh's `render` does: each `@KEY@` replaced by its value, the text
/// ending in one newline. Refuses a key the template lacks and a placeholder left unfilled.
pub fn render(template: &Path, values: &[(&str, String)]) -> Result<String, RenderError> {
    let text = std::fs::read_to_string(template).map_err(|source| RenderError::Read {
        path: template.to_owned(),
        source,
    })?;
    let wanted = placeholders(&text);
    // Stricter than the product: a value the template has no place for means the kit and
    // the template disagree.
    if let Some((key, _)) = values.iter().find(|(key, _)| !wanted.contains(*key)) {
        return Err(RenderError::Unknown {
            template: template.to_owned(),
            key: (*key).to_owned(),
        });
    }
    let out =
        redis_ha_common::template::fill(&text, values).map_err(|e| RenderError::Unfilled {
            template: template.to_owned(),
            names: e.names,
        })?;
    // `$(<file)` drops trailing newlines and `printf '%s\n'` adds one.
    Ok(format!("{}\n", out.trim_end_matches('\n')))
}

/// The values of `deploy/local/redis.conf.tmpl` for one node.
#[derive(Clone, Debug)]
pub struct RedisConf<'a> {
    /// Names the node in the file's header comment.
    pub node: &'a str,
    pub port: u16,
    pub data_dir: &'a Path,
    /// The master's port on 127.0.0.1, for a node that starts as a replica.
    pub replica_of: Option<u16>,
    /// The test's base password: ACL users on, rendered by the product's one rule
    /// ([`redis_ha_node::acl::render`]) with [`credentials`] (the `default` user's password is
    /// this one, each user's [`user_password`]).
    pub password: Option<&'a str>,
    /// The Sentinels' down-after: `min-replicas-max-lag` follows it, by the product's rule
    /// ([`redis_ha_node::durability`]), as `deploy/up.sh --local` fills it.
    pub down_after_ms: u64,
}

/// The password a test cluster with base password `base` gives the ACL user `user`.
pub fn user_password(base: &str, user: User) -> String {
    format!("{base}-{}", user.name())
}

/// The Sentinels' own password in a test cluster with base password `base`.
pub fn sentinel_password(base: &str) -> String {
    format!("{base}-sentinel-server")
}

/// Every ACL user's password for the base password `base` (the operator's is `base`).
pub fn credentials(base: &str) -> Credentials {
    Credentials {
        admin: Secret::new(base),
        users: User::ALL
            .into_iter()
            .map(|user| UserPasswords {
                user,
                passwords: vec![Secret::new(user_password(base, user))],
            })
            .collect(),
    }
}

/// The placeholders both templates have: the node (named in the header comment), the port, the
/// data directory.
fn instance_values(node: &str, port: u16, data_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("NODE", node.to_owned()),
        ("PORT", port.to_string()),
        ("DATA_DIR", data_dir.display().to_string()),
    ]
}

impl RedisConf<'_> {
    /// Every placeholder of the template with its value; panics on a down-after the rule
    /// refuses (a test's mistake).
    pub fn values(&self) -> Vec<(&'static str, String)> {
        let lag = redis_ha_node::durability::min_replicas_max_lag(self.down_after_ms)
            .unwrap_or_else(|e| panic!("{}: {e}", self.node));
        let mut values = instance_values(self.node, self.port, self.data_dir);
        values.extend([
            ("MIN_REPLICAS_MAX_LAG", lag.max_lag_s.to_string()),
            // What deploy/up.sh --local sets by default.
            ("MAXMEMORY", "256mb".to_owned()),
            (
                "REPLICAOF",
                self.replica_of
                    .map(|m| format!("replicaof 127.0.0.1 {m}"))
                    .unwrap_or_default(),
            ),
            (
                "AUTH",
                self.password
                    .map(|pw| {
                        // Without its last newline, as up.sh's `$(...)` captures it.
                        redis_ha_node::acl::render(&credentials(pw))
                            .unwrap_or_else(|e| panic!("{}: {e}", self.node))
                            .trim_end()
                            .to_owned()
                    })
                    .unwrap_or_default(),
            ),
        ]);
        values
    }

    /// The rendered file; panics (the template and the kit disagree) on any render error.
    pub fn render(&self) -> String {
        render(&redis_template(), &self.values()).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The values of `deploy/local/sentinel.conf.tmpl` for one Sentinel.
#[derive(Clone, Debug)]
pub struct SentinelConf<'a> {
    pub node: &'a str,
    pub port: u16,
    pub data_dir: &'a Path,
    /// The master group (`sentinel monitor <group> ...`).
    pub group: &'a str,
    /// The initial master's port on 127.0.0.1.
    pub master_port: u16,
    pub quorum: u32,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    /// The test's base password: the Sentinel's own password ([`sentinel_password`]) and
    /// its login to the nodes (the `sentinel` user), by [`redis_ha_node::acl::render_sentinel`].
    pub redis_password: Option<&'a str>,
}

impl SentinelConf<'_> {
    pub fn values(&self) -> Vec<(&'static str, String)> {
        let mut values = instance_values(self.node, self.port, self.data_dir);
        values.extend([
            ("GROUP", self.group.to_owned()),
            ("MASTER_PORT", self.master_port.to_string()),
            ("QUORUM", self.quorum.to_string()),
            ("DOWN_AFTER_MS", self.down_after_ms.to_string()),
            ("FAILOVER_TIMEOUT_MS", self.failover_timeout_ms.to_string()),
            (
                "AUTH_PASS",
                self.redis_password
                    .map(|pw| {
                        redis_ha_node::acl::render_sentinel(
                            self.group,
                            &Secret::new(sentinel_password(pw)),
                            &Secret::new(user_password(pw, User::Sentinel)),
                        )
                        .trim_end()
                        .to_owned()
                    })
                    .unwrap_or_default(),
            ),
        ]);
        values
    }

    pub fn render(&self) -> String {
        render(&sentinel_template(), &self.values()).unwrap_or_else(|e| panic!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(values: &[(&'static str, String)]) -> BTreeSet<String> {
        values.iter().map(|(k, _)| (*k).to_owned()).collect()
    }

    fn template_keys(path: &Path) -> BTreeSet<String> {
        placeholders(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}")))
    }

    fn redis_conf() -> RedisConf<'static> {
        RedisConf {
            node: "node-2",
            port: 20002,
            data_dir: Path::new("/d/node-2"),
            replica_of: Some(20001),
            password: Some("pw"),
            down_after_ms: 5000,
        }
    }

    fn sentinel_conf() -> SentinelConf<'static> {
        SentinelConf {
            node: "sentinel-1",
            port: 20011,
            data_dir: Path::new("/d/sentinel-1"),
            group: "g1",
            master_port: 20001,
            quorum: 2,
            down_after_ms: 1000,
            failover_timeout_ms: 10_000,
            redis_password: Some("pw"),
        }
    }

    #[test]
    fn the_kit_fills_exactly_the_placeholders_the_templates_contain() {
        assert_eq!(
            keys(&redis_conf().values()),
            template_keys(&redis_template())
        );
        assert_eq!(
            keys(&sentinel_conf().values()),
            template_keys(&sentinel_template())
        );
    }

    /// up.sh renders the same templates in bash: it must pass every placeholder too (its
    /// `render` dies on an unfilled one, but only when someone runs it).
    #[test]
    fn up_sh_fills_every_placeholder_of_the_templates() {
        let up = std::fs::read_to_string(repo_root().join("deploy/up.sh"))
            .unwrap_or_else(|e| panic!("{e}"));
        for (tmpl, path) in [
            ("redis.conf.tmpl", redis_template()),
            ("sentinel.conf.tmpl", sentinel_template()),
            // Not rendered by the kit (the harness configures the sidecars as structs), but
            // up.sh must fill them too (their node lists included).
            (
                "coordinator.toml.tmpl",
                repo_root().join("deploy/local/coordinator.toml.tmpl"),
            ),
            (
                "reloader.toml.tmpl",
                repo_root().join("deploy/local/reloader.toml.tmpl"),
            ),
        ] {
            let call_start = up
                .find(&format!("local/{tmpl}\""))
                .unwrap_or_else(|| panic!("up.sh does not render {tmpl}"));
            // The call runs to the first line that does not end in a backslash.
            let call: String = up[call_start..]
                .lines()
                .scan(true, |go_on, l| {
                    let this = *go_on;
                    *go_on = l.trim_end().ends_with('\\');
                    this.then_some(l)
                })
                .collect();
            for key in template_keys(&path) {
                assert!(
                    call.contains(&format!("\"{key}=")),
                    "up.sh renders {tmpl} without {key}: {call}"
                );
            }
        }
    }

    /// The kit renders as up.sh's own `render` (bash) does, byte for byte, for the same values.
    #[test]
    fn the_kit_renders_as_up_sh_does() {
        let up = repo_root().join("deploy/up.sh");
        let out = std::env::temp_dir().join(format!("redis-ha-kit-render-{}", std::process::id()));
        for (template, values) in [
            (redis_template(), redis_conf().values()),
            (sentinel_template(), sentinel_conf().values()),
        ] {
            let args: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            // up.sh's `render` function alone, taken from the script (the script itself would
            // start processes).
            let script = format!(
                "set -euo pipefail; rh_die() {{ echo \"$*\" >&2; exit 1; }}; \
                 eval \"$(sed -n '/^render() {{/,/^}}/p' '{}')\"; render \"$@\"",
                up.display()
            );
            let status = std::process::Command::new("bash")
                .arg("-c")
                .arg(&script)
                .arg("render")
                .arg(&template)
                .arg(&out)
                .args(&args)
                .status()
                .unwrap_or_else(|e| panic!("bash: {e}"));
            assert!(
                status.success(),
                "up.sh's render failed for {}",
                template.display()
            );
            let by_bash = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
            let by_kit = render(&template, &values).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(by_kit, by_bash, "{}", template.display());
        }
        let _ = std::fs::remove_file(&out);
    }

    #[test]
    fn the_shipped_redis_config_is_rendered_with_the_test_values() {
        let c = redis_conf().render();
        assert!(c.contains("port 20002\n"), "{c}");
        assert!(c.contains("dir \"/d/node-2\"\n"), "{c}");
        assert!(c.contains("replicaof 127.0.0.1 20001\n"), "{c}");
        assert!(
            c.contains(
                "requirepass \"pw\"\nmasteruser replication\nmasterauth \"pw-replication\"\n"
            ),
            "{c}"
        );
        assert!(c.contains("\nuser app reset on \">pw-app\" "), "{c}");
        // What users get, which the harness's own config used to lack.
        assert!(c.contains("min-replicas-to-write 1\n"), "{c}");
        // The lag follows down-after (5000 here).
        assert!(c.contains("\nmin-replicas-max-lag 3\n"), "{c}");
        assert!(c.contains("repl-diskless-sync-delay 0\n"), "{c}");
        // Every placeholder filled (the ACL rules' own `@` are categories: `+@all`).
        assert!(placeholders(&c).is_empty(), "{c}");
        let master = RedisConf {
            replica_of: None,
            password: None,
            down_after_ms: 1000,
            ..redis_conf()
        }
        .render();
        assert!(master.contains("\nmin-replicas-max-lag 1\n"), "{master}");
        assert!(!master.contains("replicaof"), "{master}");
        assert!(!master.contains("\nrequirepass"), "{master}");
    }

    #[test]
    fn the_shipped_sentinel_config_is_rendered_with_the_test_values() {
        let c = sentinel_conf().render();
        let monitor = c
            .find("sentinel monitor g1 127.0.0.1 20001 2\n")
            .unwrap_or_else(|| panic!("{c}"));
        let down = c
            .find("sentinel down-after-milliseconds g1 1000\n")
            .unwrap_or_else(|| panic!("{c}"));
        assert!(monitor < down, "{c}");
        assert!(c.contains("sentinel failover-timeout g1 10000\n"), "{c}");
        assert!(c.contains("sentinel auth-user g1 sentinel\n"), "{c}");
        assert!(c.contains("sentinel auth-pass g1 \"pw-sentinel\"\n"), "{c}");
        assert!(c.contains("requirepass \"pw-sentinel-server\"\n"), "{c}");
        let auth = c.find("sentinel auth-pass").unwrap_or_default();
        assert!(monitor < auth, "auth-pass names a monitored group: {c}");
    }

    #[test]
    fn unfilled_and_unknown_placeholders_are_refused() {
        let dir = std::env::temp_dir().join(format!("redis-ha-kit-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let t = dir.join("t.tmpl");
        std::fs::write(&t, "port @PORT@\nuser@host is not one\n@REPLICAOF@\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            placeholders("port @PORT@\nuser@host @x@ @@\n@REPLICAOF@"),
            BTreeSet::from(["PORT".to_owned(), "REPLICAOF".to_owned()])
        );
        let e = render(&t, &[("PORT", "1".into())]).unwrap_err();
        assert!(matches!(e, RenderError::Unfilled { .. }), "{e}");
        let e = render(&t, &[("PORT", "1".into()), ("NOPE", String::new())]).unwrap_err();
        assert!(matches!(e, RenderError::Unknown { .. }), "{e}");
        let ok = render(&t, &[("PORT", "1".into()), ("REPLICAOF", String::new())])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok, "port 1\nuser@host is not one\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
