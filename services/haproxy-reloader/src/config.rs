//! Configuration: defaults < TOML file (`--config PATH`) < environment variables
//! `REDIS_HA_RELOADER_<KEY>` (lists in TOML syntax, e.g.
//! `REDIS_HA_RELOADER_SENTINELS='["10.0.0.1:19001","10.0.0.2:19002"]'`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis_ha_common::config::{check_nodes, NodeEntry};
use redis_ha_common::{load_config, ConfigError, HostPort, Secret};
use redis_ha_sentinel::same_node;
use redis_ha_tls::TlsSettings;
use serde::{Deserialize, Serialize};

use crate::runtime::RuntimeEndpoint;

pub const ENV_PREFIX: &str = "REDIS_HA_RELOADER_";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloaderConfig {
    /// The coordinator's gRPC URL (`http://host:port`). Empty: no coordinator, follow the
    /// Sentinels only.
    pub coordinator_url: String,
    /// The Sentinel master name of the group this HAProxy serves.
    pub master_group: String,
    /// HAProxy runtime API endpoints, one per HAProxy (or a `tcp:` name that resolves to every
    /// HAProxy task): `unix:/path`, `/path`, or `tcp:host:port`. Each is driven on its own.
    pub haproxy_runtime: Vec<String>,
    /// The HAProxy backend whose servers are the Redis nodes.
    pub backend: String,
    /// The HAProxy backend of the read endpoint (the same server names): the replicas the
    /// coordinator names as readers are ready there, or the master when there are none.
    /// Empty: no read endpoint is driven (a HAProxy configuration without one).
    pub read_backend: String,
    /// Node id → HAProxy server name, for nodes that do not follow the default rule
    /// `node-N` → `redis-N` (any other node id is used as the server name as it is).
    pub server_names: BTreeMap<String, String>,
    /// Sentinels to follow directly (`host:port`), so routing follows a failover while the
    /// coordinator is down. Empty: the coordinator is the only source.
    pub sentinels: Vec<HostPort>,
    /// File holding the Sentinels' password (`requirepass` of the Sentinels), if any.
    pub sentinel_password_file: Option<PathBuf>,
    /// How many Sentinels must name the same master at the same config epoch: a majority of
    /// `sentinels` at least, so that one Sentinel alone never moves the routing.
    pub sentinel_quorum: usize,
    /// The Sentinels' `failover-timeout` (milliseconds): a routing decision above the epoch a
    /// quorum of Sentinels names (an unconfirmed promotion, an epoch they never reached) is
    /// withdrawn once they have named their master for this long.
    pub failover_timeout_ms: u64,
    /// Read-back period: every HAProxy is checked this often and re-converged on drift; the
    /// Sentinels are polled this often too.
    pub resync_interval_ms: u64,
    /// Bound on each runtime API exchange, Sentinel query and coordinator connect.
    pub io_timeout_ms: u64,
    /// Send the commands of one step on one runtime API connection (`cmd1;cmd2`), rather than
    /// one connection per command.
    pub pipeline: bool,
    /// Longest wait between two attempts to reach the coordinator.
    pub reconnect_max_backoff_ms: u64,
    /// Where Prometheus scrapes `GET /metrics` (`ip:port`); empty disables the endpoint.
    pub metrics_addr: String,
    /// The group's nodes (`[[nodes]]` tables): no HAProxy server is ever readied on, or set
    /// to, an address outside this list, whatever the coordinator or the Sentinels say.
    /// Addresses are compared as written (case-insensitive host, IPv6 with or without
    /// brackets), not resolved: spell them as the coordinator's topology and the Sentinels
    /// do. Empty: every address is followed (the behaviour before the list; a warning at
    /// start).
    pub nodes: Vec<NodeConfig>,
    /// `[tls]`: the cluster CA and the reloader's certificate (`reloader`) and key, for the
    /// coordinator; `insecure = true`: plaintext gRPC. Unused without `coordinator_url`.
    pub tls: TlsSettings,
}

/// One configured node (`[[nodes]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's id (its agent's `node_id`), for the log.
    pub id: String,
    /// Its Redis address (`host:port`), as the coordinator and the Sentinels name it.
    pub redis: HostPort,
}

impl Default for ReloaderConfig {
    fn default() -> Self {
        Self {
            coordinator_url: "http://127.0.0.1:50051".into(),
            master_group: "redis-cluster".into(),
            haproxy_runtime: vec!["unix:/run/haproxy/admin.sock".into()],
            backend: "redis".into(),
            read_backend: "redis_read".into(),
            server_names: BTreeMap::new(),
            sentinels: Vec::new(),
            sentinel_password_file: None,
            sentinel_quorum: 2,
            failover_timeout_ms: 10_000,
            resync_interval_ms: 1000,
            io_timeout_ms: 1000,
            pipeline: true,
            reconnect_max_backoff_ms: 5000,
            metrics_addr: "0.0.0.0:9123".into(),
            nodes: Vec::new(),
            tls: TlsSettings::default(),
        }
    }
}

/// Names HAProxy accepts for backends and servers, and that need no escaping on the CLI.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl ReloaderConfig {
    /// Loads (defaults < file < environment) and validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let c: Self = load_config(path, ENV_PREFIX)?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.master_group.trim().is_empty() || self.master_group.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "master_group",
                &self.master_group,
                "must be a non-empty name without spaces",
            ));
        }
        if !valid_name(&self.backend) {
            return Err(ConfigError::invalid(
                "backend",
                &self.backend,
                "must be a HAProxy backend name (letters, digits, - _ . :)",
            ));
        }
        if !self.read_backend.is_empty()
            && (!valid_name(&self.read_backend) || self.read_backend == self.backend)
        {
            return Err(ConfigError::invalid(
                "read_backend",
                &self.read_backend,
                "must be a HAProxy backend name (letters, digits, - _ . :) other than `backend`, or empty",
            ));
        }
        for (node, server) in &self.server_names {
            if !valid_name(server) {
                return Err(ConfigError::invalid(
                    &format!("server_names.{node}"),
                    server,
                    "must be a HAProxy server name (letters, digits, - _ . :)",
                ));
            }
        }
        if self.haproxy_runtime.is_empty() {
            return Err(ConfigError::invalid(
                "haproxy_runtime",
                "[]",
                "at least one HAProxy runtime API endpoint is needed",
            ));
        }
        self.runtime_endpoints()?;
        if !self.coordinator_url.is_empty() {
            let ok = (self.coordinator_url.starts_with("http://")
                || self.coordinator_url.starts_with("https://"))
                && self
                    .coordinator_url
                    .parse::<tonic::transport::Uri>()
                    .is_ok();
            if !ok {
                return Err(ConfigError::invalid(
                    "coordinator_url",
                    &self.coordinator_url,
                    "expected http://host:port (or empty to follow the Sentinels only)",
                ));
            }
        }
        if !self.coordinator_url.is_empty() {
            self.tls.validate()?;
        }
        if self.coordinator_url.is_empty() && self.sentinels.is_empty() {
            return Err(ConfigError::invalid(
                "sentinels",
                "[]",
                "with no coordinator_url, the Sentinels are the only source: list them",
            ));
        }
        let majority = self.sentinels.len() / 2 + 1;
        if !self.sentinels.is_empty()
            && (self.sentinel_quorum < majority || self.sentinel_quorum > self.sentinels.len())
        {
            return Err(ConfigError::invalid(
                "sentinel_quorum",
                self.sentinel_quorum.to_string(),
                format!(
                    "must be between a majority ({majority}) and the {} sentinels listed",
                    self.sentinels.len()
                ),
            ));
        }
        if self.failover_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "failover_timeout_ms",
                "0",
                "must be > 0 (the Sentinels' failover-timeout)",
            ));
        }
        if self.resync_interval_ms < 50 {
            return Err(ConfigError::invalid(
                "resync_interval_ms",
                self.resync_interval_ms.to_string(),
                "must be at least 50",
            ));
        }
        if self.io_timeout_ms < 10 {
            return Err(ConfigError::invalid(
                "io_timeout_ms",
                self.io_timeout_ms.to_string(),
                "must be at least 10",
            ));
        }
        if self.reconnect_max_backoff_ms < 100 {
            return Err(ConfigError::invalid(
                "reconnect_max_backoff_ms",
                self.reconnect_max_backoff_ms.to_string(),
                "must be at least 100",
            ));
        }
        self.sentinel_password()?;
        self.metrics_socket_addr()?;
        self.validate_nodes()?;
        Ok(())
    }

    /// The `nodes` rule ([`check_nodes`]): ids and Redis addresses distinct.
    fn validate_nodes(&self) -> Result<(), ConfigError> {
        let entries: Vec<NodeEntry<'_>> = self
            .nodes
            .iter()
            .map(|n| NodeEntry {
                id: &n.id,
                addresses: vec![("redis", &n.redis)],
            })
            .collect();
        check_nodes(&entries, same_node)
    }

    /// The configured nodes' Redis addresses (empty: no restriction).
    pub fn node_addresses(&self) -> Vec<HostPort> {
        self.nodes.iter().map(|n| n.redis.clone()).collect()
    }

    /// The metrics endpoint's address, `None` when disabled.
    pub fn metrics_socket_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        redis_ha_common::metrics::parse_metrics_addr("metrics_addr", &self.metrics_addr)
    }

    pub fn runtime_endpoints(&self) -> Result<Vec<RuntimeEndpoint>, ConfigError> {
        self.haproxy_runtime
            .iter()
            .map(|s| {
                s.parse::<RuntimeEndpoint>()
                    .map_err(|e| ConfigError::invalid("haproxy_runtime", s, e.to_string()))
            })
            .collect()
    }

    /// Reads the Sentinel password file, if one is configured.
    pub fn sentinel_password(&self) -> Result<Option<Secret>, ConfigError> {
        Secret::from_optional_file(
            "sentinel_password_file",
            self.sentinel_password_file.as_deref(),
        )
    }

    pub fn failover_timeout(&self) -> Duration {
        Duration::from_millis(self.failover_timeout_ms)
    }

    pub fn resync_interval(&self) -> Duration {
        Duration::from_millis(self.resync_interval_ms)
    }

    pub fn io_timeout(&self) -> Duration {
        Duration::from_millis(self.io_timeout_ms)
    }

    pub fn reconnect_max_backoff(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_backoff_ms)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    /// The defaults with plaintext gRPC (TLS needs files these tests do not make).
    fn plain() -> ReloaderConfig {
        ReloaderConfig {
            tls: TlsSettings::insecure(),
            ..ReloaderConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid() {
        plain().validate().unwrap();
    }

    #[test]
    fn metrics_addr_defaults_on_and_empty_disables() {
        let on = plain();
        assert_eq!(
            on.metrics_socket_addr().unwrap(),
            Some("0.0.0.0:9123".parse().unwrap())
        );
        let off = ReloaderConfig {
            metrics_addr: String::new(),
            ..plain()
        };
        assert_eq!(off.metrics_socket_addr().unwrap(), None);
    }

    #[test]
    fn file_and_env_layers() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REDIS_HA_RELOADER_TLS__INSECURE", "true");
            jail.create_file(
                "r.toml",
                r#"
                master_group = "orders"
                haproxy_runtime = ["unix:/tmp/a.sock", "tcp:tasks.haproxy:9999"]
                sentinels = ["10.0.0.1:19001", "10.0.0.2:19002", "10.0.0.3:19003"]
                [server_names]
                "db-a" = "srv-a"
                "#,
            )?;
            jail.set_env("REDIS_HA_RELOADER_SENTINEL_QUORUM", "3");
            jail.set_env("REDIS_HA_RELOADER_COORDINATOR_URL", "");
            let c = ReloaderConfig::load(Some(Path::new("r.toml"))).unwrap();
            assert_eq!(c.master_group, "orders");
            assert_eq!(c.sentinel_quorum, 3);
            assert_eq!(c.sentinels.len(), 3);
            assert_eq!(c.runtime_endpoints().unwrap().len(), 2);
            assert_eq!(
                c.server_names.get("db-a").map(String::as_str),
                Some("srv-a")
            );
            assert!(c.coordinator_url.is_empty());
            Ok(())
        });
    }

    #[test]
    fn lists_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REDIS_HA_RELOADER_TLS__INSECURE", "true");
            jail.set_env(
                "REDIS_HA_RELOADER_HAPROXY_RUNTIME",
                r#"["unix:/a.sock", "tcp:10.0.0.5:9999"]"#,
            );
            jail.set_env(
                "REDIS_HA_RELOADER_SENTINELS",
                r#"["redis-1:19001", "redis-2:19002"]"#,
            );
            let c = ReloaderConfig::load(None).unwrap();
            assert_eq!(c.haproxy_runtime.len(), 2);
            assert_eq!(c.sentinels[1], HostPort::new("redis-2", 19002));
            Ok(())
        });
    }

    #[test]
    fn refusals_name_the_key() {
        // Each case: the key and the value the refusal must name, and the change to the
        // defaults.
        type Change = fn(&mut ReloaderConfig);
        let cases: [(&str, &str, Change); 13] = [
            ("haproxy_runtime", "haproxy:9999", |c| {
                c.haproxy_runtime = vec!["haproxy:9999".into()];
            }),
            ("haproxy_runtime", "[]", |c| c.haproxy_runtime = vec![]),
            ("backend", "red is", |c| c.backend = "red is".into()),
            ("read_backend", "read me", |c| {
                c.read_backend = "read me".into()
            }),
            ("read_backend", "redis", |c| c.read_backend = "redis".into()),
            ("sentinels", "[]", |c| c.coordinator_url = String::new()),
            ("sentinel_quorum", "2", |c| {
                c.sentinels = vec![HostPort::new("a", 1)];
                c.sentinel_quorum = 2;
            }),
            // One Sentinel of three must never move the routing alone.
            ("sentinel_quorum", "majority (2)", |c| {
                c.sentinels = (1..=3).map(|i| HostPort::new("a", i)).collect();
                c.sentinel_quorum = 1;
            }),
            ("failover_timeout_ms", "0", |c| c.failover_timeout_ms = 0),
            ("coordinator_url", "coordinator:50051", |c| {
                c.coordinator_url = "coordinator:50051".into();
            }),
            ("resync_interval_ms", "1", |c| c.resync_interval_ms = 1),
            ("sentinel_password_file", "/nonexistent/pw", |c| {
                c.sentinel_password_file = Some("/nonexistent/pw".into());
            }),
            ("metrics_addr", "everywhere", |c| {
                c.metrics_addr = "everywhere".into();
            }),
        ];
        for (key, value, change) in cases {
            let mut c = plain();
            change(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(value), "{key} = {value}: {e}");
        }
    }

    #[test]
    fn unknown_key_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REDIS_HA_RELOADER_TLS__INSECURE", "true");
            jail.create_file("r.toml", "haproxy_runtimes = []")?;
            let e = ReloaderConfig::load(Some(Path::new("r.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("haproxy_runtimes"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn nodes_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REDIS_HA_RELOADER_TLS__INSECURE", "true");
            jail.create_file(
                "r.toml",
                r#"
                [[nodes]]
                id = "node-1"
                redis = "redis-1:9001"
                [[nodes]]
                id = "node-2"
                redis = "redis-2:9002"
                "#,
            )?;
            let c = ReloaderConfig::load(Some(Path::new("r.toml"))).unwrap();
            assert_eq!(
                c.node_addresses(),
                [
                    HostPort::new("redis-1", 9001),
                    HostPort::new("redis-2", 9002)
                ]
            );
            jail.set_env(
                "REDIS_HA_RELOADER_NODES",
                r#"[{id="a", redis="10.0.0.1:9001"}]"#,
            );
            let c = ReloaderConfig::load(Some(Path::new("r.toml"))).unwrap();
            assert_eq!(c.node_addresses(), [HostPort::new("10.0.0.1", 9001)]);
            Ok(())
        });
        assert!(plain().nodes.is_empty());
    }

    #[test]
    fn node_refusals_name_the_key() {
        let node = |id: &str, redis: &str| NodeConfig {
            id: id.into(),
            redis: redis.parse().unwrap(),
        };
        for (key, value, nodes) in [
            ("nodes[0].id", "", vec![node("", "a:1")]),
            ("nodes[1].id", "n", vec![node("n", "a:1"), node("n", "b:1")]),
            (
                "nodes[1].redis",
                "A:1",
                vec![node("n", "a:1"), node("m", "A:1")],
            ),
        ] {
            let c = ReloaderConfig { nodes, ..plain() };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(value), "{key} = {value}: {e}");
        }
    }

    /// Every shipped configuration runs the restricted mode: the swarm stack's file, the
    /// example and the template `deploy/up.sh --local` renders list the three nodes.
    #[test]
    fn shipped_configurations_list_the_nodes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for file in [
            "deploy/stack/config/reloader.toml",
            "deploy/haproxy/redis-ha-reloader.example.toml",
        ] {
            // The stack's file reads the password from a Docker secret: its nodes are
            // checked alone.
            let c: ReloaderConfig =
                load_config(Some(&root.join(file)), "REDIS_HA_RELOADER_TEST_UNUSED_").unwrap();
            c.validate_nodes().unwrap();
            assert_eq!(
                c.node_addresses(),
                [
                    HostPort::new("redis-1", 9001),
                    HostPort::new("redis-2", 9002),
                    HostPort::new("redis-3", 9003)
                ],
                "{file}"
            );
        }

        // With the certificates `deploy/up.sh --local` creates (the same code).
        let certs = tempfile::tempdir().unwrap();
        redis_ha_tls::issue::create(
            certs.path(),
            &redis_ha_tls::issue::Plan::for_nodes(&["node-1", "node-2", "node-3"]),
        )
        .unwrap();
        let template =
            std::fs::read_to_string(root.join("deploy/local/reloader.toml.tmpl")).unwrap();
        // The Sentinels' password file up.sh --local generates.
        let secrets = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("sentinel_password"), "pw\n").unwrap();
        let values: Vec<(&str, String)> = vec![
            ("SECRETS_DIR", secrets.path().display().to_string()),
            ("GRPC_PORT", "7000".into()),
            ("GROUP", "g".into()),
            ("RUN_DIR", "/tmp/run".into()),
            ("SENTINEL_1", "7021".into()),
            ("SENTINEL_2", "7022".into()),
            ("SENTINEL_3", "7023".into()),
            ("REDIS_1", "7011".into()),
            ("REDIS_2", "7012".into()),
            ("REDIS_3", "7013".into()),
            ("METRICS_PORT", "7002".into()),
            ("TLS_DIR", certs.path().display().to_string()),
        ];
        let text = redis_ha_common::template::fill(&template, &values).unwrap();
        let path = certs.path().join("reloader.toml");
        std::fs::write(&path, text).unwrap();
        let local: ReloaderConfig =
            load_config(Some(&path), "REDIS_HA_RELOADER_TEST_UNUSED_").unwrap();
        local.validate().unwrap();
        assert_eq!(local.node_addresses()[1], HostPort::new("127.0.0.1", 7012));
    }
}
