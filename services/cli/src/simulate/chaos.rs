//! The chaos schedule: K times, after `interval` of calm on a whole cluster, fault the
//! current master and undo the fault after `down_for` (and the failover).
//!
//! Faults:
//! - `kill`: SIGKILL (a crash), restarted after `down_for` from its configuration file, as a
//!   supervisor or a container restart policy would;
//! - `stop`: SIGTERM (a clean shutdown: Redis flushes and tells its replicas), restarted after
//!   `down_for` likewise;
//! - `pause`: SIGSTOP (a hung process keeping its sockets open), SIGCONT after `down_for`.
//!
//! Before each fault the schedule waits until the cluster is whole again (a master, every
//! replica linked to it and synced), then `interval` more, so that every outage is followed by
//! steady traffic: a fault on a half-healed cluster would test a double failure, which no
//! 3-node Sentinel deployment survives without losses, not the failover.
//!
//! Targets implement [`ChaosTarget`]: [`LocalProcesses`] for `deploy/up.sh --local`, the test
//! harness's nodes in `redis-ha-tests`, and [`super::docker::DockerStack`] for the swarm stack
//! (the Docker API; the swarm restarts a killed task by itself, so its `restore` for kill and
//! stop only waits, and the node may be back before any failover).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redis_ha_common::HostPort;
use redis_ha_proto::v1::{GetTopologyRequest, Topology};
use serde::Serialize;
use tokio::sync::watch;

use super::conn::RedisEndpoint;
use super::link::sleep_or_stop;
use super::Clock;
use crate::client::Target;

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

/// What the chaos schedule does.
#[derive(Clone, Debug)]
pub struct ChaosPlan {
    pub fault: Fault,
    /// How many faults (0 = none).
    pub kills: u32,
    /// Calm before each fault: from the start of the run to the first fault, and from the
    /// cluster being whole again to the next.
    pub interval: Duration,
    /// How long the node stays faulted.
    pub down_for: Duration,
    /// How long to wait for the cluster to be whole before a fault (and at the end).
    pub settle_timeout: Duration,
}

impl Default for ChaosPlan {
    fn default() -> Self {
        Self {
            fault: Fault::Kill,
            kills: 0,
            interval: Duration::from_secs(8),
            down_for: Duration::from_secs(10),
            settle_timeout: Duration::from_secs(120),
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

/// One fault of the schedule, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultRecord {
    /// 1-based.
    pub round: u32,
    pub fault: Fault,
    pub node: String,
    pub address: String,
    /// Milliseconds since the start of the run.
    pub injected_at_ms: u64,
    /// When the target first named another master (`None`: no failover seen).
    pub failover_at_ms: Option<u64>,
    /// That master.
    pub new_master: Option<String>,
    /// When the fault was undone (`None` if that failed or the run was interrupted first).
    pub restored_at_ms: Option<u64>,
}

/// What the schedule did.
#[derive(Debug, Default)]
pub struct ChaosLog {
    pub faults: Vec<FaultRecord>,
    pub errors: Vec<String>,
}

/// How often the master is asked for while a fault lasts (to time the failover).
const MASTER_POLL: Duration = Duration::from_millis(100);

/// Runs the schedule against `target`; returns early (undoing a fault in progress) when
/// `interrupt` turns true.
///
/// A faulted node is restored after `down_for`, but not before another master was named
/// (up to the settle timeout): a node without persistence restarted before the failover
/// comes back empty as the master, and its replicas would copy its emptiness (the known
/// Redis hazard of auto-restarting a master without persistence), which is not what the
/// schedule is there to test.
pub async fn run_schedule<C: ChaosTarget>(
    plan: &ChaosPlan,
    target: &mut C,
    clock: Clock,
    interrupt: &mut watch::Receiver<bool>,
) -> ChaosLog {
    let mut log = ChaosLog::default();
    if plan.kills == 0 {
        return log;
    }
    tracing::info!(
        "chaos: {} x {} of the master, {:.1} s after the start and after each heal, down for \
         {:.1} s, on {}",
        plan.kills,
        plan.fault.as_str(),
        plan.interval.as_secs_f64(),
        plan.down_for.as_secs_f64(),
        target.describe()
    );
    for round in 1..=plan.kills {
        // `interval` of calm on a whole cluster before every fault: from the start, then from
        // the moment the previous fault had healed.
        if round > 1 {
            match wait_whole(plan, target, interrupt).await {
                Ok(true) => {}
                Ok(false) => return log,
                Err(e) => {
                    log.errors.push(format!(
                        "round {round}: the cluster did not heal, schedule stopped: {e}"
                    ));
                    return log;
                }
            }
        }
        if sleep_or_stop(plan.interval, interrupt).await {
            return log;
        }
        // Whole still (a spontaneous failover may have happened meanwhile).
        match wait_whole(plan, target, interrupt).await {
            Ok(true) => {}
            Ok(false) => return log,
            Err(e) => {
                log.errors.push(format!(
                    "round {round}: the cluster is not whole, schedule stopped: {e}"
                ));
                return log;
            }
        }
        let node = match target.master().await {
            Ok(n) => n,
            Err(e) => {
                log.errors.push(format!("round {round}: {e}"));
                return log;
            }
        };
        tracing::info!(
            "chaos round {round}/{}: {} the master {} ({})",
            plan.kills,
            plan.fault.as_str(),
            node.name,
            node.address
        );
        let injected_at_ms = clock.ms();
        let injected = tokio::time::Instant::now();
        if let Err(e) = target.inject(&node, plan.fault).await {
            log.errors.push(format!(
                "round {round}: {} failed: {e}",
                plan.fault.as_str()
            ));
            return log;
        }
        let mut record = FaultRecord {
            round,
            fault: plan.fault,
            node: node.name.clone(),
            address: node.address.clone(),
            injected_at_ms,
            failover_at_ms: None,
            new_master: None,
            restored_at_ms: None,
        };
        // Down for `down_for` and until another master is named; interrupted or not, the
        // node is always brought back.
        let give_up = injected + plan.down_for.max(plan.settle_timeout);
        let self_heals = target.heals_by_itself(plan.fault);
        let mut healed_alone = false;
        loop {
            if record.new_master.is_none() {
                if let Ok(m) = target.master().await {
                    if m.address != node.address {
                        let at = clock.ms();
                        tracing::info!(
                            "chaos round {round}: {} is master {:.2} s after the {}",
                            m.name,
                            (at - injected_at_ms) as f64 / 1000.0,
                            plan.fault.as_str()
                        );
                        record.failover_at_ms = Some(at);
                        record.new_master = Some(m.name);
                    }
                }
            }
            let now = tokio::time::Instant::now();
            let down_long_enough = now >= injected + plan.down_for;
            if down_long_enough && record.new_master.is_some() {
                break;
            }
            if down_long_enough && self_heals && target.check_whole().await.is_ok() {
                healed_alone = true;
                tracing::info!(
                    "chaos round {round}: whole again after {} was restarted for us, no \
                     failover seen (back before Sentinel's down-after)",
                    node.name
                );
                break;
            }
            if now >= give_up {
                break;
            }
            if sleep_or_stop(MASTER_POLL, interrupt).await {
                break;
            }
        }
        if record.new_master.is_none() && !healed_alone && !*interrupt.borrow() {
            log.errors.push(format!(
                "round {round}: no other master named within {:.0} s of the {}",
                plan.settle_timeout.as_secs_f64(),
                plan.fault.as_str()
            ));
        }
        let restored = target.restore(&node, plan.fault).await;
        match restored {
            Ok(()) => {
                tracing::info!("chaos round {round}: {} restored", node.name);
                record.restored_at_ms = Some(clock.ms());
                log.faults.push(record);
            }
            Err(e) => {
                log.faults.push(record);
                log.errors.push(format!(
                    "round {round}: restoring {} failed: {e}",
                    node.name
                ));
                return log;
            }
        }
        if *interrupt.borrow() || !log.errors.is_empty() {
            return log;
        }
    }
    // End on a whole cluster, so the drain reads from a settled master.
    if let Err(e) = wait_whole(plan, target, interrupt).await {
        log.errors.push(format!(
            "after the last round the cluster did not heal: {e}"
        ));
    }
    log
}

/// Waits until `check_whole` passes: Ok(true), Ok(false) if interrupted, Err on timeout.
async fn wait_whole<C: ChaosTarget>(
    plan: &ChaosPlan,
    target: &mut C,
    interrupt: &mut watch::Receiver<bool>,
) -> Result<bool, ChaosError> {
    let deadline = tokio::time::Instant::now() + plan.settle_timeout;
    let mut noted = false;
    loop {
        match target.check_whole().await {
            Ok(()) => return Ok(true),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(e) => {
                if !noted {
                    tracing::info!("chaos: waiting for the cluster to heal ({e})");
                    noted = true;
                }
            }
        }
        if sleep_or_stop(Duration::from_millis(250), interrupt).await {
            return Ok(false);
        }
    }
}

// ------------------------------------------------------------------------------ local

/// One Redis node of a `deploy/up.sh --local` run directory.
#[derive(Clone, Debug)]
struct LocalNode {
    /// 1-based.
    index: usize,
    port: u16,
    sentinel_port: Option<u16>,
}

/// The processes `deploy/up.sh --local` started, from its run directory: `redis-N.conf`
/// (the port), `redis-N.pid` (whose process is checked to be that `redis-server` before any
/// signal, as deploy/down.sh does), `sentinel-N.conf`.
///
/// A restart uses up.sh's recipe: `redis-server RUN_DIR/redis-N.conf` (which Sentinel may have
/// rewritten, as a container restart would read it), output appended to `redis-N.log`, in a
/// process group of its own (a Ctrl-C of the simulation does not reach it), and the new pid
/// written to `redis-N.pid` so that deploy/down.sh stops it.
pub struct LocalProcesses {
    run_dir: PathBuf,
    coordinator: Target,
    nodes: Vec<LocalNode>,
    io_timeout: Duration,
    /// Nodes this process restarted: ours to reap after a later kill.
    children: HashMap<u32, std::process::Child>,
}

impl LocalProcesses {
    /// Reads the run directory; `coordinator` (its URL and group) finds the master, the
    /// Sentinels of the run directory when the coordinator does not answer.
    pub fn open(run_dir: &Path, coordinator: Target) -> Result<Self, ChaosError> {
        let run_dir = std::fs::canonicalize(run_dir).map_err(|e| {
            ChaosError::Setup(format!(
                "run directory {}: {e} (start the cluster with deploy/up.sh --local)",
                run_dir.display()
            ))
        })?;
        let mut nodes = Vec::new();
        for index in 1.. {
            let conf = run_dir.join(format!("redis-{index}.conf"));
            if !conf.exists() {
                break;
            }
            let port = config_port(&conf)?;
            let sentinel = run_dir.join(format!("sentinel-{index}.conf"));
            let sentinel_port = if sentinel.exists() {
                Some(config_port(&sentinel)?)
            } else {
                None
            };
            nodes.push(LocalNode {
                index,
                port,
                sentinel_port,
            });
        }
        if nodes.is_empty() {
            return Err(ChaosError::Setup(format!(
                "{} holds no redis-1.conf: not a deploy/up.sh --local run directory",
                run_dir.display()
            )));
        }
        Ok(Self {
            run_dir,
            io_timeout: coordinator.timeout,
            coordinator,
            nodes,
            children: HashMap::new(),
        })
    }

    fn node_ref(&self, n: &LocalNode) -> NodeRef {
        NodeRef {
            name: format!("node-{}", n.index),
            address: format!("127.0.0.1:{}", n.port),
        }
    }

    fn find(&self, node: &NodeRef) -> Result<LocalNode, ChaosError> {
        self.nodes
            .iter()
            .find(|n| self.node_ref(n).address == node.address)
            .cloned()
            .ok_or_else(|| ChaosError::Node {
                node: node.name.clone(),
                reason: format!("not a node of {}", self.run_dir.display()),
            })
    }

    fn by_address(&self, address: &str) -> Option<NodeRef> {
        self.nodes
            .iter()
            .map(|n| self.node_ref(n))
            .find(|r| r.address == address)
    }

    fn endpoint(&self, port: u16) -> RedisEndpoint {
        RedisEndpoint::new(HostPort::new("127.0.0.1", port), None, self.io_timeout)
    }

    async fn topology(&self) -> Result<Topology, ChaosError> {
        coordinator_topology(&self.coordinator).await
    }

    /// The master at least two Sentinels of the run directory name.
    async fn sentinel_master(&self) -> Result<String, ChaosError> {
        let mut named: Vec<String> = Vec::new();
        for n in &self.nodes {
            let Some(port) = n.sentinel_port else {
                continue;
            };
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.coordinator.group);
            if let Ok(Some((host, port))) = self
                .endpoint(port)
                .query::<Option<(String, u16)>>(&cmd)
                .await
            {
                named.push(HostPort::new(host, port).to_string());
            }
        }
        named
            .iter()
            .find(|a| named.iter().filter(|b| b == a).count() >= 2)
            .cloned()
            .ok_or_else(|| ChaosError::NoMaster(format!("the Sentinels name {named:?}")))
    }

    fn pid_file(&self, n: &LocalNode) -> PathBuf {
        self.run_dir.join(format!("redis-{}.pid", n.index))
    }

    /// The live pid of node `n`, checked to be our `redis-server` (deploy/local/lib.sh's rule:
    /// the command line names redis-server and the run directory).
    fn live_pid(&mut self, n: &LocalNode) -> Result<u32, ChaosError> {
        let fail = |reason: String| ChaosError::Node {
            node: format!("node-{}", n.index),
            reason,
        };
        let file = self.pid_file(n);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
        let pid: u32 = text
            .trim()
            .parse()
            .map_err(|_| fail(format!("{} holds no pid", file.display())))?;
        if !self.alive(pid) {
            return Err(fail(format!(
                "pid {pid} (from {}) is not running",
                file.display()
            )));
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let dir = format!("{}/", self.run_dir.display());
        if !(cmdline.contains("redis-server") && cmdline.contains(&dir)) {
            return Err(fail(format!(
                "pid {pid} is not this run directory's redis-server ({cmdline:?})"
            )));
        }
        Ok(pid)
    }

    /// True while `pid` runs (a zombie has exited; our own children are reaped here).
    fn alive(&mut self, pid: u32) -> bool {
        if let Some(child) = self.children.get_mut(&pid) {
            return match child.try_wait() {
                Ok(None) => true,
                _ => {
                    self.children.remove(&pid);
                    false
                }
            };
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // The state follows the ")" that closes the process name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("");
        !state.is_empty() && state != "Z" && state != "X"
    }

    fn signal(&self, node: &NodeRef, pid: u32, sig: Signal) -> Result<(), ChaosError> {
        let raw = i32::try_from(pid).map_err(|_| ChaosError::Node {
            node: node.name.clone(),
            reason: format!("pid {pid} out of range"),
        })?;
        kill(Pid::from_raw(raw), sig).map_err(|e| ChaosError::Node {
            node: node.name.clone(),
            reason: format!("cannot send {sig} to pid {pid}: {e}"),
        })
    }

    /// Waits until `pid` has exited; false after `limit`.
    async fn wait_exit(&mut self, pid: u32, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if !self.alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        !self.alive(pid)
    }

    fn start_node(&mut self, n: &LocalNode) -> Result<u32, ChaosError> {
        use std::os::unix::process::CommandExt;
        let fail = |reason: String| ChaosError::Node {
            node: format!("node-{}", n.index),
            reason,
        };
        let conf = self.run_dir.join(format!("redis-{}.conf", n.index));
        let log_path = self.run_dir.join(format!("redis-{}.log", n.index));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| fail(format!("cannot open {}: {e}", log_path.display())))?;
        let err = log
            .try_clone()
            .map_err(|e| fail(format!("cannot open {}: {e}", log_path.display())))?;
        let child = std::process::Command::new("redis-server")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| fail(format!("cannot start redis-server {}: {e}", conf.display())))?;
        let pid = child.id();
        self.children.insert(pid, child);
        let pid_file = self.pid_file(n);
        let tmp = pid_file.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| std::fs::rename(&tmp, &pid_file))
            .map_err(|e| fail(format!("cannot write {}: {e}", pid_file.display())))?;
        Ok(pid)
    }
}

impl ChaosTarget for LocalProcesses {
    fn describe(&self) -> String {
        format!("local processes in {}", self.run_dir.display())
    }

    async fn master(&mut self) -> Result<NodeRef, ChaosError> {
        let address = match self.topology().await {
            Ok(t) if !t.master_address.is_empty() => t.master_address,
            Ok(_) | Err(_) => self.sentinel_master().await?,
        };
        self.by_address(&address).ok_or_else(|| {
            ChaosError::NoMaster(format!(
                "the master {address} is not a node of {}",
                self.run_dir.display()
            ))
        })
    }

    async fn check_whole(&mut self) -> Result<(), ChaosError> {
        let master = self.sentinel_master().await?;
        // The coordinator, when it answers, must agree (the proxy follows it).
        if let Ok(t) = self.topology().await {
            if t.master_address != master || !t.master_confirmed || t.failover_in_progress {
                return Err(ChaosError::NotWhole(format!(
                    "the Sentinels name {master}, the coordinator {:?} (confirmed {}, \
                     failover in progress {})",
                    t.master_address, t.master_confirmed, t.failover_in_progress
                )));
            }
        }
        let master_port = self
            .by_address(&master)
            .and_then(|r| {
                self.nodes
                    .iter()
                    .find(|n| self.node_ref(n).address == r.address)
            })
            .map(|n| n.port)
            .ok_or_else(|| ChaosError::NotWhole(format!("unknown master {master}")))?;
        for n in self.nodes.clone() {
            let mut cmd = redis::cmd("INFO");
            cmd.arg("replication");
            let text: String = self
                .endpoint(n.port)
                .query(&cmd)
                .await
                .map_err(|e| ChaosError::NotWhole(e.to_string()))?;
            let info = parse_info(&text);
            let get = |k: &str| info.get(k).map(String::as_str).unwrap_or("?");
            let ok = if n.port == master_port {
                get("role") == "master"
            } else {
                get("role") == "slave"
                    && get("master_port") == master_port.to_string()
                    && get("master_link_status") == "up"
                    && get("master_sync_in_progress") == "0"
            };
            if !ok {
                return Err(ChaosError::NotWhole(format!(
                    "node-{}: role={} master_port={} link={} syncing={}",
                    n.index,
                    get("role"),
                    get("master_port"),
                    get("master_link_status"),
                    get("master_sync_in_progress")
                )));
            }
        }
        Ok(())
    }

    async fn inject(&mut self, node: &NodeRef, fault: Fault) -> Result<(), ChaosError> {
        let n = self.find(node)?;
        let pid = self.live_pid(&n)?;
        match fault {
            Fault::Pause => self.signal(node, pid, Signal::SIGSTOP),
            Fault::Kill => {
                self.signal(node, pid, Signal::SIGKILL)?;
                if self.wait_exit(pid, Duration::from_secs(10)).await {
                    Ok(())
                } else {
                    Err(ChaosError::Node {
                        node: node.name.clone(),
                        reason: format!("pid {pid} still runs 10 s after SIGKILL"),
                    })
                }
            }
            Fault::Stop => {
                self.signal(node, pid, Signal::SIGTERM)?;
                // Redis 7 waits up to shutdown-timeout (10 s) for lagging replicas.
                if self.wait_exit(pid, Duration::from_secs(30)).await {
                    return Ok(());
                }
                tracing::warn!("{}: no exit 30 s after SIGTERM; SIGKILL", node.name);
                self.signal(node, pid, Signal::SIGKILL)?;
                self.wait_exit(pid, Duration::from_secs(10)).await;
                Ok(())
            }
        }
    }

    async fn restore(&mut self, node: &NodeRef, fault: Fault) -> Result<(), ChaosError> {
        let n = self.find(node)?;
        match fault {
            Fault::Pause => {
                let pid = self.live_pid(&n)?;
                self.signal(node, pid, Signal::SIGCONT)
            }
            Fault::Kill | Fault::Stop => {
                if let Ok(pid) = self.live_pid(&n) {
                    return Err(ChaosError::Node {
                        node: node.name.clone(),
                        reason: format!("already running again as pid {pid}; not restarted"),
                    });
                }
                let pid = self.start_node(&n)?;
                tracing::info!("{}: restarted as pid {pid}", node.name);
                Ok(())
            }
        }
    }
}

// ------------------------------------------------------------------------------ docker
//
// The swarm stack's target is `super::docker::DockerStack`.

/// The `port N` line of a Redis or Sentinel configuration file.
fn config_port(path: &Path) -> Result<u16, ChaosError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ChaosError::Setup(format!("cannot read {}: {e}", path.display())))?;
    parse_port(&text)
        .ok_or_else(|| ChaosError::Setup(format!("{} has no valid `port` line", path.display())))
}

fn parse_port(conf: &str) -> Option<u16> {
    conf.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        match (words.next(), words.next()) {
            (Some(k), Some(v)) if k.eq_ignore_ascii_case("port") => v.parse().ok(),
            _ => None,
        }
    })
}

/// INFO output as key → value.
fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The coordinator's current topology; any failure means "no master known" for the schedule.
pub(super) async fn coordinator_topology(coordinator: &Target) -> Result<Topology, ChaosError> {
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
    fn port_lines_are_found() {
        assert_eq!(
            parse_port("# comment\nbind 127.0.0.1\nport 9002\n"),
            Some(9002)
        );
        assert_eq!(parse_port("PORT 19001"), Some(19001));
        assert_eq!(parse_port("port\nport x\n"), None);
        assert_eq!(parse_port("sentinel-port 1\n"), None);
    }

    fn target() -> Target {
        Target::new("127.0.0.1:1", "redis-cluster", Duration::from_millis(200))
    }

    #[test]
    fn run_directory_is_read() {
        let dir = tempdir();
        for (i, port) in [(1, 9101), (2, 9102), (3, 9103)] {
            std::fs::write(
                dir.join(format!("redis-{i}.conf")),
                format!("bind 127.0.0.1\nport {port}\n"),
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("sentinel-{i}.conf")),
                format!("port {}\n", port + 10000),
            )
            .unwrap();
        }
        let t = LocalProcesses::open(&dir, target()).unwrap();
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(
            t.by_address("127.0.0.1:9102"),
            Some(NodeRef {
                name: "node-2".into(),
                address: "127.0.0.1:9102".into()
            })
        );
        assert_eq!(t.nodes[2].sentinel_port, Some(19103));
        assert!(t.by_address("127.0.0.1:9104").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_without_nodes_is_refused() {
        let dir = tempdir();
        let e = LocalProcesses::open(&dir, target()).err().unwrap();
        assert!(e.to_string().contains("redis-1.conf"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(LocalProcesses::open(Path::new("/nonexistent/run"), target()).is_err());
    }

    #[tokio::test]
    async fn a_stale_pid_file_is_never_signalled() {
        let dir = tempdir();
        std::fs::write(dir.join("redis-1.conf"), "port 9101\n").unwrap();
        // Our own pid: alive, but not a redis-server of this run directory.
        std::fs::write(dir.join("redis-1.pid"), format!("{}\n", std::process::id())).unwrap();
        let mut t = LocalProcesses::open(&dir, target()).unwrap();
        let node = NodeRef {
            name: "node-1".into(),
            address: "127.0.0.1:9101".into(),
        };
        let e = t.inject(&node, Fault::Kill).await.err().unwrap();
        assert!(
            e.to_string()
                .contains("not this run directory's redis-server"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A node the platform restarts by itself 3 polls after the fault, as the master again.
    struct SelfHealing {
        heals: bool,
        down_polls: u32,
        faults: u32,
        restores: u32,
    }

    impl ChaosTarget for SelfHealing {
        fn describe(&self) -> String {
            "fake".into()
        }

        async fn master(&mut self) -> Result<NodeRef, ChaosError> {
            if self.down_polls > 0 {
                self.down_polls -= 1;
                return Err(ChaosError::NoMaster("down".into()));
            }
            Ok(NodeRef {
                name: "node-1".into(),
                address: "n1:1".into(),
            })
        }

        async fn check_whole(&mut self) -> Result<(), ChaosError> {
            if self.down_polls > 0 {
                return Err(ChaosError::NotWhole("down".into()));
            }
            Ok(())
        }

        fn heals_by_itself(&self, _fault: Fault) -> bool {
            self.heals
        }

        async fn inject(&mut self, _node: &NodeRef, _fault: Fault) -> Result<(), ChaosError> {
            self.faults += 1;
            self.down_polls = 3;
            Ok(())
        }

        async fn restore(&mut self, _node: &NodeRef, _fault: Fault) -> Result<(), ChaosError> {
            self.restores += 1;
            Ok(())
        }
    }

    fn quick_plan(kills: u32) -> ChaosPlan {
        ChaosPlan {
            fault: Fault::Kill,
            kills,
            interval: Duration::from_millis(10),
            down_for: Duration::from_millis(50),
            settle_timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn a_node_back_before_any_failover_ends_the_round_when_it_heals_by_itself() {
        let (_tx, mut rx) = watch::channel(false);
        let mut t = SelfHealing {
            heals: true,
            down_polls: 0,
            faults: 0,
            restores: 0,
        };
        let log = run_schedule(&quick_plan(3), &mut t, Clock::start(), &mut rx).await;
        assert!(log.errors.is_empty(), "{:?}", log.errors);
        assert_eq!((t.faults, t.restores), (3, 3));
        assert_eq!(log.faults.len(), 3);
        assert!(log
            .faults
            .iter()
            .all(|f| f.new_master.is_none() && f.restored_at_ms.is_some()));
    }

    #[tokio::test]
    async fn a_round_without_failover_is_an_error_unless_the_target_heals_by_itself() {
        let (_tx, mut rx) = watch::channel(false);
        let mut t = SelfHealing {
            heals: false,
            down_polls: 0,
            faults: 0,
            restores: 0,
        };
        let log = run_schedule(&quick_plan(3), &mut t, Clock::start(), &mut rx).await;
        // The schedule stops after the first round: no other master within the settle timeout.
        assert_eq!(t.faults, 1);
        assert_eq!(log.errors.len(), 1, "{:?}", log.errors);
        assert!(
            log.errors[0].contains("no other master"),
            "{:?}",
            log.errors
        );
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "redis-ha-chaos-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
