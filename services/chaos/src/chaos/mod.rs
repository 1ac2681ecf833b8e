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

use std::future::Future;
use std::time::Duration;

use redis_ha_cli::Target;
use redis_ha_common::{HostPort, Secret};
use redis_ha_proto::v1::{GetTopologyRequest, Topology};
use redis_ha_sentinel::{ask_all, named_master, MasterView, SentinelError};
use serde::Serialize;

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

/// How many distinct Sentinels must name a master for the chaos targets: a majority of the
/// three of a deployment.
pub const SENTINEL_QUORUM: usize = 2;

/// A target's Sentinels and how to reach them.
#[derive(Clone, Debug)]
pub struct Sentinels {
    pub addrs: Vec<HostPort>,
    pub password: Option<Secret>,
    /// Bounds the connect and each call to one Sentinel.
    pub timeout: Duration,
}

/// The master clients are routed to: the coordinator's, or when it names none (or does not
/// answer), the one a quorum of `sentinels` name.
pub async fn current_master(
    coordinator: &Target,
    sentinels: &Sentinels,
) -> Result<String, ChaosError> {
    match coordinator_topology(coordinator).await {
        Ok(t) if !t.master_address.is_empty() => Ok(t.master_address),
        Ok(_) | Err(_) => sentinel_master(sentinels, &coordinator.group).await,
    }
}

/// The master (`host:port`) that [`SENTINEL_QUORUM`] of `sentinels` name for `group`, asked
/// all at once (`SENTINEL MASTER`) and decided by [`redis_ha_sentinel::named_master`].
pub async fn sentinel_master(sentinels: &Sentinels, group: &str) -> Result<String, ChaosError> {
    let (views, errors) = ask_all(
        &sentinels.addrs,
        group,
        sentinels.password.as_ref(),
        sentinels.timeout,
    )
    .await;
    agreed(&views).ok_or_else(|| ChaosError::NoMaster(no_quorum(&views, &errors)))
}

/// The master (`host:port`) a quorum of the Sentinels' `views` name.
pub fn agreed(views: &[MasterView]) -> Option<String> {
    named_master(views, SENTINEL_QUORUM).map(|n| n.master.to_string())
}

/// Why no master was agreed on: what each Sentinel named, and which did not answer.
fn no_quorum(views: &[MasterView], errors: &[SentinelError]) -> String {
    let named: Vec<String> = views
        .iter()
        .map(|v| format!("{} (epoch {})", v.master, v.config_epoch))
        .collect();
    let mut reason = format!("the Sentinels name {named:?}");
    if !errors.is_empty() {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        reason.push_str(&format!("; no answer: {}", errors.join("; ")));
    }
    reason
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

    /// Sentinel `n`'s answer: `master` ("host:port") at config `epoch`.
    fn view(n: u16, master: &str, epoch: u64) -> MasterView {
        let master = master.parse().expect("host:port");
        let sentinel = HostPort::new("127.0.0.1", 26_378 + n);
        let settled = true;
        MasterView {
            config_epoch: epoch,
            master,
            sentinel,
            settled,
        }
    }

    #[test]
    fn a_quorum_of_two_names_the_master() {
        // (Sentinel, master, epoch) answers → the agreed master.
        type Case = (&'static [(u16, &'static str, u64)], Option<&'static str>);
        let cases: [Case; 5] = [
            (
                &[
                    (1, "redis-1:9001", 1),
                    (2, "redis-2:9002", 1),
                    (3, "redis-1:9001", 1),
                ],
                Some("redis-1:9001"),
            ),
            (&[(1, "redis-1:9001", 1), (2, "redis-2:9002", 1)], None),
            (&[], None),
            // One Sentinel answering twice is still one vote.
            (&[(1, "redis-1:9001", 1), (1, "redis-1:9001", 1)], None),
            // Two Sentinels at a newer epoch win over the configuration they left.
            (
                &[
                    (1, "redis-1:9001", 1),
                    (2, "redis-2:9002", 2),
                    (3, "redis-2:9002", 2),
                ],
                Some("redis-2:9002"),
            ),
        ];
        for (answers, expected) in cases {
            let views: Vec<MasterView> = answers.iter().map(|&(n, m, e)| view(n, m, e)).collect();
            assert_eq!(agreed(&views).as_deref(), expected, "{answers:?}");
        }
    }

    #[test]
    fn no_quorum_says_what_each_sentinel_named_and_who_did_not_answer() {
        let views = [view(1, "redis-1:9001", 3)];
        let down = SentinelError::Connect {
            peer: "sentinel",
            addr: "127.0.0.1:2".into(),
            reason: "connection refused".into(),
        };
        let r = no_quorum(&views, &[down]);
        assert!(r.contains("redis-1:9001 (epoch 3)"), "{r}");
        assert!(
            r.contains("sentinel 127.0.0.1:2: connect: connection refused"),
            "{r}"
        );
        assert_eq!(no_quorum(&[], &[]), "the Sentinels name []");
    }
}
