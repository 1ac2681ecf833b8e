//! Host faults on a multi-node swarm (issue 13): the faults of the multi-node test
//! (`redis_ha_tests::multinode_faults`), each repeated, with the classic tcp-check HAProxy
//! measured in the same run.
//!
//! ```text
//! cargo bench -p redis-ha-tests --profile dev --bench multinode_faults -- [--reps N]
//!     [--down-after MS] [--faults master-cut,master-kill,replica-cut,coordinator-lost,reloader-lost]
//! ```
//!
//! One rig (`redis_ha_testkit::rig`: the host as manager, three namespace workers labelled
//! redis-ha.node=1..3, two labelled redis-ha.control=true), one deploy (`deploy/up.sh
//! --engine ...`, the control plane on the control nodes), the classic HAProxy
//! (`deploy/stack/classic-haproxy.yml`) on the host; then N rounds of the chosen faults, each
//! with a writer through the host's HAProxy (the healthy side), one through the classic
//! HAProxy, and, for a Redis node's host, one through that node's own HAProxy from inside its
//! namespace (the faulted side). Per fault, min / median / max over the rounds: the longest
//! time without an acknowledged write on each side and through the classic HAProxy,
//! acknowledged writes lost on each, the time with two routable masters, and the time until
//! the faulted node is back. Markdown on stdout, progress on stderr; the stack and the rig
//! are removed at the end, also after a failure.
//!
//! Needs root, Docker in swarm mode (the rig initialises it) and the host ports 9400..9403,
//! 9420, 9450.

use std::fmt::Write as _;
use std::time::Duration;

use redis_ha_testkit::rig::{Rig, RigOptions, CONTROL_PLACEMENT};
use redis_ha_tests::figures::{
    bench_main, count_cells, median_max_ratios, min_median_max, ratio_cell, secs,
};
use redis_ha_tests::multinode_faults::{Cluster, Fault, Outcome};
use redis_ha_tests::stack::{deploy_classic, purge, repo_root, Stack, StackOptions};

const STACK: &str = "redis-ha-mnb";
const CLASSIC_PORT: u16 = 9420;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    MasterCut,
    MasterKill,
    ReplicaCut,
    CoordinatorLost,
    ReloaderLost,
}

impl Which {
    const ALL: [Which; 5] = [
        Which::MasterCut,
        Which::MasterKill,
        Which::ReplicaCut,
        Which::CoordinatorLost,
        Which::ReloaderLost,
    ];

    fn name(self) -> &'static str {
        match self {
            Which::MasterCut => "master-cut",
            Which::MasterKill => "master-kill",
            Which::ReplicaCut => "replica-cut",
            Which::CoordinatorLost => "coordinator-lost",
            Which::ReloaderLost => "reloader-lost",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Which::MasterCut => "master's host cut off, healed after the failover",
            Which::MasterKill => "master's host killed (dockerd, containers), started again",
            Which::ReplicaCut => "a replica's host cut off, healed",
            Which::CoordinatorLost => "the coordinator's host lost (cut off and killed, started again; a switchover after the move)",
            Which::ReloaderLost => "the reloader's host lost (cut off and killed, started again; a switchover after the move)",
        }
    }

    async fn run(self, c: &Cluster<'_>) -> Result<Outcome, String> {
        match self {
            Which::MasterCut => c.master_host(Fault::Cut).await,
            Which::MasterKill => c.master_host(Fault::Kill).await,
            Which::ReplicaCut => c.replica_host_cut().await,
            Which::CoordinatorLost => c.control_host_lost("coordinator").await,
            Which::ReloaderLost => c.control_host_lost("haproxy-reloader").await,
        }
    }
}

struct Args {
    reps: usize,
    down_after: u64,
    faults: Vec<Which>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        reps: 3,
        down_after: 1000,
        faults: Which::ALL.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--reps" => {
                a.reps = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--reps needs a positive number")?;
            }
            "--down-after" => {
                a.down_after = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n >= 100)
                    .ok_or("--down-after needs milliseconds, at least 100")?;
            }
            "--faults" => {
                a.faults = value()?
                    .split(',')
                    .map(|f| {
                        Which::ALL
                            .into_iter()
                            .find(|w| w.name() == f.trim())
                            .ok_or(format!("unknown fault {f:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            // cargo bench passes --bench.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() {
    bench_main("multinode_faults", parse, run);
}

async fn run(args: Args) -> Result<(), String> {
    let rig = tokio::task::spawn_blocking(|| {
        Rig::create(&RigOptions {
            nodes: 5,
            control: 2,
            managers: 2,
            control_managers: true,
            ..RigOptions::default()
        })
    })
    .await
    .map_err(|e| format!("rig task: {e}"))?
    .map_err(|e| format!("the rig: {e}"))?;
    let result = measure(&args, &rig).await;
    let purged = purge(&repo_root(), STACK, &rig.engines()).await;
    let torn = tokio::task::spawn_blocking(move || rig.teardown())
        .await
        .map_err(|e| format!("rig task: {e}"))?;
    let table = result?;
    purged?;
    torn.map_err(|e| format!("the rig's teardown: {e}"))?;
    println!("{table}");
    Ok(())
}

async fn measure(args: &Args, rig: &Rig) -> Result<String, String> {
    let opts = StackOptions {
        name: STACK.into(),
        base_port: 9400,
        grpc_port: 9450,
        down_after_ms: args.down_after,
        engines: rig.engines(),
        docker_socket: false,
        control_placement: Some(CONTROL_PLACEMENT.into()),
        ..StackOptions::default()
    };
    eprintln!("   deploying {STACK} over the rig");
    let stack = Stack::deploy(opts).await?;
    // On the host by its id: the control nodes are managers too.
    let host = redis_ha_testkit::rig::docker(&["info", "-f", "{{.Swarm.NodeID}}"])
        .map_err(|e| e.to_string())?;
    deploy_classic(
        &repo_root(),
        STACK,
        CLASSIC_PORT,
        Some(&format!("node.id=={}", host.trim())),
    )
    .await?;
    let cluster = Cluster::new(rig, &stack)?.with_classic(CLASSIC_PORT);
    let mut outcomes: Vec<(Which, Vec<Outcome>)> =
        args.faults.iter().map(|w| (*w, Vec::new())).collect();
    for rep in 1..=args.reps {
        for (w, done) in &mut outcomes {
            match w.run(&cluster).await {
                Ok(o) => {
                    eprintln!("   rep {rep}/{}: {}", args.reps, o.line());
                    done.push(o);
                }
                Err(e) => {
                    // The rounds done so far are figures too: printed before the failure.
                    let w = w.name();
                    outcomes.retain(|(_, os)| !os.is_empty());
                    if !outcomes.is_empty() {
                        eprintln!(
                            "the rounds before the failure:\n{}",
                            report(args, &outcomes)
                        );
                    }
                    return Err(format!("rep {rep}: {w}: {e}{}", cluster.recent_logs(180)));
                }
            }
        }
    }
    Ok(report(args, &outcomes))
}

/// "min / median / max" in one table cell.
fn cells(v: &[Duration]) -> String {
    min_median_max(v).map_or_else(
        || "-".to_owned(),
        |(a, b, c)| format!("{} / {} / {}", secs(a), secs(b), secs(c)),
    )
}

fn report(args: &Args, outcomes: &[(Which, Vec<Outcome>)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Multi-node faults, down-after {} ms, {} rounds: min / median / max\n",
        args.down_after, args.reps
    );
    let _ = writeln!(
        s,
        "| fault | write outage, redis-ha (host's HAProxy) | classic tcp-check (host) | ratio of medians | ratio of maxes | acknowledged lost, redis-ha | classic | faulted side: acknowledged during the fault | its acknowledged lost | two routable masters | back after |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---|---|---|---|---|---|");
    for (w, os) in outcomes {
        let pick = |f: &dyn Fn(&Outcome) -> Duration| os.iter().map(f).collect::<Vec<_>>();
        let ours = pick(&|o| o.figures.healthy_outage);
        let classic: Vec<Duration> = os
            .iter()
            .filter_map(|o| o.classic.as_ref().map(|c| c.outage))
            .collect();
        let (rm, rx) = median_max_ratios(&ours, &classic);
        let count =
            |f: &dyn Fn(&Outcome) -> usize| count_cells(&os.iter().map(f).collect::<Vec<_>>());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            w.label(),
            cells(&ours),
            cells(&classic),
            ratio_cell(rm),
            ratio_cell(rx),
            count(&|o| o.healthy_lost),
            count(&|o| o.classic.as_ref().map_or(0, |c| c.lost)),
            count(&|o| o.figures.faulted_acked),
            count(&|o| o.faulted_lost),
            cells(&pick(&|o| o.figures.two_masters)),
            cells(&pick(&|o| o.back_after)),
        );
    }
    let moves: Vec<&Outcome> = outcomes
        .iter()
        .flat_map(|(_, os)| os)
        .filter(|o| o.moved_after.is_some())
        .collect();
    if !moves.is_empty() {
        let _ = writeln!(
            s,
            "\nControl plane moved: started on the other control node after {}; every agent \
             heard by the moved coordinator after {} (from the loss).",
            cells(
                &moves
                    .iter()
                    .filter_map(|o| o.moved_after)
                    .collect::<Vec<_>>(),
            ),
            cells(
                &moves
                    .iter()
                    .filter_map(|o| o.agents_after)
                    .collect::<Vec<_>>(),
            ),
        );
    }
    s
}
