//! Hostile input (issue #11 item 7), as processes see it: a fake Redis and a fake Sentinel
//! (`redis_ha_testkit::fake`) that answer garbage, half a reply, nothing, or close mid-reply,
//! against the real agent; a fake HAProxy runtime API that answers garbage, errors or nothing,
//! against the real reloader; and gRPC requests the coordinator must refuse or bound (unknown
//! groups and nodes, oversized messages, 50 000 agent ids, watchers that never read), next to
//! the real agents of a real cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use redis_ha_agent::AgentConfig;
use redis_ha_common::HostPort;
use redis_ha_coordinator::{CoordinatorConfig, InProcess};
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{
    AgentReport, GetTopologyRequest, RedisStatus, Role, SentinelStatus, WatchTopologyRequest,
};
use redis_ha_reloader::{NodeConfig as ReloaderNode, Reloader, ReloaderConfig};
use redis_ha_tests::kit::fake::{always, FakeServer, Framing, Reply, Script};
use redis_ha_tests::kit::{PortBlock, RedisNode, RedisSpec};
use redis_ha_tests::relay::ReportRelay;
use redis_ha_tests::sidecars::SidecarTask;
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, READY_TIMEOUT};
use redis_ha_tls::{ClientTls, TlsSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

const G: &str = "hostile";

fn now_ms() -> i64 {
    redis_ha_common::time::now_ms()
}

/// An in-process coordinator for the fakes: no node list unless given, no crash failover (no
/// Sentinel to ask), a long staleness so hand-made reports stay fresh.
async fn coordinator(port: u16, nodes: Vec<redis_ha_coordinator::NodeConfig>) -> InProcess {
    let listener = redis_ha_tests::kit::ports::bind(port).await;
    let config = CoordinatorConfig {
        listen_addr: format!("127.0.0.1:{port}"),
        master_group: G.into(),
        stale_after_ms: 60_000,
        metrics_addr: String::new(),
        crash_failover: false,
        nodes,
        // Plaintext: hand-made reports of any agent id (who may send what is tls.rs's).
        tls: TlsSettings::insecure(),
        ..CoordinatorConfig::default()
    };
    InProcess::spawn(config, listener).unwrap_or_else(|e| panic!("coordinator: {e}"))
}

async fn topology(client: &mut CoordinatorClient<Channel>) -> redis_ha_proto::v1::Topology {
    client
        .get_topology(GetTopologyRequest {
            master_group: G.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("GetTopology: {e}"))
        .into_inner()
}

// ------------------------------------------------------------------ the agent

/// RESP the redis crate cannot read, half replies, wrong shapes.
const GARBAGE: &[u8] = b"\x00\xfe\xffnot RESP at all\r\n$-5\r\n*x\r\n";
/// Half of `ROLE`'s master answer.
const HALF_ROLE: &[u8] = b"*3\r\n$6\r\nmaster\r\n:12";
/// `ROLE` master with an offset that is no number: must not read as master.
const BAD_ROLE: &[u8] = b"*3\r\n$6\r\nmaster\r\n$3\r\nabc\r\n*0\r\n";

/// The agent against a fake Redis and a fake Sentinel, one misbehaviour after another: it
/// keeps reporting the node unreachable (never master), reconnects, does not panic, and the
/// coordinator publishes no master; then a real Redis on the fake's port is seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_survives_a_hostile_redis_and_sentinel_and_never_reports_a_false_master() {
    let ports = PortBlock::allocate(4);
    let (redis_port, sentinel_port) = (ports.port(0), ports.port(1));
    let fake_redis = FakeServer::start(redis_port, Framing::Chunk, always(Reply::Close)).await;
    let fake_sentinel =
        FakeServer::start(sentinel_port, Framing::Chunk, always(Reply::Close)).await;
    let coordinator = coordinator(ports.port(2), Vec::new()).await;
    let relay = ReportRelay::start(ports.port(3), &coordinator.url(), None).await;
    let mut api =
        redis_ha_tests::kit::coordinator::client(&coordinator.url(), &ClientTls::insecure());

    let config = AgentConfig {
        node_id: "node-1".into(),
        master_group: G.into(),
        redis_addr: HostPort::new("127.0.0.1", redis_port),
        announce_addr: None,
        sentinel_addr: HostPort::new("127.0.0.1", sentinel_port),
        coordinator_url: relay.url().to_owned(),
        heartbeat_ms: 200,
        io_timeout_ms: 300,
        metrics_addr: String::new(),
        tls: TlsSettings::insecure(),
        ..AgentConfig::default()
    };
    let agent = SidecarTask::spawn("the agent", |token| redis_ha_agent::run(config, token));

    let phases: [(&str, Script, Script); 6] = [
        ("closes at once", always(Reply::Close), always(Reply::Close)),
        (
            "garbage",
            always(Reply::bytes(GARBAGE)),
            always(Reply::bytes(GARBAGE)),
        ),
        (
            "half a reply, then a stall",
            always(Reply::then_stall(HALF_ROLE)),
            always(Reply::then_stall(b"*4\r\n$4\r\nname")),
        ),
        (
            "closes mid-reply",
            always(Reply::then_close(HALF_ROLE)),
            always(Reply::then_close(b"*40\r\n$4\r\nname\r\n$3\r\nred")),
        ),
        (
            "wrong shapes",
            always(Reply::bytes(BAD_ROLE)),
            always(Reply::bytes(b":1\r\n")),
        ),
        (
            "answers as a Sentinel",
            always(Reply::bytes(b"*2\r\n$8\r\nsentinel\r\n*0\r\n")),
            always(Reply::bytes(b"-ERR unknown command\r\n")),
        ),
    ];
    let agents = vec!["node-1".to_owned()];
    for (phase, redis_script, sentinel_script) in phases {
        fake_redis.set_script(redis_script);
        fake_sentinel.set_script(sentinel_script);
        let (redis_conns, sentinel_conns) = (fake_redis.connections(), fake_sentinel.connections());
        let from = relay.len();
        // Three reports of the new behaviour at least (the first may have started before).
        let to = relay.wait_reports_from_each(from, &agents, 4).await;
        for r in relay.between(from, to) {
            let redis = r.report.redis.clone().unwrap_or_default();
            assert_ne!(redis.role(), Role::Master, "{phase}: {:?}", r.report);
        }
        let last = relay.between(to - 1, to).remove(0).report;
        let redis = last.redis.clone().unwrap_or_default();
        assert!(!redis.reachable, "{phase}: {last:?}");
        assert_eq!(redis.role(), Role::Unspecified, "{phase}: {last:?}");
        assert!(!redis.error.is_empty(), "{phase}: {last:?}");
        let sentinel = last.sentinel.clone().unwrap_or_default();
        assert!(!sentinel.reachable, "{phase}: {last:?}");
        // It keeps trying: new connections to both.
        wait_until(
            &format!("{phase}: the agent to reconnect to the fakes"),
            READY_TIMEOUT,
            || async {
                let (r, s) = (fake_redis.connections(), fake_sentinel.connections());
                if r >= redis_conns + 2 && s > sentinel_conns {
                    Ok(())
                } else {
                    Err(format!(
                        "redis {redis_conns} -> {r}, sentinel {sentinel_conns} -> {s}"
                    ))
                }
            },
        )
        .await;
        let t = topology(&mut api).await;
        assert!(t.master_address.is_empty(), "{phase}: {t:?}");
        assert!(!agent.is_finished(), "{phase}: the agent ended");
    }

    // A real Redis where the fake was: the agent sees it as it is (a master on its own).
    drop(fake_redis);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let _redis = RedisNode::start(RedisSpec::new("node-1", redis_port), dir.path()).await;
    let from = relay.len();
    relay
        .wait_report("a report of the real Redis", from, |r| {
            r.report
                .redis
                .as_ref()
                .is_some_and(|s| s.reachable && s.role() == Role::Master)
        })
        .await;
    assert!(!agent.is_finished());
    agent.stop().await;
}

// ------------------------------------------------------------------ the reloader

/// What the fake HAProxy does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// A working runtime API over [`Servers`].
    Good,
    /// Bytes no answer looks like.
    Garbage,
    /// Reads answered well, every `set server` refused.
    Refuses,
    /// Accepts, reads, never answers.
    Stalls,
}

/// The fake's backend: server name → (address, in maint).
type Servers = BTreeMap<String, (HostPort, bool)>;

fn show_servers_state(servers: &Servers) -> String {
    let mut s = String::from("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord\n");
    for (i, (name, (addr, maint))) in servers.iter().enumerate() {
        s.push_str(&format!(
            "3 redis {} {name} {} 2 {} 1 1 0 1 0 0 0 0 0 0 - {} -\n",
            i + 1,
            addr.host,
            u8::from(*maint),
            addr.port
        ));
    }
    s
}

fn show_stat(servers: &Servers) -> String {
    let mut s = String::from("# pxname,svname,qcur,qmax,scur,smax\n");
    for name in servers.keys() {
        s.push_str(&format!("redis,{name},0,0,0,0\n"));
    }
    s.push_str("redis,BACKEND,0,0,0,0\n");
    s
}

/// One command's answer (without the empty line that ends it).
fn answer(mode: Mode, servers: &mut Servers, command: &str) -> String {
    if command.starts_with("show servers state") {
        return show_servers_state(servers);
    }
    if command.starts_with("show stat") {
        return show_stat(servers);
    }
    if mode == Mode::Refuses {
        return "No such server.\n".into();
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    let server = |w: &str| w.strip_prefix("redis/").map(str::to_owned);
    match words.as_slice() {
        ["set", "server", s, "state", state] => {
            if let Some((_, maint)) = server(s).and_then(|s| servers.get_mut(&s)) {
                *maint = *state == "maint";
                return String::new();
            }
        }
        ["set", "server", s, "addr", ip, "port", port] => {
            if let (Some((addr, _)), Ok(p)) =
                (server(s).and_then(|s| servers.get_mut(&s)), port.parse())
            {
                let old = addr.clone();
                *addr = HostPort::new(*ip, p);
                return format!("IP changed from '{}' to '{ip}', port changed from '{}' to '{port}' by 'stats socket command'\n", old.host, old.port);
            }
        }
        ["shutdown", "sessions", "server", s] if server(s).is_some() => return String::new(),
        _ => {}
    }
    "Unknown command.\n".into()
}

/// The fake HAProxy runtime API's script, over shared state.
fn haproxy_script(mode: Arc<Mutex<Mode>>, servers: Arc<Mutex<Servers>>) -> Script {
    Arc::new(move |line: &[u8]| {
        let mode = *mode.lock().unwrap_or_else(|p| p.into_inner());
        match mode {
            Mode::Garbage => Reply::then_close(b"\x00\xff<html>garbage\n\n\n"),
            Mode::Stalls => Reply::then_stall(b""),
            Mode::Good | Mode::Refuses => {
                let mut servers = servers.lock().unwrap_or_else(|p| p.into_inner());
                let text = String::from_utf8_lossy(line);
                let mut out = String::new();
                for command in text.trim_end().split(';') {
                    out.push_str(&answer(mode, &mut servers, command));
                    out.push('\n');
                }
                Reply::then_close(out)
            }
        }
    })
}

/// `GET /metrics` of a sidecar, as text.
async fn scrape(port: u16) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The value of one metric line (`name{labels} value`), 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// A report of node `n` (of three at `ports`): `master` is the node its Sentinel names at
/// `epoch`, and the role it reports.
fn node_report(n: usize, addrs: &[HostPort], master: usize, epoch: u64, seq: u64) -> AgentReport {
    let role = if n == master {
        Role::Master
    } else {
        Role::Replica
    };
    AgentReport {
        agent_id: format!("node-{n}"),
        master_group: G.into(),
        sequence: seq,
        agent_started_at_ms: 1,
        reason: "heartbeat".into(),
        redis: Some(RedisStatus {
            address: addrs[n - 1].to_string(),
            reachable: true,
            role: role as i32,
            master_address: if n == master {
                String::new()
            } else {
                addrs[master - 1].to_string()
            },
            // From the wire: any value, the smallest included (the reloader's switch lag).
            role_changed_at_ms: i64::MIN,
            ..Default::default()
        }),
        sentinel: Some(SentinelStatus {
            address: format!("127.0.0.1:{}", 19_000 + n),
            reachable: true,
            master_address: addrs[master - 1].to_string(),
            config_epoch: epoch,
            current_epoch: epoch,
            master_flags: vec!["master".into()],
            quorum: 2,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The reloader against a fake HAProxy that answers garbage, refuses every change, or stalls:
/// it never readies a server other than the master's (and none before the master's address is
/// set), keeps retrying, and shows it (status, `converges_total{result="error"}`); once the
/// fake works it converges, and a switch whose `role_changed_at_ms` is `i64::MIN` does not
/// panic it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reloader_survives_a_hostile_haproxy_and_never_readies_a_wrong_server() {
    let ports = PortBlock::allocate(8);
    // The nodes' addresses: nothing listens there (the reloader only writes them to HAProxy).
    let addrs: Vec<HostPort> = (5..8)
        .map(|i| HostPort::new("127.0.0.1", ports.port(i)))
        .collect();
    let coordinator = coordinator(
        ports.port(0),
        (1..=3)
            .map(|n| redis_ha_coordinator::NodeConfig {
                id: format!("node-{n}"),
                redis: addrs[n - 1].clone(),
                sentinel: HostPort::new("127.0.0.1", 19_000 + u16::try_from(n).unwrap_or(0)),
            })
            .collect(),
    )
    .await;
    let mut api =
        redis_ha_tests::kit::coordinator::client(&coordinator.url(), &ClientTls::insecure());
    for n in 1..=3 {
        api.report(node_report(n, &addrs, 1, 1, 1))
            .await
            .unwrap_or_else(|e| panic!("Report: {e}"));
    }
    assert_eq!(
        topology(&mut api).await.master_address,
        addrs[0].to_string()
    );

    // redis-1 at a wrong address: the reloader must set it before readying it.
    let servers: Arc<Mutex<Servers>> = Arc::new(Mutex::new(
        (1..=3)
            .map(|n| {
                let addr = if n == 1 {
                    HostPort::new("127.0.0.2", 1)
                } else {
                    addrs[n - 1].clone()
                };
                (format!("redis-{n}"), (addr, true))
            })
            .collect(),
    ));
    let mode = Arc::new(Mutex::new(Mode::Garbage));
    let set_mode = |m: Mode| *mode.lock().unwrap_or_else(|p| p.into_inner()) = m;
    let fake = FakeServer::start(
        ports.port(1),
        Framing::Line,
        haproxy_script(Arc::clone(&mode), Arc::clone(&servers)),
    )
    .await;
    let metrics_port = ports.port(2);
    let config = ReloaderConfig {
        coordinator_url: coordinator.url(),
        master_group: G.into(),
        haproxy_runtime: vec![format!("tcp:127.0.0.1:{}", fake.port())],
        backend: "redis".into(),
        resync_interval_ms: 100,
        io_timeout_ms: 300,
        metrics_addr: format!("127.0.0.1:{metrics_port}"),
        nodes: (1..=3)
            .map(|n| ReloaderNode {
                id: format!("node-{n}"),
                redis: addrs[n - 1].clone(),
            })
            .collect(),
        tls: TlsSettings::insecure(),
        ..ReloaderConfig::default()
    };
    let reloader = Reloader::new(config).unwrap_or_else(|e| panic!("reloader: {e}"));
    let status = reloader.status();
    let task = SidecarTask::spawn("the reloader", |token| reloader.run(token));

    let readied = |from: usize| -> Vec<String> {
        fake.requests()
            .iter()
            .skip(from)
            .flat_map(|r| {
                r.trim_end()
                    .split(';')
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|c| c.ends_with(" state ready"))
            .collect()
    };
    for hostile in [Mode::Garbage, Mode::Refuses, Mode::Stalls] {
        set_mode(hostile);
        let from = fake.request_count();
        // It keeps asking: three more read-backs at least.
        wait_until(
            &format!("{hostile:?}: the reloader to retry"),
            READY_TIMEOUT,
            || async {
                let shows = fake
                    .requests()
                    .iter()
                    .skip(from)
                    .filter(|r| r.starts_with("show servers state"))
                    .count();
                if shows >= 3 {
                    Ok(())
                } else {
                    Err(format!("{shows} read-backs"))
                }
            },
        )
        .await;
        // And says so.
        wait_until(
            &format!("{hostile:?}: the reloader to report the failure"),
            READY_TIMEOUT,
            || {
                let st = status.borrow().clone();
                async move {
                    match st.instances.values().next() {
                        Some(i) if !i.converged && i.last_error.is_some() => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await;
        // redis-1's address was never accepted: nothing may be readied, ever, in these modes.
        assert_eq!(readied(0), Vec::<String>::new(), "{hostile:?}");
        assert!(servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .all(|(_, maint)| *maint));
        assert!(!task.is_finished(), "{hostile:?}: the reloader ended");
    }
    let text = scrape(metrics_port)
        .await
        .unwrap_or_else(|e| panic!("/metrics: {e}"));
    assert!(
        metric(&text, "redis_ha_reloader_converges_total{result=\"error\"}") >= 3.0,
        "{text}"
    );

    // A working HAProxy: redis-1 moved to node-1's address, then readied; the others in maint.
    set_mode(Mode::Good);
    let converged = |ready: &'static str, addr: HostPort| {
        let servers = Arc::clone(&servers);
        let status = status.clone();
        async move {
            wait_until(
                &format!("{ready} ready at {addr}, alone"),
                READY_TIMEOUT,
                || {
                    let s = servers.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let converged = status.borrow().instances.values().all(|i| i.converged);
                    let addr = addr.clone();
                    async move {
                        let readied: Vec<_> = s.iter().filter(|(_, (_, m))| !m).collect();
                        match readied.as_slice() {
                            [(name, (a, _))]
                                if name.as_str() == ready && *a == addr && converged =>
                            {
                                Ok(())
                            }
                            _ => Err(format!("{s:?} converged={converged}")),
                        }
                    }
                },
            )
            .await;
        }
    };
    converged("redis-1", addrs[0].clone()).await;
    assert!(
        readied(0)
            .iter()
            .all(|c| c == "set server redis/redis-1 state ready"),
        "{:?}",
        readied(0)
    );

    // A failover to node 2, its role change time i64::MIN: no panic, redis-2 alone ready.
    let switch_from = fake.request_count();
    for n in 1..=3 {
        api.report(node_report(n, &addrs, 2, 2, 2))
            .await
            .unwrap_or_else(|e| panic!("Report: {e}"));
    }
    converged("redis-2", addrs[1].clone()).await;
    assert!(
        readied(switch_from)
            .iter()
            .all(|c| c == "set server redis/redis-2 state ready"),
        "{:?}",
        readied(switch_from)
    );
    // The switch is counted once the converge returns, just after HAProxy shows it.
    wait_until("the switch counted", READY_TIMEOUT, || async {
        let text = scrape(metrics_port).await.map_err(|e| e.to_string())?;
        match metric(&text, "redis_ha_reloader_master_switches_total") {
            n if n >= 1.0 => Ok(()),
            n => Err(format!("master_switches_total {n}")),
        }
    })
    .await;
    let text = scrape(metrics_port)
        .await
        .unwrap_or_else(|e| panic!("/metrics: {e}"));
    assert_eq!(
        metric(&text, "redis_ha_reloader_master_switches_total"),
        1.0,
        "one switch only: {text}"
    );
    assert!(
        !text.contains("redis_ha_reloader_instance_panics_total{"),
        "a converge task panicked: {text}"
    );
    assert!(!task.is_finished());
    task.stop().await;
}

// ------------------------------------------------------------------ the coordinator

/// A report from an agent id the node list does not have.
fn stranger(i: usize, group: &str) -> AgentReport {
    AgentReport {
        agent_id: format!("stranger-{i}"),
        master_group: group.into(),
        sequence: 1,
        agent_started_at_ms: now_ms(),
        reason: "heartbeat".into(),
        redis: Some(RedisStatus {
            address: format!("10.{}.{}.{}:6379", i >> 16 & 255, i >> 8 & 255, i & 255),
            reachable: true,
            role: Role::Master as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Sends `n` reports made by `make` on `clients` connections at once; returns the codes.
async fn flood(
    url: &str,
    n: usize,
    make: impl Fn(usize) -> AgentReport + Send + Sync + 'static,
) -> HashMap<Code, usize> {
    const CONNECTIONS: usize = 8;
    let make = Arc::new(make);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let mut client = redis_ha_tests::kit::coordinator::client(url, &ClientTls::insecure());
        let make = Arc::clone(&make);
        tasks.push(tokio::spawn(async move {
            let mut codes = HashMap::new();
            for i in (c..n).step_by(CONNECTIONS) {
                let code = match client.report(make(i)).await {
                    Ok(_) => Code::Ok,
                    Err(s) => s.code(),
                };
                *codes.entry(code).or_insert(0) += 1;
            }
            codes
        }));
    }
    let mut all = HashMap::new();
    for t in tasks {
        for (code, k) in t.await.unwrap_or_default() {
            *all.entry(code).or_insert(0) += k;
        }
    }
    all
}

/// A real cluster (the coordinator with its node list, the real agents) under unknown groups
/// and nodes, oversized messages and 50 000 distinct agent ids: every one refused with its
/// status, nothing of them held, and the real agents' topology unchanged and fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_refuses_strangers_and_oversized_requests_beside_real_agents() {
    // Plaintext: strangers with 50 000 agent ids cannot get certificates of the cluster's CA
    // (with TLS the handshake refuses them, tls.rs); this is about the bounds behind it.
    let mut cluster = Cluster::start(ClusterOptions {
        insecure: true,
        ..ClusterOptions::default()
    })
    .await;
    cluster.start_all_sidecars().await;
    let before = cluster.wait_steady_topology(1).await;
    let group = cluster.group().to_owned();
    let api = cluster.api();
    let mut client = api.client();

    // Unknown group: NOT_FOUND, for reading and for reporting.
    let e = client
        .get_topology(GetTopologyRequest {
            master_group: "nope".into(),
        })
        .await
        .expect_err("unknown group");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = client
        .report(stranger(0, "nope"))
        .await
        .expect_err("unknown group");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // A configured node's id in another group: the list is this group's.
    let mut r = stranger(0, "nope");
    r.agent_id = "node-1".into();
    assert_eq!(
        client.report(r).await.map_err(|e| e.code()).err(),
        Some(Code::NotFound)
    );
    // Oversized: the message (256 KiB), the held report (16 KiB), a name.
    let mut huge = stranger(0, &group);
    huge.agent_id = "node-2".into();
    if let Some(s) = huge.redis.as_mut() {
        s.error = "x".repeat(300 * 1024);
    }
    let e = client.report(huge).await.expect_err("oversized message");
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    let mut big = stranger(0, &group);
    big.agent_id = "node-2".into();
    big.sentinel = Some(SentinelStatus {
        master_flags: vec!["s_down".into(); 5000],
        ..Default::default()
    });
    let e = client.report(big).await.expect_err("oversized report");
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("max_report_bytes"), "{e:?}");
    let mut long = stranger(0, &group);
    long.agent_id = "node-2".into();
    if let Some(s) = long.redis.as_mut() {
        s.address = "a".repeat(1000);
    }
    let e = client.report(long).await.expect_err("over-long address");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // 50 000 distinct agent ids: each one refused, none held.
    let url = cluster.coordinator_url();
    let g = group.clone();
    let codes = flood(&url, 50_000, move |i| stranger(i, &g)).await;
    assert_eq!(codes, HashMap::from([(Code::NotFound, 50_000)]));

    // The real agents' topology: the same master and nodes, every one fresh and up.
    let from = cluster
        .api()
        .topology()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let after = api
        .wait_topology("fresh reports of the real agents after the flood", |t| {
            t.version >= from.version
                && t.nodes.len() == 3
                && t.nodes
                    .iter()
                    .all(|n| n.health() == redis_ha_proto::v1::Health::Up)
        })
        .await;
    assert_eq!(after.master_address, before.master_address);
    assert_eq!(after.config_epoch, before.config_epoch);
    let mut ids: Vec<&str> = after.nodes.iter().map(|n| n.node.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["node-1", "node-2", "node-3"]);
    // The history holds none of it either.
    assert!(api
        .events()
        .await
        .iter()
        .all(|e| !e.node.starts_with("stranger")));
    drop(cluster);
}

/// Without a node list: at most `max_agents_per_group` agents and `max_groups` groups are
/// held (the first agents keep reporting), a flood of ids is refused with
/// RESOURCE_EXHAUSTED, at most `max_watchers` streams are open, and a watcher that does not
/// read gets the newest topology once it does: what waits for it is bounded by HTTP/2 flow
/// control, not by the number of versions it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_node_list_agents_groups_and_watchers_are_bounded() {
    let ports = PortBlock::allocate(1);
    let port = ports.port(0);
    let listener = redis_ha_tests::kit::ports::bind(port).await;
    let config = CoordinatorConfig {
        listen_addr: format!("127.0.0.1:{port}"),
        master_group: G.into(),
        stale_after_ms: 60_000,
        metrics_addr: String::new(),
        crash_failover: false,
        max_agents_per_group: 8,
        max_groups: 3,
        max_watchers: 4,
        tls: TlsSettings::insecure(),
        ..CoordinatorConfig::default()
    };
    let server = InProcess::spawn(config, listener).unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let mut client = redis_ha_tests::kit::coordinator::client(&url, &ClientTls::insecure());

    // The first eight agents join; every later id is refused.
    for i in 0..8 {
        client
            .report(stranger(i, G))
            .await
            .unwrap_or_else(|e| panic!("agent {i} of 8: {e}"));
    }
    let codes = flood(&url, 5_000, |i| stranger(i + 8, G)).await;
    assert_eq!(codes, HashMap::from([(Code::ResourceExhausted, 5_000)]));
    let t = topology(&mut client).await;
    assert_eq!(t.nodes.len(), 8, "{t:?}");
    // The first eight are held and keep reporting.
    let mut again = stranger(0, G);
    again.sequence = 2;
    client
        .report(again)
        .await
        .unwrap_or_else(|e| panic!("a held agent: {e}"));

    // Groups: the configured one and two more.
    let codes = flood(&url, 100, |i| {
        let mut r = stranger(1, "");
        r.master_group = format!("group-{i}");
        r
    })
    .await;
    assert_eq!(
        codes,
        HashMap::from([(Code::Ok, 2), (Code::ResourceExhausted, 98)])
    );

    // Watchers: four open, the fifth refused, one closed lets a new one in.
    let watch = |c: &mut CoordinatorClient<Channel>| {
        let mut c = c.clone();
        async move {
            c.watch_topology(WatchTopologyRequest {
                master_group: G.into(),
            })
            .await
        }
    };
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(
            watch(&mut client)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_inner(),
        );
    }
    let e = watch(&mut client).await.expect_err("a fifth watcher");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    drop(open.pop());
    // The slow watcher's own connection, with small HTTP/2 windows: what the coordinator may
    // send ahead of its reading is 16 KiB.
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap_or_else(|e| panic!("{e}"))
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut slow_client = CoordinatorClient::new(channel);
    let mut slow = wait_until("a watcher slot to free up", READY_TIMEOUT, || {
        let w = watch(&mut slow_client);
        async move { w.await.map(tonic::Response::into_inner) }
    })
    .await;
    let first = tokio::time::timeout(READY_TIMEOUT, slow.next())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("the first topology"));

    // The other watchers share the reports' connection: unread, they would fill its HTTP/2
    // window and stall it (the client's own doing). Closed; the slow one has its own.
    drop(open);
    // That watcher does not read while 3000 versions are published (one role flip each).
    const CHANGES: u64 = 3000;
    for seq in 0..CHANGES {
        let mut r = stranger(0, G);
        r.sequence = 10 + seq;
        let role = if seq % 2 == 0 {
            Role::Replica
        } else {
            Role::Master
        };
        if let Some(s) = r.redis.as_mut() {
            s.role = role as i32;
            // Big topologies: a few fill the windows and the server's send buffer.
            s.error = "e".repeat(1000);
        }
        client.report(r).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let latest = topology(&mut client).await.version;
    assert!(latest >= first.version + CHANGES, "{latest}");
    // Reading now: versions only go up, the newest comes, and far fewer than were published.
    let mut received = 0u64;
    let mut last = first.version;
    while last < latest {
        let t = tokio::time::timeout(READY_TIMEOUT, slow.next())
            .await
            .ok()
            .flatten()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("the watch ended at version {last} of {latest}"));
        assert!(t.version > last, "{} after {last}", t.version);
        last = t.version;
        received += 1;
    }
    assert!(
        received < CHANGES / 2,
        "{received} of {CHANGES} versions queued for a slow watcher"
    );
    drop(server);
}
