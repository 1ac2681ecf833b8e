//! The `redis-ha` binary end to end: exit codes and messages when the coordinator is
//! missing, and its output against a canned gRPC server speaking the real contract.
//! (Status against a live cluster is in the cross-service suite in `tests/`.)

// A test file: a failed unwrap is a failed test (clippy's in-tests allowance only covers
// `#[test]` functions, not the helpers here).
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::process::{Output, Stdio};
use std::time::Duration;

use redis_ha_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use redis_ha_proto::v1::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

const BIN: &str = env!("CARGO_BIN_EXE_redis-ha");

/// A loopback port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn run(args: &[&str]) -> Output {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("REDIS_HA_COORDINATOR")
        .env_remove("REDIS_HA_GROUP")
        .env("NO_COLOR", "1")
        .output();
    tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("redis-ha did not exit")
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn unreachable_coordinator_exits_2_with_a_clear_message() {
    let url = format!("http://127.0.0.1:{}", dead_port());
    for cmd in [
        &["status"][..],
        &["status", "--json"],
        &["watch"],
        &["master"],
        &["events"],
        &["failover"],
    ] {
        let mut args = vec!["--coordinator", url.as_str()];
        args.extend_from_slice(cmd);
        let out = run(&args).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert_eq!(
            err,
            format!(
                "redis-ha: cannot reach the coordinator at {url}: connection refused \
                 (is it running? set --coordinator or REDIS_HA_COORDINATOR)\n"
            ),
            "{cmd:?}"
        );
        assert!(out.stdout.is_empty(), "{cmd:?}");
    }
}

#[tokio::test]
async fn coordinator_url_comes_from_the_environment() {
    let url = format!("http://127.0.0.1:{}", dead_port());
    let out = tokio::process::Command::new(BIN)
        .arg("status")
        .env("REDIS_HA_COORDINATOR", &url)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&format!("coordinator at {url}: ")));
}

#[tokio::test]
async fn bad_url_is_a_usage_error() {
    let out = run(&["--coordinator", "http://bad host:1", "status"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid coordinator URL"),
        "{}",
        text(&out.stderr)
    );
}

// ----------------------------------------------------------------- canned coordinator

struct Canned {
    topology: Topology,
}

type TopologyStream = Pin<Box<dyn Stream<Item = Result<Topology, Status>> + Send>>;

impl Canned {
    // The generated service trait returns tonic::Status by value; so does this helper.
    #[allow(clippy::result_large_err)]
    fn check_group(&self, group: &str) -> Result<(), Status> {
        if group == self.topology.master_group {
            Ok(())
        } else {
            Err(Status::not_found(format!("unknown master group {group:?}")))
        }
    }
}

#[tonic::async_trait]
impl Coordinator for Canned {
    async fn report(&self, _: Request<AgentReport>) -> Result<Response<ReportAck>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn get_topology(
        &self,
        req: Request<GetTopologyRequest>,
    ) -> Result<Response<Topology>, Status> {
        self.check_group(&req.get_ref().master_group)?;
        Ok(Response::new(self.topology.clone()))
    }

    type WatchTopologyStream = TopologyStream;

    async fn watch_topology(
        &self,
        req: Request<WatchTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        self.check_group(&req.get_ref().master_group)?;
        let first = self.topology.clone();
        let mut second = first.clone();
        second.version += 1;
        second.master_address = "127.0.0.1:9002".into();
        second.master_node = "node-2".into();
        let items = tokio_stream::iter(vec![Ok(first), Ok(second)]);
        // Then stay open, like the real stream between changes.
        let stream = tokio_stream::StreamExt::chain(items, tokio_stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_events(
        &self,
        req: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        self.check_group(&req.get_ref().master_group)?;
        let events = (0..5)
            .map(|i| Event {
                at_ms: 1_764_073_865_000 + i,
                kind: "sentinel".into(),
                node: "node-1".into(),
                message: format!("event {i}"),
                topology_version: 10 + i as u64,
                switch_lag_ms: 0,
            })
            .collect::<Vec<_>>();
        let keep = match req.get_ref().limit as usize {
            0 => events.len(),
            n => n.min(events.len()),
        };
        Ok(Response::new(ListEventsResponse {
            events: events[events.len() - keep..].to_vec(),
        }))
    }

    async fn failover(
        &self,
        req: Request<FailoverRequest>,
    ) -> Result<Response<FailoverResponse>, Status> {
        self.check_group(&req.get_ref().master_group)?;
        Err(Status::failed_precondition("no good replica to promote"))
    }
}

fn topology(master: &str) -> Topology {
    let node = |i: u32, role: Role| NodeView {
        node: format!("node-{i}"),
        address: format!("127.0.0.1:900{i}"),
        health: Health::Up as i32,
        role: role as i32,
        is_master: role == Role::Master,
        link: if role == Role::Replica {
            LinkState::Up as i32
        } else {
            LinkState::Unspecified as i32
        },
        repl_offset: 42,
        ping_micros: 150,
        report_age_ms: 300,
        agent_health: Health::Up as i32,
        ..Default::default()
    };
    Topology {
        master_group: "redis-cluster".into(),
        version: 12,
        updated_at_ms: 1_764_073_865_123,
        master_address: master.into(),
        master_node: if master.is_empty() { "" } else { "node-1" }.into(),
        config_epoch: 1,
        master_source: "sentinel-quorum".into(),
        master_confirmed: !master.is_empty(),
        nodes: vec![
            node(1, Role::Master),
            node(2, Role::Replica),
            node(3, Role::Replica),
        ],
        sentinels: (1..=3)
            .map(|i| SentinelView {
                node: format!("node-{i}"),
                address: format!("127.0.0.1:1900{i}"),
                health: Health::Up as i32,
                master_address: master.into(),
                config_epoch: 1,
                master_flags: vec!["master".into()],
                error: String::new(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Serves `topology` on a free loopback port until the test ends.
async fn serve(topology: Topology) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CoordinatorServer::new(Canned { topology }))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

#[tokio::test]
async fn status_table_and_json() {
    let url = serve(topology("127.0.0.1:9001")).await;
    let out = run(&["--coordinator", &url, "status"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.starts_with(
            "group redis-cluster  version 12  epoch 1  master 127.0.0.1:9001 (node-1, confirmed)\n"
        ),
        "{table}"
    );
    assert!(table.contains("\nNODES\nNODE  "), "{table}");
    assert!(table.contains("\nSENTINELS\nNODE  "), "{table}");
    assert!(!table.contains('\x1b'), "no colour when piped: {table:?}");

    // A bare host:port works too.
    let bare = url.trim_start_matches("http://");
    let out = run(&["--coordinator", bare, "status", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["master"]["address"], "127.0.0.1:9001");
    assert_eq!(v["summary"]["replicas_link_up"], 2);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn master_prints_like_sentinel_get_master_addr_by_name() {
    let url = serve(topology("127.0.0.1:9001")).await;
    let out = run(&["--coordinator", &url, "master"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "127.0.0.1\n9001\n");
    let out = run(&["--coordinator", &url, "master", "--addr"]).await;
    assert_eq!(text(&out.stdout), "127.0.0.1:9001\n");
}

#[tokio::test]
async fn no_master_exits_1() {
    let url = serve(topology("")).await;
    let out = run(&["--coordinator", &url, "master"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "redis-ha: master group redis-cluster has no master right now\n"
    );
}

#[tokio::test]
async fn grpc_errors_exit_1_with_code_and_message() {
    let url = serve(topology("127.0.0.1:9001")).await;
    let out = run(&["--coordinator", &url, "--group", "nope", "status"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("redis-ha: the coordinator at {url} answered NOT_FOUND: unknown master group \"nope\"\n")
    );
    let out = run(&["--coordinator", &url, "failover"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("answered FAILED_PRECONDITION: no good replica to promote"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--coordinator", &url, "--group", "nope", "watch"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "watch exits when it never got a topology"
    );
}

#[tokio::test]
async fn events_limit_and_json() {
    let url = serve(topology("127.0.0.1:9001")).await;
    let out = run(&["--coordinator", &url, "events", "--limit", "2", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = v.as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["message"], "event 4");
    let out = run(&["--coordinator", &url, "events"]).await;
    assert_eq!(
        text(&out.stdout).lines().count(),
        6,
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn watch_prints_one_line_per_version() {
    let url = serve(topology("127.0.0.1:9001")).await;
    for json in [false, true] {
        let mut args = vec!["--coordinator", url.as_str(), "watch"];
        if json {
            args.push("--json");
        }
        let mut child = tokio::process::Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut got = Vec::new();
        for _ in 0..2 {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("no watch line")
                .unwrap()
                .expect("watch ended");
            got.push(line);
        }
        let (first, second) = (&got[0], &got[1]);
        if json {
            let a: serde_json::Value = serde_json::from_str(first).unwrap();
            let b: serde_json::Value = serde_json::from_str(second).unwrap();
            assert_eq!(
                (a["version"].as_u64(), b["version"].as_u64()),
                (Some(12), Some(13))
            );
            assert_eq!(b["master"]["address"], "127.0.0.1:9002");
        } else {
            assert!(first.contains("  v12  "), "{first}");
            assert!(
                second.contains("  v13  ")
                    && second.contains("| master 127.0.0.1:9001 -> 127.0.0.1:9002"),
                "{second}"
            );
        }
        child.kill().await.unwrap();
    }
}
