//! The agent's configuration: defaults < TOML file < `REDIS_HA_AGENT_*` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis_ha_common::{load_config, ConfigError, HostPort, Secret};
use redis_ha_tls::{ClientTls, Identity, TlsSettings};

use crate::hung::{HungSettings, RestartTarget};
use serde::{Deserialize, Serialize};

/// Environment variable prefix: `REDIS_HA_AGENT_` + key uppercased.
pub const ENV_PREFIX: &str = "REDIS_HA_AGENT_";

/// Configuration of one health agent (one per Redis node). Holds paths, never secrets,
/// so `Debug` is safe to log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Stable name of this node and its agent, e.g. `node-1`; the coordinator keys reports by it.
    pub node_id: String,
    /// Sentinel master group (master name) the node belongs to, e.g. `redis-cluster`.
    pub master_group: String,
    /// Where the agent connects to its Redis node (`host:port`).
    pub redis_addr: HostPort,
    /// The address the Sentinels know this node by (`host:port`), used in reports and to
    /// recognise this node in Sentinel's answers. Unset: same as `redis_addr`.
    pub announce_addr: Option<HostPort>,
    /// The Sentinel beside this node (`host:port`): polled and subscribed to for events.
    pub sentinel_addr: HostPort,
    /// The coordinator's gRPC endpoint, `http://host:port` (or `https://`).
    pub coordinator_url: String,
    /// `[tls]`: the cluster CA and this agent's certificate (`agent.<node_id>`) and key, for
    /// the coordinator; `insecure = true`: plaintext gRPC.
    pub tls: TlsSettings,
    /// Heartbeat: how often Redis and Sentinel are polled at rest and a report is sent (ms).
    pub heartbeat_ms: u64,
    /// How often the node's `ROLE` is polled while a failover is in progress (ms).
    pub failover_poll_ms: u64,
    /// Timeout of any single connect or command, to Redis, Sentinel or the coordinator (ms).
    pub io_timeout_ms: u64,
    /// How long start-up waits for `redis_addr` and `sentinel_addr` to resolve (ms; 0 = check once).
    pub resolve_wait_ms: u64,
    /// A failover in progress that sees no end event is considered over after this long (ms).
    pub failover_timeout_ms: u64,
    /// The Redis ACL user the agent logs in as (`agent` on the stack: PING, ROLE, INFO,
    /// REPLICAOF). Unset: `default`.
    pub redis_user: Option<String>,
    /// File holding that user's Redis password. Unset: no AUTH.
    pub redis_password_file: Option<PathBuf>,
    /// File holding the Sentinel password (Sentinel's `requirepass`). Unset: no AUTH.
    pub sentinel_password_file: Option<PathBuf>,
    /// Demote this node (`REPLICAOF` the Sentinel's master) when it claims master while the
    /// Sentinel names another master.
    pub fencing: bool,
    /// How long that mismatch must last, outside any failover, before the node is demoted (ms).
    pub fencing_grace_ms: u64,
    /// Re-point this node (`REPLICAOF`) at a master the coordinator publishes as promoted, as
    /// soon as its own agent confirms `role:master` and this node's Sentinel has reached that
    /// epoch, instead of waiting about a second for Sentinel to do it: the promoted master
    /// accepts writes (`min-replicas-to-write`) only once a replica follows it.
    pub follow_promotions: bool,
    /// Where Prometheus scrapes `GET /metrics` (`ip:port`); empty disables the endpoint.
    pub metrics_addr: String,
    /// Restart this node's Redis container through the Docker API when it hangs (polls time
    /// out for `hung_after_ms`). Needs the Docker socket in the agent's container and the
    /// agent's user allowed to use it.
    pub hung_restart: bool,
    /// How long polls must keep timing out (a connect or command timeout, not a refused
    /// connection: a crash is the restart policy's business) before the restart (ms). Keep it
    /// above Sentinel's down-after plus a failover, so a hung master is failed over first.
    pub hung_after_ms: u64,
    /// The container (name or id) to restart. Empty: the running container on this host whose
    /// `com.docker.swarm.service.name` label is `docker_service`.
    pub docker_container: String,
    /// The swarm service of this node's Redis, e.g. `redis-ha_redis-1`; required when
    /// `hung_restart` is on and `docker_container` is empty.
    pub docker_service: String,
    /// No second restart attempt within this long of the last one (ms).
    pub hung_restart_cooldown_ms: u64,
    /// Hold a connection to the master the coordinator publishes (this node's own Redis when
    /// it is the master) and report at once when it closes, refuses or stops answering: the
    /// coordinator's crash failover counts these reports.
    pub crash_watch: bool,
    /// While the watched master does not answer, how often it is tried again (ms).
    pub crash_watch_retry_ms: u64,
    /// Follow this node's Redis container's `die` events through the Docker API (the same
    /// `docker_container` / `docker_service` as `hung_restart`): on a swarm a dead container
    /// refuses nothing (its address is simply gone), so its death is the crash evidence. Needs
    /// the Docker socket in the agent's container.
    pub docker_events: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            node_id: "node-1".into(),
            master_group: "redis-cluster".into(),
            redis_addr: HostPort::new("127.0.0.1", 9001),
            announce_addr: None,
            sentinel_addr: HostPort::new("127.0.0.1", 19001),
            coordinator_url: "http://127.0.0.1:50051".into(),
            tls: TlsSettings::default(),
            heartbeat_ms: 1000,
            failover_poll_ms: 10,
            io_timeout_ms: 1000,
            resolve_wait_ms: 5000,
            failover_timeout_ms: 20000,
            redis_user: None,
            redis_password_file: None,
            sentinel_password_file: None,
            fencing: true,
            fencing_grace_ms: 3000,
            follow_promotions: true,
            metrics_addr: "0.0.0.0:9121".into(),
            hung_restart: false,
            hung_after_ms: 10000,
            docker_container: String::new(),
            docker_service: String::new(),
            hung_restart_cooldown_ms: 60000,
            crash_watch: true,
            crash_watch_retry_ms: 100,
            docker_events: false,
        }
    }
}

/// The checked runtime settings, including the secrets read from their files.
/// `Debug` redacts the secrets.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub node_id: String,
    pub master_group: String,
    pub redis_addr: HostPort,
    /// `announce_addr`, or `redis_addr` when unset.
    pub announce_addr: HostPort,
    pub sentinel_addr: HostPort,
    pub coordinator_url: String,
    /// How the coordinator is reached (mutual TLS, or plaintext when insecure).
    pub coordinator_tls: ClientTls,
    pub heartbeat: Duration,
    pub failover_poll: Duration,
    pub io_timeout: Duration,
    pub failover_timeout: Duration,
    pub redis_user: Option<String>,
    pub redis_password: Option<Secret>,
    pub sentinel_password: Option<Secret>,
    pub fencing: bool,
    pub fencing_grace: Duration,
    pub follow_promotions: bool,
    /// The metrics endpoint's address; `None`: disabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Hung-node recovery (`hung_restart` and the keys after it).
    pub hung: HungSettings,
    /// The master watch; `None`: off.
    pub crash_watch: Option<Duration>,
    /// Whose Docker `die` events count as this node's crash; `None`: off.
    pub docker_events: Option<RestartTarget>,
}

impl AgentConfig {
    /// Loads defaults < `path` (TOML) < `REDIS_HA_AGENT_*` variables, then runs
    /// [`AgentConfig::validate`] (blocking: DNS and password files). Errors name key and value.
    pub fn load(path: Option<&Path>) -> Result<AgentConfig, ConfigError> {
        let config: AgentConfig = load_config(path, ENV_PREFIX)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what needs no I/O: names, numbers, the coordinator URL.
    pub fn check_shape(&self) -> Result<(), ConfigError> {
        if self.node_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "node_id",
                &self.node_id,
                "must not be empty",
            ));
        }
        if self.master_group.is_empty() || self.master_group.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "master_group",
                &self.master_group,
                "must be a non-empty name without spaces",
            ));
        }
        for (key, value) in [
            ("heartbeat_ms", self.heartbeat_ms),
            ("failover_poll_ms", self.failover_poll_ms),
            ("io_timeout_ms", self.io_timeout_ms),
            ("failover_timeout_ms", self.failover_timeout_ms),
            ("fencing_grace_ms", self.fencing_grace_ms),
            ("hung_after_ms", self.hung_after_ms),
            ("crash_watch_retry_ms", self.crash_watch_retry_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "0", "must be greater than 0"));
            }
        }
        check_url(&self.coordinator_url)?;
        redis_ha_common::metrics::parse_metrics_addr("metrics_addr", &self.metrics_addr)?;
        self.hung_settings()?;
        self.docker_target("docker_events", self.docker_events)?;
        Ok(())
    }

    /// The coordinator client's TLS; its certificate must name this agent's node
    /// (`agent.<node_id>`), since the coordinator takes its reports for that node only.
    fn coordinator_tls(&self) -> Result<ClientTls, ConfigError> {
        if let Some(who) = self.tls.identity()? {
            let node = self.node_id.trim();
            if Identity::agent(node).as_ref() != Some(&who) {
                return Err(ConfigError::invalid(
                    "tls.cert_file",
                    self.tls
                        .cert_file
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    format!(
                        "names {who}, not agent.{node}: the coordinator would refuse every report"
                    ),
                ));
            }
        }
        self.tls.client()
    }

    /// This node's Redis container, for `key` (a setting that needs it) when `enabled`.
    fn docker_target(
        &self,
        key: &str,
        enabled: bool,
    ) -> Result<Option<RestartTarget>, ConfigError> {
        let container = self.docker_container.trim();
        let service = self.docker_service.trim();
        if !enabled {
            Ok(None)
        } else if !container.is_empty() {
            Ok(Some(RestartTarget::Container(container.to_owned())))
        } else if !service.is_empty() {
            Ok(Some(RestartTarget::Service(service.to_owned())))
        } else {
            Err(ConfigError::invalid(
                "docker_service",
                service,
                format!("is required when {key} is on and docker_container is empty (the swarm service of this node's Redis, e.g. redis-ha_redis-1)"),
            ))
        }
    }

    fn hung_settings(&self) -> Result<HungSettings, ConfigError> {
        let target = self.docker_target("hung_restart", self.hung_restart)?;
        Ok(HungSettings {
            enabled: self.hung_restart,
            after: Duration::from_millis(self.hung_after_ms),
            cooldown: Duration::from_millis(self.hung_restart_cooldown_ms),
            target,
        })
    }

    /// Checks everything: the shape, that `redis_addr` and `sentinel_addr` resolve within
    /// `resolve_wait_ms`, that password files are readable; returns the runtime settings.
    /// Blocking (DNS, files): call it from `spawn_blocking` inside a runtime.
    pub fn validate(&self) -> Result<AgentSettings, ConfigError> {
        self.check_shape()?;
        let redis_password =
            Secret::from_optional_file("redis_password_file", self.redis_password_file.as_deref())?;
        let sentinel_password = Secret::from_optional_file(
            "sentinel_password_file",
            self.sentinel_password_file.as_deref(),
        )?;
        let wait = Duration::from_millis(self.resolve_wait_ms);
        self.redis_addr.check_resolves("redis_addr", wait)?;
        self.sentinel_addr.check_resolves("sentinel_addr", wait)?;
        Ok(AgentSettings {
            node_id: self.node_id.trim().to_owned(),
            master_group: self.master_group.clone(),
            redis_addr: self.redis_addr.clone(),
            announce_addr: self
                .announce_addr
                .clone()
                .unwrap_or_else(|| self.redis_addr.clone()),
            sentinel_addr: self.sentinel_addr.clone(),
            coordinator_url: self.coordinator_url.trim().to_owned(),
            coordinator_tls: self.coordinator_tls()?,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            failover_poll: Duration::from_millis(self.failover_poll_ms),
            io_timeout: Duration::from_millis(self.io_timeout_ms),
            failover_timeout: Duration::from_millis(self.failover_timeout_ms),
            redis_user: self
                .redis_user
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            redis_password,
            sentinel_password,
            fencing: self.fencing,
            fencing_grace: Duration::from_millis(self.fencing_grace_ms),
            follow_promotions: self.follow_promotions,
            metrics_addr: redis_ha_common::metrics::parse_metrics_addr(
                "metrics_addr",
                &self.metrics_addr,
            )?,
            hung: self.hung_settings()?,
            crash_watch: self
                .crash_watch
                .then(|| Duration::from_millis(self.crash_watch_retry_ms)),
            docker_events: self.docker_target("docker_events", self.docker_events)?,
        })
    }
}

fn check_url(url: &str) -> Result<(), ConfigError> {
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            ConfigError::invalid(
                "coordinator_url",
                url,
                "must start with http:// or https://",
            )
        })?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(ConfigError::invalid("coordinator_url", url, "has no host"));
    }
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| ConfigError::invalid("coordinator_url", url, e.to_string()))?;
    Ok(())
}

#[cfg(test)]
// figment::Jail's closures return figment's (large) error type: not ours to shrink.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    /// The defaults with plaintext gRPC (TLS needs files these tests do not make).
    fn plain() -> AgentConfig {
        AgentConfig {
            tls: TlsSettings::insecure(),
            ..AgentConfig::default()
        }
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        figment::Jail::expect_with(|jail| {
            // TLS is on by default and needs its files: without them, the refusal names them.
            let e = AgentConfig::load(None).unwrap_err().to_string();
            assert!(e.contains("tls.ca_file"), "{e}");
            // A nested key as an environment variable (`__` between table and key).
            jail.set_env("REDIS_HA_AGENT_TLS__INSECURE", "true");
            let c = AgentConfig::load(None).unwrap();
            assert_eq!(
                c,
                AgentConfig {
                    tls: TlsSettings::insecure(),
                    ..AgentConfig::default()
                }
            );
            assert_eq!(c.redis_addr.to_string(), "127.0.0.1:9001");
            assert_eq!(c.announce_addr, None);
            Ok(())
        });
    }

    #[test]
    fn file_and_env_override() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "agent.toml",
                "node_id = \"node-2\"\nredis_addr = \"localhost:9002\"\nannounce_addr = \"redis-2:9002\"\nheartbeat_ms = 500\nresolve_wait_ms = 0\n",
            )?;
            jail.set_env("REDIS_HA_AGENT_HEARTBEAT_MS", "250");
            jail.set_env("REDIS_HA_AGENT_FENCING", "false");
            jail.set_env("REDIS_HA_AGENT_TLS__INSECURE", "true");
            let c = AgentConfig::load(Some(Path::new("agent.toml"))).unwrap();
            assert_eq!(c.node_id, "node-2");
            assert_eq!(c.redis_addr, HostPort::new("localhost", 9002));
            // Only the addresses the agent connects to must resolve.
            assert_eq!(c.announce_addr, Some(HostPort::new("redis-2", 9002)));
            assert_eq!(c.heartbeat_ms, 250);
            assert!(!c.fencing);
            Ok(())
        });
    }

    #[test]
    fn errors_name_key_and_value() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REDIS_HA_AGENT_HEARTBEAT_MS", "0");
            let e = AgentConfig::load(None).unwrap_err().to_string();
            assert!(e.contains("heartbeat_ms") && e.contains('0'), "{e}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("REDIS_HA_AGENT_REDIS_ADDR", "nonsense");
            let e = AgentConfig::load(None).unwrap_err().to_string();
            assert!(e.contains("redis_addr") && e.contains("nonsense"), "{e}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("REDIS_HA_AGENT_COORDINATOR_URL", "127.0.0.1:50051");
            let e = AgentConfig::load(None).unwrap_err().to_string();
            assert!(
                e.contains("coordinator_url") && e.contains("127.0.0.1:50051"),
                "{e}"
            );
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("agent.toml", "heartbeat = 5\n")?;
            let e = AgentConfig::load(Some(Path::new("agent.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("heartbeat"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_certificate_must_name_this_node() {
        let dir = tempfile::tempdir().unwrap();
        let plan = redis_ha_tls::issue::Plan::for_nodes(&["node-1", "node-2"]);
        redis_ha_tls::issue::create(dir.path(), &plan).unwrap();
        let files = redis_ha_tls::issue::CertDir::new(dir.path());
        let node1 = Identity::agent("node-1").unwrap();
        let config = |node: &str, who: &Identity| AgentConfig {
            node_id: node.into(),
            tls: files.settings(who),
            resolve_wait_ms: 0,
            ..AgentConfig::default()
        };
        config("node-1", &node1).validate().unwrap();
        for (node, who) in [("node-2", node1.clone()), ("node-1", Identity::Operator)] {
            let e = config(node, &who).validate().unwrap_err().to_string();
            assert!(
                e.contains("tls.cert_file") && e.contains(&format!("agent.{node}")),
                "{e}"
            );
        }
    }

    #[test]
    fn validate_reads_passwords_and_defaults_announce() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let c = AgentConfig {
            redis_password_file: Some(pw.clone()),
            resolve_wait_ms: 0,
            ..plain()
        };
        let s = c.validate().unwrap();
        assert_eq!(s.announce_addr, c.redis_addr);
        assert_eq!(
            s.redis_password.as_ref().map(Secret::expose),
            Some("hunter2")
        );
        assert!(s.sentinel_password.is_none());
        assert!(!format!("{s:?}").contains("hunter2"));

        let missing = AgentConfig {
            sentinel_password_file: Some(dir.path().join("nope")),
            resolve_wait_ms: 0,
            ..plain()
        };
        let e = missing.validate().unwrap_err().to_string();
        assert!(e.contains("sentinel_password_file"), "{e}");
    }

    #[test]
    fn metrics_addr_defaults_on_and_empty_disables() {
        let c = AgentConfig {
            resolve_wait_ms: 0,
            ..plain()
        };
        assert_eq!(
            c.validate().unwrap().metrics_addr,
            Some("0.0.0.0:9121".parse().unwrap())
        );
        let off = AgentConfig {
            metrics_addr: String::new(),
            ..c.clone()
        };
        assert_eq!(off.validate().unwrap().metrics_addr, None);
        let bad = AgentConfig {
            metrics_addr: "9121".into(),
            ..c
        };
        let e = bad.check_shape().unwrap_err().to_string();
        assert!(e.contains("metrics_addr") && e.contains("9121"), "{e}");
    }

    #[test]
    fn validate_refuses_unresolvable_addresses() {
        let c = AgentConfig {
            sentinel_addr: HostPort::new("no-such-host.invalid", 19001),
            resolve_wait_ms: 0,
            ..plain()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("sentinel_addr") && e.contains("no-such-host.invalid"),
            "{e}"
        );
    }

    #[test]
    fn hung_restart_is_off_by_default_and_needs_a_target() {
        let c = AgentConfig {
            resolve_wait_ms: 0,
            ..plain()
        };
        let h = c.validate().unwrap().hung;
        assert!(!h.enabled);
        assert_eq!(h.target, None);
        assert_eq!(h.after, Duration::from_secs(10));
        assert_eq!(h.cooldown, Duration::from_secs(60));

        let on = AgentConfig {
            hung_restart: true,
            ..c.clone()
        };
        let e = on.check_shape().unwrap_err().to_string();
        assert!(e.contains("docker_service"), "{e}");

        let by_service = AgentConfig {
            docker_service: "redis-ha_redis-1".into(),
            ..on.clone()
        };
        assert_eq!(
            by_service.validate().unwrap().hung.target,
            Some(RestartTarget::Service("redis-ha_redis-1".into()))
        );
        let by_name = AgentConfig {
            docker_container: "redis-1".into(),
            ..by_service
        };
        assert_eq!(
            by_name.validate().unwrap().hung.target,
            Some(RestartTarget::Container("redis-1".into()))
        );

        let zero = AgentConfig {
            hung_after_ms: 0,
            ..c
        };
        let e = zero.check_shape().unwrap_err().to_string();
        assert!(e.contains("hung_after_ms"), "{e}");
    }
}
