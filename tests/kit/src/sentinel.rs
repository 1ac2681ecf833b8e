//! A `redis-sentinel` on loopback, configured from the shipped template
//! (`deploy/local/sentinel.conf.tmpl`). Its config must be a file: Sentinel rewrites it (myid,
//! discovered replicas and peers, epochs after a failover). Process controls come from the
//! [`ManagedProcess`] it dereferences to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redis::{Cmd, FromRedisValue};

use crate::client::{self, QueryError};
use crate::conf::SentinelConf;
use crate::process::{deref_to_process, spawn_configured, ManagedProcess};
use crate::redis::answering;

/// The kit's Sentinel down-after (ms); a [`crate::RedisSpec`] derives its
/// `min-replicas-max-lag` from the same value unless told otherwise.
pub const DEFAULT_DOWN_AFTER_MS: u64 = 1000;

/// How to configure one Sentinel: what the template leaves open.
#[derive(Clone, Debug)]
pub struct SentinelSpec {
    /// "sentinel-1" ...
    pub name: String,
    pub port: u16,
    /// The master group name (`sentinel monitor <group> ...`).
    pub group: String,
    /// The port of the initial master on 127.0.0.1.
    pub master_port: u16,
    pub quorum: u32,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    /// The test's base password: the Sentinel's own password and its login to the nodes
    /// follow from it ([`crate::conf::SentinelConf::redis_password`]).
    pub redis_password: Option<String>,
}

impl SentinelSpec {
    /// A Sentinel called `name` on `port` watching `group` at `master_port`: quorum 1,
    /// down-after 1000 ms, failover-timeout 10 s (a single Sentinel that decides alone).
    pub fn new(name: &str, port: u16, group: &str, master_port: u16) -> Self {
        Self {
            name: name.to_owned(),
            port,
            group: group.to_owned(),
            master_port,
            quorum: 1,
            down_after_ms: DEFAULT_DOWN_AFTER_MS,
            failover_timeout_ms: 10_000,
            redis_password: None,
        }
    }

    pub fn quorum(mut self, quorum: u32) -> Self {
        self.quorum = quorum;
        self
    }
}

#[derive(Debug)]
pub struct Sentinel {
    spec: SentinelSpec,
    conf_path: PathBuf,
    process: ManagedProcess,
}

impl Sentinel {
    /// Writes `<parent>/<name>/sentinel.conf`, starts Sentinel and waits until it answers PING.
    pub async fn start(spec: SentinelSpec, parent: &Path) -> Self {
        let (_, conf_path, process) = spawn_configured(
            &spec.name,
            "redis-sentinel",
            parent,
            "sentinel.conf",
            |dir| {
                SentinelConf {
                    node: &spec.name,
                    port: spec.port,
                    data_dir: dir,
                    group: &spec.group,
                    master_port: spec.master_port,
                    quorum: spec.quorum,
                    down_after_ms: spec.down_after_ms,
                    failover_timeout_ms: spec.failover_timeout_ms,
                    redis_password: spec.redis_password.as_deref(),
                }
                .render()
            },
            "sentinel.log",
        );
        let s = Self {
            spec,
            conf_path,
            process,
        };
        answering(&s.process, s.spec.port, s.password().as_deref()).await;
        s
    }

    /// Its own password (`requirepass`, set with the test's base password), as
    /// [`crate::conf::sentinel_password`] derives it.
    pub fn password(&self) -> Option<String> {
        self.spec
            .redis_password
            .as_deref()
            .map(crate::conf::sentinel_password)
    }

    pub fn port(&self) -> u16 {
        self.spec.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.spec.port)
    }

    pub fn group(&self) -> &str {
        &self.spec.group
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    /// Starts it again from its (rewritten) config file.
    pub async fn restart(&mut self) {
        self.process.kill();
        self.process.start();
        answering(&self.process, self.spec.port, self.password().as_deref()).await;
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, QueryError> {
        client::query(self.spec.port, self.password().as_deref(), cmd).await
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME <group>` as "ip:port" (None when unknown).
    pub async fn master_addr(&self) -> Result<Option<String>, QueryError> {
        let r: Option<(String, String)> = self
            .query(
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.spec.group),
            )
            .await?;
        Ok(r.map(|(ip, port)| format!("{ip}:{port}")))
    }

    /// `SENTINEL MASTER <group>` as a field → value map (flags, num-slaves, config-epoch ...).
    pub async fn master_state(&self) -> Result<HashMap<String, String>, QueryError> {
        self.query(redis::cmd("SENTINEL").arg("MASTER").arg(&self.spec.group))
            .await
    }

    /// `SENTINEL REPLICAS <group>`, one map per replica.
    pub async fn replicas(&self) -> Result<Vec<HashMap<String, String>>, QueryError> {
        self.query(redis::cmd("SENTINEL").arg("REPLICAS").arg(&self.spec.group))
            .await
    }

    /// `SENTINEL FAILOVER <group>`: a manual failover, no agreement needed.
    pub async fn failover(&self) -> Result<(), QueryError> {
        let _: String = self
            .query(redis::cmd("SENTINEL").arg("FAILOVER").arg(&self.spec.group))
            .await?;
        Ok(())
    }

    /// Ok when this Sentinel sees the master up, `replicas` replicas and `others` other
    /// Sentinels; Err describes what it sees instead.
    pub async fn ready_state(&self, replicas: usize, others: usize) -> Result<(), String> {
        let m = self.master_state().await.map_err(|e| e.to_string())?;
        let get = |k: &str| m.get(k).map(String::as_str).unwrap_or("?");
        if get("flags") == "master"
            && get("num-slaves") == replicas.to_string()
            && get("num-other-sentinels") == others.to_string()
        {
            Ok(())
        } else {
            Err(format!(
                "{}: flags={} num-slaves={} num-other-sentinels={}",
                self.name(),
                get("flags"),
                get("num-slaves"),
                get("num-other-sentinels")
            ))
        }
    }

    /// Ok when this Sentinel lists `replica` ("ip:port") among the group's replicas, with
    /// `flag` among its flags when given; Err describes the replicas it lists instead.
    pub async fn lists_replica(&self, replica: &str, flag: Option<&str>) -> Result<(), String> {
        let all = self.replicas().await.map_err(|e| e.to_string())?;
        let found = all.iter().any(|r| {
            r.get("name").is_some_and(|n| n == replica)
                && flag.is_none_or(|f| {
                    r.get("flags")
                        .is_some_and(|flags| flags.split(',').any(|x| x == f))
                })
        });
        if found {
            Ok(())
        } else {
            let seen: Vec<String> = all
                .iter()
                .map(|r| {
                    format!(
                        "{} [{}]",
                        r.get("name").map_or("?", String::as_str),
                        r.get("flags").map_or("?", String::as_str)
                    )
                })
                .collect();
            Err(format!("{} lists replicas {seen:?}", self.name()))
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.output_tail(lines)
    }
}

deref_to_process!(Sentinel, process);
