//! The sidecars run as their real binaries (`redis-ha-agent`, `redis-ha-coordinator`,
//! `redis-ha-reloader`), each in its own process with its own environment: the OpenTelemetry
//! provider and the log subscriber are process-global, so a test that checks traces across
//! the three services, or what one binary writes to stderr, needs separate processes.
//!
//! The binaries are found next to the test executable (`target/<profile>/deps/..`); when one is
//! missing or older than the test executable, `cargo build --bins` of their crates runs
//! once per test process, under a file lock shared with the other test processes. The same
//! goes for `redis-ha-chaos`, which the CLI's binary tests need next to `redis-ha`.
//!
//! Ports inside the cluster's block: metrics of agent i at `METRICS_PORT_OFFSET + i` (15-17),
//! the coordinator's at +4 (18), the reloader's at +5 (19).

use std::fs::OpenOptions;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use redis_ha_agent::AgentConfig;
use redis_ha_testkit::{wait_until, ManagedProcess};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::{Cluster, READY_TIMEOUT};
use crate::haproxy::Haproxy;

pub const AGENT_BIN: &str = "redis-ha-agent";
pub const COORDINATOR_BIN: &str = "redis-ha-coordinator";
pub const RELOADER_BIN: &str = "redis-ha-reloader";
/// What `redis-ha simulate` and `redis-ha chaos` run; found next to `redis-ha` in the same
/// directory (the CLI's binary tests).
pub const CHAOS_BIN: &str = "redis-ha-chaos";
/// The start-up decision the Redis and Sentinel images carry (the stack tests build them).
pub const NODE_BIN: &str = "redis-ha-node";
/// The operator's command line (the switchover tests check its exit codes).
pub const CLI_BIN: &str = "redis-ha";
/// Every binary the images carry.
pub const BINS: [&str; 6] = [
    AGENT_BIN,
    COORDINATOR_BIN,
    RELOADER_BIN,
    CHAOS_BIN,
    NODE_BIN,
    CLI_BIN,
];
const PACKAGES: [&str; 6] = [
    "redis-ha-agent",
    "redis-ha-coordinator",
    "redis-ha-reloader",
    "redis-ha-chaos",
    "redis-ha-node",
    "redis-ha-cli",
];

/// First metrics port offset in the cluster's block (see the module doc).
pub const METRICS_PORT_OFFSET: u16 = 14;

/// How a sidecar binary logs and exports.
#[derive(Clone, Debug)]
pub struct SidecarEnv {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; `None`: no export (the variable is removed).
    pub otlp_endpoint: Option<String>,
    /// `REDIS_HA_LOG_FORMAT=json`.
    pub json_logs: bool,
    /// `RUST_LOG`.
    pub rust_log: String,
}

impl Default for SidecarEnv {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            json_logs: false,
            rust_log: "info".into(),
        }
    }
}

impl SidecarEnv {
    /// Exports spans to `endpoint`, with the batch exporter's delay shortened so spans arrive
    /// within a fraction of a second.
    pub fn exporting_to(endpoint: String) -> Self {
        Self {
            otlp_endpoint: Some(endpoint),
            ..Self::default()
        }
    }
}

/// Where the binaries are; builds them first when missing or out of date.
pub fn binary_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(find_or_build) {
        Ok(dir) => dir,
        Err(e) => panic!("sidecar binaries: {e}"),
    }
}

/// The path of one binary (`AGENT_BIN`, ...).
pub fn binary(name: &str) -> PathBuf {
    binary_dir().join(name)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn find_or_build() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    let deps = exe
        .parent()
        .ok_or_else(|| format!("{} has no directory", exe.display()))?;
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    }
    .to_path_buf();
    let exe_time = modified(&exe);
    // Older than the test executable: built before the code the test was built from.
    let stale = |dir: &Path| {
        BINS.iter()
            .any(|b| match (modified(&dir.join(b)), exe_time) {
                (None, _) => true,
                (Some(t), Some(e)) => t < e,
                (Some(_), None) => false,
            })
    };
    if !stale(&dir) {
        return Ok(dir);
    }
    let lock_path = dir.join(".redis-ha-test-bins.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    let _lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another test process may have built them while this one waited.
    if stale(&dir) {
        build(&dir)?;
    }
    if let Some(b) = BINS.iter().find(|b| !dir.join(b).is_file()) {
        return Err(format!("{} missing after the build", dir.join(b).display()));
    }
    Ok(dir)
}

/// `cargo build --bins` of their crates into `dir` (`target/<profile>`).
fn build(dir: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let profile = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target_dir = dir
        .parent()
        .ok_or_else(|| format!("{} has no parent", dir.display()))?;
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--bins")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.arg("--profile").arg(other);
        }
    }
    for p in PACKAGES {
        cmd.arg("-p").arg(p);
    }
    eprintln!("building the sidecar binaries: {cmd:?}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

/// A sidecar binary owned by a test: the kit's [`ManagedProcess`] (SIGKILLed when dropped,
/// also on panic; stdout and stderr in one file), started with a clean environment.
pub struct SidecarProcess(ManagedProcess);

impl SidecarProcess {
    /// Starts `program --config <config>` with `env` on top of a cleaned environment (every
    /// inherited `REDIS_HA_*` and `OTEL_*` variable removed, so the machine's own settings
    /// never leak into a test).
    pub fn spawn(name: &str, program: &Path, config: &Path, env: &SidecarEnv, log: &Path) -> Self {
        Self::spawn_in_group(name, program, config, env, None, log)
    }

    /// Like `spawn`, running with group id `gid` when given (see
    /// [`redis_ha_testkit::partition::GroupCut`]).
    pub fn spawn_in_group(
        name: &str,
        program: &Path,
        config: &Path,
        env: &SidecarEnv,
        gid: Option<u32>,
        log: &Path,
    ) -> Self {
        let remove: Vec<String> = std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .filter(|k| k.starts_with("REDIS_HA_") || k.starts_with("OTEL_") || k == "RUST_LOG")
            .collect();
        let mut set = vec![("RUST_LOG".to_owned(), env.rust_log.clone())];
        if env.json_logs {
            set.push(("REDIS_HA_LOG_FORMAT".into(), "json".into()));
        }
        if let Some(endpoint) = &env.otlp_endpoint {
            set.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.clone()));
            // Export every 100 ms instead of every 5 s.
            set.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
        }
        let args = ["--config".to_owned(), config.display().to_string()];
        Self(ManagedProcess::spawn_with_env_in_group(
            name,
            &program.display().to_string(),
            &args,
            &set,
            &remove,
            gid,
            log,
        ))
    }

    /// SIGTERM (a clean stop: the span exporter flushes), then waits up to 30 s for the exit,
    /// SIGKILL after that. Returns how it ended (`None`: it was not running or had to be killed).
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.0.terminate(Duration::from_secs(30))
    }
}

impl Deref for SidecarProcess {
    type Target = ManagedProcess;
    fn deref(&self) -> &ManagedProcess {
        &self.0
    }
}

impl DerefMut for SidecarProcess {
    fn deref_mut(&mut self) -> &mut ManagedProcess {
        &mut self.0
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.0.name(), self.0.output_tail(40));
        }
    }
}

/// Writes `config` as TOML to `path`.
fn write_config<T: Serialize>(path: &Path, config: &T) {
    let text = toml::to_string(config).unwrap_or_else(|e| panic!("cannot serialize a config: {e}"));
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

impl Cluster {
    /// The metrics port of agent `i` (1-based).
    pub fn agent_metrics_port(&self, i: usize) -> u16 {
        self.ports().port(METRICS_PORT_OFFSET + i as u16)
    }

    pub fn coordinator_metrics_port(&self) -> u16 {
        self.ports().port(METRICS_PORT_OFFSET + 4)
    }

    pub fn reloader_metrics_port(&self) -> u16 {
        self.ports().port(METRICS_PORT_OFFSET + 5)
    }

    /// Starts `redis-ha-coordinator` on the cluster's coordinator port (metrics on its port of
    /// the block) and waits until it answers gRPC.
    pub async fn start_coordinator_binary(&self, env: &SidecarEnv) -> SidecarProcess {
        let mut config = self.coordinator_config();
        config.metrics_addr = format!("127.0.0.1:{}", self.coordinator_metrics_port());
        let path = self.dir().join("coordinator.toml");
        write_config(&path, &config);
        let mut p = SidecarProcess::spawn(
            "coordinator",
            &binary(COORDINATOR_BIN),
            &path,
            env,
            &self.dir().join("coordinator.out"),
        );
        let api = &self.api();
        let serving = wait_until(
            "the coordinator binary to answer gRPC",
            READY_TIMEOUT,
            || {
                let running = p.is_running();
                async move {
                    if !running {
                        return Ok(false);
                    }
                    api.serving_state().await.map(|()| true)
                }
            },
        )
        .await;
        assert!(
            serving,
            "the coordinator binary exited during start-up:\n{}",
            p.output_tail(30)
        );
        p
    }

    /// Starts `redis-ha-agent` for node `i` (the harness's `agent_config(i)`, metrics on its port
    /// of the block, the password file when the cluster has a password).
    pub fn start_agent_binary(&self, i: usize, env: &SidecarEnv) -> SidecarProcess {
        self.start_agent_binary_with(i, self.agent_config(i), env, None)
    }

    /// Starts `redis-ha-agent` for node `i` with `config` (its metrics on its port of the
    /// block), with group id `gid` when given: the one agent a
    /// [`redis_ha_testkit::partition::GroupCut`] of that group cuts off.
    pub fn start_agent_binary_with(
        &self,
        i: usize,
        mut config: AgentConfig,
        env: &SidecarEnv,
        gid: Option<u32>,
    ) -> SidecarProcess {
        config.metrics_addr = format!("127.0.0.1:{}", self.agent_metrics_port(i));
        let path = self.dir().join(format!("agent-{i}.toml"));
        write_config(&path, &config);
        SidecarProcess::spawn_in_group(
            &format!("agent-{i}"),
            &binary(AGENT_BIN),
            &path,
            env,
            gid,
            &self.dir().join(format!("agent-{i}.out")),
        )
    }

    /// Starts `redis-ha-reloader` for `haproxy`, following the coordinator only when
    /// `sentinels` is false (so every switch comes from a coordinator topology).
    pub fn start_reloader_binary(
        &self,
        haproxy: &Haproxy,
        sentinels: bool,
        env: &SidecarEnv,
    ) -> SidecarProcess {
        let mut config = self.reloader_config(haproxy);
        config.metrics_addr = format!("127.0.0.1:{}", self.reloader_metrics_port());
        if !sentinels {
            config.sentinels.clear();
        }
        let path = self.dir().join("reloader.toml");
        write_config(&path, &config);
        SidecarProcess::spawn(
            "reloader",
            &binary(RELOADER_BIN),
            &path,
            env,
            &self.dir().join("reloader.out"),
        )
    }
}

/// `GET /metrics` on 127.0.0.1:`port`: the body of a 200 answer.
pub async fn scrape(port: u16) -> Result<String, String> {
    let fut = async {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())??;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))?;
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(format!("answer: {head}"));
    }
    Ok(body.to_owned())
}

/// Waits until `GET /metrics` on `port` answers; returns the body.
pub async fn wait_scrape(port: u16) -> String {
    wait_until(&format!("/metrics on port {port}"), READY_TIMEOUT, || {
        scrape(port)
    })
    .await
}

/// One sample of a text exposition: name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of an OpenMetrics / Prometheus text exposition (comments skipped, lines that
/// do not parse ignored).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim().to_owned(), value));
    }
}

/// The values of the samples named `name` that carry every label in `labels`.
pub fn values(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_exposition() {
        let text = "# HELP a_total A.\n# TYPE a counter\na_total{kind=\"+switch-master\",node=\"n \\\"1\\\"\"} 3\nb 1.5\nh_bucket{le=\"+Inf\"} 2\n# EOF\n";
        let s = parse_exposition(text);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(
            values(&s, "a_total", &[("kind", "+switch-master")]),
            vec![3.0]
        );
        assert_eq!(values(&s, "a_total", &[("node", "n \"1\"")]), vec![3.0]);
        assert_eq!(
            values(&s, "a_total", &[("kind", "+sdown")]),
            Vec::<f64>::new()
        );
        assert_eq!(values(&s, "b", &[]), vec![1.5]);
        assert_eq!(values(&s, "h_bucket", &[("le", "+Inf")]), vec![2.0]);
    }
}
