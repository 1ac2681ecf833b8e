//! Stack tests: the real swarm stack (deploy/up.sh), faulted through the Docker API.
//!
//! One deploy serves every scenario, in order: kill the master, pause it, isolate it, replace
//! its task by a rolling service update (a graceful stop: it hands over), then tear down. The Redis and Sentinel containers get an upstream resolver that never answers
//! (`SILENT_DNS`), so the first kill after the fresh deploy proves that a dead task's name never
//! waits for the upstream (it once froze every Sentinel into TILT: no failover, and the killed
//! node's restarted task took writes as the master they still named). Run serially (nextest group `stack` in .config/nextest.toml). Docker is required, so
//! the test is `#[ignore]`d: a plain `cargo nextest run` lists it as skipped, and tests/run.sh
//! runs it explicitly (`--run-ignored ignored-only`). A developer without Docker sets
//! REDIS_HA_SKIP_STACK_TESTS=1 for tests/run.sh, which refuses it under CI; run by hand, the
//! test refuses it under CI too instead of passing without having run.

use std::time::Duration;

use redis_ha_chaos::chaos::docker::ChaosAction;
use redis_ha_tests::stack::{
    missing_keys, poll, refuse_skip_under_ci, Stack, StackOptions, SECRET_FILES, SILENT_DNS,
};
use redis_ha_tests::stack_ops::{switchover_done_since, switchover_event_since};

const T: Duration = Duration::from_secs(90);

async fn wait_failover_from(stack: &Stack, old: u8) -> u8 {
    let new = poll(T, || async {
        let m = stack.sentinel_master().await?;
        if m == old {
            Err(format!("sentinels still name redis-{old}"))
        } else {
            Ok(m)
        }
    })
    .await
    .expect("failover");
    let mut i = 0u32;
    poll(T, || {
        i += 1;
        let key = format!("resume:{old}:{i}");
        async move { stack.write(&key, "x").await }
    })
    .await
    .expect("writes through HAProxy resume after the failover");
    new
}

async fn wait_replica(stack: &Stack, n: u8) {
    poll(T, || async {
        match stack.role(n).await?.as_str() {
            "slave" => Ok(()),
            r => Err(format!("redis-{n} is {r}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("redis-{n} rejoins as a replica: {e}"));
}

async fn wait_new_task(stack: &Stack, n: u8, old_container: &str) {
    poll(T, || async {
        let c = stack.running_container(n).await?;
        if c == old_container {
            Err("the old container still runs".to_owned())
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the swarm restarts redis-{n}'s task: {e}"));
}

/// What the split-brain check saw of `node` on one probe.
#[derive(Debug, PartialEq, Eq)]
enum Probed {
    /// It called itself master before and after EXISTS of the probe's key answered (`true`:
    /// it had the write, a split brain).
    Master { had_write: bool },
    /// It answered ROLE as a replica.
    Replica,
    /// ROLE or EXISTS failed: nothing was checked.
    Unreachable(String),
}

/// Writes probes through HAProxy for a while (until `node` is a replica, at most `T`; or
/// `rounds` probes) and checks that none reaches `node` while it still calls itself master.
/// A probe that could not ask the node counts for nothing: the check fails unless `node` was
/// actually probed (it answered ROLE, and GET when it was master) at least once.
async fn assert_no_writes_on(stack: &Stack, node: u8, until_replica: bool, rounds: u32) {
    let mut probed = 0u32;
    let mut unreachable = Vec::new();
    let mut i = 0u32;
    loop {
        i += 1;
        let key = format!("probe:{node}:{i}:{}", rand_suffix());
        stack
            .write(&key, "p")
            .await
            .expect("a write through HAProxy");
        // Asked inside the node's container: an isolated node has no published port left.
        let seen = probe_node(stack, node, &key).await;
        match &seen {
            Probed::Master { had_write } => {
                probed += 1;
                assert!(
                    !had_write,
                    "redis-{node} (not the Sentinels' master) received the write {key}: split brain"
                );
            }
            Probed::Replica => probed += 1,
            Probed::Unreachable(why) => unreachable.push(why.clone()),
        }
        let done = if until_replica {
            seen == Probed::Replica
        } else {
            i >= rounds
        };
        if done {
            break;
        }
        assert!(
            i < 400,
            "redis-{node} never became a replica (last probe {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        probed > 0,
        "the split-brain check never reached redis-{node} ({i} probes, all failed: {:?})",
        &unreachable[..unreachable.len().min(5)]
    );
}

/// One probe of `node` for `key`: ROLE, EXISTS, ROLE. Only a node that was master before
/// and after the read proves anything about the key: one demoted in between may hold it by
/// replication from the real master.
async fn probe_node(stack: &Stack, node: u8, key: &str) -> Probed {
    let before = match stack.role_inside(node).await {
        Ok(role) => role,
        Err(e) => return Probed::Unreachable(format!("ROLE: {e}")),
    };
    if before == "slave" {
        return Probed::Replica;
    }
    if before != "master" {
        return Probed::Unreachable(format!("role {before}"));
    }
    let had_write = match stack.has_key_inside(node, key).await {
        Ok(v) => v,
        Err(e) => return Probed::Unreachable(e),
    };
    match stack.role_inside(node).await {
        Ok(after) if after == "master" => Probed::Master { had_write },
        Ok(after) if after == "slave" => Probed::Replica,
        Ok(after) => Probed::Unreachable(format!("role {after}")),
        Err(e) => Probed::Unreachable(format!("ROLE: {e}")),
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker: tests/run.sh runs it (--run-ignored ignored-only)"]
async fn stack_survives_kill_pause_isolate_and_tears_down() {
    refuse_skip_under_ci();
    let t0 = std::time::Instant::now();
    let stack = Stack::deploy(StackOptions {
        dns: Some(SILENT_DNS.to_owned()),
        ..StackOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("[{:?}] deployed", t0.elapsed());

    // ---- the first kill after the fresh deploy, with a client writing through HAProxy: the
    // Sentinels fail over before the swarm restarts the task (down-after + 5 s later), the
    // task comes back as a replica, and every write acknowledged after the kill is on the new
    // master (none taken by the restarted task as a master the Sentinels still named).
    let m = stack.agreed_master(T).await.expect("an agreed master");
    stack.write("before-kill", "1").await.expect("write");
    let old = stack.running_container(m).await.expect("master container");
    let writer = stack
        .writing("kill-writer", Duration::from_millis(5), 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stack.chaos(ChaosAction::Kill, m).await.expect("kill");
    let killed = std::time::Instant::now();
    let new = wait_failover_from(&stack, m).await;
    wait_new_task(&stack, m, &old).await;
    wait_replica(&stack, m).await;
    assert_eq!(stack.agreed_master(T).await.expect("agreement"), new);
    let records = writer.finish().await;
    let after: Vec<String> = records
        .iter()
        .filter(|r| r.acked && r.started > killed)
        .map(|r| r.key.clone())
        .collect();
    assert!(
        !after.is_empty(),
        "no write was acknowledged after the kill"
    );
    let lost = missing_keys(stack.redis_port(new), stack.password(), &after)
        .await
        .expect("MGET on the new master");
    assert!(
        lost.is_empty(),
        "{} of {} writes acknowledged after the kill are not on the new master redis-{new} \
         (first: {:?}): acknowledged by the killed node's restarted task, then discarded",
        lost.len(),
        after.len(),
        lost.first()
    );
    assert_eq!(
        stack.read_node(new, "before-kill").await.expect("read"),
        Some("1".to_owned())
    );
    eprintln!(
        "[{:?}] kill: redis-{m} -> redis-{new}, redis-{m} back as replica, {} writes \
         acknowledged after the kill, none lost",
        t0.elapsed(),
        after.len()
    );

    // ---- pause the master: failover; unpaused, it rejoins as a replica and gets no writes.
    let m = new;
    stack.chaos(ChaosAction::Pause, m).await.expect("pause");
    let new = wait_failover_from(&stack, m).await;
    stack.chaos(ChaosAction::Unpause, m).await.expect("unpause");
    assert_no_writes_on(&stack, m, true, 0).await;
    assert_eq!(stack.agreed_master(T).await.expect("agreement"), new);
    eprintln!(
        "[{:?}] pause: redis-{m} -> redis-{new}, redis-{m} back as replica",
        t0.elapsed()
    );

    // ---- isolate the master: failover; the isolated node (still master in its own eyes,
    // reachable on its published port) never receives a write; heal replaces its task.
    let m = new;
    let old = stack.running_container(m).await.expect("master container");
    stack.chaos(ChaosAction::Isolate, m).await.expect("isolate");
    let new = wait_failover_from(&stack, m).await;
    assert_eq!(stack.agreed_master(T).await.expect("agreement"), new);
    assert_no_writes_on(&stack, m, false, 20).await;
    stack.chaos(ChaosAction::Heal, m).await.expect("heal");
    wait_new_task(&stack, m, &old).await;
    wait_replica(&stack, m).await;
    assert_eq!(stack.agreed_master(T).await.expect("agreement"), new);
    eprintln!(
        "[{:?}] isolate: redis-{m} -> redis-{new}, healed",
        t0.elapsed()
    );

    // ---- a graceful stop by a rolling service update of the master's Redis: the swarm takes
    // the task's name out of DNS before the SIGTERM, and the master hands over all the same
    // (the coordinator's `switchover done`, not the crash failover), nothing acknowledged is
    // lost, and its new task is a replica. At rest first: a node still starting (the healed
    // one's name is published once its task is healthy) is one the switchover cannot take out
    // of the Sentinels' choice, and the handover is refused (the crash failover follows).
    assert_eq!(stack.wait_at_rest(T).await.expect("at rest"), new);
    let m = new;
    let old = stack.running_container(m).await.expect("master container");
    let writer = stack
        .writing("update-writer", Duration::from_millis(5), 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let from_ms = redis_ha_common::time::now_ms();
    let updated = std::time::Instant::now();
    stack.replace_task(m).await.expect("docker service update");
    let new = wait_failover_from(&stack, m).await;
    wait_new_task(&stack, m, &old).await;
    wait_replica(&stack, m).await;
    let records = writer.finish().await;
    let events = stack.events_json().await.expect("redis-ha events");
    assert!(
        switchover_done_since(&events, from_ms).is_some(),
        "redis-{m} stopped without handing over: {:?}",
        switchover_event_since(&events, from_ms)
    );
    let acked: Vec<String> = records
        .iter()
        .filter(|r| r.acked && r.started > updated)
        .map(|r| r.key.clone())
        .collect();
    let lost = missing_keys(stack.redis_port(new), stack.password(), &acked)
        .await
        .expect("MGET on the new master");
    assert!(
        lost.is_empty(),
        "{} of {} writes acknowledged during the service update are not on the new master          redis-{new} (first: {:?})",
        lost.len(),
        acked.len(),
        lost.first()
    );
    eprintln!(
        "[{:?}] service update: redis-{m} handed over to redis-{new}, {} writes acknowledged          meanwhile, none lost",
        t0.elapsed(),
        acked.len()
    );

    // ---- teardown leaves nothing of the stack behind.
    stack.teardown().await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("[{:?}] torn down", t0.elapsed());
}

/// Crash failover on the swarm (down-after 5000, the default): the killed master container's
/// death (Docker's `die` event, the agents have the Docker socket; or its address refusing
/// connections until its network namespace is gone) and the agents' watches make the coordinator
/// ask a Sentinel at once, after the ballot that keeps the other Sentinels from a failover of
/// their own (one failover); a paused master is left to Sentinel's down-after (no crash
/// failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker: tests/run.sh runs it (--run-ignored ignored-only)"]
async fn stack_crash_is_failed_over_without_waiting_for_down_after() {
    refuse_skip_under_ci();
    let t0 = std::time::Instant::now();
    let stack = Stack::deploy(StackOptions {
        down_after_ms: 5000,
        ..StackOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("[{:?}] deployed at down-after 5000", t0.elapsed());
    let crash_events = |evs: &[serde_json::Value]| -> Vec<String> {
        evs.iter()
            .filter(|e| e["kind"] == "crash-failover")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    };

    // ---- kill: the crash failover, accepted, with the container's death as the evidence.
    let m = stack.agreed_master(T).await.expect("an agreed master");
    stack.write("before-crash", "1").await.expect("write");
    let old = stack.running_container(m).await.expect("master container");
    let killed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    stack.chaos(ChaosAction::Kill, m).await.expect("kill");
    let new = wait_failover_from(&stack, m).await;
    let evs = poll(T, || async {
        let evs = stack.events_json().await?;
        if crash_events(&evs)
            .iter()
            .any(|m| m.contains("accepted by Sentinel"))
        {
            Ok(evs)
        } else {
            Err(format!(
                "no accepted crash failover yet: {:?}",
                crash_events(&evs)
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the crash failover: {e}"));
    assert!(
        crash_events(&evs)
            .iter()
            .any(|m| m.contains("container died") || m.contains("connection refused")),
        "the evidence is the container's death (Docker's die event, or its address refusing \
         while the dead container's network namespace is torn down): {:?}",
        crash_events(&evs)
    );
    // One failover: the ballot kept the other Sentinels from starting their own (a `+odown` of
    // the killed master may still come: detection, not a failover). Events the agents relayed
    // after the kill: at most one `+selected-slave` (one leader got as far as picking a
    // replica; an aborted forced failover that was asked again does not), every
    // `+switch-master` naming the new master.
    let sentinel_events: Vec<String> = evs
        .iter()
        .filter(|e| e["kind"] == "sentinel")
        .filter(|e| e["at_ms"].as_i64().unwrap_or(0) >= killed_at_ms)
        .filter_map(|e| e["message"].as_str())
        .map(str::to_owned)
        .collect();
    let tries = sentinel_events
        .iter()
        .filter(|m| m.starts_with("+selected-slave"))
        .count();
    assert!(
        tries <= 1,
        "more than one failover for one crash: {sentinel_events:?}"
    );
    let new_addr = format!("redis-{new} 900{new}");
    assert!(
        sentinel_events
            .iter()
            .filter(|m| m.starts_with("+switch-master"))
            .all(|m| m.ends_with(&new_addr)),
        "a Sentinel switched elsewhere than redis-{new}: {sentinel_events:?}"
    );
    wait_new_task(&stack, m, &old).await;
    wait_replica(&stack, m).await;
    assert_eq!(stack.agreed_master(T).await.expect("agreement"), new);
    assert_eq!(
        stack.read_node(new, "before-crash").await.expect("read"),
        Some("1".to_owned())
    );
    eprintln!(
        "[{:?}] crash: redis-{m} -> redis-{new} (crash failover)",
        t0.elapsed()
    );

    // ---- pause: no crash failover; Sentinel's down-after does it.
    let crashes_before = crash_events(&stack.events_json().await.expect("events")).len();
    let m = new;
    stack.chaos(ChaosAction::Pause, m).await.expect("pause");
    let new = wait_failover_from(&stack, m).await;
    stack.chaos(ChaosAction::Unpause, m).await.expect("unpause");
    assert_eq!(
        crash_events(&stack.events_json().await.expect("events")).len(),
        crashes_before,
        "a paused master is no crash"
    );
    assert_no_writes_on(&stack, m, true, 0).await;
    eprintln!(
        "[{:?}] pause: redis-{m} -> redis-{new} (Sentinel)",
        t0.elapsed()
    );

    stack.teardown().await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("[{:?}] torn down", t0.elapsed());
}

/// Exposure (issue #11 item 6) and secrets on the real stack, deployed as `deploy/up.sh` does
/// by default (no Redis or Sentinel port on the host): from a container attached to the client
/// network only, HAProxy's 9000 answers and nothing else does (no Redis, Sentinel,
/// coordinator, metrics endpoint, HAProxy runtime API or stats), by name or by any address of
/// the stack's containers; on the host only HAProxy's port (and the gRPC port the test asks
/// for) is published; the application user writes through 9000 and may not reconfigure; no
/// secret is in a Docker config object, a service's spec or logs, or a process's command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker: tests/run.sh runs it (--run-ignored ignored-only)"]
async fn stack_exposes_only_haproxy_and_leaks_no_secret() {
    refuse_skip_under_ci();
    let stack = Stack::deploy(StackOptions {
        node_ports: false,
        ..StackOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // ---- the client network: by name.
    let internal_ports: [u16; 12] = [
        9001, 9002, 9003, 19001, 19002, 19003, 50051, 9121, 9122, 9123, 9999, 8404,
    ];
    // HAProxy's client ports: the master endpoint and the read endpoint.
    let mut targets = vec!["haproxy:9000".to_owned(), "haproxy:9010".to_owned()];
    for name in [
        "redis-1",
        "redis-2",
        "redis-3",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
        "coordinator",
        "agent-1",
        "haproxy-reloader",
        "haproxy",
        "haproxy-runtime",
    ] {
        targets.extend(internal_ports.iter().map(|p| format!("{name}:{p}")));
    }
    // ---- and by address: every address of every container of the stack, on every network.
    let addrs = stack.container_addresses().await.expect("addresses");
    assert!(
        addrs.iter().any(|(n, _)| n.ends_with("_internal")),
        "no container on the internal network: {addrs:?}"
    );
    for (net, ip) in &addrs {
        // On the client network (HAProxy's address) only its frontend may answer; on the
        // others nothing is reachable from the client network at all.
        let _ = net;
        targets.extend(
            internal_ports
                .iter()
                .chain(&[9000, 9010])
                .map(|p| format!("{ip}:{p}")),
        );
    }
    let mut probes = stack
        .probe_from("client", &targets)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client_haproxy: Vec<String> = addrs
        .iter()
        .filter(|(n, _)| n.ends_with("_client"))
        .flat_map(|(_, ip)| [format!("{ip}:9000"), format!("{ip}:9010")])
        .collect();
    assert!(
        !client_haproxy.is_empty(),
        "HAProxy has no client address: {addrs:?}"
    );
    let mut expected: Vec<&str> = vec!["haproxy:9000", "haproxy:9010"];
    expected.extend(client_haproxy.iter().map(String::as_str));
    // What must answer is probed again until it does (a probe's timeout is a wall clock a
    // loaded host can miss); what must not answer has had its chance above.
    for attempt in 1..=5 {
        let silent: Vec<String> = expected
            .iter()
            .filter(|t| !probes.iter().any(|p| p.ours && p.target == **t))
            .map(|t| (*t).to_owned())
            .collect();
        if silent.is_empty() {
            break;
        }
        eprintln!("probe {attempt}: no answer yet from {silent:?}, probing them again");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let again = stack
            .probe_from("client", &silent)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for p in again {
            if let Some(old) = probes.iter_mut().find(|o| o.target == p.target) {
                *old = p;
            }
        }
    }
    let open: Vec<&str> = probes
        .iter()
        .filter(|p| p.ours)
        .map(|p| p.target.as_str())
        .collect();
    let mut open_sorted = open.clone();
    open_sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        open_sorted,
        expected,
        "from the client network only HAProxy's 9000 and 9010 may answer ({} probed: {:?})",
        probes.len(),
        probes
            .iter()
            .filter(|p| p.ours)
            .map(|p| format!("{} {:?}", p.target, String::from_utf8_lossy(&p.reply)))
            .collect::<Vec<_>>()
    );

    // ---- the host: HAProxy's port (and the gRPC port the tests publish), no node port.
    for port in (1..=3u16)
        .map(|n| stack.opts.base_port + n)
        .chain((1..=3u16).map(|n| stack.opts.base_port + 10000 + n))
    {
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err(),
            "port {port} is published on the host"
        );
    }

    // ---- the application user through 9000: data, no reconfiguration.
    let app = stack.secret("redis_app_password").expect("app password");
    let set = {
        let mut c = redis::cmd("SET");
        c.arg("exposure").arg("1");
        c
    };
    let _: String = redis_ha_testkit::client::query_as(stack.proxy_port(), "app", &app, &set)
        .await
        .expect("the application writes through 9000");
    let config = redis_ha_testkit::client::query_as::<redis::Value>(
        stack.proxy_port(),
        "app",
        &app,
        redis::cmd("CONFIG").arg("GET").arg("maxmemory"),
    )
    .await;
    assert_eq!(
        config
            .err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("NOPERM"),
        "the application user may run CONFIG"
    );

    // ---- no secret leaks.
    let secrets: Vec<String> = SECRET_FILES
        .iter()
        .map(|f| stack.secret(f).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    // Every user's, the operator's, the Sentinels' own and the coordinator's.
    assert_eq!(secrets.len(), 8);
    let configs = stack.config_objects().await.expect("configs");
    assert!(configs.len() >= 5, "{} config objects", configs.len());
    let services = stack.service_logs_and_specs().await.expect("services");
    let mut cmdlines = String::new();
    for pid in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(c) = std::fs::read(pid.path().join("cmdline")) {
            cmdlines.push_str(&String::from_utf8_lossy(&c));
            cmdlines.push('\n');
        }
    }
    for (i, secret) in secrets.iter().enumerate() {
        let name = SECRET_FILES[i];
        for (id, text) in &configs {
            assert!(
                !text.contains(secret.as_str()),
                "{name} in the config object {id}"
            );
        }
        assert!(
            !services.contains(secret.as_str()),
            "{name} in a service's spec or logs"
        );
        assert!(
            !cmdlines.contains(secret.as_str()),
            "{name} on a command line"
        );
    }

    stack.teardown().await.unwrap_or_else(|e| panic!("{e}"));
}
