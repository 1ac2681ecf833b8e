//! A `redis-server` on loopback, configured from the shipped template
//! (`deploy/local/redis.conf.tmpl`, see [`crate::conf`]) into a file in the test's temp dir.
//! Its process controls (kill, stop, pause, resume, pid ...) are the [`ManagedProcess`] it
//! dereferences to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redis::{Cmd, FromRedisValue};

use crate::client::{self, QueryError};
use crate::conf::RedisConf;
use crate::process::{deref_to_process, spawn_configured, ManagedProcess};
use crate::wait::wait_until;

/// How to configure one node: what the template leaves open.
#[derive(Clone, Debug)]
pub struct RedisSpec {
    /// "node-1" ...; names the sub-directory and the messages.
    pub name: String,
    pub port: u16,
    /// The master's port for a replica.
    pub replica_of: Option<u16>,
    /// Sets `requirepass` and `masterauth` (every node, since any may become master).
    pub password: Option<String>,
    /// The Sentinels' down-after, which the node's `min-replicas-max-lag` follows.
    pub down_after_ms: u64,
}

impl RedisSpec {
    /// A node called `name` on `port`, starting as a master, no password, configured for the
    /// kit's Sentinel down-after ([`crate::sentinel::DEFAULT_DOWN_AFTER_MS`]).
    pub fn new(name: &str, port: u16) -> Self {
        Self {
            name: name.to_owned(),
            port,
            replica_of: None,
            password: None,
            down_after_ms: crate::sentinel::DEFAULT_DOWN_AFTER_MS,
        }
    }

    pub fn down_after_ms(mut self, ms: u64) -> Self {
        self.down_after_ms = ms;
        self
    }

    pub fn replica_of(mut self, master_port: u16) -> Self {
        self.replica_of = Some(master_port);
        self
    }

    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }
}

/// A running (or killed, restartable) `redis-server`.
#[derive(Debug)]
pub struct RedisNode {
    spec: RedisSpec,
    dir: PathBuf,
    conf_path: PathBuf,
    process: ManagedProcess,
}

impl RedisNode {
    /// Writes `<parent>/<name>/redis.conf`, starts the server and waits until it answers PING.
    pub async fn start(spec: RedisSpec, parent: &Path) -> Self {
        // The template logs to stdout: the process output file is the Redis log.
        let (dir, conf_path, process) = spawn_configured(
            &spec.name,
            "redis-server",
            parent,
            "redis.conf",
            |dir| {
                RedisConf {
                    node: &spec.name,
                    port: spec.port,
                    data_dir: dir,
                    replica_of: spec.replica_of,
                    password: spec.password.as_deref(),
                    down_after_ms: spec.down_after_ms,
                }
                .render()
            },
            "redis.log",
        );
        let node = Self {
            spec,
            dir,
            conf_path,
            process,
        };
        node.wait_answering().await;
        node
    }

    pub fn port(&self) -> u16 {
        self.spec.port
    }

    /// "127.0.0.1:<port>", the address Sentinel and the sidecars know this node by.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.spec.port)
    }

    pub fn password(&self) -> Option<&str> {
        self.spec.password.as_deref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    /// Starts it again from its config file, which Sentinel may have rewritten (CONFIG
    /// REWRITE after REPLICAOF), as a container restart would. Kills it first if it runs.
    pub async fn restart(&mut self) {
        self.process.kill();
        self.process.start();
        self.wait_answering().await;
    }

    /// [`RedisNode::restart`] with group id `gid` from now on, so a
    /// [`crate::partition::GroupCut`] of that group cuts this node's own connections (its
    /// replication link to the master) and nothing else.
    pub async fn restart_in_group(&mut self, gid: u32) {
        self.process.kill();
        self.process.set_gid(Some(gid));
        self.process.start();
        self.wait_answering().await;
    }

    /// The split-brain scenario: a crashed master comes back from a config without
    /// `replicaof`, so it starts as a master whatever happened meanwhile.
    pub async fn restart_as_master(&mut self) {
        self.process.kill();
        let conf = std::fs::read_to_string(&self.conf_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.conf_path.display()));
        let kept: Vec<&str> = conf
            .lines()
            .filter(|l| {
                let l = l.trim_start().to_ascii_lowercase();
                !l.starts_with("replicaof") && !l.starts_with("slaveof")
            })
            .collect();
        std::fs::write(&self.conf_path, kept.join("\n") + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.conf_path.display()));
        self.process.start();
        self.wait_answering().await;
    }

    /// One command on this node, on a fresh connection.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, QueryError> {
        client::query(self.spec.port, self.password(), cmd).await
    }

    pub async fn info(&self, section: &str) -> Result<HashMap<String, String>, QueryError> {
        client::info(self.spec.port, self.password(), section).await
    }

    /// The client connections (`CLIENT LIST`, flags `N`: not a replica's link from its master,
    /// which is PINGed too) whose last command was `command` (lower case, e.g. `ping`), and the
    /// list itself for a failure message. The connection asking is one whose last command is
    /// `client|list`.
    pub async fn clients_last_at(&self, command: &str) -> Result<(usize, String), QueryError> {
        let list: String = self.query(redis::cmd("CLIENT").arg("LIST")).await?;
        let last = format!(" cmd={command} ");
        let n = list
            .lines()
            .filter(|l| l.contains(" flags=N ") && l.contains(&last))
            .count();
        Ok((n, list))
    }

    /// "master" or "slave", from ROLE.
    pub async fn role(&self) -> Result<String, QueryError> {
        client::role(self.spec.port, self.password()).await
    }

    /// `REPLICAOF 127.0.0.1 <master>`, or `REPLICAOF NO ONE` for `None`.
    pub async fn set_replica_of(&self, master: Option<u16>) -> Result<(), QueryError> {
        let mut cmd = redis::cmd("REPLICAOF");
        match master {
            Some(m) => cmd.arg("127.0.0.1").arg(m),
            None => cmd.arg("NO").arg("ONE"),
        };
        let _: String = self.query(&cmd).await?;
        Ok(())
    }

    /// Ok when this node is a replica of `master_port` with the link up and the first sync
    /// finished; Err describes what it is instead (a probe for `wait_until`).
    pub async fn replica_synced_state(&self, master_port: u16) -> Result<(), String> {
        let i = self.info("replication").await.map_err(|e| e.to_string())?;
        let get = |k: &str| i.get(k).map(String::as_str).unwrap_or("?");
        let ok = get("role") == "slave"
            && get("master_port") == master_port.to_string()
            && get("master_link_status") == "up"
            && get("master_sync_in_progress") == "0";
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{}: role={} master_port={} master_link_status={} master_sync_in_progress={}",
                self.name(),
                get("role"),
                get("master_port"),
                get("master_link_status"),
                get("master_sync_in_progress")
            ))
        }
    }

    /// Waits until this node is a synced replica of `master_port`.
    pub async fn wait_synced_to(&self, master_port: u16) {
        wait_until(
            &format!(
                "{} to be a synced replica of port {master_port}",
                self.name()
            ),
            crate::wait::TIMEOUT,
            || self.replica_synced_state(master_port),
        )
        .await;
    }

    /// The last lines of the Redis log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.output_tail(lines)
    }

    async fn wait_answering(&self) {
        answering(&self.process, self.spec.port, self.password()).await;
    }
}

/// Waits until the process answers PING on `port` (a Redis or a Sentinel).
pub(crate) async fn answering(process: &ManagedProcess, port: u16, password: Option<&str>) {
    process
        .wait_ready(
            &format!("{} to answer PING on {port}", process.name()),
            || async move { client::query::<String>(port, password, &redis::cmd("PING")).await },
        )
        .await;
}

deref_to_process!(RedisNode, process);
