//! Multi-node tests: the swarm stack spread over a rig of extra dockerds in network namespaces
//! joined to the host's swarm (`redis_ha_testkit::rig`), deployed by `deploy/up.sh` from the
//! host (the manager), faulted by cutting a node's link.
//!
//! The rig's nodes have an upstream resolver that never answers (an address of the rig's subnet
//! nobody holds): every lookup that left Docker's DNS would hang, so a deploy that becomes
//! healthy with Sentinels out of TILT shows that none does.
//!
//! They need root and Docker, so they are `#[ignore]`d like the stack tests: tests/run.sh runs
//! them after those (`--run-ignored ignored-only`), one at a time (nextest group `stack`).
//! They leave nothing behind: the stack is purged on every node, and the rig's teardown checks
//! that no namespace, link, rule, cgroup, directory or swarm node of it is left.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis_ha_testkit::rig::{
    self, docker_on, leftovers, NodePlan, Rig, RigOptions, CONTROL_PLACEMENT,
};
use redis_ha_tests::multinode::{
    agents_heard, at, cli_in_network, fault_figures, missing_keys, role, sentinel_master,
    status_in_network, Attempt, NsWriter,
};
use redis_ha_tests::stack::{
    confirmed_master, poll, purge, refuse_skip_under_ci, repo_root, tls_dir, Stack, StackOptions,
};

const T: Duration = Duration::from_secs(90);

/// The multi-node stack's name.
const STACK: &str = "redis-ha-mn";

/// `docker ARGS` on this host's engine; the error names the command and its stderr.
fn docker(args: &[&str]) -> Result<String, String> {
    rig::docker(args).map_err(|e| e.to_string())
}

/// The hostnames of the nodes running `service`'s tasks now.
fn running_on(stack: &str, service: &str) -> Result<Vec<String>, String> {
    let out = docker(&[
        "service",
        "ps",
        &format!("{stack}_{service}"),
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    ])?;
    let mut nodes: Vec<String> = out
        .lines()
        .filter(|l| l.contains("Running"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    nodes.sort();
    Ok(nodes)
}

async fn create_rig(opts: RigOptions) -> Rig {
    tokio::task::spawn_blocking(move || Rig::create(&opts))
        .await
        .expect("rig task")
        .unwrap_or_else(|e| panic!("the rig: {e}"))
}

async fn teardown_rig(rig: Rig) {
    tokio::task::spawn_blocking(move || rig.teardown())
        .await
        .expect("rig task")
        .unwrap_or_else(|e| panic!("the rig's teardown: {e}"));
    let left = leftovers();
    assert!(left.is_empty(), "the rig left {left:?}");
}

/// The host alone (and any node that is no rig's) is left in the swarm, and it is a manager.
fn assert_host_swarm_intact() {
    let ls = docker(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]).expect("node ls");
    assert!(
        !ls.contains("rhmn-"),
        "a rig node is still in the swarm: {ls}"
    );
    let control = docker(&["info", "-f", "{{.Swarm.ControlAvailable}}"]).expect("info");
    assert_eq!(control.trim(), "true", "the host is no manager any more");
}

/// The three-manager variant: the host and two namespaces as managers (three, a quorum of
/// two), one worker more; every manager reachable; torn down, the host is the only manager
/// again and nothing of the rig is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and Docker: tests/run.sh runs it (--run-ignored ignored-only)"]
async fn rig_with_three_managers_comes_and_goes() {
    refuse_skip_under_ci();
    let managers_before = docker(&["node", "ls", "--filter", "role=manager", "-q"])
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let t0 = Instant::now();
    let rig = create_rig(RigOptions {
        nodes: 3,
        managers: 2,
        labels: false,
        control: 0,
        dns: None,
    })
    .await;
    eprintln!("[{:?}] rig of 4 nodes, 3 managers", t0.elapsed());
    let ls = docker(&[
        "node",
        "ls",
        "--format",
        "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
    ])
    .expect("node ls");
    let managers: Vec<&str> = ls
        .lines()
        .filter(|l| l.ends_with("Reachable") || l.ends_with("Leader"))
        .collect();
    assert_eq!(
        managers.len(),
        managers_before.max(1) + 2,
        "managers reachable: {ls}"
    );
    for n in rig.nodes() {
        let info = docker_on(
            &n.engine(),
            &["info", "-f", "{{.Name}} {{.Swarm.ControlAvailable}}"],
        )
        .expect("node info");
        assert_eq!(info.trim(), format!("{} {}", n.name, n.manager), "{info}");
    }
    teardown_rig(rig).await;
    assert_host_swarm_intact();
    eprintln!("[{:?}] torn down", t0.elapsed());
}

/// The control plane's services, placed on the rig's control nodes.
const CONTROL: [&str; 2] = ["coordinator", "haproxy-reloader"];

/// A fault of the master's host.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Its link down, then up (a partition: it runs on, alone).
    Cut,
    /// Its dockerd, containerd and containers SIGKILLed, then the engine started again.
    Kill,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fault::Cut => "cut",
            Fault::Kill => "kill",
        })
    }
}

/// Purges the stack (every node, through the engines in its state directory) when a test panics
/// before its own teardown: a failed run leaves no stack on the shared swarm.
struct PurgeOnDrop(Option<String>);

impl PurgeOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            let out = std::process::Command::new(repo_root().join("deploy/down.sh"))
                .args(["--stack", &name, "--purge"])
                .output();
            eprintln!("purged {name} after a failure: {out:?}");
        }
    }
}

fn keys(records: &[Attempt]) -> Vec<String> {
    records
        .iter()
        .filter(|a| a.acked)
        .map(|a| a.key.clone())
        .collect()
}

/// Four nodes (the host, manager: coordinator, reloader, an HAProxy; three workers labelled
/// redis-ha.node=1..3: node N's Redis, Sentinel, agent and an HAProxy each), deployed by
/// `deploy/up.sh --engine ...` (images loaded onto each node, health checked on every node);
/// then two faults of the master's host, each with a writer through the host's HAProxy (the
/// healthy side) and one through the HAProxy on the faulted node, from inside its network
/// namespace (the faulted side): its link cut and healed; its engine killed (dockerd,
/// containerd, containers) and started again. Undone, the old master returns as a replica and
/// the faulted node's HAProxy routes to the new master. Nothing acknowledged through the
/// healthy side is lost; the figures are printed (`FIGURES` lines). Then `down.sh --purge` leaves no volume
/// on any node, and the rig's teardown nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root and Docker: tests/run.sh runs it (--run-ignored ignored-only)"]
async fn multinode_deploy_places_by_label_and_survives_master_host_cut_and_kill() {
    refuse_skip_under_ci();
    let t0 = Instant::now();
    // Declared before the rig, so dropped after it: after a failure the nodes are gone first
    // (a cut node's containers would hold the purge up for minutes), then the stack is purged.
    let mut guard = PurgeOnDrop(Some(STACK.to_owned()));
    let rig = create_rig(RigOptions {
        nodes: 5,
        control: 2,
        ..RigOptions::default()
    })
    .await;
    eprintln!("[{:?}] rig of 6 nodes", t0.elapsed());
    let opts = StackOptions {
        name: STACK.into(),
        base_port: 9400,
        grpc_port: 9450,
        engines: rig.engines(),
        // The agents' socket would be the host's engine on these nodes (one filesystem).
        docker_socket: false,
        // Off the Redis nodes and off the host, so that their host can be lost.
        control_placement: Some(CONTROL_PLACEMENT.into()),
        ..StackOptions::default()
    };
    let deploy_started = Instant::now();
    let stack = Stack::deploy(opts.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "[{:?}] deployed and healthy on every node in {:?}",
        t0.elapsed(),
        deploy_started.elapsed()
    );

    // ---- name lookups: with an upstream that never answers on every node, which Sentinels
    // entered TILT (their event loop stalled) since they started. Printed: the deploy waited
    // until none is in TILT.
    let tilts: Vec<(u8, usize)> = (1..=3u8)
        .map(|n| {
            let logs = std::process::Command::new("docker")
                .args(["service", "logs", "--raw", &format!("{STACK}_sentinel-{n}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            (n, logs.matches("+tilt").count())
        })
        .collect();
    eprintln!(
        "[{:?}] +tilt in the Sentinels' logs since the deploy: {tilts:?}",
        t0.elapsed()
    );

    // ---- placement: node N's services on the node labelled N; the control plane on the
    // manager; an HAProxy on every node.
    let host = docker(&["info", "-f", "{{.Name}}"]).expect("info");
    let host = host.trim().to_owned();
    for n in 1..=3u8 {
        let node = rig.labelled(n).expect("labelled node");
        for svc in ["redis", "sentinel", "agent"] {
            assert_eq!(
                running_on(&opts.name, &format!("{svc}-{n}")).expect("service ps"),
                vec![node.name.clone()],
                "{svc}-{n} runs on the node labelled {n}"
            );
        }
    }
    let control: Vec<String> = rig
        .nodes()
        .iter()
        .filter(|n| n.control)
        .map(|n| n.name.clone())
        .collect();
    for svc in CONTROL {
        let on = running_on(&opts.name, svc).expect("service ps");
        assert!(
            on.len() == 1 && control.contains(&on[0]),
            "{svc} runs on one of the control nodes {control:?}: {on:?}"
        );
    }
    let mut every: Vec<String> = rig.nodes().iter().map(|n| n.name.clone()).collect();
    every.push(host.clone());
    every.sort();
    assert_eq!(
        running_on(&opts.name, "haproxy").expect("service ps"),
        every,
        "an HAProxy on every node"
    );

    // ---- the master's host cut off.
    let ip = |n: u8| rig.labelled(n).expect("labelled node").addr;
    let redis_at = |n: u8| at(ip(n), opts.base_port + u16::from(n));
    let sentinels = |except: Option<u8>| -> Vec<(u8, SocketAddr)> {
        (1..=3u8)
            .filter(|n| Some(*n) != except)
            .map(|n| (n, at(ip(n), opts.base_port + 10000 + u16::from(n))))
            .collect()
    };
    let sentinel_pw = stack.secret("sentinel_password").expect("secret");
    let pw = stack.password().to_owned();
    let tls = tls_dir(&opts.name);
    // The coordinator's status, asked on the stack's network wherever it runs.
    let status = || status_in_network(&opts.name, &opts.group, &tls);
    // The master the Sentinels' majority and the coordinator's status both name.
    let agreed_master = || {
        poll(T, || async {
            let s = sentinel_master(&sentinels(None), &sentinel_pw, &opts.group).await?;
            let c = confirmed_master(&status().await?)?;
            if s == c {
                Ok(s)
            } else {
                Err(format!("sentinels: redis-{s}, status: redis-{c}"))
            }
        })
    };
    for fault in [Fault::Cut, Fault::Kill] {
        let m = agreed_master().await.expect("an agreed master");
        let faulted_node = rig.labelled(m).expect("master's node").clone();
        let healthy = NsWriter::start(
            None,
            at([127, 0, 0, 1], opts.base_port),
            &pw,
            &format!("healthy-{fault}"),
            Duration::from_millis(5),
        );
        let faulted = NsWriter::start(
            Some(&faulted_node.name),
            at(faulted_node.addr, opts.base_port),
            &pw,
            &format!("faulted-{fault}"),
            Duration::from_millis(5),
        );
        poll(T, || async {
            match (healthy.acked(), faulted.acked()) {
                (h, f) if h >= 20 && f >= 20 => Ok(()),
                (h, f) => Err(format!("acknowledged: healthy {h}, faulted {f}")),
            }
        })
        .await
        .expect("both writers write");
        let cut = Instant::now();
        match fault {
            Fault::Cut => rig.cut(m).expect("cut"),
            Fault::Kill => rig.kill_engine(m).expect("kill"),
        }
        eprintln!(
            "[{:?}] {fault}: {} (redis-{m}, the master)",
            t0.elapsed(),
            faulted_node.name
        );
        let new = poll(T, || async {
            let s = sentinel_master(&sentinels(Some(m)), &sentinel_pw, &opts.group).await?;
            if s == m {
                Err(format!("the Sentinels still name redis-{m}"))
            } else {
                Ok(s)
            }
        })
        .await
        .expect("a failover away from the faulted node");
        poll(T, || async {
            match healthy.count(|a| a.acked && a.node == Some(new)) {
                n if n >= 50 => Ok(()),
                n => Err(format!("{n} writes acknowledged by redis-{new}")),
            }
        })
        .await
        .expect("the healthy side writes to the new master");
        match fault {
            Fault::Cut => rig.heal(m).expect("heal"),
            // Up to 30 s until the engine answers: off the runtime's workers.
            Fault::Kill => tokio::task::block_in_place(|| rig.start_engine(m)).expect("restart"),
        }
        let healed = Instant::now();
        eprintln!("[{:?}] {fault} undone; redis-{new} is master", t0.elapsed());
        poll(T, || async {
            match role(redis_at(m), &pw).await?.as_str() {
                "slave" => Ok(()),
                r => Err(format!("redis-{m} is {r}")),
            }
        })
        .await
        .expect("the old master rejoins as a replica");
        let agreed = agreed_master().await.expect("agreement after the heal");
        assert_eq!(agreed, new);
        // The faulted side's HAProxy follows the reloader again once healed.
        poll(T, || async {
            match faulted.count(|a| a.acked && a.node == Some(new) && a.started > healed) {
                n if n >= 10 => Ok(()),
                n => Err(format!(
                    "{n} writes through the healed node's HAProxy on redis-{new}"
                )),
            }
        })
        .await
        .expect("the healed node's HAProxy routes to the new master");
        let end = Instant::now();
        let healthy = healthy.finish().expect("healthy writer");
        let faulted = faulted.finish().expect("faulted writer");
        let lost_healthy = missing_keys(redis_at(new), &pw, &keys(&healthy))
            .await
            .expect("MGET");
        let lost_faulted = missing_keys(redis_at(new), &pw, &keys(&faulted))
            .await
            .expect("MGET");
        let f = fault_figures(&healthy, &faulted, m, new, cut, healed);
        eprintln!(
            "[{:?}] FIGURES master host {fault}: redis-{m} -> redis-{new}; healthy side (HAProxy \
             on the manager): write outage {:?}, {} acknowledged during the fault, {} of {} \
             acknowledged lost; faulted side (HAProxy on the faulted node): longest gap {:?}, {} \
             acknowledged during the fault, {} of {} acknowledged lost; two routable masters for \
             {:?}; undone -> redis-{m} replica, routed again after {:?}",
            t0.elapsed(),
            f.healthy_outage,
            f.healthy_acked,
            lost_healthy.len(),
            keys(&healthy).len(),
            f.faulted_outage,
            f.faulted_acked,
            lost_faulted.len(),
            keys(&faulted).len(),
            f.two_masters,
            end - healed,
        );
        assert!(
            lost_healthy.is_empty(),
            "acknowledged through the healthy side's HAProxy and lost: {} (first {:?})",
            lost_healthy.len(),
            lost_healthy.first()
        );
        assert!(f.healthy_outage < T, "the healthy side never wrote again");
    }

    // ---- a replica's host cut off: no failover, the healthy side writes on, nothing lost;
    // healed, the replica follows the master again and its HAProxy routes to it.
    let m = agreed_master().await.expect("an agreed master");
    let r = (1..=3u8).find(|n| *n != m).expect("a replica");
    let replica_node = rig.labelled(r).expect("replica's node").clone();
    let healthy = NsWriter::start(
        None,
        at([127, 0, 0, 1], opts.base_port),
        &pw,
        "healthy-replica",
        Duration::from_millis(5),
    );
    let faulted = NsWriter::start(
        Some(&replica_node.name),
        at(replica_node.addr, opts.base_port),
        &pw,
        "faulted-replica",
        Duration::from_millis(5),
    );
    poll(T, || async {
        match (healthy.acked(), faulted.acked()) {
            (h, f) if h >= 20 && f >= 20 => Ok(()),
            (h, f) => Err(format!("acknowledged: healthy {h}, faulted {f}")),
        }
    })
    .await
    .expect("both writers write");
    let cut = Instant::now();
    rig.cut(r).expect("cut");
    eprintln!(
        "[{:?}] cut: {} (redis-{r}, a replica)",
        t0.elapsed(),
        replica_node.name
    );
    poll(T, || async {
        match healthy.count(|a| a.acked && a.node == Some(m) && a.started > cut) {
            // Well past the Sentinels' down-after: a failover would have begun.
            n if n >= 400 => Ok(()),
            n => Err(format!(
                "{n} writes acknowledged by redis-{m} since the cut"
            )),
        }
    })
    .await
    .expect("the healthy side writes on to the master");
    assert_eq!(
        sentinel_master(&sentinels(Some(r)), &sentinel_pw, &opts.group).await,
        Ok(m),
        "no failover for a replica's host"
    );
    rig.heal(r).expect("heal");
    let healed = Instant::now();
    poll(T, || async {
        match role(redis_at(r), &pw).await?.as_str() {
            "slave" => Ok(()),
            other => Err(format!("redis-{r} is {other}")),
        }
    })
    .await
    .expect("the replica is back");
    poll(T, || async {
        match faulted.count(|a| a.acked && a.node == Some(m) && a.started > healed) {
            n if n >= 10 => Ok(()),
            n => Err(format!("{n} writes through the healed node's HAProxy")),
        }
    })
    .await
    .expect("the healed node's HAProxy routes to the master");
    let end = Instant::now();
    let healthy = healthy.finish().expect("healthy writer");
    let faulted = faulted.finish().expect("faulted writer");
    let lost = missing_keys(redis_at(m), &pw, &keys(&healthy))
        .await
        .expect("MGET");
    let f = fault_figures(&healthy, &faulted, m, m, cut, healed);
    eprintln!(
        "[{:?}] FIGURES replica host cut: redis-{r} (master redis-{m} throughout); healthy side: \
         longest gap {:?}, {} acknowledged during the fault, {} of {} acknowledged lost; \
         faulted side: {} acknowledged during the fault; healed -> routed again after {:?}",
        t0.elapsed(),
        f.healthy_outage,
        f.healthy_acked,
        lost.len(),
        keys(&healthy).len(),
        f.faulted_acked,
        end - healed,
    );
    assert!(
        lost.is_empty(),
        "acknowledged and lost while a replica's host was cut: {lost:?}"
    );

    // ---- the control plane's hosts: the coordinator's node cut off, then the reloader's.
    // The swarm starts the service on the other control node; the agents, which held a
    // connection to the old task, find the new one (keep-alives, a fresh lookup of the name);
    // the moved control plane then carries out a switchover and drives every HAProxy.
    for svc in CONTROL {
        let m = agreed_master().await.expect("an agreed master");
        let on = running_on(&opts.name, svc).expect("service ps");
        let node: NodePlan = rig
            .nodes()
            .iter()
            .find(|n| on.first() == Some(&n.name))
            .unwrap_or_else(|| panic!("{svc} on a rig node: {on:?}"))
            .clone();
        let also: Vec<&str> = CONTROL
            .into_iter()
            .filter(|s| running_on(&opts.name, s).is_ok_and(|o| o.contains(&node.name)))
            .collect();
        let healthy = NsWriter::start(
            None,
            at([127, 0, 0, 1], opts.base_port),
            &pw,
            &format!("healthy-{svc}"),
            Duration::from_millis(5),
        );
        poll(T, || async {
            match healthy.acked() {
                h if h >= 20 => Ok(()),
                h => Err(format!("acknowledged: {h}")),
            }
        })
        .await
        .expect("the writer writes");
        let cut = Instant::now();
        rig.cut(node.index).expect("cut");
        eprintln!("[{:?}] cut: {} (running {also:?})", t0.elapsed(), node.name);
        let moved = poll(T, || async {
            let on = running_on(&opts.name, svc)?;
            match on.as_slice() {
                [other] if *other != node.name => Ok(other.clone()),
                _ => Err(format!("{svc} running on {on:?}")),
            }
        })
        .await
        .expect("the swarm moves it");
        let started_elsewhere = cut.elapsed();
        // Every agent (none runs on a control node) reports to the coordinator that runs now.
        poll(T, || async {
            let st = status().await?;
            let c = confirmed_master(&st)?;
            match agents_heard(&st) {
                heard if c == m && heard == [1, 2, 3] => Ok(()),
                heard => Err(format!("master redis-{c}, agents heard {heard:?}")),
            }
        })
        .await
        .expect("the coordinator hears every agent");
        let all_heard = cut.elapsed();
        let switched = Instant::now();
        let out = cli_in_network(&opts.name, &opts.group, &tls, &["switchover"])
            .await
            .unwrap_or_else(|e| panic!("switchover with {svc} moved: {e}"));
        eprintln!("[{:?}] {}", t0.elapsed(), out.trim());
        let new = poll(T, || async {
            match sentinel_master(&sentinels(None), &sentinel_pw, &opts.group).await? {
                s if s == m => Err(format!("the Sentinels still name redis-{m}")),
                s => Ok(s),
            }
        })
        .await
        .expect("the switchover moved the master");
        poll(T, || async {
            match healthy.count(|a| a.acked && a.node == Some(new) && a.started > switched) {
                n if n >= 50 => Ok(()),
                n => Err(format!("{n} writes acknowledged by redis-{new}")),
            }
        })
        .await
        .expect("the host's HAProxy routes to the new master");
        rig.heal(node.index).expect("heal");
        // The orphan on the healed node is stopped: one task of the service runs.
        poll(T, || async {
            match running_on(&opts.name, svc)? {
                on if on == [moved.clone()] => Ok(()),
                on => Err(format!("{svc} running on {on:?}")),
            }
        })
        .await
        .expect("one task after the heal");
        let end = Instant::now();
        let healthy = healthy.finish().expect("writer");
        let lost = missing_keys(redis_at(new), &pw, &keys(&healthy))
            .await
            .expect("MGET");
        let f = fault_figures(&healthy, &[], m, new, cut, end);
        eprintln!(
            "[{:?}] FIGURES {svc}'s host cut ({also:?} on it): started on {moved} after \
             {started_elapsed:?}, every agent heard by it after {all_heard:?}; switchover \
             redis-{m} -> redis-{new} through the moved control plane; longest gap in the \
             writes {:?}, {} of {} acknowledged lost",
            t0.elapsed(),
            f.healthy_outage,
            lost.len(),
            keys(&healthy).len(),
            started_elapsed = started_elsewhere,
        );
        assert!(
            lost.is_empty(),
            "acknowledged and lost with {svc}'s host cut: {lost:?}"
        );
    }

    // ---- down.sh --purge: nothing of the stack on any node.
    stack.teardown().await.unwrap_or_else(|e| panic!("{e}"));
    guard.disarm();
    let label = format!("label=com.docker.stack.namespace={}", opts.name);
    for e in rig.engines() {
        for kind in ["volume", "network"] {
            let left = docker_on(&e, &[kind, "ls", "-q", "--filter", &label]).expect("ls");
            assert!(left.trim().is_empty(), "{kind}s left on {e}: {left}");
        }
        let left = docker_on(&e, &["ps", "-aq", "--filter", &label]).expect("ps");
        assert!(left.trim().is_empty(), "containers left on {e}: {left}");
    }
    // A second purge finds nothing (and knows no engine any more: the state directory is gone).
    purge(&repo_root(), &opts.name, &[]).await.expect("purge");
    teardown_rig(rig).await;
    assert_host_swarm_intact();
    eprintln!("[{:?}] torn down", t0.elapsed());
}

/// Run last by tests/run.sh: removes whatever a multi-node test killed before its teardown
/// (a timeout) left, the rig and the stack, and fails if there was anything, so that a leak is
/// both cleaned up and seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and Docker: tests/run.sh runs it after the other multi-node tests"]
async fn rig_leftovers_are_none() {
    let rig_left = leftovers();
    tokio::task::spawn_blocking(redis_ha_testkit::rig::remove_leftovers)
        .await
        .expect("task")
        .unwrap_or_else(|e| panic!("removing a rig's leftovers: {e}"));
    let stack_left = docker(&["stack", "ls", "--format", "{{.Name}}"])
        .map(|s| s.lines().any(|l| l == STACK))
        .unwrap_or(false);
    if stack_left {
        purge(&repo_root(), STACK, &[]).await.expect("purge");
    }
    assert!(leftovers().is_empty(), "still left: {:?}", leftovers());
    assert_host_swarm_intact();
    assert!(
        rig_left.is_empty() && !stack_left,
        "a multi-node test left (now removed): {rig_left:?}, stack {STACK}: {stack_left}"
    );
}
