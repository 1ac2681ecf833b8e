//! The whole agent (`run`) against real Redis and Sentinel processes, reporting to the real
//! coordinator (`redis_ha_coordinator::serve`, in-process on a loopback port). What the agent
//! reported is checked through the coordinator's public gRPC API: GetTopology, ListEvents
//! and WatchTopology.
//!
//! How the coordinator records an agent's report in ListEvents (see the coordinator's
//! `topology.rs`): every event the agent sends (a Sentinel event, or the agent's own
//! `role-change` / `fenced`) becomes one event of kind `sentinel`, node = the agent id,
//! message = `<event kind> <payload>`, in the order the agent sent them; after each report
//! the coordinator re-derives the topology and appends its own events (`agent`,
//! `master-changed`, `health`, `split-brain`, `failover`) stamped with the new version.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use redis_ha_agent::{run, AgentConfig, AgentError};
use redis_ha_common::HostPort;
use redis_ha_coordinator::{CoordinatorConfig, InProcess};
use redis_ha_proto::v1::{
    Event, Health, LinkState, MasterSource, NodeView, Role, SentinelView, Topology,
};
use redis_ha_testkit::coordinator::{describe, dump, Api, Watched};
use redis_ha_testkit::tls::{agent, Certs};
use redis_ha_testkit::{wait_until, RedisNode, Sandbox, Sentinel, TIMEOUT};
use redis_ha_tls::Identity;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const GROUP: &str = "redis-cluster";

/// The control plane's certificates, for this test process (mutual TLS, as shipped).
fn certs() -> &'static Certs {
    static CERTS: std::sync::OnceLock<Certs> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| Certs::temp(9))
}

fn config(node: &str, redis_port: u16, sentinel_port: u16, coordinator_port: u16) -> AgentConfig {
    AgentConfig {
        node_id: node.into(),
        master_group: GROUP.into(),
        redis_addr: HostPort::new("127.0.0.1", redis_port),
        sentinel_addr: HostPort::new("127.0.0.1", sentinel_port),
        coordinator_url: format!("http://127.0.0.1:{coordinator_port}"),
        tls: certs().settings(&agent(node)),
        heartbeat_ms: 300,
        io_timeout_ms: 500,
        resolve_wait_ms: 0,
        fencing_grace_ms: 600,
        metrics_addr: String::new(),
        ..AgentConfig::default()
    }
}

/// A running agent, stopped on drop.
struct Agent {
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), AgentError>>>,
}

impl Agent {
    fn start(config: AgentConfig) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(config, stop.clone()));
        Self {
            stop,
            task: Some(task),
        }
    }

    fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    async fn stop(mut self) -> Result<(), AgentError> {
        self.stop.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// ------------------------------------------------------------------ the real coordinator

/// The coordinator served in-process (its own launcher) on a port of the test's block.
struct Coordinator {
    port: u16,
    server: InProcess,
    api: Api,
}

impl std::ops::Deref for Coordinator {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Coordinator {
    /// On `port` of the test's block (an agent may already be trying to reach it).
    async fn start(port: u16) -> Self {
        let listener = redis_ha_testkit::ports::bind(port).await;
        let config = CoordinatorConfig {
            listen_addr: format!("127.0.0.1:{port}"),
            master_group: GROUP.into(),
            // Every event of the test kept, so positions in ListEvents are comparable.
            event_history: 100_000,
            event_history_bytes: 100_000 * redis_ha_coordinator::limits::EVENT_MAX_BYTES,
            metrics_addr: String::new(),
            tls: certs().settings(&Identity::Coordinator),
            ..CoordinatorConfig::default()
        };
        let server = InProcess::spawn(config, listener).unwrap();
        let api = Api::new(&server.url(), GROUP, &certs().operator());
        Self { port, server, api }
    }

    /// Waits until each of `nodes` has had `n` more reports taken since the call: a report
    /// resets the node's `report_age_ms`, so every drop of the age is one at least.
    async fn wait_reports(&self, nodes: &[&str], n: usize) {
        // Per node: the last report age seen and the reports counted.
        let seen = tokio::sync::Mutex::new(BTreeMap::<String, (u64, usize)>::new());
        wait_until(
            &format!("{n} more reports of {nodes:?}"),
            TIMEOUT,
            || async {
                let mut seen = seen.lock().await;
                if let Ok(t) = self.topology().await {
                    for v in &t.nodes {
                        match seen.get_mut(&v.node) {
                            Some((age, count)) => {
                                if v.report_age_ms < *age {
                                    *count += 1;
                                }
                                *age = v.report_age_ms;
                            }
                            None => {
                                seen.insert(v.node.clone(), (v.report_age_ms, 0));
                            }
                        }
                    }
                }
                if nodes
                    .iter()
                    .all(|id| seen.get(*id).is_some_and(|(_, c)| *c >= n))
                {
                    Ok(())
                } else {
                    Err(format!("seen (age, reports) {seen:?}"))
                }
            },
        )
        .await;
    }

    async fn stop(self) {
        tokio::time::timeout(TIMEOUT, self.server.stop())
            .await
            .expect("the coordinator did not stop")
            .unwrap()
            .unwrap();
    }
}

/// Records every topology WatchTopology sends, from now on.
async fn record_watch(coord: &Coordinator) -> Watched {
    coord.api.record_watch().await
}

// ------------------------------------------------------------------ reading the results

fn node<'t>(t: &'t Topology, id: &str) -> Option<&'t NodeView> {
    t.nodes.iter().find(|n| n.node == id)
}

fn sentinel_of<'t>(t: &'t Topology, id: &str) -> Option<&'t SentinelView> {
    t.sentinels.iter().find(|s| s.node == id)
}

/// What an agent reported for this event (a Sentinel channel such as `+switch-master`, or
/// the agent's own `role-change` / `fenced`); None for the coordinator's own events.
fn reported(e: &Event) -> Option<&str> {
    (e.kind == "sentinel").then(|| e.message.split_whitespace().next().unwrap_or_default())
}

/// Position of the first event that `node`'s agent reported as `kind`.
fn first_reported(events: &[Event], node: &str, kind: &str) -> Option<usize> {
    events
        .iter()
        .position(|e| e.node == node && reported(e) == Some(kind))
}

/// Was a failover in progress in the topology of `version`? The coordinator records
/// `failover started` / `failover ended` with the version where the flag flipped.
fn failover_in_progress_at(events: &[Event], version: u64) -> bool {
    events
        .iter()
        .rev()
        .find(|e| e.kind == "failover" && e.topology_version <= version)
        .is_some_and(|e| e.message == "failover started")
}

/// A master, its replica (synced) and a Sentinel watching them (quorum 1: it decides alone).
async fn replicated(sb: &Sandbox) -> (RedisNode, RedisNode, Sentinel) {
    let m = sb.redis(None).await;
    let r = sb.redis(Some(m.port())).await;
    r.wait_synced_to(m.port()).await;
    let s = sb.sentinel(GROUP, m.port(), 1).await;
    (m, r, s)
}

/// Waits until the Sentinel lists `replica` (otherwise it has no one to promote), with
/// `flag` among its flags when given.
async fn wait_sentinel_sees_replica(
    s: &redis_ha_testkit::Sentinel,
    replica: &str,
    flag: Option<&str>,
) {
    wait_until(
        &format!("the Sentinel to list {replica} with {flag:?}"),
        TIMEOUT,
        || s.lists_replica(replica, flag),
    )
    .await;
}

// ------------------------------------------------------------------ the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_is_reported_before_switch_master() {
    let sb = Sandbox::new();
    let (mut m, r, s) = replicated(&sb).await;
    let coord = Coordinator::start(sb.port()).await;
    let agent = Agent::start(config("node-2", r.port(), s.port(), coord.port));

    let me = format!("127.0.0.1:{}", r.port());
    let old = format!("127.0.0.1:{}", m.port());
    wait_sentinel_sees_replica(&s, &me, None).await;
    let t = coord
        .wait_topology(
            "node-2 UP as a replica, its Sentinel naming the master",
            |t| {
                node(t, "node-2").is_some_and(|n| {
                    n.health() == Health::Up
                        && n.role() == Role::Replica
                        && n.link() == LinkState::Up
                        && n.master_address == old
                }) && sentinel_of(t, "node-2")
                    .is_some_and(|v| v.health() == Health::Up && v.master_address == old)
            },
        )
        .await;
    assert_eq!(t.master_group, GROUP);
    assert_eq!(t.master_address, old, "{}", describe(&t));
    assert_eq!(node(&t, "node-2").unwrap().address, me);
    assert_eq!(
        sentinel_of(&t, "node-2").unwrap().address,
        format!("127.0.0.1:{}", s.port())
    );
    let events = coord.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.kind == "agent" && e.node == "node-2" && e.message.contains(&me)),
        "{}",
        dump(&events)
    );

    let watched = record_watch(&coord).await;
    m.kill();
    coord
        .wait_topology("the Sentinel naming node-2 master, failover over", |t| {
            t.master_address == me
                && t.master_source() == MasterSource::SentinelQuorum
                && t.config_epoch >= 1
                && !t.failover_in_progress
                && sentinel_of(t, "node-2")
                    .is_some_and(|v| v.master_address == me && v.config_epoch >= 1)
        })
        .await;
    let events = coord
        .wait_events("+switch-master from node-2", |ev| {
            first_reported(ev, "node-2", "+switch-master").map(|_| ev.to_vec())
        })
        .await;
    let all = dump(&events);
    let switch = first_reported(&events, "node-2", "+switch-master").unwrap();

    // Every step of the failover up to the promotion arrived before +switch-master.
    for k in [
        "+sdown",
        "+odown",
        "+selected-slave",
        "+failover-state-send-slaveof-noone",
        "role-change",
    ] {
        let at = first_reported(&events, "node-2", k);
        assert!(
            at.is_some_and(|i| i < switch),
            "{k} missing before +switch-master:\n{all}"
        );
    }
    let role_change = &events[first_reported(&events, "node-2", "role-change").unwrap()];
    assert!(
        role_change
            .message
            .ends_with(&format!("{me} replica -> master")),
        "{role_change:?}"
    );
    let selected = &events[first_reported(&events, "node-2", "+selected-slave").unwrap()];
    assert!(
        selected.message.contains(&r.port().to_string()),
        "{selected:?}"
    );

    // The coordinator switched on the promotion, before +switch-master, during the failover.
    let promoted = events
        .iter()
        .position(|e| e.kind == "master-changed" && e.message.contains(&format!(" -> {me} ")))
        .unwrap_or_else(|| panic!("no master-changed to {me}:\n{all}"));
    assert!(promoted < switch, "switched after +switch-master:\n{all}");
    let pe = &events[promoted];
    assert!(
        pe.message.starts_with(&format!("{old} -> {me} (epoch "))
            && pe.message.ends_with(", source promoted)"),
        "{pe:?}"
    );
    assert!(
        !pe.message.contains("(epoch 0,"),
        "a failover epoch: {pe:?}"
    );
    assert_eq!(pe.node, "node-2");
    assert!(
        failover_in_progress_at(&events, pe.topology_version),
        "the promotion was published while the failover was still going on:\n{all}"
    );
    // The promotion (Sentinel closes every client) is not a node outage.
    assert!(
        !events[..switch]
            .iter()
            .any(|e| e.kind == "health" && e.message.starts_with(&format!("redis {me} "))),
        "{all}"
    );

    // Watchers never saw node-2 as a master the coordinator did not name (a split brain).
    let now = coord.topology().await.unwrap();
    let seen = watched.until_version(now.version).await;
    assert!(seen.windows(2).all(|w| w[0].version < w[1].version));
    let as_master: Vec<&Topology> = seen
        .iter()
        .filter(|t| node(t, "node-2").is_some_and(|n| n.role() == Role::Master))
        .collect();
    assert!(!as_master.is_empty(), "the watcher saw the promotion");
    for t in as_master {
        assert!(
            t.master_address == me && t.split_brain.is_empty(),
            "{}",
            describe(t)
        );
    }
    // Nor down: the poll whose connection the promotion closed is asked again at once on a
    // new one (`RedisLink::query`), not reported as an outage.
    for t in &seen {
        assert!(
            node(t, "node-2").is_none_or(|n| n.health() != Health::Down),
            "{}",
            describe(t)
        );
    }

    let t = coord.topology().await.unwrap();
    let n = node(&t, "node-2").unwrap();
    assert!(n.is_master && n.role() == Role::Master, "{}", describe(&t));
    assert_eq!(t.master_node, "node-2");
    assert!(t.master_confirmed);
    agent.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_master_is_fenced() {
    let sb = Sandbox::new();
    let m = sb.redis(None).await;
    let s = sb.sentinel(GROUP, m.port(), 1).await;
    let stray = sb.redis(None).await;
    let coord = Coordinator::start(sb.port()).await;
    let agent = Agent::start(config("node-3", stray.port(), s.port(), coord.port));
    let master = format!("127.0.0.1:{}", m.port());
    let me = format!("127.0.0.1:{}", stray.port());

    let events = coord
        .wait_events("a fenced event from node-3", |ev| {
            first_reported(ev, "node-3", "fenced").map(|_| ev.to_vec())
        })
        .await;
    let fenced = &events[first_reported(&events, "node-3", "fenced").unwrap()];
    assert!(
        fenced.message.contains(&me) && fenced.message.contains(&format!("REPLICAOF {master}")),
        "{fenced:?}"
    );

    let t = coord
        .wait_topology("node-3 a replica of the master, no split brain", |t| {
            t.master_address == master
                && t.split_brain.is_empty()
                && node(t, "node-3").is_some_and(|n| {
                    n.health() == Health::Up
                        && n.role() == Role::Replica
                        && n.master_address == master
                        && !n.is_master
                        && !n.split_brain
                })
        })
        .await;
    assert_eq!(
        t.master_source(),
        MasterSource::SentinelQuorum,
        "{}",
        describe(&t)
    );
    let repl = stray.info("replication").await.unwrap();
    assert_eq!(
        (repl["role"].as_str(), repl["master_port"].as_str()),
        ("slave", m.port().to_string().as_str()),
        "{repl:?}"
    );

    let events = coord.events().await;
    let all = dump(&events);
    let f = first_reported(&events, "node-3", "fenced").unwrap();
    let c = first_reported(&events, "node-3", "role-change").expect("a role change");
    assert!(f < c, "fenced, then the role change:\n{all}");
    assert!(
        events[c].message.ends_with("master -> replica"),
        "{:?}",
        events[c]
    );
    // If the coordinator saw the stray as a split brain before the fencing, it saw it end.
    let split = |claims: bool| {
        events.iter().position(|e| {
            e.kind == "split-brain"
                && e.message.starts_with(&me)
                && e.message.contains("no longer") != claims
        })
    };
    if let Some(start) = split(true) {
        assert!(split(false).is_some_and(|end| end > start), "{all}");
    }
    agent.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_the_named_master_are_not_fenced() {
    let sb = Sandbox::new();
    let (m, r, s) = replicated(&sb).await;
    let coord = Coordinator::start(sb.port()).await;
    let a1 = Agent::start(config("node-1", m.port(), s.port(), coord.port));
    let a2 = Agent::start(config("node-2", r.port(), s.port(), coord.port));
    let master = format!("127.0.0.1:{}", m.port());
    coord
        .wait_topology("node-1 confirmed master, node-2 its replica", |t| {
            t.master_address == master
                && t.master_confirmed
                && node(t, "node-1").is_some_and(|n| n.is_master && n.role() == Role::Master)
                && node(t, "node-2").is_some_and(|n| {
                    n.role() == Role::Replica
                        && n.link() == LinkState::Up
                        && n.master_address == master
                })
        })
        .await;
    // Well past the grace period (600 ms, heartbeat 300 ms), on both.
    coord.wait_reports(&["node-1", "node-2"], 8).await;

    let events = coord.events().await;
    assert!(
        !events
            .iter()
            .any(|e| reported(e) == Some("fenced") || e.kind == "split-brain"),
        "{}",
        dump(&events)
    );
    let t = coord.topology().await.unwrap();
    assert_eq!(t.master_address, master, "{}", describe(&t));
    assert!(t.split_brain.is_empty());
    assert_eq!(node(&t, "node-1").unwrap().role(), Role::Master);
    assert_eq!(node(&t, "node-2").unwrap().role(), Role::Replica);
    assert_eq!(m.role().await.unwrap(), "master");
    assert_eq!(r.role().await.unwrap(), "slave");
    a1.stop().await.unwrap();
    a2.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_the_coordinator_and_a_dead_redis_is_reported() {
    let sb = Sandbox::new();
    let (m, mut r, s) = replicated(&sb).await;
    // The coordinator is not there yet: its port is chosen now, served later.
    let coord_port = sb.port();
    let agent = Agent::start(config("node-1", m.port(), s.port(), coord_port));

    let replica = format!("127.0.0.1:{}", r.port());
    wait_sentinel_sees_replica(&s, &replica, None).await;
    r.kill();
    // Sentinel published +sdown when it set the flag: before the coordinator exists.
    wait_sentinel_sees_replica(&s, &replica, Some("s_down")).await;

    let coord = Coordinator::start(coord_port).await;
    let events = coord
        .wait_events("the +sdown queued during the outage", |ev| {
            ev.iter()
                .any(|e| {
                    e.node == "node-1"
                        && reported(e) == Some("+sdown")
                        && e.message.contains(&replica)
                })
                .then(|| ev.to_vec())
        })
        .await;
    let sdown: Vec<&Event> = events
        .iter()
        .filter(|e| reported(e) == Some("+sdown") && e.message.contains(&replica))
        .collect();
    assert!(sdown[0].at_ms > 0, "stamped when the agent received it");

    // Now the node itself dies.
    let me = format!("127.0.0.1:{}", m.port());
    drop(m);
    let t = coord
        .wait_topology("node-1 reported down", |t| {
            node(t, "node-1").is_some_and(|n| n.health() == Health::Down)
        })
        .await;
    let n = node(&t, "node-1").unwrap();
    assert!(!n.error.is_empty(), "{}", describe(&t));
    assert_eq!(n.role(), Role::Unspecified);
    assert_eq!(n.agent_health(), Health::Up, "the agent itself is fine");
    assert_eq!(
        sentinel_of(&t, "node-1").unwrap().health(),
        Health::Up,
        "{}",
        describe(&t)
    );
    let events = coord.events().await;
    assert!(
        events.iter().any(|e| e.kind == "health"
            && e.node == "node-1"
            && e.message == format!("redis {me} on node-1: UP -> DOWN")),
        "{}",
        dump(&events)
    );
    // Heartbeats keep going while Redis is down.
    coord.wait_reports(&["node-1"], 3).await;
    let t = coord.topology().await.unwrap();
    let n = node(&t, "node-1").unwrap();
    assert_eq!(
        (n.health(), n.agent_health()),
        (Health::Down, Health::Up),
        "{}",
        describe(&t)
    );
    agent.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test]
async fn bad_config_is_the_only_error() {
    let c = AgentConfig {
        coordinator_url: "ftp://nowhere".into(),
        resolve_wait_ms: 0,
        metrics_addr: String::new(),
        ..AgentConfig::default()
    };
    let e = run(c, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("coordinator_url"), "{e}");

    // Nothing to talk to at all: it runs (reporting failures) until stopped. A negative check
    // ("it does not give up"), observed over something it does rather than a span of time: it
    // keeps trying the coordinator, whose port only accepts connections and closes them.
    let sb = Sandbox::new();
    let dead = sb.port();
    let coordinator = redis_ha_testkit::ports::bind(sb.port()).await;
    let coordinator_port = coordinator.local_addr().unwrap().port();
    let agent = Agent::start(config("node-9", dead, dead, coordinator_port));
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let attempts = &attempts;
    wait_until(
        "the agent to try the coordinator again after a failure",
        TIMEOUT,
        || async {
            tokio::select! {
                accepted = coordinator.accept() => {
                    // Dropped at once: the agent's report fails.
                    drop(accepted);
                    attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            assert!(!agent.is_finished(), "the agent gave up on its own");
            attempts.load(std::sync::atomic::Ordering::Relaxed) >= 3
        },
    )
    .await;
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_sentinel_is_reported_and_resubscribed() {
    let sb = Sandbox::new();
    let (m, r, mut s) = replicated(&sb).await;
    let coord = Coordinator::start(sb.port()).await;
    let agent = Agent::start(config("node-1", m.port(), s.port(), coord.port));
    let me = format!("127.0.0.1:{}", m.port());
    let replica = format!("127.0.0.1:{}", r.port());
    let sentinel_addr = format!("127.0.0.1:{}", s.port());
    wait_sentinel_sees_replica(&s, &replica, None).await;
    coord
        .wait_topology("node-1 master, its Sentinel up", |t| {
            t.master_address == me
                && sentinel_of(t, "node-1").is_some_and(|v| v.health() == Health::Up)
        })
        .await;

    // Hung, not dead: sockets stay open, nothing answers. Short enough not to put the
    // Sentinel into TILT mode (2 s without its timer).
    s.pause();
    let hung = coord
        .wait_topology("the Sentinel reported unreachable", |t| {
            sentinel_of(t, "node-1").is_some_and(|v| v.health() == Health::Down)
        })
        .await;
    s.resume();
    let err = &sentinel_of(&hung, "node-1").unwrap().error;
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(
        node(&hung, "node-1").unwrap().health(),
        Health::Up,
        "only the Sentinel hangs"
    );
    coord
        .wait_topology("the Sentinel back", |t| {
            t.version > hung.version
                && sentinel_of(t, "node-1").is_some_and(|v| v.health() == Health::Up)
        })
        .await;
    let back = coord
        .wait_events("the Sentinel's health events", |ev| {
            let health = |what: &str| {
                ev.iter().position(|e| {
                    e.kind == "health"
                        && e.message == format!("sentinel {sentinel_addr} on node-1: {what}")
                })
            };
            match (health("UP -> DOWN"), health("DOWN -> UP")) {
                (Some(down), Some(up)) if down < up => Some(up),
                _ => None,
            }
        })
        .await;

    // Events flow again after the stall: a manual failover publishes a whole sequence.
    wait_until("SENTINEL FAILOVER accepted", TIMEOUT, || s.failover()).await;
    let t = coord
        .wait_topology("node-1 demoted, the replica named master", |t| {
            t.master_address == replica
                && node(t, "node-1").is_some_and(|n| n.role() == Role::Replica)
        })
        .await;
    assert!(!node(&t, "node-1").unwrap().is_master, "{}", describe(&t));
    let events = coord
        .wait_events("node-1's role change after the stall", |ev| {
            first_reported(&ev[back..], "node-1", "role-change").map(|_| ev.to_vec())
        })
        .await;
    let all = dump(&events);
    let after = &events[back..];
    for k in [
        "+new-epoch",
        "+try-failover",
        "+selected-slave",
        "role-change",
    ] {
        assert!(
            first_reported(after, "node-1", k).is_some(),
            "{k} missing after the stall:\n{all}"
        );
    }
    let rc = &after[first_reported(after, "node-1", "role-change").unwrap()];
    assert!(rc.message.ends_with("master -> replica"), "{rc:?}");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "master-changed"
                && e.message.starts_with(&format!("{me} -> {replica} "))),
        "{all}"
    );
    // Sentinel leaves the old master alone for seconds after +switch-master; fencing may
    // demote it first, but never while the failover runs.
    if let Some(f) = first_reported(&events, "node-1", "fenced") {
        let sw = first_reported(&events, "node-1", "+switch-master");
        assert!(
            sw.is_some_and(|sw| f > sw),
            "fenced during the failover:\n{all}"
        );
    }
    agent.stop().await.unwrap();
    coord.stop().await;
}

/// The Sentinel's ping-period as `SENTINEL DEBUG` shows it.
async fn ping_period(s: &redis_ha_testkit::Sentinel) -> Result<u64, String> {
    let v: redis::Value = s
        .query(redis::cmd("SENTINEL").arg("DEBUG"))
        .await
        .map_err(|e| e.to_string())?;
    redis_ha_sentinel::timers::parse_ping_period(&v).map_err(|e| e.to_string())
}

/// Ok when the Sentinel's ping-period is `want`.
async fn ping_period_is(s: &redis_ha_testkit::Sentinel, want: u64) -> Result<(), String> {
    match ping_period(s).await {
        Ok(p) if p == want => Ok(()),
        other => Err(format!("ping-period {other:?}, want {want}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_ping_period_follows_down_after_across_a_sentinel_restart() {
    let sb = Sandbox::new();
    let (_m, r, mut s) = replicated(&sb).await;
    let want = redis_ha_sentinel::timers::ping_period_ms(
        redis_ha_testkit::sentinel::DEFAULT_DOWN_AFTER_MS,
    );
    assert!(want < redis_ha_sentinel::timers::DEFAULT_PING_PERIOD_MS);
    assert_eq!(
        ping_period(&s).await,
        Ok(redis_ha_sentinel::timers::DEFAULT_PING_PERIOD_MS)
    );
    let coord = Coordinator::start(sb.port()).await;
    let agent = Agent::start(config("node-2", r.port(), s.port(), coord.port));
    wait_until(
        "the agent to set its Sentinel's ping-period",
        TIMEOUT,
        || ping_period_is(&s, want),
    )
    .await;
    // A restarted Sentinel is back at its default, and is set again.
    s.restart().await;
    wait_until(
        "the agent to set it again after the restart",
        TIMEOUT,
        || ping_period_is(&s, want),
    )
    .await;
    agent.stop().await.unwrap();
    coord.stop().await;
}

/// Two client connections to `r` whose last command was `PING`: the agent's follow connection,
/// made again, and its close watch's (the agent's poll connection's last command is `ROLE`).
async fn follow_and_watch(r: &RedisNode) -> Result<(), String> {
    match r.clients_last_at("ping").await.map_err(|e| e.to_string())? {
        (2, _) => Ok(()),
        (n, list) => Err(format!(
            "{n} connections whose last command was PING:\n{list}"
        )),
    }
}

/// Sentinel's promotion ends in `CLIENT KILL TYPE normal`, and that close is what the agent reads
/// the promotion at: with the full poll an hour apart, no Sentinel and no failover in progress
/// (no fast poll), only the held connection's close can make it read `ROLE` and report the
/// promoted node within the test's wait. The follow's connection, closed too, is made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_is_read_at_its_client_kill_not_at_the_next_poll() {
    let sb = Sandbox::new();
    let m = sb.redis(None).await;
    let mut r = sb.redis(Some(m.port())).await;
    r.wait_synced_to(m.port()).await;
    let coord = Coordinator::start(sb.port()).await;
    let no_sentinel = sb.port();
    let mut c = config("node-2", r.port(), no_sentinel, coord.port);
    c.heartbeat_ms = 3_600_000;
    c.fencing = false;
    let agent = Agent::start(c);
    coord
        .wait_topology("node-2 reported as a replica", |t| {
            node(t, "node-2").is_some_and(|n| n.role() == Role::Replica)
        })
        .await;

    // The promotion as Sentinel sends it: one transaction, the kill last.
    let mut con = redis_ha_testkit::client::connect(r.port(), None)
        .await
        .unwrap();
    let _: redis::Value = redis::pipe()
        .atomic()
        .cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut con)
        .await
        .unwrap();

    let events = coord
        .wait_events("node-2's role change to master", |ev| {
            ev.iter()
                .any(|e| {
                    reported(e) == Some("role-change")
                        && e.node == "node-2"
                        && e.message.ends_with("replica -> master")
                })
                .then(|| ev.to_vec())
        })
        .await;
    assert!(
        !events.iter().any(|e| e.kind == "failover"),
        "no failover ran: the fast poll was off\n{}",
        dump(&events)
    );
    // The same kill closed the follow's connection: made again at once (its last command a
    // `PING`, as the close watch's own), not at the next follow's `REPLICAOF`.
    wait_until(
        "the follow's and the close watch's connections made again",
        TIMEOUT,
        || follow_and_watch(&r),
    )
    .await;
    // A node down for a while: what was closed meanwhile is made again when the watch's
    // connection opens again (the agent reporting the node down shows the watch saw it go).
    r.kill();
    coord
        .wait_topology("node-2 reported not up", |t| {
            node(t, "node-2").is_some_and(|n| n.health() != Health::Up)
        })
        .await;
    r.start();
    wait_until("both made again after the node came back", TIMEOUT, || {
        follow_and_watch(&r)
    })
    .await;
    agent.stop().await.unwrap();
    coord.stop().await;
}
