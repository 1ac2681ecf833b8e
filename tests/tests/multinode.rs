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

use std::time::Instant;

use redis_ha_testkit::rig::{self, docker_on, leftovers, Rig, RigOptions, CONTROL_PLACEMENT};
use redis_ha_tests::multinode::{remove_leftovers, STACK};
use redis_ha_tests::multinode_faults::{running_on, Cluster, Fault, Outcome, CONTROL};
use redis_ha_tests::stack::{purge, refuse_skip_under_ci, repo_root, Stack, StackOptions};

/// `docker ARGS` on this host's engine; the error names the command and its stderr.
fn docker(args: &[&str]) -> Result<String, String> {
    rig::docker(args).map_err(|e| e.to_string())
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
        ..RigOptions::default()
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

/// A run stopped mid-test (a CI step or a session killed) with its rig's managers in the swarm:
/// their engines die with it and the host's swarm is left without a leader, so every later
/// stack command fails. `remove_leftovers` (the last multi-node test, and the
/// `remove-leftovers` step tests/run.sh runs before the Docker tests) makes the host the one
/// manager again and removes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and Docker: tests/run.sh runs it (--run-ignored ignored-only)"]
async fn a_rig_killed_with_its_managers_is_removed_and_the_swarm_restored() {
    refuse_skip_under_ci();
    let t0 = Instant::now();
    let rig = create_rig(RigOptions {
        nodes: 2,
        managers: 2,
        labels: false,
        ..RigOptions::default()
    })
    .await;
    eprintln!("[{:?}] rig of 3 nodes, 3 managers", t0.elapsed());
    let indexes: Vec<u8> = rig.nodes().iter().map(|n| n.index).collect();
    let leaderless = tokio::task::spawn_blocking(move || {
        for i in indexes {
            rig.kill_engine(i)
                .unwrap_or_else(|e| panic!("killing node {i}: {e}"));
        }
        // As the killed run left it: no teardown.
        std::mem::forget(rig);
        // Two managers of three gone: the host loses its leadership (raft election timeout).
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        loop {
            match rig::docker(&["node", "ls", "-q"]) {
                Err(e) if rig::leaderless(&e) => return e.to_string(),
                other if Instant::now() > deadline => {
                    panic!("the swarm kept a leader with two of three managers dead: {other:?}")
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(500)),
            }
        }
    })
    .await
    .expect("task");
    eprintln!("[{:?}] swarm without a leader: {leaderless}", t0.elapsed());
    let removed = remove_leftovers()
        .await
        .unwrap_or_else(|e| panic!("removing the killed rig: {e}"));
    assert!(
        removed.leadership_restored && !removed.rig.is_empty(),
        "the killed rig: {removed:?}"
    );
    let left = leftovers();
    assert!(left.is_empty(), "the killed rig left {left:?}");
    assert_host_swarm_intact();
    eprintln!(
        "[{:?}] removed, the host the swarm's manager again",
        t0.elapsed()
    );
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

/// Six nodes: the host (manager, an HAProxy), three workers labelled redis-ha.node=1..3 (node
/// N's Redis, Sentinel, agent and an HAProxy each) and two labelled redis-ha.control=true (the
/// coordinator and the reloader, an HAProxy each), deployed by `deploy/up.sh --engine ...`
/// (images loaded onto each node, health checked on every node). Then the faults of
/// `multinode_faults`, each with a writer through the host's HAProxy (the healthy side) and,
/// where the faulted node runs one that clients use, one through that node's HAProxy from
/// inside its namespace (the faulted side): the master's host cut and healed, then killed
/// (dockerd, containerd, containers) and started again, each time the old master back as a
/// replica and its node's HAProxy on the new master; a replica's host cut (no failover); the
/// coordinator's host lost (cut off and killed, a manager), then the reloader's (the swarm
/// moves the service, every agent reaches the moved coordinator, a switchover goes through
/// the moved control plane; the host started again).
/// Nothing acknowledged through the healthy side is lost; the figures are printed (`FIGURES`
/// lines). Then `down.sh --purge` leaves no volume on any node, and the rig's teardown nothing
/// at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root and Docker: tests/run.sh runs it (--run-ignored ignored-only)"]
async fn multinode_deploy_places_by_label_and_survives_host_faults() {
    refuse_skip_under_ci();
    let t0 = Instant::now();
    // Declared before the rig, so dropped after it: after a failure the nodes are gone first
    // (a cut node's containers would hold the purge up for minutes), then the stack is purged.
    let mut guard = PurgeOnDrop(Some(STACK.to_owned()));
    let rig = create_rig(RigOptions {
        nodes: 5,
        control: 2,
        managers: 2,
        control_managers: true,
        ..RigOptions::default()
    })
    .await;
    eprintln!(
        "[{:?}] rig of 6 nodes, 3 managers (the host and the control nodes)",
        t0.elapsed()
    );
    let managers = docker(&[
        "node",
        "ls",
        "--filter",
        "role=manager",
        "--format",
        "{{.Hostname}}",
    ])
    .expect("node ls");
    let mut managers: Vec<&str> = managers
        .lines()
        .filter(|l| l.starts_with("rhmn-"))
        .collect();
    managers.sort_unstable();
    assert_eq!(managers, ["rhmn-n4", "rhmn-n5"], "the rig's managers");
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

    // ---- name lookups: with an upstream that never answers on every node, no Sentinel
    // entered TILT (its event loop stalled over 2 s) since it started, although names of
    // tasks not yet healthy failed to resolve while the stack came up (RES_OPTIONS in the
    // images: a lookup gives up after 1 s, not 10).
    let logs: Vec<(u8, String)> = (1..=3u8)
        .map(|n| {
            let logs = std::process::Command::new("docker")
                .args(["service", "logs", "--raw", &format!("{STACK}_sentinel-{n}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            (n, logs)
        })
        .collect();
    let count = |what: &str| -> Vec<(u8, usize)> {
        logs.iter()
            .map(|(n, l)| (*n, l.matches(what).count()))
            .collect()
    };
    eprintln!(
        "[{:?}] since the deploy, the Sentinels logged +tilt {:?}, failed lookups {:?}",
        t0.elapsed(),
        count("+tilt"),
        count("Failed to resolve hostname")
    );
    assert!(
        count("+tilt").iter().all(|(_, k)| *k == 0),
        "a Sentinel entered TILT: {:?}",
        count("+tilt")
    );
    assert!(
        logs.iter().all(|(_, l)| l.contains("+monitor master")),
        "the Sentinels' logs were read"
    );

    // ---- placement: node N's services on the node labelled N; the control plane on the
    // control nodes; an HAProxy on every node.
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

    // ---- the faults (tests/src/multinode_faults.rs): the master's host cut and healed, then
    // killed and started again; a replica's host cut; the coordinator's host lost, then the
    // reloader's. Nothing acknowledged through the healthy side may be lost.
    let cluster = Cluster::new(&rig, &stack).unwrap_or_else(|e| panic!("{e}"));
    let mut faults: Vec<Outcome> = Vec::new();
    for fault in [Fault::Cut, Fault::Kill] {
        eprintln!("[{:?}] master host {fault}", t0.elapsed());
        let o = cluster.master_host(fault).await;
        faults.push(
            o.unwrap_or_else(|e| panic!("master host {fault}: {e}{}", cluster.recent_logs(180))),
        );
    }
    eprintln!("[{:?}] replica host cut", t0.elapsed());
    let o = cluster.replica_host_cut().await;
    faults.push(o.unwrap_or_else(|e| panic!("replica host cut: {e}{}", cluster.recent_logs(180))));
    for svc in CONTROL {
        eprintln!("[{:?}] {svc}'s host lost", t0.elapsed());
        let o = cluster.control_host_lost(svc).await;
        faults.push(
            o.unwrap_or_else(|e| panic!("{svc}'s host lost: {e}{}", cluster.recent_logs(180))),
        );
    }
    for o in &faults {
        eprintln!("[{:?}] FIGURES {}", t0.elapsed(), o.line());
        let what = &o.what;
        assert_eq!(
            o.healthy_lost, 0,
            "{what}: acknowledged through the healthy side's HAProxy and lost"
        );
        assert!(
            o.healthy_acked > 0,
            "{what}: nothing acknowledged on the healthy side"
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
    let removed = remove_leftovers().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(leftovers().is_empty(), "still left: {:?}", leftovers());
    assert_host_swarm_intact();
    assert!(
        removed.is_empty(),
        "a multi-node test left (now removed): {removed:?}"
    );
}
