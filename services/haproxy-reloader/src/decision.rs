//! Who should get the traffic, from either source (the coordinator's topology stream or the
//! Sentinels directly), and which of the two to believe.
//!
//! The rule: the highest Sentinel config epoch wins. A decision with a lower epoch than the one
//! applied is stale (a coordinator that lags, a Sentinel that has not heard of the failover) and
//! is ignored, so a correct state is never undone. At an equal epoch the coordinator's stream is
//! followed in order (it knows more: the node ids, confirmation by the node's own role); the
//! Sentinels' view at an equal epoch is taken only when nothing names a master or it agrees.

use std::fmt;

use redis_ha_common::HostPort;
use redis_ha_proto::v1::Topology;

/// Where a decision comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A topology from the coordinator's `WatchTopology` stream.
    Coordinator {
        version: u64,
        /// `Topology.master_source`: "sentinel-quorum", "promoted" or "none".
        master_source: String,
    },
    /// `SENTINEL MASTER` agreed by a quorum of Sentinels.
    Sentinel { agreeing: usize },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Coordinator {
                version,
                master_source,
            } => write!(f, "coordinator v{version} ({master_source})"),
            Self::Sentinel { agreeing } => write!(f, "sentinels ({agreeing} agreeing)"),
        }
    }
}

/// A node of the decision: its id when known, and its address as the Sentinels know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub node: Option<String>,
    pub address: HostPort,
}

/// The routing decision for one master group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub source: Source,
    pub config_epoch: u64,
    /// `None`: no master known (keep the current routing).
    pub master: Option<Target>,
    /// Every node known (for server addresses).
    pub nodes: Vec<Target>,
}

impl Decision {
    /// Same routing (master and addresses), whatever the source.
    pub fn same_routing(&self, other: &Decision) -> bool {
        self.config_epoch == other.config_epoch
            && self.master == other.master
            && self.nodes == other.nodes
    }

    pub fn master_address(&self) -> Option<&HostPort> {
        self.master.as_ref().map(|m| &m.address)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecisionError {
    #[error("topology v{version} for group {group:?}: master address {address:?}: {reason}")]
    BadMasterAddress {
        group: String,
        version: u64,
        address: String,
        reason: String,
    },
}

/// Reads a topology. Nodes with an unparseable address are left out (logged by the caller
/// through the returned list); an unparseable master address is an error.
pub fn from_topology(t: &Topology) -> Result<(Decision, Vec<String>), DecisionError> {
    let mut skipped = Vec::new();
    let master = if t.master_address.trim().is_empty() {
        None
    } else {
        let address: HostPort =
            t.master_address
                .parse()
                .map_err(
                    |e: redis_ha_common::addr::AddrError| DecisionError::BadMasterAddress {
                        group: t.master_group.clone(),
                        version: t.version,
                        address: t.master_address.clone(),
                        reason: e.to_string(),
                    },
                )?;
        Some(Target {
            node: (!t.master_node.is_empty()).then(|| t.master_node.clone()),
            address,
        })
    };
    let mut nodes = Vec::new();
    for n in &t.nodes {
        if n.address.is_empty() {
            continue;
        }
        match n.address.parse::<HostPort>() {
            Ok(address) => nodes.push(Target {
                node: (!n.node.is_empty()).then(|| n.node.clone()),
                address,
            }),
            Err(e) => skipped.push(format!("node {:?}: {e}", n.node)),
        }
    }
    Ok((
        Decision {
            source: Source::Coordinator {
                version: t.version,
                master_source: t.master_source.clone(),
            },
            config_epoch: t.config_epoch,
            master,
            nodes,
        },
        skipped,
    ))
}

/// What the arbiter did with an offered decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Taken; the routing changed.
    Changed,
    /// Taken (or equal); the routing is the same.
    Unchanged,
    /// Refused, with the reason.
    Ignored(String),
}

/// Keeps the decision in force.
#[derive(Debug, Default)]
pub struct Arbiter {
    current: Option<Decision>,
    /// The last node list the coordinator gave: Sentinel decisions name addresses only, this
    /// lets them be placed on the right server and keeps the other servers' addresses.
    known_nodes: Vec<Target>,
}

impl Arbiter {
    pub fn current(&self) -> Option<&Decision> {
        self.current.as_ref()
    }

    pub fn offer(&mut self, mut d: Decision) -> Verdict {
        if matches!(d.source, Source::Coordinator { .. }) && !d.nodes.is_empty() {
            self.known_nodes = d.nodes.clone();
        }
        if matches!(d.source, Source::Sentinel { .. }) && d.nodes.is_empty() {
            d.nodes = self.known_nodes.clone();
            // The address the Sentinels name tells which node it is.
            if let Some(m) = d.master.as_mut() {
                if m.node.is_none() {
                    m.node = d
                        .nodes
                        .iter()
                        .find(|n| n.address == m.address)
                        .and_then(|n| n.node.clone());
                }
            }
        }
        let Some(cur) = &self.current else {
            self.current = Some(d);
            return Verdict::Changed;
        };
        if d.config_epoch < cur.config_epoch {
            return Verdict::Ignored(format!(
                "stale: epoch {} < applied epoch {}",
                d.config_epoch, cur.config_epoch
            ));
        }
        if d.config_epoch == cur.config_epoch && matches!(d.source, Source::Sentinel { .. }) {
            match (cur.master_address(), d.master_address()) {
                (_, None) => return Verdict::Unchanged,
                (None, Some(_)) => {}
                (Some(a), Some(b)) if a == b => {
                    if matches!(cur.source, Source::Coordinator { .. }) {
                        // Agrees with the coordinator, which knows more: keep its decision.
                        return Verdict::Unchanged;
                    }
                }
                (Some(a), Some(b)) => {
                    return Verdict::Ignored(format!(
                        "sentinels name {b} at epoch {}, the applied decision ({}) names {a}",
                        d.config_epoch, cur.source
                    ))
                }
            }
        }
        let changed = !cur.same_routing(&d);
        self.current = Some(d);
        if changed {
            Verdict::Changed
        } else {
            Verdict::Unchanged
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ha_proto::v1::NodeView;

    fn topo(version: u64, epoch: u64, master: &str) -> Topology {
        Topology {
            master_group: "redis-cluster".into(),
            version,
            master_address: master.into(),
            master_node: match master {
                "" => String::new(),
                m => format!("node-{}", &m[m.len() - 1..]),
            },
            config_epoch: epoch,
            master_source: "sentinel-quorum".into(),
            nodes: (1..=3)
                .map(|n| NodeView {
                    node: format!("node-{n}"),
                    address: format!("10.0.0.{n}:900{n}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn coord(version: u64, epoch: u64, master: &str) -> Decision {
        from_topology(&topo(version, epoch, master)).unwrap().0
    }

    fn sentinel(epoch: u64, master: &str) -> Decision {
        Decision {
            source: Source::Sentinel { agreeing: 2 },
            config_epoch: epoch,
            master: Some(Target {
                node: None,
                address: master.parse().unwrap(),
            }),
            nodes: vec![],
        }
    }

    #[test]
    fn reads_a_topology() {
        let (d, skipped) = from_topology(&topo(7, 2, "10.0.0.2:9002")).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(d.config_epoch, 2);
        assert_eq!(
            d.master,
            Some(Target {
                node: Some("node-2".into()),
                address: HostPort::new("10.0.0.2", 9002)
            })
        );
        assert_eq!(d.nodes.len(), 3);
        let (none, _) = from_topology(&topo(8, 2, "")).unwrap();
        assert_eq!(none.master, None);
        let mut bad = topo(9, 2, "10.0.0.2:9002");
        bad.master_address = "nonsense".into();
        assert!(from_topology(&bad).is_err());
        let mut bad_node = topo(9, 2, "10.0.0.2:9002");
        bad_node.nodes[0].address = "x".into();
        let (d, skipped) = from_topology(&bad_node).unwrap();
        assert_eq!((d.nodes.len(), skipped.len()), (2, 1));
    }

    #[test]
    fn lower_epoch_is_ignored() {
        let mut a = Arbiter::default();
        assert_eq!(a.offer(coord(1, 1, "10.0.0.1:9001")), Verdict::Changed);
        assert_eq!(a.offer(coord(2, 2, "10.0.0.2:9002")), Verdict::Changed);
        // A stale stream (e.g. a restarted coordinator that has not caught up).
        assert!(matches!(
            a.offer(coord(1, 1, "10.0.0.1:9001")),
            Verdict::Ignored(_)
        ));
        assert!(matches!(
            a.offer(sentinel(1, "10.0.0.1:9001")),
            Verdict::Ignored(_)
        ));
        assert_eq!(
            a.current().unwrap().master_address(),
            Some(&HostPort::new("10.0.0.2", 9002))
        );
    }

    #[test]
    fn coordinator_down_sentinels_take_over_with_a_higher_epoch() {
        let mut a = Arbiter::default();
        a.offer(coord(5, 1, "10.0.0.1:9001"));
        assert_eq!(a.offer(sentinel(2, "10.0.0.3:9003")), Verdict::Changed);
        let cur = a.current().unwrap();
        // Placed through the coordinator's last node list.
        assert_eq!(cur.master.as_ref().unwrap().node.as_deref(), Some("node-3"));
        assert_eq!(cur.nodes.len(), 3);
        // The coordinator comes back with its old view: ignored.
        assert!(matches!(
            a.offer(coord(6, 1, "10.0.0.1:9001")),
            Verdict::Ignored(_)
        ));
        // It catches up.
        assert_eq!(a.offer(coord(7, 2, "10.0.0.3:9003")), Verdict::Unchanged);
    }

    #[test]
    fn sentinels_at_equal_epoch_do_not_override_the_coordinator() {
        let mut a = Arbiter::default();
        // "promoted" published before the Sentinels switch, at the same epoch.
        a.offer(coord(3, 4, "10.0.0.2:9002"));
        assert!(matches!(
            a.offer(sentinel(4, "10.0.0.1:9001")),
            Verdict::Ignored(_)
        ));
        assert_eq!(a.offer(sentinel(4, "10.0.0.2:9002")), Verdict::Unchanged);
        assert!(matches!(
            a.current().unwrap().source,
            Source::Coordinator { .. }
        ));
    }

    #[test]
    fn sentinels_fill_in_when_nothing_names_a_master() {
        let mut a = Arbiter::default();
        a.offer(coord(3, 4, ""));
        assert_eq!(a.offer(sentinel(4, "10.0.0.2:9002")), Verdict::Changed);
        // Completed from the coordinator's node list: the same routing as its next topology.
        assert_eq!(a.offer(coord(4, 4, "10.0.0.2:9002")), Verdict::Unchanged);
        // The coordinator at the same epoch is followed in order.
        assert_eq!(a.offer(coord(5, 4, "")), Verdict::Changed);
        assert_eq!(a.current().unwrap().master, None);
    }

    #[test]
    fn first_decision_is_taken_whatever_its_source() {
        let mut a = Arbiter::default();
        assert_eq!(a.offer(sentinel(0, "10.0.0.1:9001")), Verdict::Changed);
        assert_eq!(a.offer(coord(1, 0, "10.0.0.1:9001")), Verdict::Changed);
    }
}
