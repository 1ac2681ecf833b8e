//! The switchover (`Switchover`, `redis-ha switchover`) on real Redis, Sentinel and HAProxy
//! from the shipped configuration, with the coordinator, the agents and the reloader: a writer
//! at full speed through HAProxy loses no acknowledged write, the target becomes master and
//! the old master its replica; `--to` picks the node; a target that cannot catch up within
//! `--max-pause` aborts it with the master unpaused and still master (the CLI exits 1 and says
//! why); only the operator may ask.

use std::process::Command;
use std::time::{Duration, Instant};

use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{SwitchoverRequest, SwitchoverResponse};
use redis_ha_tests::binaries::{binary, CLI_BIN};
use redis_ha_tests::haproxy::{Haproxy, ReloaderTask, WriteMode, WriteRecord, Writer};
use redis_ha_tests::kit::client;
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, READY_TIMEOUT};
use redis_ha_tls::{ClientTls, Identity};
use tonic::transport::Channel;
use tonic::Code;

/// Dropped in field order: the reloader stops before HAProxy, both before the cluster.
struct Stack {
    reloader: Option<ReloaderTask>,
    haproxy: Haproxy,
    cluster: Cluster,
}

/// Cluster (ACL users on, as shipped) + coordinator + agents at rest with node 1 as master,
/// HAProxy and its reloader routing to it.
async fn stack() -> Stack {
    let mut cluster = Cluster::start(ClusterOptions {
        password: Some("switchover-acl-pw".into()),
        ..ClusterOptions::default()
    })
    .await;
    cluster.start_all_sidecars().await;
    cluster.wait_steady_topology(1).await;
    let haproxy = cluster.start_haproxy().await;
    let reloader = ReloaderTask::start(cluster.reloader_config(&haproxy));
    haproxy.wait_routed_to(cluster.node(1).port()).await;
    Stack {
        reloader: Some(reloader),
        haproxy,
        cluster,
    }
}

/// A client that waits as long as a switchover may take (the Sentinels' reading of the
/// priorities: up to 25 s).
fn long_client(cluster: &Cluster, tls: &ClientTls) -> CoordinatorClient<Channel> {
    let endpoint = tls
        .endpoint(&cluster.coordinator_url())
        .unwrap_or_else(|e| panic!("endpoint: {e}"))
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(90));
    CoordinatorClient::new(endpoint.connect_lazy())
}

async fn switchover(
    cluster: &Cluster,
    tls: &ClientTls,
    to: &str,
    max_pause_ms: u64,
) -> Result<SwitchoverResponse, tonic::Status> {
    long_client(cluster, tls)
        .switchover(SwitchoverRequest {
            master_group: cluster.group().to_owned(),
            to: to.to_owned(),
            max_pause_ms,
            away_from: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// A writer through HAProxy as fast as acknowledgements come (one connection, a new one after
/// an error), once it has some writes acknowledged.
async fn full_speed_writer(haproxy: &Haproxy, prefix: &str) -> Writer {
    let started = Instant::now();
    let writer = Writer::start_with_password(
        haproxy.frontend_port(),
        haproxy.client_password().map(str::to_owned),
        prefix,
        WriteMode::Persistent,
        Duration::ZERO,
    );
    wait_acked_since(&writer, started, 200).await;
    writer
}

async fn wait_acked_since(writer: &Writer, since: Instant, n: usize) {
    wait_until(
        &format!("{n} writes acknowledged through HAProxy"),
        READY_TIMEOUT,
        || async move {
            let got = writer.count(|r| r.acked && r.started >= since);
            if got >= n {
                Ok(())
            } else {
                Err(format!("{got} so far"))
            }
        },
    )
    .await;
}

/// The acknowledged writes missing on node `i`, read there in batches (MGET).
async fn missing_on(cluster: &Cluster, i: usize, records: &[WriteRecord]) -> Vec<String> {
    let node = cluster.node(i);
    let mut con = client::connect(node.port(), node.password())
        .await
        .unwrap_or_else(|e| panic!("node {i}: {e}"));
    let acked = records.iter().filter(|r| r.acked).map(|r| r.key.as_str());
    client::missing_keys(&mut con, acked)
        .await
        .unwrap_or_else(|e| panic!("MGET on node {i}: {e}"))
}

/// The errors the writer saw, as (error, the port its connection had reached).
fn errors(records: &[WriteRecord]) -> Vec<(String, Option<u16>)> {
    records
        .iter()
        .filter(|r| !r.acked)
        .map(|r| (r.error.clone().unwrap_or_default(), r.port))
        .collect()
}

/// The node (1-based) with the address `addr`.
fn index(cluster: &Cluster, addr: &str) -> usize {
    cluster
        .node_index(addr)
        .unwrap_or_else(|| panic!("{addr} is no node of the cluster"))
}

/// Waits until node `i` is master by the Sentinels, its own word, the topology and HAProxy,
/// and every other node a synced replica of it.
async fn wait_settled_on(s: &mut Stack, i: usize) {
    let addr = s.cluster.node(i).addr();
    s.cluster.wait_steady_topology(i).await;
    // The coordinator publishes a corroborated promotion before the Sentinels announce it.
    let cluster = &s.cluster;
    wait_until(
        &format!("the Sentinels to name node {i}"),
        READY_TIMEOUT,
        || async move {
            match cluster.sentinel_master_node().await {
                Ok(m) if m == i => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    s.cluster.wait_replicas_synced(i).await;
    s.haproxy.wait_routed_to(s.cluster.node(i).port()).await;
    let t = s.cluster.topology().await.expect("topology");
    assert_eq!(t.master_address, addr);
}

async fn replica_priority(cluster: &Cluster, i: usize) -> String {
    cluster
        .node(i)
        .info("replication")
        .await
        .unwrap_or_else(|e| panic!("INFO on node {i}: {e}"))
        .get("slave_priority")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchovers_lose_no_acknowledged_write_and_leave_the_old_master_a_replica() {
    let mut s = stack().await;
    let operator = s.cluster.operator_tls().clone();
    let writer = full_speed_writer(&s.haproxy, "sw").await;

    // 1. No target given: the most caught-up replica (both are; the smallest id).
    let before = Instant::now();
    let done = switchover(&s.cluster, &operator, "", 1000)
        .await
        .unwrap_or_else(|e| panic!("switchover refused: {e}"));
    assert_eq!(done.old_master, s.cluster.node(1).addr(), "{done:?}");
    let first = index(&s.cluster, &done.new_master);
    assert_ne!(first, 1);
    // The Sentinels promoted exactly that node, and the old master follows it.
    wait_settled_on(&mut s, first).await;
    s.cluster.wait_replica_of(1, first).await;
    assert!(done.epoch > 0 && !done.sentinel.is_empty(), "{done:?}");
    wait_acked_since(&writer, Instant::now(), 200).await;

    // 2. --to the node that was not chosen: that one.
    let third = (2..=3).find(|&i| i != first).expect("a third node");
    let done2 = switchover(&s.cluster, &operator, &format!("node-{third}"), 1000)
        .await
        .unwrap_or_else(|e| panic!("switchover --to node-{third} refused: {e}"));
    assert_eq!(done2.new_master, s.cluster.node(third).addr(), "{done2:?}");
    assert_eq!(done2.old_master, s.cluster.node(first).addr(), "{done2:?}");
    wait_settled_on(&mut s, third).await;
    s.cluster.wait_replica_of(first, third).await;
    wait_acked_since(&writer, Instant::now(), 200).await;
    let records = writer.finish().await;

    // Nothing acknowledged is missing on the last master (which holds every write: each
    // master caught up its successor before handing over).
    let acked = records.iter().filter(|r| r.acked).count();
    let missing = missing_on(&s.cluster, third, &records).await;
    assert!(
        missing.is_empty(),
        "{} of {acked} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Acknowledged by all three masters in turn, and by nothing else.
    for i in [1, first, third] {
        let port = s.cluster.node(i).port();
        assert!(
            records
                .iter()
                .any(|r| r.acked && r.port == Some(port) && r.started >= before),
            "no write acknowledged by node {i}"
        );
    }
    // Per switchover at most the cut of the connection to the old master and one reconnect
    // that met the reloader's fencing order (old server in maint before the new one is
    // ready); never a refusal by the new master (NOREPLICAS) or by a replica (READONLY).
    let errs = errors(&records);
    assert!(errs.len() <= 2 * 2, "{} errors: {errs:?}", errs.len());
    assert!(
        errs.iter()
            .all(|(e, _)| !e.contains("NOREPLICAS") && !e.contains("READONLY")),
        "{errs:?}"
    );
    // The replicas' priorities are back (a master's INFO does not show one).
    for i in (1..=3).filter(|&i| i != third) {
        assert_eq!(replica_priority(&s.cluster, i).await, "100", "node {i}");
    }
    // The events say so.
    let events = s.cluster.events().await;
    let noted = events
        .iter()
        .filter(|e| e.kind == "switchover" && e.message.starts_with("switchover done"))
        .count();
    assert_eq!(noted, 2, "{events:?}");
    if let Some(r) = s.reloader.take() {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_cannot_catch_up_aborts_with_the_master_unpaused_and_still_master() {
    let mut s = stack().await;
    let writer = full_speed_writer(&s.haproxy, "abort").await;
    // Node 2 stops applying its replication stream (a replica paused for writes does not
    // apply its master's), while it answers INFO and Sentinel keeps it promotable: it falls
    // behind the writer at once and stays behind.
    s.cluster
        .node(2)
        .query::<String>(redis::cmd("CLIENT").arg("PAUSE").arg(120_000).arg("WRITE"))
        .await
        .expect("CLIENT PAUSE on node 2");

    // Through the operator's command line, as an operator would.
    let certs = s.cluster.certs();
    let op = Identity::Operator;
    let out = Command::new(binary(CLI_BIN))
        .arg("--coordinator")
        .arg(s.cluster.coordinator_url())
        .arg("--ca")
        .arg(certs.ca())
        .arg("--cert")
        .arg(certs.cert(&op))
        .arg("--key")
        .arg(certs.key(&op))
        .args(["switchover", "--to", "2", "--max-pause", "400"])
        .output()
        .expect("run redis-ha");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout {:?} stderr {stderr}",
        out.stdout
    );
    assert!(stderr.contains("ABORTED"), "{stderr}");
    assert!(stderr.contains("bytes behind"), "{stderr}");
    assert!(
        stderr.contains("unpaused") && stderr.contains("stays master"),
        "{stderr}"
    );

    // Node 1 is still master everywhere and takes writes again through HAProxy.
    wait_acked_since(&writer, Instant::now(), 200).await;
    s.cluster
        .node(2)
        .query::<String>(redis::cmd("CLIENT").arg("UNPAUSE"))
        .await
        .expect("CLIENT UNPAUSE on node 2");
    wait_settled_on(&mut s, 1).await;
    let records = writer.finish().await;
    let port1 = s.cluster.node(1).port();
    assert!(
        records
            .iter()
            .filter(|r| r.acked)
            .all(|r| r.port == Some(port1)),
        "a write was acknowledged by another node"
    );
    let missing = missing_on(&s.cluster, 1, &records).await;
    assert!(missing.is_empty(), "{} lost", missing.len());
    // Node 3's priority is back; the coordinator recorded the abort.
    assert_eq!(replica_priority(&s.cluster, 3).await, "100");
    let events = s.cluster.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.kind == "switchover" && e.message.starts_with("switchover aborted")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_operator_may_switch_over_and_refusals_touch_nothing() {
    let mut s = stack().await;
    let certs = s.cluster.certs();
    for who in [
        Identity::Reloader,
        redis_ha_testkit::tls::agent("node-1"),
        redis_ha_testkit::tls::agent("node-2"),
    ] {
        let e = switchover(&s.cluster, &certs.client(&who), "", 1000)
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e}");
    }
    let operator = s.cluster.operator_tls().clone();
    // Refused before anything is touched: an unknown node, the master itself, a pause out
    // of bounds.
    for (to, pause, want) in [
        ("node-9", 1000, "no node"),
        ("node-1", 1000, "master already"),
        ("", 10, "--max-pause"),
    ] {
        let e = switchover(&s.cluster, &operator, to, pause)
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::FailedPrecondition, "{to}: {e}");
        assert!(e.message().contains(want), "{to}: {e}");
    }
    s.cluster.wait_steady_topology(1).await;
    for i in 2..=3 {
        assert_eq!(replica_priority(&s.cluster, i).await, "100");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_master_hands_over_first_and_to_a_replica_just_stops() {
    use nix::sys::signal::Signal;
    let mut s = stack().await;
    s.cluster.restart_under_redis_run(2, 1).await;
    s.cluster.restart_under_redis_run(3, 1).await;
    let writer = full_speed_writer(&s.haproxy, "stop").await;

    // A replica: it just stops; the master and the topology's master stay, no switchover.
    s.cluster.node(3).signal(Signal::SIGTERM);
    let status = s.cluster.node_mut(3).wait_exit(READY_TIMEOUT).await;
    assert!(status.is_some_and(|st| st.success()), "node 3: {status:?}");
    assert!(
        s.cluster.node(3).log_tail(20).contains("not the master"),
        "{}",
        s.cluster.node(3).log_tail(20)
    );
    assert_eq!(s.cluster.sentinel_master_node().await, Ok(1));
    s.cluster.node_mut(3).start();
    s.cluster.wait_replica_of(3, 1).await;
    s.cluster.wait_steady_topology(1).await;

    // Node 2 made master (a switchover), then stopped: it hands its role over first.
    let operator = s.cluster.operator_tls().clone();
    switchover(&s.cluster, &operator, "node-2", 1000)
        .await
        .unwrap_or_else(|e| panic!("switchover to node-2: {e}"));
    wait_settled_on(&mut s, 2).await;
    wait_acked_since(&writer, Instant::now(), 200).await;
    s.cluster.node(2).signal(Signal::SIGTERM);
    let status = s
        .cluster
        .node_mut(2)
        .wait_exit(Duration::from_secs(90))
        .await;
    assert!(status.is_some_and(|st| st.success()), "node 2: {status:?}");
    let log = s.cluster.node(2).log_tail(40);
    assert!(log.contains("master handed over"), "{log}");
    // Another node is master by every account, HAProxy routes there, writes go on.
    let t = s
        .cluster
        .wait_topology("a master other than node 2", READY_TIMEOUT, |t| {
            t.master_confirmed && !t.master_address.is_empty() && t.master_node != "node-2"
        })
        .await;
    let new = index(&s.cluster, &t.master_address);
    s.haproxy.wait_routed_to(s.cluster.node(new).port()).await;
    wait_acked_since(&writer, Instant::now(), 200).await;
    let records = writer.finish().await;
    // Settled: the Sentinels name it too and the other node follows it.
    let other = (1..=3).find(|&i| i != 2 && i != new).expect("a third node");
    s.cluster.wait_replica_of(other, new).await;
    wait_until(
        "the Sentinels to name the new master",
        READY_TIMEOUT,
        || async {
            match s.cluster.sentinel_master_node().await {
                Ok(m) if m == new => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let missing = missing_on(&s.cluster, new, &records).await;
    let acked = records.iter().filter(|r| r.acked).count();
    assert!(
        missing.is_empty(),
        "{} of {acked} acknowledged writes lost",
        missing.len()
    );
    let events = s.cluster.events().await;
    let done = events
        .iter()
        .filter(|e| e.kind == "switchover" && e.message.starts_with("switchover done"))
        .count();
    // The operator's, then the stopping master's.
    assert_eq!(done, 2, "{events:?}");
}
