//! Faults on the swarm stack's Redis nodes through the Docker API (`redis-ha chaos`).
//!
//! Node N is the container of the running task of the swarm service `<stack>_redis-N` on this
//! Docker host (found by the `com.docker.swarm.service.name` label). The swarm restarts a task
//! whose container exits (`restart_policy: condition: any`), so `stop` and `kill` are followed
//! by a fresh task a few seconds later; `start` covers the cases the swarm does not: it
//! unpauses a paused node, reconnects an isolated one, and otherwise forces the service to
//! schedule a task now (scaling it back to 1 when it was scaled to 0).
//!
//! Used by `redis-ha chaos`, the simulation's swarm target ([`super::stack`]) and the stack
//! tests (`redis-ha-tests`).

use std::collections::HashMap;
use std::fmt;

use bollard::models::{
    ContainerSummary, ContainerSummaryStateEnum, EndpointSettings, NetworkConnectRequest,
    NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    InspectServiceOptions, KillContainerOptions, ListContainersOptions, StopContainerOptions,
    UpdateServiceOptions,
};
use bollard::Docker;
use serde::Serialize;

/// The stack name `deploy/up.sh` uses unless told otherwise.
pub const DEFAULT_STACK: &str = "redis-ha";

/// What to do to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ChaosAction {
    /// `docker stop` (SIGTERM, then SIGKILL after the grace period); the swarm starts a new task.
    Stop,
    /// Undo: unpause / reconnect the node, or make the swarm schedule its task now.
    Start,
    /// SIGKILL the container (a crash); the swarm starts a new task.
    Kill,
    /// Freeze the container (a hung node that keeps its sockets open).
    Pause,
    /// Thaw a paused container.
    Unpause,
    /// Disconnect the container from the stack's internal network (a partition).
    Isolate,
    /// Reconnect an isolated container and let the swarm replace its task.
    Heal,
}

impl ChaosAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Unpause => "unpause",
            Self::Isolate => "isolate",
            Self::Heal => "heal",
        }
    }
}

impl fmt::Display for ChaosAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Redis node of the stack: 1, 2 or 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NodeNum(u8);

impl NodeNum {
    pub fn new(n: u8) -> Result<Self, DockerError> {
        if (1..=3).contains(&n) {
            Ok(Self(n))
        } else {
            Err(DockerError::BadNode(n.to_string()))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// The node's service name inside the stack ("redis-2"), also its DNS name there.
    pub fn service(self) -> String {
        format!("redis-{}", self.0)
    }
}

impl std::str::FromStr for NodeNum {
    type Err = DockerError;

    /// Accepts "2", "redis-2" and "node-2".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let digits = t
            .strip_prefix("redis-")
            .or_else(|| t.strip_prefix("node-"))
            .unwrap_or(t);
        match digits.parse::<u8>() {
            Ok(n) if (1..=3).contains(&n) => Ok(Self(n)),
            _ => Err(DockerError::BadNode(s.to_owned())),
        }
    }
}

impl fmt::Display for NodeNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis-{}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("invalid node {0:?}: expected 1, 2, 3 or redis-1 .. redis-3")]
    BadNode(String),

    #[error(
        "cannot reach the Docker daemon: {0} (is it running? may this user use \
         /var/run/docker.sock? DOCKER_HOST is honoured)"
    )]
    DockerUnavailable(String),

    #[error("no service {service} in the swarm: is the stack {stack:?} deployed (deploy/up.sh --stack {stack}, or pass --stack)?")]
    NoService { service: String, stack: String },

    #[error(
        "no {wanted} container of {service} on this Docker host (the swarm may be replacing \
         the task, or it runs on another swarm node: run the command there)"
    )]
    NoContainer {
        service: String,
        wanted: &'static str,
    },

    #[error("{service}: {what}")]
    Refused { service: String, what: String },

    #[error("docker {op} {target}: {reason}")]
    Docker {
        op: &'static str,
        target: String,
        reason: String,
    },
}

/// What an action did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChaosOutcome {
    pub action: ChaosAction,
    pub node: NodeNum,
    /// The swarm service ("redis-ha_redis-1").
    pub service: String,
    /// The container acted on (empty when the action was on the service).
    pub container: String,
    /// One human sentence: what happened and what happens next.
    pub message: String,
}

/// A container of a node's service.
#[derive(Clone, Debug)]
pub struct NodeContainer {
    pub id: String,
    pub name: String,
    pub state: String,
    /// Names of the networks it is attached to.
    pub networks: Vec<String>,
}

fn docker_err(op: &'static str, target: &str, e: bollard::errors::Error) -> DockerError {
    DockerError::Docker {
        op,
        target: target.to_owned(),
        reason: e.to_string(),
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The Docker daemon and the stack whose nodes it faults.
#[derive(Clone, Debug)]
pub struct DockerChaos {
    docker: Docker,
    stack: String,
}

impl DockerChaos {
    /// Connects to the local daemon (DOCKER_HOST or the default socket) and agrees on an API
    /// version (the engines here speak 1.41, older than bollard's default).
    pub async fn connect(stack: &str) -> Result<Self, DockerError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| DockerError::DockerUnavailable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| DockerError::DockerUnavailable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| DockerError::DockerUnavailable(e.to_string()))?;
        Ok(Self {
            docker,
            stack: stack.to_owned(),
        })
    }

    pub fn stack(&self) -> &str {
        &self.stack
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// `<stack>_redis-N`.
    pub fn service_name(&self, node: NodeNum) -> String {
        format!("{}_{}", self.stack, node.service())
    }

    /// `<stack>_internal`: the overlay network Redis, the Sentinels and the sidecars share.
    pub fn internal_network(&self) -> String {
        format!("{}_internal", self.stack)
    }

    /// `<stack>_names`: the network on which Redis and the Sentinels resolve the names of dead
    /// tasks (deploy/stack/redis-ha.yml). A node cut off from internal but left on it would
    /// still be reachable there under its own name.
    pub fn names_network(&self) -> String {
        format!("{}_names", self.stack)
    }

    async fn ensure_service(&self, service: &str) -> Result<(), DockerError> {
        match self
            .docker
            .inspect_service(service, None::<InspectServiceOptions>)
            .await
        {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(DockerError::NoService {
                service: service.to_owned(),
                stack: self.stack.clone(),
            }),
            // A daemon that is not a swarm manager answers 503: report it as it is.
            Err(e) => Err(docker_err("service inspect", service, e)),
        }
    }

    /// Every container of the node's service on this host, newest first.
    pub async fn containers(&self, node: NodeNum) -> Result<Vec<NodeContainer>, DockerError> {
        let service = self.service_name(node);
        self.ensure_service(&service).await?;
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("com.docker.swarm.service.name={service}")],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| docker_err("ps", &service, e))?;
        let mut out: Vec<(i64, NodeContainer)> = list.into_iter().filter_map(summary).collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.0));
        Ok(out.into_iter().map(|(_, c)| c).collect())
    }

    /// The node's container in one of `states` ("running", "paused").
    pub async fn container_in(
        &self,
        node: NodeNum,
        states: &[&str],
        wanted: &'static str,
    ) -> Result<NodeContainer, DockerError> {
        self.containers(node)
            .await?
            .into_iter()
            .find(|c| states.contains(&c.state.as_str()))
            .ok_or_else(|| DockerError::NoContainer {
                service: self.service_name(node),
                wanted,
            })
    }

    /// The node's running (not paused) container.
    pub async fn running(&self, node: NodeNum) -> Result<NodeContainer, DockerError> {
        self.container_in(node, &["running"], "running").await
    }

    /// Does one thing to node `node`.
    pub async fn apply(
        &self,
        action: ChaosAction,
        node: NodeNum,
    ) -> Result<ChaosOutcome, DockerError> {
        let service = self.service_name(node);
        let outcome = |container: &NodeContainer, message: String| ChaosOutcome {
            action,
            node,
            service: service.clone(),
            container: container.name.clone(),
            message,
        };
        match action {
            ChaosAction::Stop | ChaosAction::Kill => {
                // A paused container can be killed too (the kernel delivers SIGKILL).
                let c = self
                    .container_in(node, &["running", "paused"], "running")
                    .await?;
                if action == ChaosAction::Stop {
                    // No timeout: the daemon uses the task's stop_grace_period.
                    self.docker
                        .stop_container(&c.id, None::<StopContainerOptions>)
                        .await
                        .map_err(|e| docker_err("stop", &c.name, e))?;
                } else {
                    self.docker
                        .kill_container(
                            &c.id,
                            Some(KillContainerOptions {
                                signal: "SIGKILL".to_owned(),
                            }),
                        )
                        .await
                        .map_err(|e| docker_err("kill", &c.name, e))?;
                }
                let verb = if action == ChaosAction::Stop {
                    "stopped"
                } else {
                    "killed"
                };
                Ok(outcome(
                    &c,
                    format!(
                        "{verb} {} ({}); the swarm will start a new task of {service} in a few \
                         seconds (restart policy), which rejoins as a replica",
                        c.name,
                        short(&c.id)
                    ),
                ))
            }
            ChaosAction::Pause => {
                let c = self.running(node).await?;
                self.docker
                    .pause_container(&c.id)
                    .await
                    .map_err(|e| docker_err("pause", &c.name, e))?;
                Ok(outcome(
                    &c,
                    format!(
                        "paused {} ({}): it keeps its sockets but answers nothing; \
                         `redis-ha chaos unpause {}` thaws it",
                        c.name,
                        short(&c.id),
                        node.get()
                    ),
                ))
            }
            ChaosAction::Unpause => {
                let c = self.container_in(node, &["paused"], "paused").await?;
                self.unpause(&c).await?;
                Ok(outcome(
                    &c,
                    format!("unpaused {} ({})", c.name, short(&c.id)),
                ))
            }
            ChaosAction::Isolate => {
                let c = self
                    .container_in(node, &["running", "paused"], "running")
                    .await?;
                let net = self.internal_network();
                if !c.networks.iter().any(|n| n == &net) {
                    return Err(DockerError::Refused {
                        service,
                        what: format!("{} is not on {net}: already isolated?", c.name),
                    });
                }
                self.docker
                    .disconnect_network(
                        &net,
                        NetworkDisconnectRequest {
                            container: Some(c.id.clone()),
                            force: Some(true),
                        },
                    )
                    .await
                    .map_err(|e| docker_err("network disconnect", &c.name, e))?;
                let names = self.names_network();
                let mut from = net.clone();
                if c.networks.iter().any(|n| n == &names) {
                    self.docker
                        .disconnect_network(
                            &names,
                            NetworkDisconnectRequest {
                                container: Some(c.id.clone()),
                                force: Some(true),
                            },
                        )
                        .await
                        .map_err(|e| docker_err("network disconnect", &c.name, e))?;
                    from = format!("{net} and {names}");
                }
                Ok(outcome(
                    &c,
                    format!(
                        "disconnected {} ({}) from {from}: it runs on, cut off from the \
                         Sentinels, the agents and HAProxy; `redis-ha chaos heal {}` reconnects it",
                        c.name,
                        short(&c.id),
                        node.get()
                    ),
                ))
            }
            ChaosAction::Heal => {
                let c = self
                    .container_in(node, &["running", "paused"], "running")
                    .await?;
                self.heal(node, &c).await?;
                Ok(outcome(
                    &c,
                    format!(
                        "reconnected {} ({}) to {} and stopped it: the swarm starts a new task \
                         of {service}, which rejoins as a replica",
                        c.name,
                        short(&c.id),
                        self.internal_network(),
                    ),
                ))
            }
            ChaosAction::Start => self.start(node).await,
        }
    }

    async fn unpause(&self, c: &NodeContainer) -> Result<(), DockerError> {
        self.docker
            .unpause_container(&c.id)
            .await
            .map_err(|e| docker_err("unpause", &c.name, e))
    }

    /// Reconnects the container, then stops it so that the swarm replaces the task: the
    /// swarm's DNS record of a task (`redis-N`, how the Sentinels and agents know the node) is
    /// gone once it is disconnected and a reconnect through the API does not bring it back
    /// (measured on Docker 20.10), so only a new task is reachable by name again.
    async fn heal(&self, node: NodeNum, c: &NodeContainer) -> Result<(), DockerError> {
        let net = self.internal_network();
        if c.networks.iter().any(|n| n == &net) {
            return Err(DockerError::Refused {
                service: self.service_name(node),
                what: format!("{} is on {net} already: nothing to heal", c.name),
            });
        }
        self.docker
            .connect_network(
                &net,
                NetworkConnectRequest {
                    container: Some(c.id.clone()),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec![node.service()]),
                        ..Default::default()
                    }),
                },
            )
            .await
            .map_err(|e| docker_err("network connect", &c.name, e))?;
        self.docker
            .stop_container(&c.id, None::<StopContainerOptions>)
            .await
            .map_err(|e| docker_err("stop", &c.name, e))
    }

    /// Undoes whatever fault the node is in; with nothing to undo, makes the swarm schedule
    /// the service's task at once.
    async fn start(&self, node: NodeNum) -> Result<ChaosOutcome, DockerError> {
        let service = self.service_name(node);
        let containers = self.containers(node).await?;
        let net = self.internal_network();
        let live = containers
            .iter()
            .find(|c| c.state == "running" || c.state == "paused");
        if let Some(c) = live {
            let mut done = Vec::new();
            if c.state == "paused" {
                self.unpause(c).await?;
                done.push("unpaused");
            }
            if !c.networks.iter().any(|n| n == &net) {
                self.heal(node, c).await?;
                done.push("reconnected (and stopped: the swarm replaces the task)");
            }
            let message = if done.is_empty() {
                format!("{} ({}) is running already", c.name, short(&c.id))
            } else {
                format!("{} {} ({})", done.join(" and "), c.name, short(&c.id))
            };
            return Ok(ChaosOutcome {
                action: ChaosAction::Start,
                node,
                service,
                container: c.name.clone(),
                message,
            });
        }
        // No live container: scale back to 1 if someone scaled it to 0, and force an update
        // so the swarm starts a task now instead of after its restart delay.
        let svc = self
            .docker
            .inspect_service(&service, None::<InspectServiceOptions>)
            .await
            .map_err(|e| docker_err("service inspect", &service, e))?;
        let version = svc
            .version
            .and_then(|v| v.index)
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| DockerError::Refused {
                service: service.clone(),
                what: "the service has no version index".to_owned(),
            })?;
        let mut spec = svc.spec.ok_or_else(|| DockerError::Refused {
            service: service.clone(),
            what: "the service has no spec".to_owned(),
        })?;
        let mut scaled = false;
        if let Some(rep) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
            if rep.replicas.unwrap_or(0) == 0 {
                rep.replicas = Some(1);
                scaled = true;
            }
        }
        if let Some(task) = spec.task_template.as_mut() {
            task.force_update = Some(task.force_update.unwrap_or(0).wrapping_add(1));
        }
        self.docker
            .update_service(
                &service,
                spec,
                UpdateServiceOptions {
                    version,
                    ..Default::default()
                },
                None,
            )
            .await
            .map_err(|e| docker_err("service update", &service, e))?;
        Ok(ChaosOutcome {
            action: ChaosAction::Start,
            node,
            service: service.clone(),
            container: String::new(),
            message: format!(
                "{}asked the swarm to start a new task of {service} now (forced update)",
                if scaled { "scaled to 1 and " } else { "" }
            ),
        })
    }
}

fn summary(c: ContainerSummary) -> Option<(i64, NodeContainer)> {
    let id = c.id?;
    let name = c
        .names
        .and_then(|n| n.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_else(|| short(&id).to_owned());
    let state = match c.state {
        Some(ContainerSummaryStateEnum::RUNNING) => "running",
        Some(ContainerSummaryStateEnum::PAUSED) => "paused",
        Some(ContainerSummaryStateEnum::RESTARTING) => "restarting",
        Some(ContainerSummaryStateEnum::CREATED) => "created",
        Some(ContainerSummaryStateEnum::EXITED) => "exited",
        Some(ContainerSummaryStateEnum::REMOVING) => "removing",
        Some(ContainerSummaryStateEnum::DEAD) => "dead",
        _ => "unknown",
    }
    .to_owned();
    let networks = c
        .network_settings
        .and_then(|n| n.networks)
        .map(|m| m.into_keys().collect())
        .unwrap_or_default();
    Some((
        c.created.unwrap_or(0),
        NodeContainer {
            id,
            name,
            state,
            networks,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_forms() {
        for s in ["2", "redis-2", "node-2", " 2 "] {
            assert_eq!(s.parse::<NodeNum>().unwrap(), NodeNum(2), "{s}");
        }
        for s in ["0", "4", "redis-", "x", "", "redis-12"] {
            assert!(s.parse::<NodeNum>().is_err(), "{s}");
        }
        assert_eq!(NodeNum(3).service(), "redis-3");
    }

    #[test]
    fn names_follow_the_stack() {
        let docker = Docker::connect_with_local_defaults().unwrap();
        let c = DockerChaos {
            docker,
            stack: "t1".into(),
        };
        assert_eq!(c.service_name(NodeNum(1)), "t1_redis-1");
        assert_eq!(c.internal_network(), "t1_internal");
        assert_eq!(c.names_network(), "t1_names");
    }
}
