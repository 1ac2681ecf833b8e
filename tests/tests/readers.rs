//! The read endpoint (HAProxy's second port, the shipped config's `redis_read` backend) driven
//! by the reloader from the coordinator's readers, on real Redis, Sentinel and HAProxy
//! processes: reads reach the replicas, a paused replica (SIGSTOP) is taken out and put back
//! once it answers again, a replica whose acknowledgements stop (its replication link cut with
//! iptables) is taken out for its lag while it still answers, with no replica left the master
//! serves reads, a reloader that loses the coordinator falls back to the master, and after a
//! failover the new master's replicas serve reads.

use std::collections::BTreeSet;

use redis_ha_proto::v1::{Health, Topology};
use redis_ha_tests::haproxy::{Haproxy, ReloaderTask};
use redis_ha_tests::kit::client;
use redis_ha_tests::kit::partition::{self, CutMode, GroupCut};
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, READY_TIMEOUT};

/// Dropped in field order: the reloader stops before HAProxy, both before the cluster.
struct Stack {
    reloader: ReloaderTask,
    haproxy: Haproxy,
    cluster: Cluster,
}

/// Connections per check of where reads go: enough for leastconn's round robin among idle
/// servers to reach every ready one.
const PROBES: usize = 12;

async fn stack() -> Stack {
    // With the ACL users on, as every deployment runs.
    let mut cluster = Cluster::start(ClusterOptions {
        password: Some("readers-acl-pw".into()),
        ..ClusterOptions::default()
    })
    .await;
    cluster.start_all_sidecars().await;
    cluster.wait_steady_topology(1).await;
    let haproxy = cluster.start_haproxy().await;
    // Nothing routed for reads either before the reloader speaks.
    assert_eq!(haproxy.read_routed_port().await, None);
    let reloader = ReloaderTask::start(cluster.reloader_config(&haproxy));
    Stack {
        reloader,
        haproxy,
        cluster,
    }
}

impl Stack {
    fn port(&self, i: usize) -> u16 {
        self.cluster.node(i).port()
    }

    fn addr(&self, i: usize) -> String {
        self.cluster.node(i).addr()
    }

    /// Waits until the coordinator publishes exactly these nodes as readers.
    async fn wait_readers(&mut self, nodes: &[usize]) -> Topology {
        let want: Vec<String> = nodes.iter().map(|&i| self.addr(i)).collect();
        self.cluster
            .wait_topology(
                &format!("the readers to be {want:?}"),
                READY_TIMEOUT,
                move |t| t.readers == want,
            )
            .await
    }

    /// Waits until HAProxy's read backend has exactly the servers `redis-N` of `nodes` ready
    /// (its runtime API), then checks that fresh connections through the read port reach those
    /// nodes and no other, each of them.
    async fn wait_reads_on(&self, nodes: &[usize]) {
        let want: BTreeSet<String> = nodes.iter().map(|i| format!("redis-{i}")).collect();
        let h = &self.haproxy;
        wait_until(
            &format!("the read backend to have {want:?} ready"),
            READY_TIMEOUT,
            || {
                let want = want.clone();
                async move {
                    let ready: BTreeSet<String> =
                        h.read_ready_servers().await?.into_iter().collect();
                    if ready == want {
                        Ok(())
                    } else {
                        Err(format!("ready: {ready:?}"))
                    }
                }
            },
        )
        .await;
        let ports: BTreeSet<u16> = nodes.iter().map(|&i| self.port(i)).collect();
        let seen = self.read_ports().await;
        assert!(
            seen.is_subset(&ports),
            "reads reached {seen:?}, only {ports:?} are ready"
        );
        // leastconn spreads idle connections round robin: every ready server is reached.
        wait_until(
            &format!("reads through the read port to reach each of {ports:?}"),
            READY_TIMEOUT,
            || {
                let ports = ports.clone();
                async move {
                    let seen = self.read_ports().await;
                    if seen == ports {
                        Ok(())
                    } else {
                        Err(format!("reached {seen:?}"))
                    }
                }
            },
        )
        .await;
    }

    /// The nodes (ports) [`PROBES`] fresh connections through the read port reach (a failed
    /// probe reached none).
    async fn read_ports(&self) -> BTreeSet<u16> {
        let mut seen = BTreeSet::new();
        for _ in 0..PROBES {
            // A failed probe reached no node: after a failover Sentinel's reconfiguration of a
            // replica kills its normal clients (CLIENT KILL TYPE normal), a read among them.
            if let Some(port) = self.haproxy.read_routed_port().await {
                seen.insert(port);
            }
        }
        seen
    }

    /// What a read-only client sees through the read port: ROLE's first word.
    async fn read_role(&self) -> String {
        client::role(
            self.haproxy.read_frontend_port(),
            self.haproxy.client_password(),
        )
        .await
        .unwrap_or_else(|e| panic!("ROLE through the read port: {e}"))
    }

    /// The reloader's view of its one HAProxy's read backend: (ready servers, fallback).
    fn reloader_reads(&self) -> (Vec<String>, bool) {
        let st = self.reloader.status();
        let i = st
            .instances
            .values()
            .next()
            .unwrap_or_else(|| panic!("the reloader drives no HAProxy"));
        (i.read_ready.clone(), i.read_fallback)
    }
}

#[tokio::test]
async fn reads_reach_replicas_a_paused_one_is_taken_out_and_the_master_is_the_fallback() {
    let mut s = stack().await;

    // At rest: both replicas serve reads, the master endpoint is untouched.
    let t = s.wait_readers(&[2, 3]).await;
    for n in t.nodes.iter().filter(|n| n.node != "node-1") {
        assert!(n.serves_reads, "{n:?}");
    }
    s.wait_reads_on(&[2, 3]).await;
    s.haproxy.wait_routed_to(s.port(1)).await;
    assert_eq!(s.read_role().await, "slave");
    // A write through the master port is read back through the read port (replication).
    let master_port = s.haproxy.frontend_port();
    let pw = s.haproxy.client_password().map(str::to_owned);
    client::query::<()>(
        master_port,
        pw.as_deref(),
        redis::cmd("SET").arg("readers:key").arg("replicated"),
    )
    .await
    .unwrap_or_else(|e| panic!("SET through the master port: {e}"));
    let read_port = s.haproxy.read_frontend_port();
    wait_until(
        "the write to be readable through the read port",
        READY_TIMEOUT,
        || {
            let pw = pw.clone();
            async move {
                let v: Option<String> = client::query(
                    read_port,
                    pw.as_deref(),
                    redis::cmd("GET").arg("readers:key"),
                )
                .await
                .map_err(|e| e.to_string())?;
                match v.as_deref() {
                    Some("replicated") => Ok(()),
                    other => Err(format!("GET: {other:?}")),
                }
            }
        },
    )
    .await;
    // Writes through the read port are refused by the replica (read-only clients only).
    let refused = client::query::<()>(
        read_port,
        pw.as_deref(),
        redis::cmd("SET").arg("readers:key").arg("nope"),
    )
    .await
    .expect_err("a replica took a write through the read port");
    assert_eq!(refused.code(), Some("READONLY"), "{refused}");
    let (ready, fallback) = s.reloader_reads();
    assert_eq!(ready, ["redis-2", "redis-3"]);
    assert!(!fallback);

    // Node 3 paused: its agent cannot reach it, the master stops hearing its acks; taken out.
    s.cluster.node_mut(3).pause();
    let t = s.wait_readers(&[2]).await;
    assert!(
        !t.nodes.iter().any(|n| n.node == "node-3" && n.serves_reads),
        "{t:?}"
    );
    s.wait_reads_on(&[2]).await;
    // Put back once it answers and acknowledges again.
    s.cluster.node_mut(3).resume();
    s.wait_readers(&[2, 3]).await;
    s.wait_reads_on(&[2, 3]).await;

    // No replica qualifies: the master serves reads.
    s.cluster.node_mut(2).pause();
    s.cluster.node_mut(3).pause();
    let t = s.wait_readers(&[]).await;
    assert_eq!(
        t.master_address,
        s.addr(1),
        "no failover for paused replicas"
    );
    s.wait_reads_on(&[1]).await;
    assert_eq!(s.read_role().await, "master");
    let (ready, fallback) = s.reloader_reads();
    assert_eq!(ready, ["redis-1"]);
    assert!(fallback);
    // And back to the replicas, the master out of the read backend again.
    s.cluster.node_mut(2).resume();
    s.cluster.node_mut(3).resume();
    s.wait_readers(&[2, 3]).await;
    s.wait_reads_on(&[2, 3]).await;
    // The master backend was never touched by any of it.
    assert_eq!(
        s.haproxy.ready_servers().await.unwrap_or_default(),
        ["redis-1"]
    );
}

#[tokio::test]
async fn without_the_coordinator_the_master_serves_reads_until_it_is_back() {
    let mut s = stack().await;
    s.wait_readers(&[2, 3]).await;
    s.wait_reads_on(&[2, 3]).await;

    // Nobody keeps the readers up to date any more: the safe answer is the master.
    s.cluster.stop_coordinator().await;
    s.wait_reads_on(&[1]).await;
    assert!(s.reloader_reads().1, "fallback");
    // The master endpoint still routes (the Sentinels are followed meanwhile).
    s.haproxy.wait_routed_to(s.port(1)).await;

    s.cluster.start_coordinator().await;
    s.wait_readers(&[2, 3]).await;
    s.wait_reads_on(&[2, 3]).await;
    assert_eq!(
        s.reloader_reads(),
        (vec!["redis-2".into(), "redis-3".into()], false)
    );
}

#[tokio::test]
async fn a_replica_whose_acknowledgements_stop_is_taken_out_while_it_still_answers() {
    let mut s = stack().await;
    s.wait_readers(&[2, 3]).await;
    // Node 3 again, in a group of its own: its replication link (its connection to the
    // master's port) can then be cut alone, while its agent, the Sentinels and clients still
    // reach it.
    let gid = partition::cut_group();
    s.cluster.node_mut(3).restart_in_group(gid).await;
    let master = s.port(1);
    s.cluster.node(3).wait_synced_to(master).await;
    s.wait_readers(&[2, 3]).await;
    s.wait_reads_on(&[2, 3]).await;

    // Its packets to the master dropped: its acknowledgements stop, so the master's `lag=` for
    // it grows past read_max_lag_seconds (and the bytes it has not received pile up).
    let cut = GroupCut::cut(gid, master, CutMode::Drop)
        .unwrap_or_else(|e| panic!("cannot cut node 3's replication link: {e}"));
    let t = s.wait_readers(&[2]).await;
    let n3 = t
        .nodes
        .iter()
        .find(|n| n.node == "node-3")
        .unwrap_or_else(|| panic!("no node-3 in {t:?}"));
    assert_eq!(n3.health, Health::Up as i32, "it still answers: {n3:?}");
    // Its lag, or what the lag leads to: the master drops a replica whose acknowledgements
    // stopped (its repl-timeout; seen once on a loaded machine before the lag was read).
    assert!(
        ["lag-seconds", "lag-bytes", "not-seen-by-master"].contains(&n3.read_note.as_str()),
        "taken out for its lag: {n3:?}"
    );
    s.wait_reads_on(&[2]).await;

    // Healed: it acknowledges again and comes back.
    cut.heal()
        .unwrap_or_else(|e| panic!("cannot heal the cut: {e}"));
    s.wait_readers(&[2, 3]).await;
    s.wait_reads_on(&[2, 3]).await;
}

#[tokio::test]
async fn after_a_failover_the_replicas_of_the_new_master_serve_reads() {
    let mut s = stack().await;
    s.wait_readers(&[2, 3]).await;
    s.wait_reads_on(&[2, 3]).await;

    s.cluster.node_mut(1).kill();
    let old = s.addr(1);
    let addrs: Vec<String> = (1..=3).map(|i| s.addr(i)).collect();
    // The one replica left: a reader of the new master once the coordinator has published it
    // and the replica replicates from it (never the dead master, never the new master itself).
    let t = s
        .cluster
        .wait_topology(
            "a new master with the remaining replica as its one reader",
            READY_TIMEOUT,
            move |t| {
                let Some(m) = addrs.iter().position(|a| *a == t.master_address) else {
                    return false;
                };
                let other = addrs
                    .iter()
                    .enumerate()
                    .find(|&(i, a)| i != m && *a != old)
                    .map(|(_, a)| a.clone());
                t.master_address != old
                    && t.master_confirmed
                    && t.readers == other.into_iter().collect::<Vec<_>>()
            },
        )
        .await;
    let master = s
        .cluster
        .node_index(&t.master_address)
        .unwrap_or_else(|| panic!("unknown master {}", t.master_address));
    let other = (2..=3)
        .find(|&i| i != master)
        .unwrap_or_else(|| panic!("no replica left beside node {master}"));
    s.wait_reads_on(&[other]).await;
    s.haproxy.wait_routed_to(s.port(master)).await;

    // The old master back as a replica: it serves reads again.
    s.cluster.node_mut(1).restart().await;
    let now = s.cluster.wait_rejoined_as_replica(1).await;
    let mut readers: Vec<usize> = (1..=3).filter(|&i| i != now).collect();
    readers.sort_unstable();
    s.wait_readers(&readers).await;
    s.wait_reads_on(&readers).await;
}
