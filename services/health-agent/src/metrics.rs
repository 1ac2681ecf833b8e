//! The agent's Prometheus metrics (prefix `redis_ha_agent_`, labels `node` and `group` on every
//! series), served at `/metrics` on `metrics_addr`. One instance per agent, never global.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis_ha_common::metrics::GrpcRequests;
use redis_ha_proto::v1::{LinkState, RedisStatus, Role, SentinelStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    pub replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

const ROLES: [&str; 3] = ["master", "replica", "unknown"];

pub struct AgentMetrics {
    pub redis_up: Gauge,
    pub redis_role: Family<RoleLabels, Gauge>,
    pub master_link_up: Gauge,
    pub repl_offset: Gauge,
    pub ping_seconds: Gauge<f64, AtomicU64>,
    pub replica_lag_bytes: Family<ReplicaLabels, Gauge>,
    pub replica_ack_lag_seconds: Family<ReplicaLabels, Gauge>,
    pub sentinel_up: Gauge,
    pub sentinel_config_epoch: Gauge,
    pub failover_in_progress: Gauge,
    pub sentinel_events: Family<KindLabels, Counter>,
    pub failovers: Counter,
    pub fencing_demotions: Counter,
    pub follows: Counter,
    pub hung_restarts: Counter,
    pub hung_restart_failures: Counter,
    pub grpc_requests: GrpcRequests,
}

impl AgentMetrics {
    /// The metrics of agent `node` in `group`, registered in a new registry.
    pub fn new(node: &str, group: &str) -> (Self, Registry) {
        let m = Self {
            redis_up: Gauge::default(),
            redis_role: Family::default(),
            master_link_up: Gauge::default(),
            repl_offset: Gauge::default(),
            ping_seconds: Gauge::default(),
            replica_lag_bytes: Family::default(),
            replica_ack_lag_seconds: Family::default(),
            sentinel_up: Gauge::default(),
            sentinel_config_epoch: Gauge::default(),
            failover_in_progress: Gauge::default(),
            sentinel_events: Family::default(),
            failovers: Counter::default(),
            fencing_demotions: Counter::default(),
            follows: Counter::default(),
            hung_restarts: Counter::default(),
            hung_restart_failures: Counter::default(),
            grpc_requests: GrpcRequests::default(),
        };
        let labels = [
            (Cow::Borrowed("node"), Cow::Owned(node.to_owned())),
            (Cow::Borrowed("group"), Cow::Owned(group.to_owned())),
        ];
        let mut r = Registry::with_prefix_and_labels("redis_ha_agent", labels.into_iter());
        r.register(
            "redis_up",
            "1 when the node answered the last poll",
            m.redis_up.clone(),
        );
        r.register(
            "redis_role",
            "1 for the role the node reports (master, replica, unknown), 0 for the others",
            m.redis_role.clone(),
        );
        r.register(
            "redis_master_link_up",
            "Replica only: 1 when its link to the master is up",
            m.master_link_up.clone(),
        );
        r.register(
            "redis_repl_offset",
            "The node's replication offset (master_repl_offset or slave_repl_offset)",
            m.repl_offset.clone(),
        );
        r.register(
            "redis_ping_seconds",
            "PING round trip of the last poll",
            m.ping_seconds.clone(),
        );
        r.register(
            "replica_lag_bytes",
            "Master only: how many bytes each connected replica is behind",
            m.replica_lag_bytes.clone(),
        );
        r.register(
            "replica_ack_lag_seconds",
            "Master only: seconds since each connected replica's last ack",
            m.replica_ack_lag_seconds.clone(),
        );
        r.register(
            "sentinel_up",
            "1 when the Sentinel beside the node answered the last poll",
            m.sentinel_up.clone(),
        );
        r.register(
            "sentinel_config_epoch",
            "Config epoch of the master the Sentinel names",
            m.sentinel_config_epoch.clone(),
        );
        r.register(
            "failover_in_progress",
            "1 while the agent believes a failover runs (fast ROLE polling)",
            m.failover_in_progress.clone(),
        );
        r.register(
            "sentinel_events",
            "Sentinel events received for the group, by event type",
            m.sentinel_events.clone(),
        );
        r.register(
            "failovers",
            "Failovers of the group this agent's Sentinel announced (+switch-master)",
            m.failovers.clone(),
        );
        r.register(
            "fencing_demotions",
            "Times this agent demoted its node (a stray master) to a replica",
            m.fencing_demotions.clone(),
        );
        r.register(
            "follow",
            "Times this agent re-pointed its replica at a promoted master before Sentinel did",
            m.follows.clone(),
        );
        r.register(
            "hung_restarts",
            "Times this agent restarted its hung node's container through Docker",
            m.hung_restarts.clone(),
        );
        r.register(
            "hung_restart_failures",
            "Restarts of the hung node's container that failed (Docker unreachable, no container, error)",
            m.hung_restart_failures.clone(),
        );
        m.grpc_requests.register(
            &mut r,
            "Reports sent to the coordinator, by method and gRPC status code",
        );
        (m, r)
    }

    /// The node's state after a poll.
    pub fn redis(&self, r: &RedisStatus) {
        self.redis_up.set(i64::from(r.reachable));
        let role = if !r.reachable {
            "unknown"
        } else {
            match Role::try_from(r.role) {
                Ok(Role::Master) => "master",
                Ok(Role::Replica) => "replica",
                _ => "unknown",
            }
        };
        for name in ROLES {
            self.redis_role
                .get_or_create(&RoleLabels { role: name })
                .set(i64::from(name == role));
        }
        self.master_link_up.set(i64::from(
            role == "replica" && r.link == LinkState::Up as i32,
        ));
        if r.reachable {
            self.repl_offset.set(clamp(r.repl_offset));
            self.ping_seconds.set(r.ping_micros as f64 / 1e6);
        }
        // Only the replicas connected now: a gone replica's series would lie.
        self.replica_lag_bytes.clear();
        self.replica_ack_lag_seconds.clear();
        if role == "master" {
            for link in &r.replicas {
                let labels = ReplicaLabels {
                    replica: link.address.clone(),
                };
                self.replica_lag_bytes
                    .get_or_create(&labels)
                    .set(clamp(r.repl_offset.saturating_sub(link.offset)));
                self.replica_ack_lag_seconds
                    .get_or_create(&labels)
                    .set(clamp(link.lag_seconds));
            }
        }
    }

    /// The Sentinel's state after a poll.
    pub fn sentinel(&self, s: &SentinelStatus, failover_in_progress: bool) {
        self.sentinel_up.set(i64::from(s.reachable));
        if s.reachable {
            self.sentinel_config_epoch.set(clamp(s.config_epoch));
        }
        self.failover_in_progress
            .set(i64::from(failover_in_progress));
    }

    /// One Sentinel event of the group.
    pub fn event(&self, kind: &str) {
        self.sentinel_events
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
        if kind == "+switch-master" {
            self.failovers.inc();
        }
    }

    pub fn report(&self, code: tonic::Code) {
        self.grpc_requests.count("Report", code);
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ha_proto::v1::ReplicaLink;

    #[test]
    fn series_carry_node_and_group() {
        let (m, r) = AgentMetrics::new("node-1", "redis-cluster");
        m.redis(&RedisStatus {
            reachable: true,
            role: Role::Master as i32,
            repl_offset: 1000,
            ping_micros: 250,
            replicas: vec![ReplicaLink {
                address: "10.0.0.2:9002".into(),
                offset: 900,
                lag_seconds: 1,
                ..Default::default()
            }],
            ..Default::default()
        });
        m.event("+sdown");
        m.event("+switch-master");
        m.report(tonic::Code::Ok);
        m.report(tonic::Code::Unavailable);
        m.hung_restarts.inc();
        m.follows.inc();
        let s = redis_ha_common::metrics::encode(&r);
        let l = "node=\"node-1\",group=\"redis-cluster\"";
        for line in [
            format!("redis_ha_agent_redis_up{{{l}}} 1"),
            format!("redis_ha_agent_redis_role{{{l},role=\"master\"}} 1"),
            format!("redis_ha_agent_redis_role{{{l},role=\"replica\"}} 0"),
            format!("redis_ha_agent_redis_master_link_up{{{l}}} 0"),
            format!("redis_ha_agent_redis_ping_seconds{{{l}}} 0.00025"),
            format!("redis_ha_agent_replica_lag_bytes{{{l},replica=\"10.0.0.2:9002\"}} 100"),
            format!("redis_ha_agent_sentinel_events_total{{{l},kind=\"+switch-master\"}} 1"),
            format!("redis_ha_agent_failovers_total{{{l}}} 1"),
            format!("redis_ha_agent_hung_restarts_total{{{l}}} 1"),
            format!("redis_ha_agent_follow_total{{{l}}} 1"),
            format!("redis_ha_agent_hung_restart_failures_total{{{l}}} 0"),
            format!("redis_ha_agent_grpc_requests_total{{{l},method=\"Report\",code=\"UNAVAILABLE\"}} 1"),
        ] {
            assert!(s.lines().any(|x| x == line), "missing {line:?} in\n{s}");
        }

        // A dead node: unknown role, its replicas no longer listed.
        m.redis(&RedisStatus::default());
        let s = redis_ha_common::metrics::encode(&r);
        assert!(s.contains(&format!(
            "redis_ha_agent_redis_role{{{l},role=\"unknown\"}} 1"
        )));
        assert!(!s.contains("replica=\"10.0.0.2:9002\""), "{s}");
    }
}
