//! The coordinator's configuration: defaults < TOML file (`--config PATH`) < environment
//! variables `REDIS_HA_COORDINATOR_<KEY>`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis_ha_common::config::{check_nodes, NodeEntry};
use redis_ha_common::{load_config, ConfigError, HostPort, Secret};
use redis_ha_sentinel::same_node;
use redis_ha_tls::TlsSettings;
use serde::{Deserialize, Serialize};

use crate::limits::{history_len, Limits, EVENT_MAX_BYTES};
use crate::topology::NodeList;

/// Prefix of the environment variables that override the file, e.g. `REDIS_HA_COORDINATOR_LISTEN_ADDR`.
pub const ENV_PREFIX: &str = "REDIS_HA_COORDINATOR_";

/// Everything the coordinator can be told. Flat, so every key maps to one environment variable.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// Address the gRPC server listens on (`ip:port`; `[::]:50051` for IPv6).
    pub listen_addr: String,
    /// The master group (Sentinel master name) that always exists, empty until agents report.
    /// Other groups appear when an agent reports them.
    pub master_group: String,
    /// An agent silent for longer than this (milliseconds) is marked UNKNOWN, and its report no
    /// longer counts when deciding the master.
    pub stale_after_ms: u64,
    /// How many events (Sentinel events, master changes, health changes ...) are kept per group.
    pub event_history: usize,
    /// The most each group's event history may take, in bytes: it keeps at most
    /// `event_history_bytes / 4096` events (every event is cut to fit 4 KiB).
    pub event_history_bytes: usize,
    /// Largest gRPC message accepted, in bytes; a bigger one is refused with OUT_OF_RANGE.
    pub max_message_bytes: usize,
    /// Largest report held per agent (encoded, without its events), in bytes; a bigger one is
    /// refused with OUT_OF_RANGE.
    pub max_report_bytes: usize,
    /// Master groups at most (the configured one included); reports creating more are
    /// refused with RESOURCE_EXHAUSTED. With a node list only `master_group` is served.
    pub max_groups: usize,
    /// Distinct agent ids per group at most when no node list is configured (with one, only
    /// its ids may report); more are refused with RESOURCE_EXHAUSTED.
    pub max_agents_per_group: usize,
    /// Open `WatchTopology` streams at most (all clients together); more are refused with
    /// RESOURCE_EXHAUSTED. Each holds only the newest topology, never a queue.
    pub max_watchers: usize,
    /// HTTP/2 streams (calls) at once per client connection.
    pub max_concurrent_streams: u32,
    /// Requests served at once per client connection; more wait.
    pub concurrency_limit_per_connection: usize,
    /// File holding the Sentinels' password (`requirepass` of the Sentinels), used by the
    /// `Failover` command. None: the Sentinels need no password.
    pub sentinel_password_file: Option<PathBuf>,
    /// The coordinator's Redis ACL user (`coordinator`, README "Redis and Sentinel access"),
    /// used by the switchover only. None: the `default` user.
    pub redis_user: Option<String>,
    /// File holding that user's password. None: the nodes need no password.
    pub redis_password_file: Option<PathBuf>,
    /// Timeout of each connect and command to a Sentinel (milliseconds).
    pub io_timeout_ms: u64,
    /// Where Prometheus scrapes `GET /metrics` (`ip:port`); empty disables the endpoint.
    pub metrics_addr: String,
    /// Crash failover: when the master's own agent sees its process gone (refused, or its
    /// container died) and a majority of agents cannot reach it, ask a Sentinel for the
    /// failover at once instead of waiting for its down-after (see the README).
    pub crash_failover: bool,
    /// The Sentinels' `failover-timeout` (milliseconds): a master or epoch the coordinator
    /// published that a quorum of Sentinels contradicts (names a lower epoch) for this long is
    /// withdrawn, down to theirs. Set it to the Sentinels' value.
    pub failover_timeout_ms: u64,
    /// The read endpoint: a replica serves reads while it is at most this many bytes behind
    /// the master's offset (it comes back within half of it).
    pub read_max_lag_bytes: u64,
    /// The read endpoint: a replica serves reads while its last acknowledgement, as the master
    /// reports it (`lag=`, whole seconds; replicas acknowledge every second), is at most this
    /// old (it comes back within half of it).
    pub read_max_lag_seconds: u64,
    /// The group's nodes (`[[nodes]]` tables): a master is only ever one of these, and the
    /// coordinator only asks (and sends the password to) the Sentinels listed here. Addresses
    /// are compared as written (case-insensitive host, IPv6 with or without brackets), not
    /// resolved: spell them as the agents and the Sentinels do. Empty: every reported
    /// address is accepted (the behaviour before the list; a warning at start).
    pub nodes: Vec<NodeConfig>,
    /// `[tls]`: the cluster CA, the coordinator's certificate and key. Clients must present a
    /// certificate the CA signed; `insecure = true` serves plaintext without authentication.
    pub tls: TlsSettings,
}

/// One configured node (`[[nodes]]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's id (its agent's `node_id`), for the log.
    pub id: String,
    /// Its Redis address (`host:port`), as its agent and the Sentinels name it.
    pub redis: HostPort,
    /// Its Sentinel's address (`host:port`), as its agent reports it.
    pub sentinel: HostPort,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            listen_addr: "0.0.0.0:50051".into(),
            master_group: "redis-cluster".into(),
            stale_after_ms: 3000,
            event_history: 256,
            event_history_bytes: 1024 * 1024,
            max_message_bytes: 256 * 1024,
            max_report_bytes: 16 * 1024,
            max_groups: 16,
            max_agents_per_group: 32,
            max_watchers: 256,
            max_concurrent_streams: 128,
            concurrency_limit_per_connection: 64,
            sentinel_password_file: None,
            redis_user: None,
            redis_password_file: None,
            io_timeout_ms: 2000,
            metrics_addr: "0.0.0.0:9122".into(),
            crash_failover: true,
            failover_timeout_ms: 10_000,
            read_max_lag_bytes: crate::readers::ReadLimits::default().max_lag_bytes,
            read_max_lag_seconds: crate::readers::ReadLimits::default().max_lag_seconds,
            nodes: Vec::new(),
            tls: TlsSettings::default(),
        }
    }
}

/// Bounds that keep a typo from turning into a coordinator that cannot work.
const MIN_MESSAGE_BYTES: usize = 4096;
const MAX_EVENT_HISTORY: usize = 1_000_000;
/// A report of three nodes is about 1 KiB.
const MIN_REPORT_BYTES: usize = 1024;

impl CoordinatorConfig {
    /// Loads defaults, then the optional TOML file, then `REDIS_HA_COORDINATOR_*` variables,
    /// and validates the result. Errors name the key and the value.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config: Self = load_config(path, ENV_PREFIX)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value (and that the password file is readable).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.socket_addr()?;
        if self.master_group.trim().is_empty() {
            return Err(ConfigError::invalid(
                "master_group",
                &self.master_group,
                "must not be empty",
            ));
        }
        if self.stale_after_ms == 0 {
            return Err(ConfigError::invalid("stale_after_ms", "0", "must be > 0"));
        }
        if self.failover_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "failover_timeout_ms",
                "0",
                "must be > 0 (the Sentinels' failover-timeout)",
            ));
        }
        if self.event_history == 0 || self.event_history > MAX_EVENT_HISTORY {
            return Err(ConfigError::invalid(
                "event_history",
                self.event_history.to_string(),
                format!("must be between 1 and {MAX_EVENT_HISTORY}"),
            ));
        }
        if self.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(ConfigError::invalid(
                "max_message_bytes",
                self.max_message_bytes.to_string(),
                format!("must be at least {MIN_MESSAGE_BYTES}"),
            ));
        }
        self.validate_bounds()?;
        if self.io_timeout_ms == 0 {
            return Err(ConfigError::invalid("io_timeout_ms", "0", "must be > 0"));
        }
        self.sentinel_password()?;
        self.redis_password()?;
        self.metrics_socket_addr()?;
        self.validate_nodes()?;
        self.tls.validate()?;
        Ok(())
    }

    /// The bounds on memory and work (issue #11 item 8): each at least what one real
    /// cluster needs.
    fn validate_bounds(&self) -> Result<(), ConfigError> {
        let at_least = |key: &str, value: usize, min: usize| {
            if value < min {
                Err(ConfigError::invalid(
                    key,
                    value.to_string(),
                    format!("must be at least {min}"),
                ))
            } else {
                Ok(())
            }
        };
        at_least(
            "event_history_bytes",
            self.event_history_bytes,
            EVENT_MAX_BYTES,
        )?;
        at_least("max_report_bytes", self.max_report_bytes, MIN_REPORT_BYTES)?;
        if self.max_report_bytes > self.max_message_bytes {
            return Err(ConfigError::invalid(
                "max_report_bytes",
                self.max_report_bytes.to_string(),
                format!(
                    "must not exceed max_message_bytes ({})",
                    self.max_message_bytes
                ),
            ));
        }
        at_least("max_groups", self.max_groups, 1)?;
        at_least("max_agents_per_group", self.max_agents_per_group, 1)?;
        at_least("max_watchers", self.max_watchers, 1)?;
        at_least(
            "max_concurrent_streams",
            usize::try_from(self.max_concurrent_streams).unwrap_or(usize::MAX),
            1,
        )?;
        at_least(
            "concurrency_limit_per_connection",
            self.concurrency_limit_per_connection,
            1,
        )?;
        Ok(())
    }

    /// The service's bounds on reports, groups and agents.
    pub fn limits(&self) -> Limits {
        Limits {
            max_groups: self.max_groups,
            max_agents_per_group: self.max_agents_per_group,
            max_report_bytes: self.max_report_bytes,
            node_ids: self.nodes.iter().map(|n| n.id.clone()).collect(),
            master_group: self.master_group.clone(),
        }
    }

    /// Events kept per group: `event_history`, within `event_history_bytes`.
    pub fn history_len(&self) -> usize {
        history_len(self.event_history, self.event_history_bytes)
    }

    /// The `nodes` rule ([`check_nodes`]): ids and Redis and Sentinel addresses distinct.
    fn validate_nodes(&self) -> Result<(), ConfigError> {
        let entries: Vec<NodeEntry<'_>> = self
            .nodes
            .iter()
            .map(|n| NodeEntry {
                id: &n.id,
                addresses: vec![("redis", &n.redis), ("sentinel", &n.sentinel)],
            })
            .collect();
        check_nodes(&entries, same_node)
    }

    /// The configured nodes, as the decision uses them (empty: no restriction).
    pub fn node_list(&self) -> NodeList {
        NodeList::with_owners(
            self.nodes
                .iter()
                .map(|n| (n.id.as_str(), &n.redis, &n.sentinel)),
        )
    }

    /// The metrics endpoint's address, `None` when disabled.
    pub fn metrics_socket_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        redis_ha_common::metrics::parse_metrics_addr("metrics_addr", &self.metrics_addr)
    }

    /// The listen address, parsed.
    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen_addr.trim().parse().map_err(|e| {
            ConfigError::invalid(
                "listen_addr",
                &self.listen_addr,
                format!("expected ip:port: {e}"),
            )
        })
    }

    /// The coordinator's Redis password, read from `redis_password_file` when set.
    pub fn redis_password(&self) -> Result<Option<Secret>, ConfigError> {
        Secret::from_optional_file("redis_password_file", self.redis_password_file.as_deref())
    }

    /// The Sentinels' password, read from `sentinel_password_file` when set.
    pub fn sentinel_password(&self) -> Result<Option<Secret>, ConfigError> {
        Secret::from_optional_file(
            "sentinel_password_file",
            self.sentinel_password_file.as_deref(),
        )
    }

    pub fn stale_after(&self) -> Duration {
        Duration::from_millis(self.stale_after_ms)
    }

    pub fn io_timeout(&self) -> Duration {
        Duration::from_millis(self.io_timeout_ms)
    }

    pub fn failover_timeout(&self) -> Duration {
        Duration::from_millis(self.failover_timeout_ms)
    }

    /// The read endpoint's lag limits.
    pub fn read_limits(&self) -> crate::readers::ReadLimits {
        crate::readers::ReadLimits {
            max_lag_bytes: self.read_max_lag_bytes,
            max_lag_seconds: self.read_max_lag_seconds,
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment's own error type
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        // TLS is on by default: its files must be configured (or insecure set).
        let e = CoordinatorConfig::default()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.ca_file"), "{e}");
        let c = CoordinatorConfig {
            tls: TlsSettings::insecure(),
            ..CoordinatorConfig::default()
        };
        c.validate().unwrap();
        assert_eq!(c.socket_addr().unwrap().port(), 50051);
    }

    #[test]
    fn refusals_name_the_key() {
        // Each case: the key and the value the refusal must name, and the change to the
        // defaults.
        type Change = fn(&mut CoordinatorConfig);
        let cases: [(&str, &str, Change); 7] = [
            ("listen_addr", "nowhere", |c| {
                c.listen_addr = "nowhere".into()
            }),
            ("master_group", " ", |c| c.master_group = " ".into()),
            ("stale_after_ms", "0", |c| c.stale_after_ms = 0),
            ("failover_timeout_ms", "0", |c| c.failover_timeout_ms = 0),
            ("max_message_bytes", "10", |c| c.max_message_bytes = 10),
            ("metrics_addr", "metrics:9122", |c| {
                c.metrics_addr = "metrics:9122".into();
            }),
            ("sentinel_password_file", "/nonexistent/sentinel-pw", |c| {
                c.sentinel_password_file = Some("/nonexistent/sentinel-pw".into());
            }),
        ];
        for (key, value, change) in cases {
            let mut c = CoordinatorConfig::default();
            change(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(value), "{key} = {value}: {e}");
        }
    }

    #[test]
    fn bound_refusals_name_the_key() {
        type Change = fn(&mut CoordinatorConfig);
        let cases: [(&str, &str, Change); 8] = [
            ("event_history_bytes", "4095", |c| {
                c.event_history_bytes = 4095;
            }),
            ("max_report_bytes", "1000", |c| c.max_report_bytes = 1000),
            ("max_report_bytes", "300000", |c| {
                c.max_report_bytes = 300_000
            }),
            ("max_groups", "0", |c| c.max_groups = 0),
            ("max_agents_per_group", "0", |c| c.max_agents_per_group = 0),
            ("max_watchers", "0", |c| c.max_watchers = 0),
            ("max_concurrent_streams", "0", |c| {
                c.max_concurrent_streams = 0;
            }),
            ("concurrency_limit_per_connection", "0", |c| {
                c.concurrency_limit_per_connection = 0;
            }),
        ];
        for (key, value, change) in cases {
            let mut c = CoordinatorConfig::default();
            change(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(value), "{key} = {value}: {e}");
        }
    }

    #[test]
    fn bounds_from_the_file_and_the_limits_they_give() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "master_group = \"g\"\nevent_history = 1000\nevent_history_bytes = 65536\nmax_groups = 3\nmax_agents_per_group = 5\nmax_report_bytes = 2048\nmax_watchers = 7\n[[nodes]]\nid = \"n1\"\nredis = \"r:1\"\nsentinel = \"s:1\"\n",
            )?;
            jail.set_env("REDIS_HA_COORDINATOR_MAX_CONCURRENT_STREAMS", "9");
            jail.set_env("REDIS_HA_COORDINATOR_TLS__INSECURE", "true");
            let c = CoordinatorConfig::load(Some(Path::new("c.toml"))).unwrap();
            // The bytes bound wins: 65536 / 4096.
            assert_eq!(c.history_len(), 16);
            assert_eq!(c.max_watchers, 7);
            assert_eq!(c.max_concurrent_streams, 9);
            assert_eq!(
                c.limits(),
                Limits {
                    max_groups: 3,
                    max_agents_per_group: 5,
                    max_report_bytes: 2048,
                    node_ids: vec!["n1".into()],
                    master_group: "g".into(),
                }
            );
            Ok(())
        });
        // The defaults keep the whole count.
        assert_eq!(CoordinatorConfig::default().history_len(), 256);
    }

    #[test]
    fn metrics_addr_defaults_on_and_empty_disables() {
        let on = CoordinatorConfig::default();
        assert_eq!(
            on.metrics_socket_addr().unwrap(),
            Some("0.0.0.0:9122".parse().unwrap())
        );
        let off = CoordinatorConfig {
            metrics_addr: String::new(),
            ..Default::default()
        };
        assert_eq!(off.metrics_socket_addr().unwrap(), None);
    }

    #[test]
    fn file_and_env_layers() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REDIS_HA_COORDINATOR_TLS__INSECURE", "true");
            jail.create_file(
                "c.toml",
                "listen_addr = \"127.0.0.1:6000\"\nstale_after_ms = 500",
            )?;
            jail.set_env("REDIS_HA_COORDINATOR_EVENT_HISTORY", "10");
            let c = CoordinatorConfig::load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!(c.listen_addr, "127.0.0.1:6000");
            assert_eq!(c.stale_after_ms, 500);
            assert_eq!(c.event_history, 10);
            assert_eq!(c.master_group, "redis-cluster");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "stale_after = 5")?;
            let e = CoordinatorConfig::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("stale_after"), "{e}");
            Ok(())
        });
    }

    fn node(id: &str, redis: &str, sentinel: &str) -> NodeConfig {
        NodeConfig {
            id: id.into(),
            redis: redis.parse().unwrap(),
            sentinel: sentinel.parse().unwrap(),
        }
    }

    #[test]
    fn nodes_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REDIS_HA_COORDINATOR_TLS__INSECURE", "true");
            jail.create_file(
                "c.toml",
                r#"
                master_group = "g"
                [[nodes]]
                id = "node-1"
                redis = "redis-1:9001"
                sentinel = "sentinel-1:19001"
                [[nodes]]
                id = "node-2"
                redis = "[::1]:9002"
                sentinel = "[::1]:19002"
                "#,
            )?;
            let c = CoordinatorConfig::load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!(
                c.nodes,
                [
                    node("node-1", "redis-1:9001", "sentinel-1:19001"),
                    node("node-2", "[::1]:9002", "[::1]:19002"),
                ]
            );
            let list = c.node_list();
            assert!(list.allows_redis("Redis-1:9001") && list.allows_redis("::1:9002"));
            assert!(list.allows_sentinel("sentinel-1:19001"));
            assert!(!list.allows_redis("127.0.0.1:9001"));

            jail.set_env(
                "REDIS_HA_COORDINATOR_NODES",
                r#"[{id="a", redis="10.0.0.1:9001", sentinel="10.0.0.1:19001"}]"#,
            );
            let c = CoordinatorConfig::load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!(c.nodes, [node("a", "10.0.0.1:9001", "10.0.0.1:19001")]);
            Ok(())
        });
    }

    #[test]
    fn no_nodes_means_no_restriction() {
        let c = CoordinatorConfig::default();
        assert!(c.nodes.is_empty());
        assert!(!c.node_list().is_restricted());
    }

    #[test]
    fn node_refusals_name_the_key() {
        let ok = || {
            vec![
                node("node-1", "redis-1:9001", "sentinel-1:19001"),
                node("node-2", "redis-2:9002", "sentinel-2:19002"),
            ]
        };
        type Change = fn(&mut Vec<NodeConfig>);
        let cases: [(&str, &str, Change); 4] = [
            ("nodes[1].id", " ", |n| n[1].id = " ".into()),
            ("nodes[1].id", "node-1", |n| n[1].id = "node-1".into()),
            // The same node spelled differently is still the same node.
            ("nodes[1].redis", "REDIS-1:9001", |n| {
                n[1].redis = "REDIS-1:9001".parse().unwrap();
            }),
            ("nodes[1].sentinel", "sentinel-1:19001", |n| {
                n[1].sentinel = "sentinel-1:19001".parse().unwrap();
            }),
        ];
        for (key, value, change) in cases {
            let mut c = CoordinatorConfig {
                nodes: ok(),
                tls: TlsSettings::insecure(),
                ..Default::default()
            };
            c.validate().unwrap();
            change(&mut c.nodes);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(value), "{key} = {value}: {e}");
        }
        // A bad address is refused when read, naming the key.
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[[nodes]]\nid = \"n\"\nredis = \"redis-1\"\nsentinel = \"s:1\"\n",
            )?;
            let e = CoordinatorConfig::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("nodes") && e.contains("redis-1"), "{e}");
            Ok(())
        });
    }

    /// Every shipped configuration runs the restricted mode: the swarm stack's file and the
    /// template `deploy/up.sh --local` renders list the three nodes.
    #[test]
    fn shipped_configurations_list_the_nodes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        // The stack's file reads the password from a Docker secret: its nodes are checked
        // alone.
        let stack: CoordinatorConfig = load_config(
            Some(&root.join("deploy/stack/config/coordinator.toml")),
            "REDIS_HA_COORDINATOR_TEST_UNUSED_",
        )
        .unwrap();
        stack.validate_nodes().unwrap();
        assert_eq!(stack.nodes.len(), 3);
        assert!(stack.node_list().allows_redis("redis-2:9002"));
        assert!(stack.node_list().allows_sentinel("sentinel-3:19003"));

        let template =
            std::fs::read_to_string(root.join("deploy/local/coordinator.toml.tmpl")).unwrap();
        // The Sentinels' password file up.sh --local generates.
        let secrets = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("sentinel_password"), "pw\n").unwrap();
        // And its Redis user's (the switchover).
        std::fs::write(secrets.path().join("redis_coordinator_password"), "pw\n").unwrap();
        // With the certificates `deploy/up.sh --local` creates (the same code).
        let dir = tempfile::tempdir().unwrap();
        redis_ha_tls::issue::create(
            dir.path(),
            &redis_ha_tls::issue::Plan::for_nodes(&["node-1", "node-2", "node-3"]),
        )
        .unwrap();
        let values: Vec<(&str, String)> = vec![
            ("SECRETS_DIR", secrets.path().display().to_string()),
            ("GRPC_PORT", "7000".into()),
            ("GROUP", "g".into()),
            ("METRICS_PORT", "7001".into()),
            ("REDIS_1", "7011".into()),
            ("REDIS_2", "7012".into()),
            ("REDIS_3", "7013".into()),
            ("SENTINEL_1", "7021".into()),
            ("SENTINEL_2", "7022".into()),
            ("SENTINEL_3", "7023".into()),
            ("TLS_DIR", dir.path().display().to_string()),
        ];
        let text = redis_ha_common::template::fill(&template, &values).unwrap();
        let path = dir.path().join("coordinator.toml");
        std::fs::write(&path, text).unwrap();
        let local: CoordinatorConfig =
            load_config(Some(&path), "REDIS_HA_COORDINATOR_TEST_UNUSED_").unwrap();
        local.validate().unwrap();
        assert_eq!(
            local.nodes[2],
            node("node-3", "127.0.0.1:7013", "127.0.0.1:7023")
        );
        assert!(!local.tls.insecure && !stack.tls.insecure);
        for c in [&local, &stack] {
            assert_eq!(c.redis_user.as_deref(), Some("coordinator"));
        }
        assert!(stack.tls.key_file.is_some());
    }
}
