//! The simulation's chaos target for the harness: faults the nodes of a [`Cluster`], so that
//! tests run `redis_ha_chaos::simulate::run` in-process against real Redis, Sentinel, HAProxy
//! and sidecars.

use redis_ha_chaos::chaos::{ChaosError, ChaosTarget, Fault, NodeRef};

use crate::cluster::{Cluster, NODES};

/// Faults the harness's nodes: kill / stop / pause through their managed processes, restart
/// from their (maybe Sentinel-rewritten) config files.
pub struct ClusterChaos<'a> {
    cluster: &'a mut Cluster,
}

impl<'a> ClusterChaos<'a> {
    pub fn new(cluster: &'a mut Cluster) -> Self {
        Self { cluster }
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
        let n = self.cluster.node_mut(i);
        match fault {
            Fault::Kill => n.kill(),
            // Waits (blocking) for the clean exit: keep the runtime's other tasks going.
            Fault::Stop => tokio::task::block_in_place(|| n.stop()),
            Fault::Pause => n.pause(),
        }
        Ok(())
    }

    async fn restore(&mut self, node: &NodeRef, fault: Fault) -> Result<(), ChaosError> {
        let i = self.index(node)?;
        let n = self.cluster.node_mut(i);
        match fault {
            Fault::Kill | Fault::Stop => n.restart().await,
            Fault::Pause => n.resume(),
        }
        Ok(())
    }
}
