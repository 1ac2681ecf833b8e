//! A multi-node Docker swarm on one machine, for the multi-node tests: extra `dockerd`s, each in
//! a network namespace of its own joined to a host bridge by a veth pair, joined to the host's
//! swarm (workers, or managers for the three-manager variant).
//!
//! - [`plan`]: the names and addresses of a rig (a pure function);
//! - [`Rig::create`]: builds it (removing first whatever a killed run left);
//! - faults: [`Rig::cut`] / [`Rig::heal`] (the node's link down and up: a real partition),
//!   [`Rig::kill_engine`] / [`Rig::start_engine`] (the host dies: its dockerd, containerd and
//!   containers SIGKILLed; brought back on the same data);
//! - [`Rig::teardown`]: demotes, leaves, kills, `docker node rm --force`, and removes the
//!   namespaces, links, bridge, iptables rules, cgroups and data directories, then checks that
//!   none is left ([`leftovers`]). `Drop` does the same (best effort) when a test panics.
//!
//! The recipe's pitfalls (DESIGN.md section 5), each handled here: `ip netns exec` remounts
//! /sys, so the node's start script mounts the host's cgroup hierarchies again; every daemon
//! has its own `--config-file` (data-root, exec-root, pidfile, socket, cgroup-parent), since
//! /etc/docker/daemon.json would be read otherwise; `DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`
//! keeps the swarm agent from trying to pull images it has; the host's FORWARD policy is DROP,
//! so the bridge is allowed in `DOCKER-USER`; each node has its own hostname (`unshare --uts`).
//! Images reach the nodes through `deploy/up.sh --engine` (docker save | docker -H load).
//! Before managers join, the host's manager takes a raft snapshot ([`snapshot_raft`]): a new
//! manager replicates the log after the last snapshot, which on a swarm with a long history
//! outlasts `docker swarm join`.
//!
//! Needs root, `ip`, `iptables`, `unshare` and a Docker engine that is (or may become) a swarm
//! manager advertising an address the namespaces can reach (not loopback). One rig at a time on
//! a machine (fixed names under [`PREFIX`]); the tests run under the swarm lock.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Every name the rig creates starts with this (namespaces, links, hostnames, directories).
pub const PREFIX: &str = "rhmn";

/// The iptables comment of the rig's rules.
const RULE_COMMENT: &str = "rhmn-rig";

/// The rig's subnet: its bridge's address and prefix length (every node's address is in it).
const RIG_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
const RIG_PREFIX_LEN: u8 = 24;

/// The label `deploy/up.sh` places node N's services by.
pub const NODE_LABEL: &str = "redis-ha.node";

/// The label (`=true`) of the rig's control nodes: a stack deployed with
/// [`CONTROL_PLACEMENT`] runs its coordinator and reloader there.
pub const CONTROL_LABEL: &str = "redis-ha.control";

/// The placement constraint (`REDIS_HA_PLACEMENT_CONTROL`) that keeps the coordinator and the
/// reloader on the rig's control nodes.
pub const CONTROL_PLACEMENT: &str = "node.labels.redis-ha.control==true";

#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command}: {status}: {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid rig: {0}")]
    Plan(String),
    #[error("the host's swarm: {0}")]
    Swarm(String),
    #[error("node {node}: {why}")]
    Node { node: String, why: String },
    #[error("left behind: {}", .0.join("; "))]
    Leftovers(Vec<String>),
}

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RigOptions {
    /// Extra nodes (the host is one more).
    pub nodes: u8,
    /// How many of the extra nodes join as managers (2 gives the three-manager variant): the
    /// first ones, or the control nodes with `control_managers`.
    pub managers: u8,
    /// Label the first three extra nodes `redis-ha.node=1..3`.
    pub labels: bool,
    /// Label the last `control` extra nodes [`CONTROL_LABEL`]`=true` (none of nodes 1..3
    /// when those carry `redis-ha.node`).
    pub control: u8,
    /// The control nodes are the managers (`managers` must then equal `control`): where the
    /// stack's default placement puts the coordinator and the reloader, so that losing one's
    /// host is losing a manager.
    pub control_managers: bool,
    /// The extra daemons' upstream DNS (`dockerd --dns`). `None`: [`RigPlan::silent_dns`], an
    /// address of the rig's subnet that nobody holds, so lookups that leave Docker's DNS get
    /// no answer at all (the worst upstream a node can have, and what a namespace without a
    /// route to the host's resolver has anyway).
    pub dns: Option<Ipv4Addr>,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            managers: 0,
            labels: true,
            control: 0,
            control_managers: false,
            dns: None,
        }
    }
}

/// One extra node: its names, address and places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// 1-based.
    pub index: u8,
    /// Hostname, network namespace and swarm node name.
    pub name: String,
    /// The host side of its veth pair.
    pub veth: String,
    pub addr: Ipv4Addr,
    pub manager: bool,
    /// `redis-ha.node` label value.
    pub label: Option<u8>,
    /// Labelled [`CONTROL_LABEL`]`=true`.
    pub control: bool,
    /// Data root (images, containers, volumes, swarm state) and its config file.
    pub root: PathBuf,
    /// Exec root, pid file, socket, log.
    pub run: PathBuf,
}

impl NodePlan {
    pub fn socket(&self) -> PathBuf {
        self.run.join("docker.sock")
    }

    /// `docker -H` for this node.
    pub fn engine(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The node's cgroup parent (one directory per controller hierarchy).
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.name)
    }

    /// Its `dockerd --config-file` (JSON).
    pub fn daemon_config(&self, dns: Ipv4Addr, storage_driver: &str) -> String {
        let v = serde_json::json!({
            "data-root": self.root.join("data"),
            "exec-root": self.run.join("exec"),
            "pidfile": self.run.join("docker.pid"),
            "hosts": [self.engine()],
            "cgroup-parent": self.cgroup_parent(),
            "storage-driver": storage_driver,
            "dns": [dns.to_string()],
            "mtu": 1400,
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "3"},
        });
        v.to_string()
    }
}

/// A rig's names and addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RigPlan {
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    pub silent_dns: Ipv4Addr,
    pub dns: Ipv4Addr,
    pub nodes: Vec<NodePlan>,
}

impl RigPlan {
    /// The network address of the rig's subnet.
    pub fn subnet(&self) -> Ipv4Addr {
        let mask = u32::MAX << (32 - u32::from(self.prefix_len));
        Ipv4Addr::from(u32::from(self.gateway) & mask)
    }
}

/// The rig of `opts`: bridge `rhmn-br` on 10.213.0.1/24, node i at 10.213.0.(10+i) in
/// namespace `rhmn-n<i>` with veth `rhmn-v<i>`, managers first (or the control nodes, the last
/// ones), labels 1..3 on nodes 1..3.
pub fn plan(opts: &RigOptions) -> Result<RigPlan, RigError> {
    if opts.nodes == 0 || opts.nodes > 20 {
        return Err(RigError::Plan(format!(
            "1 to 20 extra nodes, not {}",
            opts.nodes
        )));
    }
    if opts.control > opts.nodes || (opts.labels && opts.control > opts.nodes.saturating_sub(3)) {
        return Err(RigError::Plan(format!(
            "{} control nodes among {} nodes ({})",
            opts.control,
            opts.nodes,
            if opts.labels {
                "three of them Redis nodes"
            } else {
                "no Redis nodes"
            }
        )));
    }
    if opts.managers > opts.nodes {
        return Err(RigError::Plan(format!(
            "{} managers among {} nodes",
            opts.managers, opts.nodes
        )));
    }
    if opts.control_managers && opts.managers != opts.control {
        return Err(RigError::Plan(format!(
            "the control nodes as managers: {} managers, {} control nodes",
            opts.managers, opts.control
        )));
    }
    // The host is a manager too: an even count of managers tolerates no more failures than
    // one fewer, and a rig that loses its quorum breaks the host's swarm.
    if (opts.managers + 1) % 2 == 0 {
        return Err(RigError::Plan(format!(
            "{} extra managers make {} with the host: use an odd count",
            opts.managers,
            opts.managers + 1
        )));
    }
    let silent_dns = Ipv4Addr::new(10, 213, 0, 254);
    let nodes = (1..=opts.nodes)
        .map(|i| {
            let control = i > opts.nodes - opts.control;
            NodePlan {
                index: i,
                name: format!("{PREFIX}-n{i}"),
                veth: format!("{PREFIX}-v{i}"),
                addr: Ipv4Addr::new(10, 213, 0, 10 + i),
                manager: if opts.control_managers {
                    control
                } else {
                    i <= opts.managers
                },
                label: (opts.labels && i <= 3).then_some(i),
                control,
                root: PathBuf::from(format!("/var/lib/{PREFIX}/n{i}")),
                run: PathBuf::from(format!("/run/{PREFIX}/n{i}")),
            }
        })
        .collect();
    Ok(RigPlan {
        bridge: format!("{PREFIX}-br"),
        gateway: RIG_GATEWAY,
        prefix_len: RIG_PREFIX_LEN,
        silent_dns,
        dns: opts.dns.unwrap_or(silent_dns),
        nodes,
    })
}

/// The shell lines that mount the host's cgroup hierarchies again inside `ip netns exec`
/// (which mounts a fresh /sys): from the host's /proc/mounts text, every `cgroup`/`cgroup2`
/// mount under /sys/fs/cgroup, after the tmpfs that holds them when there is one.
pub fn cgroup_mounts(proc_mounts: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for l in proc_mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [_, dir, fstype, opts, ..] = f[..] else {
            continue;
        };
        if !dir.starts_with("/sys/fs/cgroup") {
            continue;
        }
        // Options the kernel reports that mount does not take back.
        let keep: Vec<&str> = opts
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro" | "relatime" | "nosuid" | "nodev" | "noexec"))
            .collect();
        match fstype {
            "tmpfs" if dir == "/sys/fs/cgroup" => {
                lines.push("mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup".to_owned());
            }
            "cgroup" => lines.push(format!(
                "mkdir -p {dir} && mount -t cgroup -o {} cgroup {dir}",
                keep.join(",")
            )),
            "cgroup2" => lines.push(format!("mkdir -p {dir} && mount -t cgroup2 cgroup2 {dir}")),
            _ => {}
        }
    }
    lines
}

/// `program args`' stdout, or its failure.
fn run(program: &str, args: &[&str]) -> Result<String, RigError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RigError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RigError::Failed {
            command: format!("{program} {}", args.join(" ")),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The iptables binary (root's PATH may lack /usr/sbin).
fn iptables_program() -> &'static str {
    ["/usr/sbin/iptables", "/sbin/iptables"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("iptables")
}

fn iptables(args: &[&str]) -> Result<String, RigError> {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    run(iptables_program(), &all)
}

/// `docker args` (this host's engine).
pub fn docker(args: &[&str]) -> Result<String, RigError> {
    run("docker", args)
}

/// `docker -H engine args`.
pub fn docker_on(engine: &str, args: &[&str]) -> Result<String, RigError> {
    let mut all = vec!["-H", engine];
    all.extend_from_slice(args);
    run("docker", &all)
}

/// Polls `probe` every 200 ms until it returns `Some`, for at most `timeout`.
fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The rig's namespaces that exist now.
fn our_netns() -> Vec<String> {
    run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .map(str::to_owned)
        .collect()
}

/// The rig's links on the host.
fn our_links() -> Vec<String> {
    run("ip", &["-br", "link"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .collect()
}

/// The rig's iptables rules (`-S DOCKER-USER` lines).
fn our_rules() -> Vec<String> {
    iptables(&["-S", "DOCKER-USER"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(RULE_COMMENT))
        .map(str::to_owned)
        .collect()
}

/// A node of the host's swarm, as its manager sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmNode {
    pub id: String,
    /// Empty until the node has reported its description (a join under way).
    pub hostname: String,
    /// The address it reaches the managers from.
    pub addr: String,
    /// Its desired role (`manager` or `worker`).
    pub role: String,
    /// Its raft membership: `None` when it is no member, else its reachability
    /// (`reachable`, `unreachable`, `unknown`) and whether it leads.
    pub raft: Option<(String, bool)>,
}

/// The `docker node inspect` format [`parse_swarm_node`] reads.
const NODE_FORMAT: &str = "{{.ID}}|{{.Description.Hostname}}|{{.Status.Addr}}|{{.Spec.Role}}|\
    {{if .ManagerStatus}}{{.ManagerStatus.Reachability}}|{{.ManagerStatus.Leader}}{{end}}";

/// One line of [`NODE_FORMAT`].
pub fn parse_swarm_node(line: &str) -> Option<SwarmNode> {
    let f: Vec<&str> = line.trim().split('|').collect();
    let [id, hostname, addr, role, rest @ ..] = &f[..] else {
        return None;
    };
    if id.is_empty() {
        return None;
    }
    let raft = match rest {
        [reach, leader] if !reach.is_empty() => Some(((*reach).to_owned(), *leader == "true")),
        _ => None,
    };
    Some(SwarmNode {
        id: (*id).to_owned(),
        hostname: (*hostname).to_owned(),
        addr: (*addr).to_owned(),
        role: (*role).to_owned(),
        raft,
    })
}

impl SwarmNode {
    /// A rig's node: named after the rig, or (a join under way has no hostname yet) reaching
    /// the swarm from the rig's subnet.
    pub fn is_rigs(&self) -> bool {
        let in_subnet = self.addr.parse::<Ipv4Addr>().is_ok_and(|a| {
            let mask = u32::MAX << (32 - u32::from(RIG_PREFIX_LEN));
            u32::from(a) & mask == u32::from(RIG_GATEWAY) & mask
        });
        self.hostname.starts_with(&format!("{PREFIX}-")) || in_subnet
    }
}

/// Every node of the host's swarm (none when the host is no manager).
pub fn swarm_nodes() -> Vec<SwarmNode> {
    let ids = docker(&["node", "ls", "-q"]).unwrap_or_default();
    // One at a time: a node removed meanwhile fails only its own inspect.
    ids.split_whitespace()
        .filter_map(|id| docker(&["node", "inspect", "-f", NODE_FORMAT, id]).ok())
        .filter_map(|l| parse_swarm_node(&l))
        .collect()
}

/// The order to demote the raft members among `nodes` in, so that each demotion leaves the
/// reachable managers a quorum of the smaller raft (the swarm refuses one that would not):
/// the members it cannot reach first, then the reachable ones, the leader last (demoting it
/// moves the leadership). Nodes that are no raft members need no demotion (`docker node rm
/// --force` takes them).
pub fn demotion_order(nodes: &[SwarmNode]) -> Vec<String> {
    let mut members: Vec<(u8, &str)> = nodes
        .iter()
        .filter_map(|n| {
            let (reach, leader) = n.raft.as_ref()?;
            let rank = match (reach.as_str(), leader) {
                (_, true) => 2,
                ("reachable", false) => 1,
                _ => 0,
            };
            Some((rank, n.id.as_str()))
        })
        .collect();
    members.sort();
    members.into_iter().map(|(_, id)| id.to_owned()).collect()
}

/// The cgroup directories of the rig's nodes, in every hierarchy.
fn our_cgroups() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    for h in hierarchies.flatten() {
        if let Ok(entries) = std::fs::read_dir(h.path()) {
            out.extend(
                entries
                    .flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("{PREFIX}-"))
                    })
                    .map(|e| e.path()),
            );
        }
    }
    out
}

/// Everything of a rig that exists on this machine now (empty: nothing left).
pub fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    left.extend(our_netns().into_iter().map(|n| format!("netns {n}")));
    left.extend(our_links().into_iter().map(|n| format!("link {n}")));
    left.extend(our_rules().into_iter().map(|r| format!("iptables {r}")));
    left.extend(
        rig_swarm_nodes()
            .into_iter()
            .map(|n| format!("swarm node {} ({}, {})", n.hostname, n.id, n.addr)),
    );
    left.extend(
        our_cgroups()
            .into_iter()
            .map(|p| format!("cgroup {}", p.display())),
    );
    for dir in [format!("/var/lib/{PREFIX}"), format!("/run/{PREFIX}")] {
        if Path::new(&dir).exists() {
            left.push(format!("directory {dir}"));
        }
    }
    left
}

/// Every pid in the cgroups under `dir` (its subdirectories too).
fn cgroup_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                cgroup_pids(&e.path(), out);
            }
        }
    }
}

/// Removes a cgroup directory tree, deepest first (cgroupfs refuses rmdir of a non-empty one).
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The processes of a node: everything in its network namespace (dockerd, containerd, the
/// shims, fuse-overlayfs) and in its cgroups (the containers, in namespaces of their own).
fn node_pids(name: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = run("ip", &["netns", "pids", name])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for cg in our_cgroups() {
        if cg.file_name().is_some_and(|f| f == name) {
            cgroup_pids(&cg, &mut pids);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// SIGKILLs a node's processes until none is left (a process may fork while we kill).
fn kill_node_processes(name: &str) -> Result<(), RigError> {
    let gone = wait_for(Duration::from_secs(20), || {
        let pids = node_pids(name);
        if pids.is_empty() {
            return Some(());
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        None
    });
    gone.ok_or_else(|| RigError::Node {
        node: name.to_owned(),
        why: format!("processes still alive: {:?}", node_pids(name)),
    })
}

/// The node ids the rig's engines that answer have (a node whose join is under way may not be
/// known by hostname or address yet).
fn engine_node_ids() -> Vec<String> {
    our_netns()
        .iter()
        .filter_map(|ns| {
            let engine = format!("unix:///run/{PREFIX}/{}/docker.sock", ns_suffix(ns));
            let id = docker_on(&engine, &["info", "-f", "{{.Swarm.NodeID}}"]).ok()?;
            let id = id.trim();
            (!id.is_empty()).then(|| id.to_owned())
        })
        .collect()
}

/// The rig's swarm nodes: by hostname, address or the engines' own node ids.
fn rig_swarm_nodes() -> Vec<SwarmNode> {
    let ids = engine_node_ids();
    swarm_nodes()
        .into_iter()
        .filter(|n| n.is_rigs() || ids.contains(&n.id))
        .collect()
}

/// Takes every rig node out of the swarm's raft, one at a time in [`demotion_order`], each
/// only once the one before is out: killing a member that the raft still counts costs the
/// host's swarm its quorum (host and two rig managers: two dead of three). A node with the
/// manager role that is no member (a join that never reached the raft) is left to `docker
/// node rm --force`, which takes it. A member that cannot be taken out is an error: the
/// caller must not kill it.
pub fn demote_managers() -> Result<(), RigError> {
    demote_where(|_| true)
}

/// [`demote_managers`] for the rig nodes `which` picks.
fn demote_where(which: impl Fn(&SwarmNode) -> bool) -> Result<(), RigError> {
    let timeout = Duration::from_secs(120);
    let mut last = String::new();
    let nodes = || -> Vec<SwarmNode> { rig_swarm_nodes().into_iter().filter(&which).collect() };
    let out = wait_for(timeout, || {
        let Some(id) = demotion_order(&nodes()).into_iter().next() else {
            return Some(Ok(()));
        };
        // Asked again while the swarm takes an accepted demotion out of the raft: harmless
        // ("already a worker"), and the next member waits for it.
        last = match docker(&["node", "demote", &id]) {
            Ok(_) => format!("{id} demoted, still a raft member"),
            Err(e) => {
                // The rig's managers died with a killed run: no demotion without a leader.
                if leaderless(&e) {
                    if let Err(restore) = restore_leadership() {
                        return Some(Err(restore));
                    }
                }
                e.to_string()
            }
        };
        None
    });
    out.unwrap_or_else(|| Err(stuck_members(&nodes(), timeout, &last)))
}

/// The error of a demotion that did not finish.
fn stuck_members(nodes: &[SwarmNode], timeout: Duration, last: &str) -> RigError {
    let members: Vec<String> = nodes
        .iter()
        .filter_map(|n| {
            let (reach, leader) = n.raft.as_ref()?;
            Some(format!("{} {} {reach} leader={leader}", n.id, n.hostname))
        })
        .collect();
    RigError::Swarm(format!(
        "rig nodes still raft members after {timeout:?} of demotion: {members:?} (last: \
         {last}); not removed, so that the swarm keeps its quorum (docker node demote ID, \
         then run the teardown again)"
    ))
}

/// True when a swarm command failed for want of a raft leader (too few managers online).
pub fn leaderless(e: &RigError) -> bool {
    let RigError::Failed { stderr, .. } = e else {
        return false;
    };
    let stderr = stderr.to_lowercase();
    stderr.contains("does not have a leader") || stderr.contains("lost quorum")
}

/// A run killed while managers of its rig were in the host's swarm (a session or CI step
/// stopped mid-test: the rig's engines die with it) leaves the swarm without a leader: nothing
/// can be demoted or removed and every stack command fails. When the rig's own traces are there
/// (its namespaces or state directory) and the swarm has no leader, the host's manager is made
/// the only one again from its own state, as an operator would (`docker swarm init
/// --force-new-cluster`). True when it did.
pub fn restore_leadership() -> Result<bool, RigError> {
    let ours = !our_netns().is_empty() || Path::new(&format!("/var/lib/{PREFIX}")).exists();
    if !ours {
        return Ok(false);
    }
    let info = docker(&[
        "info",
        "-f",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeAddr}}",
    ])?;
    let mut words = info.split_whitespace();
    let (Some("active"), Some("true"), Some(addr)) = (words.next(), words.next(), words.next())
    else {
        return Ok(false);
    };
    match docker(&["node", "ls", "-q"]) {
        Ok(_) => return Ok(false),
        Err(e) if leaderless(&e) => {}
        Err(e) => return Err(e),
    }
    let addr = addr.to_owned();
    docker(&[
        "swarm",
        "init",
        "--force-new-cluster",
        "--advertise-addr",
        &addr,
    ])?;
    wait_for(Duration::from_secs(60), || {
        docker(&["node", "ls", "-q"]).ok()
    })
    .ok_or_else(|| RigError::Swarm("no leader after --force-new-cluster".into()))?;
    Ok(true)
}

/// Removes whatever a rig left on this machine (a test killed before its teardown): its swarm
/// nodes, processes, cgroups, namespaces, links, rules and directories. True when the host's
/// swarm had no leader and was made a one-manager swarm again first ([`restore_leadership`]).
pub fn remove_leftovers() -> Result<bool, RigError> {
    let restored = restore_leadership()?;
    // Demote first: removing a manager that the swarm still counts would cost it its quorum.
    demote_managers()?;
    for ns in our_netns() {
        let engine = format!("unix:///run/{PREFIX}/{}/docker.sock", ns_suffix(&ns));
        let _ = docker_on(&engine, &["swarm", "leave", "--force"]);
        kill_node_processes(&ns)?;
    }
    for cg in our_cgroups() {
        let mut pids = Vec::new();
        cgroup_pids(&cg, &mut pids);
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    // A join still under way when its engine was killed may have reached the raft since the
    // first demotion: an unreachable member now, which only a demotion takes out.
    demote_managers()?;
    for n in rig_swarm_nodes() {
        let _ = docker(&["node", "rm", "--force", &n.id]);
    }
    for cg in our_cgroups() {
        wait_for(Duration::from_secs(5), || {
            remove_cgroup(&cg);
            (!cg.exists()).then_some(())
        });
    }
    for ns in our_netns() {
        run("ip", &["netns", "del", &ns])?;
    }
    for link in our_links() {
        // A veth goes with its peer's namespace; only what is still there.
        let _ = run("ip", &["link", "del", &link]);
    }
    for rule in our_rules() {
        if let Some(spec) = rule.strip_prefix("-A ") {
            let mut args = vec!["-D"];
            args.extend(spec.split_whitespace().map(|w| w.trim_matches('"')));
            iptables(&args)?;
        }
    }
    for dir in [format!("/var/lib/{PREFIX}"), format!("/run/{PREFIX}")] {
        if Path::new(&dir).exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| RigError::Io {
                path: dir.clone().into(),
                source,
            })?;
        }
    }
    Ok(restored)
}

/// `rhmn-n3` → `n3` (the node's directory name).
fn ns_suffix(ns: &str) -> &str {
    ns.strip_prefix(&format!("{PREFIX}-")).unwrap_or(ns)
}

/// A live rig. Tear it down with [`Rig::teardown`] (checked); dropping it does the same,
/// best effort, and says what it could not remove.
#[derive(Debug)]
pub struct Rig {
    pub plan: RigPlan,
    /// The host's swarm address (what the nodes join).
    pub host_addr: String,
    /// Each node's swarm node id, by index - 1.
    ids: Vec<String>,
    storage_driver: String,
    cgroup_script: String,
    /// The started `ip netns exec ... dockerd` processes, reaped after a kill: an unreaped
    /// dockerd stays a zombie whose pid its restart takes for a running daemon (pid file).
    children: std::sync::Mutex<Vec<std::process::Child>>,
    done: bool,
}

impl Rig {
    /// Builds the rig of `opts` and waits until every node is Ready in the host's swarm.
    pub fn create(opts: &RigOptions) -> Result<Self, RigError> {
        let plan = plan(opts)?;
        remove_leftovers()?;
        let host_addr = ensure_swarm()?;
        let storage_driver = docker(&["info", "-f", "{{.Driver}}"])?.trim().to_owned();
        let mounts = std::fs::read_to_string("/proc/mounts").map_err(|source| RigError::Io {
            path: "/proc/mounts".into(),
            source,
        })?;
        let cgroup_script = cgroup_mounts(&mounts).join("\n");
        let mut rig = Self {
            plan,
            host_addr,
            ids: Vec::new(),
            storage_driver,
            cgroup_script,
            children: std::sync::Mutex::new(Vec::new()),
            done: false,
        };
        // From here on a failure drops `rig`, which removes what was made.
        rig.make_bridge()?;
        for i in 0..rig.plan.nodes.len() {
            rig.make_node(i)?;
        }
        for i in 0..rig.plan.nodes.len() {
            rig.start_engine_at(i)?;
        }
        if rig.plan.nodes.iter().any(|n| n.manager) {
            // Without a fresh snapshot the joins are slow, not wrong (and tried again): said,
            // not fatal. A snapshot interval not restored is fatal (snapshot_raft's error).
            if !snapshot_raft()? {
                eprintln!("rig: no new raft snapshot within 60 s; managers join on the whole log");
            }
        }
        for i in 0..rig.plan.nodes.len() {
            let id = rig.join(i)?;
            rig.ids.push(id);
        }
        rig.wait_ready(Duration::from_secs(60))?;
        Ok(rig)
    }

    pub fn nodes(&self) -> &[NodePlan] {
        &self.plan.nodes
    }

    /// The node labelled `redis-ha.node=label`.
    pub fn labelled(&self, label: u8) -> Option<&NodePlan> {
        self.plan.nodes.iter().find(|n| n.label == Some(label))
    }

    /// `docker -H` of every extra node (for `deploy/up.sh --engine`).
    pub fn engines(&self) -> Vec<String> {
        self.plan.nodes.iter().map(NodePlan::engine).collect()
    }

    /// The swarm node id of extra node `index` (1-based).
    pub fn node_id(&self, index: u8) -> Option<&str> {
        self.ids
            .get(usize::from(index).checked_sub(1)?)
            .map(String::as_str)
    }

    fn node(&self, index: u8) -> Result<&NodePlan, RigError> {
        self.plan
            .nodes
            .iter()
            .find(|n| n.index == index)
            .ok_or_else(|| RigError::Plan(format!("no node {index}")))
    }

    fn make_bridge(&self) -> Result<(), RigError> {
        let p = &self.plan;
        run("ip", &["link", "add", &p.bridge, "type", "bridge"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/{}", p.gateway, p.prefix_len),
                "dev",
                &p.bridge,
            ],
        )?;
        run("ip", &["link", "set", &p.bridge, "up"])?;
        // The host's packets to the nodes leave with its swarm address as their source: the
        // overlay's VXLAN traffic from the host carries the bridge's address otherwise, which
        // no node knows as a swarm peer, and container traffic host -> node is lost.
        run(
            "ip",
            &[
                "route",
                "replace",
                &format!("{}/{}", p.subnet(), p.prefix_len),
                "dev",
                &p.bridge,
                "proto",
                "kernel",
                "scope",
                "link",
                "src",
                &self.host_addr,
            ],
        )?;
        // The host's FORWARD policy is DROP (Docker's): node to node and node to host traffic
        // crosses the bridge.
        for dir in ["-i", "-o"] {
            iptables(&[
                "-I",
                "DOCKER-USER",
                dir,
                &p.bridge,
                "-m",
                "comment",
                "--comment",
                RULE_COMMENT,
                "-j",
                "ACCEPT",
            ])?;
        }
        Ok(())
    }

    fn make_node(&self, i: usize) -> Result<(), RigError> {
        let n = &self.plan.nodes[i];
        let ns = n.name.as_str();
        run("ip", &["netns", "add", ns])?;
        run(
            "ip",
            &[
                "link", "add", &n.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        )?;
        run(
            "ip",
            &["link", "set", &n.veth, "master", &self.plan.bridge, "up"],
        )?;
        let cidr = format!("{}/{}", n.addr, self.plan.prefix_len);
        run("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
        run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &self.plan.gateway.to_string(),
            ],
        )?;
        for dir in [&n.root, &n.run] {
            std::fs::create_dir_all(dir).map_err(|source| RigError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let config = n.root.join("daemon.json");
        std::fs::write(
            &config,
            n.daemon_config(self.plan.dns, &self.storage_driver),
        )
        .map_err(|source| RigError::Io {
            path: config.clone(),
            source,
        })?;
        Ok(())
    }

    /// Starts node `i`'s dockerd (in its namespace, under its hostname, its cgroups mounted
    /// again) and waits until it answers.
    fn start_engine_at(&self, i: usize) -> Result<(), RigError> {
        let n = &self.plan.nodes[i];
        self.reap();
        let script = format!(
            "set -e\nhostname {name}\n{cgroups}\nexec dockerd --config-file {config}",
            name = n.name,
            cgroups = self.cgroup_script,
            config = n.root.join("daemon.json").display()
        );
        let log_path = n.run.join("dockerd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| RigError::Io {
                path: log_path.clone(),
                source,
            })?;
        let err = log.try_clone().map_err(|source| RigError::Io {
            path: log_path.clone(),
            source,
        })?;
        use std::os::unix::process::CommandExt;
        // Every process of the node is dead here (first start, or after kill_engine).
        let _ = std::fs::remove_file(n.run.join("docker.pid"));
        let child = Command::new("ip")
            .args([
                "netns", "exec", &n.name, "unshare", "--uts", "--", "sh", "-c",
            ])
            .arg(&script)
            .env("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Its own process group: a Ctrl-C of the test run is not the node's death.
            .process_group(0)
            .spawn()
            .map_err(|source| RigError::Spawn {
                program: "ip netns exec ... dockerd".into(),
                source,
            })?;
        self.lock_children().push(child);
        let engine = n.engine();
        wait_for(Duration::from_secs(30), || {
            docker_on(&engine, &["version", "-f", "{{.Server.Version}}"]).ok()
        })
        .map(|_| ())
        .ok_or_else(|| RigError::Node {
            node: n.name.clone(),
            why: format!(
                "dockerd does not answer after 30 s (log {}): {}",
                log_path.display(),
                tail(&log_path)
            ),
        })
    }

    /// Joins node `i` to the host's swarm (as a manager when planned), labels it; its id. A
    /// join that fails is undone (left, taken out of the raft, its node removed) and tried
    /// again, up to three times in all.
    fn join(&self, i: usize) -> Result<String, RigError> {
        let n = &self.plan.nodes[i];
        let mut attempt = 1;
        while let Err(e) = self.join_once(n) {
            if attempt == 3 {
                return Err(e);
            }
            eprintln!("rig: {} failed to join (attempt {attempt}): {e}", n.name);
            self.undo_join(n)?;
            attempt += 1;
        }
        let id = docker_on(&n.engine(), &["info", "-f", "{{.Swarm.NodeID}}"])?
            .trim()
            .to_owned();
        if id.is_empty() {
            return Err(RigError::Node {
                node: n.name.clone(),
                why: "joined, but has no swarm node id".into(),
            });
        }
        if let Some(label) = n.label {
            docker(&[
                "node",
                "update",
                "--label-add",
                &format!("{NODE_LABEL}={label}"),
                &id,
            ])?;
        }
        if n.control {
            docker(&[
                "node",
                "update",
                "--label-add",
                &format!("{CONTROL_LABEL}=true"),
                &id,
            ])?;
        }
        Ok(id)
    }

    /// One `docker swarm join` of `n`, waited for until its engine says it is in the swarm.
    fn join_once(&self, n: &NodePlan) -> Result<(), RigError> {
        let role = if n.manager { "manager" } else { "worker" };
        let token = docker(&["swarm", "join-token", "-q", role])?;
        let addr = n.addr.to_string();
        let joined = docker_on(
            &n.engine(),
            &[
                "swarm",
                "join",
                "--token",
                token.trim(),
                "--advertise-addr",
                &addr,
                "--listen-addr",
                &format!("{addr}:2377"),
                &format!("{}:2377", self.host_addr),
            ],
        );
        match joined {
            Ok(_) => return Ok(()),
            // A manager's join waits for the raft log; on a loaded machine the CLI gives up
            // first while the join goes on: wait for its end rather than leave a half-joined
            // manager behind.
            Err(RigError::Failed { stderr, .. })
                if stderr.contains("continue in the background") => {}
            Err(e) => return Err(e),
        }
        let log = n.run.join("dockerd.log");
        let mut last = String::new();
        let state = wait_for(Duration::from_secs(90), || {
            let s = docker_on(
                &n.engine(),
                &["info", "-f", "{{.Swarm.LocalNodeState}}|{{.Swarm.Error}}"],
            )
            .ok()?;
            last = s.trim().to_owned();
            // Pending goes on; active is done; error or inactive: the join has failed.
            (!last.starts_with("pending")).then(|| last.clone())
        });
        match state {
            Some(s) if s.starts_with("active") => Ok(()),
            s => Err(RigError::Node {
                node: n.name.clone(),
                why: format!(
                    "its join timed out, then {} (log {}): {}",
                    match s {
                        Some(s) => format!("failed: {s}"),
                        None => format!("was still under way after 90 s: {last}"),
                    },
                    log.display(),
                    tail(&log)
                ),
            }),
        }
    }

    /// Undoes a failed join of `n`: its engine leaves, the swarm takes it out of the raft if it
    /// got there (unreachable now: the other managers keep their quorum) and forgets it.
    fn undo_join(&self, n: &NodePlan) -> Result<(), RigError> {
        let id = docker_on(&n.engine(), &["info", "-f", "{{.Swarm.NodeID}}"])
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let _ = docker_on(&n.engine(), &["swarm", "leave", "--force"]);
        let addr = n.addr.to_string();
        let its = |s: &SwarmNode| s.id == id || s.addr == addr || s.hostname == n.name;
        demote_where(its)?;
        for s in rig_swarm_nodes().into_iter().filter(its) {
            docker(&["node", "rm", "--force", &s.id])?;
        }
        Ok(())
    }

    /// Waits until every extra node is Ready (and, a manager, Reachable) in the swarm.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), RigError> {
        let mut last = String::new();
        wait_for(timeout, || {
            let ls = docker(&[
                "node",
                "ls",
                "--format",
                "{{.ID}} {{.Status}} {{.ManagerStatus}}",
            ])
            .ok()?;
            last = ls.clone();
            let all = self.plan.nodes.iter().zip(&self.ids).all(|(n, id)| {
                ls.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.first() == Some(&id.as_str())
                        && f.get(1) == Some(&"Ready")
                        && (!n.manager || matches!(f.get(2), Some(&"Reachable" | &"Leader")))
                })
            });
            all.then_some(())
        })
        .ok_or_else(|| RigError::Swarm(format!("nodes not ready after {timeout:?}:\n{last}")))
    }

    /// Cuts node `index` off (its link down): the swarm, the overlay networks and every client
    /// lose it; what runs on it goes on, alone.
    pub fn cut(&self, index: u8) -> Result<(), RigError> {
        let n = self.node(index)?;
        run("ip", &["link", "set", &n.veth, "down"]).map(|_| ())
    }

    /// Undoes [`Rig::cut`].
    pub fn heal(&self, index: u8) -> Result<(), RigError> {
        let n = self.node(index)?;
        run("ip", &["link", "set", &n.veth, "up"]).map(|_| ())
    }

    /// Node `index`'s host dies: dockerd, containerd and every container SIGKILLed at once.
    pub fn kill_engine(&self, index: u8) -> Result<(), RigError> {
        let n = self.node(index)?;
        kill_node_processes(&n.name)?;
        self.reap();
        Ok(())
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, Vec<std::process::Child>> {
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for the started processes that have exited (keeps the others).
    fn reap(&self) {
        self.lock_children()
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
    }

    /// Brings a killed node back on its data (it rejoins the swarm by itself), as after a
    /// reboot: with an empty exec-root, no iptables rules and no bridges of the dead daemon.
    /// A host's `/run` is a tmpfs; the dead daemon's exec-root here still holds its overlay
    /// namespaces' files (their bind mounts died with the daemon's mount namespace), on which
    /// the new daemon fails to set up the overlay networks (`Could not open netlink handle
    /// during vni population`). And the node's network namespace outlives the daemon, with its
    /// NAT rules: a published port's stale rule can send connections to the old container's
    /// address, now another container's (the restarted Redis then refused on its published
    /// port for minutes, now and then).
    pub fn start_engine(&self, index: u8) -> Result<(), RigError> {
        let i = self
            .plan
            .nodes
            .iter()
            .position(|n| n.index == index)
            .ok_or_else(|| RigError::Plan(format!("no node {index}")))?;
        let name = self.plan.nodes[i].name.clone();
        let iptables = iptables_program();
        for table in ["nat", "filter", "mangle"] {
            for op in ["-F", "-X"] {
                run(
                    "ip",
                    &["netns", "exec", &name, iptables, "-w", "-t", table, op],
                )?;
            }
        }
        for link in ["docker_gwbridge", "docker0"] {
            // Absent when the daemon never made it: nothing to remove.
            let _ = run("ip", &["-n", &name, "link", "del", link]);
        }
        let exec = self.plan.nodes[i].run.join("exec");
        if exec.exists() {
            std::fs::remove_dir_all(&exec).map_err(|source| RigError::Io {
                path: exec.clone(),
                source,
            })?;
        }
        self.start_engine_at(i)
    }

    /// With `REDIS_HA_RIG_LOGS=DIR`, copies every node's dockerd log there (the teardown
    /// deletes them with the node's directories), so that a failed run can be read afterwards;
    /// in a directory per rig (`<unix time>-<node count>`): a later rig has the same node names.
    fn keep_logs(&self) {
        let Some(dir) = std::env::var_os("REDIS_HA_RIG_LOGS") else {
            return;
        };
        let stamp = redis_ha_common::time::now_ms() / 1000;
        let dir = PathBuf::from(dir).join(format!("{stamp}-{}", self.plan.nodes.len()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("rig logs: {}: {e}", dir.display());
            return;
        }
        for n in &self.plan.nodes {
            let to = dir.join(format!("{}-dockerd.log", n.name));
            if let Err(e) = std::fs::copy(n.run.join("dockerd.log"), &to) {
                eprintln!("rig logs: {}: {e}", to.display());
            }
        }
    }

    /// Removes the rig and checks that nothing of it is left.
    pub fn teardown(mut self) -> Result<(), RigError> {
        self.done = true;
        self.remove()
    }

    fn remove(&self) -> Result<(), RigError> {
        self.keep_logs();
        // Leave cleanly where possible (a manager is demoted first, while the swarm has its
        // quorum), then remove_leftovers kills and deletes whatever remains.
        demote_managers()?;
        for n in &self.plan.nodes {
            let _ = wait_for(Duration::from_secs(10), || {
                docker_on(&n.engine(), &["swarm", "leave", "--force"])
                    .ok()
                    .map(|_| ())
            });
        }
        remove_leftovers()?;
        self.reap();
        let left = leftovers();
        if left.is_empty() {
            Ok(())
        } else {
            Err(RigError::Leftovers(left))
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.remove() {
                eprintln!("rig teardown on drop: {e}");
            }
        }
    }
}

/// The last lines of a log file, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// The newest raft snapshot of the host's manager (`<term>-<index>.snap`, so the names sort in
/// order), if it has one.
fn newest_snapshot(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snap"))
        .max()
}

/// Has the host's manager take a raft snapshot now. A manager that joins gets the swarm's
/// raft from the leader: its snapshot and the log after it. A swarm snapshots only every
/// 10000 entries by default, and the stack tests' services and tasks make large entries (the
/// host's log was 123 MB with no snapshot after one CI run): the first manager then took ~60 s
/// to catch up, longer than `docker swarm join` waits, with every proposal of the two-member
/// raft waiting for it (the leader's "data store lock held too long"). With a fresh snapshot it
/// gets the state, not the history. The snapshot interval is set to 1 until the snapshot is
/// there, then back to what it was. Whether the snapshot came; an error when the interval
/// could not be read or set back.
pub fn snapshot_raft() -> Result<bool, RigError> {
    let root = docker(&["info", "-f", "{{.DockerRootDir}}"])?;
    let dir = Path::new(root.trim()).join("swarm/raft/snap-v3-encrypted");
    let interval = docker(&[
        "info",
        "-f",
        "{{.Swarm.Cluster.Spec.Raft.SnapshotInterval}}",
    ])?
    .trim()
    .to_owned();
    if interval.parse::<u64>().is_err() {
        return Err(RigError::Swarm(format!(
            "the swarm's snapshot interval: {interval:?}"
        )));
    }
    let before = newest_snapshot(&dir);
    let taken = match docker(&["swarm", "update", "--snapshot-interval", "1"]) {
        // The interval is looked at when an entry is applied, and a quiet one-manager swarm
        // applies none: the same update again every 2 s is an entry (a new cluster version).
        Ok(_) => {
            let mut nudged = Instant::now();
            wait_for(Duration::from_secs(60), || {
                let now = newest_snapshot(&dir);
                if now.is_some() && now != before {
                    return Some(());
                }
                if nudged.elapsed() >= Duration::from_secs(2) {
                    let _ = docker(&["swarm", "update", "--snapshot-interval", "1"]);
                    nudged = Instant::now();
                }
                None
            })
        }
        Err(e) => {
            eprintln!("rig: setting the snapshot interval: {e}");
            None
        }
    };
    // Restored whether or not the snapshot came, and tried again while a leader change
    // refuses it: an interval of 1 left behind would snapshot the shared swarm at every entry.
    let mut last = String::new();
    wait_for(Duration::from_secs(30), || {
        match docker(&["swarm", "update", "--snapshot-interval", &interval]) {
            Ok(_) => Some(()),
            Err(e) => {
                last = e.to_string();
                None
            }
        }
    })
    .ok_or_else(|| {
        RigError::Swarm(format!(
            "the snapshot interval is still 1, not {interval} again: {last} \
             (docker swarm update --snapshot-interval {interval})"
        ))
    })?;
    Ok(taken.is_some())
}

/// The host's swarm address: the swarm is initialised (on the default route's source address,
/// with a 1 s dispatcher heartbeat so a lost node is seen in seconds) when the engine is in
/// none; a swarm advertising loopback cannot take other nodes and is refused.
pub fn ensure_swarm() -> Result<String, RigError> {
    let state = docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"])?;
    match state.trim() {
        "active" => {}
        "inactive" => {
            let route = run("ip", &["-4", "route", "get", "1.1.1.1"])?;
            let addr = route_source(&route)
                .ok_or_else(|| RigError::Swarm(format!("no source address in {route:?}")))?;
            docker(&[
                "swarm",
                "init",
                "--advertise-addr",
                &addr,
                "--dispatcher-heartbeat",
                "1s",
            ])?;
        }
        other => return Err(RigError::Swarm(format!("engine swarm state {other:?}"))),
    }
    let control = docker(&["info", "-f", "{{.Swarm.ControlAvailable}}"])?;
    if control.trim() != "true" {
        return Err(RigError::Swarm("this engine is no swarm manager".into()));
    }
    let addr = docker(&["info", "-f", "{{.Swarm.NodeAddr}}"])?
        .trim()
        .to_owned();
    match addr.parse::<Ipv4Addr>() {
        Ok(a) if !a.is_loopback() && !a.is_unspecified() => Ok(addr),
        _ => Err(RigError::Swarm(format!(
            "the swarm advertises {addr:?}, which other nodes cannot reach: \
             docker swarm leave --force, then let the rig (or deploy/up.sh) initialise it"
        ))),
    }
}

/// The `src` of an `ip route get` answer.
pub fn route_source(route: &str) -> Option<String> {
    let mut words = route.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            return words.next().map(str::to_owned);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_names_and_addresses_every_node() {
        let p = plan(&RigOptions::default()).expect("plan");
        assert_eq!(p.nodes.len(), 3);
        assert_eq!(p.bridge, "rhmn-br");
        assert_eq!(p.dns, p.silent_dns);
        assert_eq!(p.subnet(), Ipv4Addr::new(10, 213, 0, 0));
        let n2 = &p.nodes[1];
        assert_eq!(n2.name, "rhmn-n2");
        assert_eq!(n2.veth, "rhmn-v2");
        assert_eq!(n2.addr, Ipv4Addr::new(10, 213, 0, 12));
        assert_eq!(n2.label, Some(2));
        assert!(!n2.manager);
        assert_eq!(n2.engine(), "unix:///run/rhmn/n2/docker.sock");
        // Interface names fit the kernel's 15 characters.
        assert!(p
            .nodes
            .iter()
            .all(|n| n.veth.len() <= 15 && n.name.len() <= 15));
        let silent = p.silent_dns;
        assert!(p
            .nodes
            .iter()
            .all(|n| n.addr != silent && n.addr != p.gateway));
    }

    #[test]
    fn the_three_manager_variant_and_bad_plans() {
        let p = plan(&RigOptions {
            nodes: 4,
            managers: 2,
            ..RigOptions::default()
        })
        .expect("plan");
        let managers: Vec<u8> = p
            .nodes
            .iter()
            .filter(|n| n.manager)
            .map(|n| n.index)
            .collect();
        assert_eq!(managers, [1, 2]);
        assert_eq!(p.nodes[3].label, None);
        assert!(p.nodes.iter().all(|n| !n.control));
        let c = plan(&RigOptions {
            nodes: 5,
            control: 2,
            ..RigOptions::default()
        })
        .expect("plan");
        let control: Vec<u8> = c
            .nodes
            .iter()
            .filter(|n| n.control)
            .map(|n| n.index)
            .collect();
        assert_eq!(control, [4, 5]);
        assert!(c.nodes.iter().all(|n| !(n.control && n.label.is_some())));
        // A control node would also be a Redis node.
        assert!(plan(&RigOptions {
            nodes: 4,
            control: 2,
            ..RigOptions::default()
        })
        .is_err());
        assert!(plan(&RigOptions {
            managers: 1,
            ..RigOptions::default()
        })
        .is_err());
        assert!(plan(&RigOptions {
            nodes: 0,
            ..RigOptions::default()
        })
        .is_err());
        assert!(plan(&RigOptions {
            nodes: 2,
            managers: 4,
            ..RigOptions::default()
        })
        .is_err());
    }

    #[test]
    fn the_control_nodes_as_the_managers() {
        let p = plan(&RigOptions {
            nodes: 5,
            managers: 2,
            control: 2,
            control_managers: true,
            ..RigOptions::default()
        })
        .expect("plan");
        let managers: Vec<u8> = p
            .nodes
            .iter()
            .filter(|n| n.manager)
            .map(|n| n.index)
            .collect();
        assert_eq!(managers, [4, 5]);
        assert!(p.nodes.iter().all(|n| n.manager == n.control));
        assert!(p.nodes[..3].iter().all(|n| n.label.is_some() && !n.manager));
        // The count must say what the flag implies.
        for managers in [0, 4] {
            assert!(plan(&RigOptions {
                nodes: 5,
                managers,
                control: 2,
                control_managers: true,
                ..RigOptions::default()
            })
            .is_err());
        }
    }

    #[test]
    fn swarm_nodes_are_read_and_told_apart() {
        let member =
            parse_swarm_node("abc|rhmn-n1|10.213.0.11|manager|reachable|false\n").expect("node");
        assert_eq!(member.raft, Some(("reachable".to_owned(), false)));
        assert!(member.is_rigs());
        // A join under way: no hostname yet, the rig's address; no raft member.
        let joining = parse_swarm_node("def||10.213.0.12|manager|").expect("node");
        assert_eq!(joining.raft, None);
        assert!(joining.is_rigs());
        let host =
            parse_swarm_node("ghi|build-host|192.0.2.2|manager|reachable|true").expect("node");
        assert!(!host.is_rigs());
        assert_eq!(parse_swarm_node(""), None);
        assert_eq!(parse_swarm_node("no fields"), None);
    }

    #[test]
    fn demotions_keep_the_reachable_managers_a_quorum() {
        let node = |id: &str, raft: Option<(&str, bool)>| SwarmNode {
            id: id.to_owned(),
            hostname: format!("rhmn-{id}"),
            addr: "10.213.0.11".to_owned(),
            role: "manager".to_owned(),
            raft: raft.map(|(r, l)| (r.to_owned(), l)),
        };
        // The host and two rig managers, one of which the raft cannot reach (a join that
        // timed out): demoting the reachable one first would leave the host alone reachable
        // of two, which the swarm refuses; the unreachable one goes first.
        let nodes = [
            node("reach", Some(("reachable", false))),
            node("lost", Some(("unreachable", false))),
            node("worker", None),
        ];
        assert_eq!(demotion_order(&nodes), ["lost", "reach"]);
        // A rig node leading goes last; "unknown" counts as unreachable.
        let nodes = [
            node("leads", Some(("reachable", true))),
            node("reach", Some(("reachable", false))),
            node("unknown", Some(("unknown", false))),
        ];
        assert_eq!(demotion_order(&nodes), ["unknown", "reach", "leads"]);
        assert!(demotion_order(&[node("w", None)]).is_empty());
    }

    #[test]
    fn the_daemon_config_is_the_nodes_own() {
        let p = plan(&RigOptions::default()).expect("plan");
        let c: serde_json::Value =
            serde_json::from_str(&p.nodes[0].daemon_config(p.dns, "overlay2")).expect("json");
        assert_eq!(c["data-root"], "/var/lib/rhmn/n1/data");
        assert_eq!(c["hosts"][0], "unix:///run/rhmn/n1/docker.sock");
        assert_eq!(c["cgroup-parent"], "/rhmn-n1");
        assert_eq!(c["dns"][0], "10.213.0.254");
        assert_eq!(c["storage-driver"], "overlay2");
    }

    #[test]
    fn cgroup_hierarchies_are_mounted_again() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
            tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n\
            cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
            cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n\
            cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n\
            proc /proc proc rw 0 0\n";
        assert_eq!(
            cgroup_mounts(mounts),
            [
                "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup",
                "mkdir -p /sys/fs/cgroup/cpu && mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu",
                "mkdir -p /sys/fs/cgroup/systemd && mount -t cgroup -o name=systemd cgroup /sys/fs/cgroup/systemd",
                "mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified",
            ]
        );
        // cgroup v2 only.
        assert_eq!(
            cgroup_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"),
            ["mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup"]
        );
    }

    #[test]
    fn the_route_source() {
        assert_eq!(
            route_source("1.1.1.1 via 192.0.2.1 dev eth0 src 192.0.2.2 uid 0\n    cache\n"),
            Some("192.0.2.2".to_owned())
        );
        assert_eq!(route_source("unreachable"), None);
    }
}
