//! The whole agent (`run`) against real Redis and Sentinel processes, reporting to a
//! recording gRPC server that speaks the coordinator's contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use redis_ha_agent::{run, AgentConfig, AgentError};
use redis_ha_common::HostPort;
use redis_ha_proto::v1::{AgentReport, LinkState, Role};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const GROUP: &str = "redis-cluster";

fn config(node: &str, redis_port: u16, sentinel_port: u16, coordinator_port: u16) -> AgentConfig {
    AgentConfig {
        node_id: node.into(),
        master_group: GROUP.into(),
        redis_addr: HostPort::new("127.0.0.1", redis_port),
        sentinel_addr: HostPort::new("127.0.0.1", sentinel_port),
        coordinator_url: format!("http://127.0.0.1:{coordinator_port}"),
        heartbeat_ms: 300,
        io_timeout_ms: 500,
        resolve_wait_ms: 0,
        fencing_grace_ms: 600,
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

    async fn stop(mut self) -> Result<(), AgentError> {
        self.stop.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn kinds(reports: &[AgentReport]) -> Vec<String> {
    reports
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.kind.clone()))
        .collect()
}

fn check_sequence(reports: &[AgentReport]) {
    assert!(!reports.is_empty());
    for w in reports.windows(2) {
        assert!(w[0].sequence < w[1].sequence, "sequence must increase");
        assert_eq!(w[0].agent_started_at_ms, w[1].agent_started_at_ms);
    }
}

async fn wait_link_up(port: u16) {
    eventually("replica link up", || {
        raw_command(port, "INFO replication")
            .contains("master_link_status:up")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_is_reported_before_switch_master() {
    let mut m = redis(&[]);
    let mp = m.port.to_string();
    let r = redis(&["--replicaof", "127.0.0.1", &mp]);
    wait_link_up(r.port).await;
    let s = sentinel(GROUP, m.port);
    let coord = free_port();
    let stop_server = CancellationToken::new();
    let rec = serve_recorder(coord, stop_server.clone()).await;
    let agent = Agent::start(config("node-2", r.port, s.port, coord));

    let me = format!("127.0.0.1:{}", r.port);
    let old = format!("127.0.0.1:{}", m.port);
    rec_wait(&rec, "a report of the healthy replica", |rep| {
        let redis = rep.redis.as_ref().unwrap();
        let sentinel = rep.sentinel.as_ref().unwrap();
        redis.reachable
            && redis.role() == Role::Replica
            && redis.link() == LinkState::Up
            && sentinel.master_address == old
            && sentinel.replicas.iter().any(|v| v.address == me)
    })
    .await;
    let first = rec.all()[0].clone();
    assert_eq!(first.reason, "startup");
    assert_eq!(first.agent_id, "node-2");
    assert_eq!(first.master_group, GROUP);
    assert_eq!(first.redis.as_ref().unwrap().address, me);

    m.kill();
    let promoted = rec_wait(&rec, "the promotion", |rep| {
        rep.redis.as_ref().unwrap().role() == Role::Master
    })
    .await;
    let redis = promoted.redis.as_ref().unwrap();
    assert!(redis.reachable);
    assert!(redis.role_changed_at_ms > 0);
    assert_eq!(promoted.reason, "role-change");
    assert!(
        promoted.failover_in_progress,
        "reported while the failover is still going on"
    );

    let upto: Vec<AgentReport> = rec
        .all()
        .into_iter()
        .take_while(|r| r.sequence <= promoted.sequence)
        .collect();
    assert!(
        upto.iter().all(|r| r.redis.as_ref().unwrap().reachable),
        "the promotion (Sentinel closes every client) is not a node outage"
    );
    let before = kinds(&upto);
    for k in [
        "+sdown",
        "+odown",
        "+selected-slave",
        "+failover-state-send-slaveof-noone",
        "role-change",
    ] {
        assert!(
            before.iter().any(|x| x == k),
            "{k} missing before the promotion report: {before:?}"
        );
    }
    assert!(
        !before.iter().any(|x| x == "+switch-master"),
        "the promotion must be reported before +switch-master: {before:?}"
    );
    let selected = upto
        .iter()
        .flat_map(|r| r.events.iter())
        .find(|e| e.kind == "+selected-slave")
        .unwrap();
    assert!(
        selected.payload.contains(&r.port.to_string()),
        "{selected:?}"
    );
    assert!(
        selected.epoch >= 1,
        "stamped with the failover epoch: {selected:?}"
    );
    assert_eq!(selected.sentinel, format!("127.0.0.1:{}", s.port));

    let done = rec_wait(&rec, "the Sentinel naming the new master", |rep| {
        let sentinel = rep.sentinel.as_ref().unwrap();
        sentinel.master_address == me && sentinel.config_epoch >= 1
    })
    .await;
    assert!(done.sentinel.as_ref().unwrap().current_epoch >= 1);
    rec_wait(&rec, "failover over", |rep| {
        kinds(std::slice::from_ref(rep))
            .iter()
            .any(|k| k == "+switch-master")
            || (!rep.failover_in_progress && rep.sequence > promoted.sequence)
    })
    .await;
    check_sequence(&rec.all());
    for rep in rec.all() {
        eprintln!(
            "seq {} {} reason {} role {:?} changed_at {} fip {} sentinel {} ep {} events {:?}",
            rep.sequence,
            rep.observed_at_ms,
            rep.reason,
            rep.redis.as_ref().unwrap().role(),
            rep.redis.as_ref().unwrap().role_changed_at_ms,
            rep.failover_in_progress,
            rep.sentinel.as_ref().unwrap().master_address,
            rep.sentinel.as_ref().unwrap().current_epoch,
            rep.events
                .iter()
                .map(|e| format!("{}@{}", e.kind, e.received_at_ms))
                .collect::<Vec<_>>()
        );
    }
    agent.stop().await.unwrap();
    stop_server.cancel();
}

async fn rec_wait(rec: &Recorder, what: &str, f: impl Fn(&AgentReport) -> bool) -> AgentReport {
    eventually(what, || rec.find(&f)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_master_is_fenced() {
    let m = redis(&[]);
    let s = sentinel(GROUP, m.port);
    let stray = redis(&[]);
    let coord = free_port();
    let stop_server = CancellationToken::new();
    let rec = serve_recorder(coord, stop_server.clone()).await;
    let agent = Agent::start(config("node-3", stray.port, s.port, coord));

    let fenced = rec_wait(&rec, "a fenced event", |rep| {
        rep.events.iter().any(|e| e.kind == "fenced")
    })
    .await;
    let ev = fenced.events.iter().find(|e| e.kind == "fenced").unwrap();
    assert!(
        ev.payload.contains(&format!("127.0.0.1:{}", m.port)),
        "{ev:?}"
    );

    let master = format!("127.0.0.1:{}", m.port);
    rec_wait(
        &rec,
        "the stray reported as a replica of the master",
        |rep| {
            let r = rep.redis.as_ref().unwrap();
            r.role() == Role::Replica && r.master_address == master
        },
    )
    .await;
    let role = raw_command(stray.port, "ROLE");
    assert!(
        role.contains("slave") && role.contains(&m.port.to_string()),
        "{role}"
    );
    let all = kinds(&rec.all());
    let f = all.iter().position(|k| k == "fenced").unwrap();
    let c = all.iter().position(|k| k == "role-change").unwrap();
    assert!(f < c, "fenced, then the role change: {all:?}");
    check_sequence(&rec.all());
    agent.stop().await.unwrap();
    stop_server.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_the_named_master_are_not_fenced() {
    let m = redis(&[]);
    let mp = m.port.to_string();
    let r = redis(&["--replicaof", "127.0.0.1", &mp]);
    wait_link_up(r.port).await;
    let s = sentinel(GROUP, m.port);
    let coord = free_port();
    let stop_server = CancellationToken::new();
    let rec = serve_recorder(coord, stop_server.clone()).await;
    let a1 = Agent::start(config("node-1", m.port, s.port, coord));
    let a2 = Agent::start(config("node-2", r.port, s.port, coord));
    // Well past the grace period, on both.
    for node in ["node-1", "node-2"] {
        eventually("many heartbeats", || {
            (rec.all().iter().filter(|r| r.agent_id == node).count() >= 8).then_some(())
        })
        .await;
    }
    assert!(!kinds(&rec.all()).iter().any(|k| k == "fenced"));
    assert!(raw_command(m.port, "ROLE").contains("master"));
    assert!(raw_command(r.port, "ROLE").contains("slave"));
    a1.stop().await.unwrap();
    a2.stop().await.unwrap();
    stop_server.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_the_coordinator_and_a_dead_redis_is_reported() {
    let m = redis(&[]);
    let mp = m.port.to_string();
    let mut r = redis(&["--replicaof", "127.0.0.1", &mp]);
    wait_link_up(r.port).await;
    let s = sentinel(GROUP, m.port);
    let coord = free_port();
    // The coordinator is not there yet.
    let agent = Agent::start(config("node-1", m.port, s.port, coord));

    let mut sp = redis_ha_agent::SentinelProbe::new(
        HostPort::new("127.0.0.1", s.port),
        None,
        Duration::from_millis(500),
    )
    .unwrap();
    let replica = format!("127.0.0.1:{}", r.port);
    loop {
        let st = sp.status(GROUP).await;
        if st.replicas.iter().any(|v| v.address == replica) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    r.kill();
    loop {
        let st = sp.status(GROUP).await;
        if st
            .replicas
            .iter()
            .any(|v| v.address == replica && v.flags.iter().any(|f| f == "s_down"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stop_server = CancellationToken::new();
    let rec = serve_recorder(coord, stop_server.clone()).await;
    let with_sdown = rec_wait(&rec, "the +sdown queued during the outage", |rep| {
        rep.events
            .iter()
            .any(|e| e.kind == "+sdown" && e.payload.contains(&replica))
    })
    .await;
    let first = rec.all()[0].clone();
    assert!(
        first.sequence > 1,
        "earlier attempts failed: {}",
        first.sequence
    );
    assert!(with_sdown.sequence >= first.sequence);

    // Now the node itself dies.
    drop(m);
    let down = rec_wait(&rec, "redis reported down", |rep| {
        !rep.redis.as_ref().unwrap().reachable
    })
    .await;
    let redis = down.redis.as_ref().unwrap();
    assert!(!redis.error.is_empty());
    assert_eq!(redis.role(), Role::Unspecified);
    let n = rec.all().len();
    eventually("heartbeats keep going while redis is down", || {
        (rec.all().len() >= n + 3).then_some(())
    })
    .await;
    check_sequence(&rec.all());
    agent.stop().await.unwrap();
    stop_server.cancel();
}

#[tokio::test]
async fn bad_config_is_the_only_error() {
    let c = AgentConfig {
        coordinator_url: "ftp://nowhere".into(),
        resolve_wait_ms: 0,
        ..AgentConfig::default()
    };
    let e = run(c, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("coordinator_url"), "{e}");

    // Nothing to talk to at all: it runs (reporting failures) until stopped.
    let dead = free_port();
    let agent = Agent::start(config("node-9", dead, dead, dead));
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_sentinel_is_reported_and_resubscribed() {
    let m = redis(&[]);
    let mp = m.port.to_string();
    let r = redis(&["--replicaof", "127.0.0.1", &mp]);
    wait_link_up(r.port).await;
    let s = sentinel(GROUP, m.port);
    let coord = free_port();
    let stop_server = CancellationToken::new();
    let rec = serve_recorder(coord, stop_server.clone()).await;
    let agent = Agent::start(config("node-1", m.port, s.port, coord));
    let replica = format!("127.0.0.1:{}", r.port);
    rec_wait(&rec, "the Sentinel knows the replica", |rep| {
        let st = rep.sentinel.as_ref().unwrap();
        st.reachable && st.replicas.iter().any(|v| v.address == replica)
    })
    .await;

    // Hung, not dead: sockets stay open, nothing answers. Short enough not to put the
    // Sentinel into TILT mode (2 s without its timer).
    s.pause(true);
    let hung = rec_wait(&rec, "the Sentinel reported unreachable", |rep| {
        !rep.sentinel.as_ref().unwrap().reachable
    })
    .await;
    s.pause(false);
    let err = &hung.sentinel.as_ref().unwrap().error;
    assert!(err.contains("timed out"), "{err}");
    rec_wait(&rec, "the Sentinel back", |rep| {
        rep.sequence > hung.sequence && rep.sentinel.as_ref().unwrap().reachable
    })
    .await;

    // Events flow again after the stall: a manual failover publishes a whole sequence.
    let reply = eventually("SENTINEL FAILOVER accepted", || {
        let reply = raw_command(s.port, &format!("SENTINEL FAILOVER {GROUP}"));
        reply.starts_with("+OK").then_some(reply)
    })
    .await;
    assert!(reply.starts_with("+OK"));
    let demoted = rec_wait(&rec, "this node demoted by the failover", |rep| {
        rep.sequence > hung.sequence && rep.redis.as_ref().unwrap().role() == Role::Replica
    })
    .await;
    let all = kinds(&rec.all());
    for k in [
        "+new-epoch",
        "+try-failover",
        "+selected-slave",
        "role-change",
    ] {
        assert!(all.iter().any(|x| x == k), "{k} missing: {all:?}");
    }
    // Sentinel leaves the old master alone for seconds after +switch-master; fencing may
    // demote it first, but never while the failover runs.
    if let Some(f) = all.iter().position(|k| k == "fenced") {
        let sw = all.iter().position(|k| k == "+switch-master").unwrap();
        assert!(f > sw, "fenced during the failover: {all:?}");
    }
    assert!(demoted.redis.as_ref().unwrap().role_changed_at_ms > 0);
    check_sequence(&rec.all());
    agent.stop().await.unwrap();
    stop_server.cancel();
}
