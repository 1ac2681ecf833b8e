//! Real processes for the crate tests: redis-server, redis-sentinel and haproxy (with the
//! shipped deploy/haproxy/haproxy.cfg), on free loopback ports, killed on drop.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_ha_reloader::runtime::{RuntimeAddr, RuntimeClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const GROUP: &str = "redis-cluster";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn haproxy_cfg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy/haproxy.cfg")
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Redis {
    pub port: u16,
    pub proc: Proc,
}

impl Redis {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

pub async fn start_redis(dir: &Path, replica_of: Option<u16>) -> Redis {
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--repl-diskless-sync-delay", "0"])
        .arg("--dir")
        .arg(dir)
        .args(["--dbfilename", &format!("dump-{port}.rdb")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(m) = replica_of {
        cmd.args(["--replicaof", "127.0.0.1", &m.to_string()]);
    }
    let proc = Proc {
        child: cmd.spawn().unwrap(),
        name: format!("redis-{port}"),
    };
    wait_until("redis PING", Duration::from_secs(20), || async move {
        raw_command(SocketAddr::from(([127, 0, 0, 1], port)), "PING")
            .await
            .is_some_and(|r| r.starts_with("+PONG"))
    })
    .await;
    Redis { port, proc }
}

/// A sentinel monitoring `GROUP` at 127.0.0.1:`master` (down-after 1000 ms).
pub async fn start_sentinel(dir: &Path, master: u16) -> (u16, Proc) {
    let port = free_port();
    let conf = dir.join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {GROUP} 127.0.0.1 {master} 2\n\
             sentinel down-after-milliseconds {GROUP} 1000\n\
             sentinel failover-timeout {GROUP} 10000\n\
             sentinel parallel-syncs {GROUP} 1\n",
            dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("redis-sentinel")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc {
        child,
        name: format!("sentinel-{port}"),
    };
    wait_until("sentinel PING", Duration::from_secs(20), || async move {
        raw_command(SocketAddr::from(([127, 0, 0, 1], port)), "PING")
            .await
            .is_some_and(|r| r.starts_with("+PONG"))
    })
    .await;
    (port, proc)
}

pub struct Haproxy {
    pub frontend: u16,
    pub socket: PathBuf,
    pub proc: Proc,
    nodes: Vec<u16>,
    stats: u16,
}

impl Haproxy {
    pub fn frontend_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.frontend))
    }

    pub fn client(&self) -> RuntimeClient {
        RuntimeClient::new(
            RuntimeAddr::Unix(self.socket.clone()),
            Duration::from_secs(2),
        )
    }

    /// Kills HAProxy and starts it again from the same configuration.
    pub async fn restart(&mut self) {
        self.proc.kill();
        let _ = std::fs::remove_file(&self.socket);
        self.proc = spawn_haproxy(self.frontend, &self.socket, self.stats, &self.nodes);
        wait_haproxy(&self.socket).await;
    }
}

fn spawn_haproxy(frontend: u16, socket: &Path, stats: u16, nodes: &[u16]) -> Proc {
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db")
        .arg("-f")
        .arg(haproxy_cfg())
        .env("REDIS_HA_PROXY_BIND", format!("127.0.0.1:{frontend}"))
        .env("REDIS_HA_RUNTIME_API", socket)
        .env("REDIS_HA_STATS_BIND", format!("127.0.0.1:{stats}"))
        .env("REDIS_HA_LOG_LEVEL", "warning")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (i, p) in nodes.iter().enumerate() {
        cmd.env(format!("REDIS_HA_NODE_{}", i + 1), format!("127.0.0.1:{p}"));
    }
    Proc {
        child: cmd.spawn().unwrap(),
        name: format!("haproxy-{frontend}"),
    }
}

async fn wait_haproxy(socket: &Path) {
    let client = RuntimeClient::new(RuntimeAddr::Unix(socket.to_owned()), Duration::from_secs(1));
    wait_until("haproxy runtime API", Duration::from_secs(20), || {
        let c = client.clone();
        async move { c.servers_state("redis").await.is_ok() }
    })
    .await;
}

/// HAProxy with the shipped config; node N of the config = `nodes[N-1]`.
pub async fn start_haproxy(dir: &Path, nodes: &[u16]) -> Haproxy {
    let frontend = free_port();
    let stats = free_port();
    let socket = dir.join(format!("haproxy-{frontend}.sock"));
    let proc = spawn_haproxy(frontend, &socket, stats, nodes);
    wait_haproxy(&socket).await;
    Haproxy {
        frontend,
        socket,
        proc,
        nodes: nodes.to_vec(),
        stats,
    }
}

/// Sends one inline command on a new connection; `None` when the connection is closed or
/// fails before an answer.
pub async fn raw_command(addr: SocketAddr, command: &str) -> Option<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    exchange(&mut s, command).await
}

/// Sends one inline command on an open connection and reads one reply chunk.
pub async fn exchange(s: &mut TcpStream, command: &str) -> Option<String> {
    s.write_all(format!("{command}\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    if n == 0 {
        return None;
    }
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The port of the Redis that answers through `addr` (`CONFIG GET port`), if any.
pub async fn routed_port(addr: SocketAddr) -> Option<u16> {
    let r = raw_command(addr, "CONFIG GET port").await?;
    // *2\r\n$4\r\nport\r\n$4\r\n9001\r\n
    r.split("\r\n").nth(4)?.parse().ok()
}
