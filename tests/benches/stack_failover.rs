//! Failover benchmark on the Docker Swarm stack: the reloader issue's measurement (kill of the
//! master → first write acknowledged through the proxy) repeated on the real stack, through the
//! stack's HAProxy (driven by the reloader) and, in the same stack, through a classic tcp-check
//! HAProxy (deploy/stack/classic-haproxy.yml), so every kill is measured through both at once.
//!
//!   cargo bench -p redis-ha-tests --bench stack_failover -- [--reps N] [--down-after 1000,5000]
//!       [--stack NAME] [--base-port N] [--classic-port N] [--grpc-port N] [--release]
//!       [--no-cargo] [--keep] [--fresh-deploys N] [--dns IP | --silent-dns]
//!       [--sequential | --held-connection]
//!
//! Per down-after value: `deploy/down.sh --purge` of leftovers, `deploy/up.sh` (debug sidecars
//! unless --release), the classic HAProxy deployed into the same stack, then N times: find the
//! master (the Sentinels' majority, checked against every node's ROLE), start a writer through
//! each proxy's published port (SET every 2 ms on a fresh connection, AUTH first, each write
//! sent on schedule; see `WRITE_INTERVAL` for --sequential and --held-connection), SIGKILL the master's container through the Docker API, and take
//! kill → first write acknowledged by another node. Before the next repetition the swarm's new
//! task of the killed node must be a linked replica, the coordinator must confirm the master,
//! and both proxies must route to it. Meanwhile `ROLE` is polled on the replicas' published
//! ports every 2 ms (`haproxy::RoleProber`, AUTH with the stack password), so each kill also
//! gives promotion (the promoted node first answering `role:master`) → first write acknowledged
//! through each proxy, and which node acknowledged it (it must be the one the Sentinels
//! promoted); the per-down-after tables give both, min / median / max, with the ratio
//! redis-ha / classic of the medians and the maxes (`figures`). Default: 20 kills.
//! Prints markdown tables on stdout (progress on stderr);
//! the stack is removed at the end (`deploy/down.sh --purge`) unless --keep;
//! `REDIS_HA_BENCH_LOGS=DIR` saves every service's log before each removal, into
//! DIR/<down-after>ms-deploy<N>/.
//!
//! `--fresh-deploys N`: per down-after value, N fresh deploys (`down.sh --purge`, `up.sh`,
//! the classic HAProxy), each measured for its first `--reps` kills (default 1 in this mode)
//! and removed again: the first kill after a fresh deploy is the one that once stalled 22 s
//! (README, "Failover on the swarm stack"). `--dns IP` is passed to up.sh (the Redis and
//! Sentinel containers' upstream resolver); `--silent-dns` uses one that never answers
//! (`stack::SILENT_DNS`), the worst case for names Docker's DNS does not know.
//! Every repetition also checks the acknowledged writes: each must be on the new master at the
//! end ("lost" counts those that are not, split into acknowledged before / after the kill).
//!
//! Needs Docker in swarm mode (up.sh initialises a single-node swarm) and the host ports
//! BASE..BASE+3, BASE+10001..BASE+10003, the classic port and the gRPC port.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard::query_parameters::KillContainerOptions;
use redis_ha_chaos::chaos::docker::{DockerChaos, NodeNum};
use redis_ha_tests::figures::{self, failover_sample, FailoverSample};
use redis_ha_tests::haproxy::{RoleProber, WriteMode, WriteRecord, Writer};
use redis_ha_tests::kit::client;
use redis_ha_tests::stack::{
    cli_status_json, deploy_classic, missing_keys, poll, remove, repo_root, save_service_logs,
    sentinels_master, tls_dir, up_args, StackOptions, SILENT_DNS,
};
use tokio::process::Command;

/// Sentinel master name (up.sh's default).
const GROUP: &str = "redis-cluster";
/// How long any one wait of a repetition may take (a task restart included).
const WAIT: Duration = Duration::from_secs(180);
/// The writers: a write every 2 ms, each on a fresh connection and started on schedule
/// (`WriteMode::Concurrent`): a killed container's address drops packets, so a write sent
/// towards it hangs until a timeout (HAProxy's `timeout connect`, the client's 2 s), and a
/// client that waited for it would measure that timeout, not the failover. `--sequential`:
/// the same, one write after the other (the process bench's client, where a kill refuses at
/// once); `--held-connection`: one connection, a write every 1 ms, reconnecting after a failure.
const WRITE_INTERVAL: Duration = Duration::from_millis(2);
const HELD_WRITE_INTERVAL: Duration = Duration::from_millis(1);
/// `ROLE` on the replicas every 2 ms, as in tests/benches/failover.rs.
const ROLE_INTERVAL: Duration = Duration::from_millis(2);

#[derive(Clone, Debug)]
struct Args {
    reps: usize,
    down_after: Vec<u64>,
    stack: String,
    base_port: u16,
    classic_port: u16,
    grpc_port: u16,
    release: bool,
    cargo: bool,
    keep: bool,
    /// How the writers use connections (see `WRITE_INTERVAL`).
    mode: WriteMode,
    /// Fresh deploys per down-after value (None: one deploy, `reps` kills).
    fresh_deploys: Option<usize>,
    dns: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        reps: 20,
        down_after: vec![1000],
        stack: "redis-ha-bench".into(),
        base_port: 9400,
        // Base + 20: base + 10 is the read endpoint.
        classic_port: 9420,
        grpc_port: 9450,
        release: false,
        cargo: true,
        keep: false,
        mode: WriteMode::Concurrent,
        fresh_deploys: None,
        dns: None,
    };
    let mut reps_given = false;
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
                reps_given = true;
            }
            "--down-after" => {
                a.down_after = value("--down-after")?
                    .split(',')
                    .map(|v| num("--down-after", v.to_owned()))
                    .collect::<Result<_, _>>()?;
            }
            "--stack" => a.stack = value("--stack")?,
            "--base-port" => a.base_port = port("--base-port", value("--base-port")?)?,
            "--classic-port" => a.classic_port = port("--classic-port", value("--classic-port")?)?,
            "--grpc-port" => a.grpc_port = port("--grpc-port", value("--grpc-port")?)?,
            "--release" => a.release = true,
            "--debug" => a.release = false,
            "--no-cargo" => a.cargo = false,
            "--keep" => a.keep = true,
            "--held-connection" => a.mode = WriteMode::Persistent,
            "--sequential" => a.mode = WriteMode::NewConnectionEachWrite,
            "--fresh-deploys" => {
                let v = value("--fresh-deploys")?;
                let n = usize::try_from(num("--fresh-deploys", v)?).map_err(|e| e.to_string())?;
                a.fresh_deploys = Some(n);
            }
            "--dns" => a.dns = Some(value("--dns")?),
            "--silent-dns" => a.dns = Some(SILENT_DNS.to_owned()),
            // `cargo bench` passes --bench; filters and the like are not used here.
            _ => {}
        }
    }
    if a.fresh_deploys.is_some() && !reps_given {
        a.reps = 1;
    }
    if a.reps == 0 || a.down_after.is_empty() || a.fresh_deploys == Some(0) {
        return Err("--reps, --down-after and --fresh-deploys need at least one".into());
    }
    Ok(a)
}

fn main() {
    redis_ha_tests::figures::bench_main("stack_failover", parse_args, run);
}

/// The two proxies under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Proxy {
    Ours,
    Classic,
}

impl Proxy {
    fn label(self) -> &'static str {
        match self {
            Proxy::Ours => "redis-ha (reloader)",
            Proxy::Classic => "classic tcp-check",
        }
    }
}

/// One repetition.
#[derive(Clone, Debug, Default)]
struct Rep {
    /// Per writer: kill → first write acknowledged by another node, the promoted node's first
    /// `ROLE` = master → that write, and which node acknowledged it.
    fig_ours: FailoverSample,
    fig_classic: FailoverSample,
    /// The node the Sentinels promoted (its Redis port, as the writers' records name it).
    promoted: u16,
    /// The writer's gap: last write acknowledged by the old master → first by another node
    /// (independent of when in the Docker API call the kill landed).
    gap_ours: Option<Duration>,
    gap_classic: Option<Duration>,
    /// Kill → first reply of any kind (an error such as NOREPLICAS too) from another node
    /// through the proxy: when the proxy had switched, whether or not the node took writes.
    reply_ours: Option<Duration>,
    reply_classic: Option<Duration>,
    /// Kill → first write acknowledged by any node after the writer's first failure: the
    /// swarm restarts the killed container within seconds, which may answer before Sentinel
    /// has failed over (with a long down-after).
    any_ours: Option<Duration>,
    any_classic: Option<Duration>,
    /// Writes the killed node's new task acknowledged after the kill.
    old_acks_ours: usize,
    old_acks_classic: usize,
    /// Kill → the killed node's new task is a linked replica again.
    rejoined: Option<Duration>,
    /// How long the Docker API's kill call took (the kill lands inside it).
    kill_call: Duration,
    /// Acknowledged writes (both writers) missing on the final master: acknowledged before
    /// the kill / after it.
    lost_before: usize,
    lost_after: usize,
    /// Which deploy (1-based; fresh-deploy mode) and which kill in it.
    deploy: usize,
    kill_in_deploy: usize,
}

async fn run(args: Args) -> Result<(), String> {
    let mut results: BTreeMap<u64, Vec<Rep>> = BTreeMap::new();
    let deploys = args.fresh_deploys.unwrap_or(1);
    for &down_after in &args.down_after {
        let mut all = Vec::new();
        for d in 1..=deploys {
            eprintln!(
                "== down-after {down_after} ms: deploying stack {} ({d}/{deploys})",
                args.stack
            );
            let bench = Bench::deploy(&args, down_after).await?;
            let outcome = bench.run_reps(&args, down_after).await;
            if args.keep && d == deploys {
                eprintln!("== --keep: stack {} left running", args.stack);
            } else {
                // REDIS_HA_BENCH_LOGS=DIR: the logs outlive the stack, for the outliers.
                if let Some(dir) = std::env::var_os("REDIS_HA_BENCH_LOGS") {
                    let dir = PathBuf::from(dir).join(format!("{down_after}ms-deploy{d}"));
                    match save_service_logs(&args.stack, &dir).await {
                        Ok(()) => eprintln!("== logs saved in {}", dir.display()),
                        Err(e) => eprintln!("   saving the logs: {e}"),
                    }
                }
                eprintln!("== removing stack {}", args.stack);
                if let Err(e) = remove(&bench.repo, &args.stack).await {
                    eprintln!("   teardown: {e}");
                }
            }
            let mut reps = outcome?;
            for (i, r) in reps.iter_mut().enumerate() {
                r.deploy = d;
                r.kill_in_deploy = i + 1;
            }
            all.extend(reps);
        }
        results.insert(down_after, all);
    }
    println!("{}", report(&args, &results));
    Ok(())
}

struct Bench {
    base_port: u16,
    classic_port: u16,
    password: String,
    sentinel_password: String,
    chaos: DockerChaos,
    repo: PathBuf,
    /// `redis-ha` on the host, for `status --json` through the published gRPC port.
    cli: Option<PathBuf>,
    grpc_port: u16,
    /// The stack's certificates (the operator's is presented).
    tls_dir: PathBuf,
}

/// Runs a deploy script with its output on our stderr (stdout carries the tables).
async fn script(repo: &Path, name: &str, args: &[String]) -> Result<(), String> {
    eprintln!("   deploy/{name} {}", args.join(" "));
    let status = Command::new(repo.join("deploy").join(name))
        .args(args)
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .await
        .map_err(|e| format!("cannot run deploy/{name}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("deploy/{name} failed ({status})"))
    }
}

impl Bench {
    async fn deploy(args: &Args, down_after: u64) -> Result<Self, String> {
        let repo = repo_root();
        let chaos = DockerChaos::connect(&args.stack)
            .await
            .map_err(|e| format!("this benchmark needs a Docker engine: {e}"))?;
        eprintln!("   removing leftovers of {}", args.stack);
        remove(&repo, &args.stack).await?;
        let mut up = up_args(&StackOptions {
            name: args.stack.clone(),
            base_port: args.base_port,
            grpc_port: args.grpc_port,
            down_after_ms: down_after,
            group: GROUP.into(),
            dns: args.dns.clone(),
            // The benchmark reads the nodes and Sentinels on their published ports.
            node_ports: true,
            ..StackOptions::default()
        });
        if !args.release {
            up.push("--debug".into());
        }
        if !args.cargo {
            up.push("--no-cargo".into());
        }
        script(&repo, "up.sh", &up).await?;

        let state = repo.join("deploy/stack/run").join(&args.stack);
        let read = |name: &str| {
            let p = state.join(name);
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        // The operator's password for the bench's own probes and writes; the classic
        // HAProxy's check logs in as the agent user.
        let password = read("redis_admin_password")?;
        deploy_classic(&repo, &args.stack, args.classic_port, None).await?;
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target"));
        let cli = target
            .join(if args.release { "release" } else { "debug" })
            .join("redis-ha");
        let bench = Self {
            base_port: args.base_port,
            classic_port: args.classic_port,
            password,
            sentinel_password: read("sentinel_password")?,
            chaos,
            repo,
            cli: cli.is_file().then_some(cli),
            grpc_port: args.grpc_port,
            tls_dir: tls_dir(&args.stack),
        };
        let m = bench.settle().await?;
        eprintln!("   ready: master redis-{m}, both proxies route to it");
        Ok(bench)
    }

    async fn run_reps(&self, args: &Args, down_after: u64) -> Result<Vec<Rep>, String> {
        let mut reps = Vec::new();
        for rep in 1..=args.reps {
            let r = self.one_failover(args.mode).await?;
            let [other, promo, by, any, gap, reply, acks, rejoined, kill, lost] = r.cells();
            eprintln!(
                "   [{down_after} ms] rep {rep}/{}: another node {other}, promotion → ack {promo}, \
                 acked by {by}, any node {any}, write \
                 gap {gap}, first reply {reply}, acks by the killed node's new task {acks} \
                 (ours / classic); killed node a linked replica after {rejoined} (kill call \
                 {kill}); acknowledged writes lost (before / after the kill) {lost}",
                args.reps,
            );
            reps.push(r);
        }
        Ok(reps)
    }

    fn proxy_port(&self, p: Proxy) -> u16 {
        match p {
            Proxy::Ours => self.base_port,
            Proxy::Classic => self.classic_port,
        }
    }

    fn redis_port(&self, n: u8) -> u16 {
        self.base_port + u16::from(n)
    }

    fn sentinel_port(&self, n: u8) -> u16 {
        self.base_port + 10000 + u16::from(n)
    }

    async fn cmd<T: redis::FromRedisValue>(&self, port: u16, cmd: redis::Cmd) -> Result<T, String> {
        client::query(port, Some(&self.password), &cmd)
            .await
            .map_err(|e| e.to_string())
    }

    /// The master a majority of the Sentinels name.
    async fn sentinel_master(&self) -> Result<u8, String> {
        sentinels_master(|s| self.sentinel_port(s), &self.sentinel_password, GROUP).await
    }

    /// ("master" | "slave", link state for a replica).
    async fn role(&self, n: u8) -> Result<(String, String), String> {
        let v: Vec<redis::Value> = self.cmd(self.redis_port(n), redis::cmd("ROLE")).await?;
        let text = |v: Option<&redis::Value>| match v {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        Ok((text(v.first()), text(v.get(3))))
    }

    /// `redis-ha status --json`: the coordinator confirms redis-`m` with two linked replicas.
    async fn coordinator_agrees(&self, m: u8) -> Result<(), String> {
        let Some(cli) = &self.cli else {
            return Ok(());
        };
        let j = cli_status_json(cli, self.grpc_port, GROUP, &self.tls_dir).await?;
        let addr = j["master"]["address"].as_str().unwrap_or_default();
        let linked = j["summary"]["replicas_link_up"].as_u64().unwrap_or(0);
        if j["summary"]["master_confirmed"] == serde_json::Value::Bool(true)
            && addr.starts_with(&format!("redis-{m}:"))
            && linked >= 2
        {
            Ok(())
        } else {
            Err(format!(
                "coordinator: master {addr:?} confirmed {}, {linked} replicas linked",
                j["summary"]["master_confirmed"]
            ))
        }
    }

    /// A fresh connection through `proxy` reaches redis-`m` and a SET is acknowledged.
    async fn proxy_routes_to(&self, proxy: Proxy, m: u8) -> Result<(), String> {
        let port = self.proxy_port(proxy);
        let mut con = client::connect(port, Some(&self.password))
            .await
            .map_err(|e| format!("{}: no session: {e}", proxy.label()))?;
        let reached = client::config_port(&mut con, port).await?;
        if reached != 9000 + u16::from(m) {
            return Err(format!("{} routes to :{reached}", proxy.label()));
        }
        client::run::<String>(&mut con, port, redis::cmd("SET").arg("bench:probe").arg(1))
            .await
            .map(drop)
            .map_err(|e| format!("{}: SET answered {e}", proxy.label()))
    }

    /// Waits until the stack is at rest: a Sentinel majority names a master that says so, the
    /// two others are linked replicas, the coordinator agrees, and several fresh connections
    /// through each proxy reach that master. Returns it.
    async fn settle(&self) -> Result<u8, String> {
        poll(WAIT, || async {
            let m = self.sentinel_master().await?;
            for n in 1..=3u8 {
                let (role, link) = self.role(n).await?;
                let ok = if n == m {
                    role == "master"
                } else {
                    role == "slave" && link == "connected"
                };
                if !ok {
                    return Err(format!(
                        "redis-{n}: role {role} link {link:?} (master redis-{m})"
                    ));
                }
            }
            self.coordinator_agrees(m).await?;
            for proxy in [Proxy::Ours, Proxy::Classic] {
                for _ in 0..3 {
                    self.proxy_routes_to(proxy, m).await?;
                }
            }
            Ok(m)
        })
        .await
    }

    async fn one_failover(&self, mode: WriteMode) -> Result<Rep, String> {
        let old = self.settle().await?;
        let node = NodeNum::new(old).map_err(|e| e.to_string())?;
        let container = self
            .chaos
            .running(node)
            .await
            .map_err(|e| e.to_string())?
            .id;
        let old_port = 9000 + u16::from(old);
        // The replicas' published ports, recorded under their own port (the writers' records
        // name a node by `CONFIG GET port`).
        let replicas: Vec<(u16, u16)> = (1..=3u8)
            .filter(|&n| n != old)
            .map(|n| (self.redis_port(n), 9000 + u16::from(n)))
            .collect();
        let prober = RoleProber::start(&replicas, Some(self.password.clone()), ROLE_INTERVAL);

        let interval = if mode == WriteMode::Persistent {
            HELD_WRITE_INTERVAL
        } else {
            WRITE_INTERVAL
        };
        let writer = |port, prefix| {
            Writer::start_with_password(port, Some(self.password.clone()), prefix, mode, interval)
        };
        let w_ours = writer(self.base_port, "b-ours");
        let w_classic = writer(self.classic_port, "b-classic");
        // Both writers in their stride before the kill.
        poll(WAIT, || async {
            let acked = |w: &Writer| w.count(|r| r.acked);
            match (acked(&w_ours), acked(&w_classic)) {
                (o, c) if o >= 50 && c >= 50 => Ok(()),
                (o, c) => Err(format!("writers acked {o} / {c} so far")),
            }
        })
        .await?;

        let killed = Instant::now();
        // The wall clock too: the sidecars' and Sentinels' logs (`docker service logs -t`) line
        // up against it.
        let killed_at = redis_ha_common::time::now_ms();
        self.chaos
            .docker()
            .kill_container(
                &container,
                Some(KillContainerOptions {
                    signal: "SIGKILL".to_owned(),
                }),
            )
            .await
            .map_err(|e| format!("kill {container}: {e}"))?;
        let kill_call = killed.elapsed();
        eprintln!(
            "   killed redis-{old} ({}) at unix ms {killed_at}",
            container.get(..12).unwrap_or(&container)
        );

        let new = poll(WAIT, || async {
            match self.sentinel_master().await? {
                m if m != old => Ok(m),
                m => Err(format!("Sentinels still name redis-{m}")),
            }
        })
        .await?;
        for proxy in [Proxy::Ours, Proxy::Classic] {
            poll(WAIT, || self.proxy_routes_to(proxy, new)).await?;
        }
        // Both writers acknowledged by the new master a while.
        let new_port = 9000 + u16::from(new);
        poll(WAIT, || async {
            let acked = |w: &Writer| w.count(|r| r.acked && r.port == Some(new_port));
            match (acked(&w_ours), acked(&w_classic)) {
                (o, c) if o >= 50 && c >= 50 => Ok(()),
                (o, c) => Err(format!("writers acked {o} / {c} by redis-{new}")),
            }
        })
        .await?;
        let r_ours = w_ours.finish().await;
        let r_classic = w_classic.finish().await;
        let roles = prober.finish().await;
        let fig_ours = failover_sample(&r_ours, killed, old_port, &roles);
        let fig_classic = failover_sample(&r_classic, killed, old_port, &roles);
        let gap = |records: &[WriteRecord]| {
            let first = records.iter().find(|r| {
                r.acked && r.finished > killed && r.port.is_some_and(|p| p != old_port)
            })?;
            let last_old = records
                .iter()
                .take_while(|r| r.finished < first.finished)
                .filter(|r| r.acked && r.port == Some(old_port))
                .last()?;
            Some(first.finished - last_old.finished)
        };
        let (gap_ours, gap_classic) = (gap(&r_ours), gap(&r_classic));
        let reply = |records: &[WriteRecord]| {
            records
                .iter()
                .find(|r| r.replied && r.finished > killed && r.port.is_some_and(|p| p != old_port))
                .map(|r| r.finished - killed)
        };
        let (reply_ours, reply_classic) = (reply(&r_ours), reply(&r_classic));
        // The kill lands somewhere inside the API call: the old master may still acknowledge
        // writes after `killed`; the writer's first failure after it marks the loss.
        let after_loss = |records: &[WriteRecord]| -> Vec<(Instant, bool, Option<u16>)> {
            records
                .iter()
                .skip_while(|r| r.finished <= killed || r.acked)
                .map(|r| (r.finished, r.acked, r.port))
                .collect()
        };
        let any = |records: &[WriteRecord]| {
            after_loss(records)
                .iter()
                .find(|r| r.1)
                .map(|r| r.0 - killed)
        };
        let old_acks = |records: &[WriteRecord]| {
            after_loss(records)
                .iter()
                .filter(|r| r.1 && r.2 == Some(old_port))
                .count()
        };
        let (any_ours, any_classic) = (any(&r_ours), any(&r_classic));
        let (old_acks_ours, old_acks_classic) = (old_acks(&r_ours), old_acks(&r_classic));

        // The swarm's new task of the killed node, back as a linked replica.
        let rejoined = poll(WAIT, || async {
            let c = self.chaos.running(node).await.map_err(|e| e.to_string())?;
            if c.id == container {
                return Err("the killed container still runs".into());
            }
            match self.role(old).await? {
                (role, link) if role == "slave" && link == "connected" => Ok(killed.elapsed()),
                (role, link) => Err(format!("redis-{old}: role {role} link {link:?}")),
            }
        })
        .await
        .ok();
        // Every acknowledged write must be on the master the Sentinels name now.
        let master = self.settle().await?;
        let acked: Vec<&WriteRecord> = r_ours
            .iter()
            .chain(&r_classic)
            .filter(|r| r.acked)
            .collect();
        let keys: Vec<String> = acked.iter().map(|r| r.key.clone()).collect();
        let missing: std::collections::HashSet<String> =
            missing_keys(self.redis_port(master), &self.password, &keys)
                .await?
                .into_iter()
                .collect();
        let lost = |before: bool| {
            acked
                .iter()
                .filter(|r| (r.finished <= killed) == before && missing.contains(&r.key))
                .count()
        };
        let (lost_before, lost_after) = (lost(true), lost(false));
        Ok(Rep {
            fig_ours,
            fig_classic,
            promoted: new_port,
            gap_ours,
            gap_classic,
            reply_ours,
            reply_classic,
            any_ours,
            any_classic,
            old_acks_ours,
            old_acks_classic,
            rejoined,
            kill_call,
            lost_before,
            lost_after,
            deploy: 1,
            kill_in_deploy: 1,
        })
    }
}

impl Rep {
    fn fig(&self, p: Proxy) -> &FailoverSample {
        match p {
            Proxy::Ours => &self.fig_ours,
            Proxy::Classic => &self.fig_classic,
        }
    }

    fn any(&self, p: Proxy) -> Option<Duration> {
        match p {
            Proxy::Ours => self.any_ours,
            Proxy::Classic => self.any_classic,
        }
    }

    /// The first write after the kill through `p` was acknowledged by the promoted node.
    fn acked_by_promoted(&self, p: Proxy) -> bool {
        self.fig(p).acked_by == Some(self.promoted)
    }

    /// The figures of one repetition, as the report's cells: another node, promotion → that
    /// write, which node acknowledged it, any node, write gap, first reply (each "ours /
    /// classic"), acks by the killed node's new task, killed node a linked replica, kill call,
    /// acknowledged writes lost (before / after the kill).
    fn cells(&self) -> [String; 10] {
        let node = |f: &FailoverSample| {
            f.acked_by.map_or_else(
                || "-".to_owned(),
                |p| format!("redis-{}", p.saturating_sub(9000)),
            )
        };
        [
            pair(self.fig_ours.outage, self.fig_classic.outage),
            format!(
                "{} / {}",
                ms(self.fig_ours.switch_lag),
                ms(self.fig_classic.switch_lag)
            ),
            format!(
                "{} / {} (promoted redis-{})",
                node(&self.fig_ours),
                node(&self.fig_classic),
                self.promoted.saturating_sub(9000)
            ),
            pair(self.any_ours, self.any_classic),
            pair(self.gap_ours, self.gap_classic),
            pair(self.reply_ours, self.reply_classic),
            format!("{} / {}", self.old_acks_ours, self.old_acks_classic),
            secs(self.rejoined),
            format!("{} ms", self.kill_call.as_millis()),
            format!("{} / {}", self.lost_before, self.lost_after),
        ]
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), figures::secs)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), figures::millis)
}

/// "min | median | max" in seconds, or dashes.
fn stat_cells(v: &[Duration]) -> String {
    figures::cells(v, figures::secs)
}

fn pair(a: Option<Duration>, b: Option<Duration>) -> String {
    format!("{} / {}", secs(a), secs(b))
}

/// Per down-after: kill → first acknowledged write and promotion → first acknowledged write
/// through each proxy, min / median / max, and ours / classic of the medians and maxes.
fn failover_tables(results: &BTreeMap<u64, Vec<Rep>>) -> String {
    let mut out = String::new();
    for (da, reps) in results {
        let _ = writeln!(
            out,
            "\n#### down-after {da} ms\n\n\
             | proxy | kill → first acknowledged write: min | median | max | promotion (`ROLE` \
             = master) → first acknowledged write: min | median | max | promotion → first \
             write routed to it: min | median | max | acknowledged by the promoted node |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let pick = |p: Proxy, f: fn(&FailoverSample) -> Option<Duration>| -> Vec<Duration> {
            reps.iter().filter_map(|r| f(r.fig(p))).collect()
        };
        for proxy in [Proxy::Ours, Proxy::Classic] {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {}/{} |",
                proxy.label(),
                figures::cells(&pick(proxy, |f| f.outage), figures::secs),
                figures::cells(&pick(proxy, |f| f.switch_lag), figures::millis),
                figures::cells(&pick(proxy, |f| f.routed_lag), figures::millis),
                reps.iter().filter(|r| r.acked_by_promoted(proxy)).count(),
                reps.len()
            );
        }
        let ratio = |f: fn(&FailoverSample) -> Option<Duration>| {
            let (median, max) =
                figures::median_max_ratios(&pick(Proxy::Ours, f), &pick(Proxy::Classic, f));
            format!(
                "| **{}** | **{}**",
                figures::ratio_cell(median),
                figures::ratio_cell(max)
            )
        };
        let _ = writeln!(
            out,
            "| **redis-ha / classic** (medians, maxes) | {} | {} | {} | |",
            ratio(|f| f.outage),
            ratio(|f| f.switch_lag),
            ratio(|f| f.routed_lag)
        );
    }
    out
}

fn report(args: &Args, results: &BTreeMap<u64, Vec<Rep>>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Failover on the swarm stack: master container killed\n\n\
         `docker kill` (SIGKILL) of the master's container, {} kills per row; a writer through \
         each proxy's published port (SET every {} ms, AUTH first, {}), both proxies in the same stack, so every kill is measured \
         through both; `ROLE` polled on the replicas' published ports every {} ms (held \
         connection, AUTH). Kill → the first write acknowledged by another node; promotion → \
         the promoted node first answering `ROLE` = master → that write (0 when it came first); \
         routed: → the first write of any outcome that reached it (`NOREPLICAS` too).",
        args.reps,
        if args.mode == WriteMode::Persistent {
            HELD_WRITE_INTERVAL
        } else {
            WRITE_INTERVAL
        }
        .as_millis(),
        match args.mode {
            WriteMode::Persistent => "on one held connection, reconnecting at once after a failure",
            WriteMode::NewConnectionEachWrite => "each on a fresh connection, one after the other",
            WriteMode::Concurrent =>
                "each on a fresh connection and sent on schedule, not after the previous one answered",
        },
        ROLE_INTERVAL.as_millis()
    );
    out.push_str(&failover_tables(results));
    out.push('\n');
    let _ = writeln!(
        out,
        "#### Another node against any node\n\n\
         Kill → first write acknowledged through the proxy's published port (the writers \
         above), {} repetitions per row, min / median / max. \"Another node\": \
         acknowledged by a node other than the killed one (the new master); \"any node\": the \
         swarm restarts the killed container within seconds, and its new task may take writes \
         before Sentinel fails over.\n\n\
         | Sentinel down-after | proxy | another node: min | median | max | any node: min | median | max | measured |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|",
        args.reps
    );
    for (da, reps) in results {
        for proxy in [Proxy::Ours, Proxy::Classic] {
            let pick = |r: &Rep| (r.fig(proxy).outage, r.any(proxy));
            let other: Vec<Duration> = reps.iter().filter_map(|r| pick(r).0).collect();
            let any: Vec<Duration> = reps.iter().filter_map(|r| pick(r).1).collect();
            let _ = writeln!(
                out,
                "| {da} ms | {} | {} | {} | {}/{} |",
                proxy.label(),
                stat_cells(&other),
                stat_cells(&any),
                other.len(),
                reps.len()
            );
        }
    }
    let _ = writeln!(
        out,
        "\nPer repetition, each cell redis-ha / classic. Write gap: the writer's last write \
         acknowledged by the old master → its first by another node (does not depend on when \
         the kill landed inside the Docker API call). First reply: the first answer of any kind \
         from another node (NOREPLICAS too: the stack's Redis has `min-replicas-to-write 1`), \
         i.e. when the proxy had switched.\n\n\
         | down-after | deploy | kill | another node | promotion → that write | acknowledged by \
         | any node | write gap | first reply from \
         another node | writes acked by the killed node's new task | killed node a linked \
         replica again | kill API call | acked writes lost (before / after the kill) |\n\
         |---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (da, reps) in results {
        for r in reps {
            let _ = writeln!(
                out,
                "| {da} ms | {} | {} | {} |",
                r.deploy,
                r.kill_in_deploy,
                r.cells().join(" | ")
            );
        }
    }
    if let Some(n) = args.fresh_deploys {
        let _ = writeln!(
            out,
            "\n### First kill after a fresh deploy\n\n\
             {n} fresh deploys per row (`down.sh --purge`, `up.sh`), the first kill of each: kill → \
             first write acknowledged by another node, min / median / max; lost: acknowledged \
             writes (both writers, all kills) missing on the final master.\n\n\
             | down-after | proxy | min | median | max | measured | lost (before / after the kill) |\n\
             |---:|---|---:|---:|---:|---:|---:|"
        );
        for (da, reps) in results {
            let firsts: Vec<&Rep> = reps.iter().filter(|r| r.kill_in_deploy == 1).collect();
            let lost_b: usize = reps.iter().map(|r| r.lost_before).sum();
            let lost_a: usize = reps.iter().map(|r| r.lost_after).sum();
            for proxy in [Proxy::Ours, Proxy::Classic] {
                let v: Vec<Duration> = firsts.iter().filter_map(|r| r.fig(proxy).outage).collect();
                let _ = writeln!(
                    out,
                    "| {da} ms | {} | {} | {}/{} | {lost_b} / {lost_a} |",
                    proxy.label(),
                    stat_cells(&v),
                    v.len(),
                    firsts.len()
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\nupstream DNS of the Redis and Sentinel containers: {}; sidecars: {} build; the kill instant is taken just before the Docker API call, which \
         returns once the container is gone (the SIGKILL lands early in it).",
        match args.dns.as_deref() {
            Some(SILENT_DNS) => format!("{SILENT_DNS} (never answers)"),
            Some(ip) => ip.to_owned(),
            None => "the engine's".to_owned(),
        },
        if args.release { "release" } else { "debug" }
    );
    out
}
