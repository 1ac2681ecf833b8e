//! The chaos target of `deploy/up.sh --local`: its processes, from its run directory, faulted
//! with signals and restarted with up.sh's recipe.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redis_ha_cli::Target;
use redis_ha_common::redis_client::{info_fields, LinkError, RedisLink};
use redis_ha_common::{HostPort, Secret};
use redis_ha_proto::v1::Topology;

use super::{
    coordinator_topology, current_master, sentinel_master, ChaosError, ChaosTarget, Fault, NodeRef,
    Sentinels,
};

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
    /// The run directory's `secrets/redis_agent_password` (INFO, as the agent user) and
    /// `secrets/sentinel_password`, when `deploy/up.sh --local` made them.
    agent_password: Option<Secret>,
    sentinel_password: Option<Secret>,
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
        let secret = |name: &str| {
            let p = run_dir.join("secrets").join(name);
            if p.exists() {
                Secret::from_file(name, &p)
                    .map(Some)
                    .map_err(|e| ChaosError::Setup(e.to_string()))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            agent_password: secret("redis_agent_password")?,
            sentinel_password: secret("sentinel_password")?,
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

    /// `INFO replication` of the node on `port`, on a connection of its own.
    async fn replication_info(&self, port: u16) -> Result<String, LinkError> {
        let mut link = RedisLink::new_as(
            "redis",
            HostPort::new("127.0.0.1", port),
            self.agent_password.as_ref().map(|_| "agent"),
            self.agent_password.as_ref(),
            self.io_timeout,
        )?;
        let label = "INFO replication";
        let v = link
            .query(redis::cmd("INFO").arg("replication"), label)
            .await?;
        link.text_reply(label, &v)
    }

    async fn topology(&self) -> Result<Topology, ChaosError> {
        coordinator_topology(&self.coordinator).await
    }

    /// The run directory's Sentinels.
    fn sentinels(&self) -> Sentinels {
        Sentinels {
            addrs: self
                .nodes
                .iter()
                .filter_map(|n| n.sentinel_port)
                .map(|port| HostPort::new("127.0.0.1", port))
                .collect(),
            password: self.sentinel_password.clone(),
            timeout: self.io_timeout,
        }
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
        let address = current_master(&self.coordinator, &self.sentinels()).await?;
        self.by_address(&address).ok_or_else(|| {
            ChaosError::NoMaster(format!(
                "the master {address} is not a node of {}",
                self.run_dir.display()
            ))
        })
    }

    async fn check_whole(&mut self) -> Result<(), ChaosError> {
        let master = sentinel_master(&self.sentinels(), &self.coordinator.group).await?;
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
            let text = self
                .replication_info(n.port)
                .await
                .map_err(|e| ChaosError::NotWhole(e.to_string()))?;
            let info = info_fields(&text);
            let get = |k: &str| info.get(k).copied().unwrap_or("?");
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
