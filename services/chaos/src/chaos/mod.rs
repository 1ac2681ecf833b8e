//! Fault injection on the Redis nodes of a deployment, against two targets: the processes of
//! `deploy/up.sh --local` ([`local`]) and the tasks of the swarm stack through the Docker API
//! ([`docker`] for the actions of `redis-ha chaos`, [`stack`] for the simulation's target).
//!
//! Every target implements [`ChaosTarget`], which the simulation's schedule
//! ([`crate::simulate::schedule`]) drives; the test harness (`redis-ha-tests`) implements it
//! for its own processes.

pub mod docker;
pub mod local;
pub mod stack;

use std::collections::HashMap;
use std::future::Future;

use redis_ha_cli::Target;
use redis_ha_common::HostPort;
use redis_ha_proto::v1::{GetTopologyRequest, Topology};
use serde::Serialize;

use crate::conn::RedisEndpoint;

pub use local::LocalProcesses;
pub use stack::DockerStack;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// SIGKILL, restart after --down-for.
    Kill,
    /// SIGTERM, restart after --down-for.
    Stop,
    /// SIGSTOP, SIGCONT after --down-for.
    Pause,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Pause => "pause",
        }
    }
}

/// A Redis node as a chaos target knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    /// "node-1" ...
    pub name: String,
    /// "127.0.0.1:9001": the address Sentinel and the coordinator know it by.
    pub address: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("no master: {0}")]
    NoMaster(String),
    #[error("the cluster is not whole: {0}")]
    NotWhole(String),
    #[error("{node}: {reason}")]
    Node { node: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

/// Something whose Redis nodes can be faulted: local processes, the test harness, containers.
///
/// The methods return `Send` futures so that a target can also run in a spawned task.
pub trait ChaosTarget: Send {
    /// One line for logs and the report ("local processes in deploy/local/run").
    fn describe(&self) -> String;

    /// The node clients are routed to right now.
    fn master(&mut self) -> impl Future<Output = Result<NodeRef, ChaosError>> + Send;

    /// Ok when the cluster is whole: an agreed master and every other node a synced replica
    /// of it. Err says what is missing (asked again until the settle timeout).
    fn check_whole(&mut self) -> impl Future<Output = Result<(), ChaosError>> + Send;

    /// Applies `fault` to `node`.
    fn inject(
        &mut self,
        node: &NodeRef,
        fault: Fault,
    ) -> impl Future<Output = Result<(), ChaosError>> + Send;

    /// True when something else (a swarm's restart policy) undoes `fault` on its own, possibly
    /// before Sentinel's down-after: a round then also ends, without a failover and without
    /// an error, once the cluster is whole again after `down_for`.
    fn heals_by_itself(&self, _fault: Fault) -> bool {
        false
    }

    /// Undoes `fault` on `node`: restarts it, or resumes it.
    fn restore(
        &mut self,
        node: &NodeRef,
        fault: Fault,
    ) -> impl Future<Output = Result<(), ChaosError>> + Send;
}

/// No chaos: for runs where someone stops nodes by hand, as in the older project.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoChaos;

impl ChaosTarget for NoChaos {
    fn describe(&self) -> String {
        "none".into()
    }

    async fn master(&mut self) -> Result<NodeRef, ChaosError> {
        Err(ChaosError::Setup("no chaos target configured".into()))
    }

    async fn check_whole(&mut self) -> Result<(), ChaosError> {
        Ok(())
    }

    async fn inject(&mut self, _node: &NodeRef, _fault: Fault) -> Result<(), ChaosError> {
        Err(ChaosError::Setup("no chaos target configured".into()))
    }

    async fn restore(&mut self, _node: &NodeRef, _fault: Fault) -> Result<(), ChaosError> {
        Ok(())
    }
}

/// The master clients are routed to: the coordinator's, or when it names none (or does not
/// answer), the one a majority of `sentinels` name.
pub async fn current_master(
    coordinator: &Target,
    sentinels: &[RedisEndpoint],
) -> Result<String, ChaosError> {
    match coordinator_topology(coordinator).await {
        Ok(t) if !t.master_address.is_empty() => Ok(t.master_address),
        Ok(_) | Err(_) => sentinel_master(sentinels, &coordinator.group).await,
    }
}

/// The master (`host:port`) at least two of `sentinels` name for `group`.
pub async fn sentinel_master(
    sentinels: &[RedisEndpoint],
    group: &str,
) -> Result<String, ChaosError> {
    let mut named = Vec::new();
    for ep in sentinels {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(group);
        if let Ok(Some((host, port))) = ep.query::<Option<(String, u16)>>(&cmd).await {
            named.push(HostPort::new(host, port).to_string());
        }
    }
    agreed(&named).ok_or_else(|| ChaosError::NoMaster(format!("the Sentinels name {named:?}")))
}

/// The address at least two of `named` agree on (the Sentinels' answers to
/// `GET-MASTER-ADDR-BY-NAME`: a majority of the three).
pub fn agreed(named: &[String]) -> Option<String> {
    named
        .iter()
        .find(|a| named.iter().filter(|b| b == a).count() >= 2)
        .cloned()
}

/// INFO output as key → value.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The coordinator's current topology; any failure means "no master known" for the schedule.
pub async fn coordinator_topology(coordinator: &Target) -> Result<Topology, ChaosError> {
    let mut client = coordinator
        .connect()
        .await
        .map_err(|e| ChaosError::NoMaster(e.to_string()))?;
    let req = coordinator.request(
        GetTopologyRequest {
            master_group: coordinator.group.clone(),
        },
        true,
    );
    coordinator
        .call(client.get_topology(req))
        .await
        .map_err(|e| ChaosError::NoMaster(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_of_two_names_the_master() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            agreed(&v(&["redis-1:9001", "redis-2:9002", "redis-1:9001"])),
            Some("redis-1:9001".into())
        );
        assert_eq!(agreed(&v(&["redis-1:9001", "redis-2:9002"])), None);
        assert_eq!(agreed(&[]), None);
    }
}
