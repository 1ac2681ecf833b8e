//! Cross-service process tests: real Redis and Sentinel processes, the coordinator and the
//! agents in-process, everything talking over loopback gRPC.

use std::time::Duration;

use redis_ha_proto::v1::{FailoverRequest, Health, LinkState, MasterSource, Role, Topology};
use redis_ha_testkit::silence::Silencer;
use redis_ha_tests::sidecars::describe;
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, READY_TIMEOUT};
use tokio_stream::StreamExt;

async fn started(opts: ClusterOptions) -> Cluster {
    let mut cluster = Cluster::start(opts).await;
    cluster.start_all_sidecars().await;
    cluster
}

fn node<'t>(t: &'t Topology, id: &str) -> &'t redis_ha_proto::v1::NodeView {
    t.nodes
        .iter()
        .find(|n| n.node == id)
        .unwrap_or_else(|| panic!("{id} missing from {}", describe(t)))
}

/// `node` has `health` and every other node is UP.
fn only_node_is(t: &Topology, node: &str, health: Health) -> bool {
    t.nodes
        .iter()
        .all(|n| n.health() == if n.node == node { health } else { Health::Up })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_is_right_after_start() {
    let mut cluster = started(ClusterOptions::default()).await;
    let t = cluster.wait_steady_topology(1).await;
    let master = cluster.node(1).addr();

    assert_eq!(t.master_group, "redis-cluster");
    assert_eq!(t.master_address, master);
    assert_eq!(t.master_node, "node-1");
    assert_eq!(t.config_epoch, 0);
    assert_eq!(
        t.master_source(),
        MasterSource::SentinelQuorum,
        "{}",
        describe(&t)
    );
    assert!(t.version > 0);
    assert!(t.split_brain.is_empty());
    assert_eq!(cluster.master_addr_by_sentinel().await.unwrap(), master);

    let m = node(&t, "node-1");
    assert!(m.is_master);
    assert_eq!(m.role(), Role::Master);
    assert_eq!(m.address, master);
    for id in ["node-2", "node-3"] {
        let r = node(&t, id);
        assert_eq!(r.health(), Health::Up, "{id}");
        assert_eq!(r.role(), Role::Replica, "{id}");
        assert_eq!(r.link(), LinkState::Up, "{id}");
        assert_eq!(r.master_address, master, "{id}");
        assert!(!r.split_brain, "{id}");
    }
    for s in &t.sentinels {
        assert_eq!(s.health(), Health::Up, "{}", describe(&t));
        assert_eq!(s.config_epoch, 0, "{}", describe(&t));
        assert_eq!(s.master_address, master, "{}", describe(&t));
    }
    let mut sentinel_addrs: Vec<&str> = t.sentinels.iter().map(|s| s.address.as_str()).collect();
    sentinel_addrs.sort();
    let mut expected: Vec<String> = (1..=3).map(|i| cluster.sentinel(i).addr()).collect();
    expected.sort();
    assert_eq!(sentinel_addrs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_master_is_replaced_and_watchers_see_it() {
    let mut cluster = started(ClusterOptions::default()).await;
    let before = cluster.wait_steady_topology(1).await;
    let old_master = cluster.node(1).addr();

    // Opened before the kill: its first message is the current topology.
    let mut watch = cluster.watch().await;
    let first = tokio::time::timeout(READY_TIMEOUT, watch.next())
        .await
        .expect("WatchTopology sent nothing")
        .expect("WatchTopology ended")
        .expect("WatchTopology failed");
    assert!(first.version >= before.version);
    assert_eq!(first.master_address, old_master);

    cluster.node_mut(1).kill();
    cluster.wait_new_master(&old_master).await;

    // The watcher receives a topology naming the master the Sentinels name; versions only
    // grow. (Compared with the Sentinels' current answer: under load they may fail over twice.)
    let mut last_version = first.version;
    let switched = tokio::time::timeout(READY_TIMEOUT, async {
        loop {
            let t = watch
                .next()
                .await
                .expect("WatchTopology ended")
                .expect("WatchTopology failed");
            assert!(
                t.version > last_version,
                "version went from {last_version} to {}",
                t.version
            );
            last_version = t.version;
            if t.master_address.is_empty() || t.master_address == old_master {
                continue;
            }
            if cluster.master_addr_by_sentinel().await.as_ref() == Ok(&t.master_address) {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the watcher never saw the Sentinels' new master"));
    assert!(switched.version > before.version);
    let m = cluster.node_index(&switched.master_address).unwrap();
    assert_ne!(m, 1);
    assert_eq!(switched.master_node, format!("node-{m}"));

    // The killed node's agent still runs and reports its Redis down.
    let t = cluster
        .wait_topology_agreeing("node-1 DOWN under the new master", READY_TIMEOUT, |t, _| {
            t.master_confirmed
                && t.nodes
                    .iter()
                    .any(|n| n.node == "node-1" && n.health() == Health::Down)
        })
        .await;
    assert_ne!(t.master_address, old_master);
    assert!(t.config_epoch >= 1, "{}", describe(&t));
    assert!(!node(&t, "node-1").is_master);

    let events = cluster.events().await;
    assert!(
        events.iter().any(|e| e.kind == "master-changed"
            && (e.message.contains(&switched.master_address) || e.node == switched.master_node)),
        "no master-changed event naming {} in {events:#?}",
        switched.master_address
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_coordinator_rebuilds_the_topology() {
    // With a password: the agents read it from a file.
    let mut cluster = started(ClusterOptions {
        password: Some("t0p-secret".into()),
        ..ClusterOptions::default()
    })
    .await;
    cluster.wait_steady_topology(1).await;

    cluster.stop_coordinator().await;
    assert!(
        cluster.topology().await.is_err(),
        "a stopped coordinator answered"
    );

    // Same port: the agents (and this client) reconnect by themselves.
    cluster.start_coordinator().await;
    let t = cluster.wait_steady_topology(1).await;
    assert_eq!(t.master_node, "node-1");
    assert_eq!(t.nodes.len(), 3);
    for i in 1..=3 {
        cluster.assert_agent_running(i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reports_its_redis_down() {
    let mut cluster = started(ClusterOptions::default()).await;
    cluster.wait_steady_topology(1).await;
    let master = cluster.node(1).addr();

    cluster.node_mut(3).kill();
    let down = |t: &Topology| t.master_address == master && only_node_is(t, "node-3", Health::Down);
    cluster
        .wait_topology("node-3 DOWN, the others UP", READY_TIMEOUT, down)
        .await;

    // Still DOWN (a fresh report saying so), never UNKNOWN, over a whole stale period: the
    // agent keeps reporting. A negative check, so it needs a window of time; every topology
    // seen in it is checked, not only the last one.
    let window = Duration::from_millis(cluster.options().stale_after_ms + 1000);
    let since = std::time::Instant::now();
    let c = &cluster;
    let t = wait_until(
        "a whole stale period with node-3 DOWN",
        READY_TIMEOUT,
        || async move {
            let t = c.topology().await.unwrap();
            assert!(down(&t), "{}", describe(&t));
            (since.elapsed() >= window).then_some(t)
        },
    )
    .await;
    assert_eq!(
        node(&t, "node-3").agent_health(),
        Health::Up,
        "{}",
        describe(&t)
    );
    cluster.assert_agent_running(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_agent_turns_its_node_unknown() {
    let mut cluster = started(ClusterOptions::default()).await;
    cluster.wait_steady_topology(1).await;
    let master = cluster.node(1).addr();

    cluster.stop_agent(2).await;
    let t = cluster
        .wait_topology("node-2 UNKNOWN, the others UP", READY_TIMEOUT, |t| {
            t.master_address == master && only_node_is(t, "node-2", Health::Unknown)
        })
        .await;
    let n2 = node(&t, "node-2");
    assert!(
        n2.report_age_ms >= cluster.options().stale_after_ms,
        "{}",
        describe(&t)
    );
    assert_eq!(n2.agent_health(), Health::Unknown, "{}", describe(&t));
    assert!(
        t.master_confirmed,
        "two agents heard still confirm: {}",
        describe(&t)
    );
}

/// A coordinator that hears the master's own agent alone (as one cut off together with the
/// master's node would) stops calling it confirmed and says why; a second agent back, it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_s_own_agent_alone_does_not_confirm_it() {
    let mut cluster = started(ClusterOptions::default()).await;
    cluster.wait_steady_topology(1).await;
    let master = cluster.node(1).addr();

    cluster.stop_agent(2).await;
    cluster.stop_agent(3).await;
    let t = cluster
        .wait_topology("the master unconfirmed: agents-lost", READY_TIMEOUT, |t| {
            t.master_address == master && !t.master_confirmed
        })
        .await;
    assert_eq!(t.master_unconfirmed, "agents-lost", "{}", describe(&t));

    cluster.start_agent(2).await;
    let t = cluster
        .wait_topology("the master confirmed again", READY_TIMEOUT, |t| {
            t.master_address == master && t.master_confirmed
        })
        .await;
    assert_eq!(t.master_unconfirmed, "", "{}", describe(&t));
}

/// The port of the silencing forwarder in the cluster's block.
const SILENCER_PORT_OFFSET: u16 = 31;

/// Agents whose connections to the coordinator go silent (its host cut off: no FIN, no RST,
/// nothing) drop them and connect anew, as to a coordinator the swarm has started elsewhere:
/// a coordinator started afresh, which has heard nobody yet, hears every agent again. Without
/// keep-alives on the reports' channel they would queue on the dead connection for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_leave_a_silent_coordinator_connection_for_a_new_one() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.start_coordinator().await;
    let listener = redis_ha_testkit::ports::bind(cluster.ports().port(SILENCER_PORT_OFFSET)).await;
    let coordinator = std::net::SocketAddr::from(([127, 0, 0, 1], cluster.coordinator_port()));
    let silencer = Silencer::start(listener, coordinator).expect("silencer");
    for i in 1..=3 {
        let mut config = cluster.agent_config(i);
        config.coordinator_url = format!("http://{}", silencer.addr());
        cluster.start_agent_with(i, config).await;
    }
    cluster.wait_steady_topology(1).await;
    let before = silencer.accepted();

    silencer.silence_established();
    cluster.stop_coordinator().await;
    cluster.start_coordinator().await;
    let t = cluster
        .wait_topology(
            "every agent heard by the new coordinator",
            READY_TIMEOUT,
            |t| t.nodes.len() == 3 && t.nodes.iter().all(|n| n.agent_health() == Health::Up),
        )
        .await;
    assert!(t.master_confirmed, "{}", describe(&t));
    assert!(
        silencer.accepted() > before,
        "the agents connected anew: {} connections before, {} after",
        before,
        silencer.accepted()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_rpc_elects_a_new_master_and_the_topology_follows() {
    let mut cluster = started(ClusterOptions::default()).await;
    let before = cluster.wait_steady_topology(1).await;
    let old_master = cluster.node(1).addr();

    let reply = cluster
        .client()
        .failover(FailoverRequest {
            master_group: cluster.group().to_owned(),
        })
        .await
        .expect("Failover RPC failed")
        .into_inner();
    assert!(!reply.sentinel.is_empty(), "{reply:?}");

    cluster.wait_new_master(&old_master).await;
    // The old master is alive: Sentinel turns it into a replica of the new one.
    let t = cluster.wait_steady_topology_agreeing().await;
    assert_ne!(t.master_address, old_master);
    assert!(t.version > before.version);
    assert!(t.config_epoch >= 1, "{}", describe(&t));
    assert_eq!(node(&t, "node-1").role(), Role::Replica);
}
