//! Failover benchmark: our stack (HAProxy driven by the reloader) against the classic
//! HAProxy set-up (`tcp-check ... expect string role:master`, `inter 1s fall 1 rise 1`), both
//! in front of the SAME cluster, so every SIGKILL of the master is measured through both at
//! once, under the same Sentinel settings.
//!
//!   cargo bench -p redis-ha-tests --bench failover -- [--reps N] [--down-after 1000,5000]
//!       [--rest-secs 60] [--requests 100000] [--no-throughput] [--no-rest]
//!
//! Measured:
//! - write outage: SIGKILL of the master → first write acknowledged through the proxy
//!   (a client writing every 1 ms on one connection, reconnecting at once after a failure);
//! - switch lag: the promoted node first answering `ROLE` = master (polled every 2 ms) → the
//!   first write acknowledged by it through the proxy;
//! - throughput of `redis-benchmark` SET/GET at -P 1 and -P 16, direct and through each proxy;
//! - CPU and RSS at rest: the sidecars (coordinator, 3 agents, reloader: all in this process,
//!   from /proc/self) and each HAProxy (from /proc/<pid>).
//!
//! Prints markdown tables for the README.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_ha_reloader::runtime::OpState;
use redis_ha_tests::figures;
use redis_ha_tests::haproxy::{Haproxy, ReloaderTask, WriteMode, WriteRecord, Writer};
use redis_ha_tests::kit::client;
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, NODES, READY_TIMEOUT};
use tokio_util::sync::CancellationToken;

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
        reps: 10,
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

/// One stack under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stack {
    Ours,
    Classic,
}

impl Stack {
    fn label(self) -> &'static str {
        match self {
            Stack::Ours => "redis-ha (reloader)",
            Stack::Classic => "classic tcp-check",
        }
    }
}

/// One repetition's numbers for one stack.
#[derive(Clone, Debug, Default)]
struct Sample {
    outage: Option<Duration>,
    switch_lag: Option<Duration>,
}

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
    for (k, &down_after) in args.down_after.iter().enumerate() {
        eprintln!("== down-after {down_after} ms: starting the cluster");
        let mut cluster = Cluster::start(ClusterOptions {
            group: format!("bench-{down_after}"),
            down_after_ms: down_after,
            ..ClusterOptions::default()
        })
        .await;
        cluster.start_all_sidecars().await;
        cluster.wait_steady_topology(1).await;
        let ours = cluster.start_haproxy().await;
        let reloader = ReloaderTask::start(cluster.reloader_config(&ours));
        let classic = cluster.start_classic_haproxy().await;
        settle(&cluster, &ours, &classic).await;

        if k == 0 && args.throughput {
            throughput = measure_throughput(&cluster, &ours, &classic, args.requests).await;
        }
        if k == 0 && args.rest {
            rest = measure_rest(&ours, &classic, args.rest_secs).await;
        }

        for rep in 1..=args.reps {
            let (o, c) = one_failover(&mut cluster, &ours, &classic).await;
            eprintln!(
                "   rep {rep}/{}: outage ours {:?} classic {:?}; switch lag ours {:?} classic {:?}",
                args.reps, o.outage, c.outage, o.switch_lag, c.switch_lag
            );
            samples
                .entry((down_after, Stack::Ours))
                .or_default()
                .push(o);
            samples
                .entry((down_after, Stack::Classic))
                .or_default()
                .push(c);
            settle(&cluster, &ours, &classic).await;
        }
        reloader.stop().await;
        drop(classic);
        drop(ours);
        drop(cluster);
    }
    println!("{}", report(&args, &samples, &throughput, &rest));
}

/// Waits until the cluster is at rest and both proxies send new connections to its master
/// only (the classic one: exactly one server UP by its check).
async fn settle(cluster: &Cluster, ours: &Haproxy, classic: &Haproxy) {
    cluster.wait_sentinels_ready().await;
    let port = master_port(cluster).await;
    for (name, h) in [("ours", ours), ("classic", classic)] {
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

/// Waits until each writer has 50 acknowledged writes that pass `pred` (the writers in their
/// stride, so the figures cover a steady flow and not the writers' start or end).
async fn both_acked(
    ours: &Writer,
    classic: &Writer,
    what: &str,
    pred: impl Fn(&WriteRecord) -> bool,
) {
    let pred = &pred;
    wait_until(
        &format!("both writers to have 50 writes acknowledged {what}"),
        READY_TIMEOUT,
        || async move {
            let acked = |w: &Writer| w.count(|r| r.acked && pred(r));
            match (acked(ours), acked(classic)) {
                (o, c) if o >= 50 && c >= 50 => Ok(()),
                (o, c) => Err(format!("acked {o} (ours) / {c} (classic)")),
            }
        },
    )
    .await;
}

/// When each node first answered `ROLE` = master.
type RoleTimes = Arc<Mutex<BTreeMap<u16, Instant>>>;

/// Polls `ROLE` on `ports` every 2 ms (one connection each, renewed on failure).
fn start_role_prober(
    ports: Vec<u16>,
    stop: CancellationToken,
) -> (RoleTimes, Vec<tokio::task::JoinHandle<()>>) {
    let times: RoleTimes = Arc::default();
    let mut tasks = Vec::new();
    for port in ports {
        let times = times.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            while !stop.is_cancelled() {
                if conn.is_none() {
                    conn = client::connect(port, None).await.ok();
                }
                if let Some(c) = conn.as_mut() {
                    match client::run::<Vec<redis::Value>>(c, port, &redis::cmd("ROLE")).await {
                        Ok(v) if matches!(v.first(), Some(redis::Value::BulkString(b)) if b == b"master") => {
                            let now = Instant::now();
                            if let Ok(mut t) = times.lock() {
                                t.entry(port).or_insert(now);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => conn = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    (times, tasks)
}

/// Kills the master once, measures both stacks, and brings the killed node back as a replica.
async fn one_failover(
    cluster: &mut Cluster,
    ours: &Haproxy,
    classic: &Haproxy,
) -> (Sample, Sample) {
    let old_port = master_port(cluster).await;
    let old = (1..=NODES)
        .find(|&i| cluster.node(i).port() == old_port)
        .unwrap_or_else(|| panic!("no node on {old_port}"));
    let replicas: Vec<u16> = (1..=NODES)
        .filter(|&i| i != old)
        .map(|i| cluster.node(i).port())
        .collect();

    let w_ours = Writer::start(
        ours.frontend_port(),
        "b-ours",
        WriteMode::Persistent,
        Duration::from_millis(1),
    );
    let w_classic = Writer::start(
        classic.frontend_port(),
        "b-classic",
        WriteMode::Persistent,
        Duration::from_millis(1),
    );
    let stop = CancellationToken::new();
    let (roles, probers) = start_role_prober(replicas, stop.clone());
    both_acked(&w_ours, &w_classic, "before the kill", |_| true).await;

    let killed = Instant::now();
    cluster.node_mut(old).kill();
    let old_addr = cluster.node(old).addr();
    cluster.wait_new_master(&old_addr).await;
    let new_port = master_port(cluster).await;
    for h in [ours, classic] {
        h.wait_routed_to(new_port).await;
    }
    both_acked(&w_ours, &w_classic, "by the new master", |r| {
        r.port == Some(new_port)
    })
    .await;
    let r_ours = w_ours.finish().await;
    let r_classic = w_classic.finish().await;
    stop.cancel();
    for p in probers {
        let _ = p.await;
    }
    let roles = roles.lock().map(|t| t.clone()).unwrap_or_default();

    let sample = |records: &[WriteRecord]| {
        let first = records
            .iter()
            .find(|r| r.acked && r.finished > killed && r.port.is_some_and(|p| p != old_port));
        Sample {
            outage: first.map(|r| r.finished - killed),
            switch_lag: first.and_then(|r| {
                let port = r.port?;
                let became = *roles.get(&port)?;
                Some(r.finished.saturating_duration_since(became))
            }),
        }
    };
    let out = (sample(&r_ours), sample(&r_classic));

    // The killed node returns (from its master config) and is made a replica again.
    cluster.node_mut(old).restart().await;
    cluster.wait_rejoined_as_replica(old).await;
    cluster.wait_steady_topology_agreeing().await;
    out
}

/// `redis-benchmark` SET/GET at -P 1 and -P 16: direct to the master, through each proxy.
async fn measure_throughput(
    cluster: &Cluster,
    ours: &Haproxy,
    classic: &Haproxy,
    requests: u64,
) -> String {
    let master = master_port(cluster).await;
    let targets = [
        ("direct to the master", master),
        (Stack::Ours.label(), ours.frontend_port()),
        (Stack::Classic.label(), classic.frontend_port()),
    ];
    let mut t = String::from(
        "| path | SET -P 1 | GET -P 1 | SET -P 16 | GET -P 16 |\n|---|---:|---:|---:|---:|\n",
    );
    for (name, port) in targets {
        let mut row = format!("| {name} |");
        let mut cells = BTreeMap::new();
        for pipeline in [1u32, 16] {
            eprintln!("   redis-benchmark {name} -P {pipeline}");
            let r = redis_benchmark(port, pipeline, requests).await;
            for (test, rps) in r {
                cells.insert((pipeline, test), rps);
            }
        }
        for key in [(1, "SET"), (1, "GET"), (16, "SET"), (16, "GET")] {
            let v = cells
                .get(&(key.0, key.1.to_owned()))
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
            let _ = write!(row, " {v} |");
        }
        t.push_str(&row);
        t.push('\n');
    }
    let _ = writeln!(
        t,
        "\nrequests/s, `redis-benchmark -t set,get -n {requests} -c 50`, loopback, 2-core machine, \
         both proxies in front of the same master."
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
         read-back every 1 s, HAProxy health checks: redis-ha every 2 s, classic every 1 s); \
         sidecars built with cargo's bench (optimised) profile."
    );
    t
}

/// One row per (down-after, stack): min | median | max of `pick`, and how many were measured.
fn table_rows(
    out: &mut String,
    samples: &BTreeMap<(u64, Stack), Vec<Sample>>,
    pick: impl Fn(&Sample) -> Option<Duration>,
    cell: fn(Duration) -> String,
) {
    for ((da, stack), s) in samples {
        let v: Vec<Duration> = s.iter().filter_map(&pick).collect();
        let row = figures::cells(&v, cell);
        let _ = writeln!(
            out,
            "| {da} ms | {} | {row} | {}/{} |",
            stack.label(),
            v.len(),
            s.len()
        );
    }
}

fn report(
    args: &Args,
    samples: &BTreeMap<(u64, Stack), Vec<Sample>>,
    throughput: &str,
    rest: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Write outage on SIGKILL of the master\n\n\
         kill → first write acknowledged through the proxy (a client writing every 1 ms), \
         {} repetitions per row, min / median / max.\n\n\
         | Sentinel down-after | stack | min | median | max | measured |\n|---:|---|---:|---:|---:|---:|",
        args.reps
    );
    table_rows(&mut out, samples, |x| x.outage, figures::secs);
    let _ = writeln!(
        out,
        "\n### Switch lag\n\n\
         the promoted node first answers `ROLE` = master (polled every 2 ms) → first write it \
         acknowledges through the proxy, min / median / max.\n\n\
         | Sentinel down-after | stack | min | median | max | measured |\n|---:|---|---:|---:|---:|---:|"
    );
    table_rows(&mut out, samples, |x| x.switch_lag, figures::millis);
    if !throughput.is_empty() {
        let _ = writeln!(out, "\n### Throughput\n\n{throughput}");
    }
    if !rest.is_empty() {
        let _ = writeln!(out, "\n### At rest\n\n{rest}");
    }
    out
}
