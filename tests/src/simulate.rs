//! The simulation's chaos target for the harness: faults the nodes of a [`Cluster`], so that
//! tests run `redis_ha_chaos::simulate::run` in-process against real Redis, Sentinel, HAProxy
//! and sidecars.

use std::time::Duration;

use redis_ha_chaos::chaos::{ChaosError, ChaosTarget, Fault, NodeRef};

use crate::cluster::{Cluster, NODES};
use crate::kit::poll_until;
use crate::kit::wait::POLL_INTERVAL;

/// The state letter of `/proc/<pid>/stat` ("R", "S", "T" for stopped ...).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the ")" that closes the process name.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// One fault as the harness saw it, apart from the simulation's own account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injection {
    pub address: String,
    pub fault: Fault,
    /// What the node itself answered to `ROLE` just before the fault ("master" ...).
    pub role_before: String,
    /// Kill and stop: the process had exited when `inject` returned (pause: true if it ran).
    pub took_effect: bool,
    /// The fault was undone (`restore` called on this node afterwards).
    pub restored: bool,
}

/// Faults the harness's nodes: kill / stop / pause through their managed processes, restart
/// from their (maybe Sentinel-rewritten) config files. Keeps its own record of every fault
/// ([`Injection`]), to check the simulation's report against.
pub struct ClusterChaos<'a> {
    cluster: &'a mut Cluster,
    pub injections: Vec<Injection>,
}

impl<'a> ClusterChaos<'a> {
    pub fn new(cluster: &'a mut Cluster) -> Self {
        Self {
            cluster,
            injections: Vec::new(),
        }
    }

    fn index(&self, node: &NodeRef) -> Result<usize, ChaosError> {
        self.cluster
            .node_index(&node.address)
            .ok_or_else(|| ChaosError::Node {
                node: node.name.clone(),
                reason: "not a node of this cluster".into(),
            })
    }
}

impl ChaosTarget for ClusterChaos<'_> {
    fn describe(&self) -> String {
        format!("harness cluster in {}", self.cluster.dir().display())
    }

    async fn master(&mut self) -> Result<NodeRef, ChaosError> {
        let address = self
            .cluster
            .master_addr_by_sentinel()
            .await
            .map_err(ChaosError::NoMaster)?;
        let i = self
            .cluster
            .node_index(&address)
            .ok_or_else(|| ChaosError::NoMaster(format!("unknown master {address}")))?;
        Ok(NodeRef {
            name: format!("node-{i}"),
            address,
        })
    }

    async fn check_whole(&mut self) -> Result<(), ChaosError> {
        let master = self.master().await?;
        let m = self.index(&master)?;
        match self.cluster.node(m).role().await {
            Ok(r) if r == "master" => {}
            other => {
                return Err(ChaosError::NotWhole(format!(
                    "{} is named master but its role is {other:?}",
                    master.name
                )))
            }
        }
        let master_port = self.cluster.node(m).port();
        for i in (1..=NODES).filter(|&i| i != m) {
            if !self.cluster.node_mut(i).is_running() {
                return Err(ChaosError::NotWhole(format!("node-{i} is not running")));
            }
            self.cluster
                .node(i)
                .replica_synced_state(master_port)
                .await
                .map_err(ChaosError::NotWhole)?;
        }
        Ok(())
    }

    async fn inject(&mut self, node: &NodeRef, fault: Fault) -> Result<(), ChaosError> {
        let i = self.index(node)?;
        let role_before = match self.cluster.node(i).role().await {
            Ok(role) => role,
            Err(e) => format!("unknown ({e})"),
        };
        let n = self.cluster.node_mut(i);
        match fault {
            Fault::Kill => n.kill(),
            // Waits (blocking) for the clean exit: keep the runtime's other tasks going.
            Fault::Stop => tokio::task::block_in_place(|| n.stop()),
            Fault::Pause => n.pause(),
        }
        let took_effect = match fault {
            Fault::Kill | Fault::Stop => !n.is_running(),
            Fault::Pause => {
                let pid = n.pid();
                // SIGSTOP lands asynchronously: wait for the kernel to show it stopped.
                poll_until(Duration::from_secs(5), POLL_INTERVAL, || async move {
                    match pid.and_then(process_state) {
                        Some('T') => Ok(()),
                        other => Err(format!("pid {pid:?} in state {other:?}")),
                    }
                })
                .await
                .is_ok()
            }
        };
        self.injections.push(Injection {
            address: node.address.clone(),
            fault,
            role_before,
            took_effect,
            restored: false,
        });
        Ok(())
    }

    async fn restore(&mut self, node: &NodeRef, fault: Fault) -> Result<(), ChaosError> {
        let i = self.index(node)?;
        let n = self.cluster.node_mut(i);
        match fault {
            Fault::Kill | Fault::Stop => n.restart().await,
            Fault::Pause => n.resume(),
        }
        if let Some(last) = self
            .injections
            .iter_mut()
            .rev()
            .find(|f| f.address == node.address)
        {
            last.restored = true;
        }
        Ok(())
    }
}
