//! The chaos target of the swarm stack (`deploy/up.sh`): faults through the Docker API
//! ([`super::docker`]), the master from the coordinator (its published gRPC port, `up.sh
//! --grpc-port`) or, when it does not answer, the stack's published Sentinels.
//!
//! Node N is the task of the swarm service `<stack>_redis-N`, known to the Sentinels and the
//! coordinator as `redis-N:900N`. A killed or stopped node is restarted by the swarm (restart
//! policy, 2 s delay), often before Sentinel's down-after: then it comes back as the master
//! from its append-only file and no failover happens, which the schedule accepts for this
//! target ([`ChaosTarget::heals_by_itself`]).

use std::collections::HashMap;
use std::time::Duration;

use redis_ha_common::{HostPort, Secret};
use redis_ha_proto::v1::{Health, LinkState, Role, Topology};

use redis_ha_cli::Target;

use super::docker::{ChaosAction, DockerChaos, DockerError, NodeNum};
use super::{
    coordinator_topology, current_master, ChaosError, ChaosTarget, Fault, NodeRef, Sentinels,
};

/// The stack's Redis nodes.
const NODES: [u8; 3] = [1, 2, 3];

/// How long `restore` waits for the swarm's new task before forcing one, and in all.
const RESTART_NUDGE: Duration = Duration::from_secs(20);
const RESTART_LIMIT: Duration = Duration::from_secs(90);

pub struct DockerStack {
    chaos: DockerChaos,
    coordinator: Target,
    /// The stack's published Sentinels (HAProxy's port + 10001 .. + 10003).
    sentinels: Vec<HostPort>,
    password: Option<Secret>,
    /// Nodes killed or stopped, with the container that was: the cluster is not whole until
    /// the swarm runs another.
    faulted: HashMap<u8, String>,
}

impl DockerStack {
    /// Connects to the Docker daemon and checks that the stack's Redis services exist.
    /// `proxy` is the stack's published HAProxy port, from which the Sentinels' ports follow.
    pub async fn connect(
        stack: &str,
        coordinator: Target,
        proxy: &HostPort,
        password: Option<Secret>,
    ) -> Result<Self, ChaosError> {
        let chaos = DockerChaos::connect(stack)
            .await
            .map_err(|e| ChaosError::Setup(e.to_string()))?;
        for n in NODES {
            let node = NodeNum::new(n).map_err(|e| ChaosError::Setup(e.to_string()))?;
            chaos
                .containers(node)
                .await
                .map_err(|e| ChaosError::Setup(e.to_string()))?;
        }
        Ok(Self {
            chaos,
            coordinator,
            sentinels: sentinel_addresses(proxy),
            password,
            faulted: HashMap::new(),
        })
    }

    async fn topology(&self) -> Result<Topology, ChaosError> {
        coordinator_topology(&self.coordinator).await
    }

    /// The stack's published Sentinels.
    fn sentinels(&self) -> Sentinels {
        Sentinels {
            addrs: self.sentinels.clone(),
            password: self.password.clone(),
            timeout: self.coordinator.timeout,
        }
    }

    fn num(node: &NodeRef) -> Result<NodeNum, ChaosError> {
        node_of_address(&node.address).ok_or_else(|| ChaosError::Node {
            node: node.name.clone(),
            reason: format!("{} is not a redis-N address of the stack", node.address),
        })
    }

    fn docker_err(node: &NodeRef, e: DockerError) -> ChaosError {
        ChaosError::Node {
            node: node.name.clone(),
            reason: e.to_string(),
        }
    }
}

impl ChaosTarget for DockerStack {
    fn describe(&self) -> String {
        format!("the swarm stack {} (Docker API)", self.chaos.stack())
    }

    async fn master(&mut self) -> Result<NodeRef, ChaosError> {
        let address = current_master(&self.coordinator, &self.sentinels()).await?;
        node_ref(&address)
            .ok_or_else(|| ChaosError::NoMaster(format!("{address} is not a node of the stack")))
    }

    async fn check_whole(&mut self) -> Result<(), ChaosError> {
        let topology = self.topology().await?;
        topology_whole(&topology).map_err(ChaosError::NotWhole)?;
        // The agents' reports lag a little: the containers must say so too (a killed node
        // replaced, nothing paused).
        for n in NODES {
            let node = NodeNum::new(n).map_err(|e| ChaosError::Setup(e.to_string()))?;
            let c = self
                .chaos
                .running(node)
                .await
                .map_err(|e| ChaosError::NotWhole(e.to_string()))?;
            if self.faulted.get(&n) == Some(&c.id) {
                return Err(ChaosError::NotWhole(format!(
                    "redis-{n}: the swarm has not replaced {} yet",
                    c.name
                )));
            }
        }
        Ok(())
    }

    fn heals_by_itself(&self, fault: Fault) -> bool {
        matches!(fault, Fault::Kill | Fault::Stop)
    }

    async fn inject(&mut self, node: &NodeRef, fault: Fault) -> Result<(), ChaosError> {
        let num = Self::num(node)?;
        let action = match fault {
            Fault::Kill => ChaosAction::Kill,
            Fault::Stop => ChaosAction::Stop,
            Fault::Pause => ChaosAction::Pause,
        };
        if fault != Fault::Pause {
            let c = self
                .chaos
                .running(num)
                .await
                .map_err(|e| Self::docker_err(node, e))?;
            self.faulted.insert(num.get(), c.id);
        }
        let outcome = self
            .chaos
            .apply(action, num)
            .await
            .map_err(|e| Self::docker_err(node, e))?;
        tracing::info!("chaos: {}", outcome.message);
        Ok(())
    }

    async fn restore(&mut self, node: &NodeRef, fault: Fault) -> Result<(), ChaosError> {
        let num = Self::num(node)?;
        if fault == Fault::Pause {
            let outcome = self
                .chaos
                .apply(ChaosAction::Unpause, num)
                .await
                .map_err(|e| Self::docker_err(node, e))?;
            tracing::info!("chaos: {}", outcome.message);
            return Ok(());
        }
        // Killed or stopped: the swarm starts a new task; nudge it once if it is slow.
        let old = self.faulted.get(&num.get()).cloned().unwrap_or_default();
        let start = tokio::time::Instant::now();
        let mut nudged = false;
        loop {
            if let Ok(c) = self.chaos.running(num).await {
                if c.id != old {
                    tracing::info!("chaos: {} runs {} now", node.name, c.name);
                    self.faulted.remove(&num.get());
                    return Ok(());
                }
            }
            let waited = start.elapsed();
            if waited >= RESTART_LIMIT {
                return Err(ChaosError::Node {
                    node: node.name.clone(),
                    reason: format!(
                        "no new task running {:.0} s after the {}",
                        waited.as_secs_f64(),
                        fault.as_str()
                    ),
                });
            }
            if waited >= RESTART_NUDGE && !nudged {
                nudged = true;
                match self.chaos.apply(ChaosAction::Start, num).await {
                    Ok(o) => tracing::info!("chaos: {}", o.message),
                    Err(e) => tracing::warn!("chaos: start {}: {e}", node.name),
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// HAProxy on N, the Sentinels on N+10001 .. N+10003 (deploy/up.sh's port map).
fn sentinel_addresses(proxy: &HostPort) -> Vec<HostPort> {
    NODES
        .iter()
        .filter_map(|n| {
            proxy
                .port
                .checked_add(10_000 + u16::from(*n))
                .map(|p| HostPort::new(proxy.host.clone(), p))
        })
        .collect()
}

/// The node of an address the stack knows ("redis-2:9002" → 2).
fn node_of_address(address: &str) -> Option<NodeNum> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.strip_prefix("redis-")?.parse().ok()
}

fn node_ref(address: &str) -> Option<NodeRef> {
    node_of_address(address).map(|n| NodeRef {
        name: n.service(),
        address: address.to_owned(),
    })
}

/// Whole, by the coordinator: a confirmed master, no failover in progress, no split brain,
/// every node up, the others replicas linked to the master, and a quorum of Sentinels naming
/// it with none naming another.
fn topology_whole(t: &Topology) -> Result<(), String> {
    let master = &t.master_address;
    if master.is_empty() || !t.master_confirmed || t.failover_in_progress {
        return Err(format!(
            "master {master:?} (confirmed {}, failover in progress {})",
            t.master_confirmed, t.failover_in_progress
        ));
    }
    if !t.split_brain.is_empty() {
        return Err(format!("split brain: {:?}", t.split_brain));
    }
    for n in NODES {
        let Some(v) = t
            .nodes
            .iter()
            .find(|v| node_of_address(&v.address).map(NodeNum::get) == Some(n))
        else {
            return Err(format!("redis-{n}: not in the topology"));
        };
        let up = v.health == Health::Up as i32;
        let ok = if &v.address == master {
            up && v.role == Role::Master as i32
        } else {
            up && v.role == Role::Replica as i32
                && v.link == LinkState::Up as i32
                && &v.master_address == master
        };
        if !ok {
            return Err(format!(
                "{}: health {:?}, role {:?}, link {:?}, master {:?}",
                v.address,
                Health::try_from(v.health).unwrap_or(Health::Unspecified),
                Role::try_from(v.role).unwrap_or(Role::Unspecified),
                LinkState::try_from(v.link).unwrap_or(LinkState::Unspecified),
                v.master_address
            ));
        }
    }
    let naming = t
        .sentinels
        .iter()
        .filter(|s| s.health == Health::Up as i32 && &s.master_address == master)
        .count();
    let other = t
        .sentinels
        .iter()
        .find(|s| !s.master_address.is_empty() && &s.master_address != master);
    if naming < 2 || other.is_some() {
        return Err(format!(
            "{naming} Sentinel(s) up naming {master}{}",
            other.map_or(String::new(), |s| format!(
                ", {} names {}",
                s.address, s.master_address
            ))
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ha_proto::v1::{NodeView, SentinelView};

    #[test]
    fn addresses_map_to_nodes() {
        assert_eq!(node_of_address("redis-2:9002").map(NodeNum::get), Some(2));
        assert_eq!(node_of_address("redis-3").map(NodeNum::get), Some(3));
        assert!(node_of_address("redis-4:9004").is_none());
        assert!(node_of_address("127.0.0.1:9002").is_none());
        assert!(node_of_address("").is_none());
        assert_eq!(
            node_ref("redis-1:9001"),
            Some(NodeRef {
                name: "redis-1".into(),
                address: "redis-1:9001".into()
            })
        );
    }

    #[test]
    fn sentinels_follow_the_proxy_port() {
        let s = sentinel_addresses(&HostPort::new("127.0.0.1", 9500));
        let s: Vec<String> = s.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["127.0.0.1:19501", "127.0.0.1:19502", "127.0.0.1:19503"]);
        assert!(sentinel_addresses(&HostPort::new("h", 65_000)).is_empty());
    }

    fn node(n: u8, master: u8) -> NodeView {
        let is_master = n == master;
        NodeView {
            node: format!("node-{n}"),
            address: format!("redis-{n}:900{n}"),
            health: Health::Up as i32,
            role: if is_master {
                Role::Master
            } else {
                Role::Replica
            } as i32,
            is_master,
            link: if is_master {
                LinkState::Unspecified
            } else {
                LinkState::Up
            } as i32,
            master_address: if is_master {
                String::new()
            } else {
                format!("redis-{master}:900{master}")
            },
            ..NodeView::default()
        }
    }

    fn whole(master: u8) -> Topology {
        let addr = format!("redis-{master}:900{master}");
        Topology {
            master_address: addr.clone(),
            master_confirmed: true,
            nodes: (1..=3).map(|n| node(n, master)).collect(),
            sentinels: (1..=3)
                .map(|n| SentinelView {
                    node: format!("sentinel-{n}"),
                    address: format!("sentinel-{n}:1900{n}"),
                    health: Health::Up as i32,
                    master_address: addr.clone(),
                    ..SentinelView::default()
                })
                .collect(),
            ..Topology::default()
        }
    }

    #[test]
    fn a_whole_topology_passes() {
        assert_eq!(topology_whole(&whole(2)), Ok(()));
        // One Sentinel down still leaves a quorum.
        let mut t = whole(1);
        t.sentinels[0].health = Health::Down as i32;
        t.sentinels[0].master_address.clear();
        assert_eq!(topology_whole(&t), Ok(()));
    }

    #[test]
    fn what_is_missing_is_said() {
        let mut t = whole(1);
        t.failover_in_progress = true;
        assert!(topology_whole(&t)
            .unwrap_err()
            .contains("failover in progress true"));

        let mut t = whole(1);
        t.nodes[2].link = LinkState::Down as i32;
        assert!(topology_whole(&t).unwrap_err().starts_with("redis-3:9003"));

        let mut t = whole(1);
        t.nodes[1].master_address = "redis-3:9003".into();
        assert!(topology_whole(&t).is_err());

        let mut t = whole(1);
        t.nodes.pop();
        assert_eq!(
            topology_whole(&t).unwrap_err(),
            "redis-3: not in the topology"
        );

        let mut t = whole(1);
        t.nodes[0].health = Health::Down as i32;
        assert!(topology_whole(&t).is_err());

        let mut t = whole(1);
        t.sentinels[2].master_address = "redis-2:9002".into();
        assert!(topology_whole(&t)
            .unwrap_err()
            .contains("names redis-2:9002"));

        let mut t = whole(1);
        t.split_brain = vec!["redis-2:9002".into()];
        assert!(topology_whole(&t).is_err());

        let mut t = whole(1);
        t.master_confirmed = false;
        assert!(topology_whole(&t).is_err());
    }
}
