//! HAProxy for the process tests and the benchmark (the kit's [`kit::Haproxy`], observed through
//! the reloader's runtime client), a writer through it, and the reloader run in-process.
//!
//! [`Cluster::start_haproxy`] runs the shipped `deploy/haproxy/haproxy.cfg` unchanged, on the
//! cluster's HAProxy ports. [`Cluster::start_classic_haproxy`] runs the classic set-up the
//! benchmark compares against: no reloader, a `tcp-check ... expect string role:master` on every
//! server (`inter 1s fall 1 rise 1`, `on-marked-down shutdown-sessions`).
//!
//! Ports inside the cluster's block: ours at `HAPROXY_PORT_OFFSET` (frontend) and +1 (stats),
//! the classic one at +2 (frontend) and +3 (stats), our read endpoint at +4. Runtime sockets
//! live in the cluster dir.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis_ha_common::HostPort;
use redis_ha_node::acl::User;
use redis_ha_reloader::runtime::{Observation, OpState, RuntimeAddr, RuntimeClient, RuntimeError};
use redis_ha_reloader::{NodeConfig, Reloader, ReloaderConfig, ReloaderStatus};
use redis_ha_testkit as kit;
use redis_ha_testkit::client::{self, config_port};
use redis_ha_testkit::conf::user_password;
use redis_ha_testkit::haproxy::{HaproxySpec, BACKEND, QUORUM_BACKEND, READ_BACKEND};
use redis_ha_testkit::wait_until;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, HAPROXY_PORT_OFFSET, NODES, READY_TIMEOUT};
use crate::sidecars::SidecarTask;

pub const FRONTEND_OFFSET: u16 = HAPROXY_PORT_OFFSET;
pub const STATS_OFFSET: u16 = HAPROXY_PORT_OFFSET + 1;
pub const CLASSIC_FRONTEND_OFFSET: u16 = HAPROXY_PORT_OFFSET + 2;
pub const CLASSIC_STATS_OFFSET: u16 = HAPROXY_PORT_OFFSET + 3;
/// The shipped HAProxy's read endpoint.
pub const READ_FRONTEND_OFFSET: u16 = HAPROXY_PORT_OFFSET + 4;

/// How long one runtime API exchange may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which configuration a [`Haproxy`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaproxyKind {
    /// deploy/haproxy/haproxy.cfg: every server in maint until the reloader speaks.
    Shipped,
    /// The classic tcp-check set-up, for comparison.
    Classic,
}

/// One HAProxy process (killed when dropped), read through the reloader's runtime client.
pub struct Haproxy {
    kind: HaproxyKind,
    inner: kit::Haproxy,
}

impl Cluster {
    /// HAProxy with the shipped config on this cluster's ports, node N = server `redis-N`.
    /// Every server starts in maint: nothing is routed until a reloader runs.
    pub async fn start_haproxy(&self) -> Haproxy {
        let spec = HaproxySpec {
            name: "haproxy".into(),
            frontend: self.ports().port(FRONTEND_OFFSET),
            read_frontend: self.ports().port(READ_FRONTEND_OFFSET),
            stats: self.ports().port(STATS_OFFSET),
            socket: self.dir().join("haproxy.sock"),
            nodes: (1..=NODES).map(|i| self.node(i).addr()).collect(),
            // The tcp-check cannot read a password file.
            no_check: self.options().password.is_some(),
        };
        let mut inner = kit::Haproxy::start_shipped(&spec, self.dir()).await;
        inner.set_client_password(self.options().password.clone());
        Haproxy {
            kind: HaproxyKind::Shipped,
            inner,
        }
    }

    /// The classic HAProxy: routing decided by its own `tcp-check expect string role:master`.
    pub async fn start_classic_haproxy(&self) -> Haproxy {
        let frontend = self.ports().port(CLASSIC_FRONTEND_OFFSET);
        let stats = self.ports().port(CLASSIC_STATS_OFFSET);
        let socket = self.dir().join("haproxy-classic.sock");
        let cfg = self.dir().join("haproxy-classic.cfg");
        let servers: Vec<String> = (1..=NODES).map(|i| self.node(i).addr()).collect();
        // With ACLs on, its check logs in as the agent user.
        let check_password = self
            .options()
            .password
            .as_deref()
            .map(|base| user_password(base, User::Agent));
        let setup = ClassicSetup {
            frontend: format!("127.0.0.1:{frontend}"),
            stats: format!("127.0.0.1:{stats}"),
            socket: Some(&socket),
            servers,
            password: check_password.as_deref(),
            docker_dns: false,
        };
        std::fs::write(&cfg, classic_config(&setup))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", cfg.display()));
        let inner = kit::Haproxy::start_with_config(
            "haproxy-classic",
            &cfg,
            frontend,
            &socket,
            BACKEND,
            self.dir(),
        )
        .await;
        let mut inner = inner;
        inner.set_client_password(self.options().password.clone());
        Haproxy {
            kind: HaproxyKind::Classic,
            inner,
        }
    }

    /// A reloader configuration for `haproxy`: this cluster's coordinator and Sentinels.
    pub fn reloader_config(&self, haproxy: &Haproxy) -> ReloaderConfig {
        ReloaderConfig {
            coordinator_url: self.coordinator_url(),
            master_group: self.group().to_owned(),
            haproxy_runtime: vec![haproxy.runtime_endpoint()],
            backend: BACKEND.to_owned(),
            sentinels: (1..=NODES)
                .map(|i| HostPort::new("127.0.0.1", self.sentinel_port(i)))
                .collect(),
            sentinel_quorum: 2,
            sentinel_password_file: self.sentinel_password_file(),
            metrics_addr: String::new(),
            // The restricted mode every shipped configuration runs.
            nodes: (1..=NODES)
                .map(|i| NodeConfig {
                    id: format!("node-{i}"),
                    redis: HostPort::new("127.0.0.1", self.node(i).port()),
                })
                .collect(),
            tls: self.tls(&redis_ha_tls::Identity::Reloader),
            ..ReloaderConfig::default()
        }
    }
}

/// Where the classic HAProxy runs.
#[derive(Clone, Debug)]
pub struct ClassicSetup<'a> {
    /// `bind` of the client frontend ("127.0.0.1:9000", ":9000").
    pub frontend: String,
    /// `bind` of the stats frontend.
    pub stats: String,
    /// The runtime API socket, if any.
    pub socket: Option<&'a Path>,
    /// Server `redis-N` = `servers[N-1]` ("host:port").
    pub servers: Vec<String>,
    /// The Redis `agent` user's password: the check AUTHs as that user first (PING, INFO:
    /// the least a check needs, never the application's or the operator's password).
    pub password: Option<&'a str>,
    /// Servers by name through Docker's DNS (the swarm stack), re-resolved every second.
    pub docker_dns: bool,
}

/// One HAProxy config word: backslash-escapes what the parser would split or interpret.
pub fn haproxy_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, ' ' | '\t' | '\\' | '"' | '\'' | '#' | '$') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The classic configuration (as published set-ups do it), with the same defaults as ours
/// (timeouts, `retries 0`), so the comparison is the routing decision alone: the process
/// benchmark's and the swarm benchmark's.
pub fn classic_config(setup: &ClassicSetup<'_>) -> String {
    let mut c = String::from(
        "global\n\
         \x20   log stdout format raw local0 notice\n\
         \x20   maxconn 4096\n",
    );
    if let Some(socket) = setup.socket {
        let _ = writeln!(
            c,
            "    stats socket {} mode 600 level admin",
            socket.display()
        );
    }
    if setup.docker_dns {
        c.push_str(
            "resolvers docker\n\
             \x20   nameserver dns 127.0.0.11:53\n\
             \x20   resolve_retries 3\n\
             \x20   timeout resolve 1s\n\
             \x20   timeout retry 1s\n\
             \x20   hold valid 1s\n\
             \x20   hold other 1s\n\
             \x20   hold refused 1s\n\
             \x20   hold nx 1s\n\
             \x20   hold timeout 1s\n\
             \x20   hold obsolete 1s\n",
        );
    }
    let _ = write!(
        c,
        "defaults\n\
         \x20   mode tcp\n\
         \x20   log global\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 330s\n\
         \x20   timeout server 330s\n\
         \x20   timeout tunnel 1h\n\
         \x20   option clitcpka\n\
         \x20   option srvtcpka\n\
         \x20   retries 0\n\
         frontend redis_frontend\n\
         \x20   bind {}\n\
         \x20   default_backend {BACKEND}\n\
         backend {BACKEND}\n\
         \x20   option tcp-check\n\
         \x20   tcp-check connect\n",
        setup.frontend
    );
    if let Some(pw) = setup.password {
        let _ = writeln!(
            c,
            "    tcp-check send AUTH\\ {}\\ {}\\r\\n",
            User::Agent.name(),
            haproxy_escape(pw)
        );
        c.push_str("    tcp-check expect string +OK\n");
    }
    c.push_str(
        "    tcp-check send PING\\r\\n\n\
         \x20   tcp-check expect string +PONG\n\
         \x20   tcp-check send info\\ replication\\r\\n\n\
         \x20   tcp-check expect string role:master\n\
         \x20   tcp-check send QUIT\\r\\n\n\
         \x20   tcp-check expect string +OK\n\
         \x20   default-server check inter 1s fall 1 rise 1 on-marked-down shutdown-sessions",
    );
    if setup.docker_dns {
        c.push_str(" resolvers docker resolve-prefer ipv4 init-addr last,libc,none");
    }
    c.push('\n');
    for (i, s) in setup.servers.iter().enumerate() {
        let _ = writeln!(c, "    server redis-{} {s}", i + 1);
    }
    let _ = write!(
        c,
        "frontend stats\n\
         \x20   mode http\n\
         \x20   bind {}\n\
         \x20   timeout client 10s\n\
         \x20   stats enable\n\
         \x20   stats uri /stats\n",
        setup.stats
    );
    c
}

impl Haproxy {
    pub fn kind(&self) -> HaproxyKind {
        self.kind
    }

    pub fn runtime(&self) -> RuntimeClient {
        RuntimeClient::new(
            RuntimeAddr::Unix(self.inner.socket().to_owned()),
            PROBE_TIMEOUT,
        )
    }

    /// `show servers state` + sessions of the backend.
    pub async fn observe(&self) -> Result<Observation, RuntimeError> {
        self.runtime().observe(BACKEND).await
    }

    /// The servers HAProxy may route to (admin state ready).
    pub async fn ready_servers(&self) -> Result<Vec<String>, String> {
        let o = self.observe().await.map_err(|e| e.to_string())?;
        Ok(o.ready_servers().map(|s| s.srv_name.clone()).collect())
    }

    /// The servers of the read backend HAProxy may route to (admin state ready), by name.
    pub async fn read_ready_servers(&self) -> Result<Vec<String>, String> {
        let o = self
            .runtime()
            .observe(READ_BACKEND)
            .await
            .map_err(|e| e.to_string())?;
        Ok(o.ready_servers().map(|s| s.srv_name.clone()).collect())
    }

    /// The Redis nodes that answer this HAProxy's majority guard (its check says UP), by name.
    pub async fn answering_nodes(&self) -> Result<Vec<String>, String> {
        let o = self
            .runtime()
            .observe(QUORUM_BACKEND)
            .await
            .map_err(|e| e.to_string())?;
        Ok(o.servers
            .iter()
            .filter(|s| s.srv_op_state == OpState::Running)
            .map(|s| s.srv_name.clone())
            .collect())
    }
}

impl Deref for Haproxy {
    type Target = kit::Haproxy;
    fn deref(&self) -> &kit::Haproxy {
        &self.inner
    }
}

impl DerefMut for Haproxy {
    fn deref_mut(&mut self) -> &mut kit::Haproxy {
        &mut self.inner
    }
}

/// How a [`Writer`] uses connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// One connection for as long as it works; a new one after any failure (a typical client).
    Persistent,
    /// A new connection for every write (a client that never keeps a stale connection).
    NewConnectionEachWrite,
    /// A new connection for every write, each started on schedule whether or not the previous
    /// ones have finished (many clients): a write that hangs on a dead master (on the stack a
    /// killed container's address drops packets until a timeout) holds none of the later ones
    /// back. Records are kept in the order the writes finished.
    Concurrent,
}

/// One write attempt through the proxy.
#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub key: String,
    /// When the attempt started.
    pub started: std::time::Instant,
    /// When the answer came (or the attempt failed).
    pub finished: std::time::Instant,
    /// `OK` received.
    pub acked: bool,
    /// A reply came (an error reply too), not a closed or failed connection.
    pub replied: bool,
    /// The Redis port the connection reached (`CONFIG GET port` on connect), if known.
    pub port: Option<u16>,
    /// The error reply or failure, when not acked.
    pub error: Option<String>,
    /// Wall clock at `finished` (ms since the epoch), to line up with process logs.
    pub finished_wall_ms: i64,
}

/// Writes `SET <prefix>:<n> <n>` through a proxy on 127.0.0.1 every `interval` until stopped,
/// recording every attempt.
pub struct Writer {
    stop: CancellationToken,
    records: Arc<Mutex<Vec<WriteRecord>>>,
    handle: JoinHandle<()>,
}

impl Writer {
    pub fn start(port: u16, prefix: &str, mode: WriteMode, interval: Duration) -> Self {
        Self::start_with_password(port, None, prefix, mode, interval)
    }

    /// Like `start`, authenticating every connection with `password`.
    pub fn start_with_password(
        port: u16,
        password: Option<String>,
        prefix: &str,
        mode: WriteMode,
        interval: Duration,
    ) -> Self {
        let stop = CancellationToken::new();
        let records = Arc::new(Mutex::new(Vec::new()));
        let task = WriteLoop {
            port,
            password,
            prefix: prefix.to_owned(),
            mode,
            interval,
            stop: stop.clone(),
            records: records.clone(),
        };
        let handle = tokio::spawn(task.run());
        Self {
            stop,
            records,
            handle,
        }
    }

    /// How many attempts so far pass `pred` (e.g. acknowledged ones after some instant).
    /// Waits until `n` acknowledged writes started after `since`.
    pub async fn wait_acked_since(&self, since: Instant, n: usize) {
        wait_until(
            &format!("{n} writes through HAProxy acknowledged"),
            READY_TIMEOUT,
            || async move {
                match self.count(|r| r.acked && r.started > since) {
                    k if k >= n => Ok(()),
                    k => Err(format!("{k} acknowledged")),
                }
            },
        )
        .await;
    }

    pub fn count(&self, pred: impl Fn(&WriteRecord) -> bool) -> usize {
        lock(&self.records).iter().filter(|r| pred(r)).count()
    }

    /// A copy of the attempts started within `[from, to]`, while it keeps writing.
    pub fn records_between(&self, from: Instant, to: Instant) -> Vec<WriteRecord> {
        lock(&self.records)
            .iter()
            .filter(|r| r.started >= from && r.started <= to)
            .cloned()
            .collect()
    }

    /// Stops writing and returns every attempt, oldest first.
    pub async fn finish(self) -> Vec<WriteRecord> {
        self.stop.cancel();
        self.handle
            .await
            .unwrap_or_else(|e| panic!("the writer task failed: {e}"));
        std::mem::take(&mut *lock(&self.records))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct WriteLoop {
    port: u16,
    password: Option<String>,
    prefix: String,
    mode: WriteMode,
    interval: Duration,
    stop: CancellationToken,
    records: Arc<Mutex<Vec<WriteRecord>>>,
}

impl WriteLoop {
    /// A connection and the Redis port it reached; `None` when HAProxy closes it at once.
    async fn open(&self) -> Option<(MultiplexedConnection, u16)> {
        let mut con = client::connect(self.port, self.password.as_deref())
            .await
            .ok()?;
        let port = config_port(&mut con, self.port).await.ok()?;
        Some((con, port))
    }

    /// One attempt: `SET <prefix>:<n> <n>` on `conn` (opened first if there is none); the
    /// connection is kept only when it worked and the mode keeps connections.
    async fn write_once(
        &self,
        conn: &mut Option<(MultiplexedConnection, u16)>,
        n: u64,
    ) -> WriteRecord {
        let key = format!("{}:{n}", self.prefix);
        let started = std::time::Instant::now();
        if conn.is_none() {
            *conn = self.open().await;
        }
        let (acked, replied, port, error) = match conn.as_mut() {
            None => (
                false,
                false,
                None,
                Some("connect failed or closed at once".to_owned()),
            ),
            Some((con, port)) => {
                let set = redis::cmd("SET").arg(&key).arg(n).clone();
                match client::run::<String>(con, self.port, &set).await {
                    Ok(_) => (true, true, Some(*port), None),
                    Err(e) => {
                        let replied = e.code().is_some();
                        (false, replied, Some(*port), Some(e.to_string()))
                    }
                }
            }
        };
        if !acked || self.mode != WriteMode::Persistent {
            *conn = None;
        }
        WriteRecord {
            key,
            started,
            finished: std::time::Instant::now(),
            acked,
            replied,
            port,
            error,
            finished_wall_ms: redis_ha_common::time::now_ms(),
        }
    }

    async fn run(self) {
        if self.mode == WriteMode::Concurrent {
            return Arc::new(self).run_concurrent().await;
        }
        let mut conn: Option<(MultiplexedConnection, u16)> = None;
        let mut n: u64 = 0;
        while !self.stop.is_cancelled() {
            n += 1;
            let record = self.write_once(&mut conn, n).await;
            lock(&self.records).push(record);
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// [`WriteMode::Concurrent`]: a task per write; on stop, the writes in flight are awaited
    /// (each bounded by the client's timeouts), so every acknowledged write is recorded.
    async fn run_concurrent(self: Arc<Self>) {
        let mut tasks = tokio::task::JoinSet::new();
        let mut n: u64 = 0;
        while !self.stop.is_cancelled() {
            n += 1;
            let this = self.clone();
            tasks.spawn(async move {
                let record = this.write_once(&mut None, n).await;
                lock(&this.records).push(record);
            });
            // Reap finished tasks as we go so the set stays small.
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// When each node first answered `ROLE` = master, keyed by the node's own port.
pub type RoleTimes = BTreeMap<u16, Instant>;

/// Polls `ROLE` on some Redis nodes every `interval` (one held connection each, renewed on
/// failure) and records when each first answered `master`: the promotion as a client sees it.
pub struct RoleProber {
    stop: CancellationToken,
    times: Arc<Mutex<RoleTimes>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RoleProber {
    /// `targets`: (port to connect to on 127.0.0.1, the node's own port to record it under:
    /// the one [`WriteRecord::port`] names; they differ where ports are published).
    pub fn start(targets: &[(u16, u16)], password: Option<String>, interval: Duration) -> Self {
        let stop = CancellationToken::new();
        let times: Arc<Mutex<RoleTimes>> = Arc::default();
        let tasks = targets
            .iter()
            .map(|&(port, node)| {
                let (stop, times, password) = (stop.clone(), times.clone(), password.clone());
                tokio::spawn(async move {
                    let mut conn = None;
                    while !stop.is_cancelled() {
                        if conn.is_none() {
                            conn = client::connect(port, password.as_deref()).await.ok();
                        }
                        if let Some(c) = conn.as_mut() {
                            match client::run::<Vec<redis::Value>>(c, port, &redis::cmd("ROLE"))
                                .await
                            {
                                Ok(v) if is_master(v.first()) => {
                                    let now = Instant::now();
                                    lock(&times).entry(node).or_insert(now);
                                }
                                Ok(_) => {}
                                Err(_) => conn = None,
                            }
                        }
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(interval) => {}
                        }
                    }
                })
            })
            .collect();
        Self { stop, times, tasks }
    }

    /// Stops probing and returns what was seen.
    pub async fn finish(self) -> RoleTimes {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        std::mem::take(&mut *lock(&self.times))
    }
}

/// `ROLE`'s first element is `master` (RESP2 bulk string, RESP3 may give a simple string).
fn is_master(v: Option<&redis::Value>) -> bool {
    match v {
        Some(redis::Value::BulkString(b)) => b == b"master",
        Some(redis::Value::SimpleString(s)) => s == "master",
        _ => false,
    }
}

/// A reloader running as a task in the test process, in the style of the other sidecars:
/// stopped through its token, aborted when dropped.
pub struct ReloaderTask {
    task: SidecarTask<redis_ha_reloader::ReloaderError>,
    status: watch::Receiver<ReloaderStatus>,
}

impl ReloaderTask {
    /// Validates `config` (panics on a bad one) and starts the reloader.
    pub fn start(config: ReloaderConfig) -> Self {
        let reloader =
            Reloader::new(config).unwrap_or_else(|e| panic!("reloader configuration: {e}"));
        let status = reloader.status();
        let task = SidecarTask::spawn("the reloader", |token| reloader.run(token));
        Self { task, status }
    }

    /// The reloader's current status (decision in force, per-HAProxy state).
    pub fn status(&self) -> ReloaderStatus {
        self.status.borrow().clone()
    }

    pub fn status_receiver(&self) -> watch::Receiver<ReloaderStatus> {
        self.status.clone()
    }

    /// Commands-sending converges so far, over every HAProxy.
    pub fn applies(&self) -> u64 {
        self.status
            .borrow()
            .instances
            .values()
            .map(|i| i.applies)
            .sum()
    }

    /// Waits until every HAProxy was checked after `since` and found converged.
    pub async fn wait_converged_since(&self, since: std::time::Instant) {
        let rx = self.status.clone();
        wait_until(
            "the reloader to check and converge every HAProxy",
            READY_TIMEOUT,
            || {
                let st = rx.borrow().clone();
                async move {
                    let ok = !st.instances.is_empty()
                        && st
                            .instances
                            .values()
                            .all(|i| i.converged && i.last_check.is_some_and(|t| t > since));
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("{:?}", st.instances))
                    }
                }
            },
        )
        .await;
    }

    /// Cancels the reloader and waits for it to return; panics if it failed or hangs.
    pub async fn stop(self) {
        self.task.stop().await;
    }
}

/// One line about a writer's records: attempts, acknowledged, which ports served, the errors.
pub fn summary(records: &[WriteRecord]) -> String {
    let acked = records.iter().filter(|r| r.acked).count();
    let ports: std::collections::BTreeSet<Option<u16>> =
        records.iter().filter(|r| r.acked).map(|r| r.port).collect();
    let errors: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r.error.as_deref()).collect();
    format!(
        "{} attempts, {acked} acked, served by {ports:?}, errors {errors:?}",
        records.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_config_checks_role_master_every_second() {
        let c = classic_config(&ClassicSetup {
            frontend: "127.0.0.1:20021".into(),
            stats: "127.0.0.1:20022".into(),
            socket: Some(Path::new("/d/s.sock")),
            servers: vec!["127.0.0.1:20001".into(), "127.0.0.1:20002".into()],
            password: None,
            docker_dns: false,
        });
        assert!(c.contains("tcp-check expect string role:master\n"));
        assert!(c.contains("tcp-check send info\\ replication\\r\\n\n"));
        assert!(c.contains("check inter 1s fall 1 rise 1 on-marked-down shutdown-sessions"));
        assert!(c.contains("    server redis-2 127.0.0.1:20002\n"));
        assert!(c.contains("bind 127.0.0.1:20021\n"));
        assert!(c.contains("stats socket /d/s.sock mode 600 level admin\n"));
        assert!(!c.contains("AUTH") && !c.contains("resolvers"));
        let stack = classic_config(&ClassicSetup {
            frontend: ":9000".into(),
            stats: "127.0.0.1:8404".into(),
            socket: None,
            servers: vec!["redis-1:9001".into()],
            password: Some("p w"),
            docker_dns: true,
        });
        let auth = stack
            .find("tcp-check send AUTH\\ agent\\ p\\ w\\r\\n\n    tcp-check expect string +OK\n");
        let ping = stack.find("tcp-check send PING");
        assert!(auth.is_some() && auth < ping, "AUTH first: {stack}");
        assert!(stack.contains("shutdown-sessions resolvers docker resolve-prefer ipv4"));
        assert!(stack.contains("resolvers docker\n    nameserver dns 127.0.0.11:53\n"));
    }
}
