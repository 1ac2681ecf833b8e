//! Planned moves of the master on the Docker Swarm stack (issue 14): `redis-ha switchover`, a
//! graceful stop of the master's Redis (`docker service update --force <stack>_redis-N`:
//! SIGTERM → `redis-ha-node`'s handover → exit → a new task) and, as the baseline in the same
//! run, a plain `SENTINEL FAILOVER` (`redis-ha failover`), with one writer through the stack's
//! HAProxy (published port) as fast as acknowledgements come: the local process benchmark
//! (tests/benches/switchover.rs) on the real stack, measured with the same code
//! (`figures::move_sample`).
//!
//! ```text
//! cargo bench -p redis-ha-tests --bench stack_switchover -- [--reps N] [--down-after MS]
//!     [--rest-ms MS] [--stack NAME] [--base-port N] [--grpc-port N] [--keep]
//!     [--graceful service-update | docker-stop]
//! ```
//!
//! `--graceful docker-stop`: the graceful stop is a `docker stop` of the master's container
//! (SIGTERM with the task's stop_grace_period; the swarm restarts the task after its restart
//! delay) instead of a rolling `docker service update --force`, which takes the task's name
//! out of Docker's DNS before the SIGTERM.
//!
//! One deploy (`deploy/up.sh` through `stack::Stack::deploy`: leftovers purged first; the
//! sidecars of the bench's own build profile), then N rounds of the three operations in turn.
//! Before each one the stack must be at rest (`Stack::at_rest`: the Sentinels' master says
//! so, both replicas linked, the coordinator confirms it, fresh connections through HAProxy
//! reach it); the operation's window runs from the command to the stack at rest again (for the
//! graceful stop: the stopped node's new task a linked replica) and 100 writes acknowledged by
//! the new master. Per operation, min / median / max over the rounds: acknowledged writes lost
//! (acknowledged in the window, missing on the settled master), client errors (one writer on
//! one held connection, a new one after each failure, so each error is one connection's
//! end), `NOREPLICAS` among them, the longest time between two acknowledged writes. Markdown
//! on stdout, progress on stderr; the stack is removed at the end unless --keep.
//!
//! Needs Docker in swarm mode (up.sh initialises a single-node swarm) and the host ports
//! BASE..BASE+3, BASE+10, BASE+10001..BASE+10003 and the gRPC port.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use redis_ha_chaos::chaos::docker::ChaosAction;
use redis_ha_tests::figures::{
    acked_keys, cells, millis, move_row, move_sample, MoveSample, MOVE_TABLE_HEADER,
};
use redis_ha_tests::haproxy::{WriteMode, Writer};
use redis_ha_tests::stack::{missing_keys, poll, remove, repo_root, Stack, StackOptions};
use redis_ha_tests::stack_ops::{switchover_done_since, switchover_event_since};

/// How long any one wait of a round may take (a task replaced, a full resync included).
const WAIT: Duration = Duration::from_secs(180);
/// Acknowledged by the new master after the stack is at rest again: the window's end.
const SETTLED_WRITES: usize = 100;

#[derive(Clone, Debug)]
struct Args {
    reps: usize,
    down_after: u64,
    rest: Duration,
    stack: String,
    base_port: u16,
    grpc_port: u16,
    keep: bool,
    graceful: Graceful,
}

/// How the graceful stop stops the master's Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Graceful {
    /// `docker service update --force --detach <stack>_redis-N` (a rolling replacement).
    ServiceUpdate,
    /// `docker stop` of the master's container (`ChaosAction::Stop`).
    DockerStop,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        reps: 10,
        down_after: 5000,
        rest: Duration::from_millis(2000),
        stack: "redis-ha-sw".into(),
        base_port: 9700,
        grpc_port: 9750,
        keep: false,
        graceful: Graceful::ServiceUpdate,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |name: &str, v: String| -> Result<u64, String> {
            v.trim().parse().map_err(|e| format!("{name} {v:?}: {e}"))
        };
        let port = |name: &str, v: String| -> Result<u16, String> {
            v.trim().parse().map_err(|e| format!("{name} {v:?}: {e}"))
        };
        match arg.as_str() {
            "--reps" => {
                let v = value("--reps")?;
                a.reps = usize::try_from(num("--reps", v)?).map_err(|e| e.to_string())?;
            }
            "--down-after" => a.down_after = num("--down-after", value("--down-after")?)?,
            "--rest-ms" => a.rest = Duration::from_millis(num("--rest-ms", value("--rest-ms")?)?),
            "--stack" => a.stack = value("--stack")?,
            "--base-port" => a.base_port = port("--base-port", value("--base-port")?)?,
            "--grpc-port" => a.grpc_port = port("--grpc-port", value("--grpc-port")?)?,
            "--keep" => a.keep = true,
            "--graceful" => {
                a.graceful = match value("--graceful")?.as_str() {
                    "service-update" => Graceful::ServiceUpdate,
                    "docker-stop" => Graceful::DockerStop,
                    other => {
                        return Err(format!(
                            "--graceful {other:?}: service-update or docker-stop"
                        ))
                    }
                }
            }
            // `cargo bench` passes --bench.
            _ => {}
        }
    }
    if a.reps == 0 {
        return Err("--reps needs at least one".into());
    }
    Ok(a)
}

fn main() {
    redis_ha_tests::figures::bench_main("stack_switchover", parse_args, run);
}

/// The three ways to move the master, in the order each round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Switchover,
    GracefulStop,
    Failover,
}

const OPS: [Op; 3] = [Op::Switchover, Op::GracefulStop, Op::Failover];

impl Op {
    fn label(self, graceful: Graceful) -> &'static str {
        match (self, graceful) {
            (Op::Switchover, _) => "`redis-ha switchover`",
            (Op::GracefulStop, Graceful::ServiceUpdate) => {
                "graceful stop (`docker service update --force` of the master's Redis)"
            }
            (Op::GracefulStop, Graceful::DockerStop) => {
                "graceful stop (`docker stop` of the master's Redis container)"
            }
            (Op::Failover, _) => "`redis-ha failover` (plain `SENTINEL FAILOVER`)",
        }
    }
}

/// One operation of one round.
struct Sample {
    op: Op,
    figures: MoveSample,
    /// The pause the coordinator reported (the switchover's answer, the handover's event);
    /// `None` for a graceful stop: no handover was done (the crash failover took over).
    reported_pause: Option<Duration>,
    /// From the command to the stack at rest again.
    settled: Duration,
    from: u8,
    to: u8,
    /// A graceful stop: what the coordinator's event says of its handover.
    handover: Option<String>,
}

async fn run(args: Args) -> Result<(), String> {
    eprintln!(
        "== deploying stack {} (down-after {} ms)",
        args.stack, args.down_after
    );
    let stack = Stack::deploy(StackOptions {
        name: args.stack.clone(),
        base_port: args.base_port,
        grpc_port: args.grpc_port,
        down_after_ms: args.down_after,
        // The bench reads the nodes and the Sentinels on their published ports.
        node_ports: true,
        ..StackOptions::default()
    })
    .await?;
    let outcome = rounds(&stack, &args).await;
    if args.keep {
        eprintln!("== --keep: stack {} left running", args.stack);
    } else {
        eprintln!("== removing stack {}", args.stack);
        if let Err(e) = remove(&repo_root(), &args.stack).await {
            eprintln!("   teardown: {e}");
        }
    }
    let samples = outcome?;
    println!("{}", report(&args, &samples));
    Ok(())
}

async fn rounds(stack: &Stack, args: &Args) -> Result<Vec<Sample>, String> {
    let m = stack.wait_at_rest(WAIT).await?;
    eprintln!("   at rest: master redis-{m}");
    let writer = Writer::start_with_password(
        stack.proxy_port(),
        Some(stack.password().to_owned()),
        "sw",
        WriteMode::Persistent,
        Duration::ZERO,
    );
    let mut samples = Vec::new();
    let mut result = Ok(());
    'rounds: for round in 1..=args.reps {
        for op in OPS {
            match one(stack, &writer, op, args).await {
                Ok(s) => {
                    eprintln!(
                        "   round {round}/{} {op:?}: redis-{} → redis-{}, {} acked, {} lost, {} \
                         errors ({} NOREPLICAS), longest pause {} ms, reported pause {}, at rest \
                         after {:.1} s{}",
                        args.reps,
                        s.from,
                        s.to,
                        s.figures.acked,
                        s.figures.lost,
                        s.figures.errors,
                        s.figures.noreplicas,
                        s.figures.longest_gap.as_millis(),
                        s.reported_pause
                            .map_or_else(|| "none".to_owned(), |d| format!("{} ms", d.as_millis())),
                        s.settled.as_secs_f64(),
                        s.handover
                            .as_deref()
                            .map_or_else(String::new, |h| format!("; handover: {h}"))
                    );
                    samples.push(s);
                }
                Err(e) => {
                    result = Err(format!("round {round} {op:?}: {e}"));
                    break 'rounds;
                }
            }
        }
    }
    drop(writer.finish().await);
    // A failed round still reports the rounds before it.
    if let Err(e) = result {
        if samples.is_empty() {
            return Err(e);
        }
        eprintln!("   stopped early: {e}");
    }
    Ok(samples)
}

/// Starts `op` on the stack at rest; returns the reported pause when the operation answers one.
async fn start(
    stack: &Stack,
    op: Op,
    graceful: Graceful,
    master: u8,
) -> Result<Option<Duration>, String> {
    match op {
        Op::Switchover => {
            let out = stack.cli(&["switchover", "--json"]).await?;
            let j: serde_json::Value =
                serde_json::from_str(&out).map_err(|e| format!("switchover JSON {out:?}: {e}"))?;
            Ok(j["pause_ms"].as_u64().map(Duration::from_millis))
        }
        Op::GracefulStop if graceful == Graceful::DockerStop => {
            // Returns once the container is gone (the handover, then Redis's exit).
            stack.chaos(ChaosAction::Stop, master).await?;
            Ok(None)
        }
        Op::GracefulStop => {
            // A rolling replacement of the master's task: SIGTERM first (stop-first).
            stack.replace_task(master).await?;
            Ok(None)
        }
        Op::Failover => {
            stack.cli(&["failover"]).await?;
            Ok(None)
        }
    }
}

async fn one(stack: &Stack, writer: &Writer, op: Op, args: &Args) -> Result<Sample, String> {
    let old = stack.wait_at_rest(WAIT).await?;
    let old_container = stack.running_container(old).await?;
    tokio::time::sleep(args.rest).await;
    let from = Instant::now();
    let from_ms = redis_ha_common::time::now_ms();
    let mut reported_pause = start(stack, op, args.graceful, old).await?;
    let mut handover = None;
    let new = poll(WAIT, || async {
        match stack.sentinel_master().await? {
            m if m != old => Ok(m),
            m => Err(format!("the Sentinels still name redis-{m}")),
        }
    })
    .await?;
    if op == Op::GracefulStop {
        poll(WAIT, || async {
            if stack.running_container(old).await? == old_container {
                Err(format!("redis-{old}'s stopped task still runs"))
            } else {
                Ok(())
            }
        })
        .await?;
        let events = stack.events_json().await?;
        reported_pause = switchover_done_since(&events, from_ms);
        handover = Some(
            switchover_event_since(&events, from_ms)
                .unwrap_or_else(|| "no switchover event".to_owned()),
        );
    }
    let at_rest = stack.wait_at_rest(WAIT).await?;
    if at_rest != new {
        return Err(format!(
            "the master moved on: redis-{new}, then redis-{at_rest}"
        ));
    }
    let settled = from.elapsed();
    let since = Instant::now();
    let new_port = 9000 + u16::from(new);
    poll(WAIT, || async {
        match writer.count(|r| r.acked && r.started >= since && r.port == Some(new_port)) {
            n if n >= SETTLED_WRITES => Ok(()),
            n => Err(format!("{n} writes acknowledged by redis-{new}")),
        }
    })
    .await?;
    let window = writer.records_between(from, Instant::now());
    let missing = missing_keys(
        stack.redis_port(new),
        stack.password(),
        &acked_keys(&window),
    )
    .await?;
    Ok(Sample {
        op,
        figures: move_sample(&window, &missing),
        reported_pause,
        settled,
        from: old,
        to: new,
        handover,
    })
}

fn report(args: &Args, samples: &[Sample]) -> String {
    let rounds = samples.iter().filter(|s| s.op == Op::Switchover).count();
    let mut out = String::new();
    let _ = write!(
        out,
        "\n### Switchover, graceful stop and plain failover on the swarm stack\n\n\
         Stack `{}`, down-after {} ms, {rounds} rounds of the three operations in turn on one \
         deploy, one writer through HAProxy's published port at full speed (one held \
         connection, a new one after each failure). min / median / max:\n\n\
         {MOVE_TABLE_HEADER}",
        args.stack, args.down_after
    );
    for op in OPS {
        let of: Vec<&MoveSample> = samples
            .iter()
            .filter(|s| s.op == op)
            .map(|s| &s.figures)
            .collect();
        out.push_str(&move_row(op.label(args.graceful), &of));
    }
    let pauses = |op: Op| -> Vec<Duration> {
        samples
            .iter()
            .filter(|s| s.op == op)
            .filter_map(|s| s.reported_pause)
            .collect()
    };
    let settled = |op: Op| -> Vec<Duration> {
        samples
            .iter()
            .filter(|s| s.op == op)
            .map(|s| s.settled)
            .collect()
    };
    let stops = samples.iter().filter(|s| s.op == Op::GracefulStop).count();
    let _ = write!(
        out,
        "\nThe coordinator's own figure for the pause (`CLIENT PAUSE` → new master published): \
         switchover {}; graceful stop's handover {} ({} of {stops} stops handed over, the others \
         fell back to the crash failover).\n\
         Command → stack at rest again (for the graceful stop: its new task a linked replica): \
         switchover {}, graceful stop {}, failover {}.\n",
        cells(&pauses(Op::Switchover), millis).replace(" | ", " / "),
        cells(&pauses(Op::GracefulStop), millis).replace(" | ", " / "),
        pauses(Op::GracefulStop).len(),
        cells(&settled(Op::Switchover), secs1).replace(" | ", " / "),
        cells(&settled(Op::GracefulStop), secs1).replace(" | ", " / "),
        cells(&settled(Op::Failover), secs1).replace(" | ", " / "),
    );
    let mut outcomes: Vec<&str> = samples
        .iter()
        .filter_map(|s| s.handover.as_deref())
        .collect();
    outcomes.sort_unstable();
    outcomes.dedup();
    if !outcomes.is_empty() {
        let _ = writeln!(
            out,
            "\nThe graceful stops' handovers (the coordinator's events):\n"
        );
        for o in outcomes {
            let n = samples
                .iter()
                .filter(|s| s.handover.as_deref() == Some(o))
                .count();
            let _ = writeln!(out, "- {n} × {o}");
        }
    }
    let _ = writeln!(
        out,
        "\nPer operation: round, from → to, acknowledged / lost / errors (NOREPLICAS) / longest \
         pause / reported pause.\n\n| round | operation | move | acked | lost | errors | \
         longest pause | reported pause |\n|---:|---|---|---:|---:|---:|---:|---:|"
    );
    for (i, s) in samples.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {:?} | redis-{} → redis-{} | {} | {} | {} ({}) | {} ms | {} |",
            i / OPS.len() + 1,
            s.op,
            s.from,
            s.to,
            s.figures.acked,
            s.figures.lost,
            s.figures.errors,
            s.figures.noreplicas,
            s.figures.longest_gap.as_millis(),
            s.reported_pause
                .map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis())),
        );
    }
    out
}

fn secs1(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
