//! One test's replication cluster: 3 Redis nodes (node 1 master, 2 and 3 replicas) and a
//! Sentinel beside each (quorum 2), on one reserved port block, in one temp dir, all started
//! by the test kit from the shipped configuration templates.
//!
//! Port layout inside the block (base + offset): node i at `i` (1-3), Sentinel i at `10 + i`
//! (11-13), the coordinator at 20, 21-29 for HAProxy (see `haproxy.rs`), the report relay at
//! 30 (see `relay.rs`), 31 spare.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use redis_ha_testkit::ports::{PortBlock, BLOCK_SIZE};
use redis_ha_testkit::tls::Certs;
use redis_ha_testkit::{wait_until, RedisNode, RedisSpec, Sentinel, SentinelSpec};
use redis_ha_tls::{ClientTls, Identity, TlsSettings};

use crate::sidecars::Sidecars;

/// Nodes (and Sentinels) per cluster.
pub const NODES: usize = 3;
pub const SENTINEL_PORT_OFFSET: u16 = 10;
pub const COORDINATOR_PORT_OFFSET: u16 = 20;
/// First of the ports kept for HAProxy (frontend, stats, ...): 21..=29.
pub const HAPROXY_PORT_OFFSET: u16 = 21;

/// The kit's usual deadline.
pub const READY_TIMEOUT: Duration = redis_ha_testkit::TIMEOUT;

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Master group name; "redis-cluster" as in production.
    pub group: String,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    /// Redis `requirepass`/`masterauth` on every node (Sentinel gets `auth-pass`).
    pub password: Option<String>,
    /// Agents' heartbeat.
    pub heartbeat_ms: u64,
    /// Coordinator: a report older than this makes a node UNKNOWN.
    pub stale_after_ms: u64,
    /// Where the control plane's certificates are made (or kept, when already there and
    /// valid: the product's rule); `None`: the cluster's own `<dir>/tls`.
    pub tls_dir: Option<PathBuf>,
    /// Plaintext gRPC, no authentication (`tls.insecure` on every sidecar and client): only
    /// for tests of what an unauthenticated caller could send (the shipped mode is TLS).
    pub insecure: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            group: "redis-cluster".into(),
            down_after_ms: 1000,
            failover_timeout_ms: 10_000,
            password: None,
            heartbeat_ms: 500,
            stale_after_ms: 3000,
            tls_dir: None,
            insecure: false,
        }
    }
}

pub struct Cluster {
    // Fields drop in this order: the sidecars stop before the processes they watch die,
    // and the port block is released only after every process is gone.
    pub(crate) sidecars: Sidecars,
    nodes: Vec<RedisNode>,
    sentinels: Vec<Sentinel>,
    opts: ClusterOptions,
    /// The control plane's certificates (`<dir>/tls`), made as `deploy/up.sh` makes them.
    certs: Certs,
    /// The operator's client TLS, what the test's own gRPC calls present.
    operator: ClientTls,
    dir: TempDir,
    ports: PortBlock,
}

impl Cluster {
    /// Starts the nodes, waits until both replicas finished their first sync, starts the
    /// Sentinels and waits until each sees the master, 2 replicas and 2 other Sentinels
    /// (otherwise a failover could not be elected). No sidecar runs until one is started
    /// (`start_all_sidecars`, ...): left so, it is plain Redis + Sentinel, the classic set-up
    /// the failover benchmark compares against.
    pub async fn start(opts: ClusterOptions) -> Self {
        let ports = PortBlock::allocate(BLOCK_SIZE);
        let dir = tempfile::Builder::new()
            .prefix("redis-ha-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let tls_dir = opts
            .tls_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("tls"));
        let certs = Certs::create(&tls_dir, NODES);
        let operator = if opts.insecure {
            ClientTls::insecure()
        } else {
            certs.operator()
        };
        let master_port = ports.port(1);
        let mut nodes = Vec::with_capacity(NODES);
        for i in 1..=NODES {
            let spec = RedisSpec {
                name: format!("node-{i}"),
                port: ports.port(i as u16),
                replica_of: (i != 1).then_some(master_port),
                password: opts.password.clone(),
                down_after_ms: opts.down_after_ms,
            };
            nodes.push(RedisNode::start(spec, dir.path()).await);
        }
        let mut cluster = Self {
            sidecars: Sidecars::default(),
            nodes,
            sentinels: Vec::with_capacity(NODES),
            opts,
            certs,
            operator,
            dir,
            ports,
        };
        cluster.wait_replicas_synced(1).await;
        for i in 1..=NODES {
            let spec = SentinelSpec {
                name: format!("sentinel-{i}"),
                port: cluster.sentinel_port(i),
                group: cluster.opts.group.clone(),
                master_port,
                quorum: 2,
                down_after_ms: cluster.opts.down_after_ms,
                failover_timeout_ms: cluster.opts.failover_timeout_ms,
                redis_password: cluster.opts.password.clone(),
            };
            let s = Sentinel::start(spec, cluster.dir.path()).await;
            cluster.sentinels.push(s);
        }
        cluster.wait_sentinels_ready().await;
        cluster
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    pub fn group(&self) -> &str {
        &self.opts.group
    }

    /// The test's temp dir (node and Sentinel sub-directories live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control plane's certificates.
    pub fn certs(&self) -> &Certs {
        &self.certs
    }

    /// The `[tls]` settings of `who` (every sidecar the harness starts has its own).
    pub fn tls(&self, who: &Identity) -> TlsSettings {
        if self.opts.insecure {
            TlsSettings::insecure()
        } else {
            self.certs.settings(who)
        }
    }

    /// The operator's client TLS.
    pub fn operator_tls(&self) -> &ClientTls {
        &self.operator
    }

    pub fn ports(&self) -> &PortBlock {
        &self.ports
    }

    pub fn sentinel_port(&self, i: usize) -> u16 {
        self.ports.port(SENTINEL_PORT_OFFSET + index(i) as u16)
    }

    pub fn coordinator_port(&self) -> u16 {
        self.ports.port(COORDINATOR_PORT_OFFSET)
    }

    /// Node `i` (1-based).
    pub fn node(&self, i: usize) -> &RedisNode {
        &self.nodes[index(i) - 1]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut RedisNode {
        &mut self.nodes[index(i) - 1]
    }

    /// Sentinel `i` (1-based), the one beside node `i`.
    pub fn sentinel(&self, i: usize) -> &Sentinel {
        &self.sentinels[index(i) - 1]
    }

    pub fn sentinel_mut(&mut self, i: usize) -> &mut Sentinel {
        &mut self.sentinels[index(i) - 1]
    }

    /// The node (1-based) whose address is `addr` ("127.0.0.1:port").
    pub fn node_index(&self, addr: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.addr() == addr)
            .map(|p| p + 1)
    }

    /// The master the Sentinels name (GET-MASTER-ADDR-BY-NAME): the address at least 2 of
    /// the answering Sentinels agree on. Err describes the disagreement.
    pub async fn master_addr_by_sentinel(&self) -> Result<String, String> {
        let mut answers = Vec::new();
        for s in &self.sentinels {
            answers.push(match s.master_addr().await {
                Ok(Some(a)) => Ok(a),
                Ok(None) => Err(format!("{}: no master", s.name())),
                Err(e) => Err(format!("{}: {e}", s.name())),
            });
        }
        for a in answers.iter().flatten() {
            if answers.iter().flatten().filter(|b| *b == a).count() >= 2 {
                return Ok(a.clone());
            }
        }
        Err(format!("Sentinels disagree: {answers:?}"))
    }

    /// The node (1-based) the Sentinels name as master (see `master_addr_by_sentinel`).
    pub async fn sentinel_master_node(&self) -> Result<usize, String> {
        let addr = self.master_addr_by_sentinel().await?;
        self.node_index(&addr)
            .ok_or_else(|| format!("Sentinels name an unknown node {addr}"))
    }

    /// Waits until every answering Sentinel (at least 2) names the same master, other than
    /// `old` ("127.0.0.1:port"), and that node answers `role:master`. Returns its address.
    pub async fn wait_new_master(&self, old: &str) -> String {
        self.wait_new_master_node(old).await.1
    }

    /// [`Cluster::wait_new_master`], with the new master's node number.
    pub async fn wait_new_master_node(&self, old: &str) -> (usize, String) {
        wait_until(
            &format!("the Sentinels to elect a master other than {old}"),
            READY_TIMEOUT,
            || async move {
                let mut named = Vec::new();
                for s in &self.sentinels {
                    if let Ok(Some(a)) = s.master_addr().await {
                        named.push(a);
                    }
                }
                let first = named.first().cloned().unwrap_or_default();
                if named.len() < 2 || named.iter().any(|a| *a != first) || first == old {
                    return Err(format!("Sentinels name {named:?}"));
                }
                let i = self
                    .node_index(&first)
                    .ok_or_else(|| format!("Sentinels name an unknown node {first}"))?;
                match self.node(i).role().await {
                    Ok(r) if r == "master" => Ok((i, first)),
                    other => Err(format!("Sentinels name {first}, whose role is {other:?}")),
                }
            },
        )
        .await
    }

    /// Waits until every node other than `master` (1-based) that is running is a replica of
    /// it with the link up and its sync finished.
    pub async fn wait_replicas_synced(&mut self, master: usize) {
        let master_port = self.node(master).port();
        let replicas: Vec<usize> = (1..=NODES)
            .filter(|&i| i != master && self.nodes[i - 1].is_running())
            .collect();
        let this = &*self;
        wait_until(
            &format!("nodes {replicas:?} to finish syncing from node {master}"),
            READY_TIMEOUT,
            || {
                let replicas = replicas.clone();
                async move {
                    for i in replicas {
                        this.node(i).replica_synced_state(master_port).await?;
                    }
                    Ok::<(), String>(())
                }
            },
        )
        .await;
    }

    /// Waits until node `i` is a synced replica of node `master`.
    pub async fn wait_replica_of(&self, i: usize, master: usize) {
        let master_port = self.node(master).port();
        let node = self.node(i);
        wait_until(
            &format!("node {i} to be a synced replica of node {master}"),
            READY_TIMEOUT,
            || node.replica_synced_state(master_port),
        )
        .await;
    }

    /// Waits until node `i` is a synced replica of the master the Sentinels name at that
    /// moment; returns that master (1-based). Following the Sentinels, not a fixed node, keeps
    /// this right when they fail over once more (at down-after 1000 ms on a loaded machine a
    /// freshly promoted master is sometimes judged down again, see redis/redis#8607).
    pub async fn wait_rejoined_as_replica(&self, i: usize) -> usize {
        wait_until(
            &format!("node {i} to be a synced replica of the Sentinels' master"),
            READY_TIMEOUT,
            || async move {
                let m = self.sentinel_master_node().await?;
                if m == i {
                    return Err(format!("Sentinels name node {i} itself as master"));
                }
                self.node(i)
                    .replica_synced_state(self.node(m).port())
                    .await?;
                Ok(m)
            },
        )
        .await
    }

    /// Waits until every Sentinel sees the master up, 2 replicas and 2 other Sentinels.
    pub async fn wait_sentinels_ready(&self) {
        wait_until(
            "every Sentinel to see the master, 2 replicas and 2 other Sentinels",
            READY_TIMEOUT,
            || async move {
                for s in &self.sentinels {
                    s.ready_state(NODES - 1, NODES - 1).await?;
                }
                Ok::<(), String>(())
            },
        )
        .await;
    }

    /// Waits until the cluster is at rest by what the Sentinels and the nodes themselves say,
    /// so it needs no sidecar: every Sentinel names the same master, every other node is a
    /// synced replica of it, and every Sentinel sees that master up, both replicas up (flags
    /// exactly `slave`: a replica still `s_down` could not be promoted) and the 2 other
    /// Sentinels. Returns the master (1-based).
    pub async fn wait_at_rest_by_sentinels(&self) -> usize {
        wait_until(
            "the Sentinels and nodes to be at rest around one master",
            READY_TIMEOUT,
            || async move {
                let m = self.sentinel_master_node().await?;
                let master_addr = self.node(m).addr();
                for i in (1..=NODES).filter(|&i| i != m) {
                    self.node(i)
                        .replica_synced_state(self.node(m).port())
                        .await?;
                }
                for s in &self.sentinels {
                    match s.master_addr().await {
                        Ok(Some(a)) if a == master_addr => {}
                        other => return Err(format!("{} names {other:?}", s.name())),
                    }
                    s.ready_state(NODES - 1, NODES - 1).await?;
                    let replicas = s.replicas().await.map_err(|e| e.to_string())?;
                    for r in &replicas {
                        let flags = r.get("flags").map_or("?", String::as_str);
                        if flags != "slave" {
                            let name = r.get("name").map_or("?", String::as_str);
                            return Err(format!("{} sees replica {name} as {flags}", s.name()));
                        }
                    }
                }
                Ok(m)
            },
        )
        .await
    }

    /// Log tails of every process, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("---- {} ----\n{}\n", n.name(), n.log_tail(lines)));
        }
        for s in &self.sentinels {
            out.push_str(&format!("---- {} ----\n{}\n", s.name(), s.log_tail(lines)));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The test output is only shown for a failed test: show what the processes said.
        if std::thread::panicking() {
            eprintln!(
                "cluster in {} (ports {}..{}):\n{}",
                self.dir.path().display(),
                self.ports.base(),
                self.ports.base() + BLOCK_SIZE,
                self.logs(60)
            );
        }
    }
}

fn index(i: usize) -> usize {
    assert!(
        (1..=NODES).contains(&i),
        "node index {i} outside 1..={NODES}"
    );
    i
}
