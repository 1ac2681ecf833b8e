//! The coordinator's Prometheus metrics (prefix `redis_ha_coordinator_`), served at
//! `/metrics` on `metrics_addr`. One instance per server, never global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use redis_ha_common::metrics::{registered, GrpcRequests};
use redis_ha_proto::v1::{Health, LinkState, Role, Topology};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub group: String,
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeRoleLabels {
    pub group: String,
    pub node: String,
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub group: String,
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Switch lags from tens of milliseconds to tens of seconds.
fn switch_lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

const ROLES: [&str; 3] = ["master", "replica", "unknown"];

fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Master) => "master",
        Ok(Role::Replica) => "replica",
        _ => "unknown",
    }
}

pub struct CoordinatorMetrics {
    pub grpc_requests: GrpcRequests,
    pub topology_version: Family<GroupLabels, Gauge>,
    pub config_epoch: Family<GroupLabels, Gauge>,
    pub failovers: Family<GroupLabels, Counter>,
    pub switch_lag: HistogramFamily<GroupLabels>,
    pub failover_in_progress: Family<GroupLabels, Gauge>,
    pub master_confirmed: Family<GroupLabels, Gauge>,
    pub split_brain_nodes: Family<GroupLabels, Gauge>,
    pub node_role: Family<NodeRoleLabels, Gauge>,
    pub node_up: Family<NodeLabels, Gauge>,
    pub node_lag_bytes: Family<NodeLabels, Gauge>,
    pub node_link_up: Family<NodeLabels, Gauge>,
    pub readers: Family<GroupLabels, Gauge>,
    pub node_serves_reads: Family<NodeLabels, Gauge>,
    pub sentinel_events: Family<EventLabels, Counter>,
    pub crash_failovers: Family<OutcomeLabels, Counter>,
    pub switchovers: Family<OutcomeLabels, Counter>,
    pub foreign_addresses: Family<ForeignLabels, Counter>,
    pub uncorroborated_claims: Family<ForeignLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForeignLabels {
    pub group: String,
    /// What named it: `node` (an agent's own Redis), `sentinel` (an agent's Sentinel),
    /// `sentinel-master` (the master a Sentinel names), `promotion` (a `+selected-slave`).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub group: String,
    /// `accepted`, `refused` (a Sentinel said no) or `unreachable` (no Sentinel answered).
    pub outcome: &'static str,
}

impl CoordinatorMetrics {
    /// The metrics, registered in a new registry.
    pub fn new() -> (Self, Registry) {
        let mut r = Registry::with_prefix("redis_ha_coordinator");
        let m = Self {
            grpc_requests: GrpcRequests::registered(
                &mut r,
                "redisha.v1.Coordinator requests answered, by method and gRPC status code (WatchTopology counts the opening of a stream)",
            ),
            topology_version: registered(
                &mut r,
                "topology_version",
                "Current topology version of the master group",
                Family::default(),
            ),
            config_epoch: registered(
                &mut r,
                "config_epoch",
                "Sentinel config epoch of the published master",
                Family::default(),
            ),
            failovers: registered(
                &mut r,
                "failovers",
                "Master changes published (from one master to another)",
                Family::default(),
            ),
            switch_lag: registered(
                &mut r,
                "switch_lag_seconds",
                "From the promoted node's role:master (as its agent saw it) to the topology naming it",
                Family::new_with_constructor(switch_lag_histogram),
            ),
            failover_in_progress: registered(
                &mut r,
                "failover_in_progress",
                "1 while an agent, a Sentinel or a pending promotion says a failover runs",
                Family::default(),
            ),
            master_confirmed: registered(
                &mut r,
                "master_confirmed",
                "1 when the master's own agent reports it fresh, reachable and role:master",
                Family::default(),
            ),
            split_brain_nodes: registered(
                &mut r,
                "split_brain_nodes",
                "Nodes claiming role:master that are not the master",
                Family::default(),
            ),
            node_role: registered(
                &mut r,
                "node_role",
                "1 for the role each node reports (master, replica, unknown), 0 for the others",
                Family::default(),
            ),
            node_up: registered(
                &mut r,
                "node_up",
                "1 when the node's agent reported it recently and it answers",
                Family::default(),
            ),
            node_lag_bytes: registered(
                &mut r,
                "node_replication_lag_bytes",
                "Replica only: bytes behind the master's replication offset",
                Family::default(),
            ),
            node_link_up: registered(
                &mut r,
                "node_master_link_up",
                "Replica only: 1 when its link to the master is up",
                Family::default(),
            ),
            sentinel_events: registered(
                &mut r,
                "sentinel_events",
                "Sentinel events received in agents' reports, by event type",
                Family::default(),
            ),
            crash_failovers: registered(
                &mut r,
                "crash_failovers",
                "Crash failovers requested from a Sentinel (master process gone, majority of agents cannot reach it), by outcome",
                Family::default(),
            ),
            switchovers: registered(
                &mut r,
                "switchovers",
                "Switchovers asked for (redis-ha switchover), by outcome: done, refused, aborted, unsettled",
                Family::default(),
            ),
            foreign_addresses: registered(
                &mut r,
                "foreign_addresses",
                "Addresses outside the configured node list named in agents' reports (ignored for deciding the master), by what named them",
                Family::default(),
            ),
            readers: registered(
                &mut r,
                "readers",
                "Replicas that serve the read endpoint (0: it falls back to the master)",
                Family::default(),
            ),
            node_serves_reads: registered(
                &mut r,
                "node_serves_reads",
                "1 while the node serves the read endpoint (a linked replica within the lag limits)",
                Family::default(),
            ),
            uncorroborated_claims: registered(
                &mut r,
                "uncorroborated_claims",
                "Reports claiming a new epoch that no other agent's Sentinel has reached (ignored for deciding the master), by kind: sentinel-view or promotion",
                Family::default(),
            ),
        };
        (m, r)
    }

    /// One answered request.
    pub fn request(&self, method: &'static str, code: tonic::Code) {
        self.grpc_requests.count(method, code);
    }

    /// The state a topology shows; called on every derivation (the measurements move).
    pub fn topology(&self, t: &Topology) {
        let group = GroupLabels {
            group: t.master_group.clone(),
        };
        self.topology_version
            .get_or_create(&group)
            .set(clamp(t.version));
        self.config_epoch
            .get_or_create(&group)
            .set(clamp(t.config_epoch));
        self.failover_in_progress
            .get_or_create(&group)
            .set(i64::from(t.failover_in_progress));
        self.master_confirmed
            .get_or_create(&group)
            .set(i64::from(t.master_confirmed));
        self.split_brain_nodes
            .get_or_create(&group)
            .set(clamp(t.split_brain.len() as u64));
        self.readers
            .get_or_create(&group)
            .set(clamp(t.readers.len() as u64));
        for n in &t.nodes {
            let node = NodeLabels {
                group: t.master_group.clone(),
                node: n.node.clone(),
            };
            let role = role_name(n.role);
            for r in ROLES {
                self.node_role
                    .get_or_create(&NodeRoleLabels {
                        group: t.master_group.clone(),
                        node: n.node.clone(),
                        role: r,
                    })
                    .set(i64::from(r == role));
            }
            self.node_up
                .get_or_create(&node)
                .set(i64::from(n.health == Health::Up as i32));
            let replica = n.role == Role::Replica as i32;
            self.node_lag_bytes.get_or_create(&node).set(if replica {
                clamp(n.lag_bytes)
            } else {
                0
            });
            self.node_link_up
                .get_or_create(&node)
                .set(i64::from(replica && n.link == LinkState::Up as i32));
            self.node_serves_reads
                .get_or_create(&node)
                .set(i64::from(n.serves_reads));
        }
    }

    /// A published version that names another master than the previous one.
    pub fn master_changed(&self, t: &Topology) {
        let group = GroupLabels {
            group: t.master_group.clone(),
        };
        self.failovers.get_or_create(&group).inc();
        if t.master_role_changed_at_ms > 0 && t.updated_at_ms >= t.master_role_changed_at_ms {
            let lag_ms = t.updated_at_ms - t.master_role_changed_at_ms;
            self.switch_lag
                .get_or_create(&group)
                .observe(lag_ms as f64 / 1000.0);
        }
    }

    pub fn crash_failover(&self, group: &str, outcome: &'static str) {
        self.crash_failovers
            .get_or_create(&OutcomeLabels {
                group: group.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn switchover(&self, group: &str, outcome: &'static str) {
        self.switchovers
            .get_or_create(&OutcomeLabels {
                group: group.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn uncorroborated_claim(&self, group: &str, kind: &'static str) {
        self.uncorroborated_claims
            .get_or_create(&ForeignLabels {
                group: group.to_owned(),
                kind,
            })
            .inc();
    }

    pub fn foreign_address(&self, group: &str, kind: &'static str) {
        self.foreign_addresses
            .get_or_create(&ForeignLabels {
                group: group.to_owned(),
                kind,
            })
            .inc();
    }

    pub fn sentinel_event(&self, group: &str, kind: &str) {
        self.sentinel_events
            .get_or_create(&EventLabels {
                group: group.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ha_proto::v1::NodeView;

    fn text(r: &Registry) -> String {
        redis_ha_common::metrics::encode(r)
    }

    #[test]
    fn topology_and_failover_series() {
        let (m, r) = CoordinatorMetrics::new();
        let t = Topology {
            master_group: "g".into(),
            version: 5,
            config_epoch: 2,
            master_address: "10.0.0.2:9002".into(),
            updated_at_ms: 10_500,
            master_role_changed_at_ms: 10_250,
            nodes: vec![
                NodeView {
                    node: "node-1".into(),
                    role: Role::Replica as i32,
                    health: Health::Up as i32,
                    link: LinkState::Up as i32,
                    lag_bytes: 42,
                    serves_reads: true,
                    ..Default::default()
                },
                NodeView {
                    node: "node-2".into(),
                    role: Role::Master as i32,
                    health: Health::Up as i32,
                    ..Default::default()
                },
            ],
            readers: vec!["10.0.0.1:9001".into()],
            ..Default::default()
        };
        m.topology(&t);
        m.master_changed(&t);
        m.request("Report", tonic::Code::Ok);
        m.sentinel_event("g", "+switch-master");
        m.foreign_address("g", "sentinel-master");
        m.uncorroborated_claim("g", "promotion");
        let s = text(&r);
        for line in [
            "redis_ha_coordinator_topology_version{group=\"g\"} 5",
            "redis_ha_coordinator_config_epoch{group=\"g\"} 2",
            "redis_ha_coordinator_failovers_total{group=\"g\"} 1",
            "redis_ha_coordinator_switch_lag_seconds_count{group=\"g\"} 1",
            "redis_ha_coordinator_switch_lag_seconds_sum{group=\"g\"} 0.25",
            "redis_ha_coordinator_node_role{group=\"g\",node=\"node-2\",role=\"master\"} 1",
            "redis_ha_coordinator_node_role{group=\"g\",node=\"node-2\",role=\"replica\"} 0",
            "redis_ha_coordinator_node_replication_lag_bytes{group=\"g\",node=\"node-1\"} 42",
            "redis_ha_coordinator_node_master_link_up{group=\"g\",node=\"node-1\"} 1",
            "redis_ha_coordinator_node_master_link_up{group=\"g\",node=\"node-2\"} 0",
            "redis_ha_coordinator_readers{group=\"g\"} 1",
            "redis_ha_coordinator_node_serves_reads{group=\"g\",node=\"node-1\"} 1",
            "redis_ha_coordinator_node_serves_reads{group=\"g\",node=\"node-2\"} 0",
            "redis_ha_coordinator_grpc_requests_total{method=\"Report\",code=\"OK\"} 1",
            "redis_ha_coordinator_sentinel_events_total{group=\"g\",kind=\"+switch-master\"} 1",
            "redis_ha_coordinator_foreign_addresses_total{group=\"g\",kind=\"sentinel-master\"} 1",
            "redis_ha_coordinator_uncorroborated_claims_total{group=\"g\",kind=\"promotion\"} 1",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
    }
}
