//! The kit's processes run the shipped configuration: what users of `deploy/up.sh --local` get.

use redis_ha_testkit::client::{self, QueryError};
use redis_ha_testkit::haproxy::BACKEND;
use redis_ha_testkit::{
    wait_until, Haproxy, HaproxySpec, PortBlock, RedisNode, RedisSpec, Sentinel, SentinelSpec,
    TIMEOUT,
};

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"))
}

async fn set(node: &RedisNode, key: &str) -> Result<String, QueryError> {
    node.query(redis::cmd("SET").arg(key).arg("v")).await
}

#[tokio::test]
async fn a_master_takes_writes_only_with_a_replica_as_shipped() {
    let ports = PortBlock::allocate(4);
    let dir = temp_dir();
    let mut master = RedisNode::start(RedisSpec::new("node-1", ports.port(0)), dir.path()).await;
    // min-replicas-to-write 1: alone, the master refuses writes.
    let e = set(&master, "alone")
        .await
        .expect_err("a lone master refuses writes");
    assert_eq!(e.code(), Some("NOREPLICAS"), "{e}");

    let replica = RedisNode::start(
        RedisSpec::new("node-2", ports.port(1)).replica_of(master.port()),
        dir.path(),
    )
    .await;
    replica.wait_synced_to(master.port()).await;
    // The replica's first ack may follow the sync by up to a second.
    wait_until("the master to take a write", TIMEOUT, || set(&master, "k")).await;
    wait_until("the write to reach the replica", TIMEOUT, || async {
        replica
            .query::<Option<String>>(redis::cmd("GET").arg("k"))
            .await
            .map(|v| v.filter(|v| v == "v"))
            .unwrap_or(None)
    })
    .await;
    assert_eq!(replica.role().await.ok().as_deref(), Some("slave"));

    let sentinel = Sentinel::start(
        SentinelSpec::new("sentinel-1", ports.port(2), "g", master.port()),
        dir.path(),
    )
    .await;
    let replica_addr = replica.addr();
    wait_until("the Sentinel to see the replica", TIMEOUT, || {
        sentinel.lists_replica(&replica_addr, None)
    })
    .await;
    assert_eq!(
        sentinel.master_addr().await.ok().flatten(),
        Some(master.addr())
    );

    // Process controls through the node itself.
    master.pause();
    assert!(master.is_paused());
    // Paused: its socket accepts, nothing answers.
    let r = client::query::<String>(master.port(), None, &redis::cmd("PING")).await;
    assert!(r.is_err(), "{r:?}");
    master.resume();
    master.restart().await;
    assert!(master.is_running());
}

#[tokio::test]
async fn the_shipped_haproxy_routes_nothing_until_told() {
    let ports = PortBlock::allocate(5);
    let dir = temp_dir();
    let node = RedisNode::start(RedisSpec::new("node-1", ports.port(0)), dir.path()).await;
    let spec = HaproxySpec {
        name: "haproxy".into(),
        frontend: ports.port(1),
        read_frontend: ports.port(4),
        stats: ports.port(2),
        socket: dir.path().join("haproxy.sock"),
        nodes: vec![node.addr(), node.addr(), node.addr()],
        no_check: false,
    };
    let mut hap = Haproxy::start_shipped(&spec, dir.path()).await;
    assert_eq!(hap.routed_port().await, None);
    let answer = hap
        .runtime_command(&format!("set server {BACKEND}/redis-2 state ready"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.trim(), "", "{answer}");
    hap.wait_routed_to(node.port()).await;
    // A restart is back to the file: every server in maint.
    hap.restart().await;
    assert_eq!(hap.routed_port().await, None);
}
