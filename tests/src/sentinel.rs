//! A `redis-sentinel` process on loopback. Its config must be a file: Sentinel rewrites it
//! (myid, discovered replicas and peers, epochs after a failover).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redis::{Cmd, FromRedisValue};

use crate::process::{tail, ManagedProcess};
use crate::redis::{query, QueryError, START_TIMEOUT};
use crate::wait::wait_for;

/// How to configure one Sentinel.
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
    /// The Redis password (`sentinel auth-pass`).
    pub redis_password: Option<String>,
}

#[derive(Debug)]
pub struct Sentinel {
    spec: SentinelSpec,
    conf_path: PathBuf,
    log_path: PathBuf,
    process: ManagedProcess,
}

impl Sentinel {
    /// Writes `<parent>/<name>/sentinel.conf`, starts Sentinel and waits until it answers PING.
    pub async fn start(spec: SentinelSpec, parent: &Path) -> Self {
        let dir = parent.join(&spec.name);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let conf_path = dir.join("sentinel.conf");
        let log_path = dir.join("sentinel.log");
        std::fs::write(&conf_path, sentinel_conf(&spec, &dir, &log_path))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
        let process = ManagedProcess::spawn(
            &spec.name,
            "redis-sentinel",
            &[conf_path.display().to_string()],
            &dir.join("sentinel.out"),
        );
        let s = Self {
            spec,
            conf_path,
            log_path,
            process,
        };
        s.wait_answering().await;
        s
    }

    pub fn name(&self) -> &str {
        &self.spec.name
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

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    pub fn pause(&mut self) {
        self.process.pause();
    }

    pub fn resume(&mut self) {
        self.process.resume();
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Starts it again from its (rewritten) config file.
    pub async fn restart(&mut self) {
        self.process.kill();
        self.process.start();
        self.wait_answering().await;
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, QueryError> {
        query(self.spec.port, None, cmd).await
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
        let flat: Vec<String> = self
            .query(redis::cmd("SENTINEL").arg("MASTER").arg(&self.spec.group))
            .await?;
        Ok(pairs(flat))
    }

    /// `SENTINEL REPLICAS <group>`, one map per replica.
    pub async fn replicas(&self) -> Result<Vec<HashMap<String, String>>, QueryError> {
        let all: Vec<Vec<String>> = self
            .query(redis::cmd("SENTINEL").arg("REPLICAS").arg(&self.spec.group))
            .await?;
        Ok(all.into_iter().map(pairs).collect())
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

    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "{}\n{}",
            self.process.output_tail(lines),
            tail(&self.log_path, lines)
        )
    }

    async fn wait_answering(&self) {
        let port = self.spec.port;
        let log = self.log_path.clone();
        wait_for(
            &format!("{} to answer PING on {port}", self.spec.name),
            START_TIMEOUT,
            || {
                let log = log.clone();
                async move {
                    match query::<String>(port, None, &redis::cmd("PING")).await {
                        Ok(_) => Ok(()),
                        Err(e) => Err(format!("{e}; log:\n{}", tail(&log, 10))),
                    }
                }
            },
        )
        .await;
    }
}

fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut it = flat.into_iter();
    let mut m = HashMap::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        m.insert(k, v);
    }
    m
}

fn sentinel_conf(spec: &SentinelSpec, dir: &Path, log: &Path) -> String {
    let g = &spec.group;
    let mut c = format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         protected-mode no\n\
         daemonize no\n\
         dir {dir}\n\
         logfile {log}\n\
         sentinel monitor {g} 127.0.0.1 {master} {quorum}\n\
         sentinel down-after-milliseconds {g} {down}\n\
         sentinel failover-timeout {g} {fo}\n\
         sentinel parallel-syncs {g} 1\n",
        port = spec.port,
        dir = dir.display(),
        log = log.display(),
        master = spec.master_port,
        quorum = spec.quorum,
        down = spec.down_after_ms,
        fo = spec.failover_timeout_ms,
    );
    if let Some(pw) = &spec.redis_password {
        c.push_str(&format!("sentinel auth-pass {g} {pw}\n"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_line_precedes_the_group_settings() {
        let spec = SentinelSpec {
            name: "sentinel-1".into(),
            port: 20011,
            group: "g1".into(),
            master_port: 20001,
            quorum: 2,
            down_after_ms: 1000,
            failover_timeout_ms: 10000,
            redis_password: Some("pw".into()),
        };
        let c = sentinel_conf(&spec, Path::new("/d"), Path::new("/d/s.log"));
        let monitor = c.find("sentinel monitor g1 127.0.0.1 20001 2\n").unwrap();
        let down = c
            .find("sentinel down-after-milliseconds g1 1000\n")
            .unwrap();
        assert!(monitor < down);
        assert!(c.contains("sentinel auth-pass g1 pw\n"));
    }

    #[test]
    fn flat_replies_become_maps() {
        let m = pairs(vec!["a".into(), "1".into(), "b".into(), "2".into()]);
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "2");
    }
}
