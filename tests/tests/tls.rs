//! The control plane's authentication and authorization, end to end: the coordinator serving
//! mutual TLS with the certificates `redis-ha certs create` makes (the same code, in the
//! test's directory), called by clients presenting each identity's certificate, none, or one
//! of another CA; the operator's failover against a real cluster; and the insecure mode of the
//! coordinator binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use redis_ha_coordinator::{CoordinatorConfig, InProcess};
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{
    AgentReport, FailoverRequest, GetTopologyRequest, ListEventsRequest, WatchTopologyRequest,
};
use redis_ha_testkit::tls::{agent, Certs};
use redis_ha_testkit::Sandbox;
use redis_ha_tests::binaries::{SidecarEnv, SidecarProcess};
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, READY_TIMEOUT};
use redis_ha_tls::{insecure_warning, ClientTls, Identity, TlsSettings};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

const GROUP: &str = "redis-cluster";

/// A coordinator with mutual TLS from `certs`, in this process, on a port of `sb`.
async fn coordinator(sb: &Sandbox, certs: &Certs) -> InProcess {
    let port = sb.port();
    let listener = redis_ha_testkit::ports::bind(port).await;
    let config = CoordinatorConfig {
        listen_addr: format!("127.0.0.1:{port}"),
        master_group: GROUP.into(),
        metrics_addr: String::new(),
        tls: certs.settings(&Identity::Coordinator),
        ..CoordinatorConfig::default()
    };
    InProcess::spawn(config, listener).unwrap()
}

fn client(url: &str, tls: &ClientTls) -> CoordinatorClient<Channel> {
    redis_ha_testkit::coordinator::client(url, tls)
}

/// A client with a hand-made TLS configuration (a CA, and maybe a certificate).
fn raw_client(url: &str, tls: ClientTlsConfig) -> CoordinatorClient<Channel> {
    let endpoint = Endpoint::from_shared(url.replace("http://", "https://"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(READY_TIMEOUT);
    CoordinatorClient::new(endpoint.connect_lazy())
}

fn pem(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

async fn get(c: &CoordinatorClient<Channel>) -> Result<u64, tonic::Status> {
    c.clone()
        .get_topology(GetTopologyRequest {
            master_group: GROUP.into(),
        })
        .await
        .map(|r| r.into_inner().version)
}

fn report(node: &str) -> AgentReport {
    AgentReport {
        agent_id: node.into(),
        master_group: GROUP.into(),
        sequence: 1,
        agent_started_at_ms: 1,
        reason: "heartbeat".into(),
        ..Default::default()
    }
}

async fn failover(c: &CoordinatorClient<Channel>) -> Result<String, tonic::Status> {
    c.clone()
        .failover(FailoverRequest {
            master_group: GROUP.into(),
        })
        .await
        .map(|r| r.into_inner().sentinel)
}

/// A call the transport refused (the handshake failed, the connection was closed): never an
/// answer of the coordinator's. Depending on when the server's alert arrives, tonic says
/// UNAVAILABLE or CANCELLED (or UNKNOWN for a broken HTTP/2 stream).
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    match result {
        Ok(v) => panic!("the call was answered: {v:?}"),
        Err(s) => assert!(
            matches!(
                s.code(),
                Code::Unavailable | Code::Cancelled | Code::Unknown
            ),
            "not a transport refusal: {s}"
        ),
    }
}

/// Waits until the coordinator answers the operator (so a refusal below is the coordinator's
/// word, not a server still starting).
async fn serving(url: &str, certs: &Certs) {
    let op = client(url, &certs.operator());
    wait_until(
        "the coordinator to answer the operator",
        READY_TIMEOUT,
        || async { get(&op).await.map_err(|s| s.to_string()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_of_the_cluster_ca_is_refused() {
    let sb = Sandbox::new();
    let certs = Certs::temp(3);
    let other = Certs::temp(3);
    let c = coordinator(&sb, &certs).await;
    let url = c.url();
    serving(&url, &certs).await;

    // No certificate at all: the handshake is refused.
    let none = raw_client(
        &url,
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(&certs.ca()))),
    );
    assert_refused(get(&none).await);
    // Plaintext: no TLS, no answer.
    let plain = client(&url, &ClientTls::insecure());
    assert_refused(get(&plain).await);
    // The operator's certificate of another CA (trusting the right server): refused too.
    let op = Identity::Operator;
    let foreign = raw_client(
        &url,
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem(&certs.ca())))
            .identity(tonic::transport::Identity::from_pem(
                pem(&other.cert(&op)),
                pem(&other.key(&op)),
            )),
    );
    assert_refused(get(&foreign).await);
    assert_refused(failover(&foreign).await);
    // A client that trusts another CA does not take this coordinator's certificate.
    let wrong_ca = client(&url, &other.operator());
    assert_refused(get(&wrong_ca).await);
    // And the right one still gets in, after all of that.
    get(&client(&url, &certs.operator())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_may_do_what_the_rule_says() {
    let sb = Sandbox::new();
    let certs = Certs::temp(3);
    let c = coordinator(&sb, &certs).await;
    let url = c.url();
    serving(&url, &certs).await;
    let a1 = client(&url, &certs.client(&agent("node-1")));
    let a2 = client(&url, &certs.client(&agent("node-2")));
    let reloader = client(&url, &certs.client(&Identity::Reloader));
    let operator = client(&url, &certs.operator());

    // An agent reports for its own node only.
    let e = a1.clone().report(report("node-2")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.message().contains("node-2"), "{e}");
    a1.clone().report(report("node-1")).await.unwrap();
    a2.clone().report(report("node-2")).await.unwrap();
    // Nobody else reports.
    for who in [&reloader, &operator] {
        let e = who.clone().report(report("node-1")).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    }
    // The refused report changed nothing: node-2's report is the one agent-2 sent.
    let t = operator
        .clone()
        .get_topology(GetTopologyRequest {
            master_group: GROUP.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let nodes: Vec<&str> = t.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(nodes, ["node-1", "node-2"], "{t:?}");

    // Failover needs the operator: the reloader and the agents are refused before any
    // Sentinel is asked (the operator's own is the next test's, with real Sentinels).
    for who in [&reloader, &a1, &a2] {
        let e = failover(who).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        assert!(e.message().contains("operator"), "{e}");
    }
    // The operator's is let through to the Sentinels: here there are none to ask.
    let e = failover(&operator).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    // Every valid certificate reads: topology, its stream, events, gRPC health.
    for who in [&a1, &a2, &reloader, &operator] {
        get(who).await.unwrap();
        let mut stream = who
            .clone()
            .watch_topology(WatchTopologyRequest {
                master_group: GROUP.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(stream.message().await.unwrap().is_some());
        who.clone()
            .list_events(ListEventsRequest {
                master_group: GROUP.into(),
                limit: 0,
            })
            .await
            .unwrap();
    }
    let ep = certs.client(&Identity::Reloader).endpoint(&url).unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ep.connect_lazy());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "redisha.v1.Coordinator".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_failover_is_carried_out() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.start_all_sidecars().await;
    cluster.wait_steady_topology(1).await;
    // The agents' certificates name their nodes: all three report, so all three count.
    let op = cluster.client();
    let sentinel = failover(&op).await.unwrap();
    assert!(!sentinel.is_empty());
    let (_, new) = cluster.wait_new_master_node(&cluster.node(1).addr()).await;
    cluster
        .wait_topology_agreeing(
            "the topology to follow the operator's failover",
            READY_TIMEOUT,
            |t, m| t.master_address == m && m == new && t.master_confirmed,
        )
        .await;
    // An agent's certificate cannot do the same.
    let a2 = client(
        &cluster.coordinator_url(),
        &cluster.certs().client(&agent("node-2")),
    );
    assert_eq!(
        failover(&a2).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_mode_is_plaintext_and_says_so_at_every_start() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let mut config = cluster.coordinator_config();
    config.tls = TlsSettings::insecure();
    config.metrics_addr = String::new();
    let path = cluster.dir().join("coordinator-insecure.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    for start in 1..=2 {
        let mut p = SidecarProcess::spawn(
            "coordinator",
            &redis_ha_tests::binaries::binary(redis_ha_tests::binaries::COORDINATOR_BIN),
            &path,
            &SidecarEnv::default(),
            &cluster
                .dir()
                .join(format!("coordinator-insecure-{start}.out")),
        );
        // A plaintext client is served.
        let plain = client(&cluster.coordinator_url(), &ClientTls::insecure());
        wait_until(
            "the insecure coordinator to answer in plaintext",
            READY_TIMEOUT,
            || async { get(&plain).await.map_err(|s| s.to_string()) },
        )
        .await;
        if start == 1 {
            // Anyone may fail over then: past the permission check, to the Sentinels.
            let e = failover(&plain).await;
            assert!(
                !matches!(&e, Err(s) if s.code() == Code::PermissionDenied),
                "{e:?}"
            );
        }
        let log = p.output();
        let warning = insecure_warning("coordinator");
        assert_eq!(
            log.lines()
                .filter(|l| l.contains(&warning) && l.contains("WARN"))
                .count(),
            1,
            "start {start}: {log}"
        );
        // A TLS client finds no TLS server.
        let tls = client(&cluster.coordinator_url(), cluster.operator_tls());
        assert_refused(get(&tls).await);
        p.terminate();
    }
}
