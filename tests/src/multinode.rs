//! Multi-node helpers for tests/tests/multinode.rs: the stack spread over a [`Rig`]'s nodes,
//! asked on each node's own address; a writer that can run inside a node's network namespace
//! (the faulted side of a partition); and the figures of a fault ([`FaultFigures`], a pure
//! function of the writers' records).
//!
//! [`Rig`]: redis_ha_testkit::rig::Rig

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use redis_ha_chaos::chaos::docker::NodeNum;

use crate::stack::docker;

/// One command's time limit (and a connection's).
const TIMEOUT: Duration = Duration::from_secs(1);

/// A connection to `addr` as the `default` user.
pub async fn connect(addr: SocketAddr, password: &str) -> Result<MultiplexedConnection, String> {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(addr.ip().to_string(), addr.port()),
        redis: RedisConnectionInfo {
            db: 0,
            username: None,
            password: Some(password.to_owned()),
            protocol: redis::ProtocolVersion::RESP2,
        },
    };
    let client = Client::open(info).map_err(|e| format!("{addr}: {e}"))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(TIMEOUT)
        .set_response_timeout(TIMEOUT);
    match tokio::time::timeout(
        TIMEOUT * 2,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no connection within {:?}", TIMEOUT * 2)),
    }
}

/// One command on a fresh connection to `addr`.
pub async fn query<T: redis::FromRedisValue>(
    addr: SocketAddr,
    password: &str,
    cmd: &redis::Cmd,
) -> Result<T, String> {
    let mut con = connect(addr, password).await?;
    match tokio::time::timeout(TIMEOUT * 2, cmd.query_async(&mut con)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer")),
    }
}

/// "master" / "slave" from the ROLE of the Redis at `addr`.
pub async fn role(addr: SocketAddr, password: &str) -> Result<String, String> {
    let v: Vec<redis::Value> = query(addr, password, &redis::cmd("ROLE")).await?;
    match v.first() {
        Some(redis::Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Some(redis::Value::SimpleString(s)) => Ok(s.clone()),
        other => Err(format!("odd ROLE reply {other:?}")),
    }
}

/// The master a majority of the Sentinels answering names (`redis-N` → N), asking each at
/// its address; the error lists what each answered.
pub async fn sentinel_master(
    sentinels: &[(u8, SocketAddr)],
    password: &str,
    group: &str,
) -> Result<u8, String> {
    named_by(sentinels, password, group, 2)
        .await
        .map_err(|seen| format!("no Sentinel majority: {seen}"))
}

/// The master every one of `sentinels` names (all answer, all agree).
pub async fn sentinels_unanimous(
    sentinels: &[(u8, SocketAddr)],
    password: &str,
    group: &str,
) -> Result<u8, String> {
    named_by(sentinels, password, group, sentinels.len())
        .await
        .map_err(|seen| format!("the Sentinels disagree: {seen}"))
}

/// The node at least `need` of `sentinels` name as master; else what each answered.
async fn named_by(
    sentinels: &[(u8, SocketAddr)],
    password: &str,
    group: &str,
    need: usize,
) -> Result<u8, String> {
    let (votes, seen) = sentinel_votes(sentinels, password, group).await;
    (1..=3u8)
        .find(|&n| usize::from(votes[usize::from(n)]) >= need)
        .ok_or_else(|| seen.join(", "))
}

/// Each Sentinel's master (`votes[N]`: how many name redis-N) and what each answered.
async fn sentinel_votes(
    sentinels: &[(u8, SocketAddr)],
    password: &str,
    group: &str,
) -> ([u8; 4], Vec<String>) {
    let mut votes = [0u8; 4];
    let mut seen = Vec::new();
    for (s, addr) in sentinels {
        let mut c = redis::cmd("SENTINEL");
        c.arg("GET-MASTER-ADDR-BY-NAME").arg(group);
        match query::<Option<(String, String)>>(*addr, password, &c).await {
            Ok(Some((host, _))) => {
                seen.push(format!("s{s}:{host}"));
                if let Ok(n) = host.parse::<NodeNum>() {
                    votes[usize::from(n.get())] += 1;
                }
            }
            Ok(None) => seen.push(format!("s{s}:none")),
            Err(e) => seen.push(format!("s{s}:{e}")),
        }
    }
    (votes, seen)
}

/// The keys of `keys` the Redis at `addr` does not hold.
pub async fn missing_keys(
    addr: SocketAddr,
    password: &str,
    keys: &[String],
) -> Result<Vec<String>, String> {
    let mut con = connect(addr, password).await?;
    redis_ha_testkit::client::missing_keys(&mut con, keys.iter().map(String::as_str))
        .await
        .map_err(|e| format!("MGET on {addr}: {e}"))
}

/// One write attempt.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub key: String,
    pub started: Instant,
    pub finished: Instant,
    pub acked: bool,
    /// The node (1..3) the connection reached (its `CONFIG GET port`, 9000 + N in the stack).
    pub node: Option<u8>,
}

/// Writes `SET <prefix>:<n>` to `addr` every `interval` on one connection (a new one after any
/// failure), optionally from inside a network namespace (`/run/netns/<name>`): its own thread
/// and runtime, since a namespace is a thread's.
pub struct NsWriter {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Attempt>>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NsWriter {
    pub fn start(
        netns: Option<&str>,
        addr: SocketAddr,
        password: &str,
        prefix: &str,
        interval: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), records.clone());
        let netns = netns.map(str::to_owned);
        let password = password.to_owned();
        let prefix = prefix.to_owned();
        let thread = std::thread::spawn(move || {
            if let Some(ns) = &netns {
                let path = format!("/run/netns/{ns}");
                let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns {path}: {e}"))?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("runtime: {e}"))?;
            rt.block_on(write_loop(addr, password, prefix, interval, s, r));
            Ok(())
        });
        Self {
            stop,
            records,
            thread: Some(thread),
        }
    }

    pub fn acked(&self) -> usize {
        lock(&self.records).iter().filter(|a| a.acked).count()
    }

    /// Acknowledged attempts that `pred` accepts.
    pub fn count(&self, pred: impl Fn(&Attempt) -> bool) -> usize {
        lock(&self.records).iter().filter(|a| pred(a)).count()
    }

    /// Stops and returns every attempt, oldest first.
    pub fn finish(mut self) -> Result<Vec<Attempt>, String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| "the writer thread panicked".to_owned())??;
        }
        Ok(std::mem::take(&mut *lock(&self.records)))
    }
}

impl Drop for NsWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn write_loop(
    addr: SocketAddr,
    password: String,
    prefix: String,
    interval: Duration,
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Attempt>>>,
) {
    let mut con: Option<(MultiplexedConnection, Option<u8>)> = None;
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("{prefix}:{i}");
        let started = Instant::now();
        if con.is_none() {
            if let Ok(mut c) = connect(addr, &password).await {
                let node = node_of(&mut c).await;
                con = Some((c, node));
            }
        }
        let (acked, node) = match con.as_mut() {
            Some((c, node)) => {
                let r: Result<Result<String, _>, _> = tokio::time::timeout(
                    TIMEOUT,
                    redis::cmd("SET").arg(&key).arg(i).query_async(c),
                )
                .await;
                (matches!(r, Ok(Ok(_))), *node)
            }
            None => (false, None),
        };
        if !acked {
            con = None;
        }
        lock(&records).push(Attempt {
            key,
            started,
            finished: Instant::now(),
            acked,
            node,
        });
        tokio::time::sleep(interval).await;
    }
}

/// The stack's node behind a connection: Redis N listens on 9000 + N.
async fn node_of(c: &mut MultiplexedConnection) -> Option<u8> {
    let (_, port): (String, String) = tokio::time::timeout(
        TIMEOUT,
        redis::cmd("CONFIG").arg("GET").arg("port").query_async(c),
    )
    .await
    .ok()?
    .ok()?;
    port.parse::<u16>()
        .ok()?
        .checked_sub(9000)
        .and_then(|n| u8::try_from(n).ok())
}

/// A fault's figures, from both writers' attempts (see [`fault_figures`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultFigures {
    /// The longest time without an acknowledged write on the healthy side, from the fault on.
    pub healthy_outage: Duration,
    /// The same on the faulted side.
    pub faulted_outage: Duration,
    /// Writes acknowledged between the fault and `end` (its undoing), on each side.
    pub healthy_acked: usize,
    pub faulted_acked: usize,
    /// From the first write the new master acknowledged to the last the old master
    /// acknowledged after it (either side): zero when the old master stopped first.
    pub two_masters: Duration,
}

/// The longest stretch in `[from, to]` without one of `acks`.
pub fn longest_gap(acks: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut t: Vec<Instant> = acks
        .iter()
        .copied()
        .filter(|a| *a >= from && *a <= to)
        .collect();
    t.sort_unstable();
    let mut prev = from;
    let mut gap = Duration::ZERO;
    for a in t.into_iter().chain(std::iter::once(to)) {
        gap = gap.max(a.saturating_duration_since(prev));
        prev = a;
    }
    gap
}

/// The figures of a fault at `fault` that moved the master from `old` to `new`, until `end`.
pub fn fault_figures(
    healthy: &[Attempt],
    faulted: &[Attempt],
    old: u8,
    new: u8,
    fault: Instant,
    end: Instant,
) -> FaultFigures {
    let acks = |r: &[Attempt]| -> Vec<Instant> {
        r.iter()
            .filter(|a| a.acked && a.finished >= fault && a.finished <= end)
            .map(|a| a.finished)
            .collect()
    };
    let all: Vec<&Attempt> = healthy.iter().chain(faulted).filter(|a| a.acked).collect();
    let first_new = all
        .iter()
        .filter(|a| a.node == Some(new) && a.finished >= fault)
        .map(|a| a.finished)
        .min();
    let last_old = all
        .iter()
        .filter(|a| a.node == Some(old))
        .map(|a| a.finished)
        .max();
    let two_masters = match (first_new, last_old) {
        // No failover: one master throughout.
        _ if old == new => Duration::ZERO,
        (Some(n), Some(o)) => o.saturating_duration_since(n),
        _ => Duration::ZERO,
    };
    FaultFigures {
        healthy_outage: longest_gap(&acks(healthy), fault, end),
        faulted_outage: longest_gap(&acks(faulted), fault, end),
        healthy_acked: acks(healthy).len(),
        faulted_acked: acks(faulted).len(),
        two_masters,
    }
}

/// `redis-ha ARGS` in a throw-away container on stack `stack`'s internal network, against
/// `coordinator:50051` with the operator's certificate (`tls_dir`): it reaches the coordinator
/// on whichever node runs it (its gRPC port is published only on that node) and resolves the
/// name afresh at every call, as an operator's tool on that network would. Its stdout.
pub async fn cli_in_network(
    stack: &str,
    group: &str,
    tls_dir: &std::path::Path,
    args: &[&str],
) -> Result<String, String> {
    let image = docker(&[
        "service",
        "inspect",
        "-f",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        &format!("{stack}_coordinator"),
    ])
    .await?;
    // As the owner of the state directory's certificates: they are readable by it alone.
    let user = {
        use std::os::unix::fs::MetadataExt as _;
        let ca = tls_dir.join("ca.pem");
        let m = std::fs::metadata(&ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        format!("{}:{}", m.uid(), m.gid())
    };
    let network = format!("{stack}_internal");
    let volume = format!("{}:/tls:ro", tls_dir.display());
    let mut run: Vec<&str> = vec![
        "run",
        "--rm",
        "--user",
        &user,
        "--network",
        &network,
        "-v",
        &volume,
        "-e",
        "REDIS_HA_CA=/tls/ca.pem",
        "-e",
        "REDIS_HA_CERT=/tls/operator.pem",
        "-e",
        "REDIS_HA_KEY=/tls/operator-key.pem",
        image.trim(),
        "redis-ha",
        "--timeout-ms",
        "2000",
        "--coordinator",
        "https://coordinator:50051",
        "--group",
        group,
    ];
    run.extend_from_slice(args);
    docker(&run).await
}

/// `redis-ha status --json` through [`cli_in_network`].
pub async fn status_in_network(
    stack: &str,
    group: &str,
    tls_dir: &std::path::Path,
) -> Result<serde_json::Value, String> {
    let out = cli_in_network(stack, group, tls_dir, &["status", "--json"]).await?;
    serde_json::from_str(&out).map_err(|e| format!("status JSON: {e}"))
}

/// The nodes (1..3) whose agent the coordinator behind `status` hears (agent health up).
pub fn agents_heard(status: &serde_json::Value) -> Vec<u8> {
    let mut heard: Vec<u8> = status["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|n| n["agent_health"] == "up")
        .filter_map(|n| n["node"].as_str()?.parse::<NodeNum>().ok())
        .map(NodeNum::get)
        .collect();
    heard.sort_unstable();
    heard
}

/// A node's published port at its address.
pub fn at(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(t0: Instant, ms: u64, acked: bool, node: u8) -> Attempt {
        let t = t0 + Duration::from_millis(ms);
        Attempt {
            key: format!("k{ms}"),
            started: t,
            finished: t,
            acked,
            node: Some(node),
        }
    }

    #[test]
    fn the_longest_gap_counts_the_edges() {
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        assert_eq!(
            longest_gap(&[ms(100), ms(150), ms(900)], ms(0), ms(1000)),
            Duration::from_millis(750)
        );
        assert_eq!(longest_gap(&[], ms(0), ms(500)), Duration::from_millis(500));
        // Before the window: not counted.
        assert_eq!(
            longest_gap(&[ms(10)], ms(100), ms(200)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn two_masters_is_the_overlap_of_old_and_new_acknowledgements() {
        let t0 = Instant::now();
        let healthy = vec![
            attempt(t0, 0, true, 1),
            attempt(t0, 100, false, 1),
            attempt(t0, 2000, true, 2),
            attempt(t0, 2100, true, 2),
        ];
        // The cut-off master kept acknowledging on its side until 2500 ms.
        let faulted = vec![
            attempt(t0, 50, true, 1),
            attempt(t0, 2500, true, 1),
            // After the end: not counted.
            attempt(t0, 3500, true, 2),
        ];
        let end = t0 + Duration::from_millis(3000);
        let f = fault_figures(
            &healthy,
            &faulted,
            1,
            2,
            t0 + Duration::from_millis(10),
            end,
        );
        assert_eq!(f.two_masters, Duration::from_millis(500));
        assert_eq!(f.healthy_outage, Duration::from_millis(1990));
        assert_eq!(f.healthy_acked, 2);
        assert_eq!(f.faulted_acked, 2);
        // It stopped before the promotion: no overlap.
        let faulted = vec![attempt(t0, 1500, true, 1)];
        let f = fault_figures(&healthy, &faulted, 1, 2, t0, end);
        assert_eq!(f.two_masters, Duration::ZERO);
        // No failover (a replica's host lost): one master, never two.
        let one = vec![attempt(t0, 100, true, 1), attempt(t0, 900, true, 1)];
        let f = fault_figures(&one, &one, 1, 1, t0, end);
        assert_eq!(f.two_masters, Duration::ZERO);
        assert_eq!(f.healthy_outage, Duration::from_millis(2100));
    }
}

/// The multi-node tests' stack name.
pub const STACK: &str = "redis-ha-mn";

/// What an earlier multi-node run left, before it was removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// The rig's leftovers ([`redis_ha_testkit::rig::leftovers`]).
    pub rig: Vec<String>,
    /// The host's swarm had no leader and was made a one-manager swarm again.
    pub leadership_restored: bool,
    /// The multi-node stack was still deployed.
    pub stack: bool,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Removes whatever a multi-node run that was stopped before its teardown left (a test killed
/// by its timeout, or the whole run killed): the rig (restoring a host swarm its dead managers
/// left without a leader) and the multi-node stack; what there was.
pub async fn remove_leftovers() -> Result<Removed, String> {
    use redis_ha_testkit::rig;
    let (rig, leadership_restored) = tokio::task::spawn_blocking(|| {
        let left = rig::leftovers();
        let restored = rig::remove_leftovers()?;
        Ok::<_, rig::RigError>((left, restored))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("removing a rig's leftovers: {e}"))?;
    let stack = docker(&["stack", "ls", "--format", "{{.Name}}"])
        .await
        .map(|s| s.lines().any(|l| l == STACK))
        .unwrap_or(false);
    if stack {
        crate::stack::purge(&crate::stack::repo_root(), STACK, &[]).await?;
    }
    Ok(Removed {
        rig,
        leadership_restored,
        stack,
    })
}
