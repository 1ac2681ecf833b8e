//! Crash failover on real processes (shipped configuration): a SIGKILLed master is failed over
//! at once (the coordinator asks a Sentinel as soon as the master's own agent sees its port
//! refuse and a majority of agents cannot reach it), while a paused master and a crash during a
//! running failover are left to Sentinel and never make a second epoch.
//!
//! The tests assert order and state, never durations: the failover comes before any Sentinel
//! sees the old master down, the first write the new master acknowledges comes before that
//! too, every epoch Sentinel announces is the one failover's.

use std::time::{Duration, Instant};

use redis_ha_proto::v1::Event;
use redis_ha_tests::haproxy::{Haproxy, ReloaderTask, WriteMode, WriteRecord, Writer};
use redis_ha_tests::kit::coordinator::dump;
use redis_ha_tests::sentinel_events::SentinelEvents;
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, READY_TIMEOUT};

/// Dropped in field order: the reloader stops before HAProxy, both before the cluster.
struct Stack {
    _reloader: ReloaderTask,
    haproxy: Haproxy,
    cluster: Cluster,
}

/// Cluster (at `down_after_ms`) + every sidecar + our HAProxy, routed to node 1.
async fn stack(down_after_ms: u64) -> Stack {
    let mut cluster = Cluster::start(ClusterOptions {
        down_after_ms,
        ..ClusterOptions::default()
    })
    .await;
    cluster.start_all_sidecars().await;
    cluster.wait_steady_topology(1).await;
    let haproxy = cluster.start_haproxy().await;
    let reloader = ReloaderTask::start(cluster.reloader_config(&haproxy));
    haproxy.wait_routed_to(cluster.node(1).port()).await;
    // The master watch of every agent holds node 1 before anything is broken.
    let api = cluster.api();
    api.wait_topology("every agent to watch node 1", |t| {
        t.nodes.len() == 3 && t.master_confirmed
    })
    .await;
    Stack {
        _reloader: reloader,
        haproxy,
        cluster,
    }
}

fn crash_events(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.kind == "crash-failover")
        .collect()
}

/// The payload of a Sentinel `+sdown`/`+odown` about the master at `port`:
/// `master <group> <ip> <port>[ #quorum q/n]`.
fn about_master(payload: &str, port: u16) -> bool {
    let f: Vec<&str> = payload.split_whitespace().collect();
    f.first() == Some(&"master") && f.get(3) == Some(&port.to_string().as_str())
}

#[test]
fn sentinel_payloads_about_the_master() {
    assert!(about_master(
        "master redis-cluster 127.0.0.1 20001 #quorum 2/2",
        20001
    ));
    assert!(about_master("master redis-cluster 127.0.0.1 20001", 20001));
    assert!(!about_master(
        "slave 127.0.0.1:20001 127.0.0.1 20001 @ redis-cluster 127.0.0.1 20002",
        20001
    ));
    assert!(!about_master("master redis-cluster 127.0.0.1 20002", 20001));
}

async fn writes_until_new_master_acks(new_port: u16, since: Instant, writer: &Writer) {
    wait_until(
        "a write acknowledged by the new master through HAProxy",
        READY_TIMEOUT,
        || async move {
            match writer.count(|r| r.acked && r.started > since && r.port == Some(new_port)) {
                0 => Err("none yet".to_owned()),
                n => Ok(n),
            }
        },
    )
    .await;
}

fn first_ack_on(records: &[WriteRecord], port: u16, since: Instant) -> Option<&WriteRecord> {
    records
        .iter()
        .filter(|r| r.acked && r.started > since && r.port == Some(port))
        .min_by_key(|r| r.finished)
}

/// One failover after `since`: one Sentinel tried (`+try-failover`, also sent by a forced one),
/// and every `+switch-master` names the same new master. (A crash failover moves the epoch by
/// two, its ballot's and its own: epochs are not what counts failovers.)
fn assert_one_failover(events: &SentinelEvents, since: Instant) {
    let tries: Vec<String> = events
        .all(since, &["+try-failover"])
        .into_iter()
        .map(|e| format!("{} {}", e.channel, e.payload))
        .collect();
    assert_eq!(tries.len(), 1, "one failover for one failure: {tries:?}");
    let mut switched: Vec<String> = events
        .all(since, &["+switch-master"])
        .into_iter()
        .filter_map(|e| {
            // `<group> <old ip> <old port> <new ip> <new port>`
            let f: Vec<&str> = e.payload.split_whitespace().collect();
            f.get(3..5).map(|n| n.join(":"))
        })
        .collect();
    switched.sort_unstable();
    switched.dedup();
    assert!(
        switched.len() <= 1,
        "the Sentinels switched to different masters: {switched:?}"
    );
}

/// The failover after `since` was Sentinel's own: its `+odown` of the master at `old_port` came
/// before (or with) the new epoch, the coordinator asked for no crash failover, one failover.
async fn assert_sentinels_own_failover(
    cluster: &Cluster,
    events: &SentinelEvents,
    since: Instant,
    old_port: u16,
    why: &str,
) {
    let odown = events
        .all(since, &["+odown"])
        .into_iter()
        .find(|e| about_master(&e.payload, old_port))
        .unwrap_or_else(|| panic!("{why}: the failover must come from Sentinel's +odown"));
    let new_epoch = events
        .first(since, &["+new-epoch"])
        .unwrap_or_else(|| panic!("no +new-epoch"));
    assert!(
        odown.at <= new_epoch.at,
        "{why}: a new epoch ({}) began before Sentinel's +odown",
        new_epoch.payload
    );
    let evs = cluster.api().events().await;
    assert!(crash_events(&evs).is_empty(), "{why}: {}", dump(&evs));
    assert_one_failover(events, since);
}

/// Waits until the coordinator's events show a crash failover a Sentinel accepted; all events.
async fn wait_crash_accepted(cluster: &Cluster) -> Vec<Event> {
    cluster
        .api()
        .wait_events("the crash failover to be accepted", |evs| {
            crash_events(evs)
                .iter()
                .any(|e| e.message.contains("accepted by Sentinel"))
                .then(|| evs.to_vec())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_master_is_failed_over_before_any_sentinel_sees_it_down() {
    let mut s = stack(5000).await;
    let events = SentinelEvents::subscribe(&s.cluster).await;
    let old = s.cluster.node(1).addr();
    let old_port = s.cluster.node(1).port();
    let writer = Writer::start(
        s.haproxy.frontend_port(),
        "crash",
        WriteMode::NewConnectionEachWrite,
        Duration::from_millis(5),
    );

    let killed_at = Instant::now();
    s.cluster.node_mut(1).kill();
    let (new, _) = s.cluster.wait_new_master_node(&old).await;
    let new_port = s.cluster.node(new).port();
    writes_until_new_master_acks(new_port, killed_at, &writer).await;
    let records = writer.finish().await;

    // The coordinator asked, and a Sentinel accepted.
    let accepted = wait_crash_accepted(&s.cluster).await;
    let crash = crash_events(&accepted);
    assert!(
        crash
            .iter()
            .any(|e| e.message.contains("connection refused")),
        "the evidence names the refusal: {}",
        dump(&accepted)
    );
    // Before any Sentinel's down-after: no +sdown of the old master came before the new epoch,
    // nor before the new master's first acknowledged write.
    let new_epoch = events
        .first(killed_at, &["+new-epoch"])
        .unwrap_or_else(|| panic!("no +new-epoch"));
    let first_sdown = events
        .all(killed_at, &["+sdown", "+odown"])
        .into_iter()
        .find(|e| about_master(&e.payload, old_port));
    let first_ack = first_ack_on(&records, new_port, killed_at)
        .unwrap_or_else(|| panic!("no write acknowledged by the new master"));
    if let Some(sdown) = &first_sdown {
        assert!(
            new_epoch.at < sdown.at && first_ack.finished < sdown.at,
            "Sentinel saw the master down ({} {}) before the crash failover started or before the new master's first acknowledged write",
            sdown.channel,
            sdown.payload
        );
    }
    // The remaining replica was re-pointed by its agent (its Sentinel is not the leader of the
    // forced failover), and the new master took a write before any Sentinel re-pointed a
    // replica or announced the switch.
    let remaining = if new == 2 { 3 } else { 2 };
    s.cluster.wait_followed(remaining).await;
    if let Some(reconf) = events.first(killed_at, &["+slave-reconf-sent", "+switch-master"]) {
        assert!(
            first_ack.finished < reconf.at,
            "the new master's first acknowledged write came after Sentinel's {} {}",
            reconf.channel,
            reconf.payload
        );
    }
    assert_one_failover(&events, killed_at);
    // Nothing is written by anyone else once the new master acknowledged.
    let late_on_old = records
        .iter()
        .filter(|r| r.acked && r.port == Some(old_port) && r.started > first_ack.finished)
        .count();
    assert_eq!(
        late_on_old, 0,
        "writes acknowledged by the killed master after the switch"
    );
}

/// At down-after 1000 the Sentinels may detect the crash themselves within a few hundred ms:
/// the ballot before the forced failover either wins (every Sentinel votes for the one asked,
/// and none starts its own) or finds a Sentinel already failing over and forces nothing.
/// Either way there is one failover, and the new master takes the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_a_short_down_after_is_failed_over_once() {
    let mut s = stack(1000).await;
    let events = SentinelEvents::subscribe(&s.cluster).await;
    let old = s.cluster.node(1).addr();
    let old_port = s.cluster.node(1).port();
    let writer = Writer::start(
        s.haproxy.frontend_port(),
        "crash-1000",
        WriteMode::NewConnectionEachWrite,
        Duration::from_millis(5),
    );
    let killed_at = Instant::now();
    s.cluster.node_mut(1).kill();
    let (new, new_addr) = s.cluster.wait_new_master_node(&old).await;
    let new_port = s.cluster.node(new).port();
    writes_until_new_master_acks(new_port, killed_at, &writer).await;
    let records = writer.finish().await;

    let evs = s
        .cluster
        .api()
        .wait_events("the crash failover's outcome", |evs| {
            crash_events(evs)
                .iter()
                .any(|e| {
                    e.message.contains("accepted by Sentinel") || e.message.contains("not started")
                })
                .then(|| evs.to_vec())
        })
        .await;
    let outcome = crash_events(&evs)
        .into_iter()
        .find(|e| e.message.contains("accepted by Sentinel") || e.message.contains("not started"))
        .map(|e| e.message.clone())
        .unwrap_or_default();
    eprintln!("crash failover: {outcome}");
    assert_one_failover(&events, killed_at);
    if outcome.contains("accepted by Sentinel") {
        // The forced failover's epoch is the ballot's + 1, and every Sentinel settles on it.
        let ballot: u64 = outcome
            .rsplit("elected at epoch ")
            .next()
            .and_then(|e| e.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ballot epoch in {outcome:?}"));
        let t = s
            .cluster
            .api()
            .wait_topology("the forced failover's epoch", |t| {
                t.master_address == new_addr && t.master_confirmed && !t.failover_in_progress
            })
            .await;
        assert_eq!(t.config_epoch, ballot + 1, "{outcome}");
    } else {
        // Lost to a Sentinel's own election: that failover is the one.
        assert!(
            outcome.contains("ballot lost")
                || outcome.contains("failover is under way")
                || outcome.contains("now names"),
            "{outcome}"
        );
    }
    let first_ack = first_ack_on(&records, new_port, killed_at)
        .unwrap_or_else(|| panic!("no write acknowledged by the new master"));
    let late_on_old = records
        .iter()
        .filter(|r| r.acked && r.port == Some(old_port) && r.started > first_ack.finished)
        .count();
    assert_eq!(
        late_on_old, 0,
        "writes acknowledged by the killed master after the switch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_master_is_left_to_sentinel_down_after() {
    let mut s = stack(3000).await;
    let events = SentinelEvents::subscribe(&s.cluster).await;
    let old = s.cluster.node(1).addr();
    let old_port = s.cluster.node(1).port();

    let paused_at = Instant::now();
    s.cluster.node_mut(1).pause();
    let new_addr = s.cluster.wait_new_master(&old).await;
    assert_ne!(new_addr, old);
    assert_sentinels_own_failover(
        &s.cluster,
        &events,
        paused_at,
        old_port,
        "a paused master is no crash",
    )
    .await;
    s.cluster.node_mut(1).resume();
    s.cluster.wait_rejoined_as_replica(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_a_running_failover_makes_no_second_epoch() {
    let mut s = stack(5000).await;
    let events = SentinelEvents::subscribe(&s.cluster).await;
    let old = s.cluster.node(1).addr();
    let started = Instant::now();
    // An operator's failover, and the master crashing right behind it.
    s.cluster
        .sentinel(1)
        .failover()
        .await
        .unwrap_or_else(|e| panic!("SENTINEL FAILOVER: {e}"));
    s.cluster.node_mut(1).kill();
    let new_addr = s.cluster.wait_new_master(&old).await;
    let t = s
        .cluster
        .api()
        .wait_topology("the Sentinels' new master, no failover running", |t| {
            t.master_address == new_addr && !t.failover_in_progress && t.master_confirmed
        })
        .await;
    assert_eq!(t.config_epoch, 1, "one failover, one epoch");
    assert_one_failover(&events, started);
    let evs = s.cluster.api().events().await;
    assert!(
        !crash_events(&evs)
            .iter()
            .any(|e| e.message.contains("accepted by Sentinel")),
        "a crash failover was started beside the running one: {}",
        dump(&evs)
    );
}

/// An agent configured for Docker's `die` events whose Docker socket is gone keeps watching:
/// the refused port is still the evidence, and the crash is failed over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_without_their_docker_socket_still_see_the_crash() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    // This test's own process (nextest runs each test in one): no other test sees it.
    std::env::set_var(
        "DOCKER_HOST",
        format!("unix://{}", dir.path().join("no-docker.sock").display()),
    );
    let mut cluster = Cluster::start(ClusterOptions {
        down_after_ms: 5000,
        ..ClusterOptions::default()
    })
    .await;
    cluster.start_coordinator().await;
    for i in 1..=3 {
        let mut config = cluster.agent_config(i);
        config.docker_events = true;
        config.docker_container = format!("redis-ha-test-node-{i}");
        cluster.start_agent_with(i, config).await;
    }
    cluster.wait_steady_topology(1).await;
    let events = SentinelEvents::subscribe(&cluster).await;
    let old = cluster.node(1).addr();
    let killed_at = Instant::now();
    cluster.node_mut(1).kill();
    cluster.wait_new_master(&old).await;
    let evs = wait_crash_accepted(&cluster).await;
    assert!(
        crash_events(&evs)
            .iter()
            .any(|e| e.message.contains("connection refused")),
        "{}",
        dump(&evs)
    );
    assert_one_failover(&events, killed_at);
    for i in 2..=3 {
        cluster.assert_agent_running(i).await;
    }
}

/// The master's own agent alone cannot cause a crash failover: with the other two agents
/// stopped, the crash goes through Sentinel's down-after (`+odown` before the new epoch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_s_own_agent_alone_is_no_majority() {
    let mut s = stack(3000).await;
    s.cluster.stop_agent(2).await;
    s.cluster.stop_agent(3).await;
    let events = SentinelEvents::subscribe(&s.cluster).await;
    let old = s.cluster.node(1).addr();
    let old_port = s.cluster.node(1).port();
    let killed_at = Instant::now();
    s.cluster.node_mut(1).kill();
    s.cluster.wait_new_master(&old).await;
    assert_sentinels_own_failover(
        &s.cluster,
        &events,
        killed_at,
        old_port,
        "the own agent alone",
    )
    .await;
}
