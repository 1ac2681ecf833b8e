//! HAProxy on loopback: the shipped `deploy/haproxy/haproxy.cfg` unchanged, with the
//! environment variables it reads (frontend, runtime socket, stats, node addresses), or any
//! other configuration file (the benchmark's comparison set-up). Process controls come from the
//! [`ManagedProcess`] it dereferences to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use redis::aio::MultiplexedConnection;

use crate::client;
use crate::conf::{haproxy_config, haproxy_guard};
use crate::process::{deref_to_process, ManagedProcess};
use crate::wait::{wait_until, TIMEOUT};

/// The backend name of the shipped configuration's default (`REDIS_HA_BACKEND`).
pub const BACKEND: &str = "redis";
/// The read endpoint's backend name, the shipped default (`REDIS_HA_READ_BACKEND`).
pub const READ_BACKEND: &str = "redis_read";
/// The majority guard's backend in the shipped configuration (deploy/haproxy/majority-guard.lua).
pub const QUORUM_BACKEND: &str = "redis_quorum";

/// How long one runtime API exchange may take.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(2);

/// What the shipped configuration leaves to its environment.
#[derive(Clone, Debug)]
pub struct HaproxySpec {
    /// Names the process and its output file.
    pub name: String,
    pub frontend: u16,
    /// The read endpoint's frontend (`REDIS_HA_READ_BIND`).
    pub read_frontend: u16,
    pub stats: u16,
    /// The runtime API's unix socket.
    pub socket: PathBuf,
    /// Server `redis-N` = `nodes[N-1]` ("host:port"); three in the shipped file.
    pub nodes: Vec<String>,
    /// `REDIS_HA_NO_CHECK`: no tcp-check (Redis with a password: the check cannot AUTH).
    pub no_check: bool,
}

/// One HAProxy process; killed when dropped.
#[derive(Debug)]
pub struct Haproxy {
    frontend: u16,
    /// The read endpoint's frontend; `None` for a configuration without one.
    read_frontend: Option<u16>,
    socket: PathBuf,
    backend: String,
    process: ManagedProcess,
    /// The password the test's own connections through the frontend log in with (the
    /// operator's: `CONFIG GET port` tells where they landed); `None`: no AUTH.
    client_password: Option<String>,
}

impl Haproxy {
    /// Starts HAProxy with the shipped configuration (every server in maint until a reloader
    /// speaks) and waits until its runtime API answers. Output goes to `<dir>/<name>.out`.
    pub async fn start_shipped(spec: &HaproxySpec, dir: &Path) -> Self {
        let mut args = vec![
            format!("REDIS_HA_PROXY_BIND=127.0.0.1:{}", spec.frontend),
            format!("REDIS_HA_READ_BIND=127.0.0.1:{}", spec.read_frontend),
            format!("REDIS_HA_RUNTIME_API={}", spec.socket.display()),
            format!("REDIS_HA_STATS_BIND=127.0.0.1:{}", spec.stats),
            format!("REDIS_HA_BACKEND={BACKEND}"),
            format!("REDIS_HA_GUARD_LUA={}", haproxy_guard().display()),
            "REDIS_HA_LOG_LEVEL=notice".to_owned(),
        ];
        for (i, addr) in spec.nodes.iter().enumerate() {
            args.push(format!("REDIS_HA_NODE_{}={addr}", i + 1));
        }
        if spec.no_check {
            args.push("REDIS_HA_NO_CHECK=1".to_owned());
        }
        args.extend([
            "haproxy".to_owned(),
            "-db".to_owned(),
            "-f".to_owned(),
            haproxy_config().display().to_string(),
        ]);
        // `env` execs haproxy: the managed pid is HAProxy's own.
        let output = dir.join(format!("{}.out", spec.name));
        let process = ManagedProcess::spawn(&spec.name, "env", &args, &output);
        let mut h = Self::started(spec.frontend, spec.socket.clone(), BACKEND, process).await;
        h.read_frontend = Some(spec.read_frontend);
        h
    }

    /// Starts HAProxy from `config`, whose frontend is on `frontend`, runtime API on `socket`
    /// and servers in `backend`.
    pub async fn start_with_config(
        name: &str,
        config: &Path,
        frontend: u16,
        socket: &Path,
        backend: &str,
        dir: &Path,
    ) -> Self {
        let args = vec![
            "-db".to_owned(),
            "-f".to_owned(),
            config.display().to_string(),
        ];
        let output = dir.join(format!("{name}.out"));
        let process = ManagedProcess::spawn(name, "haproxy", &args, &output);
        Self::started(frontend, socket.to_owned(), backend, process).await
    }

    async fn started(
        frontend: u16,
        socket: PathBuf,
        backend: &str,
        process: ManagedProcess,
    ) -> Self {
        let h = Self {
            frontend,
            read_frontend: None,
            socket,
            backend: backend.to_owned(),
            process,
            client_password: None,
        };
        h.wait_answering().await;
        h
    }

    pub fn frontend_port(&self) -> u16 {
        self.frontend
    }

    /// The read endpoint's frontend port.
    ///
    /// # Panics
    /// When this HAProxy's configuration has no read endpoint (not the shipped one).
    pub fn read_frontend_port(&self) -> u16 {
        self.read_frontend
            .unwrap_or_else(|| panic!("this HAProxy has no read endpoint"))
    }

    /// The port of the Redis a new connection through the read endpoint reaches; `None` when
    /// HAProxy closes the connection (nothing ready) or it fails.
    pub async fn read_routed_port(&self) -> Option<u16> {
        client::routed_port(self.read_frontend_port(), self.client_password.as_deref()).await
    }

    /// The password of the test's own connections through the frontend.
    pub fn client_password(&self) -> Option<&str> {
        self.client_password.as_deref()
    }

    /// Sets the password of the test's own connections through the frontend.
    pub fn set_client_password(&mut self, password: Option<String>) {
        self.client_password = password;
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

    /// Kills HAProxy and starts it again from the same configuration (all servers back in
    /// maint for the shipped one), waiting until its runtime API answers.
    pub async fn restart(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_file(&self.socket);
        self.process.start();
        self.wait_answering().await;
    }

    /// One runtime API command (`show servers state redis` ...) and its whole answer.
    pub async fn runtime_command(&self, command: &str) -> Result<String, String> {
        let exchange = async {
            let mut s = UnixStream::connect(&self.socket).await?;
            s.write_all(format!("{command}\n").as_bytes()).await?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(RUNTIME_TIMEOUT, exchange).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(format!("{}: {e}", self.socket.display())),
            Err(_) => Err(format!(
                "{}: no answer to {command:?}",
                self.socket.display()
            )),
        }
    }

    /// The port of the Redis a new connection through the frontend reaches (`CONFIG GET
    /// port`); `None` when HAProxy closes the connection (nothing routed) or it fails.
    pub async fn routed_port(&self) -> Option<u16> {
        client::routed_port(self.frontend, self.client_password.as_deref()).await
    }

    /// Waits until new connections through the frontend reach the Redis on `port`.
    pub async fn wait_routed_to(&self, port: u16) {
        wait_until(
            &format!("{} to route to port {port}", self.frontend_addr()),
            TIMEOUT,
            || async move {
                match self.routed_port().await {
                    Some(p) if p == port => Ok(()),
                    other => Err(format!("routed to {other:?}")),
                }
            },
        )
        .await;
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.output_tail(lines)
    }

    async fn wait_answering(&self) {
        let command = format!("show servers state {}", self.backend);
        self.process
            .wait_ready(
                &format!("HAProxy's runtime API on {}", self.socket.display()),
                || async {
                    match self.runtime_command(&command).await? {
                        // The state file format starts with its version line.
                        a if a.starts_with('1') => Ok(()),
                        a => Err(format!("answer {a:?}")),
                    }
                },
            )
            .await;
    }

    /// A client connection through the frontend, held by the test (it never reconnects:
    /// once HAProxy cuts it, every command fails).
    pub async fn hold_connection(&self) -> MultiplexedConnection {
        client::connect(self.frontend, self.client_password.as_deref())
            .await
            .unwrap_or_else(|e| panic!("cannot connect through HAProxy: {e}"))
    }
}

deref_to_process!(Haproxy, process);

impl Drop for Haproxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.process.name(), self.log_tail(40));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_exists() {
        assert!(haproxy_config().is_file(), "{}", haproxy_config().display());
    }
}
