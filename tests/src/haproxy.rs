//! HAProxy for the process tests and the benchmark, and the reloader run in-process.
//!
//! [`Cluster::start_haproxy`] runs the shipped `deploy/haproxy/haproxy.cfg` unchanged, with the
//! environment variables it reads (frontend, runtime socket, stats, node addresses), on the
//! cluster's HAProxy ports. [`Cluster::start_classic_haproxy`] runs the classic set-up the
//! benchmark compares against: no reloader, a `tcp-check ... expect string role:master` on every
//! server (`inter 1s fall 1 rise 1`, `on-marked-down shutdown-sessions`).
//!
//! Ports inside the cluster's block: ours at `HAPROXY_PORT_OFFSET` (frontend) and +1 (stats),
//! the classic one at +2 (frontend) and +3 (stats). Runtime sockets live in the cluster dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis_ha_common::HostPort;
use redis_ha_reloader::runtime::{Observation, RuntimeAddr, RuntimeClient, RuntimeError};
use redis_ha_reloader::{Reloader, ReloaderConfig, ReloaderStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, HAPROXY_PORT_OFFSET, NODES, READY_TIMEOUT};
use crate::process::{tail, ManagedProcess};
use crate::wait::wait_for;

pub const FRONTEND_OFFSET: u16 = HAPROXY_PORT_OFFSET;
pub const STATS_OFFSET: u16 = HAPROXY_PORT_OFFSET + 1;
pub const CLASSIC_FRONTEND_OFFSET: u16 = HAPROXY_PORT_OFFSET + 2;
pub const CLASSIC_STATS_OFFSET: u16 = HAPROXY_PORT_OFFSET + 3;

/// The backend name of both configurations.
pub const BACKEND: &str = "redis";

/// How long one probe through the proxy may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The shipped configuration.
pub fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg")
}

/// Which configuration a [`Haproxy`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaproxyKind {
    /// deploy/haproxy/haproxy.cfg: every server in maint until the reloader speaks.
    Shipped,
    /// The classic tcp-check set-up, for comparison.
    Classic,
}

/// One HAProxy process; killed when dropped.
pub struct Haproxy {
    kind: HaproxyKind,
    frontend: u16,
    socket: PathBuf,
    log: PathBuf,
    process: ManagedProcess,
}

impl Cluster {
    /// HAProxy with the shipped config on this cluster's ports, node N = server `redis-N`.
    /// Every server starts in maint: nothing is routed until a reloader runs.
    pub async fn start_haproxy(&self) -> Haproxy {
        let frontend = self.ports().port(FRONTEND_OFFSET);
        let stats = self.ports().port(STATS_OFFSET);
        let socket = self.dir().join("haproxy.sock");
        let log = self.dir().join("haproxy.out");
        let mut args = vec![
            format!("REDIS_HA_PROXY_BIND=127.0.0.1:{frontend}"),
            format!("REDIS_HA_RUNTIME_API={}", socket.display()),
            format!("REDIS_HA_STATS_BIND=127.0.0.1:{stats}"),
            format!("REDIS_HA_BACKEND={BACKEND}"),
            "REDIS_HA_LOG_LEVEL=notice".to_owned(),
        ];
        for i in 1..=NODES {
            args.push(format!("REDIS_HA_NODE_{i}={}", self.node(i).addr()));
        }
        if self.options().password.is_some() {
            // The tcp-check cannot read a password file.
            args.push("REDIS_HA_NO_CHECK=1".to_owned());
        }
        args.extend([
            "haproxy".to_owned(),
            "-db".to_owned(),
            "-f".to_owned(),
            shipped_config().display().to_string(),
        ]);
        // `env` execs haproxy: the managed pid is HAProxy's own.
        let process = ManagedProcess::spawn("haproxy", "env", &args, &log);
        let h = Haproxy {
            kind: HaproxyKind::Shipped,
            frontend,
            socket,
            log,
            process,
        };
        h.wait_answering().await;
        h
    }

    /// The classic HAProxy: routing decided by its own `tcp-check expect string role:master`.
    pub async fn start_classic_haproxy(&self) -> Haproxy {
        let frontend = self.ports().port(CLASSIC_FRONTEND_OFFSET);
        let stats = self.ports().port(CLASSIC_STATS_OFFSET);
        let socket = self.dir().join("haproxy-classic.sock");
        let log = self.dir().join("haproxy-classic.out");
        let cfg = self.dir().join("haproxy-classic.cfg");
        let servers: Vec<String> = (1..=NODES).map(|i| self.node(i).addr()).collect();
        std::fs::write(&cfg, classic_config(frontend, stats, &socket, &servers))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", cfg.display()));
        let args = vec!["-db".to_owned(), "-f".to_owned(), cfg.display().to_string()];
        let process = ManagedProcess::spawn("haproxy-classic", "haproxy", &args, &log);
        let h = Haproxy {
            kind: HaproxyKind::Classic,
            frontend,
            socket,
            log,
            process,
        };
        h.wait_answering().await;
        h
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
            metrics_addr: String::new(),
            ..ReloaderConfig::default()
        }
    }
}

/// The classic configuration (as published set-ups do it), with the same defaults as ours
/// (timeouts, `retries 0`), so the comparison is the routing decision alone.
pub fn classic_config(frontend: u16, stats: u16, socket: &Path, servers: &[String]) -> String {
    let mut c = format!(
        "global\n\
         \x20   log stdout format raw local0 notice\n\
         \x20   maxconn 4096\n\
         \x20   stats socket {socket} mode 600 level admin\n\
         defaults\n\
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
         \x20   bind 127.0.0.1:{frontend}\n\
         \x20   default_backend {BACKEND}\n\
         backend {BACKEND}\n\
         \x20   option tcp-check\n\
         \x20   tcp-check connect\n\
         \x20   tcp-check send PING\\r\\n\n\
         \x20   tcp-check expect string +PONG\n\
         \x20   tcp-check send info\\ replication\\r\\n\n\
         \x20   tcp-check expect string role:master\n\
         \x20   tcp-check send QUIT\\r\\n\n\
         \x20   tcp-check expect string +OK\n\
         \x20   default-server check inter 1s fall 1 rise 1 on-marked-down shutdown-sessions\n",
        socket = socket.display(),
    );
    for (i, s) in servers.iter().enumerate() {
        c.push_str(&format!("    server redis-{} {s}\n", i + 1));
    }
    c.push_str(&format!(
        "frontend stats\n\
         \x20   mode http\n\
         \x20   bind 127.0.0.1:{stats}\n\
         \x20   timeout client 10s\n\
         \x20   stats enable\n\
         \x20   stats uri /stats\n"
    ));
    c
}

impl Haproxy {
    pub fn kind(&self) -> HaproxyKind {
        self.kind
    }

    pub fn frontend_port(&self) -> u16 {
        self.frontend
    }

    /// "127.0.0.1:<frontend port>".
    pub fn frontend_addr(&self) -> String {
        format!("127.0.0.1:{}", self.frontend)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// "unix:<socket>", as the reloader's `haproxy_runtime` wants it.
    pub fn runtime_endpoint(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    pub fn runtime(&self) -> RuntimeClient {
        RuntimeClient::new(RuntimeAddr::Unix(self.socket.clone()), PROBE_TIMEOUT)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
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

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Kills HAProxy and starts it again from the same configuration (all servers back in
    /// maint for the shipped one), waiting until its runtime API answers.
    pub async fn restart(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_file(&self.socket);
        self.process.start();
        self.wait_answering().await;
    }

    /// The port of the Redis a new connection through the frontend reaches (`CONFIG GET
    /// port`); `None` when HAProxy closes the connection (nothing routed) or it fails.
    pub async fn routed_port(&self) -> Option<u16> {
        let mut s = connect(&self.frontend_addr()).await?;
        config_port(&mut s).await
    }

    /// Waits until new connections through the frontend reach the Redis on `port`.
    pub async fn wait_routed_to(&self, port: u16) {
        wait_for(
            &format!("{} to route to port {port}", self.frontend_addr()),
            READY_TIMEOUT,
            || async move {
                match self.routed_port().await {
                    Some(p) if p == port => Ok(()),
                    other => Err(format!(
                        "routed to {other:?}; ready servers {:?}",
                        self.ready_servers().await
                    )),
                }
            },
        )
        .await;
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    async fn wait_answering(&self) {
        let client = self.runtime();
        let log = self.log.clone();
        wait_for(
            &format!("HAProxy's runtime API on {}", self.socket.display()),
            READY_TIMEOUT,
            || {
                let client = client.clone();
                let log = log.clone();
                async move {
                    client
                        .servers_state(BACKEND)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("{e}; log:\n{}", tail(&log, 10)))
                }
            },
        )
        .await;
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- haproxy ({:?}) ----\n{}", self.kind, self.log_tail(40));
        }
    }
}

/// A TCP connection with a timeout.
pub async fn connect(addr: &str) -> Option<TcpStream> {
    let s = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = s.set_nodelay(true);
    Some(s)
}

/// Writes a request and reads one reply chunk; `None` on close, error or timeout.
pub async fn exchange(s: &mut TcpStream, request: &[u8]) -> Option<String> {
    s.write_all(request).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PROBE_TIMEOUT, s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// How a [`Writer`] uses connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// One connection for as long as it works; a new one after any failure (a typical client).
    Persistent,
    /// A new connection for every write (a client that never keeps a stale connection).
    NewConnectionEachWrite,
}

/// One write attempt through the proxy.
#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub key: String,
    /// When the attempt started.
    pub started: std::time::Instant,
    /// When the answer came (or the attempt failed).
    pub finished: std::time::Instant,
    /// `+OK` received.
    pub acked: bool,
    /// The Redis port the connection reached (`CONFIG GET port` on connect), if known.
    pub port: Option<u16>,
    /// The error reply or failure, when not acked.
    pub error: Option<String>,
    /// Wall clock at `finished` (ms since the epoch), to line up with process logs.
    pub finished_wall_ms: i64,
}

/// Writes `SET <prefix>:<n> <n>` through a proxy every `interval` until stopped, recording
/// every attempt.
pub struct Writer {
    stop: CancellationToken,
    handle: JoinHandle<Vec<WriteRecord>>,
}

impl Writer {
    pub fn start(addr: String, prefix: &str, mode: WriteMode, interval: Duration) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let prefix = prefix.to_owned();
        let handle =
            tokio::spawn(async move { write_loop(addr, prefix, mode, interval, token).await });
        Self { stop, handle }
    }

    /// Stops writing and returns every attempt, oldest first.
    pub async fn finish(self) -> Vec<WriteRecord> {
        self.stop.cancel();
        self.handle
            .await
            .unwrap_or_else(|e| panic!("the writer task failed: {e}"))
    }
}

async fn write_loop(
    addr: String,
    prefix: String,
    mode: WriteMode,
    interval: Duration,
    stop: CancellationToken,
) -> Vec<WriteRecord> {
    let mut records = Vec::new();
    let mut conn: Option<(TcpStream, Option<u16>)> = None;
    let mut n: u64 = 0;
    while !stop.is_cancelled() {
        n += 1;
        let key = format!("{prefix}:{n}");
        let started = std::time::Instant::now();
        if conn.is_none() {
            if let Some(mut s) = connect(&addr).await {
                let port = config_port(&mut s).await;
                if port.is_some() {
                    conn = Some((s, port));
                }
            }
        }
        let (acked, port, error) = match conn.as_mut() {
            None => (
                false,
                None,
                Some("connect failed or closed at once".to_owned()),
            ),
            Some((s, port)) => {
                let cmd = format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{n}\r\n",
                    key.len(),
                    n.to_string().len()
                );
                match request(s, cmd.as_bytes(), 1).await {
                    Some(r) if r.starts_with("+OK") => (true, *port, None),
                    Some(r) => (false, *port, Some(r.trim_end().to_owned())),
                    None => (false, *port, Some("connection closed".to_owned())),
                }
            }
        };
        if !acked || mode == WriteMode::NewConnectionEachWrite {
            conn = None;
        }
        records.push(WriteRecord {
            key,
            started,
            finished: std::time::Instant::now(),
            acked,
            port,
            error,
            finished_wall_ms: redis_ha_common::time::now_ms(),
        });
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    records
}

/// `CONFIG GET port` on an open connection.
pub async fn config_port(s: &mut TcpStream) -> Option<u16> {
    let r = request(s, b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nport\r\n", 5).await?;
    r.split("\r\n").nth(4)?.parse().ok()
}

/// Sends `req` and reads until the reply holds `lines` CRLF-terminated lines (or one line
/// when it is an error reply); `None` on close, error or a 2 s timeout.
pub async fn request(s: &mut TcpStream, req: &[u8], lines: usize) -> Option<String> {
    s.write_all(req).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let crlfs = buf.windows(2).filter(|w| w == b"\r\n").count();
            if crlfs >= lines || (buf.first() == Some(&b'-') && crlfs >= 1) {
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, read).await.ok()?
}

/// A reloader running as a task in the test process, in the style of the other sidecars:
/// stopped through its token, aborted when dropped.
pub struct ReloaderTask {
    cancel: CancellationToken,
    handle: Option<JoinHandle<Result<(), String>>>,
    status: watch::Receiver<ReloaderStatus>,
}

impl ReloaderTask {
    /// Validates `config` (panics on a bad one) and starts the reloader.
    pub fn start(config: ReloaderConfig) -> Self {
        let reloader =
            Reloader::new(config).unwrap_or_else(|e| panic!("reloader configuration: {e}"));
        let status = reloader.status();
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let handle =
            tokio::spawn(async move { reloader.run(token).await.map_err(|e| e.to_string()) });
        Self {
            cancel,
            handle: Some(handle),
            status,
        }
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
        wait_for(
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
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let Some(h) = self.handle.take() else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(30), h).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("the reloader returned an error: {e}"),
            Ok(Err(e)) => panic!("the reloader panicked or was aborted: {e}"),
            Err(_) => panic!("the reloader did not stop within 30 s of its cancellation"),
        }
    }
}

impl Drop for ReloaderTask {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_config_checks_role_master_every_second() {
        let c = classic_config(
            20021,
            20022,
            Path::new("/d/s.sock"),
            &["127.0.0.1:20001".into(), "127.0.0.1:20002".into()],
        );
        assert!(c.contains("tcp-check expect string role:master\n"));
        assert!(c.contains("tcp-check send info\\ replication\\r\\n\n"));
        assert!(c.contains("check inter 1s fall 1 rise 1 on-marked-down shutdown-sessions"));
        assert!(c.contains("    server redis-2 127.0.0.1:20002\n"));
        assert!(c.contains("bind 127.0.0.1:20021\n"));
    }

    #[test]
    fn shipped_config_exists() {
        assert!(shipped_config().is_file(), "{}", shipped_config().display());
    }
}
