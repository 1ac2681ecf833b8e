//! Failover benchmark: our stack against the classic set-up, each on its OWN cluster, both
//! killed at (nearly) the same moment, so both arms see the same machine load:
//!
//! - redis-ha: Redis + Sentinel from the shipped templates, every sidecar (coordinator, an
//!   agent per node, the reloader) and our HAProxy (`deploy/haproxy/haproxy.cfg`);
//! - classic: Redis + Sentinel from the same templates and the same down-after, no sidecar at
//!   all, and HAProxy with the classic `tcp-check ... expect string role:master`
//!   (`inter 1s fall 1 rise 1`, `on-marked-down shutdown-sessions`).
//!
//! ```text
//! cargo bench -p redis-ha-tests --bench failover -- [--reps N] [--down-after 1000,5000]
//!     [--rest-secs 60] [--requests 100000] [--no-throughput] [--no-rest]
//! ```
//!
//! Measured per kill and per arm, from the client's side:
//! - kill → first acknowledged write: SIGKILL of the master → the first write through the
//!   proxy acknowledged by another node (a client writing on a fresh connection every 2 ms);
//! - promotion → first acknowledged write: the node that acknowledged it first answering
//!   `ROLE` = master (polled every 2 ms) → that write;
//! - promotion → first write routed to the promoted node (acknowledged or refused, e.g.
//!   `NOREPLICAS`): when the proxy switched, as against when the node took writes;
//! - which node acknowledged it (it must be the one the Sentinels promoted);
//! - throughput of `redis-benchmark` SET/GET at -P 1 and -P 16, direct and through each proxy;
//! - CPU and RSS at rest: the sidecars (coordinator, 3 agents, reloader: all in this process,
//!   from /proc/self) and each HAProxy (from /proc/<pid>).
//!
//! Prints markdown tables for the README.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use redis_ha_reloader::runtime::OpState;
use redis_ha_tests::figures::{self, failover_sample, FailoverSample};
use redis_ha_tests::haproxy::{Haproxy, ReloaderTask, RoleProber, WriteMode, WriteRecord, Writer};
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, NODES, READY_TIMEOUT};

struct Args {
    reps: usize,
    down_after: Vec<u64>,
    rest_secs: u64,
    requests: u64,
    throughput: bool,
    rest: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        reps: 20,
        down_after: vec![1000, 5000],
        rest_secs: 60,
        requests: 100_000,
        throughput: true,
        rest: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--reps" => {
                a.reps = value("--reps")
                    .parse()
                    .unwrap_or_else(|e| panic!("--reps: {e}"))
            }
            "--down-after" => {
                a.down_after = value("--down-after")
                    .split(',')
                    .map(|v| {
                        v.trim()
                            .parse()
                            .unwrap_or_else(|e| panic!("--down-after: {e}"))
                    })
                    .collect()
            }
            "--rest-secs" => {
                a.rest_secs = value("--rest-secs")
                    .parse()
                    .unwrap_or_else(|e| panic!("--rest-secs: {e}"))
            }
            "--requests" => {
                a.requests = value("--requests")
                    .parse()
                    .unwrap_or_else(|e| panic!("--requests: {e}"))
            }
            "--no-throughput" => a.throughput = false,
            "--no-rest" => a.rest = false,
            // `cargo bench` passes --bench; filters and the like are not used here.
            _ => {}
        }
    }
    a
}

/// One arm of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stack {
    Ours,
    Classic,
}

impl Stack {
    fn label(self) -> &'static str {
        match self {
            Stack::Ours => "redis-ha (agents, coordinator, reloader)",
            Stack::Classic => "classic tcp-check, no sidecars",
        }
    }
}

/// One repetition's numbers for one arm.
#[derive(Clone, Debug, Default)]
struct Sample {
    figures: FailoverSample,
    /// The node the Sentinels promoted (its port).
    promoted: u16,
}

impl Sample {
    fn acked_by_promoted(&self) -> bool {
        self.figures.acked_by == Some(self.promoted)
    }
}

/// A cluster and the proxy in front of it: one arm.
struct Arm {
    stack: Stack,
    // Field order is drop order: the reloader and the proxy go before the cluster.
    reloader: Option<ReloaderTask>,
    proxy: Haproxy,
    cluster: Cluster,
}

impl Arm {
    /// Our arm: the cluster with every sidecar, our HAProxy and the reloader.
    async fn ours(down_after: u64) -> Self {
        let mut cluster = Cluster::start(ClusterOptions {
            group: format!("bench-ours-{down_after}"),
            down_after_ms: down_after,
            ..ClusterOptions::default()
        })
        .await;
        cluster.start_all_sidecars().await;
        cluster.wait_steady_topology(1).await;
        let proxy = cluster.start_haproxy().await;
        let reloader = Some(ReloaderTask::start(cluster.reloader_config(&proxy)));
        Self {
            stack: Stack::Ours,
            reloader,
            proxy,
            cluster,
        }
    }

    /// The classic arm: Redis + Sentinel only (no sidecar), the tcp-check HAProxy.
    async fn classic(down_after: u64) -> Self {
        let cluster = Cluster::start(ClusterOptions {
            group: format!("bench-classic-{down_after}"),
            down_after_ms: down_after,
            ..ClusterOptions::default()
        })
        .await;
        let proxy = cluster.start_classic_haproxy().await;
        Self {
            stack: Stack::Classic,
            reloader: None,
            proxy,
            cluster,
        }
    }

    async fn stop(self) {
        if let Some(r) = self.reloader {
            r.stop().await;
        }
    }

    /// Waits until the cluster is at rest and the proxy sends new connections to its master
    /// only (the classic one: exactly one server UP by its check).
    async fn settle(&mut self) {
        if self.stack == Stack::Ours {
            self.cluster.wait_steady_topology_agreeing().await;
        }
        let m = self.cluster.wait_at_rest_by_sentinels().await;
        let port = self.cluster.node(m).port();
        let h = &self.proxy;
        let name = self.stack.label();
        wait_until(
            &format!("the {name} proxy to route only to the master on {port}"),
            READY_TIMEOUT,
            || async move {
                let up: Vec<String> = h
                    .observe()
                    .await
                    .map_err(|e| e.to_string())?
                    .servers
                    .iter()
                    .filter(|s| s.admin_ready() && s.srv_op_state == OpState::Running)
                    .map(|s| s.srv_name.clone())
                    .collect();
                match h.routed_port().await {
                    Some(p) if p == port && up.len() == 1 => Ok(()),
                    other => Err(format!("routed to {other:?}, up {up:?}")),
                }
            },
        )
        .await;
    }

    /// Starts the writer and the `ROLE` probes of the replicas, and waits until the writer
    /// has 50 writes acknowledged by the master (in its stride, so the figures cover a steady
    /// flow and not the writer's start).
    async fn prepare(&self) -> Pending {
        let old_port = master_port(&self.cluster).await;
        let old = (1..=NODES)
            .find(|&i| self.cluster.node(i).port() == old_port)
            .unwrap_or_else(|| panic!("no node on {old_port}"));
        let replicas: Vec<u16> = (1..=NODES)
            .filter(|&i| i != old)
            .map(|i| self.cluster.node(i).port())
            .collect();
        let writer = Writer::start(
            self.proxy.frontend_port(),
            match self.stack {
                Stack::Ours => "b-ours",
                Stack::Classic => "b-classic",
            },
            WriteMode::NewConnectionEachWrite,
            WRITE_INTERVAL,
        );
        let targets: Vec<(u16, u16)> = replicas.iter().map(|&p| (p, p)).collect();
        let roles = RoleProber::start(&targets, None, Duration::from_millis(2));
        wait_acked(&writer, self.stack, "before the kill", |r| {
            r.port == Some(old_port)
        })
        .await;
        Pending {
            old,
            old_port,
            writer,
            roles,
        }
    }

    /// Sends SIGKILL to the master; returns the instant just before. The process is reaped
    /// by `reap`, after both arms' signals are out, so the two kills are not a reap apart.
    fn signal_kill(&self, p: &Pending) -> Instant {
        let pid = self
            .cluster
            .node(p.old)
            .pid()
            .unwrap_or_else(|| panic!("the master (node {}) does not run", p.old));
        let pid = Pid::from_raw(i32::try_from(pid).unwrap_or_else(|e| panic!("pid {pid}: {e}")));
        let killed = Instant::now();
        signal::kill(pid, Signal::SIGKILL).unwrap_or_else(|e| panic!("SIGKILL {pid}: {e}"));
        killed
    }

    /// Reaps the killed master (the kit's kill: SIGKILL again, a no-op, and wait).
    fn reap(&mut self, p: &Pending) {
        self.cluster.node_mut(p.old).kill();
    }

    /// After the kill: waits for the new master, the proxy routing to it and 50 writes it
    /// acknowledged, then reads the figures from the writer's records.
    async fn measure(&self, p: Pending, killed: Instant) -> Sample {
        let old_addr = self.cluster.node(p.old).addr();
        self.cluster.wait_new_master(&old_addr).await;
        let promoted = master_port(&self.cluster).await;
        self.proxy.wait_routed_to(promoted).await;
        wait_acked(&p.writer, self.stack, "by the new master", |r| {
            r.port == Some(promoted)
        })
        .await;
        let records = p.writer.finish().await;
        let roles = p.roles.finish().await;
        Sample {
            figures: failover_sample(&records, killed, p.old_port, &roles),
            promoted,
        }
    }

    /// The killed node returns from its config (a master's, as a supervisor would restart
    /// it) and is made a replica again (by the agents or by Sentinel), then the arm settles.
    async fn restore(&mut self, old: usize) {
        self.cluster.node_mut(old).restart().await;
        self.cluster.wait_rejoined_as_replica(old).await;
        self.settle().await;
    }
}

/// One arm's kill in progress.
struct Pending {
    old: usize,
    old_port: u16,
    writer: Writer,
    roles: RoleProber,
}

/// The client: a fresh connection for every write, one every 2 ms (as the issue measured it).
const WRITE_INTERVAL: Duration = Duration::from_millis(2);

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let mut samples: BTreeMap<(u64, Stack), Vec<Sample>> = BTreeMap::new();
    let mut throughput = String::new();
    let mut rest = String::new();
    let mut max_gap = Duration::ZERO;
    for (k, &down_after) in args.down_after.iter().enumerate() {
        eprintln!("== down-after {down_after} ms: starting both clusters");
        let mut ours = Arm::ours(down_after).await;
        let mut classic = Arm::classic(down_after).await;
        tokio::join!(ours.settle(), classic.settle());

        if k == 0 && args.throughput {
            throughput = measure_throughput(&ours, &classic, args.requests).await;
        }
        if k == 0 && args.rest {
            rest = measure_rest(&ours.proxy, &classic.proxy, args.rest_secs).await;
        }

        for rep in 1..=args.reps {
            let (p_o, p_c) = tokio::join!(ours.prepare(), classic.prepare());
            // Both signals go out back to back, which first alternating, so neither arm is
            // always the one killed second; each arm is timed from its own kill.
            let (k_o, k_c) = if rep % 2 == 1 {
                let o = ours.signal_kill(&p_o);
                (o, classic.signal_kill(&p_c))
            } else {
                let c = classic.signal_kill(&p_c);
                (ours.signal_kill(&p_o), c)
            };
            ours.reap(&p_o);
            classic.reap(&p_c);
            let gap = k_o.max(k_c) - k_o.min(k_c);
            max_gap = max_gap.max(gap);
            let (old_o, old_c) = (p_o.old, p_c.old);
            let (o, c) = tokio::join!(ours.measure(p_o, k_o), classic.measure(p_c, k_c));
            eprintln!(
                "   rep {rep}/{}: kill → ack ours {:?} classic {:?}; promotion → ack ours {:?} \
                 classic {:?}; promotion → routed ours {:?} classic {:?}; acked by the promoted node: ours {} classic {}; kills {:?} apart",
                args.reps,
                o.figures.outage,
                c.figures.outage,
                o.figures.switch_lag,
                c.figures.switch_lag,
                o.figures.routed_lag,
                c.figures.routed_lag,
                o.acked_by_promoted(),
                c.acked_by_promoted(),
                gap,
            );
            samples
                .entry((down_after, Stack::Ours))
                .or_default()
                .push(o);
            samples
                .entry((down_after, Stack::Classic))
                .or_default()
                .push(c);
            tokio::join!(ours.restore(old_o), classic.restore(old_c));
        }
        ours.stop().await;
        classic.stop().await;
    }
    println!("{}", report(&args, &samples, max_gap, &throughput, &rest));
}

async fn master_port(cluster: &Cluster) -> u16 {
    wait_until(
        "the Sentinels to agree on a master",
        READY_TIMEOUT,
        || async {
            let i = cluster.sentinel_master_node().await?;
            Ok::<_, String>(cluster.node(i).port())
        },
    )
    .await
}

/// Waits until the writer has 50 acknowledged writes that pass `pred`.
async fn wait_acked(
    writer: &Writer,
    stack: Stack,
    what: &str,
    pred: impl Fn(&WriteRecord) -> bool,
) {
    let pred = &pred;
    wait_until(
        &format!(
            "the {} writer to have 50 writes acknowledged {what}",
            stack.label()
        ),
        READY_TIMEOUT,
        || async move {
            match writer.count(|r| r.acked && pred(r)) {
                n if n >= 50 => Ok(()),
                n => Err(format!("{n} acknowledged")),
            }
        },
    )
    .await;
}

/// `redis-benchmark` SET/GET at -P 1 and -P 16: direct to each arm's master and through each
/// arm's proxy (each proxy in front of its own cluster), and the ratio of the two proxies.
async fn measure_throughput(ours: &Arm, classic: &Arm, requests: u64) -> String {
    const KEYS: [(u32, &str); 4] = [(1, "SET"), (1, "GET"), (16, "SET"), (16, "GET")];
    let targets = [
        (
            "direct to the master (redis-ha cluster)".to_owned(),
            master_port(&ours.cluster).await,
        ),
        (
            "direct to the master (classic cluster)".to_owned(),
            master_port(&classic.cluster).await,
        ),
        (
            format!("{} HAProxy", ours.stack.label()),
            ours.proxy.frontend_port(),
        ),
        (
            format!("{} HAProxy", classic.stack.label()),
            classic.proxy.frontend_port(),
        ),
    ];
    let mut t = String::from(
        "| path | SET -P 1 | GET -P 1 | SET -P 16 | GET -P 16 |\n|---|---:|---:|---:|---:|\n",
    );
    let mut measured = Vec::new();
    for (name, port) in &targets {
        let mut cells = BTreeMap::new();
        for pipeline in [1u32, 16] {
            eprintln!("   redis-benchmark {name} -P {pipeline}");
            for (test, rps) in redis_benchmark(*port, pipeline, requests).await {
                cells.insert((pipeline, test), rps);
            }
        }
        let row: Vec<Option<f64>> = KEYS
            .iter()
            .map(|(p, test)| cells.get(&(*p, (*test).to_owned())).copied())
            .collect();
        let _ = write!(t, "| {name} |");
        for v in &row {
            let v = v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
            let _ = write!(t, " {v} |");
        }
        t.push('\n');
        measured.push(row);
    }
    // Rows 2 and 3: the two proxies.
    let _ = write!(t, "| **redis-ha / classic (proxies)** |");
    for (o, c) in measured[2].iter().zip(&measured[3]) {
        let r = match (*o, *c) {
            (Some(o), Some(c)) if c > 0.0 => format!("**{:.2}**", o / c),
            _ => "-".to_owned(),
        };
        let _ = write!(t, " {r} |");
    }
    t.push('\n');
    let _ = writeln!(
        t,
        "\nrequests/s, `redis-benchmark -t set,get -n {requests} -c 50`, loopback, 2-core machine; \
         each proxy in front of its own arm's cluster (same Redis configuration), measured one \
         after the other with both clusters running."
    );
    t
}

async fn redis_benchmark(port: u16, pipeline: u32, requests: u64) -> Vec<(String, f64)> {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "set,get", "-n", &requests.to_string(), "-c", "50"])
            .args(["-P", &pipeline.to_string(), "--csv"])
            .output()
    })
    .await
    .unwrap_or_else(|e| panic!("redis-benchmark task: {e}"))
    .unwrap_or_else(|e| panic!("cannot run redis-benchmark: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(|x| x.trim_matches('"'));
            let test = f.next()?;
            let rps: f64 = f.next()?.parse().ok()?;
            matches!(test, "SET" | "GET").then(|| (test.to_owned(), rps))
        })
        .collect()
}

/// (CPU seconds, RSS kB) of a process from /proc.
fn proc_usage(pid: &str, ticks: f64) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(((utime + stime) / ticks, rss))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

async fn measure_rest(ours: &Haproxy, classic: &Haproxy, secs: u64) -> String {
    // Both clusters run meanwhile; only the redis-ha one has sidecars.
    eprintln!("   at rest for {secs} s");
    let ticks = clock_ticks();
    let procs = [
        (
            "sidecars: coordinator + 3 agents + reloader (one process)".to_owned(),
            "self".to_owned(),
        ),
        (
            "HAProxy, redis-ha config".to_owned(),
            ours.pid().map(|p| p.to_string()).unwrap_or_default(),
        ),
        (
            "HAProxy, classic tcp-check config".to_owned(),
            classic.pid().map(|p| p.to_string()).unwrap_or_default(),
        ),
    ];
    let before: Vec<Option<(f64, u64)>> = procs.iter().map(|(_, p)| proc_usage(p, ticks)).collect();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = t0.elapsed().as_secs_f64();
    let mut t = String::from("| process | CPU at rest | RSS |\n|---|---:|---:|\n");
    for ((name, pid), b) in procs.iter().zip(before) {
        match (b, proc_usage(pid, ticks)) {
            (Some((c0, _)), Some((c1, rss))) => {
                let _ = writeln!(
                    t,
                    "| {name} | {:.2} % | {:.1} MB |",
                    (c1 - c0) / wall * 100.0,
                    rss as f64 / 1024.0
                );
            }
            _ => {
                let _ = writeln!(t, "| {name} | - | - |");
            }
        }
    }
    let _ = writeln!(
        t,
        "\nover {wall:.0} s with no client traffic (agents heartbeat every 500 ms, reloader \
         read-back every 1 s, HAProxy health checks: redis-ha every 2 s, classic every 1 s), \
         both arms' clusters running, the sidecars only in the redis-ha one; sidecars built with cargo's bench (optimised) profile."
    );
    t
}

/// "min / median / max unit" of `v`, or "-".
fn triple(v: &[Duration], unit: Unit) -> String {
    let Some((lo, mid, hi)) = figures::min_median_max(v) else {
        return "-".into();
    };
    match unit {
        Unit::Secs => format!(
            "{:.2} / {:.2} / {:.2} s",
            lo.as_secs_f64(),
            mid.as_secs_f64(),
            hi.as_secs_f64()
        ),
        Unit::Millis => format!(
            "{:.0} / {:.0} / {:.0} ms",
            lo.as_secs_f64() * 1e3,
            mid.as_secs_f64() * 1e3,
            hi.as_secs_f64() * 1e3
        ),
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Secs,
    Millis,
}

/// "median 0.57, max 0.58": ours / classic of the medians and of the maxes.
fn ratios(ours: &[Duration], classic: &[Duration]) -> String {
    match figures::median_max_ratios(ours, classic) {
        (None, None) => "-".into(),
        (median, max) => format!(
            "median **{}**, max **{}**",
            figures::ratio_cell(median),
            figures::ratio_cell(max)
        ),
    }
}

fn report(
    args: &Args,
    samples: &BTreeMap<(u64, Stack), Vec<Sample>>,
    max_gap: Duration,
    throughput: &str,
    rest: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Failover on SIGKILL of the master\n\n\
         Each arm on its own cluster (Redis + Sentinel from the shipped templates, same \
         down-after); both masters SIGKILLed back to back (at most {:.2} ms apart), {} times \
         per down-after. A client per arm writes through its proxy on a fresh connection every \
         {} ms; `ROLE` polled on the replicas every 2 ms. min / median / max.",
        max_gap.as_secs_f64() * 1e3,
        args.reps,
        WRITE_INTERVAL.as_millis()
    );
    for &da in &args.down_after {
        let get = |stack| samples.get(&(da, stack)).map_or(&[][..], Vec::as_slice);
        let pick = |s: &[Sample], f: fn(&FailoverSample) -> Option<Duration>| -> Vec<Duration> {
            s.iter().filter_map(|x| f(&x.figures)).collect()
        };
        let _ = writeln!(
            out,
            "\n#### down-after {da} ms\n\n\
             | arm | kill → first acknowledged write | promotion (`ROLE` = master) → first \
             acknowledged write | promotion → first write routed to it | acknowledged by the \
             promoted node |\n|---|---:|---:|---:|---:|"
        );
        let mut figs = BTreeMap::new();
        for stack in [Stack::Ours, Stack::Classic] {
            let s = get(stack);
            let outage = pick(s, |f| f.outage);
            let lag = pick(s, |f| f.switch_lag);
            let routed = pick(s, |f| f.routed_lag);
            let by_promoted = s.iter().filter(|x| x.acked_by_promoted()).count();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {by_promoted}/{} |",
                stack.label(),
                triple(&outage, Unit::Secs),
                triple(&lag, Unit::Millis),
                triple(&routed, Unit::Millis),
                s.len()
            );
            figs.insert(stack, (outage, lag));
        }
        if let (Some((oo, ol)), Some((co, cl))) =
            (figs.get(&Stack::Ours), figs.get(&Stack::Classic))
        {
            let _ = writeln!(
                out,
                "| **redis-ha / classic** | {} | {} | | |",
                ratios(oo, co),
                ratios(ol, cl)
            );
        }
    }
    if !throughput.is_empty() {
        let _ = writeln!(out, "\n### Throughput\n\n{throughput}");
    }
    if !rest.is_empty() {
        let _ = writeln!(out, "\n### At rest\n\n{rest}");
    }
    out
}
