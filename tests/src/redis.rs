//! A `redis-server` process on loopback, configured from a file in the test's temp dir,
//! plus small async helpers to query any Redis or Sentinel port.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue,
    ProtocolVersion, RedisConnectionInfo,
};

use crate::process::{tail, ManagedProcess};
use crate::wait::wait_for;

/// How long one query may take: a paused (SIGSTOPped) server never answers.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a process gets to start answering PING.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("127.0.0.1:{port}: {source}")]
    Redis {
        port: u16,
        #[source]
        source: redis::RedisError,
    },
    #[error("127.0.0.1:{port}: no answer within {QUERY_TIMEOUT:?}")]
    Timeout { port: u16 },
}

/// Runs one command on a fresh connection to 127.0.0.1:`port` (fresh, so a restarted or
/// killed server never leaves a stale connection behind).
pub async fn query<T: FromRedisValue>(
    port: u16,
    password: Option<&str>,
    cmd: &Cmd,
) -> Result<T, QueryError> {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp("127.0.0.1".into(), port),
        redis: RedisConnectionInfo {
            db: 0,
            username: None,
            password: password.map(str::to_owned),
            protocol: ProtocolVersion::RESP2,
        },
    };
    let fut = async {
        let client = Client::open(info)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(QUERY_TIMEOUT)
            .set_response_timeout(QUERY_TIMEOUT);
        let mut con = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        cmd.query_async::<T>(&mut con).await
    };
    match tokio::time::timeout(QUERY_TIMEOUT * 2, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(QueryError::Redis { port, source }),
        Err(_) => Err(QueryError::Timeout { port }),
    }
}

/// `INFO <section>` as a key → value map.
pub async fn info(
    port: u16,
    password: Option<&str>,
    section: &str,
) -> Result<HashMap<String, String>, QueryError> {
    let text: String = query(port, password, redis::cmd("INFO").arg(section)).await?;
    Ok(parse_info(&text))
}

/// Parses INFO output ("key:value" lines, "# Section" headers).
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// How to configure one node.
#[derive(Clone, Debug)]
pub struct RedisSpec {
    /// "node-1" ...; names the sub-directory and the messages.
    pub name: String,
    pub port: u16,
    /// The master's port for a replica.
    pub replica_of: Option<u16>,
    /// Sets `requirepass` and `masterauth` (every node, since any may become master).
    pub password: Option<String>,
}

/// A running (or killed, restartable) `redis-server`.
#[derive(Debug)]
pub struct RedisNode {
    spec: RedisSpec,
    dir: PathBuf,
    conf_path: PathBuf,
    log_path: PathBuf,
    process: ManagedProcess,
}

impl RedisNode {
    /// Writes `<parent>/<name>/redis.conf`, starts the server and waits until it answers PING.
    pub async fn start(spec: RedisSpec, parent: &Path) -> Self {
        let dir = parent.join(&spec.name);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let conf_path = dir.join("redis.conf");
        let log_path = dir.join("redis.log");
        std::fs::write(&conf_path, redis_conf(&spec, &dir, &log_path))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
        let process = ManagedProcess::spawn(
            &spec.name,
            "redis-server",
            &[conf_path.display().to_string()],
            &dir.join("redis.out"),
        );
        let node = Self {
            spec,
            dir,
            conf_path,
            log_path,
            process,
        };
        node.wait_answering().await;
        node
    }

    pub fn name(&self) -> &str {
        &self.spec.name
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

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM (a clean shutdown).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// SIGSTOP (a hung node).
    pub fn pause(&mut self) {
        self.process.pause();
    }

    pub fn resume(&mut self) {
        self.process.resume();
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Starts it again from its config file, which Sentinel may have rewritten (CONFIG
    /// REWRITE after REPLICAOF), as a container restart would. Kills it first if it runs.
    pub async fn restart(&mut self) {
        self.process.kill();
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

    /// One command on this node.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, QueryError> {
        query(self.spec.port, self.password(), cmd).await
    }

    pub async fn info(&self, section: &str) -> Result<HashMap<String, String>, QueryError> {
        info(self.spec.port, self.password(), section).await
    }

    /// "master" or "slave", from INFO replication.
    pub async fn role(&self) -> Result<String, QueryError> {
        Ok(self
            .info("replication")
            .await?
            .remove("role")
            .unwrap_or_default())
    }

    /// Ok when this node is a replica of `master_port` with the link up and the first sync
    /// finished; Err describes what it is instead (for `wait_for`).
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

    /// The last lines of the Redis log (and of its stdout/stderr), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "{}\n{}",
            self.process.output_tail(lines),
            tail(&self.log_path, lines)
        )
    }

    async fn wait_answering(&self) {
        let port = self.spec.port;
        let pw = self.spec.password.clone();
        let name = self.spec.name.clone();
        let log = self.log_path.clone();
        wait_for(
            &format!("{name} to answer PING on {port}"),
            START_TIMEOUT,
            || {
                let pw = pw.clone();
                let log = log.clone();
                async move {
                    match query::<String>(port, pw.as_deref(), &redis::cmd("PING")).await {
                        Ok(_) => Ok(()),
                        Err(e) => Err(format!("{e}; log:\n{}", tail(&log, 10))),
                    }
                }
            },
        )
        .await;
    }
}

fn redis_conf(spec: &RedisSpec, dir: &Path, log: &Path) -> String {
    let mut c = format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         protected-mode no\n\
         daemonize no\n\
         dir {dir}\n\
         logfile {log}\n\
         save \"\"\n\
         appendonly no\n\
         # Redis 7 waits 5 s before the first diskless sync by default: a failover in that\n\
         # window would promote an empty replica.\n\
         repl-diskless-sync-delay 0\n",
        port = spec.port,
        dir = dir.display(),
        log = log.display(),
    );
    if let Some(pw) = &spec.password {
        c.push_str(&format!("requirepass {pw}\nmasterauth {pw}\n"));
    }
    if let Some(master) = spec.replica_of {
        c.push_str(&format!("replicaof 127.0.0.1 {master}\n"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_parsed() {
        let m = parse_info("# Replication\r\nrole:slave\r\nmaster_port:9001\r\n\r\n");
        assert_eq!(m["role"], "slave");
        assert_eq!(m["master_port"], "9001");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn replica_config_names_its_master_and_disables_the_sync_delay() {
        let spec = RedisSpec {
            name: "node-2".into(),
            port: 20002,
            replica_of: Some(20001),
            password: None,
        };
        let c = redis_conf(&spec, Path::new("/d"), Path::new("/d/r.log"));
        assert!(c.contains("replicaof 127.0.0.1 20001\n"));
        assert!(c.contains("repl-diskless-sync-delay 0\n"));
        assert!(!c.contains("requirepass"));
    }
}
