//! The whole reloader loop against real HAProxy + Redis: following real Sentinels (no
//! coordinator), and following a coordinator stream (a scripted WatchTopology server speaking
//! real gRPC; the real coordinator is exercised by the workspace's routing tests).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use common::*;
use redis_ha_common::HostPort;
use redis_ha_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use redis_ha_proto::v1::{
    AgentReport, FailoverRequest, FailoverResponse, GetTopologyRequest, ListEventsRequest,
    ListEventsResponse, NodeView, ReportAck, Topology, WatchTopologyRequest,
};
use redis_ha_reloader::{Reloader, ReloaderConfig};
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

fn config(hap: &Haproxy) -> ReloaderConfig {
    ReloaderConfig {
        coordinator_url: String::new(),
        haproxy_runtime: vec![format!("unix:{}", hap.socket.display())],
        resync_interval_ms: 200,
        io_timeout_ms: 1000,
        ..Default::default()
    }
}

async fn wait_routed(hap: &Haproxy, port: u16, what: &str) {
    let front = hap.frontend_addr();
    wait_until(what, Duration::from_secs(30), || async move {
        routed_port(front).await == Some(port)
    })
    .await;
}

async fn role(port: u16) -> Option<String> {
    let r = raw_command(SocketAddr::from(([127, 0, 0, 1], port)), "ROLE").await?;
    r.split("\r\n").nth(2).map(str::to_owned)
}

#[tokio::test]
async fn follows_the_sentinels_without_a_coordinator() {
    let _t = redis_ha_common::telemetry::init("reloader-test");
    let dir = tempfile::tempdir().unwrap();
    let mut master = start_redis(dir.path(), None).await;
    let r2 = start_redis(dir.path(), Some(master.port)).await;
    let r3 = start_redis(dir.path(), Some(master.port)).await;
    let ports = [master.port, r2.port, r3.port];
    let mut sentinels = Vec::new();
    for _ in 0..3 {
        sentinels.push(start_sentinel(dir.path(), master.port).await);
    }
    let mut hap = start_haproxy(dir.path(), &ports).await;

    let mut cfg = config(&hap);
    cfg.sentinels = sentinels
        .iter()
        .map(|(p, _)| HostPort::new("127.0.0.1", *p))
        .collect();
    let reloader = Reloader::new(cfg).unwrap();
    let status = reloader.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(reloader.run(cancel.clone()));

    wait_routed(&hap, ports[0], "routing to the first master").await;

    // Let the Sentinels discover the replicas before failing the master.
    let s1 = SocketAddr::from(([127, 0, 0, 1], sentinels[0].0));
    wait_until(
        "sentinels know 2 replicas",
        Duration::from_secs(30),
        || async move {
            raw_command(s1, &format!("SENTINEL MASTER {GROUP}"))
                .await
                .is_some_and(|r| {
                    r.contains("num-slaves\r\n$1\r\n2") || r.contains("num-slaves\r\n:2")
                })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    master.proc.kill();
    let front = hap.frontend_addr();
    wait_until(
        "routing to a promoted master",
        Duration::from_secs(60),
        || async move {
            match routed_port(front).await {
                Some(p) if p != ports[0] => role(p).await.as_deref() == Some("master"),
                _ => false,
            }
        },
    )
    .await;
    let new_master = routed_port(front).await.unwrap();
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
    wait_routed(
        &hap,
        new_master,
        "routing re-applied after a HAProxy restart",
    )
    .await;

    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// A coordinator that streams whatever the test puts in the watch channel.
struct Scripted {
    topology: watch::Receiver<Topology>,
    /// Ends every stream: with the listener gone too, the coordinator is dead to the client
    /// (aborting the serve task alone leaves the connection tasks running).
    kill: CancellationToken,
}

type TopologyStream = Pin<Box<dyn Stream<Item = Result<Topology, Status>> + Send>>;

#[tonic::async_trait]
impl Coordinator for Scripted {
    async fn report(&self, _: Request<AgentReport>) -> Result<Response<ReportAck>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn get_topology(
        &self,
        _: Request<GetTopologyRequest>,
    ) -> Result<Response<Topology>, Status> {
        Ok(Response::new(self.topology.borrow().clone()))
    }
    type WatchTopologyStream = TopologyStream;
    async fn watch_topology(
        &self,
        _: Request<WatchTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        let s = futures::StreamExt::take_until(
            tokio_stream::wrappers::WatchStream::new(self.topology.clone()).map(Ok),
            self.kill.clone().cancelled_owned(),
        );
        Ok(Response::new(Box::pin(s)))
    }
    async fn list_events(
        &self,
        _: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn failover(
        &self,
        _: Request<FailoverRequest>,
    ) -> Result<Response<FailoverResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
}

fn topology(version: u64, epoch: u64, master: usize, ports: &[u16], source: &str) -> Topology {
    Topology {
        master_group: GROUP.into(),
        version,
        master_address: format!("127.0.0.1:{}", ports[master]),
        master_node: format!("node-{}", master + 1),
        config_epoch: epoch,
        master_source: source.into(),
        nodes: ports
            .iter()
            .enumerate()
            .map(|(i, p)| NodeView {
                node: format!("node-{}", i + 1),
                address: format!("127.0.0.1:{p}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn follows_the_coordinator_stream_and_ignores_stale_epochs() {
    let _t = redis_ha_common::telemetry::init("reloader-test");
    let dir = tempfile::tempdir().unwrap();
    let r1 = start_redis(dir.path(), None).await;
    let r2 = start_redis(dir.path(), None).await;
    let r3 = start_redis(dir.path(), None).await;
    let ports = [r1.port, r2.port, r3.port];
    let hap = start_haproxy(dir.path(), &ports).await;

    let grpc_port = free_port();
    let grpc_addr = SocketAddr::from(([127, 0, 0, 1], grpc_port));
    let (tx, rx) = watch::channel(topology(1, 1, 0, &ports, "sentinel-quorum"));
    let serve = |topology: watch::Receiver<Topology>, kill: CancellationToken| {
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(CoordinatorServer::new(Scripted { topology, kill }))
                .serve(grpc_addr)
                .await
        })
    };
    let kill = CancellationToken::new();
    let server = serve(rx, kill.clone());

    let mut cfg = config(&hap);
    cfg.coordinator_url = format!("http://127.0.0.1:{grpc_port}");
    let reloader = Reloader::new(cfg).unwrap();
    let mut status = reloader.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(reloader.run(cancel.clone()));

    wait_routed(&hap, ports[0], "routing to node 1").await;

    // A stale topology (lower epoch) must not undo the routing.
    tx.send_replace(topology(2, 0, 1, &ports, "sentinel-quorum"));
    // Wait for several read-backs after it was seen.
    let seen = Instant::now();
    wait_until("a few resyncs", Duration::from_secs(30), || {
        let st = status.borrow_and_update().clone();
        async move {
            st.instances.values().all(|i| {
                i.last_check
                    .is_some_and(|t| t > seen + Duration::from_millis(600))
            })
        }
    })
    .await;
    assert_eq!(routed_port(hap.frontend_addr()).await, Some(ports[0]));
    assert_eq!(status.borrow().decision.as_ref().unwrap().config_epoch, 1);

    // "promoted" at a new epoch: switched, old master fenced.
    let mut held = tokio::net::TcpStream::connect(hap.frontend_addr())
        .await
        .unwrap();
    assert!(exchange(&mut held, "PING").await.is_some());
    let sent = Instant::now();
    tx.send_replace(topology(3, 2, 2, &ports, "promoted"));
    wait_routed(&hap, ports[2], "routing to node 3").await;
    println!(
        "promoted topology -> first request routed: {:?}",
        sent.elapsed()
    );
    assert_eq!(exchange(&mut held, "PING").await, None);
    {
        let st = status.borrow();
        let inst = st.instances.values().next().unwrap();
        let applied = inst.last_apply.as_ref().unwrap();
        assert_eq!(applied.config_epoch, 2);
        assert_eq!(
            applied.commands,
            [
                "set server redis/redis-1 state maint",
                "shutdown sessions server redis/redis-1",
                "set server redis/redis-3 state ready",
            ]
        );
    }

    // The coordinator dies (connections dropped): routing stays.
    server.abort();
    kill.cancel();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(routed_port(hap.frontend_addr()).await, Some(ports[2]));

    // It comes back with an old view (it has not heard from the agents yet): ignored.
    let (_tx2, rx2) = watch::channel(topology(1, 1, 0, &ports, "sentinel-quorum"));
    let kill = CancellationToken::new();
    let server = serve(rx2, kill.clone());
    let back = Instant::now();
    wait_until("a few resyncs", Duration::from_secs(30), || {
        let st = status.borrow_and_update().clone();
        async move {
            st.instances.values().all(|i| {
                i.last_check
                    .is_some_and(|t| t > back + Duration::from_secs(2))
            })
        }
    })
    .await;
    assert_eq!(routed_port(hap.frontend_addr()).await, Some(ports[2]));
    assert_eq!(status.borrow().decision.as_ref().unwrap().config_epoch, 2);
    server.abort();
    kill.cancel();

    cancel.cancel();
    task.await.unwrap().unwrap();
    drop(tx);
}
