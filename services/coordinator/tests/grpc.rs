//! The coordinator over real gRPC: `serve` on 127.0.0.1:0, driven with the generated clients.

// Tests may unwrap: a failure should stop the test right there.
#![allow(clippy::unwrap_used)]

use redis_ha_coordinator::{CoordinatorConfig, InProcess};
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{
    AgentReport, FailoverRequest, GetTopologyRequest, Health, ListEventsRequest, MasterSource,
    RedisStatus, Role, SentinelEvent, SentinelStatus, Topology, WatchTopologyRequest,
};
use redis_ha_testkit::{wait_until, Sandbox, TIMEOUT as WAIT};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

const G: &str = "redis-cluster";

/// A coordinator serving in this process (its own launcher); stopped on drop.
struct Running(InProcess);

impl Running {
    async fn start() -> Self {
        Self::start_with(CoordinatorConfig::default()).await
    }

    /// Plaintext unless `config` says otherwise: these tests are about the protocol, one
    /// client sending every node's reports; who may call what is `tests/tests/tls.rs`'s.
    async fn start_with(mut config: CoordinatorConfig) -> Self {
        if config.tls == redis_ha_tls::TlsSettings::default() {
            config.tls = redis_ha_tls::TlsSettings::insecure();
        }
        // Port 0, kept bound: the kernel's pick cannot be taken by anyone else.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self(InProcess::spawn(config, listener).unwrap())
    }

    fn url(&self) -> String {
        self.0.url()
    }

    async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .unwrap()
            .connect_timeout(WAIT)
            .connect()
            .await
            .unwrap()
    }

    async fn client(&self) -> CoordinatorClient<Channel> {
        CoordinatorClient::new(self.channel().await)
    }

    async fn stop(self) {
        tokio::time::timeout(WAIT, self.0.stop())
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

fn report(node: u32, seq: u64, role: Role) -> AgentReport {
    AgentReport {
        agent_id: format!("node-{node}"),
        master_group: G.into(),
        sequence: seq,
        agent_started_at_ms: 1,
        observed_at_ms: 0,
        reason: "heartbeat".into(),
        redis: Some(RedisStatus {
            address: format!("127.0.0.1:{}", 9000 + node),
            reachable: true,
            role: role as i32,
            repl_offset: 100,
            ..Default::default()
        }),
        sentinel: Some(SentinelStatus {
            address: format!("127.0.0.1:{}", 19000 + node),
            reachable: true,
            master_address: "127.0.0.1:9001".into(),
            config_epoch: 0,
            master_flags: vec!["master".into()],
            quorum: 2,
            ..Default::default()
        }),
        events: Vec::new(),
        failover_in_progress: false,
        master_watch: None,
    }
}

/// ListEvents of the group, the last `limit` (0: all kept).
async fn list_events(
    client: &mut CoordinatorClient<Channel>,
    limit: u32,
) -> Vec<redis_ha_proto::v1::Event> {
    client
        .list_events(ListEventsRequest {
            master_group: G.into(),
            limit,
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

/// WatchTopology of the group.
async fn watch(client: &mut CoordinatorClient<Channel>) -> tonic::Streaming<Topology> {
    client
        .watch_topology(WatchTopologyRequest {
            master_group: G.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next topology a watch sends (a hang fails the test).
async fn next(watch: &mut tonic::Streaming<Topology>) -> Topology {
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("the watch sends within the wait")
        .unwrap()
        .unwrap()
}

async fn get(client: &mut CoordinatorClient<Channel>) -> Topology {
    client
        .get_topology(GetTopologyRequest {
            master_group: G.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn report_then_get_topology() {
    let c = Running::start().await;
    let mut client = c.client().await;

    // The configured group exists before any report, empty.
    let t = get(&mut client).await;
    assert_eq!(t.master_group, G);
    assert_eq!(t.master_address, "");
    assert_eq!(t.master_source(), MasterSource::None);

    let mut r1 = report(1, 1, Role::Master);
    r1.events.push(SentinelEvent {
        kind: "+monitor".into(),
        payload: format!("master {G} 127.0.0.1 9001 quorum 2"),
        received_at_ms: 5,
        epoch: 0,
        sentinel: "127.0.0.1:19001".into(),
    });
    let ack1 = client.report(r1).await.unwrap().into_inner();
    let ack2 = client
        .report(report(2, 1, Role::Replica))
        .await
        .unwrap()
        .into_inner();
    assert!(ack2.topology_version > ack1.topology_version);

    let t = get(&mut client).await;
    assert_eq!(t.version, ack2.topology_version);
    assert_eq!(t.master_address, "127.0.0.1:9001");
    assert_eq!(t.master_node, "node-1");
    assert_eq!(t.master_source(), MasterSource::SentinelQuorum);
    assert!(t.master_confirmed);
    assert_eq!(t.nodes.len(), 2);
    assert!(t.nodes.iter().all(|n| n.health == Health::Up as i32));
    assert_eq!(t.sentinels.len(), 2);

    let events = list_events(&mut client, 0).await;
    assert!(events
        .iter()
        .any(|e| e.kind == "sentinel" && e.node == "node-1" && e.message.starts_with("+monitor")));
    assert!(events.iter().any(|e| e.kind == "master-changed"));
    let last_two = list_events(&mut client, 2).await;
    assert_eq!(last_two.len(), 2);
    assert_eq!(last_two[1], *events.last().unwrap());

    // A report for another group creates it.
    let mut other = report(1, 1, Role::Master);
    other.master_group = "other-group".into();
    client.report(other).await.unwrap();
    let t = client
        .get_topology(GetTopologyRequest {
            master_group: "other-group".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.nodes.len(), 1);
    c.stop().await;
}

#[tokio::test]
async fn a_silent_agent_turns_unknown_without_any_report() {
    let c = Running::start_with(CoordinatorConfig {
        stale_after_ms: 300,
        metrics_addr: String::new(),
        ..Default::default()
    })
    .await;
    let mut client = c.client().await;
    client.report(report(1, 1, Role::Master)).await.unwrap();
    let mut watch = watch(&mut client).await;
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.nodes[0].health, Health::Up as i32);
    // Only the timer can publish this change.
    // The timer re-derives.
    let next = next(&mut watch).await;
    assert!(next.version > first.version);
    assert_eq!(next.nodes[0].health, Health::Unknown as i32);
    c.stop().await;
}

#[tokio::test]
async fn watch_sends_current_state_first_then_changes() {
    let c = Running::start().await;
    let mut client = c.client().await;
    client.report(report(1, 1, Role::Master)).await.unwrap();
    let before = get(&mut client).await;

    let mut watch = watch(&mut client).await;
    let first = next(&mut watch).await;
    assert_eq!(first.version, before.version);
    assert_eq!(first.master_address, "127.0.0.1:9001");

    // Offsets only: no new version, nothing sent. Then a real change.
    let mut busy = report(1, 2, Role::Master);
    busy.redis.as_mut().unwrap().repl_offset = 99_999;
    client.report(busy).await.unwrap();
    let ack = client
        .report(report(2, 1, Role::Replica))
        .await
        .unwrap()
        .into_inner();
    let next = next(&mut watch).await;
    assert_eq!(next.version, first.version + 1);
    assert_eq!(next.version, ack.topology_version);
    assert_eq!(next.nodes.len(), 2);

    // Shutdown ends the stream, and serve returns although a watcher is still connected.
    c.stop().await;
    let end = tokio::time::timeout(WAIT, watch.next()).await.unwrap();
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
}

#[tokio::test]
async fn a_never_polled_watcher_blocks_nobody() {
    // 100 agents: above the default bound of a group without a node list.
    let c = Running::start_with(CoordinatorConfig {
        max_agents_per_group: 100,
        ..CoordinatorConfig::default()
    })
    .await;
    let mut client = c.client().await;
    // Big topologies (many nodes, long error texts) so the idle watcher's HTTP/2 window fills.
    let nodes = 100;
    let big = |node: u32, seq: u64, reachable: bool| {
        let mut r = report(node, seq, Role::Replica);
        let redis = r.redis.as_mut().unwrap();
        redis.reachable = reachable;
        redis.error = format!("{}-{seq}", "x".repeat(600));
        r
    };
    for n in 1..=nodes {
        client.report(big(n, 1, true)).await.unwrap();
    }

    // The idle watcher: on its own connection, opened and never read.
    let mut idle_client = CoordinatorClient::new(c.channel().await);
    let _idle = watch(&mut idle_client).await;

    let mut watch = watch(&mut client).await;
    watch.next().await.unwrap().unwrap();

    // Many changes, each ~70 KB of topology: far beyond what the idle stream can buffer.
    let mut last_ack = 0;
    for seq in 2..=60u64 {
        let node = u32::try_from(seq % u64::from(nodes)).unwrap() + 1;
        let ack = tokio::time::timeout(WAIT, client.report(big(node, seq, seq % 2 == 0)))
            .await
            .expect("a report is not blocked by an idle watcher")
            .unwrap()
            .into_inner();
        last_ack = ack.topology_version;
    }
    // The active watcher reaches the latest version (possibly skipping some on the way).
    let watch = &tokio::sync::Mutex::new(watch);
    wait_until(
        &format!("the active watcher to receive v{last_ack}"),
        WAIT,
        || async move {
            let t = tokio::time::timeout(WAIT, watch.lock().await.next())
                .await
                .expect("the active watcher keeps receiving")
                .unwrap()
                .unwrap();
            if t.version >= last_ack {
                Ok(())
            } else {
                Err(format!("v{}", t.version))
            }
        },
    )
    .await;
    c.stop().await;
}

/// Asserts that a call was refused with `code`, its message naming `mentions` ("" for any).
#[track_caller]
fn refused<T: std::fmt::Debug>(answer: Result<T, tonic::Status>, code: Code, mentions: &str) {
    let e = answer.unwrap_err();
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().contains(mentions), "{}", e.message());
}

fn group(name: &str) -> GetTopologyRequest {
    GetTopologyRequest {
        master_group: name.into(),
    }
}

#[tokio::test]
async fn bad_requests_get_a_status() {
    let c = Running::start().await;
    let mut client = c.client().await;

    let answer = client.get_topology(group("")).await;
    refused(answer, Code::InvalidArgument, "master_group");
    let answer = client.get_topology(group("no-such-group")).await;
    refused(answer, Code::NotFound, "no-such-group");
    let watch = WatchTopologyRequest {
        master_group: "no-such-group".into(),
    };
    refused(client.watch_topology(watch).await, Code::NotFound, "");
    let events = ListEventsRequest {
        master_group: String::new(),
        limit: 0,
    };
    refused(client.list_events(events).await, Code::InvalidArgument, "");

    let mut r = report(1, 1, Role::Master);
    r.agent_id = String::new();
    refused(client.report(r).await, Code::InvalidArgument, "agent_id");
    let mut r = report(1, 1, Role::Master);
    r.master_group = String::new();
    refused(client.report(r).await, Code::InvalidArgument, "");
    let failover = FailoverRequest {
        master_group: "no-such-group".into(),
    };
    refused(client.failover(failover).await, Code::NotFound, "");

    // 5 MiB: over the 4 MiB limit. An error status, not a hang, and the server lives on.
    let mut huge = report(1, 1, Role::Master);
    huge.redis.as_mut().unwrap().error = "x".repeat(5 * 1024 * 1024);
    let answer = tokio::time::timeout(WAIT, client.report(huge))
        .await
        .expect("an oversized message is answered");
    refused(answer, Code::OutOfRange, "");
    let mut client = c.client().await;
    assert_eq!(get(&mut client).await.nodes.len(), 0);
    c.stop().await;
}

#[tokio::test]
async fn failover_without_a_known_sentinel() {
    let c = Running::start().await;
    let mut client = c.client().await;
    let failover = || FailoverRequest {
        master_group: G.into(),
    };
    refused(
        client.failover(failover()).await,
        Code::FailedPrecondition,
        "no Sentinel",
    );

    // A Sentinel address nobody listens on: UNAVAILABLE, naming it.
    let sb = Sandbox::new();
    let port = sb.port();
    let mut r = report(1, 1, Role::Master);
    r.sentinel.as_mut().unwrap().address = format!("127.0.0.1:{port}");
    client.report(r).await.unwrap();
    refused(
        client.failover(failover()).await,
        Code::Unavailable,
        &format!("127.0.0.1:{port}"),
    );
    c.stop().await;
}

/// The real Sentinel's refusal: a master without replicas cannot fail over.
#[tokio::test]
async fn failover_refused_by_a_real_sentinel() {
    let sb = Sandbox::new();
    let redis = sb.redis(None).await;
    let sentinel = sb.sentinel(G, redis.port(), 1).await;
    let sentinel_port = sentinel.port();

    let c = Running::start().await;
    let mut client = c.client().await;
    let mut r = report(1, 1, Role::Master);
    r.sentinel.as_mut().unwrap().address = format!("127.0.0.1:{sentinel_port}");
    client.report(r).await.unwrap();

    // The Sentinel answers PING once started; it refuses (no replica).
    let client = &client;
    let e = wait_until(
        "the coordinator to reach the Sentinel",
        WAIT,
        || async move {
            let e = client
                .clone()
                .failover(FailoverRequest {
                    master_group: G.into(),
                })
                .await
                .unwrap_err();
            if e.code() == Code::Unavailable {
                Err(format!("{e:?}"))
            } else {
                Ok(e)
            }
        },
    )
    .await;
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("NOGOODSLAVE"), "{}", e.message());
    c.stop().await;
}

#[tokio::test]
async fn health_is_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let c = Running::start().await;
    let mut health = HealthClient::new(c.channel().await);
    for service in ["", "redisha.v1.Coordinator"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    c.stop().await;
}

/// The service names a reflection client of module `$v` (`v1` or `v1alpha`, the same API in
/// two generated modules) lists on `$channel`.
macro_rules! reflected_services {
    ($v:ident, $channel:expr) => {{
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$v::ServerReflectionRequest;

        let mut client = ServerReflectionClient::new($channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("unexpected answer {answer:?}");
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_service() {
    let c = Running::start().await;
    let v1 = reflected_services!(v1, c.channel().await);
    for name in ["redisha.v1.Coordinator", "grpc.health.v1.Health"] {
        assert!(v1.iter().any(|n| n == name), "{v1:?}");
    }
    let v1alpha = reflected_services!(v1alpha, c.channel().await);
    assert!(
        v1alpha.iter().any(|n| n == "redisha.v1.Coordinator"),
        "{v1alpha:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn run_refuses_a_bad_config_and_a_busy_port() {
    let e = redis_ha_coordinator::run(
        CoordinatorConfig {
            listen_addr: "not-an-address".into(),
            metrics_addr: String::new(),
            ..Default::default()
        },
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("listen_addr"), "{e}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let e = redis_ha_coordinator::run(
        CoordinatorConfig {
            listen_addr: addr.clone(),
            metrics_addr: String::new(),
            tls: redis_ha_tls::TlsSettings::insecure(),
            ..Default::default()
        },
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains(&addr), "{e}");
}
