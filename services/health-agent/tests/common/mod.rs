//! Test harness: real `redis-server` / `redis-sentinel` processes on loopback free ports,
//! killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(30);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one inline command and returns the first reply line ("" when nothing came).
pub fn raw_command(port: u16, cmd: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if s.write_all(format!("{cmd}\r\n").as_bytes()).is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub name: String,
    pub port: u16,
    child: Option<Child>,
    pub dir: tempfile::TempDir,
}

impl Proc {
    /// SIGSTOP / SIGCONT: a process that hangs with its sockets open.
    pub fn pause(&self, paused: bool) {
        let pid = nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32);
        let sig = if paused {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A paused process must be able to die.
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        self.kill();
    }
}

fn wait_answering(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let reply = raw_command(port, "PING");
        if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} on port {port} did not start");
}

/// `redis-server` on a free port with extra arguments (e.g. `--replicaof 127.0.0.1 P`).
pub fn redis(extra: &[&str]) -> Proc {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ])
        .arg("--dir")
        .arg(dir.path())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed");
    let p = Proc {
        name: format!("redis:{port}"),
        port,
        child: Some(child),
        dir,
    };
    wait_answering(port, "redis-server");
    p
}

/// `redis-sentinel` on a free port monitoring `group` at `master_port` with quorum 1 and
/// short timings.
pub fn sentinel(group: &str, master_port: u16) -> Proc {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf: PathBuf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {group} 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds {group} 1000\n\
             sentinel failover-timeout {group} 5000\n\
             sentinel parallel-syncs {group} 1\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let child = Command::new("redis-sentinel")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-sentinel must be installed");
    let p = Proc {
        name: format!("sentinel:{port}"),
        port,
        child: Some(child),
        dir,
    };
    wait_answering(port, "redis-sentinel");
    p
}

/// Polls `f` until it returns `Some`, panicking with `what` after [`WAIT`].
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `content` to a file in `dir`.
pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}
