//! Switchover benchmark: `Switchover` (redis-ha switchover) beside the plain failover
//! (`Failover`, redis-ha failover: `SENTINEL FAILOVER` after the ballot) and the graceful stop
//! (`Graceful`: SIGTERM to the master's Redis under `redis-ha-node redis-run`, which hands the
//! role over before Redis exits; then the node is started again and rejoins as a replica) on
//! ONE cluster in ONE run, in turn, with a writer through HAProxy as fast as acknowledgements
//! come (one connection, a new one after an error): Redis + Sentinel from the shipped
//! templates, every sidecar, our HAProxy and reloader. With the graceful stop selected, every
//! node's Redis runs under the wrapper (as the Redis image runs it) for the whole run.
//!
//! ```text
//! cargo bench -p redis-ha-tests --bench switchover -- [--reps N] [--ops switchover,failover,graceful]
//!     [--down-after MS] [--rest-ms MS]
//! ```
//!
//! Per operation, from the client's side: acknowledged writes lost (acknowledged in the
//! operation's window, missing on the master once everything settled), client errors (and
//! which), the longest time between two acknowledged writes. The graceful stop's window runs
//! from the SIGTERM until the restarted node is a synced replica and the topology is steady.
//! Prints markdown for the README.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{FailoverRequest, SwitchoverRequest};
use redis_ha_tests::figures::{
    acked_keys, cells, millis, move_row, move_sample, MoveSample, MOVE_TABLE_HEADER,
};
use redis_ha_tests::haproxy::{Haproxy, ReloaderTask, WriteMode, WriteRecord, Writer};
use redis_ha_tests::kit::client;
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, NODES, READY_TIMEOUT};
use tonic::transport::Channel;

struct Args {
    reps: usize,
    ops: Vec<Op>,
    down_after: u64,
    rest: Duration,
}

fn parse_args() -> Args {
    let mut a = Args {
        reps: 10,
        ops: Op::ALL.to_vec(),
        down_after: 5000,
        rest: Duration::from_millis(2000),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut text =
            |name: &str| -> String { it.next().unwrap_or_else(|| panic!("{name} needs a value")) };
        let mut value =
            |name: &str| -> u64 { text(name).parse().unwrap_or_else(|e| panic!("{name}: {e}")) };
        match arg.as_str() {
            "--ops" => {
                a.ops = Op::parse_list(&text("--ops")).unwrap_or_else(|e| panic!("--ops: {e}"))
            }
            "--reps" => a.reps = value("--reps") as usize,
            "--down-after" => a.down_after = value("--down-after"),
            "--rest-ms" => a.rest = Duration::from_millis(value("--rest-ms")),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    a
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Switchover,
    Failover,
    Graceful,
}

impl Op {
    const ALL: [Op; 3] = [Op::Switchover, Op::Failover, Op::Graceful];

    fn name(self) -> &'static str {
        match self {
            Op::Switchover => "switchover",
            Op::Failover => "failover",
            Op::Graceful => "graceful",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Op::Switchover => "`redis-ha switchover`",
            Op::Failover => "`redis-ha failover` (plain SENTINEL FAILOVER)",
            Op::Graceful => "graceful stop (SIGTERM to the master under `redis-ha-node redis-run`)",
        }
    }

    /// `switchover,failover,graceful` (any of them, in the order given, each once).
    fn parse_list(list: &str) -> Result<Vec<Op>, String> {
        let mut ops = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let op = Op::ALL
                .into_iter()
                .find(|o| o.name() == name)
                .ok_or_else(|| format!("unknown operation {name:?}"))?;
            if ops.contains(&op) {
                return Err(format!("{name} given twice"));
            }
            ops.push(op);
        }
        if ops.is_empty() {
            return Err("no operation".into());
        }
        Ok(ops)
    }
}

struct Sample {
    figures: MoveSample,
    reported_pause: Option<Duration>,
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(run(args));
}

fn long_client(cluster: &Cluster) -> CoordinatorClient<Channel> {
    let endpoint = cluster
        .operator_tls()
        .endpoint(&cluster.coordinator_url())
        .unwrap_or_else(|e| panic!("endpoint: {e}"))
        .timeout(Duration::from_secs(90));
    CoordinatorClient::new(endpoint.connect_lazy())
}

async fn run(args: Args) {
    let mut cluster = Cluster::start(ClusterOptions {
        password: Some("bench-switchover".into()),
        down_after_ms: args.down_after,
        ..ClusterOptions::default()
    })
    .await;
    cluster.start_all_sidecars().await;
    cluster.wait_steady_topology(1).await;
    let haproxy = cluster.start_haproxy().await;
    let reloader = ReloaderTask::start(cluster.reloader_config(&haproxy));
    haproxy.wait_routed_to(cluster.node(1).port()).await;
    let client = long_client(&cluster);
    let mut master = 1;
    if args.ops.contains(&Op::Graceful) {
        master = wrap_all(&mut cluster, &haproxy, &client).await;
    }
    let writer = Writer::start_with_password(
        haproxy.frontend_port(),
        haproxy.client_password().map(str::to_owned),
        "bench",
        WriteMode::Persistent,
        Duration::ZERO,
    );
    let mut samples: Vec<(Op, Sample)> = Vec::new();
    for rep in 0..args.reps * args.ops.len() {
        let op = args.ops[rep % args.ops.len()];
        tokio::time::sleep(args.rest).await;
        let from = Instant::now();
        let mut reported_pause = None;
        match op {
            Op::Switchover => {
                let r = client
                    .clone()
                    .switchover(SwitchoverRequest {
                        master_group: cluster.group().to_owned(),
                        to: String::new(),
                        max_pause_ms: 1000,
                        away_from: String::new(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("switchover {rep}: {e}"))
                    .into_inner();
                reported_pause = Some(Duration::from_millis(r.pause_ms));
            }
            Op::Failover => {
                client
                    .clone()
                    .failover(FailoverRequest {
                        master_group: cluster.group().to_owned(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("failover {rep}: {e}"));
            }
            Op::Graceful => graceful_stop(&mut cluster, master, rep).await,
        }
        master = settle(&mut cluster, &haproxy).await;
        // Some acknowledged writes on the new master close the window.
        let since = Instant::now();
        wait_until("writes on the new master", READY_TIMEOUT, || async {
            if writer.count(|r| r.acked && r.started >= since) >= 100 {
                Ok(())
            } else {
                Err("not yet")
            }
        })
        .await;
        let to = Instant::now();
        let window: Vec<WriteRecord> = writer_snapshot(&writer, from, to);
        let f = measure(&cluster, master, &window).await;
        eprintln!(
            "{:?} {rep}: {} acked, {} lost, {} errors ({} NOREPLICAS), longest gap {} ms",
            op,
            f.acked,
            f.lost,
            f.errors,
            f.noreplicas,
            f.longest_gap.as_millis()
        );
        samples.push((
            op,
            Sample {
                figures: f,
                reported_pause,
            },
        ));
    }
    let _ = writer.finish().await;
    reloader.stop().await;
    print!("{}", report(&args, &samples));
}

/// Restarts every node's Redis under `redis-ha-node redis-run`: the replicas first, then
/// (after a switchover away from it, so that no crash fails it over) the first master; returns
/// the master (1-based).
async fn wrap_all(
    cluster: &mut Cluster,
    haproxy: &Haproxy,
    client: &CoordinatorClient<Channel>,
) -> usize {
    for i in 2..=NODES {
        cluster.restart_under_redis_run(i, 1).await;
    }
    client
        .clone()
        .switchover(SwitchoverRequest {
            master_group: cluster.group().to_owned(),
            to: String::new(),
            max_pause_ms: 1000,
            away_from: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("switchover away from node 1: {e}"));
    let m = settle(cluster, haproxy).await;
    assert_ne!(m, 1, "the switchover left node 1 master");
    cluster.restart_under_redis_run(1, m).await;
    settle(cluster, haproxy).await
}

/// SIGTERM to node `master`'s wrapper, which hands the role over before Redis exits; then
/// starts it again (under the wrapper) so that it rejoins as a replica.
async fn graceful_stop(cluster: &mut Cluster, master: usize, rep: usize) {
    cluster.node(master).signal(Signal::SIGTERM);
    let status = cluster
        .node_mut(master)
        .wait_exit(Duration::from_secs(90))
        .await;
    if !status.is_some_and(|st| st.success()) {
        panic!(
            "graceful {rep}: node {master} {status:?}\n{}",
            cluster.node(master).log_tail(40)
        );
    }
    cluster.node_mut(master).start();
}

/// The writer's records started within `[from, to]` (a copy; it keeps writing).
fn writer_snapshot(writer: &Writer, from: Instant, to: Instant) -> Vec<WriteRecord> {
    writer.records_between(from, to)
}

/// Waits until the cluster is at rest around the Sentinels' master, HAProxy routing there;
/// returns it (1-based).
async fn settle(cluster: &mut Cluster, haproxy: &Haproxy) -> usize {
    cluster.wait_steady_topology_agreeing().await;
    let m = cluster.wait_at_rest_by_sentinels().await;
    cluster.wait_replicas_synced(m).await;
    haproxy.wait_routed_to(cluster.node(m).port()).await;
    m
}

/// The window's figures; lost: its acknowledged writes missing on the settled `master`.
async fn measure(cluster: &Cluster, master: usize, window: &[WriteRecord]) -> MoveSample {
    let node = cluster.node(master);
    let mut con = client::connect(node.port(), node.password())
        .await
        .unwrap_or_else(|e| panic!("node {master}: {e}"));
    let keys = acked_keys(window);
    let missing = client::missing_keys(&mut con, keys.iter().map(String::as_str))
        .await
        .unwrap_or_else(|e| panic!("MGET: {e}"));
    move_sample(window, &missing)
}

fn report(args: &Args, samples: &[(Op, Sample)]) -> String {
    let mut out = format!(
        "\n{}, one cluster, in turn, {} of each, down-after {} ms, \
         one writer through HAProxy at full speed ({NODES} nodes, shipped config). min / median / max:\n\n\
         {MOVE_TABLE_HEADER}",
        args.ops
            .iter()
            .map(|o| o.name())
            .collect::<Vec<_>>()
            .join(" / "),
        args.reps,
        args.down_after
    );
    for &op in &args.ops {
        let of: Vec<&MoveSample> = samples
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, s)| &s.figures)
            .collect();
        out.push_str(&move_row(op.label(), &of));
    }
    let reported: Vec<Duration> = samples
        .iter()
        .filter_map(|(_, s)| s.reported_pause)
        .collect();
    if reported.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "\nThe switchover's own report of the pause (pause → new master published): {}\n",
        cells(&reported, millis).replace(" | ", " / ")
    ));
    out
}
