//! The sidecars of a cluster, run in-process as tokio tasks through their libraries: the
//! coordinator (`redis_ha_coordinator::InProcess`, the coordinator's own in-process launcher)
//! on the block's coordinator port, and one health agent per node (`redis_ha_agent::run`).
//! Each is stopped through its cancellation token, and aborted when the cluster drops.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use redis_ha_agent::AgentConfig;
use redis_ha_common::HostPort;
use redis_ha_coordinator::{CoordinatorConfig, InProcess, NodeConfig};
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{Event, Topology};
use redis_ha_testkit::coordinator::Api;
use redis_ha_testkit::tls::agent;
use redis_ha_testkit::wait::POLL_INTERVAL;
use redis_ha_testkit::{poll_until, wait_until};
use redis_ha_tls::Identity;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use redis_ha_node::acl::User;
use redis_ha_testkit::conf::{sentinel_password, user_password};
pub use redis_ha_testkit::coordinator::describe;

use crate::cluster::{Cluster, NODES, READY_TIMEOUT};

/// How long a sidecar gets to return after its token is cancelled.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for a cancelled sidecar task to return; panics if it does not within
/// `STOP_TIMEOUT` (a sidecar that ignores its shutdown token is a bug) or if it failed.
pub async fn joined<E: Display>(name: &str, handle: JoinHandle<Result<(), E>>) {
    match tokio::time::timeout(STOP_TIMEOUT, handle).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => panic!("{name} returned an error: {e}"),
        Ok(Err(join)) => panic!("{name} panicked or was aborted: {join}"),
        Err(_) => panic!(
            "{name} did not return within {STOP_TIMEOUT:?} after its shutdown token was cancelled"
        ),
    }
}

/// For a task that finished on its own: its outcome, as text.
async fn outcome<E: Display>(handle: JoinHandle<Result<(), E>>) -> String {
    if !handle.is_finished() {
        return "still running".into();
    }
    match handle.await {
        Ok(Ok(())) => "returned Ok before being stopped".into(),
        Ok(Err(e)) => format!("returned an error: {e}"),
        Err(e) => format!("panicked: {e}"),
    }
}

/// One sidecar run as a task of the test's runtime, with its cancellation token. Dropping it
/// cancels and aborts it.
pub struct SidecarTask<E> {
    name: String,
    cancel: CancellationToken,
    handle: Option<JoinHandle<Result<(), E>>>,
}

impl<E: Display + Send + 'static> SidecarTask<E> {
    /// Spawns `run(token)`; `name` names it in panics.
    pub fn spawn<F, Fut>(name: &str, run: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(run(cancel.clone()));
        Self {
            name: name.to_owned(),
            cancel,
            handle: Some(handle),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Cancels it and waits for it to return (see [`joined`]).
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(handle) = self.handle.take() {
            joined(&self.name, handle).await;
        }
    }

    /// For a task that finished on its own: how, as text.
    async fn outcome(mut self) -> String {
        match self.handle.take() {
            Some(h) => outcome(h).await,
            None => "gone".into(),
        }
    }
}

impl<E> Drop for SidecarTask<E> {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

type AgentTask = SidecarTask<redis_ha_agent::AgentError>;

/// The running sidecar tasks of a cluster.
#[derive(Default)]
pub struct Sidecars {
    coordinator: Option<InProcess>,
    agents: BTreeMap<usize, AgentTask>,
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
            sentinel_password_file: self.sentinel_password_file(),
            // The switchover's Redis user, as shipped.
            redis_user: self
                .options()
                .password
                .as_ref()
                .map(|_| User::Coordinator.name().to_owned()),
            redis_password_file: self.user_password_file(User::Coordinator),
            // In-process sidecars serve no metrics (the binaries in `binaries.rs` do).
            metrics_addr: String::new(),
            // The restricted mode every shipped configuration runs.
            nodes: (1..=NODES)
                .map(|i| NodeConfig {
                    id: format!("node-{i}"),
                    redis: HostPort::new("127.0.0.1", self.node(i).port()),
                    sentinel: HostPort::new("127.0.0.1", self.sentinel_port(i)),
                })
                .collect(),
            // Mutual TLS, as shipped.
            tls: self.tls(&Identity::Coordinator),
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
            tls: self.tls(&agent(&format!("node-{i}"))),
            heartbeat_ms: self.options().heartbeat_ms,
            redis_user: self.agent_user(),
            redis_password_file: self.user_password_file(User::Agent),
            sentinel_password_file: self.sentinel_password_file(),
            metrics_addr: String::new(),
            ..AgentConfig::default()
        }
    }

    /// The operator's (`default` user's) Redis password written to `<dir>/redis.password`
    /// (passwords only come from files).
    pub fn password_file(&self) -> Option<PathBuf> {
        let pw = self.options().password.as_ref()?;
        Some(self.secret_file("redis.password", pw))
    }

    /// The agents' ACL user when the cluster has passwords.
    pub fn agent_user(&self) -> Option<String> {
        self.options()
            .password
            .as_ref()
            .map(|_| User::Agent.name().to_owned())
    }

    /// The password file of the ACL user `user` (the kit's [`user_password`]).
    pub fn user_password_file(&self, user: User) -> Option<PathBuf> {
        let pw = self.options().password.as_ref()?;
        Some(self.secret_file(user.secret_file(), &user_password(pw, user)))
    }

    /// The Sentinels' own password file (the kit's [`sentinel_password`]).
    pub fn sentinel_password_file(&self) -> Option<PathBuf> {
        let pw = self.options().password.as_ref()?;
        Some(self.secret_file("sentinel_password", &sentinel_password(pw)))
    }

    /// `value` in `<dir>/<name>`, mode 600, written once, atomically: an agent may be reading
    /// it while another starts.
    fn secret_file(&self, name: &str, value: &str) -> PathBuf {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir().join(name);
        if !path.exists() {
            let tmp = self.dir().join(format!("{name}.tmp"));
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| f.write_all(format!("{value}\n").as_bytes()))
                .and_then(|()| std::fs::rename(&tmp, &path))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        path
    }

    /// Starts the coordinator with `coordinator_config()`.
    pub async fn start_coordinator(&mut self) {
        let config = self.coordinator_config();
        self.start_coordinator_with(config).await;
    }

    /// Binds the coordinator port (waiting while a previous instance's socket is still going
    /// away), serves it in-process and waits until it answers gRPC.
    pub async fn start_coordinator_with(&mut self, config: CoordinatorConfig) {
        assert!(
            self.sidecars.coordinator.is_none(),
            "start_coordinator: the coordinator already runs"
        );
        let port = self.coordinator_port();
        let listener = redis_ha_testkit::ports::bind(port).await;
        let coordinator = InProcess::spawn(config, listener)
            .unwrap_or_else(|e| panic!("the coordinator's listener: {e}"));
        let api = self.api();
        let serving = wait_until(
            &format!("the coordinator to answer gRPC on {port}"),
            READY_TIMEOUT,
            || async {
                if coordinator.is_finished() {
                    return Ok(false);
                }
                api.serving_state().await.map(|()| true)
            },
        )
        .await;
        if !serving {
            let why = outcome(coordinator.stop()).await;
            panic!("the coordinator stopped during start-up: {why}");
        }
        self.sidecars.coordinator = Some(coordinator);
    }

    /// Cancels the coordinator and waits until it returned (so its port is free).
    pub async fn stop_coordinator(&mut self) {
        let coordinator = self
            .sidecars
            .coordinator
            .take()
            .unwrap_or_else(|| panic!("stop_coordinator: the coordinator does not run"));
        joined("the coordinator", coordinator.stop()).await;
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
        let task = AgentTask::spawn(&format!("agent-{i}"), |token| {
            redis_ha_agent::run(config, token)
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
        let finished = self.sidecars.agents.get(&i).map(AgentTask::is_finished);
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

    /// The coordinator's API for this cluster's group (lazy: connects on first use and
    /// reconnects after a coordinator restart).
    pub fn api(&self) -> Api {
        Api::new(&self.coordinator_url(), self.group(), self.operator_tls())
    }

    /// A gRPC client of the coordinator (lazy, as `api`).
    pub fn client(&self) -> CoordinatorClient<Channel> {
        self.api().client()
    }

    /// GetTopology of this cluster's group.
    pub async fn topology(&self) -> Result<Topology, tonic::Status> {
        self.api().topology().await
    }

    /// Polls GetTopology until `pred` holds; panics after `timeout` with the last topology
    /// and the agents' state.
    pub async fn wait_topology<P>(&mut self, what: &str, timeout: Duration, pred: P) -> Topology
    where
        P: Fn(&Topology) -> bool,
    {
        let api = &self.api();
        let pred = &pred;
        let found = poll_until(timeout, POLL_INTERVAL, move || async move {
            match api.topology().await {
                Ok(t) if pred(&t) => Ok(t),
                Ok(t) => Err(describe(&t)),
                Err(s) => Err(format!("GetTopology failed: {s}")),
            }
        })
        .await;
        self.found_or_panic(found, what, timeout).await
    }

    /// The topology a wait found, or a panic naming what was awaited, the last observation
    /// and the sidecars' state.
    async fn found_or_panic(
        &mut self,
        found: Result<Topology, String>,
        what: &str,
        timeout: Duration,
    ) -> Topology {
        match found {
            Ok(t) => t,
            Err(last) => {
                let sidecars = self.sidecar_states().await;
                panic!(
                    "timed out after {timeout:?} waiting for the topology: {what}\n\
                     last: {last}\nsidecars: {sidecars}"
                )
            }
        }
    }

    /// Opens WatchTopology on this cluster's group.
    pub async fn watch(&self) -> tonic::Streaming<Topology> {
        self.api().watch().await
    }

    /// ListEvents of this cluster's group (all kept).
    pub async fn events(&self) -> Vec<Event> {
        self.api().events().await
    }

    /// Waits for node `i`'s agent to re-point its node at a promoted master (its `followed ...`
    /// event) and returns that event.
    pub async fn wait_followed(&self, i: usize) -> Event {
        let agent = format!("node-{i}");
        self.api()
            .wait_events(
                "the remaining replica's agent to follow the promotion",
                |evs| {
                    evs.iter()
                        .find(|e| e.node == agent && e.message.starts_with("followed "))
                        .cloned()
                },
            )
            .await
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

impl Cluster {
    /// Restarts replica `i` (1-based) under `redis-ha-node redis-run` (as the Redis image and
    /// `deploy/up.sh --local` run it, with node `i`'s agent identity, so SIGTERM hands the
    /// master's role over before Redis exits) and waits until it is a synced replica of node
    /// `master` again, the topology steady. Later starts of the node keep the wrapper.
    pub async fn restart_under_redis_run(&mut self, i: usize, master: usize) {
        let node_id = format!("node-{i}");
        let who = redis_ha_testkit::tls::agent(&node_id);
        let path = |p: PathBuf| p.display().to_string();
        let certs = self.certs();
        let args = vec![
            "redis-run".to_owned(),
            "--node-id".into(),
            node_id.clone(),
            "--port".into(),
            self.node(i).port().to_string(),
            "--group".into(),
            self.group().to_owned(),
            "--coordinator".into(),
            self.coordinator_url(),
            "--ca-file".into(),
            path(certs.ca()),
            "--cert-file".into(),
            path(certs.cert(&who)),
            "--key-file".into(),
            path(certs.key(&who)),
            "--secrets-dir".into(),
            path(self.dir().to_path_buf()),
            "--handover-timeout-ms".into(),
            "60000".into(),
        ];
        let wrapper = path(crate::binaries::binary(crate::binaries::NODE_BIN));
        let node = self.node_mut(i);
        node.kill();
        node.wrap(&wrapper, &args);
        node.start();
        self.wait_replica_of(i, master).await;
        self.wait_steady_topology(master).await;
    }
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
        pred: P,
    ) -> Topology
    where
        P: Fn(&Topology, &str) -> bool,
    {
        let api = &self.api();
        let pred = &pred;
        let this = &*self;
        let found = poll_until(timeout, POLL_INTERVAL, move || async move {
            match (this.master_addr_by_sentinel().await, api.topology().await) {
                (Ok(master), Ok(t)) if t.master_address == master && pred(&t, &master) => Ok(t),
                (Ok(master), Ok(t)) => Err(format!("Sentinels name {master}; {}", describe(&t))),
                (Err(e), _) => Err(e),
                (_, Err(s)) => Err(format!("GetTopology failed: {s}")),
            }
        })
        .await;
        self.found_or_panic(found, what, timeout).await
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
