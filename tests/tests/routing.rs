//! Routing through HAProxy (the shipped config) driven by the reloader, with the real
//! coordinator, agents, Redis and Sentinel processes: failovers, a returning old master,
//! restarts of HAProxy / the reloader / the coordinator, a dead replica.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis_ha_common::time::now_ms;
use redis_ha_proto::v1::{AgentReport, Health, RedisStatus, Role, SentinelEvent, SentinelStatus};
use redis_ha_reloader::decision::Source;
use redis_ha_tests::haproxy::{summary, Haproxy, ReloaderTask, WriteMode, WriteRecord, Writer};
use redis_ha_tests::kit::client;
use redis_ha_tests::sentinel_events::SentinelEvents;
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, READY_TIMEOUT};

/// Dropped in field order: the reloader stops before HAProxy, both before the cluster.
struct Stack {
    reloader: Option<ReloaderTask>,
    haproxy: Haproxy,
    cluster: Cluster,
}

impl Stack {
    fn reloader(&self) -> &ReloaderTask {
        self.reloader
            .as_ref()
            .unwrap_or_else(|| panic!("no reloader running"))
    }

    /// A client connection through HAProxy, held by the test; it answers now.
    async fn held_connection(&self) -> MultiplexedConnection {
        let mut held = self.haproxy.hold_connection().await;
        assert!(client::pongs(&mut held, self.haproxy.frontend_port()).await);
        held
    }

    /// Asserts that `held` still answers: HAProxy did not cut it.
    async fn assert_not_cut(&self, held: &mut MultiplexedConnection) {
        assert!(
            client::pongs(held, self.haproxy.frontend_port()).await,
            "the held connection was cut"
        );
    }
}

/// Cluster + coordinator + agents at rest with node 1 as master, HAProxy, reloader, routed.
async fn stack() -> Stack {
    // With the ACL users on, as every deployment runs.
    let mut cluster = Cluster::start(ClusterOptions {
        password: Some("routing-acl-pw".into()),
        ..ClusterOptions::default()
    })
    .await;
    cluster.start_all_sidecars().await;
    cluster.wait_steady_topology(1).await;
    let haproxy = cluster.start_haproxy().await;
    // Nothing routed before the reloader speaks.
    assert_eq!(haproxy.routed_port().await, None);
    let reloader = ReloaderTask::start(cluster.reloader_config(&haproxy));
    haproxy.wait_routed_to(cluster.node(1).port()).await;
    Stack {
        reloader: Some(reloader),
        haproxy,
        cluster,
    }
}

/// Waits until new connections through HAProxy reach the master the Sentinels name at that
/// moment (right even if they fail over once more); returns its port.
async fn wait_routed_to_sentinel_master(cluster: &Cluster, haproxy: &Haproxy) -> u16 {
    wait_until(
        "HAProxy to route to the Sentinels' master",
        READY_TIMEOUT,
        || async move {
            let i = cluster.sentinel_master_node().await?;
            let port = cluster.node(i).port();
            match haproxy.routed_port().await {
                Some(p) if p == port => Ok(port),
                other => Err(format!(
                    "Sentinels name node {i}, HAProxy routes to {other:?}"
                )),
            }
        },
    )
    .await
}

/// Every write acknowledged by the node at `port` holds its value there.
///
/// Only the writes that node acknowledged: at down-after 1000 ms on a loaded machine the
/// Sentinels sometimes fail a freshly promoted master over once more (redis/redis#8607) while
/// it still takes writes, and what it acknowledged in the last moments before the next
/// promotion is lost by Redis's asynchronous replication, whatever the proxy does.
async fn assert_acked_present(cluster: &Cluster, port: u16, records: &[WriteRecord]) {
    let i = (1..=3)
        .find(|&i| cluster.node(i).port() == port)
        .unwrap_or_else(|| panic!("no node on port {port}"));
    let mine: Vec<&WriteRecord> = records
        .iter()
        .filter(|r| r.acked && r.port == Some(port))
        .collect();
    let others = records
        .iter()
        .filter(|r| r.acked && r.port != Some(port))
        .count();
    if others > 0 {
        eprintln!(
            "note: {others} writes were acknowledged by an earlier master (a second failover \
             happened); only the {} acknowledged by the final master are checked",
            mine.len()
        );
    }
    let mut lost = Vec::new();
    for r in &mine {
        let v: Option<String> = cluster
            .node(i)
            .query(redis::cmd("GET").arg(&r.key))
            .await
            .unwrap_or_else(|e| panic!("GET {} on node {i}: {e}", r.key));
        let want = r.key.rsplit(':').next().map(str::to_owned);
        if v != want {
            lost.push(format!("{} (acked at {} ms)", r.key, r.finished_wall_ms));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} writes acknowledged by node {i} lost: {:?}",
        lost.len(),
        mine.len(),
        &lost[..lost.len().min(20)]
    );
}

/// A writer through `haproxy` every `every_ms`, once it has 20 writes acknowledged.
async fn writing(haproxy: &Haproxy, prefix: &str, mode: WriteMode, every_ms: u64) -> Writer {
    let started = Instant::now();
    let interval = Duration::from_millis(every_ms);
    let writer = Writer::start_with_password(
        haproxy.frontend_port(),
        haproxy.client_password().map(str::to_owned),
        prefix,
        mode,
        interval,
    );
    writer.wait_acked_since(started, 20).await;
    writer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_recover_after_master_sigkill() {
    let mut s = stack().await;
    let old = s.cluster.node(1).addr();
    // Writing in its stride before the kill.
    let writer = writing(&s.haproxy, "kill", WriteMode::Persistent, 5).await;

    let killed_at = Instant::now();
    s.cluster.node_mut(1).kill();
    s.cluster.wait_new_master(&old).await;
    wait_routed_to_sentinel_master(&s.cluster, &s.haproxy).await;
    // Some writes through the proxy after the switch.
    writer.wait_acked_since(Instant::now(), 20).await;
    let records = writer.finish().await;

    let after: Vec<&WriteRecord> = records
        .iter()
        .filter(|r| r.started > killed_at && r.acked)
        .collect();
    assert!(
        !after.is_empty(),
        "no write acknowledged after the kill: {}",
        summary(&records)
    );
    // Every write acknowledged after the kill went to a promoted node.
    let old_port = s.cluster.node(1).port();
    assert!(
        after
            .iter()
            .all(|r| r.port.is_some() && r.port != Some(old_port)),
        "writes after the kill served by the dead master?: {}",
        summary(&records)
    );
    let post: Vec<WriteRecord> = after.into_iter().cloned().collect();
    let port = wait_routed_to_sentinel_master(&s.cluster, &s.haproxy).await;
    assert_acked_present(&s.cluster, port, &post).await;
    let d = s
        .reloader()
        .status()
        .decision
        .unwrap_or_else(|| panic!("no decision"));
    assert!(d.config_epoch >= 1, "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_master_returning_as_master_gets_no_traffic_and_no_write_is_lost() {
    let mut s = stack().await;
    let old = s.cluster.node(1).addr();
    let old_port = s.cluster.node(1).port();
    s.cluster.node_mut(1).kill();
    s.cluster.wait_new_master(&old).await;
    wait_routed_to_sentinel_master(&s.cluster, &s.haproxy).await;

    // A client writing over new connections every few ms while the old master comes back
    // from a config without `replicaof`: it starts as a master with an empty data set.
    let writer = writing(&s.haproxy, "split", WriteMode::NewConnectionEachWrite, 3).await;
    s.cluster.node_mut(1).restart_as_master().await;
    // Until it has been turned into a replica again (fencing by its agent, or its Sentinel),
    // and a while after: a negative check (no connection ever reaches the old master), so it
    // needs an observation window. It is counted in routing decisions, not time: 50 more
    // writes, each over a new connection HAProxy routed after the node rejoined.
    s.cluster.wait_rejoined_as_replica(1).await;
    writer.wait_acked_since(Instant::now(), 50).await;
    let records = writer.finish().await;
    eprintln!("split-brain writer: {}", summary(&records));

    assert!(
        records.iter().all(|r| r.port != Some(old_port)),
        "a connection reached the returning old master: {}",
        summary(&records)
    );
    assert!(
        records.iter().filter(|r| r.acked).count() > 10,
        "{}",
        summary(&records)
    );
    let port = wait_routed_to_sentinel_master(&s.cluster, &s.haproxy).await;
    assert_ne!(port, old_port);
    assert_acked_present(&s.cluster, port, &records).await;
    let i = (1..=3)
        .find(|&i| s.cluster.node(i).port() == port)
        .unwrap_or(0);
    assert_eq!(
        s.haproxy.ready_servers().await.unwrap_or_default(),
        [format!("redis-{i}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_restart_gets_the_state_reapplied() {
    let mut s = stack().await;
    let port = s.cluster.node(1).port();
    s.haproxy.restart().await;
    s.haproxy.wait_routed_to(port).await;
    assert_eq!(
        s.haproxy.ready_servers().await.unwrap_or_default(),
        ["redis-1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_restart_changes_no_routing() {
    let mut s = stack().await;
    let port = s.cluster.node(1).port();
    // A long-lived client: a restart of the reloader must not cut it.
    let mut held = s.held_connection().await;

    if let Some(r) = s.reloader.take() {
        r.stop().await;
    }
    assert_eq!(s.haproxy.routed_port().await, Some(port));

    let since = Instant::now();
    let cfg = s.cluster.reloader_config(&s.haproxy);
    s.reloader = Some(ReloaderTask::start(cfg));
    s.reloader().wait_converged_since(since).await;
    // Converged by finding HAProxy already right: no command sent.
    assert_eq!(s.reloader().applies(), 0, "{:?}", s.reloader().status());
    assert_eq!(s.haproxy.routed_port().await, Some(port));
    s.assert_not_cut(&mut held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_down_during_a_failover_routing_still_converges() {
    let mut s = stack().await;
    let old = s.cluster.node(1).addr();
    s.cluster.stop_coordinator().await;
    s.cluster.node_mut(1).kill();
    s.cluster.wait_new_master(&old).await;
    wait_routed_to_sentinel_master(&s.cluster, &s.haproxy).await;
    let d = s
        .reloader()
        .status()
        .decision
        .unwrap_or_else(|| panic!("no decision"));
    assert!(matches!(d.source, Source::Sentinel { .. }), "{d:?}");

    // The coordinator comes back: it agrees, and nothing moves.
    s.cluster.start_coordinator().await;
    s.cluster
        .wait_topology_agreeing(
            "the coordinator back with the new master",
            READY_TIMEOUT,
            |t, m| t.master_address == m,
        )
        .await;
    let since = Instant::now();
    s.reloader().wait_converged_since(since).await;
    wait_routed_to_sentinel_master(&s.cluster, &s.haproxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_leaves_routing_untouched() {
    let mut s = stack().await;
    let port = s.cluster.node(1).port();
    let mut held = s.held_connection().await;
    // HAProxy routes as soon as the first plan is applied, a moment before the reloader counts
    // it (a count read at once raced it once under load): converged first.
    s.reloader().wait_converged_since(Instant::now()).await;
    let applies = s.reloader().applies();

    s.cluster.node_mut(3).kill();
    s.cluster
        .wait_topology("node-3 reported down", READY_TIMEOUT, |t| {
            t.nodes
                .iter()
                .any(|n| n.node == "node-3" && n.health() != Health::Up)
        })
        .await;
    let since = Instant::now();
    s.reloader().wait_converged_since(since).await;
    assert_eq!(
        s.reloader().applies(),
        applies,
        "{:?}",
        s.reloader().status()
    );
    assert_eq!(
        s.haproxy.ready_servers().await.unwrap_or_default(),
        ["redis-1"]
    );
    assert_eq!(s.haproxy.routed_port().await, Some(port));
    s.assert_not_cut(&mut held).await;
}

/// With `min-replicas-to-write 1` (shipped) the promoted master takes writes only once a replica
/// follows it: the remaining replica's agent re-points it at the promoted master, so a write
/// through HAProxy is acknowledged by the new master before any Sentinel re-points a replica
/// (`+slave-reconf-sent`) or announces the switch (`+switch-master`), and nothing acknowledged
/// after the kill is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_replica_follows_the_promotion_before_sentinel_reconfigures_it() {
    const SENTINEL_RECONF: [&str; 2] = ["+slave-reconf-sent", "+switch-master"];
    let mut s = stack().await;
    let events = SentinelEvents::subscribe(&s.cluster).await;
    let old = s.cluster.node(1).addr();
    let writer = writing(&s.haproxy, "follow", WriteMode::NewConnectionEachWrite, 5).await;

    let killed_at = Instant::now();
    s.cluster.node_mut(1).kill();
    let (new, _) = s.cluster.wait_new_master_node(&old).await;
    let remaining = if new == 2 { 3 } else { 2 };
    let new_port = s.cluster.node(new).port();
    wait_until(
        "a Sentinel to re-point a replica or announce the switch",
        READY_TIMEOUT,
        || async {
            events
                .first(killed_at, &SENTINEL_RECONF)
                .ok_or_else(|| "not yet".to_owned())
        },
    )
    .await;
    wait_routed_to_sentinel_master(&s.cluster, &s.haproxy).await;
    writer.wait_acked_since(Instant::now(), 20).await;
    let records = writer.finish().await;

    let reconf = events
        .first(killed_at, &SENTINEL_RECONF)
        .unwrap_or_else(|| panic!("no Sentinel reconfiguration seen"));
    let first_on_new = records
        .iter()
        .filter(|r| r.acked && r.started > killed_at && r.port == Some(new_port))
        .min_by_key(|r| r.finished)
        .unwrap_or_else(|| {
            panic!(
                "no write acknowledged by the new master: {}",
                summary(&records)
            )
        });
    assert!(
        first_on_new.finished < reconf.at,
        "the first write the new master acknowledged ({}, at {} ms) came after Sentinel {}'s {} {}: \
         the remaining replica was not re-pointed before Sentinel did it; {}",
        first_on_new.key,
        first_on_new.finished_wall_ms,
        reconf.sentinel,
        reconf.channel,
        reconf.payload,
        summary(&records)
    );

    // The remaining replica's own agent re-pointed it (its `followed` event).
    let followed = s.cluster.wait_followed(remaining).await;
    assert!(
        followed
            .message
            .contains(&format!("REPLICAOF {}", s.cluster.node(new).addr())),
        "{followed:?}"
    );

    s.cluster.wait_replica_of(remaining, new).await;
    let after: Vec<WriteRecord> = records
        .iter()
        .filter(|r| r.started > killed_at && r.acked)
        .cloned()
        .collect();
    let port = wait_routed_to_sentinel_master(&s.cluster, &s.haproxy).await;
    assert_acked_present(&s.cluster, port, &after).await;
}

/// Issue #11: a forged report whose Sentinel (at a configured Sentinel's address) names a
/// made-up master at epoch +1000, and whose `+selected-slave` selects it, moves neither the
/// coordinator's master nor its epoch nor HAProxy: a master is only ever a configured node.
/// From an agent id outside the node list it is refused outright (NOT_FOUND); sent as a
/// configured replica's agent, it is taken as evidence and outvoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_master_is_never_published_nor_routed_to() {
    let s = stack().await;
    let api = s.cluster.api();
    let group = s.cluster.group().to_owned();
    let before = api
        .topology()
        .await
        .unwrap_or_else(|e| panic!("GetTopology: {e}"));
    let master = s.cluster.node(1).port();
    // Port 1: nothing listens there, and it is no node of the cluster.
    let foreign = "127.0.0.1:1".to_owned();
    let epoch = before.config_epoch + 1000;
    let mut report = AgentReport {
        agent_id: "rogue".into(),
        master_group: group.clone(),
        sequence: 1,
        agent_started_at_ms: now_ms(),
        reason: "forged".into(),
        redis: Some(RedisStatus {
            address: foreign.clone(),
            reachable: true,
            role: Role::Master as i32,
            ..Default::default()
        }),
        sentinel: Some(SentinelStatus {
            address: format!("127.0.0.1:{}", s.cluster.sentinel_port(1)),
            reachable: true,
            master_address: foreign.clone(),
            config_epoch: epoch,
            current_epoch: epoch,
            master_flags: vec!["master".into()],
            ..Default::default()
        }),
        events: vec![SentinelEvent {
            kind: "+selected-slave".into(),
            payload: format!("slave {foreign} 127.0.0.1 1 @ {group} 127.0.0.1 {master}"),
            epoch,
            ..Default::default()
        }],
        ..Default::default()
    };
    // An authenticated agent outside the node list (a certificate of the cluster's CA naming
    // "rogue", issued beside the others by the product's rule): TLS lets it report for itself
    // only, and the node list refuses it.
    let certs = s.cluster.certs();
    let ids = ["node-1", "node-2", "node-3", "rogue"];
    redis_ha_tls::issue::create(certs.dir(), &redis_ha_tls::issue::Plan::for_nodes(&ids))
        .unwrap_or_else(|e| panic!("the rogue agent's certificate: {e}"));
    let as_agent = |node: &str| {
        redis_ha_testkit::coordinator::client(
            &s.cluster.coordinator_url(),
            &certs.client(&redis_ha_testkit::tls::agent(node)),
        )
    };
    let refused = as_agent("rogue")
        .report(report.clone())
        .await
        .expect_err("a report from an agent outside the node list is refused");
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    assert!(refused.message().contains("rogue"), "{refused:?}");
    // Node 3 is a replica: the forged report, with node 3's agent certificate, takes its
    // agent's place until it goes stale.
    report.agent_id = "node-3".into();
    let ack = as_agent("node-3")
        .report(report)
        .await
        .unwrap_or_else(|e| panic!("Report: {e}"))
        .into_inner();

    // The report was applied and derived before the answer: the master and epoch stand.
    let t = api
        .topology()
        .await
        .unwrap_or_else(|e| panic!("GetTopology: {e}"));
    assert!(t.version >= ack.topology_version);
    assert_eq!(t.master_address, before.master_address, "{t:?}");
    assert_eq!(t.config_epoch, before.config_epoch, "{t:?}");
    let rogue = t
        .nodes
        .iter()
        .find(|n| n.node == "node-3")
        .unwrap_or_else(|| panic!("the forged node is not shown: {t:?}"));
    assert!(!rogue.is_master);
    assert!(rogue.error.contains("not a configured node"), "{rogue:?}");

    // The reloader took that version (or a later one) and still routes to node 1; no HAProxy
    // server was moved to the made-up address.
    let rx = s.reloader().status_receiver();
    wait_until(
        "the reloader to take the topology after the forged report",
        READY_TIMEOUT,
        || {
            let d = rx.borrow().decision.clone();
            async move {
                match d.as_ref().map(|d| &d.source) {
                    Some(Source::Coordinator { version, .. })
                        if *version >= ack.topology_version =>
                    {
                        Ok(())
                    }
                    _ => Err(format!("{d:?}")),
                }
            }
        },
    )
    .await;
    let d = s
        .reloader()
        .status()
        .decision
        .unwrap_or_else(|| panic!("no decision"));
    assert_eq!(
        d.master_address().map(ToString::to_string),
        Some(before.master_address.clone())
    );
    assert!(
        d.nodes.iter().all(|n| n.address.port != 1),
        "the forged node is in the reloader's decision: {d:?}"
    );
    let observed = s
        .haproxy
        .observe()
        .await
        .unwrap_or_else(|e| panic!("show servers state: {e}"));
    assert!(
        observed.servers.iter().all(|srv| srv.srv_port != 1),
        "a HAProxy server points at the made-up address: {:?}",
        observed.servers
    );
    assert_eq!(s.haproxy.routed_port().await, Some(master));
}

/// HAProxy's own majority guard (deploy/haproxy/majority-guard.lua): an HAProxy that only one
/// Redis node of three still answers is on the minority side of a cut and cannot tell whether a
/// failover happened elsewhere, so it closes its clients' write sessions and refuses new ones
/// (errors, not writes that a failover would discard), though the reloader still names the
/// master. Two of three answering is enough to keep routing; all answering again, it routes as
/// before. Here the replicas are paused (they accept TCP but answer nothing, as a cut-off node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_cut_off_from_most_nodes_refuses_writes_until_they_answer() {
    let mut s = stack().await;
    let port = s.cluster.node(1).port();
    let password = s.haproxy.client_password().map(str::to_owned);
    let mut held = s.held_connection().await;
    let answering = |want: &'static [&'static str]| {
        let h = &s.haproxy;
        async move {
            wait_until(
                &format!("HAProxy's majority guard to see {want:?} answering"),
                READY_TIMEOUT,
                || async move {
                    match h.answering_nodes().await {
                        Ok(a) if a == want => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
        }
    };
    answering(&["redis-1", "redis-2", "redis-3"]).await;

    // One replica silent: a majority still answers, nothing changes for the clients.
    s.cluster.node_mut(3).pause();
    answering(&["redis-1", "redis-2"]).await;
    s.assert_not_cut(&mut held).await;
    assert_eq!(s.haproxy.routed_port().await, Some(port));

    // Both silent: the held session is shut and new connections are refused, while the master
    // itself still answers and the reloader keeps it ready.
    s.cluster.node_mut(2).pause();
    let frontend = s.haproxy.frontend_port();
    let deadline = Instant::now() + READY_TIMEOUT;
    while client::pongs(&mut held, frontend).await {
        assert!(
            Instant::now() < deadline,
            "the held session still answers after {READY_TIMEOUT:?}:\n{}",
            s.haproxy.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        s.haproxy.routed_port().await,
        None,
        "a new connection was routed"
    );
    assert_eq!(
        client::role(port, password.as_deref())
            .await
            .ok()
            .as_deref(),
        Some("master")
    );
    assert_eq!(
        s.haproxy.ready_servers().await.unwrap_or_default(),
        ["redis-1"]
    );

    s.cluster.node_mut(2).resume();
    s.cluster.node_mut(3).resume();
    answering(&["redis-1", "redis-2", "redis-3"]).await;
    s.haproxy.wait_routed_to(port).await;
    wait_until("a write through HAProxy", READY_TIMEOUT, || {
        let password = password.clone();
        async move {
            client::query::<String>(
                frontend,
                password.as_deref(),
                redis::cmd("SET").arg("guard").arg("back"),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
    })
    .await;
}
