//! The whole reloader loop against real HAProxy + Redis: following real Sentinels (no
//! coordinator), and following the real coordinator (served in this process) fed with the
//! reports its health agents would send about the real Redis processes.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_ha_common::HostPort;
use redis_ha_coordinator::{CoordinatorConfig, InProcess};
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{
    AgentReport, Event, GetTopologyRequest, LinkState, ListEventsRequest, MasterSource,
    RedisStatus, Role, SentinelEvent, SentinelStatus, Topology,
};
use redis_ha_reloader::decision::Source;
use redis_ha_reloader::{Reloader, ReloaderConfig, ReloaderStatus};
use redis_ha_testkit::{client, wait_until, Haproxy, RedisNode, Sandbox, TIMEOUT};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const GROUP: &str = "redis-cluster";

fn config(hap: &Haproxy) -> ReloaderConfig {
    ReloaderConfig {
        coordinator_url: String::new(),
        haproxy_runtime: vec![hap.runtime_endpoint()],
        resync_interval_ms: 200,
        io_timeout_ms: 1000,
        metrics_addr: String::new(),
        // Plaintext: the fake fleet below reports for every node over one connection bound to
        // 127.0.0.2 (who may report what is tests/tests/tls.rs's; the harness runs TLS).
        tls: redis_ha_tls::TlsSettings::insecure(),
        ..Default::default()
    }
}

/// "master" / "slave" from ROLE on 127.0.0.1:`port`.
async fn role(port: u16) -> Option<String> {
    client::role(port, None).await.ok()
}

/// The earliest of the reloader's last checks of its HAProxies (`None` before every one was
/// checked once).
fn last_check(status: &watch::Receiver<ReloaderStatus>) -> Option<Instant> {
    let st = status.borrow();
    st.instances.values().map(|i| i.last_check).min().flatten()
}

/// A negative check ("nothing moves"): asserts `holds` again and again until the reloader has
/// checked every HAProxy `rounds` more times (its periodic read-back, every 200 ms here), so
/// the window is counted in the reloader's own rounds rather than in wall-clock time.
async fn holds_over_resyncs<F, Fut>(
    status: &watch::Receiver<ReloaderStatus>,
    rounds: usize,
    what: &str,
    holds: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let state = Mutex::new((last_check(status), 0usize));
    let holds = &holds;
    wait_until(
        &format!("{rounds} resyncs of the reloader while {what}"),
        TIMEOUT,
        || async {
            if let Err(e) = holds().await {
                panic!("{what}: no longer so: {e}");
            }
            let (seen, done) = &mut *state.lock().await;
            let now = last_check(status);
            if now > *seen {
                *seen = now;
                *done += 1;
            }
            *done >= rounds
        },
    )
    .await;
}

#[tokio::test]
async fn follows_the_sentinels_without_a_coordinator() {
    let _t = redis_ha_common::telemetry::init("reloader-test");
    let sb = Sandbox::new();
    let mut master = sb.redis(None).await;
    let r2 = sb.redis(Some(master.port())).await;
    let r3 = sb.redis(Some(master.port())).await;
    let ports = [master.port(), r2.port(), r3.port()];
    let mut sentinels = Vec::new();
    for _ in 0..3 {
        sentinels.push(sb.sentinel(GROUP, master.port(), 2).await);
    }
    let mut hap = sb.haproxy(&ports).await;

    let mut cfg = config(&hap);
    cfg.sentinels = sentinels
        .iter()
        .map(|s| HostPort::new("127.0.0.1", s.port()))
        .collect();
    let reloader = Reloader::new(cfg).unwrap();
    let status = reloader.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(reloader.run(cancel.clone()));

    hap.wait_routed_to(ports[0]).await;

    // The Sentinels must know the replicas (someone to promote) and each other (a quorum to
    // elect a leader) before the master fails.
    let sentinels = &sentinels;
    wait_until(
        "every Sentinel to see 2 replicas and 2 other Sentinels",
        TIMEOUT,
        || async move {
            for s in sentinels {
                s.ready_state(2, 2).await?;
            }
            Ok::<_, String>(())
        },
    )
    .await;

    master.kill();
    let hap_ref = &hap;
    let new_master = wait_until("routing to a promoted master", TIMEOUT, || async move {
        match hap_ref.routed_port().await {
            Some(p) if p != ports[0] && role(p).await.as_deref() == Some("master") => Some(p),
            _ => None,
        }
    })
    .await;
    assert!(new_master == ports[1] || new_master == ports[2]);
    {
        let st = status.borrow();
        let d = st.decision.as_ref().unwrap();
        assert!(d.config_epoch >= 1, "{d:?}");
        assert_eq!(
            d.master_address(),
            Some(&HostPort::new("127.0.0.1", new_master))
        );
    }

    // HAProxy restarts: back to all-maint; the read-back re-applies.
    hap.restart().await;
    // Routing re-applied after a HAProxy restart.
    hap.wait_routed_to(new_master).await;

    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// The coordinator served in this process (its own launcher) on `port`; a restart is a new
/// server on the same port (a new process as far as clients can tell: empty state, versions
/// from 1).
async fn start_coordinator(port: u16) -> InProcess {
    // The port of a coordinator just stopped may take a moment to be free again.
    let listener = redis_ha_testkit::ports::bind(port).await;
    let config = CoordinatorConfig {
        listen_addr: format!("127.0.0.1:{port}"),
        // Heartbeats come every 300 ms; generous so a slow machine never marks a node stale.
        stale_after_ms: 10_000,
        metrics_addr: String::new(),
        // As the reloader's `config`.
        tls: redis_ha_tls::TlsSettings::insecure(),
        ..Default::default()
    };
    InProcess::spawn(config, listener).unwrap()
}

/// Ends every stream and closes the port.
async fn stop_coordinator(coordinator: InProcess) {
    tokio::time::timeout(TIMEOUT, coordinator.stop())
        .await
        .expect("the coordinator stops")
        .unwrap()
        .unwrap();
}

/// The source address of the fleet's connections to the coordinator, so the reloader's
/// connection (from 127.0.0.1) can be told apart in the kernel's socket table.
const FLEET_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Connections from 127.0.0.1 accepted on the coordinator's port: the reloader's watch.
fn reloader_connections(coordinator_port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{coordinator_port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local address, remote address, state (01 = ESTABLISHED)
            f.len() > 3 && f[1] == local && f[2].starts_with("0100007F:") && f[3] == "01"
        })
        .count()
}

/// What one health agent sees of its node and its Sentinel.
#[derive(Clone, Debug)]
struct Agent {
    port: u16,
    role: Role,
    /// The master it replicates (replicas only).
    replica_of: u16,
    sentinel_master: u16,
    sentinel_epoch: u64,
    current_epoch: u64,
    failover: bool,
    role_changed_at_ms: i64,
}

struct FleetInner {
    agents: Vec<Agent>,
    sequence: u64,
    client: Option<CoordinatorClient<Channel>>,
}

/// The three health agents, synthetic: the test changes the real Redis roles first, then
/// reports them as the real agents would. One lock serializes the reports, so sequence numbers
/// reach the coordinator in order.
struct Fleet {
    url: String,
    started_at_ms: i64,
    inner: Mutex<FleetInner>,
}

/// Does `t` name the node on `port` master at `epoch`, as `source` says?
fn names(t: &Topology, port: u16, epoch: u64, source: MasterSource) -> bool {
    t.master_address == address(port) && t.config_epoch == epoch && t.master_source() == source
}

fn address(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

impl Fleet {
    /// node-1 master, node-2 and node-3 its replicas, every Sentinel at epoch 0 naming node-1.
    fn new(url: String, ports: &[u16]) -> Arc<Self> {
        let agents = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| Agent {
                port,
                role: if i == 0 { Role::Master } else { Role::Replica },
                replica_of: ports[0],
                sentinel_master: ports[0],
                sentinel_epoch: 0,
                current_epoch: 0,
                failover: false,
                role_changed_at_ms: 0,
            })
            .collect();
        Arc::new(Self {
            url,
            started_at_ms: redis_ha_common::time::now_ms(),
            inner: Mutex::new(FleetInner {
                agents,
                sequence: 0,
                client: None,
            }),
        })
    }

    /// Agent `node` sees its Redis change role (a replica of `replica_of`), and reports it.
    async fn role_changed(&self, node: usize, role: Role, replica_of: Option<u16>) {
        self.update(node, |a| {
            a.role = role;
            if let Some(m) = replica_of {
                a.replica_of = m;
            }
            a.role_changed_at_ms = redis_ha_common::time::now_ms();
        })
        .await;
        self.report_taken(node, "role-change", Vec::new()).await;
    }

    /// Changes what agent `node` (1-based) sees; reported with its next report.
    async fn update(&self, node: usize, f: impl FnOnce(&mut Agent)) {
        f(&mut self.inner.lock().await.agents[node - 1]);
    }

    async fn client(
        url: &str,
        slot: &mut Option<CoordinatorClient<Channel>>,
    ) -> Option<CoordinatorClient<Channel>> {
        if slot.is_none() {
            let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
                .unwrap()
                .local_address(Some(IpAddr::V4(FLEET_IP)))
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .ok()?;
            *slot = Some(CoordinatorClient::new(channel));
        }
        slot.clone()
    }

    fn report_of(&self, node: usize, a: &Agent, sequence: u64, reason: &str) -> AgentReport {
        // A replica names its master and its link to it; a master neither.
        let (master_address, link) = if a.role == Role::Replica {
            (address(a.replica_of), LinkState::Up)
        } else {
            (String::new(), LinkState::Unspecified)
        };
        let mut flags = vec!["master".to_owned()];
        if a.failover {
            flags.push("failover_in_progress".to_owned());
        }
        AgentReport {
            agent_id: format!("node-{node}"),
            master_group: GROUP.into(),
            sequence,
            agent_started_at_ms: self.started_at_ms,
            observed_at_ms: redis_ha_common::time::now_ms(),
            reason: reason.into(),
            redis: Some(RedisStatus {
                address: address(a.port),
                reachable: true,
                role: a.role as i32,
                master_address,
                link: link as i32,
                ping_micros: 100,
                role_changed_at_ms: a.role_changed_at_ms,
                run_id: format!("run-{}", a.port),
                ..Default::default()
            }),
            sentinel: Some(SentinelStatus {
                // Only the Failover command would talk to it; this test sends none.
                address: address(26379 + u16::try_from(node).unwrap()),
                reachable: true,
                master_address: address(a.sentinel_master),
                config_epoch: a.sentinel_epoch,
                master_flags: flags,
                quorum: 2,
                other_sentinels: 2,
                current_epoch: a.current_epoch,
                ..Default::default()
            }),
            events: Vec::new(),
            failover_in_progress: a.failover,
            master_watch: None,
        }
    }

    /// Sends agent `node`'s report; the topology version after it, `None` when the
    /// coordinator is unreachable.
    async fn report(&self, node: usize, reason: &str, events: Vec<SentinelEvent>) -> Option<u64> {
        let mut inner = self.inner.lock().await;
        let mut client = Self::client(&self.url, &mut inner.client).await?;
        inner.sequence += 1;
        let mut report = self.report_of(node, &inner.agents[node - 1], inner.sequence, reason);
        report.events = events;
        match client.report(report).await {
            Ok(ack) => Some(ack.into_inner().topology_version),
            Err(_) => {
                // Connect again next time (the coordinator may have restarted).
                inner.client = None;
                None
            }
        }
    }

    /// Sends it until the coordinator took it.
    async fn report_taken(&self, node: usize, reason: &str, events: Vec<SentinelEvent>) {
        wait_until(
            &format!("the coordinator to take the report of node-{node}"),
            TIMEOUT,
            || self.report(node, reason, events.clone()),
        )
        .await;
    }

    /// Every agent's heartbeat, every 300 ms, until `stop`.
    fn heartbeats(self: &Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        let fleet = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                for node in 1..=3 {
                    fleet.report(node, "heartbeat", Vec::new()).await;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
        })
    }

    async fn topology(&self) -> Option<Topology> {
        let mut inner = self.inner.lock().await;
        let mut client = Self::client(&self.url, &mut inner.client).await?;
        match client
            .get_topology(GetTopologyRequest {
                master_group: GROUP.into(),
            })
            .await
        {
            Ok(t) => Some(t.into_inner()),
            Err(_) => {
                inner.client = None;
                None
            }
        }
    }

    async fn events(&self) -> Vec<Event> {
        let mut inner = self.inner.lock().await;
        let Some(mut client) = Self::client(&self.url, &mut inner.client).await else {
            return Vec::new();
        };
        client
            .list_events(ListEventsRequest {
                master_group: GROUP.into(),
                limit: 0,
            })
            .await
            .map(|r| r.into_inner().events)
            .unwrap_or_default()
    }

    /// Waits until the coordinator publishes a topology that passes `ok`.
    async fn wait_topology(&self, what: &str, ok: impl Fn(&Topology) -> bool) -> Topology {
        wait_until(what, TIMEOUT, || async {
            match self.topology().await {
                Some(t) if ok(&t) => Ok(t),
                Some(t) => Err(redis_ha_testkit::coordinator::describe(&t)),
                None => Err("the coordinator is unreachable".to_owned()),
            }
        })
        .await
    }
}

/// A Sentinel event as node `sentinel`'s agent receives it.
fn event(kind: &str, payload: String, epoch: u64, sentinel: usize) -> SentinelEvent {
    SentinelEvent {
        kind: kind.into(),
        payload,
        received_at_ms: redis_ha_common::time::now_ms(),
        epoch,
        sentinel: address(26379 + u16::try_from(sentinel).unwrap()),
    }
}

/// `+selected-slave`: the failover leader picked `replica` to replace `master`.
fn selected(replica: u16, master: u16) -> String {
    format!("slave 127.0.0.1:{replica} 127.0.0.1 {replica} @ {GROUP} 127.0.0.1 {master}")
}

/// (stream session, master_source, epoch, master port) of the decision in force.
fn in_force(status: &watch::Receiver<ReloaderStatus>) -> (u64, MasterSource, u64, Option<u16>) {
    let st = status.borrow();
    let d = st.decision.as_ref().unwrap();
    let Source::Coordinator {
        session,
        master_source,
        ..
    } = &d.source
    else {
        panic!("not a coordinator decision: {d:?}");
    };
    (
        *session,
        *master_source,
        d.config_epoch,
        d.master_address().map(|a| a.port),
    )
}

/// Waits until the last apply is for `epoch`, and returns its commands.
async fn applied_at(status: &watch::Receiver<ReloaderStatus>, epoch: u64) -> Vec<String> {
    wait_until("the apply recorded", TIMEOUT, || {
        let st = status.borrow().clone();
        async move {
            st.instances.values().all(|i| {
                i.last_apply
                    .as_ref()
                    .is_some_and(|a| a.config_epoch == epoch)
            })
        }
    })
    .await;
    let st = status.borrow();
    st.instances
        .values()
        .next()
        .unwrap()
        .last_apply
        .as_ref()
        .unwrap()
        .commands
        .clone()
}

/// A failover to `epoch`: node `leader`'s Sentinel leads and selects node `promoted` to
/// replace node `old`; the promoted node answers role:master before any +switch-master, so the
/// coordinator publishes it as "promoted" and the reloader routes to it at once, fencing the
/// old master (its clients are disconnected: they reconnect to the new one).
#[allow(clippy::too_many_arguments)]
async fn promote(
    fleet: &Fleet,
    nodes: &[&RedisNode; 3],
    hap: &Haproxy,
    status: &watch::Receiver<ReloaderStatus>,
    leader: usize,
    promoted: usize,
    old: usize,
    epoch: u64,
) {
    let port = |n: usize| nodes[n - 1].port();
    let mut held = hap.hold_connection().await;
    assert!(client::pongs(&mut held, hap.frontend_port()).await);
    fleet
        .update(leader, |a| {
            a.current_epoch = epoch;
            a.failover = true;
        })
        .await;
    let events = vec![
        event("+new-epoch", epoch.to_string(), epoch, leader),
        event(
            "+selected-slave",
            selected(port(promoted), port(old)),
            epoch,
            leader,
        ),
    ];
    // A Sentinel that voted for the leader reached the epoch too: its agent's report is the
    // promotion's second, independent witness (the coordinator's corroboration rule).
    let voter = if old == leader { promoted } else { old };
    fleet.update(voter, |a| a.current_epoch = epoch).await;
    fleet
        .report_taken(
            voter,
            "event",
            vec![event("+new-epoch", epoch.to_string(), epoch, voter)],
        )
        .await;
    fleet.report_taken(leader, "event", events).await;
    nodes[promoted - 1].set_replica_of(None).await.unwrap();
    fleet.role_changed(promoted, Role::Master, None).await;
    let what = format!("node-{promoted} promoted at epoch {epoch}");
    fleet
        .wait_topology(&what, |t| {
            names(t, port(promoted), epoch, MasterSource::Promoted)
        })
        .await;
    hap.wait_routed_to(port(promoted)).await;
    assert_eq!(
        applied_at(status, epoch).await,
        [
            format!("set server redis/redis-{old} state maint"),
            format!("shutdown sessions server redis/redis-{old}"),
            format!("set server redis/redis-{promoted} state ready"),
        ]
    );
    assert!(!client::pongs(&mut held, hap.frontend_port()).await);
}

#[tokio::test]
async fn follows_the_coordinator_through_a_restart_and_a_revoked_promotion() {
    let _t = redis_ha_common::telemetry::init("reloader-test");
    let sb = Sandbox::new();
    let r1 = sb.redis(None).await;
    let r2 = sb.redis(Some(r1.port())).await;
    let r3 = sb.redis(Some(r1.port())).await;
    let ports = [r1.port(), r2.port(), r3.port()];
    let [p1, p2, p3] = ports;
    let hap = sb.haproxy(&ports).await;

    let grpc_port = sb.port();
    let coordinator = start_coordinator(grpc_port).await;
    let grpc = coordinator.url();
    let fleet = Fleet::new(grpc.clone(), &ports);
    let stop_heartbeats = CancellationToken::new();
    let heartbeats = fleet.heartbeats(stop_heartbeats.clone());

    // 1. The Sentinels at epoch 0 name node-1.
    fleet
        .wait_topology("node-1 master at epoch 0", |t| {
            names(t, p1, 0, MasterSource::SentinelQuorum) && t.nodes.len() == 3
        })
        .await;
    let mut cfg = config(&hap);
    cfg.coordinator_url = grpc.clone();
    cfg.reconnect_max_backoff_ms = 500;
    let reloader = Reloader::new(cfg).unwrap();
    let status = reloader.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(reloader.run(cancel.clone()));
    hap.wait_routed_to(p1).await;
    let (first_stream, _, epoch, _) = in_force(&status);
    assert_eq!(epoch, 0);

    // 2. Failover to epoch 1: node-2's Sentinel leads and selects node-3, which answers
    //    role:master before any +switch-master: the coordinator publishes it as "promoted".
    let nodes = [&r1, &r2, &r3];
    promote(&fleet, &nodes, &hap, &status, 2, 3, 1, 1).await;
    assert_eq!(
        in_force(&status),
        (first_stream, MasterSource::Promoted, 1, Some(p3))
    );

    // 3. The coordinator restarts before the Sentinels announce epoch 1. While it is down,
    //    routing stays.
    stop_coordinator(coordinator).await;
    let still_routed = || async {
        match hap.routed_port().await {
            Some(p) if p == p3 => Ok(()),
            other => Err(format!("routed to {other:?}")),
        }
    };
    holds_over_resyncs(&status, 3, "routing stays on node-3", still_routed).await;
    // It comes back knowing nothing of the promotion (the +selected-slave went to the old
    // process): the agents' reports say epoch 0, node-1. A lower epoch on a new stream.
    let coordinator = start_coordinator(grpc_port).await;
    let stale = fleet
        .wait_topology("the restarted coordinator's old view", |t| {
            t.master_address == address(p1) && t.config_epoch == 0 && t.nodes.len() == 3
        })
        .await;
    assert_eq!(stale.master_source(), MasterSource::SentinelQuorum);
    assert_eq!(stale.split_brain, [address(p3)]);
    wait_until(
        "the reloader watching the restarted coordinator",
        Duration::from_secs(30),
        || async move { reloader_connections(grpc_port) >= 1 },
    )
    .await;
    // The stale view is the current topology, which a new watch gets first: several
    // resyncs later nothing has moved.
    holds_over_resyncs(&status, 10, "routing and the epoch stay", || async {
        still_routed().await?;
        match in_force(&status).2 {
            1 => Ok(()),
            e => Err(format!("epoch {e} in force")),
        }
    })
    .await;

    // 4. The Sentinels announce epoch 1 (+switch-master); node-1 and node-2 follow node-3.
    r1.set_replica_of(Some(p3)).await.unwrap();
    r2.set_replica_of(Some(p3)).await.unwrap();
    for node in 1..=3 {
        fleet
            .update(node, |a| {
                a.sentinel_master = p3;
                a.sentinel_epoch = 1;
                a.current_epoch = 1;
                a.failover = false;
                if a.port != p3 {
                    a.role = Role::Replica;
                    a.replica_of = p3;
                }
            })
            .await;
        let switch = format!("{GROUP} 127.0.0.1 {p1} 127.0.0.1 {p3}");
        fleet
            .report_taken(
                node,
                "event",
                vec![event("+switch-master", switch, 1, node)],
            )
            .await;
    }
    fleet
        .wait_topology("node-3 confirmed at epoch 1", |t| {
            names(t, p3, 1, MasterSource::SentinelQuorum)
        })
        .await;
    wait_until(
        "the reloader following the restarted coordinator",
        Duration::from_secs(30),
        || {
            let d = in_force(&status);
            async move { d.0 != first_stream && d.1 == MasterSource::SentinelQuorum }
        },
    )
    .await;
    let (second_stream, _, epoch, master) = in_force(&status);
    assert_eq!((epoch, master), (1, Some(p3)));
    assert_eq!(hap.routed_port().await, Some(p3));

    // 5. Failover to epoch 2: node-1's Sentinel leads and selects node-2, which answers
    //    role:master: promoted, routed at once.
    promote(&fleet, &nodes, &hap, &status, 1, 2, 3, 2).await;
    assert_eq!(
        in_force(&status),
        (second_stream, MasterSource::Promoted, 2, Some(p2))
    );

    // ...then the failover fails: the Sentinels, still at epoch 1, turn node-2 back into a
    // replica of node-3. The coordinator revokes the promotion (a lower epoch on the same
    // stream), and the reloader follows it back to node-3.
    r2.set_replica_of(Some(p3)).await.unwrap();
    fleet.role_changed(2, Role::Replica, Some(p3)).await;
    fleet.update(1, |a| a.failover = false).await;
    fleet.report_taken(1, "heartbeat", Vec::new()).await;
    fleet
        .wait_topology("the promotion revoked", |t| {
            names(t, p3, 1, MasterSource::SentinelQuorum)
        })
        .await;
    assert!(fleet
        .events()
        .await
        .iter()
        .any(|e| e.message.contains("revoked")));
    hap.wait_routed_to(p3).await;
    assert_eq!(
        applied_at(&status, 1).await,
        [
            "set server redis/redis-2 state maint",
            "shutdown sessions server redis/redis-2",
            "set server redis/redis-3 state ready",
        ]
    );
    assert_eq!(
        in_force(&status),
        (second_stream, MasterSource::SentinelQuorum, 1, Some(p3))
    );
    assert_eq!(role(p3).await.as_deref(), Some("master"));
    assert_eq!(role(p2).await.as_deref(), Some("slave"));

    cancel.cancel();
    task.await.unwrap().unwrap();
    stop_heartbeats.cancel();
    heartbeats.await.unwrap();
    stop_coordinator(coordinator).await;
}
