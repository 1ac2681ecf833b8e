//! The sidecars of a cluster, run in-process as tokio tasks through their libraries:
//! the coordinator (`redis_ha_coordinator::serve`) on the block's coordinator port, and one
//! health agent per node (`redis_ha_agent::run`). Each is stopped through its cancellation
//! token, and aborted when the cluster drops.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use redis_ha_agent::AgentConfig;
use redis_ha_common::HostPort;
use redis_ha_coordinator::CoordinatorConfig;
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{
    Event, GetTopologyRequest, ListEventsRequest, Topology, WatchTopologyRequest,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::cluster::{Cluster, NODES, READY_TIMEOUT};
use crate::wait::{wait_for, POLL_INTERVAL};

/// How long a sidecar gets to return after its token is cancelled.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One sidecar task. Dropping it cancels and aborts it.
struct SidecarTask {
    name: String,
    cancel: CancellationToken,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl SidecarTask {
    fn spawn<F>(name: String, cancel: CancellationToken, fut: F) -> Self
    where
        F: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            cancel,
            handle: Some(tokio::spawn(fut)),
        }
    }

    fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Cancels the task and waits for it to return; panics if it does not within
    /// `STOP_TIMEOUT` (a sidecar that ignores its shutdown token is a bug) or if it failed.
    async fn stop(mut self) {
        self.cancel.cancel();
        let Some(handle) = self.handle.take() else {
            return;
        };
        match tokio::time::timeout(STOP_TIMEOUT, handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("{} returned an error: {e}", self.name),
            Ok(Err(join)) => panic!("{} panicked or was aborted: {join}", self.name),
            Err(_) => panic!(
                "{} did not return within {STOP_TIMEOUT:?} after its shutdown token was cancelled",
                self.name
            ),
        }
    }

    /// For a task that finished on its own: its outcome, as text.
    async fn outcome(mut self) -> String {
        match self.handle.take() {
            Some(h) if h.is_finished() => match h.await {
                Ok(Ok(())) => "returned Ok before being stopped".into(),
                Ok(Err(e)) => format!("returned an error: {e}"),
                Err(e) => format!("panicked: {e}"),
            },
            _ => "still running".into(),
        }
    }
}

impl Drop for SidecarTask {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// The running sidecar tasks of a cluster.
#[derive(Default)]
pub struct Sidecars {
    coordinator: Option<SidecarTask>,
    agents: BTreeMap<usize, SidecarTask>,
}

impl Cluster {
    /// "http://127.0.0.1:<coordinator port>".
    pub fn coordinator_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.coordinator_port())
    }

    /// The coordinator's configuration for this cluster (change it and pass it to
    /// `start_coordinator_with` to test other settings).
    pub fn coordinator_config(&self) -> CoordinatorConfig {
        CoordinatorConfig {
            listen_addr: format!("127.0.0.1:{}", self.coordinator_port()),
            master_group: self.group().to_owned(),
            stale_after_ms: self.options().stale_after_ms,
            // In-process sidecars serve no metrics (the binaries in `binaries.rs` do).
            metrics_addr: String::new(),
            ..CoordinatorConfig::default()
        }
    }

    /// The configuration of node `i`'s agent.
    pub fn agent_config(&self, i: usize) -> AgentConfig {
        let addr = HostPort::new("127.0.0.1", self.node(i).port());
        AgentConfig {
            node_id: format!("node-{i}"),
            master_group: self.group().to_owned(),
            redis_addr: addr.clone(),
            announce_addr: Some(addr),
            sentinel_addr: HostPort::new("127.0.0.1", self.sentinel_port(i)),
            coordinator_url: self.coordinator_url(),
            heartbeat_ms: self.options().heartbeat_ms,
            redis_password_file: self.password_file(),
            metrics_addr: String::new(),
            ..AgentConfig::default()
        }
    }

    /// The Redis password written to `<dir>/redis.password` (passwords only come from files).
    pub fn password_file(&self) -> Option<PathBuf> {
        let pw = self.options().password.as_ref()?;
        let path = self.dir().join("redis.password");
        if !path.exists() {
            // Written once, atomically: an agent may be reading it while another starts.
            let tmp = self.dir().join("redis.password.tmp");
            std::fs::write(&tmp, format!("{pw}\n"))
                .and_then(|()| std::fs::rename(&tmp, &path))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        Some(path)
    }

    /// Starts the coordinator with `coordinator_config()`.
    pub async fn start_coordinator(&mut self) {
        let config = self.coordinator_config();
        self.start_coordinator_with(config).await;
    }

    /// Binds the coordinator port (retrying while a previous instance's socket is still
    /// going away), runs `serve` as a task and waits until it answers gRPC.
    pub async fn start_coordinator_with(&mut self, config: CoordinatorConfig) {
        assert!(
            self.sidecars.coordinator.is_none(),
            "start_coordinator: the coordinator already runs"
        );
        let port = self.coordinator_port();
        let listener = wait_for(
            &format!("coordinator port {port} to bind"),
            READY_TIMEOUT,
            || async move {
                TcpListener::bind(("127.0.0.1", port))
                    .await
                    .map_err(|e| e.to_string())
            },
        )
        .await;
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let task = SidecarTask::spawn("coordinator".into(), cancel, async move {
            redis_ha_coordinator::serve(config, listener, token)
                .await
                .map_err(|e| e.to_string())
        });
        self.sidecars.coordinator = Some(task);
        let client = self.client();
        let group = self.group().to_owned();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if self
                .sidecars
                .coordinator
                .as_ref()
                .is_none_or(SidecarTask::is_finished)
            {
                let why = match self.sidecars.coordinator.take() {
                    Some(t) => t.outcome().await,
                    None => "gone".into(),
                };
                panic!("the coordinator stopped during start-up: {why}");
            }
            let request = GetTopologyRequest {
                master_group: group.clone(),
            };
            // Any gRPC answer (even NOT_FOUND before the first report) means it serves.
            match client.clone().get_topology(request).await {
                Ok(_) => return,
                Err(s) if s.code() != tonic::Code::Unavailable => return,
                Err(s) if tokio::time::Instant::now() >= deadline => {
                    panic!("the coordinator never answered on {port}: {s}")
                }
                Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    /// Cancels the coordinator and waits until `serve` returned (so its port is free).
    pub async fn stop_coordinator(&mut self) {
        let task = self
            .sidecars
            .coordinator
            .take()
            .unwrap_or_else(|| panic!("stop_coordinator: the coordinator does not run"));
        task.stop().await;
    }

    /// Starts node `i`'s agent with `agent_config(i)`.
    pub async fn start_agent(&mut self, i: usize) {
        let config = self.agent_config(i);
        self.start_agent_with(i, config).await;
    }

    pub async fn start_agent_with(&mut self, i: usize, config: AgentConfig) {
        assert!(
            !self.sidecars.agents.contains_key(&i),
            "start_agent({i}): the agent already runs"
        );
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let task = SidecarTask::spawn(format!("agent-{i}"), cancel, async move {
            redis_ha_agent::run(config, token)
                .await
                .map_err(|e| e.to_string())
        });
        self.sidecars.agents.insert(i, task);
    }

    /// Cancels node `i`'s agent and waits until `run` returned.
    pub async fn stop_agent(&mut self, i: usize) {
        let task = self
            .sidecars
            .agents
            .remove(&i)
            .unwrap_or_else(|| panic!("stop_agent({i}): the agent does not run"));
        task.stop().await;
    }

    /// Panics with the agent's outcome if node `i`'s agent task has ended on its own.
    pub async fn assert_agent_running(&mut self, i: usize) {
        let finished = self.sidecars.agents.get(&i).map(SidecarTask::is_finished);
        match finished {
            None => panic!("agent {i} was not started"),
            Some(false) => {}
            Some(true) => {
                let why = match self.sidecars.agents.remove(&i) {
                    Some(t) => t.outcome().await,
                    None => "gone".into(),
                };
                panic!("agent {i} stopped by itself: {why}")
            }
        }
    }

    /// The coordinator, then the three agents.
    pub async fn start_all_sidecars(&mut self) {
        self.start_coordinator().await;
        for i in 1..=NODES {
            self.start_agent(i).await;
        }
    }

    /// A gRPC client of the coordinator. Lazy: it connects on first use and reconnects after
    /// a coordinator restart.
    pub fn client(&self) -> CoordinatorClient<Channel> {
        let endpoint = Endpoint::from_shared(self.coordinator_url())
            .unwrap_or_else(|e| panic!("bad coordinator url: {e}"))
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10));
        CoordinatorClient::new(endpoint.connect_lazy())
    }

    /// GetTopology of this cluster's group.
    pub async fn topology(&self) -> Result<Topology, tonic::Status> {
        self.client()
            .get_topology(GetTopologyRequest {
                master_group: self.group().to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Polls GetTopology until `pred` holds; panics after `timeout` with the last topology
    /// and the agents' state.
    pub async fn wait_topology<P>(&mut self, what: &str, timeout: Duration, mut pred: P) -> Topology
    where
        P: FnMut(&Topology) -> bool,
    {
        let client = self.client();
        let group = self.group().to_owned();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let request = GetTopologyRequest {
                master_group: group.clone(),
            };
            let last = match client.clone().get_topology(request).await {
                Ok(t) => {
                    let t = t.into_inner();
                    if pred(&t) {
                        return t;
                    }
                    describe(&t)
                }
                Err(s) => format!("GetTopology failed: {s}"),
            };
            if tokio::time::Instant::now() >= deadline {
                let sidecars = self.sidecar_states().await;
                panic!(
                    "timed out after {timeout:?} waiting for the topology: {what}\n\
                     last topology: {last}\nsidecars: {sidecars}"
                )
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Opens WatchTopology on this cluster's group.
    pub async fn watch(&self) -> tonic::Streaming<Topology> {
        let mut client = self.client();
        client
            .watch_topology(WatchTopologyRequest {
                master_group: self.group().to_owned(),
            })
            .await
            .unwrap_or_else(|s| panic!("WatchTopology failed: {s}"))
            .into_inner()
    }

    /// ListEvents of this cluster's group (all kept).
    pub async fn events(&self) -> Vec<Event> {
        self.client()
            .list_events(ListEventsRequest {
                master_group: self.group().to_owned(),
                limit: 0,
            })
            .await
            .unwrap_or_else(|s| panic!("ListEvents failed: {s}"))
            .into_inner()
            .events
    }

    /// Which sidecars run, and how the ones that ended did.
    async fn sidecar_states(&mut self) -> String {
        let mut out = String::new();
        let coordinator = match &self.sidecars.coordinator {
            None => "not started",
            Some(t) if t.is_finished() => "ENDED",
            Some(_) => "running",
        };
        let _ = write!(out, "coordinator {coordinator}");
        let ended: Vec<usize> = self
            .sidecars
            .agents
            .iter()
            .filter(|(_, t)| t.is_finished())
            .map(|(i, _)| *i)
            .collect();
        for (i, t) in &self.sidecars.agents {
            if !ended.contains(i) {
                let _ = write!(out, ", {} running", t.name);
            }
        }
        for i in ended {
            if let Some(t) = self.sidecars.agents.remove(&i) {
                let _ = write!(out, ", agent-{i} {}", t.outcome().await);
            }
        }
        out
    }
}

/// A one-line summary of a topology, for failure messages.
pub fn describe(t: &Topology) -> String {
    let mut s = format!(
        "v{} master={:?} ({:?}) epoch={} source={:?} confirmed={} failover={} split_brain={:?}",
        t.version,
        t.master_address,
        t.master_node,
        t.config_epoch,
        t.master_source,
        t.master_confirmed,
        t.failover_in_progress,
        t.split_brain
    );
    for n in &t.nodes {
        let _ = write!(
            s,
            "\n  {} {} {:?} {:?} master={} link={:?} is_master={} agent={:?} age={}ms err={:?}",
            n.node,
            n.address,
            n.health(),
            n.role(),
            n.master_address,
            n.link(),
            n.is_master,
            n.agent_health(),
            n.report_age_ms,
            n.error
        );
    }
    for v in &t.sentinels {
        let _ = write!(
            s,
            "\n  sentinel {} {} {:?} master={} epoch={} flags={:?} err={:?}",
            v.node,
            v.address,
            v.health(),
            v.master_address,
            v.config_epoch,
            v.master_flags,
            v.error
        );
    }
    s
}

impl Cluster {
    /// Waits until the topology is at rest with node `master` (1-based) as master: confirmed,
    /// every node and Sentinel UP, the replicas linked to it, no failover, no split brain.
    pub async fn wait_steady_topology(&mut self, master: usize) -> Topology {
        let master_addr = self.node(master).addr();
        let what = format!("a steady topology with node-{master} ({master_addr}) as master");
        self.wait_topology(&what, READY_TIMEOUT, |t| is_steady(t, &master_addr))
            .await
    }
}

impl Cluster {
    /// Polls GetTopology and the Sentinels until the topology names the master the Sentinels
    /// name (GET-MASTER-ADDR-BY-NAME, 2 agreeing) and `pred(topology, that master)` holds.
    /// Use it after a failover: it stays right if the Sentinels fail over once more.
    pub async fn wait_topology_agreeing<P>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: P,
    ) -> Topology
    where
        P: FnMut(&Topology, &str) -> bool,
    {
        let client = self.client();
        let group = self.group().to_owned();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let request = GetTopologyRequest {
                master_group: group.clone(),
            };
            let last = match (
                self.master_addr_by_sentinel().await,
                client.clone().get_topology(request).await,
            ) {
                (Ok(master), Ok(t)) => {
                    let t = t.into_inner();
                    if t.master_address == master && pred(&t, &master) {
                        return t;
                    }
                    format!("Sentinels name {master}; {}", describe(&t))
                }
                (Err(e), _) => e,
                (_, Err(s)) => format!("GetTopology failed: {s}"),
            };
            if tokio::time::Instant::now() >= deadline {
                let sidecars = self.sidecar_states().await;
                panic!(
                    "timed out after {timeout:?} waiting for the topology: {what}\n\
                     last: {last}\nsidecars: {sidecars}"
                )
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the topology is at rest (see `is_steady`) with the master the Sentinels name.
    pub async fn wait_steady_topology_agreeing(&mut self) -> Topology {
        self.wait_topology_agreeing(
            "a steady topology with the Sentinels' master",
            READY_TIMEOUT,
            is_steady,
        )
        .await
    }
}

/// The predicate of `wait_steady_topology`.
pub fn is_steady(t: &Topology, master_addr: &str) -> bool {
    use redis_ha_proto::v1::{Health, LinkState, Role};
    t.master_address == master_addr
        && t.master_confirmed
        && !t.failover_in_progress
        && t.split_brain.is_empty()
        && t.nodes.len() == NODES
        && t.sentinels.len() == NODES
        && t.nodes.iter().all(|n| {
            n.health() == Health::Up
                && if n.address == master_addr {
                    n.is_master && n.role() == Role::Master
                } else {
                    !n.is_master
                        && n.role() == Role::Replica
                        && n.link() == LinkState::Up
                        && n.master_address == master_addr
                }
        })
        && t.sentinels
            .iter()
            .all(|s| s.health() == Health::Up && s.master_address == master_addr)
}
