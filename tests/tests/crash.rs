//! Crash failover on real processes (shipped configuration): a SIGKILLed master is failed over
//! at once (the coordinator asks a Sentinel as soon as the master's own agent sees its port
//! refuse and a majority of agents cannot reach it), while a paused master and a crash during a
//! running failover are left to Sentinel and never make a second epoch, and a master cut off
//! from one agent only (its connections reset or dropped, the others still reaching it) is no
//! crash at all.
//!
//! The tests assert order and state, never durations: the failover comes before any Sentinel
//! sees the old master down, the first write the new master acknowledges comes before that
//! too, every epoch Sentinel announces is the one failover's.

use std::time::{Duration, Instant};

use redis_ha_proto::v1::{Event, Reach};
use redis_ha_tests::binaries::SidecarEnv;
use redis_ha_tests::haproxy::{Haproxy, ReloaderTask, WriteMode, WriteRecord, Writer};
use redis_ha_tests::kit::coordinator::{describe, dump};
use redis_ha_tests::kit::partition::{cut_group, CutMode, GroupCut};
use redis_ha_tests::relay::Relayed;
use redis_ha_tests::sentinel_events::SentinelEvents;
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, NODES, READY_TIMEOUT};

/// Dropped in field order: the reloader stops before HAProxy, both before the cluster.
struct Stack {
    _reloader: ReloaderTask,
    haproxy: Haproxy,
    cluster: Cluster,
}

/// Cluster (at `down_after_ms`) + every sidecar + our HAProxy, routed to node 1.
async fn stack(down_after_ms: u64) -> Stack {
    // With the ACL users on, as every deployment runs.
    let mut cluster = Cluster::start(ClusterOptions {
        down_after_ms,
        password: Some("crash-acl-pw".into()),
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
    writes_until_acked_on(new_port, since, writer, "the new master").await;
}

/// Waits until a write started after `since` was acknowledged through HAProxy by the node on
/// `port` (`who`, for the failure message).
async fn writes_until_acked_on(port: u16, since: Instant, writer: &Writer, who: &str) {
    wait_until(
        &format!("a write acknowledged by {who} through HAProxy"),
        READY_TIMEOUT,
        || async move {
            match writer.count(|r| r.acked && r.started > since && r.port == Some(port)) {
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

/// One failover after `since`: one Sentinel got as far as picking a replica (`+selected-slave`;
/// Sentinel's own election may see two candidates try, `+try-failover`, and one win), every
/// `+switch-master` names the same new master, and every `+new-epoch` the same epoch.
fn assert_one_failover(events: &SentinelEvents, since: Instant) {
    let mut epochs: Vec<String> = events
        .all(since, &["+new-epoch"])
        .into_iter()
        .map(|e| e.payload.trim().to_owned())
        .collect();
    epochs.sort_unstable();
    epochs.dedup();
    assert!(
        epochs.len() <= 1,
        "more than one epoch for one failure: {epochs:?}"
    );
    let tries: Vec<String> = events
        .all(since, &["+selected-slave"])
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

/// What [`kill_master_under_writes`] saw.
struct Killed {
    killed_at: Instant,
    old_port: u16,
    new: usize,
    new_addr: String,
    new_port: u16,
    records: Vec<WriteRecord>,
}

/// SIGKILLs node 1 (the master) under a writer through HAProxy (a fresh connection every
/// 5 ms) and waits for the Sentinels' new master to acknowledge one.
async fn kill_master_under_writes(s: &mut Stack, name: &str) -> Killed {
    let old = s.cluster.node(1).addr();
    let old_port = s.cluster.node(1).port();
    let writer = Writer::start_with_password(
        s.haproxy.frontend_port(),
        s.haproxy.client_password().map(str::to_owned),
        name,
        WriteMode::NewConnectionEachWrite,
        Duration::from_millis(5),
    );
    let killed_at = Instant::now();
    s.cluster.node_mut(1).kill();
    let (new, new_addr) = s.cluster.wait_new_master_node(&old).await;
    let new_port = s.cluster.node(new).port();
    writes_until_new_master_acks(new_port, killed_at, &writer).await;
    Killed {
        killed_at,
        old_port,
        new,
        new_addr,
        new_port,
        records: writer.finish().await,
    }
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
    let Killed {
        killed_at,
        old_port,
        new,
        new_port,
        records,
        ..
    } = kill_master_under_writes(&mut s, "crash").await;

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
    let Killed {
        killed_at,
        old_port,
        new_addr,
        new_port,
        records,
        ..
    } = kill_master_under_writes(&mut s, "crash-1000").await;

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
    // One failover up to the Sentinels' first switch. (At down-after 1000 a Sentinel that
    // switched on a peer's word may fail the *new* master over a second later: its link to it
    // can take a whole ping period, 1 s, to come up. Sentinel's doing, reported here, see the
    // README.)
    let first_switch = wait_until("a Sentinel's +switch-master", READY_TIMEOUT, || async {
        events
            .first(killed_at, &["+switch-master"])
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    let switched_to: Vec<&str> = first_switch.payload.split_whitespace().collect();
    assert_eq!(
        switched_to.get(3..5).map(|f| f.join(":")),
        Some(new_addr.clone()),
        "the first switch names the new master: {}",
        first_switch.payload
    );
    let selected: Vec<String> = events
        .all(killed_at, &["+selected-slave"])
        .into_iter()
        .filter(|e| e.at <= first_switch.at)
        .map(|e| e.payload)
        .collect();
    assert_eq!(
        selected.len(),
        1,
        "one failover for one crash: {selected:?}"
    );
    let later = events
        .all(first_switch.at, &["+try-failover"])
        .into_iter()
        .filter(|e| e.at > first_switch.at)
        .count();
    if later > 0 {
        eprintln!("note: the Sentinels then failed over the new master too ({later} attempt(s))");
    }
    if outcome.contains("accepted by Sentinel") {
        // The forced failover's epoch is the ballot's: the voters announced it first.
        let ballot = outcome
            .rsplit("elected at epoch ")
            .next()
            .map(|e| e.trim().to_owned())
            .unwrap_or_default();
        let first_epoch = events
            .first(killed_at, &["+new-epoch"])
            .map(|e| e.payload.trim().to_owned())
            .unwrap_or_default();
        assert_eq!(first_epoch, ballot, "{outcome}");
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

/// Reports every agent has acknowledged after the coordinator saw the cut agent's word, before
/// the test concludes that no failover follows: each is one evaluation of the crash rule with
/// the cut in force (the timer's evaluations come on top).
const EVALUATIONS_AFTER_THE_CUT: usize = 3;

/// Every Sentinel's `SENTINEL MASTER`: the master it names ("ip:port"), its config epoch and
/// flags.
async fn sentinel_views(cluster: &Cluster) -> Vec<(String, String, String)> {
    let mut views = Vec::new();
    for i in 1..=NODES {
        let m = cluster
            .sentinel(i)
            .master_state()
            .await
            .unwrap_or_else(|e| panic!("SENTINEL MASTER on sentinel {i}: {e}"));
        let get = |k: &str| m.get(k).cloned().unwrap_or_default();
        views.push((
            format!("{}:{}", get("ip"), get("port")),
            get("config-epoch"),
            get("flags"),
        ));
    }
    views
}

/// Nothing failed over: no crash-failover event at all (not even a request), no Sentinel
/// started an election or saw the master down since `since`, every Sentinel names `master` at
/// epoch 0 with no failover running, the coordinator publishes it at epoch 0.
async fn assert_no_failover(
    cluster: &Cluster,
    events: &SentinelEvents,
    since: Instant,
    master: &str,
    why: &str,
) {
    let evs = cluster.api().events().await;
    assert!(
        crash_events(&evs).is_empty(),
        "{why}: the coordinator asked for a crash failover:\n{}",
        dump(&evs)
    );
    let elections: Vec<String> = events
        .all(
            since,
            &[
                "+new-epoch",
                "+try-failover",
                "+elected-leader",
                "+switch-master",
            ],
        )
        .into_iter()
        .map(|e| format!("sentinel {} {} {}", e.sentinel, e.channel, e.payload))
        .collect();
    assert!(
        elections.is_empty(),
        "{why}: the Sentinels failed over: {elections:?}"
    );
    let port = master
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let down: Vec<String> = events
        .all(since, &["+sdown", "+odown"])
        .into_iter()
        .filter(|e| about_master(&e.payload, port))
        .map(|e| format!("sentinel {} {} {}", e.sentinel, e.channel, e.payload))
        .collect();
    assert!(
        down.is_empty(),
        "{why}: a Sentinel lost the master: {down:?}"
    );
    for (i, (named, epoch, flags)) in sentinel_views(cluster).await.into_iter().enumerate() {
        assert_eq!(
            (named.as_str(), epoch.as_str()),
            (master, "0"),
            "{why}: sentinel {} names another master or epoch (flags {flags})",
            i + 1
        );
        assert!(
            !flags.contains("failover_in_progress"),
            "{why}: sentinel {} runs a failover: {flags}",
            i + 1
        );
    }
    let t = cluster
        .topology()
        .await
        .unwrap_or_else(|s| panic!("GetTopology: {s}"));
    assert!(
        t.master_address == master && t.config_epoch == 0,
        "{why}: the coordinator publishes another master: {}",
        describe(&t)
    );
}

/// Node 1 is the master of a cluster with every sidecar, HAProxy and a writer through it; the
/// agent of node `cut` runs as its binary in the test's cut group, so that `mode` cuts its
/// connections to the master's port and nobody else's. The crash rule would allow a failover
/// (down-after 5000 ms, no Sentinel sees the master down): only the agents' word holds it.
///
/// Asserts that the coordinator acknowledged the cut agent's report of the master as `seen`
/// (the cut works) while the other two still reach it, then that through
/// [`EVALUATIONS_AFTER_THE_CUT`] more reports of every agent nothing failed over and writes
/// through HAProxy kept landing on node 1; healed, the cut agent reaches the master again and
/// the topology is at rest around node 1, still at epoch 0.
async fn cut_one_agent_off_the_master(cut: usize, mode: CutMode, seen: Reach) {
    let why = format!("node {}'s agent alone cut off the master ({mode:?})", cut);
    let mut cluster = Cluster::start(ClusterOptions {
        down_after_ms: 5000,
        ..ClusterOptions::default()
    })
    .await;
    cluster.start_coordinator().await;
    let relay = cluster.start_report_relay().await;
    let gid = cut_group();
    let mut cut_agent = None;
    for i in 1..=NODES {
        let mut config = cluster.agent_config(i);
        config.coordinator_url = relay.url().to_owned();
        if i == cut {
            cut_agent =
                Some(cluster.start_agent_binary_with(i, config, &SidecarEnv::default(), Some(gid)));
        } else {
            cluster.start_agent_with(i, config).await;
        }
    }
    let mut cut_agent = cut_agent.unwrap_or_else(|| panic!("no node {cut}"));
    cluster.wait_steady_topology(1).await;
    let haproxy = cluster.start_haproxy().await;
    let _reloader = ReloaderTask::start(cluster.reloader_config(&haproxy));
    let master = cluster.node(1).addr();
    let master_port = cluster.node(1).port();
    haproxy.wait_routed_to(master_port).await;
    let agents: Vec<String> = (1..=NODES).map(|i| format!("node-{i}")).collect();
    let cut_id = format!("node-{cut}");
    // Every agent watches node 1 and reaches it, as the coordinator acknowledged.
    for a in &agents {
        relay
            .wait_report(&format!("{a} to report node 1 reachable"), 0, |r| {
                r.report.agent_id == *a && r.watch() == Some((master.as_str(), Reach::Up))
            })
            .await;
    }
    let events = SentinelEvents::subscribe(&cluster).await;
    let writer = Writer::start(
        haproxy.frontend_port(),
        "cutoff",
        WriteMode::NewConnectionEachWrite,
        Duration::from_millis(20),
    );
    writes_until_acked_on(master_port, Instant::now(), &writer, "node 1").await;

    let from = relay.len();
    let cut_at = Instant::now();
    let rule = GroupCut::cut(gid, master_port, mode)
        .unwrap_or_else(|e| panic!("cut node {cut}'s agent off the master with iptables: {e}"));
    // The cut is real: the coordinator has the cut agent's word on it.
    let first = relay
        .wait_report(
            &format!("the coordinator to acknowledge {cut_id}'s report of the master as {seen:?}"),
            from,
            |r| r.report.agent_id == cut_id && r.watch() == Some((master.as_str(), seen)),
        )
        .await;
    let seen_at = Instant::now();
    let upto = relay
        .wait_reports_from_each(first + 1, &agents, EVALUATIONS_AFTER_THE_CUT)
        .await;
    assert_no_failover(&cluster, &events, cut_at, &master, &why).await;
    // All along, the cut agent kept its word and the other two reached the master: each of
    // these reports was an evaluation of exactly the situation under test.
    let during: Vec<Relayed> = relay.between(first, upto);
    for r in &during {
        let expected = if r.report.agent_id == cut_id {
            seen
        } else {
            Reach::Up
        };
        assert_eq!(
            r.watch(),
            Some((master.as_str(), expected)),
            "{why}: {} reported {:?} (evidence {:?})",
            r.report.agent_id,
            r.watch(),
            r.report.master_watch.as_ref().map(|w| w.evidence.clone())
        );
    }
    // Writes through HAProxy still land on node 1, after the coordinator saw the cut.
    writes_until_acked_on(master_port, seen_at, &writer, "node 1, the cut in force").await;

    let healed = relay.len();
    rule.heal()
        .unwrap_or_else(|e| panic!("remove the iptables rule: {e}"));
    relay
        .wait_report(
            &format!("{cut_id} to reach the master again"),
            healed,
            |r| r.report.agent_id == cut_id && r.watch() == Some((master.as_str(), Reach::Up)),
        )
        .await;
    cluster.wait_steady_topology(1).await;
    let records = writer.finish().await;
    assert_no_failover(&cluster, &events, cut_at, &master, &why).await;
    let elsewhere: Vec<&WriteRecord> = records
        .iter()
        .filter(|r| r.acked && r.port != Some(master_port))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "{why}: writes acknowledged off node 1: {elsewhere:?}"
    );
    assert!(
        cut_agent.is_running(),
        "{why}: the cut agent exited:\n{}",
        cut_agent.output_tail(30)
    );
}

/// The master's own agent sees its master's port reset and refuse (as after a crash: *gone*)
/// while the two other agents reach it: no majority, no failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_gone_only_to_its_own_agent_is_not_failed_over() {
    cut_one_agent_off_the_master(1, CutMode::Reset, Reach::Gone).await;
}

/// The master's own agent hears nothing from it (*unreachable*, as from a hung master): no
/// failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_silent_only_to_its_own_agent_is_not_failed_over() {
    cut_one_agent_off_the_master(1, CutMode::Drop, Reach::Unreachable).await;
}

/// A replica's agent sees the master's port refuse (*gone*): it is not the master's own agent,
/// no failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_gone_only_to_a_replica_s_agent_is_not_failed_over() {
    cut_one_agent_off_the_master(2, CutMode::Reset, Reach::Gone).await;
}

/// A replica's agent hears nothing from the master (*unreachable*): no failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_silent_only_to_a_replica_s_agent_is_not_failed_over() {
    cut_one_agent_off_the_master(2, CutMode::Drop, Reach::Unreachable).await;
}

/// The hello race of a crash failover's ballot, staged: the voters vote for Sentinel 1 at epoch
/// E, Sentinel 1 reaches E before the request (here by a vote of its own, on the stack by a
/// voter's hello), so its forced failover runs at E + 1. Following it, the coordinator's
/// `see_through` sees Sentinel 1's own vote at E + 1 and votes the voters at it too, before
/// the promotion: the second witness the coordinator wants for the promotion's epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_failover_above_its_ballot_has_its_voters_vote_at_its_epoch() {
    use redis_ha_common::{HostPort, Secret};
    use redis_ha_coordinator::failover::{see_through, Forced, SeenThrough};

    // Sentinel's own detection far away: only the staged failover runs.
    let mut cluster = Cluster::start(ClusterOptions {
        down_after_ms: 60_000,
        ..ClusterOptions::default()
    })
    .await;
    cluster.wait_sentinels_ready().await;
    let events = SentinelEvents::subscribe(&cluster).await;
    let group = cluster.group().to_owned();
    let master_port = cluster.node(1).port();
    let mut ids = Vec::new();
    for i in 1..=3 {
        let id: String = cluster
            .sentinel(i)
            .query(redis::cmd("SENTINEL").arg("MYID"))
            .await
            .unwrap();
        ids.push(id);
    }
    let since = Instant::now();
    let ballot = 1;
    cluster.node_mut(1).kill();
    let vote = |i: usize, epoch: u64| {
        let cmd = redis::cmd("SENTINEL")
            .arg("IS-MASTER-DOWN-BY-ADDR")
            .arg("127.0.0.1")
            .arg(master_port)
            .arg(epoch)
            .arg(&ids[0])
            .clone();
        let s = cluster.sentinel(i);
        async move {
            let v: redis::Value = s.query(&cmd).await.unwrap();
            v
        }
    };
    vote(2, ballot).await;
    vote(3, ballot).await;
    // The race: Sentinel 1 is at the ballot's epoch before it is asked.
    vote(1, ballot).await;
    let () = cluster
        .sentinel(1)
        .query(redis::cmd("SENTINEL").arg("FAILOVER").arg(&group))
        .await
        .unwrap();
    let forced = Forced {
        sentinel: format!("127.0.0.1:{}", cluster.sentinel_port(1)),
        ballot,
        failover_timeout: Duration::from_secs(10),
        run_id: ids[0].clone(),
        voters: (2..=3)
            .map(|i| format!("127.0.0.1:{}", cluster.sentinel_port(i)))
            .collect(),
        master: HostPort::new("127.0.0.1", master_port),
    };
    let password = cluster.sentinel(1).password().map(Secret::new);
    let outcome = see_through(
        &forced,
        &group,
        &format!("127.0.0.1:{master_port}"),
        password.as_ref(),
        Duration::from_secs(2),
        Duration::from_secs(10),
        |n, why| panic!("asked again ({n}: {why}): the failover did not abort"),
    )
    .await;
    assert!(
        matches!(outcome, SeenThrough::Promoted { retries: 0, .. }),
        "{outcome:?}"
    );
    let failover_epoch = format!("{} {}", ids[0], ballot + 1);
    let promoted = events
        .first(since, &["+promoted-slave"])
        .unwrap_or_else(|| panic!("no +promoted-slave"));
    for voter in [2, 3] {
        let voted = events
            .all(since, &["+vote-for-leader"])
            .into_iter()
            .find(|e| e.sentinel == voter && e.payload == failover_epoch)
            .unwrap_or_else(|| panic!("sentinel {voter} never voted {failover_epoch}"));
        assert!(
            voted.at < promoted.at,
            "sentinel {voter} voted at the failover's epoch only after the promotion"
        );
    }
}
